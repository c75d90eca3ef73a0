//! The HTTP API through `oneshot`, on real SQLite files: an equivocation end to end,
//! twenty racing challengers, and a table of bad inputs that must change nothing.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use common::*;
use ed25519_dalek::{Signer as _, SigningKey};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use vouch_proto::{Digest, JobId, NetworkId, OperatorKey, Receipt, Root32, SignedReceipt};
use vouch_verifier::{
    router, ApiState, CollateralLedger, DisputeConfig, Key, RequestBody, SignedRequest,
    SqliteLedger, Verifier,
};

const STAKE: u128 = 1_000_000;

fn app(path: &std::path::Path) -> (Router, Arc<SqliteLedger>) {
    let ledger = Arc::new(SqliteLedger::open(path, config(), NET, admin()).expect("open"));
    let verifier = Verifier::new(ledger.clone(), admin(), network(), DisputeConfig::default());
    let state = ApiState::new(Arc::new(verifier)).with_clock(|| 50);
    (router(state), ledger)
}

async fn call(app: &Router, method: &str, uri: &str, body: Body) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body)
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "{method} {uri}: answer is not JSON: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, value)
}

async fn post(app: &Router, uri: &str, body: &impl serde::Serialize) -> (StatusCode, Value) {
    let bytes = serde_json::to_vec(body).expect("json");
    call(app, "POST", uri, Body::from(bytes)).await
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    call(app, "GET", uri, Body::empty()).await
}

/// Asset, restaker deposit + delegation, operator registered and fully allocated — all
/// as signed requests over `POST /v1/requests`. Returns the signer (for later nonces).
async fn setup(app: &Router) -> Signer {
    let mut s = Signer::default();
    let requests = staked_operator(&mut s, &operator(), STAKE);
    for r in &requests {
        let (status, body) = post(app, "/v1/requests", r).await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", r.body.kind());
    }
    s
}

fn receipt(key: &SigningKey, net: NetworkId, seq: u64, job: u8, out: &[u8]) -> SignedReceipt {
    let receipt = Receipt {
        network_id: net,
        operator: OperatorKey(key.verifying_key().to_bytes()),
        sequence: seq,
        job_id: JobId([job; 32]),
        image: Digest::of(b"image"),
        input_digest: Digest::of(b"input"),
        output_digest: Digest::of(out),
        output_len: out.len() as u64,
        exit_code: 0,
        trace_root: Root32::default(),
        trace_len: 0,
        issued_at_ms: 1_795_000_000_000,
    };
    let signature = key.sign(&receipt.signing_root()).to_bytes();
    SignedReceipt { receipt, signature }
}

/// Two receipts for job 7 with different outputs: an equivocation.
fn conflicting() -> (SignedReceipt, SignedReceipt) {
    (
        receipt(&operator(), network(), 1, 7, b"four"),
        receipt(&operator(), network(), 2, 7, b"five"),
    )
}

fn dispute(a: &SignedReceipt, b: &SignedReceipt) -> Value {
    json!({
        "challenger": Key::of(&challenger()),
        "receipt_a": a.to_json(),
        "receipt_b": b.to_json(),
    })
}

#[tokio::test]
async fn equivocation_end_to_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, ledger) = app(&dir.path().join("ledger.sqlite"));
    setup(&app).await;
    let op_hex = Key::of(&operator()).to_hex();

    let (status, before) = get(&app, &format!("/v1/operators/{op_hex}")).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert_eq!(before["slashable_stake"]["eth"], STAKE.to_string());
    assert_eq!(before["jailed"], false);
    // The registry nodes poll: the operator is active, weighted by its priced stake.
    let (status, reg) = get(&app, "/v1/registry").await;
    assert_eq!(status, StatusCode::OK, "{reg}");
    assert_eq!(reg["network_id"], network().to_hex());
    assert_eq!(reg["verifier"], ledger.verifier_key().to_hex());
    assert_eq!(reg["operators"].as_array().map(Vec::len), Some(1), "{reg}");
    assert_eq!(reg["operators"][0]["operator"], op_hex);
    assert_eq!(reg["operators"][0]["peer_key"], Key::of(&sk(21)).to_hex());
    assert_eq!(reg["operators"][0]["active"], true);
    assert_eq!(reg["operators"][0]["stake_value"], STAKE.to_string());

    let (a, b) = conflicting();
    let (status, verdict) = post(&app, "/v1/disputes/equivocation", &dispute(&a, &b)).await;
    assert_eq!(status, StatusCode::OK, "{verdict}");
    assert_eq!(verdict["outcome"], "slashed");
    assert_eq!(verdict["kind"], "equivocation");
    assert_eq!(verdict["operator"], op_hex);
    assert_eq!(verdict["conflict"]["job"]["job_id"], hex::encode([7u8; 32]));
    let offence = verdict["offence"].as_str().expect("offence id").to_owned();
    assert_eq!(offence.len(), 64);
    // 50% of a full allocation of 1_000_000; 10% bounty, the rest burned.
    let c = &verdict["event"]["conservation"]["eth"];
    assert_eq!(c["before"], "1000000");
    assert_eq!(c["after"], "500000");
    assert_eq!(c["burned"], "450000");
    assert_eq!(c["rewarded"], "50000");
    let slash_seq = verdict["event"]["seq"].as_str().expect("seq").to_owned();
    assert_eq!(slash_seq, "5");

    let (_, after) = get(&app, &format!("/v1/operators/{op_hex}")).await;
    assert_eq!(after["slashable_stake"]["eth"], "500000");
    assert_eq!(after["jailed"], true);
    assert_eq!(after["state"]["jailed"], true);
    // Jailed: no longer active in the registry, so nodes refuse its gossip.
    let (_, reg) = get(&app, "/v1/registry").await;
    assert_eq!(reg["operators"][0]["active"], false, "{reg}");
    assert_eq!(reg["operators"][0]["jailed_by_slash"], true);
    assert_eq!(
        ledger
            .balance(&Key::of(&challenger()), "eth")
            .expect("balance"),
        50_000,
        "challenger credited the bounty"
    );
    assert_eq!(
        ledger.balance(&Key::of(&sk(10)), "eth").expect("b"),
        500_000
    );
    let (_, snap) = get(&app, "/v1/snapshot").await;
    assert_eq!(snap["assets"]["eth"]["total"], "550000");
    assert_eq!(snap["offences"][&offence], 5);

    // Again, swapped, and with a third receipt for the same job: one offence, one slash.
    let c3 = receipt(&operator(), network(), 9, 7, b"six");
    for (x, y) in [(&a, &b), (&b, &a), (&c3, &a)] {
        let (status, again) = post(&app, "/v1/disputes/equivocation", &dispute(x, y)).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["outcome"], "already_slashed");
        assert_eq!(again["offence"], offence.as_str());
        assert_eq!(again["event"], verdict["event"], "the earlier slash event");
    }
    let (_, events) = get(&app, "/v1/events?from=0&limit=1000").await;
    let events = events["events"].as_array().expect("events").clone();
    assert_eq!(events.len(), 6, "no second slash event");
    assert_eq!(events.iter().filter(|e| e["kind"] == "slash").count(), 1);
    let typed: Vec<vouch_verifier::Event> =
        serde_json::from_value(Value::Array(events)).expect("events decode");
    vouch_verifier::verify_chain(&typed, &ledger.verifier_key()).expect("chain");

    // Paging and the health check.
    let (_, page) = get(&app, "/v1/events?from=4&limit=1").await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["next"], 5);
    let (status, h) = get(&app, "/healthz").await;
    assert_eq!((status, h["status"].as_str()), (StatusCode::OK, Some("ok")));
}

/// Twenty challengers, each with its own `SqliteLedger` handle (own connection) on one
/// file, its own `Verifier` (own nonce mutex) and its own router, on a multi-threaded
/// runtime: the admin nonce and the offence race for real. Exactly one slash.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn twenty_challengers_one_slash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.sqlite");
    let (first, ledger) = app(&path);
    setup(&first).await;
    let (a, b) = conflicting();
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let (app, _) = app(&path);
        let barrier = barrier.clone();
        // Half send (a, b), half (b, a); each names itself as challenger.
        let (x, y) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let body = json!({
            "challenger": Key::of(&sk(100 + i)),
            "receipt_a": x.to_json(),
            "receipt_b": y.to_json(),
        });
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            post(&app, "/v1/disputes/equivocation", &body).await
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        let (status, v) = t.await.expect("task");
        assert_eq!(status, StatusCode::OK, "{v}");
        outcomes.push(v);
    }
    let slashed = outcomes
        .iter()
        .filter(|v| v["outcome"] == "slashed")
        .count();
    assert_eq!(slashed, 1, "{outcomes:#?}");
    let event = &outcomes
        .iter()
        .find(|v| v["outcome"] == "slashed")
        .expect("one")["event"];
    assert!(outcomes.iter().all(|v| v["event"] == *event));
    let snap = ledger.snapshot().expect("snapshot");
    assert_eq!(snap.event_count, 6);
    assert_eq!(snap.offences.len(), 1);
    let events = ledger.events_from(0, 100).expect("events");
    assert_eq!(events.iter().filter(|e| e.kind == "slash").count(), 1);
    vouch_verifier::verify_chain(&events, &ledger.verifier_key()).expect("chain");
}

#[tokio::test]
async fn bad_inputs_are_4xx_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, ledger) = app(&dir.path().join("ledger.sqlite"));
    let mut s = setup(&app).await;
    let (a, b) = conflicting();

    let mut forged = b.clone();
    forged.signature[0] ^= 1;
    let other_net = NetworkId::from_name("another-network");
    let mut tampered = b.to_json();
    tampered.exit_code = 1;
    let stranger = sk(50);
    let deposit = s.req(
        &sk(10),
        RequestBody::Deposit {
            asset: "eth".into(),
            amount: 1,
        },
    );
    let (status, _) = post(&app, "/v1/requests", &deposit).await;
    assert_eq!(status, StatusCode::OK);
    let mut forged_request = s.req(
        &sk(10),
        RequestBody::QueueWithdrawal {
            asset: "eth".into(),
            amount: 1,
        },
    );
    forged_request.signature.0[5] ^= 0x40;
    let mallory_slash = SignedRequest::sign(
        &NET,
        &sk(66),
        1,
        RequestBody::Slash {
            operator: Key::of(&operator()),
            fraction_ppm: 1_000_000,
            bounty_ppm: 0,
            challenger: Key::of(&sk(66)),
            jail: true,
            offence: None,
        },
    )
    .expect("sign");

    let json_body = |v: &Value| Body::from(serde_json::to_vec(v).expect("json"));
    let cases: Vec<(&str, &str, Body, StatusCode, &str, &str)> = vec![
        (
            "forged receipt signature",
            "/v1/disputes/equivocation",
            json_body(&dispute(&a, &forged)),
            StatusCode::BAD_REQUEST,
            "bad_receipt_signature",
            "receipt_b",
        ),
        (
            "readable field changed, encoding kept",
            "/v1/disputes/equivocation",
            json_body(
                &json!({"challenger": Key::of(&challenger()), "receipt_a": a.to_json(), "receipt_b": tampered}),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_receipt",
            "do not match",
        ),
        (
            "receipts from another network",
            "/v1/disputes/equivocation",
            json_body(&dispute(
                &receipt(&operator(), other_net, 1, 7, b"x"),
                &receipt(&operator(), other_net, 2, 7, b"y"),
            )),
            StatusCode::BAD_REQUEST,
            "wrong_network",
            "this verifier judges network",
        ),
        (
            "different operators",
            "/v1/disputes/equivocation",
            json_body(&dispute(&a, &receipt(&sk(22), network(), 2, 7, b"y"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_an_equivocation",
            "one operator",
        ),
        (
            "same root twice",
            "/v1/disputes/equivocation",
            json_body(&dispute(&a, &a)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_an_equivocation",
            "signing root",
        ),
        (
            "different job and sequence",
            "/v1/disputes/equivocation",
            json_body(&dispute(&a, &receipt(&operator(), network(), 2, 8, b"y"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_an_equivocation",
            "same job or the same sequence",
        ),
        (
            "unknown operator",
            "/v1/disputes/equivocation",
            json_body(&dispute(
                &receipt(&stranger, network(), 1, 7, b"x"),
                &receipt(&stranger, network(), 2, 7, b"y"),
            )),
            StatusCode::NOT_FOUND,
            "unknown_operator",
            "register_operator",
        ),
        (
            "malformed JSON",
            "/v1/disputes/equivocation",
            Body::from("{\"challenger\": "),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "not valid JSON",
        ),
        (
            "oversized body",
            "/v1/disputes/equivocation",
            Body::from(vec![b' '; (1 << 20) + 1]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "over the limit",
        ),
        (
            "oversized result challenge (its limit is larger: it carries the input)",
            "/v1/disputes/result",
            Body::from(vec![b' '; (24 << 20) + 1]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "over the limit of 25165824 bytes",
        ),
        (
            "oversized request body",
            "/v1/requests",
            Body::from(vec![b' '; 2 << 20]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "over the limit",
        ),
        (
            "replayed request nonce",
            "/v1/requests",
            json_body(&serde_json::to_value(&deposit).expect("json")),
            StatusCode::CONFLICT,
            "replayed_nonce",
            "replayed nonce",
        ),
        (
            "forged request signature",
            "/v1/requests",
            json_body(&serde_json::to_value(&forged_request).expect("json")),
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            "bad actor signature",
        ),
        (
            "slash signed by a non-admin key",
            "/v1/requests",
            json_body(&serde_json::to_value(&mallory_slash).expect("json")),
            StatusCode::FORBIDDEN,
            "unauthorized",
            "only the verifier",
        ),
        (
            "malformed request JSON",
            "/v1/requests",
            Body::from("[1, 2"),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "not valid JSON",
        ),
    ];
    for (name, uri, body, want_status, want_code, want_text) in cases {
        let before = ledger.snapshot().expect("snapshot");
        let (status, answer) = call(&app, "POST", uri, body).await;
        assert_eq!(status, want_status, "{name}: {answer}");
        let err = &answer["error"];
        assert_eq!(err["code"], want_code, "{name}: {answer}");
        assert_eq!(err["type"], "invalid_request_error", "{name}");
        let message = err["message"].as_str().unwrap_or_default();
        let param = err["param"].as_str().unwrap_or_default();
        assert!(
            message.contains(want_text) || param == want_text,
            "{name}: {message:?} (param {param:?}) should mention {want_text:?}"
        );
        assert_eq!(
            ledger.snapshot().expect("snapshot"),
            before,
            "{name}: state changed"
        );
    }

    // GET endpoints refuse bad parameters the same way.
    for (uri, want) in [
        ("/v1/events?limit=1001", StatusCode::BAD_REQUEST),
        ("/v1/events?from=abc", StatusCode::BAD_REQUEST),
        ("/v1/operators/zz", StatusCode::BAD_REQUEST),
        (
            &*format!("/v1/operators/{}", Key::of(&stranger).to_hex()),
            StatusCode::NOT_FOUND,
        ),
        ("/v1/nope", StatusCode::NOT_FOUND),
    ] {
        let (status, answer) = get(&app, uri).await;
        assert_eq!(status, want, "{uri}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{uri}: {answer}");
    }
}
