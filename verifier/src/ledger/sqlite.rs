//! [`SqliteLedger`]: the ledger in one SQLite file.
//!
//! Invariants kept here:
//! - every request is checked and applied inside a `BEGIN EXCLUSIVE` transaction together
//!   with its nonce and its event, so two processes or connections on the same file
//!   serialize, and a replayed request loses the nonce check instead of racing it;
//! - group commit: requests that arrive while a commit is under way wait in a queue; the
//!   thread at its front (the leader) takes up to [`MAX_BATCH`] of them and applies each in
//!   order, under its own `SAVEPOINT`, in ONE exclusive transaction, so each sees the state
//!   the earlier ones left, and a refused one is rolled back to its savepoint (nothing it
//!   did is kept, not even its nonce) while the others go on. One `COMMIT` then makes the
//!   whole batch durable, and only after it returns is any caller answered: no client
//!   learns of an event that a power cut could still take back. If the commit fails, every
//!   request of the batch gets the error and none is applied. A lone request is a batch of
//!   one and waits for nobody;
//! - `synchronous=FULL`: a committed slash or withdrawal survives a power cut;
//! - amounts (`u128`) and times/nonces (`u64`, which may exceed SQLite's `i64`) are stored
//!   as decimal TEXT and never used in SQL arithmetic: all arithmetic is checked Rust.
//!   TEXT keeps the file readable with the `sqlite3` shell and the values exact;
//! - keys are lowercase hex TEXT, so `ORDER BY` gives the same order as `Key`'s `Ord`;
//! - the schema version is `PRAGMA user_version`, migrated on open inside an exclusive
//!   transaction, one step at a time (`tests/migration.rs` opens committed version-1 and
//!   version-2 files); the file remembers the verifier key, network id and config it was
//!   created with and refuses to open with others.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{
    apply_request, Applied, AssetState, CollateralLedger, Ctx, DisputeClosed, DisputeRecord,
    DisputeVerdict, LedgerConfig, OperatorState, PendingDeallocation, Snapshot, Store, Withdrawal,
};
use crate::error::{LedgerError, Result};
use crate::events::Event;
use crate::requests::{Key, SignedRequest};

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 3;

const SCHEMA_V1: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE assets (name TEXT PRIMARY KEY, price_per_unit TEXT NOT NULL, total TEXT NOT NULL)
    WITHOUT ROWID;
CREATE TABLE balances (
    restaker TEXT NOT NULL, asset TEXT NOT NULL, amount TEXT NOT NULL,
    PRIMARY KEY (restaker, asset)) WITHOUT ROWID;
CREATE TABLE delegations (restaker TEXT PRIMARY KEY, operator TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX delegations_by_operator ON delegations (operator, restaker);
CREATE TABLE withdrawals (
    id INTEGER PRIMARY KEY AUTOINCREMENT, restaker TEXT NOT NULL, asset TEXT NOT NULL,
    amount TEXT NOT NULL, claimable_at_ms TEXT NOT NULL);
CREATE INDEX withdrawals_by_restaker ON withdrawals (restaker, id);
CREATE TABLE operators (
    key TEXT PRIMARY KEY, peer_key TEXT NOT NULL, magnitude_ppm INTEGER NOT NULL,
    pending_magnitude_ppm INTEGER, pending_effective_at_ms TEXT, jailed INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE nonces (actor TEXT PRIMARY KEY, nonce TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE events (seq INTEGER PRIMARY KEY, hash BLOB NOT NULL, event TEXT NOT NULL);
";

/// Version 1 → 2: one slash per offence. `event_seq` is the slash event that punished it.
const MIGRATION_V2: &str = "
CREATE TABLE offences (id TEXT PRIMARY KEY, event_seq INTEGER NOT NULL) WITHOUT ROWID;
";

/// Version 2 → 3: disputes that lock their bond (`open_dispute` / `close_dispute`).
/// `locked` is what the dispute holds now; `verdict` is NULL while it is open. The evidence
/// (up to a few MiB) makes this an ordinary rowid table.
const MIGRATION_V3: &str = "
CREATE TABLE disputes (
    id TEXT PRIMARY KEY, challenger TEXT NOT NULL, asset TEXT NOT NULL, bond TEXT NOT NULL,
    locked TEXT NOT NULL, opened_seq INTEGER NOT NULL, opened_at_ms TEXT NOT NULL,
    evidence_digest TEXT NOT NULL, evidence BLOB NOT NULL,
    verdict TEXT, closed_seq INTEGER, closed_at_ms TEXT, report TEXT);
CREATE INDEX open_disputes_by_challenger ON disputes (challenger, id) WHERE verdict IS NULL;
";

/// Most requests one group commit applies; later ones wait for the next commit, so a
/// long queue cannot hold the connection (and the readers waiting for it) indefinitely.
/// The same as the API's concurrency limit, so a full API fits in one batch.
pub const MAX_BATCH: usize = 256;

/// A ledger stored in a SQLite file. Several `SqliteLedger`s (threads or processes) may
/// open the same file; exclusive transactions serialize their writes. Within one
/// `SqliteLedger`, concurrent [`CollateralLedger::apply`] calls share commits (see the
/// module docs): share one `SqliteLedger` between threads rather than opening one each.
#[derive(Debug)]
pub struct SqliteLedger {
    conn: Mutex<Connection>,
    /// Requests waiting for a commit, oldest first; the front one's thread leads.
    queue: Mutex<Queue>,
    config: LedgerConfig,
    network_id: [u8; 32],
    signer: SigningKey,
}

#[derive(Debug, Default)]
struct Queue {
    waiting: VecDeque<Arc<Waiter>>,
    stats: GroupCommitStats,
}

/// How concurrent requests have been grouped into commits since the ledger was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Transactions committed (or failed) for requests, one per batch.
    pub batches: u64,
    /// Requests in them, applied or refused.
    pub requests: u64,
    /// The largest batch.
    pub largest: usize,
}

/// One `apply` call waiting in the queue. Its thread sleeps on `wake` (with the queue
/// lock) until the batch that took it has committed, or until it is at the front.
#[derive(Debug)]
struct Waiter {
    request: SignedRequest,
    attachment: Vec<u8>,
    now_ms: u64,
    /// Set by the leader, before it pops the waiter off the queue.
    answer: Mutex<Option<Result<Applied>>>,
    wake: Condvar,
}

impl Waiter {
    fn new(request: &SignedRequest, attachment: &[u8], now_ms: u64) -> Arc<Self> {
        Arc::new(Waiter {
            request: request.clone(),
            attachment: attachment.to_vec(),
            now_ms,
            answer: Mutex::new(None),
            wake: Condvar::new(),
        })
    }

    fn answer(&self) -> MutexGuard<'_, Option<Result<Applied>>> {
        self.answer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The error every request of a failed batch gets (`rusqlite::Error` is not `Clone`).
fn batch_error(e: &LedgerError) -> LedgerError {
    let code = match e {
        LedgerError::Storage(rusqlite::Error::SqliteFailure(code, _)) => *code,
        _ => rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
    };
    LedgerError::Storage(rusqlite::Error::SqliteFailure(
        code,
        Some(format!(
            "the group commit of this request failed, so nothing of it was applied: {e}"
        )),
    ))
}

/// The leader's batch. Dropped without [`Leading::answer`] (a panic while applying it)
/// it answers every waiter with an error, so none of them sleeps forever; the transaction
/// was rolled back by then (a dropped `Transaction` rolls back).
struct Leading<'a> {
    ledger: &'a SqliteLedger,
    batch: Vec<Arc<Waiter>>,
}

impl Leading<'_> {
    fn answer(mut self, answers: Vec<Result<Applied>>) {
        let batch = std::mem::take(&mut self.batch);
        self.ledger.finish(batch, answers);
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let e = LedgerError::Corrupt("the thread applying this batch panicked".into());
        let answers = batch.iter().map(|_| Err(batch_error(&e))).collect();
        self.ledger.finish(batch, answers);
    }
}

fn dec<T: FromStr>(s: &str, what: &str) -> Result<T> {
    s.parse()
        .map_err(|_| LedgerError::Corrupt(format!("{what}: {s:?} is not a decimal integer")))
}

fn key(s: &str) -> Result<Key> {
    Key::from_hex(s).map_err(|_| LedgerError::Corrupt(format!("bad key {s:?}")))
}

impl SqliteLedger {
    /// Opens (creating and migrating if needed) the ledger at `path`.
    ///
    /// A new file records `config`, `network_id` and the verifier's public key; an
    /// existing file must have been created with the same ones.
    pub fn open(
        path: impl AsRef<Path>,
        config: LedgerConfig,
        network_id: [u8; 32],
        verifier: SigningKey,
    ) -> Result<Self> {
        let path: PathBuf = path.as_ref().to_owned();
        let mut conn = Connection::open(&path)?;
        // Writers wait for each other instead of failing with SQLITE_BUSY.
        conn.busy_timeout(Duration::from_secs(30))?;
        // WAL: a commit appends to the log and syncs it once, where the rollback journal
        // syncs the journal and the database several times, so a group commit costs about
        // a third of the time; with synchronous=FULL the log is synced before every COMMIT
        // returns, so a committed event survives a power cut as before. Readers in other
        // processes no longer block the writer. The mode stays with the file (older files
        // switch when first opened); back the file up with its `-wal` beside it, or with
        // `sqlite3 ledger.sqlite .backup`. A file system without shared memory (some
        // network file systems) cannot hold a WAL database: keep the ledger on a local
        // disk.
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
        if mode != "wal" {
            tracing::warn!(
                path = %path.display(),
                %mode,
                "the ledger could not switch to WAL; commits stay durable but slower"
            );
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let wanted = [
            ("verifier_key", Key::of(&verifier).to_hex()),
            ("network_id", hex::encode(network_id)),
            (
                "config",
                serde_json::to_string(&config)
                    .map_err(|e| LedgerError::Corrupt(format!("config: {e}")))?,
            ),
        ];
        if !(0..=SCHEMA_VERSION).contains(&version) {
            return Err(LedgerError::Corrupt(format!(
                "{}: schema version {version} is newer than this verifier ({SCHEMA_VERSION}); upgrade vouch-verifier",
                path.display()
            )));
        }
        // Each step takes the file from one version to the next; a new file runs them all.
        if version < 1 {
            tx.execute_batch(SCHEMA_V1)?;
            for (k, v) in &wanted {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![k, v],
                )?;
            }
        }
        if version < 2 {
            tx.execute_batch(MIGRATION_V2)?;
        }
        if version < 3 {
            tx.execute_batch(MIGRATION_V3)?;
        }
        if version < SCHEMA_VERSION {
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        for (k, v) in &wanted {
            let stored: Option<String> = tx
                .query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
                .optional()?;
            if stored.as_deref() != Some(v.as_str()) {
                return Err(LedgerError::Mismatch {
                    path: path.display().to_string(),
                    what: match *k {
                        "verifier_key" => "verifier key",
                        "network_id" => "network id",
                        _ => "config",
                    },
                });
            }
        }
        tx.commit()?;
        Ok(SqliteLedger {
            conn: Mutex::new(conn),
            queue: Mutex::new(Queue::default()),
            config,
            network_id,
            signer: verifier,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic inside a transaction drops the Transaction, which rolls back, so the
        // connection behind a poisoned lock is still consistent.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Nothing in the queue is left half-changed by a panic: pushes and pops are single
        // operations, answers are set before the pop.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How requests have been grouped into commits so far.
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        self.queue().stats
    }

    /// Queues one request and returns its answer once the batch that took it is durable
    /// (or failed). The caller whose request is at the front of the queue applies the
    /// batch itself; the others sleep meanwhile.
    fn submit(&self, request: &SignedRequest, attachment: &[u8], now_ms: u64) -> Result<Applied> {
        let me = Waiter::new(request, attachment, now_ms);
        let mut q = self.queue();
        q.waiting.push_back(me.clone());
        loop {
            if let Some(answer) = me.answer().take() {
                return answer;
            }
            if q.waiting.front().is_some_and(|w| Arc::ptr_eq(w, &me)) {
                break;
            }
            q = me.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
        // At the front: lead. The batch stays in the queue (so nobody else leads) until
        // `finish` pops it.
        let batch: Vec<_> = q.waiting.iter().take(MAX_BATCH).cloned().collect();
        drop(q);
        let leading = Leading {
            ledger: self,
            batch,
        };
        let answers = self.apply_batch(&leading.batch, |tx| tx.commit());
        leading.answer(answers);
        let answer = me.answer().take();
        // `finish` answered every waiter of the batch, and `me` was its first.
        answer.unwrap_or_else(|| {
            Err(LedgerError::Corrupt(
                "a batch left a request unanswered".into(),
            ))
        })
    }

    /// Answers the waiters of a batch, takes them off the queue and wakes them and the
    /// next leader.
    fn finish(&self, batch: Vec<Arc<Waiter>>, answers: Vec<Result<Applied>>) {
        for (w, a) in batch.iter().zip(answers) {
            *w.answer() = Some(a);
        }
        let mut q = self.queue();
        for w in &batch {
            // The batch is the front of the queue: only the leader pops, new waiters go
            // to the back.
            if q.waiting.front().is_some_and(|f| Arc::ptr_eq(f, w)) {
                q.waiting.pop_front();
            }
            w.wake.notify_one();
        }
        q.stats.batches += 1;
        q.stats.requests += batch.len() as u64;
        q.stats.largest = q.stats.largest.max(batch.len());
        if let Some(next) = q.waiting.front() {
            next.wake.notify_one();
        }
    }

    /// Applies `batch` in order in one exclusive transaction, each request under its own
    /// savepoint, then `commit`s it. Returns one answer per request; if the transaction
    /// cannot be begun or committed, or a savepoint breaks, every answer is an error and
    /// nothing was applied.
    fn apply_batch(
        &self,
        batch: &[Arc<Waiter>],
        commit: impl FnOnce(Transaction<'_>) -> rusqlite::Result<()>,
    ) -> Vec<Result<Applied>> {
        let all_fail = |e: LedgerError| batch.iter().map(|_| Err(batch_error(&e))).collect();
        let mut conn = self.lock();
        let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Exclusive) {
            Ok(tx) => tx,
            Err(e) => return all_fail(e.into()),
        };
        let cx = Ctx {
            config: &self.config,
            network_id: &self.network_id,
            signer: &self.signer,
        };
        let mut answers = Vec::with_capacity(batch.len());
        for w in batch {
            match apply_one(&mut tx, &cx, w) {
                Ok(answer) => answers.push(answer),
                // The transaction itself is broken: `tx` is dropped (rolled back).
                Err(e) => return all_fail(e),
            }
        }
        match commit(tx) {
            // Durable now: only from here on may a caller learn of its event.
            Ok(()) => answers,
            // A failed COMMIT leaves the transaction to the dropped `Transaction`, which
            // rolls it back.
            Err(e) => all_fail(e.into()),
        }
    }

    /// Runs `f` in a read transaction (one consistent view of the file).
    fn read<T>(&self, f: impl FnOnce(&SqlStore<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        f(&SqlStore { conn: &tx })
    }
}

struct SqlStore<'a> {
    conn: &'a Connection,
}

impl SqlStore<'_> {
    fn withdrawals_where(
        &self,
        clause: &str,
        arg: &dyn rusqlite::ToSql,
    ) -> Result<Vec<Withdrawal>> {
        let sql = format!(
            "SELECT id, restaker, asset, amount, claimable_at_ms FROM withdrawals WHERE {clause} ORDER BY id"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([arg], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, restaker, asset, amount, at) = row?;
            out.push(Withdrawal {
                id: u64::try_from(id).map_err(|_| LedgerError::Corrupt("negative id".into()))?,
                restaker: key(&restaker)?,
                asset,
                amount: dec(&amount, "withdrawal amount")?,
                claimable_at_ms: dec(&at, "claimable_at_ms")?,
            });
        }
        Ok(out)
    }

    fn disputes_where(
        &self,
        clause: &str,
        arg: &dyn rusqlite::ToSql,
    ) -> Result<Vec<DisputeRecord>> {
        let sql = format!(
            "SELECT id, challenger, asset, bond, locked, opened_seq, opened_at_ms, evidence_digest, \
             verdict, closed_seq, closed_at_ms, report FROM disputes WHERE {clause} ORDER BY id"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        type Row = (
            String,
            String,
            String,
            String,
            String,
            i64,
            String,
            String,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<String>,
        );
        let rows = stmt.query_map([arg], |r| {
            Ok::<Row, rusqlite::Error>((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
            ))
        })?;
        let seq = |v: i64| {
            u64::try_from(v).map_err(|_| LedgerError::Corrupt("negative dispute seq".into()))
        };
        let mut out = Vec::new();
        for row in rows {
            let (id, ch, asset, bond, locked, oseq, oat, digest, verdict, cseq, cat, report) = row?;
            let closed = match (verdict, cseq, cat) {
                (None, None, None) => None,
                (Some(v), Some(cseq), Some(cat)) => Some(DisputeClosed {
                    verdict: verdict_from_name(&v).ok_or_else(|| {
                        LedgerError::Corrupt(format!("dispute {id}: verdict {v:?}"))
                    })?,
                    seq: seq(cseq)?,
                    at_ms: dec(&cat, "closed_at_ms")?,
                    report,
                }),
                _ => {
                    return Err(LedgerError::Corrupt(format!(
                        "dispute {id}: half a verdict"
                    )))
                }
            };
            out.push(DisputeRecord {
                challenger: key(&ch)?,
                asset,
                bond: dec(&bond, "bond")?,
                locked: dec(&locked, "locked")?,
                opened_seq: seq(oseq)?,
                opened_at_ms: dec(&oat, "opened_at_ms")?,
                evidence: digest,
                closed,
                id,
            });
        }
        Ok(out)
    }

    fn all_pairs(&self, sql: &str) -> Result<Vec<(String, String)>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn operators_where(
        &self,
        clause: &str,
        arg: &dyn rusqlite::ToSql,
    ) -> Result<Vec<(Key, OperatorState)>> {
        let sql = format!(
            "SELECT key, peer_key, magnitude_ppm, pending_magnitude_ppm, pending_effective_at_ms, jailed \
             FROM operators WHERE {clause} ORDER BY key"
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map([arg], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, Option<u32>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, bool>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (k, peer, magnitude_ppm, pm, pat, jailed) = row?;
            let pending = match (pm, pat) {
                (Some(m), Some(at)) => Some(PendingDeallocation {
                    magnitude_ppm: m,
                    effective_at_ms: dec(&at, "pending_effective_at_ms")?,
                }),
                (None, None) => None,
                _ => {
                    return Err(LedgerError::Corrupt(format!(
                        "operator {k}: half a pending deallocation"
                    )))
                }
            };
            out.push((
                key(&k)?,
                OperatorState {
                    peer_key: key(&peer)?,
                    magnitude_ppm,
                    pending,
                    jailed,
                },
            ));
        }
        Ok(out)
    }
}

impl Store for SqlStore<'_> {
    fn asset(&self, name: &str) -> Result<Option<AssetState>> {
        let row: Option<(String, String)> = self
            .conn
            .prepare_cached("SELECT price_per_unit, total FROM assets WHERE name = ?1")?
            .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        row.map(|(p, t)| {
            Ok(AssetState {
                price_per_unit: dec(&p, "price")?,
                total: dec(&t, "asset total")?,
            })
        })
        .transpose()
    }
    fn put_asset(&mut self, name: &str, asset: &AssetState) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO assets (name, price_per_unit, total) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                name,
                asset.price_per_unit.to_string(),
                asset.total.to_string()
            ])?;
        Ok(())
    }
    fn balance(&self, who: &Key, asset: &str) -> Result<u128> {
        let row: Option<String> = self
            .conn
            .prepare_cached("SELECT amount FROM balances WHERE restaker = ?1 AND asset = ?2")?
            .query_row(params![who.to_hex(), asset], |r| r.get(0))
            .optional()?;
        row.map_or(Ok(0), |s| dec(&s, "balance"))
    }
    fn set_balance(&mut self, who: &Key, asset: &str, amount: u128) -> Result<()> {
        if amount == 0 {
            self.conn
                .prepare_cached("DELETE FROM balances WHERE restaker = ?1 AND asset = ?2")?
                .execute(params![who.to_hex(), asset])?;
        } else {
            self.conn
                .prepare_cached(
                    "INSERT OR REPLACE INTO balances (restaker, asset, amount) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![who.to_hex(), asset, amount.to_string()])?;
        }
        Ok(())
    }
    fn balances_of(&self, who: &Key) -> Result<Vec<(String, u128)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT asset, amount FROM balances WHERE restaker = ?1 ORDER BY asset",
        )?;
        let rows = stmt.query_map([who.to_hex()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (a, v) = row?;
            out.push((a, dec(&v, "balance")?));
        }
        Ok(out)
    }
    fn delegation(&self, who: &Key) -> Result<Option<Key>> {
        let row: Option<String> = self
            .conn
            .prepare_cached("SELECT operator FROM delegations WHERE restaker = ?1")?
            .query_row([who.to_hex()], |r| r.get(0))
            .optional()?;
        row.map(|s| key(&s)).transpose()
    }
    fn set_delegation(&mut self, who: &Key, operator: &Key) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO delegations (restaker, operator) VALUES (?1, ?2)",
            )?
            .execute(params![who.to_hex(), operator.to_hex()])?;
        Ok(())
    }
    fn delegators(&self, operator: &Key) -> Result<Vec<Key>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT restaker FROM delegations WHERE operator = ?1 ORDER BY restaker",
        )?;
        let rows = stmt.query_map([operator.to_hex()], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(key(&row?)?);
        }
        Ok(out)
    }
    fn withdrawal(&self, id: u64) -> Result<Option<Withdrawal>> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        Ok(self.withdrawals_where("id = ?1", &id)?.pop())
    }
    fn withdrawals_of(&self, who: &Key) -> Result<Vec<Withdrawal>> {
        self.withdrawals_where("restaker = ?1", &who.to_hex())
    }
    fn insert_withdrawal(
        &mut self,
        who: &Key,
        asset: &str,
        amount: u128,
        claimable_at_ms: u64,
    ) -> Result<u64> {
        self.conn
            .prepare_cached(
                "INSERT INTO withdrawals (restaker, asset, amount, claimable_at_ms) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![who.to_hex(), asset, amount.to_string(), claimable_at_ms.to_string()])?;
        u64::try_from(self.conn.last_insert_rowid())
            .map_err(|_| LedgerError::Corrupt("negative withdrawal id".into()))
    }
    fn set_withdrawal_amount(&mut self, id: u64, amount: u128) -> Result<()> {
        let id = i64::try_from(id).map_err(|_| LedgerError::Corrupt("withdrawal id".into()))?;
        self.conn
            .prepare_cached("UPDATE withdrawals SET amount = ?2 WHERE id = ?1")?
            .execute(params![id, amount.to_string()])?;
        Ok(())
    }
    fn remove_withdrawal(&mut self, id: u64) -> Result<()> {
        let id = i64::try_from(id).map_err(|_| LedgerError::Corrupt("withdrawal id".into()))?;
        self.conn
            .prepare_cached("DELETE FROM withdrawals WHERE id = ?1")?
            .execute([id])?;
        Ok(())
    }
    fn operator(&self, key: &Key) -> Result<Option<OperatorState>> {
        Ok(self
            .operators_where("key = ?1", &key.to_hex())?
            .pop()
            .map(|(_, o)| o))
    }
    fn put_operator(&mut self, key: &Key, op: &OperatorState) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO operators (key, peer_key, magnitude_ppm, pending_magnitude_ppm, \
                 pending_effective_at_ms, jailed) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                key.to_hex(),
                op.peer_key.to_hex(),
                op.magnitude_ppm,
                op.pending.map(|p| p.magnitude_ppm),
                op.pending.map(|p| p.effective_at_ms.to_string()),
                op.jailed,
            ])?;
        Ok(())
    }
    fn nonce(&self, actor: &Key) -> Result<Option<u64>> {
        let row: Option<String> = self
            .conn
            .prepare_cached("SELECT nonce FROM nonces WHERE actor = ?1")?
            .query_row([actor.to_hex()], |r| r.get(0))
            .optional()?;
        row.map(|s| dec(&s, "nonce")).transpose()
    }
    fn set_nonce(&mut self, actor: &Key, nonce: u64) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO nonces (actor, nonce) VALUES (?1, ?2)")?
            .execute(params![actor.to_hex(), nonce.to_string()])?;
        Ok(())
    }
    fn offence(&self, id: &str) -> Result<Option<u64>> {
        let row: Option<i64> = self
            .conn
            .prepare_cached("SELECT event_seq FROM offences WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?;
        row.map(|seq| {
            u64::try_from(seq).map_err(|_| LedgerError::Corrupt("negative offence seq".into()))
        })
        .transpose()
    }
    fn insert_offence(&mut self, id: &str, seq: u64) -> Result<()> {
        let seq = i64::try_from(seq).map_err(|_| LedgerError::Overflow("event seq"))?;
        // No OR REPLACE: a duplicate is a broken invariant and must fail the transaction.
        self.conn
            .prepare_cached("INSERT INTO offences (id, event_seq) VALUES (?1, ?2)")?
            .execute(params![id, seq])?;
        Ok(())
    }
    fn dispute(&self, id: &str) -> Result<Option<DisputeRecord>> {
        Ok(self.disputes_where("id = ?1", &id)?.pop())
    }
    fn open_disputes_of(&self, who: &Key) -> Result<Vec<DisputeRecord>> {
        self.disputes_where("challenger = ?1 AND verdict IS NULL", &who.to_hex())
    }
    fn open_disputes(&self) -> Result<Vec<DisputeRecord>> {
        self.disputes_where("verdict IS NULL AND 1 = ?1", &1)
    }
    fn dispute_evidence(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT evidence FROM disputes WHERE id = ?1")?
            .query_row([id], |r| r.get(0))
            .optional()?)
    }
    fn insert_dispute(&mut self, d: &DisputeRecord, evidence: &[u8]) -> Result<()> {
        let seq = i64::try_from(d.opened_seq).map_err(|_| LedgerError::Overflow("event seq"))?;
        // No OR REPLACE: a duplicate id is a broken invariant and must fail the transaction.
        self.conn
            .prepare_cached(
                "INSERT INTO disputes (id, challenger, asset, bond, locked, opened_seq, \
                 opened_at_ms, evidence_digest, evidence) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                d.id,
                d.challenger.to_hex(),
                d.asset,
                d.bond.to_string(),
                d.locked.to_string(),
                seq,
                d.opened_at_ms.to_string(),
                d.evidence,
                evidence,
            ])?;
        if d.closed.is_some() {
            self.update_dispute(d)?;
        }
        Ok(())
    }
    fn update_dispute(&mut self, d: &DisputeRecord) -> Result<()> {
        let verdict = d.closed.as_ref().map(|c| verdict_name(c.verdict));
        let cseq = d
            .closed
            .as_ref()
            .map(|c| i64::try_from(c.seq).map_err(|_| LedgerError::Overflow("event seq")))
            .transpose()?;
        let n = self
            .conn
            .prepare_cached(
                "UPDATE disputes SET locked = ?2, verdict = ?3, closed_seq = ?4, \
                 closed_at_ms = ?5, report = ?6 WHERE id = ?1",
            )?
            .execute(params![
                d.id,
                d.locked.to_string(),
                verdict,
                cseq,
                d.closed.as_ref().map(|c| c.at_ms.to_string()),
                d.closed.as_ref().and_then(|c| c.report.clone()),
            ])?;
        if n != 1 {
            return Err(LedgerError::Corrupt(format!(
                "dispute {} is not stored",
                d.id
            )));
        }
        Ok(())
    }
    fn last_event(&self) -> Result<Option<(u64, [u8; 32])>> {
        let row: Option<(i64, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        row.map(|(seq, hash)| {
            let seq =
                u64::try_from(seq).map_err(|_| LedgerError::Corrupt("negative seq".into()))?;
            let hash = <[u8; 32]>::try_from(hash.as_slice())
                .map_err(|_| LedgerError::Corrupt(format!("event {seq}: hash is not 32 bytes")))?;
            Ok((seq, hash))
        })
        .transpose()
    }
    fn append_event(&mut self, event: &Event) -> Result<()> {
        let seq = i64::try_from(event.seq).map_err(|_| LedgerError::Overflow("event seq"))?;
        let text = serde_json::to_string(event)
            .map_err(|e| LedgerError::Corrupt(format!("event {seq}: {e}")))?;
        self.conn
            .prepare_cached("INSERT INTO events (seq, hash, event) VALUES (?1, ?2, ?3)")?
            .execute(params![seq, event.hash.as_slice(), text])?;
        Ok(())
    }
    fn events_from(&self, seq: u64, limit: usize) -> Result<Vec<Event>> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT event FROM events WHERE seq >= ?1 ORDER BY seq LIMIT ?2")?;
        let rows = stmt.query_map(params![seq, limit], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            let text = row?;
            out.push(
                serde_json::from_str(&text)
                    .map_err(|e| LedgerError::Corrupt(format!("stored event: {e}")))?,
            );
        }
        Ok(out)
    }
    fn snapshot(&self) -> Result<Snapshot> {
        let mut snap = Snapshot::default();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM assets ORDER BY name")?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        for name in names {
            if let Some(a) = self.asset(&name)? {
                snap.assets.insert(name, a);
            }
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT restaker, asset, amount FROM balances")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (k, a, v) = row?;
            snap.balances.insert((key(&k)?, a), dec(&v, "balance")?);
        }
        for (r, o) in self.all_pairs("SELECT restaker, operator FROM delegations")? {
            snap.delegations.insert(key(&r)?, key(&o)?);
        }
        for w in self.withdrawals_where("1 = ?1", &1)? {
            snap.withdrawals.insert(w.id, w);
        }
        snap.operators = self
            .operators_where("1 = ?1", &1)?
            .into_iter()
            .collect::<BTreeMap<_, _>>();
        for (a, n) in self.all_pairs("SELECT actor, nonce FROM nonces")? {
            snap.nonces.insert(key(&a)?, dec(&n, "nonce")?);
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, event_seq FROM offences")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (id, seq) = row?;
            let seq = u64::try_from(seq).map_err(|_| LedgerError::Corrupt("offence seq".into()))?;
            snap.offences.insert(id, seq);
        }
        for d in self.disputes_where("1 = ?1", &1)? {
            snap.disputes.insert(d.id.clone(), d);
        }
        let count: i64 = self
            .conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
        snap.event_count =
            u64::try_from(count).map_err(|_| LedgerError::Corrupt("event count".into()))?;
        snap.last_hash = self.last_event()?.map(|(_, h)| h);
        Ok(snap)
    }
}

/// One request of a batch under its own savepoint: `Ok(answer)` when the request was
/// applied (savepoint released) or refused (rolled back to the savepoint, so nothing it did
/// is kept); `Err` when the savepoint machinery failed, which breaks the whole batch.
fn apply_one(tx: &mut Transaction<'_>, cx: &Ctx<'_>, w: &Waiter) -> Result<Result<Applied>> {
    let sp = tx.savepoint()?;
    match apply_request(
        &mut SqlStore { conn: &sp },
        cx,
        &w.request,
        &w.attachment,
        w.now_ms,
    ) {
        Ok(applied) => {
            sp.commit()?;
            Ok(Ok(applied))
        }
        Err(refused) => {
            // Rolls back to the savepoint and releases it.
            sp.finish()?;
            // Some SQLite errors (a full disk, I/O) roll back the whole transaction, taking
            // the earlier requests of the batch with it; then no answer but an error is true.
            if tx.is_autocommit() {
                return Err(refused);
            }
            Ok(Err(refused))
        }
    }
}

fn verdict_name(v: DisputeVerdict) -> &'static str {
    match v {
        DisputeVerdict::Slashed => "slashed",
        DisputeVerdict::AlreadySlashed => "already_slashed",
        DisputeVerdict::Dismissed => "dismissed",
        DisputeVerdict::Void => "void",
    }
}

fn verdict_from_name(v: &str) -> Option<DisputeVerdict> {
    [
        DisputeVerdict::Slashed,
        DisputeVerdict::AlreadySlashed,
        DisputeVerdict::Dismissed,
        DisputeVerdict::Void,
    ]
    .into_iter()
    .find(|x| verdict_name(*x) == v)
}

impl CollateralLedger for SqliteLedger {
    fn config(&self) -> &LedgerConfig {
        &self.config
    }
    fn verifier_key(&self) -> Key {
        Key::of(&self.signer)
    }
    fn apply_with(
        &self,
        request: &SignedRequest,
        attachment: &[u8],
        now_ms: u64,
    ) -> Result<Applied> {
        self.submit(request, attachment, now_ms)
    }
    fn dispute(&self, id: &str) -> Result<Option<DisputeRecord>> {
        self.read(|s| s.dispute(id))
    }
    fn dispute_evidence(&self, id: &str) -> Result<Option<Vec<u8>>> {
        self.read(|s| s.dispute_evidence(id))
    }
    fn open_disputes(&self) -> Result<Vec<DisputeRecord>> {
        self.read(|s| s.open_disputes())
    }
    fn locked(&self, restaker: &Key, asset: &str) -> Result<u128> {
        self.read(|s| super::locked(s, restaker, asset))
    }
    fn balance(&self, restaker: &Key, asset: &str) -> Result<u128> {
        self.read(|s| s.balance(restaker, asset))
    }
    fn withdrawals(&self, restaker: &Key) -> Result<Vec<Withdrawal>> {
        self.read(|s| s.withdrawals_of(restaker))
    }
    fn delegation(&self, restaker: &Key) -> Result<Option<Key>> {
        self.read(|s| s.delegation(restaker))
    }
    fn operator(&self, operator: &Key) -> Result<Option<OperatorState>> {
        self.read(|s| s.operator(operator))
    }
    fn last_nonce(&self, actor: &Key) -> Result<Option<u64>> {
        self.read(|s| s.nonce(actor))
    }
    fn slashable_stake(&self, operator: &Key, now_ms: u64) -> Result<BTreeMap<String, u128>> {
        self.read(|s| super::slashable_stake(s, operator, now_ms))
    }
    fn is_jailed(&self, operator: &Key, now_ms: u64) -> Result<bool> {
        self.read(|s| super::is_jailed(s, &self.config, operator, now_ms))
    }
    fn events_from(&self, seq: u64, limit: usize) -> Result<Vec<Event>> {
        self.read(|s| s.events_from(seq, limit))
    }
    fn snapshot(&self) -> Result<Snapshot> {
        self.read(|s| s.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Outcome;
    use crate::requests::RequestBody;

    const NET: [u8; 32] = [7; 32];

    fn sk(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn req(who: u8, nonce: u64, body: RequestBody) -> SignedRequest {
        SignedRequest::sign(&NET, &sk(who), nonce, body).expect("sign")
    }

    fn deposit(amount: u128) -> RequestBody {
        RequestBody::Deposit {
            asset: "eth".into(),
            amount,
        }
    }

    fn withdraw(amount: u128) -> RequestBody {
        RequestBody::QueueWithdrawal {
            asset: "eth".into(),
            amount,
        }
    }

    /// A ledger file with `eth` registered by the admin (`sk(1)`).
    fn ledger(dir: &Path) -> SqliteLedger {
        let config = LedgerConfig::new(10, 20, 0).expect("config");
        let l = SqliteLedger::open(dir.join("ledger.sqlite"), config, NET, sk(1)).expect("open");
        let asset = RequestBody::RegisterAsset {
            asset: "eth".into(),
            price_per_unit: 1,
        };
        l.apply(&req(1, 1, asset), 0).expect("register");
        l
    }

    fn reopen(dir: &Path) -> SqliteLedger {
        let config = LedgerConfig::new(10, 20, 0).expect("config");
        SqliteLedger::open(dir.join("ledger.sqlite"), config, NET, sk(1)).expect("reopen")
    }

    #[test]
    fn commits_are_synced_to_a_write_ahead_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = ledger(dir.path());
        let conn = l.lock();
        // 2 = FULL: the log is synced before a COMMIT returns.
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .expect("synchronous");
        assert_eq!(sync, 2);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_refused_request_inside_a_batch_is_undone_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = ledger(dir.path());
        let (alice, bob) = (Key::of(&sk(10)), Key::of(&sk(11)));
        let batch = [
            Waiter::new(&req(10, 1, deposit(100)), &[], 1),
            // Replays the nonce the request before it used in this same transaction.
            Waiter::new(&req(10, 1, deposit(5)), &[], 1),
            // Sees the deposit two savepoints up.
            Waiter::new(&req(10, 2, withdraw(100)), &[], 1),
            // Sets bob's nonce, then fails: the nonce must go with the rest.
            Waiter::new(&req(11, 5, withdraw(1)), &[], 1),
            Waiter::new(&req(11, 2, deposit(7)), &[], 1),
        ];
        let answers = l.apply_batch(&batch, |tx| tx.commit());
        assert_eq!(answers.len(), 5);
        assert!(matches!(&answers[0], Ok(a) if a.outcome == Outcome::Done && a.event.seq == 1));
        assert!(
            matches!(&answers[1], Err(LedgerError::ReplayedNonce { last: 1, .. })),
            "{:?}",
            answers[1]
        );
        assert!(matches!(&answers[2],
            Ok(a) if matches!(a.outcome, Outcome::WithdrawalQueued { id: 1, .. }) && a.event.seq == 2));
        assert!(
            matches!(&answers[3], Err(LedgerError::UnknownRestaker(k)) if *k == bob),
            "{:?}",
            answers[3]
        );
        assert!(matches!(&answers[4], Ok(a) if a.event.seq == 3));
        let snap = l.snapshot().expect("snapshot");
        assert_eq!(snap.event_count, 4);
        assert_eq!(snap.nonces[&alice], 2);
        assert_eq!(
            snap.nonces[&bob], 2,
            "the refused request's nonce 5 was kept"
        );
        assert_eq!(snap.balances.get(&(alice, "eth".to_owned())), None);
        assert_eq!(snap.balances[&(bob, "eth".to_owned())], 7);
        assert_eq!(snap.withdrawals[&1].amount, 100);
        assert_eq!(snap.assets["eth"].total, 107);
        let events = l.events_from(0, 10).expect("events");
        crate::events::verify_chain(&events, &l.verifier_key()).expect("chain");
        for (e, a) in events[1..]
            .iter()
            .zip([&answers[0], &answers[2], &answers[4]])
        {
            assert_eq!(Some(e), a.as_ref().ok().map(|a| &a.event));
        }
        drop(l);
        assert_eq!(reopen(dir.path()).snapshot().expect("snapshot"), snap);
    }

    #[test]
    fn a_failed_commit_fails_every_request_and_applies_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = ledger(dir.path());
        let before = l.snapshot().expect("snapshot");
        let reqs = [
            req(10, 1, deposit(100)),
            req(11, 1, deposit(5)),
            req(10, 1, deposit(1)),
            req(10, 2, withdraw(50)),
        ];
        let batch: Vec<_> = reqs.iter().map(|r| Waiter::new(r, &[], 1)).collect();
        let answers = l.apply_batch(&batch, |tx| {
            // What a failed COMMIT leaves: a transaction that is dropped, so rolled back.
            drop(tx);
            Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR),
                Some("injected".into()),
            ))
        });
        assert_eq!(answers.len(), reqs.len());
        for a in &answers {
            match a {
                Err(e @ LedgerError::Storage(_)) => {
                    assert!(e.to_string().contains("injected"), "{e}")
                }
                other => panic!("expected the commit's error, got {other:?}"),
            }
        }
        assert_eq!(l.snapshot().expect("snapshot"), before);
        drop(l);
        let l = reopen(dir.path());
        assert_eq!(l.snapshot().expect("snapshot"), before);
        // Nothing was consumed: the same signed requests go through afterwards.
        for (r, ok) in reqs.iter().zip([true, true, false, true]) {
            assert_eq!(l.apply(r, 1).is_ok(), ok, "{}", r.nonce);
        }
        assert_eq!(l.snapshot().expect("snapshot").event_count, 4);
    }
}
