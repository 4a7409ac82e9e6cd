//! One origin's health as an edge sees it: what is wrong with it now, and the
//! hysteresis between troubled, recovering and healthy.
//!
//! Signals come in as they are observed (tunnel state, path samples, the origin's
//! reports, stream failures), each with the time; [`OriginHealth::advance`] moves the
//! state on. Entering trouble is quick (a tunnel down or the origin's own word at once,
//! a lossy path after most of a window), leaving it is slow (every signal clear, then
//! [`Thresholds::recover_hold`] of nothing going wrong), so a flapping origin stays out.

use crate::thresholds::{Thresholds, CONGESTED_ROUND_SHARE, MIN_PACKETS_FOR_LOSS};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The tunnel to an origin, as its client reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelStatus {
    /// Hello exchanged: streams can be opened.
    Connected,
    /// Dialling or in the handshake (the first connection, or a reconnect).
    Connecting,
    /// Lost, waiting to retry, or closed.
    Down,
}

/// The live connection's path counters, as quinn's `Connection::stats()` has them:
/// cumulative over the connection (a new connection starts again from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathStats {
    /// Smoothed round-trip time (`path.rtt`).
    pub rtt: Duration,
    /// Packets sent (`path.sent_packets`).
    pub sent_packets: u64,
    /// Packets declared lost (`path.lost_packets`).
    pub lost_packets: u64,
    /// Loss-triggered window reductions (`path.congestion_events`).
    pub congestion_events: u64,
    /// Datagrams received from the origin (`udp_rx.datagrams`): standing still means
    /// nothing at all came back, not even the acknowledgement of a keep-alive.
    pub received_datagrams: u64,
}

/// What the origin says of itself on the control stream (its `report` message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OriginReport {
    /// It takes new work.
    pub healthy: bool,
    /// It is shutting down: new work should go elsewhere, and live streams move.
    pub draining: bool,
}

/// A stream sent to an origin that failed there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A publish got no verdict (tunnel not connected, no answer in time, the stream
    /// could not be opened).
    Unavailable,
    /// A relayed stream ended because the tunnel failed under it.
    TunnelLost,
}

/// What is wrong with an origin, least bad first: the order is the one the router
/// uses to pick the least bad origin when none is healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Trouble {
    /// The origin reports itself unhealthy (its registry out of reach, say). It still
    /// decides publishes from memory and carries media: the mildest trouble.
    Unhealthy,
    /// The path to it is lossy, slow or congested: media gets there late or not at all.
    PathLossy,
    /// Streams sent there keep failing.
    Failing,
    /// It is shutting down: it will go away.
    Draining,
    /// Its connection is up but nothing has come back from it for
    /// [`Thresholds::silence_limit`] plus an RTT: frozen or cut off, as good as down.
    Silent,
    /// No tunnel to it: nothing gets there.
    Down,
}

/// Where an origin is in its health cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Its tunnel has never been up (the edge is starting): unusable, like `Down`.
    Unknown,
    /// Nothing wrong. `since`: when it last became clear of trouble (its first
    /// connection, or the start of its recovery); `recovered`: it was in trouble before.
    Healthy {
        since: Instant,
        recovered: Option<Trouble>,
    },
    /// In trouble since `since`.
    Troubled { trouble: Trouble, since: Instant },
    /// Clear of trouble since `since`, waiting out the recovery hold; `was` what it
    /// recovered from.
    Recovering { since: Instant, was: Trouble },
}

impl Status {
    /// Rank for picking the least bad origin: 0 healthy ... 6 down or unknown.
    pub fn rank(&self) -> u8 {
        match self {
            Status::Healthy { .. } => 0,
            Status::Recovering { .. } => 1,
            Status::Troubled { trouble, .. } => 2 + *trouble as u8,
            Status::Unknown => 2 + Trouble::Down as u8,
        }
    }

    /// A short name for logs: `unknown`, `healthy`, `troubled`, `recovering`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Healthy { .. } => "healthy",
            Status::Troubled { .. } => "troubled",
            Status::Recovering { .. } => "recovering",
        }
    }

    /// What is (or, recovering or healthy again, was) wrong.
    pub fn trouble(&self) -> Option<Trouble> {
        match self {
            Status::Unknown => Some(Trouble::Down),
            Status::Healthy { recovered, .. } => *recovered,
            Status::Troubled { trouble, .. } => Some(*trouble),
            Status::Recovering { was, .. } => Some(*was),
        }
    }
}

/// Everything the router knows of one origin.
#[derive(Debug, Clone)]
pub struct OriginHealth {
    tunnel: TunnelStatus,
    report: Option<OriginReport>,
    last_path: Option<PathStats>,
    last_path_at: Option<Instant>,
    /// When a datagram from the origin was last seen to have arrived (the counter
    /// moved), on this connection.
    last_heard: Option<Instant>,
    /// The connection's received-datagram counter when last looked at, and when: by a
    /// path sample or by [`OriginHealth::listen`], which looks more often.
    last_datagrams: Option<u64>,
    last_listened: Option<Instant>,
    /// Path samples, newest in bit 0, 1 = bad; `samples` of them valid.
    history: u32,
    samples: u32,
    failures: VecDeque<Instant>,
    status: Status,
}

impl Default for OriginHealth {
    fn default() -> Self {
        Self::new()
    }
}

impl OriginHealth {
    pub fn new() -> Self {
        Self {
            tunnel: TunnelStatus::Connecting,
            report: None,
            last_path: None,
            last_path_at: None,
            last_heard: None,
            last_datagrams: None,
            last_listened: None,
            history: 0,
            samples: 0,
            failures: VecDeque::new(),
            status: Status::Unknown,
        }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    pub fn tunnel(&self) -> TunnelStatus {
        self.tunnel
    }

    /// The tunnel's state now. Leaving `Connected` forgets the connection's path
    /// counters and the origin's last report: the next connection starts afresh.
    pub fn set_tunnel(&mut self, status: TunnelStatus) {
        if self.tunnel == TunnelStatus::Connected && status != TunnelStatus::Connected {
            self.report = None;
            self.last_path = None;
            self.last_path_at = None;
            self.last_heard = None;
            self.last_datagrams = None;
            self.last_listened = None;
            self.history = 0;
            self.samples = 0;
        }
        self.tunnel = status;
    }

    pub fn set_report(&mut self, report: OriginReport) {
        self.report = Some(report);
    }

    /// A path sample: judged against the previous one (the counters are cumulative).
    /// Counters that went back mean a new connection: the sample is a new baseline.
    pub fn observe_path(&mut self, stats: PathStats, now: Instant, th: &Thresholds) {
        if self.tunnel != TunnelStatus::Connected {
            return;
        }
        self.listen(stats.received_datagrams, now);
        if let (Some(prev), Some(at)) = (self.last_path, self.last_path_at) {
            let went_back = stats.sent_packets < prev.sent_packets
                || stats.lost_packets < prev.lost_packets
                || stats.congestion_events < prev.congestion_events;
            if !went_back && now > at {
                let bad = sample_is_bad(&prev, &stats, now.duration_since(at), th);
                self.history = (self.history << 1) | u32::from(bad);
                self.samples = (self.samples + 1).min(crate::thresholds::MAX_SAMPLE_WINDOW);
            } else if went_back {
                self.history = 0;
                self.samples = 0;
            } else {
                // Same instant as the last sample: nothing to judge, keep the old baseline.
                return;
            }
        }
        self.last_path = Some(stats);
        self.last_path_at = Some(now);
    }

    /// The connection's received-datagram counter at `now`, looked at between path
    /// samples (every [`crate::LISTEN_INTERVAL`]) so that silence is judged at that
    /// step rather than the path sample's: a counter that moved means the origin was
    /// heard from.
    pub fn listen(&mut self, received_datagrams: u64, now: Instant) {
        if self.tunnel != TunnelStatus::Connected {
            return;
        }
        if self.last_datagrams != Some(received_datagrams) {
            self.last_heard = Some(now);
        }
        self.last_datagrams = Some(received_datagrams);
        self.last_listened = Some(self.last_listened.map_or(now, |t| t.max(now)));
    }

    /// A stream failed here. Counted only while the tunnel is connected: with it down
    /// (or never up, as while an edge starts) the failure is that, already the worst
    /// trouble, and counting it would hold the origin out after its tunnel is back.
    pub fn record_failure(&mut self, now: Instant) {
        if self.tunnel != TunnelStatus::Connected {
            return;
        }
        self.failures.push_back(now);
        // Only the window's worth matters; bound the memory whatever the caller does.
        while self.failures.len() > 1024 {
            self.failures.pop_front();
        }
    }

    fn bad_samples(&self, window: u32) -> u32 {
        let n = window
            .min(self.samples)
            .min(crate::thresholds::MAX_SAMPLE_WINDOW);
        let mask = if n >= 32 { u32::MAX } else { (1u32 << n) - 1 };
        (self.history & mask).count_ones()
    }

    /// The worst trouble now. `clearing`: the origin is not healthy, so the stricter
    /// rule to leave trouble applies (a whole clean window, no failure in the window).
    fn trouble_now(&self, now: Instant, th: &Thresholds, clearing: bool) -> Option<Trouble> {
        if self.tunnel != TunnelStatus::Connected {
            return Some(Trouble::Down);
        }
        let mut worst = None;
        let mut add = |t: Trouble| worst = worst.max(Some(t));
        // Judged between looks at the counter, not against `now`: a driver that stopped
        // sampling (or a table that skips ahead) has seen no silence, only no samples.
        // The RTT is the last path sample's.
        if let (Some(heard), Some(path), Some(at)) =
            (self.last_heard, self.last_path, self.last_listened)
        {
            if at.saturating_duration_since(heard) > th.silence_limit.saturating_add(path.rtt) {
                add(Trouble::Silent);
            }
        }
        if let Some(r) = self.report {
            if r.draining {
                add(Trouble::Draining);
            }
            if !r.healthy {
                add(Trouble::Unhealthy);
            }
        }
        let window = th
            .sample_window
            .clamp(1, crate::thresholds::MAX_SAMPLE_WINDOW);
        let bad = self.bad_samples(window);
        let lossy = if clearing {
            bad > 0
        } else {
            bad >= th.bad_samples.max(1)
        };
        if lossy {
            add(Trouble::PathLossy);
        }
        let recent = self
            .failures
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < th.failure_window)
            .count() as u32;
        let failing = if clearing {
            recent > 0
        } else {
            recent >= th.failures.max(1)
        };
        if failing {
            add(Trouble::Failing);
        }
        worst
    }

    /// Moves the status on to `now`. Returns the old status when it changed.
    pub fn advance(&mut self, now: Instant, th: &Thresholds) -> Option<Status> {
        let old = self.status;
        let clearing = !matches!(old, Status::Healthy { .. });
        let trouble = self.trouble_now(now, th, clearing);
        self.status = match (old, trouble) {
            (Status::Unknown, None) => Status::Healthy {
                since: now,
                recovered: None,
            },
            // Never connected: stays unknown until its first connection.
            (Status::Unknown, Some(Trouble::Down)) => Status::Unknown,
            (_, Some(t)) => match old {
                Status::Troubled { since, .. } => Status::Troubled { trouble: t, since },
                _ => Status::Troubled {
                    trouble: t,
                    since: now,
                },
            },
            (Status::Troubled { trouble, .. }, None) => Status::Recovering {
                since: now,
                was: trouble,
            },
            (Status::Recovering { since, was }, None) => {
                if now.saturating_duration_since(since) >= th.recover_hold {
                    Status::Healthy {
                        since,
                        recovered: Some(was),
                    }
                } else {
                    old
                }
            }
            (Status::Healthy { .. }, None) => old,
        };
        // Failures older than the window are of no more use.
        while self
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= th.failure_window)
        {
            self.failures.pop_front();
        }
        (self.status != old).then_some(old)
    }

    /// Healthy, and either never in trouble or healthy again for the failback time:
    /// legs may go (back) to it.
    pub fn takes_its_legs(&self, now: Instant, th: &Thresholds) -> bool {
        match self.status {
            Status::Healthy {
                recovered: None, ..
            } => true,
            Status::Healthy { since, .. } => {
                now.saturating_duration_since(since) >= th.failback_after
            }
            _ => false,
        }
    }
}

/// Whether the path went bad between two samples `elapsed` apart.
fn sample_is_bad(prev: &PathStats, now: &PathStats, elapsed: Duration, th: &Thresholds) -> bool {
    let sent = now.sent_packets - prev.sent_packets;
    let lost = now.lost_packets - prev.lost_packets;
    let events = now.congestion_events - prev.congestion_events;
    let lossy = sent >= MIN_PACKETS_FOR_LOSS && lost as f64 >= sent as f64 * th.lossy_fraction;
    let slow = now.rtt >= th.max_rtt;
    let rtt = now.rtt.max(Duration::from_millis(1));
    let rounds = elapsed.as_secs_f64() / rtt.as_secs_f64();
    let congested = events >= 1 && events as f64 >= rounds * CONGESTED_ROUND_SHARE;
    lossy || slow || congested
}
