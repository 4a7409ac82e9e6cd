//! A small inspector for audio and video tag bodies: only what a relay needs.
//!
//! A relay forwards media untouched; it only has to know which messages are sequence
//! headers (to hand them to new players and to replay after a failover), which video
//! frames are keyframes (where a new player may start), and which codec and track a
//! message belongs to. Legacy FLV (H.264, AAC, ...) and Enhanced RTMP (FourCC codecs,
//! multitrack) are both understood; anything unknown is passed through as `Other`.
//!
//! Layouts follow the FLV spec v10 (legacy tags) and veovera's Enhanced RTMP v1/v2
//! (`ExVideoTagHeader`, `ExAudioTagHeader`, multitrack and ModEx). Every read is checked:
//! a truncated payload gives `None`, never a panic. Data messages are read with
//! [`crate::amf0`].

use crate::amf0;

/// Codec of a tag: a legacy FLV codec id or an Enhanced RTMP FourCC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Legacy FLV video CodecID (7 = AVC) or audio SoundFormat (10 = AAC, 2 = MP3, ...).
    Legacy(u8),
    /// Enhanced RTMP FourCC (`avc1`, `hvc1`, `av01`, `vp09`, `mp4a`, `Opus`, ...).
    FourCc([u8; 4]),
}

/// Reported for Enhanced RTMP video command frames (FrameType 5, not Metadata): the spec
/// sends a one-byte command and no FourCC there, so there is no codec to name.
pub const NO_FOURCC: Codec = Codec::FourCc([0; 4]);

/// What a tag is, for a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Decoder configuration (AVC/HEVC/AV1 sequence start, AAC AudioSpecificConfig, ...).
    SequenceHeader,
    /// A video keyframe (coded frame).
    Keyframe,
    /// Any other coded frame (inter video frame, audio frame).
    Coded,
    /// End of sequence.
    SequenceEnd,
    /// Metadata, command frames and anything else.
    Other,
}

/// The result of inspecting one audio or video payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagInfo {
    pub codec: Codec,
    /// Enhanced RTMP track id (0 when not multitrack).
    pub track: u8,
    pub frame: Frame,
}

/// Legacy FLV video CodecID of H.264/AVC (FLV spec v10, E.4.3.1).
pub const VIDEO_CODEC_AVC: u8 = 7;
/// CodecID 12: the pre-E-RTMP HEVC extension (Chinese CDNs, ffmpeg forks, SRS), laid out like AVC.
pub const VIDEO_CODEC_HEVC_LEGACY: u8 = 12;
/// Legacy FLV SoundFormat of AAC (FLV spec v10, E.4.2.1).
pub const SOUND_FORMAT_AAC: u8 = 10;
/// SoundFormat 9: Enhanced RTMP's ExAudioTagHeader (it was "reserved" in FLV v10).
pub const SOUND_FORMAT_EX_HEADER: u8 = 9;

// Video FrameType values (FLV v10 and E-RTMP share them).
const FRAME_KEY: u8 = 1;
const FRAME_GENERATED_KEY: u8 = 4;
const FRAME_COMMAND: u8 = 5;

// E-RTMP VideoPacketType values.
const VPT_SEQUENCE_START: u8 = 0;
const VPT_CODED_FRAMES: u8 = 1;
const VPT_SEQUENCE_END: u8 = 2;
const VPT_CODED_FRAMES_X: u8 = 3;
const VPT_METADATA: u8 = 4;
const VPT_MULTITRACK: u8 = 6;
const VPT_MOD_EX: u8 = 7;

// E-RTMP AudioPacketType values.
const APT_SEQUENCE_START: u8 = 0;
const APT_CODED_FRAMES: u8 = 1;
const APT_SEQUENCE_END: u8 = 2;
const APT_MULTITRACK: u8 = 5;
const APT_MOD_EX: u8 = 6;

// AvMultitrackType values (high nibble of the byte after a Multitrack packet type).
const MULTITRACK_ONE_TRACK: u8 = 0;
const MULTITRACK_MANY_TRACKS: u8 = 1;
const MULTITRACK_MANY_TRACKS_MANY_CODECS: u8 = 2;

/// Checked reads over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    fn u8(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn fourcc(&mut self) -> Option<[u8; 4]> {
        let b = self.take(4)?;
        Some([b[0], b[1], b[2], b[3]])
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
}

/// Skips the ModEx blocks (E-RTMP v2): `modExDataSize = UI8 + 1` (if that is 256, then
/// `UI16 + 1`), the data, then a byte whose high nibble is the ModEx type and whose low
/// nibble is the next packet type. Repeats while that packet type is still ModEx.
fn skip_mod_ex(r: &mut Reader<'_>, mut packet_type: u8, mod_ex: u8) -> Option<u8> {
    while packet_type == mod_ex {
        let mut size = usize::from(r.u8()?) + 1;
        if size == 256 {
            size = usize::from(r.u16()?) + 1;
        }
        r.take(size)?;
        packet_type = r.u8()? & 0x0f;
    }
    Some(packet_type)
}

/// After the packet type: the FourCC and, for multitrack, the first track's id.
/// Returns (codec, track, real packet type).
fn read_codec_and_track(
    r: &mut Reader<'_>,
    packet_type: u8,
    multitrack: u8,
) -> Option<(Codec, u8, u8)> {
    if packet_type != multitrack {
        return Some((Codec::FourCc(r.fourcc()?), 0, packet_type));
    }
    let b = r.u8()?;
    let mt_type = b >> 4;
    let real_type = b & 0x0f;
    let fourcc = match mt_type {
        // OneTrack/ManyTracks: one FourCC for all tracks. ManyTracksManyCodecs: a FourCC
        // before each track id; the first one is the first track's. Same bytes either way.
        MULTITRACK_ONE_TRACK | MULTITRACK_MANY_TRACKS | MULTITRACK_MANY_TRACKS_MANY_CODECS => {
            r.fourcc()?
        }
        // A multitrack type this inspector does not know: its layout is unknown.
        _ => return Some((NO_FOURCC, 0, u8::MAX)),
    };
    let track = r.u8()?;
    Some((Codec::FourCc(fourcc), track, real_type))
}

/// Inspects a video message payload. `None` for an empty or truncated payload.
pub fn inspect_video(payload: &[u8]) -> Option<TagInfo> {
    let mut r = Reader::new(payload);
    let b0 = r.u8()?;
    if b0 & 0x80 == 0 {
        return inspect_legacy_video(b0, &mut r);
    }
    // Enhanced RTMP ExVideoTagHeader.
    let frame_type = (b0 >> 4) & 0x07;
    let packet_type = skip_mod_ex(&mut r, b0 & 0x0f, VPT_MOD_EX)?;
    if frame_type == FRAME_COMMAND && packet_type != VPT_METADATA {
        // videoCommand = UI8, no FourCC, no body.
        r.u8()?;
        return Some(TagInfo {
            codec: NO_FOURCC,
            track: 0,
            frame: Frame::Other,
        });
    }
    let (codec, track, packet_type) = read_codec_and_track(&mut r, packet_type, VPT_MULTITRACK)?;
    let frame = match packet_type {
        VPT_SEQUENCE_START => Frame::SequenceHeader,
        VPT_CODED_FRAMES | VPT_CODED_FRAMES_X => key_or_coded(frame_type),
        VPT_SEQUENCE_END => Frame::SequenceEnd,
        // Metadata, MPEG2TSSequenceStart (an MPEG-TS descriptor, not the decoder
        // configuration a player starts from), nested Multitrack/ModEx (forbidden) and
        // unknown types: forwarded, never interpreted.
        _ => Frame::Other,
    };
    Some(TagInfo {
        codec,
        track,
        frame,
    })
}

fn key_or_coded(frame_type: u8) -> Frame {
    match frame_type {
        FRAME_KEY | FRAME_GENERATED_KEY => Frame::Keyframe,
        FRAME_COMMAND => Frame::Other,
        _ => Frame::Coded,
    }
}

fn inspect_legacy_video(b0: u8, r: &mut Reader<'_>) -> Option<TagInfo> {
    let frame_type = b0 >> 4;
    let codec_id = b0 & 0x0f;
    let codec = Codec::Legacy(codec_id);
    if frame_type == FRAME_COMMAND {
        // VideoInfo/CommandFrame: one byte, no codec data.
        return Some(TagInfo {
            codec,
            track: 0,
            frame: Frame::Other,
        });
    }
    let frame = if codec_id == VIDEO_CODEC_AVC || codec_id == VIDEO_CODEC_HEVC_LEGACY {
        match r.u8()? {
            0 => Frame::SequenceHeader,
            1 => key_or_coded(frame_type),
            2 => Frame::SequenceEnd,
            _ => Frame::Other,
        }
    } else {
        key_or_coded(frame_type)
    };
    Some(TagInfo {
        codec,
        track: 0,
        frame,
    })
}

/// Inspects an audio message payload. `None` for an empty or truncated payload.
pub fn inspect_audio(payload: &[u8]) -> Option<TagInfo> {
    let mut r = Reader::new(payload);
    let b0 = r.u8()?;
    let sound_format = b0 >> 4;
    match sound_format {
        SOUND_FORMAT_AAC => {
            let frame = match r.u8()? {
                0 => Frame::SequenceHeader,
                1 => Frame::Coded,
                _ => Frame::Other,
            };
            Some(TagInfo {
                codec: Codec::Legacy(SOUND_FORMAT_AAC),
                track: 0,
                frame,
            })
        }
        SOUND_FORMAT_EX_HEADER => {
            let packet_type = skip_mod_ex(&mut r, b0 & 0x0f, APT_MOD_EX)?;
            let (codec, track, packet_type) =
                read_codec_and_track(&mut r, packet_type, APT_MULTITRACK)?;
            let frame = match packet_type {
                APT_SEQUENCE_START => Frame::SequenceHeader,
                APT_CODED_FRAMES => Frame::Coded,
                APT_SEQUENCE_END => Frame::SequenceEnd,
                // MultichannelConfig, nested Multitrack/ModEx, unknown types.
                _ => Frame::Other,
            };
            Some(TagInfo {
                codec,
                track,
                frame,
            })
        }
        _ => Some(TagInfo {
            codec: Codec::Legacy(sound_format),
            track: 0,
            frame: Frame::Coded,
        }),
    }
}

/// What a data message (type 18) carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataKind {
    /// Stream metadata. `body_offset` is where the `onMetaData` name starts, so
    /// `payload.slice(body_offset..)` is the metadata as players expect it: the
    /// `@setDataFrame` wrapper removed, the rest byte for byte as sent.
    Metadata { body_offset: usize },
    /// Any other data message (`onTextData`, `onCuePoint`, ...), forwarded as is.
    Other,
}

/// Inspects a data message (AMF0) payload: only its first one or two values, and only if
/// they are strings (String or LongString), are decoded.
pub fn inspect_data(payload: &[u8]) -> DataKind {
    let mut rest = payload;
    match amf0::decode_string(&mut rest).as_deref() {
        Some("onMetaData") => DataKind::Metadata { body_offset: 0 },
        Some("@setDataFrame") => {
            let next = payload.len() - rest.len();
            match amf0::decode_string(&mut rest).as_deref() {
                Some("onMetaData") => DataKind::Metadata { body_offset: next },
                _ => DataKind::Other,
            }
        }
        _ => DataKind::Other,
    }
}

/// What an encoder declares of its stream in `onMetaData`: the figures an operator
/// compares with what actually arrives. Each is `None` when absent, not a number, not
/// finite, or negative.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DeclaredFigures {
    /// `videodatarate`, kbit/s (FLV specification, E.5 onMetaData).
    pub video_kbps: Option<f64>,
    /// `audiodatarate`, kbit/s.
    pub audio_kbps: Option<f64>,
    /// `framerate`, frames per second.
    pub frame_rate: Option<f64>,
}

impl DeclaredFigures {
    /// Video and audio together, in bits per second; `None` if neither is declared.
    pub fn bitrate_bps(&self) -> Option<f64> {
        match (self.video_kbps, self.audio_kbps) {
            (None, None) => None,
            (v, a) => Some((v.unwrap_or(0.0) + a.unwrap_or(0.0)) * 1000.0),
        }
    }
}

/// Reads the declared figures from a metadata body as players get it (`onMetaData`,
/// then an ECMA array or object of properties; the `@setDataFrame` wrapper already
/// removed, see [`DataKind::Metadata`]). Anything else, or a body that does not
/// decode, declares nothing. At most 64 values are decoded: ffmpeg's and OBS's
/// metadata have about 20 properties, and only top-level numbers are read.
pub fn declared_figures(body: &[u8]) -> DeclaredFigures {
    /// Values decoded at most: the name, the array, and its properties with nested values.
    const MAX_VALUES: usize = 64;
    let mut rest = body;
    if amf0::decode_string(&mut rest).as_deref() != Some("onMetaData") {
        return DeclaredFigures::default();
    }
    let Ok(values) = amf0::decode_all_with_limit(rest, MAX_VALUES) else {
        return DeclaredFigures::default();
    };
    let props = match values.into_iter().next() {
        Some(amf0::Amf0Value::EcmaArray(props) | amf0::Amf0Value::Object(props)) => props,
        _ => return DeclaredFigures::default(),
    };
    let number = |name: &str| {
        props.iter().find_map(|(key, value)| match value {
            amf0::Amf0Value::Number(n) if key == name && n.is_finite() && *n >= 0.0 => Some(*n),
            _ => None,
        })
    };
    DeclaredFigures {
        video_kbps: number("videodatarate"),
        audio_kbps: number("audiodatarate"),
        frame_rate: number("framerate"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(codec: Codec, track: u8, frame: Frame) -> Option<TagInfo> {
        Some(TagInfo {
            codec,
            track,
            frame,
        })
    }
    const AVC: Codec = Codec::Legacy(7);

    #[test]
    fn declared_figures_from_ffmpeg_style_metadata() {
        use amf0::Amf0Value as V;
        let mut body = bytes::BytesMut::new();
        amf0::encode_all(
            &[
                V::String("onMetaData".into()),
                V::EcmaArray(vec![
                    ("width".into(), V::Number(1280.0)),
                    ("videodatarate".into(), V::Number(3906.25)),
                    ("framerate".into(), V::Number(30.0)),
                    ("audiodatarate".into(), V::Number(128.0)),
                    ("encoder".into(), V::String("Lavf60".into())),
                ]),
            ],
            &mut body,
        );
        let d = declared_figures(&body);
        assert_eq!(d.video_kbps, Some(3906.25));
        assert_eq!(d.audio_kbps, Some(128.0));
        assert_eq!(d.frame_rate, Some(30.0));
        assert_eq!(d.bitrate_bps(), Some(4_034_250.0));
    }

    #[test]
    fn declared_figures_of_anything_else_are_none() {
        use amf0::Amf0Value as V;
        let mut odd = bytes::BytesMut::new();
        amf0::encode_all(
            &[
                V::String("onMetaData".into()),
                V::Object(vec![
                    ("videodatarate".into(), V::String("4000".into())),
                    ("audiodatarate".into(), V::Number(-1.0)),
                    ("framerate".into(), V::Number(f64::NAN)),
                ]),
            ],
            &mut odd,
        );
        for body in [&odd[..], b"", b"\x02\x00\x03abc", &[0x02, 0x00, 0x0a]] {
            let d = declared_figures(body);
            assert_eq!(d, DeclaredFigures::default(), "{body:?}");
            assert_eq!(d.bitrate_bps(), None);
        }
    }

    #[test]
    fn legacy_avc() {
        // Sequence header: 0x17 0x00, composition time 0, then AVCDecoderConfigurationRecord.
        let seq = [0x17, 0x00, 0, 0, 0, 0x01, 0x64, 0x00, 0x1f, 0xff];
        assert_eq!(inspect_video(&seq), info(AVC, 0, Frame::SequenceHeader));
        let key = [
            0x17, 0x01, 0, 0, 0x21, 0, 0, 0, 5, 0x65, 0x88, 0x84, 0x00, 0x10,
        ];
        assert_eq!(inspect_video(&key), info(AVC, 0, Frame::Keyframe));
        let inter = [0x27, 0x01, 0, 0, 0x42, 0, 0, 0, 3, 0x41, 0x9a, 0x24];
        assert_eq!(inspect_video(&inter), info(AVC, 0, Frame::Coded));
        assert_eq!(
            inspect_video(&[0x17, 0x02, 0, 0, 0]),
            info(AVC, 0, Frame::SequenceEnd)
        );
        // Disposable inter frame (3).
        assert_eq!(
            inspect_video(&[0x37, 0x01, 0, 0, 0]),
            info(AVC, 0, Frame::Coded)
        );
        // Unknown AVCPacketType.
        assert_eq!(inspect_video(&[0x17, 0x09]), info(AVC, 0, Frame::Other));
        // Video info/command frame (start of seek).
        assert_eq!(inspect_video(&[0x57, 0x00]), info(AVC, 0, Frame::Other));
    }

    #[test]
    fn legacy_hevc_codec_12_and_other_codecs() {
        let c12 = Codec::Legacy(12);
        assert_eq!(
            inspect_video(&[0x1c, 0x00, 0, 0, 0, 1]),
            info(c12, 0, Frame::SequenceHeader)
        );
        assert_eq!(
            inspect_video(&[0x1c, 0x01, 0, 0, 0, 1]),
            info(c12, 0, Frame::Keyframe)
        );
        assert_eq!(
            inspect_video(&[0x2c, 0x01, 0, 0, 0, 1]),
            info(c12, 0, Frame::Coded)
        );
        // Sorenson H.263 (2) and VP6 (4): the frame type alone decides.
        assert_eq!(
            inspect_video(&[0x12, 0xaa]),
            info(Codec::Legacy(2), 0, Frame::Keyframe)
        );
        assert_eq!(
            inspect_video(&[0x24, 0xaa]),
            info(Codec::Legacy(4), 0, Frame::Coded)
        );
    }

    #[test]
    fn enhanced_video_sequence_start_and_keyframes() {
        for fourcc in [*b"hvc1", *b"av01", *b"vp09", *b"avc1"] {
            let c = Codec::FourCc(fourcc);
            // 0x90 = IsExHeader | FrameType 1 (key) | PacketType 0 (SequenceStart).
            let mut seq = vec![0x90];
            seq.extend_from_slice(&fourcc);
            seq.extend_from_slice(&[0x01, 0x01, 0x60, 0x00]);
            assert_eq!(inspect_video(&seq), info(c, 0, Frame::SequenceHeader));
            // 0x91 = key, CodedFrames (SI24 composition time then data).
            let mut key = vec![0x91];
            key.extend_from_slice(&fourcc);
            key.extend_from_slice(&[0, 0, 0, 0x26, 0x01]);
            assert_eq!(inspect_video(&key), info(c, 0, Frame::Keyframe));
            // 0xa3 = inter, CodedFramesX.
            let mut inter = vec![0xa3];
            inter.extend_from_slice(&fourcc);
            inter.extend_from_slice(&[0x02, 0x01]);
            assert_eq!(inspect_video(&inter), info(c, 0, Frame::Coded));
            // 0x93 = key, CodedFramesX.
            let mut keyx = vec![0x93];
            keyx.extend_from_slice(&fourcc);
            assert_eq!(inspect_video(&keyx), info(c, 0, Frame::Keyframe));
            // 0x92 SequenceEnd, 0x94 Metadata, 0x95 MPEG2TSSequenceStart.
            let mut end = vec![0x92];
            end.extend_from_slice(&fourcc);
            assert_eq!(inspect_video(&end), info(c, 0, Frame::SequenceEnd));
            let mut meta = vec![0x94];
            meta.extend_from_slice(&fourcc);
            meta.extend_from_slice(&[0x02, 0x00, 0x09]);
            meta.extend_from_slice(b"colorInfo");
            assert_eq!(inspect_video(&meta), info(c, 0, Frame::Other));
            let mut ts = vec![0x95];
            ts.extend_from_slice(&fourcc);
            assert_eq!(inspect_video(&ts), info(c, 0, Frame::Other));
        }
    }

    #[test]
    fn enhanced_video_command_frame_has_no_fourcc() {
        // 0xd1: ExHeader, FrameType 5 (command), PacketType 1; then videoCommand = 0.
        assert_eq!(
            inspect_video(&[0xd1, 0x00]),
            info(NO_FOURCC, 0, Frame::Other)
        );
        assert_eq!(inspect_video(&[0xd1]), None);
        // Metadata with FrameType 5 carries a FourCC.
        let meta = [0xd4, b'h', b'v', b'c', b'1', 0x02];
        assert_eq!(
            inspect_video(&meta),
            info(Codec::FourCc(*b"hvc1"), 0, Frame::Other)
        );
    }

    #[test]
    fn enhanced_video_multitrack() {
        let hvc1 = Codec::FourCc(*b"hvc1");
        // OneTrack (0) | CodedFrames (1): FourCC, track id, then the frame.
        let one = [0x96, 0x01, b'h', b'v', b'c', b'1', 3, 0, 0, 0, 0x26];
        assert_eq!(inspect_video(&one), info(hvc1, 3, Frame::Keyframe));
        // ManyTracks (1) | SequenceStart (0): FourCC, then per track id + UI24 size.
        let many = [
            0x96, 0x10, b'h', b'v', b'c', b'1', 1, 0, 0, 2, 0xaa, 0xbb, 2, 0, 0, 1, 0xcc,
        ];
        assert_eq!(inspect_video(&many), info(hvc1, 1, Frame::SequenceHeader));
        // ManyTracksManyCodecs (2) | CodedFrames (1), inter: FourCC per track.
        let mtmc = [
            0xa6, 0x21, b'a', b'v', b'0', b'1', 0, 0, 0, 1, 0x12, b'h', b'v', b'c', b'1',
        ];
        assert_eq!(
            inspect_video(&mtmc),
            info(Codec::FourCc(*b"av01"), 0, Frame::Coded)
        );
        // Unknown multitrack type 3: forwarded as Other.
        assert_eq!(
            inspect_video(&[0x96, 0x31, 0, 0]).map(|i| i.frame),
            Some(Frame::Other)
        );
        // Truncated: no track id.
        assert_eq!(inspect_video(&[0x96, 0x01, b'h', b'v', b'c', b'1']), None);
        assert_eq!(inspect_video(&[0x96, 0x21, b'h', b'v', b'c', b'1']), None);
        assert_eq!(inspect_video(&[0x96]), None);
    }

    #[test]
    fn enhanced_video_mod_ex() {
        let av01 = Codec::FourCc(*b"av01");
        // ModEx (7): size-1 = 2 (3 bytes: TimestampOffsetNano UI24), then
        // (ModExType 0 << 4) | PacketType 1, then FourCC.
        let p = [
            0x97, 0x02, 0x00, 0x01, 0x00, 0x01, b'a', b'v', b'0', b'1', 0x12,
        ];
        assert_eq!(inspect_video(&p), info(av01, 0, Frame::Keyframe));
        // Two ModEx blocks in a row, the second with the 16-bit size form (0xff -> UI16 + 1).
        let mut p = vec![0xa7, 0x00, 0xaa, 0x07, 0xff, 0x01, 0x00];
        p.extend_from_slice(&[0u8; 257]);
        p.extend_from_slice(&[0x00, b'a', b'v', b'0', b'1']);
        assert_eq!(inspect_video(&p), info(av01, 0, Frame::SequenceHeader));
        // ModEx then Multitrack.
        let p = [
            0x97, 0x00, 0x00, 0x06, 0x01, b'a', b'v', b'0', b'1', 4, 0x00,
        ];
        assert_eq!(inspect_video(&p), info(av01, 4, Frame::Keyframe));
        // Truncated ModEx data / missing packet type byte.
        assert_eq!(inspect_video(&[0x97, 0x05, 0x00]), None);
        assert_eq!(inspect_video(&[0x97, 0x00, 0x00]), None);
        assert_eq!(inspect_video(&[0x97, 0xff, 0x00]), None);
    }

    #[test]
    fn truncated_video() {
        assert_eq!(inspect_video(&[]), None);
        assert_eq!(inspect_video(&[0x17]), None);
        assert_eq!(inspect_video(&[0x1c]), None);
        assert_eq!(inspect_video(&[0x90, b'h', b'v', b'c']), None);
        assert_eq!(inspect_video(&[0x91]), None);
    }

    #[test]
    fn legacy_audio() {
        let aac = Codec::Legacy(10);
        // 0xAF: AAC, 44 kHz, 16-bit, stereo; 0x00: AudioSpecificConfig.
        assert_eq!(
            inspect_audio(&[0xaf, 0x00, 0x12, 0x10]),
            info(aac, 0, Frame::SequenceHeader)
        );
        assert_eq!(
            inspect_audio(&[0xaf, 0x01, 0x21, 0x10, 0x04]),
            info(aac, 0, Frame::Coded)
        );
        assert_eq!(inspect_audio(&[0xaf, 0x05]), info(aac, 0, Frame::Other));
        // MP3 (2).
        assert_eq!(
            inspect_audio(&[0x2f, 0xff, 0xfb]),
            info(Codec::Legacy(2), 0, Frame::Coded)
        );
        assert_eq!(inspect_audio(&[0xaf]), None);
        assert_eq!(inspect_audio(&[]), None);
    }

    #[test]
    fn enhanced_audio() {
        for fourcc in [*b"Opus", *b"mp4a", *b"fLaC", *b"ac-3", *b"ec-3", *b".mp3"] {
            let c = Codec::FourCc(fourcc);
            let mut seq = vec![0x90];
            seq.extend_from_slice(&fourcc);
            seq.extend_from_slice(b"OpusHead");
            assert_eq!(inspect_audio(&seq), info(c, 0, Frame::SequenceHeader));
            let mut coded = vec![0x91];
            coded.extend_from_slice(&fourcc);
            coded.extend_from_slice(&[0xfc, 0xff, 0xfe]);
            assert_eq!(inspect_audio(&coded), info(c, 0, Frame::Coded));
            let mut end = vec![0x92];
            end.extend_from_slice(&fourcc);
            assert_eq!(inspect_audio(&end), info(c, 0, Frame::SequenceEnd));
            // MultichannelConfig (4).
            let mut mc = vec![0x94];
            mc.extend_from_slice(&fourcc);
            mc.extend_from_slice(&[0x01, 0x02]);
            assert_eq!(inspect_audio(&mc), info(c, 0, Frame::Other));
        }
        assert_eq!(inspect_audio(&[0x91, b'O', b'p']), None);
        assert_eq!(inspect_audio(&[0x90]), None);
    }

    #[test]
    fn enhanced_audio_multitrack_and_mod_ex() {
        let opus = Codec::FourCc(*b"Opus");
        // Multitrack (5): ManyTracks (1) | CodedFrames (1), FourCC, track 2, size.
        let p = [0x95, 0x11, b'O', b'p', b'u', b's', 2, 0, 0, 1, 0xfc];
        assert_eq!(inspect_audio(&p), info(opus, 2, Frame::Coded));
        // ManyTracksManyCodecs (2) | SequenceStart (0).
        let p = [0x95, 0x20, b'm', b'p', b'4', b'a', 7, 0, 0, 2, 0x12, 0x10];
        assert_eq!(
            inspect_audio(&p),
            info(Codec::FourCc(*b"mp4a"), 7, Frame::SequenceHeader)
        );
        // ModEx (6) with 3 bytes of data then CodedFrames.
        let p = [0x96, 0x02, 0, 0, 1, 0x01, b'O', b'p', b'u', b's', 0xfc];
        assert_eq!(inspect_audio(&p), info(opus, 0, Frame::Coded));
        assert_eq!(inspect_audio(&[0x96, 0x02, 0, 0]), None);
        assert_eq!(inspect_audio(&[0x95, 0x11, b'O', b'p', b'u', b's']), None);
    }

    fn amf_str(s: &str) -> Vec<u8> {
        let mut v = vec![0x02];
        v.extend_from_slice(&(s.len() as u16).to_be_bytes());
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn data_messages() {
        let mut p = amf_str("@setDataFrame");
        let off = p.len();
        p.extend(amf_str("onMetaData"));
        p.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!(off, 16);
        assert_eq!(inspect_data(&p), DataKind::Metadata { body_offset: 16 });
        assert_eq!(&p[16..19], &[0x02, 0x00, 0x0a]);

        let mut p = amf_str("onMetaData");
        p.extend_from_slice(&[0x03, 0, 0, 9]);
        assert_eq!(inspect_data(&p), DataKind::Metadata { body_offset: 0 });

        let mut p = amf_str("@setDataFrame");
        p.extend(amf_str("onTextData"));
        assert_eq!(inspect_data(&p), DataKind::Other);
        assert_eq!(inspect_data(&amf_str("onCuePoint")), DataKind::Other);
        assert_eq!(inspect_data(&amf_str("@setDataFrame")), DataKind::Other);
        assert_eq!(inspect_data(&[]), DataKind::Other);
        assert_eq!(inspect_data(&[0x02, 0x00]), DataKind::Other);
        assert_eq!(
            inspect_data(&[0x02, 0x00, 0x0a, b'o', b'n']),
            DataKind::Other
        );
        assert_eq!(
            inspect_data(&[0x00, 0, 0, 0, 0, 0, 0, 0, 0]),
            DataKind::Other
        );
        let mut p = amf_str("@setDataFrame");
        p.extend_from_slice(&[0x02, 0x00, 0x0a, b'o']);
        assert_eq!(inspect_data(&p), DataKind::Other);
        // Names written as AMF0 LongString are names too.
        let mut p = vec![0x0c, 0, 0, 0, 13];
        p.extend_from_slice(b"@setDataFrame");
        p.extend_from_slice(&[0x0c, 0, 0, 0, 10]);
        p.extend_from_slice(b"onMetaData");
        assert_eq!(inspect_data(&p), DataKind::Metadata { body_offset: 18 });
    }

    #[test]
    fn never_panics_on_any_short_input() {
        // Every 1- and 2-byte input, and 3-byte inputs over interesting first bytes.
        for a in 0..=255u8 {
            let _ = (inspect_video(&[a]), inspect_audio(&[a]), inspect_data(&[a]));
            for b in 0..=255u8 {
                let _ = (
                    inspect_video(&[a, b]),
                    inspect_audio(&[a, b]),
                    inspect_data(&[a, b]),
                );
                for c in [0u8, 0x01, 0x10, 0x21, 0x7f, 0xff] {
                    let p = [a, b, c, c, c];
                    let _ = (inspect_video(&p), inspect_audio(&p), inspect_data(&p));
                }
            }
        }
    }
}
