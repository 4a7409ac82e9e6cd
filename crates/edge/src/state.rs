//! What every task of an edge shares: its settings, tunnels, connection cap, abuse guard
//! and metrics.

use crate::config::EdgeConfig;
use crate::metrics::Metrics;
use crate::upstream::Upstreams;
use longhaul_node::{AbuseGate, ConnectionLimits, LivePublishes};
use std::sync::atomic::AtomicU64;

pub struct EdgeState {
    pub config: EdgeConfig,
    pub metrics: Metrics,
    pub upstreams: Upstreams,
    /// The RTMP connection cap, shared by the RTMP and RTMPS listeners.
    pub connections: ConnectionLimits,
    /// Publish failures by client address: who keeps failing is slowed, then refused.
    pub abuse: AbuseGate,
    /// Source of connection ids, for the logs.
    pub next_connection_id: AtomicU64,
    /// The relays' writer tasks: shutting down waits for them to drain.
    pub relay_writers: tokio_util::task::TaskTracker,
    /// Relayed publishes by entry, for the origins' revocations.
    pub live: LivePublishes,
}
