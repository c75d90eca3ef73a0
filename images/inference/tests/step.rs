//! One-token disputes: `step` must reproduce every token and leaf of a full generation
//! from the prompt and the tokens before it, and nothing else.

use vouch_inference::model::{Model, WINDOW};
use vouch_inference::{generate, sample, step, Message, Request, Role, MODEL_NAME};

fn request(max_tokens: u32, seed: u64, temperature_milli: u32, top_p_milli: u32) -> Request {
    Request {
        max_tokens,
        messages: vec![
            Message {
                role: Role::System,
                content: "You are a helpful assistant.".into(),
            },
            Message {
                role: Role::User,
                content: "Tell me about computers.".into(),
            },
        ],
        model: MODEL_NAME.into(),
        seed,
        stop: vec![],
        temperature_milli,
        top_p_milli,
    }
}

/// Check `step` at every position of `req`'s generation; returns the number of tokens.
fn replay_every_position(req: &Request) -> usize {
    let gen = generate(req).expect("valid request");
    assert_eq!(gen.tokens.len(), gen.leaves.len());
    for (t, (&token, leaf)) in gen.tokens.iter().zip(&gen.leaves).enumerate() {
        let got = step(req, &gen.tokens[..t], t as u32).expect("a reachable position");
        assert_eq!(got, (token, *leaf), "position {t}");
    }
    gen.tokens.len()
}

#[test]
fn step_replays_every_position_of_a_sampled_generation() {
    let req = request(256, 1, 800, 900);
    assert_eq!(
        replay_every_position(&req),
        256,
        "this seed runs to max_tokens"
    );
}

#[test]
fn step_replays_every_position_of_a_greedy_generation() {
    let req = request(256, 0, 0, 1000);
    assert_eq!(replay_every_position(&req), 256);
}

#[test]
fn leaves_record_position_token_draw_and_logit() {
    let req = request(40, 5, 1000, 1000);
    let gen = generate(&req).expect("valid request");
    for (t, (&token, leaf)) in gen.tokens.iter().zip(&gen.leaves).enumerate() {
        assert_eq!(leaf[0..4], (t as u32).to_be_bytes());
        assert_eq!(leaf[4..8], token.to_be_bytes());
        assert_eq!(leaf[8..16], sample::draw(5, t as u32).to_be_bytes());
    }
    // The logit is the chosen token's: recompute it from the model.
    let t = 10;
    let mut seq = req.prompt_tokens();
    seq.extend_from_slice(&gen.tokens[..t]);
    let logits = Model::shared().logits(&seq[seq.len() - WINDOW..]);
    let logit = logits[gen.tokens[t] as usize];
    assert_eq!(gen.leaves[t][16..20], logit.to_be_bytes());

    let greedy = generate(&request(20, 5, 0, 1000)).expect("valid request");
    assert!(
        greedy.leaves.iter().all(|l| l[8..16] == [0; 8]),
        "greedy draws are 0"
    );
}

#[test]
fn a_substituted_token_changes_the_following_leaves() {
    // What a dispute relies on: an operator who replaces token t-1 cannot produce the
    // honest leaf at t, because the substituted context changes the logits.
    let req = request(120, 3, 800, 900);
    let gen = generate(&req).expect("valid request");
    let mut differ = 0;
    for t in (1..gen.tokens.len()).step_by(7) {
        let mut forged = gen.tokens[..t].to_vec();
        forged[t - 1] = if forged[t - 1] == 2 { 3 } else { 2 };
        let (_, leaf) = step(&req, &forged, t as u32).expect("a reachable position");
        differ += usize::from(leaf != gen.leaves[t]);
    }
    assert_eq!(differ, (1..gen.tokens.len()).step_by(7).count());
}

#[test]
fn tokens_older_than_the_window_do_not_matter() {
    let req = request(200, 9, 800, 900);
    let gen = generate(&req).expect("valid request");
    let t = 150;
    assert!(gen.tokens.len() > t);
    let mut changed = gen.tokens[..t].to_vec();
    for tok in &mut changed[..t - WINDOW] {
        *tok = 2; // spaces
    }
    assert_eq!(
        step(&req, &changed, t as u32).expect("reachable"),
        (gen.tokens[t], gen.leaves[t])
    );
    // The oldest token inside the window still reaches the logits (ALiBi makes its
    // influence small, so compare all logits rather than the chosen one).
    let window_of = |prefix: &[u32]| {
        let mut seq = req.prompt_tokens();
        seq.extend_from_slice(prefix);
        seq[seq.len() - WINDOW..].to_vec()
    };
    let before = Model::shared().logits(&window_of(&changed));
    changed[t - WINDOW] = if changed[t - WINDOW] == 3 { 4 } else { 3 };
    assert_ne!(Model::shared().logits(&window_of(&changed)), before);
}
