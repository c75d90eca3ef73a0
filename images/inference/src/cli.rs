//! The workload's modes, free of process handling so they can be tested in memory:
//!
//! - cold (no arguments): one request on stdin; the canonical response on stdout (no
//!   trailing newline), one `vouch-trace <leaf hex>` line per token on stderr.
//! - `serve` (warm): one request per line; one JSON line back per request line.
//! - `step`: recompute one token for a one-token dispute.
//!
//! The exact formats are in `images/README.md`.

use std::io::{self, BufRead, Read, Write};

use serde::Deserialize;

use crate::fixed::to_hex;
use crate::{canonical_response, generate, json, step, Error, Generation, Request};

/// Exit code: reading stdin or writing stdout/stderr failed.
pub const EXIT_IO: i32 = 1;
/// Exit code: the input was refused (message on stderr).
pub const EXIT_INVALID: i32 = 2;
/// Exit code: bad command line (sysexits `EX_USAGE`).
pub const EXIT_USAGE: i32 = 64;

/// Every trace line starts with this; no diagnostic does.
pub const TRACE_PREFIX: &str = "vouch-trace ";

/// Longest request line `serve` accepts; longer lines are answered with an error and
/// skipped without being buffered.
pub const MAX_LINE_BYTES: usize = 16 << 20;

pub const USAGE: &str = "usage: vouch-infer [serve | step]
  (no argument)  read one request (JSON) on stdin, print the response on stdout
                 and one `vouch-trace <leaf hex>` line per token on stderr
  serve          read one request per line until EOF, answer each with one line:
                 {\"output\":\"<cold-mode stdout>\",\"trace\":[\"<leaf hex>\",...]}
  step           read {\"request\":{..},\"prefix\":[ids],\"position\":t} and print
                 {\"leaf\":\"<hex>\",\"token\":id} for token t alone
exit codes: 0 ok, 1 I/O error, 2 invalid input, 64 usage
";

/// The mode selected on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Cold,
    Serve,
    Step,
}

/// Parse the arguments after the program name.
pub fn parse_args(args: &[String]) -> Result<Mode, String> {
    match args {
        [] => Ok(Mode::Cold),
        [a] if a == "serve" => Ok(Mode::Serve),
        [a] if a == "step" => Ok(Mode::Step),
        [a, ..] if a == "serve" || a == "step" => Err(format!("{a} takes no arguments")),
        [a, ..] => Err(format!("unknown mode {a:?}")),
    }
}

/// Run `mode` on the process's standard streams; returns the exit code.
pub fn run(mode: Mode) -> i32 {
    let stdin = io::stdin();
    let stdout = io::stdout();
    let stderr = io::stderr();
    if mode == Mode::Serve {
        return match serve(&mut stdin.lock(), &mut stdout.lock()) {
            Ok(()) => 0,
            Err(e) => {
                let _ = writeln!(stderr.lock(), "vouch-infer: serve: {e}");
                EXIT_IO
            }
        };
    }
    let mut input = Vec::new();
    if let Err(e) = stdin.lock().read_to_end(&mut input) {
        let _ = writeln!(stderr.lock(), "vouch-infer: reading stdin: {e}");
        return EXIT_IO;
    }
    match mode {
        Mode::Step => step_mode(&input, &mut stdout.lock(), &mut stderr.lock()),
        _ => cold(&input, &mut stdout.lock(), &mut stderr.lock()),
    }
}

/// The trace lines of a generation, as cold mode writes them to stderr.
pub fn trace_lines(gen: &Generation) -> String {
    let mut out = String::with_capacity(gen.leaves.len() * (TRACE_PREFIX.len() + 41));
    for leaf in &gen.leaves {
        out.push_str(TRACE_PREFIX);
        out.push_str(&to_hex(leaf));
        out.push('\n');
    }
    out
}

fn report(stderr: &mut dyn Write, e: &Error) -> i32 {
    match writeln!(stderr, "vouch-infer: {e}") {
        Ok(()) => EXIT_INVALID,
        Err(_) => EXIT_IO,
    }
}

/// Cold mode: the response on `stdout`, the trace on `stderr`; returns the exit code.
pub fn cold(input: &[u8], stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32 {
    let result = Request::from_json(input).and_then(|req| generate(&req).map(|gen| (req, gen)));
    let (req, gen) = match result {
        Ok(ok) => ok,
        Err(e) => return report(stderr, &e),
    };
    let written = stderr
        .write_all(trace_lines(&gen).as_bytes())
        .and_then(|()| stderr.flush())
        .and_then(|()| stdout.write_all(canonical_response(&req, &gen).as_bytes()))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(stderr, "vouch-infer: writing the response: {e}");
            EXIT_IO
        }
    }
}

/// The input of `step` mode.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepInput {
    request: Request,
    prefix: Vec<u32>,
    position: u32,
}

/// What step mode prints for a step input: `{"leaf":"<hex>","token":id}`.
fn step_output(input: &StepInput) -> Result<String, Error> {
    let (token, leaf) = step(&input.request, &input.prefix, input.position)?;
    Ok(format!(
        "{{\"leaf\":\"{}\",\"token\":{token}}}",
        to_hex(&leaf)
    ))
}

/// Step mode: `{"leaf":"<hex>","token":id}` on `stdout`; returns the exit code.
pub fn step_mode(input: &[u8], stdout: &mut dyn Write, stderr: &mut dyn Write) -> i32 {
    let result = serde_json::from_slice::<StepInput>(input)
        .map_err(Error::from)
        .and_then(|s| step_output(&s));
    let out = match result {
        Ok(ok) => ok,
        Err(e) => return report(stderr, &e),
    };
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(stderr, "vouch-infer: writing the response: {e}");
            EXIT_IO
        }
    }
}

/// The warm-mode answer to one request line (without the newline). A step input (an
/// object with `request`, `prefix` and `position`) gets what step mode would print as its
/// `output` and no trace, so a verifier can keep one container warm for one-token
/// disputes.
pub fn serve_line(line: &[u8]) -> String {
    if let Ok(s) = serde_json::from_slice::<StepInput>(line) {
        return match step_output(&s) {
            Ok(output) => {
                let mut out = String::from("{\"output\":");
                json::push_string(&mut out, &output);
                out.push_str(",\"trace\":[]}");
                out
            }
            Err(e) => error_line(&e.to_string()),
        };
    }
    let result = Request::from_json(line).and_then(|req| generate(&req).map(|gen| (req, gen)));
    match result {
        Ok((req, gen)) => {
            let output = canonical_response(&req, &gen);
            let mut out = String::with_capacity(output.len() * 2 + gen.leaves.len() * 43 + 32);
            out.push_str("{\"output\":");
            json::push_string(&mut out, &output);
            out.push_str(",\"trace\":[");
            for (i, leaf) in gen.leaves.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(&to_hex(leaf));
                out.push('"');
            }
            out.push_str("]}");
            out
        }
        Err(e) => error_line(&e.to_string()),
    }
}

fn error_line(msg: &str) -> String {
    let mut out = String::from("{\"error\":");
    json::push_string(&mut out, msg);
    out.push('}');
    out
}

/// One line read by [`read_line`].
enum Line {
    Eof,
    /// A complete line, without its `\n`.
    Complete,
    /// Longer than [`MAX_LINE_BYTES`]; the rest of it has been skipped.
    TooLong,
}

fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    let limit = MAX_LINE_BYTES as u64 + 1;
    let n = input.by_ref().take(limit).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Line::Complete);
    }
    if buf.len() <= MAX_LINE_BYTES {
        return Ok(Line::Complete); // the last line, without a newline
    }
    buf.clear();
    loop {
        let (found, used) = {
            let available = input.fill_buf()?;
            if available.is_empty() {
                (true, 0)
            } else {
                match available.iter().position(|&b| b == b'\n') {
                    Some(i) => (true, i + 1),
                    None => (false, available.len()),
                }
            }
        };
        input.consume(used);
        if found {
            return Ok(Line::TooLong);
        }
    }
}

/// Warm mode: answer every line of `input` with one line on `output`, until EOF. Bad
/// requests get `{"error":"..."}` and serving goes on; only I/O errors end it.
pub fn serve(input: &mut impl BufRead, output: &mut impl Write) -> io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let mut answer = match read_line(input, &mut buf)? {
            Line::Eof => return Ok(()),
            Line::Complete => serve_line(&buf),
            Line::TooLong => error_line(&format!(
                "invalid request: the line is longer than {MAX_LINE_BYTES} bytes"
            )),
        };
        answer.push('\n');
        output.write_all(answer.as_bytes())?;
        output.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_select_the_mode() {
        let args = |a: &[&str]| parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(args(&[]), Ok(Mode::Cold));
        assert_eq!(args(&["serve"]), Ok(Mode::Serve));
        assert_eq!(args(&["step"]), Ok(Mode::Step));
        assert!(args(&["serve", "x"]).is_err());
        assert!(args(&["--help"]).is_err());
    }

    #[test]
    fn serve_answers_a_step_line_with_what_step_mode_prints() {
        let req = r#"{"max_tokens":64,"messages":[{"role":"user","content":"What is a receipt?"}],"model":"vouch-tiny-1","seed":42,"stop":[],"temperature_milli":800,"top_p_milli":900}"#;
        for (prefix, position) in [("[]", 0), ("[54,74]", 2)] {
            let line = format!(r#"{{"request":{req},"prefix":{prefix},"position":{position}}}"#);
            let (mut cold, mut err) = (Vec::new(), Vec::new());
            assert_eq!(step_mode(line.as_bytes(), &mut cold, &mut err), 0);
            let warm: serde_json::Value =
                serde_json::from_str(&serve_line(line.as_bytes())).expect("JSON line");
            assert_eq!(warm["output"].as_str().map(str::as_bytes), Some(&cold[..]));
            assert_eq!(warm["trace"], serde_json::json!([]));
        }
        // A state the generation cannot reach is an error line, as step mode exits 2.
        let bad = format!(r#"{{"request":{req},"prefix":[],"position":64}}"#);
        assert!(serve_line(bad.as_bytes()).starts_with("{\"error\":"));
    }

    #[test]
    fn serve_answers_every_line_and_skips_overlong_ones() {
        let mut input = Vec::new();
        input.extend_from_slice(b"{\"nope\":1}\n");
        input.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 10));
        input.extend_from_slice(b"\n\n");
        input.extend_from_slice(b"[]");
        let mut out = Vec::new();
        serve(&mut io::Cursor::new(input), &mut out).expect("in-memory I/O");
        let text = String::from_utf8(out).expect("UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("{\"error\":\"invalid request JSON: unknown field `nope`"));
        assert!(lines[1].contains("longer than"));
        assert!(lines[2].contains("EOF while parsing"));
        assert!(lines[3].starts_with("{\"error\":"));
    }

    #[test]
    fn cold_reports_bad_input_on_stderr_with_exit_2() {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(cold(b"{}", &mut out, &mut err), EXIT_INVALID);
        assert!(out.is_empty());
        let err = String::from_utf8(err).expect("UTF-8");
        assert!(
            err.starts_with("vouch-infer: invalid request JSON: missing field"),
            "{err}"
        );
        assert!(!err.starts_with(TRACE_PREFIX));
    }
}
