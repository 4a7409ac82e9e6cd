//! The origin's side of a resumable publish (wire version 2): which sequenced frames go
//! into the hub, and when to acknowledge them. Sans IO, time passed in.
//!
//! A publication's frames are numbered by the edge ([`crate::retain`]). After a resume
//! the edge re-sends what the origin had not acknowledged, some of which the origin may
//! have taken already (its acknowledgement was lost with the tunnel), and, if the edge's
//! bounds forced it, skips frames the origin never got. [`Dedupe::admit`] decides for each
//! frame:
//!
//! - **Deliver** it to the hub: the next one, or the first after a gap that decoding can
//!   start at.
//! - **Duplicate**: at or below the last seq handled; dropped and counted, so players
//!   never see a frame twice and timestamps stay monotonic.
//! - **Skip**: after a gap (frames missing, counted), frames that reference a picture the
//!   origin never got are dropped until the next keyframe, so players never decode a
//!   frame whose reference is gone (a stream without video has no such frames). Metadata,
//!   sequence headers and events (cue points) go through a gap: they reference nothing.
//!
//! **Acknowledgements** are cumulative: the last seq handled (delivered, or skipped past a
//! gap). [`Dedupe::poll_ack`] says when one is due: after [`ACK_EVERY`] frames or
//! [`ACK_DELAY`] after the first frame not yet acknowledged, whichever comes first. When a
//! resumed stream continues a publication the hub holds, [`Dedupe::resume`] gives an
//! acknowledgement at once, so the edge lets go of what is already there.
//!
//! The state belongs to the publication, not to a stream: the hub keeps it while the
//! publication lives and a resumed stream goes on with it ([`Dedupe::resume`]), so a gap
//! still being waited out when a stream dies is waited out on the next.

use crate::class::FrameClass;
use std::time::{Duration, Instant};

/// Acknowledge at most this long after the first frame not yet acknowledged: 50 ms. The
/// edge retains what the ack delay adds, the stream's rate times 50 ms (50 KB at 8 Mbit/s,
/// 5 % of the 1 MiB stream window that bounds what is unacknowledged anyway), and a steady
/// stream gets at most 20 acks a second: 13 bytes each, 260 B/s, while a failure detector
/// watching ack progress for about a second sees twenty. QUIC's own default `max_ack_delay`
/// is 25 ms (RFC 9000, 18.2) for packets; acks of whole frames need no tighter clock, and
/// twice that halves what goes back on 2,000 streams.
pub const ACK_DELAY: Duration = Duration::from_millis(50);

/// Acknowledge after this many frames even before [`ACK_DELAY`]: 32. A 30 fps stream with
/// AAC sends 80 messages a second, 4 per 50 ms, so the timer acknowledges it; the count
/// paces bursts (the relay queue's backlog after a stall, the media held at publish start,
/// written in batches of up to 64 messages) at one ack per 32 frames, so the edge lets go
/// as the burst lands rather than 50 ms after.
pub const ACK_EVERY: u64 = 32;

/// What to do with a sequenced frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Put it in the hub.
    Deliver,
    /// Already handled: drop it.
    Duplicate,
    /// After a gap, before the next keyframe: drop it.
    Skip,
}

/// Counts since the last [`Dedupe::take_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DedupeStats {
    /// Frames dropped as already handled (a resume re-sent them).
    pub duplicates: u64,
    /// Seqs that never arrived (gaps between the last handled and the next).
    pub missing: u64,
    /// Frames dropped after a gap, waiting for a keyframe.
    pub skipped: u64,
}

/// One publication's admission state at an origin. See the module documentation.
#[derive(Debug, Clone)]
pub struct Dedupe {
    /// The last seq handled.
    last: Option<u64>,
    /// After a gap (or a resume that starts the publication here): holding back frames
    /// that need a picture the hub does not have.
    waiting: bool,
    seen_video: bool,
    /// Frames handled since the last acknowledgement, and since when.
    unacked: u64,
    unacked_since: Option<Instant>,
    stats: DedupeStats,
}

impl Dedupe {
    /// A publication's first stream: every frame is delivered from the first on.
    pub fn new() -> Self {
        Self {
            last: None,
            waiting: false,
            seen_video: false,
            unacked: 0,
            unacked_since: None,
            stats: DedupeStats::default(),
        }
    }

    /// A resumed stream of a publication this origin's hub does not hold (the edge moved
    /// it here): delivered from the first place decoding can start (a resume at another
    /// origin starts at a keyframe when the edge still has it).
    pub fn resumed_here() -> Self {
        Self {
            waiting: true,
            ..Self::new()
        }
    }

    /// A new stream of the publication this state belongs to (the hub keeps it with the
    /// publication, across streams): the acknowledgement to send on it at once, if any
    /// frame was handled, so the edge lets go of what is already here. A gap being waited
    /// out goes on being waited out.
    pub fn resume(&mut self) -> Option<u64> {
        self.unacked = 0;
        self.unacked_since = None;
        self.last
    }

    /// Decides for the frame numbered `seq`, classified `class`, arriving at `now`.
    pub fn admit(&mut self, seq: u64, class: FrameClass, now: Instant) -> Admit {
        if let Some(last) = self.last {
            if seq <= last {
                self.stats.duplicates += 1;
                return Admit::Duplicate;
            }
            if seq - last > 1 {
                self.stats.missing += seq - last - 1;
                self.waiting = true;
            }
        }
        self.last = Some(seq);
        self.unacked += 1;
        self.unacked_since.get_or_insert(now);
        self.seen_video |= class.is_video();
        if !self.waiting {
            return Admit::Deliver;
        }
        if class.starts_decoding(self.seen_video) {
            self.waiting = false;
            return Admit::Deliver;
        }
        match class {
            FrameClass::Config(_) | FrameClass::Event => Admit::Deliver,
            _ => {
                self.stats.skipped += 1;
                Admit::Skip
            }
        }
    }

    /// Decides for an unsequenced frame: the configuration a resumed stream re-sends
    /// before its sequenced frames. Always delivered (the hub replaces its metadata and
    /// headers with them); a video sequence header among them tells an origin the
    /// publication was just moved to that the stream has video, so an audio frame ahead
    /// of the first keyframe does not end the wait for it.
    pub fn admit_config(&mut self, class: FrameClass) -> Admit {
        self.seen_video |= class.is_video();
        Admit::Deliver
    }

    /// The acknowledgement to send now, if one is due.
    pub fn poll_ack(&mut self, now: Instant) -> Option<u64> {
        let due = self.unacked >= ACK_EVERY
            || self
                .unacked_since
                .is_some_and(|since| now.saturating_duration_since(since) >= ACK_DELAY);
        if !due {
            return None;
        }
        self.unacked = 0;
        self.unacked_since = None;
        self.last
    }

    /// When [`Dedupe::poll_ack`] will next have an acknowledgement, if no frame comes
    /// before.
    pub fn ack_deadline(&self) -> Option<Instant> {
        self.unacked_since.map(|since| since + ACK_DELAY)
    }

    /// The last seq handled.
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// Counts since the last call.
    pub fn take_stats(&mut self) -> DedupeStats {
        std::mem::take(&mut self.stats)
    }
}

impl Default for Dedupe {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::class::ConfigSlot;
    use Admit::{Deliver, Duplicate, Skip};
    use FrameClass::{Audio, Event, Inter, Keyframe};

    const HEADER: FrameClass = FrameClass::Config(ConfigSlot::VideoHeader(0));

    /// Each case: the state a stream starts in, frames in arrival order with the decision
    /// each gets, then the counts.
    #[test]
    fn frames_are_delivered_dropped_as_seen_or_held_back_after_a_gap() {
        type Steps = &'static [(u64, FrameClass, Admit)];
        let cases: &[(&str, Dedupe, Steps, DedupeStats)] = &[
            (
                "a first stream, resent frames, then a gap",
                Dedupe::new(),
                &[
                    (0, HEADER, Deliver),
                    (1, Keyframe, Deliver),
                    (2, Inter, Deliver),
                    (2, Inter, Duplicate),
                    (1, Keyframe, Duplicate),
                    (3, Audio, Deliver),
                    (6, Inter, Skip),     // 4 and 5 missing
                    (7, Audio, Skip),     // audio goes with its video
                    (8, HEADER, Deliver), // configuration goes through
                    (9, Event, Deliver),  // so do cue points
                    (10, Keyframe, Deliver),
                    (11, Inter, Deliver),
                ],
                DedupeStats {
                    duplicates: 2,
                    missing: 2,
                    skipped: 2,
                },
            ),
            (
                "a gap still waited out when the stream died",
                continuing(&[(10, Keyframe), (13, Inter)]),
                &[
                    (13, Inter, Duplicate),
                    (14, Audio, Skip),
                    (15, Keyframe, Deliver),
                ],
                DedupeStats {
                    duplicates: 1,
                    missing: 0,
                    skipped: 1,
                },
            ),
            (
                "moved here mid-GOP: from the next keyframe",
                Dedupe::resumed_here(),
                &[
                    (40, Inter, Skip),
                    (41, Audio, Skip),
                    (42, Keyframe, Deliver),
                    (43, Inter, Deliver),
                ],
                DedupeStats {
                    duplicates: 0,
                    missing: 0,
                    skipped: 2,
                },
            ),
            (
                "moved here, audio ahead of the keyframe",
                moved_here(&[HEADER]),
                &[
                    (40, Audio, Skip),
                    (41, Inter, Skip),
                    (42, Keyframe, Deliver),
                    (43, Audio, Deliver),
                ],
                DedupeStats {
                    duplicates: 0,
                    missing: 0,
                    skipped: 2,
                },
            ),
            (
                "moved here, audio only: at once",
                Dedupe::resumed_here(),
                &[(40, Audio, Deliver), (41, Audio, Deliver)],
                DedupeStats {
                    duplicates: 0,
                    missing: 0,
                    skipped: 0,
                },
            ),
            (
                "continuing a publication the hub holds",
                continuing(&[(10, Inter)]),
                &[
                    (8, Inter, Duplicate),
                    (10, Inter, Duplicate),
                    (11, Inter, Deliver),
                    (14, Inter, Skip),
                    (15, Audio, Skip),
                    (16, Keyframe, Deliver),
                ],
                DedupeStats {
                    duplicates: 2,
                    missing: 2,
                    skipped: 2,
                },
            ),
            (
                "continuing an audio-only publication past a gap",
                continuing(&[(10, Audio)]),
                &[(13, Audio, Deliver), (14, Audio, Deliver)],
                DedupeStats {
                    duplicates: 0,
                    missing: 2,
                    skipped: 0,
                },
            ),
        ];
        let t = Instant::now();
        for (name, start, steps, stats) in cases {
            let mut d = start.clone();
            for (seq, class, admit) in *steps {
                assert_eq!(d.admit(*seq, *class, t), *admit, "{name}: frame {seq}");
            }
            assert_eq!(d.take_stats(), *stats, "{name}");
        }
        let mut d = continuing(&[(7, Keyframe)]);
        assert_eq!(d.resume(), Some(7), "acknowledged at once");
        assert_eq!(d.poll_ack(t + ACK_DELAY), None, "and not again");
        assert_eq!(
            Dedupe::resumed_here().resume(),
            None,
            "nothing to acknowledge"
        );
    }

    /// A publication moved here, after the configuration its stream re-sent.
    fn moved_here(config: &[FrameClass]) -> Dedupe {
        let mut d = Dedupe::resumed_here();
        for class in config {
            assert_eq!(d.admit_config(*class), Deliver);
        }
        d
    }

    /// A publication's state after its first stream handled `frames`, stats cleared.
    fn continuing(frames: &[(u64, FrameClass)]) -> Dedupe {
        let mut d = Dedupe::new();
        for (seq, class) in frames {
            d.admit(*seq, *class, Instant::now());
        }
        d.take_stats();
        d.resume();
        d
    }

    #[test]
    fn acks_go_after_the_delay_or_the_count() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut d = Dedupe::new();
        assert_eq!((d.poll_ack(t0), d.ack_deadline()), (None, None));
        d.admit(0, Keyframe, t0);
        d.admit(1, Inter, t0 + 10 * ms);
        assert_eq!(d.ack_deadline(), Some(t0 + ACK_DELAY));
        assert_eq!(d.poll_ack(t0 + 49 * ms), None);
        assert_eq!(d.poll_ack(t0 + 50 * ms), Some(1));
        assert_eq!(d.poll_ack(t0 + 200 * ms), None, "nothing new");
        // A burst: one ack per ACK_EVERY frames, at once.
        let mut acks = Vec::new();
        for seq in 2..2 + 2 * ACK_EVERY {
            d.admit(seq, Inter, t0 + 300 * ms);
            acks.extend(d.poll_ack(t0 + 300 * ms));
        }
        assert_eq!(acks, vec![1 + ACK_EVERY, 1 + 2 * ACK_EVERY]);
        // Duplicates do not make an ack due.
        d.admit(5, Inter, t0 + 400 * ms);
        assert_eq!(d.poll_ack(t0 + 500 * ms), None);
        // Frames skipped after a gap are acknowledged: the edge may let go of them.
        d.admit(100, Inter, t0 + 600 * ms);
        assert_eq!(d.poll_ack(t0 + 650 * ms), Some(100));
        assert_eq!(d.last(), Some(100));
    }
}
