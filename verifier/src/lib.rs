//! `vouch-verifier`: the verifier's restaked-collateral ledger, the disputes judged
//! against it, and its HTTP API.
//!
//! Layout:
//! - [`requests`]: [`SignedRequest`], the only way to change the ledger. Each carries the
//!   actor's ed25519 key, a per-actor strictly increasing nonce, a [`RequestBody`] and a
//!   signature over a domain-tagged SHA-256 of canonical JSON bound to the network id.
//! - [`ledger`]: the [`CollateralLedger`] trait; [`SqliteLedger`] (one SQLite file in WAL
//!   mode with synchronous=FULL; concurrent requests share one exclusive transaction, a
//!   group commit, each under its own savepoint) and [`MemoryLedger`] (tests). Both run the same
//!   rules over a storage trait: deposits, delegation, allocation with delayed
//!   deallocation, delayed withdrawals that stay slashable, pro-rata slashing with a
//!   challenger bounty and a burn, and disputes that lock a challenger's bond when they
//!   open and unlock or burn it with their verdict.
//! - [`disputes`]: tier 0, equivocation, judged on signatures alone; [`reexec`]: tier 1,
//!   a wrong result, judged by re-running the job twice on a `vouch_exec::Executor`
//!   (Docker) and comparing; [`token`]: tier 2, one token of a traced inference, judged
//!   from the signed trace and at most one `step` run of the model image; [`withholding`]:
//!   an operator that does not publish a receipt's output or trace leaves by a deadline
//!   is slashed. All end in
//!   admin requests the [`Verifier`] signs. A wrong-result or token dispute is opened in
//!   the ledger (bond locked, evidence stored) before anything runs, judged in its own
//!   task, and resumed after a restart.
//! - [`events`]: every applied request appends one hash-chained event, signed by the
//!   verifier key, in the same transaction; [`verify_chain`] checks a run of them.
//! - [`error`]: [`LedgerError`], what a refused request tells its client.
//! - [`watch`]: watcher mode, a separate process (`vouch-verifier watch`) that hears
//!   receipts on the network, re-executes a sample drawn with the verifier's beacon
//!   (`GET /v1/beacon/{epoch}`, SPEC.md §11.3) and raises wrong-result disputes on its own.
//!
//! The ledger spawns no tasks and does no network I/O ([`api`], [`gossip`] and
//! [`reexec`] do: the HTTP server, the libp2p swarm, one judgment task per open
//! wrong-result dispute running its two containers, each calling the ledger from tokio's
//! blocking pool). Data flows one way: a client signs
//! a request → [`CollateralLedger::apply`] authenticates it, checks the nonce, applies the
//! rules and appends the signed event, all or nothing → readers query the state or page
//! through [`CollateralLedger::events_from`].
//!
//! ```
//! use ed25519_dalek::SigningKey;
//! use vouch_verifier::{
//!     CollateralLedger, LedgerConfig, MemoryLedger, RequestBody, SignedRequest, verify_chain,
//! };
//!
//! let net = [1u8; 32];
//! let admin = SigningKey::from_bytes(&[2; 32]);
//! let alice = SigningKey::from_bytes(&[3; 32]);
//! let ledger = MemoryLedger::new(LedgerConfig::new(60_000, 120_000, 0)?, net, admin.clone());
//!
//! let asset = RequestBody::RegisterAsset { asset: "eth".into(), price_per_unit: 3 };
//! ledger.apply(&SignedRequest::sign(&net, &admin, 1, asset)?, 0)?;
//! let deposit = RequestBody::Deposit { asset: "eth".into(), amount: 10 };
//! ledger.apply(&SignedRequest::sign(&net, &alice, 1, deposit)?, 0)?;
//!
//! let alice_key = vouch_verifier::Key::of(&alice);
//! assert_eq!(ledger.balance(&alice_key, "eth")?, 10);
//! verify_chain(&ledger.events_from(0, 100)?, &ledger.verifier_key())?;
//! # Ok::<(), vouch_verifier::LedgerError>(())
//! ```

pub mod api;
pub mod disputes;
pub mod error;
pub mod events;
pub mod explorer;
pub mod gossip;
pub mod ledger;
pub mod reexec;
pub mod requests;
pub mod security;
pub mod server;
pub mod token;
pub mod watch;
pub mod withholding;

pub use api::{
    router, ApiError, ApiState, ResultDisputeBody, TokenDisputeBody, WithholdingDisputeBody,
};
pub use disputes::{
    equivocation_offence, DisputeConfig, Offence, Verdict, VerdictOutcome, Verifier,
};
pub use error::{DisputeError, LedgerError, Result};
pub use events::{verify_chain, Conservation, Event};
pub use ledger::{
    Applied, AssetSlash, AssetState, CollateralLedger, DisputeClosed, DisputeRecord,
    DisputeVerdict, LedgerConfig, MemoryLedger, OperatorState, Outcome, PendingDeallocation,
    SlashOutcome, Snapshot, SqliteLedger, Withdrawal, PPM,
};
pub use reexec::{
    result_dispute_id, wrong_result_offence, Bond, DisputeStatus, ResultChallenge, ResultOutcome,
    ResultVerdict, RunReport,
};
pub use requests::{signing_root, Key, RequestBody, Ruling, Sig, SignedRequest};
pub use token::{token_dispute_id, TokenChallenge, TokenClaim};
pub use withholding::{
    withholding_dispute_id, Answer, Demand, WithholdingChallenge, WithholdingView,
};
