//! What a node knows of each tunnel it holds: state, counters and the live connection.
//!
//! A [`Link`] outlives the QUIC connections it carries: an edge's link to an origin goes
//! through connecting, connected and backoff many times, and its byte and loss counters
//! keep counting across reconnects (each closed connection's totals are added on).
//! [`TunnelSet`] holds a node's links for the metrics and health endpoints.

use crate::wire::{LoadReport, Message, Revocation};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

/// Where a tunnel is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TunnelState {
    /// Dialling, or in the TLS handshake, or waiting for the peer's hello.
    Connecting,
    /// Hello exchanged: streams can be opened.
    Connected,
    /// The last attempt failed or the connection was lost; waiting to retry.
    Backoff,
    /// Closed for good (node shutting down, or an origin's view of a gone edge).
    Closed,
}

impl TunnelState {
    pub const ALL: [TunnelState; 4] = [
        TunnelState::Connecting,
        TunnelState::Connected,
        TunnelState::Backoff,
        TunnelState::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TunnelState::Connecting => "connecting",
            TunnelState::Connected => "connected",
            TunnelState::Backoff => "backoff",
            TunnelState::Closed => "closed",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_index(i: u8) -> TunnelState {
        Self::ALL
            .get(i as usize)
            .copied()
            .unwrap_or(TunnelState::Closed)
    }
}

/// Byte and loss counters of connections that are gone.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    sent_bytes: u64,
    received_bytes: u64,
    sent_packets: u64,
    lost_packets: u64,
}

/// One tunnel, as the metrics and health endpoints see it.
#[derive(Debug)]
pub struct Link {
    /// The peer's node id (from config on an edge, from its hello on an origin).
    pub peer: String,
    pub peer_region: String,
    /// Which of the edge's tunnels to the origin this is ([`crate::Hello::lane`]).
    pub lane: u16,
    state: AtomicU8,
    transitions: [AtomicU64; 4],
    reconnects: AtomicU64,
    open_streams: AtomicI64,
    streams_total: AtomicU64,
    connection: Mutex<Option<quinn::Connection>>,
    retired: Mutex<Totals>,
    peer_load: Mutex<Option<LoadReport>>,
    /// The live connection's control stream writer (origin side), to send messages the
    /// node initiates (revocations).
    control: Mutex<Option<tokio::sync::mpsc::Sender<Message>>>,
}

/// The live connection's path counters, from quinn's `Connection::stats()`: cumulative
/// over that connection (a new connection starts from 0), for the edge's router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathSample {
    /// Smoothed round-trip time.
    pub rtt: Duration,
    pub sent_packets: u64,
    pub lost_packets: u64,
    /// Loss-triggered congestion window reductions.
    pub congestion_events: u64,
    /// UDP datagrams received on the connection: it stands still when the peer sends
    /// nothing, not even the acknowledgement of a keep-alive.
    pub received_datagrams: u64,
}

/// A point-in-time copy of a [`Link`].
#[derive(Debug, Clone)]
pub struct LinkSnapshot {
    pub peer: String,
    pub peer_region: String,
    pub lane: u16,
    pub state: TunnelState,
    /// Times the link entered each state, in [`TunnelState::ALL`] order.
    pub transitions: [u64; 4],
    pub reconnects: u64,
    pub open_streams: i64,
    /// Publish streams ever opened on the link.
    pub streams_total: u64,
    /// Smoothed RTT of the live connection.
    pub srtt: Option<Duration>,
    /// Congestion window of the live connection, in bytes.
    pub cwnd: Option<u64>,
    /// UDP bytes over the link's whole life.
    pub sent_bytes: u64,
    pub received_bytes: u64,
    /// QUIC packets sent and declared lost over the link's whole life: their ratio is
    /// the path's loss.
    pub sent_packets: u64,
    pub lost_packets: u64,
    /// The peer's last health and load report.
    pub peer_load: Option<LoadReport>,
}

impl Link {
    pub(crate) fn new(peer: &str, peer_region: &str, lane: u16, state: TunnelState) -> Arc<Link> {
        let link = Link {
            peer: peer.to_string(),
            peer_region: peer_region.to_string(),
            lane,
            state: AtomicU8::new(state.index() as u8),
            transitions: Default::default(),
            reconnects: AtomicU64::new(0),
            open_streams: AtomicI64::new(0),
            streams_total: AtomicU64::new(0),
            connection: Mutex::new(None),
            retired: Mutex::new(Totals::default()),
            peer_load: Mutex::new(None),
            control: Mutex::new(None),
        };
        link.transitions[state.index()].fetch_add(1, Ordering::Relaxed);
        Arc::new(link)
    }

    pub fn state(&self) -> TunnelState {
        TunnelState::from_index(self.state.load(Ordering::Acquire))
    }

    /// Moves to `to`, logging and counting the change. Returns the previous state.
    /// A connected tunnel that goes is logged as lost (a warning); [`Link::close`] is for
    /// an orderly end.
    pub(crate) fn set_state(&self, to: TunnelState, why: &str) -> TunnelState {
        self.transition(to, why, false)
    }

    /// Like [`Link::set_state`], after the peer closed the connection on purpose (it is
    /// shutting down, saying so with the normal code): logged as an end, not a loss.
    pub(crate) fn set_state_after_peer_left(&self, to: TunnelState, why: &str) -> TunnelState {
        self.transition(to, why, true)
    }

    /// Closes for good: at `orderly` (this node or its peer shutting down, each saying
    /// so) an INFO line, as an operator's Ctrl-C is no incident; otherwise a warning.
    pub(crate) fn close(&self, why: &str, orderly: bool) -> TunnelState {
        self.transition(TunnelState::Closed, why, orderly)
    }

    fn transition(&self, to: TunnelState, why: &str, orderly: bool) -> TunnelState {
        let from = TunnelState::from_index(self.state.swap(to.index() as u8, Ordering::AcqRel));
        if from != to {
            self.transitions[to.index()].fetch_add(1, Ordering::Relaxed);
            let (peer, region) = (&self.peer, &self.peer_region);
            match to {
                TunnelState::Connected => tracing::info!(%peer, %region, from = from.as_str(),
                    "tunnel connected{}", if why.is_empty() { String::new() } else { format!(": {why}") }),
                TunnelState::Closed | TunnelState::Backoff if orderly => {
                    tracing::info!(%peer, %region, to = to.as_str(), reason = why, "tunnel closed")
                }
                TunnelState::Backoff | TunnelState::Closed if from == TunnelState::Connected => {
                    tracing::warn!(%peer, %region, to = to.as_str(), reason = why, "tunnel lost")
                }
                _ => tracing::info!(%peer, %region, from = from.as_str(), to = to.as_str(),
                    reason = why, "tunnel state changed"),
            }
        }
        from
    }

    pub(crate) fn count_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Attaches the live connection.
    pub(crate) fn attach(&self, connection: quinn::Connection) {
        let old = lock(&self.connection).replace(connection);
        if let Some(old) = old {
            self.retire(&old);
        }
    }

    /// Detaches the connection, adding its totals to the link's. The peer's last report
    /// was about that connection's peer: it is forgotten too.
    pub(crate) fn detach(&self) {
        if let Some(old) = lock(&self.connection).take() {
            self.retire(&old);
        }
        *lock(&self.peer_load) = None;
    }

    /// The live connection's path counters, while there is one.
    pub fn path_sample(&self) -> Option<PathSample> {
        let connection = self.connection()?;
        let stats = connection.stats();
        let path = stats.path;
        Some(PathSample {
            rtt: path.rtt,
            sent_packets: path.sent_packets,
            lost_packets: path.lost_packets,
            congestion_events: path.congestion_events,
            received_datagrams: stats.udp_rx.datagrams,
        })
    }

    /// The peer's last report on the live connection.
    pub fn peer_load(&self) -> Option<LoadReport> {
        lock(&self.peer_load).clone()
    }

    fn retire(&self, connection: &quinn::Connection) {
        let s = connection.stats();
        let mut t = lock(&self.retired);
        t.sent_bytes += s.udp_tx.bytes;
        t.received_bytes += s.udp_rx.bytes;
        t.sent_packets += s.path.sent_packets;
        t.lost_packets += s.path.lost_packets;
    }

    /// Detaches `connection` if it is still the link's live one (a newer connection of
    /// the same peer may have replaced it). Returns whether it was.
    pub(crate) fn detach_if_current(&self, connection: &quinn::Connection) -> bool {
        let mut live = lock(&self.connection);
        if live.as_ref().map(|c| c.stable_id()) != Some(connection.stable_id()) {
            return false;
        }
        if let Some(old) = live.take() {
            drop(live);
            self.retire(&old);
        }
        true
    }

    /// Sets (or, with `None`, clears) the live connection's control writer.
    pub(crate) fn set_control(&self, control: Option<tokio::sync::mpsc::Sender<Message>>) {
        *lock(&self.control) = control;
    }

    /// Queues `message` on the live control stream. False when there is none. A full
    /// queue (the peer has not read 1,024 messages) is waited on in the background, for
    /// at most [`CONTROL_SEND_LIMIT`], rather than dropped.
    pub(crate) fn send_control(&self, message: Message) -> bool {
        let Some(control) = lock(&self.control).clone() else {
            return false;
        };
        match control.try_send(message) {
            Ok(()) => true,
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
            Err(tokio::sync::mpsc::error::TrySendError::Full(message)) => {
                let peer = self.peer.clone();
                tokio::spawn(async move {
                    if tokio::time::timeout(CONTROL_SEND_LIMIT, control.send(message))
                        .await
                        .is_err()
                    {
                        tracing::warn!(%peer, "control message not sent: the peer's control stream is stuck");
                    }
                }.in_current_span());
                true
            }
        }
    }

    pub(crate) fn connection(&self) -> Option<quinn::Connection> {
        lock(&self.connection).clone()
    }

    pub(crate) fn stream_opened(self: &Arc<Self>) -> StreamGuard {
        self.open_streams.fetch_add(1, Ordering::Relaxed);
        self.streams_total.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self.clone())
    }

    pub(crate) fn set_peer_load(&self, report: LoadReport) {
        *lock(&self.peer_load) = Some(report);
    }

    pub fn snapshot(&self) -> LinkSnapshot {
        let live = self.connection().map(|c| (c.stats(), c.rtt()));
        let t = *lock(&self.retired);
        let (mut sent, mut received) = (t.sent_bytes, t.received_bytes);
        let (mut sent_packets, mut lost) = (t.sent_packets, t.lost_packets);
        let (mut srtt, mut cwnd) = (None, None);
        if let Some((s, rtt)) = &live {
            sent += s.udp_tx.bytes;
            received += s.udp_rx.bytes;
            sent_packets += s.path.sent_packets;
            lost += s.path.lost_packets;
            srtt = Some(*rtt);
            cwnd = Some(s.path.cwnd);
        }
        LinkSnapshot {
            peer: self.peer.clone(),
            peer_region: self.peer_region.clone(),
            lane: self.lane,
            state: self.state(),
            transitions: std::array::from_fn(|i| self.transitions[i].load(Ordering::Relaxed)),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            open_streams: self.open_streams.load(Ordering::Relaxed),
            streams_total: self.streams_total.load(Ordering::Relaxed),
            srtt,
            cwnd,
            sent_bytes: sent,
            received_bytes: received,
            sent_packets,
            lost_packets: lost,
            peer_load: lock(&self.peer_load).clone(),
        }
    }
}

/// Counts a stream as open for as long as it lives.
pub(crate) struct StreamGuard(Arc<Link>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How long a control message may wait for room on a stuck control stream.
const CONTROL_SEND_LIMIT: Duration = Duration::from_secs(5);

/// A poisoned lock here only means a panic elsewhere mid-update of plain counters.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why an origin refused a connection before it was up: the `reason` label.
pub mod refusal {
    pub const NO_CLIENT_CERTIFICATE: &str = "no_client_certificate";
    pub const BAD_CERTIFICATE: &str = "bad_certificate";
    pub const WRONG_PROTOCOL: &str = "wrong_protocol";
    pub const NO_HELLO: &str = "no_hello";
    /// A hello with a role other than `edge`, a node id or region that is not a short
    /// lowercase name, or a node id the certificate is not valid for.
    pub const BAD_HELLO: &str = "bad_hello";
    /// A certificate on the origin's deny list (`tunnel.denied_certificates`).
    pub const DENIED_CERTIFICATE: &str = "denied_certificate";
    pub const OTHER: &str = "other";
    pub const ALL: [&str; 7] = [
        NO_CLIENT_CERTIFICATE,
        BAD_CERTIFICATE,
        WRONG_PROTOCOL,
        NO_HELLO,
        BAD_HELLO,
        DENIED_CERTIFICATE,
        OTHER,
    ];
}

/// Why a tunnel that was up broke the protocol: the `reason` label.
pub mod protocol_error {
    /// A control stream frame that does not decode, or a message out of place.
    pub const CONTROL_STREAM: &str = "control_stream";
    /// A publish stream that did not start with its header.
    pub const PUBLISH_HEADER: &str = "publish_header";
    pub const ALL: [&str; 2] = [CONTROL_STREAM, PUBLISH_HEADER];
}

/// Every tunnel of a node, plus the handshakes it refused.
#[derive(Debug, Default)]
pub struct TunnelSet {
    links: Mutex<Vec<Arc<Link>>>,
    refused: [AtomicU64; 7],
    protocol_errors: [AtomicU64; 2],
    denied_cuts: AtomicU64,
}

impl TunnelSet {
    pub fn new() -> Arc<TunnelSet> {
        Arc::new(TunnelSet::default())
    }

    pub(crate) fn add(&self, link: Arc<Link>) {
        lock(&self.links).push(link);
    }

    /// The link to `peer`'s `lane`, made (in `state`) if this set has none yet. An origin
    /// keeps one link per edge lane across that edge's reconnects, so its counters run on.
    pub(crate) fn link_for(
        &self,
        peer: &str,
        peer_region: &str,
        lane: u16,
        state: TunnelState,
    ) -> Arc<Link> {
        let mut links = lock(&self.links);
        if let Some(link) = links.iter().find(|l| l.peer == peer && l.lane == lane) {
            return link.clone();
        }
        let link = Link::new(peer, peer_region, lane, state);
        links.push(link.clone());
        link
    }

    pub fn links(&self) -> Vec<Arc<Link>> {
        lock(&self.links).clone()
    }

    /// Tells every connected peer to cut live publishes of an entry (see
    /// [`Revocation`]). Returns how many peers it was sent to.
    pub fn revoke(&self, revocation: &Revocation) -> usize {
        self.links()
            .iter()
            .filter(|l| l.state() == TunnelState::Connected)
            .filter(|l| l.send_control(Message::Revoke(revocation.clone())))
            .count()
    }

    /// Sends `report` to every connected peer now, not at the next report interval (an
    /// origin that starts draining). Returns how many peers it was sent to.
    pub fn report_now(&self, report: &LoadReport) -> usize {
        self.links()
            .iter()
            .filter(|l| l.state() == TunnelState::Connected)
            .filter(|l| l.send_control(Message::Report(report.clone())))
            .count()
    }

    pub fn snapshots(&self) -> Vec<LinkSnapshot> {
        self.links().iter().map(|l| l.snapshot()).collect()
    }

    pub(crate) fn count_refusal(&self, reason: &'static str) {
        let i = refusal::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(refusal::ALL.len() - 1);
        self.refused[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_protocol_error(&self, reason: &'static str) {
        if let Some(i) = protocol_error::ALL.iter().position(|r| *r == reason) {
            self.protocol_errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn count_denied_cut(&self) {
        self.denied_cuts.fetch_add(1, Ordering::Relaxed);
    }

    /// Tunnels that were up and were cut when their edge's certificate was denied.
    pub fn denied_cuts(&self) -> u64 {
        self.denied_cuts.load(Ordering::Relaxed)
    }

    /// Protocol errors on tunnels that were up, by [`protocol_error`] reason.
    pub fn protocol_errors(&self) -> Vec<(&'static str, u64)> {
        protocol_error::ALL
            .iter()
            .zip(&self.protocol_errors)
            .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// Handshakes refused, by [`refusal`] reason.
    pub fn refusals(&self) -> Vec<(&'static str, u64)> {
        refusal::ALL
            .iter()
            .zip(&self.refused)
            .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
            .collect()
    }
}
