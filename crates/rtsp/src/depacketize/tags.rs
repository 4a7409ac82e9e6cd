//! FLV tag bodies: what goes in an RTMP video or audio message's payload.
//!
//! H.264 and AAC go in legacy FLV tags (FLV spec v10, E.4.2.1 and E.4.3.1): every RTMP
//! player and server knows them. H.265 and Opus have no legacy codec id (CodecID 12
//! for HEVC is a non-standard extension), so they go in Enhanced RTMP v2 tags
//! (veovera): `ExVideoTagHeader` with FourCC `hvc1` and `ExAudioTagHeader` with FourCC
//! `Opus`. `longhaul_rtmp::media` is the inspector these bodies must satisfy.
//!
//! Video frames are written AVCC/HVCC style: each NAL unit after a 4-byte big-endian
//! length (lengthSizeMinusOne = 3 in the decoder configuration records built here).

use bytes::{BufMut, Bytes, BytesMut};

/// Legacy video tag byte: FrameType 1 (keyframe) << 4 | CodecID 7 (AVC).
const AVC_KEYFRAME: u8 = 0x17;
/// Legacy video tag byte: FrameType 2 (inter frame) << 4 | CodecID 7 (AVC).
const AVC_INTER_FRAME: u8 = 0x27;
/// AVCPacketType 0: AVCDecoderConfigurationRecord.
const AVC_SEQUENCE_HEADER: u8 = 0;
/// AVCPacketType 1: NAL units.
const AVC_NALU: u8 = 1;

/// Enhanced RTMP `IsExHeader` bit of the first video byte.
const EX_VIDEO_HEADER: u8 = 0x80;
/// Video FrameType 1 (keyframe) and 2 (inter frame), shifted into place.
const FRAME_TYPE_KEY: u8 = 1 << 4;
const FRAME_TYPE_INTER: u8 = 2 << 4;
/// VideoPacketType 0: the decoder configuration record.
const VIDEO_SEQUENCE_START: u8 = 0;
/// VideoPacketType 3: coded frames without the composition time (it would be 0: RTP
/// carries decode order only through timestamps, and B-frames' offsets are not sent).
const VIDEO_CODED_FRAMES_X: u8 = 3;

/// Legacy audio tag byte: SoundFormat 10 (AAC) << 4 | 44 kHz | 16-bit | stereo. The FLV
/// spec says AAC always uses 0xAF; the real rate and channels are in the
/// AudioSpecificConfig.
const AAC_TAG: u8 = 0xaf;
/// AACPacketType 0: AudioSpecificConfig; 1: a raw AAC frame.
const AAC_SEQUENCE_HEADER: u8 = 0;
const AAC_RAW: u8 = 1;

/// SoundFormat 9 (Enhanced RTMP's ExAudioTagHeader), shifted into place.
const EX_AUDIO_HEADER: u8 = 9 << 4;
/// AudioPacketType 0: the decoder configuration (for Opus, the OpusHead ID header).
const AUDIO_SEQUENCE_START: u8 = 0;
/// AudioPacketType 1: coded frames.
const AUDIO_CODED_FRAMES: u8 = 1;

/// Bytes of the length before each NAL unit in a frame.
pub(super) const NAL_LENGTH_SIZE: usize = 4;

/// An AVC sequence header: `0x17 0x00`, composition time 0, the configuration record.
pub(super) fn avc_sequence_header(record: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(5 + record.len());
    body.put_slice(&[AVC_KEYFRAME, AVC_SEQUENCE_HEADER, 0, 0, 0]);
    body.put_slice(record);
    body.freeze()
}

/// An AVC frame: `0x17`/`0x27`, `0x01`, composition time 0, length-prefixed NAL units.
pub(super) fn avc_frame(keyframe: bool, nal_units: &[Bytes]) -> Bytes {
    let first = if keyframe {
        AVC_KEYFRAME
    } else {
        AVC_INTER_FRAME
    };
    let mut body = BytesMut::with_capacity(5 + length_prefixed_size(nal_units));
    body.put_slice(&[first, AVC_NALU, 0, 0, 0]);
    put_length_prefixed(&mut body, nal_units);
    body.freeze()
}

/// An Enhanced RTMP HEVC SequenceStart: `0x90`, `hvc1`, the configuration record.
pub(super) fn hevc_sequence_start(record: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(5 + record.len());
    body.put_u8(EX_VIDEO_HEADER | FRAME_TYPE_KEY | VIDEO_SEQUENCE_START);
    body.put_slice(b"hvc1");
    body.put_slice(record);
    body.freeze()
}

/// An Enhanced RTMP HEVC CodedFramesX: `0x93`/`0xa3`, `hvc1`, length-prefixed NAL units.
pub(super) fn hevc_frame(keyframe: bool, nal_units: &[Bytes]) -> Bytes {
    let frame_type = if keyframe {
        FRAME_TYPE_KEY
    } else {
        FRAME_TYPE_INTER
    };
    let mut body = BytesMut::with_capacity(5 + length_prefixed_size(nal_units));
    body.put_u8(EX_VIDEO_HEADER | frame_type | VIDEO_CODED_FRAMES_X);
    body.put_slice(b"hvc1");
    put_length_prefixed(&mut body, nal_units);
    body.freeze()
}

/// An AAC sequence header: `0xAF 0x00` and the AudioSpecificConfig.
pub(super) fn aac_sequence_header(audio_specific_config: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(2 + audio_specific_config.len());
    body.put_slice(&[AAC_TAG, AAC_SEQUENCE_HEADER]);
    body.put_slice(audio_specific_config);
    body.freeze()
}

/// An AAC frame: `0xAF 0x01` and the raw access unit.
pub(super) fn aac_frame(access_unit: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(2 + access_unit.len());
    body.put_slice(&[AAC_TAG, AAC_RAW]);
    body.put_slice(access_unit);
    body.freeze()
}

/// An Enhanced RTMP Opus SequenceStart: `0x90`, `Opus`, the OpusHead ID header.
pub(super) fn opus_sequence_start(opus_head: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(5 + opus_head.len());
    body.put_u8(EX_AUDIO_HEADER | AUDIO_SEQUENCE_START);
    body.put_slice(b"Opus");
    body.put_slice(opus_head);
    body.freeze()
}

/// An Enhanced RTMP Opus CodedFrames: `0x91`, `Opus`, one Opus packet.
pub(super) fn opus_frame(packet: &[u8]) -> Bytes {
    let mut body = BytesMut::with_capacity(5 + packet.len());
    body.put_u8(EX_AUDIO_HEADER | AUDIO_CODED_FRAMES);
    body.put_slice(b"Opus");
    body.put_slice(packet);
    body.freeze()
}

/// Bytes of `nal_units` once each has its 4-byte length.
pub(super) fn length_prefixed_size(nal_units: &[Bytes]) -> usize {
    nal_units.iter().map(|n| NAL_LENGTH_SIZE + n.len()).sum()
}

fn put_length_prefixed(body: &mut BytesMut, nal_units: &[Bytes]) {
    for nal in nal_units {
        // A NAL unit is at most the frame limit (4 MB), far below 2^32.
        body.put_u32(nal.len() as u32);
        body.put_slice(nal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use longhaul_rtmp::media::{inspect_audio, inspect_video, Codec, Frame};

    fn video(body: &[u8]) -> (Codec, Frame) {
        let info = inspect_video(body).expect("a video tag");
        (info.codec, info.frame)
    }

    fn audio(body: &[u8]) -> (Codec, Frame) {
        let info = inspect_audio(body).expect("an audio tag");
        (info.codec, info.frame)
    }

    #[test]
    fn bodies_are_what_the_relay_recognises() {
        let avc = Codec::Legacy(7);
        let nals = [Bytes::from_static(&[0x65, 1, 2]), Bytes::from_static(&[6])];
        assert_eq!(
            video(&avc_sequence_header(&[1, 0x64, 0, 0x1f])),
            (avc, Frame::SequenceHeader)
        );
        let key = avc_frame(true, &nals);
        assert_eq!(video(&key), (avc, Frame::Keyframe));
        assert_eq!(
            &key[..],
            &[0x17, 1, 0, 0, 0, 0, 0, 0, 3, 0x65, 1, 2, 0, 0, 0, 1, 6]
        );
        assert_eq!(video(&avc_frame(false, &nals)), (avc, Frame::Coded));

        let hvc1 = Codec::FourCc(*b"hvc1");
        assert_eq!(
            video(&hevc_sequence_start(&[1, 2, 3])),
            (hvc1, Frame::SequenceHeader)
        );
        let key = hevc_frame(true, &nals);
        assert_eq!(&key[..5], &[0x93, b'h', b'v', b'c', b'1']);
        assert_eq!(&key[5..9], &[0, 0, 0, 3]);
        assert_eq!(video(&key), (hvc1, Frame::Keyframe));
        assert_eq!(video(&hevc_frame(false, &nals)), (hvc1, Frame::Coded));

        let aac = Codec::Legacy(10);
        assert_eq!(
            audio(&aac_sequence_header(&[0x11, 0x90])),
            (aac, Frame::SequenceHeader)
        );
        assert_eq!(&aac_frame(&[0x21])[..], &[0xaf, 1, 0x21]);
        assert_eq!(audio(&aac_frame(&[0x21])), (aac, Frame::Coded));

        let opus = Codec::FourCc(*b"Opus");
        let head = opus_sequence_start(b"OpusHead");
        assert_eq!(&head[..5], &[0x90, b'O', b'p', b'u', b's']);
        assert_eq!(audio(&head), (opus, Frame::SequenceHeader));
        assert_eq!(audio(&opus_frame(&[0xfc])), (opus, Frame::Coded));
        assert_eq!(&opus_frame(&[0xfc])[..1], &[0x91]);
    }
}
