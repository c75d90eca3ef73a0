//! Errors of the protocol crate.

/// Everything that can be wrong with bytes or values handed to `vouch-proto`.
///
/// Every variant says what was wrong in terms a client can act on; none of them is an
/// internal fault, so callers map them to 4xx answers or to rejected gossip.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    /// A byte string had the wrong length for a fixed-width type.
    #[error("{what}: expected {expected} bytes, got {got}")]
    Length {
        /// What was being decoded.
        what: &'static str,
        /// The exact length the encoding requires.
        expected: usize,
        /// The length that was given.
        got: usize,
    },
    /// Input larger than the cap for its type; it was not parsed.
    #[error("{what}: {got} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// What was being decoded.
        what: &'static str,
        /// The cap.
        limit: usize,
        /// The size that was given.
        got: usize,
    },
    /// A digest, key or id string that is not of the documented form.
    #[error("{what}: {reason}")]
    Format {
        /// Which field.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON document that does not decode into the type, or has fields the type does not know.
    #[error("invalid {what} JSON: {reason}")]
    Json {
        /// Which type.
        what: &'static str,
        /// serde_json's description, with line and column.
        reason: String,
    },
    /// A job spec that decodes but breaks a rule of SPEC.md.
    #[error("invalid job spec: {0}")]
    InvalidSpec(String),
    /// The value cannot be put in canonical form (for example a float, or an integer
    /// above 2^53 - 1, which RFC 8785 cannot represent exactly).
    #[error("cannot canonicalize: {0}")]
    Canonical(String),
    /// The public key bytes are not a valid ed25519 point.
    #[error("invalid ed25519 public key")]
    BadPublicKey,
    /// The signature does not verify for this key and signing root.
    #[error("signature does not verify for this operator key and signing root")]
    BadSignature,
}
