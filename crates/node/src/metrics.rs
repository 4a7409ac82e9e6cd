//! The Prometheus plumbing every node's metrics are built on.
//!
//! Each node owns its own [`prometheus::Registry`] (not the process-global one), so the
//! nodes `longhaul dev` runs in one process each export only their own figures. Every
//! series is prefixed `longhaul_` and carries the node's `node` and `region` as constant
//! labels. The definitions here are static: a failure to build or register one is a bug
//! in this code, found by the first test that starts a node, never a bad input.

use prometheus::core::Collector;
use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// A registry whose series are `longhaul_*{node, region, ...}`.
pub fn node_registry(node: &str, region: &str) -> Registry {
    let labels = [("node", node), ("region", region)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Registry::new_custom(Some("longhaul".into()), Some(labels)).expect("valid registry prefix")
}

/// Registers `collector` in `registry` and hands it back.
pub fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric registered once");
    collector
}

pub fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(
        r,
        IntCounter::new(name, help).expect("valid metric definition"),
    )
}

pub fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    register(
        r,
        IntGauge::new(name, help).expect("valid metric definition"),
    )
}

pub fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    register(r, c)
}

pub fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    register(r, g)
}

/// The Prometheus text exposition of every metric in `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail on I/O; a failure would be a bug in a metric.
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// The connection series every node that takes RTMP has, defined once so that origins
/// and edges export them under the same names and labels.
#[derive(Clone)]
pub struct ConnectionSeries {
    /// `connections_total{transport}`
    pub connections_total: IntCounterVec,
    /// `connections_active{transport}`
    pub connections_active: IntGaugeVec,
    /// `connections_refused_total{transport, reason}`: the accept loops' refusals.
    pub connections_refused: IntCounterVec,
    /// `session_errors_total{kind}`
    pub session_errors: IntCounterVec,
    /// `bytes_received_total{transport}`
    pub bytes_received: IntCounterVec,
    /// `bytes_sent_total{transport}`
    pub bytes_sent: IntCounterVec,
    /// `rtsp_packets_total{outcome}`: RTP packets of RTSP publishes (`longhaul_rtsp`),
    /// by what became of them ([`rtsp_outcome`]).
    pub rtsp_packets: IntCounterVec,
    /// `rtsp_requests_total{method, status}`: RTSP requests answered, by status code.
    pub rtsp_requests: IntCounterVec,
}

/// The `outcome` label of `rtsp_packets_total`.
pub mod rtsp_outcome {
    /// Taken into the stream in order.
    pub const RECEIVED: &str = "received";
    /// Never arrived within the reordering window (counted by sequence number).
    pub const LOST: &str = "lost";
    /// Arrived after its place was passed, or twice: dropped.
    pub const LATE: &str = "late";
    /// Did not parse as RTP, or its payload not as its codec's: dropped.
    pub const MALFORMED: &str = "malformed";
    /// Interleaved on a channel no track was set up on, before RECORD, or a UDP
    /// datagram from a source no SETUP named: dropped.
    pub const UNROUTED: &str = "unrouted";
    /// A UDP datagram whose connection's queue was full: dropped.
    pub const OVERFLOW: &str = "overflow";
}

impl ConnectionSeries {
    pub fn new(r: &Registry) -> Self {
        Self {
            connections_total: counter_vec(
                r,
                "connections_total",
                "RTMP connections accepted",
                &["transport"],
            ),
            connections_active: gauge_vec(
                r,
                "connections_active",
                "RTMP connections open now",
                &["transport"],
            ),
            connections_refused: counter_vec(
                r,
                "connections_refused_total",
                "Connections refused before the RTMP handshake",
                &["transport", "reason"],
            ),
            session_errors: counter_vec(
                r,
                "session_errors_total",
                "RTMP sessions ended by an error, by kind",
                &["kind"],
            ),
            bytes_received: counter_vec(
                r,
                "bytes_received_total",
                "Bytes received from peers",
                &["transport"],
            ),
            bytes_sent: counter_vec(r, "bytes_sent_total", "Bytes sent to peers", &["transport"]),
            rtsp_packets: counter_vec(
                r,
                "rtsp_packets_total",
                "RTP packets of RTSP publishes, by outcome",
                &["outcome"],
            ),
            rtsp_requests: counter_vec(
                r,
                "rtsp_requests_total",
                "RTSP requests answered, by method and status code",
                &["method", "status"],
            ),
        }
    }
}

impl ConnectionSeries {
    /// Counts a connection accepted on `transport` (`rtmp`, `rtmps`); it stays in
    /// `connections_active` for as long as the guard lives.
    pub fn opened(&self, transport: &str) -> GaugeGuard {
        self.connections_total.with_label_values(&[transport]).inc();
        GaugeGuard::new(self.connections_active.with_label_values(&[transport]))
    }
}

/// The `action` label of `publish_abuse_total`.
pub mod abuse_action {
    /// The attempt was delayed, then decided as usual.
    pub const SLOWED: &str = "slowed";
    /// The attempt was refused at once: its address is banned.
    pub const REFUSED: &str = "refused";
}

/// The counters of the publish abuse guard, the same on every node
/// ([`crate::abuse_gate`]). Its gauges (`publish_abuse_banned`, `publish_abuse_tracked`)
/// and `publish_abuse_evictions_total` are read from the guard at scrape time, by the
/// collector [`crate::abuse_gate::AbuseGate::collector`] gives.
#[derive(Clone)]
pub struct AbuseSeries {
    /// `publish_abuse_total{action="slowed"|"refused"}`: attempts the guard acted on.
    pub actions: IntCounterVec,
    /// `publish_abuse_bans_total`: addresses (IPv6: /64s) banned.
    pub bans: IntCounter,
}

impl AbuseSeries {
    pub fn new(r: &Registry) -> Self {
        let actions = counter_vec(
            r,
            "publish_abuse_total",
            "Publish attempts the abuse guard slowed (delayed, then decided) or refused (address banned)",
            &["action"],
        );
        // Present at 0 from the start, so rate() and alerts work before the first one.
        for action in [abuse_action::SLOWED, abuse_action::REFUSED] {
            actions.with_label_values(&[action]);
        }
        Self {
            actions,
            bans: counter(
                r,
                "publish_abuse_bans_total",
                "Addresses (IPv6: /64s) banned for too many publishes refused for their credentials",
            ),
        }
    }
}

/// Streams (legs) that get per-stream series on one node, at most: the origin's health
/// series and the edge's relay series. An origin leg has 13 series and a rendition 4,
/// so 2,000 legs (1,000 renditions with both legs) make about 30,000: a scrape of a few
/// MB, within the 50,000-sample limit operators commonly set per target. Streams beyond
/// it are left out by name order and counted (`*_series_omitted`); the per-node series
/// still count every stream.
pub const STREAM_SERIES_LIMIT: usize = 2_000;

/// A gauge whose value is read when the registry is scraped (a figure kept elsewhere,
/// such as the bytes charged to a budget), so it is never stale.
pub struct ReadAtScrape {
    gauge: IntGauge,
    read: Box<dyn Fn() -> i64 + Send + Sync>,
}

impl ReadAtScrape {
    pub fn new(name: &str, help: &str, read: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        Self {
            gauge: IntGauge::new(name, help).expect("valid metric definition"),
            read: Box::new(read),
        }
    }
}

impl Collector for ReadAtScrape {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.gauge.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.gauge.set((self.read)());
        self.gauge.collect()
    }
}

/// Holds a gauge up by one for as long as it lives: a connection, player or publisher
/// counted this way is uncounted on every path out, early returns and panics included.
pub struct GaugeGuard(IntGauge);

impl GaugeGuard {
    pub fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_prefixed_and_labelled_with_the_node() {
        let r = node_registry("fra-1", "fra");
        let c = counter_vec(&r, "things_total", "Things", &["kind"]);
        c.with_label_values(&["a"]).inc();
        let text = render(&r);
        let line = text
            .lines()
            .find(|l| l.starts_with("longhaul_things_total{"))
            .expect("series rendered");
        for label in ["node=\"fra-1\"", "region=\"fra\"", "kind=\"a\""] {
            assert!(line.contains(label), "{label} missing in {line}");
        }
    }

    #[test]
    fn read_at_scrape_reads_when_rendered() {
        let r = node_registry("fra-1", "fra");
        let value = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(7));
        let read = value.clone();
        r.register(Box::new(ReadAtScrape::new(
            "held_bytes",
            "Held",
            move || read.load(std::sync::atomic::Ordering::Relaxed),
        )))
        .expect("registered");
        let line = |text: String| {
            text.lines()
                .find(|l| l.starts_with("longhaul_held_bytes{"))
                .map(str::to_owned)
                .expect("series rendered")
        };
        let first = line(render(&r));
        assert!(
            first.ends_with("} 7") && first.contains("node=\"fra-1\""),
            "{first}"
        );
        value.store(9, std::sync::atomic::Ordering::Relaxed);
        assert!(line(render(&r)).ends_with("} 9"));
    }

    #[test]
    fn gauge_guard_counts_while_alive() {
        let g = IntGauge::new("g", "g").expect("valid");
        {
            let _a = GaugeGuard::new(g.clone());
            let _b = GaugeGuard::new(g.clone());
            assert_eq!(g.get(), 2);
        }
        assert_eq!(g.get(), 0);
    }
}
