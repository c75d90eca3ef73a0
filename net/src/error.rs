//! Errors of the networking crate.

use libp2p::{Multiaddr, PeerId};

use crate::validate::RejectReason;

/// Everything that can go wrong when starting the network or talking to its task.
///
/// Messages say what to change where there is something to change (a flag, an address,
/// a peer to dial); none of these is raised for what a remote peer sends — invalid gossip
/// is counted in [`crate::Stats`] and penalised through the peer score instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The configuration is inconsistent (for example a zero size limit).
    #[error("invalid network configuration: {0}")]
    Config(String),

    /// A listen address could not be bound.
    #[error(
        "cannot listen on {addr}: {reason}; another process (or a second node) may already use \
         this port — pick a free one with the node's `--p2p-listen` flag (or port 0 for any free port)"
    )]
    Listen {
        /// The address from `NetConfig::listen`.
        addr: Multiaddr,
        /// What the transport reported.
        reason: String,
    },

    /// Building the transport or a behaviour failed (noise keys, mDNS socket, ...).
    #[error("cannot set up the libp2p {what}: {reason}")]
    Setup {
        /// Which part failed.
        what: &'static str,
        /// The underlying error.
        reason: String,
    },

    /// A dial could not even be started (bad address, connection limit reached, ...).
    #[error("cannot dial {addr}: {reason}")]
    Dial {
        /// The address that was dialled.
        addr: Multiaddr,
        /// What the swarm reported.
        reason: String,
    },

    /// The message failed this node's own validator, so it was not published.
    #[error("refusing to publish a message this node would reject itself ({0})")]
    Rejected(RejectReason),

    /// The same bytes were published or received before; they are not sent again.
    #[error("message already published or seen (message ids are content hashes)")]
    Duplicate,

    /// No peer is subscribed to the topic yet.
    #[error(
        "no peer is subscribed to this topic yet; dial a bootstrap peer (`--p2p-bootstrap`) \
         or wait for the mesh to form"
    )]
    NoPeers,

    /// Gossipsub refused the message for another reason (size, full queues, ...).
    #[error("gossipsub refused to publish: {0}")]
    Publish(String),

    /// A blob fetch failed (timeout, connection lost, peer does not speak the protocol).
    #[error("fetching a blob from {peer} failed: {reason}")]
    Fetch {
        /// The peer asked.
        peer: PeerId,
        /// What went wrong.
        reason: String,
    },

    /// A peer answered a fetch with bytes whose SHA-256 is not the digest asked for.
    #[error("peer {peer} served a blob whose SHA-256 does not match the requested digest")]
    DigestMismatch {
        /// The peer that served the wrong bytes.
        peer: PeerId,
    },

    /// The network task has stopped (after `shutdown()` or because it failed).
    #[error("the network task has stopped; restart the node to reconnect")]
    Closed,
}

impl NetError {
    pub(crate) fn listen(addr: Multiaddr, err: impl std::fmt::Display) -> Self {
        NetError::Listen {
            addr,
            reason: err.to_string(),
        }
    }
}
