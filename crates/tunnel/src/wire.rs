//! The tunnel's wire format: frames on QUIC streams, and the messages they carry.
//!
//! Sans IO: [`FrameDecoder`] takes bytes as QUIC hands them over and yields whole frames;
//! [`encode_message`] and [`media_header`] build them. The drivers ([`crate::client`],
//! [`crate::server`]) only move bytes. See the crate documentation for the layout and
//! its versioning.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use longhaul_endpoint::Leg;
use serde::{Deserialize, Serialize};

/// Bytes before every frame's body: kind (1) and body length (4, big endian).
pub const FRAME_HEADER_LEN: usize = 5;
/// Frame kind of a JSON message. Every other kind is an RTMP message type id.
pub const KIND_MESSAGE: u8 = 0;
/// Largest JSON message body. The biggest one, an authorisation request, holds an app, a
/// tcUrl (ffmpeg caps it at 1,024 characters) and a stream name: a few KiB at most.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;
/// Largest media frame body (timestamp + payload). Matches the RTMP chunk decoder's cap on
/// one message, so anything an edge accepted from an encoder fits.
pub const MAX_MEDIA_LEN: usize = 16 * 1024 * 1024 + 4;

/// One RTMP message, unchanged: its type id, timestamp and payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame {
    /// RTMP message type id (8 audio, 9 video, 18 data, ...); never 0.
    pub kind: u8,
    /// RTMP timestamp in milliseconds.
    pub timestamp: u32,
    pub payload: Bytes,
}

/// What a node says first on the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub node_id: String,
    pub region: String,
    /// `edge` or `origin`.
    pub role: String,
    /// The sender's software version (`CARGO_PKG_VERSION`).
    pub version: String,
}

/// Health and load, sent both ways every report interval. Fields added later must be
/// `#[serde(default)]` so older peers' reports still parse.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The node takes new work.
    pub healthy: bool,
    /// Streams being published on the node.
    #[serde(default)]
    pub publishers: u64,
    /// Client connections open on the node.
    #[serde(default)]
    pub connections: u64,
    /// The node is shutting down: send it no new work, move what is there. Absent from
    /// older peers' reports (read as `false`).
    #[serde(default)]
    pub draining: bool,
}

/// An edge asks an origin whether a publish may go on, before it accepts it. Its
/// `Debug` redacts the token wherever the encoder put it (see
/// `longhaul_endpoint::redact_tokens`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthoriseRequest {
    /// The encoder's connect `app`, query included.
    pub app: String,
    pub tc_url: Option<String>,
    /// The publish name, query included.
    pub name: String,
    /// The leg the edge resolved (URL rules first, then the edge's default).
    pub leg: Leg,
    /// The encoder's address as the edge saw it.
    pub client_addr: String,
    /// `rtmp` or `rtmps`: how the encoder reached the edge.
    pub transport: String,
}

impl std::fmt::Debug for AuthoriseRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use longhaul_endpoint::redact_tokens as redact;
        f.debug_struct("AuthoriseRequest")
            .field("app", &redact(&self.app))
            .field("tc_url", &self.tc_url.as_deref().map(redact))
            .field("name", &redact(&self.name))
            .field("leg", &self.leg)
            .field("client_addr", &self.client_addr)
            .field("transport", &self.transport)
            .finish()
    }
}

/// An origin's answer to an [`AuthoriseRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Go on: open a publish stream with this grant.
    Allowed {
        grant: u64,
        stream_name: String,
        /// The token generation the publish was authorised with, so the edge can tell
        /// which of its streams a later [`Revocation`] cuts. Absent from older origins
        /// and from authorities without generations (an HTTP callback).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        generation: Option<u32>,
    },
    /// Refused: tell the encoder `description` with RTMP status `code`.
    Refused {
        code: String,
        /// Short machine-readable reason, the edge's metric label (`wrong_token`, ...).
        reason: String,
        description: String,
    },
}

/// The first frame of a publish stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishHeader {
    /// From [`Verdict::Allowed`]: ties the stream to an authorisation.
    pub grant: u64,
    pub stream_name: String,
    /// The encoder's address as the edge saw it.
    pub client_addr: String,
}

/// Why an origin ended a publish stream, for the encoder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEnd {
    /// RTMP status code (`NetStream.Publish.Rejected`, ...).
    pub code: String,
    pub description: String,
}

/// An origin tells its edges to cut live publishes of an entry: its token was
/// regenerated, it was deleted, or an operator kicked it. Sent on the control stream to
/// every connected edge; an edge cuts the streams it relays for the entry (to any
/// origin) whose authorised generation the revocation covers, telling each encoder
/// `description` with RTMP status `code`, and closing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub entry_id: String,
    /// Cut publishes authorised with a token generation older than this; absent: cut
    /// every publish of the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_generation: Option<u32>,
    /// RTMP status code for the encoder (`NetStream.Publish.Rejected`).
    pub code: String,
    /// Short machine-readable reason, a metric label (`token_revoked`, `entry_deleted`,
    /// `kicked`).
    pub reason: String,
    pub description: String,
}

/// Every JSON message, on the control stream or a publish stream.
///
/// Tagged by `type`. A message of a type this version does not know decodes to
/// [`Message::Unknown`] and is skipped, so a newer peer can add messages without a new ALPN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    Hello(Hello),
    Report(LoadReport),
    Authorise {
        id: u64,
        #[serde(flatten)]
        request: AuthoriseRequest,
    },
    Verdict {
        id: u64,
        #[serde(flatten)]
        verdict: Verdict,
    },
    Publish(PublishHeader),
    End(StreamEnd),
    Revoke(Revocation),
    #[serde(other)]
    Unknown,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Message(Message),
    Media(MediaFrame),
}

/// A frame that breaks the format. The stream it came on cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of kind {kind} is {len} bytes, over the {max}-byte limit")]
    TooLong { kind: u8, len: usize, max: usize },
    #[error("media frame of kind {kind} is {len} bytes, too short for its timestamp")]
    MediaTooShort { kind: u8, len: usize },
    #[error("message is not valid JSON of a known shape: {0}")]
    BadMessage(String),
}

/// Encodes a JSON message as a frame.
pub fn encode_message(message: &Message) -> Bytes {
    // Serialising these plain structs cannot fail; the fallback keeps the no-panic rule.
    let body = serde_json::to_vec(message).unwrap_or_default();
    let mut out = BytesMut::with_capacity(FRAME_HEADER_LEN + body.len());
    out.put_u8(KIND_MESSAGE);
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    out.freeze()
}

/// The 9 bytes that go before a media frame's payload, so the payload itself is written
/// from its own buffer without a copy.
pub fn media_header(frame: &MediaFrame) -> [u8; FRAME_HEADER_LEN + 4] {
    let mut h = [0u8; FRAME_HEADER_LEN + 4];
    h[0] = frame.kind;
    h[1..5].copy_from_slice(&((frame.payload.len() + 4) as u32).to_be_bytes());
    h[5..9].copy_from_slice(&frame.timestamp.to_be_bytes());
    h
}

/// Payloads shorter than this are copied next to their frame header when a batch is
/// encoded ([`encode_media_batch`]); longer ones go out as their own buffer, uncopied.
/// 1 KiB: audio frames (about 200-400 bytes) and small video frames are copied, which
/// costs less than the buffer each would otherwise be in QUIC's send queue (a `Bytes`
/// slot and an allocation, held until acknowledged: a flood of empty messages held 10 MB
/// of them per stream, measured with heaptrack on an edge); video keyframes and most
/// inter frames of a live rendition are larger and are not copied.
pub const COPY_BELOW: usize = 1024;

/// Encodes media frames into as few buffers as the copy rule allows: headers and small
/// payloads ([`COPY_BELOW`]) run together in one buffer; each larger payload is its own,
/// shared with the caller. The buffers, in order, are the frames' [`encode_media`]
/// encodings back to back.
pub fn encode_media_batch<'a>(frames: impl IntoIterator<Item = &'a MediaFrame>) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut run = BytesMut::new();
    for frame in frames {
        run.put_slice(&media_header(frame));
        if frame.payload.len() < COPY_BELOW {
            run.put_slice(&frame.payload);
        } else {
            chunks.push(run.split().freeze());
            chunks.push(frame.payload.clone());
        }
    }
    if !run.is_empty() {
        chunks.push(run.freeze());
    }
    chunks
}

/// Encodes a media frame into one buffer (tests and benchmarks; drivers write the header
/// and payload separately).
pub fn encode_media(frame: &MediaFrame) -> Bytes {
    let mut out = BytesMut::with_capacity(FRAME_HEADER_LEN + 4 + frame.payload.len());
    out.put_slice(&media_header(frame));
    out.put_slice(&frame.payload);
    out.freeze()
}

/// Splits a byte stream into frames.
///
/// Holds at most one frame plus one pushed chunk: a peer announcing a frame over the limit
/// is refused from its 5-byte header, before any of the body is buffered.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
    failed: bool,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held, waiting for the rest of their frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame, if one is buffered. After an error, every call fails again.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        if self.failed {
            return Err(WireError::BadMessage("stream already failed".into()));
        }
        let result = self.decode();
        if result.is_err() {
            self.failed = true;
            self.buf = BytesMut::new();
        }
        result
    }

    fn decode(&mut self) -> Result<Option<Frame>, WireError> {
        if self.buf.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let kind = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        let max = if kind == KIND_MESSAGE {
            MAX_MESSAGE_LEN
        } else {
            MAX_MEDIA_LEN
        };
        if len > max {
            return Err(WireError::TooLong { kind, len, max });
        }
        if kind != KIND_MESSAGE && len < 4 {
            return Err(WireError::MediaTooShort { kind, len });
        }
        if self.buf.len() < FRAME_HEADER_LEN + len {
            // Grow with the data that arrives, not with what the header announces: a
            // peer announcing 16 MiB and sending 5 bytes holds 5 bytes here.
            return Ok(None);
        }
        self.buf.advance(FRAME_HEADER_LEN);
        let mut body = self.buf.split_to(len).freeze();
        if kind == KIND_MESSAGE {
            let message =
                serde_json::from_slice(&body).map_err(|e| WireError::BadMessage(e.to_string()))?;
            return Ok(Some(Frame::Message(message)));
        }
        let timestamp = body.get_u32();
        Ok(Some(Frame::Media(MediaFrame {
            kind,
            timestamp,
            payload: body,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8], step: usize) -> Result<Vec<Frame>, WireError> {
        let mut d = FrameDecoder::new();
        let mut out = Vec::new();
        for chunk in bytes.chunks(step.max(1)) {
            d.push(chunk);
            while let Some(f) = d.next_frame()? {
                out.push(f);
            }
        }
        Ok(out)
    }

    fn sample() -> (Vec<Frame>, Vec<u8>) {
        let frames = vec![
            Frame::Message(Message::Publish(PublishHeader {
                grant: 7,
                stream_name: "1_abcdefgh_1".into(),
                client_addr: "198.51.100.4:50000".into(),
            })),
            Frame::Media(MediaFrame {
                kind: 9,
                timestamp: 40,
                payload: Bytes::from_static(&[0x17, 1, 0, 0, 0, 1, 2, 3]),
            }),
            Frame::Media(MediaFrame {
                kind: 8,
                timestamp: u32::MAX,
                payload: Bytes::new(),
            }),
            Frame::Message(Message::End(StreamEnd {
                code: "NetStream.Publish.Rejected".into(),
                description: "taken over".into(),
            })),
        ];
        let mut bytes = Vec::new();
        for f in &frames {
            match f {
                Frame::Message(m) => bytes.extend_from_slice(&encode_message(m)),
                Frame::Media(m) => bytes.extend_from_slice(&encode_media(m)),
            }
        }
        (frames, bytes)
    }

    #[test]
    fn frames_round_trip_whatever_the_read_size() {
        let (frames, bytes) = sample();
        for step in [1, 2, 5, 9, 13, 64, bytes.len()] {
            assert_eq!(decode_all(&bytes, step).unwrap(), frames, "step {step}");
        }
    }

    #[test]
    fn a_batch_is_its_frames_back_to_back_with_large_payloads_uncopied() {
        let big = Bytes::from(vec![7u8; COPY_BELOW]);
        let frames: Vec<MediaFrame> = [
            Bytes::new(),
            Bytes::from_static(b"abc"),
            big.clone(),
            Bytes::new(),
            big.clone(),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, payload)| MediaFrame {
            kind: 8 + (i % 2) as u8,
            timestamp: i as u32,
            payload,
        })
        .collect();
        let chunks = encode_media_batch(&frames);
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
        let expected: Vec<u8> = frames
            .iter()
            .flat_map(|f| encode_media(f).to_vec())
            .collect();
        assert_eq!(joined, expected);
        // headers+empty+abc+header | big | header+empty+header | big
        assert_eq!(chunks.len(), 4);
        assert_eq!(
            chunks[1].as_ptr(),
            big.as_ptr(),
            "large payloads are shared"
        );
        assert_eq!(chunks[3].as_ptr(), big.as_ptr());
        let mut d = FrameDecoder::new();
        d.push(&joined);
        for f in &frames {
            assert_eq!(d.next_frame(), Ok(Some(Frame::Media(f.clone()))));
        }
        assert!(encode_media_batch(&[]).is_empty());
    }

    #[test]
    fn media_header_is_kind_length_timestamp() {
        let f = MediaFrame {
            kind: 9,
            timestamp: 0x01020304,
            payload: Bytes::from_static(b"abc"),
        };
        assert_eq!(media_header(&f), [9, 0, 0, 0, 7, 1, 2, 3, 4]);
    }

    #[test]
    fn oversized_frames_are_refused_from_their_header() {
        let mut d = FrameDecoder::new();
        d.push(&[KIND_MESSAGE, 0, 1, 0, 1]); // 65,537-byte message
        assert_eq!(
            d.next_frame(),
            Err(WireError::TooLong {
                kind: 0,
                len: 65_537,
                max: MAX_MESSAGE_LEN
            })
        );
        assert!(d.next_frame().is_err(), "a failed stream stays failed");
        let mut d = FrameDecoder::new();
        d.push(&[9, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            d.next_frame(),
            Err(WireError::TooLong { kind: 9, .. })
        ));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn media_without_a_timestamp_is_refused() {
        let mut d = FrameDecoder::new();
        d.push(&[8, 0, 0, 0, 3, 1, 2, 3]);
        assert_eq!(
            d.next_frame(),
            Err(WireError::MediaTooShort { kind: 8, len: 3 })
        );
    }

    #[test]
    fn bad_json_is_an_error_and_unknown_types_are_skippable() {
        let mut d = FrameDecoder::new();
        let body = br#"{"type":"drain","deadline_ms":5000}"#;
        d.push(&[0, 0, 0, 0, body.len() as u8]);
        d.push(body);
        assert_eq!(d.next_frame(), Ok(Some(Frame::Message(Message::Unknown))));
        d.push(&[0, 0, 0, 0, 3]);
        d.push(b"{x}");
        assert!(matches!(d.next_frame(), Err(WireError::BadMessage(_))));
    }

    #[test]
    fn messages_have_a_stable_json_shape() {
        let m = Message::Verdict {
            id: 3,
            verdict: Verdict::Refused {
                code: "NetStream.Publish.Rejected".into(),
                reason: "wrong_token".into(),
                description: "publish refused: wrong token".into(),
            },
        };
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "verdict", "id": 3, "verdict": "refused",
                "code": "NetStream.Publish.Rejected", "reason": "wrong_token",
                "description": "publish refused: wrong token"})
        );
        let a = Message::Authorise {
            id: 1,
            request: AuthoriseRequest {
                app: "kLive/?t=x".into(),
                tc_url: None,
                name: "1_abcdefgh_1".into(),
                leg: Leg::Backup,
                client_addr: "[::1]:5".into(),
                transport: "rtmp".into(),
            },
        };
        let back: Message = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn revocations_round_trip_and_older_verdicts_parse() {
        let r = Message::Revoke(Revocation {
            entry_id: "1_abcdefgh".into(),
            before_generation: Some(3),
            code: "NetStream.Publish.Rejected".into(),
            reason: "token_revoked".into(),
            description: "publish stopped: the token was regenerated".into(),
        });
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["type"], "revoke");
        assert_eq!(json["before_generation"], 3);
        let back: Message = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        // A deletion cuts every generation: the field is left out.
        let all: Message = serde_json::from_value(serde_json::json!({"type": "revoke",
            "entry_id": "1_abcdefgh", "code": "c", "reason": "entry_deleted",
            "description": "d"}))
        .unwrap();
        assert!(matches!(
            all,
            Message::Revoke(Revocation {
                before_generation: None,
                ..
            })
        ));
        // A verdict from an origin that predates generations.
        let old: Message = serde_json::from_value(serde_json::json!({"type": "verdict",
            "id": 1, "verdict": "allowed", "grant": 9, "stream_name": "1_abcdefgh_1"}))
        .unwrap();
        assert!(matches!(
            old,
            Message::Verdict {
                verdict: Verdict::Allowed {
                    generation: None,
                    ..
                },
                ..
            }
        ));
    }

    #[test]
    fn reports_carry_draining_and_older_reports_parse() {
        let r = Message::Report(LoadReport {
            healthy: false,
            publishers: 2,
            connections: 3,
            draining: true,
        });
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "report", "healthy": false, "publishers": 2,
                "connections": 3, "draining": true})
        );
        assert_eq!(serde_json::from_value::<Message>(json).unwrap(), r);
        // A report from a peer that predates `draining`.
        let old: Message = serde_json::from_value(serde_json::json!({"type": "report",
            "healthy": true, "publishers": 1, "connections": 1}))
        .unwrap();
        assert!(matches!(
            old,
            Message::Report(LoadReport {
                healthy: true,
                draining: false,
                ..
            })
        ));
    }

    #[test]
    fn an_authorise_request_shows_no_token_in_logs() {
        let r = AuthoriseRequest {
            app: "kLive/?t=sekrit1".into(),
            tc_url: Some("rtmp://h/kLive?t=sekrit2".into()),
            name: "1_abcdefgh_1?t=sekrit3".into(),
            leg: Leg::Primary,
            client_addr: "192.0.2.1:1".into(),
            transport: "rtmp".into(),
        };
        let shown = format!("{:?}", Message::Authorise { id: 1, request: r });
        assert!(!shown.contains("sekrit"), "{shown}");
        assert!(shown.contains("1_abcdefgh_1"), "{shown}");
    }
}
