//! Draining an origin: taking it out of service without its encoders noticing, for a
//! rolling restart or a host going away.
//!
//! [`begin`] (on SIGTERM, or `POST /api/v1/drain`) marks the origin draining: it refuses
//! new publishes (reason `origin_draining`, which an edge resuming a stream takes as
//! "try another origin") and tells every edge at once, not at the next report. Each
//! edge's router then moves the streams it sends here to the other origin (tunnel wire
//! format v2, make-before-break: the stream is open and fed at the other origin before
//! the one here is finished), so they leave within about a second. [`until_empty`]
//! waits for the publishes here to end, bounded by `node.drain_grace_secs`: encoders
//! connected directly cannot be moved and get that long to finish.

use crate::state::OriginState;
use std::time::Duration;

/// Starts draining (once; later calls change nothing) for `reason` (`shutdown`, `api`).
/// Returns whether this call started it, and how many edges were told.
pub fn begin(state: &OriginState, reason: &'static str) -> (bool, usize) {
    if state.draining.is_cancelled() {
        return (false, 0);
    }
    state.draining.cancel();
    state.metrics.draining.set(1);
    let report = crate::tunnel::load_report(state, false);
    let told = state.tunnels.report_now(&report);
    tracing::info!(
        origin = %state.config.node.id,
        region = %state.config.node.region,
        reason,
        edges_told = told,
        publishers = report.publishers,
        "draining: no new publishes; edges move their streams to another origin"
    );
    (true, told)
}

/// Waits until no publish is left here, or `grace` has passed; returns how many were
/// left.
pub async fn until_empty(state: &OriginState, grace: Duration) -> u64 {
    longhaul_node::drain::until_empty(&state.metrics.publishers_active, grace).await
}
