//! Twenty connections race to apply one slash request, or to decide one dispute: exactly
//! one wins.

mod common;

use std::sync::{Arc, Barrier};

use common::*;
use vouch_verifier::{CollateralLedger, Key, LedgerError, Outcome, RequestBody, SqliteLedger};

#[test]
fn same_slash_on_twenty_connections_applies_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.sqlite");
    let mut s = Signer::default();
    let (alice, op) = (sk(10), sk(20));
    {
        let l = SqliteLedger::open(&path, config(), NET, admin()).expect("open");
        ok(
            &l,
            &s.req(
                &admin(),
                RequestBody::RegisterAsset {
                    asset: "eth".into(),
                    price_per_unit: 1,
                },
            ),
            0,
        );
        ok(
            &l,
            &s.req(
                &alice,
                RequestBody::Deposit {
                    asset: "eth".into(),
                    amount: 1_000_000,
                },
            ),
            0,
        );
        ok(&l, &s.register_operator(&op, &sk(21)), 0);
        ok(
            &l,
            &s.req(
                &op,
                RequestBody::Allocate {
                    magnitude_ppm: 1_000_000,
                },
            ),
            0,
        );
        ok(
            &l,
            &s.req(
                &alice,
                RequestBody::Delegate {
                    operator: Key::of(&op),
                },
            ),
            0,
        );
    }
    let slash = s.req(
        &admin(),
        RequestBody::Slash {
            operator: Key::of(&op),
            fraction_ppm: 100_000,
            bounty_ppm: 0,
            challenger: Key::of(&sk(40)),
            jail: false,
            offence: None,
        },
    );
    let barrier = Arc::new(Barrier::new(20));
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let (path, slash, barrier) = (path.clone(), slash.clone(), barrier.clone());
            std::thread::spawn(move || {
                let l = SqliteLedger::open(&path, config(), NET, admin()).expect("open");
                barrier.wait();
                l.apply(&slash, 5)
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    for r in &results {
        match r {
            Ok(applied) => assert!(matches!(applied.outcome, Outcome::Slashed(_))),
            Err(e) => assert!(matches!(e, LedgerError::ReplayedNonce { .. }), "{e}"),
        }
    }
    let l = SqliteLedger::open(&path, config(), NET, admin()).expect("open");
    assert_eq!(
        l.balance(&Key::of(&alice), "eth").expect("balance"),
        900_000
    );
    let snap = l.snapshot().expect("snapshot");
    assert_eq!(snap.event_count, 6);
    assert_eq!(snap.assets["eth"].total, 900_000);
    vouch_verifier::verify_chain(&l.events_from(0, 100).expect("events"), &l.verifier_key())
        .expect("chain");
}

/// Twenty connections race to decide one open dispute, each with its own admin nonce, so
/// only the dispute rule can stop them: exactly one verdict, the bond burned once.
#[test]
fn one_dispute_on_twenty_connections_is_decided_once() {
    use sha2::{Digest as _, Sha256};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.sqlite");
    let mut s = Signer::default();
    let bob = sk(11);
    let id = hex::encode([0x42; 32]);
    let evidence = b"evidence".to_vec();
    {
        let l = SqliteLedger::open(&path, config(), NET, admin()).expect("open");
        ok(
            &l,
            &s.req(
                &admin(),
                RequestBody::RegisterAsset {
                    asset: "eth".into(),
                    price_per_unit: 1,
                },
            ),
            0,
        );
        ok(
            &l,
            &s.req(
                &bob,
                RequestBody::Deposit {
                    asset: "eth".into(),
                    amount: 1_000,
                },
            ),
            0,
        );
        let open = s.req(
            &admin(),
            RequestBody::OpenDispute {
                dispute: id.clone(),
                challenger: Key::of(&bob),
                asset: "eth".into(),
                amount: 100,
                evidence: hex::encode(Sha256::digest(&evidence)),
            },
        );
        l.apply_with(&open, &evidence, 1).expect("open");
    }
    let closes: Vec<_> = (0..20)
        .map(|_| {
            s.req(
                &admin(),
                RequestBody::CloseDispute {
                    dispute: id.clone(),
                    ruling: vouch_verifier::Ruling::Dismissed,
                },
            )
        })
        .collect();
    let barrier = Arc::new(Barrier::new(20));
    let handles: Vec<_> = closes
        .into_iter()
        .map(|close| {
            let (path, barrier) = (path.clone(), barrier.clone());
            std::thread::spawn(move || {
                let l = SqliteLedger::open(&path, config(), NET, admin()).expect("open");
                barrier.wait();
                l.apply(&close, 5)
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    for r in &results {
        match r {
            Ok(applied) => assert!(matches!(applied.outcome, Outcome::DisputeClosed { .. })),
            // Refused as decided, or (a nonce below the winner's) as replayed.
            Err(e) => assert!(
                matches!(
                    e,
                    LedgerError::DisputeClosed { .. } | LedgerError::ReplayedNonce { .. }
                ),
                "{e}"
            ),
        }
    }
    let l = SqliteLedger::open(&path, config(), NET, admin()).expect("open");
    assert_eq!(l.balance(&Key::of(&bob), "eth").expect("balance"), 900);
    assert_eq!(l.locked(&Key::of(&bob), "eth").expect("locked"), 0);
    let snap = l.snapshot().expect("snapshot");
    assert_eq!(snap.event_count, 4);
    assert_eq!(snap.assets["eth"].total, 900);
    vouch_verifier::verify_chain(&l.events_from(0, 100).expect("events"), &l.verifier_key())
        .expect("chain");
}
