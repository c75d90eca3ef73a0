//! `vouch-proto`: the bytes of the Vouch protocol.
//!
//! Everything that is hashed or signed lives here, and nothing else does: job specs and
//! their ids ([`JobSpec::job_id`]), receipts in their fixed 260-byte layout
//! ([`Receipt::encode`]), domain-separated signing roots ([`Receipt::signing_root`]) and
//! ed25519 verification ([`SignedReceipt::verify`]). `proto/SPEC.md` is the normative text;
//! `proto/testdata/vectors.json` holds test vectors that `tests/vectors.rs` checks.
//!
//! The crate has no I/O and spawns no tasks. Signing itself is not here: an operator signs
//! only through the node's signing-protection store, which checks its history first.
//!
//! ```
//! use vouch_proto::{Digest, JobSpec, Limits, Determinism, Amount};
//! let spec = JobSpec {
//!     image: Digest::of(b"an image config"),
//!     command: vec![],
//!     env: vec![],
//!     input_digest: Digest::of(b"hello"),
//!     limits: Limits { cpu_millis: 1000, memory_bytes: 64 << 20, output_bytes: 1 << 20,
//!                      pids: 64, timeout_ms: 10_000, tmpfs_bytes: 16 << 20 },
//!     determinism: Determinism::Deterministic,
//!     value_at_risk: Amount(0),
//!     replicas: 1,
//!     nonce: String::new(),
//! };
//! let id = spec.job_id().unwrap();
//! assert_eq!(id.to_hex().len(), 64);
//! ```

mod beacon;
mod canonical;
mod digest;
mod dispute;
mod error;
mod gossip;
mod job;
mod merkle;
mod receipt;

pub use beacon::{
    beacon_message, beacon_of, epoch_end_ms, epoch_of, sample_value, sampled, verify_beacon,
    BEACON_TAG, SAMPLE_TAG,
};
pub use canonical::{to_canonical_bytes, MAX_SAFE_INTEGER};
pub use digest::{Digest, JobId, NetworkId, OperatorKey, Root32};
pub use dispute::{
    result_dispute_id, served_statement, token_dispute_id, withholding_dispute_id, DemandFlags,
    Served, RESULT_DISPUTE_TAG, SERVED_TAG, TOKEN_DISPUTE_TAG, WITHHOLDING_DISPUTE_TAG,
};
pub use error::ProtoError;
pub use gossip::{
    commitment_value, select_replicas, JobAnnouncement, JobMessage, ReplicaCommit, ReplicaReveal,
    SignedVerdict, COMMIT_LEN, KIND_ANNOUNCE, KIND_COMMIT, KIND_REVEAL, KIND_VERDICT,
    MAX_INLINE_INPUT, MAX_VERDICT_BODY, REVEAL_LEN,
};
pub use job::{
    valid_env_key, Amount, Determinism, JobSpec, Limits, MAX_ARGS, MAX_ARG_BYTES, MAX_ENV,
    MAX_NONCE_BYTES, MAX_REPLICAS, MAX_SPEC_BYTES,
};
pub use merkle::{
    leaf_hash, merkle_proof, merkle_root, verify_merkle_proof, MAX_LEAF_BYTES, MAX_TRACE_LEAVES,
    TRACE_LEAF_TAG,
};
pub use receipt::{
    verify_root, Receipt, ReceiptJson, SignedReceipt, RECEIPT_LEN, SIGNATURE_LEN,
    SIGNED_RECEIPT_LEN,
};

/// Domain tags: every hashed or signed message type starts with its own tag, so bytes
/// signed as one type can never be read as another.
pub mod tags {
    /// Prefix of the job-id hash.
    pub const JOB: &[u8] = b"vouch/job/v1";
    /// Prefix of a receipt's signing root.
    pub const RECEIPT: &[u8] = b"vouch/receipt/v1";
    /// Prefix of the hash that turns a network name into a network id.
    pub const NETWORK: &[u8] = b"vouch/network/v1";
    /// Prefix of a job announcement's signing root.
    pub const ANNOUNCE: &[u8] = b"vouch/announce/v1";
    /// Prefix of a replica commitment value.
    pub const COMMITMENT: &[u8] = b"vouch/commitment/v1";
    /// Prefix of a replica commit message's signing root.
    pub const REPLICA_COMMIT: &[u8] = b"vouch/replica-commit/v1";
    /// Prefix of a verdict's signing root.
    pub const VERDICT: &[u8] = b"vouch/verdict/v1";
    /// Prefix of the replica-selection hash.
    pub const SELECT: &[u8] = b"vouch/select/v1";
    /// Prefix of a result dispute id (what a challenger signs).
    pub const RESULT_DISPUTE: &[u8] = crate::RESULT_DISPUTE_TAG;
    /// Prefix of a one-token (T2) dispute id (what a challenger signs).
    pub const TOKEN_DISPUTE: &[u8] = crate::TOKEN_DISPUTE_TAG;
    /// Prefix of a withholding dispute id (what a challenger signs).
    pub const WITHHOLDING_DISPUTE: &[u8] = crate::WITHHOLDING_DISPUTE_TAG;
    /// Prefix of what an operator signs when it serves evidence of a receipt.
    pub const SERVED: &[u8] = crate::SERVED_TAG;
    /// Prefix of the message the verifier signs for an epoch's beacon.
    pub const BEACON: &[u8] = crate::BEACON_TAG;
    /// Prefix of the hash that decides whether a watcher samples a receipt.
    pub const SAMPLE: &[u8] = crate::SAMPLE_TAG;
}
