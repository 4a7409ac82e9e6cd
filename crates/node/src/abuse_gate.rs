//! The publish abuse guard at a node's door: the sans-IO [`AbuseGuard`] behind a lock,
//! the tarpit's sleep, the log lines and the metrics, written once for the origin's
//! direct publishes and the edge's.
//!
//! A node calls [`AbuseGate::admit`] with the client's address when a publish is asked
//! for, before deciding on it (an edge: before it costs a tunnel round trip), and
//! [`AbuseGate::failed`] with the `reason` of every refusal; only refusals for the
//! client's credentials ([`CREDENTIAL_REASONS`]) count. The lock is a plain mutex, held
//! only for one call of the guard (a hash lookup and a few ordered-set updates), never
//! across the sleep. A disabled guard (`abuse.enabled = false`) admits everything and
//! counts nothing.
//!
//! Series (with the node's `longhaul_` prefix and labels): `publish_abuse_total{action}`
//! and `publish_abuse_bans_total` ([`AbuseSeries`]), and from [`AbuseGate::collector`],
//! read from the guard at scrape time so that a ban that ended is not shown:
//! `publish_abuse_banned` (addresses banned now), `publish_abuse_tracked` (addresses
//! with failures in the window or a ban) and `publish_abuse_evictions_total` (addresses
//! forgotten early because `abuse.max_tracked` were tracked: raise it if this grows).

use crate::abuse::{AbuseGuard, Admission, Escalation, Source};
use crate::config::{AbuseSection, InvalidSetting};
use crate::metrics::{abuse_action, AbuseSeries};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The refusal reasons that count as failures: the client's credentials were wrong
/// (`wrong_token`), absent (`missing_token`), or named no entry (`unknown_entry`, what a
/// scanner guessing entry ids gets). These are the origin's `reason` labels, which an
/// edge receives in the origin's verdict. Not counted: a malformed URL (refused without
/// a lookup, so it costs nothing to answer), and whatever is not the client's doing (the
/// registry failing, the tunnel down).
pub const CREDENTIAL_REASONS: [&str; 4] = [
    "missing_token",
    "wrong_token",
    "unknown_entry",
    // The platform's authorisation callback said no (`[auth] mode = "callback"`).
    "callback_refused",
];

/// The `reason` label of a publish the guard refused, at either node.
pub const REFUSED_REASON: &str = "too_many_failures";

/// Whether a refusal for `reason` counts against the client's address.
pub fn is_credential_failure(reason: &str) -> bool {
    CREDENTIAL_REASONS.contains(&reason)
}

/// A publish refused because its address is banned. Its `Display` is the status
/// description the encoder gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooManyFailures {
    /// The address, or the IPv6 /64, that is banned.
    pub source: Source,
    /// How much longer the ban lasts.
    pub retry_after: Duration,
}

impl TooManyFailures {
    /// How much longer the ban lasts in whole seconds, rounded up (a `retry-after`).
    pub fn retry_after_secs(&self) -> u64 {
        whole_secs(self.retry_after)
    }
}

/// `publish refused: too many failed publish attempts from 192.0.2.7; try again in 540 s`
impl fmt::Display for TooManyFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "publish refused: too many failed publish attempts from {}; try again in {} s",
            self.source,
            self.retry_after_secs()
        )
    }
}

/// Seconds, rounded up: "try again in 0 s" while still banned would be a lie.
fn whole_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A node's abuse guard, its metrics and its logs.
pub struct AbuseGate {
    guard: Option<Arc<Mutex<AbuseGuard>>>,
    series: AbuseSeries,
}

impl AbuseGate {
    /// The gate `section` describes, counting into `series`.
    pub fn new(section: &AbuseSection, series: AbuseSeries) -> Result<Self, InvalidSetting> {
        let limits = section.limits()?;
        let guard = section
            .enabled
            .then(|| Arc::new(Mutex::new(AbuseGuard::new(limits))));
        Ok(Self { guard, series })
    }

    /// Before a publish from `peer` is decided: `Ok` to go on, after the tarpit's delay
    /// if its address failed `abuse.slow_after` times; `Err` if the address is banned,
    /// to be refused at once with the error as the status description.
    pub async fn admit(&self, peer: IpAddr) -> Result<(), TooManyFailures> {
        let Some(guard) = &self.guard else {
            return Ok(());
        };
        let admission = lock(guard).check(peer, Instant::now());
        match admission {
            Admission::Allow => Ok(()),
            Admission::Delay(delay) => {
                self.series
                    .actions
                    .with_label_values(&[abuse_action::SLOWED])
                    .inc();
                tracing::debug!(client = %peer, delay_ms = delay.as_millis() as u64,
                    "publish slowed: its address failed to publish too often");
                tokio::time::sleep(delay).await;
                Ok(())
            }
            Admission::Refuse { retry_after } => {
                self.series
                    .actions
                    .with_label_values(&[abuse_action::REFUSED])
                    .inc();
                Err(TooManyFailures {
                    source: Source::of(peer),
                    retry_after,
                })
            }
        }
    }

    /// A publish from `peer` was refused for `reason` (the `reason` label of the refusal):
    /// counted if it is a credential failure; a source slowed or banned by it is logged.
    pub fn failed(&self, peer: IpAddr, reason: &str) {
        let Some(guard) = &self.guard else {
            return;
        };
        if !is_credential_failure(reason) {
            return;
        }
        let (escalation, window) = {
            let mut guard = lock(guard);
            let escalation = guard.record_failure(peer, Instant::now());
            (escalation, guard.limits().window)
        };
        let source = Source::of(peer);
        let window_secs = window.as_secs();
        match escalation {
            Some(Escalation::Slowed { failures }) => {
                tracing::warn!(client = %peer, %source, failures, window_secs,
                    "publish abuse: {source} slowed after {failures} failed publish attempts \
                     in {window_secs} s; its next attempts wait before they are decided");
            }
            Some(Escalation::Banned { ban }) => {
                self.series.bans.inc();
                let ban_secs = ban.as_secs();
                tracing::warn!(client = %peer, %source, window_secs, ban_secs,
                    "publish abuse: {source} banned for {ban_secs} s: too many failed \
                     publish attempts in {window_secs} s; its publishes are refused at once");
            }
            None => {}
        }
    }

    /// The gauges read from the guard at scrape time, for the node's registry.
    pub fn collector(&self) -> Box<dyn Collector> {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid gauge");
        Box::new(AbuseCollector {
            guard: self.guard.clone(),
            banned: gauge(
                "publish_abuse_banned",
                "Addresses (IPv6: /64s) whose publishes are refused now",
            ),
            tracked: gauge(
                "publish_abuse_tracked",
                "Addresses (IPv6: /64s) with failed publishes in the window or a ban",
            ),
            evictions: IntCounter::new(
                "publish_abuse_evictions_total",
                "Addresses forgotten early because abuse.max_tracked were tracked",
            )
            .expect("valid counter"),
        })
    }
}

/// The guard, even if a thread panicked while holding it: its books are updated in an
/// order that leaves them usable at every step, and refusing every publish for a poisoned
/// lock would be worse.
fn lock(guard: &Mutex<AbuseGuard>) -> MutexGuard<'_, AbuseGuard> {
    guard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct AbuseCollector {
    guard: Option<Arc<Mutex<AbuseGuard>>>,
    banned: IntGauge,
    tracked: IntGauge,
    evictions: IntCounter,
}

impl Collector for AbuseCollector {
    fn desc(&self) -> Vec<&Desc> {
        [
            self.banned.desc(),
            self.tracked.desc(),
            self.evictions.desc(),
        ]
        .concat()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if let Some(guard) = &self.guard {
            let stats = lock(guard).stats(Instant::now());
            let as_gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            self.banned.set(as_gauge(stats.banned));
            self.tracked.set(as_gauge(stats.tracked));
            let counted = self.evictions.get();
            self.evictions
                .inc_by(stats.evictions.saturating_sub(counted));
        }
        [
            self.banned.collect(),
            self.tracked.collect(),
            self.evictions.collect(),
        ]
        .concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{node_registry, render};

    fn gate(extra: &str) -> (AbuseGate, prometheus::Registry) {
        let section: AbuseSection = toml::from_str(extra).expect("section");
        let registry = node_registry("t-1", "t");
        let gate = AbuseGate::new(&section, AbuseSeries::new(&registry)).expect("valid");
        registry
            .register(gate.collector())
            .expect("collector registered");
        (gate, registry)
    }

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    }

    #[tokio::test(start_paused = true)]
    async fn slows_then_refuses_with_the_words_and_counts() {
        let (gate, registry) = gate("slow_after = 1\nban_after = 3\nmax_delay_ms = 1500");
        let peer: IpAddr = "192.0.2.7".parse().expect("ip");
        let text = render(&registry);
        assert_eq!(value(&text, "longhaul_publish_abuse_banned{"), 0.0);
        assert_eq!(
            value(&text, "longhaul_publish_abuse_total{action=\"refused\""),
            0.0
        );

        gate.admit(peer).await.expect("first is free");
        gate.failed(peer, "wrong_token");
        // Not a credential failure: not counted.
        gate.failed(peer, "internal_error");
        gate.failed(peer, "bad_stream_name");
        let start = tokio::time::Instant::now();
        gate.admit(peer).await.expect("slowed, not refused");
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        gate.failed(peer, "unknown_entry");
        let start = tokio::time::Instant::now();
        gate.admit(peer).await.expect("slowed, not refused");
        assert_eq!(start.elapsed(), Duration::from_millis(1500), "capped");
        gate.failed(peer, "missing_token");

        let refused = gate.admit(peer).await.expect_err("banned");
        assert_eq!(
            refused.to_string(),
            "publish refused: too many failed publish attempts from 192.0.2.7; try again in 600 s"
        );
        let text = render(&registry);
        for (series, want) in [
            ("longhaul_publish_abuse_total{action=\"slowed\"", 2.0),
            ("longhaul_publish_abuse_total{action=\"refused\"", 1.0),
            ("longhaul_publish_abuse_bans_total{", 1.0),
            ("longhaul_publish_abuse_banned{", 1.0),
            ("longhaul_publish_abuse_tracked{", 1.0),
            ("longhaul_publish_abuse_evictions_total{", 0.0),
        ] {
            assert_eq!(value(&text, series), want, "{series}");
        }
        assert!(text.contains("node=\"t-1\""), "{text}");
    }

    #[tokio::test]
    async fn disabled_admits_everything() {
        let (gate, registry) = gate("enabled = false\nslow_after = 1\nban_after = 1");
        let peer: IpAddr = "192.0.2.7".parse().expect("ip");
        for _ in 0..10 {
            gate.admit(peer).await.expect("admitted");
            gate.failed(peer, "wrong_token");
        }
        let text = render(&registry);
        assert_eq!(value(&text, "longhaul_publish_abuse_banned{"), 0.0);
        assert_eq!(value(&text, "longhaul_publish_abuse_bans_total{"), 0.0);
    }

    #[test]
    fn whole_seconds_round_up() {
        assert_eq!(whole_secs(Duration::from_millis(1)), 1);
        assert_eq!(whole_secs(Duration::from_secs(540)), 540);
        assert_eq!(whole_secs(Duration::from_millis(539_001)), 540);
    }
}
