//! The edge's end of a tunnel: one persistent connection to one origin.
//!
//! [`TunnelClient::spawn`] starts a task that dials the origin, exchanges hellos on the
//! control stream, serves requests until the connection is lost, then waits a
//! [`Backoff`] delay and dials again, for as long as the node runs. Publishes ask for a
//! verdict over the control stream ([`TunnelClient::authorise`]) and, once allowed, get a
//! stream of their own ([`TunnelClient::open_publish`]).

use crate::backoff::{random_unit, Backoff};
use crate::codes;
use crate::link::{Link, StreamGuard, TunnelSet, TunnelState};
use crate::settings::{OriginPeer, TransportSettings};
use crate::stream::{
    control_writer, negotiated_version, write_media, write_message, write_sequenced, FrameReader,
    TunnelError, CONTROL_QUEUE,
};
use crate::wire::{
    AuthoriseRequest, Frame, Hello, LoadReport, MediaFrame, Message, PublishHeader, PullHeader,
    Revocation, StreamEnd, Verdict, WireVersion,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Reports this node's health and load when asked.
pub type LoadFn = Arc<dyn Fn() -> LoadReport + Send + Sync>;

/// Takes an origin's [`Revocation`]: the edge cuts the publishes it covers.
pub type RevokeFn = Arc<dyn Fn(Revocation) + Send + Sync>;

/// What the edge node answers and does for its tunnels.
#[derive(Clone)]
pub struct EdgeHooks {
    /// This node's health and load, for the reports.
    pub load: LoadFn,
    /// An origin asked to cut live publishes of an entry.
    pub revoke: RevokeFn,
}

impl EdgeHooks {
    /// Hooks that report `load` and ignore revocations (tests, benchmarks).
    pub fn load_only(load: LoadFn) -> EdgeHooks {
        EdgeHooks {
            load,
            revoke: Arc::new(|_| {}),
        }
    }
}

/// A handle on the tunnel to one origin. Cheap to clone.
#[derive(Clone)]
pub struct TunnelClient {
    inner: Arc<Inner>,
}

struct Inner {
    peer: OriginPeer,
    link: Arc<Link>,
    live: Mutex<Option<Arc<Live>>>,
    shutdown: CancellationToken,
    authorise_timeout: Duration,
    report_every: Duration,
    /// The node's tunnels, for protocol error counts.
    set: Arc<TunnelSet>,
}

/// Verdicts awaited on a connection. Once `closed`, nothing more is added: a request
/// racing the connection's end fails at once instead of waiting out its timeout.
#[derive(Default)]
struct Pending {
    waiting: HashMap<u64, oneshot::Sender<Verdict>>,
    closed: bool,
}

/// The connection of the moment and what rides on it.
struct Live {
    connection: quinn::Connection,
    control: mpsc::Sender<Message>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    peer_hello: Hello,
    /// What the handshake chose.
    version: WireVersion,
}

impl TunnelClient {
    /// Starts keeping a tunnel to `peer` open, on `endpoint` (see
    /// [`crate::endpoint::client_endpoint`]) with the edge's `tls` (shared by its
    /// tunnels, reloaded under them), until [`TunnelClient::close`].
    pub fn spawn(
        endpoint: quinn::Endpoint,
        local: Hello,
        peer: OriginPeer,
        transport: &TransportSettings,
        tls: &crate::tls::EdgeTls,
        hooks: EdgeHooks,
        set: &Arc<TunnelSet>,
    ) -> Result<TunnelClient, TunnelError> {
        if matches!(tls.identity(), crate::tls::ClientIdentity::None) {
            tracing::warn!(peer = %peer.id,
                "no tunnel client certificate configured (tunnel.tls.cert): origins will refuse this edge");
        }
        let mut client_config = quinn::ClientConfig::new(tls.crypto());
        client_config.transport_config(Arc::new(transport.transport_config()));
        let link = Link::new(&peer.id, &peer.region, local.lane, TunnelState::Connecting);
        set.add(link.clone());
        let inner = Arc::new(Inner {
            peer,
            link,
            live: Mutex::new(None),
            shutdown: CancellationToken::new(),
            authorise_timeout: transport.authorise_timeout(),
            report_every: transport.report_interval(),
            set: set.clone(),
        });
        let settings = transport.clone();
        tokio::spawn(
            run(
                inner.clone(),
                endpoint,
                client_config,
                local,
                hooks,
                Backoff::new(
                    Duration::from_millis(settings.reconnect_initial_ms),
                    Duration::from_millis(settings.reconnect_max_ms),
                ),
            )
            .in_current_span(),
        );
        Ok(TunnelClient { inner })
    }

    pub fn peer(&self) -> &OriginPeer {
        &self.inner.peer
    }

    pub fn state(&self) -> TunnelState {
        self.inner.link.state()
    }

    pub fn link(&self) -> &Arc<Link> {
        &self.inner.link
    }

    /// The origin's hello, while connected.
    pub fn peer_hello(&self) -> Option<Hello> {
        self.live().map(|l| l.peer_hello.clone())
    }

    /// The wire version of the connection of the moment, while connected.
    pub fn version(&self) -> Option<WireVersion> {
        self.live().map(|l| l.version)
    }

    fn live(&self) -> Option<Arc<Live>> {
        lock(&self.inner.live).clone()
    }

    fn not_connected(&self) -> TunnelError {
        TunnelError::NotConnected {
            peer: self.inner.peer.id.clone(),
        }
    }

    /// Asks the origin whether a publish may go on. Fails at once when the tunnel is
    /// down, and after the configured `authorise_timeout` (the whole exchange) when the
    /// origin is silent.
    pub async fn authorise(&self, request: AuthoriseRequest) -> Result<Verdict, TunnelError> {
        let after = self.inner.authorise_timeout;
        let timeout = || TunnelError::Timeout {
            peer: self.inner.peer.id.clone(),
            after,
        };
        let live = self.live().ok_or_else(|| self.not_connected())?;
        let id = live.next_id.fetch_add(1, Ordering::Relaxed);
        let message = Message::Authorise { id, request };
        // A connect app, tcUrl and publish name may each be tens of KB (the RTMP command
        // cap is 64 KiB): what does not fit one message is refused here, not sent to
        // break the control stream.
        let len = crate::wire::encode_message(&message).len() - crate::wire::FRAME_HEADER_LEN;
        if len > crate::wire::MAX_MESSAGE_LEN {
            return Err(TunnelError::TooLarge {
                what: "authorisation request",
                len,
                max: crate::wire::MAX_MESSAGE_LEN,
            });
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&live.pending);
            if pending.closed {
                return Err(self.not_connected());
            }
            pending.waiting.insert(id, tx);
        }
        let exchange = async {
            if live.control.send(message).await.is_err() {
                return Err(self.not_connected());
            }
            rx.await.map_err(|_| self.not_connected())
        };
        let result = tokio::time::timeout(after, exchange)
            .await
            .unwrap_or_else(|_| Err(timeout()));
        if result.is_err() {
            lock(&live.pending).waiting.remove(&id);
        }
        result
    }

    /// Opens a bidirectional stream on the connection of the moment and sends `header`
    /// on it, within the `authorise_timeout`: the stream, its peer's id and the
    /// connection's wire version.
    async fn open_stream(
        &self,
        header: Message,
    ) -> Result<(quinn::SendStream, quinn::RecvStream, String, WireVersion), TunnelError> {
        let live = self.live().ok_or_else(|| self.not_connected())?;
        let peer = self.inner.peer.id.clone();
        let after = self.inner.authorise_timeout;
        let open =
            async {
                let (mut send, recv) = live.connection.open_bi().await.map_err(|source| {
                    TunnelError::ConnectionLost {
                        peer: peer.clone(),
                        source,
                    }
                })?;
                write_message(&mut send, &header, &peer).await?;
                Ok::<_, TunnelError>((send, recv))
            };
        // Waiting here means every stream the origin allows is in use, or the path is
        // not moving.
        let (send, recv) =
            tokio::time::timeout(after, open)
                .await
                .map_err(|_| TunnelError::Timeout {
                    peer: peer.clone(),
                    after,
                })??;
        Ok((send, recv, peer, live.version))
    }

    /// Opens the stream of an allowed publish and sends its header, within the
    /// `authorise_timeout`. Media may follow at once: the origin checks the grant as the
    /// header arrives, without a round trip here.
    pub async fn open_publish(&self, header: PublishHeader) -> Result<PublishSender, TunnelError> {
        let (send, recv, peer, version) = self.open_stream(Message::Publish(header)).await?;
        let (end_tx, end_rx) = watch::channel(None);
        let (ack_tx, ack_rx) = watch::channel(None);
        let reader = FrameReader::with_version(recv, &peer, version);
        tokio::spawn(watch_end(reader, end_tx, ack_tx, peer.clone()).in_current_span());
        Ok(PublishSender {
            send,
            end: EndSignal(end_rx),
            acks: ack_rx,
            version,
            peer,
            finished: false,
            _open: self.inner.link.stream_opened(),
        })
    }

    /// Opens a pull stream (origin peering: this node is an origin, the peer another)
    /// asking for one leg, within the `authorise_timeout`. See [`crate::wire::PullHeader`].
    pub async fn open_pull(&self, header: PullHeader) -> Result<PullReceiver, TunnelError> {
        let (send, recv, peer, _) = self.open_stream(Message::Pull(header)).await?;
        Ok(PullReceiver {
            send,
            reader: FrameReader::new(recv, &peer),
            _open: self.inner.link.stream_opened(),
        })
    }

    /// Closes the tunnel for good: the origin hears a normal close at once.
    pub fn close(&self) {
        self.inner.shutdown.cancel();
    }
}

/// The sending side of one publish stream.
pub struct PublishSender {
    send: quinn::SendStream,
    end: EndSignal,
    /// The origin's last acknowledgement (version 2).
    acks: watch::Receiver<Option<u64>>,
    version: WireVersion,
    peer: String,
    /// Set by [`PublishSender::finish`]; a sender dropped without it resets the stream.
    finished: bool,
    _open: StreamGuard,
}

impl Drop for PublishSender {
    fn drop(&mut self) {
        if !self.finished {
            // Dropping a quinn stream finishes it cleanly; a relay given up on (stalled,
            // aborted) must instead tell the origin the stream was cut.
            let _ = self.send.reset(codes::CANCELLED.into());
        }
    }
}

impl PublishSender {
    /// Sends RTMP messages, in order, in as few QUIC writes as
    /// [`crate::wire::encode_media_batch`] makes of them. Waits while QUIC flow or
    /// congestion control holds the stream back: that wait is the edge's signal to stop
    /// reading its encoder.
    pub async fn send(&mut self, frames: &[MediaFrame]) -> Result<(), TunnelError> {
        write_media(&mut self.send, frames, &self.peer).await
    }

    /// Sends version 2's sequenced frames (numbered by [`crate::retain::Retain`]), in
    /// order. Unsequenced frames ([`PublishSender::send`]) on a version 2 stream are the
    /// configuration a resumed stream starts with.
    pub async fn send_sequenced(
        &mut self,
        frames: &[(u64, MediaFrame)],
    ) -> Result<(), TunnelError> {
        write_sequenced(&mut self.send, frames, &self.peer).await
    }

    /// The wire version of the connection the stream is on.
    pub fn version(&self) -> WireVersion {
        self.version
    }

    /// The origin's acknowledgements (version 2): the last seq it says it has, `None`
    /// before the first. Usable while sending.
    pub fn acks(&self) -> watch::Receiver<Option<u64>> {
        self.acks.clone()
    }

    /// A handle that resolves when the origin ends the stream; usable while sending.
    pub fn end_signal(&self) -> EndSignal {
        self.end.clone()
    }

    /// Resolves when the origin ends the stream or the tunnel is lost (cancel-safe).
    pub async fn closed(&mut self) -> PublishEnd {
        self.end.wait().await
    }

    /// Ends the stream cleanly: the origin sees the publisher stop.
    pub async fn finish(mut self) {
        self.finished = true;
        let _ = self.send.finish();
        // Wait (briefly) for the peer to take the data, so closing the connection right
        // after does not cut the tail of the stream.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.send.stopped()).await;
    }
}

/// The asking side of a pull stream. Dropping it leaves the stream: the peer stops
/// sending.
pub struct PullReceiver {
    send: quinn::SendStream,
    reader: FrameReader,
    _open: StreamGuard,
}

/// What a peer sends on a pull stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Pulled {
    /// A publication of the leg started at the peer; its messages follow.
    Live,
    /// One RTMP message of it.
    Media(MediaFrame),
    /// It ended.
    Gone,
    /// The peer refused or ended the stream, and why.
    Refused(StreamEnd),
}

impl PullReceiver {
    /// The next thing the peer sends; `None` when it finished the stream. Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<Pulled>, TunnelError> {
        loop {
            return match self.reader.next().await? {
                None => Ok(None),
                Some(Frame::Media(m)) => Ok(Some(Pulled::Media(m))),
                Some(Frame::Message(Message::LegLive)) => Ok(Some(Pulled::Live)),
                Some(Frame::Message(Message::LegGone)) => Ok(Some(Pulled::Gone)),
                Some(Frame::Message(Message::End(e))) => Ok(Some(Pulled::Refused(e))),
                Some(Frame::Message(Message::Unknown)) => continue,
                Some(other) => Err(TunnelError::Protocol {
                    peer: self.reader.peer().to_string(),
                    what: format!("unexpected frame on a pull stream: {other:?}"),
                }),
            };
        }
    }
}

impl Drop for PullReceiver {
    fn drop(&mut self) {
        let _ = self.send.finish();
    }
}

/// How a publish stream ended from the far side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishEnd {
    /// The origin ended it, with words for the encoder (taken over, unknown grant, ...).
    ByOrigin(StreamEnd),
    /// The tunnel failed under it (connection lost, stream reset); why, for the logs.
    TunnelLost(String),
}

/// Resolves with how a publish stream ended.
#[derive(Clone)]
pub struct EndSignal(watch::Receiver<Option<PublishEnd>>);

impl EndSignal {
    /// Resolves with how the stream ended; pending forever if it ends normally (the
    /// origin finishing after the edge did). Cancel-safe, and `Send` so spawned tasks can
    /// select on it.
    pub async fn wait(&mut self) -> PublishEnd {
        // Clone out of the watch guard before any other await: the guard is not `Send`.
        let end = self.0.wait_for(|e| e.is_some()).await.map(|e| e.clone());
        match end {
            Ok(Some(end)) => end,
            _ => std::future::pending().await,
        }
    }
}

/// Reads what the origin says on a publish stream: acknowledgements (version 2), and at
/// most an `end` message.
async fn watch_end(
    mut reader: FrameReader,
    end: watch::Sender<Option<PublishEnd>>,
    acks: watch::Sender<Option<u64>>,
    peer: String,
) {
    let outcome = loop {
        match reader.next().await {
            Ok(Some(Frame::Ack(seq))) => {
                acks.send_replace(Some(seq));
            }
            Ok(Some(Frame::Message(Message::End(e)))) => break Some(PublishEnd::ByOrigin(e)),
            Ok(Some(Frame::Message(Message::Unknown))) => continue,
            Ok(Some(other)) => {
                tracing::warn!(%peer, frame = ?other, "unexpected frame from the origin on a publish stream; ignored");
                continue;
            }
            // The origin finished its side after ours: a normal end, nobody is waiting.
            Ok(None) => break None,
            Err(e) => break Some(PublishEnd::TunnelLost(e.to_string())),
        }
    };
    if let Some(e) = outcome {
        let _ = end.send(Some(e));
    } else {
        // Keep the signal pending rather than firing a made-up reason.
        end.closed().await;
    }
}

/// The reconnect loop.
async fn run(
    inner: Arc<Inner>,
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    local: Hello,
    hooks: EdgeHooks,
    mut backoff: Backoff,
) {
    let (set, report_every) = (inner.set.clone(), inner.report_every);
    let link = inner.link.clone();
    let peer = inner.peer.clone();
    let mut first = true;
    loop {
        if !first {
            link.count_reconnect();
            link.set_state(TunnelState::Connecting, "reconnecting");
        }
        first = false;
        let attempt = tokio::select! {
            r = connect(&endpoint, &client_config, &peer, &local) => r,
            _ = inner.shutdown.cancelled() => break,
        };
        let why = match attempt {
            Ok((connection, control_send, reader, peer_hello)) => {
                let connected_at = tokio::time::Instant::now();
                link.attach(connection.clone());
                let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
                let version = negotiated_version(&connection);
                let live = Arc::new(Live {
                    version,
                    control: tx.clone(),
                    pending: Mutex::new(Pending::default()),
                    next_id: AtomicU64::new(1),
                    peer_hello: peer_hello.clone(),
                    connection: connection.clone(),
                });
                *lock(&inner.live) = Some(live.clone());
                link.set_state(
                    TunnelState::Connected,
                    &format!(
                        "origin {} version {}, wire {version:?}",
                        peer_hello.node_id, peer_hello.version
                    ),
                );
                let writer = tokio::spawn(
                    control_writer(control_send, rx, peer.id.clone()).in_current_span(),
                );
                let (why, broken) = tokio::select! {
                    r = serve_control(reader, &live, &link, &hooks.revoke) => r,
                    _ = send_reports(&tx, &hooks.load, report_every) => ("report sender stopped".to_string(), false),
                    _ = inner.shutdown.cancelled() => ("edge shutting down".to_string(), false),
                };
                *lock(&inner.live) = None;
                // Read before our own close below, which would replace it.
                let peer_left = matches!(connection.close_reason(),
                    Some(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == codes::NORMAL.into());
                // A broken control stream ends the connection, publish streams and all:
                // they reopen on the next connection. (A no-op if it is already closed.)
                if broken {
                    set.count_protocol_error(crate::link::protocol_error::CONTROL_STREAM);
                    tracing::warn!(peer = %peer.id, error = %why, "tunnel closed: the origin broke the protocol");
                    connection.close(codes::PROTOCOL_ERROR.into(), close_reason(&why));
                } else {
                    connection.close(codes::NORMAL.into(), close_reason(&why));
                }
                // Waiting verdicts fail now (their senders drop), not at their timeout.
                {
                    let mut pending = lock(&live.pending);
                    pending.closed = true;
                    pending.waiting.clear();
                }
                // Only a connection that stayed up a while proves the origin is back; one
                // that an origin drops right after the hello keeps the backoff growing.
                if connected_at.elapsed() >= STABLE_CONNECTION {
                    backoff.reset();
                }
                writer.abort();
                link.detach();
                (why, peer_left)
            }
            Err(e) => (e.to_string(), false),
        };
        let (why, peer_left) = why;
        if inner.shutdown.is_cancelled() {
            break;
        }
        let delay = backoff.next_delay(random_unit());
        if peer_left {
            link.set_state_after_peer_left(TunnelState::Backoff, &why);
        } else {
            link.set_state(TunnelState::Backoff, &why);
        }
        tracing::info!(peer = %peer.id, ?delay, failures = backoff.failures(), "tunnel reconnect scheduled");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = inner.shutdown.cancelled() => break,
        }
    }
    // The loop ends only when this edge shuts down.
    link.close("edge shutting down", true);
}

/// Dials, completes TLS, opens the control stream and exchanges hellos.
async fn connect(
    endpoint: &quinn::Endpoint,
    config: &quinn::ClientConfig,
    peer: &OriginPeer,
    local: &Hello,
) -> Result<(quinn::Connection, quinn::SendStream, FrameReader, Hello), TunnelError> {
    let connect_error = |reason: String| TunnelError::Connect {
        peer: format!("{} ({})", peer.id, peer.addr),
        reason,
    };
    // An IPv4 socket cannot reach an IPv6 address and vice versa: pick one of our family.
    let ipv6 = endpoint.local_addr().is_ok_and(|a| a.is_ipv6());
    let addr = tokio::net::lookup_host(&peer.addr)
        .await
        .map_err(|e| connect_error(format!("resolving {}: {e}", peer.addr)))?
        .find(|a| a.is_ipv6() == ipv6)
        .ok_or_else(|| {
            let family = if ipv6 { "IPv6" } else { "IPv4" };
            connect_error(format!("{} has no {family} address", peer.addr))
        })?;
    let connecting = endpoint
        .connect_with(config.clone(), addr, &peer.server_name)
        .map_err(|e| connect_error(e.to_string()))?;
    let connection = connecting.await.map_err(|e| connect_error(e.to_string()))?;
    // An origin that denies this edge's certificate closes right after the handshake.
    let refused = |e: String| match connection.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(c))
            if c.error_code == quinn::VarInt::from_u32(codes::DENIED) =>
        {
            let reason = String::from_utf8_lossy(&c.reason).into_owned();
            tracing::warn!(peer = %peer.id, %reason,
                "the origin denies this edge's certificate (its tunnel.denied_certificates); retrying with backoff in case it is lifted");
            connect_error(format!(
                "the origin denies this edge's certificate: {reason}"
            ))
        }
        _ => connect_error(e),
    };
    let (mut send, recv) = connection
        .open_bi()
        .await
        .map_err(|e| refused(e.to_string()))?;
    // Verdicts and reports go out before queued media: a new publish's authorisation
    // must not wait behind megabytes of other streams' video.
    let _ = send.set_priority(crate::CONTROL_PRIORITY);
    write_message(&mut send, &Message::Hello(local.clone()), &peer.id)
        .await
        .map_err(|e| refused(e.to_string()))?;
    let mut reader = FrameReader::new(recv, &peer.id);
    // The origin answers at once; a TLS refusal of our certificate also surfaces here,
    // as TLS 1.3 servers check client certificates after the client thinks it is done.
    let hello = tokio::time::timeout(HELLO_TIMEOUT, reader.next_message())
        .await
        .map_err(|_| connect_error(format!("no hello within {HELLO_TIMEOUT:?}")))?
        .map_err(|e| refused(e.to_string()))?;
    match hello {
        Some(Message::Hello(h)) => Ok((connection, send, reader, h)),
        other => Err(connect_error(format!("expected a hello, got {other:?}"))),
    }
}

/// A connection up this long resets the reconnect backoff. Ten seconds is ten
/// keep-alives answered: the origin is serving, not crashing right after each hello.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// A close reason for the peer's logs: the error's text, cut to fit in one packet.
pub(crate) fn close_reason(why: &str) -> &[u8] {
    let mut end = why.len().min(200);
    while !why.is_char_boundary(end) {
        end -= 1;
    }
    &why.as_bytes()[..end]
}

/// How long a peer has to say hello. A hello is one round trip after the handshake:
/// 5 s covers the longest path with room for a few losses.
pub(crate) const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the origin's side of the control stream until it ends; returns why, and
/// whether the origin broke the protocol.
async fn serve_control(
    mut reader: FrameReader,
    live: &Live,
    link: &Link,
    revoke: &RevokeFn,
) -> (String, bool) {
    loop {
        match reader.next_message().await {
            Ok(Some(Message::Verdict { id, verdict })) => {
                if let Some(tx) = lock(&live.pending).waiting.remove(&id) {
                    let _ = tx.send(verdict);
                }
            }
            Ok(Some(Message::Report(report))) => link.set_peer_load(report),
            Ok(Some(Message::Revoke(revocation))) => revoke(revocation),
            Ok(Some(Message::Unknown)) => {}
            Ok(Some(other)) => {
                let what = format!("unexpected control message from the origin: {other:?}");
                return (what, true);
            }
            Ok(None) => return ("the origin closed the control stream".to_string(), false),
            Err(e @ (TunnelError::Wire { .. } | TunnelError::Protocol { .. })) => {
                return (e.to_string(), true)
            }
            Err(e) => {
                let why = match live.connection.close_reason() {
                    Some(reason) => format!("connection closed: {reason}"),
                    None => e.to_string(),
                };
                return (why, false);
            }
        }
    }
}

/// Sends this node's load every `every` until the control stream goes.
pub(crate) async fn send_reports(control: &mpsc::Sender<Message>, load: &LoadFn, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if control.send(Message::Report(load())).await.is_err() {
            return;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
