//! FLV, the file form of RTMP media: writing tags for HTTP-FLV, reading them back.
//!
//! An FLV tag is an RTMP message with an 11-byte header (type, size, timestamp, stream
//! id) and a 4-byte trailer (the tag's size). Writing one needs no copy of the payload:
//! [`tag_header`] and [`tag_trailer`] go around the message's shared [`Bytes`].

use crate::message::RtmpMessage;
use bytes::{Buf, Bytes, BytesMut};

/// File header announcing audio and video, followed by PreviousTagSize0 = 0.
pub const FILE_HEADER: [u8; 13] = [b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9, 0, 0, 0, 0];

/// Bytes of a tag header.
pub const TAG_HEADER_LEN: usize = 11;

/// The 11-byte tag header of `message`. Payloads longer than 2^24 - 1 cannot occur:
/// an RTMP message length is 24 bits.
pub fn tag_header(message: &RtmpMessage) -> [u8; TAG_HEADER_LEN] {
    let len = message.payload.len() as u32;
    let ts = message.timestamp;
    [
        message.type_id,
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        (ts >> 16) as u8,
        (ts >> 8) as u8,
        ts as u8,
        (ts >> 24) as u8,
        0,
        0,
        0,
    ]
}

/// The 4-byte PreviousTagSize that follows the tag of `message`.
pub fn tag_trailer(message: &RtmpMessage) -> [u8; 4] {
    ((TAG_HEADER_LEN + message.payload.len()) as u32).to_be_bytes()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlvError {
    #[error("not an FLV file (signature {0:?})")]
    NotFlv([u8; 3]),
    #[error("FLV header length {0} is shorter than 9")]
    BadHeaderLength(u32),
}

/// Reads tags out of FLV bytes as they arrive (an HTTP-FLV body, a file).
#[derive(Debug, Default)]
pub struct FlvReader {
    buffer: BytesMut,
    header_done: bool,
}

impl FlvReader {
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }
    /// The next complete tag as a message on stream 0, or `Ok(None)` when more bytes are needed.
    pub fn next_tag(&mut self) -> Result<Option<RtmpMessage>, FlvError> {
        if !self.header_done {
            if self.buffer.len() < 9 {
                return Ok(None);
            }
            let signature = [self.buffer[0], self.buffer[1], self.buffer[2]];
            if &signature != b"FLV" {
                return Err(FlvError::NotFlv(signature));
            }
            let header_len = u32::from_be_bytes([
                self.buffer[5],
                self.buffer[6],
                self.buffer[7],
                self.buffer[8],
            ]);
            if header_len < 9 {
                return Err(FlvError::BadHeaderLength(header_len));
            }
            let skip = header_len as usize + 4; // header and PreviousTagSize0
            if self.buffer.len() < skip {
                return Ok(None);
            }
            self.buffer.advance(skip);
            self.header_done = true;
        }
        if self.buffer.len() < TAG_HEADER_LEN {
            return Ok(None);
        }
        let b = &self.buffer;
        let len = u32::from_be_bytes([0, b[1], b[2], b[3]]) as usize;
        let total = TAG_HEADER_LEN + len + 4;
        if b.len() < total {
            return Ok(None);
        }
        let type_id = b[0] & 0x1f; // the top bits are the filter flag and reserved
        let timestamp = u32::from_be_bytes([b[7], b[4], b[5], b[6]]);
        let mut tag = self.buffer.split_to(total);
        tag.advance(TAG_HEADER_LEN);
        tag.truncate(len);
        let payload: Bytes = tag.freeze();
        Ok(Some(RtmpMessage {
            timestamp,
            type_id,
            stream_id: 0,
            payload,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_tags_read_back_byte_for_byte() {
        let messages = [
            RtmpMessage {
                timestamp: 0,
                type_id: 18,
                stream_id: 1,
                payload: Bytes::from_static(b"\x02\x00\x0aonMetaData"),
            },
            RtmpMessage {
                timestamp: 40,
                type_id: 9,
                stream_id: 1,
                payload: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2]),
            },
            RtmpMessage {
                timestamp: 0x1234_5678,
                type_id: 8,
                stream_id: 1,
                payload: Bytes::from_static(&[0xaf, 1, 9]),
            },
        ];
        let mut file = FILE_HEADER.to_vec();
        for m in &messages {
            file.extend_from_slice(&tag_header(m));
            file.extend_from_slice(&m.payload);
            file.extend_from_slice(&tag_trailer(m));
        }
        // Feed one byte at a time: the reader must wait for whole tags.
        let mut reader = FlvReader::new();
        let mut got = Vec::new();
        for byte in file {
            reader.push(&[byte]);
            while let Some(tag) = reader.next_tag().unwrap() {
                got.push(tag);
            }
        }
        assert_eq!(got.len(), 3);
        for (g, m) in got.iter().zip(&messages) {
            assert_eq!(
                (g.timestamp, g.type_id, &g.payload),
                (m.timestamp, m.type_id, &m.payload)
            );
        }
    }

    #[test]
    fn rejects_what_is_not_flv() {
        let mut reader = FlvReader::new();
        reader.push(b"GIF89a...");
        assert_eq!(reader.next_tag(), Err(FlvError::NotFlv(*b"GIF")));
    }
}
