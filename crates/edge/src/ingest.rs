//! The driver of one encoder connection at an edge.
//!
//! Thin, like the origin's: it moves bytes between the socket and a
//! [`longhaul_rtmp::ServerSession`], which decides everything RTMP (handshake, chunks,
//! commands, timeouts). What differs is the publish decision and where media goes:
//!
//! 1. `publish`: an address banned for failing too often is refused at once, one that
//!    failed often waits first (`longhaul_node::abuse_gate`). The URL rules
//!    (`longhaul_endpoint::resolve_publish`) give the leg; the origin the router picks
//!    for it is asked over its tunnel ([`crate::upstream`]). Its refusal reaches the encoder in its own words
//!    (ffmpeg prints them), and counts against the address if it was for credentials; an
//!    origin out of reach is refused as such. Allowed, the publish stream is opened and
//!    the publish accepted.
//! 2. Media goes into the stream's [`Relay`]. The driver reads the socket only while the
//!    relay queue is under its bound: a slow tunnel closes the encoder's TCP window.
//! 3. The origin may end the stream (a takeover, a revocation): the encoder is told with
//!    the origin's status and the connection closed. A stream lost with its tunnel, or
//!    moved by the router, resumes at another origin without the encoder noticing on a
//!    tunnel that speaks wire format v2 ([`crate::relay`]); on v1 it ends and counts
//!    against the origin in the router. The encoder unpublishing or going away finishes
//!    the tunnel stream after what was queued.
//! 4. Any origin may revoke the entry's token (regenerated, deleted, kicked): the relayed
//!    stream is registered as live under its entry with the generation its origin
//!    allowed, and a revocation that covers it cuts it at once, whichever origin it goes
//!    to; the encoder hears why, the queued media is dropped, the connection closed.
//!
//! An edge serves no players: `play` is refused with a status saying where to play from.
//! Every refusal is logged with the client address and stream, and counted.

use crate::metrics::{end, outcome};
use crate::relay::{Relay, RelayEnd, Resume};
use crate::relay_queue::RelayStats;
use crate::state::{EdgeState, RelayedStream};
use crate::upstream::Decision;
use longhaul_endpoint::RtspPublishParts;
use longhaul_node::connection::{self, DriverSettings, NodeEnd};
use longhaul_node::rtsp_connection::{self, Refusal, RtspConnection, RtspSettings};
use longhaul_node::{Accepted, ConnectionHandler, GaugeGuard, Io, Protocol, Transport};
use longhaul_rtmp::server::{ServerEvent, ServerSession};
use longhaul_tunnel::{AuthoriseRequest, TunnelError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

// The status codes the origin sends too (`longhaul_rtmp::status`).
use longhaul_rtmp::status::{
    PLAY_FAILED as CODE_PLAY_FAILED, PUBLISH_BAD_NAME as CODE_BAD_NAME,
    PUBLISH_REJECTED as CODE_REJECTED,
};

impl ConnectionHandler for EdgeState {
    async fn serve_connection<S: Io>(self: Arc<Self>, accepted: Accepted<S>) {
        match accepted.transport.protocol() {
            Protocol::Rtmp => run(accepted, self).await,
            Protocol::Rtsp => run_rtsp(accepted, self).await,
        }
    }
}

/// What one connection is doing, beside its session.
struct Connection {
    id: u64,
    peer: SocketAddr,
    transport: Transport,
    state: Arc<EdgeState>,
    /// The shard that runs the connection, whose tunnels (lane) its publish goes on.
    shard: usize,
    relaying: Option<Relaying>,
    /// The stream it published, for its last log line (kept after the relay ends).
    published: Option<String>,
    /// The last answer of `may_read`.
    reading: bool,
    /// A draining edge asked (or had no way to ask) this encoder to reconnect.
    told_to_reconnect: bool,
}

/// The stream this connection publishes, and where it goes.
struct Relaying {
    stream_id: u32,
    stream: String,
    relay: Relay,
    /// Its registration as live: resolves when an origin revokes its token.
    live: longhaul_node::LivePublish,
    _active: GaugeGuard,
}

/// A publish refused at the edge or by the origin: the status code (RTMP) and words the
/// encoder hears, and the `reason` it was counted under (an RTSP refusal's status is
/// chosen by it).
struct PublishRefused {
    code: String,
    reason: String,
    description: String,
}

/// Why the edge ends a connection, beside the reasons every node has.
#[derive(Debug)]
enum EdgeEnd {
    /// The origin ended the stream; the encoder was told its reason.
    OriginEnded,
    /// The tunnel failed under the stream, or took nothing for the write timeout.
    TunnelLost,
    /// An origin revoked the publish's token; the encoder was told.
    Revoked,
}

impl NodeEnd for EdgeEnd {
    fn error_kind(&self) -> Option<&'static str> {
        match self {
            EdgeEnd::OriginEnded | EdgeEnd::Revoked => None,
            EdgeEnd::TunnelLost => Some("tunnel_lost"),
        }
    }
}

type End = connection::End<EdgeEnd>;

/// The `reason` label of `edge_publish_ends_total` when a relayed stream ends with its
/// connection.
fn publish_end(how: &End) -> &'static str {
    match how {
        End::Shutdown => end::SHUTDOWN,
        End::Node(EdgeEnd::OriginEnded) => end::ORIGIN_ENDED,
        End::Node(EdgeEnd::TunnelLost) => end::TUNNEL_LOST,
        End::Node(EdgeEnd::Revoked) => end::REVOKED,
        End::Session(_) => end::ENCODER_ERROR,
        _ => end::ENCODER_GONE,
    }
}

/// What the edge waits on beside a connection's socket.
enum Wake {
    /// The relay's writer took a message: the queue may be under its bound again.
    Room,
    /// The relay's writer stopped while the encoder still publishes.
    RelayEnded(RelayEnd),
    /// An origin revoked the stream's token.
    Revoked(longhaul_node::Revoked),
    /// The edge started draining.
    Draining,
}

async fn run<S: Io>(accepted: Accepted<S>, state: Arc<EdgeState>) {
    let Accepted {
        io,
        peer,
        transport,
        shutdown,
        unauthorised,
        shard,
    } = accepted;
    let series = &state.metrics.connections;
    let _active = series.opened(transport.as_str());
    let id = state
        .next_connection_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut conn = Connection {
        id,
        peer,
        transport,
        state: state.clone(),
        shard,
        relaying: None,
        published: None,
        reading: true,
        told_to_reconnect: false,
    };
    let settings = DriverSettings::new(&state.config.ingest, series, transport, peer, unauthorised);
    let end = connection::drive(io, &mut conn, settings, &shutdown).await;
    if let Some(kind) = end.error_kind() {
        series.session_errors.with_label_values(&[kind]).inc();
    }
    conn.finish_relaying(publish_end(&end));
    let stream = conn.published.take();
    let role = if stream.is_some() {
        "publisher"
    } else {
        "connection"
    };
    end.log(peer, transport, role, &stream.unwrap_or_default());
}

impl connection::Connection for Connection {
    type End = EdgeEnd;
    type Wake = Wake;

    async fn on_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerEvent,
    ) -> Result<(), End> {
        match event {
            ServerEvent::ConnectRequested { .. } => session.accept_connect(),
            // Boxed: the publish's asking (abuse guard, router, the origin's verdict over
            // the tunnel) lasts a round trip and is the largest state of a connection's
            // task after the TLS branch and the linger buffer (2.2 KB of its 2.9 KB
            // `feed`, `-Zprint-type-sizes`); inline, it sized the task for its whole life.
            ServerEvent::PublishRequested {
                stream_id, name, ..
            } => Box::pin(self.on_publish(session, stream_id, name)).await?,
            ServerEvent::Media { message, .. } => {
                if let Some(r) = &self.relaying {
                    r.relay.push(message, Instant::now());
                }
            }
            ServerEvent::PublishFinished { stream_id } => {
                if self
                    .relaying
                    .as_ref()
                    .is_some_and(|r| r.stream_id == stream_id)
                {
                    self.finish_relaying(end::UNPUBLISHED);
                }
            }
            ServerEvent::PlayRequested { stream_id, name } => {
                self.state.metrics.plays_refused.inc();
                let stream = name.split('?').next().unwrap_or_default();
                tracing::info!(client = %self.peer, %stream, "play refused: this is an edge");
                session.reject_play(
                    stream_id,
                    CODE_PLAY_FAILED,
                    "this is an edge: play from the origin",
                );
                return Err(End::Rejected);
            }
            ServerEvent::PlayFinished { .. } => {}
            ServerEvent::UnhandledCommand { name } => {
                tracing::debug!(client = %self.peer, command = %name, "command ignored");
            }
        }
        Ok(())
    }

    /// The relay's writer ending, and while reading is paused, the writer making room.
    async fn wake(&mut self) -> Wake {
        self.relay_wake().await
    }

    fn on_wake(&mut self, session: &mut ServerSession, wake: Wake) -> Result<(), End> {
        match wake {
            Wake::Room => Ok(()),
            Wake::RelayEnded(ended) => {
                let end = self.on_relay_end(session, ended);
                // Counted and let go now, not after the connection's last words.
                self.finish_relaying(publish_end(&end));
                Err(end)
            }
            Wake::Draining => {
                self.told_to_reconnect = true;
                let supports = session
                    .connect_request()
                    .is_some_and(|c| c.supports_reconnect());
                if let Some(r) = self.relaying.as_ref().filter(|_| supports) {
                    let node = &self.state.config.node.id;
                    session.request_reconnect(&format!(
                        "edge {node} is shutting down: connect again to go through another edge"
                    ));
                    self.state.metrics.reconnect_requests.inc();
                    tracing::info!(client = %self.peer, stream = %r.stream,
                        "draining: the encoder was asked to reconnect (E-RTMP)");
                }
                Ok(())
            }
            Wake::Revoked(why) => {
                if let Some(r) = &self.relaying {
                    tracing::warn!(client = %self.peer, stream = %r.stream, origin = %r.relay.origin(),
                        reason = %why.reason, "relayed stream cut: {}", why.description);
                    session.send_status(r.stream_id, "error", &why.code, &why.description);
                }
                // Nothing more goes to the origin, not even what is queued.
                self.finish_relaying(end::REVOKED);
                Err(End::Node(EdgeEnd::Revoked))
            }
        }
    }

    /// Always, except while the relay queue is full. Also brings the relay's counts into
    /// the metrics. On resuming, the session's media clock restarts: the encoder was not
    /// silent, the edge was not reading.
    fn may_read(&mut self, session: &mut ServerSession, now: Instant) -> bool {
        if self.relay_may_read(now) {
            session.resume_media_clock(now);
        }
        self.reading
    }

    /// The session's deadline (while reading), the relay's drop or stall deadline.
    fn deadline(&self, session: &ServerSession, reading: bool) -> Option<Instant> {
        let own = session.poll_timeout().filter(|_| reading);
        match (own, self.relay_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_timer(&mut self, session: &mut ServerSession, now: Instant) -> Result<(), End> {
        if let Some(description) = self.relay_stalled(now) {
            if let Some(r) = &self.relaying {
                session.send_status(r.stream_id, "error", CODE_REJECTED, &description);
            }
            self.finish_relaying(end::TUNNEL_LOST);
            return Err(End::Node(EdgeEnd::TunnelLost));
        }
        if self.reading {
            session.handle_timeout(now).map_err(End::Session)?;
        }
        // Otherwise a relay drop deadline: the next `may_read` applies the drop rule.
        Ok(())
    }
}

impl Connection {
    /// Whether to read now: always, except while the relay queue is full. Also brings
    /// the relay's counts into the metrics. True when reading resumes (the encoder was
    /// not silent, the edge was not reading: its media clock restarts).
    fn relay_may_read(&mut self, now: Instant) -> bool {
        let was_reading = self.reading;
        self.reading = match &self.relaying {
            None => true,
            Some(r) => {
                let reading = r.relay.should_read(now);
                self.record(r.relay.take_stats(now));
                reading
            }
        };
        self.reading && !was_reading
    }

    /// The relay's drop or stall deadline.
    fn relay_deadline(&self) -> Option<Instant> {
        self.relaying
            .as_ref()
            .and_then(|r| r.relay.poll_timeout(self.stall_limit()))
    }

    /// The words for a relay whose writer took nothing for the stall limit (logged
    /// here), if it is stalled.
    fn relay_stalled(&self, now: Instant) -> Option<String> {
        let stall_limit = self.stall_limit();
        let r = self.relaying.as_ref()?;
        if !r.relay.is_stalled(now, stall_limit) {
            return None;
        }
        let description = format!(
            "publish stopped: the tunnel to origin {} took no media for {} s",
            r.relay.origin(),
            stall_limit.as_secs_f64()
        );
        tracing::warn!(client = %self.peer, stream = %r.stream, origin = %r.relay.origin(),
            "{description}");
        Some(description)
    }

    /// What the relay wakes the connection for (see [`Wake`]).
    async fn relay_wake(&mut self) -> Wake {
        let Some(r) = self.relaying.as_mut() else {
            return std::future::pending().await;
        };
        let room = r.relay.room();
        let reading = self.reading;
        let draining = self.state.draining.clone();
        let told = self.told_to_reconnect;
        tokio::select! {
            () = room, if !reading => Wake::Room,
            ended = r.relay.ended() => Wake::RelayEnded(ended),
            why = r.live.revoked() => Wake::Revoked(why),
            () = draining.cancelled(), if !told => Wake::Draining,
        }
    }

    /// How long the relay's writer may take no message while messages wait
    /// (`ingest.write_timeout_secs`, the limit every write to a peer has).
    fn stall_limit(&self) -> std::time::Duration {
        self.state.config.ingest.write_timeout()
    }

    /// The relay's writer stopped while the encoder was still publishing: tell it why.
    fn on_relay_end(&mut self, session: &mut ServerSession, ended: RelayEnd) -> End {
        let Some((code, description, end)) = self.relay_end(ended) else {
            return End::Shutdown;
        };
        if let Some(r) = &self.relaying {
            session.send_status(r.stream_id, "error", &code, &description);
        }
        End::Node(end)
    }

    /// The relay's writer stopped while the encoder was still publishing: the status
    /// and words the encoder is to hear, and why the connection ends (logged here).
    fn relay_end(&self, ended: RelayEnd) -> Option<(String, String, EdgeEnd)> {
        let r = self.relaying.as_ref()?;
        let node = &self.state.config.node.id;
        let (code, description, end) = match ended {
            RelayEnd::OriginEnded(e) => (e.code, e.description, EdgeEnd::OriginEnded),
            // `Finished` and `DrainTimedOut` come only after `finish`, which takes the relay
            // away first; were they to come here, the stream is gone all the same.
            other => {
                tracing::warn!(client = %self.peer, stream = %r.stream, origin = %r.relay.origin(),
                    outcome = ?other, "the tunnel stream failed");
                let description = format!(
                    "publish stopped: the origin {} is unreachable from edge {node}",
                    r.relay.origin()
                );
                (CODE_REJECTED.to_string(), description, EdgeEnd::TunnelLost)
            }
        };
        tracing::warn!(client = %self.peer, stream = %r.stream, origin = %r.relay.origin(), %code,
            "relayed stream stopped: {description}");
        Some((code, description, end))
    }

    /// An RTMP `publish`: one stream per connection, then [`Connection::open_relay`];
    /// the encoder hears the answer.
    async fn on_publish(
        &mut self,
        session: &mut ServerSession,
        stream_id: u32,
        name: String,
    ) -> Result<(), End> {
        if self.relaying.is_some() {
            let description =
                "this connection already publishes a stream; open one connection per stream";
            let r = self.refused(&name, CODE_BAD_NAME, outcome::BAD_REQUEST, description);
            session.reject_publish(stream_id, &r.code, &r.description);
            return Err(End::Rejected);
        }
        let (app, tc_url) = match session.connect_request() {
            Some(c) => (c.app.clone(), c.tc_url.clone()),
            None => (String::new(), None),
        };
        match self.open_relay(app, tc_url, name, stream_id).await {
            Ok(_) => {
                session.accept_publish(stream_id);
                // Asking the origin took a round trip or more, and the encoder sends
                // nothing before Publish.Start: its media clock starts now.
                session.resume_media_clock(Instant::now());
                Ok(())
            }
            Err(r) => {
                session.reject_publish(stream_id, &r.code, &r.description);
                Err(End::Rejected)
            }
        }
    }

    /// Decides a publish (of RTMP or RTSP) and, allowed, starts relaying it: the abuse
    /// guard, the URL rules, the origin the router picks asked over its tunnel. The
    /// stream's name, or the refusal (counted and logged here) the encoder is to hear.
    async fn open_relay(
        &mut self,
        app: String,
        tc_url: Option<String>,
        name: String,
        stream_id: u32,
    ) -> Result<String, PublishRefused> {
        if self.state.draining.is_cancelled() {
            let node = &self.state.config.node.id;
            let description = format!(
                "publish refused: edge {node} is draining (shutting down); publish again to go through another edge"
            );
            return Err(self.refused(&name, CODE_REJECTED, outcome::EDGE_DRAINING, &description));
        }
        if let Err(banned) = self.state.abuse.admit(self.peer.ip()).await {
            let description = banned.to_string();
            return Err(self.refused(
                &name,
                CODE_REJECTED,
                outcome::TOO_MANY_FAILURES,
                &description,
            ));
        }
        let default_leg = self.state.config.ingest.default_leg;
        let target =
            match longhaul_endpoint::resolve_publish(&app, tc_url.as_deref(), &name, default_leg) {
                Ok(t) => t,
                Err(e) => {
                    let description = format!("publish refused: {e}");
                    return Err(self.refused(
                        &name,
                        CODE_BAD_NAME,
                        outcome::BAD_REQUEST,
                        &description,
                    ));
                }
            };
        let request = AuthoriseRequest {
            app,
            tc_url,
            name,
            leg: target.leg,
            client_addr: self.peer.to_string(),
            transport: self.transport.as_str().into(),
        };
        let stream = target.stream_name.clone();
        let epoch = self.state.live.epoch();
        match self
            .state
            .upstreams
            .lane(self.shard)
            .open_publish(request.clone())
            .await
        {
            Decision::Allowed {
                sender,
                stream_name,
                origin,
                generation,
                publication,
            } => {
                // Register, then look: a revocation that came while the stream was being
                // opened has already been told to the relays, not to this one.
                let live = self.state.live.register(&target.entry_id, generation);
                if let Some(why) =
                    self.state
                        .live
                        .revoked_since(&target.entry_id, epoch, generation)
                {
                    drop(sender);
                    return Err(self.refused(
                        &stream_name,
                        &why.code,
                        &why.reason,
                        &why.description,
                    ));
                }
                let m = &self.state.metrics;
                m.count_publish(outcome::ACCEPTED, outcome::OK);
                let node = &self.state.config.node;
                tracing::info!(entry = %target.entry_id, rendition = target.rendition,
                    leg = %target.leg, stream = %stream_name, client = %self.peer,
                    region = %node.region, edge = %node.id, %origin,
                    transport = self.transport.as_str(), connection = self.id,
                    "publish accepted: relaying to the origin");
                let config = &self.state.config;
                let resume = publication.map(|publication| Resume {
                    state: self.state.clone(),
                    shard: self.shard,
                    request,
                    stream_name: stream_name.clone(),
                    stream: self.id,
                    publication,
                    limits: config.relay.retain_limits(),
                });
                let relay = Relay::start(
                    sender,
                    &origin,
                    resume,
                    config.relay.limits(),
                    config.ingest.write_timeout(),
                    &self.state.relay_writers,
                );
                self.state.relays.add(
                    self.id,
                    RelayedStream {
                        name: stream_name.clone(),
                        leg: target.leg,
                        steer: relay.steer(),
                    },
                );
                self.published = Some(stream_name.clone());
                self.state
                    .upstreams
                    .lane(self.shard)
                    .placed(self.id, target.leg, &origin);
                self.relaying = Some(Relaying {
                    stream_id,
                    stream: stream_name.clone(),
                    relay,
                    live,
                    _active: GaugeGuard::new(m.publishers_active.clone()),
                });
                Ok(stream_name)
            }
            Decision::Refused {
                code,
                reason,
                description,
                origin,
            } => {
                tracing::debug!(client = %self.peer, %stream, %origin, "the origin refused the publish");
                self.state.abuse.failed(self.peer.ip(), &reason);
                Err(self.refused(&stream, &code, &reason, &description))
            }
            Decision::Unavailable { origin, error } => {
                let node = &self.state.config.node.id;
                tracing::warn!(client = %self.peer, %stream, %origin, %error,
                    "no verdict from the origin");
                // A tunnel that is up but an answer that did not come is a busy origin,
                // not a lost one: say which, so that whoever reads it looks in the
                // right place.
                let (description, why) = match &error {
                    TunnelError::Timeout { after, .. } => (
                        format!(
                            "publish refused: the origin {origin} did not answer edge {node} within {} s; try again",
                            after.as_secs_f64()
                        ),
                        outcome::ORIGIN_TIMEOUT,
                    ),
                    _ => (
                        format!(
                            "publish refused: the origin {origin} is unreachable from edge {node}"
                        ),
                        outcome::TUNNEL_UNAVAILABLE,
                    ),
                };
                Err(self.refused(&stream, CODE_REJECTED, why, &description))
            }
        }
    }

    /// A refused publish: counted and logged here; the caller tells the encoder.
    fn refused(&self, stream: &str, code: &str, reason: &str, description: &str) -> PublishRefused {
        self.state.metrics.count_publish(outcome::REFUSED, reason);
        // A publish name may carry the token (`name?t=...`): never into the logs.
        let stream = longhaul_endpoint::redact_tokens(stream);
        let (entry, rendition) =
            longhaul_endpoint::stream_parts(stream.split('?').next().unwrap_or_default());
        let node = &self.state.config.node;
        // `origin` is empty: an origin's refusal names itself in its own log line.
        tracing::warn!(%entry, %rendition, %stream, client = %self.peer, region = %node.region,
            edge = %node.id, origin = "", reason, transport = self.transport.as_str(),
            "{description}");
        PublishRefused {
            code: code.to_owned(),
            reason: reason.to_owned(),
            description: description.to_owned(),
        }
    }

    /// Adds a relay's counts to the metrics; logs drops.
    fn record(&self, stats: RelayStats) {
        let m = &self.state.metrics;
        if stats.dropped_messages > 0 {
            m.relay_drops
                .with_label_values(&["gops"])
                .inc_by(stats.dropped_gops);
            m.relay_drops
                .with_label_values(&["messages"])
                .inc_by(stats.dropped_messages);
            m.relay_drops
                .with_label_values(&["bytes"])
                .inc_by(stats.dropped_bytes);
            if let Some(r) = &self.relaying {
                tracing::warn!(client = %self.peer, stream = %r.stream, origin = %r.relay.origin(),
                    gops = stats.dropped_gops, messages = stats.dropped_messages,
                    bytes = stats.dropped_bytes, "the tunnel cannot keep up: media dropped");
            }
        }
        m.relay_pauses.inc_by(stats.pauses);
        if !stats.paused.is_zero() {
            m.relay_paused_seconds.inc_by(stats.paused.as_secs_f64());
        }
    }

    /// Ends the relayed stream, if any: the writer sends what is queued and finishes.
    fn finish_relaying(&mut self, why: &'static str) {
        let Some(r) = self.relaying.take() else {
            return;
        };
        self.record(r.relay.take_stats(Instant::now()));
        self.state
            .metrics
            .publish_ends
            .with_label_values(&[why])
            .inc();
        tracing::info!(client = %self.peer, stream = %r.stream, origin = %r.relay.origin(), reason = why,
            "relayed stream ended");
        let upstreams = self.state.upstreams.lane(self.shard);
        upstreams.ended(self.id);
        self.state.relays.remove(self.id);
        if why == end::TUNNEL_LOST {
            upstreams.failed(&r.relay.origin(), longhaul_router::Failure::TunnelLost);
        }
        match why {
            end::ORIGIN_ENDED | end::TUNNEL_LOST | end::REVOKED => r.relay.abort(),
            _ => r.relay.finish(),
        }
    }
}

/// An RTSP publish at the edge (`[rtsp]` listeners; the loop is
/// `longhaul_node::rtsp_connection`'s): the same decision and relay as an RTMP one. What
/// RTSP cannot say (a status mid-stream, a reconnect request while draining) is logged,
/// and the connection closes where an RTMP encoder would have been told.
impl RtspConnection for Connection {
    type End = EdgeEnd;
    type Wake = Wake;

    async fn on_announce(&mut self, parts: RtspPublishParts) -> Result<String, Refusal> {
        let RtspPublishParts { app, tc_url, name } = parts;
        // Boxed for the task's size, as the RTMP publish's asking is.
        Box::pin(self.open_relay(app, Some(tc_url), name, RTSP_STREAM_ID))
            .await
            .map_err(|r| Refusal::for_reason(&r.reason, r.description))
    }

    fn on_media(&mut self, message: longhaul_rtmp::RtmpMessage, now: Instant) {
        if let Some(r) = &self.relaying {
            r.relay.push(message, now);
        }
    }

    async fn wake(&mut self) -> Wake {
        self.relay_wake().await
    }

    fn on_wake(&mut self, wake: Wake) -> Result<(), End> {
        match wake {
            Wake::Room => Ok(()),
            Wake::RelayEnded(ended) => {
                let end = match self.relay_end(ended) {
                    Some((_, _, end)) => End::Node(end),
                    None => End::Shutdown,
                };
                self.finish_relaying(publish_end(&end));
                Err(end)
            }
            Wake::Revoked(why) => {
                if let Some(r) = &self.relaying {
                    tracing::warn!(client = %self.peer, stream = %r.stream, origin = %r.relay.origin(),
                        reason = %why.reason, "relayed RTSP stream cut: {}", why.description);
                }
                self.finish_relaying(end::REVOKED);
                Err(End::Node(EdgeEnd::Revoked))
            }
            // RTSP has no way to ask an encoder to come back elsewhere: the stream goes
            // on until the edge stops.
            Wake::Draining => {
                self.told_to_reconnect = true;
                Ok(())
            }
        }
    }

    fn may_read(&mut self, now: Instant) -> bool {
        self.relay_may_read(now);
        self.reading
    }

    fn deadline(&self) -> Option<Instant> {
        self.relay_deadline()
    }

    fn on_timer(&mut self, now: Instant) -> Result<(), End> {
        if self.relay_stalled(now).is_some() {
            self.finish_relaying(end::TUNNEL_LOST);
            return Err(End::Node(EdgeEnd::TunnelLost));
        }
        Ok(())
    }

    fn on_teardown(&mut self) {
        self.finish_relaying(end::UNPUBLISHED);
    }
}

/// The message stream id an RTSP publish's relay is kept under (one stream per
/// connection; an RTMP publish keeps its `createStream` id).
const RTSP_STREAM_ID: u32 = 1;

/// Serves one RTSP connection to its end.
async fn run_rtsp<S: Io>(accepted: Accepted<S>, state: Arc<EdgeState>) {
    let Accepted {
        io,
        peer,
        transport,
        shutdown,
        unauthorised,
        shard,
    } = accepted;
    let series = &state.metrics.connections;
    let _active = series.opened(transport.as_str());
    let id = state
        .next_connection_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut conn = Connection {
        id,
        peer,
        transport,
        state: state.clone(),
        shard,
        relaying: None,
        published: None,
        reading: true,
        told_to_reconnect: false,
    };
    let settings = RtspSettings::new(
        &state.config.ingest,
        series,
        transport,
        peer,
        unauthorised,
        state.rtsp_udp.clone(),
    );
    let (stream, end) = rtsp_connection::drive(io, &mut conn, settings, &shutdown).await;
    if let Some(kind) = end.error_kind() {
        series.session_errors.with_label_values(&[kind]).inc();
    }
    conn.finish_relaying(publish_end(&end));
    let role = if stream.is_some() {
        "publisher"
    } else {
        "connection"
    };
    end.log(peer, transport, role, &stream.unwrap_or_default());
}
