//! The `vouch-infer` binary: cold, warm (`serve`) and `step` modes as separate processes,
//! checked against each other byte for byte.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_vouch-infer");

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vouch-infer");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait for vouch-infer")
}

const SAMPLED: &str = r#"{"max_tokens":48,"messages":[{"role":"system","content":"Answer in \"plain\" English.\n"},{"role":"user","content":"What is a network? \u00e9\t"}],"model":"vouch-tiny-1","seed":77,"stop":[],"temperature_milli":900,"top_p_milli":950}"#;
const GREEDY_WITH_STOP: &str = r#"{"max_tokens":40,"messages":[{"role":"user","content":"Hi"}],"model":"vouch-tiny-1","seed":0,"stop":["and and"],"temperature_milli":0,"top_p_milli":1000}"#;
const BAD: &str = r#"{"max_tokens":0,"messages":[],"model":"vouch-tiny-1","seed":0,"stop":[],"temperature_milli":0,"top_p_milli":1000}"#;

/// Cold mode's stdout and its trace lines (the leaf hex of each `vouch-trace` line).
fn cold(request: &str) -> (String, Vec<String>) {
    let out = run(&[], request.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 stdout");
    let stderr = String::from_utf8(out.stderr).expect("UTF-8 stderr");
    let trace = stderr
        .lines()
        .map(|l| {
            let hex = l.strip_prefix("vouch-trace ").expect("only trace lines");
            assert_eq!(hex.len(), 40);
            hex.to_string()
        })
        .collect();
    (stdout, trace)
}

#[test]
fn serve_answers_like_cold_mode_byte_for_byte() {
    let mut child = Command::new(BIN)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vouch-infer serve");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));

    // Requests go one at a time: each answer arrives before the next request is sent.
    let mut answers = Vec::new();
    for request in [SAMPLED, BAD, GREEDY_WITH_STOP] {
        stdin
            .write_all(format!("{request}\n").as_bytes())
            .expect("write request");
        stdin.flush().expect("flush");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read answer");
        assert!(line.ends_with('\n'));
        answers.push(line);
    }
    drop(stdin);
    let status = child.wait().expect("serve exits at EOF");
    assert!(status.success());

    for (request, answer) in [(SAMPLED, &answers[0]), (GREEDY_WITH_STOP, &answers[2])] {
        let v: serde_json::Value = serde_json::from_str(answer).expect("JSON answer");
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["output", "trace"]);
        let (cold_stdout, cold_trace) = cold(request);
        assert_eq!(v["output"].as_str(), Some(cold_stdout.as_str()));
        let trace: Vec<&str> = v["trace"]
            .as_array()
            .expect("trace array")
            .iter()
            .filter_map(|t| t.as_str())
            .collect();
        assert_eq!(trace, cold_trace);
        assert!(!cold_trace.is_empty());
        // The line itself is canonical: compact, keys sorted.
        assert_eq!(
            format!("{}\n", serde_json::to_string(&v).expect("JSON")),
            *answer
        );
    }
    let out: serde_json::Value = serde_json::from_str(
        serde_json::from_str::<serde_json::Value>(&answers[2]).expect("JSON")["output"]
            .as_str()
            .expect("string"),
    )
    .expect("JSON output");
    assert_eq!(
        out["finish_reason"], "stop",
        "the greedy text loops on 'and and'"
    );

    let err: serde_json::Value = serde_json::from_str(&answers[1]).expect("JSON error");
    assert_eq!(
        err,
        serde_json::json!({"error": "invalid request: max_tokens must be in 1..=4096, got 0"})
    );
}

#[test]
fn cold_mode_rejects_bad_input_with_exit_2() {
    let bad = SAMPLED.replace(r#""seed":77,"#, r#""seed":77,"logprobs":true,"#);
    let out = run(&[], bad.as_bytes());
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).expect("UTF-8");
    assert!(
        stderr.starts_with("vouch-infer: invalid request JSON: unknown field `logprobs`"),
        "{stderr}"
    );

    let out = run(&["bogus"], b"");
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn step_mode_recomputes_one_token() {
    let (stdout, trace) = cold(SAMPLED);
    let response: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let tokens: Vec<u64> = response["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter_map(|t| t.as_u64())
        .collect();
    for t in [0, 1, tokens.len() / 2, tokens.len() - 1] {
        let input = format!(
            r#"{{"position":{t},"prefix":{:?},"request":{SAMPLED}}}"#,
            &tokens[..t]
        );
        let out = run(&["step"], input.as_bytes());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stderr.is_empty());
        assert_eq!(
            String::from_utf8(out.stdout).expect("UTF-8"),
            format!(r#"{{"leaf":"{}","token":{}}}"#, trace[t], tokens[t])
        );
    }
    // A prefix that does not match the position is refused.
    let input = format!(r#"{{"position":3,"prefix":[5],"request":{SAMPLED}}}"#);
    let out = run(&["step"], input.as_bytes());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("vouch-infer: invalid step:"));
}
