//! Job specs and job ids.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::canonical::{to_canonical_bytes, MAX_SAFE_INTEGER};
use crate::{tags, Digest, JobId, ProtoError};

/// Largest job spec accepted by [`JobSpec::from_json`].
pub const MAX_SPEC_BYTES: usize = 64 * 1024;
/// Most command arguments in a spec.
pub const MAX_ARGS: usize = 256;
/// Most environment entries in a spec.
pub const MAX_ENV: usize = 256;
/// Longest single argument or environment entry, in bytes.
pub const MAX_ARG_BYTES: usize = 4096;
/// Longest client nonce, in bytes.
pub const MAX_NONCE_BYTES: usize = 128;
/// Most replicas a job may ask for.
pub const MAX_REPLICAS: u32 = 16;

/// Whether re-running the job must reproduce its output bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Determinism {
    /// Output is a pure function of (image, command, env, input, limits); a re-execution
    /// that differs proves the receipt wrong.
    #[default]
    Deterministic,
    /// Output may differ between runs; receipts are not disputable by re-execution.
    Nondeterministic,
}

/// Resource limits a job runs under. All values are positive integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// CPU quota in thousandths of a core (1000 = one full core).
    pub cpu_millis: u64,
    /// Memory limit in bytes (swap is not allowed on top of it).
    pub memory_bytes: u64,
    /// Largest output (stdout) in bytes; a workload that writes more fails.
    pub output_bytes: u64,
    /// Most processes and threads alive at once in the container.
    pub pids: u64,
    /// Wall-clock limit in milliseconds, from container start to exit.
    pub timeout_ms: u64,
    /// Size of the writable tmpfs mounted at `/tmp`, in bytes.
    pub tmpfs_bytes: u64,
}

impl Limits {
    fn fields(&self) -> [(&'static str, u64); 6] {
        [
            ("cpu_millis", self.cpu_millis),
            ("memory_bytes", self.memory_bytes),
            ("output_bytes", self.output_bytes),
            ("pids", self.pids),
            ("timeout_ms", self.timeout_ms),
            ("tmpfs_bytes", self.tmpfs_bytes),
        ]
    }

    /// Checks that every limit is in `1..=2^53-1`.
    pub fn validate(&self) -> Result<(), ProtoError> {
        for (name, v) in self.fields() {
            if v == 0 || v > MAX_SAFE_INTEGER {
                return Err(ProtoError::InvalidSpec(format!(
                    "limits.{name} must be between 1 and {MAX_SAFE_INTEGER}, got {v}"
                )));
            }
        }
        Ok(())
    }

    /// The first limit of `self` that is above the same limit in `max`, if any.
    pub fn first_above(&self, max: &Limits) -> Option<(&'static str, u64, u64)> {
        self.fields()
            .into_iter()
            .zip(max.fields())
            .find(|((_, v), (_, m))| v > m)
            .map(|((name, v), (_, m))| (name, v, m))
    }
}

/// An amount, serialized as a decimal string (amounts may exceed 2^53).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Amount(pub u128);

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let canonical = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s.len() == 1 || !s.starts_with('0'));
        if !canonical {
            return Err(serde::de::Error::custom(format!(
                "amount {s:?} must be a decimal integer string without sign or leading zeros"
            )));
        }
        s.parse::<u128>()
            .map(Amount)
            .map_err(serde::de::Error::custom)
    }
}

/// What a client asks an operator to run. Its canonical form (RFC 8785) is what the job
/// id commits to; see `proto/SPEC.md` §2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The image id (`sha256:` digest of the image config) the job runs in.
    pub image: Digest,
    /// Arguments appended to the image's entrypoint (replacing its default command);
    /// empty means the image's default command.
    pub command: Vec<String>,
    /// `KEY=VALUE` entries, sorted by key, keys unique.
    pub env: Vec<String>,
    /// SHA-256 of the input bytes, which travel beside the spec and reach stdin.
    pub input_digest: Digest,
    /// Limits the job runs under.
    pub limits: Limits,
    /// Whether the output must be reproducible bit for bit.
    pub determinism: Determinism,
    /// Value the client puts at risk on this result, in the service's unit.
    pub value_at_risk: Amount,
    /// How many operators should run the job (1 = only the receiving node).
    pub replicas: u32,
    /// Client-chosen string that makes otherwise equal jobs distinct.
    pub nonce: String,
}

impl JobSpec {
    /// Decodes a spec from JSON of at most [`MAX_SPEC_BYTES`], rejecting unknown fields and
    /// trailing bytes, and validates it.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ProtoError> {
        if bytes.len() > MAX_SPEC_BYTES {
            return Err(ProtoError::TooLarge {
                what: "job spec",
                limit: MAX_SPEC_BYTES,
                got: bytes.len(),
            });
        }
        let spec: JobSpec = serde_json::from_slice(bytes).map_err(|e| ProtoError::Json {
            what: "job spec",
            reason: e.to_string(),
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the rules of SPEC.md §2 that types alone do not enforce.
    pub fn validate(&self) -> Result<(), ProtoError> {
        let bad = |m: String| Err(ProtoError::InvalidSpec(m));
        if self.command.len() > MAX_ARGS {
            return bad(format!(
                "command has {} arguments, at most {MAX_ARGS}",
                self.command.len()
            ));
        }
        if let Some(a) = self.command.iter().find(|a| a.len() > MAX_ARG_BYTES) {
            return bad(format!(
                "a command argument has {} bytes, at most {MAX_ARG_BYTES}",
                a.len()
            ));
        }
        if self.command.iter().any(|a| a.contains('\0')) {
            return bad("command arguments must not contain NUL".into());
        }
        if self.env.len() > MAX_ENV {
            return bad(format!(
                "env has {} entries, at most {MAX_ENV}",
                self.env.len()
            ));
        }
        let mut prev: Option<&str> = None;
        for e in &self.env {
            if e.len() > MAX_ARG_BYTES || e.contains('\0') {
                return bad(format!(
                    "env entry is over {MAX_ARG_BYTES} bytes or contains NUL"
                ));
            }
            let Some((k, _)) = e.split_once('=') else {
                return bad(format!("env entry {e:?} is not KEY=VALUE"));
            };
            if !valid_env_key(k) {
                return bad(format!("env key {k:?} must match [A-Za-z_][A-Za-z0-9_]*"));
            }
            if let Some(p) = prev {
                if p >= k {
                    return bad(format!(
                        "env must be sorted by key with unique keys ({p:?} then {k:?})"
                    ));
                }
            }
            prev = Some(k);
        }
        self.limits.validate()?;
        if self.replicas == 0 || self.replicas > MAX_REPLICAS {
            return bad(format!(
                "replicas must be between 1 and {MAX_REPLICAS}, got {}",
                self.replicas
            ));
        }
        if self.nonce.len() > MAX_NONCE_BYTES {
            return bad(format!(
                "nonce has {} bytes, at most {MAX_NONCE_BYTES}",
                self.nonce.len()
            ));
        }
        Ok(())
    }

    /// The RFC 8785 canonical JSON of the spec: the exact bytes the job id hashes.
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, ProtoError> {
        let value = serde_json::to_value(self).map_err(|e| ProtoError::Canonical(e.to_string()))?;
        to_canonical_bytes(&value)
    }

    /// `SHA-256("vouch/job/v1" ‖ canonical_bytes)`. Validates first, including that the
    /// canonical form fits in [`MAX_SPEC_BYTES`], so every spec with an id also decodes.
    pub fn job_id(&self) -> Result<JobId, ProtoError> {
        self.validate()?;
        let bytes = self.canonical_bytes()?;
        if bytes.len() > MAX_SPEC_BYTES {
            return Err(ProtoError::TooLarge {
                what: "job spec",
                limit: MAX_SPEC_BYTES,
                got: bytes.len(),
            });
        }
        let mut h = Sha256::new();
        h.update(tags::JOB);
        h.update(&bytes);
        Ok(JobId(h.finalize().into()))
    }
}

/// Whether `k` is a portable environment variable name.
pub fn valid_env_key(k: &str) -> bool {
    let mut bytes = k.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> JobSpec {
        JobSpec {
            image: Digest::of(b"image"),
            command: vec!["--mode".into(), "count".into()],
            env: vec!["A=1".into(), "B_2=x=y".into()],
            input_digest: Digest::of(b"hello"),
            limits: Limits {
                cpu_millis: 1000,
                memory_bytes: 64 << 20,
                output_bytes: 1 << 20,
                pids: 64,
                timeout_ms: 10_000,
                tmpfs_bytes: 16 << 20,
            },
            determinism: Determinism::Deterministic,
            value_at_risk: Amount(0),
            replicas: 1,
            nonce: "n1".into(),
        }
    }

    #[test]
    fn job_id_is_stable_and_sensitive() {
        let a = sample();
        let id = a.job_id().unwrap();
        assert_eq!(id, a.clone().job_id().unwrap());
        let mut b = a.clone();
        b.nonce = "n2".into();
        assert_ne!(id, b.job_id().unwrap());
        let mut c = a.clone();
        c.limits.timeout_ms += 1;
        assert_ne!(id, c.job_id().unwrap());
    }

    #[test]
    fn json_round_trip_and_strictness() {
        let a = sample();
        let json = serde_json::to_vec(&a).unwrap();
        assert_eq!(JobSpec::from_json(&json).unwrap(), a);
        let mut trailing = json.clone();
        trailing.extend_from_slice(b" {}");
        assert!(matches!(
            JobSpec::from_json(&trailing),
            Err(ProtoError::Json { .. })
        ));
        let mut v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        v["extra"] = serde_json::json!(1);
        let err = JobSpec::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        let big = vec![b' '; MAX_SPEC_BYTES + 1];
        assert!(matches!(
            JobSpec::from_json(&big),
            Err(ProtoError::TooLarge { .. })
        ));
    }

    #[test]
    fn validation_table() {
        type Case = (&'static str, fn(&mut JobSpec));
        let cases: &[Case] = &[
            ("unsorted env", |s| s.env = vec!["B=1".into(), "A=1".into()]),
            ("duplicate env key", |s| {
                s.env = vec!["A=1".into(), "A=2".into()]
            }),
            ("env without =", |s| s.env = vec!["A".into()]),
            ("bad env key", |s| s.env = vec!["1A=1".into()]),
            ("zero timeout", |s| s.limits.timeout_ms = 0),
            ("huge memory", |s| s.limits.memory_bytes = u64::MAX),
            ("zero replicas", |s| s.replicas = 0),
            ("too many replicas", |s| s.replicas = MAX_REPLICAS + 1),
            ("long nonce", |s| s.nonce = "x".repeat(MAX_NONCE_BYTES + 1)),
            ("NUL in arg", |s| s.command = vec!["a\0b".into()]),
        ];
        for (name, mutate) in cases {
            let mut s = sample();
            mutate(&mut s);
            assert!(s.validate().is_err(), "{name} should be refused");
            assert!(s.job_id().is_err(), "{name} should have no job id");
        }
    }

    #[test]
    fn amounts_are_canonical_decimal_strings() {
        let ok: Amount =
            serde_json::from_str("\"340282366920938463463374607431768211455\"").unwrap();
        assert_eq!(ok.0, u128::MAX);
        for bad in [
            "\"01\"",
            "\"-1\"",
            "\"\"",
            "\"1e3\"",
            "12",
            "\"340282366920938463463374607431768211456\"",
        ] {
            assert!(serde_json::from_str::<Amount>(bad).is_err(), "{bad}");
        }
    }
}
