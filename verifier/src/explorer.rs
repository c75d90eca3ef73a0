//! The explorer (`GET /` and `GET /explorer`): one page of plain HTML, CSS and JavaScript,
//! no build step, compiled into the binary. The page reads the verifier's own JSON API
//! from the browser — `/v1/security` (operators with stake, status and security figures),
//! `/v1/registry`, `/v1/receipts` (recent gossiped receipts), `/v1/disputes` (disputes and
//! verdicts), `/v1/events?tail=N` (the ledger log) — and refreshes every few seconds. It
//! renders every value as text (never as HTML), and is served with a Content Security
//! Policy that allows only this origin's script, style and API.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::api::ApiState;

/// The page.
pub const INDEX_HTML: &str = include_str!("../explorer/index.html");
/// Its script.
pub const APP_JS: &str = include_str!("../explorer/app.js");
/// Its style sheet.
pub const STYLE_CSS: &str = include_str!("../explorer/style.css");

/// What the page may load: only this origin's script, style and API.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
                       form-action 'none'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `/`, `/explorer` and the page's two assets.
pub fn routes() -> Router<ApiState> {
    let page = || async { asset(INDEX_HTML, "text/html; charset=utf-8") };
    Router::new()
        .route("/", get(page))
        .route("/explorer", get(page))
        .route(
            "/explorer/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/explorer/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
}
