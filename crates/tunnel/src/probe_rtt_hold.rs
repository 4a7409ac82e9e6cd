//! BBR with its window kept through ProbeRTT.
//!
//! quinn 0.11's BBR (`quinn_proto::congestion::Bbr`, BBRv1) enters ProbeRTT when its
//! minimum RTT is "expired": on the first batch of acks that is not application-limited,
//! and then at most every 10 s. In ProbeRTT its window falls to three quarters of its
//! bandwidth-delay estimate (4 packets at least) until the flight drains under that, then
//! for 200 ms and a round trip. Two things make that costly and useless on a tunnel:
//! - The estimate it shrinks to is poor: its bandwidth sample is the rate between two
//!   consecutive sends or acks, and a live stream's sends are bursts with gaps. Sampled
//!   on an edge at 230 ms RTT, the window fell from 246 KB to 5.7 KB (4 packets) 0.7 s
//!   into a stream, and the stream's first second queued behind it (BENCHMARKS.md, "The
//!   goal check").
//! - It measures nothing: the minimum RTT BBR takes on leaving is quinn's `RttEstimator`
//!   minimum, the lowest RTT of the connection's whole life, which a drain cannot lower.
//!   All a ProbeRTT does is empty the bottleneck queue for a moment.
//!
//! [`ProbeRttHold`] wraps the controller and keeps the window through ProbeRTT. It knows
//! when BBR enters ProbeRTT the way BBR decides it (an ack batch that is not
//! application-limited, with no ProbeRTT started in the last 10 s, none running), and
//! from then reports the larger of BBR's window and the one BBR had just before, for
//! [`PROBE_RTT_TIME`] and two smoothed round trips: how long BBR stays in it. On the
//! entering batch it tells BBR the flight is empty, so BBR schedules its exit at once
//! instead of waiting for a drain the held window would never allow. Any loss or ECN mark
//! ends the hold: then BBR's own window answers the path.
//!
//! Two gentler answers to a loss during the hold were built and measured, and not kept
//! (`longhaul_bench.py`, held against unheld in the same runs; BENCHMARKS.md, "The goal
//! check"). Ending the hold drops the window to BBR's ProbeRTT window under the flight
//! the hold let out, and at 80 ms RTT with 0.5-2 % loss held was 18-29 ms above unheld.
//! - Conserving the flight until the hold's end fixed those cells, but at 230 ms and 1 %
//!   held went to 542 ms against unheld's 458 (3 runs of 20 s).
//! - A round trip of conservation, then the held window again: held lower than unheld in
//!   13 of 16 cells, but the goal cell (230 ms, 1 %, 60 s runs) went to 501-552 ms,
//!   level with unheld (497-551), where this version met it in 3 of 3 (399-460 against
//!   487-552).
//!
//! What is given up: the drain every 10 s, which lets a competing flow see the path's
//! base RTT. A tunnel carries live streams that are application-limited nearly all the
//! time (it rarely has a queue to drain), and it already gives way on loss.
//!
//! Plain code over quinn's `Controller` trait, time passed in; tested with a scripted
//! controller and with quinn's BBR. Pinned to quinn-proto 0.11 (Cargo.lock): if BBR's
//! ProbeRTT rule changes, a hold at the wrong moment keeps a window BBR had a moment ago
//! for a few hundred milliseconds, never more.

use quinn::congestion::{Controller, ControllerFactory, ControllerMetrics};
use quinn_proto::RttEstimator;
use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often BBR probes: quinn-proto 0.11's `is_min_rtt_expired` (10 s, the BBRv1 draft's
/// `ProbeRTTInterval`).
pub const PROBE_RTT_INTERVAL: Duration = Duration::from_secs(10);

/// How long BBR stays in ProbeRTT once the flight is small: quinn-proto 0.11's
/// `K_PROBE_RTT_TIME` (200 ms, the draft's `ProbeRTTDuration`), then until the next round
/// starts, which the hold covers with two smoothed round trips.
pub const PROBE_RTT_TIME: Duration = Duration::from_millis(200);

/// Builds [`ProbeRttHold`] controllers around another factory's (BBR's).
pub struct ProbeRttHoldConfig {
    inner: Arc<dyn ControllerFactory + Send + Sync>,
}

impl ProbeRttHoldConfig {
    pub fn new(inner: Arc<dyn ControllerFactory + Send + Sync>) -> Self {
        Self { inner }
    }
}

impl ControllerFactory for ProbeRttHoldConfig {
    fn build(self: Arc<Self>, now: Instant, current_mtu: u16) -> Box<dyn Controller> {
        Box::new(ProbeRttHold::new(
            self.inner.clone().build(now, current_mtu),
        ))
    }
}

/// A congestion controller that keeps BBR's window through its ProbeRTTs. See the module
/// documentation.
pub struct ProbeRttHold {
    inner: Box<dyn Controller>,
    /// When the last ProbeRTT started, as BBR counts it.
    last_probe: Option<Instant>,
    /// While a ProbeRTT runs: the window kept, and until when.
    hold: Option<Hold>,
    /// The connection's smoothed RTT, from the last ack.
    smoothed_rtt: Duration,
    holds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hold {
    window: u64,
    until: Instant,
}

impl ProbeRttHold {
    pub fn new(inner: Box<dyn Controller>) -> Self {
        Self {
            inner,
            last_probe: None,
            hold: None,
            smoothed_rtt: Duration::ZERO,
            holds: 0,
        }
    }

    /// The window kept above the inner controller's, while a ProbeRTT runs.
    pub fn held_window(&self) -> Option<u64> {
        self.hold.map(|h| h.window)
    }

    /// ProbeRTTs held so far.
    pub fn holds(&self) -> u64 {
        self.holds
    }

    fn probe_due(&self, now: Instant, app_limited: bool) -> bool {
        !app_limited
            && self.hold.is_none()
            && self
                .last_probe
                .is_none_or(|last| now.saturating_duration_since(last) > PROBE_RTT_INTERVAL)
    }
}

impl Controller for ProbeRttHold {
    fn on_sent(&mut self, now: Instant, bytes: u64, last_packet_number: u64) {
        self.inner.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        self.smoothed_rtt = rtt.get();
        self.inner.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        if let Some(hold) = self.hold {
            if now >= hold.until {
                self.hold = None;
            }
        }
        if self.probe_due(now, app_limited) {
            // BBR enters ProbeRTT in this batch. Keep the window it has now, and report an
            // empty flight so it starts ProbeRTT's clock at once.
            let window = self.inner.window();
            self.last_probe = Some(now);
            self.hold = Some(Hold {
                window,
                until: now + PROBE_RTT_TIME + 2 * self.smoothed_rtt,
            });
            self.holds += 1;
            self.inner
                .on_end_acks(now, 0, app_limited, largest_packet_num_acked);
        } else {
            self.inner
                .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
        }
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        // A loss or an ECN mark is the path speaking: stop holding, let BBR answer it.
        self.hold = None;
        self.inner
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.inner.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        let inner = self.inner.window();
        match self.hold {
            Some(hold) => hold.window.max(inner),
            None => inner,
        }
    }

    fn metrics(&self) -> ControllerMetrics {
        let mut metrics = self.inner.metrics();
        metrics.congestion_window = self.window();
        metrics
    }

    fn clone_box(&self) -> Box<dyn Controller> {
        Box::new(Self {
            inner: self.inner.clone_box(),
            last_probe: self.last_probe,
            hold: self.hold,
            smoothed_rtt: self.smoothed_rtt,
            holds: self.holds,
        })
    }

    fn initial_window(&self) -> u64 {
        self.inner.initial_window()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quinn::congestion::{Bbr, BbrConfig};
    use std::sync::Mutex;

    const MTU: u16 = 1200;
    const MS: Duration = Duration::from_millis(1);

    /// What a scripted controller was told, and the window the test gives it.
    #[derive(Default)]
    struct Script {
        window: u64,
        /// The window it falls to at an ack batch that is not app-limited (its ProbeRTT).
        probe_window: Option<u64>,
        end_acks: Vec<(u64, bool)>,
        congestion_events: u32,
    }

    /// A controller driven by a [`Script`] the test keeps a handle on.
    #[derive(Clone)]
    struct Scripted(Arc<Mutex<Script>>);

    impl Controller for Scripted {
        fn on_end_acks(&mut self, _: Instant, in_flight: u64, app_limited: bool, _: Option<u64>) {
            let mut s = self.0.lock().unwrap();
            s.end_acks.push((in_flight, app_limited));
            if !app_limited {
                if let Some(w) = s.probe_window {
                    s.window = w;
                }
            }
        }
        fn on_congestion_event(&mut self, _: Instant, _: Instant, _: bool, _: u64) {
            self.0.lock().unwrap().congestion_events += 1;
        }
        fn on_mtu_update(&mut self, _: u16) {}
        fn window(&self) -> u64 {
            self.0.lock().unwrap().window
        }
        fn clone_box(&self) -> Box<dyn Controller> {
            Box::new(self.clone())
        }
        fn initial_window(&self) -> u64 {
            240_000
        }
        fn into_any(self: Box<Self>) -> Box<dyn Any> {
            self
        }
    }

    /// A wrapped controller at 246 KB that falls to 4 packets when an ack batch is not
    /// app-limited, as the edge's BBR did.
    fn probing() -> (ProbeRttHold, Arc<Mutex<Script>>) {
        let script = Arc::new(Mutex::new(Script {
            window: 246_000,
            probe_window: Some(5_808),
            ..Default::default()
        }));
        let c = ProbeRttHold::new(Box::new(Scripted(script.clone())));
        (c, script)
    }

    #[test]
    fn app_limited_acks_pass_through() {
        let t0 = Instant::now();
        let (mut c, script) = probing();
        c.on_end_acks(t0, 150_000, true, Some(1));
        assert_eq!(script.lock().unwrap().end_acks, vec![(150_000, true)]);
        assert_eq!(c.held_window(), None);
        assert_eq!(c.window(), 246_000);
    }

    #[test]
    fn the_window_is_kept_through_the_first_probe_and_its_clock_starts_at_once() {
        let t0 = Instant::now();
        let (mut c, script) = probing();
        // The first batch that is not app-limited: BBR probes; the flight it is told is
        // empty, so it schedules its exit now.
        c.on_end_acks(t0, 150_000, false, Some(1));
        assert_eq!(script.lock().unwrap().end_acks, vec![(0, false)]);
        assert_eq!(script.lock().unwrap().window, 5_808);
        assert_eq!(c.window(), 246_000);
        assert_eq!(c.metrics().congestion_window, 246_000);
        assert_eq!(c.holds(), 1);
        // Later batches during the probe are passed on as they are.
        c.on_end_acks(t0 + 100 * MS, 150_000, false, Some(2));
        assert_eq!(script.lock().unwrap().end_acks[1], (150_000, false));
        assert_eq!(c.window(), 246_000);
        // The hold lasts 200 ms and two smoothed RTTs (none measured by this script).
        c.on_end_acks(t0 + 200 * MS, 150_000, true, Some(3));
        assert_eq!(c.held_window(), None);
        assert_eq!(c.window(), 5_808);
    }

    #[test]
    fn probes_are_held_again_after_ten_seconds_not_before() {
        let t0 = Instant::now();
        let (mut c, script) = probing();
        c.on_end_acks(t0, 150_000, false, Some(1));
        script.lock().unwrap().window = 300_000;
        c.on_end_acks(t0 + 300 * MS, 150_000, false, Some(2));
        assert_eq!(c.held_window(), None);
        assert_eq!(c.holds(), 1);
        // Within 10 s of the last probe's start, BBR does not probe: nothing held.
        script.lock().unwrap().window = 300_000;
        c.on_end_acks(t0 + 9_000 * MS, 150_000, false, Some(3));
        assert_eq!(c.holds(), 1);
        // After 10 s it probes again, and the window it had is kept.
        script.lock().unwrap().window = 320_000;
        c.on_end_acks(t0 + 10_001 * MS, 150_000, false, Some(4));
        assert_eq!(c.holds(), 2);
        assert_eq!(c.window(), 320_000);
        assert_eq!(script.lock().unwrap().end_acks.last(), Some(&(0, false)));
    }

    #[test]
    fn a_loss_ends_the_hold() {
        let t0 = Instant::now();
        let (mut c, script) = probing();
        c.on_end_acks(t0, 150_000, false, Some(1));
        assert_eq!(c.held_window(), Some(246_000));
        c.on_congestion_event(t0, t0, false, 1_200);
        assert_eq!(c.held_window(), None);
        assert_eq!(c.window(), 5_808);
        assert_eq!(script.lock().unwrap().congestion_events, 1);
    }

    #[test]
    fn a_larger_inner_window_is_never_lowered() {
        let t0 = Instant::now();
        let (mut c, script) = probing();
        c.on_end_acks(t0, 150_000, false, Some(1));
        script.lock().unwrap().window = 400_000;
        assert_eq!(c.window(), 400_000);
    }

    /// quinn's BBR's mode and ProbeRTT exit time, read from its `Debug` form (its fields
    /// are private): enough to check the wrapper's model of it.
    fn bbr_state(c: &ProbeRttHold) -> String {
        let bbr = c
            .inner
            .clone_box()
            .into_any()
            .downcast::<Bbr>()
            .expect("BBR inside");
        let debug = format!("{bbr:?}");
        let field = |name: &str| {
            let at = debug
                .find(name)
                .unwrap_or_else(|| panic!("{name} in {debug}"));
            debug[at..].split(',').next().unwrap().to_string()
        };
        format!("{}; {}", field("mode:"), field("exit_probe_rtt_at:"))
    }

    #[test]
    fn quinn_bbr_probes_when_the_wrapper_says_it_does() {
        let t0 = Instant::now();
        let mut c = ProbeRttHold::new(Arc::new(BbrConfig::default()).build(t0, MTU));
        let initial = c.window();
        // App-limited batches (the handshake's, a paced stream's): no probe.
        c.on_end_acks(t0, 0, true, Some(0));
        assert_eq!(c.holds(), 0);
        assert_eq!(bbr_state(&c), "mode: Startup; exit_probe_rtt_at: None");
        // The first batch that is not app-limited, with more in flight than its ProbeRTT
        // window (its initial window, 240 KB, with no bandwidth sample yet): BBR probes,
        // and having been told the flight is empty, has already scheduled its exit.
        c.on_end_acks(t0 + MS, 300_000, false, Some(1));
        assert_eq!(c.holds(), 1);
        let state = bbr_state(&c);
        assert!(
            state.starts_with("mode: ProbeRtt; exit_probe_rtt_at: Some("),
            "{state}"
        );
        assert_eq!(c.window(), initial);
        assert_eq!(c.clone_box().window(), initial);
        // Bare, the same batch leaves BBR waiting for the flight to drain.
        let mut bare = ProbeRttHold::new(Arc::new(BbrConfig::default()).build(t0, MTU));
        bare.inner.on_end_acks(t0 + MS, 300_000, false, Some(1));
        assert_eq!(bbr_state(&bare), "mode: ProbeRtt; exit_probe_rtt_at: None");
    }
}
