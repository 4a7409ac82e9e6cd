//! An RTMP message as it travels through longhaul: type, timestamp, stream id and payload.
//!
//! Media and data messages are forwarded byte for byte: the payload is a [`Bytes`] that
//! every player and relay leg shares, never a per-consumer copy.

use bytes::Bytes;

/// Message type ids (RTMP spec 5.4 and 7.1).
pub mod type_id {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// One complete RTMP message, reassembled from its chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpMessage {
    /// Absolute timestamp in milliseconds (deltas already summed, extended timestamps applied).
    /// RTMP timestamps wrap at 2^32.
    pub timestamp: u32,
    /// Message type id, see [`type_id`].
    pub type_id: u8,
    /// Message stream id (0 for the NetConnection, else the id `createStream` handed out).
    pub stream_id: u32,
    /// The message body, untouched.
    pub payload: Bytes,
}

impl RtmpMessage {
    pub fn is_audio(&self) -> bool {
        self.type_id == type_id::AUDIO
    }
    pub fn is_video(&self) -> bool {
        self.type_id == type_id::VIDEO
    }
    /// AMF0 or AMF3 data message (`onMetaData`, `@setDataFrame`, `onTextData`, ...).
    pub fn is_data(&self) -> bool {
        self.type_id == type_id::DATA_AMF0 || self.type_id == type_id::DATA_AMF3
    }
}

/// User Control event types (spec 7.1.7).
pub mod user_control {
    pub const STREAM_BEGIN: u16 = 0;
    pub const STREAM_EOF: u16 = 1;
    pub const STREAM_DRY: u16 = 2;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const STREAM_IS_RECORDED: u16 = 4;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
}

/// Limit types of Set Peer Bandwidth (spec 5.4.5).
pub mod bandwidth_limit {
    pub const HARD: u8 = 0;
    pub const SOFT: u8 = 1;
    pub const DYNAMIC: u8 = 2;
}

/// A protocol control message: stream 0, timestamp 0 (spec 5.4: they go on chunk
/// stream 2 and message stream 0).
fn control(type_id: u8, body: &[u8]) -> RtmpMessage {
    RtmpMessage {
        timestamp: 0,
        type_id,
        stream_id: 0,
        payload: Bytes::copy_from_slice(body),
    }
}

/// Set Chunk Size (type 1). The caller keeps `size` within `1..=chunk::MAX_CHUNK_SIZE`.
pub fn set_chunk_size(size: u32) -> RtmpMessage {
    control(type_id::SET_CHUNK_SIZE, &(size & 0x7fff_ffff).to_be_bytes())
}

/// Abort (type 2): the peer drops the partial message of chunk stream `csid`.
pub fn abort(csid: u32) -> RtmpMessage {
    control(type_id::ABORT, &csid.to_be_bytes())
}

/// Acknowledgement (type 3): bytes received so far (the sequence number wraps at 2^32).
pub fn acknowledgement(sequence_number: u32) -> RtmpMessage {
    control(type_id::ACKNOWLEDGEMENT, &sequence_number.to_be_bytes())
}

/// Window Acknowledgement Size (type 5).
pub fn window_ack_size(size: u32) -> RtmpMessage {
    control(type_id::WINDOW_ACK_SIZE, &size.to_be_bytes())
}

/// Set Peer Bandwidth (type 6) with a [`bandwidth_limit`] type.
pub fn set_peer_bandwidth(size: u32, limit_type: u8) -> RtmpMessage {
    let b = size.to_be_bytes();
    control(
        type_id::SET_PEER_BANDWIDTH,
        &[b[0], b[1], b[2], b[3], limit_type],
    )
}

/// A User Control message (type 4): event type and its data.
pub fn user_control_event(event: u16, data: &[u8]) -> RtmpMessage {
    let mut body = Vec::with_capacity(2 + data.len());
    body.extend_from_slice(&event.to_be_bytes());
    body.extend_from_slice(data);
    control(type_id::USER_CONTROL, &body)
}

/// User Control StreamBegin for `stream_id`.
pub fn stream_begin(stream_id: u32) -> RtmpMessage {
    user_control_event(user_control::STREAM_BEGIN, &stream_id.to_be_bytes())
}

/// User Control StreamEOF for `stream_id`.
pub fn stream_eof(stream_id: u32) -> RtmpMessage {
    user_control_event(user_control::STREAM_EOF, &stream_id.to_be_bytes())
}

/// User Control StreamIsRecorded for `stream_id`.
pub fn stream_is_recorded(stream_id: u32) -> RtmpMessage {
    user_control_event(user_control::STREAM_IS_RECORDED, &stream_id.to_be_bytes())
}

/// User Control SetBufferLength (players send it; clients may too).
pub fn set_buffer_length(stream_id: u32, millis: u32) -> RtmpMessage {
    let mut d = [0u8; 8];
    d[..4].copy_from_slice(&stream_id.to_be_bytes());
    d[4..].copy_from_slice(&millis.to_be_bytes());
    user_control_event(user_control::SET_BUFFER_LENGTH, &d)
}

/// User Control PingRequest carrying `timestamp`.
pub fn ping_request(timestamp: u32) -> RtmpMessage {
    user_control_event(user_control::PING_REQUEST, &timestamp.to_be_bytes())
}

/// User Control PingResponse echoing the request's `timestamp`.
pub fn ping_response(timestamp: u32) -> RtmpMessage {
    user_control_event(user_control::PING_RESPONSE, &timestamp.to_be_bytes())
}

/// A User Control event as received: the event type and the first 4-byte field (stream
/// id or timestamp). `None` if the body is shorter than 6 bytes.
pub fn parse_user_control(payload: &[u8]) -> Option<(u16, u32)> {
    let b = payload.get(0..6)?;
    Some((
        u16::from_be_bytes([b[0], b[1]]),
        u32::from_be_bytes([b[2], b[3], b[4], b[5]]),
    ))
}

/// The 4-byte big-endian value of Set Chunk Size, Abort, Acknowledgement, Window
/// Acknowledgement Size or Set Peer Bandwidth. `None` if the body is shorter.
pub fn parse_control_u32(payload: &[u8]) -> Option<u32> {
    let b = payload.get(0..4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}
