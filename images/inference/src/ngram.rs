//! The n-gram logit bias: character trigram, bigram and unigram counts over the shipped
//! corpus (`corpus.txt`), added to the transformer's logits as integer log-counts so the
//! generated text looks like English words.
//!
//! The corpus is split into documents at blank lines. Each document is counted as the
//! token sequence `<assistant> text <end>`, so the model learns how answers start (after
//! the prompt's final `<assistant>`) and when they end. Single newlines inside a document
//! are kept as `\n` tokens.

use crate::fixed::ln_q8;
use crate::tokenizer::{self, ASSISTANT, END, SAMPLEABLE, VOCAB};

/// The shipped corpus, a few KB of plain English prose about computing.
pub const CORPUS: &str = include_str!("../corpus.txt");

/// Bias weights in quarters: `bias = (W3·ln(1+c3) + W2·ln(1+c2) + W1·ln(1+c1)) / 4`.
const W3: i32 = 6;
const W2: i32 = 3;
const W1: i32 = 1;

/// Count tables over the vocabulary.
#[derive(Debug, Clone)]
pub struct NGram {
    /// `c1[c]`: occurrences of token `c`.
    c1: Vec<u32>,
    /// `c2[b·V + c]`: occurrences of the pair `b c`.
    c2: Vec<u32>,
    /// `c3[(a·V + b)·V + c]`: occurrences of the triple `a b c` (2 MiB, mostly zero pages).
    c3: Vec<u16>,
    /// `ln1p[n] = ln(1 + n)` in logit units, for every count that occurs.
    ln1p: Vec<i32>,
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
        let max = c1.iter().copied().max().unwrap_or(0);
        let ln1p = (0..=max).map(|n| ln_q8(n.saturating_add(1))).collect();
        Self { c1, c2, c3, ln1p }
    }

    fn ln1p(&self, count: u32) -> i32 {
        let i = usize::try_from(count).unwrap_or(usize::MAX);
        self.ln1p.get(i).or(self.ln1p.last()).copied().unwrap_or(0)
    }

    /// Add the bias for the next token after `... prev2 prev1` to `logits` (the trigram
    /// term is skipped when there is no `prev2`). Tokens outside the vocabulary count as
    /// unseen.
    pub fn add_bias(&self, prev2: Option<u32>, prev1: u32, logits: &mut [i32; SAMPLEABLE]) {
        let b = prev1 as usize;
        let ab = prev2.map(|a| a as usize * VOCAB + b);
        for (c, logit) in logits.iter_mut().enumerate() {
            let n1 = self.c1.get(c).copied().unwrap_or(0);
            let n2 = self.c2.get(b * VOCAB + c).copied().unwrap_or(0);
            let n3 = ab
                .and_then(|ab| self.c3.get(ab * VOCAB + c))
                .copied()
                .map_or(0, u32::from);
            // Each ln1p is below 2^13 (counts < 2^32), so the sum is far from overflow.
            *logit += (W3 * self.ln1p(n3) + W2 * self.ln1p(n2) + W1 * self.ln1p(n1)) / 4;
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
    fn counts_and_bias_follow_the_corpus() {
        let g = NGram::from_corpus("ab\n\nab\n\nac");
        let (a, b, c) = (encode_char('a'), encode_char('b'), encode_char('c'));
        assert_eq!(g.c1[a as usize], 3);
        assert_eq!(g.c2[(ASSISTANT as usize) * VOCAB + a as usize], 3);
        assert_eq!(g.c2[a as usize * VOCAB + b as usize], 2);
        assert_eq!(
            g.c3[(a as usize * VOCAB + b as usize) * VOCAB + END as usize],
            2
        );

        let mut logits = [0i32; SAMPLEABLE];
        g.add_bias(Some(ASSISTANT), a, &mut logits);
        assert!(logits[b as usize] > logits[c as usize]);
        assert!(logits[c as usize] > logits[encode_char('z') as usize]);
        assert_eq!(logits[encode_char('z') as usize], 0);
        // ln(3)·6/4 + ln(3)·3/4 + ln(3)·1/4 in logit units.
        assert_eq!(logits[b as usize], (6 * 281 + 3 * 281 + 281) / 4);
    }
}
