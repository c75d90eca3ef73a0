//! Verifier memory and start-up against the size of its ledger (issue 8: "verifier RSS with
//! 100k ledger events", at three sizes so the slope shows).
//!
//! One ledger file grows through the sizes (default 1,000 / 10,000 / 100,000 events:
//! deposits by 1,000 restakers, each restaker's first deposit followed by a delegation to
//! one of 16 operators). At each size, and at the baseline (the same binary on a ledger
//! holding only the asset and operator registrations), the real `vouch-verifier run`
//! process is started on the file, asked for `/v1/snapshot`, the first and the last page of
//! `/v1/events` and `/v1/registry`, and its resident set is read from `/proc/<pid>/status`
//! (VmRSS now, VmHWM the peak). Also reported: the time from spawn until `/healthz`
//! answers, and the ledger file's size.
//!
//! ```text
//! cargo bench -p vouch-verifier --bench memory -- [--quick] [--json FILE]
//! ```
//!
//! Prints a Markdown table on stdout; progress on stderr.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey as _};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use vouch_proto::{Digest, NetworkId};
use vouch_verifier::requests::{Key, RequestBody, SignedRequest};
use vouch_verifier::{CollateralLedger, LedgerConfig, SqliteLedger};

type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const NETWORK: &str = "vouch-bench-memory";
const RESTAKERS: u64 = 1_000;
const OPERATORS: u64 = 16;
const WINDOW_MS: u64 = 3_600_000;
const DELAY_MS: u64 = 7 * 24 * 3_600_000;

macro_rules! progress {
    ($($t:tt)*) => {{ eprintln!($($t)*); }};
}

fn key(tag: &str, i: u64) -> SigningKey {
    SigningKey::from_bytes(&Digest::of(format!("vouch-verifier-memory/{tag}/{i}").as_bytes()).0)
}

/// Applies signed requests to the ledger file, remembering each actor's nonce.
struct Filler {
    ledger: SqliteLedger,
    net: [u8; 32],
    nonces: std::collections::HashMap<Key, u64>,
    events: u64,
    now: u64,
}

impl Filler {
    fn push(&mut self, who: &SigningKey, body: RequestBody, peer: Option<&SigningKey>) -> Res<()> {
        let n = self.nonces.entry(Key::of(who)).or_insert(0);
        *n += 1;
        let mut req = SignedRequest::sign(&self.net, who, *n, body)?;
        if let Some(p) = peer {
            req = req.with_peer_signature(&self.net, p)?;
        }
        self.now += 1;
        self.ledger.apply(&req, self.now)?;
        self.events += 1;
        Ok(())
    }

    /// Registrations: one asset, the operators (with an allocation). Returns the count.
    fn setup(&mut self, admin: &SigningKey) -> Res<()> {
        self.push(
            admin,
            RequestBody::RegisterAsset {
                asset: "eth".into(),
                price_per_unit: 3,
            },
            None,
        )?;
        for i in 0..OPERATORS {
            let (op, peer) = (key("operator", i), key("peer", i));
            self.push(
                &op,
                RequestBody::RegisterOperator {
                    peer_key: Key::of(&peer),
                },
                Some(&peer),
            )?;
            self.push(
                &op,
                RequestBody::Allocate {
                    magnitude_ppm: 500_000,
                },
                None,
            )?;
        }
        Ok(())
    }

    /// Grows the ledger to `target` events: deposits round-robin over the restakers, each
    /// restaker's first deposit followed by its delegation.
    fn grow_to(&mut self, target: u64) -> Res<()> {
        while self.events < target {
            let i = self.events % RESTAKERS;
            let who = key("restaker", i);
            let first = !self.nonces.contains_key(&Key::of(&who));
            self.push(
                &who,
                RequestBody::Deposit {
                    asset: "eth".into(),
                    amount: 1_000 + u128::from(self.events % 997),
                },
                None,
            )?;
            if first && self.events < target {
                self.push(
                    &who,
                    RequestBody::Delegate {
                        operator: Key::of(&key("operator", i % OPERATORS)),
                    },
                    None,
                )?;
            }
        }
        Ok(())
    }
}

fn free_port() -> Res<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn rss_kib(pid: u32) -> Res<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Res<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .ok_or("bad status line")?
            .parse()?)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

struct Verifier {
    child: Child,
    url: String,
}

impl Drop for Verifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path, dir: &Path) -> Res<(Verifier, f64)> {
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("verifier.log"))?;
    let t = Instant::now();
    let child = Command::new(bin)
        .args(["run", "--network", NETWORK, "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .args(["--challenge-window-ms", &WINDOW_MS.to_string()])
        .args(["--withdrawal-delay-ms", &DELAY_MS.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let v = Verifier {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if get(&format!("{}/healthz", v.url)).is_ok() {
            return Ok((v, t.elapsed().as_secs_f64() * 1e3));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "vouch-verifier did not answer /healthz; log in {}",
                dir.join("verifier.log").display()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A blocking GET with a plain HTTP/1.1 request (no client crate needed for four calls).
fn get(url: &str) -> Res<Vec<u8>> {
    use std::io::Read as _;
    let rest = url.strip_prefix("http://").ok_or("not http")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = vec![];
    s.read_to_end(&mut buf)?;
    let head_end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP header")?;
    let status = std::str::from_utf8(&buf[..head_end])?
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    if status != "200" {
        return Err(format!("GET {url}: {status}").into());
    }
    Ok(buf[head_end + 4..].to_vec())
}

struct Row {
    events: u64,
    rss_kib: u64,
    hwm_kib: u64,
    start_ms: f64,
    file_bytes: u64,
    /// Events applied per second (one submitter, durable) while growing to this size.
    apply_per_s: Option<f64>,
}

fn measure(bin: &Path, dir: &Path, events: u64) -> Res<Row> {
    let (v, start_ms) = start(bin, dir)?;
    // Touch what a user (or the explorer) reads: the whole state, the log's two ends.
    get(&format!("{}/v1/snapshot", v.url))?;
    get(&format!("{}/v1/registry", v.url))?;
    get(&format!("{}/v1/events?from=0&limit=1000", v.url))?;
    get(&format!(
        "{}/v1/events?from={}&limit=1000",
        v.url,
        events.saturating_sub(1000)
    ))?;
    std::thread::sleep(Duration::from_millis(200));
    let (rss_kib, hwm_kib) = rss_kib(v.child.id())?;
    drop(v);
    let file = |name: &str| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len());
    Ok(Row {
        events,
        rss_kib,
        hwm_kib,
        start_ms,
        file_bytes: file("ledger.sqlite") + file("ledger.sqlite-wal"),
        apply_per_s: None,
    })
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json_path = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let sizes: Vec<u64> = if quick {
        vec![1_000, 3_000, 10_000]
    } else {
        vec![1_000, 10_000, 100_000]
    };
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_vouch-verifier"));
    let dir = tempfile::tempdir()?;
    let admin = key("admin", 0);
    std::fs::write(
        dir.path().join("verifier.pem"),
        admin.to_pkcs8_pem(LineEnding::LF)?.as_bytes(),
    )?;
    let net = NetworkId::parse_or_name(NETWORK);
    let ledger = SqliteLedger::open(
        dir.path().join("ledger.sqlite"),
        LedgerConfig::new(WINDOW_MS, DELAY_MS, 0)?,
        net.0,
        admin.clone(),
    )?;
    let mut filler = Filler {
        ledger,
        net: net.0,
        nonces: Default::default(),
        events: 0,
        now: 1_000,
    };
    filler.setup(&admin)?;
    progress!("==> baseline: {} registration events", filler.events);
    let baseline = measure(&bin, dir.path(), filler.events)?;
    let mut rows = vec![];
    for &n in &sizes {
        let t = Instant::now();
        let before = filler.events;
        filler.grow_to(n)?;
        let apply_per_s = (filler.events - before) as f64 / t.elapsed().as_secs_f64();
        progress!(
            "==> ledger grown to {} events ({:.1} s); measuring",
            filler.events,
            t.elapsed().as_secs_f64()
        );
        rows.push(Row {
            apply_per_s: Some(apply_per_s),
            ..measure(&bin, dir.path(), filler.events)?
        });
    }

    let mb = |kib: u64| kib as f64 / 1024.0;
    println!(
        "| ledger events | verifier RSS after start + reads (MiB) | peak RSS (MiB) | vs baseline RSS | start until /healthz (ms) | ledger file (MiB) | events/s applied while growing to this size (durable, one submitter) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let line = |r: &Row, base: bool| {
        println!(
            "| {}{} | {:.1} | {:.1} | {} | {:.0} | {:.1} | {} |",
            r.events,
            if base {
                " (baseline: registrations only)"
            } else {
                ""
            },
            mb(r.rss_kib),
            mb(r.hwm_kib),
            if base {
                "1.00".to_string()
            } else {
                format!("{:.2}", r.rss_kib as f64 / baseline.rss_kib as f64)
            },
            r.start_ms,
            r.file_bytes as f64 / (1024.0 * 1024.0),
            r.apply_per_s.map_or("—".to_string(), |v| format!("{v:.0}"))
        );
    };
    line(&baseline, true);
    for r in &rows {
        line(r, false);
    }
    let to_json = |r: &Row| {
        json!({"events": r.events, "rss_kib": r.rss_kib, "peak_rss_kib": r.hwm_kib,
               "start_ms": r.start_ms, "ledger_bytes": r.file_bytes, "apply_per_s": r.apply_per_s,
               "rss_vs_baseline": r.rss_kib as f64 / baseline.rss_kib as f64})
    };
    let report: Value = json!({
        "baseline": to_json(&baseline),
        "sizes": rows.iter().map(to_json).collect::<Vec<_>>(),
    });
    if let Some(p) = json_path {
        std::fs::write(&p, serde_json::to_string_pretty(&report)?)?;
        progress!("==> wrote {}", p.display());
    }
    Ok(())
}
