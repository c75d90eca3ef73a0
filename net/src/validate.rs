//! Gossip validation: what a node checks before it forwards or delivers a message.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use vouch_proto::{JobMessage, NetworkId, OperatorKey, SignedReceipt, SignedVerdict};

use crate::TopicKind;

/// Why a message was rejected. Each reason has its own counter in [`crate::Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// Payload larger than `NetConfig::max_message_bytes`.
    Size,
    /// Bytes that do not decode as the topic's type.
    Decode,
    /// Decodes, but belongs to another network.
    Network,
    /// The operator signature does not verify.
    Signature,
    /// Signed by a key that is not a registered (unjailed) operator.
    Unregistered,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectReason::Size => "over the size limit",
            RejectReason::Decode => "does not decode",
            RejectReason::Network => "wrong network id",
            RejectReason::Signature => "bad signature",
            RejectReason::Unregistered => "signer is not a registered operator",
        })
    }
}

/// The outcome of validating one message.
// Returned by value once per message and consumed at once; boxing the receipt would
// only add an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// Valid: forward it and deliver it. `receipt` carries the decoded receipt for the
    /// receipts topic so the application does not decode it again.
    Accept {
        /// The decoded receipt, when the message is one.
        receipt: Option<SignedReceipt>,
    },
    /// Invalid: drop it and lower the score of the peer that sent it.
    Reject(RejectReason),
    /// Not for us (e.g. a topic this validator does not understand): drop it without
    /// penalising anyone.
    Ignore,
}

/// Checks gossip before it is forwarded. Implemented by the application.
///
/// Called on the network task for every message received and every message published
/// locally, so it must be quick and must not block (no I/O; read a cached registry).
pub trait Validator: Send + Sync + 'static {
    /// Validates `data` received on (or about to be published to) the `kind` topic.
    fn validate(&self, kind: TopicKind, data: &[u8]) -> Validation;
}

/// The operator registry the validator consults: the set of registered, unjailed keys.
pub type Registry = Arc<RwLock<HashSet<OperatorKey>>>;

/// Validates the receipts topic against a static allow-list of operator keys, standing in
/// until the verifier's registry is wired in.
///
/// Checks, in order: size ≤ limit, decodes as exactly one `SignedReceipt`, network id
/// matches, signature verifies, signer is registered. Job and verdict messages have no
/// format yet, so they are ignored (neither forwarded nor penalised); an application that
/// uses those topics supplies its own [`Validator`].
#[derive(Debug, Clone)]
pub struct ReceiptValidator {
    /// The network receipts must belong to.
    pub network_id: NetworkId,
    /// Registered operators; updated by the application, read on every message.
    pub registry: Registry,
    /// Payload cap; should equal `NetConfig::max_message_bytes`.
    pub max_message_bytes: usize,
}

impl ReceiptValidator {
    /// A validator for `network_id` with the default 64 KiB payload cap.
    pub fn new(network_id: NetworkId, registry: Registry) -> Self {
        ReceiptValidator {
            network_id,
            registry,
            max_message_bytes: crate::config::DEFAULT_MAX_MESSAGE_BYTES,
        }
    }

    /// Checks one encoded signed receipt.
    pub fn check_receipt(&self, data: &[u8]) -> Result<SignedReceipt, RejectReason> {
        if data.len() > self.max_message_bytes {
            return Err(RejectReason::Size);
        }
        let signed = SignedReceipt::decode(data).map_err(|_| RejectReason::Decode)?;
        if signed.receipt.network_id != self.network_id {
            return Err(RejectReason::Network);
        }
        signed.verify().map_err(|_| RejectReason::Signature)?;
        // A poisoned lock means a writer panicked mid-update; refusing every receipt would
        // silently stop gossip, so read the set as it was left.
        let registered = match self.registry.read() {
            Ok(set) => set.contains(&signed.receipt.operator),
            Err(poisoned) => poisoned.get_ref().contains(&signed.receipt.operator),
        };
        if !registered {
            return Err(RejectReason::Unregistered);
        }
        Ok(signed)
    }
}

impl Validator for ReceiptValidator {
    fn validate(&self, kind: TopicKind, data: &[u8]) -> Validation {
        match kind {
            TopicKind::Receipts => match self.check_receipt(data) {
                Ok(receipt) => Validation::Accept {
                    receipt: Some(receipt),
                },
                Err(reason) => Validation::Reject(reason),
            },
            TopicKind::Jobs | TopicKind::Verdicts => Validation::Ignore,
        }
    }
}

/// The verifier whose signed verdicts the verdicts topic carries; `None` until known.
pub type VerifierKey = Arc<RwLock<Option<OperatorKey>>>;

fn registered(registry: &Registry, key: &OperatorKey) -> bool {
    match registry.read() {
        Ok(set) => set.contains(key),
        Err(poisoned) => poisoned.get_ref().contains(key),
    }
}

/// Validates every topic: receipts as [`ReceiptValidator`] does; on the jobs topic,
/// announcements, replica commitments and reveals (SPEC §10), each decoded exactly, of this
/// network, correctly signed, by a registered operator; on the verdicts topic, verdicts of
/// this network signed by the configured verifier key.
#[derive(Debug, Clone)]
pub struct GossipValidator {
    /// Receipt checks and the registry they share.
    pub receipts: ReceiptValidator,
    /// The verifier key verdicts must carry.
    pub verifier: VerifierKey,
}

impl GossipValidator {
    /// A validator for `network_id` with the default payload cap.
    pub fn new(network_id: NetworkId, registry: Registry, verifier: VerifierKey) -> Self {
        GossipValidator {
            receipts: ReceiptValidator::new(network_id, registry),
            verifier,
        }
    }

    fn check_job(&self, data: &[u8]) -> Result<(), RejectReason> {
        let network = self.receipts.network_id;
        let registry = &self.receipts.registry;
        let msg = JobMessage::decode(data).map_err(|_| RejectReason::Decode)?;
        let signer = match &msg {
            JobMessage::Announce(a) => {
                if a.network_id != network {
                    return Err(RejectReason::Network);
                }
                a.verify().map_err(|e| match e {
                    vouch_proto::ProtoError::BadSignature
                    | vouch_proto::ProtoError::BadPublicKey => RejectReason::Signature,
                    _ => RejectReason::Decode,
                })?;
                a.announcer
            }
            JobMessage::Commit(c) => {
                if c.network_id != network {
                    return Err(RejectReason::Network);
                }
                c.verify().map_err(|_| RejectReason::Signature)?;
                c.operator
            }
            JobMessage::Reveal(r) => {
                if r.receipt.receipt.network_id != network {
                    return Err(RejectReason::Network);
                }
                r.receipt.verify().map_err(|_| RejectReason::Signature)?;
                r.receipt.receipt.operator
            }
        };
        if !registered(registry, &signer) {
            return Err(RejectReason::Unregistered);
        }
        Ok(())
    }

    fn check_verdict(&self, data: &[u8]) -> Result<(), RejectReason> {
        let v = SignedVerdict::decode(data).map_err(|_| RejectReason::Decode)?;
        if v.network_id != self.receipts.network_id {
            return Err(RejectReason::Network);
        }
        let expected = match self.verifier.read() {
            Ok(k) => *k,
            Err(poisoned) => **poisoned.get_ref(),
        };
        if expected != Some(v.verifier) {
            return Err(RejectReason::Unregistered);
        }
        v.verify().map_err(|_| RejectReason::Signature)
    }
}

impl Validator for GossipValidator {
    fn validate(&self, kind: TopicKind, data: &[u8]) -> Validation {
        if data.len() > self.receipts.max_message_bytes {
            return Validation::Reject(RejectReason::Size);
        }
        let checked = match kind {
            TopicKind::Receipts => {
                return match self.receipts.check_receipt(data) {
                    Ok(receipt) => Validation::Accept {
                        receipt: Some(receipt),
                    },
                    Err(reason) => Validation::Reject(reason),
                }
            }
            TopicKind::Jobs => self.check_job(data),
            TopicKind::Verdicts => self.check_verdict(data),
        };
        match checked {
            Ok(()) => Validation::Accept { receipt: None },
            Err(reason) => Validation::Reject(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_is_checked_before_decoding() {
        let v = ReceiptValidator {
            network_id: NetworkId::from_name("devnet"),
            registry: Registry::default(),
            max_message_bytes: 100,
        };
        assert_eq!(v.check_receipt(&[0u8; 101]), Err(RejectReason::Size));
        assert_eq!(v.check_receipt(&[0u8; 99]), Err(RejectReason::Decode));
        assert_eq!(
            v.validate(TopicKind::Jobs, &[0u8; 10]),
            Validation::Ignore,
            "no job format yet"
        );
    }
}
