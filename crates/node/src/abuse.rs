//! Publish abuse, sans IO: a source that keeps failing to publish is slowed, then refused
//! for a while, before it costs the node anything more.
//!
//! This is fail2ban's rule applied to publishes: failures (a publish refused for its
//! credentials) are counted per source within a sliding window (`findtime`); after
//! `slow_after` of them each further attempt is delayed before it is answered, a tarpit
//! that doubles from [`FIRST_DELAY`] up to `max_delay`; at `ban_after` (`maxretry`) the
//! source is refused at once for `ban` (`bantime`). The node decides what a failure is and
//! what to do with an [`Admission`]; [`crate::abuse_gate`] is that part, shared by both
//! nodes. Time is passed in, so every rule here is tested without sockets or sleeps.
//!
//! - **Sources.** An IPv4 address is one source; an IPv6 address counts for its whole
//!   /64, which one host or one site typically owns (a host picks new addresses in it at
//!   will: privacy addresses, one per connection if it likes). An IPv4-mapped IPv6
//!   address (`::ffff:a.b.c.d`, from a dual-stack socket) is its IPv4 address.
//! - **A success resets nothing.** An attacker holding one valid token (any customer
//!   holds one for their own entry) would otherwise publish it between guesses of other
//!   entries' tokens and never be slowed. A legitimate encoder loses nothing by it: its
//!   failures age out of the window. An encoder whose token was regenerated and that keeps
//!   reconnecting with the old one never succeeds anyway: it is slowed, then banned, and
//!   until its operator fixes it, it costs the origin `ban_after` round trips per ban
//!   rather than one every few seconds. The price is paid by sources shared by many
//!   encoders (a studio behind one NAT address): one misconfigured encoder there delays
//!   and then refuses new publishes of the others too (running streams are never
//!   touched). Such a network belongs on the ignore list.
//! - **Attempts refused while banned are not failures**: they never reached a token check,
//!   and a ban is not prolonged by knocking (fail2ban's firewall rule does not see those
//!   attempts either). When it ends, the source starts afresh.
//! - **The ignore list** (fail2ban's `ignoreip`): networks never slowed, refused or
//!   counted, e.g. the operator's monitoring, which may publish with a probe token.
//! - **Memory is bounded**: at most `max_tracked` sources. When full, a new source evicts
//!   the counted (not banned) source whose failures are nearest to leaving the window: the
//!   quietest one, which is the least harmful to forget; a banned source is evicted only
//!   when every tracked source is banned, the one whose ban ends first. So a spray from
//!   more addresses than that costs no memory beyond it, and forgets only quiet sources
//!   (each forgotten one gets its free attempts again); a source that keeps failing stays
//!   counted, and a ban cannot be shed by spraying (that would take `ban_after` failures
//!   from each of `max_tracked` sources). Sources are hashed with std's `HashMap`
//!   (SipHash with a random key): addresses an attacker picks cannot make it slow.
//! - **Expired state is pruned** on every call: up to [`PRUNE_BATCH`] records whose
//!   failures all left the window or whose ban ended. A call adds at most one record, so
//!   expired records never pile up, and no call holds its lock for a scan. The rules
//!   never depend on pruning: a record past its time is read as empty.
//! - **No input panics**: a `now` earlier than one already seen is taken as the latest
//!   seen (the guard's clock never goes back); limits out of range are clamped.

use ipnet::{IpNet, Ipv4Net};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Delay of the first slowed attempt; each failure after it doubles the next one, up to
/// `max_delay`. 1 s: a person retrying by hand does not notice it, an encoder in a
/// reconnect loop is held back from the first slowed attempt, and doubling reaches the
/// default cap ([`DEFAULT_MAX_DELAY`], 8 s) in four steps.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);

/// Default window in which failures count: 10 minutes, fail2ban's `findtime` for sshd.
/// Long enough to span an encoder's whole reconnect loop (OBS retries a dropped stream
/// every 2 s, 25 times by default: under a minute), short enough that a person's typos
/// are forgotten while they fetch the right token.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(600);

/// Default failures after which attempts are delayed: 5, fail2ban's `maxretry` for sshd.
/// A person pasting a URL by hand gets that many tries for free; an encoder retrying a
/// stale token reaches it within seconds (OBS: 2 s apart; ffmpeg under a supervisor:
/// systemd restarts it after 100 ms unless told otherwise).
pub const DEFAULT_SLOW_AFTER: u32 = 5;

/// Default failures after which a source is refused at once: 10, twice `maxretry`,
/// because encoders retry by themselves and a person may still be at it. The five slowed
/// attempts in between take at least 1 + 2 + 4 + 8 + 8 = 23 s, so an encoder in a tight
/// loop is banned about half a minute after its first failure, and a stale-token encoder
/// costs the origin 10 round trips per ban instead of one every 2 s (30 times fewer).
pub const DEFAULT_BAN_AFTER: u32 = 10;

/// Default ban: 10 minutes, fail2ban's `bantime` for sshd. An operator who fixes the
/// token of a banned encoder waits at most this long, and is told how long in the
/// refusal (`try again in N s`, which OBS logs and ffmpeg prints).
pub const DEFAULT_BAN: Duration = Duration::from_secs(600);

/// Default cap of the delay: 8 s, under `ingest.handshake_timeout_secs` (10 s), for which
/// any connection may already sit idle, so a tarpitted attempt holds a connection slot
/// no longer than one that never asks to publish; and well under librtmp's 30 s socket
/// timeout (OBS's RTMP code), so the encoder hears the answer rather than timing out.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(8);

/// Default number of sources tracked at once: 10,000, as many as a node's default
/// connection cap (`ingest.max_connections`). A record takes about 250 bytes (map entry
/// 80 B plus the table's slack, ordered-index entry 32 B plus the tree's, failure times
/// 16 B each in a buffer of at least 4), up to about 450 with nine failures in its window
/// (the default `ban_after` less one): 2.5 to 4.5 MB when full.
pub const DEFAULT_MAX_TRACKED: usize = 10_000;

/// Most failures a source may be allowed before a ban: a record keeps the time of each
/// failure in the window, so this bounds a record's size (99 times, 2 KB with the
/// buffer's slack). Past 100, the guard would not be guarding.
pub const MAX_BAN_AFTER: u32 = 100;

/// Longest window or ban: a day. Longer is a typo, and would hold a shared address's old
/// failures against every encoder behind it for days.
pub const MAX_PERIOD: Duration = Duration::from_secs(86_400);

/// Longest delay cap: 30 s, librtmp's socket timeout; past it encoders give up before
/// they hear why.
pub const MAX_DELAY_CAP: Duration = Duration::from_secs(30);

/// Most sources tracked: a million records are 250 to 450 MB; more is a typo.
pub const MAX_TRACKED: usize = 1_000_000;

/// Expired records removed per call at most: each call adds at most one record, so any
/// batch above one keeps up; 32 keeps a call's work small after a large spray expires.
pub const PRUNE_BATCH: usize = 32;

/// What to do with a publish attempt from a source, before deciding on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go on at once.
    Allow,
    /// Wait this long, then go on: the source failed `slow_after` times or more.
    Delay(Duration),
    /// Refuse at once: the source is banned for this much longer.
    Refuse { retry_after: Duration },
}

/// A source crossing a threshold by a failure, for the node to log and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    /// `failures` (= `slow_after`) in the window: its next attempts are delayed.
    Slowed { failures: u32 },
    /// `ban_after` failures in the window: its attempts are refused for `ban`.
    Banned { ban: Duration },
}

/// Who the guard counts: an IPv4 address, or the /64 an IPv6 address is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    V4(Ipv4Addr),
    /// The upper 64 bits of the address.
    V6Net(u64),
}

impl Source {
    /// The source `addr` counts for (IPv4-mapped IPv6 as IPv4).
    pub fn of(addr: IpAddr) -> Source {
        match addr.to_canonical() {
            IpAddr::V4(a) => Source::V4(a),
            IpAddr::V6(a) => Source::V6Net((u128::from(a) >> 64) as u64),
        }
    }
}

/// `203.0.113.7`, or `2001:db8:1:2::/64`.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::V4(a) => write!(f, "{a}"),
            Source::V6Net(p) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*p) << 64)),
        }
    }
}

/// The guard's thresholds; see the module docs and the defaults for what each does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbuseLimits {
    /// Failures count for this long (`findtime`).
    pub window: Duration,
    /// Failures in the window after which attempts are delayed.
    pub slow_after: u32,
    /// Failures in the window after which the source is banned (`maxretry`).
    pub ban_after: u32,
    /// How long a ban lasts (`bantime`).
    pub ban: Duration,
    /// The most an attempt is delayed; zero: never delayed.
    pub max_delay: Duration,
    /// Sources tracked at once.
    pub max_tracked: usize,
    /// Networks never slowed, refused or counted (`ignoreip`).
    pub ignore: Vec<IpNet>,
}

impl Default for AbuseLimits {
    fn default() -> Self {
        Self {
            window: DEFAULT_WINDOW,
            slow_after: DEFAULT_SLOW_AFTER,
            ban_after: DEFAULT_BAN_AFTER,
            ban: DEFAULT_BAN,
            max_delay: DEFAULT_MAX_DELAY,
            max_tracked: DEFAULT_MAX_TRACKED,
            ignore: Vec::new(),
        }
    }
}

impl AbuseLimits {
    /// The same limits within the ranges the guard works in: `1..=MAX_BAN_AFTER`
    /// failures, `slow_after` at most `ban_after` (equal: never slowed), periods of 1 ms
    /// to [`MAX_PERIOD`], a delay cap up to [`MAX_DELAY_CAP`], `1..=MAX_TRACKED` sources.
    /// The config's validation refuses what this would change; this keeps the guard whole
    /// whoever builds it. IPv4-mapped ignore networks become IPv4 ones.
    fn clamped(mut self) -> Self {
        let period = |d: Duration| d.clamp(Duration::from_millis(1), MAX_PERIOD);
        self.window = period(self.window);
        self.ban = period(self.ban);
        self.ban_after = self.ban_after.clamp(1, MAX_BAN_AFTER);
        self.slow_after = self.slow_after.clamp(1, self.ban_after);
        self.max_delay = self.max_delay.min(MAX_DELAY_CAP);
        self.max_tracked = self.max_tracked.clamp(1, MAX_TRACKED);
        self.ignore = self.ignore.into_iter().map(unmapped).collect();
        self
    }
}

/// `::ffff:10.0.0.0/104` as `10.0.0.0/8`: addresses are matched in their IPv4 form.
fn unmapped(net: IpNet) -> IpNet {
    if let IpNet::V6(n) = net {
        if let (Some(v4), Some(len)) = (n.addr().to_ipv4_mapped(), n.prefix_len().checked_sub(96)) {
            if let Ok(v4net) = Ipv4Net::new(v4, len) {
                return IpNet::V4(v4net.trunc());
            }
        }
    }
    net.trunc()
}

/// What the guard knows of one source.
#[derive(Debug)]
struct Record {
    /// Times of its failures in the window, oldest first; at most `ban_after - 1`
    /// between calls (the failure that makes `ban_after` bans and clears them).
    failures: VecDeque<Instant>,
    /// While banned: when the ban ends.
    banned_until: Option<Instant>,
    /// When the record may go: its newest failure leaves the window, or its ban ends. Its
    /// key in `watched` or `banned`.
    expires: Instant,
}

/// Counts, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuardStats {
    /// Sources with failures in the window or a ban.
    pub tracked: usize,
    /// Sources banned now.
    pub banned: usize,
    /// Sources forgotten early because `max_tracked` were tracked, since the start.
    pub evictions: u64,
}

/// The per-source failure counts and bans of one node.
#[derive(Debug)]
pub struct AbuseGuard {
    limits: AbuseLimits,
    records: HashMap<Source, Record>,
    /// Unbanned records by `expires`: pruning and eviction take the first.
    watched: BTreeSet<(Instant, Source)>,
    /// Banned records by `expires` (the ban's end).
    banned: BTreeSet<(Instant, Source)>,
    /// The latest `now` seen.
    clock: Option<Instant>,
    evictions: u64,
}

impl AbuseGuard {
    pub fn new(limits: AbuseLimits) -> Self {
        Self {
            limits: limits.clamped(),
            records: HashMap::new(),
            watched: BTreeSet::new(),
            banned: BTreeSet::new(),
            clock: None,
            evictions: 0,
        }
    }

    /// The limits in force (after clamping).
    pub fn limits(&self) -> &AbuseLimits {
        &self.limits
    }

    /// Whether `addr` is on the ignore list.
    pub fn is_ignored(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.limits.ignore.iter().any(|net| net.contains(&addr))
    }

    /// What to do with a publish attempt from `addr` at `now`.
    pub fn check(&mut self, addr: IpAddr, now: Instant) -> Admission {
        let now = self.tick(now);
        if self.is_ignored(addr) {
            return Admission::Allow;
        }
        let Some(record) = self.records.get(&Source::of(addr)) else {
            return Admission::Allow;
        };
        if let Some(until) = record.banned_until {
            return match until.checked_duration_since(now) {
                Some(left) if !left.is_zero() => Admission::Refuse { retry_after: left },
                // The ban ended (the record is pruned soon): a fresh start.
                _ => Admission::Allow,
            };
        }
        let failures = self.in_window(record, now);
        match self.delay_after(failures) {
            Some(delay) => Admission::Delay(delay),
            None => Admission::Allow,
        }
    }

    /// A publish from `addr` was refused for its credentials at `now`. Returns the
    /// threshold this failure crossed, if any.
    pub fn record_failure(&mut self, addr: IpAddr, now: Instant) -> Option<Escalation> {
        let now = self.tick(now);
        if self.is_ignored(addr) {
            return None;
        }
        let source = Source::of(addr);
        if let Some(record) = self.records.get(&source) {
            match record.banned_until {
                // Decided before the ban (attempts in flight): the ban stands as it is.
                Some(until) if until > now => return None,
                // The ban ended and was not pruned yet: start afresh.
                Some(_) => self.remove(source),
                None => {}
            }
        }
        if !self.records.contains_key(&source) {
            self.make_room();
            self.records.insert(
                source,
                Record {
                    failures: VecDeque::new(),
                    banned_until: None,
                    expires: now,
                },
            );
            self.watched.insert((now, source));
        }
        let limits = &self.limits;
        let Some(record) = self.records.get_mut(&source) else {
            return None; // not reached: the record was there or was just inserted
        };
        while let Some(&t) = record.failures.front() {
            if now.saturating_duration_since(t) < limits.window {
                break;
            }
            record.failures.pop_front();
        }
        record.failures.push_back(now);
        let failures = u32::try_from(record.failures.len()).unwrap_or(u32::MAX);
        self.watched.remove(&(record.expires, source));
        if failures >= limits.ban_after {
            let until = later(now, limits.ban);
            record.failures = VecDeque::new();
            record.banned_until = Some(until);
            record.expires = until;
            self.banned.insert((until, source));
            return Some(Escalation::Banned { ban: limits.ban });
        }
        record.expires = later(now, limits.window);
        self.watched.insert((record.expires, source));
        (failures == limits.slow_after).then_some(Escalation::Slowed { failures })
    }

    /// Sources tracked and banned at `now` (after pruning all that expired), evictions.
    pub fn stats(&mut self, now: Instant) -> GuardStats {
        let now = self.advance(now);
        self.prune(now, usize::MAX);
        GuardStats {
            tracked: self.records.len(),
            banned: self.banned.len(),
            evictions: self.evictions,
        }
    }

    /// Records held now, expired or not (at most `max_tracked`).
    pub fn tracked(&self) -> usize {
        self.records.len()
    }

    /// The delay of an attempt after `failures` in the window, if it is slowed.
    fn delay_after(&self, failures: u32) -> Option<Duration> {
        let steps = failures.checked_sub(self.limits.slow_after)?;
        let factor = 1u32.checked_shl(steps).unwrap_or(u32::MAX);
        let delay = FIRST_DELAY
            .saturating_mul(factor)
            .min(self.limits.max_delay);
        (!delay.is_zero()).then_some(delay)
    }

    /// Failures of `record` within the window at `now`.
    fn in_window(&self, record: &Record, now: Instant) -> u32 {
        let n = record
            .failures
            .iter()
            .filter(|&&t| now.saturating_duration_since(t) < self.limits.window)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Moves the clock to `now` unless that is earlier, and prunes a batch.
    fn tick(&mut self, now: Instant) -> Instant {
        let now = self.advance(now);
        self.prune(now, PRUNE_BATCH);
        now
    }

    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.clock.map_or(now, |c| c.max(now));
        self.clock = Some(now);
        now
    }

    /// Removes up to `budget` records that expired by `now`.
    fn prune(&mut self, now: Instant, mut budget: usize) {
        for banned in [false, true] {
            while budget > 0 {
                let index = if banned {
                    &mut self.banned
                } else {
                    &mut self.watched
                };
                let Some(&(expires, source)) = index.first() else {
                    break;
                };
                if expires > now {
                    break;
                }
                index.pop_first();
                self.records.remove(&source);
                budget -= 1;
            }
        }
    }

    /// Evicts one record if `max_tracked` are held: the unbanned one nearest to expiring,
    /// or failing that the ban that ends first.
    fn make_room(&mut self) {
        if self.records.len() < self.limits.max_tracked {
            return;
        }
        let victim = self.watched.pop_first().or_else(|| self.banned.pop_first());
        if let Some((_, source)) = victim {
            self.records.remove(&source);
            self.evictions += 1;
        }
    }

    fn remove(&mut self, source: Source) {
        if let Some(r) = self.records.remove(&source) {
            let index = if r.banned_until.is_some() {
                &mut self.banned
            } else {
                &mut self.watched
            };
            index.remove(&(r.expires, source));
        }
    }
}

/// `now + d`. Instants come from the monotonic clock and `d` is at most [`MAX_PERIOD`],
/// so this does not overflow; if it ever did, the record would expire at once (the
/// source forgotten) rather than the node panic.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn limits(slow_after: u32, ban_after: u32) -> AbuseLimits {
        AbuseLimits {
            window: secs(60.0),
            slow_after,
            ban_after,
            ban: secs(120.0),
            max_delay: secs(8.0),
            max_tracked: 100,
            ignore: Vec::new(),
        }
    }

    /// One step of a table: at `at` seconds, a check expecting `Admission`, or a failure
    /// expecting an escalation.
    #[derive(Debug)]
    enum Step {
        Check(f64, Admission),
        Fail(f64, Option<Escalation>),
    }
    use Step::*;

    const ALLOW: Admission = Admission::Allow;

    fn delay(s: f64) -> Admission {
        Admission::Delay(secs(s))
    }

    fn refuse(s: f64) -> Admission {
        Admission::Refuse {
            retry_after: secs(s),
        }
    }

    fn run(guard: &mut AbuseGuard, addr: &str, start: Instant, steps: &[Step]) {
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Check(at, want) => {
                    let got = guard.check(ip(addr), start + secs(at));
                    assert_eq!(got, want, "step {i}: {step:?}");
                }
                Fail(at, want) => {
                    let got = guard.record_failure(ip(addr), start + secs(at));
                    assert_eq!(got, want, "step {i}: {step:?}");
                }
            }
        }
    }

    const SLOWED: Option<Escalation> = Some(Escalation::Slowed { failures: 3 });

    fn banned() -> Option<Escalation> {
        Some(Escalation::Banned { ban: secs(120.0) })
    }

    #[test]
    fn free_then_slowed_doubling_to_the_cap_then_banned() {
        let mut g = AbuseGuard::new(limits(3, 8));
        let t = Instant::now();
        run(
            &mut g,
            "192.0.2.1",
            t,
            &[
                Check(0.0, ALLOW),
                Fail(0.0, None),
                Check(1.0, ALLOW),
                Fail(1.0, None),
                Check(2.0, ALLOW),
                Fail(2.0, SLOWED),
                Check(3.0, delay(1.0)),
                Fail(4.0, None),
                Check(5.0, delay(2.0)),
                Fail(7.0, None),
                Check(8.0, delay(4.0)),
                Fail(12.0, None),
                Check(13.0, delay(8.0)),
                Fail(21.0, None),
                // Capped at max_delay from here.
                Check(22.0, delay(8.0)),
                Fail(30.0, banned()),
                Check(30.0, refuse(120.0)),
                Check(100.0, refuse(50.0)),
                Check(149.5, refuse(0.5)),
                // The ban ends: a fresh start, its failures forgotten.
                Check(150.0, ALLOW),
                Fail(151.0, None),
                Check(152.0, ALLOW),
            ],
        );
    }

    #[test]
    fn failures_leave_the_window_one_by_one() {
        let mut g = AbuseGuard::new(limits(2, 5));
        let t = Instant::now();
        run(
            &mut g,
            "192.0.2.1",
            t,
            &[
                Fail(0.0, None),
                Fail(30.0, Some(Escalation::Slowed { failures: 2 })),
                Check(31.0, delay(1.0)),
                // The first failure is 60 s old: out of the 60 s window.
                Check(59.9, delay(1.0)),
                Check(60.0, ALLOW),
                // One left in the window; the next failure slows again.
                Fail(61.0, Some(Escalation::Slowed { failures: 2 })),
                Check(62.0, delay(1.0)),
                Check(91.0, ALLOW),
                Check(121.0, ALLOW),
            ],
        );
        // Everything left the window by 121 s: the record is pruned.
        assert_eq!(g.stats(t + secs(121.0)).tracked, 0);
    }

    #[test]
    fn failures_spread_wider_than_the_window_never_ban() {
        let mut g = AbuseGuard::new(limits(3, 4));
        let t = Instant::now();
        for i in 0..1000 {
            let at = t + secs(f64::from(i) * 25.0);
            assert_ne!(g.check(ip("192.0.2.1"), at), refuse(120.0), "attempt {i}");
            // At most 3 in any 60 s window: slowed (3 = slow_after), never banned.
            assert!(
                !matches!(
                    g.record_failure(ip("192.0.2.1"), at),
                    Some(Escalation::Banned { .. })
                ),
                "attempt {i}"
            );
        }
    }

    #[test]
    fn equal_thresholds_ban_without_slowing_and_a_zero_cap_never_slows() {
        let mut g = AbuseGuard::new(limits(3, 3));
        let t = Instant::now();
        run(
            &mut g,
            "192.0.2.1",
            t,
            &[
                Fail(0.0, None),
                Fail(0.0, None),
                Check(0.0, ALLOW),
                Fail(0.0, banned()),
                Check(0.0, refuse(120.0)),
            ],
        );
        let mut g = AbuseGuard::new(AbuseLimits {
            max_delay: Duration::ZERO,
            ..limits(1, 3)
        });
        run(
            &mut g,
            "192.0.2.1",
            t,
            &[
                Fail(0.0, Some(Escalation::Slowed { failures: 1 })),
                Check(0.0, ALLOW),
                Fail(0.0, None),
                Check(0.0, ALLOW),
                Fail(0.0, banned()),
            ],
        );
    }

    #[test]
    fn failures_during_a_ban_do_not_prolong_it() {
        let mut g = AbuseGuard::new(limits(1, 2));
        let t = Instant::now();
        run(
            &mut g,
            "192.0.2.1",
            t,
            &[
                Fail(0.0, Some(Escalation::Slowed { failures: 1 })),
                Fail(0.0, banned()),
                // Attempts decided before the ban come back as failures after it.
                Fail(10.0, None),
                Fail(100.0, None),
                Check(100.0, refuse(20.0)),
                Check(120.0, ALLOW),
                Fail(120.0, Some(Escalation::Slowed { failures: 1 })),
            ],
        );
    }

    #[test]
    fn a_record_past_its_time_is_read_as_empty_before_it_is_pruned() {
        let mut g = AbuseGuard::new(limits(1, 1));
        let t = Instant::now();
        for i in 0..100u32 {
            g.record_failure(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), t);
        }
        // Every ban ends at t + 120 s; a call prunes the first PRUNE_BATCH of them only.
        let end = t + secs(120.0);
        assert_eq!(g.check(ip("10.0.0.99"), end), ALLOW);
        assert!(g.tracked() > 50, "{}", g.tracked());
        assert_eq!(g.record_failure(ip("10.0.0.98"), end), banned());
        assert_eq!(g.check(ip("10.0.0.98"), end), refuse(120.0));
    }

    #[test]
    fn sources_are_counted_apart() {
        let mut g = AbuseGuard::new(limits(1, 2));
        let t = Instant::now();
        g.record_failure(ip("192.0.2.1"), t);
        g.record_failure(ip("192.0.2.1"), t);
        assert_eq!(g.check(ip("192.0.2.1"), t), refuse(120.0));
        assert_eq!(g.check(ip("192.0.2.2"), t), ALLOW);
        assert_eq!(g.check(ip("2001:db8::1"), t), ALLOW);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let mut g = AbuseGuard::new(limits(1, 3));
        let t = Instant::now();
        // Three addresses of one /64 (a host rotating privacy addresses): one source.
        g.record_failure(ip("2001:db8:1:2::1"), t);
        g.record_failure(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), t);
        assert_eq!(
            g.record_failure(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), t),
            banned()
        );
        assert_eq!(g.check(ip("2001:db8:1:2::99"), t), refuse(120.0));
        // The next /64 is someone else.
        assert_eq!(g.check(ip("2001:db8:1:3::1"), t), ALLOW);
        assert_eq!(
            Source::of(ip("2001:db8:1:2::1")).to_string(),
            "2001:db8:1:2::/64"
        );

        // From a dual-stack socket, an IPv4 client is ::ffff:a.b.c.d: the same source.
        g.record_failure(ip("::ffff:198.51.100.7"), t);
        g.record_failure(ip("198.51.100.7"), t);
        g.record_failure(ip("::ffff:198.51.100.7"), t);
        assert_eq!(g.check(ip("198.51.100.7"), t), refuse(120.0));
        assert_eq!(
            Source::of(ip("::ffff:198.51.100.7")),
            Source::V4("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            Source::of(ip("::ffff:198.51.100.7")).to_string(),
            "198.51.100.7"
        );
    }

    #[test]
    fn the_ignore_list_is_never_slowed_refused_or_counted() {
        let ignore = ["10.0.0.0/8", "2001:db8:f::/48", "::ffff:192.0.2.0/120"]
            .iter()
            .map(|s| s.parse().expect("net"))
            .collect();
        let mut g = AbuseGuard::new(AbuseLimits {
            ignore,
            ..limits(1, 2)
        });
        let t = Instant::now();
        for addr in [
            "10.1.2.3",
            "::ffff:10.9.9.9",
            "2001:db8:f:1::5",
            "192.0.2.77",
        ] {
            for i in 0..20 {
                let at = t + secs(f64::from(i));
                assert_eq!(g.check(ip(addr), at), ALLOW, "{addr}");
                assert_eq!(g.record_failure(ip(addr), at), None, "{addr}");
            }
            assert!(g.is_ignored(ip(addr)), "{addr}");
        }
        assert_eq!(g.tracked(), 0);
        // Next door is not ignored.
        g.record_failure(ip("11.0.0.1"), t);
        g.record_failure(ip("11.0.0.1"), t);
        assert_eq!(g.check(ip("11.0.0.1"), t), refuse(120.0));
    }

    #[test]
    fn a_spray_of_a_million_sources_stays_bounded_and_keeps_the_bans() {
        let max = 1000;
        let mut g = AbuseGuard::new(AbuseLimits {
            max_tracked: max,
            ..limits(3, 5)
        });
        let t = Instant::now();
        // One source in a tight loop, banned before the spray starts.
        for _ in 0..5 {
            g.record_failure(ip("192.0.2.1"), t);
        }
        let sprayed = 1_000_000u32;
        for i in 0..sprayed {
            let at = t + Duration::from_micros(u64::from(i));
            // Half IPv4, half distinct IPv6 /64s.
            let addr = if i % 2 == 0 {
                IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i))
            } else {
                IpAddr::V6(Ipv6Addr::from(
                    (0x2001_0db8_u128 << 96) | (u128::from(i) << 64),
                ))
            };
            g.check(addr, at);
            g.record_failure(addr, at);
            assert!(g.tracked() <= max, "{} tracked after {i}", g.tracked());
        }
        let end = t + Duration::from_micros(u64::from(sprayed));
        let stats = g.stats(end);
        assert_eq!(stats.tracked, max);
        assert_eq!(stats.banned, 1);
        assert_eq!(stats.evictions, u64::from(sprayed) - (max as u64 - 1));
        assert!(matches!(
            g.check(ip("192.0.2.1"), end),
            Admission::Refuse { .. }
        ));
    }

    #[test]
    fn bans_are_evicted_last_and_the_soonest_ending_first() {
        let mut g = AbuseGuard::new(AbuseLimits {
            max_tracked: 2,
            ..limits(1, 1)
        });
        let t = Instant::now();
        g.record_failure(ip("192.0.2.1"), t);
        g.record_failure(ip("192.0.2.2"), t + secs(1.0));
        // Full of bans: the one that ends first goes.
        g.record_failure(ip("192.0.2.3"), t + secs(2.0));
        assert_eq!(g.check(ip("192.0.2.1"), t + secs(2.0)), ALLOW);
        assert_eq!(g.check(ip("192.0.2.2"), t + secs(2.0)), refuse(119.0));
        assert_eq!(g.check(ip("192.0.2.3"), t + secs(2.0)), refuse(120.0));
        assert_eq!(g.stats(t + secs(2.0)).evictions, 1);
    }

    #[test]
    fn expired_records_are_pruned_by_later_calls() {
        let mut g = AbuseGuard::new(AbuseLimits {
            max_tracked: 1000,
            ..limits(3, 5)
        });
        let t = Instant::now();
        for i in 0..500u32 {
            g.record_failure(IpAddr::V4(Ipv4Addr::from(i)), t);
        }
        assert_eq!(g.tracked(), 500);
        // After the window, every call removes a batch: quiet sources vanish.
        let later = t + secs(61.0);
        for _ in 0..(500 / PRUNE_BATCH + 1) {
            g.check(ip("192.0.2.1"), later);
        }
        assert_eq!(g.tracked(), 0);
    }

    #[test]
    fn time_going_backwards_is_read_as_standing_still() {
        let mut g = AbuseGuard::new(limits(1, 3));
        let t = Instant::now() + secs(1000.0);
        g.record_failure(ip("192.0.2.1"), t);
        // Earlier times: taken as t.
        g.record_failure(ip("192.0.2.1"), t - secs(500.0));
        assert_eq!(g.check(ip("192.0.2.1"), t - secs(900.0)), delay(2.0));
        assert_eq!(g.record_failure(ip("192.0.2.1"), t - secs(1.0)), banned());
        assert_eq!(g.check(ip("192.0.2.1"), t - secs(999.0)), refuse(120.0));
        assert_eq!(g.check(ip("192.0.2.1"), t + secs(60.0)), refuse(60.0));
    }

    #[test]
    fn limits_out_of_range_are_clamped_not_panicked_on() {
        let t = Instant::now();
        for l in [
            AbuseLimits {
                window: Duration::ZERO,
                slow_after: 0,
                ban_after: 0,
                ban: Duration::ZERO,
                max_delay: Duration::ZERO,
                max_tracked: 0,
                ignore: Vec::new(),
            },
            AbuseLimits {
                window: Duration::MAX,
                slow_after: u32::MAX,
                ban_after: u32::MAX,
                ban: Duration::MAX,
                max_delay: Duration::MAX,
                max_tracked: usize::MAX,
                ignore: vec!["0.0.0.0/32".parse().expect("net")],
            },
            AbuseLimits {
                slow_after: 40,
                ban_after: 100,
                max_delay: Duration::MAX,
                ..limits(1, 1)
            },
        ] {
            let mut g = AbuseGuard::new(l);
            let c = g.limits().clone();
            assert!(c.slow_after >= 1 && c.slow_after <= c.ban_after);
            assert!(c.ban_after <= MAX_BAN_AFTER && c.max_tracked >= 1);
            for i in 0..300u32 {
                let at = t + Duration::from_millis(u64::from(i));
                let addr = IpAddr::V4(Ipv4Addr::from(i % 3));
                let admission = g.check(addr, at);
                if let Admission::Delay(d) = admission {
                    assert!(d <= MAX_DELAY_CAP, "{d:?}");
                }
                g.record_failure(addr, at);
                assert!(g.tracked() <= c.max_tracked);
            }
        }
    }

    /// Random sources, random times (backwards too), random calls: the bound holds, the
    /// indexes match the records, nothing panics.
    #[test]
    fn random_calls_keep_the_books_straight() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut g = AbuseGuard::new(AbuseLimits {
            max_tracked: 50,
            window: secs(5.0),
            ban: secs(3.0),
            ..limits(2, 4)
        });
        let base = Instant::now() + secs(100.0);
        for _ in 0..200_000 {
            let r = next();
            let at = base + Duration::from_millis(r % 50_000) - secs(50.0);
            let addr = if r & (1 << 40) == 0 {
                IpAddr::V4(Ipv4Addr::from((r >> 20) as u32 % 120))
            } else {
                IpAddr::V6(Ipv6Addr::from((u128::from((r >> 20) % 120) << 64) | 1))
            };
            if r & (1 << 41) == 0 {
                g.check(addr, at);
            } else {
                g.record_failure(addr, at);
            }
            assert!(g.records.len() <= 50);
            assert_eq!(g.records.len(), g.watched.len() + g.banned.len());
        }
        for (source, r) in &g.records {
            let index = if r.banned_until.is_some() {
                &g.banned
            } else {
                &g.watched
            };
            assert!(index.contains(&(r.expires, *source)), "{source}");
            assert!(r.failures.len() < 4);
        }
    }
}
