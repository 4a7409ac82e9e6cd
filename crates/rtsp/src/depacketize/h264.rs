//! H.264 over RTP (RFC 6184) to legacy FLV AVC tags.
//!
//! Packetization modes 0 and 1: single NAL unit packets, STAP-A (type 24) and FU-A
//! (type 28). Mode 2's interleaved types (STAP-B, MTAP16, MTAP24, FU-B) need decoding
//! order numbers and reordering across access units; no camera or ffmpeg sends them
//! unasked, and they are refused by name.
//!
//! The AVC sequence header (AVCDecoderConfigurationRecord, ISO/IEC 14496-15 5.3.3.1)
//! comes from `sprop-parameter-sets` when the SDP has them, else from the SPS and PPS
//! in the stream, and is sent again whenever the stream's change. Frames carry their
//! other NAL units, 4-byte length-prefixed: SPS and PPS stay in the sequence header,
//! access unit delimiters (type 9) are dropped (FLV frames are delimited already),
//! SEI is kept. A frame with an IDR slice (type 5) is a keyframe; nothing is emitted
//! before the first one, nor after a loss until the next one.

use super::fmtp::{base64, FormatParameters};
use super::nal::{rbsp, split_aggregate, AccessUnit, Assembler, BitReader};
use super::{tags, DepacketizeError, TrackFrame};
use crate::rtp::RtpPacket;
use bytes::{BufMut, Bytes, BytesMut};
use longhaul_rtmp::media::Frame;

const NAL_TYPE_IDR: u8 = 5;
const NAL_TYPE_SPS: u8 = 7;
const NAL_TYPE_PPS: u8 = 8;
const NAL_TYPE_ACCESS_UNIT_DELIMITER: u8 = 9;
const STAP_A: u8 = 24;
const STAP_B: u8 = 25;
const MTAP16: u8 = 26;
const MTAP24: u8 = 27;
const FU_A: u8 = 28;
const FU_B: u8 = 29;

/// Distinct PPS kept for the sequence header. H.264 allows 256 PPS ids, encoders use
/// one or two; the record's count is a byte, and 32 bounds what a sender can make us
/// hold.
const MAX_PICTURE_PARAMETER_SETS: usize = 32;

/// Profiles whose AVCDecoderConfigurationRecord carries chroma format and bit depths
/// (ISO/IEC 14496-15 5.3.3.1.2: High, High 10, High 4:2:2, High 4:4:4).
const PROFILES_WITH_RECORD_EXTENSION: [u8; 4] = [100, 110, 122, 144];

/// Profiles whose SPS has chroma_format_idc and bit depths (H.264 7.3.2.1.1).
const PROFILES_WITH_CHROMA_FORMAT: [u8; 13] =
    [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

/// The H.264 depacketiser of one track.
#[derive(Debug)]
pub struct H264Depacketizer {
    assembler: Assembler,
    sps: Option<Bytes>,
    pps: Vec<Bytes>,
    /// The AVCDecoderConfigurationRecord of `sps` and `pps`, when both are known.
    record: Option<Bytes>,
    /// Whether `record` has been sent since it last changed.
    record_sent: bool,
}

impl H264Depacketizer {
    pub(super) fn new(parameters: &FormatParameters<'_>) -> Result<Self, DepacketizeError> {
        match parameters.number("packetization-mode")? {
            None | Some(0 | 1) => {}
            Some(mode) => return Err(DepacketizeError::UnsupportedPacketizationMode(mode)),
        }
        let mut depacketizer = Self {
            assembler: Assembler::new(),
            sps: None,
            pps: Vec::new(),
            record: None,
            record_sent: false,
        };
        if let Some(sets) = parameters.get("sprop-parameter-sets") {
            let mut sps = None;
            let mut pps = Vec::new();
            for set in sets.split(',').filter(|s| !s.trim().is_empty()) {
                let nal_unit = base64(set).ok_or_else(|| DepacketizeError::BadParameter {
                    name: "sprop-parameter-sets",
                    reason: format!("{set:?} is not base64"),
                })?;
                match nal_unit.first().map(|b| b & 0x1f) {
                    Some(NAL_TYPE_SPS) => sps = Some(Bytes::from(nal_unit)),
                    Some(NAL_TYPE_PPS) => pps.push(Bytes::from(nal_unit)),
                    _ => {}
                }
            }
            depacketizer.update_parameter_sets(sps, pps);
        }
        Ok(depacketizer)
    }

    pub(super) fn push(
        &mut self,
        packet: &RtpPacket,
        out: &mut Vec<TrackFrame>,
    ) -> Result<(), DepacketizeError> {
        let mut done = None;
        let read = self.assembler.begin_packet(packet, &mut done);
        if let Some(access_unit) = done {
            self.emit(access_unit, out);
        }
        if !read {
            return Ok(());
        }
        let result = self.read_payload(packet.payload.clone());
        if let Some(access_unit) = self.assembler.end_packet(packet) {
            self.emit(access_unit, out);
        }
        result
    }

    pub(super) fn lost(&mut self) {
        self.assembler.lost();
    }

    /// The stream ended: the access unit in progress, if whole.
    pub(super) fn flush(&mut self, out: &mut Vec<TrackFrame>) {
        if let Some(access_unit) = self.assembler.flush() {
            self.emit(access_unit, out);
        }
    }

    pub(super) fn dropped_frames(&self) -> u64 {
        self.assembler.dropped_frames
    }

    fn read_payload(&mut self, payload: Bytes) -> Result<(), DepacketizeError> {
        let Some(&first) = payload.first() else {
            return Err(self.assembler.damage(DepacketizeError::Malformed {
                what: "H.264 RTP payload",
                reason: "empty".to_owned(),
            }));
        };
        match first & 0x1f {
            1..=23 => self.assembler.push_nal_unit(payload),
            STAP_A => {
                let assembler = &mut self.assembler;
                split_aggregate(payload.slice(1..), "STAP-A", |nal_unit| {
                    assembler.push_nal_unit(nal_unit)
                })
                .map_err(|e| assembler.damage(e))
            }
            FU_A => {
                let Some(&fu_header) = payload.get(1) else {
                    return Err(self.assembler.damage(DepacketizeError::Truncated {
                        what: "FU-A header",
                        needed: 2,
                        left: payload.len(),
                    }));
                };
                let start = fu_header & 0x80 != 0;
                let end = fu_header & 0x40 != 0;
                let data = payload.get(2..).unwrap_or_default();
                if start {
                    // The NAL header: F and NRI of the FU indicator, type of the FU header.
                    let header = (first & 0xe0) | (fu_header & 0x1f);
                    self.assembler.start_fragment(&[header], data)?;
                    if end {
                        // Start and end together is forbidden (RFC 6184, 5.8) but whole.
                        self.assembler.continue_fragment(&[], true, "FU-A")?;
                    }
                    Ok(())
                } else {
                    self.assembler.continue_fragment(data, end, "FU-A")
                }
            }
            packet_type @ (STAP_B | MTAP16 | MTAP24 | FU_B) => {
                let name = match packet_type {
                    STAP_B => "STAP-B",
                    MTAP16 => "MTAP16",
                    MTAP24 => "MTAP24",
                    _ => "FU-B",
                };
                Err(self.assembler.damage(DepacketizeError::UnsupportedPacketType {
                    codec: "H.264",
                    name,
                    packet_type,
                    reason: "it belongs to packetization-mode 2 (interleaved), which is unsupported",
                }))
            }
            packet_type => Err(self
                .assembler
                .damage(DepacketizeError::UnsupportedPacketType {
                    codec: "H.264",
                    name: "NAL unit",
                    packet_type,
                    reason: "the type is reserved (RFC 6184, 5.2)",
                })),
        }
    }

    /// Turns a complete access unit into tags: the sequence header if it changed, then
    /// the frame, unless a keyframe or the configuration is still awaited.
    fn emit(&mut self, access_unit: AccessUnit, out: &mut Vec<TrackFrame>) {
        let AccessUnit {
            timestamp,
            nal_units,
            damaged,
        } = access_unit;
        let mut keyframe = false;
        let mut sps = None;
        let mut pps = Vec::new();
        let mut frame = Vec::with_capacity(nal_units.len());
        for nal_unit in nal_units {
            match nal_unit.first().map(|b| b & 0x1f) {
                Some(NAL_TYPE_SPS) => sps = Some(nal_unit),
                Some(NAL_TYPE_PPS)
                    if !pps.contains(&nal_unit) && pps.len() < MAX_PICTURE_PARAMETER_SETS =>
                {
                    pps.push(nal_unit);
                }
                // A repeated PPS, or one past the limit.
                Some(NAL_TYPE_PPS) => {}
                Some(NAL_TYPE_ACCESS_UNIT_DELIMITER) => {}
                Some(nal_type) => {
                    keyframe |= nal_type == NAL_TYPE_IDR;
                    frame.push(nal_unit);
                }
                None => {}
            }
        }
        self.update_parameter_sets(sps, pps);
        if frame.is_empty() || damaged {
            return;
        }
        if self.assembler.waiting_for_keyframe && !keyframe {
            self.assembler.count_dropped(timestamp);
            return;
        }
        let Some(record) = &self.record else {
            self.assembler.count_dropped(timestamp);
            return;
        };
        self.assembler.waiting_for_keyframe = false;
        if !self.record_sent {
            self.record_sent = true;
            out.push(TrackFrame {
                rtp_timestamp: timestamp,
                body: tags::avc_sequence_header(record),
                frame: Frame::SequenceHeader,
            });
        }
        out.push(TrackFrame {
            rtp_timestamp: timestamp,
            body: tags::avc_frame(keyframe, &frame),
            frame: if keyframe {
                Frame::Keyframe
            } else {
                Frame::Coded
            },
        });
    }

    /// Takes the SPS and PPS an access unit (or the SDP) brought; rebuilds the record
    /// when they change. An SPS too short to name its profile, or a set too long for
    /// the record's 16-bit lengths, is ignored.
    fn update_parameter_sets(&mut self, sps: Option<Bytes>, pps: Vec<Bytes>) {
        let fits = |set: &Bytes| set.len() <= usize::from(u16::MAX);
        let mut changed = false;
        if let Some(sps) = sps.filter(|s| s.len() >= 4 && fits(s)) {
            if self.sps.as_ref() != Some(&sps) {
                self.sps = Some(sps);
                changed = true;
            }
        }
        let pps: Vec<Bytes> = pps.into_iter().filter(fits).collect();
        if !pps.is_empty() && pps != self.pps {
            self.pps = pps;
            changed = true;
        }
        if changed {
            if let (Some(sps), false) = (&self.sps, self.pps.is_empty()) {
                self.record = Some(decoder_configuration_record(sps, &self.pps));
                self.record_sent = false;
            }
        }
    }
}

/// The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1) of one SPS (at least 4
/// bytes) and its PPS (each under 64 KiB), with 4-byte NAL unit lengths.
fn decoder_configuration_record(sps: &[u8], pps: &[Bytes]) -> Bytes {
    let (profile, compatibility, level) = match sps {
        [_, profile, compatibility, level, ..] => (*profile, *compatibility, *level),
        _ => (0, 0, 0),
    };
    let mut record = BytesMut::new();
    record.put_slice(&[1, profile, compatibility, level]);
    // reserved '111111' | lengthSizeMinusOne 3; reserved '111' | numOfSequenceParameterSets 1.
    record.put_slice(&[0xfc | 3, 0xe0 | 1]);
    record.put_u16(sps.len() as u16);
    record.put_slice(sps);
    record.put_u8(pps.len().min(MAX_PICTURE_PARAMETER_SETS) as u8);
    for set in pps.iter().take(MAX_PICTURE_PARAMETER_SETS) {
        record.put_u16(set.len() as u16);
        record.put_slice(set);
    }
    if PROFILES_WITH_RECORD_EXTENSION.contains(&profile) {
        let (chroma_format, luma_depth_minus8, chroma_depth_minus8) =
            chroma_format_and_bit_depths(sps).unwrap_or((1, 0, 0));
        record.put_u8(0xfc | (chroma_format & 0x03));
        record.put_u8(0xf8 | (luma_depth_minus8 & 0x07));
        record.put_u8(0xf8 | (chroma_depth_minus8 & 0x07));
        // numOfSequenceParameterSetExt.
        record.put_u8(0);
    }
    record.freeze()
}

/// chroma_format_idc, bit_depth_luma_minus8 and bit_depth_chroma_minus8 of an SPS
/// (H.264 7.3.2.1.1); 4:2:0 8-bit for the profiles that cannot say otherwise.
fn chroma_format_and_bit_depths(sps: &[u8]) -> Option<(u8, u8, u8)> {
    let rbsp = rbsp(sps);
    let mut r = BitReader::new(&rbsp);
    r.skip(8)?; // NAL header
    let profile = r.bits(8)? as u8;
    r.skip(16)?; // constraint flags, level_idc
    r.unsigned_exp_golomb()?; // seq_parameter_set_id
    if !PROFILES_WITH_CHROMA_FORMAT.contains(&profile) {
        return Some((1, 0, 0));
    }
    let chroma_format = r.unsigned_exp_golomb()?;
    if chroma_format == 3 {
        r.skip(1)?; // separate_colour_plane_flag
    }
    let luma = r.unsigned_exp_golomb()?;
    let chroma = r.unsigned_exp_golomb()?;
    Some((
        u8::try_from(chroma_format).ok()?,
        u8::try_from(luma).ok()?,
        u8::try_from(chroma).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::depacketize::{Track, MAX_FRAME_BYTES};
    use longhaul_rtmp::media::{inspect_video, Codec};

    // Baseline SPS/PPS of the crate brief's example fmtp (profile 66, level 30).
    const SPROP: &str = "packetization-mode=1; sprop-parameter-sets=Z0LAHtkAoD2wEQAAAwABAAADADwPFi5I,aMuMsg==; profile-level-id=42C01E";
    const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x0d, 0xac, 0xb2, 0x02, 0x83, 0xf6];
    const PPS: &[u8] = &[0x68, 0xeb, 0xc3, 0xcb, 0x22, 0xc0];
    const IDR: &[u8] = &[0x65, 0x88, 0x84, 0x00, 0x10];
    const SLICE: &[u8] = &[0x41, 0x9a, 0x24];

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

    fn stap_a(nal_units: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![0x18];
        for n in nal_units {
            p.extend_from_slice(&(n.len() as u16).to_be_bytes());
            p.extend_from_slice(n);
        }
        p
    }

    fn push(track: &mut Track, p: RtpPacket) -> Vec<TrackFrame> {
        let mut out = Vec::new();
        track.push(&p, &mut out).unwrap();
        out
    }

    fn frames(out: &[TrackFrame]) -> Vec<Frame> {
        out.iter().map(|f| f.frame).collect()
    }

    fn inband() -> Track {
        Track::new("H264", 90_000, None, Some("packetization-mode=1")).unwrap()
    }

    #[test]
    fn sprop_parameter_sets_make_the_sequence_header() {
        let mut track = Track::new("H264", 90_000, None, Some(SPROP)).unwrap();
        // An inter frame first: no keyframe yet, nothing out.
        assert!(push(&mut track, packet(0, true, SLICE)).is_empty());
        assert_eq!(track.dropped_frames(), 1);
        let out = push(&mut track, packet(3600, true, IDR));
        assert_eq!(frames(&out), [Frame::SequenceHeader, Frame::Keyframe]);
        let sps = base64("Z0LAHtkAoD2wEQAAAwABAAADADwPFi5I").unwrap();
        let record = &out[0].body[5..];
        assert_eq!(&record[..6], &[1, 0x42, 0xc0, 0x1e, 0xff, 0xe1]);
        assert_eq!(&record[8..8 + sps.len()], &sps[..]);
        assert_eq!(&record[8 + sps.len()..][..3], &[1, 0, 4]);
        assert_eq!(&record[11 + sps.len()..], &[0x68, 0xcb, 0x8c, 0xb2]);
        assert_eq!(out[1].rtp_timestamp, 3600);
        let info = inspect_video(&out[0].body).unwrap();
        assert_eq!(
            (info.codec, info.frame),
            (Codec::Legacy(7), Frame::SequenceHeader)
        );
        let out = push(&mut track, packet(7200, true, SLICE));
        assert_eq!(frames(&out), [Frame::Coded]);
        assert_eq!(
            &out[0].body[..],
            &[0x27, 1, 0, 0, 0, 0, 0, 0, 3, 0x41, 0x9a, 0x24]
        );
    }

    #[test]
    fn stap_a_with_in_band_parameter_sets() {
        let mut track = inband();
        // SPS, PPS, AUD and IDR in one STAP-A: a high-profile record with the extension.
        let out = push(
            &mut track,
            packet(10, true, &stap_a(&[&[0x09, 0xf0], SPS, PPS, IDR])),
        );
        assert_eq!(frames(&out), [Frame::SequenceHeader, Frame::Keyframe]);
        let record = &out[0].body[5..];
        assert_eq!(&record[..4], &[1, 0x64, 0x00, 0x0d]);
        // 4:2:0, 8-bit luma and chroma, no SPS extensions.
        assert_eq!(&record[record.len() - 4..], &[0xfd, 0xf8, 0xf8, 0]);
        // The frame: the IDR only (no AUD, no SPS/PPS).
        assert_eq!(&out[1].body[5..9], &[0, 0, 0, 5]);
        assert_eq!(&out[1].body[9..], IDR);
        // The same SPS/PPS again: no new header. A new PPS: a new one.
        let out = push(&mut track, packet(20, true, &stap_a(&[SPS, PPS, IDR])));
        assert_eq!(frames(&out), [Frame::Keyframe]);
        let out = push(
            &mut track,
            packet(30, true, &stap_a(&[SPS, &[0x68, 0xee], IDR])),
        );
        assert_eq!(frames(&out), [Frame::SequenceHeader, Frame::Keyframe]);
    }

    #[test]
    fn fu_a_start_middle_end() {
        let mut track = inband();
        push(&mut track, packet(0, false, &stap_a(&[SPS, PPS])));
        // IDR 0x65 split: FU indicator 0x7c (NRI 3, type 28), headers S=0x85, 0x05, E=0x45.
        assert!(push(&mut track, packet(0, false, &[0x7c, 0x85, 0x88, 0x84])).is_empty());
        assert!(push(&mut track, packet(0, false, &[0x7c, 0x05, 0x00])).is_empty());
        let out = push(&mut track, packet(0, true, &[0x7c, 0x45, 0x10]));
        assert_eq!(frames(&out), [Frame::SequenceHeader, Frame::Keyframe]);
        // NAL header rebuilt: F=0, NRI=3 (0x60), type 5 -> 0x65.
        assert_eq!(&out[1].body[9..], IDR);
    }

    #[test]
    fn fu_a_without_a_start_is_an_error_and_drops_the_frame() {
        let mut track = inband();
        push(&mut track, packet(0, true, &stap_a(&[SPS, PPS, IDR])));
        let mut out = Vec::new();
        let err = track
            .push(&packet(3600, false, &[0x5c, 0x01, 0xaa]), &mut out)
            .unwrap_err();
        assert_eq!(err.to_string(), "FU-A fragment without a start");
        track
            .push(&packet(3600, false, &[0x5c, 0x41, 0xbb]), &mut out)
            .ok();
        // The damaged frame is dropped and inter frames wait for the next IDR.
        assert!(push(&mut track, packet(7200, true, SLICE)).is_empty());
        assert_eq!(track.dropped_frames(), 2);
        assert_eq!(
            frames(&push(&mut track, packet(10800, true, IDR))),
            [Frame::Keyframe]
        );
    }

    #[test]
    fn timestamp_change_ends_an_access_unit_without_marker() {
        let mut track = inband();
        assert!(push(&mut track, packet(0, false, &stap_a(&[SPS, PPS, IDR]))).is_empty());
        let out = push(&mut track, packet(3600, false, SLICE));
        assert_eq!(frames(&out), [Frame::SequenceHeader, Frame::Keyframe]);
        assert_eq!(out[1].rtp_timestamp, 0);
        // Two slices of one picture, then the marker.
        let out = push(&mut track, packet(7200, false, SLICE));
        assert_eq!(out[0].rtp_timestamp, 3600);
        assert_eq!(out[0].body.len(), 5 + 4 + SLICE.len());
        let out = push(&mut track, packet(7200, true, SLICE));
        assert_eq!(out[0].rtp_timestamp, 7200);
        assert_eq!(out[0].body.len(), 5 + 2 * (4 + SLICE.len()));
    }

    #[test]
    fn after_a_loss_frames_wait_for_the_next_idr() {
        let mut track = inband();
        push(&mut track, packet(0, true, &stap_a(&[SPS, PPS, IDR])));
        track.lost();
        assert!(push(&mut track, packet(3600, true, SLICE)).is_empty());
        assert!(push(&mut track, packet(7200, true, SLICE)).is_empty());
        assert_eq!(track.dropped_frames(), 2);
        assert_eq!(
            frames(&push(&mut track, packet(10800, true, IDR))),
            [Frame::Keyframe]
        );
        // A loss in the middle of an IDR: its other slices are not a keyframe.
        push(&mut track, packet(14400, false, IDR));
        track.lost();
        assert!(push(&mut track, packet(14400, true, IDR)).is_empty());
        assert!(push(&mut track, packet(18000, true, SLICE)).is_empty());
        assert_eq!(
            frames(&push(&mut track, packet(21600, true, IDR))),
            [Frame::Keyframe]
        );
    }

    #[test]
    fn interleaved_and_reserved_types_are_refused() {
        let mut track = inband();
        let mut out = Vec::new();
        for (byte, name) in [
            (0x19, "STAP-B"),
            (0x1a, "MTAP16"),
            (0x1b, "MTAP24"),
            (0x1d, "FU-B"),
        ] {
            let err = track
                .push(&packet(0, true, &[byte, 0, 0]), &mut out)
                .unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
            assert!(err.to_string().contains("packetization-mode 2"), "{err}");
        }
        for byte in [0x00, 0x1e, 0x1f] {
            let err = track.push(&packet(0, true, &[byte]), &mut out).unwrap_err();
            assert!(err.to_string().contains("reserved"), "{err}");
        }
        assert!(out.is_empty());
    }

    #[test]
    fn truncated_payloads_are_errors() {
        let mut track = inband();
        let mut out = Vec::new();
        let mut err = |p: &[u8]| track.push(&packet(0, true, p), &mut out).unwrap_err();
        assert!(matches!(err(&[]), DepacketizeError::Malformed { .. }));
        assert!(matches!(err(&[0x7c]), DepacketizeError::Truncated { .. }));
        assert!(matches!(err(&[0x18]), DepacketizeError::Malformed { .. }));
        assert!(matches!(
            err(&[0x18, 0]),
            DepacketizeError::Truncated { .. }
        ));
        assert_eq!(
            err(&[0x18, 0, 9, 0x67]).to_string(),
            "STAP-A needs 9 bytes, the packet has 1 left"
        );
        assert!(matches!(
            err(&[0x18, 0, 0]),
            DepacketizeError::Malformed { .. }
        ));
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut track = inband();
        push(&mut track, packet(0, false, &stap_a(&[SPS, PPS])));
        let mut out = Vec::new();
        let mut chunk = vec![0x7c, 0x85];
        chunk.extend(std::iter::repeat_n(0xaa, 60_000));
        track.push(&packet(0, false, &chunk), &mut out).unwrap();
        chunk[1] = 0x05;
        let mut result = Ok(());
        for _ in 0..MAX_FRAME_BYTES / 60_000 + 1 {
            result = track.push(&packet(0, false, &chunk), &mut out);
            if result.is_err() {
                break;
            }
        }
        let err = result.unwrap_err();
        assert!(
            err.to_string().contains("over the 4194304-byte limit"),
            "{err}"
        );
        assert!(out.is_empty());
        // The rest of that frame is dropped (its SPS and PPS are kept), the next IDR
        // is whole.
        track
            .push(&packet(0, true, &[0x7c, 0x45, 1]), &mut out)
            .ok();
        assert_eq!(
            frames(&push(&mut track, packet(3600, true, IDR))),
            [Frame::SequenceHeader, Frame::Keyframe]
        );
    }

    #[test]
    fn never_panics_on_any_short_payload() {
        let mut track = Track::new("H264", 90_000, None, Some(SPROP)).unwrap();
        let mut out = Vec::new();
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for len in 1..6 {
                    let p = [a, b, a, b, b, a];
                    let _ = track.push(&packet(u32::from(b), b & 1 == 1, &p[..len]), &mut out);
                }
            }
        }
    }
}
