//! Wrong-result disputes end to end with real nodes: three operator nodes (real Docker,
//! real libp2p swarms on 127.0.0.1) take their registry from a real verifier (its HTTP API
//! in this process, a SQLite ledger file, its own Docker executor), and a challenger
//! disputes receipts the nodes signed:
//!
//! - the dishonest node's (`--fault wrong-output`) → slashed and jailed; the nodes drop it
//!   from their registry, and its later receipts are rejected at the first hop;
//! - an honest node's → dismissed: it keeps its stake, the challenger loses its bond;
//! - a workload declared deterministic that is not (`vouch/random`) → void: no slash, the
//!   bond comes back;
//! - an equivocating node's (`--fault equivocate`) two receipts for one job, as another
//!   node heard them → slashed on the signatures alone, once;
//! - a node that signs a generation with one wrong token (`--fault wrong-token`) → slashed
//!   by a one-token dispute (`POST /v1/disputes/token`) that recomputes that token only;
//! - withholding disputes (`POST /v1/disputes/withholding`) of chat completions: an honest
//!   node publishes the demanded output and leaves on its own before the deadline (void,
//!   bond back), a `--fault withhold` node does not and is slashed at the deadline.

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    bootstrap_addr, client, containers_with_label, docker_available, get, key, observer, run_job,
    submit, wait_until, TestNode,
};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use vouch_exec::DockerExecutor;
use vouch_net::TopicKind;
use vouch_node::config::Fault;
use vouch_node::disputes::{Challenger, Posted};
use vouch_proto::{JobSpec, NetworkId, ReceiptJson, SignedReceipt};
use vouch_verifier::{
    router, ApiState, CollateralLedger as _, DisputeConfig, Key, LedgerConfig, RequestBody,
    SignedRequest, SqliteLedger, Verifier,
};

const STAKE: u128 = 1_000;
const DEPOSIT: u128 = 1_000;
const BOND: u128 = 10;
/// How long an operator has to answer a withholding dispute in these tests.
const WITHHOLDING_DEADLINE_MS: u64 = 4_000;

fn network() -> NetworkId {
    NetworkId::parse_or_name("vouch-devnet")
}

/// The verifier's API on 127.0.0.1, over a real ledger file and a Docker executor.
struct VerifierUnderTest {
    url: String,
    ledger: Arc<SqliteLedger>,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
    /// The label of its Docker containers (a one-token dispute leaves a warm one).
    label: String,
}

impl Drop for VerifierUnderTest {
    fn drop(&mut self) {
        self.task.abort();
        for id in containers_with_label(&self.label) {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", &id])
                .output();
        }
    }
}

async fn start_verifier(admin: &SigningKey) -> VerifierUnderTest {
    let dir = tempfile::tempdir().unwrap();
    // A 10-minute challenge window; withdrawals wait longer; 100 ETH-units to be active.
    let config = LedgerConfig::new(600_000, 1_200_000, 100).unwrap();
    let ledger = Arc::new(
        SqliteLedger::open(
            dir.path().join("ledger.sqlite"),
            config,
            network().0,
            admin.clone(),
        )
        .unwrap(),
    );
    let label = format!("verifier-test-{}", hex::encode(rand::random::<[u8; 6]>()));
    let docker = Arc::new(DockerExecutor::new(
        DockerExecutor::default_host(),
        label.clone(),
    ));
    let verifier = Verifier::new(
        ledger.clone(),
        admin.clone(),
        network(),
        DisputeConfig::default(),
    )
    .with_executor(docker)
    .with_withholding_deadline_ms(WITHHOLDING_DEADLINE_MS);
    let app = router(ApiState::new(Arc::new(verifier)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    VerifierUnderTest {
        url,
        ledger,
        _dir: dir,
        task,
        label,
    }
}

/// Signs ledger requests with increasing nonces per actor and posts them.
struct Requests {
    url: String,
    nonces: std::collections::HashMap<Key, u64>,
}

impl Requests {
    async fn send(&mut self, who: &SigningKey, body: RequestBody, peer: Option<&SigningKey>) {
        let n = self.nonces.entry(Key::of(who)).or_insert(0);
        *n += 1;
        let mut req = SignedRequest::sign(&network().0, who, *n, body).unwrap();
        if let Some(p) = peer {
            req = req.with_peer_signature(&network().0, p).unwrap();
        }
        let resp = client()
            .post(format!("{}/v1/requests", self.url))
            .json(&req)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{}: {status} {text}", req.body.kind());
    }
}

async fn operator_view(v: &VerifierUnderTest, op: &str) -> Value {
    get(&format!("{}/v1/operators/{op}", v.url)).await
}

/// Posts a challenge of `job`'s receipt (as `node` serves the job) and waits for the
/// verdict.
async fn challenge(ch: &Challenger, node: &TestNode, job: &Value, input: &[u8]) -> String {
    let receipt: SignedReceipt = serde_json::from_value::<ReceiptJson>(job["receipt"].clone())
        .unwrap()
        .verify()
        .unwrap();
    let spec: JobSpec = serde_json::from_value(job["spec"].clone()).unwrap();
    assert_eq!(
        spec.job_id().unwrap(),
        receipt.receipt.job_id,
        "{}",
        node.url
    );
    let body = ch.body(&network(), &receipt, &spec, input);
    let id = hex::encode(ch.dispute_id(&network(), &receipt));
    let mut posted = ch.post(&body).await;
    for _ in 0..120 {
        match posted {
            Posted::Verdict(outcome, _) => return outcome,
            Posted::Refused(why) => panic!("the verifier refused the challenge: {why}"),
            Posted::Pending | Posted::Retry(_) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                posted = ch.poll(&id).await;
            }
        }
    }
    panic!("no verdict for dispute {id}");
}

async fn rejected_unregistered(node: &TestNode) -> u64 {
    let m = client()
        .get(format!("{}/metrics", node.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    m.lines()
        .find(|l| l.starts_with("vouch_p2p_messages{") && l.contains("reason=\"unregistered\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// A verifier with a seeded ledger (one asset; `faults.len()` operators, each staked by its
/// own restaker and fully allocated; a challenger with a deposit) and one node per operator
/// whose registry is the verifier's; `faults[i]` is node `i`'s misbehaviour.
struct World {
    v: VerifierUnderTest,
    nodes: Vec<TestNode>,
    challenger_key: SigningKey,
    challenger_file: std::path::PathBuf,
    _challenger_dir: tempfile::TempDir,
}

impl World {
    async fn new(faults: &[Option<Fault>]) -> World {
        let admin = key();
        let v = start_verifier(&admin).await;
        let ops: Vec<SigningKey> = (0..faults.len()).map(|_| key()).collect();
        let restakers: Vec<SigningKey> = (0..faults.len()).map(|_| key()).collect();
        let challenger_dir = tempfile::tempdir().unwrap();
        let challenger_file = challenger_dir.path().join("challenger.pem");
        let challenger_key = vouch_node::keys::generate(&challenger_file).unwrap();

        // The ledger: one asset, three staked operators, a challenger with a deposit.
        let mut r = Requests {
            url: v.url.clone(),
            nonces: Default::default(),
        };
        let eth = || "eth".to_string();
        r.send(
            &admin,
            RequestBody::RegisterAsset {
                asset: eth(),
                price_per_unit: 1,
            },
            None,
        )
        .await;
        for (op, restaker) in ops.iter().zip(&restakers) {
            let peer = key();
            r.send(
                op,
                RequestBody::RegisterOperator {
                    peer_key: Key::of(&peer),
                },
                Some(&peer),
            )
            .await;
            r.send(
                op,
                RequestBody::Allocate {
                    magnitude_ppm: 1_000_000,
                },
                None,
            )
            .await;
            r.send(
                restaker,
                RequestBody::Deposit {
                    asset: eth(),
                    amount: STAKE,
                },
                None,
            )
            .await;
            r.send(
                restaker,
                RequestBody::Delegate {
                    operator: Key::of(op),
                },
                None,
            )
            .await;
        }
        r.send(
            &challenger_key,
            RequestBody::Deposit {
                asset: eth(),
                amount: DEPOSIT,
            },
            None,
        )
        .await;

        // Three nodes whose registry is the verifier's; node 3 signs wrong outputs.
        let mut nodes: Vec<TestNode> = Vec::new();
        let mut boot: Option<String> = None;
        for (i, k) in ops.iter().enumerate() {
            let (b, vurl, fault) = (boot.clone(), v.url.clone(), faults[i]);
            let node = TestNode::start_with_key(k.clone(), move |c| {
                c.p2p.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
                c.p2p.mdns = false;
                c.p2p.verifier_url = Some(vurl);
                c.p2p.registry_refresh_ms = 300;
                c.p2p.withholding_poll_ms = 300;
                c.p2p.bootstrap = b.into_iter().collect();
                c.fault = fault;
            })
            .await;
            if i == 0 {
                let p = get(&format!("{}/v1/peers", node.url)).await;
                boot = Some(format!(
                    "{}/p2p/{}",
                    p["listen_addrs"][0].as_str().unwrap(),
                    p["peer_id"].as_str().unwrap()
                ));
            }
            nodes.push(node);
        }
        for n in &nodes {
            wait_until("every node joins the receipts mesh", async || {
                let p = get(&format!("{}/v1/peers", n.url)).await;
                p["registry"]["operators"].as_array().unwrap().len() == faults.len()
                    && !p["receipts_mesh"].as_array().unwrap().is_empty()
            })
            .await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        World {
            v,
            nodes,
            challenger_key,
            challenger_file,
            _challenger_dir: challenger_dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disputes_of_real_receipts_slash_dismiss_and_void() {
    if !docker_available().await {
        return;
    }
    let w = World::new(&[None, None, Some(Fault::WrongOutput)]).await;
    let (v, nodes, challenger_key) = (&w.v, &w.nodes, &w.challenger_key);
    let challenger_file = &w.challenger_file;
    let ch = Challenger::load(challenger_file, &format!("eth:{BOND}"), &v.url).unwrap();
    let balance = async || v.ledger.balance(&Key::of(challenger_key), "eth").unwrap();

    // 1. The dishonest node's receipt: slashed, jailed, bounty to the challenger.
    let input = b"one two three";
    let job3 = run_job(
        &nodes[2].url,
        json!({"image": "vouch/wc:dev", "input": "one two three", "nonce": "dishonest"}),
    )
    .await;
    assert_eq!(job3["status"], "succeeded");
    assert_eq!(challenge(&ch, &nodes[2], &job3, input).await, "slashed");
    let op3 = operator_view(v, &nodes[2].operator).await;
    assert_eq!(op3["jailed"], true, "{op3:#}");
    assert_eq!(
        op3["slashable_stake"]["eth"], "500",
        "half is slashed: {op3:#}"
    );
    assert_eq!(
        balance().await,
        DEPOSIT + 50,
        "the bounty (a tenth of the slash)"
    );

    // Its later gossip is rejected. The nodes drop it from their registry (its own node
    // included, which then refuses to publish what peers would reject); a receipt it signs
    // afterwards, pushed onto the network anyway by a peer with a stale registry, is
    // rejected at the first hop and recorded nowhere.
    for n in nodes {
        wait_until("every node drops the jailed operator", async || {
            let p = get(&format!("{}/v1/peers", n.url)).await;
            p["registry"]["operators"].as_array().unwrap().len() == 2
        })
        .await;
    }
    let later = run_job(
        &nodes[2].url,
        json!({"image": "vouch/wc:dev", "input": "after the slash", "nonce": "later"}),
    )
    .await;
    assert_eq!(
        later["status"], "succeeded",
        "a jailed node still runs jobs"
    );
    let later_id = later["job_id"].as_str().unwrap().to_string();
    let later_receipt: SignedReceipt =
        serde_json::from_value::<ReceiptJson>(later["receipt"].clone())
            .unwrap()
            .verify()
            .unwrap();
    let stale: Vec<String> = nodes.iter().map(|n| n.operator.clone()).collect();
    let liar = observer(&bootstrap_addr(&nodes[0].url).await, &stale).await;
    wait_until("the stale peer joins the receipts mesh", async || {
        !liar
            .mesh_peers(TopicKind::Receipts)
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    let rejected_before = rejected_unregistered(&nodes[0]).await;
    liar.publish_receipt(&later_receipt).await.unwrap();
    wait_until("node 1 rejects the jailed operator's receipt", async || {
        rejected_unregistered(&nodes[0]).await > rejected_before
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for n in &nodes[..2] {
        let seen = get(&format!("{}/v1/jobs/{later_id}/receipts", n.url)).await;
        assert_eq!(seen["receipts"], json!([]), "{}: {seen:#}", n.url);
    }
    liar.shutdown().await.unwrap();

    // 2. An honest node's receipt: dismissed; it keeps its stake, the bond is burned.
    let job1 = run_job(
        &nodes[0].url,
        json!({"image": "vouch/wc:dev", "input": "one two three", "nonce": "honest"}),
    )
    .await;
    let before = balance().await;
    assert_eq!(challenge(&ch, &nodes[0], &job1, input).await, "dismissed");
    let op1 = operator_view(v, &nodes[0].operator).await;
    assert_eq!(op1["jailed"], false, "{op1:#}");
    assert_eq!(op1["slashable_stake"]["eth"], STAKE.to_string(), "{op1:#}");
    assert_eq!(
        balance().await,
        before - BOND,
        "the challenger's bond is burned"
    );

    // 3. A workload that is not deterministic: void, nothing slashed, the bond returned.
    let job2 = run_job(
        &nodes[1].url,
        json!({"image": "vouch/random:dev", "nonce": "random"}),
    )
    .await;
    assert_eq!(job2["status"], "succeeded", "{job2:#}");
    let before = balance().await;
    assert_eq!(challenge(&ch, &nodes[1], &job2, b"").await, "void");
    let op2 = operator_view(v, &nodes[1].operator).await;
    assert_eq!(op2["jailed"], false);
    assert_eq!(op2["slashable_stake"]["eth"], STAKE.to_string(), "{op2:#}");
    assert_eq!(balance().await, before, "the bond is unlocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_equivocation_gossiped_by_a_real_node_is_slashed_without_re_execution() {
    if !docker_available().await {
        return;
    }
    let w = World::new(&[None, Some(Fault::Equivocate)]).await;
    let (v, nodes) = (&w.v, &w.nodes);
    let done = run_job(
        &nodes[1].url,
        json!({"image": "vouch/wc:dev", "input": "two stories", "nonce": "equivocate"}),
    )
    .await;
    assert_eq!(done["status"], "succeeded");
    let id = done["job_id"].as_str().unwrap().to_string();
    // The honest node records both receipts the equivocator gossiped for the job …
    let url = format!("{}/v1/jobs/{id}/receipts", nodes[0].url);
    wait_until("both receipts reach the honest node", async || {
        get(&url).await["receipts"].as_array().unwrap().len() == 2
    })
    .await;
    let seen = get(&url).await;
    // … which is all a challenger needs: the verifier slashes on the two signatures alone.
    let challenger = hex::encode(w.challenger_key.verifying_key().to_bytes());
    let body = json!({
        "challenger": challenger,
        "receipt_a": seen["receipts"][0]["receipt"],
        "receipt_b": seen["receipts"][1]["receipt"],
    });
    let post = async || {
        let resp = client()
            .post(format!("{}/v1/disputes/equivocation", v.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        resp.json::<Value>().await.unwrap()
    };
    let verdict = post().await;
    assert_eq!(verdict["outcome"], "slashed", "{verdict:#}");
    let op = operator_view(v, &nodes[1].operator).await;
    assert_eq!(op["jailed"], true, "{op:#}");
    assert_ne!(op["slashable_stake"]["eth"], STAKE.to_string(), "{op:#}");
    let balance = v
        .ledger
        .balance(&Key::of(&w.challenger_key), "eth")
        .unwrap();
    assert!(balance > DEPOSIT, "the bounty is paid: {balance}");
    // One offence, one slash: reporting it again changes nothing.
    let again = post().await;
    assert_eq!(again["outcome"], "already_slashed", "{again:#}");
    assert_eq!(
        v.ledger
            .balance(&Key::of(&w.challenger_key), "eth")
            .unwrap(),
        balance
    );
}

/// Admission by stake (README "Admission by stake"): a node takes a job only while its
/// open value at risk stays within what a wrong result would slash / (1 + γ); the
/// verifier's security figures show the same numbers; after a slash the cap shrinks (to
/// zero: the operator is jailed) and the next job is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admission_by_stake_refuses_jobs_over_the_cap_and_a_slash_shrinks_it() {
    if !docker_available().await {
        return;
    }
    let w = World::new(&[None, Some(Fault::WrongOutput)]).await;
    let (v, nodes) = (&w.v, &w.nodes);
    // Stake 1000 (price 1), half slashed for a wrong result: 500; γ 0.1: cap 454.
    let exposure =
        async |n: &TestNode| get(&format!("{}/v1/node", n.url)).await["exposure"].clone();
    let e = exposure(&nodes[1]).await;
    assert_eq!(e["enforced"], true, "{e:#}");
    assert_eq!(e["stake_value"], "1000", "{e:#}");
    assert_eq!(e["slashable_per_offence"], "500", "{e:#}");
    assert_eq!(e["cap"], "454", "{e:#}");

    let job = |var: &str, nonce: &str| json!({"image": "vouch/wc:dev", "input": "at risk", "value_at_risk": var, "nonce": nonce});
    let a = run_job(&nodes[1].url, job("300", "a")).await;
    assert_eq!(a["status"], "succeeded", "{a:#}");
    let (status, refused) = submit(&nodes[1].url, job("200", "b")).await;
    assert_eq!(status, 409, "{refused:#}");
    assert_eq!(refused["error"]["code"], "over_exposure_cap", "{refused:#}");
    let msg = refused["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("from 300 to 500") && msg.contains("cap of 454"),
        "{msg}"
    );
    // Exactly up to the cap, and a job with nothing at risk, are taken.
    assert_eq!(
        run_job(&nodes[1].url, job("154", "c")).await["status"],
        "succeeded"
    );
    assert_eq!(
        run_job(&nodes[1].url, job("0", "d")).await["status"],
        "succeeded"
    );
    let e = exposure(&nodes[1]).await;
    assert_eq!(
        (e["open_value_at_risk"].as_str(), e["margin"].as_str()),
        (Some("454"), Some("0")),
        "{e:#}"
    );
    // The same cap holds for every operator independently.
    assert_eq!(
        run_job(&nodes[0].url, job("454", "e")).await["status"],
        "succeeded"
    );
    assert_eq!(submit(&nodes[0].url, job("1", "f")).await.0, 409);

    // The verifier's view of the stake side.
    let sec = get(&format!("{}/v1/security", v.url)).await;
    assert_eq!(sec["gamma"], "0.1", "{sec:#}");
    for o in sec["operators"].as_array().unwrap() {
        assert_eq!(o["stake_value"], "1000", "{sec:#}");
        assert_eq!(o["cap"], "454", "{sec:#}");
    }
    assert_eq!(sec["service"]["cost_of_corruption"], "1000", "{sec:#}");

    // The dishonest operator is slashed and jailed: its cap is 0 as soon as its node reads
    // the registry, and a job it would have taken before is refused.
    let ch = Challenger::load(&w.challenger_file, &format!("eth:{BOND}"), &v.url).unwrap();
    assert_eq!(challenge(&ch, &nodes[1], &a, b"at risk").await, "slashed");
    wait_until("the node reads its slashed stake", async || {
        exposure(&nodes[1]).await["cap"] == "0"
    })
    .await;
    let e = exposure(&nodes[1]).await;
    assert_eq!(e["stake_value"], "500", "{e:#}");
    let (status, refused) = submit(&nodes[1].url, job("1", "g")).await;
    assert_eq!(status, 409, "{refused:#}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("jailed"),
        "{refused:#}"
    );
    let sec = get(&format!("{}/v1/security", v.url)).await;
    let op = sec["operators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operator"] == nodes[1].operator)
        .unwrap()
        .clone();
    assert_eq!(
        (op["jailed"].as_bool(), op["cap"].as_str()),
        (Some(true), Some("0")),
        "{sec:#}"
    );
    assert_eq!(
        sec["service"]["cost_of_corruption"], "500",
        "only the honest operator's stake backs the service now: {sec:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_token_served_by_a_real_node_is_slashed_by_one_step() {
    use base64::Engine as _;
    if !docker_available().await {
        return;
    }
    let w = World::new(&[None, Some(Fault::WrongToken)]).await;
    let (v, node) = (&w.v, &w.nodes[1]);
    let chat = client()
        .post(format!("{}/v1/chat/completions", node.url))
        .json(&json!({"model": "vouch-tiny-1",
                      "messages": [{"role": "user", "content": "Tell me a story"}],
                      "max_tokens": 64, "temperature": 0.8, "seed": 7}))
        .send()
        .await
        .unwrap();
    assert!(chat.status().is_success(), "{}", chat.text().await.unwrap());
    let chat: Value = chat.json().await.unwrap();
    let vouch = &chat["vouch"];
    let receipt: SignedReceipt = serde_json::from_value::<ReceiptJson>(vouch["receipt"].clone())
        .unwrap()
        .verify()
        .unwrap();
    let output = vouch["output"].as_str().unwrap().as_bytes().to_vec();
    let input = vouch["input"].as_str().unwrap().as_bytes().to_vec();
    let completion = chat["usage"]["completion_tokens"].as_u64().unwrap();
    assert_eq!(completion, 64, "{chat:#}");
    // The fault's position; the node serves its own (signed) leaf there with the opening.
    let t = (completion / 2) as u32;
    let opened = get(&format!(
        "{}/v1/jobs/{}/trace/{t}",
        node.url,
        vouch["job_id"].as_str().unwrap()
    ))
    .await;
    // The node signs what it serves (SPEC.md §7.7): the leaf with its opening, and the
    // output (a header of GET /v1/jobs/{id}/output).
    let proof: Vec<[u8; 32]> = vouch_verifier::token::parse_proof(
        &serde_json::from_value::<Vec<String>>(opened["proof"].clone()).unwrap(),
    )
    .unwrap();
    let leaf_bytes = hex::decode(opened["leaf"].as_str().unwrap()).unwrap();
    let statement = vouch_proto::served_statement(
        &network(),
        &receipt.receipt.signing_root(),
        &vouch_proto::Served::Leaf {
            index: u64::from(t),
            leaf: &leaf_bytes,
            proof: &proof,
        },
    )
    .unwrap();
    let sig = vouch_verifier::token::parse_signature(
        opened["served_signature"].as_str().unwrap(),
        "served_signature",
    )
    .unwrap();
    vouch_proto::verify_root(&receipt.receipt.operator, &statement, &sig)
        .expect("the served leaf is signed by the operator");
    let served = client()
        .get(format!(
            "{}/v1/jobs/{}/output",
            node.url,
            vouch["job_id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    let header = served.headers()["x-vouch-served-signature"]
        .to_str()
        .unwrap()
        .to_owned();
    let bytes = served.bytes().await.unwrap();
    assert_eq!(bytes.as_ref(), output.as_slice());
    let statement = vouch_proto::served_statement(
        &network(),
        &receipt.receipt.signing_root(),
        &vouch_proto::Served::Output {
            digest: vouch_proto::Digest::of(&bytes).0,
            len: bytes.len() as u64,
        },
    )
    .unwrap();
    let sig = vouch_verifier::token::parse_signature(&header, "header").unwrap();
    vouch_proto::verify_root(&receipt.receipt.operator, &statement, &sig)
        .expect("the served output is signed by the operator");
    let bond = vouch_verifier::Bond {
        asset: "eth".into(),
        amount: BOND,
    };
    let challenger = Key::of(&w.challenger_key);
    let id = vouch_verifier::token_dispute_id(
        &network(),
        &challenger,
        &receipt.receipt.signing_root(),
        t,
        &bond,
    )
    .unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let body = vouch_verifier::TokenDisputeBody {
        challenger,
        bond,
        signature: vouch_verifier::Sig(
            ed25519_dalek::Signer::sign(&w.challenger_key, &id).to_bytes(),
        ),
        receipt: receipt.to_json(),
        spec: vouch["spec"].clone(),
        input_base64: b64(&input),
        output_base64: b64(&output),
        position: t,
        leaf: opened["leaf"].as_str().unwrap().to_owned(),
        proof: serde_json::from_value(opened["proof"].clone()).unwrap(),
        prefix: None,
        output_signature: Some(header),
        leaf_signature: opened["served_signature"].as_str().map(str::to_owned),
    };
    let verdict: Value = client()
        .post(format!("{}/v1/disputes/token", v.url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(verdict["kind"], "token", "{verdict:#}");
    assert_eq!(verdict["outcome"], "slashed", "{verdict:#}");
    assert_eq!(verdict["tokens_recomputed"], 1, "{verdict:#}");
    let op = operator_view(v, &node.operator).await;
    assert_eq!(op["jailed"], true, "{op:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_that_withholds_evidence_is_slashed_and_an_honest_one_answers() {
    use base64::Engine as _;
    if !docker_available().await {
        return;
    }
    let w = World::new(&[None, Some(Fault::Withhold)]).await;
    let v = &w.v;
    let challenger = Key::of(&w.challenger_key);
    let balance = || v.ledger.balance(&challenger, "eth").unwrap();
    let before = balance();
    let mut disputes = vec![];
    for node in &w.nodes {
        let chat = client()
            .post(format!("{}/v1/chat/completions", node.url))
            .json(&json!({"model": "vouch-tiny-1",
                          "messages": [{"role": "user", "content": "Tell me a story"}],
                          "max_tokens": 16, "seed": 3}))
            .send()
            .await
            .unwrap();
        assert!(chat.status().is_success(), "{}", chat.text().await.unwrap());
        let chat: Value = chat.json().await.unwrap();
        let receipt: SignedReceipt =
            serde_json::from_value::<ReceiptJson>(chat["vouch"]["receipt"].clone())
                .unwrap()
                .verify()
                .unwrap();
        let demand = vouch_verifier::Demand {
            spec: true,
            input: true,
            output: true,
            positions: vec![0, 7, 15],
        };
        let c = vouch_verifier::WithholdingChallenge::sign(
            &network(),
            &w.challenger_key,
            vouch_verifier::Bond {
                asset: "eth".into(),
                amount: BOND,
            },
            receipt.clone(),
            demand,
        )
        .unwrap();
        let body = vouch_verifier::WithholdingDisputeBody {
            challenger,
            bond: c.bond.clone(),
            signature: c.signature,
            receipt: receipt.to_json(),
            demand: c.demand.clone(),
        };
        let open: Value = client()
            .post(format!("{}/v1/disputes/withholding", v.url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(open["kind"], "withholding", "{open:#}");
        disputes.push((
            open["dispute"].as_str().unwrap().to_owned(),
            chat["vouch"]["output"].as_str().unwrap().to_owned(),
            receipt,
        ));
    }
    let mut verdicts = vec![];
    for (id, _, _) in &disputes {
        let mut d = Value::Null;
        wait_until("the withholding dispute is decided", async || {
            d = get(&format!("{}/v1/disputes/{id}", v.url)).await;
            d["state"] == "decided"
        })
        .await;
        verdicts.push(d);
    }
    // The honest node answered on its own, before the deadline: the output it served and
    // its leaves are public now, and check out against its signed receipt.
    let (honest, (_, output, receipt)) = (&verdicts[0], &disputes[0]);
    assert_eq!(honest["verdict"]["outcome"], "void", "{honest:#}");
    let answer = &honest["withholding"]["answer"];
    let published = base64::engine::general_purpose::STANDARD
        .decode(answer["output_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(published, output.as_bytes());
    assert_eq!(answer["leaves"].as_array().unwrap().len(), 3);
    let spec: JobSpec = serde_json::from_value(answer["spec"].clone()).unwrap();
    assert_eq!(spec.job_id().unwrap(), receipt.receipt.job_id);
    let input = base64::engine::general_purpose::STANDARD
        .decode(answer["input_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        vouch_proto::Digest::of(&input),
        receipt.receipt.input_digest
    );
    for leaf in answer["leaves"].as_array().unwrap() {
        let proof: Vec<String> = serde_json::from_value(leaf["proof"].clone()).unwrap();
        vouch_proto::verify_merkle_proof(
            &receipt.receipt.trace_root,
            receipt.receipt.trace_len,
            leaf["index"].as_u64().unwrap(),
            &hex::decode(leaf["leaf"].as_str().unwrap()).unwrap(),
            &vouch_verifier::token::parse_proof(&proof).unwrap(),
        )
        .unwrap();
    }
    assert!(
        honest["withholding"]["answered_at_ms"].as_u64().unwrap()
            <= honest["withholding"]["deadline_ms"].as_u64().unwrap()
    );
    assert_eq!(
        operator_view(v, &w.nodes[0].operator).await["jailed"],
        false
    );
    // The withholding node said nothing and was slashed at the deadline.
    let withheld = &verdicts[1];
    assert_eq!(withheld["verdict"]["outcome"], "slashed", "{withheld:#}");
    let op = operator_view(v, &w.nodes[1].operator).await;
    assert_eq!(op["jailed"], true, "{op:#}");
    assert_eq!(
        op["slashable_stake"]["eth"],
        (STAKE / 2).to_string(),
        "{op:#}"
    );
    // Both bonds came back, with the bounty of the slash.
    assert_eq!(balance(), before + STAKE / 2 / 10);
}
