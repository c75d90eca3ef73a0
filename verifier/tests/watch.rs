//! Watcher mode end to end, and the beacon it samples with.
//!
//! `watcher_disputes_the_wrong_receipt_and_matches_the_honest_one` runs real parts: the
//! verifier's API on a loopback socket over a SQLite ledger with a Docker executor, a
//! vouch-net swarm playing the operator's node (it serves the job specs under their job
//! ids and the inputs by digest, and gossips the receipts), and the watcher with its own
//! swarm and Docker executor. It needs Docker and `images/build.sh`; without Docker it is
//! skipped, except under `CI=true`, where that is a failure. The beacon tests need nothing.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::*;
use ed25519_dalek::{Signer as _, SigningKey};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;
use vouch_exec::{DockerExecutor, Executor, RunOutcome};
use vouch_net::libp2p::identity::Keypair;
use vouch_net::libp2p::Multiaddr;
use vouch_net::{BlobStore, GossipValidator, NetConfig, NetError, Network, TopicKind};
use vouch_proto::{
    Amount, Determinism, Digest, JobSpec, Limits, OperatorKey, Receipt, Root32, SignedReceipt,
};
use vouch_verifier::watch::{required_rate, Deterrence, WatchConfig, WatchStatus};
use vouch_verifier::{
    router, ApiState, Bond, CollateralLedger, DisputeConfig, Key, LedgerConfig, MemoryLedger,
    RequestBody, SqliteLedger, Verifier,
};

const STAKE: u128 = 1_000_000;
const CHALLENGER_DEPOSIT: u128 = 1_000;
const BOND: u128 = 100;
/// How long the operator has to answer a withholding dispute in these tests.
const WITHHOLDING_DEADLINE_MS: u64 = 3_000;
/// Short epochs, so a receipt's beacon comes within a second.
const EPOCH_MS: u64 = 500;

fn unique_label(what: &str) -> String {
    let d = Digest::of(format!("{what} {:?} {}", Instant::now(), std::process::id()).as_bytes());
    format!("vouch-watch-test-{what}-{}", &d.to_string()[7..23])
}

/// Containers still carrying `label` (there must be none after a run).
fn leftover_containers(label: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=vouch.node={label}"),
        ])
        .output();
    let Ok(out) = out else {
        return vec![]; // no docker CLI: nothing could have been started
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Removes the test's containers whatever happens.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for label in &self.0 {
            for id in leftover_containers(label) {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f", &id])
                    .output();
            }
        }
    }
}

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let uri = req.uri().to_string();
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "{uri}: answer is not JSON: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, value)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    call(app, req).await
}

async fn post(app: &Router, uri: &str, body: &impl serde::Serialize) -> (StatusCode, Value) {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("request");
    call(app, req).await
}

fn spec(image: Digest, input: &[u8], nonce: &str) -> JobSpec {
    JobSpec {
        image,
        command: vec![],
        env: vec![],
        input_digest: Digest::of(input),
        limits: Limits {
            cpu_millis: 1000,
            memory_bytes: 64 << 20,
            output_bytes: 1 << 20,
            pids: 64,
            timeout_ms: 10_000,
            tmpfs_bytes: 1 << 20,
        },
        determinism: Determinism::Deterministic,
        value_at_risk: Amount(0),
        replicas: 1,
        nonce: nonce.into(),
    }
}

fn sign_receipt(
    key: &SigningKey,
    sequence: u64,
    spec: &JobSpec,
    output: &[u8],
    exit_code: i32,
) -> SignedReceipt {
    let receipt = Receipt {
        network_id: network(),
        operator: OperatorKey(key.verifying_key().to_bytes()),
        sequence,
        job_id: spec.job_id().expect("valid spec"),
        image: spec.image,
        input_digest: spec.input_digest,
        output_digest: Digest::of(output),
        output_len: output.len() as u64,
        exit_code,
        trace_root: Root32::default(),
        trace_len: 0,
        issued_at_ms: vouch_verifier::api::system_now_ms(),
    };
    let signature = key.sign(&receipt.signing_root()).to_bytes();
    SignedReceipt { receipt, signature }
}

/// What the operator's node serves over the blob protocol: specs under their job ids
/// (SPEC.md §10.7), inputs under their SHA-256.
#[derive(Default)]
struct OperatorBlobs(Mutex<HashMap<[u8; 32], Vec<u8>>>);

impl OperatorBlobs {
    fn add_job(&self, spec: &JobSpec, input: &[u8]) {
        let mut m = self.0.lock().expect("lock");
        let job_id = spec.job_id().expect("id");
        m.insert(job_id.0, spec.canonical_bytes().expect("canonical"));
        m.insert(Digest::of(input).0, input.to_vec());
    }
}

impl BlobStore for OperatorBlobs {
    fn get(&self, digest: &[u8; 32]) -> Option<Vec<u8>> {
        self.0.lock().expect("lock").get(digest).cloned()
    }
}

/// Slashes in the log: `slash` events and disputes closed with one.
fn slash_events(ledger: &SqliteLedger) -> usize {
    ledger
        .events_from(0, 1000)
        .expect("events")
        .iter()
        .filter(|e| {
            e.kind == "slash"
                || (e.kind == "close_dispute"
                    && e.payload["request"]["body"]["ruling"]["verdict"] == "slashed")
        })
        .count()
}

/// What the end-to-end watcher tests share: a verifier (API, SQLite ledger, Docker), a
/// staked operator whose swarm serves two jobs and gossips an honest receipt, a lie and a
/// forged receipt, and a watcher sampling at `sample_rate` (raised per job with
/// `deterrence`).
struct Scene {
    _cleanup: Cleanup,
    _dir: tempfile::TempDir,
    ledger: Arc<SqliteLedger>,
    api: Router,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    watcher: Arc<vouch_verifier::watch::Watcher>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop_tx: tokio::sync::watch::Sender<bool>,
    op_net: vouch_net::NetworkHandle,
    lie: SignedReceipt,
    /// The lie's spec and input (what the operator withholds with `withhold_lie`).
    lie_job: (JobSpec, Vec<u8>),
    published_ms: u64,
    labels: [String; 2],
    /// The verifier service (to join the network again).
    verifier: Arc<Verifier>,
    /// With `verifier_gossip`: the verifier on the network too, and its API over it.
    verifier_net: Option<(
        Arc<vouch_verifier::gossip::VerifierNet>,
        Router,
        tokio::sync::watch::Sender<bool>,
    )>,
}

async fn scene(
    sample_rate: f64,
    deterrence: Option<Deterrence>,
    honest_value: u128,
    lie_value: u128,
    verifier_gossip: bool,
    withhold_lie: bool,
) -> Scene {
    let verifier_label = unique_label("verifier");
    let watcher_label = unique_label("watcher");
    let cleanup = Cleanup(vec![verifier_label.clone(), watcher_label.clone()]);

    // The verifier: SQLite ledger, Docker, beacon epochs of 500 ms, on a loopback socket.
    // The challenge window is long enough for the receipts to stay disputable.
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LedgerConfig::new(600_000, 1_200_000, MIN_STAKE_VALUE).expect("config");
    let ledger = Arc::new(
        SqliteLedger::open(dir.path().join("ledger.sqlite"), config, NET, admin()).expect("open"),
    );
    let verifier_docker = Arc::new(DockerExecutor::new(
        DockerExecutor::default_host(),
        verifier_label.clone(),
    ));
    let verifier = Verifier::new(ledger.clone(), admin(), network(), DisputeConfig::default())
        .with_executor(verifier_docker)
        .with_withholding_deadline_ms(WITHHOLDING_DEADLINE_MS);
    let verifier = Arc::new(verifier);
    let state = ApiState::new(verifier.clone()).with_beacon_epoch_ms(EPOCH_MS);
    let api = router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let served = api.clone();
    let server = tokio::spawn(async move { axum::serve(listener, served).await });

    // A staked operator and a challenger with a deposit for its bonds.
    let mut s = Signer::default();
    let mut requests = staked_operator(&mut s, &operator(), STAKE);
    requests.push(s.req(
        &challenger(),
        RequestBody::Deposit {
            asset: "eth".into(),
            amount: CHALLENGER_DEPOSIT,
        },
    ));
    for r in &requests {
        let (status, body) = post(&api, "/v1/requests", r).await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", r.body.kind());
    }

    // Two jobs of a real image: what an honest operator signs (a real run's output) and
    // a lie about the other.
    let probe = DockerExecutor::new(DockerExecutor::default_host(), watcher_label.clone());
    let image = probe.resolve_image("vouch/wc:dev").await.expect("image");
    let honest_input = b"the honest operator\ncounts words\n";
    let mut honest_spec = spec(image, honest_input, "watch-honest");
    honest_spec.value_at_risk = Amount(honest_value);
    let RunOutcome::Exited {
        exit_code, stdout, ..
    } = probe
        .run(
            honest_spec.job_id().expect("id"),
            &honest_spec,
            honest_input.to_vec().into(),
        )
        .await
        .expect("run")
    else {
        panic!("wc broke a limit")
    };
    let honest = sign_receipt(&operator(), 1, &honest_spec, &stdout, exit_code);
    let lie_input = b"one two three\n";
    let mut lie_spec = spec(image, lie_input, "watch-lie");
    lie_spec.value_at_risk = Amount(lie_value);
    let lie = sign_receipt(&operator(), 2, &lie_spec, b"42\n", 0);
    // A receipt by a key the verifier never registered: the watcher must drop it.
    let stranger = sk(66);
    let forged = sign_receipt(&stranger, 1, &lie_spec, b"42\n", 0);

    // The operator's node: serves both jobs (or only the honest one), accepts its own
    // receipts (and, to publish it at all, the stranger's).
    let blobs = Arc::new(OperatorBlobs::default());
    blobs.add_job(&honest_spec, honest_input);
    if !withhold_lie {
        blobs.add_job(&lie_spec, lie_input);
    }
    let registry: vouch_net::Registry = Arc::new(RwLock::new(HashSet::from([
        OperatorKey(operator().verifying_key().to_bytes()),
        OperatorKey(stranger.verifying_key().to_bytes()),
    ])));
    let mut nc = NetConfig::new(network());
    nc.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
    nc.mdns = false;
    nc.colocation_whitelist
        .insert(std::net::IpAddr::from([127, 0, 0, 1]));
    let op_key = Keypair::generate_ed25519();
    let op_peer = op_key.public().to_peer_id();
    let (op_net, _op_delivered) = Network::spawn_with_store(
        nc,
        op_key,
        GossipValidator::new(network(), registry, Arc::default()),
        blobs,
    )
    .await
    .expect("operator swarm");
    let op_addr: Multiaddr = op_net.listen_addrs().await.expect("addrs")[0]
        .clone()
        .with(vouch_net::libp2p::multiaddr::Protocol::P2p(op_peer));

    // The watcher: every receipt sampled, one re-execution at a time.
    let watcher_docker = Arc::new(DockerExecutor::new(
        DockerExecutor::default_host(),
        watcher_label.clone(),
    ));
    let mut wc = WatchConfig::new(
        &url,
        challenger(),
        Bond {
            asset: "eth".into(),
            amount: BOND,
        },
        sample_rate,
    );
    wc.deterrence = deterrence;
    wc.p2p.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")];
    wc.p2p.bootstrap = vec![op_addr.clone()];
    wc.p2p.mdns = false;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (watcher, tasks) =
        vouch_verifier::watch::start(wc, Keypair::generate_ed25519(), watcher_docker, stop_rx)
            .await
            .expect("watcher starts");
    assert_eq!(watcher.network(), network());

    // The verifier on the network as well, when asked: it hears the receipts itself.
    let verifier_net = if verifier_gossip {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let opts = vouch_verifier::gossip::GossipOptions {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
            bootstrap: vec![op_addr],
            mdns: false,
            open_jobs: Some(dir.path().join("open-jobs.sqlite")),
        };
        let (vnet, _tasks) = vouch_verifier::gossip::start(
            verifier.clone(),
            admin(),
            Keypair::generate_ed25519(),
            opts,
            rx,
        )
        .await
        .expect("the verifier joins");
        let with_net = router(state.clone().with_network(vnet.clone()));
        Some((vnet, with_net, tx))
    } else {
        None
    };

    // Publish once the watcher (and the verifier) are in the operator's receipts mesh.
    let deadline = Instant::now() + Duration::from_secs(20);
    while op_net
        .mesh_peers(TopicKind::Receipts)
        .await
        .expect("mesh")
        .len()
        < 1 + usize::from(verifier_gossip)
    {
        assert!(
            Instant::now() < deadline,
            "the watcher never joined the mesh"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let published_ms = vouch_verifier::api::system_now_ms();
    for r in [&forged, &honest, &lie] {
        match op_net.publish_receipt(r).await {
            Ok(()) | Err(NetError::NoPeers) => {}
            Err(e) => panic!("publish: {e}"),
        }
    }

    Scene {
        _cleanup: cleanup,
        _dir: dir,
        ledger,
        api,
        server,
        watcher,
        tasks,
        stop_tx,
        op_net,
        lie,
        lie_job: (lie_spec, lie_input.to_vec()),
        published_ms,
        labels: [verifier_label, watcher_label],
        verifier,
        verifier_net,
    }
}

impl Scene {
    /// Stops everything and checks that no container is left behind.
    async fn stop(self) {
        let Scene {
            watcher,
            tasks,
            stop_tx,
            op_net,
            server,
            labels,
            verifier_net,
            ..
        } = self;
        if let Some((vnet, _, stop)) = verifier_net {
            let _ = stop.send(true);
            let _ = vnet.net.shutdown().await;
        }
        let _ = stop_tx.send(true);
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("watcher tasks end")
                .expect("watcher task");
        }
        let _ = watcher.net.shutdown().await;
        let _ = op_net.shutdown().await;
        server.abort();
        for label in &labels {
            assert!(
                leftover_containers(label).is_empty(),
                "containers left behind"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watcher_disputes_the_wrong_receipt_and_matches_the_honest_one() {
    if !docker_available(&["vouch/wc:dev"]).await {
        return;
    }
    let started = Instant::now();
    // Every receipt sampled.
    let sc = scene(1.0, None, 0, 0, false, false).await;
    let (watcher, ledger, api, lie, published_ms) =
        (&sc.watcher, &sc.ledger, &sc.api, &sc.lie, sc.published_ms);
    // Wait for both verdicts: the lie disputed and slashed, the honest one matched.
    let deadline = Instant::now() + Duration::from_secs(120);
    let status: WatchStatus = loop {
        let s = watcher.status();
        if s.matched >= 1 && s.disputes.values().sum::<u64>() >= 1 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no verdicts within 120 s: {}",
            serde_json::to_string_pretty(&s).expect("json")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let shown = serde_json::to_string_pretty(&status).expect("json");
    assert_eq!(status.heard, 2, "the forged receipt is not heard: {shown}");
    assert!(
        watcher.net.stats().rejected() >= 1,
        "the forged receipt was rejected"
    );
    assert_eq!(status.sampled, 2, "{shown}");
    assert_eq!(status.not_sampled, 0, "{shown}");
    assert_eq!(status.reexecuted, 2, "{shown}");
    assert_eq!(status.matched, 1, "{shown}");
    assert_eq!(status.mismatched, 1, "{shown}");
    assert!(status.skipped.is_empty(), "{shown}");
    assert_eq!(status.disputes.get("slashed"), Some(&1), "{shown}");
    assert_eq!(status.disputes.len(), 1, "{shown}");
    assert_eq!(status.recent_disputes.len(), 1, "{shown}");
    let d = &status.recent_disputes[0];
    assert_eq!(d.job_id, lie.receipt.job_id.to_string());
    assert_eq!(d.receipt, hex::encode(lie.receipt.signing_root()));
    assert_eq!(d.status, "slashed");
    // Sampled with the beacon of an epoch after the one the receipts were heard in.
    let epoch_heard = vouch_proto::epoch_of(published_ms, EPOCH_MS);
    assert!(
        status.last_beacon_epoch > Some(epoch_heard),
        "beacon of epoch {:?}, heard in {epoch_heard}",
        status.last_beacon_epoch
    );

    // The status API says the same.
    let (code, api_status) =
        get(&vouch_verifier::watch::router(watcher.clone()), "/v1/watch").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(api_status["matched"], 1);
    assert_eq!(api_status["disputes"]["slashed"], 1);

    // The ledger: one slash, by one dispute; the operator jailed; the bounty paid and the
    // bond back; nothing open.
    assert_eq!(slash_events(ledger), 1);
    let op = Key::of(&operator());
    assert!(
        ledger
            .operator(&op)
            .expect("op")
            .expect("registered")
            .jailed
    );
    let bounty = STAKE / 2 / 10;
    assert_eq!(
        ledger
            .balance(&Key::of(&challenger()), "eth")
            .expect("balance"),
        CHALLENGER_DEPOSIT + bounty
    );
    assert!(ledger.open_disputes().expect("open").is_empty());
    let (code, dispute) = get(api, &format!("/v1/disputes/{}", d.dispute)).await;
    assert_eq!(code, StatusCode::OK, "{dispute}");
    assert_eq!(dispute["verdict"]["outcome"], "slashed");
    assert_eq!(dispute["verdict"]["job_id"], lie.receipt.job_id.to_string());

    sc.stop().await;
    eprintln!("watcher end to end: {:?}", started.elapsed());
}

/// With the per-job rate and a base rate of 0, a receipt is checked exactly when its
/// job's value at risk needs it: the lie, worth as much as the slash (p = 1), is checked
/// and slashed; the honest receipt, worth nothing (p = 0), is not checked at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_per_job_rate_checks_the_valuable_job_and_skips_the_worthless_one() {
    if !docker_available(&["vouch/wc:dev"]).await {
        return;
    }
    let d = Deterrence {
        collusion_ppm: 0,
        lambda_ppm: 1_000_000,
    };
    // The operator's stake 1,000,000 at price 1, half slashed: S = 500,000.
    let sc = scene(0.0, Some(d), 0, STAKE / 2, false, false).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let status: WatchStatus = loop {
        let s = sc.watcher.status();
        if s.disputes.values().sum::<u64>() >= 1 && s.sampled + s.not_sampled >= 2 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no verdict within 120 s: {}",
            serde_json::to_string_pretty(&s).expect("json")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let shown = serde_json::to_string_pretty(&status).expect("json");
    assert_eq!(status.heard, 2, "{shown}");
    assert_eq!((status.sampled, status.not_sampled), (1, 1), "{shown}");
    assert_eq!(status.rate_raised, 1, "{shown}");
    assert_eq!(status.reexecuted, 1, "{shown}");
    assert_eq!(status.mismatched, 1, "{shown}");
    assert_eq!(status.disputes.get("slashed"), Some(&1), "{shown}");
    assert_eq!(status.deterrence, Some(d), "{shown}");
    assert_eq!(
        status.recent_disputes[0].job_id,
        sc.lie.receipt.job_id.to_string()
    );
    assert_eq!(slash_events(&sc.ledger), 1);
    sc.stop().await;
}

/// The verifier on the network hears the operator's receipts, fetches their specs and
/// reports their value at risk as open in `GET /v1/security` (the forged receipt of an
/// unregistered key is not heard).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_verifier_counts_heard_receipts_as_open_value_at_risk() {
    if !docker_available(&["vouch/wc:dev"]).await {
        return;
    }
    // The watcher checks nothing here (rate 0): only the verifier's accounting is tested.
    let sc = scene(0.0, None, 7, 11, true, false).await;
    let (_, api, _) = sc.verifier_net.as_ref().expect("gossip");
    let op = Key::of(&operator()).to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let figures = loop {
        let (code, sec) = get(api, "/v1/security").await;
        assert_eq!(code, StatusCode::OK, "{sec}");
        let mine = sec["operators"]
            .as_array()
            .expect("operators")
            .iter()
            .find(|o| o["operator"] == op.as_str())
            .cloned()
            .expect("the operator");
        if mine["open_jobs"] == 2 {
            break (sec, mine);
        }
        assert!(Instant::now() < deadline, "never priced: {sec:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (sec, mine) = figures;
    assert_eq!(mine["open_value_at_risk"], "18", "{sec:#}");
    assert_eq!(mine["stake_value"], STAKE.to_string(), "{sec:#}");
    assert_eq!(
        mine["slashable_per_offence"],
        (STAKE / 2).to_string(),
        "{sec:#}"
    );
    assert_eq!(mine["cap"], "454545", "{sec:#}");
    assert_eq!(mine["margin"], (454_545 - 18).to_string(), "{sec:#}");
    assert_eq!(mine["condition_holds"], true, "{sec:#}");
    assert_eq!(sec["service"]["profit_from_corruption"], "18", "{sec:#}");
    assert!(
        sec["open_jobs_source"]
            .as_str()
            .unwrap_or("")
            .contains("2 heard"),
        "{sec:#}"
    );

    // A verifier started again on the same data directory, alone on the network (no
    // peer to hear the receipts from again), still counts them: they are kept in
    // open-jobs.sqlite until the challenge window closes.
    let (vnet, _, stop) = sc.verifier_net.as_ref().expect("gossip");
    let _ = stop.send(true);
    let _ = vnet.net.shutdown().await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let opts = vouch_verifier::gossip::GossipOptions {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
        bootstrap: vec![],
        mdns: false,
        open_jobs: Some(sc._dir.path().join("open-jobs.sqlite")),
    };
    let (again, _tasks) = vouch_verifier::gossip::start(
        sc.verifier.clone(),
        admin(),
        Keypair::generate_ed25519(),
        opts,
        rx,
    )
    .await
    .expect("the verifier joins again");
    let now = vouch_verifier::api::system_now_ms();
    let open = again.open_value_at_risk(now, 600_000);
    let mine = open
        .get(&OperatorKey(operator().verifying_key().to_bytes()))
        .copied();
    assert_eq!(mine, Some((2, 18)), "{open:?}");
    assert_eq!(again.heard(), 0, "nothing heard since the restart");
    // Past the challenge window they are gone, from the file too.
    assert!(again.open_value_at_risk(now + 600_000, 600_000).is_empty());
    let _ = tx.send(true);
    let _ = again.net.shutdown().await;
    let (tx2, rx2) = tokio::sync::watch::channel(false);
    let opts = vouch_verifier::gossip::GossipOptions {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("addr")],
        bootstrap: vec![],
        mdns: false,
        open_jobs: Some(sc._dir.path().join("open-jobs.sqlite")),
    };
    let (third, _tasks) = vouch_verifier::gossip::start(
        sc.verifier.clone(),
        admin(),
        Keypair::generate_ed25519(),
        opts,
        rx2,
    )
    .await
    .expect("the verifier joins a third time");
    assert!(third.open_value_at_risk(now, 600_000).is_empty());
    let _ = tx2.send(true);
    let _ = third.net.shutdown().await;
    sc.stop().await;
}

/// Waits until the watcher has `n` final disputes.
async fn final_disputes(watcher: &vouch_verifier::watch::Watcher, n: u64) -> WatchStatus {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = watcher.status();
        if s.disputes.values().sum::<u64>() >= n && s.matched >= 1 {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "not {n} final disputes within 120 s: {}",
            serde_json::to_string_pretty(&s).expect("json")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The operator serves its honest job but not the lie's spec and input: the watcher
/// demands them with a withholding dispute, nobody publishes them, and the verifier
/// slashes the operator at the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn withheld_evidence_is_demanded_and_an_operator_that_stays_silent_is_slashed() {
    if !docker_available(&["vouch/wc:dev"]).await {
        return;
    }
    let sc = scene(1.0, None, 0, 0, false, true).await;
    let status = final_disputes(&sc.watcher, 1).await;
    let shown = serde_json::to_string_pretty(&status).expect("json");
    assert_eq!(status.matched, 1, "{shown}");
    assert_eq!(status.skipped.get("spec_unavailable"), Some(&1), "{shown}");
    assert_eq!(
        status.disputes.get("withholding_slashed"),
        Some(&1),
        "{shown}"
    );
    let d = &status.recent_disputes[0];
    assert_eq!(d.kind, "withholding", "{shown}");
    assert_eq!(d.job_id, sc.lie.receipt.job_id.to_string());
    let (_, dispute) = get(&sc.api, &format!("/v1/disputes/{}", d.dispute)).await;
    assert_eq!(dispute["verdict"]["outcome"], "slashed", "{dispute:#}");
    assert_eq!(
        dispute["withholding"]["demand"]["spec"], true,
        "{dispute:#}"
    );
    assert_eq!(slash_events(&sc.ledger), 1);
    // The bond came back, with the bounty.
    assert_eq!(
        sc.ledger
            .balance(&Key::of(&challenger()), "eth")
            .expect("balance"),
        CHALLENGER_DEPOSIT + STAKE / 2 / 10
    );
    sc.stop().await;
}

/// The operator withholds the lie's spec and input from peers but publishes them when the
/// watcher demands them: the watcher checks the receipt from the published evidence, finds
/// the lie and has it slashed by re-execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn evidence_published_under_a_withholding_dispute_is_checked() {
    use base64::Engine as _;
    if !docker_available(&["vouch/wc:dev"]).await {
        return;
    }
    let sc = scene(1.0, None, 0, 0, false, true).await;
    // The operator's side: answer the demand once it is open (what vouch-node does).
    let op = Key::of(&operator());
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let (_, open) = get(
            &sc.api,
            &format!("/v1/disputes?state=open&kind=withholding&operator={op}"),
        )
        .await;
        if let Some(id) = open["disputes"][0]["dispute"].as_str() {
            break id.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no withholding dispute: {open:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (spec, input) = &sc.lie_job;
    let answer = serde_json::json!({
        "spec": spec,
        "input_base64": base64::engine::general_purpose::STANDARD.encode(input),
    });
    let (code, answered) = post(&sc.api, &format!("/v1/disputes/{id}/answer"), &answer).await;
    assert_eq!(code, StatusCode::OK, "{answered:#}");
    assert_eq!(answered["verdict"]["outcome"], "void");
    // The watcher re-runs the job from what was published and disputes the lie.
    let status = final_disputes(&sc.watcher, 2).await;
    let shown = serde_json::to_string_pretty(&status).expect("json");
    assert_eq!(status.disputes.get("void"), Some(&1), "{shown}");
    assert_eq!(status.disputes.get("slashed"), Some(&1), "{shown}");
    assert_eq!(status.reexecuted, 2, "{shown}");
    assert_eq!(status.mismatched, 1, "{shown}");
    let kinds: Vec<(&str, &str)> = status
        .recent_disputes
        .iter()
        .map(|d| (d.kind.as_str(), d.status.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("withholding", "void"), ("wrong_result", "slashed")],
        "{shown}"
    );
    assert_eq!(slash_events(&sc.ledger), 1);
    sc.stop().await;
}

#[test]
fn the_required_rate_follows_value_at_risk_and_slash() {
    let d = |r: u32, l: u32| Deterrence {
        collusion_ppm: r,
        lambda_ppm: l,
    };
    assert_eq!(required_rate(0, 500, d(0, 1_000_000)), 0.0);
    assert_eq!(required_rate(50, 500, d(0, 1_000_000)), 0.1);
    assert_eq!(required_rate(454, 500, d(0, 1_000_000)), 0.908);
    // Colluding checkers and a safety factor raise it; it is capped at 1.
    assert_eq!(required_rate(50, 500, d(500_000, 1_000_000)), 0.2);
    assert_eq!(required_rate(50, 500, d(0, 2_000_000)), 0.2);
    assert_eq!(required_rate(500, 500, d(0, 1_000_000)), 1.0);
    assert_eq!(required_rate(10_000, 500, d(0, 1_000_000)), 1.0);
    // Nothing to slash: always check.
    assert_eq!(required_rate(1, 0, d(0, 1_000_000)), 1.0);
}

/// A verifier API over an in-memory ledger whose clock reads `now`.
fn beacon_api(now: u64) -> Router {
    let ledger = Arc::new(MemoryLedger::new(config(), NET, admin()));
    let verifier = Verifier::new(ledger, admin(), network(), DisputeConfig::default());
    router(
        ApiState::new(Arc::new(verifier))
            .with_clock(move || now)
            .with_beacon_epoch_ms(EPOCH_MS),
    )
}

#[tokio::test]
async fn the_beacon_is_revealed_only_after_its_epoch_and_verifies() {
    // 10 250 ms: epoch 20 (10 000..10 500) is running, 19 has ended.
    let api = beacon_api(10_250);
    let verifier_key = OperatorKey(admin().verifying_key().to_bytes());

    for epoch in [20u64, 21, 1_000_000] {
        let (status, v) = get(&api, &format!("/v1/beacon/{epoch}")).await;
        assert_eq!(status, StatusCode::TOO_EARLY, "{v}");
        assert_eq!(v["error"]["code"], "not_yet");
        assert_eq!(v["error"]["available_at_ms"], (epoch + 1) * EPOCH_MS);
        assert_eq!(v["error"]["epoch_ms"], EPOCH_MS);
    }

    let (status, v) = get(&api, "/v1/beacon/19").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["epoch"], 19);
    assert_eq!(v["epoch_ms"], EPOCH_MS);
    let signature: [u8; 64] = hex::decode(v["signature"].as_str().expect("hex"))
        .expect("hex")
        .try_into()
        .expect("64 bytes");
    let beacon = vouch_proto::verify_beacon(&verifier_key, &network(), 19, &signature)
        .expect("the beacon verifies under the verifier key");
    assert_eq!(v["beacon"], hex::encode(beacon));
    assert!(vouch_proto::verify_beacon(&verifier_key, &network(), 18, &signature).is_err());
    // Deterministic: asked again, later, the same beacon.
    let (_, again) = get(&beacon_api(99_999), "/v1/beacon/19").await;
    assert_eq!(again, v);

    // Without an epoch: the last one that has ended.
    let (status, latest) = get(&api, "/v1/beacon").await;
    assert_eq!(status, StatusCode::OK, "{latest}");
    assert_eq!(latest, v);
    // At the very first epoch none has.
    let (status, v) = get(&beacon_api(10), "/v1/beacon").await;
    assert_eq!(status, StatusCode::TOO_EARLY, "{v}");

    for bad in ["abc", "-1", "18446744073709551615"] {
        let (status, v) = get(&api, &format!("/v1/beacon/{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["error"]["param"], "epoch");
    }
}

#[test]
fn the_sample_depends_on_the_beacon_only_through_its_hash() {
    // Two beacons sample different sets at the same rate; one beacon, always the same.
    let roots: Vec<[u8; 32]> = (0u32..2_000)
        .map(|i| Digest::of(&i.to_be_bytes()).0)
        .collect();
    let draw = |beacon: &[u8; 32]| -> Vec<bool> {
        roots
            .iter()
            .map(|r| vouch_proto::sampled(beacon, r, 0.25))
            .collect()
    };
    let a = vouch_proto::beacon_of(&[1; 64]);
    let b = vouch_proto::beacon_of(&[2; 64]);
    assert_eq!(draw(&a), draw(&a));
    assert_ne!(draw(&a), draw(&b));
    let hits = draw(&a).iter().filter(|s| **s).count();
    // 2 000 draws at 0.25: sd ≈ 19.4; ±100 is 5 sigma.
    assert!((400..=600).contains(&hits), "{hits}");
}
