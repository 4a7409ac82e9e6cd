//! The origin's part of an RTSP publishing connection (`[rtsp]` listeners; the loop is
//! `longhaul_node::rtsp_connection`'s, the accept loop `longhaul_node::accept`'s).
//!
//! An ANNOUNCE's URL (`rtsp://{entryId}.{p|b}.s.{host}:554/kLive/{entryId}_{n}?t=…`) goes
//! through the same decision as an RTMP publish ([`crate::publish::decide`]: URL rules,
//! token, abuse guard, registration as live, the hub's publication), so the same
//! refusals reach the encoder (as RTSP statuses) and are counted and logged the same
//! way, and its media goes into the hub as an RTMP encoder's would. A revoked token or a
//! takeover closes the connection; the reason is logged.

use crate::metrics::GaugeGuard;
use crate::publish::{self, PublishDecision};
use crate::state::OriginState;
use longhaul_endpoint::RtspPublishParts;
use longhaul_hub::Publication;
use longhaul_node::connection::{End, NodeEnd};
use longhaul_node::rtsp_connection::{self, Refusal, RtspConnection, RtspSettings};
use longhaul_node::{Accepted, Io, LivePublish, Transport};
use longhaul_rtmp::RtmpMessage;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Why the origin ends an RTSP connection, beside the reasons every node has.
#[derive(Debug)]
enum RtspEnd {
    TakenOver,
    Revoked(String),
}

impl NodeEnd for RtspEnd {
    fn error_kind(&self) -> Option<&'static str> {
        None
    }
}

/// The publish a connection carries once its ANNOUNCE is accepted.
struct Publishing {
    publication: Publication,
    live: LivePublish,
    _active: GaugeGuard,
}

struct Connection {
    id: u64,
    peer: SocketAddr,
    transport: Transport,
    state: Arc<OriginState>,
    publishing: Option<Publishing>,
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
    let mut conn = Connection {
        id,
        peer,
        transport,
        state: state.clone(),
        publishing: None,
    };
    let settings = RtspSettings::new(
        &state.config.ingest,
        &m.connections,
        transport,
        peer,
        unauthorised,
        state.rtsp_udp.clone(),
    );
    let (stream, end) = rtsp_connection::drive(io, &mut conn, settings, &shutdown).await;
    conn.finish_publishing();
    if let Some(kind) = end.error_kind() {
        m.connections
            .session_errors
            .with_label_values(&[kind])
            .inc();
    }
    let stream = stream.unwrap_or_default();
    match &end {
        End::Node(RtspEnd::Revoked(why)) => tracing::warn!(client = %peer,
            transport = transport.as_str(), %stream, "RTSP publish cut: {why}"),
        End::Node(RtspEnd::TakenOver) => tracing::info!(client = %peer,
            transport = transport.as_str(), %stream,
            "RTSP publish taken over by another connection with the current token"),
        _ => {}
    }
    let role = if stream.is_empty() {
        "connection"
    } else {
        "publisher"
    };
    end.log(peer, transport, role, &stream);
}

impl Connection {
    fn finish_publishing(&mut self) {
        if let Some(p) = self.publishing.take() {
            p.publication.finish();
        }
    }
}

impl RtspConnection for Connection {
    type End = RtspEnd;
    type Wake = RtspEnd;

    async fn on_announce(&mut self, parts: RtspPublishParts) -> Result<String, Refusal> {
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
                let stream = publication.key().name.clone();
                self.publishing = Some(Publishing {
                    publication,
                    live,
                    _active: GaugeGuard::new(self.state.metrics.publishers_active.clone()),
                });
                Ok(stream)
            }
            PublishDecision::Reject {
                reason,
                description,
                ..
            } => Err(Refusal::for_reason(reason, description)),
        }
    }

    fn on_media(&mut self, message: RtmpMessage, _now: Instant) {
        if let Some(p) = &self.publishing {
            // Err: another connection took the stream over; `wake` ends this one.
            let _ = p.publication.push(message);
        }
    }

    async fn wake(&mut self) -> RtspEnd {
        match &mut self.publishing {
            Some(p) => tokio::select! {
                _ = p.publication.taken_over() => RtspEnd::TakenOver,
                why = p.live.revoked() => RtspEnd::Revoked(why.description),
            },
            None => std::future::pending().await,
        }
    }

    fn on_wake(&mut self, wake: RtspEnd) -> Result<(), End<RtspEnd>> {
        // Players see the stream end now, not after the connection closes.
        self.finish_publishing();
        Err(End::Node(wake))
    }

    fn on_teardown(&mut self) {
        self.finish_publishing();
    }
}
