//! Merkle trees over trace leaves (RFC 6962 §2.1 shape, SHA-256, domain-separated leaf and
//! node hashes), and openings ("audit paths") that prove one leaf against a signed root.
//!
//! * leaf hash  = SHA-256(0x00 ‖ "vouch/trace/v1" ‖ leaf bytes)
//! * node hash  = SHA-256(0x01 ‖ left ‖ right)
//! * root of n leaves: the leaf hash if n = 1; otherwise split at k = the largest power of
//!   two below n, root = node(root(first k), root(rest)). An empty trace has the all-zero
//!   root, which is also what an untraced receipt carries.

use sha2::{Digest as _, Sha256};

use crate::{ProtoError, Root32};

/// Domain tag inside every leaf hash.
pub const TRACE_LEAF_TAG: &[u8] = b"vouch/trace/v1";
/// Largest leaf accepted, in bytes.
pub const MAX_LEAF_BYTES: usize = 256;
/// Most leaves in a trace (SPEC.md §5.1); openings for larger trees are refused.
pub const MAX_TRACE_LEAVES: u64 = 1 << 20;

/// Hash of one leaf.
pub fn leaf_hash(leaf: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(TRACE_LEAF_TAG);
    h.update(leaf);
    h.finalize().into()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

fn split(n: usize) -> usize {
    // Largest power of two strictly below n (n ≥ 2). `n` is at most MAX_TRACE_LEAVES where
    // it comes from outside (checked by the callers), so this cannot overflow.
    let mut k: usize = 1;
    while k.saturating_mul(2) < n {
        k *= 2;
    }
    k
}

fn root_of_hashes(hashes: &[[u8; 32]]) -> [u8; 32] {
    match hashes.len() {
        0 => [0u8; 32],
        1 => hashes[0],
        n => {
            let k = split(n);
            node_hash(&root_of_hashes(&hashes[..k]), &root_of_hashes(&hashes[k..]))
        }
    }
}

/// The root over `leaves` (all zeros for none).
pub fn merkle_root<L: AsRef<[u8]>>(leaves: &[L]) -> Root32 {
    let hashes: Vec<[u8; 32]> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
    Root32(root_of_hashes(&hashes))
}

/// The opening of leaf `index`: sibling hashes from the leaf up to the root.
pub fn merkle_proof<L: AsRef<[u8]>>(leaves: &[L], index: usize) -> Option<Vec<[u8; 32]>> {
    if index >= leaves.len() {
        return None;
    }
    let hashes: Vec<[u8; 32]> = leaves.iter().map(|l| leaf_hash(l.as_ref())).collect();
    let mut path = Vec::new();
    proof_rec(&hashes, index, &mut path);
    Some(path)
}

fn proof_rec(hashes: &[[u8; 32]], index: usize, path: &mut Vec<[u8; 32]>) {
    let n = hashes.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if index < k {
        proof_rec(&hashes[..k], index, path);
        path.push(root_of_hashes(&hashes[k..]));
    } else {
        proof_rec(&hashes[k..], index - k, path);
        path.push(root_of_hashes(&hashes[..k]));
    }
}

/// Checks that `leaf` is leaf `index` of a tree of `len` leaves with root `root`.
pub fn verify_merkle_proof(
    root: &Root32,
    len: u64,
    index: u64,
    leaf: &[u8],
    proof: &[[u8; 32]],
) -> Result<(), ProtoError> {
    let bad = |reason: &str| {
        Err(ProtoError::Format {
            what: "merkle proof",
            reason: reason.into(),
        })
    };
    if index >= len {
        return bad("index is not below the tree size");
    }
    if len > MAX_TRACE_LEAVES {
        return bad("trace_len is above the largest trace a node produces (2^20 leaves)");
    }
    if leaf.len() > MAX_LEAF_BYTES {
        return bad("leaf too large");
    }
    // Walk down the same splits the tree was built with, recording which side we took.
    let (mut n, mut i) = (len, index);
    let mut sides = Vec::new();
    while n > 1 {
        let k = split(usize::try_from(n).unwrap_or(usize::MAX)) as u64;
        if i < k {
            sides.push(false);
            n = k;
        } else {
            sides.push(true);
            i -= k;
            n -= k;
        }
    }
    if sides.len() != proof.len() {
        return bad("opening has the wrong number of hashes for this index and size");
    }
    let mut acc = leaf_hash(leaf);
    for (sibling, leaf_on_right) in proof.iter().zip(sides.iter().rev()) {
        acc = if *leaf_on_right {
            node_hash(sibling, &acc)
        } else {
            node_hash(&acc, sibling)
        };
    }
    if acc == root.0 {
        Ok(())
    } else {
        bad("opening does not lead to the signed root")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_opening_verifies_and_wrong_ones_do_not() {
        for n in 1..=33usize {
            let leaves: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; 20]).collect();
            let root = merkle_root(&leaves);
            for i in 0..n {
                let proof = merkle_proof(&leaves, i).unwrap();
                verify_merkle_proof(&root, n as u64, i as u64, &leaves[i], &proof).unwrap();
                assert!(verify_merkle_proof(&root, n as u64, i as u64, b"other", &proof).is_err());
                if n > 1 {
                    let j = (i + 1) % n;
                    assert!(
                        verify_merkle_proof(&root, n as u64, j as u64, &leaves[i], &proof).is_err(),
                        "n={n} i={i}"
                    );
                }
            }
        }
    }

    #[test]
    fn huge_lengths_are_refused_not_looped_on() {
        let root = merkle_root(&[b"a"]);
        assert!(verify_merkle_proof(&root, u64::MAX, 5, b"a", &[]).is_err());
        assert!(verify_merkle_proof(&root, MAX_TRACE_LEAVES + 1, 0, b"a", &[]).is_err());
    }

    #[test]
    fn known_shapes() {
        assert_eq!(merkle_root::<&[u8]>(&[]), Root32::default());
        let a = leaf_hash(b"a");
        assert_eq!(merkle_root(&[b"a"]).0, a);
        let (b, c) = (leaf_hash(b"b"), leaf_hash(b"c"));
        // Three leaves: node(node(a, b), c).
        assert_eq!(
            merkle_root(&[b"a", b"b", b"c"]).0,
            node_hash(&node_hash(&a, &b), &c)
        );
    }
}
