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
