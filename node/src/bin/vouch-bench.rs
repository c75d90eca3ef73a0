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
        .args([
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "--read-only",
            "--tmpfs",
            &format!(
                "/tmp:rw,nosuid,nodev,noexec,size={},mode=1777",
                limits.tmpfs_bytes
            ),
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges:true",
            "--user",
            "65534:65534",
            "--pids-limit",
            &limits.pids.to_string(),
            "--memory",
            &limits.memory_bytes.to_string(),
            "--memory-swap",
            &limits.memory_bytes.to_string(),
            "--cpus",
            &format!("{}", limits.cpu_millis as f64 / 1000.0),
            "--log-driver",
            "none",
            image,
        ])
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
    let dir = tempfile::tempdir()?;
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        max_concurrent_jobs: args.concurrency.iter().copied().max().unwrap_or(4).max(1),
        ..Config::default()
    };
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let signer = SigningStore::open(&dir.path().join("signing.sqlite"), key, config.network_id())?;
    let exec = DockerExecutor::new(config.docker_endpoint(), "bench");
    exec.health().await.context("Docker is not reachable")?;
    exec.resolve_image(&args.image)
        .await
        .with_context(|| format!("{} missing: run images/build.sh", args.image))?;
    let limits = config.limits;
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
    if let Some(path) = args.json {
        let v = json!({
            "image": args.image,
            "latency_ms": {"node_p50": n50, "node_p95": n95, "docker_p50": d50, "docker_p95": d95,
                           "ratio_p50": n50 / d50, "ratio_p95": n95 / d95},
            "throughput": rows.iter().map(|(c, n, d)| json!({"concurrency": c, "node_jobs_per_s": n, "docker_jobs_per_s": d})).collect::<Vec<_>>(),
        });
        std::fs::write(&path, serde_json::to_string_pretty(&v)?)?;
    }
    Ok(())
}
