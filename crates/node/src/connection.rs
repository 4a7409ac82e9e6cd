//! The loop every node runs for one RTMP connection, around its
//! `longhaul_rtmp::ServerSession`.
//!
//! The session decides everything RTMP (handshake, chunks, commands, its timeouts); the
//! loop only moves bytes and time: it writes what the session queued (giving up on a
//! peer that stops reading after `ingest.write_timeout_secs`), reads the socket, keeps one
//! timer, and waits on whatever the node has to say about the connection (an origin's
//! takeover or player media, an edge's relay). When the connection ends with an error,
//! the session's `fail` tells the peer why, in RTMP, before the socket closes.
//!
//! What differs between nodes is a [`Connection`]: how requests are answered, what the
//! node waits on, and, for an edge, when not to read. Every node accepts `connect` as it
//! comes (it is logged); publishes and plays are where nodes decide.
//!
//! Until a publish or play is accepted, the loop charges what the session holds to the
//! node's budget for unauthorised connections after every read ([`crate::unauthorised`]);
//! a connection the budget has no room for is told why and closed
//! ([`End::UnauthorisedMemory`]).

use crate::accept::{reason, Transport, UnauthorisedCharge};
use crate::config::IngestSection;
use crate::metrics::ConnectionSeries;
use crate::session_io::{DeadlineTimer, SessionWriter, WriteError};
use longhaul_rtmp::server::{ServerConfig, ServerEvent, ServerSession, SessionError};
use prometheus::IntCounter;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_util::sync::CancellationToken;

/// Why a connection ended, for the log and `session_errors_total{kind}`. `N` holds the
/// node's own reasons.
#[derive(Debug)]
pub enum End<N> {
    /// The peer closed its side.
    PeerClosed,
    /// The node is shutting down.
    Shutdown,
    /// A request was refused; the peer was told.
    Rejected,
    /// The peer stopped reading: no write progress within the time limit.
    WriteStalled,
    Io(std::io::Error),
    /// The session failed (protocol error, timeout); the peer is told why.
    Session(SessionError),
    /// The node ended the connection, having queued the peer's last words.
    Node(N),
    /// Not yet authorised, its buffers grew past what the node's budget for such
    /// connections had left (`ingest.unauthorised_memory_bytes`); the peer was told.
    UnauthorisedMemory,
}

/// A node's own reasons to end a connection.
pub trait NodeEnd {
    /// The `kind` label of `session_errors_total`, if this end is an error.
    fn error_kind(&self) -> Option<&'static str>;
}

impl<N: NodeEnd> End<N> {
    /// The `kind` label of `session_errors_total`, for the ends that are errors.
    pub fn error_kind(&self) -> Option<&'static str> {
        match self {
            End::PeerClosed | End::Shutdown | End::Rejected => None,
            End::WriteStalled => Some("write_stalled"),
            End::Io(_) => Some("io"),
            End::Session(SessionError::Timeout(_)) => Some("timeout"),
            End::Session(SessionError::Handshake(_)) => Some("handshake"),
            End::Session(SessionError::TooManyMessages(_)) => Some("message_rate"),
            End::Session(_) => Some("protocol"),
            End::Node(n) => n.error_kind(),
            // Counted in connections_refused_total{reason="unauthorised_memory"}.
            End::UnauthorisedMemory => None,
        }
    }
}

impl<N> End<N> {
    /// Logs how the connection ended, with the client, the transport, what the connection
    /// was (`publisher`, `player`, `connection`) and its stream.
    pub fn log(&self, peer: SocketAddr, transport: Transport, role: &str, stream: &str) {
        let transport = transport.as_str();
        match self {
            End::WriteStalled => tracing::warn!(client = %peer, transport, role, %stream,
                "connection closed: the peer stopped reading"),
            End::Io(e) => tracing::info!(client = %peer, transport, role, %stream, error = %e,
                "connection ended: socket error"),
            End::Session(e) => tracing::warn!(client = %peer, transport, role, %stream,
                error = %e, "connection closed: {e}"),
            _ => tracing::debug!(client = %peer, transport, role, %stream, "connection closed"),
        }
    }
}

impl<N> From<WriteError> for End<N> {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Io(e) => End::Io(e),
            WriteError::Stalled => End::WriteStalled,
        }
    }
}

/// What a node does with one RTMP connection.
pub trait Connection: Send {
    /// The node's own reasons to end a connection.
    type End: NodeEnd + Send;
    /// Something the node waits on beside the socket.
    type Wake: Send;

    /// Answers a request or takes media. `connect` never comes here (it is accepted).
    fn on_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerEvent,
    ) -> impl Future<Output = Result<(), End<Self::End>>> + Send;

    /// Resolves when the node has something for this connection; pending when nothing can
    /// come. Cancel-safe: the loop drops it whenever anything else happens first.
    fn wake(&mut self) -> impl Future<Output = Self::Wake> + Send;

    /// Handles what [`Connection::wake`] gave.
    fn on_wake(
        &mut self,
        session: &mut ServerSession,
        wake: Self::Wake,
    ) -> Result<(), End<Self::End>>;

    /// Whether to read the socket now (an edge pauses while its relay queue is full; on
    /// resuming it restarts the session's media clock).
    fn may_read(&mut self, _session: &mut ServerSession, _now: Instant) -> bool {
        true
    }

    /// `bytes` were read and handed to the session.
    fn on_input(&mut self, _bytes: usize) {}

    /// When to call [`Connection::on_timer`] though nothing happened.
    fn deadline(&self, session: &ServerSession, _reading: bool) -> Option<Instant> {
        session.poll_timeout()
    }

    /// The deadline came.
    fn on_timer(
        &mut self,
        session: &mut ServerSession,
        now: Instant,
    ) -> Result<(), End<Self::End>> {
        session.handle_timeout(now).map_err(End::Session)
    }
}

/// What the loop needs beside the connection.
pub struct DriverSettings {
    pub session: ServerConfig,
    /// How long a write may make no progress (`ingest.write_timeout_secs`).
    pub write_timeout: Duration,
    /// `bytes_received_total{transport}` and `bytes_sent_total{transport}` of this connection.
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    /// For the `connect` log line.
    pub peer: SocketAddr,
    /// The connection's charge against the budget for unauthorised connections.
    pub unauthorised: UnauthorisedCharge,
}

impl DriverSettings {
    /// The settings of a connection from `peer` on `transport`, under `ingest`'s limits,
    /// charged to the unauthorised-memory budget by `unauthorised` until authorised.
    pub fn new(
        ingest: &IngestSection,
        series: &ConnectionSeries,
        transport: Transport,
        peer: SocketAddr,
        unauthorised: UnauthorisedCharge,
    ) -> Self {
        let label = [transport.as_str()];
        Self {
            session: ingest.server_config(),
            write_timeout: ingest.write_timeout(),
            bytes_in: series.bytes_received.with_label_values(&label),
            bytes_out: series.bytes_sent.with_label_values(&label),
            peer,
            unauthorised,
        }
    }
}

/// Runs the connection on `io` until it ends.
pub async fn drive<S, C>(
    io: S,
    conn: &mut C,
    settings: DriverSettings,
    shutdown: &CancellationToken,
) -> End<C::End>
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: Connection,
{
    let mut session = ServerSession::new(settings.session, Instant::now());
    let (mut reader, writer) = tokio::io::split(io);
    let mut out = SessionWriter::new(writer, settings.write_timeout, settings.bytes_out);
    let mut timer = DeadlineTimer::new();
    let peer = settings.peer;
    // Dropped (the charge given back) once the session is authorised.
    let mut unauthorised = Some(settings.unauthorised);
    loop {
        // Write whatever the session queued before waiting for anything else.
        if let Err(e) = out.flush(&mut session).await {
            return e.into();
        }
        if session.should_close() {
            out.shutdown().await;
            return End::Rejected;
        }
        let reading = conn.may_read(&mut session, Instant::now());
        timer.set(conn.deadline(&session, reading));
        // The last input stopped at the session's per-call cap: decode on (while the
        // node may take more) before reading the socket again.
        let undecoded = session.has_undecoded_input();
        let result: Result<(), End<C::End>> = tokio::select! {
            // Straight into the session's buffer: its messages are slices of what the
            // kernel wrote, with no copy between.
            read = reader.read_buf(session.read_buffer()), if reading && !undecoded => match read {
                Ok(0) => Err(End::PeerClosed),
                Ok(n) => {
                    settings.bytes_in.inc_by(n as u64);
                    conn.on_input(n);
                    feed(conn, &mut session, n, peer, &mut unauthorised).await
                }
                Err(e) => Err(End::Io(e)),
            },
            _ = std::future::ready(()), if reading && undecoded => {
                feed(conn, &mut session, 0, peer, &mut unauthorised).await
            }
            _ = timer.wait() => conn.on_timer(&mut session, Instant::now()),
            wake = conn.wake() => conn.on_wake(&mut session, wake),
            _ = shutdown.cancelled() => Err(End::Shutdown),
        };
        if let Err(end) = result {
            if let End::Session(e) = &end {
                // Tell the peer why, in RTMP, before closing.
                session.fail(e);
            }
            if let End::UnauthorisedMemory = &end {
                session.fail(&SessionError::Protocol(BUSY.into()));
            }
            if !matches!(end, End::PeerClosed | End::Io(_) | End::Shutdown) {
                out.close(&mut session).await;
            }
            if matches!(end, End::Node(_)) {
                linger(&mut reader).await;
            }
            return end;
        }
    }
}

/// Hands the session the `received` bytes just read into its buffer (0: decode on what
/// it still holds) and acts on what it reports, then charges what it holds to the
/// unauthorised budget.
async fn feed<C: Connection>(
    conn: &mut C,
    session: &mut ServerSession,
    received: usize,
    peer: SocketAddr,
    unauthorised: &mut Option<UnauthorisedCharge>,
) -> Result<(), End<C::End>> {
    match session.handle_read(Instant::now(), received) {
        Ok(events) => {
            on_events(conn, session, events, peer).await?;
            charge(unauthorised, session, peer)
        }
        Err(e) => Err(End::Session(e)),
    }
}

/// What a connection closed for want of room in the unauthorised-memory budget is told
/// (once its handshake is done; before that the socket is only closed): ffmpeg prints it.
pub const BUSY: &str = "server busy: too much memory held by connections not yet \
                        authorised; try again";

/// After a read: gives the charge back if the session is authorised now, else charges
/// what it holds; a growth the budget has no room for ends the connection (counted,
/// logged with the client).
fn charge<N>(
    unauthorised: &mut Option<UnauthorisedCharge>,
    session: &ServerSession,
    peer: SocketAddr,
) -> Result<(), End<N>> {
    let Some(pre) = unauthorised else {
        return Ok(());
    };
    if session.is_authorised() {
        *unauthorised = None;
        return Ok(());
    }
    let held = session.buffered_bytes();
    if let Err(e) = pre.charge.set(held) {
        pre.refused.inc();
        tracing::warn!(client = %peer, held_bytes = held, used_bytes = e.used,
            limit_bytes = e.limit, reason = reason::UNAUTHORISED_MEMORY,
            "connection closed before it was authorised: {e}");
        return Err(End::UnauthorisedMemory);
    }
    Ok(())
}

/// How long a connection the node ended mid-stream keeps reading (and discarding) after
/// its last words, before the socket closes. An encoder checks for a server message
/// only between its own writes (ffmpeg after each frame, 40 ms at 25 fps): closing at
/// once makes its next write meet a reset, which throws away the status it had not
/// read yet, and it reports "Broken pipe" instead of why. Reading on until it hangs up,
/// for at most a second (a frame and a round trip on any path), lets it read the reason.
pub const LINGER: Duration = Duration::from_secs(1);

/// Reads and discards until the peer closes, an error, or [`LINGER`].
async fn linger<R: AsyncRead + Unpin>(reader: &mut R) {
    // On the heap, and only while lingering: an array here sat in every connection's
    // task for its whole life, 4 KiB of it (`-Zprint-type-sizes`).
    let mut buf = vec![0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Handles a batch of session events. Answering a request can release more (the media
/// the session held while a publish awaited its decision): drain until none are left.
async fn on_events<C: Connection>(
    conn: &mut C,
    session: &mut ServerSession,
    mut events: Vec<ServerEvent>,
    peer: SocketAddr,
) -> Result<(), End<C::End>> {
    while !events.is_empty() {
        for event in events {
            match event {
                ServerEvent::ConnectRequested { request } => {
                    let redact = longhaul_endpoint::redact_tokens;
                    tracing::debug!(client = %peer, app = %redact(&request.app),
                        tc_url = ?request.tc_url.as_deref().map(redact),
                        flash_ver = ?request.flash_ver, "connect");
                    session.accept_connect();
                }
                event => conn.on_event(session, event).await?,
            }
        }
        events = session.take_events();
    }
    Ok(())
}
