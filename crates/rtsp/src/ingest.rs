//! A recording session's media: RTP and RTCP packets of its tracks in, the RTMP messages
//! an RTMP publish of the same stream would carry out.
//!
//! Per track: packets are put back in sequence order in a bounded buffer (UDP may
//! reorder; TCP does not), gaps are counted as lost and skipped, the depacketiser
//! ([`crate::depacketize`]) turns the packets into FLV tag bodies, and the RTP timestamps
//! become one millisecond timeline shared by the tracks.
//!
//! **The timeline.** Each track's RTP clock starts at a random value and runs at its own
//! rate, so each track is anchored once, at its first frame, to a time on the shared
//! timeline: by its RTCP sender report when one has come (the report ties an RTP time to
//! the sender's wall clock, the same clock for every track, so audio and video stay in
//! sync as captured), else by when its first frame arrived. From the anchor on, a
//! track's times follow its RTP timestamps exactly (unwrapped past 2^32), so network
//! jitter does not move them. ffmpeg sends a sender report before its first packet of
//! each track; GStreamer within the first seconds, by which time the arrival anchor is
//! taken: within a few milliseconds of the report's on a local network.
//!
//! Time is passed in; nothing here reads a clock.

use crate::depacketize::{Kind, Track, TrackFrame};
use crate::rtp::{self, RtpPacket};
use crate::sdp::AnnouncedTrack;
use bytes::Bytes;
use longhaul_rtmp::message::type_id;
use longhaul_rtmp::RtmpMessage;
use std::time::{Duration, Instant};

/// Packets held per track waiting for a missing one: 64. At 6 Mbit/s video is about 550
/// packets a second, so this waits at most about 120 ms for a reordered packet before
/// counting it lost; at the bitrates of IP cameras, longer. Over TCP nothing is held.
pub const REORDER_PACKETS: usize = 64;

/// How long the oldest held packet waits for the ones before it: 200 ms, a reordering
/// far beyond what a path without loss does, short enough that a lost packet stalls a
/// track for less than a frame's worth at 5 fps.
pub const REORDER_WAIT: Duration = Duration::from_millis(200);

/// The RTMP message stream id the messages carry (an RTMP publish's first
/// `createStream` answer); the hub does not look at it.
const STREAM_ID: u32 = 1;

/// What one track counted, for the driver's metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TrackCounts {
    pub packets: u64,
    /// Sequence numbers skipped: never arrived within the reordering window.
    pub lost: u64,
    /// Packets that came after their place was passed (late or duplicated): dropped.
    pub late: u64,
    /// Packets the depacketiser refused (malformed payloads): dropped.
    pub malformed: u64,
    /// RFC 3550 interarrival jitter, in milliseconds.
    pub jitter_ms: f64,
    /// Frames the depacketiser dropped: damaged by a loss or a malformed packet, or
    /// (video) before the decoder configuration or while waiting for a keyframe.
    pub dropped_frames: u64,
    /// Frames taken into the stream (decoder configurations included).
    pub frames: u64,
}

/// One track of a recording session.
struct TrackIngest {
    depacketizer: Track,
    clock_rate: u32,
    /// The next sequence number to hand the depacketiser; `None` before the first.
    expected: Option<u16>,
    /// Packets ahead of `expected`, with when they arrived: at most [`REORDER_PACKETS`].
    held: Vec<(RtpPacket, Instant)>,
    /// The latest sender report: (its RTP time, its NTP time in ms).
    report: Option<(u32, f64)>,
    /// RTP time and timeline ms of the track's anchor (its first frame).
    anchor: Option<(i64, f64)>,
    /// The last RTP timestamp unwrapped to 64 bits.
    unwrapped: Option<i64>,
    /// For jitter: the last packet's arrival (in RTP units since `start`) less its
    /// RTP timestamp.
    transit: Option<f64>,
    counts: TrackCounts,
    type_id: u8,
}

/// The media of one recording session.
pub struct RtpIngest {
    tracks: Vec<TrackIngest>,
    /// When the first packet of any track arrived: the timeline's zero by arrival.
    start: Option<Instant>,
    /// A sender report's NTP ms and the timeline ms it was given: the tie between the
    /// senders' wall clock and the timeline, taken by the first track anchored by one.
    ntp_base: Option<(f64, f64)>,
    frames: Vec<TrackFrame>,
}

/// Why a track of an ANNOUNCE cannot be taken (the session answers 415 with it).
pub type TrackError = crate::depacketize::DepacketizeError;

impl RtpIngest {
    /// Depacketisers for the announced tracks, or the first one that cannot be made.
    pub fn new(tracks: &[AnnouncedTrack]) -> Result<RtpIngest, (usize, TrackError)> {
        let tracks = tracks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let depacketizer =
                    Track::new(&t.encoding, t.clock_rate, t.channels, t.fmtp.as_deref())
                        .map_err(|e| (i, e))?;
                let type_id = match depacketizer.kind() {
                    Kind::Video => type_id::VIDEO,
                    Kind::Audio => type_id::AUDIO,
                };
                Ok(TrackIngest {
                    clock_rate: depacketizer.clock_rate().max(1),
                    depacketizer,
                    expected: None,
                    held: Vec::new(),
                    report: None,
                    anchor: None,
                    unwrapped: None,
                    transit: None,
                    counts: TrackCounts::default(),
                    type_id,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RtpIngest {
            tracks,
            start: None,
            ntp_base: None,
            frames: Vec::new(),
        })
    }

    /// The codec of each track, in announce order ("h264", "aac", ...).
    pub fn codecs(&self) -> Vec<&'static str> {
        self.tracks.iter().map(|t| t.depacketizer.codec()).collect()
    }

    pub fn counts(&self, track: usize) -> Option<TrackCounts> {
        self.tracks.get(track).map(|t| TrackCounts {
            dropped_frames: t.depacketizer.dropped_frames(),
            ..t.counts
        })
    }

    /// Handles one RTP (`rtcp` false) or RTCP packet of `track` that arrived `now`,
    /// appending the messages it completes to `out`. A malformed packet is counted and
    /// dropped; the stream goes on.
    pub fn push(
        &mut self,
        now: Instant,
        track: usize,
        rtcp: bool,
        data: Bytes,
        out: &mut Vec<RtmpMessage>,
    ) {
        let Some(t) = self.tracks.get_mut(track) else {
            return;
        };
        if rtcp {
            if let Ok(reports) = rtp::sender_reports(&data) {
                if let Some(sr) = reports.last() {
                    t.report = Some((sr.rtp_timestamp, ntp_ms(sr.ntp_timestamp)));
                }
            }
            return;
        }
        let packet = match RtpPacket::parse(data) {
            Ok(p) => p,
            Err(_) => {
                t.counts.malformed += 1;
                return;
            }
        };
        let start = *self.start.get_or_insert(now);
        t.counts.packets += 1;
        t.jitter(now, start, packet.timestamp);
        let Some(expected) = t.expected else {
            t.expected = Some(packet.sequence);
            self.release(now, track, packet, out);
            self.drain(now, track, out);
            return;
        };
        let ahead = packet.sequence.wrapping_sub(expected);
        if ahead == 0 {
            self.release(now, track, packet, out);
        } else if ahead < 0x8000 {
            if t.held.iter().any(|(p, _)| p.sequence == packet.sequence) {
                t.counts.late += 1;
                return;
            }
            t.held.push((packet, now));
        } else {
            t.counts.late += 1;
            return;
        }
        self.drain(now, track, out);
    }

    /// Gives up waiting on missing packets held too long (call on the driver's timer).
    pub fn poll(&mut self, now: Instant, out: &mut Vec<RtmpMessage>) {
        for track in 0..self.tracks.len() {
            self.drain(now, track, out);
        }
    }

    /// Releases every held packet, skipping the gaps: the publish is ending, and what
    /// is missing will not come.
    pub fn flush(&mut self, now: Instant, out: &mut Vec<RtmpMessage>) {
        self.poll(now + REORDER_WAIT, out);
        for track in 0..self.tracks.len() {
            let mut frames = std::mem::take(&mut self.frames);
            self.tracks[track].depacketizer.flush(&mut frames);
            self.emit(now, track, &mut frames, out);
            self.frames = frames;
        }
    }

    /// When [`RtpIngest::poll`] is due: the oldest held packet's deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.tracks
            .iter()
            .flat_map(|t| t.held.iter().map(|(_, at)| *at))
            .min()
            .map(|at| at + REORDER_WAIT)
    }

    /// Releases what is in order; skips a gap when the buffer is full or its oldest
    /// packet waited [`REORDER_WAIT`].
    fn drain(&mut self, now: Instant, track: usize, out: &mut Vec<RtmpMessage>) {
        loop {
            let t = &mut self.tracks[track];
            let Some(expected) = t.expected else { return };
            let Some((index, distance)) = t
                .held
                .iter()
                .enumerate()
                .map(|(i, (p, _))| (i, p.sequence.wrapping_sub(expected)))
                .min_by_key(|&(_, d)| d)
            else {
                return;
            };
            let stale = t
                .held
                .iter()
                .any(|(_, at)| now.saturating_duration_since(*at) >= REORDER_WAIT);
            if distance != 0 && t.held.len() < REORDER_PACKETS && !stale {
                return;
            }
            let (packet, _) = t.held.swap_remove(index);
            if distance != 0 {
                t.counts.lost += u64::from(distance);
                t.depacketizer.lost();
            }
            self.release(now, track, packet, out);
        }
    }

    /// Hands one in-order packet to the depacketiser and its frames to `out`.
    fn release(
        &mut self,
        now: Instant,
        track: usize,
        packet: RtpPacket,
        out: &mut Vec<RtmpMessage>,
    ) {
        let mut frames = std::mem::take(&mut self.frames);
        {
            let t = &mut self.tracks[track];
            t.expected = Some(packet.sequence.wrapping_add(1));
            if t.depacketizer.push(&packet, &mut frames).is_err() {
                t.counts.malformed += 1;
            }
        }
        self.emit(now, track, &mut frames, out);
        self.frames = frames;
    }

    /// The depacketiser's frames as messages on the timeline.
    fn emit(
        &mut self,
        now: Instant,
        track: usize,
        frames: &mut Vec<TrackFrame>,
        out: &mut Vec<RtmpMessage>,
    ) {
        for frame in frames.drain(..) {
            let timestamp = self.timeline_ms(now, track, frame.rtp_timestamp);
            let t = &mut self.tracks[track];
            t.counts.frames += 1;
            out.push(RtmpMessage {
                timestamp,
                type_id: t.type_id,
                stream_id: STREAM_ID,
                payload: frame.body,
            });
        }
    }

    /// The timeline time of `rtp_timestamp` on `track`, anchoring the track at its first
    /// frame (see the module docs).
    fn timeline_ms(&mut self, now: Instant, track: usize, rtp_timestamp: u32) -> u32 {
        let start = self.start.unwrap_or(now);
        let t = &mut self.tracks[track];
        let unwrapped = match t.unwrapped {
            None => i64::from(rtp_timestamp),
            Some(last) => last + i64::from(rtp_timestamp.wrapping_sub(last as u32) as i32),
        };
        t.unwrapped = Some(unwrapped);
        let clock = f64::from(t.clock_rate);
        let (anchor_rtp, anchor_ms) = match t.anchor {
            Some(a) => a,
            None => {
                let arrival_ms = now.saturating_duration_since(start).as_secs_f64() * 1000.0;
                let ms = match (t.report, self.ntp_base) {
                    (Some((sr_rtp, sr_ntp)), Some((base_ntp, base_ms))) => {
                        let ntp = sr_ntp
                            + f64::from(rtp_timestamp.wrapping_sub(sr_rtp) as i32) * 1000.0 / clock;
                        (base_ms + ntp - base_ntp).max(0.0)
                    }
                    (Some((sr_rtp, sr_ntp)), None) => {
                        let ntp = sr_ntp
                            + f64::from(rtp_timestamp.wrapping_sub(sr_rtp) as i32) * 1000.0 / clock;
                        self.ntp_base = Some((ntp, arrival_ms));
                        arrival_ms
                    }
                    (None, _) => arrival_ms,
                };
                t.anchor = Some((unwrapped, ms));
                (unwrapped, ms)
            }
        };
        let ms = anchor_ms + (unwrapped - anchor_rtp) as f64 * 1000.0 / clock;
        // RTMP timestamps are u32 milliseconds that wrap; a frame before the anchor (a
        // reordered B-frame's time) is clamped to the start.
        (ms.max(0.0) as u64 % (1u64 << 32)) as u32
    }
}

impl TrackIngest {
    /// RFC 3550 A.8: J += (|D| - J) / 16, in RTP units, reported in ms.
    fn jitter(&mut self, now: Instant, start: Instant, rtp_timestamp: u32) {
        let clock = f64::from(self.clock_rate);
        let arrival = now.saturating_duration_since(start).as_secs_f64() * clock;
        let transit = arrival - f64::from(rtp_timestamp);
        if let Some(last) = self.transit {
            // Differences of RTP times wrap; fold them into ±2^31.
            let mut d = (transit - last).abs();
            if d > f64::from(u32::MAX) / 2.0 {
                d = (d - f64::from(u32::MAX) - 1.0).abs();
            }
            let j = self.counts.jitter_ms * clock / 1000.0;
            let j = j + (d - j) / 16.0;
            self.counts.jitter_ms = j * 1000.0 / clock;
        }
        self.transit = Some(transit);
    }
}

/// NTP's 32.32 fixed point (seconds since 1900) in milliseconds.
fn ntp_ms(ntp: u64) -> f64 {
    (ntp >> 32) as f64 * 1000.0 + (ntp & 0xffff_ffff) as f64 * 1000.0 / 4_294_967_296.0
}
