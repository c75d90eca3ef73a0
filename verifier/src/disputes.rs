//! Disputes. Tier 0 for now: equivocation, judged on signatures alone.
//!
//! An operator *equivocates* when it signs two different receipts (different signing
//! roots) for the same job, or two different receipts with the same sequence number
//! (DESIGN.md "Disputes, in tiers"; SPEC.md §3.2 makes sequence numbers unique per
//! operator). Honest nodes cannot do it: their signing protection refuses the second
//! signature. The two signed receipts are the whole proof.
//!
//! Every offence has an id that does not depend on who reports it or in which order:
//!
//! ```text
//! id = SHA-256("vouch/offence/equivocation/v1" ‖ operator (32 bytes) ‖ "job" ‖ job_id (32 bytes))
//!    = SHA-256("vouch/offence/equivocation/v1" ‖ operator (32 bytes) ‖ "seq" ‖ sequence (u64 BE))
//! ```
//!
//! (the first when the receipts share a job id, else the second). The ledger slashes
//! each id at most once, in the same transaction as the slash, so swapped receipts, a
//! third receipt for the same job, or twenty challengers racing, all end in one slash.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use vouch_proto::{JobId, NetworkId, SignedReceipt};

use crate::error::{DisputeError, LedgerError};
use crate::events::Event;
use crate::ledger::{CollateralLedger, PPM};
use crate::requests::{Key, RequestBody, SignedRequest};

/// Domain tag of an equivocation offence id.
pub const EQUIVOCATION_TAG: &[u8] = b"vouch/offence/equivocation/v1";

/// How often an admin request (a slash, a bond forfeit) is re-signed after losing the admin nonce to
/// another writer of the same ledger file.
const NONCE_RETRIES: u32 = 32;

/// What the two receipts have in common.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Conflict {
    /// Two results for one job.
    Job {
        /// The job.
        job_id: JobId,
    },
    /// Two receipts under one sequence number (and different jobs).
    Sequence {
        /// The sequence number.
        sequence: u64,
    },
}

/// A proven offence: who, what, and the id the ledger deduplicates on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offence {
    /// See the module docs.
    pub id: [u8; 32],
    /// The operator that signed both receipts.
    pub operator: Key,
    /// What the receipts share.
    pub conflict: Conflict,
}

impl Offence {
    /// The id as the ledger stores it: 64 lowercase hex characters.
    pub fn id_hex(&self) -> String {
        hex::encode(self.id)
    }
}

/// Checks that `a` and `b` prove an equivocation on `network` and names the offence.
///
/// Both signatures must verify (strictly) under the operator key in the receipts, both
/// receipts must be for `network` and by one operator, their signing roots must differ,
/// and they must share the job id or the sequence number. Whether the operator is
/// registered is the ledger's to say.
pub fn equivocation_offence(
    a: &SignedReceipt,
    b: &SignedReceipt,
    network: &NetworkId,
) -> Result<Offence, DisputeError> {
    for (which, r) in [("receipt_a", a), ("receipt_b", b)] {
        r.verify()
            .map_err(|source| DisputeError::Receipt { which, source })?;
        if r.receipt.network_id != *network {
            return Err(DisputeError::WrongNetwork {
                which,
                got: r.receipt.network_id,
                expected: *network,
            });
        }
    }
    let (ra, rb) = (&a.receipt, &b.receipt);
    if ra.operator != rb.operator {
        return Err(DisputeError::DifferentOperators {
            a: ra.operator,
            b: rb.operator,
        });
    }
    let root = ra.signing_root();
    if root == rb.signing_root() {
        return Err(DisputeError::SameReceipt {
            root: hex::encode(root),
        });
    }
    let mut h = Sha256::new();
    h.update(EQUIVOCATION_TAG);
    h.update(ra.operator.as_bytes());
    // Job first: a pair sharing both job and sequence has one id whichever way it is sent.
    let conflict = if ra.job_id == rb.job_id {
        h.update(b"job");
        h.update(ra.job_id.as_bytes());
        Conflict::Job { job_id: ra.job_id }
    } else if ra.sequence == rb.sequence {
        h.update(b"seq");
        h.update(ra.sequence.to_be_bytes());
        Conflict::Sequence {
            sequence: ra.sequence,
        }
    } else {
        return Err(DisputeError::Unrelated);
    };
    Ok(Offence {
        id: h.finalize().into(),
        operator: Key(ra.operator.0),
        conflict,
    })
}

/// How hard an equivocation is punished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeConfig {
    /// Fraction of the operator's allocated stake removed, ppm (1..=1_000_000).
    pub equivocation_slash_ppm: u32,
    /// The same for a wrong result proven by re-execution.
    pub wrong_result_slash_ppm: u32,
    /// Share of the slashed amount paid to the challenger, ppm (below 1_000_000: the
    /// rest is burned, so a self-challenge cannot launder stake).
    pub bounty_ppm: u32,
    /// Jail the operator as well.
    pub jail: bool,
}

impl Default for DisputeConfig {
    fn default() -> Self {
        DisputeConfig {
            equivocation_slash_ppm: PPM / 2,
            wrong_result_slash_ppm: PPM / 2,
            bounty_ppm: PPM / 10,
            jail: true,
        }
    }
}

/// Whether this dispute caused the slash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictOutcome {
    /// This dispute's slash was applied; `event` records it.
    Slashed,
    /// An earlier dispute already slashed this offence; `event` is that slash.
    AlreadySlashed,
}

/// The answer to a dispute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The offence id, hex.
    pub offence: String,
    /// `"equivocation"`.
    pub kind: String,
    /// The slashed operator.
    pub operator: Key,
    /// What the receipts share.
    pub conflict: Conflict,
    /// `slashed` or `already_slashed`.
    pub outcome: VerdictOutcome,
    /// The slash event (the earlier one for `already_slashed`).
    pub event: Event,
}

/// The verifier service: judges disputes and signs the resulting admin requests.
///
/// The admin nonce is taken as "last accepted + 1" under a mutex, which serializes this
/// process; other processes or handles on the same ledger file may still take the nonce
/// first, in which case the ledger refuses ours as replayed and we sign again.
pub struct Verifier {
    ledger: Arc<dyn CollateralLedger>,
    admin: SigningKey,
    network: NetworkId,
    config: DisputeConfig,
    admin_nonce: Mutex<()>,
    /// Re-executes disputed jobs (T1); `None` refuses such disputes.
    pub(crate) executor: Option<Arc<dyn vouch_exec::Executor>>,
    /// Bounds concurrent re-execution containers (a dispute takes two at once).
    pub(crate) reexec: tokio::sync::Semaphore,
    /// Wrong-result judgments running in this process, by dispute id (see `reexec`).
    pub(crate) judgments: Mutex<HashMap<String, crate::reexec::Judgment>>,
    /// The verifier's clock for verdicts reached later than the request that asked.
    clock: crate::api::Clock,
    /// How long an operator has to answer a withholding dispute.
    withholding_deadline_ms: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("admin", &Key::of(&self.admin))
            .field("network", &self.network)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// `ledger` must have been opened with `admin` and `network` (else every slash this
    /// service signs is refused as a bad signature or an unauthorized request).
    pub fn new(
        ledger: Arc<dyn CollateralLedger>,
        admin: SigningKey,
        network: NetworkId,
        config: DisputeConfig,
    ) -> Self {
        Verifier {
            ledger,
            admin,
            network,
            config,
            admin_nonce: Mutex::new(()),
            executor: None,
            reexec: tokio::sync::Semaphore::new(crate::reexec::MAX_CONCURRENT_REEXECUTIONS),
            judgments: Mutex::new(HashMap::new()),
            clock: Arc::new(crate::api::system_now_ms),
            withholding_deadline_ms: crate::withholding::DEFAULT_DEADLINE_MS,
        }
    }

    /// How long an operator has to answer a withholding dispute (at least 1 ms; default
    /// [`crate::withholding::DEFAULT_DEADLINE_MS`]).
    pub fn with_withholding_deadline_ms(mut self, ms: u64) -> Self {
        self.withholding_deadline_ms = ms.max(1);
        self
    }

    /// How long an operator has to answer a withholding dispute.
    pub fn withholding_deadline_ms(&self) -> u64 {
        self.withholding_deadline_ms
    }

    /// Replaces the clock (tests); the default is the system clock.
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The verifier's clock, ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    /// The clock itself, for the API to share.
    pub(crate) fn clock(&self) -> crate::api::Clock {
        self.clock.clone()
    }

    /// Lets this service judge wrong-result disputes by re-running jobs on `executor`
    /// (a `vouch_exec::DockerExecutor` in production).
    pub fn with_executor(mut self, executor: Arc<dyn vouch_exec::Executor>) -> Self {
        self.executor = Some(executor);
        self
    }

    /// The verifier (admin) key.
    pub(crate) fn admin(&self) -> &SigningKey {
        &self.admin
    }

    /// The ledger this service writes to.
    pub fn ledger(&self) -> &Arc<dyn CollateralLedger> {
        &self.ledger
    }

    /// The network whose receipts this service judges.
    pub fn network(&self) -> NetworkId {
        self.network
    }

    /// The punishment rules.
    pub fn config(&self) -> DisputeConfig {
        self.config
    }

    /// Judges an equivocation and, if proven, slashes the operator once per offence.
    ///
    /// Blocking (SQLite): call it from `spawn_blocking` in async code.
    pub fn dispute_equivocation(
        &self,
        challenger: Key,
        a: &SignedReceipt,
        b: &SignedReceipt,
        now_ms: u64,
    ) -> Result<Verdict, DisputeError> {
        let admin = Key::of(&self.admin);
        if challenger == admin {
            return Err(DisputeError::Challenger(
                "the verifier's own key cannot receive a bounty".into(),
            ));
        }
        let offence = equivocation_offence(a, b, &self.network)?;
        let verdict = |outcome, event| Verdict {
            offence: offence.id_hex(),
            kind: "equivocation".into(),
            operator: offence.operator,
            conflict: offence.conflict,
            outcome,
            event,
        };
        let (outcome, event) = self.slash_once(
            offence.id_hex(),
            offence.operator,
            self.config.equivocation_slash_ppm,
            challenger,
            now_ms,
        )?;
        if outcome == VerdictOutcome::Slashed {
            tracing::info!(
                target: "vouch_verifier::disputes",
                offence = %offence.id_hex(),
                operator = %offence.operator,
                %challenger,
                seq = event.seq,
                "equivocation slashed"
            );
        }
        Ok(verdict(outcome, event))
    }

    /// Slashes `operator` for offence `offence` (64 hex) unless an earlier slash already
    /// punished it; then the earlier slash event is returned with
    /// [`VerdictOutcome::AlreadySlashed`]. The ledger checks and records the offence in
    /// the slash's own transaction, so racing disputes slash once.
    pub(crate) fn slash_once(
        &self,
        offence: String,
        operator: Key,
        fraction_ppm: u32,
        challenger: Key,
        now_ms: u64,
    ) -> Result<(VerdictOutcome, Event), DisputeError> {
        let body = RequestBody::Slash {
            operator,
            fraction_ppm,
            bounty_ppm: self.config.bounty_ppm,
            challenger,
            jail: self.config.jail,
            offence: Some(offence.clone()),
        };
        match self.apply_admin(body, now_ms) {
            Ok(applied) => Ok((VerdictOutcome::Slashed, applied.event)),
            Err(DisputeError::Ledger(LedgerError::AlreadySlashed { event_seq, .. })) => Ok((
                VerdictOutcome::AlreadySlashed,
                self.event_at(event_seq, &offence)?,
            )),
            Err(e) => Err(e),
        }
    }

    /// The event at `seq`, which the ledger's offence table points at.
    pub(crate) fn event_at(&self, seq: u64, id: &str) -> Result<Event, DisputeError> {
        Ok(self
            .ledger
            .events_from(seq, 1)?
            .pop()
            .filter(|e| e.seq == seq)
            .ok_or_else(|| {
                LedgerError::Corrupt(format!("offence {id} points at missing event {seq}"))
            })?)
    }

    /// Signs `body` with the admin key under the next admin nonce and applies it.
    ///
    /// The nonce is taken as "last accepted + 1" under a mutex; when another writer of
    /// the same ledger file took it first, the ledger refuses ours as replayed and we sign
    /// again, up to [`NONCE_RETRIES`] times.
    pub(crate) fn apply_admin(
        &self,
        body: RequestBody,
        now_ms: u64,
    ) -> Result<crate::ledger::Applied, DisputeError> {
        self.apply_admin_with(body, &[], now_ms)
    }

    /// [`Verifier::apply_admin`] with an attachment (`CollateralLedger::apply_with`).
    pub(crate) fn apply_admin_with(
        &self,
        body: RequestBody,
        attachment: &[u8],
        now_ms: u64,
    ) -> Result<crate::ledger::Applied, DisputeError> {
        let admin = Key::of(&self.admin);
        for _ in 0..NONCE_RETRIES {
            let _serial = self
                .admin_nonce
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let nonce = self
                .ledger
                .last_nonce(&admin)?
                .unwrap_or(0)
                .checked_add(1)
                .ok_or(LedgerError::Overflow("admin nonce"))?;
            let request = SignedRequest::sign(&self.network.0, &self.admin, nonce, body.clone())?;
            match self.ledger.apply_with(&request, attachment, now_ms) {
                Ok(applied) => return Ok(applied),
                // Another writer of the ledger file used this admin nonce first.
                Err(LedgerError::ReplayedNonce { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(DisputeError::Busy(NONCE_RETRIES))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;
    use vouch_proto::{Digest, OperatorKey, Receipt, Root32};

    fn signed(key: &SigningKey, seq: u64, job: u8, out: u8) -> SignedReceipt {
        let receipt = Receipt {
            network_id: NetworkId::from_name("t"),
            operator: OperatorKey(key.verifying_key().to_bytes()),
            sequence: seq,
            job_id: JobId([job; 32]),
            image: Digest([2; 32]),
            input_digest: Digest([3; 32]),
            output_digest: Digest([out; 32]),
            output_len: 1,
            exit_code: 0,
            trace_root: Root32::default(),
            trace_len: 0,
            issued_at_ms: 1,
        };
        let signature = key.sign(&receipt.signing_root()).to_bytes();
        SignedReceipt { receipt, signature }
    }

    #[test]
    fn offence_id_ignores_order_and_kind_is_job_first() {
        let k = SigningKey::from_bytes(&[9; 32]);
        let net = NetworkId::from_name("t");
        let (a, b) = (signed(&k, 1, 1, 1), signed(&k, 2, 1, 2));
        let ab = equivocation_offence(&a, &b, &net).expect("offence");
        assert_eq!(ab, equivocation_offence(&b, &a, &net).expect("offence"));
        assert!(matches!(ab.conflict, Conflict::Job { .. }));
        // A third receipt for the same job is the same offence.
        let c = signed(&k, 3, 1, 3);
        assert_eq!(
            equivocation_offence(&a, &c, &net).expect("offence").id,
            ab.id
        );
        // Same sequence, different jobs.
        let (d, e) = (signed(&k, 5, 4, 1), signed(&k, 5, 6, 1));
        let de = equivocation_offence(&d, &e, &net).expect("offence");
        assert!(matches!(de.conflict, Conflict::Sequence { sequence: 5 }));
        assert_ne!(de.id, ab.id);
        assert!(matches!(
            equivocation_offence(&a, &e, &net),
            Err(DisputeError::Unrelated)
        ));
        assert!(matches!(
            equivocation_offence(&a, &a, &net),
            Err(DisputeError::SameReceipt { .. })
        ));
    }
}
