//! The certificate watcher every node runs: looks at its TLS files every
//! `node.certificate_poll_ms` and at once on SIGHUP, logs what changed or why new files
//! were refused, and counts both.
//!
//! What may be reloaded and how is `longhaul_certs`'s (sans IO but for reading the
//! files); this is only the driver. The files are read off the async threads, on the
//! blocking pool: a certificate on a slow mount must not stall a connection.
//!
//! Series: `certificate_reloads_total{what, result="reloaded"|"refused"}`, and
//! `certificate_expiry_seconds{what}`, the Unix time the certificate in use stops being
//! valid (alert on `longhaul_certificate_expiry_seconds - time() < 14 * 86400`).

use crate::tasks::NodeTasks;
use longhaul_certs::{Outcome, Reload, UnixTime};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The `result` label of `certificate_reloads_total`.
pub mod result {
    /// New files are in use.
    pub const RELOADED: &str = "reloaded";
    /// New files were refused; the old ones stay in use.
    pub const REFUSED: &str = "refused";
}

/// The watcher's series.
#[derive(Clone)]
struct Series {
    reloads: IntCounterVec,
    expiry: IntGaugeVec,
}

impl Collector for Series {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.reloads.desc();
        d.extend(self.expiry.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut m = self.reloads.collect();
        m.extend(self.expiry.collect());
        m
    }
}

/// A node's certificate watcher, before it runs.
pub struct CertificateWatch {
    items: Vec<Arc<dyn Reload>>,
    series: Series,
    poll: Option<Duration>,
}

impl CertificateWatch {
    /// Watches `items`, looking every `poll` (never, if `None`: SIGHUP only).
    pub fn new(items: Vec<Arc<dyn Reload>>, poll: Option<Duration>) -> CertificateWatch {
        // Static definitions: building them cannot fail.
        let series = Series {
            reloads: IntCounterVec::new(
                Opts::new(
                    "certificate_reloads_total",
                    "Certificate and deny list files taken into use (reloaded) or refused while the node runs",
                ),
                &["what", "result"],
            )
            .expect("valid metric"),
            expiry: IntGaugeVec::new(
                Opts::new(
                    "certificate_expiry_seconds",
                    "Unix time the certificate in use stops being valid",
                ),
                &["what"],
            )
            .expect("valid metric"),
        };
        for item in &items {
            // Present at 0 from the start, so rate() and alerts work before the first.
            for r in [result::RELOADED, result::REFUSED] {
                series.reloads.with_label_values(&[item.what(), r]);
            }
        }
        let watch = CertificateWatch {
            items,
            series,
            poll,
        };
        watch.set_expiry();
        watch
    }

    /// The series, for the node's registry.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(self.series.clone())
    }

    /// Starts watching until the node stops. SIGHUP is taken from here on, even by a
    /// node with nothing to reload: `systemctl reload` must not end a node (SIGHUP's
    /// default action).
    pub fn spawn(mut self, tasks: &mut NodeTasks) {
        if self.items.is_empty() {
            self.poll = None;
        }
        let hangup = hangups();
        let shutdown = tasks.shutdown_token();
        tasks.spawn(self.run(hangup, shutdown));
    }

    fn set_expiry(&self) {
        for item in &self.items {
            if let Some(t) = item.not_after() {
                let t = i64::try_from(t).unwrap_or(i64::MAX);
                self.series.expiry.with_label_values(&[item.what()]).set(t);
            }
        }
    }

    async fn run(self, mut hangup: Option<Hangups>, shutdown: CancellationToken) {
        let mut tick = self.poll.map(|every| {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let forced = tokio::select! {
                _ = async { match &mut tick { Some(t) => { t.tick().await; } None => std::future::pending().await } } => false,
                _ = async { match &mut hangup { Some(h) => { h.recv().await; } None => std::future::pending().await } } => true,
                _ = shutdown.cancelled() => return,
            };
            if forced {
                tracing::info!("SIGHUP: reloading certificates");
            }
            let items = self.items.clone();
            let round = tokio::task::spawn_blocking(move || {
                let now = UnixTime::now();
                items
                    .iter()
                    .map(|i| (i.what(), i.reload(now, forced)))
                    .collect::<Vec<_>>()
            })
            .await;
            let outcomes = match round {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(error = %e, "certificate reload task failed");
                    continue;
                }
            };
            let mut changed = false;
            for (what, outcome) in outcomes {
                changed |= outcome.is_some();
                self.report(what, outcome);
            }
            if forced && !changed {
                tracing::info!("SIGHUP: no certificate or deny list file changed");
            }
            self.set_expiry();
        }
    }

    fn report(&self, what: &'static str, outcome: Option<Outcome>) {
        let count = |r| self.series.reloads.with_label_values(&[what, r]).inc();
        match outcome {
            None => {}
            Some(Outcome::Reloaded(detail)) => {
                count(result::RELOADED);
                tracing::info!(what, "certificate files reloaded: {detail}");
            }
            Some(Outcome::Refused(refusal)) => {
                count(result::REFUSED);
                tracing::warn!(what, file = %refusal.file.display(), reason = %refusal.reason,
                    "new certificate files refused, the ones in use stay: {refusal}");
            }
        }
    }
}

#[cfg(unix)]
type Hangups = tokio::signal::unix::Signal;

/// SIGHUPs, or `None` where they cannot be had (the poll still runs).
#[cfg(unix)]
fn hangups() -> Option<Hangups> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; certificates reload by polling only");
            None
        }
    }
}

#[cfg(not(unix))]
type Hangups = NeverSignal;

#[cfg(not(unix))]
fn hangups() -> Option<Hangups> {
    None
}

#[cfg(not(unix))]
pub struct NeverSignal;

#[cfg(not(unix))]
impl NeverSignal {
    async fn recv(&mut self) -> Option<()> {
        std::future::pending().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use longhaul_certs::Refusal;
    use std::sync::Mutex;

    /// A reloadable thing that answers from a script.
    struct Scripted(Mutex<Vec<Option<Outcome>>>, Option<u64>);

    impl Reload for Scripted {
        fn what(&self) -> &'static str {
            "rtmps"
        }
        fn reload(&self, _now: UnixTime, _forced: bool) -> Option<Outcome> {
            self.0.lock().unwrap().pop().flatten()
        }
        fn not_after(&self) -> Option<u64> {
            self.1
        }
    }

    fn render(c: &dyn Collector) -> String {
        let mut out = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &c.collect(), &mut out)
            .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn polls_count_outcomes_and_show_the_expiry() {
        let script = vec![
            Some(Outcome::Refused(Refusal::new("key.pem".as_ref(), "bad"))),
            Some(Outcome::Reloaded("new".into())),
            None,
        ];
        let item = Arc::new(Scripted(Mutex::new(script), Some(1_900_000_000)));
        let watch = CertificateWatch::new(vec![item.clone()], Some(Duration::from_millis(10)));
        let collector = watch.collector();
        let text = render(collector.as_ref());
        assert!(
            text.contains(r#"certificate_reloads_total{result="refused",what="rtmps"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"certificate_expiry_seconds{what="rtmps"} 1900000000"#),
            "{text}"
        );
        let mut tasks = NodeTasks::new();
        watch.spawn(&mut tasks);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let counted = |text: &str| {
            ["reloaded", "refused"].iter().all(|r| {
                text.contains(&format!(
                    r#"certificate_reloads_total{{result="{r}",what="rtmps"}} 1"#
                ))
            })
        };
        while !counted(&render(collector.as_ref())) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "outcomes not counted: {}",
                render(collector.as_ref())
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tasks.stop().await;
    }
}
