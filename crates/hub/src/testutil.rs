//! Hand-built RTMP payloads for the unit tests.

use bytes::Bytes;
use longhaul_rtmp::message::type_id;
use longhaul_rtmp::RtmpMessage;

pub fn message(type_id: u8, timestamp: u32, payload: Vec<u8>) -> RtmpMessage {
    RtmpMessage {
        timestamp,
        type_id,
        stream_id: 1,
        payload: Bytes::from(payload),
    }
}

/// Legacy AVC sequence header (`0x17 0x00`).
pub fn avc_header(ts: u32) -> RtmpMessage {
    message(type_id::VIDEO, ts, vec![0x17, 0x00, 0, 0, 0, 1, 0x64])
}

/// Legacy AVC keyframe of `len` bytes.
pub fn keyframe(ts: u32, len: usize) -> RtmpMessage {
    let mut payload = vec![0x17, 0x01, 0, 0, 0];
    payload.resize(len.max(5), 0xaa);
    message(type_id::VIDEO, ts, payload)
}

/// Legacy AVC inter frame of `len` bytes.
pub fn inter(ts: u32, len: usize) -> RtmpMessage {
    let mut payload = vec![0x27, 0x01, 0, 0, 0];
    payload.resize(len.max(5), 0xbb);
    message(type_id::VIDEO, ts, payload)
}

/// AAC sequence header (`0xAF 0x00`).
pub fn aac_header(ts: u32) -> RtmpMessage {
    message(type_id::AUDIO, ts, vec![0xaf, 0x00, 0x12, 0x10])
}

/// AAC raw frame.
pub fn aac(ts: u32) -> RtmpMessage {
    message(type_id::AUDIO, ts, vec![0xaf, 0x01, 0x21, 0x00, 0x49])
}

/// `@setDataFrame`, `onMetaData`, an empty ECMA array; returns it and the body offset.
pub fn set_data_frame(ts: u32) -> (RtmpMessage, usize) {
    let mut payload = Vec::new();
    amf0_string(&mut payload, "@setDataFrame");
    let offset = payload.len();
    amf0_string(&mut payload, "onMetaData");
    payload.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 0, 0x09]);
    (message(type_id::DATA_AMF0, ts, payload), offset)
}

/// `@setDataFrame`, `onMetaData` declaring `videodatarate` and `audiodatarate` (kbit/s)
/// and a frame rate, as ffmpeg writes them.
pub fn metadata_declaring(ts: u32, video_kbps: f64, audio_kbps: f64, fps: f64) -> RtmpMessage {
    use longhaul_rtmp::amf0::{self, Amf0Value as V};
    let mut payload = bytes::BytesMut::new();
    amf0::encode_all(
        &[
            V::String("@setDataFrame".into()),
            V::String("onMetaData".into()),
            V::EcmaArray(vec![
                ("videodatarate".into(), V::Number(video_kbps)),
                ("framerate".into(), V::Number(fps)),
                ("audiodatarate".into(), V::Number(audio_kbps)),
            ]),
        ],
        &mut payload,
    );
    message(type_id::DATA_AMF0, ts, payload.to_vec())
}

fn amf0_string(out: &mut Vec<u8>, s: &str) {
    out.push(0x02);
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}
