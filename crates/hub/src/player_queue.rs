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

/// Most messages a player may have queued. Holds a full snapshot (configuration, at
/// most 17 messages, and a cached GOP, at most [`crate::GOP_CACHE_MAX_MESSAGES`] =
/// 1024) plus over 9 s of live stream at 60 fps video with 48 kHz AAC (~107
/// messages/s): a player this far behind is not live.
pub const PLAYER_QUEUE_MAX_MESSAGES: usize = 2048;

/// Most payload bytes a player may have queued: a full snapshot (the configuration,
/// at most [`crate::CONFIG_MAX_BYTES`] = 2 MiB, and a full GOP cache,
/// [`crate::GOP_CACHE_MAX_BYTES`] = 8 MiB) plus a GOP cache's worth again of live
/// stream. Payloads are shared, so this bounds what the slowest player pins, not a
/// per-player copy.
pub const PLAYER_QUEUE_MAX_BYTES: usize = crate::CONFIG_MAX_BYTES + 2 * crate::GOP_CACHE_MAX_BYTES;

/// A player skipped this many times within [`PLAYER_SKIP_WINDOW`] is dropped. Each skip
/// means ~10 s of backlog lost; three in a minute means the player's link cannot carry
/// the stream, and closing it lets it reconnect (or pick a lower rendition) instead of
/// watching a slideshow.
pub const PLAYER_MAX_SKIPS: usize = 3;

/// The window [`PLAYER_MAX_SKIPS`] is counted over.
pub const PLAYER_SKIP_WINDOW: Duration = Duration::from_secs(60);

// A snapshot (configuration + cached GOP), which a new player's queue starts with and
// a skipped player's resumes with, is pushed without a bound check: the configuration
// and GOP bounds guarantee it fits, with room to spare for live messages (a GOP's
// worth of bytes, 8 s of 60 fps video with AAC at ~107 messages/s).
const SNAPSHOT_MAX_MESSAGES: usize =
    crate::config::CONFIG_MAX_MESSAGES + crate::GOP_CACHE_MAX_MESSAGES;
const SNAPSHOT_MAX_BYTES: usize = crate::CONFIG_MAX_BYTES + crate::GOP_CACHE_MAX_BYTES;
const _: () = assert!(PLAYER_QUEUE_MAX_MESSAGES >= SNAPSHOT_MAX_MESSAGES + 8 * 107);
const _: () = assert!(PLAYER_QUEUE_MAX_BYTES >= SNAPSHOT_MAX_BYTES + crate::GOP_CACHE_MAX_BYTES);

#[derive(Debug)]
enum Item {
    Message {
        message: RtmpMessage,
        is_config: bool,
    },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn drain(queue: &mut PlayerQueue) -> Vec<PlayerEvent> {
        let mut events = Vec::new();
        while !queue.is_idle() {
            match queue.pop() {
                Some(event @ (PlayerEvent::Ended | PlayerEvent::Dropped { .. })) => {
                    events.push(event);
                    break;
                }
                Some(event) => events.push(event),
                None => break,
            }
        }
        events
    }

    fn msg(message: RtmpMessage) -> PlayerEvent {
        PlayerEvent::Message(message)
    }

    /// Pushes into the stream and offers to the queue, as the hub does.
    fn push(
        state: &mut StreamState,
        queue: &mut PlayerQueue,
        m: RtmpMessage,
        now: Instant,
    ) -> Offer {
        let ingested = state.accept(m);
        queue.offer(&ingested, state, now)
    }

    fn stream_with_gop() -> StreamState {
        let mut state = StreamState::default();
        state.accept(set_data_frame(0).0);
        state.accept(avc_header(0));
        state.accept(aac_header(0));
        state.accept(inter(0, 10)); // before the keyframe: not in the snapshot
        state.accept(keyframe(40, 100));
        state.accept(aac(50));
        state.accept(inter(80, 10));
        state
    }

    #[test]
    fn new_player_gets_config_then_gop_then_live() {
        let mut state = stream_with_gop();
        let mut queue = PlayerQueue::new(&state);
        let now = Instant::now();
        assert_eq!(
            push(&mut state, &mut queue, inter(120, 10), now),
            Offer::Queued
        );
        let (meta, offset) = set_data_frame(0);
        let stripped = RtmpMessage {
            payload: meta.payload.slice(offset..),
            ..meta
        };
        assert_eq!(
            drain(&mut queue),
            vec![
                msg(stripped),
                msg(avc_header(0)),
                msg(aac_header(0)),
                msg(keyframe(40, 100)),
                msg(aac(50)),
                msg(inter(80, 10)),
                msg(inter(120, 10)),
            ]
        );
    }

    #[test]
    fn new_player_without_gop_waits_for_a_keyframe_silently() {
        let mut state = StreamState::default();
        state.accept(avc_header(0));
        let mut queue = PlayerQueue::new(&state);
        let now = Instant::now();
        assert_eq!(
            push(&mut state, &mut queue, inter(0, 10), now),
            Offer::NotQueued
        );
        assert_eq!(push(&mut state, &mut queue, aac(0), now), Offer::NotQueued);
        assert_eq!(
            push(&mut state, &mut queue, keyframe(40, 10), now),
            Offer::Queued
        );
        assert_eq!(
            drain(&mut queue),
            vec![msg(avc_header(0)), msg(keyframe(40, 10))]
        );
    }

    /// Fills the queue to its message bound with inter frames.
    fn fill(state: &mut StreamState, queue: &mut PlayerQueue, now: Instant) {
        let mut ts = 1000;
        while queue.items.len() < PLAYER_QUEUE_MAX_MESSAGES {
            assert_eq!(push(state, queue, inter(ts, 10), now), Offer::Queued);
            ts += 1;
        }
    }

    #[test]
    fn full_queue_skips_to_the_next_keyframe() {
        let mut state = stream_with_gop();
        let mut queue = PlayerQueue::new(&state);
        let now = Instant::now();
        fill(&mut state, &mut queue, now);
        assert_eq!(
            push(&mut state, &mut queue, inter(5000, 10), now),
            Offer::SkipStarted
        );
        assert_eq!(
            push(&mut state, &mut queue, aac(5001), now),
            Offer::NotQueued
        );
        assert_eq!(
            push(&mut state, &mut queue, keyframe(5002, 10), now),
            Offer::Queued
        );
        assert_eq!(push(&mut state, &mut queue, aac(5003), now), Offer::Queued);
        // The snapshot's config messages were among the lost: they are sent again.
        assert_eq!(
            drain(&mut queue),
            vec![
                PlayerEvent::Skipped {
                    dropped_messages: PLAYER_QUEUE_MAX_MESSAGES as u64 + 2
                },
                msg(state.config().next().cloned().unwrap_or_else(|| aac(0))),
                msg(avc_header(0)),
                msg(aac_header(0)),
                msg(keyframe(5002, 10)),
                msg(aac(5003)),
            ]
        );
    }

    #[test]
    fn skip_resends_config_only_when_needed() {
        let mut state = StreamState::default();
        let now = Instant::now();
        state.accept(avc_header(0));
        state.accept(keyframe(0, 10));
        let mut queue = PlayerQueue::new(&state);
        // The player reads its snapshot: its configuration is delivered.
        assert_eq!(drain(&mut queue).len(), 2);
        fill(&mut state, &mut queue, now);
        // Overflow on a keyframe: skip and resume at once, config unchanged.
        assert_eq!(
            push(&mut state, &mut queue, keyframe(9000, 10), now),
            Offer::SkipStarted
        );
        assert_eq!(
            drain(&mut queue),
            vec![
                PlayerEvent::Skipped {
                    dropped_messages: PLAYER_QUEUE_MAX_MESSAGES as u64
                },
                msg(keyframe(9000, 10)),
            ]
        );
        // Now a new header arrives while the player is skipping: it is replayed.
        fill(&mut state, &mut queue, now);
        let mut header = avc_header(9100);
        header.payload = bytes::Bytes::from_static(&[0x17, 0x00, 0, 0, 0, 9]);
        assert_eq!(
            push(&mut state, &mut queue, inter(9050, 10), now),
            Offer::SkipStarted
        );
        assert_eq!(
            push(&mut state, &mut queue, header.clone(), now),
            Offer::NotQueued
        );
        assert_eq!(
            push(&mut state, &mut queue, keyframe(9200, 10), now),
            Offer::Queued
        );
        assert_eq!(
            drain(&mut queue),
            vec![
                PlayerEvent::Skipped {
                    dropped_messages: PLAYER_QUEUE_MAX_MESSAGES as u64 + 2
                },
                msg(header),
                msg(keyframe(9200, 10)),
            ]
        );
    }

    #[test]
    fn byte_bound_also_skips() {
        let mut state = StreamState::default();
        let now = Instant::now();
        state.accept(keyframe(0, 10));
        let mut queue = PlayerQueue::new(&state);
        let big = PLAYER_QUEUE_MAX_BYTES / 4;
        for ts in 0..3 {
            assert_eq!(
                push(&mut state, &mut queue, inter(ts, big), now),
                Offer::Queued
            );
        }
        assert_eq!(
            push(&mut state, &mut queue, inter(3, big), now),
            Offer::SkipStarted
        );
    }

    #[test]
    fn largest_snapshot_leaves_a_gop_of_live_room() {
        // Configuration at its byte budget and a GOP just under the cache's bound.
        let mut state = StreamState::default();
        let header_bytes = crate::CONFIG_MESSAGE_MAX_BYTES;
        for track in 0..(crate::CONFIG_MAX_BYTES / header_bytes) as u8 {
            let mut payload = vec![0x90, b'a', b'v', b'0', b'0' + track];
            payload.resize(header_bytes, track);
            state.accept(message(9, 0, payload));
        }
        assert_eq!(state.config_bytes(), crate::CONFIG_MAX_BYTES);
        state.accept(keyframe(0, crate::GOP_CACHE_MAX_BYTES - 10));
        let mut queue = PlayerQueue::new(&state);
        assert_eq!(
            queue.bytes,
            crate::CONFIG_MAX_BYTES + crate::GOP_CACHE_MAX_BYTES - 10,
            "configuration bytes count against the queue bound"
        );
        // A GOP's worth of live stream still fits before the player is skipped.
        let now = Instant::now();
        let frame = crate::GOP_CACHE_MAX_BYTES / 8;
        for ts in 1..=8 {
            assert_eq!(
                push(&mut state, &mut queue, inter(ts, frame), now),
                Offer::Queued
            );
        }
        assert_eq!(
            push(&mut state, &mut queue, inter(9, frame), now),
            Offer::SkipStarted
        );
    }

    #[test]
    fn too_many_skips_within_the_window_drop_the_player() {
        let mut state = StreamState::default();
        let start = Instant::now();
        state.accept(keyframe(0, 10));
        let mut queue = PlayerQueue::new(&state);
        for skip in 0..PLAYER_MAX_SKIPS - 1 {
            let now = start + Duration::from_secs(skip as u64);
            fill(&mut state, &mut queue, now);
            assert_eq!(
                push(&mut state, &mut queue, keyframe(0, 10), now),
                Offer::SkipStarted
            );
        }
        fill(&mut state, &mut queue, start);
        let reason = DropReason::TooSlow {
            skips: PLAYER_MAX_SKIPS,
            window: PLAYER_SKIP_WINDOW,
        };
        assert_eq!(
            push(
                &mut state,
                &mut queue,
                inter(0, 10),
                start + Duration::from_secs(10)
            ),
            Offer::Dropped(reason)
        );
        assert_eq!(queue.pop(), Some(PlayerEvent::Dropped { reason }));
        assert_eq!(queue.pop(), Some(PlayerEvent::Dropped { reason }));
        assert_eq!(
            push(&mut state, &mut queue, keyframe(0, 10), start),
            Offer::NotQueued
        );
    }

    #[test]
    fn skips_outside_the_window_are_forgiven() {
        let mut state = StreamState::default();
        let start = Instant::now();
        state.accept(keyframe(0, 10));
        let mut queue = PlayerQueue::new(&state);
        for skip in 0..PLAYER_MAX_SKIPS * 2 {
            let now = start + PLAYER_SKIP_WINDOW * skip as u32;
            fill(&mut state, &mut queue, now);
            assert_eq!(
                push(&mut state, &mut queue, keyframe(0, 10), now),
                Offer::SkipStarted
            );
        }
    }

    #[test]
    fn end_delivers_the_queue_then_ended_forever() {
        let mut state = stream_with_gop();
        let mut queue = PlayerQueue::new(&state);
        queue.end();
        assert_eq!(
            push(&mut state, &mut queue, inter(500, 10), Instant::now()),
            Offer::NotQueued
        );
        let events = drain(&mut queue);
        assert_eq!(events.len(), 7);
        assert_eq!(events.last(), Some(&PlayerEvent::Ended));
        assert_eq!(queue.pop(), Some(PlayerEvent::Ended));
    }
}
