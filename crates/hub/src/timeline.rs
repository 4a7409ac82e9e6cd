//! A stream's timeline across takeovers. Players stay attached when a new publisher
//! takes a stream over, but the new encoder starts its own clock (OBS and ffmpeg start
//! at 0): forwarded as sent, its timestamps would jump back by however long the old
//! one ran, which stalls flv.js/mpegts.js and makes `ffmpeg -c copy` reject
//! non-monotonic DTS. So after a takeover every message of the new publication gets a
//! constant offset that makes it continue just after the highest timestamp forwarded
//! before. A stream that never saw a takeover has offset 0: the encoder's timestamps
//! exactly.

use longhaul_rtmp::RtmpMessage;

/// How far after the highest timestamp forwarded before a takeover the new
/// publication's first message lands, in milliseconds. 1 ms, the smallest step that
/// keeps every track strictly increasing, rather than a frame-duration estimate: it
/// needs no per-track rate (unknown for an audio-only, variable-rate or just-started
/// stream) and is never wrong by more than a frame. What it gives up: the old
/// publisher's last audio frame (~21 ms of AAC) may overlap the new one's first by
/// less than a frame, which players handle (flv.js and mpegts.js absorb sub-frame
/// audio drift; ffmpeg checks DTS order, not durations). The wall-clock gap of the
/// takeover itself is not in the timeline either way: players see it as a short
/// buffer underrun, not a timestamp jump.
pub const TAKEOVER_TIMESTAMP_STEP_MS: u32 = 1;

/// How far ahead of the timeline a leg's first message after an on-air switch may be and
/// still keep its timestamps: 10 s. The two legs of one encoder (ffmpeg's `tee`, OBS's
/// two outputs) share a clock, and two encoders started together differ by a few hundred
/// ms, so the time a leg was off air shows as a forward step the size of the gap, as it
/// should. A leg further ahead runs on a clock of its own (an encoder started long
/// before the other): it is rebased as after a takeover, so players see no jump.
pub const LEG_CLOCK_TOLERANCE_MS: u32 = 10_000;

/// Rebases each publication's timestamps onto the stream's one timeline.
#[derive(Debug, Default)]
pub(crate) struct Timeline {
    /// Highest timestamp forwarded on the stream (in RTMP's wrapping order: timestamps
    /// wrap at 2^32 ms), `None` before the first. The highest rather than the last:
    /// audio and video are interleaved a few tens of ms out of order, and every track
    /// must continue after everything its players saw.
    high: Option<u32>,
    /// Added (wrapping) to every timestamp of the current publication.
    offset: u32,
    /// A takeover happened: the next message sets `offset`.
    rebase_pending: bool,
    /// An on-air switch happened: the next message sets `offset` if it would not
    /// continue the timeline ([`Timeline::switch_source`]).
    rebase_if_off: bool,
    /// A publication on the same clock took over ([`Timeline::continue_clock`]): what it
    /// sends up to the highest timestamp forwarded is already forwarded.
    continuing: bool,
    /// The highest timestamp forwarded of audio and of video, for
    /// [`Timeline::continuation`]: the tracks are interleaved a few tens of ms apart, so a
    /// resent keyframe may be after the last video forwarded and before the last audio.
    high_by_track: [Option<u32>; 2],
}

/// The index of `type_id`'s track in `Timeline::high_by_track`.
fn track(type_id: u8) -> Option<usize> {
    match type_id {
        8 => Some(0),
        9 => Some(1),
        _ => None,
    }
}

/// What a publication that continues the clock ([`Timeline::continue_clock`]) does with
/// one of its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Continuation {
    /// Forward it: it is after everything forwarded (or nothing needs checking).
    Forward,
    /// Drop it: at or before the highest timestamp forwarded, so the stream had it from
    /// the publication before.
    AlreadyForwarded,
    /// It is further from the timeline than [`LEG_CLOCK_TOLERANCE_MS`]: another clock
    /// after all (an encoder that started again). Take the stream over as usual.
    OtherClock,
}

impl Timeline {
    /// A new publication took the stream over: its first message will set the offset.
    pub fn take_over(&mut self) {
        self.rebase_pending = true;
    }

    /// A publication on the *same clock* took over: a leg pulled from a peer origin
    /// replaced by the same leg published here (the edge moved it here) or the reverse.
    /// Its timestamps keep the current offset, and what it sends that the stream already
    /// forwarded (an edge resumes from the keyframe before what it last knew delivered)
    /// is dropped ([`Timeline::continuation`]) instead of rebased: a rebase would put
    /// this leg a GOP ahead of the rendition's other leg, and the on-air stream would
    /// jump by that much at its next switch.
    pub fn continue_clock(&mut self) {
        self.continuing = true;
    }

    /// Whether a media message of a publication that continues the clock has come past
    /// its track's timeline: see [`Continuation`]. The continuation ends with the first
    /// message past every track. Always [`Continuation::Forward`] otherwise.
    pub fn continuation(&mut self, message: &RtmpMessage) -> Continuation {
        if !self.continuing {
            return Continuation::Forward;
        }
        let Some(high) = self.high else {
            self.continuing = false;
            return Continuation::Forward;
        };
        let at = message.timestamp.wrapping_add(self.offset);
        if is_after(at, high) {
            self.continuing = false;
            return if at.wrapping_sub(high) > LEG_CLOCK_TOLERANCE_MS {
                Continuation::OtherClock
            } else {
                Continuation::Forward
            };
        }
        if high.wrapping_sub(at) > LEG_CLOCK_TOLERANCE_MS {
            self.continuing = false;
            return Continuation::OtherClock;
        }
        let track_high = track(message.type_id).and_then(|t| self.high_by_track[t]);
        match track_high {
            Some(h) if is_after(at, h) => Continuation::Forward,
            // Data messages, and tracks not seen before, go by the stream's highest.
            _ => Continuation::AlreadyForwarded,
        }
    }

    /// Whether a publication continuing the clock has yet to come past the timeline.
    pub fn is_continuing(&self) -> bool {
        self.continuing
    }

    /// The stream now comes from another source on a clock that may or may not be the
    /// same (a rendition's other leg going on air): its next message keeps the current
    /// offset if that puts it after the highest timestamp forwarded and at most
    /// [`LEG_CLOCK_TOLERANCE_MS`] beyond; otherwise it is rebased as after a takeover.
    pub fn switch_source(&mut self) {
        self.rebase_if_off = true;
    }

    /// `message` on the stream's timeline: the same message (same shared payload, no
    /// copy) with `offset` added to its timestamp.
    pub fn rebase(&mut self, message: RtmpMessage) -> RtmpMessage {
        if std::mem::take(&mut self.rebase_if_off) {
            if let Some(high) = self.high {
                let at = message.timestamp.wrapping_add(self.offset);
                let ahead = at.wrapping_sub(high);
                if !is_after(at, high) || ahead > LEG_CLOCK_TOLERANCE_MS {
                    self.rebase_pending = true;
                }
            }
        }
        if self.rebase_pending {
            self.rebase_pending = false;
            // Nothing forwarded yet (a takeover before any message): nothing to
            // continue from, the encoder's own timestamps are as good as any.
            if let Some(high) = self.high {
                self.offset = high
                    .wrapping_add(TAKEOVER_TIMESTAMP_STEP_MS)
                    .wrapping_sub(message.timestamp);
            }
        }
        if self.offset == 0 {
            return message;
        }
        RtmpMessage {
            timestamp: message.timestamp.wrapping_add(self.offset),
            ..message
        }
    }

    /// `message` (already rebased) was forwarded to the players.
    pub fn forwarded(&mut self, message: &RtmpMessage) {
        let timestamp = message.timestamp;
        match self.high {
            Some(high) if !is_after(timestamp, high) => {}
            _ => self.high = Some(timestamp),
        }
        if let Some(t) = track(message.type_id) {
            match self.high_by_track[t] {
                Some(high) if !is_after(timestamp, high) => {}
                _ => self.high_by_track[t] = Some(timestamp),
            }
        }
    }

    /// What is added to the current publication's timestamps (0 without a takeover).
    pub fn offset(&self) -> u32 {
        self.offset
    }
}

/// Whether `a` is after `b` in RTMP's wrapping timestamp order (serial-number
/// arithmetic: within half the 2^32 ms range ahead).
pub(crate) fn is_after(a: u32, b: u32) -> bool {
    let ahead = a.wrapping_sub(b);
    ahead != 0 && ahead < 1 << 31
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    fn forward(timeline: &mut Timeline, message: RtmpMessage) -> u32 {
        let message = timeline.rebase(message);
        timeline.forwarded(&message);
        message.timestamp
    }

    #[test]
    fn without_a_takeover_timestamps_are_untouched() {
        let mut timeline = Timeline::default();
        for ts in [0, 40, 20, 3_600_000, u32::MAX, 0, 5] {
            assert_eq!(forward(&mut timeline, inter(ts, 10)), ts);
        }
        assert_eq!(timeline.offset(), 0);
    }

    #[test]
    fn takeover_continues_after_the_highest_timestamp_sharing_the_payload() {
        let mut timeline = Timeline::default();
        forward(&mut timeline, inter(3_600_000, 10));
        forward(&mut timeline, aac(3_599_990)); // interleaved slightly behind
        timeline.take_over();
        let first = aac_header(0);
        let rebased = timeline.rebase(first.clone());
        assert_eq!(rebased.timestamp, 3_600_001);
        assert_eq!(rebased.payload.as_ptr(), first.payload.as_ptr(), "no copy");
        timeline.forwarded(&rebased);
        assert_eq!(forward(&mut timeline, inter(40, 10)), 3_600_041);
        assert_eq!(timeline.offset(), 3_600_001);

        // A second takeover continues from the rebased timeline.
        timeline.take_over();
        assert_eq!(forward(&mut timeline, keyframe(500, 10)), 3_600_042);
        assert_eq!(forward(&mut timeline, inter(540, 10)), 3_600_082);
    }

    #[test]
    fn rebasing_wraps_like_rtmp_timestamps() {
        let mut timeline = Timeline::default();
        forward(&mut timeline, inter(u32::MAX - 5, 10));
        forward(&mut timeline, inter(3, 10)); // past the wrap: after u32::MAX - 5
        timeline.take_over();
        assert_eq!(forward(&mut timeline, inter(1000, 10)), 4);
        assert_eq!(forward(&mut timeline, inter(1040, 10)), 44);
    }

    #[test]
    fn a_publication_on_the_same_clock_drops_what_was_forwarded_and_keeps_the_offset() {
        let mut timeline = Timeline::default();
        for ts in [1000, 1040, 1080] {
            forward(&mut timeline, inter(ts, 10));
        }
        timeline.continue_clock();
        // It starts again at the keyframe before: already forwarded.
        for ts in [960, 1000, 1080] {
            assert_eq!(
                timeline.continuation(&inter(ts, 10)),
                Continuation::AlreadyForwarded
            );
        }
        assert_eq!(
            timeline.continuation(&inter(1120, 10)),
            Continuation::Forward
        );
        assert_eq!(forward(&mut timeline, inter(1120, 10)), 1120);
        // Past the timeline, it is an ordinary publication.
        assert!(!timeline.is_continuing());
        assert_eq!(timeline.continuation(&inter(0, 10)), Continuation::Forward);
    }

    #[test]
    fn a_publication_said_to_share_the_clock_that_does_not_is_taken_over() {
        let mut timeline = Timeline::default();
        forward(&mut timeline, inter(3_600_000, 10));
        timeline.continue_clock();
        assert_eq!(
            timeline.continuation(&inter(0, 10)),
            Continuation::OtherClock
        );
        let mut timeline = Timeline::default();
        forward(&mut timeline, inter(0, 10));
        timeline.continue_clock();
        assert_eq!(
            timeline.continuation(&inter(3_600_000, 10)),
            Continuation::OtherClock
        );
    }

    #[test]
    fn a_source_switch_keeps_a_shared_clock_and_rebases_another() {
        let mut timeline = Timeline::default();
        forward(&mut timeline, inter(10_000, 10));
        // The other leg of the same encoder, 600 ms later: its own timestamps.
        timeline.switch_source();
        assert_eq!(forward(&mut timeline, keyframe(10_600, 10)), 10_600);
        assert_eq!(forward(&mut timeline, inter(10_640, 10)), 10_640);
        // A leg behind the timeline (its encoder started later): continues after it.
        timeline.switch_source();
        assert_eq!(forward(&mut timeline, keyframe(3_000, 10)), 10_641);
        assert_eq!(forward(&mut timeline, inter(3_040, 10)), 10_681);
        // A leg far ahead (a clock of its own): continues after it too.
        timeline.switch_source();
        assert_eq!(forward(&mut timeline, keyframe(900_000, 10)), 10_682);
        // Within the tolerance ahead: kept, with the offset in force.
        timeline.switch_source();
        assert_eq!(forward(&mut timeline, keyframe(905_000, 10)), 15_682);
    }

    #[test]
    fn takeover_before_anything_was_forwarded_keeps_the_encoder_timestamps() {
        let mut timeline = Timeline::default();
        timeline.take_over();
        assert_eq!(forward(&mut timeline, inter(700, 10)), 700);
        assert_eq!(timeline.offset(), 0);
    }
}
