//! Signing protection: the only place where an operator key signs a receipt.
//!
//! Modelled on Ethereum validator clients (EIP-3076, Lighthouse's `slashing_database.rs`).
//! The history is a SQLite file. **Check and insert happen in ONE exclusive transaction, and
//! the transaction commits before the signature is made**, so that no crash, restart or race
//! can produce two signatures that conflict:
//!
//! * the same job with the same result → the stored receipt (same sequence, same time, same
//!   signature: ed25519 is deterministic) is returned;
//! * the same job with a different result → refused;
//! * a sequence number already used, or not above every one used so far → refused.
//!
//! The database runs with `synchronous=FULL`: a lost write here could let the operator sign
//! twice, which is slashable.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ed25519_dalek::{Signer as _, SigningKey};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use vouch_proto::{
    Digest, JobId, NetworkId, OperatorKey, Receipt, Root32, SignedReceipt, RECEIPT_LEN,
};

use crate::error::SignError;

const SCHEMA_VERSION: i64 = 1;

/// The result of one execution, before the signer adds sequence number and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultBody {
    /// The job.
    pub job_id: JobId,
    /// Image id it ran in.
    pub image: Digest,
    /// SHA-256 of the input.
    pub input_digest: Digest,
    /// SHA-256 of the output.
    pub output_digest: Digest,
    /// Output length.
    pub output_len: u64,
    /// Exit code.
    pub exit_code: i32,
    /// Trace Merkle root (zeros when untraced).
    pub trace_root: Root32,
    /// Trace leaf count.
    pub trace_len: u64,
}

/// Whether a signature is new or one the history already held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    /// Signed now.
    New,
    /// The history already had this receipt; the stored one was returned.
    Existing,
}

/// The signing-protection store and the operator key it guards.
#[derive(Debug)]
pub struct SigningStore {
    conn: Mutex<Connection>,
    key: SigningKey,
    operator: OperatorKey,
    network_id: NetworkId,
}

impl SigningStore {
    /// Opens (creating if needed) the history at `path` for `key` on `network_id`.
    /// A history that belongs to another key or network is refused.
    pub fn open(path: &Path, key: SigningKey, network_id: NetworkId) -> Result<Self, SignError> {
        let operator = OperatorKey(key.verifying_key().to_bytes());
        let conn = open_db(path)?;
        let mut this = SigningStore {
            conn: Mutex::new(conn),
            key,
            operator,
            network_id,
        };
        this.bind_identity(path)?;
        Ok(this)
    }

    /// The operator's public key.
    pub fn operator(&self) -> OperatorKey {
        self.operator
    }

    /// The network this store signs for.
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }

    /// Signs a replica commitment of this operator. Commitments are not receipts: they bind
    /// a salted hash of a receipt this store has already signed, under their own domain tag
    /// (SPEC §10), so they need no history of their own.
    pub fn sign_commit(&self, commit: &mut vouch_proto::ReplicaCommit) {
        commit.operator = self.operator;
        commit.network_id = self.network_id;
        commit.signature = self.key.sign(&commit.signing_root()).to_bytes();
    }

    /// Signs a job announcement made by this operator (under its own domain tag).
    pub fn sign_announcement(&self, a: &mut vouch_proto::JobAnnouncement) {
        a.announcer = self.operator;
        a.network_id = self.network_id;
        a.signature = self.key.sign(&a.signing_root()).to_bytes();
    }

    /// Signs a served-evidence statement about one of this operator's receipts
    /// ([`vouch_proto::served_statement`], under its own domain tag, SPEC §7.7): what the
    /// node serves as a receipt's output or trace leaf. It binds the served bytes, not a
    /// result, so it needs no history: serving bytes other than those signed is provable
    /// self-contradiction, never a second result.
    pub fn sign_served(&self, statement: &[u8; 32]) -> [u8; 64] {
        self.key.sign(statement).to_bytes()
    }

    /// Signs a receipt WITHOUT the signing history: the one thing this store exists to
    /// prevent. Only `--fault equivocate` calls it, to produce a receipt that conflicts
    /// with one already signed (for demos and dispute tests).
    pub fn sign_unprotected_for_fault_injection(
        &self,
        receipt: vouch_proto::Receipt,
    ) -> SignedReceipt {
        SignedReceipt {
            signature: self.key.sign(&receipt.signing_root()).to_bytes(),
            receipt,
        }
    }

    fn bind_identity(&mut self, path: &Path) -> Result<(), SignError> {
        let conn = self.conn.get_mut().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        for (name, value) in [
            ("operator", self.operator.to_hex()),
            ("network_id", self.network_id.to_hex()),
        ] {
            let stored: Option<String> = tx
                .query_row("SELECT value FROM meta WHERE key = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()?;
            match stored {
                None => {
                    tx.execute(
                        "INSERT INTO meta(key, value) VALUES (?1, ?2)",
                        params![name, value],
                    )?;
                }
                Some(s) if s == value => {}
                Some(s) => {
                    return Err(SignError::ForeignHistory {
                        path: PathBuf::from(path),
                        what: format!("{name} {s}, not {value}"),
                    })
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Signs the result of a job, giving it the next sequence number — or returns the
    /// receipt already signed for this job if it states the same result.
    pub fn sign_result(&self, body: &ResultBody) -> Result<(SignedReceipt, Fresh), SignError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        if let Some(stored) = stored_for_job(&tx, &body.job_id)? {
            let candidate =
                self.receipt_for(body, stored.receipt.sequence, stored.receipt.issued_at_ms);
            return if stored.receipt.same_result(&candidate) {
                drop(tx);
                Ok((self.finish_existing(&mut conn, stored)?, Fresh::Existing))
            } else {
                Err(SignError::ConflictingJob {
                    job_id: body.job_id,
                    sequence: stored.receipt.sequence,
                })
            };
        }
        let sequence = max_sequence(&tx)?.map_or(Ok(1), |m| {
            m.checked_add(1)
                .ok_or(SignError::SequenceNotIncreasing { got: m, max: m })
        })?;
        let receipt = self.receipt_for(body, sequence, now_ms());
        record(&tx, &receipt)?;
        // The history is durable before the signature exists.
        tx.commit()?;
        Ok((self.sign_recorded(&conn, receipt)?, Fresh::New))
    }

    /// Signs a fully specified receipt (sequence number chosen by the caller) after the
    /// EIP-3076-style checks. Used by tests and by tools; the node uses [`Self::sign_result`].
    pub fn sign_receipt(&self, receipt: Receipt) -> Result<(SignedReceipt, Fresh), SignError> {
        if receipt.operator != self.operator {
            return Err(SignError::WrongIdentity(format!(
                "receipt names operator {}, this key is {}",
                receipt.operator, self.operator
            )));
        }
        if receipt.network_id != self.network_id {
            return Err(SignError::WrongIdentity(format!(
                "receipt is for network {}, this node is on {}",
                receipt.network_id, self.network_id
            )));
        }
        if i64::try_from(receipt.sequence).is_err() {
            return Err(SignError::SequenceNotIncreasing {
                got: receipt.sequence,
                max: i64::MAX as u64,
            });
        }
        let root = receipt.signing_root();
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        if let Some(stored) = stored_for_job(&tx, &receipt.job_id)? {
            return if stored.root == root {
                drop(tx);
                Ok((self.finish_existing(&mut conn, stored)?, Fresh::Existing))
            } else {
                Err(SignError::ConflictingJob {
                    job_id: receipt.job_id,
                    sequence: stored.receipt.sequence,
                })
            };
        }
        let used: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM signed_receipts WHERE sequence = ?1",
                [receipt.sequence as i64],
                |r| r.get(0),
            )
            .optional()?;
        if used.is_some() {
            return Err(SignError::SequenceReused(receipt.sequence));
        }
        if let Some(max) = max_sequence(&tx)? {
            if receipt.sequence <= max {
                return Err(SignError::SequenceNotIncreasing {
                    got: receipt.sequence,
                    max,
                });
            }
        }
        record(&tx, &receipt)?;
        tx.commit()?;
        Ok((self.sign_recorded(&conn, receipt)?, Fresh::New))
    }

    /// The receipt already signed for `job_id`, if any.
    pub fn get(&self, job_id: &JobId) -> Result<Option<SignedReceipt>, SignError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let stored = {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            stored_for_job(&tx, job_id)?
        };
        stored
            .map(|s| self.finish_existing(&mut conn, s))
            .transpose()
    }

    fn receipt_for(&self, b: &ResultBody, sequence: u64, issued_at_ms: u64) -> Receipt {
        Receipt {
            network_id: self.network_id,
            operator: self.operator,
            sequence,
            job_id: b.job_id,
            image: b.image,
            input_digest: b.input_digest,
            output_digest: b.output_digest,
            output_len: b.output_len,
            exit_code: b.exit_code,
            trace_root: b.trace_root,
            trace_len: b.trace_len,
            issued_at_ms,
        }
    }

    /// THE signing call. Only reached after `record` committed the receipt's root.
    fn sign_recorded(
        &self,
        conn: &Connection,
        receipt: Receipt,
    ) -> Result<SignedReceipt, SignError> {
        let signature = self.key.sign(&receipt.signing_root()).to_bytes();
        // Keeping the signature is a convenience: if this write is lost, signing the same
        // recorded root again yields the same bytes. So it does not pay for its own fsync;
        // it becomes durable with the next FULL commit or checkpoint.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let updated = conn.execute(
            "UPDATE signed_receipts SET signature = ?1 WHERE job_id = ?2",
            params![signature.to_vec(), receipt.job_id.0.to_vec()],
        );
        conn.pragma_update(None, "synchronous", "FULL")?;
        updated?;
        Ok(SignedReceipt { receipt, signature })
    }

    fn finish_existing(
        &self,
        conn: &mut Connection,
        stored: Stored,
    ) -> Result<SignedReceipt, SignError> {
        match stored.signature {
            Some(signature) => Ok(SignedReceipt {
                receipt: stored.receipt,
                signature,
            }),
            None => self.sign_recorded(conn, stored.receipt),
        }
    }

    /// Exports the history as an EIP-3076-style interchange document.
    pub fn export(&self) -> Result<Interchange, SignError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let mut stmt = conn.prepare(
            "SELECT job_id, sequence, signing_root, receipt, signature FROM signed_receipts ORDER BY sequence",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(InterchangeReceipt {
                job_id: hex::encode(r.get::<_, Vec<u8>>(0)?),
                sequence: (r.get::<_, i64>(1)? as u64).to_string(),
                signing_root: hex::encode(r.get::<_, Vec<u8>>(2)?),
                receipt: r.get::<_, Option<Vec<u8>>>(3)?.map(hex::encode),
                signature: r.get::<_, Option<Vec<u8>>>(4)?.map(hex::encode),
            })
        })?;
        let signed_receipts = rows.collect::<Result<Vec<_>, _>>()?;
        Ok(Interchange {
            metadata: InterchangeMetadata {
                interchange_format_version: INTERCHANGE_VERSION.into(),
                network_id: self.network_id.to_hex(),
            },
            data: vec![InterchangeKey {
                pubkey: self.operator.to_hex(),
                signed_receipts,
            }],
        })
    }

    /// Imports an interchange document in one transaction: all of it or nothing. Entries
    /// already present with the same root are skipped; an entry that conflicts with the
    /// history (same job or sequence, different root) aborts the import.
    pub fn import(&self, doc: &Interchange) -> Result<ImportSummary, SignError> {
        let bad = |m: String| SignError::Import(m);
        if doc.metadata.interchange_format_version != INTERCHANGE_VERSION {
            return Err(bad(format!(
                "interchange_format_version {:?}, expected {INTERCHANGE_VERSION:?}",
                doc.metadata.interchange_format_version
            )));
        }
        if doc.metadata.network_id != self.network_id.to_hex() {
            return Err(bad(format!(
                "file is for network {}, this node is on {}",
                doc.metadata.network_id, self.network_id
            )));
        }
        let mut summary = ImportSummary::default();
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        for key in &doc.data {
            if key.pubkey != self.operator.to_hex() {
                return Err(bad(format!(
                    "file holds history for key {}, this node's key is {}",
                    key.pubkey, self.operator
                )));
            }
            for e in &key.signed_receipts {
                let job_id: JobId = e.job_id.parse().map_err(|e| bad(format!("job_id: {e}")))?;
                let canonical = !e.sequence.is_empty()
                    && e.sequence.bytes().all(|b| b.is_ascii_digit())
                    && (e.sequence == "0" || !e.sequence.starts_with('0'));
                let sequence: u64 =
                    e.sequence
                        .parse()
                        .ok()
                        .filter(|_| canonical)
                        .ok_or_else(|| {
                            bad(format!(
                                "sequence {:?} is not a canonical decimal integer",
                                e.sequence
                            ))
                        })?;
                let seq_i64 = i64::try_from(sequence)
                    .map_err(|_| bad(format!("sequence {sequence} too large")))?;
                let root: Root32 = e
                    .signing_root
                    .parse()
                    .map_err(|e| bad(format!("signing_root: {e}")))?;
                let receipt = e
                    .receipt
                    .as_deref()
                    .map(hex::decode)
                    .transpose()
                    .map_err(|e| bad(format!("receipt: {e}")))?;
                if let Some(r) = &receipt {
                    let decoded = Receipt::decode(r).map_err(|e| bad(format!("receipt: {e}")))?;
                    if decoded.operator != self.operator || decoded.network_id != self.network_id {
                        return Err(bad(format!(
                            "entry for job {job_id}: the receipt names another operator or network"
                        )));
                    }
                    if decoded.signing_root() != root.0
                        || decoded.job_id != job_id
                        || decoded.sequence != sequence
                    {
                        return Err(bad(format!("entry for job {job_id}: receipt does not match its root, job id or sequence")));
                    }
                }
                if e.signature.is_some() && receipt.is_none() {
                    return Err(bad(format!(
                        "entry for job {job_id}: a signature needs its receipt"
                    )));
                }
                let signature = e
                    .signature
                    .as_deref()
                    .map(hex::decode)
                    .transpose()
                    .map_err(|e| bad(format!("signature: {e}")))?;
                if let (Some(r), Some(s)) = (&receipt, &signature) {
                    let sig: [u8; 64] = s
                        .as_slice()
                        .try_into()
                        .map_err(|_| bad("signature must be 64 bytes".into()))?;
                    let decoded = Receipt::decode(r).map_err(|e| bad(format!("receipt: {e}")))?;
                    vouch_proto::verify_root(&self.operator, &decoded.signing_root(), &sig)
                        .map_err(|e| bad(format!("entry for job {job_id}: {e}")))?;
                }
                let by_job: Option<(i64, Vec<u8>)> = tx
                    .query_row(
                        "SELECT sequence, signing_root FROM signed_receipts WHERE job_id = ?1",
                        [job_id.0.to_vec()],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                let by_seq: Option<Vec<u8>> = tx
                    .query_row(
                        "SELECT signing_root FROM signed_receipts WHERE sequence = ?1",
                        [seq_i64],
                        |r| r.get(0),
                    )
                    .optional()?;
                match (by_job, by_seq) {
                    (Some((s, r)), _) if s == seq_i64 && r == root.0 => summary.skipped += 1,
                    (Some(_), _) => {
                        return Err(bad(format!(
                            "job {job_id} is already in the history with a different receipt"
                        )))
                    }
                    (None, Some(_)) => {
                        return Err(bad(format!(
                            "sequence {sequence} is already in the history for another job"
                        )))
                    }
                    (None, None) => {
                        tx.execute(
                            "INSERT INTO signed_receipts(job_id, sequence, signing_root, receipt, signature, imported) VALUES (?1, ?2, ?3, ?4, ?5, 1)",
                            params![job_id.0.to_vec(), seq_i64, root.0.to_vec(), receipt, signature],
                        )?;
                        summary.imported += 1;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(summary)
    }
}

/// Opens the history database with the settings signing protection relies on, and applies
/// migrations.
fn open_db(path: &Path) -> Result<Connection, SignError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(SignError::Import(format!(
            "{} has schema version {version}, newer than this vouch-node understands ({SCHEMA_VERSION}); upgrade vouch-node",
            path.display()
        )));
    }
    if version < 1 {
        conn.execute_batch(
            "BEGIN EXCLUSIVE;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS signed_receipts (
                 job_id       BLOB NOT NULL UNIQUE CHECK (length(job_id) = 32),
                 sequence     INTEGER NOT NULL UNIQUE CHECK (sequence >= 0),
                 signing_root BLOB NOT NULL CHECK (length(signing_root) = 32),
                 receipt      BLOB CHECK (receipt IS NULL OR length(receipt) = 260),
                 signature    BLOB CHECK (signature IS NULL OR length(signature) = 64),
                 imported     INTEGER NOT NULL DEFAULT 0
             );
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    Ok(conn)
}

struct Stored {
    receipt: Receipt,
    root: [u8; 32],
    signature: Option<[u8; 64]>,
}

fn stored_for_job(
    tx: &rusqlite::Transaction<'_>,
    job_id: &JobId,
) -> Result<Option<Stored>, SignError> {
    type Row = (Option<Vec<u8>>, Vec<u8>, Option<Vec<u8>>, i64);
    let row: Option<Row> = tx
        .query_row(
            "SELECT receipt, signing_root, signature, sequence FROM signed_receipts WHERE job_id = ?1",
            [job_id.0.to_vec()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((receipt, root, signature, sequence)) = row else {
        return Ok(None);
    };
    let root: [u8; 32] = root
        .as_slice()
        .try_into()
        .map_err(|_| corrupt("signing_root"))?;
    let Some(receipt) = receipt else {
        // An imported entry with only a root: any new receipt for this job would conflict.
        return Err(SignError::ConflictingJob {
            job_id: *job_id,
            sequence: sequence as u64,
        });
    };
    if receipt.len() != RECEIPT_LEN {
        return Err(corrupt("receipt"));
    }
    let receipt = Receipt::decode(&receipt).map_err(|_| corrupt("receipt"))?;
    let signature = signature
        .map(|s| <[u8; 64]>::try_from(s.as_slice()).map_err(|_| corrupt("signature")))
        .transpose()?;
    Ok(Some(Stored {
        receipt,
        root,
        signature,
    }))
}

fn corrupt(what: &str) -> SignError {
    SignError::Db(rusqlite::Error::InvalidColumnName(format!(
        "corrupt {what} in signing history"
    )))
}

fn max_sequence(tx: &rusqlite::Transaction<'_>) -> Result<Option<u64>, SignError> {
    let max: Option<i64> = tx.query_row("SELECT MAX(sequence) FROM signed_receipts", [], |r| {
        r.get(0)
    })?;
    Ok(max.map(|m| m as u64))
}

fn record(tx: &rusqlite::Transaction<'_>, receipt: &Receipt) -> Result<(), SignError> {
    let seq = i64::try_from(receipt.sequence).map_err(|_| SignError::SequenceNotIncreasing {
        got: receipt.sequence,
        max: i64::MAX as u64,
    })?;
    tx.execute(
        "INSERT INTO signed_receipts(job_id, sequence, signing_root, receipt) VALUES (?1, ?2, ?3, ?4)",
        params![receipt.job_id.0.to_vec(), seq, receipt.signing_root().to_vec(), receipt.encode().to_vec()],
    )?;
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Version string of the interchange format.
pub const INTERCHANGE_VERSION: &str = "vouch-receipts-1";

/// EIP-3076-style interchange document (see SPEC.md §6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Interchange {
    pub metadata: InterchangeMetadata,
    pub data: Vec<InterchangeKey>,
}

/// Interchange metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct InterchangeMetadata {
    pub interchange_format_version: String,
    pub network_id: String,
}

/// One key's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct InterchangeKey {
    pub pubkey: String,
    pub signed_receipts: Vec<InterchangeReceipt>,
}

/// One signed receipt in the history. `receipt` and `signature` are optional: a root and
/// a sequence are enough to protect against conflicting signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct InterchangeReceipt {
    pub job_id: String,
    /// Decimal string, as EIP-3076 writes integers.
    pub sequence: String,
    pub signing_root: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// New entries.
    pub imported: usize,
    /// Entries already present.
    pub skipped: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_commits_are_fully_synchronous() {
        let dir = tempfile::tempdir().unwrap();
        let store = SigningStore::open(
            &dir.path().join("h.sqlite"),
            SigningKey::from_bytes(&[1; 32]),
            NetworkId::from_name("t"),
        )
        .unwrap();
        let body = ResultBody {
            job_id: JobId([1; 32]),
            image: Digest([2; 32]),
            input_digest: Digest([3; 32]),
            output_digest: Digest([4; 32]),
            output_len: 1,
            exit_code: 0,
            trace_root: Root32::default(),
            trace_len: 0,
        };
        store.sign_result(&body).unwrap();
        let conn = store.conn.lock().unwrap();
        // 2 = FULL: every later check-and-record commit is durable before it returns.
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
