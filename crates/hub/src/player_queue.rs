//! One player's bounded queue and the slow-player policy, as plain synchronous code.
//!
//! The publisher offers every message to every player's queue. A queue that is full
//! (by messages or by bytes) is emptied and the player *skips*: it drops everything up
//! to the next keyframe, then gets a `Skipped` report, the stream configuration again
//! if what it had was changed or lost, and resumes on that keyframe, never mid-GOP.
//! A player skipped [`PLAYER_MAX_SKIPS`] times within [`PLAYER_SKIP_WINDOW`] is dropped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use longhaul_rtmp::RtmpMessage;

use crate::event::{DropReason, PlayerEvent};
use crate::state::{Ingested, StreamState};

/// Most messages a player may have queued. Holds a full cached GOP snapshot (at most
/// [`crate::GOP_CACHE_MAX_MESSAGES`] = 1024) plus about 10 s of live stream at 60 fps
/// video with 48 kHz AAC (~107 messages/s): a player this far behind is not live.
pub const PLAYER_QUEUE_MAX_MESSAGES: usize = 2048;

/// Most payload bytes a player may have queued: a full GOP cache
/// ([`crate::GOP_CACHE_MAX_BYTES`], 8 MiB) plus as much again of live stream. Payloads
/// are shared, so this bounds what the slowest player pins, not a per-player copy.
pub const PLAYER_QUEUE_MAX_BYTES: usize = 16 * 1024 * 1024;

/// A player skipped this many times within [`PLAYER_SKIP_WINDOW`] is dropped. Each skip
/// means ~10 s of backlog lost; three in a minute means the player's link cannot carry
/// the stream, and closing it lets it reconnect (or pick a lower rendition) instead of
/// watching a slideshow.
pub const PLAYER_MAX_SKIPS: usize = 3;

/// The window [`PLAYER_MAX_SKIPS`] is counted over.
pub const PLAYER_SKIP_WINDOW: Duration = Duration::from_secs(60);

// The initial snapshot (configuration + cached GOP) must fit with room to spare.
const _: () = assert!(PLAYER_QUEUE_MAX_MESSAGES >= 2 * crate::GOP_CACHE_MAX_MESSAGES);
const _: () = assert!(PLAYER_QUEUE_MAX_BYTES >= 2 * crate::GOP_CACHE_MAX_BYTES);

#[derive(Debug)]
enum Item {
    Message { message: RtmpMessage, is_config: bool },
    Skipped(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every message is queued.
    Live,
    /// Dropping everything until a resume point. `report`: this is a skip (reported
    /// to the player), not a new player waiting for its first keyframe.
    Waiting { dropped: u64, report: bool },
}

/// What [`PlayerQueue::offer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    Queued,
    /// Dropped while waiting for a keyframe (or the queue has ended).
    NotQueued,
    /// The queue was full: the player started skipping (and may already have resumed,
    /// when this message was a keyframe).
    SkipStarted,
    /// The player was skipped too often and is dropped: remove it.
    Dropped(DropReason),
}

/// One player's pending events.
#[derive(Debug)]
pub(crate) struct PlayerQueue {
    items: VecDeque<Item>,
    bytes: usize,
    mode: Mode,
    /// The configuration generation whose messages this player has been given, `None`
    /// when some of them were lost in a skip.
    config_generation: Option<u64>,
    /// When recent skips happened, oldest first, within the window.
    skips: VecDeque<Instant>,
    /// `Ended` or `Dropped`, returned once the items are drained, forever after.
    end: Option<PlayerEvent>,
}

impl PlayerQueue {
    /// A queue for a new player, filled with the stream's snapshot: configuration,
    /// then the cached GOP. With no GOP to start from, the player waits for the next
    /// keyframe (or, on a stream with no video, the next audio frame).
    pub fn new(stream: &StreamState) -> PlayerQueue {
        let mut queue = PlayerQueue {
            items: VecDeque::with_capacity(64),
            bytes: 0,
            mode: Mode::Live,
            config_generation: None,
            skips: VecDeque::new(),
            end: None,
        };
        queue.push_config(stream);
        let gop = stream.gop();
        if gop.is_empty() && stream.has_video() {
            queue.mode = Mode::Waiting {
                dropped: 0,
                report: false,
            };
        }
        for message in gop {
            queue.push(message.clone(), false);
        }
        queue
    }

    /// Offers one published message, applying the slow-player policy.
    pub fn offer(&mut self, ingested: &Ingested, stream: &StreamState, now: Instant) -> Offer {
        if self.end.is_some() {
            return Offer::NotQueued;
        }
        let mut outcome = Offer::Queued;
        if self.mode == Mode::Live && self.is_full_for(&ingested.message) {
            if let Some(reason) = self.record_skip(now) {
                self.items.clear();
                self.bytes = 0;
                self.end = Some(PlayerEvent::Dropped { reason });
                return Offer::Dropped(reason);
            }
            let dropped = self.clear_for_skip();
            self.mode = Mode::Waiting {
                dropped,
                report: true,
            };
            outcome = Offer::SkipStarted;
        }
        if let Mode::Waiting { dropped, report } = self.mode {
            if !ingested.resume_point {
                self.mode = Mode::Waiting {
                    dropped: dropped + 1,
                    report,
                };
                return if outcome == Offer::SkipStarted {
                    outcome
                } else {
                    Offer::NotQueued
                };
            }
            if report {
                self.items.push_back(Item::Skipped(dropped));
            }
            if self.config_generation != Some(stream.config_generation()) {
                self.push_config(stream);
            }
            self.mode = Mode::Live;
        }
        self.push(ingested.message.clone(), ingested.is_config);
        if ingested.is_config {
            self.config_generation = Some(stream.config_generation());
        }
        outcome
    }

    /// The publication ended: the player gets what is queued, then `Ended`.
    pub fn end(&mut self) {
        if self.end.is_none() {
            self.end = Some(PlayerEvent::Ended);
        }
    }

    /// The next event, or `None` when there is none yet.
    pub fn pop(&mut self) -> Option<PlayerEvent> {
        match self.items.pop_front() {
            Some(Item::Message { message, .. }) => {
                self.bytes -= message.payload.len();
                Some(PlayerEvent::Message(message))
            }
            Some(Item::Skipped(dropped_messages)) => {
                Some(PlayerEvent::Skipped { dropped_messages })
            }
            None => self.end.clone(),
        }
    }

    /// Nothing to deliver now (the consumer would have to wait).
    pub fn is_idle(&self) -> bool {
        self.items.is_empty() && self.end.is_none()
    }

    fn is_full_for(&self, message: &RtmpMessage) -> bool {
        self.items.len() >= PLAYER_QUEUE_MAX_MESSAGES
            || self.bytes + message.payload.len() > PLAYER_QUEUE_MAX_BYTES
    }

    /// Records a skip at `now`; returns the drop reason when that makes too many.
    fn record_skip(&mut self, now: Instant) -> Option<DropReason> {
        while let Some(&oldest) = self.skips.front() {
            if now.saturating_duration_since(oldest) >= PLAYER_SKIP_WINDOW {
                self.skips.pop_front();
            } else {
                break;
            }
        }
        self.skips.push_back(now);
        (self.skips.len() >= PLAYER_MAX_SKIPS).then_some(DropReason::TooSlow {
            skips: self.skips.len(),
            window: PLAYER_SKIP_WINDOW,
        })
    }

    /// Empties the queue for a skip; returns how many messages the player loses.
    fn clear_for_skip(&mut self) -> u64 {
        let mut dropped = 0;
        for item in self.items.drain(..) {
            match item {
                Item::Message { is_config, .. } => {
                    dropped += 1;
                    if is_config {
                        self.config_generation = None;
                    }
                }
                // An unread report of an earlier skip: fold its count into this one.
                Item::Skipped(earlier) => dropped += earlier,
            }
        }
        self.bytes = 0;
        dropped
    }

    fn push_config(&mut self, stream: &StreamState) {
        for message in stream.config() {
            self.push(message.clone(), true);
        }
        self.config_generation = Some(stream.config_generation());
    }

    fn push(&mut self, message: RtmpMessage, is_config: bool) {
        self.bytes += message.payload.len();
        self.items.push_back(Item::Message { message, is_config });
    }
}
