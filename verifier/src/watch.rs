//! Watcher mode (`vouch-verifier watch`): spot-checks a sample of the receipts operators
//! gossip and disputes the wrong ones on its own (DESIGN.md "Disputes, in tiers").
//!
//! # Why a beacon
//!
//! Re-executing every receipt would double the network's work; checking a sample deters
//! cheating as well, as long as an operator cannot tell, when it signs and gossips a
//! receipt, whether that receipt will be checked. So the sample is drawn with the
//! verifier's beacon (SPEC.md §11.3) of the epoch **after** the one in which the watcher
//! first heard the receipt: that beacon does not exist for anyone but the verifier until
//! that later epoch ends, so at signing time the operator's chance of a check is just the
//! sample rate. Every watcher with the same rate draws the same sample from the same
//! beacon; the beacon's signature is checked against the verifier key of the registry.
//!
//! # Tasks and data flow
//!
//! ```text
//!  vouch-net ──Delivered──▶ inbound ──▶ waiting (by epoch, ≤ max_waiting) ──▶ beacon task
//!   (registry from                                 GET /v1/beacon/{epoch} ◀──┘   │ sampled?
//!    GET /v1/registry,                                                            ▼
//!    refreshed)                       workers (≤ concurrency) ◀── sampled queue (≤ max_sampled)
//!                                        │ fetch spec (by job id) + input over the blob
//!                                        │ protocol, re-run ONCE in Docker, compare
//!                                        ▼ mismatch
//!                                     dispute task ──POST /v1/disputes/result──▶ verifier
//! ```
//!
//! Everything is bounded: the receipts waiting for their beacon, the sampled queue, the
//! re-executions at once, the disputes in flight. What does not fit is dropped and counted
//! (`skipped.queue_full`). The watcher never pulls an image (a missing one is
//! `skipped.image_missing`) and skips nondeterministic specs, whose re-execution proves
//! nothing. One run per receipt: a match is the common case and needs no second run; on a
//! mismatch the verifier runs the job twice more itself before it slashes, and a dismissed
//! dispute costs the watcher its bond, which is what keeps a watcher honest.
//!
//! # The rate per job
//!
//! With [`WatchConfig::deterrence`] set, the chance that a receipt is checked follows its
//! job (docs/security.md §2): cheating on a job worth `C` (its spec's `value_at_risk`)
//! does not pay when `p·(1−r)·(R+S) ≥ λ·C`, so each receipt is sampled with
//!
//! ```text
//! p = max(sample_rate, min(1, λ·C / ((1−r)·S)))
//! ```
//!
//! where `S` is what a proven wrong result slashes from the receipt's operator (its
//! `stake_value` in the registry × the registry's `wrong_result_slash_ppm`), `r` the
//! share of colluding checkers (`--collusion`) and `λ` a safety factor (`--lambda`); `R`,
//! the operator's fee for the job, is taken as 0 (Vouch jobs carry no fee), which only
//! raises `p`. A job worth as much as the slash is always checked. The watcher fetches each
//! heard receipt's spec while it waits for its beacon (one small blob); a receipt whose
//! spec could not be had by then is checked (`p = 1`: its value at risk is unknown, and the
//! check itself then records why it could not run).
//!
//! # Withheld evidence
//!
//! A sampled receipt whose spec or input no peer serves is not simply skipped: that is
//! what an operator hiding a wrong result would do. The watcher opens a withholding
//! dispute (SPEC.md §11.5) demanding both; if the operator publishes them by the
//! verifier's deadline the receipt goes back into the queue and is checked from the
//! published evidence, and if it does not, the verifier slashes it (`disputes` counts
//! `withholding_slashed`). `--no-withholding-disputes` turns this off.
//!
//! A run that breaks a limit is not a mismatch (there is no result to compare, SPEC.md
//! §5.3). A receipt is disputed at most once per process: nothing is persisted, and the
//! verifier answers a challenge sent again with its stored verdict anyway.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinHandle;
use tracing::Instrument as _;
use vouch_exec::{ExecError, Executor, RunOutcome};
use vouch_net::libp2p::identity::Keypair;
use vouch_net::libp2p::PeerId;
use vouch_net::{
    Delivered, GossipValidator, NetConfig, NetError, Network, NetworkHandle, Registry, TopicKind,
    VerifierKey,
};
use vouch_proto::{Determinism, Digest, JobSpec, NetworkId, OperatorKey, SignedReceipt};

use crate::gossip::GossipOptions;
use crate::reexec::Bond;

/// Receipts heard and waiting for their epoch's beacon, unless configured.
pub const DEFAULT_MAX_WAITING: usize = 100_000;
/// Sampled receipts waiting for a re-execution slot, unless configured.
pub const DEFAULT_MAX_SAMPLED: usize = 256;
/// Re-executions at once, unless configured.
pub const DEFAULT_CONCURRENCY: usize = 1;
/// Disputes being posted or awaited at once; a worker with a new one waits for a slot.
pub const MAX_DISPUTES_IN_FLIGHT: usize = 8;
/// Signing roots remembered to recognise a receipt heard again.
pub const SEEN_CAPACITY: usize = 200_000;
/// Disputes kept for `GET /v1/watch`.
pub const RECENT_DISPUTES: usize = 100;
/// Peers asked for a blob: the one that forwarded the receipt, then others.
pub const MAX_FETCH_PEERS: usize = 8;
/// Spec fetches at once for the per-job rate; receipts heard while all are busy count as
/// of unknown value (checked).
pub const MAX_PRICING_FETCHES: usize = 16;
/// Attempts to post a dispute before it is given up as `failed`.
pub const MAX_DISPUTE_ATTEMPTS: u32 = 5;
/// How long after an epoch's end (by our clock) the watcher asks for its beacon: room for
/// the verifier's clock being a little behind.
const BEACON_MARGIN: Duration = Duration::from_millis(50);

/// Why a heard receipt was not compared (keys of `skipped` in [`WatchStatus`]).
pub mod skip {
    /// A bounded queue was full.
    pub const QUEUE_FULL: &str = "queue_full";
    /// The epoch's beacon did not verify under the registry's verifier key.
    pub const BAD_BEACON: &str = "bad_beacon";
    /// No peer served the job spec under the receipt's job id.
    pub const SPEC_UNAVAILABLE: &str = "spec_unavailable";
    /// The spec's job id, image or input digest is not the receipt's.
    pub const SPEC_MISMATCH: &str = "spec_mismatch";
    /// The spec declares a nondeterministic workload: a re-run proves nothing.
    pub const NONDETERMINISTIC: &str = "nondeterministic";
    /// No peer served the input.
    pub const INPUT_UNAVAILABLE: &str = "input_unavailable";
    /// The image is not on this host (it is never pulled).
    pub const IMAGE_MISSING: &str = "image_missing";
    /// The re-execution broke a limit: no result to compare.
    pub const LIMIT_EXCEEDED: &str = "limit_exceeded";
    /// Docker failed (unreachable, an API error).
    pub const EXEC_FAILED: &str = "exec_failed";
}

/// Failures that stop the watcher from starting.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The verifier could not be asked, or answered something unusable.
    #[error("verifier at {url}: {reason}")]
    Verifier {
        /// `--verifier-url`.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A bad setting.
    #[error("{0}")]
    Config(String),
    /// Joining the peer-to-peer network failed.
    #[error("peer-to-peer network: {0}")]
    Net(#[from] NetError),
}

/// How the watcher runs.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// The verifier: registry, beacon, disputes (`http://host:port`).
    pub verifier_url: String,
    /// How to join the network.
    pub p2p: GossipOptions,
    /// Signs disputes; its deposited balance on the verifier's ledger holds the bonds.
    pub challenger: SigningKey,
    /// Posted with every dispute.
    pub bond: Bond,
    /// The share of receipts re-executed, 0 to 1.
    pub sample_rate: f64,
    /// Re-executions at once.
    pub concurrency: usize,
    /// Receipts heard and waiting for their beacon.
    pub max_waiting: usize,
    /// Sampled receipts waiting for a re-execution slot.
    pub max_sampled: usize,
    /// How often the operator registry is read again (and at once after a verdict).
    pub registry_refresh: Duration,
    /// Sample each receipt at least at the rate its job's value at risk needs (module
    /// docs, "The rate per job"); `None`: every receipt at `sample_rate`.
    pub deterrence: Option<Deterrence>,
    /// Demand the spec and input of a sampled receipt that no peer serves (module docs,
    /// "Withheld evidence").
    pub withholding_disputes: bool,
}

/// The parameters of the per-job rate `p·(1−r)·(R+S) ≥ λ·C`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deterrence {
    /// `r`, the share of checkers that may collude with the operator, ppm (< 10⁶).
    pub collusion_ppm: u32,
    /// `λ`, the safety factor, ppm (10⁶ = 1).
    pub lambda_ppm: u32,
}

/// The sampling rate a job of value at risk `c` needs against an operator whose wrong
/// result is slashed `s`: `min(1, λ·c / ((1−r)·s))`; 0 for `c = 0`, 1 for `s = 0`.
pub fn required_rate(c: u128, s: u128, d: Deterrence) -> f64 {
    if c == 0 {
        return 0.0;
    }
    let keep = 1.0 - f64::from(d.collusion_ppm.min(1_000_000)) / 1e6;
    let lambda = f64::from(d.lambda_ppm) / 1e6;
    let denom = keep * s as f64;
    if denom <= 0.0 {
        return 1.0;
    }
    (lambda * c as f64 / denom).clamp(0.0, 1.0)
}

impl WatchConfig {
    /// The defaults for everything but what must be given.
    pub fn new(verifier_url: &str, challenger: SigningKey, bond: Bond, sample_rate: f64) -> Self {
        WatchConfig {
            verifier_url: verifier_url.trim_end_matches('/').to_owned(),
            p2p: GossipOptions::default(),
            challenger,
            bond,
            sample_rate,
            concurrency: DEFAULT_CONCURRENCY,
            max_waiting: DEFAULT_MAX_WAITING,
            max_sampled: DEFAULT_MAX_SAMPLED,
            registry_refresh: Duration::from_secs(5),
            deterrence: None,
            withholding_disputes: true,
        }
    }

    fn check(&self) -> Result<(), WatchError> {
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err(WatchError::Config(format!(
                "--sample-rate {} is not between 0 and 1",
                self.sample_rate
            )));
        }
        if self.bond.amount == 0 || self.bond.asset.is_empty() {
            return Err(WatchError::Config(
                "the bond needs an asset and an amount above 0 (--bond-asset, --bond-amount)"
                    .into(),
            ));
        }
        if self
            .deterrence
            .is_some_and(|d| d.collusion_ppm >= 1_000_000 || d.lambda_ppm == 0)
        {
            return Err(WatchError::Config(
                "--collusion must be below 1 and --lambda above 0".into(),
            ));
        }
        if self.concurrency == 0 || self.max_waiting == 0 || self.max_sampled == 0 {
            return Err(WatchError::Config(
                "concurrency and queue sizes must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// One dispute the watcher raised, as `GET /v1/watch` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WatchDispute {
    /// The dispute id (64 hex): `GET /v1/disputes/{id}` of the verifier.
    pub dispute: String,
    /// The receipt's signing root (64 hex).
    pub receipt: String,
    /// The job.
    pub job_id: String,
    /// Who signed the receipt.
    pub operator: String,
    /// `pending`, the verifier's verdict (`slashed`, `already_slashed`, `dismissed`,
    /// `void`), `refused` (a 4xx; `detail` says why) or `failed` (not reached).
    pub status: String,
    /// The verifier's reason, or what went wrong.
    pub detail: String,
    /// When the mismatch was found, ms since the Unix epoch.
    pub raised_at_ms: u64,
    /// `wrong_result`, or `withholding` (the spec and input were demanded).
    #[serde(default)]
    pub kind: String,
}

/// Counters and recent disputes (`GET /v1/watch`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatchStatus {
    /// The network watched.
    pub network_id: String,
    /// The challenger key (64 hex).
    pub challenger: String,
    /// The share of receipts re-executed.
    pub sample_rate: f64,
    /// The verifier's beacon epoch length.
    pub epoch_ms: u64,
    /// Distinct receipts heard.
    pub heard: u64,
    /// Receipts heard again (not counted in `heard`).
    pub duplicates: u64,
    /// Receipts waiting for their epoch's beacon now.
    pub waiting: u64,
    /// The last epoch whose beacon was used.
    pub last_beacon_epoch: Option<u64>,
    /// Receipts in the sample.
    pub sampled: u64,
    /// Receipts outside it.
    pub not_sampled: u64,
    /// The per-job rate's parameters, when it is on.
    pub deterrence: Option<Deterrence>,
    /// Receipts whose job's value at risk raised their rate above `sample_rate`.
    pub rate_raised: u64,
    /// Receipts not compared, by reason ([`skip`]).
    pub skipped: BTreeMap<String, u64>,
    /// Re-executions run to an end (an exit or a broken limit).
    pub reexecuted: u64,
    /// Re-executions that gave the receipt's result.
    pub matched: u64,
    /// Re-executions that did not.
    pub mismatched: u64,
    /// Disputes by final status (the verifier's verdict, `refused`, `failed`).
    pub disputes: BTreeMap<String, u64>,
    /// The latest disputes, newest last.
    pub recent_disputes: VecDeque<WatchDispute>,
}

/// A receipt heard, waiting for its beacon or a re-execution slot.
#[derive(Debug, Clone)]
struct Heard {
    receipt: SignedReceipt,
    root: [u8; 32],
    via: PeerId,
    seen_ms: u64,
    /// The job's value at risk once its spec was fetched (`Some(None)`: it could not be).
    value_at_risk: Arc<std::sync::OnceLock<Option<u128>>>,
    /// The spec and input the operator published in answer to a withholding dispute.
    published: Option<Arc<(JobSpec, Vec<u8>)>>,
}

/// A running watcher.
pub struct Watcher {
    /// Handle to the network task.
    pub net: NetworkHandle,
    network: NetworkId,
    config: WatchConfig,
    epoch_ms: u64,
    http: reqwest::Client,
    executor: Arc<dyn Executor>,
    registry: Registry,
    verifier_key: VerifierKey,
    status: Mutex<WatchStatus>,
    waiting: Mutex<BTreeMap<u64, Vec<Heard>>>,
    waiting_changed: Notify,
    refresh_registry: Notify,
    disputed: Mutex<HashSet<[u8; 32]>>,
    dispute_slots: Arc<Semaphore>,
    /// What a wrong result slashes, per active operator (from the registry).
    slash_per_offence: Mutex<std::collections::HashMap<OperatorKey, u128>>,
    /// Spec fetches for the per-job rate at once.
    pricing: Arc<Semaphore>,
    /// Receipts whose evidence was demanded (once each).
    demanded: Mutex<HashSet<[u8; 32]>>,
    /// Back into the sampled queue, with published evidence.
    requeue: mpsc::Sender<Heard>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("network", &self.network)
            .field("verifier_url", &self.config.verifier_url)
            .field("sample_rate", &self.config.sample_rate)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    crate::api::system_now_ms()
}

/// The verifier's registry as `GET /v1/registry` serves it.
#[derive(Debug, Deserialize)]
struct RegistryDoc {
    network_id: NetworkId,
    verifier: OperatorKey,
    operators: Vec<RegistryEntry>,
    #[serde(default = "half")]
    wrong_result_slash_ppm: u32,
}

fn half() -> u32 {
    500_000
}

#[derive(Debug, Deserialize)]
struct RegistryEntry {
    operator: OperatorKey,
    active: bool,
    #[serde(default)]
    stake_value: Option<String>,
}

impl RegistryDoc {
    /// What a wrong result slashes, per operator.
    fn slash_per_offence(&self) -> std::collections::HashMap<OperatorKey, u128> {
        self.operators
            .iter()
            .map(|e| {
                let v: u128 = e
                    .stake_value
                    .as_deref()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                (
                    e.operator,
                    crate::security::mul_ppm(v, self.wrong_result_slash_ppm),
                )
            })
            .collect()
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<(u16, Value), String> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .json::<Value>()
        .await
        .map_err(|e| format!("GET {url}: HTTP {status}, not JSON: {e}"))?;
    Ok((status, body))
}

async fn fetch_registry(http: &reqwest::Client, base: &str) -> Result<RegistryDoc, String> {
    let url = format!("{base}/v1/registry");
    match get_json(http, &url).await? {
        (200, body) => serde_json::from_value(body)
            .map_err(|e| format!("GET {url}: not a registry document: {e}")),
        (status, body) => Err(format!("GET {url}: HTTP {status}: {body}")),
    }
}

fn set_registry(registry: &Registry, verifier_key: &VerifierKey, doc: &RegistryDoc) {
    let active: HashSet<OperatorKey> = doc
        .operators
        .iter()
        .filter(|e| e.active)
        .map(|e| e.operator)
        .collect();
    *registry.write().unwrap_or_else(PoisonError::into_inner) = active;
    *verifier_key.write().unwrap_or_else(PoisonError::into_inner) = Some(doc.verifier);
}

/// What asking for a beacon came to.
enum BeaconAnswer {
    /// The beacon, its signature checked.
    Beacon([u8; 32]),
    /// Not revealed yet; ask again after this long.
    NotYet(Duration),
    /// Answered, but the signature is not the verifier's: never usable.
    Bad(String),
    /// Not answered; try again.
    Unreachable(String),
}

/// Joins the network and starts the watcher's tasks; they end when `stop` turns true.
/// Reads the verifier's registry (the network id, the verifier key, the active operators)
/// and its latest beacon first, and fails if either cannot be had or does not check out.
pub async fn start(
    config: WatchConfig,
    identity: Keypair,
    executor: Arc<dyn Executor>,
    stop: watch::Receiver<bool>,
) -> Result<(Arc<Watcher>, Vec<JoinHandle<()>>), WatchError> {
    config.check()?;
    let url = config.verifier_url.clone();
    let verifier_err = |reason: String| WatchError::Verifier {
        url: url.clone(),
        reason,
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| WatchError::Config(format!("HTTP client: {e}")))?;
    let doc = fetch_registry(&http, &url).await.map_err(verifier_err)?;
    let network = doc.network_id;
    let registry = Registry::default();
    let verifier_key: VerifierKey = Arc::default();
    set_registry(&registry, &verifier_key, &doc);

    // The beacon's epoch length, and a check that its signature is the registry's key.
    let beacon_url = format!("{url}/v1/beacon");
    let (status, body) = get_json(&http, &beacon_url).await.map_err(verifier_err)?;
    let epoch_ms = match status {
        200 => {
            let (epoch, signature) = parse_beacon(&body).map_err(verifier_err)?;
            vouch_proto::verify_beacon(&doc.verifier, &network, epoch, &signature).map_err(
                |e| {
                    verifier_err(format!(
                        "its beacon of epoch {epoch} does not verify under the registry's \
                         verifier key {}: {e}",
                        doc.verifier
                    ))
                },
            )?;
            body["epoch_ms"].as_u64()
        }
        425 => body["error"]["epoch_ms"].as_u64(),
        _ => None,
    }
    .filter(|ms| *ms > 0)
    .ok_or_else(|| {
        verifier_err(format!(
            "GET {beacon_url} answered {status} without an epoch length \
             (is it a verifier with the beacon, SPEC.md §11.3?): {body}"
        ))
    })?;

    let mut nc = NetConfig::new(network);
    nc.listen = config.p2p.listen.clone();
    nc.bootstrap = config.p2p.bootstrap.clone();
    nc.mdns = config.p2p.mdns;
    // Several peers on one host (a devnet, tests) share 127.0.0.1.
    nc.colocation_whitelist
        .insert(std::net::IpAddr::from([127, 0, 0, 1]));
    let (net, delivered) = Network::spawn(
        nc,
        identity,
        GossipValidator::new(network, registry.clone(), verifier_key.clone()),
    )
    .await?;
    tracing::info!(
        target: "vouch_verifier::watch",
        peer_id = %net.local_peer_id(),
        addrs = ?net.listen_addrs().await.unwrap_or_default(),
        network = %network,
        verifier = %doc.verifier,
        epoch_ms,
        sample_rate = config.sample_rate,
        "watching the network"
    );
    let status = WatchStatus {
        network_id: network.to_string(),
        challenger: hex::encode(config.challenger.verifying_key().to_bytes()),
        sample_rate: config.sample_rate,
        deterrence: config.deterrence,
        epoch_ms,
        ..WatchStatus::default()
    };
    let (sampled_tx, sampled_rx) = mpsc::channel(config.max_sampled);
    let concurrency = config.concurrency;
    let watcher = Arc::new(Watcher {
        net,
        network,
        config,
        epoch_ms,
        http,
        executor,
        registry,
        verifier_key,
        status: Mutex::new(status),
        waiting: Mutex::new(BTreeMap::new()),
        waiting_changed: Notify::new(),
        refresh_registry: Notify::new(),
        disputed: Mutex::new(HashSet::new()),
        dispute_slots: Arc::new(Semaphore::new(MAX_DISPUTES_IN_FLIGHT)),
        slash_per_offence: Mutex::new(doc.slash_per_offence()),
        pricing: Arc::new(Semaphore::new(MAX_PRICING_FETCHES)),
        demanded: Mutex::new(HashSet::new()),
        requeue: sampled_tx.clone(),
    });
    let mut tasks = vec![
        tokio::spawn(watcher.clone().inbound(delivered, stop.clone())),
        tokio::spawn(watcher.clone().beacons(sampled_tx, stop.clone())),
        tokio::spawn(watcher.clone().registry_loop(stop.clone())),
    ];
    let sampled_rx = Arc::new(tokio::sync::Mutex::new(sampled_rx));
    for _ in 0..concurrency {
        tasks.push(tokio::spawn(
            watcher.clone().worker(sampled_rx.clone(), stop.clone()),
        ));
    }
    Ok((watcher, tasks))
}

fn parse_beacon(body: &Value) -> Result<(u64, [u8; 64]), String> {
    let epoch = body["epoch"]
        .as_u64()
        .ok_or_else(|| format!("a beacon without an epoch: {body}"))?;
    let signature = body["signature"]
        .as_str()
        .and_then(|s| hex::decode(s).ok())
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or_else(|| format!("a beacon without a 64-byte hex signature: {body}"))?;
    Ok((epoch, signature))
}

/// Sleeps for `d`, or less if `stop` turns true; `false` if it did.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = stop.changed() => false,
        _ = tokio::time::sleep(d) => !*stop.borrow(),
    }
}

impl Watcher {
    /// Counters and recent disputes.
    pub fn status(&self) -> WatchStatus {
        let mut s = self.lock_status().clone();
        s.waiting = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|v| v.len() as u64)
            .sum();
        s
    }

    /// The network watched.
    pub fn network(&self) -> NetworkId {
        self.network
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, WatchStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn skipped(&self, reason: &str, job_id: &vouch_proto::JobId, detail: &str) {
        tracing::info!(target: "vouch_verifier::watch", %job_id, reason, detail, "not compared");
        *self
            .lock_status()
            .skipped
            .entry(reason.to_owned())
            .or_default() += 1;
    }

    /// Gossip in: receipts into the waiting room of the epoch after the one they were
    /// first heard in; a verdict makes the registry be read again at once.
    async fn inbound(
        self: Arc<Self>,
        mut delivered: mpsc::Receiver<Delivered>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut seen: HashSet<[u8; 32]> = HashSet::new();
        let mut seen_order: VecDeque<[u8; 32]> = VecDeque::new();
        loop {
            let d = tokio::select! {
                _ = stop.changed() => break,
                d = delivered.recv() => match d { Some(d) => d, None => break },
            };
            match d.topic_kind {
                TopicKind::Verdicts => {
                    self.refresh_registry.notify_one();
                    continue;
                }
                TopicKind::Receipts => {}
                TopicKind::Jobs => continue,
            }
            let Some(receipt) = d.receipt else { continue };
            let root = receipt.receipt.signing_root();
            if !seen.insert(root) {
                self.lock_status().duplicates += 1;
                continue;
            }
            seen_order.push_back(root);
            while seen_order.len() > SEEN_CAPACITY {
                if let Some(old) = seen_order.pop_front() {
                    seen.remove(&old);
                }
            }
            let seen_ms = now_ms();
            // The epoch after the one it was heard in: its beacon does not exist yet.
            let epoch = vouch_proto::epoch_of(seen_ms, self.epoch_ms).saturating_add(1);
            let job_id = receipt.receipt.job_id;
            self.lock_status().heard += 1;
            let value_at_risk = Arc::new(std::sync::OnceLock::new());
            let admitted = {
                let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
                let n: usize = waiting.values().map(Vec::len).sum();
                if n < self.config.max_waiting {
                    if self.config.deterrence.is_some() {
                        self.price(&receipt, d.via, value_at_risk.clone());
                    }
                    waiting.entry(epoch).or_default().push(Heard {
                        receipt,
                        root,
                        via: d.via,
                        seen_ms,
                        value_at_risk,
                        published: None,
                    });
                    true
                } else {
                    false
                }
            };
            if admitted {
                tracing::debug!(target: "vouch_verifier::watch", %job_id, via = %d.via, epoch, "heard; waiting for the beacon");
                self.waiting_changed.notify_one();
            } else {
                self.skipped(
                    skip::QUEUE_FULL,
                    &job_id,
                    "too many receipts wait for a beacon",
                );
            }
        }
    }

    /// For the oldest epoch with receipts waiting: once it has ended, fetch and check its
    /// beacon, and send the receipts it samples to the workers.
    async fn beacons(
        self: Arc<Self>,
        sampled: mpsc::Sender<Heard>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let next = self
                .waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .keys()
                .next()
                .copied();
            let Some(epoch) = next else {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = self.waiting_changed.notified() => continue,
                }
            };
            let Some(end) = vouch_proto::epoch_end_ms(epoch, self.epoch_ms) else {
                self.drop_epoch(epoch, skip::BAD_BEACON, "the epoch never ends");
                continue;
            };
            let now = now_ms();
            if now < end {
                let wait = Duration::from_millis(end - now) + BEACON_MARGIN;
                if !sleep_or_stop(wait, &mut stop).await {
                    break;
                }
                continue;
            }
            match self.fetch_beacon(epoch).await {
                BeaconAnswer::Beacon(beacon) => {
                    let batch = self
                        .waiting
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&epoch)
                        .unwrap_or_default();
                    self.lock_status().last_beacon_epoch = Some(epoch);
                    for heard in batch {
                        self.decide(&beacon, epoch, heard, &sampled);
                    }
                }
                BeaconAnswer::NotYet(after) => {
                    if !sleep_or_stop(after, &mut stop).await {
                        break;
                    }
                }
                BeaconAnswer::Bad(why) => {
                    tracing::error!(target: "vouch_verifier::watch", epoch, %why, "the verifier's beacon does not verify; its receipts are not checked");
                    self.drop_epoch(epoch, skip::BAD_BEACON, &why);
                }
                BeaconAnswer::Unreachable(why) => {
                    tracing::warn!(target: "vouch_verifier::watch", epoch, %why, "cannot fetch the beacon; retrying");
                    if !sleep_or_stop(Duration::from_secs(1), &mut stop).await {
                        break;
                    }
                }
            }
        }
    }

    fn drop_epoch(&self, epoch: u64, reason: &str, detail: &str) {
        let batch = self
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&epoch)
            .unwrap_or_default();
        for h in batch {
            self.skipped(reason, &h.receipt.receipt.job_id, detail);
        }
    }

    /// Fetches the spec of a heard receipt's job to learn its value at risk (per-job rate).
    fn price(
        &self,
        receipt: &SignedReceipt,
        via: PeerId,
        cell: Arc<std::sync::OnceLock<Option<u128>>>,
    ) {
        let Ok(permit) = self.pricing.clone().try_acquire_owned() else {
            // Too many at once: unknown, so checked (p = 1).
            let _ = cell.set(None);
            return;
        };
        let r = receipt.receipt.clone();
        let net = self.net.clone();
        tokio::spawn(async move {
            let value = net
                .fetch_from_any(via, r.job_id.0, MAX_FETCH_PEERS)
                .await
                .ok()
                .and_then(|b| JobSpec::from_json(&b).ok())
                .filter(|s| {
                    s.job_id().ok() == Some(r.job_id)
                        && s.image == r.image
                        && s.input_digest == r.input_digest
                })
                .map(|s| s.value_at_risk.0);
            let _ = cell.set(value);
            drop(permit);
        });
    }

    /// The rate `heard` is sampled at: `sample_rate`, raised by its job's value at risk
    /// when the per-job rate is on.
    fn rate_for(&self, heard: &Heard) -> f64 {
        let base = self.config.sample_rate;
        let Some(d) = self.config.deterrence else {
            return base;
        };
        let needed = match heard.value_at_risk.get() {
            Some(Some(c)) => {
                let s = self
                    .slash_per_offence
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&heard.receipt.receipt.operator)
                    .copied()
                    .unwrap_or(0);
                required_rate(*c, s, d)
            }
            // Not fetched (yet) or not available: unknown value at risk.
            _ => 1.0,
        };
        if needed > base {
            self.lock_status().rate_raised += 1;
            needed
        } else {
            base
        }
    }

    fn decide(&self, beacon: &[u8; 32], epoch: u64, heard: Heard, sampled: &mpsc::Sender<Heard>) {
        let job_id = heard.receipt.receipt.job_id;
        let rate = self.rate_for(&heard);
        if !vouch_proto::sampled(beacon, &heard.root, rate) {
            tracing::debug!(target: "vouch_verifier::watch", %job_id, epoch, "not sampled");
            self.lock_status().not_sampled += 1;
            return;
        }
        tracing::info!(target: "vouch_verifier::watch", %job_id, epoch, operator = %heard.receipt.receipt.operator, "sampled");
        self.lock_status().sampled += 1;
        if let Err(mpsc::error::TrySendError::Full(h)) = sampled.try_send(heard) {
            self.skipped(
                skip::QUEUE_FULL,
                &h.receipt.receipt.job_id,
                "too many sampled receipts wait for a re-execution",
            );
        }
    }

    async fn fetch_beacon(&self, epoch: u64) -> BeaconAnswer {
        let url = format!("{}/v1/beacon/{epoch}", self.config.verifier_url);
        let (status, body) = match get_json(&self.http, &url).await {
            Ok(a) => a,
            Err(e) => return BeaconAnswer::Unreachable(e),
        };
        match status {
            200 => {}
            425 => {
                // The verifier's clock is behind ours: wait as long as it says (bounded).
                let after = body["error"]["available_at_ms"]
                    .as_u64()
                    .map_or(100, |at| at.saturating_sub(now_ms()));
                return BeaconAnswer::NotYet(Duration::from_millis(
                    after.clamp(50, self.epoch_ms.max(50)),
                ));
            }
            _ => return BeaconAnswer::Unreachable(format!("GET {url}: HTTP {status}: {body}")),
        }
        let (got, signature) = match parse_beacon(&body) {
            Ok(b) => b,
            Err(e) => return BeaconAnswer::Bad(e),
        };
        if got != epoch {
            return BeaconAnswer::Bad(format!("asked for epoch {epoch}, got {got}"));
        }
        let key = *self
            .verifier_key
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(key) = key else {
            return BeaconAnswer::Unreachable("no verifier key yet".into());
        };
        match vouch_proto::verify_beacon(&key, &self.network, epoch, &signature) {
            Ok(beacon) => BeaconAnswer::Beacon(beacon),
            Err(e) => BeaconAnswer::Bad(format!("signature of epoch {epoch}: {e}")),
        }
    }

    /// Reads the registry every `registry_refresh`, and at once after a verdict.
    async fn registry_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(self.config.registry_refresh) => {}
                _ = self.refresh_registry.notified() => {}
            }
            match fetch_registry(&self.http, &self.config.verifier_url).await {
                Ok(doc) if doc.network_id == self.network => {
                    set_registry(&self.registry, &self.verifier_key, &doc);
                    *self
                        .slash_per_offence
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = doc.slash_per_offence();
                }
                Ok(doc) => {
                    tracing::error!(target: "vouch_verifier::watch", theirs = %doc.network_id, ours = %self.network, "the verifier now serves another network; registry not updated")
                }
                Err(e) => {
                    tracing::warn!(target: "vouch_verifier::watch", error = %e, "cannot refresh the operator registry")
                }
            }
        }
    }

    async fn worker(
        self: Arc<Self>,
        queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Heard>>>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let next = {
                let mut rx = queue.lock().await;
                tokio::select! {
                    _ = stop.changed() => None,
                    h = rx.recv() => h,
                }
            };
            let Some(heard) = next else { break };
            let span = tracing::info_span!(
                target: "vouch_verifier::watch",
                "check",
                job_id = %heard.receipt.receipt.job_id,
                operator = %heard.receipt.receipt.operator,
            );
            self.check(heard).instrument(span).await;
        }
    }

    /// Fetches the job, re-runs it once and compares; a mismatch becomes a dispute.
    async fn check(self: &Arc<Self>, heard: Heard) {
        let r = heard.receipt.receipt.clone();
        let job_id = r.job_id;
        let (spec, published_input) = match &heard.published {
            Some(p) => (p.0.clone(), Some(p.1.clone())),
            None => {
                let Some(spec_bytes) = self.fetch_blob(heard.via, job_id.0).await else {
                    self.skipped(
                        skip::SPEC_UNAVAILABLE,
                        &job_id,
                        "no peer serves the job spec",
                    );
                    return self.demand_evidence(heard).await;
                };
                match JobSpec::from_json(&spec_bytes) {
                    Ok(s) => (s, None),
                    Err(e) => {
                        self.skipped(skip::SPEC_UNAVAILABLE, &job_id, &format!("not a spec: {e}"));
                        return self.demand_evidence(heard).await;
                    }
                }
            }
        };
        if spec.job_id().ok() != Some(job_id)
            || spec.image != r.image
            || spec.input_digest != r.input_digest
        {
            return self.skipped(
                skip::SPEC_MISMATCH,
                &job_id,
                "the spec's job id, image or input digest is not the receipt's",
            );
        }
        if spec.determinism != Determinism::Deterministic {
            return self.skipped(skip::NONDETERMINISTIC, &job_id, "declared nondeterministic");
        }
        let input = if let Some(input) = published_input {
            input
        } else if spec.input_digest == Digest::of(b"") {
            Vec::new()
        } else {
            match self.fetch_blob(heard.via, spec.input_digest.0).await {
                Some(b) => b,
                None => {
                    self.skipped(skip::INPUT_UNAVAILABLE, &job_id, "no peer serves the input");
                    return self.demand_evidence(heard).await;
                }
            }
        };
        match self.executor.resolve_image(&spec.image.to_string()).await {
            Ok(_) => {}
            Err(ExecError::ImageNotFound(image)) => {
                return self.skipped(skip::IMAGE_MISSING, &job_id, &image);
            }
            Err(e) => return self.skipped(skip::EXEC_FAILED, &job_id, &e.to_string()),
        }
        let outcome = match self.executor.run(job_id, &spec, input.clone().into()).await {
            Ok(o) => o,
            Err(e) => return self.skipped(skip::EXEC_FAILED, &job_id, &e.to_string()),
        };
        self.lock_status().reexecuted += 1;
        let (exit_code, stdout) = match outcome {
            RunOutcome::Exited {
                exit_code, stdout, ..
            } => (exit_code, stdout),
            RunOutcome::LimitExceeded { detail, .. } => {
                return self.skipped(skip::LIMIT_EXCEEDED, &job_id, &detail);
            }
        };
        let ours = (Digest::of(&stdout), stdout.len() as u64, exit_code);
        if ours == (r.output_digest, r.output_len, r.exit_code) {
            tracing::info!(target: "vouch_verifier::watch", %job_id, "re-executed: the receipt's result");
            self.lock_status().matched += 1;
            return;
        }
        tracing::warn!(
            target: "vouch_verifier::watch",
            %job_id,
            receipt_output = %r.output_digest, receipt_len = r.output_len, receipt_exit = r.exit_code,
            ours_output = %ours.0, ours_len = ours.1, ours_exit = ours.2,
            "re-executed: NOT the receipt's result; disputing"
        );
        self.lock_status().mismatched += 1;
        let first = self
            .disputed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(heard.root);
        if !first {
            return;
        }
        // Bounded: a worker waits here while MAX_DISPUTES_IN_FLIGHT are running. The
        // semaphore is never closed.
        let Ok(slot) = self.dispute_slots.clone().acquire_owned().await else {
            return;
        };
        let this = self.clone();
        let span = tracing::Span::current();
        tokio::spawn(
            async move {
                this.dispute(&heard, &spec, &input).await;
                drop(slot);
            }
            .instrument(span),
        );
    }

    /// No peer serves what checking `heard` needs: demands the spec and input with a
    /// withholding dispute (SPEC.md §11.5, once per receipt, in its own task) and, once the
    /// operator publishes them, queues the receipt again to be checked from them.
    async fn demand_evidence(self: &Arc<Self>, heard: Heard) {
        if !self.config.withholding_disputes
            || !self
                .demanded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(heard.root)
        {
            return;
        }
        // Bounded like the other disputes. The semaphore is never closed.
        let Ok(slot) = self.dispute_slots.clone().acquire_owned().await else {
            return;
        };
        let this = self.clone();
        let span = tracing::Span::current();
        tokio::spawn(
            async move {
                this.withholding(heard).await;
                drop(slot);
            }
            .instrument(span),
        );
    }

    async fn withholding(self: &Arc<Self>, mut heard: Heard) {
        let c = &self.config;
        let demand = crate::withholding::Demand {
            spec: true,
            input: true,
            ..Default::default()
        };
        let challenge = match crate::withholding::WithholdingChallenge::sign(
            &self.network,
            &c.challenger,
            c.bond.clone(),
            heard.receipt.clone(),
            demand,
        ) {
            Ok(ch) => ch,
            Err(e) => {
                tracing::error!(target: "vouch_verifier::watch", error = %e, "cannot sign the withholding dispute");
                return;
            }
        };
        let r = &heard.receipt.receipt;
        let id = match challenge.id(&self.network) {
            Ok(id) => hex::encode(id),
            Err(e) => {
                tracing::error!(target: "vouch_verifier::watch", error = %e, "cannot compute the dispute id");
                return;
            }
        };
        let mut view = WatchDispute {
            dispute: id.clone(),
            receipt: hex::encode(heard.root),
            job_id: r.job_id.to_string(),
            operator: r.operator.to_string(),
            status: "pending".into(),
            detail: "no peer serves the spec or input; demanded from the operator".into(),
            raised_at_ms: now_ms(),
            kind: crate::withholding::KIND.into(),
        };
        self.record_dispute(view.clone(), false);
        let body = json!({
            "challenger": challenge.challenger,
            "bond": challenge.bond,
            "signature": challenge.signature,
            "receipt": heard.receipt.to_json(),
            "demand": challenge.demand,
        });
        let url = format!("{}/v1/disputes/withholding", c.verifier_url);
        let mut opened = None;
        for attempt in 1..=MAX_DISPUTE_ATTEMPTS {
            match self.http.post(&url).json(&body).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let v: Value = resp.json().await.unwrap_or(Value::Null);
                    if status.is_success() {
                        opened = Some(v);
                        break;
                    }
                    if status.is_client_error() {
                        view.status = "refused".into();
                        view.detail = format!(
                            "HTTP {status}: {}",
                            v["error"]["message"].as_str().unwrap_or_default()
                        );
                        return self.record_dispute(view, true);
                    }
                    view.detail = format!("HTTP {status}");
                }
                Err(e) => view.detail = format!("POST {url}: {e}"),
            }
            tracing::warn!(target: "vouch_verifier::watch", dispute = %id, attempt, detail = %view.detail, "withholding dispute not opened; trying again");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let Some(opened) = opened else {
            view.status = "failed".into();
            return self.record_dispute(view, true);
        };
        tracing::warn!(target: "vouch_verifier::watch", dispute = %id, job_id = %r.job_id, "no peer serves the job's evidence: demanded it from the operator");
        // Until the deadline, and a minute for the verifier to record the verdict.
        let deadline_ms = opened["withholding"]["deadline_ms"].as_u64().unwrap_or(0);
        let wait =
            Duration::from_millis(deadline_ms.saturating_sub(now_ms())) + Duration::from_secs(60);
        let status = self
            .follow_status(&id, tokio::time::Instant::now() + wait)
            .await;
        let Some(status) = status.filter(|s| s["state"] == "decided") else {
            view.status = "failed".into();
            view.detail = "undecided at the deadline".into();
            return self.record_dispute(view, true);
        };
        let outcome = status["verdict"]["outcome"].as_str().unwrap_or("decided");
        view.detail = status["verdict"]["reason"].as_str().unwrap_or("").into();
        view.status = match outcome {
            "slashed" | "already_slashed" => format!("withholding_{outcome}"),
            other => other.into(),
        };
        tracing::info!(target: "vouch_verifier::watch", dispute = %id, job_id = %r.job_id, status = %view.status, "withholding dispute ended");
        self.record_dispute(view, true);
        if outcome != "void" {
            return;
        }
        // The evidence is public now: check the receipt from it.
        let answer = &status["withholding"]["answer"];
        let spec = serde_json::to_vec(&answer["spec"])
            .ok()
            .and_then(|b| JobSpec::from_json(&b).ok());
        let input = answer["input_base64"]
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
        let (Some(spec), Some(input)) = (spec, input) else {
            return self.skipped(
                skip::SPEC_UNAVAILABLE,
                &heard.receipt.receipt.job_id,
                "the published answer holds no readable spec and input",
            );
        };
        heard.published = Some(Arc::new((spec, input)));
        if let Err(mpsc::error::TrySendError::Full(h) | mpsc::error::TrySendError::Closed(h)) =
            self.requeue.try_send(heard)
        {
            self.skipped(
                skip::QUEUE_FULL,
                &h.receipt.receipt.job_id,
                "too many sampled receipts wait for a re-execution",
            );
        }
    }

    /// The blob named by `digest`, from the peer that forwarded the receipt, then from the
    /// other connected peers; the network checks the bytes against the digest.
    async fn fetch_blob(&self, via: PeerId, digest: [u8; 32]) -> Option<Vec<u8>> {
        self.net
            .fetch_from_any(via, digest, MAX_FETCH_PEERS)
            .await
            .map_err(|e| {
                tracing::debug!(target: "vouch_verifier::watch", error = %e, "blob fetch failed")
            })
            .ok()
    }

    fn record_dispute(&self, view: WatchDispute, final_status: bool) {
        let mut s = self.lock_status();
        if final_status {
            *s.disputes.entry(view.status.clone()).or_default() += 1;
        }
        if let Some(d) = s
            .recent_disputes
            .iter_mut()
            .find(|d| d.dispute == view.dispute)
        {
            *d = view;
        } else {
            s.recent_disputes.push_back(view);
            while s.recent_disputes.len() > RECENT_DISPUTES {
                s.recent_disputes.pop_front();
            }
        }
    }

    /// Raises the wrong-result dispute (SPEC.md §11.1) and follows it to a verdict.
    async fn dispute(&self, heard: &Heard, spec: &JobSpec, input: &[u8]) {
        let c = &self.config;
        let challenger = c.challenger.verifying_key().to_bytes();
        let id = match vouch_proto::result_dispute_id(
            &self.network,
            &challenger,
            &heard.root,
            &c.bond.asset,
            c.bond.amount,
        ) {
            Ok(id) => hex::encode(id),
            // Only a JSON number out of range fails to canonicalize; every field is a string.
            Err(e) => {
                tracing::error!(target: "vouch_verifier::watch", error = %e, "cannot compute the dispute id");
                return;
            }
        };
        let r = &heard.receipt.receipt;
        let mut view = WatchDispute {
            dispute: id.clone(),
            receipt: hex::encode(heard.root),
            job_id: r.job_id.to_string(),
            operator: r.operator.to_string(),
            status: "pending".into(),
            detail: format!("heard at {} ms", heard.seen_ms),
            raised_at_ms: now_ms(),
            kind: "wrong_result".into(),
        };
        self.record_dispute(view.clone(), false);
        let mut signature_id = [0u8; 32];
        // Decoding our own hex encoding cannot fail.
        let _ = hex::decode_to_slice(&id, &mut signature_id);
        let body = json!({
            "challenger": hex::encode(challenger),
            "bond": {"asset": c.bond.asset, "amount": c.bond.amount.to_string()},
            "signature": hex::encode(c.challenger.sign(&signature_id).to_bytes()),
            "receipt": heard.receipt.to_json(),
            "spec": spec,
            "input_base64": base64::engine::general_purpose::STANDARD.encode(input),
        });
        // The verifier runs the job twice (maybe queued behind other disputes).
        let wait = Duration::from_millis(spec.limits.timeout_ms.saturating_mul(2))
            + Duration::from_secs(300);
        let deadline = tokio::time::Instant::now() + wait;
        let (status, detail) = self.post_and_follow(&id, &body, deadline).await;
        tracing::info!(target: "vouch_verifier::watch", dispute = %id, job_id = %r.job_id, %status, %detail, "dispute ended");
        view.status = status;
        view.detail = detail;
        self.record_dispute(view, true);
    }

    /// Posts the dispute, retrying while the verifier cannot be reached, and waits for its
    /// verdict: (final status, detail).
    async fn post_and_follow(
        &self,
        id: &str,
        body: &Value,
        deadline: tokio::time::Instant,
    ) -> (String, String) {
        let url = format!("{}/v1/disputes/result", self.config.verifier_url);
        let mut last = String::new();
        for attempt in 1..=MAX_DISPUTE_ATTEMPTS {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let sent = self.http.post(&url).json(body).timeout(left).send().await;
            let pending = match sent {
                Ok(resp) => {
                    let status = resp.status();
                    let v: Value = resp.json().await.unwrap_or(Value::Null);
                    let message = v["error"]["message"].as_str().unwrap_or_default();
                    if status.is_success() {
                        if let Some(outcome) = v["outcome"].as_str() {
                            return (outcome.into(), v["reason"].as_str().unwrap_or("").into());
                        }
                        last = format!("HTTP {status} without a verdict");
                        true
                    } else if v["error"]["code"] == "dispute_pending" {
                        true
                    } else if status.is_client_error() && status != StatusCode::REQUEST_TIMEOUT {
                        return ("refused".into(), format!("HTTP {status}: {message}"));
                    } else {
                        last = format!("HTTP {status}: {message}");
                        false
                    }
                }
                Err(e) => {
                    last = format!("POST {url}: {e}");
                    // A timeout may have cut off a judgment that goes on: ask for it.
                    e.is_timeout()
                }
            };
            if pending {
                match self.follow(id, deadline).await {
                    Some(verdict) => return verdict,
                    None => last = "the verifier does not hold the dispute".into(),
                }
            }
            tracing::warn!(target: "vouch_verifier::watch", dispute = %id, attempt, %last, "dispute not decided; trying again");
            tokio::time::sleep_until(
                (tokio::time::Instant::now() + Duration::from_secs(2)).min(deadline),
            )
            .await;
        }
        ("failed".into(), last)
    }

    /// Asks `GET /v1/disputes/{id}` until the dispute is decided (`Some(verdict)`), the
    /// verifier does not know it (`None`: post it again) or the deadline passes.
    async fn follow(&self, id: &str, deadline: tokio::time::Instant) -> Option<(String, String)> {
        let v = self.follow_status(id, deadline).await?;
        if v["state"] != "decided" {
            return Some(("failed".into(), "undecided at the deadline".into()));
        }
        let outcome = v["verdict"]["outcome"].as_str().unwrap_or("decided");
        let reason = v["verdict"]["reason"].as_str().unwrap_or("");
        Some((outcome.into(), reason.into()))
    }

    /// `GET /v1/disputes/{id}` until the dispute is decided or the deadline passes (the
    /// last status seen, `Value::Null` if none); `None` if the verifier does not know it.
    async fn follow_status(&self, id: &str, deadline: tokio::time::Instant) -> Option<Value> {
        let url = format!("{}/v1/disputes/{id}", self.config.verifier_url);
        let mut last = Value::Null;
        while tokio::time::Instant::now() < deadline {
            match get_json(&self.http, &url).await {
                Ok((200, v)) if v["state"] == "decided" => return Some(v),
                Ok((200, v)) => last = v,
                Ok((404, _)) => return None,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(target: "vouch_verifier::watch", dispute = %id, error = %e, "asking for the verdict")
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Some(last)
    }
}

/// The status API: `GET /v1/watch` (counters and recent disputes) and `GET /healthz`.
pub fn router(watcher: Arc<Watcher>) -> Router {
    Router::new()
        .route("/v1/watch", get(get_watch))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(watcher)
        .layer(tower::limit::ConcurrencyLimitLayer::new(64))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
}

async fn get_watch(State(w): State<Arc<Watcher>>) -> Json<WatchStatus> {
    Json(w.status())
}
