//! Gossip over real swarms on 127.0.0.1 (TCP, port 0): propagation, validation at the
//! first hop, graylisting, blob fetch. Every wait is bounded.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use tokio::sync::mpsc;
use tokio::time::Instant;
use vouch_net::libp2p::identity::Keypair;
use vouch_net::libp2p::multiaddr::Protocol;
use vouch_net::libp2p::{Multiaddr, PeerId};
use vouch_net::{
    BlobStore, Delivered, MemoryBlobStore, NetConfig, NetError, Network, NetworkHandle,
    ReceiptValidator, Registry, TopicKind, Validation, Validator, DEFAULT_MAX_MESSAGE_BYTES,
    GRAYLIST_THRESHOLD,
};
use vouch_proto::{Digest, JobId, NetworkId, OperatorKey, Receipt, Root32, SignedReceipt};

const WAIT: Duration = Duration::from_secs(20);

/// The attacker's validator: lets it publish anything.
struct AcceptAll;

impl Validator for AcceptAll {
    fn validate(&self, _: TopicKind, _: &[u8]) -> Validation {
        Validation::Accept { receipt: None }
    }
}

struct Node {
    net: NetworkHandle,
    rx: mpsc::Receiver<Delivered>,
    addr: Multiaddr,
}

impl Node {
    fn id(&self) -> PeerId {
        self.net.local_peer_id()
    }

    /// Everything delivered so far, without waiting.
    fn drain(&mut self) -> Vec<Delivered> {
        let mut out = Vec::new();
        while let Ok(d) = self.rx.try_recv() {
            out.push(d);
        }
        out
    }
}

fn network_id() -> NetworkId {
    NetworkId::from_name("vouch-net-test")
}

fn config() -> NetConfig {
    let mut c = NetConfig::new(network_id());
    c.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    c.mdns = false;
    c.heartbeat = Duration::from_millis(200);
    c
}

async fn spawn_with(validator: impl Validator, store: Option<Arc<dyn BlobStore>>) -> Node {
    spawn_cfg(config(), validator, store).await
}

/// The attacker: validates nothing and allows itself four times the payload size.
async fn spawn_attacker() -> Node {
    let mut c = config();
    c.max_message_bytes = 4 * DEFAULT_MAX_MESSAGE_BYTES;
    spawn_cfg(c, AcceptAll, None).await
}

async fn spawn_cfg(
    config: NetConfig,
    validator: impl Validator,
    store: Option<Arc<dyn BlobStore>>,
) -> Node {
    let key = Keypair::generate_ed25519();
    let (net, rx) = match store {
        Some(store) => Network::spawn_with_store(config, key, validator, store).await,
        None => Network::spawn(config, key, validator).await,
    }
    .expect("network starts");
    let mut addr = net
        .listen_addrs()
        .await
        .unwrap()
        .into_iter()
        .next()
        .expect("one listen address");
    assert!(addr.to_string().starts_with("/ip4/127.0.0.1/tcp/"));
    addr.push(Protocol::P2p(net.local_peer_id()));
    Node { net, rx, addr }
}

async fn spawn_honest(registry: &Registry) -> Node {
    spawn_with(ReceiptValidator::new(network_id(), registry.clone()), None).await
}

/// Polls `check` every 100 ms until it holds; panics naming `what` after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect(nodes: &[Node], edges: &[(usize, usize)]) {
    for &(a, b) in edges {
        nodes[a].net.dial(nodes[b].addr.clone()).await.unwrap();
    }
}

/// Waits until every node has every connected peer in its receipts mesh (all degrees in
/// these tests are below gossipsub's mesh_n_high, so this is where the mesh settles).
async fn wait_for_mesh(nodes: &[Node], edges: &[(usize, usize)]) {
    let mut want: Vec<HashSet<PeerId>> = vec![HashSet::new(); nodes.len()];
    for &(a, b) in edges {
        want[a].insert(nodes[b].id());
        want[b].insert(nodes[a].id());
    }
    eventually("gossipsub mesh forms", WAIT, || async {
        for (node, want) in nodes.iter().zip(&want) {
            let mesh: HashSet<_> = node
                .net
                .mesh_peers(TopicKind::Receipts)
                .await
                .unwrap()
                .into_iter()
                .collect();
            if &mesh != want {
                return false;
            }
        }
        true
    })
    .await;
}

fn operator(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn receipt_for(network_id: NetworkId, key: &SigningKey, sequence: u64) -> SignedReceipt {
    let receipt = Receipt {
        network_id,
        operator: OperatorKey(key.verifying_key().to_bytes()),
        sequence,
        job_id: JobId(Digest::of(&sequence.to_be_bytes()).0),
        image: Digest::of(b"image"),
        input_digest: Digest::of(b"input"),
        output_digest: Digest::of(&[sequence as u8]),
        output_len: 1,
        exit_code: 0,
        trace_root: Root32::default(),
        trace_len: 0,
        issued_at_ms: 1_700_000_000_000 + sequence,
    };
    let signature = key.sign(&receipt.signing_root()).to_bytes();
    let signed = SignedReceipt { receipt, signature };
    signed.verify().expect("test receipt verifies");
    signed
}

fn registry_of(keys: &[&SigningKey]) -> Registry {
    let r = Registry::default();
    r.write().unwrap().extend(
        keys.iter()
            .map(|k| OperatorKey(k.verifying_key().to_bytes())),
    );
    r
}

/// Receives until `want` messages arrived (bounded), then checks nothing more comes.
async fn receive_exactly(node: &mut Node, want: usize) -> Vec<Delivered> {
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < want {
        match tokio::time::timeout_at(deadline, node.rx.recv()).await {
            Ok(Some(d)) => got.push(d),
            Ok(None) => panic!("delivery channel closed"),
            Err(_) => panic!("node {} got {} of {want} messages", node.id(), got.len()),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_nodes_deliver_every_receipt_exactly_once() {
    let ops = [operator(1), operator(2), operator(3)];
    let registry = registry_of(&[&ops[0], &ops[1], &ops[2]]);
    let mut nodes = Vec::new();
    for _ in 0..10 {
        nodes.push(spawn_honest(&registry).await);
    }
    // Sparse: a chain, plus everyone to node 0.
    let mut edges = vec![(1, 0)];
    for i in 2..10 {
        edges.push((i, i - 1));
        edges.push((i, 0));
    }
    connect(&nodes, &edges).await;
    wait_for_mesh(&nodes, &edges).await;

    // Three operators publish five receipts each, from three different nodes.
    let publishers = [3, 6, 9];
    let mut by_publisher: HashMap<usize, HashSet<[u8; 324]>> = HashMap::new();
    for (op, &node) in ops.iter().zip(&publishers) {
        for seq in 0..5 {
            let r = receipt_for(network_id(), op, seq);
            nodes[node].net.publish_receipt(&r).await.unwrap();
            by_publisher.entry(node).or_default().insert(r.encode());
        }
    }
    let all: HashSet<[u8; 324]> = by_publisher.values().flatten().copied().collect();
    assert_eq!(all.len(), 15);

    for (i, node) in nodes.iter_mut().enumerate() {
        // A node's own publications are not echoed back to its application.
        let own = by_publisher.get(&i).cloned().unwrap_or_default();
        let want: HashSet<_> = all.difference(&own).copied().collect();
        let got = receive_exactly(node, want.len()).await;
        let ids: HashSet<[u8; 324]> = got
            .iter()
            .map(|d| d.receipt.as_ref().expect("decoded receipt").encode())
            .collect();
        assert_eq!(ids, want, "node {i} got the wrong set");
        assert_eq!(ids.len(), got.len(), "node {i} got a receipt twice");
        for d in &got {
            assert_eq!(d.topic_kind, TopicKind::Receipts);
            assert_eq!(d.data.len(), 324);
        }
    }

    // Re-publishing a receipt that is already out there is refused, not sent again.
    let again = receipt_for(network_id(), &ops[0], 0);
    assert!(matches!(
        nodes[1].net.publish_receipt(&again).await,
        Err(NetError::Duplicate)
    ));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for (i, node) in nodes.iter_mut().enumerate() {
        assert!(node.drain().is_empty(), "node {i} got extra deliveries");
        let s = node.net.stats();
        assert_eq!(s.rejected(), 0, "node {i}: {s:?}");
        let own = by_publisher.get(&i).map_or(0, |o| o.len()) as u64;
        assert_eq!(s.accepted, 15 - own, "node {i}: {s:?}");
    }
    for node in &nodes {
        node.net.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_messages_stop_at_the_first_hop() {
    let op = operator(10);
    let stranger = operator(11);
    let registry = registry_of(&[&op]);
    // 0: attacker (validates nothing); 1, 2: its direct peers; 3, 4: further away.
    let mut nodes = vec![spawn_attacker().await];
    for _ in 0..4 {
        nodes.push(spawn_honest(&registry).await);
    }
    let edges = [(0, 1), (0, 2), (1, 2), (3, 1), (3, 2), (4, 3)];
    connect(&nodes, &edges).await;
    wait_for_mesh(&nodes, &edges).await;

    // Baseline: a valid receipt from the attacker's node reaches everyone, so the path
    // the invalid ones would take works.
    let good = receipt_for(network_id(), &op, 1);
    nodes[0].net.publish_receipt(&good).await.unwrap();
    for node in &mut nodes[1..] {
        let got = receive_exactly(node, 1).await;
        assert_eq!(got[0].receipt.as_ref(), Some(&good));
    }

    let mut forged = receipt_for(network_id(), &op, 2);
    forged.signature[0] ^= 1;
    let wrong_network = receipt_for(NetworkId::from_name("other-net"), &op, 3);
    let unregistered = receipt_for(network_id(), &stranger, 4);
    let oversized = vec![7u8; DEFAULT_MAX_MESSAGE_BYTES + 1];
    // An honest node refuses to publish what its peers would reject.
    assert!(matches!(
        nodes[1]
            .net
            .publish(TopicKind::Receipts, oversized.clone())
            .await,
        Err(NetError::Rejected(vouch_net::RejectReason::Size))
    ));
    assert!(matches!(
        nodes[1].net.publish_receipt(&forged).await,
        Err(NetError::Rejected(vouch_net::RejectReason::Signature))
    ));
    let attacker = &nodes[0].net;
    attacker.publish_receipt(&forged).await.unwrap();
    attacker.publish_receipt(&wrong_network).await.unwrap();
    attacker.publish_receipt(&unregistered).await.unwrap();
    attacker
        .publish(TopicKind::Receipts, oversized)
        .await
        .unwrap();

    for i in [1, 2] {
        let net = nodes[i].net.clone();
        eventually("first hop rejects all four", WAIT, || {
            let net = net.clone();
            async move { net.stats().rejected() == 4 }
        })
        .await;
        let s = nodes[i].net.stats();
        assert_eq!(
            (
                s.rejected_signature,
                s.rejected_network,
                s.rejected_unregistered,
                s.rejected_size
            ),
            (1, 1, 1, 1),
            "node {i}: {s:?}"
        );
        let score = nodes[i].net.peer_score(nodes[0].id()).await.unwrap();
        assert!(score.is_some_and(|s| s < 0.0), "score {score:?}");
    }
    // Give a (wrongly) forwarded message time to travel, then check nobody saw them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (i, node) in nodes.iter_mut().enumerate().skip(1) {
        assert!(
            node.drain().is_empty(),
            "node {i} delivered an invalid message"
        );
        let s = node.net.stats();
        assert_eq!(s.accepted, 1, "node {i}: {s:?}");
        if i >= 3 {
            assert_eq!(s.rejected(), 0, "node {i} should never see them: {s:?}");
        }
    }
    for node in &nodes {
        node.net.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_keeps_sending_junk_is_graylisted() {
    let op = operator(20);
    let registry = registry_of(&[&op]);
    let mut nodes = vec![spawn_attacker().await];
    for _ in 0..3 {
        nodes.push(spawn_honest(&registry).await);
    }
    let edges = [(0, 1), (0, 2), (1, 2), (3, 1)];
    connect(&nodes, &edges).await;
    wait_for_mesh(&nodes, &edges).await;
    let attacker = nodes[0].id();

    // Before: the attacker's valid messages are delivered.
    nodes[0]
        .net
        .publish_receipt(&receipt_for(network_id(), &op, 1))
        .await
        .unwrap();
    for node in &mut nodes[1..] {
        receive_exactly(node, 1).await;
    }

    for i in 0..10u8 {
        let junk = vec![i; 100];
        nodes[0]
            .net
            .publish(TopicKind::Receipts, junk)
            .await
            .unwrap();
    }
    for i in [1, 2] {
        let net = nodes[i].net.clone();
        eventually("direct peers graylist the attacker", WAIT, || {
            let net = net.clone();
            async move {
                let score = net.peer_score(attacker).await.unwrap();
                score.is_some_and(|s| s < GRAYLIST_THRESHOLD)
            }
        })
        .await;
        assert!(nodes[i].net.stats().rejected_decode >= 6);
    }

    // After: the graylisting peers take nothing from the attacker any more (a valid receipt
    // it publishes may still reach them later through a peer that has not graylisted it —
    // it is valid — but never from the attacker itself), while an honest one published
    // later still reaches everyone.
    let late = receipt_for(network_id(), &op, 2);
    nodes[0].net.publish_receipt(&late).await.unwrap();
    let sentinel = receipt_for(network_id(), &op, 3);
    nodes[3].net.publish_receipt(&sentinel).await.unwrap();
    for i in [1, 2] {
        let got = receive_exactly(&mut nodes[i], 1).await;
        assert_eq!(got[0].receipt.as_ref(), Some(&sentinel), "node {i}");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (i, node) in nodes.iter_mut().enumerate().skip(1) {
        let late_seen: Vec<_> = node
            .drain()
            .into_iter()
            .filter(|d| d.receipt.as_ref() == Some(&late) && d.via == attacker)
            .map(|d| d.via)
            .collect();
        if i <= 2 {
            assert!(
                late_seen.is_empty(),
                "node {i} took a message from the graylisted attacker: {late_seen:?}"
            );
        }
    }
    for node in &nodes {
        node.net.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_fetched_by_digest_and_checked() {
    let store = Arc::new(MemoryBlobStore::default());
    let digest = store.insert(b"job spec bytes".to_vec());
    let registry = Registry::default();
    let server = spawn_with(
        ReceiptValidator::new(network_id(), registry.clone()),
        Some(store),
    )
    .await;
    let client = spawn_honest(&registry).await;
    client.net.dial(server.addr.clone()).await.unwrap();
    let got = client.net.fetch(server.id(), digest).await.unwrap();
    assert_eq!(got.as_deref(), Some(&b"job spec bytes"[..]));
    let missing = client.net.fetch(server.id(), [9u8; 32]).await.unwrap();
    assert_eq!(missing, None);
    // The client serves nothing (`NoBlobs`): it answers "not found".
    assert_eq!(server.net.fetch(client.id(), digest).await.unwrap(), None);

    client.net.shutdown().await.unwrap();
    assert!(matches!(client.net.peers().await, Err(NetError::Closed)));
    server.net.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_taken_listen_port_names_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut c = config();
    c.listen = vec![format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()];
    let err = Network::spawn(c, Keypair::generate_ed25519(), AcceptAll)
        .await
        .expect_err("port is taken");
    assert!(matches!(err, NetError::Listen { .. }), "{err}");
    assert!(err.to_string().contains("--p2p-listen"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_peer_over_quic_carries_gossip() {
    let op = operator(30);
    let registry = registry_of(&[&op]);
    let quic_config = |bootstrap: Vec<Multiaddr>| {
        let mut c = config();
        c.listen = vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()];
        c.bootstrap = bootstrap;
        c
    };
    let validator = || ReceiptValidator::new(network_id(), registry.clone());
    let (a, _a_rx) = Network::spawn(
        quic_config(vec![]),
        Keypair::generate_ed25519(),
        validator(),
    )
    .await
    .unwrap();
    let mut a_addr = a.listen_addrs().await.unwrap().remove(0);
    assert!(a_addr.to_string().ends_with("/quic-v1"), "{a_addr}");
    a_addr.push(Protocol::P2p(a.local_peer_id()));

    // B only knows A as a bootstrap peer: it dials it and seeds Kademlia with it.
    let (b, mut b_rx) = Network::spawn(
        quic_config(vec![a_addr]),
        Keypair::generate_ed25519(),
        validator(),
    )
    .await
    .unwrap();
    eventually("B joins A's mesh over QUIC", WAIT, || async {
        a.mesh_peers(TopicKind::Receipts)
            .await
            .unwrap()
            .contains(&b.local_peer_id())
    })
    .await;
    let r = receipt_for(network_id(), &op, 1);
    a.publish_receipt(&r).await.unwrap();
    let got = tokio::time::timeout(WAIT, b_rx.recv())
        .await
        .expect("delivered in time")
        .expect("channel open");
    assert_eq!(got.receipt, Some(r));
    assert_eq!(got.via, a.local_peer_id());
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
}

/// A node that was not connected while receipts were gossiped gets each of them once,
/// through sync, as soon as it connects; a receipt it already had is not delivered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_node_catches_up_on_missed_receipts_once() {
    let key = operator(41);
    let registry = registry_of(&[&key]);
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(spawn_honest(&registry).await);
    }
    let edges = [(0, 1), (1, 2)];
    connect(&nodes, &edges).await;
    wait_for_mesh(&nodes, &edges).await;
    // 300 receipts: more than one sync page (256), so paging is exercised.
    let receipts: Vec<_> = (0..300)
        .map(|i| receipt_for(network_id(), &key, i))
        .collect();
    for r in &receipts {
        nodes[0].net.publish_receipt(r).await.unwrap();
    }
    receive_exactly(&mut nodes[2], receipts.len()).await;

    let mut late = spawn_honest(&registry).await;
    // One receipt it already knows (published by itself, with no peers yet).
    match late.net.publish_receipt(&receipts[5]).await {
        Err(NetError::NoPeers) => {}
        other => panic!("expected NoPeers, got {other:?}"),
    }
    late.net.dial(nodes[2].addr.clone()).await.unwrap();
    let got = receive_exactly(&mut late, receipts.len() - 1).await;
    let ids: HashSet<u64> = got
        .iter()
        .map(|d| d.receipt.as_ref().unwrap().receipt.sequence)
        .collect();
    assert_eq!(
        ids.len(),
        receipts.len() - 1,
        "each missed receipt exactly once"
    );
    assert!(!ids.contains(&5), "its own receipt is not delivered back");
    assert!(late.net.stats().synced >= receipts.len() as u64 - 1);
    // Several sync rounds later, still nothing new.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(late.drain().is_empty());
    for n in &nodes {
        n.net.shutdown().await.unwrap();
    }
    late.net.shutdown().await.unwrap();
}
