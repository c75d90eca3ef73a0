//! Withholding disputes (SPEC.md §11.5) through the HTTP API (`oneshot`) over a real
//! SQLite ledger file, with the verifier's clock in the test's hands: the demand is
//! refused or opened, an answer publishes the evidence before the deadline (the bond comes
//! back, nobody is slashed), no answer by the deadline slashes the operator once, and an
//! open dispute's deadline is still enforced by a verifier started again on the file.
//!
//! The operator side (a real node answering on its own, a `--fault withhold` node that
//! does not) is in `node/tests/disputes.rs`.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use common::*;
use ed25519_dalek::Signer as _;
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use vouch_proto::{
    merkle_proof, merkle_root, Amount, Determinism, Digest, JobSpec, Limits, OperatorKey, Receipt,
    SignedReceipt,
};
use vouch_verifier::{
    router, withholding_dispute_id, ApiState, Bond, Demand, DisputeConfig, Key, LedgerConfig, Sig,
    SqliteLedger, Verifier,
};

const STAKE: u128 = 10_000;
const DEPOSIT: u128 = 1_000;
const BOND: u128 = 100;
const START: u64 = 1_795_000_000_000;
const WINDOW_MS: u64 = 600_000;
const DEADLINE_MS: u64 = 5_000;

/// A verifier over a ledger file in `dir` whose clock is `clock`.
fn app(dir: &std::path::Path, clock: &Arc<AtomicU64>, seed: bool) -> (Router, Arc<Verifier>) {
    let config = LedgerConfig::new(WINDOW_MS, 2 * WINDOW_MS, 1_000).expect("config");
    let ledger = Arc::new(
        SqliteLedger::open(dir.join("ledger.sqlite"), config, NET, admin()).expect("open"),
    );
    if seed {
        let mut s = Signer::default();
        let mut requests = staked_operator(&mut s, &operator(), STAKE);
        requests.push(s.req(
            &challenger(),
            vouch_verifier::RequestBody::Deposit {
                asset: "eth".into(),
                amount: DEPOSIT,
            },
        ));
        for r in &requests {
            ok(&*ledger, r, START);
        }
    }
    let c = clock.clone();
    let verifier = Arc::new(
        Verifier::new(ledger, admin(), network(), DisputeConfig::default())
            .with_clock(move || c.load(Ordering::SeqCst))
            .with_withholding_deadline_ms(DEADLINE_MS),
    );
    (router(ApiState::new(verifier.clone())), verifier)
}

async fn call(app: &Router, method: &str, uri: &str, body: Option<&Value>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(match body {
            Some(b) => Body::from(serde_json::to_vec(b).expect("json")),
            None => Body::empty(),
        })
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{uri}: not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}

const INPUT: &[u8] = b"{\"messages\":[]}";

/// The job's spec.
fn spec() -> JobSpec {
    JobSpec {
        image: Digest([2; 32]),
        command: vec![],
        env: vec![],
        input_digest: Digest::of(INPUT),
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
        nonce: "withholding".into(),
    }
}

/// A receipt by the standard operator of [`spec`]'s job over `output` and an 8-leaf
/// trace, issued at `at`.
fn receipt(output: &[u8], trace: &[Vec<u8>], at: u64) -> SignedReceipt {
    let op = operator();
    let receipt = Receipt {
        network_id: network(),
        operator: OperatorKey(op.verifying_key().to_bytes()),
        sequence: 7,
        job_id: spec().job_id().expect("job id"),
        image: Digest([2; 32]),
        input_digest: Digest::of(INPUT),
        output_digest: Digest::of(output),
        output_len: output.len() as u64,
        exit_code: 0,
        trace_root: merkle_root(trace),
        trace_len: trace.len() as u64,
        issued_at_ms: at,
    };
    let signature = op.sign(&receipt.signing_root()).to_bytes();
    SignedReceipt { receipt, signature }
}

fn trace() -> Vec<Vec<u8>> {
    (0..8u8).map(|i| vec![i; 20]).collect()
}

const OUTPUT: &[u8] = b"{\"tokens\":[1,2,3]}";

/// The signed challenge body demanding `demand`.
fn challenge(r: &SignedReceipt, demand: &Demand) -> Value {
    let bond = Bond {
        asset: "eth".into(),
        amount: BOND,
    };
    let who = challenger();
    let id = withholding_dispute_id(
        &network(),
        &Key::of(&who),
        &r.receipt.signing_root(),
        demand,
        &bond,
    )
    .expect("id");
    json!({
        "challenger": Key::of(&who),
        "bond": bond,
        "signature": Sig(who.sign(&id).to_bytes()),
        "receipt": r.to_json(),
        "demand": demand,
    })
}

/// The answer an honest operator gives.
fn answer(output: Option<&[u8]>, positions: &[u32]) -> Value {
    let t = trace();
    json!({
        "output_base64": output.map(|o| base64::engine::general_purpose::STANDARD.encode(o)),
        "leaves": positions.iter().map(|&i| json!({
            "index": i,
            "leaf": hex::encode(&t[i as usize]),
            "proof": merkle_proof(&t, i as usize).expect("in range").iter().map(hex::encode).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn balance(v: &Verifier) -> u128 {
    v.ledger()
        .balance(&Key::of(&challenger()), "eth")
        .expect("balance")
}

fn stake(v: &Verifier) -> u128 {
    v.ledger()
        .slashable_stake(&Key::of(&operator()), START)
        .expect("stake")
        .get("eth")
        .copied()
        .unwrap_or(0)
}

/// Asks `GET /v1/disputes/{id}` until it is decided (the deadline's task runs on its own).
async fn decided(app: &Router, id: &str) -> Value {
    for _ in 0..100 {
        let (status, d) = call(app, "GET", &format!("/v1/disputes/{id}"), None).await;
        assert_eq!(status, StatusCode::OK, "{d:#}");
        if d["state"] == "decided" {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("dispute {id} was not decided");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_deadline_publishes_the_evidence_and_returns_the_bond() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(AtomicU64::new(START));
    let (app, v) = app(dir.path(), &clock, true);
    let r = receipt(OUTPUT, &trace(), START);
    let demand = Demand {
        output: true,
        positions: vec![2, 5],
        ..Demand::default()
    };
    let (status, open) = call(
        &app,
        "POST",
        "/v1/disputes/withholding",
        Some(&challenge(&r, &demand)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{open:#}");
    assert_eq!(open["state"], "open", "{open:#}");
    assert_eq!(open["kind"], "withholding");
    assert_eq!(open["withholding"]["deadline_ms"], START + DEADLINE_MS);
    assert_eq!(open["withholding"]["demand"]["positions"], json!([2, 5]));
    assert_eq!(balance(&v), DEPOSIT - BOND, "the bond is locked");
    let id = open["dispute"].as_str().expect("id").to_owned();

    // What an operator's node polls for.
    let op = Key::of(&operator());
    let (_, listed) = call(
        &app,
        "GET",
        &format!("/v1/disputes?state=open&kind=withholding&operator={op}"),
        None,
    )
    .await;
    assert_eq!(
        listed["disputes"].as_array().expect("list").len(),
        1,
        "{listed:#}"
    );
    assert_eq!(listed["disputes"][0]["dispute"], id.as_str());
    let (_, other) = call(
        &app,
        "GET",
        &format!("/v1/disputes?state=open&operator={}", Key::of(&sk(99))),
        None,
    )
    .await;
    assert_eq!(other["disputes"], json!([]));

    // Answers that do not publish what was demanded are refused and change nothing.
    let mut forged = answer(Some(OUTPUT), &[2, 5]);
    forged["leaves"][1]["leaf"] = hex::encode([9u8; 20]).into();
    let mut wrong_output = answer(Some(b"something else"), &[2, 5]);
    wrong_output["leaves"] = answer(None, &[2, 5])["leaves"].clone();
    for bad in [
        forged,
        wrong_output,
        answer(Some(OUTPUT), &[2]),
        answer(None, &[2, 5]),
        answer(Some(OUTPUT), &[2, 5, 6]),
    ] {
        let (status, err) = call(
            &app,
            "POST",
            &format!("/v1/disputes/{id}/answer"),
            Some(&bad),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err:#}");
        assert_eq!(err["error"]["code"], "bad_answer", "{err:#}");
    }
    let (_, still) = call(&app, "GET", &format!("/v1/disputes/{id}"), None).await;
    assert_eq!(still["state"], "open");
    let (status, err) = call(
        &app,
        "POST",
        &format!("/v1/disputes/{id}/answer"),
        Some(&json!({"leaves": "no"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err:#}");

    // The honest answer, one second before the deadline.
    clock.store(START + DEADLINE_MS - 1_000, Ordering::SeqCst);
    let (status, done) = call(
        &app,
        "POST",
        &format!("/v1/disputes/{id}/answer"),
        Some(&answer(Some(OUTPUT), &[5, 2])),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done:#}");
    assert_eq!(done["state"], "decided");
    let verdict = &done["verdict"];
    assert_eq!(verdict["outcome"], "void", "{verdict:#}");
    assert_eq!(verdict["kind"], "withholding");
    assert_eq!(verdict["bond_forfeited"], false);
    // The evidence is public now: anyone can read it back and check it.
    let published = &done["withholding"]["answer"];
    let output = base64::engine::general_purpose::STANDARD
        .decode(published["output_base64"].as_str().expect("output"))
        .expect("base64");
    assert_eq!(output, OUTPUT);
    for leaf in published["leaves"].as_array().expect("leaves") {
        let proof = vouch_verifier::token::parse_proof(
            &serde_json::from_value::<Vec<String>>(leaf["proof"].clone()).expect("proof"),
        )
        .expect("hex");
        vouch_proto::verify_merkle_proof(
            &r.receipt.trace_root,
            r.receipt.trace_len,
            leaf["index"].as_u64().expect("index"),
            &hex::decode(leaf["leaf"].as_str().expect("leaf")).expect("hex"),
            &proof,
        )
        .expect("a published leaf opens against the signed root");
    }
    assert_eq!(balance(&v), DEPOSIT, "the bond came back");

    // The deadline passes: nothing more happens.
    clock.store(START + DEADLINE_MS + 10_000, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        stake(&v),
        STAKE,
        "an operator that answered keeps its stake"
    );
    let (_, listed) = call(
        &app,
        "GET",
        &format!("/v1/disputes?state=open&kind=withholding&operator={op}"),
        None,
    )
    .await;
    assert_eq!(listed["disputes"], json!([]));
    let (status, err) = call(
        &app,
        "POST",
        &format!("/v1/disputes/{id}/answer"),
        Some(&answer(Some(OUTPUT), &[2, 5])),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err:#}");
    assert_eq!(err["error"]["code"], "dispute_decided");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_by_the_deadline_slashes_the_operator_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(AtomicU64::new(START));
    let (app, v) = app(dir.path(), &clock, true);
    let r = receipt(OUTPUT, &trace(), START);
    let mut ids = vec![];
    for demand in [
        Demand {
            output: true,
            positions: vec![],
            ..Demand::default()
        },
        Demand {
            output: false,
            positions: vec![0, 7],
            ..Demand::default()
        },
    ] {
        let (status, open) = call(
            &app,
            "POST",
            "/v1/disputes/withholding",
            Some(&challenge(&r, &demand)),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{open:#}");
        ids.push(open["dispute"].as_str().expect("id").to_owned());
    }
    assert_eq!(balance(&v), DEPOSIT - 2 * BOND);
    // The same challenge again is the same dispute.
    let (status, again) = call(
        &app,
        "POST",
        "/v1/disputes/withholding",
        Some(&challenge(
            &r,
            &Demand {
                output: true,
                positions: vec![],
                ..Demand::default()
            },
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["dispute"], ids[0].as_str());
    assert_eq!(balance(&v), DEPOSIT - 2 * BOND, "one bond per dispute");

    // Past the deadline an answer is too late, and the deadline's task slashes.
    clock.store(START + DEADLINE_MS + 1, Ordering::SeqCst);
    let (status, err) = call(
        &app,
        "POST",
        &format!("/v1/disputes/{}/answer", ids[0]),
        Some(&answer(Some(OUTPUT), &[])),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err:#}");
    let mut outcomes = vec![];
    for id in &ids {
        let d = decided(&app, id).await;
        assert_eq!(d["verdict"]["kind"], "withholding");
        assert!(d["withholding"]["answer"].is_null(), "{d:#}");
        outcomes.push(
            d["verdict"]["outcome"]
                .as_str()
                .expect("outcome")
                .to_owned(),
        );
    }
    outcomes.sort();
    // One receipt, one offence (the wrong-result one): slashed once.
    assert_eq!(outcomes, ["already_slashed", "slashed"]);
    assert_eq!(
        stake(&v),
        STAKE / 2,
        "half the stake (the wrong-result fraction)"
    );
    let jailed = v
        .ledger()
        .is_jailed(&Key::of(&operator()), START + DEADLINE_MS + 1)
        .expect("jailed");
    assert!(jailed);
    // Both bonds back, plus the bounty (a tenth of the slash).
    assert_eq!(balance(&v), DEPOSIT + STAKE / 2 / 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demands_no_operator_could_meet_are_refused_and_lock_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(AtomicU64::new(START));
    let (app, v) = app(dir.path(), &clock, true);
    let r = receipt(OUTPUT, &trace(), START);
    let cases = [
        (
            Demand::default(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_demand",
        ),
        (
            Demand {
                output: false,
                positions: vec![8],
                ..Demand::default()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_demand",
        ),
        (
            Demand {
                output: false,
                positions: vec![3, 1],
                ..Demand::default()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_demand",
        ),
        (
            Demand {
                output: false,
                positions: (0..65).collect(),
                ..Demand::default()
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "bad_demand",
        ),
    ];
    for (demand, status, code) in cases {
        let (got, err) = call(
            &app,
            "POST",
            "/v1/disputes/withholding",
            Some(&challenge(&r, &demand)),
        )
        .await;
        assert_eq!(got, status, "{demand:?}: {err:#}");
        assert_eq!(err["error"]["code"], code, "{err:#}");
    }
    // A signature over another demand.
    let mut body = challenge(
        &r,
        &Demand {
            output: true,
            positions: vec![],
            ..Demand::default()
        },
    );
    body["demand"]["positions"] = json!([1]);
    let (got, err) = call(&app, "POST", "/v1/disputes/withholding", Some(&body)).await;
    assert_eq!(got, StatusCode::UNAUTHORIZED, "{err:#}");
    // Too late: the evidence could not be disputed once published.
    let old = receipt(OUTPUT, &trace(), START - WINDOW_MS + DEADLINE_MS);
    let (got, err) = call(
        &app,
        "POST",
        "/v1/disputes/withholding",
        Some(&challenge(
            &old,
            &Demand {
                output: true,
                positions: vec![],
                ..Demand::default()
            },
        )),
    )
    .await;
    assert_eq!(got, StatusCode::CONFLICT, "{err:#}");
    assert_eq!(err["error"]["code"], "receipt_final");
    assert_eq!(balance(&v), DEPOSIT, "nothing locked");
    assert!(v.ledger().open_disputes().expect("open").is_empty());
}

#[test]
fn an_open_withholding_dispute_is_enforced_by_a_restarted_verifier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(AtomicU64::new(START));
    let r = receipt(OUTPUT, &trace(), START);
    // The first process opens it and dies (its runtime, with the deadline's task, is
    // dropped) before the deadline.
    let id = {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let (app, _) = app(dir.path(), &clock, true);
            let (status, open) = call(
                &app,
                "POST",
                "/v1/disputes/withholding",
                Some(&challenge(
                    &r,
                    &Demand {
                        output: false,
                        positions: vec![4],
                        ..Demand::default()
                    },
                )),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{open:#}");
            open["dispute"].as_str().expect("id").to_owned()
        })
    };
    // The deadline passes while no verifier runs; the next one finds the dispute open.
    clock.store(START + DEADLINE_MS + 60_000, Ordering::SeqCst);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (app, v) = app(dir.path(), &clock, false);
        let (_, open) = call(&app, "GET", &format!("/v1/disputes/{id}"), None).await;
        assert_eq!(open["state"], "open", "{open:#}");
        assert_eq!(v.resume_open_disputes().await.expect("resume"), 1);
        let d = decided(&app, &id).await;
        assert_eq!(d["verdict"]["outcome"], "slashed", "{d:#}");
        assert_eq!(stake(&v), STAKE / 2);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spec_and_input_a_re_execution_needs_can_be_demanded_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(AtomicU64::new(START));
    let (app, v) = app(dir.path(), &clock, true);
    let r = receipt(OUTPUT, &trace(), START);
    let demand = Demand {
        spec: true,
        input: true,
        ..Demand::default()
    };
    let (status, open) = call(
        &app,
        "POST",
        "/v1/disputes/withholding",
        Some(&challenge(&r, &demand)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{open:#}");
    let id = open["dispute"].as_str().expect("id").to_owned();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut other_spec = spec();
    other_spec.nonce = "another job".into();
    for (bad, why) in [
        (
            json!({"spec": spec(), "input_base64": b64(b"other input")}),
            "input_digest",
        ),
        (
            json!({"spec": other_spec, "input_base64": b64(INPUT)}),
            "job id",
        ),
        (json!({"input_base64": b64(INPUT)}), "spec was demanded"),
        (
            json!({"spec": {"image": 1}, "input_base64": b64(INPUT)}),
            "not a valid job spec",
        ),
    ] {
        let (status, err) = call(
            &app,
            "POST",
            &format!("/v1/disputes/{id}/answer"),
            Some(&bad),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err:#}");
        let message = err["error"]["message"].as_str().expect("message");
        assert!(message.contains(why), "{why}: {message}");
    }
    let (status, done) = call(
        &app,
        "POST",
        &format!("/v1/disputes/{id}/answer"),
        Some(&json!({"spec": spec(), "input_base64": b64(INPUT)})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done:#}");
    assert_eq!(done["verdict"]["outcome"], "void");
    // What a watcher takes from the published answer to re-run the job.
    let published: JobSpec =
        serde_json::from_value(done["withholding"]["answer"]["spec"].clone()).expect("spec");
    assert_eq!(published.job_id().expect("id"), r.receipt.job_id);
    assert_eq!(balance(&v), DEPOSIT);
}
