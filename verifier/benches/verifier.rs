//! Verifier benchmark (issue 5): durable ledger events/s, the time to judge an equivocation
//! proof, and a wrong-result dispute's time as a ratio to one plain execution of the job.
//!
//! Every figure stands beside a baseline measured in the same run, and the ratio is what
//! carries over between machines:
//!
//! 1. **Ledger events/s.** Durable, with `synchronous=FULL` and the journal as shipped
//!    (WAL), two ways:
//!    - *concurrent*: 64 threads each apply their own pre-signed stream (disjoint actors,
//!      so every request is valid in any interleaving) to one [`SqliteLedger`] at once, as
//!      the API's blocking pool does for 64 clients, so the ledger's group commit batches
//!      them. Baseline: a bare rusqlite loop of one `INSERT` of an event-sized row per
//!      `COMMIT` on the same disk, with the same `synchronous` and journal, run just before
//!      and just after. The same streams are also applied with the file on `/dev/shm`
//!      (where a sync costs nothing: the CPU ceiling);
//!    - *one submitter*: a pre-signed stream in a realistic mix (asset and operator
//!      registrations, deposits, delegations and re-delegations, allocations and
//!      deallocations, queued and completed withdrawals; every one valid, so every one is
//!      an event) applied one request after the other, so each is a batch of one. Baseline:
//!      the same bare loop, run in blocks of 100 alternating with the ledger's, so the ratio
//!      is the ledger's own overhead over the storage's commit cost even when other
//!      processes load the disk. The same stream is also applied with the file on
//!      `/dev/shm` and to the in-memory [`MemoryLedger`]. Bare loops with the rollback
//!      journal and with 64 rows per commit show what the journal and batching buy.
//! 2. **Equivocation check.** [`equivocation_offence`] on two receipts signed by one
//!    operator for one job with different results (two strict signature checks, then the
//!    same-network, same-operator, different-root and shared-job checks and the offence
//!    id). Baseline: one `SignedReceipt::verify`. Also the whole
//!    `Verifier::dispute_equivocation` (check and durable slash) beside one durable ledger
//!    event.
//! 3. **Wrong-result disputes** (Docker and the `images/build.sh` images; skipped, with a
//!    note, when Docker does not answer). For a short job (`vouch/wc:dev`), a job that
//!    computes for about half a second to two seconds (`vouch/inference-stub:dev`
//!    generating 4,096 tokens) and, in the full run, a job that waits 1.5 s
//!    (`vouch/sleep:dev`): one plain `Executor::run` of the job (the baseline), two plain
//!    runs started together (what the dispute's two re-executions cost with no verifier
//!    around them, on this machine's cores), and one whole `Verifier::dispute_result` for a
//!    wrong receipt of it (checks, ledger writes, both re-executions), in rotating order,
//!    over several rounds. Each dispute is about a fresh receipt, so each one really slashes.
//!
//! ```text
//! cargo bench -p vouch-verifier --bench verifier                 # full run, about 1.5 minutes
//! cargo bench -p vouch-verifier --bench verifier -- --quick      # smoke run, about 20 s
//! cargo bench -p vouch-verifier --bench verifier -- --json /tmp/verifier.json
//! cargo bench -p vouch-verifier --bench verifier -- --dir /var/lib/vouch  # ledger disk
//! ```
//!
//! Prints a Markdown table on stdout and progress on stderr; unknown arguments (cargo adds
//! `--bench`) are ignored. Containers carry a label unique to the run and are removed at
//! the end.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::error::Error;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::{Signer as _, SigningKey};
use rusqlite::{params, Connection, TransactionBehavior};
use serde_json::{json, Value};
use vouch_exec::{DockerExecutor, Executor, RunOutcome, Timings};
use vouch_proto::{
    Amount, Determinism, Digest, JobId, JobSpec, Limits, NetworkId, OperatorKey, Receipt, Root32,
    SignedReceipt,
};
use vouch_verifier::{
    equivocation_offence, Bond, CollateralLedger, DisputeConfig, Key, LedgerConfig, MemoryLedger,
    RequestBody, ResultChallenge, ResultOutcome, SignedRequest, SqliteLedger, TokenChallenge,
    TokenClaim, VerdictOutcome, Verifier, PPM,
};

/// Progress on stderr, stamped with the seconds since the bench started.
macro_rules! progress {
    ($($arg:tt)*) => {
        eprintln!("[{:6.1} s] {}", epoch().elapsed().as_secs_f64(), format_args!($($arg)*))
    };
}

type BoxError = Box<dyn Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

/// Target of figure 1: durable ledger events per second.
const TARGET_EVENTS_PER_S: f64 = 5_000.0;
/// Target of figure 2: time to judge an equivocation proof, µs.
const TARGET_EQUIVOCATION_US: f64 = 1_000.0;
/// Target of figure 3: a re-execution dispute's time over one plain execution.
const TARGET_DISPUTE_RATIO: f64 = 2.2;

/// The network of every request and receipt here.
const NET: [u8; 32] = [0x5b; 32];
/// The request stream's clock advances this much per request.
const STEP_MS: u64 = 5;
/// Ledger rules of the stream: withdrawals become claimable 200 requests later.
const WINDOW_MS: u64 = 500;
const DELAY_MS: u64 = 1_000;
/// Rows per commit of the group-commit storage baseline.
const GROUP: usize = 64;
/// Threads applying requests at once in the concurrent ledger run, as the API's blocking
/// pool does for that many clients.
const SUBMITTERS: usize = 64;
/// Bare commits on each side of the concurrent run: its baseline, measured around it.
const BRACKET: usize = 300;
/// The disputes' clock; receipts are issued just before it.
const NOW: u64 = 1_795_000_000_000;
/// Stake of the disputed operator: large enough that 200 halvings leave some.
const STAKE: u128 = 1_000_000_000_000_000_000_000_000_000_000_000_000;

// ---------------------------------------------------------------------------------------
// Plan and arguments
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Plan {
    quick: bool,
    /// Requests in the ledger stream.
    events: usize,
    /// Requests per submitter in the concurrent ledger run ([`SUBMITTERS`] of them).
    per_submitter: usize,
    /// Timed calls of the equivocation check and of its baseline.
    check_iters: usize,
    /// Whole equivocation disputes with a durable slash.
    equivocation_disputes: usize,
    /// Repetitions per dispute job: short, compute, sleep (0 leaves a job out).
    reps: [usize; 3],
    /// Where the durable ledger file goes.
    dir: PathBuf,
}

impl Plan {
    fn new(args: &Args) -> Self {
        let q = args.quick;
        Plan {
            quick: q,
            events: if q { 600 } else { 3_000 },
            per_submitter: if q { 40 } else { 200 },
            check_iters: if q { 500 } else { 5_000 },
            equivocation_disputes: if q { 20 } else { 100 },
            reps: if q { [3, 3, 0] } else { [11, 7, 5] },
            dir: args.dir.clone().unwrap_or_else(std::env::temp_dir),
        }
    }
}

#[derive(Debug)]
struct Args {
    quick: bool,
    json: Option<String>,
    dir: Option<PathBuf>,
    /// Only figure 4 (one-token vs full re-execution disputes).
    only_token: bool,
}

fn parse_args() -> Res<Args> {
    let mut args = std::env::args().skip(1);
    let mut out = Args {
        quick: false,
        json: None,
        dir: None,
        only_token: false,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => out.quick = true,
            "--only-token" => out.only_token = true,
            "--json" => out.json = Some(args.next().ok_or("--json needs a file path")?),
            "--dir" => out.dir = Some(args.next().ok_or("--dir needs a directory")?.into()),
            // cargo bench passes `--bench`; filters and other flags do not apply here.
            _ => {}
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Clocks, statistics, keys
// ---------------------------------------------------------------------------------------

static EPOCH: OnceLock<Instant> = OnceLock::new();

fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Mean and nearest-rank percentiles of a sample, in the sample's unit.
#[derive(Debug, Clone, Copy, Default)]
struct Stats {
    n: usize,
    mean: f64,
    min: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Stats {
    fn of(sample: &[f64]) -> Self {
        let mut v = sample.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n == 0 {
            return Stats::default();
        }
        let rank = |q: f64| v[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
        Stats {
            n,
            mean: v.iter().sum::<f64>() / n as f64,
            min: v[0],
            p50: rank(0.5),
            p99: rank(0.99),
            max: v[n - 1],
        }
    }

    fn json(&self, scale: f64) -> Value {
        json!({
            "n": self.n,
            "mean": self.mean * scale,
            "min": self.min * scale,
            "p50": self.p50 * scale,
            "p99": self.p99 * scale,
            "max": self.max * scale,
        })
    }
}

/// A key derived from a label, so every run uses the same keys.
fn key(tag: &str, i: u64) -> SigningKey {
    SigningKey::from_bytes(&Digest::of(format!("vouch-verifier-bench/{tag}/{i}").as_bytes()).0)
}

fn admin() -> SigningKey {
    key("admin", 0)
}

/// splitmix64: a deterministic stream, so every run applies the same requests.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
}

/// Hands out increasing nonces per actor and signs.
#[derive(Debug, Default)]
struct Nonces(HashMap<Key, u64>);

impl Nonces {
    fn sign(
        &mut self,
        who: &SigningKey,
        body: RequestBody,
        peer: Option<&SigningKey>,
    ) -> Res<SignedRequest> {
        let n = self.0.entry(Key::of(who)).or_insert(0);
        *n += 1;
        let req = SignedRequest::sign(&NET, who, *n, body)?;
        Ok(match peer {
            Some(p) => req.with_peer_signature(&NET, p)?,
            None => req,
        })
    }
}

// ---------------------------------------------------------------------------------------
// 1. Ledger events/s
// ---------------------------------------------------------------------------------------

const ASSETS: [&str; 2] = ["eth", "steth"];

/// What the generator knows of an operator: enough to keep every request valid.
#[derive(Debug)]
struct OpModel {
    key: SigningKey,
    magnitude: u32,
    pending: Option<(u32, u64)>,
}

impl OpModel {
    /// The ledger's `settle`: a deallocation whose delay has passed takes effect.
    fn settle(&mut self, now: u64) {
        if let Some((m, at)) = self.pending {
            if now >= at {
                self.magnitude = m;
                self.pending = None;
            }
        }
    }
}

#[derive(Debug)]
struct RestakerModel {
    key: SigningKey,
    balance: [u128; 2],
    operator: Option<usize>,
    queued: usize,
}

/// Builds a stream of valid signed requests by tracking the part of the ledger's state
/// the rules look at (balances, delegations, queued withdrawals, magnitudes).
#[derive(Debug)]
struct Gen {
    /// Prefix of every key this generator makes, so several streams never share an actor.
    prefix: String,
    rng: Rng,
    nonces: Nonces,
    ops: Vec<OpModel>,
    restakers: Vec<RestakerModel>,
    /// (withdrawal id, restaker, claimable at): ids are given out from 1 in order, and
    /// the clock only moves forward, so the front is always the first claimable.
    queue: VecDeque<(u64, usize, u64)>,
    next_withdrawal: u64,
    now: u64,
    out: Stream,
    mix: Mix,
}

impl Gen {
    fn push(&mut self, who: &SigningKey, body: RequestBody, peer: Option<&SigningKey>) -> Res<()> {
        *self.mix.entry(body.kind()).or_default() += 1;
        let req = self.nonces.sign(who, body, peer)?;
        self.out.push((req, self.now));
        self.now += STEP_MS;
        Ok(())
    }

    fn register_operator(&mut self) -> Res<()> {
        let i = self.ops.len() as u64;
        let (op, peer) = (
            key(&format!("{}operator", self.prefix), i),
            key(&format!("{}peer", self.prefix), i),
        );
        let body = RequestBody::RegisterOperator {
            peer_key: Key::of(&peer),
        };
        self.push(&op, body, Some(&peer))?;
        self.ops.push(OpModel {
            key: op,
            magnitude: 0,
            pending: None,
        });
        Ok(())
    }

    fn deposit(&mut self) -> Res<()> {
        let r = self.rng.index(self.restakers.len());
        let a = self.rng.index(ASSETS.len());
        let amount = u128::from(1 + self.rng.below(1_000_000));
        self.restakers[r].balance[a] += amount;
        let who = self.restakers[r].key.clone();
        let body = RequestBody::Deposit {
            asset: ASSETS[a].into(),
            amount,
        };
        self.push(&who, body, None)
    }

    /// Delegates or re-delegates; false when the drawn restaker may not.
    fn delegate(&mut self) -> Res<bool> {
        let r = self.rng.index(self.restakers.len());
        let o = self.rng.index(self.ops.len());
        let rs = &self.restakers[r];
        if rs.operator == Some(o) || (rs.operator.is_some() && rs.queued > 0) {
            return Ok(false);
        }
        self.restakers[r].operator = Some(o);
        let who = self.restakers[r].key.clone();
        let body = RequestBody::Delegate {
            operator: Key::of(&self.ops[o].key),
        };
        self.push(&who, body, None)?;
        Ok(true)
    }

    fn queue_withdrawal(&mut self) -> Res<bool> {
        let r = self.rng.index(self.restakers.len());
        let a = self.rng.index(ASSETS.len());
        let balance = self.restakers[r].balance[a];
        if balance == 0 {
            return Ok(false);
        }
        let amount = 1 + u128::from(self.rng.next()) % balance;
        self.restakers[r].balance[a] -= amount;
        self.restakers[r].queued += 1;
        self.next_withdrawal += 1;
        self.queue
            .push_back((self.next_withdrawal, r, self.now + DELAY_MS));
        let who = self.restakers[r].key.clone();
        let body = RequestBody::QueueWithdrawal {
            asset: ASSETS[a].into(),
            amount,
        };
        self.push(&who, body, None)?;
        Ok(true)
    }

    fn complete_withdrawal(&mut self) -> Res<bool> {
        match self.queue.front() {
            Some(&(id, r, at)) if at <= self.now => {
                self.queue.pop_front();
                self.restakers[r].queued -= 1;
                let who = self.restakers[r].key.clone();
                let body = RequestBody::CompleteWithdrawal { withdrawal_id: id };
                self.push(&who, body, None)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Raises an operator's magnitude, or lowers it (delayed) once it is high.
    fn magnitude(&mut self) -> Res<()> {
        let o = self.rng.index(self.ops.len());
        let now = self.now;
        let op = &mut self.ops[o];
        op.settle(now);
        let body = if op.magnitude > PPM / 2 && self.rng.below(2) == 0 {
            let lower = op.magnitude / 2;
            op.pending = Some((lower, now + DELAY_MS));
            RequestBody::Deallocate {
                magnitude_ppm: lower,
            }
        } else {
            let step = 1 + self.rng.below(u64::from(PPM / 5)) as u32;
            op.magnitude = op.magnitude.saturating_add(step).min(PPM);
            op.pending = None;
            RequestBody::Allocate {
                magnitude_ppm: op.magnitude,
            }
        };
        let who = op.key.clone();
        self.push(&who, body, None)
    }
}

/// Signed requests, each with the verifier clock it is applied at.
type Stream = Vec<(SignedRequest, u64)>;
/// How many requests of each kind.
type Mix = BTreeMap<&'static str, usize>;

/// The shape of one generated stream.
#[derive(Debug, Clone, Copy)]
struct Shape {
    restakers: u64,
    first_ops: usize,
    max_ops: usize,
    /// Whether the stream completes withdrawals. Withdrawal ids are ledger-wide, so a
    /// stream applied beside others cannot know the ids its withdrawals will get when its
    /// requests are signed in advance: those streams deposit instead.
    completes: bool,
}

/// The single stream: 256 restakers, 8 to 64 operators, every kind of request.
const SINGLE: Shape = Shape {
    restakers: 256,
    first_ops: 8,
    max_ops: 64,
    completes: true,
};

/// One concurrent submitter's stream: its own restakers and operators.
const SUBMITTER: Shape = Shape {
    restakers: 8,
    first_ops: 1,
    max_ops: 2,
    completes: false,
};

fn register_assets(nonces: &mut Nonces) -> Res<Vec<SignedRequest>> {
    ASSETS
        .iter()
        .enumerate()
        .map(|(i, asset)| {
            let body = RequestBody::RegisterAsset {
                asset: (*asset).into(),
                price_per_unit: 2 + i as u128,
            };
            nonces.sign(&admin(), body, None)
        })
        .collect()
}

/// `n` valid signed requests, each with the clock it is applied at, and the mix.
fn request_stream(n: usize) -> Res<(Stream, Mix)> {
    let mut admin_nonces = Nonces::default();
    let assets = register_assets(&mut admin_nonces)?;
    let mut g = generator("", 20_261_122, SINGLE, n);
    for req in assets {
        *g.mix.entry(req.body.kind()).or_default() += 1;
        g.out.push((req, g.now));
        g.now += STEP_MS;
    }
    fill(&mut g, SINGLE, n)?;
    Ok((g.out, g.mix))
}

/// The asset registrations (applied first, untimed) and `submitters` streams of `each`
/// valid requests over disjoint actors, so every request stays valid however the streams
/// interleave; the mix is over all streams.
fn submitter_streams(
    submitters: usize,
    each: usize,
) -> Res<(Vec<SignedRequest>, Vec<Stream>, Mix)> {
    let setup = register_assets(&mut Nonces::default())?;
    let mut mix = Mix::new();
    let mut streams = Vec::with_capacity(submitters);
    for i in 0..submitters {
        let mut g = generator(&format!("submitter{i}/"), 7_000 + i as u64, SUBMITTER, each);
        fill(&mut g, SUBMITTER, each)?;
        for (k, v) in g.mix {
            *mix.entry(k).or_default() += v;
        }
        streams.push(g.out);
    }
    Ok((setup, streams, mix))
}

fn generator(prefix: &str, seed: u64, shape: Shape, n: usize) -> Gen {
    Gen {
        prefix: prefix.into(),
        rng: Rng(seed),
        nonces: Nonces::default(),
        ops: Vec::new(),
        restakers: (0..shape.restakers)
            .map(|i| RestakerModel {
                key: key(&format!("{prefix}restaker"), i),
                balance: [0; 2],
                operator: None,
                queued: 0,
            })
            .collect(),
        queue: VecDeque::new(),
        next_withdrawal: 0,
        now: 0,
        out: Vec::with_capacity(n),
        mix: BTreeMap::new(),
    }
}

fn fill(g: &mut Gen, shape: Shape, n: usize) -> Res<()> {
    for _ in 0..shape.first_ops {
        g.register_operator()?;
    }
    while g.out.len() < n {
        let done = match g.rng.below(100) {
            0..=44 => false,
            45..=56 => g.delegate()?,
            57..=71 => g.queue_withdrawal()?,
            72..=83 if shape.completes => g.complete_withdrawal()?,
            84..=97 => {
                g.magnitude()?;
                true
            }
            98.. if g.ops.len() < shape.max_ops => {
                g.register_operator()?;
                true
            }
            _ => false,
        };
        if !done {
            g.deposit()?;
        }
    }
    g.out.truncate(n);
    Ok(())
}

/// What applying a prefix of the stream cost.
#[derive(Debug, Clone)]
struct ApplyRun {
    events: usize,
    elapsed: Duration,
    /// Seconds per `apply`.
    latency: Stats,
}

impl ApplyRun {
    fn of(latency: &[f64]) -> Self {
        ApplyRun {
            events: latency.len(),
            elapsed: Duration::from_secs_f64(latency.iter().sum()),
            latency: Stats::of(latency),
        }
    }

    fn per_s(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn json(&self) -> Value {
        json!({
            "events": self.events,
            "seconds": self.elapsed.as_secs_f64(),
            "events_per_s": self.per_s(),
            "apply_ms": self.latency.json(1e3),
        })
    }
}

/// Applies `reqs` in order, one `apply` (one transaction) each. Every request must be
/// accepted: a refusal means the generator's model of the rules is out of date, and the
/// figure would not be about events. Returns the seconds of each `apply`.
fn apply_all(ledger: &dyn CollateralLedger, reqs: &[(SignedRequest, u64)]) -> Res<Vec<f64>> {
    let mut latency = Vec::with_capacity(reqs.len());
    for (req, now) in reqs {
        let t = Instant::now();
        if let Err(e) = ledger.apply(req, *now) {
            return Err(format!(
                "a {} request was refused: {e}; the bench's model of the ledger rules is out of date",
                req.body.kind()
            )
            .into());
        }
        latency.push(t.elapsed().as_secs_f64());
    }
    Ok(latency)
}

fn ledger_config() -> Res<LedgerConfig> {
    Ok(LedgerConfig::new(WINDOW_MS, DELAY_MS, 0)?)
}

/// The journal mode a fresh ledger file ends up in (a second connection can read it;
/// `synchronous` is per connection and `SqliteLedger::open` sets FULL).
fn journal_mode(path: &Path) -> Res<String> {
    let conn = Connection::open(path)?;
    Ok(conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?)
}

/// One bare storage loop: `total` event-sized rows, `per_commit` per exclusive
/// transaction, `synchronous=FULL`.
#[derive(Debug, Clone)]
struct Bare {
    place: String,
    journal: String,
    per_commit: usize,
    rows: usize,
    elapsed: Duration,
}

impl Bare {
    fn rows_per_s(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }

    fn commits_per_s(&self) -> f64 {
        self.rows_per_s() / self.per_commit as f64
    }

    fn json(&self) -> Value {
        json!({
            "place": self.place,
            "journal_mode": self.journal,
            "rows_per_commit": self.per_commit,
            "rows": self.rows,
            "seconds": self.elapsed.as_secs_f64(),
            "rows_per_s": self.rows_per_s(),
            "commits_per_s": self.commits_per_s(),
        })
    }
}

/// A bare storage loop: event-sized rows into a table like the ledger's `events`,
/// `per_commit` rows per exclusive transaction, `synchronous=FULL`. Resumable, so it can
/// run in blocks between blocks of the ledger.
struct BareLoop {
    conn: Connection,
    path: PathBuf,
    per_commit: usize,
    journal: String,
    text: String,
    seq: i64,
    elapsed: Duration,
}

impl BareLoop {
    fn open(dir: &Path, journal: &str, per_commit: usize, row_len: usize) -> Res<Self> {
        let path = dir.join(format!("bare-{journal}-{per_commit}.sqlite"));
        let conn = Connection::open(&path)?;
        let journal: String =
            conn.pragma_update_and_check(None, "journal_mode", journal, |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE events (seq INTEGER PRIMARY KEY, hash BLOB NOT NULL, event TEXT NOT NULL)",
        )?;
        Ok(BareLoop {
            conn,
            path,
            per_commit,
            journal,
            text: "x".repeat(row_len),
            seq: 0,
            elapsed: Duration::ZERO,
        })
    }

    fn commits(&mut self, n: usize) -> Res<()> {
        let start = Instant::now();
        for _ in 0..n {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Exclusive)?;
            for _ in 0..self.per_commit {
                let hash = Digest::of(&self.seq.to_be_bytes()).0;
                tx.prepare_cached("INSERT INTO events (seq, hash, event) VALUES (?1, ?2, ?3)")?
                    .execute(params![self.seq, hash.as_slice(), self.text])?;
                self.seq += 1;
            }
            tx.commit()?;
        }
        self.elapsed += start.elapsed();
        Ok(())
    }

    fn finish(self, place: &str) -> Res<Bare> {
        let BareLoop {
            conn,
            path,
            per_commit,
            journal,
            seq,
            elapsed,
            ..
        } = self;
        drop(conn);
        std::fs::remove_file(&path)?;
        Ok(Bare {
            place: place.into(),
            journal,
            per_commit,
            rows: usize::try_from(seq)?,
            elapsed,
        })
    }
}

fn bare_commits(
    dir: &Path,
    place: &str,
    journal: &str,
    per_commit: usize,
    total: usize,
    row_len: usize,
) -> Res<Bare> {
    let mut bare = BareLoop::open(dir, journal, per_commit, row_len)?;
    bare.commits(total.div_ceil(per_commit).max(1))?;
    bare.finish(place)
}

/// Streams applied by concurrent submitters to one ledger.
#[derive(Debug, Clone)]
struct ConcurrentRun {
    submitters: usize,
    events: usize,
    /// From the submitters' start to the last answer.
    wall: Duration,
    /// Seconds per `apply`, from every submitter.
    latency: Stats,
    /// Commits the ledger made for them.
    batches: u64,
    largest_batch: usize,
}

impl ConcurrentRun {
    fn per_s(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }

    fn mean_batch(&self) -> f64 {
        self.events as f64 / self.batches.max(1) as f64
    }

    fn json(&self) -> Value {
        json!({
            "submitters": self.submitters,
            "events": self.events,
            "seconds": self.wall.as_secs_f64(),
            "events_per_s": self.per_s(),
            "apply_ms": self.latency.json(1e3),
            "commits": self.batches,
            "mean_requests_per_commit": self.mean_batch(),
            "largest_commit": self.largest_batch,
        })
    }
}

/// Applies each stream on its own thread, all started together, to `ledger` (which has
/// applied the setup). Every request must be accepted, as in [`apply_all`].
fn apply_concurrently(ledger: &SqliteLedger, streams: &[Stream]) -> Res<ConcurrentRun> {
    let before = ledger.group_commit_stats();
    let barrier = Barrier::new(streams.len() + 1);
    let (wall, latency) = std::thread::scope(|scope| {
        let handles: Vec<_> = streams
            .iter()
            .map(|stream| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    apply_all(ledger, stream).map_err(|e| e.to_string())
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let mut latency = Vec::new();
        for h in handles {
            let sample = h.join().map_err(|_| "a submitter panicked")??;
            latency.extend(sample);
        }
        Ok::<_, BoxError>((start.elapsed(), latency))
    })?;
    let after = ledger.group_commit_stats();
    Ok(ConcurrentRun {
        submitters: streams.len(),
        events: latency.len(),
        wall,
        latency: Stats::of(&latency),
        batches: after.batches - before.batches,
        largest_batch: after.largest,
    })
}

/// The concurrent durable figure and its baselines.
#[derive(Debug)]
struct ConcurrentResult {
    mix: Mix,
    durable: ConcurrentRun,
    /// Bare one-row commits just before and just after the run, same disk.
    bare: Bare,
    /// The same streams with the file on /dev/shm.
    shm: Option<ConcurrentRun>,
}

#[derive(Debug)]
struct LedgerResult {
    mix: Mix,
    journal: String,
    dir: PathBuf,
    event_bytes: usize,
    durable: ApplyRun,
    concurrent: ConcurrentResult,
    shm: Option<ApplyRun>,
    memory: ApplyRun,
    bare: Vec<Bare>,
    bare_shm: Option<Bare>,
}

/// Requests (and bare commits) per block when the ledger and its baseline alternate.
const BLOCK: usize = 100;

fn ledger_section(plan: &Plan) -> Res<LedgerResult> {
    progress!(
        "==> ledger: signing a stream of {} requests in a realistic mix",
        plan.events
    );
    let (reqs, mix) = request_stream(plan.events)?;
    let n = reqs.len();
    progress!("    mix: {mix:?}");

    // In memory first: no storage at all, and it tells the size of the stored events.
    progress!("==> ledger: the stream on MemoryLedger");
    let mem = MemoryLedger::new(ledger_config()?, NET, admin());
    let memory = ApplyRun::of(&apply_all(&mem, &reqs)?);
    progress!("    {:.0} events/s", memory.per_s());
    let events = mem.events_from(0, n)?;
    let event_bytes = events
        .iter()
        .map(|e| serde_json::to_string(e).map(|s| s.len()))
        .sum::<Result<usize, _>>()?
        / events.len().max(1);
    drop((events, mem));

    std::fs::create_dir_all(&plan.dir)?;
    let disk = tempfile::tempdir_in(&plan.dir)?;
    let path = disk.path().join("ledger.sqlite");
    let ledger = SqliteLedger::open(&path, ledger_config()?, NET, admin())?;
    let journal = journal_mode(&path)?;
    progress!(
        "==> ledger: durable file {} (journal_mode={journal}, synchronous=FULL), in blocks of \
         {BLOCK} alternating with a bare INSERT + COMMIT loop of {event_bytes}-byte rows",
        path.display()
    );
    // Alternating blocks: a change in the disk's load during the run (other processes
    // share it) weighs on the ledger and on its baseline alike.
    let place = plan.dir.display().to_string();
    let mut bare = BareLoop::open(disk.path(), &journal, 1, event_bytes)?;
    let mut latency = Vec::with_capacity(n);
    for block in reqs.chunks(BLOCK) {
        latency.extend(apply_all(&ledger, block)?);
        bare.commits(block.len())?;
    }
    let durable = ApplyRun::of(&latency);
    let bare_disk = bare.finish(&place)?;
    progress!(
        "    {n} events: {:.0} events/s, apply p50 {:.2} ms p99 {:.2} ms; bare: {:.0} commits/s",
        durable.per_s(),
        durable.latency.p50 * 1e3,
        durable.latency.p99 * 1e3,
        bare_disk.commits_per_s()
    );
    drop(ledger);

    let shm_dir = Path::new("/dev/shm");
    let shm_tmp = if shm_dir.is_dir() {
        tempfile::tempdir_in(shm_dir).ok()
    } else {
        None
    };
    let (shm, bare_shm) = match &shm_tmp {
        Some(tmp) => {
            progress!("==> ledger: the same stream with the file on /dev/shm");
            let ledger = SqliteLedger::open(
                tmp.path().join("ledger.sqlite"),
                ledger_config()?,
                NET,
                admin(),
            )?;
            let run = ApplyRun::of(&apply_all(&ledger, &reqs)?);
            progress!("    {:.0} events/s", run.per_s());
            let bare = bare_commits(tmp.path(), "/dev/shm", &journal, 1, n, event_bytes)?;
            progress!(
                "    bare INSERT + COMMIT on /dev/shm: {:.0}/s",
                bare.rows_per_s()
            );
            (Some(run), Some(bare))
        }
        None => {
            progress!("    no writable /dev/shm: the CPU-only figure is left out");
            (None, None)
        }
    };

    let concurrent =
        concurrent_section(plan, disk.path(), &journal, event_bytes, shm_tmp.as_ref())?;

    progress!("==> storage baselines: other journal modes and group commit, same disk");
    let group_rows = n.max(GROUP * 50);
    let mut bares = vec![bare_disk];
    let other = if journal == "wal" { "delete" } else { "wal" };
    for (mode, per, rows) in [
        (other, 1, n),
        (journal.as_str(), GROUP, group_rows),
        (other, GROUP, group_rows),
    ] {
        let b = bare_commits(disk.path(), &place, mode, per, rows, event_bytes)?;
        progress!(
            "    {mode}, {per} per commit: {:.0} commits/s, {:.0} rows/s",
            b.commits_per_s(),
            b.rows_per_s()
        );
        bares.push(b);
    }
    Ok(LedgerResult {
        mix,
        journal,
        dir: plan.dir.clone(),
        event_bytes,
        durable,
        concurrent,
        shm,
        memory,
        bare: bares,
        bare_shm,
    })
}

/// [`SUBMITTERS`] threads applying pre-signed streams at once to one durable ledger, with
/// bare one-row commits on the same disk just before and after as the baseline, then the
/// same streams on /dev/shm.
fn concurrent_section(
    plan: &Plan,
    disk: &Path,
    journal: &str,
    event_bytes: usize,
    shm: Option<&tempfile::TempDir>,
) -> Res<ConcurrentResult> {
    progress!(
        "==> ledger: signing {SUBMITTERS} streams of {} requests over disjoint actors",
        plan.per_submitter
    );
    let (setup, streams, mix) = submitter_streams(SUBMITTERS, plan.per_submitter)?;
    progress!("    mix: {mix:?}");
    let open = |dir: &Path| -> Res<SqliteLedger> {
        let ledger = SqliteLedger::open(
            dir.join("concurrent.sqlite"),
            ledger_config()?,
            NET,
            admin(),
        )?;
        for req in &setup {
            ledger.apply(req, 0)?;
        }
        Ok(ledger)
    };
    let ledger = open(disk)?;
    progress!(
        "==> ledger: {SUBMITTERS} concurrent submitters on a durable file, between two blocks \
         of {BRACKET} bare one-row commits"
    );
    let mut bare = BareLoop::open(disk, journal, 1, event_bytes)?;
    bare.commits(BRACKET)?;
    let durable = apply_concurrently(&ledger, &streams)?;
    bare.commits(BRACKET)?;
    let bare = bare.finish(&plan.dir.display().to_string())?;
    progress!(
        "    {} events: {:.0} events/s ({:.1} requests per commit, largest {}), apply p50 {:.2} \
         ms p99 {:.2} ms; bare: {:.0} commits/s",
        durable.events,
        durable.per_s(),
        durable.mean_batch(),
        durable.largest_batch,
        durable.latency.p50 * 1e3,
        durable.latency.p99 * 1e3,
        bare.commits_per_s()
    );
    drop(ledger);
    let shm = match shm {
        Some(tmp) => {
            let run = apply_concurrently(&open(tmp.path())?, &streams)?;
            progress!(
                "    on /dev/shm: {:.0} events/s ({:.1} requests per commit)",
                run.per_s(),
                run.mean_batch()
            );
            Some(run)
        }
        None => None,
    };
    Ok(ConcurrentResult {
        mix,
        durable,
        bare,
        shm,
    })
}

// ---------------------------------------------------------------------------------------
// 2. Equivocation proofs
// ---------------------------------------------------------------------------------------

fn network() -> NetworkId {
    NetworkId(NET)
}

/// A receipt by `key` for `job` stating `output`.
fn receipt(
    key: &SigningKey,
    job: JobId,
    sequence: u64,
    image: Digest,
    input: Digest,
    output: &[u8],
) -> SignedReceipt {
    let receipt = Receipt {
        network_id: network(),
        operator: OperatorKey(key.verifying_key().to_bytes()),
        sequence,
        job_id: job,
        image,
        input_digest: input,
        output_digest: Digest::of(output),
        output_len: output.len() as u64,
        exit_code: 0,
        trace_root: Root32::default(),
        trace_len: 0,
        issued_at_ms: NOW - 10,
    };
    let signature = key.sign(&receipt.signing_root()).to_bytes();
    SignedReceipt { receipt, signature }
}

/// A durable ledger holding one operator with `STAKE` delegated and fully allocated, and
/// a challenger with a deposit; and the nonces used so far.
fn staked_ledger(
    dir: &Path,
    operator: &SigningKey,
    challenger: &SigningKey,
) -> Res<(Arc<SqliteLedger>, Nonces)> {
    let config = LedgerConfig::new(3_600_000, 7_200_000, 0)?;
    let ledger = Arc::new(SqliteLedger::open(
        dir.join("disputes.sqlite"),
        config,
        NET,
        admin(),
    )?);
    let alice = key("alice", 0);
    let peer = key("operator-peer", 0);
    let mut n = Nonces::default();
    let eth = || "eth".to_string();
    let setup = [
        n.sign(
            &admin(),
            RequestBody::RegisterAsset {
                asset: eth(),
                price_per_unit: 1,
            },
            None,
        )?,
        n.sign(
            &alice,
            RequestBody::Deposit {
                asset: eth(),
                amount: STAKE,
            },
            None,
        )?,
        n.sign(
            operator,
            RequestBody::RegisterOperator {
                peer_key: Key::of(&peer),
            },
            Some(&peer),
        )?,
        n.sign(operator, RequestBody::Allocate { magnitude_ppm: PPM }, None)?,
        n.sign(
            &alice,
            RequestBody::Delegate {
                operator: Key::of(operator),
            },
            None,
        )?,
        n.sign(
            challenger,
            RequestBody::Deposit {
                asset: eth(),
                amount: 1_000_000,
            },
            None,
        )?,
    ];
    for r in &setup {
        ledger.apply(r, NOW - 1_000)?;
    }
    Ok((ledger, n))
}

#[derive(Debug)]
struct EquivocationResult {
    /// Seconds per call.
    check: Stats,
    verify: Stats,
    dispute: Stats,
    /// One durable deposit on the same ledger file, interleaved with the disputes.
    event: Stats,
}

fn equivocation_section(plan: &Plan) -> Res<EquivocationResult> {
    progress!(
        "==> equivocation: {} checks beside {} single receipt verifications",
        plan.check_iters,
        plan.check_iters
    );
    let op = key("operator", 1_000);
    let job = JobId(Digest::of(b"equivocated job").0);
    let (image, input) = (Digest::of(b"image"), Digest::of(b"input"));
    let a = receipt(&op, job, 1, image, input, b"one result");
    let b = receipt(&op, job, 2, image, input, b"another result");
    let net = network();
    // What is timed must be the successful path.
    equivocation_offence(&a, &b, &net)?;
    a.verify()?;
    for _ in 0..200 {
        black_box(equivocation_offence(black_box(&a), black_box(&b), &net).is_ok());
        black_box(black_box(&a).verify().is_ok());
    }
    let mut check = Vec::with_capacity(plan.check_iters);
    let mut verify = Vec::with_capacity(plan.check_iters);
    for _ in 0..plan.check_iters {
        let t = Instant::now();
        black_box(black_box(&a).verify().is_ok());
        verify.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        black_box(equivocation_offence(black_box(&a), black_box(&b), &net).is_ok());
        check.push(t.elapsed().as_secs_f64());
    }
    let (check, verify) = (Stats::of(&check), Stats::of(&verify));
    progress!(
        "    check mean {:.1} µs p99 {:.1} µs; verify mean {:.1} µs p99 {:.1} µs",
        check.mean * 1e6,
        check.p99 * 1e6,
        verify.mean * 1e6,
        verify.p99 * 1e6
    );

    progress!(
        "==> equivocation: {} whole disputes with a durable slash",
        plan.equivocation_disputes
    );
    let dir = tempfile::tempdir_in(&plan.dir)?;
    let challenger = key("challenger", 0);
    let (ledger, mut nonces) = staked_ledger(dir.path(), &op, &challenger)?;
    let verifier = Verifier::new(ledger.clone(), admin(), net, DisputeConfig::default());
    let mut dispute = Vec::with_capacity(plan.equivocation_disputes);
    let mut event = Vec::with_capacity(plan.equivocation_disputes);
    for i in 0..plan.equivocation_disputes as u64 {
        // A new job each time: a new offence, so each dispute really slashes.
        let job = JobId(Digest::of(&i.to_be_bytes()).0);
        let a = receipt(&op, job, 2 * i + 10, image, input, b"one result");
        let b = receipt(&op, job, 2 * i + 11, image, input, b"another result");
        let t = Instant::now();
        let verdict = verifier.dispute_equivocation(Key::of(&challenger), &a, &b, NOW)?;
        dispute.push(t.elapsed().as_secs_f64());
        if verdict.outcome != VerdictOutcome::Slashed {
            return Err(format!(
                "equivocation dispute {i}: {:?}, not slashed",
                verdict.outcome
            )
            .into());
        }
        let deposit = RequestBody::Deposit {
            asset: "eth".into(),
            amount: 1,
        };
        let req = nonces.sign(&challenger, deposit, None)?;
        let t = Instant::now();
        ledger.apply(&req, NOW)?;
        event.push(t.elapsed().as_secs_f64());
    }
    let (dispute, event) = (Stats::of(&dispute), Stats::of(&event));
    progress!(
        "    dispute_equivocation mean {:.2} ms p99 {:.2} ms; a durable deposit on the same file {:.2} ms",
        dispute.mean * 1e3,
        dispute.p99 * 1e3,
        event.mean * 1e3
    );
    Ok(EquivocationResult {
        check,
        verify,
        dispute,
        event,
    })
}

// ---------------------------------------------------------------------------------------
// 3. Wrong-result disputes
// ---------------------------------------------------------------------------------------

/// A job to dispute.
#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    image: &'static str,
    what: String,
    command: Vec<String>,
    input: Vec<u8>,
    limits: Limits,
    reps: usize,
}

fn limits(memory_mib: u64, timeout_ms: u64) -> Limits {
    Limits {
        cpu_millis: 1_000,
        memory_bytes: memory_mib << 20,
        output_bytes: 1 << 20,
        pids: 64,
        timeout_ms,
        tmpfs_bytes: 1 << 20,
    }
}

fn cases(plan: &Plan) -> Vec<Case> {
    let generate = json!({
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Tell me a long story about receipts."}],
        "model": "vouch-tiny-1",
        "seed": 42,
        "stop": [],
        "temperature_milli": 800,
        "top_p_milli": 900,
    });
    vec![
        Case {
            name: "short",
            image: "vouch/wc:dev",
            what: "wc of 14 bytes".into(),
            command: vec![],
            input: b"one two three\n".to_vec(),
            limits: limits(64, 10_000),
            reps: plan.reps[0],
        },
        Case {
            name: "compute",
            image: "vouch/inference-stub:dev",
            what: "inference-stub generating 4,096 tokens".into(),
            command: vec![],
            input: generate.to_string().into_bytes(),
            limits: limits(256, 60_000),
            reps: plan.reps[1],
        },
        Case {
            name: "sleep",
            image: "vouch/sleep:dev",
            what: "a 1.5 s sleep, no CPU".into(),
            command: vec!["1500".into()],
            input: b"x".to_vec(),
            limits: limits(64, 10_000),
            reps: plan.reps[2],
        },
    ]
}

#[derive(Debug)]
struct CaseResult {
    case: Case,
    /// Why the case did not run (or did not finish), if so.
    skipped: Option<String>,
    /// It ran into an error: the bench exits non-zero after printing its report.
    failed: bool,
    /// Seconds per plain run, per two plain runs started together, and per dispute.
    plain: Stats,
    pair: Stats,
    dispute: Stats,
    /// Mean phase times of the plain runs, seconds: create, start, run, remove.
    phases: [f64; 4],
    /// What a plain run printed, shortened.
    output: String,
}

impl CaseResult {
    fn skipped(case: Case, why: String) -> Self {
        CaseResult {
            case,
            skipped: Some(why),
            failed: false,
            plain: Stats::default(),
            pair: Stats::default(),
            dispute: Stats::default(),
            phases: [0.0; 4],
            output: String::new(),
        }
    }

    fn failed(case: Case, why: String) -> Self {
        CaseResult {
            failed: true,
            ..CaseResult::skipped(case, why)
        }
    }

    fn ratio(&self) -> f64 {
        self.dispute.p50 / self.plain.p50
    }
}

#[derive(Debug)]
enum DisputeResults {
    Skipped(String),
    Ran(Vec<CaseResult>),
}

async fn dispute_section(plan: &Plan) -> Res<DisputeResults> {
    let label = format!(
        "vouch-verifier-bench-{:08x}{:08x}",
        std::process::id(),
        epoch().elapsed().subsec_nanos()
    );
    let docker = Arc::new(DockerExecutor::new(DockerExecutor::default_host(), label));
    match tokio::time::timeout(Duration::from_secs(10), docker.health()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return Ok(DisputeResults::Skipped(format!(
                "Docker is unavailable: {e}"
            )))
        }
        Err(_) => {
            return Ok(DisputeResults::Skipped(
                "Docker did not answer within 10 s".into(),
            ))
        }
    }
    let result = run_cases(plan, &docker).await;
    // Whatever happened, leave no container behind.
    match docker.sweep().await {
        Ok(0) => {}
        Ok(n) => progress!("    removed {n} containers left behind"),
        Err(e) => progress!("    could not sweep the bench's containers: {e}"),
    }
    result.map(DisputeResults::Ran)
}

/// The verifier and its ledger that every dispute case shares.
struct Bench {
    docker: Arc<DockerExecutor>,
    verifier: Arc<Verifier>,
    operator: SigningKey,
    challenger: SigningKey,
    /// Receipt sequence numbers: each dispute is about a fresh receipt.
    sequence: u64,
}

async fn run_cases(plan: &Plan, docker: &Arc<DockerExecutor>) -> Res<Vec<CaseResult>> {
    let dir = tempfile::tempdir_in(&plan.dir)?;
    let operator = key("operator", 2_000);
    let challenger = key("challenger", 1);
    let (ledger, _) = staked_ledger(dir.path(), &operator, &challenger)?;
    let verifier = Arc::new(
        Verifier::new(ledger, admin(), network(), DisputeConfig::default())
            .with_executor(docker.clone()),
    );
    let mut bench = Bench {
        docker: docker.clone(),
        verifier,
        operator,
        challenger,
        sequence: 0,
    };
    let mut out = Vec::new();
    for case in cases(plan) {
        if case.reps == 0 {
            continue;
        }
        let image = match docker.resolve_image(case.image).await {
            Ok(id) => id,
            Err(e) => {
                let why = format!(
                    "image {} is missing ({e}): run `bash images/build.sh`",
                    case.image
                );
                progress!("    {why}");
                out.push(CaseResult::skipped(case, why));
                continue;
            }
        };
        progress!(
            "==> dispute, {} job ({}): {} rounds of a plain run, two at once and a dispute",
            case.name,
            case.what,
            case.reps
        );
        match run_case(&mut bench, &case, image).await {
            Ok(r) => {
                progress!(
                    "    medians: plain {:.3} s, two at once {:.3} s, dispute {:.3} s: {:.2}× ({})",
                    r.plain.p50,
                    r.pair.p50,
                    r.dispute.p50,
                    r.ratio(),
                    r.output
                );
                out.push(r);
            }
            Err(e) => {
                progress!("    FAILED: {e}");
                out.push(CaseResult::failed(case, format!("failed: {e}")));
            }
        }
    }
    Ok(out)
}

/// What one plain run gave: its wall time, its phases and its output, shortened.
async fn plain_run(
    b: &Bench,
    job_id: JobId,
    spec: &JobSpec,
    input: &Bytes,
) -> Res<(f64, Timings, String)> {
    let t = Instant::now();
    let outcome = b.docker.run(job_id, spec, input.clone()).await?;
    let took = t.elapsed().as_secs_f64();
    match outcome {
        RunOutcome::Exited {
            exit_code,
            stdout,
            timings,
            ..
        } => Ok((
            took,
            timings,
            format!(
                "exit {exit_code}, {} bytes: {}",
                stdout.len(),
                String::from_utf8_lossy(&stdout[..stdout.len().min(48)]).trim_end()
            ),
        )),
        RunOutcome::LimitExceeded { detail, .. } => {
            Err(format!("the plain run broke a limit: {detail}").into())
        }
    }
}

/// One whole dispute of a fresh wrong receipt of the job; it must end in a slash.
async fn dispute(b: &mut Bench, job_id: JobId, spec: &JobSpec, input: &Bytes) -> Res<f64> {
    b.sequence += 1;
    let lie = receipt(
        &b.operator,
        job_id,
        b.sequence,
        spec.image,
        spec.input_digest,
        format!("not the output {}", b.sequence).as_bytes(),
    );
    let bond = Bond {
        asset: "eth".into(),
        amount: 100,
    };
    let challenge = ResultChallenge::sign(
        &network(),
        &b.challenger,
        bond,
        lie,
        spec.clone(),
        input.clone(),
    )?;
    let t = Instant::now();
    let verdict = b.verifier.dispute_result(challenge, NOW).await?;
    let took = t.elapsed().as_secs_f64();
    if verdict.outcome != ResultOutcome::Slashed {
        return Err(format!(
            "the dispute of a wrong receipt ended {:?}: {}",
            verdict.outcome, verdict.reason
        )
        .into());
    }
    Ok(took)
}

/// Rounds of a plain run, two plain runs at once and a dispute of one job, in an order
/// that rotates from round to round, so a drift of the machine's load over the run weighs
/// on all three alike. The first round warms the image and the ledger's pages and is not
/// counted.
async fn run_case(b: &mut Bench, case: &Case, image: Digest) -> Res<CaseResult> {
    let spec = JobSpec {
        image,
        command: case.command.clone(),
        env: vec![],
        input_digest: Digest::of(&case.input),
        limits: case.limits,
        determinism: Determinism::Deterministic,
        value_at_risk: Amount(0),
        replicas: 1,
        nonce: format!("vouch-verifier-bench/{}", case.name),
    };
    let job_id = spec.job_id()?;
    let input = Bytes::from(case.input.clone());
    let (mut plain, mut pairs, mut disputes) = (Vec::new(), Vec::new(), Vec::new());
    let mut phases = Vec::new();
    let mut output = String::new();
    for round in 0..=case.reps {
        let counted = round > 0;
        for step in 0..3 {
            match (round + step) % 3 {
                0 => {
                    let (took, timings, out) = plain_run(b, job_id, &spec, &input).await?;
                    if counted {
                        plain.push(took);
                        phases.push(timings);
                    }
                    output = out;
                }
                1 => {
                    let t = Instant::now();
                    let (x, y) = tokio::join!(
                        plain_run(b, job_id, &spec, &input),
                        plain_run(b, job_id, &spec, &input)
                    );
                    let took = t.elapsed().as_secs_f64();
                    x?;
                    y?;
                    if counted {
                        pairs.push(took);
                    }
                }
                _ => {
                    let took = dispute(b, job_id, &spec, &input).await?;
                    if counted {
                        disputes.push(took);
                    }
                }
            }
        }
    }
    let mean = |f: fn(&Timings) -> Duration| {
        phases.iter().map(|t| f(t).as_secs_f64()).sum::<f64>() / phases.len().max(1) as f64
    };
    Ok(CaseResult {
        case: case.clone(),
        skipped: None,
        failed: false,
        plain: Stats::of(&plain),
        pair: Stats::of(&pairs),
        dispute: Stats::of(&disputes),
        phases: [
            mean(|t| t.create),
            mean(|t| t.start),
            mean(|t| t.run),
            mean(|t| t.remove),
        ],
        output,
    })
}

// ---------------------------------------------------------------------------------------
// Figure 4: one-token (T2) disputes vs full re-execution disputes
// ---------------------------------------------------------------------------------------

/// Generation sizes of figure 4.
const TOKEN_SIZES: [u32; 2] = [256, 1024];
/// Target of figure 4: a one-token dispute at least this many times cheaper at 1,024 tokens.
const TOKEN_TARGET: f64 = 20.0;

/// One size of figure 4: wall seconds and machine CPU seconds (all cores, from /proc/stat)
/// of each kind of dispute of the same wrong generation.
#[derive(Debug)]
struct TokenCase {
    tokens: u32,
    full: Stats,
    one: Stats,
    full_cpu: Stats,
    one_cpu: Stats,
}

/// Busy CPU seconds of the whole machine so far (every core; user, nice, system, irq,
/// softirq, steal), or 0 where /proc/stat is not readable.
fn machine_cpu_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum();
    busy / 100.0
}

async fn token_section(plan: &Plan) -> Res<Vec<TokenCase>> {
    let label = format!("vouch-verifier-bench-token-{:08x}", std::process::id());
    let docker = Arc::new(DockerExecutor::new(DockerExecutor::default_host(), label));
    if tokio::time::timeout(Duration::from_secs(10), docker.health())
        .await
        .map_or(true, |r| r.is_err())
    {
        progress!("==> one-token disputes skipped: Docker does not answer");
        return Ok(vec![]);
    }
    let result = token_cases(plan, &docker).await;
    let _ = docker.sweep().await;
    result
}

async fn token_cases(plan: &Plan, docker: &Arc<DockerExecutor>) -> Res<Vec<TokenCase>> {
    let image = match docker.resolve_image("vouch/inference-stub:dev").await {
        Ok(i) => i,
        Err(e) => {
            progress!("==> one-token disputes skipped: {e} (run images/build.sh)");
            return Ok(vec![]);
        }
    };
    let dir = tempfile::tempdir_in(&plan.dir)?;
    let operator = key("operator", 3_000);
    let challenger = key("challenger", 1);
    let (ledger, _) = staked_ledger(dir.path(), &operator, &challenger)?;
    let verifier = Arc::new(
        Verifier::new(ledger, admin(), network(), DisputeConfig::default())
            .with_executor(docker.clone()),
    );
    let rounds = if plan.quick { 3 } else { 8 };
    let mut sequence = 0u64;
    let mut out = vec![];
    for n in TOKEN_SIZES {
        // The operator's generation, then the same with its middle token replaced in the
        // output and in its leaf: a self-consistent wrong receipt, as --fault wrong-token.
        let input = json!({
            "max_tokens": n,
            "messages": [{"role": "user", "content": "Tell me a long story about receipts."}],
            "model": "vouch-tiny-1", "seed": 42, "stop": [],
            "temperature_milli": 800, "top_p_milli": 900,
        })
        .to_string()
        .into_bytes();
        let spec = JobSpec {
            image,
            command: vec![],
            env: vec![],
            input_digest: Digest::of(&input),
            limits: limits(256, 120_000),
            determinism: Determinism::Deterministic,
            value_at_risk: Amount(0),
            replicas: 1,
            nonce: format!("vouch-verifier-bench/token/{n}"),
        };
        let job_id = spec.job_id()?;
        let input = Bytes::from(input);
        let RunOutcome::Exited {
            stdout, mut trace, ..
        } = docker.run(job_id, &spec, input.clone()).await?
        else {
            return Err("the model broke a limit".into());
        };
        let mut out_json: Value = serde_json::from_slice(&stdout)?;
        let t = (n / 2) as usize;
        let old = out_json["tokens"][t].as_u64().ok_or("no token t")? as u32;
        let new = old % 96 + 1;
        out_json["tokens"][t] = new.into();
        let wrong = Bytes::from(vouch_proto::to_canonical_bytes(&out_json)?);
        trace[t][4..8].copy_from_slice(&new.to_be_bytes());
        let lie = |sequence: u64| {
            let receipt = Receipt {
                network_id: network(),
                operator: OperatorKey(operator.verifying_key().to_bytes()),
                sequence,
                job_id,
                image,
                input_digest: spec.input_digest,
                output_digest: Digest::of(&wrong),
                output_len: wrong.len() as u64,
                exit_code: 0,
                trace_root: vouch_proto::merkle_root(&trace),
                trace_len: trace.len() as u64,
                issued_at_ms: NOW - 10,
            };
            let signature = operator.sign(&receipt.signing_root()).to_bytes();
            SignedReceipt { receipt, signature }
        };
        let bond = || Bond {
            asset: "eth".into(),
            amount: 100,
        };
        progress!("==> one-token vs full re-execution disputes, {n} tokens: {rounds} rounds");
        let (mut full, mut one, mut full_cpu, mut one_cpu) = (vec![], vec![], vec![], vec![]);
        for round in 0..=rounds {
            for kind in [round % 2, (round + 1) % 2] {
                sequence += 1;
                let (c0, t0) = (machine_cpu_s(), Instant::now());
                let verdict = if kind == 0 {
                    let c = ResultChallenge::sign(
                        &network(),
                        &challenger,
                        bond(),
                        lie(sequence),
                        spec.clone(),
                        input.clone(),
                    )?;
                    verifier.dispute_result(c, NOW).await?
                } else {
                    let claim = TokenClaim {
                        position: t as u32,
                        output: wrong.clone(),
                        leaf: trace[t].clone(),
                        proof: vouch_proto::merkle_proof(&trace, t).ok_or("no opening")?,
                        prefix: None,
                        output_signature: None,
                        leaf_signature: None,
                    };
                    let c = TokenChallenge::sign(
                        &network(),
                        &challenger,
                        bond(),
                        lie(sequence),
                        spec.clone(),
                        input.clone(),
                        claim,
                    )?;
                    let v = verifier.dispute_token(c, NOW).await?;
                    if v.tokens_recomputed != Some(1) {
                        return Err(format!(
                            "one-token dispute recomputed {:?}",
                            v.tokens_recomputed
                        )
                        .into());
                    }
                    v
                };
                let (wall, cpu) = (t0.elapsed().as_secs_f64(), machine_cpu_s() - c0);
                if verdict.outcome != ResultOutcome::Slashed {
                    return Err(format!(
                        "a dispute of the wrong generation ended {:?}: {}",
                        verdict.outcome, verdict.reason
                    )
                    .into());
                }
                if round == 0 {
                    continue; // warm-up
                }
                if kind == 0 {
                    full.push(wall);
                    full_cpu.push(cpu);
                } else {
                    one.push(wall);
                    one_cpu.push(cpu);
                }
            }
        }
        let case = TokenCase {
            tokens: n,
            full: Stats::of(&full),
            one: Stats::of(&one),
            full_cpu: Stats::of(&full_cpu),
            one_cpu: Stats::of(&one_cpu),
        };
        progress!(
            "    medians: full {:.3} s ({:.3} CPU s), one token {:.3} s ({:.3} CPU s): {:.1}× wall, {:.1}× CPU",
            case.full.p50,
            case.full_cpu.p50,
            case.one.p50,
            case.one_cpu.p50,
            case.full.p50 / case.one.p50,
            case.full_cpu.p50 / case.one_cpu.p50.max(1e-9)
        );
        out.push(case);
    }
    Ok(out)
}

fn token_report(cases: &[TokenCase]) -> (String, Value) {
    let mut md = String::from(
        "## One-token (T2) disputes vs full re-execution disputes (vouch/inference-stub:dev)\n\n",
    );
    if cases.is_empty() {
        md.push_str("Not run: Docker or the model image is missing.\n");
        return (md, json!({"skipped": true}));
    }
    md.push_str("| generated tokens | full dispute p50 wall / machine CPU (s) | one-token dispute p50 wall / machine CPU (s) | ratio wall | ratio CPU | target |\n|---|---|---|---|---|---|\n");
    let mut rows = vec![];
    for c in cases {
        let (rw, rc) = (
            c.full.p50 / c.one.p50,
            c.full_cpu.p50 / c.one_cpu.p50.max(1e-9),
        );
        let target = if c.tokens == 1024 {
            if rc >= TOKEN_TARGET {
                format!("≥ {TOKEN_TARGET}× CPU: met")
            } else {
                format!("≥ {TOKEN_TARGET}× CPU: **missed**")
            }
        } else {
            "—".into()
        };
        md.push_str(&format!(
            "| {} | {:.3} / {:.3} | {:.3} / {:.3} | {:.1}× | {:.1}× | {} |\n",
            c.tokens, c.full.p50, c.full_cpu.p50, c.one.p50, c.one_cpu.p50, rw, rc, target
        ));
        rows.push(json!({
            "tokens": c.tokens,
            "full_wall_s": c.full.json(1.0),
            "one_token_wall_s": c.one.json(1.0),
            "full_machine_cpu_s": c.full_cpu.json(1.0),
            "one_token_machine_cpu_s": c.one_cpu.json(1.0),
            "ratio_wall": rw,
            "ratio_cpu": rc,
        }));
    }
    md.push_str(
        "\nBoth are whole `Verifier` disputes of the same self-consistent wrong receipt (the \
         middle token replaced in output and leaf), each about a fresh receipt, alternating. \
         The full dispute re-runs the generation twice; the one-token dispute checks the \
         opening and runs the model's `step` once. Machine CPU is the busy time of every core \
         while the dispute ran (containers, dockerd and the verifier alike).\n",
    );
    (
        md,
        json!({"target_ratio_at_1024": TOKEN_TARGET, "sizes": rows}),
    )
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
    /// Why a target is missed, in a few words.
    why: Option<String>,
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
            "why_missed": self.why,
        })
    }
}

fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x.abs() >= 1000.0 {
        let s = format!("{x:.0}");
        // Thousands separators for readability: 12345 → 12,345.
        let (sign, digits) = s.split_at(usize::from(s.starts_with('-')));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn report(
    plan: &Plan,
    l: &LedgerResult,
    e: &EquivocationResult,
    d: &DisputeResults,
    load: (&str, &str),
) -> (String, Value) {
    let mut rows = Vec::new();
    let bare_disk = &l.bare[0];
    let durable = l.durable.per_s();
    let c = &l.concurrent;
    let together = c.durable.per_s();
    rows.push(Row {
        figure: format!(
            "ledger events/s, durable: SQLite file, synchronous=FULL, journal={}, {} concurrent \
             submitters (group commit: {:.1} requests per commit on average, largest {})",
            l.journal,
            c.durable.submitters,
            c.durable.mean_batch(),
            c.durable.largest_batch
        ),
        unit: "events/s",
        value: together,
        baseline: c.bare.rows_per_s(),
        baseline_is: "bare INSERT + COMMIT loop of one row per commit, same disk, same sync \
                      and journal, just before and after"
            .into(),
        target: Some(format!("≥ {} events/s", fmt_num(TARGET_EVENTS_PER_S))),
        met: Some(together >= TARGET_EVENTS_PER_S),
        // CPU-bound when the same streams without syncs are less than twice as fast.
        why: Some(match &c.shm {
            Some(shm) if shm.per_s() < 2.0 * together => {
                "CPU-bound: the leader applies a batch's requests one after another on one core, see below".into()
            }
            _ => "storage-bound, see below".into(),
        }),
    });
    rows.push(Row {
        figure: format!(
            "ledger events/s, durable, one submitter (a batch of one: each request waits for \
             its own commit), journal={}",
            l.journal
        ),
        unit: "events/s",
        value: durable,
        baseline: bare_disk.rows_per_s(),
        baseline_is: "bare INSERT + COMMIT loop, same disk, same sync and journal, alternating"
            .into(),
        target: None,
        met: None,
        why: None,
    });
    if let Some(shm) = &c.shm {
        rows.push(Row {
            figure: format!(
                "ledger events/s, {} concurrent submitters with the file on /dev/shm (CPU only)",
                shm.submitters
            ),
            unit: "events/s",
            value: shm.per_s(),
            baseline: l.shm.as_ref().map_or(f64::NAN, ApplyRun::per_s),
            baseline_is: "one submitter on /dev/shm".into(),
            target: None,
            met: None,
            why: None,
        });
    }
    if let (Some(shm), Some(bare)) = (&l.shm, &l.bare_shm) {
        rows.push(Row {
            figure: "ledger events/s, the same file on /dev/shm (CPU only, no sync cost)".into(),
            unit: "events/s",
            value: shm.per_s(),
            baseline: bare.rows_per_s(),
            baseline_is: "bare INSERT + COMMIT loop on /dev/shm".into(),
            target: None,
            met: None,
            why: None,
        });
        rows.push(Row {
            figure: "ledger events/s, durable vs on /dev/shm".into(),
            unit: "events/s",
            value: durable,
            baseline: shm.per_s(),
            baseline_is: "the ledger on /dev/shm".into(),
            target: None,
            met: None,
            why: None,
        });
    }
    rows.push(Row {
        figure: "ledger events/s, MemoryLedger (copies its state, log included, per request)"
            .into(),
        unit: "events/s",
        value: l.memory.per_s(),
        baseline: l.shm.as_ref().map_or(durable, ApplyRun::per_s),
        baseline_is: if l.shm.is_some() {
            "the SQLite ledger on /dev/shm".into()
        } else {
            "the durable SQLite ledger".into()
        },
        target: None,
        met: None,
        why: None,
    });
    let target_us = format!("< {} µs", fmt_num(TARGET_EQUIVOCATION_US));
    for (what, value, base) in [
        ("mean", e.check.mean, e.verify.mean),
        ("p99", e.check.p99, e.verify.p99),
    ] {
        rows.push(Row {
            figure: format!("equivocation proof check (`equivocation_offence`), {what}"),
            unit: "µs",
            value: value * 1e6,
            baseline: base * 1e6,
            baseline_is: format!("one `SignedReceipt::verify`, {what}"),
            target: Some(target_us.clone()),
            met: Some(value * 1e6 < TARGET_EQUIVOCATION_US),
            why: None,
        });
    }
    rows.push(Row {
        figure: "equivocation dispute with its durable slash (`dispute_equivocation`), mean".into(),
        unit: "ms",
        value: e.dispute.mean * 1e3,
        baseline: e.event.mean * 1e3,
        baseline_is: "one durable deposit on the same ledger file, mean".into(),
        target: None,
        met: None,
        why: None,
    });
    let target_ratio = format!("≤ {TARGET_DISPUTE_RATIO}× one execution");
    if let DisputeResults::Ran(cases) = d {
        for c in cases.iter().filter(|c| c.skipped.is_none()) {
            rows.push(Row {
                figure: format!(
                    "wrong-result dispute (`dispute_result`), {} job: {}, median of {}",
                    c.case.name, c.case.what, c.dispute.n
                ),
                unit: "s",
                value: c.dispute.p50,
                baseline: c.plain.p50,
                baseline_is: "one plain `Executor::run` of the job, median".into(),
                target: Some(target_ratio.clone()),
                met: Some(c.ratio() <= TARGET_DISPUTE_RATIO),
                why: None,
            });
        }
    }

    let mut md = String::new();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    md.push_str(&format!(
        "## Verifier: ledger, equivocation proofs, wrong-result disputes, {cores} cores{}\n\n",
        if plan.quick { " (--quick)" } else { "" }
    ));
    let mix = l
        .mix
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    md.push_str(&format!(
        "Load average at start / end: {} / {}. Ledger: {} valid signed requests applied to a \
         fresh file in {} (mean event {} bytes as stored) by one submitter, one request after \
         the other, so each is a batch of one: one exclusive transaction and one commit; the \
         stream's mix: {mix}.\n\n",
        load.0,
        load.1,
        l.durable.events,
        l.dir.display(),
        l.event_bytes
    ));
    let busiest = [load.0, load.1]
        .iter()
        .filter_map(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .fold(0.0, f64::max);
    if busiest > cores as f64 {
        md.push_str(&format!(
            "**The machine was busy** (1-minute load average up to {busiest:.1} on {cores} \
             cores): other processes took CPU and disk time from this one, so absolute times \
             are inflated and noisier; the ratios to baselines measured alongside hold better.\n\n"
        ));
    }
    md.push_str("| figure | unit | measured | baseline | baseline is | ratio | target |\n");
    md.push_str("|---|---|---|---|---|---|---|\n");
    for r in &rows {
        let target = match (&r.target, r.met) {
            (Some(t), Some(true)) => format!("{t}: met"),
            (Some(t), Some(false)) => match &r.why {
                Some(why) => format!("{t}: **missed**; {why}"),
                None => format!("{t}: **missed**"),
            },
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

    // Why the durable figures are what they are.
    let cmix = c
        .mix
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    md.push_str(&format!(
        "\nConcurrent run: {} threads each apply their own pre-signed stream of {} requests \
         (disjoint actors, so every request is valid in any interleaving; no \
         complete_withdrawal, whose ledger-wide id a pre-signed request cannot know; mix: \
         {cmix}) to one `SqliteLedger` at once, as the API's blocking pool does. They took \
         {:.2} s for {} events in {} commits; each `apply` waited p50 {:.2} ms, p99 {:.2} ms \
         (it includes the wait for the batch before its own).\n",
        c.durable.submitters,
        c.durable.events / c.durable.submitters.max(1),
        c.durable.wall.as_secs_f64(),
        c.durable.events,
        c.durable.batches,
        c.durable.latency.p50 * 1e3,
        c.durable.latency.p99 * 1e3,
    ));
    if let Some(shm) = &c.shm {
        md.push_str(&format!(
            "That is {:.0}% of the same streams with the file on /dev/shm ({} events/s, no sync \
             cost): {}.\n",
            100.0 * together / shm.per_s(),
            fmt_num(shm.per_s()),
            if together > 0.6 * shm.per_s() {
                "the disk is no longer what bounds it; the leader applies a batch's requests \
                 one after another on one core (a signature check and an event signature each, \
                 canonical JSON, SQL) while the next batch queues"
            } else {
                "the rest is waiting for the disk"
            }
        ));
    }
    let per_event_ms = 1e3 / durable;
    let bare_commit_ms = 1e3 / bare_disk.commits_per_s();
    md.push_str(&format!(
        "\nOne submitter: a durable event takes {:.2} ms (apply p50 {:.2} ms, p99 {:.2} ms); a \
         bare commit of one row on the same disk takes {:.2} ms",
        per_event_ms,
        l.durable.latency.p50 * 1e3,
        l.durable.latency.p99 * 1e3,
        bare_commit_ms
    ));
    if let Some(shm) = &l.shm {
        md.push_str(&format!(
            ", and the ledger's own CPU work per event (on /dev/shm) {:.2} ms",
            1e3 / shm.per_s()
        ));
    }
    md.push_str(
        ". A lone submitter waits for each commit before it sends the next request, so it \
         never has company in a batch: it gets at most the disk's commit rate.\n",
    );
    if together < TARGET_EVENTS_PER_S {
        let group = l
            .bare
            .iter()
            .find(|b| b.per_commit == GROUP && b.journal == l.journal);
        md.push_str(&format!(
            "**The durable target is missed under concurrent load** ({} events/s with group \
             commit, journal={}).",
            fmt_num(together),
            l.journal,
        ));
        if let Some(shm) = &c.shm {
            md.push_str(&format!(
                " The same streams with the file on /dev/shm (no sync cost) reach {} events/s: \
                 {}.",
                fmt_num(shm.per_s()),
                if shm.per_s() < 2.0 * together {
                    "the run is bound by the CPU work of applying requests, which the batch \
                     leader does one request after another"
                } else {
                    "the run is bound by the storage"
                }
            ));
        }
        if let Some(w) = l
            .bare
            .iter()
            .find(|b| b.per_commit == 1 && b.journal == "wal")
        {
            if l.journal != "wal" {
                md.push_str(&format!(
                    " A WAL journal (one sync per commit instead of several) gives {} \
                     commits/s on this disk{}.",
                    fmt_num(w.commits_per_s()),
                    if w.commits_per_s() < TARGET_EVENTS_PER_S {
                        ": better, but not enough alone"
                    } else {
                        ""
                    }
                ));
            }
        }
        if let Some(g) = group {
            md.push_str(&format!(
                " With {GROUP} rows per commit the same disk takes {} rows/s",
                fmt_num(g.rows_per_s())
            ));
            match &l.shm {
                Some(shm) if shm.per_s() < TARGET_EVENTS_PER_S => md.push_str(&format!(
                    "; but the ledger's CPU work alone allows {} events/s on one core, so \
                     group commit would also need that work (a signature check and a \
                     signature per event, canonical JSON, SQL) made cheaper or spread over \
                     cores.",
                    fmt_num(shm.per_s())
                )),
                Some(shm) => md.push_str(&format!(
                    ", and the ledger's CPU work alone allows {} events/s on one core.",
                    fmt_num(shm.per_s())
                )),
                None => md.push('.'),
            }
        }
        md.push('\n');
    }

    md.push_str(
        "\n| storage baseline (bare rusqlite, synchronous=FULL) | journal | rows per commit | commits/s | rows/s |\n",
    );
    md.push_str("|---|---|---|---|---|\n");
    for b in l.bare.iter().chain(&l.bare_shm) {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            b.place,
            b.journal,
            b.per_commit,
            fmt_num(b.commits_per_s()),
            fmt_num(b.rows_per_s())
        ));
    }

    match d {
        DisputeResults::Skipped(why) => {
            md.push_str(&format!(
                "\n**Wrong-result disputes were skipped**: {why}. Start Docker and run \
                 `bash images/build.sh`, then run the bench again.\n"
            ));
        }
        DisputeResults::Ran(cases) => {
            md.push_str(
                "\n| dispute job | one plain run: median (min–max) | two plain runs at once | \
                 dispute | dispute / one run (medians; means) | dispute / two at once | \
                 plain run phases: create / start / run / remove | output |\n",
            );
            md.push_str("|---|---|---|---|---|---|---|---|\n");
            let ms = |x: f64| x * 1e3;
            let range =
                |st: &Stats| format!("{:.0} ms ({:.0}–{:.0})", ms(st.p50), ms(st.min), ms(st.max));
            for c in cases {
                if let Some(why) = &c.skipped {
                    md.push_str(&format!(
                        "| {} ({}) | {why} | | | | | | |\n",
                        c.case.name, c.case.what
                    ));
                    continue;
                }
                md.push_str(&format!(
                    "| {} ({}) | {} | {} | {} | {:.2}×; {:.2}× | {:.2}× | {:.0} / {:.0} / {:.0} / {:.0} ms | {} |\n",
                    c.case.name,
                    c.case.what,
                    range(&c.plain),
                    range(&c.pair),
                    range(&c.dispute),
                    c.ratio(),
                    c.dispute.mean / c.plain.mean,
                    c.dispute.p50 / c.pair.p50,
                    ms(c.phases[0]),
                    ms(c.phases[1]),
                    ms(c.phases[2]),
                    ms(c.phases[3]),
                    c.output.replace('|', "\\|")
                ));
            }
            md.push_str(
                "\nA dispute checks the challenge (signatures, job id, window, bond), records it \
                 in the durable ledger, runs the job twice and records the verdict. \
                 \"Two plain runs at once\" is the same pair of runs with no verifier around \
                 them: the floor for a dispute whose runs overlap, which is one run's time only \
                 when the machine has a free core for the second.\n",
            );
        }
    }

    let disputes_json = match d {
        DisputeResults::Skipped(why) => json!({"skipped": why}),
        DisputeResults::Ran(cases) => Value::Array(
            cases
                .iter()
                .map(|c| {
                    json!({
                        "job": c.case.name,
                        "what": c.case.what,
                        "image": c.case.image,
                        "skipped": c.skipped,
                        "plain_s": c.plain.json(1.0),
                        "two_plain_at_once_s": c.pair.json(1.0),
                        "dispute_s": c.dispute.json(1.0),
                        "ratio_of_medians": c.ratio(),
                        "ratio_to_two_at_once": c.dispute.p50 / c.pair.p50,
                        "plain_phases_ms": {
                            "create": c.phases[0] * 1e3,
                            "start": c.phases[1] * 1e3,
                            "run": c.phases[2] * 1e3,
                            "remove": c.phases[3] * 1e3,
                        },
                        "output": c.output,
                    })
                })
                .collect(),
        ),
    };
    let json = json!({
        "bench": "vouch-verifier",
        "quick": plan.quick,
        "cores": cores,
        "load_average": {"start": load.0, "end": load.1},
        "figures": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "ledger": {
            "dir": l.dir.display().to_string(),
            "journal_mode": l.journal,
            "synchronous": "FULL",
            "mean_event_bytes": l.event_bytes,
            "mix": l.mix,
            "durable": l.durable.json(),
            "concurrent": {
                "mix": c.mix,
                "durable": c.durable.json(),
                "bare": c.bare.json(),
                "shm": c.shm.as_ref().map(ConcurrentRun::json),
            },
            "shm": l.shm.as_ref().map(ApplyRun::json),
            "memory": l.memory.json(),
            "bare": l.bare.iter().chain(&l.bare_shm).map(Bare::json).collect::<Vec<_>>(),
        },
        "equivocation": {
            "check_us": e.check.json(1e6),
            "verify_us": e.verify.json(1e6),
            "dispute_ms": e.dispute.json(1e3),
            "same_file_deposit_ms": e.event.json(1e3),
        },
        "disputes": disputes_json,
    });
    (md, json)
}

// ---------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------

fn main() -> Res<()> {
    let args = parse_args()?;
    let plan = Plan::new(&args);
    let started = Instant::now();
    epoch();
    let load_start = load_average();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let tokens = runtime.block_on(token_section(&plan))?;
    let (token_md, token_json) = token_report(&tokens);
    if args.only_token {
        println!("{token_md}");
        if let Some(path) = &args.json {
            std::fs::write(path, serde_json::to_string_pretty(&token_json)?)?;
        }
        return Ok(());
    }
    let ledger = ledger_section(&plan)?;
    let equivocation = equivocation_section(&plan)?;
    let disputes = runtime.block_on(dispute_section(&plan))?;
    if let DisputeResults::Skipped(why) = &disputes {
        progress!("==> wrong-result disputes skipped: {why}");
    }
    let failed = match &disputes {
        DisputeResults::Ran(cases) => cases.iter().filter(|c| c.failed).count(),
        DisputeResults::Skipped(_) => 0,
    };
    let load_end = load_average();

    let (md, json) = report(
        &plan,
        &ledger,
        &equivocation,
        &disputes,
        (&load_start, &load_end),
    );
    println!("{md}\n{token_md}");
    let mut json = json;
    json["token_disputes"] = token_json;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&json)?)?;
        progress!("==> wrote {path}");
    }
    progress!("==> done in {:.0} s", started.elapsed().as_secs_f64());
    if failed > 0 {
        return Err(format!("{failed} dispute job(s) failed: see the table").into());
    }
    Ok(())
}
