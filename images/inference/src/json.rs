//! The few RFC 8785 (JCS) writers the workload needs. Responses are written by hand, keys
//! in sorted order, so the bytes never depend on `serde_json`'s map implementation.

/// Append `s` as an RFC 8785 string: `"` and `\` escaped, `\b \t \n \f \r` in short form,
/// other control characters as `\u00xx` (lowercase hex), everything else as raw UTF-8.
pub fn push_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{0c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if u32::from(c) < 0x20 => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                let b = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(DIGITS[b >> 4]));
                out.push(char::from(DIGITS[b & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as an RFC 8785 string.
#[cfg(test)]
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_string(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::string;

    #[test]
    fn escapes_like_rfc8785() {
        assert_eq!(string("plain"), r#""plain""#);
        assert_eq!(string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(string("\u{8}\t\n\u{c}\r"), r#""\b\t\n\f\r""#);
        assert_eq!(string("\u{0}\u{1}\u{1f}"), r#""\u0000\u0001\u001f""#);
        // DEL, non-ASCII, U+2028 and '/' are not escaped.
        assert_eq!(string("\u{7f}é€\u{2028}/"), "\"\u{7f}é€\u{2028}/\"");
    }

    #[test]
    fn round_trips_through_serde_json() {
        let nasty: String = (0u32..0x80)
            .filter_map(char::from_u32)
            .chain("é€😀".chars())
            .collect();
        let parsed: String = serde_json::from_str(&string(&nasty)).expect("valid JSON");
        assert_eq!(parsed, nasty);
    }
}
