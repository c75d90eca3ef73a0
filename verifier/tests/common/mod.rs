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
