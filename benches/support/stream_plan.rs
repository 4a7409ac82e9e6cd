//! The synthetic live stream the benchmarks send: 25 fps video with a 100 KB keyframe
//! every 2 s and P-frames of 20-36 KB (28 KB on average), plus 48 kHz AAC frames of 300 B
//! every 21.3 ms: about 6.0 Mbit/s of payload. A plan is the list of messages with their
//! offsets from the stream's start; a bench sends it paced (each message at its capture
//! time) or in bulk (back to back, cycled).
//!
//! Shared, through `#[path]` includes, by `benches/relay_path.rs` (root package) and
//! `crates/tunnel/benches/tunnel.rs` (`longhaul-tunnel`), so that both benches carry the
//! very same stream and their figures compare. It needs only `std`: message types are
//! RTMP type ids as plain numbers, which the tunnel's `MediaFrame::kind` uses too.

use std::sync::OnceLock;
use std::time::Duration;

pub const FPS: u32 = 25;
/// Frames per keyframe interval: a keyframe every 2 s.
pub const GOP: u32 = 50;
pub const KEYFRAME: usize = 100_000;
pub const P_FRAME_MIN: usize = 20_000;
pub const P_FRAME_MAX: usize = 36_000;
pub const AUDIO: usize = 300;
/// AAC at 48 kHz: 1,024 samples per frame.
pub const AUDIO_PERIOD_US: f64 = 1024.0 / 48_000.0 * 1e6;

/// RTMP message type id of audio (the tunnel's frame kind for it).
pub const AUDIO_TYPE: u8 = 8;
/// RTMP message type id of video (the tunnel's frame kind for it).
pub const VIDEO_TYPE: u8 = 9;

/// How a case sends its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each message at its capture time.
    Paced,
    /// Messages back to back, as fast as the path takes them.
    Bulk,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Paced => "paced",
            Mode::Bulk => "bulk",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Planned {
    /// Offset from the stream's start.
    pub at: Duration,
    /// [`AUDIO_TYPE`] or [`VIDEO_TYPE`].
    pub type_id: u8,
    /// RTMP timestamp, milliseconds.
    pub timestamp: u32,
    pub len: usize,
    /// A video keyframe.
    pub key: bool,
}

/// The messages of one stream due before `length`. `phase` (0..1) staggers streams:
/// encoders are not in step, neither in frame time nor in keyframes.
pub fn plan(length: Duration, seed: u32, phase: f64) -> Vec<Planned> {
    let mut out = Vec::new();
    let mut rng = seed | 1;
    let frame_us = 1e6 / f64::from(FPS);
    let offset_us = phase * frame_us;
    let key_offset = (phase * f64::from(GOP)) as u32;
    let mut audio_us = offset_us;
    for frame in 0u32.. {
        let video_us = offset_us + f64::from(frame) * frame_us;
        while audio_us < video_us {
            let at = Duration::from_micros(audio_us as u64);
            if at >= length {
                return out;
            }
            out.push(Planned {
                at,
                type_id: AUDIO_TYPE,
                timestamp: (audio_us / 1e3) as u32,
                len: AUDIO,
                key: false,
            });
            audio_us += AUDIO_PERIOD_US;
        }
        let at = Duration::from_micros(video_us as u64);
        if at >= length {
            return out;
        }
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        let key = (frame + key_offset).is_multiple_of(GOP);
        out.push(Planned {
            at,
            type_id: VIDEO_TYPE,
            timestamp: (video_us / 1e3) as u32,
            len: if key {
                KEYFRAME
            } else {
                P_FRAME_MIN + rng as usize % (P_FRAME_MAX - P_FRAME_MIN + 1)
            },
            key,
        });
    }
    out
}

/// The plan of stream `i` of `streams` sent side by side: its own seed, and phases spread
/// evenly over a frame and a keyframe interval.
pub fn plan_stream(length: Duration, i: usize, streams: usize) -> Vec<Planned> {
    plan(
        length,
        0x9e37_79b9 ^ (i as u32 * 7_919 + 1),
        i as f64 / streams as f64,
    )
}

/// Payload bytes to copy from: a keyframe's worth of a fixed pattern.
pub fn template() -> &'static [u8] {
    static T: OnceLock<Vec<u8>> = OnceLock::new();
    T.get_or_init(|| (0..KEYFRAME).map(|i| (i * 7 + 3) as u8).collect())
}
