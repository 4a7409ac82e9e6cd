//! The impairment of one direction as a pure, synchronous state machine.
//!
//! Like quinn-proto, it does no IO and reads no clock: the driver hands it packets with
//! [`Direction::offer`], asks for the ones due with [`Direction::poll_transmit`], and
//! sleeps until [`Direction::next_deadline`]. So every behaviour (exact delays, rate
//! spacing, tail drop, loss rates) is tested without sockets, sleeps or flakiness, and
//! the same seed and the same input give the same output.
//!
//! A packet's path through a direction:
//! 1. **loss on entry** ([`crate::loss`]), before the queue, so lost packets take no
//!    queue space;
//! 2. **bottleneck queue**: with a rate, a packet is serialised after the packets ahead of
//!    it, `done = max(now, previous done) + size · 8 / rate`. The backlog (bytes not yet
//!    serialised) is bounded; a packet that does not fit is tail-dropped;
//! 3. **propagation**: it departs at `done + delay ± jitter`, but never before the packet
//!    ahead of it departed (FIFO: no reordering, ever).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::loss::{LossModel, LossVerdict};
use crate::spec::DirectionConfig;
use crate::stats::DirectionStats;

/// Safety cap on the bytes one direction holds (queued plus in propagation), whatever the
/// configured queue: 1 Gbit/s × 300 ms one-way is 37.5 MB, so 64 MiB never binds on a
/// path the benchmark emulates, but an unbounded setting cannot exhaust memory. Packets
/// over the cap count as `dropped_queue_full`.
pub const MAX_HELD_BYTES: u64 = 64 << 20;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// What [`Direction::offer`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Accepted; it will come out of [`Direction::poll_transmit`].
    Queued,
    /// Lost by the independent (Bernoulli) loss.
    LostRandom,
    /// Lost by the Gilbert-Elliott chain.
    LostBurst,
    /// Tail-dropped: the bottleneck queue (or the safety cap) was full.
    DroppedQueueFull,
}

#[derive(Debug)]
struct Held {
    departs: Instant,
    packet: Vec<u8>,
}

/// One direction of the emulated link.
#[derive(Debug)]
pub struct Direction {
    config: DirectionConfig,
    loss: LossModel,
    /// Loss draws only, so that changing the jitter does not change which packets are lost.
    loss_rng: SmallRng,
    jitter_rng: SmallRng,
    /// Accepted packets in departure order (departure times never decrease).
    held: VecDeque<Held>,
    held_bytes: u64,
    /// When the bottleneck finishes serialising the last accepted packet.
    link_free_at: Option<Instant>,
    /// Departure time of the last accepted packet.
    last_departure: Option<Instant>,
    /// Whether the previous packet was lost by the Gilbert-Elliott chain.
    in_burst: bool,
    stats: DirectionStats,
}

impl Direction {
    pub fn new(config: DirectionConfig, seed: u64) -> Self {
        Direction {
            loss: LossModel::new(config.loss, config.ge),
            config,
            loss_rng: SmallRng::seed_from_u64(seed),
            // Any fixed, distinct stream; the constant is the 64-bit golden ratio.
            jitter_rng: SmallRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            held: VecDeque::new(),
            held_bytes: 0,
            link_free_at: None,
            last_departure: None,
            in_burst: false,
            stats: DirectionStats::default(),
        }
    }

    pub fn config(&self) -> &DirectionConfig {
        &self.config
    }

    /// Bytes still to serialise at the bottleneck at `now`.
    fn backlog_bytes(&self, now: Instant) -> u64 {
        match (self.config.rate_bps, self.link_free_at) {
            (Some(rate), Some(free)) => {
                let ns = free.saturating_duration_since(now).as_nanos();
                // Rounded up: a packet partly serialised still occupies the queue.
                let bits = (ns * rate as u128).div_ceil(NANOS_PER_SEC);
                u64::try_from(bits.div_ceil(8)).unwrap_or(u64::MAX)
            }
            _ => 0,
        }
    }

    /// Time to serialise `len` bytes at `rate` bits/s.
    fn serialisation(len: usize, rate: u64) -> Duration {
        let ns = (len as u128 * 8 * NANOS_PER_SEC) / rate.max(1) as u128;
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// A packet enters the direction at `now`. Any length is accepted (0 bytes, or more
    /// than any MTU); a packet larger than the queue bound is simply dropped.
    pub fn offer(&mut self, packet: Vec<u8>, now: Instant) -> Offered {
        let len = packet.len() as u64;
        self.stats.packets_in += 1;
        self.stats.bytes_in += len;

        match self.loss.decide(&mut self.loss_rng) {
            LossVerdict::Burst => {
                self.stats.lost_burst += 1;
                if !self.in_burst {
                    self.stats.loss_bursts += 1;
                }
                self.in_burst = true;
                return Offered::LostBurst;
            }
            LossVerdict::Random => {
                self.in_burst = false;
                self.stats.lost_random += 1;
                return Offered::LostRandom;
            }
            LossVerdict::Keep => self.in_burst = false,
        }

        let backlog = self.backlog_bytes(now);
        let over_queue = self
            .config
            .queue_bytes
            .is_some_and(|limit| backlog.saturating_add(len) > limit);
        if over_queue || self.held_bytes.saturating_add(len) > MAX_HELD_BYTES {
            self.stats.dropped_queue_full += 1;
            return Offered::DroppedQueueFull;
        }

        // Instant arithmetic is checked: absurd settings (1 bit/s and megabyte packets)
        // drop the packet rather than panic.
        let serialised = match self.config.rate_bps {
            Some(rate) => {
                let start = self.link_free_at.map_or(now, |free| free.max(now));
                start.checked_add(Self::serialisation(packet.len(), rate))
            }
            None => Some(now),
        };
        let propagation = self.propagation();
        let Some(departs) = serialised.and_then(|s| s.checked_add(propagation)) else {
            self.stats.dropped_queue_full += 1;
            return Offered::DroppedQueueFull;
        };
        if self.config.rate_bps.is_some() {
            self.link_free_at = serialised;
        }
        let departs = departs.max(self.last_departure.unwrap_or(now));
        self.last_departure = Some(departs);

        self.held_bytes += len;
        self.held.push_back(Held { departs, packet });
        if self.config.rate_bps.is_some() {
            self.stats.max_queue_bytes = self.stats.max_queue_bytes.max(backlog + len);
        }
        self.stats.max_held_packets = self.stats.max_held_packets.max(self.held.len() as u64);
        Offered::Queued
    }

    /// `delay ± jitter`, uniform, at least zero.
    fn propagation(&mut self) -> Duration {
        let delay = self.config.delay.as_nanos() as i128;
        let jitter = self.config.jitter.as_nanos() as i128;
        let offset = if jitter > 0 {
            self.jitter_rng.gen_range(-jitter..=jitter)
        } else {
            0
        };
        Duration::from_nanos(u64::try_from((delay + offset).max(0)).unwrap_or(u64::MAX))
    }

    /// The next packet due at `now`, if any. Call until `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.held.front()?.departs > now {
            return None;
        }
        let held = self.held.pop_front()?;
        self.held_bytes -= held.packet.len() as u64;
        self.stats.delivered_packets += 1;
        self.stats.delivered_bytes += held.packet.len() as u64;
        Some(held.packet)
    }

    /// When the next packet is due; `None` when nothing is held.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.front().map(|h| h.departs)
    }

    /// The counters so far, with `held_packets` as of now.
    pub fn stats(&self) -> DirectionStats {
        DirectionStats {
            held_packets: self.held.len() as u64,
            ..self.stats.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{GilbertElliott, Spec};

    fn direction(spec: &str, seed: u64) -> Direction {
        Direction::new(Spec::parse(spec).unwrap().resolve().unwrap(), seed)
    }

    /// Every packet handed out up to `until`, with the time it became due.
    fn drain(d: &mut Direction, until: Instant) -> Vec<(Instant, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(at) = d.next_deadline() {
            if at > until {
                break;
            }
            out.push((at, d.poll_transmit(at).unwrap()));
        }
        out
    }

    #[test]
    fn delay_is_exact() {
        let t0 = Instant::now();
        let mut d = direction("delay=115ms", 1);
        assert_eq!(d.offer(vec![1; 100], t0), Offered::Queued);
        let t1 = t0 + Duration::from_millis(3);
        assert_eq!(d.offer(vec![2; 1500], t1), Offered::Queued);
        assert_eq!(d.next_deadline(), Some(t0 + Duration::from_millis(115)));
        assert_eq!(
            d.poll_transmit(t0 + Duration::from_millis(115) - Duration::from_nanos(1)),
            None
        );
        assert_eq!(
            d.poll_transmit(t0 + Duration::from_millis(115)),
            Some(vec![1; 100])
        );
        assert_eq!(d.next_deadline(), Some(t1 + Duration::from_millis(115)));
        assert_eq!(
            d.poll_transmit(t1 + Duration::from_millis(115)),
            Some(vec![2; 1500])
        );
        assert_eq!(d.next_deadline(), None);
        let s = d.stats();
        assert_eq!(
            (s.packets_in, s.delivered_packets, s.delivered_bytes),
            (2, 2, 1600)
        );
    }

    #[test]
    fn no_impairment_is_immediate() {
        let t0 = Instant::now();
        let mut d = direction("", 1);
        d.offer(vec![7; 60], t0);
        assert_eq!(d.poll_transmit(t0), Some(vec![7; 60]));
    }

    /// Offers `n` four-byte numbered packets, one per `gap`, and checks they come out in
    /// order with delays in `[low, high]`; returns the smallest and largest delay.
    fn run_jitter(
        d: &mut Direction,
        n: u32,
        gap: Duration,
        low: Duration,
        high: Duration,
    ) -> (Duration, Duration) {
        let t0 = Instant::now();
        for i in 0..n {
            d.offer(i.to_be_bytes().to_vec(), t0 + gap * i);
        }
        let out = drain(d, t0 + gap * n + Duration::from_secs(10));
        assert_eq!(out.len(), n as usize);
        let (mut min, mut max) = (Duration::MAX, Duration::ZERO);
        for (i, (at, packet)) in out.iter().enumerate() {
            assert_eq!(packet, &(i as u32).to_be_bytes().to_vec(), "reordered");
            let delay = *at - (t0 + gap * i as u32);
            assert!(low <= delay && delay <= high, "{delay:?}");
            (min, max) = (min.min(delay), max.max(delay));
        }
        (min, max)
    }

    #[test]
    fn jitter_never_reorders() {
        let mut d = direction("delay=40ms,jitter=10ms", 7);
        // One packet every 100 µs, far closer than the jitter: reordering would be
        // everywhere if it were allowed. Delays stay in 40 ± 10 ms; the upper bound
        // holds because the packet waited for left by 50 ms after its own, earlier, send.
        run_jitter(
            &mut d,
            10_000,
            Duration::from_micros(100),
            Duration::from_millis(30),
            Duration::from_millis(50),
        );
    }

    #[test]
    fn jitter_spans_its_range_when_packets_are_sparse() {
        let mut d = direction("delay=40ms,jitter=10ms", 7);
        // Packets 25 ms apart never wait for each other, so delays use the whole range.
        let (min, max) = run_jitter(
            &mut d,
            1_000,
            Duration::from_millis(25),
            Duration::from_millis(30),
            Duration::from_millis(50),
        );
        assert!(min < Duration::from_millis(31), "{min:?}");
        assert!(max > Duration::from_millis(49), "{max:?}");
    }

    #[test]
    fn random_loss_rate_within_tolerance() {
        let t0 = Instant::now();
        let mut d = direction("loss=1%", 42);
        let n = 100_000;
        let lost = (0..n)
            .filter(|_| d.offer(vec![0; 1200], t0) == Offered::LostRandom)
            .count();
        // Binomial(100 000, 0.01): σ ≈ 31.5; allow four σ.
        assert!((874..=1126).contains(&lost), "lost {lost} of {n}");
        let s = d.stats();
        assert_eq!(s.lost_random, lost as u64);
        assert_eq!(s.lost_burst, 0);
    }

    #[test]
    fn same_seed_same_losses() {
        let t0 = Instant::now();
        let run = |seed| {
            let mut d = direction("loss=5%,ge=1%/20%,jitter=1ms,delay=5ms", seed);
            (0..5_000)
                .map(|_| d.offer(vec![0; 100], t0))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn gilbert_elliott_mean_loss_and_burst_length() {
        let t0 = Instant::now();
        let mut d = direction("ge=1%/25%", 9);
        let ge = GilbertElliott {
            p: 0.01,
            r: 0.25,
            h: 0.0,
            k: 1.0,
        };
        let n = 200_000;
        for _ in 0..n {
            d.offer(vec![0; 100], t0);
        }
        let s = d.stats();
        let loss = s.lost_burst as f64 / n as f64;
        let burst = s.lost_burst as f64 / s.loss_bursts as f64;
        // Theory: 0.01 / 0.26 = 3.85 % and bursts of 1 / 0.25 = 4 packets. About 1900
        // bursts of geometric length make the estimates good to a few percent.
        assert!(
            (loss - ge.mean_loss()).abs() < 0.1 * ge.mean_loss(),
            "loss {loss}"
        );
        assert!(
            (burst - ge.mean_bad_run()).abs() < 0.1 * ge.mean_bad_run(),
            "burst {burst}"
        );
        assert_eq!(s.lost_random, 0);
    }

    #[test]
    fn gilbert_elliott_with_partial_loss_in_each_state() {
        let t0 = Instant::now();
        let mut d = direction("ge=2%/10%/50%/99%", 11);
        let ge = GilbertElliott {
            p: 0.02,
            r: 0.10,
            h: 0.5,
            k: 0.99,
        };
        let n = 200_000;
        for _ in 0..n {
            d.offer(vec![0; 100], t0);
        }
        let loss = d.stats().lost_burst as f64 / n as f64;
        assert!(
            (loss - ge.mean_loss()).abs() < 0.1 * ge.mean_loss(),
            "loss {loss}"
        );
    }

    #[test]
    fn rate_limit_spacing_is_exact() {
        let t0 = Instant::now();
        // 1500 bytes at 12 Mbit/s take exactly 1 ms.
        let mut d = direction("rate=12mbit,delay=10ms", 1);
        for _ in 0..5 {
            assert_eq!(d.offer(vec![0; 1500], t0), Offered::Queued);
        }
        let out = drain(&mut d, t0 + Duration::from_secs(1));
        let times: Vec<Duration> = out.iter().map(|(at, _)| *at - t0).collect();
        let expected: Vec<Duration> = (1..=5).map(|i| Duration::from_millis(10 + i)).collect();
        assert_eq!(times, expected);
        // An idle link serialises a new packet from its arrival, not from the last one.
        let t1 = t0 + Duration::from_secs(2);
        d.offer(vec![0; 750], t1);
        assert_eq!(
            d.next_deadline(),
            Some(t1 + Duration::from_micros(500) + Duration::from_millis(10))
        );
    }

    #[test]
    fn queue_bound_tail_drops() {
        let t0 = Instant::now();
        // 12 Mbit/s, 10 ms of queue = 15 000 bytes = ten 1500-byte packets.
        let mut d = direction("rate=12mbit,queue=10ms", 1);
        let verdicts: Vec<Offered> = (0..15).map(|_| d.offer(vec![0; 1500], t0)).collect();
        assert!(verdicts[..10].iter().all(|v| *v == Offered::Queued));
        assert!(verdicts[10..]
            .iter()
            .all(|v| *v == Offered::DroppedQueueFull));
        let s = d.stats();
        assert_eq!((s.dropped_queue_full, s.max_queue_bytes), (5, 15_000));
        // After 1 ms one packet is serialised, so exactly one more fits.
        let t1 = t0 + Duration::from_millis(1);
        assert_eq!(d.offer(vec![0; 1500], t1), Offered::Queued);
        assert_eq!(d.offer(vec![0; 1], t1), Offered::DroppedQueueFull);
        // A packet larger than the whole queue never fits.
        let t2 = t0 + Duration::from_secs(1);
        assert_eq!(d.offer(vec![0; 15_001], t2), Offered::DroppedQueueFull);
        assert_eq!(d.offer(vec![0; 15_000], t2), Offered::Queued);
    }

    #[test]
    fn loss_happens_before_the_queue() {
        let t0 = Instant::now();
        let mut d = direction("loss=100%,rate=1mbit,queue=1500b", 1);
        for _ in 0..10 {
            assert_eq!(d.offer(vec![0; 1500], t0), Offered::LostRandom);
        }
        assert_eq!(d.stats().max_queue_bytes, 0);
    }

    #[test]
    fn safety_cap_bounds_memory_without_a_queue() {
        let t0 = Instant::now();
        let mut d = direction("delay=1s", 1);
        let packet = 1 << 20;
        let accepted = (0..100)
            .filter(|_| d.offer(vec![0; packet], t0) == Offered::Queued)
            .count();
        assert_eq!(accepted as u64, MAX_HELD_BYTES / packet as u64);
        assert_eq!(d.stats().dropped_queue_full, 100 - accepted as u64);
    }

    #[test]
    fn odd_sizes_do_not_panic() {
        let t0 = Instant::now();
        for spec in [
            "",
            "rate=1bit",
            "rate=1000gbit,queue=1b",
            "delay=1ms,jitter=5ms,loss=50%,ge=50%/50%/50%/50%",
        ] {
            let mut d = direction(spec, 5);
            for len in [0usize, 1, 65_535, 65_536, 10 << 20, 100 << 20] {
                d.offer(vec![0; len], t0);
            }
            // A far-future poll must hand everything out without overflow.
            let far = t0 + Duration::from_secs(86_400 * 365 * 100);
            while d.poll_transmit(far).is_some() {}
            let s = d.stats();
            assert_eq!(
                s.packets_in,
                s.delivered_packets + s.lost_random + s.lost_burst + s.dropped_queue_full
            );
        }
    }
}
