//! Pieces both session state machines ([`crate::server`] and [`crate::client`]) share:
//! chunk stream ids per kind of message, AMF0 data messages and `onStatus` info objects.
//! (Protocol control messages, commands and aggregates are in [`crate::message`].)
//!
//! Kept private to the crate: the public surface is the sessions themselves.

use crate::amf0::{self, Amf0Value};
use crate::message::{type_id, Command, MessageError, RtmpMessage};
use bytes::BytesMut;

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
