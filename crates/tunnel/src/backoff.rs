//! Reconnect delays: capped exponential backoff with full jitter.
//!
//! After the n-th failure in a row the wait is drawn uniformly from `[0, min(cap,
//! initial * 2^n))` ("full jitter", as in AWS's backoff study and cloudflared): edges that
//! lost an origin at the same moment spread their reconnects instead of arriving together.
//! Sans IO: the random draw is passed in, so the schedule is tested exactly.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(initial: Duration, cap: Duration) -> Self {
        Self {
            initial,
            cap: cap.max(initial),
            failures: 0,
        }
    }

    /// The bound of the next wait: `initial * 2^failures`, capped.
    pub fn bound(&self) -> Duration {
        // 2^20 * 1 ms is already 17 minutes: no cap anyone sets is above that.
        let factor = 1u32 << self.failures.min(20);
        self.initial.saturating_mul(factor).min(self.cap)
    }

    /// Records a failure and returns how long to wait, given `random` uniform in [0, 1).
    pub fn next_delay(&mut self, random: f64) -> Duration {
        let bound = self.bound();
        self.failures = self.failures.saturating_add(1);
        bound.mul_f64(random.clamp(0.0, 1.0))
    }

    /// A connection worked: the next failure starts from `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A uniform draw in [0, 1) from the OS generator (falls back to 0.5 if it fails).
pub fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(15));
        let bounds: Vec<u64> = (0..8)
            .map(|_| {
                let bound = b.bound().as_millis() as u64;
                b.next_delay(0.999_999);
                bound
            })
            .collect();
        assert_eq!(bounds, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
        for _ in 0..100 {
            b.next_delay(0.0);
        }
        assert_eq!(
            b.bound(),
            Duration::from_secs(15),
            "no overflow after many failures"
        );
    }

    #[test]
    fn delays_are_drawn_below_the_bound_and_reset_starts_over() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(15));
        assert_eq!(b.next_delay(0.0), Duration::ZERO);
        assert_eq!(b.next_delay(0.5), Duration::from_millis(500));
        assert_eq!(b.failures(), 2);
        b.reset();
        assert_eq!(b.next_delay(1.0), Duration::from_millis(500));
    }

    #[test]
    fn random_unit_is_in_range() {
        for _ in 0..1000 {
            let r = random_unit();
            assert!((0.0..1.0).contains(&r));
        }
    }
}
