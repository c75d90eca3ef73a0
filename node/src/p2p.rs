//! The node on the peer-to-peer network: publishes its receipts, records everyone else's,
//! serves specs/inputs/outputs by digest, and runs the commit-reveal protocol of replicated
//! jobs.
//!
//! The swarm itself lives in `vouch-net`'s network task; this module holds its handle and
//! runs three tasks of its own: the inbound loop (everything the network delivers), the
//! registry refresher (operators from the verifier, when one is configured) and the reveal
//! ticker (replicas whose reveal is due).

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use vouch_net::libp2p::{Multiaddr, PeerId};
use vouch_net::{
    BlobStore, Delivered, GossipValidator, NetConfig, NetError, Network, NetworkHandle, Registry,
    TopicKind, VerifierKey,
};
use vouch_proto::{
    commitment_value, select_replicas, JobAnnouncement, JobId, JobMessage, JobSpec, OperatorKey,
    ReplicaCommit, ReplicaReveal, SignedReceipt, SignedVerdict, KIND_COMMIT, KIND_REVEAL,
    MAX_INLINE_INPUT,
};

use crate::config::Config;
use crate::disputes::{self, status, Challenger, DisputeView, Posted};
use crate::error::NodeError;
use crate::node::Node;
use crate::replication::{self, Report};
use crate::store::{now_ms, JobStore, ReplicaDispute};

/// File (in the data directory) holding the node's libp2p identity key.
pub const P2P_KEY: &str = "p2p-key";

/// The operators whose gossip is accepted, with their selection weights.
#[derive(Debug, Default)]
pub struct Operators {
    /// Keys for the validator.
    pub set: Registry,
    /// (key, weight) for replica selection; weight is priced stake, or 1 for a static list.
    pub weights: RwLock<Vec<(OperatorKey, u128)>>,
}

impl Operators {
    /// Replaces the registry.
    pub fn replace(&self, ops: Vec<(OperatorKey, u128)>) {
        let set: HashSet<_> = ops.iter().map(|(k, _)| *k).collect();
        match self.set.write() {
            Ok(mut s) => *s = set,
            Err(p) => *p.into_inner() = set,
        }
        match self.weights.write() {
            Ok(mut w) => *w = ops,
            Err(p) => *p.into_inner() = ops,
        }
    }

    /// The current (key, weight) list.
    pub fn weighted(&self) -> Vec<(OperatorKey, u128)> {
        match self.weights.read() {
            Ok(w) => w.clone(),
            Err(p) => (**p.get_ref()).clone(),
        }
    }
}

/// The running network side of a node.
#[allow(missing_debug_implementations)]
pub struct P2p {
    /// Handle to the network task.
    pub net: NetworkHandle,
    /// Registered operators.
    pub operators: Arc<Operators>,
    /// The verifier whose verdicts are accepted.
    pub verifier_key: VerifierKey,
    /// Where the registry comes from: `verifier <url>` or `static allow-list`.
    pub registry_source: String,
    /// Last error fetching the registry, if the last attempt failed.
    pub registry_error: RwLock<Option<String>>,
    /// Who raises disputes about disagreeing replicas, if configured.
    pub challenger: Option<Challenger>,
    refresh: Notify,
}

/// The blobs a node serves: job specs (canonical JSON), inputs and outputs, by SHA-256.
struct NodeBlobs {
    store: Arc<JobStore>,
    /// `--fault withhold`: outputs and traces are not served.
    withhold: bool,
}

impl BlobStore for NodeBlobs {
    fn get(&self, digest: &[u8; 32]) -> Option<Vec<u8>> {
        if self.withhold
            && matches!(
                self.store.blob_kind(digest).ok().flatten().as_deref(),
                Some("output" | "trace")
            )
        {
            tracing::warn!(target: "vouch::fault", digest = %hex::encode(digest), "FAULT INJECTION: withholding an output from a peer on purpose (--fault withhold)");
            return None;
        }
        self.store.blob_by_digest(digest).ok().flatten()
    }
}

fn parse_addrs(what: &str, addrs: &[String]) -> Result<Vec<Multiaddr>, NodeError> {
    addrs
        .iter()
        .map(|a| {
            a.parse()
                .map_err(|e| NodeError::Config(format!("{what}: {a:?} is not a multiaddr: {e}")))
        })
        .collect()
}

fn parse_key(s: &str) -> Result<OperatorKey, NodeError> {
    s.parse()
        .map_err(|_| NodeError::Config(format!("{s:?} is not an operator key (64 hex digits)")))
}

/// The verifier's registry as `GET /v1/registry` serves it.
#[derive(Debug, serde::Deserialize)]
struct RegistryDoc {
    verifier: OperatorKey,
    network_id: vouch_proto::NetworkId,
    operators: Vec<RegistryEntry>,
    /// The service's slack γ (admission by stake); older verifiers omit it.
    #[serde(default = "default_gamma_ppm")]
    gamma_ppm: u32,
    #[serde(default)]
    challenge_window_ms: u64,
    /// Share of stake a wrong result slashes; older verifiers omit it (the default half).
    #[serde(default = "default_slash_ppm")]
    wrong_result_slash_ppm: u32,
}

fn default_slash_ppm() -> u32 {
    500_000
}

fn default_gamma_ppm() -> u32 {
    100_000
}

/// What one registry read gives: the verifier key, the active operators with their
/// selection weights, and this node's own stake for admission.
type RegistryRead = (
    OperatorKey,
    Vec<(OperatorKey, u128)>,
    crate::exposure::StakeView,
);

#[derive(Debug, serde::Deserialize)]
struct RegistryEntry {
    operator: OperatorKey,
    active: bool,
    stake_value: String,
}

async fn fetch_registry(
    http: &reqwest::Client,
    url: &str,
    network: vouch_proto::NetworkId,
    me: OperatorKey,
) -> Result<RegistryRead, String> {
    let url = format!("{}/v1/registry", url.trim_end_matches('/'));
    let resp = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status()));
    }
    let doc: RegistryDoc = resp
        .json()
        .await
        .map_err(|e| format!("GET {url}: not a registry document: {e}"))?;
    if doc.network_id != network {
        return Err(format!(
            "the verifier at {url} serves network {}, this node is on {network}",
            doc.network_id
        ));
    }
    let mut mine = crate::exposure::StakeView {
        stake_value: 0,
        active: false,
        gamma_ppm: doc.gamma_ppm,
        challenge_window_ms: doc.challenge_window_ms,
        slash_ppm: doc.wrong_result_slash_ppm,
    };
    if let Some(e) = doc.operators.iter().find(|e| e.operator == me) {
        mine.stake_value = e.stake_value.parse::<u128>().unwrap_or(0);
        mine.active = e.active;
    }
    let ops = doc
        .operators
        .into_iter()
        .filter(|e| e.active)
        .map(|e| {
            (
                e.operator,
                e.stake_value.parse::<u128>().unwrap_or(0).max(1),
            )
        })
        .collect();
    Ok((doc.verifier, ops, mine))
}

impl P2p {
    /// Joins the network if `config.p2p.listen` is set; returns the network side and its
    /// tasks, which end when `stop` turns true.
    pub async fn start(
        node: &Arc<Node>,
        stop: watch::Receiver<bool>,
    ) -> Result<Option<(Arc<P2p>, Vec<JoinHandle<()>>)>, NodeError> {
        let config: &Config = &node.config;
        let pc = &config.p2p;
        if pc.listen.is_empty() {
            return Ok(None);
        }
        let key = vouch_net::load_or_create_identity(&config.data_dir.join(P2P_KEY))
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let network_id = config.network_id();
        let mut nc = NetConfig::new(network_id);
        nc.listen = parse_addrs("p2p.listen", &pc.listen)?;
        nc.bootstrap = parse_addrs("p2p.bootstrap", &pc.bootstrap)?;
        nc.mdns = pc.mdns;
        nc.sync_interval = Duration::from_millis(pc.sync_interval_ms);
        // Several nodes on one host (a devnet, tests) share 127.0.0.1.
        nc.colocation_whitelist
            .insert(std::net::IpAddr::from([127, 0, 0, 1]));

        let operators = Arc::new(Operators::default());
        let verifier_key: VerifierKey = Arc::default();
        if let Some(k) = &pc.verifier_key {
            *verifier_key.write().unwrap_or_else(|p| p.into_inner()) = Some(parse_key(k)?);
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| NodeError::Config(format!("http client: {e}")))?;
        let mut registry_error = None;
        let registry_source = match &pc.verifier_url {
            Some(url) => {
                match fetch_registry(&http, url, network_id, node.signer.operator()).await {
                    Ok((vk, ops, mine)) => {
                        set_verifier(&verifier_key, vk);
                        operators.replace(ops);
                        node.exposure.set_stake(mine);
                    }
                    Err(e) => {
                        tracing::warn!(target: "vouch::p2p", error = %e, "cannot fetch the operator registry yet; gossip from every operator is refused until it can");
                        registry_error = Some(e);
                    }
                }
                format!("verifier {url}")
            }
            None => {
                let mut ops = vec![];
                for k in &pc.operators {
                    ops.push((parse_key(k)?, 1u128));
                }
                if ops.is_empty() {
                    // A lone node on a devnet: at least its own receipts are valid.
                    ops.push((node.signer.operator(), 1));
                    tracing::warn!(target: "vouch::p2p", "no verifier and no operator allow-list: accepting only this node's own gossip (set --operators or --verifier-url)");
                }
                operators.replace(ops);
                "static allow-list".to_string()
            }
        };
        let validator =
            GossipValidator::new(network_id, operators.set.clone(), verifier_key.clone());
        let (net, delivered) = Network::spawn_with_store(
            nc,
            key,
            validator,
            Arc::new(NodeBlobs {
                store: node.store.clone(),
                withhold: config.fault == Some(crate::config::Fault::Withhold),
            }),
        )
        .await
        .map_err(|e| NodeError::Config(format!("peer-to-peer network: {e}")))?;
        let addrs = net.listen_addrs().await.unwrap_or_default();
        tracing::info!(target: "vouch::p2p", peer_id = %net.local_peer_id(), addrs = ?addrs, registry = %registry_source, "joined the peer-to-peer network");
        let challenger = match (&pc.challenger_key, &pc.dispute_bond, &pc.verifier_url) {
            (Some(key), Some(bond), Some(url)) => Some(Challenger::load(key, bond, url)?),
            _ => None,
        };
        let p2p = Arc::new(P2p {
            net,
            operators,
            verifier_key,
            registry_source,
            registry_error: RwLock::new(registry_error),
            challenger,
            refresh: Notify::new(),
        });
        let mut tasks = vec![tokio::spawn(inbound(
            node.clone(),
            p2p.clone(),
            delivered,
            stop.clone(),
        ))];
        if let Some(url) = pc.verifier_url.clone() {
            tasks.push(tokio::spawn(refresh_registry(
                p2p.clone(),
                node.clone(),
                http,
                url,
                network_id,
                Duration::from_millis(pc.registry_refresh_ms),
                stop.clone(),
            )));
        }
        tasks.push(tokio::spawn(dispute_ticker(
            node.clone(),
            p2p.clone(),
            stop.clone(),
        )));
        tasks.push(tokio::spawn(reveal_ticker(node.clone(), p2p.clone(), stop)));
        Ok(Some((p2p, tasks)))
    }

    /// Publishes a receipt this node signed and records it as seen. Never fails the
    /// caller: a receipt that cannot be published now is served to peers by sync later.
    pub async fn publish_receipt(&self, node: &Node, receipt: &SignedReceipt) {
        let store = node.store.clone();
        let r = receipt.clone();
        let _ = tokio::task::spawn_blocking(move || store.record_gossip_receipt(&r, "self")).await;
        match self.net.publish_receipt(receipt).await {
            Ok(()) | Err(NetError::Duplicate) => {}
            Err(NetError::NoPeers) => {
                tracing::debug!(target: "vouch::p2p", "no peers yet; the receipt is served by sync when they connect")
            }
            Err(e) => {
                tracing::warn!(target: "vouch::p2p", error = %e, job_id = %receipt.receipt.job_id, "cannot publish receipt")
            }
        }
    }

    /// The replicas of a job: `k` operators from the registry.
    pub fn select(&self, job_id: &JobId, k: u32) -> Vec<OperatorKey> {
        select_replicas(job_id, &self.operators.weighted(), k as usize)
    }

    /// Announces a replicated job that this node accepted from a client. The caller has
    /// stored it with [`JobStore::insert_replica`] first.
    pub async fn announce(&self, announcement: &JobAnnouncement) -> Result<(), NetError> {
        match self
            .net
            .publish(TopicKind::Jobs, announcement.encode())
            .await
        {
            // Nobody else is here yet: the replicas that join later will not see it, and
            // the report shows them missing after the deadline.
            Ok(()) | Err(NetError::NoPeers) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A summary for `GET /v1/peers`.
    pub async fn peers_view(&self) -> serde_json::Value {
        let peers = self.net.peers().await.unwrap_or_default();
        let mut list = vec![];
        for p in &peers {
            list.push(serde_json::json!({
                "peer_id": p.to_string(),
                "score": self.net.peer_score(*p).await.ok().flatten(),
            }));
        }
        let mesh = self
            .net
            .mesh_peers(TopicKind::Receipts)
            .await
            .unwrap_or_default();
        let jobs_mesh = self
            .net
            .mesh_peers(TopicKind::Jobs)
            .await
            .unwrap_or_default();
        let s = self.net.stats();
        let verifier = match self.verifier_key.read() {
            Ok(k) => *k,
            Err(p) => **p.get_ref(),
        };
        serde_json::json!({
            "peer_id": self.net.local_peer_id().to_string(),
            "listen_addrs": self.net.listen_addrs().await.unwrap_or_default().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "connected": list,
            "receipts_mesh": mesh.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "jobs_mesh": jobs_mesh.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "registry": {
                "source": self.registry_source,
                "operators": self.operators.weighted().iter().map(|(k, w)| serde_json::json!({"operator": k, "weight": w.to_string()})).collect::<Vec<_>>(),
                "verifier": verifier,
                "error": self.registry_error.read().map(|e| e.clone()).unwrap_or(None),
            },
            "messages": {
                "accepted": s.accepted,
                "rejected": {
                    "size": s.rejected_size,
                    "decode": s.rejected_decode,
                    "network": s.rejected_network,
                    "signature": s.rejected_signature,
                    "unregistered": s.rejected_unregistered,
                },
                "ignored": s.ignored,
                "duplicates": s.duplicates,
                "dropped_full": s.dropped_full,
                "synced": s.synced,
                "sync_rejected": s.sync_rejected,
            },
        })
    }
}

fn set_verifier(vk: &VerifierKey, key: OperatorKey) {
    match vk.write() {
        Ok(mut k) => *k = Some(key),
        Err(p) => *p.into_inner() = Some(key),
    }
}

async fn refresh_registry(
    p2p: Arc<P2p>,
    node: Arc<Node>,
    http: reqwest::Client,
    url: String,
    network: vouch_proto::NetworkId,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
            _ = p2p.refresh.notified() => {}
        }
        match fetch_registry(&http, &url, network, node.signer.operator()).await {
            Ok((vk, ops, mine)) => {
                set_verifier(&p2p.verifier_key, vk);
                p2p.operators.replace(ops);
                node.exposure.set_stake(mine);
                if let Ok(mut e) = p2p.registry_error.write() {
                    *e = None;
                }
            }
            Err(e) => {
                tracing::debug!(target: "vouch::p2p", error = %e, "registry refresh failed");
                if let Ok(mut slot) = p2p.registry_error.write() {
                    *slot = Some(e);
                }
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    store: &Arc<JobStore>,
    f: impl FnOnce(&JobStore) -> rusqlite::Result<T> + Send + 'static,
) -> rusqlite::Result<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .unwrap_or_else(|e| {
            Err(rusqlite::Error::InvalidParameterName(format!(
                "database task failed: {e}"
            )))
        })
}

async fn inbound(
    node: Arc<Node>,
    p2p: Arc<P2p>,
    mut delivered: mpsc::Receiver<Delivered>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let d = tokio::select! {
            _ = stop.changed() => break,
            d = delivered.recv() => match d { Some(d) => d, None => break },
        };
        node.metrics
            .p2p_delivered
            .get_or_create(&crate::metrics::TopicLabel {
                topic: d.topic_kind.to_string(),
            })
            .inc();
        let result = match d.topic_kind {
            TopicKind::Receipts => on_receipt(&node, &d).await.map_err(|e| e.to_string()),
            TopicKind::Jobs => on_job_message(&node, &p2p, &d).await,
            TopicKind::Verdicts => {
                if let Ok(v) = SignedVerdict::decode(&d.data) {
                    tracing::info!(target: "vouch::p2p", sequence = v.sequence, body = %String::from_utf8_lossy(&v.body), "verdict from the verifier");
                }
                // A verdict may jail someone: read the registry again now.
                p2p.refresh.notify_one();
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::warn!(target: "vouch::p2p", error = %e, topic = %d.topic_kind, "cannot process a gossip message");
        }
    }
}

async fn on_receipt(node: &Arc<Node>, d: &Delivered) -> rusqlite::Result<()> {
    let Some(receipt) = d.receipt.clone() else {
        return Ok(());
    };
    let issued = receipt.receipt.issued_at_ms;
    let via = d.via.to_string();
    let new = blocking(&node.store, move |s| {
        s.record_gossip_receipt(&receipt, &via)
    })
    .await?;
    if new {
        let delay_ms = now_ms().saturating_sub(issued);
        node.metrics
            .p2p_propagation_seconds
            .observe(delay_ms as f64 / 1000.0);
    }
    Ok(())
}

async fn on_job_message(node: &Arc<Node>, p2p: &Arc<P2p>, d: &Delivered) -> Result<(), String> {
    let msg = JobMessage::decode(&d.data).map_err(|e| e.to_string())?;
    match msg {
        JobMessage::Announce(a) => on_announcement(node, p2p, a, d.via, d.data.clone()).await,
        JobMessage::Commit(c) => {
            let (job, op, data) = (c.job_id, c.operator, d.data.clone());
            blocking(&node.store, move |s| {
                s.record_replica_msg(&job, &op, KIND_COMMIT, &data)
            })
            .await
            .map_err(|e| e.to_string())?;
            // A reveal of ours may be due now.
            try_reveal(node, p2p, c.job_id).await;
            Ok(())
        }
        JobMessage::Reveal(r) => {
            let receipt = r.receipt.clone();
            let (job, op, data) = (
                receipt.receipt.job_id,
                receipt.receipt.operator,
                d.data.clone(),
            );
            let via = d.via.to_string();
            blocking(&node.store, move |s| {
                s.record_replica_msg(&job, &op, KIND_REVEAL, &data)?;
                s.record_gossip_receipt(&receipt, &via)
            })
            .await
            .map_err(|e| e.to_string())?;
            Ok(())
        }
    }
}

async fn on_announcement(
    node: &Arc<Node>,
    p2p: &Arc<P2p>,
    a: JobAnnouncement,
    via: PeerId,
    encoded: Vec<u8>,
) -> Result<(), String> {
    let (spec, job_id) = a.verify().map_err(|e| e.to_string())?;
    let new = blocking(&node.store, move |s| {
        s.insert_replica(&job_id, &encoded, None)
    })
    .await
    .map_err(|e| e.to_string())?;
    if !new {
        return Ok(());
    }
    let selected = p2p.select(&job_id, spec.replicas);
    let me = node.signer.operator();
    if !selected.contains(&me) {
        tracing::debug!(target: "vouch::p2p", %job_id, "replicated job announced; not selected");
        return Ok(());
    }
    let input = if a.input.is_empty() && spec.input_digest != vouch_proto::Digest::of(b"") {
        // Gossip names no author: ask the forwarding peer (often the announcer) first; the
        // announcer and every replica that fetched it already serve it.
        p2p.net
            .fetch_from_any(via, spec.input_digest.0, FETCH_ATTEMPTS)
            .await
            .map_err(|e| format!("cannot fetch the input of {job_id}: {e}"))?
    } else {
        a.input.clone()
    };
    tracing::info!(target: "vouch::p2p", %job_id, replicas = spec.replicas, "selected as a replica; running the job");
    node.accept_replica(job_id, spec, input)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Peers asked for an announced input before giving up.
const FETCH_ATTEMPTS: usize = 8;

/// Called by the node once it has signed the receipt of a replicated job: seals it in a
/// commitment and publishes that, keeping the receipt back until the reveal is due.
pub async fn commit(node: &Node, p2p: &P2p, receipt: SignedReceipt) {
    let job_id = receipt.receipt.job_id;
    let salt: [u8; 32] = rand::random();
    let mut c = ReplicaCommit {
        network_id: node.signer.network_id(),
        job_id,
        operator: node.signer.operator(),
        commitment: commitment_value(&node.signer.operator(), &receipt, &salt),
        signature: [0; 64],
    };
    node.signer.sign_commit(&mut c);
    let reveal = ReplicaReveal { receipt, salt }.encode();
    let commit_msg = c.encode();
    let me = c.operator;
    let stored = {
        let commit_msg = commit_msg.clone();
        blocking(&node.store, move |s| {
            if s.replica(&job_id)?.and_then(|r| r.commit_msg).is_some() {
                return Ok(false);
            }
            s.set_replica_commit(&job_id, &salt, &commit_msg, &reveal)?;
            s.record_replica_msg(&job_id, &me, KIND_COMMIT, &commit_msg)?;
            Ok(true)
        })
        .await
    };
    match stored {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::error!(target: "vouch::p2p", %job_id, error = %e, "cannot record commitment");
            return;
        }
    }
    if let Err(e) = p2p.net.publish(TopicKind::Jobs, commit_msg).await {
        if !matches!(e, NetError::NoPeers | NetError::Duplicate) {
            tracing::warn!(target: "vouch::p2p", %job_id, error = %e, "cannot publish commitment");
        }
    }
    tracing::info!(target: "vouch::p2p", %job_id, "committed to the replicated job's result");
    try_reveal(node, p2p, job_id).await;
}

/// Publishes this node's reveal of `job_id` if it committed and the reveal is due.
async fn try_reveal(node: &Node, p2p: &P2p, job_id: JobId) {
    let state = blocking(&node.store, move |s| {
        Ok((s.replica(&job_id)?, s.replica_msgs(&job_id)?))
    })
    .await;
    let Ok((Some(row), msgs)) = state else {
        return;
    };
    let (Some(reveal), false) = (row.reveal_msg.clone(), row.revealed) else {
        return;
    };
    if node.config.fault == Some(crate::config::Fault::Withhold) {
        tracing::warn!(target: "vouch::fault", %job_id, "FAULT INJECTION: committed but withholding the reveal on purpose (--fault withhold)");
        let _ = blocking(&node.store, move |s| s.set_replica_revealed(&job_id)).await;
        return;
    }
    let Ok(a) = JobAnnouncement::decode(&row.announcement) else {
        return;
    };
    let Ok((spec, _)) = a.verify() else {
        return;
    };
    let selected = p2p.select(&job_id, spec.replicas);
    if !replication::may_reveal(&selected, &msgs, a.deadline_ms, now_ms()) {
        return;
    }
    let Ok(r) = ReplicaReveal::decode(&reveal) else {
        return;
    };
    let me = node.signer.operator();
    let reveal2 = reveal.clone();
    let _ = blocking(&node.store, move |s| {
        s.record_replica_msg(&job_id, &me, KIND_REVEAL, &reveal2)?;
        s.set_replica_revealed(&job_id)
    })
    .await;
    if let Err(e) = p2p.net.publish(TopicKind::Jobs, reveal).await {
        if !matches!(e, NetError::NoPeers | NetError::Duplicate) {
            tracing::warn!(target: "vouch::p2p", %job_id, error = %e, "cannot publish reveal");
        }
    }
    // Now the receipt may travel on its own too.
    p2p.publish_receipt(node, &r.receipt).await;
    tracing::info!(target: "vouch::p2p", %job_id, "revealed the replicated job's result");
}

async fn reveal_ticker(node: Arc<Node>, p2p: Arc<P2p>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let due = blocking(&node.store, |s| s.unrevealed_replicas()).await;
        for job_id in due.unwrap_or_default() {
            try_reveal(&node, &p2p, job_id).await;
        }
    }
}

/// The replication report of a job this node tracks.
pub async fn report(node: &Node, p2p: &P2p, job_id: JobId) -> Option<(JobSpec, Report)> {
    let (row, msgs, disputes) = blocking(&node.store, move |s| {
        Ok((
            s.replica(&job_id)?,
            s.replica_msgs(&job_id)?,
            s.replica_disputes(Some(&job_id), &[])?,
        ))
    })
    .await
    .ok()?;
    let row = row?;
    let a = JobAnnouncement::decode(&row.announcement).ok()?;
    let (spec, id) = a.verify().ok()?;
    let selected = p2p.select(&id, spec.replicas);
    let mut r = replication::report(&a, &id, spec.replicas, &selected, &msgs, now_ms());
    r.disputes = disputes
        .into_iter()
        .map(|d| DisputeView {
            operator: d.operator,
            dispute: d.dispute,
            status: d.status,
            detail: d.detail,
            attempts: d.attempts,
        })
        .collect();
    Some((spec, r))
}

/// Replicated jobs older than this are not looked at for disputes any more (their
/// receipts are near or past the challenge window).
const HAND_OFF_HORIZON_MS: u64 = 24 * 3600 * 1000;

/// Hands disagreements to the verifier (`disputes.rs`): looks at every replicated job this
/// node announced once it is complete, records the disputes it calls for, and posts (or
/// asks about) the ones not final yet. Runs apart from the reveal ticker, so a verifier
/// judging slowly never delays a reveal.
async fn dispute_ticker(node: Arc<Node>, p2p: Arc<P2p>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = tick.tick() => {}
        }
        let since = now_ms().saturating_sub(HAND_OFF_HORIZON_MS);
        let jobs = blocking(&node.store, move |s| s.replicas_to_hand_off(since)).await;
        for job_id in jobs.unwrap_or_default() {
            look_for_disputes(&node, &p2p, job_id).await;
        }
        let Some(ch) = &p2p.challenger else {
            continue;
        };
        let due = blocking(&node.store, |s| {
            s.replica_disputes(None, &[status::QUEUED, status::PENDING])
        })
        .await;
        for d in due.unwrap_or_default() {
            if d.attempts > 0 && now_ms() < d.updated_at_ms.saturating_add(disputes::RETRY_MS) {
                continue;
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = advance_dispute(&node, ch, d) => {}
            }
        }
    }
}

/// Decides, once a replicated job this node announced is complete, which receipts to
/// dispute, and records that (and that the job was looked at).
async fn look_for_disputes(node: &Node, p2p: &P2p, job_id: JobId) {
    let Some((_, rep)) = report(node, p2p, job_id).await else {
        return;
    };
    let mine = rep.announcer == node.signer.operator();
    if mine && rep.phase != "complete" {
        return;
    }
    let mut raised = Vec::new();
    if mine && rep.outcome == "disagreed" && rep.agreed.is_some() {
        let network = node.signer.network_id();
        for op in &rep.disagreeing {
            let Some(receipt) = rep
                .operators
                .iter()
                .find(|o| o.operator == *op)
                .and_then(|o| o.receipt.as_ref())
                .and_then(|j| j.verify().ok())
            else {
                continue;
            };
            let (dispute, status, detail) = match &p2p.challenger {
                Some(ch) => (
                    hex::encode(ch.dispute_id(&network, &receipt)),
                    status::QUEUED,
                    "to be posted to the verifier".to_string(),
                ),
                None => (
                    String::new(),
                    status::NOT_CONFIGURED,
                    "not handed off: this node has no challenger (--challenger-key, --dispute-bond)"
                        .to_string(),
                ),
            };
            raised.push(ReplicaDispute {
                job_id,
                operator: *op,
                receipt: receipt.encode().to_vec(),
                dispute,
                status: status.to_string(),
                detail,
                attempts: 0,
                updated_at_ms: now_ms(),
            });
        }
        tracing::warn!(target: "vouch::p2p", %job_id, disagreeing = rep.disagreeing.len(), handed_off = p2p.challenger.is_some(), "replicated job disagreed");
    }
    let _ = blocking(&node.store, move |s| s.hand_off(&job_id, &raised)).await;
}

/// Posts a queued dispute, or asks the verifier about a pending one, and records the
/// answer.
async fn advance_dispute(node: &Node, ch: &Challenger, d: ReplicaDispute) {
    let job_id = d.job_id;
    let posted = if d.status == status::PENDING {
        ch.poll(&d.dispute).await
    } else {
        match dispute_evidence(node, &d).await {
            Ok((receipt, spec, input)) => {
                let body = ch.body(&node.signer.network_id(), &receipt, &spec, &input);
                ch.post(&body).await
            }
            Err(e) => Posted::Refused(format!("cannot assemble the evidence: {e}")),
        }
    };
    let attempts = d.attempts + 1;
    let (status, detail) = match posted {
        Posted::Verdict(outcome, reason) => (outcome, reason),
        Posted::Pending => (
            status::PENDING.to_string(),
            "the verifier is judging".to_string(),
        ),
        Posted::Refused(why) => (status::REFUSED.to_string(), why),
        Posted::Retry(why) if attempts >= disputes::MAX_ATTEMPTS => (
            status::FAILED.to_string(),
            format!("gave up after {attempts} attempts: {why}"),
        ),
        Posted::Retry(why) => (status::QUEUED.to_string(), why),
    };
    // A pending dispute is asked about without limit; only failed posts count.
    let attempts = if status == status::PENDING {
        d.attempts.max(1)
    } else {
        attempts
    };
    tracing::info!(target: "vouch::p2p", %job_id, operator = %d.operator, dispute = %d.dispute, %status, %detail, "wrong-result dispute");
    let op = d.operator;
    let _ = blocking(&node.store, move |s| {
        s.set_replica_dispute(&job_id, &op, &status, &detail, attempts)
    })
    .await;
}

/// The receipt, spec and input a dispute carries.
async fn dispute_evidence(
    node: &Node,
    d: &ReplicaDispute,
) -> Result<(SignedReceipt, JobSpec, Vec<u8>), String> {
    let receipt = SignedReceipt::decode(&d.receipt).map_err(|e| e.to_string())?;
    let job_id = d.job_id;
    let (row, kept, job_input) = blocking(&node.store, move |s| {
        Ok((
            s.replica(&job_id)?,
            s.replica_input(&job_id)?,
            s.input(&job_id)?,
        ))
    })
    .await
    .map_err(|e| e.to_string())?;
    let row = row.ok_or("the replicated job is gone")?;
    let a = JobAnnouncement::decode(&row.announcement).map_err(|e| e.to_string())?;
    let (spec, _) = a.verify().map_err(|e| e.to_string())?;
    let input = if !a.input.is_empty() || spec.input_digest == vouch_proto::Digest::of(b"") {
        a.input
    } else {
        kept.or(job_input)
            .ok_or("this node no longer holds the input")?
    };
    Ok((receipt, spec, input))
}

/// Builds and signs the announcement of a replicated job this node accepts from a client.
/// An input larger than [`MAX_INLINE_INPUT`] is left out (the replicas fetch it by digest
/// from this node, which keeps it: [`JobStore::insert_replica`]).
pub fn announcement(node: &Node, spec: &JobSpec, input: &[u8]) -> Result<JobAnnouncement, String> {
    let spec_json = spec.canonical_bytes().map_err(|e| e.to_string())?;
    let now = now_ms();
    let mut a = JobAnnouncement {
        network_id: node.signer.network_id(),
        announcer: node.signer.operator(),
        issued_at_ms: now,
        deadline_ms: now
            .saturating_add(spec.limits.timeout_ms)
            .saturating_add(node.config.p2p.commit_window_ms),
        spec_json,
        input: if input.len() <= MAX_INLINE_INPUT {
            input.to_vec()
        } else {
            Vec::new()
        },
        signature: [0; 64],
    };
    node.signer.sign_announcement(&mut a);
    Ok(a)
}
