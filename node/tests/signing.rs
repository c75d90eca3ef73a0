//! Signing protection against a real SQLite file: a table of cases, a concurrent
//! "exactly one wins" race between independent stores (connections) on one file, and the
//! EIP-3076-style export/import.

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

use std::sync::{Arc, Barrier};

use ed25519_dalek::SigningKey;
use vouch_node::error::SignError;
use vouch_node::signer::{Fresh, ResultBody, SigningStore};
use vouch_proto::{Digest, JobId, NetworkId, OperatorKey, Receipt, Root32};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[5; 32])
}

fn net() -> NetworkId {
    NetworkId::from_name("test")
}

fn body(job: u8, output: &[u8]) -> ResultBody {
    ResultBody {
        job_id: JobId([job; 32]),
        image: Digest::of(b"img"),
        input_digest: Digest::of(b"in"),
        output_digest: Digest::of(output),
        output_len: output.len() as u64,
        exit_code: 0,
        trace_root: Root32::default(),
        trace_len: 0,
    }
}

fn receipt(job: u8, seq: u64, output: &[u8]) -> Receipt {
    let b = body(job, output);
    Receipt {
        network_id: net(),
        operator: OperatorKey(key().verifying_key().to_bytes()),
        sequence: seq,
        job_id: b.job_id,
        image: b.image,
        input_digest: b.input_digest,
        output_digest: b.output_digest,
        output_len: b.output_len,
        exit_code: 0,
        trace_root: Root32::default(),
        trace_len: 0,
        issued_at_ms: 1000 + seq,
    }
}

#[derive(Debug)]
enum Expect {
    New,
    Existing,
    ConflictingJob,
    SequenceReused,
    NotIncreasing,
    WrongIdentity,
}

#[test]
fn table_of_cases() {
    // Each case: receipts signed in order on a fresh history; the last one's outcome is checked.
    let other_net = |mut r: Receipt| {
        r.network_id = NetworkId::from_name("other");
        r
    };
    let cases: Vec<(&str, Vec<Receipt>, Expect)> = vec![
        ("first receipt", vec![receipt(1, 1, b"a")], Expect::New),
        (
            "same receipt again",
            vec![receipt(1, 1, b"a"), receipt(1, 1, b"a")],
            Expect::Existing,
        ),
        (
            "same job, different output",
            vec![receipt(1, 1, b"a"), receipt(1, 2, b"b")],
            Expect::ConflictingJob,
        ),
        (
            "same job, same output, new sequence",
            vec![receipt(1, 1, b"a"), receipt(1, 2, b"a")],
            Expect::ConflictingJob,
        ),
        (
            "other job, reused sequence",
            vec![receipt(1, 1, b"a"), receipt(2, 1, b"a")],
            Expect::SequenceReused,
        ),
        (
            "other job, lower sequence",
            vec![receipt(1, 5, b"a"), receipt(2, 3, b"a")],
            Expect::NotIncreasing,
        ),
        (
            "other job, higher sequence",
            vec![receipt(1, 5, b"a"), receipt(2, 6, b"a")],
            Expect::New,
        ),
        (
            "other network",
            vec![other_net(receipt(1, 1, b"a"))],
            Expect::WrongIdentity,
        ),
    ];
    for (name, receipts, expect) in cases {
        let dir = tempfile::tempdir().unwrap();
        let store = SigningStore::open(&dir.path().join("h.sqlite"), key(), net()).unwrap();
        let (last, before) = receipts.split_last().unwrap();
        for r in before {
            store.sign_receipt(r.clone()).unwrap();
        }
        let got = store.sign_receipt(last.clone());
        let ok = match (&expect, &got) {
            (Expect::New, Ok((s, Fresh::New))) => s.verify().is_ok(),
            (Expect::Existing, Ok((s, Fresh::Existing))) => s.verify().is_ok(),
            (Expect::ConflictingJob, Err(SignError::ConflictingJob { .. })) => true,
            (Expect::SequenceReused, Err(SignError::SequenceReused(_))) => true,
            (Expect::NotIncreasing, Err(SignError::SequenceNotIncreasing { .. })) => true,
            (Expect::WrongIdentity, Err(SignError::WrongIdentity(_))) => true,
            _ => false,
        };
        assert!(ok, "{name}: expected {expect:?}, got {got:?}");
    }
}

#[test]
fn sign_result_assigns_sequences_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = SigningStore::open(&dir.path().join("h.sqlite"), key(), net()).unwrap();
    let (a, fa) = store.sign_result(&body(1, b"x")).unwrap();
    let (b, fb) = store.sign_result(&body(2, b"y")).unwrap();
    assert_eq!((a.receipt.sequence, b.receipt.sequence), (1, 2));
    assert_eq!((fa, fb), (Fresh::New, Fresh::New));
    let (a2, fa2) = store.sign_result(&body(1, b"x")).unwrap();
    assert_eq!(fa2, Fresh::Existing);
    assert_eq!(
        a2, a,
        "same job, same result: the very same receipt and signature"
    );
    let err = store.sign_result(&body(1, b"different")).unwrap_err();
    assert!(
        matches!(err, SignError::ConflictingJob { sequence: 1, .. }),
        "{err}"
    );
    // A reopened store (a restart) remembers all of it.
    drop(store);
    let store = SigningStore::open(&dir.path().join("h.sqlite"), key(), net()).unwrap();
    assert_eq!(store.sign_result(&body(1, b"x")).unwrap().0, a);
    assert!(store.sign_result(&body(1, b"z")).is_err());
    assert_eq!(
        store
            .sign_result(&body(3, b"w"))
            .unwrap()
            .0
            .receipt
            .sequence,
        3
    );
}

#[test]
fn history_is_bound_to_its_key_and_network() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.sqlite");
    drop(SigningStore::open(&path, key(), net()).unwrap());
    let err = SigningStore::open(&path, SigningKey::from_bytes(&[6; 32]), net()).unwrap_err();
    assert!(matches!(err, SignError::ForeignHistory { .. }), "{err}");
    let err = SigningStore::open(&path, key(), NetworkId::from_name("other")).unwrap_err();
    assert!(matches!(err, SignError::ForeignHistory { .. }), "{err}");
}

#[test]
fn concurrent_conflicting_signers_exactly_one_wins() {
    const N: usize = 16;
    for round in 0..5u8 {
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join("h.sqlite"));
        drop(SigningStore::open(&path, key(), net()).unwrap());
        let barrier = Arc::new(Barrier::new(N));
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    // Separate store = separate SQLite connection: only the database's
                    // exclusive lock stands between the racers.
                    let store = SigningStore::open(&path, key(), net()).unwrap();
                    barrier.wait();
                    store.sign_result(&body(round, format!("output {i}").as_bytes()))
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one signature, got {results:?}"
        );
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, SignError::ConflictingJob { .. }),
                    "losers are refused as conflicts: {e}"
                );
            }
        }
        let store = SigningStore::open(&path, key(), net()).unwrap();
        assert_eq!(store.export().unwrap().data[0].signed_receipts.len(), 1);
    }
}

#[test]
fn concurrent_distinct_jobs_get_distinct_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("h.sqlite"));
    drop(SigningStore::open(&path, key(), net()).unwrap());
    let handles: Vec<_> = (0..8u8)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let store = SigningStore::open(&path, key(), net()).unwrap();
                (0..10u8)
                    .map(|j| {
                        store
                            .sign_result(&body(t * 10 + j, b"o"))
                            .unwrap()
                            .0
                            .receipt
                            .sequence
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seqs: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    seqs.sort();
    assert_eq!(seqs, (1..=80).collect::<Vec<_>>());
}

#[test]
fn export_import_moves_history_between_hosts() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let old = SigningStore::open(&a.path().join("h.sqlite"), key(), net()).unwrap();
    let r1 = old.sign_result(&body(1, b"x")).unwrap().0;
    old.sign_result(&body(2, b"y")).unwrap();
    let doc = old.export().unwrap();
    let json = serde_json::to_string(&doc).unwrap();
    assert!(
        json.contains("\"interchange_format_version\":\"vouch-receipts-1\""),
        "{json}"
    );

    let new = SigningStore::open(&b.path().join("h.sqlite"), key(), net()).unwrap();
    let s = new.import(&serde_json::from_str(&json).unwrap()).unwrap();
    assert_eq!((s.imported, s.skipped), (2, 0));
    // Importing twice changes nothing.
    let s = new.import(&doc).unwrap();
    assert_eq!((s.imported, s.skipped), (0, 2));
    // The new host refuses what the old host would have refused, and continues the sequence.
    assert!(matches!(
        new.sign_result(&body(1, b"other")),
        Err(SignError::ConflictingJob { .. })
    ));
    assert_eq!(new.sign_result(&body(1, b"x")).unwrap().0, r1);
    assert_eq!(
        new.sign_result(&body(3, b"z")).unwrap().0.receipt.sequence,
        3
    );

    // A file that conflicts with the history is refused whole.
    let c = tempfile::tempdir().unwrap();
    let third = SigningStore::open(&c.path().join("h.sqlite"), key(), net()).unwrap();
    third.sign_result(&body(2, b"conflicting")).unwrap();
    let err = third.import(&doc).unwrap_err();
    assert!(matches!(err, SignError::Import(_)), "{err}");
    assert_eq!(
        third.export().unwrap().data[0].signed_receipts.len(),
        1,
        "nothing imported"
    );

    // A file for another key or network is refused.
    let mut foreign = doc.clone();
    foreign.data[0].pubkey = hex::encode([1u8; 32]);
    assert!(new.import(&foreign).is_err());
    let mut foreign = doc.clone();
    foreign.metadata.network_id = NetworkId::from_name("x").to_hex();
    assert!(new.import(&foreign).is_err());
    // A receipt whose signature was tampered with is refused.
    let mut forged = doc.clone();
    let sig = forged.data[0].signed_receipts[0]
        .signature
        .as_mut()
        .unwrap();
    sig.replace_range(0..2, if sig.starts_with("00") { "01" } else { "00" });
    let d = tempfile::tempdir().unwrap();
    let fresh = SigningStore::open(&d.path().join("h.sqlite"), key(), net()).unwrap();
    assert!(fresh.import(&forged).is_err());
}

#[test]
fn imported_root_only_entries_block_new_signatures_for_that_job() {
    let a = tempfile::tempdir().unwrap();
    let old = SigningStore::open(&a.path().join("h.sqlite"), key(), net()).unwrap();
    old.sign_result(&body(1, b"x")).unwrap();
    let mut doc = old.export().unwrap();
    doc.data[0].signed_receipts[0].receipt = None;
    doc.data[0].signed_receipts[0].signature = None;
    let b = tempfile::tempdir().unwrap();
    let new = SigningStore::open(&b.path().join("h.sqlite"), key(), net()).unwrap();
    new.import(&doc).unwrap();
    assert!(
        new.sign_result(&body(1, b"x")).is_err(),
        "no receipt to compare with: refuse"
    );
    assert_eq!(
        new.sign_result(&body(2, b"y")).unwrap().0.receipt.sequence,
        2
    );
}
