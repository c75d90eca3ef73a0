//! Checks `testdata/vectors.json`: every job id, encoding, signing root and signature in
//! it must be what this crate computes, and every invalid vector must be refused.
//!
//! Regenerate (only when SPEC.md changes on purpose) with
//! `VOUCH_REGENERATE_VECTORS=1 cargo test -p vouch-proto --test vectors`.

#![allow(clippy::unwrap_used)]

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use vouch_proto::*;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vectors.json");

fn specs() -> Vec<JobSpec> {
    let limits = Limits {
        cpu_millis: 1000,
        memory_bytes: 67_108_864,
        output_bytes: 1_048_576,
        pids: 64,
        timeout_ms: 10_000,
        tmpfs_bytes: 16_777_216,
    };
    vec![
        JobSpec {
            image: Digest::of(b"vouch test image"),
            command: vec![],
            env: vec![],
            input_digest: Digest::of(b"hello world\n"),
            limits,
            determinism: Determinism::Deterministic,
            value_at_risk: Amount(0),
            replicas: 1,
            nonce: String::new(),
        },
        JobSpec {
            image: Digest::of(b"vouch test image 2"),
            command: vec![
                "pick".into(),
                "a.b".into(),
                "tab\there \"quoted\" \\ é€😀\u{1}".into(),
            ],
            env: vec!["LANG=C.UTF-8".into(), "MODE=x=y".into(), "_Z=".into()],
            input_digest: Digest::of(b"{\"a\":{\"b\":[1,2,3]}}"),
            limits: Limits {
                timeout_ms: 2_500,
                pids: 16,
                ..limits
            },
            determinism: Determinism::Nondeterministic,
            value_at_risk: Amount(340_282_366_920_938_463_463_374_607_431_768_211_455),
            replicas: 3,
            nonce: "client-42".into(),
        },
    ]
}

fn generate() -> Value {
    let mut jobs = vec![];
    let mut ids = vec![];
    for spec in specs() {
        let canonical = String::from_utf8(spec.canonical_bytes().unwrap()).unwrap();
        let id = spec.job_id().unwrap();
        ids.push(id);
        jobs.push(json!({"spec": spec, "canonical": canonical, "job_id": id}));
    }
    let mut receipts = vec![];
    let mut invalid = vec![];
    for (i, (seed, job_id)) in [([7u8; 32], ids[0]), ([0x42u8; 32], ids[1])]
        .into_iter()
        .enumerate()
    {
        let key = SigningKey::from_bytes(&seed);
        let receipt = Receipt {
            network_id: NetworkId::from_name("vouch-testnet"),
            operator: OperatorKey(key.verifying_key().to_bytes()),
            sequence: 1 + i as u64,
            job_id,
            image: specs()[i].image,
            input_digest: specs()[i].input_digest,
            output_digest: Digest::of(b"output"),
            output_len: 6,
            exit_code: if i == 0 { 0 } else { -2 },
            trace_root: if i == 0 {
                Root32::default()
            } else {
                Root32([0xab; 32])
            },
            trace_len: if i == 0 { 0 } else { 256 },
            issued_at_ms: 1_795_000_000_000 + i as u64,
        };
        let root = receipt.signing_root();
        let signature = key.sign(&root).to_bytes();
        let signed = SignedReceipt {
            receipt: receipt.clone(),
            signature,
        };
        receipts.push(json!({
            "secret_key_seed": hex::encode(seed),
            "network_name": "vouch-testnet",
            "receipt": signed.to_json(),
            "encoded_receipt": hex::encode(receipt.encode()),
            "signing_root": hex::encode(root),
            "signature": hex::encode(signature),
            "signed_receipt": hex::encode(signed.encode()),
        }));
        if i == 0 {
            let mut flipped = signed.clone();
            flipped.signature[10] ^= 0x01;
            invalid.push(json!({"why": "signature bit flipped", "signed_receipt": hex::encode(flipped.encode())}));
            let mut changed = signed.clone();
            changed.receipt.exit_code = 1;
            invalid.push(json!({"why": "exit code changed after signing", "signed_receipt": hex::encode(changed.encode())}));
            let mut other_net = signed.clone();
            other_net.receipt.network_id = NetworkId::from_name("another-network");
            invalid.push(json!({"why": "network id changed (replay on another network)", "signed_receipt": hex::encode(other_net.encode())}));
            let mut truncated = hex::encode(signed.encode());
            truncated.truncate(truncated.len() - 2);
            invalid.push(json!({"why": "one byte short", "signed_receipt": truncated}));
        }
    }
    json!({
        "about": "Vouch protocol test vectors; see proto/SPEC.md. Hex is lowercase. secret_key_seed is the RFC 8032 32-byte private key (test keys only).",
        "tags": {"job": "vouch/job/v1", "receipt": "vouch/receipt/v1", "network": "vouch/network/v1"},
        "jobs": jobs,
        "receipts": receipts,
        "invalid_receipts": invalid,
    })
}

#[test]
fn vectors_match_the_implementation() {
    let generated = generate();
    if std::env::var_os("VOUCH_REGENERATE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
        std::fs::write(PATH, text).unwrap();
    }
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();

    // Recompute from the committed inputs, not only from the generator above.
    for job in committed["jobs"].as_array().unwrap() {
        let spec = JobSpec::from_json(job["spec"].to_string().as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(spec.canonical_bytes().unwrap()).unwrap(),
            job["canonical"]
        );
        assert_eq!(spec.job_id().unwrap().to_hex(), job["job_id"]);
    }
    for v in committed["receipts"].as_array().unwrap() {
        let rj: ReceiptJson = serde_json::from_value(v["receipt"].clone()).unwrap();
        let signed = rj.verify().unwrap();
        assert_eq!(hex::encode(signed.receipt.encode()), v["encoded_receipt"]);
        assert_eq!(
            hex::encode(signed.receipt.signing_root()),
            v["signing_root"]
        );
        assert_eq!(hex::encode(signed.encode()), v["signed_receipt"]);
        let seed: [u8; 32] = hex::decode(v["secret_key_seed"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let key = SigningKey::from_bytes(&seed);
        assert_eq!(key.verifying_key().to_bytes(), signed.receipt.operator.0);
        // ed25519 is deterministic: the same key and root give the same signature.
        assert_eq!(
            hex::encode(key.sign(&signed.receipt.signing_root()).to_bytes()),
            v["signature"]
        );
        assert_eq!(
            signed.receipt.network_id,
            NetworkId::from_name(v["network_name"].as_str().unwrap())
        );
    }
    for v in committed["invalid_receipts"].as_array().unwrap() {
        let bytes = hex::decode(v["signed_receipt"].as_str().unwrap()).unwrap();
        let verdict = SignedReceipt::decode(&bytes).and_then(|s| s.verify());
        assert!(verdict.is_err(), "invalid vector accepted: {}", v["why"]);
    }
    assert_eq!(
        committed, generated,
        "vectors.json is out of date with the implementation"
    );
}
