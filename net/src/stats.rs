//! Gossip counters, shared between the network task and every handle.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::validate::RejectReason;

/// Counters of what the validator decided about received gossip. Updated by the network
/// task, read lock-free through [`crate::NetworkHandle::stats`].
#[derive(Debug, Default)]
pub struct Stats {
    accepted: AtomicU64,
    rejected_size: AtomicU64,
    rejected_decode: AtomicU64,
    rejected_network: AtomicU64,
    rejected_signature: AtomicU64,
    rejected_unregistered: AtomicU64,
    ignored: AtomicU64,
    duplicates: AtomicU64,
    dropped_full: AtomicU64,
    synced: AtomicU64,
    sync_rejected: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Messages that passed validation and were handed to the application.
    pub accepted: u64,
    /// Rejected: payload over the size limit.
    pub rejected_size: u64,
    /// Rejected: does not decode.
    pub rejected_decode: u64,
    /// Rejected: wrong network id.
    pub rejected_network: u64,
    /// Rejected: signature does not verify.
    pub rejected_signature: u64,
    /// Rejected: signer not registered.
    pub rejected_unregistered: u64,
    /// Ignored by the validator (not understood; not penalised).
    pub ignored: u64,
    /// Content already delivered (or published here) before; not delivered again.
    pub duplicates: u64,
    /// Valid messages not delivered because the application's channel was full.
    pub dropped_full: u64,
    /// Receipts first received through catch-up sync rather than gossip (also counted in
    /// `accepted`).
    pub synced: u64,
    /// Invalid receipts served by a peer through sync (the peer is not synced from again).
    pub sync_rejected: u64,
}

impl StatsSnapshot {
    /// Sum of all rejection counters.
    pub fn rejected(&self) -> u64 {
        self.rejected_size
            + self.rejected_decode
            + self.rejected_network
            + self.rejected_signature
            + self.rejected_unregistered
    }
}

impl Stats {
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rejected(&self, reason: RejectReason) {
        let c = match reason {
            RejectReason::Size => &self.rejected_size,
            RejectReason::Decode => &self.rejected_decode,
            RejectReason::Network => &self.rejected_network,
            RejectReason::Signature => &self.rejected_signature,
            RejectReason::Unregistered => &self.rejected_unregistered,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn ignored(&self) {
        self.ignored.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped_full(&self) {
        self.dropped_full.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn synced(&self) {
        self.synced.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sync_rejected(&self) {
        self.sync_rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            accepted: r(&self.accepted),
            rejected_size: r(&self.rejected_size),
            rejected_decode: r(&self.rejected_decode),
            rejected_network: r(&self.rejected_network),
            rejected_signature: r(&self.rejected_signature),
            rejected_unregistered: r(&self.rejected_unregistered),
            ignored: r(&self.ignored),
            duplicates: r(&self.duplicates),
            synced: r(&self.synced),
            sync_rejected: r(&self.sync_rejected),
            dropped_full: r(&self.dropped_full),
        }
    }
}
