//! The HTTP API through `router().oneshot(…)`, with the in-memory executor (no Docker):
//! the happy path, idempotency, auth, and every kind of bad input.

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use vouch_node::config::Config;
use vouch_node::executor::MemoryExecutor;
use vouch_node::node::Node;
use vouch_node::signer::SigningStore;
use vouch_node::store::JobStore;
use vouch_proto::{Digest, JobSpec, NetworkId, ReceiptJson};

struct Harness {
    app: axum::Router,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn upper(input: &[u8]) -> (i32, Vec<u8>) {
    (0, input.to_ascii_uppercase())
}

fn fail(_: &[u8]) -> (i32, Vec<u8>) {
    (7, b"partial".to_vec())
}

fn harness(config: Config) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let signer =
        SigningStore::open(&dir.path().join("h.sqlite"), key, NetworkId::from_name("t")).unwrap();
    let exec = MemoryExecutor::new();
    exec.add_image("upper", upper);
    exec.add_image("fail", fail);
    let (node, worker) = Node::new(
        config,
        Arc::new(JobStore::in_memory().unwrap()),
        Arc::new(signer),
        Arc::new(exec),
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(worker.run(async {
        let _ = rx.await;
    }));
    Harness {
        app: vouch_node::api::router(node),
        _dir: dir,
        _stop: tx,
    }
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

fn post(body: impl Into<Body>) -> Request<Body> {
    Request::post("/v1/jobs")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn submit_run_and_verify() {
    let h = harness(Config::default());
    let (status, v) = call(
        &h.app,
        post(json!({"image": "upper", "input": "hello"}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = v["job_id"].as_str().unwrap().to_string();
    // The id is what the spec hashes to, and the node filled in its default limits.
    let spec = JobSpec::from_json(v["spec"].to_string().as_bytes()).unwrap();
    assert_eq!(spec.job_id().unwrap().to_hex(), id);
    assert_eq!(spec.limits, Config::default().limits);
    assert_eq!(spec.input_digest, Digest::of(b"hello"));

    let (status, job) = call(&h.app, get(&format!("/v1/jobs/{id}?wait_ms=5000"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["status"], "succeeded", "{job}");
    let receipt: ReceiptJson = serde_json::from_value(job["receipt"].clone()).unwrap();
    let signed = receipt.verify().unwrap();
    assert_eq!(signed.receipt.job_id.to_hex(), id);
    assert_eq!(signed.receipt.output_digest, Digest::of(b"HELLO"));

    let resp = h
        .app
        .clone()
        .oneshot(get(&format!("/v1/jobs/{id}/output")))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["x-vouch-digest"],
        Digest::of(b"HELLO").to_string().as_str()
    );
    assert_eq!(
        &resp.into_body().collect().await.unwrap().to_bytes()[..],
        b"HELLO"
    );

    // Submitting the same job again returns the existing job; no second run.
    let (status, again) = call(
        &h.app,
        post(json!({"image": "upper", "input": "hello"}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["job_id"], id.as_str());
    assert_eq!(again["status"], "succeeded");
    // A different nonce is a different job.
    let (_, other) = call(
        &h.app,
        post(json!({"image": "upper", "input": "hello", "nonce": "2"}).to_string()),
    )
    .await;
    assert_ne!(other["job_id"], id.as_str());
}

#[tokio::test]
async fn nonzero_exit_is_a_signed_result() {
    let h = harness(Config::default());
    let (_, v) = call(&h.app, post(json!({"image": "fail"}).to_string())).await;
    let id = v["job_id"].as_str().unwrap();
    let (_, job) = call(&h.app, get(&format!("/v1/jobs/{id}?wait_ms=5000"))).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["exit_code"], 7);
    assert_eq!(job["receipt"]["exit_code"], 7);
}

#[tokio::test]
async fn bad_input_gets_clear_4xx() {
    let mut config = Config::default();
    config.max_body_bytes = 4096;
    let h = harness(config);
    let cases: Vec<(&str, Request<Body>, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            post("{\"image\": "),
            StatusCode::BAD_REQUEST,
            "EOF",
        ),
        (
            "not an object",
            post("\"hello\""),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid type",
        ),
        (
            "unknown field",
            post(json!({"image": "upper", "imgae": "x"}).to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `imgae`",
        ),
        (
            "unknown limit",
            post(json!({"image": "upper", "limits": {"gpus": 1}}).to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `gpus`",
        ),
        (
            "missing image",
            post(json!({"input": "x"}).to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `image`",
        ),
        (
            "oversized body",
            post(format!(
                "{{\"image\":\"upper\",\"input\":\"{}\"}}",
                "x".repeat(5000)
            )),
            StatusCode::PAYLOAD_TOO_LARGE,
            "max_body_bytes",
        ),
        (
            "unknown image",
            post(json!({"image": "nope:latest"}).to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "never pulls",
        ),
        (
            "absurd memory",
            post(json!({"image": "upper", "limits": {"memory_bytes": 1u64 << 50}}).to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "above this node's maximum",
        ),
        (
            "zero timeout",
            post(json!({"image": "upper", "limits": {"timeout_ms": 0}}).to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "timeout_ms",
        ),
        (
            "negative limit",
            post(json!({"image": "upper", "limits": {"pids": -1}}).to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid value",
        ),
        (
            "bad env key",
            post(json!({"image": "upper", "env": {"1X": "y"}}).to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "env key",
        ),
        (
            "both inputs",
            post(json!({"image": "upper", "input": "a", "input_base64": "YQ=="}).to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not both",
        ),
        (
            "bad base64",
            post(json!({"image": "upper", "input_base64": "!!"}).to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "base64",
        ),
        (
            "bad amount",
            post(json!({"image": "upper", "value_at_risk": "1e9"}).to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "decimal integer",
        ),
        (
            "replicas",
            post(json!({"image": "upper", "replicas": 3}).to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "replicas",
        ),
        (
            "bad job id",
            get("/v1/jobs/xyz"),
            StatusCode::BAD_REQUEST,
            "64 lowercase hex",
        ),
        (
            "unknown job",
            get(&format!("/v1/jobs/{}", "0".repeat(64))),
            StatusCode::NOT_FOUND,
            "no job",
        ),
        (
            "unknown endpoint",
            get("/v2/things"),
            StatusCode::NOT_FOUND,
            "no such endpoint",
        ),
    ];
    for (name, req, status, needle) in cases {
        let (got, body) = call(&h.app, req).await;
        assert_eq!(got, status, "{name}: {body}");
        let msg = body["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: error JSON expected, got {body}"));
        assert!(
            msg.contains(needle),
            "{name}: {msg:?} should mention {needle:?}"
        );
        assert!(body["error"]["code"].is_string(), "{name}");
    }
    // Nothing was stored by any of them.
    let (_, health) = call(&h.app, get("/healthz")).await;
    assert_eq!(health["status"], "ok");
}

#[tokio::test]
async fn api_keys_are_enforced_when_configured() {
    let mut config = Config::default();
    config.api_keys = vec!["s3cret".into(), "other".into()];
    let h = harness(config);
    let body = json!({"image": "upper"}).to_string();
    let (s, v) = call(&h.app, post(body.clone())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "missing_api_key");
    let mut req = post(body.clone());
    req.headers_mut()
        .insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
    let (s, v) = call(&h.app, req).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "invalid_api_key");
    for key in ["s3cret", "other"] {
        let mut req = post(json!({"image": "upper", "nonce": key}).to_string());
        req.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {key}").parse().unwrap(),
        );
        let (s, v) = call(&h.app, req).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    }
    // Health and metrics stay open for monitoring.
    assert_eq!(call(&h.app, get("/healthz")).await.0, StatusCode::OK);
    assert_eq!(call(&h.app, get("/metrics")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn metrics_count_jobs_and_receipts() {
    let h = harness(Config::default());
    for n in 0..3 {
        let (_, v) = call(
            &h.app,
            post(json!({"image": "upper", "nonce": n.to_string()}).to_string()),
        )
        .await;
        let id = v["job_id"].as_str().unwrap();
        call(&h.app, get(&format!("/v1/jobs/{id}?wait_ms=5000"))).await;
    }
    let (_, text) = call(&h.app, get("/metrics")).await;
    let text = text.as_str().unwrap().to_string();
    assert!(text.contains("vouch_receipts_signed_total 3"), "{text}");
    assert!(
        text.contains("vouch_jobs_finished_total{outcome=\"succeeded\"} 3"),
        "{text}"
    );
    // Every phase of the three jobs is timed once.
    for phase in [
        "create", "start", "run", "remove", "hash", "sign", "persist",
    ] {
        let line = format!("vouch_job_phase_seconds_count{{phase=\"{phase}\"}} 3");
        assert!(text.contains(&line), "{line} missing in {text}");
    }
}

#[tokio::test]
async fn output_of_unfinished_or_failed_job_is_a_conflict() {
    let mut config = Config::default();
    config.limits.output_bytes = 2;
    let h = harness(config);
    let (_, v) = call(
        &h.app,
        post(json!({"image": "upper", "input": "too long"}).to_string()),
    )
    .await;
    let id = v["job_id"].as_str().unwrap();
    let (_, job) = call(&h.app, get(&format!("/v1/jobs/{id}?wait_ms=5000"))).await;
    assert_eq!(job["status"], "failed");
    assert!(
        job["reason"].as_str().unwrap().contains("output limit"),
        "{job}"
    );
    assert!(
        job.get("receipt").is_none(),
        "a broken limit gets no receipt"
    );
    let (s, v) = call(&h.app, get(&format!("/v1/jobs/{id}/output"))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
}
