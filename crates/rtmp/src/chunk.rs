//! The RTMP chunk stream: splitting messages into chunks and reassembling them.
//!
//! rml_rtmp 0.8's `ChunkDeserializer` keeps one payload buffer for all chunk streams, so
//! chunks of two chunk streams interleaved (legal, and sent by real encoders) make it
//! panic. This decoder keeps one partial message per chunk stream id.
//!
//! Decoding is incremental and O(n): [`ChunkDecoder::decode`] looks at the next chunk's
//! header, and only when the whole chunk is in the buffer consumes it (so a partial chunk
//! is never parsed twice beyond its few header bytes). Payloads grow with what arrives;
//! a declared length never sizes an allocation by itself. A message carried in a single
//! chunk is handed out as a zero-copy slice of the input buffer.
//!
//! [`DecoderLimits`] bound what a peer can make the decoder hold: a length cap per message
//! type (control, command, data, media) and a total of declared lengths of unfinished
//! messages, both checked as soon as a message header is read, before any payload is
//! buffered. A server tightens them until a peer is authorised to publish.
//!
//! Timestamp rules follow ffmpeg (`libavformat/rtmppkt.c`), librtmp and SRS, which agree:
//! - a type-3 chunk that starts a new message reuses the previous header's timestamp
//!   field as its delta (after a type-0 header that field is the absolute timestamp);
//! - when the last type 0/1/2 header of a chunk stream had an extended timestamp, every
//!   type-3 chunk on it carries the 4-byte extended timestamp too.
//!
//! The encoder never relies on the first rule (peers such as nginx-rtmp read it
//! differently): it sends type 3 for a new message only after a type 1 or 2 header and
//! never with an extended timestamp.

use crate::message::{type_id, RtmpMessage};
use crate::output::OutputQueue;
use bytes::{Buf, BufMut, BytesMut};
use std::collections::HashMap;

/// Largest chunk size longhaul accepts or sets: 16 MiB (a message can be at most
/// 2^24 - 1 bytes long, so a larger chunk size changes nothing).
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;

/// Bounds on what a peer may make the decoder hold.
///
/// Every bound is checked when a message header is read, before any of its payload is
/// buffered, against the length the header *declares*: a peer cannot make the decoder (or
/// the caller's input buffer, which holds at most one incomplete chunk of a message whose
/// length was checked) grow past them by announcing a large message and never finishing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Chunk streams with a partial message at once.
    pub max_partial_streams: usize,
    /// Chunk streams with ids of 64 and above (the 2- and 3-byte header forms) one
    /// connection may ever use; ids below 64 are always allowed. Each costs its state
    /// for as long as the connection lives, so without a cap 65,536 of them pin
    /// megabytes per connection. [`DEFAULT_MAX_HIGH_CHUNK_STREAMS`].
    pub max_high_chunk_streams: usize,
    /// Bytes that partial messages may hold, all chunk streams together, counted by their
    /// declared lengths (plus the declared length of a message whose first chunk is still
    /// arriving): the memory a peer can pin with messages it never finishes.
    pub max_buffered_bytes: usize,
    /// Longest protocol control message (types 1-6). The longest legal one is 10 bytes
    /// (User Control SetBufferLength); the SWF verification response (User Control event 27)
    /// is 44. [`DEFAULT_MAX_CONTROL_LEN`].
    pub max_control_len: u32,
    /// Longest command or shared object message (types 16, 17, 19, 20) and message of a
    /// type RTMP does not define (sessions ignore those). [`DEFAULT_MAX_COMMAND_LEN`].
    pub max_command_len: u32,
    /// Longest data message (types 15, 18). [`DEFAULT_MAX_DATA_LEN`].
    pub max_data_len: u32,
    /// Longest audio, video or aggregate message (types 8, 9, 22). The protocol's own
    /// maximum by default.
    pub max_media_len: u32,
}

/// Default [`DecoderLimits::max_high_chunk_streams`]: 64. Encoders stay below id 64:
/// ffmpeg uses 2-8, OBS (librtmp) 2-6, and Flash-style clients 3 + 5 per stream, which
/// reaches 64 only past a dozen streams on one connection. 64 more cost about 6 KB.
pub const DEFAULT_MAX_HIGH_CHUNK_STREAMS: usize = 64;

/// Default [`DecoderLimits::max_control_len`]: 64 bytes. The longest protocol control
/// message a peer sends legitimately is 44 bytes (SWF verification response); 10 bytes
/// otherwise (SetBufferLength). Anything longer is not a control message we can read.
pub const DEFAULT_MAX_CONTROL_LEN: u32 = 64;

/// Default [`DecoderLimits::max_command_len`]: 64 KiB. A real `connect` (ffmpeg 7 with
/// Enhanced RTMP `fourCcList` and `videoFourCcInfoMap`, OBS, FMLE) is under 2 KB and a
/// `publish` with a long token under 4 KB: 64 KiB leaves 16x room, while bounding what one
/// command can cost to decode (AMF0 values take more memory than their encoding).
pub const DEFAULT_MAX_COMMAND_LEN: u32 = 64 * 1024;

/// Default [`DecoderLimits::max_data_len`]: 1 MiB. The largest data messages seen are
/// `onMetaData` carrying a JPEG thumbnail or a keyframe index (a few hundred KB at most);
/// data messages are forwarded, not decoded, so this only bounds buffering.
pub const DEFAULT_MAX_DATA_LEN: u32 = 1024 * 1024;

impl Default for DecoderLimits {
    fn default() -> Self {
        Self {
            max_partial_streams: 64,
            max_high_chunk_streams: DEFAULT_MAX_HIGH_CHUNK_STREAMS,
            max_buffered_bytes: 64 * 1024 * 1024,
            max_control_len: DEFAULT_MAX_CONTROL_LEN,
            max_command_len: DEFAULT_MAX_COMMAND_LEN,
            max_data_len: DEFAULT_MAX_DATA_LEN,
            max_media_len: MAX_MESSAGE_LEN,
        }
    }
}

impl DecoderLimits {
    /// The longest message of type `type_id` these limits allow.
    pub fn max_message_len(&self, type_id: u8) -> u32 {
        match type_id {
            1..=6 => self.max_control_len,
            type_id::AUDIO | type_id::VIDEO | type_id::AGGREGATE => self.max_media_len,
            type_id::DATA_AMF0 | type_id::DATA_AMF3 => self.max_data_len,
            _ => self.max_command_len,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk on chunk stream {csid} continues a message but none was started")]
    NoPreviousHeader { csid: u32 },
    #[error("peer set chunk size {0}, outside 1..={MAX_CHUNK_SIZE}")]
    InvalidChunkSize(u32),
    #[error("more than {0} chunk streams with partial messages")]
    TooManyPartialStreams(usize),
    #[error("more than {0} chunk streams with ids of 64 or above")]
    TooManyChunkStreams(usize),
    #[error("partial messages would hold more than {0} bytes (counted by declared length)")]
    TooMuchBuffered(usize),
    #[error(
        "message of type {type_id} declares {len} bytes, more than the {max} allowed for its type"
    )]
    MessageTooLarge { type_id: u8, len: u32, max: u32 },
    #[error("malformed protocol control message type {type_id}: {reason}")]
    BadControlMessage { type_id: u8, reason: &'static str },
}

/// Longest message the chunk stream can carry: the message length field has 3 bytes.
pub const MAX_MESSAGE_LEN: u32 = 0x00FF_FFFF;

/// The chunk size every RTMP connection starts with (spec 5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;

/// Smallest and largest chunk stream ids: 0 and 1 select the 2- and 3-byte basic header
/// forms, and the 3-byte form reaches 64 + 65535 (spec 5.3.1.1).
pub const MIN_CSID: u32 = 2;
pub const MAX_CSID: u32 = 65_599;

/// A 3-byte timestamp field of 0xFFFFFF means "the 4-byte extended timestamp follows".
const EXTENDED_TIMESTAMP: u32 = 0x00FF_FFFF;

/// First allocation for a message arriving in several chunks: enough for typical video
/// frames without regrowing, small enough that a peer declaring 16 MiB messages on many
/// chunk streams and never sending them costs little. Larger payloads grow by doubling.
const INITIAL_PARTIAL_CAPACITY: usize = 64 * 1024;

/// Message header length by chunk type (fmt 0..=3), spec 5.3.1.2.
const MESSAGE_HEADER_LEN: [usize; 4] = [11, 7, 3, 0];

/// What the last type 0/1/2 header (and the messages since) left on a chunk stream.
#[derive(Debug, Default)]
struct ChunkStream {
    /// A type 0/1/2 header was seen: type 3 chunks have something to continue.
    has_header: bool,
    /// The last timestamp field: absolute after type 0, the delta after type 1/2 (the
    /// extended value when the field was 0xFFFFFF). A new message in a type-3 chunk
    /// adds it again.
    ts_field: u32,
    /// The last type 0/1/2 header used an extended timestamp.
    extended: bool,
    /// Absolute timestamp of the current (or last) message.
    timestamp: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Payload received so far of a message in progress.
    partial: Option<BytesMut>,
}

/// Chunk stream states: csids below 64 (the 1-byte header form, all that encoders use
/// in practice) in a small vector indexed by csid, the rest in a map.
#[derive(Debug, Default)]
struct Streams {
    low: Vec<ChunkStream>,
    high: HashMap<u32, ChunkStream>,
}

/// Chunk stream ids below this are kept in `Streams::low`.
const LOW_CSIDS: u32 = 64;

impl Streams {
    fn get(&self, csid: u32) -> Option<&ChunkStream> {
        if csid < LOW_CSIDS {
            self.low.get(csid as usize)
        } else {
            self.high.get(&csid)
        }
    }
    fn get_mut(&mut self, csid: u32) -> Option<&mut ChunkStream> {
        if csid < LOW_CSIDS {
            self.low.get_mut(csid as usize)
        } else {
            self.high.get_mut(&csid)
        }
    }
    fn get_or_insert(&mut self, csid: u32) -> &mut ChunkStream {
        if csid < LOW_CSIDS {
            let i = csid as usize;
            if self.low.len() <= i {
                self.low.resize_with(i + 1, ChunkStream::default);
            }
            &mut self.low[i]
        } else {
            self.high.entry(csid).or_default()
        }
    }
}

/// A chunk header read without consuming anything.
struct ChunkHeader {
    fmt: u8,
    csid: u32,
    /// Basic + message header + extended timestamp bytes.
    len: usize,
    /// Timestamp or delta (extended value applied); None for type 3 without extension.
    ts: Option<u32>,
    extended: bool,
    length: u32,
    type_id: u8,
    stream_id: u32,
}

fn be24(b: &[u8]) -> u32 {
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reassembles messages from chunks. Applies Set Chunk Size and Abort itself (and still
/// returns the Set Chunk Size message, so the session can log it).
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: DecoderLimits,
    chunk_size: u32,
    bytes_received: u64,
    streams: Streams,
    /// Chunk streams with a partial message, and the bytes they hold.
    partial_streams: usize,
    buffered: usize,
    /// Declared lengths of the partial messages, all chunk streams together (what
    /// [`DecoderLimits::max_buffered_bytes`] bounds).
    declared: usize,
}

impl ChunkDecoder {
    pub fn new(limits: DecoderLimits) -> Self {
        Self {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE,
            bytes_received: 0,
            streams: Streams::default(),
            partial_streams: 0,
            buffered: 0,
            declared: 0,
        }
    }

    /// Replaces the limits (a server raises them once a publisher is authorised). They
    /// apply from the next message header on: partial messages already accepted are kept
    /// even if the new limits are lower, but count against them.
    pub fn set_limits(&mut self, limits: DecoderLimits) {
        self.limits = limits;
    }

    /// The limits in force.
    pub fn limits(&self) -> &DecoderLimits {
        &self.limits
    }

    /// Takes bytes from the front of `input` and returns the next complete message, or
    /// `Ok(None)` when `input` holds no complete message yet (the unused tail stays in it).
    ///
    /// Only whole chunks are consumed. Set Chunk Size is applied and returned; Abort is
    /// applied and not returned. After an error the connection must be closed.
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Option<RtmpMessage>, ChunkError> {
        loop {
            let Some(message) = self.decode_chunk(input)? else {
                return Ok(None);
            };
            let Some(message) = message else {
                continue; // a chunk consumed, its message not complete yet
            };
            match message.type_id {
                type_id::SET_CHUNK_SIZE => {
                    self.chunk_size = parse_set_chunk_size(&message.payload)?;
                    return Ok(Some(message));
                }
                type_id::ABORT => {
                    let csid = control_u32(&message.payload, type_id::ABORT)?;
                    self.abort(csid);
                }
                _ => return Ok(Some(message)),
            }
        }
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// Total bytes consumed so far (for acknowledgements).
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Bytes held in partial messages, all chunk streams together.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Checks a new message's header against the limits, before any of it is buffered.
    /// `dropped`: the declared length of this chunk stream's partial message, which the
    /// new header replaces. `completes`: the message fits in this one chunk.
    fn check_new_message(
        &self,
        h: &ChunkHeader,
        dropped: Option<usize>,
        completes: bool,
    ) -> Result<(), ChunkError> {
        if h.csid >= LOW_CSIDS
            && self.streams.get(h.csid).is_none()
            && self.streams.high.len() >= self.limits.max_high_chunk_streams
        {
            return Err(ChunkError::TooManyChunkStreams(
                self.limits.max_high_chunk_streams,
            ));
        }
        let max = self.limits.max_message_len(h.type_id);
        if h.length > max {
            return Err(ChunkError::MessageTooLarge {
                type_id: h.type_id,
                len: h.length,
                max,
            });
        }
        let declared = self.declared - dropped.unwrap_or(0) + h.length as usize;
        if declared > self.limits.max_buffered_bytes {
            return Err(ChunkError::TooMuchBuffered(self.limits.max_buffered_bytes));
        }
        if !completes
            && dropped.is_none()
            && self.partial_streams >= self.limits.max_partial_streams
        {
            return Err(ChunkError::TooManyPartialStreams(
                self.limits.max_partial_streams,
            ));
        }
        Ok(())
    }

    /// Drops the partial message of `csid`, if any (Abort message, spec 5.4.2).
    fn abort(&mut self, csid: u32) {
        if let Some(cs) = self.streams.get_mut(csid) {
            if let Some(p) = cs.partial.take() {
                self.partial_streams -= 1;
                self.buffered -= p.len();
                self.declared -= cs.length as usize;
            }
        }
    }

    /// Reads the next chunk header from the front of `buf` without consuming it.
    /// `Ok(None)`: not all of the header has arrived.
    fn peek_header(&self, buf: &[u8]) -> Result<Option<ChunkHeader>, ChunkError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match buf.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(None),
            },
            1 => match buf.get(1..3) {
                Some(b) => (64 + u32::from(b[0]) + (u32::from(b[1]) << 8), 3),
                None => return Ok(None),
            },
            n => (u32::from(n), 1),
        };
        let mh_len = MESSAGE_HEADER_LEN[usize::from(fmt)];
        let Some(mh) = buf.get(pos..pos + mh_len) else {
            return Ok(None);
        };
        pos += mh_len;
        let prev = self.streams.get(csid).filter(|cs| cs.has_header);
        let mut h = match (fmt, prev) {
            (0, _) => ChunkHeader {
                fmt,
                csid,
                len: pos,
                ts: Some(be24(&mh[0..3])),
                extended: be24(&mh[0..3]) == EXTENDED_TIMESTAMP,
                length: be24(&mh[3..6]),
                type_id: mh[6],
                // The message stream id is the one little-endian field of RTMP.
                stream_id: u32::from_le_bytes([mh[7], mh[8], mh[9], mh[10]]),
            },
            (_, None) => return Err(ChunkError::NoPreviousHeader { csid }),
            (1, Some(p)) => ChunkHeader {
                fmt,
                csid,
                len: pos,
                ts: Some(be24(&mh[0..3])),
                extended: be24(&mh[0..3]) == EXTENDED_TIMESTAMP,
                length: be24(&mh[3..6]),
                type_id: mh[6],
                stream_id: p.stream_id,
            },
            (2, Some(p)) => ChunkHeader {
                fmt,
                csid,
                len: pos,
                ts: Some(be24(&mh[0..3])),
                extended: be24(&mh[0..3]) == EXTENDED_TIMESTAMP,
                length: p.length,
                type_id: p.type_id,
                stream_id: p.stream_id,
            },
            (_, Some(p)) => ChunkHeader {
                fmt,
                csid,
                len: pos,
                ts: None,
                extended: p.extended,
                length: p.length,
                type_id: p.type_id,
                stream_id: p.stream_id,
            },
        };
        if h.extended {
            let Some(ext) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            h.ts = Some(be32(ext));
            h.len += 4;
        }
        Ok(Some(h))
    }

    /// Consumes one whole chunk if `input` holds it: `Ok(None)` when it does not,
    /// `Ok(Some(None))` when the chunk did not complete a message.
    fn decode_chunk(
        &mut self,
        input: &mut BytesMut,
    ) -> Result<Option<Option<RtmpMessage>>, ChunkError> {
        let Some(h) = self.peek_header(input)? else {
            return Ok(None);
        };
        let cs = self.streams.get(h.csid);
        let partial_len = cs.and_then(|cs| cs.partial.as_ref()).map(|p| p.len());
        let continuation = h.fmt == 3 && partial_len.is_some();
        let remaining = match partial_len {
            Some(have) if continuation => (h.length as usize).saturating_sub(have),
            _ => h.length as usize,
        };
        let chunk_len = remaining.min(self.chunk_size as usize);
        let completes = chunk_len == remaining;
        // A type 0/1/2 header while a message is in progress: the peer gave up on that
        // message without an Abort. Drop it, as Abort would, and start the new one.
        let dropped = if partial_len.is_some() && !continuation {
            cs.map(|cs| cs.length as usize)
        } else {
            None
        };
        if !continuation {
            // Checked before the chunk is complete: the declared length alone decides.
            self.check_new_message(&h, dropped, completes)?;
        }
        let Some(total) = h.len.checked_add(chunk_len) else {
            return Ok(None);
        };
        if input.len() < total {
            return Ok(None);
        }
        if dropped.is_some() {
            tracing::debug!(
                csid = h.csid,
                "new message header before the last message ended"
            );
            self.abort(h.csid);
        }

        self.bytes_received += total as u64;
        input.advance(h.len);
        // Single-chunk messages take a zero-copy slice; other chunks are copied into the
        // partial payload straight from the input.
        let single = !continuation && completes;
        let data = if single {
            input.split_to(chunk_len)
        } else {
            BytesMut::new()
        };
        let chunk_data = if single {
            &data[..]
        } else {
            &input[..chunk_len]
        };
        let cs = self.streams.get_or_insert(h.csid);
        if !continuation {
            // A new message: update the chunk stream's header state.
            match h.fmt {
                0 => {
                    let ts = h.ts.unwrap_or(0);
                    cs.ts_field = ts;
                    cs.timestamp = ts;
                    cs.extended = h.extended;
                }
                1 | 2 => {
                    let delta = h.ts.unwrap_or(0);
                    cs.ts_field = delta;
                    cs.timestamp = cs.timestamp.wrapping_add(delta);
                    cs.extended = h.extended;
                }
                _ => {
                    let delta = h.ts.unwrap_or(cs.ts_field);
                    cs.ts_field = delta;
                    cs.timestamp = cs.timestamp.wrapping_add(delta);
                }
            }
            cs.has_header = true;
            cs.length = h.length;
            cs.type_id = h.type_id;
            cs.stream_id = h.stream_id;
        }
        let payload = if continuation {
            let Some(p) = cs.partial.as_mut() else {
                return Ok(Some(None)); // unreachable: continuation implies a partial
            };
            p.extend_from_slice(chunk_data);
            input.advance(chunk_len);
            if !completes {
                self.buffered += chunk_len;
                return Ok(Some(None));
            }
            self.partial_streams -= 1;
            self.buffered -= p.len() - chunk_len;
            self.declared -= cs.length as usize;
            cs.partial.take().map(BytesMut::freeze).unwrap_or_default()
        } else if completes {
            // Single-chunk message: a zero-copy slice of the input.
            data.freeze()
        } else {
            let cap = (h.length as usize).min(INITIAL_PARTIAL_CAPACITY);
            let mut p = BytesMut::with_capacity(cap);
            p.extend_from_slice(chunk_data);
            input.advance(chunk_len);
            cs.partial = Some(p);
            self.partial_streams += 1;
            self.buffered += chunk_len;
            self.declared += cs.length as usize;
            return Ok(Some(None));
        };
        Ok(Some(Some(RtmpMessage {
            timestamp: cs.timestamp,
            type_id: cs.type_id,
            stream_id: cs.stream_id,
            payload,
        })))
    }
}

/// The 4-byte big-endian body of a protocol control message.
fn control_u32(payload: &[u8], type_id: u8) -> Result<u32, ChunkError> {
    match payload.get(0..4) {
        Some(b) => Ok(be32(b)),
        None => Err(ChunkError::BadControlMessage {
            type_id,
            reason: "body shorter than 4 bytes",
        }),
    }
}

/// Set Chunk Size (spec 5.4.1): 31 bits, top bit 0, at least 1; longhaul also caps it at
/// [`MAX_CHUNK_SIZE`].
fn parse_set_chunk_size(payload: &[u8]) -> Result<u32, ChunkError> {
    let size = control_u32(payload, type_id::SET_CHUNK_SIZE)?;
    if size == 0 || size & 0x8000_0000 != 0 || size > MAX_CHUNK_SIZE {
        return Err(ChunkError::InvalidChunkSize(size));
    }
    Ok(size)
}

/// What the encoder last sent on a chunk stream.
#[derive(Debug, Clone, Copy)]
struct SentHeader {
    timestamp: u32,
    /// Timestamp field of that header: absolute for type 0, else the delta.
    ts_field: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The header was type 0 (a following type 3 would be read differently by peers).
    was_type0: bool,
}

/// Splits messages into chunks with header compression per chunk stream id.
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: u32,
    sent: HashMap<u32, SentHeader>,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// A new encoder at the protocol's initial chunk size, 128.
    pub fn new() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            sent: HashMap::new(),
        }
    }

    /// Changes the outgoing chunk size; the caller must send a Set Chunk Size message
    /// (see [`ChunkEncoder::set_chunk_size_message`]) before any message chunked with it.
    /// The size is clamped to `1..=MAX_CHUNK_SIZE`.
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, MAX_CHUNK_SIZE);
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// The Set Chunk Size message announcing `size` (clamped like
    /// [`ChunkEncoder::set_chunk_size`]). Send it (at the old size) and then call
    /// `set_chunk_size(size)`.
    pub fn set_chunk_size_message(size: u32) -> RtmpMessage {
        crate::message::set_chunk_size(size.clamp(1, MAX_CHUNK_SIZE))
    }

    /// Forgets what was sent on every chunk stream, so the next message on each starts
    /// with a type-0 header (after an Abort, or to resynchronise a reused encoder).
    pub fn reset(&mut self) {
        self.sent.clear();
    }

    /// Appends `message`, chunked on chunk stream `csid`, to `out`. Payload chunks are
    /// slices of `message.payload` (no copy); headers are small owned segments.
    ///
    /// `csid` must be in `MIN_CSID..=MAX_CSID` (it is clamped into range otherwise), and
    /// the payload at most [`MAX_MESSAGE_LEN`] bytes (a longer message cannot be
    /// expressed in RTMP: it is dropped and logged).
    pub fn encode(&mut self, csid: u32, message: &RtmpMessage, out: &mut OutputQueue) {
        debug_assert!(
            (MIN_CSID..=MAX_CSID).contains(&csid),
            "chunk stream id {csid}"
        );
        let csid = csid.clamp(MIN_CSID, MAX_CSID);
        let Ok(length) = u32::try_from(message.payload.len()) else {
            tracing::error!(
                len = message.payload.len(),
                "message too long for RTMP, dropped"
            );
            return;
        };
        if length > MAX_MESSAGE_LEN {
            tracing::error!(len = length, "message too long for RTMP, dropped");
            return;
        }
        let prev = self.sent.get(&csid).copied();
        let ts = message.timestamp;
        let (fmt, ts_field) = match prev {
            Some(p) if p.stream_id == message.stream_id && ts >= p.timestamp => {
                let delta = ts - p.timestamp;
                if p.length != length || p.type_id != message.type_id {
                    (1, delta)
                } else if delta != p.ts_field || p.was_type0 || delta >= EXTENDED_TIMESTAMP {
                    (2, delta)
                } else {
                    (3, delta)
                }
            }
            _ => (0, ts),
        };
        self.sent.insert(
            csid,
            SentHeader {
                timestamp: ts,
                ts_field,
                length,
                type_id: message.type_id,
                stream_id: message.stream_id,
                was_type0: fmt == 0,
            },
        );
        let extended = fmt != 3 && ts_field >= EXTENDED_TIMESTAMP;
        let chunk_size = self.chunk_size as usize;
        let chunks = message.payload.len().div_ceil(chunk_size).max(1);
        // All headers of this message in one allocation, handed out as slices.
        let mut headers = BytesMut::with_capacity(18 + (chunks - 1) * 8);
        put_basic_header(&mut headers, fmt, csid);
        if fmt < 3 {
            headers.put_uint(u64::from(ts_field.min(EXTENDED_TIMESTAMP)), 3);
        }
        if fmt < 2 {
            headers.put_uint(u64::from(length), 3);
            headers.put_u8(message.type_id);
        }
        if fmt == 0 {
            headers.put_u32_le(message.stream_id);
        }
        if extended {
            headers.put_u32(ts_field);
        }
        let mut offset = 0;
        loop {
            out.push(headers.split().freeze());
            let end = (offset + chunk_size).min(message.payload.len());
            out.push(message.payload.slice(offset..end));
            offset = end;
            if offset >= message.payload.len() {
                break;
            }
            put_basic_header(&mut headers, 3, csid);
            if extended {
                headers.put_u32(ts_field);
            }
        }
    }

    /// Encodes into a contiguous buffer (tests, benchmarks, fuzzing).
    pub fn encode_to_vec(&mut self, csid: u32, message: &RtmpMessage) -> BytesMut {
        let mut q = OutputQueue::new();
        self.encode(csid, message, &mut q);
        BytesMut::from(&q.to_vec()[..])
    }
}

/// Basic header (spec 5.3.1.1): 1 byte for csid 2..=63, 2 bytes up to 319, else 3.
fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    let f = fmt << 6;
    match csid {
        0..=63 => out.put_u8(f | csid as u8),
        64..=319 => {
            out.put_u8(f);
            out.put_u8((csid - 64) as u8);
        }
        _ => {
            let v = csid - 64;
            out.put_u8(f | 1);
            out.put_u8((v & 0xff) as u8);
            out.put_u8((v >> 8) as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message;
    use bytes::Bytes;

    fn msg(timestamp: u32, type_id: u8, stream_id: u32, payload: impl Into<Bytes>) -> RtmpMessage {
        RtmpMessage {
            timestamp,
            type_id,
            stream_id,
            payload: payload.into(),
        }
    }

    /// Deterministic xorshift64* PRNG (no dependency, same sequence on every run).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn decoder() -> ChunkDecoder {
        ChunkDecoder::new(DecoderLimits::default())
    }

    fn drain(dec: &mut ChunkDecoder, input: &mut BytesMut) -> Result<Vec<RtmpMessage>, ChunkError> {
        let mut out = Vec::new();
        while let Some(m) = dec.decode(input)? {
            out.push(m);
        }
        Ok(out)
    }

    fn decode_bytes(bytes: &[u8]) -> Result<Vec<RtmpMessage>, ChunkError> {
        let mut input = BytesMut::from(bytes);
        let out = drain(&mut decoder(), &mut input)?;
        assert!(input.is_empty(), "{} bytes left over", input.len());
        Ok(out)
    }

    /// Feeds `bytes` in pieces of the given sizes (cycled), draining after each.
    fn decode_split(bytes: &[u8], sizes: &[usize]) -> Result<Vec<RtmpMessage>, ChunkError> {
        let mut dec = decoder();
        let mut input = BytesMut::new();
        let mut out = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < bytes.len() {
            let n = sizes[i % sizes.len()].max(1).min(bytes.len() - pos);
            i += 1;
            input.extend_from_slice(&bytes[pos..pos + n]);
            pos += n;
            out.extend(drain(&mut dec, &mut input)?);
        }
        assert!(input.is_empty());
        assert_eq!(dec.bytes_received(), bytes.len() as u64);
        Ok(out)
    }

    /// A type-0 header: basic header for csid < 64, then ts, length, type, stream (LE).
    fn h0(csid: u8, ts: u32, len: u32, type_id: u8, stream: u32) -> Vec<u8> {
        let mut v = vec![csid];
        v.extend_from_slice(&ts.min(0xffffff).to_be_bytes()[1..]);
        v.extend_from_slice(&len.to_be_bytes()[1..]);
        v.push(type_id);
        v.extend_from_slice(&stream.to_le_bytes());
        if ts >= 0xffffff {
            v.extend_from_slice(&ts.to_be_bytes());
        }
        v
    }

    /// Encoder output split into chunks (header + payload slice each).
    fn chunks_of(enc: &mut ChunkEncoder, csid: u32, m: &RtmpMessage) -> Vec<Vec<u8>> {
        let mut q = OutputQueue::new();
        enc.encode(csid, m, &mut q);
        let mut segs = Vec::new();
        while q.has_remaining() {
            let s = q.chunk().to_vec();
            q.advance(s.len());
            segs.push(s);
        }
        if m.payload.is_empty() {
            assert_eq!(segs.len(), 1);
            return segs;
        }
        assert_eq!(segs.len() % 2, 0);
        segs.chunks(2)
            .map(|p| [p[0].clone(), p[1].clone()].concat())
            .collect()
    }

    #[test]
    fn every_fmt_and_timestamp_deltas() {
        let mut b = h0(3, 1000, 4, 20, 1);
        b.extend_from_slice(b"abcd");
        // fmt 1: delta 10, length 2, type 9.
        b.extend_from_slice(&[0x43, 0, 0, 10, 0, 0, 2, 9, b'x', b'y']);
        // fmt 2: delta 5.
        b.extend_from_slice(&[0x83, 0, 0, 5, b'z', b'w']);
        // fmt 3, a new message: the same delta again.
        b.extend_from_slice(&[0xc3, b'q', b'r']);
        let out = decode_bytes(&b).unwrap();
        assert_eq!(
            out,
            vec![
                msg(1000, 20, 1, &b"abcd"[..]),
                msg(1010, 9, 1, &b"xy"[..]),
                msg(1015, 9, 1, &b"zw"[..]),
                msg(1020, 9, 1, &b"qr"[..]),
            ]
        );
    }

    #[test]
    fn fmt3_new_message_after_fmt0_adds_the_fmt0_timestamp() {
        // ffmpeg, librtmp and SRS read it this way (ffmpeg's writer relies on it).
        let mut b = h0(4, 40, 1, 9, 1);
        b.push(0xaa);
        b.extend_from_slice(&[0xc4, 0xbb]);
        let out = decode_bytes(&b).unwrap();
        assert_eq!(out[0].timestamp, 40);
        assert_eq!(out[1].timestamp, 80);
    }

    #[test]
    fn zero_length_messages() {
        let mut b = h0(3, 5, 0, 18, 1);
        b.push(0xc3);
        let out = decode_bytes(&b).unwrap();
        assert_eq!(
            out,
            vec![msg(5, 18, 1, Bytes::new()), msg(10, 18, 1, Bytes::new())]
        );
    }

    #[test]
    fn csid_basic_header_forms() {
        for (csid, expect) in [
            (2u32, vec![0x02]),
            (63, vec![0x3f]),
            (64, vec![0x00, 0x00]),
            (319, vec![0x00, 0xff]),
            (320, vec![0x01, 0x00, 0x01]),
            (65_599, vec![0x01, 0xff, 0xff]),
        ] {
            let m = msg(7, 8, 1, vec![1u8; 300]);
            let bytes = ChunkEncoder::new().encode_to_vec(csid, &m);
            assert_eq!(&bytes[..expect.len()], &expect[..], "csid {csid}");
            // The continuation chunks use the same basic header form, with fmt 3.
            let cont = 1 + expect.len() - 1 + 11 + 128;
            assert_eq!(bytes[cont], 0xc0 | expect[0], "csid {csid}");
            assert_eq!(decode_bytes(&bytes).unwrap(), vec![m]);
        }
    }

    #[test]
    fn interleaved_chunk_streams() {
        // Two 200-byte messages on csids 4 and 6, their chunks alternating (this is what
        // makes rml_rtmp 0.8 panic).
        let a: Vec<u8> = (0..200).map(|i| i as u8).collect();
        let c: Vec<u8> = (0..200).map(|i| (255 - i) as u8).collect();
        let mut b = h0(4, 100, 200, 9, 1);
        b.extend_from_slice(&a[..128]);
        b.extend_from_slice(&h0(6, 90, 200, 8, 1));
        b.extend_from_slice(&c[..128]);
        b.push(0xc4);
        b.extend_from_slice(&a[128..]);
        b.push(0xc6);
        b.extend_from_slice(&c[128..]);
        let want = vec![msg(100, 9, 1, a), msg(90, 8, 1, c)];
        assert_eq!(decode_bytes(&b).unwrap(), want);
        for sizes in [&[1usize][..], &[3, 7], &[128], &[129, 1]] {
            assert_eq!(decode_split(&b, sizes).unwrap(), want);
        }
    }

    #[test]
    fn extended_timestamp_absolute_and_on_continuations() {
        let ts = 0x0100_0000;
        let payload = vec![7u8; 300];
        let mut b = h0(5, ts, 300, 9, 1);
        assert_eq!(b.len(), 16);
        b.extend_from_slice(&payload[..128]);
        b.extend_from_slice(&[0xc5, 0x01, 0, 0, 0]);
        b.extend_from_slice(&payload[128..256]);
        b.extend_from_slice(&[0xc5, 0x01, 0, 0, 0]);
        b.extend_from_slice(&payload[256..]);
        let want = vec![msg(ts, 9, 1, payload.clone())];
        assert_eq!(decode_bytes(&b).unwrap(), want);
        // The encoder writes exactly these bytes.
        let enc = ChunkEncoder::new().encode_to_vec(5, &want[0]);
        assert_eq!(&enc[..], &b[..]);
        // Exactly 0xFFFFFF also takes the extended form.
        let m = msg(0xff_ffff, 9, 1, vec![1u8; 10]);
        let enc = ChunkEncoder::new().encode_to_vec(5, &m);
        assert_eq!(&enc[1..4], &[0xff, 0xff, 0xff]);
        assert_eq!(enc.len(), 12 + 4 + 10);
        assert_eq!(decode_bytes(&enc).unwrap(), vec![m]);
    }

    #[test]
    fn extended_timestamp_delta_and_type3_new_message() {
        let mut b = h0(3, 10, 1, 9, 1);
        b.push(1);
        // fmt 2 with an extended delta of 0x01000000.
        b.extend_from_slice(&[0x83, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 2]);
        // fmt 3 new message: carries the extended field too, the delta applies again.
        b.extend_from_slice(&[0xc3, 0x01, 0, 0, 0, 3]);
        let out = decode_bytes(&b).unwrap();
        let ts: Vec<u32> = out.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![10, 10 + 0x0100_0000, 10 + 0x0200_0000]);
    }

    #[test]
    fn timestamps_wrap() {
        let mut b = h0(3, 0xffff_fff0, 1, 9, 1);
        b.push(1);
        b.extend_from_slice(&[0x83, 0, 0, 0x20, 2]);
        let out = decode_bytes(&b).unwrap();
        assert_eq!(out[1].timestamp, 0x10);
    }

    #[test]
    fn largest_message_at_chunk_size_16mib_and_128() {
        let payload: Bytes = (0..MAX_MESSAGE_LEN)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        let m = msg(33, 9, 1, payload);
        // Chunk size 16 MiB: a single chunk.
        let mut enc = ChunkEncoder::new();
        let mut stream =
            enc.encode_to_vec(2, &ChunkEncoder::set_chunk_size_message(MAX_CHUNK_SIZE));
        enc.set_chunk_size(MAX_CHUNK_SIZE);
        let one = enc.encode_to_vec(6, &m);
        assert_eq!(one.len(), 12 + MAX_MESSAGE_LEN as usize);
        stream.extend_from_slice(&one);
        let out = decode_bytes(&stream).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1], m);
        // Chunk size 128: 131072 chunks.
        let small = ChunkEncoder::new().encode_to_vec(6, &m);
        assert_eq!(small.len(), 12 + MAX_MESSAGE_LEN as usize + 131_071);
        let out = decode_bytes(&small).unwrap();
        assert_eq!(out, vec![m]);
    }

    #[test]
    fn set_chunk_size_mid_stream() {
        let mut enc = ChunkEncoder::new();
        let m1 = msg(0, 9, 1, vec![1u8; 1000]);
        let m2 = msg(40, 9, 1, vec![2u8; 5000]);
        let scs = ChunkEncoder::set_chunk_size_message(4096);
        let mut b = enc.encode_to_vec(6, &m1);
        b.extend_from_slice(&enc.encode_to_vec(2, &scs));
        enc.set_chunk_size(4096);
        let second = enc.encode_to_vec(6, &m2);
        assert_eq!(second.len(), 8 + 4096 + 1 + 904);
        b.extend_from_slice(&second);
        let mut dec = decoder();
        let mut input = BytesMut::from(&b[..]);
        assert_eq!(dec.decode(&mut input).unwrap(), Some(m1));
        assert_eq!(dec.chunk_size(), 128);
        assert_eq!(dec.decode(&mut input).unwrap(), Some(scs));
        assert_eq!(dec.chunk_size(), 4096);
        assert_eq!(dec.decode(&mut input).unwrap(), Some(m2));
        assert!(input.is_empty());
    }

    #[test]
    fn abort_drops_the_partial_message() {
        let mut b = h0(5, 0, 300, 9, 1);
        b.extend_from_slice(&[1u8; 128]);
        let abort = ChunkEncoder::new().encode_to_vec(2, &message::abort(5));
        b.extend_from_slice(&abort);
        let mut dec = decoder();
        let mut input = BytesMut::from(&b[..]);
        assert_eq!(dec.decode(&mut input).unwrap(), None);
        assert!(input.is_empty());
        assert_eq!(dec.buffered_bytes(), 0);
        // A type-3 chunk on csid 5 now starts a new message with the old header.
        let mut more = vec![0xc5];
        more.extend_from_slice(&[2u8; 128]);
        more.push(0xc5);
        more.extend_from_slice(&[2u8; 128]);
        more.push(0xc5);
        more.extend_from_slice(&[2u8; 44]);
        input.extend_from_slice(&more);
        let m = dec.decode(&mut input).unwrap().unwrap();
        assert_eq!(m.payload, Bytes::from(vec![2u8; 300]));
        // Abort of a chunk stream with nothing partial is harmless.
        input.extend_from_slice(&ChunkEncoder::new().encode_to_vec(2, &message::abort(9)));
        assert_eq!(dec.decode(&mut input).unwrap(), None);
    }

    #[test]
    fn new_header_during_a_partial_message_replaces_it() {
        let mut b = h0(5, 0, 300, 9, 1);
        b.extend_from_slice(&[1u8; 128]);
        b.extend_from_slice(&h0(5, 40, 3, 9, 1));
        b.extend_from_slice(b"new");
        let mut dec = decoder();
        let mut input = BytesMut::from(&b[..]);
        assert_eq!(
            dec.decode(&mut input).unwrap(),
            Some(msg(40, 9, 1, &b"new"[..]))
        );
        assert_eq!(dec.buffered_bytes(), 0);
    }

    #[test]
    fn partial_chunk_is_left_untouched() {
        let mut b = h0(3, 0, 200, 9, 1);
        b.extend_from_slice(&[1u8; 100]);
        let mut dec = decoder();
        let mut input = BytesMut::from(&b[..]);
        assert_eq!(dec.decode(&mut input).unwrap(), None);
        assert_eq!(input.len(), b.len());
        assert_eq!(dec.bytes_received(), 0);
        // Header incomplete, including the extended timestamp.
        let b = h0(3, 0x0100_0000, 5, 9, 1);
        let mut input = BytesMut::from(&b[..14]);
        assert_eq!(dec.decode(&mut input).unwrap(), None);
        assert_eq!(input.len(), 14);
        for n in 0..3 {
            let mut input = BytesMut::from(&[0x01, 0x00, 0x01][..n]);
            assert_eq!(decoder().decode(&mut input).unwrap(), None);
            assert_eq!(input.len(), n);
        }
    }

    #[test]
    fn single_chunk_payload_is_zero_copy() {
        let mut b = h0(3, 0, 4, 9, 1);
        b.extend_from_slice(b"data");
        let mut input = BytesMut::from(&b[..]);
        let start = input.as_ptr() as usize;
        let m = decoder().decode(&mut input).unwrap().unwrap();
        assert_eq!(m.payload.as_ptr() as usize, start + 12);
    }

    #[test]
    fn encoder_header_compression() {
        let mut enc = ChunkEncoder::new();
        let mut fmt = |m: RtmpMessage| enc.encode_to_vec(4, &m)[0] >> 6;
        assert_eq!(fmt(msg(100, 9, 1, vec![0; 10])), 0, "first message");
        assert_eq!(
            fmt(msg(140, 9, 1, vec![0; 10])),
            2,
            "after type 0: type 2, not 3"
        );
        assert_eq!(
            fmt(msg(180, 9, 1, vec![0; 10])),
            3,
            "same delta, length, type"
        );
        assert_eq!(fmt(msg(181, 9, 1, vec![0; 10])), 2, "delta changes");
        assert_eq!(fmt(msg(190, 9, 1, vec![0; 11])), 1, "length changes");
        assert_eq!(fmt(msg(199, 8, 1, vec![0; 11])), 1, "type changes");
        assert_eq!(fmt(msg(199, 8, 2, vec![0; 11])), 0, "stream changes");
        assert_eq!(
            fmt(msg(150, 8, 2, vec![0; 11])),
            0,
            "timestamp goes backwards"
        );
        assert_eq!(
            fmt(msg(150 + 0x0100_0000, 8, 2, vec![0; 11])),
            2,
            "extended delta"
        );
        assert_eq!(
            fmt(msg(150 + 0x0200_0000, 8, 2, vec![0; 11])),
            2,
            "never type 3 when extended"
        );
    }

    #[test]
    fn encoder_payload_chunks_are_slices() {
        let payload = Bytes::from(vec![9u8; 300]);
        let m = msg(0, 9, 1, payload.clone());
        let mut q = OutputQueue::new();
        ChunkEncoder::new().encode(3, &m, &mut q);
        let mut ptrs = Vec::new();
        while q.has_remaining() {
            let c = q.chunk();
            ptrs.push((c.as_ptr() as usize, c.len()));
            let n = c.len();
            q.advance(n);
        }
        let base = payload.as_ptr() as usize;
        assert_eq!(ptrs.len(), 6);
        assert_eq!((ptrs[1].0, ptrs[1].1), (base, 128));
        assert_eq!((ptrs[3].0, ptrs[3].1), (base + 128, 128));
        assert_eq!((ptrs[5].0, ptrs[5].1), (base + 256, 44));
    }

    fn random_message(rng: &mut Rng, ts: &mut u32) -> RtmpMessage {
        let len = match rng.below(10) {
            0 => 0,
            1 => rng.below(20_000) as usize,
            _ => rng.below(700) as usize,
        };
        *ts = match rng.below(12) {
            0 => rng.next() as u32,                      // jump anywhere (often extended)
            1 => ts.wrapping_sub(rng.below(100) as u32), // backwards
            2 => ts.wrapping_add(0x00ff_fff0 + rng.below(40) as u32), // extended delta
            3 => *ts,
            _ => ts.wrapping_add(rng.below(50) as u32),
        };
        let type_id = [8u8, 9, 18, 20, 15][rng.below(5) as usize];
        let stream_id = [0u32, 1, 1, 1, 7, 0xdead_beef][rng.below(6) as usize];
        msg(*ts, type_id, stream_id, rng.bytes(len))
    }

    #[test]
    fn round_trip_random_messages_and_splits() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..20 {
            let mut enc = ChunkEncoder::new();
            let mut stream = Vec::new();
            let mut want = Vec::new();
            let mut ts = 0;
            for _ in 0..60 {
                if rng.below(15) == 0 {
                    let size =
                        [1u32, 2, 77, 128, 4096, 65_536, MAX_CHUNK_SIZE][rng.below(7) as usize];
                    let scs = ChunkEncoder::set_chunk_size_message(size);
                    stream.extend_from_slice(&enc.encode_to_vec(2, &scs));
                    enc.set_chunk_size(size);
                    want.push(scs);
                }
                let m = random_message(&mut rng, &mut ts);
                let csid = [3u32, 4, 63, 64, 300, 320, 65_599][rng.below(7) as usize];
                stream.extend_from_slice(&enc.encode_to_vec(csid, &m));
                want.push(m);
            }
            assert_eq!(decode_bytes(&stream).unwrap(), want, "round {round}");
            let sizes: Vec<usize> = (0..17).map(|_| 1 + rng.below(3000) as usize).collect();
            assert_eq!(
                decode_split(&stream, &sizes).unwrap(),
                want,
                "round {round}"
            );
            if round < 3 {
                assert_eq!(decode_split(&stream, &[1]).unwrap(), want, "byte by byte");
            }
        }
    }

    #[test]
    fn round_trip_random_interleaving() {
        let mut rng = Rng(42);
        for _ in 0..20 {
            let csids = [3u32, 5, 70, 400];
            let mut enc = ChunkEncoder::new();
            // Per chunk stream: its chunks in order, and which message each chunk ends.
            let mut queues: Vec<Vec<(Vec<u8>, Option<RtmpMessage>)>> = vec![Vec::new(); 4];
            let mut ts = 0;
            for _ in 0..40 {
                let i = rng.below(4) as usize;
                let m = random_message(&mut rng, &mut ts);
                let chunks = chunks_of(&mut enc, csids[i], &m);
                let last = chunks.len() - 1;
                for (k, c) in chunks.into_iter().enumerate() {
                    queues[i].push((c, (k == last).then(|| m.clone())));
                }
            }
            for q in &mut queues {
                q.reverse();
            }
            let mut stream = Vec::new();
            let mut want = Vec::new();
            while queues.iter().any(|q| !q.is_empty()) {
                let i = rng.below(4) as usize;
                if let Some((c, done)) = queues[i].pop() {
                    stream.extend_from_slice(&c);
                    want.extend(done);
                }
            }
            assert_eq!(decode_bytes(&stream).unwrap(), want);
            assert_eq!(decode_split(&stream, &[1, 5, 300]).unwrap(), want);
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        // Type 1, 2 and 3 chunks on a chunk stream that never had a type-0 header.
        for b in [
            &[0xc3, 0][..],
            &[0x83, 0, 0, 0],
            &[0x43, 0, 0, 0, 0, 0, 1, 9, 1],
        ] {
            assert_eq!(
                decode_bytes(b),
                Err(ChunkError::NoPreviousHeader { csid: 3 })
            );
        }
        assert_eq!(
            decode_bytes(&[0xc0, 0x01]),
            Err(ChunkError::NoPreviousHeader { csid: 65 })
        );
        // Set Chunk Size of 0, with the top bit set, and above 16 MiB.
        for (size, err) in [
            (0u32, ChunkError::InvalidChunkSize(0)),
            (0x8000_0080, ChunkError::InvalidChunkSize(0x8000_0080)),
            (
                MAX_CHUNK_SIZE + 1,
                ChunkError::InvalidChunkSize(MAX_CHUNK_SIZE + 1),
            ),
        ] {
            let mut b = h0(2, 0, 4, 1, 0);
            b.extend_from_slice(&size.to_be_bytes());
            assert_eq!(decode_bytes(&b), Err(err));
        }
        // Control messages with short bodies.
        for type_id in [type_id::SET_CHUNK_SIZE, type_id::ABORT] {
            let mut b = h0(2, 0, 2, type_id, 0);
            b.extend_from_slice(&[0, 1]);
            assert!(matches!(
                decode_bytes(&b),
                Err(ChunkError::BadControlMessage { .. })
            ));
        }
    }

    #[test]
    fn limits_are_enforced() {
        let limits = DecoderLimits {
            max_partial_streams: 2,
            max_buffered_bytes: 1000,
            ..DecoderLimits::default()
        };
        let mut b = Vec::new();
        for csid in [3u8, 4, 5] {
            b.extend_from_slice(&h0(csid, 0, 300, 9, 1));
            b.extend_from_slice(&[0u8; 128]);
        }
        let mut dec = ChunkDecoder::new(limits.clone());
        let mut input = BytesMut::from(&b[..]);
        assert_eq!(
            dec.decode(&mut input),
            Err(ChunkError::TooManyPartialStreams(2))
        );

        // Two partial messages whose declared lengths add up past 1000 bytes: refused at
        // the second header, before its payload arrives.
        let mut b = h0(3, 0, 600, 9, 1);
        b.extend_from_slice(&[0u8; 128]);
        b.extend_from_slice(&h0(4, 0, 600, 9, 1));
        let mut dec = ChunkDecoder::new(limits.clone());
        let mut input = BytesMut::from(&b[..]);
        assert_eq!(
            dec.decode(&mut input),
            Err(ChunkError::TooMuchBuffered(1000))
        );
        assert_eq!(dec.buffered_bytes(), 128);

        // A new header on the same chunk stream replaces the partial message: only the
        // new declared length counts.
        let mut b = h0(3, 0, 600, 9, 1);
        b.extend_from_slice(&[0u8; 128]);
        b.extend_from_slice(&h0(3, 0, 900, 9, 1));
        b.extend_from_slice(&[0u8; 128]);
        let mut dec = ChunkDecoder::new(limits.clone());
        let mut input = BytesMut::from(&b[..]);
        assert_eq!(dec.decode(&mut input), Ok(None));
        assert!(input.is_empty());
        assert_eq!(dec.buffered_bytes(), 128);
    }

    #[test]
    fn declared_length_is_refused_before_the_payload_arrives() {
        // One header declaring a message larger than max_buffered_bytes, even one that
        // would come in a single chunk (at chunk size 16 MiB the caller's input buffer
        // would otherwise hold it all while waiting).
        let limits = DecoderLimits {
            max_buffered_bytes: 1000,
            ..DecoderLimits::default()
        };
        let mut b = ChunkEncoder::new()
            .encode_to_vec(2, &ChunkEncoder::set_chunk_size_message(MAX_CHUNK_SIZE));
        b.extend_from_slice(&h0(3, 0, 5000, 9, 1));
        let mut dec = ChunkDecoder::new(limits);
        let mut input = BytesMut::from(&b[..]);
        assert!(dec.decode(&mut input).unwrap().is_some()); // Set Chunk Size
        assert_eq!(
            dec.decode(&mut input),
            Err(ChunkError::TooMuchBuffered(1000))
        );
        // The same message at 1000 bytes is fine.
        let mut ok = h0(3, 0, 1000, 9, 1);
        ok.extend_from_slice(&[7u8; 1000]);
        let mut dec = ChunkDecoder::new(DecoderLimits {
            max_buffered_bytes: 1000,
            ..DecoderLimits::default()
        });
        dec.chunk_size = MAX_CHUNK_SIZE;
        let mut input = BytesMut::from(&ok[..]);
        assert_eq!(dec.decode(&mut input).unwrap().unwrap().payload.len(), 1000);
    }

    #[test]
    fn per_type_length_caps() {
        let d = DecoderLimits::default();
        for (type_id, max) in [
            (1u8, DEFAULT_MAX_CONTROL_LEN),
            (4, DEFAULT_MAX_CONTROL_LEN),
            (6, DEFAULT_MAX_CONTROL_LEN),
            (8, MAX_MESSAGE_LEN),
            (9, MAX_MESSAGE_LEN),
            (22, MAX_MESSAGE_LEN),
            (15, DEFAULT_MAX_DATA_LEN),
            (18, DEFAULT_MAX_DATA_LEN),
            (16, DEFAULT_MAX_COMMAND_LEN),
            (17, DEFAULT_MAX_COMMAND_LEN),
            (19, DEFAULT_MAX_COMMAND_LEN),
            (20, DEFAULT_MAX_COMMAND_LEN),
            (7, DEFAULT_MAX_COMMAND_LEN),
            (0xff, DEFAULT_MAX_COMMAND_LEN),
        ] {
            assert_eq!(d.max_message_len(type_id), max, "type {type_id}");
            // At the cap: accepted (only the header is here: waiting for more).
            let at = h0(3, 0, max, type_id, 0);
            assert_eq!(decoder().decode(&mut BytesMut::from(&at[..])), Ok(None));
            if max < MAX_MESSAGE_LEN {
                // One byte over: refused from the header alone.
                let over = h0(3, 0, max + 1, type_id, 0);
                assert_eq!(
                    decoder().decode(&mut BytesMut::from(&over[..])),
                    Err(ChunkError::MessageTooLarge {
                        type_id,
                        len: max + 1,
                        max
                    }),
                    "type {type_id}"
                );
            }
        }
        // A fmt 1 header changing the type of a chunk stream is checked too, and so is a
        // type-3 chunk starting a new message after the limits were lowered.
        let mut b = h0(3, 0, 4, 9, 1);
        b.extend_from_slice(&[0u8; 4]);
        b.extend_from_slice(&[0x43, 0, 0, 0, 0x01, 0, 1, 20]);
        assert_eq!(
            decode_bytes(&b),
            Err(ChunkError::MessageTooLarge {
                type_id: 20,
                len: 65_537,
                max: DEFAULT_MAX_COMMAND_LEN
            })
        );
        let mut b = h0(3, 0, 100, 9, 1);
        b.extend_from_slice(&[0u8; 100]);
        let mut dec = decoder();
        let mut input = BytesMut::from(&b[..]);
        assert!(dec.decode(&mut input).unwrap().is_some());
        dec.set_limits(DecoderLimits {
            max_media_len: 99,
            ..DecoderLimits::default()
        });
        assert_eq!(dec.limits().max_media_len, 99);
        input.extend_from_slice(&[0xc3]);
        assert_eq!(
            dec.decode(&mut input),
            Err(ChunkError::MessageTooLarge {
                type_id: 9,
                len: 100,
                max: 99
            })
        );
        let e = ChunkError::MessageTooLarge {
            type_id: 20,
            len: 16_777_215,
            max: 65_536,
        };
        assert_eq!(
            e.to_string(),
            "message of type 20 declares 16777215 bytes, more than the 65536 allowed for its type"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = Rng(7);
        for _ in 0..3000 {
            let len = rng.below(400) as usize;
            let mut bytes = rng.bytes(len);
            // Bias towards small chunk stream ids so headers get reused.
            for b in bytes.iter_mut().step_by(7) {
                *b &= 0xc7;
            }
            let step = 1 + rng.below(50) as usize;
            let mut dec = decoder();
            let mut input = BytesMut::new();
            for piece in bytes.chunks(step) {
                input.extend_from_slice(piece);
                if drain(&mut dec, &mut input).is_err() {
                    break;
                }
            }
            assert!(dec.bytes_received() + input.len() as u64 <= bytes.len() as u64);
        }
    }

    /// The attack: one tiny message on each of 65,536 chunk stream ids (3-byte basic
    /// headers). Before the cap, every id kept its state for the connection's life
    /// (0.91 MB of input pinned 8.6 MB); now the decoder refuses the 65th id of 64 and
    /// above, having kept 64.
    #[test]
    fn a_spray_of_chunk_stream_ids_is_refused_at_the_cap() {
        let mut input = BytesMut::new();
        for csid in 64u32..64 + 65_536 {
            // fmt 0, basic header form 1 (csid - 64 in two bytes, little endian).
            input.extend_from_slice(&[0x01]);
            input.extend_from_slice(&((csid - 64) as u16).to_le_bytes());
            input.extend_from_slice(&[0, 0, 0, 0, 0, 1, 99, 1, 0, 0, 0, 7]);
        }
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        let mut decoded = 0;
        let err = loop {
            match dec.decode(&mut input) {
                Ok(Some(_)) => decoded += 1,
                Ok(None) => panic!("all input decoded: the cap never applied"),
                Err(e) => break e,
            }
        };
        assert_eq!(
            err,
            ChunkError::TooManyChunkStreams(DEFAULT_MAX_HIGH_CHUNK_STREAMS)
        );
        assert_eq!(decoded, DEFAULT_MAX_HIGH_CHUNK_STREAMS);
        assert_eq!(dec.streams.high.len(), DEFAULT_MAX_HIGH_CHUNK_STREAMS);
        // Ids below 64 are not counted: an encoder's usual ids keep working past it.
        let mut dec = ChunkDecoder::new(DecoderLimits {
            max_high_chunk_streams: 0,
            ..DecoderLimits::default()
        });
        let mut low = BytesMut::from(&h0(5, 0, 1, 99, 1)[..]);
        low.extend_from_slice(&[7]);
        assert!(dec.decode(&mut low).unwrap().is_some());
    }
}
