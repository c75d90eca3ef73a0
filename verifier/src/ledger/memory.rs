//! [`MemoryLedger`]: the same rules over plain maps, for tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ed25519_dalek::SigningKey;

use super::{
    apply_request, AssetState, CollateralLedger, Ctx, DisputeRecord, LedgerConfig, OperatorState,
    Snapshot, Store, Withdrawal,
};
use crate::error::Result;
use crate::events::Event;
use crate::ledger::Applied;
use crate::requests::{Key, SignedRequest};

#[derive(Debug, Clone, Default)]
struct State {
    assets: BTreeMap<String, AssetState>,
    balances: BTreeMap<(Key, String), u128>,
    delegations: BTreeMap<Key, Key>,
    withdrawals: BTreeMap<u64, Withdrawal>,
    next_withdrawal: u64,
    operators: BTreeMap<Key, OperatorState>,
    nonces: BTreeMap<Key, u64>,
    offences: BTreeMap<String, u64>,
    /// Records and their evidence (shared: the state is copied per request).
    disputes: BTreeMap<String, (DisputeRecord, Arc<[u8]>)>,
    events: Vec<Event>,
}

/// An in-memory ledger. A request is applied to a copy of the state that replaces the
/// original only on success, which gives the same all-or-nothing behaviour as the SQLite
/// transaction (at the cost of a copy per request — fine for tests).
#[derive(Debug)]
pub struct MemoryLedger {
    state: Mutex<State>,
    config: LedgerConfig,
    network_id: [u8; 32],
    signer: SigningKey,
}

impl MemoryLedger {
    /// An empty ledger on `network_id` whose admin and event signer is `verifier`.
    pub fn new(config: LedgerConfig, network_id: [u8; 32], verifier: SigningKey) -> Self {
        MemoryLedger {
            state: Mutex::new(State::default()),
            config,
            network_id,
            signer: verifier,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only ever replaced whole after a successful apply, so a panic
        // elsewhere while holding the lock cannot leave it half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for State {
    fn asset(&self, name: &str) -> Result<Option<AssetState>> {
        Ok(self.assets.get(name).copied())
    }
    fn put_asset(&mut self, name: &str, asset: &AssetState) -> Result<()> {
        self.assets.insert(name.to_owned(), *asset);
        Ok(())
    }
    fn balance(&self, who: &Key, asset: &str) -> Result<u128> {
        Ok(self
            .balances
            .get(&(*who, asset.to_owned()))
            .copied()
            .unwrap_or(0))
    }
    fn set_balance(&mut self, who: &Key, asset: &str, amount: u128) -> Result<()> {
        let k = (*who, asset.to_owned());
        if amount == 0 {
            self.balances.remove(&k);
        } else {
            self.balances.insert(k, amount);
        }
        Ok(())
    }
    fn balances_of(&self, who: &Key) -> Result<Vec<(String, u128)>> {
        Ok(self
            .balances
            .range((*who, String::new())..)
            .take_while(|((k, _), _)| k == who)
            .map(|((_, a), v)| (a.clone(), *v))
            .collect())
    }
    fn delegation(&self, who: &Key) -> Result<Option<Key>> {
        Ok(self.delegations.get(who).copied())
    }
    fn set_delegation(&mut self, who: &Key, operator: &Key) -> Result<()> {
        self.delegations.insert(*who, *operator);
        Ok(())
    }
    fn delegators(&self, operator: &Key) -> Result<Vec<Key>> {
        Ok(self
            .delegations
            .iter()
            .filter(|(_, o)| *o == operator)
            .map(|(r, _)| *r)
            .collect())
    }
    fn withdrawal(&self, id: u64) -> Result<Option<Withdrawal>> {
        Ok(self.withdrawals.get(&id).cloned())
    }
    fn withdrawals_of(&self, who: &Key) -> Result<Vec<Withdrawal>> {
        Ok(self
            .withdrawals
            .values()
            .filter(|w| w.restaker == *who)
            .cloned()
            .collect())
    }
    fn insert_withdrawal(
        &mut self,
        who: &Key,
        asset: &str,
        amount: u128,
        claimable_at_ms: u64,
    ) -> Result<u64> {
        self.next_withdrawal = self
            .next_withdrawal
            .checked_add(1)
            .ok_or(crate::LedgerError::Overflow("withdrawal id"))?;
        let id = self.next_withdrawal;
        self.withdrawals.insert(
            id,
            Withdrawal {
                id,
                restaker: *who,
                asset: asset.to_owned(),
                amount,
                claimable_at_ms,
            },
        );
        Ok(id)
    }
    fn set_withdrawal_amount(&mut self, id: u64, amount: u128) -> Result<()> {
        if let Some(w) = self.withdrawals.get_mut(&id) {
            w.amount = amount;
        }
        Ok(())
    }
    fn remove_withdrawal(&mut self, id: u64) -> Result<()> {
        self.withdrawals.remove(&id);
        Ok(())
    }
    fn operator(&self, key: &Key) -> Result<Option<OperatorState>> {
        Ok(self.operators.get(key).cloned())
    }
    fn put_operator(&mut self, key: &Key, operator: &OperatorState) -> Result<()> {
        self.operators.insert(*key, operator.clone());
        Ok(())
    }
    fn nonce(&self, actor: &Key) -> Result<Option<u64>> {
        Ok(self.nonces.get(actor).copied())
    }
    fn set_nonce(&mut self, actor: &Key, nonce: u64) -> Result<()> {
        self.nonces.insert(*actor, nonce);
        Ok(())
    }
    fn offence(&self, id: &str) -> Result<Option<u64>> {
        Ok(self.offences.get(id).copied())
    }
    fn insert_offence(&mut self, id: &str, seq: u64) -> Result<()> {
        self.offences.insert(id.to_owned(), seq);
        Ok(())
    }
    fn dispute(&self, id: &str) -> Result<Option<DisputeRecord>> {
        Ok(self.disputes.get(id).map(|(d, _)| d.clone()))
    }
    fn open_disputes_of(&self, who: &Key) -> Result<Vec<DisputeRecord>> {
        Ok(self
            .disputes
            .values()
            .filter(|(d, _)| d.challenger == *who && d.closed.is_none())
            .map(|(d, _)| d.clone())
            .collect())
    }
    fn open_disputes(&self) -> Result<Vec<DisputeRecord>> {
        Ok(self
            .disputes
            .values()
            .filter(|(d, _)| d.closed.is_none())
            .map(|(d, _)| d.clone())
            .collect())
    }
    fn dispute_evidence(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.disputes.get(id).map(|(_, e)| e.to_vec()))
    }
    fn insert_dispute(&mut self, d: &DisputeRecord, evidence: &[u8]) -> Result<()> {
        if self.disputes.contains_key(&d.id) {
            return Err(crate::LedgerError::Corrupt(format!(
                "dispute {} stored twice",
                d.id
            )));
        }
        self.disputes
            .insert(d.id.clone(), (d.clone(), Arc::from(evidence)));
        Ok(())
    }
    fn update_dispute(&mut self, d: &DisputeRecord) -> Result<()> {
        let (stored, _) = self.disputes.get_mut(&d.id).ok_or_else(|| {
            crate::LedgerError::Corrupt(format!("dispute {} is not stored", d.id))
        })?;
        stored.locked = d.locked;
        stored.closed = d.closed.clone();
        Ok(())
    }
    fn last_event(&self) -> Result<Option<(u64, [u8; 32])>> {
        Ok(self.events.last().map(|e| (e.seq, e.hash)))
    }
    fn append_event(&mut self, event: &Event) -> Result<()> {
        self.events.push(event.clone());
        Ok(())
    }
    fn events_from(&self, seq: u64, limit: usize) -> Result<Vec<Event>> {
        let start = usize::try_from(seq).unwrap_or(usize::MAX);
        Ok(self
            .events
            .iter()
            .skip(start)
            .take(limit)
            .cloned()
            .collect())
    }
    fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot {
            assets: self.assets.clone(),
            balances: self.balances.clone(),
            delegations: self.delegations.clone(),
            withdrawals: self.withdrawals.clone(),
            operators: self.operators.clone(),
            nonces: self.nonces.clone(),
            offences: self.offences.clone(),
            disputes: self
                .disputes
                .iter()
                .map(|(k, (d, _))| (k.clone(), d.clone()))
                .collect(),
            event_count: self.events.len() as u64,
            last_hash: self.events.last().map(|e| e.hash),
        })
    }
}

impl CollateralLedger for MemoryLedger {
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
        let mut guard = self.lock();
        let mut next = guard.clone();
        let cx = Ctx {
            config: &self.config,
            network_id: &self.network_id,
            signer: &self.signer,
        };
        let applied = apply_request(&mut next, &cx, request, attachment, now_ms)?;
        *guard = next;
        Ok(applied)
    }
    fn dispute(&self, id: &str) -> Result<Option<DisputeRecord>> {
        Store::dispute(&*self.lock(), id)
    }
    fn dispute_evidence(&self, id: &str) -> Result<Option<Vec<u8>>> {
        Store::dispute_evidence(&*self.lock(), id)
    }
    fn open_disputes(&self) -> Result<Vec<DisputeRecord>> {
        Store::open_disputes(&*self.lock())
    }
    fn locked(&self, restaker: &Key, asset: &str) -> Result<u128> {
        super::locked(&*self.lock(), restaker, asset)
    }
    fn balance(&self, restaker: &Key, asset: &str) -> Result<u128> {
        self.lock().balance(restaker, asset)
    }
    fn withdrawals(&self, restaker: &Key) -> Result<Vec<Withdrawal>> {
        self.lock().withdrawals_of(restaker)
    }
    fn delegation(&self, restaker: &Key) -> Result<Option<Key>> {
        Store::delegation(&*self.lock(), restaker)
    }
    fn operator(&self, operator: &Key) -> Result<Option<OperatorState>> {
        Store::operator(&*self.lock(), operator)
    }
    fn last_nonce(&self, actor: &Key) -> Result<Option<u64>> {
        self.lock().nonce(actor)
    }
    fn slashable_stake(&self, operator: &Key, now_ms: u64) -> Result<BTreeMap<String, u128>> {
        super::slashable_stake(&*self.lock(), operator, now_ms)
    }
    fn is_jailed(&self, operator: &Key, now_ms: u64) -> Result<bool> {
        super::is_jailed(&*self.lock(), &self.config, operator, now_ms)
    }
    fn events_from(&self, seq: u64, limit: usize) -> Result<Vec<Event>> {
        Store::events_from(&*self.lock(), seq, limit)
    }
    fn snapshot(&self) -> Result<Snapshot> {
        Store::snapshot(&*self.lock())
    }
}
