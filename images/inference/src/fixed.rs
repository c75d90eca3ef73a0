//! Integer building blocks shared by the forward pass and the sampler: a seeded PRNG for the
//! weights, an `exp(-x)` lookup table, an integer square root and an integer natural log.
//!
//! Nothing here uses floating point, so every result is the same on every CPU.
//!
//! Fixed-point conventions used across the crate:
//! - *logit units* (Q8.8): `256` = one nat. Logits, attention scores and n-gram biases use
//!   them, so they can be added and compared directly.
//! - *weights* of the exp table (Q16): `65536` = 1.0.

/// Resolution of the exp table: one entry per `1/32` nat, i.e. per 8 logit units.
pub const EXP_STEP_SHIFT: u32 = 3;

/// Number of entries in [`EXP_Q16`]. Beyond the last one `65536·e^-x` rounds to zero
/// (`x ≥ 11.8` nats), so [`exp_neg`] returns 0 there.
pub const EXP_LEN: usize = 384;

/// `round(2^32 · e^(-1/32))`: the ratio between consecutive table entries, in Q32.
const EXP_RATIO_Q32: u128 = 4_162_825_044;

/// `EXP_Q16[k] = round(65536 · e^(-k/32))`, built by repeated Q32 multiplication (rounded
/// to nearest at each step) so that the table is defined by integers alone.
pub const EXP_Q16: [u32; EXP_LEN] = build_exp_table();

const fn build_exp_table() -> [u32; EXP_LEN] {
    let mut table = [0u32; EXP_LEN];
    let mut acc: u128 = 1 << 32; // 1.0 in Q32
    let mut k = 0;
    while k < EXP_LEN {
        table[k] = ((acc + (1 << 15)) >> 16) as u32;
        acc = (acc * EXP_RATIO_Q32 + (1 << 31)) >> 32;
        k += 1;
    }
    table
}

/// `e^(-z)` in Q16 for `z ≥ 0` given in logit units (Q8.8 nats), truncated to the table's
/// 1/32-nat resolution. Negative `z` (never passed by the callers, who subtract from a
/// maximum) is treated as 0.
pub fn exp_neg(z: i64) -> u32 {
    let index = (z.max(0) >> EXP_STEP_SHIFT) as u64;
    usize::try_from(index)
        .ok()
        .and_then(|i| EXP_Q16.get(i))
        .copied()
        .unwrap_or(0)
}

/// The splitmix64 generator (Steele, Lea & Flood 2014): a tiny, well-mixed 64-bit PRNG,
/// used only to derive the model's weights from a fixed seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A weight uniform in `-128..=127`: the top byte of the next output, as `i8`.
    pub fn next_weight(&mut self) -> i16 {
        i16::from((self.next_u64() >> 56) as u8 as i8)
    }
}

/// `ln(2)` in Q16.
const LN2_Q16: u64 = 45_426;

/// `log2(x)` in Q16 for `x ≥ 1`, by the bit-by-bit squaring method (exact to the last
/// fractional bit kept, truncated). `log2(0)` is defined as 0.
pub fn log2_q16(x: u32) -> u32 {
    if x == 0 {
        return 0;
    }
    let int = 31 - x.leading_zeros();
    // y = x / 2^int in Q30, so 1.0 ≤ y < 2.0; squares stay below 2^62.
    let mut y: u64 = (u64::from(x) << 30) >> int;
    let mut frac = 0u32;
    for bit in (0..16).rev() {
        y = (y * y) >> 30;
        if y >= 2 << 30 {
            y >>= 1;
            frac |= 1 << bit;
        }
    }
    (int << 16) | frac
}

/// `ln(x)` in logit units (Q8.8 nats), truncated.
pub fn ln_q8(x: u32) -> i32 {
    // log2 < 32·2^16 = 2^21, times ln2 (< 2^16) stays below 2^37; the result is < 2^13.
    ((u64::from(log2_q16(x)) * LN2_Q16) >> 24) as i32
}

/// Hex encoding, lowercase (kept local so the crate needs no `hex` dependency).
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Floats appear only here, to check the integer tables against the real functions.
    #[test]
    fn exp_table_matches_the_real_exponential() {
        for (k, &v) in EXP_Q16.iter().enumerate() {
            let want = 65536.0 * (-(k as f64) / 32.0).exp();
            assert!(
                (f64::from(v) - want).abs() <= 1.0,
                "EXP_Q16[{k}] = {v}, e^-x gives {want}"
            );
        }
        assert_eq!(EXP_Q16[0], 65536);
        assert_eq!(EXP_Q16[32], 24109); // 65536/e = 24109.3
        assert_eq!(EXP_Q16[EXP_LEN - 1], 0);
        assert_eq!(exp_neg(0), 65536);
        assert_eq!(exp_neg(7), 65536); // below one table step
        assert_eq!(exp_neg(256), 24109); // one nat
        assert_eq!(exp_neg(i64::MAX), 0);
        assert_eq!(exp_neg(-5), 65536);
    }

    #[test]
    fn log_matches_the_real_logarithm() {
        for x in [1u32, 2, 3, 7, 10, 100, 255, 1000, 65535, 1 << 20, u32::MAX] {
            let want = f64::from(x).log2() * 65536.0;
            let got = f64::from(log2_q16(x));
            assert!((got - want).abs() <= 2.0, "log2({x}): {got} vs {want}");
            let want_ln = f64::from(x).ln() * 256.0;
            let got_ln = f64::from(ln_q8(x));
            assert!(
                (got_ln - want_ln).abs() <= 1.0,
                "ln({x}): {got_ln} vs {want_ln}"
            );
        }
        assert_eq!(log2_q16(1), 0);
        assert_eq!(log2_q16(8), 3 << 16);
        assert_eq!(log2_q16(0), 0);
    }

    #[test]
    fn splitmix_matches_reference_output() {
        // First outputs for seed 0 of the reference C implementation.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        let w = SplitMix64::new(0).next_weight();
        assert_eq!(w, -30); // 0xe2 as i8
    }

    #[test]
    fn hex_encodes_lowercase() {
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }
}
