//! Random request sequences against SqliteLedger and MemoryLedger in lockstep.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use vouch_verifier::{
    verify_chain, CollateralLedger, Key, MemoryLedger, Outcome, RequestBody, Snapshot, SqliteLedger,
};

const ASSETS: [&str; 2] = ["eth", "steth"];
const RESTAKERS: [u8; 4] = [10, 11, 12, 13];
const OPERATORS: [u8; 2] = [20, 22];
const D: u128 = 1_000_000_000_000;

#[derive(Debug, Clone)]
enum Op {
    Deposit(usize, usize, u128),
    Delegate(usize, usize),
    Allocate(usize, u32),
    Deallocate(usize, u32),
    Queue(usize, usize, u128),
    Complete(usize, u64),
    Slash(usize, u32, u32, usize, bool, Option<u8>),
    Forfeit(usize, usize, u128, u8),
    Advance(u64),
}

fn amount() -> impl Strategy<Value = u128> {
    prop_oneof![8 => 1u128..10_000, 1 => Just(u128::MAX / 3), 1 => 0u128..2]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 0..2usize, amount()).prop_map(|(r, a, x)| Op::Deposit(r, a, x)),
        4 => (0..4usize, 0..2usize).prop_map(|(r, o)| Op::Delegate(r, o)),
        3 => (0..2usize, prop_oneof![Just(1_000_000u32), 0..=1_000_000u32]).prop_map(|(o, m)| Op::Allocate(o, m)),
        1 => (0..2usize, 0..=1_000_000u32).prop_map(|(o, m)| Op::Deallocate(o, m)),
        3 => (0..4usize, 0..2usize, 1u128..6_000).prop_map(|(r, a, x)| Op::Queue(r, a, x)),
        2 => (0..4usize, 1..12u64).prop_map(|(r, id)| Op::Complete(r, id)),
        3 => (0..2usize, prop_oneof![1..=1_000_000u32, Just(1_000_000u32)], 0..1_000_000u32, 0..4usize, any::<bool>(), prop_oneof![2 => Just(None), 3 => (0..4u8).prop_map(Some)])
            .prop_map(|(o, f, b, c, j, x)| Op::Slash(o, f, b, c, j, x)),
        2 => (0..4usize, 0..2usize, prop_oneof![1u128..3_000, 0u128..2], 0..4u8).prop_map(|(c, a, x, d)| Op::Forfeit(c, a, x, d)),
        2 => (0..2 * DELAY_MS).prop_map(Op::Advance),
    ]
}

/// floor(s·p/D), exact for any u128 s.
fn share(s: u128, p: u128) -> u128 {
    (s / D) * p + (s % D) * p / D
}

fn totals(snap: &Snapshot) -> BTreeMap<String, u128> {
    let mut t: BTreeMap<String, u128> = BTreeMap::new();
    for ((_, a), v) in &snap.balances {
        *t.entry(a.clone()).or_default() += v;
    }
    for w in snap.withdrawals.values() {
        *t.entry(w.asset.clone()).or_default() += w.amount;
    }
    t
}

/// Stake of `who` in `asset`: deposit plus queued withdrawals.
fn stake(snap: &Snapshot, who: &Key, asset: &str) -> u128 {
    snap.balances
        .get(&(*who, asset.to_owned()))
        .copied()
        .unwrap_or(0)
        + snap
            .withdrawals
            .values()
            .filter(|w| w.restaker == *who && w.asset == asset)
            .map(|w| w.amount)
            .sum::<u128>()
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.sqlite");
    let sql = SqliteLedger::open(&path, config(), NET, admin()).expect("open");
    let mem = MemoryLedger::new(config(), NET, admin());
    let mut s = Signer::default();
    let mut now = 1_000u64;
    // Independent book-keeping: deposits − payouts − burns, per asset.
    let mut expected: BTreeMap<String, u128> = BTreeMap::new();

    let mut setup = vec![];
    for a in ASSETS {
        setup.push(s.req(
            &admin(),
            RequestBody::RegisterAsset {
                asset: a.into(),
                price_per_unit: 1,
            },
        ));
    }
    for o in OPERATORS {
        setup.push(s.register_operator(&sk(o), &sk(o + 1)));
    }
    for r in &setup {
        ok(&sql, r, now);
        ok(&mem, r, now);
    }

    for op in ops {
        let req = match op {
            Op::Advance(dt) => {
                now += dt;
                continue;
            }
            Op::Deposit(r, a, x) => s.req(
                &sk(RESTAKERS[r]),
                RequestBody::Deposit {
                    asset: ASSETS[a].into(),
                    amount: x,
                },
            ),
            Op::Delegate(r, o) => s.req(
                &sk(RESTAKERS[r]),
                RequestBody::Delegate {
                    operator: Key::of(&sk(OPERATORS[o])),
                },
            ),
            Op::Allocate(o, m) => s.req(
                &sk(OPERATORS[o]),
                RequestBody::Allocate { magnitude_ppm: m },
            ),
            Op::Deallocate(o, m) => s.req(
                &sk(OPERATORS[o]),
                RequestBody::Deallocate { magnitude_ppm: m },
            ),
            Op::Queue(r, a, x) => s.req(
                &sk(RESTAKERS[r]),
                RequestBody::QueueWithdrawal {
                    asset: ASSETS[a].into(),
                    amount: x,
                },
            ),
            Op::Complete(r, id) => s.req(
                &sk(RESTAKERS[r]),
                RequestBody::CompleteWithdrawal { withdrawal_id: id },
            ),
            Op::Slash(o, f, b, c, jail, offence) => s.req(
                &admin(),
                RequestBody::Slash {
                    operator: Key::of(&sk(OPERATORS[o])),
                    fraction_ppm: f,
                    bounty_ppm: b,
                    challenger: Key::of(&sk(RESTAKERS[c])),
                    jail,
                    // A few ids, so repeats (refused) happen; 3 is malformed (refused too).
                    offence: offence.map(|x| match x {
                        3 => "not-an-offence-id".to_owned(),
                        x => hex::encode([x; 32]),
                    }),
                },
            ),
            Op::Forfeit(c, a, x, d) => s.req(
                &admin(),
                RequestBody::ForfeitBond {
                    challenger: Key::of(&sk(RESTAKERS[c])),
                    asset: ASSETS[a].into(),
                    amount: x,
                    // A few dispute ids, so repeats (refused) happen; 3 is malformed.
                    dispute: match d {
                        3 => "not-a-dispute-id".to_owned(),
                        d => hex::encode([0x80 | d; 32]),
                    },
                },
            ),
        };
        let before = sql.snapshot().expect("snapshot");
        let a = sql.apply(&req, now);
        let b = mem.apply(&req, now);
        match (&a, &b) {
            (Ok(x), Ok(y)) => prop_assert_eq!(x, y),
            (Err(x), Err(y)) => prop_assert_eq!(x.to_string(), y.to_string()),
            _ => prop_assert!(
                false,
                "backends disagree on {:?}: {:?} vs {:?}",
                req.body,
                a,
                b
            ),
        }
        let after = sql.snapshot().expect("snapshot");
        prop_assert_eq!(&after, &mem.snapshot().expect("snapshot"));
        let Ok(applied) = a else {
            prop_assert_eq!(&after, &before, "refused request changed state");
            continue;
        };
        match &applied.outcome {
            Outcome::Done if matches!(req.body, RequestBody::Deposit { .. }) => {
                if let RequestBody::Deposit { asset, amount } = &req.body {
                    *expected.entry(asset.clone()).or_default() += amount;
                }
            }
            Outcome::WithdrawalCompleted { asset, amount, .. } => {
                *expected.entry(asset.clone()).or_default() -= amount;
            }
            Outcome::Slashed(o) => {
                let p = u128::from(o.magnitude_ppm)
                    * u128::from(match req.body {
                        RequestBody::Slash { fraction_ppm, .. } => fraction_ppm,
                        _ => 0,
                    });
                let challenger = match &req.body {
                    RequestBody::Slash { challenger, .. } => *challenger,
                    _ => unreachable!(),
                };
                for (asset, x) in &o.assets {
                    let c = x.conservation;
                    prop_assert_eq!(c.before, c.after + c.burned + c.rewarded);
                    prop_assert_eq!(x.cuts.values().sum::<u128>(), c.burned + c.rewarded);
                    *expected.entry(asset.clone()).or_default() -= c.burned;
                    for (who, cut) in &x.cuts {
                        // Pro rata within one base unit.
                        let s0 = stake(&before, who, asset);
                        let fair = share(s0, p);
                        prop_assert!(
                            *cut == fair || *cut == fair + 1,
                            "cut {} fair {}",
                            cut,
                            fair
                        );
                        let reward = if *who == challenger { c.rewarded } else { 0 };
                        prop_assert_eq!(stake(&after, who, asset) + cut, s0 + reward);
                        // Nothing escapes through a queued withdrawal.
                        for w in before
                            .withdrawals
                            .values()
                            .filter(|w| w.restaker == *who && w.asset == *asset)
                        {
                            let now_amount = after.withdrawals[&w.id].amount;
                            prop_assert!(now_amount <= w.amount - share(w.amount, p));
                        }
                    }
                }
            }
            Outcome::BondForfeited {
                challenger,
                asset,
                amount,
                conservation: c,
            } => {
                prop_assert_eq!(c.before, c.after + c.burned + c.rewarded);
                prop_assert_eq!((c.burned, c.rewarded), (*amount, 0));
                let key = (*challenger, asset.clone());
                prop_assert_eq!(before.balances.get(&key).copied().unwrap_or(0), c.before);
                prop_assert_eq!(after.balances.get(&key).copied().unwrap_or(0), c.after);
                prop_assert_eq!(
                    applied.event.conservation.get(asset),
                    Some(c),
                    "the event records the equation"
                );
                *expected.entry(asset.clone()).or_default() -= amount;
            }
            _ => {}
        }
        // Overall conservation: stored totals, summed parts and our own books agree.
        let t = totals(&after);
        for (name, asset) in &after.assets {
            let parts = t.get(name).copied().unwrap_or(0);
            prop_assert_eq!(asset.total, parts);
            prop_assert_eq!(parts, expected.get(name).copied().unwrap_or(0));
        }
        for o in OPERATORS {
            let k = Key::of(&sk(o));
            prop_assert_eq!(
                sql.slashable_stake(&k, now).expect("stake"),
                mem.slashable_stake(&k, now).expect("stake")
            );
            prop_assert_eq!(
                sql.is_jailed(&k, now).expect("jail"),
                mem.is_jailed(&k, now).expect("jail")
            );
        }
    }

    let events = sql.events_from(0, 10_000).expect("events");
    prop_assert_eq!(&events, &mem.events_from(0, 10_000).expect("events"));
    prop_assert_eq!(
        verify_chain(&events, &sql.verifier_key()).expect("chain"),
        sql.snapshot().expect("s").last_hash
    );
    let state = sql.snapshot().expect("snapshot");
    drop(sql);
    let reopened = SqliteLedger::open(&path, config(), NET, admin()).expect("reopen");
    prop_assert_eq!(reopened.snapshot().expect("snapshot"), state);
    prop_assert_eq!(reopened.events_from(0, 10_000).expect("events"), events);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_and_memory_agree_and_conserve_stake(ops in proptest::collection::vec(op(), 1..48)) {
        run(ops)?;
    }
}

#[test]
fn withdraw_then_slash_cuts_the_queued_amount() {
    let dir = tempfile::tempdir().expect("tempdir");
    let l = SqliteLedger::open(dir.path().join("l.sqlite"), config(), NET, admin()).expect("open");
    let mut s = Signer::default();
    let (alice, bob, op) = (sk(10), sk(11), sk(20));
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
    ok(&l, &s.register_operator(&op, &sk(21)), 0);
    ok(
        &l,
        &s.req(
            &op,
            RequestBody::Allocate {
                magnitude_ppm: 500_000,
            },
        ),
        0,
    );
    for (who, x) in [(&alice, 1_000u128), (&bob, 3_000)] {
        ok(
            &l,
            &s.req(
                who,
                RequestBody::Deposit {
                    asset: "eth".into(),
                    amount: x,
                },
            ),
            0,
        );
        ok(
            &l,
            &s.req(
                who,
                RequestBody::Delegate {
                    operator: Key::of(&op),
                },
            ),
            0,
        );
    }
    let op_key = Key::of(&op);
    assert_eq!(l.slashable_stake(&op_key, 0).expect("stake")["eth"], 2_000);
    // Alice tries to leave with everything; the operator tries to deallocate.
    ok(
        &l,
        &s.req(
            &alice,
            RequestBody::QueueWithdrawal {
                asset: "eth".into(),
                amount: 1_000,
            },
        ),
        10,
    );
    ok(
        &l,
        &s.req(&op, RequestBody::Deallocate { magnitude_ppm: 0 }),
        10,
    );
    assert_eq!(
        l.slashable_stake(&op_key, 10 + DELAY_MS - 1)
            .expect("stake")["eth"],
        2_000
    );
    assert_eq!(
        l.slashable_stake(&op_key, 10 + DELAY_MS).expect("stake")["eth"],
        0
    );
    // A slash inside the delay still takes the old magnitude, from the queued amount too.
    let slash = s.req(
        &admin(),
        RequestBody::Slash {
            operator: op_key,
            fraction_ppm: 1_000_000,
            bounty_ppm: 100_000,
            challenger: Key::of(&sk(40)),
            jail: true,
            offence: None,
        },
    );
    let applied = l.apply(&slash, 500).expect("slash");
    let Outcome::Slashed(o) = applied.outcome else {
        panic!("not a slash")
    };
    let c = o.assets["eth"].conservation;
    assert_eq!(
        (c.before, c.after, c.burned, c.rewarded),
        (4_000, 2_000, 1_800, 200)
    );
    assert_eq!(l.withdrawals(&Key::of(&alice)).expect("w")[0].amount, 500);
    assert_eq!(l.balance(&Key::of(&bob), "eth").expect("b"), 1_500);
    assert_eq!(l.balance(&Key::of(&sk(40)), "eth").expect("b"), 200);
    assert!(l.is_jailed(&op_key, 500).expect("jailed"));
    let early = s.req(&alice, RequestBody::CompleteWithdrawal { withdrawal_id: 1 });
    must_fail(&l, &early, 10 + DELAY_MS - 1);
    let done = l.apply(&early, 10 + DELAY_MS).expect("complete");
    assert!(matches!(
        done.outcome,
        Outcome::WithdrawalCompleted { amount: 500, .. }
    ));
    verify_chain(&l.events_from(0, 100).expect("events"), &l.verifier_key()).expect("chain");
}

#[test]
fn tampered_event_breaks_the_chain() {
    let l = MemoryLedger::new(config(), NET, admin());
    let mut s = Signer::default();
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
            &sk(10),
            RequestBody::Deposit {
                asset: "eth".into(),
                amount: 5,
            },
        ),
        0,
    );
    let mut events = l.events_from(0, 10).expect("events");
    verify_chain(&events, &l.verifier_key()).expect("chain");
    events[1].at_ms += 1;
    assert!(verify_chain(&events, &l.verifier_key()).is_err());
    assert!(
        verify_chain(&events[..1], &Key::of(&sk(2))).is_err(),
        "wrong verifier key accepted"
    );
}
