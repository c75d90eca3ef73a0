//! Admission by stake (README "Admission by stake"; DESIGN "Disputes, in tiers").
//!
//! Every job declares a `value_at_risk` (its spec's field, in the service's quote unit):
//! what a client stands to lose if the result is wrong. A node on a network with a
//! verifier takes a job only while the value at risk of its **open** jobs — queued,
//! running, or signed but still inside the challenge window, when a dispute can still
//! slash the operator — stays at or below
//!
//! ```text
//! cap = slashable stake value × wrong-result slash fraction / (1 + γ)
//! ```
//!
//! (what a proven wrong result actually takes from the operator, with slack γ),
//!
//! the per-operator condition of Durvasula and Roughgarden ("Robust Restaking Networks",
//! 2024) with slack γ. Stake value, γ and the challenge window come from the verifier's
//! registry (`GET /v1/registry`), which the node reads at once when a verdict is
//! gossiped, so a slash lowers the cap before the next job is admitted. A jailed or
//! unregistered operator has a cap of zero. A job with `value_at_risk` 0 adds no exposure
//! and is always admitted. Without a verifier (no `--verifier-url`) there is no stake to
//! measure and nothing is enforced; `GET /v1/status` says so.

use std::collections::HashMap;
use std::sync::Mutex;

use vouch_proto::JobId;

/// How long a signed job keeps counting while the registry has not said how long the
/// challenge window is (a day; the real window applies as soon as it is known).
pub const RESTORED_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

/// Parts per million.
pub const PPM: u128 = 1_000_000;

/// What the verifier's registry says about this operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StakeView {
    /// Slashable stake priced in quote units (0 when not registered).
    pub stake_value: u128,
    /// Registered, not jailed, stake at or above the minimum.
    pub active: bool,
    /// The service's slack γ, in parts per million.
    pub gamma_ppm: u32,
    /// How long a signed receipt stays disputable.
    pub challenge_window_ms: u64,
    /// Share of the stake a proven wrong result slashes, ppm.
    pub slash_ppm: u32,
}

impl StakeView {
    /// What a wrong result would slash: `stake_value × slash_ppm / 10⁶`, rounded down.
    pub fn slashable_per_offence(&self) -> u128 {
        let f = u128::from(self.slash_ppm.min(PPM as u32));
        (self.stake_value / PPM) * f + (self.stake_value % PPM) * f / PPM
    }

    /// `slashable_per_offence / (1 + γ)`, rounded down; 0 when not active.
    pub fn cap(&self) -> u128 {
        if !self.active {
            return 0;
        }
        cap(self.slashable_per_offence(), self.gamma_ppm)
    }
}

/// `value / (1 + γ)` with γ in ppm, rounded down, without overflow.
pub fn cap(value: u128, gamma_ppm: u32) -> u128 {
    let d = PPM + u128::from(gamma_ppm);
    (value / d) * PPM + (value % d) * PPM / d
}

/// Why a job was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The node should enforce the cap but has not read its stake yet.
    #[error("this node has not read its stake from the verifier yet, so it cannot take a job with value_at_risk {value}; retry shortly")]
    StakeUnknown {
        /// The job's value at risk.
        value: u128,
    },
    /// The job would raise the open value at risk above the cap.
    #[error("value_at_risk {value} would raise this operator's open value at risk from {open} to {after}, above its cap of {cap} (slashable stake value {stake_value} × slash fraction {slash_ppm} ppm / (1 + γ), γ = {gamma_ppm} ppm{jailed}); submit a smaller job, wait for open jobs to pass their challenge window, or use another operator")]
    OverCap {
        /// The job's value at risk.
        value: u128,
        /// Open value at risk before it.
        open: u128,
        /// Open value at risk with it.
        after: u128,
        /// The cap.
        cap: u128,
        /// Slashable stake value.
        stake_value: u128,
        /// γ in ppm.
        gamma_ppm: u32,
        /// Slash fraction of a wrong result, ppm.
        slash_ppm: u32,
        /// ", jailed" when the operator is not active.
        jailed: &'static str,
    },
}

#[derive(Debug, Clone, Copy)]
struct Open {
    value: u128,
    /// When its receipt was issued (`None` while queued or running): it counts until the
    /// challenge window after that has passed.
    issued_at_ms: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    stake: Option<StakeView>,
    open: HashMap<JobId, Open>,
}

impl Inner {
    /// Forgets the jobs whose challenge window has passed at `now_ms`.
    fn prune(&mut self, now_ms: u64) {
        let window = self
            .stake
            .map_or(RESTORED_WINDOW_MS, |s| s.challenge_window_ms);
        self.open.retain(|_, o| match o.issued_at_ms {
            None => true,
            Some(t) => t.saturating_add(window) > now_ms,
        });
    }
}

/// The node's open value at risk and its cap.
#[derive(Debug)]
pub struct Exposure {
    enforced: bool,
    inner: Mutex<Inner>,
}

/// What `GET /v1/status` shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExposureReport {
    /// Whether admission by stake is enforced (a verifier is configured).
    pub enforced: bool,
    /// Open jobs with a value at risk.
    pub open_jobs: usize,
    /// Their value at risk.
    pub open_value_at_risk: String,
    /// Slashable stake value, once read.
    pub stake_value: Option<String>,
    /// What a wrong result would slash of it, once read.
    pub slashable_per_offence: Option<String>,
    /// γ in ppm, once read.
    pub gamma_ppm: Option<u32>,
    /// The cap, once read.
    pub cap: Option<String>,
    /// `cap − open value at risk` (negative after a slash shrank the cap).
    pub margin: Option<String>,
}

impl Exposure {
    /// A tracker; `enforced` when the node reads its stake from a verifier.
    pub fn new(enforced: bool) -> Self {
        Exposure {
            enforced,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether admission by stake is enforced.
    pub fn enforced(&self) -> bool {
        self.enforced
    }

    /// Sets what the registry says (called on every registry read).
    pub fn set_stake(&self, stake: StakeView) {
        self.lock().stake = Some(stake);
    }

    /// The stake last read.
    pub fn stake(&self) -> Option<StakeView> {
        self.lock().stake
    }

    /// Admits a job (and counts it as open) or refuses it. A job already open is
    /// admitted again without counting twice.
    pub fn admit(&self, job_id: &JobId, value: u128, now_ms: u64) -> Result<(), Refusal> {
        if value == 0 {
            return Ok(());
        }
        let mut g = self.lock();
        g.prune(now_ms);
        if g.open.contains_key(job_id) {
            return Ok(());
        }
        if self.enforced {
            let Some(stake) = g.stake else {
                return Err(Refusal::StakeUnknown { value });
            };
            let open = open_sum(&g.open);
            let after = open.saturating_add(value);
            let cap = stake.cap();
            if after > cap {
                return Err(Refusal::OverCap {
                    value,
                    open,
                    after,
                    cap,
                    stake_value: stake.stake_value,
                    gamma_ppm: stake.gamma_ppm,
                    slash_ppm: stake.slash_ppm,
                    jailed: if stake.active { "" } else { ", jailed" },
                });
            }
        }
        g.open.insert(
            *job_id,
            Open {
                value,
                issued_at_ms: None,
            },
        );
        Ok(())
    }

    /// Counts a job (again) without checking: jobs a restart found open (`issued_at_ms`:
    /// when its receipt was issued, `None` if it has none yet).
    pub fn restore(&self, job_id: &JobId, value: u128, issued_at_ms: Option<u64>) {
        if value > 0 {
            self.lock().open.insert(
                *job_id,
                Open {
                    value,
                    issued_at_ms,
                },
            );
        }
    }

    /// The job has a receipt issued at `issued_at_ms`: it stays open for the challenge
    /// window.
    pub fn settled(&self, job_id: &JobId, issued_at_ms: u64) {
        if let Some(o) = self.lock().open.get_mut(job_id) {
            o.issued_at_ms = Some(issued_at_ms);
        }
    }

    /// The job failed: no receipt, nothing at risk.
    pub fn released(&self, job_id: &JobId) {
        self.lock().open.remove(job_id);
    }

    /// The figures for `GET /v1/status`.
    pub fn report(&self, now_ms: u64) -> ExposureReport {
        let mut g = self.lock();
        g.prune(now_ms);
        let open = open_sum(&g.open);
        let cap = g.stake.map(|s| s.cap());
        ExposureReport {
            enforced: self.enforced,
            open_jobs: g.open.len(),
            open_value_at_risk: open.to_string(),
            stake_value: g.stake.map(|s| s.stake_value.to_string()),
            slashable_per_offence: g.stake.map(|s| s.slashable_per_offence().to_string()),
            gamma_ppm: g.stake.map(|s| s.gamma_ppm),
            cap: cap.map(|c| c.to_string()),
            margin: cap.map(|c| {
                if c >= open {
                    (c - open).to_string()
                } else {
                    format!("-{}", open - c)
                }
            }),
        }
    }
}

fn open_sum(open: &HashMap<JobId, Open>) -> u128 {
    open.values().fold(0u128, |a, o| a.saturating_add(o.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> JobId {
        JobId([n; 32])
    }

    fn stake(value: u128, active: bool) -> StakeView {
        StakeView {
            stake_value: value,
            active,
            gamma_ppm: 100_000,
            challenge_window_ms: 1_000,
            slash_ppm: 500_000,
        }
    }

    #[test]
    fn cap_is_stake_over_one_plus_gamma_rounded_down() {
        assert_eq!(cap(1_100, 100_000), 1_000);
        assert_eq!(cap(1_099, 100_000), 999);
        assert_eq!(cap(0, 100_000), 0);
        assert_eq!(cap(7, 0), 7);
        // No overflow at the top of the range.
        assert_eq!(cap(u128::MAX, 0), u128::MAX);
        assert!(cap(u128::MAX, 100_000) < u128::MAX);
    }

    #[test]
    fn jobs_past_the_cap_are_refused_and_free_jobs_always_pass() {
        let e = Exposure::new(true);
        assert!(matches!(
            e.admit(&id(1), 10, 0),
            Err(Refusal::StakeUnknown { .. })
        ));
        e.set_stake(stake(2_200, true)); // cap 2200 × 0.5 / 1.1 = 1000
        e.admit(&id(1), 600, 0).expect("fits");
        e.admit(&id(1), 600, 0)
            .expect("the same job again is not counted twice");
        e.admit(&id(2), 400, 0).expect("exactly at the cap");
        let err = e.admit(&id(3), 1, 0).expect_err("over");
        assert!(err.to_string().contains("from 1000 to 1001"), "{err}");
        e.admit(&id(4), 0, 0).expect("no value at risk");
        // A failed job frees its share; a settled one holds it for the window.
        e.released(&id(2));
        e.admit(&id(3), 400, 0).expect("room again");
        e.settled(&id(1), 50);
        assert!(e.admit(&id(5), 600, 1_049).is_err());
        e.admit(&id(5), 600, 1_050).expect("job 1 is final");
    }

    #[test]
    fn a_slash_or_jail_shrinks_the_cap_at_once() {
        let e = Exposure::new(true);
        e.set_stake(stake(4_400, true));
        e.admit(&id(1), 1_500, 0).expect("fits under 2000");
        e.set_stake(stake(2_200, true));
        let r = e.report(0);
        assert_eq!(r.margin.as_deref(), Some("-500"));
        assert!(e.admit(&id(2), 1, 0).is_err());
        e.set_stake(stake(1_000_000, false));
        assert!(e
            .admit(&id(3), 1, 0)
            .expect_err("jailed")
            .to_string()
            .contains("jailed"));
    }

    #[test]
    fn jobs_found_at_start_count_until_their_window_is_known_to_have_passed() {
        let e = Exposure::new(true);
        e.restore(&id(1), 300, Some(0)); // signed at 0
        e.restore(&id(2), 100, None); // still queued
        assert_eq!(
            e.report(5_000).open_value_at_risk,
            "400",
            "window unknown: a day"
        );
        e.set_stake(stake(4_400, true)); // window 1 s
        assert_eq!(e.report(1_000).open_value_at_risk, "100", "job 1 is final");
        assert_eq!(
            e.report(10_000_000).open_jobs,
            1,
            "a queued job counts until it ends"
        );
    }

    #[test]
    fn without_a_verifier_nothing_is_enforced() {
        let e = Exposure::new(false);
        e.admit(&id(1), u128::MAX, 0).expect("unchecked");
        assert!(!e.report(0).enforced);
    }
}
