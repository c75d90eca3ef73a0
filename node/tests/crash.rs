//! The real `vouch-node` binary, killed with SIGKILL mid-job and restarted: jobs are re-run,
//! nothing is signed twice with different results, and nothing is left behind.

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use vouch_node::signer::{ResultBody, SigningStore};
use vouch_proto::{Digest, JobId, NetworkId, Root32};

const BIN: &str = env!("CARGO_BIN_EXE_vouch-node");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A node process that is killed when the test ends, however it ends.
struct NodeProc(Child);

impl std::ops::Deref for NodeProc {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for NodeProc {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(dir: &Path, port: u16) -> NodeProc {
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))
        .unwrap();
    NodeProc(
        Command::new(BIN)
            .args(["run", "--data-dir"])
            .arg(dir)
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--network",
                "crash-test",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    )
}

async fn wait_healthy(url: &str) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if let Ok(r) = client().get(format!("{url}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("node at {url} did not become healthy");
}

async fn wait_no_containers(label: &str) {
    let t0 = Instant::now();
    while !containers_with_label(label).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "containers of the crashed node were not removed: {:?}",
            containers_with_label(label)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn kill9(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// The container label of the node whose key is in `dir` (its public key's first 16 hex).
fn node_label(dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(["keys", "show", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim()[..16].to_string()
}

fn export(dir: &Path) -> std::process::Output {
    Command::new(BIN)
        .args([
            "signing-history",
            "export",
            "--file",
            "-",
            "--network",
            "crash-test",
            "--data-dir",
        ])
        .arg(dir)
        .output()
        .unwrap()
}

async fn status(url: &str, id: &str) -> String {
    let v: Value = client()
        .get(format!("{url}/v1/jobs/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["status"].as_str().unwrap_or_default().to_string()
}

#[tokio::test]
async fn kill_9_mid_job_then_restart() {
    if !docker_available().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["keys", "generate", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let operator = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let label = operator[..16].to_string();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut node = spawn(dir.path(), port);
    wait_healthy(&url).await;

    let quick = run_job(
        &url,
        json!({"image": "vouch/wc:dev", "input": "before the crash"}),
    )
    .await;
    assert_eq!(quick["status"], "succeeded");
    // Slow jobs (3 s each); the node runs 4 at a time, so 2 are still queued at the crash.
    let mut ids = vec![];
    for n in 0..6 {
        let (s, v) = submit(&url, json!({"image": "vouch/sleep:dev", "command": ["3000"], "input": format!("job {n}"), "nonce": n.to_string()})).await;
        assert_eq!(s, 202, "{v}");
        ids.push(v["job_id"].as_str().unwrap().to_string());
    }
    let t0 = Instant::now();
    while status(&url, &ids[0]).await != "running" {
        assert!(t0.elapsed() < Duration::from_secs(20), "job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status(&url, &ids[5]).await, "queued");
    // `running` is recorded just before the container is created: crash only once one
    // exists, so the crash really is mid-run (on a loaded machine creation takes a while).
    while containers_with_label(&label).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no container ever started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Offline tools refuse to touch the history of a running node.
    let refused = export(dir.path());
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("in use by a running vouch-node"),
        "{refused:?}"
    );

    kill9(&mut node);
    assert!(
        !containers_with_label(&label).is_empty(),
        "the crash left the running containers behind"
    );
    // With the node dead the lock is free again.
    let exported = export(dir.path());
    assert!(exported.status.success(), "{exported:?}");

    let mut node = spawn(dir.path(), port);
    wait_healthy(&url).await;
    let mut sequences = vec![quick["receipt"]["sequence"].as_u64().unwrap()];
    for id in &ids {
        let job = wait(&url, id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let receipt: vouch_proto::ReceiptJson =
            serde_json::from_value(job["receipt"].clone()).unwrap();
        receipt.verify().unwrap();
        assert_eq!(receipt.operator.to_hex(), operator);
        sequences.push(receipt.sequence);
    }
    let n = sequences.len();
    sequences.sort();
    sequences.dedup();
    assert_eq!(
        sequences.len(),
        n,
        "sequence numbers are unique across the crash"
    );
    // The quick job is not re-run: its receipt is the one from before.
    let again: Value = client()
        .get(format!(
            "{url}/v1/jobs/{}",
            quick["job_id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["receipt"], quick["receipt"]);
    // The restarted node removes what the crash left, including containers the daemon
    // finished creating after the old process died.
    wait_no_containers(&label).await;

    let _ = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status();
    let t0 = Instant::now();
    while node.try_wait().unwrap().is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "SIGTERM did not stop the node"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let history: Value = serde_json::from_slice(&export(dir.path()).stdout).unwrap();
    assert_eq!(
        history["data"][0]["signed_receipts"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
}

#[tokio::test]
async fn a_rerun_after_a_crash_never_signs_a_different_result() {
    if !docker_available().await {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    assert!(Command::new(BIN)
        .args(["keys", "generate", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap()
        .status
        .success());
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut node = spawn(dir.path(), port);
    wait_healthy(&url).await;
    let (s, v) = submit(
        &url,
        json!({"image": "vouch/sleep:dev", "command": ["3000"], "input": "real output"}),
    )
    .await;
    assert_eq!(s, 202);
    let id = v["job_id"].as_str().unwrap().to_string();
    let spec = &v["spec"];
    while status(&url, &id).await != "running" {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill9(&mut node);

    // Pretend the crashed process had signed a different result for this job just before
    // dying: put that into the history with the operator's own key.
    let key = vouch_node::keys::load(&dir.path().join("operator.pem")).unwrap();
    let store = SigningStore::open(
        &dir.path().join(vouch_node::paths::SIGNING),
        key,
        NetworkId::from_name("crash-test"),
    )
    .unwrap();
    let job_id: JobId = id.parse().unwrap();
    let (earlier, _) = store
        .sign_result(&ResultBody {
            job_id,
            image: spec["image"].as_str().unwrap().parse().unwrap(),
            input_digest: Digest::of(b"real output"),
            output_digest: Digest::of(b"something else"),
            output_len: 14,
            exit_code: 0,
            trace_root: Root32::default(),
            trace_len: 0,
        })
        .unwrap();
    drop(store);

    let mut node = spawn(dir.path(), port);
    wait_healthy(&url).await;
    let job = wait(&url, &id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["reason"]
            .as_str()
            .unwrap()
            .contains("already has a receipt with a different result"),
        "{job}"
    );
    let label = node_label(dir.path());
    wait_no_containers(&label).await;
    let _ = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status();
    let _ = node.wait();
    assert!(containers_with_label(&label).is_empty());
    let history: Value = serde_json::from_slice(&export(dir.path()).stdout).unwrap();
    let entries = history["data"][0]["signed_receipts"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        1,
        "only the earlier receipt exists: {history}"
    );
    assert_eq!(
        entries[0]["signing_root"],
        hex::encode(earlier.receipt.signing_root())
    );
}
