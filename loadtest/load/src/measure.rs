//! What one stream's player saw, judged: plain synchronous code with times passed in
//! (unix microseconds), so every rule is tested without sockets.
//!
//! Rules, per stream:
//! - a frame is *received* the first time its sequence number arrives; again is a
//!   *duplicate*; never is *lost* (`sent − received`);
//! - *out of order*: a first arrival whose sequence number is below one already seen;
//! - *latency*: arrival time − the stamp's send time (the scheduled capture time), first
//!   arrivals only; clock steps backwards count as 0;
//! - *within 1 s / 3 s*: received with latency at most 1 s / 3 s; *late*: received
//!   with latency above `--late`;
//! - a *stall*: a gap longer than [`STALL_GAP`] between consecutive video-frame
//!   arrivals (first arrivals), or, when frames are missing at the end, from the last
//!   video frame received to the last frame due (media time); its whole length counts
//!   in `stall_ms`. Stalls are those of streams that played: a stream that never got a
//!   video frame shows as lost frames, not as a stall;
//! - *sent* is what the encoder produced within the duration, written or not: frames
//!   held back in the publisher, and a failed stream's whole plan, are offered and lost;
//! - latency percentiles count lost frames as infinitely late (see [`percentile`]);
//! - delivered bytes: payload bytes of received frames (duplicates not counted).

use crate::stamp::Stamp;
use std::time::Duration;

/// A gap between video frames arriving longer than this is a stall: 500 ms is 12.5
/// frame times at 25 fps, past what a player's usual 0.5-1 s buffer rides out without
/// the viewer noticing frames stuttering; network jitter on a healthy long-haul path is
/// tens of ms.
pub const STALL_GAP: Duration = Duration::from_millis(500);
/// The fixed "within" thresholds every report carries.
pub const WITHIN_1S_US: u64 = 1_000_000;
pub const WITHIN_3S_US: u64 = 3_000_000;

/// What the encoder produced, handed to [`Meter::finish`]: every frame due within the
/// stream's duration, whether or not the path let the publisher write it. A frame still
/// held back in the publisher at the stream's stop time is *unsent*, and counts as lost:
/// a real encoder behind a slow TCP path drops or stalls on it all the same.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sent {
    pub frames: u64,
    /// Payload bytes of those frames.
    pub bytes: u64,
    /// Of `frames`, those never written to the socket by the stop time.
    pub unsent: u64,
    /// Of `frames`, the video frames.
    pub video: u64,
    /// Stamp clock (unix µs) of the last frame's capture time: where a stream whose
    /// tail never arrived stopped being watchable is measured to.
    pub last_due_us: u64,
}

/// Accumulates one player's arrivals.
#[derive(Debug, Clone)]
pub struct Meter {
    late_us: u64,
    /// One bit per sequence number seen.
    seen: Vec<u64>,
    highest: Option<u32>,
    received: u64,
    duplicated: u64,
    out_of_order: u64,
    bytes: u64,
    within_1s: u64,
    within_3s: u64,
    late: u64,
    latencies_us: Vec<u32>,
    video_latencies_us: Vec<u32>,
    last_video_us: Option<u64>,
    /// Capture time (stamp clock) of the latest video frame received.
    last_video_sent_us: Option<u64>,
    /// Frames past this sequence number are not the publisher's: ignored.
    max_seq: u32,
    stalls: u64,
    stall_us: u64,
}

/// A stream's figures, before they become a report row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub sent: Sent,
    pub received: u64,
    /// Payload bytes of received frames.
    pub received_bytes: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub within_1s: u64,
    pub within_3s: u64,
    pub late: u64,
    /// Latency of every received frame, microseconds, sorted ascending.
    pub latencies_us: Vec<u32>,
    /// The same for video frames only: audio frames outnumber video ones almost two to
    /// one and are one packet each, so video's own tail is worth seeing apart.
    pub video_latencies_us: Vec<u32>,
    pub stalls: u64,
    pub stall_us: u64,
}

impl Sent {
    /// Counts `frame` as produced, by a stream whose media started at `start_us`.
    pub fn count(&mut self, frame: &crate::plan::Frame, start_us: u64) {
        self.frames += 1;
        self.bytes += frame.len as u64;
        self.video += u64::from(frame.video);
        self.last_due_us = self.last_due_us.max(start_us + frame.at.as_micros() as u64);
    }

    /// Everything a stream's plan would have produced, none of it sent: the figures of
    /// a stream that failed before its media started, so that shares stay over every
    /// publisher's offer and not only the survivors'.
    pub fn unsent_plan(frames: impl Iterator<Item = crate::plan::Frame>) -> Self {
        let mut sent = Sent::default();
        for f in frames {
            sent.count(&f, 0);
            sent.unsent += 1;
        }
        sent.last_due_us = 0;
        sent
    }
}

impl Figures {
    /// Video frames produced that never arrived.
    pub fn video_lost(&self) -> u64 {
        self.sent
            .video
            .saturating_sub(self.video_latencies_us.len() as u64)
    }
}

impl Meter {
    /// A meter counting frames later than `late` as late.
    pub fn new(late: Duration) -> Self {
        Self {
            late_us: late.as_micros().try_into().unwrap_or(u64::MAX),
            seen: Vec::new(),
            highest: None,
            received: 0,
            duplicated: 0,
            out_of_order: 0,
            bytes: 0,
            within_1s: 0,
            within_3s: 0,
            late: 0,
            latencies_us: Vec::new(),
            video_latencies_us: Vec::new(),
            last_video_us: None,
            last_video_sent_us: None,
            max_seq: u32::MAX,
            stalls: 0,
            stall_us: 0,
        }
    }

    /// Room for `frames` first arrivals, so recording never reallocates mid-run; a
    /// sequence number beyond them (a corrupt stamp) is ignored rather than grown to.
    pub fn with_capacity(late: Duration, frames: usize) -> Self {
        let mut m = Self::new(late);
        m.max_seq = u32::try_from(frames).unwrap_or(u32::MAX);
        m.latencies_us.reserve(frames);
        m.seen.reserve(frames / 64 + 1);
        m
    }

    /// One stamped frame of `len` payload bytes arrived at `arrived_us`.
    pub fn arrival(&mut self, stamp: Stamp, video: bool, len: usize, arrived_us: u64) {
        if stamp.seq > self.max_seq {
            return;
        }
        let (word, bit) = ((stamp.seq / 64) as usize, stamp.seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        if self.seen[word] & mask != 0 {
            self.duplicated += 1;
            return;
        }
        self.seen[word] |= mask;
        self.received += 1;
        self.bytes += len as u64;
        match self.highest {
            Some(h) if stamp.seq < h => self.out_of_order += 1,
            _ => self.highest = Some(stamp.seq),
        }
        let latency = arrived_us.saturating_sub(stamp.sent_us);
        self.within_1s += u64::from(latency <= WITHIN_1S_US);
        self.within_3s += u64::from(latency <= WITHIN_3S_US);
        self.late += u64::from(latency > self.late_us);
        let latency_us = u32::try_from(latency).unwrap_or(u32::MAX);
        self.latencies_us.push(latency_us);
        if video {
            self.video_latencies_us.push(latency_us);
            self.last_video_sent_us = self.last_video_sent_us.max(Some(stamp.sent_us));
            if let Some(last) = self.last_video_us {
                let gap = arrived_us.saturating_sub(last);
                if gap > STALL_GAP.as_micros() as u64 {
                    self.stalls += 1;
                    self.stall_us += gap;
                }
            }
            self.last_video_us = Some(arrived_us);
        }
    }

    /// Distinct frames received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The figures, given what was sent.
    ///
    /// A stream whose video stopped arriving before its end (a broken connection, frames
    /// held back or lost) ends in a stall too: the media time from the last video frame
    /// received to the last frame due, when that is longer than [`STALL_GAP`].
    pub fn finish(mut self, sent: Sent) -> Figures {
        if let Some(last) = self.last_video_sent_us {
            let tail = sent.last_due_us.saturating_sub(last);
            if tail > STALL_GAP.as_micros() as u64 && self.received < sent.frames {
                self.stalls += 1;
                self.stall_us += tail;
            }
        }
        self.latencies_us.sort_unstable();
        self.video_latencies_us.sort_unstable();
        Figures {
            sent,
            received: self.received,
            received_bytes: self.bytes,
            lost: sent.frames.saturating_sub(self.received),
            duplicated: self.duplicated,
            out_of_order: self.out_of_order,
            within_1s: self.within_1s,
            within_3s: self.within_3s,
            late: self.late,
            latencies_us: self.latencies_us,
            video_latencies_us: self.video_latencies_us,
            stalls: self.stalls,
            stall_us: self.stall_us,
        }
    }
}

/// Nearest-rank percentile `q` (0..=1) of ascending `sorted` values followed by
/// `missing` values that never came (frames lost: infinitely late). `None` when the rank
/// lands on a missing one, or there are no values at all: a p99 is "not delivered" when
/// more than 1 % of frames never arrived, as in `benches/support/measure.rs`.
pub fn percentile<T: Copy>(sorted: &[T], missing: u64, q: f64) -> Option<T> {
    let n = sorted.len() as u64 + missing;
    let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
    sorted.get(usize::try_from(rank - 1).ok()?).copied()
}

/// [`percentile`] of microseconds, in milliseconds.
pub fn percentile_ms(sorted_us: &[u32], missing: u64, q: f64) -> Option<f64> {
    percentile(sorted_us, missing, q).map(|us| f64::from(us) / 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000_000_000;
    const FRAME: u64 = 40_000;

    fn stamp(seq: u32) -> Stamp {
        Stamp {
            stream: 0,
            seq,
            sent_us: T0 + u64::from(seq) * FRAME,
        }
    }

    /// Frame `seq` (video) arriving `latency_ms` after it was sent.
    fn arrive(m: &mut Meter, seq: u32, latency_ms: u64) {
        let s = stamp(seq);
        m.arrival(s, true, 1000, s.sent_us + latency_ms * 1000);
    }

    #[test]
    fn a_stream_that_stops_arriving_ends_in_a_stall() {
        let mut m = Meter::new(Duration::from_secs(1));
        for seq in 0..50 {
            arrive(&mut m, seq, 20);
        }
        // 100 frames due, the last at seq 99; 50 never came: 50 frame times of media
        // (2 s) from the last one received.
        let f = m.finish(Sent {
            frames: 100,
            bytes: 100_000,
            video: 100,
            last_due_us: T0 + 99 * FRAME,
            ..Sent::default()
        });
        assert_eq!((f.lost, f.video_lost()), (50, 50));
        assert_eq!(f.stalls, 1);
        assert_eq!(f.stall_us, 50 * FRAME);
    }

    #[test]
    fn a_whole_stream_that_arrives_has_no_tail_stall() {
        let mut m = Meter::new(Duration::from_secs(1));
        for seq in 0..100 {
            arrive(&mut m, seq, 20);
        }
        let f = m.finish(Sent {
            frames: 100,
            bytes: 100_000,
            video: 100,
            last_due_us: T0 + 99 * FRAME,
            ..Sent::default()
        });
        assert_eq!((f.lost, f.stalls), (0, 0));
    }

    #[test]
    fn a_sequence_number_beyond_the_plan_is_ignored() {
        let mut m = Meter::with_capacity(Duration::from_secs(1), 10);
        arrive(&mut m, 3, 20);
        arrive(&mut m, u32::MAX - 1, 20);
        assert_eq!(m.received(), 1);
    }

    #[test]
    fn a_failed_stream_offers_its_whole_plan() {
        let shape = crate::plan::Shape {
            video_bps: 1_000_000,
            fps: 25,
            gop: Duration::from_secs(2),
            audio_bps: 128_000,
        };
        let plan = crate::plan::Frames::new(shape, Duration::from_secs(4), 1);
        let sent = Sent::unsent_plan(plan);
        // 4 s: 100 video frames and 188 AAC frames (48 kHz, 1,024 samples each).
        assert_eq!((sent.frames, sent.video, sent.unsent), (288, 100, 288));
        let f = Meter::new(Duration::from_secs(1)).finish(sent);
        assert_eq!((f.received, f.lost), (0, 288));
    }

    #[test]
    fn a_clean_stream() {
        let mut m = Meter::new(Duration::from_secs(1));
        for seq in 0..100 {
            arrive(&mut m, seq, 20);
        }
        let f = m.finish(Sent {
            frames: 100,
            bytes: 100_000,
            unsent: 0,
            ..Sent::default()
        });
        assert_eq!(
            (f.received, f.lost, f.duplicated, f.out_of_order),
            (100, 0, 0, 0)
        );
        assert_eq!((f.within_1s, f.within_3s, f.late), (100, 100, 0));
        assert_eq!((f.stalls, f.stall_us, f.received_bytes), (0, 0, 100_000));
        assert_eq!(percentile_ms(&f.latencies_us, 0, 0.5), Some(20.0));
    }

    #[test]
    fn lost_duplicated_and_out_of_order() {
        let mut m = Meter::new(Duration::from_secs(1));
        for seq in [0, 1, 3, 2, 3, 5, 5, 5, 4, 9] {
            arrive(&mut m, seq, 10);
        }
        let f = m.finish(Sent {
            frames: 10,
            bytes: 10_000,
            unsent: 0,
            ..Sent::default()
        });
        // Distinct: 0 1 2 3 4 5 9; lost: 6 7 8.
        assert_eq!(f.received, 7);
        assert_eq!(f.lost, 3);
        assert_eq!(f.duplicated, 3);
        // 2 after 3, 4 after 5.
        assert_eq!(f.out_of_order, 2);
        assert_eq!(f.received_bytes, 7_000);
        assert_eq!(f.latencies_us.len(), 7);
    }

    #[test]
    fn within_and_late_thresholds() {
        let mut m = Meter::new(Duration::from_millis(500));
        for (seq, ms) in [
            (0, 100),
            (1, 600),
            (2, 1000),
            (3, 1001),
            (4, 3000),
            (5, 3001),
        ] {
            arrive(&mut m, seq, ms);
        }
        let f = m.finish(Sent {
            frames: 6,
            bytes: 0,
            unsent: 0,
            ..Sent::default()
        });
        assert_eq!(f.within_1s, 3);
        assert_eq!(f.within_3s, 5);
        assert_eq!(f.late, 5);
        assert_eq!(percentile_ms(&f.latencies_us, 0, 1.0), Some(3001.0));
    }

    #[test]
    fn stalls_are_gaps_between_video_arrivals() {
        let mut m = Meter::new(Duration::from_secs(1));
        let video = |m: &mut Meter, seq: u32, at_ms: u64| {
            m.arrival(stamp(seq), true, 10, T0 + at_ms * 1000);
        };
        video(&mut m, 0, 0);
        video(&mut m, 1, 40);
        // Audio keeps coming: a video stall all the same.
        m.arrival(stamp(2), false, 10, T0 + 300_000);
        video(&mut m, 3, 540); // a gap of exactly 500 ms: not a stall
        video(&mut m, 4, 1_200); // 660 ms
        video(&mut m, 5, 1_240);
        video(&mut m, 6, 3_240); // 2,000 ms
        let f = m.finish(Sent::default());
        assert_eq!(f.stalls, 2);
        assert_eq!(f.stall_us, 2_660_000);
    }

    #[test]
    fn arrivals_before_their_send_time_count_as_zero_latency() {
        let mut m = Meter::new(Duration::from_secs(1));
        m.arrival(stamp(0), true, 10, T0 - 5);
        let f = m.finish(Sent::default());
        assert_eq!(f.latencies_us, vec![0]);
        assert_eq!(f.within_1s, 1);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&v, 0, 0.5), Some(50.0));
        assert_eq!(percentile_ms(&v, 0, 0.9), Some(90.0));
        assert_eq!(percentile_ms(&v, 0, 0.99), Some(99.0));
        assert_eq!(percentile_ms(&v, 0, 1.0), Some(100.0));
        assert_eq!(percentile_ms(&v, 0, 0.0), Some(1.0));
        assert_eq!(percentile_ms(&[], 0, 0.5), None);
        assert_eq!(percentile_ms(&[7_000], 0, 0.99), Some(7.0));
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0, 0.5), Some(2.0));
        // Lost frames are infinitely late: 98 arrived, 2 lost -> p99 not delivered.
        let w: Vec<u32> = (1..=98).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&w, 2, 0.5), Some(50.0));
        assert_eq!(percentile_ms(&w, 2, 0.98), Some(98.0));
        assert_eq!(percentile_ms(&w, 2, 0.99), None);
        assert_eq!(percentile_ms(&w, 2, 1.0), None);
        assert_eq!(percentile::<f64>(&[], 0, 0.5), None);
    }
}
