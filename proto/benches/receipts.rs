//! Receipt signing and verification rates: sign, strict single verification (what
//! verifiers and `SignedReceipt::verify` use), and ed25519 batch verification of 64 (the
//! candidate fast path for gossip validation). Prints receipts/s per core for each.

use criterion::{criterion_group, criterion_main, Criterion};
use ed25519_dalek::{Signer, SigningKey};
use vouch_proto::{Digest, JobId, NetworkId, OperatorKey, Receipt, Root32, SignedReceipt};

fn receipts(n: usize) -> (Vec<SigningKey>, Vec<SignedReceipt>) {
    let keys: Vec<SigningKey> = (0..n)
        .map(|_| SigningKey::generate(&mut rand::rngs::OsRng))
        .collect();
    let signed = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let receipt = Receipt {
                network_id: NetworkId::from_name("bench"),
                operator: OperatorKey(k.verifying_key().to_bytes()),
                sequence: i as u64,
                job_id: JobId([i as u8; 32]),
                image: Digest([1; 32]),
                input_digest: Digest([2; 32]),
                output_digest: Digest([3; 32]),
                output_len: 10,
                exit_code: 0,
                trace_root: Root32::default(),
                trace_len: 0,
                issued_at_ms: 1,
            };
            let signature = k.sign(&receipt.signing_root()).to_bytes();
            SignedReceipt { receipt, signature }
        })
        .collect();
    (keys, signed)
}

fn bench(c: &mut Criterion) {
    let (keys, signed) = receipts(64);
    let mut g = c.benchmark_group("receipts");
    g.bench_function("sign", |b| {
        b.iter(|| keys[0].sign(&signed[0].receipt.signing_root()))
    });
    g.bench_function("decode_and_verify_strict", |b| {
        let bytes = signed[0].encode();
        b.iter(|| SignedReceipt::decode(&bytes).map(|s| s.verify()))
    });
    g.bench_function("verify_batch_64", |b| {
        let roots: Vec<[u8; 32]> = signed.iter().map(|s| s.receipt.signing_root()).collect();
        let msgs: Vec<&[u8]> = roots.iter().map(|r| r.as_slice()).collect();
        let sigs: Vec<ed25519_dalek::Signature> = signed
            .iter()
            .map(|s| ed25519_dalek::Signature::from_bytes(&s.signature))
            .collect();
        let vks: Vec<ed25519_dalek::VerifyingKey> =
            keys.iter().map(|k| k.verifying_key()).collect();
        b.iter(|| ed25519_dalek::verify_batch(&msgs, &sigs, &vks))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
