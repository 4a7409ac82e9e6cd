//! RTP payloads to frames, and frames to the FLV tag bodies the RTMP path carries.
//!
//! One [`Track`] per SDP media line of an ANNOUNCE: built from its rtpmap and fmtp,
//! fed the track's RTP packets in sequence order (the session reorders them and tells
//! of gaps with [`Track::lost`]), it appends every frame it completes to a vector as a
//! [`TrackFrame`]: the RTP timestamp and a complete FLV tag body, decoder configuration
//! first. From there an RTSP publish is an RTMP publish: the same relay, the same
//! players.
//!
//! - [`h264`]: RFC 6184 (single NAL unit, STAP-A, FU-A) to legacy FLV AVC.
//! - [`h265`]: RFC 7798 (single NAL unit, AP, FU; no DONL) to Enhanced RTMP `hvc1`.
//! - [`aac`]: RFC 3640 `AAC-hbr` (AU headers, several AUs per packet, fragmented AUs)
//!   to legacy FLV AAC.
//! - [`opus`]: RFC 7587 (one Opus packet per RTP packet) to Enhanced RTMP `Opus`.
//!
//! Input comes from the network: every read is checked, every buffer bounded
//! ([`MAX_FRAME_BYTES`], [`MAX_NAL_UNITS_PER_FRAME`]), and a malformed packet is a
//! [`DepacketizeError`] saying what was wrong, after which the track is consistent
//! again (the damaged frame dropped, video waiting for its next keyframe): the caller may
//! log the error and go on pushing packets.

pub mod aac;
mod fmtp;
pub mod h264;
pub mod h265;
pub mod latm;
mod nal;
pub mod opus;
mod tags;

use crate::rtp::RtpPacket;
use bytes::Bytes;
use longhaul_rtmp::media::Frame;

/// The largest frame (access unit) a track assembles, in bytes: 4 MiB.
///
/// RTP has no frame length, so without a bound a sender that never sets the marker bit
/// (or never ends a fragment) would grow a frame without end. Real frames are far
/// smaller: a 4K (2160p) H.264/H.265 keyframe at broadcast bitrates (20-50 Mbit/s) is
/// 0.3-2 MB, and the largest compressed picture the codecs allow at level 5.1/6.2 is
/// about 2-4 MB for the bitrates ingest sees. An RTMP message can hold 16 MiB (24-bit
/// length), so 4 MiB bounds memory per track well inside what the relay can carry.
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// The most NAL units one video frame may hold.
///
/// Encoders split a picture into a handful of slices (x264 1 by default, hardware and
/// camera encoders up to a few dozen, one per macroblock row at most: 68 rows at
/// 1080p, 135 at 2160p), plus a few parameter sets and SEI messages. 1024 is far above
/// any of these and bounds the per-frame list a sender of tiny NAL units could grow.
pub const MAX_NAL_UNITS_PER_FRAME: usize = 1024;

/// Whether a track is audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Video,
    Audio,
}

/// A frame a track completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackFrame {
    /// RTP timestamp of the frame (the caller converts to milliseconds with the track's
    /// clock rate and RTCP).
    pub rtp_timestamp: u32,
    /// The complete FLV tag body (what goes in an RTMP video/audio message payload),
    /// composition time 0.
    pub body: Bytes,
    /// What it is: [`Frame::SequenceHeader`] (decoder configuration),
    /// [`Frame::Keyframe`] or [`Frame::Coded`].
    pub frame: Frame,
}

/// The depacketiser of one SDP media line.
#[derive(Debug)]
pub struct Track {
    clock_rate: u32,
    codec: Codec,
}

#[derive(Debug)]
enum Codec {
    H264(h264::H264Depacketizer),
    H265(h265::H265Depacketizer),
    Aac(aac::AacDepacketizer),
    Latm(latm::LatmDepacketizer),
    Opus(opus::OpusDepacketizer),
}

impl Track {
    /// The depacketiser of an SDP media from its rtpmap (encoding name, case-insensitive:
    /// `H264`, `H265`, `MPEG4-GENERIC`, `MP4A-LATM`, `opus`; clock rate; channel count) and its fmtp
    /// parameters (e.g. `packetization-mode=1; sprop-parameter-sets=...`, without the
    /// `a=fmtp:<pt> ` prefix).
    pub fn new(
        encoding: &str,
        clock_rate: u32,
        channels: Option<u16>,
        fmtp: Option<&str>,
    ) -> Result<Track, DepacketizeError> {
        let parameters = fmtp::FormatParameters::parse(fmtp);
        let codec = if encoding.eq_ignore_ascii_case("H264") {
            Codec::H264(h264::H264Depacketizer::new(&parameters)?)
        } else if encoding.eq_ignore_ascii_case("H265") {
            Codec::H265(h265::H265Depacketizer::new(&parameters)?)
        } else if encoding.eq_ignore_ascii_case("MPEG4-GENERIC") {
            Codec::Aac(aac::AacDepacketizer::new(clock_rate, &parameters)?)
        } else if encoding.eq_ignore_ascii_case("MP4A-LATM") {
            Codec::Latm(latm::LatmDepacketizer::new(clock_rate, &parameters)?)
        } else if encoding.eq_ignore_ascii_case("opus") {
            Codec::Opus(opus::OpusDepacketizer::new(
                clock_rate,
                channels,
                &parameters,
            )?)
        } else {
            return Err(DepacketizeError::UnsupportedEncoding(encoding.to_owned()));
        };
        if clock_rate == 0 {
            return Err(DepacketizeError::BadParameter {
                name: "clock rate",
                reason: "0 Hz".to_owned(),
            });
        }
        Ok(Track { clock_rate, codec })
    }

    pub fn kind(&self) -> Kind {
        match self.codec {
            Codec::H264(_) | Codec::H265(_) => Kind::Video,
            Codec::Aac(_) | Codec::Latm(_) | Codec::Opus(_) => Kind::Audio,
        }
    }

    /// The RTP clock rate from the rtpmap, in Hz.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// Short codec name for logs and metrics: "h264", "h265", "aac", "opus".
    pub fn codec(&self) -> &'static str {
        match self.codec {
            Codec::H264(_) => "h264",
            Codec::H265(_) => "h265",
            Codec::Aac(_) | Codec::Latm(_) => "aac",
            Codec::Opus(_) => "opus",
        }
    }

    /// Feeds one RTP packet, in sequence order (the caller reorders and detects gaps),
    /// appending every frame it completes to `out`: the decoder configuration first (and
    /// again when it changes in band), then the frames.
    ///
    /// An error is about this packet only: the frame it damaged is dropped (video then
    /// waits for the next keyframe) and the next packet may be pushed.
    pub fn push(
        &mut self,
        packet: &RtpPacket,
        out: &mut Vec<TrackFrame>,
    ) -> Result<(), DepacketizeError> {
        match &mut self.codec {
            Codec::H264(d) => d.push(packet, out),
            Codec::H265(d) => d.push(packet, out),
            Codec::Aac(d) => d.push(packet, out),
            Codec::Latm(d) => d.push(packet, out),
            Codec::Opus(d) => d.push(packet, out),
        }
    }

    /// Packets were lost before the next one pushed: drops any partly assembled frame
    /// (and for video, waits for the next keyframe before emitting frames again).
    pub fn lost(&mut self) {
        match &mut self.codec {
            Codec::H264(d) => d.lost(),
            Codec::H265(d) => d.lost(),
            Codec::Aac(d) => d.lost(),
            Codec::Latm(d) => d.lost(),
            Codec::Opus(d) => d.lost(),
        }
    }

    /// The stream ended: appends a frame still being assembled, if it is whole (a
    /// sender that does not mark the last packet of a picture ends it only with the
    /// next one's timestamp, which will not come).
    pub fn flush(&mut self, out: &mut Vec<TrackFrame>) {
        match &mut self.codec {
            Codec::H264(d) => d.flush(out),
            Codec::H265(d) => d.flush(out),
            // Audio frames end with their packets (or are fragments, incomplete).
            Codec::Aac(_) | Codec::Latm(_) | Codec::Opus(_) => {}
        }
    }

    /// Frames dropped so far, whole or partial: damaged by a loss or a malformed
    /// packet, or (video) arriving before the decoder configuration or while waiting for
    /// a keyframe.
    pub fn dropped_frames(&self) -> u64 {
        match &self.codec {
            Codec::H264(d) => d.dropped_frames(),
            Codec::H265(d) => d.dropped_frames(),
            Codec::Aac(d) => d.dropped_frames(),
            Codec::Latm(d) => d.dropped_frames(),
            Codec::Opus(_) => 0,
        }
    }
}

/// What was wrong with a track's SDP parameters or with an RTP payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepacketizeError {
    #[error("unsupported encoding {0}")]
    UnsupportedEncoding(String),
    #[error("fmtp parameter {name}: {reason}")]
    BadParameter { name: &'static str, reason: String },
    #[error("AAC config missing from fmtp (the AudioSpecificConfig, in hex)")]
    AacConfigMissing,
    #[error("MPEG4-GENERIC mode {0:?} is unsupported: only AAC-hbr is")]
    UnsupportedAacMode(String),
    #[error("H.264 packetization-mode {0} is unsupported: only 0 and 1 are")]
    UnsupportedPacketizationMode(u32),
    #[error("H.265 sprop-max-don-diff {0}: DONL fields (interleaved H.265) are unsupported")]
    DonlUnsupported(u32),
    #[error("{codec} {name} (type {packet_type}) is unsupported: {reason}")]
    UnsupportedPacketType {
        codec: &'static str,
        name: &'static str,
        packet_type: u8,
        reason: &'static str,
    },
    #[error("{what} needs {needed} bytes, the packet has {left} left")]
    Truncated {
        what: &'static str,
        needed: usize,
        left: usize,
    },
    #[error("{0} fragment without a start")]
    FragmentWithoutStart(&'static str),
    #[error("{what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("frame of {size} bytes, over the {limit}-byte limit", limit = MAX_FRAME_BYTES)]
    FrameTooLarge { size: usize },
    #[error("frame of more than {limit} NAL units", limit = MAX_NAL_UNITS_PER_FRAME)]
    TooManyNalUnits,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_from_rtpmap_and_fmtp() {
        let h264 = Track::new("h264", 90_000, None, Some("packetization-mode=1")).unwrap();
        assert_eq!(
            (h264.kind(), h264.codec(), h264.clock_rate()),
            (Kind::Video, "h264", 90_000)
        );
        let h265 = Track::new("H265", 90_000, None, None).unwrap();
        assert_eq!((h265.kind(), h265.codec()), (Kind::Video, "h265"));
        let aac = Track::new(
            "mpeg4-generic",
            48_000,
            Some(2),
            Some("mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=1190"),
        )
        .unwrap();
        assert_eq!((aac.kind(), aac.codec()), (Kind::Audio, "aac"));
        let opus = Track::new("OPUS", 48_000, Some(2), None).unwrap();
        assert_eq!((opus.kind(), opus.codec()), (Kind::Audio, "opus"));
    }

    #[test]
    fn unsupported_tracks_say_why() {
        let err = |e: &str, rate, fmtp| Track::new(e, rate, None, fmtp).unwrap_err().to_string();
        assert_eq!(err("VP8", 90_000, None), "unsupported encoding VP8");
        assert_eq!(
            err("MPEG4-GENERIC", 48_000, Some("mode=AAC-hbr")),
            "AAC config missing from fmtp (the AudioSpecificConfig, in hex)"
        );
        assert_eq!(
            err("MPEG4-GENERIC", 48_000, Some("mode=CELP-cbr;config=1190")),
            "MPEG4-GENERIC mode \"CELP-cbr\" is unsupported: only AAC-hbr is"
        );
        assert_eq!(
            err("H264", 90_000, Some("packetization-mode=2")),
            "H.264 packetization-mode 2 is unsupported: only 0 and 1 are"
        );
        assert_eq!(
            err("H265", 90_000, Some("sprop-max-don-diff=2")),
            "H.265 sprop-max-don-diff 2: DONL fields (interleaved H.265) are unsupported"
        );
        assert!(err("H264", 0, None).contains("clock rate"));
        assert!(err("opus", 8_000, None).contains("48000"));
    }
}
