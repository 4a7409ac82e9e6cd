//! The origin's side of the edge tunnels: publishes that arrive through an edge.
//!
//! An edge asks before it accepts a publish; [`crate::publish::authorise`] answers, the
//! same check a direct publish meets, and an allowed publish gets a one-time grant. When
//! the edge then opens the publish stream, the grant is redeemed and the stream goes into
//! the hub exactly as a direct one would, with the encoder's address and region (the
//! edge's) kept for the logs, the metrics and the streams API.

use crate::publish::{self, Publisher};
use crate::state::OriginState;
use longhaul_endpoint::PublishTarget;
use longhaul_hub::Publication;
use longhaul_node::GaugeGuard;
use longhaul_rtmp::message::RtmpMessage;
use longhaul_tunnel::{
    AuthoriseRequest, Hello, IncomingPublish, LoadReport, PeerInfo, PublishHeader, StreamEnd,
    TunnelService, Verdict,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a grant waits for its publish stream. The edge opens the stream right after
/// the verdict, one round trip at most (230 ms Singapore-New York); 30 s leaves room for
/// a path losing packets for many seconds, and a grant left over is only a few bytes.
const GRANT_TTL: Duration = Duration::from_secs(30);

/// Grants held at once per origin, beyond which the oldest are dropped. Ten thousand is
/// every publish of a full edge fleet arriving in the same 30 s.
const MAX_GRANTS: usize = 10_000;

/// RTMP message stream id tunnelled media is filed under (the hub ignores it; players
/// get their own).
const TUNNEL_STREAM_ID: u32 = 1;

/// An allowed publish waiting for its stream.
struct Grant {
    target: PublishTarget,
    publisher: Publisher,
    issued: Instant,
}

/// Implements [`TunnelService`] for an origin.
pub struct TunnelSide {
    state: Arc<OriginState>,
    grants: Mutex<HashMap<u64, Grant>>,
    next_grant: AtomicU64,
}

impl TunnelSide {
    pub fn new(state: Arc<OriginState>) -> Self {
        Self {
            state,
            grants: Mutex::new(HashMap::new()),
            // Grants are not secrets (the tunnel is authenticated); starting from the
            // clock keeps them distinct across restarts, so a stale one is never redeemed.
            next_grant: AtomicU64::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1),
            ),
        }
    }

    fn grants(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Grant>> {
        self.grants.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store(&self, grant: Grant) -> u64 {
        let id = self.next_grant.fetch_add(1, Ordering::Relaxed);
        let mut grants = self.grants();
        let now = Instant::now();
        grants.retain(|_, g| now.duration_since(g.issued) < GRANT_TTL);
        if grants.len() >= MAX_GRANTS {
            if let Some(oldest) = grants.iter().min_by_key(|(_, g)| g.issued).map(|(k, _)| *k) {
                grants.remove(&oldest);
            }
        }
        grants.insert(id, grant);
        id
    }

    fn redeem(&self, id: u64) -> Option<Grant> {
        self.grants()
            .remove(&id)
            .filter(|g| g.issued.elapsed() < GRANT_TTL)
    }
}

fn publisher(state: &OriginState, peer: &PeerInfo, client_addr: &str) -> Publisher {
    Publisher {
        client: client_addr.to_string(),
        transport: "tunnel",
        region: peer.region.clone(),
        via: Some(peer.node_id.clone()),
        connection_id: state
            .next_connection_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    }
}

impl TunnelService for TunnelSide {
    fn hello(&self) -> Hello {
        Hello {
            node_id: self.state.config.node.id.clone(),
            region: self.state.config.node.region.clone(),
            role: "origin".into(),
            version: longhaul_tunnel::VERSION.into(),
        }
    }

    fn load(&self) -> LoadReport {
        let m = &self.state.metrics;
        LoadReport {
            healthy: true,
            publishers: m.publishers_active.get().max(0) as u64,
            connections: ["rtmp", "rtmps"]
                .iter()
                .map(|t| {
                    m.connections
                        .connections_active
                        .with_label_values(&[t])
                        .get()
                        .max(0) as u64
                })
                .sum(),
        }
    }

    async fn authorise(&self, peer: &PeerInfo, request: AuthoriseRequest) -> Verdict {
        let who = publisher(&self.state, peer, &request.client_addr);
        match publish::authorise(
            &self.state,
            &request.app,
            request.tc_url.as_deref(),
            &request.name,
            request.leg,
            &who,
        )
        .await
        {
            Ok(target) => {
                let stream_name = target.stream_name.clone();
                let grant = self.store(Grant {
                    target,
                    publisher: who,
                    issued: Instant::now(),
                });
                Verdict::Allowed { grant, stream_name }
            }
            Err(r) => Verdict::Refused {
                code: r.code.into(),
                reason: r.reason.into(),
                description: r.description,
            },
        }
    }

    async fn publish(&self, peer: &PeerInfo, header: PublishHeader, stream: IncomingPublish) {
        let (mut media, ender) = stream.split();
        let Some(grant) = self.redeem(header.grant) else {
            tracing::warn!(edge = %peer.node_id, client = %header.client_addr,
                stream = %header.stream_name, "tunnel publish refused: unknown or expired grant");
            self.state
                .metrics
                .publishes
                .with_label_values(&["rejected", "unknown_grant", "tunnel", &peer.region])
                .inc();
            ender
                .end(StreamEnd {
                    code: publish::CODE_REJECTED.into(),
                    description: "publish refused: the origin has no authorisation for this stream (expired or from before a restart); publish again".into(),
                })
                .await;
            return;
        };
        let publication = publish::accept(&self.state, &grant.target, &grant.publisher);
        let _active = GaugeGuard::new(self.state.metrics.publishers_active.clone());
        let (stream, client) = (&grant.target.stream_name, &grant.publisher.client);
        let end = relay(&mut media, &publication).await;
        publication.finish();
        match end {
            RelayEnd::Finished => {
                tracing::info!(edge = %peer.node_id, %client, %stream, "tunnel publish ended");
                ender.finish();
            }
            RelayEnd::TakenOver => {
                tracing::info!(edge = %peer.node_id, %client, %stream,
                    "tunnel publish taken over by a newer connection");
                ender
                    .end(StreamEnd {
                        code: publish::CODE_REJECTED.into(),
                        description: "another connection published this stream with the current token and took it over".into(),
                    })
                    .await;
            }
            RelayEnd::Failed(e) => {
                self.state
                    .metrics
                    .connections
                    .session_errors
                    .with_label_values(&["tunnel"])
                    .inc();
                tracing::warn!(edge = %peer.node_id, %client, %stream, error = %e,
                    "tunnel publish failed");
                ender
                    .end(StreamEnd {
                        code: publish::CODE_REJECTED.into(),
                        description: format!("the origin ended the stream: {e}"),
                    })
                    .await;
            }
        }
    }
}

enum RelayEnd {
    Finished,
    TakenOver,
    Failed(longhaul_tunnel::TunnelError),
}

/// Moves media from the tunnel into the hub until the edge finishes or someone takes
/// the stream over.
async fn relay(media: &mut longhaul_tunnel::MediaReceiver, publication: &Publication) -> RelayEnd {
    loop {
        tokio::select! {
            frame = media.next() => match frame {
                Ok(Some(f)) => {
                    let message = RtmpMessage {
                        timestamp: f.timestamp,
                        type_id: f.kind,
                        stream_id: TUNNEL_STREAM_ID,
                        payload: f.payload,
                    };
                    if publication.push(message).is_err() {
                        return RelayEnd::TakenOver;
                    }
                }
                Ok(None) => return RelayEnd::Finished,
                Err(e) => return RelayEnd::Failed(e),
            },
            _ = publication.taken_over() => return RelayEnd::TakenOver,
        }
    }
}
