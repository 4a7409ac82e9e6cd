//! The edge's Prometheus metrics, all prefixed `longhaul_`, labelled with `node` and
//! `region`.
//!
//! The RTMP connection series are the ones every node has (`longhaul_node`'s
//! [`ConnectionSeries`]). Publish series are prefixed `edge_` because the origin counts
//! the same publishes again when they arrive through a tunnel: a sum over the cluster
//! must not count them twice. Labels come from small fixed sets; the one label an origin
//! supplies (its refusal reason) is checked to be a short snake_case word first. The
//! tunnels' own series (state, RTT, congestion window, loss, bytes) come from
//! `longhaul_tunnel`'s collector, registered here by [`Metrics::register`]. The router's
//! (`router_origin_healthy{origin}`, `router_streams{origin,leg}`,
//! `router_moves_wanted_total{from,to,reason}`) are set by [`crate::routing`]; their
//! labels are configured origin ids and fixed words.

use longhaul_node::metrics::{
    counter, counter_vec, gauge, gauge_vec, node_registry, AbuseSeries, ConnectionSeries,
};
use prometheus::{
    Counter, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Buckets of the failover histograms, in seconds: from a frame's worth to the stall limit.
const FAILOVER_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0];

/// The `outcome` and `reason` labels of `edge_publishes_total`.
pub mod outcome {
    pub const ACCEPTED: &str = "accepted";
    pub const REFUSED: &str = "refused";
    /// `reason` of an accepted publish.
    pub const OK: &str = "ok";
    /// `reason` when no tunnel to the leg's origin is up, or it failed under the request.
    pub const TUNNEL_UNAVAILABLE: &str = "tunnel_unavailable";
    /// `reason` when the tunnel is up but the origin did not answer in time (an origin
    /// too busy, or a registry slow to confirm the token).
    pub const ORIGIN_TIMEOUT: &str = "origin_timeout";
    /// `reason` when the URL rules refuse the publish here, before any origin is asked.
    pub const BAD_REQUEST: &str = "bad_request";
    /// `reason` when the client's address is banned for too many failed publishes
    /// (`longhaul_node::abuse`): refused here, before any origin is asked.
    pub const TOO_MANY_FAILURES: &str = longhaul_node::abuse_gate::REFUSED_REASON;
    /// `reason` standing in for an origin's reason that is not a short snake_case word.
    pub const OTHER: &str = "other";
    /// `reason` when this edge is draining (shutting down): publish through another.
    pub const EDGE_DRAINING: &str = "edge_draining";
}

/// How a relayed stream ended, as the `reason` label of `edge_publish_ends_total`.
pub mod end {
    pub const UNPUBLISHED: &str = "unpublished";
    pub const ENCODER_GONE: &str = "encoder_gone";
    /// The encoder's session failed: it broke the protocol, went silent, or passed a
    /// bound such as the message rate (`session_errors_total{kind}` says which).
    pub const ENCODER_ERROR: &str = "encoder_error";
    pub const ORIGIN_ENDED: &str = "origin_ended";
    pub const TUNNEL_LOST: &str = "tunnel_lost";
    pub const SHUTDOWN: &str = "shutdown";
    /// An origin revoked the stream's token (regenerated, entry deleted, kicked).
    pub const REVOKED: &str = "revoked";
}

pub struct Metrics {
    registry: Registry,
    pub connections: ConnectionSeries,
    /// `publish_abuse_total{action}`, `publish_abuse_bans_total`: the abuse guard's.
    pub abuse: AbuseSeries,
    /// `edge_publishes_total{outcome, reason}`
    pub publishes: IntCounterVec,
    /// `edge_publish_ends_total{reason}`
    pub publish_ends: IntCounterVec,
    /// `edge_publishers_active`
    pub publishers_active: IntGauge,
    /// `edge_plays_refused_total`: an edge serves no players.
    pub plays_refused: IntCounter,
    /// `relay_drops_total{unit="gops"|"messages"|"bytes"}`
    pub relay_drops: IntCounterVec,
    /// `relay_pauses_total`
    pub relay_pauses: IntCounter,
    /// `relay_paused_seconds_total`
    pub relay_paused_seconds: Counter,
    /// `http_requests_total{route, status}`
    pub http_requests: IntCounterVec,
    /// `edge_revocations_total{reason}`: revocations origins sent this edge.
    pub revocations: IntCounterVec,
    /// `router_origin_healthy{origin}`: 1 while the router counts the origin healthy (on
    /// an edge of several shards, every lane's router).
    pub router_origin_healthy: IntGaugeVec,
    /// `router_streams{origin,leg}`: relayed streams placed on each origin, by leg
    /// (`p`, `b`), all lanes together.
    pub router_streams: IntGaugeVec,
    /// `router_moves_wanted_total{from,to,reason}`: live streams the router wanted
    /// moved (not acted on yet).
    pub router_moves_wanted: IntCounterVec,
    /// `failovers_total{reason,from,to}`: relayed streams resumed on a new tunnel stream
    /// (wire version 2) without their encoder noticing.
    pub failovers: IntCounterVec,
    /// `failover_detect_seconds`: from the oldest frame left unacknowledged (or the move
    /// being wanted) to the decision to resume.
    pub failover_detect: Histogram,
    /// `failover_resume_seconds`: from the decision to the retained frames being sent on
    /// the new stream.
    pub failover_resume: Histogram,
    /// `failover_frames_total{what}`: frames `resent` on resumed streams, and frames
    /// `lost` (not acknowledged and no longer retained when a stream failed).
    pub failover_frames: IntCounterVec,
    /// `retain_evicted_frames_total`: unacknowledged frames the retention bound gave up.
    pub retain_evicted: IntCounter,
    /// `edge_reconnect_requests_total`: encoders asked to reconnect (E-RTMP) as the edge
    /// drained.
    pub reconnect_requests: IntCounter,
}

impl Metrics {
    /// Metrics of one edge; `node` and `region` become constant labels of every series.
    pub fn new(node: &str, region: &str) -> Self {
        let r = node_registry(node, region);
        let relay_paused_seconds = longhaul_node::metrics::register(
            &r,
            Counter::with_opts(Opts::new(
                "relay_paused_seconds_total",
                "Time the edge did not read encoders because their tunnel streams were full, all streams together",
            ))
            .expect("valid metric definition"),
        );
        let relay_drops = counter_vec(
            &r,
            "relay_drops_total",
            "Media dropped because a tunnel could not keep up: GOP runs, messages and payload bytes",
            &["unit"],
        );
        // Present at 0 from the start, so rate() and alerts work before the first drop.
        for unit in ["gops", "messages", "bytes"] {
            relay_drops.with_label_values(&[unit]);
        }
        let publishes = counter_vec(
            &r,
            "edge_publishes_total",
            "Publish requests at this edge by outcome (accepted, refused) and reason (the origin's, tunnel_unavailable, bad_request, too_many_failures)",
            &["outcome", "reason"],
        );
        // Every outcome the edge decides itself starts at 0, so a rate over it (a
        // dashboard panel, an alert) has a series before the first such refusal.
        publishes.with_label_values(&[outcome::ACCEPTED, outcome::OK]);
        for reason in [
            outcome::TUNNEL_UNAVAILABLE,
            outcome::ORIGIN_TIMEOUT,
            outcome::BAD_REQUEST,
            outcome::TOO_MANY_FAILURES,
            outcome::EDGE_DRAINING,
        ] {
            publishes.with_label_values(&[outcome::REFUSED, reason]);
        }
        let failover_frames = counter_vec(
            &r,
            "failover_frames_total",
            "Frames resent on resumed streams (resent), and frames not acknowledged and no longer retained when a stream failed (lost)",
            &["what"],
        );
        for what in ["resent", "lost"] {
            failover_frames.with_label_values(&[what]);
        }
        Self {
            connections: ConnectionSeries::new(&r),
            abuse: AbuseSeries::new(&r),
            publishes,
            publish_ends: counter_vec(
                &r,
                "edge_publish_ends_total",
                "Relayed streams that ended, by why",
                &["reason"],
            ),
            publishers_active: gauge(&r, "edge_publishers_active", "Streams this edge relays now"),
            plays_refused: counter(
                &r,
                "edge_plays_refused_total",
                "Play requests refused (an edge takes publishes only)",
            ),
            relay_drops,
            relay_pauses: counter(
                &r,
                "relay_pauses_total",
                "Times the edge stopped reading an encoder because its tunnel stream was full",
            ),
            relay_paused_seconds,
            http_requests: counter_vec(
                &r,
                "http_requests_total",
                "HTTP requests by route and status",
                &["route", "status"],
            ),
            revocations: counter_vec(
                &r,
                "edge_revocations_total",
                "Revocations origins sent this edge (a token regenerated, an entry deleted, a kick), by reason; the streams they cut are edge_publish_ends_total{reason=\"revoked\"}",
                &["reason"],
            ),
            router_origin_healthy: gauge_vec(
                &r,
                "router_origin_healthy",
                "1 while the router counts the origin healthy, on every lane (a failover target; its legs come back after router.failback_after_ms)",
                &["origin"],
            ),
            router_streams: gauge_vec(
                &r,
                "router_streams",
                "Relayed streams on each origin, by leg (p, b)",
                &["origin", "leg"],
            ),
            router_moves_wanted: counter_vec(
                &r,
                "router_moves_wanted_total",
                "Live streams the router wanted moved, by from and to origin and reason (origin_down, path_lossy, origin_draining, origin_unhealthy, failback); each is carried out by its relay (failovers_total) on tunnels that speak wire version 2",
                &["from", "to", "reason"],
            ),
            failovers: counter_vec(
                &r,
                "failovers_total",
                "Relayed streams resumed on a new tunnel stream without their encoder noticing, by reason (tunnel_lost, origin_ended, ack_stalled, or the router's: origin_down, origin_silent, origin_draining, failback, ...) and from and to origin",
                &["reason", "from", "to"],
            ),
            failover_detect: histogram(
                &r,
                "failover_detect_seconds",
                "From the oldest frame left unacknowledged (or the router wanting the move) to the decision to resume the stream",
            ),
            failover_resume: histogram(
                &r,
                "failover_resume_seconds",
                "From the decision to resume a stream to its retained frames being sent on the new tunnel stream",
            ),
            failover_frames,
            reconnect_requests: counter(
                &r,
                "edge_reconnect_requests_total",
                "Encoders asked to reconnect elsewhere (Enhanced RTMP NetConnection.Connect.ReconnectRequest) as the edge drained",
            ),
            retain_evicted: counter(
                &r,
                "retain_evicted_frames_total",
                "Unacknowledged frames the retention bound (relay.retain_bytes, relay.retain_messages) gave up: lost if their stream fails before the origin acknowledges them",
            ),
            registry: r,
        }
    }

    /// Adds a collector (the tunnels') to this node's registry, under its prefix and labels.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(collector) {
            tracing::error!(error = %e, "registering a metrics collector failed");
        }
    }

    /// Counts a publish outcome; `reason` from an origin is checked first.
    pub fn count_publish(&self, outcome: &str, reason: &str) {
        self.publishes
            .with_label_values(&[outcome, label(reason)])
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        longhaul_node::metrics::render(&self.registry)
    }
}

fn histogram(r: &Registry, name: &str, help: &str) -> Histogram {
    longhaul_node::metrics::register(
        r,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(FAILOVER_BUCKETS.to_vec()))
            .expect("valid metric definition"),
    )
}

/// Longest label value taken from an origin.
const MAX_LABEL_LEN: usize = 32;

/// `reason` if it is a short snake_case word, else [`outcome::OTHER`]: a label value an
/// origin sends cannot grow the series without bound or break the exposition.
pub(crate) fn label(reason: &str) -> &str {
    let word = !reason.is_empty()
        && reason.len() <= MAX_LABEL_LEN
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if word {
        reason
    } else {
        outcome::OTHER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_reasons_from_an_origin_are_checked() {
        let m = Metrics::new("fra-1", "fra");
        m.count_publish(outcome::REFUSED, "wrong_token");
        m.count_publish(outcome::REFUSED, "Bad Reason\n{}");
        m.count_publish(outcome::REFUSED, &"x".repeat(100));
        let text = m.render();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("longhaul_edge_publishes_total{outcome=\"refused\""))
            // Present at 0 from the start.
            .filter(|l| !l.ends_with(" 0"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines.iter().any(|l| l.contains("reason=\"wrong_token\"")));
        let other = lines
            .iter()
            .find(|l| l.contains("reason=\"other\""))
            .expect("other");
        assert!(other.ends_with(" 2"), "{other}");
        assert!(other.contains("node=\"fra-1\"") && other.contains("region=\"fra\""));
    }
}
