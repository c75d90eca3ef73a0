//! Ledger files written at schema versions 1 and 2 (committed fixtures) open with the
//! current code, migrate to the current version, and keep their state and event chains.

mod common;

use common::*;
use sha2::{Digest as _, Sha256};
use vouch_verifier::{
    verify_chain, CollateralLedger, DisputeVerdict, Key, LedgerError, MemoryLedger, RequestBody,
    Ruling, SqliteLedger,
};

const V1_DUMP: &str = include_str!("fixtures/ledger_v1.sql");
const V2_DUMP: &str = include_str!("fixtures/ledger_v2.sql");

/// A ledger file made from `dump`, which must be at schema version `version`.
fn load(dump: &str, version: i64) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.sqlite");
    let conn = rusqlite::Connection::open(&path).expect("create");
    conn.execute_batch(dump).expect("load dump");
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v, version);
    (dir, path)
}

fn version_of(path: &std::path::Path) -> i64 {
    rusqlite::Connection::open(path)
        .expect("open")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version")
}

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

/// The nine requests of the version-2 fixture: the seven above, a slash naming an offence
/// and a bond forfeited the version-2 way (from the challenger's deposit).
fn fixture_requests_v2() -> Vec<(vouch_verifier::SignedRequest, u64)> {
    let mut out = fixture_requests();
    let mut admin_nonce = out
        .iter()
        .filter(|(r, _)| r.actor == Key::of(&admin()))
        .map(|(r, _)| r.nonce)
        .max()
        .expect("admin requests");
    let mut next = |body| {
        admin_nonce += 1;
        vouch_verifier::SignedRequest::sign(&NET, &admin(), admin_nonce, body).expect("sign")
    };
    out.push((
        next(RequestBody::Slash {
            operator: Key::of(&sk(20)),
            fraction_ppm: 1_000,
            bounty_ppm: 0,
            challenger: Key::of(&sk(40)),
            jail: false,
            offence: Some("cd".repeat(32)),
        }),
        7,
    ));
    out.push((
        next(RequestBody::ForfeitBond {
            challenger: Key::of(&sk(40)),
            asset: "eth".into(),
            amount: 10,
            dispute: "ef".repeat(32),
        }),
        8,
    ));
    out
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

#[test]
fn version_2_file_migrates_and_locks_bonds() {
    let (_dir, path) = load(V2_DUMP, 2);
    let ledger = SqliteLedger::open(&path, config(), NET, admin()).expect("open migrates");
    assert_eq!(version_of(&path), vouch_verifier::ledger::SCHEMA_VERSION);

    // Same state and same signed events as replaying the nine requests on the current code.
    let mem = MemoryLedger::new(config(), NET, admin());
    let requests = fixture_requests_v2();
    for (req, now) in &requests {
        ok(&mem, req, *now);
    }
    let snap = ledger.snapshot().expect("snapshot");
    assert_eq!(snap, mem.snapshot().expect("snapshot"));
    assert_eq!(snap.event_count, 9);
    assert_eq!(snap.offences.get(&"cd".repeat(32)), Some(&7));
    assert_eq!(snap.offences.get(&"ef".repeat(32)), Some(&8));
    assert!(snap.disputes.is_empty());
    let challenger = Key::of(&sk(40));
    assert_eq!(ledger.balance(&challenger, "eth").expect("balance"), 40);
    let events = ledger.events_from(0, 100).expect("events");
    assert_eq!(events, mem.events_from(0, 100).expect("events"));
    verify_chain(&events, &ledger.verifier_key()).expect("old chain verifies");

    // The new table works on the migrated file: a bond is locked, survives a reopen, and
    // is released by its verdict; the chain continues.
    let mut admin_nonce = requests
        .iter()
        .filter(|(r, _)| r.actor == Key::of(&admin()))
        .map(|(r, _)| r.nonce)
        .max()
        .expect("admin requests");
    let mut next = |body| {
        admin_nonce += 1;
        vouch_verifier::SignedRequest::sign(&NET, &admin(), admin_nonce, body).expect("sign")
    };
    let evidence = b"a challenge".to_vec();
    let open = |id: String| RequestBody::OpenDispute {
        dispute: id,
        challenger,
        asset: "eth".into(),
        amount: 15,
        evidence: hex::encode(Sha256::digest(&evidence)),
    };
    // The version-2 forfeit already spent its dispute id.
    let reused = next(open("ef".repeat(32)));
    let err = ledger
        .apply_with(&reused, &evidence, 9)
        .expect_err("forfeited id reopened");
    assert!(
        matches!(&err, LedgerError::AlreadyForfeited { event_seq: 8, .. }),
        "{err}"
    );
    let id = "12".repeat(32);
    let opened = ledger
        .apply_with(&next(open(id.clone())), &evidence, 10)
        .expect("open");
    assert_eq!(opened.event.seq, 9);
    assert_eq!(ledger.balance(&challenger, "eth").expect("balance"), 25);
    drop(ledger);
    let reopened = SqliteLedger::open(&path, config(), NET, admin()).expect("reopen");
    assert_eq!(reopened.locked(&challenger, "eth").expect("locked"), 15);
    assert_eq!(reopened.open_disputes().expect("open").len(), 1);
    assert_eq!(
        reopened.dispute_evidence(&id).expect("evidence"),
        Some(evidence.clone())
    );
    let close = next(RequestBody::CloseDispute {
        dispute: id.clone(),
        ruling: Ruling::Void,
    });
    reopened.apply_with(&close, b"{}", 11).expect("close");
    assert_eq!(reopened.balance(&challenger, "eth").expect("balance"), 40);
    let d = reopened.dispute(&id).expect("dispute").expect("stored");
    assert_eq!(
        d.closed.map(|c| (c.verdict, c.seq)),
        Some((DisputeVerdict::Void, 10))
    );
    verify_chain(
        &reopened.events_from(0, 100).expect("events"),
        &reopened.verifier_key(),
    )
    .expect("chain");
}
