//! The RTMP chunk stream: splitting messages into chunks and reassembling them.
//!
//! rml_rtmp 0.8's `ChunkDeserializer` keeps one payload buffer for all chunk streams, so
//! chunks of two chunk streams interleaved (legal, and sent by real encoders) make it
//! panic. This decoder keeps one partial message per chunk stream id.

use crate::message::RtmpMessage;
use crate::output::OutputQueue;
use bytes::BytesMut;

/// Largest chunk size longhaul accepts or sets: 16 MiB (a message can be at most
/// 2^24 - 1 bytes long, so a larger chunk size changes nothing).
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;

/// Bounds on what a peer may make the decoder hold.
#[derive(Debug, Clone)]
pub struct DecoderLimits {
    /// Chunk streams with a partial message at once.
    pub max_partial_streams: usize,
    /// Bytes held in partial messages, all chunk streams together.
    pub max_buffered_bytes: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        Self {
            max_partial_streams: 64,
            max_buffered_bytes: 64 * 1024 * 1024,
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
    #[error("partial messages would hold more than {0} bytes")]
    TooMuchBuffered(usize),
    #[error("malformed protocol control message type {type_id}: {reason}")]
    BadControlMessage { type_id: u8, reason: &'static str },
}

/// Reassembles messages from chunks. Applies Set Chunk Size and Abort itself (and still
/// returns the Set Chunk Size message, so the session can log it).
#[derive(Debug)]
pub struct ChunkDecoder {
    _limits: DecoderLimits,
}

impl ChunkDecoder {
    pub fn new(limits: DecoderLimits) -> Self {
        Self { _limits: limits }
    }
    /// Takes bytes from the front of `input` and returns the next complete message, or
    /// `Ok(None)` when `input` holds no complete message yet (the unused tail stays in it).
    pub fn decode(&mut self, input: &mut BytesMut) -> Result<Option<RtmpMessage>, ChunkError> {
        let _ = input;
        unimplemented!("filled in by the chunk implementation")
    }
    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> u32 {
        unimplemented!()
    }
    /// Total bytes consumed so far (for acknowledgements).
    pub fn bytes_received(&self) -> u64 {
        unimplemented!()
    }
}

/// Splits messages into chunks with header compression per chunk stream id.
#[derive(Debug)]
pub struct ChunkEncoder {
    _chunk_size: u32,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// A new encoder at the protocol's initial chunk size, 128.
    pub fn new() -> Self {
        Self { _chunk_size: 128 }
    }
    /// Changes the outgoing chunk size; the caller must send a Set Chunk Size message
    /// (see [`ChunkEncoder::set_chunk_size_message`]) before any message chunked with it.
    pub fn set_chunk_size(&mut self, size: u32) {
        let _ = size;
        unimplemented!()
    }
    pub fn chunk_size(&self) -> u32 {
        unimplemented!()
    }
    /// Appends `message`, chunked on chunk stream `csid`, to `out`. Payload chunks are
    /// slices of `message.payload` (no copy); headers are small owned segments.
    pub fn encode(&mut self, csid: u32, message: &RtmpMessage, out: &mut OutputQueue) {
        let _ = (csid, message, out);
        unimplemented!()
    }
    /// Encodes into a contiguous buffer (tests, benchmarks, fuzzing).
    pub fn encode_to_vec(&mut self, csid: u32, message: &RtmpMessage) -> BytesMut {
        let mut q = OutputQueue::new();
        self.encode(csid, message, &mut q);
        BytesMut::from(&q.to_vec()[..])
    }
}
