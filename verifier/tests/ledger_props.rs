//! Random request sequences against SqliteLedger and MemoryLedger in lockstep.

mod common;

use std::collections::BTreeMap;

use common::*;
use proptest::prelude::*;
use sha2::{Digest as _, Sha256};
use vouch_verifier::{
    verify_chain, CollateralLedger, DisputeVerdict, Key, MemoryLedger, Outcome, RequestBody,
    Ruling, SlashOutcome, Snapshot, SqliteLedger,
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
    /// Open dispute `d` (7: malformed id) by restaker `c` with a bond; `bool`: the evidence
    /// attached has the digest the request names.
    Open(usize, usize, u128, u8, bool),
    /// Close dispute `d` with ruling `r` (0 slashed, 1 already slashed, 2 dismissed, 3 void)
    /// against operator `o` for offence `x`.
    Close(u8, u8, usize, u32, u32, u8),
    Advance(u64),
}

fn amount() -> impl Strategy<Value = u128> {
    prop_oneof![8 => 1u128..10_000, 1 => Just(u128::MAX / 3), 1 => 0u128..2]
}

/// A few dispute ids, so repeats (refused) happen; 7 is malformed.
fn dispute() -> impl Strategy<Value = u8> {
    prop_oneof![12 => 0..4u8, 1 => Just(7u8)]
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
        6 => (0..4usize, 0..2usize, prop_oneof![8 => 1u128..1_000, 1 => 0u128..2], dispute(), prop_oneof![6 => Just(true), 1 => Just(false)])
            .prop_map(|(c, a, x, d, e)| Op::Open(c, a, x, d, e)),
        6 => (dispute(), 0..4u8, 0..2usize, prop_oneof![1..=1_000_000u32, Just(1_000_000u32)], 0..1_000_000u32, 0..3u8)
            .prop_map(|(d, r, o, f, b, x)| Op::Close(d, r, o, f, b, x)),
        2 => (0..2 * DELAY_MS).prop_map(Op::Advance),
    ]
}

/// floor(s·p/D), exact for any u128 s.
fn share(s: u128, p: u128) -> u128 {
    (s / D) * p + (s % D) * p / D
}

/// Per asset: deposits, queued withdrawals and bonds locked in open disputes — everything
/// the ledger still holds.
fn totals(snap: &Snapshot) -> BTreeMap<String, u128> {
    let mut t: BTreeMap<String, u128> = BTreeMap::new();
    for ((_, a), v) in &snap.balances {
        *t.entry(a.clone()).or_default() += v;
    }
    for w in snap.withdrawals.values() {
        *t.entry(w.asset.clone()).or_default() += w.amount;
    }
    for d in snap.disputes.values().filter(|d| d.closed.is_none()) {
        *t.entry(d.asset.clone()).or_default() += d.locked;
    }
    t
}

/// Bonds of `who` locked in open disputes, in `asset`.
fn locked(snap: &Snapshot, who: &Key, asset: &str) -> u128 {
    snap.disputes
        .values()
        .filter(|d| d.closed.is_none() && d.challenger == *who && d.asset == asset)
        .map(|d| d.locked)
        .sum()
}

/// Stake of `who` in `asset`: deposit, queued withdrawals and locked bonds.
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
        + locked(snap, who, asset)
}

fn dispute_id(d: u8) -> String {
    match d {
        7 => "not-a-dispute-id".to_owned(),
        d => hex::encode([0x40 | d; 32]),
    }
}

/// The checks of one slash: the equation, pro-rata cuts within one unit, and that nothing
/// escapes through a queued withdrawal or a locked bond (`closed`: the dispute whose bond
/// this same request then released, which is not a lock any more).
fn check_slash(
    o: &SlashOutcome,
    fraction_ppm: u32,
    challenger: Key,
    before: &Snapshot,
    after: &Snapshot,
    closed: Option<&str>,
    expected: &mut BTreeMap<String, u128>,
) -> Result<(), TestCaseError> {
    let p = u128::from(o.magnitude_ppm) * u128::from(fraction_ppm);
    for (asset, x) in &o.assets {
        let c = x.conservation;
        prop_assert_eq!(c.before, c.after + c.burned + c.rewarded);
        prop_assert_eq!(x.cuts.values().sum::<u128>(), c.burned + c.rewarded);
        *expected.entry(asset.clone()).or_default() -= c.burned;
        for (who, cut) in &x.cuts {
            // Pro rata within one base unit.
            let s0 = stake(before, who, asset);
            let fair = share(s0, p);
            prop_assert!(
                *cut == fair || *cut == fair + 1,
                "cut {} fair {}",
                cut,
                fair
            );
            let reward = if *who == challenger { c.rewarded } else { 0 };
            // A released bond moves from the lock to the deposit: the same stake.
            prop_assert_eq!(stake(after, who, asset) + cut, s0 + reward);
            // Nothing escapes through a queued withdrawal...
            for w in before
                .withdrawals
                .values()
                .filter(|w| w.restaker == *who && w.asset == *asset)
            {
                let now_amount = after.withdrawals[&w.id].amount;
                prop_assert!(now_amount <= w.amount - share(w.amount, p));
            }
            // ...nor through a bond locked in a dispute.
            for d in before.disputes.values().filter(|d| {
                d.closed.is_none()
                    && d.challenger == *who
                    && d.asset == *asset
                    && Some(d.id.as_str()) != closed
            }) {
                let now_locked = after.disputes[&d.id].locked;
                prop_assert!(now_locked <= d.locked - share(d.locked, p));
            }
        }
    }
    Ok(())
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
    // Everyone starts with something to bond (or to lose).
    for r in RESTAKERS {
        for a in ASSETS {
            setup.push(s.req(
                &sk(r),
                RequestBody::Deposit {
                    asset: a.into(),
                    amount: 5_000,
                },
            ));
            *expected.entry(a.to_owned()).or_default() += 5_000;
        }
    }
    for r in &setup {
        ok(&sql, r, now);
        ok(&mem, r, now);
    }

    for op in ops {
        let mut attachment = vec![];
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
            Op::Open(c, a, x, d, good) => {
                let evidence = format!("evidence of dispute {d}").into_bytes();
                attachment = evidence.clone();
                let digest = if good {
                    Sha256::digest(&evidence)
                } else {
                    Sha256::digest(b"something else")
                };
                s.req(
                    &admin(),
                    RequestBody::OpenDispute {
                        dispute: dispute_id(d),
                        challenger: Key::of(&sk(RESTAKERS[c])),
                        asset: ASSETS[a].into(),
                        amount: x,
                        evidence: hex::encode(digest),
                    },
                )
            }
            Op::Close(d, r, o, f, b, x) => {
                let offence = hex::encode([x; 32]);
                attachment = format!("report {d}").into_bytes();
                let ruling = match r {
                    0 => Ruling::Slashed {
                        operator: Key::of(&sk(OPERATORS[o])),
                        fraction_ppm: f,
                        bounty_ppm: b,
                        jail: f % 2 == 0,
                        offence,
                    },
                    1 => Ruling::AlreadySlashed { offence },
                    2 => Ruling::Dismissed,
                    _ => Ruling::Void,
                };
                s.req(
                    &admin(),
                    RequestBody::CloseDispute {
                        dispute: dispute_id(d),
                        ruling,
                    },
                )
            }
        };
        let before = sql.snapshot().expect("snapshot");
        let a = sql.apply_with(&req, &attachment, now);
        let b = mem.apply_with(&req, &attachment, now);
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
                let (fraction, challenger) = match &req.body {
                    RequestBody::Slash {
                        fraction_ppm,
                        challenger,
                        ..
                    } => (*fraction_ppm, *challenger),
                    _ => unreachable!(),
                };
                check_slash(
                    o,
                    fraction,
                    challenger,
                    &before,
                    &after,
                    None,
                    &mut expected,
                )?;
            }
            Outcome::BondLocked {
                dispute,
                challenger,
                asset,
                amount,
                conservation: c,
            } => {
                // Still held: the holdings do not change, the deposit shrinks, the lock grows.
                prop_assert_eq!((c.before, c.burned, c.rewarded), (c.after, 0, 0));
                let key = (*challenger, asset.clone());
                let free = |s: &Snapshot| s.balances.get(&key).copied().unwrap_or(0);
                prop_assert_eq!(free(&before), free(&after) + amount);
                prop_assert_eq!(
                    locked(&after, challenger, asset),
                    locked(&before, challenger, asset) + amount
                );
                prop_assert_eq!(c.before, free(&before) + locked(&before, challenger, asset));
                prop_assert_eq!(after.disputes[dispute].closed.as_ref(), None);
                prop_assert_eq!(applied.event.conservation.get(asset), Some(c));
            }
            Outcome::DisputeClosed {
                dispute,
                verdict,
                challenger,
                asset,
                burned,
                released,
                conservation: c,
                slash,
            } => {
                prop_assert_eq!(c.before, c.after + c.burned + c.rewarded);
                prop_assert_eq!(c.burned, *burned);
                let was = &before.disputes[dispute];
                prop_assert!(was.closed.is_none(), "a decided dispute was decided again");
                let now = &after.disputes[dispute];
                prop_assert_eq!(now.locked, 0);
                prop_assert_eq!(now.closed.as_ref().map(|c| c.verdict), Some(*verdict));
                prop_assert_eq!(*challenger, was.challenger);
                // The whole lock (after this request's own slash) is burned or released.
                match verdict {
                    DisputeVerdict::Dismissed => prop_assert_eq!(*released, 0),
                    _ => prop_assert_eq!(*burned, 0),
                }
                prop_assert!(burned + released <= was.locked);
                if slash.is_none() {
                    prop_assert_eq!(burned + released, was.locked);
                    prop_assert_eq!(applied.event.conservation.get(asset), Some(c));
                }
                *expected.entry(asset.clone()).or_default() -= burned;
                if let (Some(o), RequestBody::CloseDispute { ruling, .. }) = (slash, &req.body) {
                    let Ruling::Slashed { fraction_ppm, .. } = ruling else {
                        unreachable!()
                    };
                    check_slash(
                        o,
                        *fraction_ppm,
                        *challenger,
                        &before,
                        &after,
                        Some(dispute),
                        &mut expected,
                    )?;
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
        for r in RESTAKERS {
            for a in ASSETS {
                let k = Key::of(&sk(r));
                prop_assert_eq!(sql.locked(&k, a).expect("locked"), locked(&after, &k, a));
                prop_assert_eq!(mem.locked(&k, a).expect("locked"), locked(&after, &k, a));
            }
        }
        prop_assert_eq!(
            sql.open_disputes().expect("open"),
            mem.open_disputes().expect("open")
        );
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
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

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

/// A bond locked in a dispute: neither withdrawable nor movable, slashable like the deposit
/// it came from, decided once — the same on both ledgers.
#[test]
fn locked_bond_is_held_slashable_and_decided_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sql =
        SqliteLedger::open(dir.path().join("l.sqlite"), config(), NET, admin()).expect("open");
    let mem = MemoryLedger::new(config(), NET, admin());
    let ledgers: [&dyn CollateralLedger; 2] = [&sql, &mem];
    let mut s = Signer::default();
    let (op, other_op, carol) = (sk(20), sk(22), sk(12));
    let carol_key = Key::of(&carol);
    let mut setup = staked_operator(&mut s, &op, 10_000);
    setup.push(s.register_operator(&other_op, &sk(23)));
    // Carol delegates her deposit to the operator and then challenges with part of it.
    setup.push(s.req(
        &carol,
        RequestBody::Deposit {
            asset: "eth".into(),
            amount: 1_000,
        },
    ));
    setup.push(s.req(
        &carol,
        RequestBody::Delegate {
            operator: Key::of(&op),
        },
    ));
    for r in &setup {
        for l in ledgers {
            ok(l, r, 0);
        }
    }
    let id = hex::encode([0x77; 32]);
    let evidence = b"the challenge".to_vec();
    let open = |s: &mut Signer, digest: &[u8]| {
        s.req(
            &admin(),
            RequestBody::OpenDispute {
                dispute: id.clone(),
                challenger: carol_key,
                asset: "eth".into(),
                amount: 400,
                evidence: hex::encode(digest),
            },
        )
    };
    let good = Sha256::digest(&evidence);
    let stake_before = sql.slashable_stake(&Key::of(&op), 0).expect("stake")["eth"];
    // Evidence with another digest is refused; the right one locks the bond.
    let wrong = open(&mut s, &Sha256::digest(b"other"));
    for l in ledgers {
        assert!(l.apply_with(&wrong, &evidence, 1).is_err());
    }
    let req = open(&mut s, &good);
    for l in ledgers {
        let applied = l.apply_with(&req, &evidence, 1).expect("open");
        assert_eq!(applied.event.kind, "open_dispute");
        assert!(matches!(
            applied.outcome,
            Outcome::BondLocked { amount: 400, .. }
        ));
        assert_eq!(l.balance(&carol_key, "eth").expect("balance"), 600);
        assert_eq!(l.locked(&carol_key, "eth").expect("locked"), 400);
        assert_eq!(
            l.dispute_evidence(&id).expect("evidence"),
            Some(evidence.clone())
        );
        // Locking is no escape: the operator's slashable stake is unchanged.
        assert_eq!(
            l.slashable_stake(&Key::of(&op), 1).expect("stake")["eth"],
            stake_before
        );
    }
    // Opened once; the locked part can be neither withdrawn nor moved to another operator.
    let again = open(&mut s, &good);
    let withdraw_all = s.req(
        &carol,
        RequestBody::QueueWithdrawal {
            asset: "eth".into(),
            amount: 1_000,
        },
    );
    let redelegate = s.req(
        &carol,
        RequestBody::Delegate {
            operator: Key::of(&other_op),
        },
    );
    let forfeit = s.req(
        &admin(),
        RequestBody::ForfeitBond {
            challenger: carol_key,
            asset: "eth".into(),
            amount: 400,
            dispute: id.clone(),
        },
    );
    for l in ledgers {
        let err = l
            .apply_with(&again, &evidence, 2)
            .expect_err("opened twice");
        assert!(
            matches!(
                err,
                vouch_verifier::LedgerError::DisputeExists { open: true, .. }
            ),
            "{err}"
        );
        assert!(matches!(
            must_fail(l, &withdraw_all, 2),
            vouch_verifier::LedgerError::InsufficientBalance { available: 600, .. }
        ));
        must_fail(l, &redelegate, 2);
        must_fail(l, &forfeit, 2);
    }
    // A slash of Carol's operator cuts her lock like her deposit: half of each.
    let slash = s.req(
        &admin(),
        RequestBody::Slash {
            operator: Key::of(&op),
            fraction_ppm: 500_000,
            bounty_ppm: 0,
            challenger: Key::of(&sk(40)),
            jail: false,
            offence: None,
        },
    );
    for l in ledgers {
        ok(l, &slash, 3);
        assert_eq!(l.balance(&carol_key, "eth").expect("balance"), 300);
        assert_eq!(l.locked(&carol_key, "eth").expect("locked"), 200);
    }
    // Dismissed: what is still locked is burned, once.
    let close = |s: &mut Signer, ruling| {
        s.req(
            &admin(),
            RequestBody::CloseDispute {
                dispute: id.clone(),
                ruling,
            },
        )
    };
    let dismiss = close(&mut s, Ruling::Dismissed);
    let void = close(&mut s, Ruling::Void);
    for l in ledgers {
        let total = l.snapshot().expect("snapshot").assets["eth"].total;
        let applied = l.apply_with(&dismiss, b"{}", 4).expect("close");
        let Outcome::DisputeClosed {
            burned,
            released,
            conservation,
            ..
        } = applied.outcome
        else {
            panic!("not a close")
        };
        assert_eq!((burned, released), (200, 0));
        assert_eq!(
            (conservation.before, conservation.after, conservation.burned),
            (500, 300, 200)
        );
        let snap = l.snapshot().expect("snapshot");
        assert_eq!(snap.assets["eth"].total, total - 200);
        let d = &snap.disputes[&id];
        assert_eq!(d.locked, 0);
        assert_eq!(
            d.closed.as_ref().map(|c| c.verdict),
            Some(DisputeVerdict::Dismissed)
        );
        assert_eq!(
            d.closed.as_ref().and_then(|c| c.report.clone()).as_deref(),
            Some("{}")
        );
        assert!(matches!(
            must_fail(l, &void, 5),
            vouch_verifier::LedgerError::DisputeClosed { .. }
        ));
        assert_eq!(l.locked(&carol_key, "eth").expect("locked"), 0);
        assert!(l.open_disputes().expect("open").is_empty());
        verify_chain(&l.events_from(0, 100).expect("events"), &l.verifier_key()).expect("chain");
    }
    assert_eq!(sql.snapshot().expect("s"), mem.snapshot().expect("s"));
    assert_eq!(
        sql.events_from(0, 100).expect("events"),
        mem.events_from(0, 100).expect("events")
    );
}
