//! Twenty connections race to apply one slash request: exactly one wins.

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
