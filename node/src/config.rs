//! Node configuration: defaults, overlaid by a TOML file, overlaid by environment
//! variables and flags (clap reads both; a flag beats its variable).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vouch_proto::{Limits, NetworkId};

use crate::error::NodeError;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Everything `vouch-node run` needs. See README "Configuration" for each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Directory for the key (by default), the job database, the signing history and the lock.
    pub data_dir: PathBuf,
    /// Operator key (PKCS#8 PEM). Default `<data_dir>/operator.pem`.
    pub key_file: Option<PathBuf>,
    /// Network name or 64-hex network id.
    pub network: String,
    /// Docker endpoint. Default `$DOCKER_HOST`, else `unix:///var/run/docker.sock`.
    pub docker_host: Option<String>,
    /// Jobs running at once.
    pub max_concurrent_jobs: usize,
    /// Jobs waiting for a slot before submissions are refused with 503.
    pub queue_capacity: usize,
    /// Largest HTTP request body, in bytes (input travels inside it).
    pub max_body_bytes: usize,
    /// Time limit for one HTTP request, in milliseconds.
    pub request_timeout_ms: u64,
    /// HTTP requests served at once.
    pub max_http_concurrency: usize,
    /// Bearer tokens clients must present on /v1; empty = open API.
    pub api_keys: Vec<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// Default limits of every job, and the most a job may ask for.
    pub limits: Limits,
    /// How long shutdown waits for running jobs before killing them.
    pub shutdown_grace_ms: u64,
    /// How many times a job interrupted by crashes is started before it is failed.
    pub max_attempts: u32,
    /// Models served on `/v1/chat/completions`.
    pub models: Vec<ModelConfig>,
    /// The peer-to-peer network (off unless `p2p.listen` is set).
    pub p2p: P2pConfig,
    /// Deliberate misbehaviour, for demos and tests of the dispute path only.
    pub fault: Option<Fault>,
}

/// Deliberate misbehaviour (`--fault`). Never set this on a node that holds real stake: it
/// makes the node sign wrong results, which is what slashing exists to punish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Sign an output that differs from what the workload wrote (one byte appended).
    WrongOutput,
    /// Sign the true receipt, then a second, conflicting one for the same job and
    /// sequence (a different output digest), bypassing the signing history, and gossip
    /// both: an equivocation anyone can prove (`vouch-verifier dispute equivocation`).
    Equivocate,
    /// In an inference job (a model output with a trace, SPEC.md §7.2–7.3), replace the
    /// token at position `completion_tokens / 2` by another id in the output and in its
    /// trace leaf, then sign: a receipt consistent with itself but not with the model,
    /// which a one-token dispute (T2, `POST /v1/disputes/token`) proves wrong. Other jobs
    /// are signed honestly.
    WrongToken,
    /// Sign receipts but withhold the data behind them: serve no output or trace to
    /// peers by digest, and in a replicated job commit but never reveal.
    Withhold,
}

/// How the node joins the gossip network (see README "Peer-to-peer network").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// libp2p listen multiaddrs, e.g. `/ip4/0.0.0.0/tcp/7000`. Empty: no network.
    pub listen: Vec<String>,
    /// Peers to dial at start, e.g. `/ip4/10.0.0.2/tcp/7000/p2p/12D3Koo…`.
    pub bootstrap: Vec<String>,
    /// Find peers on the local network with mDNS.
    pub mdns: bool,
    /// The verifier whose registry decides which operators' gossip is accepted
    /// (`GET <url>/v1/registry`, polled). Without it, `operators` is the allow-list.
    pub verifier_url: Option<String>,
    /// Static operator allow-list (64-hex keys), used when no verifier is configured.
    pub operators: Vec<String>,
    /// Key of the verifier whose verdicts are accepted (64 hex); learned from
    /// `verifier_url` when unset.
    pub verifier_key: Option<String>,
    /// How often the registry is fetched from the verifier, ms.
    pub registry_refresh_ms: u64,
    /// How often peers are asked for receipts missed, ms.
    pub sync_interval_ms: u64,
    /// How long replicas have to commit after a replicated job is announced, ms (on top
    /// of the job's own time limit).
    pub commit_window_ms: u64,
    /// Key (PKCS#8 PEM) this node raises wrong-result disputes with when a replicated job
    /// it announced ends in disagreement; it needs a deposited balance on the verifier's
    /// ledger to bond. Unset: disagreements are reported, not handed off.
    pub challenger_key: Option<PathBuf>,
    /// The bond of each such dispute, `ASSET:AMOUNT` in base units (e.g. `eth:10`).
    pub dispute_bond: Option<String>,
    /// How often the verifier is asked for open withholding disputes against this
    /// operator's receipts, which the node answers from its job database, ms.
    pub withholding_poll_ms: u64,
}

impl Default for P2pConfig {
    fn default() -> Self {
        P2pConfig {
            listen: vec![],
            bootstrap: vec![],
            mdns: true,
            verifier_url: None,
            operators: vec![],
            verifier_key: None,
            registry_refresh_ms: 5_000,
            sync_interval_ms: 10_000,
            commit_window_ms: 30_000,
            challenger_key: None,
            dispute_bond: None,
            withholding_poll_ms: 2_000,
        }
    }
}

/// A model served through the OpenAI-compatible API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model name clients ask for.
    pub name: String,
    /// Image tag or id of the model workload (images/README.md "inference").
    pub image: String,
    /// Keep a warm container serving requests (no container start per request).
    #[serde(default = "yes")]
    pub warm: bool,
    /// Most tokens a request may generate.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
}

fn yes() -> bool {
    true
}

fn default_max_tokens() -> u32 {
    4096
}

impl ModelConfig {
    /// The reference model, `vouch-tiny-1` in `vouch/inference-stub:dev`, warm.
    pub fn reference() -> Self {
        ModelConfig {
            name: "vouch-tiny-1".into(),
            image: "vouch/inference-stub:dev".into(),
            warm: true,
            max_tokens: 4096,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("vouch-data"),
            key_file: None,
            network: "vouch-devnet".into(),
            docker_host: None,
            max_concurrent_jobs: 4,
            queue_capacity: 1024,
            max_body_bytes: 16 << 20,
            request_timeout_ms: 60_000,
            max_http_concurrency: 512,
            api_keys: vec![],
            log_format: LogFormat::Human,
            limits: Limits {
                cpu_millis: 1000,
                memory_bytes: 256 << 20,
                output_bytes: 4 << 20,
                pids: 64,
                timeout_ms: 30_000,
                tmpfs_bytes: 16 << 20,
            },
            shutdown_grace_ms: 10_000,
            max_attempts: 3,
            models: vec![ModelConfig::reference()],
            p2p: P2pConfig::default(),
            fault: None,
        }
    }
}

/// Flags of `vouch-node run`. Each may also come from the environment variable named.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// TOML config file.
    #[arg(long, env = "VOUCH_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "VOUCH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory [default: ./vouch-data].
    #[arg(long, env = "VOUCH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Operator key file [default: <data-dir>/operator.pem].
    #[arg(long, env = "VOUCH_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Network name or id [default: vouch-devnet].
    #[arg(long, env = "VOUCH_NETWORK")]
    pub network: Option<String>,
    /// Docker endpoint [default: unix:///var/run/docker.sock].
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,
    /// Jobs running at once [default: 4].
    #[arg(long, env = "VOUCH_MAX_CONCURRENT_JOBS")]
    pub max_concurrent_jobs: Option<usize>,
    /// Comma-separated API keys clients must send as `Authorization: Bearer <key>`.
    #[arg(
        long,
        env = "VOUCH_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Option<Vec<String>>,
    /// Log format [default: human].
    #[arg(long, env = "VOUCH_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Keep models warm (true) or start a container per request (false), for every model.
    #[arg(long, env = "VOUCH_WARM_MODELS")]
    pub warm_models: Option<bool>,
    /// libp2p listen multiaddrs, comma-separated (e.g. /ip4/0.0.0.0/tcp/7000); enables the
    /// peer-to-peer network.
    #[arg(long, env = "VOUCH_P2P_LISTEN", value_delimiter = ',')]
    pub p2p_listen: Option<Vec<String>>,
    /// Bootstrap peers, comma-separated multiaddrs ending in /p2p/<peer id>.
    #[arg(long, env = "VOUCH_P2P_BOOTSTRAP", value_delimiter = ',')]
    pub p2p_bootstrap: Option<Vec<String>>,
    /// Turn mDNS discovery off.
    #[arg(long, env = "VOUCH_NO_MDNS")]
    pub no_mdns: bool,
    /// Verifier URL whose registry decides whose gossip is accepted.
    #[arg(long, env = "VOUCH_VERIFIER_URL")]
    pub verifier_url: Option<String>,
    /// Static operator allow-list, comma-separated 64-hex keys (without a verifier).
    #[arg(long, env = "VOUCH_OPERATORS", value_delimiter = ',')]
    pub operators: Option<Vec<String>>,
    /// Verifier key whose verdicts are accepted (64 hex).
    #[arg(long, env = "VOUCH_VERIFIER_KEY")]
    pub verifier_key: Option<String>,
    /// Raise wrong-result disputes with this key (PKCS#8 PEM, bonded on the verifier's
    /// ledger) when a replicated job this node announced ends in disagreement.
    #[arg(long, env = "VOUCH_CHALLENGER_KEY")]
    pub challenger_key: Option<PathBuf>,
    /// Bond of each dispute raised, ASSET:AMOUNT in base units (e.g. eth:10).
    #[arg(long, env = "VOUCH_DISPUTE_BOND")]
    pub dispute_bond: Option<String>,
    /// How often to ask the verifier for withholding disputes to answer, ms.
    #[arg(long, env = "VOUCH_WITHHOLDING_POLL_MS")]
    pub withholding_poll_ms: Option<u64>,
    /// Misbehave on purpose, for demos and dispute tests only.
    #[arg(long, env = "VOUCH_FAULT")]
    pub fault: Option<Fault>,
}

impl Config {
    /// Defaults, then the TOML file (if any), then flags and environment.
    pub fn load(args: &RunArgs) -> Result<Self, NodeError> {
        let mut config = match &args.config {
            Some(path) => Self::from_toml_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = args.listen {
            config.listen = v;
        }
        if let Some(v) = &args.data_dir {
            config.data_dir = v.clone();
        }
        if let Some(v) = &args.key_file {
            config.key_file = Some(v.clone());
        }
        if let Some(v) = &args.network {
            config.network = v.clone();
        }
        if let Some(v) = &args.docker_host {
            config.docker_host = Some(v.clone());
        }
        if let Some(v) = args.max_concurrent_jobs {
            config.max_concurrent_jobs = v;
        }
        if let Some(v) = &args.api_keys {
            config.api_keys = v
                .iter()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect();
        }
        if let Some(v) = args.log_format {
            config.log_format = v;
        }
        if let Some(v) = &args.p2p_listen {
            config.p2p.listen = v.clone();
        }
        if let Some(v) = &args.p2p_bootstrap {
            config.p2p.bootstrap = v.clone();
        }
        if args.no_mdns {
            config.p2p.mdns = false;
        }
        if let Some(v) = &args.verifier_url {
            config.p2p.verifier_url = Some(v.clone());
        }
        if let Some(v) = &args.operators {
            config.p2p.operators = v.clone();
        }
        if let Some(v) = &args.verifier_key {
            config.p2p.verifier_key = Some(v.clone());
        }
        if let Some(v) = &args.challenger_key {
            config.p2p.challenger_key = Some(v.clone());
        }
        if let Some(v) = &args.dispute_bond {
            config.p2p.dispute_bond = Some(v.clone());
        }
        if let Some(v) = args.withholding_poll_ms {
            config.p2p.withholding_poll_ms = v;
        }
        if let Some(f) = args.fault {
            config.fault = Some(f);
        }
        if let Some(w) = args.warm_models {
            for m in &mut config.models {
                m.warm = w;
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Reads a TOML file; unknown keys are errors.
    pub fn from_toml_file(path: &Path) -> Result<Self, NodeError> {
        let text = std::fs::read_to_string(path).map_err(|e| NodeError::io(path, e))?;
        toml::from_str(&text).map_err(|e| NodeError::Config(format!("{}: {e}", path.display())))
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), NodeError> {
        let bad = |m: &str| Err(NodeError::Config(m.into()));
        if self.max_concurrent_jobs == 0 {
            return bad("max_concurrent_jobs must be at least 1");
        }
        if self.queue_capacity == 0 {
            return bad("queue_capacity must be at least 1");
        }
        if self.max_http_concurrency == 0 {
            return bad("max_http_concurrency must be at least 1");
        }
        if self.max_attempts == 0 {
            return bad("max_attempts must be at least 1");
        }
        self.limits
            .validate()
            .map_err(|e| NodeError::Config(format!("limits: {e}")))?;
        for (what, addrs) in [
            ("p2p.listen", &self.p2p.listen),
            ("p2p.bootstrap", &self.p2p.bootstrap),
        ] {
            for a in addrs {
                if a.parse::<vouch_net::libp2p::Multiaddr>().is_err() {
                    return Err(NodeError::Config(format!(
                        "{what}: {a:?} is not a multiaddr (e.g. /ip4/0.0.0.0/tcp/7000)"
                    )));
                }
            }
        }
        match (&self.p2p.challenger_key, &self.p2p.dispute_bond) {
            (None, None) => {}
            (Some(_), Some(bond)) => {
                crate::disputes::parse_bond(bond).map_err(NodeError::Config)?;
                if self.p2p.verifier_url.is_none() {
                    return bad("p2p.challenger_key needs p2p.verifier_url (--verifier-url): disputes go to that verifier");
                }
            }
            _ => return bad("p2p.challenger_key and p2p.dispute_bond (--challenger-key, --dispute-bond) go together"),
        }
        for k in self
            .p2p
            .operators
            .iter()
            .chain(self.p2p.verifier_key.iter())
        {
            if k.parse::<vouch_proto::OperatorKey>().is_err() {
                return Err(NodeError::Config(format!(
                    "{k:?} is not an operator key (64 hex digits)"
                )));
            }
        }
        if self.p2p.registry_refresh_ms == 0 || self.p2p.sync_interval_ms == 0 {
            return bad("p2p.registry_refresh_ms and p2p.sync_interval_ms must be > 0");
        }
        Ok(())
    }

    /// The network id named by `network`.
    pub fn network_id(&self) -> NetworkId {
        NetworkId::parse_or_name(&self.network)
    }

    /// The key file path.
    pub fn key_path(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("operator.pem"))
    }

    /// The Docker endpoint.
    pub fn docker_endpoint(&self) -> String {
        self.docker_host
            .clone()
            .unwrap_or_else(crate::executor::DockerExecutor::default_host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9999\"\nnetwork = \"n1\"\n[limits]\ncpu_millis = 500\nmemory_bytes = 1000000\noutput_bytes = 10\npids = 8\ntimeout_ms = 100\ntmpfs_bytes = 4096\n").unwrap();
        let args = RunArgs {
            config: Some(path.clone()),
            network: Some("n2".into()),
            ..Default::default()
        };
        let c = Config::load(&args).unwrap();
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.network, "n2", "flag beats file");
        assert_eq!(c.limits.cpu_millis, 500);
        std::fs::write(&path, "listn = \"x\"").unwrap();
        let err = Config::load(&args).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
