//! Per-stream relay series, read from the relayed streams at scrape time: which of an
//! edge's streams is backing up behind its tunnel (queue depth), pausing its encoder, or
//! losing media, where the node-level `relay_*` series only say that some stream is.
//! Nothing is kept between scrapes: an ended stream's series are gone at the next one.
//!
//! Labels: `entry`, `rendition` (from `{entryId}_{n}`), `leg` (`primary`, `backup`),
//! and on `relay_stream_info` only, `origin` (where the stream goes now). At most
//! `longhaul_node::metrics::STREAM_SERIES_LIMIT` (2,000) streams get series, the first
//! by name; the rest are counted in `relay_stream_series_omitted`.
//!
//! | series | what |
//! |---|---|
//! | `relay_stream_info{..., origin}` | 1 per relayed stream |
//! | `relay_stream_queued_bytes` | payload bytes waiting for the tunnel |
//! | `relay_stream_queued_messages` | messages waiting for the tunnel |
//! | `relay_stream_paused` | 1 while reading the encoder is paused (queue full) |
//! | `relay_stream_pauses_total` | times reading paused |
//! | `relay_stream_paused_seconds_total` | time spent paused |
//! | `relay_stream_drops_total{unit}` | media dropped from the queue: `gops`, `messages`, `bytes` |

use std::time::Instant;

use longhaul_endpoint::stream_parts;
use longhaul_node::metrics::STREAM_SERIES_LIMIT;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{CounterVec, IntCounterVec, IntGauge, IntGaugeVec, Opts};

use crate::state::{EdgeState, RelayedStream};

const LABELS: &[&str] = &["entry", "rendition", "leg"];

struct Families {
    info: IntGaugeVec,
    queued_bytes: IntGaugeVec,
    queued_messages: IntGaugeVec,
    paused: IntGaugeVec,
    pauses: IntCounterVec,
    paused_seconds: CounterVec,
    drops: IntCounterVec,
    omitted: IntGauge,
}

impl Families {
    fn new() -> Families {
        // Constant names and labels: building them cannot fail.
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        Families {
            info: int_gauge(
                "relay_stream_info",
                "1 per stream relayed now, with the origin it goes to",
                &["entry", "rendition", "leg", "origin"],
            ),
            queued_bytes: int_gauge(
                "relay_stream_queued_bytes",
                "Payload bytes of the stream waiting for the tunnel",
                LABELS,
            ),
            queued_messages: int_gauge(
                "relay_stream_queued_messages",
                "Messages of the stream waiting for the tunnel",
                LABELS,
            ),
            paused: int_gauge(
                "relay_stream_paused",
                "1 while reading the stream's encoder is paused because its queue is full",
                LABELS,
            ),
            pauses: IntCounterVec::new(
                Opts::new(
                    "relay_stream_pauses_total",
                    "Times reading the stream's encoder paused",
                ),
                LABELS,
            )
            .expect("valid metric"),
            paused_seconds: CounterVec::new(
                Opts::new(
                    "relay_stream_paused_seconds_total",
                    "Time reading the stream's encoder was paused",
                ),
                LABELS,
            )
            .expect("valid metric"),
            drops: IntCounterVec::new(
                Opts::new(
                    "relay_stream_drops_total",
                    "Media of the stream dropped from its queue because the tunnel could not keep up, by unit (gops, messages, bytes)",
                ),
                &["entry", "rendition", "leg", "unit"],
            )
            .expect("valid metric"),
            omitted: IntGauge::with_opts(Opts::new(
                "relay_stream_series_omitted",
                "Relayed streams left out of the per-stream series for the limit (2,000)",
            ))
            .expect("valid metric"),
        }
    }

    fn collectors(&self) -> [&dyn Collector; 8] {
        [
            &self.info,
            &self.queued_bytes,
            &self.queued_messages,
            &self.paused,
            &self.pauses,
            &self.paused_seconds,
            &self.drops,
            &self.omitted,
        ]
    }

    fn stream(&self, relayed: &RelayedStream, now: Instant) {
        let (entry, rendition) = stream_parts(&relayed.name);
        let leg = relayed.leg.as_str();
        let labels = [entry.as_str(), rendition.as_str(), leg];
        let report = relayed.steer.report(now);
        self.info
            .with_label_values(&[&entry, &rendition, leg, &relayed.steer.origin()])
            .set(1);
        self.queued_bytes
            .with_label_values(&labels)
            .set(report.queued_bytes as i64);
        self.queued_messages
            .with_label_values(&labels)
            .set(report.queued_messages as i64);
        self.paused
            .with_label_values(&labels)
            .set(i64::from(report.paused));
        let t = report.totals;
        self.pauses.with_label_values(&labels).inc_by(t.pauses);
        self.paused_seconds
            .with_label_values(&labels)
            .inc_by(t.paused.as_secs_f64());
        for (unit, n) in [
            ("gops", t.dropped_gops),
            ("messages", t.dropped_messages),
            ("bytes", t.dropped_bytes),
        ] {
            self.drops
                .with_label_values(&[&entry, &rendition, leg, unit])
                .inc_by(n);
        }
    }
}

/// The per-stream relay series of one edge (see the module's table).
pub struct RelayStreamCollector {
    state: std::sync::Weak<EdgeState>,
    templates: Families,
}

impl RelayStreamCollector {
    pub fn new(state: &std::sync::Arc<EdgeState>) -> RelayStreamCollector {
        RelayStreamCollector {
            state: std::sync::Arc::downgrade(state),
            templates: Families::new(),
        }
    }
}

impl Collector for RelayStreamCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.templates
            .collectors()
            .into_iter()
            .flat_map(|c| c.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(state) = self.state.upgrade() else {
            return Vec::new();
        };
        let f = Families::new();
        let mut streams = state.relays.all();
        streams.sort_by(|a, b| (&a.name, a.leg).cmp(&(&b.name, b.leg)));
        f.omitted
            .set(streams.len().saturating_sub(STREAM_SERIES_LIMIT) as i64);
        streams.truncate(STREAM_SERIES_LIMIT);
        let now = Instant::now();
        for relayed in &streams {
            f.stream(relayed, now);
        }
        f.collectors()
            .into_iter()
            .flat_map(|c| c.collect())
            .collect()
    }
}
