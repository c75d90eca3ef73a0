//! Gossip messages besides receipts: job announcements, replica commitments and reveals
//! (the jobs topic) and signed verdicts (the verdicts topic). SPEC.md §10 is the normative
//! text.
//!
//! Every message is length-exact binary with a leading kind byte, and every signature is an
//! ed25519 signature over `SHA-256(tag ‖ body)` with its own domain tag, so a signature on
//! one kind of message can never be read as another.

use sha2::{Digest as _, Sha256};

use crate::{
    tags, verify_root, Digest, JobId, JobSpec, NetworkId, OperatorKey, ProtoError, SignedReceipt,
    MAX_SPEC_BYTES, SIGNATURE_LEN, SIGNED_RECEIPT_LEN,
};

/// Kind byte of a [`JobAnnouncement`].
pub const KIND_ANNOUNCE: u8 = 1;
/// Kind byte of a [`ReplicaCommit`].
pub const KIND_COMMIT: u8 = 2;
/// Kind byte of a [`ReplicaReveal`].
pub const KIND_REVEAL: u8 = 3;
/// Kind byte of a [`SignedVerdict`].
pub const KIND_VERDICT: u8 = 4;

/// Largest input carried inside an announcement; larger inputs are fetched by digest from
/// the announcer.
pub const MAX_INLINE_INPUT: usize = 32 * 1024;
/// Largest verdict body.
pub const MAX_VERDICT_BODY: usize = 32 * 1024;
/// Length of an encoded [`ReplicaCommit`] including its kind byte and signature.
pub const COMMIT_LEN: usize = 1 + 128 + SIGNATURE_LEN;
/// Length of an encoded [`ReplicaReveal`] including its kind byte.
pub const REVEAL_LEN: usize = 1 + SIGNED_RECEIPT_LEN + 32;

fn root(tag: &[u8], body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tag);
    h.update(body);
    h.finalize().into()
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[..N]);
    out
}

fn too_short(what: &'static str, expected: usize, got: usize) -> ProtoError {
    ProtoError::Length {
        what,
        expected,
        got,
    }
}

/// A client's node asking the network to run a replicated job (`replicas` > 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobAnnouncement {
    /// Network the job belongs to.
    pub network_id: NetworkId,
    /// The announcing operator (the client's node), who also serves the input by digest.
    pub announcer: OperatorKey,
    /// When it was announced, ms since the Unix epoch.
    pub issued_at_ms: u64,
    /// Commitments are accepted until then; after it, committed replicas reveal whatever
    /// number of commitments was reached.
    pub deadline_ms: u64,
    /// The job's canonical JSON (SPEC §2.4). Its job id is recomputed, never trusted.
    pub spec_json: Vec<u8>,
    /// The input bytes, when at most [`MAX_INLINE_INPUT`]; empty otherwise (and then fetched
    /// by `spec.input_digest`), or when the input is empty.
    pub input: Vec<u8>,
    /// The announcer's signature over [`JobAnnouncement::signing_root`].
    pub signature: [u8; SIGNATURE_LEN],
}

impl JobAnnouncement {
    fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(88 + self.spec_json.len() + self.input.len());
        b.extend_from_slice(self.network_id.as_bytes());
        b.extend_from_slice(self.announcer.as_bytes());
        b.extend_from_slice(&self.issued_at_ms.to_be_bytes());
        b.extend_from_slice(&self.deadline_ms.to_be_bytes());
        b.extend_from_slice(&(self.spec_json.len() as u32).to_be_bytes());
        b.extend_from_slice(&self.spec_json);
        b.extend_from_slice(&(self.input.len() as u32).to_be_bytes());
        b.extend_from_slice(&self.input);
        b
    }

    /// `SHA-256("vouch/announce/v1" ‖ body)`, body as in SPEC §10.2.
    pub fn signing_root(&self) -> [u8; 32] {
        root(tags::ANNOUNCE, &self.body())
    }

    /// `0x01 ‖ body ‖ signature`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![KIND_ANNOUNCE];
        out.extend_from_slice(&self.body());
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes an encoded announcement (kind byte included). Checks lengths only.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        const FIXED: usize = 1 + 32 + 32 + 8 + 8 + 4 + 4 + SIGNATURE_LEN;
        if bytes.len() < FIXED {
            return Err(too_short("job announcement", FIXED, bytes.len()));
        }
        if bytes[0] != KIND_ANNOUNCE {
            return Err(kind_error("job announcement", bytes[0]));
        }
        let spec_len = u32::from_be_bytes(arr(&bytes[81..85])) as usize;
        if spec_len > MAX_SPEC_BYTES {
            return Err(ProtoError::TooLarge {
                what: "announced spec",
                limit: MAX_SPEC_BYTES,
                got: spec_len,
            });
        }
        let input_at = 85 + spec_len;
        if bytes.len() < input_at + 4 + SIGNATURE_LEN {
            return Err(too_short(
                "job announcement",
                input_at + 4 + SIGNATURE_LEN,
                bytes.len(),
            ));
        }
        let input_len = u32::from_be_bytes(arr(&bytes[input_at..input_at + 4])) as usize;
        if input_len > MAX_INLINE_INPUT {
            return Err(ProtoError::TooLarge {
                what: "inline input",
                limit: MAX_INLINE_INPUT,
                got: input_len,
            });
        }
        let end = input_at + 4 + input_len;
        if bytes.len() != end + SIGNATURE_LEN {
            return Err(too_short(
                "job announcement",
                end + SIGNATURE_LEN,
                bytes.len(),
            ));
        }
        Ok(JobAnnouncement {
            network_id: NetworkId(arr(&bytes[1..33])),
            announcer: OperatorKey(arr(&bytes[33..65])),
            issued_at_ms: u64::from_be_bytes(arr(&bytes[65..73])),
            deadline_ms: u64::from_be_bytes(arr(&bytes[73..81])),
            spec_json: bytes[85..85 + spec_len].to_vec(),
            input: bytes[input_at + 4..end].to_vec(),
            signature: arr(&bytes[end..]),
        })
    }

    /// Checks the signature and the spec, and returns the spec and its job id. An inline
    /// input must match the spec's input digest.
    pub fn verify(&self) -> Result<(JobSpec, JobId), ProtoError> {
        verify_root(&self.announcer, &self.signing_root(), &self.signature)?;
        let spec = JobSpec::from_json(&self.spec_json)?;
        if spec.canonical_bytes()? != self.spec_json {
            return Err(ProtoError::Format {
                what: "announced spec",
                reason: "not in canonical form".into(),
            });
        }
        if spec.replicas < 2 {
            return Err(ProtoError::InvalidSpec(
                "an announced job must have replicas ≥ 2".into(),
            ));
        }
        if !self.input.is_empty() && Digest::of(&self.input) != spec.input_digest {
            return Err(ProtoError::Format {
                what: "inline input",
                reason: "its SHA-256 is not the spec's input_digest".into(),
            });
        }
        let id = spec.job_id()?;
        Ok((spec, id))
    }
}

fn kind_error(what: &'static str, got: u8) -> ProtoError {
    ProtoError::Format {
        what,
        reason: format!("unexpected kind byte {got}"),
    }
}

/// The value a replica commits to: `SHA-256("vouch/commitment/v1" ‖ operator ‖ signed
/// receipt (324 bytes) ‖ salt (32 bytes))`.
pub fn commitment_value(
    operator: &OperatorKey,
    receipt: &SignedReceipt,
    salt: &[u8; 32],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tags::COMMITMENT);
    h.update(operator.as_bytes());
    h.update(receipt.encode());
    h.update(salt);
    h.finalize().into()
}

/// A replica's sealed answer: it has run the job and signed a receipt, and publishes only a
/// salted hash of it until the reveal phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaCommit {
    /// Network.
    pub network_id: NetworkId,
    /// The replicated job.
    pub job_id: JobId,
    /// The committing operator.
    pub operator: OperatorKey,
    /// [`commitment_value`] of its signed receipt and a fresh random salt.
    pub commitment: [u8; 32],
    /// The operator's signature over [`ReplicaCommit::signing_root`].
    pub signature: [u8; SIGNATURE_LEN],
}

impl ReplicaCommit {
    fn body(&self) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[..32].copy_from_slice(self.network_id.as_bytes());
        b[32..64].copy_from_slice(self.job_id.as_bytes());
        b[64..96].copy_from_slice(self.operator.as_bytes());
        b[96..].copy_from_slice(&self.commitment);
        b
    }

    /// `SHA-256("vouch/replica-commit/v1" ‖ network_id ‖ job_id ‖ operator ‖ commitment)`.
    pub fn signing_root(&self) -> [u8; 32] {
        root(tags::REPLICA_COMMIT, &self.body())
    }

    /// `0x02 ‖ body (128) ‖ signature (64)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(COMMIT_LEN);
        out.push(KIND_COMMIT);
        out.extend_from_slice(&self.body());
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes exactly [`COMMIT_LEN`] bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        if bytes.len() != COMMIT_LEN {
            return Err(too_short("replica commit", COMMIT_LEN, bytes.len()));
        }
        if bytes[0] != KIND_COMMIT {
            return Err(kind_error("replica commit", bytes[0]));
        }
        Ok(ReplicaCommit {
            network_id: NetworkId(arr(&bytes[1..33])),
            job_id: JobId(arr(&bytes[33..65])),
            operator: OperatorKey(arr(&bytes[65..97])),
            commitment: arr(&bytes[97..129]),
            signature: arr(&bytes[129..]),
        })
    }

    /// Checks the operator's signature.
    pub fn verify(&self) -> Result<(), ProtoError> {
        verify_root(&self.operator, &self.signing_root(), &self.signature)
    }
}

/// A replica opening its commitment: the signed receipt and the salt. The receipt's own
/// signature authenticates it; no second signature is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaReveal {
    /// The replica's signed receipt for the job.
    pub receipt: SignedReceipt,
    /// The salt used in the commitment.
    pub salt: [u8; 32],
}

impl ReplicaReveal {
    /// `0x03 ‖ signed receipt (324) ‖ salt (32)`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REVEAL_LEN);
        out.push(KIND_REVEAL);
        out.extend_from_slice(&self.receipt.encode());
        out.extend_from_slice(&self.salt);
        out
    }

    /// Decodes exactly [`REVEAL_LEN`] bytes. Does not check the signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        if bytes.len() != REVEAL_LEN {
            return Err(too_short("replica reveal", REVEAL_LEN, bytes.len()));
        }
        if bytes[0] != KIND_REVEAL {
            return Err(kind_error("replica reveal", bytes[0]));
        }
        Ok(ReplicaReveal {
            receipt: SignedReceipt::decode(&bytes[1..1 + SIGNED_RECEIPT_LEN])?,
            salt: arr(&bytes[1 + SIGNED_RECEIPT_LEN..]),
        })
    }

    /// Whether this reveal opens `commit`: same job and operator, and the commitment value
    /// recomputes.
    pub fn opens(&self, commit: &ReplicaCommit) -> bool {
        let r = &self.receipt.receipt;
        r.job_id == commit.job_id
            && r.operator == commit.operator
            && r.network_id == commit.network_id
            && commitment_value(&r.operator, &self.receipt, &self.salt) == commit.commitment
    }
}

/// A message on the jobs topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobMessage {
    /// A replicated job.
    Announce(JobAnnouncement),
    /// A replica's commitment.
    Commit(ReplicaCommit),
    /// A replica's reveal.
    Reveal(ReplicaReveal),
}

impl JobMessage {
    /// Decodes by the leading kind byte.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        match bytes.first() {
            Some(&KIND_ANNOUNCE) => JobAnnouncement::decode(bytes).map(JobMessage::Announce),
            Some(&KIND_COMMIT) => ReplicaCommit::decode(bytes).map(JobMessage::Commit),
            Some(&KIND_REVEAL) => ReplicaReveal::decode(bytes).map(JobMessage::Reveal),
            Some(&k) => Err(kind_error("job message", k)),
            None => Err(too_short("job message", 1, 0)),
        }
    }

    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            JobMessage::Announce(m) => m.encode(),
            JobMessage::Commit(m) => m.encode(),
            JobMessage::Reveal(m) => m.encode(),
        }
    }
}

/// A statement by the verifier (a ledger event: a slash, a jail, a dispute's outcome),
/// gossiped so that nodes and watchers apply it without polling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedVerdict {
    /// Network.
    pub network_id: NetworkId,
    /// The verifier's key.
    pub verifier: OperatorKey,
    /// The verifier's event log position of this statement.
    pub sequence: u64,
    /// The statement, JSON (the verifier's event as `GET /v1/events` serves it).
    pub body: Vec<u8>,
    /// The verifier's signature over [`SignedVerdict::signing_root`].
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedVerdict {
    fn head(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(76 + self.body.len());
        b.extend_from_slice(self.network_id.as_bytes());
        b.extend_from_slice(self.verifier.as_bytes());
        b.extend_from_slice(&self.sequence.to_be_bytes());
        b.extend_from_slice(&(self.body.len() as u32).to_be_bytes());
        b.extend_from_slice(&self.body);
        b
    }

    /// `SHA-256("vouch/verdict/v1" ‖ network_id ‖ verifier ‖ sequence ‖ len ‖ body)`.
    pub fn signing_root(&self) -> [u8; 32] {
        root(tags::VERDICT, &self.head())
    }

    /// `0x04 ‖ network_id ‖ verifier ‖ sequence ‖ len ‖ body ‖ signature`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![KIND_VERDICT];
        out.extend_from_slice(&self.head());
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes, checking lengths and the body cap.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtoError> {
        const FIXED: usize = 1 + 32 + 32 + 8 + 4 + SIGNATURE_LEN;
        if bytes.len() < FIXED {
            return Err(too_short("signed verdict", FIXED, bytes.len()));
        }
        if bytes[0] != KIND_VERDICT {
            return Err(kind_error("signed verdict", bytes[0]));
        }
        let len = u32::from_be_bytes(arr(&bytes[73..77])) as usize;
        if len > MAX_VERDICT_BODY {
            return Err(ProtoError::TooLarge {
                what: "verdict body",
                limit: MAX_VERDICT_BODY,
                got: len,
            });
        }
        if bytes.len() != FIXED + len {
            return Err(too_short("signed verdict", FIXED + len, bytes.len()));
        }
        Ok(SignedVerdict {
            network_id: NetworkId(arr(&bytes[1..33])),
            verifier: OperatorKey(arr(&bytes[33..65])),
            sequence: u64::from_be_bytes(arr(&bytes[65..73])),
            body: bytes[77..77 + len].to_vec(),
            signature: arr(&bytes[77 + len..]),
        })
    }

    /// Checks the verifier's signature.
    pub fn verify(&self) -> Result<(), ProtoError> {
        verify_root(&self.verifier, &self.signing_root(), &self.signature)
    }
}

/// Replica selection: the `k` operators of `candidates` with the highest weighted
/// rendezvous score for `job_id`, best first. With weights `w` the score of operator `o`
/// is `w / -ln(u)` where `u ∈ (0,1)` comes from `SHA-256("vouch/select/v1" ‖ job_id ‖ o)`
/// (SPEC §10.4), so an operator's chance to be picked first is proportional to its weight
/// and every node computes the same set. Zero-weight candidates are never picked.
pub fn select_replicas(
    job_id: &JobId,
    candidates: &[(OperatorKey, u128)],
    k: usize,
) -> Vec<OperatorKey> {
    let mut scored: Vec<(f64, OperatorKey)> = candidates
        .iter()
        .filter(|(_, w)| *w > 0)
        .map(|(op, w)| {
            let mut h = Sha256::new();
            h.update(tags::SELECT);
            h.update(job_id.as_bytes());
            h.update(op.as_bytes());
            let d: [u8; 32] = h.finalize().into();
            // 53 random bits → u in (0, 1), never 0 or 1.
            let bits = u64::from_be_bytes(arr(&d[..8])) >> 11;
            let u = (bits as f64 + 0.5) / (1u64 << 53) as f64;
            (*w as f64 / -u.ln(), *op)
        })
        .collect();
    // Highest score first; ties (practically impossible) broken by key.
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1 .0.cmp(&b.1 .0)));
    scored.into_iter().take(k).map(|(_, op)| op).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(i: u8) -> OperatorKey {
        OperatorKey([i; 32])
    }

    #[test]
    fn selection_is_deterministic_and_weighted() {
        let cands: Vec<_> = (1..=6).map(|i| (op(i), 1u128)).collect();
        let job = JobId([7; 32]);
        let a = select_replicas(&job, &cands, 3);
        let mut rev = cands.clone();
        rev.reverse();
        assert_eq!(
            a,
            select_replicas(&job, &rev, 3),
            "order of candidates matters"
        );
        assert_eq!(a.len(), 3);
        // Weighted: an operator with 9× the weight is first far more often.
        let mut heavy_first = 0;
        let weighted = [(op(1), 9u128), (op(2), 1u128)];
        for j in 0..2000u32 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&j.to_be_bytes());
            if select_replicas(&JobId(id), &weighted, 1)[0] == op(1) {
                heavy_first += 1;
            }
        }
        assert!((1700..1900).contains(&heavy_first), "{heavy_first}/2000");
        assert!(select_replicas(&job, &[(op(1), 0)], 1).is_empty());
    }

    #[test]
    fn messages_round_trip_and_refuse_wrong_lengths() {
        let c = ReplicaCommit {
            network_id: NetworkId([1; 32]),
            job_id: JobId([2; 32]),
            operator: op(3),
            commitment: [4; 32],
            signature: [5; 64],
        };
        let enc = c.encode();
        assert_eq!(enc.len(), COMMIT_LEN);
        assert_eq!(JobMessage::decode(&enc).unwrap(), JobMessage::Commit(c));
        assert!(JobMessage::decode(&enc[..COMMIT_LEN - 1]).is_err());
        assert!(JobMessage::decode(&[9]).is_err());
        assert!(JobMessage::decode(&[]).is_err());
        let v = SignedVerdict {
            network_id: NetworkId([1; 32]),
            verifier: op(2),
            sequence: 7,
            body: b"{\"kind\":\"slash\"}".to_vec(),
            signature: [3; 64],
        };
        let enc = v.encode();
        assert_eq!(SignedVerdict::decode(&enc).unwrap(), v);
        let mut longer = enc.clone();
        longer.push(0);
        assert!(SignedVerdict::decode(&longer).is_err());
    }
}
