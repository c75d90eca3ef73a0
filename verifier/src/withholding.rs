//! Withholding disputes: an operator that will not publish the evidence behind a receipt it
//! signed (DESIGN.md "Disputes, in tiers", T0; SPEC.md §11.5).
//!
//! Every other dispute needs data only the operator may hold: a one-token dispute needs the
//! served output and the operator's trace leaves with their Merkle openings, a watcher
//! needs the output to check a receipt at all. A node serves them (`GET
//! /v1/jobs/{id}/output`, `/trace/{t}`), but an operator that refuses to could make its
//! receipts unchallengeable. So a challenger that cannot get them names what it
//! **demands** — the output bytes, trace positions, or both — against a signed receipt,
//! bonds and signs, and the verifier makes the demand public with a **deadline**:
//!
//! | by the deadline | verdict | ledger (`close_dispute`) |
//! |---|---|---|
//! | anyone posts an answer (`POST /v1/disputes/{id}/answer`) whose output hashes to the signed `output_digest`/`output_len` and whose every demanded leaf opens against the signed `trace_root`/`trace_len` | `void`: the data is published in the verdict, the bond comes back | bond unlocked |
//! | no such answer | `slashed`: the receipt's wrong-result offence (a receipt nobody can check counts as a wrong one, and is slashed once whichever tier proves it) | slash, bounty, jail; bond unlocked |
//!
//! The answer authenticates itself against the signed receipt, so it needs no signature:
//! the operator's node answers on its own (it polls `GET /v1/disputes?state=open&
//! kind=withholding&operator=…`), and anyone holding the data may answer for it. An answer
//! that does not open is refused (422 `bad_answer`) and changes nothing; the operator may
//! send a better one until the deadline. The bond comes back on an answer because the
//! dispute's purpose is to get the data out, not to punish a challenger whose fetch failed
//! (an operator that was down for a while, say); it is locked until the answer, and one
//! challenger can open one dispute per receipt and demand.
//!
//! Admission is that of a result challenge without the spec and input (signature over the
//! withholding dispute id, network, registered operator, bond), plus: the demand is not
//! empty, its positions are increasing, fewer than [`MAX_POSITIONS`] and inside the signed
//! `trace_len`, a demanded output is at most [`MAX_WITHHELD_OUTPUT`] bytes (so an answer
//! fits one request body); and the challenge window must stay open for two deadlines, so
//! that published data can still be disputed. The deadline is the verifier's
//! (`--withholding-deadline-ms`, default [`DEFAULT_DEADLINE_MS`]), stored in the evidence,
//! and survives a restart: the resumed judgment waits for what is left of it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use vouch_proto::{Digest, NetworkId, ReceiptJson, SignedReceipt};

use crate::disputes::Verifier;
use crate::error::{DisputeError, LedgerError};
use crate::ledger::DisputeRecord;
use crate::reexec::{wrong_result_offence, Bond, DisputeStatus, ResultOutcome, ResultVerdict};
use crate::requests::{Key, RequestBody, Ruling, Sig};

/// How long an operator has to answer, unless configured.
pub const DEFAULT_DEADLINE_MS: u64 = 60_000;
/// Most trace positions one dispute may demand.
pub const MAX_POSITIONS: usize = 64;
/// Largest output a dispute may demand. With an input (at most what a node accepts, 16
/// MiB) and a spec, its base64 fits [`MAX_ANSWER_BYTES`].
pub const MAX_WITHHELD_OUTPUT: u64 = 16 << 20;
/// Largest answer body (`POST /v1/disputes/{id}/answer`).
pub const MAX_ANSWER_BYTES: usize = 48 << 20;
/// `kind` of a withholding dispute's evidence and verdict.
pub const KIND: &str = "withholding";

/// What the challenger demands be published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demand {
    /// The job spec (its job id is the receipt's): what a re-execution needs.
    #[serde(default)]
    pub spec: bool,
    /// The input bytes (their SHA-256 is the receipt's `input_digest`).
    #[serde(default)]
    pub input: bool,
    /// The output bytes (their SHA-256 and length are the receipt's).
    #[serde(default)]
    pub output: bool,
    /// Trace positions whose leaves and openings are demanded, increasing.
    #[serde(default)]
    pub positions: Vec<u32>,
}

/// One leaf with its opening, as answered (hex, like `GET /v1/jobs/{id}/trace/{t}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Opening {
    /// The position.
    pub index: u32,
    /// The leaf, hex.
    pub leaf: String,
    /// Sibling hashes, bottom-up, 64 hex each.
    pub proof: Vec<String>,
}

/// Body of `POST /v1/disputes/{id}/answer`: exactly what was demanded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The job spec (SPEC.md §2), when demanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<serde_json::Value>,
    /// The input, base64, when demanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_base64: Option<String>,
    /// The output, base64, when demanded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_base64: Option<String>,
    /// One opening per demanded position.
    #[serde(default)]
    pub leaves: Vec<Opening>,
}

/// A withholding dispute as `GET /v1/disputes/{id}` shows it (open or decided).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithholdingView {
    /// The receipt whose evidence is demanded.
    pub receipt: ReceiptJson,
    /// What is demanded.
    pub demand: Demand,
    /// An answer must arrive by then (the verifier's clock, ms since the Unix epoch).
    pub deadline_ms: u64,
    /// The published answer, once one was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<Answer>,
    /// When it was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at_ms: Option<u64>,
}

/// A withholding challenge (what `POST /v1/disputes/withholding` carries).
#[derive(Debug, Clone)]
pub struct WithholdingChallenge {
    /// Receives the bounty; its deposited balance holds the bond.
    pub challenger: Key,
    /// Locked until the verdict; never burned (see the module docs).
    pub bond: Bond,
    /// The challenger's signature over [`withholding_dispute_id`].
    pub signature: Sig,
    /// The receipt.
    pub receipt: SignedReceipt,
    /// What must be published.
    pub demand: Demand,
}

/// The id of a withholding dispute (SPEC.md §11.5); the challenger signs it.
pub fn withholding_dispute_id(
    network: &NetworkId,
    challenger: &Key,
    receipt_root: &[u8; 32],
    demand: &Demand,
    bond: &Bond,
) -> Result<[u8; 32], LedgerError> {
    Ok(vouch_proto::withholding_dispute_id(
        network,
        &challenger.0,
        receipt_root,
        vouch_proto::DemandFlags {
            spec: demand.spec,
            input: demand.input,
            output: demand.output,
        },
        &demand.positions,
        &bond.asset,
        bond.amount,
    )?)
}

impl WithholdingChallenge {
    /// Builds and signs a challenge as `challenger` (what a client does).
    pub fn sign(
        network: &NetworkId,
        challenger: &SigningKey,
        bond: Bond,
        receipt: SignedReceipt,
        demand: Demand,
    ) -> Result<Self, LedgerError> {
        let key = Key::of(challenger);
        let id = withholding_dispute_id(
            network,
            &key,
            &receipt.receipt.signing_root(),
            &demand,
            &bond,
        )?;
        Ok(WithholdingChallenge {
            challenger: key,
            bond,
            signature: Sig(challenger.sign(&id).to_bytes()),
            receipt,
            demand,
        })
    }

    /// This challenge's id on `network`.
    pub fn id(&self, network: &NetworkId) -> Result<[u8; 32], LedgerError> {
        withholding_dispute_id(
            network,
            &self.challenger,
            &self.receipt.receipt.signing_root(),
            &self.demand,
            &self.bond,
        )
    }
}

/// What the ledger stores with an open withholding dispute.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Evidence {
    kind: String,
    challenger: Key,
    bond: Bond,
    signature: Sig,
    receipt: ReceiptJson,
    demand: Demand,
    deadline_ms: u64,
}

/// An open withholding dispute as read back from its evidence.
pub(crate) struct Stored {
    receipt: SignedReceipt,
    demand: Demand,
    deadline_ms: u64,
}

impl Stored {
    fn view(&self) -> WithholdingView {
        WithholdingView {
            receipt: self.receipt.to_json(),
            demand: self.demand.clone(),
            deadline_ms: self.deadline_ms,
            answer: None,
            answered_at_ms: None,
        }
    }
}

/// The `kind` field of stored evidence, if it has one.
pub(crate) fn evidence_kind(evidence: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Kind {
        kind: String,
    }
    serde_json::from_slice::<Kind>(evidence)
        .ok()
        .map(|k| k.kind)
}

/// The evidence of a withholding dispute: `None` if it is another kind, `Err` if it cannot
/// be read.
pub(crate) fn stored(evidence: &[u8]) -> Result<Option<Stored>, String> {
    if evidence_kind(evidence).as_deref() != Some(KIND) {
        return Ok(None);
    }
    let e: Evidence = serde_json::from_slice(evidence).map_err(|e| e.to_string())?;
    Ok(Some(Stored {
        receipt: e.receipt.verify().map_err(|e| format!("receipt: {e}"))?,
        demand: e.demand,
        deadline_ms: e.deadline_ms,
    }))
}

/// Checks a demand against the receipt it is about.
fn check_demand(receipt: &SignedReceipt, d: &Demand) -> Result<(), DisputeError> {
    let r = &receipt.receipt;
    let bad = |why: String| Err(DisputeError::BadDemand(why));
    if !d.spec && !d.input && !d.output && d.positions.is_empty() {
        return bad(
            "the demand is empty: ask for the spec, the input, the output or trace positions"
                .into(),
        );
    }
    if d.positions.len() > MAX_POSITIONS {
        return bad(format!(
            "{} positions demanded, at most {MAX_POSITIONS}",
            d.positions.len()
        ));
    }
    if d.positions.windows(2).any(|w| w[0] >= w[1]) {
        return bad("positions must be strictly increasing".into());
    }
    if let Some(&last) = d.positions.last() {
        if u64::from(last) >= r.trace_len {
            return bad(format!(
                "position {last} is outside the signed trace of {} leaves",
                r.trace_len
            ));
        }
    }
    if d.output && r.output_len > MAX_WITHHELD_OUTPUT {
        return bad(format!(
            "the output is {} bytes; at most {MAX_WITHHELD_OUTPUT} can be demanded",
            r.output_len
        ));
    }
    Ok(())
}

/// Checks an answer against the demand and the signed receipt; `Err` says what is wrong.
fn check_answer(stored: &Stored, answer: &Answer) -> Result<(), String> {
    let r = &stored.receipt.receipt;
    match (&answer.spec, stored.demand.spec) {
        (None, true) => return Err("the spec was demanded and is missing".into()),
        (Some(_), false) => return Err("the spec was not demanded".into()),
        (Some(spec), true) => {
            let bytes = serde_json::to_vec(spec).map_err(|e| e.to_string())?;
            let spec = vouch_proto::JobSpec::from_json(&bytes)
                .map_err(|e| format!("the spec is not a valid job spec (SPEC.md §2): {e}"))?;
            let id = spec
                .job_id()
                .map_err(|e| format!("the spec has no job id: {e}"))?;
            if id != r.job_id {
                return Err(format!(
                    "the spec's job id is {id}, the receipt's {}",
                    r.job_id
                ));
            }
        }
        (None, false) => {}
    }
    match (&answer.input_base64, stored.demand.input) {
        (None, true) => return Err("the input was demanded and is missing".into()),
        (Some(_), false) => return Err("the input was not demanded".into()),
        (Some(b64), true) => {
            let input = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| format!("input_base64 is not base64: {e}"))?;
            if Digest::of(&input) != r.input_digest {
                return Err(format!(
                    "the input's SHA-256 is {}, the receipt's input_digest {}",
                    Digest::of(&input),
                    r.input_digest
                ));
            }
        }
        (None, false) => {}
    }
    match (&answer.output_base64, stored.demand.output) {
        (None, true) => return Err("the output was demanded and is missing".into()),
        (Some(_), false) => return Err("the output was not demanded".into()),
        (Some(b64), true) => {
            let output = base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| format!("output_base64 is not base64: {e}"))?;
            if output.len() as u64 != r.output_len || Digest::of(&output) != r.output_digest {
                return Err(format!(
                    "the output given ({} bytes, SHA-256 {}) is not the signed one ({} bytes, {})",
                    output.len(),
                    Digest::of(&output),
                    r.output_len,
                    r.output_digest
                ));
            }
        }
        (None, false) => {}
    }
    let mut given: Vec<u32> = answer.leaves.iter().map(|o| o.index).collect();
    given.sort_unstable();
    if given != stored.demand.positions {
        return Err(format!(
            "leaves given for positions {given:?}, demanded {:?}",
            stored.demand.positions
        ));
    }
    for o in &answer.leaves {
        let leaf = hex::decode(&o.leaf).map_err(|e| format!("leaf {} is not hex: {e}", o.index))?;
        let proof =
            crate::token::parse_proof(&o.proof).map_err(|e| format!("leaf {}: {e}", o.index))?;
        vouch_proto::verify_merkle_proof(
            &r.trace_root,
            r.trace_len,
            u64::from(o.index),
            &leaf,
            &proof,
        )
        .map_err(|e| {
            format!(
                "leaf {} does not open against the signed trace_root and trace_len: {e}",
                o.index
            )
        })?;
    }
    Ok(())
}

/// The verdict report of a withholding dispute.
fn report(stored: &Stored, id: &str) -> ResultVerdict {
    let mut v = ResultVerdict::about(&stored.receipt, id);
    v.kind = KIND.into();
    v.withholding = Some(stored.view());
    v
}

impl Verifier {
    /// Opens a withholding dispute (see the module docs): checks it, locks the bond,
    /// stores the demand with its deadline and starts the deadline's watch. Answers the
    /// dispute's status at once (the same challenge again answers its current status).
    pub async fn dispute_withholding(
        self: &Arc<Self>,
        c: WithholdingChallenge,
        now_ms: u64,
    ) -> Result<DisputeStatus, DisputeError> {
        let id = hex::encode(c.id(&self.network())?);
        let (this, key) = (self.clone(), id.clone());
        blocking(move || this.open_withholding(&c, &key, now_ms)).await?;
        self.watch_deadline(&id);
        let (this, key) = (self.clone(), id.clone());
        blocking(move || {
            this.result_dispute_status(&key)?
                .ok_or_else(|| LedgerError::UnknownDispute(key).into())
        })
        .await
    }

    /// Admission and `open_dispute` (blocking). A dispute the ledger holds is left as it is.
    fn open_withholding(
        &self,
        c: &WithholdingChallenge,
        id: &str,
        now_ms: u64,
    ) -> Result<(), DisputeError> {
        if c.challenger == Key::of(self.admin()) {
            return Err(DisputeError::Challenger(
                "the verifier's own key cannot challenge".into(),
            ));
        }
        let mut raw = [0u8; 32];
        hex::decode_to_slice(id, &mut raw)
            .map_err(|e| DisputeError::Internal(format!("dispute id: {e}")))?;
        c.challenger.verify("challenger", &raw, &c.signature)?;
        let ledger = self.ledger();
        if ledger.dispute(id)?.is_some() {
            return Ok(());
        }
        let r = &c.receipt;
        self.check_receipt(r)?;
        check_demand(r, &c.demand)?;
        let window_ms = ledger.config().challenge_window_ms();
        let deadline_ms = now_ms.saturating_add(self.withholding_deadline_ms());
        let final_at = r.receipt.issued_at_ms.saturating_add(window_ms);
        // Published data must still be disputable: a deadline, then another to use it.
        if deadline_ms.saturating_add(self.withholding_deadline_ms()) > final_at {
            return Err(DisputeError::Final {
                issued_at_ms: r.receipt.issued_at_ms,
                window_ms: window_ms.saturating_sub(self.withholding_deadline_ms() * 2),
                now_ms,
            });
        }
        crate::reexec::check_operator_and_bond(ledger.as_ref(), r, &c.bond)?;
        let operator = Key(r.receipt.operator.0);
        let evidence = serde_json::to_vec(&Evidence {
            kind: KIND.into(),
            challenger: c.challenger,
            bond: c.bond.clone(),
            signature: c.signature,
            receipt: r.to_json(),
            demand: c.demand.clone(),
            deadline_ms,
        })
        .map_err(|e| DisputeError::Internal(format!("evidence as JSON: {e}")))?;
        let body = RequestBody::OpenDispute {
            dispute: id.to_owned(),
            challenger: c.challenger,
            asset: c.bond.asset.clone(),
            amount: c.bond.amount,
            evidence: hex::encode(Sha256::digest(&evidence)),
        };
        match self.apply_admin_with(body, &evidence, now_ms) {
            Ok(applied) => {
                tracing::info!(
                    target: "vouch_verifier::disputes",
                    dispute = %id,
                    operator = %operator,
                    job_id = %r.receipt.job_id,
                    deadline_ms,
                    seq = applied.event.seq,
                    kind = KIND,
                    "dispute opened; bond locked; the operator must publish the demanded evidence"
                );
                Ok(())
            }
            Err(DisputeError::Ledger(LedgerError::DisputeExists { .. })) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Takes an answer to the open withholding dispute `id`: a complete one that opens
    /// against the signed receipt, before the deadline, decides it `void` and publishes
    /// the data in the verdict. Anything else is refused and changes nothing.
    pub async fn answer_withholding(
        self: &Arc<Self>,
        id: &str,
        answer: Answer,
        now_ms: u64,
    ) -> Result<DisputeStatus, DisputeError> {
        let (this, key) = (self.clone(), id.to_owned());
        blocking(move || {
            let ledger = this.ledger();
            let record = ledger
                .dispute(&key)?
                .ok_or_else(|| LedgerError::UnknownDispute(key.clone()))?;
            if let Some(closed) = &record.closed {
                return Err(LedgerError::DisputeClosed {
                    dispute: key,
                    event_seq: closed.seq,
                }
                .into());
            }
            let evidence = ledger.dispute_evidence(&key)?.unwrap_or_default();
            let stored = stored(&evidence)
                .map_err(|why| DisputeError::Internal(format!("dispute {key}: {why}")))?
                .ok_or_else(|| {
                    DisputeError::BadAnswer(format!(
                        "dispute {key} is not a withholding dispute: there is nothing to answer"
                    ))
                })?;
            if now_ms > stored.deadline_ms {
                return Err(DisputeError::DeadlinePassed {
                    deadline_ms: stored.deadline_ms,
                    now_ms,
                });
            }
            check_answer(&stored, &answer).map_err(DisputeError::BadAnswer)?;
            let mut v = report(&stored, &key);
            v.reason = "the demanded evidence was published before the deadline and opens \
                        against the signed receipt; the bond is returned"
                .into();
            if let Some(w) = v.withholding.as_mut() {
                w.answer = Some(answer);
                w.answered_at_ms = Some(now_ms);
            }
            this.close(&key, Ruling::Void, v)?;
            let status = this
                .result_dispute_status(&key)?
                .ok_or_else(|| LedgerError::UnknownDispute(key.clone()))?;
            // The deadline's slash may have been recorded first.
            match status.verdict.as_ref().map(|v| v.outcome) {
                Some(ResultOutcome::Void) => Ok(status),
                _ => Err(DisputeError::DeadlinePassed {
                    deadline_ms: stored.deadline_ms,
                    now_ms,
                }),
            }
        })
        .await
    }

    /// Starts the deadline's watch of `id` unless one runs ([`Verifier::judge_in_background`]).
    pub(crate) fn watch_deadline(self: &Arc<Self>, id: &str) {
        drop(self.judge_in_background(id));
    }

    /// The judgment of an open withholding dispute: waits for its deadline, then slashes
    /// unless an answer decided it first.
    pub(crate) async fn judge_withholding(
        self: &Arc<Self>,
        id: &str,
        stored: Stored,
    ) -> Result<(), DisputeError> {
        loop {
            let now = self.now_ms();
            if now > stored.deadline_ms {
                break;
            }
            let left = stored.deadline_ms - now + 1;
            tokio::time::sleep(Duration::from_millis(left.min(1_000))).await;
            let (this, key) = (self.clone(), id.to_owned());
            let closed = blocking(move || Ok(this.ledger().dispute(&key)?))
                .await?
                .is_none_or(|r| r.closed.is_some());
            if closed {
                return Ok(());
            }
        }
        let mut v = report(&stored, id);
        v.reason = format!(
            "the operator did not publish the demanded evidence ({}) by the deadline ({} ms): \
             a receipt whose evidence is withheld cannot be checked and is slashed as a \
             wrong result",
            describe(&stored.demand),
            stored.deadline_ms
        );
        let config = self.config();
        let ruling = Ruling::Slashed {
            operator: v.operator,
            fraction_ppm: config.wrong_result_slash_ppm,
            bounty_ppm: config.bounty_ppm,
            jail: config.jail,
            offence: hex::encode(wrong_result_offence(&stored.receipt)),
        };
        let (this, key) = (self.clone(), id.to_owned());
        blocking(move || this.close(&key, ruling, v)).await
    }

    /// What a withholding dispute shows while open (blocking): `None` for other kinds.
    pub(crate) fn withholding_view(
        &self,
        record: &DisputeRecord,
    ) -> Result<Option<WithholdingView>, DisputeError> {
        let evidence = self
            .ledger()
            .dispute_evidence(&record.id)?
            .unwrap_or_default();
        Ok(stored(&evidence)
            .map_err(|why| DisputeError::Internal(format!("dispute {}: {why}", record.id)))?
            .map(|s| s.view()))
    }

    /// The report of a decided withholding dispute stored without one (blocking).
    pub(crate) fn withholding_fallback_report(
        &self,
        record: &DisputeRecord,
        evidence: &[u8],
    ) -> Option<ResultVerdict> {
        let s = stored(evidence).ok()??;
        let mut v = report(&s, &record.id);
        v.reason = "decided without a report from this verifier".into();
        Some(v)
    }
}

/// The demand in words.
fn describe(d: &Demand) -> String {
    let mut parts: Vec<String> = [
        (d.spec, "the spec"),
        (d.input, "the input"),
        (d.output, "the output"),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .map(|(_, what)| (*what).to_owned())
    .collect();
    if !d.positions.is_empty() {
        parts.push(format!("{} trace leaves with openings", d.positions.len()));
    }
    parts.join(", ")
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DisputeError> + Send + 'static,
) -> Result<T, DisputeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DisputeError::Internal(format!("ledger task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use vouch_proto::{JobId, OperatorKey, Receipt};

    fn receipt(trace: &[Vec<u8>], output: &[u8]) -> SignedReceipt {
        let key = SigningKey::from_bytes(&[7; 32]);
        let receipt = Receipt {
            network_id: NetworkId::from_name("t"),
            operator: OperatorKey(key.verifying_key().to_bytes()),
            sequence: 1,
            job_id: JobId([1; 32]),
            image: Digest([2; 32]),
            input_digest: Digest([3; 32]),
            output_digest: Digest::of(output),
            output_len: output.len() as u64,
            exit_code: 0,
            trace_root: vouch_proto::merkle_root(trace),
            trace_len: trace.len() as u64,
            issued_at_ms: 1,
        };
        let signature = key.sign(&receipt.signing_root()).to_bytes();
        SignedReceipt { receipt, signature }
    }

    fn opening(trace: &[Vec<u8>], i: u32) -> Opening {
        Opening {
            index: i,
            leaf: hex::encode(&trace[i as usize]),
            proof: vouch_proto::merkle_proof(trace, i as usize)
                .unwrap()
                .iter()
                .map(hex::encode)
                .collect(),
        }
    }

    #[test]
    fn demands_and_answers_are_checked_against_the_signed_receipt() {
        let trace: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 20]).collect();
        let r = receipt(&trace, b"hello");
        let demand = |output, positions: &[u32]| Demand {
            output,
            positions: positions.to_vec(),
            ..Demand::default()
        };
        assert!(check_demand(&r, &demand(true, &[0, 4])).is_ok());
        for bad in [
            demand(false, &[]),
            demand(false, &[5]),
            demand(false, &[2, 2]),
            demand(false, &[3, 1]),
        ] {
            assert!(
                matches!(check_demand(&r, &bad), Err(DisputeError::BadDemand(_))),
                "{bad:?}"
            );
        }
        let s = Stored {
            receipt: r.clone(),
            demand: demand(true, &[1, 3]),
            deadline_ms: 10,
        };
        let b64 = |b: &[u8]| Some(base64::engine::general_purpose::STANDARD.encode(b));
        let good = Answer {
            output_base64: b64(b"hello"),
            leaves: vec![opening(&trace, 3), opening(&trace, 1)],
            ..Answer::default()
        };
        assert_eq!(check_answer(&s, &good), Ok(()));
        let mut wrong_output = good.clone();
        wrong_output.output_base64 = b64(b"hellp");
        assert!(check_answer(&s, &wrong_output)
            .unwrap_err()
            .contains("not the signed one"));
        let mut missing = good.clone();
        missing.leaves.pop();
        assert!(check_answer(&s, &missing).unwrap_err().contains("demanded"));
        let mut forged = good.clone();
        forged.leaves[0].leaf = hex::encode([9u8; 20]);
        assert!(check_answer(&s, &forged)
            .unwrap_err()
            .contains("does not open"));
        let mut other = good.clone();
        other.leaves[0] = opening(&trace, 2);
        other.leaves[0].index = 3;
        assert!(check_answer(&s, &other).is_err());
        let mut no_output = good;
        no_output.output_base64 = None;
        assert!(check_answer(&s, &no_output)
            .unwrap_err()
            .contains("missing"));
    }
}
