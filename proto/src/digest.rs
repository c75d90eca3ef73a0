//! Fixed-width identifiers: SHA-256 digests, job ids, network ids and operator keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::ProtoError;

fn parse_hex32(what: &'static str, s: &str) -> Result<[u8; 32], ProtoError> {
    if s.len() != 64 {
        return Err(ProtoError::Format {
            what,
            reason: format!(
                "expected 64 lowercase hex characters, got {} characters",
                s.len()
            ),
        });
    }
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ProtoError::Format {
            what,
            reason: "hex must be lowercase".into(),
        });
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|e| ProtoError::Format {
        what,
        reason: format!("not hex: {e}"),
    })?;
    Ok(out)
}

macro_rules! bytes32 {
    ($(#[$doc:meta])* $name:ident, $what:literal, prefix = $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            /// Lowercase hex without any prefix.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = ProtoError;
            fn from_str(s: &str) -> Result<Self, ProtoError> {
                let hex = if $prefix.is_empty() {
                    s
                } else {
                    s.strip_prefix($prefix).ok_or_else(|| ProtoError::Format {
                        what: $what,
                        reason: format!("must start with {:?}", $prefix),
                    })?
                };
                parse_hex32($what, hex).map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

bytes32!(
    /// A SHA-256 content digest, written `sha256:<64 lowercase hex>`.
    Digest, "digest", prefix = "sha256:"
);
bytes32!(
    /// A job id: `SHA-256("vouch/job/v1" ‖ JCS(JobSpec))`, written as 64 lowercase hex.
    JobId, "job id", prefix = ""
);
bytes32!(
    /// The 32 bytes naming a network; part of every signed message. Written as hex.
    NetworkId, "network id", prefix = ""
);
bytes32!(
    /// An operator's ed25519 public key (RFC 8032 encoding), written as hex.
    OperatorKey, "operator key", prefix = ""
);
bytes32!(
    /// A Merkle root (of a workload's trace); all zeros when the workload is untraced.
    Root32, "root", prefix = ""
);

impl Digest {
    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(Sha256::digest(bytes).into())
    }
}

impl NetworkId {
    /// The network id for a human-readable network name:
    /// `SHA-256("vouch/network/v1" ‖ name)`.
    pub fn from_name(name: &str) -> Self {
        let mut h = Sha256::new();
        h.update(crate::tags::NETWORK);
        h.update(name.as_bytes());
        NetworkId(h.finalize().into())
    }

    /// Parses either 64 hex characters or, failing that, treats `s` as a network name.
    pub fn parse_or_name(s: &str) -> Self {
        s.parse().unwrap_or_else(|_| Self::from_name(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_round_trips_and_rejects_bad_forms() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
        assert!(d.to_hex().parse::<Digest>().is_err(), "prefix is required");
        assert!(
            "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"
                .parse::<Digest>()
                .is_err()
        );
        assert!("sha256:abcd".parse::<Digest>().is_err());
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }

    #[test]
    fn network_id_from_name_is_stable() {
        assert_eq!(
            NetworkId::from_name("devnet"),
            NetworkId::parse_or_name("devnet")
        );
        let id = NetworkId::from_name("devnet");
        assert_eq!(NetworkId::parse_or_name(&id.to_hex()), id);
    }
}
