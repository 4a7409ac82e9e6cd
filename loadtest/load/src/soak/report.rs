//! What a soak saw: the honest sessions' frames (offered, received, lost), the lurkers,
//! the hostile clients' tallies, and per node its memory over time and the bounds it
//! hit; a text summary for stdout and the whole as JSON.
//!
//! A soak runs thousands of sessions, so it keeps their sums ([`Sessions`]), not a row
//! each: a session's figures are added as it ends and its frame records dropped.

use super::config::SoakSettings;
use super::hostile::{Kind, TallyReport};
use super::watch::Sample;
use crate::report::Outcome;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Distinct session errors kept (with their counts); more go under "(other errors)".
const ERRORS_KEPT: usize = 50;

/// The honest sessions, summed.
///
/// Frames are counted over the sessions whose media started. A session that failed
/// before (a refused publish, a player that never attached) is counted in
/// `failed_before_media` and not in the frames: a load run counts such a stream's whole
/// plan as offered and lost because the stream would have taken the whole run, but a
/// soak's slot tries again within seconds, so that plan was never due.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sessions {
    pub sessions: u64,
    /// Sessions that ended with an error (a refused publish, a player that never
    /// attached, a broken connection).
    pub failed: u64,
    /// Of those, the ones that failed before their media started.
    pub failed_before_media: u64,
    /// Frames the encoders produced (offered) in sessions whose media started, as in a
    /// load run's `frames_sent`: frames held back in the publisher and those of a
    /// connection that broke count as offered.
    pub frames_offered: u64,
    /// Of those, frames held back in the publisher past their session's stop.
    pub frames_unsent: u64,
    pub frames_received: u64,
    pub frames_lost: u64,
    pub frames_duplicated: u64,
    pub frames_out_of_order: u64,
    /// Received later than `--late`.
    pub frames_late: u64,
    pub stalls: u64,
    /// Error texts (addresses and names left in) and how often each came.
    pub errors: BTreeMap<String, u64>,
}

impl Sessions {
    /// Adds one ended session.
    pub fn add(&mut self, o: &Outcome) {
        let f = &o.figures;
        self.sessions += 1;
        if let Some(e) = &o.error {
            self.failed += 1;
            let text = format!("{}: {e}", o.name);
            if self.errors.len() < ERRORS_KEPT || self.errors.contains_key(&text) {
                *self.errors.entry(text).or_default() += 1;
            } else {
                *self.errors.entry("(other errors)".into()).or_default() += 1;
            }
            if f.sent.unsent == f.sent.frames && f.received == 0 {
                self.failed_before_media += 1;
                return;
            }
        }
        self.frames_offered += f.sent.frames;
        self.frames_unsent += f.sent.unsent;
        self.frames_received += f.received;
        self.frames_lost += f.lost;
        self.frames_duplicated += f.duplicated;
        self.frames_out_of_order += f.out_of_order;
        self.frames_late += f.late;
        self.stalls += f.stalls;
    }
}

/// The lurking players, summed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Lurking {
    /// Times a lurker attached to a live stream.
    pub attached: u64,
    /// Times the stream it picked was not live (between sessions): it picked another.
    pub not_live: u64,
    /// Messages lurkers received.
    pub messages: u64,
    /// Times the stream ended while a lurker watched.
    pub ended: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Lurking {
    pub(crate) fn error(&mut self, e: String) {
        if self.errors.len() < ERRORS_KEPT || self.errors.contains_key(&e) {
            *self.errors.entry(e).or_default() += 1;
        } else {
            *self.errors.entry("(other errors)".into()).or_default() += 1;
        }
    }
}

/// One point of the timeline: the nodes' RSS and the sessions then.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tick {
    /// Seconds since the soak started.
    pub t: f64,
    /// `load` while publishers come and go, `settle` after.
    pub phase: &'static str,
    /// Per node, in `--node` order; `None` once a process is gone.
    pub rss_kib: Vec<Option<u64>>,
    pub sessions_live: u64,
    pub sessions_done: u64,
    pub sessions_failed: u64,
    pub frames_lost: u64,
}

impl Tick {
    /// `t=  60s load   edge 31.2 MB  origin 25.0 MB  sessions live 300 done 412 failed 0  frames lost 0`.
    pub fn line(&self, names: &[String]) -> String {
        let mut s = format!("t={:>5.0}s {:<6}", self.t, self.phase);
        for (name, rss) in names.iter().zip(&self.rss_kib) {
            match rss {
                Some(kib) => write!(s, "  {name} {:.1} MB", *kib as f64 / 1024.0),
                None => write!(s, "  {name} gone"),
            }
            .ok();
        }
        write!(
            s,
            "  sessions live {} done {} failed {}  frames lost {}",
            self.sessions_live, self.sessions_done, self.sessions_failed, self.frames_lost
        )
        .ok();
        s
    }
}

/// One node's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeReport {
    pub name: String,
    pub pid: u32,
    /// Before the load.
    pub rss_start_kib: Option<u64>,
    /// The largest of the samples.
    pub rss_peak_kib: Option<u64>,
    /// When the load stopped (every session, lurker and hostile client done).
    pub rss_load_stop_kib: Option<u64>,
    /// After --settle.
    pub rss_end_kib: Option<u64>,
    /// The process's own peak (`VmHWM`) at the end: the true peak, between samples too.
    pub hwm_end_kib: Option<u64>,
    /// How much each bound and refusal counter grew over the soak (non-zero ones).
    pub bounds: BTreeMap<String, f64>,
    /// The bound counter families the node has that did not grow at all.
    pub unchanged: Vec<String>,
    /// Connections, publishers and players still open at the end (non-zero ones).
    pub open_at_end: BTreeMap<String, f64>,
    /// Samples whose /metrics did not answer, and the last reason.
    pub scrape_failures: u64,
    pub last_scrape_error: Option<String>,
}

impl NodeReport {
    /// From the node's samples: first (before the load), at the load's stop, last.
    pub fn new(
        name: &str,
        pid: u32,
        samples: &[Sample],
        at_stop: &Sample,
        hwm_end_kib: Option<u64>,
    ) -> Self {
        let first = samples.first().cloned().unwrap_or_default();
        let last = samples.last().cloned().unwrap_or_default();
        let mut bounds = BTreeMap::new();
        for (key, end) in &last.series {
            if !super::watch::BOUND_COUNTERS
                .iter()
                .any(|f| key.split('{').next() == Some(f))
            {
                continue;
            }
            let grew = end - first.series.get(key).copied().unwrap_or(0.0);
            if grew != 0.0 {
                bounds.insert(key.clone(), grew);
            }
        }
        let unchanged = super::watch::BOUND_COUNTERS
            .iter()
            .filter(|f| {
                let family = |k: &String| k.split('{').next() == Some(**f);
                last.series.keys().any(family) && !bounds.keys().any(family)
            })
            .map(|f| f.to_string())
            .collect();
        let open_at_end = last
            .series
            .iter()
            .filter(|(k, v)| {
                **v != 0.0
                    && super::watch::OPEN_GAUGES
                        .iter()
                        .any(|f| k.split('{').next() == Some(f))
            })
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let failures: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.scrape_error.is_some())
            .collect();
        Self {
            name: name.to_string(),
            pid,
            rss_start_kib: first.rss_kib,
            rss_peak_kib: samples
                .iter()
                .chain(std::iter::once(at_stop))
                .filter_map(|s| s.rss_kib)
                .max(),
            rss_load_stop_kib: at_stop.rss_kib,
            rss_end_kib: last.rss_kib,
            hwm_end_kib,
            bounds,
            unchanged,
            open_at_end,
            scrape_failures: failures.len() as u64,
            last_scrape_error: failures.last().and_then(|s| s.scrape_error.clone()),
        }
    }
}

/// The whole soak.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SoakReport {
    pub settings: SoakSettings,
    /// Seconds from the start to the load's stop (sessions, lurkers, hostile clients all
    /// done), and to the end.
    pub load_secs: f64,
    pub total_secs: f64,
    pub sessions: Sessions,
    pub lurking: Lurking,
    pub hostile: BTreeMap<&'static str, TallyReport>,
    pub nodes: Vec<NodeReport>,
    pub timeline: Vec<Tick>,
}

fn mb(kib: Option<u64>) -> String {
    kib.map_or("-".into(), |k| format!("{:.1} MB", k as f64 / 1024.0))
}

impl SoakReport {
    /// The summary for stdout.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let s = &self.sessions;
        let w = &mut out;
        writeln!(
            w,
            "sessions {}  failed {} ({} before their media)  frames offered {}  received {}  lost {}  duplicated {}  unsent {}  late {}  stalls {}",
            s.sessions,
            s.failed,
            s.failed_before_media,
            s.frames_offered,
            s.frames_received,
            s.frames_lost,
            s.frames_duplicated,
            s.frames_unsent,
            s.frames_late,
            s.stalls
        )
        .ok();
        let l = &self.lurking;
        writeln!(
            w,
            "lurkers: attached {}  not live {}  messages {}  streams ended under them {}  errors {}",
            l.attached,
            l.not_live,
            l.messages,
            l.ended,
            l.errors.values().sum::<u64>()
        )
        .ok();
        writeln!(
            w,
            "{:<10} {:>8} {:>8} {:>6} {:>11} {:>7} {:>12} {:>12}",
            "hostile", "attempts", "stopped", "held", "not stopped", "failed", "longest", "bytes"
        )
        .ok();
        for kind in Kind::ALL {
            if let Some(t) = self.hostile.get(kind.as_str()) {
                writeln!(
                    w,
                    "{:<10} {:>8} {:>8} {:>6} {:>11} {:>7} {:>9} ms {:>12}",
                    kind.as_str(),
                    t.attempts,
                    t.stopped,
                    t.held,
                    t.not_stopped,
                    t.failed,
                    t.longest_ms,
                    t.bytes
                )
                .ok();
            }
        }
        writeln!(
            w,
            "{:<10} {:>10} {:>14} {:>12} {:>14} {:>10}",
            "node", "RSS start", "peak (sampled)", "peak (HWM)", "at load stop", "end"
        )
        .ok();
        for n in &self.nodes {
            writeln!(
                w,
                "{:<10} {:>10} {:>14} {:>12} {:>14} {:>10}",
                n.name,
                mb(n.rss_start_kib),
                mb(n.rss_peak_kib),
                mb(n.hwm_end_kib),
                mb(n.rss_load_stop_kib),
                mb(n.rss_end_kib)
            )
            .ok();
        }
        for n in &self.nodes {
            for (series, grew) in &n.bounds {
                writeln!(w, "  {} {series} +{grew}", n.name).ok();
            }
            if !n.unchanged.is_empty() {
                writeln!(w, "  {} did not grow: {}", n.name, n.unchanged.join(", ")).ok();
            }
            for (series, open) in &n.open_at_end {
                writeln!(w, "  {} still open at the end: {series} {open}", n.name).ok();
            }
            if n.scrape_failures > 0 {
                writeln!(
                    w,
                    "  {} /metrics failed {} times: {}",
                    n.name,
                    n.scrape_failures,
                    n.last_scrape_error.as_deref().unwrap_or("")
                )
                .ok();
            }
        }
        out
    }

    /// Writes the report as JSON.
    pub fn write_json(&self, path: &std::path::Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| format!("JSON: {e}"))?;
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(rss: u64, series: &[(&str, f64)]) -> Sample {
        Sample {
            rss_kib: Some(rss),
            series: series.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            scrape_error: None,
        }
    }

    #[test]
    fn sessions_failed_before_their_media_offer_no_frames() {
        use crate::measure::{Figures, Sent};
        let outcome = |sent: Sent, received: u64, error: Option<&str>| Outcome {
            region: 0,
            name: "1_abcd_1".into(),
            setup: None,
            figures: Figures {
                sent,
                received,
                lost: sent.frames - received,
                ..Figures::default()
            },
            error: error.map(str::to_string),
            viewers: Default::default(),
        };
        let plan = |frames, unsent| Sent {
            frames,
            unsent,
            ..Sent::default()
        };
        let mut s = Sessions::default();
        s.add(&outcome(plan(100, 0), 100, None));
        s.add(&outcome(plan(100, 100), 0, Some("publish refused: no")));
        s.add(&outcome(plan(100, 60), 40, Some("publisher: broken pipe")));
        assert_eq!((s.sessions, s.failed, s.failed_before_media), (3, 2, 1));
        assert_eq!(
            (
                s.frames_offered,
                s.frames_received,
                s.frames_lost,
                s.frames_unsent
            ),
            (200, 140, 60, 60)
        );
        assert_eq!(s.errors.len(), 2);
    }

    #[test]
    fn a_nodes_growth_and_what_is_left_open() {
        let refused = "longhaul_connections_refused_total{reason=\"too_many_connections\"}";
        let samples = [
            sample(
                20_000,
                &[
                    (refused, 2.0),
                    ("longhaul_relay_pauses_total", 0.0),
                    ("longhaul_connections_active", 0.0),
                ],
            ),
            sample(
                90_000,
                &[
                    (refused, 5.0),
                    ("longhaul_relay_pauses_total", 7.0),
                    ("longhaul_connections_active", 300.0),
                ],
            ),
            Sample {
                scrape_error: Some("no answer".into()),
                ..sample(40_000, &[])
            },
            sample(
                25_000,
                &[
                    (refused, 9.0),
                    ("longhaul_relay_pauses_total", 7.0),
                    ("longhaul_connections_active", 1.0),
                    ("longhaul_session_errors_total{kind=\"timeout\"}", 50.0),
                ],
            ),
        ];
        let n = NodeReport::new("edge", 1, &samples, &samples[2], Some(95_000));
        assert_eq!(
            (
                n.rss_start_kib,
                n.rss_peak_kib,
                n.rss_load_stop_kib,
                n.rss_end_kib
            ),
            (Some(20_000), Some(90_000), Some(40_000), Some(25_000))
        );
        let bounds: Vec<(&str, f64)> = n.bounds.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            bounds,
            vec![
                (refused, 7.0),
                ("longhaul_relay_pauses_total", 7.0),
                ("longhaul_session_errors_total{kind=\"timeout\"}", 50.0),
            ]
        );
        assert_eq!(
            n.open_at_end.get("longhaul_connections_active").copied(),
            Some(1.0)
        );
        assert_eq!(n.scrape_failures, 1);
        assert!(n.unchanged.is_empty(), "{:?}", n.unchanged);
        let quiet = NodeReport::new("edge", 1, &samples[..2], &samples[1], None);
        assert_eq!(quiet.bounds.len(), 2);
        let idle = [samples[0].clone(), samples[0].clone()];
        let n = NodeReport::new("edge", 1, &idle, &idle[1], None);
        assert_eq!(
            n.unchanged,
            [
                "longhaul_connections_refused_total",
                "longhaul_relay_pauses_total"
            ]
        );
    }
}
