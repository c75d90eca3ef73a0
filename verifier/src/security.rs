//! Economic security figures (`GET /v1/security`, `vouch-verifier security`; README
//! "Economic security").
//!
//! Per operator, from the ledger: slashable stake per asset and priced, what a proven
//! wrong result would slash of it (`S`, the wrong-result slash fraction of the stake), the
//! value at risk of its open jobs (`V`: receipts the verifier heard on the network that are
//! still inside the challenge window, each weighted by its spec's `value_at_risk`), and
//! the Durvasula–Roughgarden per-operator condition with slack γ ("Robust Restaking
//! Networks", 2024): `S ≥ (1 + γ)·V`, i.e. `V ≤ cap = S / (1 + γ)`. A node enforces the
//! same cap when it admits a job (README "Admission by stake"), so the condition holds by
//! construction for honest nodes' own accounting; the verifier's figure is the outside
//! view that shows an operator who ignores it.
//!
//! For the service: the cost of corruption (the sum of `S` over active operators: what
//! the stake that backs the service would lose if every operator cheated at once) against
//! the profit from corruption (the sum of `V`: the most all open jobs can be worth to a
//! cheater), and whether every operator meets its condition.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::ledger::PPM;

/// The service's parameters for economic security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SecurityParams {
    /// Slack γ of the per-operator condition, ppm (`--gamma`, default 0.1).
    pub gamma_ppm: u32,
}

impl Default for SecurityParams {
    fn default() -> Self {
        SecurityParams { gamma_ppm: 100_000 }
    }
}

/// Parses a non-negative decimal fraction like `0.1` into parts per million (at most six
/// decimals, at most 1000).
pub fn parse_ppm(s: &str) -> Result<u32, String> {
    let bad = || format!("{s:?} is not a decimal number like 0.1 (at most 6 decimals, 0 … 1000)");
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || frac.len() > 6
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || int.len() > 4
    {
        return Err(bad());
    }
    let int: u32 = int.parse().map_err(|_| bad())?;
    let frac: u32 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
    if int > 1000 {
        return Err(bad());
    }
    Ok(int * PPM + frac)
}

/// `a × ppm / 10⁶`, rounded down, without overflow.
pub fn mul_ppm(a: u128, ppm: u32) -> u128 {
    let p = u128::from(PPM);
    let f = u128::from(ppm);
    (a / p).saturating_mul(f).saturating_add((a % p) * f / p)
}

/// `a / (1 + γ)`, rounded down, without overflow.
pub fn div_one_plus(a: u128, gamma_ppm: u32) -> u128 {
    let p = u128::from(PPM);
    let d = p + u128::from(gamma_ppm);
    (a / d) * p + (a % d) * p / d
}

/// One operator's inputs.
#[derive(Debug, Clone, Default)]
pub struct OperatorInputs {
    /// Jailed (or below the minimum stake).
    pub jailed: bool,
    /// Slashable stake per asset, base units.
    pub slashable_stake: BTreeMap<String, u128>,
    /// Slashable stake priced in quote units.
    pub stake_value: u128,
    /// Open jobs the verifier knows of, and their summed value at risk.
    pub open_jobs: usize,
    /// Their value at risk.
    pub open_value_at_risk: u128,
}

/// One operator's figures.
#[derive(Debug, Clone, Serialize)]
pub struct OperatorFigures {
    /// The operator key.
    pub operator: String,
    /// Jailed (or below the minimum stake): takes no work, cap 0.
    pub jailed: bool,
    /// Slashable stake per asset, base units (decimal strings).
    pub slashable_stake: BTreeMap<String, String>,
    /// Priced in quote units.
    pub stake_value: String,
    /// `S`: what a proven wrong result slashes (stake value × wrong-result fraction).
    pub slashable_per_offence: String,
    /// Open jobs heard (receipts inside the challenge window).
    pub open_jobs: usize,
    /// `V`: their value at risk.
    pub open_value_at_risk: String,
    /// `S / (1 + γ)`: the most open value at risk the condition allows (0 when jailed).
    pub cap: String,
    /// `cap − V`; negative when the operator holds more than its stake covers.
    pub margin: String,
    /// `S ≥ (1 + γ)·V` (and not jailed, unless nothing is open).
    pub condition_holds: bool,
}

/// The service's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceFigures {
    /// Sum of `S` over active operators.
    pub cost_of_corruption: String,
    /// Sum of `V` over all operators.
    pub profit_from_corruption: String,
    /// `cost_of_corruption ≥ (1 + γ)·profit_from_corruption`.
    pub cost_exceeds_profit: bool,
    /// Every operator meets its per-operator condition (which implies the line above).
    pub every_operator_condition_holds: bool,
}

/// Everything `GET /v1/security` answers.
#[derive(Debug, Clone, Serialize)]
pub struct SecurityReport {
    /// γ as a decimal string and in ppm.
    pub gamma: String,
    /// γ in ppm.
    pub gamma_ppm: u32,
    /// Share of stake a wrong result slashes, ppm.
    pub wrong_result_slash_ppm: u32,
    /// How long receipts stay open.
    pub challenge_window_ms: u64,
    /// Where the open value at risk comes from.
    pub open_jobs_source: String,
    /// Per operator.
    pub operators: Vec<OperatorFigures>,
    /// For the whole service.
    pub service: ServiceFigures,
}

fn signed(a: u128, b: u128) -> String {
    if a >= b {
        (a - b).to_string()
    } else {
        format!("-{}", b - a)
    }
}

fn decimal_ppm(ppm: u32) -> String {
    let s = format!("{}.{:06}", ppm / PPM, ppm % PPM);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Computes the figures.
pub fn report(
    params: SecurityParams,
    wrong_result_slash_ppm: u32,
    challenge_window_ms: u64,
    open_jobs_source: &str,
    operators: &BTreeMap<String, OperatorInputs>,
) -> SecurityReport {
    let mut out = vec![];
    let (mut coc, mut pfc, mut all_hold) = (0u128, 0u128, true);
    for (key, o) in operators {
        let s = mul_ppm(o.stake_value, wrong_result_slash_ppm);
        let cap = if o.jailed {
            0
        } else {
            div_one_plus(s, params.gamma_ppm)
        };
        let v = o.open_value_at_risk;
        let holds = v <= cap;
        all_hold &= holds;
        if !o.jailed {
            coc = coc.saturating_add(s);
        }
        pfc = pfc.saturating_add(v);
        out.push(OperatorFigures {
            operator: key.clone(),
            jailed: o.jailed,
            slashable_stake: o
                .slashable_stake
                .iter()
                .map(|(a, v)| (a.clone(), v.to_string()))
                .collect(),
            stake_value: o.stake_value.to_string(),
            slashable_per_offence: s.to_string(),
            open_jobs: o.open_jobs,
            open_value_at_risk: v.to_string(),
            cap: cap.to_string(),
            margin: signed(cap, v),
            condition_holds: holds,
        });
    }
    SecurityReport {
        gamma: decimal_ppm(params.gamma_ppm),
        gamma_ppm: params.gamma_ppm,
        wrong_result_slash_ppm,
        challenge_window_ms,
        open_jobs_source: open_jobs_source.to_string(),
        operators: out,
        service: ServiceFigures {
            cost_of_corruption: coc.to_string(),
            profit_from_corruption: pfc.to_string(),
            cost_exceeds_profit: div_one_plus(coc, params.gamma_ppm) >= pfc,
            every_operator_condition_holds: all_hold,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_parse_exactly() {
        assert_eq!(parse_ppm("0.1"), Ok(100_000));
        assert_eq!(parse_ppm("0"), Ok(0));
        assert_eq!(parse_ppm("1.5"), Ok(1_500_000));
        assert_eq!(parse_ppm("0.000001"), Ok(1));
        for bad in [
            "",
            ".5",
            "-0.1",
            "0.0000001",
            "1e-1",
            "abc",
            "1001",
            "0.1.2",
        ] {
            assert!(parse_ppm(bad).is_err(), "{bad}");
        }
        assert_eq!(decimal_ppm(100_000), "0.1");
        assert_eq!(decimal_ppm(2_000_000), "2");
    }

    #[test]
    fn arithmetic_does_not_overflow() {
        assert_eq!(mul_ppm(u128::MAX, PPM), u128::MAX);
        assert_eq!(mul_ppm(1_000, 500_000), 500);
        assert_eq!(div_one_plus(1_100, 100_000), 1_000);
        assert!(div_one_plus(u128::MAX, 100_000) < u128::MAX);
    }

    fn op(stake: u128, open: u128, jailed: bool) -> OperatorInputs {
        OperatorInputs {
            jailed,
            slashable_stake: [("usd".to_string(), stake)].into(),
            stake_value: stake,
            open_jobs: usize::from(open > 0),
            open_value_at_risk: open,
        }
    }

    #[test]
    fn the_condition_per_operator_and_for_the_service() {
        let ops: BTreeMap<String, OperatorInputs> = [
            ("a".to_string(), op(2_200, 1_000, false)), // S 1100, cap 1000: holds exactly
            ("b".to_string(), op(2_200, 1_001, false)), // one over
            ("c".to_string(), op(10_000, 0, true)),     // jailed, nothing open
        ]
        .into();
        let r = report(SecurityParams::default(), 500_000, 60_000, "test", &ops);
        assert_eq!(r.gamma, "0.1");
        let a = &r.operators[0];
        assert_eq!((a.cap.as_str(), a.margin.as_str()), ("1000", "0"));
        assert!(a.condition_holds);
        let b = &r.operators[1];
        assert_eq!(b.margin, "-1");
        assert!(!b.condition_holds);
        let c = &r.operators[2];
        assert_eq!((c.cap.as_str(), c.condition_holds), ("0", true));
        assert_eq!(r.service.cost_of_corruption, "2200");
        assert_eq!(r.service.profit_from_corruption, "2001");
        assert!(!r.service.cost_exceeds_profit);
        assert!(!r.service.every_operator_condition_holds);
    }
}
