//! One-token (T2) disputes end to end: `POST /v1/disputes/token` through `oneshot`, a
//! real SQLite ledger and the real model image (`vouch/inference-stub:dev`) in Docker,
//! both for the operator's generation and for the verifier's one `step`.
//!
//! The verifier's work is measured by what it did, never by time: the verdict's
//! `tokens_recomputed`, and the containers Docker created under the test's label while
//! the dispute was judged (`docker events`).
//!
//! Without Docker these tests are skipped, except under `CI=true`, where that is a failure.

mod common;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use common::*;
use ed25519_dalek::{Signer as _, SigningKey};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use vouch_exec::{DockerExecutor, Executor, RunOutcome};
use vouch_proto::{
    merkle_proof, merkle_root, Amount, Determinism, Digest, JobSpec, Limits, OperatorKey, Receipt,
    SignedReceipt,
};
use vouch_verifier::{
    router, token_dispute_id, ApiState, Bond, CollateralLedger, DisputeConfig, Key, Sig, Verifier,
};

const STAKE: u128 = 1_000_000;
const CHALLENGER_DEPOSIT: u128 = 1_000;
const BOND: u128 = 100;
const NOW: u64 = 1_795_000_000_000;
const MODEL: &str = "vouch/inference-stub:dev";

/// Containers Docker created under this test's label between `since` and now
/// (`docker events`; seconds since the Unix epoch, with nanoseconds).
fn containers_created_since(label: &str, since: f64) -> usize {
    let until = unix_now() + 1.0;
    let out = std::process::Command::new("docker")
        .args([
            "events",
            "--since",
            &format!("{since:.9}"),
            "--until",
            &format!("{until:.9}"),
            "--filter",
            "type=container",
            "--filter",
            "event=create",
            "--filter",
            &format!("label=vouch.node={label}"),
            "--format",
            "{{.ID}}",
        ])
        .output()
        .expect("docker events");
    assert!(out.status.success(), "docker events: {out:?}");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

async fn post(app: &Router, uri: &str, body: &impl serde::Serialize) -> (StatusCode, Value) {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{uri}: not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .uri(uri)
        .body(Body::empty())
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).expect("JSON answer"))
}

/// A generation as the operator ran it: spec, input, output, trace.
struct Generation {
    spec: JobSpec,
    input: Vec<u8>,
    output: Vec<u8>,
    trace: Vec<Vec<u8>>,
}

impl Generation {
    fn tokens(&self) -> Vec<u32> {
        let v: Value = serde_json::from_slice(&self.output).expect("model output");
        v["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .map(|t| t.as_u64().expect("id") as u32)
            .collect()
    }

    /// The output with token `t` set to `id` (canonical JSON, like the model's).
    fn output_with(&self, t: usize, id: u32) -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(&self.output).expect("model output");
        v["tokens"][t] = id.into();
        vouch_proto::to_canonical_bytes(&v).expect("canonical")
    }

    /// What `--fault wrong-token` does: token `t` replaced in the output and in its leaf.
    fn with_wrong_token(mut self, t: usize) -> Generation {
        let old = self.tokens()[t];
        let new = old % 96 + 1;
        self.output = self.output_with(t, new);
        self.trace[t][4..8].copy_from_slice(&new.to_be_bytes());
        self
    }
}

/// Runs the model once for `max_tokens` tokens (sampled, no stop strings).
async fn generate(app: &DockerApp, max_tokens: u32, nonce: &str) -> Generation {
    let image = app.docker.resolve_image(MODEL).await.expect("image");
    let input = serde_json::to_vec(&json!({
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Tell me a story"}],
        "model": "vouch-tiny-1", "seed": 7, "stop": [],
        "temperature_milli": 800, "top_p_milli": 900,
    }))
    .expect("json");
    let spec = JobSpec {
        image,
        command: vec![],
        env: vec![],
        input_digest: Digest::of(&input),
        limits: Limits {
            cpu_millis: 1000,
            memory_bytes: 256 << 20,
            output_bytes: 1 << 20,
            pids: 64,
            timeout_ms: 60_000,
            tmpfs_bytes: 1 << 20,
        },
        determinism: Determinism::Deterministic,
        value_at_risk: Amount(0),
        replicas: 1,
        nonce: nonce.into(),
    };
    let job = spec.job_id().expect("valid spec");
    match app
        .docker
        .run(job, &spec, input.clone().into())
        .await
        .expect("run")
    {
        RunOutcome::Exited {
            exit_code: 0,
            stdout,
            trace,
            ..
        } => {
            let g = Generation {
                spec,
                input,
                output: stdout.to_vec(),
                trace,
            };
            assert_eq!(g.tokens().len(), max_tokens as usize, "a full generation");
            assert_eq!(g.trace.len(), max_tokens as usize, "one leaf per token");
            g
        }
        other => panic!("the model did not generate: {other:?}"),
    }
}

/// The operator's receipt over `output` and `trace`.
fn sign(spec: &JobSpec, output: &[u8], trace: &[Vec<u8>], trace_len: u64) -> SignedReceipt {
    let key = operator();
    let receipt = Receipt {
        network_id: network(),
        operator: OperatorKey(key.verifying_key().to_bytes()),
        sequence: 1,
        job_id: spec.job_id().expect("valid spec"),
        image: spec.image,
        input_digest: spec.input_digest,
        output_digest: Digest::of(output),
        output_len: output.len() as u64,
        exit_code: 0,
        trace_root: merkle_root(trace),
        trace_len,
        issued_at_ms: NOW - 10,
    };
    let signature = key.sign(&receipt.signing_root()).to_bytes();
    SignedReceipt { receipt, signature }
}

/// What a challenger sends about position `t`.
struct Claim {
    output: Vec<u8>,
    leaf: Vec<u8>,
    proof: Vec<[u8; 32]>,
    prefix: Option<Vec<u32>>,
}

impl Claim {
    /// The operator's served output and its own leaf `t` with the opening.
    fn of(output: &[u8], trace: &[Vec<u8>], t: usize) -> Claim {
        Claim {
            output: output.to_vec(),
            leaf: trace[t].clone(),
            proof: merkle_proof(trace, t).expect("t in range"),
            prefix: None,
        }
    }
}

/// The body of `POST /v1/disputes/token`, signed by `who`.
fn body(who: &SigningKey, receipt: &SignedReceipt, g: &Generation, t: u32, claim: &Claim) -> Value {
    let bond = Bond {
        asset: "eth".into(),
        amount: BOND,
    };
    let id = token_dispute_id(
        &network(),
        &Key::of(who),
        &receipt.receipt.signing_root(),
        t,
        &bond,
    )
    .expect("id");
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut v = json!({
        "challenger": Key::of(who),
        "bond": bond,
        "signature": Sig(who.sign(&id).to_bytes()),
        "receipt": receipt.to_json(),
        "spec": g.spec,
        "input_base64": b64(&g.input),
        "output_base64": b64(&claim.output),
        "position": t,
        "leaf": hex::encode(&claim.leaf),
        "proof": claim.proof.iter().map(hex::encode).collect::<Vec<_>>(),
    });
    if let Some(p) = &claim.prefix {
        v["prefix"] = json!(p);
    }
    v
}

/// Posts the dispute and answers the verdict and the containers it took.
async fn dispute(app: &DockerApp, body: &Value) -> (Value, usize) {
    let since = unix_now();
    let (status, v) = post(&app.router, "/v1/disputes/token", body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["kind"], "token", "{v}");
    (v, containers_created_since(&app.label, since))
}

#[tokio::test(flavor = "multi_thread")]
async fn one_wrong_token_in_256_is_slashed_with_one_step() {
    if !docker_available(&[MODEL]).await {
        return;
    }
    let app = DockerApp::new("token", STAKE, CHALLENGER_DEPOSIT, NOW);
    let g = generate(&app, 256, "wrong-token")
        .await
        .with_wrong_token(128);
    let lie = sign(&g.spec, &g.output, &g.trace, 256);
    let mut claim = Claim::of(&g.output, &g.trace, 128);
    claim.prefix = Some(g.tokens()[..128].to_vec());

    let (v, containers) = dispute(&app, &body(&challenger(), &lie, &g, 128, &claim)).await;
    assert_eq!(v["outcome"], "slashed", "{v}");
    assert_eq!(v["position"], 128);
    assert_eq!(v["tokens_recomputed"], 1, "{v}");
    assert_eq!(
        containers, 1,
        "the first one-token dispute starts the warm model container, and only that: {v}"
    );
    assert_eq!(v["runs"].as_array().expect("runs").len(), 1);
    assert_eq!(v["bond_forfeited"], false);
    assert_eq!(v["event"]["payload"]["result"]["verdict"], "slashed");
    assert_eq!(
        app.challenger_balance(),
        CHALLENGER_DEPOSIT + STAKE / 2 / 10
    );
    assert!(app
        .ledger
        .is_jailed(&Key::of(&operator()), NOW)
        .expect("jail"));

    // The verdict is served by id, like a result dispute's.
    let id = v["dispute"].as_str().expect("id");
    let (status, s) = get(&app.router, &format!("/v1/disputes/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{s}");
    assert_eq!(s["state"], "decided");
    assert_eq!(s["verdict"], v);

    // A position before the divergence: the operator's token there follows from its
    // prefix, so that challenge is dismissed and the bond burned (after one step).
    let before = app.challenger_balance();
    let (v, containers) = dispute(
        &app,
        &body(
            &challenger(),
            &lie,
            &g,
            20,
            &Claim::of(&g.output, &g.trace, 20),
        ),
    )
    .await;
    assert_eq!(v["outcome"], "dismissed", "{v}");
    assert_eq!(v["tokens_recomputed"], 1);
    assert_eq!(
        containers, 0,
        "the warm model container is reused: no start"
    );
    assert_eq!(v["bond_forfeited"], true);
    assert_eq!(app.challenger_balance(), before - BOND);
    // Only the warm model container stays, until the verifier sweeps (as it does when it
    // stops).
    assert_eq!(app.leftover_containers().len(), 1);
    app.docker.sweep().await.expect("sweep");
    assert!(app.leftover_containers().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_evidence_is_dismissed_without_recomputation_and_the_bond_burned() {
    if !docker_available(&[MODEL]).await {
        return;
    }
    let app = DockerApp::new("token", STAKE, CHALLENGER_DEPOSIT, NOW);
    let g = generate(&app, 64, "bad-evidence").await;
    // What the model gives, as a challenger's own run would.
    let honest_tokens = g.tokens();
    let g = g.with_wrong_token(32);
    let lie = sign(&g.spec, &g.output, &g.trace, 64);

    // One dispute id per (challenger, receipt, position, bond), so each bad claim names
    // its own position. A wrong Merkle opening (one sibling hash flipped):
    let mut bad_opening = Claim::of(&g.output, &g.trace, 29);
    bad_opening.proof[0][0] ^= 1;
    // a leaf the signed trace does not hold, with the true opening;
    let mut other_leaf = Claim::of(&g.output, &g.trace, 30);
    other_leaf.leaf[7] ^= 1;
    // an output the operator did not sign;
    let mut unsigned_output = Claim::of(&g.output, &g.trace, 31);
    unsigned_output.output = g.output_with(32, 5);
    // a prefix other than the signed output's (a lying challenger);
    let mut lying_prefix = Claim::of(&g.output, &g.trace, 32);
    let mut p = g.tokens()[..32].to_vec();
    p[3] = p[3] % 96 + 1;
    lying_prefix.prefix = Some(p);
    // a divergent position after the first divergence (32), named with the challenger's
    // own run of the model as its prefix: it differs from the signed one at 32.
    let mut not_first = Claim::of(&g.output, &g.trace, 40);
    not_first.prefix = Some(honest_tokens[..40].to_vec());

    let mut balance = app.challenger_balance();
    for (what, t, claim, reason) in [
        ("bad opening", 29, bad_opening, "bad_opening"),
        ("leaf not in the trace", 30, other_leaf, "bad_opening"),
        ("unsigned output", 31, unsigned_output, "output_digest"),
        ("lying prefix", 32, lying_prefix, "prefix"),
        (
            "not the first divergence",
            40,
            not_first,
            "position 32, before 40: position 40 is not the first divergence",
        ),
    ] {
        let (v, containers) = dispute(&app, &body(&challenger(), &lie, &g, t, &claim)).await;
        assert_eq!(v["outcome"], "dismissed", "{what}: {v}");
        assert!(
            v["reason"].as_str().expect("reason").contains(reason),
            "{what}: {v}"
        );
        assert_eq!(v["tokens_recomputed"], 0, "{what}");
        assert_eq!(containers, 0, "{what}: nothing to run");
        assert_eq!(v["bond_forfeited"], true);
        balance -= BOND;
        assert_eq!(app.challenger_balance(), balance, "{what}: bond burned");
    }
    assert!(!app
        .ledger
        .is_jailed(&Key::of(&operator()), NOW)
        .expect("jail"));
}

/// Served evidence the operator signed (SPEC.md §7.7) that contradicts its own receipt is
/// slashed with nothing recomputed; the same evidence signed by anyone else is not the
/// operator's word and is dismissed.
#[tokio::test(flavor = "multi_thread")]
async fn served_evidence_the_operator_signed_against_its_receipt_is_slashed_unrun() {
    if !docker_available(&[MODEL]).await {
        return;
    }
    let app = DockerApp::new("token", STAKE, CHALLENGER_DEPOSIT, NOW);
    let g = generate(&app, 64, "served").await;
    let honest = sign(&g.spec, &g.output, &g.trace, 64);
    let root = honest.receipt.signing_root();
    let served_output = |key: &SigningKey, output: &[u8]| {
        let m = vouch_proto::served_statement(
            &network(),
            &root,
            &vouch_proto::Served::Output {
                digest: Digest::of(output).0,
                len: output.len() as u64,
            },
        )
        .expect("statement");
        hex::encode(key.sign(&m).to_bytes())
    };
    let served_leaf = |key: &SigningKey, t: u64, c: &Claim| {
        let m = vouch_proto::served_statement(
            &network(),
            &root,
            &vouch_proto::Served::Leaf {
                index: t,
                leaf: &c.leaf,
                proof: &c.proof,
            },
        )
        .expect("statement");
        hex::encode(key.sign(&m).to_bytes())
    };
    // The node served another output than the one its receipt signs.
    let mut other_output = Claim::of(&g.output, &g.trace, 31);
    other_output.output = g.output_with(32, 5);
    // ... or a leaf with an opening that does not verify against its signed root.
    let mut bad_opening = Claim::of(&g.output, &g.trace, 29);
    bad_opening.proof[0][0] ^= 1;

    // Signed by the challenger, not the operator: proves nothing about the operator.
    let mut forged = body(&challenger(), &honest, &g, 31, &other_output);
    forged["output_signature"] = served_output(&challenger(), &other_output.output).into();
    let (v, containers) = dispute(&app, &forged).await;
    assert_eq!(v["outcome"], "dismissed", "{v}");
    assert_eq!(containers, 0);

    let mut b = body(&challenger(), &honest, &g, 30, &other_output);
    b["output_signature"] = served_output(&operator(), &other_output.output).into();
    let (v, containers) = dispute(&app, &b).await;
    assert_eq!(v["outcome"], "slashed", "{v}");
    assert!(
        v["reason"]
            .as_str()
            .expect("reason")
            .contains("contradicts itself"),
        "{v}"
    );
    assert_eq!(v["tokens_recomputed"], 0, "{v}");
    assert_eq!(containers, 0, "nothing run");
    assert!(app
        .ledger
        .is_jailed(&Key::of(&operator()), NOW)
        .expect("jail"));

    // The same receipt proven wrong again through a signed bad opening: the same
    // offence, so already slashed, and again nothing run.
    let mut b = body(&challenger(), &honest, &g, 29, &bad_opening);
    b["leaf_signature"] = served_leaf(&operator(), 29, &bad_opening).into();
    let (v, containers) = dispute(&app, &b).await;
    assert_eq!(v["outcome"], "already_slashed", "{v}");
    assert!(
        v["reason"].as_str().expect("reason").contains("leaf 29"),
        "{v}"
    );
    assert_eq!(v["tokens_recomputed"], 0, "{v}");
    assert_eq!(containers, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn honest_generation_challenged_is_dismissed() {
    if !docker_available(&[MODEL]).await {
        return;
    }
    let app = DockerApp::new("token", STAKE, CHALLENGER_DEPOSIT, NOW);
    let g = generate(&app, 64, "honest").await;
    let honest = sign(&g.spec, &g.output, &g.trace, 64);
    for t in [0u32, 31, 63] {
        let (v, containers) = dispute(
            &app,
            &body(
                &challenger(),
                &honest,
                &g,
                t,
                &Claim::of(&g.output, &g.trace, t as usize),
            ),
        )
        .await;
        assert_eq!(v["outcome"], "dismissed", "position {t}: {v}");
        assert_eq!(v["tokens_recomputed"], 1);
        assert_eq!(
            containers,
            usize::from(t == 0),
            "one warm container, started by the first dispute"
        );
    }
    assert_eq!(app.challenger_balance(), CHALLENGER_DEPOSIT - 3 * BOND);
}

#[tokio::test(flavor = "multi_thread")]
async fn self_contradiction_is_slashed_with_no_token_recomputed() {
    if !docker_available(&[MODEL]).await {
        return;
    }
    let app = DockerApp::new("token", STAKE, CHALLENGER_DEPOSIT, NOW);
    let g = generate(&app, 64, "contradiction").await;
    // The output's token 32 changed, the signed trace left honest: leaf 32 states another
    // token than the signed output.
    let tokens = g.tokens();
    let output = g.output_with(32, tokens[32] % 96 + 1);
    let receipt = sign(&g.spec, &output, &g.trace, 64);
    let (v, containers) = dispute(
        &app,
        &body(
            &challenger(),
            &receipt,
            &g,
            32,
            &Claim::of(&output, &g.trace, 32),
        ),
    )
    .await;
    assert_eq!(v["outcome"], "slashed", "{v}");
    assert_eq!(v["tokens_recomputed"], 0);
    assert_eq!(containers, 0);
    assert!(v["reason"]
        .as_str()
        .expect("reason")
        .contains("contradicts itself"));
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_len_other_than_completion_tokens_is_slashed_with_no_token_recomputed() {
    if !docker_available(&[MODEL]).await {
        return;
    }
    let app = DockerApp::new("token", STAKE, CHALLENGER_DEPOSIT, NOW);
    let g = generate(&app, 64, "trace-len").await;
    // 63 leaves signed for 64 tokens.
    let short = &g.trace[..63];
    let receipt = sign(&g.spec, &g.output, short, 63);
    let (v, containers) = dispute(
        &app,
        &body(
            &challenger(),
            &receipt,
            &g,
            10,
            &Claim::of(&g.output, short, 10),
        ),
    )
    .await;
    assert_eq!(v["outcome"], "slashed", "{v}");
    assert_eq!(v["tokens_recomputed"], 0);
    assert_eq!(containers, 0);
}

/// Docker for images, but every run fails as if the daemon went away: a dispute is opened
/// (its bond locked) and cannot be judged, as when a verifier dies mid-judgment.
struct RunsFail(Arc<DockerExecutor>);

type Fut<'a, T> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<T, vouch_exec::ExecError>> + Send + 'a>,
>;

impl Executor for RunsFail {
    fn resolve_image<'a>(&'a self, reference: &'a str) -> Fut<'a, Digest> {
        self.0.resolve_image(reference)
    }
    fn run<'a>(
        &'a self,
        _job_id: vouch_proto::JobId,
        _spec: &'a JobSpec,
        _input: bytes::Bytes,
    ) -> Fut<'a, RunOutcome> {
        Box::pin(async { Err(vouch_exec::ExecError::Docker("the daemon went away".into())) })
    }
    fn health(&self) -> Fut<'_, ()> {
        Box::pin(async { Ok(()) })
    }
    fn sweep(&self) -> Fut<'_, usize> {
        Box::pin(async { Ok(0) })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_token_dispute_is_judged_after_a_restart() {
    if !docker_available(&[MODEL]).await {
        return;
    }
    let app = DockerApp::new("token", STAKE, CHALLENGER_DEPOSIT, NOW);
    let g = generate(&app, 64, "restart").await.with_wrong_token(32);
    let lie = sign(&g.spec, &g.output, &g.trace, 64);
    let body = body(
        &challenger(),
        &lie,
        &g,
        32,
        &Claim::of(&g.output, &g.trace, 32),
    );

    // The first verifier opens the dispute, then cannot run the step.
    let first = Verifier::new(
        app.ledger.clone(),
        admin(),
        network(),
        DisputeConfig::default(),
    )
    .with_executor(Arc::new(RunsFail(app.docker.clone())))
    .with_clock(|| NOW);
    let first = router(ApiState::new(Arc::new(first)));
    let (status, v) = post(&first, "/v1/disputes/token", &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "dispute_pending", "{v}");
    let open = app.ledger.open_disputes().expect("open");
    assert_eq!(open.len(), 1);
    assert_eq!(
        app.challenger_balance(),
        CHALLENGER_DEPOSIT - BOND,
        "bond locked"
    );

    // A new verifier over the same ledger resumes it from the stored evidence.
    let second = Arc::new(
        Verifier::new(
            app.ledger.clone(),
            admin(),
            network(),
            DisputeConfig::default(),
        )
        .with_executor(app.docker.clone())
        .with_clock(|| NOW),
    );
    assert_eq!(second.resume_open_disputes().await.expect("resume"), 1);
    let id = open[0].id.clone();
    let mut tries = 0;
    let verdict = loop {
        tries += 1;
        assert!(tries < 600, "no verdict within a minute");
        let s = second
            .result_dispute_status(&id)
            .expect("status")
            .expect("held");
        if let Some(v) = s.verdict {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(verdict.kind, "token");
    assert_eq!(
        verdict.outcome,
        vouch_verifier::ResultOutcome::Slashed,
        "{verdict:?}"
    );
    assert_eq!(verdict.tokens_recomputed, Some(1));
    assert!(app.ledger.open_disputes().expect("open").is_empty());
}

/// `vouch-verifier dispute token` end to end over real HTTP: the verifier's API on a
/// socket, and the operator's job routes (`/v1/jobs/{id}/input`, `/output`,
/// `/trace/{t}`) served from the operator's generation the way a node serves them.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_disputes_one_token_from_the_node_s_routes() {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey as _};
    if !docker_available(&[MODEL]).await {
        return;
    }
    let app = DockerApp::new("token", STAKE, CHALLENGER_DEPOSIT, NOW);
    let g = Arc::new(generate(&app, 64, "cli").await.with_wrong_token(32));
    let lie = sign(&g.spec, &g.output, &g.trace, 64);
    let job_id = lie.receipt.job_id.to_string();

    let serve = |r: Router| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, r).await;
        });
        (url, task)
    };
    let (verifier_url, v_task) = serve(app.router.clone()).await;
    let (gi, go, gt) = (g.clone(), g.clone(), g.clone());
    let node = Router::new()
        .route(
            &format!("/v1/jobs/{job_id}/input"),
            axum::routing::get(move || async move { gi.input.clone() }),
        )
        .route(
            &format!("/v1/jobs/{job_id}/output"),
            axum::routing::get(move || async move { go.output.clone() }),
        )
        .route(
            &format!("/v1/jobs/{job_id}/trace/32"),
            axum::routing::get(move || async move {
                axum::Json(json!({
                    "leaf": hex::encode(&gt.trace[32]),
                    "proof": merkle_proof(&gt.trace, 32)
                        .expect("in range")
                        .iter()
                        .map(hex::encode)
                        .collect::<Vec<_>>(),
                }))
            }),
        );
    let (node_url, n_task) = serve(node).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("me.pem");
    let pem = challenger().to_pkcs8_pem(LineEnding::LF).expect("pem");
    std::fs::write(&key, pem.as_bytes()).expect("write key");
    let job = dir.path().join("job.json");
    std::fs::write(
        &job,
        serde_json::to_vec(&json!({"spec": g.spec, "receipt": lie.to_json()})).expect("json"),
    )
    .expect("write job");

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_vouch-verifier"))
        .args([
            "dispute",
            "token",
            "--url",
            &verifier_url,
            "--node",
            &node_url,
        ])
        .arg("--challenger-key")
        .arg(&key)
        .arg("--job")
        .arg(&job)
        // No --position: the CLI runs the model once and finds the divergence (the node
        // serves the opening of leaf 32 only).
        .args(["--bond-asset", "eth", "--bond-amount"])
        .arg(BOND.to_string())
        .output()
        .await
        .expect("run the CLI");
    v_task.abort();
    n_task.abort();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("the verdict as JSON");
    assert_eq!(v["kind"], "token", "{v}");
    assert_eq!(v["position"], 32, "{v}");
    assert_eq!(v["outcome"], "slashed", "{v}");
    assert_eq!(v["tokens_recomputed"], 1, "{v}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("disputing position 32"), "{said}");
}
