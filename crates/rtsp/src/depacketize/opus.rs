//! Opus over RTP (RFC 7587) to Enhanced RTMP `Opus` tags.
//!
//! Each RTP packet carries exactly one Opus packet (RFC 7587, 4.2) with a 48 kHz clock
//! whatever the input rate (4.1), so there is nothing to reassemble and nothing to lose
//! but the packet itself. Opus has no legacy FLV SoundFormat: it goes in Enhanced RTMP
//! v2 `ExAudioTagHeader` tags, SoundFormat 9 with FourCC `Opus`: first an
//! AudioPacketType SequenceStart carrying the Opus ID header (`OpusHead`, RFC 7845
//! 5.1), then a CodedFrames tag per packet.
//!
//! The ID header is built here, since RTP sends none: channel count from
//! `sprop-stereo` (RFC 7587, 7.1: 1 stereo, 0 mono), else the rtpmap's (always 2 by
//! RFC 7587 6.1; decoders render any Opus packet in either layout), mapping family 0
//! (mono or stereo, no table), input rate 48000, gain 0. Pre-skip is 0: the encoder's
//! delay is not sent over RTP, and a relay joining a live stream has no start of
//! stream to trim.

use super::fmtp::FormatParameters;
use super::{tags, DepacketizeError, TrackFrame};
use crate::rtp::RtpPacket;
use bytes::{BufMut, Bytes, BytesMut};
use longhaul_rtmp::media::Frame;

/// The RTP clock of Opus, whatever the audio's rate (RFC 7587, 4.1).
const OPUS_CLOCK_RATE: u32 = 48_000;

/// The Opus depacketiser of one track.
#[derive(Debug)]
pub struct OpusDepacketizer {
    opus_head: Bytes,
    head_sent: bool,
}

impl OpusDepacketizer {
    pub(super) fn new(
        clock_rate: u32,
        channels: Option<u16>,
        parameters: &FormatParameters<'_>,
    ) -> Result<Self, DepacketizeError> {
        if clock_rate != OPUS_CLOCK_RATE {
            return Err(DepacketizeError::BadParameter {
                name: "clock rate",
                reason: format!("Opus runs at {OPUS_CLOCK_RATE} Hz in RTP, not {clock_rate}"),
            });
        }
        let channels = match parameters.number("sprop-stereo")? {
            Some(0) => 1,
            Some(_) => 2,
            None => channels.unwrap_or(2).clamp(1, 2) as u8,
        };
        Ok(Self {
            opus_head: opus_head(channels),
            head_sent: false,
        })
    }

    pub(super) fn push(
        &mut self,
        packet: &RtpPacket,
        out: &mut Vec<TrackFrame>,
    ) -> Result<(), DepacketizeError> {
        // An empty payload carries no Opus packet (a sender's keep-alive at most).
        if packet.payload.is_empty() {
            return Ok(());
        }
        if !self.head_sent {
            self.head_sent = true;
            out.push(TrackFrame {
                rtp_timestamp: packet.timestamp,
                body: tags::opus_sequence_start(&self.opus_head),
                frame: Frame::SequenceHeader,
            });
        }
        out.push(TrackFrame {
            rtp_timestamp: packet.timestamp,
            body: tags::opus_frame(&packet.payload),
            frame: Frame::Coded,
        });
        Ok(())
    }

    /// Nothing is assembled across packets: a loss needs no recovery.
    pub(super) fn lost(&mut self) {}
}

/// The 19-byte Opus ID header of mapping family 0 (RFC 7845, 5.1).
fn opus_head(channels: u8) -> Bytes {
    let mut head = BytesMut::with_capacity(19);
    head.put_slice(b"OpusHead");
    head.put_u8(1); // version
    head.put_u8(channels);
    head.put_u16_le(0); // pre-skip
    head.put_u32_le(OPUS_CLOCK_RATE); // input sample rate
    head.put_i16_le(0); // output gain
    head.put_u8(0); // channel mapping family
    head.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::depacketize::Track;
    use longhaul_rtmp::media::{inspect_audio, Codec};

    fn packet(timestamp: u32, payload: &[u8]) -> RtpPacket {
        RtpPacket {
            marker: false,
            payload_type: 111,
            sequence: 0,
            timestamp,
            ssrc: 1,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn opus_head_then_one_frame_per_packet() {
        let mut track = Track::new("opus", 48_000, Some(2), Some("sprop-stereo=1")).unwrap();
        let mut out = Vec::new();
        track
            .push(&packet(960, &[0xfc, 0xff, 0xfe]), &mut out)
            .unwrap();
        track.push(&packet(1920, &[]), &mut out).unwrap();
        track.lost();
        track.push(&packet(2880, &[0xfc]), &mut out).unwrap();
        assert_eq!(out.len(), 3);
        let mut expected = vec![0x90, b'O', b'p', b'u', b's'];
        expected.extend_from_slice(b"OpusHead");
        expected.extend_from_slice(&[1, 2, 0, 0, 0x80, 0xbb, 0, 0, 0, 0, 0]);
        assert_eq!(&out[0].body[..], &expected[..]);
        assert_eq!(
            &out[1].body[..],
            &[0x91, b'O', b'p', b'u', b's', 0xfc, 0xff, 0xfe]
        );
        assert_eq!((out[1].rtp_timestamp, out[2].rtp_timestamp), (960, 2880));
        for f in &out {
            let info = inspect_audio(&f.body).unwrap();
            assert_eq!((info.codec, info.frame), (Codec::FourCc(*b"Opus"), f.frame));
        }
    }

    #[test]
    fn channel_count() {
        let head = |channels, fmtp| {
            let mut track = Track::new("OPUS", 48_000, channels, fmtp).unwrap();
            let mut out = Vec::new();
            track.push(&packet(0, &[0xfc]), &mut out).unwrap();
            out[0].body[5 + 9]
        };
        assert_eq!(head(Some(2), Some("sprop-stereo=0")), 1);
        assert_eq!(head(Some(2), Some("sprop-stereo=1")), 2);
        assert_eq!(head(Some(2), None), 2);
        assert_eq!(head(Some(1), None), 1);
        assert_eq!(head(None, None), 2);
        assert_eq!(head(Some(8), None), 2);
        assert!(Track::new("opus", 8_000, Some(1), None)
            .unwrap_err()
            .to_string()
            .contains("48000"));
    }
}
