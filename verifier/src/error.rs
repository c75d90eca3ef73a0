//! Errors of the collateral ledger.

use crate::requests::Key;

/// Why the ledger refused a request or could not answer a query.
///
/// A refused request changes nothing: no balance, no nonce, no event. Every variant but
/// [`LedgerError::Storage`], [`LedgerError::Corrupt`] and [`LedgerError::Conservation`]
/// is the client's to fix and says how; those three are faults of the verifier itself
/// (map them to a generic 500 and log them).
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The restaker's deposited (not queued) balance is smaller than the amount.
    #[error("insufficient balance of {asset} for {restaker}: have {available}, need {requested}")]
    InsufficientBalance {
        /// Who asked.
        restaker: Key,
        /// Which asset.
        asset: String,
        /// What is deposited and not queued for withdrawal.
        available: u128,
        /// What was asked for.
        requested: u128,
    },
    /// The restaker has no balance, delegation or withdrawal with the ledger.
    #[error("unknown restaker {0}: deposit first")]
    UnknownRestaker(Key),
    /// No operator registered under this key.
    #[error("unknown operator {0}: it must send register_operator first")]
    UnknownOperator(Key),
    /// The asset was never registered by the verifier.
    #[error("unknown asset {0:?}: the verifier must register it first")]
    UnknownAsset(String),
    /// `register_asset` for a name that already exists.
    #[error("asset {0:?} is already registered")]
    AssetExists(String),
    /// `register_operator` for a key that already exists.
    #[error("operator {0} is already registered")]
    OperatorExists(Key),
    /// No queued withdrawal with this id belongs to the restaker.
    #[error("no queued withdrawal {id} for {restaker}")]
    UnknownWithdrawal {
        /// Who asked.
        restaker: Key,
        /// The id given.
        id: u64,
    },
    /// The nonce is not above the last one this actor used.
    #[error("replayed nonce {nonce} for {actor}: the last accepted nonce is {last}; sign again with a larger one")]
    ReplayedNonce {
        /// Who signed.
        actor: Key,
        /// The nonce given.
        nonce: u64,
        /// The last nonce accepted from this actor.
        last: u64,
    },
    /// A signature does not verify for the claimed key and the request's signing root.
    #[error("bad {which} signature: it does not verify for {key} over this request's signing root (check the network id and that every field was signed as sent)")]
    BadSignature {
        /// `"actor"` or `"peer"`.
        which: &'static str,
        /// The key it was checked against.
        key: Key,
    },
    /// `register_operator` without the peer key's signature.
    #[error(
        "register_operator needs peer_signature: the peer key must sign the same signing root"
    )]
    MissingPeerSignature,
    /// The signer may not make this kind of request.
    #[error("{actor} may not send {kind}: {why}")]
    Unauthorized {
        /// Who signed.
        actor: Key,
        /// The request kind.
        kind: &'static str,
        /// Which key would be allowed.
        why: &'static str,
    },
    /// `complete_withdrawal` before the delay has passed.
    #[error("withdrawal {id} is not claimable before {claimable_at_ms} ms (now {now_ms} ms)")]
    NotYetClaimable {
        /// The withdrawal.
        id: u64,
        /// When it becomes claimable.
        claimable_at_ms: u64,
        /// The verifier's clock.
        now_ms: u64,
    },
    /// A sum or product would leave the range of `u128` (or a time that of `u64`).
    #[error("arithmetic overflow in {0}: amounts must stay below 2^128 base units")]
    Overflow(&'static str),
    /// A slash names an offence that an earlier slash already punished.
    #[error("offence {offence} was already slashed (event {event_seq}); one offence, one slash")]
    AlreadySlashed {
        /// The offence id (64 lowercase hex).
        offence: String,
        /// The event of the earlier slash.
        event_seq: u64,
    },
    /// A bond forfeit names a dispute whose bond was already forfeited.
    #[error("the bond of dispute {dispute} was already forfeited (event {event_seq}); one dispute, one forfeit")]
    AlreadyForfeited {
        /// The dispute id (64 lowercase hex).
        dispute: String,
        /// The event of the earlier forfeit.
        event_seq: u64,
    },
    /// No dispute with this id was opened.
    #[error("unknown dispute {0}")]
    UnknownDispute(String),
    /// `open_dispute` for an id the ledger already holds (open or decided).
    #[error("dispute {dispute} was already opened (event {event_seq}); it is {}", if *.open { "still open" } else { "decided" })]
    DisputeExists {
        /// The dispute id.
        dispute: String,
        /// The event that opened it.
        event_seq: u64,
        /// Whether it is still undecided.
        open: bool,
    },
    /// `close_dispute` for a dispute that is already decided.
    #[error("dispute {dispute} was already decided (event {event_seq}); one dispute, one verdict")]
    DisputeClosed {
        /// The dispute id.
        dispute: String,
        /// The event that decided it.
        event_seq: u64,
    },
    /// A rule about delays, magnitudes or delegation was broken; the text names it.
    #[error("refused: {0}")]
    Rule(String),
    /// A field is out of its documented range.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// `LedgerConfig` values that would let stake escape a dispute.
    #[error("invalid ledger config: {0}")]
    Config(String),
    /// The database was created for another verifier key, network or config.
    #[error("ledger file {path} was created with a different {what}; open it with the original one or use a new file")]
    Mismatch {
        /// The file.
        path: String,
        /// What differs.
        what: &'static str,
    },
    /// Canonical JSON could not be produced (for example an id above 2^53 - 1).
    #[error("cannot canonicalize request or event: {0}")]
    Canonical(#[from] vouch_proto::ProtoError),
    /// The event chain does not verify.
    #[error("event chain broken at seq {seq}: {why}")]
    Chain {
        /// The first bad event.
        seq: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// A slash that does not conserve stake; the transaction was rolled back.
    #[error("internal error: conservation check failed for {0}")]
    Conservation(String),
    /// Stored data that does not decode.
    #[error("corrupt ledger database: {0}")]
    Corrupt(String),
    /// SQLite failed.
    #[error("ledger storage error: {0}")]
    Storage(#[from] rusqlite::Error),
}

impl LedgerError {
    pub(crate) fn rule(msg: impl Into<String>) -> Self {
        LedgerError::Rule(msg.into())
    }
}

/// Why a dispute was refused (or could not be decided).
///
/// Every variant but [`DisputeError::Ledger`] with a verifier fault inside, and
/// [`DisputeError::Busy`], is the challenger's to fix: the evidence does not prove an
/// offence. A refused dispute changes nothing in the ledger.
#[derive(Debug, thiserror::Error)]
pub enum DisputeError {
    /// A receipt does not decode, its JSON view does not match its encoding, or its
    /// signature does not verify under the operator key it names.
    #[error("{which}: {source}")]
    Receipt {
        /// The request field: `"receipt_a"`, `"receipt_b"` or `"receipt"`.
        which: &'static str,
        /// What is wrong with it.
        source: vouch_proto::ProtoError,
    },
    /// A receipt signed for another network (its signature proves nothing here).
    #[error("{which} is for network {got}, this verifier judges network {expected}")]
    WrongNetwork {
        /// The request field: `"receipt_a"`, `"receipt_b"` or `"receipt"`.
        which: &'static str,
        /// The receipt's network id.
        got: vouch_proto::NetworkId,
        /// This verifier's network id.
        expected: vouch_proto::NetworkId,
    },
    /// The receipts name different operators: no one signed both.
    #[error("not an equivocation: receipt_a is signed by {a}, receipt_b by {b}; both must be signed by one operator")]
    DifferentOperators {
        /// Operator of receipt a.
        a: vouch_proto::OperatorKey,
        /// Operator of receipt b.
        b: vouch_proto::OperatorKey,
    },
    /// Both receipts have the same signing root: one statement, sent twice.
    #[error(
        "not an equivocation: both receipts have signing root {root}; send two different receipts"
    )]
    SameReceipt {
        /// The common signing root, hex.
        root: String,
    },
    /// Different job and different sequence number: two honest receipts.
    #[error("not an equivocation: the receipts differ in both job_id and sequence; an equivocation needs the same job or the same sequence number")]
    Unrelated,
    /// The receipt, the spec and the input do not describe one job (SPEC.md §3.4 step 8).
    #[error("the receipt is not about this job: {0}")]
    Mismatch(String),
    /// The receipt is older than the challenge window: it is final.
    #[error("the receipt is final: issued at {issued_at_ms} ms, the challenge window of {window_ms} ms closed before now ({now_ms} ms)")]
    Final {
        /// The receipt's `issued_at_ms`.
        issued_at_ms: u64,
        /// The ledger's challenge window.
        window_ms: u64,
        /// The verifier's clock.
        now_ms: u64,
    },
    /// The job cannot be judged by re-execution (SPEC.md §5.5).
    #[error("not disputable by re-execution: {0}")]
    NotDisputable(String),
    /// This verifier was started without a Docker executor.
    #[error("this verifier cannot re-execute jobs (it has no Docker executor)")]
    NoExecutor,
    /// The re-execution could not be carried out (not a verdict about the workload).
    #[error("re-execution failed: {0}")]
    Exec(#[from] vouch_exec::ExecError),
    /// A fault of the verifier itself (a task that panicked).
    #[error("internal error: {0}")]
    Internal(String),
    /// A challenger key that cannot receive a bounty.
    #[error("invalid challenger: {0}")]
    Challenger(String),
    /// The dispute is open and its bond locked, but no verdict could be reached yet (the
    /// re-execution failed for a reason that is not the workload's).
    #[error("dispute {dispute} is open and its bond locked, but it is not decided yet: {why}; the verifier retries it periodically and at restart (see GET /v1/disputes/{dispute})")]
    Pending {
        /// The dispute id (hex).
        dispute: String,
        /// What stopped the judgment.
        why: String,
    },
    /// A withholding challenge's demand cannot be met by any operator (SPEC.md §11.5).
    #[error("bad demand: {0}")]
    BadDemand(String),
    /// An answer to a withholding dispute that does not publish what was demanded.
    #[error("the answer does not publish the demanded evidence: {0}")]
    BadAnswer(String),
    /// An answer to a withholding dispute after its deadline.
    #[error("the deadline to answer passed at {deadline_ms} ms (now {now_ms} ms): the operator is slashed for withholding")]
    DeadlinePassed {
        /// The dispute's deadline.
        deadline_ms: u64,
        /// The verifier's clock.
        now_ms: u64,
    },
    /// Other verifiers kept taking the admin nonce; try again.
    #[error("the ledger is busy (admin nonce raced {0} times); retry the dispute")]
    Busy(u32),
    /// The ledger refused the slash or failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = LedgerError> = std::result::Result<T, E>;
