//! `vouch-bench`: job latency and throughput through `vouch-node` versus `docker run --rm`
//! of the same image with the same sandbox flags, measured in the same run. Prints a
//! Markdown table; ratios are node / docker (lower is better, ≤ 1.0 is the target).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};
use vouch_node::config::Config;
use vouch_node::executor::{DockerExecutor, Executor};
use vouch_node::node::Node;
use vouch_node::signer::SigningStore;
use vouch_node::store::JobStore;

#[derive(Debug, Parser)]
#[command(about = "Benchmark vouch-node job overhead against docker run --rm")]
struct Args {
    /// Sequential runs per side for the latency figures.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Jobs per side for each throughput figure.
    #[arg(long, default_value_t = 24)]
    jobs: usize,
    /// Concurrency levels for throughput.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    concurrency: Vec<usize>,
    /// Workload image.
    #[arg(long, default_value = "vouch/wc:dev")]
    image: String,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Which figures: `jobs` (node vs docker run), `inference` (/v1/chat/completions vs the
    /// model workload called directly), `memory` (the vouch-node process's RSS idle and
    /// under load), or `all`.
    #[arg(long, default_value = "all")]
    suite: String,
    /// Requests per side and size for the inference figures.
    #[arg(long, default_value_t = 20)]
    requests: usize,
    /// Inference requests the memory figures grow the node through (cumulative sizes).
    #[arg(long, value_delimiter = ',', default_value = "200,2000,10000")]
    memory_requests: Vec<usize>,
    /// Generated tokens for the inference figures.
    #[arg(long, value_delimiter = ',', default_value = "16,64,256")]
    tokens: Vec<u32>,
    /// Requests per side and size for the cold inference figures (a container each).
    #[arg(long, default_value_t = 10)]
    cold_requests: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn stats(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (percentile(&v, 0.5), percentile(&v, 0.95))
}

async fn docker_run(image: &str, input: &[u8], limits: &vouch_proto::Limits) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("docker")
        .args(sandbox_args(limits))
        .arg(image)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running the docker CLI")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() || out.stdout.is_empty() {
        bail!(
            "docker run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

async fn node_run(
    client: &reqwest::Client,
    url: &str,
    image: &str,
    input: &str,
    nonce: String,
) -> anyhow::Result<()> {
    let v: Value = client
        .post(format!("{url}/v1/jobs"))
        .json(&json!({"image": image, "input": input, "nonce": nonce}))
        .send()
        .await?
        .json()
        .await?;
    let id = v["job_id"].as_str().context("no job id")?.to_string();
    loop {
        let j: Value = client
            .get(format!("{url}/v1/jobs/{id}?wait_ms=30000"))
            .send()
            .await?
            .json()
            .await?;
        match j["status"].as_str() {
            Some("succeeded") => return Ok(()),
            Some("failed") => bail!("job failed: {}", j["reason"]),
            _ => {}
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut report = serde_json::Map::new();
    if args.suite == "jobs" || args.suite == "all" {
        report.insert("jobs".into(), bench_jobs(&args).await?);
    }
    if args.suite == "inference" || args.suite == "all" {
        report.insert("inference".into(), bench_inference(&args).await?);
        report.insert("inference_cold".into(), bench_inference_cold(&args).await?);
    }
    if args.suite == "memory" || args.suite == "all" {
        report.insert("memory".into(), bench_memory(&args).await?);
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&Value::Object(report))?)?;
    }
    Ok(())
}

/// Starts an in-process node on a loopback port with a fresh key and data directory.
async fn start_node(
    config: Config,
) -> anyhow::Result<(
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), vouch_node::error::NodeError>>,
    tempfile::TempDir,
)> {
    let dir = tempfile::tempdir()?;
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..config
    };
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let signer = SigningStore::open(&dir.path().join("signing.sqlite"), key, config.network_id())?;
    let exec = DockerExecutor::new(
        config.docker_endpoint(),
        format!("bench-{:08x}", rand::random::<u32>()),
    );
    exec.health().await.context("Docker is not reachable")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (node, worker) = Node::new(
        config,
        Arc::new(JobStore::open(&dir.path().join("jobs.sqlite"))?),
        Arc::new(signer),
        Arc::new(exec),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(vouch_node::serve(node, worker, listener, async {
        let _ = stopped.await;
    }));
    Ok((url, stop, server, dir))
}

/// One request to a `vouch-infer serve` container driven directly over its stdin/stdout.
struct DirectModel {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::BufReader<tokio::process::ChildStdout>,
}

impl DirectModel {
    async fn start(image: &str, limits: &vouch_proto::Limits) -> anyhow::Result<Self> {
        let mut child = tokio::process::Command::new("docker")
            .args(sandbox_args(limits))
            .args([image, "serve"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("running the docker CLI")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = tokio::io::BufReader::new(child.stdout.take().context("stdout")?);
        Ok(DirectModel {
            child,
            stdin,
            stdout,
        })
    }

    async fn request(&mut self, line: &[u8]) -> anyhow::Result<Value> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        self.stdin.write_all(line).await?;
        self.stdin.write_all(b"\n").await?;
        self.stdin.flush().await?;
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).await?;
        let v: Value = serde_json::from_str(&reply).context("model reply")?;
        let out: Value = serde_json::from_str(v["output"].as_str().context("no output")?)?;
        Ok(out)
    }
}

fn canonical_input(tokens: u32, seed: u64) -> Vec<u8> {
    let v = json!({
        "max_tokens": tokens,
        "messages": [{"content": "Tell me about verifiable computing.", "role": "user"}],
        "model": "vouch-tiny-1", "seed": seed, "stop": [], "temperature_milli": 800, "top_p_milli": 950,
    });
    vouch_proto::to_canonical_bytes(&v).unwrap_or_default()
}

async fn bench_inference(args: &Args) -> anyhow::Result<Value> {
    let limits = Config::default().limits;
    let image = "vouch/inference-stub:dev";
    let (url, stop, server, _dir) = start_node(Config {
        max_concurrent_jobs: 1,
        ..Config::default()
    })
    .await?;
    let client = reqwest::Client::new();
    let mut direct = DirectModel::start(image, &limits).await?;
    let mut seed = 1_000u64;
    let mut rows = vec![];
    for &tokens in &args.tokens {
        // Warm both sides up (the node starts its warm container on first use).
        for _ in 0..3 {
            seed += 1;
            chat(&client, &url, tokens, seed).await?;
            direct.request(&canonical_input(tokens, seed)).await?;
        }
        let (mut n, mut d, mut generated) = (vec![], vec![], 0u64);
        let phases_before = phase_sums(&client, &url).await?;
        let t_all = Instant::now();
        let mut node_total = 0.0;
        let mut direct_total = 0.0;
        for _ in 0..args.requests {
            seed += 1;
            let t = Instant::now();
            let usage = chat(&client, &url, tokens, seed).await?;
            let e = t.elapsed().as_secs_f64();
            node_total += e;
            n.push(e * 1e3);
            generated += usage;
            let t = Instant::now();
            direct.request(&canonical_input(tokens, seed)).await?;
            let e = t.elapsed().as_secs_f64();
            direct_total += e;
            d.push(e * 1e3);
        }
        let _ = t_all;
        let phases = phase_means(&phases_before, &phase_sums(&client, &url).await?);
        let node_mean = n.iter().sum::<f64>() / n.len().max(1) as f64;
        let direct_mean = d.iter().sum::<f64>() / d.len().max(1) as f64;
        let (n50, n95) = stats(n);
        let (d50, d95) = stats(d);
        rows.push(json!({
            "max_tokens": tokens,
            "avg_completion_tokens": generated as f64 / args.requests as f64,
            "node_p50_ms": n50, "node_p95_ms": n95, "direct_p50_ms": d50, "direct_p95_ms": d95,
            "node_req_per_s": args.requests as f64 / node_total,
            "direct_req_per_s": args.requests as f64 / direct_total,
            "overhead_p50": n50 / d50 - 1.0,
            "node_mean_ms": node_mean, "direct_mean_ms": direct_mean,
            // A warm job has no container create/start/remove: only its exchange (`run`).
            "phases_ms": phases.iter().filter(|(p, _)| !matches!(p.as_str(), "create" | "start" | "remove"))
                .map(|(p, ms)| json!({"phase": p, "mean_ms": ms})).collect::<Vec<_>>(),
        }));
    }
    let _ = direct.child.kill().await;
    let _ = stop.send(());
    let _ = server.await;
    println!("\n## /v1/chat/completions (warm) vs the model workload called directly (warm `serve` container), same run\n");
    println!("| max_tokens | avg tokens | node p50 / p95 (ms) | direct p50 / p95 (ms) | node req/s | direct req/s | overhead at p50 |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} | {:.1} | {:+.1}% |",
            r["max_tokens"],
            r["avg_completion_tokens"].as_f64().unwrap_or(0.0),
            r["node_p50_ms"].as_f64().unwrap_or(0.0),
            r["node_p95_ms"].as_f64().unwrap_or(0.0),
            r["direct_p50_ms"].as_f64().unwrap_or(0.0),
            r["direct_p95_ms"].as_f64().unwrap_or(0.0),
            r["node_req_per_s"].as_f64().unwrap_or(0.0),
            r["direct_req_per_s"].as_f64().unwrap_or(0.0),
            r["overhead_p50"].as_f64().unwrap_or(0.0) * 100.0,
        );
    }
    println!(
        "\n### Where a warm request's time goes (means; the node's `vouch_job_phase_seconds`)\n"
    );
    println!("| max_tokens | node mean (ms) | direct mean (ms) | run: the model exchange | hash | sign | persist | rest: HTTP, normalization, queue, job insert, response |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let phase = |name: &str| {
            r["phases_ms"]
                .as_array()
                .and_then(|a| a.iter().find(|p| p["phase"] == name))
                .and_then(|p| p["mean_ms"].as_f64())
                .unwrap_or(0.0)
        };
        let node_mean = r["node_mean_ms"].as_f64().unwrap_or(0.0);
        let rest = node_mean
            - ["run", "hash", "sign", "persist"]
                .iter()
                .map(|p| phase(p))
                .sum::<f64>();
        println!(
            "| {} | {node_mean:.2} | {:.2} | {:.2} | {:.3} | {:.2} | {:.2} | {rest:.2} |",
            r["max_tokens"],
            r["direct_mean_ms"].as_f64().unwrap_or(0.0),
            phase("run"),
            phase("hash"),
            phase("sign"),
            phase("persist"),
        );
    }
    println!("\nThe node's figure includes HTTP, request normalization, hashing, the durable signing-history write, the job database and the response; the direct figure is the same model process answering the same request over a pipe.");
    Ok(json!(rows))
}

/// Cold: a node whose model is not kept warm (a container per request) against
/// `docker run --rm -i` of the same image with the same input, same sandbox flags.
async fn bench_inference_cold(args: &Args) -> anyhow::Result<Value> {
    let limits = Config::default().limits;
    let image = "vouch/inference-stub:dev";
    let mut config = Config {
        max_concurrent_jobs: 1,
        ..Config::default()
    };
    for m in &mut config.models {
        m.warm = false;
    }
    let (url, stop, server, _dir) = start_node(config).await?;
    let client = reqwest::Client::new();
    let mut seed = 900_000u64;
    let mut rows = vec![];
    for &tokens in &args.tokens {
        seed += 1;
        chat(&client, &url, tokens, seed).await?;
        docker_run(image, &canonical_input(tokens, seed), &limits).await?;
        let (mut n, mut d) = (vec![], vec![]);
        for _ in 0..args.cold_requests {
            seed += 1;
            let t = Instant::now();
            chat(&client, &url, tokens, seed).await?;
            n.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            docker_run(image, &canonical_input(tokens, seed), &limits).await?;
            d.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (n50, n95) = stats(n);
        let (d50, d95) = stats(d);
        rows.push(
            json!({"max_tokens": tokens, "node_p50_ms": n50, "node_p95_ms": n95,
                         "docker_run_p50_ms": d50, "docker_run_p95_ms": d95,
                         "node_req_per_s": 1e3 / n50, "docker_run_req_per_s": 1e3 / d50,
                         "ratio_p50": n50 / d50}),
        );
    }
    let _ = stop.send(());
    let _ = server.await;
    println!("\n## /v1/chat/completions (cold: a container per request) vs `docker run --rm -i` of the model image, same run\n");
    println!("| max_tokens | node p50 / p95 (ms) | docker run p50 / p95 (ms) | ratio node/docker at p50 |");
    println!("|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.1} / {:.1} | {:.1} / {:.1} | {:.2} |",
            r["max_tokens"],
            r["node_p50_ms"].as_f64().unwrap_or(0.0),
            r["node_p95_ms"].as_f64().unwrap_or(0.0),
            r["docker_run_p50_ms"].as_f64().unwrap_or(0.0),
            r["docker_run_p95_ms"].as_f64().unwrap_or(0.0),
            r["ratio_p50"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(json!(rows))
}

async fn chat(client: &reqwest::Client, url: &str, tokens: u32, seed: u64) -> anyhow::Result<u64> {
    let v: Value = client
        .post(format!("{url}/v1/chat/completions"))
        .json(&json!({"model": "vouch-tiny-1", "messages": [{"role": "user", "content": "Tell me about verifiable computing."}],
                      "max_tokens": tokens, "temperature": 0.8, "top_p": 0.95, "seed": seed}))
        .send()
        .await?
        .json()
        .await?;
    v["usage"]["completion_tokens"]
        .as_u64()
        .with_context(|| format!("unexpected answer: {v}"))
}

fn sandbox_args(limits: &vouch_proto::Limits) -> Vec<String> {
    vec![
        "run".into(),
        "--rm".into(),
        "-i".into(),
        "--network".into(),
        "none".into(),
        "--read-only".into(),
        "--tmpfs".into(),
        format!(
            "/tmp:rw,nosuid,nodev,noexec,size={},mode=1777",
            limits.tmpfs_bytes
        ),
        "--cap-drop".into(),
        "ALL".into(),
        "--security-opt".into(),
        "no-new-privileges:true".into(),
        "--user".into(),
        "65534:65534".into(),
        "--pids-limit".into(),
        limits.pids.to_string(),
        "--memory".into(),
        limits.memory_bytes.to_string(),
        "--memory-swap".into(),
        limits.memory_bytes.to_string(),
        "--cpus".into(),
        format!("{}", limits.cpu_millis as f64 / 1000.0),
        "--log-driver".into(),
        "none".into(),
    ]
}

async fn bench_jobs(args: &Args) -> anyhow::Result<Value> {
    let config = Config {
        max_concurrent_jobs: args.concurrency.iter().copied().max().unwrap_or(4).max(1),
        ..Config::default()
    };
    let limits = config.limits;
    let (url, stop, server, _dir) = start_node(config).await?;
    reqwest::Client::new()
        .post(format!("{url}/v1/jobs"))
        .json(&json!({"image": args.image, "nonce": "probe"}))
        .send()
        .await?
        .error_for_status()
        .with_context(|| format!("{} missing: run images/build.sh", args.image))?;
    let client = reqwest::Client::new();
    let input = "the quick brown fox jumps over the lazy dog\n".repeat(100);
    let mut nonce = 0u64;
    let mut next = || {
        nonce += 1;
        format!("bench-{nonce}-{}", rand::random::<u32>())
    };

    eprintln!("warming up…");
    for _ in 0..3 {
        node_run(&client, &url, &args.image, &input, next()).await?;
        docker_run(&args.image, input.as_bytes(), &limits).await?;
    }

    eprintln!("latency: {} sequential runs each, interleaved", args.runs);
    let phases_before = phase_sums(&client, &url).await?;
    let (mut n_lat, mut d_lat) = (vec![], vec![]);
    for _ in 0..args.runs {
        let t = Instant::now();
        node_run(&client, &url, &args.image, &input, next()).await?;
        n_lat.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        docker_run(&args.image, input.as_bytes(), &limits).await?;
        d_lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let phases = phase_means(&phases_before, &phase_sums(&client, &url).await?);
    let node_mean = n_lat.iter().sum::<f64>() / n_lat.len().max(1) as f64;
    let (n50, n95) = stats(n_lat);
    let (d50, d95) = stats(d_lat);

    let mut rows = vec![];
    for &c in &args.concurrency {
        eprintln!("throughput: {} jobs at concurrency {c}", args.jobs);
        let per = args.jobs.div_ceil(c);
        let t = Instant::now();
        let mut tasks = vec![];
        for _ in 0..c {
            let (client, url, image, input) = (
                client.clone(),
                url.clone(),
                args.image.clone(),
                input.clone(),
            );
            let nonces: Vec<String> = (0..per).map(|_| next()).collect();
            tasks.push(tokio::spawn(async move {
                for n in nonces {
                    node_run(&client, &url, &image, &input, n).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let node_tps = (per * c) as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut tasks = vec![];
        for _ in 0..c {
            let (image, input) = (args.image.clone(), input.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..per {
                    docker_run(&image, input.as_bytes(), &limits).await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        let docker_tps = (per * c) as f64 / t.elapsed().as_secs_f64();
        rows.push((c, node_tps, docker_tps));
    }
    let _ = stop.send(());
    let _ = server.await;

    println!(
        "## vouch-node vs `docker run --rm` ({}, same sandbox flags, same run)\n",
        args.image
    );
    println!("| figure | vouch-node | docker run | ratio node/docker |");
    println!("|---|---|---|---|");
    println!(
        "| latency p50 (ms) | {n50:.1} | {d50:.1} | {:.2} |",
        n50 / d50
    );
    println!(
        "| latency p95 (ms) | {n95:.1} | {d95:.1} | {:.2} |",
        n95 / d95
    );
    for (c, n, d) in &rows {
        println!(
            "| jobs/s at concurrency {c} | {n:.2} | {d:.2} | {:.2} (time per job) |",
            d / n
        );
    }
    println!("\nvouch-node latency is end to end for a client: submit over HTTP, run, hash, sign (fsync), persist, poll.");
    println!("\n### Where a job's time goes (the node's `vouch_job_phase_seconds`, mean over the {} sequential runs)\n", args.runs);
    println!("| phase | mean (ms) | share of the node's mean latency ({node_mean:.1} ms) |");
    println!("|---|---|---|");
    let mut accounted = 0.0;
    for (phase, ms) in &phases {
        accounted += ms;
        println!("| {phase} | {ms:.2} | {:.1}% |", 100.0 * ms / node_mean);
    }
    println!(
        "| rest: HTTP, queueing, image resolution, job insert, long-poll wake-up | {:.2} | {:.1}% |",
        node_mean - accounted,
        100.0 * (node_mean - accounted) / node_mean
    );
    Ok(json!({
        "image": args.image,
        "latency_ms": {"node_p50": n50, "node_p95": n95, "docker_p50": d50, "docker_p95": d95,
                       "ratio_p50": n50 / d50, "ratio_p95": n95 / d95},
        "phases_ms": phases.iter().map(|(p, ms)| json!({"phase": p, "mean_ms": ms})).collect::<Vec<_>>(),
        "node_mean_ms": node_mean,
        "throughput": rows.iter().map(|(c, n, d)| json!({"concurrency": c, "node_jobs_per_s": n, "docker_jobs_per_s": d})).collect::<Vec<_>>(),
    }))
}

/// Phases in the order a job goes through them.
const PHASES: [&str; 7] = [
    "create", "start", "run", "remove", "hash", "sign", "persist",
];

/// `(sum seconds, count)` of each phase from the node's Prometheus text.
async fn phase_sums(
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<std::collections::HashMap<String, (f64, f64)>> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let mut out = std::collections::HashMap::new();
    for line in text.lines() {
        for (suffix, slot) in [("_sum", 0), ("_count", 1)] {
            let prefix = format!("vouch_job_phase_seconds{suffix}{{phase=\"");
            if let Some(rest) = line.strip_prefix(&prefix) {
                let Some((phase, value)) = rest.split_once("\"} ") else {
                    continue;
                };
                let v: f64 = value.trim().parse().unwrap_or(0.0);
                let e = out.entry(phase.to_string()).or_insert((0.0, 0.0));
                if slot == 0 {
                    e.0 = v;
                } else {
                    e.1 = v;
                }
            }
        }
    }
    Ok(out)
}

/// Mean milliseconds per phase between two scrapes.
fn phase_means(
    before: &std::collections::HashMap<String, (f64, f64)>,
    after: &std::collections::HashMap<String, (f64, f64)>,
) -> Vec<(String, f64)> {
    PHASES
        .iter()
        .map(|p| {
            let (s0, c0) = before.get(*p).copied().unwrap_or((0.0, 0.0));
            let (s1, c1) = after.get(*p).copied().unwrap_or((0.0, 0.0));
            let n = (c1 - c0).max(1.0);
            (p.to_string(), (s1 - s0) / n * 1e3)
        })
        .collect()
}

/// `VmRSS` and `VmHWM` (peak) of a process, in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .context("no such field in /proc/<pid>/status")?
            .parse()
            .context("bad /proc/<pid>/status field")
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// A real `vouch-node run` process (the binary next to this one) on a loopback port.
struct NodeProcess {
    child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    async fn start(max_concurrent_jobs: usize) -> anyhow::Result<Self> {
        let bin = std::env::current_exe()?
            .parent()
            .context("no directory")?
            .join("vouch-node");
        anyhow::ensure!(
            bin.exists(),
            "{} is missing: build it with `cargo build --release -p vouch-node`",
            bin.display()
        );
        let dir = tempfile::tempdir()?;
        let keys = tokio::process::Command::new(&bin)
            .args(["keys", "generate", "--data-dir"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await?;
        anyhow::ensure!(keys.success(), "vouch-node keys generate failed");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = tokio::process::Command::new(&bin)
            .arg("run")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--warm-models", "true"])
            .args(["--max-concurrent-jobs", &max_concurrent_jobs.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        while client.get(format!("{url}/healthz")).send().await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "vouch-node did not start");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(NodeProcess {
            child,
            url,
            _dir: dir,
        })
    }

    fn rss(&self) -> anyhow::Result<(u64, u64)> {
        rss_kib(self.child.id().context("node exited")?)
    }

    /// Stops the node with SIGTERM, as an operator would, so it removes its warm model
    /// container on the way out (SIGKILL would leave it running).
    async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await?;
        }
        let status = tokio::time::timeout(std::time::Duration::from_secs(30), self.child.wait())
            .await
            .context("vouch-node did not stop within 30 s of SIGTERM")??;
        anyhow::ensure!(status.success(), "vouch-node exited with {status}");
        Ok(())
    }
}

/// Runs `work` while sampling the node's RSS every 50 ms; returns the largest sample.
async fn sampled_peak<F: std::future::Future<Output = anyhow::Result<()>>>(
    node: &NodeProcess,
    work: F,
) -> anyhow::Result<u64> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let pid = node.child.id().context("node exited")?;
    let peak = Arc::new(AtomicU64::new(0));
    let seen = peak.clone();
    let sampler = tokio::spawn(async move {
        loop {
            if let Ok((rss, _)) = rss_kib(pid) {
                seen.fetch_max(rss, Ordering::Relaxed);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    let result = work.await;
    sampler.abort();
    let (now, _) = rss_kib(pid)?;
    let peak = peak.load(Ordering::Relaxed).max(now);
    result.map(|_| peak)
}

async fn bench_memory(args: &Args) -> anyhow::Result<Value> {
    const CONCURRENCY: usize = 16;
    let node = NodeProcess::start(CONCURRENCY).await?;
    let client = reqwest::Client::new();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let (idle, _) = node.rss()?;
    let mb = |kib: u64| kib as f64 / 1024.0;
    let mut rows = vec![
        json!({"state": "idle after start", "requests": 0, "rss_kib": idle, "peak_kib": idle}),
    ];

    // Jobs: CONCURRENCY containers at once (vouch/wc:dev), 3 rounds.
    let jobs = CONCURRENCY * 3;
    let peak = sampled_peak(&node, async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..jobs {
            let (client, url, image) = (client.clone(), node.url.clone(), args.image.clone());
            set.spawn(async move {
                node_run(&client, &url, &image, "memory bench", format!("mem-{i}")).await
            });
            if set.len() >= CONCURRENCY {
                if let Some(r) = set.join_next().await {
                    r??;
                }
            }
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
        Ok(())
    })
    .await?;
    let (after, _) = node.rss()?;
    rows.push(json!({"state": format!("{jobs} container jobs, {CONCURRENCY} at once"), "requests": jobs, "rss_kib": after, "peak_kib": peak}));

    // Inference: warm 16-token requests, 4 at a time, through the growing sizes.
    let mut done = 0usize;
    let mut seed = 50_000u64;
    for &size in &args.memory_requests {
        let todo = size.saturating_sub(done);
        let peak = sampled_peak(&node, async {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..todo {
                seed += 1;
                let (client, url) = (client.clone(), node.url.clone());
                let s = seed;
                set.spawn(async move { chat(&client, &url, 16, s).await });
                if set.len() >= 4 {
                    if let Some(r) = set.join_next().await {
                        r??;
                    }
                }
            }
            while let Some(r) = set.join_next().await {
                r??;
            }
            Ok(())
        })
        .await?;
        done = size;
        let (after, _) = node.rss()?;
        rows.push(json!({"state": format!("after {size} inference requests (16 tokens, 4 at once)"), "requests": size, "rss_kib": after, "peak_kib": peak}));
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (settled, hwm) = node.rss()?;
    rows.push(json!({"state": "idle again, 2 s later", "requests": done, "rss_kib": settled, "peak_kib": hwm}));
    node.stop().await?;

    println!("\n## Memory: the vouch-node process (real binary), idle and under load\n");
    println!("| state | RSS (MiB) | peak RSS while it ran (MiB) | RSS vs idle |");
    println!("|---|---|---|---|");
    for r in &rows {
        let rss = r["rss_kib"].as_u64().unwrap_or(0);
        println!(
            "| {} | {:.1} | {:.1} | {:.2} |",
            r["state"].as_str().unwrap_or(""),
            mb(rss),
            mb(r["peak_kib"].as_u64().unwrap_or(0)),
            rss as f64 / idle as f64
        );
    }
    println!("\nRSS is the node process only (`/proc/<pid>/status`): workload containers, the warm model container and dockerd are not in it. Jobs and receipts live in SQLite files, not in memory.");
    Ok(json!(rows))
}
