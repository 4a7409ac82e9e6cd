//! The origin's Prometheus metrics, all prefixed `longhaul_`.
//!
//! Built on `longhaul_node::metrics`: the node's own registry, `node` and `region` as
//! constant labels. Labels are kept to small fixed sets (transport, outcome, reason):
//! per-stream series come with the operations work, behind a cardinality limit.

use longhaul_node::metrics::{
    counter, counter_vec, gauge, gauge_vec, node_registry, AbuseSeries, ConnectionSeries,
};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

/// Re-exported: the origin's modules count connections, players and publishers with it.
pub use longhaul_node::GaugeGuard;

/// Why a publish was refused or how it ended, as the `reason` label.
pub mod reason {
    pub const OK: &str = "ok";
    pub const MISSING_TOKEN: &str = "missing_token";
    pub const WRONG_TOKEN: &str = "wrong_token";
    pub const UNKNOWN_ENTRY: &str = "unknown_entry";
    pub const BAD_STREAM_NAME: &str = "bad_stream_name";
    pub const UNKNOWN_APP: &str = "unknown_app";
    pub const INTERNAL: &str = "internal_error";
    /// The client's address is banned for too many failed publishes
    /// (`longhaul_node::abuse`); refused before any check.
    pub const TOO_MANY_FAILURES: &str = longhaul_node::abuse_gate::REFUSED_REASON;
}

/// The `protocol` label of player series.
pub mod protocol {
    pub const RTMP: &str = "rtmp";
    pub const HTTP_FLV: &str = "http-flv";
}

pub struct Metrics {
    registry: Registry,
    /// The RTMP connection series every node has.
    pub connections: ConnectionSeries,
    /// `publish_abuse_total{action}`, `publish_abuse_bans_total`: the abuse guard's.
    pub abuse: AbuseSeries,
    pub publishes: IntCounterVec,
    pub publish_takeovers: IntCounter,
    pub publishers_active: IntGauge,
    pub players_active: IntGaugeVec,
    pub plays: IntCounterVec,
    pub player_skips: IntCounterVec,
    pub player_drops: IntCounterVec,
    pub http_requests: IntCounterVec,
}

impl Metrics {
    /// Metrics of one node; `node` and `region` become constant labels of every series.
    pub fn new(node: &str, region: &str) -> Self {
        let r = node_registry(node, region);
        let publish_takeovers = counter(
            &r,
            "publish_takeovers_total",
            "Publishes that took over a stream from an older connection of the same entry, leg and rendition",
        );
        let publishers_active = gauge(&r, "publishers_active", "Streams being published now");
        Self {
            connections: ConnectionSeries::new(&r),
            abuse: AbuseSeries::new(&r),
            publishes: counter_vec(
                &r,
                "publishes_total",
                "Publish requests by outcome (accepted, rejected), reason, transport (rtmp, rtmps, tunnel) and the region the encoder published in",
                &["outcome", "reason", "transport", "encoder_region"],
            ),
            publish_takeovers,
            publishers_active,
            players_active: gauge_vec(&r, "players_active", "Players attached now", &["protocol"]),
            plays: counter_vec(
                &r,
                "plays_total",
                "Play requests by protocol and outcome",
                &["protocol", "outcome"],
            ),
            player_skips: counter_vec(
                &r,
                "player_skips_total",
                "Times a slow player was skipped forward to the next keyframe",
                &["protocol"],
            ),
            player_drops: counter_vec(
                &r,
                "player_drops_total",
                "Players disconnected because they could not keep up",
                &["protocol"],
            ),
            http_requests: counter_vec(
                &r,
                "http_requests_total",
                "HTTP requests by route and status",
                &["route", "status"],
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

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        longhaul_node::metrics::render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_series_with_node_labels() {
        let m = Metrics::new("nyc-1", "nyc");
        m.publishes
            .with_label_values(&["rejected", reason::WRONG_TOKEN, "tunnel", "fra"])
            .inc();
        let text = m.render();
        // Label order is the registry's business; check the set.
        let line = text
            .lines()
            .find(|l| l.starts_with("longhaul_publishes_total{"))
            .expect("series rendered");
        for label in [
            "node=\"nyc-1\"",
            "region=\"nyc\"",
            "outcome=\"rejected\"",
            "reason=\"wrong_token\"",
            "transport=\"tunnel\"",
            "encoder_region=\"fra\"",
        ] {
            assert!(line.contains(label), "{label} missing in {line}");
        }
        assert!(line.ends_with(" 1"), "{line}");
    }

    /// The refusals the abuse guard counts are the ones this node calls credential
    /// failures; a renamed reason would silently stop counting.
    #[test]
    fn the_abuse_guard_counts_the_credential_reasons() {
        use longhaul_node::abuse_gate::is_credential_failure;
        for r in [
            reason::MISSING_TOKEN,
            reason::WRONG_TOKEN,
            reason::UNKNOWN_ENTRY,
        ] {
            assert!(is_credential_failure(r), "{r}");
        }
        for r in [
            reason::OK,
            reason::BAD_STREAM_NAME,
            reason::UNKNOWN_APP,
            reason::INTERNAL,
            reason::TOO_MANY_FAILURES,
        ] {
            assert!(!is_credential_failure(r), "{r}");
        }
    }
}
