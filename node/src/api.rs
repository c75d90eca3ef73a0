//! The HTTP API (axum). `router(node)` builds it, so tests drive it with `oneshot` and no
//! socket. Reference: README "HTTP API".

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use vouch_proto::{valid_env_key, Amount, Determinism, JobId, JobSpec, ReceiptJson};

use crate::node::{JobRequest, Node, PartialLimits, SubmitError};
use crate::store::{Inserted, JobRecord, JobStatus};

/// The one error type of the API: a status, a stable code and a message for people.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) param: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            param: None,
        }
    }
    /// Names the request field that was wrong (OpenAI's `param`).
    pub(crate) fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(target: "vouch::api", error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the operator's logs have details",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // OpenAI's error shape, so every OpenAI SDK reports these errors properly.
        let kind = match self.status.as_u16() {
            401 => "invalid_request_error",
            429 => "rate_limit_error",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        };
        let body = Json(json!({"error": {
            "message": self.message, "type": kind, "param": self.param, "code": self.code,
        }}));
        let mut resp = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Invalid(m) => ApiError::invalid(m),
            SubmitError::ImageNotFound(e) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "image_not_found",
                e.to_string(),
            ),
            SubmitError::Unavailable(e) => {
                tracing::warn!(target: "vouch::api", %e, "docker unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "docker_unavailable",
                    e.to_string(),
                )
            }
            e @ SubmitError::QueueFull(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "queue_full", e.to_string())
            }
            e @ SubmitError::OverExposure(crate::exposure::Refusal::StakeUnknown { .. }) => {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "stake_unknown",
                    e.to_string(),
                )
            }
            e @ SubmitError::OverExposure(_) => {
                ApiError::new(StatusCode::CONFLICT, "over_exposure_cap", e.to_string())
            }
            SubmitError::Internal(m) => ApiError::internal(m),
        }
    }
}

/// Body of `POST /v1/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    image: String,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    input: Option<String>,
    #[serde(default)]
    input_base64: Option<String>,
    #[serde(default)]
    limits: PartialLimits,
    #[serde(default)]
    determinism: Determinism,
    #[serde(default)]
    value_at_risk: Amount,
    #[serde(default = "one")]
    replicas: u32,
    #[serde(default)]
    nonce: String,
}

fn one() -> u32 {
    1
}

/// A job as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobView {
    /// Job id (hex).
    pub job_id: JobId,
    /// queued / running / succeeded / failed.
    pub status: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The spec the job id commits to.
    pub spec: JobSpec,
    /// Exit code, once it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Output length, once it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_len: Option<u64>,
    /// Times started.
    pub attempts: u32,
    /// Accepted at (ms since epoch).
    pub created_at_ms: u64,
    /// Last change (ms since epoch).
    pub updated_at_ms: u64,
    /// The signed receipt, once succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt: Option<ReceiptJson>,
    /// For a replicated job: what the replicas committed and revealed (SPEC §10.5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<serde_json::Value>,
}

impl From<JobRecord> for JobView {
    fn from(r: JobRecord) -> Self {
        JobView {
            job_id: r.job_id,
            status: serde_json::to_value(r.status)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
            reason: r.reason,
            spec: r.spec,
            exit_code: r.exit_code,
            output_len: r.output_len,
            attempts: r.attempts,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            receipt: r.receipt.map(|s| s.to_json()),
            replication: None,
        }
    }
}

/// Builds the router with all layers.
pub fn router(node: Arc<Node>) -> Router {
    let cfg = &node.config;
    let key_hashes: Arc<Vec<[u8; 32]>> = Arc::new(
        cfg.api_keys
            .iter()
            .map(|k| Sha256::digest(k.as_bytes()).into())
            .collect(),
    );
    let v1 = Router::new()
        .route("/v1/jobs", post(submit))
        .route("/v1/jobs/{id}", get(job))
        .route("/v1/jobs/{id}/output", get(output))
        .route("/v1/jobs/{id}/input", get(input))
        .route("/v1/jobs/{id}/stderr", get(stderr))
        .route("/v1/node", get(node_info))
        .route("/v1/peers", get(peers))
        .route("/v1/jobs/{id}/receipts", get(job_receipts))
        .route("/v1/jobs/{id}/replication", get(job_replication))
        .route("/v1/jobs/{id}/trace", get(trace))
        .route("/v1/jobs/{id}/trace/{index}", get(trace_opening))
        .merge(crate::openai::routes())
        .route_layer(middleware::from_fn_with_state(key_hashes, auth));
    Router::new()
        .merge(v1)
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see README \"HTTP API\"",
            )
        })
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_millis(cfg.request_timeout_ms),
        ))
        .layer(GlobalConcurrencyLimitLayer::new(cfg.max_http_concurrency))
        .layer(TraceLayer::new_for_http())
        .with_state(node)
}

async fn auth(State(keys): State<Arc<Vec<[u8; 32]>>>, req: Request, next: Next) -> Response {
    if keys.is_empty() {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|k| <[u8; 32]>::from(Sha256::digest(k.trim().as_bytes())));
    // Comparing digests keeps the comparison time independent of how much of a key matched.
    match presented {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "this node requires an API key: send `Authorization: Bearer <key>`",
        )
        .into_response(),
        Some(h) if keys.contains(&h) => next.run(req).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "the API key is not valid for this node",
        )
        .into_response(),
    }
}

/// The request body, or the API's error for a body that is too large or unreadable.
pub(crate) fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "request body is over this node's max_body_bytes",
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_body", rej.body_text())
        }
    })
}

async fn submit(
    State(node): State<Arc<Node>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body_or_error(body)?;
    let req: SubmitBody = serde_json::from_slice(&body).map_err(|e| {
        let (status, code) = if e.is_data() {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request")
        } else {
            (StatusCode::BAD_REQUEST, "malformed_json")
        };
        ApiError::new(status, code, format!("request body: {e}"))
    })?;
    if let Some(k) = req.env.keys().find(|k| !valid_env_key(k)) {
        return Err(ApiError::invalid(format!(
            "env key {k:?} must match [A-Za-z_][A-Za-z0-9_]*"
        )));
    }
    let input = match (req.input, req.input_base64) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "give either input or input_base64, not both",
            ))
        }
        (Some(s), None) => s.into_bytes(),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b.as_bytes())
            .map_err(|e| ApiError::invalid(format!("input_base64 is not standard base64: {e}")))?,
        (None, None) => vec![],
    };
    let submitted = node
        .submit(JobRequest {
            image: req.image,
            command: req.command,
            env: req.env.into_iter().collect(),
            input,
            limits: req.limits,
            determinism: req.determinism,
            value_at_risk: req.value_at_risk,
            replicas: req.replicas,
            nonce: req.nonce,
        })
        .await?;
    let (status, state) = match submitted.inserted {
        Inserted::New | Inserted::Requeued => (StatusCode::ACCEPTED, "queued".to_string()),
        Inserted::Exists(s) => (StatusCode::OK, format!("{s:?}").to_lowercase()),
    };
    let id = submitted.job_id.to_hex();
    let body = json!({
        "job_id": id,
        "status": state,
        "spec": submitted.spec,
        "links": {"self": format!("/v1/jobs/{id}"), "output": format!("/v1/jobs/{id}/output")},
    });
    let mut resp = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/jobs/{id}")) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

fn parse_id(id: &str) -> Result<JobId, ApiError> {
    id.parse()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_job_id", format!("{e}")))
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait_ms: Option<u64>,
}

async fn job(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> Result<Json<JobView>, ApiError> {
    let id = parse_id(&id)?;
    // Long-polls end well inside the request timeout.
    let cap = node
        .config
        .request_timeout_ms
        .saturating_sub(1000)
        .min(60_000);
    let wait = Duration::from_millis(q.wait_ms.unwrap_or(0).min(cap));
    let rec = node.get(id, wait).await.map_err(ApiError::internal)?;
    let replication = match node.p2p.get() {
        Some(p2p) => crate::p2p::report(&node, p2p, id).await,
        None => None,
    };
    match (rec, replication) {
        (Some(r), rep) => {
            let mut view: JobView = r.into();
            view.replication = rep.and_then(|(_, r)| serde_json::to_value(r).ok());
            Ok(Json(view))
        }
        // A replicated job this node announced but does not run itself.
        (None, Some((spec, rep))) => Ok(Json(JobView {
            job_id: id,
            status: "replicated".into(),
            reason: None,
            spec,
            exit_code: None,
            output_len: None,
            attempts: 0,
            created_at_ms: 0,
            updated_at_ms: 0,
            receipt: None,
            replication: serde_json::to_value(rep).ok(),
        })),
        (None, None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "job_not_found",
            format!("no job {id} on this node"),
        )),
    }
}

fn p2p_or_404(node: &Node) -> Result<&Arc<crate::p2p::P2p>, ApiError> {
    node.p2p.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "p2p_disabled",
            "this node has not joined the peer-to-peer network (start it with --p2p-listen)",
        )
    })
}

async fn peers(State(node): State<Arc<Node>>) -> Result<Json<serde_json::Value>, ApiError> {
    let p2p = p2p_or_404(&node)?;
    Ok(Json(p2p.peers_view().await))
}

async fn job_receipts(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    p2p_or_404(&node)?;
    let store = node.store.clone();
    let seen = tokio::task::spawn_blocking(move || store.gossip_receipts(&id))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"job_id": id, "receipts": seen})))
}

async fn job_replication(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = parse_id(&id)?;
    let p2p = p2p_or_404(&node)?;
    match crate::p2p::report(&node, p2p, id).await {
        Some((_, r)) => Ok(Json(serde_json::to_value(r).map_err(ApiError::internal)?)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "job_not_found",
            format!("no replicated job {id} known to this node"),
        )),
    }
}

async fn output(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let rec = node
        .get(id, Duration::ZERO)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "job_not_found",
                format!("no job {id} on this node"),
            )
        })?;
    if rec.status != JobStatus::Succeeded {
        let why = rec.reason.map(|r| format!(" ({r})")).unwrap_or_default();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_output",
            format!(
                "job is {:?}{why}; output exists once it has succeeded",
                rec.status
            )
            .to_lowercase(),
        ));
    }
    let store = node.store.clone();
    let bytes = tokio::task::spawn_blocking(move || store.output(&id))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
        .unwrap_or_default();
    let mut resp = octets(bytes.clone());
    // The operator's signature over what it serves (SPEC.md §7.7): served bytes that are
    // not the signed output prove the operator contradicts itself.
    if let Some(r) = &rec.receipt {
        let statement = vouch_proto::served_statement(
            &r.receipt.network_id,
            &r.receipt.signing_root(),
            &vouch_proto::Served::Output {
                digest: vouch_proto::Digest::of(&bytes).0,
                len: bytes.len() as u64,
            },
        )
        .map_err(ApiError::internal)?;
        if let Ok(v) = HeaderValue::from_str(&hex::encode(node.signer.sign_served(&statement))) {
            resp.headers_mut().insert("x-vouch-served-signature", v);
        }
    }
    Ok(resp)
}

async fn input(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    blob(node, id, |s, id| s.input(id)).await
}

async fn stderr(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    blob(node, id, |s, id| s.stderr(id)).await
}

async fn blob(
    node: Arc<Node>,
    id: String,
    f: fn(&crate::store::JobStore, &JobId) -> rusqlite::Result<Option<Vec<u8>>>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let store = node.store.clone();
    let found = tokio::task::spawn_blocking(move || -> rusqlite::Result<Option<Vec<u8>>> {
        if store.get(&id)?.is_none() {
            return Ok(None);
        }
        Ok(Some(f(&store, &id)?.unwrap_or_default()))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    found.map(octets).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "job_not_found",
            format!("no job {id} on this node"),
        )
    })
}

fn octets(bytes: Vec<u8>) -> Response {
    let digest = vouch_proto::Digest::of(&bytes).to_string();
    let mut resp = Response::new(Body::from(bytes));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&digest) {
        resp.headers_mut().insert("x-vouch-digest", v);
    }
    resp
}

async fn node_info(State(node): State<Arc<Node>>) -> Json<serde_json::Value> {
    Json(json!({
        "operator": node.signer.operator(),
        "network_id": node.signer.network_id(),
        "network": node.config.network,
        "version": env!("CARGO_PKG_VERSION"),
        "limits": node.config.limits,
        "max_concurrent_jobs": node.config.max_concurrent_jobs,
        "max_body_bytes": node.config.max_body_bytes,
        "api_keys_required": !node.config.api_keys.is_empty(),
        "peer_id": node.p2p.get().map(|p| p.net.local_peer_id().to_string()),
        "exposure": node.exposure.report(crate::store::now_ms()),
    }))
}

async fn health(State(node): State<Arc<Node>>) -> Response {
    let docker = match tokio::time::timeout(Duration::from_secs(2), node.executor.health()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => format!("unavailable: {e}"),
        Err(_) => "unavailable: no answer within 2 s".to_string(),
    };
    // The node itself is alive whatever Docker says; `docker` tells whether jobs can run.
    Json(json!({"status": "ok", "docker": docker})).into_response()
}

async fn metrics(State(node): State<Arc<Node>>) -> Response {
    if let Some(p2p) = node.p2p.get() {
        node.metrics.set_gossip_stats(&p2p.net.stats());
        if let Ok(peers) = p2p.net.peers().await {
            node.metrics.p2p_peers.set(peers.len() as i64);
        }
    }
    let mut resp = node.metrics.encode().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

async fn trace_leaves(node: &Arc<Node>, id: &str) -> Result<(JobRecord, Vec<Vec<u8>>), ApiError> {
    let id = parse_id(id)?;
    let rec = node
        .get(id, Duration::ZERO)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "job_not_found",
                format!("no job {id} on this node"),
            )
        })?;
    if rec.receipt.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_output",
            "the job has no receipt yet; its trace is served once it has succeeded",
        ));
    }
    let store = node.store.clone();
    let leaves = tokio::task::spawn_blocking(move || store.trace(&id))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?
        .unwrap_or_default();
    Ok((rec, leaves))
}

/// All trace leaves of a job, with the signed root and length.
async fn trace(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (rec, leaves) = trace_leaves(&node, &id).await?;
    let r = rec
        .receipt
        .map(|s| s.receipt)
        .ok_or_else(|| ApiError::internal("receipt vanished"))?;
    Ok(Json(json!({
        "job_id": r.job_id,
        "trace_root": r.trace_root,
        "trace_len": r.trace_len,
        "leaves": leaves.iter().map(hex::encode).collect::<Vec<_>>(),
    })))
}

/// One leaf and its Merkle opening against the signed trace root (SPEC.md §7).
async fn trace_opening(
    State(node): State<Arc<Node>>,
    Path((id, index)): Path<(String, u64)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (rec, leaves) = trace_leaves(&node, &id).await?;
    let r = rec
        .receipt
        .map(|s| s.receipt)
        .ok_or_else(|| ApiError::internal("receipt vanished"))?;
    let i = usize::try_from(index).unwrap_or(usize::MAX);
    let proof = vouch_proto::merkle_proof(&leaves, i).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_leaf",
            format!(
                "the trace has {} leaves; index {index} is out of range",
                leaves.len()
            ),
        )
    })?;
    let statement = vouch_proto::served_statement(
        &r.network_id,
        &r.signing_root(),
        &vouch_proto::Served::Leaf {
            index,
            leaf: &leaves[i],
            proof: &proof,
        },
    )
    .map_err(ApiError::internal)?;
    Ok(Json(json!({
        "job_id": r.job_id,
        "index": index,
        "leaf": hex::encode(&leaves[i]),
        "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
        "trace_root": r.trace_root,
        "trace_len": r.trace_len,
        "served_signature": hex::encode(node.signer.sign_served(&statement)),
    })))
}
