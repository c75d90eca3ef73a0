//! What a one-token dispute saves: a full generation of N tokens against one `step` at
//! the last position (the most expensive one to replay naively).
//!
//! `cargo bench -p vouch-inference --bench step_vs_full`. Before the criterion groups it
//! prints a quick median-of-runs ratio for 256 and 1024 tokens.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use vouch_inference::{generate, step, Generation, Message, Request, Role, MODEL_NAME};

fn request(max_tokens: u32, seed: u64) -> Request {
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
        temperature_milli: 800,
        top_p_milli: 900,
    }
}

/// A sampled request that really generates `n` tokens (the first seed that does not stop
/// early), with its generation.
fn full_length(n: u32) -> (Request, Generation) {
    for seed in 0..64 {
        let req = request(n, seed);
        let gen = generate(&req).expect("a valid request");
        if gen.tokens.len() == n as usize {
            return (req, gen);
        }
    }
    panic!("no seed in 0..64 generates {n} tokens without stopping");
}

fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn report_ratios(cases: &[(Request, Generation)]) {
    for (req, gen) in cases {
        let n = gen.tokens.len();
        let last = n - 1;
        let full = median(|| drop(black_box(generate(black_box(req)))), 21);
        let one = median(
            || {
                drop(black_box(step(
                    black_box(req),
                    &gen.tokens[..last],
                    last as u32,
                )))
            },
            201,
        );
        println!(
            "vouch-inference: {n} tokens: full generation {full:.2?}, one step {one:.2?}, step/full = 1/{:.0}",
            full.as_secs_f64() / one.as_secs_f64()
        );
    }
}

fn main() {
    let cases = [full_length(256), full_length(1024)];
    report_ratios(&cases);

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("step_vs_full");
    for (req, gen) in &cases {
        let n = gen.tokens.len();
        let last = n - 1;
        group.bench_with_input(BenchmarkId::new("full", n), req, |b, req| {
            b.iter(|| generate(black_box(req)))
        });
        group.bench_with_input(BenchmarkId::new("step_last", n), req, |b, req| {
            b.iter(|| step(black_box(req), &gen.tokens[..last], last as u32))
        });
    }
    group.finish();
    c.final_summary();
}
