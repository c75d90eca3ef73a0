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
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    concurrency: Vec<usize>,
    /// Workload image.
    #[arg(long, default_value = "vouch/wc:dev")]
    image: String,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Which figures: `jobs` (node vs docker run), `inference` (/v1/chat/completions vs the
    /// model workload called directly), or `all`.
    #[arg(long, default_value = "all")]
    suite: String,
    /// Requests per side and size for the inference figures.
    #[arg(long, default_value_t = 20)]
    requests: usize,
    /// Generated tokens for the inference figures.
    #[arg(long, value_delimiter = ',', default_value = "16,256")]
    tokens: Vec<u32>,
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
        let (n50, n95) = stats(n);
        let (d50, d95) = stats(d);
        rows.push(json!({
            "max_tokens": tokens,
            "avg_completion_tokens": generated as f64 / args.requests as f64,
            "node_p50_ms": n50, "node_p95_ms": n95, "direct_p50_ms": d50, "direct_p95_ms": d95,
            "node_req_per_s": args.requests as f64 / node_total,
            "direct_req_per_s": args.requests as f64 / direct_total,
            "overhead_p50": n50 / d50 - 1.0,
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
    println!("\nThe node's figure includes HTTP, request normalization, hashing, the durable signing-history write, the job database and the response; the direct figure is the same model process answering the same request over a pipe.");
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
    let (mut n_lat, mut d_lat) = (vec![], vec![]);
    for _ in 0..args.runs {
        let t = Instant::now();
        node_run(&client, &url, &args.image, &input, next()).await?;
        n_lat.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        docker_run(&args.image, input.as_bytes(), &limits).await?;
        d_lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
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
    Ok(json!({
        "image": args.image,
        "latency_ms": {"node_p50": n50, "node_p95": n95, "docker_p50": d50, "docker_p95": d95,
                       "ratio_p50": n50 / d50, "ratio_p95": n95 / d95},
        "throughput": rows.iter().map(|(c, n, d)| json!({"concurrency": c, "node_jobs_per_s": n, "docker_jobs_per_s": d})).collect::<Vec<_>>(),
    }))
}
