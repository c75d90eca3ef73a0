//! The collateral ledger: restaked deposits, delegation, allocation, withdrawals, slashing.
//!
//! [`CollateralLedger`] is the interface; [`SqliteLedger`] is the real one and
//! [`MemoryLedger`] the simple one for tests. Both run the same rules (`apply_request`
//! below) over a small storage trait, so they can only differ in how they store, and a
//! property test checks that they never do.
//!
//! Model (EigenLayer-style), all amounts `u128` base units with checked arithmetic:
//! - a restaker's *stake* in an asset is its deposited balance plus its queued
//!   withdrawals of that asset; queued withdrawals stay slashable until completed;
//! - a restaker delegates its whole stake to at most one operator;
//! - an operator allocates `magnitude_ppm` of its delegated stake to this service; raising
//!   it takes effect at once, lowering it only after `withdrawal_delay_ms`, and until then
//!   the old magnitude stays slashable;
//! - a slash of `fraction_ppm` removes `stake × magnitude × fraction` from every delegator
//!   (see [`SlashOutcome`] for the rounding); `bounty_ppm` of it goes to the challenger's
//!   deposit, the rest is burned. The magnitude itself is unchanged by a slash;
//! - a dispute's bond is *locked* by `open_dispute`: it leaves the challenger's deposited
//!   balance (so it can be neither withdrawn nor bonded twice) but is still held — it
//!   counts in the asset's total and in the conservation equations, and it stays in the
//!   challenger's stake, so a slash of the operator the challenger delegates to cuts it like
//!   a deposit or a queued withdrawal. `close_dispute` then unlocks it (slashed, already
//!   slashed, void) or burns it (dismissed), once: a decided dispute cannot be decided again.

mod memory;
mod sqlite;

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::error::{LedgerError, Result};
use crate::events::{Conservation, Event};
use crate::requests::{decimal, Key, RequestBody, Ruling, SignedRequest};

pub use memory::MemoryLedger;
pub use sqlite::{GroupCommitStats, SqliteLedger, MAX_BATCH, SCHEMA_VERSION};

/// Parts per million: the unit of magnitudes, slash fractions and bounties.
pub const PPM: u32 = 1_000_000;
const PPM_U128: u128 = PPM as u128;
const PPM2: u128 = PPM_U128 * PPM_U128;

/// Timing and stake rules, fixed when a ledger file is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    challenge_window_ms: u64,
    withdrawal_delay_ms: u64,
    #[serde(with = "decimal")]
    min_stake_value: u128,
}

impl LedgerConfig {
    /// Refuses `withdrawal_delay_ms <= challenge_window_ms`: stake must stay slashable
    /// for longer than a challenger has to raise a dispute, or it could leave first.
    pub fn new(
        challenge_window_ms: u64,
        withdrawal_delay_ms: u64,
        min_stake_value: u128,
    ) -> Result<Self> {
        if withdrawal_delay_ms <= challenge_window_ms {
            return Err(LedgerError::Config(format!(
                "withdrawal_delay_ms ({withdrawal_delay_ms}) must be greater than \
                 challenge_window_ms ({challenge_window_ms}), or stake could be withdrawn \
                 before a dispute about it is decided"
            )));
        }
        Ok(LedgerConfig {
            challenge_window_ms,
            withdrawal_delay_ms,
            min_stake_value,
        })
    }

    /// How long a challenger has to dispute a receipt.
    pub fn challenge_window_ms(&self) -> u64 {
        self.challenge_window_ms
    }

    /// How long withdrawals and deallocations wait (and stay slashable).
    pub fn withdrawal_delay_ms(&self) -> u64 {
        self.withdrawal_delay_ms
    }

    /// An operator whose slashable stake is worth less (in quote units) is jailed.
    pub fn min_stake_value(&self) -> u128 {
        self.min_stake_value
    }
}

/// A registered asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetState {
    /// Quote units (e.g. micro-USD) per base unit.
    #[serde(with = "decimal")]
    pub price_per_unit: u128,
    /// Sum of all deposits and queued withdrawals of this asset. Every deposit is checked
    /// against it, so no sum of balances anywhere in the ledger can overflow `u128`.
    #[serde(with = "decimal")]
    pub total: u128,
}

/// A queued withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    /// Ledger-wide id, from 1.
    pub id: u64,
    /// Owner.
    pub restaker: Key,
    /// Asset.
    pub asset: String,
    /// Base units; slashes reduce it.
    #[serde(with = "decimal")]
    pub amount: u128,
    /// When `complete_withdrawal` is allowed.
    pub claimable_at_ms: u64,
}

/// A lowering of an operator's magnitude that has not taken effect yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDeallocation {
    /// The magnitude after `effective_at_ms`.
    pub magnitude_ppm: u32,
    /// When it takes effect.
    pub effective_at_ms: u64,
}

/// A registered operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorState {
    /// Its libp2p identity key.
    pub peer_key: Key,
    /// Allocated fraction of delegated stake, ppm (before any pending deallocation).
    pub magnitude_ppm: u32,
    /// A deallocation waiting out the delay.
    pub pending: Option<PendingDeallocation>,
    /// Set by a slash with `jail`.
    pub jailed: bool,
}

impl OperatorState {
    /// The slashable magnitude at `now_ms`: the old one until a deallocation is effective.
    pub fn magnitude_at(&self, now_ms: u64) -> u32 {
        match self.pending {
            Some(p) if now_ms >= p.effective_at_ms => p.magnitude_ppm,
            _ => self.magnitude_ppm,
        }
    }

    fn settle(&mut self, now_ms: u64) {
        self.magnitude_ppm = self.magnitude_at(now_ms);
        if self.pending.is_some_and(|p| now_ms >= p.effective_at_ms) {
            self.pending = None;
        }
    }
}

/// What one slash did to one asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetSlash {
    /// Before/after/burned/rewarded for the slashed operator's delegators.
    pub conservation: Conservation,
    /// Base units taken from each delegator (deposits and queued withdrawals together).
    #[serde(with = "cuts_serde")]
    pub cuts: BTreeMap<Key, u128>,
}

mod cuts_serde {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::requests::Key;

    pub fn serialize<S: Serializer>(m: &BTreeMap<Key, u128>, s: S) -> Result<S::Ok, S::Error> {
        m.iter()
            .map(|(k, v)| (k.to_hex(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<Key, u128>, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        raw.into_iter()
            .map(|(k, v)| {
                let key = Key::from_hex(&k).map_err(serde::de::Error::custom)?;
                let amount = v.parse().map_err(serde::de::Error::custom)?;
                Ok((key, amount))
            })
            .collect()
    }
}

/// The result of a slash.
///
/// Rounding (largest remainder): the exact loss of delegator `d` in an asset is
/// `stake_d × magnitude × fraction / 10^12`. Each delegator first loses the floor of it;
/// the total slashed is the floor of the exact *sum*, and the few base units between the
/// two (fewer than the number of delegators) are taken one each from the delegators with
/// the largest dropped fractions (ties: larger stake, then smaller key). So the cuts add
/// up exactly, every delegator loses within one base unit of its exact share, and nobody
/// loses more than its stake. (Taking the whole remainder from the single largest
/// delegator, the simpler rule, can exceed that delegator's stake or its fair share by
/// more than one unit when there are many small delegators.) Within a delegator the cut
/// is split the same way over its deposit, its queued withdrawals and its bonds locked in
/// open disputes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashOutcome {
    /// The operator.
    pub operator: Key,
    /// The magnitude that was slashed (the old one if a deallocation was pending).
    pub magnitude_ppm: u32,
    /// Per asset with any delegated stake.
    pub assets: BTreeMap<String, AssetSlash>,
    /// Whether the operator is now jailed by this slash.
    pub jailed: bool,
}

/// What an applied request produced besides its event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing beyond the state change itself.
    Done,
    /// `queue_withdrawal`: its id and when it can be completed.
    WithdrawalQueued {
        /// Pass to `complete_withdrawal`.
        id: u64,
        /// The verifier's clock plus `withdrawal_delay_ms`.
        claimable_at_ms: u64,
    },
    /// `complete_withdrawal`: what is paid out (after any slashes).
    WithdrawalCompleted {
        /// The withdrawal.
        id: u64,
        /// Asset.
        asset: String,
        /// Base units leaving the ledger.
        #[serde(with = "decimal")]
        amount: u128,
    },
    /// `slash`.
    Slashed(SlashOutcome),
    /// `forfeit_bond`: what was burned from whom.
    BondForfeited {
        /// The challenger whose bond was burned.
        challenger: Key,
        /// Asset.
        asset: String,
        /// Base units burned.
        #[serde(with = "decimal")]
        amount: u128,
        /// The challenger's deposited balance before and after, and the burn.
        conservation: Conservation,
    },
    /// `open_dispute`: the bond moved from the deposit into the dispute.
    BondLocked {
        /// The dispute.
        dispute: String,
        /// Whose bond.
        challenger: Key,
        /// Asset.
        asset: String,
        /// Base units locked.
        #[serde(with = "decimal")]
        amount: u128,
        /// The challenger's holdings in the asset (deposit + locked bonds), unchanged.
        conservation: Conservation,
    },
    /// `close_dispute`.
    DisputeClosed {
        /// The dispute.
        dispute: String,
        /// The verdict.
        verdict: DisputeVerdict,
        /// Whose bond.
        challenger: Key,
        /// Asset of the bond.
        asset: String,
        /// Base units of the bond burned (dismissed).
        #[serde(with = "decimal")]
        burned: u128,
        /// Base units of the bond returned to the challenger's deposit.
        #[serde(with = "decimal")]
        released: u128,
        /// The challenger's holdings in the bond's asset (deposit + locked bonds) before and
        /// after, and the burn.
        conservation: Conservation,
        /// The slash, for `slashed`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slash: Option<SlashOutcome>,
    },
}

/// How a dispute the ledger held was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputeVerdict {
    /// This dispute's slash was applied; the bond was unlocked.
    Slashed,
    /// An earlier slash had punished the offence; the bond was unlocked.
    AlreadySlashed,
    /// The receipt was right; the bond was burned.
    Dismissed,
    /// No verdict; the bond was unlocked.
    Void,
}

/// How and when a dispute was closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeClosed {
    /// The verdict.
    pub verdict: DisputeVerdict,
    /// The `close_dispute` event.
    #[serde(with = "decimal")]
    pub seq: u64,
    /// The verifier's clock when it was closed.
    #[serde(with = "decimal")]
    pub at_ms: u64,
    /// The verifier's account of the judgment (JSON, attached to the `close_dispute`
    /// request); the ledger stores it without reading it.
    pub report: Option<String>,
}

/// A dispute whose bond the ledger holds or held (`open_dispute`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeRecord {
    /// The dispute id (64 lowercase hex).
    pub id: String,
    /// Whose bond it is.
    pub challenger: Key,
    /// The bond's asset.
    pub asset: String,
    /// The bond as opened, base units.
    #[serde(with = "decimal")]
    pub bond: u128,
    /// What is locked now: the bond less any slash of the challenger's own stake; zero
    /// once closed.
    #[serde(with = "decimal")]
    pub locked: u128,
    /// The `open_dispute` event.
    #[serde(with = "decimal")]
    pub opened_seq: u64,
    /// The verifier's clock when it was opened.
    #[serde(with = "decimal")]
    pub opened_at_ms: u64,
    /// SHA-256 (hex) of the evidence stored with it.
    pub evidence: String,
    /// `None` while open.
    pub closed: Option<DisputeClosed>,
}

/// Largest evidence `open_dispute` stores: a challenge as the API accepts it (its body
/// limit, [`crate::api::MAX_DISPUTE_BODY_BYTES`], room for a node's largest input).
pub const MAX_EVIDENCE_BYTES: usize = crate::api::MAX_DISPUTE_BODY_BYTES;
/// Largest report `close_dispute` stores: room for an answered withholding dispute's
/// published evidence (an answer body, [`crate::withholding::MAX_ANSWER_BYTES`]).
pub const MAX_REPORT_BYTES: usize = crate::withholding::MAX_ANSWER_BYTES + (64 << 10);

/// An applied request: its outcome and the event that records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// What happened.
    pub outcome: Outcome,
    /// The signed log entry, already committed.
    pub event: Event,
}

/// The whole state, for comparisons, audits and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Registered assets.
    pub assets: BTreeMap<String, AssetState>,
    /// Non-zero deposited balances.
    pub balances: BTreeMap<(Key, String), u128>,
    /// Restaker → operator.
    pub delegations: BTreeMap<Key, Key>,
    /// Queued withdrawals by id.
    pub withdrawals: BTreeMap<u64, Withdrawal>,
    /// Registered operators.
    pub operators: BTreeMap<Key, OperatorState>,
    /// Last accepted nonce per actor.
    pub nonces: BTreeMap<Key, u64>,
    /// Slashed offence ids and forfeited dispute ids (64 lowercase hex; each kind of id
    /// is a SHA-256 under its own domain tag, so they cannot collide) → seq of the event
    /// that slashed or forfeited.
    pub offences: BTreeMap<String, u64>,
    /// Every dispute the ledger holds or held, by id.
    pub disputes: BTreeMap<String, DisputeRecord>,
    /// Number of events.
    pub event_count: u64,
    /// Hash of the last event.
    pub last_hash: Option<[u8; 32]>,
}

/// The ledger interface.
///
/// Every change goes through [`CollateralLedger::apply`]: the request is authenticated
/// (signature; peer signature for `register_operator`; admin key for `register_asset`,
/// `slash`, `forfeit_bond`, `open_dispute` and `close_dispute`; restaker and operator
/// requests act on the signer's own account), its nonce is
/// checked against the actor's last one, the rules are applied and the signed event is
/// appended — all or nothing. `now_ms` is the verifier's clock, never the client's.
pub trait CollateralLedger: Send + Sync {
    /// The rules this ledger was created with.
    fn config(&self) -> &LedgerConfig;
    /// The verifier (admin) public key, which also signs the events.
    fn verifier_key(&self) -> Key;
    /// Applies one signed request atomically.
    fn apply(&self, request: &SignedRequest, now_ms: u64) -> Result<Applied> {
        self.apply_with(request, &[], now_ms)
    }
    /// Applies one signed request atomically, with bytes stored beside it: the evidence of
    /// an `open_dispute` (its SHA-256 must be the request's `evidence`) or the verifier's
    /// report of a `close_dispute` (at most [`MAX_REPORT_BYTES`], may be empty). Other
    /// requests take none.
    fn apply_with(
        &self,
        request: &SignedRequest,
        attachment: &[u8],
        now_ms: u64,
    ) -> Result<Applied>;
    /// A dispute the ledger holds or held.
    fn dispute(&self, id: &str) -> Result<Option<DisputeRecord>>;
    /// The evidence stored with a dispute.
    fn dispute_evidence(&self, id: &str) -> Result<Option<Vec<u8>>>;
    /// Undecided disputes, by id.
    fn open_disputes(&self) -> Result<Vec<DisputeRecord>>;
    /// A restaker's bonds locked in open disputes, in one asset.
    fn locked(&self, restaker: &Key, asset: &str) -> Result<u128>;
    /// Deposited (not queued) balance.
    fn balance(&self, restaker: &Key, asset: &str) -> Result<u128>;
    /// Queued withdrawals of a restaker, by id.
    fn withdrawals(&self, restaker: &Key) -> Result<Vec<Withdrawal>>;
    /// The operator a restaker delegates to.
    fn delegation(&self, restaker: &Key) -> Result<Option<Key>>;
    /// An operator's state.
    fn operator(&self, operator: &Key) -> Result<Option<OperatorState>>;
    /// Last accepted nonce of an actor.
    fn last_nonce(&self, actor: &Key) -> Result<Option<u64>>;
    /// Per asset: `magnitude_at(now) × Σ delegators' (deposits + queued withdrawals)`.
    fn slashable_stake(&self, operator: &Key, now_ms: u64) -> Result<BTreeMap<String, u128>>;
    /// Jailed by a slash, or slashable stake worth less than `min_stake_value`.
    fn is_jailed(&self, operator: &Key, now_ms: u64) -> Result<bool>;
    /// Up to `limit` events from `seq` on.
    fn events_from(&self, seq: u64, limit: usize) -> Result<Vec<Event>>;
    /// The whole state.
    fn snapshot(&self) -> Result<Snapshot>;
}

/// Storage behind the rules. Implementations only store; they decide nothing.
pub(crate) trait Store {
    fn asset(&self, name: &str) -> Result<Option<AssetState>>;
    fn put_asset(&mut self, name: &str, asset: &AssetState) -> Result<()>;
    fn balance(&self, who: &Key, asset: &str) -> Result<u128>;
    /// Zero removes the entry.
    fn set_balance(&mut self, who: &Key, asset: &str, amount: u128) -> Result<()>;
    /// Non-zero balances, by asset name.
    fn balances_of(&self, who: &Key) -> Result<Vec<(String, u128)>>;
    fn delegation(&self, who: &Key) -> Result<Option<Key>>;
    fn set_delegation(&mut self, who: &Key, operator: &Key) -> Result<()>;
    /// Sorted by key.
    fn delegators(&self, operator: &Key) -> Result<Vec<Key>>;
    fn withdrawal(&self, id: u64) -> Result<Option<Withdrawal>>;
    /// Sorted by id.
    fn withdrawals_of(&self, who: &Key) -> Result<Vec<Withdrawal>>;
    /// Ids increase from 1 and are never reused.
    fn insert_withdrawal(
        &mut self,
        who: &Key,
        asset: &str,
        amount: u128,
        claimable_at_ms: u64,
    ) -> Result<u64>;
    fn set_withdrawal_amount(&mut self, id: u64, amount: u128) -> Result<()>;
    fn remove_withdrawal(&mut self, id: u64) -> Result<()>;
    fn operator(&self, key: &Key) -> Result<Option<OperatorState>>;
    fn put_operator(&mut self, key: &Key, operator: &OperatorState) -> Result<()>;
    fn nonce(&self, actor: &Key) -> Result<Option<u64>>;
    fn set_nonce(&mut self, actor: &Key, nonce: u64) -> Result<()>;
    /// The seq of the slash event that punished this offence, if any.
    fn offence(&self, id: &str) -> Result<Option<u64>>;
    /// Records that the slash event `seq` punished offence `id`.
    fn insert_offence(&mut self, id: &str, seq: u64) -> Result<()>;
    fn dispute(&self, id: &str) -> Result<Option<DisputeRecord>>;
    /// Open disputes of `who`, by id.
    fn open_disputes_of(&self, who: &Key) -> Result<Vec<DisputeRecord>>;
    /// All open disputes, by id.
    fn open_disputes(&self) -> Result<Vec<DisputeRecord>>;
    fn dispute_evidence(&self, id: &str) -> Result<Option<Vec<u8>>>;
    /// A new dispute with its evidence; a duplicate id fails.
    fn insert_dispute(&mut self, d: &DisputeRecord, evidence: &[u8]) -> Result<()>;
    /// Stores `locked` and `closed` of an existing dispute.
    fn update_dispute(&mut self, d: &DisputeRecord) -> Result<()>;
    fn last_event(&self) -> Result<Option<(u64, [u8; 32])>>;
    fn append_event(&mut self, event: &Event) -> Result<()>;
    fn events_from(&self, seq: u64, limit: usize) -> Result<Vec<Event>>;
    fn snapshot(&self) -> Result<Snapshot>;
}

/// What the rules need besides the store.
pub(crate) struct Ctx<'a> {
    pub config: &'a LedgerConfig,
    pub network_id: &'a [u8; 32],
    pub signer: &'a SigningKey,
}

fn add(a: u128, b: u128, what: &'static str) -> Result<u128> {
    a.checked_add(b).ok_or(LedgerError::Overflow(what))
}

/// Subtractions that a correct ledger never underflows: an underflow is a broken invariant.
fn sub_invariant(a: u128, b: u128, what: &str) -> Result<u128> {
    a.checked_sub(b)
        .ok_or_else(|| LedgerError::Conservation(format!("{what} would go negative")))
}

/// `(floor(s·p/d), (s·p) mod d)` without forming `s·p`, for `p <= d <= 10^12`.
fn mul_ratio(s: u128, p: u128, d: u128) -> Result<(u128, u128)> {
    let overflow = || LedgerError::Overflow("pro-rata share");
    let (q, r) = (s / d, s % d);
    // r < d and p <= d, so r·p < 10^24; q·p <= s.
    let rp = r.checked_mul(p).ok_or_else(overflow)?;
    let whole = q
        .checked_mul(p)
        .and_then(|x| x.checked_add(rp / d))
        .ok_or_else(overflow)?;
    Ok((whole, rp % d))
}

/// Splits `target` over `stakes` in proportion `p/d` by largest remainder (see
/// [`SlashOutcome`]). `target` defaults to `floor(Σ stakes·p/d)`.
fn apportion(stakes: &[u128], p: u128, d: u128, target: Option<u128>) -> Result<Vec<u128>> {
    let mut cuts = Vec::with_capacity(stakes.len());
    let mut fracs = Vec::with_capacity(stakes.len());
    let (mut sum_cut, mut sum_frac) = (0u128, 0u128);
    for &s in stakes {
        let (c, f) = mul_ratio(s, p, d)?;
        sum_cut = add(sum_cut, c, "slash total")?;
        sum_frac = add(sum_frac, f, "slash remainder")?;
        cuts.push(c);
        fracs.push(f);
    }
    let target = match target {
        Some(t) => t,
        None => add(sum_cut, sum_frac / d, "slash total")?,
    };
    let mut rest = sub_invariant(target, sum_cut, "rounding remainder")?;
    let mut order: Vec<usize> = (0..stakes.len()).filter(|&i| fracs[i] > 0).collect();
    order.sort_by(|&a, &b| {
        fracs[b]
            .cmp(&fracs[a])
            .then(stakes[b].cmp(&stakes[a]))
            .then(a.cmp(&b))
    });
    for i in order {
        if rest == 0 {
            break;
        }
        cuts[i] = add(cuts[i], 1, "slash cut")?;
        rest -= 1;
    }
    if rest != 0 {
        return Err(LedgerError::Conservation(
            "rounding remainder larger than the number of stakes".into(),
        ));
    }
    Ok(cuts)
}

/// One delegator's stake in one asset: the deposit and each queued withdrawal.
struct Position {
    restaker: Key,
    balance: u128,
    withdrawals: Vec<(u64, u128)>,
    /// Bonds locked in open disputes: (dispute id, locked).
    locks: Vec<(String, u128)>,
}

impl Position {
    fn total(&self) -> Result<u128> {
        let queued = self
            .withdrawals
            .iter()
            .try_fold(self.balance, |acc, (_, w)| add(acc, *w, "delegated stake"))?;
        self.locks
            .iter()
            .try_fold(queued, |acc, (_, l)| add(acc, *l, "delegated stake"))
    }
}

/// Per asset, the positions of every delegator of `operator`, in key order.
fn positions(s: &dyn Store, operator: &Key) -> Result<BTreeMap<String, Vec<Position>>> {
    let mut out: BTreeMap<String, Vec<Position>> = BTreeMap::new();
    for d in s.delegators(operator)? {
        let mut mine: BTreeMap<String, Position> = BTreeMap::new();
        let blank = || Position {
            restaker: d,
            balance: 0,
            withdrawals: Vec::new(),
            locks: Vec::new(),
        };
        for (asset, amount) in s.balances_of(&d)? {
            mine.entry(asset).or_insert_with(blank).balance = amount;
        }
        for w in s.withdrawals_of(&d)? {
            mine.entry(w.asset)
                .or_insert_with(blank)
                .withdrawals
                .push((w.id, w.amount));
        }
        for l in s.open_disputes_of(&d)? {
            mine.entry(l.asset)
                .or_insert_with(blank)
                .locks
                .push((l.id, l.locked));
        }
        for (asset, p) in mine {
            out.entry(asset).or_default().push(p);
        }
    }
    Ok(out)
}

pub(crate) fn slashable_stake(
    s: &dyn Store,
    operator: &Key,
    now_ms: u64,
) -> Result<BTreeMap<String, u128>> {
    let op = s
        .operator(operator)?
        .ok_or(LedgerError::UnknownOperator(*operator))?;
    let magnitude = u128::from(op.magnitude_at(now_ms));
    let mut out = BTreeMap::new();
    for (asset, ps) in positions(s, operator)? {
        let delegated = ps
            .iter()
            .try_fold(0u128, |acc, p| add(acc, p.total()?, "delegated stake"))?;
        out.insert(asset, mul_ratio(delegated, magnitude, PPM_U128)?.0);
    }
    Ok(out)
}

pub(crate) fn locked(s: &dyn Store, who: &Key, asset: &str) -> Result<u128> {
    s.open_disputes_of(who)?
        .iter()
        .filter(|d| d.asset == asset)
        .try_fold(0u128, |acc, d| add(acc, d.locked, "locked"))
}

pub(crate) fn is_jailed(
    s: &dyn Store,
    cx: &LedgerConfig,
    operator: &Key,
    now_ms: u64,
) -> Result<bool> {
    let op = s
        .operator(operator)?
        .ok_or(LedgerError::UnknownOperator(*operator))?;
    if op.jailed {
        return Ok(true);
    }
    // A value only compared with the minimum: saturating is exact enough here (anything
    // that saturates is far above any sensible minimum), and no balance is derived from it.
    let mut value = 0u128;
    for (asset, amount) in slashable_stake(s, operator, now_ms)? {
        let price = s
            .asset(&asset)?
            .ok_or_else(|| LedgerError::Corrupt(format!("stake in unregistered asset {asset}")))?
            .price_per_unit;
        value = value.saturating_add(amount.saturating_mul(price));
    }
    Ok(value < cx.min_stake_value())
}

fn valid_offence_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn valid_asset_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn known_asset(s: &dyn Store, asset: &str) -> Result<AssetState> {
    s.asset(asset)?
        .ok_or_else(|| LedgerError::UnknownAsset(asset.to_owned()))
}

fn positive(amount: u128) -> Result<()> {
    if amount == 0 {
        return Err(LedgerError::Invalid(
            "amount must be greater than zero".into(),
        ));
    }
    Ok(())
}

fn known_operator(s: &dyn Store, key: &Key) -> Result<OperatorState> {
    s.operator(key)?.ok_or(LedgerError::UnknownOperator(*key))
}

/// The rules. Runs inside the caller's transaction (for [`SqliteLedger`], the request's
/// own savepoint inside its batch's transaction); any error leaves the caller to roll
/// back, so nothing a refused request did is kept (not even its nonce).
///
/// `attachment` is stored beside `open_dispute` (the evidence) and `close_dispute` (the
/// report); every other kind refuses one.
pub(crate) fn apply_request(
    s: &mut dyn Store,
    cx: &Ctx<'_>,
    req: &SignedRequest,
    attachment: &[u8],
    now_ms: u64,
) -> Result<Applied> {
    let admin = Key::of(cx.signer);
    req.authenticate(cx.network_id, &admin)?;
    // Check and record the nonce in the same transaction as the change: two copies of one
    // request racing on two connections cannot both pass.
    if let Some(last) = s.nonce(&req.actor)? {
        if req.nonce <= last {
            return Err(LedgerError::ReplayedNonce {
                actor: req.actor,
                nonce: req.nonce,
                last,
            });
        }
    }
    s.set_nonce(&req.actor, req.nonce)?;
    let me = req.actor;
    let delay = cx.config.withdrawal_delay_ms();
    let (seq, prev_hash) = match s.last_event()? {
        None => (0, [0; 32]),
        Some((seq, hash)) => (
            seq.checked_add(1)
                .ok_or(LedgerError::Overflow("event seq"))?,
            hash,
        ),
    };
    if !attachment.is_empty()
        && !matches!(
            req.body,
            RequestBody::OpenDispute { .. } | RequestBody::CloseDispute { .. }
        )
    {
        return Err(LedgerError::Invalid(format!(
            "{} takes no attachment",
            req.body.kind()
        )));
    }
    let outcome = match &req.body {
        RequestBody::RegisterAsset {
            asset,
            price_per_unit,
        } => {
            if !valid_asset_name(asset) {
                return Err(LedgerError::Invalid(format!(
                    "asset name {asset:?}: use 1 to 32 characters of A-Z a-z 0-9 . _ -"
                )));
            }
            if s.asset(asset)?.is_some() {
                return Err(LedgerError::AssetExists(asset.clone()));
            }
            s.put_asset(
                asset,
                &AssetState {
                    price_per_unit: *price_per_unit,
                    total: 0,
                },
            )?;
            Outcome::Done
        }
        RequestBody::Deposit { asset, amount } => {
            positive(*amount)?;
            let mut a = known_asset(s, asset)?;
            a.total = add(a.total, *amount, "asset total")?;
            let balance = add(s.balance(&me, asset)?, *amount, "balance")?;
            s.put_asset(asset, &a)?;
            s.set_balance(&me, asset, balance)?;
            Outcome::Done
        }
        RequestBody::Delegate { operator } => {
            known_operator(s, operator)?;
            match s.delegation(&me)? {
                Some(current) if current == *operator => {
                    return Err(LedgerError::rule(format!(
                        "{me} already delegates to {operator}"
                    )))
                }
                // Moving queued withdrawals to another operator would let them escape a
                // slash of the current one.
                Some(_) if !s.withdrawals_of(&me)?.is_empty() => {
                    return Err(LedgerError::rule(
                        "re-delegating requires no pending withdrawals: complete them first",
                    ))
                }
                // The same for bonds locked in open disputes: they are stake too.
                Some(_) if !s.open_disputes_of(&me)?.is_empty() => {
                    return Err(LedgerError::rule(
                        "re-delegating requires no bond locked in an open dispute: wait for \
                         its verdict",
                    ))
                }
                _ => {}
            }
            s.set_delegation(&me, operator)?;
            Outcome::Done
        }
        RequestBody::QueueWithdrawal { asset, amount } => {
            positive(*amount)?;
            known_asset(s, asset)?;
            let available = s.balance(&me, asset)?;
            if available == 0
                && s.delegation(&me)?.is_none()
                && s.balances_of(&me)?.is_empty()
                && s.withdrawals_of(&me)?.is_empty()
                && s.open_disputes_of(&me)?.is_empty()
            {
                return Err(LedgerError::UnknownRestaker(me));
            }
            let left =
                available
                    .checked_sub(*amount)
                    .ok_or_else(|| LedgerError::InsufficientBalance {
                        restaker: me,
                        asset: asset.clone(),
                        available,
                        requested: *amount,
                    })?;
            let claimable_at_ms = now_ms
                .checked_add(delay)
                .ok_or(LedgerError::Overflow("claimable time"))?;
            s.set_balance(&me, asset, left)?;
            let id = s.insert_withdrawal(&me, asset, *amount, claimable_at_ms)?;
            Outcome::WithdrawalQueued {
                id,
                claimable_at_ms,
            }
        }
        RequestBody::CompleteWithdrawal { withdrawal_id } => {
            let id = *withdrawal_id;
            let w = s
                .withdrawal(id)?
                .filter(|w| w.restaker == me)
                .ok_or(LedgerError::UnknownWithdrawal { restaker: me, id })?;
            if now_ms < w.claimable_at_ms {
                return Err(LedgerError::NotYetClaimable {
                    id,
                    claimable_at_ms: w.claimable_at_ms,
                    now_ms,
                });
            }
            let mut a = known_asset(s, &w.asset)?;
            a.total = sub_invariant(a.total, w.amount, "asset total")?;
            s.put_asset(&w.asset, &a)?;
            s.remove_withdrawal(id)?;
            Outcome::WithdrawalCompleted {
                id,
                asset: w.asset,
                amount: w.amount,
            }
        }
        RequestBody::RegisterOperator { peer_key } => {
            if s.operator(&me)?.is_some() {
                return Err(LedgerError::OperatorExists(me));
            }
            s.put_operator(
                &me,
                &OperatorState {
                    peer_key: *peer_key,
                    magnitude_ppm: 0,
                    pending: None,
                    jailed: false,
                },
            )?;
            Outcome::Done
        }
        RequestBody::Allocate { magnitude_ppm } => {
            let mut op = known_operator(s, &me)?;
            check_ppm("magnitude_ppm", *magnitude_ppm)?;
            op.settle(now_ms);
            if *magnitude_ppm < op.magnitude_ppm {
                return Err(LedgerError::rule(format!(
                    "allocate cannot lower the magnitude ({} ppm now); use deallocate, \
                     which takes effect after withdrawal_delay_ms ({delay} ms)",
                    op.magnitude_ppm
                )));
            }
            op.magnitude_ppm = *magnitude_ppm;
            op.pending = None;
            s.put_operator(&me, &op)?;
            Outcome::Done
        }
        RequestBody::Deallocate { magnitude_ppm } => {
            let mut op = known_operator(s, &me)?;
            op.settle(now_ms);
            if *magnitude_ppm >= op.magnitude_ppm {
                return Err(LedgerError::rule(format!(
                    "deallocate must lower the magnitude ({} ppm now); use allocate to raise it",
                    op.magnitude_ppm
                )));
            }
            let effective_at_ms = now_ms
                .checked_add(delay)
                .ok_or(LedgerError::Overflow("deallocation time"))?;
            op.pending = Some(PendingDeallocation {
                magnitude_ppm: *magnitude_ppm,
                effective_at_ms,
            });
            s.put_operator(&me, &op)?;
            Outcome::Done
        }
        RequestBody::Slash {
            operator,
            fraction_ppm,
            bounty_ppm,
            challenger,
            jail,
            offence,
        } => {
            check_slash(s, offence.as_deref(), *fraction_ppm, *bounty_ppm)?;
            Outcome::Slashed(slash(
                s,
                operator,
                *fraction_ppm,
                *bounty_ppm,
                challenger,
                *jail,
                now_ms,
            )?)
        }
        RequestBody::ForfeitBond {
            challenger,
            asset,
            amount,
            dispute,
        } => forfeit_bond(s, challenger, asset, *amount, dispute)?,
        RequestBody::OpenDispute {
            dispute,
            challenger,
            asset,
            amount,
            evidence,
        } => {
            let d = DisputeRecord {
                id: dispute.clone(),
                challenger: *challenger,
                asset: asset.clone(),
                bond: *amount,
                locked: *amount,
                opened_seq: seq,
                opened_at_ms: now_ms,
                evidence: evidence.clone(),
                closed: None,
            };
            open_dispute(s, &admin, d, attachment)?
        }
        RequestBody::CloseDispute { dispute, ruling } => {
            close_dispute(s, dispute, ruling, attachment, seq, now_ms)?
        }
    };
    let conservation = match &outcome {
        Outcome::Slashed(o) => o
            .assets
            .iter()
            .map(|(a, x)| (a.clone(), x.conservation))
            .collect(),
        Outcome::BondForfeited {
            asset,
            conservation,
            ..
        }
        | Outcome::BondLocked {
            asset,
            conservation,
            ..
        } => BTreeMap::from([(asset.clone(), *conservation)]),
        Outcome::DisputeClosed {
            asset,
            conservation,
            slash,
            ..
        } => {
            let mut m: BTreeMap<String, Conservation> = slash
                .iter()
                .flat_map(|o| o.assets.iter().map(|(a, x)| (a.clone(), x.conservation)))
                .collect();
            // Where the slash touched the bond's asset its equation (the delegators') is
            // kept; unlocking the bond changes no holdings there.
            m.entry(asset.clone()).or_insert(*conservation);
            m
        }
        _ => BTreeMap::new(),
    };
    let payload = serde_json::json!({ "request": req, "result": outcome });
    let event = Event::seal(
        seq,
        prev_hash,
        now_ms,
        req.body.kind(),
        payload,
        conservation,
        cx.signer,
    )?;
    s.append_event(&event)?;
    match &req.body {
        RequestBody::Slash {
            offence: Some(id), ..
        }
        | RequestBody::ForfeitBond { dispute: id, .. }
        | RequestBody::CloseDispute {
            ruling: Ruling::Slashed { offence: id, .. },
            ..
        } => s.insert_offence(id, event.seq)?,
        _ => {}
    }
    Ok(Applied { outcome, event })
}

fn check_ppm(what: &str, v: u32) -> Result<()> {
    if v > PPM {
        return Err(LedgerError::Invalid(format!(
            "{what} {v} is above 1000000 (100%)"
        )));
    }
    Ok(())
}

/// Burns `amount` of `challenger`'s deposited balance for the dismissed `dispute`.
fn forfeit_bond(
    s: &mut dyn Store,
    challenger: &Key,
    asset: &str,
    amount: u128,
    dispute: &str,
) -> Result<Outcome> {
    // Like offences: checked here and recorded with the event by the caller, in the same
    // transaction, so a replayed or raced dismissal burns the bond once.
    if !valid_offence_id(dispute) {
        return Err(LedgerError::Invalid(format!(
            "dispute {dispute:?}: use 64 lowercase hex characters"
        )));
    }
    if let Some(event_seq) = s.offence(dispute)? {
        return Err(LedgerError::AlreadyForfeited {
            dispute: dispute.to_owned(),
            event_seq,
        });
    }
    if s.dispute(dispute)?.is_some() {
        return Err(LedgerError::rule(format!(
            "dispute {dispute} holds its bond in the ledger (open_dispute): decide it with \
             close_dispute"
        )));
    }
    positive(amount)?;
    let mut a = known_asset(s, asset)?;
    let before = s.balance(challenger, asset)?;
    let insufficient = || LedgerError::InsufficientBalance {
        restaker: *challenger,
        asset: asset.to_owned(),
        available: before,
        requested: amount,
    };
    let after = before.checked_sub(amount).ok_or_else(insufficient)?;
    s.set_balance(challenger, asset, after)?;
    a.total = sub_invariant(a.total, amount, "asset total")?;
    s.put_asset(asset, &a)?;
    // The equation in the event must describe what is stored.
    let stored = s.balance(challenger, asset)?;
    if stored != after {
        return Err(LedgerError::Conservation(format!(
            "bond of {challenger} in {asset}: stored {stored}, expected {after}"
        )));
    }
    Ok(Outcome::BondForfeited {
        challenger: *challenger,
        asset: asset.to_owned(),
        amount,
        conservation: Conservation {
            before,
            after,
            burned: amount,
            rewarded: 0,
        },
    })
}

/// The checks of a slash before anything is cut. The offence is checked here and
/// recorded by the caller with the event, in the same transaction: two verifiers racing to
/// punish one offence cannot both succeed.
fn check_slash(
    s: &dyn Store,
    offence: Option<&str>,
    fraction_ppm: u32,
    bounty_ppm: u32,
) -> Result<()> {
    if let Some(id) = offence {
        if !valid_offence_id(id) {
            return Err(LedgerError::Invalid(format!(
                "offence {id:?}: use 64 lowercase hex characters"
            )));
        }
        if let Some(event_seq) = s.offence(id)? {
            return Err(LedgerError::AlreadySlashed {
                offence: id.to_owned(),
                event_seq,
            });
        }
    }
    if fraction_ppm == 0 {
        return Err(LedgerError::Invalid(
            "fraction_ppm must be at least 1".into(),
        ));
    }
    check_ppm("fraction_ppm", fraction_ppm)?;
    if bounty_ppm >= PPM {
        // A full bounty would let an operator challenge itself and launder stake.
        return Err(LedgerError::Invalid(
            "bounty_ppm must be below 1000000: part of every slash is burned".into(),
        ));
    }
    Ok(())
}

/// What `who` holds of `asset` outside queued withdrawals: the deposit and the bonds
/// locked in its open disputes.
fn holdings(s: &dyn Store, who: &Key, asset: &str) -> Result<u128> {
    s.open_disputes_of(who)?
        .iter()
        .filter(|d| d.asset == asset)
        .try_fold(s.balance(who, asset)?, |acc, d| {
            add(acc, d.locked, "holdings")
        })
}

/// Locks the bond of a new dispute `d` (as `open_dispute` describes it).
fn open_dispute(
    s: &mut dyn Store,
    admin: &Key,
    d: DisputeRecord,
    evidence: &[u8],
) -> Result<Outcome> {
    if !valid_offence_id(&d.id) {
        return Err(LedgerError::Invalid(format!(
            "dispute {:?}: use 64 lowercase hex characters",
            d.id
        )));
    }
    // One id, one dispute: checked here and inserted below, in the same transaction.
    if let Some(old) = s.dispute(&d.id)? {
        return Err(LedgerError::DisputeExists {
            dispute: d.id,
            event_seq: old.opened_seq,
            open: old.closed.is_none(),
        });
    }
    if let Some(event_seq) = s.offence(&d.id)? {
        return Err(LedgerError::AlreadyForfeited {
            dispute: d.id,
            event_seq,
        });
    }
    if d.challenger == *admin {
        return Err(LedgerError::Invalid(
            "the verifier (admin) key cannot hold a bond".into(),
        ));
    }
    positive(d.bond)?;
    known_asset(s, &d.asset)?;
    if !valid_offence_id(&d.evidence) {
        return Err(LedgerError::Invalid(format!(
            "evidence {:?}: use the SHA-256 of the evidence, 64 lowercase hex characters",
            d.evidence
        )));
    }
    if evidence.len() > MAX_EVIDENCE_BYTES {
        return Err(LedgerError::Invalid(format!(
            "evidence of {} bytes is over the limit of {MAX_EVIDENCE_BYTES}",
            evidence.len()
        )));
    }
    use sha2::Digest as _;
    if hex::encode(sha2::Sha256::digest(evidence)) != d.evidence {
        return Err(LedgerError::Invalid(
            "the attached evidence does not have the SHA-256 the request names".into(),
        ));
    }
    let before = holdings(s, &d.challenger, &d.asset)?;
    let free = s.balance(&d.challenger, &d.asset)?;
    let left = free
        .checked_sub(d.bond)
        .ok_or_else(|| LedgerError::InsufficientBalance {
            restaker: d.challenger,
            asset: d.asset.clone(),
            available: free,
            requested: d.bond,
        })?;
    s.set_balance(&d.challenger, &d.asset, left)?;
    s.insert_dispute(&d, evidence)?;
    // The equation in the event must describe what is stored: the bond is still held.
    let after = holdings(s, &d.challenger, &d.asset)?;
    if after != before {
        return Err(LedgerError::Conservation(format!(
            "lock of {} in {}: holdings {before} became {after}",
            d.challenger, d.asset
        )));
    }
    Ok(Outcome::BondLocked {
        dispute: d.id,
        challenger: d.challenger,
        asset: d.asset,
        amount: d.bond,
        conservation: Conservation {
            before,
            after,
            burned: 0,
            rewarded: 0,
        },
    })
}

/// Decides the open dispute `id`: the ruling's slash if any, then the bond unlocked or
/// burned, and the dispute closed by event `seq`.
fn close_dispute(
    s: &mut dyn Store,
    id: &str,
    ruling: &Ruling,
    report: &[u8],
    seq: u64,
    now_ms: u64,
) -> Result<Outcome> {
    let d = s
        .dispute(id)?
        .ok_or_else(|| LedgerError::UnknownDispute(id.to_owned()))?;
    if let Some(c) = &d.closed {
        return Err(LedgerError::DisputeClosed {
            dispute: id.to_owned(),
            event_seq: c.seq,
        });
    }
    if report.len() > MAX_REPORT_BYTES {
        return Err(LedgerError::Invalid(format!(
            "report of {} bytes is over the limit of {MAX_REPORT_BYTES}",
            report.len()
        )));
    }
    let report = match report {
        [] => None,
        bytes => Some(
            String::from_utf8(bytes.to_vec())
                .map_err(|_| LedgerError::Invalid("the report is not UTF-8".into()))?,
        ),
    };
    let (verdict, slashed) = match ruling {
        Ruling::Slashed {
            operator,
            fraction_ppm,
            bounty_ppm,
            jail,
            offence,
        } => {
            check_slash(s, Some(offence), *fraction_ppm, *bounty_ppm)?;
            let o = slash(
                s,
                operator,
                *fraction_ppm,
                *bounty_ppm,
                &d.challenger,
                *jail,
                now_ms,
            )?;
            (DisputeVerdict::Slashed, Some(o))
        }
        Ruling::AlreadySlashed { offence } => {
            if !valid_offence_id(offence) || s.offence(offence)?.is_none() {
                return Err(LedgerError::rule(format!(
                    "offence {offence:?} was never slashed: rule `slashed` instead"
                )));
            }
            (DisputeVerdict::AlreadySlashed, None)
        }
        Ruling::Dismissed => (DisputeVerdict::Dismissed, None),
        Ruling::Void => (DisputeVerdict::Void, None),
    };
    // Read again: the slash above may have cut the bond (a challenger delegating to the
    // operator it proved wrong loses its share like every other delegator).
    let mut d = s
        .dispute(id)?
        .ok_or_else(|| LedgerError::Corrupt(format!("dispute {id} vanished")))?;
    let before = holdings(s, &d.challenger, &d.asset)?;
    let (burned, released) = match verdict {
        DisputeVerdict::Dismissed => (d.locked, 0),
        _ => (0, d.locked),
    };
    if released > 0 {
        let credited = add(s.balance(&d.challenger, &d.asset)?, released, "balance")?;
        s.set_balance(&d.challenger, &d.asset, credited)?;
    }
    if burned > 0 {
        let mut a = known_asset(s, &d.asset)?;
        a.total = sub_invariant(a.total, burned, "asset total")?;
        s.put_asset(&d.asset, &a)?;
    }
    d.locked = 0;
    d.closed = Some(DisputeClosed {
        verdict,
        seq,
        at_ms: now_ms,
        report,
    });
    s.update_dispute(&d)?;
    let after = holdings(s, &d.challenger, &d.asset)?;
    if after.checked_add(burned) != Some(before) {
        return Err(LedgerError::Conservation(format!(
            "closing dispute {id}: holdings {before} became {after}, {burned} burned"
        )));
    }
    Ok(Outcome::DisputeClosed {
        dispute: d.id,
        verdict,
        challenger: d.challenger,
        asset: d.asset,
        burned,
        released,
        conservation: Conservation {
            before,
            after,
            burned,
            rewarded: 0,
        },
        slash: slashed,
    })
}

fn slash(
    s: &mut dyn Store,
    operator: &Key,
    fraction_ppm: u32,
    bounty_ppm: u32,
    challenger: &Key,
    jail: bool,
    now_ms: u64,
) -> Result<SlashOutcome> {
    let mut op = known_operator(s, operator)?;
    // Not settled first on purpose: until a deallocation is effective, the old magnitude
    // is what is at stake.
    let magnitude_ppm = op.magnitude_at(now_ms);
    let p = u128::from(magnitude_ppm) * u128::from(fraction_ppm);
    let mut assets = BTreeMap::new();
    for (asset, ps) in positions(s, operator)? {
        let totals = ps.iter().map(Position::total).collect::<Result<Vec<_>>>()?;
        let before = totals
            .iter()
            .try_fold(0u128, |acc, t| add(acc, *t, "delegated stake"))?;
        let cuts = apportion(&totals, p, PPM2, None)?;
        let mut slashed = 0u128;
        let mut by_restaker = BTreeMap::new();
        for ((pos, cut), total) in ps.iter().zip(&cuts).zip(&totals) {
            slashed = add(slashed, *cut, "slashed")?;
            by_restaker.insert(pos.restaker, *cut);
            if *cut == 0 {
                continue;
            }
            let mut buckets = vec![pos.balance];
            buckets.extend(pos.withdrawals.iter().map(|(_, a)| *a));
            buckets.extend(pos.locks.iter().map(|(_, a)| *a));
            let parts = apportion(&buckets, p, PPM2, Some(*cut))?;
            debug_assert_eq!(buckets.iter().sum::<u128>(), *total);
            s.set_balance(
                &pos.restaker,
                &asset,
                sub_invariant(pos.balance, parts[0], "balance")?,
            )?;
            let (queued, locked) = parts[1..].split_at(pos.withdrawals.len());
            for ((id, amount), part) in pos.withdrawals.iter().zip(queued) {
                s.set_withdrawal_amount(*id, sub_invariant(*amount, *part, "withdrawal")?)?;
            }
            // A bond locked in a dispute is stake like any other: locking it is no escape.
            for ((id, amount), part) in pos.locks.iter().zip(locked) {
                if *part == 0 {
                    continue;
                }
                let mut d = s
                    .dispute(id)?
                    .ok_or_else(|| LedgerError::Corrupt(format!("dispute {id} vanished")))?;
                d.locked = sub_invariant(*amount, *part, "locked bond")?;
                s.update_dispute(&d)?;
            }
        }
        let (q, r) = (slashed / PPM_U128, slashed % PPM_U128);
        let rewarded = add(
            q.checked_mul(u128::from(bounty_ppm))
                .ok_or(LedgerError::Overflow("bounty"))?,
            r * u128::from(bounty_ppm) / PPM_U128,
            "bounty",
        )?;
        let burned = sub_invariant(slashed, rewarded, "burned")?;
        let after = sub_invariant(before, slashed, "delegated stake")?;
        // Re-read what the store now holds before crediting the reward: the equation in
        // the event must describe the stored state, not our intentions.
        let stored_after = positions(s, operator)?
            .remove(&asset)
            .unwrap_or_default()
            .iter()
            .try_fold(0u128, |acc, p| add(acc, p.total()?, "delegated stake"))?;
        if stored_after != after {
            return Err(LedgerError::Conservation(format!(
                "slash of {operator} in {asset}: stored {stored_after}, expected {after}"
            )));
        }
        if rewarded > 0 {
            let credited = add(s.balance(challenger, &asset)?, rewarded, "balance")?;
            s.set_balance(challenger, &asset, credited)?;
        }
        let mut a = known_asset(s, &asset)?;
        a.total = sub_invariant(a.total, burned, "asset total")?;
        s.put_asset(&asset, &a)?;
        assets.insert(
            asset,
            AssetSlash {
                conservation: Conservation {
                    before,
                    after,
                    burned,
                    rewarded,
                },
                cuts: by_restaker,
            },
        );
    }
    if jail && !op.jailed {
        op.jailed = true;
        s.put_operator(operator, &op)?;
    }
    Ok(SlashOutcome {
        operator: *operator,
        magnitude_ppm,
        assets,
        jailed: jail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_refuses_delay_not_above_window() {
        assert!(LedgerConfig::new(10, 10, 0).is_err());
        assert!(LedgerConfig::new(10, 9, 0).is_err());
        assert!(LedgerConfig::new(10, 11, 0).is_ok());
    }

    #[test]
    fn mul_ratio_is_exact_at_the_top_of_the_range() {
        assert_eq!(mul_ratio(u128::MAX, PPM2, PPM2).unwrap(), (u128::MAX, 0));
        assert_eq!(mul_ratio(u128::MAX, 0, PPM2).unwrap(), (0, 0));
        let (q, r) = mul_ratio(7, 1, 2).unwrap();
        assert_eq!((q, r), (3, 1));
    }

    #[test]
    fn apportion_spreads_the_remainder_one_unit_each() {
        // Three stakes of 1 at 99.9999%: the exact total is 2.999997, so 2 units go, one
        // each from two delegators (never 2 from one delegator that only has 1).
        let cuts = apportion(&[1, 1, 1], PPM2 - 1, PPM2, None).unwrap();
        assert_eq!(cuts.iter().sum::<u128>(), 2);
        assert!(cuts.iter().all(|c| *c <= 1));
        // Full slash takes everything exactly.
        assert_eq!(
            apportion(&[5, 0, 9], PPM2, PPM2, None).unwrap(),
            vec![5, 0, 9]
        );
        // Halving odd stakes: 1.5 + 1.5 = 3, the tie goes to the larger stake... equal
        // here, so to the first.
        assert_eq!(
            apportion(&[3, 3], PPM2 / 2, PPM2, None).unwrap(),
            vec![2, 1]
        );
    }
}
