//! Gossip benchmark for `vouch-net`: propagation latency, sustained throughput with
//! validation, and how latency grows with the size of the network.
//!
//! Every node runs in this one process on 127.0.0.1 (TCP, mDNS off, the gossipsub
//! IP-colocation penalty waived for 127.0.0.1 as every node shares that address), with the
//! shipped `NetConfig` defaults otherwise (1 s heartbeat, 64 KiB cap). Node `i` bootstraps
//! from node `i - 1` and every second node also from one random earlier node; node 0 dials
//! the last node to close the ring. So the network starts as a ring with random chords (not
//! a star); Kademlia, seeded by the bootstrap addresses, may add further links, and the
//! degrees measured when the mesh is ready are printed. Nothing is measured until every
//! node's receipts mesh has peers and a warm-up of real receipts has gone through.
//!
//! Receipts are really signed, by four registered operator keys, each published from its
//! own node. Figures, each beside a baseline from the same run:
//!
//! 1. **Propagation** (25 nodes, 100 receipts/s, open loop, 10 s): for every (receipt,
//!    receiving node) the time from the `publish_receipt` call to the moment the receiving
//!    application gets it from its `Delivered` channel; p50, p99, max and the share of
//!    receipts that reached all 24 other nodes. Baseline: the same network with a
//!    validator that decodes but checks no signature (`DecodeOnly`). Then the same at a
//!    quarter of the rate, to tell the cost of hops from queueing for CPU.
//! 2. **Throughput** (25 nodes, bounded in flight): receipts/s delivered to every node, the
//!    process CPU time over the same window (from `/proc/self/stat`: Linux only, no
//!    `unsafe` and no dependency, at 10 ms tick resolution, which is < 1% of a multi-second
//!    window; `getrusage` would need `unsafe`, which the workspace denies), and the CPU time
//!    spent inside the validator, measured by a wrapping [`Validator`] that times each call
//!    (an upper bound on its CPU time: a preempted call is charged its wall time).
//!    Baselines: `DecodeOnly`, a single-thread loop of `SignedReceipt::verify` on the same
//!    receipts (the raw ceiling), and `ed25519_dalek::verify_batch` of 8 and 64 receipts.
//! 3. **Growth**: propagation p50/p99 at 5, 10 and 25 nodes at the same rate.
//!
//! All 25 nodes share the machine's cores, so the 25-node network at 100 receipts/s asks
//! for 2,500 node-receipts/s of work; latency then depends on how much CPU the process
//! actually gets (the CPU column and the load average say). The per-core-second figures are
//! the ones that carry over between machines.
//!
//! ```text
//! cargo bench -p vouch-net --bench gossip                 # full run, 1.5-2 minutes
//! cargo bench -p vouch-net --bench gossip -- --quick      # smoke run, about 30 s
//! cargo bench -p vouch-net --bench gossip -- --json /tmp/gossip.json
//! cargo bench -p vouch-net --bench gossip -- --in-flight 128   # throughput bound (64)
//! ```
//!
//! Prints a Markdown table on stdout and progress on stderr; unknown arguments (cargo adds
//! `--bench`) are ignored.

use std::collections::HashSet;
use std::error::Error;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use vouch_net::libp2p::identity::Keypair;
use vouch_net::libp2p::multiaddr::Protocol;
use vouch_net::libp2p::Multiaddr;
use vouch_net::{
    Delivered, NetConfig, Network, NetworkHandle, ReceiptValidator, Registry, RejectReason,
    StatsSnapshot, TopicKind, Validation, Validator,
};
use vouch_proto::{Digest, JobId, NetworkId, OperatorKey, Receipt, Root32, SignedReceipt};

/// Progress on stderr, stamped with the seconds since the bench started.
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("[{:6.1} s] {}", epoch().elapsed().as_secs_f64(), format_args!($($arg)*))
    };
}

type BoxError = Box<dyn Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

/// Operators signing receipts; each publishes from its own node.
const PUBLISHERS: usize = 4;
/// Target of figure 1: p99 propagation to all nodes of the 25-node network.
const TARGET_P99_MS: f64 = 50.0;
/// Target of figure 2: receipts validated per core-second.
const TARGET_VALIDATED_PER_CORE: f64 = 2_000.0;

// ---------------------------------------------------------------------------------------
// Plan and arguments
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Plan {
    quick: bool,
    sizes: [usize; 3],
    rate: u32,
    warmup: Duration,
    latency: Duration,
    drain: Duration,
    throughput: Duration,
    /// Start of the throughput window after the first publication (queues filling up).
    ramp: Duration,
    in_flight: usize,
    micro: Duration,
    mesh_wait: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        let s = |full: u64, quick_ms: u64| {
            if quick {
                Duration::from_millis(quick_ms)
            } else {
                Duration::from_millis(full)
            }
        };
        Plan {
            quick,
            sizes: [5, 10, 25],
            rate: 100,
            warmup: s(2_000, 1_000),
            latency: s(10_000, 2_500),
            // Upper bound only: a phase ends as soon as every receipt reached every node.
            drain: s(5_000, 3_000),
            throughput: s(5_000, 2_000),
            ramp: s(1_000, 500),
            in_flight: 64,
            micro: s(1_000, 250),
            mesh_wait: Duration::from_secs(30),
        }
    }

    fn largest(&self) -> usize {
        self.sizes[2]
    }

    fn light_rate(&self) -> u32 {
        (self.rate / 4).max(1)
    }
}

#[derive(Debug)]
struct Args {
    quick: bool,
    json: Option<String>,
    in_flight: Option<usize>,
}

fn parse_args() -> Res<Args> {
    let mut args = std::env::args().skip(1);
    let mut out = Args {
        quick: false,
        json: None,
        in_flight: None,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => out.quick = true,
            "--json" => {
                out.json = Some(args.next().ok_or("--json needs a file path")?);
            }
            "--in-flight" => {
                let n: usize = args.next().ok_or("--in-flight needs a number")?.parse()?;
                out.in_flight = Some(n.max(1));
            }
            // cargo bench passes `--bench`; filters and other flags do not apply here.
            _ => {}
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Clocks
// ---------------------------------------------------------------------------------------

/// All timestamps are nanoseconds since this instant, so they fit in atomics.
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

fn ns_since_epoch(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

fn now_ns() -> u64 {
    ns_since_epoch(Instant::now())
}

/// Clock ticks per second of `/proc/*/stat` (USER_HZ): asked of `getconf` rather than
/// assumed, falling back to 100, its value on every mainstream Linux ABI.
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// utime + stime of `/proc/<path>/stat`, in seconds.
fn cpu_seconds(path: &str) -> Res<f64> {
    let stat = std::fs::read_to_string(path)?;
    // The command name (field 2) may contain spaces; fields after its closing parenthesis
    // start at field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("unexpected /proc stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Res<f64> {
        Ok(fields
            .get(i)
            .ok_or("short /proc stat line")?
            .parse::<f64>()?)
    };
    Ok((field(11)? + field(12)?) / clock_ticks())
}

fn process_cpu() -> Res<f64> {
    cpu_seconds("/proc/self/stat")
}

fn thread_cpu() -> Res<f64> {
    cpu_seconds("/proc/thread-self/stat")
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

// ---------------------------------------------------------------------------------------
// Receipts and validators
// ---------------------------------------------------------------------------------------

fn network_id() -> NetworkId {
    NetworkId::from_name("vouch-net-bench")
}

fn operators() -> Vec<SigningKey> {
    (0..PUBLISHERS)
        .map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32]))
        .collect()
}

fn registry_of(keys: &[SigningKey]) -> Registry {
    let registry = Registry::default();
    {
        let mut set = match registry.write() {
            Ok(set) => set,
            Err(poisoned) => poisoned.into_inner(),
        };
        set.extend(
            keys.iter()
                .map(|k| OperatorKey(k.verifying_key().to_bytes())),
        );
    }
    registry
}

/// Receipts `base .. base + count`; receipt `k` is signed by operator `k % PUBLISHERS`, and
/// its sequence number (unique in the whole run, so every payload is new to the network)
/// is `base + k`.
fn sign_receipts(ops: &[SigningKey], base: u64, count: usize) -> Vec<SignedReceipt> {
    (0..count)
        .map(|k| {
            let key = &ops[k % ops.len()];
            let sequence = base + k as u64;
            let receipt = Receipt {
                network_id: network_id(),
                operator: OperatorKey(key.verifying_key().to_bytes()),
                sequence,
                job_id: JobId(Digest::of(&sequence.to_be_bytes()).0),
                image: Digest::of(b"bench image"),
                input_digest: Digest::of(b"bench input"),
                output_digest: Digest::of(&sequence.to_le_bytes()),
                output_len: 8,
                exit_code: 0,
                trace_root: Root32::default(),
                trace_len: 0,
                issued_at_ms: 1_700_000_000_000 + sequence,
            };
            let signature = key.sign(&receipt.signing_root()).to_bytes();
            SignedReceipt { receipt, signature }
        })
        .collect()
}

/// Hands out sequence ranges so that no two phases publish the same bytes.
#[derive(Debug, Default)]
struct Sequences(u64);

impl Sequences {
    fn take(&mut self, count: usize) -> u64 {
        let base = self.0;
        self.0 += count as u64;
        base
    }
}

/// What the nodes of one network check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckKind {
    /// `ReceiptValidator`: size, decode, network id, strict signature, registration.
    Receipt,
    /// Baseline: decodes the receipt and accepts it, no signature or registry check.
    DecodeOnly,
}

impl CheckKind {
    fn label(self) -> &'static str {
        match self {
            CheckKind::Receipt => "ReceiptValidator",
            CheckKind::DecodeOnly => "decode-only (no signature check)",
        }
    }
}

/// Calls and time spent in `validate`, summed over every node of a network.
#[derive(Debug, Default)]
struct ValCounters {
    calls: AtomicU64,
    nanos: AtomicU64,
}

/// Wraps the validator a node runs and times each call on the network task.
struct Timed {
    kind: CheckKind,
    receipts: ReceiptValidator,
    counters: Arc<ValCounters>,
}

impl Validator for Timed {
    fn validate(&self, kind: TopicKind, data: &[u8]) -> Validation {
        let start = Instant::now();
        let verdict = match self.kind {
            CheckKind::Receipt => self.receipts.validate(kind, data),
            CheckKind::DecodeOnly => match kind {
                TopicKind::Receipts => match SignedReceipt::decode(data) {
                    Ok(receipt) => Validation::Accept {
                        receipt: Some(receipt),
                    },
                    Err(_) => Validation::Reject(RejectReason::Decode),
                },
                TopicKind::Jobs | TopicKind::Verdicts => Validation::Ignore,
            },
        };
        let nanos = start.elapsed().as_nanos() as u64;
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        self.counters.nanos.fetch_add(nanos, Ordering::Relaxed);
        verdict
    }
}

// ---------------------------------------------------------------------------------------
// Micro-benchmarks: signature verification on one thread
// ---------------------------------------------------------------------------------------

/// Runs `step` (which handles some items and returns how many) for about `budget`; returns
/// seconds per item, by this thread's CPU time (by wall time if `/proc` is unreadable).
fn per_item(budget: Duration, mut step: impl FnMut() -> Res<usize>) -> Res<f64> {
    // Warm caches and branch predictors first.
    step()?;
    let cpu0 = thread_cpu().ok();
    let wall0 = Instant::now();
    let mut items = 0usize;
    while wall0.elapsed() < budget {
        items += step()?;
    }
    let wall = wall0.elapsed().as_secs_f64();
    let spent = match (cpu0, thread_cpu().ok()) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => wall,
    };
    Ok(spent / items.max(1) as f64)
}

#[derive(Debug, Clone, Copy)]
struct Micro {
    /// `SignedReceipt::verify` on decoded receipts (the raw ceiling of the brief).
    verify: f64,
    /// `SignedReceipt::decode` + `verify`: what `ReceiptValidator` does per message.
    decode_verify: f64,
    /// `verify_strict` with the operator key decompressed once and cached.
    cached_key: f64,
    /// decode + key decompression + `verify_batch`, per receipt, 8 at a time.
    batch8: f64,
    /// The same, 64 at a time.
    batch64: f64,
}

fn micro(receipts: &[SignedReceipt], budget: Duration) -> Res<Micro> {
    let encoded: Vec<[u8; 324]> = receipts.iter().map(|r| r.encode()).collect();
    let mut i = 0usize;
    let verify = per_item(budget, || {
        i = (i + 1) % receipts.len();
        receipts[i]
            .verify()
            .map_err(|e| format!("bench receipt {i} does not verify: {e}"))?;
        Ok(1)
    })?;
    let decode_verify = per_item(budget, || {
        i = (i + 1) % encoded.len();
        let r = SignedReceipt::decode(&encoded[i])?;
        r.verify()?;
        Ok(1)
    })?;
    let keys: Vec<(OperatorKey, VerifyingKey)> = operators()
        .iter()
        .map(|k| (OperatorKey(k.verifying_key().to_bytes()), k.verifying_key()))
        .collect();
    let cached_key = per_item(budget, || {
        i = (i + 1) % encoded.len();
        let r = SignedReceipt::decode(&encoded[i])?;
        let vk = keys
            .iter()
            .find(|(op, _)| *op == r.receipt.operator)
            .map(|(_, vk)| vk)
            .ok_or("bench receipt signed by an unknown operator")?;
        vk.verify_strict(
            &r.receipt.signing_root(),
            &Signature::from_bytes(&r.signature),
        )?;
        Ok(1)
    })?;
    let batch = |size: usize| -> Res<f64> {
        let chunks: Vec<&[[u8; 324]]> = encoded.chunks_exact(size).collect();
        let mut c = 0usize;
        per_item(budget, || {
            c = (c + 1) % chunks.len();
            let mut roots = Vec::with_capacity(size);
            let mut sigs = Vec::with_capacity(size);
            let mut vks = Vec::with_capacity(size);
            for bytes in chunks[c] {
                let r = SignedReceipt::decode(bytes)?;
                vks.push(VerifyingKey::from_bytes(r.receipt.operator.as_bytes())?);
                sigs.push(Signature::from_bytes(&r.signature));
                roots.push(r.receipt.signing_root());
            }
            let msgs: Vec<&[u8]> = roots.iter().map(|r| r.as_slice()).collect();
            ed25519_dalek::verify_batch(&msgs, &sigs, &vks)?;
            black_box(&msgs);
            Ok(size)
        })
    };
    Ok(Micro {
        verify,
        decode_verify,
        cached_key,
        batch8: batch(8)?,
        batch64: batch(64)?,
    })
}

// ---------------------------------------------------------------------------------------
// Networks
// ---------------------------------------------------------------------------------------

struct Node {
    net: NetworkHandle,
    rx: Option<mpsc::Receiver<Delivered>>,
    addr: Multiaddr,
}

struct Net {
    nodes: Vec<Node>,
    publishers: [usize; PUBLISHERS],
    counters: Arc<ValCounters>,
    topology: Topology,
}

/// Connected peers and receipts-mesh sizes per node when measuring starts.
#[derive(Debug, Clone, Copy, Default)]
struct Topology {
    links: usize,
    peers: (usize, f64, usize),
    mesh: (usize, f64, usize),
}

fn min_mean_max(v: &[usize]) -> (usize, f64, usize) {
    let min = v.iter().copied().min().unwrap_or(0);
    let max = v.iter().copied().max().unwrap_or(0);
    let mean = v.iter().sum::<usize>() as f64 / v.len().max(1) as f64;
    (min, mean, max)
}

async fn build_network(
    n: usize,
    check: CheckKind,
    registry: &Registry,
    rng: &mut StdRng,
    plan: &Plan,
) -> Res<Net> {
    let counters = Arc::new(ValCounters::default());
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    let mut links = 0;
    for i in 0..n {
        let mut c = NetConfig::new(network_id());
        c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
        c.mdns = false;
        c.colocation_whitelist = HashSet::from([IpAddr::V4(Ipv4Addr::LOCALHOST)]);
        if i > 0 {
            c.bootstrap.push(nodes[i - 1].addr.clone());
            if i >= 3 && i % 2 == 0 {
                let j = rng.gen_range(0..i - 1);
                c.bootstrap.push(nodes[j].addr.clone());
            }
            links += c.bootstrap.len();
        }
        let validator = Timed {
            kind: check,
            receipts: ReceiptValidator::new(network_id(), registry.clone()),
            counters: counters.clone(),
        };
        let (net, rx) = Network::spawn(c, Keypair::generate_ed25519(), validator).await?;
        let mut addr = net
            .listen_addrs()
            .await?
            .into_iter()
            .next()
            .ok_or("a node reports no listen address")?;
        addr.push(Protocol::P2p(net.local_peer_id()));
        nodes.push(Node {
            net,
            rx: Some(rx),
            addr,
        });
    }
    if n >= 3 {
        nodes[0].net.dial(nodes[n - 1].addr.clone()).await?;
        links += 1;
    }
    let publishers = std::array::from_fn(|p| p * n / PUBLISHERS);

    let deadline = Instant::now() + plan.mesh_wait;
    loop {
        let mut empty = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            if node.net.mesh_peers(TopicKind::Receipts).await?.is_empty() {
                empty.push(i);
            }
        }
        if empty.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{n}-node network: receipts mesh still empty on nodes {empty:?} after {:?}",
                plan.mesh_wait
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut net = Net {
        nodes,
        publishers,
        counters,
        topology: Topology::default(),
    };
    net.topology = topology(&net, links).await?;
    Ok(net)
}

async fn topology(net: &Net, links: usize) -> Res<Topology> {
    let mut peers = Vec::new();
    let mut mesh = Vec::new();
    for node in &net.nodes {
        peers.push(node.net.peers().await?.len());
        mesh.push(node.net.mesh_peers(TopicKind::Receipts).await?.len());
    }
    Ok(Topology {
        links,
        peers: min_mean_max(&peers),
        mesh: min_mean_max(&mesh),
    })
}

impl Net {
    fn stats(&self) -> StatsSnapshot {
        let mut sum = StatsSnapshot::default();
        for node in &self.nodes {
            let s = node.net.stats();
            sum.accepted += s.accepted;
            sum.rejected_size += s.rejected_size;
            sum.rejected_decode += s.rejected_decode;
            sum.rejected_network += s.rejected_network;
            sum.rejected_signature += s.rejected_signature;
            sum.rejected_unregistered += s.rejected_unregistered;
            sum.ignored += s.ignored;
            sum.duplicates += s.duplicates;
            sum.dropped_full += s.dropped_full;
        }
        sum
    }

    async fn shutdown(self) {
        for node in &self.nodes {
            if let Err(e) = node.net.shutdown().await {
                progress!("shutdown: {e}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Phases: publish a set of receipts, record every delivery
// ---------------------------------------------------------------------------------------

/// One batch of receipts in flight through a network, and what happened to each.
struct Phase {
    base: u64,
    receipts: Vec<SignedReceipt>,
    /// When the `publish_receipt` call for receipt k started (ns since the epoch; 0: not
    /// published).
    published_at: Vec<AtomicU64>,
    /// Receiving nodes that have not had receipt k yet.
    remaining: Vec<AtomicU32>,
    /// When the last receiving node got receipt k (0: not yet).
    completed_at: Vec<AtomicU64>,
    completed: AtomicU64,
    /// For closed-loop publishing: one permit returns when a receipt reached every node.
    permits: Option<Arc<Semaphore>>,
}

impl Phase {
    fn new(base: u64, receipts: Vec<SignedReceipt>, receivers: u32) -> Self {
        let n = receipts.len();
        Phase {
            base,
            receipts,
            published_at: (0..n).map(|_| AtomicU64::new(0)).collect(),
            remaining: (0..n).map(|_| AtomicU32::new(receivers)).collect(),
            completed_at: (0..n).map(|_| AtomicU64::new(0)).collect(),
            completed: AtomicU64::new(0),
            permits: None,
        }
    }

    fn index(&self, d: &Delivered) -> Option<usize> {
        let sequence = match &d.receipt {
            Some(r) => r.receipt.sequence,
            None => SignedReceipt::decode(&d.data).ok()?.receipt.sequence,
        };
        let k = usize::try_from(sequence.checked_sub(self.base)?).ok()?;
        (k < self.receipts.len()).then_some(k)
    }

    fn published(&self) -> usize {
        self.published_at
            .iter()
            .filter(|t| t.load(Ordering::Acquire) != 0)
            .count()
    }
}

/// What one receiving node saw during a phase.
#[derive(Debug, Default)]
struct Seen {
    /// (receipt index, ns since the epoch when the application got it).
    deliveries: Vec<(u32, u64)>,
    /// Time each message waited in the `Delivered` channel (ns).
    channel_wait: Vec<u64>,
    /// Deliveries of receipts not in this phase (stragglers of an earlier one).
    stray: u64,
    /// More deliveries of a receipt than there are receivers (a node got it twice).
    excess: u64,
}

async fn consume(
    mut rx: mpsc::Receiver<Delivered>,
    phase: Arc<Phase>,
    mut stop: watch::Receiver<bool>,
) -> (mpsc::Receiver<Delivered>, Seen) {
    let mut seen = Seen::default();
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            d = rx.recv() => {
                let Some(d) = d else { break };
                let t = now_ns();
                let Some(k) = phase.index(&d) else {
                    seen.stray += 1;
                    continue;
                };
                seen.deliveries.push((k as u32, t));
                seen.channel_wait.push(t.saturating_sub(ns_since_epoch(d.received_at)));
                let left = phase.remaining[k]
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1));
                match left {
                    Ok(1) => {
                        phase.completed_at[k].store(t, Ordering::Release);
                        phase.completed.fetch_add(1, Ordering::AcqRel);
                        if let Some(permits) = &phase.permits {
                            permits.add_permits(1);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => seen.excess += 1,
                }
            }
        }
    }
    (rx, seen)
}

type Consumers = Vec<tokio::task::JoinHandle<(mpsc::Receiver<Delivered>, Seen)>>;

fn start_consumers(net: &mut Net, phase: &Arc<Phase>) -> Res<(watch::Sender<bool>, Consumers)> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut handles = Vec::with_capacity(net.nodes.len());
    for node in &mut net.nodes {
        let rx = node.rx.take().ok_or("delivery receiver already taken")?;
        handles.push(tokio::spawn(consume(rx, phase.clone(), stop_rx.clone())));
    }
    Ok((stop_tx, handles))
}

async fn stop_consumers(
    net: &mut Net,
    stop: watch::Sender<bool>,
    handles: Consumers,
) -> Res<Vec<Seen>> {
    stop.send_replace(true);
    let mut seen = Vec::with_capacity(handles.len());
    for (node, h) in net.nodes.iter_mut().zip(handles) {
        let (rx, s) = h.await?;
        node.rx = Some(rx);
        seen.push(s);
    }
    Ok(seen)
}

/// Publisher `p` publishes receipts p, p + PUBLISHERS, ... from its node.
fn share(phase: &Phase, p: usize) -> Vec<usize> {
    (p..phase.receipts.len()).step_by(PUBLISHERS).collect()
}

#[derive(Debug, Default)]
struct Published {
    errors: u64,
    first_error: Option<String>,
    /// Longest `publish_receipt` call (ns).
    slowest_call: u64,
}

async fn publish_one(net: &NetworkHandle, phase: &Phase, k: usize, out: &mut Published) {
    let start = now_ns();
    phase.published_at[k].store(start.max(1), Ordering::Release);
    if let Err(e) = net.publish_receipt(&phase.receipts[k]).await {
        out.errors += 1;
        out.first_error.get_or_insert_with(|| e.to_string());
        // Not published: the receipt must not count as in flight.
        phase.published_at[k].store(0, Ordering::Release);
    }
    out.slowest_call = out.slowest_call.max(now_ns().saturating_sub(start));
}

/// Open loop: every publisher at `rate / PUBLISHERS` per second, staggered so the network
/// sees one publication every `1 / rate`.
async fn publish_at_rate(
    net: NetworkHandle,
    phase: Arc<Phase>,
    p: usize,
    rate: u32,
    start: tokio::time::Instant,
) -> Published {
    let mut out = Published::default();
    let period = Duration::from_secs_f64(PUBLISHERS as f64 / f64::from(rate));
    let offset = Duration::from_secs_f64(p as f64 / f64::from(rate));
    let mut tick = tokio::time::interval_at(start + offset, period);
    // Keep the average rate if a publish call ever stalls.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for k in share(&phase, p) {
        tick.tick().await;
        publish_one(&net, &phase, k, &mut out).await;
    }
    out
}

/// Closed loop: publish whenever fewer than `in_flight` receipts are still travelling.
async fn publish_saturated(
    net: NetworkHandle,
    phase: Arc<Phase>,
    p: usize,
    deadline: tokio::time::Instant,
    exhausted: Arc<Notify>,
) -> Published {
    let mut out = Published::default();
    let Some(permits) = phase.permits.clone() else {
        return out;
    };
    for k in share(&phase, p) {
        // `timeout_at` returns a ready permit even after the deadline, so check it first.
        if tokio::time::Instant::now() >= deadline {
            return out;
        }
        match tokio::time::timeout_at(deadline, permits.acquire()).await {
            Ok(Ok(permit)) => permit.forget(),
            _ => return out,
        }
        publish_one(&net, &phase, k, &mut out).await;
    }
    exhausted.notify_one();
    out
}

/// Waits until every published receipt reached every node, or `limit` passes.
async fn drain(phase: &Phase, limit: Duration) {
    let deadline = Instant::now() + limit;
    let published = phase.published() as u64;
    while phase.completed.load(Ordering::Acquire) < published && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Percentiles {
    count: usize,
    p50: f64,
    p99: f64,
    max: f64,
}

/// Nearest-rank percentiles of nanosecond samples, in milliseconds.
fn percentiles(mut ns: Vec<u64>) -> Percentiles {
    if ns.is_empty() {
        return Percentiles::default();
    }
    ns.sort_unstable();
    let at = |q: f64| {
        let rank = ((q * ns.len() as f64).ceil() as usize).clamp(1, ns.len());
        ns[rank - 1] as f64 / 1e6
    };
    Percentiles {
        count: ns.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// Propagation figures of one phase.
#[derive(Debug, Clone, Default)]
struct Propagation {
    nodes: usize,
    attempted: usize,
    published: usize,
    publish_errors: u64,
    first_error: Option<String>,
    slowest_publish_ms: f64,
    latency: Percentiles,
    channel_wait: Percentiles,
    /// Receipts that reached all n - 1 other nodes / receipts attempted.
    delivered_to_all: f64,
    /// (receipt, node) pairs delivered / pairs expected.
    pairs_delivered: f64,
    duplicates: u64,
    stray: u64,
    /// Process CPU seconds per wall second while publishing (cores kept busy).
    cores: f64,
}

fn analyse(phase: &Phase, seen: &[Seen], published: &[Published]) -> Propagation {
    let n = seen.len();
    let attempted = phase.receipts.len();
    let mut lat = Vec::new();
    let mut wait = Vec::new();
    let mut pairs = 0usize;
    let mut duplicates = 0u64;
    let mut stray = 0u64;
    for s in seen {
        let mut mine = HashSet::new();
        for &(k, t) in &s.deliveries {
            if !mine.insert(k) {
                duplicates += 1;
                continue;
            }
            let sent = phase.published_at[k as usize].load(Ordering::Acquire);
            if sent != 0 {
                lat.push(t.saturating_sub(sent));
                pairs += 1;
            }
        }
        wait.extend_from_slice(&s.channel_wait);
        duplicates += s.excess;
        stray += s.stray;
    }
    let complete = phase.completed.load(Ordering::Acquire) as usize;
    let receivers = n.saturating_sub(1).max(1);
    Propagation {
        nodes: n,
        attempted,
        published: phase.published(),
        publish_errors: published.iter().map(|p| p.errors).sum(),
        first_error: published.iter().find_map(|p| p.first_error.clone()),
        slowest_publish_ms: published.iter().map(|p| p.slowest_call).max().unwrap_or(0) as f64
            / 1e6,
        latency: percentiles(lat),
        channel_wait: percentiles(wait),
        delivered_to_all: complete as f64 / attempted.max(1) as f64,
        pairs_delivered: pairs as f64 / (attempted * receivers).max(1) as f64,
        duplicates,
        stray,
        cores: 0.0,
    }
}

/// Publishes `rate` receipts/s for `duration` from the network's publisher nodes and
/// measures propagation to every other node.
async fn rate_phase(
    net: &mut Net,
    ctx: &mut Ctx,
    rate: u32,
    duration: Duration,
) -> Res<Propagation> {
    let count = (duration.as_secs_f64() * f64::from(rate)).round() as usize;
    let (ops, seqs, plan) = (&ctx.ops, &mut ctx.seqs, &ctx.plan);
    let base = seqs.take(count);
    let receivers = u32::try_from(net.nodes.len() - 1)?;
    let phase = Arc::new(Phase::new(base, sign_receipts(ops, base, count), receivers));
    let (stop, consumers) = start_consumers(net, &phase)?;
    let cpu0 = (Instant::now(), process_cpu()?);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut pubs = Vec::new();
    for (p, &node) in net.publishers.iter().enumerate() {
        pubs.push(tokio::spawn(publish_at_rate(
            net.nodes[node].net.clone(),
            phase.clone(),
            p,
            rate,
            start,
        )));
    }
    let mut published = Vec::new();
    for h in pubs {
        published.push(h.await?);
    }
    let cores = (process_cpu()? - cpu0.1) / cpu0.0.elapsed().as_secs_f64();
    drain(&phase, plan.drain).await;
    let seen = stop_consumers(net, stop, consumers).await?;
    let mut propagation = analyse(&phase, &seen, &published);
    propagation.cores = cores;
    Ok(propagation)
}

/// Sustained-throughput figures.
#[derive(Debug, Clone, Default)]
struct Throughput {
    window_s: f64,
    /// Receipts that reached every node within the window, per second.
    per_second: f64,
    /// Process CPU seconds per wall second in the window (cores kept busy).
    cores: f64,
    cpu_s: f64,
    validations: u64,
    validate_s: f64,
    /// Receipts that reached all nodes per process core-second.
    receipts_per_core_s: f64,
    /// Validations (one per node per receipt) per process core-second: a node's whole
    /// receive-verify-forward cost.
    node_receipts_per_core_s: f64,
    /// Validations per core-second spent inside the validator.
    validated_per_core_s: f64,
    /// Share of the process CPU spent inside the validator.
    validate_share: f64,
    /// Propagation under saturation (latency from publish to each delivery).
    loaded: Propagation,
    exhausted: bool,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: u64,
    cpu: f64,
    calls: u64,
    nanos: u64,
}

fn sample(counters: &ValCounters) -> Res<Sample> {
    Ok(Sample {
        at: now_ns(),
        cpu: process_cpu()?,
        calls: counters.calls.load(Ordering::Relaxed),
        nanos: counters.nanos.load(Ordering::Relaxed),
    })
}

async fn throughput_phase(
    net: &mut Net,
    ops: &[SigningKey],
    seqs: &mut Sequences,
    plan: &Plan,
) -> Res<Throughput> {
    // 25 nodes in one process move ~70-90 receipts/s per core, so 2,000/s is far more than
    // any machine this runs on will use; the window ends early (and says so) if they run out.
    let count = (plan.throughput.as_secs_f64() * 2_000.0) as usize;
    let base = seqs.take(count);
    let receivers = u32::try_from(net.nodes.len() - 1)?;
    let mut phase = Phase::new(base, sign_receipts(ops, base, count), receivers);
    phase.permits = Some(Arc::new(Semaphore::new(plan.in_flight)));
    let phase = Arc::new(phase);
    let (stop, consumers) = start_consumers(net, &phase)?;

    let t0 = tokio::time::Instant::now();
    let deadline = t0 + plan.throughput;
    let exhausted = Arc::new(Notify::new());
    let mut pubs = Vec::new();
    for (p, &node) in net.publishers.iter().enumerate() {
        pubs.push(tokio::spawn(publish_saturated(
            net.nodes[node].net.clone(),
            phase.clone(),
            p,
            deadline,
            exhausted.clone(),
        )));
    }
    tokio::time::sleep_until(t0 + plan.ramp).await;
    let a = sample(&net.counters)?;
    let ran_out = tokio::select! {
        _ = tokio::time::sleep_until(deadline) => false,
        _ = exhausted.notified() => true,
    };
    let b = sample(&net.counters)?;
    let mut published = Vec::new();
    for h in pubs {
        published.push(h.await?);
    }
    drain(&phase, plan.drain).await;
    let seen = stop_consumers(net, stop, consumers).await?;

    let in_window = phase
        .completed_at
        .iter()
        .map(|t| t.load(Ordering::Acquire))
        .filter(|&t| t > a.at && t <= b.at)
        .count();
    let window_s = (b.at - a.at) as f64 / 1e9;
    let cpu_s = b.cpu - a.cpu;
    let validations = b.calls - a.calls;
    let validate_s = (b.nanos - a.nanos) as f64 / 1e9;
    let mut loaded = analyse(&phase, &seen, &published);
    // In a closed loop only what was published is expected (the pool is oversized).
    let expected = loaded.published.max(1) as f64;
    loaded.delivered_to_all = phase.completed.load(Ordering::Acquire) as f64 / expected;
    loaded.pairs_delivered *= loaded.attempted as f64 / expected;
    loaded.cores = cpu_s / window_s;
    Ok(Throughput {
        window_s,
        per_second: in_window as f64 / window_s,
        cores: cpu_s / window_s,
        cpu_s,
        validations,
        validate_s,
        receipts_per_core_s: in_window as f64 / cpu_s,
        node_receipts_per_core_s: validations as f64 / cpu_s,
        validated_per_core_s: validations as f64 / validate_s,
        validate_share: validate_s / cpu_s,
        loaded,
        exhausted: ran_out,
    })
}

// ---------------------------------------------------------------------------------------
// One network, end to end
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct NetResult {
    nodes: usize,
    check: CheckKind,
    topology: Topology,
    setup_s: f64,
    warmup: Propagation,
    propagation: Propagation,
    /// At `Plan::light_rate`, on the networks that also run the throughput phase.
    light: Option<Propagation>,
    throughput: Option<Throughput>,
    stats: StatsSnapshot,
}

async fn run_network(
    n: usize,
    check: CheckKind,
    with_throughput: bool,
    ctx: &mut Ctx,
) -> Res<NetResult> {
    let started = Instant::now();
    progress!("==> {n} nodes, {}: starting", check.label());
    let mut net = build_network(n, check, &ctx.registry, &mut ctx.rng, &ctx.plan).await?;
    let setup_s = started.elapsed().as_secs_f64();
    let t = net.topology;
    progress!(
        "    mesh ready in {setup_s:.1} s: peers min/mean/max {}/{:.1}/{}, mesh {}/{:.1}/{}",
        t.peers.0,
        t.peers.1,
        t.peers.2,
        t.mesh.0,
        t.mesh.1,
        t.mesh.2
    );
    let plan = ctx.plan;
    let warmup = rate_phase(&mut net, ctx, plan.rate, plan.warmup).await?;
    if warmup.delivered_to_all < 1.0 {
        progress!(
            "    warning: warm-up reached every node for only {:.1}% of receipts",
            warmup.delivered_to_all * 100.0
        );
    }
    settle(plan.drain).await?;
    progress!("    propagation at {}/s for {:?}", plan.rate, plan.latency);
    let propagation = rate_phase(&mut net, ctx, plan.rate, plan.latency).await?;
    log_propagation(&propagation);
    let mut light = None;
    let throughput = if with_throughput {
        // The same network at a quarter of the rate: what propagation costs when the
        // process is not short of CPU, to tell hops from queueing.
        let rate = plan.light_rate();
        settle(plan.drain).await?;
        progress!("    propagation at {rate}/s for {:?}", plan.latency / 2);
        let p = rate_phase(&mut net, ctx, rate, plan.latency / 2).await?;
        log_propagation(&p);
        light = Some(p);
        settle(plan.drain).await?;
        progress!(
            "    throughput, {} in flight, {:?}",
            plan.in_flight,
            plan.throughput
        );
        let tp = throughput_phase(&mut net, &ctx.ops, &mut ctx.seqs, &plan).await?;
        progress!(
            "    {:.0} receipts/s to all, {:.2} cores busy, {:.0} validations/core-s in the validator",
            tp.per_second, tp.cores, tp.validated_per_core_s
        );
        Some(tp)
    } else {
        None
    };
    let stats = net.stats();
    net.shutdown().await;
    Ok(NetResult {
        nodes: n,
        check,
        topology: t,
        setup_s,
        warmup,
        propagation,
        light,
        throughput,
        stats,
    })
}

/// Waits (bounded) until the process is nearly idle: a phase can report every receipt
/// delivered while duplicate copies still sit in send queues, and the next phase must not
/// pay for them.
async fn settle(limit: Duration) -> Res<()> {
    const IDLE_CORES: f64 = 0.25;
    const STEP: Duration = Duration::from_millis(250);
    let deadline = Instant::now() + limit;
    let mut last = (Instant::now(), process_cpu()?);
    loop {
        tokio::time::sleep(STEP).await;
        let now = (Instant::now(), process_cpu()?);
        let cores = (now.1 - last.1) / (now.0 - last.0).as_secs_f64();
        if cores < IDLE_CORES {
            return Ok(());
        }
        if now.0 >= deadline {
            progress!("    still {cores:.2} cores busy after {limit:?}; measuring anyway");
            return Ok(());
        }
        last = now;
    }
}

fn log_propagation(p: &Propagation) {
    progress!(
        "    p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, to all {:.2}%, {:.2} cores",
        p.latency.p50,
        p.latency.p99,
        p.latency.max,
        p.delivered_to_all * 100.0,
        p.cores
    );
}

struct Ctx {
    plan: Plan,
    ops: Vec<SigningKey>,
    registry: Registry,
    rng: StdRng,
    seqs: Sequences,
}

// ---------------------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------------------

/// One row of the table: a figure beside its baseline.
struct Row {
    figure: String,
    unit: &'static str,
    value: f64,
    baseline: f64,
    baseline_is: String,
    target: Option<String>,
    met: Option<bool>,
}

impl Row {
    fn ratio(&self) -> f64 {
        if self.baseline == 0.0 {
            f64::NAN
        } else {
            self.value / self.baseline
        }
    }

    fn json(&self) -> Value {
        let num = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
        json!({
            "figure": self.figure,
            "unit": self.unit,
            "value": num(self.value),
            "baseline": num(self.baseline),
            "baseline_is": self.baseline_is,
            "ratio": num(self.ratio()),
            "target": self.target,
            "met": self.met,
        })
    }
}

fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// Share of the process CPU that `validations` strict verifications would take at the
/// one-thread cost: a cross-check of the timed validator that preemption cannot inflate.
fn calibrated_share(tp: &Throughput, micro: &Micro) -> f64 {
    tp.validations as f64 * micro.decode_verify / tp.cpu_s
}

fn propagation_json(p: &Propagation) -> Value {
    json!({
        "nodes": p.nodes,
        "attempted": p.attempted,
        "published": p.published,
        "publish_errors": p.publish_errors,
        "first_publish_error": p.first_error,
        "slowest_publish_call_ms": p.slowest_publish_ms,
        "latency_ms": {"samples": p.latency.count, "p50": p.latency.p50, "p99": p.latency.p99, "max": p.latency.max},
        "channel_wait_ms": {"p50": p.channel_wait.p50, "p99": p.channel_wait.p99, "max": p.channel_wait.max},
        "delivered_to_all": p.delivered_to_all,
        "pairs_delivered": p.pairs_delivered,
        "duplicate_deliveries": p.duplicates,
        "stray_deliveries": p.stray,
        "process_cpu_cores": p.cores,
    })
}

fn network_json(r: &NetResult) -> Value {
    let t = &r.topology;
    let tp = r.throughput.as_ref().map(|tp| {
        json!({
            "window_s": tp.window_s,
            "receipts_per_s_to_all": tp.per_second,
            "cores_busy": tp.cores,
            "process_cpu_s": tp.cpu_s,
            "validations": tp.validations,
            "validate_s": tp.validate_s,
            "receipts_to_all_per_core_s": tp.receipts_per_core_s,
            "node_receipts_per_core_s": tp.node_receipts_per_core_s,
            "validated_per_core_s": tp.validated_per_core_s,
            "validate_share_of_cpu": tp.validate_share,
            "receipts_ran_out": tp.exhausted,
            "under_load": propagation_json(&tp.loaded),
        })
    });
    let s = &r.stats;
    json!({
        "nodes": r.nodes,
        "validator": r.check.label(),
        "setup_s": r.setup_s,
        "topology": {
            "bootstrap_links": t.links,
            "peers_min_mean_max": [t.peers.0, t.peers.1, t.peers.2],
            "mesh_min_mean_max": [t.mesh.0, t.mesh.1, t.mesh.2],
        },
        "warmup": propagation_json(&r.warmup),
        "propagation": propagation_json(&r.propagation),
        "propagation_light": r.light.as_ref().map(propagation_json),
        "throughput": tp,
        "stats": {
            "accepted": s.accepted, "rejected": s.rejected(), "ignored": s.ignored,
            "duplicates": s.duplicates, "dropped_full": s.dropped_full,
        },
    })
}

fn report(
    plan: &Plan,
    micro: &Micro,
    nets: &[NetResult],
    load: (&str, &str),
) -> Res<(String, Value)> {
    let find = |n: usize, c: CheckKind| {
        nets.iter()
            .find(|r| r.nodes == n && r.check == c)
            .ok_or_else(|| format!("no result for {n} nodes with {}", c.label()))
    };
    let big = plan.largest();
    let v = find(big, CheckKind::Receipt)?;
    let d = find(big, CheckKind::DecodeOnly)?;
    let (vt, dt) = match (&v.throughput, &d.throughput) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err("the throughput phase did not run".into()),
    };
    let (vl, dl) = match (&v.light, &d.light) {
        (Some(a), Some(b)) => (a, b),
        _ => return Err("the light-rate phase did not run".into()),
    };
    let light = plan.light_rate();
    let small = find(plan.sizes[0], CheckKind::Receipt)?;
    let others = big - 1;
    let decode_only = "same network, decode-only validator".to_string();
    let mut rows = vec![
        Row {
            figure: format!("propagation p50, {big} nodes, {}/s", plan.rate),
            unit: "ms",
            value: v.propagation.latency.p50,
            baseline: d.propagation.latency.p50,
            baseline_is: decode_only.clone(),
            target: None,
            met: None,
        },
        Row {
            figure: format!("propagation p99, {big} nodes, {}/s", plan.rate),
            unit: "ms",
            value: v.propagation.latency.p99,
            baseline: d.propagation.latency.p99,
            baseline_is: decode_only.clone(),
            target: Some(format!("≤ {TARGET_P99_MS} ms")),
            met: Some(v.propagation.latency.p99 <= TARGET_P99_MS),
        },
        Row {
            figure: format!("propagation max, {big} nodes, {}/s", plan.rate),
            unit: "ms",
            value: v.propagation.latency.max,
            baseline: d.propagation.latency.max,
            baseline_is: decode_only.clone(),
            target: None,
            met: None,
        },
        Row {
            figure: format!("receipts delivered to all {others} other nodes"),
            unit: "%",
            value: v.propagation.delivered_to_all * 100.0,
            baseline: d.propagation.delivered_to_all * 100.0,
            baseline_is: decode_only.clone(),
            target: Some("100%".into()),
            met: Some(v.propagation.delivered_to_all >= 1.0),
        },
        Row {
            figure: format!("propagation p50, {big} nodes, {light}/s (below saturation)"),
            unit: "ms",
            value: vl.latency.p50,
            baseline: dl.latency.p50,
            baseline_is: decode_only.clone(),
            target: None,
            met: None,
        },
        Row {
            figure: format!("propagation p99, {big} nodes, {light}/s (below saturation)"),
            unit: "ms",
            value: vl.latency.p99,
            baseline: dl.latency.p99,
            baseline_is: decode_only.clone(),
            target: None,
            met: None,
        },
        Row {
            figure: format!("throughput, receipts/s delivered to all {big} nodes"),
            unit: "receipts/s",
            value: vt.per_second,
            baseline: dt.per_second,
            baseline_is: decode_only.clone(),
            target: None,
            met: None,
        },
        Row {
            figure: "process CPU during throughput window".into(),
            unit: "cores",
            value: vt.cores,
            baseline: dt.cores,
            baseline_is: decode_only.clone(),
            target: None,
            met: None,
        },
        Row {
            figure: format!("receipts to all {big} nodes per process core-second"),
            unit: "receipts/core-s",
            value: vt.receipts_per_core_s,
            baseline: dt.receipts_per_core_s,
            baseline_is: decode_only.clone(),
            target: None,
            met: None,
        },
        Row {
            figure: "per-node receipts (receive, validate, forward) per process core-second".into(),
            unit: "receipts/core-s",
            value: vt.node_receipts_per_core_s,
            baseline: dt.node_receipts_per_core_s,
            baseline_is: decode_only.clone(),
            target: None,
            met: None,
        },
        Row {
            figure: "share of process CPU inside the validator".into(),
            unit: "%",
            value: vt.validate_share * 100.0,
            baseline: dt.validate_share * 100.0,
            baseline_is: decode_only.clone(),
            target: None,
            met: None,
        },
        Row {
            figure: "receipts validated per core-second of validation (in the network)".into(),
            unit: "receipts/core-s",
            value: vt.validated_per_core_s,
            baseline: 1.0 / micro.decode_verify,
            baseline_is: "one-thread loop, decode + strict verify".into(),
            target: Some(format!("≥ {TARGET_VALIDATED_PER_CORE:.0}")),
            met: Some(vt.validated_per_core_s >= TARGET_VALIDATED_PER_CORE),
        },
        Row {
            figure: "`SignedReceipt::verify`, one thread (raw ceiling)".into(),
            unit: "receipts/core-s",
            value: 1.0 / micro.verify,
            baseline: 1.0 / micro.decode_verify,
            baseline_is: "one-thread loop, decode + strict verify".into(),
            target: Some(format!("≥ {TARGET_VALIDATED_PER_CORE:.0}")),
            met: Some(1.0 / micro.verify >= TARGET_VALIDATED_PER_CORE),
        },
        Row {
            figure: "strict verify with the operator key decompressed once (cached)".into(),
            unit: "µs/receipt",
            value: micro.cached_key * 1e6,
            baseline: micro.decode_verify * 1e6,
            baseline_is: "decode + strict verify".into(),
            target: None,
            met: None,
        },
        Row {
            figure: "`verify_batch` of 8 (incl. decode, key decompression)".into(),
            unit: "µs/receipt",
            value: micro.batch8 * 1e6,
            baseline: micro.decode_verify * 1e6,
            baseline_is: "decode + strict verify".into(),
            target: None,
            met: None,
        },
        Row {
            figure: "`verify_batch` of 64 (incl. decode, key decompression)".into(),
            unit: "µs/receipt",
            value: micro.batch64 * 1e6,
            baseline: micro.decode_verify * 1e6,
            baseline_is: "decode + strict verify".into(),
            target: None,
            met: None,
        },
    ];
    for &n in &plan.sizes {
        let r = find(n, CheckKind::Receipt)?;
        for (what, value, base) in [
            (
                "p50",
                r.propagation.latency.p50,
                small.propagation.latency.p50,
            ),
            (
                "p99",
                r.propagation.latency.p99,
                small.propagation.latency.p99,
            ),
        ] {
            rows.push(Row {
                figure: format!("growth: propagation {what}, {n} nodes, {}/s", plan.rate),
                unit: "ms",
                value,
                baseline: base,
                baseline_is: format!("{} nodes", plan.sizes[0]),
                target: (what == "p99").then(|| format!("≤ {TARGET_P99_MS} ms")),
                met: (what == "p99").then_some(value <= TARGET_P99_MS),
            });
        }
    }

    let mut md = String::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    md.push_str(&format!(
        "## Gossip: vouch-net on 127.0.0.1, one process, {cores} cores{}\n\n",
        if plan.quick { " (--quick)" } else { "" }
    ));
    md.push_str(&format!(
        "Load average at start / end: {} / {}. Receipts signed by {PUBLISHERS} operators, \
         published from {PUBLISHERS} nodes. Rate phases: {:?} at {}/s after a {:?} warm-up; \
         throughput: {:?} closed loop, {} in flight, window from {:?} on.\n\n",
        load.0,
        load.1,
        plan.latency,
        plan.rate,
        plan.warmup,
        plan.throughput,
        plan.in_flight,
        plan.ramp
    ));
    let busiest = [load.0, load.1]
        .iter()
        .filter_map(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .fold(0.0, f64::max);
    if busiest > cores as f64 {
        md.push_str(&format!(
            "**The machine was busy** (1-minute load average up to {busiest:.1} on {cores} cores): \
             other processes took CPU from this one, so latency and receipts/s understate the \
             code; the per-core-second figures and the CPU column are the ones to compare.\n\n"
        ));
    }
    md.push_str("| figure | unit | measured | baseline | baseline is | ratio | target |\n");
    md.push_str("|---|---|---|---|---|---|---|\n");
    for r in &rows {
        let target = match (&r.target, r.met) {
            (Some(t), Some(true)) => format!("{t}: met"),
            (Some(t), Some(false)) => format!("{t}: **missed**"),
            (Some(t), None) => t.clone(),
            (None, _) => "—".into(),
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.figure,
            r.unit,
            fmt_num(r.value),
            fmt_num(r.baseline),
            r.baseline_is,
            fmt_num(r.ratio()),
            target
        ));
    }
    md.push_str(
        "\n| network | validator | peers min/mean/max | mesh min/mean/max | to all | pairs | \
         p50 / p99 / max (ms) | channel wait p99 (ms) | CPU (cores) | publish errors | rejected | \
         dropped (full) |\n",
    );
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    let phases = nets.iter().flat_map(|r| {
        std::iter::once((r, &r.propagation, plan.rate))
            .chain(r.light.as_ref().map(|l| (r, l, plan.light_rate())))
    });
    for (r, p, rate) in phases {
        let t = &r.topology;
        md.push_str(&format!(
            "| {} nodes, {}/s | {} | {}/{:.1}/{} | {}/{:.1}/{} | {:.2}% | {:.2}% | {:.2} / {:.2} / {:.2} | {:.2} | {:.2} | {} | {} | {} |\n",
            r.nodes,
            rate,
            r.check.label(),
            t.peers.0,
            t.peers.1,
            t.peers.2,
            t.mesh.0,
            t.mesh.1,
            t.mesh.2,
            p.delivered_to_all * 100.0,
            p.pairs_delivered * 100.0,
            p.latency.p50,
            p.latency.p99,
            p.latency.max,
            p.channel_wait.p99,
            p.cores,
            p.publish_errors,
            r.stats.rejected(),
            r.stats.dropped_full,
        ));
    }
    for r in nets {
        if let Some(tp) = &r.throughput {
            md.push_str(&format!(
                "\nUnder saturation ({} nodes, {}): {:.0} receipts/s to all over {:.1} s, \
                 {} validations in {:.3} s of validator time ({:.1}% of {:.2} process CPU-s{}), \
                 latency p50 {:.1} ms / p99 {:.1} ms{}.\n",
                r.nodes,
                r.check.label(),
                tp.per_second,
                tp.window_s,
                tp.validations,
                tp.validate_s,
                tp.validate_share * 100.0,
                tp.cpu_s,
                if r.check == CheckKind::Receipt {
                    format!(
                        "; {:.1}% at the one-thread decode + verify cost",
                        calibrated_share(tp, micro) * 100.0
                    )
                } else {
                    String::new()
                },
                tp.loaded.latency.p50,
                tp.loaded.latency.p99,
                if tp.exhausted {
                    " (ran out of pre-signed receipts: window cut short)"
                } else {
                    ""
                }
            ));
        }
    }
    let json = json!({
        "bench": "vouch-net gossip",
        "quick": plan.quick,
        "cores": cores,
        "load_average": {"start": load.0, "end": load.1},
        "rate_per_s": plan.rate,
        "publishers": PUBLISHERS,
        "in_flight": plan.in_flight,
        "micro_us_per_receipt": {
            "verify": micro.verify * 1e6,
            "decode_verify": micro.decode_verify * 1e6,
            "cached_key_verify": micro.cached_key * 1e6,
            "verify_batch_8": micro.batch8 * 1e6,
            "verify_batch_64": micro.batch64 * 1e6,
        },
        "calibrated_verify_share_of_cpu": calibrated_share(vt, micro),
        "figures": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "networks": nets.iter().map(network_json).collect::<Vec<_>>(),
    });
    Ok((md, json))
}

// ---------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------

fn main() -> Res<()> {
    let args = parse_args()?;
    let mut plan = Plan::new(args.quick);
    if let Some(n) = args.in_flight {
        plan.in_flight = n;
    }
    let started = Instant::now();
    epoch();
    let load_start = load_average();
    let ops = operators();
    let mut seqs = Sequences::default();

    // The raw ceiling runs first, on an idle process, over receipts like the ones gossiped.
    progress!("==> signature verification on one thread");
    let sample_base = seqs.take(1024);
    let micro = micro(&sign_receipts(&ops, sample_base, 1024), plan.micro)?;
    progress!(
        "    verify {:.1} µs, decode+verify {:.1} µs, cached key {:.1} µs, batch 8 {:.1} µs, batch 64 {:.1} µs per receipt",
        micro.verify * 1e6,
        micro.decode_verify * 1e6,
        micro.cached_key * 1e6,
        micro.batch8 * 1e6,
        micro.batch64 * 1e6
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let nets = runtime.block_on(async {
        let mut ctx = Ctx {
            plan,
            registry: registry_of(&ops),
            ops,
            rng: StdRng::seed_from_u64(20_261_122),
            seqs,
        };
        let mut nets = Vec::new();
        for &n in &plan.sizes {
            let largest = n == plan.largest();
            nets.push(run_network(n, CheckKind::Receipt, largest, &mut ctx).await?);
        }
        nets.push(run_network(plan.largest(), CheckKind::DecodeOnly, true, &mut ctx).await?);
        Ok::<_, BoxError>(nets)
    })?;
    let load_end = load_average();

    let (md, json) = report(&plan, &micro, &nets, (&load_start, &load_end))?;
    println!("{md}");
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
        progress!("==> wrote {path}");
    }
    progress!("==> done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
