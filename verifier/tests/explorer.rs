//! The explorer page is served by the verifier itself, with the assets it links and a
//! Content Security Policy that keeps it to this origin. (What it shows is checked in a
//! real headless Chromium against the devnet: tests/explorer/test_explorer.py.)

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use vouch_verifier::{router, ApiState, DisputeConfig, MemoryLedger, Verifier};

async fn fetch(uri: &str) -> (StatusCode, Option<String>, Option<String>, String) {
    let ledger = Arc::new(MemoryLedger::new(config(), NET, admin()));
    let verifier = Verifier::new(ledger, admin(), network(), DisputeConfig::default());
    let app = router(ApiState::new(Arc::new(verifier)));
    let resp = app
        .oneshot(Request::get(uri).body(Body::empty()).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let h = |name: header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (ct, csp) = (h(header::CONTENT_TYPE), h(header::CONTENT_SECURITY_POLICY));
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, ct, csp, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    for uri in ["/", "/explorer"] {
        let (status, ct, csp, body) = fetch(uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(ct.as_deref(), Some("text/html; charset=utf-8"), "{uri}");
        let csp = csp.expect("CSP");
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        // Everything it loads is its own, and there is no inline script or style.
        assert!(
            body.contains(r#"<script src="/explorer/app.js"></script>"#),
            "{body}"
        );
        assert!(body.contains(r#"href="/explorer/style.css""#), "{body}");
        assert!(
            !body.contains("<script>") && !body.contains("style="),
            "{body}"
        );
        for table in ["operators", "disputes", "receipts", "events"] {
            assert!(
                body.contains(&format!(r#"<table id="{table}">"#)),
                "{table}"
            );
        }
    }
    let (status, ct, _, js) = fetch("/explorer/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct.as_deref(), Some("text/javascript; charset=utf-8"));
    // Values are rendered as text, never parsed as HTML.
    assert!(
        js.contains("textContent") && !js.contains("innerHTML"),
        "app.js"
    );
    for path in [
        "/v1/security",
        "/v1/registry",
        "/v1/disputes",
        "/v1/receipts",
        "/v1/events?tail=",
    ] {
        assert!(js.contains(path), "app.js reads {path}");
    }
    let (status, ct, _, _) = fetch("/explorer/style.css").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct.as_deref(), Some("text/css; charset=utf-8"));
    let (status, _, _, body) = fetch("/explorer/nothing.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
