//! The driver of one RTMP connection (the listeners are `longhaul_node::accept`'s).
//!
//! The driver is thin: it moves bytes between the socket and a
//! [`longhaul_rtmp::server::ServerSession`], hands publish requests to [`crate::publish`],
//! pushes media into the hub and pulls player media out of it. Everything RTMP-specific
//! (handshake, chunks, commands, timeouts) is decided by the session.
//!
//! One connection publishes at most one stream and plays at most one: every encoder and
//! player we know of opens a connection per stream, and it keeps takeover and timeout
//! handling simple.

use crate::metrics::protocol;
use crate::publish::{self, PublishDecision};
use crate::state::OriginState;
use longhaul_hub::{LegChoice, PlayerEvent, Publication, Subscription};
use longhaul_node::{ConnectionHandler, GaugeGuard, Transport};
use longhaul_rtmp::server::{ServerEvent, ServerSession, SessionError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Read buffer per connection. 64 KiB: one read takes several 4 KiB chunks of a
/// high-bitrate stream, and 10,000 connections stay under 700 MB.
const READ_BUFFER: usize = 64 * 1024;

impl ConnectionHandler for OriginState {
    async fn serve_connection<S>(
        self: Arc<Self>,
        io: S,
        peer: SocketAddr,
        transport: Transport,
        shutdown: CancellationToken,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        run(io, peer, transport, self, shutdown).await
    }
}

/// What one connection is doing, beside its session.
struct Connection {
    /// Process-unique id, in the hub's publisher info and the logs.
    id: u64,
    peer: SocketAddr,
    transport: Transport,
    state: Arc<OriginState>,
    publishing: Option<Publishing>,
    playing: Option<Playing>,
}

/// The stream this connection publishes.
struct Publishing {
    stream_id: u32,
    stream: String,
    publication: Publication,
    _active: GaugeGuard,
}

/// The stream this connection plays.
struct Playing {
    stream_id: u32,
    stream: String,
    subscription: Subscription,
    _active: GaugeGuard,
}

/// Why a connection ended, for the log and `session_errors_total{kind}`.
enum End {
    PeerClosed,
    Shutdown,
    Rejected,
    TakenOver,
    StreamEnded,
    PlayerTooSlow,
    WriteStalled,
    Io(std::io::Error),
    Session(SessionError),
}

impl End {
    /// The `kind` label of `session_errors_total`, for the ends that are errors.
    fn error_kind(&self) -> Option<&'static str> {
        match self {
            End::PeerClosed | End::Shutdown | End::Rejected | End::TakenOver | End::StreamEnded => {
                None
            }
            End::PlayerTooSlow => Some("player_too_slow"),
            End::WriteStalled => Some("write_stalled"),
            End::Io(_) => Some("io"),
            End::Session(SessionError::Timeout(_)) => Some("timeout"),
            End::Session(SessionError::Handshake(_)) => Some("handshake"),
            End::Session(_) => Some("protocol"),
        }
    }
}

/// Player messages written in one go: draining a burst (a GOP for a new player, a
/// backlog after a stall) into one `writev` instead of one per message. 64 messages
/// of a 6 Mbit/s stream are about 0.3 s of media.
const PLAYER_BATCH_MESSAGES: usize = 64;
/// ...or this many bytes queued, whichever comes first.
const PLAYER_BATCH_BYTES: usize = 256 * 1024;

async fn run<S>(
    io: S,
    peer: SocketAddr,
    transport: Transport,
    state: Arc<OriginState>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let m = &state.metrics;
    m.connections_total
        .with_label_values(&[transport.as_str()])
        .inc();
    let _active = GaugeGuard::new(
        m.connections_active
            .with_label_values(&[transport.as_str()]),
    );
    let id = state
        .next_connection_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut conn = Connection {
        id,
        peer,
        transport,
        state: state.clone(),
        publishing: None,
        playing: None,
    };
    let end = drive(io, &mut conn, &shutdown).await;
    let role = match (&conn.publishing, &conn.playing) {
        (Some(p), _) => Some(("publisher", p.stream.clone())),
        (None, Some(p)) => Some(("player", p.stream.clone())),
        (None, None) => None,
    };
    let was_playing = conn.playing.is_some();
    conn.finish_publishing();
    conn.finish_playing();
    if let Some(kind) = end.error_kind() {
        m.session_errors.with_label_values(&[kind]).inc();
    }
    if matches!(end, End::WriteStalled) && was_playing {
        m.player_drops.with_label_values(&[protocol::RTMP]).inc();
    }
    let (role, stream) = role.unwrap_or(("connection", String::new()));
    let transport = transport.as_str();
    match end {
        End::WriteStalled => tracing::warn!(client = %peer, transport, role, %stream,
            "connection closed: the peer stopped reading"),
        End::Io(e) => tracing::info!(client = %peer, transport, role, %stream, error = %e,
            "connection ended: socket error"),
        End::Session(e) => tracing::warn!(client = %peer, transport, role, %stream, error = %e,
            "connection closed: {e}"),
        _ => tracing::debug!(client = %peer, transport, role, %stream, "connection closed"),
    }
}

async fn drive<S>(io: S, conn: &mut Connection, shutdown: &CancellationToken) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ingest = &conn.state.config.ingest;
    let write_timeout = ingest.write_timeout();
    let mut session = ServerSession::new(ingest.server_config(), Instant::now());
    let (mut reader, mut writer) = tokio::io::split(io);
    let mut buf = vec![0u8; READ_BUFFER];
    let m = &conn.state.metrics;
    let bytes_in = m
        .bytes_received
        .with_label_values(&[conn.transport.as_str()]);
    let bytes_out = m.bytes_sent.with_label_values(&[conn.transport.as_str()]);
    // One timer for the session's deadline, moved rather than re-created on every read.
    let timer = tokio::time::sleep(std::time::Duration::ZERO);
    tokio::pin!(timer);
    loop {
        // Write whatever the session queued before waiting for anything else.
        let queued = session.output().len();
        if queued > 0 {
            match tokio::time::timeout(write_timeout, writer.write_all_buf(session.output())).await
            {
                Ok(Ok(())) => bytes_out.inc_by(queued as u64),
                Ok(Err(e)) => return End::Io(e),
                Err(_) => return End::WriteStalled,
            }
        }
        if session.should_close() {
            let _ = tokio::time::timeout(write_timeout, writer.shutdown()).await;
            return End::Rejected;
        }
        let deadline = session.poll_timeout().map(tokio::time::Instant::from_std);
        if let Some(deadline) = deadline {
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
        }
        let result: Result<(), End> = tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) => Err(End::PeerClosed),
                Ok(n) => {
                    bytes_in.inc_by(n as u64);
                    match session.handle_input(Instant::now(), &buf[..n]) {
                        Ok(events) => conn.on_events(&mut session, events).await,
                        Err(e) => Err(End::Session(e)),
                    }
                }
                Err(e) => Err(End::Io(e)),
            },
            _ = &mut timer, if deadline.is_some() => {
                session.handle_timeout(Instant::now()).map_err(End::Session)
            }
            _ = taken_over(&conn.publishing) => {
                if let Some(p) = &conn.publishing {
                    session.send_status(p.stream_id, "error", "NetStream.Publish.Rejected",
                        "another connection published this stream with the current token and took it over");
                }
                Err(End::TakenOver)
            }
            event = next_player_event(&mut conn.playing) => conn.on_player_events(&mut session, event),
            _ = shutdown.cancelled() => Err(End::Shutdown),
        };
        if let Err(end) = result {
            if let End::Session(e) = &end {
                // Tell the peer why, in RTMP, before closing.
                session.fail(e);
            }
            if !matches!(end, End::PeerClosed | End::Io(_) | End::Shutdown) {
                close(&mut writer, &mut session, write_timeout).await;
            }
            return end;
        }
    }
}

/// Writes what the session queued (its last words: a refusal, a status) and closes,
/// giving up after `limit` on a peer that does not read.
async fn close<W: AsyncWrite + Unpin>(
    writer: &mut W,
    session: &mut ServerSession,
    limit: std::time::Duration,
) {
    let _ = tokio::time::timeout(limit, async {
        let _ = writer.write_all_buf(session.output()).await;
        let _ = writer.shutdown().await;
    })
    .await;
}

async fn taken_over(publishing: &Option<Publishing>) {
    match publishing {
        Some(p) => p.publication.taken_over().await,
        None => std::future::pending().await,
    }
}

async fn next_player_event(playing: &mut Option<Playing>) -> PlayerEvent {
    match playing {
        Some(p) => p.subscription.recv().await,
        None => std::future::pending().await,
    }
}

impl Connection {
    /// Handles a batch of session events. Answering a request can release more events
    /// (media the session held while a publish awaited its decision): drain until none.
    async fn on_events(
        &mut self,
        session: &mut ServerSession,
        mut events: Vec<ServerEvent>,
    ) -> Result<(), End> {
        while !events.is_empty() {
            for event in events {
                self.on_event(session, event).await?;
            }
            events = session.take_events();
        }
        Ok(())
    }

    async fn on_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerEvent,
    ) -> Result<(), End> {
        match event {
            ServerEvent::ConnectRequested { request } => {
                tracing::debug!(client = %self.peer, app = %request.app, tc_url = ?request.tc_url,
                    flash_ver = ?request.flash_ver, "connect");
                session.accept_connect();
            }
            ServerEvent::PublishRequested {
                stream_id,
                name,
                publish_type,
            } => {
                if self.publishing.is_some() {
                    session.reject_publish(stream_id, "NetStream.Publish.BadName",
                        "this connection already publishes a stream; open one connection per stream");
                    return Err(End::Rejected);
                }
                let connect = session.connect_request().cloned();
                let decision = publish::decide(
                    &self.state,
                    connect.as_ref(),
                    &name,
                    self.peer,
                    self.transport,
                    self.id,
                )
                .await;
                match decision {
                    PublishDecision::Accept(publication) => {
                        tracing::debug!(client = %self.peer, %name, %publish_type, "publish accepted");
                        session.accept_publish(stream_id);
                        self.publishing = Some(Publishing {
                            stream_id,
                            stream: publication.key().name.clone(),
                            publication,
                            _active: GaugeGuard::new(self.state.metrics.publishers_active.clone()),
                        });
                    }
                    PublishDecision::Reject { code, description } => {
                        session.reject_publish(stream_id, code, &description);
                        return Err(End::Rejected);
                    }
                }
            }
            ServerEvent::Media { message, .. } => {
                if let Some(p) = &self.publishing {
                    // Err means another connection took the stream over; the takeover
                    // branch of the driver's select closes this one with a status.
                    let _ = p.publication.push(message);
                }
            }
            ServerEvent::PublishFinished { stream_id } => {
                if self
                    .publishing
                    .as_ref()
                    .is_some_and(|p| p.stream_id == stream_id)
                {
                    self.finish_publishing();
                }
            }
            ServerEvent::PlayRequested { stream_id, name } => {
                if self.playing.is_some() {
                    session.reject_play(
                        stream_id,
                        "NetStream.Play.Failed",
                        "this connection already plays a stream; open one connection per stream",
                    );
                    return Err(End::Rejected);
                }
                let stream = name.split('?').next().unwrap_or_default().to_string();
                let plays = &self.state.metrics.plays;
                match self.state.hub.subscribe(&stream, LegChoice::default()) {
                    Some(subscription) => {
                        plays.with_label_values(&[protocol::RTMP, "accepted"]).inc();
                        tracing::info!(client = %self.peer, %stream, "player attached");
                        session.accept_play(stream_id);
                        let gauge = self
                            .state
                            .metrics
                            .players_active
                            .with_label_values(&[protocol::RTMP]);
                        self.playing = Some(Playing {
                            stream_id,
                            stream,
                            subscription,
                            _active: GaugeGuard::new(gauge),
                        });
                    }
                    None => {
                        plays
                            .with_label_values(&[protocol::RTMP, "not_found"])
                            .inc();
                        tracing::info!(client = %self.peer, %stream, "play refused: stream not live");
                        session.reject_play(
                            stream_id,
                            "NetStream.Play.StreamNotFound",
                            &format!("stream {stream} is not live on this node"),
                        );
                        return Err(End::Rejected);
                    }
                }
            }
            ServerEvent::PlayFinished { stream_id } => {
                if self
                    .playing
                    .as_ref()
                    .is_some_and(|p| p.stream_id == stream_id)
                {
                    self.finish_playing();
                }
            }
            ServerEvent::UnhandledCommand { name } => {
                tracing::debug!(client = %self.peer, command = %name, "command ignored");
            }
        }
        Ok(())
    }

    /// Handles one player event and whatever else is ready, up to a batch, so a burst
    /// leaves in one write.
    fn on_player_events(
        &mut self,
        session: &mut ServerSession,
        first: PlayerEvent,
    ) -> Result<(), End> {
        self.on_player_event(session, first)?;
        for _ in 1..PLAYER_BATCH_MESSAGES {
            if session.output().len() >= PLAYER_BATCH_BYTES {
                break;
            }
            let Some(next) = self
                .playing
                .as_mut()
                .and_then(|p| p.subscription.try_recv())
            else {
                break;
            };
            self.on_player_event(session, next)?;
        }
        Ok(())
    }

    fn on_player_event(
        &mut self,
        session: &mut ServerSession,
        event: PlayerEvent,
    ) -> Result<(), End> {
        let Some(playing) = &self.playing else {
            return Ok(());
        };
        let (stream_id, stream) = (playing.stream_id, &playing.stream);
        match event {
            PlayerEvent::Message(message) => session.send_media(stream_id, &message),
            PlayerEvent::Skipped { dropped_messages } => {
                self.state
                    .metrics
                    .player_skips
                    .with_label_values(&[protocol::RTMP])
                    .inc();
                tracing::info!(client = %self.peer, %stream, dropped_messages,
                    "slow player skipped to the next keyframe");
            }
            PlayerEvent::Dropped { reason } => {
                self.state
                    .metrics
                    .player_drops
                    .with_label_values(&[protocol::RTMP])
                    .inc();
                tracing::warn!(client = %self.peer, %stream, %reason, "player dropped: it cannot keep up");
                session.send_status(
                    stream_id,
                    "error",
                    "NetStream.Play.Failed",
                    &format!("dropped: {reason}"),
                );
                return Err(End::PlayerTooSlow);
            }
            PlayerEvent::Ended => {
                // Close, so a player (ffmpeg recording, a restreamer) ends cleanly instead of
                // waiting on a stream that is gone. The seamless primary/backup switch will
                // keep players attached across a publisher change instead.
                session.send_status(
                    stream_id,
                    "status",
                    "NetStream.Play.UnpublishNotify",
                    "the stream was unpublished",
                );
                session.send_status(
                    stream_id,
                    "status",
                    "NetStream.Play.Stop",
                    "the stream ended",
                );
                return Err(End::StreamEnded);
            }
        }
        Ok(())
    }

    fn finish_publishing(&mut self) {
        if let Some(p) = self.publishing.take() {
            p.publication.finish();
        }
    }

    fn finish_playing(&mut self) {
        self.playing = None;
    }
}
