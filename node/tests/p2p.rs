//! Nodes on the peer-to-peer network, with real Docker and real libp2p swarms on
//! 127.0.0.1: receipts reach every node, replicated jobs are committed and revealed, a
//! wrong replica is attributed, and a rogue operator's rule-breaking is caught.

#![allow(clippy::unwrap_used, clippy::field_reassign_with_default)]

mod common;

use std::time::Duration;

use common::{
    bootstrap_addr, client, docker_available, get, key, observer, run_job, submit, wait_until,
    TestNode,
};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use vouch_net::TopicKind;
use vouch_node::config::Fault;
use vouch_proto::{
    commitment_value, Digest, JobId, NetworkId, OperatorKey, Receipt, ReplicaCommit, ReplicaReveal,
    Root32, SignedReceipt,
};

fn hex_of(k: &SigningKey) -> String {
    hex::encode(k.verifying_key().to_bytes())
}

/// Starts one node per key, all allow-listing `operators`, the later ones bootstrapping from
/// the first. `fault` applies to the last node.
async fn network(keys: &[SigningKey], operators: &[String], fault: Option<Fault>) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = Vec::new();
    let mut boot = None;
    for (i, k) in keys.iter().enumerate() {
        let ops = operators.to_vec();
        let b: Option<String> = boot.clone();
        let last = i == keys.len() - 1;
        let node = TestNode::start_with_key(k.clone(), move |c| {
            c.p2p.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
            c.p2p.mdns = false;
            c.p2p.operators = ops;
            c.p2p.bootstrap = b.into_iter().collect();
            c.p2p.commit_window_ms = 20_000;
            c.p2p.sync_interval_ms = 1_000;
            if last {
                c.fault = fault;
            }
        })
        .await;
        if i == 0 {
            boot = Some(bootstrap_addr(&node.url).await);
        }
        nodes.push(node);
    }
    // Everyone connected to everyone (through the first node, then identify/Kademlia),
    // and the gossip mesh given a few heartbeats.
    for n in &nodes {
        let mut ok = false;
        for _ in 0..100 {
            let p = get(&format!("{}/v1/peers", n.url)).await;
            // Every other node as a peer, and both topics' meshes formed: a replicated
            // job's announcement must reach every replica.
            if p["connected"].as_array().unwrap().len() + 1 >= keys.len()
                && !p["receipts_mesh"].as_array().unwrap().is_empty()
                && !p["jobs_mesh"].as_array().unwrap().is_empty()
            {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(ok, "node {} never joined the mesh", n.url);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn receipts_reach_every_node_and_replicas_are_attributed() {
    if !docker_available().await {
        return;
    }
    let keys: Vec<SigningKey> = (0..3).map(|_| key()).collect();
    let ops: Vec<String> = keys.iter().map(hex_of).collect();
    let nodes = network(&keys, &ops, Some(Fault::WrongOutput)).await;

    // A plain job on node 0: its receipt reaches the other two, once.
    let done = run_job(
        &nodes[0].url,
        json!({"image": "vouch/wc:dev", "input": "one two three"}),
    )
    .await;
    assert_eq!(done["status"], "succeeded");
    let id = done["job_id"].as_str().unwrap().to_string();
    for n in &nodes[1..] {
        let url = format!("{}/v1/jobs/{id}/receipts", n.url);
        wait_until("the receipt reaches every node", async || {
            get(&url).await["receipts"].as_array().unwrap().len() == 1
        })
        .await;
        let seen = get(&url).await;
        assert_eq!(
            seen["receipts"][0]["receipt"], done["receipt"],
            "the very receipt node 0 signed"
        );
    }

    // A replicated job, k = 3, submitted to node 0; node 2 signs a wrong output.
    let (status, v) = submit(
        &nodes[0].url,
        json!({"image": "vouch/wc:dev", "input": "alpha beta gamma delta", "replicas": 3}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let id = v["job_id"].as_str().unwrap().to_string();
    let url = format!("{}/v1/jobs/{id}/replication", nodes[0].url);
    wait_until("the replicated job completes", async || {
        get(&url).await["phase"] == "complete"
    })
    .await;
    let rep = get(&url).await;
    assert_eq!(rep["outcome"], "disagreed", "{rep:#}");
    assert_eq!(rep["disagreeing"], json!([ops[2]]), "{rep:#}");
    let agreed: Vec<&str> = rep["agreed"]["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(agreed.len(), 2);
    assert!(agreed.contains(&ops[0].as_str()) && agreed.contains(&ops[1].as_str()));
    assert_eq!(
        rep["faults"],
        json!([]),
        "honest commit-reveal breaks no rule"
    );
    // The announcing node looks at the disagreement for a dispute; without a challenger
    // configured it says so instead of handing it off (devnet.sh shows the hand-off).
    wait_until("the disagreement is looked at for a dispute", async || {
        !get(&url).await["disputes"].as_array().unwrap().is_empty()
    })
    .await;
    let disputes = get(&url).await["disputes"].clone();
    assert_eq!(disputes.as_array().unwrap().len(), 1, "{disputes:#}");
    assert_eq!(disputes[0]["operator"], ops[2]);
    assert_eq!(disputes[0]["status"], "not_configured", "{disputes:#}");
    // Every replica committed before any revealed.
    let first_reveal = rep["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["revealed_at_ms"].as_u64().unwrap())
        .min()
        .unwrap();
    for o in rep["operators"].as_array().unwrap() {
        assert!(
            o["committed_at_ms"].as_u64().unwrap() <= first_reveal,
            "{rep:#}"
        );
    }
    // The agreed digest is the honest output's (node 0 ran it too and served the bytes);
    // the job view carries the report.
    let job = get(&format!("{}/v1/jobs/{id}", nodes[0].url)).await;
    assert_eq!(job["replication"]["outcome"], "disagreed");
    let out = client()
        .get(format!("{}/v1/jobs/{id}/output", nodes[0].url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        rep["agreed"]["output_digest"],
        Digest::of(&out).to_string(),
        "{job:#}"
    );
    // Every node judges the same, from what it received.
    for n in &nodes[1..] {
        let u = format!("{}/v1/jobs/{id}/replication", n.url);
        wait_until("every node sees the reveals", async || {
            get(&u).await["phase"] == "complete"
        })
        .await;
        assert_eq!(get(&u).await["disagreeing"], json!([ops[2]]));
    }

    // An input too large to ride in the announcement (> 32 KiB): the replicas fetch it by
    // digest from their peers, and all three run it.
    let big = "word ".repeat(8_000);
    let (status, v) = submit(
        &nodes[1].url,
        json!({"image": "vouch/wc:dev", "input": big, "replicas": 3}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let url = format!(
        "{}/v1/jobs/{}/replication",
        nodes[1].url,
        v["job_id"].as_str().unwrap()
    );
    wait_until("the large-input replicated job completes", async || {
        get(&url).await["phase"] == "complete"
    })
    .await;
    let rep = get(&url).await;
    assert_eq!(rep["disagreeing"], json!([ops[2]]), "{rep:#}");
    assert_eq!(
        rep["agreed"]["operators"].as_array().unwrap().len(),
        2,
        "every replica fetched the input and ran it: {rep:#}"
    );

    // Metrics and peers.
    let m = client()
        .get(format!("{}/metrics", nodes[1].url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("vouch_p2p_peers 2"), "{m}");
    assert!(m.contains("vouch_p2p_propagation_seconds_count"), "{m}");
    assert!(
        m.contains("vouch_p2p_messages{result=\"accepted\",reason=\"\"}"),
        "{m}"
    );

    for n in nodes {
        n.stop().await;
    }
}

/// A signed receipt for `job` by `k`, as a rogue replica would make it.
fn rogue_receipt(k: &SigningKey, network: NetworkId, job: JobId, output: &[u8]) -> SignedReceipt {
    let receipt = Receipt {
        network_id: network,
        operator: OperatorKey(k.verifying_key().to_bytes()),
        sequence: 1,
        job_id: job,
        image: Digest::of(b"whatever"),
        input_digest: Digest::of(b"whatever"),
        output_digest: Digest::of(output),
        output_len: output.len() as u64,
        exit_code: 0,
        trace_root: Root32::default(),
        trace_len: 0,
        issued_at_ms: 1,
    };
    let signature = k.sign(&receipt.signing_root()).to_bytes();
    SignedReceipt { receipt, signature }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rogue_replica_that_reveals_early_or_falsely_is_caught() {
    if !docker_available().await {
        return;
    }
    let keys: Vec<SigningKey> = (0..2).map(|_| key()).collect();
    let rogue = key();
    let mut ops: Vec<String> = keys.iter().map(hex_of).collect();
    ops.push(hex_of(&rogue));
    let nodes = network(&keys, &ops, None).await;

    // The rogue: a bare swarm holding a registered operator key.
    let network_id = NetworkId::parse_or_name("vouch-devnet");
    let net = observer(&bootstrap_addr(&nodes[0].url).await, &ops).await;
    wait_until("the rogue joins the jobs mesh", async || {
        !net.mesh_peers(TopicKind::Jobs).await.unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (status, v) = submit(
        &nodes[0].url,
        json!({"image": "vouch/wc:dev", "input": "x y", "replicas": 3, "nonce": "rogue"}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let job: JobId = v["job_id"].as_str().unwrap().parse().unwrap();
    // 1. It reveals before committing (a copyable answer, with no commitment behind it).
    let early = rogue_receipt(&rogue, network_id, job, b"copied");
    let reveal = ReplicaReveal {
        receipt: early.clone(),
        salt: [1; 32],
    };
    net.publish(TopicKind::Jobs, reveal.encode()).await.unwrap();
    // 2. It commits to one receipt, then reveals another.
    let committed = rogue_receipt(&rogue, network_id, job, b"committed");
    let mut c = ReplicaCommit {
        network_id,
        job_id: job,
        operator: OperatorKey(rogue.verifying_key().to_bytes()),
        commitment: commitment_value(
            &OperatorKey(rogue.verifying_key().to_bytes()),
            &committed,
            &[2; 32],
        ),
        signature: [0; 64],
    };
    c.signature = rogue.sign(&c.signing_root()).to_bytes();
    tokio::time::sleep(Duration::from_millis(300)).await;
    net.publish(TopicKind::Jobs, c.encode()).await.unwrap();

    let url = format!("{}/v1/jobs/{}/replication", nodes[0].url, job.to_hex());
    // The honest replicas reveal once all three commitments are in.
    wait_until("the honest replicas reveal", async || {
        let r = get(&url).await;
        r["operators"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| !o["revealed_at_ms"].is_null())
            .count()
            == 2
    })
    .await;
    let other = rogue_receipt(&rogue, network_id, job, b"something else");
    let lie = ReplicaReveal {
        receipt: other,
        salt: [2; 32],
    };
    net.publish(TopicKind::Jobs, lie.encode()).await.unwrap();
    let rogue_hex = hex_of(&rogue);
    wait_until("the mismatched reveal is caught", async || {
        get(&url).await["faults"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "reveal_mismatch")
    })
    .await;
    let rep = get(&url).await;
    let faults: Vec<(String, String)> = rep["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["operator"].as_str().unwrap().to_string(),
                f["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        faults.contains(&(rogue_hex.clone(), "reveal_without_commit".into())),
        "{rep:#}"
    );
    assert!(
        faults.contains(&(rogue_hex.clone(), "reveal_mismatch".into())),
        "{rep:#}"
    );
    assert_eq!(faults.len(), 2, "only the rogue broke rules: {rep:#}");
    // Its bad reveals count for nothing: the honest two agree.
    assert_eq!(
        rep["agreed"]["operators"].as_array().unwrap().len(),
        2,
        "{rep:#}"
    );
    assert!(!rep["disagreeing"]
        .as_array()
        .unwrap()
        .iter()
        .any(|o| o == &json!(rogue_hex)));

    net.shutdown().await.unwrap();
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_equivocating_operator_hands_out_its_own_proof() {
    if !docker_available().await {
        return;
    }
    let keys: Vec<SigningKey> = (0..2).map(|_| key()).collect();
    let ops: Vec<String> = keys.iter().map(hex_of).collect();
    let nodes = network(&keys, &ops, Some(Fault::Equivocate)).await;

    let done = run_job(
        &nodes[1].url,
        json!({"image": "vouch/wc:dev", "input": "two stories", "nonce": "equivocate"}),
    )
    .await;
    assert_eq!(done["status"], "succeeded");
    let id = done["job_id"].as_str().unwrap().to_string();
    // The honest node hears two receipts from the equivocator for the one job.
    let url = format!("{}/v1/jobs/{id}/receipts", nodes[0].url);
    wait_until("both receipts reach the honest node", async || {
        get(&url).await["receipts"].as_array().unwrap().len() == 2
    })
    .await;
    let seen = get(&url).await;
    let receipts: Vec<SignedReceipt> = seen["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            serde_json::from_value::<vouch_proto::ReceiptJson>(r["receipt"].clone())
                .unwrap()
                .verify()
                .unwrap()
        })
        .collect();
    // The node's own API still shows the true one (its signing history holds that).
    assert!(receipts.iter().any(|r| r.receipt.output_digest.to_string()
        == done["receipt"]["output_digest"].as_str().unwrap()));
    // Everything an equivocation dispute needs: one operator, one job, two signatures that
    // verify over different roots. The verifier's own check accepts the pair.
    let (a, b) = (&receipts[0], &receipts[1]);
    assert_eq!(a.receipt.operator.to_hex(), ops[1]);
    assert_eq!(a.receipt.operator, b.receipt.operator);
    assert_eq!(a.receipt.job_id, b.receipt.job_id);
    assert_ne!(a.receipt.signing_root(), b.receipt.signing_root());
    let offence =
        vouch_verifier::equivocation_offence(a, b, &NetworkId::parse_or_name("vouch-devnet"))
            .expect("a provable equivocation");
    assert_eq!(offence.operator.0, a.receipt.operator.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_withholding_operator_serves_no_output_and_never_reveals() {
    if !docker_available().await {
        return;
    }
    let keys: Vec<SigningKey> = (0..3).map(|_| key()).collect();
    let ops: Vec<String> = keys.iter().map(hex_of).collect();
    let nodes = network(&keys, &ops, Some(Fault::Withhold)).await;
    let peer = |v: &Value| v["peer_id"].as_str().unwrap().parse().unwrap();
    let honest_peer = peer(&get(&format!("{}/v1/peers", nodes[0].url)).await);
    let withholder_peer = peer(&get(&format!("{}/v1/peers", nodes[2].url)).await);
    let net = observer(&bootstrap_addr(&nodes[0].url).await, &ops).await;

    // A plain job on each: the honest node serves its output by digest, the withholder
    // serves the input but not the output it signed.
    let mut outputs = Vec::new();
    for n in [&nodes[0], &nodes[2]] {
        let done = run_job(
            &n.url,
            json!({"image": "vouch/wc:dev", "input": "withheld or not", "nonce": n.url}),
        )
        .await;
        assert_eq!(done["status"], "succeeded");
        let digest: Digest = done["receipt"]["output_digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let input: Digest = done["receipt"]["input_digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        outputs.push((digest, input));
    }
    net.dial(bootstrap_addr(&nodes[2].url).await.parse().unwrap())
        .await
        .unwrap();
    wait_until("the observer reaches both nodes", async || {
        let p = net.peers().await.unwrap();
        p.contains(&honest_peer) && p.contains(&withholder_peer)
    })
    .await;
    let got = net.fetch(honest_peer, outputs[0].0 .0).await.unwrap();
    assert_eq!(got.map(|b| Digest::of(&b)), Some(outputs[0].0));
    assert_eq!(
        net.fetch(withholder_peer, outputs[1].0 .0).await.unwrap(),
        None
    );
    assert!(net
        .fetch(withholder_peer, outputs[1].1 .0)
        .await
        .unwrap()
        .is_some());

    // A replicated job: the withholder commits like everyone, then never reveals.
    let (status, v) = submit(
        &nodes[0].url,
        json!({"image": "vouch/wc:dev", "input": "a b c", "replicas": 3, "nonce": "withhold"}),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let url = format!(
        "{}/v1/jobs/{}/replication",
        nodes[0].url,
        v["job_id"].as_str().unwrap()
    );
    let status_of = |rep: &Value, op: &str| -> Value {
        rep["operators"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["operator"] == op)
            .cloned()
            .unwrap()
    };
    wait_until("the honest replicas reveal", async || {
        let rep = get(&url).await;
        ops[..2]
            .iter()
            .all(|o| status_of(&rep, o)["revealed_at_ms"].is_u64())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rep = get(&url).await;
    let w = status_of(&rep, &ops[2]);
    assert!(w["committed_at_ms"].is_u64(), "it committed: {rep:#}");
    assert!(w["revealed_at_ms"].is_null(), "but never revealed: {rep:#}");
    assert_ne!(rep["phase"], "complete", "{rep:#}");
}
