//! Handing a replicated job's disagreement to the verifier.
//!
//! When a replicated job this node announced completes with a majority result and some
//! replicas disagreeing with it (`replication::report`), each disagreeing replica's signed,
//! revealed receipt is evidence of a wrong result. If the operator configured a challenger
//! (`--challenger-key`, a key with a deposited balance on the verifier's ledger, and
//! `--dispute-bond ASSET:AMOUNT`), the node raises a wrong-result dispute for each of them
//! on its own: it signs the dispute id (SPEC.md §11.1) and posts the receipt, the job spec
//! and the input to the verifier (`POST /v1/disputes/result`), which re-runs the job and
//! slashes, dismisses (burning the bond) or voids. Without a challenger the report says
//! the disagreement was not handed off, and why.
//!
//! Only the announcing node hands off (the other replicas see the same disagreement, but
//! one dispute per wrong receipt is enough), only with a strict majority (without one the
//! node cannot tell who is wrong), and each (job, operator) at most once: the state lives
//! in the job database, so a restart neither loses nor repeats a dispute. A verifier that
//! cannot be reached is retried; one that is still judging is asked again for the verdict.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use serde::Serialize;
use serde_json::{json, Value};
use vouch_proto::{result_dispute_id, JobSpec, NetworkId, OperatorKey, SignedReceipt};

use crate::error::NodeError;

/// Dispute states as the replication report shows them.
pub mod status {
    /// Waiting to be posted (or re-posted after the verifier could not be reached).
    pub const QUEUED: &str = "queued";
    /// The verifier accepted it and is judging; asked again for the verdict.
    pub const PENDING: &str = "pending";
    /// The verifier refused it (4xx); `detail` says why. Final.
    pub const REFUSED: &str = "refused";
    /// The verifier could not be reached after every attempt. Final.
    pub const FAILED: &str = "failed";
    /// No challenger configured on this node: not handed off. Final.
    pub const NOT_CONFIGURED: &str = "not_configured";
    // The verifier's verdicts are kept in its own words: `slashed`, `already_slashed`,
    // `dismissed`, `void`. All final.
}

/// Attempts to reach the verifier before a dispute is given up as `failed`.
pub const MAX_ATTEMPTS: u32 = 10;
/// Time between attempts (and between asking for a pending verdict).
pub const RETRY_MS: u64 = 5_000;

/// One dispute as the replication report shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DisputeView {
    /// The operator whose receipt is disputed.
    pub operator: OperatorKey,
    /// The dispute id (64 hex), what `GET /v1/disputes/{id}` of the verifier knows it by.
    pub dispute: String,
    /// `queued`, `pending`, `slashed`, `already_slashed`, `dismissed`, `void`, `refused`,
    /// `failed` or `not_configured`.
    pub status: String,
    /// The verifier's reason, or what went wrong.
    pub detail: String,
    /// Posts attempted.
    pub attempts: u32,
}

/// The key and bond this node challenges with, and where.
#[derive(Debug, Clone)]
pub struct Challenger {
    key: SigningKey,
    asset: String,
    amount: u128,
    verifier_url: String,
    http: reqwest::Client,
}

/// What posting a dispute came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// The verifier ruled: (`outcome`, `reason`).
    Verdict(String, String),
    /// Accepted and still being judged.
    Pending,
    /// Refused for good (a 4xx other than "pending"), with the verifier's message.
    Refused(String),
    /// Not reached, or a 5xx: try again.
    Retry(String),
}

/// Parses `ASSET:AMOUNT` (amount in base units, a decimal integer > 0).
pub fn parse_bond(s: &str) -> Result<(String, u128), String> {
    let (asset, amount) = s
        .split_once(':')
        .ok_or_else(|| format!("dispute bond {s:?} is not ASSET:AMOUNT (e.g. eth:10)"))?;
    let amount: u128 = amount
        .parse()
        .ok()
        .filter(|a| *a > 0)
        .ok_or_else(|| format!("dispute bond amount {amount:?} is not a whole number > 0"))?;
    if asset.is_empty() {
        return Err(format!("dispute bond {s:?} names no asset"));
    }
    Ok((asset.to_string(), amount))
}

impl Challenger {
    /// Loads the challenger key (PKCS#8 PEM) and parses the bond.
    pub fn load(key_file: &Path, bond: &str, verifier_url: &str) -> Result<Self, NodeError> {
        let key = crate::keys::load(key_file)?;
        let (asset, amount) = parse_bond(bond).map_err(NodeError::Config)?;
        let http = reqwest::Client::builder()
            // Two re-executions of the job at most, plus the checks.
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| NodeError::Config(format!("http client: {e}")))?;
        Ok(Challenger {
            key,
            asset,
            amount,
            verifier_url: verifier_url.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The challenger's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The dispute id of `receipt` with this challenger and bond.
    pub fn dispute_id(&self, network: &NetworkId, receipt: &SignedReceipt) -> [u8; 32] {
        // Only a JSON number out of range can fail canonicalization; every field here is a
        // string.
        result_dispute_id(
            network,
            &self.public_key(),
            &receipt.receipt.signing_root(),
            &self.asset,
            self.amount,
        )
        .unwrap_or_default()
    }

    /// The signed body of `POST /v1/disputes/result`.
    pub fn body(
        &self,
        network: &NetworkId,
        receipt: &SignedReceipt,
        spec: &JobSpec,
        input: &[u8],
    ) -> Value {
        let id = self.dispute_id(network, receipt);
        json!({
            "challenger": hex::encode(self.public_key()),
            "bond": {"asset": self.asset, "amount": self.amount.to_string()},
            "signature": hex::encode(self.key.sign(&id).to_bytes()),
            "receipt": receipt.to_json(),
            "spec": spec,
            "input_base64": base64::engine::general_purpose::STANDARD.encode(input),
        })
    }

    /// Posts a dispute and reads the answer.
    pub async fn post(&self, body: &Value) -> Posted {
        let url = format!("{}/v1/disputes/result", self.verifier_url);
        let resp = match self.http.post(&url).json(body).send().await {
            Ok(r) => r,
            Err(e) => return Posted::Retry(format!("cannot reach the verifier: {e}")),
        };
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return verdict_of(&v).unwrap_or_else(|| {
                Posted::Retry(format!("the verifier answered {status} without a verdict"))
            });
        }
        let code = v["error"]["code"].as_str().unwrap_or_default();
        let message = v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {status}"));
        if code == "dispute_pending" {
            Posted::Pending
        } else if status.is_client_error() && status != reqwest::StatusCode::REQUEST_TIMEOUT {
            Posted::Refused(message)
        } else {
            Posted::Retry(message)
        }
    }

    /// Asks the verifier how a dispute it accepted stands.
    pub async fn poll(&self, dispute: &str) -> Posted {
        let url = format!("{}/v1/disputes/{dispute}", self.verifier_url);
        match self.http.get(&url).send().await {
            Ok(r) if r.status().is_success() => {
                let v: Value = r.json().await.unwrap_or(Value::Null);
                verdict_of(&v["verdict"]).unwrap_or(Posted::Pending)
            }
            // Not known (a verifier that lost it, or never got it): post it again.
            Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
                Posted::Retry("the verifier does not know this dispute".into())
            }
            Ok(r) => Posted::Retry(format!("HTTP {}", r.status())),
            Err(e) => Posted::Retry(format!("cannot reach the verifier: {e}")),
        }
    }
}

fn verdict_of(v: &Value) -> Option<Posted> {
    let outcome = v["outcome"].as_str()?;
    Some(Posted::Verdict(
        outcome.to_string(),
        v["reason"].as_str().unwrap_or_default().to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bonds_parse_or_explain() {
        assert_eq!(parse_bond("eth:10").unwrap(), ("eth".to_string(), 10));
        assert!(parse_bond("eth").unwrap_err().contains("ASSET:AMOUNT"));
        assert!(parse_bond("eth:0").unwrap_err().contains("> 0"));
        assert!(parse_bond("eth:-1").is_err());
        assert!(parse_bond(":5").unwrap_err().contains("no asset"));
    }
}
