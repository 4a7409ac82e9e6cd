//! RTMP and RTMPS listeners, and the driver of one RTMP connection.
//!
//! The driver is thin: it moves bytes between the socket and a
//! [`longhaul_rtmp::server::ServerSession`], hands publish requests to [`crate::publish`],
//! pushes media into the hub and pulls player media out of it. Everything RTMP-specific
//! (handshake, chunks, commands, timeouts) is decided by the session.
//!
//! One connection publishes at most one stream and plays at most one: every encoder and
//! player we know of opens a connection per stream, and it keeps takeover and timeout
//! handling simple.

use crate::publish::{self, PublishDecision};
use crate::state::OriginState;
use longhaul_hub::{LegChoice, PlayerEvent, Publication, Subscription};
use longhaul_rtmp::server::{ServerConfig, ServerEvent, ServerSession, SessionError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Read buffer per connection. 64 KiB: one read takes several 4 KiB chunks of a
/// high-bitrate stream, and 10,000 connections stay under 700 MB.
const READ_BUFFER: usize = 64 * 1024;

/// How a connection reached us, as the `transport` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Rtmp,
    Rtmps,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Rtmp => "rtmp",
            Transport::Rtmps => "rtmps",
        }
    }
}

/// Accepts connections on `listener` (TLS-wrapped when `tls` is set) until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Arc<OriginState>,
    shutdown: CancellationToken,
) {
    let transport = if tls.is_some() {
        Transport::Rtmps
    } else {
        Transport::Rtmp
    };
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(transport = transport.as_str(), error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = state.connection_slots.clone().try_acquire_owned() else {
            state
                .metrics
                .connections_refused
                .with_label_values(&[transport.as_str(), "too_many_connections"])
                .inc();
            tracing::warn!(client = %peer, transport = transport.as_str(),
                limit = state.config.ingest.max_connections, "connection refused: too many connections");
            continue; // dropping the stream closes it
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let shutdown = shutdown.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                None => run(stream, peer, Transport::Rtmp, state, shutdown).await,
                Some(acceptor) => {
                    let timeout = state.config.ingest.handshake_timeout();
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => {
                            run(tls_stream, peer, Transport::Rtmps, state, shutdown).await
                        }
                        Ok(Err(e)) => {
                            state
                                .metrics
                                .connections_refused
                                .with_label_values(&["rtmps", "tls_handshake"])
                                .inc();
                            tracing::warn!(client = %peer, error = %e, "RTMPS TLS handshake failed");
                        }
                        Err(_) => {
                            state
                                .metrics
                                .connections_refused
                                .with_label_values(&["rtmps", "tls_timeout"])
                                .inc();
                            tracing::warn!(client = %peer, ?timeout, "RTMPS TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
}

/// What one connection is doing, beside its session.
struct Connection {
    /// Process-unique id, in the hub's publisher info and the logs.
    id: u64,
    peer: SocketAddr,
    transport: Transport,
    state: Arc<OriginState>,
    publishing: Option<(u32, Publication)>,
    playing: Option<(u32, Subscription)>,
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
    let active = m
        .connections_active
        .with_label_values(&[transport.as_str()]);
    active.inc();
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
    let was_playing = conn.playing.is_some();
    conn.finish_publishing();
    conn.finish_playing();
    active.dec();
    let kind = match &end {
        End::PeerClosed | End::Shutdown | End::Rejected | End::TakenOver | End::StreamEnded => None,
        End::PlayerTooSlow => Some("player_too_slow"),
        End::WriteStalled => Some("write_stalled"),
        End::Io(_) => Some("io"),
        End::Session(SessionError::Timeout(_)) => Some("timeout"),
        End::Session(SessionError::Handshake(_)) => Some("handshake"),
        End::Session(_) => Some("protocol"),
    };
    if let Some(kind) = kind {
        m.session_errors.with_label_values(&[kind]).inc();
    }
    if matches!(end, End::WriteStalled) && was_playing {
        m.player_drops.with_label_values(&["rtmp"]).inc();
    }
    match end {
        End::WriteStalled => {
            tracing::warn!(client = %peer, transport = transport.as_str(), was_playing,
            "connection closed: the peer stopped reading")
        }
        End::Io(e) => {
            tracing::info!(client = %peer, transport = transport.as_str(), error = %e, "connection ended: socket error")
        }
        End::Session(e) => {
            tracing::warn!(client = %peer, transport = transport.as_str(), error = %e, "connection closed: {e}")
        }
        _ => tracing::debug!(client = %peer, transport = transport.as_str(), "connection closed"),
    }
}

async fn drive<S>(io: S, conn: &mut Connection, shutdown: &CancellationToken) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ingest = &conn.state.config.ingest;
    let config = ServerConfig {
        chunk_size: ingest.chunk_size,
        handshake_timeout: ingest.handshake_timeout(),
        media_timeout: ingest.media_timeout(),
        ..ServerConfig::default()
    };
    let write_timeout = ingest.write_timeout();
    let mut session = ServerSession::new(config, Instant::now());
    let (mut reader, mut writer) = tokio::io::split(io);
    let mut buf = vec![0u8; READ_BUFFER];
    let bytes_in = conn
        .state
        .metrics
        .bytes_received
        .with_label_values(&[conn.transport.as_str()]);
    let bytes_out = conn
        .state
        .metrics
        .bytes_sent
        .with_label_values(&[conn.transport.as_str()]);
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
        tokio::select! {
            read = reader.read(&mut buf) => {
                let n = match read {
                    Ok(0) => return End::PeerClosed,
                    Ok(n) => n,
                    Err(e) => return End::Io(e),
                };
                bytes_in.inc_by(n as u64);
                let mut events = match session.handle_input(Instant::now(), &buf[..n]) {
                    Ok(events) => events,
                    Err(e) => return End::Session(e),
                };
                // Answering a request can release more events (media the session held
                // while a publish awaited its decision), so drain until none are left.
                while !events.is_empty() {
                    for event in events {
                        if let Err(end) = conn.on_event(&mut session, event).await {
                            // Flush the refusal or status the session queued before closing.
                            close(&mut writer, &mut session, write_timeout).await;
                            return end;
                        }
                    }
                    events = session.take_events();
                }
            }
            _ = sleep_until(deadline) => {
                if let Err(e) = session.handle_timeout(Instant::now()) {
                    return End::Session(e);
                }
            }
            _ = taken_over(&conn.publishing) => {
                if let Some((stream_id, _)) = &conn.publishing {
                    session.send_status(*stream_id, "error", "NetStream.Publish.Rejected",
                        "another connection published this stream with the current token and took it over");
                }
                close(&mut writer, &mut session, write_timeout).await;
                return End::TakenOver;
            }
            event = next_player_event(&mut conn.playing) => {
                if let Err(end) = conn.on_player_event(&mut session, event) {
                    close(&mut writer, &mut session, write_timeout).await;
                    return end;
                }
            }
            _ = shutdown.cancelled() => return End::Shutdown,
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

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn taken_over(publishing: &Option<(u32, Publication)>) {
    match publishing {
        Some((_, publication)) => publication.taken_over().await,
        None => std::future::pending().await,
    }
}

async fn next_player_event(playing: &mut Option<(u32, Subscription)>) -> PlayerEvent {
    match playing {
        Some((_, subscription)) => subscription.recv().await,
        None => std::future::pending().await,
    }
}

impl Connection {
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
                        self.publishing = Some((stream_id, publication));
                    }
                    PublishDecision::Reject { code, description } => {
                        session.reject_publish(stream_id, code, &description);
                        return Err(End::Rejected);
                    }
                }
            }
            ServerEvent::Media { message, .. } => {
                if let Some((_, publication)) = &self.publishing {
                    // Err means another connection took the stream over; the takeover
                    // branch of the driver's select closes this one with a status.
                    let _ = publication.push(message);
                }
            }
            ServerEvent::PublishFinished { stream_id } => {
                if matches!(&self.publishing, Some((id, _)) if *id == stream_id) {
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
                let stream_name = name.split('?').next().unwrap_or_default().to_string();
                let plays = &self.state.metrics.plays;
                match self.state.hub.subscribe(&stream_name, LegChoice::default()) {
                    Some(subscription) => {
                        plays.with_label_values(&["rtmp", "accepted"]).inc();
                        self.state
                            .metrics
                            .players_active
                            .with_label_values(&["rtmp"])
                            .inc();
                        tracing::info!(client = %self.peer, stream = %stream_name, "player attached");
                        session.accept_play(stream_id);
                        self.playing = Some((stream_id, subscription));
                    }
                    None => {
                        plays.with_label_values(&["rtmp", "not_found"]).inc();
                        tracing::info!(client = %self.peer, stream = %stream_name, "play refused: stream not live");
                        session.reject_play(
                            stream_id,
                            "NetStream.Play.StreamNotFound",
                            &format!("stream {stream_name} is not live on this node"),
                        );
                        return Err(End::Rejected);
                    }
                }
            }
            ServerEvent::PlayFinished { stream_id } => {
                if matches!(&self.playing, Some((id, _)) if *id == stream_id) {
                    self.finish_playing();
                }
            }
            ServerEvent::UnhandledCommand { name } => {
                tracing::debug!(client = %self.peer, command = %name, "command ignored");
            }
        }
        Ok(())
    }

    fn on_player_event(
        &mut self,
        session: &mut ServerSession,
        event: PlayerEvent,
    ) -> Result<(), End> {
        let Some((stream_id, _)) = &self.playing else {
            return Ok(());
        };
        let stream_id = *stream_id;
        match event {
            PlayerEvent::Message(message) => session.send_media(stream_id, &message),
            PlayerEvent::Skipped { dropped_messages } => {
                self.state
                    .metrics
                    .player_skips
                    .with_label_values(&["rtmp"])
                    .inc();
                tracing::info!(client = %self.peer, dropped_messages, "slow player skipped to the next keyframe");
            }
            PlayerEvent::Dropped { reason } => {
                self.state
                    .metrics
                    .player_drops
                    .with_label_values(&["rtmp"])
                    .inc();
                tracing::warn!(client = %self.peer, %reason, "player dropped: it cannot keep up");
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
        if let Some((_, publication)) = self.publishing.take() {
            publication.finish();
            self.state.metrics.publishers_active.dec();
        }
    }

    fn finish_playing(&mut self) {
        if self.playing.take().is_some() {
            self.state
                .metrics
                .players_active
                .with_label_values(&["rtmp"])
                .dec();
        }
    }
}
