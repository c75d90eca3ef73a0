//! Receipts: what an operator signs about one execution, in a fixed binary layout.

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{tags, Digest, JobId, NetworkId, OperatorKey, ProtoError, Root32};

/// Length of an encoded [`Receipt`].
pub const RECEIPT_LEN: usize = 260;
/// Length of an ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of an encoded [`SignedReceipt`]: the receipt followed by the signature.
pub const SIGNED_RECEIPT_LEN: usize = RECEIPT_LEN + SIGNATURE_LEN;

/// The statement an operator signs: "running job `job_id` in image `image` on input
/// `input_digest` produced output `output_digest` and exited with `exit_code`".
///
/// Encoded in the fixed field order and widths of SPEC.md §3; integers are big-endian.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt {
    /// Network the receipt belongs to.
    pub network_id: NetworkId,
    /// The signing operator's public key.
    pub operator: OperatorKey,
    /// Per-operator sequence number, unique across all of its receipts.
    pub sequence: u64,
    /// The job this receipt is about.
    pub job_id: JobId,
    /// Image id the job ran in.
    pub image: Digest,
    /// SHA-256 of the input bytes.
    pub input_digest: Digest,
    /// SHA-256 of the output bytes (stdout).
    pub output_digest: Digest,
    /// Length of the output in bytes.
    pub output_len: u64,
    /// The workload's exit code.
    pub exit_code: i32,
    /// Merkle root of the workload's trace (zeros when untraced).
    pub trace_root: Root32,
    /// Number of trace leaves (zero when untraced).
    pub trace_len: u64,
    /// When the operator signed, in milliseconds since the Unix epoch.
    pub issued_at_ms: u64,
}

impl Receipt {
    /// The 260-byte encoding of SPEC.md §3.
    pub fn encode(&self) -> [u8; RECEIPT_LEN] {
        let mut out = [0u8; RECEIPT_LEN];
        let mut w = Writer {
            buf: &mut out,
            pos: 0,
        };
        w.put(self.network_id.as_bytes());
        w.put(self.operator.as_bytes());
        w.put(&self.sequence.to_be_bytes());
        w.put(self.job_id.as_bytes());
        w.put(self.image.as_bytes());
        w.put(self.input_digest.as_bytes());
        w.put(self.output_digest.as_bytes());
        w.put(&self.output_len.to_be_bytes());
        w.put(&self.exit_code.to_be_bytes());
        w.put(self.trace_root.as_bytes());
        w.put(&self.trace_len.to_be_bytes());
        w.put(&self.issued_at_ms.to_be_bytes());
        debug_assert_eq!(w.pos, RECEIPT_LEN);
        out
    }

    /// Decodes exactly [`RECEIPT_LEN`] bytes; shorter or longer input is refused.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        if bytes.len() != RECEIPT_LEN {
            return Err(ProtoError::Length {
                what: "receipt",
                expected: RECEIPT_LEN,
                got: bytes.len(),
            });
        }
        let mut r = Reader { buf: bytes, pos: 0 };
        Ok(Receipt {
            network_id: NetworkId(r.arr()),
            operator: OperatorKey(r.arr()),
            sequence: u64::from_be_bytes(r.arr()),
            job_id: JobId(r.arr()),
            image: Digest(r.arr()),
            input_digest: Digest(r.arr()),
            output_digest: Digest(r.arr()),
            output_len: u64::from_be_bytes(r.arr()),
            exit_code: i32::from_be_bytes(r.arr()),
            trace_root: Root32(r.arr()),
            trace_len: u64::from_be_bytes(r.arr()),
            issued_at_ms: u64::from_be_bytes(r.arr()),
        })
    }

    /// `SHA-256("vouch/receipt/v1" ‖ encode())`: the 32 bytes ed25519 signs.
    pub fn signing_root(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(tags::RECEIPT);
        h.update(self.encode());
        h.finalize().into()
    }

    /// Whether two receipts make the same claim about a job's result (everything but the
    /// sequence number and the time of signing). Signing protection treats a second
    /// signature for the same job as safe only when this holds.
    pub fn same_result(&self, other: &Receipt) -> bool {
        self.network_id == other.network_id
            && self.operator == other.operator
            && self.job_id == other.job_id
            && self.image == other.image
            && self.input_digest == other.input_digest
            && self.output_digest == other.output_digest
            && self.output_len == other.output_len
            && self.exit_code == other.exit_code
            && self.trace_root == other.trace_root
            && self.trace_len == other.trace_len
    }
}

/// A receipt with the operator's ed25519 signature over its signing root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignedReceipt {
    /// The signed statement.
    pub receipt: Receipt,
    /// ed25519 signature (RFC 8032) of `receipt.signing_root()` by `receipt.operator`.
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedReceipt {
    /// The receipt's 260 bytes followed by the 64-byte signature.
    pub fn encode(&self) -> [u8; SIGNED_RECEIPT_LEN] {
        let mut out = [0u8; SIGNED_RECEIPT_LEN];
        out[..RECEIPT_LEN].copy_from_slice(&self.receipt.encode());
        out[RECEIPT_LEN..].copy_from_slice(&self.signature);
        out
    }

    /// Decodes exactly [`SIGNED_RECEIPT_LEN`] bytes. Does not check the signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        if bytes.len() != SIGNED_RECEIPT_LEN {
            return Err(ProtoError::Length {
                what: "signed receipt",
                expected: SIGNED_RECEIPT_LEN,
                got: bytes.len(),
            });
        }
        let receipt = Receipt::decode(&bytes[..RECEIPT_LEN])?;
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&bytes[RECEIPT_LEN..]);
        Ok(SignedReceipt { receipt, signature })
    }

    /// Checks the signature against the operator key inside the receipt (strict RFC 8032
    /// verification: small-order keys and non-canonical signatures are refused).
    pub fn verify(&self) -> Result<(), ProtoError> {
        verify_root(
            &self.receipt.operator,
            &self.receipt.signing_root(),
            &self.signature,
        )
    }

    /// The JSON view served by the node API (SPEC.md §4).
    pub fn to_json(&self) -> ReceiptJson {
        let r = &self.receipt;
        ReceiptJson {
            network_id: r.network_id,
            operator: r.operator,
            sequence: r.sequence,
            job_id: r.job_id,
            image: r.image,
            input_digest: r.input_digest,
            output_digest: r.output_digest,
            output_len: r.output_len,
            exit_code: r.exit_code,
            trace_root: r.trace_root,
            trace_len: r.trace_len,
            issued_at_ms: r.issued_at_ms,
            signing_root: hex::encode(r.signing_root()),
            signature: hex::encode(self.signature),
            encoded: hex::encode(self.encode()),
        }
    }
}

/// Verifies an ed25519 signature over a 32-byte signing root.
pub fn verify_root(
    key: &OperatorKey,
    root: &[u8; 32],
    signature: &[u8; 64],
) -> Result<(), ProtoError> {
    let vk = VerifyingKey::from_bytes(key.as_bytes()).map_err(|_| ProtoError::BadPublicKey)?;
    let sig = Signature::from_bytes(signature);
    vk.verify_strict(root, &sig)
        .map_err(|_| ProtoError::BadSignature)?;
    // verify_strict already rejects weak keys; keep `Verifier` in scope for callers that
    // want the trait.
    let _ = <VerifyingKey as Verifier<Signature>>::verify;
    Ok(())
}

/// JSON view of a signed receipt. `encoded` is authoritative: the other fields restate it
/// for people and for clients that do not decode the binary form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ReceiptJson {
    pub network_id: NetworkId,
    pub operator: OperatorKey,
    pub sequence: u64,
    pub job_id: JobId,
    pub image: Digest,
    pub input_digest: Digest,
    pub output_digest: Digest,
    pub output_len: u64,
    pub exit_code: i32,
    pub trace_root: Root32,
    pub trace_len: u64,
    pub issued_at_ms: u64,
    /// Hex of the 32-byte signing root.
    pub signing_root: String,
    /// Hex of the 64-byte signature.
    pub signature: String,
    /// Hex of the 324-byte signed receipt.
    pub encoded: String,
}

impl ReceiptJson {
    /// Decodes `encoded`, checks that every restated field matches it, and verifies the
    /// signature. This is what a client runs on a receipt it received.
    pub fn verify(&self) -> Result<SignedReceipt, ProtoError> {
        let bytes = hex::decode(&self.encoded).map_err(|e| ProtoError::Format {
            what: "encoded",
            reason: e.to_string(),
        })?;
        let signed = SignedReceipt::decode(&bytes)?;
        if signed.to_json() != *self {
            return Err(ProtoError::Format {
                what: "receipt",
                reason: "fields do not match the encoded receipt".into(),
            });
        }
        signed.verify()?;
        Ok(signed)
    }
}

struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    // Callers check the total length first, so every read is in bounds.
    fn arr<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use proptest::prelude::*;

    fn receipt(key: &SigningKey) -> Receipt {
        Receipt {
            network_id: NetworkId::from_name("test"),
            operator: OperatorKey(key.verifying_key().to_bytes()),
            sequence: 7,
            job_id: JobId([1; 32]),
            image: Digest([2; 32]),
            input_digest: Digest([3; 32]),
            output_digest: Digest([4; 32]),
            output_len: 5,
            exit_code: -1,
            trace_root: Root32::default(),
            trace_len: 0,
            issued_at_ms: 1_700_000_000_000,
        }
    }

    fn signed(key: &SigningKey) -> SignedReceipt {
        let r = receipt(key);
        let signature = key.sign(&r.signing_root()).to_bytes();
        SignedReceipt {
            receipt: r,
            signature,
        }
    }

    #[test]
    fn sign_verify_and_tamper() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let s = signed(&key);
        s.verify().unwrap();
        let mut t = s.clone();
        t.receipt.exit_code = 0;
        assert_eq!(t.verify(), Err(ProtoError::BadSignature));
        let mut t = s.clone();
        t.signature[0] ^= 1;
        assert_eq!(t.verify(), Err(ProtoError::BadSignature));
        let other = SigningKey::from_bytes(&[8; 32]);
        let mut t = s.clone();
        t.receipt.operator = OperatorKey(other.verifying_key().to_bytes());
        assert_eq!(t.verify(), Err(ProtoError::BadSignature));
    }

    #[test]
    fn decode_rejects_wrong_lengths() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let bytes = signed(&key).encode();
        assert!(SignedReceipt::decode(&bytes[..SIGNED_RECEIPT_LEN - 1]).is_err());
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(matches!(
            SignedReceipt::decode(&long),
            Err(ProtoError::Length { .. })
        ));
        assert!(
            Receipt::decode(&bytes).is_err(),
            "a signed receipt is not a receipt"
        );
    }

    #[test]
    fn json_view_checks_consistency() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let s = signed(&key);
        let j = s.to_json();
        assert_eq!(j.verify().unwrap(), s);
        let mut lie = j.clone();
        lie.exit_code = 0; // a relay rewriting the readable field
        assert!(lie.verify().is_err());
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(seq: u64, len: u64, exit: i32, tl: u64, at: u64, b: [u8; 32]) {
            let key = SigningKey::from_bytes(&[9; 32]);
            let mut r = receipt(&key);
            r.sequence = seq; r.output_len = len; r.exit_code = exit; r.trace_len = tl;
            r.issued_at_ms = at; r.output_digest = Digest(b);
            prop_assert_eq!(Receipt::decode(&r.encode()).unwrap(), r);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = SignedReceipt::decode(&bytes);
            let _ = Receipt::decode(&bytes);
        }
    }
}
