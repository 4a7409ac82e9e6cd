//! Pieces both session state machines ([`crate::server`] and [`crate::client`]) share:
//! [`ControlState`] (acknowledgement window, pings), [`media_parts`] (media messages and
//! the parts of aggregates), chunk stream ids per kind of message, AMF0 data messages and
//! `onStatus` info objects. (The protocol control message builders, commands and the
//! aggregate parser are in [`crate::message`].)
//!
//! Kept private to the crate: the public surface is the sessions themselves.

use crate::amf0::{self, Amf0Value};
use crate::message::{self, type_id, user_control, Command, MessageError, RtmpMessage};
use bytes::BytesMut;

/// The protocol control state of one side of a connection: the bytes received, the
/// acknowledgement window the peer asked for (spec 5.4.4) and what was acknowledged.
#[derive(Debug, Default)]
pub(crate) struct ControlState {
    /// Window the peer asked us to acknowledge (its Window Acknowledgement Size).
    peer_window_ack_size: Option<u32>,
    bytes_received: u64,
    bytes_acknowledged: u64,
}

impl ControlState {
    /// Counts bytes received from the peer (handshake included: the spec counts them).
    pub(crate) fn count_received(&mut self, n: usize) {
        self.bytes_received += n as u64;
    }

    pub(crate) fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Acts on a protocol control or User Control message (types 3-6; the chunk decoder
    /// applies Set Chunk Size and Abort) and returns the reply to send on the control
    /// chunk stream, if any: a PingResponse to a PingRequest. Acknowledgements of what we
    /// sent, the peer's bandwidth hint and other User Control events need no action.
    pub(crate) fn handle(
        &mut self,
        message: &RtmpMessage,
    ) -> Result<Option<RtmpMessage>, &'static str> {
        match message.type_id {
            type_id::WINDOW_ACK_SIZE => {
                let size = message::parse_control_u32(&message.payload)
                    .ok_or("Window Acknowledgement Size shorter than 4 bytes")?;
                self.peer_window_ack_size = Some(size);
                Ok(None)
            }
            type_id::USER_CONTROL => Ok(match message::parse_user_control(&message.payload) {
                Some((user_control::PING_REQUEST, timestamp)) => {
                    Some(message::ping_response(timestamp))
                }
                _ => None,
            }),
            _ => Ok(None),
        }
    }

    /// The Acknowledgement to send when a window's worth of bytes arrived since the last.
    pub(crate) fn acknowledgement_due(&mut self) -> Option<RtmpMessage> {
        let window = self.peer_window_ack_size.filter(|w| *w > 0)?;
        if self.bytes_received - self.bytes_acknowledged < u64::from(window) {
            return None;
        }
        self.bytes_acknowledged = self.bytes_received;
        // The sequence number is the byte count so far, wrapping at 2^32 (spec 5.4.3).
        Some(message::acknowledgement(self.bytes_received as u32))
    }
}

/// True for the message types that carry a stream's media: audio, video and data
/// (AMF0 or AMF3).
pub(crate) fn is_media_type(type_id: u8) -> bool {
    matches!(
        type_id,
        type_id::AUDIO | type_id::VIDEO | type_id::DATA_AMF0 | type_id::DATA_AMF3
    )
}

/// The media messages a message carries: itself for audio, video and data; the media
/// parts of an aggregate (other parts are dropped, and logged); nothing otherwise.
pub fn media_parts(message: RtmpMessage) -> Result<MediaParts, MessageError> {
    if message.type_id == type_id::AGGREGATE {
        let mut parts = message::split_aggregate(&message)?;
        parts.retain(|part| {
            let keep = is_media_type(part.type_id);
            if !keep {
                tracing::debug!(
                    type_id = part.type_id,
                    "dropping a non-media part of an aggregate message"
                );
            }
            keep
        });
        return Ok(MediaParts::Many(parts.into_iter()));
    }
    Ok(MediaParts::One(
        is_media_type(message.type_id).then_some(message),
    ))
}

/// Iterator over [`media_parts`]: no allocation for a plain media message.
#[derive(Debug)]
pub enum MediaParts {
    One(Option<RtmpMessage>),
    Many(std::vec::IntoIter<RtmpMessage>),
}

impl Iterator for MediaParts {
    type Item = RtmpMessage;
    fn next(&mut self) -> Option<RtmpMessage> {
        match self {
            MediaParts::One(m) => m.take(),
            MediaParts::Many(parts) => parts.next(),
        }
    }
}

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

/// [`Command::parse`], except that a command without a transaction id reads as
/// transaction id 0 with whatever follows the name as command object and arguments:
/// ffmpeg's own RTMP server (`-listen 1`) answers `FCPublish` with a bare `onFCPublish`
/// string, and a client must not fail on it.
pub(crate) fn parse_command(message: &RtmpMessage) -> Result<Command, MessageError> {
    match Command::parse(message) {
        Err(MessageError::MissingTransactionId { name }) => {
            let body = if message.type_id == type_id::COMMAND_AMF3 {
                message.payload.get(1..).unwrap_or_default()
            } else {
                &message.payload[..]
            };
            let mut values = amf0::decode_all(body)?.into_iter().skip(1);
            let command_object = values.next().unwrap_or(Amf0Value::Null);
            Ok(Command {
                name,
                transaction_id: 0.0,
                command_object,
                arguments: values.collect(),
            })
        }
        other => other,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_state_windows_and_pings() {
        let mut c = ControlState::default();
        c.count_received(5000);
        assert_eq!(c.acknowledgement_due(), None, "no window announced");
        assert_eq!(c.handle(&message::window_ack_size(1000)), Ok(None));
        assert_eq!(
            c.acknowledgement_due(),
            Some(message::acknowledgement(5000))
        );
        assert_eq!(c.acknowledgement_due(), None);
        c.count_received(999);
        assert_eq!(c.acknowledgement_due(), None);
        c.count_received(1);
        assert_eq!(
            c.acknowledgement_due(),
            Some(message::acknowledgement(6000))
        );
        assert_eq!(c.bytes_received(), 6000);
        assert_eq!(
            c.handle(&message::ping_request(42)),
            Ok(Some(message::ping_response(42)))
        );
        assert_eq!(c.handle(&message::stream_begin(1)), Ok(None));
        let short = RtmpMessage {
            payload: bytes::Bytes::from_static(&[0, 1]),
            ..message::window_ack_size(1)
        };
        assert!(c.handle(&short).is_err());
        // A zero window never asks for acknowledgements.
        c.handle(&message::window_ack_size(0)).unwrap();
        c.count_received(1 << 20);
        assert_eq!(c.acknowledgement_due(), None);
    }

    #[test]
    fn media_parts_of_messages_and_aggregates() {
        let video = RtmpMessage {
            timestamp: 7,
            type_id: type_id::VIDEO,
            stream_id: 1,
            payload: bytes::Bytes::from_static(b"\x17"),
        };
        assert_eq!(
            media_parts(video.clone()).unwrap().collect::<Vec<_>>(),
            vec![video.clone()]
        );
        let command = Command::new("x", 1.0, Amf0Value::Null, vec![]).to_message(0);
        assert_eq!(media_parts(command).unwrap().count(), 0);
        // An aggregate of a video tag and a command tag: the command part is dropped.
        let mut body = Vec::new();
        for (t, b) in [(9u8, &b"\x17"[..]), (20, &b"\x05"[..])] {
            let m = RtmpMessage {
                timestamp: 0,
                type_id: t,
                stream_id: 0,
                payload: bytes::Bytes::copy_from_slice(b),
            };
            body.extend_from_slice(&crate::flv::tag_header(&m));
            body.extend_from_slice(b);
            body.extend_from_slice(&crate::flv::tag_trailer(&m));
        }
        let aggregate = RtmpMessage {
            type_id: type_id::AGGREGATE,
            payload: body.into(),
            ..video.clone()
        };
        let parts: Vec<_> = media_parts(aggregate).unwrap().collect();
        assert_eq!(parts, vec![video]);
    }

    #[test]
    fn commands_without_a_transaction_id_are_read() {
        let bare = data_message(0, &[string("onFCPublish")]);
        let bare = RtmpMessage {
            type_id: type_id::COMMAND_AMF0,
            ..bare
        };
        let c = parse_command(&bare).unwrap();
        assert_eq!((c.name.as_str(), c.transaction_id), ("onFCPublish", 0.0));
        assert_eq!(c.command_object, Amf0Value::Null);
        let odd = RtmpMessage {
            type_id: type_id::COMMAND_AMF0,
            ..data_message(0, &[string("onStatus"), Amf0Value::Null, object(&[])])
        };
        assert_eq!(parse_command(&odd).unwrap().arguments, vec![object(&[])]);
    }

    #[test]
    fn play_housekeeping_is_recognised() {
        let sample_access =
            data_message(1, &[string("|RtmpSampleAccess"), Amf0Value::Boolean(true)]);
        assert!(is_play_housekeeping(&sample_access));
        let metadata = data_message(1, &[string("onMetaData"), object(&[])]);
        assert!(!is_play_housekeeping(&metadata));
        let garbage = RtmpMessage {
            payload: bytes::Bytes::from_static(&[0x02, 0xff]),
            ..metadata
        };
        assert!(!is_play_housekeeping(&garbage));
    }

    #[test]
    fn status_fields_read_from_info_objects() {
        let info = status_info("error", "NetStream.Publish.BadName", "taken");
        assert_eq!(
            read_status(Some(&info)),
            (
                "error".into(),
                "NetStream.Publish.BadName".into(),
                "taken".into()
            )
        );
        assert_eq!(
            read_status(None),
            (String::new(), String::new(), String::new())
        );
    }
}
