//! The character-level vocabulary.
//!
//! | id | token |
//! | --- | --- |
//! | 0 | `<end>` |
//! | 1 | `\n` |
//! | 2..=96 | printable ASCII `0x20..=0x7E` (id = byte − 0x1E) |
//! | 97 | `<unk>`: any other character of a prompt; never sampled |
//! | 98, 99, 100 | `<system>`, `<user>`, `<assistant>` role markers; never sampled |
//!
//! Only ids `0..SAMPLEABLE` (`<end>`, `\n`, printable ASCII) can be generated.

/// End of the answer; sampling it ends generation with `finish_reason: "stop"`.
pub const END: u32 = 0;
/// The newline character.
pub const NEWLINE: u32 = 1;
/// Any prompt character outside `\n` and printable ASCII.
pub const UNK: u32 = 97;
/// Role marker opening a system message.
pub const SYSTEM: u32 = 98;
/// Role marker opening a user message.
pub const USER: u32 = 99;
/// Role marker opening an assistant message; the prompt always ends with one.
pub const ASSISTANT: u32 = 100;
/// Number of token ids.
pub const VOCAB: usize = 101;
/// Ids `0..SAMPLEABLE` are the only ones the sampler may choose.
pub const SAMPLEABLE: usize = 97;

/// The token of one prompt character.
pub fn encode_char(c: char) -> u32 {
    match c {
        '\n' => NEWLINE,
        ' '..='~' => u32::from(c) - 0x1e,
        _ => UNK,
    }
}

/// Append the tokens of `text` to `out`.
pub fn encode_into(text: &str, out: &mut Vec<u32>) {
    out.extend(text.chars().map(encode_char));
}

/// The character a generated token stands for; `None` for `<end>` and the special tokens.
pub fn token_char(token: u32) -> Option<char> {
    match token {
        NEWLINE => Some('\n'),
        2..=96 => char::from_u32(token + 0x1e),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_ascii_round_trips_and_others_are_unknown() {
        for b in 0x20u8..=0x7e {
            let c = char::from(b);
            let t = encode_char(c);
            assert!((2..=96).contains(&t), "{c:?} -> {t}");
            assert_eq!(token_char(t), Some(c));
        }
        assert_eq!(encode_char(' '), 2);
        assert_eq!(encode_char('~'), 96);
        assert_eq!(encode_char('\n'), NEWLINE);
        assert_eq!(token_char(NEWLINE), Some('\n'));
        for c in ['\t', '\r', '\u{7f}', 'é', '€', '\u{0}'] {
            assert_eq!(encode_char(c), UNK, "{c:?}");
        }
        for t in [END, UNK, SYSTEM, USER, ASSISTANT, 101, u32::MAX] {
            assert_eq!(token_char(t), None, "{t}");
        }
    }
}
