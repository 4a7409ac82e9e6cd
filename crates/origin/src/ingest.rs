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

use crate::elsewhere;
use crate::metrics::{protocol, GaugeGuard};
use crate::publish::{self, PublishDecision};
use crate::state::OriginState;
use longhaul_hub::{LegChoice, PlayerEvent, Publication, Subscription};
use longhaul_node::connection::{self, DriverSettings, NodeEnd};
use longhaul_node::{Accepted, ConnectionHandler, Io, Protocol, Transport};
use longhaul_rtmp::server::{ServerEvent, ServerSession};
use longhaul_rtmp::status;
use std::net::SocketAddr;
use std::sync::Arc;

impl ConnectionHandler for OriginState {
    async fn serve_connection<S: Io>(self: Arc<Self>, accepted: Accepted<S>) {
        match accepted.transport.protocol() {
            Protocol::Rtmp => run(accepted, self).await,
            Protocol::Rtsp => crate::rtsp_ingest::run(accepted, self).await,
        }
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
    /// What the connection is (`publisher`, `player`) and its stream, for its last log
    /// line, kept when the stream is let go before the connection ends.
    role: Option<(&'static str, String)>,
}

/// The stream this connection publishes.
struct Publishing {
    stream_id: u32,
    stream: String,
    publication: Publication,
    /// Its registration as live: resolves when its token is revoked.
    live: longhaul_node::LivePublish,
    _active: GaugeGuard,
}

/// The stream this connection plays.
struct Playing {
    stream_id: u32,
    stream: String,
    subscription: Subscription,
    _active: GaugeGuard,
}

/// Why the origin ends a connection, beside the reasons every node has.
#[derive(Debug)]
enum OriginEnd {
    TakenOver,
    StreamEnded,
    PlayerTooSlow,
    /// The publish's token was revoked (regenerated, entry deleted, kicked).
    Revoked,
}

impl NodeEnd for OriginEnd {
    fn error_kind(&self) -> Option<&'static str> {
        match self {
            OriginEnd::TakenOver | OriginEnd::StreamEnded | OriginEnd::Revoked => None,
            OriginEnd::PlayerTooSlow => Some("player_too_slow"),
        }
    }
}

type End = connection::End<OriginEnd>;

/// What the origin waits on beside a connection's socket.
enum Wake {
    TakenOver,
    Revoked(longhaul_node::Revoked),
    Player(PlayerEvent),
}

/// Player messages written in one go: draining a burst (a GOP for a new player, a
/// backlog after a stall) into one `writev` instead of one per message. 64 messages
/// of a 6 Mbit/s stream are about 0.3 s of media.
const PLAYER_BATCH_MESSAGES: usize = 64;
/// ...or this many bytes queued, whichever comes first.
const PLAYER_BATCH_BYTES: usize = 256 * 1024;

async fn run<S: Io>(accepted: Accepted<S>, state: Arc<OriginState>) {
    let Accepted {
        io,
        peer,
        transport,
        shutdown,
        unauthorised,
        // An origin runs one shard: its runtime spreads the connections.
        shard: _,
    } = accepted;
    let m = &state.metrics;
    let _active = m.connections.opened(transport.as_str());
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
        role: None,
    };
    let settings = DriverSettings::new(
        &state.config.ingest,
        &m.connections,
        transport,
        peer,
        unauthorised,
    );
    let end = connection::drive(io, &mut conn, settings, &shutdown).await;
    let role = conn.role.take();
    let was_playing = conn.playing.is_some();
    conn.finish_publishing();
    conn.finish_playing();
    if let Some(kind) = end.error_kind() {
        m.connections
            .session_errors
            .with_label_values(&[kind])
            .inc();
    }
    if matches!(end, End::WriteStalled) && was_playing {
        m.player_drops.with_label_values(&[protocol::RTMP]).inc();
    }
    let (role, stream) = role.unwrap_or(("connection", String::new()));
    end.log(peer, transport, role, &stream);
}

/// The publish being taken over by another connection, or revoked.
async fn publisher_event(publishing: &mut Option<Publishing>) -> Wake {
    match publishing {
        Some(p) => tokio::select! {
            _ = p.publication.taken_over() => Wake::TakenOver,
            why = p.live.revoked() => Wake::Revoked(why),
        },
        None => std::future::pending().await,
    }
}

async fn next_player_event(playing: &mut Option<Playing>) -> PlayerEvent {
    match playing {
        Some(p) => p.subscription.recv().await,
        None => std::future::pending().await,
    }
}

impl connection::Connection for Connection {
    type End = OriginEnd;
    type Wake = Wake;

    async fn on_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerEvent,
    ) -> Result<(), End> {
        self.on_request(session, event).await
    }

    async fn wake(&mut self) -> Wake {
        let Connection {
            publishing,
            playing,
            ..
        } = self;
        tokio::select! {
            wake = publisher_event(publishing) => wake,
            event = next_player_event(playing) => Wake::Player(event),
        }
    }

    fn on_wake(&mut self, session: &mut ServerSession, wake: Wake) -> Result<(), End> {
        match wake {
            Wake::TakenOver => {
                if let Some(p) = &self.publishing {
                    session.send_status(p.stream_id, "error", status::PUBLISH_REJECTED,
                        "another connection published this stream with the current token and took it over");
                }
                Err(End::Node(OriginEnd::TakenOver))
            }
            Wake::Revoked(why) => {
                if let Some(p) = &self.publishing {
                    tracing::warn!(client = %self.peer, stream = %p.stream, reason = %why.reason,
                        "publish cut: {}", why.description);
                    session.send_status(p.stream_id, "error", &why.code, &why.description);
                }
                // Players see the stream end now, not after the connection's last words.
                self.finish_publishing();
                Err(End::Node(OriginEnd::Revoked))
            }
            Wake::Player(event) => self.on_player_events(session, event),
        }
    }
}

impl Connection {
    async fn on_request(
        &mut self,
        session: &mut ServerSession,
        event: ServerEvent,
    ) -> Result<(), End> {
        match event {
            ServerEvent::ConnectRequested { .. } => session.accept_connect(),
            ServerEvent::PublishRequested {
                stream_id,
                name,
                publish_type,
            } => {
                if self.publishing.is_some() {
                    session.reject_publish(stream_id, status::PUBLISH_BAD_NAME,
                        "this connection already publishes a stream; open one connection per stream");
                    return Err(End::Rejected);
                }
                let connect = session.connect_request().cloned();
                let (app, tc_url) = match &connect {
                    Some(c) => (c.app.as_str(), c.tc_url.as_deref()),
                    None => ("", None),
                };
                // Boxed, as the subscription below: the decision (the registry's
                // lookup) and a play's subscription (a pull from the peer origin) last a
                // round trip; inline, they sized every connection's task for its whole
                // life (`-Zprint-type-sizes`).
                let decision = Box::pin(publish::decide(
                    &self.state,
                    app,
                    tc_url,
                    &name,
                    self.peer,
                    self.transport,
                    self.id,
                ))
                .await;
                match decision {
                    PublishDecision::Accept(publish::Accepted {
                        publication, live, ..
                    }) => {
                        tracing::debug!(client = %self.peer, name = %longhaul_endpoint::redact_tokens(&name),
                            %publish_type, "publish accepted");
                        session.accept_publish(stream_id);
                        // The token check may have waited on the registry: media
                        // silence counts from the accept.
                        session.resume_media_clock(std::time::Instant::now());
                        self.role = Some(("publisher", publication.key().name.clone()));
                        self.publishing = Some(Publishing {
                            stream_id,
                            stream: publication.key().name.clone(),
                            publication,
                            live,
                            _active: GaugeGuard::new(self.state.metrics.publishers_active.clone()),
                        });
                    }
                    PublishDecision::Reject {
                        code, description, ..
                    } => {
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
                        status::PLAY_FAILED,
                        "this connection already plays a stream; open one connection per stream",
                    );
                    return Err(End::Rejected);
                }
                // `{entryId}_{n}` plays the rendition's on-air stream; `.p` or `.b`
                // after it, that leg only.
                let stream = name.split('?').next().unwrap_or_default().to_string();
                let (rendition, choice) = LegChoice::from_play_name(&stream);
                let plays = &self.state.metrics.plays;
                match Box::pin(self.state.subscribe(rendition, choice)).await {
                    Some(subscription) => {
                        plays.with_label_values(&[protocol::RTMP, "accepted"]).inc();
                        tracing::info!(client = %self.peer, %stream, "player attached");
                        session.accept_play(stream_id);
                        let gauge = self
                            .state
                            .metrics
                            .players_active
                            .with_label_values(&[protocol::RTMP]);
                        self.role = Some(("player", stream.clone()));
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
                        let answer = self.state.elsewhere.find(&self.state, rendition).await;
                        let description = elsewhere::not_live_message(
                            &self.state.config.node.id,
                            &stream,
                            &answer,
                        );
                        tracing::info!(client = %self.peer, %stream, %description, "play refused: stream not live");
                        session.reject_play(stream_id, status::PLAY_STREAM_NOT_FOUND, &description);
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
                    status::PLAY_FAILED,
                    &format!("dropped: {reason}"),
                );
                return Err(End::Node(OriginEnd::PlayerTooSlow));
            }
            PlayerEvent::Ended => {
                // Close, so a player (ffmpeg recording, a restreamer) ends cleanly instead of
                // waiting on a stream that is gone. The seamless primary/backup switch will
                // keep players attached across a publisher change instead.
                session.send_status(
                    stream_id,
                    "status",
                    status::PLAY_UNPUBLISH_NOTIFY,
                    "the stream was unpublished",
                );
                session.send_status(stream_id, "status", status::PLAY_STOP, "the stream ended");
                return Err(End::Node(OriginEnd::StreamEnded));
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
