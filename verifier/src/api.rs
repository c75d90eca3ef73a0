//! The verifier's HTTP API (axum).
//!
//! | method | path | body → answer |
//! |---|---|---|
//! | `POST` | `/v1/requests` | a [`SignedRequest`] → `{"outcome", "event"}` |
//! | `GET` | `/v1/events?from=N&limit=M` | `{"events": [...], "next": N'}`; `limit` ≤ 1000 |
//! | `GET` | `/v1/operators/{key}` | state, slashable stake per asset, jailed |
//! | `GET` | `/v1/snapshot` | the whole ledger state |
//! | `POST` | `/v1/disputes/equivocation` | `{"challenger", "receipt_a", "receipt_b"}` → [`Verdict`] |
//! | `POST` | `/v1/disputes/result` | [`ResultDisputeBody`] → [`ResultVerdict`] (opens the dispute, locking the bond, then re-runs the job twice) |
//! | `POST` | `/v1/disputes/token` | [`TokenDisputeBody`] → [`ResultVerdict`] with `kind` `"token"` (opens the dispute, then recomputes at most one token: [`crate::token`]) |
//! | `POST` | `/v1/disputes/withholding` | [`WithholdingDisputeBody`] → [`DisputeStatus`] `open`, with the demand and its deadline ([`crate::withholding`]) |
//! | `POST` | `/v1/disputes/{id}/answer` | [`crate::withholding::Answer`] → [`DisputeStatus`] `decided` (`void`, the evidence published); 422 `bad_answer`, 409 `deadline_passed` |
//! | `GET` | `/v1/disputes?state=&kind=&operator=&limit=` | the latest disputes, newest first, filtered |
//! | `GET` | `/v1/disputes/{id}` | a wrong-result, one-token or withholding dispute: [`DisputeStatus`], `open` or `decided` with its verdict |
//! | `GET` | `/v1/beacon/{epoch}` | `{"epoch", "epoch_ms", "signature", "beacon"}` of an epoch that has ended (SPEC.md §11.3); 425 `not_yet` with `available_at_ms` before |
//! | `GET` | `/v1/beacon` | the latest revealed beacon |
//! | `GET` | `/healthz` | `{"status": "ok"}` |
//!
//! Errors have OpenAI's shape, like the node's: `{"error": {"message", "type", "param",
//! "code"}}`, `type` = `invalid_request_error` for 4xx and `server_error` for 5xx. Faults
//! of the verifier itself are logged and answered with a generic 500.
//!
//! Every route but `POST /v1/disputes/result` and `POST /v1/disputes/token` is cut off
//! after [`REQUEST_TIMEOUT`]; the first waits for the verdict of two runs of the job at
//! once, the second for at most one `step` run, each bounded by the spec's
//! own `timeout_ms` (and the executor's margin for the daemon), with at most
//! [`crate::reexec::MAX_CONCURRENT_REEXECUTIONS`] containers at once. The judgment runs in
//! its own task, so a client that hangs up does not stop it: it reads the verdict from
//! `GET /v1/disputes/{id}` (or sends the same challenge again, which waits for the same
//! judgment). A dispute opened but not decided answers 503 `dispute_pending`.
//!
//! The ledger is blocking (SQLite, which may wait on another writer), so every call to it
//! runs on tokio's blocking pool.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower::limit::ConcurrencyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use vouch_proto::ReceiptJson;

use crate::disputes::{Verdict, Verifier};
use crate::error::{DisputeError, LedgerError};
use crate::ledger::CollateralLedger;
use crate::reexec::{Bond, DisputeStatus, ResultChallenge, ResultVerdict};
use crate::requests::{Key, Sig, SignedRequest};

/// Largest request body accepted (a dispute with two receipts is about 4 KiB).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Largest body of a result challenge, which carries the job's input in base64: room for
/// the largest input a `vouch-node` accepts (its request body is at most 16 MiB), so any
/// job a node ran can be disputed.
pub const MAX_DISPUTE_BODY_BYTES: usize = 24 << 20;
/// Most events one `GET /v1/events` returns.
pub const MAX_EVENTS_PAGE: usize = 1000;
/// Requests handled at once; more wait.
pub const MAX_CONCURRENT_REQUESTS: usize = 256;
/// A request that takes longer is answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Length of a beacon epoch unless configured (`--beacon-epoch-ms`).
pub const DEFAULT_BEACON_EPOCH_MS: u64 = 10_000;

/// The verifier's clock, in ms since the Unix epoch.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    verifier: Arc<Verifier>,
    clock: Clock,
    net: Option<Arc<crate::gossip::VerifierNet>>,
    beacon_epoch_ms: u64,
    security: crate::security::SecurityParams,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// State with the verifier's clock (the system clock unless it was replaced).
    pub fn new(verifier: Arc<Verifier>) -> Self {
        ApiState {
            clock: verifier.clock(),
            verifier,
            net: None,
            beacon_epoch_ms: DEFAULT_BEACON_EPOCH_MS,
            security: Default::default(),
        }
    }

    /// The service's security parameters (γ; README "Economic security").
    pub fn with_security(mut self, params: crate::security::SecurityParams) -> Self {
        self.security = params;
        self
    }

    /// The length of a beacon epoch (SPEC.md §11.3); at least 1 ms.
    pub fn with_beacon_epoch_ms(mut self, epoch_ms: u64) -> Self {
        self.beacon_epoch_ms = epoch_ms.max(1);
        self
    }

    /// Serves the network endpoints (`/v1/receipts`, `/v1/peers`) from `net`.
    pub fn with_network(mut self, net: Arc<crate::gossip::VerifierNet>) -> Self {
        self.net = Some(net);
        self
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn ledger(&self) -> Arc<dyn CollateralLedger> {
        self.verifier.ledger().clone()
    }
}

/// Milliseconds since the Unix epoch (0 if the system clock is before it).
pub fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The API with its layers: tracing (with the matched path), timeout, concurrency
/// limit, body limit.
pub fn router(state: ApiState) -> Router {
    // Re-execution may take longer than REQUEST_TIMEOUT; it bounds itself (module docs).
    let reexec = Router::new()
        .route("/v1/disputes/result", post(post_result))
        .route("/v1/disputes/token", post(post_token))
        .layer(DefaultBodyLimit::max(MAX_DISPUTE_BODY_BYTES));
    let answers = Router::new()
        .route("/v1/disputes/{id}/answer", post(post_answer))
        .layer(DefaultBodyLimit::max(crate::withholding::MAX_ANSWER_BYTES));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/requests", post(post_request))
        .route("/v1/events", get(get_events))
        .route("/v1/operators/{key}", get(get_operator))
        .route("/v1/snapshot", get(get_snapshot))
        .route("/v1/registry", get(get_registry))
        .route("/v1/security", get(get_security))
        .route("/v1/receipts", get(get_receipts))
        .route("/v1/peers", get(get_peers))
        .route("/v1/disputes/equivocation", post(post_equivocation))
        .route("/v1/disputes/withholding", post(post_withholding))
        .route("/v1/disputes", get(get_disputes))
        .route("/v1/disputes/{id}", get(get_dispute))
        .merge(crate::explorer::routes())
        .route("/v1/beacon", get(get_latest_beacon))
        .route("/v1/beacon/{epoch}", get(get_beacon))
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .merge(reexec)
        .merge(answers)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(ConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let path = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("unmatched", MatchedPath::as_str);
                tracing::info_span!(target: "vouch_verifier::api", "http", method = %req.method(), path)
            }),
        )
}

/// An error answer: OpenAI's shape.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    param: Option<&'static str>,
    code: &'static str,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code,
        }
    }

    fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    /// A fault of the verifier: logged in full, answered without detail.
    fn internal(err: &dyn std::fmt::Display) -> Self {
        tracing::error!(target: "vouch_verifier::api", %err, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal error in the verifier; it has been logged",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        };
        let body = json!({"error": {
            "message": self.message,
            "type": kind,
            "param": self.param,
            "code": self.code,
        }});
        (self.status, Json(body)).into_response()
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        use LedgerError as L;
        use StatusCode as S;
        let (status, code) = match &e {
            L::BadSignature { .. } => (S::UNAUTHORIZED, "bad_signature"),
            L::MissingPeerSignature => (S::UNAUTHORIZED, "missing_peer_signature"),
            L::Unauthorized { .. } => (S::FORBIDDEN, "unauthorized"),
            L::ReplayedNonce { .. } => (S::CONFLICT, "replayed_nonce"),
            L::UnknownOperator(_) => (S::NOT_FOUND, "unknown_operator"),
            L::UnknownRestaker(_) => (S::NOT_FOUND, "unknown_restaker"),
            L::UnknownAsset(_) => (S::NOT_FOUND, "unknown_asset"),
            L::UnknownWithdrawal { .. } => (S::NOT_FOUND, "unknown_withdrawal"),
            L::AssetExists(_) => (S::CONFLICT, "asset_exists"),
            L::OperatorExists(_) => (S::CONFLICT, "operator_exists"),
            L::AlreadySlashed { .. } => (S::CONFLICT, "already_slashed"),
            L::AlreadyForfeited { .. } => (S::CONFLICT, "already_forfeited"),
            L::UnknownDispute(_) => (S::NOT_FOUND, "unknown_dispute"),
            L::DisputeExists { .. } => (S::CONFLICT, "dispute_exists"),
            L::DisputeClosed { .. } => (S::CONFLICT, "dispute_decided"),
            L::NotYetClaimable { .. } => (S::CONFLICT, "not_yet_claimable"),
            L::InsufficientBalance { .. } => (S::UNPROCESSABLE_ENTITY, "insufficient_balance"),
            L::Overflow(_) => (S::UNPROCESSABLE_ENTITY, "overflow"),
            L::Rule(_) => (S::UNPROCESSABLE_ENTITY, "rule_violation"),
            L::Invalid(_) | L::Canonical(_) => (S::BAD_REQUEST, "invalid_value"),
            L::Config(_)
            | L::Mismatch { .. }
            | L::Chain { .. }
            | L::Conservation(_)
            | L::Corrupt(_)
            | L::Storage(_) => return ApiError::internal(&e),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<DisputeError> for ApiError {
    fn from(e: DisputeError) -> Self {
        use DisputeError as D;
        use StatusCode as S;
        let e = match e {
            D::Ledger(inner) => return inner.into(),
            D::Internal(_) => return ApiError::internal(&e),
            other => other,
        };
        let param = match &e {
            D::Receipt { which, .. } | D::WrongNetwork { which, .. } => Some(*which),
            D::Challenger(_) => Some("challenger"),
            D::Mismatch(_) => Some("spec"),
            _ => None,
        };
        let (status, code) = match &e {
            D::Receipt {
                source: vouch_proto::ProtoError::BadSignature,
                ..
            } => (S::BAD_REQUEST, "bad_receipt_signature"),
            D::Receipt { .. } => (S::BAD_REQUEST, "invalid_receipt"),
            D::WrongNetwork { .. } => (S::BAD_REQUEST, "wrong_network"),
            D::DifferentOperators { .. } | D::SameReceipt { .. } | D::Unrelated => {
                (S::UNPROCESSABLE_ENTITY, "not_an_equivocation")
            }
            D::Challenger(_) => (S::BAD_REQUEST, "invalid_value"),
            D::Mismatch(_) => (S::UNPROCESSABLE_ENTITY, "receipt_mismatch"),
            D::Final { .. } => (S::CONFLICT, "receipt_final"),
            D::NotDisputable(_) => (S::UNPROCESSABLE_ENTITY, "not_disputable"),
            D::Exec(vouch_exec::ExecError::ImageNotFound(_)) => {
                (S::CONFLICT, "image_not_available")
            }
            D::NoExecutor | D::Exec(_) => (S::SERVICE_UNAVAILABLE, "reexecution_unavailable"),
            D::Pending { .. } => (S::SERVICE_UNAVAILABLE, "dispute_pending"),
            D::BadDemand(_) => (S::UNPROCESSABLE_ENTITY, "bad_demand"),
            D::BadAnswer(_) => (S::UNPROCESSABLE_ENTITY, "bad_answer"),
            D::DeadlinePassed { .. } => (S::CONFLICT, "deadline_passed"),
            D::Busy(_) | D::Ledger(_) | D::Internal(_) => (S::SERVICE_UNAVAILABLE, "busy"),
        };
        let mut err = ApiError::new(status, code, e.to_string());
        err.param = param;
        err
    }
}

/// Parses a JSON body, turning both transport and decoding failures into [`ApiError`]s
/// (413 for a body over [`MAX_BODY_BYTES`]).
fn json_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    json_body_up_to(body, MAX_BODY_BYTES)
}

/// [`json_body`] for a route whose body limit is `limit` (named in the 413 message).
fn json_body_up_to<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "body_too_large",
                format!("request body is over the limit of {limit} bytes"),
            )
        } else {
            ApiError::new(status, "invalid_body", r.body_text())
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("request body is not valid JSON for this endpoint: {e}"),
        )
    })
}

/// Runs a blocking ledger call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(&e))?
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn post_request(
    State(st): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let request: SignedRequest = json_body(body)?;
    let now = (st.clock)();
    let ledger = st.ledger();
    let applied = blocking(move || Ok(ledger.apply(&request, now)?)).await?;
    Ok(Json(
        json!({"outcome": applied.outcome, "event": applied.event}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    #[serde(default)]
    from: u64,
    limit: Option<usize>,
    /// The last `tail` events instead (`from` is ignored).
    tail: Option<usize>,
}

async fn get_events(
    State(st): State<ApiState>,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = parse_query(query)?;
    let limit = page_size(q.limit.unwrap_or(100), "limit")?;
    if let Some(tail) = q.tail {
        page_size(tail, "tail")?;
    }
    let ledger = st.ledger();
    let (from, events) = blocking(move || {
        let from = match q.tail {
            Some(tail) => ledger.snapshot()?.event_count.saturating_sub(tail as u64),
            None => q.from,
        };
        Ok((from, ledger.events_from(from, q.tail.unwrap_or(limit))?))
    })
    .await?;
    let next = events.last().map_or(from, |e| e.seq.saturating_add(1));
    Ok(Json(json!({"events": events, "next": next})))
}

async fn get_operator(
    State(st): State<ApiState>,
    Path(key): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = Key::from_hex(&key).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!("operator key {key:?} is not 64 hex characters"),
        )
        .param("key")
    })?;
    let now = (st.clock)();
    let ledger = st.ledger();
    blocking(move || {
        let state = ledger
            .operator(&key)?
            .ok_or(LedgerError::UnknownOperator(key))?;
        let stake: BTreeMap<String, String> = ledger
            .slashable_stake(&key, now)?
            .into_iter()
            .map(|(a, v)| (a, v.to_string()))
            .collect();
        Ok(Json(json!({
            "operator": key,
            "state": state,
            "magnitude_ppm_now": state.magnitude_at(now),
            "slashable_stake": stake,
            "jailed": ledger.is_jailed(&key, now)?,
        })))
    })
    .await
}

/// The operator registry nodes poll to decide whose gossip they accept (README "Verifier
/// API"): every registered operator with its peer key, whether it is active (not jailed,
/// stake at or above the minimum), and its slashable stake priced in quote units, the
/// weight of replica selection.
async fn get_registry(State(st): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let now = (st.clock)();
    let ledger = st.ledger();
    let network = st.verifier.network();
    let gamma_ppm = st.security.gamma_ppm;
    let slash_ppm = st.verifier.config().wrong_result_slash_ppm;
    blocking(move || {
        let snap = ledger.snapshot()?;
        let mut ops = vec![];
        for (key, state) in &snap.operators {
            let mut value = 0u128;
            for (asset, amount) in ledger.slashable_stake(key, now)? {
                let price = snap.assets.get(&asset).map_or(0, |a| a.price_per_unit);
                value = value.saturating_add(amount.saturating_mul(price));
            }
            let jailed = ledger.is_jailed(key, now)?;
            ops.push(json!({
                "operator": key,
                "peer_key": state.peer_key,
                "active": !jailed,
                "jailed_by_slash": state.jailed,
                "stake_value": value.to_string(),
            }));
        }
        Ok(Json(json!({
            "network_id": network,
            "verifier": ledger.verifier_key(),
            "at_ms": now,
            "gamma_ppm": gamma_ppm,
            "wrong_result_slash_ppm": slash_ppm,
            "challenge_window_ms": ledger.config().challenge_window_ms(),
            "operators": ops,
        })))
    })
    .await
}

/// Economic security figures (README "Economic security", `crate::security`): per
/// operator slashable stake, open value at risk, cap and margin, the per-operator
/// condition with slack γ; for the service cost vs profit of corruption.
async fn get_security(
    State(st): State<ApiState>,
) -> Result<Json<crate::security::SecurityReport>, ApiError> {
    let now = (st.clock)();
    let ledger = st.ledger();
    let window = ledger.config().challenge_window_ms();
    let (open, source) = match &st.net {
        Some(net) => (
            net.open_value_at_risk(now, window),
            format!(
                "receipts heard on the network inside the challenge window, priced by their specs' value_at_risk ({} heard, {} not priced)",
                net.heard(),
                net.unpriced()
            ),
        ),
        None => (
            Default::default(),
            "none: this verifier has not joined the network (--p2p-listen), so it hears no receipts".to_string(),
        ),
    };
    let params = st.security;
    let slash_ppm = st.verifier.config().wrong_result_slash_ppm;
    blocking(move || {
        let snap = ledger.snapshot()?;
        let mut ops = BTreeMap::new();
        for key in snap.operators.keys() {
            let stake = ledger.slashable_stake(key, now)?;
            let mut value = 0u128;
            for (asset, amount) in &stake {
                let price = snap.assets.get(asset).map_or(0, |a| a.price_per_unit);
                value = value.saturating_add(amount.saturating_mul(price));
            }
            let (open_jobs, open_value_at_risk) = open
                .get(&vouch_proto::OperatorKey(key.0))
                .copied()
                .unwrap_or_default();
            ops.insert(
                key.to_string(),
                crate::security::OperatorInputs {
                    jailed: ledger.is_jailed(key, now)?,
                    slashable_stake: stake,
                    stake_value: value,
                    open_jobs,
                    open_value_at_risk,
                },
            );
        }
        Ok(Json(crate::security::report(
            params, slash_ppm, window, &source, &ops,
        )))
    })
    .await
}

#[derive(Debug, Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

fn network_or_404(st: &ApiState) -> Result<&Arc<crate::gossip::VerifierNet>, ApiError> {
    st.net.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "p2p_disabled",
            "this verifier has not joined the peer-to-peer network (start it with --p2p-listen)",
        )
    })
}

/// Receipts heard on the network, newest last.
async fn get_receipts(
    State(st): State<ApiState>,
    Query(q): Query<LimitQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let net = network_or_404(&st)?;
    let limit = q.limit.unwrap_or(100).min(crate::gossip::RECENT_RECEIPTS);
    Ok(Json(
        json!({"heard": net.heard(), "receipts": net.recent(limit)}),
    ))
}

async fn get_peers(State(st): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let net = network_or_404(&st)?;
    let peers = net.net.peers().await.unwrap_or_default();
    let s = net.net.stats();
    Ok(Json(json!({
        "peer_id": net.net.local_peer_id().to_string(),
        "listen_addrs": net.net.listen_addrs().await.unwrap_or_default().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "connected": peers.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        "messages": {"accepted": s.accepted, "rejected": s.rejected(), "duplicates": s.duplicates, "synced": s.synced},
    })))
}

async fn get_snapshot(State(st): State<ApiState>) -> Result<Json<serde_json::Value>, ApiError> {
    let ledger = st.ledger();
    let snap = blocking(move || Ok(ledger.snapshot()?)).await?;
    let balances: Vec<_> = snap
        .balances
        .iter()
        .map(|((who, asset), amount)| {
            json!({"restaker": who, "asset": asset, "amount": amount.to_string()})
        })
        .collect();
    let map = |m: BTreeMap<Key, serde_json::Value>| -> BTreeMap<String, serde_json::Value> {
        m.into_iter().map(|(k, v)| (k.to_hex(), v)).collect()
    };
    Ok(Json(json!({
        "assets": snap.assets,
        "balances": balances,
        "delegations": map(snap.delegations.iter().map(|(k, v)| (*k, json!(v))).collect()),
        "withdrawals": snap.withdrawals.values().collect::<Vec<_>>(),
        "operators": map(snap.operators.iter().map(|(k, v)| (*k, json!(v))).collect()),
        "nonces": map(snap.nonces.iter().map(|(k, v)| (*k, json!(v.to_string()))).collect()),
        "offences": snap.offences,
        "disputes": snap.disputes.values().collect::<Vec<_>>(),
        "event_count": snap.event_count,
        "last_hash": snap.last_hash.map(hex::encode),
    })))
}

/// Body of `POST /v1/disputes/equivocation`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EquivocationDispute {
    /// Receives the bounty (as a deposit).
    pub challenger: Key,
    /// One signed receipt.
    pub receipt_a: ReceiptJson,
    /// The conflicting one.
    pub receipt_b: ReceiptJson,
}

async fn post_equivocation(
    State(st): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Verdict>, ApiError> {
    let d: EquivocationDispute = json_body(body)?;
    // The JSON view must match its encoding (SPEC.md §4.2) and verify.
    let a = d
        .receipt_a
        .verify()
        .map_err(|source| DisputeError::Receipt {
            which: "receipt_a",
            source,
        })?;
    let b = d
        .receipt_b
        .verify()
        .map_err(|source| DisputeError::Receipt {
            which: "receipt_b",
            source,
        })?;
    let now = (st.clock)();
    let verifier = st.verifier.clone();
    let verdict =
        blocking(move || Ok(verifier.dispute_equivocation(d.challenger, &a, &b, now)?)).await?;
    Ok(Json(verdict))
}

/// A query string, or 400 `invalid_value`.
fn parse_query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "invalid_value", r.body_text()))
}

/// A page size, 1 to [`MAX_EVENTS_PAGE`], or 400 naming `param`.
fn page_size(n: usize, param: &'static str) -> Result<usize, ApiError> {
    if n == 0 || n > MAX_EVENTS_PAGE {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!("{param} must be 1 to {MAX_EVENTS_PAGE}, got {n}"),
        )
        .param(param));
    }
    Ok(n)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisputesQuery {
    limit: Option<usize>,
    /// `open` or `decided`.
    state: Option<String>,
    /// `wrong_result`, `token` or `withholding`.
    kind: Option<String>,
    /// 64 hex: disputes of this operator's receipts.
    operator: Option<String>,
}

/// The latest disputes, newest first (`?limit=N`, default 50, at most 1000), each as
/// `GET /v1/disputes/{id}` shows it, optionally only those in `state` (`open`,
/// `decided`), of `kind` or against `operator`. `total` counts every dispute in the
/// ledger. An operator's node polls `?state=open&kind=withholding&operator=…` to answer
/// withholding disputes.
async fn get_disputes(
    State(st): State<ApiState>,
    query: Result<Query<DisputesQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = parse_query(query)?;
    let limit = page_size(q.limit.unwrap_or(50), "limit")?;
    if let Some(s) = q
        .state
        .as_deref()
        .filter(|s| !matches!(*s, "open" | "decided"))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!("state must be open or decided, got {s:?}"),
        )
        .param("state"));
    }
    let operator = match q.operator.as_deref() {
        None => None,
        Some(k) => Some(Key::from_hex(k).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_value",
                format!("operator {k:?} is not 64 hex characters"),
            )
            .param("operator")
        })?),
    };
    let verifier = st.verifier.clone();
    blocking(move || {
        let ledger = verifier.ledger();
        let (mut records, total) = if q.state.as_deref() == Some("open") {
            let open = ledger.open_disputes()?;
            let n = open.len();
            (open, n)
        } else {
            let snap = ledger.snapshot()?;
            let n = snap.disputes.len();
            (snap.disputes.into_values().collect::<Vec<_>>(), n)
        };
        records.sort_by_key(|r| std::cmp::Reverse(r.opened_seq));
        let mut out = vec![];
        for r in records {
            if out.len() == limit {
                break;
            }
            if q.state.as_deref() == Some("decided") && r.closed.is_none() {
                continue;
            }
            let Some(status) = verifier.result_dispute_status(&r.id)? else {
                continue;
            };
            if q.kind.as_ref().is_some_and(|k| *k != status.kind)
                || operator.is_some_and(|o| status.operator != Some(o))
            {
                continue;
            }
            out.push(status);
        }
        Ok(Json(json!({"disputes": out, "total": total})))
    })
    .await
}

/// A dispute id in a path: 64 lowercase hex, or 400.
fn dispute_id_param(id: &str) -> Result<(), ApiError> {
    if id.len() != 64 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!("dispute id {id:?} is not 64 lowercase hex characters"),
        )
        .param("id"));
    }
    Ok(())
}

/// `GET /v1/disputes/{id}`: a dispute the ledger holds, open or decided.
async fn get_dispute(
    State(st): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<DisputeStatus>, ApiError> {
    dispute_id_param(&id)?;
    let verifier = st.verifier.clone();
    blocking(move || {
        let status = verifier.result_dispute_status(&id)?;
        status
            .map(Json)
            .ok_or_else(|| LedgerError::UnknownDispute(id).into())
    })
    .await
}

/// Body of `POST /v1/disputes/result` (see [`crate::reexec`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultDisputeBody {
    /// Receives the bounty; its deposited balance holds the bond.
    pub challenger: Key,
    /// Forfeited if the dispute is dismissed.
    pub bond: Bond,
    /// The challenger's signature over the dispute id ([`crate::reexec::result_dispute_id`]).
    pub signature: Sig,
    /// The disputed receipt (SPEC.md §4.1).
    pub receipt: ReceiptJson,
    /// The job spec (SPEC.md §2), as `GET /v1/jobs/{id}` returns it.
    pub spec: serde_json::Value,
    /// The input bytes, base64 (standard alphabet, padded).
    pub input_base64: String,
}

async fn post_result(
    State(st): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ResultVerdict>, ApiError> {
    let d: ResultDisputeBody = json_body_up_to(body, MAX_DISPUTE_BODY_BYTES)?;
    let challenge = result_challenge(d)?;
    let now = (st.clock)();
    Ok(Json(st.verifier.dispute_result(challenge, now).await?))
}

/// Body of `POST /v1/disputes/token` (see [`crate::token`]): a result challenge's fields,
/// signed over the token dispute id, plus the claim.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenDisputeBody {
    /// Receives the bounty; its deposited balance holds the bond.
    pub challenger: Key,
    /// Forfeited if the dispute is dismissed.
    pub bond: Bond,
    /// The challenger's signature over [`crate::token::token_dispute_id`].
    pub signature: Sig,
    /// The disputed receipt (SPEC.md §4.1).
    pub receipt: ReceiptJson,
    /// The job spec (SPEC.md §2).
    pub spec: serde_json::Value,
    /// The input bytes, base64.
    pub input_base64: String,
    /// The output the operator served, base64 (its SHA-256 must be the receipt's).
    pub output_base64: String,
    /// The disputed position `t`.
    pub position: u32,
    /// The operator's leaf `t`, hex (`GET /v1/jobs/{id}/trace/{t}` of the node).
    pub leaf: String,
    /// Its opening, bottom-up, 64 hex each.
    pub proof: Vec<String>,
    /// Optional: the prefix the challenger agrees to; must be the signed output's
    /// `tokens[0..t]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<Vec<u32>>,
    /// Optional: the operator's signature over serving this output (128 hex, the node's
    /// `X-Vouch-Served-Signature`, SPEC.md §7.7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_signature: Option<String>,
    /// Optional: the operator's signature over serving this leaf and opening (the node's
    /// `served_signature`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_signature: Option<String>,
}

async fn post_token(
    State(st): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ResultVerdict>, ApiError> {
    use base64::Engine as _;
    let d: TokenDisputeBody = json_body_up_to(body, MAX_DISPUTE_BODY_BYTES)?;
    let bad = |param: &'static str, message: String| {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_value", message).param(param)
    };
    let output = base64::engine::general_purpose::STANDARD
        .decode(d.output_base64.as_bytes())
        .map_err(|e| bad("output_base64", format!("output_base64 is not base64: {e}")))?;
    let leaf = hex::decode(&d.leaf).map_err(|e| bad("leaf", format!("leaf is not hex: {e}")))?;
    let proof = crate::token::parse_proof(&d.proof).map_err(|e| bad("proof", e))?;
    let signature = |h: Option<&str>, param: &'static str| {
        h.map(|h| crate::token::parse_signature(h, param).map_err(|e| bad(param, e)))
            .transpose()
    };
    let claim = crate::token::TokenClaim {
        position: d.position,
        output: output.into(),
        leaf,
        proof,
        prefix: d.prefix,
        output_signature: signature(d.output_signature.as_deref(), "output_signature")?,
        leaf_signature: signature(d.leaf_signature.as_deref(), "leaf_signature")?,
    };
    let base = result_challenge(ResultDisputeBody {
        challenger: d.challenger,
        bond: d.bond,
        signature: d.signature,
        receipt: d.receipt,
        spec: d.spec,
        input_base64: d.input_base64,
    })?;
    let challenge = crate::token::TokenChallenge { base, claim };
    let now = (st.clock)();
    Ok(Json(st.verifier.dispute_token(challenge, now).await?))
}

/// Body of `POST /v1/disputes/withholding` (see [`crate::withholding`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithholdingDisputeBody {
    /// Receives the bounty; its deposited balance holds the bond.
    pub challenger: Key,
    /// Locked until the verdict; returned when the evidence is published.
    pub bond: Bond,
    /// The challenger's signature over [`crate::withholding::withholding_dispute_id`].
    pub signature: Sig,
    /// The receipt whose evidence is withheld (SPEC.md §4.1).
    pub receipt: ReceiptJson,
    /// What must be published: `{"spec", "input", "output": bool, "positions": [t, ...]}`.
    pub demand: crate::withholding::Demand,
}

async fn post_withholding(
    State(st): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DisputeStatus>, ApiError> {
    let d: WithholdingDisputeBody = json_body(body)?;
    let receipt = d.receipt.verify().map_err(|source| DisputeError::Receipt {
        which: "receipt",
        source,
    })?;
    let challenge = crate::withholding::WithholdingChallenge {
        challenger: d.challenger,
        bond: d.bond,
        signature: d.signature,
        receipt,
        demand: d.demand,
    };
    let now = (st.clock)();
    Ok(Json(st.verifier.dispute_withholding(challenge, now).await?))
}

async fn post_answer(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<DisputeStatus>, ApiError> {
    dispute_id_param(&id)?;
    let answer: crate::withholding::Answer =
        json_body_up_to(body, crate::withholding::MAX_ANSWER_BYTES)?;
    let now = (st.clock)();
    Ok(Json(
        st.verifier.answer_withholding(&id, answer, now).await?,
    ))
}

/// The challenge a result-dispute body describes (the receipt and spec parsed, the input
/// decoded; nothing checked against the ledger yet).
fn result_challenge(d: ResultDisputeBody) -> Result<ResultChallenge, ApiError> {
    use base64::Engine as _;
    let receipt = d.receipt.verify().map_err(|source| DisputeError::Receipt {
        which: "receipt",
        source,
    })?;
    let spec_bytes = serde_json::to_vec(&d.spec).map_err(|e| ApiError::internal(&e))?;
    let spec = vouch_proto::JobSpec::from_json(&spec_bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_spec",
            format!("spec is not a valid job spec (SPEC.md §2): {e}"),
        )
        .param("spec")
    })?;
    let input = base64::engine::general_purpose::STANDARD
        .decode(d.input_base64.as_bytes())
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_value",
                format!("input_base64 is not base64: {e}"),
            )
            .param("input_base64")
        })?;
    let challenge = ResultChallenge {
        challenger: d.challenger,
        bond: d.bond,
        signature: d.signature,
        receipt,
        spec,
        input: input.into(),
    };
    Ok(challenge)
}

/// `GET /v1/beacon/{epoch}`: the verifier's beacon for an epoch that has ended (SPEC.md
/// §11.3). The signature is deterministic, so asking twice gives the same answer; it is
/// never given out before the epoch's end, so nobody — an operator signing a receipt in
/// that epoch included — can know it earlier (short of the verifier's key).
async fn get_beacon(State(st): State<ApiState>, Path(epoch): Path<String>) -> Response {
    match epoch.parse::<u64>() {
        Ok(epoch) => beacon_answer(&st, epoch),
        Err(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!("epoch {epoch:?} is not a whole number"),
        )
        .param("epoch")
        .into_response(),
    }
}

/// `GET /v1/beacon`: the beacon of the last epoch that has ended.
async fn get_latest_beacon(State(st): State<ApiState>) -> Response {
    let current = vouch_proto::epoch_of((st.clock)(), st.beacon_epoch_ms);
    // In epoch 0 (a clock at 1970) none has ended: ask for 0, which answers `not_yet`.
    beacon_answer(&st, current.saturating_sub(1))
}

/// The beacon of `epoch` if it has ended; 425 `not_yet` (with `available_at_ms`) if not.
fn beacon_answer(st: &ApiState, epoch: u64) -> Response {
    use ed25519_dalek::Signer as _;
    let epoch_ms = st.beacon_epoch_ms;
    let now = (st.clock)();
    let Some(available_at_ms) = vouch_proto::epoch_end_ms(epoch, epoch_ms) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!("epoch {epoch} of {epoch_ms} ms ends after the year 584 million"),
        )
        .param("epoch")
        .into_response();
    };
    if now < available_at_ms {
        // ApiError's shape, with when to ask again.
        let body = json!({"error": {
            "message": format!(
                "epoch {epoch} has not ended: its beacon is revealed at {available_at_ms} ms \
                 (now {now} ms)"
            ),
            "type": "invalid_request_error",
            "param": "epoch",
            "code": "not_yet",
            "available_at_ms": available_at_ms,
            "epoch_ms": epoch_ms,
        }});
        return (StatusCode::TOO_EARLY, Json(body)).into_response();
    }
    let network = st.verifier.network();
    let signature = st
        .verifier
        .admin()
        .sign(&vouch_proto::beacon_message(&network, epoch))
        .to_bytes();
    Json(json!({
        "epoch": epoch,
        "epoch_ms": epoch_ms,
        "signature": hex::encode(signature),
        "beacon": hex::encode(vouch_proto::beacon_of(&signature)),
    }))
    .into_response()
}
