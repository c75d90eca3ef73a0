//! Signed requests: the only way to change the ledger.
//!
//! Signing root: `SHA-256("vouch/ledger-request/v1" ‖ network_id (32 bytes) ‖
//! canonical JSON of {"actor", "nonce", "body"})`, canonical as in RFC 8785 (keys sorted,
//! no whitespace; [`vouch_proto::to_canonical_bytes`]). Keys are lowercase hex, amounts
//! and the nonce are decimal strings (they may exceed 2^53, which JSON numbers cannot
//! carry exactly). Signatures are strict ed25519 (RFC 8032) over the 32-byte root.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::error::{LedgerError, Result};

/// Domain tag of a request's signing root.
pub const REQUEST_TAG: &[u8] = b"vouch/ledger-request/v1";

/// An ed25519 public key (RFC 8032 encoding); written as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// The public key of a signing key.
    pub fn of(signing: &SigningKey) -> Self {
        Key(signing.verifying_key().to_bytes())
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|e| LedgerError::Invalid(format!("key {s:?}: {e}")))?;
        Ok(Key(out))
    }

    pub(crate) fn verify(&self, which: &'static str, root: &[u8; 32], sig: &Sig) -> Result<()> {
        let bad = || LedgerError::BadSignature { which, key: *self };
        let vk = VerifyingKey::from_bytes(&self.0).map_err(|_| bad())?;
        vk.verify_strict(root, &Signature::from_bytes(&sig.0))
            .map_err(|_| bad())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", &self.to_hex()[..16])
    }
}

impl Serialize for Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Key::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// An ed25519 signature; written as 128 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sig(pub [u8; 64]);

impl fmt::Debug for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sig({}…)", &hex::encode(self.0)[..16])
    }
}

impl Serialize for Sig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Sig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 64];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(Sig(out))
    }
}

/// Serde for `u128` (and `u64`) as decimal strings, so canonical JSON can carry them.
pub mod decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the value as a decimal string.
    pub fn serialize<S: Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    /// Reads a decimal string of ASCII digits only (no sign, no spaces).
    pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        let s = String::deserialize(d)?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(serde::de::Error::custom(format!(
                "{s:?} is not a decimal integer"
            )));
        }
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a request asks for. Who may send it is in [`RequestBody::kind`]'s docs below and
/// enforced by the ledger: see `CollateralLedger::apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RequestBody {
    /// Admin: make an asset depositable, priced in quote units (e.g. micro-USD) per base unit.
    RegisterAsset {
        /// 1..=32 characters of `[A-Za-z0-9._-]`.
        asset: String,
        /// Quote units per base unit.
        #[serde(with = "decimal")]
        price_per_unit: u128,
    },
    /// Restaker: credit `amount` base units of `asset`.
    Deposit {
        /// A registered asset.
        asset: String,
        /// Base units, > 0.
        #[serde(with = "decimal")]
        amount: u128,
    },
    /// Restaker: delegate the whole stake to one operator.
    Delegate {
        /// A registered operator.
        operator: Key,
    },
    /// Restaker: start a withdrawal; it stays slashable until completed.
    QueueWithdrawal {
        /// A registered asset.
        asset: String,
        /// Base units, > 0, at most the deposited balance.
        #[serde(with = "decimal")]
        amount: u128,
    },
    /// Restaker: pay out a queued withdrawal whose delay has passed.
    CompleteWithdrawal {
        /// The id returned when it was queued.
        #[serde(with = "decimal")]
        withdrawal_id: u64,
    },
    /// Operator: register; `peer_signature` by `peer_key` is required.
    RegisterOperator {
        /// The ed25519 key of the operator's libp2p identity (its PeerId derives from it).
        peer_key: Key,
    },
    /// Operator: raise the allocated fraction of delegated stake (takes effect at once).
    Allocate {
        /// New magnitude in parts per million, not below the current one.
        magnitude_ppm: u32,
    },
    /// Operator: lower the allocated fraction; effective after `withdrawal_delay_ms`.
    Deallocate {
        /// New magnitude in parts per million, below the current one.
        magnitude_ppm: u32,
    },
    /// Admin: slash an operator's allocated stake.
    Slash {
        /// The operator.
        operator: Key,
        /// Fraction of the allocated stake to remove, 1..=1_000_000 ppm.
        fraction_ppm: u32,
        /// Share of the slashed amount paid to the challenger, 0..1_000_000 ppm.
        bounty_ppm: u32,
        /// Who receives the bounty as a deposit.
        challenger: Key,
        /// Whether the operator is jailed as well.
        jail: bool,
        /// The offence this slash punishes: 64 lowercase hex characters (for example
        /// [`crate::disputes::Offence::id`]). The ledger slashes each offence at most once;
        /// a second slash naming it is refused with [`LedgerError::AlreadySlashed`].
        /// Absent (and then not part of the signing root) for slashes that name none, so
        /// requests signed before this field existed stay valid.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offence: Option<String>,
    },
    /// Admin: burn a challenger's bond after its dispute was dismissed (DESIGN.md
    /// "Disputes, in tiers": a dismissed dispute forfeits its bond).
    ForfeitBond {
        /// Whose deposited balance the bond is taken from.
        challenger: Key,
        /// A registered asset.
        asset: String,
        /// Base units, > 0, at most the challenger's deposited balance.
        #[serde(with = "decimal")]
        amount: u128,
        /// The dismissed dispute: 64 lowercase hex characters (for example
        /// [`crate::reexec::ResultChallenge::id`]). Each dispute forfeits at most once; a
        /// second forfeit naming it is refused with [`LedgerError::AlreadyForfeited`]. A
        /// dispute opened with `open_dispute` holds its bond itself and is decided with
        /// `close_dispute`; `forfeit_bond` naming it is refused.
        dispute: String,
    },
    /// Admin: open a dispute and lock its bond. The bond moves from the challenger's
    /// deposited balance into the dispute, where it can be neither withdrawn nor bonded
    /// again, but stays slashable like the deposit it came from; the evidence is stored
    /// with the dispute so that a restarted verifier can judge it. See `crate::reexec`.
    OpenDispute {
        /// The dispute id: 64 lowercase hex characters, never opened before.
        dispute: String,
        /// Whose deposited balance holds the bond.
        challenger: Key,
        /// A registered asset.
        asset: String,
        /// Base units, > 0, at most the challenger's deposited balance.
        #[serde(with = "decimal")]
        amount: u128,
        /// SHA-256 (64 lowercase hex) of the evidence stored with the dispute; the ledger
        /// refuses the request unless the evidence attached to it has this digest.
        evidence: String,
    },
    /// Admin: decide an open dispute. Every verdict closes it in one transaction:
    /// `slashed` slashes (as `slash` does, bounty to the dispute's challenger) and unlocks
    /// the bond; `already_slashed` and `void` unlock it; `dismissed` burns it.
    CloseDispute {
        /// An open dispute.
        dispute: String,
        /// The verdict.
        ruling: Ruling,
    },
}

/// The verdict of a `close_dispute` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case", deny_unknown_fields)]
pub enum Ruling {
    /// The receipt is wrong: slash `operator` for `offence`, pay the bounty to the
    /// dispute's challenger, unlock the bond.
    Slashed {
        /// The operator.
        operator: Key,
        /// Fraction of the allocated stake to remove, 1..=1_000_000 ppm.
        fraction_ppm: u32,
        /// Share of the slashed amount paid to the challenger, 0..1_000_000 ppm.
        bounty_ppm: u32,
        /// Whether the operator is jailed as well.
        jail: bool,
        /// The offence (64 lowercase hex), slashed at most once like `slash`'s.
        offence: String,
    },
    /// The receipt is wrong but an earlier slash already punished `offence` (the ledger
    /// checks that it did): unlock the bond.
    AlreadySlashed {
        /// The offence (64 lowercase hex).
        offence: String,
    },
    /// The receipt is right: burn the bond.
    Dismissed,
    /// No verdict (the workload is not deterministic, a run broke a limit, the evidence
    /// could not be read): unlock the bond.
    Void,
}

impl RequestBody {
    /// A short name, also the event kind.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestBody::RegisterAsset { .. } => "register_asset",
            RequestBody::Deposit { .. } => "deposit",
            RequestBody::Delegate { .. } => "delegate",
            RequestBody::QueueWithdrawal { .. } => "queue_withdrawal",
            RequestBody::CompleteWithdrawal { .. } => "complete_withdrawal",
            RequestBody::RegisterOperator { .. } => "register_operator",
            RequestBody::Allocate { .. } => "allocate",
            RequestBody::Deallocate { .. } => "deallocate",
            RequestBody::Slash { .. } => "slash",
            RequestBody::ForfeitBond { .. } => "forfeit_bond",
            RequestBody::OpenDispute { .. } => "open_dispute",
            RequestBody::CloseDispute { .. } => "close_dispute",
        }
    }
}

/// A request as it arrives: the actor's key, its nonce, the body and the signatures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRequest {
    /// Who signs: the restaker, the operator or the verifier (admin).
    pub actor: Key,
    /// Strictly above the actor's previous nonce.
    #[serde(with = "decimal")]
    pub nonce: u64,
    /// What is asked.
    pub body: RequestBody,
    /// The actor's signature over [`SignedRequest::signing_root`].
    pub signature: Sig,
    /// `register_operator` only: the peer key's signature over the same root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_signature: Option<Sig>,
}

/// The signing root of `{actor, nonce, body}` on `network_id`.
pub fn signing_root(
    network_id: &[u8; 32],
    actor: &Key,
    nonce: u64,
    body: &RequestBody,
) -> Result<[u8; 32]> {
    let value = serde_json::json!({
        "actor": actor,
        "nonce": nonce.to_string(),
        "body": body,
    });
    let canonical = vouch_proto::to_canonical_bytes(&value)?;
    let mut h = Sha256::new();
    h.update(REQUEST_TAG);
    h.update(network_id);
    h.update(&canonical);
    Ok(h.finalize().into())
}

impl SignedRequest {
    /// Signs `body` as `signer` (what a client library does). `register_operator` also
    /// needs [`SignedRequest::with_peer_signature`].
    pub fn sign(
        network_id: &[u8; 32],
        signer: &SigningKey,
        nonce: u64,
        body: RequestBody,
    ) -> Result<Self> {
        let actor = Key::of(signer);
        let root = signing_root(network_id, &actor, nonce, &body)?;
        Ok(SignedRequest {
            actor,
            nonce,
            body,
            signature: Sig(signer.sign(&root).to_bytes()),
            peer_signature: None,
        })
    }

    /// Adds the peer key's signature over the same root.
    pub fn with_peer_signature(mut self, network_id: &[u8; 32], peer: &SigningKey) -> Result<Self> {
        let root = self.signing_root(network_id)?;
        self.peer_signature = Some(Sig(peer.sign(&root).to_bytes()));
        Ok(self)
    }

    /// This request's signing root on `network_id`.
    pub fn signing_root(&self, network_id: &[u8; 32]) -> Result<[u8; 32]> {
        signing_root(network_id, &self.actor, self.nonce, &self.body)
    }

    /// Checks the signatures (actor's, and the peer's for `register_operator`) and that
    /// the actor may send this kind of request. Nonces are the ledger's to check, inside
    /// the transaction that applies the request.
    pub fn authenticate(&self, network_id: &[u8; 32], admin: &Key) -> Result<()> {
        let root = self.signing_root(network_id)?;
        self.actor.verify("actor", &root, &self.signature)?;
        let kind = self.body.kind();
        match &self.body {
            RequestBody::RegisterAsset { .. }
            | RequestBody::Slash { .. }
            | RequestBody::ForfeitBond { .. }
            | RequestBody::OpenDispute { .. }
            | RequestBody::CloseDispute { .. } => {
                if self.actor != *admin {
                    return Err(LedgerError::Unauthorized {
                        actor: self.actor,
                        kind,
                        why: "only the verifier (admin) key may",
                    });
                }
            }
            RequestBody::RegisterOperator { peer_key } => {
                let sig = self
                    .peer_signature
                    .as_ref()
                    .ok_or(LedgerError::MissingPeerSignature)?;
                peer_key.verify("peer", &root, sig)?;
            }
            _ => {
                // Restaker and operator requests act on the actor's own account, so the
                // actor's signature is the whole authorization. The admin key is kept out
                // of them so that the verifier never holds stake or runs an operator.
                if self.actor == *admin {
                    return Err(LedgerError::Unauthorized {
                        actor: self.actor,
                        kind,
                        why: "the verifier (admin) key may not hold stake or operate",
                    });
                }
            }
        }
        if self.peer_signature.is_some()
            && !matches!(self.body, RequestBody::RegisterOperator { .. })
        {
            return Err(LedgerError::Invalid(format!(
                "peer_signature is only allowed on register_operator, not {kind}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_decimal_amounts() {
        let sk = SigningKey::from_bytes(&[7; 32]);
        let body = RequestBody::Deposit {
            asset: "eth".into(),
            amount: u128::MAX,
        };
        let req = SignedRequest::sign(&[1; 32], &sk, 1 << 60, body).unwrap();
        let text = serde_json::to_string(&req).unwrap();
        assert!(text.contains(&format!("\"{}\"", u128::MAX)));
        let back: SignedRequest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, req);
        back.authenticate(&[1; 32], &Key([0; 32])).unwrap();
        // Another network: same bytes, different root.
        assert!(matches!(
            back.authenticate(&[2; 32], &Key([0; 32])),
            Err(LedgerError::BadSignature { .. })
        ));
    }

    #[test]
    fn refuses_signed_amounts_and_unknown_fields() {
        let bad = r#"{"type":"deposit","asset":"eth","amount":"-1"}"#;
        assert!(serde_json::from_str::<RequestBody>(bad).is_err());
        let bad = r#"{"type":"deposit","asset":"eth","amount":"1","x":1}"#;
        assert!(serde_json::from_str::<RequestBody>(bad).is_err());
    }
}
