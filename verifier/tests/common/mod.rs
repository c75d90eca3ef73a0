//! Shared test helpers: fixed keys, a request builder with per-actor nonces, setup.

#![allow(dead_code)]

use std::collections::HashMap;

use ed25519_dalek::SigningKey;
use vouch_exec::{DockerExecutor, Executor as _};
use vouch_proto::NetworkId;
use vouch_verifier::{
    CollateralLedger, Key, LedgerConfig, LedgerError, RequestBody, SignedRequest, Snapshot,
};

pub const NET: [u8; 32] = [0x5a; 32];
pub const WINDOW_MS: u64 = 100;
pub const DELAY_MS: u64 = 1_000;
pub const MIN_STAKE_VALUE: u128 = 1_000;

pub fn config() -> LedgerConfig {
    LedgerConfig::new(WINDOW_MS, DELAY_MS, MIN_STAKE_VALUE).expect("delay > window")
}

pub fn sk(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

pub fn admin() -> SigningKey {
    sk(1)
}

/// Hands out increasing nonces per actor.
#[derive(Debug, Default)]
pub struct Signer {
    next: HashMap<Key, u64>,
}

impl Signer {
    pub fn req(&mut self, who: &SigningKey, body: RequestBody) -> SignedRequest {
        let n = self.next.entry(Key::of(who)).or_insert(1);
        *n += 1;
        SignedRequest::sign(&NET, who, *n, body).expect("sign")
    }

    pub fn register_operator(&mut self, op: &SigningKey, peer: &SigningKey) -> SignedRequest {
        let body = RequestBody::RegisterOperator {
            peer_key: Key::of(peer),
        };
        self.req(op, body)
            .with_peer_signature(&NET, peer)
            .expect("peer sign")
    }
}

pub fn ok(ledger: &dyn CollateralLedger, req: &SignedRequest, now: u64) {
    if let Err(e) = ledger.apply(req, now) {
        panic!("{} refused: {e}", req.body.kind());
    }
}

pub fn must_fail(ledger: &dyn CollateralLedger, req: &SignedRequest, now: u64) -> LedgerError {
    let before: Snapshot = ledger.snapshot().expect("snapshot");
    let err = ledger
        .apply(req, now)
        .expect_err("request should have been refused");
    assert_eq!(
        ledger.snapshot().expect("snapshot"),
        before,
        "a refused request changed state"
    );
    err
}

/// The standard staked operator: the admin registers `eth` at price 1, Alice (`sk(10)`)
/// deposits `stake` and delegates it to `operator` (peer key `sk(21)`), which allocates all
/// of it.
pub fn staked_operator(s: &mut Signer, operator: &SigningKey, stake: u128) -> Vec<SignedRequest> {
    let alice = sk(10);
    vec![
        s.req(
            &admin(),
            RequestBody::RegisterAsset {
                asset: "eth".into(),
                price_per_unit: 1,
            },
        ),
        s.req(
            &alice,
            RequestBody::Deposit {
                asset: "eth".into(),
                amount: stake,
            },
        ),
        s.register_operator(operator, &sk(21)),
        s.req(
            operator,
            RequestBody::Allocate {
                magnitude_ppm: 1_000_000,
            },
        ),
        s.req(
            &alice,
            RequestBody::Delegate {
                operator: Key::of(operator),
            },
        ),
    ]
}

/// The network of receipts in these tests (the ledger's id).
pub fn network() -> NetworkId {
    NetworkId(NET)
}

/// The operator of the dispute tests.
pub fn operator() -> SigningKey {
    sk(20)
}

/// The challenger of the dispute tests.
pub fn challenger() -> SigningKey {
    sk(40)
}

/// True when Docker answers and has `images`. Without Docker the test is skipped —
/// except under CI=true, where a missing Docker is a failure, not a skip.
pub async fn docker_available(images: &[&str]) -> bool {
    let exec = DockerExecutor::new(DockerExecutor::default_host(), "vouch-verifier-test-probe");
    match exec.health().await {
        Ok(()) => {
            for image in images {
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

/// Containers (any state) whose `vouch.node` label is `label`; none without a docker CLI.
pub fn containers_labelled(label: &str) -> Vec<String> {
    let Ok(out) = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=vouch.node={label}"),
        ])
        .output()
    else {
        return vec![]; // no docker CLI: nothing could have been started
    };
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Removes every container [`containers_labelled`] finds.
pub fn remove_containers_labelled(label: &str) {
    for id in containers_labelled(label) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &id])
            .output();
    }
}

/// A verifier API over a SQLite ledger file with a Docker executor whose containers carry
/// a label unique to the test; the ledger holds the standard staked operator
/// ([`staked_operator`] with `stake`) and the challenger's deposit. Its containers are
/// removed when it is dropped.
pub struct DockerApp {
    pub router: axum::Router,
    pub ledger: std::sync::Arc<vouch_verifier::SqliteLedger>,
    pub docker: std::sync::Arc<DockerExecutor>,
    pub label: String,
    _dir: tempfile::TempDir,
}

impl DockerApp {
    /// `what` names the test in the label; the verifier's clock reads `now`.
    pub fn new(what: &str, stake: u128, deposit: u128, now: u64) -> DockerApp {
        use std::sync::Arc;
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Arc::new(
            vouch_verifier::SqliteLedger::open(
                dir.path().join("ledger.sqlite"),
                config(),
                NET,
                admin(),
            )
            .expect("open"),
        );
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let label = format!("vouch-{what}-test-{:x}-{nonce:x}", std::process::id());
        let docker = Arc::new(DockerExecutor::new(
            DockerExecutor::default_host(),
            label.clone(),
        ));
        let mut s = Signer::default();
        let mut requests = staked_operator(&mut s, &operator(), stake);
        requests.push(s.req(
            &challenger(),
            RequestBody::Deposit {
                asset: "eth".into(),
                amount: deposit,
            },
        ));
        for r in &requests {
            ok(&*ledger, r, now);
        }
        let verifier = vouch_verifier::Verifier::new(
            ledger.clone(),
            admin(),
            network(),
            vouch_verifier::DisputeConfig::default(),
        )
        .with_executor(docker.clone())
        .with_clock(move || now);
        DockerApp {
            router: vouch_verifier::router(vouch_verifier::ApiState::new(Arc::new(verifier))),
            ledger,
            docker,
            label,
            _dir: dir,
        }
    }

    /// The test's containers still present.
    pub fn leftover_containers(&self) -> Vec<String> {
        containers_labelled(&self.label)
    }

    /// The challenger's deposited `eth`.
    pub fn challenger_balance(&self) -> u128 {
        self.ledger
            .balance(&Key::of(&challenger()), "eth")
            .expect("balance")
    }
}

impl Drop for DockerApp {
    fn drop(&mut self) {
        remove_containers_labelled(&self.label);
    }
}
