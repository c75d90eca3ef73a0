//! Tier 1 disputes: a wrong result, judged by re-execution (DESIGN.md "Disputes, in
//! tiers").
//!
//! A challenger claims that a signed receipt states the wrong result for its job. It
//! sends the receipt, the job spec and the input, names a bond from its own deposited
//! balance and signs the challenge. The verifier checks that the three describe one job
//! of this network by a registered operator, still inside the challenge window, then runs
//! the job **twice, at once** in the sandbox of SPEC.md §5 (same image id, never pulled;
//! same command, env, input and limits) and compares (output digest, output length, exit
//! code):
//!
//! | the two runs | against the receipt | verdict | ledger (`close_dispute`) |
//! |---|---|---|---|
//! | equal | different | `slashed` (`already_slashed` if another dispute slashed it) | slash, bounty, jail; bond unlocked |
//! | equal | equal | `dismissed` | the bond is burned |
//! | different, or a run broke a limit | — | `void` | bond unlocked |
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
//! slash's transaction) and the first one's challenger gets the bounty; the others' disputes
//! end `already_slashed` and get their bonds back. The challenger signs the dispute id with
//! its ledger key (strict ed25519), so nobody can spend another key's bond.
//!
//! # Durability: open, judge, close
//!
//! A challenge that passes the checks (and whose image is present) is recorded **before**
//! anything runs, and every verdict is recorded in one more transaction:
//!
//! 1. `open_dispute` (admin request, one event): locks the bond — it leaves the challenger's
//!    deposited balance, so it can be neither withdrawn nor bonded twice while the runs go
//!    on, but stays in the ledger's totals and in the challenger's slashable stake — and
//!    stores the whole challenge (receipt, spec, input: the *evidence*, whose SHA-256 the
//!    event carries) in the ledger's `disputes` table. One dispute id is opened once.
//! 2. the two runs, at once, each holding one of [`MAX_CONCURRENT_REEXECUTIONS`] slots;
//! 3. `close_dispute` (one event): the slash and the bond's release, the burn, or the
//!    release alone, with the verdict (the [`ResultVerdict`] without its event) stored
//!    beside the dispute. A decided dispute cannot be decided again.
//!
//! A verifier killed between 1 and 3 finds the dispute open when it starts again and judges
//! it from the stored evidence ([`Verifier::resume_open_disputes`], also every
//! [`RESUME_INTERVAL`] for disputes whose runs failed for the infrastructure's reasons), so
//! every opened dispute ends in exactly one verdict. The containers of the killed process
//! carry the verifier's Docker label and are removed by the sweep at start.
//!
//! A second submission of an open dispute waits for the same judgment (one per dispute id
//! in this process); a submission of a decided one answers its stored verdict at once
//! (`slashed` reads `already_slashed` then: that submission caused no slash), and
//! `GET /v1/disputes/{id}` answers either state, for a challenger whose connection died.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tracing::Instrument as _;
use vouch_exec::{LimitKind, RunOutcome};
use vouch_proto::{Determinism, Digest, JobId, JobSpec, NetworkId, ReceiptJson, SignedReceipt};

use crate::disputes::Verifier;
use crate::error::{DisputeError, LedgerError};
use crate::events::Event;
use crate::ledger::{DisputeRecord, DisputeVerdict};
use crate::requests::{decimal, Key, RequestBody, Ruling, Sig};

/// Domain tag of a wrong-result offence id.
pub const WRONG_RESULT_TAG: &[u8] = b"vouch/offence/wrong-result/v1";
/// Domain tag of a result dispute id (what the challenger signs).
pub const RESULT_DISPUTE_TAG: &[u8] = vouch_proto::RESULT_DISPUTE_TAG;
/// Re-execution containers running at once. A dispute runs its two together, so this
/// judges two disputes at a time; more wait for slots.
pub const MAX_CONCURRENT_REEXECUTIONS: usize = 4;
/// Runs per dispute (taken from [`MAX_CONCURRENT_REEXECUTIONS`] together).
pub const RUNS_PER_DISPUTE: u32 = 2;
/// How often a running verifier looks for open disputes nobody is judging (those whose
/// runs failed for the infrastructure's reasons, say while Docker was down).
pub const RESUME_INTERVAL: Duration = Duration::from_secs(60);

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
    // SPEC.md §11.1; the construction lives in vouch-proto so that every challenger (the
    // CLI, a node handing off a disagreement) signs exactly what is checked here.
    Ok(vouch_proto::result_dispute_id(
        network,
        &challenger.0,
        receipt_root,
        &bond.asset,
        bond.amount,
    )?)
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
    pub(crate) fn of_receipt(r: &SignedReceipt) -> Self {
        RunReport::Exited {
            output_digest: r.receipt.output_digest,
            output_len: r.receipt.output_len,
            exit_code: r.receipt.exit_code,
        }
    }

    pub(crate) fn of_run(outcome: &RunOutcome) -> Self {
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
    /// A one-token dispute (`kind` `"token"`, [`crate::token`]): the disputed position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    /// A one-token dispute: how many tokens the verifier recomputed (0 when the evidence
    /// settled it, 1 when it ran the model's `step` once). `runs` is empty for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_recomputed: Option<u32>,
    /// A withholding dispute (`kind` `"withholding"`, [`crate::withholding`]): the demand,
    /// its deadline and, once answered, the published evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withholding: Option<crate::withholding::WithholdingView>,
    /// The `close_dispute` event that recorded the verdict: the slash with the bond's
    /// release, the burn, or the release alone. `None` only in the report the ledger
    /// stores with that event.
    pub event: Option<Event>,
}

/// What the ledger stores with an open wrong-result dispute: the whole challenge, so a
/// restarted verifier can judge it. Its SHA-256 is the `evidence` of `open_dispute`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Evidence {
    /// `"wrong_result"`.
    kind: String,
    challenger: Key,
    bond: Bond,
    signature: Sig,
    receipt: ReceiptJson,
    spec: serde_json::Value,
    input_base64: String,
    /// A one-token dispute's own evidence (`kind` `"token"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<crate::token::TokenClaimJson>,
}

impl ResultChallenge {
    /// The evidence bytes stored with the dispute (with `token`: a one-token dispute's).
    pub(crate) fn to_evidence(
        &self,
        token: Option<&crate::token::TokenClaim>,
    ) -> Result<Vec<u8>, DisputeError> {
        let evidence = Evidence {
            kind: if token.is_some() {
                "token"
            } else {
                "wrong_result"
            }
            .into(),
            challenger: self.challenger,
            bond: self.bond.clone(),
            signature: self.signature,
            receipt: self.receipt.to_json(),
            spec: serde_json::to_value(&self.spec)
                .map_err(|e| DisputeError::Internal(format!("spec as JSON: {e}")))?,
            input_base64: base64::engine::general_purpose::STANDARD.encode(&self.input),
            token: token.map(crate::token::TokenClaim::to_json),
        };
        serde_json::to_vec(&evidence)
            .map_err(|e| DisputeError::Internal(format!("evidence as JSON: {e}")))
    }

    /// The challenge stored as evidence, with a one-token dispute's claim; `Err` says why
    /// it cannot be read.
    fn from_evidence(bytes: &[u8]) -> Result<(Self, Option<crate::token::TokenClaim>), String> {
        let e: Evidence = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        let token = match (e.kind.as_str(), e.token) {
            ("wrong_result", None) => None,
            ("token", Some(t)) => Some(crate::token::TokenClaim::from_json(t)?),
            (kind, _) => return Err(format!("evidence of a {kind:?} dispute")),
        };
        let spec_bytes = serde_json::to_vec(&e.spec).map_err(|e| e.to_string())?;
        let challenge = ResultChallenge {
            challenger: e.challenger,
            bond: e.bond,
            signature: e.signature,
            receipt: e.receipt.verify().map_err(|e| format!("receipt: {e}"))?,
            spec: JobSpec::from_json(&spec_bytes).map_err(|e| format!("spec: {e}"))?,
            input: base64::engine::general_purpose::STANDARD
                .decode(e.input_base64.as_bytes())
                .map_err(|e| format!("input: {e}"))?
                .into(),
        };
        Ok((challenge, token))
    }
}

/// A dispute as `GET /v1/disputes/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeStatus {
    /// The dispute id (hex).
    pub dispute: String,
    /// `open` (the bond is locked, the verdict still to come) or `decided`.
    pub state: String,
    /// `wrong_result`, `token` or `withholding`.
    #[serde(default)]
    pub kind: String,
    /// The operator whose receipt is disputed (absent only for unreadable evidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Key>,
    /// A withholding dispute: what is demanded, by when, and the answer once published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withholding: Option<crate::withholding::WithholdingView>,
    /// Whose bond.
    pub challenger: Key,
    /// The bond as opened.
    pub bond: Bond,
    /// What is locked now (zero once decided).
    #[serde(with = "decimal")]
    pub locked: u128,
    /// The `open_dispute` event.
    #[serde(with = "decimal")]
    pub opened_seq: u64,
    /// The verifier's clock when it was opened.
    #[serde(with = "decimal")]
    pub opened_at_ms: u64,
    /// The verdict, once decided.
    pub verdict: Option<ResultVerdict>,
}

/// What the checks before opening found.
enum Admitted {
    /// Never opened: open it.
    New { offence: [u8; 32] },
    /// Opened before and still open: wait for its verdict.
    Open,
    /// Decided before: its verdict.
    Decided(Box<ResultVerdict>),
}

/// The state of one judgment running in this process: `None` until it ends, then why it
/// could not reach a verdict, if it could not.
pub(crate) type Judgment = watch::Receiver<Option<Result<(), String>>>;

impl Verifier {
    /// Judges a wrong-result dispute (see the module docs): checks it, opens it (locking the
    /// bond), re-runs the job twice at once and records the verdict. A refused dispute
    /// (`Err` before opening) changes nothing in the ledger; after opening, an `Err` is
    /// [`DisputeError::Pending`]: the dispute stays open and is judged again later.
    ///
    /// The same challenge again: while it is open, this waits for the same judgment; once
    /// decided, it answers the stored verdict (`slashed` as `already_slashed`).
    pub async fn dispute_result(
        self: &Arc<Self>,
        challenge: ResultChallenge,
        now_ms: u64,
    ) -> Result<ResultVerdict, DisputeError> {
        let dispute = challenge.id(&self.network())?;
        self.open_and_judge(Arc::new(challenge), None, dispute, now_ms)
            .await
    }

    /// Checks, opens and judges a dispute of either tier: `token` makes it a one-token
    /// dispute (T2, [`crate::token`]) whose id is `dispute`.
    pub(crate) async fn open_and_judge(
        self: &Arc<Self>,
        challenge: Arc<ResultChallenge>,
        token: Option<crate::token::TokenClaim>,
        dispute: [u8; 32],
        now_ms: u64,
    ) -> Result<ResultVerdict, DisputeError> {
        let executor = self.executor.clone().ok_or(DisputeError::NoExecutor)?;
        let id = hex::encode(dispute);
        let admitted = {
            let (this, c) = (self.clone(), challenge.clone());
            blocking(move || this.admit_result_challenge(&c, &dispute, now_ms)).await?
        };
        match admitted {
            Admitted::Decided(mut v) => {
                if v.outcome == ResultOutcome::Slashed {
                    v.outcome = ResultOutcome::AlreadySlashed;
                }
                return Ok(*v);
            }
            Admitted::Open => {}
            Admitted::New { offence } => {
                // Before anything is locked: the daemon must answer and hold the image (it
                // is never pulled), or the challenger could not get its bond back soon.
                executor
                    .resolve_image(&challenge.spec.image.to_string())
                    .await?;
                let evidence = challenge.to_evidence(token.as_ref())?;
                let (this, c, key) = (self.clone(), challenge.clone(), id.clone());
                let opened = blocking(move || {
                    let body = RequestBody::OpenDispute {
                        dispute: key,
                        challenger: c.challenger,
                        asset: c.bond.asset.clone(),
                        amount: c.bond.amount,
                        evidence: hex::encode(Sha256::digest(&evidence)),
                    };
                    this.apply_admin_with(body, &evidence, now_ms)
                })
                .await;
                match opened {
                    Ok(applied) => tracing::info!(
                        target: "vouch_verifier::disputes",
                        dispute = %id,
                        offence = %hex::encode(offence),
                        challenger = %challenge.challenger,
                        seq = applied.event.seq,
                        kind = if token.is_some() { "token" } else { "wrong_result" },
                        "dispute opened; bond locked"
                    ),
                    // Opened by a racing submission of the same challenge: join it.
                    Err(DisputeError::Ledger(LedgerError::DisputeExists { .. })) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.await_verdict(&id).await
    }

    /// The dispute `id` as the ledger holds it, with the stored verdict. Blocking.
    pub fn result_dispute_status(&self, id: &str) -> Result<Option<DisputeStatus>, DisputeError> {
        let Some(record) = self.ledger().dispute(id)? else {
            return Ok(None);
        };
        let verdict = match &record.closed {
            None => None,
            Some(_) => Some(self.stored_verdict(&record)?),
        };
        let (kind, operator, withholding) = match &verdict {
            Some(v) => (
                v.kind.clone(),
                Some(v.operator).filter(|k| k.0 != [0; 32]),
                v.withholding.clone(),
            ),
            None => self.open_dispute_about(&record)?,
        };
        Ok(Some(DisputeStatus {
            dispute: record.id,
            state: if verdict.is_some() { "decided" } else { "open" }.into(),
            kind,
            operator,
            withholding,
            challenger: record.challenger,
            bond: Bond {
                asset: record.asset,
                amount: record.bond,
            },
            locked: record.locked,
            opened_seq: record.opened_seq,
            opened_at_ms: record.opened_at_ms,
            verdict,
        }))
    }

    /// Kind, operator and withholding view of an open dispute, from its evidence
    /// (blocking).
    fn open_dispute_about(
        &self,
        record: &DisputeRecord,
    ) -> Result<
        (
            String,
            Option<Key>,
            Option<crate::withholding::WithholdingView>,
        ),
        DisputeError,
    > {
        if let Some(w) = self.withholding_view(record)? {
            let operator = w.receipt.verify().ok().map(|r| Key(r.receipt.operator.0));
            return Ok((crate::withholding::KIND.into(), operator, Some(w)));
        }
        let evidence = self
            .ledger()
            .dispute_evidence(&record.id)?
            .unwrap_or_default();
        Ok(match ResultChallenge::from_evidence(&evidence) {
            Ok((c, token)) => (
                if token.is_some() {
                    "token"
                } else {
                    "wrong_result"
                }
                .into(),
                Some(Key(c.receipt.receipt.operator.0)),
                None,
            ),
            Err(_) => (
                crate::withholding::evidence_kind(&evidence).unwrap_or_default(),
                None,
                None,
            ),
        })
    }

    /// Starts judging every open dispute that no task of this process is judging yet (at
    /// start, after a crash; then every [`RESUME_INTERVAL`]): re-executions and token steps
    /// when this verifier has an executor, withholding deadlines always. Returns how many
    /// it started or found running.
    pub async fn resume_open_disputes(self: &Arc<Self>) -> Result<usize, DisputeError> {
        let this = self.clone();
        let open = blocking(move || {
            let ledger = this.ledger();
            let mut out = vec![];
            for d in ledger.open_disputes()? {
                let runs = this.executor.is_some()
                    || ledger
                        .dispute_evidence(&d.id)?
                        .and_then(|e| crate::withholding::evidence_kind(&e))
                        .as_deref()
                        == Some(crate::withholding::KIND);
                if runs {
                    out.push(d.id);
                }
            }
            Ok(out)
        })
        .await?;
        for id in &open {
            self.judge_in_background(id);
        }
        Ok(open.len())
    }

    /// The verdict of a decided dispute: the stored report with its event. Blocking.
    fn stored_verdict(&self, record: &DisputeRecord) -> Result<ResultVerdict, DisputeError> {
        let Some(closed) = &record.closed else {
            return Err(DisputeError::Internal(format!(
                "dispute {} is not decided",
                record.id
            )));
        };
        let verdict = match closed
            .report
            .as_deref()
            .map(serde_json::from_str::<ResultVerdict>)
        {
            Some(Ok(v)) => v,
            // Decided by another admin client without our report: say what the ledger knows.
            _ => {
                let evidence = self
                    .ledger()
                    .dispute_evidence(&record.id)?
                    .unwrap_or_default();
                if let Some(v) = self.withholding_fallback_report(record, &evidence) {
                    return self.with_outcome(v, record);
                }
                let (c, token) = ResultChallenge::from_evidence(&evidence).map_err(|why| {
                    DisputeError::Internal(format!("dispute {}: evidence: {why}", record.id))
                })?;
                let mut v = report_of(&c, &record.id, vec![]);
                if let Some(t) = token {
                    v.kind = "token".into();
                    v.position = Some(t.position);
                }
                v.reason = "decided without a report from this verifier".into();
                v
            }
        };
        self.with_outcome(verdict, record)
    }

    /// `verdict` with the ledger's outcome and event for `record` (decided). Blocking.
    fn with_outcome(
        &self,
        mut verdict: ResultVerdict,
        record: &DisputeRecord,
    ) -> Result<ResultVerdict, DisputeError> {
        let Some(closed) = &record.closed else {
            return Err(DisputeError::Internal(format!(
                "dispute {} is not decided",
                record.id
            )));
        };
        verdict.outcome = match closed.verdict {
            DisputeVerdict::Slashed => ResultOutcome::Slashed,
            DisputeVerdict::AlreadySlashed => ResultOutcome::AlreadySlashed,
            DisputeVerdict::Dismissed => ResultOutcome::Dismissed,
            DisputeVerdict::Void => ResultOutcome::Void,
        };
        verdict.bond_forfeited = closed.verdict == DisputeVerdict::Dismissed;
        verdict.event = Some(self.event_at(closed.seq, &record.id)?);
        Ok(verdict)
    }

    /// Checks before opening (blocking: ledger reads). A dispute the ledger already holds
    /// skips the rest: it was checked when it was opened.
    fn admit_result_challenge(
        &self,
        c: &ResultChallenge,
        dispute: &[u8; 32],
        now_ms: u64,
    ) -> Result<Admitted, DisputeError> {
        if c.challenger == Key::of(self.admin()) {
            return Err(DisputeError::Challenger(
                "the verifier's own key cannot challenge".into(),
            ));
        }
        c.challenger.verify("challenger", dispute, &c.signature)?;
        let ledger = self.ledger();
        if let Some(record) = ledger.dispute(&hex::encode(dispute))? {
            return Ok(match record.closed {
                None => Admitted::Open,
                Some(_) => Admitted::Decided(Box::new(self.stored_verdict(&record)?)),
            });
        }
        let r = &c.receipt;
        self.check_receipt(r)?;
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
        let window_ms = ledger.config().challenge_window_ms();
        let open_until = r.receipt.issued_at_ms.saturating_add(window_ms);
        if open_until < now_ms {
            return Err(DisputeError::Final {
                issued_at_ms: r.receipt.issued_at_ms,
                window_ms,
                now_ms,
            });
        }
        check_operator_and_bond(ledger.as_ref(), r, &c.bond)?;
        // Checked again, atomically, when the bond is locked; here so that a challenge that
        // cannot be bonded is refused before Docker is asked anything.
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
        Ok(Admitted::New {
            offence: wrong_result_offence(r),
        })
    }

    /// The receipt's signature verifies and it is for this verifier's network.
    pub(crate) fn check_receipt(&self, r: &SignedReceipt) -> Result<(), DisputeError> {
        r.verify().map_err(|source| DisputeError::Receipt {
            which: "receipt",
            source,
        })?;
        if r.receipt.network_id != self.network() {
            return Err(DisputeError::WrongNetwork {
                which: "receipt",
                got: r.receipt.network_id,
                expected: self.network(),
            });
        }
        Ok(())
    }

    /// Waits for the judgment of the open dispute `id` (starting it if none runs) and
    /// answers the verdict the ledger then holds.
    async fn await_verdict(self: &Arc<Self>, id: &str) -> Result<ResultVerdict, DisputeError> {
        let mut judgment = self.judge_in_background(id);
        let why = match judgment.wait_for(Option::is_some).await.as_deref() {
            Ok(Some(Ok(()))) => None,
            Ok(Some(Err(why))) => Some(why.clone()),
            _ => Some("the judgment ended without an answer".to_owned()),
        };
        let (this, key) = (self.clone(), id.to_owned());
        let status = blocking(move || this.result_dispute_status(&key)).await?;
        match status.and_then(|s| s.verdict) {
            Some(v) => Ok(v),
            None => Err(DisputeError::Pending {
                dispute: id.to_owned(),
                why: why.unwrap_or_else(|| "it is still being judged".into()),
            }),
        }
    }

    /// The judgment of `id` running in this process, started if there is none: one per
    /// dispute, whoever asks. It runs in its own task, so a challenger that hangs up does
    /// not stop it.
    pub(crate) fn judge_in_background(self: &Arc<Self>, id: &str) -> Judgment {
        let mut running = self
            .judgments
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A closed channel is a judgment that ended (or whose task died): start another.
        if let Some(j) = running.get(id).filter(|j| j.has_changed().is_ok()) {
            return j.clone();
        }
        let (tx, rx) = watch::channel(None);
        running.insert(id.to_owned(), rx.clone());
        let (this, key) = (self.clone(), id.to_owned());
        let span = tracing::info_span!(target: "vouch_verifier::disputes", "judge", dispute = %id);
        tokio::spawn(
            async move {
                let result = this.judge(&key).await;
                if let Err(e) = &result {
                    tracing::warn!(target: "vouch_verifier::disputes", %e, "no verdict yet; the dispute stays open");
                }
                this.judgments
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&key);
                let _ = tx.send(Some(result.map_err(|e| e.to_string())));
            }
            .instrument(span),
        );
        rx
    }

    /// Judges the open dispute `id` from its stored evidence and records the verdict.
    async fn judge(self: &Arc<Self>, id: &str) -> Result<(), DisputeError> {
        let (this, key) = (self.clone(), id.to_owned());
        let (record, evidence) = blocking(move || {
            let ledger = this.ledger();
            Ok((ledger.dispute(&key)?, ledger.dispute_evidence(&key)?))
        })
        .await?;
        let record = record.ok_or_else(|| LedgerError::UnknownDispute(id.to_owned()))?;
        if record.closed.is_some() {
            return Ok(());
        }
        let evidence = evidence.unwrap_or_default();
        match crate::withholding::stored(&evidence) {
            Ok(Some(w)) => return self.judge_withholding(id, w).await,
            Ok(None) => {}
            Err(why) => {
                return self
                    .close_blocking(id, Ruling::Void, unreadable_report(&record, &why))
                    .await
            }
        }
        let executor = self.executor.clone().ok_or(DisputeError::NoExecutor)?;
        let (challenge, token) = match ResultChallenge::from_evidence(&evidence) {
            Ok(c) => c,
            // Only an admin client other than this verifier can store such evidence; the
            // bond goes back, as for any dispute without a verdict.
            Err(why) => {
                return self
                    .close_blocking(id, Ruling::Void, unreadable_report(&record, &why))
                    .await
            }
        };
        if let Some(claim) = token {
            let (ruling, report) = self
                .judge_token(executor.as_ref(), &challenge, &claim, id)
                .await?;
            return self.close_blocking(id, ruling, report).await;
        }
        let job_id = challenge.receipt.receipt.job_id;
        let runs = {
            // The semaphore is never closed, so acquiring only fails if it were.
            let _slots = self
                .reexec
                .acquire_many(RUNS_PER_DISPUTE)
                .await
                .map_err(|_| DisputeError::NoExecutor)?;
            let (spec, input) = (&challenge.spec, &challenge.input);
            let (a, b) = tokio::join!(
                executor.run(job_id, spec, input.clone()),
                executor.run(job_id, spec, input.clone()),
            );
            vec![RunReport::of_run(&a?), RunReport::of_run(&b?)]
        };
        let mut report = report_of(&challenge, id, runs.clone());
        let ruling = if let Some(detail) = runs.iter().find_map(|r| match r {
            RunReport::LimitExceeded { detail, .. } => Some(detail.clone()),
            RunReport::Exited { .. } => None,
        }) {
            report.reason =
                format!("a re-execution broke a limit, so there is no result to compare: {detail}");
            Ruling::Void
        } else if runs[0] != runs[1] {
            report.reason = "the two re-executions differ: the workload is not deterministic, \
                             so neither proves the receipt wrong"
                .into();
            Ruling::Void
        } else if runs[0] == report.receipt {
            report.reason =
                "both re-executions give the receipt's result; the challenger's bond is forfeited"
                    .into();
            Ruling::Dismissed
        } else {
            report.reason =
                "both re-executions agree with each other and not with the receipt".into();
            let config = self.config();
            Ruling::Slashed {
                operator: report.operator,
                fraction_ppm: config.wrong_result_slash_ppm,
                bounty_ppm: config.bounty_ppm,
                jail: config.jail,
                offence: report.offence.clone(),
            }
        };
        self.close_blocking(id, ruling, report).await
    }

    async fn close_blocking(
        self: &Arc<Self>,
        id: &str,
        ruling: Ruling,
        report: ResultVerdict,
    ) -> Result<(), DisputeError> {
        let (this, key) = (self.clone(), id.to_owned());
        blocking(move || this.close(&key, ruling, report)).await
    }

    /// Records the verdict: one `close_dispute`. A slash that another dispute got in first
    /// becomes `already_slashed`. Blocking.
    pub(crate) fn close(
        &self,
        id: &str,
        ruling: Ruling,
        mut report: ResultVerdict,
    ) -> Result<(), DisputeError> {
        let now_ms = self.now_ms();
        let mut ruling = ruling;
        for _ in 0..2 {
            report.outcome = match &ruling {
                Ruling::Slashed { .. } => ResultOutcome::Slashed,
                Ruling::AlreadySlashed { .. } => ResultOutcome::AlreadySlashed,
                Ruling::Dismissed => ResultOutcome::Dismissed,
                Ruling::Void => ResultOutcome::Void,
            };
            report.bond_forfeited = ruling == Ruling::Dismissed;
            report.event = None;
            let text = serde_json::to_vec(&report)
                .map_err(|e| DisputeError::Internal(format!("report as JSON: {e}")))?;
            let body = RequestBody::CloseDispute {
                dispute: id.to_owned(),
                ruling: ruling.clone(),
            };
            match self.apply_admin_with(body, &text, now_ms) {
                Ok(applied) => {
                    tracing::info!(
                        target: "vouch_verifier::disputes",
                        dispute = %id,
                        job_id = %report.job_id,
                        outcome = ?report.outcome,
                        operator = %report.operator,
                        seq = applied.event.seq,
                        kind = %report.kind,
                        "dispute decided"
                    );
                    return Ok(());
                }
                Err(DisputeError::Ledger(LedgerError::AlreadySlashed { offence, .. })) => {
                    report.reason = format!(
                        "{}; an earlier dispute already slashed this receipt",
                        report.reason
                    );
                    ruling = Ruling::AlreadySlashed { offence };
                }
                // Decided meanwhile by another writer of the ledger file.
                Err(DisputeError::Ledger(LedgerError::DisputeClosed { .. })) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Err(DisputeError::Internal(format!(
            "dispute {id}: the offence was both slashed and not slashed"
        )))
    }
}

impl ResultVerdict {
    /// A `wrong_result` report of dispute `id` about `receipt`, to be completed by the
    /// ruling.
    pub(crate) fn about(receipt: &SignedReceipt, id: &str) -> Self {
        ResultVerdict {
            kind: "wrong_result".into(),
            outcome: ResultOutcome::Void,
            reason: String::new(),
            offence: hex::encode(wrong_result_offence(receipt)),
            dispute: id.to_owned(),
            operator: Key(receipt.receipt.operator.0),
            job_id: receipt.receipt.job_id,
            receipt: RunReport::of_receipt(receipt),
            runs: vec![],
            bond_forfeited: false,
            position: None,
            tokens_recomputed: None,
            withholding: None,
            event: None,
        }
    }
}

/// The receipt's operator is registered and the bond is not zero (blocking: a ledger read).
pub(crate) fn check_operator_and_bond(
    ledger: &dyn crate::ledger::CollateralLedger,
    r: &SignedReceipt,
    bond: &Bond,
) -> Result<(), DisputeError> {
    let operator = Key(r.receipt.operator.0);
    ledger
        .operator(&operator)?
        .ok_or(LedgerError::UnknownOperator(operator))?;
    if bond.amount == 0 {
        return Err(LedgerError::Invalid("bond amount must be greater than zero".into()).into());
    }
    Ok(())
}

/// A verdict report for `challenge` with `runs`, to be completed by the ruling.
pub(crate) fn report_of(
    challenge: &ResultChallenge,
    id: &str,
    runs: Vec<RunReport>,
) -> ResultVerdict {
    let mut v = ResultVerdict::about(&challenge.receipt, id);
    v.runs = runs;
    v
}

/// The report of a dispute whose evidence cannot be read (so it names no job).
fn unreadable_report(record: &DisputeRecord, why: &str) -> ResultVerdict {
    ResultVerdict {
        kind: "wrong_result".into(),
        outcome: ResultOutcome::Void,
        reason: format!("the stored evidence cannot be read ({why}), so there is nothing to judge"),
        offence: String::new(),
        dispute: record.id.clone(),
        operator: Key([0; 32]),
        job_id: JobId([0; 32]),
        receipt: RunReport::LimitExceeded {
            limit: "evidence".into(),
            detail: why.to_owned(),
        },
        runs: vec![],
        bond_forfeited: false,
        position: None,
        tokens_recomputed: None,
        withholding: None,
        event: None,
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DisputeError> + Send + 'static,
) -> Result<T, DisputeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DisputeError::Internal(format!("ledger task failed: {e}")))?
}
