//! The tunnel's wire format: frames on QUIC streams, and the messages they carry.
//!
//! Sans IO: [`FrameDecoder`] takes bytes as QUIC hands them over and yields whole frames;
//! [`encode_message`] and [`media_header`] build them, and for version 2
//! [`sequenced_header`], [`encode_sequenced_batch`] and [`encode_ack`]. The drivers
//! ([`crate::client`], [`crate::server`]) only move bytes. See the crate documentation
//! for the layout and its versioning.

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

/// Frame kind of a sequenced RTMP message (wire version 2): the body is `seq: u64`,
/// `type_id: u8`, `timestamp: u32` (all big endian), then the payload. No RTMP message
/// type id is this high (the spec's go up to 22), so v2 keeps v1's kinds as they were.
pub const KIND_SEQUENCED: u8 = 0xf0;
/// Frame kind of a cumulative acknowledgement (wire version 2, origin to edge on a
/// publish stream): the body is `seq: u64` (big endian), exactly [`ACK_LEN`] bytes.
pub const KIND_ACK: u8 = 0xf1;
/// Kinds from here on are reserved in version 2 (refused); in version 1 they are RTMP
/// message type ids like any other.
pub const FIRST_RESERVED_KIND: u8 = 0xf2;
/// What a sequenced frame's body holds before the payload: seq (8), type id (1),
/// timestamp (4).
pub const SEQUENCED_PREFIX_LEN: usize = 13;
/// Body length of an acknowledgement.
pub const ACK_LEN: usize = 8;

/// The wire format version a connection speaks, chosen by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WireVersion {
    /// `longhaul-tunnel/1`: media frames without sequence numbers.
    V1,
    /// `longhaul-tunnel/2`: sequenced media frames and acknowledgements on publish
    /// streams, so a publish can resume on another stream (see the crate documentation).
    V2,
}

impl WireVersion {
    /// The ALPN that names this version.
    pub fn alpn(self) -> &'static [u8] {
        match self {
            WireVersion::V1 => crate::ALPN,
            WireVersion::V2 => crate::ALPN_V2,
        }
    }

    /// The version an ALPN names; `None` for one this build does not speak.
    pub fn from_alpn(alpn: &[u8]) -> Option<Self> {
        [WireVersion::V2, WireVersion::V1]
            .into_iter()
            .find(|v| v.alpn() == alpn)
    }
}

/// One RTMP message, unchanged: its type id, timestamp and payload bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFrame {
    /// RTMP message type id (8 audio, 9 video, 18 data, ...); never 0.
    pub kind: u8,
    /// RTMP timestamp in milliseconds.
    pub timestamp: u32,
    pub payload: Bytes,
}

/// An RTMP message with its place in its publication (wire version 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequencedFrame {
    /// Numbers the publication's messages one by one, from 0, across every stream that
    /// carries it (a resumed stream goes on with the numbers of the one it replaces).
    pub seq: u64,
    pub frame: MediaFrame,
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
    /// Which of the sender's tunnels to this peer this is. An edge that runs one shard
    /// per core keeps one tunnel per shard to each origin (each driven by its shard's
    /// thread, so no one connection caps the node at a core); the origin keeps them side
    /// by side, one link per (edge, lane), instead of taking the second for a reconnect
    /// of the first. Absent from older peers' hellos: lane 0.
    #[serde(default)]
    pub lane: u16,
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
    /// Wire version 2: the edge's id for this encoder's publish (random), the same on
    /// the first stream and on every stream that resumes it. An origin whose hub holds a
    /// publication of `stream_name` with this id takes a resumed stream as that same
    /// publication. Absent on version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publication: Option<u64>,
    /// Wire version 2, on a stream that resumes `publication`: the seq of the first
    /// sequenced frame that follows. Unsequenced RTMP message frames before it are the
    /// configuration (metadata, sequence headers) re-sent for the resume. Absent on the
    /// publication's first stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<u64>,
}

/// The first frame of a pull stream: an origin asks a peer origin for one leg of a
/// rendition (origin peering). The peer answers on the same stream, for as long as the
/// asker keeps it open: [`Message::LegLive`] whenever a publication of that leg starts
/// there (or at once if one is live), followed by its RTMP messages as its players get
/// them (configuration, the GOP cache, then live); [`Message::LegGone`] when that
/// publication ends. It serves only legs published there, never ones it pulled itself,
/// so peers never feed one another in a ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullHeader {
    pub stream_name: String,
    pub leg: Leg,
}

/// The `reason` of a refusal by an origin that is draining: not the publish's fault, so an
/// edge resuming a stream tries another origin instead of telling the encoder.
pub const DRAINING_REASON: &str = "origin_draining";

/// Why an origin ended a publish stream, for the encoder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEnd {
    /// RTMP status code (`NetStream.Publish.Rejected`, ...).
    pub code: String,
    pub description: String,
    /// Wire version 2: the end is the origin's, not the publish's (it is shutting down,
    /// or its side of the stream failed): an edge that can resume the publish elsewhere
    /// does, and the encoder hears nothing. Absent (false): tell the encoder (revoked,
    /// taken over by another connection, refused).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retry: bool,
}

impl StreamEnd {
    /// An end to pass to the encoder.
    pub fn new(code: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            description: description.into(),
            retry: false,
        }
    }
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
    /// Pull stream, asker to peer: the leg wanted.
    Pull(PullHeader),
    /// Pull stream, peer to asker: a publication of the leg started; its messages follow.
    LegLive,
    /// Pull stream, peer to asker: that publication ended.
    LegGone,
    #[serde(other)]
    Unknown,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Message(Message),
    Media(MediaFrame),
    /// Version 2 only: a media frame with its sequence number.
    Sequenced(SequencedFrame),
    /// Version 2 only: everything up to and including this seq is in the origin's hub
    /// (or was dropped there as already seen or past a gap).
    Ack(u64),
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
    #[error("sequenced frame is {len} bytes, too short for its seq, type and timestamp")]
    SequencedTooShort { len: usize },
    #[error("sequenced frame {seq} carries RTMP message type 0")]
    SequencedTypeZero { seq: u64 },
    #[error("acknowledgement is {len} bytes, not {ACK_LEN}")]
    AckLength { len: usize },
    #[error("frame kind {kind} is reserved in wire version 2")]
    ReservedKind { kind: u8 },
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
    batch(frames.into_iter().map(|f| (media_header(f), &f.payload)))
}

/// [`encode_media_batch`] for version 2's sequenced frames: the buffers are the frames'
/// [`encode_sequenced`] encodings back to back, under the same copy rule.
pub fn encode_sequenced_batch<'a>(
    frames: impl IntoIterator<Item = (u64, &'a MediaFrame)>,
) -> Vec<Bytes> {
    batch(
        frames
            .into_iter()
            .map(|(seq, f)| (sequenced_header(seq, f), &f.payload)),
    )
}

fn batch<'a, const N: usize>(frames: impl Iterator<Item = ([u8; N], &'a Bytes)>) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut run = BytesMut::new();
    for (header, payload) in frames {
        run.put_slice(&header);
        if payload.len() < COPY_BELOW {
            run.put_slice(payload);
        } else {
            chunks.push(run.split().freeze());
            chunks.push(payload.clone());
        }
    }
    if !run.is_empty() {
        chunks.push(run.freeze());
    }
    chunks
}

/// The 18 bytes that go before a sequenced frame's payload (wire version 2): kind
/// [`KIND_SEQUENCED`], length, seq, RTMP type id, timestamp. Nine bytes more than v1's
/// header; at the 80 messages a second of a 30 fps stream with AAC audio that is
/// 5.8 kbit/s, 0.1 % of a 6 Mbit/s stream.
pub fn sequenced_header(
    seq: u64,
    frame: &MediaFrame,
) -> [u8; FRAME_HEADER_LEN + SEQUENCED_PREFIX_LEN] {
    let mut h = [0u8; FRAME_HEADER_LEN + SEQUENCED_PREFIX_LEN];
    h[0] = KIND_SEQUENCED;
    h[1..5].copy_from_slice(&((frame.payload.len() + SEQUENCED_PREFIX_LEN) as u32).to_be_bytes());
    h[5..13].copy_from_slice(&seq.to_be_bytes());
    h[13] = frame.kind;
    h[14..18].copy_from_slice(&frame.timestamp.to_be_bytes());
    h
}

/// Encodes a sequenced frame into one buffer (tests; drivers use
/// [`encode_sequenced_batch`]).
pub fn encode_sequenced(seq: u64, frame: &MediaFrame) -> Bytes {
    let mut out =
        BytesMut::with_capacity(FRAME_HEADER_LEN + SEQUENCED_PREFIX_LEN + frame.payload.len());
    out.put_slice(&sequenced_header(seq, frame));
    out.put_slice(&frame.payload);
    out.freeze()
}

/// An acknowledgement of everything up to and including `seq` (wire version 2): 13
/// bytes. Binary, not a JSON message: acks go several times a second on every publish
/// stream (see `crate::dedupe`), and a JSON `{"type":"ack","seq":N}` is 2.5 times the
/// bytes and a serde parse with allocations on the edge for each.
pub fn encode_ack(seq: u64) -> [u8; FRAME_HEADER_LEN + ACK_LEN] {
    let mut a = [0u8; FRAME_HEADER_LEN + ACK_LEN];
    a[0] = KIND_ACK;
    a[1..5].copy_from_slice(&(ACK_LEN as u32).to_be_bytes());
    a[5..13].copy_from_slice(&seq.to_be_bytes());
    a
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
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    failed: bool,
    version: WireVersion,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::with_version(WireVersion::V1)
    }
}

impl FrameDecoder {
    /// A decoder of wire version 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// A decoder of the given version: version 2 also yields [`Frame::Sequenced`] and
    /// [`Frame::Ack`] and refuses the kinds it reserves.
    pub fn with_version(version: WireVersion) -> Self {
        Self {
            buf: BytesMut::new(),
            failed: false,
            version,
        }
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
        let v2 = self.version >= WireVersion::V2;
        let max = match kind {
            KIND_MESSAGE => MAX_MESSAGE_LEN,
            KIND_SEQUENCED if v2 => MAX_MEDIA_LEN + SEQUENCED_PREFIX_LEN - 4,
            KIND_ACK if v2 => ACK_LEN,
            FIRST_RESERVED_KIND.. if v2 => return Err(WireError::ReservedKind { kind }),
            _ => MAX_MEDIA_LEN,
        };
        if len > max {
            return Err(WireError::TooLong { kind, len, max });
        }
        match kind {
            KIND_MESSAGE => {}
            KIND_SEQUENCED if v2 && len < SEQUENCED_PREFIX_LEN => {
                return Err(WireError::SequencedTooShort { len })
            }
            KIND_ACK if v2 && len != ACK_LEN => return Err(WireError::AckLength { len }),
            KIND_SEQUENCED | KIND_ACK if v2 => {}
            _ if len < 4 => return Err(WireError::MediaTooShort { kind, len }),
            _ => {}
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
        if v2 && kind == KIND_ACK {
            return Ok(Some(Frame::Ack(body.get_u64())));
        }
        if v2 && kind == KIND_SEQUENCED {
            let seq = body.get_u64();
            let type_id = body.get_u8();
            if type_id == 0 {
                return Err(WireError::SequencedTypeZero { seq });
            }
            let timestamp = body.get_u32();
            return Ok(Some(Frame::Sequenced(SequencedFrame {
                seq,
                frame: MediaFrame {
                    kind: type_id,
                    timestamp,
                    payload: body,
                },
            })));
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
        decode_with(FrameDecoder::new(), bytes, step)
    }

    /// Everything `d` makes of `bytes` pushed `step` bytes at a time.
    fn decode_with(
        mut d: FrameDecoder,
        bytes: &[u8],
        step: usize,
    ) -> Result<Vec<Frame>, WireError> {
        let mut out = Vec::new();
        for chunk in bytes.chunks(step.max(1)) {
            d.push(chunk);
            while let Some(f) = d.next_frame()? {
                out.push(f);
            }
        }
        Ok(out)
    }

    fn encode_frame(f: &Frame) -> Vec<u8> {
        match f {
            Frame::Message(m) => encode_message(m).to_vec(),
            Frame::Media(m) => encode_media(m).to_vec(),
            Frame::Sequenced(s) => encode_sequenced(s.seq, &s.frame).to_vec(),
            Frame::Ack(seq) => encode_ack(*seq).to_vec(),
        }
    }

    fn sample() -> (Vec<Frame>, Vec<u8>) {
        let frames = vec![
            Frame::Message(Message::Publish(PublishHeader {
                grant: 7,
                stream_name: "1_abcdefgh_1".into(),
                client_addr: "198.51.100.4:50000".into(),
                publication: None,
                resume_from: None,
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
            Frame::Message(Message::End(StreamEnd::new(
                "NetStream.Publish.Rejected",
                "taken over",
            ))),
            Frame::Message(Message::End(StreamEnd {
                retry: true,
                ..StreamEnd::new("NetStream.Publish.Rejected", "origin shutting down")
            })),
            Frame::Message(Message::Pull(PullHeader {
                stream_name: "1_abcdefgh_1".into(),
                leg: Leg::Backup,
            })),
            Frame::Message(Message::LegLive),
            Frame::Message(Message::LegGone),
        ];
        let bytes = frames.iter().flat_map(encode_frame).collect();
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

    fn v2_sample() -> (Vec<Frame>, Vec<u8>) {
        let mut frames = vec![Frame::Message(Message::Publish(PublishHeader {
            grant: 7,
            stream_name: "1_abcdefgh_1".into(),
            client_addr: "198.51.100.4:50000".into(),
            publication: Some(u64::MAX),
            resume_from: Some(41),
        }))];
        let config = MediaFrame {
            kind: 9,
            timestamp: 0,
            payload: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1]),
        };
        frames.push(Frame::Media(config));
        for (seq, kind, len) in [(41u64, 9u8, 0usize), (42, 8, 3), (43, 18, COPY_BELOW + 1)] {
            frames.push(Frame::Sequenced(SequencedFrame {
                seq,
                frame: MediaFrame {
                    kind,
                    timestamp: seq as u32 * 20,
                    payload: Bytes::from(vec![seq as u8; len]),
                },
            }));
        }
        frames.push(Frame::Ack(u64::MAX));
        frames.push(Frame::Sequenced(SequencedFrame {
            seq: u64::MAX,
            frame: MediaFrame {
                kind: 255,
                timestamp: u32::MAX,
                payload: Bytes::new(),
            },
        }));
        let bytes = frames.iter().flat_map(encode_frame).collect();
        (frames, bytes)
    }

    fn decode_v2(bytes: &[u8], step: usize) -> Result<Vec<Frame>, WireError> {
        decode_with(FrameDecoder::with_version(WireVersion::V2), bytes, step)
    }

    #[test]
    fn v2_frames_round_trip_whatever_the_read_size() {
        let (frames, bytes) = v2_sample();
        for step in [1, 2, 5, 13, 18, 64, bytes.len()] {
            assert_eq!(decode_v2(&bytes, step).unwrap(), frames, "step {step}");
        }
        // Version 2 reads version 1's frames unchanged.
        let (frames, bytes) = sample();
        assert_eq!(decode_v2(&bytes, 7).unwrap(), frames);
    }

    #[test]
    fn v2_headers_and_acks_have_their_layout() {
        let f = MediaFrame {
            kind: 9,
            timestamp: 0x01020304,
            payload: Bytes::from_static(b"abc"),
        };
        assert_eq!(
            sequenced_header(0x1122_3344_5566_7788, &f),
            [0xf0, 0, 0, 0, 16, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 9, 1, 2, 3, 4]
        );
        assert_eq!(encode_ack(258), [0xf1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn a_sequenced_batch_is_its_frames_back_to_back() {
        let big = Bytes::from(vec![3u8; COPY_BELOW]);
        let frames: Vec<MediaFrame> = [Bytes::from_static(b"x"), big.clone(), Bytes::new()]
            .into_iter()
            .map(|payload| MediaFrame {
                kind: 9,
                timestamp: 1,
                payload,
            })
            .collect();
        let chunks =
            encode_sequenced_batch(frames.iter().enumerate().map(|(i, f)| (100 + i as u64, f)));
        assert_eq!(chunks.len(), 3, "header+x+header | big | header");
        assert_eq!(
            chunks[1].as_ptr(),
            big.as_ptr(),
            "large payloads are shared"
        );
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
        let expected: Vec<u8> = frames
            .iter()
            .enumerate()
            .flat_map(|(i, f)| encode_sequenced(100 + i as u64, f).to_vec())
            .collect();
        assert_eq!(joined, expected);
    }

    /// Each bad v2 frame, and the error it gives.
    #[test]
    fn bad_v2_frames_are_refused_from_what_they_say() {
        let cases: &[(&[u8], WireError)] = &[
            (
                &[0xf0, 0, 0, 0, 12],
                WireError::SequencedTooShort { len: 12 },
            ),
            (
                &[0xf0, 0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0],
                WireError::SequencedTypeZero { seq: 5 },
            ),
            (&[0xf1, 0, 0, 0, 7], WireError::AckLength { len: 7 }),
            (
                &[0xf1, 0, 0, 0, 9],
                WireError::TooLong {
                    kind: 0xf1,
                    len: 9,
                    max: ACK_LEN,
                },
            ),
            (
                &[0xf0, 0x01, 0, 0, 0x0e],
                WireError::TooLong {
                    kind: 0xf0,
                    len: 0x0100_000e,
                    max: MAX_MEDIA_LEN + 9,
                },
            ),
            (&[0xf2, 0, 0, 0, 0], WireError::ReservedKind { kind: 0xf2 }),
            (&[0xff, 0, 0, 0, 4], WireError::ReservedKind { kind: 0xff }),
        ];
        for (bytes, error) in cases {
            let mut d = FrameDecoder::with_version(WireVersion::V2);
            d.push(bytes);
            assert_eq!(d.next_frame().as_ref(), Err(error), "{bytes:?}");
            assert!(d.next_frame().is_err(), "a failed stream stays failed");
        }
        // A version 1 decoder reads those kinds as RTMP message type ids, as it always did.
        let mut d = FrameDecoder::new();
        d.push(&[0xf1, 0, 0, 0, 4, 0, 0, 0, 9]);
        assert_eq!(
            d.next_frame(),
            Ok(Some(Frame::Media(MediaFrame {
                kind: 0xf1,
                timestamp: 9,
                payload: Bytes::new()
            })))
        );
    }

    #[test]
    fn versions_are_named_by_their_alpn() {
        assert_eq!(
            WireVersion::from_alpn(b"longhaul-tunnel/1"),
            Some(WireVersion::V1)
        );
        assert_eq!(
            WireVersion::from_alpn(b"longhaul-tunnel/2"),
            Some(WireVersion::V2)
        );
        assert_eq!(WireVersion::from_alpn(b"longhaul-tunnel/3"), None);
        assert_eq!(
            crate::ALPNS[0],
            WireVersion::V2.alpn(),
            "the newest offered first"
        );
        assert!(crate::ALPNS.contains(&crate::ALPN));
    }

    #[test]
    fn publish_headers_carry_resumes_and_older_ones_parse() {
        let h = Message::Publish(PublishHeader {
            grant: 1,
            stream_name: "s".into(),
            client_addr: "a".into(),
            publication: Some(9),
            resume_from: Some(120),
        });
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "publish", "grant": 1, "stream_name": "s",
                "client_addr": "a", "publication": 9, "resume_from": 120})
        );
        assert_eq!(serde_json::from_value::<Message>(json).unwrap(), h);
        let v1 = serde_json::json!({"type": "publish", "grant": 1, "stream_name": "s",
            "client_addr": "a"});
        assert!(matches!(
            serde_json::from_value::<Message>(v1).unwrap(),
            Message::Publish(PublishHeader {
                publication: None,
                resume_from: None,
                ..
            })
        ));
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
