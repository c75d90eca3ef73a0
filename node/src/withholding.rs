//! Answering withholding disputes (SPEC.md §11.5).
//!
//! A challenger that cannot get a receipt's output or trace leaves from this node can ask
//! the verifier to demand them publicly, with a deadline: an operator that has not
//! published them by then is slashed as for a wrong result. So a node with a verifier
//! (`--verifier-url`) asks it every `--withholding-poll-ms` for open withholding disputes
//! against its own receipts (`GET /v1/disputes?state=open&kind=withholding&operator=…`)
//! and answers each from its job database: the spec, the input, the output bytes and every
//! demanded leaf with its Merkle opening (`POST /v1/disputes/{id}/answer`). The verifier checks them against
//! the signed receipt and decides the dispute `void`, publishing the evidence.
//!
//! A node can only answer for receipts it holds (the same signing root in its job
//! database); for anything else it logs why and the deadline decides. `--fault withhold`
//! never answers, which is what the dispute exists to punish.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use vouch_proto::{ReceiptJson, SignedReceipt};

use crate::node::Node;

/// Polls the verifier at `url` and answers withholding disputes against this node's
/// receipts until `stop` turns true.
pub async fn run(node: Arc<Node>, url: String, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = Duration::from_millis(node.config.p2p.withholding_poll_ms.max(1));
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(target: "vouch::disputes", %e, "no HTTP client: withholding disputes will not be answered");
            return;
        }
    };
    let url = url.trim_end_matches('/').to_owned();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
        if let Err(e) = answer_open(&node, &http, &url).await {
            tracing::debug!(target: "vouch::disputes", %e, "cannot list withholding disputes");
        }
    }
}

/// One round: lists the open withholding disputes against this operator and answers them.
async fn answer_open(node: &Arc<Node>, http: &reqwest::Client, url: &str) -> Result<(), String> {
    let operator = node.signer.operator();
    let list: Value = http
        .get(format!(
            "{url}/v1/disputes?state=open&kind=withholding&operator={operator}&limit=1000"
        ))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .error_for_status()
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    for d in list["disputes"].as_array().into_iter().flatten() {
        let Some(id) = d["dispute"].as_str() else {
            continue;
        };
        if node.config.fault == Some(crate::config::Fault::Withhold) {
            tracing::warn!(target: "vouch::fault", dispute = id, "FAULT INJECTION: not answering a withholding dispute on purpose (--fault withhold); this operator will be slashed at the deadline");
            continue;
        }
        let answer = match build_answer(node, &d["withholding"]).await {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!(target: "vouch::disputes", dispute = id, %why, "cannot answer a withholding dispute");
                continue;
            }
        };
        let resp = http
            .post(format!("{url}/v1/disputes/{id}/answer"))
            .json(&answer)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            tracing::info!(target: "vouch::disputes", dispute = id, "answered a withholding dispute: the demanded evidence is published");
        } else {
            tracing::warn!(target: "vouch::disputes", dispute = id, %status, answer = %text, "the verifier refused our answer to a withholding dispute");
        }
    }
    Ok(())
}

/// The answer to a withholding dispute (`view` as `GET /v1/disputes/{id}` shows its
/// `withholding`), from the job database; `Err` if this node does not hold the receipt.
async fn build_answer(node: &Arc<Node>, view: &Value) -> Result<Value, String> {
    let receipt: SignedReceipt = serde_json::from_value::<ReceiptJson>(view["receipt"].clone())
        .map_err(|e| format!("the dispute's receipt: {e}"))?
        .verify()
        .map_err(|e| format!("the dispute's receipt: {e}"))?;
    let job_id = receipt.receipt.job_id;
    let store = node.store.clone();
    let (record, input, output, trace) = tokio::task::spawn_blocking(move || {
        Ok::<_, rusqlite::Error>((
            store.get(&job_id)?,
            store.input(&job_id)?,
            store.output(&job_id)?,
            store.trace(&job_id)?,
        ))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let Some(record) = record.filter(|r| {
        r.receipt.as_ref().map(|s| s.receipt.signing_root()) == Some(receipt.receipt.signing_root())
    }) else {
        return Err(format!(
            "this node holds no receipt of job {job_id} with that signing root"
        ));
    };
    let mut answer = json!({"leaves": []});
    let demand = &view["demand"];
    if demand["spec"].as_bool() == Some(true) {
        answer["spec"] = serde_json::to_value(&record.spec).map_err(|e| e.to_string())?;
    }
    if demand["input"].as_bool() == Some(true) {
        // An empty input is stored as nothing.
        answer["input_base64"] = base64::engine::general_purpose::STANDARD
            .encode(input.unwrap_or_default())
            .into();
    }
    if demand["output"].as_bool() == Some(true) {
        let output = output.ok_or("the output is not in the job database")?;
        answer["output_base64"] = base64::engine::general_purpose::STANDARD
            .encode(output)
            .into();
    }
    let leaves = trace.unwrap_or_default();
    let mut opened = vec![];
    for p in demand["positions"].as_array().into_iter().flatten() {
        let i = p.as_u64().ok_or("a position is not a number")?;
        let index = usize::try_from(i).map_err(|e| e.to_string())?;
        let proof = vouch_proto::merkle_proof(&leaves, index)
            .ok_or_else(|| format!("no leaf {i} in the stored trace"))?;
        opened.push(json!({
            "index": i,
            "leaf": hex::encode(&leaves[index]),
            "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
        }));
    }
    answer["leaves"] = opened.into();
    Ok(answer)
}
