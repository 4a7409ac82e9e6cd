//! AAC over RTP in LATM (RFC 6416, `MP4A-LATM`) to legacy FLV AAC tags.
//!
//! GStreamer's `rtspclientsink` picks this payload for AAC (its `rtpmp4apay`), as do
//! some cameras; ffmpeg sends `MPEG4-GENERIC` ([`super::aac`]). With `cpresent=0` (what
//! both send) the configuration is out of band: fmtp `config` is a StreamMuxConfig
//! (ISO/IEC 14496-3 1.7.3), whose AudioSpecificConfig, not byte-aligned inside it,
//! becomes the FLV sequence header. Each RTP packet, or several with the same timestamp
//! and the marker bit on the last, carries one AudioMuxElement: for each of
//! `numSubFrames + 1` sub-frames, a PayloadLengthInfo (bytes of 255 then one below it,
//! summed) and that many bytes of access unit.
//!
//! Only what real senders use is taken: audioMuxVersion 0, one program, one layer, all
//! streams on the same time framing, frameLengthType 0 (variable length) and the
//! configuration out of band. Anything else is refused with a reason.

use super::fmtp::{hex, FormatParameters};
use super::nal::BitReader;
use super::{tags, DepacketizeError, TrackFrame, MAX_FRAME_BYTES};
use crate::rtp::RtpPacket;
use bytes::{Bytes, BytesMut};
use longhaul_rtmp::media::Frame;

/// The LATM depacketiser of one track.
#[derive(Debug)]
pub struct LatmDepacketizer {
    audio_specific_config: Bytes,
    /// Access units per AudioMuxElement (`numSubFrames + 1`).
    sub_frames: u32,
    /// RTP timestamp units between consecutive access units.
    samples_per_frame: u32,
    config_sent: bool,
    /// The AudioMuxElement being gathered and its timestamp.
    element: Option<(u32, BytesMut)>,
    /// After a loss: skip packets until one follows a marker.
    resynchronising: bool,
    last_marker: bool,
    dropped_frames: u64,
}

impl LatmDepacketizer {
    pub(super) fn new(
        clock_rate: u32,
        parameters: &FormatParameters<'_>,
    ) -> Result<Self, DepacketizeError> {
        let cpresent = parameters.number("cpresent")?.unwrap_or(1);
        if cpresent != 0 {
            return Err(DepacketizeError::BadParameter {
                name: "cpresent",
                reason: "the configuration in band (cpresent=1) is unsupported; send it in fmtp config with cpresent=0".into(),
            });
        }
        let config = parameters
            .get("config")
            .filter(|c| !c.is_empty())
            .ok_or(DepacketizeError::AacConfigMissing)?;
        let mux_config = hex(config).ok_or_else(|| DepacketizeError::BadParameter {
            name: "config",
            reason: format!("{config:?} is not hex"),
        })?;
        let (sub_frames, audio_specific_config) =
            stream_mux_config(&mux_config).map_err(|reason| DepacketizeError::BadParameter {
                name: "config",
                reason: format!("StreamMuxConfig {config}: {reason}"),
            })?;
        let samples_per_frame = super::aac::samples_per_frame(&audio_specific_config, clock_rate)
            .ok_or_else(|| DepacketizeError::BadParameter {
            name: "config",
            reason: format!("StreamMuxConfig {config}: its AudioSpecificConfig does not parse"),
        })?;
        Ok(LatmDepacketizer {
            audio_specific_config: Bytes::from(audio_specific_config),
            sub_frames,
            samples_per_frame,
            config_sent: false,
            element: None,
            resynchronising: false,
            last_marker: true,
            dropped_frames: 0,
        })
    }

    pub(super) fn push(
        &mut self,
        packet: &RtpPacket,
        out: &mut Vec<TrackFrame>,
    ) -> Result<(), DepacketizeError> {
        let after_marker = std::mem::replace(&mut self.last_marker, packet.marker);
        if self.resynchronising {
            if !after_marker {
                return Ok(());
            }
            self.resynchronising = false;
        }
        // A new timestamp without the marker on the last packet: that element is cut.
        if self
            .element
            .as_ref()
            .is_some_and(|(timestamp, _)| *timestamp != packet.timestamp)
        {
            self.drop_element();
        }
        let (_, data) = self
            .element
            .get_or_insert_with(|| (packet.timestamp, BytesMut::new()));
        if data.len() + packet.payload.len() > MAX_FRAME_BYTES {
            let size = data.len() + packet.payload.len();
            self.drop_element();
            return Err(DepacketizeError::FrameTooLarge { size });
        }
        data.extend_from_slice(&packet.payload);
        if !packet.marker {
            return Ok(());
        }
        let Some((timestamp, data)) = self.element.take() else {
            return Ok(());
        };
        self.read_element(timestamp, data.freeze(), out)
    }

    pub(super) fn lost(&mut self) {
        self.drop_element();
        self.resynchronising = true;
    }

    pub(super) fn dropped_frames(&self) -> u64 {
        self.dropped_frames
    }

    fn drop_element(&mut self) {
        if self.element.take().is_some() {
            self.dropped_frames += 1;
        }
    }

    /// The access units of one AudioMuxElement.
    fn read_element(
        &mut self,
        timestamp: u32,
        element: Bytes,
        out: &mut Vec<TrackFrame>,
    ) -> Result<(), DepacketizeError> {
        let mut units = Vec::with_capacity(self.sub_frames as usize);
        let mut at = 0usize;
        for _ in 0..self.sub_frames {
            let mut len = 0usize;
            loop {
                let Some(&byte) = element.get(at) else {
                    self.dropped_frames += 1;
                    return Err(DepacketizeError::Truncated {
                        what: "LATM PayloadLengthInfo",
                        needed: 1,
                        left: 0,
                    });
                };
                at += 1;
                len += usize::from(byte);
                if byte != 255 {
                    break;
                }
            }
            if element.len() < at + len {
                self.dropped_frames += 1;
                return Err(DepacketizeError::Truncated {
                    what: "LATM PayloadMux",
                    needed: len,
                    left: element.len() - at,
                });
            }
            units.push(element.slice(at..at + len));
            at += len;
        }
        if !self.config_sent {
            self.config_sent = true;
            out.push(TrackFrame {
                rtp_timestamp: timestamp,
                body: tags::aac_sequence_header(&self.audio_specific_config),
                frame: Frame::SequenceHeader,
            });
        }
        for (i, unit) in units.into_iter().enumerate() {
            out.push(TrackFrame {
                rtp_timestamp: timestamp
                    .wrapping_add(self.samples_per_frame.wrapping_mul(i as u32)),
                body: tags::aac_frame(&unit),
                frame: Frame::Coded,
            });
        }
        Ok(())
    }
}

/// `numSubFrames + 1` and the AudioSpecificConfig (byte-aligned) of a StreamMuxConfig
/// with audioMuxVersion 0.
fn stream_mux_config(config: &[u8]) -> Result<(u32, Vec<u8>), String> {
    let mut r = BitReader::new(config);
    let mut bits = |n: u32, what: &str| r.bits(n).ok_or_else(|| format!("ends before {what}"));
    if bits(1, "audioMuxVersion")? != 0 {
        return Err("audioMuxVersion 1 is unsupported".into());
    }
    if bits(1, "allStreamsSameTimeFraming")? != 1 {
        return Err("streams on different time framings are unsupported".into());
    }
    let sub_frames = bits(6, "numSubFrames")? + 1;
    if bits(4, "numProgram")? != 0 || bits(3, "numLayer")? != 0 {
        return Err("more than one program or layer is unsupported".into());
    }
    // The AudioSpecificConfig starts at bit 15: read its fields, copying their bits.
    let mut asc = BitWriter::default();
    let mut copy = |r: &mut BitReader<'_>, n: u32, what: &str| -> Result<u32, String> {
        let v = r
            .bits(n)
            .ok_or_else(|| format!("ends in the AudioSpecificConfig's {what}"))?;
        asc.put(v, n);
        Ok(v)
    };
    let mut r = BitReader::new(config);
    r.skip(15).ok_or("too short")?;
    let mut object_type = copy(&mut r, 5, "object type")?;
    if object_type == 31 {
        object_type = 32 + copy(&mut r, 6, "object type")?;
    }
    if copy(&mut r, 4, "sampling frequency index")? == 15 {
        copy(&mut r, 24, "sampling frequency")?;
    }
    copy(&mut r, 4, "channel configuration")?;
    if object_type == 5 || object_type == 29 {
        // Explicit SBR/PS: the extension's frequency and the core's object type.
        if copy(&mut r, 4, "extension sampling frequency index")? == 15 {
            copy(&mut r, 24, "extension sampling frequency")?;
        }
        object_type = copy(&mut r, 5, "core object type")?;
    }
    // GASpecificConfig (14496-3 4.4.1) of the AAC object types.
    if !matches!(
        object_type,
        1 | 2 | 3 | 4 | 6 | 7 | 17 | 19 | 20 | 21 | 22 | 23
    ) {
        return Err(format!("audio object type {object_type} is not AAC"));
    }
    copy(&mut r, 1, "frameLengthFlag")?;
    if copy(&mut r, 1, "dependsOnCoreCoder")? == 1 {
        copy(&mut r, 14, "coreCoderDelay")?;
    }
    let extension = copy(&mut r, 1, "extensionFlag")?;
    if object_type == 6 || object_type == 20 {
        copy(&mut r, 3, "layerNr")?;
    }
    if extension == 1 {
        return Err("an AudioSpecificConfig with its extension flag set is unsupported".into());
    }
    // Backward-compatible SBR signalling (14496-3 1.6.5.2, syncExtensionType 0x2b7),
    // which GStreamer writes: part of the AudioSpecificConfig when present.
    let mut peek = r.clone();
    if object_type != 5 && peek.bits(11) == Some(0x2b7) {
        copy(&mut r, 11, "syncExtensionType")?;
        let extension_type = copy(&mut r, 5, "extensionAudioObjectType")?;
        if extension_type == 5
            && copy(&mut r, 1, "sbrPresentFlag")? == 1
            && copy(&mut r, 4, "extensionSamplingFrequencyIndex")? == 15
        {
            copy(&mut r, 24, "extensionSamplingFrequency")?;
        }
    }
    let frame_length_type = r.bits(3).ok_or("ends before frameLengthType")?;
    if frame_length_type != 0 {
        return Err(format!(
            "frameLengthType {frame_length_type} is unsupported: only 0 (variable) is"
        ));
    }
    Ok((sub_frames, asc.finish()))
}

/// Bits written most significant first, padded with zeros to a byte.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    used: u32,
}

impl BitWriter {
    fn put(&mut self, value: u32, count: u32) {
        for i in (0..count).rev() {
            if self.used.is_multiple_of(8) {
                self.bytes.push(0);
            }
            let bit = ((value >> i) & 1) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= bit << (7 - self.used % 8);
            }
            self.used += 1;
        }
    }

    fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(sequence: u16, timestamp: u32, marker: bool, payload: &[u8]) -> RtpPacket {
        RtpPacket {
            marker,
            payload_type: 97,
            sequence,
            timestamp,
            ssrc: 1,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    fn depacketizer(config: &str) -> LatmDepacketizer {
        let fmtp = format!("cpresent=0;config={config}");
        LatmDepacketizer::new(44_100, &FormatParameters::parse(Some(&fmtp))).unwrap()
    }

    /// What GStreamer 1.22's rtpmp4apay announced for AAC-LC, 44.1 kHz, mono (captured
    /// from `rtspclientsink`'s ANNOUNCE).
    #[test]
    fn gstreamers_config_and_elements() {
        let mut d = depacketizer("40002410adca00");
        // AAC-LC, 44.1 kHz, mono, and the SBR sync extension (absent SBR) GStreamer adds.
        assert_eq!(
            &d.audio_specific_config[..],
            &[0x12, 0x08, 0x56, 0xe5, 0x00]
        );
        assert_eq!(d.sub_frames, 1);
        let mut out = Vec::new();
        // A 300-byte unit: length 255 + 45, in one packet.
        let mut payload = vec![255, 45];
        payload.extend(std::iter::repeat_n(7u8, 300));
        d.push(&packet(1, 1000, true, &payload), &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].frame, Frame::SequenceHeader);
        assert_eq!(
            &out[0].body[..],
            &[0xaf, 0x00, 0x12, 0x08, 0x56, 0xe5, 0x00]
        );
        assert_eq!(out[1].body.len(), 2 + 300);
        assert_eq!(&out[1].body[..2], &[0xaf, 0x01]);
        assert!(matches!(
            longhaul_rtmp::media::inspect_audio(&out[1].body).map(|i| i.frame),
            Some(Frame::Coded)
        ));

        // The same element in two packets, the marker on the second.
        out.clear();
        d.push(&packet(2, 2024, false, &payload[..100]), &mut out)
            .unwrap();
        assert!(out.is_empty());
        d.push(&packet(3, 2024, true, &payload[100..]), &mut out)
            .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rtp_timestamp, 2024);

        // A loss mid-element: the rest is skipped until after a marker.
        out.clear();
        d.push(&packet(4, 3048, false, &payload[..100]), &mut out)
            .unwrap();
        d.lost();
        d.push(&packet(6, 3048, true, &payload[150..]), &mut out)
            .unwrap();
        assert!(out.is_empty());
        d.push(&packet(7, 4072, true, &payload), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(d.dropped_frames(), 1);

        // A length past the element's end.
        assert!(d
            .push(&packet(8, 5096, true, &[200, 1, 2]), &mut out)
            .is_err());
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        let err = |fmtp: &str| {
            LatmDepacketizer::new(44_100, &FormatParameters::parse(Some(fmtp)))
                .unwrap_err()
                .to_string()
        };
        assert!(err("cpresent=1;config=40002410").contains("cpresent=1"));
        assert!(err("cpresent=0").contains("config missing"));
        assert!(err("cpresent=0;config=zz").contains("not hex"));
        // audioMuxVersion 1.
        assert!(err("cpresent=0;config=C0002410").contains("audioMuxVersion 1"));
        assert!(err("cpresent=0;config=40").contains("ends"));
        // Every short prefix of a real config is refused, never a panic.
        for len in 0..8 {
            let config = &"40002410"[..len];
            let _ = LatmDepacketizer::new(
                44_100,
                &FormatParameters::parse(Some(&format!("cpresent=0;config={config}"))),
            );
        }
    }
}
