//! Whole generations: determinism, sampling parameters, stop conditions, usage, the
//! response format and request validation.

use sha2::{Digest, Sha256};
use vouch_inference::{
    canonical_response, generate, tokenizer, Error, FinishReason, Request, MODEL_NAME,
};

fn request(max_tokens: u32, seed: u64, temperature_milli: u32, top_p_milli: u32) -> Request {
    Request::from_json(
        format!(
            r#"{{"max_tokens":{max_tokens},"messages":[{{"role":"user","content":"What is a hash?"}}],
                "model":"vouch-tiny-1","seed":{seed},"stop":[],
                "temperature_milli":{temperature_milli},"top_p_milli":{top_p_milli}}}"#
        )
        .as_bytes(),
    )
    .expect("valid request")
}

fn text_of(tokens: &[u32]) -> String {
    tokens
        .iter()
        .filter_map(|&t| tokenizer::token_char(t))
        .collect()
}

#[test]
fn the_same_request_gives_the_same_bytes() {
    let req = request(120, 11, 900, 950);
    let a = generate(&req).expect("valid");
    let b = generate(&req).expect("valid");
    assert_eq!(canonical_response(&req, &a), canonical_response(&req, &b));
    assert_eq!(a.leaves, b.leaves);
    assert_eq!(a, b);
}

#[test]
fn seeds_change_sampled_text_but_not_greedy_text() {
    let a = generate(&request(60, 1, 800, 900)).expect("valid");
    let b = generate(&request(60, 2, 800, 900)).expect("valid");
    assert_ne!(a.content, b.content);

    let g1 = generate(&request(60, 1, 0, 900)).expect("valid");
    let g2 = generate(&request(60, 2, 0, 1000)).expect("valid");
    assert_eq!(g1.content, g2.content);
    assert_eq!(g1.tokens, g2.tokens);
    assert_eq!(g1.leaves, g2.leaves);
}

#[test]
fn max_tokens_ends_with_length_and_usage_counts_tokens() {
    let req = request(50, 4, 800, 900);
    let gen = generate(&req).expect("valid");
    assert_eq!(gen.finish_reason, FinishReason::Length);
    assert_eq!(gen.tokens.len(), 50);
    assert_eq!(gen.leaves.len(), 50);
    assert_eq!(gen.content, text_of(&gen.tokens));
    // <user> + "What is a hash?" (15) + <assistant>
    assert_eq!(gen.usage.prompt_tokens, 17);
    assert_eq!(gen.usage.prompt_tokens, req.prompt_tokens().len() as u64);
    assert_eq!(gen.usage.completion_tokens, 50);
    assert_eq!(gen.usage.total_tokens, 67);
    assert!(gen.tokens.iter().all(|&t| (1..=96).contains(&t)));
}

#[test]
fn end_token_stops_and_is_counted_but_not_shown() {
    // A seed known to sample <end> at position 60 (found by search; if the model
    // changes, search again for a seed with finish_reason "stop").
    let req = request(128, 34, 1000, 1000);
    let gen = generate(&req).expect("valid");
    assert_eq!(gen.finish_reason, FinishReason::Stop);
    assert_eq!(gen.tokens.last(), Some(&tokenizer::END));
    assert_eq!(
        gen.tokens.iter().filter(|&&t| t == tokenizer::END).count(),
        1
    );
    assert_eq!(gen.usage.completion_tokens, gen.tokens.len() as u64);
    assert_eq!(gen.leaves.len(), gen.tokens.len());
    assert_eq!(gen.content, text_of(&gen.tokens));
    assert_eq!(gen.content.len(), gen.tokens.len() - 1);
    let out: serde_json::Value =
        serde_json::from_str(&canonical_response(&req, &gen)).expect("JSON");
    assert_eq!(out["finish_reason"], "stop");
    assert_eq!(
        out["tokens"].as_array().and_then(|t| t.last()),
        Some(&0.into())
    );
}

#[test]
fn stop_strings_cut_the_content_at_their_first_occurrence() {
    let base = request(200, 21, 800, 900);
    let full = generate(&base).expect("valid");
    // Take a 3-character piece from the middle of the text as the stop string.
    let stop = full.content[100..103].to_string();
    let at = full.content.find(&stop).expect("present");

    let mut req = base.clone();
    req.stop = vec!["never-generated-\u{e9}".into(), stop.clone()];
    let gen = generate(&req).expect("valid");
    assert_eq!(gen.finish_reason, FinishReason::Stop);
    assert_eq!(gen.content, full.content[..at], "stop {stop:?}");
    // The stop string's tokens were generated (and traced), then cut from the content.
    assert_eq!(gen.tokens, full.tokens[..at + 3]);
    assert_eq!(gen.leaves, full.leaves[..at + 3]);
    assert_eq!(gen.usage.completion_tokens, (at + 3) as u64);
    assert!(!gen.content.contains(&stop));
}

#[test]
fn the_response_is_canonical_json() {
    let mut req = request(80, 8, 1200, 1000);
    req.stop = vec!["\n\n".into()];
    let gen = generate(&req).expect("valid");
    let out = canonical_response(&req, &gen);
    assert!(!out.ends_with('\n'));
    assert!(out.starts_with("{\"content\":"));
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(
        keys,
        ["content", "finish_reason", "model", "tokens", "usage"]
    );
    assert_eq!(v["content"], gen.content.as_str());
    assert_eq!(v["model"], MODEL_NAME);
    assert_eq!(v["usage"]["completion_tokens"], gen.tokens.len());
    assert_eq!(v["usage"]["prompt_tokens"], 17);
    assert_eq!(v["usage"]["total_tokens"], 17 + gen.tokens.len());
    let tokens: Vec<u64> = v["tokens"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t.as_u64())
        .collect();
    assert_eq!(
        tokens,
        gen.tokens.iter().map(|&t| u64::from(t)).collect::<Vec<_>>()
    );
    // Compact: re-serializing the parsed value (keys already sorted) gives the same bytes.
    assert_eq!(serde_json::to_string(&v).expect("JSON"), out);
}

#[test]
fn model_output_is_pinned() {
    // A change detector for the model's identity: weights, corpus, arithmetic and
    // sampling. Receipts bind outputs, so any change must be deliberate (and shipped as a
    // new image); update the digest only then.
    let req = request(64, 2024, 800, 900);
    let gen = generate(&req).expect("valid");
    let out = canonical_response(&req, &gen);
    let digest = Sha256::digest(out.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex, "160fe3c6b81a5ef9a1522f8491ded41cbfa5aa7af9600e7859b21f65c602a82d",
        "output: {out}"
    );
}

#[test]
fn the_response_echoes_the_requested_model_name() {
    let mut req = request(3, 1, 0, 1000);
    req.model = "tiny \"alias\"".into();
    let gen = generate(&req).expect("any model name is accepted");
    let out: serde_json::Value =
        serde_json::from_str(&canonical_response(&req, &gen)).expect("JSON");
    assert_eq!(out["model"], "tiny \"alias\"");
}

#[test]
fn bad_requests_are_refused_with_a_clear_message() {
    let good = r#"{"max_tokens":5,"messages":[{"role":"user","content":"hi"}],"model":"vouch-tiny-1","seed":1,"stop":[],"temperature_milli":0,"top_p_milli":1000}"#;
    assert!(Request::from_json(good.as_bytes()).is_ok());
    let cases: &[(&str, &str, &str)] = &[
        (r#""seed":1,"#, r#""seed":1,"n":2,"#, "unknown field `n`"),
        (
            r#""role":"user""#,
            r#""role":"tool""#,
            "unknown variant `tool`",
        ),
        (
            r#""content":"hi"}"#,
            r#""content":"hi","name":"x"}"#,
            "unknown field `name`",
        ),
        (
            r#""max_tokens":5"#,
            r#""max_tokens":0"#,
            "max_tokens must be in 1..=4096, got 0",
        ),
        (
            r#""max_tokens":5"#,
            r#""max_tokens":4097"#,
            "max_tokens must be in 1..=4096",
        ),
        (r#""max_tokens":5,"#, "", "missing field `max_tokens`"),
        (
            r#""model":"vouch-tiny-1""#,
            r#""model":"""#,
            "model must be 1..=256 bytes long, got 0",
        ),
        (
            r#""seed":1"#,
            r#""seed":9007199254740992"#,
            "seed must be at most 2^53-1",
        ),
        (r#""seed":1"#, r#""seed":-1"#, "invalid value"),
        (
            r#""stop":[]"#,
            r#""stop":["a","b","c","d","e"]"#,
            "at most 4 strings",
        ),
        (r#""stop":[]"#, r#""stop":[""]"#, "stop[0] has 0"),
        (
            r#""temperature_milli":0"#,
            r#""temperature_milli":2001"#,
            "temperature_milli must be in 0..=2000",
        ),
        (
            r#""temperature_milli":0"#,
            r#""temperature_milli":0.5"#,
            "invalid type",
        ),
        (
            r#""top_p_milli":1000"#,
            r#""top_p_milli":0"#,
            "top_p_milli must be in 1..=1000",
        ),
        (
            r#"[{"role":"user","content":"hi"}]"#,
            "[]",
            "at least one message",
        ),
        (
            r#""seed":1,"#,
            r#""seed":1,"seed":2,"#,
            "duplicate field `seed`",
        ),
    ];
    for (from, to, want) in cases {
        assert!(good.contains(from), "{from}");
        let bad = good.replacen(from, to, 1);
        let err = Request::from_json(bad.as_bytes())
            .expect_err(&bad)
            .to_string();
        assert!(err.contains(want), "{bad}\n  gave {err:?}\n  want {want:?}");
        // generate() validates too, whatever the caller built.
        if let Ok(req) = serde_json::from_str::<Request>(&bad) {
            assert!(matches!(generate(&req), Err(Error::Field { .. })));
        }
    }
}
