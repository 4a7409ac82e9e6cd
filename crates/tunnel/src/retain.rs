//! The edge's copy of what it sent on a publish stream and the origin has not yet
//! acknowledged, so the publish can resume on another stream without the encoder
//! noticing (wire version 2). Sans IO, time passed in.
//!
//! Every media frame the edge writes to a v2 publish stream goes through
//! [`Retain::push`], which numbers it (the `seq` on the wire) and keeps a reference to
//! its payload (a `Bytes` clone: no copy). The origin's cumulative acknowledgements
//! ([`Retain::ack`]) let the frames it has put in its hub go. When the stream dies (the
//! tunnel was lost, the origin ended it, the router moved the leg), the driver opens a
//! new one, at the same origin or another, and sends [`Retain::resume_plan`]: the
//! configuration in force, then the retained frames in order. The driver keeps the
//! highest seq the publication's current origin acknowledged since the publication went
//! there, and resumes there [`ResumePoint::After`] it; at an origin that acknowledged
//! nothing of it, from the [`ResumePoint::Keyframe`].
//!
//! What is kept, and why:
//!
//! 1. **Every unacknowledged frame**, within the bounds. In a live stream that is what the
//!    QUIC stream window (1 MiB, `tunnel.transport.stream_window`) and one round trip
//!    plus the ack delay hold: the origin acknowledges what it has taken.
//! 2. **Back to the last keyframe.** Acknowledged frames since the keyframe that starts
//!    the group of pictures of the first unacknowledged frame stay too, so a resume at
//!    *another* origin ([`ResumePoint::Keyframe`]) gives its players a picture at once
//!    instead of after the next keyframe (up to a GOP, 2 s and more, later). A resume at
//!    the *same* origin ([`ResumePoint::After`] what it acknowledged) does not send them:
//!    its hub has them, and its tunnel may be a new connection in slow start, where a GOP
//!    of megabytes takes several round trips. They are most of what an edge holds per
//!    stream; [`RetainLimits::keep_gop_head`] (`relay.retain_gop_head` at the edge)
//!    turns them off where memory matters more than a picture at once after a failover.
//! 3. **The configuration in force**: the last metadata and the last sequence header of
//!    each track, as of the oldest retained frame. Configuration frames that leave the
//!    window (acknowledged or evicted) move here; a resume sends it first, unsequenced,
//!    so the stream's description survives whatever else was lost. Configuration frames
//!    inside the window are re-sent in their place, so a header change is replayed where
//!    it happened, not ahead of frames encoded with the old one.
//!
//! **Bounds.** The window holds at most `max_bytes` (payload plus [`MESSAGE_COST`] a
//! frame) and `max_messages`. Over either, frames go from the front, in this order:
//! the acknowledged head of the group of pictures (2, nothing is lost); then
//! unacknowledged frames up to the next keyframe, a whole group at a time, so the window
//! still starts where decoding can; if no later keyframe is retained (one group of
//! pictures over the bound), everything, and frames are then not retained until the next
//! keyframe. Frames given up unacknowledged are counted ([`RetainStats`]): they are lost
//! if the stream dies before the origin acknowledges them. A stream without video has no
//! keyframes and needs none: every audio frame decodes alone, so it is given up a frame
//! at a time.

use crate::class::{ConfigSlot, FrameClass};
use crate::wire::MediaFrame;
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// Default `max_bytes` of a publish's window: 4 MiB. What is unacknowledged is bounded by
/// the QUIC stream window (1 MiB) plus what the stream carries in a round trip and the
/// origin's ack delay (8 Mbit/s x (230 ms + 50 ms) = 280 KB on the Singapore-New York
/// path); the head of the group of pictures kept for another origin is at most a GOP,
/// 2 MB at 8 Mbit/s with the 2 s keyframe interval ingest operators ask for. 4 MiB holds
/// both with room; a longer GOP (OBS's "auto" interval: 250 frames, 8 s at 30 fps) loses
/// its acknowledged head first, nothing unacknowledged. On a steady stream the window is
/// about half a GOP (1 MB at 8 Mbit/s); at the 2,000 publishers of the relay queue's
/// sizing, 2 GB of an edge's memory, shared with the QUIC send buffers that hold the same
/// payloads.
pub const DEFAULT_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Default `max_messages` of a publish's window: 4,096. An 8 s GOP at 30 fps with 48 kHz
/// AAC is 240 video and 375 audio frames, 615 messages; a 2 s GOP at 60 fps is 214.
/// 4,096 is four times the longest of those with the unacknowledged frames on top, and
/// bounds the bookkeeping of a flood of tiny messages at 4,096 x [`MESSAGE_COST`].
pub const DEFAULT_MAX_MESSAGES: usize = 4096;

/// Largest configuration kept aside, all slots together: 64 KiB. ffmpeg's and OBS's
/// `onMetaData` are 400-600 bytes, an AVC or HEVC sequence header 40-200, an AAC one 2-5:
/// a hundred times that. A configuration frame that would take it past this is not kept
/// aside (counted in [`RetainStats::config_unkept`]), so an encoder inventing tracks or
/// sending megabyte headers does not grow an edge's memory.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// Bounds of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainLimits {
    /// Payload bytes plus `message_cost` a frame.
    pub max_bytes: usize,
    pub max_messages: usize,
    /// What each retained frame costs beside its payload: [`MESSAGE_COST`]; tests set 0.
    pub message_cost: usize,
    /// Keep acknowledged frames back to the keyframe of the first unacknowledged one
    /// (point 2 of the module's list). Default true. False keeps only what is
    /// unacknowledged, a round trip of the stream instead of up to a whole group of
    /// pictures (150 KB of a 600 kbit/s stream with a 2 s GOP, most of an edge's memory
    /// per stream), at a price: a resume at another origin starts at the first
    /// unacknowledged frame, and that origin's players wait for the next keyframe.
    pub keep_gop_head: bool,
}

impl Default for RetainLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_BYTES,
            max_messages: DEFAULT_MAX_MESSAGES,
            message_cost: MESSAGE_COST,
            keep_gop_head: true,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    seq: u64,
    class: FrameClass,
    frame: MediaFrame,
}

/// What a retained frame costs beside its payload: its entry in the window.
pub const MESSAGE_COST: usize = std::mem::size_of::<Entry>();

/// What the window gave up, for metrics. Counts since the last [`Retain::take_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetainStats {
    /// Acknowledged frames of the current group of pictures given up for the bounds: a
    /// resume at another origin then starts at the first unacknowledged frame.
    pub trimmed_acked: u64,
    /// Unacknowledged frames given up for the bounds (or not retained while waiting for a
    /// keyframe after that): lost if the stream dies before they are acknowledged.
    pub evicted_unacked: u64,
    /// Their payload bytes.
    pub evicted_unacked_bytes: u64,
    /// Configuration frames not kept aside ([`MAX_CONFIG_BYTES`]).
    pub config_unkept: u64,
}

/// Where a resume starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumePoint {
    /// After `seq`, the highest seq *this* origin acknowledged since the publication came
    /// to it (its hub holds the rest). Not the first frame unacknowledged overall: acks
    /// from the origin the publication was at before do not say what this one has.
    After(u64),
    /// At the keyframe that starts the group of pictures of the first unacknowledged
    /// frame, if retained: for an origin that acknowledged nothing of the publication
    /// (another origin, or one that had not answered yet), whose players then get a
    /// picture at once.
    Keyframe,
}

/// What to send on the stream that resumes a publication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePlan {
    /// Unsequenced frames first ([`crate::wire::encode_media`] frames): metadata, then
    /// the video and audio sequence headers by track, as in force at `resume_from`.
    pub config: Vec<MediaFrame>,
    /// The publish header's `resume_from`: the seq of `frames[0]`, or of the next frame
    /// pushed if there is none.
    pub resume_from: u64,
    /// Sequenced frames, from `resume_from` on, contiguous.
    pub frames: Vec<(u64, MediaFrame)>,
    /// Frames (counted by seq) this resume skips that the origin has not acknowledged:
    /// after [`ResumePoint::After`]'s seq, or unacknowledged at all for
    /// [`ResumePoint::Keyframe`]; given up for the bounds. Configuration among them is in
    /// `config`. An upper bound: the origin may have taken some of them without its
    /// acknowledgement arriving; its own count of the gap
    /// ([`crate::dedupe::DedupeStats::missing`]) is exact. Each is counted once, by the
    /// first plan that skips it.
    pub lost: u64,
}

/// An acknowledgement that cannot be right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("acknowledgement of frame {seq}, but the next frame to send is {next_seq}")]
pub struct AckError {
    pub seq: u64,
    pub next_seq: u64,
}

/// One publication's window at the edge. See the module documentation.
#[derive(Debug)]
pub struct Retain {
    limits: RetainLimits,
    /// The seq the next pushed frame gets.
    next_seq: u64,
    /// Every seq below this is acknowledged (or given up by a resume plan).
    first_unacked: u64,
    /// Seqs below this that a resume plan skipped are counted in a plan's `lost` already.
    lost_counted_to: u64,
    /// Contiguous seqs, oldest first.
    entries: VecDeque<Entry>,
    /// Their payload bytes.
    bytes: usize,
    /// The configuration in force before `entries[0]`.
    config: BTreeMap<ConfigSlot, MediaFrame>,
    config_bytes: usize,
    seen_video: bool,
    /// The window was emptied for the bounds: frames are not retained until the next
    /// place decoding can start.
    skipping: bool,
    /// Frames are unacknowledged and the edge has been waiting since then for an ack.
    ack_awaited_since: Option<Instant>,
    stats: RetainStats,
}

impl Retain {
    pub fn new(limits: RetainLimits) -> Self {
        Self {
            limits,
            next_seq: 0,
            first_unacked: 0,
            lost_counted_to: 0,
            entries: VecDeque::new(),
            bytes: 0,
            config: BTreeMap::new(),
            config_bytes: 0,
            seen_video: false,
            skipping: false,
            ack_awaited_since: None,
            stats: RetainStats::default(),
        }
    }

    /// Numbers a frame about to be written to the stream at `now`, keeps it, and applies
    /// the bounds. Returns its seq, for the wire.
    pub fn push(&mut self, frame: MediaFrame, now: Instant) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.ack_awaited_since.is_none() {
            self.ack_awaited_since = Some(now);
        }
        let class = FrameClass::of(frame.kind, &frame.payload);
        self.seen_video |= class.is_video();
        if self.skipping {
            if let FrameClass::Config(slot) = class {
                self.set_config(slot, frame);
                return seq;
            }
            if !class.starts_decoding(self.seen_video) {
                self.stats.evicted_unacked += 1;
                self.stats.evicted_unacked_bytes += frame.payload.len() as u64;
                return seq;
            }
            self.skipping = false;
        }
        self.bytes += frame.payload.len();
        self.entries.push_back(Entry { seq, class, frame });
        self.enforce();
        seq
    }

    /// The origin has everything up to and including `seq`: frames before the group of
    /// pictures of the first unacknowledged one go (every acknowledged frame, without
    /// [`RetainLimits::keep_gop_head`]). Old or repeated acks change nothing.
    pub fn ack(&mut self, seq: u64, now: Instant) -> Result<(), AckError> {
        if seq >= self.next_seq {
            return Err(AckError {
                seq,
                next_seq: self.next_seq,
            });
        }
        if seq < self.first_unacked {
            return Ok(());
        }
        self.first_unacked = seq + 1;
        self.ack_awaited_since = (self.first_unacked < self.next_seq).then_some(now);
        let keep_from = if self.limits.keep_gop_head {
            self.gop_start()
        } else {
            self.first_unacked
        };
        while self.entries.front().is_some_and(|e| e.seq < keep_from) {
            self.pop_front();
        }
        Ok(())
    }

    /// What to send on a new stream for this publication, from `point`. Frames the plan
    /// skips are given up: the next plan does not count them again.
    pub fn resume_plan(&mut self, point: ResumePoint) -> ResumePlan {
        let first_unacked = self
            .entries
            .iter()
            .position(|e| e.seq >= self.first_unacked)
            .unwrap_or(self.entries.len());
        let start = match point {
            ResumePoint::After(seq) => self
                .entries
                .iter()
                .position(|e| e.seq > seq)
                .unwrap_or(self.entries.len()),
            ResumePoint::Keyframe => self
                .gop_start_index()
                .filter(|&i| i <= first_unacked)
                .unwrap_or(first_unacked),
        };
        let mut config = self.config.clone();
        for e in self.entries.iter().take(start) {
            if let FrameClass::Config(slot) = e.class {
                config.insert(slot, e.frame.clone());
            }
        }
        let resume_from = self.entries.get(start).map_or(self.next_seq, |e| e.seq);
        let has = match point {
            ResumePoint::After(seq) => seq.saturating_add(1),
            ResumePoint::Keyframe => self.first_unacked,
        };
        let lost = resume_from.saturating_sub(has.max(self.lost_counted_to));
        self.lost_counted_to = self.lost_counted_to.max(resume_from);
        self.first_unacked = self.first_unacked.max(resume_from);
        if self.first_unacked >= self.next_seq {
            self.ack_awaited_since = None;
        }
        ResumePlan {
            config: config.into_values().collect(),
            resume_from,
            frames: self
                .entries
                .iter()
                .skip(start)
                .map(|e| (e.seq, e.frame.clone()))
                .collect(),
            lost,
        }
    }

    /// Since when frames have been waiting for an acknowledgement with none arriving: the
    /// later of the last ack that made progress and the push of the oldest frame it did
    /// not cover. `None` when everything sent is acknowledged. A driver that sees this
    /// get old while the tunnel says it is up knows the origin stopped taking the stream.
    pub fn ack_awaited_since(&self) -> Option<Instant> {
        self.ack_awaited_since
    }

    /// A new stream carries the publication from `now` (a resume): waiting for its
    /// acknowledgements starts now, not when the old stream stopped answering, or the
    /// frames re-sent on it would look unacknowledged for too long at once.
    pub fn restart_ack_clock(&mut self, now: Instant) {
        if self.ack_awaited_since.is_some() {
            self.ack_awaited_since = Some(now);
        }
    }

    /// The seq the next pushed frame gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The first seq not acknowledged (nor given up by a resume plan).
    pub fn first_unacked(&self) -> u64 {
        self.first_unacked
    }

    /// Frames retained.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Payload bytes retained (the configuration kept aside not included).
    pub fn retained_bytes(&self) -> usize {
        self.bytes
    }

    /// Counts since the last call.
    pub fn take_stats(&mut self) -> RetainStats {
        std::mem::take(&mut self.stats)
    }

    fn over_bounds(&self) -> bool {
        self.entries.len() > self.limits.max_messages
            || self.bytes + self.entries.len() * self.limits.message_cost > self.limits.max_bytes
    }

    /// The index of the retained frame decoding of the first unacknowledged frame starts
    /// at: the last place to start at or before it.
    fn gop_start_index(&self) -> Option<usize> {
        self.entries
            .iter()
            .rposition(|e| e.seq <= self.first_unacked && e.class.starts_decoding(self.seen_video))
    }

    /// The seq retained frames are kept from after an ack.
    fn gop_start(&self) -> u64 {
        self.gop_start_index()
            .map_or(self.first_unacked, |i| self.entries[i].seq)
    }

    /// The bounds, applied from the front: acknowledged head, unacknowledged groups of
    /// pictures, everything.
    fn enforce(&mut self) {
        while self.over_bounds() {
            if self
                .entries
                .front()
                .is_some_and(|e| e.seq < self.first_unacked)
            {
                while self
                    .entries
                    .front()
                    .is_some_and(|e| e.seq < self.first_unacked)
                {
                    self.pop_front();
                    self.stats.trimmed_acked += 1;
                }
                continue;
            }
            let next_start = self
                .entries
                .iter()
                .skip(1)
                .position(|e| e.class.starts_decoding(self.seen_video))
                .map(|i| i + 1);
            let end = match next_start {
                Some(end) => end,
                None => {
                    self.skipping = true;
                    self.entries.len()
                }
            };
            for _ in 0..end {
                if let Some(e) = self.pop_front() {
                    self.stats.evicted_unacked += 1;
                    self.stats.evicted_unacked_bytes += e.payload.len() as u64;
                }
            }
        }
    }

    /// Takes the oldest retained frame out; configuration goes aside instead. Returns
    /// what was dropped that is not configuration.
    fn pop_front(&mut self) -> Option<MediaFrame> {
        let e = self.entries.pop_front()?;
        self.bytes -= e.frame.payload.len();
        match e.class {
            FrameClass::Config(slot) => {
                self.set_config(slot, e.frame);
                None
            }
            _ => Some(e.frame),
        }
    }

    fn set_config(&mut self, slot: ConfigSlot, frame: MediaFrame) {
        let old = self.config.get(&slot).map_or(0, |f| f.payload.len());
        if self.config_bytes - old + frame.payload.len() > MAX_CONFIG_BYTES {
            self.stats.config_unkept += 1;
            return;
        }
        self.config_bytes = self.config_bytes - old + frame.payload.len();
        self.config.insert(slot, frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn frame(kind: u8, head: &[u8], len: usize) -> MediaFrame {
        let mut payload = head.to_vec();
        payload.resize(len.max(head.len()), 0xaa);
        MediaFrame {
            kind,
            timestamp: 0,
            payload: Bytes::from(payload),
        }
    }
    fn key(len: usize) -> MediaFrame {
        frame(9, &[0x17, 1, 0, 0, 0], len)
    }
    fn inter(len: usize) -> MediaFrame {
        frame(9, &[0x27, 1, 0, 0, 0], len)
    }
    fn audio(len: usize) -> MediaFrame {
        frame(8, &[0xaf, 1], len)
    }
    fn avc_header(tag: u8) -> MediaFrame {
        frame(9, &[0x17, 0, 0, 0, 0, tag], 6)
    }
    fn aac_header() -> MediaFrame {
        frame(8, &[0xaf, 0, 0x12, 0x10], 4)
    }
    fn metadata(len: usize) -> MediaFrame {
        let mut head = vec![2u8, 0, 10];
        head.extend_from_slice(b"onMetaData");
        frame(18, &head, len)
    }
    fn limits(max_bytes: usize, max_messages: usize) -> RetainLimits {
        RetainLimits {
            max_bytes,
            max_messages,
            message_cost: 0,
            keep_gop_head: true,
        }
    }
    fn seqs(r: &Retain) -> Vec<u64> {
        r.entries.iter().map(|e| e.seq).collect()
    }
    fn push_all(r: &mut Retain, frames: impl IntoIterator<Item = MediaFrame>, now: Instant) {
        for f in frames {
            r.push(f, now);
        }
    }

    #[test]
    fn acks_let_go_of_all_but_the_group_of_pictures_of_the_first_unacked() {
        let t = Instant::now();
        let mut r = Retain::new(RetainLimits::default());
        for (i, f) in [key(50), inter(10), inter(10), key(50), inter(10)]
            .into_iter()
            .enumerate()
        {
            assert_eq!(r.push(f, t), i as u64, "frames are numbered from 0");
        }
        // (ack, frames retained after it)
        let table: &[(u64, &[u64])] = &[
            (1, &[0, 1, 2, 3, 4]), // 2 is unacked: its GOP starts at 0
            (0, &[0, 1, 2, 3, 4]), // an old ack changes nothing
            (2, &[3, 4]),          // 3 is a keyframe: the first GOP is all acknowledged
            (3, &[3, 4]),          // 4 is in the GOP of 3
            (4, &[3, 4]),          // all acknowledged: the current GOP stays
        ];
        for (ack, kept) in table {
            r.ack(*ack, t).unwrap();
            assert_eq!(seqs(&r), *kept, "after ack {ack}");
        }
        assert_eq!(r.retained_bytes(), 60);
        assert_eq!(
            r.ack(5, t),
            Err(AckError {
                seq: 5,
                next_seq: 5
            }),
            "frame 5 was never sent"
        );
        let same = r.resume_plan(ResumePoint::After(4));
        assert_eq!((same.resume_from, same.frames.len(), same.lost), (5, 0, 0));
        let other = r.resume_plan(ResumePoint::Keyframe);
        assert_eq!(other.resume_from, 3);
        assert_eq!(
            other.frames,
            vec![(3, key(50)), (4, inter(10))],
            "another origin gets the picture back from its keyframe"
        );
    }

    #[test]
    fn without_the_gop_head_acks_let_go_of_everything_acknowledged() {
        let t = Instant::now();
        let mut r = Retain::new(RetainLimits {
            keep_gop_head: false,
            ..RetainLimits::default()
        });
        push_all(
            &mut r,
            [
                avc_header(1),
                key(50),
                inter(10),
                inter(10),
                key(50),
                inter(10),
            ],
            t,
        );
        let table: &[(u64, &[u64])] = &[
            (2, &[3, 4, 5]), // the header went aside, the keyframe with the rest
            (4, &[5]),
            (5, &[]),
        ];
        for (ack, kept) in table {
            r.ack(*ack, t).unwrap();
            assert_eq!(seqs(&r), *kept, "after ack {ack}");
        }
        push_all(&mut r, [inter(10), inter(10)], t);
        // Another origin gets the configuration, then the first unacknowledged frame:
        // nothing unacknowledged is lost, but its players wait for a keyframe.
        let other = r.resume_plan(ResumePoint::Keyframe);
        assert_eq!(other.config, vec![avc_header(1)]);
        assert_eq!(
            (other.resume_from, other.frames.len(), other.lost),
            (6, 2, 0)
        );
    }

    #[test]
    fn a_resume_sends_the_configuration_in_force_where_it_starts() {
        let t = Instant::now();
        let mut r = Retain::new(RetainLimits::default());
        // 0 meta, 1 avc A, 2 aac, 3 key, 4 inter, 5 avc B, 6 key, 7 inter
        push_all(
            &mut r,
            [
                metadata(40),
                avc_header(b'A'),
                aac_header(),
                key(50),
                inter(10),
                avc_header(b'B'),
                key(50),
                inter(10),
            ],
            t,
        );
        r.ack(4, t).unwrap();
        // From the first unacknowledged (5): header B is in the window, replayed in place.
        let plan = r.resume_plan(ResumePoint::After(4));
        assert_eq!(
            plan.config,
            vec![metadata(40), avc_header(b'A'), aac_header()]
        );
        assert_eq!(plan.resume_from, 5);
        assert_eq!(plan.frames[0], (5, avc_header(b'B')));
        r.ack(6, t).unwrap();
        // Header B left the window (acknowledged, before the GOP of 7): it is in force.
        assert_eq!(seqs(&r), vec![6, 7]);
        let plan = r.resume_plan(ResumePoint::After(6));
        assert_eq!(
            plan.config,
            vec![metadata(40), avc_header(b'B'), aac_header()]
        );
        assert_eq!((plan.resume_from, plan.frames.len()), (7, 1));
        // From the keyframe: the same configuration, frames from 6.
        let plan = r.resume_plan(ResumePoint::Keyframe);
        assert_eq!(
            plan.config,
            vec![metadata(40), avc_header(b'B'), aac_header()]
        );
        assert_eq!(plan.resume_from, 6);
    }

    /// Each case: limits, frames pushed (with acks between), then what is retained, what
    /// a resume from the first unacknowledged frame skips, and the counts.
    #[test]
    fn bounds_give_up_the_acknowledged_head_then_whole_groups() {
        enum Op {
            Push(MediaFrame),
            Ack(u64),
        }
        use Op::{Ack, Push};
        struct Case {
            name: &'static str,
            limits: RetainLimits,
            ops: Vec<Op>,
            retained: Vec<u64>,
            lost: u64,
            stats: RetainStats,
        }
        let cases = vec![
            Case {
                name: "the acknowledged head goes first, nothing lost",
                limits: limits(1000, 100),
                ops: vec![
                    Push(key(400)),
                    Push(inter(100)),
                    Push(inter(100)),
                    Ack(2),
                    Push(inter(300)), // 900, all in the GOP of 0
                    Push(inter(200)), // 1,100: 0-2 are acknowledged
                ],
                retained: vec![3, 4],
                lost: 0,
                stats: RetainStats {
                    trimmed_acked: 3,
                    ..Default::default()
                },
            },
            Case {
                name: "an unacknowledged GOP goes whole, up to the next keyframe",
                limits: limits(1000, 100),
                ops: vec![
                    Push(key(400)),
                    Push(inter(200)),
                    Push(key(400)),
                    Push(inter(100)),
                ],
                retained: vec![2, 3],
                lost: 2,
                stats: RetainStats {
                    evicted_unacked: 2,
                    evicted_unacked_bytes: 600,
                    ..Default::default()
                },
            },
            Case {
                name: "one GOP over the bound: all of it, then nothing until a keyframe",
                limits: limits(1000, 100),
                ops: vec![
                    Push(key(600)),
                    Push(inter(300)),
                    Push(inter(200)),       // over, no later keyframe
                    Push(inter(100)),       // not retained
                    Push(avc_header(b'C')), // set aside
                    Push(key(100)),
                    Push(inter(100)),
                ],
                retained: vec![5, 6],
                lost: 5,
                stats: RetainStats {
                    evicted_unacked: 4,
                    evicted_unacked_bytes: 1200,
                    ..Default::default()
                },
            },
            Case {
                name: "the message bound, with configuration set aside",
                limits: limits(1_000_000, 3),
                ops: vec![
                    Push(key(10)),
                    Push(avc_header(b'D')),
                    Push(inter(10)),
                    Push(key(10)),
                ],
                retained: vec![3],
                lost: 3,
                stats: RetainStats {
                    evicted_unacked: 2,
                    evicted_unacked_bytes: 20,
                    ..Default::default()
                },
            },
            Case {
                name: "audio only: a frame at a time",
                limits: limits(1_000_000, 2),
                ops: vec![Push(audio(10)), Push(audio(10)), Push(audio(10))],
                retained: vec![1, 2],
                lost: 1,
                stats: RetainStats {
                    evicted_unacked: 1,
                    evicted_unacked_bytes: 10,
                    ..Default::default()
                },
            },
            Case {
                name: "audio in a video stream goes with its GOP",
                limits: limits(1_000_000, 3),
                ops: vec![
                    Push(key(10)),
                    Push(audio(10)),
                    Push(audio(10)),
                    Push(key(10)),
                ],
                retained: vec![3],
                lost: 3,
                stats: RetainStats {
                    evicted_unacked: 3,
                    evicted_unacked_bytes: 30,
                    ..Default::default()
                },
            },
            Case {
                name: "a frame alone over the bound is not retained",
                limits: limits(1000, 100),
                ops: vec![Push(key(2000)), Push(inter(10)), Push(key(10))],
                retained: vec![2],
                lost: 2,
                stats: RetainStats {
                    evicted_unacked: 2,
                    evicted_unacked_bytes: 2010,
                    ..Default::default()
                },
            },
        ];
        let t = Instant::now();
        for case in cases {
            let mut r = Retain::new(case.limits);
            for op in case.ops {
                match op {
                    Push(f) => {
                        r.push(f, t);
                    }
                    Ack(seq) => r.ack(seq, t).unwrap(),
                }
            }
            assert_eq!(seqs(&r), case.retained, "{}", case.name);
            assert_eq!(r.take_stats(), case.stats, "{}", case.name);
            let plan = r.resume_plan(ResumePoint::Keyframe);
            assert_eq!(plan.lost, case.lost, "{}", case.name);
            assert_eq!(
                r.resume_plan(ResumePoint::Keyframe).lost,
                0,
                "{}: counted once",
                case.name
            );
        }
    }

    #[test]
    fn configuration_given_up_is_resent_and_oversized_configuration_is_not_kept() {
        let t = Instant::now();
        let mut r = Retain::new(limits(1000, 100));
        push_all(&mut r, [avc_header(b'E'), key(600), inter(600)], t);
        let plan = r.resume_plan(ResumePoint::Keyframe);
        assert_eq!(plan.config, vec![avc_header(b'E')], "set aside, not lost");
        assert_eq!(plan.lost, 3);

        let mut r = Retain::new(RetainLimits::default());
        push_all(&mut r, [metadata(MAX_CONFIG_BYTES + 1), key(10)], t);
        r.ack(1, t).unwrap();
        assert_eq!(r.take_stats().config_unkept, 1);
        assert!(r.resume_plan(ResumePoint::Keyframe).config.is_empty());
    }

    /// After a move: the new origin's acks are behind the first frame the old one did not
    /// acknowledge, and a resume there starts after what the new one has.
    #[test]
    fn a_resume_starts_after_what_this_origin_acknowledged() {
        let t = Instant::now();
        let mut r = Retain::new(RetainLimits::default());
        push_all(
            &mut r,
            [key(10), inter(10), inter(10), inter(10), inter(10)],
            t,
        );
        r.ack(2, t).unwrap(); // the old origin
        let moved = r.resume_plan(ResumePoint::Keyframe);
        assert_eq!(
            (moved.resume_from, moved.frames.len(), moved.lost),
            (0, 5, 0)
        );
        r.ack(0, t).unwrap(); // the new origin, behind: changes nothing here
        assert_eq!((r.first_unacked(), r.len()), (3, 5));
        let again = r.resume_plan(ResumePoint::After(0));
        assert_eq!(
            (again.resume_from, again.frames.len(), again.lost),
            (1, 4, 0)
        );
        // Had the bounds given up frames this origin lacks, they count as lost to it.
        let mut r = Retain::new(limits(1000, 100));
        push_all(&mut r, [key(300), inter(300), inter(300)], t);
        r.ack(1, t).unwrap();
        r.push(inter(300), t); // 1,200: the acknowledged head (0, 1) goes
        assert_eq!(r.take_stats().trimmed_acked, 2);
        let plan = r.resume_plan(ResumePoint::After(0));
        assert_eq!((plan.resume_from, plan.lost), (2, 1));
    }

    #[test]
    fn the_wait_for_an_ack_runs_from_the_last_progress() {
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        let mut r = Retain::new(RetainLimits::default());
        assert_eq!(r.ack_awaited_since(), None);
        r.push(key(10), t0);
        r.push(inter(10), t0 + 10 * ms);
        assert_eq!(r.ack_awaited_since(), Some(t0));
        r.ack(0, t0 + 20 * ms).unwrap();
        assert_eq!(r.ack_awaited_since(), Some(t0 + 20 * ms));
        r.ack(0, t0 + 30 * ms).unwrap();
        assert_eq!(r.ack_awaited_since(), Some(t0 + 20 * ms), "no progress");
        r.ack(1, t0 + 40 * ms).unwrap();
        assert_eq!(r.ack_awaited_since(), None);
        r.push(inter(10), t0 + 50 * ms);
        assert_eq!(r.ack_awaited_since(), Some(t0 + 50 * ms));
        // A resume: the new stream's acks are awaited from then, not from the old wait.
        r.restart_ack_clock(t0 + 4000 * ms);
        assert_eq!(r.ack_awaited_since(), Some(t0 + 4000 * ms));
        r.ack(2, t0 + 4010 * ms).unwrap();
        r.restart_ack_clock(t0 + 5000 * ms);
        assert_eq!(r.ack_awaited_since(), None, "nothing awaited stays so");
    }
}
