//! The router: which origin a leg goes to now, and which live streams should move.
//!
//! It holds an [`OriginHealth`] per configured origin and the streams placed on them.
//! Every method takes the time; none blocks or does IO. See the crate documentation for
//! the rules.

use crate::health::{
    Failure, OriginHealth, OriginReport, PathStats, Status, Trouble, TunnelStatus,
};
use crate::thresholds::Thresholds;
use longhaul_endpoint::Leg;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

/// The caller's id of a live stream (the edge uses its connection id).
pub type StreamId = u64;

/// Why a leg goes, or should move, to an origin other than where it is or would be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The origin's tunnel is down (or has never come up).
    OriginDown,
    /// The origin's connection is up but nothing comes back from it (frozen, cut off).
    OriginSilent,
    /// The path to the origin is lossy, slow or congested.
    PathLossy,
    /// The origin is shutting down.
    OriginDraining,
    /// The origin says it is unhealthy, or streams sent there keep failing.
    OriginUnhealthy,
    /// The preferred origin has been healthy for the failback time: back to it.
    Failback,
}

impl Reason {
    pub const ALL: [Reason; 6] = [
        Reason::OriginDown,
        Reason::OriginSilent,
        Reason::PathLossy,
        Reason::OriginDraining,
        Reason::OriginUnhealthy,
        Reason::Failback,
    ];

    /// The metric label and log word: `origin_down`, `path_lossy`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::OriginDown => "origin_down",
            Reason::OriginSilent => "origin_silent",
            Reason::PathLossy => "path_lossy",
            Reason::OriginDraining => "origin_draining",
            Reason::OriginUnhealthy => "origin_unhealthy",
            Reason::Failback => "failback",
        }
    }

    fn of(trouble: Trouble) -> Reason {
        match trouble {
            Trouble::Down => Reason::OriginDown,
            Trouble::Silent => Reason::OriginSilent,
            Trouble::PathLossy => Reason::PathLossy,
            Trouble::Draining => Reason::OriginDraining,
            Trouble::Unhealthy | Trouble::Failing => Reason::OriginUnhealthy,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a new stream's leg goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub origin: String,
    /// The leg's preferred origin (leg p: the configured primary; leg b: the other).
    pub preferred: String,
    /// Why not the preferred origin; `None` when it is the preferred one.
    pub reason: Option<Reason>,
}

/// When a move should happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Now: where the stream is cannot carry it well.
    Now,
    /// At the stream's next keyframe (a failback: where it is works, so the switch
    /// waits for a clean cut). [`Router::keyframe`] says when it is still wanted.
    AtKeyframe,
}

/// A live stream's leg that should go elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub stream: StreamId,
    pub leg: Leg,
    pub from: String,
    pub to: String,
    pub reason: Reason,
    pub when: When,
}

/// An origin's health changed (for the logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    pub origin: String,
    pub from: Status,
    pub to: Status,
}

/// The primary named in the config is not one of the origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownPrimary(pub String);

impl fmt::Display for UnknownPrimary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the primary origin {:?} is not among the origins",
            self.0
        )
    }
}

impl std::error::Error for UnknownPrimary {}

struct Origin {
    id: String,
    health: OriginHealth,
}

struct Placed {
    leg: Leg,
    origin: usize,
    /// The move last wanted for it (emitted once by [`Router::moves`]).
    wanted: Option<(usize, Reason, When)>,
}

/// The health-aware router of one edge.
pub struct Router {
    th: Thresholds,
    origins: Vec<Origin>,
    primary: usize,
    streams: BTreeMap<StreamId, Placed>,
    changes: Vec<HealthChange>,
}

impl Router {
    /// A router for `origins` (in config order) with `primary` taking leg p.
    pub fn new<I, S>(th: Thresholds, origins: I, primary: &str) -> Result<Router, UnknownPrimary>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list: Vec<Origin> = Vec::new();
        for id in origins {
            let id = id.into();
            if !list.iter().any(|o| o.id == id) {
                list.push(Origin {
                    id,
                    health: OriginHealth::new(),
                });
            }
        }
        let primary = list
            .iter()
            .position(|o| o.id == primary)
            .ok_or_else(|| UnknownPrimary(primary.to_string()))?;
        Ok(Router {
            th,
            origins: list,
            primary,
            streams: BTreeMap::new(),
            changes: Vec::new(),
        })
    }

    pub fn thresholds(&self) -> &Thresholds {
        &self.th
    }

    fn index(&self, origin: &str) -> Option<usize> {
        self.origins.iter().position(|o| o.id == origin)
    }

    fn with_origin(
        &mut self,
        origin: &str,
        now: Instant,
        f: impl FnOnce(&mut OriginHealth, &Thresholds),
    ) {
        if let Some(i) = self.index(origin) {
            f(&mut self.origins[i].health, &self.th);
        }
        self.advance(now);
    }

    /// The tunnel to `origin` is in `status` (fed on every change, or every sample).
    pub fn tunnel(&mut self, origin: &str, status: TunnelStatus, now: Instant) {
        self.with_origin(origin, now, |h, _| h.set_tunnel(status));
    }

    /// A path sample of `origin`'s live connection.
    pub fn path(&mut self, origin: &str, stats: PathStats, now: Instant) {
        self.with_origin(origin, now, |h, th| h.observe_path(stats, now, th));
    }

    /// `origin`'s connection's received-datagram counter, looked at between path
    /// samples (see [`OriginHealth::listen`](crate::OriginHealth::listen)).
    pub fn listen(&mut self, origin: &str, received_datagrams: u64, now: Instant) {
        self.with_origin(origin, now, |h, _| h.listen(received_datagrams, now));
    }

    /// `origin`'s latest report on the control stream.
    pub fn report(&mut self, origin: &str, report: OriginReport, now: Instant) {
        self.with_origin(origin, now, |h, _| h.set_report(report));
    }

    /// A stream sent to `origin` failed there. Both kinds of [`Failure`] count the same
    /// (see [`crate::thresholds::DEFAULT_FAILURES`]); the kind is for callers' logs.
    pub fn failure(&mut self, origin: &str, _failure: Failure, now: Instant) {
        self.with_origin(origin, now, |h, _| h.record_failure(now));
    }

    /// Moves every origin's health on to `now` (the inputs and queries do it too).
    pub fn advance(&mut self, now: Instant) {
        for o in &mut self.origins {
            if let Some(from) = o.health.advance(now, &self.th) {
                self.changes.push(HealthChange {
                    origin: o.id.clone(),
                    from,
                    to: o.health.status(),
                });
            }
        }
    }

    /// Health changes since the last call, oldest first.
    pub fn take_changes(&mut self) -> Vec<HealthChange> {
        std::mem::take(&mut self.changes)
    }

    /// Every origin's id and status, in config order.
    pub fn statuses(&self) -> Vec<(&str, Status)> {
        self.origins
            .iter()
            .map(|o| (o.id.as_str(), o.health.status()))
            .collect()
    }

    /// Whether `origin` is healthy now (`None`: not configured).
    pub fn is_healthy(&self, origin: &str) -> Option<bool> {
        self.index(origin)
            .map(|i| matches!(self.origins[i].health.status(), Status::Healthy { .. }))
    }

    /// The leg's candidates, preferred first: leg p the primary then the others in
    /// config order; leg b the first other origin (the primary if it is alone), then
    /// the primary, then the rest.
    fn candidates(&self, leg: Leg) -> Vec<usize> {
        let others = (0..self.origins.len()).filter(|i| *i != self.primary);
        match leg {
            Leg::Primary => std::iter::once(self.primary).chain(others).collect(),
            Leg::Backup => {
                let mut v: Vec<usize> = others.collect();
                v.insert(v.len().min(1), self.primary);
                v
            }
        }
    }

    fn rank(&self, i: usize) -> u8 {
        self.origins[i].health.status().rank()
    }

    /// The origin index for a leg now, and why not the preferred one.
    fn pick(&self, leg: Leg, now: Instant) -> (usize, usize, Option<Reason>) {
        let candidates = self.candidates(leg);
        let preferred = candidates[0];
        let p = &self.origins[preferred].health;
        if p.takes_its_legs(now, &self.th) {
            return (preferred, preferred, None);
        }
        // Why the preferred one is passed over: its trouble, now or just recovered from.
        let why = p.status().trouble().map(Reason::of);
        if let Some(&healthy) = candidates[1..].iter().find(|&&i| self.rank(i) == 0) {
            return (healthy, preferred, why);
        }
        // None healthy: the least bad, the preferred one on a tie.
        let best = candidates
            .iter()
            .copied()
            .min_by_key(|&i| self.rank(i))
            .unwrap_or(preferred);
        (
            best,
            preferred,
            (best != preferred).then_some(why).flatten(),
        )
    }

    /// Where a new stream's `leg` goes now: the preferred origin while it is healthy
    /// (after trouble: once healthy for `failback_after`), else a healthy other one,
    /// else the least bad (the preferred one on a tie).
    pub fn choose(&mut self, leg: Leg, now: Instant) -> Choice {
        self.advance(now);
        let (i, p, reason) = self.pick(leg, now);
        Choice {
            origin: self.origins[i].id.clone(),
            preferred: self.origins[p].id.clone(),
            reason,
        }
    }

    /// A live stream's `leg` now goes to `origin` (a new publish, or after a move).
    pub fn place(&mut self, stream: StreamId, leg: Leg, origin: &str) {
        if let Some(i) = self.index(origin) {
            self.streams.insert(
                stream,
                Placed {
                    leg,
                    origin: i,
                    wanted: None,
                },
            );
        }
    }

    /// The stream ended.
    pub fn remove(&mut self, stream: StreamId) {
        self.streams.remove(&stream);
    }

    /// Streams placed, by origin and leg (origins in config order, legs p then b).
    pub fn placements(&self) -> Vec<(&str, Leg, usize)> {
        let mut out = Vec::new();
        for (i, o) in self.origins.iter().enumerate() {
            for leg in Leg::ALL {
                let n = self
                    .streams
                    .values()
                    .filter(|s| s.origin == i && s.leg == leg)
                    .count();
                out.push((o.id.as_str(), leg, n));
            }
        }
        out
    }

    /// The move a stream wants now, if any.
    fn wanted(&self, placed: &Placed, now: Instant) -> Option<(usize, Reason, When)> {
        let (target, preferred, _) = self.pick(placed.leg, now);
        let current = placed.origin;
        if target == current {
            return None;
        }
        let here = self.origins[current].health.status();
        if here.rank() >= 2 && self.rank(target) < here.rank() {
            // Where it is is in trouble and the target is better.
            let reason = here.trouble().map_or(Reason::OriginDown, Reason::of);
            return Some((target, reason, When::Now));
        }
        if target == preferred && here.rank() <= 1 {
            // Where it is works; the preferred origin is back: at a keyframe.
            return Some((target, Reason::Failback, When::AtKeyframe));
        }
        None
    }

    /// Moves wanted since the last call: each stream's wanted move is given once
    /// (again only if it changes).
    pub fn moves(&mut self, now: Instant) -> Vec<Move> {
        self.advance(now);
        let mut out = Vec::new();
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            let Some(placed) = self.streams.get(&id) else {
                continue;
            };
            let wanted = self.wanted(placed, now);
            let (leg, from) = (placed.leg, placed.origin);
            if let Some(p) = self.streams.get_mut(&id) {
                if p.wanted == wanted {
                    continue;
                }
                p.wanted = wanted;
            }
            if let Some((to, reason, when)) = wanted {
                out.push(Move {
                    stream: id,
                    leg,
                    from: self.origins[from].id.clone(),
                    to: self.origins[to].id.clone(),
                    reason,
                    when,
                });
            }
        }
        out
    }

    /// The stream is at a keyframe: its failback, if one is still wanted, is due now.
    /// The caller moves it and calls [`Router::place`] with the new origin.
    pub fn keyframe(&mut self, stream: StreamId, now: Instant) -> Option<Move> {
        self.advance(now);
        let placed = self.streams.get(&stream)?;
        match self.wanted(placed, now)? {
            (to, reason, When::AtKeyframe) => Some(Move {
                stream,
                leg: placed.leg,
                from: self.origins[placed.origin].id.clone(),
                to: self.origins[to].id.clone(),
                reason,
                when: When::AtKeyframe,
            }),
            _ => None,
        }
    }
}
