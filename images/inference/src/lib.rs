//! `vouch-inference`: the reference inference workload of Vouch, a tiny deterministic
//! language model (`vouch-tiny-1`) whose every token can be re-derived on its own.
//!
//! # Layout
//!
//! - [`tokenizer`]: the 101-token character vocabulary and the chat prompt format.
//! - [`model`](mod@model): a 2-layer integer transformer over a sliding window of the last 32 tokens,
//!   with weights drawn from a fixed seed, plus [`ngram`]: a character trigram bias
//!   counted from the shipped `corpus.txt`. Only integer arithmetic, so the logits are
//!   bit-exact on every CPU.
//! - [`sample`]: greedy or temperature + top-p sampling, with a draw derived from
//!   `(seed, position)` only.
//! - [`generate`] runs the whole answer and records one 20-byte trace [`Leaf`] per token;
//!   [`step`] recomputes a single token from the prompt and the tokens before it. Because
//!   the next token depends only on the last 32 tokens and on `(seed, position)`, `step`
//!   costs one forward pass, which is what makes a one-token dispute (DESIGN "Disputes
//!   T2") cheap.
//! - [`cli`]: the workload's cold, warm (`serve`) and `step` modes; `main.rs` only
//!   dispatches to them. The I/O formats are documented in `images/README.md`.
//!
//! # Example
//!
//! ```
//! use vouch_inference::{canonical_response, generate, step, Message, Request, Role};
//!
//! let req = Request {
//!     max_tokens: 8,
//!     messages: vec![Message { role: Role::User, content: "Hello".into() }],
//!     model: vouch_inference::MODEL_NAME.into(),
//!     seed: 42,
//!     stop: vec![],
//!     temperature_milli: 800,
//!     top_p_milli: 900,
//! };
//! let gen = generate(&req)?;
//! let json = canonical_response(&req, &gen);
//! assert!(json.starts_with(r#"{"content":"#));
//! // Any single token can be recomputed from the ones before it.
//! let t = gen.tokens.len() - 1;
//! assert_eq!(step(&req, &gen.tokens[..t], t as u32)?, (gen.tokens[t], gen.leaves[t]));
//! # Ok::<(), vouch_inference::Error>(())
//! ```

use serde::{Deserialize, Serialize};

pub mod cli;
mod error;
pub mod fixed;
mod json;
pub mod model;
pub mod ngram;
pub mod sample;
pub mod tokenizer;

pub use error::Error;
use model::{Model, WINDOW};
use sample::Choice;
use tokenizer::{ASSISTANT, END, SAMPLEABLE, SYSTEM, USER};

/// The model's name (also the image's `vouch.model` label). Requests may name the model
/// as the node's configuration calls it; the response echoes the request's name, and the
/// image digest in the receipt is what identifies the model.
pub const MODEL_NAME: &str = "vouch-tiny-1";
/// A request's `model` is 1..=MAX_MODEL_BYTES bytes long.
pub const MAX_MODEL_BYTES: usize = 256;
/// Largest `max_tokens`.
pub const MAX_TOKENS: u32 = 4096;
/// Largest `temperature_milli` (temperature 2.0).
pub const MAX_TEMPERATURE_MILLI: u32 = 2000;
/// At most this many stop strings.
pub const MAX_STOPS: usize = 4;
/// A stop string is 1..=MAX_STOP_BYTES bytes long.
pub const MAX_STOP_BYTES: usize = 256;
/// Seeds are JSON-safe integers (`≤ 2^53 − 1`), so every JSON parser reads them exactly.
pub const MAX_SEED: u64 = (1 << 53) - 1;

/// Bytes of one trace leaf: position u32 BE ‖ token u32 BE ‖ draw u64 BE ‖ logit i32 BE.
pub const LEAF_LEN: usize = 20;
/// One trace leaf.
pub type Leaf = [u8; LEAF_LEN];

/// The author of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    /// The role marker token that opens a message.
    pub fn token(self) -> u32 {
        match self {
            Self::System => SYSTEM,
            Self::User => USER,
            Self::Assistant => ASSISTANT,
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// The workload's input. Every field is required and unknown fields are refused, so a
/// request has exactly one meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// 1..=4096 tokens to generate at most.
    pub max_tokens: u32,
    /// At least one message.
    pub messages: Vec<Message>,
    /// The model name the client asked for, echoed in the response (normally
    /// [`MODEL_NAME`]).
    pub model: String,
    /// Sampling seed, `≤ 2^53 − 1`; ignored when greedy.
    pub seed: u64,
    /// Up to 4 non-empty stop strings (each ≤ 256 bytes).
    pub stop: Vec<String>,
    /// Temperature in thousandths, 0..=2000; 0 is greedy.
    pub temperature_milli: u32,
    /// Nucleus mass in thousandths, 1..=1000.
    pub top_p_milli: u32,
}

impl Request {
    /// Parse and validate a request.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        let req: Self = serde_json::from_slice(bytes)?;
        req.validate()?;
        Ok(req)
    }

    /// Check every range; [`generate`] and [`step`] call this first.
    pub fn validate(&self) -> Result<(), Error> {
        if !(1..=MAX_TOKENS).contains(&self.max_tokens) {
            return Err(Error::field(
                "max_tokens",
                format!("must be in 1..={MAX_TOKENS}, got {}", self.max_tokens),
            ));
        }
        if self.messages.is_empty() {
            return Err(Error::field("messages", "must hold at least one message"));
        }
        if self.model.is_empty() || self.model.len() > MAX_MODEL_BYTES {
            return Err(Error::field(
                "model",
                format!(
                    "must be 1..={MAX_MODEL_BYTES} bytes long, got {}",
                    self.model.len()
                ),
            ));
        }
        if self.seed > MAX_SEED {
            return Err(Error::field(
                "seed",
                format!("must be at most 2^53-1 = {MAX_SEED}, got {}", self.seed),
            ));
        }
        if self.stop.len() > MAX_STOPS {
            return Err(Error::field(
                "stop",
                format!("holds at most {MAX_STOPS} strings, got {}", self.stop.len()),
            ));
        }
        for (i, s) in self.stop.iter().enumerate() {
            if s.is_empty() || s.len() > MAX_STOP_BYTES {
                return Err(Error::field(
                    "stop",
                    format!(
                        "strings must be 1..={MAX_STOP_BYTES} bytes long, stop[{i}] has {}",
                        s.len()
                    ),
                ));
            }
        }
        if self.temperature_milli > MAX_TEMPERATURE_MILLI {
            return Err(Error::field(
                "temperature_milli",
                format!(
                    "must be in 0..={MAX_TEMPERATURE_MILLI}, got {}",
                    self.temperature_milli
                ),
            ));
        }
        if !(1..=1000).contains(&self.top_p_milli) {
            return Err(Error::field(
                "top_p_milli",
                format!("must be in 1..=1000, got {}", self.top_p_milli),
            ));
        }
        Ok(())
    }

    /// The prompt: each message as its role marker followed by its characters, then a
    /// final `<assistant>` marker.
    pub fn prompt_tokens(&self) -> Vec<u32> {
        let len: usize = self.messages.iter().map(|m| m.content.len() + 1).sum();
        let mut out = Vec::with_capacity(len + 1);
        for m in &self.messages {
            out.push(m.role.token());
            tokenizer::encode_into(&m.content, &mut out);
        }
        out.push(ASSISTANT);
        out
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// `<end>` was sampled or a stop string completed.
    Stop,
    /// `max_tokens` tokens were generated.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// Token counts, as in the OpenAI API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Generated tokens, including a final `<end>`.
    pub completion_tokens: u64,
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// The generated text, without `<end>` and without a completed stop string.
    pub content: String,
    pub finish_reason: FinishReason,
    /// Every generated token id, including a final `<end>` and the tokens of a stop string.
    pub tokens: Vec<u32>,
    pub usage: Usage,
    /// One trace leaf per generated token.
    pub leaves: Vec<Leaf>,
}

/// The leaf bytes of one decision at `position`.
pub fn leaf(position: u32, choice: &Choice) -> Leaf {
    let mut out = [0u8; LEAF_LEN];
    out[0..4].copy_from_slice(&position.to_be_bytes());
    out[4..8].copy_from_slice(&choice.token.to_be_bytes());
    out[8..16].copy_from_slice(&choice.draw.to_be_bytes());
    out[16..20].copy_from_slice(&choice.logit.to_be_bytes());
    out
}

/// The decision at `position` given the whole sequence so far (prompt + generated tokens):
/// one forward pass over its last `WINDOW` tokens, then sampling.
fn next_token(req: &Request, seq: &[u32], position: u32) -> (u32, Leaf) {
    let window = &seq[seq.len().saturating_sub(WINDOW)..];
    let logits = Model::shared().logits(window);
    let choice = sample::choose(
        &logits,
        req.temperature_milli,
        req.top_p_milli,
        req.seed,
        position,
    );
    (choice.token, leaf(position, &choice))
}

/// The generated text, and whether a token ends the generation.
#[derive(Debug)]
struct Transcript<'a> {
    stops: &'a [String],
    text: String,
}

impl<'a> Transcript<'a> {
    fn new(stops: &'a [String]) -> Self {
        Self {
            stops,
            text: String::new(),
        }
    }

    /// Add a sampled token; true when generation stops here (`<end>`, or a stop string
    /// now ends the text, which is then cut off: OpenAI semantics). When several stop
    /// strings end here the longest is cut, i.e. the text ends before the earliest match.
    fn push(&mut self, token: u32) -> bool {
        let Some(c) = tokenizer::token_char(token) else {
            return true;
        };
        self.text.push(c);
        let cut = self
            .stops
            .iter()
            .filter(|s| self.text.ends_with(s.as_str()))
            .map(String::len)
            .max();
        match cut {
            Some(len) => {
                self.text.truncate(self.text.len() - len);
                true
            }
            None => false,
        }
    }
}

/// Run the whole generation.
pub fn generate(req: &Request) -> Result<Generation, Error> {
    req.validate()?;
    let mut seq = req.prompt_tokens();
    let prompt_tokens = seq.len() as u64;
    let capacity = req.max_tokens as usize;
    seq.reserve(capacity);
    let mut tokens = Vec::with_capacity(capacity);
    let mut leaves = Vec::with_capacity(capacity);
    let mut transcript = Transcript::new(&req.stop);
    let mut finish_reason = FinishReason::Length;
    for position in 0..req.max_tokens {
        let (token, leaf) = next_token(req, &seq, position);
        seq.push(token);
        tokens.push(token);
        leaves.push(leaf);
        if transcript.push(token) {
            finish_reason = FinishReason::Stop;
            break;
        }
    }
    let completion_tokens = tokens.len() as u64;
    Ok(Generation {
        content: transcript.text,
        finish_reason,
        tokens,
        usage: Usage {
            completion_tokens,
            prompt_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        },
        leaves,
    })
}

/// Recompute only the token at `position`, given the `prefix` of tokens generated before
/// it (`prefix.len() == position`): one forward pass and one sampling decision. Returns
/// the token and its leaf, equal to `generate(req)`'s `tokens[position]` and
/// `leaves[position]` whenever `prefix` is that generation's `tokens[..position]`.
///
/// Refuses states the generation cannot reach: a position at or past `max_tokens`, a
/// prefix holding a token that is never sampled, or one in which the generation has
/// already stopped (`<end>` or a completed stop string).
pub fn step(req: &Request, prefix: &[u32], position: u32) -> Result<(u32, Leaf), Error> {
    req.validate()?;
    if prefix.len() != position as usize {
        return Err(Error::Step(format!(
            "the prefix must hold exactly `position` = {position} tokens, it holds {}",
            prefix.len()
        )));
    }
    if position >= req.max_tokens {
        return Err(Error::Step(format!(
            "position {position} is past max_tokens = {}",
            req.max_tokens
        )));
    }
    let mut transcript = Transcript::new(&req.stop);
    for (i, &token) in prefix.iter().enumerate() {
        if token as usize >= SAMPLEABLE {
            return Err(Error::Step(format!(
                "prefix[{i}] = {token} is not a token the model can generate (ids 0..=96)"
            )));
        }
        if transcript.push(token) {
            let why = if token == END {
                "is <end>"
            } else {
                "completes a stop string"
            };
            return Err(Error::Step(format!(
                "prefix[{i}] {why}: generation stops there, so position {position} is never generated"
            )));
        }
    }
    let mut seq = req.prompt_tokens();
    let keep_prompt = WINDOW.saturating_sub(prefix.len());
    let seq_start = seq.len().saturating_sub(keep_prompt);
    seq.drain(..seq_start);
    seq.extend_from_slice(&prefix[prefix.len().saturating_sub(WINDOW)..]);
    Ok(next_token(req, &seq, position))
}

/// The cold-mode stdout: RFC 8785 canonical JSON of the response, no trailing newline.
pub fn canonical_response(req: &Request, gen: &Generation) -> String {
    let mut out = String::with_capacity(gen.content.len() + 6 * gen.tokens.len() + 160);
    out.push_str("{\"content\":");
    json::push_string(&mut out, &gen.content);
    out.push_str(",\"finish_reason\":\"");
    out.push_str(gen.finish_reason.as_str());
    out.push_str("\",\"model\":");
    json::push_string(&mut out, &req.model);
    out.push_str(",\"tokens\":[");
    for (i, t) in gen.tokens.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&t.to_string());
    }
    let u = &gen.usage;
    out.push_str(&format!(
        "],\"usage\":{{\"completion_tokens\":{},\"prompt_tokens\":{},\"total_tokens\":{}}}}}",
        u.completion_tokens, u.prompt_tokens, u.total_tokens
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(content: &str) -> Request {
        Request {
            max_tokens: 16,
            messages: vec![
                Message {
                    role: Role::System,
                    content: "Be brief.".into(),
                },
                Message {
                    role: Role::User,
                    content: content.into(),
                },
            ],
            model: MODEL_NAME.into(),
            seed: 1,
            stop: vec![],
            temperature_milli: 700,
            top_p_milli: 950,
        }
    }

    #[test]
    fn prompt_is_role_markers_and_characters() {
        let r = req("Hi\té");
        let p = r.prompt_tokens();
        let mut want = vec![SYSTEM];
        tokenizer::encode_into("Be brief.", &mut want);
        want.extend([
            USER,
            tokenizer::encode_char('H'),
            tokenizer::encode_char('i'),
        ]);
        want.extend([tokenizer::UNK, tokenizer::UNK, ASSISTANT]);
        assert_eq!(p, want);
        assert_eq!(p.len(), 1 + 9 + 1 + 4 + 1);
    }

    #[test]
    fn leaf_layout_is_big_endian() {
        let c = Choice {
            token: 0x0102_0304,
            draw: 0x1112_1314_1516_1718,
            logit: -2,
        };
        let l = leaf(7, &c);
        assert_eq!(
            fixed::to_hex(&l),
            "00000007_01020304_1112131415161718_fffffffe".replace('_', "")
        );
    }

    #[test]
    fn stop_strings_cut_the_longest_match() {
        let stops = vec!["b".to_string(), "ab".to_string(), "xyz".to_string()];
        let mut t = Transcript::new(&stops);
        for c in "xya".chars() {
            assert!(!t.push(tokenizer::encode_char(c)));
        }
        assert!(t.push(tokenizer::encode_char('b')));
        assert_eq!(t.text, "xy");
        let mut t = Transcript::new(&stops);
        assert!(t.push(END));
        assert_eq!(t.text, "");
    }

    #[test]
    fn canonical_response_is_exact() {
        let r = req("x");
        let gen = Generation {
            content: "a\"\n\u{1}".into(),
            finish_reason: FinishReason::Length,
            tokens: vec![67, 4, 1],
            usage: Usage {
                completion_tokens: 3,
                prompt_tokens: 14,
                total_tokens: 17,
            },
            leaves: vec![],
        };
        assert_eq!(
            canonical_response(&r, &gen),
            r#"{"content":"a\"\n\u0001","finish_reason":"length","model":"vouch-tiny-1","tokens":[67,4,1],"usage":{"completion_tokens":3,"prompt_tokens":14,"total_tokens":17}}"#
        );
    }

    #[test]
    fn step_refuses_unreachable_states() {
        let mut r = req("x");
        r.stop = vec!["zz".into()];
        let z = tokenizer::encode_char('z');
        let msg = |prefix: &[u32], position: u32| {
            step(&r, prefix, position)
                .expect_err("an unreachable state")
                .to_string()
        };
        assert!(msg(&[5], 0).contains("exactly"));
        assert!(msg(&[5; 16], 16).contains("max_tokens"));
        assert!(msg(&[5, 99], 2).contains("prefix[1] = 99"));
        assert!(msg(&[5, END, 5], 3).contains("<end>"));
        assert!(msg(&[z, z, 5], 3).contains("stop string"));
        assert!(step(&r, &[z, 5, z], 3).is_ok());
    }
}
