//! A ledger file written at schema version 1 (committed fixture) opens with the current
//! code, migrates to the current version, and keeps its state and its event chain.

mod common;

use common::*;
use vouch_verifier::{
    verify_chain, CollateralLedger, Key, LedgerError, MemoryLedger, RequestBody, SqliteLedger,
};

const V1_DUMP: &str = include_str!("fixtures/ledger_v1.sql");

/// The seven requests the fixture was made from (same keys, nonces and times), so a
/// MemoryLedger replay must reach the same state and the same signed events.
fn fixture_requests() -> Vec<(vouch_verifier::SignedRequest, u64)> {
    let mut s = Signer::default();
    let (alice, op) = (sk(10), sk(20));
    vec![
        (
            s.req(
                &admin(),
                RequestBody::RegisterAsset {
                    asset: "eth".into(),
                    price_per_unit: 1,
                },
            ),
            0,
        ),
        (
            s.req(
                &alice,
                RequestBody::Deposit {
                    asset: "eth".into(),
                    amount: 10_000,
                },
            ),
            1,
        ),
        (s.register_operator(&op, &sk(21)), 2),
        (
            s.req(
                &op,
                RequestBody::Allocate {
                    magnitude_ppm: 500_000,
                },
            ),
            3,
        ),
        (
            s.req(
                &alice,
                RequestBody::Delegate {
                    operator: Key::of(&op),
                },
            ),
            4,
        ),
        (
            s.req(
                &alice,
                RequestBody::QueueWithdrawal {
                    asset: "eth".into(),
                    amount: 2_000,
                },
            ),
            5,
        ),
        (
            s.req(
                &admin(),
                RequestBody::Slash {
                    operator: Key::of(&op),
                    fraction_ppm: 100_000,
                    bounty_ppm: 100_000,
                    challenger: Key::of(&sk(40)),
                    jail: false,
                    offence: None,
                },
            ),
            6,
        ),
    ]
}

#[test]
fn version_1_file_migrates_and_keeps_its_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.sqlite");
    {
        let conn = rusqlite::Connection::open(&path).expect("create");
        conn.execute_batch(V1_DUMP).expect("load v1 dump");
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(v, 1);
    }

    let ledger = SqliteLedger::open(&path, config(), NET, admin()).expect("open migrates");
    let version: i64 = rusqlite::Connection::open(&path)
        .expect("open")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, vouch_verifier::ledger::SCHEMA_VERSION);

    // Same state and same signed events as replaying the requests on the current code.
    let mem = MemoryLedger::new(config(), NET, admin());
    for (req, now) in fixture_requests() {
        ok(&mem, &req, now);
    }
    let snap = ledger.snapshot().expect("snapshot");
    assert_eq!(snap, mem.snapshot().expect("snapshot"));
    assert_eq!(snap.event_count, 7);
    assert_eq!(
        ledger.balance(&Key::of(&sk(10)), "eth").expect("balance"),
        7_600
    );
    assert_eq!(
        ledger.balance(&Key::of(&sk(40)), "eth").expect("balance"),
        50
    );
    assert!(snap.offences.is_empty());
    let events = ledger.events_from(0, 100).expect("events");
    assert_eq!(events, mem.events_from(0, 100).expect("events"));
    verify_chain(&events, &ledger.verifier_key()).expect("old chain verifies");

    // The new table works on the migrated file, and the chain continues.
    let mut s = Signer::default();
    for _ in 0..2 {
        let _ = s.req(
            &admin(),
            RequestBody::RegisterAsset {
                asset: "x".into(),
                price_per_unit: 1,
            },
        );
    }
    let slash = |s: &mut Signer| {
        s.req(
            &admin(),
            RequestBody::Slash {
                operator: Key::of(&sk(20)),
                fraction_ppm: 1_000,
                bounty_ppm: 0,
                challenger: Key::of(&sk(40)),
                jail: true,
                offence: Some("ab".repeat(32)),
            },
        )
    };
    ok(&ledger, &slash(&mut s), 10);
    let err = must_fail(&ledger, &slash(&mut s), 11);
    assert!(
        matches!(&err, LedgerError::AlreadySlashed { event_seq: 7, .. }),
        "{err}"
    );
    drop(ledger);
    let reopened = SqliteLedger::open(&path, config(), NET, admin()).expect("reopen");
    let snap = reopened.snapshot().expect("snapshot");
    assert_eq!(snap.offences.get(&"ab".repeat(32)), Some(&7));
    verify_chain(
        &reopened.events_from(0, 100).expect("events"),
        &reopened.verifier_key(),
    )
    .expect("chain");
}
