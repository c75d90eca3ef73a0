//! Serving the API on a socket until shutdown.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::{router, ApiState};

/// How long in-flight requests may take to finish after shutdown was asked for.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves [`router`] on `listener` until `shutdown` completes, then stops accepting and
/// lets in-flight requests finish for at most [`DRAIN_TIMEOUT`]. A slash in flight is
/// either committed or rolled back by SQLite, never half-applied.
pub async fn run(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(());
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        res = &mut server => return res,
        _ = stop_rx => {}
    }
    match tokio::time::timeout(DRAIN_TIMEOUT, server).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(target: "vouch_verifier::server", "requests still running after the drain timeout; exiting");
            Ok(())
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!(target: "vouch_verifier::server", "shutting down");
}
