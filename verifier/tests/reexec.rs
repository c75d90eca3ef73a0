//! Wrong-result disputes (tier 1) end to end: `POST /v1/disputes/result` through
//! `oneshot`, a real SQLite ledger and real Docker re-executions.
//!
//! The tests that run containers need Docker and `images/build.sh`; without Docker they
//! are skipped, except under `CI=true`, where that is a failure. The table of refused
//! challenges runs nothing and needs no Docker.

mod common;

use std::time::Instant;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use common::*;
use ed25519_dalek::{Signer as _, SigningKey};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use vouch_exec::{Executor, RunOutcome};
use vouch_proto::{
    Amount, Determinism, Digest, JobSpec, Limits, NetworkId, OperatorKey, Receipt, Root32,
    SignedReceipt,
};
use vouch_verifier::{
    result_dispute_id, verify_chain, Bond, CollateralLedger, Key, RequestBody, Sig, SqliteLedger,
};

/// Alice's stake, delegated to the operator, fully allocated.
const STAKE: u128 = 1_000_000;
/// The challenger's deposit, which holds its bonds.
const CHALLENGER_DEPOSIT: u128 = 1_000;
const BOND: u128 = 100;
/// The verifier's clock in these tests; receipts are issued just before it.
const NOW: u64 = 1_795_000_000_000;

async fn post(app: &Router, uri: &str, body: &impl serde::Serialize) -> (StatusCode, Value) {
    let bytes = serde_json::to_vec(body).expect("json");
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(bytes))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "POST {uri}: answer is not JSON: {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, value)
}

fn spec(image: Digest, command: &[&str], input: &[u8], nonce: &str) -> JobSpec {
    JobSpec {
        image,
        command: command.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        input_digest: Digest::of(input),
        limits: Limits {
            cpu_millis: 1000,
            memory_bytes: 64 << 20,
            output_bytes: 1 << 20,
            pids: 64,
            timeout_ms: 10_000,
            tmpfs_bytes: 1 << 20,
        },
        determinism: Determinism::Deterministic,
        value_at_risk: Amount(0),
        replicas: 1,
        nonce: nonce.into(),
    }
}

/// A receipt for `spec` stating `output` and `exit_code`, signed by `key`.
fn sign_receipt(
    key: &SigningKey,
    net: NetworkId,
    spec: &JobSpec,
    output: &[u8],
    exit_code: i32,
    issued_at_ms: u64,
) -> SignedReceipt {
    let receipt = Receipt {
        network_id: net,
        operator: OperatorKey(key.verifying_key().to_bytes()),
        sequence: 1,
        job_id: spec.job_id().expect("valid spec"),
        image: spec.image,
        input_digest: spec.input_digest,
        output_digest: Digest::of(output),
        output_len: output.len() as u64,
        exit_code,
        trace_root: Root32::default(),
        trace_len: 0,
        issued_at_ms,
    };
    let signature = key.sign(&receipt.signing_root()).to_bytes();
    SignedReceipt { receipt, signature }
}

/// The body of `POST /v1/disputes/result`, signed by `who`.
fn challenge(who: &SigningKey, receipt: &SignedReceipt, spec: &JobSpec, input: &[u8]) -> Value {
    let bond = Bond {
        asset: "eth".into(),
        amount: BOND,
    };
    let id = result_dispute_id(
        &network(),
        &Key::of(who),
        &receipt.receipt.signing_root(),
        &bond,
    )
    .expect("id");
    json!({
        "challenger": Key::of(who),
        "bond": bond,
        "signature": Sig(who.sign(&id).to_bytes()),
        "receipt": receipt.to_json(),
        "spec": spec,
        "input_base64": base64::engine::general_purpose::STANDARD.encode(input),
    })
}

async fn resolve(app: &DockerApp, image: &str) -> Digest {
    app.docker.resolve_image(image).await.expect("image")
}

/// Slashes in the log: `slash` events and disputes closed with one.
fn slash_events(ledger: &SqliteLedger) -> usize {
    ledger
        .events_from(0, 1000)
        .expect("events")
        .iter()
        .filter(|e| {
            e.kind == "slash"
                || (e.kind == "close_dispute"
                    && e.payload["request"]["body"]["ruling"]["verdict"] == "slashed")
        })
        .count()
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

#[tokio::test(flavor = "multi_thread")]
async fn wrong_receipt_is_slashed_once_with_bounty_and_jail() {
    if !docker_available(&["vouch/wc:dev", "vouch/random:dev", "vouch/sleep:dev"]).await {
        return;
    }
    let started = Instant::now();
    let app = DockerApp::new("reexec", STAKE, CHALLENGER_DEPOSIT, NOW);
    let input = b"one two three\n";
    let spec = spec(resolve(&app, "vouch/wc:dev").await, &[], input, "wrong");
    let lie = sign_receipt(&operator(), network(), &spec, b"42\n", 0, NOW - 10);
    let op = Key::of(&operator());
    let alice = Key::of(&sk(10));
    let me = Key::of(&challenger());

    let (status, v) = post(
        &app.router,
        "/v1/disputes/result",
        &challenge(&challenger(), &lie, &spec, input),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "slashed", "{v}");
    assert_eq!(v["kind"], "wrong_result");
    assert_eq!(v["bond_forfeited"], false);
    let runs = v["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0], runs[1], "wc is deterministic");
    assert_eq!(runs[0]["status"], "exited");
    assert_ne!(runs[0]["output_digest"], v["receipt"]["output_digest"]);
    // One event opened the dispute (locking the bond), one decided it: slash and release.
    assert_eq!(v["event"]["kind"], "close_dispute");
    assert_eq!(v["event"]["payload"]["result"]["verdict"], "slashed");
    assert_eq!(
        v["event"]["payload"]["result"]["released"],
        BOND.to_string()
    );
    let dispute = v["dispute"].as_str().expect("dispute id").to_owned();
    let (status, status_v) = get(&app.router, &format!("/v1/disputes/{dispute}")).await;
    assert_eq!(status, StatusCode::OK, "{status_v}");
    assert_eq!(status_v["state"], "decided");
    assert_eq!(status_v["locked"], "0");
    assert_eq!(status_v["verdict"], v);

    // Half of Alice's stake is cut; a tenth of that is the bounty; the operator is jailed.
    let slashed = STAKE / 2;
    let bounty = slashed / 10;
    assert_eq!(
        app.ledger.balance(&alice, "eth").expect("bal"),
        STAKE - slashed
    );
    assert_eq!(
        app.ledger.balance(&me, "eth").expect("bal"),
        CHALLENGER_DEPOSIT + bounty
    );
    assert!(
        app.ledger
            .operator(&op)
            .expect("op")
            .expect("registered")
            .jailed
    );
    assert!(app.ledger.is_jailed(&op, NOW).expect("jail"));

    // The same receipt again (another challenger, too): one offence, one slash.
    let before = app.ledger.snapshot().expect("snapshot");
    let (status, again) = post(
        &app.router,
        "/v1/disputes/result",
        &challenge(&challenger(), &lie, &spec, input),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["outcome"], "already_slashed", "{again}");
    assert_eq!(again["offence"], v["offence"]);
    assert_eq!(again["event"], v["event"], "the earlier slash event");
    assert_eq!(app.ledger.snapshot().expect("snapshot"), before);
    assert_eq!(slash_events(&app.ledger), 1);

    // Another challenger disputing the same receipt has its own dispute: judged, but the
    // offence is slashed already, so its bond comes back and nothing else moves.
    let other = sk(41);
    let mut s = Signer::default();
    let deposit = s.req(
        &other,
        RequestBody::Deposit {
            asset: "eth".into(),
            amount: BOND,
        },
    );
    let (status, body) = post(&app.router, "/v1/requests", &deposit).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, third) = post(
        &app.router,
        "/v1/disputes/result",
        &challenge(&other, &lie, &spec, input),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{third}");
    assert_eq!(third["outcome"], "already_slashed", "{third}");
    assert_ne!(third["dispute"], v["dispute"]);
    assert_eq!(
        third["event"]["payload"]["result"]["released"],
        BOND.to_string()
    );
    assert_eq!(
        app.ledger.balance(&Key::of(&other), "eth").expect("bal"),
        BOND
    );
    assert_eq!(slash_events(&app.ledger), 1);
    assert!(app.ledger.open_disputes().expect("open").is_empty());
    assert!(
        app.leftover_containers().is_empty(),
        "containers left behind"
    );
    eprintln!("wrong receipt: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn honest_receipt_is_dismissed_and_the_bond_burned() {
    if !docker_available(&["vouch/wc:dev", "vouch/random:dev", "vouch/sleep:dev"]).await {
        return;
    }
    let started = Instant::now();
    let app = DockerApp::new("reexec", STAKE, CHALLENGER_DEPOSIT, NOW);
    let input = b"the honest operator\ncounts words\n";
    let spec = spec(resolve(&app, "vouch/wc:dev").await, &[], input, "honest");
    // What an honest operator signs: the output of a real run.
    let job_id = spec.job_id().expect("id");
    let RunOutcome::Exited {
        exit_code, stdout, ..
    } = app
        .docker
        .run(job_id, &spec, input.to_vec().into())
        .await
        .expect("run")
    else {
        panic!("wc broke a limit");
    };
    let honest = sign_receipt(&operator(), network(), &spec, &stdout, exit_code, NOW - 10);
    let op = Key::of(&operator());
    let me = Key::of(&challenger());
    let stake_before = app.ledger.slashable_stake(&op, NOW).expect("stake");
    let total_before = app.ledger.snapshot().expect("snap").assets["eth"].total;

    let body = challenge(&challenger(), &honest, &spec, input);
    let (status, v) = post(&app.router, "/v1/disputes/result", &body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "dismissed", "{v}");
    assert_eq!(v["bond_forfeited"], true);
    assert_eq!(v["runs"][0], v["receipt"]);
    assert_eq!(v["runs"][1], v["receipt"]);
    assert_eq!(v["event"]["kind"], "close_dispute");
    assert_eq!(v["event"]["payload"]["result"]["verdict"], "dismissed");
    // The challenger's holdings (deposit + locked bond) lose the bond.
    assert_eq!(
        v["event"]["conservation"]["eth"],
        json!({"before": "1000", "after": "900", "burned": "100", "rewarded": "0"})
    );
    assert_eq!(
        app.ledger.balance(&me, "eth").expect("bal"),
        CHALLENGER_DEPOSIT - BOND
    );
    let snap = app.ledger.snapshot().expect("snap");
    assert_eq!(
        snap.assets["eth"].total,
        total_before - BOND,
        "the bond is burned"
    );
    assert_eq!(
        app.ledger.slashable_stake(&op, NOW).expect("stake"),
        stake_before
    );
    assert!(!app.ledger.is_jailed(&op, NOW).expect("jail"));
    assert_eq!(slash_events(&app.ledger), 0);

    // Replaying the same signed challenge burns nothing more.
    let (status, again) = post(&app.router, "/v1/disputes/result", &body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["outcome"], "dismissed");
    assert_eq!(again["event"], v["event"]);
    assert_eq!(app.ledger.snapshot().expect("snap"), snap);
    assert!(
        app.leftover_containers().is_empty(),
        "containers left behind"
    );
    eprintln!("honest receipt: {:?}", started.elapsed());
}

/// A challenge carries the job's input: one of 3 MiB (three times the verifier's general
/// body limit, well within a node's) is accepted, re-run and judged.
#[tokio::test(flavor = "multi_thread")]
async fn a_challenge_with_a_large_input_is_judged() {
    if !docker_available(&["vouch/wc:dev"]).await {
        return;
    }
    let app = DockerApp::new("reexec", STAKE, CHALLENGER_DEPOSIT, NOW);
    let input: Vec<u8> = b"large inputs are disputable too\n"
        .iter()
        .copied()
        .cycle()
        .take(3 << 20)
        .collect();
    let spec = spec(resolve(&app, "vouch/wc:dev").await, &[], &input, "large");
    let wrong = sign_receipt(&operator(), network(), &spec, b"{}", 0, NOW - 10);
    let body = challenge(&challenger(), &wrong, &spec, &input);
    assert!(serde_json::to_vec(&body).expect("json").len() > 4 << 20);
    let (status, v) = post(&app.router, "/v1/disputes/result", &body).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "slashed", "{v}");
    assert!(
        app.leftover_containers().is_empty(),
        "containers left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nondeterministic_or_limit_breaking_runs_are_void() {
    if !docker_available(&["vouch/wc:dev", "vouch/random:dev", "vouch/sleep:dev"]).await {
        return;
    }
    let started = Instant::now();
    let app = DockerApp::new("reexec", STAKE, CHALLENGER_DEPOSIT, NOW);
    let before = app.ledger.snapshot().expect("snapshot");
    // vouch/random writes different bytes every run, whatever the spec claims.
    let input = b"";
    let random = spec(
        resolve(&app, "vouch/random:dev").await,
        &[],
        input,
        "random",
    );
    let receipt = sign_receipt(&operator(), network(), &random, b"x", 0, NOW - 10);
    let (status, v) = post(
        &app.router,
        "/v1/disputes/result",
        &challenge(&challenger(), &receipt, &random, input),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "void", "{v}");
    assert_ne!(v["runs"][0], v["runs"][1]);
    assert!(v["reason"]
        .as_str()
        .expect("reason")
        .contains("not deterministic"));
    assert_eq!(v["event"]["payload"]["result"]["verdict"], "void");
    assert_eq!(
        v["event"]["payload"]["result"]["released"],
        BOND.to_string()
    );
    assert_eq!(v["bond_forfeited"], false);

    // A run over its timeout gives no result to compare.
    let mut sleepy = spec(
        resolve(&app, "vouch/sleep:dev").await,
        &["5000"],
        input,
        "sleep",
    );
    sleepy.limits.timeout_ms = 300;
    let receipt = sign_receipt(&operator(), network(), &sleepy, b"", 0, NOW - 10);
    let (status, v) = post(
        &app.router,
        "/v1/disputes/result",
        &challenge(&challenger(), &receipt, &sleepy, input),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["outcome"], "void", "{v}");
    assert_eq!(v["runs"][0]["status"], "limit_exceeded");
    assert_eq!(v["runs"][0]["limit"], "timeout");
    assert!(v["reason"].as_str().expect("reason").contains("limit"));

    // Void moves no stake: every bond came back, nothing was slashed or burned.
    let after = app.ledger.snapshot().expect("snapshot");
    assert_eq!(after.balances, before.balances, "void changes no balance");
    assert_eq!(after.assets, before.assets);
    assert_eq!(after.withdrawals, before.withdrawals);
    assert_eq!(after.operators, before.operators);
    assert_eq!(after.offences, before.offences);
    assert_eq!(after.disputes.len(), 2);
    assert!(app.ledger.open_disputes().expect("open").is_empty());

    // The list the explorer reads: newest first, each with its verdict; the log's tail.
    let (status, list) = get(&app.router, "/v1/disputes?limit=10").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["total"], 2, "{list}");
    let jobs: Vec<String> = [&sleepy, &random]
        .iter()
        .map(|s| s.job_id().expect("id").to_string())
        .collect();
    for (i, job) in jobs.iter().enumerate() {
        let d = &list["disputes"][i];
        assert_eq!(d["state"], "decided", "{list}");
        assert_eq!(d["verdict"]["outcome"], "void", "{list}");
        assert_eq!(d["verdict"]["job_id"], job.as_str(), "newest first: {list}");
    }
    let (_, one) = get(&app.router, "/v1/disputes?limit=1").await;
    assert_eq!(one["disputes"].as_array().map(Vec::len), Some(1), "{one}");
    let (status, bad) = get(&app.router, "/v1/disputes?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    let (status, tail) = get(&app.router, "/v1/events?tail=2").await;
    assert_eq!(status, StatusCode::OK, "{tail}");
    let kinds: Vec<&str> = tail["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["open_dispute", "close_dispute"], "{tail}");
    assert_eq!(tail["next"], after.event_count, "{tail}");
    verify_chain(
        &app.ledger.events_from(0, 1000).expect("events"),
        &app.ledger.verifier_key(),
    )
    .expect("chain");
    assert!(
        app.leftover_containers().is_empty(),
        "containers left behind"
    );
    eprintln!("void: {:?}", started.elapsed());
}

/// The same challenge twice at once, while its runs take a while: one dispute, one
/// judgment, one verdict for both; meanwhile the bond is locked and the dispute shows open.
#[tokio::test(flavor = "multi_thread")]
async fn a_dispute_submitted_twice_is_judged_once_with_its_bond_locked() {
    if !docker_available(&["vouch/wc:dev", "vouch/random:dev", "vouch/sleep:dev"]).await {
        return;
    }
    let started = Instant::now();
    let app = DockerApp::new("reexec", STAKE, CHALLENGER_DEPOSIT, NOW);
    let input = b"echoed after a nap\n";
    let spec = spec(
        resolve(&app, "vouch/sleep:dev").await,
        &["3000"],
        input,
        "twice",
    );
    let lie = sign_receipt(
        &operator(),
        network(),
        &spec,
        b"not the input\n",
        0,
        NOW - 10,
    );
    let body = challenge(&challenger(), &lie, &spec, input);
    let first = tokio::spawn({
        let (router, body) = (app.router.clone(), body.clone());
        async move { post(&router, "/v1/disputes/result", &body).await }
    });
    // Opened (bond locked) before anything runs.
    let me = Key::of(&challenger());
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    while app.ledger.open_disputes().expect("open").is_empty() {
        assert!(Instant::now() < deadline, "the dispute was never opened");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let second = tokio::spawn({
        let (router, body) = (app.router.clone(), body.clone());
        async move { post(&router, "/v1/disputes/result", &body).await }
    });
    assert_eq!(app.ledger.locked(&me, "eth").expect("locked"), BOND);
    let dispute = app.ledger.open_disputes().expect("open")[0].id.clone();
    let (status, open) = get(&app.router, &format!("/v1/disputes/{dispute}")).await;
    assert_eq!(status, StatusCode::OK, "{open}");
    assert_eq!(open["state"], "open");
    assert_eq!(open["locked"], BOND.to_string());
    assert!(open["verdict"].is_null());
    // The locked bond cannot leave: only the rest of the deposit can be withdrawn.
    let all = vouch_verifier::SignedRequest::sign(
        &NET,
        &challenger(),
        100,
        RequestBody::QueueWithdrawal {
            asset: "eth".into(),
            amount: CHALLENGER_DEPOSIT,
        },
    )
    .expect("sign");
    let (status, refused) = post(&app.router, "/v1/requests", &all).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["error"]["code"], "insufficient_balance");

    let (s1, v1) = first.await.expect("first");
    let (s2, v2) = second.await.expect("second");
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK), "{v1} {v2}");
    assert_eq!(v1["outcome"], "slashed", "{v1}");
    assert_eq!(v2, v1, "the same judgment");
    let kinds: Vec<String> = app
        .ledger
        .events_from(0, 1000)
        .expect("events")
        .into_iter()
        .map(|e| e.kind)
        .filter(|k| k.contains("dispute"))
        .collect();
    assert_eq!(kinds, ["open_dispute", "close_dispute"]);
    assert_eq!(slash_events(&app.ledger), 1);
    assert_eq!(app.ledger.locked(&me, "eth").expect("locked"), 0);
    assert!(
        app.leftover_containers().is_empty(),
        "containers left behind"
    );
    eprintln!("submitted twice: {:?}", started.elapsed());
}

/// Challenges refused before anything runs: 4xx with a code, and the ledger unchanged.
/// Needs no Docker (the image is a made-up id that is never run).
#[tokio::test]
async fn bad_challenges_are_refused_and_change_nothing() {
    let app = DockerApp::new("reexec", STAKE, CHALLENGER_DEPOSIT, NOW);
    let input = b"input bytes\n";
    let good = spec(Digest::of(b"image"), &[], input, "bad");
    let other_spec = spec(Digest::of(b"image"), &[], input, "another nonce");
    let receipt = sign_receipt(&operator(), network(), &good, b"out", 0, NOW - 10);
    let c = challenger();
    type Case = (&'static str, Value, StatusCode, &'static str);
    let mut cases: Vec<Case> = vec![
        (
            "spec of another job",
            challenge(&c, &receipt, &other_spec, input),
            StatusCode::UNPROCESSABLE_ENTITY,
            "receipt_mismatch",
        ),
        (
            "input whose digest is not the spec's",
            challenge(&c, &receipt, &good, b"other input\n"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "receipt_mismatch",
        ),
        (
            "unknown operator",
            challenge(
                &c,
                &sign_receipt(&sk(50), network(), &good, b"out", 0, NOW - 10),
                &good,
                input,
            ),
            StatusCode::NOT_FOUND,
            "unknown_operator",
        ),
        (
            "receipt of another network",
            challenge(
                &c,
                &sign_receipt(
                    &operator(),
                    NetworkId::from_name("elsewhere"),
                    &good,
                    b"out",
                    0,
                    NOW - 10,
                ),
                &good,
                input,
            ),
            StatusCode::BAD_REQUEST,
            "wrong_network",
        ),
        (
            "receipt older than the challenge window",
            challenge(
                &c,
                &sign_receipt(
                    &operator(),
                    network(),
                    &good,
                    b"out",
                    0,
                    NOW - WINDOW_MS - 1,
                ),
                &good,
                input,
            ),
            StatusCode::CONFLICT,
            "receipt_final",
        ),
        (
            "nondeterministic spec",
            {
                let mut nd = good.clone();
                nd.determinism = Determinism::Nondeterministic;
                let r = sign_receipt(&operator(), network(), &nd, b"out", 0, NOW - 10);
                challenge(&c, &r, &nd, input)
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_disputable",
        ),
        (
            "bond above the challenger's balance",
            {
                let mut v = challenge(&c, &receipt, &good, input);
                let bond = Bond {
                    asset: "eth".into(),
                    amount: CHALLENGER_DEPOSIT + 1,
                };
                let id = result_dispute_id(
                    &network(),
                    &Key::of(&c),
                    &receipt.receipt.signing_root(),
                    &bond,
                )
                .expect("id");
                v["bond"] = json!(bond);
                v["signature"] = json!(Sig(c.sign(&id).to_bytes()));
                v
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "insufficient_balance",
        ),
        (
            "someone else's bond (signature by another key)",
            {
                let mut v = challenge(&sk(10), &receipt, &good, input);
                v["challenger"] = json!(Key::of(&c));
                v
            },
            StatusCode::UNAUTHORIZED,
            "bad_signature",
        ),
        (
            "receipt whose JSON view was edited",
            {
                let mut v = challenge(&c, &receipt, &good, input);
                v["receipt"]["exit_code"] = json!(1);
                v
            },
            StatusCode::BAD_REQUEST,
            "invalid_receipt",
        ),
    ];
    let mut tampered = challenge(&c, &receipt, &good, input);
    tampered["input_base64"] = json!("not base64!");
    cases.push((
        "input that is not base64",
        tampered,
        StatusCode::BAD_REQUEST,
        "invalid_value",
    ));
    for (name, body, status, code) in cases {
        let before = app.ledger.snapshot().expect("snapshot");
        let (got, v) = post(&app.router, "/v1/disputes/result", &body).await;
        assert_eq!(got, status, "{name}: {v}");
        assert_eq!(v["error"]["code"], code, "{name}: {v}");
        assert_eq!(
            app.ledger.snapshot().expect("snapshot"),
            before,
            "{name}: state changed"
        );
    }
}
