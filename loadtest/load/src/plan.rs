//! The synthetic stream a publisher sends: what an encoder at `--bitrate`, `--fps`,
//! `--gop` and `--audio-bitrate` hands its RTMP stack, frame by frame.
//!
//! - Video at `fps`, a keyframe every `gop` (the first frame is one, so a player starts
//!   at once). A keyframe is [`KEYFRAME_WEIGHT`] times an average P-frame; P-frames vary
//!   randomly by ±[`P_FRAME_SPREAD`]. Sizes are chosen so that a GOP averages the video
//!   bitrate: with `n` frames per GOP, the average P-frame is `gop bytes / (n - 1 + 4)`.
//! - AAC audio: one frame every 1024/48000 s (48 kHz, 1,024 samples a frame), sized so
//!   the frames add up to the audio bitrate exactly (the fractional byte carries over).
//! - First, before any media: `@setDataFrame onMetaData` and the AVC and AAC sequence
//!   headers (those of `benches/relay_path.rs`, which the origin takes).
//!
//! [`Frames`] yields frames in send order (video before audio at equal times) with no
//! storage; [`media`] builds one message: tag header, [`Stamp`], then bytes copied from
//! a shared template, one allocation per frame (the payload itself).

use crate::stamp::{Stamp, AAC_RAW_HEADER, AVC_INTER_HEADER, AVC_KEY_HEADER, STAMP_LEN};
use bytes::{BufMut, Bytes, BytesMut};
use longhaul_rtmp::amf0::{self, Amf0Value};
use longhaul_rtmp::message::type_id;
use longhaul_rtmp::RtmpMessage;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// A keyframe is this many average P-frames: typical of x264 `veryfast` on talking-head
/// and sports content at 2 s GOPs (I/P size ratios of 3-6; 4 is the middle).
pub const KEYFRAME_WEIGHT: f64 = 4.0;
/// P-frames vary uniformly by this fraction around their average: motion comes and goes.
pub const P_FRAME_SPREAD: f64 = 0.3;
/// AAC at 48 kHz: 1,024 samples per frame, 21.33 ms.
pub const AUDIO_FRAME_SECS: f64 = 1024.0 / 48_000.0;
/// RTMP message stream id of the published stream (the first `createStream` answer).
const STREAM_ID: u32 = 1;

/// The encoder settings a stream is made from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// Video payload, bits per second.
    pub video_bps: u64,
    pub fps: u32,
    /// Keyframe interval.
    pub gop: Duration,
    /// Audio payload, bits per second; 0: no audio.
    pub audio_bps: u64,
}

impl Shape {
    /// Frames per keyframe interval, at least 1.
    pub fn gop_frames(&self) -> u32 {
        ((self.gop.as_secs_f64() * f64::from(self.fps)).round() as u32).max(1)
    }

    /// Average P-frame bytes (the keyframe is [`KEYFRAME_WEIGHT`] of these).
    fn p_frame_bytes(&self) -> f64 {
        let n = f64::from(self.gop_frames());
        let gop_bytes = self.video_bps as f64 / 8.0 / f64::from(self.fps) * n;
        if n <= 1.0 {
            gop_bytes / KEYFRAME_WEIGHT
        } else {
            gop_bytes / (n - 1.0 + KEYFRAME_WEIGHT)
        }
    }

    fn audio_frame_bytes(&self) -> f64 {
        self.audio_bps as f64 / 8.0 * AUDIO_FRAME_SECS
    }

    /// Smallest payload that holds a tag header and a stamp.
    fn min_len(header: usize) -> usize {
        header + STAMP_LEN
    }

    /// The largest payload a stream of this shape sends (the template's length).
    pub fn max_frame_len(&self) -> usize {
        let key = (self.p_frame_bytes() * KEYFRAME_WEIGHT).round() as usize;
        let p = (self.p_frame_bytes() * (1.0 + P_FRAME_SPREAD)).ceil() as usize;
        let audio = self.audio_frame_bytes().ceil() as usize;
        key.max(p)
            .max(audio)
            .max(Self::min_len(AVC_KEY_HEADER.len()))
    }

    /// Payload bits per second offered, audio included.
    pub fn total_bps(&self) -> u64 {
        self.video_bps + self.audio_bps
    }
}

/// One frame to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Offset from the stream's media start: its capture time.
    pub at: Duration,
    pub video: bool,
    pub key: bool,
    /// Payload bytes, tag header and stamp included.
    pub len: usize,
}

impl Frame {
    /// RTMP timestamp, milliseconds from the media start.
    pub fn timestamp(&self) -> u32 {
        self.at.as_millis() as u32
    }
}

/// The frames of one stream whose capture time is before `length`, in send order.
#[derive(Debug, Clone)]
pub struct Frames {
    shape: Shape,
    length: Duration,
    rng: SmallRng,
    video: u64,
    audio: u64,
    p_bytes: f64,
    audio_bytes: f64,
}

impl Frames {
    pub fn new(shape: Shape, length: Duration, seed: u64) -> Self {
        Self {
            shape,
            length,
            rng: SmallRng::seed_from_u64(seed),
            video: 0,
            audio: 0,
            p_bytes: shape.p_frame_bytes(),
            audio_bytes: shape.audio_frame_bytes(),
        }
    }

    fn video_at(&self) -> Duration {
        Duration::from_secs_f64(self.video as f64 / f64::from(self.shape.fps.max(1)))
    }

    fn audio_at(&self) -> Option<Duration> {
        (self.shape.audio_bps > 0)
            .then(|| Duration::from_secs_f64(self.audio as f64 * AUDIO_FRAME_SECS))
    }
}

impl Iterator for Frames {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        let video_at = self.video_at();
        let audio_at = self.audio_at().filter(|a| *a < video_at);
        if let Some(at) = audio_at {
            if at >= self.length {
                return None;
            }
            // Exact total: frame i gets floor((i+1)·b) − floor(i·b) bytes.
            let i = self.audio as f64;
            let bytes = ((i + 1.0) * self.audio_bytes).floor() - (i * self.audio_bytes).floor();
            self.audio += 1;
            return Some(Frame {
                at,
                video: false,
                key: false,
                len: (bytes as usize).max(Shape::min_len(AAC_RAW_HEADER.len())),
            });
        }
        if video_at >= self.length {
            return None;
        }
        let key = self
            .video
            .is_multiple_of(u64::from(self.shape.gop_frames()));
        let bytes = if key {
            self.p_bytes * KEYFRAME_WEIGHT
        } else {
            self.p_bytes
                * self
                    .rng
                    .gen_range(1.0 - P_FRAME_SPREAD..=1.0 + P_FRAME_SPREAD)
        };
        self.video += 1;
        Some(Frame {
            at: video_at,
            video: true,
            key,
            len: (bytes.round() as usize).max(Shape::min_len(AVC_KEY_HEADER.len())),
        })
    }
}

/// Bytes to fill payloads from: `len` bytes of a fixed pattern.
pub fn template(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i * 7 + 3) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// One media message: tag header, `stamp`, then template bytes up to `frame.len`.
/// `template` must be at least [`Shape::max_frame_len`] long; a shorter one gives a
/// shorter payload, never a panic.
pub fn media(frame: &Frame, stamp: Stamp, template: &Bytes) -> RtmpMessage {
    let header: &[u8] = match (frame.video, frame.key) {
        (true, true) => &AVC_KEY_HEADER,
        (true, false) => &AVC_INTER_HEADER,
        (false, _) => &AAC_RAW_HEADER,
    };
    let fill = frame.len.saturating_sub(header.len() + STAMP_LEN);
    let mut b = BytesMut::with_capacity(header.len() + STAMP_LEN + fill);
    b.put_slice(header);
    stamp.put(&mut b);
    b.extend_from_slice(template.get(..fill).unwrap_or(template));
    RtmpMessage {
        timestamp: frame.timestamp(),
        type_id: if frame.video {
            type_id::VIDEO
        } else {
            type_id::AUDIO
        },
        stream_id: STREAM_ID,
        payload: b.freeze(),
    }
}

/// `@setDataFrame onMetaData` describing the shape, as ffmpeg and OBS send it first.
pub fn metadata(shape: &Shape) -> RtmpMessage {
    let mut b = BytesMut::new();
    let n = Amf0Value::Number;
    amf0::encode(&Amf0Value::String("@setDataFrame".into()), &mut b);
    amf0::encode(&Amf0Value::String("onMetaData".into()), &mut b);
    amf0::encode(
        &Amf0Value::EcmaArray(vec![
            ("width".into(), n(1280.0)),
            ("height".into(), n(720.0)),
            ("framerate".into(), n(f64::from(shape.fps))),
            ("videodatarate".into(), n(shape.video_bps as f64 / 1000.0)),
            ("videocodecid".into(), n(7.0)),
            ("audiodatarate".into(), n(shape.audio_bps as f64 / 1000.0)),
            ("audiosamplerate".into(), n(48_000.0)),
            ("audiocodecid".into(), n(10.0)),
            ("encoder".into(), Amf0Value::String("longhaul-load".into())),
        ]),
        &mut b,
    );
    RtmpMessage {
        timestamp: 0,
        type_id: type_id::DATA_AMF0,
        stream_id: STREAM_ID,
        payload: b.freeze(),
    }
}

/// AVC and AAC sequence headers (`benches/relay_path.rs`'s, known to pass the origin).
pub fn sequence_headers() -> [RtmpMessage; 2] {
    let msg = |type_id, payload: &'static [u8]| RtmpMessage {
        timestamp: 0,
        type_id,
        stream_id: STREAM_ID,
        payload: Bytes::from_static(payload),
    };
    [
        msg(
            type_id::VIDEO,
            &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 0],
        ),
        msg(type_id::AUDIO, &[0xaf, 0x00, 0x12, 0x10]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(video_bps: u64, audio_bps: u64) -> Shape {
        Shape {
            video_bps,
            fps: 25,
            gop: Duration::from_secs(2),
            audio_bps,
        }
    }

    fn bits_per_sec(s: Shape, secs: u64, video: bool) -> f64 {
        let bytes: usize = Frames::new(s, Duration::from_secs(secs), 42)
            .filter(|f| f.video == video)
            .map(|f| f.len)
            .sum();
        bytes as f64 * 8.0 / secs as f64
    }

    #[test]
    fn hits_the_target_bitrates() {
        for (v, a) in [(6_000_000, 128_000), (600_000, 64_000), (1_000_000, 96_000)] {
            let s = shape(v, a);
            let video = bits_per_sec(s, 60, true);
            let audio = bits_per_sec(s, 60, false);
            assert!(
                (video / v as f64 - 1.0).abs() < 0.03,
                "video {video} for {v}"
            );
            assert!(
                (audio / a as f64 - 1.0).abs() < 0.01,
                "audio {audio} for {a}"
            );
        }
    }

    #[test]
    fn keyframes_every_gop_and_sizes_in_range() {
        let s = shape(6_000_000, 128_000);
        let frames: Vec<Frame> = Frames::new(s, Duration::from_secs(10), 1).collect();
        let video: Vec<&Frame> = frames.iter().filter(|f| f.video).collect();
        assert_eq!(video.len(), 250);
        let keys: Vec<usize> = (0..video.len()).filter(|&i| video[i].key).collect();
        assert_eq!(keys, vec![0, 50, 100, 150, 200]);
        let p = s.p_frame_bytes();
        assert_eq!(video[0].len, (p * 4.0).round() as usize);
        for f in video.iter().filter(|f| !f.key) {
            let r = f.len as f64 / p;
            assert!((0.69..=1.31).contains(&r), "P-frame ratio {r}");
            assert!(f.len <= s.max_frame_len());
        }
        // Audio every 21.33 ms: 469 frames in 10 s.
        assert_eq!(frames.iter().filter(|f| !f.video).count(), 469);
        // Send order: capture times never go back; video first at equal times.
        assert!(frames.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(frames[0].video);
    }

    #[test]
    fn media_carries_the_stamp_and_the_planned_length() {
        let s = shape(1_000_000, 96_000);
        let t = template(s.max_frame_len());
        for (i, f) in Frames::new(s, Duration::from_secs(3), 9).enumerate() {
            let stamp = Stamp {
                stream: 3,
                seq: i as u32,
                sent_us: 1_000 + i as u64,
            };
            let m = media(&f, stamp, &t);
            assert_eq!(m.payload.len(), f.len);
            assert_eq!(Stamp::read(m.type_id, &m.payload), Some(stamp));
        }
    }

    #[test]
    fn tiny_bitrates_still_fit_a_stamp() {
        let s = shape(1_000, 0);
        let frames: Vec<Frame> = Frames::new(s, Duration::from_secs(1), 1).collect();
        assert_eq!(frames.len(), 25);
        assert!(frames.iter().all(|f| f.len >= 25));
    }
}
