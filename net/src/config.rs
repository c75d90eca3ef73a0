//! Configuration and topic names.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use libp2p::gossipsub::IdentTopic;
use libp2p::Multiaddr;
use vouch_proto::NetworkId;

use crate::NetError;

/// Default cap on one gossip message's payload: 64 KiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Default cap on a blob served or fetched by digest: 16 MiB.
pub const DEFAULT_MAX_BLOB_BYTES: usize = 16 * 1024 * 1024;
/// Room for the gossipsub envelope (topic, protobuf framing) on top of the payload cap. The payload itself is checked by the
/// validator so an oversized payload is *rejected* (and penalised), not silently lost.
pub(crate) const ENVELOPE_OVERHEAD: usize = 4 * 1024;

/// The kinds of gossip topic. Every topic name carries the network id, so nodes of
/// different networks never share a mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// Signed receipts (`vouch_proto::SignedReceipt`, 324 bytes).
    Receipts,
    /// Job announcements.
    Jobs,
    /// Verifier verdicts.
    Verdicts,
}

impl TopicKind {
    /// All topic kinds, in a fixed order.
    pub const ALL: [TopicKind; 3] = [TopicKind::Receipts, TopicKind::Jobs, TopicKind::Verdicts];

    fn label(self) -> &'static str {
        match self {
            TopicKind::Receipts => "receipts",
            TopicKind::Jobs => "jobs",
            TopicKind::Verdicts => "verdicts",
        }
    }

    /// The topic name: `vouch/<network id hex>/<kind>/2`. Version 2: messages carry no
    /// libp2p author signature (version 1 did); the two cannot share a mesh.
    pub fn topic_name(self, network_id: &NetworkId) -> String {
        format!("vouch/{}/{}/2", network_id.to_hex(), self.label())
    }

    pub(crate) fn topic(self, network_id: &NetworkId) -> IdentTopic {
        IdentTopic::new(self.topic_name(network_id))
    }
}

impl fmt::Display for TopicKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// How a node joins the gossip network.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Network this node belongs to; part of every topic and protocol name.
    pub network_id: NetworkId,
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/7000` and
    /// `/ip4/0.0.0.0/udp/7000/quic-v1`. Port 0 picks a free port.
    pub listen: Vec<Multiaddr>,
    /// Peers dialled at start and seeded into Kademlia. Each must end in `/p2p/<peer id>`
    /// for Kademlia to use it; addresses without one are only dialled.
    pub bootstrap: Vec<Multiaddr>,
    /// Discover peers on the local network with mDNS.
    pub mdns: bool,
    /// Largest gossip payload accepted, in bytes (default 64 KiB). Larger payloads are
    /// rejected by the validator and count against the sender's score.
    pub max_message_bytes: usize,
    /// Largest blob served or accepted by [`crate::NetworkHandle::fetch`].
    pub max_blob_bytes: usize,
    /// How long a blob fetch may take before it fails.
    pub request_timeout: Duration,
    /// Gossipsub heartbeat (mesh maintenance, gossip emission, score decay ticks).
    pub heartbeat: Duration,
    /// Most established connections in total.
    pub max_connections: u32,
    /// Capacity of the channel to the network task (commands from handles).
    pub command_buffer: usize,
    /// Capacity of the channel that hands validated messages to the application. When it is
    /// full further messages are still forwarded to peers but not delivered locally, and
    /// `Stats::dropped_full` counts them.
    pub delivery_buffer: usize,
    /// How many content ids are remembered to suppress duplicate deliveries after the
    /// gossipsub duplicate cache has forgotten them.
    pub seen_capacity: usize,
    /// IPs exempt from the gossipsub IP-colocation penalty. Several nodes behind one address
    /// (a single-host test bed, a NAT) are otherwise penalised once more than ten share it.
    pub colocation_whitelist: HashSet<IpAddr>,
    /// Connections with no active stream are closed after this long.
    pub idle_connection_timeout: Duration,
    /// How often one connected peer (each in turn) is asked for receipts this node has not
    /// seen; every new connection is asked at once. Catches up after a partition or a
    /// restart.
    pub sync_interval: Duration,
    /// How many receipts the node keeps to serve to peers catching up.
    pub receipt_log_capacity: usize,
}

impl NetConfig {
    /// Defaults for `network_id`: listen on TCP and QUIC port 0 on all interfaces, no
    /// bootstrap peers, mDNS on.
    pub fn new(network_id: NetworkId) -> Self {
        NetConfig {
            network_id,
            listen: vec![
                "/ip4/0.0.0.0/tcp/0"
                    .parse()
                    .expect("static multiaddr parses"),
                "/ip4/0.0.0.0/udp/0/quic-v1"
                    .parse()
                    .expect("static multiaddr parses"),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_blob_bytes: DEFAULT_MAX_BLOB_BYTES,
            request_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(1),
            max_connections: 256,
            command_buffer: 64,
            delivery_buffer: 1024,
            seen_capacity: 65_536,
            colocation_whitelist: HashSet::new(),
            idle_connection_timeout: Duration::from_secs(60),
            sync_interval: Duration::from_secs(10),
            receipt_log_capacity: 100_000,
        }
    }

    pub(crate) fn check(&self) -> Result<(), NetError> {
        let bad = |what: &str| Err(NetError::Config(what.to_string()));
        if self.max_message_bytes == 0 {
            return bad("max_message_bytes must be > 0");
        }
        if self.max_blob_bytes == 0 {
            return bad("max_blob_bytes must be > 0");
        }
        if self.command_buffer == 0 || self.delivery_buffer == 0 {
            return bad("command_buffer and delivery_buffer must be > 0");
        }
        if self.seen_capacity == 0 {
            return bad("seen_capacity must be > 0");
        }
        if self.heartbeat.is_zero()
            || self.request_timeout.is_zero()
            || self.sync_interval.is_zero()
        {
            return bad("heartbeat, request_timeout and sync_interval must be > 0");
        }
        if self.listen.is_empty() {
            return bad("at least one listen address is needed (use port 0 for any free port)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_carry_the_network_id() {
        let id = NetworkId::from_name("devnet");
        let name = TopicKind::Receipts.topic_name(&id);
        assert_eq!(name, format!("vouch/{}/receipts/2", id.to_hex()));
        let other = NetworkId::from_name("testnet");
        assert_ne!(name, TopicKind::Receipts.topic_name(&other));
        assert!(TopicKind::Verdicts.topic_name(&id).ends_with("/verdicts/2"));
        assert!(TopicKind::Jobs.topic_name(&id).ends_with("/jobs/2"));
    }

    #[test]
    fn config_check_refuses_zero_limits() {
        let mut c = NetConfig::new(NetworkId::from_name("devnet"));
        assert!(c.check().is_ok());
        c.max_message_bytes = 0;
        assert!(matches!(c.check(), Err(NetError::Config(_))));
    }
}
