//! Tier 1 disputes: a wrong result, judged by re-execution (DESIGN.md "Disputes, in
//! tiers").
//!
//! A challenger claims that a signed receipt states the wrong result for its job. It
//! sends the receipt, the job spec and the input, names a bond from its own deposited
//! balance and signs the challenge. The verifier checks that the three describe one job
//! of this network by a registered operator, still inside the challenge window, then runs
//! the job **twice** in the sandbox of SPEC.md §5 (same image id, never pulled; same
//! command, env, input and limits) and compares (output digest, output length, exit code):
//!
//! | the two runs | against the receipt | verdict | ledger |
//! |---|---|---|---|
//! | equal | different | `slashed` (`already_slashed` the second time) | slash, bounty, jail |
//! | equal | equal | `dismissed` | the challenger's bond is burned |
//! | different, or a run broke a limit | — | `void` | nothing |
//!
//! Two runs that differ show the workload is not deterministic, so neither of them proves
//! the receipt wrong. A run that breaks a limit gives no result to compare (the operator
//! could not have signed one for it either, SPEC.md §5.3).
//!
//! Ids, independent of who reports and in which order:
//!
//! ```text
//! offence  = SHA-256("vouch/offence/wrong-result/v1" ‖ receipt signing root)
//! dispute  = SHA-256("vouch/dispute/result/v1" ‖ network id ‖
//!                    canonical JSON {"bond": {"amount", "asset"}, "challenger", "receipt"})
//! ```
//!
//! The signing root commits to the operator and the job, so one wrong receipt is one
//! offence: twenty challengers racing slash once (the ledger records the offence in the
//! slash's transaction) and the first one's challenger gets the bounty. The challenger
//! signs the dispute id with its ledger key (strict ed25519), so nobody can spend another
//! key's bond; the ledger burns a dispute's bond at most once, so replaying a dismissed
//! challenge costs nothing more.
//!
//! The bond is checked against the challenger's deposited balance before the runs and
//! taken after them. A challenger that queues a withdrawal in between keeps its bond: the
//! verdict then says `bond_forfeited: false` and why. (Locking the bond first would close
//! that; it needs a second ledger event per dispute.)

use std::sync::Arc;

use bytes::Bytes;
use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use vouch_exec::{LimitKind, RunOutcome};
use vouch_proto::{Determinism, Digest, JobId, JobSpec, NetworkId, SignedReceipt};

use crate::disputes::{VerdictOutcome, Verifier};
use crate::error::{DisputeError, LedgerError};
use crate::events::Event;
use crate::requests::{decimal, Key, RequestBody, Sig};

/// Domain tag of a wrong-result offence id.
pub const WRONG_RESULT_TAG: &[u8] = b"vouch/offence/wrong-result/v1";
/// Domain tag of a result dispute id (what the challenger signs).
pub const RESULT_DISPUTE_TAG: &[u8] = b"vouch/dispute/result/v1";
/// Re-executions judged at once; more disputes wait for a slot.
pub const MAX_CONCURRENT_REEXECUTIONS: usize = 2;

/// What the challenger stakes on its claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bond {
    /// A registered asset.
    pub asset: String,
    /// Base units, > 0, at most the challenger's deposited balance.
    #[serde(with = "decimal")]
    pub amount: u128,
}

/// The offence id of a wrong receipt (see the module docs).
pub fn wrong_result_offence(receipt: &SignedReceipt) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(WRONG_RESULT_TAG);
    h.update(receipt.receipt.signing_root());
    h.finalize().into()
}

/// The id of a challenger's dispute of `receipt_root` on `network` (see the module docs);
/// the challenger signs it.
pub fn result_dispute_id(
    network: &NetworkId,
    challenger: &Key,
    receipt_root: &[u8; 32],
    bond: &Bond,
) -> Result<[u8; 32], LedgerError> {
    let value = serde_json::json!({
        "bond": bond,
        "challenger": challenger,
        "receipt": hex::encode(receipt_root),
    });
    let canonical = vouch_proto::to_canonical_bytes(&value)?;
    let mut h = Sha256::new();
    h.update(RESULT_DISPUTE_TAG);
    h.update(network.0);
    h.update(&canonical);
    Ok(h.finalize().into())
}

/// A wrong-result challenge: everything [`Verifier::dispute_result`] needs.
#[derive(Debug, Clone)]
pub struct ResultChallenge {
    /// Receives the bounty; its deposited balance holds the bond.
    pub challenger: Key,
    /// The bond.
    pub bond: Bond,
    /// The challenger's signature over [`result_dispute_id`].
    pub signature: Sig,
    /// The disputed receipt.
    pub receipt: SignedReceipt,
    /// The job spec the receipt's job id commits to.
    pub spec: JobSpec,
    /// The input bytes (SHA-256 = `spec.input_digest`).
    pub input: Bytes,
}

impl ResultChallenge {
    /// Builds and signs a challenge as `challenger` (what a client does).
    pub fn sign(
        network: &NetworkId,
        challenger: &SigningKey,
        bond: Bond,
        receipt: SignedReceipt,
        spec: JobSpec,
        input: Bytes,
    ) -> Result<Self, LedgerError> {
        let key = Key::of(challenger);
        let id = result_dispute_id(network, &key, &receipt.receipt.signing_root(), &bond)?;
        Ok(ResultChallenge {
            challenger: key,
            bond,
            signature: Sig(challenger.sign(&id).to_bytes()),
            receipt,
            spec,
            input,
        })
    }

    /// This challenge's id on `network`.
    pub fn id(&self, network: &NetworkId) -> Result<[u8; 32], LedgerError> {
        result_dispute_id(
            network,
            &self.challenger,
            &self.receipt.receipt.signing_root(),
            &self.bond,
        )
    }
}

/// A result as compared: what a receipt states or what a run produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunReport {
    /// The workload exited by itself.
    Exited {
        /// SHA-256 of stdout.
        output_digest: Digest,
        /// Length of stdout.
        output_len: u64,
        /// Exit code.
        exit_code: i32,
    },
    /// The run broke a limit: no result.
    LimitExceeded {
        /// `timeout`, `memory` or `output`.
        limit: String,
        /// What happened.
        detail: String,
    },
}

impl RunReport {
    fn of_receipt(r: &SignedReceipt) -> Self {
        RunReport::Exited {
            output_digest: r.receipt.output_digest,
            output_len: r.receipt.output_len,
            exit_code: r.receipt.exit_code,
        }
    }

    fn of_run(outcome: &RunOutcome) -> Self {
        match outcome {
            RunOutcome::Exited {
                exit_code, stdout, ..
            } => RunReport::Exited {
                output_digest: Digest::of(stdout),
                output_len: stdout.len() as u64,
                exit_code: *exit_code,
            },
            RunOutcome::LimitExceeded { kind, detail, .. } => RunReport::LimitExceeded {
                limit: match kind {
                    LimitKind::Timeout => "timeout",
                    LimitKind::Memory => "memory",
                    LimitKind::Output => "output",
                }
                .into(),
                detail: detail.clone(),
            },
        }
    }
}

/// How a wrong-result dispute ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultOutcome {
    /// Both runs agree and differ from the receipt; this dispute's slash was applied.
    Slashed,
    /// As `slashed`, but an earlier dispute already slashed this receipt.
    AlreadySlashed,
    /// Both runs agree with the receipt; the challenger's bond is burned.
    Dismissed,
    /// No verdict: the runs differ (nondeterministic workload) or one broke a limit.
    Void,
}

/// The answer to a wrong-result dispute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultVerdict {
    /// `"wrong_result"`.
    pub kind: String,
    /// The verdict.
    pub outcome: ResultOutcome,
    /// Why, in a sentence.
    pub reason: String,
    /// The offence id (hex), the same for every challenge of this receipt.
    pub offence: String,
    /// This challenge's id (hex).
    pub dispute: String,
    /// The operator that signed the receipt.
    pub operator: Key,
    /// The job.
    pub job_id: JobId,
    /// What the receipt states.
    pub receipt: RunReport,
    /// The verifier's two runs, in order.
    pub runs: Vec<RunReport>,
    /// Whether the challenger's bond was burned (only ever for `dismissed`).
    pub bond_forfeited: bool,
    /// The ledger event: the slash (the earlier one for `already_slashed`) or the bond
    /// forfeit; none for `void`.
    pub event: Option<Event>,
}

/// What the checks before the runs established.
struct Checked {
    job_id: JobId,
    offence: [u8; 32],
    dispute: [u8; 32],
}

impl Verifier {
    /// Judges a wrong-result dispute: checks it, re-runs the job twice and rules (see the
    /// module docs). A refused dispute (`Err`) changes nothing in the ledger.
    pub async fn dispute_result(
        self: &Arc<Self>,
        challenge: ResultChallenge,
        now_ms: u64,
    ) -> Result<ResultVerdict, DisputeError> {
        let executor = self.executor.clone().ok_or(DisputeError::NoExecutor)?;
        let challenge = Arc::new(challenge);
        let checked = {
            let (this, c) = (self.clone(), challenge.clone());
            blocking(move || this.check_result_challenge(&c, now_ms)).await?
        };
        let runs = {
            // The semaphore is never closed, so acquiring only fails if it were.
            let _slot = self
                .reexec
                .acquire()
                .await
                .map_err(|_| DisputeError::NoExecutor)?;
            let mut runs = Vec::with_capacity(2);
            for _ in 0..2 {
                let outcome = executor
                    .run(checked.job_id, &challenge.spec, challenge.input.clone())
                    .await?;
                runs.push(RunReport::of_run(&outcome));
            }
            runs
        };
        let claimed = RunReport::of_receipt(&challenge.receipt);
        let operator = Key(challenge.receipt.receipt.operator.0);
        let mut verdict = ResultVerdict {
            kind: "wrong_result".into(),
            outcome: ResultOutcome::Void,
            reason: String::new(),
            offence: hex::encode(checked.offence),
            dispute: hex::encode(checked.dispute),
            operator,
            job_id: checked.job_id,
            receipt: claimed.clone(),
            runs: runs.clone(),
            bond_forfeited: false,
            event: None,
        };
        if let Some(detail) = runs.iter().find_map(|r| match r {
            RunReport::LimitExceeded { detail, .. } => Some(detail.clone()),
            RunReport::Exited { .. } => None,
        }) {
            verdict.reason =
                format!("a re-execution broke a limit, so there is no result to compare: {detail}");
        } else if runs[0] != runs[1] {
            verdict.reason = "the two re-executions differ: the workload is not deterministic, \
                              so neither proves the receipt wrong"
                .into();
        } else if runs[0] == claimed {
            let this = self.clone();
            let c = challenge.clone();
            let dispute = verdict.dispute.clone();
            let (forfeited, event, why) =
                blocking(move || this.forfeit(&c, dispute, now_ms)).await?;
            verdict.outcome = ResultOutcome::Dismissed;
            verdict.bond_forfeited = forfeited;
            verdict.event = event;
            verdict.reason = format!("both re-executions give the receipt's result; {why}");
        } else {
            let this = self.clone();
            let (offence, challenger) = (verdict.offence.clone(), challenge.challenger);
            let fraction = self.config().wrong_result_slash_ppm;
            let (outcome, event) =
                blocking(move || this.slash_once(offence, operator, fraction, challenger, now_ms))
                    .await?;
            verdict.outcome = match outcome {
                VerdictOutcome::Slashed => ResultOutcome::Slashed,
                VerdictOutcome::AlreadySlashed => ResultOutcome::AlreadySlashed,
            };
            verdict.reason =
                "both re-executions agree with each other and not with the receipt".into();
            if outcome == VerdictOutcome::Slashed {
                tracing::info!(
                    target: "vouch_verifier::disputes",
                    offence = %verdict.offence,
                    %operator,
                    challenger = %challenge.challenger,
                    seq = event.seq,
                    "wrong result slashed"
                );
            }
            verdict.event = Some(event);
        }
        tracing::info!(
            target: "vouch_verifier::disputes",
            dispute = %verdict.dispute,
            job_id = %verdict.job_id,
            outcome = ?verdict.outcome,
            "wrong-result dispute judged"
        );
        Ok(verdict)
    }

    /// Everything that can be checked before running anything. Blocking (ledger reads).
    fn check_result_challenge(
        &self,
        c: &ResultChallenge,
        now_ms: u64,
    ) -> Result<Checked, DisputeError> {
        let network = self.network();
        if c.challenger == Key::of(self.admin()) {
            return Err(DisputeError::Challenger(
                "the verifier's own key cannot challenge".into(),
            ));
        }
        let dispute = c.id(&network)?;
        c.challenger.verify("challenger", &dispute, &c.signature)?;
        let r = &c.receipt;
        r.verify().map_err(|source| DisputeError::Receipt {
            which: "receipt",
            source,
        })?;
        if r.receipt.network_id != network {
            return Err(DisputeError::WrongNetwork {
                which: "receipt",
                got: r.receipt.network_id,
                expected: network,
            });
        }
        let job_id = c.spec.job_id().map_err(|e| {
            DisputeError::Mismatch(format!("the spec is not valid, so it has no job id: {e}"))
        })?;
        if job_id != r.receipt.job_id {
            return Err(DisputeError::Mismatch(format!(
                "the spec's job id is {job_id}, the receipt's {}",
                r.receipt.job_id
            )));
        }
        if c.spec.image != r.receipt.image || c.spec.input_digest != r.receipt.input_digest {
            return Err(DisputeError::Mismatch(
                "the spec's image or input_digest differs from the receipt's".into(),
            ));
        }
        let digest = Digest::of(&c.input);
        if digest != c.spec.input_digest {
            return Err(DisputeError::Mismatch(format!(
                "the input's SHA-256 is {digest}, the spec's input_digest {}",
                c.spec.input_digest
            )));
        }
        if c.spec.determinism != Determinism::Deterministic {
            return Err(DisputeError::NotDisputable(
                "the spec is nondeterministic (SPEC.md §5.5)".into(),
            ));
        }
        let ledger = self.ledger();
        let window_ms = ledger.config().challenge_window_ms();
        let open_until = r.receipt.issued_at_ms.saturating_add(window_ms);
        if open_until < now_ms {
            return Err(DisputeError::Final {
                issued_at_ms: r.receipt.issued_at_ms,
                window_ms,
                now_ms,
            });
        }
        let operator = Key(r.receipt.operator.0);
        ledger
            .operator(&operator)?
            .ok_or(LedgerError::UnknownOperator(operator))?;
        if c.bond.amount == 0 {
            return Err(
                LedgerError::Invalid("bond amount must be greater than zero".into()).into(),
            );
        }
        let available = ledger.balance(&c.challenger, &c.bond.asset)?;
        if available < c.bond.amount {
            return Err(LedgerError::InsufficientBalance {
                restaker: c.challenger,
                asset: c.bond.asset.clone(),
                available,
                requested: c.bond.amount,
            }
            .into());
        }
        Ok(Checked {
            job_id,
            offence: wrong_result_offence(r),
            dispute,
        })
    }

    /// Burns the bond of a dismissed challenge: (forfeited, event, a clause for the reason).
    fn forfeit(
        &self,
        c: &ResultChallenge,
        dispute: String,
        now_ms: u64,
    ) -> Result<(bool, Option<Event>, String), DisputeError> {
        let body = RequestBody::ForfeitBond {
            challenger: c.challenger,
            asset: c.bond.asset.clone(),
            amount: c.bond.amount,
            dispute: dispute.clone(),
        };
        match self.apply_admin(body, now_ms) {
            Ok(applied) => Ok((
                true,
                Some(applied.event),
                "the challenger's bond is forfeited".into(),
            )),
            Err(DisputeError::Ledger(LedgerError::AlreadyForfeited { event_seq, .. })) => Ok((
                true,
                Some(self.event_at(event_seq, &dispute)?),
                "the challenger's bond was already forfeited for this dispute".into(),
            )),
            Err(DisputeError::Ledger(e @ LedgerError::InsufficientBalance { .. })) => {
                Ok((false, None, format!("the bond could not be taken: {e}")))
            }
            Err(e) => Err(e),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DisputeError> + Send + 'static,
) -> Result<T, DisputeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DisputeError::Internal(format!("ledger task failed: {e}")))?
}
