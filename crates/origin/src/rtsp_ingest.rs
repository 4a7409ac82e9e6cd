//! The driver of one RTSP publishing connection (`[rtsp]` listeners; the accept loop is
//! `longhaul_node::accept`'s, as for RTMP).
//!
//! The RTSP session ([`longhaul_rtsp::RtspSession`]) decides everything RTSP; the media
//! ([`longhaul_rtsp::RtpIngest`]) turns RTP into the messages an RTMP publish carries.
//! This driver moves bytes, answers the session's two questions, and puts the media in
//! the hub:
//!
//! - **ANNOUNCE**: the URL (`rtsp://{entryId}.{p|b}.s.{host}:554/kLive/{entryId}_{n}?t=…`)
//!   goes through the same decision as an RTMP publish ([`crate::publish::decide`]: URL
//!   rules, token, abuse guard, registration as live, the hub's publication), so the
//!   same refusals reach the encoder, as RTSP statuses (401 for a token, 404 for a name,
//!   503 while draining), and are counted and logged the same way. Tracks no depacketiser
//!   takes are refused with 415 before the token is looked at.
//! - **RECORD**: accepted; media flows from then on.
//!
//! A revoked token or a takeover closes the connection (RTSP 1.0 has no message a
//! server sends unasked; the reason is logged). UDP transport is not offered here yet:
//! SETUP over UDP is answered 461 and ffmpeg falls back to TCP when told
//! `-rtsp_transport tcp`.

use crate::metrics::GaugeGuard;
use crate::publish::{self, PublishDecision};
use crate::state::OriginState;
use longhaul_endpoint::{redact_tokens, RtspPublishParts};
use longhaul_hub::Publication;
use longhaul_node::metrics::rtsp_outcome;
use longhaul_node::{Accepted, Io, LivePublish, Transport, UnauthorisedCharge};
use longhaul_rtmp::RtmpMessage;
use longhaul_rtsp::{RtpIngest, RtspEvent, RtspSession, SessionConfig, SessionError, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why an RTSP connection ended.
#[derive(Debug)]
enum End {
    PeerClosed,
    Shutdown,
    /// The publish was refused; the encoder was told.
    Refused,
    Teardown,
    WriteStalled,
    Io(std::io::Error),
    Session(SessionError),
    TakenOver,
    Revoked(String),
    UnauthorisedMemory,
}

impl End {
    /// The `kind` label of `session_errors_total`, for the ends that are errors.
    fn error_kind(&self) -> Option<&'static str> {
        match self {
            End::WriteStalled => Some("write_stalled"),
            End::Io(_) => Some("io"),
            End::Session(SessionError::Timeout(_)) => Some("timeout"),
            End::Session(_) => Some("protocol"),
            _ => None,
        }
    }
}

/// The publish a connection carries once its ANNOUNCE is accepted.
struct Publishing {
    stream: String,
    publication: Publication,
    live: LivePublish,
    media: RtpIngest,
    _active: GaugeGuard,
}

struct RtspConnection {
    id: u64,
    peer: SocketAddr,
    transport: Transport,
    state: Arc<OriginState>,
    publishing: Option<Publishing>,
    /// Tracks of the ANNOUNCE being decided, depacketisers made.
    announced: Option<RtpIngest>,
    messages: Vec<RtmpMessage>,
}

/// Serves one RTSP connection to its end.
pub(crate) async fn run<S: Io>(accepted: Accepted<S>, state: Arc<OriginState>) {
    let Accepted {
        io,
        peer,
        transport,
        shutdown,
        unauthorised,
        shard: _,
    } = accepted;
    let m = &state.metrics;
    let _active = m.connections.opened(transport.as_str());
    let id = state
        .next_connection_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut conn = RtspConnection {
        id,
        peer,
        transport,
        state: state.clone(),
        publishing: None,
        announced: None,
        messages: Vec::new(),
    };
    let end = conn.drive(io, &shutdown, unauthorised).await;
    let stream = conn.finish();
    if let Some(kind) = end.error_kind() {
        m.connections
            .session_errors
            .with_label_values(&[kind])
            .inc();
    }
    let transport = transport.as_str();
    match &end {
        End::Session(e) => tracing::warn!(client = %peer, transport, %stream, error = %e,
            "RTSP connection closed: {e}"),
        End::Io(e) => tracing::info!(client = %peer, transport, %stream, error = %e,
            "RTSP connection ended: socket error"),
        End::WriteStalled => tracing::warn!(client = %peer, transport, %stream,
            "RTSP connection closed: the peer stopped reading"),
        End::Revoked(why) => tracing::warn!(client = %peer, transport, %stream,
            "RTSP publish cut: {why}"),
        End::TakenOver => tracing::info!(client = %peer, transport, %stream,
            "RTSP publish taken over by another connection with the current token"),
        other => tracing::debug!(client = %peer, transport, %stream, end = ?other,
            "RTSP connection closed"),
    }
}

impl RtspConnection {
    async fn drive<S: Io>(
        &mut self,
        mut io: S,
        shutdown: &tokio_util::sync::CancellationToken,
        unauthorised: UnauthorisedCharge,
    ) -> End {
        let ingest = &self.state.config.ingest;
        let config = SessionConfig {
            session_id: session_id(),
            setup_timeout: Duration::from_secs_f64(ingest.handshake_timeout_secs.max(1.0)),
            idle_timeout: Duration::from_secs_f64(ingest.media_timeout_secs.max(1.0)),
            udp: None,
        };
        let write_timeout = ingest.write_timeout();
        let label = [self.transport.as_str()];
        let bytes_in = self
            .state
            .metrics
            .connections
            .bytes_received
            .with_label_values(&label);
        let bytes_out = self
            .state
            .metrics
            .connections
            .bytes_sent
            .with_label_values(&label);
        let mut session = RtspSession::new(config, Instant::now());
        let mut unauthorised = Some(unauthorised);
        loop {
            // Answers first, and the close after a last one.
            if let Some(out) = session.take_output() {
                match tokio::time::timeout(write_timeout, io.write_all(&out)).await {
                    Ok(Ok(())) => bytes_out.inc_by(out.len() as u64),
                    Ok(Err(e)) => return End::Io(e),
                    Err(_) => return End::WriteStalled,
                }
            }
            self.count_answers(&mut session);
            if session.should_close() {
                let _ = tokio::time::timeout(write_timeout, io.shutdown()).await;
                return if self.publishing.is_some() || session.is_recording() {
                    End::Teardown
                } else {
                    End::Refused
                };
            }
            let deadline = [
                session.poll_timeout(),
                self.publishing
                    .as_ref()
                    .and_then(|p| p.media.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let unhandled = session.has_unhandled_input();
            let reading = !session.waiting_for_decision();
            let result = tokio::select! {
                read = io.read_buf(session.read_buffer()), if reading && !unhandled => match read {
                    Ok(0) => Err(End::PeerClosed),
                    Ok(n) => {
                        bytes_in.inc_by(n as u64);
                        session.handle_read(Instant::now(), n).map_err(End::Session)
                    }
                    Err(e) => Err(End::Io(e)),
                },
                _ = std::future::ready(()), if reading && unhandled => {
                    session.handle_read(Instant::now(), 0).map_err(End::Session)
                }
                _ = sleep => {
                    let now = Instant::now();
                    self.poll_media(now);
                    session.handle_timeout(now).map(|()| Vec::new()).map_err(End::Session)
                }
                end = publisher_cut(&mut self.publishing) => Err(end),
                _ = shutdown.cancelled() => Err(End::Shutdown),
            };
            let events = match result {
                Ok(events) => events,
                Err(end) => {
                    if let Some(out) = session.take_output() {
                        let _ = tokio::time::timeout(write_timeout, io.write_all(&out)).await;
                    }
                    self.count_answers(&mut session);
                    return end;
                }
            };
            for event in events {
                self.on_event(&mut session, event).await;
            }
            self.count_dropped(&mut session);
            // Until a publish is accepted the connection's buffers count against the
            // node's budget for unauthorised connections.
            if let Some(pre) = &mut unauthorised {
                if self.publishing.is_some() {
                    unauthorised = None;
                } else if let Err(e) = pre.charge.set(session.buffered_bytes()) {
                    pre.refused.inc();
                    tracing::warn!(client = %self.peer, used_bytes = e.used, limit_bytes = e.limit,
                        "RTSP connection closed before it was authorised: {e}");
                    return End::UnauthorisedMemory;
                }
            }
        }
    }

    async fn on_event(&mut self, session: &mut RtspSession, event: RtspEvent) {
        match event {
            RtspEvent::Announce { url, tracks } => {
                let media = match RtpIngest::new(&tracks) {
                    Ok(media) => media,
                    Err((index, e)) => {
                        let why = format!(
                            "track {index} ({} {}): {e}",
                            tracks[index].media, tracks[index].encoding
                        );
                        tracing::warn!(client = %self.peer, url = %redact_tokens(&url), "RTSP publish refused: {why}");
                        session.refuse(StatusCode::UnsupportedMediaType, &why);
                        return;
                    }
                };
                self.announced = Some(media);
                self.decide(session, &url).await;
            }
            RtspEvent::Record => {
                if self.publishing.is_some() {
                    session.accept_record();
                } else {
                    session.refuse(
                        StatusCode::MethodNotValidInThisState,
                        "no accepted ANNOUNCE",
                    );
                }
            }
            RtspEvent::Packet { track, rtcp, data } => {
                let Some(p) = &mut self.publishing else {
                    return;
                };
                let mut messages = std::mem::take(&mut self.messages);
                p.media
                    .push(Instant::now(), track, rtcp, data, &mut messages);
                for m in messages.drain(..) {
                    // Err: another connection took the stream over; the cut branch of
                    // the loop closes this one.
                    let _ = p.publication.push(m);
                }
                self.messages = messages;
            }
            RtspEvent::UdpTrack { .. } => {}
            RtspEvent::Teardown => {
                self.finish_publishing();
            }
        }
    }

    /// The publish decision for an ANNOUNCE's URL, answered to the session.
    async fn decide(&mut self, session: &mut RtspSession, url: &str) {
        let Some(parts) = RtspPublishParts::from_url(url) else {
            session.refuse(
                StatusCode::BadRequest,
                "the ANNOUNCE URL has no path: rtsp://HOST:PORT/kLive/{entryId}_{n}?t={token}",
            );
            return;
        };
        let decision = Box::pin(publish::decide(
            &self.state,
            &parts.app,
            Some(&parts.tc_url),
            &parts.name,
            self.peer,
            self.transport,
            self.id,
        ))
        .await;
        match decision {
            PublishDecision::Accept(publish::Accepted {
                publication, live, ..
            }) => {
                let Some(media) = self.announced.take() else {
                    return;
                };
                let stream = publication.key().name.clone();
                tracing::info!(client = %self.peer, %stream, codecs = ?media.codecs(),
                    transport = self.transport.as_str(), "RTSP publish accepted");
                self.publishing = Some(Publishing {
                    stream,
                    publication,
                    live,
                    media,
                    _active: GaugeGuard::new(self.state.metrics.publishers_active.clone()),
                });
                session.accept_announce();
            }
            PublishDecision::Reject {
                reason,
                description,
                ..
            } => {
                session.refuse(refusal_status(reason), &description);
            }
        }
    }

    fn poll_media(&mut self, now: Instant) {
        let Some(p) = &mut self.publishing else {
            return;
        };
        let mut messages = std::mem::take(&mut self.messages);
        p.media.poll(now, &mut messages);
        for m in messages.drain(..) {
            let _ = p.publication.push(m);
        }
        self.messages = messages;
    }

    fn count_answers(&self, session: &mut RtspSession) {
        let requests = &self.state.metrics.connections.rtsp_requests;
        for (method, status) in session.take_answers() {
            requests
                .with_label_values(&[method, &status.to_string()])
                .inc();
        }
    }

    /// Interleaved packets the session dropped since the last call.
    fn count_dropped(&self, session: &mut RtspSession) {
        let dropped = session.take_dropped_packets();
        if dropped > 0 {
            self.state
                .metrics
                .connections
                .rtsp_packets
                .with_label_values(&[rtsp_outcome::UNROUTED])
                .inc_by(dropped);
        }
    }

    fn finish_publishing(&mut self) -> Option<String> {
        let p = self.publishing.take()?;
        let packets = &self.state.metrics.connections.rtsp_packets;
        let mut log = Vec::new();
        for (track, codec) in p.media.codecs().into_iter().enumerate() {
            let Some(c) = p.media.counts(track) else {
                continue;
            };
            packets
                .with_label_values(&[rtsp_outcome::RECEIVED])
                .inc_by(c.packets);
            packets
                .with_label_values(&[rtsp_outcome::LOST])
                .inc_by(c.lost);
            packets
                .with_label_values(&[rtsp_outcome::LATE])
                .inc_by(c.late);
            packets
                .with_label_values(&[rtsp_outcome::MALFORMED])
                .inc_by(c.malformed);
            log.push(format!(
                "{codec}: {} packets, {} lost, {} late, {} malformed, jitter {:.1} ms",
                c.packets, c.lost, c.late, c.malformed, c.jitter_ms
            ));
        }
        tracing::info!(client = %self.peer, stream = %p.stream, tracks = %log.join("; "),
            "RTSP publish ended");
        p.publication.finish();
        Some(p.stream)
    }

    /// Ends the publish if any; the stream's name for the last log line.
    fn finish(&mut self) -> String {
        self.finish_publishing().unwrap_or_default()
    }
}

/// Resolves when the publish is taken over or its token revoked.
async fn publisher_cut(publishing: &mut Option<Publishing>) -> End {
    match publishing {
        Some(p) => tokio::select! {
            _ = p.publication.taken_over() => End::TakenOver,
            why = p.live.revoked() => End::Revoked(why.description),
        },
        None => std::future::pending().await,
    }
}

/// The RTSP status of a publish refusal, by its `reason` label.
fn refusal_status(reason: &str) -> StatusCode {
    use crate::metrics::reason as r;
    match reason {
        r::MISSING_TOKEN
        | r::WRONG_TOKEN
        | r::UNVERIFIED_TOKEN
        | r::REVOKED
        | r::CALLBACK_REFUSED => StatusCode::Unauthorized,
        r::UNKNOWN_ENTRY | r::BAD_STREAM_NAME | r::UNKNOWN_APP => StatusCode::NotFound,
        r::TOO_MANY_FAILURES => StatusCode::Forbidden,
        _ => StatusCode::ServiceUnavailable,
    }
}

/// An unguessable session id: 64 random bits, hex.
fn session_id() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness the id is only unguessable per connection, which the
    // connection already is (the id is checked within it).
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
