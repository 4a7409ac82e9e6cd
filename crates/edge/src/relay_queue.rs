//! The bounded queue between an encoder's socket and its tunnel stream, sans IO.
//!
//! An edge reads an encoder as fast as it sends and writes each message into a QUIC
//! stream that goes only as fast as the path to the origin allows. This queue sits
//! between the two and decides, with time passed in, what happens when the tunnel is
//! slower than the encoder:
//!
//! 1. **Back-pressure first.** Once the queue's cost reaches `pause_bytes` (its payload
//!    bytes plus [`MESSAGE_COST`] per message: a flood of empty messages costs memory
//!    too),
//!    [`RelayQueue::should_read`] says no: the driver stops reading the encoder's socket,
//!    its TCP receive window closes, and the encoder's own congestion handling (OBS drops
//!    frames, ffmpeg slows down) sees the slow path as if it were its own. Reading resumes
//!    as soon as the writer takes the queue below the bound again.
//! 2. **Whole GOPs dropped second.** If the queue stays at or over the bound and its
//!    oldest droppable message has waited `max_delay` or longer, the tunnel is not
//!    absorbing a loss burst but cannot carry the stream: messages are dropped from the
//!    front **up to, not including, the next video keyframe**, again while both conditions
//!    hold. What goes out next is always a keyframe, so players freeze on the last frame
//!    and resume at the keyframe; they never decode a frame whose reference is gone.
//!    Without a later keyframe in the queue nothing is dropped (the queue holds part of
//!    one GOP): the driver stays paused until the writer makes room.
//! 3. **Configuration is never dropped.** Metadata and other data messages (cue points,
//!    text), sequence headers and the E-RTMP metadata and command frames that
//!    [`longhaul_rtmp::media`] reports as `Other` stay queued, in order, ahead of the
//!    keyframe: the origin needs them to describe the stream, and they are small and rare.
//!
//! **Audio-only streams** (no video message seen yet) have no keyframes. Every audio frame
//! decodes on its own (AAC, Opus, MP3 frames carry no inter-frame references), so the rule
//! there is: while at or over the bound, drop the audio (and any other droppable message)
//! that has waited `max_delay` or longer, oldest first. A stream that has sent video is
//! treated as video from then on, so its audio is never dropped apart from its GOP.
//!
//! Every drop is counted in [`RelayStats`] (runs of GOPs, messages, payload bytes), as are
//! the times reading paused and for how long.
//!
//! ## The memory bound
//!
//! The queue holds at most `pause_bytes` of payload plus what arrived after the bound
//! was crossed but before the driver checked [`RelayQueue::should_read`]: what one
//! call of the session decoded, at most `longhaul_rtmp::server::MAX_MESSAGES_PER_INPUT`
//! messages. A read of `R` bytes completes at most `R` bytes plus the partial messages
//! the chunk decoder already held (its `max_buffered_bytes`), so per stream:
//! `pause_bytes + R + max_buffered_bytes` at worst, with [`MESSAGE_COST`] of
//! bookkeeping per message on top. Once, at publish start, the session releases the
//! media it held while the origin was asked (`longhaul_rtmp::server::MAX_HELD_MEDIA_BYTES`
//! at most) in one go; that burst drains or ages out under the same rules.

use longhaul_rtmp::media::{self, Frame};
use longhaul_rtmp::message::type_id;
use longhaul_rtmp::RtmpMessage;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Default `relay.pause_bytes`: 1 MiB. About one second of an 8 Mbit/s rendition and
/// several keyframes of a 6 Mbit/s one (100-300 KB each), enough to ride out a tunnel
/// hiccup without pausing the encoder. The long path's bandwidth-delay product does not
/// live here but in the QUIC stream's window (1 MiB, `tunnel.transport.stream_window`):
/// a stream the path cannot carry queues at most that inside QUIC before it queues here,
/// where old GOPs are dropped. At
/// 2,000 publishers (SRS's published one-core figure) a full stall of every stream would
/// hold 2 GiB, which an edge host has.
pub const DEFAULT_PAUSE_BYTES: usize = 1024 * 1024;

/// Default `relay.max_delay_ms`: 2 s. SRT sizes its loss-recovery buffer at 3-6 x RTT
/// for 1-10% loss: 0.7-1.4 s on the 230 ms Singapore-New York path (REFERENCE.md
/// section 5). A message still queued after 2 s is not waiting out a loss burst; the
/// tunnel cannot carry the stream's bitrate, and one GOP (2 s is the keyframe interval
/// ingest operators ask for) of latency is the most worth keeping.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(2);

/// The two numbers the queue runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayLimits {
    /// Queued bytes (payload, plus `message_cost` per message) at which reading the
    /// encoder pauses.
    pub pause_bytes: usize,
    /// What each queued message costs beside its payload. [`MESSAGE_COST`]; the unit
    /// tests set 0 to reason in payload bytes alone.
    pub message_cost: usize,
    /// How long the oldest droppable message may wait, while the queue is full, before
    /// GOPs (or old audio) are dropped.
    pub max_delay: Duration,
}

impl Default for RelayLimits {
    fn default() -> Self {
        Self {
            pause_bytes: DEFAULT_PAUSE_BYTES,
            message_cost: MESSAGE_COST,
            max_delay: DEFAULT_MAX_DELAY,
        }
    }
}

/// What the queue did, for metrics and logs. Counts since the last [`RelayQueue::take_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Runs dropped from the front up to a keyframe: whole GOPs, or the rest of the GOP
    /// whose start had already gone out.
    pub dropped_gops: u64,
    /// Messages dropped (GOP runs and old audio).
    pub dropped_messages: u64,
    /// Payload bytes dropped.
    pub dropped_bytes: u64,
    /// Times reading the encoder paused.
    pub pauses: u64,
    /// Time spent paused (an ongoing pause counts up to the `now` of `take_stats`).
    pub paused: Duration,
}

impl std::ops::AddAssign for RelayStats {
    fn add_assign(&mut self, other: RelayStats) {
        self.dropped_gops += other.dropped_gops;
        self.dropped_messages += other.dropped_messages;
        self.dropped_bytes += other.dropped_bytes;
        self.pauses += other.pauses;
        self.paused += other.paused;
    }
}

/// What one message is to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Never dropped: metadata and data, sequence headers, E-RTMP metadata/command frames.
    Kept,
    /// A video keyframe: a GOP starts here.
    Keyframe,
    /// Anything else: inter frames, audio frames, sequence ends, unparsable payloads.
    Droppable,
}

fn classify(message: &RtmpMessage) -> Class {
    let frame = match message.type_id {
        type_id::DATA_AMF0 | type_id::DATA_AMF3 => return Class::Kept,
        type_id::VIDEO => media::inspect_video(&message.payload).map(|i| i.frame),
        type_id::AUDIO => media::inspect_audio(&message.payload).map(|i| i.frame),
        _ => return Class::Droppable,
    };
    match frame {
        Some(Frame::SequenceHeader | Frame::Other) => Class::Kept,
        Some(Frame::Keyframe) => Class::Keyframe,
        Some(Frame::Coded | Frame::SequenceEnd) | None => Class::Droppable,
    }
}

#[derive(Debug)]
struct Queued {
    message: RtmpMessage,
    class: Class,
    enqueued: Instant,
}

/// What one queued message costs beside its payload: its place in the queue. Without
/// it, one-byte chunks that decode to empty messages queued without limit (a million of
/// them held 72 MB while the queue still counted 0 bytes).
pub const MESSAGE_COST: usize = std::mem::size_of::<Queued>();

/// One published stream's queue. See the module documentation for its rules.
#[derive(Debug)]
pub struct RelayQueue {
    limits: RelayLimits,
    items: VecDeque<Queued>,
    queued_bytes: usize,
    /// A video message went through: GOP rules apply, not the audio-only rule.
    seen_video: bool,
    /// Reading has been paused since then.
    paused_since: Option<Instant>,
    /// The writer last took a message then.
    last_pop: Option<Instant>,
    /// The drop rule was checked at or after its deadline and found nothing it may drop;
    /// only a push or a pop can change that, so [`RelayQueue::poll_timeout`] waits for one.
    blocked: bool,
    stats: RelayStats,
    /// What earlier [`RelayQueue::take_stats`] calls took: with `stats`, the counts
    /// since the queue started ([`RelayQueue::totals`]).
    taken: RelayStats,
}

impl RelayQueue {
    pub fn new(limits: RelayLimits) -> Self {
        Self {
            limits,
            items: VecDeque::new(),
            queued_bytes: 0,
            seen_video: false,
            paused_since: None,
            last_pop: None,
            blocked: false,
            stats: RelayStats::default(),
            taken: RelayStats::default(),
        }
    }

    /// Queues a message read from the encoder at `now`, then applies the drop rule.
    pub fn push(&mut self, message: RtmpMessage, now: Instant) {
        self.seen_video |= message.is_video();
        self.queued_bytes += message.payload.len();
        let class = classify(&message);
        self.items.push_back(Queued {
            message,
            class,
            enqueued: now,
        });
        self.blocked = false;
        self.enforce(now);
    }

    /// The oldest messages for the tunnel, in order: at least one if any is queued, then
    /// more while the batch stays within `max_messages` and `max_bytes` of payload.
    pub fn pop_batch(
        &mut self,
        now: Instant,
        max_messages: usize,
        max_bytes: usize,
    ) -> Vec<RtmpMessage> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while batch.len() < max_messages {
            let Some(next) = self.items.front() else {
                break;
            };
            let len = next.message.payload.len();
            if !batch.is_empty() && bytes + len > max_bytes {
                break;
            }
            let Some(message) = self.pop(now) else {
                break;
            };
            bytes += len;
            batch.push(message);
        }
        batch
    }

    /// The next message for the tunnel, oldest first.
    pub fn pop(&mut self, now: Instant) -> Option<RtmpMessage> {
        let item = self.items.pop_front()?;
        self.last_pop = Some(now);
        self.queued_bytes -= item.message.payload.len();
        self.blocked = false;
        Some(item.message)
    }

    /// Applies the drop rule at `now`, then says whether the driver may read the
    /// encoder's socket.
    ///
    /// Pauses are counted here, where the driver decides, not on every push and pop: a
    /// queue hovering at its bound while the driver reads on is not a pause.
    pub fn should_read(&mut self, now: Instant) -> bool {
        self.enforce(now);
        let reading = !self.over_bound();
        match (reading, self.paused_since) {
            (false, None) => {
                self.paused_since = Some(now);
                self.stats.pauses += 1;
            }
            (true, Some(since)) => {
                self.stats.paused += now.saturating_duration_since(since);
                self.paused_since = None;
            }
            _ => {}
        }
        reading
    }

    /// When the drop rule may next drop something, if nothing is pushed or popped before:
    /// the driver calls [`RelayQueue::should_read`] then. `None` while under the bound or
    /// while nothing can be dropped until the writer moves.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.over_bound() || self.blocked {
            return None;
        }
        self.oldest_droppable()
            .map(|(_, item)| item.enqueued + self.limits.max_delay)
    }

    /// Since when messages have been waiting with the writer taking none: the later of
    /// its last pop and the arrival of the oldest queued message. `None` when empty. The
    /// driver gives up on a tunnel stream that stays idle like this for its write timeout.
    pub fn writer_idle_since(&self) -> Option<Instant> {
        let oldest = self.items.iter().map(|i| i.enqueued).min()?;
        Some(self.last_pop.map_or(oldest, |popped| popped.max(oldest)))
    }

    /// Whether reading is paused now.
    pub fn is_paused(&self) -> bool {
        self.paused_since.is_some()
    }

    /// Counts since the last call; an ongoing pause is counted up to `now`.
    pub fn take_stats(&mut self, now: Instant) -> RelayStats {
        if let Some(since) = self.paused_since.as_mut() {
            self.stats.paused += now.saturating_duration_since(*since);
            *since = now;
        }
        let stats = std::mem::take(&mut self.stats);
        self.taken += stats;
        stats
    }

    /// Counts since the queue started, an ongoing pause up to `now`; takes nothing.
    pub fn totals(&self, now: Instant) -> RelayStats {
        let mut totals = self.taken;
        totals += self.stats;
        if let Some(since) = self.paused_since {
            totals.paused += now.saturating_duration_since(since);
        }
        totals
    }

    /// Payload bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn over_bound(&self) -> bool {
        self.queued_bytes + self.items.len() * self.limits.message_cost >= self.limits.pause_bytes
    }

    /// The first message the drop rule may drop, and its index.
    fn oldest_droppable(&self) -> Option<(usize, &Queued)> {
        self.items
            .iter()
            .enumerate()
            .find(|(_, item)| item.class != Class::Kept)
    }

    /// The drop rule.
    fn enforce(&mut self, now: Instant) {
        while self.over_bound() {
            let Some((front, item)) = self.oldest_droppable() else {
                break;
            };
            if now.saturating_duration_since(item.enqueued) < self.limits.max_delay {
                break;
            }
            let dropped = if self.seen_video {
                self.drop_gop(front)
            } else {
                self.drop_old_audio(now)
            };
            if !dropped {
                self.blocked = true;
                break;
            }
        }
    }

    /// Drops the droppable messages from the front up to the first keyframe after
    /// `front`, keeping the kept ones in order. False when there is no such keyframe.
    fn drop_gop(&mut self, front: usize) -> bool {
        let Some(end) = self
            .items
            .iter()
            .skip(front + 1)
            .position(|item| item.class == Class::Keyframe)
            .map(|i| i + front + 1)
        else {
            return false;
        };
        let run: Vec<Queued> = self.items.drain(..end).collect();
        for item in run.into_iter().rev() {
            if item.class == Class::Kept {
                self.items.push_front(item);
            } else {
                self.count_drop(&item);
            }
        }
        self.stats.dropped_gops += 1;
        true
    }

    /// Drops every droppable message that has waited `max_delay` or longer. False when
    /// there is none.
    fn drop_old_audio(&mut self, now: Instant) -> bool {
        let max_delay = self.limits.max_delay;
        let before = self.stats.dropped_messages;
        let mut kept = VecDeque::with_capacity(self.items.len());
        for item in std::mem::take(&mut self.items) {
            let old = now.saturating_duration_since(item.enqueued) >= max_delay;
            if old && item.class != Class::Kept {
                self.count_drop(&item);
            } else {
                kept.push_back(item);
            }
        }
        self.items = kept;
        self.stats.dropped_messages > before
    }

    fn count_drop(&mut self, item: &Queued) {
        let bytes = item.message.payload.len();
        self.queued_bytes -= bytes;
        self.stats.dropped_messages += 1;
        self.stats.dropped_bytes += bytes as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const MS: Duration = Duration::from_millis(1);

    fn message(type_id: u8, timestamp: u32, head: &[u8], len: usize) -> RtmpMessage {
        let mut payload = head.to_vec();
        payload.resize(len.max(head.len()), 0xab);
        RtmpMessage {
            timestamp,
            type_id,
            stream_id: 1,
            payload: Bytes::from(payload),
        }
    }

    // Legacy H.264 and AAC tags (FLV spec v10, REFERENCE.md section 3).
    fn keyframe(ts: u32, len: usize) -> RtmpMessage {
        message(type_id::VIDEO, ts, &[0x17, 0x01, 0, 0, 0], len)
    }
    fn inter(ts: u32, len: usize) -> RtmpMessage {
        message(type_id::VIDEO, ts, &[0x27, 0x01, 0, 0, 0], len)
    }
    fn avc_header(ts: u32) -> RtmpMessage {
        message(type_id::VIDEO, ts, &[0x17, 0x00, 0, 0, 0, 1, 0x64], 40)
    }
    fn aac_header(ts: u32) -> RtmpMessage {
        message(type_id::AUDIO, ts, &[0xaf, 0x00, 0x12, 0x10], 4)
    }
    fn audio(ts: u32, len: usize) -> RtmpMessage {
        message(type_id::AUDIO, ts, &[0xaf, 0x01], len)
    }
    fn metadata(ts: u32) -> RtmpMessage {
        // AMF0 string "onMetaData", then an empty ECMA array.
        let mut body = vec![0x02, 0x00, 0x0a];
        body.extend_from_slice(b"onMetaData");
        body.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 0, 9]);
        message(type_id::DATA_AMF0, ts, &body, 0)
    }

    /// Limits in payload bytes alone (no per-message cost), which the tests reason in.
    fn limits(pause_bytes: usize, max_delay_ms: u64) -> RelayLimits {
        RelayLimits {
            pause_bytes,
            message_cost: 0,
            max_delay: Duration::from_millis(max_delay_ms),
        }
    }

    /// The attack: one million empty messages (what one-byte type-3 chunks decode to).
    /// Counting payload bytes alone, the queue said "read on" with all of them queued
    /// (72 MB held); with each message's cost counted, reading pauses at the bound.
    #[test]
    fn a_flood_of_empty_messages_reaches_the_bound() {
        let t0 = Instant::now();
        let mut q = RelayQueue::new(RelayLimits::default());
        let mut pushed = 0usize;
        while q.should_read(t0) && pushed < 1_000_000 {
            q.push(message(type_id::VIDEO, 0, &[], 0), t0);
            pushed += 1;
        }
        assert_eq!(q.queued_bytes(), 0, "no payload at all");
        assert!(!q.should_read(t0), "paused at the bound");
        assert_eq!(pushed, DEFAULT_PAUSE_BYTES.div_ceil(MESSAGE_COST));
        assert!(pushed * MESSAGE_COST < 2 * DEFAULT_PAUSE_BYTES);
    }

    #[test]
    fn batches_take_the_oldest_within_their_bounds_and_always_one() {
        let t0 = Instant::now();
        let mut q = RelayQueue::new(limits(1 << 20, 2000));
        for ts in 0..5 {
            q.push(audio(ts, 300), t0);
        }
        q.push(keyframe(5, 5000), t0);
        q.push(audio(6, 300), t0);
        let ts = |b: Vec<RtmpMessage>| b.iter().map(|m| m.timestamp).collect::<Vec<_>>();
        assert_eq!(ts(q.pop_batch(t0, 2, 1 << 20)), [0, 1], "message bound");
        assert_eq!(ts(q.pop_batch(t0, 64, 1000)), [2, 3, 4], "byte bound");
        assert_eq!(
            ts(q.pop_batch(t0, 64, 1000)),
            [5],
            "one even over the byte bound"
        );
        assert_eq!(ts(q.pop_batch(t0, 64, 1000)), [6]);
        assert!(q.pop_batch(t0, 64, 1000).is_empty());
        assert_eq!(q.queued_bytes(), 0);
    }

    fn timestamps(q: &mut RelayQueue, now: Instant) -> Vec<(u8, u32)> {
        std::iter::from_fn(|| q.pop(now))
            .map(|m| (m.type_id, m.timestamp))
            .collect()
    }

    /// Two GOPs of keyframe + 3 inter frames, 100 bytes each, 40 ms apart, pushed at
    /// `t0 + timestamp`.
    fn two_gops(q: &mut RelayQueue, t0: Instant) {
        for ts in (0..8u32).map(|i| i * 40) {
            let m = if ts % 160 == 0 {
                keyframe(ts, 100)
            } else {
                inter(ts, 100)
            };
            q.push(m, t0 + ts * MS);
        }
    }

    #[test]
    fn below_the_bound_everything_passes_in_order() {
        let t0 = Instant::now();
        let mut q = RelayQueue::new(limits(10_000, 100));
        q.push(metadata(0), t0);
        two_gops(&mut q, t0);
        let later = t0 + Duration::from_secs(60);
        assert!(
            q.should_read(later),
            "far under the bound, age alone drops nothing"
        );
        assert_eq!(q.len(), 9);
        assert_eq!(q.poll_timeout(), None);
        let order = timestamps(&mut q, later);
        assert_eq!(order.len(), 9);
        assert_eq!(order[0], (type_id::DATA_AMF0, 0));
        assert_eq!(q.queued_bytes(), 0);
        assert_eq!(q.take_stats(later), RelayStats::default());
    }

    #[test]
    fn reading_pauses_at_the_bound_and_resumes_below_it() {
        let t0 = Instant::now();
        let mut q = RelayQueue::new(limits(300, 10_000));
        q.push(keyframe(0, 100), t0);
        q.push(inter(40, 100), t0);
        assert!(q.should_read(t0));
        q.push(inter(80, 100), t0 + 10 * MS);
        assert!(
            !q.should_read(t0 + 10 * MS),
            "300 bytes queued: at the bound"
        );
        assert!(!q.should_read(t0 + 50 * MS));
        assert_eq!(q.pop(t0 + 60 * MS).map(|m| m.timestamp), Some(0));
        assert!(q.should_read(t0 + 60 * MS));
        let stats = q.take_stats(t0 + 60 * MS);
        assert_eq!(stats.pauses, 1);
        assert_eq!(stats.paused, 50 * MS);
        assert_eq!(stats.dropped_messages, 0);
    }

    #[test]
    fn an_ongoing_pause_is_counted_up_to_the_stats_call() {
        let t0 = Instant::now();
        let mut q = RelayQueue::new(limits(100, 10_000));
        q.push(keyframe(0, 100), t0);
        assert!(!q.should_read(t0));
        assert_eq!(q.take_stats(t0 + 30 * MS).paused, 30 * MS);
        q.pop(t0 + 50 * MS);
        assert!(q.should_read(t0 + 50 * MS));
        let stats = q.take_stats(t0 + 90 * MS);
        assert_eq!(stats.paused, 20 * MS, "only the part since the last call");
        assert_eq!(stats.pauses, 0, "the pause was counted when it started");
    }

    #[test]
    fn a_full_queue_waits_max_delay_then_drops_the_oldest_gop() {
        let t0 = Instant::now();
        let mut q = RelayQueue::new(limits(800, 500));
        two_gops(&mut q, t0);
        assert!(!q.should_read(t0 + 280 * MS), "800 bytes: paused");
        // The oldest message (keyframe 0, pushed at t0) reaches max_delay at t0 + 500 ms.
        assert_eq!(q.poll_timeout(), Some(t0 + 500 * MS));
        assert!(!q.should_read(t0 + 499 * MS));
        assert_eq!(q.len(), 8, "nothing dropped before max_delay");
        assert!(
            q.should_read(t0 + 500 * MS),
            "one GOP dropped: under the bound"
        );
        assert_eq!(
            timestamps(&mut q, t0 + 500 * MS),
            vec![
                (type_id::VIDEO, 160),
                (type_id::VIDEO, 200),
                (type_id::VIDEO, 240),
                (type_id::VIDEO, 280)
            ],
            "the next message out is the second GOP's keyframe"
        );
        let stats = q.take_stats(t0 + 500 * MS);
        assert_eq!(
            (
                stats.dropped_gops,
                stats.dropped_messages,
                stats.dropped_bytes
            ),
            (1, 4, 400)
        );
        assert_eq!(stats.pauses, 1);
    }

    #[test]
    fn the_tail_of_a_gop_already_started_is_dropped_up_to_the_keyframe() {
        let t0 = Instant::now();
        let mut q = RelayQueue::new(limits(600, 500));
        two_gops(&mut q, t0);
        // The writer took the first keyframe and one inter frame; the rest is stuck.
        q.pop(t0 + 280 * MS);
        q.pop(t0 + 280 * MS);
        assert!(!q.should_read(t0 + 300 * MS));
        assert!(q.should_read(t0 + 580 * MS));
        let order = timestamps(&mut q, t0 + 580 * MS);
        assert_eq!(order.first(), Some(&(type_id::VIDEO, 160)));
        let stats = q.take_stats(t0 + 580 * MS);
        assert_eq!((stats.dropped_gops, stats.dropped_messages), (1, 2));
    }

    #[test]
    fn configuration_in_a_dropped_gop_stays_queued_in_order() {
        let t0 = Instant::now();
        let mut q = RelayQueue::new(limits(500, 100));
        q.push(metadata(0), t0);
        q.push(avc_header(0), t0);
        q.push(aac_header(0), t0);
        q.push(keyframe(0, 200), t0);
        q.push(audio(10, 100), t0);
        q.push(inter(40, 200), t0);
        q.push(keyframe(80, 200), t0 + 80 * MS);
        assert!(!q.should_read(t0 + 99 * MS));
        assert!(q.should_read(t0 + 100 * MS));
        let order = timestamps(&mut q, t0 + 100 * MS);
        assert_eq!(
            order,
            vec![
                (type_id::DATA_AMF0, 0),
                (type_id::VIDEO, 0),
                (type_id::AUDIO, 0),
                (type_id::VIDEO, 80)
            ],
            "metadata and both sequence headers, then the next keyframe"
        );
        let stats = q.take_stats(t0 + 100 * MS);
        assert_eq!(
            (
                stats.dropped_gops,
                stats.dropped_messages,
                stats.dropped_bytes
            ),
            (1, 3, 500)
        );
    }

    #[test]
    fn several_gops_go_while_the_queue_stays_full_and_old() {
        let t0 = Instant::now();
        let mut q = RelayQueue::new(limits(300, 100));
        for gop in 0..5u32 {
            q.push(keyframe(gop * 80, 100), t0 + gop * 10 * MS);
            q.push(inter(gop * 80 + 40, 100), t0 + gop * 10 * MS);
        }
        // At 130 ms the GOPs pushed at 0..=30 ms have waited 100 ms or more, and each goes
        // while the queue is still at or over 300 bytes: four GOPs, the last one stays.
        assert!(q.should_read(t0 + 130 * MS));
        assert_eq!(q.queued_bytes(), 200);
        assert_eq!(q.take_stats(t0 + 130 * MS).dropped_gops, 4);
        assert_eq!(q.pop(t0).map(|m| m.timestamp), Some(320));
    }

    #[test]
    fn a_full_queue_without_a_later_keyframe_drops_nothing_and_does_not_spin() {
        let t0 = Instant::now();
        let mut q = RelayQueue::new(limits(300, 100));
        q.push(keyframe(0, 100), t0);
        q.push(inter(40, 100), t0);
        q.push(inter(80, 100), t0);
        assert_eq!(q.poll_timeout(), Some(t0 + 100 * MS));
        assert!(!q.should_read(t0 + 200 * MS), "part of one GOP: never cut");
        assert_eq!(q.len(), 3);
        assert_eq!(
            q.poll_timeout(),
            None,
            "no deadline until a push or pop changes the queue"
        );
        // The next keyframe arrives (the reader was a read behind): now a GOP can go.
        q.push(keyframe(120, 100), t0 + 210 * MS);
        assert!(q.should_read(t0 + 210 * MS));
        assert_eq!(q.pop(t0).map(|m| m.timestamp), Some(120));
    }

    #[test]
    fn audio_only_streams_drop_audio_older_than_max_delay() {
        let t0 = Instant::now();
        let mut q = RelayQueue::new(limits(1_000, 500));
        q.push(metadata(0), t0);
        q.push(aac_header(0), t0);
        for i in 0..10u32 {
            q.push(audio(i * 10, 100), t0 + i * 10 * MS);
        }
        assert!(
            !q.should_read(t0 + 90 * MS),
            "over the bound, nothing old yet"
        );
        assert_eq!(q.poll_timeout(), Some(t0 + 500 * MS));
        // At 530 ms, the frames pushed at 0..=30 ms have waited 500 ms or more.
        assert!(q.should_read(t0 + 530 * MS));
        let order = timestamps(&mut q, t0 + 530 * MS);
        let mut expected = vec![(type_id::DATA_AMF0, 0), (type_id::AUDIO, 0)];
        expected.extend((4..10u32).map(|i| (type_id::AUDIO, i * 10)));
        assert_eq!(
            order, expected,
            "metadata, sequence header, then fresh audio"
        );
        let stats = q.take_stats(t0 + 530 * MS);
        assert_eq!(
            (
                stats.dropped_gops,
                stats.dropped_messages,
                stats.dropped_bytes
            ),
            (0, 4, 400)
        );
    }

    #[test]
    fn audio_of_a_video_stream_is_dropped_only_with_its_gop() {
        let t0 = Instant::now();
        let mut q = RelayQueue::new(limits(300, 100));
        q.push(keyframe(0, 100), t0);
        for i in 0..4u32 {
            q.push(audio(i * 20, 100), t0);
        }
        assert!(
            !q.should_read(t0 + 500 * MS),
            "no later keyframe: nothing goes"
        );
        assert_eq!(q.len(), 5);
        assert_eq!(q.take_stats(t0 + 500 * MS).dropped_messages, 0);
    }

    #[test]
    fn writer_idleness_is_measured_from_the_last_pop_or_the_oldest_arrival() {
        let t0 = Instant::now();
        let mut q = RelayQueue::new(limits(10_000, 100));
        assert_eq!(q.writer_idle_since(), None);
        q.push(keyframe(0, 100), t0 + 10 * MS);
        q.push(inter(40, 100), t0 + 20 * MS);
        assert_eq!(q.writer_idle_since(), Some(t0 + 10 * MS));
        q.pop(t0 + 50 * MS);
        assert_eq!(
            q.writer_idle_since(),
            Some(t0 + 50 * MS),
            "the writer moved"
        );
        q.pop(t0 + 60 * MS);
        assert_eq!(q.writer_idle_since(), None, "nothing waits");
        q.push(inter(80, 100), t0 + 90 * MS);
        assert_eq!(
            q.writer_idle_since(),
            Some(t0 + 90 * MS),
            "an idle writer with nothing to do was not stalled"
        );
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut q = RelayQueue::new(limits(100, 100));
        q.push(keyframe(0, 100), t0);
        q.push(keyframe(40, 100), t0);
        assert!(!q.should_read(t0 - Duration::from_secs(5)));
        assert_eq!(q.len(), 2);
        assert_eq!(
            q.take_stats(t0 - Duration::from_secs(5)).paused,
            Duration::ZERO
        );
    }

    /// Random pushes, pops and checks over simulated time (a fixed xorshift seed, so
    /// every run is the same): messages are conserved, configuration is never dropped,
    /// every drop leaves a keyframe (or configuration) at the front, and the queue never
    /// holds more than the bound plus what one push can add.
    #[test]
    fn random_traffic_keeps_the_invariants() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let t0 = Instant::now();
        let mut now = t0;
        let mut q = RelayQueue::new(limits(5_000, 300));
        let (mut pushed, mut popped, mut kept_in, mut kept_out) = (0u64, 0u64, 0u64, 0u64);
        let mut dropped = RelayStats::default();
        let mut ts = 0u32;
        for step in 0..20_000 {
            now += Duration::from_millis(next() % 15);
            // Phases of a writer that keeps up and one that stalls.
            let pop_share = if (step / 2_000) % 2 == 0 { 30 } else { 2 };
            let r = next() % 100;
            if r < 55 && q.should_read(now) {
                ts += 20;
                let len = 50 + (next() % 900) as usize;
                let m = match next() % 20 {
                    0 => metadata(ts),
                    1 => avc_header(ts),
                    2..=3 => keyframe(ts, len),
                    4..=11 => inter(ts, len),
                    _ => audio(ts, len),
                };
                kept_in += u64::from(classify(&m) == Class::Kept);
                pushed += 1;
                q.push(m, now);
                assert!(
                    q.queued_bytes() < 5_000 + 1_000,
                    "step {step}: bound + one message"
                );
            } else if r < 55 + pop_share {
                if let Some(m) = q.pop(now) {
                    popped += 1;
                    kept_out += u64::from(classify(&m) == Class::Kept);
                }
            } else {
                let before = q.take_stats(now);
                dropped.dropped_messages += before.dropped_messages;
                let _ = q.should_read(now);
                let s = q.take_stats(now);
                dropped.dropped_messages += s.dropped_messages;
                if s.dropped_messages > 0 {
                    let front = q.items.iter().find(|i| i.class != Class::Kept);
                    assert!(
                        front.is_none_or(|i| i.class == Class::Keyframe),
                        "step {step}: a drop leaves a keyframe first"
                    );
                }
            }
            let sum: usize = q.items.iter().map(|i| i.message.payload.len()).sum();
            assert_eq!(sum, q.queued_bytes(), "step {step}: byte count");
        }
        let totals_before = q.totals(now);
        dropped.dropped_messages += q.take_stats(now).dropped_messages;
        assert_eq!(
            q.totals(now),
            totals_before,
            "take_stats moves counts, totals keep them"
        );
        assert_eq!(
            q.totals(now).dropped_messages,
            dropped.dropped_messages,
            "totals are every count taken"
        );
        let left = q.len() as u64;
        kept_out += q.items.iter().filter(|i| i.class == Class::Kept).count() as u64;
        assert_eq!(
            pushed,
            popped + dropped.dropped_messages + left,
            "conserved"
        );
        assert_eq!(kept_in, kept_out, "configuration never dropped");
        assert!(dropped.dropped_messages > 0, "the run exercised drops");
    }

    #[test]
    fn classification_follows_the_media_inspector() {
        assert_eq!(classify(&metadata(0)), Class::Kept);
        assert_eq!(classify(&avc_header(0)), Class::Kept);
        assert_eq!(classify(&aac_header(0)), Class::Kept);
        assert_eq!(classify(&keyframe(0, 10)), Class::Keyframe);
        assert_eq!(classify(&inter(0, 10)), Class::Droppable);
        assert_eq!(classify(&audio(0, 10)), Class::Droppable);
        // Legacy video command frame (FrameType 5): kept.
        assert_eq!(
            classify(&message(type_id::VIDEO, 0, &[0x57, 0x00], 2)),
            Class::Kept
        );
        // Empty video payload: unparsable, droppable.
        assert_eq!(
            classify(&message(type_id::VIDEO, 0, &[], 0)),
            Class::Droppable
        );
        // E-RTMP HEVC keyframe: 0x80 | (1 << 4) | CodedFrames, then "hvc1".
        assert_eq!(
            classify(&message(
                type_id::VIDEO,
                0,
                &[0x91, b'h', b'v', b'c', b'1'],
                9
            )),
            Class::Keyframe
        );
    }
}
