//! Prometheus metrics an operator watches, served at `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label for outcomes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `succeeded`, `failed_timeout`, `failed_memory`, `failed_output`, `failed_docker`, …
    pub outcome: String,
}

/// Label for gossip messages.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GossipLabel {
    /// `accepted`, `rejected`, `duplicate`, `ignored`, `dropped_full`, `synced`, `sync_rejected`.
    pub result: String,
    /// For rejections: `size`, `decode`, `network`, `signature`, `unregistered`; else empty.
    pub reason: String,
}

/// Label for the topic of a delivered message.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    /// `receipts`, `jobs` or `verdicts`.
    pub topic: String,
}

/// Label for the phases of a job.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// `create`, `start`, `run`, `remove` (the container, from the executor), `hash` (output
    /// digest and trace root), `sign` (signing protection's durable record and the
    /// signature), `persist` (the durable job row with output, trace and receipt).
    pub phase: String,
}

/// A histogram per job phase.
pub type PhaseHistograms = Family<PhaseLabel, Histogram, fn() -> Histogram>;

fn phase_histogram() -> Histogram {
    // 50 µs … ~26 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// All node metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Jobs accepted by the API.
    pub jobs_submitted: Counter,
    /// Jobs finished, by outcome.
    pub jobs_finished: Family<OutcomeLabel, Counter>,
    /// Jobs running now.
    pub jobs_running: Gauge,
    /// Jobs queued now.
    pub jobs_queued: Gauge,
    /// Receipts signed (new signatures only).
    pub receipts_signed: Counter,
    /// Signatures refused by signing protection.
    pub signing_refused: Counter,
    /// Wall time of a job from container create to removal.
    pub job_seconds: Histogram,
    /// Time spent in each phase of a successful job.
    pub job_phase_seconds: PhaseHistograms,
    /// Connected libp2p peers.
    pub p2p_peers: Gauge,
    /// Gossip validation decisions since start, by result and reason (set from the network's
    /// counters at each scrape).
    pub p2p_messages: Family<GossipLabel, Gauge>,
    /// Messages delivered to the node, by topic.
    pub p2p_delivered: Family<TopicLabel, Counter>,
    /// Delay from a receipt's signing (`issued_at_ms`) to its arrival here by gossip.
    pub p2p_propagation_seconds: Histogram,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("vouch");
        let m = Metrics {
            jobs_submitted: Counter::default(),
            jobs_finished: Family::default(),
            jobs_running: Gauge::default(),
            jobs_queued: Gauge::default(),
            receipts_signed: Counter::default(),
            signing_refused: Counter::default(),
            job_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 16)),
            job_phase_seconds: Family::new_with_constructor(phase_histogram),
            p2p_peers: Gauge::default(),
            p2p_messages: Family::default(),
            p2p_delivered: Family::default(),
            p2p_propagation_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            registry: Registry::default(),
        };
        registry.register(
            "jobs_submitted",
            "Jobs accepted by the API",
            m.jobs_submitted.clone(),
        );
        registry.register(
            "jobs_finished",
            "Jobs finished, by outcome",
            m.jobs_finished.clone(),
        );
        registry.register(
            "jobs_running",
            "Jobs whose container is running",
            m.jobs_running.clone(),
        );
        registry.register(
            "jobs_queued",
            "Jobs waiting for a slot",
            m.jobs_queued.clone(),
        );
        registry.register(
            "receipts_signed",
            "Receipts signed",
            m.receipts_signed.clone(),
        );
        registry.register(
            "signing_refused",
            "Signatures refused by signing protection",
            m.signing_refused.clone(),
        );
        registry.register(
            "job_duration_seconds",
            "Time from container create to removal",
            m.job_seconds.clone(),
        );
        registry.register(
            "job_phase_seconds",
            "Time spent in each phase of a successful job (create, start, run, remove, hash, sign, persist)",
            m.job_phase_seconds.clone(),
        );
        registry.register("p2p_peers", "Connected libp2p peers", m.p2p_peers.clone());
        registry.register(
            "p2p_messages",
            "Gossip validation decisions since start, by result and reason",
            m.p2p_messages.clone(),
        );
        registry.register(
            "p2p_delivered",
            "Gossip messages delivered to the node, by topic",
            m.p2p_delivered.clone(),
        );
        registry.register(
            "p2p_propagation_seconds",
            "Delay from a receipt's signing to its arrival here by gossip",
            m.p2p_propagation_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a finished job.
    pub fn finished(&self, outcome: &str) {
        self.jobs_finished
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Records the time one phase of a job took.
    pub fn phase(&self, phase: &str, took: std::time::Duration) {
        self.job_phase_seconds
            .get_or_create(&PhaseLabel {
                phase: phase.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// Copies the network's counters into `p2p_messages`.
    pub fn set_gossip_stats(&self, s: &vouch_net::StatsSnapshot) {
        let set = |result: &str, reason: &str, v: u64| {
            self.p2p_messages
                .get_or_create(&GossipLabel {
                    result: result.into(),
                    reason: reason.into(),
                })
                .set(v as i64);
        };
        set("accepted", "", s.accepted);
        set("rejected", "size", s.rejected_size);
        set("rejected", "decode", s.rejected_decode);
        set("rejected", "network", s.rejected_network);
        set("rejected", "signature", s.rejected_signature);
        set("rejected", "unregistered", s.rejected_unregistered);
        set("ignored", "", s.ignored);
        set("duplicate", "", s.duplicates);
        set("dropped_full", "", s.dropped_full);
        set("synced", "", s.synced);
        set("sync_rejected", "", s.sync_rejected);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
