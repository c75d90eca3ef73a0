//! The OpenAI-compatible endpoints through `oneshot`, with a stand-in model in the
//! in-memory executor: error shapes and codes, the `vouch` object a client checks, and SSE.
//! The real model, the real SDK and real Docker are in tests/openai (Python).

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tower::ServiceExt;
use vouch_node::config::Config;
use vouch_node::executor::MemoryExecutor;
use vouch_node::node::Node;
use vouch_node::signer::SigningStore;
use vouch_node::store::JobStore;
use vouch_proto::{NetworkId, ReceiptJson};

/// A stand-in model: answers with the last user message reversed, in the output format of
/// SPEC.md §7.2.
fn fake_model(input: &[u8]) -> (i32, Vec<u8>) {
    let req: Value = serde_json::from_slice(input).unwrap();
    let last = req["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap();
    let content: String = last.chars().rev().collect();
    let out = json!({
        "content": content, "finish_reason": "stop", "model": req["model"],
        "tokens": [1, 2, 3],
        "usage": {"completion_tokens": 3, "prompt_tokens": 5, "total_tokens": 8},
    });
    (0, vouch_proto::to_canonical_bytes(&out).unwrap())
}

fn app(config: Config) -> (axum::Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[4; 32]);
    let signer =
        SigningStore::open(&dir.path().join("h.sqlite"), key, NetworkId::from_name("t")).unwrap();
    let exec = MemoryExecutor::new();
    exec.add_image("vouch/inference-stub:dev", fake_model);
    let (node, _worker) = Node::new(
        config,
        Arc::new(JobStore::in_memory().unwrap()),
        Arc::new(signer),
        Arc::new(exec),
    );
    (vouch_node::api::router(node), dir)
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn chat(body: Value) -> Request<Body> {
    Request::post("/v1/chat/completions")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

#[tokio::test]
async fn completion_carries_a_receipt_the_client_can_check() {
    let (app, _d) = app(Config::default());
    let req = json!({"model": "vouch-tiny-1", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}], "max_tokens": 16, "temperature": 0.7, "seed": 3});
    let (status, body) = call(&app, chat(req)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["content"], "olleh");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["total_tokens"], 8);
    let vouch = &v["vouch"];
    let receipt: ReceiptJson = serde_json::from_value(vouch["receipt"].clone()).unwrap();
    receipt.verify().unwrap();
    // What was signed is what the client sent and what it received.
    let input = vouch["input"].as_str().unwrap();
    assert_eq!(
        input,
        r#"{"max_tokens":16,"messages":[{"content":"be brief","role":"system"},{"content":"hello","role":"user"}],"model":"vouch-tiny-1","seed":3,"stop":[],"temperature_milli":700,"top_p_milli":1000}"#
    );
    assert_eq!(receipt.input_digest.to_string(), sha(input.as_bytes()));
    let output = vouch["output"].as_str().unwrap();
    assert_eq!(receipt.output_digest.to_string(), sha(output.as_bytes()));
    let out: Value = serde_json::from_str(output).unwrap();
    assert_eq!(out["content"], v["choices"][0]["message"]["content"]);
    assert_eq!(out["usage"], v["usage"]);
    let spec = vouch_proto::JobSpec::from_json(vouch["spec"].to_string().as_bytes()).unwrap();
    assert_eq!(spec.job_id().unwrap(), receipt.job_id);
    assert_eq!(spec.image, receipt.image);
}

#[tokio::test]
async fn streaming_ends_with_the_receipt_and_done() {
    let (app, _d) = app(Config::default());
    let req = json!({"model": "vouch-tiny-1", "messages": [{"role": "user", "content": "streaming works"}], "stream": true, "stream_options": {"include_usage": true}});
    let (status, body) = call(&app, chat(req)).await;
    assert_eq!(status, StatusCode::OK);
    let datas: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(*datas.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = datas[..datas.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "skrow gnimaerts");
    let fin = chunks
        .iter()
        .find(|c| c["choices"][0]["finish_reason"].is_string())
        .unwrap();
    assert_eq!(fin["choices"][0]["finish_reason"], "stop");
    let receipt: ReceiptJson = serde_json::from_value(fin["vouch"]["receipt"].clone()).unwrap();
    receipt.verify().unwrap();
    let out: Value = serde_json::from_str(fin["vouch"]["output"].as_str().unwrap()).unwrap();
    assert_eq!(out["content"], content);
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 8);
}

#[tokio::test]
async fn errors_follow_openai_shapes_and_codes() {
    let (app, _d) = app(Config::default());
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases: Vec<(&str, Value, StatusCode, &str, &str)> = vec![
        (
            "unknown model",
            json!({"model": "gpt-9", "messages": user}),
            StatusCode::NOT_FOUND,
            "model_not_found",
            "model",
        ),
        (
            "n > 1",
            json!({"model": "vouch-tiny-1", "messages": user, "n": 2}),
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "n",
        ),
        (
            "empty messages",
            json!({"model": "vouch-tiny-1", "messages": []}),
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "messages",
        ),
        (
            "messages not array",
            json!({"model": "vouch-tiny-1", "messages": "hi"}),
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "messages",
        ),
        (
            "bad role",
            json!({"model": "vouch-tiny-1", "messages": [{"role": "tool", "content": "x"}]}),
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "messages[0].role",
        ),
        (
            "temperature type",
            json!({"model": "vouch-tiny-1", "messages": user, "temperature": "hot"}),
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "temperature",
        ),
        (
            "temperature range",
            json!({"model": "vouch-tiny-1", "messages": user, "temperature": 3}),
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "temperature",
        ),
        (
            "tokens over limit",
            json!({"model": "vouch-tiny-1", "messages": user, "max_tokens": 100000}),
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "max_tokens",
        ),
        (
            "completion tokens zero",
            json!({"model": "vouch-tiny-1", "messages": user, "max_completion_tokens": 0}),
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "max_completion_tokens",
        ),
        (
            "negative seed",
            json!({"model": "vouch-tiny-1", "messages": user, "seed": -1}),
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "seed",
        ),
        (
            "unknown argument",
            json!({"model": "vouch-tiny-1", "messages": user, "tools": []}),
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "tools",
        ),
        (
            "too many stops",
            json!({"model": "vouch-tiny-1", "messages": user, "stop": ["a", "b", "c", "d", "e"]}),
            StatusCode::BAD_REQUEST,
            "invalid_value",
            "stop",
        ),
    ];
    for (name, body, status, code, param) in cases {
        let (got, text) = call(&app, chat(body)).await;
        assert_eq!(got, status, "{name}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let e = &v["error"];
        assert_eq!(e["code"], code, "{name}: {text}");
        assert_eq!(e["param"], param, "{name}: {text}");
        assert_eq!(e["type"], "invalid_request_error", "{name}");
        assert!(e["message"].as_str().unwrap().len() > 10, "{name}");
    }
    let (got, text) = call(
        &app,
        Request::post("/v1/chat/completions")
            .body(Body::from("{not json"))
            .unwrap(),
    )
    .await;
    assert_eq!(got, StatusCode::BAD_REQUEST, "{text}");
}

#[tokio::test]
async fn api_key_errors_use_openais_401_shape() {
    let mut config = Config::default();
    config.api_keys = vec!["sk-test".into()];
    let (app, _d) = app(config);
    let body = json!({"model": "vouch-tiny-1", "messages": [{"role": "user", "content": "hi"}]});
    let (status, text) = call(&app, chat(body.clone())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "missing_api_key");
    let mut req = chat(body);
    req.headers_mut()
        .insert(header::AUTHORIZATION, "Bearer sk-test".parse().unwrap());
    assert_eq!(call(&app, req).await.0, StatusCode::OK);
    let mut req = Request::get("/v1/models").body(Body::empty()).unwrap();
    req.headers_mut()
        .insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
    let (status, text) = call(&app, req).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
}

#[tokio::test]
async fn models_list_names_the_image() {
    let (app, _d) = app(Config::default());
    let (status, text) = call(
        &app,
        Request::get("/v1/models").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "vouch-tiny-1");
    assert_eq!(
        v["data"][0]["vouch"]["image"],
        vouch_proto::Digest::of(b"vouch/inference-stub:dev").to_string()
    );
    let (status, _) = call(
        &app,
        Request::get("/v1/models/nope").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
