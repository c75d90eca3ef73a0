//! The composed libp2p behaviour and its configuration (gossipsub parameters, scoring).

use std::collections::HashMap;
use std::time::Duration;

use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    connection_limits, gossipsub, identify, identity::Keypair, kad, mdns, ping, request_response,
    StreamProtocol,
};
use sha2::{Digest as _, Sha256};

use crate::blob::BlobCodec;
use crate::config::ENVELOPE_OVERHEAD;
use crate::sync::SyncCodec;
use crate::{NetConfig, NetError, TopicKind};

/// Below this score a peer stops receiving gossip (IHAVE/IWANT) from us.
pub(crate) const GOSSIP_THRESHOLD: f64 = -50.0;
/// Below this score we stop publishing to a peer.
pub(crate) const PUBLISH_THRESHOLD: f64 = -100.0;
/// Gossipsub peer score below which every RPC a peer sends is ignored (graylisted).
///
/// Each rejected message raises the sender's invalid-message count `n` on that topic;
/// that term is `-10·n²` and the positive terms are capped at +50, so a peer that sent
/// six invalid messages (−360 + at most 50) is graylisted, while one or two mistakes (for
/// example during an upgrade) only cost it gossip and our publications. The count decays
/// by 1% a second, so a peer that stops recovers within minutes.
pub const GRAYLIST_THRESHOLD: f64 = -250.0;
const INVALID_MESSAGE_WEIGHT: f64 = -10.0;
const TOPIC_SCORE_CAP: f64 = 50.0;

/// Everything a Vouch node speaks. One instance lives inside the network task's `Swarm`.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) kademlia: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) blobs: request_response::Behaviour<BlobCodec>,
    pub(crate) sync: request_response::Behaviour<SyncCodec>,
}

/// The gossipsub message id: SHA-256 of the payload, so the same bytes published by two
/// nodes are one message and duplicates are suppressed network-wide.
pub(crate) fn content_id(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn setup(what: &'static str) -> impl FnOnce(String) -> NetError {
    move |reason| NetError::Setup { what, reason }
}

fn gossipsub_config(config: &NetConfig) -> Result<gossipsub::Config, NetError> {
    gossipsub::ConfigBuilder::default()
        .heartbeat_interval(config.heartbeat)
        // The 5 s default only delays mesh repair after start.
        .heartbeat_initial_delay(config.heartbeat)
        // No libp2p author: every payload is already signed by an operator (or the
        // verifier) and checked by the validator, so gossipsub's own per-message author
        // signature, checked on every copy received, only cost CPU (half of a node's CPU
        // per receipt in the gossip bench, BENCHMARKS.md). Messages that carry an author,
        // a sequence number or a signature are refused (`StrictNoSign`, as in Ethereum's
        // consensus-layer gossip, which also authenticates payloads itself).
        .validation_mode(gossipsub::ValidationMode::Anonymous)
        // Nothing is forwarded until the validator has accepted it.
        .validate_messages()
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(content_id(&m.data).to_vec())
        })
        // The payload cap is enforced by the validator (so it can be counted and
        // penalised); the transport cap adds room for the envelope.
        .max_transmit_size(config.max_message_bytes.saturating_add(ENVELOPE_OVERHEAD))
        .build()
        .map_err(|e| NetError::Setup {
            what: "gossipsub config",
            reason: e.to_string(),
        })
}

/// Scoring for one topic. Only the invalid-message term (P4) is meant to bite; the mesh
/// delivery term (P3) is off because receipts are sparse and an honest but quiet peer
/// must not be pruned for it.
fn topic_score_params() -> gossipsub::TopicScoreParams {
    gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 300.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        // Slow decay (half-life ≈ 70 heartbeats of the 1 s decay interval): a peer that
        // keeps sending junk stays graylisted; one that stops recovers within minutes.
        invalid_message_deliveries_decay: 0.99,
        ..Default::default()
    }
}

fn peer_score(config: &NetConfig) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let topics: HashMap<_, _> = TopicKind::ALL
        .iter()
        .map(|k| (k.topic(&config.network_id).hash(), topic_score_params()))
        .collect();
    let params = gossipsub::PeerScoreParams {
        topics,
        topic_score_cap: TOPIC_SCORE_CAP,
        ip_colocation_factor_whitelist: config.colocation_whitelist.clone(),
        ..Default::default()
    };
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: GOSSIP_THRESHOLD,
        publish_threshold: PUBLISH_THRESHOLD,
        graylist_threshold: GRAYLIST_THRESHOLD,
        ..Default::default()
    };
    (params, thresholds)
}

fn protocol(config: &NetConfig, name: &str) -> Result<StreamProtocol, NetError> {
    StreamProtocol::try_from_owned(format!("/vouch/{}/{name}", config.network_id.to_hex())).map_err(
        |e| NetError::Setup {
            what: "protocol name",
            reason: e.to_string(),
        },
    )
}

impl Behaviour {
    pub(crate) fn new(key: &Keypair, config: &NetConfig) -> Result<Self, NetError> {
        let peer_id = key.public().to_peer_id();

        let mut gossipsub = gossipsub::Behaviour::new(
            // See `gossipsub_config`: payloads authenticate themselves.
            gossipsub::MessageAuthenticity::Anonymous,
            gossipsub_config(config)?,
        )
        .map_err(|e| setup("gossipsub")(e.to_string()))?;
        let (params, thresholds) = peer_score(config);
        gossipsub
            .with_peer_score(params, thresholds)
            .map_err(setup("gossipsub peer scoring"))?;

        let identify = identify::Behaviour::new(
            identify::Config::new(
                format!("/vouch/{}/id/1", config.network_id.to_hex()),
                key.public(),
            )
            .with_agent_version(format!("vouch-net/{}", env!("CARGO_PKG_VERSION"))),
        );

        let mdns = if config.mdns {
            Some(
                mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                    .map_err(|e| setup("mDNS")(e.to_string()))?,
            )
        } else {
            None
        };

        let mut kad_config = kad::Config::new(protocol(config, "kad/1")?);
        kad_config.set_query_timeout(Duration::from_secs(60));
        let mut kademlia =
            kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
        // Nodes are reachable servers (operators, verifiers); without this a node on a
        // private address would stay a Kademlia client until it learns an external address.
        kademlia.set_mode(Some(kad::Mode::Server));

        let blobs = request_response::Behaviour::with_codec(
            BlobCodec {
                max_bytes: config.max_blob_bytes,
            },
            [(
                protocol(config, "blob/1")?,
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(config.request_timeout)
                .with_max_concurrent_streams(64),
        );

        let sync = request_response::Behaviour::with_codec(
            SyncCodec,
            [(
                protocol(config, "sync/1")?,
                request_response::ProtocolSupport::Full,
            )],
            request_response::Config::default()
                .with_request_timeout(config.request_timeout)
                .with_max_concurrent_streams(16),
        );

        let limits = connection_limits::Behaviour::new(
            connection_limits::ConnectionLimits::default()
                .with_max_established(Some(config.max_connections))
                .with_max_established_per_peer(Some(2))
                .with_max_pending_incoming(Some(64))
                .with_max_pending_outgoing(Some(64)),
        );

        Ok(Behaviour {
            limits,
            gossipsub,
            identify,
            // Ping failures close the connection (see the network task), so a peer that
            // vanished behind a partition is noticed within ~10 s and redialled.
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(5)),
            ),
            mdns: Toggle::from(mdns),
            kademlia,
            blobs,
            sync,
        })
    }
}
