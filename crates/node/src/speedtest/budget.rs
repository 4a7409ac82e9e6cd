//! Speed tests per client address, sans IO: a token bucket per address (IPv6: per /64,
//! as in [`crate::abuse`]), so that one host cannot keep a node busy with speed tests,
//! or use it to send a third party traffic by the gigabyte (it cannot name a third
//! party anyway: HTTP runs over TCP, whose handshake a spoofed source never completes).
//!
//! Time is passed in, so every decision is testable without a clock.

use crate::abuse::Source;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Tests an address may run back to back.
///
/// `longhaul speedtest` runs one upload (and with `--download` one download) per node,
/// so 10 lets a person run it a few times in a row against a node without waiting.
pub const BURST: u32 = 10;

/// One more test every this long, once the burst is spent: 10 a minute, at most
/// 10 × 25 MB = 250 MB a minute (about 33 Mbit/s on average) from one address.
pub const REFILL: Duration = Duration::from_secs(6);

/// Addresses tracked at once. An address whose bucket is full again is forgotten, so
/// this bounds only the addresses that tested within the last minute (10 × 6 s); past
/// it, tests from new addresses are refused as busy, as the concurrency limit would.
pub const MAX_TRACKED: usize = 4096;

/// What the budget says to one more test from an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run it; a token was taken.
    Allowed,
    /// Refused: the address spent its burst; one token comes back after `retry_after`.
    Limited { retry_after: Duration },
    /// Refused: too many addresses are being tracked (see [`MAX_TRACKED`]).
    Full,
}

/// Token buckets by address.
#[derive(Debug)]
pub struct Budget {
    burst: u32,
    refill: Duration,
    max_tracked: usize,
    /// Tokens (in units of one test) and when they were last counted.
    buckets: HashMap<Source, (f64, Instant)>,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(BURST, REFILL, MAX_TRACKED)
    }
}

impl Budget {
    pub fn new(burst: u32, refill: Duration, max_tracked: usize) -> Self {
        Self {
            burst: burst.max(1),
            refill: refill.max(Duration::from_millis(1)),
            max_tracked: max_tracked.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes one test from `addr`'s bucket at `now`, or says why not.
    pub fn take(&mut self, addr: IpAddr, now: Instant) -> Decision {
        let source = Source::of(addr);
        if !self.buckets.contains_key(&source) && self.buckets.len() >= self.max_tracked {
            self.forget_full(now);
            if self.buckets.len() >= self.max_tracked {
                return Decision::Full;
            }
        }
        let burst = f64::from(self.burst);
        let refill = self.refill.as_secs_f64();
        let (tokens, counted) = self.buckets.entry(source).or_insert((burst, now));
        let earned = now.saturating_duration_since(*counted).as_secs_f64() / refill;
        *tokens = (*tokens + earned).min(burst);
        *counted = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Decision::Allowed;
        }
        let retry_after = Duration::from_secs_f64((1.0 - *tokens) * refill);
        Decision::Limited { retry_after }
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Forgets every address whose bucket has filled up again by `now`.
    fn forget_full(&mut self, now: Instant) {
        let burst = f64::from(self.burst);
        let refill = self.refill.as_secs_f64();
        self.buckets.retain(|_, (tokens, counted)| {
            *tokens + now.saturating_duration_since(*counted).as_secs_f64() / refill < burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn a_burst_then_one_test_per_refill() {
        let mut b = Budget::new(3, Duration::from_secs(6), 10);
        let t0 = Instant::now();
        let a = ip("203.0.113.7");
        for _ in 0..3 {
            assert_eq!(b.take(a, t0), Decision::Allowed);
        }
        assert_eq!(
            b.take(a, t0),
            Decision::Limited {
                retry_after: Duration::from_secs(6)
            }
        );
        // Two seconds on, a third of a token is back: four seconds to wait.
        let Decision::Limited { retry_after } = b.take(a, t0 + Duration::from_secs(2)) else {
            panic!("still limited");
        };
        assert!(
            (retry_after.as_secs_f64() - 4.0).abs() < 1e-6,
            "{retry_after:?}"
        );
        assert_eq!(b.take(a, t0 + Duration::from_secs(6)), Decision::Allowed);
        assert!(matches!(
            b.take(a, t0 + Duration::from_secs(6)),
            Decision::Limited { .. }
        ));
        // Another address has its own bucket; an IPv6 /64 is one address.
        assert_eq!(b.take(ip("203.0.113.8"), t0), Decision::Allowed);
        let mut v6 = |s| b.take(ip(s), t0);
        assert_eq!(v6("2001:db8::1"), Decision::Allowed);
        assert_eq!(v6("2001:db8::2"), Decision::Allowed);
        assert_eq!(v6("2001:db8::3"), Decision::Allowed);
        assert!(matches!(v6("2001:db8::4"), Decision::Limited { .. }));
    }

    #[test]
    fn a_long_pause_refills_no_more_than_the_burst() {
        let mut b = Budget::new(2, Duration::from_secs(1), 10);
        let t0 = Instant::now();
        let a = ip("198.51.100.1");
        b.take(a, t0);
        b.take(a, t0);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.take(a, later), Decision::Allowed);
        assert_eq!(b.take(a, later), Decision::Allowed);
        assert!(matches!(b.take(a, later), Decision::Limited { .. }));
    }

    #[test]
    fn tracking_is_bounded_and_full_buckets_are_forgotten() {
        let mut b = Budget::new(2, Duration::from_secs(1), 2);
        let t0 = Instant::now();
        assert_eq!(b.take(ip("192.0.2.1"), t0), Decision::Allowed);
        assert_eq!(b.take(ip("192.0.2.2"), t0), Decision::Allowed);
        assert_eq!(b.take(ip("192.0.2.3"), t0), Decision::Full);
        // A known address is still served while the table is full.
        assert_eq!(b.take(ip("192.0.2.1"), t0), Decision::Allowed);
        // A second on, 192.0.2.2's bucket is full again: it is forgotten, making room.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.take(ip("192.0.2.3"), t1), Decision::Allowed);
        assert_eq!(b.tracked(), 2);
    }
}
