//! The run's report: one row per stream, aggregates per region and in total, the
//! summary table for stdout and the JSON for `--json`.
//!
//! Aggregates sum the counts and rates of their streams; latency percentiles are over
//! all frames of all their streams, lost ones counted as infinitely late ("n/d" when a
//! percentile lands on one), not an average of per-stream percentiles; setup
//! percentiles over the publishers that published. Shares are of bytes (delivered) or
//! frames sent (within 1 s / 3 s).

use crate::config::Settings;
use crate::measure::{percentile, percentile_ms, Figures};
use crate::viewer::ViewerFigures;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// The keys every stream object of `--json` carries: what scripts may rely on
/// (`loadtest/*.py` read them). The tests check the JSON against this list.
pub const STREAM_KEYS: &[&str] = &[
    "region",
    "name",
    "publish_setup_ms",
    "offered_kbps",
    "delivered_kbps",
    "delivered_share",
    "frames_sent",
    "frames_unsent",
    "frames_received",
    "frames_lost",
    "frames_duplicated",
    "frames_out_of_order",
    "frames_within_1s",
    "frames_within_3s",
    "frames_late",
    "latency_ms",
    "video_latency_ms",
    "stalls",
    "stall_ms",
    "error",
];

/// The keys of `total` and of every region object of `--json`.
pub const AGGREGATE_KEYS: &[&str] = &[
    "publishers",
    "publishers_failed",
    "publish_setup_ms",
    "offered_kbps",
    "delivered_kbps",
    "delivered_share",
    "frames_sent",
    "frames_unsent",
    "frames_received",
    "frames_lost",
    "frames_duplicated",
    "frames_out_of_order",
    "frames_within_1s",
    "frames_within_3s",
    "frames_late",
    "within_1s_share",
    "within_3s_share",
    "latency_ms",
    "video_latency_ms",
    "stalls",
    "stall_ms",
];

/// One stream's outcome, as the run hands it over.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub region: usize,
    pub name: String,
    pub setup: Option<Duration>,
    pub figures: Figures,
    pub error: Option<String>,
    /// The stream's counting viewers (`--viewers`), if any.
    pub viewers: ViewerFigures,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

impl Latency {
    /// Over the received frames' latencies and `lost` frames that never arrived
    /// (infinitely late: a percentile landing on one is `None`, shown "n/d").
    fn of(sorted_us: &[u32], lost: u64) -> Self {
        Self {
            p50: percentile_ms(sorted_us, lost, 0.5),
            p90: percentile_ms(sorted_us, lost, 0.9),
            p99: percentile_ms(sorted_us, lost, 0.99),
            max: percentile_ms(sorted_us, lost, 1.0),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Setup {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// One stream's row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamReport {
    pub region: String,
    pub name: String,
    pub publish_setup_ms: Option<f64>,
    pub offered_kbps: f64,
    pub delivered_kbps: f64,
    /// Payload bytes received / offered (0 when nothing was offered).
    pub delivered_share: f64,
    /// Frames the encoder produced within the duration (offered).
    pub frames_sent: u64,
    /// Of those, frames the path held back in the publisher past the stop time.
    pub frames_unsent: u64,
    pub frames_received: u64,
    pub frames_lost: u64,
    pub frames_duplicated: u64,
    pub frames_out_of_order: u64,
    pub frames_within_1s: u64,
    pub frames_within_3s: u64,
    /// Received later than `--late`.
    pub frames_late: u64,
    pub latency_ms: Latency,
    /// Video frames only.
    pub video_latency_ms: Latency,
    pub stalls: u64,
    pub stall_ms: f64,
    pub error: Option<String>,
}

/// A region's or the whole run's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Aggregate {
    pub publishers: u64,
    /// Streams that ended with an error (a refused or failed publish, a player that
    /// never attached, a broken connection).
    pub publishers_failed: u64,
    pub publish_setup_ms: Setup,
    pub offered_kbps: f64,
    pub delivered_kbps: f64,
    pub delivered_share: f64,
    pub frames_sent: u64,
    pub frames_unsent: u64,
    pub frames_received: u64,
    pub frames_lost: u64,
    pub frames_duplicated: u64,
    pub frames_out_of_order: u64,
    pub frames_within_1s: u64,
    pub frames_within_3s: u64,
    pub frames_late: u64,
    /// `frames_within_1s / frames_sent` (0 when nothing was sent).
    pub within_1s_share: f64,
    pub within_3s_share: f64,
    pub latency_ms: Latency,
    /// Video frames only.
    pub video_latency_ms: Latency,
    pub stalls: u64,
    pub stall_ms: f64,
    /// Counting viewers (`--viewers`) in all, and those that never attached or broke.
    pub viewers: u64,
    pub viewers_failed: u64,
    /// What they received together, kbit/s over the media's duration.
    pub viewer_kbps: f64,
    /// The least any viewer got of its stream's sent bytes (1.0 when there were none).
    pub viewers_min_share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionReport {
    pub region: String,
    #[serde(flatten)]
    pub figures: Aggregate,
}

/// The whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub total: Aggregate,
    pub regions: Vec<RegionReport>,
    pub streams: Vec<StreamReport>,
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn kbps(bytes: u64, over: Duration) -> f64 {
    let secs = over.as_secs_f64();
    if secs > 0.0 {
        bytes as f64 * 8.0 / 1e3 / secs
    } else {
        0.0
    }
}

fn stream_report(o: &Outcome, region: &str, media: Duration) -> StreamReport {
    let f = &o.figures;
    StreamReport {
        region: region.to_string(),
        name: o.name.clone(),
        publish_setup_ms: o.setup.map(|d| d.as_secs_f64() * 1e3),
        offered_kbps: kbps(f.sent.bytes, media),
        delivered_kbps: kbps(f.received_bytes, media),
        delivered_share: share(f.received_bytes, f.sent.bytes),
        frames_sent: f.sent.frames,
        frames_unsent: f.sent.unsent,
        frames_received: f.received,
        frames_lost: f.lost,
        frames_duplicated: f.duplicated,
        frames_out_of_order: f.out_of_order,
        frames_within_1s: f.within_1s,
        frames_within_3s: f.within_3s,
        frames_late: f.late,
        latency_ms: Latency::of(&f.latencies_us, f.lost),
        video_latency_ms: Latency::of(&f.video_latencies_us, f.video_lost()),
        stalls: f.stalls,
        stall_ms: f.stall_us as f64 / 1e3,
        error: o.error.clone(),
    }
}

fn aggregate<'a>(outcomes: impl Iterator<Item = &'a Outcome>, media: Duration) -> Aggregate {
    let mut a = Aggregate::default();
    let (mut sent_bytes, mut received_bytes, mut stall_us) = (0u64, 0u64, 0u64);
    let mut setups = Vec::new();
    let mut latencies = Vec::new();
    let mut video_latencies = Vec::new();
    let mut video_lost = 0u64;
    let mut viewer_bytes = 0u64;
    a.viewers_min_share = 1.0;
    for o in outcomes {
        a.viewers += o.viewers.viewers;
        a.viewers_failed += o.viewers.failed;
        viewer_bytes += o.viewers.bytes;
        if o.viewers.viewers > 0 {
            a.viewers_min_share = a.viewers_min_share.min(o.viewers.min_share);
        }
        let f = &o.figures;
        a.publishers += 1;
        a.publishers_failed += u64::from(o.error.is_some());
        setups.extend(o.setup.map(|d| d.as_secs_f64() * 1e3));
        sent_bytes += f.sent.bytes;
        received_bytes += f.received_bytes;
        a.frames_sent += f.sent.frames;
        a.frames_unsent += f.sent.unsent;
        a.frames_received += f.received;
        a.frames_lost += f.lost;
        a.frames_duplicated += f.duplicated;
        a.frames_out_of_order += f.out_of_order;
        a.frames_within_1s += f.within_1s;
        a.frames_within_3s += f.within_3s;
        a.frames_late += f.late;
        a.stalls += f.stalls;
        stall_us += f.stall_us;
        latencies.extend_from_slice(&f.latencies_us);
        video_latencies.extend_from_slice(&f.video_latencies_us);
        video_lost += f.video_lost();
    }
    setups.sort_by(f64::total_cmp);
    latencies.sort_unstable();
    a.publish_setup_ms = Setup {
        p50: percentile(&setups, 0, 0.5),
        p99: percentile(&setups, 0, 0.99),
    };
    a.offered_kbps = kbps(sent_bytes, media);
    a.delivered_kbps = kbps(received_bytes, media);
    a.delivered_share = share(received_bytes, sent_bytes);
    a.within_1s_share = share(a.frames_within_1s, a.frames_sent);
    a.within_3s_share = share(a.frames_within_3s, a.frames_sent);
    a.latency_ms = Latency::of(&latencies, a.frames_lost);
    video_latencies.sort_unstable();
    a.video_latency_ms = Latency::of(&video_latencies, video_lost);
    a.stall_ms = stall_us as f64 / 1e3;
    a.viewer_kbps = kbps(viewer_bytes, media);
    a
}

impl Report {
    /// The report of `outcomes` (any order; streams are listed by region, then name).
    pub fn new(settings: Settings, mut outcomes: Vec<Outcome>) -> Self {
        outcomes.sort_by(|a, b| (a.region, &a.name).cmp(&(b.region, &b.name)));
        let media = settings.duration;
        let name_of = |i: usize| settings.regions.get(i).map_or("?", |r| r.name.as_str());
        let regions = (0..settings.regions.len())
            .map(|i| RegionReport {
                region: name_of(i).to_string(),
                figures: aggregate(outcomes.iter().filter(|o| o.region == i), media),
            })
            .collect();
        let streams = outcomes
            .iter()
            .map(|o| stream_report(o, name_of(o.region), media))
            .collect();
        let total = aggregate(outcomes.iter(), media);
        Self {
            settings,
            total,
            regions,
            streams,
        }
    }

    /// The summary table: a row per region and the total.
    pub fn table(&self) -> String {
        const HEAD: [&str; 13] = [
            "region",
            "ok",
            "failed",
            "setup p50",
            "setup p99",
            "delivered",
            "<=1s",
            "<=3s",
            "lost",
            "dup",
            "lat p50",
            "lat p99",
            "stalls",
        ];
        let row = |name: &str, a: &Aggregate| -> [String; 13] {
            let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0} ms"));
            let pct = |v: f64| format!("{:.1}%", v * 100.0);
            [
                name.to_string(),
                (a.publishers - a.publishers_failed).to_string(),
                a.publishers_failed.to_string(),
                ms(a.publish_setup_ms.p50),
                ms(a.publish_setup_ms.p99),
                pct(a.delivered_share),
                pct(a.within_1s_share),
                pct(a.within_3s_share),
                a.frames_lost.to_string(),
                a.frames_duplicated.to_string(),
                ms(a.latency_ms.p50),
                ms(a.latency_ms.p99),
                a.stalls.to_string(),
            ]
        };
        let mut rows: Vec<[String; 13]> = vec![HEAD.map(str::to_string)];
        rows.extend(self.regions.iter().map(|r| row(&r.region, &r.figures)));
        rows.push(row("total", &self.total));
        let mut widths = [0usize; 13];
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.len());
            }
        }
        let mut out = String::new();
        for (i, r) in rows.iter().enumerate() {
            if i == rows.len() - 1 {
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                let _ = writeln!(out, "{}", rule.join("  "));
            }
            let cells: Vec<String> = r
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(c, (cell, w))| {
                    if c == 0 {
                        format!("{cell:<w$}")
                    } else {
                        format!("{cell:>w$}")
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", cells.join("  ").trim_end());
        }
        out
    }

    /// Writes the report as pretty JSON to `path`.
    pub fn write_json(&self, path: &std::path::Path) -> Result<(), String> {
        let json =
            serde_json::to_vec_pretty(self).map_err(|e| format!("encoding the report: {e}"))?;
        std::fs::write(path, json).map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// The streams that ended with an error, `region name: error`, one a line.
    pub fn errors(&self) -> Vec<String> {
        self.streams
            .iter()
            .filter_map(|s| {
                s.error
                    .as_ref()
                    .map(|e| format!("{} {}: {e}", s.region, s.name))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::{Meter, Sent};
    use crate::stamp::Stamp;

    fn settings() -> Settings {
        Settings::from_args([
            "longhaul-load",
            "--region",
            "a=rtmp://h:1/kLive",
            "--region",
            "b=rtmp://h:2/kLive",
            "--play",
            "rtmp://o:1/kLive",
            "--api",
            "http://o:8081",
            "--duration",
            "10s",
        ])
        .unwrap()
    }

    /// A stream of `frames` 1,000-byte frames whose frames arrive `latencies` ms late
    /// (first `latencies.len()` frames only).
    fn outcome(region: usize, name: &str, frames: u64, latencies: &[u64]) -> Outcome {
        let mut m = Meter::new(Duration::from_secs(1));
        for (seq, ms) in latencies.iter().enumerate() {
            let s = Stamp {
                stream: 0,
                seq: seq as u32,
                sent_us: 1_000_000 + seq as u64 * 40_000,
            };
            m.arrival(s, true, 1000, s.sent_us + ms * 1000);
        }
        Outcome {
            region,
            name: name.into(),
            setup: Some(Duration::from_millis(10 + region as u64)),
            figures: m.finish(Sent {
                frames,
                bytes: frames * 1000,
                unsent: 0,
                ..Sent::default()
            }),
            error: None,
            viewers: Default::default(),
        }
    }

    #[test]
    fn frames_held_back_in_the_publisher_are_offered_and_lost_not_an_error() {
        let mut o = outcome(0, "x", 6, &[10, 20]);
        o.figures = {
            let mut m = Meter::new(Duration::from_secs(1));
            for seq in 0..2u32 {
                let s = Stamp {
                    stream: 0,
                    seq,
                    sent_us: 1_000_000,
                };
                m.arrival(s, true, 1000, s.sent_us + 10_000);
            }
            // Six frames due; the path let two out, four never left the publisher.
            m.finish(Sent {
                frames: 6,
                bytes: 6_000,
                unsent: 4,
                ..Sent::default()
            })
        };
        let r = Report::new(settings(), vec![o]);
        let t = &r.total;
        assert_eq!((t.frames_sent, t.frames_unsent, t.frames_lost), (6, 4, 4));
        assert_eq!(t.delivered_share, 2.0 / 6.0);
        assert_eq!(t.within_1s_share, 2.0 / 6.0);
        assert_eq!(t.publishers_failed, 0);
        assert!((t.offered_kbps - 4.8).abs() < 1e-9, "{}", t.offered_kbps);
    }

    #[test]
    fn regions_and_total_add_up() {
        let mut failed = outcome(1, "z", 0, &[]);
        failed.setup = None;
        failed.error = Some("publish refused: NetStream.Publish.BadName: bad token".into());
        let outcomes = vec![
            outcome(0, "x", 4, &[10, 20, 30, 40]),
            outcome(0, "y", 4, &[50, 2000]),
            outcome(1, "w", 2, &[100, 100]),
            failed,
        ];
        let r = Report::new(settings(), outcomes);
        let (a, b, t) = (&r.regions[0].figures, &r.regions[1].figures, &r.total);
        assert_eq!((a.publishers, a.publishers_failed), (2, 0));
        assert_eq!((b.publishers, b.publishers_failed), (2, 1));
        assert_eq!((a.frames_sent, a.frames_received, a.frames_lost), (8, 6, 2));
        assert_eq!(a.frames_within_1s, 5);
        assert_eq!(a.within_1s_share, 5.0 / 8.0);
        assert_eq!(a.delivered_share, 6.0 / 8.0);
        // 8,000 bytes over 10 s: 6.4 kbit/s offered.
        assert!((a.offered_kbps - 6.4).abs() < 1e-9);
        // Latencies 10 20 30 40 50 2000 and two lost (infinitely late): the median is
        // the 4th of 8, the max was never delivered.
        assert_eq!(a.latency_ms.p50, Some(40.0));
        assert_eq!(a.latency_ms.p90, None);
        assert_eq!(a.latency_ms.max, None);
        assert_eq!(t.frames_sent, a.frames_sent + b.frames_sent);
        assert_eq!(t.publishers, 4);
        assert_eq!(t.publish_setup_ms.p99, Some(11.0));
        assert_eq!(r.streams.len(), 4);
        assert_eq!(r.streams[3].publish_setup_ms, None);
        assert_eq!(r.errors().len(), 1);
        let table = r.table();
        assert_eq!(table.lines().count(), 5, "{table}");
        assert!(
            table.lines().last().unwrap().starts_with("total"),
            "{table}"
        );
    }

    #[test]
    fn json_has_the_documented_shape() {
        let r = Report::new(settings(), vec![outcome(0, "x", 2, &[10, 20])]);
        let v = serde_json::to_value(&r).unwrap();
        for key in ["settings", "total", "regions", "streams"] {
            assert!(v.get(key).is_some(), "{key}");
        }
        let s = &v["streams"][0];
        for key in STREAM_KEYS {
            assert!(s.get(key).is_some(), "stream {key}");
        }
        assert!(s["latency_ms"]["p90"].is_number());
        let region = &v["regions"][0];
        assert_eq!(region["region"], "a");
        for key in AGGREGATE_KEYS {
            assert!(region.get(key).is_some(), "region {key}");
            assert!(v["total"].get(key).is_some(), "total {key}");
        }
        // A region with no frames: nulls, not zeros.
        assert!(v["regions"][1]["latency_ms"]["p50"].is_null());
        assert_eq!(v["settings"]["duration"], 10.0);
    }
}
