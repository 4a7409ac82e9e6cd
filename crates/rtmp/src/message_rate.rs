//! How many messages a peer may send per second: a token bucket, time passed in.
//!
//! Every bound on bytes leaves one thing a peer controls: the number of messages. A
//! one-byte chunk can complete an empty message, so a million messages fit in a megabyte,
//! and each costs the node decoding, queueing, a tunnel frame and a hub offer however
//! small it is. Encoders send a few hundred messages a second at most; a peer sending
//! thousands is not one, and every message it sends takes CPU from honest streams on the
//! same node. [`MessageRate`] is the bucket the session spends one token from per decoded
//! message; an empty bucket ends the session with [`RateExceeded`], which says the rate.

use std::time::{Duration, Instant};

/// Default messages per second: 5,000. The busiest honest publisher sends about 107
/// messages a second per rendition (60 fps video and 48 kHz AAC, 46.9 frames/s: the
/// hub's queue sizing), and an FMLE-style connection carries one rendition; E-RTMP
/// multitrack with 4 video and 8 audio tracks is about 620 a second. 5,000 is eight
/// times that, and 47 times the common case.
pub const DEFAULT_MESSAGES_PER_SECOND: u32 = 5_000;

/// How many seconds of the rate a peer may send at once: 2. An edge that paused reading
/// an encoder (its relay queue full) takes what the socket held in one go when it
/// resumes; that queue pauses at 1 MiB, about 3,500 messages of 300-byte audio frames,
/// the densest honest backlog. Two seconds of 5,000 covers that with room.
pub const BURST_SECONDS: u32 = 2;

/// The bucket.
#[derive(Debug, Clone)]
pub struct MessageRate {
    per_second: u32,
    /// Tokens, in thousandths of a message (so that short gaps refill exactly).
    milli_tokens: u64,
    capacity: u64,
    last: Instant,
}

/// A peer sent more messages than its rate allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "sent more than {per_second} messages a second (bursts of at most {burst}); \
     encoders send a few hundred"
)]
pub struct RateExceeded {
    pub per_second: u32,
    pub burst: u64,
}

impl MessageRate {
    /// A full bucket for `per_second` messages a second with bursts of
    /// [`BURST_SECONDS`] worth. `per_second` 0 means no bound.
    pub fn new(per_second: u32, now: Instant) -> Self {
        let capacity = u64::from(per_second) * u64::from(BURST_SECONDS) * 1000;
        Self {
            per_second,
            milli_tokens: capacity,
            capacity,
            last: now,
        }
    }

    /// Spends one message at `now`.
    pub fn spend(&mut self, now: Instant) -> Result<(), RateExceeded> {
        if self.per_second == 0 {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(self.last);
        if elapsed > Duration::ZERO {
            self.last = now;
            // per_second tokens a second = per_second milli-tokens a millisecond.
            let earned =
                (elapsed.as_micros() as u64).saturating_mul(u64::from(self.per_second)) / 1000;
            self.milli_tokens = self.milli_tokens.saturating_add(earned).min(self.capacity);
        }
        if self.milli_tokens < 1000 {
            return Err(RateExceeded {
                per_second: self.per_second,
                burst: self.capacity / 1000,
            });
        }
        self.milli_tokens -= 1000;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut rate = MessageRate::new(100, t0);
        for _ in 0..200 {
            rate.spend(t0).unwrap();
        }
        let e = rate.spend(t0).unwrap_err();
        assert_eq!((e.per_second, e.burst), (100, 200));
        // 10 ms earn one message at 100 a second; 9 ms do not.
        assert!(rate.spend(t0 + Duration::from_millis(9)).is_err());
        assert!(rate.spend(t0 + Duration::from_millis(10)).is_ok());
        assert!(rate.spend(t0 + Duration::from_millis(10)).is_err());
    }

    #[test]
    fn a_steady_peer_under_the_rate_never_runs_out() {
        let t0 = Instant::now();
        let mut rate = MessageRate::new(100, t0);
        // 99 a second for a minute, evenly.
        for i in 0..99 * 60u64 {
            let now = t0 + Duration::from_micros(i * 1_000_000 / 99);
            rate.spend(now).unwrap();
        }
    }

    #[test]
    fn the_bucket_refills_no_further_than_its_burst() {
        let t0 = Instant::now();
        let mut rate = MessageRate::new(10, t0);
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..20 {
            rate.spend(later).unwrap();
        }
        assert!(rate.spend(later).is_err());
    }

    #[test]
    fn zero_is_no_bound() {
        let t0 = Instant::now();
        let mut rate = MessageRate::new(0, t0);
        for _ in 0..100_000 {
            rate.spend(t0).unwrap();
        }
    }

    #[test]
    fn time_going_backwards_earns_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut rate = MessageRate::new(1, t0);
        rate.spend(t0).unwrap();
        rate.spend(t0).unwrap();
        assert!(rate.spend(t0 - Duration::from_secs(5)).is_err());
    }
}
