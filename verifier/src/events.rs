//! The append-only, hash-chained, verifier-signed event log.
//!
//! Each applied request leaves exactly one event, written in the same transaction as the
//! state change it records (so the log and the state can never disagree):
//!
//! `hash = SHA-256("vouch/ledger-event/v1" ‖ prev_hash ‖ canonical(body))`, where `body` is
//! `{seq, prev_hash, at_ms, kind, payload, conservation}` with `seq` and `at_ms` as decimal
//! strings, and the verifier signs the 32-byte hash with ed25519. The first event has
//! `seq` 0 and an all-zero `prev_hash`.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{LedgerError, Result};
use crate::requests::{decimal, Key, Sig};

/// Domain tag of an event hash.
pub const EVENT_TAG: &[u8] = b"vouch/ledger-event/v1";

/// Per-asset stake accounting of a slash, in base units.
///
/// `before` and `after` are the stake (deposits + queued withdrawals) of the slashed
/// operator's delegators just before and just after the cuts. The slashed amount is
/// split into `burned` and `rewarded`, so `before == after + burned + rewarded`. The
/// reward is then credited to the challenger's deposit, so the ledger-wide total of the
/// asset falls by exactly `burned`.
///
/// For a `forfeit_bond` event, `before` and `after` are the challenger's deposited
/// balance, `burned` the bond and `rewarded` zero: the same equation holds.
///
/// For `open_dispute` and `close_dispute`, `before` and `after` are the challenger's
/// holdings in the bond's asset: its deposit plus its bonds locked in open disputes (a
/// locked bond is still held). Locking and unlocking leave them unchanged; a dismissed
/// dispute burns its bond. A `close_dispute` that slashes carries the slash's equations
/// instead, per asset, as a `slash` does (for the bond's asset too, if the slash touched it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Conservation {
    /// Delegated stake before the slash.
    #[serde(with = "decimal")]
    pub before: u128,
    /// Delegated stake after the cuts (without the challenger's reward).
    #[serde(with = "decimal")]
    pub after: u128,
    /// Removed from the system.
    #[serde(with = "decimal")]
    pub burned: u128,
    /// Credited to the challenger's deposit.
    #[serde(with = "decimal")]
    pub rewarded: u128,
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// 0, 1, 2, … without gaps.
    #[serde(with = "decimal")]
    pub seq: u64,
    /// Hash of the previous event (zeros for seq 0), hex.
    #[serde(with = "hex32")]
    pub prev_hash: [u8; 32],
    /// The verifier's clock when the request was applied.
    #[serde(with = "decimal")]
    pub at_ms: u64,
    /// The request kind (`deposit`, `slash`, …).
    pub kind: String,
    /// `{"request": <the signed request>, "result": {…}}`.
    pub payload: serde_json::Value,
    /// Per asset, for slashes; empty otherwise.
    pub conservation: BTreeMap<String, Conservation>,
    /// This event's hash, hex.
    #[serde(with = "hex32")]
    pub hash: [u8; 32],
    /// The verifier's signature over `hash`.
    pub signature: Sig,
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

fn event_hash(
    seq: u64,
    prev_hash: &[u8; 32],
    at_ms: u64,
    kind: &str,
    payload: &serde_json::Value,
    conservation: &BTreeMap<String, Conservation>,
) -> Result<[u8; 32]> {
    let body = serde_json::json!({
        "seq": seq.to_string(),
        "prev_hash": hex::encode(prev_hash),
        "at_ms": at_ms.to_string(),
        "kind": kind,
        "payload": payload,
        "conservation": conservation,
    });
    let canonical = vouch_proto::to_canonical_bytes(&body)?;
    let mut h = Sha256::new();
    h.update(EVENT_TAG);
    h.update(prev_hash);
    h.update(&canonical);
    Ok(h.finalize().into())
}

impl Event {
    /// Hashes and signs a new event. This is the only place the verifier key signs; it is
    /// called inside the transaction that applies the request, after every check passed.
    pub(crate) fn seal(
        seq: u64,
        prev_hash: [u8; 32],
        at_ms: u64,
        kind: &str,
        payload: serde_json::Value,
        conservation: BTreeMap<String, Conservation>,
        verifier: &SigningKey,
    ) -> Result<Event> {
        let hash = event_hash(seq, &prev_hash, at_ms, kind, &payload, &conservation)?;
        Ok(Event {
            seq,
            prev_hash,
            at_ms,
            kind: kind.to_owned(),
            payload,
            conservation,
            hash,
            signature: Sig(verifier.sign(&hash).to_bytes()),
        })
    }
}

/// Checks a run of consecutive events: hashes, links, signatures by `verifier`, and the
/// conservation equation of every entry. A run that starts at seq 0 must start from the
/// all-zero hash; a later run is trusted for its first `prev_hash` (check it against the
/// previous page). Returns the last hash, or `None` for an empty run.
pub fn verify_chain(events: &[Event], verifier: &Key) -> Result<Option<[u8; 32]>> {
    let vk = VerifyingKey::from_bytes(&verifier.0).map_err(|_| LedgerError::Chain {
        seq: events.first().map_or(0, |e| e.seq),
        why: "the verifier key is not a valid ed25519 key",
    })?;
    let mut prev: Option<(u64, [u8; 32])> = None;
    for e in events {
        let bad = |why| LedgerError::Chain { seq: e.seq, why };
        match prev {
            None if e.seq == 0 && e.prev_hash != [0; 32] => {
                return Err(bad("the first event must link to the zero hash"))
            }
            Some((seq, _)) if Some(e.seq) != seq.checked_add(1) => {
                return Err(bad("sequence numbers are not consecutive"))
            }
            Some((_, hash)) if e.prev_hash != hash => {
                return Err(bad("prev_hash is not the previous event's hash"))
            }
            _ => {}
        }
        let hash = event_hash(
            e.seq,
            &e.prev_hash,
            e.at_ms,
            &e.kind,
            &e.payload,
            &e.conservation,
        )?;
        if hash != e.hash {
            return Err(bad("hash does not match the contents"));
        }
        vk.verify_strict(&hash, &Signature::from_bytes(&e.signature.0))
            .map_err(|_| bad("signature does not verify for the verifier key"))?;
        for c in e.conservation.values() {
            let out = c
                .after
                .checked_add(c.burned)
                .and_then(|x| x.checked_add(c.rewarded));
            if out != Some(c.before) {
                return Err(bad("before != after + burned + rewarded"));
            }
        }
        prev = Some((e.seq, e.hash));
    }
    Ok(prev.map(|(_, h)| h))
}
