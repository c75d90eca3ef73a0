//! Table tests: requests that must be refused, with the right error and no state change.

mod common;

use common::*;
use vouch_verifier::{
    CollateralLedger, Key, LedgerError, RequestBody, Sig, SignedRequest, SqliteLedger,
};

struct Fixture {
    _dir: tempfile::TempDir,
    ledger: SqliteLedger,
    s: Signer,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let ledger =
        SqliteLedger::open(dir.path().join("ledger.sqlite"), config(), NET, admin()).expect("open");
    let mut s = Signer::default();
    let a = admin();
    ok(
        &ledger,
        &s.req(
            &a,
            RequestBody::RegisterAsset {
                asset: "eth".into(),
                price_per_unit: 1,
            },
        ),
        0,
    );
    ok(
        &ledger,
        &s.req(
            &sk(10),
            RequestBody::Deposit {
                asset: "eth".into(),
                amount: 500,
            },
        ),
        0,
    );
    ok(&ledger, &s.register_operator(&sk(20), &sk(21)), 0);
    Fixture {
        _dir: dir,
        ledger,
        s,
    }
}

type Case = (
    &'static str,
    fn(&mut Fixture) -> SignedRequest,
    fn(&LedgerError) -> bool,
);

#[test]
fn refused_requests_change_nothing() {
    let cases: Vec<Case> = vec![
        (
            "wrong signer: alice's key, mallory's signature",
            |f| {
                let mut r = f.s.req(
                    &sk(66),
                    RequestBody::QueueWithdrawal {
                        asset: "eth".into(),
                        amount: 500,
                    },
                );
                r.actor = Key::of(&sk(10));
                r
            },
            |e| matches!(e, LedgerError::BadSignature { which: "actor", .. }),
        ),
        (
            "replayed nonce: the exact same deposit twice",
            |f| {
                let r = f.s.req(
                    &sk(10),
                    RequestBody::Deposit {
                        asset: "eth".into(),
                        amount: 1,
                    },
                );
                ok(&f.ledger, &r, 1);
                r
            },
            |e| matches!(e, LedgerError::ReplayedNonce { .. }),
        ),
        (
            "reused nonce with another body",
            |f| {
                let r = f.s.req(
                    &sk(10),
                    RequestBody::Deposit {
                        asset: "eth".into(),
                        amount: 1,
                    },
                );
                ok(&f.ledger, &r, 1);
                SignedRequest::sign(
                    &NET,
                    &sk(10),
                    r.nonce,
                    RequestBody::QueueWithdrawal {
                        asset: "eth".into(),
                        amount: 1,
                    },
                )
                .expect("sign")
            },
            |e| matches!(e, LedgerError::ReplayedNonce { .. }),
        ),
        (
            "forged signature: one bit flipped",
            |f| {
                let mut r = f.s.req(
                    &sk(10),
                    RequestBody::QueueWithdrawal {
                        asset: "eth".into(),
                        amount: 5,
                    },
                );
                r.signature.0[7] ^= 1;
                r
            },
            |e| matches!(e, LedgerError::BadSignature { which: "actor", .. }),
        ),
        (
            "forged body: amount changed after signing",
            |f| {
                let mut r = f.s.req(
                    &sk(10),
                    RequestBody::QueueWithdrawal {
                        asset: "eth".into(),
                        amount: 5,
                    },
                );
                r.body = RequestBody::QueueWithdrawal {
                    asset: "eth".into(),
                    amount: 500,
                };
                r
            },
            |e| matches!(e, LedgerError::BadSignature { .. }),
        ),
        (
            "signed for another network",
            |_| {
                SignedRequest::sign(
                    &[0; 32],
                    &sk(10),
                    1000,
                    RequestBody::Deposit {
                        asset: "eth".into(),
                        amount: 1,
                    },
                )
                .expect("sign")
            },
            |e| matches!(e, LedgerError::BadSignature { .. }),
        ),
        (
            "register_operator without the peer signature",
            |f| {
                f.s.req(
                    &sk(30),
                    RequestBody::RegisterOperator {
                        peer_key: Key::of(&sk(31)),
                    },
                )
            },
            |e| matches!(e, LedgerError::MissingPeerSignature),
        ),
        (
            "register_operator with the peer signature by another key",
            |f| {
                f.s.req(
                    &sk(30),
                    RequestBody::RegisterOperator {
                        peer_key: Key::of(&sk(31)),
                    },
                )
                .with_peer_signature(&NET, &sk(32))
                .expect("sign")
            },
            |e| matches!(e, LedgerError::BadSignature { which: "peer", .. }),
        ),
        (
            "peer signature copied onto another request",
            |f| {
                let mut r = f.s.req(
                    &sk(30),
                    RequestBody::RegisterOperator {
                        peer_key: Key::of(&sk(31)),
                    },
                );
                let other = f.s.register_operator(&sk(30), &sk(31));
                r.peer_signature = other.peer_signature;
                r
            },
            |e| matches!(e, LedgerError::BadSignature { which: "peer", .. }),
        ),
        (
            "non-admin slash",
            |f| {
                f.s.req(
                    &sk(10),
                    RequestBody::Slash {
                        operator: Key::of(&sk(20)),
                        fraction_ppm: 1_000_000,
                        bounty_ppm: 500_000,
                        challenger: Key::of(&sk(10)),
                        jail: true,
                        offence: None,
                    },
                )
            },
            |e| matches!(e, LedgerError::Unauthorized { kind: "slash", .. }),
        ),
        (
            "non-admin register_asset",
            |f| {
                f.s.req(
                    &sk(10),
                    RequestBody::RegisterAsset {
                        asset: "fake".into(),
                        price_per_unit: 1,
                    },
                )
            },
            |e| {
                matches!(
                    e,
                    LedgerError::Unauthorized {
                        kind: "register_asset",
                        ..
                    }
                )
            },
        ),
        (
            "admin may not deposit",
            |f| {
                f.s.req(
                    &admin(),
                    RequestBody::Deposit {
                        asset: "eth".into(),
                        amount: 1,
                    },
                )
            },
            |e| {
                matches!(
                    e,
                    LedgerError::Unauthorized {
                        kind: "deposit",
                        ..
                    }
                )
            },
        ),
        (
            "withdrawal above the balance",
            |f| {
                f.s.req(
                    &sk(10),
                    RequestBody::QueueWithdrawal {
                        asset: "eth".into(),
                        amount: 501,
                    },
                )
            },
            |e| {
                matches!(
                    e,
                    LedgerError::InsufficientBalance {
                        available: 500,
                        requested: 501,
                        ..
                    }
                )
            },
        ),
        (
            "deposit that would overflow u128",
            |f| {
                f.s.req(
                    &sk(10),
                    RequestBody::Deposit {
                        asset: "eth".into(),
                        amount: u128::MAX,
                    },
                )
            },
            |e| matches!(e, LedgerError::Overflow(_)),
        ),
        (
            "unknown asset",
            |f| {
                f.s.req(
                    &sk(10),
                    RequestBody::Deposit {
                        asset: "btc".into(),
                        amount: 1,
                    },
                )
            },
            |e| matches!(e, LedgerError::UnknownAsset(_)),
        ),
        (
            "delegation to an unknown operator",
            |f| {
                f.s.req(
                    &sk(10),
                    RequestBody::Delegate {
                        operator: Key::of(&sk(99)),
                    },
                )
            },
            |e| matches!(e, LedgerError::UnknownOperator(_)),
        ),
        (
            "allocate by a key that is not an operator",
            |f| f.s.req(&sk(10), RequestBody::Allocate { magnitude_ppm: 1 }),
            |e| matches!(e, LedgerError::UnknownOperator(_)),
        ),
        (
            "completing a withdrawal early",
            |f| {
                let q = f.s.req(
                    &sk(10),
                    RequestBody::QueueWithdrawal {
                        asset: "eth".into(),
                        amount: 5,
                    },
                );
                ok(&f.ledger, &q, 10);
                f.s.req(
                    &sk(10),
                    RequestBody::CompleteWithdrawal { withdrawal_id: 1 },
                )
            },
            |e| {
                matches!(
                    e,
                    LedgerError::NotYetClaimable {
                        id: 1,
                        claimable_at_ms: 1010,
                        ..
                    }
                )
            },
        ),
        (
            "completing someone else's withdrawal",
            |f| {
                let q = f.s.req(
                    &sk(10),
                    RequestBody::QueueWithdrawal {
                        asset: "eth".into(),
                        amount: 5,
                    },
                );
                ok(&f.ledger, &q, 10);
                f.s.req(
                    &sk(66),
                    RequestBody::CompleteWithdrawal { withdrawal_id: 1 },
                )
            },
            |e| matches!(e, LedgerError::UnknownWithdrawal { id: 1, .. }),
        ),
        (
            "allocate that lowers the magnitude",
            |f| {
                ok(
                    &f.ledger,
                    &f.s.req(&sk(20), RequestBody::Allocate { magnitude_ppm: 10 }),
                    0,
                );
                f.s.req(&sk(20), RequestBody::Allocate { magnitude_ppm: 5 })
            },
            |e| matches!(e, LedgerError::Rule(_)),
        ),
        (
            "non-admin forfeit_bond",
            |f| {
                f.s.req(
                    &sk(10),
                    RequestBody::ForfeitBond {
                        challenger: Key::of(&sk(10)),
                        asset: "eth".into(),
                        amount: 1,
                        dispute: hex::encode([7; 32]),
                    },
                )
            },
            |e| {
                matches!(
                    e,
                    LedgerError::Unauthorized {
                        kind: "forfeit_bond",
                        ..
                    }
                )
            },
        ),
        (
            "forfeit_bond above the balance",
            |f| {
                f.s.req(
                    &admin(),
                    RequestBody::ForfeitBond {
                        challenger: Key::of(&sk(10)),
                        asset: "eth".into(),
                        amount: 501,
                        dispute: hex::encode([7; 32]),
                    },
                )
            },
            |e| matches!(e, LedgerError::InsufficientBalance { requested: 501, .. }),
        ),
        (
            "forfeit_bond of nothing",
            |f| {
                f.s.req(
                    &admin(),
                    RequestBody::ForfeitBond {
                        challenger: Key::of(&sk(10)),
                        asset: "eth".into(),
                        amount: 0,
                        dispute: hex::encode([7; 32]),
                    },
                )
            },
            |e| matches!(e, LedgerError::Invalid(_)),
        ),
        (
            "forfeit_bond with a malformed dispute id",
            |f| {
                f.s.req(
                    &admin(),
                    RequestBody::ForfeitBond {
                        challenger: Key::of(&sk(10)),
                        asset: "eth".into(),
                        amount: 1,
                        dispute: "ABC".into(),
                    },
                )
            },
            |e| matches!(e, LedgerError::Invalid(_)),
        ),
        (
            "second forfeit of one dispute",
            |f| {
                let body = RequestBody::ForfeitBond {
                    challenger: Key::of(&sk(10)),
                    asset: "eth".into(),
                    amount: 1,
                    dispute: hex::encode([7; 32]),
                };
                ok(&f.ledger, &f.s.req(&admin(), body.clone()), 0);
                f.s.req(&admin(), body)
            },
            |e| matches!(e, LedgerError::AlreadyForfeited { .. }),
        ),
        (
            "full bounty",
            |f| {
                f.s.req(
                    &admin(),
                    RequestBody::Slash {
                        operator: Key::of(&sk(20)),
                        fraction_ppm: 1,
                        bounty_ppm: 1_000_000,
                        challenger: Key::of(&sk(20)),
                        jail: false,
                        offence: None,
                    },
                )
            },
            |e| matches!(e, LedgerError::Invalid(_)),
        ),
    ];
    for (name, make, expected) in cases {
        let mut f = fixture();
        let req = make(&mut f);
        let events_before = f.ledger.snapshot().expect("snapshot").event_count;
        let err = must_fail(&f.ledger, &req, 100);
        assert!(expected(&err), "{name}: wrong error: {err}");
        assert_eq!(
            f.ledger.snapshot().expect("snapshot").event_count,
            events_before,
            "{name}"
        );
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn a_refused_request_does_not_burn_its_nonce() {
    let mut f = fixture();
    let alice = sk(10);
    let too_much = SignedRequest::sign(
        &NET,
        &alice,
        50,
        RequestBody::QueueWithdrawal {
            asset: "eth".into(),
            amount: 10_000,
        },
    )
    .expect("sign");
    must_fail(&f.ledger, &too_much, 0);
    let fine = SignedRequest::sign(
        &NET,
        &alice,
        50,
        RequestBody::QueueWithdrawal {
            asset: "eth".into(),
            amount: 10,
        },
    )
    .expect("sign");
    ok(&f.ledger, &fine, 0);
    assert_eq!(
        f.ledger.last_nonce(&Key::of(&alice)).expect("nonce"),
        Some(50)
    );
    let _ = &mut f.s;
}

#[test]
fn reopening_with_another_verifier_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("l.sqlite");
    drop(SqliteLedger::open(&path, config(), NET, admin()).expect("open"));
    let err = SqliteLedger::open(&path, config(), NET, sk(2)).expect_err("other key");
    assert!(
        matches!(
            err,
            LedgerError::Mismatch {
                what: "verifier key",
                ..
            }
        ),
        "{err}"
    );
    let err = SqliteLedger::open(&path, config(), [0; 32], admin()).expect_err("other net");
    assert!(
        matches!(
            err,
            LedgerError::Mismatch {
                what: "network id",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn request_json_survives_the_wire() {
    let mut s = Signer::default();
    let r = s.register_operator(&sk(20), &sk(21));
    let text = serde_json::to_string(&r).expect("json");
    let back: SignedRequest = serde_json::from_str(&text).expect("parse");
    assert_eq!(back, r);
    let _unused: Option<Sig> = back.peer_signature;
}
