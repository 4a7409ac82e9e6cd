//! When the soak's publishers and lurking players come and go: plain code with the
//! randomness seeded and time passed in, so the schedule repeats and is tested without
//! sockets.
//!
//! A *slot* is one publisher that keeps coming back: it publishes a *session*
//! (`--duration` of media, its own player at the origin measuring it), unpublishes,
//! waits a gap (between half and 1.5 times `--gap`, at random, so slots drift apart),
//! and publishes again, until a session would no longer end before the load stops.
//!
//! Consecutive sessions of a slot alternate between renditions 1 and 2 of the slot's
//! entry (`{id}_1`, `{id}_2`): a session's player attaches after its publish started,
//! and with the previous session's stream still winding down at the origin under the
//! same name, the player could attach to that one and see it end, which would count
//! the new session's frames as lost. A reconnect under the same name (a takeover) is
//! the hub's and the tests' business, not a soak's.
//!
//! A *lurker* is a player that joins a random slot's stream for a random while and
//! leaves: churn of players in the middle of streams, measured by nothing but the
//! nodes' memory.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

/// A slot's sessions.
#[derive(Debug, Clone, Copy)]
pub struct Churn {
    /// Average pause between two sessions of a slot.
    pub gap: Duration,
    /// Media per session.
    pub session: Duration,
    /// A keyframe interval: the most a session waits for its phase.
    pub gop: Duration,
    pub slots: usize,
    pub seed: u64,
}

impl Churn {
    /// The pause after session `i` of slot `slot`: uniform in [gap/2, 3·gap/2].
    pub fn gap(&self, slot: usize, i: u32) -> Duration {
        let mut rng = SmallRng::seed_from_u64(self.mix(slot as u64, u64::from(i)));
        self.gap.mul_f64(rng.gen_range(0.5..=1.5))
    }

    /// Whether a session may start at `now` when the load stops at `end`: its phase and
    /// media must fit before then (what follows the media, a drain that ends as soon as
    /// every frame is in and the unpublish, runs past the end, bounded by the stream's
    /// own limit).
    pub fn may_start(&self, now: Instant, end: Instant) -> bool {
        now + self.gop + self.session <= end
    }

    /// The stream index of session `i` of slot `slot`: unique in the run (its stamps,
    /// its phase and its frame sizes come from it).
    pub fn index(&self, slot: usize, i: u32) -> usize {
        i as usize * self.slots + slot
    }

    /// The stream name of session `i` of entry `id` (see the module docs).
    pub fn name(id: &str, i: u32) -> String {
        format!("{id}_{}", 1 + i % 2)
    }

    fn mix(&self, a: u64, b: u64) -> u64 {
        self.seed ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
    }
}

/// What one lurker does next: watch stream `name_of(slot, rendition)` for `watch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lurk {
    pub slot: usize,
    /// 1 or 2.
    pub rendition: u32,
    pub watch: Duration,
}

/// A lurker's choices, seeded.
#[derive(Debug, Clone)]
pub struct Lurker {
    rng: SmallRng,
    slots: usize,
    longest: Duration,
}

impl Lurker {
    /// Lurker `n` of a soak over `slots` slots, watching at most `longest` at a time.
    pub fn new(seed: u64, n: usize, slots: usize, longest: Duration) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed ^ (n as u64 + 1).wrapping_mul(0xd6e8_feb8_6659_fd93)),
            slots: slots.max(1),
            longest,
        }
    }

    /// The next stream to join and how long to stay: a random slot and rendition, from
    /// a tenth of `longest` to all of it.
    pub fn next_lurk(&mut self) -> Lurk {
        Lurk {
            slot: self.rng.gen_range(0..self.slots),
            rendition: self.rng.gen_range(1..=2),
            watch: self.longest.mul_f64(self.rng.gen_range(0.1..=1.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn churn() -> Churn {
        Churn {
            gap: Duration::from_secs(4),
            session: Duration::from_secs(30),
            gop: Duration::from_secs(2),
            slots: 300,
            seed: 7,
        }
    }

    #[test]
    fn gaps_stay_in_range_spread_and_repeat() {
        let c = churn();
        let gaps: Vec<Duration> = (0..300).map(|slot| c.gap(slot, 3)).collect();
        assert!(gaps
            .iter()
            .all(|g| (Duration::from_secs(2)..=Duration::from_secs(6)).contains(g)));
        let short = gaps.iter().filter(|g| **g < Duration::from_secs(4)).count();
        assert!((100..200).contains(&short), "{short} of 300 below the mean");
        assert_eq!(c.gap(17, 3), gaps[17], "seeded: the same gap again");
        assert_ne!(c.gap(17, 4), c.gap(17, 3));
    }

    #[test]
    fn a_session_starts_only_if_its_media_ends_before_the_load() {
        let c = churn();
        let now = Instant::now();
        assert!(c.may_start(now, now + Duration::from_secs(32)));
        assert!(!c.may_start(now, now + Duration::from_secs(31)));
    }

    #[test]
    fn indexes_are_unique_and_names_alternate() {
        let c = churn();
        let mut seen = std::collections::HashSet::new();
        for slot in 0..c.slots {
            for i in 0..50 {
                assert!(seen.insert(c.index(slot, i)));
            }
        }
        assert_eq!(Churn::name("1_abcd", 0), "1_abcd_1");
        assert_eq!(Churn::name("1_abcd", 1), "1_abcd_2");
        assert_eq!(Churn::name("1_abcd", 2), "1_abcd_1");
    }

    #[test]
    fn lurks_cover_the_slots_within_bounds() {
        let mut l = Lurker::new(1, 0, 5, Duration::from_secs(10));
        let lurks: Vec<Lurk> = (0..200).map(|_| l.next_lurk()).collect();
        for slot in 0..5 {
            assert!(
                lurks.iter().any(|k| k.slot == slot),
                "slot {slot} never watched"
            );
        }
        assert!(lurks.iter().all(|k| (1..=2).contains(&k.rendition)));
        assert!(lurks
            .iter()
            .all(|k| (Duration::from_secs(1)..=Duration::from_secs(10)).contains(&k.watch)));
        let mut again = Lurker::new(1, 0, 5, Duration::from_secs(10));
        assert_eq!(again.next_lurk(), lurks[0]);
    }
}
