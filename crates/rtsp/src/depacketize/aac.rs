//! AAC over RTP (RFC 3640, mode `AAC-hbr`) to legacy FLV AAC tags.
//!
//! An `MPEG4-GENERIC` payload in AAC-hbr mode is a 16-bit AU-headers-length (in bits),
//! the AU headers (each a 13-bit AU size and a 3-bit AU index or index delta), then the
//! access units back to back (RFC 3640, 3.2 and 3.3.6). A packet holds several AUs,
//! each `samples_per_frame` after the one before it (1024 for AAC-LC, RFC 3640 3.2.3.1),
//! or one fragment of an AU larger than a packet: then every fragment carries the AU
//! header of the whole AU and the marker bit is set on the last one (3.2.3.2).
//!
//! The sequence header is the AudioSpecificConfig of fmtp `config` (hex), required:
//! nothing in the stream carries it. Interleaving (a non-zero AU index) and the
//! optional AU header fields (CTS/DTS deltas, random access, stream state), which AAC-hbr
//! does not use, are refused.

use super::fmtp::{hex, FormatParameters};
use super::nal::BitReader;
use super::{tags, DepacketizeError, TrackFrame};
use crate::rtp::RtpPacket;
use bytes::{Bytes, BytesMut};
use longhaul_rtmp::media::Frame;

/// AAC-hbr's AU header field widths (RFC 3640, 3.3.6).
const DEFAULT_SIZE_LENGTH: u32 = 13;
const DEFAULT_INDEX_LENGTH: u32 = 3;

/// The widest AU size field accepted: 16 bits bound one AU to 64 KiB (AAC-hbr uses 13,
/// for 8 KiB; an AAC frame is at most 6144 bits per channel).
const MAX_SIZE_LENGTH: u32 = 16;

/// The sampling frequencies of samplingFrequencyIndex 0..=12 (ISO/IEC 14496-3 1.6.3.4).
const SAMPLING_FREQUENCIES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// The AAC depacketiser of one track.
#[derive(Debug)]
pub struct AacDepacketizer {
    audio_specific_config: Bytes,
    size_length: u32,
    index_length: u32,
    index_delta_length: u32,
    /// RTP timestamp units between consecutive AUs of a packet.
    samples_per_frame: u32,
    config_sent: bool,
    fragment: Option<Fragment>,
    /// After a loss: skip packets until one starts an AU.
    resynchronising: bool,
    /// The timestamp and marker bit of the last packet seen.
    last_packet: Option<(u32, bool)>,
    dropped_frames: u64,
}

/// An AU arriving over several packets.
#[derive(Debug)]
struct Fragment {
    timestamp: u32,
    size: usize,
    data: BytesMut,
}

impl AacDepacketizer {
    pub(super) fn new(
        clock_rate: u32,
        parameters: &FormatParameters<'_>,
    ) -> Result<Self, DepacketizeError> {
        if let Some(mode) = parameters.get("mode") {
            if !mode.eq_ignore_ascii_case("AAC-hbr") {
                return Err(DepacketizeError::UnsupportedAacMode(mode.to_owned()));
            }
        }
        let config = parameters
            .get("config")
            .filter(|c| !c.is_empty())
            .ok_or(DepacketizeError::AacConfigMissing)?;
        let audio_specific_config = hex(config).ok_or_else(|| DepacketizeError::BadParameter {
            name: "config",
            reason: format!("{config:?} is not hex"),
        })?;
        let samples_per_frame =
            samples_per_frame(&audio_specific_config, clock_rate).ok_or_else(|| {
                DepacketizeError::BadParameter {
                    name: "config",
                    reason: format!("{config} is not an AudioSpecificConfig"),
                }
            })?;
        let size_length = parameters
            .number("sizelength")?
            .unwrap_or(DEFAULT_SIZE_LENGTH);
        let index_length = parameters
            .number("indexlength")?
            .unwrap_or(DEFAULT_INDEX_LENGTH);
        let index_delta_length = parameters
            .number("indexdeltalength")?
            .unwrap_or(DEFAULT_INDEX_LENGTH);
        if !(1..=MAX_SIZE_LENGTH).contains(&size_length) {
            return Err(DepacketizeError::BadParameter {
                name: "sizelength",
                reason: format!("{size_length} bits, outside 1..={MAX_SIZE_LENGTH}"),
            });
        }
        if index_length > 8 || index_delta_length > 8 {
            return Err(DepacketizeError::BadParameter {
                name: "indexlength",
                reason: format!("{index_length}/{index_delta_length} bits, over 8"),
            });
        }
        for name in [
            "ctsdeltalength",
            "dtsdeltalength",
            "randomaccessindication",
            "streamstateindication",
            "auxiliarydatasizelength",
        ] {
            if parameters.number(name).ok().flatten().unwrap_or(0) != 0 {
                return Err(DepacketizeError::BadParameter {
                    name: "AU header",
                    reason: format!("{name} is set, which AAC-hbr does not use"),
                });
            }
        }
        Ok(Self {
            audio_specific_config: Bytes::from(audio_specific_config),
            size_length,
            index_length,
            index_delta_length,
            samples_per_frame,
            config_sent: false,
            fragment: None,
            resynchronising: false,
            last_packet: None,
            dropped_frames: 0,
        })
    }

    pub(super) fn push(
        &mut self,
        packet: &RtpPacket,
        out: &mut Vec<TrackFrame>,
    ) -> Result<(), DepacketizeError> {
        let previous = self.last_packet.replace((packet.timestamp, packet.marker));
        if self.resynchronising {
            // A packet after a marker, or with a new timestamp, starts an AU; others may
            // be the rest of an AU whose first fragments were lost.
            match previous {
                Some((timestamp, marker)) if marker || timestamp != packet.timestamp => {
                    self.resynchronising = false;
                }
                _ => return Ok(()),
            }
        }
        let result = self.read_payload(packet, out);
        if result.is_err() {
            self.drop_fragment();
        }
        result
    }

    pub(super) fn lost(&mut self) {
        self.drop_fragment();
        self.resynchronising = true;
    }

    pub(super) fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    fn drop_fragment(&mut self) {
        if self.fragment.take().is_some() {
            self.dropped_frames += 1;
        }
    }

    fn read_payload(
        &mut self,
        packet: &RtpPacket,
        out: &mut Vec<TrackFrame>,
    ) -> Result<(), DepacketizeError> {
        let payload = &packet.payload;
        let headers_bits = match payload.get(..2) {
            Some(&[high, low]) => usize::from(u16::from_be_bytes([high, low])),
            _ => {
                return Err(DepacketizeError::Truncated {
                    what: "AU-headers-length",
                    needed: 2,
                    left: payload.len(),
                })
            }
        };
        let headers_end = 2 + headers_bits.div_ceil(8);
        let headers = payload
            .get(2..headers_end)
            .ok_or(DepacketizeError::Truncated {
                what: "AU headers",
                needed: headers_end - 2,
                left: payload.len() - 2,
            })?;
        let data = payload.slice(headers_end..);

        // The AU sizes; each header is at least one bit, so there are at most 2^16.
        let mut sizes = Vec::new();
        let mut reader = BitReader::new(headers);
        let mut read_bits = 0;
        while read_bits < headers_bits {
            let index_length = if sizes.is_empty() {
                self.index_length
            } else {
                self.index_delta_length
            };
            let (Some(size), Some(index)) =
                (reader.bits(self.size_length), reader.bits(index_length))
            else {
                return Err(DepacketizeError::Malformed {
                    what: "AU headers",
                    reason: format!("{headers_bits} bits do not divide into AU headers"),
                });
            };
            if index != 0 {
                return Err(DepacketizeError::Malformed {
                    what: "AU header",
                    reason: format!("AU index (delta) {index}: interleaved AAC is unsupported"),
                });
            }
            read_bits += (self.size_length + index_length) as usize;
            sizes.push(size as usize);
        }

        match sizes.as_slice() {
            [] => Err(DepacketizeError::Malformed {
                what: "AAC RTP payload",
                reason: "no AU headers".to_owned(),
            }),
            [size] if *size > data.len() => self.read_fragment(packet, *size, &data, out),
            sizes => {
                if self.fragment.is_some() {
                    // An AU left unfinished: its last fragments were lost.
                    self.drop_fragment();
                }
                let total: usize = sizes.iter().sum();
                if total > data.len() {
                    return Err(DepacketizeError::Truncated {
                        what: "AAC access units",
                        needed: total,
                        left: data.len(),
                    });
                }
                let mut offset = 0;
                let mut timestamp = packet.timestamp;
                for &size in sizes {
                    self.emit(timestamp, data.slice(offset..offset + size), out);
                    offset += size;
                    timestamp = timestamp.wrapping_add(self.samples_per_frame);
                }
                Ok(())
            }
        }
    }

    /// One fragment of an AU of `size` bytes, larger than the packet.
    fn read_fragment(
        &mut self,
        packet: &RtpPacket,
        size: usize,
        data: &Bytes,
        out: &mut Vec<TrackFrame>,
    ) -> Result<(), DepacketizeError> {
        let continues = matches!(&self.fragment,
            Some(f) if f.timestamp == packet.timestamp && f.size == size);
        if !continues {
            self.drop_fragment();
            self.fragment = Some(Fragment {
                timestamp: packet.timestamp,
                size,
                data: BytesMut::with_capacity(size),
            });
        }
        let Some(fragment) = self.fragment.as_mut() else {
            return Ok(());
        };
        if fragment.data.len() + data.len() > size {
            return Err(DepacketizeError::Malformed {
                what: "AAC fragment",
                reason: format!(
                    "{} bytes for an AU of {size}",
                    fragment.data.len() + data.len()
                ),
            });
        }
        fragment.data.extend_from_slice(data);
        if fragment.data.len() == size {
            if let Some(fragment) = self.fragment.take() {
                self.emit(fragment.timestamp, fragment.data.freeze(), out);
            }
        } else if packet.marker {
            // The last fragment came, short of the AU's size.
            let got = fragment.data.len();
            self.drop_fragment();
            return Err(DepacketizeError::Malformed {
                what: "AAC fragment",
                reason: format!("AU of {size} bytes ended after {got}"),
            });
        }
        Ok(())
    }

    fn emit(&mut self, timestamp: u32, access_unit: Bytes, out: &mut Vec<TrackFrame>) {
        if access_unit.is_empty() {
            return;
        }
        if !self.config_sent {
            self.config_sent = true;
            out.push(TrackFrame {
                rtp_timestamp: timestamp,
                body: tags::aac_sequence_header(&self.audio_specific_config),
                frame: Frame::SequenceHeader,
            });
        }
        out.push(TrackFrame {
            rtp_timestamp: timestamp,
            body: tags::aac_frame(&access_unit),
            frame: Frame::Coded,
        });
    }
}

/// RTP timestamp units per AU, from the AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1):
/// 960 when its GASpecificConfig's frameLengthFlag says so, else 1024; for HE-AAC
/// signalled explicitly (object type 5 or 29) the AU decodes to 2048 samples at the
/// extension rate, so 2048 when the RTP clock runs at that rate. `None` when the config
/// is too short to say.
pub(super) fn samples_per_frame(config: &[u8], clock_rate: u32) -> Option<u32> {
    let mut r = BitReader::new(config);
    let mut object_type = r.bits(5)?;
    if object_type == 31 {
        object_type = 32 + r.bits(6)?;
    }
    let frequency_index = r.bits(4)?;
    let frequency = if frequency_index == 15 {
        r.bits(24)?
    } else {
        SAMPLING_FREQUENCIES
            .get(frequency_index as usize)
            .copied()
            .unwrap_or(0)
    };
    let _channel_configuration = r.bits(4)?;
    if object_type == 5 || object_type == 29 {
        return Some(if clock_rate == frequency { 1024 } else { 2048 });
    }
    // Object types with a GASpecificConfig (AAC Main, LC, SSR, LTP, scalable, ER ...).
    if matches!(object_type, 1..=4 | 6 | 7 | 17 | 19..=23) && r.bit()? == 1 {
        return Some(960);
    }
    Some(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::depacketize::Track;
    use longhaul_rtmp::media::{inspect_audio, Codec};

    const FMTP: &str = "profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=119056E500";

    fn packet(timestamp: u32, marker: bool, payload: &[u8]) -> RtpPacket {
        RtpPacket {
            marker,
            payload_type: 96,
            sequence: 0,
            timestamp,
            ssrc: 1,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    /// An AAC-hbr payload of whole AUs.
    fn payload(access_units: &[&[u8]]) -> Vec<u8> {
        let mut p = ((access_units.len() * 16) as u16).to_be_bytes().to_vec();
        for au in access_units {
            p.extend_from_slice(&((au.len() as u16) << 3).to_be_bytes());
        }
        for au in access_units {
            p.extend_from_slice(au);
        }
        p
    }

    fn track() -> Track {
        Track::new("MPEG4-GENERIC", 48_000, Some(2), Some(FMTP)).unwrap()
    }

    #[test]
    fn two_access_units_in_a_packet() {
        let mut track = track();
        let mut out = Vec::new();
        track
            .push(
                &packet(1000, true, &payload(&[&[1, 2, 3], &[4, 5]])),
                &mut out,
            )
            .unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(&out[0].body[..], &[0xaf, 0, 0x11, 0x90, 0x56, 0xe5, 0x00]);
        assert_eq!(out[0].frame, Frame::SequenceHeader);
        assert_eq!(&out[1].body[..], &[0xaf, 1, 1, 2, 3]);
        assert_eq!(&out[2].body[..], &[0xaf, 1, 4, 5]);
        assert_eq!((out[1].rtp_timestamp, out[2].rtp_timestamp), (1000, 2024));
        for f in &out {
            let info = inspect_audio(&f.body).unwrap();
            assert_eq!((info.codec, info.frame), (Codec::Legacy(10), f.frame));
        }
        // The sequence header only once.
        out.clear();
        track
            .push(&packet(3048, true, &payload(&[&[6]])), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn fragmented_access_unit_is_reassembled() {
        let mut track = track();
        let mut out = Vec::new();
        let header = [0x00, 0x10, 0x00, 5 << 3]; // one AU header: 5 bytes
        for (part, marker) in [(&[1u8, 2][..], false), (&[3, 4], false), (&[5], true)] {
            let mut p = header.to_vec();
            p.extend_from_slice(part);
            track.push(&packet(7, marker, &p), &mut out).unwrap();
        }
        assert_eq!(out.len(), 2);
        assert_eq!(&out[1].body[..], &[0xaf, 1, 1, 2, 3, 4, 5]);
        assert_eq!(out[1].rtp_timestamp, 7);
    }

    #[test]
    fn loss_drops_a_partial_access_unit_and_its_remains() {
        let mut track = track();
        let mut out = Vec::new();
        let header = [0x00, 0x10, 0x00, 5 << 3];
        let mut p = header.to_vec();
        p.extend_from_slice(&[1, 2]);
        track.push(&packet(7, false, &p), &mut out).unwrap();
        track.lost();
        // The rest of the same AU is skipped (its start is gone).
        track.push(&packet(7, true, &p), &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(track.dropped_frames(), 1);
        track
            .push(&packet(2055, true, &payload(&[&[9]])), &mut out)
            .unwrap();
        assert_eq!(out.len(), 2);
        // A fragment that ends short of its size is an error.
        out.clear();
        track.push(&packet(3079, false, &p), &mut out).unwrap();
        let err = track
            .push(&packet(3079, true, &p[..5]), &mut out)
            .unwrap_err();
        assert!(err.to_string().contains("ended after 3"), "{err}");
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let mut track = track();
        let mut out = Vec::new();
        let mut err = |p: &[u8]| track.push(&packet(0, true, p), &mut out).unwrap_err();
        assert!(matches!(err(&[0]), DepacketizeError::Truncated { .. }));
        assert!(matches!(
            err(&[0, 16, 0]),
            DepacketizeError::Truncated { .. }
        ));
        assert!(matches!(err(&[0, 0]), DepacketizeError::Malformed { .. }));
        // 8 bits of headers: not a whole 16-bit header.
        assert!(matches!(
            err(&[0, 8, 0]),
            DepacketizeError::Malformed { .. }
        ));
        // Two AUs of 3 bytes, 4 bytes of data.
        assert!(matches!(
            err(&[0, 32, 0, 24, 0, 24, 1, 2, 3, 4]),
            DepacketizeError::Truncated { .. }
        ));
        // A non-zero AU index: interleaving.
        assert!(err(&[0, 16, 0, 0x09, 1])
            .to_string()
            .contains("interleaved AAC is unsupported"));
        assert!(out.is_empty());
    }

    #[test]
    fn config_and_mode_are_checked() {
        let new = |fmtp| Track::new("MPEG4-GENERIC", 48_000, None, Some(fmtp));
        assert!(new("mode=aac-HBR;config=1190").is_ok());
        assert_eq!(
            new("mode=AAC-hbr").unwrap_err(),
            DepacketizeError::AacConfigMissing
        );
        assert!(new("mode=AAC-hbr;config=zz").is_err());
        assert!(new("mode=AAC-hbr;config=1").is_err());
        assert!(matches!(
            new("mode=AAC-lbr;config=1190"),
            Err(DepacketizeError::UnsupportedAacMode(_))
        ));
        assert!(new("mode=AAC-hbr;config=1190;sizelength=40").is_err());
        assert!(new("mode=AAC-hbr;config=1190;ctsdeltalength=3").is_err());
    }

    #[test]
    fn frame_length_from_the_config() {
        // AAC-LC 48 kHz stereo; with frameLengthFlag; HE-AAC (5) at 24 kHz core.
        assert_eq!(samples_per_frame(&[0x11, 0x90], 48_000), Some(1024));
        assert_eq!(samples_per_frame(&[0x11, 0x94], 48_000), Some(960));
        assert_eq!(samples_per_frame(&[0x2b, 0x12, 0x08], 48_000), Some(2048));
        assert_eq!(samples_per_frame(&[0x11], 48_000), None);
    }

    #[test]
    fn never_panics_on_any_short_payload() {
        let mut track = track();
        let mut out = Vec::new();
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for len in 0..7 {
                    let p = [a, b, b, a, a, b, 1];
                    let _ = track.push(&packet(u32::from(a), b & 1 == 1, &p[..len]), &mut out);
                }
            }
        }
    }
}
