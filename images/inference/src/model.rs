//! The transformer: a 2-layer, single-head, pre-norm decoder over a sliding window of the
//! last [`WINDOW`] tokens, in integer arithmetic only.
//!
//! Shapes: `d_model` [`D`] = 64, MLP hidden [`H`] = 128 (ReLU), vocabulary 101 (logits
//! only for the 97 sampleable ids). Weights are `i8` values (stored widened to `i16`)
//! drawn from splitmix64 with a fixed seed, so the model needs no weight file.
//!
//! Positions are relative inside the window, counted from its newest token (the token whose
//! successor is predicted is always position 0), so a token's contribution depends only on
//! its distance from the end, never on how long the whole sequence is. Attention also gets
//! an ALiBi-style recency penalty.
//!
//! # Fixed point and overflow
//!
//! Activations are Q8.8 (`256` = 1.0) in `i32`; matrix products take `i16` inputs and
//! `i16` weights (`|w| ≤ 128`) and accumulate in `i32`, then rescale by an arithmetic right
//! shift. Overflow is impossible by construction, which the bounds below establish (each
//! intermediate is clamped where noted):
//!
//! - RMS-norm outputs: `|y| ≤ 4096` (clamped; true values are `≤ 256·√64 = 2048`).
//! - projections from `D` inputs: `|Σ| ≤ 64·4096·128 = 2^25`.
//! - queries and keys clamped to `±4096`: `|q·k| ≤ 64·2^24 = 2^30 < 2^31`.
//! - attention weights are normalized to Q15 with `Σp ≤ 2^15`, values are `i16`:
//!   `|Σ p·v| ≤ 2^15·2^15 = 2^30`.
//! - attention output projection and MLP down-projection (`i16` inputs, clamped):
//!   `64·2^15·2^7 = 2^28`, `128·2^15·2^7 = 2^29`.
//! - the residual stream is clamped to `±2^20` after every addition; the squares summed by
//!   RMS-norm (`64·2^40`) are taken in `i64`.

use std::sync::OnceLock;

use crate::fixed::{exp_neg, SplitMix64};
use crate::ngram::NGram;
use crate::tokenizer::{SAMPLEABLE, VOCAB};

/// The context window: the next token depends only on the last `WINDOW` tokens.
pub const WINDOW: usize = 32;
/// Model width.
pub const D: usize = 64;
/// MLP hidden width.
pub const H: usize = 128;
/// Number of transformer layers.
pub const LAYERS: usize = 2;

/// Seed of the weight PRNG ("vouch-v1" in ASCII). Changing it changes the model.
const WEIGHT_SEED: u64 = 0x766f_7563_682d_7631;
/// Embeddings (`|e| ≤ 128` each, token + position) are scaled into Q8.8.
const EMBED_SCALE: i32 = 4;
/// Right shift after a projection from `D` inputs (`≈ log2(std(w)·√D)`).
const PROJ_SHIFT: u32 = 9;
/// Right shift after the MLP down-projection from `H` (half zero after ReLU) inputs.
const DOWN_SHIFT: u32 = 10;
/// `q·k` is in Q16; `>> 11` divides by `√D = 8` and brings it back to Q8.8 nats.
const SCORE_SHIFT: u32 = 11;
/// Queries and keys are clamped to this magnitude (16.0), see the module docs.
const QK_CLAMP: i32 = 4096;
/// Residual stream clamp.
const RESIDUAL_CLAMP: i32 = 1 << 20;
/// RMS-norm output clamp.
const NORM_CLAMP: i64 = 4096;
/// Right shift of the unembedding products into logit units (keeps the transformer's
/// share of the logits near half a nat, the n-gram bias supplies the rest).
const LOGIT_SHIFT: u32 = 10;
/// Per-layer ALiBi slopes in logit units per token of distance.
const ALIBI_SLOPES: [i32; LAYERS] = [48, 16];

type Row = [i16; D];

#[derive(Debug, Clone)]
struct Layer {
    wq: Vec<Row>,
    wk: Vec<Row>,
    wv: Vec<Row>,
    wo: Vec<Row>,
    /// Up-projection: `H` rows of `D`.
    w1: Vec<Row>,
    /// Down-projection: `D` rows of `H`.
    w2: Vec<[i16; H]>,
    slope: i32,
}

/// The whole model: transformer weights plus the n-gram bias tables.
#[derive(Debug, Clone)]
pub struct Model {
    tok: Vec<Row>,
    pos: Vec<Row>,
    unembed: Vec<Row>,
    layers: Vec<Layer>,
    ngram: NGram,
}

fn rows<const N: usize>(rng: &mut SplitMix64, count: usize) -> Vec<[i16; N]> {
    (0..count)
        .map(|_| {
            let mut row = [0i16; N];
            for w in &mut row {
                *w = rng.next_weight();
            }
            row
        })
        .collect()
}

/// `a·b` in `i32`. A plain indexed loop: LLVM vectorizes it (`pmaddwd`) in release
/// builds, and unoptimized test builds run it several times faster than an iterator chain.
#[inline]
#[allow(clippy::needless_range_loop)]
fn dot<const N: usize>(a: &[i16; N], b: &[i16; N]) -> i32 {
    let mut acc = 0i32;
    for i in 0..N {
        acc += i32::from(a[i]) * i32::from(b[i]);
    }
    acc
}

/// `out[o] = clamp((w[o]·x) >> shift, ±limit)` as `i16`.
#[inline]
fn project<const N: usize, const M: usize>(
    w: &[[i16; N]],
    x: &[i16; N],
    shift: u32,
    limit: i32,
) -> [i16; M] {
    let mut out = [0i16; M];
    for (o, row) in out.iter_mut().zip(w) {
        *o = ((dot(row, x) >> shift).clamp(-limit, limit)) as i16;
    }
    out
}

/// `x += (w·a) >> shift`, clamped to the residual range.
#[inline]
fn add_projection<const N: usize>(x: &mut [i32; D], w: &[[i16; N]], a: &[i16; N], shift: u32) {
    for (xd, row) in x.iter_mut().zip(w) {
        *xd = (*xd + (dot(row, a) >> shift)).clamp(-RESIDUAL_CLAMP, RESIDUAL_CLAMP);
    }
}

/// RMS-norm without gain: scale `x` so its root mean square is 256 (1.0 in Q8.8).
fn rms_norm(x: &[i32; D]) -> Row {
    let sum_sq: i64 = x.iter().map(|&v| i64::from(v) * i64::from(v)).sum();
    let rms = (sum_sq as u64 / D as u64).isqrt() as i64;
    let mut out = [0i16; D];
    if rms == 0 {
        return out;
    }
    for (o, &v) in out.iter_mut().zip(x) {
        *o = ((i64::from(v) * 256) / rms).clamp(-NORM_CLAMP, NORM_CLAMP) as i16;
    }
    out
}

impl Model {
    /// The model, built once per process on first use (about a millisecond: 75k weights
    /// from the PRNG and the n-gram counts of a 7 KB corpus).
    pub fn shared() -> &'static Self {
        static MODEL: OnceLock<Model> = OnceLock::new();
        MODEL.get_or_init(Model::new)
    }

    /// Build the model: weights from the fixed seed, n-gram tables from the corpus.
    pub fn new() -> Self {
        let mut rng = SplitMix64::new(WEIGHT_SEED);
        let tok = rows(&mut rng, VOCAB);
        let pos = rows(&mut rng, WINDOW);
        let unembed = rows(&mut rng, SAMPLEABLE);
        let layers = ALIBI_SLOPES
            .iter()
            .map(|&slope| Layer {
                wq: rows(&mut rng, D),
                wk: rows(&mut rng, D),
                wv: rows(&mut rng, D),
                wo: rows(&mut rng, D),
                w1: rows(&mut rng, H),
                w2: rows(&mut rng, D),
                slope,
            })
            .collect();
        let ngram = NGram::from_corpus(crate::ngram::CORPUS);
        Self {
            tok,
            pos,
            unembed,
            layers,
            ngram,
        }
    }

    /// The logits (in logit units) of the sampleable tokens after `window`: one forward
    /// pass over the window plus the n-gram bias of its last two tokens.
    ///
    /// `window` must hold 1..=WINDOW token ids below `VOCAB` (the callers guarantee it);
    /// out-of-range ids are read as the `<unk>` embedding rather than panicking.
    pub fn logits(&self, window: &[u32]) -> [i32; SAMPLEABLE] {
        let window = &window[window.len().saturating_sub(WINDOW)..];
        let n = window.len();
        let mut logits = [0i32; SAMPLEABLE];
        let Some(&last) = window.last() else {
            return logits;
        };

        // Residual stream, one row per window position (0 = oldest).
        let mut x = [[0i32; D]; WINDOW];
        for (i, &t) in window.iter().enumerate() {
            let e = self.embedding(t);
            let p = &self.pos[n - 1 - i];
            for ((xd, &ed), &pd) in x[i].iter_mut().zip(e).zip(p) {
                *xd = (i32::from(ed) + i32::from(pd)) * EMBED_SCALE;
            }
        }

        let mut y = [[0i16; D]; WINDOW];
        let mut k = [[0i16; D]; WINDOW];
        let mut v = [[0i16; D]; WINDOW];
        for (l, layer) in self.layers.iter().enumerate() {
            // Keys and values of every position come from the layer's input ...
            for i in 0..n {
                y[i] = rms_norm(&x[i]);
                k[i] = project(&layer.wk, &y[i], PROJ_SHIFT, QK_CLAMP);
                v[i] = project(&layer.wv, &y[i], PROJ_SHIFT, i32::from(i16::MAX));
            }
            // ... but the last layer only needs its output at the newest position.
            let first_query = if l + 1 == LAYERS { n - 1 } else { 0 };
            for i in first_query..n {
                let q: Row = project(&layer.wq, &y[i], PROJ_SHIFT, QK_CLAMP);
                let a = attend(&q, &k[..=i], &v[..=i], layer.slope);
                add_projection(&mut x[i], &layer.wo, &a, PROJ_SHIFT);

                let y2 = rms_norm(&x[i]);
                let mut h: [i16; H] = project(&layer.w1, &y2, PROJ_SHIFT, i32::from(i16::MAX));
                for hv in &mut h {
                    *hv = (*hv).max(0);
                }
                add_projection(&mut x[i], &layer.w2, &h, DOWN_SHIFT);
            }
        }

        let out = rms_norm(&x[n - 1]);
        for (logit, row) in logits.iter_mut().zip(&self.unembed) {
            *logit = dot(row, &out) >> LOGIT_SHIFT;
        }
        let prev2 = n.checked_sub(2).map(|i| window[i]);
        self.ngram.add_bias(prev2, last, &mut logits);
        logits
    }

    fn embedding(&self, token: u32) -> &Row {
        let i = usize::try_from(token).unwrap_or(usize::MAX);
        self.tok
            .get(i)
            .unwrap_or(&self.tok[crate::tokenizer::UNK as usize])
    }
}

impl Default for Model {
    fn default() -> Self {
        Self::new()
    }
}

/// Single-head causal attention of one query over `keys`/`values` (oldest first; the last
/// one is the query's own position): integer "softmax" by the exp table, normalized to Q15
/// by integer division.
fn attend(q: &Row, keys: &[Row], values: &[Row], slope: i32) -> Row {
    let mut scores = [0i32; WINDOW];
    let newest = keys.len() - 1;
    let mut max = i32::MIN;
    for (j, (s, key)) in scores.iter_mut().zip(keys).enumerate() {
        // |q·k| >> 11 ≤ 2^19 and the penalty ≤ 48·31, so no overflow.
        *s = (dot(q, key) >> SCORE_SHIFT) - slope * (newest - j) as i32;
        max = max.max(*s);
    }
    let mut weights = [0u32; WINDOW];
    let mut total: u64 = 0;
    for (w, &s) in weights.iter_mut().zip(&scores[..keys.len()]) {
        *w = exp_neg(i64::from(max) - i64::from(s));
        total += u64::from(*w);
    }
    // The maximum has weight 65536, so total ≥ 65536 and the division is safe; each
    // p ≤ 2^15 and Σp ≤ 2^15 (floor division).
    let mut acc = [0i32; D];
    for (&w, value) in weights.iter().zip(values) {
        if w == 0 {
            continue;
        }
        let p = ((u64::from(w) << 15) / total).min(i16::MAX as u64) as i32;
        for (a, &vd) in acc.iter_mut().zip(value) {
            *a += p * i32::from(vd);
        }
    }
    let mut out = [0i16; D];
    for (o, &a) in out.iter_mut().zip(&acc) {
        // |a| ≤ 2^15·32767, so a >> 15 fits i16.
        *o = (a >> 15) as i16;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{encode_char, ASSISTANT, USER};

    fn window(text: &str) -> Vec<u32> {
        let mut w = vec![USER];
        crate::tokenizer::encode_into(text, &mut w);
        w.push(ASSISTANT);
        w
    }

    #[test]
    fn only_the_last_window_matters() {
        let m = Model::new();
        let short = window("the quick brown fox jumps over the lazy dog");
        let long = window(
            "PREFIX THAT FALLS OUT OF THE WINDOW the quick brown fox jumps over the lazy dog",
        );
        assert_eq!(m.logits(&short[short.len() - WINDOW..]), m.logits(&long));
        assert_eq!(m.logits(&short), m.logits(&long));
    }

    #[test]
    fn the_transformer_depends_on_the_whole_window() {
        // Same last two tokens (same n-gram bias), different older context: the layers must
        // make the logits differ.
        let m = Model::new();
        let a = m.logits(&window("numbers are exact"));
        let b = m.logits(&window("a network of machines"));
        assert_ne!(a, b);
        // And a change at the oldest position of a full window still reaches the output.
        let mut w1 = window("0123456789012345678901234567890");
        assert_eq!(w1.len(), WINDOW + 1);
        w1.remove(0);
        let mut w2 = w1.clone();
        w2[0] = encode_char('Z');
        assert_ne!(m.logits(&w1), m.logits(&w2));
    }

    #[test]
    fn rms_norm_has_unit_scale() {
        let mut x = [0i32; D];
        for (i, v) in x.iter_mut().enumerate() {
            *v = (i as i32 - 32) * 1000;
        }
        let y = rms_norm(&x);
        let ss: i64 = y.iter().map(|&v| i64::from(v) * i64::from(v)).sum();
        let rms = (ss / D as i64).isqrt();
        assert!((250..=256).contains(&rms), "{rms}");
        assert_eq!(rms_norm(&[0; D]), [0; D]);
        // Extreme inputs stay in range.
        let mut spike = [0i32; D];
        spike[3] = RESIDUAL_CLAMP;
        assert_eq!(rms_norm(&spike)[3], 2048);
    }

    #[test]
    fn attention_is_a_weighted_average() {
        let q = [0i16; D];
        let keys = [[1i16; D]; 3];
        let mut values = [[0i16; D]; 3];
        values[0] = [300; D];
        values[1] = [600; D];
        values[2] = [900; D];
        // Equal scores without recency penalty: the plain mean (up to rounding down).
        let out = attend(&q, &keys, &values, 0);
        assert!((598..=600).contains(&out[0]), "{}", out[0]);
        // A strong recency penalty: nearly all weight on the newest position.
        let out = attend(&q, &keys, &values, 4096);
        assert!((890..=900).contains(&out[0]), "{}", out[0]);
    }
}
