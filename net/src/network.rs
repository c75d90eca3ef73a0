//! The task that owns the `Swarm`, and the handle the rest of the node uses to talk to it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::gossipsub::{self, MessageAcceptance, TopicHash};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{identify, kad, mdns, noise, tcp, yamux, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use vouch_proto::{NetworkId, SignedReceipt};

use crate::behaviour::{content_id, Behaviour, BehaviourEvent};
use crate::blob::{BlobStore, NoBlobs};
use crate::stats::{Stats, StatsSnapshot};
use crate::sync::{ReceiptLog, SyncRequest, SyncResponse, SYNC_PAGE};
use crate::validate::{RejectReason, Validation, Validator};
use crate::{NetConfig, NetError, TopicKind};

/// How long `spawn` waits for the listeners to report their addresses.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Most blob fetches in flight at once; further fetches fail fast instead of queueing.
const MAX_PENDING_FETCHES: usize = 256;

/// A validated gossip message handed to the application.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The topic it arrived on.
    pub topic_kind: TopicKind,
    /// The peer that forwarded it to us. Messages carry no libp2p author (the payload's
    /// own signature says who made it), so this need not be its publisher.
    pub via: PeerId,
    /// The payload.
    pub data: Vec<u8>,
    /// The decoded receipt, for messages on the receipts topic.
    pub receipt: Option<SignedReceipt>,
    /// When this node received it.
    pub received_at: Instant,
}

type Reply<T> = oneshot::Sender<T>;
/// A fetch waiting for its response: who was asked, for what, and whom to tell.
type PendingFetch = (PeerId, [u8; 32], Reply<Result<Option<Vec<u8>>, NetError>>);

#[derive(Debug)]
enum Command {
    Publish {
        kind: TopicKind,
        data: Vec<u8>,
        reply: Reply<Result<(), NetError>>,
    },
    Dial {
        addr: Multiaddr,
        reply: Reply<Result<(), NetError>>,
    },
    Peers {
        reply: Reply<Vec<PeerId>>,
    },
    MeshPeers {
        kind: TopicKind,
        reply: Reply<Vec<PeerId>>,
    },
    ListenAddrs {
        reply: Reply<Vec<Multiaddr>>,
    },
    PeerScore {
        peer: PeerId,
        reply: Reply<Option<f64>>,
    },
    Fetch {
        peer: PeerId,
        digest: [u8; 32],
        reply: Reply<Result<Option<Vec<u8>>, NetError>>,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

/// A cloneable client of the network task. Every method sends one command over a bounded
/// channel and waits for the task's reply; [`NetError::Closed`] means the task has stopped.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    network_id: NetworkId,
    stats: Arc<Stats>,
}

impl NetworkHandle {
    async fn request<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, NetError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| NetError::Closed)?;
        rx.await.map_err(|_| NetError::Closed)
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The network this node is part of.
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }

    /// Validation counters (read without a round trip to the task).
    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    /// Publishes a signed receipt on the receipts topic.
    pub async fn publish_receipt(&self, receipt: &SignedReceipt) -> Result<(), NetError> {
        self.publish(TopicKind::Receipts, receipt.encode().to_vec())
            .await
    }

    /// Publishes `data` on a topic. The local validator checks it first, exactly as a
    /// peer would, so a node never spends its own score on a message its peers reject.
    pub async fn publish(&self, kind: TopicKind, data: Vec<u8>) -> Result<(), NetError> {
        self.request(|reply| Command::Publish { kind, data, reply })
            .await?
    }

    /// Starts dialling `addr`; success means the dial started, not that it connected.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.request(|reply| Command::Dial { addr, reply }).await?
    }

    /// Peers with an established connection.
    pub async fn peers(&self) -> Result<Vec<PeerId>, NetError> {
        self.request(|reply| Command::Peers { reply }).await
    }

    /// Peers in this node's gossipsub mesh for a topic.
    pub async fn mesh_peers(&self, kind: TopicKind) -> Result<Vec<PeerId>, NetError> {
        self.request(|reply| Command::MeshPeers { kind, reply })
            .await
    }

    /// Addresses the node listens on (with port 0 resolved).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.request(|reply| Command::ListenAddrs { reply }).await
    }

    /// This node's gossipsub score for `peer` (`None` if the peer is unknown). Below
    /// [`crate::GRAYLIST_THRESHOLD`] everything the peer sends is ignored.
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>, NetError> {
        self.request(|reply| Command::PeerScore { peer, reply })
            .await
    }

    /// Asks `peer` for the blob whose SHA-256 is `digest`. `Ok(None)`: the peer does not
    /// have it. The bytes are checked against the digest before they are returned.
    pub async fn fetch(&self, peer: PeerId, digest: [u8; 32]) -> Result<Option<Vec<u8>>, NetError> {
        self.request(|reply| Command::Fetch {
            peer,
            digest,
            reply,
        })
        .await?
    }

    /// Fetches the blob named `digest` from whoever has it: `first` (say, the peer that
    /// forwarded the message naming it), then the other connected peers, asking at most
    /// `max_peers` in all. Any peer's bytes will do, since they are checked against the
    /// digest. `Err` carries why the last peer asked could not give it.
    pub async fn fetch_from_any(
        &self,
        first: PeerId,
        digest: [u8; 32],
        max_peers: usize,
    ) -> Result<Vec<u8>, String> {
        let mut peers = vec![first];
        let others = self.peers().await.map_err(|e| e.to_string())?;
        peers.extend(others.into_iter().filter(|p| *p != first));
        let mut last = String::from("no peer serves it");
        for peer in peers.into_iter().take(max_peers) {
            match self.fetch(peer, digest).await {
                Ok(Some(bytes)) => return Ok(bytes),
                Ok(None) => last = format!("{peer} does not hold it"),
                Err(e) => last = format!("{peer}: {e}"),
            }
        }
        Err(last)
    }

    /// Stops the network task and waits until it has dropped the swarm (closing every
    /// connection). Other handles then get [`NetError::Closed`].
    pub async fn shutdown(&self) -> Result<(), NetError> {
        self.request(|reply| Command::Shutdown { reply }).await
    }
}

/// Starts the network task.
#[derive(Debug)]
pub struct Network;

impl Network {
    /// Builds the swarm, starts listening, dials the bootstrap peers and spawns the task
    /// that owns the swarm. Serves no blobs; see [`Network::spawn_with_store`].
    ///
    /// Must run inside a tokio runtime. Returns once every listen address is bound, so
    /// [`NetworkHandle::listen_addrs`] already reports the real ports.
    pub async fn spawn(
        config: NetConfig,
        keypair: Keypair,
        validator: impl Validator,
    ) -> Result<(NetworkHandle, mpsc::Receiver<Delivered>), NetError> {
        Self::spawn_with_store(config, keypair, validator, Arc::new(NoBlobs)).await
    }

    /// Like [`Network::spawn`], serving blob requests from `store`.
    pub async fn spawn_with_store(
        config: NetConfig,
        keypair: Keypair,
        validator: impl Validator,
        store: Arc<dyn BlobStore>,
    ) -> Result<(NetworkHandle, mpsc::Receiver<Delivered>), NetError> {
        config.check()?;
        let local_peer_id = keypair.public().to_peer_id();
        let behaviour = Behaviour::new(&keypair, &config)?;
        let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| NetError::Setup {
                what: "TCP transport",
                reason: e.to_string(),
            })?
            .with_quic()
            .with_dns()
            .map_err(|e| NetError::Setup {
                what: "DNS resolver",
                reason: e.to_string(),
            })?
            .with_behaviour(move |_| behaviour)
            .map_err(|e| NetError::Setup {
                what: "behaviour",
                reason: e.to_string(),
            })?
            .with_swarm_config(|c| c.with_idle_connection_timeout(config.idle_connection_timeout))
            .build();

        let (cmd_tx, cmd_rx) = mpsc::channel(config.command_buffer);
        let (deliver_tx, deliver_rx) = mpsc::channel(config.delivery_buffer);
        let stats = Arc::new(Stats::default());
        let topics = TopicKind::ALL
            .iter()
            .map(|k| (k.topic(&config.network_id).hash(), *k))
            .collect();

        let mut event_loop = EventLoop {
            swarm,
            commands: cmd_rx,
            deliver: deliver_tx,
            validator: Box::new(validator),
            store,
            stats: stats.clone(),
            seen: SeenSet::new(config.seen_capacity),
            topics,
            pending_fetches: HashMap::new(),
            log: ReceiptLog::new(log_epoch(&local_peer_id), config.receipt_log_capacity),
            sync_cursors: HashMap::new(),
            sync_inflight: HashMap::new(),
            sync_refused: HashSet::new(),
            sync_turn: 0,
            remote_connections: HashSet::new(),
            config: config.clone(),
        };
        event_loop.start().await?;
        let span = tracing::info_span!("net", peer = %local_peer_id);
        tokio::spawn(event_loop.run().instrument(span));

        let handle = NetworkHandle {
            commands: cmd_tx,
            local_peer_id,
            network_id: config.network_id,
            stats,
        };
        Ok((handle, deliver_rx))
    }
}

/// Content ids of messages already delivered or published, bounded: the oldest id is
/// forgotten first. Gossipsub's own duplicate cache covers the first minute; this covers
/// re-publications after that.
#[derive(Debug)]
struct SeenSet {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl SeenSet {
    fn new(capacity: usize) -> Self {
        SeenSet {
            set: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn contains(&self, id: &[u8; 32]) -> bool {
        self.set.contains(id)
    }

    fn insert(&mut self, id: [u8; 32]) {
        if self.set.insert(id) {
            self.order.push_back(id);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }
}

/// Whether `addr` names this host only: a loopback or unspecified IP address.
fn is_local(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback() || ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_loopback() || ip.is_unspecified(),
        _ => false,
    })
}

/// The listen addresses a peer announced (identify) that are worth keeping for Kademlia:
/// all of them for a peer on this host, but for a peer reached over the network
/// (`remote`) not its loopback or unspecified ones, which would name *our* host (a node in
/// a container announces `127.0.0.1`, and another container dialling that reaches itself).
fn routable_addrs(addrs: Vec<Multiaddr>, remote: bool) -> impl Iterator<Item = Multiaddr> {
    addrs.into_iter().filter(move |a| !remote || !is_local(a))
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    deliver: mpsc::Sender<Delivered>,
    validator: Box<dyn Validator>,
    store: Arc<dyn BlobStore>,
    stats: Arc<Stats>,
    seen: SeenSet,
    topics: HashMap<TopicHash, TopicKind>,
    pending_fetches: HashMap<OutboundRequestId, PendingFetch>,
    /// Receipts served to peers that catch up.
    log: ReceiptLog,
    /// Where to continue reading each peer's log.
    sync_cursors: HashMap<PeerId, SyncRequest>,
    /// Sync requests in flight, at most one per peer.
    sync_inflight: HashMap<OutboundRequestId, PeerId>,
    /// Peers that served an invalid receipt through sync: never asked again.
    sync_refused: HashSet<PeerId>,
    /// Which connected peer the next periodic sync asks.
    sync_turn: usize,
    /// Open connections whose remote address is off this host (not loopback).
    remote_connections: HashSet<ConnectionId>,
    config: NetConfig,
}

/// A random-enough name for this process's receipt log: peers that remember a cursor into
/// an earlier run's log start again from the beginning.
fn log_epoch(peer: &PeerId) -> u64 {
    use sha2::{Digest as _, Sha256};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = Sha256::new()
        .chain_update(peer.to_bytes())
        .chain_update(now.to_be_bytes())
        .chain_update(std::process::id().to_be_bytes())
        .finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

impl EventLoop {
    /// Subscribes, binds every listen address (waiting, bounded, until each reports an
    /// address) and dials the bootstrap peers.
    async fn start(&mut self) -> Result<(), NetError> {
        for kind in TopicKind::ALL {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&kind.topic(&self.config.network_id))
                .map_err(|e| NetError::Setup {
                    what: "gossipsub subscription",
                    reason: e.to_string(),
                })?;
        }

        let mut waiting: HashMap<ListenerId, Multiaddr> = HashMap::new();
        for addr in self.config.listen.clone() {
            let id = self
                .swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::listen(addr.clone(), e))?;
            waiting.insert(id, addr);
        }
        let deadline = tokio::time::Instant::now() + LISTEN_TIMEOUT;
        while !waiting.is_empty() {
            let event = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .map_err(|_| {
                    let addr = waiting
                        .values()
                        .next()
                        .cloned()
                        .unwrap_or_else(Multiaddr::empty);
                    NetError::listen(addr, "no address reported within 10 s")
                })?;
            match event {
                SwarmEvent::NewListenAddr { listener_id, .. } => {
                    waiting.remove(&listener_id);
                }
                SwarmEvent::ListenerClosed {
                    listener_id,
                    reason: Err(e),
                    ..
                } => {
                    if let Some(addr) = waiting.remove(&listener_id) {
                        return Err(NetError::listen(addr, e));
                    }
                }
                SwarmEvent::ListenerError { listener_id, error } => {
                    if let Some(addr) = waiting.remove(&listener_id) {
                        return Err(NetError::listen(addr, error));
                    }
                }
                other => self.handle_event(other),
            }
        }

        let mut seeded = false;
        for addr in self.config.bootstrap.clone() {
            if let Some(Protocol::P2p(peer)) = addr.iter().last() {
                self.swarm
                    .behaviour_mut()
                    .kademlia
                    .add_address(&peer, addr.clone());
                seeded = true;
            }
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::warn!(%addr, error = %e, "cannot dial bootstrap peer");
            }
        }
        if seeded {
            if let Err(e) = self.swarm.behaviour_mut().kademlia.bootstrap() {
                tracing::warn!(error = %e, "Kademlia bootstrap did not start");
            }
        }
        Ok(())
    }

    async fn run(mut self) {
        let mut shutdown_reply = None;
        let mut sync_tick = tokio::time::interval(self.config.sync_interval);
        sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.handle_event(event),
                _ = sync_tick.tick() => {
                    self.redial_bootstrap();
                    // One peer per tick, in turn: every new connection is synced at once
                    // anyway, so this only backs that up, without fetching every receipt
                    // from every peer.
                    let mut peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                    if !peers.is_empty() {
                        peers.sort();
                        let peer = peers[self.sync_turn % peers.len()];
                        self.sync_turn = self.sync_turn.wrapping_add(1);
                        self.sync_with(peer);
                    }
                }
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        shutdown_reply = Some(reply);
                        break;
                    }
                    Some(command) => self.handle_command(command),
                    // Every handle is gone: nobody can use the network any more.
                    None => break,
                },
            }
        }
        tracing::info!(peer = %self.swarm.local_peer_id(), "network task stopping");
        // Pending fetch replies are dropped with `self`; their callers see `Closed`.
        drop(self);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn handle_command(&mut self, command: Command) {
        match command {
            Command::Publish { kind, data, reply } => {
                let _ = reply.send(self.publish(kind, data));
            }
            Command::Dial { addr, reply } => {
                let result = self.swarm.dial(addr.clone()).map_err(|e| NetError::Dial {
                    addr,
                    reason: e.to_string(),
                });
                let _ = reply.send(result);
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::MeshPeers { kind, reply } => {
                let hash = kind.topic(&self.config.network_id).hash();
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .mesh_peers(&hash)
                    .copied()
                    .collect();
                let _ = reply.send(peers);
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::Fetch {
                peer,
                digest,
                reply,
            } => {
                if self.pending_fetches.len() >= MAX_PENDING_FETCHES {
                    let _ = reply.send(Err(NetError::Fetch {
                        peer,
                        reason: format!("{MAX_PENDING_FETCHES} fetches already in flight"),
                    }));
                    return;
                }
                let id = self.swarm.behaviour_mut().blobs.send_request(&peer, digest);
                self.pending_fetches.insert(id, (peer, digest, reply));
            }
            Command::Shutdown { reply } => {
                // Handled in `run`; kept exhaustive so a new command cannot be forgotten.
                let _ = reply.send(());
            }
        }
    }

    fn publish(&mut self, kind: TopicKind, data: Vec<u8>) -> Result<(), NetError> {
        if data.len() > self.config.max_message_bytes {
            return Err(NetError::Rejected(RejectReason::Size));
        }
        match self.validator.validate(kind, &data) {
            Validation::Accept { .. } => {}
            Validation::Reject(reason) => return Err(NetError::Rejected(reason)),
            Validation::Ignore => {
                return Err(NetError::Publish(format!(
                    "the validator does not handle the {kind} topic, so peers would drop it; \
                     supply a Validator that does"
                )))
            }
        }
        let id = content_id(&data);
        if self.seen.contains(&id) {
            self.stats.duplicate();
            return Err(NetError::Duplicate);
        }
        let topic = kind.topic(&self.config.network_id);
        let logged = (kind == TopicKind::Receipts).then(|| data.clone());
        match self.swarm.behaviour_mut().gossipsub.publish(topic, data) {
            Ok(_) => {
                self.seen.insert(id);
                if let Some(r) = logged {
                    self.log.push(&r);
                }
                Ok(())
            }
            Err(gossipsub::PublishError::Duplicate) => {
                self.stats.duplicate();
                Err(NetError::Duplicate)
            }
            Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {
                // Peers that connect later still get it, through sync.
                if let Some(r) = logged {
                    self.seen.insert(id);
                    self.log.push(&r);
                }
                Err(NetError::NoPeers)
            }
            Err(e) => Err(NetError::Publish(e.to_string())),
        }
    }

    fn handle_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                connection_id,
            })) => {
                let kad_protocols = self.swarm.behaviour().kademlia.protocol_names().to_vec();
                if info.protocols.iter().any(|p| kad_protocols.contains(p)) {
                    let remote = self.remote_connections.contains(&connection_id);
                    for addr in routable_addrs(info.listen_addrs, remote) {
                        self.swarm
                            .behaviour_mut()
                            .kademlia
                            .add_address(&peer_id, addr);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    tracing::debug!(%peer, %addr, "mDNS discovered peer");
                    self.swarm
                        .behaviour_mut()
                        .kademlia
                        .add_address(&peer, addr.clone());
                    if !self.swarm.is_connected(&peer) {
                        let opts = DialOpts::peer_id(peer).addresses(vec![addr]).build();
                        if let Err(e) = self.swarm.dial(opts) {
                            tracing::debug!(%peer, error = %e, "cannot dial mDNS peer");
                        }
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Blobs(event)) => self.on_blob_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Sync(event)) => self.on_sync_event(event),
            // libp2p no longer closes a connection whose pings fail; a dead connection
            // (a partition, a peer that moved) would otherwise look alive for ever.
            SwarmEvent::Behaviour(BehaviourEvent::Ping(libp2p::ping::Event {
                peer,
                connection,
                result: Err(error),
            })) => {
                tracing::info!(%peer, %error, "ping failed; closing the connection");
                self.swarm.close_connection(connection);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kademlia(
                kad::Event::OutboundQueryProgressed {
                    result: kad::QueryResult::Bootstrap(Err(e)),
                    ..
                },
            )) => {
                tracing::debug!(error = ?e, "Kademlia bootstrap step failed");
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                connection_id,
                ..
            } => {
                if !is_local(endpoint.get_remote_address()) {
                    self.remote_connections.insert(connection_id);
                }
                tracing::debug!(peer = %peer_id, addr = %endpoint.get_remote_address(), "connected");
                self.sync_with(peer_id);
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                cause,
                connection_id,
                ..
            } => {
                self.remote_connections.remove(&connection_id);
                tracing::debug!(peer = %peer_id, cause = ?cause, "connection closed");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                if peer_id.is_some_and(|p| self.is_bootstrap(&p)) {
                    tracing::warn!(peer = ?peer_id, error = %error, "cannot reach bootstrap peer (retrying)");
                } else {
                    tracing::debug!(peer = ?peer_id, error = %error, "dial failed");
                }
            }
            _ => {}
        }
    }

    /// Validates one received message and reports the result to gossipsub, which forwards
    /// it (Accept), drops it and penalises `via` (Reject) or just drops it (Ignore).
    fn on_gossip(
        &mut self,
        via: PeerId,
        message_id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let Some(&kind) = self.topics.get(&message.topic) else {
            self.report(&message_id, &via, MessageAcceptance::Ignore);
            self.stats.ignored();
            return;
        };
        // The size cap is the network's, whatever the application's validator checks.
        if message.data.len() > self.config.max_message_bytes {
            self.report(&message_id, &via, MessageAcceptance::Reject);
            self.stats.rejected(RejectReason::Size);
            return;
        }
        let id = content_id(&message.data);
        if self.seen.contains(&id) {
            // Valid before, so not the sender's fault: no penalty, no second delivery.
            self.report(&message_id, &via, MessageAcceptance::Ignore);
            self.stats.duplicate();
            return;
        }
        match self.validator.validate(kind, &message.data) {
            Validation::Accept { receipt } => {
                self.report(&message_id, &via, MessageAcceptance::Accept);
                self.seen.insert(id);
                self.stats.accepted();
                if kind == TopicKind::Receipts {
                    self.log.push(&message.data);
                }
                self.deliver(Delivered {
                    topic_kind: kind,
                    via,
                    data: message.data,
                    receipt,
                    received_at: Instant::now(),
                });
            }
            Validation::Reject(reason) => {
                tracing::debug!(peer = %via, topic = %kind, %reason, "rejected gossip");
                self.report(&message_id, &via, MessageAcceptance::Reject);
                self.stats.rejected(reason);
            }
            Validation::Ignore => {
                self.report(&message_id, &via, MessageAcceptance::Ignore);
                self.stats.ignored();
            }
        }
    }

    /// Dials every bootstrap peer we are not connected to: after a partition heals (or the
    /// peer restarts) the node finds its way back without waiting for discovery.
    fn redial_bootstrap(&mut self) {
        for addr in self.config.bootstrap.clone() {
            let connected = match addr.iter().last() {
                Some(Protocol::P2p(peer)) => self.swarm.is_connected(&peer),
                _ => self.swarm.connected_peers().next().is_some(),
            };
            if !connected {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    tracing::debug!(%addr, error = %e, "cannot redial bootstrap peer");
                }
            }
        }
    }

    fn is_bootstrap(&self, peer: &PeerId) -> bool {
        self.config
            .bootstrap
            .iter()
            .any(|a| matches!(a.iter().last(), Some(Protocol::P2p(p)) if p == *peer))
    }

    fn deliver(&mut self, delivered: Delivered) {
        let kind = delivered.topic_kind;
        match self.deliver.try_send(delivered) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.stats.dropped_full();
                tracing::warn!(topic = %kind, "application is not keeping up; message forwarded but not delivered");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!("delivery channel closed; message forwarded only");
            }
        }
    }

    /// Asks `peer` for the receipts after our cursor into its log, unless a request to it
    /// is already in flight.
    fn sync_with(&mut self, peer: PeerId) {
        if self.sync_inflight.values().any(|p| *p == peer)
            || self.sync_refused.contains(&peer)
            || self.graylisted(&peer)
        {
            return;
        }
        let req = self
            .sync_cursors
            .get(&peer)
            .copied()
            .unwrap_or(SyncRequest {
                epoch: 0,
                cursor: 0,
            });
        let id = self.swarm.behaviour_mut().sync.send_request(&peer, req);
        self.sync_inflight.insert(id, peer);
    }

    fn on_sync_event(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let page = self.log.page(request);
                if self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, page)
                    .is_err()
                {
                    tracing::debug!(%peer, "sync requester went away before the response");
                }
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                self.sync_inflight.remove(&request_id);
                let full = response.receipts.len() == SYNC_PAGE;
                self.sync_cursors.insert(
                    peer,
                    SyncRequest {
                        epoch: response.epoch,
                        cursor: response.next,
                    },
                );
                if self.graylisted(&peer) {
                    return;
                }
                for r in response.receipts {
                    if !self.on_synced(peer, &r) {
                        tracing::warn!(%peer, "peer served an invalid receipt through sync; not syncing from it again");
                        self.sync_refused.insert(peer);
                        return;
                    }
                }
                if full {
                    self.sync_with(peer);
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                self.sync_inflight.remove(&request_id);
                tracing::debug!(%peer, %error, "sync request failed");
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound sync request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn graylisted(&self, peer: &PeerId) -> bool {
        self.swarm
            .behaviour()
            .gossipsub
            .peer_score(peer)
            .is_some_and(|s| s < crate::GRAYLIST_THRESHOLD)
    }

    /// One receipt from a peer's log: validated and de-duplicated exactly like gossip.
    /// False when it is invalid: a peer only serves receipts it accepted, so it lies.
    fn on_synced(&mut self, peer: PeerId, data: &[u8]) -> bool {
        let id = content_id(data);
        if self.seen.contains(&id) {
            return true;
        }
        match self.validator.validate(TopicKind::Receipts, data) {
            Validation::Accept { receipt } => {
                self.seen.insert(id);
                self.stats.accepted();
                self.stats.synced();
                self.log.push(data);
                self.deliver(Delivered {
                    topic_kind: TopicKind::Receipts,
                    via: peer,
                    data: data.to_vec(),
                    receipt,
                    received_at: Instant::now(),
                });
            }
            Validation::Reject(reason) => {
                tracing::debug!(%peer, %reason, "rejected a synced receipt");
                self.stats.sync_rejected();
                return false;
            }
            Validation::Ignore => self.stats.ignored(),
        }
        true
    }

    fn report(&mut self, id: &gossipsub::MessageId, via: &PeerId, acceptance: MessageAcceptance) {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(id, via, acceptance);
    }

    fn on_blob_event(&mut self, event: request_response::Event<[u8; 32], Option<Vec<u8>>>) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let blob = self
                    .store
                    .get(&request)
                    .filter(|b| b.len() <= self.config.max_blob_bytes);
                if self
                    .swarm
                    .behaviour_mut()
                    .blobs
                    .send_response(channel, blob)
                    .is_err()
                {
                    tracing::debug!(%peer, "blob requester went away before the response");
                }
            }
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some((_, digest, reply)) = self.pending_fetches.remove(&request_id) {
                    let result = match response {
                        Some(bytes) if !crate::blob::blob_matches(&bytes, &digest) => {
                            Err(NetError::DigestMismatch { peer })
                        }
                        other => Ok(other),
                    };
                    let _ = reply.send(result);
                }
            }
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some((_, _, reply)) = self.pending_fetches.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Fetch {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound blob request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_set_forgets_oldest_first() {
        let mut s = SeenSet::new(2);
        s.insert([1; 32]);
        s.insert([2; 32]);
        s.insert([2; 32]);
        assert!(s.contains(&[1; 32]));
        s.insert([3; 32]);
        assert!(!s.contains(&[1; 32]));
        assert!(s.contains(&[2; 32]) && s.contains(&[3; 32]));
        assert_eq!(s.order.len(), 2);
    }

    #[test]
    fn a_remote_peer_s_loopback_addresses_are_not_kept() {
        let addrs: Vec<Multiaddr> = [
            "/ip4/127.0.0.1/tcp/7101",
            "/ip4/172.18.0.3/tcp/7101",
            "/ip4/0.0.0.0/tcp/7101",
            "/ip6/::1/udp/7101/quic-v1",
            "/dns4/node2/tcp/7101",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let kept: Vec<String> = routable_addrs(addrs.clone(), true)
            .map(|a| a.to_string())
            .collect();
        assert_eq!(kept, ["/ip4/172.18.0.3/tcp/7101", "/dns4/node2/tcp/7101"]);
        // A peer on this host (a loopback devnet): every address is kept.
        assert_eq!(routable_addrs(addrs, false).count(), 5);
        assert!(is_local(&"/ip4/127.0.0.1/tcp/1".parse().unwrap()));
        assert!(!is_local(&"/ip4/10.0.0.1/tcp/1".parse().unwrap()));
    }
}
