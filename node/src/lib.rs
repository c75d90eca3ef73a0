//! `vouch-node`: the Vouch operator node.
//!
//! # Layout
//!
//! * [`api`] — the axum HTTP API. Handlers call into [`node::Node`].
//! * [`node`] — the job service. `submit` resolves the image (never pulling), builds the
//!   canonical [`vouch_proto::JobSpec`], persists the job in the [`store::JobStore`] and puts
//!   its id on a bounded queue. The [`node::Worker`] task takes ids off the queue, at most
//!   `max_concurrent_jobs` at a time, and spawns one task per job that runs it through the
//!   [`executor::Executor`] and signs the result through the [`signer::SigningStore`].
//! * [`executor`] — Docker (bollard) in production, an in-memory executor for tests.
//! * [`signer`] — signing protection: the only place a signature is made, after the
//!   history has durably recorded what is about to be signed.
//! * [`store`] — SQLite job database; jobs survive restarts and are re-run by
//!   [`node::Node::recover`].
//!
//! Data flow: `POST /v1/jobs` → job id → queue → container → output → receipt (signed) →
//! `GET /v1/jobs/{id}`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), vouch_node::error::NodeError> {
//! let config = vouch_node::config::Config::default();
//! vouch_node::run(config, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

pub mod api;
pub mod config;
pub mod disputes;
pub mod error;
pub mod executor;
pub mod exposure;
pub mod keys;
pub mod metrics;
pub mod node;
pub mod openai;
pub mod p2p;
pub mod replication;
pub mod signer;
pub mod store;
pub mod withholding;

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::error::NodeError;
use crate::executor::{DockerExecutor, Executor};
use crate::node::Node;
use crate::signer::SigningStore;
use crate::store::JobStore;

/// File names inside the data directory.
pub mod paths {
    /// Lock held while a node runs (and by offline tools).
    pub const LOCK: &str = "node.lock";
    /// Job database.
    pub const JOBS: &str = "jobs.sqlite";
    /// Signing-protection history.
    pub const SIGNING: &str = "signing-history.sqlite";
}

/// Takes the data directory's exclusive lock, so that two nodes (or a node and an offline
/// tool such as `signing-history import`) never use one history at once.
pub fn lock_data_dir(dir: &Path) -> Result<File, NodeError> {
    std::fs::create_dir_all(dir).map_err(|e| NodeError::io(dir, e))?;
    let path = dir.join(paths::LOCK);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| NodeError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(NodeError::Locked(PathBuf::from(dir))),
        Err(std::fs::TryLockError::Error(e)) => Err(NodeError::io(&path, e)),
    }
}

/// Opens the signing store of a data directory (caller holds the lock).
pub fn open_signer(config: &Config) -> Result<SigningStore, NodeError> {
    let key = keys::load(&config.key_path())?;
    Ok(SigningStore::open(
        &config.data_dir.join(paths::SIGNING),
        key,
        config.network_id(),
    )?)
}

/// Runs a node until `shutdown` resolves: HTTP API, job worker, Docker executor.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let _lock = lock_data_dir(&config.data_dir)?;
    let signer = open_signer(&config)?;
    let store = JobStore::open(&config.data_dir.join(paths::JOBS))?;
    let node_label = signer.operator().to_hex()[..16].to_string();
    let executor = DockerExecutor::new(config.docker_endpoint(), node_label);
    match executor.health().await {
        Ok(()) => match executor.sweep_orphans().await {
            Ok(n) if n > 0 => {
                tracing::info!(target: "vouch::executor", removed = n, "removed containers left by a previous run")
            }
            _ => {}
        },
        Err(e) => {
            tracing::warn!(target: "vouch::executor", %e, "Docker is not reachable yet; jobs will fail until it is")
        }
    }
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| NodeError::Listen {
            addr: config.listen.to_string(),
            source: e,
        })?;
    let (node, worker) = Node::new(
        config,
        Arc::new(store),
        Arc::new(signer),
        Arc::new(executor),
    );
    serve(node, worker, listener, shutdown).await
}

/// Serves an already-built node on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    node: Arc<Node>,
    worker: node::Worker,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    if let Some(f) = node.config.fault {
        tracing::warn!(target: "vouch::fault", fault = ?f, "FAULT INJECTION IS ON: this node misbehaves on purpose and will be slashed; never use this with real stake");
    }
    let requeued = node.recover().await?;
    let addr = listener
        .local_addr()
        .map_err(|e| NodeError::io("listener", e))?;
    tracing::info!(
        target: "vouch::node",
        %addr,
        operator = %node.signer.operator(),
        network = %node.config.network,
        requeued,
        "vouch-node listening"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker_stop = {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let p2p_tasks = match p2p::P2p::start(&node, stop_rx.clone()).await? {
        Some((p2p, tasks)) => {
            let _ = node.p2p.set(p2p);
            tasks
        }
        None => vec![],
    };
    let worker = tokio::spawn(worker.run(worker_stop));
    // Orphans of a previous process can appear after the start-up sweep (the daemon may
    // finish a creation the dead process had asked for), so look again now and then.
    let orphans = {
        let (node, mut stop) = (node.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = every.tick() => {
                        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(10), node.executor.sweep_orphans()).await {
                            if n > 0 {
                                tracing::info!(target: "vouch::executor", removed = n, "removed containers left by a previous run");
                            }
                        }
                    }
                }
            }
        })
    };
    // Withholding disputes against this operator are answered from the job database.
    let withholding = node
        .config
        .p2p
        .verifier_url
        .clone()
        .map(|url| tokio::spawn(withholding::run(node.clone(), url, stop_rx.clone())));
    let app = api::router(node.clone());
    let http = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!(target: "vouch::node", "shutting down");
        let _ = stop_tx.send(true);
    });
    let served = http.await;
    let _ = worker.await;
    let _ = orphans.await;
    if let Some(w) = withholding {
        let _ = w.await;
    }
    for t in p2p_tasks {
        let _ = t.await;
    }
    if let Some(p2p) = node.p2p.get() {
        let _ = tokio::time::timeout(Duration::from_secs(5), p2p.net.shutdown()).await;
    }
    served.map_err(|e| NodeError::io("http server", e))
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
