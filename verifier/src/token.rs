//! Tier 2 disputes: one token of a traced inference, recomputed once (DESIGN.md "Disputes,
//! in tiers", T2; SPEC.md §7.6, §11.4).
//!
//! For the reference model the token at position `t` depends only on the request, the
//! tokens before it and `(seed, t)`, so a wrong generation can be proven wrong at one
//! position without re-running it. The challenger sends what a result challenge carries
//! (receipt, spec, input) plus the operator's **served output**, the position `t` and the
//! operator's leaf `t` with its Merkle opening (SPEC.md §7.3). After the admission checks
//! of a result challenge (signature over the token dispute id, network, registered
//! operator, challenge window, spec and input bound by the receipt) the dispute is opened
//! (the bond locked) and judged in this order:
//!
//! | check | fails → verdict | containers |
//! |---|---|---|
//! | SHA-256 and length of the output = the receipt's `output_digest`, `output_len` | `slashed` if the operator signed that it served that output (SPEC.md §7.7: self-contradiction), else `dismissed` (bad evidence; bond burned) | 0 |
//! | the output is a model output (SPEC.md §7.2) and the input a JSON request | `void` (T2 does not apply) | 0 |
//! | a `prefix` the challenger names (its own run's tokens before `t`) = the signed output's `tokens[0..t]`, `t` < its length | `dismissed` (`t` is not the first divergence, or the prefix is not the agreed one) | 0 |
//! | signed `trace_len` = `usage.completion_tokens` = number of tokens | `slashed` (self-contradiction) | 0 |
//! | the opening verifies against the **signed** `trace_root` and `trace_len` | `slashed` if the operator signed that it served that leaf and opening (self-contradiction), else `dismissed` (`bad_opening`) | 0 |
//! | the leaf is 20 bytes, its position is `t` and its token `tokens[t]` | `slashed` (self-contradiction) | 0 |
//! | the image's `step` mode, run once on (request, `tokens[0..t]`, `t`), gives the opened leaf | `slashed` if not, else `dismissed` | 1 |
//!
//! **The prefix is agreed by construction**: it is taken from the output the operator
//! signed, never from the challenger. So the verifier need not establish that `t` is the
//! *first* divergence: if the operator's token `t` is not what the model gives after the
//! operator's own prefix, the signed generation is wrong, wherever it first went wrong.
//! A challenger who names a position where the operator's token follows from its prefix
//! loses its bond, and so does one who names a prefix other than the signed one (a
//! challenger is not required to name one: `prefix` is optional).
//!
//! A `step` run that exits non-zero (the image refuses a state the generation cannot reach)
//! or breaks a limit gives no leaf to compare: `void`, the bond is returned.
//!
//! The verdict is a [`ResultVerdict`] with `kind` `"token"`, `position` and
//! `tokens_recomputed` (0 or 1); `runs` holds the one `step` run when there was one. The
//! offence is the receipt's wrong-result offence, so one wrong receipt is slashed once
//! whichever tier proves it. Opening, evidence, resumption after a restart and
//! `GET /v1/disputes/{id}` are those of [`crate::reexec`].

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vouch_exec::{Executor, RunOutcome};
use vouch_proto::{Digest, JobSpec, NetworkId, SignedReceipt};

use crate::disputes::Verifier;
use crate::error::{DisputeError, LedgerError};
use crate::reexec::{report_of, Bond, ResultChallenge, ResultVerdict, RunReport};
use crate::requests::{Key, Ruling};

/// Bytes of a model trace leaf (SPEC.md §7.3).
pub const MODEL_LEAF_BYTES: usize = 20;

/// The id of a one-token dispute (SPEC.md §11.4); the challenger signs it.
pub fn token_dispute_id(
    network: &NetworkId,
    challenger: &Key,
    receipt_root: &[u8; 32],
    position: u32,
    bond: &Bond,
) -> Result<[u8; 32], LedgerError> {
    Ok(vouch_proto::token_dispute_id(
        network,
        &challenger.0,
        receipt_root,
        position,
        &bond.asset,
        bond.amount,
    )?)
}

/// What a one-token dispute adds to a result challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaim {
    /// The disputed position `t`.
    pub position: u32,
    /// The output the operator served (its SHA-256 must be the receipt's `output_digest`).
    pub output: Bytes,
    /// The operator's leaf `t`.
    pub leaf: Vec<u8>,
    /// Its opening against the receipt's `trace_root` (SPEC.md §7.3, bottom-up).
    pub proof: Vec<[u8; 32]>,
    /// The prefix the challenger agrees to, if it names one: must be `tokens[0..t]` of the
    /// signed output.
    pub prefix: Option<Vec<u32>>,
    /// The operator's signature over the served output (SPEC.md §7.7), as its node served
    /// it (`X-Vouch-Served-Signature` of `GET /v1/jobs/{id}/output`).
    pub output_signature: Option<[u8; 64]>,
    /// The operator's signature over the served leaf and opening (`served_signature` of
    /// `GET /v1/jobs/{id}/trace/{t}`).
    pub leaf_signature: Option<[u8; 64]>,
}

/// [`TokenClaim`] as stored in the dispute's evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenClaimJson {
    position: u32,
    output_base64: String,
    leaf: String,
    proof: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<Vec<u32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_signature: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    leaf_signature: Option<String>,
}

impl TokenClaim {
    pub(crate) fn to_json(&self) -> TokenClaimJson {
        TokenClaimJson {
            position: self.position,
            output_base64: base64::engine::general_purpose::STANDARD.encode(&self.output),
            leaf: hex::encode(&self.leaf),
            proof: self.proof.iter().map(hex::encode).collect(),
            prefix: self.prefix.clone(),
            output_signature: self.output_signature.map(hex::encode),
            leaf_signature: self.leaf_signature.map(hex::encode),
        }
    }

    pub(crate) fn from_json(j: TokenClaimJson) -> Result<Self, String> {
        Ok(TokenClaim {
            position: j.position,
            output: base64::engine::general_purpose::STANDARD
                .decode(j.output_base64.as_bytes())
                .map_err(|e| format!("output_base64: {e}"))?
                .into(),
            leaf: hex::decode(&j.leaf).map_err(|e| format!("leaf: {e}"))?,
            proof: parse_proof(&j.proof)?,
            prefix: j.prefix,
            output_signature: j
                .output_signature
                .as_deref()
                .map(|h| parse_signature(h, "output_signature"))
                .transpose()?,
            leaf_signature: j
                .leaf_signature
                .as_deref()
                .map(|h| parse_signature(h, "leaf_signature"))
                .transpose()?,
        })
    }
}

/// A 64-byte signature in 128 hex characters.
pub fn parse_signature(h: &str, what: &str) -> Result<[u8; 64], String> {
    let mut b = [0u8; 64];
    hex::decode_to_slice(h, &mut b)
        .map_err(|e| format!("{what} is not 128 hex characters: {e}"))?;
    Ok(b)
}

/// Whether `signature` is the receipt's operator's over serving `served` for it
/// (SPEC.md §7.7).
fn served_by_operator(
    receipt: &SignedReceipt,
    served: &vouch_proto::Served<'_>,
    signature: Option<&[u8; 64]>,
) -> bool {
    let Some(signature) = signature else {
        return false;
    };
    let r = &receipt.receipt;
    vouch_proto::served_statement(&r.network_id, &r.signing_root(), served)
        .is_ok_and(|m| vouch_proto::verify_root(&r.operator, &m, signature).is_ok())
}

/// Hex sibling hashes, 32 bytes each.
pub fn parse_proof(proof: &[String]) -> Result<Vec<[u8; 32]>, String> {
    proof
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let mut b = [0u8; 32];
            hex::decode_to_slice(h, &mut b)
                .map_err(|e| format!("proof[{i}] is not 64 hex characters: {e}"))?;
            Ok(b)
        })
        .collect()
}

/// A one-token challenge: a result challenge (signed over the token dispute id) and the
/// claim.
#[derive(Debug, Clone)]
pub struct TokenChallenge {
    /// Challenger, bond, signature, receipt, spec, input.
    pub base: ResultChallenge,
    /// Position, served output, leaf and opening.
    pub claim: TokenClaim,
}

impl TokenChallenge {
    /// Builds and signs a challenge as `challenger` (what a client does).
    pub fn sign(
        network: &NetworkId,
        challenger: &SigningKey,
        bond: Bond,
        receipt: SignedReceipt,
        spec: JobSpec,
        input: Bytes,
        claim: TokenClaim,
    ) -> Result<Self, LedgerError> {
        let key = Key::of(challenger);
        let id = token_dispute_id(
            network,
            &key,
            &receipt.receipt.signing_root(),
            claim.position,
            &bond,
        )?;
        Ok(TokenChallenge {
            base: ResultChallenge {
                challenger: key,
                bond,
                signature: crate::requests::Sig(challenger.sign(&id).to_bytes()),
                receipt,
                spec,
                input,
            },
            claim,
        })
    }

    /// This challenge's id on `network`.
    pub fn id(&self, network: &NetworkId) -> Result<[u8; 32], LedgerError> {
        token_dispute_id(
            network,
            &self.base.challenger,
            &self.base.receipt.receipt.signing_root(),
            self.claim.position,
            &self.base.bond,
        )
    }
}

/// What the evidence alone decides.
#[derive(Debug, PartialEq, Eq)]
enum Check {
    Dismissed(String),
    Slashed(String),
    Void(String),
    /// Recompute: the `step` input, the leaf to compare with.
    Step(Vec<u8>),
}

/// The checks before recomputation, in the order of the module docs.
fn check_evidence(receipt: &SignedReceipt, input: &[u8], claim: &TokenClaim) -> Check {
    let r = &receipt.receipt;
    let t = claim.position;
    if Digest::of(&claim.output) != r.output_digest || claim.output.len() as u64 != r.output_len {
        let served = vouch_proto::Served::Output {
            digest: Digest::of(&claim.output).0,
            len: claim.output.len() as u64,
        };
        if served_by_operator(receipt, &served, claim.output_signature.as_ref()) {
            return Check::Slashed(format!(
                "the receipt's operator served, and signed that it served, an output ({} \
                 bytes, SHA-256 {}) other than the one it signed in the receipt: it \
                 contradicts itself",
                claim.output.len(),
                Digest::of(&claim.output)
            ));
        }
        return Check::Dismissed(
            "the output given is not the one the receipt signs (output_digest, output_len): \
             the challenger must bring the operator's signed output"
                .into(),
        );
    }
    let Some((tokens, completion)) = model_output(&claim.output) else {
        return Check::Void(
            "the signed output is not a model output (SPEC.md §7.2): there are no tokens to \
             dispute one by one"
                .into(),
        );
    };
    let Some(prefix) = tokens
        .get(..t as usize)
        .filter(|_| (t as usize) < tokens.len())
    else {
        return Check::Dismissed(format!(
            "position {t} is past the signed output's {} tokens",
            tokens.len()
        ));
    };
    if let Some(p) = claim.prefix.as_deref().filter(|p| *p != prefix) {
        return Check::Dismissed(match p.iter().zip(prefix).position(|(a, b)| a != b) {
            Some(i) => format!(
                "the prefix named differs from the signed output's tokens at position {i}, \
                 before {t}: position {t} is not the first divergence (or the prefix is not \
                 the agreed one); name the first token where you disagree"
            ),
            None => format!(
                "the prefix named holds {} tokens; the agreed prefix of position {t} is the \
                 signed output's {t} tokens before it",
                p.len()
            ),
        });
    }
    if r.trace_len != completion || completion != tokens.len() as u64 {
        return Check::Slashed(format!(
            "the receipt contradicts itself: trace_len {}, usage.completion_tokens \
             {completion}, {} tokens in the output",
            r.trace_len,
            tokens.len()
        ));
    }
    if let Err(e) = vouch_proto::verify_merkle_proof(
        &r.trace_root,
        r.trace_len,
        u64::from(t),
        &claim.leaf,
        &claim.proof,
    ) {
        let served = vouch_proto::Served::Leaf {
            index: u64::from(t),
            leaf: &claim.leaf,
            proof: &claim.proof,
        };
        if served_by_operator(receipt, &served, claim.leaf_signature.as_ref()) {
            return Check::Slashed(format!(
                "the receipt's operator served, and signed that it served, leaf {t} with an \
                 opening that does not verify against its own signed trace_root and \
                 trace_len ({e}): it contradicts itself"
            ));
        }
        return Check::Dismissed(format!(
            "bad_opening: the leaf's opening does not verify against the signed trace_root \
             and trace_len, and the operator did not sign that it served it: {e}"
        ));
    }
    let leaf = &claim.leaf;
    let leaf_position = leaf
        .get(0..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let leaf_token = leaf
        .get(4..8)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    if leaf.len() != MODEL_LEAF_BYTES
        || leaf_position != Some(t)
        || leaf_token != Some(tokens[t as usize])
    {
        return Check::Slashed(format!(
            "the receipt contradicts itself: its signed leaf {t} ({}) does not state position \
             {t} and the output's token {}",
            hex::encode(leaf),
            tokens[t as usize]
        ));
    }
    let Ok(request) = serde_json::from_slice::<Value>(input) else {
        return Check::Void("the input is not a JSON request (SPEC.md §7.1)".into());
    };
    let step = json!({"request": request, "prefix": prefix, "position": t});
    match vouch_proto::to_canonical_bytes(&step) {
        Ok(bytes) => Check::Step(bytes),
        Err(e) => Check::Void(format!("the step input cannot be written: {e}")),
    }
}

/// `tokens` and `usage.completion_tokens` of a model output, if it is one.
fn model_output(output: &[u8]) -> Option<(Vec<u32>, u64)> {
    let v: Value = serde_json::from_slice(output).ok()?;
    let tokens = v
        .get("tokens")?
        .as_array()?
        .iter()
        .map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok()))
        .collect::<Option<Vec<u32>>>()?;
    let completion = v.get("usage")?.get("completion_tokens")?.as_u64()?;
    Some((tokens, completion))
}

/// The leaf a `step` run printed (`{"leaf": hex, "token": id}`).
fn step_leaf(stdout: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(stdout).ok()?;
    hex::decode(v.get("leaf")?.as_str()?).ok()
}

impl Verifier {
    /// Judges a one-token dispute (see the module docs): checks it like a result
    /// challenge, opens it (locking the bond), judges it from the evidence and at most one
    /// `step` run, and records the verdict. Errors as [`Verifier::dispute_result`].
    pub async fn dispute_token(
        self: &Arc<Self>,
        challenge: TokenChallenge,
        now_ms: u64,
    ) -> Result<ResultVerdict, DisputeError> {
        let dispute = challenge.id(&self.network())?;
        self.open_and_judge(
            Arc::new(challenge.base),
            Some(challenge.claim),
            dispute,
            now_ms,
        )
        .await
    }

    /// The ruling of an open one-token dispute and its report (before the ledger's event).
    pub(crate) async fn judge_token(
        &self,
        executor: &dyn Executor,
        challenge: &ResultChallenge,
        claim: &TokenClaim,
        id: &str,
    ) -> Result<(Ruling, ResultVerdict), DisputeError> {
        let mut report = report_of(challenge, id, vec![]);
        report.kind = "token".into();
        report.position = Some(claim.position);
        report.tokens_recomputed = Some(0);
        let config = self.config();
        let slashed = |offence: String| Ruling::Slashed {
            operator: Key(challenge.receipt.receipt.operator.0),
            fraction_ppm: config.wrong_result_slash_ppm,
            bounty_ppm: config.bounty_ppm,
            jail: config.jail,
            offence,
        };
        let step_input = match check_evidence(&challenge.receipt, &challenge.input, claim) {
            Check::Dismissed(why) => {
                report.reason = why;
                return Ok((Ruling::Dismissed, report));
            }
            Check::Void(why) => {
                report.reason = why;
                return Ok((Ruling::Void, report));
            }
            Check::Slashed(why) => {
                report.reason = why;
                return Ok((slashed(report.offence.clone()), report));
            }
            Check::Step(input) => input,
        };
        let mut spec = challenge.spec.clone();
        spec.command = vec!["step".into()];
        spec.input_digest = Digest::of(&step_input);
        let outcome = {
            // The semaphore is never closed, so acquiring only fails if it were.
            let _slot = self
                .reexec
                .acquire()
                .await
                .map_err(|_| DisputeError::NoExecutor)?;
            // One exchange with a warm container of the model (its `serve` mode answers a
            // step line with what `step` prints): one forward pass, no container start.
            // Anything but a clean answer (a refused state, a broken container) is
            // settled by a cold `step` run, whose exit code is what the ruling reads.
            let job = challenge.receipt.receipt.job_id;
            let input = Bytes::from(step_input);
            match executor.run_warm(job, &spec, input.clone()).await {
                Ok(o @ RunOutcome::Exited { exit_code: 0, .. }) => o,
                _ => executor.run(job, &spec, input).await?,
            }
        };
        report.tokens_recomputed = Some(1);
        report.runs = vec![RunReport::of_run(&outcome)];
        let t = claim.position;
        let ruling = match &outcome {
            RunOutcome::Exited {
                exit_code: 0,
                stdout,
                ..
            } => match step_leaf(stdout) {
                Some(leaf) if leaf == claim.leaf => {
                    report.reason = format!(
                        "the model recomputes the operator's leaf {t} from the signed prefix; \
                         the challenger's bond is forfeited"
                    );
                    Ruling::Dismissed
                }
                Some(leaf) => {
                    report.reason = format!(
                        "the model recomputes leaf {t} as {} from the signed prefix, the \
                         operator signed {}",
                        hex::encode(leaf),
                        hex::encode(&claim.leaf)
                    );
                    slashed(report.offence.clone())
                }
                None => {
                    report.reason = "the step run printed no leaf".into();
                    Ruling::Void
                }
            },
            RunOutcome::Exited {
                exit_code, stderr, ..
            } => {
                report.reason = format!(
                    "the step run exited {exit_code} ({}), so there is no leaf to compare",
                    String::from_utf8_lossy(&stderr[..stderr.len().min(200)]).trim()
                );
                Ruling::Void
            }
            RunOutcome::LimitExceeded { detail, .. } => {
                report.reason =
                    format!("the step run broke a limit, so there is no leaf to compare: {detail}");
                Ruling::Void
            }
        };
        Ok((ruling, report))
    }
}
