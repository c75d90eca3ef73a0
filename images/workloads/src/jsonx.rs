//! `vouch-jsonx`: small deterministic JSON transforms.
//!
//! Output never depends on serde_json's map implementation (which a
//! workspace-wide `preserve_order` feature could change): object keys are
//! always sorted explicitly, bytewise, by [`canonical`].

use serde_json::Value;

/// Exit code: the input is not a single valid JSON document.
pub const EXIT_INVALID_JSON: i32 = 2;
/// Exit code: the requested path (or a top-level object for `keys`) is absent.
pub const EXIT_ABSENT: i32 = 4;
/// Exit code: bad command line (sysexits `EX_USAGE`).
pub const EXIT_USAGE: i32 = 64;

pub const USAGE: &str = r#"usage: vouch-jsonx [canonical | pick <dot.path> | keys] < input.json
  canonical          print the document compact with object keys sorted (default)
  pick <dot.path>    print the value at the path, e.g. items.0.name (exit 4 if absent)
  keys               print the sorted keys of the top-level object as a JSON array
exit codes: 0 ok, 1 read error, 2 invalid JSON, 4 absent, 64 usage
"#;

/// The operation selected on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Canonical,
    Pick(String),
    Keys,
}

/// Parse the arguments after the program name.
pub fn parse_args(args: &[String]) -> Result<Op, String> {
    match args {
        [] => Ok(Op::Canonical),
        [op] if op == "canonical" => Ok(Op::Canonical),
        [op] if op == "keys" => Ok(Op::Keys),
        [op, path] if op == "pick" => Ok(Op::Pick(path.clone())),
        [op] if op == "pick" => Err("pick needs a <dot.path> argument".to_string()),
        [op, ..] if op == "canonical" || op == "keys" || op == "pick" => {
            Err(format!("too many arguments for {op}"))
        }
        [op, ..] => Err(format!("unknown operation {op:?}")),
    }
}

/// A failed transform: what to print on stderr and which code to exit with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

/// Run `op` on the raw stdin bytes; on success returns the full stdout
/// (one line, terminated by `\n`).
pub fn run(op: &Op, input: &[u8]) -> Result<String, Failure> {
    let doc: Value = serde_json::from_slice(input).map_err(|e| Failure {
        code: EXIT_INVALID_JSON,
        message: format!("vouch-jsonx: invalid JSON input: {e}"),
    })?;
    let mut out = match op {
        Op::Canonical => canonical(&doc),
        Op::Pick(path) => match pick(&doc, path) {
            Some(v) => canonical(v),
            None => {
                return Err(Failure {
                    code: EXIT_ABSENT,
                    message: format!("vouch-jsonx: path {path:?} not found"),
                })
            }
        },
        Op::Keys => match keys(&doc) {
            Some(k) => canonical(&Value::from(k)),
            None => {
                return Err(Failure {
                    code: EXIT_ABSENT,
                    message: "vouch-jsonx: keys: the top-level value is not an object".to_string(),
                })
            }
        },
    };
    out.push('\n');
    Ok(out)
}

/// Compact JSON with every object's keys sorted bytewise (recursively).
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        // Display for Value is compact JSON; for scalars that is all we need.
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            out.push_str(&v.to_string());
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (k, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

/// Look up a dot-separated path. Segments index objects by key and arrays by
/// a decimal index (ASCII digits only). The empty path is the whole document.
/// Keys that themselves contain `.` cannot be addressed.
pub fn pick<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(doc);
    }
    let mut cur = doc;
    for seg in path.split('.') {
        cur = match cur {
            Value::Object(map) => map.get(seg)?,
            Value::Array(items) => {
                if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                items.get(seg.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(cur)
}

/// The top-level object's keys, sorted bytewise; `None` if not an object.
pub fn keys(doc: &Value) -> Option<Vec<String>> {
    let map = doc.as_object()?;
    let mut k: Vec<String> = map.keys().cloned().collect();
    k.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn ok(op: &Op, input: &str) -> String {
        match run(op, input.as_bytes()) {
            Ok(s) => s,
            Err(f) => panic!("unexpected failure {f:?}"),
        }
    }

    fn fail(op: &Op, input: &str) -> Failure {
        match run(op, input.as_bytes()) {
            Ok(s) => panic!("unexpected success {s:?}"),
            Err(f) => f,
        }
    }

    #[test]
    fn parses_args() {
        assert_eq!(parse_args(&args(&[])), Ok(Op::Canonical));
        assert_eq!(parse_args(&args(&["canonical"])), Ok(Op::Canonical));
        assert_eq!(parse_args(&args(&["keys"])), Ok(Op::Keys));
        assert_eq!(
            parse_args(&args(&["pick", "a.0.b"])),
            Ok(Op::Pick("a.0.b".into()))
        );
        assert!(parse_args(&args(&["pick"])).is_err());
        assert!(parse_args(&args(&["keys", "x"])).is_err());
        assert!(parse_args(&args(&["frobnicate"])).is_err());
    }

    #[test]
    fn canonical_sorts_keys_recursively_and_is_compact() {
        let input = r#" { "b" : 1, "a" : { "z" : [ 3, { "y": null, "x": true } ], "c": "s" } } "#;
        assert_eq!(
            ok(&Op::Canonical, input),
            "{\"a\":{\"c\":\"s\",\"z\":[3,{\"x\":true,\"y\":null}]},\"b\":1}\n"
        );
    }

    #[test]
    fn canonical_sorts_bytewise() {
        // 'B' (0x42) < '_' (0x5f) < 'a' (0x61) < 'é' (0xc3 0xa9)
        let input = r#"{"é":1,"a":2,"_":3,"B":4,"aa":5}"#;
        assert_eq!(
            ok(&Op::Canonical, input),
            "{\"B\":4,\"_\":3,\"a\":2,\"aa\":5,\"é\":1}\n"
        );
    }

    #[test]
    fn canonical_is_idempotent_and_keeps_scalars() {
        let input = r#"{"s":"quote \" and \\ and \n and \u0001","n":-1.5e3,"i":18446744073709551615,"f":0.1,"e":[],"o":{}}"#;
        let once = ok(&Op::Canonical, input);
        let twice = ok(&Op::Canonical, once.trim_end());
        assert_eq!(once, twice);
        assert!(once.contains("\"e\":[]"));
        assert!(once.contains("\"o\":{}"));
        assert!(once.contains("18446744073709551615"));
        assert!(once.contains(r#""quote \" and \\ and \n and \u0001""#));
    }

    #[test]
    fn canonical_scalar_documents() {
        assert_eq!(ok(&Op::Canonical, " 42 "), "42\n");
        assert_eq!(ok(&Op::Canonical, "\"x\""), "\"x\"\n");
        assert_eq!(ok(&Op::Canonical, "null"), "null\n");
    }

    #[test]
    fn pick_paths() {
        let doc = r#"{"items":[{"name":"a","tags":{"z":1,"y":2}},{"name":"b"}],"n":{"0":"zero"}}"#;
        assert_eq!(ok(&Op::Pick("items.0.name".into()), doc), "\"a\"\n");
        assert_eq!(ok(&Op::Pick("items.1".into()), doc), "{\"name\":\"b\"}\n");
        assert_eq!(
            ok(&Op::Pick("items.0.tags".into()), doc),
            "{\"y\":2,\"z\":1}\n"
        );
        // numeric segment on an object is a key lookup
        assert_eq!(ok(&Op::Pick("n.0".into()), doc), "\"zero\"\n");
        // empty path = whole document, canonicalised
        assert!(ok(&Op::Pick(String::new()), doc).starts_with("{\"items\":"));
    }

    #[test]
    fn pick_absent() {
        let doc = r#"{"items":[1,2],"s":"str"}"#;
        for path in [
            "missing",
            "items.2",
            "items.x",
            "items.-1",
            "items.+1",
            "items.",
            "s.0",
            "items.0.a",
        ] {
            let f = fail(&Op::Pick(path.into()), doc);
            assert_eq!(f.code, EXIT_ABSENT, "{path}");
            assert!(f.message.contains("not found"), "{path}");
        }
    }

    #[test]
    fn keys_sorted() {
        assert_eq!(
            ok(&Op::Keys, r#"{"b":1,"a":{"z":0},"c":[]}"#),
            "[\"a\",\"b\",\"c\"]\n"
        );
        assert_eq!(ok(&Op::Keys, "{}"), "[]\n");
        assert_eq!(fail(&Op::Keys, "[1]").code, EXIT_ABSENT);
    }

    #[test]
    fn invalid_json() {
        for input in ["", "{", "{\"a\":1} trailing", "[1,]", "nul", "{'a':1}"] {
            let f = fail(&Op::Canonical, input);
            assert_eq!(f.code, EXIT_INVALID_JSON, "{input:?}");
            assert!(f.message.starts_with("vouch-jsonx: invalid JSON input"));
        }
        // invalid UTF-8
        let f = match run(&Op::Keys, b"{\"\xff\":1}") {
            Ok(s) => panic!("unexpected success {s:?}"),
            Err(f) => f,
        };
        assert_eq!(f.code, EXIT_INVALID_JSON);
    }
}
