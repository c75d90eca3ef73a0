//! Helpers shared by the tests that need a real Docker engine.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use vouch_node::config::Config;
use vouch_node::executor::{DockerExecutor, Executor};
use vouch_node::node::Node;
use vouch_node::signer::SigningStore;
use vouch_node::store::JobStore;

/// Images the tests use; `images/build.sh` builds them.
pub const IMAGES: &[&str] = &[
    "vouch/wc:dev",
    "vouch/probe:dev",
    "vouch/exit:dev",
    "vouch/sleep:dev",
];

/// True when Docker answers. Without Docker the test is skipped — except under CI=true,
/// where a missing Docker is a failure, not a skip.
pub async fn docker_available() -> bool {
    let exec = DockerExecutor::new(DockerExecutor::default_host(), "vouch-test-probe");
    match exec.health().await {
        Ok(()) => {
            for image in IMAGES {
                if exec.resolve_image(image).await.is_err() {
                    panic!("image {image} is missing: run images/build.sh first");
                }
            }
            true
        }
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but Docker is unavailable: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED (no Docker; CI=true makes this a failure): {e}");
            false
        }
    }
}

/// A node served on a loopback port by this process.
pub struct TestNode {
    pub url: String,
    pub label: String,
    pub dir: tempfile::TempDir,
    pub operator: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestNode {
    /// A test that panics before `stop` must not leave its containers (warm models) behind.
    fn drop(&mut self) {
        for id in containers_with_label(&self.label) {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &id])
                .output();
        }
    }
}

impl TestNode {
    pub async fn start(mutate: impl FnOnce(&mut Config)) -> TestNode {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        Self::start_with_key(key, mutate).await
    }

    /// Like [`TestNode::start`], with a given operator key.
    pub async fn start_with_key(
        key: ed25519_dalek::SigningKey,
        mutate: impl FnOnce(&mut Config),
    ) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.data_dir = dir.path().to_path_buf();
        config.shutdown_grace_ms = 2000;
        mutate(&mut config);
        let signer =
            SigningStore::open(&dir.path().join("signing.sqlite"), key, config.network_id())
                .unwrap();
        let operator = signer.operator().to_hex();
        let label = format!("test-{}", &hex::encode(rand::random::<[u8; 6]>()));
        let exec = DockerExecutor::new(config.docker_endpoint(), label.clone());
        let store = JobStore::open(&dir.path().join("jobs.sqlite")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (node, worker) = Node::new(config, Arc::new(store), Arc::new(signer), Arc::new(exec));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            vouch_node::serve(node, worker, listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestNode {
            url,
            label,
            dir,
            operator,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        assert_eq!(
            containers_with_label(&self.label),
            Vec::<String>::new(),
            "the node left containers behind"
        );
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// Submits and returns (status, body).
pub async fn submit(url: &str, body: Value) -> (u16, Value) {
    let resp = client()
        .post(format!("{url}/v1/jobs"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Waits until the job is final and returns its JSON.
pub async fn wait(url: &str, id: &str) -> Value {
    for _ in 0..20 {
        let v: Value = client()
            .get(format!("{url}/v1/jobs/{id}?wait_ms=10000"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["status"] == "succeeded" || v["status"] == "failed" {
            return v;
        }
    }
    panic!("job {id} did not finish");
}

/// Submits, waits, returns the final job JSON.
pub async fn run_job(url: &str, body: Value) -> Value {
    let (status, v) = submit(url, body).await;
    assert!(status == 202 || status == 200, "submit: {status} {v}");
    wait(url, v["job_id"].as_str().unwrap()).await
}

/// Containers (any state) carrying this node's label.
pub fn containers_with_label(label: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=vouch.node={label}"),
        ])
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// A fresh operator key.
pub fn key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng)
}

/// `GET url`, which must succeed, as JSON.
pub async fn get(url: &str) -> Value {
    let resp = client().get(url).send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "GET {url}: {status} {v}");
    v
}

/// Polls `f` every 200 ms for up to a minute.
pub async fn wait_until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out: {what}");
}

/// A node's dialable address, from its `/v1/peers`.
pub async fn bootstrap_addr(url: &str) -> String {
    let p = get(&format!("{url}/v1/peers")).await;
    let addr = p["listen_addrs"][0].as_str().unwrap();
    format!("{addr}/p2p/{}", p["peer_id"].as_str().unwrap())
}

/// A bare swarm on the test network (`vouch-devnet`) bootstrapping from `bootstrap`, whose
/// registry is `ops` (64-hex operator keys): to look at nodes from outside, or to gossip
/// what a node would not.
pub async fn observer(bootstrap: &str, ops: &[String]) -> vouch_net::NetworkHandle {
    use vouch_net::{GossipValidator, NetConfig, Network, Registry, VerifierKey};
    let network_id = vouch_proto::NetworkId::parse_or_name("vouch-devnet");
    let registry = Registry::default();
    registry.write().unwrap().extend(
        ops.iter()
            .map(|h| h.parse::<vouch_proto::OperatorKey>().unwrap()),
    );
    let mut nc = NetConfig::new(network_id);
    nc.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    nc.mdns = false;
    nc.bootstrap = vec![bootstrap.parse().unwrap()];
    nc.colocation_whitelist.insert([127, 0, 0, 1].into());
    let (net, _rx) = Network::spawn(
        nc,
        vouch_net::libp2p::identity::Keypair::generate_ed25519(),
        GossipValidator::new(network_id, registry, VerifierKey::default()),
    )
    .await
    .unwrap();
    net
}
