//! Pieces both session state machines ([`crate::server`] and [`crate::client`]) share:
//! chunk stream ids per kind of message, protocol control and user control messages,
//! AMF0 command messages and `onStatus` info objects.
//!
//! Kept private to the crate: the public surface is the sessions themselves.

use crate::amf0::{self, Amf0Value};
use crate::message::{type_id, RtmpMessage};
use bytes::{BufMut, Bytes, BytesMut};

/// Chunk stream ids used for what we send. The spec reserves 2 for protocol control
/// messages; the rest follows what nginx-rtmp and SRS use, so captures look familiar:
/// commands on 3, audio on 4, data on 5, video on 6. Separate ids for audio and video keep
/// each stream's header compression effective (type 2/3 chunk headers).
pub(crate) mod csid {
    pub const CONTROL: u32 = 2;
    pub const COMMAND: u32 = 3;
    pub const AUDIO: u32 = 4;
    pub const DATA: u32 = 5;
    pub const VIDEO: u32 = 6;
}

/// Chunk stream id for a media/data message of this type.
pub(crate) fn media_csid(type_id: u8) -> u32 {
    match type_id {
        type_id::AUDIO => csid::AUDIO,
        type_id::VIDEO => csid::VIDEO,
        type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3 => csid::COMMAND,
        _ => csid::DATA,
    }
}

/// User control event types (RTMP spec 7.1.7).
pub(crate) mod user_control {
    pub const STREAM_BEGIN: u16 = 0;
    pub const SET_BUFFER_LENGTH: u16 = 3;
    pub const PING_REQUEST: u16 = 6;
    pub const PING_RESPONSE: u16 = 7;
}

/// Set Peer Bandwidth limit type "dynamic" (RTMP spec 5.4.5).
pub(crate) const PEER_BANDWIDTH_DYNAMIC: u8 = 2;

fn control(type_id: u8, payload: Bytes) -> RtmpMessage {
    RtmpMessage {
        timestamp: 0,
        type_id,
        stream_id: 0,
        payload,
    }
}

pub(crate) fn set_chunk_size(size: u32) -> RtmpMessage {
    // The top bit must be zero (spec 5.4.1).
    control(
        type_id::SET_CHUNK_SIZE,
        Bytes::copy_from_slice(&(size & 0x7fff_ffff).to_be_bytes()),
    )
}

pub(crate) fn window_ack_size(size: u32) -> RtmpMessage {
    control(
        type_id::WINDOW_ACK_SIZE,
        Bytes::copy_from_slice(&size.to_be_bytes()),
    )
}

pub(crate) fn acknowledgement(sequence: u32) -> RtmpMessage {
    control(
        type_id::ACKNOWLEDGEMENT,
        Bytes::copy_from_slice(&sequence.to_be_bytes()),
    )
}

pub(crate) fn set_peer_bandwidth(size: u32, limit_type: u8) -> RtmpMessage {
    let mut p = BytesMut::with_capacity(5);
    p.put_u32(size);
    p.put_u8(limit_type);
    control(type_id::SET_PEER_BANDWIDTH, p.freeze())
}

/// A user control message whose event data is one u32 (StreamBegin, PingResponse, ...).
pub(crate) fn user_control_u32(event: u16, value: u32) -> RtmpMessage {
    let mut p = BytesMut::with_capacity(6);
    p.put_u16(event);
    p.put_u32(value);
    control(type_id::USER_CONTROL, p.freeze())
}

pub(crate) fn set_buffer_length(stream_id: u32, millis: u32) -> RtmpMessage {
    let mut p = BytesMut::with_capacity(10);
    p.put_u16(user_control::SET_BUFFER_LENGTH);
    p.put_u32(stream_id);
    p.put_u32(millis);
    control(type_id::USER_CONTROL, p.freeze())
}

/// Reads a big-endian u32 from the start of a payload, if it is long enough.
pub(crate) fn read_u32(payload: &[u8]) -> Option<u32> {
    let b: [u8; 4] = payload.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// Reads a user control message: event type and the rest of the payload.
pub(crate) fn read_user_control(payload: &[u8]) -> Option<(u16, &[u8])> {
    let b: [u8; 2] = payload.get(..2)?.try_into().ok()?;
    Some((u16::from_be_bytes(b), payload.get(2..)?))
}

/// An AMF0 command message: `name`, transaction id, command object, arguments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Command {
    pub name: String,
    pub transaction_id: f64,
    pub command_object: Amf0Value,
    pub arguments: Vec<Amf0Value>,
}

impl Command {
    pub fn new(
        name: &str,
        transaction_id: f64,
        command_object: Amf0Value,
        arguments: Vec<Amf0Value>,
    ) -> Self {
        Self {
            name: name.to_string(),
            transaction_id,
            command_object,
            arguments,
        }
    }

    /// Parses a command message (type 20, or type 17 whose body is AMF0 after a leading
    /// 0 byte: what Flash sends when its object encoding is AMF3).
    pub fn parse(message: &RtmpMessage) -> Result<Self, String> {
        let mut body: &[u8] = &message.payload;
        if message.type_id == type_id::COMMAND_AMF3 {
            // AMF3 command messages carry a format byte (0) before AMF0-encoded values.
            if body.first() == Some(&0) {
                body = &body[1..];
            }
        }
        let mut values = amf0::decode_all(body)
            .map_err(|e| format!("command body is not valid AMF0: {e}"))?
            .into_iter();
        let name = match values.next() {
            Some(Amf0Value::String(s)) | Some(Amf0Value::LongString(s)) => s,
            Some(other) => return Err(format!("command name is {other:?}, not a string")),
            None => return Err("empty command message".to_string()),
        };
        // Some peers omit the transaction id and command object in notifications.
        let transaction_id = values.next().and_then(|v| v.as_number()).unwrap_or(0.0);
        let command_object = values.next().unwrap_or(Amf0Value::Null);
        Ok(Self {
            name,
            transaction_id,
            command_object,
            arguments: values.collect(),
        })
    }

    pub fn to_message(&self, stream_id: u32) -> RtmpMessage {
        let mut out = BytesMut::with_capacity(128);
        amf0::encode(&Amf0Value::String(self.name.clone()), &mut out);
        amf0::encode(&Amf0Value::Number(self.transaction_id), &mut out);
        amf0::encode(&self.command_object, &mut out);
        amf0::encode_all(&self.arguments, &mut out);
        RtmpMessage {
            timestamp: 0,
            type_id: type_id::COMMAND_AMF0,
            stream_id,
            payload: out.freeze(),
        }
    }
}

/// An AMF0 data message (type 18) of `values`.
pub(crate) fn data_message(stream_id: u32, values: &[Amf0Value]) -> RtmpMessage {
    let mut out = BytesMut::with_capacity(64);
    amf0::encode_all(values, &mut out);
    RtmpMessage {
        timestamp: 0,
        type_id: type_id::DATA_AMF0,
        stream_id,
        payload: out.freeze(),
    }
}

pub(crate) fn string(s: &str) -> Amf0Value {
    Amf0Value::String(s.to_string())
}

pub(crate) fn object(props: &[(&str, Amf0Value)]) -> Amf0Value {
    Amf0Value::Object(
        props
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

/// The info object of `onStatus` / `_error`: level, code, description.
pub(crate) fn status_info(level: &str, code: &str, description: &str) -> Amf0Value {
    object(&[
        ("level", string(level)),
        ("code", string(code)),
        ("description", string(description)),
    ])
}

/// `onStatus` on `stream_id` (transaction id 0, null command object).
pub(crate) fn on_status(stream_id: u32, level: &str, code: &str, description: &str) -> RtmpMessage {
    Command::new(
        "onStatus",
        0.0,
        Amf0Value::Null,
        vec![status_info(level, code, description)],
    )
    .to_message(stream_id)
}

/// Reads level, code and description from an info object; missing fields are empty.
pub(crate) fn read_status(info: Option<&Amf0Value>) -> (String, String, String) {
    let field = |k: &str| {
        info.and_then(|i| i.get(k))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    (field("level"), field("code"), field("description"))
}

/// True for the data messages a server sends around `play` that are not part of the
/// stream (`|RtmpSampleAccess`, `onStatus` NetStream.Data.Start): a relay leg must not
/// forward them as media.
pub(crate) fn is_play_housekeeping(message: &RtmpMessage) -> bool {
    if message.type_id != type_id::DATA_AMF0 {
        return false;
    }
    let mut body: &[u8] = &message.payload;
    matches!(
        amf0::decode(&mut body),
        Ok(Amf0Value::String(s)) if s == "|RtmpSampleAccess" || s == "onStatus"
    )
}

/// Splits an aggregate message (type 22: FLV tags back to back, each followed by a 4-byte
/// previous-tag-size) into its messages. Timestamps are rebased so the first part carries
/// the aggregate's own timestamp (RTMP spec 7.1.6); the stream id is the aggregate's.
pub(crate) fn split_aggregate(message: &RtmpMessage) -> Result<Vec<RtmpMessage>, String> {
    /// FLV tag header: type 1, size 3, timestamp 3 + 1 extended, stream id 3.
    const TAG_HEADER_LEN: usize = 11;
    const BACK_POINTER_LEN: usize = 4;
    let body = &message.payload;
    let mut parts = Vec::new();
    let mut offset = 0usize;
    let mut first_timestamp: Option<u32> = None;
    while offset < body.len() {
        let header = body.get(offset..offset + TAG_HEADER_LEN).ok_or_else(|| {
            format!("aggregate message truncated in a tag header at byte {offset}")
        })?;
        let size = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
        let timestamp = u32::from_be_bytes([header[7], header[4], header[5], header[6]]);
        let start = offset + TAG_HEADER_LEN;
        let end = start + size;
        if end > body.len() {
            return Err(format!(
                "aggregate part at byte {offset} claims {size} bytes, only {} remain",
                body.len() - start
            ));
        }
        let base = *first_timestamp.get_or_insert(timestamp);
        parts.push(RtmpMessage {
            timestamp: message.timestamp.wrapping_add(timestamp.wrapping_sub(base)),
            type_id: header[0],
            stream_id: message.stream_id,
            payload: body.slice(start..end),
        });
        // The back pointer after the last tag may be missing in sloppy senders.
        offset = (end + BACK_POINTER_LEN).min(body.len());
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_round_trip_and_amf3_prefix() {
        let c = Command::new(
            "connect",
            1.0,
            object(&[("app", string("kLive/?t=abc"))]),
            vec![Amf0Value::Null],
        );
        let m = c.to_message(0);
        assert_eq!(Command::parse(&m).unwrap(), c);
        let mut amf3 = vec![0u8];
        amf3.extend_from_slice(&m.payload);
        let m3 = RtmpMessage {
            type_id: type_id::COMMAND_AMF3,
            payload: amf3.into(),
            ..m
        };
        assert_eq!(Command::parse(&m3).unwrap(), c);
    }

    #[test]
    fn bad_commands_are_errors_not_panics() {
        for body in [
            &b""[..],
            &[0x00, 0x3f][..],
            &[0x02, 0x00, 0x05, b'a'][..],
            &[0xff][..],
        ] {
            let m = RtmpMessage {
                timestamp: 0,
                type_id: type_id::COMMAND_AMF0,
                stream_id: 0,
                payload: Bytes::copy_from_slice(body),
            };
            assert!(Command::parse(&m).is_err(), "{body:?}");
        }
    }

    #[test]
    fn short_control_payloads_read_as_none() {
        assert_eq!(read_u32(&[1, 2, 3]), None);
        assert_eq!(read_u32(&[0, 0, 1, 0]), Some(256));
        assert_eq!(read_user_control(&[0]), None);
    }
}
