//! The verifier's randomness beacon and the watcher's sample (SPEC.md §11.3).
//!
//! A watcher re-executes only a sample of the receipts it hears. For the sample to deter
//! cheating, an operator must not know, when it signs and gossips a receipt, whether that
//! receipt will be checked. So the choice hashes the receipt with a **beacon** that is
//! revealed only after the receipt was seen: the verifier's ed25519 signature over the
//! epoch number. Ed25519 signatures are deterministic (one value per epoch, so the
//! verifier cannot pick among several) and cannot be computed without the key, yet anyone
//! can check them with the verifier's public key — a verifiable random function in all
//! but name. The verifier reveals an epoch's signature only once the epoch has ended.
//!
//! ```text
//! message  = SHA-256("vouch/beacon/v1" ‖ network_id ‖ epoch (u64 BE))
//! beacon   = SHA-256(Ed25519-Sign(verifier key, message))
//! sampled  ⇔ u64 BE of SHA-256("vouch/sample/v1" ‖ beacon ‖ receipt signing root)[0..8]
//!            < rate · 2^64
//! ```

use sha2::{Digest as _, Sha256};

use crate::{verify_root, NetworkId, OperatorKey, ProtoError};

/// Domain tag of the message the verifier signs for an epoch's beacon.
pub const BEACON_TAG: &[u8] = b"vouch/beacon/v1";
/// Domain tag of the sampling hash.
pub const SAMPLE_TAG: &[u8] = b"vouch/sample/v1";

/// 2^64 as a double (exact).
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// The epoch `now_ms` falls in: `floor(now_ms / epoch_ms)`. `epoch_ms` 0 is treated as 1.
pub fn epoch_of(now_ms: u64, epoch_ms: u64) -> u64 {
    now_ms / epoch_ms.max(1)
}

/// When `epoch` ends and its beacon may be revealed: `(epoch + 1) · epoch_ms`, or `None`
/// if that does not fit in a u64.
pub fn epoch_end_ms(epoch: u64, epoch_ms: u64) -> Option<u64> {
    epoch.checked_add(1)?.checked_mul(epoch_ms.max(1))
}

/// The 32 bytes the verifier signs for `epoch`:
/// `SHA-256("vouch/beacon/v1" ‖ network_id ‖ epoch (u64 BE))`.
pub fn beacon_message(network: &NetworkId, epoch: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(BEACON_TAG);
    h.update(network.0);
    h.update(epoch.to_be_bytes());
    h.finalize().into()
}

/// The beacon an epoch's signature stands for: `SHA-256(signature)`.
pub fn beacon_of(signature: &[u8; 64]) -> [u8; 32] {
    Sha256::digest(signature).into()
}

/// Checks `signature` strictly (SPEC.md §1.4) as the verifier's beacon for `epoch` on
/// `network`, and returns the beacon.
pub fn verify_beacon(
    verifier: &OperatorKey,
    network: &NetworkId,
    epoch: u64,
    signature: &[u8; 64],
) -> Result<[u8; 32], ProtoError> {
    verify_root(verifier, &beacon_message(network, epoch), signature)?;
    Ok(beacon_of(signature))
}

/// The sampling value of a receipt under a beacon: the first 8 bytes, big-endian, of
/// `SHA-256("vouch/sample/v1" ‖ beacon ‖ signing root)`.
pub fn sample_value(beacon: &[u8; 32], signing_root: &[u8; 32]) -> u64 {
    let mut h = Sha256::new();
    h.update(SAMPLE_TAG);
    h.update(beacon);
    h.update(signing_root);
    let h: [u8; 32] = h.finalize().into();
    let mut first = [0u8; 8];
    first.copy_from_slice(&h[..8]);
    u64::from_be_bytes(first)
}

/// Whether the receipt with `signing_root` is in the sample of `beacon` at `rate`: its
/// [`sample_value`] is below `rate · 2^64`, compared exactly. A rate of 1 or more samples
/// every receipt; 0, a negative rate or NaN none.
pub fn sampled(beacon: &[u8; 32], signing_root: &[u8; 32], rate: f64) -> bool {
    // rate · 2^64 is exact (a power-of-two scaling); with an integer on the left,
    // x < t ⇔ x < ceil(t). `as` saturates (NaN → 0), so rates ≥ 1 give 2^64 and more.
    let threshold = (rate * TWO_POW_64).ceil() as u128;
    u128::from(sample_value(beacon, signing_root)) < threshold
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ed25519_dalek::{Signer as _, SigningKey};
    use proptest::prelude::*;

    use super::*;

    fn net() -> NetworkId {
        NetworkId::from_name("vouch-devnet")
    }

    #[test]
    fn message_is_the_spec_s_bytes() {
        // SPEC.md §11.3 spelled out: tag, network id, epoch as 8 big-endian bytes.
        let mut bytes = b"vouch/beacon/v1".to_vec();
        bytes.extend_from_slice(&net().0);
        bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x01, 0x02]);
        let expected: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(beacon_message(&net(), 0x0102), expected);
        assert_ne!(beacon_message(&net(), 0x0103), expected);
        assert_ne!(
            beacon_message(&NetworkId::from_name("other"), 0x0102),
            expected
        );
    }

    #[test]
    fn a_signed_epoch_verifies_only_as_itself() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let vk = OperatorKey(key.verifying_key().to_bytes());
        let sig = key.sign(&beacon_message(&net(), 7)).to_bytes();
        let beacon = verify_beacon(&vk, &net(), 7, &sig).unwrap();
        assert_eq!(beacon, beacon_of(&sig));
        // Deterministic: the verifier has one beacon per epoch, not a choice of many.
        assert_eq!(key.sign(&beacon_message(&net(), 7)).to_bytes(), sig);
        assert!(verify_beacon(&vk, &net(), 8, &sig).is_err());
        assert!(verify_beacon(&vk, &NetworkId::from_name("other"), 7, &sig).is_err());
        let other = OperatorKey(SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes());
        assert!(verify_beacon(&other, &net(), 7, &sig).is_err());
        let mut bad = sig;
        bad[3] ^= 1;
        assert!(verify_beacon(&vk, &net(), 7, &bad).is_err());
    }

    #[test]
    fn sample_value_is_the_spec_s_hash() {
        let mut bytes = b"vouch/sample/v1".to_vec();
        bytes.extend_from_slice(&[1; 32]);
        bytes.extend_from_slice(&[2; 32]);
        let h: [u8; 32] = Sha256::digest(&bytes).into();
        let mut first = [0u8; 8];
        first.copy_from_slice(&h[..8]);
        assert_eq!(sample_value(&[1; 32], &[2; 32]), u64::from_be_bytes(first));
    }

    #[test]
    fn rates_at_the_edges() {
        for root in 0..=255u8 {
            assert!(sampled(&[7; 32], &[root; 32], 1.0));
            assert!(sampled(&[7; 32], &[root; 32], 2.0));
            assert!(!sampled(&[7; 32], &[root; 32], 0.0));
            assert!(!sampled(&[7; 32], &[root; 32], -1.0));
            assert!(!sampled(&[7; 32], &[root; 32], f64::NAN));
        }
        // The threshold sits where the rate puts it: just above a value samples it, just
        // below does not.
        let x = sample_value(&[7; 32], &[1; 32]);
        assert!(sampled(
            &[7; 32],
            &[1; 32],
            (x as f64 + 4096.0) / TWO_POW_64
        ));
        assert!(!sampled(
            &[7; 32],
            &[1; 32],
            (x as f64 - 4096.0) / TWO_POW_64
        ));
    }

    #[test]
    fn no_tag_is_a_prefix_of_another() {
        use crate::tags::*;
        let all = [
            JOB,
            RECEIPT,
            NETWORK,
            ANNOUNCE,
            COMMITMENT,
            REPLICA_COMMIT,
            VERDICT,
            SELECT,
            RESULT_DISPUTE,
            TOKEN_DISPUTE,
            WITHHOLDING_DISPUTE,
            SERVED,
            BEACON,
            SAMPLE,
            crate::TRACE_LEAF_TAG,
        ];
        for (i, a) in all.iter().enumerate() {
            for (j, b) in all.iter().enumerate() {
                assert!(i == j || !b.starts_with(a), "{a:?} is a prefix of {b:?}");
            }
        }
    }

    #[test]
    fn epochs() {
        assert_eq!(epoch_of(0, 10_000), 0);
        assert_eq!(epoch_of(9_999, 10_000), 0);
        assert_eq!(epoch_of(10_000, 10_000), 1);
        assert_eq!(epoch_end_ms(0, 10_000), Some(10_000));
        assert_eq!(epoch_end_ms(u64::MAX, 10_000), None);
        assert_eq!(epoch_end_ms(u64::MAX / 2, 10_000), None);
    }

    #[test]
    fn ten_thousand_roots_at_a_tenth_sample_about_a_tenth() {
        // 10 000 draws at p = 0.1: standard deviation 30, so ±150 is 5 sigma.
        for beacon in [[0u8; 32], [0xa5; 32], beacon_of(&[3; 64])] {
            let hits = (0u32..10_000)
                .filter(|i| sampled(&beacon, &Sha256::digest(i.to_be_bytes()).into(), 0.1))
                .count();
            assert!((850..=1150).contains(&hits), "{hits} of 10 000 sampled");
        }
    }

    proptest! {
        #[test]
        fn sampling_is_a_function_of_beacon_root_and_rate(
            beacon in any::<[u8; 32]>(),
            root in any::<[u8; 32]>(),
            rate in 0.0f64..1.0,
            higher in 0.0f64..1.0,
        ) {
            let s = sampled(&beacon, &root, rate);
            prop_assert_eq!(s, sampled(&beacon, &root, rate));
            // Monotone in the rate: what a lower rate samples, a higher rate samples too.
            if s {
                prop_assert!(sampled(&beacon, &root, rate.max(higher)));
            }
        }
    }
}
