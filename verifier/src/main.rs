//! `vouch-verifier` binary: parses the command line, sets up tracing and calls into the
//! library (`server::run`, `Verifier`) or the small client helpers in `cli/`.

mod cli;

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use vouch_proto::{NetworkId, ReceiptJson};
use vouch_verifier::{ApiState, DisputeConfig, Key, LedgerConfig, SqliteLedger, Verifier};

#[derive(Debug, Parser)]
#[command(
    name = "vouch-verifier",
    version,
    about = "Vouch verifier: collateral ledger, disputes and slashing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a job JSON (`GET /v1/jobs/{id}`) from stdin: signature, and that the receipt
    /// binds the spec's job id, image and input digest.
    Check,
    /// The verifier's ed25519 key (`DATA_DIR/verifier.pem`).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Serve the ledger and dispute API.
    Run(RunArgs),
    /// Client: sign a ledger request and send it (`POST /v1/requests`). BODY is the request
    /// body's JSON, e.g. '{"type":"deposit","asset":"eth","amount":"1000"}'.
    Request {
        /// The verifier, e.g. http://127.0.0.1:9090
        #[arg(long)]
        url: String,
        /// Network name or id (part of what is signed).
        #[arg(long)]
        network: String,
        /// The acting key: PKCS#8 PEM (an operator's `operator.pem`, the verifier's
        /// `verifier.pem`, a restaker's key).
        #[arg(long)]
        key: PathBuf,
        /// For `register_operator`: the operator's libp2p identity (a node's `p2p-key`,
        /// or a PEM key), which signs too; fills in `peer_key` when BODY has none.
        #[arg(long)]
        peer_key: Option<PathBuf>,
        /// Nonce; must exceed the actor's last one [default: the current time in ms].
        #[arg(long)]
        nonce: Option<u64>,
        body: String,
    },
    /// Client: raise a dispute with a running verifier.
    Dispute {
        #[command(subcommand)]
        command: DisputeCommand,
    },
    /// Watcher: hear the receipts operators gossip, re-execute a sample drawn with the
    /// verifier's beacon of the epoch after each receipt was heard (so an operator cannot
    /// know at signing time whether it will be checked), and raise a bonded wrong-result
    /// dispute on every mismatch, on its own.
    ///
    /// Needs the verifier (its registry, beacon and dispute API), a Docker daemon holding
    /// the jobs' images (never pulled; a missing image is skipped and counted), and a
    /// challenger key with a deposited balance on the verifier's ledger. One run per
    /// sampled receipt; nondeterministic specs and runs that break a limit are skipped.
    /// With --listen, `GET /v1/watch` reports counters and the recent disputes.
    Watch(WatchArgs),
    /// Client: the service's economic security figures (`GET /v1/security`): per operator
    /// slashable stake, what a wrong result slashes, open value at risk, cap and margin
    /// (the per-operator condition with slack γ); for the service cost vs profit of
    /// corruption. Exits 3 when some operator's condition does not hold.
    Security {
        /// The verifier, e.g. http://127.0.0.1:9090
        #[arg(long, env = "VOUCH_VERIFIER_URL")]
        url: String,
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct WatchArgs {
    /// The verifier, e.g. http://127.0.0.1:9090: registry, beacon, disputes.
    #[arg(long, env = "VOUCH_VERIFIER_URL")]
    verifier_url: String,
    /// libp2p listen multiaddrs, comma-separated, e.g. /ip4/0.0.0.0/tcp/9300.
    #[arg(long, env = "VOUCH_P2P_LISTEN", value_delimiter = ',', required = true)]
    p2p_listen: Vec<vouch_net::libp2p::Multiaddr>,
    /// Peers to dial at start (multiaddrs ending in /p2p/<peer id>), comma-separated.
    #[arg(long, env = "VOUCH_P2P_BOOTSTRAP", value_delimiter = ',')]
    p2p_bootstrap: Vec<vouch_net::libp2p::Multiaddr>,
    /// Turn mDNS discovery off.
    #[arg(long, env = "VOUCH_NO_MDNS")]
    no_mdns: bool,
    /// Do not demand (withholding dispute, SPEC.md §11.5) the spec and input of a sampled
    /// receipt that no peer serves; only count it as skipped.
    #[arg(long)]
    no_withholding_disputes: bool,
    /// The challenger's PKCS#8 PEM key: signs the disputes, receives the bounties, and
    /// holds the bonds in its deposited balance.
    #[arg(long)]
    challenger_key: PathBuf,
    /// Asset of each dispute's bond.
    #[arg(long)]
    bond_asset: String,
    /// Bond per dispute in base units; forfeited if the verifier dismisses the dispute.
    #[arg(long)]
    bond_amount: u128,
    /// Share of the receipts heard that are re-executed, 0 to 1.
    #[arg(long, default_value_t = 0.1)]
    sample_rate: f64,
    /// Raise each receipt's rate to what its job's value at risk needs for cheating not to
    /// pay: p = max(sample rate, min(1, λ·C / ((1−r)·S))) (docs/security.md §2).
    #[arg(long)]
    per_job_rate: bool,
    /// r for --per-job-rate: the share of checkers that may collude, 0 to below 1.
    #[arg(long, default_value = "0", value_parser = vouch_verifier::security::parse_ppm)]
    collusion: u32,
    /// λ for --per-job-rate: the safety factor (above 0).
    #[arg(long, default_value = "1", value_parser = vouch_verifier::security::parse_ppm)]
    lambda: u32,
    /// Re-executions at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    concurrency: u16,
    /// Sampled receipts waiting for a re-execution; more are dropped (and counted).
    #[arg(long, default_value_t = vouch_verifier::watch::DEFAULT_MAX_SAMPLED)]
    max_queue: usize,
    /// The Docker daemon that re-executes (images are never pulled) [default:
    /// $DOCKER_HOST, else unix:///var/run/docker.sock].
    #[arg(long, env = "VOUCH_DOCKER_HOST")]
    docker_host: Option<String>,
    /// Serve the status API (`GET /v1/watch`) here, e.g. 127.0.0.1:9390.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Keeps the libp2p identity (`p2p-key`) across restarts [default: a new one each run].
    #[arg(long, env = "VOUCH_WATCH_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a new key (refuses to overwrite one).
    Generate {
        #[arg(long, env = "VOUCH_VERIFIER_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Print the public key.
    Show {
        #[arg(long, env = "VOUCH_VERIFIER_DATA_DIR")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Holds `verifier.pem` and `ledger.sqlite`.
    #[arg(long, env = "VOUCH_VERIFIER_DATA_DIR")]
    data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: SocketAddr,
    /// Network name (or 64 hex characters of network id).
    #[arg(long)]
    network: String,
    #[arg(long, default_value_t = 3_600_000)]
    challenge_window_ms: u64,
    /// Must be greater than the challenge window.
    #[arg(long, default_value_t = 7 * 24 * 3_600_000)]
    withdrawal_delay_ms: u64,
    /// Operators whose slashable stake is worth less (quote units) count as jailed.
    #[arg(long, default_value_t = 0)]
    min_stake_value: u128,
    /// libp2p listen multiaddrs, comma-separated; joins the operators' gossip network.
    #[arg(long, env = "VOUCH_P2P_LISTEN", value_delimiter = ',')]
    p2p_listen: Vec<vouch_net::libp2p::Multiaddr>,
    /// Peers to dial at start (multiaddrs ending in /p2p/<peer id>), comma-separated.
    #[arg(long, env = "VOUCH_P2P_BOOTSTRAP", value_delimiter = ',')]
    p2p_bootstrap: Vec<vouch_net::libp2p::Multiaddr>,
    /// Turn mDNS discovery off.
    #[arg(long, env = "VOUCH_NO_MDNS")]
    no_mdns: bool,
    /// The Docker daemon that re-executes disputed jobs (images are never pulled: build
    /// or load them there) [default: $DOCKER_HOST, else unix:///var/run/docker.sock].
    #[arg(long, env = "VOUCH_DOCKER_HOST")]
    docker_host: Option<String>,
    /// Length of a beacon epoch (`GET /v1/beacon/{epoch}`, SPEC.md §11.3): an epoch's
    /// beacon is revealed when it ends.
    #[arg(long, default_value_t = vouch_verifier::api::DEFAULT_BEACON_EPOCH_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    beacon_epoch_ms: u64,
    /// Slack γ of the per-operator security condition (README "Economic security"): an
    /// operator's open value at risk may be at most what a wrong result slashes / (1 + γ).
    /// Served in the registry, which nodes use to admit jobs.
    #[arg(long, default_value = "0.1", value_parser = vouch_verifier::security::parse_ppm)]
    gamma: u32,
    /// How long an operator has to publish the evidence a withholding dispute demands
    /// (`POST /v1/disputes/withholding`, SPEC.md §11.5) before it is slashed.
    #[arg(long, default_value_t = vouch_verifier::withholding::DEFAULT_DEADLINE_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    withholding_deadline_ms: u64,
}

#[derive(Debug, Subcommand)]
enum DisputeCommand {
    /// Two conflicting receipts by one operator (same job or same sequence number).
    Equivocation {
        /// The verifier, e.g. http://127.0.0.1:9090
        #[arg(long)]
        url: String,
        /// The key that receives the bounty: a PKCS#8 PEM key or a file with 64 hex characters.
        #[arg(long)]
        challenger_key: PathBuf,
        /// A receipt JSON, or a job JSON with a `receipt` field.
        #[arg(long)]
        a: PathBuf,
        /// The conflicting receipt (same forms as --a).
        #[arg(long)]
        b: PathBuf,
    },
    /// A receipt with the wrong result: the verifier locks the bond, re-runs the job twice
    /// and compares. A dismissed dispute burns the bond; the others give it back. Prints
    /// the verdict; if the answer does not come (the connection broke, the verifier
    /// restarted, its runs failed for the infrastructure's reasons), asks
    /// `GET /v1/disputes/{id}` until the dispute is decided.
    Result {
        /// The verifier, e.g. http://127.0.0.1:9090
        #[arg(long)]
        url: String,
        /// The challenger's PKCS#8 PEM key: it signs the dispute, receives the bounty and
        /// holds the bond in its deposited balance.
        #[arg(long)]
        challenger_key: PathBuf,
        /// The job as `GET /v1/jobs/{id}` returns it (with `spec` and `receipt`).
        #[arg(long)]
        job: PathBuf,
        /// The input bytes; without it they are fetched from --node.
        #[arg(long)]
        input: Option<PathBuf>,
        /// The node that ran the job, to fetch `/v1/jobs/{id}/input` from.
        #[arg(long, required_unless_present = "input")]
        node: Option<String>,
        /// The node's API key, if it requires one.
        #[arg(long, env = "VOUCH_API_KEY")]
        api_key: Option<String>,
        /// Asset of the bond.
        #[arg(long)]
        bond_asset: String,
        /// Bond in base units (at most the challenger's deposited balance).
        #[arg(long)]
        bond_amount: u128,
    },
    /// One wrong token of a traced inference (SPEC.md §11.4): the verifier checks the
    /// operator's leaf at --position against the signed trace and output and recomputes
    /// that one token. Fetches the input, the output and the leaf with its opening from
    /// --node. Without --position, runs the job's model image once in the local Docker
    /// (never pulling it) and disputes the first token where the operator's output differs
    /// from the model's. Prints the verdict (asking `GET /v1/disputes/{id}` if the answer
    /// is lost).
    Token {
        /// The verifier, e.g. http://127.0.0.1:9090
        #[arg(long)]
        url: String,
        /// The challenger's PKCS#8 PEM key (signs, receives the bounty, holds the bond).
        #[arg(long)]
        challenger_key: PathBuf,
        /// The job as `GET /v1/jobs/{id}` returns it (with `spec` and `receipt`).
        #[arg(long)]
        job: PathBuf,
        /// The node that ran the job: input, output and `/v1/jobs/{id}/trace/{t}` come
        /// from it.
        #[arg(long)]
        node: String,
        /// The node's API key, if it requires one.
        #[arg(long, env = "VOUCH_API_KEY")]
        api_key: Option<String>,
        /// The disputed position t (the first token where your own run of the model
        /// differs from the operator's); found by running the model when not given.
        #[arg(long)]
        position: Option<u32>,
        /// The Docker daemon that runs the model to find the position [default:
        /// $DOCKER_HOST, else unix:///var/run/docker.sock].
        #[arg(long, env = "VOUCH_DOCKER_HOST")]
        docker_host: Option<String>,
        /// Asset of the bond.
        #[arg(long)]
        bond_asset: String,
        /// Bond in base units (at most the challenger's deposited balance).
        #[arg(long)]
        bond_amount: u128,
    },
    /// An operator that does not serve the evidence behind a receipt (SPEC.md §11.5): the
    /// verifier demands it publicly; published by the deadline, the dispute is void and
    /// the evidence is in its verdict; not published, the operator is slashed. The bond is
    /// returned either way. Prints the open dispute (with its deadline); with --wait, the
    /// verdict.
    Withholding {
        /// The verifier, e.g. http://127.0.0.1:9090
        #[arg(long)]
        url: String,
        /// The challenger's PKCS#8 PEM key (signs, receives the bounty, holds the bond).
        #[arg(long)]
        challenger_key: PathBuf,
        /// A receipt JSON, or a job JSON with a `receipt` field.
        #[arg(long)]
        receipt: PathBuf,
        /// Demand the job spec (what a re-execution needs).
        #[arg(long)]
        spec: bool,
        /// Demand the input bytes.
        #[arg(long)]
        input: bool,
        /// Demand the output bytes.
        #[arg(long)]
        output: bool,
        /// Demand these trace leaves with their openings (comma-separated positions).
        #[arg(long, value_delimiter = ',')]
        positions: Vec<u32>,
        /// Asset of the bond.
        #[arg(long)]
        bond_asset: String,
        /// Bond in base units (at most the challenger's deposited balance).
        #[arg(long)]
        bond_amount: u128,
        /// Wait for the verdict (the answer, or the deadline) and print it.
        #[arg(long)]
        wait: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn security(url: &str, as_json: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, v) = rt.block_on(cli::client::get_json(url, "/v1/security"))?;
    if status != 200 {
        anyhow::bail!("GET {url}/v1/security: HTTP {status}: {v}");
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let s = |x: &serde_json::Value| match x {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        println!(
            "gamma {}   wrong-result slash {} ppm   challenge window {} ms",
            s(&v["gamma"]),
            s(&v["wrong_result_slash_ppm"]),
            s(&v["challenge_window_ms"])
        );
        println!("open jobs from: {}", s(&v["open_jobs_source"]));
        println!(
            "{:<16} {:>6} {:>20} {:>20} {:>9} {:>20} {:>20} {:>20}  condition",
            "operator",
            "jailed",
            "stake value",
            "slash per offence",
            "open jobs",
            "open value at risk",
            "cap",
            "margin"
        );
        for o in v["operators"].as_array().into_iter().flatten() {
            println!(
                "{:<16} {:>6} {:>20} {:>20} {:>9} {:>20} {:>20} {:>20}  {}",
                &s(&o["operator"])[..16.min(s(&o["operator"]).len())],
                s(&o["jailed"]),
                s(&o["stake_value"]),
                s(&o["slashable_per_offence"]),
                s(&o["open_jobs"]),
                s(&o["open_value_at_risk"]),
                s(&o["cap"]),
                s(&o["margin"]),
                if o["condition_holds"] == true {
                    "holds"
                } else {
                    "BROKEN"
                }
            );
        }
        let svc = &v["service"];
        println!(
            "service: cost of corruption {} vs profit from corruption {} -> {}",
            s(&svc["cost_of_corruption"]),
            s(&svc["profit_from_corruption"]),
            if svc["cost_exceeds_profit"] == true {
                "cost exceeds profit by the slack"
            } else {
                "NOT covered"
            }
        );
    }
    if v["service"]["every_operator_condition_holds"] != true {
        std::process::exit(3);
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check => check(),
        Command::Keys { command } => match command {
            KeysCommand::Generate { data_dir } => {
                let key = cli::keys::generate(&cli::keys::key_path(&data_dir))?;
                println!("{}", Key::of(&key));
                Ok(())
            }
            KeysCommand::Show { data_dir } => {
                let key = cli::keys::load(&cli::keys::key_path(&data_dir))?;
                println!("{}", Key::of(&key));
                Ok(())
            }
        },
        Command::Run(args) => serve(args),
        Command::Watch(args) => watch(args),
        Command::Security { url, json } => security(&url, json),
        Command::Request {
            url,
            network,
            key,
            peer_key,
            nonce,
            body,
        } => {
            let network = NetworkId::parse_or_name(&network);
            let mut body: serde_json::Value =
                serde_json::from_str(&body).context("BODY is not JSON")?;
            let peer = peer_key.as_deref().map(load_peer_key).transpose()?;
            // register_operator without a peer_key: take it from --peer-key.
            if let (Some(p), Some(obj)) = (&peer, body.as_object_mut()) {
                if obj.get("type").and_then(|t| t.as_str()) == Some("register_operator")
                    && !obj.contains_key("peer_key")
                {
                    obj.insert("peer_key".into(), Key::of(p).to_hex().into());
                }
            }
            let body: vouch_verifier::RequestBody =
                serde_json::from_value(body).context("BODY is not a ledger request body")?;
            let signer = cli::keys::load(&key)?;
            let nonce = nonce.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0)
            });
            let mut req = vouch_verifier::SignedRequest::sign(&network.0, &signer, nonce, body)?;
            if let Some(p) = &peer {
                req = req.with_peer_signature(&network.0, p)?;
            }
            let (status, answer) = tokio::runtime::Runtime::new()?.block_on(
                cli::client::post_json(&url, "/v1/requests", &serde_json::to_value(&req)?),
            )?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            anyhow::ensure!(
                (200..300).contains(&status),
                "the verifier answered {status}"
            );
            Ok(())
        }
        Command::Dispute {
            command:
                DisputeCommand::Equivocation {
                    url,
                    challenger_key,
                    a,
                    b,
                },
        } => {
            let body = serde_json::json!({
                "challenger": cli::keys::load_public(&challenger_key)?,
                "receipt_a": read_receipt(&a)?,
                "receipt_b": read_receipt(&b)?,
            });
            let (status, answer) = tokio::runtime::Runtime::new()?.block_on(
                cli::client::post_json(&url, "/v1/disputes/equivocation", &body),
            )?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
            anyhow::ensure!(
                (200..300).contains(&status),
                "the verifier answered {status}"
            );
            Ok(())
        }
        Command::Dispute {
            command:
                DisputeCommand::Result {
                    url,
                    challenger_key,
                    job,
                    input,
                    node,
                    api_key,
                    bond_asset,
                    bond_amount,
                },
        } => dispute_result(
            &url,
            &challenger_key,
            &job,
            input.as_deref(),
            node.as_deref(),
            api_key.as_deref(),
            vouch_verifier::Bond {
                asset: bond_asset,
                amount: bond_amount,
            },
            None,
        ),
        Command::Dispute {
            command:
                DisputeCommand::Token {
                    url,
                    challenger_key,
                    job,
                    node,
                    api_key,
                    position,
                    docker_host,
                    bond_asset,
                    bond_amount,
                },
        } => {
            let position = match position {
                Some(t) => t,
                None => first_divergence(&job, &node, api_key.as_deref(), docker_host)?,
            };
            dispute_result(
                &url,
                &challenger_key,
                &job,
                None,
                Some(&node),
                api_key.as_deref(),
                vouch_verifier::Bond {
                    asset: bond_asset,
                    amount: bond_amount,
                },
                Some(position),
            )
        }
        Command::Dispute {
            command:
                DisputeCommand::Withholding {
                    url,
                    challenger_key,
                    receipt,
                    spec,
                    input,
                    output,
                    positions,
                    bond_asset,
                    bond_amount,
                    wait,
                },
        } => dispute_withholding(
            &url,
            &challenger_key,
            &receipt,
            (spec, input, output),
            positions,
            vouch_verifier::Bond {
                asset: bond_asset,
                amount: bond_amount,
            },
            wait,
        ),
    }
}

/// The first position where the operator's served output (from `node`) differs from what
/// the model gives: the job (`GET /v1/jobs/{id}` saved in `job`) run once in the local
/// Docker, in the sandbox of SPEC.md §5, from its image id (never pulled).
fn first_divergence(
    job: &Path,
    node: &str,
    api_key: Option<&str>,
    docker_host: Option<String>,
) -> anyhow::Result<u32> {
    use vouch_exec::Executor as _;
    let text =
        std::fs::read_to_string(job).with_context(|| format!("reading {}", job.display()))?;
    let job_json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", job.display()))?;
    let spec = vouch_proto::JobSpec::from_json(job_json["spec"].to_string().as_bytes())
        .with_context(|| format!("{}: no valid `spec`", job.display()))?;
    let receipt = read_receipt(job)?.verify().context("the job's receipt")?;
    anyhow::ensure!(
        spec.job_id()? == receipt.receipt.job_id,
        "the receipt is not about this job spec"
    );
    let rt = tokio::runtime::Runtime::new()?;
    let fetch = |path: String| -> anyhow::Result<Vec<u8>> {
        let (status, bytes) = rt.block_on(cli::client::get_bytes(node, &path, api_key))?;
        anyhow::ensure!(
            status == 200,
            "{node}{path} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        Ok(bytes)
    };
    let job_id = receipt.receipt.job_id;
    let input = fetch(format!("/v1/jobs/{job_id}/input"))?;
    let served = fetch(format!("/v1/jobs/{job_id}/output"))?;
    let host = docker_host.unwrap_or_else(vouch_exec::DockerExecutor::default_host);
    let label = format!("vouch-cli-{}", std::process::id());
    let docker = vouch_exec::DockerExecutor::new(host.clone(), label);
    eprintln!(
        "running {} once to find the first divergent token…",
        spec.image
    );
    let outcome = rt
        .block_on(docker.run(job_id, &spec, input.into()))
        .with_context(|| format!("running the model through Docker at {host}"))?;
    let ours = match outcome {
        vouch_exec::RunOutcome::Exited {
            exit_code: 0,
            stdout,
            ..
        } => stdout,
        other => anyhow::bail!("the model's run gave no output to compare: {other:?}"),
    };
    let tokens = |bytes: &[u8], whose: &str| -> anyhow::Result<Vec<u64>> {
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .with_context(|| format!("{whose} output is not a model output (SPEC.md §7.2)"))?;
        v["tokens"]
            .as_array()
            .and_then(|a| a.iter().map(serde_json::Value::as_u64).collect())
            .with_context(|| format!("{whose} output has no `tokens`"))
    };
    let (theirs, mine) = (
        tokens(&served, "the operator's")?,
        tokens(&ours, "the model's")?,
    );
    let Some(t) = theirs.iter().zip(&mine).position(|(a, b)| a != b) else {
        anyhow::ensure!(
            theirs.len() <= mine.len(),
            "the operator's {} tokens begin with the model's {}: its extra tokens have no              divergent position to dispute one by one; dispute the whole result              (`dispute result`)",
            theirs.len(),
            mine.len()
        );
        anyhow::ensure!(
            theirs.len() == mine.len(),
            "the operator stopped after {} of the model's {} tokens: dispute the whole              result (`dispute result`)",
            theirs.len(),
            mine.len()
        );
        anyhow::bail!(
            "the operator's {} tokens are the model's: nothing to dispute",
            theirs.len()
        );
    };
    eprintln!(
        "the operator's token {t} is {}, the model's {}: disputing position {t}",
        theirs[t], mine[t]
    );
    Ok(u32::try_from(t)?)
}

#[allow(clippy::too_many_arguments)]
fn dispute_withholding(
    url: &str,
    challenger_key: &Path,
    receipt: &Path,
    (spec, input, output): (bool, bool, bool),
    mut positions: Vec<u32>,
    bond: vouch_verifier::Bond,
    wait: bool,
) -> anyhow::Result<()> {
    let challenger = cli::keys::load(challenger_key)?;
    let signed = read_receipt(receipt)?
        .verify()
        .context("the receipt does not verify")?;
    positions.sort_unstable();
    positions.dedup();
    let demand = vouch_verifier::Demand {
        spec,
        input,
        output,
        positions,
    };
    let challenge = vouch_verifier::WithholdingChallenge::sign(
        &signed.receipt.network_id,
        &challenger,
        bond,
        signed.clone(),
        demand,
    )?;
    let id = hex::encode(challenge.id(&signed.receipt.network_id)?);
    let body = vouch_verifier::WithholdingDisputeBody {
        challenger: challenge.challenger,
        bond: challenge.bond,
        signature: challenge.signature,
        receipt: signed.to_json(),
        demand: challenge.demand,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let (status, answer) = rt.block_on(cli::client::post_json(
        url,
        "/v1/disputes/withholding",
        &serde_json::to_value(&body)?,
    ))?;
    if !(200..300).contains(&status) || !wait {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        anyhow::ensure!(
            (200..300).contains(&status),
            "the verifier answered {status}"
        );
        return Ok(());
    }
    let deadline_ms = answer
        .pointer("/withholding/deadline_ms")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    eprintln!("dispute {id} is open; the operator must answer by {deadline_ms} ms");
    let left = deadline_ms.saturating_sub(vouch_verifier::api::system_now_ms());
    let until = std::time::Instant::now()
        + std::time::Duration::from_millis(left)
        + std::time::Duration::from_secs(60);
    let verdict = rt.block_on(poll_dispute(url, &id, until))?;
    println!("{}", serde_json::to_string_pretty(&verdict)?);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn dispute_result(
    url: &str,
    challenger_key: &Path,
    job: &Path,
    input: Option<&Path>,
    node: Option<&str>,
    api_key: Option<&str>,
    bond: vouch_verifier::Bond,
    position: Option<u32>,
) -> anyhow::Result<()> {
    use base64::Engine as _;
    let challenger = cli::keys::load(challenger_key)?;
    let text =
        std::fs::read_to_string(job).with_context(|| format!("reading {}", job.display()))?;
    let job_json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", job.display()))?;
    let receipt = read_receipt(job)?;
    let spec = job_json
        .get("spec")
        .cloned()
        .with_context(|| format!("{}: no `spec` (save GET /v1/jobs/{{id}})", job.display()))?;
    let signed = receipt
        .verify()
        .context("the job's receipt does not verify")?;
    let rt = tokio::runtime::Runtime::new()?;
    let input = match (input, node) {
        (Some(path), _) => {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, Some(node)) => {
            let path = format!("/v1/jobs/{}/input", signed.receipt.job_id);
            let (status, bytes) = rt.block_on(cli::client::get_bytes(node, &path, api_key))?;
            anyhow::ensure!(
                status == 200,
                "{node}{path} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
            bytes
        }
        (None, None) => anyhow::bail!("give --input FILE or --node URL"),
    };
    // The verifier refuses receipts of another network, so the receipt's is the one to sign.
    let id = match position {
        None => vouch_verifier::result_dispute_id(
            &signed.receipt.network_id,
            &Key::of(&challenger),
            &signed.receipt.signing_root(),
            &bond,
        )?,
        Some(t) => vouch_verifier::token_dispute_id(
            &signed.receipt.network_id,
            &Key::of(&challenger),
            &signed.receipt.signing_root(),
            t,
            &bond,
        )?,
    };
    let signature = vouch_verifier::Sig(ed25519_dalek::Signer::sign(&challenger, &id).to_bytes());
    let mut body = serde_json::json!({
        "challenger": Key::of(&challenger),
        "bond": bond,
        "signature": signature,
        "receipt": receipt,
        "spec": spec,
        "input_base64": base64::engine::general_purpose::STANDARD.encode(&input),
    });
    let route = match (position, node) {
        (None, _) => "/v1/disputes/result",
        (Some(t), Some(node)) => {
            let job_id = signed.receipt.job_id;
            let fetch = |path: String| {
                let (status, bytes) = rt.block_on(cli::client::get_bytes(node, &path, api_key))?;
                anyhow::ensure!(
                    status == 200,
                    "{node}{path} answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                );
                Ok(bytes)
            };
            let path = format!("/v1/jobs/{job_id}/output");
            let (status, output, served_signature) = rt.block_on(
                cli::client::get_bytes_and_header(node, &path, api_key, "x-vouch-served-signature"),
            )?;
            anyhow::ensure!(
                status == 200,
                "{node}{path} answered {status}: {}",
                String::from_utf8_lossy(&output)
            );
            let opening: serde_json::Value =
                serde_json::from_slice(&fetch(format!("/v1/jobs/{job_id}/trace/{t}"))?)
                    .context("the node's trace opening is not JSON")?;
            body["output_base64"] = base64::engine::general_purpose::STANDARD
                .encode(&output)
                .into();
            body["position"] = t.into();
            // The agreed prefix: the served tokens before t (what the challenger's own run
            // gave too, if t is the first divergence).
            if let Some(tokens) = serde_json::from_slice::<serde_json::Value>(&output)
                .ok()
                .and_then(|v| v["tokens"].as_array().cloned())
            {
                body["prefix"] = tokens
                    .into_iter()
                    .take(t as usize)
                    .collect::<Vec<_>>()
                    .into();
            }
            body["leaf"] = opening["leaf"].clone();
            body["proof"] = opening["proof"].clone();
            // What the operator signed it served: proof if it served something else.
            if let Some(sig) = served_signature {
                body["output_signature"] = sig.into();
            }
            if let Some(sig) = opening["served_signature"].as_str() {
                body["leaf_signature"] = sig.into();
            }
            "/v1/disputes/token"
        }
        (Some(_), None) => anyhow::bail!("a token dispute needs --node"),
    };
    // Two runs of the job at once (they may queue behind other disputes): allow for its
    // own timeout twice, plus the daemon.
    let timeout_ms = spec
        .pointer("/limits/timeout_ms")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let wait = std::time::Duration::from_millis(timeout_ms.saturating_mul(2))
        + std::time::Duration::from_secs(300);
    let deadline = std::time::Instant::now() + wait;
    let posted = rt.block_on(cli::client::post_json_within(url, route, &body, wait));
    match posted {
        Ok((status, answer)) if (200..300).contains(&status) => {
            println!("{}", serde_json::to_string_pretty(&answer)?);
            return Ok(());
        }
        Ok((503, answer)) if answer.pointer("/error/code") == Some(&"dispute_pending".into()) => {
            eprintln!(
                "the dispute is open, its bond locked, the verdict still to come: {}",
                answer
                    .pointer("/error/message")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("")
            );
        }
        Ok((status, answer)) => {
            println!("{}", serde_json::to_string_pretty(&answer)?);
            anyhow::bail!("the verifier answered {status}");
        }
        Err(e) => eprintln!("no verdict in the answer ({e:#}); asking for it"),
    }
    let verdict = rt.block_on(poll_dispute(url, &hex::encode(id), deadline))?;
    println!("{}", serde_json::to_string_pretty(&verdict)?);
    Ok(())
}

/// Asks `GET /v1/disputes/{id}` until the dispute is decided (through a verifier that is
/// restarting, too) and returns its verdict.
async fn poll_dispute(
    url: &str,
    id: &str,
    deadline: std::time::Instant,
) -> anyhow::Result<serde_json::Value> {
    let path = format!("/v1/disputes/{id}");
    loop {
        match cli::client::get_json(url, &path).await {
            Ok((200, status)) if status["state"] == "decided" => {
                return Ok(status["verdict"].clone());
            }
            Ok((200, _)) => {}
            Ok((404, _)) => anyhow::bail!(
                "the verifier holds no dispute {id}: the challenge was not accepted; send it again"
            ),
            Ok((status, answer)) => eprintln!("{url}{path} answered {status}: {answer}"),
            Err(e) => eprintln!("{url}{path}: {e:#}; retrying"),
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "dispute {id} is still undecided; ask {url}{path} later"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

fn serve(args: RunArgs) -> anyhow::Result<()> {
    let admin = cli::keys::load(&cli::keys::key_path(&args.data_dir))?;
    let network = NetworkId::parse_or_name(&args.network);
    let config = LedgerConfig::new(
        args.challenge_window_ms,
        args.withdrawal_delay_ms,
        args.min_stake_value,
    )?;
    let ledger = SqliteLedger::open(
        args.data_dir.join("ledger.sqlite"),
        config,
        network.0,
        admin.clone(),
    )?;
    let docker_host = args
        .docker_host
        .clone()
        .unwrap_or_else(vouch_exec::DockerExecutor::default_host);
    // Its containers carry this label, so a restart sweeps what a crash left behind.
    let label = format!("verifier-{}", &Key::of(&admin).to_hex()[..16]);
    let executor = Arc::new(vouch_exec::DockerExecutor::new(docker_host.clone(), label));
    let verifier = Verifier::new(
        Arc::new(ledger),
        admin.clone(),
        network,
        DisputeConfig::default(),
    )
    .with_executor(executor.clone())
    .with_withholding_deadline_ms(args.withholding_deadline_ms);
    let verifier = Arc::new(verifier);
    tokio::runtime::Runtime::new()?.block_on(async move {
        use vouch_exec::Executor as _;
        // Docker is only needed for wrong-result disputes: serve the rest without it.
        match tokio::time::timeout(std::time::Duration::from_secs(10), executor.sweep()).await {
            Ok(Ok(n)) => tracing::info!(%docker_host, swept = n, "re-execution through Docker"),
            // Wrong-result disputes are refused (503) until it is back.
            Ok(Err(e)) => tracing::warn!(%docker_host, %e, "Docker unavailable"),
            Err(_) => tracing::warn!(%docker_host, "Docker did not answer within 10 s"),
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        // Disputes opened before a crash are judged again (after the sweep above removed
        // the dead process's containers), then every RESUME_INTERVAL any that failed.
        let resumer = {
            let (verifier, mut stop) = (verifier.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(vouch_verifier::reexec::RESUME_INTERVAL);
                loop {
                    tokio::select! {
                        _ = stop.changed() => break,
                        _ = tick.tick() => {}
                    }
                    match verifier.resume_open_disputes().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(open = n, "judging open disputes"),
                        Err(e) => tracing::warn!(%e, "cannot list open disputes"),
                    }
                }
            })
        };
        let mut state = ApiState::new(verifier.clone())
            .with_beacon_epoch_ms(args.beacon_epoch_ms)
            .with_security(vouch_verifier::security::SecurityParams {
                gamma_ppm: args.gamma,
            });
        let mut tasks = vec![];
        let mut net = None;
        if !args.p2p_listen.is_empty() {
            let identity = vouch_net::load_or_create_identity(&args.data_dir.join("p2p-key"))?;
            let opts = vouch_verifier::gossip::GossipOptions {
                listen: args.p2p_listen.clone(),
                bootstrap: args.p2p_bootstrap.clone(),
                mdns: !args.no_mdns,
                // The open value at risk survives a restart.
                open_jobs: Some(args.data_dir.join("open-jobs.sqlite")),
            };
            let (vnet, t) = vouch_verifier::gossip::start(
                verifier.clone(),
                admin.clone(),
                identity,
                opts,
                stop_rx,
            )
            .await
            .context("joining the peer-to-peer network")?;
            state = state.with_network(vnet.clone());
            net = Some(vnet);
            tasks = t;
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| {
                format!(
                    "binding {} (is another verifier running? pick another --listen)",
                    args.listen
                )
            })?;
        tracing::info!(
            listen = %args.listen,
            network = %network,
            verifier = %Key::of(&admin),
            "vouch-verifier serving"
        );
        vouch_verifier::server::run(listener, state, vouch_verifier::server::shutdown_signal())
            .await?;
        let _ = stop_tx.send(true);
        let _ = resumer.await;
        for t in tasks {
            let _ = t.await;
        }
        if let Some(n) = net {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), n.net.shutdown()).await;
        }
        // The warm model container of one-token disputes, and anything else of ours.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), executor.sweep()).await;
        anyhow::Ok(())
    })
}

fn watch(args: WatchArgs) -> anyhow::Result<()> {
    let challenger = cli::keys::load(&args.challenger_key)?;
    let bond = vouch_verifier::Bond {
        asset: args.bond_asset,
        amount: args.bond_amount,
    };
    let mut config = vouch_verifier::watch::WatchConfig::new(
        &args.verifier_url,
        challenger.clone(),
        bond,
        args.sample_rate,
    );
    config.p2p = vouch_verifier::gossip::GossipOptions {
        listen: args.p2p_listen,
        bootstrap: args.p2p_bootstrap,
        mdns: !args.no_mdns,
        open_jobs: None,
    };
    config.concurrency = usize::from(args.concurrency);
    config.max_sampled = args.max_queue;
    config.withholding_disputes = !args.no_withholding_disputes;
    config.deterrence = args
        .per_job_rate
        .then_some(vouch_verifier::watch::Deterrence {
            collusion_ppm: args.collusion,
            lambda_ppm: args.lambda,
        });
    let identity = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            vouch_net::load_or_create_identity(&dir.join("p2p-key"))?
        }
        None => vouch_net::libp2p::identity::Keypair::generate_ed25519(),
    };
    let docker_host = args
        .docker_host
        .unwrap_or_else(vouch_exec::DockerExecutor::default_host);
    // Its containers carry this label, so a restart sweeps what a crash left behind.
    let label = format!("watcher-{}", &Key::of(&challenger).to_hex()[..16]);
    let executor = Arc::new(vouch_exec::DockerExecutor::new(docker_host.clone(), label));
    tokio::runtime::Runtime::new()?.block_on(async move {
        use vouch_exec::Executor as _;
        match tokio::time::timeout(std::time::Duration::from_secs(10), executor.sweep()).await {
            Ok(Ok(n)) => tracing::info!(%docker_host, swept = n, "re-execution through Docker"),
            // Runs fail (and are counted) until it is back.
            Ok(Err(e)) => tracing::warn!(%docker_host, %e, "Docker unavailable"),
            Err(_) => tracing::warn!(%docker_host, "Docker did not answer within 10 s"),
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let (watcher, tasks) = vouch_verifier::watch::start(config, identity, executor, stop_rx)
            .await
            .context("starting the watcher")?;
        match args.listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding {addr} (pick another --listen)"))?;
                tracing::info!(listen = %addr, "status API: GET /v1/watch");
                axum::serve(listener, vouch_verifier::watch::router(watcher.clone()))
                    .with_graceful_shutdown(vouch_verifier::server::shutdown_signal())
                    .await?;
            }
            None => vouch_verifier::server::shutdown_signal().await,
        }
        let _ = stop_tx.send(true);
        for t in tasks {
            // Workers finish the run they are in; a dispute in flight is the verifier's to
            // finish (GET /v1/disputes/{id} tells how it ended).
            let _ = tokio::time::timeout(std::time::Duration::from_secs(30), t).await;
        }
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(5), watcher.net.shutdown()).await;
        anyhow::Ok(())
    })
}

/// A PEM key, or a libp2p identity file (protobuf, as `vouch-node` writes `p2p-key`).
fn load_peer_key(path: &Path) -> anyhow::Result<ed25519_dalek::SigningKey> {
    if let Ok(k) = cli::keys::load(path) {
        return Ok(k);
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let kp = vouch_net::libp2p::identity::Keypair::from_protobuf_encoding(&bytes).with_context(
        || {
            format!(
                "{}: neither a PEM key nor a libp2p identity",
                path.display()
            )
        },
    )?;
    let ed = kp
        .try_into_ed25519()
        .with_context(|| format!("{}: not an ed25519 identity", path.display()))?;
    let secret: [u8; 32] = ed
        .secret()
        .as_ref()
        .try_into()
        .context("ed25519 secret is not 32 bytes")?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&secret))
}

/// A receipt JSON, or a job JSON (`GET /v1/jobs/{id}`) with a `receipt` field.
fn read_receipt(path: &Path) -> anyhow::Result<ReceiptJson> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    if let Some(receipt) = value.get_mut("receipt") {
        value = receipt.take();
    }
    serde_json::from_value(value)
        .with_context(|| format!("{}: not a receipt JSON (SPEC.md §4.1)", path.display()))
}

fn check() -> anyhow::Result<()> {
    let mut text = String::new();
    std::io::stdin().take(1 << 20).read_to_string(&mut text)?;
    let job: serde_json::Value = serde_json::from_str(&text).context("not JSON")?;
    let receipt: vouch_proto::ReceiptJson =
        serde_json::from_value(job["receipt"].clone()).context("no receipt in the job JSON")?;
    let signed = receipt.verify()?;
    let spec = vouch_proto::JobSpec::from_json(job["spec"].to_string().as_bytes())?;
    anyhow::ensure!(
        spec.job_id()? == signed.receipt.job_id
            && spec.image == signed.receipt.image
            && spec.input_digest == signed.receipt.input_digest,
        "the receipt is not about this job spec"
    );
    println!(
        "ok: job {} signed by {} (sequence {})",
        signed.receipt.job_id, signed.receipt.operator, signed.receipt.sequence
    );
    Ok(())
}
