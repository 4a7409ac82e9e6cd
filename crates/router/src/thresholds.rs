//! Every number the router decides with, each with the evidence for its default.
//!
//! The edge's `[router]` section overrides them ([`Thresholds`] is plain data; the
//! config crate checks ranges). Tests set the times short.

use std::time::Duration;

/// How long the preferred origin must have been good again before legs go back to it:
/// new publishes of the leg, and live streams at their next keyframe. 30 s is what AWS
/// MediaLive waits before failing back to its primary input (`ErrorClearTimeMsec`,
/// REFERENCE.md section 10): an origin that just failed is the likeliest to fail again,
/// and each move back costs a switch.
pub const DEFAULT_FAILBACK_AFTER: Duration = Duration::from_secs(30);

/// How long an origin that was in trouble must stay clear of it before it counts as
/// healthy again (a failover target, `longhaul_router_origin_healthy` 1). 10 s is two
/// of the origin's own reports (`tunnel.transport.report_interval_ms`, 5 s) in a row
/// and 40 path samples: a tunnel that reconnects and drops again within that is still
/// flapping, and streams are not sent to it.
pub const DEFAULT_RECOVER_HOLD: Duration = Duration::from_secs(10);

/// Path samples looked at together (the last this many). The edge samples every
/// 250 ms ([`SAMPLE_INTERVAL`]): 4 samples are one second of path.
pub const DEFAULT_SAMPLE_WINDOW: u32 = 4;

/// Bad samples among the last [`DEFAULT_SAMPLE_WINDOW`] that make a path lossy: 3 of
/// 4, a path bad for most of a second. One bad sample is a burst BBR rides out (the
/// long-haul benchmark carries every frame through 2 % random loss); leaving a lossy
/// path needs all of the window clean, so a path at the threshold does not flap.
pub const DEFAULT_BAD_SAMPLES: u32 = 3;

/// Share of a sample's packets lost that makes it bad: 10 %. The tunnel (BBR, 1 MiB
/// stream window) delivered every frame of a 6 Mbit/s stream within 1 s at 2 % random
/// loss and up to 300 ms RTT (BENCHMARKS.md, long-haul table); 10 % is five times that,
/// where media would be late or dropped, not a noisy but working path.
pub const DEFAULT_LOSSY_FRACTION: f64 = 0.10;

/// Fewest packets a sample must have sent before its loss share is judged: with fewer
/// (an idle tunnel's keep-alives), one lost packet would be 5 % or more.
pub const MIN_PACKETS_FOR_LOSS: u64 = 20;

/// Smoothed RTT that makes a sample bad: 1 s, three times the longest path the
/// benchmarks ran (300 ms) and four times the cluster's longest (Singapore-New York,
/// 230 ms). Above it the path is queueing seconds of data or rerouted around the world.
pub const DEFAULT_MAX_RTT: Duration = Duration::from_secs(1);

/// Share of a sample's round trips with a congestion event (quinn's
/// `path.congestion_events`: a loss that made the controller cut its window, at most
/// one per round trip) that makes it bad: half. A path that loses something every other
/// round trip for a whole window is persistently congested, whatever the loss share.
pub const CONGESTED_ROUND_SHARE: f64 = 0.5;

/// Stream failures at one origin (a publish refused as unavailable, a relayed stream
/// ended by tunnel loss) within [`DEFAULT_FAILURE_WINDOW`] that make it troubled: 3.
/// One failure may be that stream's own (its encoder left mid-authorisation); three
/// in a few seconds are the origin or the path.
pub const DEFAULT_FAILURES: u32 = 3;

/// See [`DEFAULT_FAILURES`]: 10 s, two report intervals.
pub const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(10);

/// How long an origin's connection may send the edge nothing at all (not one datagram:
/// quinn's `udp_rx.datagrams` stands still), plus one smoothed RTT, before the origin
/// counts as silent: frozen (SIGSTOP, a stalled host) or cut off, long before QUIC's
/// idle timeout (10 s) would say so. The edge's keep-alives go every
/// `tunnel.transport.keep_alive_ms` (100 ms) and each is acknowledged within the
/// origin's ACK delay (25 ms), so a live origin is heard from ten times a second even
/// when idle (and a stream's acknowledgements come far more often): 600 ms is six
/// missed rounds, which a path at 2 % loss each way (4 % a round) does about once in
/// 10^8 windows. With the resume's two round trips it keeps the gap under the 1 s at
/// 80 ms RTT that issue 14 asks for: 600 + 80 + [`LISTEN_INTERVAL`] + 160 ms. It was
/// 1 s with 250 ms keep-alives and the 250 ms sample step: gaps of 1.45 s on loopback
/// (BENCHMARKS.md, "Failover").
pub const DEFAULT_SILENCE_LIMIT: Duration = Duration::from_millis(600);

/// How often the edge's driver looks at each connection's received-datagram counter
/// between path samples: 50 ms, so silence is noticed within that of the limit rather
/// than within a 250 ms sample step. Reading quinn's counters is a lock and a copy, 20
/// times a second per origin.
pub const LISTEN_INTERVAL: Duration = Duration::from_millis(50);

/// How often the edge's driver feeds path samples and tunnel states: 250 ms, four times
/// a second, so [`DEFAULT_BAD_SAMPLES`] of [`DEFAULT_SAMPLE_WINDOW`] is under a second
/// and a dead tunnel is seen within a quarter second of quinn noticing.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

/// The router's thresholds; [`Thresholds::default`] holds the constants above.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    pub failback_after: Duration,
    pub recover_hold: Duration,
    pub sample_window: u32,
    pub bad_samples: u32,
    pub lossy_fraction: f64,
    pub max_rtt: Duration,
    pub failures: u32,
    pub failure_window: Duration,
    pub silence_limit: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            failback_after: DEFAULT_FAILBACK_AFTER,
            recover_hold: DEFAULT_RECOVER_HOLD,
            sample_window: DEFAULT_SAMPLE_WINDOW,
            bad_samples: DEFAULT_BAD_SAMPLES,
            lossy_fraction: DEFAULT_LOSSY_FRACTION,
            max_rtt: DEFAULT_MAX_RTT,
            failures: DEFAULT_FAILURES,
            failure_window: DEFAULT_FAILURE_WINDOW,
            silence_limit: DEFAULT_SILENCE_LIMIT,
        }
    }
}

/// Most path samples the router remembers (it keeps them as bits of a `u32`).
pub const MAX_SAMPLE_WINDOW: u32 = 32;

impl Thresholds {
    /// The first setting out of range, as `(name, why)`. The router clamps what it
    /// is given anyway, so it never panics; this is for the config to refuse typos.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=MAX_SAMPLE_WINDOW).contains(&self.sample_window) {
            return Err((
                "sample_window",
                format!("{} is not in 1..={MAX_SAMPLE_WINDOW}", self.sample_window),
            ));
        }
        if !(1..=self.sample_window).contains(&self.bad_samples) {
            return Err((
                "bad_samples",
                format!(
                    "{} is not in 1..=sample_window ({})",
                    self.bad_samples, self.sample_window
                ),
            ));
        }
        if !(self.lossy_fraction.is_finite()
            && self.lossy_fraction > 0.0
            && self.lossy_fraction <= 1.0)
        {
            return Err((
                "lossy_fraction",
                format!("{} is not in (0, 1]", self.lossy_fraction),
            ));
        }
        if self.max_rtt.is_zero() {
            return Err(("max_rtt", "must be above 0".into()));
        }
        if self.silence_limit.is_zero() {
            return Err(("silence_limit", "must be above 0".into()));
        }
        if self.failures == 0 {
            return Err(("failures", "must be at least 1".into()));
        }
        if self.failback_after < self.recover_hold {
            return Err((
                "failback_after",
                format!(
                    "{:?} is shorter than recover_hold ({:?}): an origin would get legs back before it counts as healthy",
                    self.failback_after, self.recover_hold
                ),
            ));
        }
        Ok(())
    }
}
