//! `kill -9` of the verifier in the middle of a wrong-result dispute: the real
//! `vouch-verifier run` binary as a child process, a real SQLite file, real Docker.
//!
//! The dispute is raised with the real `vouch-verifier dispute result` client. While both
//! re-executions run (a workload that sleeps, so the window is wide), the verifier gets
//! SIGKILL. The ledger file must then be consistent — the chain verifies, stake is
//! conserved, the bond is locked, nothing is slashed — and a verifier started again on it
//! must finish the dispute exactly once: one slash, the bounty once, the bond unlocked,
//! the verdict on `GET /v1/disputes/{id}` and printed by the waiting client, a second
//! submission answered `already_slashed` without a new slash, and no container of the
//! killed process left behind.
//!
//! Needs Docker and `images/build.sh`; without Docker it is skipped, except under
//! `CI=true`, where that is a failure.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{json, Value};
use vouch_exec::{DockerExecutor, Executor as _};
use vouch_proto::{
    Amount, Determinism, Digest, JobSpec, Limits, NetworkId, OperatorKey, Receipt, Root32,
    SignedReceipt,
};
use vouch_verifier::{
    result_dispute_id, verify_chain, Bond, CollateralLedger, Key, LedgerConfig, RequestBody,
    Snapshot, SqliteLedger,
};

const NETWORK: &str = "vouch-crash-test";
const WINDOW_MS: u64 = 3_600_000;
const DELAY_MS: u64 = 7_200_000;
const STAKE: u128 = 1_000_000;
const CHALLENGER_DEPOSIT: u128 = 1_000;
const BOND: u128 = 100;
/// How long each re-execution sleeps: the window in which the verifier is killed.
const SLEEP_MS: &str = "4000";

fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .expect("urandom");
    seed
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// True when Docker answers and has the image. Without Docker the test is skipped —
/// except under CI=true, where a missing Docker is a failure, not a skip.
async fn docker_available() -> bool {
    let exec = DockerExecutor::new(DockerExecutor::default_host(), "vouch-verifier-test-probe");
    match exec.health().await {
        Ok(()) => {
            if exec.resolve_image("vouch/sleep:dev").await.is_err() {
                panic!("image vouch/sleep:dev is missing: run images/build.sh first");
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

/// A minimal blocking HTTP/1.1 exchange (`Connection: close`): the status and the JSON
/// answer, or `Err` when the verifier is not there.
fn http(
    method: &str,
    addr: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let payload = body
        .map(|b| serde_json::to_vec(b).expect("json"))
        .unwrap_or_default();
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        payload.len()
    )?;
    stream.write_all(&payload)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("malformed answer"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("malformed status"))?;
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    Ok((status, json))
}

fn post(addr: &str, path: &str, body: &impl serde::Serialize) -> (u16, Value) {
    http(
        "POST",
        addr,
        path,
        Some(&serde_json::to_value(body).expect("json")),
    )
    .unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

fn get(addr: &str, path: &str) -> (u16, Value) {
    http("GET", addr, path, None).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

/// Container ids carrying `label` (running or not).
fn containers(label: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=vouch.node={label}"),
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The processes and containers of one test, removed however it ends.
struct Cleanup {
    children: Vec<Child>,
    label: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for id in containers(&self.label) {
            let _ = Command::new("docker").args(["rm", "-f", &id]).output();
        }
    }
}

/// Starts `vouch-verifier run` on `dir` at `addr` and waits until it answers.
fn start_verifier(dir: &Path, addr: &str, log: &str) -> Child {
    let log = std::fs::File::create(dir.join(log)).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vouch-verifier"))
        .args(["run", "--data-dir"])
        .arg(dir)
        .args(["--listen", addr, "--network", NETWORK])
        .args(["--challenge-window-ms", &WINDOW_MS.to_string()])
        .args(["--withdrawal-delay-ms", &DELAY_MS.to_string()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start vouch-verifier");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = http("GET", addr, "/healthz", None) {
            return child;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("vouch-verifier exited: {status}");
        }
        assert!(Instant::now() < deadline, "vouch-verifier did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write_pem(path: &Path, key: &SigningKey) {
    let pem = key.to_pkcs8_pem(LineEnding::LF).expect("pem");
    std::fs::write(path, pem.as_bytes()).expect("write key");
}

fn sign_receipt(key: &SigningKey, net: NetworkId, spec: &JobSpec, output: &[u8]) -> SignedReceipt {
    let receipt = Receipt {
        network_id: net,
        operator: OperatorKey(key.verifying_key().to_bytes()),
        sequence: 1,
        job_id: spec.job_id().expect("valid spec"),
        image: spec.image,
        input_digest: spec.input_digest,
        output_digest: Digest::of(output),
        output_len: output.len() as u64,
        exit_code: 0,
        trace_root: Root32::default(),
        trace_len: 0,
        issued_at_ms: now_ms() - 10,
    };
    let signature = key.sign(&receipt.signing_root()).to_bytes();
    SignedReceipt { receipt, signature }
}

/// Everything the ledger holds per asset (deposits, queued withdrawals, locked bonds) must
/// be the asset's stored total.
fn assert_conserved(snap: &Snapshot) {
    for (name, asset) in &snap.assets {
        let mut held: u128 = snap
            .balances
            .iter()
            .filter(|((_, a), _)| a == name)
            .map(|(_, v)| v)
            .sum();
        held += snap
            .withdrawals
            .values()
            .filter(|w| &w.asset == name)
            .map(|w| w.amount)
            .sum::<u128>();
        held += snap
            .disputes
            .values()
            .filter(|d| d.closed.is_none() && &d.asset == name)
            .map(|d| d.locked)
            .sum::<u128>();
        assert_eq!(
            held, asset.total,
            "{name}: held {held}, total {}",
            asset.total
        );
    }
}

fn kinds(ledger: &SqliteLedger) -> Vec<String> {
    ledger
        .events_from(0, 1000)
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_dispute_then_restart_decides_it_exactly_once() {
    if !docker_available().await {
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let network = NetworkId::parse_or_name(NETWORK);
    let admin = SigningKey::from_bytes(&random_seed());
    write_pem(&data.join("verifier.pem"), &admin);
    // The label `vouch-verifier run` gives its containers (one per verifier key).
    let label = format!("verifier-{}", &Key::of(&admin).to_hex()[..16]);
    let mut cleanup = Cleanup {
        children: vec![],
        label: label.clone(),
    };
    let (operator, alice, challenger) = (
        SigningKey::from_bytes(&random_seed()),
        SigningKey::from_bytes(&random_seed()),
        SigningKey::from_bytes(&random_seed()),
    );
    let challenger_pem = data.join("challenger.pem");
    write_pem(&challenger_pem, &challenger);

    // 1. A verifier, a staked operator and a bonded challenger.
    let addr = free_addr();
    cleanup
        .children
        .push(start_verifier(data, &addr, "verifier-1.log"));
    let sign = |key: &SigningKey, body| {
        vouch_verifier::SignedRequest::sign(&network.0, key, 1, body).expect("sign")
    };
    let eth = |amount| RequestBody::Deposit {
        asset: "eth".into(),
        amount,
    };
    let peer = SigningKey::from_bytes(&random_seed());
    let register = RequestBody::RegisterOperator {
        peer_key: Key::of(&peer),
    };
    let allocate = RequestBody::Allocate {
        magnitude_ppm: 1_000_000,
    };
    let delegate = RequestBody::Delegate {
        operator: Key::of(&operator),
    };
    let asset = RequestBody::RegisterAsset {
        asset: "eth".into(),
        price_per_unit: 1,
    };
    let requests = [
        sign(&admin, asset),
        sign(&alice, eth(STAKE)),
        sign(&operator, register)
            .with_peer_signature(&network.0, &peer)
            .expect("peer signs"),
        // Nonces only have to grow per actor.
        vouch_verifier::SignedRequest::sign(&network.0, &operator, 2, allocate).expect("sign"),
        vouch_verifier::SignedRequest::sign(&network.0, &alice, 2, delegate).expect("sign"),
        sign(&challenger, eth(CHALLENGER_DEPOSIT)),
    ];
    for r in &requests {
        let (status, v) = post(&addr, "/v1/requests", r);
        assert_eq!(status, 200, "{}: {v}", r.body.kind());
    }

    // 2. A receipt that lies about a workload that sleeps, disputed with the real client.
    let image = DockerExecutor::new(DockerExecutor::default_host(), "vouch-verifier-test-probe")
        .resolve_image("vouch/sleep:dev")
        .await
        .expect("image");
    let input = b"woken up\n";
    let spec = JobSpec {
        image,
        command: vec![SLEEP_MS.into()],
        env: vec![],
        input_digest: Digest::of(input),
        limits: Limits {
            cpu_millis: 1000,
            memory_bytes: 64 << 20,
            output_bytes: 1 << 20,
            pids: 64,
            timeout_ms: 30_000,
            tmpfs_bytes: 1 << 20,
        },
        determinism: Determinism::Deterministic,
        value_at_risk: Amount(0),
        replicas: 1,
        nonce: format!("crash-{}", now_ms()),
    };
    let lie = sign_receipt(&operator, network, &spec, b"not what it prints\n");
    let job = data.join("job.json");
    std::fs::write(
        &job,
        serde_json::to_vec(&json!({"spec": spec, "receipt": lie.to_json()})).expect("json"),
    )
    .expect("job file");
    std::fs::write(data.join("input.bin"), input).expect("input file");
    let bond = Bond {
        asset: "eth".into(),
        amount: BOND,
    };
    let dispute = hex::encode(
        result_dispute_id(
            &network,
            &Key::of(&challenger),
            &lie.receipt.signing_root(),
            &bond,
        )
        .expect("id"),
    );
    // The real client: it prints the verdict, asking GET /v1/disputes/{id} when the answer
    // does not come (here: through the kill and the restart).
    let dispute_cli = |out: &str| {
        Command::new(env!("CARGO_BIN_EXE_vouch-verifier"))
            .args(["dispute", "result", "--url", &format!("http://{addr}")])
            .arg("--challenger-key")
            .arg(&challenger_pem)
            .arg("--job")
            .arg(&job)
            .arg("--input")
            .arg(data.join("input.bin"))
            .args(["--bond-asset", "eth", "--bond-amount", &BOND.to_string()])
            .stdout(std::fs::File::create(data.join(out)).expect("out"))
            .stderr(std::fs::File::create(data.join(format!("{out}.err"))).expect("err"))
            .spawn()
            .expect("start the client")
    };
    let mut client = dispute_cli("verdict-1.json");

    // 3. SIGKILL while both re-executions run (two containers of this verifier at once).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut most = 0;
    while most < 2 {
        most = most.max(containers(&label).len());
        assert!(
            Instant::now() < deadline,
            "the re-executions never ran together (at most {most} container)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut first = cleanup.children.remove(0);
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let killed_at = started.elapsed();
    assert!(
        !containers(&label).is_empty(),
        "the killed verifier's containers are expected to outlive it"
    );

    // 4. The file as the killed verifier left it: consistent, the bond locked, no verdict.
    let config = LedgerConfig::new(WINDOW_MS, DELAY_MS, 0).expect("config");
    let me = Key::of(&challenger);
    let op = Key::of(&operator);
    {
        let ledger = SqliteLedger::open(
            data.join("ledger.sqlite"),
            config.clone(),
            network.0,
            admin.clone(),
        )
        .expect("open the killed verifier's ledger");
        let events = ledger.events_from(0, 1000).expect("events");
        verify_chain(&events, &ledger.verifier_key()).expect("chain verifies");
        let snap = ledger.snapshot().expect("snapshot");
        assert_conserved(&snap);
        assert_eq!(
            kinds(&ledger).last().map(String::as_str),
            Some("open_dispute")
        );
        assert!(!kinds(&ledger)
            .iter()
            .any(|k| k == "close_dispute" || k == "slash"));
        assert_eq!(ledger.locked(&me, "eth").expect("locked"), BOND);
        assert_eq!(
            ledger.balance(&me, "eth").expect("balance"),
            CHALLENGER_DEPOSIT - BOND
        );
        let open = ledger.open_disputes().expect("open");
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].id, dispute);
        assert!(ledger
            .dispute_evidence(&dispute)
            .expect("evidence")
            .is_some());
        assert!(!ledger.is_jailed(&op, now_ms()).expect("jail"));
        assert_eq!(
            ledger.slashable_stake(&op, now_ms()).expect("stake")["eth"],
            STAKE
        );
    }

    // 5. Restart on the same file and address: the dispute is resumed and decided once.
    cleanup
        .children
        .push(start_verifier(data, &addr, "verifier-2.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let (code, v) = get(&addr, &format!("/v1/disputes/{dispute}"));
        assert_eq!(code, 200, "{v}");
        if v["state"] == "decided" {
            break v;
        }
        assert_eq!(v["state"], "open");
        assert!(
            Instant::now() < deadline,
            "the dispute was never decided: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let verdict = &status["verdict"];
    assert_eq!(verdict["outcome"], "slashed", "{status}");
    assert_eq!(verdict["event"]["kind"], "close_dispute");
    assert_eq!(status["locked"], "0");
    // The client that raised it lost its connection, kept asking, and prints the verdict.
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = client.try_wait().expect("client") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the client never printed the verdict"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = std::fs::read_to_string(data.join("verdict-1.json")).expect("client output");
    assert!(exit.success(), "client: {exit}: {printed}");
    let printed: Value = serde_json::from_str(&printed).expect("the client prints JSON");
    assert_eq!(&printed, verdict, "the client prints the verdict");

    let slashed = STAKE / 2;
    let bounty = slashed / 10;
    let check_once = || {
        let ledger = SqliteLedger::open(
            data.join("ledger.sqlite"),
            config.clone(),
            network.0,
            admin.clone(),
        )
        .expect("open");
        verify_chain(
            &ledger.events_from(0, 1000).expect("events"),
            &ledger.verifier_key(),
        )
        .expect("chain verifies");
        let snap = ledger.snapshot().expect("snapshot");
        assert_conserved(&snap);
        let k = kinds(&ledger);
        assert_eq!(
            k.iter().filter(|k| *k == "open_dispute").count(),
            1,
            "{k:?}"
        );
        assert_eq!(
            k.iter().filter(|k| *k == "close_dispute").count(),
            1,
            "{k:?}"
        );
        assert!(!k.iter().any(|k| k == "slash"), "{k:?}");
        // The bounty once, the bond back.
        assert_eq!(
            ledger.balance(&me, "eth").expect("balance"),
            CHALLENGER_DEPOSIT + bounty
        );
        assert_eq!(ledger.locked(&me, "eth").expect("locked"), 0);
        assert_eq!(
            ledger.balance(&Key::of(&alice), "eth").expect("balance"),
            STAKE - slashed
        );
        assert!(ledger.is_jailed(&op, now_ms()).expect("jail"));
        assert!(ledger.open_disputes().expect("open").is_empty());
        snap
    };
    let after_verdict = check_once();

    // 6. The same challenge again, through the client: already decided, no new slash.
    let mut again = {
        Command::new(env!("CARGO_BIN_EXE_vouch-verifier"))
            .args(["dispute", "result", "--url", &format!("http://{addr}")])
            .arg("--challenger-key")
            .arg(&challenger_pem)
            .arg("--job")
            .arg(&job)
            .arg("--input")
            .arg(data.join("input.bin"))
            .args(["--bond-asset", "eth", "--bond-amount", &BOND.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("client")
    };
    let mut out = String::new();
    again
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert!(again.wait().expect("client").success(), "{out}");
    let printed: Value = serde_json::from_str(&out).expect("the client prints the verdict");
    assert_eq!(printed["outcome"], "already_slashed", "{printed}");
    assert_eq!(
        printed["event"], verdict["event"],
        "the stored verdict's event"
    );
    assert_eq!(
        check_once(),
        after_verdict,
        "a resubmission changed the ledger"
    );

    // 7. Nothing left behind: the restart swept the killed run's containers and the
    // resumed runs removed their own.
    assert!(containers(&label).is_empty(), "containers left behind");
    eprintln!(
        "killed at {killed_at:?}, decided after restart at {:?}",
        started.elapsed()
    );
}
