//! # longhaul-router: which origin each leg of each stream goes to
//!
//! An edge keeps a tunnel to every origin. Each entry has two ingest legs: leg `p`
//! prefers the configured primary origin (`tunnel.primary`), leg `b` the other one. This
//! crate decides, from what the edge observes of each origin, where a leg goes **now**:
//! the preferred origin while it is healthy, another one when it is not, and back again
//! only when that is safe. The transport carries; the router decides.
//!
//! A deterministic model in the style of quinn-proto: no IO, no tasks, no clock of its
//! own. The caller (the edge's driver, or a test) feeds observations with the time
//! (`std::time::Instant`) they were made and asks questions with the time; the same
//! inputs give the same answers, so the rules are tested as tables of health histories.
//!
//! ## Inputs, per origin (by node id)
//!
//! | input | from | method |
//! |---|---|---|
//! | tunnel state: connected, connecting, down | the tunnel client | [`Router::tunnel`] |
//! | smoothed RTT, packets sent and lost, congestion events, datagrams received | quinn `Connection::stats()` (`path.rtt`, `path.sent_packets`, `path.lost_packets`, `path.congestion_events`, `udp_rx.datagrams`), cumulative per connection | [`Router::path`] |
//! | health and drain: `healthy`, `draining` | the origin's `report` on the control stream | [`Router::report`] |
//! | a stream failed there: publish unavailable, stream cut by tunnel loss | the edge's publishes | [`Router::failure`] |
//!
//! ## Outputs
//!
//! - [`Router::choose`]: for a new stream's leg, a [`Choice`]: the origin, the
//!   preferred one, and the [`Reason`] when they differ.
//! - [`Router::moves`]: for the live streams ([`Router::place`]d, [`Router::remove`]d),
//!   which (stream, leg) should move, from where to where, why (`origin_down`,
//!   `origin_silent`, `path_lossy`, `origin_draining`, `origin_unhealthy`, `failback`) and [`When`]:
//!   now, or at the next keyframe; [`Router::keyframe`] says whether a keyframe-bound
//!   move is still due.
//! - [`Router::statuses`], [`Router::placements`], [`Router::take_changes`]: for metrics
//!   and logs.
//!
//! ## The rules, and why
//!
//! 1. **Trouble** ([`Trouble`], least bad first): the origin *reports itself
//!    unhealthy* (it still decides publishes from memory and carries media); its *path
//!    is lossy* (of the last [`DEFAULT_SAMPLE_WINDOW`] samples, [`DEFAULT_BAD_SAMPLES`]
//!    lost over [`DEFAULT_LOSSY_FRACTION`] of their packets, or had an RTT over
//!    [`DEFAULT_MAX_RTT`], or a congestion event in half their round trips); *streams
//!    keep failing* there ([`DEFAULT_FAILURES`] within [`DEFAULT_FAILURE_WINDOW`], while
//!    its tunnel is up: failures with it down are that trouble already); it
//!    is *draining* (shutting down); it is *silent* (its connection is up but not one
//!    datagram came back for [`DEFAULT_SILENCE_LIMIT`] plus an RTT: frozen or cut off,
//!    noticed within [`LISTEN_INTERVAL`] of that instead of at QUIC's idle timeout); it is
//!    *down* (no tunnel). A tunnel down and the
//!    origin's own word count at once: they are not noise. A path and failures count
//!    after most of a window: one burst is not a failover.
//! 2. **Hysteresis.** Out of trouble means every signal clear (a whole clean sample
//!    window, no failure in the window), then [`DEFAULT_RECOVER_HOLD`] without trouble
//!    before the origin counts as healthy again; any trouble meanwhile starts it over.
//!    A flapping tunnel or path therefore stays out instead of bouncing streams.
//! 3. **Failover.** A leg whose preferred origin is not healthy goes to a healthy other
//!    origin. If none is healthy, to the least bad one (rank: healthy, recovering, then
//!    the troubles above in order), the preferred one on a tie: with both down a
//!    publish still goes somewhere it may be carried once a tunnel comes back, and a
//!    live stream stays where it is.
//! 4. **Failback** waits until the preferred origin has been clear for
//!    [`DEFAULT_FAILBACK_AFTER`] (30 s, as AWS MediaLive waits), for new publishes and
//!    live streams alike, so a leg's streams do not split between origins by age; a
//!    live stream moves back only at a keyframe ([`When::AtKeyframe`]), as where it is
//!    works. An origin that never had trouble takes its legs from its first connection.
//! 5. **Live moves** happen only when where a stream is is in trouble and the target is
//!    strictly better ([`When::Now`]), or for failback. Each wanted move is reported
//!    once ([`Router::moves`]), again only when it changes.
//!
//! With one origin configured both legs go to it and nothing moves. Every threshold is
//! a constant in [`thresholds`] with its evidence, overridable through [`Thresholds`]
//! (the edge's `[router]` section).
//!
//! The edge acts on [`Router::choose`] for new publishes; it logs and counts the moves
//! but does not carry them out yet: moving a live stream without touching its encoder
//! needs tunnel wire format v2 (acknowledged frames, resume at another origin).

pub mod health;
pub mod router;
pub mod thresholds;

#[cfg(test)]
mod tables;

pub use health::{Failure, OriginHealth, OriginReport, PathStats, Status, Trouble, TunnelStatus};
pub use router::{Choice, HealthChange, Move, Reason, Router, StreamId, UnknownPrimary, When};
pub use thresholds::{
    Thresholds, DEFAULT_BAD_SAMPLES, DEFAULT_FAILBACK_AFTER, DEFAULT_FAILURES,
    DEFAULT_FAILURE_WINDOW, DEFAULT_LOSSY_FRACTION, DEFAULT_MAX_RTT, DEFAULT_RECOVER_HOLD,
    DEFAULT_SAMPLE_WINDOW, DEFAULT_SILENCE_LIMIT, LISTEN_INTERVAL, SAMPLE_INTERVAL,
};
