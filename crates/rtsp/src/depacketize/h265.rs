//! H.265 over RTP (RFC 7798) to Enhanced RTMP `hvc1` tags.
//!
//! Single NAL unit packets, aggregation packets (AP, type 48) and fragmentation units
//! (FU, type 49), without DONL fields: those are only sent when `sprop-max-don-diff` is
//! above 0 (RFC 7798, 4.4.1), for interleaved decoding order, which no camera or
//! ffmpeg does unasked; such a track is refused. PACI (type 50) is refused too.
//!
//! HEVC has no legacy FLV codec id (CodecID 12 is a non-standard extension), so frames
//! go in Enhanced RTMP tags: SequenceStart with the HEVCDecoderConfigurationRecord
//! (ISO/IEC 14496-15 8.3.3.1), built from `sprop-vps`/`sprop-sps`/`sprop-pps` or the
//! parameter sets in band (and sent again when those change), then CodedFramesX.
//! The record's profile, tier, level and constraint flags are the SPS's own
//! (profile_tier_level, H.265 7.3.3), its chroma format and bit depths too.
//! Keyframes are access units with an IRAP picture (NAL types 16..=23: BLA, IDR, CRA).

use super::fmtp::{base64, FormatParameters};
use super::nal::{rbsp, split_aggregate, AccessUnit, Assembler, BitReader};
use super::{tags, DepacketizeError, TrackFrame};
use crate::rtp::RtpPacket;
use bytes::{BufMut, Bytes, BytesMut};
use longhaul_rtmp::media::Frame;

const NAL_TYPE_VPS: u8 = 32;
const NAL_TYPE_SPS: u8 = 33;
const NAL_TYPE_PPS: u8 = 34;
const NAL_TYPE_ACCESS_UNIT_DELIMITER: u8 = 35;
const AGGREGATION_PACKET: u8 = 48;
const FRAGMENTATION_UNIT: u8 = 49;
const PACI: u8 = 50;

/// Parameter sets of one type kept for the sequence header: encoders send one VPS, one
/// SPS and one PPS; 16 bounds what a sender can make us hold.
const MAX_PARAMETER_SETS: usize = 16;

/// The H.265 NAL unit type, from the first byte of its 2-byte header.
fn nal_type(first: u8) -> u8 {
    (first >> 1) & 0x3f
}

/// The H.265 depacketiser of one track.
#[derive(Debug)]
pub struct H265Depacketizer {
    assembler: Assembler,
    /// VPS, SPS and PPS, in that order.
    parameter_sets: [Vec<Bytes>; 3],
    record: Option<Bytes>,
    record_sent: bool,
}

impl H265Depacketizer {
    pub(super) fn new(parameters: &FormatParameters<'_>) -> Result<Self, DepacketizeError> {
        if let Some(difference) = parameters.number("sprop-max-don-diff")? {
            if difference > 0 {
                return Err(DepacketizeError::DonlUnsupported(difference));
            }
        }
        let mut depacketizer = Self {
            assembler: Assembler::new(),
            parameter_sets: Default::default(),
            record: None,
            record_sent: false,
        };
        let mut sets: [Vec<Bytes>; 3] = Default::default();
        for (slot, name) in ["sprop-vps", "sprop-sps", "sprop-pps"]
            .into_iter()
            .enumerate()
        {
            for set in parameters
                .get(name)
                .unwrap_or("")
                .split(',')
                .filter(|s| !s.trim().is_empty())
            {
                let nal_unit = base64(set).ok_or_else(|| DepacketizeError::BadParameter {
                    name: "sprop-vps/sps/pps",
                    reason: format!("{set:?} is not base64"),
                })?;
                if let Some(list) = sets.get_mut(slot) {
                    list.push(Bytes::from(nal_unit));
                }
            }
        }
        depacketizer.update_parameter_sets(sets);
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
        let (first, second) = match payload.get(..2) {
            Some(&[first, second]) => (first, second),
            _ => {
                return Err(self.assembler.damage(DepacketizeError::Truncated {
                    what: "H.265 payload header",
                    needed: 2,
                    left: payload.len(),
                }))
            }
        };
        match nal_type(first) {
            0..=47 => self.assembler.push_nal_unit(payload),
            AGGREGATION_PACKET => {
                let assembler = &mut self.assembler;
                split_aggregate(payload.slice(2..), "AP", |nal_unit| {
                    assembler.push_nal_unit(nal_unit)
                })
                .map_err(|e| assembler.damage(e))
            }
            FRAGMENTATION_UNIT => {
                let Some(&fu_header) = payload.get(2) else {
                    return Err(self.assembler.damage(DepacketizeError::Truncated {
                        what: "FU header",
                        needed: 3,
                        left: payload.len(),
                    }));
                };
                let start = fu_header & 0x80 != 0;
                let end = fu_header & 0x40 != 0;
                let data = payload.get(3..).unwrap_or_default();
                if start {
                    // The payload header with the FU header's type (RFC 7798, 4.4.3).
                    let header = [(first & 0x81) | ((fu_header & 0x3f) << 1), second];
                    self.assembler.start_fragment(&header, data)?;
                    if end {
                        // Start and end together is forbidden (RFC 7798, 4.4.3) but whole.
                        self.assembler.continue_fragment(&[], true, "FU")?;
                    }
                    Ok(())
                } else {
                    self.assembler.continue_fragment(data, end, "FU")
                }
            }
            PACI => Err(self
                .assembler
                .damage(DepacketizeError::UnsupportedPacketType {
                    codec: "H.265",
                    name: "PACI",
                    packet_type: PACI,
                    reason: "payload content information packets are not supported",
                })),
            packet_type => Err(self
                .assembler
                .damage(DepacketizeError::UnsupportedPacketType {
                    codec: "H.265",
                    name: "NAL unit",
                    packet_type,
                    reason: "the type is unspecified (RFC 7798, 4.4)",
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
        let mut sets: [Vec<Bytes>; 3] = Default::default();
        let mut frame = Vec::with_capacity(nal_units.len());
        for nal_unit in nal_units {
            let Some(&first) = nal_unit.first() else {
                continue;
            };
            match nal_type(first) {
                nal_type @ NAL_TYPE_VPS..=NAL_TYPE_PPS => {
                    let slot = usize::from(nal_type - NAL_TYPE_VPS);
                    if let Some(list) = sets.get_mut(slot) {
                        if !list.contains(&nal_unit) && list.len() < MAX_PARAMETER_SETS {
                            list.push(nal_unit);
                        }
                    }
                }
                NAL_TYPE_ACCESS_UNIT_DELIMITER => {}
                nal_type => {
                    keyframe |= (16..=23).contains(&nal_type);
                    frame.push(nal_unit);
                }
            }
        }
        self.update_parameter_sets(sets);
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
                body: tags::hevc_sequence_start(record),
                frame: Frame::SequenceHeader,
            });
        }
        out.push(TrackFrame {
            rtp_timestamp: timestamp,
            body: tags::hevc_frame(keyframe, &frame),
            frame: if keyframe {
                Frame::Keyframe
            } else {
                Frame::Coded
            },
        });
    }

    /// Takes the VPS, SPS and PPS an access unit (or the SDP) brought: each non-empty
    /// list replaces the one held. Rebuilds the record when they change and all three
    /// are known with an SPS that parses; a set too long for the record's 16-bit
    /// lengths is ignored.
    fn update_parameter_sets(&mut self, sets: [Vec<Bytes>; 3]) {
        let mut changed = false;
        for (held, new) in self.parameter_sets.iter_mut().zip(sets) {
            let new: Vec<Bytes> = new
                .into_iter()
                .filter(|s| s.len() <= usize::from(u16::MAX))
                .collect();
            if !new.is_empty() && new != *held {
                *held = new;
                changed = true;
            }
        }
        if changed {
            if let Some(record) = decoder_configuration_record(&self.parameter_sets) {
                self.record = Some(record);
                self.record_sent = false;
            }
        }
    }
}

/// What the record takes from the SPS.
#[derive(Debug, PartialEq, Eq)]
struct SpsSummary {
    /// general_profile_space, general_tier_flag, general_profile_idc (one byte), the 32
    /// compatibility flags, the 48 constraint indicator flags, general_level_idc: the
    /// 12 bytes of the general profile_tier_level, as the record has them.
    general_profile_tier_level: [u8; 12],
    max_sub_layers: u8,
    temporal_id_nesting: bool,
    chroma_format: u8,
    luma_bit_depth_minus8: u8,
    chroma_bit_depth_minus8: u8,
}

/// Reads an SPS NAL unit (H.265 7.3.2.2.1) up to its bit depths. The general
/// profile_tier_level is required; if what follows does not parse (it needs the
/// sub-layer fields skipped properly), 4:2:0 8-bit is assumed, the common case.
fn parse_sps(sps: &[u8]) -> Option<SpsSummary> {
    let rbsp = rbsp(sps);
    // 2-byte NAL header, then vps_id (4), max_sub_layers_minus1 (3), nesting (1).
    let layers_byte = *rbsp.get(2)?;
    let general_profile_tier_level: [u8; 12] = rbsp.get(3..15)?.try_into().ok()?;
    let max_sub_layers_minus1 = (layers_byte >> 1) & 0x07;
    let temporal_id_nesting = layers_byte & 1 == 1;
    let (chroma_format, luma_bit_depth_minus8, chroma_bit_depth_minus8) =
        chroma_and_bit_depths(&rbsp, max_sub_layers_minus1).unwrap_or((1, 0, 0));
    Some(SpsSummary {
        general_profile_tier_level,
        max_sub_layers: max_sub_layers_minus1 + 1,
        temporal_id_nesting,
        chroma_format,
        luma_bit_depth_minus8,
        chroma_bit_depth_minus8,
    })
}

fn chroma_and_bit_depths(rbsp: &[u8], max_sub_layers_minus1: u8) -> Option<(u8, u8, u8)> {
    let mut r = BitReader::new(rbsp);
    r.skip(15 * 8)?; // header, layers byte, general profile_tier_level
    let mut profile_present = [false; 8];
    let mut level_present = [false; 8];
    for i in 0..usize::from(max_sub_layers_minus1) {
        *profile_present.get_mut(i)? = r.bit()? == 1;
        *level_present.get_mut(i)? = r.bit()? == 1;
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.skip(2)?; // reserved_zero_2bits
        }
    }
    for i in 0..usize::from(max_sub_layers_minus1) {
        if *profile_present.get(i)? {
            r.skip(88)?;
        }
        if *level_present.get(i)? {
            r.skip(8)?;
        }
    }
    r.unsigned_exp_golomb()?; // sps_seq_parameter_set_id
    let chroma_format = r.unsigned_exp_golomb()?;
    if chroma_format == 3 {
        r.skip(1)?; // separate_colour_plane_flag
    }
    r.unsigned_exp_golomb()?; // pic_width_in_luma_samples
    r.unsigned_exp_golomb()?; // pic_height_in_luma_samples
    if r.bit()? == 1 {
        // conformance window offsets
        for _ in 0..4 {
            r.unsigned_exp_golomb()?;
        }
    }
    let luma = r.unsigned_exp_golomb()?;
    let chroma = r.unsigned_exp_golomb()?;
    Some((
        u8::try_from(chroma_format).ok()?,
        u8::try_from(luma).ok()?,
        u8::try_from(chroma).ok()?,
    ))
}

/// The HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1) of VPS, SPS and PPS
/// lists (each set under 64 KiB), with 4-byte NAL unit lengths; `None` until all three
/// are known and the first SPS parses.
fn decoder_configuration_record(parameter_sets: &[Vec<Bytes>; 3]) -> Option<Bytes> {
    if parameter_sets.iter().any(Vec::is_empty) {
        return None;
    }
    let sps = parse_sps(parameter_sets[1].first()?)?;
    let mut record = BytesMut::new();
    record.put_u8(1); // configurationVersion
    record.put_slice(&sps.general_profile_tier_level);
    // reserved '1111' | min_spatial_segmentation_idc 0 (unknown: no VUI parsed).
    record.put_u16(0xf000);
    // reserved '111111' | parallelismType 0 (unknown).
    record.put_u8(0xfc);
    record.put_u8(0xfc | (sps.chroma_format & 0x03));
    record.put_u8(0xf8 | (sps.luma_bit_depth_minus8 & 0x07));
    record.put_u8(0xf8 | (sps.chroma_bit_depth_minus8 & 0x07));
    record.put_u16(0); // avgFrameRate: unspecified
                       // constantFrameRate 0 | numTemporalLayers | temporalIdNested | lengthSizeMinusOne 3.
    record
        .put_u8(((sps.max_sub_layers & 0x07) << 3) | (u8::from(sps.temporal_id_nesting) << 2) | 3);
    record.put_u8(3); // numOfArrays: VPS, SPS, PPS
    for (nal_type, sets) in [NAL_TYPE_VPS, NAL_TYPE_SPS, NAL_TYPE_PPS]
        .into_iter()
        .zip(parameter_sets)
    {
        // array_completeness 1: all sets of the type are here, none in the frames.
        record.put_u8(0x80 | nal_type);
        record.put_u16(sets.len() as u16);
        for set in sets {
            record.put_u16(set.len() as u16);
            record.put_slice(set);
        }
    }
    Some(record.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::depacketize::Track;
    use longhaul_rtmp::media::{inspect_video, Codec};

    // The parameter sets of ffmpeg's libx265 at 320x240 (tests/fixtures/h265-sprop.sdp).
    const FMTP: &str = "sprop-vps=QAEMAf//AWAAAAMAkAAAAwAAAwA8koCQ; sprop-sps=QgEBAWAAAAMAkAAAAwAAAwA8oAoIDxZZKkkyvAWgIAAAAwAgAAADAyE=; sprop-pps=RAHBcrRiQA==";
    const IDR: &[u8] = &[0x28, 0x01, 0xaf, 0x1d, 0x80];
    const TRAIL: &[u8] = &[0x02, 0x01, 0xd0, 0x2f];

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

    fn push(track: &mut Track, p: RtpPacket) -> Vec<TrackFrame> {
        let mut out = Vec::new();
        track.push(&p, &mut out).unwrap();
        out
    }

    fn frames(out: &[TrackFrame]) -> Vec<Frame> {
        out.iter().map(|f| f.frame).collect()
    }

    fn sprop_sets() -> Vec<Vec<u8>> {
        [
            "QAEMAf//AWAAAAMAkAAAAwAAAwA8koCQ",
            "QgEBAWAAAAMAkAAAAwAAAwA8oAoIDxZZKkkyvAWgIAAAAwAgAAADAyE=",
            "RAHBcrRiQA==",
        ]
        .map(|s| base64(s).unwrap())
        .to_vec()
    }

    #[test]
    fn record_from_the_sprop_parameter_sets() {
        let mut track = Track::new("H265", 90_000, None, Some(FMTP)).unwrap();
        assert!(push(&mut track, packet(0, true, TRAIL)).is_empty());
        let out = push(&mut track, packet(3600, true, IDR));
        assert_eq!(frames(&out), [Frame::SequenceHeader, Frame::Keyframe]);
        let hvc1 = Codec::FourCc(*b"hvc1");
        for f in &out {
            let info = inspect_video(&f.body).unwrap();
            assert_eq!((info.codec, info.frame), (hvc1, f.frame));
        }
        let record = &out[0].body[5..];
        // Main profile (1), compatibility Main and Main 10 (0x60000000), progressive and
        // frame-only constraint flags (0x90), level 60 (2.0).
        assert_eq!(
            &record[..13],
            &[1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 60]
        );
        // min_spatial_segmentation, parallelism, 4:2:0, 8-bit, 8-bit, avgFrameRate,
        // 1 temporal layer nested, 4-byte lengths, 3 arrays.
        assert_eq!(
            &record[13..23],
            &[0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0, 0x0f, 3]
        );
        let mut rest = &record[23..];
        for (nal_type, set) in [32u8, 33, 34].into_iter().zip(sprop_sets()) {
            assert_eq!(&rest[..3], &[0x80 | nal_type, 0, 1]);
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            assert_eq!(&rest[5..5 + len], &set[..]);
            rest = &rest[5 + len..];
        }
        assert!(rest.is_empty());
        assert_eq!(
            &out[1].body[..9],
            &[0x93, b'h', b'v', b'c', b'1', 0, 0, 0, 5]
        );
        let out = push(&mut track, packet(7200, true, TRAIL));
        assert_eq!(&out[0].body[..5], &[0xa3, b'h', b'v', b'c', b'1']);
    }

    #[test]
    fn aggregation_packet_and_fragmentation_units() {
        let mut track = Track::new("H265", 90_000, None, None).unwrap();
        // AP (type 48: 0x60 0x01) of VPS, SPS, PPS, and an AUD to be dropped.
        let mut ap = vec![0x60, 0x01];
        for set in sprop_sets().iter().chain([&vec![0x46, 0x01, 0x10]]) {
            ap.extend_from_slice(&(set.len() as u16).to_be_bytes());
            ap.extend_from_slice(set);
        }
        assert!(push(&mut track, packet(0, false, &ap)).is_empty());
        // IDR_W_RADL (19) in three FUs (type 49: 0x62 0x01).
        assert!(push(&mut track, packet(0, false, &[0x62, 0x01, 0x80 | 19, 0xaf])).is_empty());
        assert!(push(&mut track, packet(0, false, &[0x62, 0x01, 19, 0x1d])).is_empty());
        let out = push(&mut track, packet(0, true, &[0x62, 0x01, 0x40 | 19, 0x80]));
        assert_eq!(frames(&out), [Frame::SequenceHeader, Frame::Keyframe]);
        // The NAL header rebuilt: type 19 -> 0x26 0x01.
        assert_eq!(
            &out[1].body[5..],
            &[0, 0, 0, 5, 0x26, 0x01, 0xaf, 0x1d, 0x80]
        );
        // A fragment without its start.
        let mut sink = Vec::new();
        let err = track
            .push(
                &packet(3600, true, &[0x62, 0x01, 0x40 | 1, 0x80]),
                &mut sink,
            )
            .unwrap_err();
        assert_eq!(err.to_string(), "FU fragment without a start");
        assert!(push(&mut track, packet(7200, true, TRAIL)).is_empty());
        assert_eq!(track.dropped_frames(), 2);
    }

    #[test]
    fn refused_packets_and_parameters() {
        let mut track = Track::new("H265", 90_000, None, Some("sprop-max-don-diff=0")).unwrap();
        let mut out = Vec::new();
        let mut err = |p: &[u8]| {
            track
                .push(&packet(0, true, p), &mut out)
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[0x64, 0x01]).contains("PACI"));
        assert!(err(&[0x7e, 0x01]).contains("unspecified"));
        assert!(err(&[0x40]).contains("payload header"));
        assert!(err(&[0x62, 0x01]).contains("FU header"));
        assert!(err(&[0x60, 0x01, 0, 9, 0x40]).contains("AP needs 9 bytes"));
        assert!(matches!(
            Track::new("H265", 90_000, None, Some("sprop-max-don-diff=1")),
            Err(DepacketizeError::DonlUnsupported(1))
        ));
        assert!(Track::new("H265", 90_000, None, Some("sprop-vps=@@")).is_err());
    }

    #[test]
    fn sps_with_sub_layers_and_10_bit() {
        // A hand-made SPS: 2 sub-layers (max_sub_layers_minus1 = 1), sub-layer profile and
        // level absent, then 4:2:0, 320x240, no conformance window, 10-bit.
        let mut bits = String::new();
        bits += "00"; // sub_layer_profile_present_flag, sub_layer_level_present_flag
        bits += &"00".repeat(7); // reserved_zero_2bits for i in 1..8
        bits += "1"; // sps_seq_parameter_set_id = 0
        bits += "010"; // chroma_format_idc = 1
        bits += "00000000101000001"; // width 320: ue of 320 = 0^8 1 01000001
        bits += "000000011110001"; // height 240: 0^7 1 1110001
        bits += "0"; // conformance_window_flag
        bits += "011011"; // bit depths minus 8: 2, 2
        while !bits.len().is_multiple_of(8) {
            bits.push('0');
        }
        let mut sps = vec![0x42, 0x01, 0x03];
        sps.extend_from_slice(&[0x01, 0x20, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 93]);
        for chunk in bits.as_bytes().chunks(8) {
            sps.push(u8::from_str_radix(std::str::from_utf8(chunk).unwrap(), 2).unwrap());
        }
        let summary = parse_sps(&sps).unwrap();
        assert_eq!(summary.max_sub_layers, 2);
        assert!(summary.temporal_id_nesting);
        assert_eq!(summary.general_profile_tier_level[11], 93);
        assert_eq!(
            (
                summary.chroma_format,
                summary.luma_bit_depth_minus8,
                summary.chroma_bit_depth_minus8
            ),
            (1, 2, 2)
        );
        assert_eq!(parse_sps(&sps[..10]), None);
    }

    #[test]
    fn never_panics_on_any_short_payload() {
        let mut track = Track::new("H265", 90_000, None, Some(FMTP)).unwrap();
        let mut out = Vec::new();
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                for len in 1..6 {
                    let p = [a, b, a, b, b, a];
                    let _ = track.push(&packet(u32::from(b), b & 1 == 1, &p[..len]), &mut out);
                }
            }
        }
        for len in 0..20 {
            let _ = parse_sps(&[0x42; 20][..len]);
        }
    }
}
