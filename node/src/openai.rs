//! The OpenAI-compatible endpoints: `POST /v1/chat/completions` (plain and SSE streaming)
//! and `GET /v1/models`. Each model is a workload image (images/README.md "inference");
//! each completion is a job whose receipt rides along in the response's `vouch` object, so
//! a client can check that the prompt, the response and the model are what the operator
//! signed (SPEC.md §7).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use vouch_proto::{Amount, Determinism, JobSpec, MAX_SAFE_INTEGER};

use crate::api::ApiError;
use crate::config::ModelConfig;
use crate::node::{Node, SubmitError};
use crate::store::{JobRecord, JobStatus};

/// Longest prompt (all message contents together), in bytes.
pub const MAX_PROMPT_BYTES: usize = 32 * 1024;
/// Tokens generated when the request names no limit.
pub const DEFAULT_MAX_TOKENS: u64 = 256;

/// The OpenAI routes, merged into the node's router under the same auth and limits.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{model}", get(get_model))
}

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_value", message).with_param(param)
}

/// A chat request after validation: the workload input (canonical JSON) and the response
/// options that do not change what is computed.
#[derive(Debug)]
pub struct ChatRequest {
    /// The model entry.
    pub model: ModelConfig,
    /// The workload input: RFC 8785 JSON of the normalized request (SPEC.md §7.1).
    pub input: Vec<u8>,
    /// `stream: true`.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

/// Validates an OpenAI chat request and normalizes it into the model workload's input.
pub fn normalize(body: &Value, models: &[ModelConfig]) -> Result<ChatRequest, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| bad("", "the request body must be a JSON object"))?;
    const KNOWN: &[&str] = &[
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "seed",
        "stop",
        "n",
        "stream",
        "stream_options",
        "user",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "metadata",
        "store",
    ];
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(
            k,
            format!("Unrecognized request argument supplied: {k}"),
        ));
    }
    let model_name = match obj.get("model") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad("model", "model must be a string")),
        None => return Err(bad("model", "you must provide a model parameter")),
    };
    let model = models.iter().find(|m| m.name == model_name).cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("The model `{model_name}` does not exist on this node; GET /v1/models lists the models it serves"),
        )
        .with_param("model")
    })?;

    let messages = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m,
        Some(Value::Array(_)) => return Err(bad("messages", "messages must not be empty")),
        Some(_) => return Err(bad("messages", "messages must be an array")),
        None => return Err(bad("messages", "missing required parameter: messages")),
    };
    let mut normalized = Vec::with_capacity(messages.len());
    let mut prompt_bytes = 0usize;
    for (i, m) in messages.iter().enumerate() {
        let param = format!("messages[{i}]");
        let m = m
            .as_object()
            .ok_or_else(|| bad(&param, "each message must be an object"))?;
        let role = match m.get("role").and_then(Value::as_str) {
            Some("system") | Some("developer") => "system",
            Some("user") => "user",
            Some("assistant") => "assistant",
            Some(r) => {
                return Err(bad(
                    &format!("{param}.role"),
                    format!("role {r:?} is not supported (system, developer, user, assistant)"),
                ))
            }
            None => return Err(bad(&format!("{param}.role"), "each message needs a role")),
        };
        let content = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (
                        p.get("type").and_then(Value::as_str),
                        p.get("text").and_then(Value::as_str),
                    ) {
                        (Some("text"), Some(t)) => text.push_str(t),
                        _ => {
                            return Err(bad(
                                &format!("{param}.content"),
                                "only text content parts are supported",
                            ))
                        }
                    }
                }
                text
            }
            Some(Value::Null) | None if role == "assistant" => String::new(),
            _ => {
                return Err(bad(
                    &format!("{param}.content"),
                    "content must be a string or an array of text parts",
                ))
            }
        };
        prompt_bytes += content.len();
        normalized.push(json!({"role": role, "content": content}));
    }
    if prompt_bytes > MAX_PROMPT_BYTES {
        return Err(bad(
            "messages",
            format!(
                "the prompt has {prompt_bytes} bytes; this node accepts at most {MAX_PROMPT_BYTES}"
            ),
        ));
    }

    let uint = |key: &str| -> Result<Option<u64>, ApiError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|n| *n <= MAX_SAFE_INTEGER)
                .map(Some)
                .ok_or_else(|| bad(key, format!("{key} must be a non-negative integer"))),
        }
    };
    let number = |key: &str, lo: f64, hi: f64, default: f64| -> Result<f64, ApiError> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| *x >= lo && *x <= hi)
                .ok_or_else(|| bad(key, format!("{key} must be a number between {lo} and {hi}"))),
        }
    };
    let max_tokens = uint("max_completion_tokens")?
        .or(uint("max_tokens")?)
        .unwrap_or(DEFAULT_MAX_TOKENS.min(model.max_tokens as u64));
    if max_tokens == 0 || max_tokens > model.max_tokens as u64 {
        let param = if obj.contains_key("max_completion_tokens") {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        return Err(bad(
            param,
            format!(
                "{param} must be between 1 and {} for {}",
                model.max_tokens, model.name
            ),
        ));
    }
    let temperature = number("temperature", 0.0, 2.0, 1.0)?;
    let top_p = number("top_p", 0.0, 1.0, 1.0)?;
    if top_p == 0.0 {
        return Err(bad("top_p", "top_p must be greater than 0"));
    }
    let seed = uint("seed")?.unwrap_or(0);
    if let Some(n) = uint("n")? {
        if n != 1 {
            return Err(bad(
                "n",
                "this node generates one choice per request (n = 1)",
            ));
        }
    } else if obj.get("n").is_some_and(|v| !v.is_null()) {
        return Err(bad("n", "n must be 1"));
    }
    for key in ["presence_penalty", "frequency_penalty"] {
        if number(key, -2.0, 2.0, 0.0)? != 0.0 {
            return Err(bad(
                key,
                format!("{key} is not supported by this model; leave it at 0"),
            ));
        }
    }
    if obj
        .get("logprobs")
        .is_some_and(|v| v != &Value::Bool(false) && !v.is_null())
    {
        return Err(bad("logprobs", "logprobs are not supported"));
    }
    let stop: Vec<String> = match obj.get("stop") {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| bad("stop", "stop must be a string or an array of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("stop", "stop must be a string or an array of strings")),
    };
    if stop.len() > 4 || stop.iter().any(|s| s.is_empty() || s.len() > 64) {
        return Err(bad("stop", "up to 4 stop sequences of 1 to 64 bytes"));
    }
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("stream", "stream must be a boolean")),
    };
    let include_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if obj
        .get("user")
        .is_some_and(|u| !u.is_string() && !u.is_null())
    {
        return Err(bad("user", "user must be a string"));
    }

    let input = json!({
        "max_tokens": max_tokens,
        "messages": normalized,
        "model": model.name,
        "seed": seed,
        "stop": stop,
        "temperature_milli": (temperature * 1000.0).round() as u64,
        "top_p_milli": ((top_p * 1000.0).round() as u64).max(1),
    });
    let input = vouch_proto::to_canonical_bytes(&input).map_err(ApiError::internal)?;
    Ok(ChatRequest {
        model,
        input,
        stream,
        include_usage,
    })
}

/// What the model workload printed (SPEC.md §7.2).
#[derive(Debug, serde::Deserialize)]
struct ModelOutput {
    content: String,
    finish_reason: String,
    model: String,
    #[allow(dead_code)]
    tokens: Vec<u32>,
    usage: Value,
}

async fn chat_completions(
    State(node): State<Arc<Node>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = crate::api::body_or_error(body)?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("We could not parse the JSON body of your request: {e}"),
        )
    })?;
    let req = normalize(&value, &node.config.models)?;
    let image = node.model_image(&req.model.image).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_unavailable",
            format!(
                "model {} cannot run on this node right now: {e}",
                req.model.name
            ),
        )
    })?;
    let spec = JobSpec {
        image,
        command: vec![],
        env: vec![],
        input_digest: vouch_proto::Digest::of(&req.input),
        limits: node.config.limits,
        determinism: Determinism::Deterministic,
        value_at_risk: Amount(0),
        replicas: 1,
        nonce: String::new(),
    };
    let (record, output) = node
        .run_now(spec, req.input.clone(), req.model.warm)
        .await
        .map_err(|e| match e {
            SubmitError::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_value", m),
            SubmitError::ImageNotFound(e) | SubmitError::Unavailable(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "model_unavailable",
                e.to_string(),
            ),
            e => ApiError::from(e),
        })?;
    let (output, out) = completed_output(&node, &record, output).await?;
    let receipt = record
        .receipt
        .as_ref()
        .map(|r| r.to_json())
        .ok_or_else(|| ApiError::internal("succeeded job without receipt"))?;
    let id = format!("chatcmpl-{}", &record.job_id.to_hex()[..32]);
    let created = record.created_at_ms / 1000;
    let fingerprint = format!("fp_{}", &record.spec.image.to_hex()[..12]);
    let vouch = json!({
        "job_id": record.job_id,
        "spec": record.spec,
        "input": String::from_utf8_lossy(&req.input),
        "output": output,
        "receipt": receipt,
        "links": {
            "job": format!("/v1/jobs/{}", record.job_id),
            "trace": format!("/v1/jobs/{}/trace", record.job_id),
        },
    });
    if !req.stream {
        let resp = json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": out.model,
            "system_fingerprint": fingerprint,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": out.content, "refusal": null},
                "logprobs": null,
                "finish_reason": out.finish_reason,
            }],
            "usage": out.usage,
            "vouch": vouch,
        });
        return Ok(Json(resp).into_response());
    }
    // Streaming: the whole generation is signed as one result, then sent in chunks; the
    // last content-bearing chunk carries the receipt.
    let base = |choices: Value| {
        let mut m = Map::new();
        m.insert("id".into(), json!(id));
        m.insert("object".into(), json!("chat.completion.chunk"));
        m.insert("created".into(), json!(created));
        m.insert("model".into(), json!(out.model));
        m.insert("system_fingerprint".into(), json!(fingerprint));
        m.insert("choices".into(), choices);
        m
    };
    let mut events: Vec<Value> = vec![];
    events.push(Value::Object(base(json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]))));
    let chars: Vec<char> = out.content.chars().collect();
    for piece in chars.chunks(4) {
        let text: String = piece.iter().collect();
        events.push(Value::Object(base(json!([{"index": 0, "delta": {"content": text}, "logprobs": null, "finish_reason": null}]))));
    }
    let mut last = base(
        json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": out.finish_reason}]),
    );
    last.insert("vouch".into(), vouch);
    events.push(Value::Object(last));
    if req.include_usage {
        let mut u = base(json!([]));
        u.insert("usage".into(), out.usage.clone());
        events.push(Value::Object(u));
    }
    let stream = futures::stream::iter(
        events
            .into_iter()
            .map(|v| Ok::<_, Infallible>(Event::default().data(v.to_string())))
            .chain(std::iter::once(Ok(Event::default().data("[DONE]")))),
    );
    Ok(Sse::new(stream).into_response())
}

/// The model output of a finished job: `output` when the caller has it, else from the
/// store.
async fn completed_output(
    node: &Arc<Node>,
    record: &JobRecord,
    output: Option<bytes::Bytes>,
) -> Result<(String, ModelOutput), ApiError> {
    if record.status != JobStatus::Succeeded {
        let reason = record
            .reason
            .clone()
            .unwrap_or_else(|| format!("{:?}", record.status));
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "generation_failed",
            format!("the model did not complete: {reason}"),
        ));
    }
    if record.exit_code != Some(0) {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "generation_failed",
            format!(
                "the model workload exited with {:?}; GET /v1/jobs/{}/stderr has its message",
                record.exit_code, record.job_id
            ),
        ));
    }
    let bytes = match output {
        Some(b) => b.to_vec(),
        None => {
            let store = node.store.clone();
            let id = record.job_id;
            tokio::task::spawn_blocking(move || store.output(&id))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?
                .unwrap_or_default()
        }
    };
    let text =
        String::from_utf8(bytes).map_err(|_| ApiError::internal("model output is not UTF-8"))?;
    let out: ModelOutput = serde_json::from_str(&text)
        .map_err(|e| ApiError::internal(format!("model output: {e}")))?;
    Ok((text, out))
}

fn model_json(m: &ModelConfig, image: Option<vouch_proto::Digest>) -> Value {
    json!({
        "id": m.name,
        "object": "model",
        "created": 0,
        "owned_by": "vouch",
        "vouch": {"image": image, "image_ref": m.image, "warm": m.warm, "max_tokens": m.max_tokens},
    })
}

async fn list_models(State(node): State<Arc<Node>>) -> Json<Value> {
    let mut data = vec![];
    for m in &node.config.models {
        match tokio::time::timeout(Duration::from_secs(5), node.model_image(&m.image)).await {
            Ok(Ok(d)) => data.push(model_json(m, Some(d))),
            Ok(Err(e)) => {
                tracing::warn!(target: "vouch::api", model = %m.name, %e, "model image unavailable; not listed")
            }
            Err(_) => {
                tracing::warn!(target: "vouch::api", model = %m.name, "model image lookup timed out")
            }
        }
    }
    Json(json!({"object": "list", "data": data}))
}

async fn get_model(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let m = node
        .config
        .models
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "model_not_found",
                format!("The model `{name}` does not exist on this node"),
            )
            .with_param("model")
        })?;
    let d = node.model_image(&m.image).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_unavailable",
            e.to_string(),
        )
    })?;
    Ok(Json(model_json(m, Some(d))))
}
