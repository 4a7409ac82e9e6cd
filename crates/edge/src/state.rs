//! What every task of an edge shares: its settings, tunnels, connection cap, abuse guard
//! and metrics.

use crate::config::EdgeConfig;
use crate::metrics::Metrics;
use crate::relay::SteerHandle;
use crate::upstream::Upstreams;
use longhaul_endpoint::Leg;
use longhaul_node::{AbuseGate, ConnectionLimits, LivePublishes};
use longhaul_router::StreamId;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

pub struct EdgeState {
    pub config: EdgeConfig,
    pub metrics: Metrics,
    /// The RTP/RTCP ports of RTSP publishes over UDP, when `[rtsp] udp_listen` is set.
    pub rtsp_udp: Option<std::sync::Arc<longhaul_node::rtsp_udp::RtspUdp>>,
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
    /// The relayed streams, for the router's moves.
    pub relays: Relays,
    /// Cancelled when the edge drains (SIGTERM): no new publishes, encoders asked to
    /// reconnect elsewhere.
    pub draining: tokio_util::sync::CancellationToken,
    /// The speed-test routes' limits and series (`/speedtest`).
    pub speedtest: longhaul_node::speedtest::SpeedTest,
}

/// The relayed streams by the router's stream id (the connection's), so the router's
/// driver can ask one to move and the per-stream metrics can read each one's queue.
#[derive(Default)]
pub struct Relays {
    by_stream: Mutex<HashMap<StreamId, RelayedStream>>,
}

/// One relayed stream: what it is, and the handle on its relay.
#[derive(Clone)]
pub struct RelayedStream {
    /// `{entryId}_{n}`.
    pub name: String,
    pub leg: Leg,
    pub steer: SteerHandle,
}

impl Relays {
    pub fn add(&self, stream: StreamId, relayed: RelayedStream) {
        self.lock().insert(stream, relayed);
    }

    pub fn remove(&self, stream: StreamId) {
        self.lock().remove(&stream);
    }

    pub fn get(&self, stream: StreamId) -> Option<SteerHandle> {
        self.lock().get(&stream).map(|r| r.steer.clone())
    }

    /// Every relayed stream now.
    pub fn all(&self) -> Vec<RelayedStream> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, RelayedStream>> {
        self.by_stream.lock().unwrap_or_else(|e| e.into_inner())
    }
}
