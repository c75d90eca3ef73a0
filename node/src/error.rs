//! Errors of the operator node.

use std::path::PathBuf;

use vouch_proto::{JobId, ProtoError};

/// Errors from the Docker side of a job run; defined in `vouch-exec`, which the node and
/// the verifier share, and re-exported here so `crate::error::ExecError` keeps working.
pub use vouch_exec::ExecError;

/// Errors of the signing-protection store. Every refusal happens before a signature exists.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The job already has a receipt with a different result.
    #[error("refusing to sign: job {job_id} already has a receipt with a different result (sequence {sequence}); signing both would be equivocation")]
    ConflictingJob {
        /// The job.
        job_id: JobId,
        /// Sequence number of the receipt already signed.
        sequence: u64,
    },
    /// The sequence number already belongs to another receipt.
    #[error("refusing to sign: sequence number {0} is already used by another receipt")]
    SequenceReused(u64),
    /// The sequence number is not above every sequence number in the history.
    #[error(
        "refusing to sign: sequence number {got} is not above the highest signed so far ({max})"
    )]
    SequenceNotIncreasing {
        /// The offered sequence number.
        got: u64,
        /// The highest in the history.
        max: u64,
    },
    /// The receipt names another operator or network than this store's.
    #[error("refusing to sign: {0}")]
    WrongIdentity(String),
    /// The history file belongs to another key or network.
    #[error("signing history {path} belongs to {what}; refusing to mix histories")]
    ForeignHistory {
        /// The history database.
        path: PathBuf,
        /// Which key or network it holds.
        what: String,
    },
    /// An interchange file that cannot be imported.
    #[error("cannot import signing history: {0}")]
    Import(String),
    /// SQLite failed.
    #[error("signing history database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// Errors of the node as a whole: configuration, storage and start-up.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A configuration value is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// A key file problem.
    #[error("key file {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by a running vouch-node (lock held on node.lock); stop it first")]
    Locked(PathBuf),
    /// The listen address is taken or not allowed.
    #[error("cannot listen on {addr}: {source}; choose another with --listen or VOUCH_LISTEN")]
    Listen {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Protocol-level error.
    #[error(transparent)]
    Proto(#[from] ProtoError),
    /// Signing protection error.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// Job store error.
    #[error("job database: {0}")]
    Db(#[from] rusqlite::Error),
    /// I/O error with the path it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl NodeError {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NodeError::Io {
            path: path.into(),
            source,
        }
    }
}
