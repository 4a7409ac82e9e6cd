//! An RTMP message as it travels through longhaul: type, timestamp, stream id and payload.
//!
//! Media and data messages are forwarded byte for byte: the payload is a [`Bytes`] that
//! every player and relay leg shares, never a per-consumer copy.
//!
//! Also here: builders for the protocol control and User Control messages a session
//! sends, splitting of aggregate messages (type 22) into their parts, and [`Command`],
//! the AMF0 (and AMF0-in-AMF3-envelope) command message.

use crate::amf0::{self, Amf0Error, Amf0Value};
use crate::flv::{TagHeader, TAG_HEADER_LEN, TAG_TRAILER_LEN};
use bytes::{Bytes, BytesMut};

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

/// Why a message could not be taken apart.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MessageError {
    #[error("expected a message of type {expected}, got type {got}")]
    WrongType { expected: &'static str, got: u8 },
    #[error("aggregate message truncated at byte {offset}: {what} needs {needed} more bytes")]
    AggregateTruncated {
        offset: usize,
        what: &'static str,
        needed: usize,
    },
    #[error("command message is empty")]
    EmptyCommand,
    #[error("command message does not start with a name string")]
    CommandNameNotString,
    #[error("command {name} has no transaction id number")]
    MissingTransactionId { name: String },
    #[error("AMF3 command message without the 0x00 AMF0 format marker (first byte 0x{0:02x})")]
    Amf3FormatMarker(u8),
    #[error("command body is not valid AMF0: {0}")]
    Amf0(#[from] Amf0Error),
}

/// Splits an aggregate message (type 22) into its parts (spec 7.1.6): each part is an FLV
/// tag ([`TagHeader`], body, 32-bit back pointer). A part's timestamp is the aggregate's plus its offset from
/// the first part's; its stream id is the aggregate's; its payload is a zero-copy slice.
///
/// Back pointers are not checked (encoders get them wrong and nothing depends on them);
/// a missing back pointer after the last tag is accepted.
pub fn split_aggregate(msg: &RtmpMessage) -> Result<Vec<RtmpMessage>, MessageError> {
    if msg.type_id != type_id::AGGREGATE {
        return Err(MessageError::WrongType {
            expected: "22 (aggregate)",
            got: msg.type_id,
        });
    }
    let p = &msg.payload;
    let mut parts = Vec::new();
    let mut offset = 0;
    let mut first_ts = None;
    while offset < p.len() {
        let Some(h) = TagHeader::parse(&p[offset..]) else {
            return Err(MessageError::AggregateTruncated {
                offset,
                what: "tag header",
                needed: offset + TAG_HEADER_LEN - p.len(),
            });
        };
        let ts = h.timestamp;
        let body_start = offset + TAG_HEADER_LEN;
        let body_end = body_start + h.data_size as usize;
        if body_end > p.len() {
            return Err(MessageError::AggregateTruncated {
                offset,
                what: "tag body",
                needed: body_end - p.len(),
            });
        }
        let first = *first_ts.get_or_insert(ts);
        parts.push(RtmpMessage {
            timestamp: msg.timestamp.wrapping_add(ts.wrapping_sub(first)),
            type_id: h.tag_type,
            stream_id: msg.stream_id,
            payload: p.slice(body_start..body_end),
        });
        offset = body_end;
        if offset < p.len() {
            let next = offset + TAG_TRAILER_LEN;
            if next > p.len() {
                return Err(MessageError::AggregateTruncated {
                    offset,
                    what: "back pointer",
                    needed: next - p.len(),
                });
            }
            offset = next;
        }
    }
    Ok(parts)
}

/// A command message: `connect`, `createStream`, `publish`, `_result`, `onStatus`, ...
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction_id: f64,
    /// The command object (`Null` when the command has none).
    pub command_object: Amf0Value,
    /// Everything after the command object.
    pub arguments: Vec<Amf0Value>,
}

impl Command {
    pub fn new(
        name: impl Into<String>,
        transaction_id: f64,
        command_object: Amf0Value,
        arguments: Vec<Amf0Value>,
    ) -> Self {
        Self {
            name: name.into(),
            transaction_id,
            command_object,
            arguments,
        }
    }

    /// Parses a command message: type 20 (AMF0), or type 17 (AMF3 command), whose body is
    /// a 0x00 format marker followed by AMF0 values. A missing command object reads as
    /// `Null`.
    pub fn parse(msg: &RtmpMessage) -> Result<Command, MessageError> {
        let body: &[u8] = match msg.type_id {
            type_id::COMMAND_AMF0 => &msg.payload,
            type_id::COMMAND_AMF3 => match msg.payload.split_first() {
                Some((0x00, rest)) => rest,
                Some((&b, _)) => return Err(MessageError::Amf3FormatMarker(b)),
                None => return Err(MessageError::EmptyCommand),
            },
            got => {
                return Err(MessageError::WrongType {
                    expected: "20 or 17 (command)",
                    got,
                })
            }
        };
        if body.is_empty() {
            return Err(MessageError::EmptyCommand);
        }
        let mut values = amf0::decode_all(body)?.into_iter();
        let name = match values.next() {
            Some(Amf0Value::String(s)) | Some(Amf0Value::LongString(s)) => s,
            _ => return Err(MessageError::CommandNameNotString),
        };
        let transaction_id = match values.next() {
            Some(Amf0Value::Number(n)) => n,
            _ => return Err(MessageError::MissingTransactionId { name }),
        };
        let command_object = values.next().unwrap_or(Amf0Value::Null);
        Ok(Command {
            name,
            transaction_id,
            command_object,
            arguments: values.collect(),
        })
    }

    /// The AMF0 encoding of the command (type 20, timestamp 0) on `stream_id`.
    pub fn to_message(&self, stream_id: u32) -> RtmpMessage {
        let mut out = BytesMut::new();
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

#[cfg(test)]
mod tests {
    use super::*;
    use Amf0Value as V;

    fn tag(type_id: u8, ts: u32, body: &[u8]) -> Vec<u8> {
        let mut v = vec![type_id];
        v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        v.extend_from_slice(&ts.to_be_bytes()[1..]);
        v.push((ts >> 24) as u8);
        v.extend_from_slice(&[0, 0, 0]);
        v.extend_from_slice(body);
        v.extend_from_slice(&((body.len() + 11) as u32).to_be_bytes());
        v
    }

    fn aggregate(ts: u32, body: Vec<u8>) -> RtmpMessage {
        RtmpMessage {
            timestamp: ts,
            type_id: type_id::AGGREGATE,
            stream_id: 1,
            payload: body.into(),
        }
    }

    #[test]
    fn split_aggregate_parts() {
        let mut b = tag(9, 0x0100_0010, &[0x17, 0x01, 0xaa]);
        b.extend(tag(8, 0x0100_0020, &[0xaf, 0x01]));
        b.extend(tag(9, 0x0100_0050, &[]));
        let agg = aggregate(5000, b);
        let parts = split_aggregate(&agg).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts
                .iter()
                .map(|m| (m.timestamp, m.type_id, m.stream_id))
                .collect::<Vec<_>>(),
            vec![(5000, 9, 1), (5016, 8, 1), (5064, 9, 1)]
        );
        assert_eq!(&parts[0].payload[..], &[0x17, 0x01, 0xaa]);
        assert_eq!(&parts[1].payload[..], &[0xaf, 0x01]);
        // Zero copy: the part points into the aggregate's payload.
        let base = agg.payload.as_ptr() as usize;
        assert_eq!(parts[0].payload.as_ptr() as usize, base + 11);
    }

    #[test]
    fn split_aggregate_edge_cases() {
        assert_eq!(split_aggregate(&aggregate(0, vec![])), Ok(vec![]));
        // Last back pointer missing: accepted.
        let mut b = tag(9, 0, &[1, 2]);
        b.truncate(b.len() - 4);
        assert_eq!(split_aggregate(&aggregate(0, b)).unwrap().len(), 1);
        // Sub-timestamps going backwards wrap around consistently.
        let mut b = tag(9, 100, &[1]);
        b.extend(tag(9, 90, &[2]));
        let parts = split_aggregate(&aggregate(1000, b)).unwrap();
        assert_eq!(parts[1].timestamp, 990);
    }

    #[test]
    fn split_aggregate_errors() {
        let b = tag(9, 0, &[1, 2, 3]);
        let e = split_aggregate(&aggregate(0, b[..5].to_vec())).unwrap_err();
        assert!(matches!(
            e,
            MessageError::AggregateTruncated {
                what: "tag header",
                needed: 6,
                ..
            }
        ));
        let e = split_aggregate(&aggregate(0, b[..12].to_vec())).unwrap_err();
        assert!(matches!(
            e,
            MessageError::AggregateTruncated {
                what: "tag body",
                needed: 2,
                ..
            }
        ));
        let mut two = b.clone();
        two.extend(tag(9, 0, &[]));
        let mut cut = b[..15].to_vec();
        cut.push(0);
        let e = split_aggregate(&aggregate(0, cut)).unwrap_err();
        assert!(
            matches!(
                e,
                MessageError::AggregateTruncated {
                    what: "back pointer",
                    ..
                }
            ),
            "{e}"
        );
        let not = RtmpMessage {
            type_id: 9,
            ..aggregate(0, vec![])
        };
        assert!(matches!(
            split_aggregate(&not),
            Err(MessageError::WrongType { got: 9, .. })
        ));
        assert_eq!(split_aggregate(&aggregate(0, two)).unwrap().len(), 2);
    }

    fn connect() -> Command {
        Command::new(
            "connect",
            1.0,
            V::Object(vec![
                ("app".into(), V::String("kLive".into())),
                (
                    "fourCcList".into(),
                    V::StrictArray(vec![V::String("hvc1".into())]),
                ),
            ]),
            vec![],
        )
    }

    #[test]
    fn command_round_trip_amf0_and_amf3_envelope() {
        let c = connect();
        let m = c.to_message(0);
        assert_eq!((m.type_id, m.stream_id, m.timestamp), (20, 0, 0));
        assert_eq!(Command::parse(&m), Ok(c.clone()));
        let mut body = vec![0x00];
        body.extend_from_slice(&m.payload);
        let m3 = RtmpMessage {
            type_id: type_id::COMMAND_AMF3,
            payload: body.into(),
            ..m
        };
        assert_eq!(Command::parse(&m3), Ok(c));
        let publish = Command::new(
            "publish",
            5.0,
            V::Null,
            vec![V::String("key?t=1".into()), V::String("live".into())],
        );
        assert_eq!(Command::parse(&publish.to_message(1)), Ok(publish));
    }

    #[test]
    fn command_without_object_reads_null() {
        let mut out = BytesMut::new();
        amf0::encode_all(&[V::String("ping".into()), V::Number(0.0)], &mut out);
        let m = RtmpMessage {
            timestamp: 0,
            type_id: 20,
            stream_id: 0,
            payload: out.freeze(),
        };
        let c = Command::parse(&m).unwrap();
        assert_eq!(c.command_object, V::Null);
        assert!(c.arguments.is_empty());
    }

    #[test]
    fn command_errors() {
        let m = |type_id: u8, body: &[u8]| RtmpMessage {
            timestamp: 0,
            type_id,
            stream_id: 0,
            payload: Bytes::copy_from_slice(body),
        };
        assert_eq!(Command::parse(&m(20, &[])), Err(MessageError::EmptyCommand));
        assert_eq!(Command::parse(&m(17, &[])), Err(MessageError::EmptyCommand));
        assert_eq!(
            Command::parse(&m(17, &[0x00])),
            Err(MessageError::EmptyCommand)
        );
        assert_eq!(
            Command::parse(&m(17, &[0x02, 0, 1])),
            Err(MessageError::Amf3FormatMarker(2))
        );
        assert!(matches!(
            Command::parse(&m(9, &[0x02])),
            Err(MessageError::WrongType { got: 9, .. })
        ));
        assert_eq!(
            Command::parse(&m(20, &[0x05])),
            Err(MessageError::CommandNameNotString)
        );
        assert_eq!(
            Command::parse(&m(20, &[0x02, 0, 1, b'x'])),
            Err(MessageError::MissingTransactionId { name: "x".into() })
        );
        assert_eq!(
            Command::parse(&m(20, &[0x02, 0, 1, b'x', 0x05])),
            Err(MessageError::MissingTransactionId { name: "x".into() })
        );
        assert_eq!(
            Command::parse(&m(20, &[0x02, 0, 9, b'x'])),
            Err(MessageError::Amf0(Amf0Error::Truncated { needed: 8 }))
        );
        let e = Command::parse(&m(17, &[0x00, 0x11, 0x06])).unwrap_err();
        assert_eq!(e, MessageError::Amf0(Amf0Error::Amf3NotSupported));
        assert!(e.to_string().contains("AMF3"));
    }

    #[test]
    fn control_message_builders() {
        let m = set_chunk_size(4096);
        assert_eq!(
            (m.type_id, m.stream_id, &m.payload[..]),
            (1, 0, &[0, 0, 0x10, 0][..])
        );
        assert_eq!(parse_control_u32(&m.payload), Some(4096));
        assert_eq!(&abort(5).payload[..], &[0, 0, 0, 5]);
        assert_eq!(acknowledgement(7).type_id, 3);
        assert_eq!(
            &window_ack_size(2_500_000).payload[..],
            &2_500_000u32.to_be_bytes()
        );
        let bw = set_peer_bandwidth(2_500_000, bandwidth_limit::DYNAMIC);
        assert_eq!((bw.type_id, bw.payload.len(), bw.payload[4]), (6, 5, 2));
        let sb = stream_begin(1);
        assert_eq!((sb.type_id, &sb.payload[..]), (4, &[0, 0, 0, 0, 0, 1][..]));
        assert_eq!(parse_user_control(&ping_request(99).payload), Some((6, 99)));
        assert_eq!(
            parse_user_control(&ping_response(99).payload),
            Some((7, 99))
        );
        assert_eq!(parse_user_control(&stream_eof(3).payload), Some((1, 3)));
        assert_eq!(set_buffer_length(1, 3000).payload.len(), 10);
        assert_eq!(parse_user_control(&[0, 1]), None);
        assert_eq!(parse_control_u32(&[0, 1]), None);
    }
}
