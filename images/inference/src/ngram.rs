//! The n-gram logit bias: character trigram, bigram and unigram counts over the shipped
//! corpus (`corpus.txt`), added to the transformer's logits as integer log-counts so the
//! generated text looks like English words.
//!
//! The corpus is split into documents at blank lines. Each document is counted as the
//! token sequence `<assistant> text <end>`, so the model learns how answers start (after
//! the prompt's final `<assistant>`) and when they end. Single newlines inside a document
//! are kept as `\n` tokens. The bias is the log-probability of an interpolated
//! (Witten–Bell) trigram model, so rare and frequent characters are weighed by how often
//! they follow the context, not by how common they are overall.

use crate::fixed::ln_q8;
use crate::tokenizer::{self, ASSISTANT, END, SAMPLEABLE, VOCAB};

/// The shipped corpus, a few KB of plain English prose about computing.
pub const CORPUS: &str = include_str!("../corpus.txt");

/// Probabilities are computed in Q24 (`2^24` = 1.0) before taking their logarithm.
const PROB_SHIFT: u32 = 24;

/// Count tables over the vocabulary.
#[derive(Debug, Clone)]
pub struct NGram {
    /// `p1[c]`: add-one unigram probability of `c`, Q24.
    p1: Vec<u64>,
    /// `c2[b·V + c]`: occurrences of the pair `b c`.
    c2: Vec<u32>,
    /// Per context `b`: total count and number of distinct successors.
    ctx2: Vec<(u32, u32)>,
    /// `c3[(a·V + b)·V + c]`: occurrences of the triple `a b c` (2 MiB, mostly zero pages).
    c3: Vec<u16>,
    /// Per context `a b`: total count and number of distinct successors.
    ctx3: Vec<(u32, u32)>,
}

/// Witten–Bell interpolation: `(count + types·lower) / (total + types)`, or `lower` for a
/// context never seen. All in Q24; `count ≤ total < 2^32`, `types ≤ 101`, so the
/// numerator stays below 2^57.
fn interpolate(count: u32, (total, types): (u32, u32), lower: u64) -> u64 {
    if total == 0 {
        return lower;
    }
    ((u64::from(count) << PROB_SHIFT) + u64::from(types) * lower)
        / (u64::from(total) + u64::from(types))
}

/// Total count and number of distinct successors of one context.
fn context(counts: impl Iterator<Item = u32>) -> (u32, u32) {
    counts.fold((0u32, 0u32), |(total, types), c| {
        (total.saturating_add(c), types + u32::from(c > 0))
    })
}

impl NGram {
    /// Count the n-grams of `corpus` (documents separated by blank lines).
    pub fn from_corpus(corpus: &str) -> Self {
        let mut c1 = vec![0u32; VOCAB];
        let mut c2 = vec![0u32; VOCAB * VOCAB];
        let mut c3 = vec![0u16; VOCAB * VOCAB * VOCAB];
        let mut seq = Vec::new();
        for doc in corpus.split("\n\n") {
            let doc = doc.trim_matches('\n');
            if doc.is_empty() {
                continue;
            }
            seq.clear();
            seq.push(ASSISTANT);
            tokenizer::encode_into(doc, &mut seq);
            seq.push(END);
            for (i, &c) in seq.iter().enumerate().skip(1) {
                let c = c as usize;
                let b = seq[i - 1] as usize;
                c1[c] = c1[c].saturating_add(1);
                c2[b * VOCAB + c] = c2[b * VOCAB + c].saturating_add(1);
                if i >= 2 {
                    let a = seq[i - 2] as usize;
                    let k = (a * VOCAB + b) * VOCAB + c;
                    c3[k] = c3[k].saturating_add(1);
                }
            }
        }
        let n: u64 = c1.iter().map(|&c| u64::from(c)).sum();
        let p1 = c1
            .iter()
            .map(|&c| ((u64::from(c) + 1) << PROB_SHIFT) / (n + VOCAB as u64))
            .collect();
        let ctx2 = c2
            .chunks_exact(VOCAB)
            .map(|row| context(row.iter().copied()))
            .collect();
        let ctx3 = c3
            .chunks_exact(VOCAB)
            .map(|row| context(row.iter().map(|&c| u32::from(c))))
            .collect();
        Self {
            p1,
            c2,
            ctx2,
            c3,
            ctx3,
        }
    }

    /// Add `ln P(c | prev2 prev1)` (in logit units) for every sampleable `c` to `logits`:
    /// an interpolated trigram model (bigram only when there is no `prev2`). Tokens
    /// outside the vocabulary are treated as unseen contexts.
    pub fn add_bias(&self, prev2: Option<u32>, prev1: u32, logits: &mut [i32; SAMPLEABLE]) {
        let b = prev1 as usize;
        let ab = prev2.map(|a| a as usize * VOCAB + b);
        let ctx2 = self.ctx2.get(b).copied().unwrap_or((0, 0));
        let ctx3 = ab
            .and_then(|ab| self.ctx3.get(ab))
            .copied()
            .unwrap_or((0, 0));
        for (c, logit) in logits.iter_mut().enumerate() {
            let p1 = self.p1.get(c).copied().unwrap_or(1);
            let n2 = self.c2.get(b * VOCAB + c).copied().unwrap_or(0);
            let p2 = interpolate(n2, ctx2, p1);
            let n3 = ab
                .and_then(|ab| self.c3.get(ab * VOCAB + c))
                .map_or(0, |&n| u32::from(n));
            let p3 = interpolate(n3, ctx3, p2);
            // p3 ≤ 2^24 (a probability), so it fits u32 and ln_q8 < 2^13.
            *logit += ln_q8(u32::try_from(p3.max(1)).unwrap_or(u32::MAX));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{encode_char, UNK};

    #[test]
    fn corpus_is_plain_ascii_with_several_documents() {
        let mut tokens = Vec::new();
        tokenizer::encode_into(CORPUS, &mut tokens);
        assert!(
            !tokens.contains(&UNK),
            "corpus.txt must be printable ASCII and newlines"
        );
        let docs = CORPUS
            .split("\n\n")
            .filter(|d| !d.trim().is_empty())
            .count();
        assert!(docs >= 5, "{docs} documents");
        assert!(CORPUS.len() > 4000);
    }

    #[test]
    fn bias_is_the_interpolated_log_probability() {
        let g = NGram::from_corpus("ab\n\nab\n\nac");
        let [a, b, c, z] = ['a', 'b', 'c', 'z'].map(|ch| encode_char(ch) as usize);
        assert_eq!(g.c2[(ASSISTANT as usize) * VOCAB + a], 3);
        assert_eq!(g.c2[a * VOCAB + b], 2);
        assert_eq!(g.c3[(a * VOCAB + b) * VOCAB + END as usize], 2);
        assert_eq!(g.ctx2[a], (3, 2));
        assert_eq!(g.ctx3[ASSISTANT as usize * VOCAB + a], (3, 2));

        let mut logits = [0i32; SAMPLEABLE];
        g.add_bias(Some(ASSISTANT), a as u32, &mut logits);
        assert!(logits[b] > logits[c]);
        assert!(logits[c] > logits[z]);
        // 9 tokens counted (3·(a, b|c, <end>)): p1(z) = 1/(9+101); p2(z|a) = 2·p1/(3+2);
        // p3(z|<assistant> a) = 2·p2/(3+2) = 4/(25·110), ln = -6.53 nats.
        let want = (4.0f64 / 2750.0 * 16777216.0).ln() * 256.0;
        assert!(
            (f64::from(logits[z]) - want).abs() < 2.0,
            "{} vs {want}",
            logits[z]
        );
        // Probabilities of all tokens (the 4 unsampleable ones are unseen) sum to ~1.
        let total: f64 = logits
            .iter()
            .map(|&l| (f64::from(l) / 256.0).exp() / 16777216.0)
            .sum();
        assert!((0.9..=1.0).contains(&total), "{total}");
    }
}
