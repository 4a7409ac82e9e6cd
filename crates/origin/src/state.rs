//! What every task of an origin shares: its settings, entries, streams, abuse guard and
//! metrics.

use crate::callback::CallbackAuthority;
use crate::config::OriginConfig;
use crate::metrics::Metrics;
use longhaul_endpoint::Endpoints;
use longhaul_hub::Hub;
use longhaul_node::{AbuseGate, ConnectionLimits, LivePublishes};
use longhaul_registry::{Entry, Registry};
use std::sync::Arc;

pub struct OriginState {
    pub config: OriginConfig,
    pub metrics: Metrics,
    /// The RTP/RTCP ports of RTSP publishes over UDP, when `[rtsp] udp_listen` is set.
    pub rtsp_udp: Option<Arc<longhaul_node::rtsp_udp::RtspUdp>>,
    /// The entries: their API, and the token check unless a callback decides.
    /// `None` when publishes are authorised by a callback and no registry is set.
    pub registry: Option<Arc<Registry>>,
    /// The platform's authorisation callback, with `[auth] mode = "callback"`.
    pub callback: Option<CallbackAuthority>,
    pub hub: Hub,
    /// The RTMP connection cap, shared by the RTMP and RTMPS listeners.
    pub connections: ConnectionLimits,
    /// Direct publish failures by client address: who keeps failing is slowed, then
    /// refused.
    pub abuse: AbuseGate,
    /// Source of connection ids.
    pub next_connection_id: std::sync::atomic::AtomicU64,
    /// Live publishes by entry, direct and tunnelled, for revocation.
    pub live: LivePublishes,
    /// The tunnels from edges: revocations are sent down them.
    pub tunnels: Arc<longhaul_tunnel::TunnelSet>,
    /// Where players reach this origin: written beside its live streams in the
    /// registry, for the other origins to name.
    pub play_urls: crate::presence::PlayUrls,
    /// Where else a stream is live, for a play that misses here.
    pub elsewhere: crate::elsewhere::Finder,
    /// Cancelled when the origin drains (SIGTERM, or `POST /api/v1/drain`): it takes no
    /// new publishes and tells its edges, which move their streams elsewhere.
    pub draining: tokio_util::sync::CancellationToken,
    /// Origin peering, when `[peering]` names peers: the tunnels to them, and what this
    /// origin pulls and serves.
    pub peering: Option<Arc<crate::peering::Peering>>,
    /// The speed-test routes' limits and series (`/speedtest`).
    pub speedtest: longhaul_node::speedtest::SpeedTest,
    /// The web console's sessions (`/console/`).
    pub console: crate::console::ConsoleSessions,
}

impl OriginState {
    /// A player's subscription to `name` (see [`longhaul_hub::LegChoice`]): from the hub,
    /// or, when no leg is live here and peers may have one, pulled from them
    /// ([`crate::peering::Peering::subscribe`]: the play waits for it a little).
    pub async fn subscribe(
        &self,
        name: &str,
        choice: longhaul_hub::LegChoice,
    ) -> Option<longhaul_hub::Subscription> {
        match &self.peering {
            Some(peering) => peering.subscribe(self, name, choice).await,
            None => self.hub.subscribe(name, choice),
        }
    }

    /// The publish URLs and stream names this node hands out for `entry`.
    pub fn endpoints_of(&self, entry: &Entry) -> Endpoints {
        let e = &self.config.endpoints;
        longhaul_endpoint::entry_endpoints(&entry.id, &entry.token, &e.hosts(), e.renditions)
    }
}
