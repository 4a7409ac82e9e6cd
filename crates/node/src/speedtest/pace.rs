//! Pacing arithmetic for one speed test, sans IO: how long to wait before moving more
//! bytes so that a test never goes faster than its bandwidth cap. The node paces what it
//! sends (the download) and what it reads (the upload; TCP's window carries the pace
//! back to the client), so every test costs the node at most its cap.

use std::time::Duration;

/// How long to wait, `elapsed` into a test that has moved `bytes`, before moving more,
/// so that the test's average stays at or below `bits_per_second` (0: no cap).
pub fn wait(bytes: u64, elapsed: Duration, bits_per_second: u64) -> Duration {
    if bits_per_second == 0 {
        return Duration::ZERO;
    }
    let due = Duration::from_secs_f64(bytes as f64 * 8.0 / bits_per_second as f64);
    due.saturating_sub(elapsed)
}

/// Bits per second of `bytes` moved in `elapsed`; 0 for no time at all.
pub fn bits_per_second(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    bytes as f64 * 8.0 / secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_until_the_bytes_are_due_at_the_cap() {
        // 1 MB at 8 Mbit/s is due after 1 s.
        let rate = 8_000_000;
        assert_eq!(
            wait(1_000_000, Duration::ZERO, rate),
            Duration::from_secs(1)
        );
        assert_eq!(
            wait(1_000_000, Duration::from_millis(400), rate),
            Duration::from_millis(600)
        );
        // Behind the pace (a slow client): no wait, and no credit is owed either.
        assert_eq!(
            wait(1_000_000, Duration::from_secs(3), rate),
            Duration::ZERO
        );
        assert_eq!(wait(0, Duration::ZERO, rate), Duration::ZERO);
    }

    #[test]
    fn no_cap_never_waits() {
        assert_eq!(wait(u64::MAX, Duration::ZERO, 0), Duration::ZERO);
    }

    #[test]
    fn throughput_of_no_time_is_zero() {
        assert_eq!(bits_per_second(10, Duration::ZERO), 0.0);
        assert_eq!(
            bits_per_second(1_000_000, Duration::from_secs(2)),
            4_000_000.0
        );
    }
}
