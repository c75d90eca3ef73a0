//! The ids a challenger signs to dispute a receipt's result (SPEC.md §11.1) or one token
//! of a traced inference (SPEC.md §11.4).
//!
//! Both sides compute it: a challenger (the `vouch-verifier dispute result` CLI, a node
//! handing a replicated job's disagreement to the verifier) to sign it, and the verifier to
//! check that signature. It names the network, the challenger, the receipt and the bond, so
//! a signature can neither be replayed on another network nor spend another key's bond.

use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::{to_canonical_bytes, NetworkId, ProtoError};

/// `SHA-256(tag ‖ network id ‖ canonical JSON of value)`: every id and statement here.
fn tagged_hash(
    tag: &[u8],
    network: &NetworkId,
    value: &serde_json::Value,
) -> Result<[u8; 32], ProtoError> {
    let canonical = to_canonical_bytes(value)?;
    let mut h = Sha256::new();
    h.update(tag);
    h.update(network.0);
    h.update(&canonical);
    Ok(h.finalize().into())
}

/// Domain tag of a result dispute id.
pub const RESULT_DISPUTE_TAG: &[u8] = b"vouch/dispute/result/v1";

/// `SHA-256("vouch/dispute/result/v1" ‖ network id ‖ canonical JSON {"bond": {"amount",
/// "asset"}, "challenger", "receipt"})`, where `amount` is a decimal string, `challenger`
/// the 64-hex public key and `receipt` the 64-hex signing root of the disputed receipt.
pub fn result_dispute_id(
    network: &NetworkId,
    challenger: &[u8; 32],
    receipt_root: &[u8; 32],
    bond_asset: &str,
    bond_amount: u128,
) -> Result<[u8; 32], ProtoError> {
    let value = json!({
        "bond": {"amount": bond_amount.to_string(), "asset": bond_asset},
        "challenger": hex::encode(challenger),
        "receipt": hex::encode(receipt_root),
    });
    tagged_hash(RESULT_DISPUTE_TAG, network, &value)
}

/// Domain tag of a one-token (T2) dispute id.
pub const TOKEN_DISPUTE_TAG: &[u8] = b"vouch/dispute/token/v1";

/// `SHA-256("vouch/dispute/token/v1" ‖ network id ‖ canonical JSON {"bond": {"amount",
/// "asset"}, "challenger", "position", "receipt"})`: as [`result_dispute_id`], plus the
/// disputed token's position (an integer), under its own tag so that a signature over one
/// kind of dispute can never open the other.
pub fn token_dispute_id(
    network: &NetworkId,
    challenger: &[u8; 32],
    receipt_root: &[u8; 32],
    position: u32,
    bond_asset: &str,
    bond_amount: u128,
) -> Result<[u8; 32], ProtoError> {
    let value = json!({
        "bond": {"amount": bond_amount.to_string(), "asset": bond_asset},
        "challenger": hex::encode(challenger),
        "position": position,
        "receipt": hex::encode(receipt_root),
    });
    tagged_hash(TOKEN_DISPUTE_TAG, network, &value)
}

/// Domain tag of a withholding dispute id.
pub const WITHHOLDING_DISPUTE_TAG: &[u8] = b"vouch/dispute/withholding/v1";

/// What a withholding dispute demands be published (SPEC.md §11.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemandFlags {
    /// The job spec (its job id is the receipt's).
    pub spec: bool,
    /// The input bytes (their SHA-256 is the receipt's `input_digest`).
    pub input: bool,
    /// The output bytes.
    pub output: bool,
}

/// `SHA-256("vouch/dispute/withholding/v1" ‖ network id ‖ canonical JSON {"bond":
/// {"amount", "asset"}, "challenger", "input", "output", "positions", "receipt",
/// "spec"})`: as [`result_dispute_id`], plus what the challenger demands the operator
/// publish — `spec`, `input`, `output` (booleans) and `positions` (the trace leaves with
/// their openings, integers in increasing order) — under its own tag (SPEC.md §11.5).
pub fn withholding_dispute_id(
    network: &NetworkId,
    challenger: &[u8; 32],
    receipt_root: &[u8; 32],
    flags: DemandFlags,
    positions: &[u32],
    bond_asset: &str,
    bond_amount: u128,
) -> Result<[u8; 32], ProtoError> {
    let value = json!({
        "bond": {"amount": bond_amount.to_string(), "asset": bond_asset},
        "challenger": hex::encode(challenger),
        "input": flags.input,
        "output": flags.output,
        "positions": positions,
        "receipt": hex::encode(receipt_root),
        "spec": flags.spec,
    });
    tagged_hash(WITHHOLDING_DISPUTE_TAG, network, &value)
}

/// Domain tag of a served-evidence statement.
pub const SERVED_TAG: &[u8] = b"vouch/served/v1";

/// Evidence an operator serves about one of its receipts (SPEC.md §7.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served<'a> {
    /// The output bytes, named by their SHA-256 and length.
    Output {
        /// SHA-256 of the bytes served.
        digest: [u8; 32],
        /// Their length.
        len: u64,
    },
    /// Trace leaf `index` with its Merkle opening, as served.
    Leaf {
        /// The position.
        index: u64,
        /// The leaf bytes.
        leaf: &'a [u8],
        /// The sibling hashes, bottom-up.
        proof: &'a [[u8; 32]],
    },
}

/// What the operator signs when it serves evidence of the receipt with signing root
/// `receipt_root`: `SHA-256("vouch/served/v1" ‖ network id ‖ canonical JSON)`, the JSON
/// `{"kind": "output", "output_digest", "output_len", "receipt"}` or `{"index", "kind":
/// "leaf", "leaf", "proof", "receipt"}` (hex strings; `output_len` and `index` integers).
/// Served evidence that does not match what the receipt signs is the operator
/// contradicting itself, which anyone holding this signature can prove.
pub fn served_statement(
    network: &NetworkId,
    receipt_root: &[u8; 32],
    served: &Served<'_>,
) -> Result<[u8; 32], ProtoError> {
    let value = match served {
        Served::Output { digest, len } => json!({
            "kind": "output",
            "output_digest": hex::encode(digest),
            "output_len": len,
            "receipt": hex::encode(receipt_root),
        }),
        Served::Leaf { index, leaf, proof } => json!({
            "index": index,
            "kind": "leaf",
            "leaf": hex::encode(leaf),
            "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
            "receipt": hex::encode(receipt_root),
        }),
    };
    tagged_hash(SERVED_TAG, network, &value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_id() {
        let net = NetworkId::from_name("vouch-devnet");
        let id = |n: &NetworkId, c: u8, r: u8, a: &str, v: u128| {
            result_dispute_id(n, &[c; 32], &[r; 32], a, v).unwrap()
        };
        let base = id(&net, 1, 2, "eth", 10);
        assert_eq!(base, id(&net, 1, 2, "eth", 10));
        assert_ne!(base, id(&NetworkId::from_name("other"), 1, 2, "eth", 10));
        assert_ne!(base, id(&net, 3, 2, "eth", 10));
        assert_ne!(base, id(&net, 1, 3, "eth", 10));
        assert_ne!(base, id(&net, 1, 2, "steth", 10));
        assert_ne!(base, id(&net, 1, 2, "eth", 11));
    }

    #[test]
    fn matches_the_spec_s_construction() {
        // SPEC.md §11.1 spelled out by hand: tag, network id, then the canonical JSON
        // (keys sorted, no spaces).
        let net = NetworkId::from_name("vouch-devnet");
        let json = format!(
            r#"{{"bond":{{"amount":"10","asset":"eth"}},"challenger":"{}","receipt":"{}"}}"#,
            "01".repeat(32),
            "02".repeat(32)
        );
        let mut h = Sha256::new();
        h.update(b"vouch/dispute/result/v1");
        h.update(net.0);
        h.update(json.as_bytes());
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(
            result_dispute_id(&net, &[1; 32], &[2; 32], "eth", 10).unwrap(),
            expected
        );
    }

    #[test]
    fn token_id_matches_the_spec_and_differs_from_the_result_id() {
        // SPEC.md §11.4 spelled out by hand.
        let net = NetworkId::from_name("vouch-devnet");
        let json = format!(
            r#"{{"bond":{{"amount":"10","asset":"eth"}},"challenger":"{}","position":7,"receipt":"{}"}}"#,
            "01".repeat(32),
            "02".repeat(32)
        );
        let mut h = Sha256::new();
        h.update(b"vouch/dispute/token/v1");
        h.update(net.0);
        h.update(json.as_bytes());
        let expected: [u8; 32] = h.finalize().into();
        let id = token_dispute_id(&net, &[1; 32], &[2; 32], 7, "eth", 10).unwrap();
        assert_eq!(id, expected);
        assert_ne!(
            id,
            token_dispute_id(&net, &[1; 32], &[2; 32], 8, "eth", 10).unwrap()
        );
        assert_ne!(
            id,
            result_dispute_id(&net, &[1; 32], &[2; 32], "eth", 10).unwrap()
        );
    }

    #[test]
    fn withholding_id_matches_the_spec_and_names_the_demand() {
        // SPEC.md §11.5 spelled out by hand.
        let net = NetworkId::from_name("vouch-devnet");
        let json = format!(
            r#"{{"bond":{{"amount":"10","asset":"eth"}},"challenger":"{}","input":false,"output":true,"positions":[3,9],"receipt":"{}","spec":false}}"#,
            "01".repeat(32),
            "02".repeat(32)
        );
        let mut h = Sha256::new();
        h.update(b"vouch/dispute/withholding/v1");
        h.update(net.0);
        h.update(json.as_bytes());
        let expected: [u8; 32] = h.finalize().into();
        let flags = |spec, input, output| DemandFlags {
            spec,
            input,
            output,
        };
        let id = |f: DemandFlags, positions: &[u32]| {
            withholding_dispute_id(&net, &[1; 32], &[2; 32], f, positions, "eth", 10).unwrap()
        };
        assert_eq!(id(flags(false, false, true), &[3, 9]), expected);
        assert_ne!(id(flags(false, false, false), &[3, 9]), expected);
        assert_ne!(id(flags(true, false, true), &[3, 9]), expected);
        assert_ne!(id(flags(false, true, true), &[3, 9]), expected);
        assert_ne!(id(flags(false, false, true), &[3]), expected);
        assert_ne!(
            id(flags(false, false, true), &[]),
            result_dispute_id(&net, &[1; 32], &[2; 32], "eth", 10).unwrap()
        );
    }

    #[test]
    fn served_statement_matches_the_spec() {
        // SPEC.md §7.7 spelled out by hand.
        let net = NetworkId::from_name("vouch-devnet");
        let digest = [3u8; 32];
        let json = format!(
            r#"{{"kind":"output","output_digest":"{}","output_len":12,"receipt":"{}"}}"#,
            "03".repeat(32),
            "02".repeat(32)
        );
        let mut h = Sha256::new();
        h.update(b"vouch/served/v1");
        h.update(net.0);
        h.update(json.as_bytes());
        let expected: [u8; 32] = h.finalize().into();
        let out = Served::Output { digest, len: 12 };
        assert_eq!(served_statement(&net, &[2; 32], &out).unwrap(), expected);
        let json = format!(
            r#"{{"index":5,"kind":"leaf","leaf":"0a0b","proof":["{}"],"receipt":"{}"}}"#,
            "04".repeat(32),
            "02".repeat(32)
        );
        let mut h = Sha256::new();
        h.update(b"vouch/served/v1");
        h.update(net.0);
        h.update(json.as_bytes());
        let expected: [u8; 32] = h.finalize().into();
        let leaf = Served::Leaf {
            index: 5,
            leaf: &[10, 11],
            proof: &[[4; 32]],
        };
        assert_eq!(served_statement(&net, &[2; 32], &leaf).unwrap(), expected);
        assert_ne!(
            served_statement(&net, &[2; 32], &Served::Output { digest, len: 13 }).unwrap(),
            served_statement(&net, &[2; 32], &out).unwrap()
        );
    }
}
