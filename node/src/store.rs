//! The job database: every accepted job, its input, state, output and receipt, so that
//! jobs survive restarts. Signing history lives apart, in [`crate::signer`].

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use vouch_proto::{JobId, JobSpec, SignedReceipt};

const SCHEMA_VERSION: i64 = 4;

/// Schema 1: jobs with input, output, stderr and receipt.
const MIGRATION_1: &str = "BEGIN EXCLUSIVE;
     CREATE TABLE IF NOT EXISTS jobs (
         job_id        BLOB PRIMARY KEY CHECK (length(job_id) = 32),
         spec          TEXT NOT NULL,
         input         BLOB NOT NULL,
         status        TEXT NOT NULL,
         reason        TEXT,
         exit_code     INTEGER,
         output        BLOB,
         stderr        BLOB,
         receipt       BLOB,
         attempts      INTEGER NOT NULL DEFAULT 0,
         created_at_ms INTEGER NOT NULL,
         updated_at_ms INTEGER NOT NULL
     );
     CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status);
     PRAGMA user_version = 1;
     COMMIT;";

/// Schema 2: trace leaves (u16 big-endian length ‖ bytes, repeated).
const MIGRATION_2: &str = "BEGIN EXCLUSIVE;
     ALTER TABLE jobs ADD COLUMN trace BLOB;
     PRAGMA user_version = 2;
     COMMIT;";

/// Schema 3: the peer-to-peer network. `blobs` indexes what this node serves by digest
/// (specs, inputs, outputs; filled for older jobs on migration); `gossip_receipts` holds
/// every receipt seen on the network; `replicas` and `replica_msgs` hold replicated jobs
/// and their commit-reveal messages.
const MIGRATION_3: &str = "BEGIN EXCLUSIVE;
     CREATE TABLE IF NOT EXISTS blobs (
         digest BLOB PRIMARY KEY CHECK (length(digest) = 32),
         job_id BLOB NOT NULL,
         kind   TEXT NOT NULL CHECK (kind IN ('spec', 'input', 'output', 'trace'))
     );
     CREATE TABLE IF NOT EXISTS gossip_receipts (
         encoded        BLOB PRIMARY KEY,
         job_id         BLOB NOT NULL,
         operator       BLOB NOT NULL,
         sequence       INTEGER NOT NULL,
         received_at_ms INTEGER NOT NULL,
         via            TEXT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS gossip_receipts_job ON gossip_receipts(job_id);
     CREATE TABLE IF NOT EXISTS replicas (
         job_id         BLOB PRIMARY KEY CHECK (length(job_id) = 32),
         announcement   BLOB NOT NULL,
         salt           BLOB,
         commit_msg     BLOB,
         reveal_msg     BLOB,
         revealed       INTEGER NOT NULL DEFAULT 0,
         created_at_ms  INTEGER NOT NULL
     );
     CREATE TABLE IF NOT EXISTS replica_msgs (
         job_id         BLOB NOT NULL,
         operator       BLOB NOT NULL,
         kind           INTEGER NOT NULL,
         data           BLOB NOT NULL,
         received_at_ms INTEGER NOT NULL,
         PRIMARY KEY (job_id, operator, kind, data)
     );
     PRAGMA user_version = 3;
     COMMIT;";

/// A replicated job's input too large for its announcement, kept by the announcing node
/// (which serves it to the replicas by digest, and needs it to dispute a wrong replica);
/// whether its outcome was looked at for disputes; the disputes raised (`disputes.rs`).
const MIGRATION_4: &str = "BEGIN EXCLUSIVE;
     ALTER TABLE replicas ADD COLUMN input BLOB;
     ALTER TABLE replicas ADD COLUMN handed_off INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE IF NOT EXISTS replica_disputes (
         job_id         BLOB NOT NULL,
         operator       BLOB NOT NULL,
         receipt        BLOB NOT NULL,
         dispute        TEXT NOT NULL,
         status         TEXT NOT NULL,
         detail         TEXT NOT NULL,
         attempts       INTEGER NOT NULL DEFAULT 0,
         updated_at_ms  INTEGER NOT NULL,
         PRIMARY KEY (job_id, operator)
     );
     PRAGMA user_version = 4;
     COMMIT;";

/// One row of `replica_disputes`.
#[derive(Debug, Clone)]
pub struct ReplicaDispute {
    /// The replicated job.
    pub job_id: JobId,
    /// The operator whose receipt is disputed.
    pub operator: vouch_proto::OperatorKey,
    /// Its signed receipt (324 bytes).
    pub receipt: Vec<u8>,
    /// The dispute id, 64 hex.
    pub dispute: String,
    /// See `disputes::status`.
    pub status: String,
    /// Why.
    pub detail: String,
    /// Posts attempted.
    pub attempts: u32,
    /// Last change, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

/// A replicated job as this node keeps it.
#[derive(Debug, Clone)]
pub struct ReplicaRow {
    /// The announcement (encoded, kind byte included).
    pub announcement: Vec<u8>,
    /// This node's salt, once it committed.
    pub salt: Option<[u8; 32]>,
    /// This node's encoded commit message, once it committed.
    pub commit_msg: Option<Vec<u8>>,
    /// This node's encoded reveal, kept until it is published.
    pub reveal_msg: Option<Vec<u8>>,
    /// Whether this node has published its reveal.
    pub revealed: bool,
}

/// A commit-reveal message received for a replicated job.
#[derive(Debug, Clone)]
pub struct ReplicaMsg {
    /// Sender.
    pub operator: vouch_proto::OperatorKey,
    /// `vouch_proto::KIND_COMMIT` or `KIND_REVEAL`.
    pub kind: u8,
    /// Encoded message.
    pub data: Vec<u8>,
    /// When this node received it.
    pub received_at_ms: u64,
}

/// A receipt seen on the network.
#[derive(Debug, Clone, Serialize)]
pub struct SeenReceipt {
    /// The receipt's JSON view.
    pub receipt: vouch_proto::ReceiptJson,
    /// When this node received it.
    pub received_at_ms: u64,
    /// The peer it came from (`self` for this node's own).
    pub via: String,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted, waiting for a slot.
    Queued,
    /// Its container is running.
    Running,
    /// It ran to completion (any exit code) and its receipt is signed.
    Succeeded,
    /// It broke a limit, or could not be run or signed; `reason` says which.
    Failed,
}

impl JobStatus {
    fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            _ => return None,
        })
    }

    /// Whether the job will not change any more (unless resubmitted after a failure).
    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Failed)
    }
}

/// One job as stored, without its input and output bytes.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// The job id.
    pub job_id: JobId,
    /// The spec it was accepted with.
    pub spec: JobSpec,
    /// Its state.
    pub status: JobStatus,
    /// Why it failed.
    pub reason: Option<String>,
    /// Exit code, once it ran.
    pub exit_code: Option<i32>,
    /// Output length, once it ran.
    pub output_len: Option<u64>,
    /// The signed receipt, once succeeded.
    pub receipt: Option<SignedReceipt>,
    /// How many times it was started.
    pub attempts: u32,
    /// When it was accepted (ms since epoch).
    pub created_at_ms: u64,
    /// When it last changed (ms since epoch).
    pub updated_at_ms: u64,
}

/// What [`JobStore::insert`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new job.
    New,
    /// The job already existed and is queued, running or succeeded: nothing changed.
    Exists(JobStatus),
    /// The job existed and had failed: it is queued again.
    Requeued,
}

/// SQLite-backed job store.
#[derive(Debug)]
pub struct JobStore {
    conn: Mutex<Connection>,
}

impl JobStore {
    /// Opens (creating, migrating) the job database at `path`.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> rusqlite::Result<Self> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> rusqlite::Result<Self> {
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // A job lost in a crash is at worst re-run; the signing history (FULL) is what
        // keeps a re-run from signing a second, different result.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "job database schema {version} is newer than this vouch-node ({SCHEMA_VERSION})"
            )));
        }
        // Migrations, each in its own exclusive transaction, applied in order on open.
        if version < 1 {
            conn.execute_batch(MIGRATION_1)?;
        }
        if version < 2 {
            conn.execute_batch(MIGRATION_2)?;
        }
        if version < 3 {
            conn.execute_batch(MIGRATION_3)?;
            backfill_blobs(&conn)?;
        }
        if version < 4 {
            conn.execute_batch(MIGRATION_4)?;
            // Specs are now also served under their job id.
            backfill_blobs(&conn)?;
        }
        Ok(JobStore {
            conn: Mutex::new(conn),
        })
    }

    /// What the blob named `digest` is (`spec`, `input`, `output`, `trace`), if indexed.
    pub fn blob_kind(&self, digest: &[u8; 32]) -> rusqlite::Result<Option<String>> {
        self.conn()
            .query_row(
                "SELECT kind FROM blobs WHERE digest = ?1",
                [digest.to_vec()],
                |r| r.get(0),
            )
            .optional()
    }

    /// The bytes with SHA-256 `digest` if this node holds them: a job's canonical spec,
    /// its input, or its output.
    pub fn blob_by_digest(&self, digest: &[u8; 32]) -> rusqlite::Result<Option<Vec<u8>>> {
        let conn = self.conn();
        let hit: Option<(Vec<u8>, String)> = conn
            .query_row(
                "SELECT job_id, kind FROM blobs WHERE digest = ?1",
                [digest.to_vec()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((job_id, kind)) = hit else {
            return Ok(None);
        };
        let bytes: Option<Vec<u8>> = match kind.as_str() {
            "spec" => {
                let spec: Option<String> = conn
                    .query_row("SELECT spec FROM jobs WHERE job_id = ?1", [&job_id], |r| {
                        r.get(0)
                    })
                    .optional()?;
                spec.and_then(|s| serde_json::from_str::<JobSpec>(&s).ok())
                    .and_then(|s| s.canonical_bytes().ok())
            }
            // A job's input, or a replicated job's input kept beside its announcement.
            "input" => conn
                .query_row(
                    "SELECT input FROM jobs WHERE job_id = ?1
                     UNION ALL SELECT input FROM replicas WHERE job_id = ?1 AND input IS NOT NULL
                     LIMIT 1",
                    [&job_id],
                    |r| r.get(0),
                )
                .optional()?,
            "trace" => conn
                .query_row("SELECT trace FROM jobs WHERE job_id = ?1", [&job_id], |r| {
                    r.get::<_, Option<Vec<u8>>>(0)
                })
                .optional()?
                .flatten(),
            _ => conn
                .query_row(
                    "SELECT output FROM jobs WHERE job_id = ?1",
                    [&job_id],
                    |r| r.get::<_, Option<Vec<u8>>>(0),
                )
                .optional()?
                .flatten(),
        };
        // Served bytes are checked by the fetcher; never serve what does not match.
        Ok(bytes.filter(|b| vouch_net::blob_matches(b, digest)))
    }

    /// Records a receipt seen on the network; false when it was already known.
    pub fn record_gossip_receipt(
        &self,
        receipt: &SignedReceipt,
        via: &str,
    ) -> rusqlite::Result<bool> {
        let r = &receipt.receipt;
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO gossip_receipts(encoded, job_id, operator, sequence, received_at_ms, via) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![receipt.encode().to_vec(), r.job_id.0.to_vec(), r.operator.0.to_vec(), r.sequence as i64, now_ms() as i64, via],
        )?;
        Ok(n == 1)
    }

    /// Receipts seen on the network for one job, oldest first.
    pub fn gossip_receipts(&self, job_id: &JobId) -> rusqlite::Result<Vec<SeenReceipt>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT encoded, received_at_ms, via FROM gossip_receipts WHERE job_id = ?1 ORDER BY received_at_ms, rowid",
        )?;
        let rows = stmt.query_map([job_id.0.to_vec()], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = vec![];
        for row in rows {
            let (enc, at, via) = row?;
            if let Ok(sr) = SignedReceipt::decode(&enc) {
                out.push(SeenReceipt {
                    receipt: sr.to_json(),
                    received_at_ms: at as u64,
                    via,
                });
            }
        }
        Ok(out)
    }

    /// Every receipt seen on the network, newest last, at most `limit` (to seed the
    /// network's catch-up log after a restart).
    pub fn recent_gossip_receipts(&self, limit: usize) -> rusqlite::Result<Vec<Vec<u8>>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT encoded FROM (SELECT encoded, rowid AS r FROM gossip_receipts ORDER BY rowid DESC LIMIT ?1) ORDER BY r",
        )?;
        let rows = stmt.query_map([limit as i64], |r| r.get::<_, Vec<u8>>(0))?;
        rows.collect()
    }

    /// Starts tracking a replicated job (announced here or received); false if known.
    ///
    /// `input`, when given, is kept with it and served by digest (the announcing node
    /// passes an input too large to ride in the announcement).
    pub fn insert_replica(
        &self,
        job_id: &JobId,
        announcement: &[u8],
        input: Option<&[u8]>,
    ) -> rusqlite::Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "INSERT OR IGNORE INTO replicas(job_id, announcement, input, created_at_ms) VALUES (?1, ?2, ?3, ?4)",
            params![job_id.0.to_vec(), announcement, input, now_ms() as i64],
        )?;
        if let (1, Some(input)) = (n, input) {
            index_blob(&tx, job_id, "input", input)?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    /// Replicated jobs from the last `since_ms` whose outcome has not been looked at for
    /// disputes yet.
    pub fn replicas_to_hand_off(&self, since_ms: u64) -> rusqlite::Result<Vec<JobId>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT job_id FROM replicas WHERE handed_off = 0 AND created_at_ms >= ?1 ORDER BY created_at_ms",
        )?;
        let rows = st.query_map([since_ms as i64], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for id in rows {
            if let Ok(id) = <[u8; 32]>::try_from(id?.as_slice()) {
                out.push(JobId(id));
            }
        }
        Ok(out)
    }

    /// Records that a replicated job's outcome was looked at, with the disputes it calls
    /// for (each (job, operator) once: a second call adds nothing).
    pub fn hand_off(&self, job_id: &JobId, disputes: &[ReplicaDispute]) -> rusqlite::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for d in disputes {
            tx.execute(
                "INSERT OR IGNORE INTO replica_disputes(job_id, operator, receipt, dispute, status, detail, attempts, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![d.job_id.0.to_vec(), d.operator.0.to_vec(), d.receipt, d.dispute, d.status, d.detail, d.attempts, d.updated_at_ms as i64],
            )?;
        }
        tx.execute(
            "UPDATE replicas SET handed_off = 1 WHERE job_id = ?1",
            [job_id.0.to_vec()],
        )?;
        tx.commit()
    }

    /// Disputes of `job_id`, or every dispute in one of `statuses` when `job_id` is None.
    pub fn replica_disputes(
        &self,
        job_id: Option<&JobId>,
        statuses: &[&str],
    ) -> rusqlite::Result<Vec<ReplicaDispute>> {
        let conn = self.conn();
        let mut st = conn.prepare(
            "SELECT job_id, operator, receipt, dispute, status, detail, attempts, updated_at_ms FROM replica_disputes ORDER BY updated_at_ms",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                ReplicaDispute {
                    job_id: JobId([0; 32]),
                    operator: vouch_proto::OperatorKey([0; 32]),
                    receipt: r.get(2)?,
                    dispute: r.get(3)?,
                    status: r.get(4)?,
                    detail: r.get(5)?,
                    attempts: r.get(6)?,
                    updated_at_ms: r.get::<_, i64>(7)? as u64,
                },
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (job, op, mut d) = row?;
            let (Ok(job), Ok(op)) = (
                <[u8; 32]>::try_from(job.as_slice()),
                <[u8; 32]>::try_from(op.as_slice()),
            ) else {
                continue;
            };
            d.job_id = JobId(job);
            d.operator = vouch_proto::OperatorKey(op);
            let wanted = match job_id {
                Some(j) => *j == d.job_id,
                None => statuses.contains(&d.status.as_str()),
            };
            if wanted {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Updates a dispute's status.
    pub fn set_replica_dispute(
        &self,
        job_id: &JobId,
        operator: &vouch_proto::OperatorKey,
        status: &str,
        detail: &str,
        attempts: u32,
    ) -> rusqlite::Result<()> {
        self.conn().execute(
            "UPDATE replica_disputes SET status = ?3, detail = ?4, attempts = ?5, updated_at_ms = ?6 WHERE job_id = ?1 AND operator = ?2",
            params![job_id.0.to_vec(), operator.0.to_vec(), status, detail, attempts, now_ms() as i64],
        )?;
        Ok(())
    }

    /// The input kept with a replicated job by [`JobStore::insert_replica`], if any.
    pub fn replica_input(&self, job_id: &JobId) -> rusqlite::Result<Option<Vec<u8>>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT input FROM replicas WHERE job_id = ?1",
                [job_id.0.to_vec()],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()?
            .flatten())
    }

    /// A replicated job, if tracked.
    pub fn replica(&self, job_id: &JobId) -> rusqlite::Result<Option<ReplicaRow>> {
        self.conn()
            .query_row(
                "SELECT announcement, salt, commit_msg, reveal_msg, revealed FROM replicas WHERE job_id = ?1",
                [job_id.0.to_vec()],
                |r| {
                    let salt: Option<Vec<u8>> = r.get(1)?;
                    Ok(ReplicaRow {
                        announcement: r.get(0)?,
                        salt: salt.and_then(|s| <[u8; 32]>::try_from(s.as_slice()).ok()),
                        commit_msg: r.get(2)?,
                        reveal_msg: r.get(3)?,
                        revealed: r.get::<_, i64>(4)? != 0,
                    })
                },
            )
            .optional()
    }

    /// Replicated jobs this node committed to and has not revealed yet.
    pub fn unrevealed_replicas(&self) -> rusqlite::Result<Vec<JobId>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT job_id FROM replicas WHERE commit_msg IS NOT NULL AND revealed = 0")?;
        let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = vec![];
        for row in rows {
            if let Ok(id) = <[u8; 32]>::try_from(row?.as_slice()) {
                out.push(JobId(id));
            }
        }
        Ok(out)
    }

    /// Records this node's commitment (salt, commit and the reveal it will publish) before
    /// the commit is published, so a restart reveals the same value.
    pub fn set_replica_commit(
        &self,
        job_id: &JobId,
        salt: &[u8; 32],
        commit_msg: &[u8],
        reveal_msg: &[u8],
    ) -> rusqlite::Result<()> {
        let conn = self.conn();
        conn.pragma_update(None, "synchronous", "FULL")?;
        let written = conn.execute(
            "UPDATE replicas SET salt = ?2, commit_msg = ?3, reveal_msg = ?4 WHERE job_id = ?1 AND commit_msg IS NULL",
            params![job_id.0.to_vec(), salt.to_vec(), commit_msg, reveal_msg],
        );
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        written?;
        Ok(())
    }

    /// Marks this node's reveal published.
    pub fn set_replica_revealed(&self, job_id: &JobId) -> rusqlite::Result<()> {
        self.conn().execute(
            "UPDATE replicas SET revealed = 1 WHERE job_id = ?1",
            [job_id.0.to_vec()],
        )?;
        Ok(())
    }

    /// Records a commit or reveal received (or sent) for a job; false when already known.
    pub fn record_replica_msg(
        &self,
        job_id: &JobId,
        operator: &vouch_proto::OperatorKey,
        kind: u8,
        data: &[u8],
    ) -> rusqlite::Result<bool> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO replica_msgs(job_id, operator, kind, data, received_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![job_id.0.to_vec(), operator.0.to_vec(), kind as i64, data, now_ms() as i64],
        )?;
        Ok(n == 1)
    }

    /// Commit-reveal messages of a job, in arrival order.
    pub fn replica_msgs(&self, job_id: &JobId) -> rusqlite::Result<Vec<ReplicaMsg>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT operator, kind, data, received_at_ms FROM replica_msgs WHERE job_id = ?1 ORDER BY rowid",
        )?;
        let rows = stmt.query_map([job_id.0.to_vec()], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = vec![];
        for row in rows {
            let (op, kind, data, at) = row?;
            if let Ok(op) = <[u8; 32]>::try_from(op.as_slice()) {
                out.push(ReplicaMsg {
                    operator: vouch_proto::OperatorKey(op),
                    kind: kind as u8,
                    data,
                    received_at_ms: at as u64,
                });
            }
        }
        Ok(out)
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a new job as queued; an existing failed job is queued again.
    pub fn insert(
        &self,
        job_id: &JobId,
        spec: &JobSpec,
        input: &[u8],
    ) -> rusqlite::Result<Inserted> {
        self.insert_as(job_id, spec, input, false)
    }

    /// Like [`Self::insert`], but a new (or failed) job goes straight to `running` with its
    /// attempt counted: for jobs the caller runs at once, in one write instead of two.
    pub fn insert_running(
        &self,
        job_id: &JobId,
        spec: &JobSpec,
        input: &[u8],
    ) -> rusqlite::Result<Inserted> {
        self.insert_as(job_id, spec, input, true)
    }

    fn insert_as(
        &self,
        job_id: &JobId,
        spec: &JobSpec,
        input: &[u8],
        running: bool,
    ) -> rusqlite::Result<Inserted> {
        let (status, attempts) = if running {
            ("running", 1)
        } else {
            ("queued", 0)
        };
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<String> = tx
            .query_row(
                "SELECT status FROM jobs WHERE job_id = ?1",
                [job_id.0.to_vec()],
                |r| r.get(0),
            )
            .optional()?;
        let now = now_ms() as i64;
        let result = match existing.as_deref().and_then(JobStatus::parse) {
            None => {
                let spec_json = serde_json::to_string(spec)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                tx.execute(
                    "INSERT INTO jobs(job_id, spec, input, status, attempts, created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    params![job_id.0.to_vec(), spec_json, input, status, attempts, now],
                )?;
                index_blobs(&tx, job_id, spec, input)?;
                Inserted::New
            }
            Some(JobStatus::Failed) => {
                tx.execute(
                    "UPDATE jobs SET status = ?3, reason = NULL, attempts = attempts + ?4, updated_at_ms = ?2 WHERE job_id = ?1",
                    params![job_id.0.to_vec(), now, status, attempts],
                )?;
                Inserted::Requeued
            }
            Some(s) => Inserted::Exists(s),
        };
        tx.commit()?;
        Ok(result)
    }

    /// Removes a job that was inserted but could not be queued.
    pub fn forget_queued(&self, job_id: &JobId) -> rusqlite::Result<()> {
        self.conn().execute(
            "DELETE FROM jobs WHERE job_id = ?1 AND status = 'queued' AND attempts = 0",
            [job_id.0.to_vec()],
        )?;
        Ok(())
    }

    /// Marks a job running and counts the attempt.
    pub fn mark_running(&self, job_id: &JobId) -> rusqlite::Result<()> {
        self.conn().execute(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, updated_at_ms = ?2 WHERE job_id = ?1",
            params![job_id.0.to_vec(), now_ms() as i64],
        )?;
        Ok(())
    }

    /// Records a signed result.
    pub fn mark_succeeded(
        &self,
        job_id: &JobId,
        exit_code: i32,
        output: &[u8],
        stderr: &[u8],
        trace: &[Vec<u8>],
        receipt: &SignedReceipt,
    ) -> rusqlite::Result<()> {
        let mut packed = Vec::with_capacity(trace.iter().map(|l| l.len() + 2).sum());
        for leaf in trace {
            // Leaves are at most MAX_LEAF_BYTES (256), checked where they are parsed.
            packed.extend_from_slice(&(leaf.len() as u16).to_be_bytes());
            packed.extend_from_slice(leaf);
        }
        let conn = self.conn();
        // A signed receipt may already be on its way to the client: the output it binds
        // must survive a power loss (a lost output would look like withholding). So this
        // write, unlike the others, waits for the disk.
        conn.pragma_update(None, "synchronous", "FULL")?;
        // One transaction, so one wait for the disk.
        let written = conn.unchecked_transaction().and_then(|tx| {
            tx.execute(
                "UPDATE jobs SET status = 'succeeded', reason = NULL, exit_code = ?2, output = ?3, stderr = ?4, receipt = ?5, trace = ?6, updated_at_ms = ?7 WHERE job_id = ?1",
                params![job_id.0.to_vec(), exit_code, output, stderr, receipt.encode().to_vec(), packed, now_ms() as i64],
            )?;
            index_blob(&tx, job_id, "output", output)?;
            index_trace(&tx, job_id, trace)?;
            tx.commit()
        });
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        written?;
        Ok(())
    }

    /// Trace leaves of a job that ran (empty when untraced).
    pub fn trace(&self, job_id: &JobId) -> rusqlite::Result<Option<Vec<Vec<u8>>>> {
        let Some(packed) = self.blob("trace", job_id)? else {
            return Ok(None);
        };
        Ok(Some(unpack_trace(&packed)))
    }

    /// Records a failure and its reason.
    pub fn mark_failed(&self, job_id: &JobId, reason: &str, stderr: &[u8]) -> rusqlite::Result<()> {
        self.conn().execute(
            "UPDATE jobs SET status = 'failed', reason = ?2, stderr = ?3, updated_at_ms = ?4 WHERE job_id = ?1",
            params![job_id.0.to_vec(), reason, stderr, now_ms() as i64],
        )?;
        Ok(())
    }

    /// Puts a running job back in the queue (after a restart).
    pub fn mark_queued(&self, job_id: &JobId) -> rusqlite::Result<()> {
        self.conn().execute(
            "UPDATE jobs SET status = 'queued', updated_at_ms = ?2 WHERE job_id = ?1",
            params![job_id.0.to_vec(), now_ms() as i64],
        )?;
        Ok(())
    }

    /// One job.
    pub fn get(&self, job_id: &JobId) -> rusqlite::Result<Option<JobRecord>> {
        self.conn()
            .query_row(
                "SELECT job_id, spec, status, reason, exit_code, length(output), receipt, attempts, created_at_ms, updated_at_ms FROM jobs WHERE job_id = ?1",
                [job_id.0.to_vec()],
                row_to_record,
            )
            .optional()
    }

    /// Jobs in the given states, oldest first.
    pub fn with_status(&self, statuses: &[JobStatus]) -> rusqlite::Result<Vec<JobRecord>> {
        let conn = self.conn();
        let mut out = vec![];
        let mut stmt = conn.prepare(
            "SELECT job_id, spec, status, reason, exit_code, length(output), receipt, attempts, created_at_ms, updated_at_ms FROM jobs WHERE status = ?1 ORDER BY created_at_ms",
        )?;
        for s in statuses {
            for r in stmt.query_map([s.as_str()], row_to_record)? {
                out.push(r?);
            }
        }
        Ok(out)
    }

    /// Input bytes of a job.
    pub fn input(&self, job_id: &JobId) -> rusqlite::Result<Option<Vec<u8>>> {
        self.blob("input", job_id)
    }

    /// Output bytes of a job that ran.
    pub fn output(&self, job_id: &JobId) -> rusqlite::Result<Option<Vec<u8>>> {
        self.blob("output", job_id)
    }

    /// Captured stderr (capped) of a job that ran.
    pub fn stderr(&self, job_id: &JobId) -> rusqlite::Result<Option<Vec<u8>>> {
        self.blob("stderr", job_id)
    }

    fn blob(&self, column: &str, job_id: &JobId) -> rusqlite::Result<Option<Vec<u8>>> {
        // `column` is one of the literals in this file, never user input.
        let sql = format!("SELECT {column} FROM jobs WHERE job_id = ?1");
        self.conn()
            .query_row(&sql, [job_id.0.to_vec()], |r| {
                r.get::<_, Option<Vec<u8>>>(0)
            })
            .optional()
            .map(Option::flatten)
    }

    /// Number of jobs in each state.
    pub fn counts(&self) -> rusqlite::Result<Vec<(JobStatus, u64)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = vec![];
        for r in rows {
            let (s, n) = r?;
            if let Some(s) = JobStatus::parse(&s) {
                out.push((s, n as u64));
            }
        }
        Ok(out)
    }
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRecord> {
    let conv = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Blob, e.into())
    };
    let id: Vec<u8> = r.get(0)?;
    let job_id = JobId(
        id.as_slice()
            .try_into()
            .map_err(|_| conv(0, "job id length".into()))?,
    );
    let spec_json: String = r.get(1)?;
    let spec = JobSpec::from_json(spec_json.as_bytes()).map_err(|e| conv(1, e.to_string()))?;
    let status: String = r.get(2)?;
    let status = JobStatus::parse(&status).ok_or_else(|| conv(2, format!("status {status}")))?;
    let receipt: Option<Vec<u8>> = r.get(6)?;
    let receipt = receipt
        .map(|b| SignedReceipt::decode(&b))
        .transpose()
        .map_err(|e| conv(6, e.to_string()))?;
    Ok(JobRecord {
        job_id,
        spec,
        status,
        reason: r.get(3)?,
        exit_code: r.get(4)?,
        output_len: r.get::<_, Option<i64>>(5)?.map(|n| n as u64),
        receipt,
        attempts: r.get::<_, i64>(7)? as u32,
        created_at_ms: r.get::<_, i64>(8)? as u64,
        updated_at_ms: r.get::<_, i64>(9)? as u64,
    })
}

/// Indexes the spec, input and output of every job stored before schema 3.
fn backfill_blobs(conn: &Connection) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT job_id, spec, input, output, trace FROM jobs")?;
    type Row = (Vec<u8>, String, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    for (job_id, spec, input, output, trace) in rows {
        let id = match <[u8; 32]>::try_from(job_id.as_slice()) {
            Ok(id) => JobId(id),
            Err(_) => continue,
        };
        if let Ok(spec) = serde_json::from_str::<JobSpec>(&spec) {
            index_blobs(conn, &id, &spec, &input)?;
        }
        if let Some(out) = output {
            index_blob(conn, &id, "output", &out)?;
        }
        index_trace(
            conn,
            &id,
            &trace.map(|t| unpack_trace(&t)).unwrap_or_default(),
        )?;
    }
    Ok(())
}

/// Leaves from their packed form (`u16 length ‖ leaf`, repeated).
fn unpack_trace(packed: &[u8]) -> Vec<Vec<u8>> {
    let mut leaves = vec![];
    let mut rest = packed;
    while rest.len() >= 2 {
        let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        if rest.len() < 2 + n {
            break;
        }
        leaves.push(rest[2..2 + n].to_vec());
        rest = &rest[2 + n..];
    }
    leaves
}

fn index_blob(conn: &Connection, job_id: &JobId, kind: &str, bytes: &[u8]) -> rusqlite::Result<()> {
    index_digest(conn, job_id, kind, &vouch_proto::Digest::of(bytes).0)
}

/// A trace is served under its Merkle root (the receipt's `trace_root`), not a SHA-256.
fn index_trace(conn: &Connection, job_id: &JobId, leaves: &[Vec<u8>]) -> rusqlite::Result<()> {
    if leaves.is_empty() {
        return Ok(());
    }
    index_digest(conn, job_id, "trace", &vouch_proto::merkle_root(leaves).0)
}

fn index_digest(
    conn: &Connection,
    job_id: &JobId,
    kind: &str,
    digest: &[u8; 32],
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO blobs(digest, job_id, kind) VALUES (?1, ?2, ?3)",
        params![digest.to_vec(), job_id.0.to_vec(), kind],
    )?;
    Ok(())
}

fn index_blobs(
    conn: &Connection,
    job_id: &JobId,
    spec: &JobSpec,
    input: &[u8],
) -> rusqlite::Result<()> {
    if let Ok(canonical) = spec.canonical_bytes() {
        index_blob(conn, job_id, "spec", &canonical)?;
        // Also under the job id itself: a receipt names its job only by id, and a watcher
        // that wants to re-run the job fetches the spec by it (SPEC §10.7).
        index_digest(conn, job_id, "spec", &job_id.0)?;
    }
    index_blob(conn, job_id, "input", input)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database written by schema 1 (the committed fixture) opens, migrates, and keeps
    /// its jobs.
    #[test]
    fn migrates_a_schema_1_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(include_str!("../tests/fixtures/jobs-v1.sql"))
                .unwrap();
        }
        let store = JobStore::open(&path).unwrap();
        let id: JobId = "d473a6c4d3fba8c64a31b898fc93c0d795b46ecd33ab6c5ae2018df2507a6ed6"
            .parse()
            .unwrap();
        let job = store.get(&id).unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Queued);
        assert_eq!(store.input(&id).unwrap().unwrap(), b"hello world\n");
        assert_eq!(store.trace(&id).unwrap(), None);
        let version: i64 = store
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        // The migration indexed the old job's spec and input for fetching by digest.
        let spec_digest = vouch_proto::Digest::of(&job.spec.canonical_bytes().unwrap()).0;
        let spec = store.blob_by_digest(&spec_digest).unwrap().unwrap();
        assert_eq!(JobSpec::from_json(&spec).unwrap(), job.spec);
        let input = store.blob_by_digest(&job.spec.input_digest.0).unwrap();
        assert_eq!(input.as_deref(), Some(&b"hello world\n"[..]));
        // And the spec under its job id, which is all a receipt names.
        let by_id = store.blob_by_digest(&id.0).unwrap().unwrap();
        assert_eq!(by_id, job.spec.canonical_bytes().unwrap());
    }

    /// A finished job's output and trace are served by digest: the output by its SHA-256,
    /// the trace by its Merkle root (the packed leaves), and nothing by a wrong digest.
    #[test]
    fn output_and_trace_are_served_by_digest() {
        use ed25519_dalek::Signer as _;
        let store = JobStore::in_memory().unwrap();
        let spec = JobSpec::from_json(
            br#"{"image":"sha256:0000000000000000000000000000000000000000000000000000000000000001","command":[],"env":[],"input_digest":"sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9","limits":{"cpu_millis":1000,"memory_bytes":1048576,"output_bytes":1024,"pids":8,"timeout_ms":1000,"tmpfs_bytes":4096},"determinism":"deterministic","value_at_risk":"0","replicas":1,"nonce":""}"#,
        )
        .unwrap();
        let id = spec.job_id().unwrap();
        store.insert(&id, &spec, b"hello world").unwrap();
        let trace = vec![b"t1".to_vec(), b"t2".to_vec(), b"t3".to_vec()];
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let receipt = vouch_proto::Receipt {
            network_id: vouch_proto::NetworkId([1; 32]),
            operator: vouch_proto::OperatorKey(key.verifying_key().to_bytes()),
            sequence: 1,
            job_id: id,
            image: spec.image,
            input_digest: spec.input_digest,
            output_digest: vouch_proto::Digest::of(b"out"),
            output_len: 3,
            exit_code: 0,
            trace_root: vouch_proto::merkle_root(&trace),
            trace_len: 3,
            issued_at_ms: 1,
        };
        let signature = key.sign(&receipt.signing_root()).to_bytes();
        let signed = SignedReceipt { receipt, signature };
        store
            .mark_succeeded(&id, 0, b"out", b"", &trace, &signed)
            .unwrap();
        let out = store
            .blob_by_digest(&vouch_proto::Digest::of(b"out").0)
            .unwrap();
        assert_eq!(out.as_deref(), Some(&b"out"[..]));
        let root = vouch_proto::merkle_root(&trace).0;
        let packed = store.blob_by_digest(&root).unwrap().unwrap();
        assert!(vouch_net::blob_matches(&packed, &root));
        assert_eq!(unpack_trace(&packed), trace);
        assert_eq!(store.blob_by_digest(&[7; 32]).unwrap(), None);
    }
}
