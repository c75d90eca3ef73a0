//! RFC 8785 (JSON Canonicalization Scheme) for the subset of JSON that Vouch signs:
//! objects, arrays, strings, booleans, null and integers in `0..=2^53-1`.
//!
//! This writer does not rely on how `serde_json` orders map keys (that depends on a cargo
//! feature another crate may switch on), so the bytes are the same in every build.

use serde_json::Value;

use crate::ProtoError;

/// The largest integer that IEEE-754 doubles represent exactly; RFC 8785 serializes numbers
/// as doubles, so larger integers are refused rather than silently rounded.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Canonical bytes of `value`.
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>, ProtoError> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), ProtoError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => match n.as_u64() {
            Some(u) if u <= MAX_SAFE_INTEGER => out.extend_from_slice(u.to_string().as_bytes()),
            _ => {
                return Err(ProtoError::Canonical(format!(
                    "number {n} is not an integer in 0..=2^53-1; encode it as a decimal string"
                )))
            }
        },
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // RFC 8785 §3.2.3: members sorted by their names as arrays of UTF-16 code units.
            let mut keys: Vec<(&String, Vec<u16>)> = map
                .keys()
                .map(|k| (k, k.encode_utf16().collect()))
                .collect();
            keys.sort_by(|a, b| a.1.cmp(&b.1));
            out.push(b'{');
            for (i, (k, _)) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                // The key came from this map, so the lookup cannot miss.
                if let Some(v) = map.get(*k) {
                    write_value(v, out)?;
                }
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// RFC 8785 §3.2.2.2: escape `"` and `\`, use the short escapes for \b \t \n \f \r,
/// `\u00xx` (lowercase hex) for the other control characters, and emit everything else as
/// UTF-8 unchanged.
fn write_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{08}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{0c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(v: Value) -> String {
        String::from_utf8(to_canonical_bytes(&v).unwrap()).unwrap()
    }

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        assert_eq!(
            canon(json!({"b": 1, "a": [true, null, "x"]})),
            r#"{"a":[true,null,"x"],"b":1}"#
        );
    }

    #[test]
    fn escapes_like_rfc8785() {
        assert_eq!(
            canon(json!("\u{0}\u{1f}\"\\\n/é€😀\u{7f}")),
            "\"\\u0000\\u001f\\\"\\\\\\n/é€😀\u{7f}\""
        );
    }

    #[test]
    fn sorts_by_utf16_code_units_not_bytes() {
        // U+FF61 sorts before U+1F600 in UTF-8 byte order, but after it in UTF-16
        // (the emoji is a surrogate pair starting 0xD83D).
        assert_eq!(
            canon(json!({"\u{ff61}": 1, "\u{1f600}": 2})),
            "{\"😀\":2,\"｡\":1}"
        );
    }

    #[test]
    fn refuses_numbers_it_cannot_represent_exactly() {
        assert!(to_canonical_bytes(&json!(1.5)).is_err());
        assert!(to_canonical_bytes(&json!(-1)).is_err());
        assert!(to_canonical_bytes(&json!(MAX_SAFE_INTEGER + 1)).is_err());
        assert_eq!(canon(json!(MAX_SAFE_INTEGER)), "9007199254740991");
    }
}
