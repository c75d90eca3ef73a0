//! The verifier on the peer-to-peer network: it hears every receipt operators gossip, keeps
//! the network's operator registry in step with its own ledger, and publishes its slash
//! events (`slash`, and `close_dispute` with a slash) as signed verdicts (SPEC §10.6) so
//! nodes stop accepting a jailed operator at once.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::{Signer as _, SigningKey};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use vouch_net::libp2p::Multiaddr;
use vouch_net::{
    Delivered, GossipValidator, NetConfig, NetError, Network, NetworkHandle, Registry, TopicKind,
    VerifierKey,
};
use vouch_proto::{OperatorKey, SignedVerdict, MAX_VERDICT_BODY};

use crate::disputes::Verifier;

/// How many gossiped receipts the verifier keeps in memory for `GET /v1/receipts`.
pub const RECENT_RECEIPTS: usize = 10_000;

/// A receipt heard on the network.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HeardReceipt {
    /// The receipt's JSON view.
    pub receipt: vouch_proto::ReceiptJson,
    /// Arrival time, ms since the epoch.
    pub received_at_ms: u64,
    /// The peer it arrived from.
    pub via: String,
}

/// How the verifier joins the network.
#[derive(Debug, Clone, Default)]
pub struct GossipOptions {
    /// Listen multiaddrs (empty: the verifier does not join).
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start.
    pub bootstrap: Vec<Multiaddr>,
    /// mDNS discovery.
    pub mdns: bool,
    /// A SQLite file that keeps the heard jobs with a value at risk across restarts
    /// (`open-jobs.sqlite` in the data directory); `None`: memory only.
    pub open_jobs: Option<std::path::PathBuf>,
}

/// The verifier's network side.
#[allow(missing_debug_implementations)]
pub struct VerifierNet {
    /// Handle to the network task.
    pub net: NetworkHandle,
    recent: Mutex<VecDeque<HeardReceipt>>,
    heard: std::sync::atomic::AtomicU64,
    /// Heard receipts with a value at risk, by job id: (operator, value, issued_at_ms).
    open: Mutex<std::collections::HashMap<[u8; 32], OpenJob>>,
    /// Spec fetches in flight (to read each heard job's value at risk).
    pricing: Arc<tokio::sync::Semaphore>,
    /// Heard receipts whose spec could not be fetched or was wrong.
    unpriced: std::sync::atomic::AtomicU64,
    /// Where `open` is kept across restarts.
    store: Option<Mutex<rusqlite::Connection>>,
}

/// Opens (creating it) the file of heard open jobs and reads them back.
fn open_store(
    path: &std::path::Path,
) -> rusqlite::Result<(
    rusqlite::Connection,
    std::collections::HashMap<[u8; 32], OpenJob>,
)> {
    let conn = rusqlite::Connection::open(path)?;
    // Figures, not funds: a power cut may lose the last few, which are heard again or
    // expire with the challenge window anyway.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS open_jobs (
             job_id BLOB PRIMARY KEY,
             operator BLOB NOT NULL,
             value TEXT NOT NULL,
             issued_at_ms INTEGER NOT NULL
         )",
    )?;
    let mut open = std::collections::HashMap::new();
    {
        let mut stmt =
            conn.prepare("SELECT job_id, operator, value, issued_at_ms FROM open_jobs")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (job, op, value, at) = row?;
            let (Ok(job), Ok(op), Ok(value)) = (
                <[u8; 32]>::try_from(job.as_slice()),
                <[u8; 32]>::try_from(op.as_slice()),
                value.parse::<u128>(),
            ) else {
                continue;
            };
            open.insert(
                job,
                OpenJob {
                    operator: OperatorKey(op),
                    value,
                    issued_at_ms: u64::try_from(at).unwrap_or(0),
                },
            );
        }
    }
    Ok((conn, open))
}

/// A heard receipt whose job declared a value at risk.
#[derive(Debug, Clone, Copy)]
struct OpenJob {
    operator: OperatorKey,
    value: u128,
    issued_at_ms: u64,
}

/// Most heard jobs kept for the open value at risk (oldest dropped first).
pub const MAX_OPEN_JOBS: usize = 100_000;
/// Spec fetches at once; receipts heard while all are busy are not priced.
pub const MAX_PRICING_FETCHES: usize = 8;

impl VerifierNet {
    /// Receipts heard, newest last, at most `limit`.
    pub fn recent(&self, limit: usize) -> Vec<HeardReceipt> {
        let r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        r.iter().rev().take(limit).rev().cloned().collect()
    }

    /// Receipts heard since start.
    pub fn heard(&self) -> u64 {
        self.heard.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Heard receipts not priced (spec unavailable, mismatched, or fetchers busy).
    pub fn unpriced(&self) -> u64 {
        self.unpriced.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Per operator: how many heard jobs with a value at risk are still inside the
    /// challenge window at `now_ms`, and their summed value at risk.
    pub fn open_value_at_risk(
        &self,
        now_ms: u64,
        window_ms: u64,
    ) -> std::collections::HashMap<OperatorKey, (usize, u128)> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let before = open.len();
        open.retain(|_, j| j.issued_at_ms.saturating_add(window_ms) > now_ms);
        if open.len() != before {
            self.persist(|c| {
                c.execute(
                    "DELETE FROM open_jobs WHERE issued_at_ms + ?1 <= ?2",
                    rusqlite::params![
                        i64::try_from(window_ms).unwrap_or(i64::MAX),
                        i64::try_from(now_ms).unwrap_or(i64::MAX)
                    ],
                )
            });
        }
        let mut out: std::collections::HashMap<OperatorKey, (usize, u128)> = Default::default();
        for j in open.values() {
            let e = out.entry(j.operator).or_default();
            e.0 += 1;
            e.1 = e.1.saturating_add(j.value);
        }
        out
    }

    /// Runs `f` on the open-jobs file, if there is one; a failure is logged (the figures
    /// in memory stay right).
    fn persist(&self, f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<usize>) {
        if let Some(store) = &self.store {
            let conn = store.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = f(&conn) {
                tracing::warn!(target: "vouch_verifier::gossip", %e, "cannot update the open-jobs file");
            }
        }
    }

    /// Fetches the spec of a heard receipt's job (from the peer that forwarded it, then
    /// others) to learn its value at risk.
    fn price(self: &Arc<Self>, receipt: &vouch_proto::Receipt, via: vouch_net::libp2p::PeerId) {
        let job_id = receipt.job_id;
        if self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&job_id.0)
        {
            return;
        }
        let Ok(permit) = self.pricing.clone().try_acquire_owned() else {
            self.unpriced
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        };
        let (operator, issued_at_ms, image, input) = (
            receipt.operator,
            receipt.issued_at_ms,
            receipt.image,
            receipt.input_digest,
        );
        let this = self.clone();
        tokio::spawn(async move {
            let spec = this
                .net
                .fetch_from_any(via, job_id.0, 4)
                .await
                .ok()
                .and_then(|b| vouch_proto::JobSpec::from_json(&b).ok())
                .filter(|s| {
                    s.job_id().ok() == Some(job_id) && s.image == image && s.input_digest == input
                });
            drop(permit);
            let Some(spec) = spec else {
                this.unpriced
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return;
            };
            if spec.value_at_risk.0 == 0 {
                return;
            }
            let mut open = this.open.lock().unwrap_or_else(|p| p.into_inner());
            if open.len() >= MAX_OPEN_JOBS {
                if let Some(oldest) = open
                    .iter()
                    .min_by_key(|(_, j)| j.issued_at_ms)
                    .map(|(k, _)| *k)
                {
                    open.remove(&oldest);
                    this.persist(|c| {
                        c.execute("DELETE FROM open_jobs WHERE job_id = ?1", [oldest.to_vec()])
                    });
                }
            }
            open.insert(
                job_id.0,
                OpenJob {
                    operator,
                    value: spec.value_at_risk.0,
                    issued_at_ms,
                },
            );
            this.persist(|c| {
                c.execute(
                    "INSERT OR REPLACE INTO open_jobs (job_id, operator, value, issued_at_ms) \
                     VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![
                        job_id.0.to_vec(),
                        operator.0.to_vec(),
                        spec.value_at_risk.0.to_string(),
                        i64::try_from(issued_at_ms).unwrap_or(i64::MAX)
                    ],
                )
            });
        });
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Active operators according to the ledger.
fn active_operators(verifier: &Verifier) -> crate::Result<HashSet<OperatorKey>> {
    let ledger = verifier.ledger();
    let now = now_ms();
    let snap = ledger.snapshot()?;
    let mut out = HashSet::new();
    for key in snap.operators.keys() {
        if !ledger.is_jailed(key, now)? {
            out.insert(OperatorKey(key.0));
        }
    }
    Ok(out)
}

/// Joins the network and starts the registry, verdict and inbound tasks; they end when
/// `stop` turns true.
pub async fn start(
    verifier: Arc<Verifier>,
    admin: SigningKey,
    identity: vouch_net::libp2p::identity::Keypair,
    opts: GossipOptions,
    stop: watch::Receiver<bool>,
) -> Result<(Arc<VerifierNet>, Vec<JoinHandle<()>>), NetError> {
    let network = verifier.network();
    let registry = Registry::default();
    let v = verifier.clone();
    let initial = tokio::task::spawn_blocking(move || active_operators(&v))
        .await
        .map_err(|e| NetError::Config(e.to_string()))?
        .map_err(|e| NetError::Config(format!("reading the ledger: {e}")))?;
    *registry.write().unwrap_or_else(|p| p.into_inner()) = initial;
    let me = OperatorKey(admin.verifying_key().to_bytes());
    let vk: VerifierKey = Arc::new(std::sync::RwLock::new(Some(me)));
    let mut nc = NetConfig::new(network);
    nc.listen = opts.listen;
    nc.bootstrap = opts.bootstrap;
    nc.mdns = opts.mdns;
    nc.colocation_whitelist
        .insert(std::net::IpAddr::from([127, 0, 0, 1]));
    let (net, delivered) = Network::spawn(
        nc,
        identity,
        GossipValidator::new(network, registry.clone(), vk),
    )
    .await?;
    tracing::info!(target: "vouch_verifier::gossip", peer_id = %net.local_peer_id(), addrs = ?net.listen_addrs().await.unwrap_or_default(), "joined the peer-to-peer network");
    let (store, open) = match &opts.open_jobs {
        Some(path) => {
            let (conn, open) = open_store(path)
                .map_err(|e| NetError::Config(format!("{}: {e}", path.display())))?;
            tracing::info!(target: "vouch_verifier::gossip", path = %path.display(), jobs = open.len(), "heard open jobs read back");
            (Some(Mutex::new(conn)), open)
        }
        None => (None, Default::default()),
    };
    let vnet = Arc::new(VerifierNet {
        net,
        recent: Mutex::new(VecDeque::new()),
        heard: Default::default(),
        open: Mutex::new(open),
        pricing: Arc::new(tokio::sync::Semaphore::new(MAX_PRICING_FETCHES)),
        unpriced: Default::default(),
        store,
    });
    let tasks = vec![
        tokio::spawn(inbound(vnet.clone(), delivered, stop.clone())),
        tokio::spawn(registry_and_verdicts(
            verifier,
            admin,
            vnet.clone(),
            registry,
            stop,
        )),
    ];
    Ok((vnet, tasks))
}

async fn inbound(
    vnet: Arc<VerifierNet>,
    mut delivered: mpsc::Receiver<Delivered>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let d = tokio::select! {
            _ = stop.changed() => break,
            d = delivered.recv() => match d { Some(d) => d, None => break },
        };
        if d.topic_kind != TopicKind::Receipts {
            continue;
        }
        let Some(r) = d.receipt else { continue };
        vnet.heard
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        vnet.price(&r.receipt, d.via);
        let mut recent = vnet.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.push_back(HeardReceipt {
            receipt: r.to_json(),
            received_at_ms: now_ms(),
            via: d.via.to_string(),
        });
        while recent.len() > RECENT_RECEIPTS {
            recent.pop_front();
        }
    }
}

/// Every second: the registry from the ledger, and every new slash event as a verdict.
async fn registry_and_verdicts(
    verifier: Arc<Verifier>,
    admin: SigningKey,
    vnet: Arc<VerifierNet>,
    registry: Registry,
    mut stop: watch::Receiver<bool>,
) {
    let v = verifier.clone();
    let mut next =
        tokio::task::spawn_blocking(move || v.ledger().snapshot().map(|s| s.event_count))
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or(0);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let v = verifier.clone();
        let from = next;
        let read = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::LedgerError>((active_operators(&v)?, v.ledger().events_from(from, 256)?))
        })
        .await;
        let Ok(Ok((active, events))) = read else {
            continue;
        };
        *registry.write().unwrap_or_else(|p| p.into_inner()) = active;
        for e in events {
            next = e.seq + 1;
            // Slashes: `slash` events, and disputes decided with one.
            let slashes = e.kind == "slash"
                || (e.kind == "close_dispute"
                    && e.payload.pointer("/result/verdict") == Some(&"slashed".into()));
            if !slashes {
                continue;
            }
            let Ok(body) = serde_json::to_vec(&e) else {
                continue;
            };
            if body.len() > MAX_VERDICT_BODY {
                tracing::warn!(target: "vouch_verifier::gossip", seq = e.seq, "slash event too large to gossip; nodes learn it from the registry");
                continue;
            }
            let mut verdict = SignedVerdict {
                network_id: verifier.network(),
                verifier: OperatorKey(admin.verifying_key().to_bytes()),
                sequence: e.seq,
                body,
                signature: [0; 64],
            };
            verdict.signature = admin.sign(&verdict.signing_root()).to_bytes();
            match vnet
                .net
                .publish(TopicKind::Verdicts, verdict.encode())
                .await
            {
                Ok(()) | Err(NetError::NoPeers) | Err(NetError::Duplicate) => {
                    tracing::info!(target: "vouch_verifier::gossip", seq = e.seq, "verdict published")
                }
                Err(err) => {
                    tracing::warn!(target: "vouch_verifier::gossip", seq = e.seq, error = %err, "cannot publish verdict")
                }
            }
        }
    }
}
