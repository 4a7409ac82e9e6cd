//! What a player receives from its subscription.

use std::fmt;
use std::time::Duration;

use longhaul_rtmp::RtmpMessage;

/// One event for a player, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayerEvent {
    /// A message to send to the player, as published (metadata without its
    /// `@setDataFrame` wrapper; after a takeover, the timestamp rebased to continue the
    /// stream's timeline). The payload is shared with every other player.
    Message(RtmpMessage),
    /// The player fell too far behind: `dropped_messages` messages were dropped for
    /// it and it resumes at a keyframe (the next events are the stream's configuration
    /// if it changed meanwhile, then that keyframe). The caller counts these.
    Skipped { dropped_messages: u64 },
    /// The hub gave up on this player; no more events follow (every further `recv`
    /// returns this again). The caller should close the connection.
    Dropped { reason: DropReason },
    /// The publication ended; no more events follow (every further `recv` returns this
    /// again).
    Ended,
}

/// Why the hub dropped a player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The player had to be skipped forward `skips` times within `window`: it cannot
    /// keep up with the stream.
    TooSlow { skips: usize, window: Duration },
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::TooSlow { skips, window } => write!(
                f,
                "too slow: skipped {skips} times within {} s",
                window.as_secs()
            ),
        }
    }
}
