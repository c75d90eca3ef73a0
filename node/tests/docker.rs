//! End to end against the real Docker engine: receipts that verify independently, the
//! sandbox, hostile workloads, and a Docker daemon that goes away and comes back.

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

fn unhex(s: &Value) -> Vec<u8> {
    hex::decode(s.as_str().unwrap().trim_start_matches("sha256:")).unwrap()
}

/// Rebuilds the 260 signed bytes from the receipt's readable fields by following
/// SPEC.md §3 by hand — deliberately not calling `vouch_proto::Receipt::encode`.
fn encode_by_hand(r: &Value) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(unhex(&r["network_id"]));
    b.extend(unhex(&r["operator"]));
    b.extend(r["sequence"].as_u64().unwrap().to_be_bytes());
    b.extend(unhex(&r["job_id"]));
    b.extend(unhex(&r["image"]));
    b.extend(unhex(&r["input_digest"]));
    b.extend(unhex(&r["output_digest"]));
    b.extend(r["output_len"].as_u64().unwrap().to_be_bytes());
    b.extend((r["exit_code"].as_i64().unwrap() as i32).to_be_bytes());
    b.extend(unhex(&r["trace_root"]));
    b.extend(r["trace_len"].as_u64().unwrap().to_be_bytes());
    b.extend(r["issued_at_ms"].as_u64().unwrap().to_be_bytes());
    b
}

#[tokio::test]
async fn receipt_verifies_from_the_spec_alone() {
    if !docker_available().await {
        return;
    }
    let node = TestNode::start(|_| {}).await;
    let job = run_job(
        &node.url,
        json!({"image": "vouch/wc:dev", "input": "hello vouch world\n"}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let id = job["job_id"].as_str().unwrap();
    let output = client()
        .get(format!("{}/v1/jobs/{id}/output", node.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let out: Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(out["words"], 3);
    assert_eq!(out["bytes"], 18);
    assert_eq!(
        out["sha256"],
        hex::encode(Sha256::digest(b"hello vouch world\n"))
    );

    let r = &job["receipt"];
    let encoded = encode_by_hand(r);
    assert_eq!(encoded.len(), 260);
    let signed = hex::decode(r["encoded"].as_str().unwrap()).unwrap();
    assert_eq!(
        &signed[..260],
        &encoded[..],
        "readable fields restate the signed bytes"
    );
    let root = Sha256::new()
        .chain_update(b"vouch/receipt/v1")
        .chain_update(&encoded)
        .finalize();
    assert_eq!(hex::encode(root), r["signing_root"]);
    let key = VerifyingKey::from_bytes(&unhex(&r["operator"]).try_into().unwrap()).unwrap();
    assert_eq!(
        key.to_bytes().to_vec(),
        hex::decode(&node.operator).unwrap(),
        "signed by this node's key"
    );
    let sig = Signature::from_bytes(&unhex(&r["signature"]).try_into().unwrap());
    key.verify_strict(&root, &sig).expect("signature verifies");
    // The receipt binds this input, this output and the image the tag resolved to.
    assert_eq!(
        r["input_digest"],
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(b"hello vouch world\n"))
        )
    );
    assert_eq!(
        r["output_digest"],
        format!("sha256:{}", hex::encode(Sha256::digest(&output)))
    );
    assert_eq!(r["output_len"], output.len());
    let image_id = std::process::Command::new("docker")
        .args(["image", "inspect", "-f", "{{.Id}}", "vouch/wc:dev"])
        .output()
        .unwrap();
    assert_eq!(r["image"], String::from_utf8_lossy(&image_id.stdout).trim());
    assert_eq!(job["spec"]["image"], r["image"]);
    // The job id is the hash of the spec the node returned.
    let spec = vouch_proto::JobSpec::from_json(job["spec"].to_string().as_bytes()).unwrap();
    assert_eq!(spec.job_id().unwrap().to_hex(), id);
    // Tampering with any signed byte breaks the signature.
    let mut bad = encoded.clone();
    bad[250] ^= 1;
    let bad_root = Sha256::new()
        .chain_update(b"vouch/receipt/v1")
        .chain_update(&bad)
        .finalize();
    assert!(key.verify_strict(&bad_root, &sig).is_err());
    assert!(containers_with_label(&node.label).is_empty());
    node.stop().await;
}

#[tokio::test]
async fn sandbox_is_locked_down() {
    if !docker_available().await {
        return;
    }
    let node = TestNode::start(|_| {}).await;
    let limits = json!({"pids": 32, "memory_bytes": 100_000_000u64, "tmpfs_bytes": 1_000_000});
    let job = run_job(
        &node.url,
        json!({"image": "vouch/probe:dev", "limits": limits}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let id = job["job_id"].as_str().unwrap();
    let out: Value = client()
        .get(format!("{}/v1/jobs/{id}/output", node.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(out["uid"], 65534, "{out}");
    assert_eq!(out["gid"], 65534, "{out}");
    assert_eq!(out["cap_eff"], "0000000000000000", "no capabilities: {out}");
    assert_eq!(out["no_new_privs"], 1, "{out}");
    assert_eq!(out["interfaces"], json!(["lo"]), "no network: {out}");
    assert_eq!(out["root_writable"], false, "{out}");
    assert_eq!(out["tmp_writable"], true, "{out}");
    assert_eq!(out["docker_sock"], false, "{out}");
    assert_eq!(out["pids_max"], "32", "{out}");
    // The kernel rounds the limit down to whole pages.
    assert_eq!(
        out["memory_max"],
        (100_000_000u64 / 4096 * 4096).to_string(),
        "{out}"
    );
    node.stop().await;
}

#[tokio::test]
async fn hostile_workloads_fail_cleanly_and_the_node_keeps_serving() {
    if !docker_available().await {
        return;
    }
    let node = TestNode::start(|c| c.max_concurrent_jobs = 6).await;
    let cases: Vec<(&str, Value)> = vec![
        (
            "forkbomb",
            json!({"image": "vouch/hostile-forkbomb:dev", "limits": {"timeout_ms": 3000, "pids": 32}}),
        ),
        (
            "memhog",
            json!({"image": "vouch/hostile-memhog:dev", "limits": {"memory_bytes": 64u64 << 20}}),
        ),
        (
            "spin",
            json!({"image": "vouch/hostile-spin:dev", "limits": {"timeout_ms": 2000, "cpu_millis": 500}}),
        ),
        (
            "bigout",
            json!({"image": "vouch/hostile-bigout:dev", "limits": {"output_bytes": 1u64 << 20}}),
        ),
        ("net", json!({"image": "vouch/hostile-net:dev"})),
        ("rootwrite", json!({"image": "vouch/hostile-rootwrite:dev"})),
    ];
    let mut ids = vec![];
    for (name, body) in &cases {
        let (status, v) = submit(&node.url, body.clone()).await;
        assert_eq!(status, 202, "{name}: {v}");
        ids.push(v["job_id"].as_str().unwrap().to_string());
    }
    // While they run, health checks keep answering quickly.
    let t0 = Instant::now();
    let mut checks = 0;
    while t0.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        let h: Value = client()
            .get(format!("{}/healthz", node.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(h["status"], "ok");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "health check took {:?}",
            t.elapsed()
        );
        checks += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(checks >= 5);
    let mut results = std::collections::HashMap::new();
    for ((name, _), id) in cases.iter().zip(&ids) {
        results.insert(*name, wait(&node.url, id).await);
    }
    let reason = |n: &str| {
        results[n]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(results["forkbomb"]["status"], "failed");
    assert!(
        reason("forkbomb").contains("timeout"),
        "{}",
        reason("forkbomb")
    );
    assert_eq!(results["memhog"]["status"], "failed");
    assert!(
        reason("memhog").contains("memory limit exceeded"),
        "{}",
        reason("memhog")
    );
    assert_eq!(results["spin"]["status"], "failed");
    assert!(
        reason("spin").contains("timeout: the workload ran longer than 2000 ms"),
        "{}",
        reason("spin")
    );
    assert_eq!(results["bigout"]["status"], "failed");
    assert!(
        reason("bigout").contains("output limit exceeded"),
        "{}",
        reason("bigout")
    );
    for n in ["forkbomb", "memhog", "spin", "bigout"] {
        assert!(
            results[n].get("receipt").is_none(),
            "{n}: a broken limit is not signed"
        );
    }
    // The network probe finds only loopback and cannot reach anything.
    let net_out: Value = client()
        .get(format!("{}/v1/jobs/{}/output", node.url, ids[4]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(results["net"]["status"], "succeeded");
    assert_eq!(net_out["interfaces"], json!(["lo"]), "{net_out}");
    assert!(
        net_out["udp_connect"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{net_out}"
    );
    // Writing the root filesystem fails (read-only), and that non-zero exit is signed.
    assert_eq!(results["rootwrite"]["status"], "succeeded");
    assert_eq!(results["rootwrite"]["exit_code"], 1);
    assert_eq!(results["rootwrite"]["receipt"]["exit_code"], 1);
    let rw_out = client()
        .get(format!("{}/v1/jobs/{}/output", node.url, ids[5]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(rw_out.contains("Read-only file system"), "{rw_out}");
    // The node still takes and runs work, and left no container behind.
    let ok = run_job(
        &node.url,
        json!({"image": "vouch/wc:dev", "input": "still here"}),
    )
    .await;
    assert_eq!(ok["status"], "succeeded");
    assert_eq!(containers_with_label(&node.label), Vec::<String>::new());
    node.stop().await;
}

#[tokio::test]
async fn nonzero_exit_is_signed_with_its_code() {
    if !docker_available().await {
        return;
    }
    let node = TestNode::start(|_| {}).await;
    let job = run_job(
        &node.url,
        json!({"image": "vouch/exit:dev", "command": ["42"], "input": "x"}),
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["exit_code"], 42);
    assert_eq!(job["receipt"]["exit_code"], 42);
    let id = job["job_id"].as_str().unwrap();
    let out = client()
        .get(format!("{}/v1/jobs/{id}/output", node.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(out, "partial output\n");
    let err = client()
        .get(format!("{}/v1/jobs/{id}/stderr", node.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(err, "failing on purpose\n");
    node.stop().await;
}

#[tokio::test]
async fn unknown_image_is_refused_not_pulled() {
    if !docker_available().await {
        return;
    }
    let node = TestNode::start(|_| {}).await;
    let (status, v) = submit(&node.url, json!({"image": "vouch/does-not-exist:dev"})).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["code"], "image_not_found");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("never pulls"),
        "{v}"
    );
    let (status, v) = submit(
        &node.url,
        json!({"image": format!("sha256:{}", "ab".repeat(32))}),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    node.stop().await;
}

#[tokio::test]
async fn docker_outage_gives_a_fix_and_the_node_recovers() {
    if !docker_available().await {
        return;
    }
    let real = DockerSocket::path();
    let sockdir = tempfile::tempdir().unwrap();
    let sock = sockdir.path().join("docker.sock");
    let host = format!("unix://{}", sock.display());
    let node = TestNode::start(|c| c.docker_host = Some(host.clone())).await;
    let (status, v) = submit(&node.url, json!({"image": "vouch/wc:dev"})).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "docker_unavailable");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("DOCKER_HOST") && msg.contains(&sock.display().to_string()),
        "{msg}"
    );
    let h: Value = client()
        .get(format!("{}/healthz", node.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");
    assert!(
        h["docker"].as_str().unwrap().starts_with("unavailable"),
        "{h}"
    );
    // The daemon "comes back" at the configured path.
    std::os::unix::fs::symlink(&real, &sock).unwrap();
    let job = run_job(&node.url, json!({"image": "vouch/wc:dev", "input": "back"})).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let h: Value = client()
        .get(format!("{}/healthz", node.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["docker"], "ok");
    node.stop().await;
}

struct DockerSocket;
impl DockerSocket {
    fn path() -> String {
        let host = vouch_node::executor::DockerExecutor::default_host();
        host.strip_prefix("unix://")
            .map(String::from)
            .unwrap_or_else(|| panic!("this test needs a unix socket DOCKER_HOST, got {host}"))
    }
}

/// A request cut off in the middle of a warm generation (here by the node's own request
/// timeout) must not leave the model's reply to be read as the answer to the next request.
#[tokio::test]
async fn a_cut_off_warm_request_does_not_shift_later_answers() {
    if !docker_available().await {
        return;
    }
    let node = TestNode::start(|c| c.request_timeout_ms = 250).await;
    let chat = |tokens: u32, seed: u64| {
        // Greedy decoding of this model runs to max_tokens (it never picks <end>); the seed
        // still makes each request a different job.
        json!({"model": "vouch-tiny-1", "messages": [{"role": "user", "content": format!("hello {seed}")}],
               "max_tokens": tokens, "temperature": 0, "seed": seed})
    };
    let post = |body: Value| {
        let url = format!("{}/v1/chat/completions", node.url);
        async move { client().post(url).json(&body).send().await.unwrap() }
    };
    // Start the warm container (this first request may itself run into the timeout).
    let _ = post(chat(1, 1)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for round in 0..3u64 {
        // A long generation that the node's 250 ms request timeout cuts off.
        let cut = post(chat(4096, 100 + round)).await;
        assert_eq!(
            cut.status(),
            408,
            "round {round}: the long request should time out"
        );
        // Give the abandoned generation time to finish in the background.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        // The next request gets its own answer: 4 tokens, not the 4096 of the cut one.
        // (On a loaded machine even a short request may hit the 250 ms limit; try again.)
        let mut next = Value::Null;
        for _ in 0..10 {
            let resp = post(chat(4, 200 + round)).await;
            if resp.status() != 408 {
                next = resp.json().await.unwrap();
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(
            next["usage"]["completion_tokens"], 4,
            "round {round}: {next}"
        );
        let receipt: vouch_proto::ReceiptJson =
            serde_json::from_value(next["vouch"]["receipt"].clone()).unwrap();
        receipt.verify().unwrap();
        assert_eq!(receipt.trace_len, 4);
        let out = next["vouch"]["output"].as_str().unwrap();
        assert_eq!(
            receipt.output_digest.to_string(),
            format!("sha256:{}", hex::encode(Sha256::digest(out.as_bytes())))
        );
    }
    node.stop().await;
}
