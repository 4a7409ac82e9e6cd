//! What every task of an origin shares: its settings, registry, streams, abuse guard and
//! metrics.

use crate::config::OriginConfig;
use crate::metrics::Metrics;
use longhaul_endpoint::{EndpointHosts, Endpoints};
use longhaul_hub::Hub;
use longhaul_node::{AbuseGate, ConnectionLimits};
use longhaul_registry::{Entry, Registry};
use std::sync::Arc;

pub struct OriginState {
    pub config: OriginConfig,
    pub metrics: Metrics,
    pub registry: Arc<Registry>,
    pub hub: Hub,
    /// The RTMP connection cap, shared by the RTMP and RTMPS listeners.
    pub connections: ConnectionLimits,
    /// Direct publish failures by client address: who keeps failing is slowed, then
    /// refused.
    pub abuse: AbuseGate,
    /// Source of connection ids.
    pub next_connection_id: std::sync::atomic::AtomicU64,
}

impl OriginState {
    /// The publish URLs and stream names this node hands out for `entry`.
    pub fn endpoints_of(&self, entry: &Entry) -> Endpoints {
        let e = &self.config.endpoints;
        let hosts = EndpointHosts {
            rtmp_host: e.host.clone(),
            rtmp_port: e.rtmp_port,
            rtmps_port: e.rtmps_port,
            app: longhaul_endpoint::APPLICATION.to_string(),
            use_leg_subdomains: e.leg_subdomains,
        };
        longhaul_endpoint::entry_endpoints(&entry.id, &entry.token, &hosts, e.renditions)
    }
}
