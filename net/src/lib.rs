//! Vouch gossip over libp2p.
//!
//! Operator nodes and verifiers exchange signed receipts (and, later, jobs and verdicts)
//! on gossipsub topics versioned by network id — `vouch/<network id hex>/receipts/2`,
//! `.../jobs/2`, `.../verdicts/2` — and fetch blobs (job specs, inputs, outputs, traces)
//! from each other by SHA-256 digest.
//!
//! # Layout
//!
//! [`Network::spawn`] builds a `Swarm` (TCP and QUIC, noise, yamux) whose behaviour
//! combines gossipsub, identify, ping, mDNS (optional), Kademlia, a blob
//! request-response protocol and connection limits, and moves it into **one task** that
//! owns it. Nothing else touches the swarm:
//!
//! ```text
//!  NetworkHandle (Clone) ──Command + oneshot reply──▶ ┌──────────────┐
//!     publish / dial / peers / fetch / peer_score     │ network task │──▶ peers (libp2p)
//!                                                     │  owns Swarm  │◀──
//!  app ◀──────────── mpsc::Receiver<Delivered> ────── └──────────────┘
//! ```
//!
//! Both channels are bounded (`NetConfig::command_buffer`, `NetConfig::delivery_buffer`);
//! the task never spawns per message.
//!
//! # Validation
//!
//! Gossipsub runs with `validate_messages()`: a received message is not forwarded until
//! the application's [`Validator`] has looked at it on the network task. The result goes
//! back through `report_message_validation_result`: *Accept* forwards it and delivers
//! it once (message ids are content hashes, and a bounded set of seen ids suppresses later
//! re-publications); *Reject* drops it and lowers the sending peer's score, so a peer that
//! keeps sending invalid messages falls below [`GRAYLIST_THRESHOLD`] and is ignored.
//! [`ReceiptValidator`] checks receipts against a static operator allow-list: size,
//! exact `SignedReceipt` decoding, network id, signature, registration. Counters of every
//! decision are in [`Stats`], readable through [`NetworkHandle::stats`]. A node also runs
//! its own validator on what it publishes, so it never spends its score on a message its
//! peers would reject.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use vouch_net::{NetConfig, Network, ReceiptValidator, Registry};
//! use vouch_proto::NetworkId;
//!
//! # async fn run(receipt: vouch_proto::SignedReceipt) -> Result<(), vouch_net::NetError> {
//! let network_id = NetworkId::from_name("devnet");
//! let registry = Registry::default(); // filled from the operator registry
//! registry.write().expect("registry lock").insert(receipt.receipt.operator);
//! let config = NetConfig::new(network_id);
//! let key = vouch_net::libp2p::identity::Keypair::generate_ed25519();
//! let (net, mut delivered) =
//!     Network::spawn(config, key, ReceiptValidator::new(network_id, registry)).await?;
//!
//! net.publish_receipt(&receipt).await?;
//! while let Some(msg) = delivered.recv().await {
//!     println!("{} from {}: {:?}", msg.topic_kind, msg.via, msg.receipt);
//! }
//! net.shutdown().await?;
//! # Ok(()) }
//! ```

mod behaviour;
mod blob;
mod config;
mod error;
mod identity;
mod network;
mod stats;
mod sync;
mod validate;

pub use behaviour::GRAYLIST_THRESHOLD;
pub use blob::{blob_matches, BlobStore, MemoryBlobStore, NoBlobs};
pub use config::{NetConfig, TopicKind, DEFAULT_MAX_BLOB_BYTES, DEFAULT_MAX_MESSAGE_BYTES};
pub use error::NetError;
pub use identity::load_or_create_identity;
pub use network::{Delivered, Network, NetworkHandle};
pub use stats::{Stats, StatsSnapshot};
pub use sync::SYNC_PAGE;
pub use validate::{
    GossipValidator, ReceiptValidator, Registry, RejectReason, Validation, Validator, VerifierKey,
};

/// Re-exported so applications name the same libp2p types (`Multiaddr`, `PeerId`,
/// `identity::Keypair`) without pinning a second copy.
pub use libp2p;
