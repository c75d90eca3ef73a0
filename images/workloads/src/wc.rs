//! `vouch-wc`: byte / line / word counts plus the SHA-256 of the input.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The result line printed by `vouch-wc`. Field order is the output order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub bytes: u64,
    pub lines: u64,
    pub words: u64,
    pub sha256: String,
}

/// Whitespace as C's `isspace` in the "C" locale: space, `\t`, `\n`, `\v`,
/// `\f`, `\r`. Every other byte (including non-ASCII ones) is a word byte, so
/// the word count matches `LC_ALL=C wc -w`.
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Count `input`: `lines` is the number of `\n` bytes, `words` the number of
/// maximal runs of non-whitespace bytes.
pub fn count(input: &[u8]) -> Counts {
    let mut lines = 0u64;
    let mut words = 0u64;
    let mut in_word = false;
    for &b in input {
        if b == b'\n' {
            lines += 1;
        }
        if is_space(b) {
            in_word = false;
        } else if !in_word {
            in_word = true;
            words += 1;
        }
    }
    Counts {
        bytes: input.len() as u64,
        lines,
        words,
        sha256: crate::to_hex(&Sha256::digest(input)),
    }
}

impl Counts {
    /// Compact JSON followed by a single `\n`: the exact stdout of `vouch-wc`.
    pub fn to_json_line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| {
            // Serializing four plain fields cannot fail; keep a fallback anyway.
            format!(
                "{{\"bytes\":{},\"lines\":{},\"words\":{},\"sha256\":\"{}\"}}",
                self.bytes, self.lines, self.words, self.sha256
            )
        });
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn empty_input() {
        let c = count(b"");
        assert_eq!((c.bytes, c.lines, c.words), (0, 0, 0));
        assert_eq!(c.sha256, EMPTY_SHA256);
    }

    #[test]
    fn hello_world_line() {
        let c = count(b"hello world\n");
        assert_eq!((c.bytes, c.lines, c.words), (12, 1, 2));
        assert_eq!(
            c.sha256,
            "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"
        );
        assert_eq!(
            c.to_json_line(),
            "{\"bytes\":12,\"lines\":1,\"words\":2,\"sha256\":\
             \"a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447\"}\n"
        );
    }

    #[test]
    fn no_trailing_newline_and_runs_of_whitespace() {
        let c = count(b"  one\t\ttwo \r\n\n three");
        assert_eq!((c.bytes, c.lines, c.words), (20, 2, 3));
    }

    #[test]
    fn all_c_whitespace_separates_words() {
        let c = count(b"a b\tc\nd\x0be\x0cf\rg");
        assert_eq!(c.words, 7);
        assert_eq!(c.lines, 1);
    }

    #[test]
    fn non_ascii_and_nul_bytes_are_word_bytes() {
        let c = count("héllo wörld\0x".as_bytes());
        assert_eq!(c.words, 2);
        assert_eq!(c.bytes, 15);
        let c = count(&[0xff, 0xfe, b' ', 0x00]);
        assert_eq!(c.words, 2);
    }

    #[test]
    fn only_whitespace() {
        let c = count(b" \n\n\t ");
        assert_eq!((c.bytes, c.lines, c.words), (5, 2, 0));
    }

    #[test]
    fn json_field_order_is_fixed() {
        let line = count(b"x").to_json_line();
        let b = line.find("\"bytes\"").unwrap_or(usize::MAX);
        let l = line.find("\"lines\"").unwrap_or(usize::MAX);
        let w = line.find("\"words\"").unwrap_or(usize::MAX);
        let s = line.find("\"sha256\"").unwrap_or(usize::MAX);
        assert!(b < l && l < w && w < s && s != usize::MAX, "{line}");
        assert!(line.ends_with("}\n") && !line[..line.len() - 1].contains('\n'));
    }
}
