//! Choosing the next token from the logits: greedy at temperature 0, otherwise an integer
//! softmax with temperature, nucleus (top-p) truncation and a draw derived from
//! `(seed, position)` alone, so any single position can be replayed.

use sha2::{Digest, Sha256};

use crate::fixed::exp_neg;
use crate::tokenizer::SAMPLEABLE;

/// Domain tag of the per-position draw.
pub const DRAW_DOMAIN: &[u8] = b"vouch/sample/v1";

/// One sampling decision, as recorded in a trace leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub token: u32,
    /// The PRNG output used; 0 when greedy.
    pub draw: u64,
    /// The chosen token's final logit (logit units, before temperature).
    pub logit: i32,
}

/// `SHA-256("vouch/sample/v1" ‖ seed u64 BE ‖ position u32 BE)`, first 8 bytes, big-endian.
pub fn draw(seed: u64, position: u32) -> u64 {
    let mut h = Sha256::new();
    h.update(DRAW_DOMAIN);
    h.update(seed.to_be_bytes());
    h.update(position.to_be_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Greedy choice: the largest logit, ties to the lowest id.
fn argmax(logits: &[i32; SAMPLEABLE]) -> usize {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best
}

/// Choose the token at `position`.
///
/// With `temperature_milli > 0`: each token gets the weight `e^-((max − logit)/T)` in Q16
/// from the exp table (`T = temperature_milli/1000`); candidates are sorted by
/// (weight desc, id asc); the smallest prefix whose weight is at least `top_p` of the total
/// is kept; the draw `d` picks `r = ⌊d·kept/2^64⌋` and the first candidate whose running
/// sum exceeds `r` wins.
pub fn choose(
    logits: &[i32; SAMPLEABLE],
    temperature_milli: u32,
    top_p_milli: u32,
    seed: u64,
    position: u32,
) -> Choice {
    if temperature_milli == 0 {
        let best = argmax(logits);
        return Choice {
            token: best as u32,
            draw: 0,
            logit: logits[best],
        };
    }
    let max = logits[argmax(logits)];
    let t = i64::from(temperature_milli);
    let mut cands = [(0u32, 0u32); SAMPLEABLE];
    let mut total: u64 = 0;
    for (i, (cand, &l)) in cands.iter_mut().zip(logits).enumerate() {
        let z = (i64::from(max) - i64::from(l)) * 1000 / t;
        let w = exp_neg(z);
        *cand = (w, i as u32);
        total += u64::from(w);
    }
    cands.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));

    // total ≤ 97·65536, so the products below are far from overflow.
    let top_p = u64::from(top_p_milli);
    let mut kept: u64 = 0;
    let mut kept_len = 0;
    for &(w, _) in &cands {
        if kept * 1000 >= top_p * total {
            break;
        }
        kept += u64::from(w);
        kept_len += 1;
    }

    let d = draw(seed, position);
    let r = ((u128::from(d) * u128::from(kept)) >> 64) as u64;
    let mut cum: u64 = 0;
    // The argmax has weight 65536, so kept > 0, r < kept and the loop always picks; the
    // fallback to the most likely candidate is unreachable but keeps this panic-free.
    let mut token = cands[0].1;
    for &(w, id) in &cands[..kept_len] {
        cum += u64::from(w);
        if r < cum {
            token = id;
            break;
        }
    }
    Choice {
        token,
        draw: d,
        logit: logits[token as usize],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draw_is_sha256_of_the_tagged_seed_and_position() {
        let mut msg = b"vouch/sample/v1".to_vec();
        msg.extend_from_slice(&7u64.to_be_bytes());
        msg.extend_from_slice(&3u32.to_be_bytes());
        let digest = Sha256::digest(&msg);
        let want = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        assert_eq!(draw(7, 3), want);
        assert_ne!(draw(7, 3), draw(7, 4));
        assert_ne!(draw(7, 3), draw(8, 3));
    }

    #[test]
    fn greedy_takes_the_lowest_id_among_ties() {
        let mut logits = [0i32; SAMPLEABLE];
        logits[5] = 900;
        logits[9] = 900;
        logits[2] = -3;
        let c = choose(&logits, 0, 1000, 123, 0);
        assert_eq!(
            c,
            Choice {
                token: 5,
                draw: 0,
                logit: 900
            }
        );
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // One token far ahead of the rest: a small top_p keeps it alone, whatever the draw.
        let mut logits = [0i32; SAMPLEABLE];
        logits[40] = 256 * 3; // e^3 ≈ 20 times any other token, ≈ 17% of the mass
        for pos in 0..200 {
            assert_eq!(choose(&logits, 1000, 100, 1, pos).token, 40);
        }
        // With top_p = 1 every token is possible, and the draw spreads the choices.
        let mut seen = std::collections::BTreeSet::new();
        for pos in 0..500 {
            let c = choose(&logits, 1000, 1000, 1, pos);
            assert_eq!(c.draw, draw(1, pos));
            assert_eq!(c.logit, logits[c.token as usize]);
            seen.insert(c.token);
        }
        assert!(seen.contains(&40));
        assert!(seen.len() > 50, "{}", seen.len());
    }

    #[test]
    fn temperature_sharpens_and_flattens() {
        let mut logits = [0i32; SAMPLEABLE];
        logits[10] = 256; // one nat ahead
        let hits = |t: u32| {
            (0..400)
                .filter(|&p| choose(&logits, t, 1000, 9, p).token == 10)
                .count()
        };
        let cold = hits(100); // 10 nats ahead: nearly always
        let warm = hits(2000); // half a nat ahead: rarely
        assert!(cold > 390, "{cold}");
        assert!(warm < 40, "{warm}");
    }
}
