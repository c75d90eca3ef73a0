//! Group commit under load: 32 threads share one `SqliteLedger` on a real file and send
//! interleaved valid and invalid requests at once, so batches mix both. Every valid request
//! must be applied exactly once, every invalid one refused with its own error, the chain
//! must verify, stake must be conserved, and the file reopened must hold the same state.
//! Then twenty admin requests race to slash one offence inside shared batches: one wins.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};

use common::*;
use ed25519_dalek::SigningKey;
use sha2::{Digest as _, Sha256};
use vouch_verifier::{
    verify_chain, CollateralLedger, Key, LedgerError, Outcome, RequestBody, Ruling, SignedRequest,
    Snapshot, SqliteLedger,
};

const THREADS: u8 = 32;
const ROUNDS: u64 = 12;
const WITHDRAW: u128 = 10;

fn deposit_amount(t: u8) -> u128 {
    1_000 + u128::from(t)
}

fn eth_deposit(amount: u128) -> RequestBody {
    RequestBody::Deposit {
        asset: "eth".into(),
        amount,
    }
}

/// What one request must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Done,
    Queued,
    BondLocked,
    DisputeClosed,
    Replayed,
    Insufficient,
    UnknownAsset,
    Invalid,
    DisputeExists,
    AlreadyDecided,
}

fn check(expect: Expect, got: &vouch_verifier::Result<vouch_verifier::Applied>) -> bool {
    match (expect, got) {
        (Expect::Done, Ok(a)) => a.outcome == Outcome::Done,
        (Expect::Queued, Ok(a)) => matches!(a.outcome, Outcome::WithdrawalQueued { .. }),
        (Expect::BondLocked, Ok(a)) => matches!(a.outcome, Outcome::BondLocked { .. }),
        (Expect::DisputeClosed, Ok(a)) => matches!(a.outcome, Outcome::DisputeClosed { .. }),
        (Expect::Replayed, Err(LedgerError::ReplayedNonce { .. }))
        | (Expect::Insufficient, Err(LedgerError::InsufficientBalance { .. }))
        | (Expect::UnknownAsset, Err(LedgerError::UnknownAsset(_)))
        | (Expect::Invalid, Err(LedgerError::Invalid(_)))
        | (Expect::DisputeExists, Err(LedgerError::DisputeExists { .. }))
        | (Expect::AlreadyDecided, Err(LedgerError::DisputeClosed { .. })) => true,
        _ => false,
    }
}

fn restaker(t: u8) -> SigningKey {
    sk(100 + t)
}

/// One restaker's thread: rounds of deposit, its replay, a withdrawal above the balance,
/// a deposit of an unknown asset, a valid withdrawal, a deposit with an attachment. Only
/// this thread touches this restaker, so every answer is known in advance whatever the
/// batches are. Returns the (actor, nonce) of every request that was applied.
fn restaker_thread(ledger: &SqliteLedger, t: u8, barrier: &Barrier) -> Vec<(Key, u64)> {
    let who = restaker(t);
    let mut nonce = 0u64;
    let mut next = |body: RequestBody| {
        nonce += 1;
        SignedRequest::sign(&NET, &who, nonce, body).expect("sign")
    };
    let mut balance = 0u128;
    let mut failures = Vec::new();
    let mut applied = Vec::new();
    barrier.wait();
    for round in 0..ROUNDS {
        let now = round;
        let deposit = next(eth_deposit(deposit_amount(t)));
        let too_much = next(RequestBody::QueueWithdrawal {
            asset: "eth".into(),
            amount: balance + deposit_amount(t) + 1,
        });
        let unknown = next(RequestBody::Deposit {
            asset: "nope".into(),
            amount: 1,
        });
        let withdraw = next(RequestBody::QueueWithdrawal {
            asset: "eth".into(),
            amount: WITHDRAW,
        });
        let with_attachment = next(eth_deposit(1));
        let steps: [(&SignedRequest, &[u8], Expect); 6] = [
            (&deposit, &[], Expect::Done),
            (&deposit, &[], Expect::Replayed),
            (&too_much, &[], Expect::Insufficient),
            (&unknown, &[], Expect::UnknownAsset),
            (&withdraw, &[], Expect::Queued),
            (&with_attachment, b"x", Expect::Invalid),
        ];
        for (req, attachment, expect) in steps {
            let got = ledger.apply_with(req, attachment, now);
            if !check(expect, &got) {
                failures.push((req.actor, req.nonce, expect, format!("{got:?}")));
            }
            if got.is_ok() {
                applied.push((req.actor, req.nonce));
            }
        }
        balance += deposit_amount(t) - WITHDRAW;
    }
    assert!(failures.is_empty(), "thread {t}: {failures:#?}");
    applied
}

/// The admin's thread: a dispute opened with its evidence, opened again, closed with a
/// report, closed again, and one opened with evidence that does not match its hash.
fn admin_thread(ledger: &SqliteLedger, barrier: &Barrier) -> Vec<(Key, u64)> {
    let bob = sk(60);
    let mut nonce = 100u64;
    let mut next = |body: RequestBody| {
        nonce += 1;
        SignedRequest::sign(&NET, &admin(), nonce, body).expect("sign")
    };
    let evidence = b"the challenge".to_vec();
    let open = |id: &str| RequestBody::OpenDispute {
        dispute: id.into(),
        challenger: Key::of(&bob),
        asset: "eth".into(),
        amount: 100,
        evidence: hex::encode(Sha256::digest(&evidence)),
    };
    let (a, b) = (hex::encode([0xa1; 32]), hex::encode([0xb2; 32]));
    let close = RequestBody::CloseDispute {
        dispute: a.clone(),
        ruling: Ruling::Void,
    };
    let steps: Vec<(SignedRequest, Vec<u8>, Expect)> = vec![
        (next(open(&a)), evidence.clone(), Expect::BondLocked),
        (next(open(&a)), evidence.clone(), Expect::DisputeExists),
        (
            next(close.clone()),
            br#"{"why":"test"}"#.to_vec(),
            Expect::DisputeClosed,
        ),
        (next(close), Vec::new(), Expect::AlreadyDecided),
        (next(open(&b)), b"other evidence".to_vec(), Expect::Invalid),
    ];
    barrier.wait();
    let mut applied = Vec::new();
    for (req, attachment, expect) in steps {
        let got = ledger.apply_with(&req, &attachment, 3);
        assert!(check(expect, &got), "admin {expect:?}: {got:?}");
        if got.is_ok() {
            applied.push((req.actor, req.nonce));
        }
    }
    applied
}

/// Deposits + queued withdrawals + locked bonds per asset must equal the asset's total.
fn assert_conserved(snap: &Snapshot) {
    for (asset, state) in &snap.assets {
        let balances: u128 = snap
            .balances
            .iter()
            .filter(|((_, a), _)| a == asset)
            .map(|(_, v)| v)
            .sum();
        let queued: u128 = snap
            .withdrawals
            .values()
            .filter(|w| &w.asset == asset)
            .map(|w| w.amount)
            .sum();
        let locked: u128 = snap
            .disputes
            .values()
            .filter(|d| &d.asset == asset)
            .map(|d| d.locked)
            .sum();
        assert_eq!(
            state.total,
            balances + queued + locked,
            "{asset}: total {} != {balances} deposited + {queued} queued + {locked} locked",
            state.total
        );
    }
}

/// (actor, nonce) of every stored event's request; fails on a duplicate.
fn applied_requests(ledger: &SqliteLedger) -> BTreeSet<(Key, u64)> {
    let events = ledger.events_from(0, 100_000).expect("events");
    verify_chain(&events, &ledger.verifier_key()).expect("chain");
    let mut seen = BTreeSet::new();
    for e in &events {
        let req: SignedRequest =
            serde_json::from_value(e.payload["request"].clone()).expect("request in event");
        assert!(
            seen.insert((req.actor, req.nonce)),
            "request {} #{} applied twice",
            req.actor,
            req.nonce
        );
    }
    seen
}

#[test]
fn thirty_two_threads_mixing_valid_and_invalid_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.sqlite");
    let ledger = Arc::new(SqliteLedger::open(&path, config(), NET, admin()).expect("open"));
    let setup = [
        SignedRequest::sign(
            &NET,
            &admin(),
            1,
            RequestBody::RegisterAsset {
                asset: "eth".into(),
                price_per_unit: 1,
            },
        )
        .expect("sign"),
        SignedRequest::sign(&NET, &sk(60), 1, eth_deposit(1_000)).expect("sign"),
    ];
    for req in &setup {
        ok(&*ledger, req, 0);
    }

    let barrier = Arc::new(Barrier::new(usize::from(THREADS) + 1));
    let mut handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (ledger, barrier) = (ledger.clone(), barrier.clone());
            std::thread::spawn(move || restaker_thread(&ledger, t, &barrier))
        })
        .collect();
    {
        let (ledger, barrier) = (ledger.clone(), barrier.clone());
        handles.push(std::thread::spawn(move || admin_thread(&ledger, &barrier)));
    }
    let mut expected: BTreeSet<(Key, u64)> = setup.iter().map(|r| (r.actor, r.nonce)).collect();
    for h in handles {
        for applied in h.join().expect("thread") {
            assert!(expected.insert(applied), "{applied:?} answered twice");
        }
    }

    // Batches really formed, so refused requests really sat between applied ones.
    let stats = ledger.group_commit_stats();
    let sent = u64::from(THREADS) * ROUNDS * 6 + 5 + 2;
    assert_eq!(stats.requests, sent, "{stats:?}");
    assert!(
        stats.largest > 1 && stats.batches < stats.requests,
        "no two requests shared a commit: {stats:?}"
    );

    // Exactly the valid requests, each once, in a chain that verifies.
    assert_eq!(applied_requests(&ledger), expected);
    let snap = ledger.snapshot().expect("snapshot");
    assert_eq!(snap.event_count, expected.len() as u64);
    assert_conserved(&snap);
    for t in 0..THREADS {
        let who = Key::of(&restaker(t));
        let per_round = deposit_amount(t) - WITHDRAW;
        assert_eq!(
            snap.balances.get(&(who, "eth".to_owned())),
            Some(&(per_round * u128::from(ROUNDS))),
            "restaker {t}"
        );
        let queued: Vec<_> = snap
            .withdrawals
            .values()
            .filter(|w| w.restaker == who)
            .map(|w| w.amount)
            .collect();
        assert_eq!(queued, vec![WITHDRAW; ROUNDS as usize], "restaker {t}");
        // The last applied request of every round is the withdrawal (5th of 6): the
        // refused deposit after it left no nonce behind.
        assert_eq!(snap.nonces[&who], (ROUNDS - 1) * 5 + 4, "restaker {t}");
    }
    let dispute = &snap.disputes[&hex::encode([0xa1; 32])];
    assert!(dispute.closed.is_some() && dispute.locked == 0);
    assert_eq!(
        ledger
            .dispute_evidence(&dispute.id)
            .expect("evidence")
            .as_deref(),
        Some(&b"the challenge"[..])
    );
    assert!(!snap.disputes.contains_key(&hex::encode([0xb2; 32])));
    assert_eq!(snap.balances[&(Key::of(&sk(60)), "eth".to_owned())], 1_000);

    // What the callers were told is what is on disk.
    drop(ledger);
    let reopened = SqliteLedger::open(&path, config(), NET, admin()).expect("reopen");
    assert_eq!(reopened.snapshot().expect("snapshot"), snap);
    assert_eq!(applied_requests(&reopened), expected);
}

#[test]
fn one_offence_raced_inside_shared_batches_is_slashed_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.sqlite");
    let ledger = Arc::new(SqliteLedger::open(&path, config(), NET, admin()).expect("open"));
    let mut s = Signer::default();
    let op = sk(20);
    for req in staked_operator(&mut s, &op, 1_000_000) {
        ok(&*ledger, &req, 0);
    }
    let before = ledger.snapshot().expect("snapshot");
    let offence = hex::encode([0x0f; 32]);
    // Distinct admin nonces: only the offence rule can stop the later ones (or the nonce
    // rule, for a lower nonce queued behind a higher one).
    let slashes: Vec<_> = (0..20)
        .map(|_| {
            s.req(
                &admin(),
                RequestBody::Slash {
                    operator: Key::of(&op),
                    fraction_ppm: 100_000,
                    bounty_ppm: 0,
                    challenger: Key::of(&sk(40)),
                    jail: false,
                    offence: Some(offence.clone()),
                },
            )
        })
        .collect();
    let barrier = Arc::new(Barrier::new(slashes.len()));
    let handles: Vec<_> = slashes
        .into_iter()
        .map(|req| {
            let (ledger, barrier) = (ledger.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                ledger.apply(&req, 5)
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
            Ok(a) => assert!(matches!(a.outcome, Outcome::Slashed(_))),
            Err(e) => assert!(
                matches!(
                    e,
                    LedgerError::AlreadySlashed { .. } | LedgerError::ReplayedNonce { .. }
                ),
                "{e}"
            ),
        }
    }
    let snap = ledger.snapshot().expect("snapshot");
    assert_eq!(snap.event_count, before.event_count + 1);
    assert_eq!(snap.offences.len(), 1);
    assert_eq!(snap.assets["eth"].total, 900_000);
    assert_conserved(&snap);
    applied_requests(&ledger);
    drop(ledger);
    let reopened = SqliteLedger::open(&path, config(), NET, admin()).expect("reopen");
    assert_eq!(reopened.snapshot().expect("snapshot"), snap);
}
