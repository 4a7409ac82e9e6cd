//! FLV, the file form of RTMP media: writing tags for HTTP-FLV, reading them back.
//!
//! An FLV tag is an RTMP message with an 11-byte header (type, size, timestamp, stream
//! id) and a 4-byte trailer (the tag's size, PreviousTagSize). [`TagHeader`] is the one
//! parser and writer of that header, for FLV files and HTTP-FLV bodies ([`FlvReader`]) and
//! for the parts of RTMP aggregate messages ([`crate::message::split_aggregate`]).
//!
//! Writing needs no copy of the payload: [`FlvTag::from_message`] says which messages
//! are FLV tags (turning the AMF0-in-AMF3 data messages encoders send into script tags),
//! and [`FlvWriter`] puts the previous tag's trailer and this tag's header in one small
//! buffer, next to the message's shared [`Bytes`]. ([`tag_header`] and [`tag_trailer`]
//! remain for writers that send the three parts separately.)

use crate::message::{type_id, RtmpMessage};
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The 9-byte FLV header announcing audio and video (signature, version 1, flags 0x05,
/// header length 9). A body written with [`FlvWriter`] starts with it.
pub const FLV_HEADER: [u8; 9] = [b'F', b'L', b'V', 1, 0x05, 0, 0, 0, 9];

/// File header announcing audio and video, followed by PreviousTagSize0 = 0: for writers
/// that send [`tag_header`], payload and [`tag_trailer`] per message.
pub const FILE_HEADER: [u8; 13] = {
    let mut h = [0u8; 13];
    let mut i = 0;
    while i < FLV_HEADER.len() {
        h[i] = FLV_HEADER[i];
        i += 1;
    }
    h
};

/// Bytes of a tag header.
pub const TAG_HEADER_LEN: usize = 11;

/// Bytes of the PreviousTagSize trailer after each tag (and after the file header).
pub const TAG_TRAILER_LEN: usize = 4;

/// FLV tag types (FLV spec v10, E.4.1): the RTMP message type ids of the same content.
pub mod tag_type {
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const SCRIPT_DATA: u8 = 18;
}

/// An FLV tag header: what the 11 bytes before each tag body (and each part of an RTMP
/// aggregate message) say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagHeader {
    /// Tag type (8 audio, 9 video, 18 script data). [`TagHeader::parse`] keeps the low
    /// 5 bits: the top bits are reserved and the encryption filter flag.
    pub tag_type: u8,
    /// Length of the body (24 bits).
    pub data_size: u32,
    /// Milliseconds: 24 bits plus the extension byte holding bits 24-31.
    pub timestamp: u32,
    /// 24 bits, always 0 in files.
    pub stream_id: u32,
}

impl TagHeader {
    /// The header of a tag carrying `message` as it is (type id, timestamp, payload
    /// length; stream id 0). Payloads longer than 2^24 - 1 cannot occur: an RTMP message
    /// length is 24 bits.
    pub fn of(message: &RtmpMessage) -> Self {
        Self {
            tag_type: message.type_id,
            data_size: message.payload.len() as u32,
            timestamp: message.timestamp,
            stream_id: 0,
        }
    }

    /// Reads the header at the front of `bytes`; `None` if fewer than 11 bytes.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let h = bytes.get(..TAG_HEADER_LEN)?;
        Some(Self {
            tag_type: h[0] & 0x1f,
            data_size: u32::from_be_bytes([0, h[1], h[2], h[3]]),
            timestamp: u32::from_be_bytes([h[7], h[4], h[5], h[6]]),
            stream_id: u32::from_be_bytes([0, h[8], h[9], h[10]]),
        })
    }

    /// The 11 bytes of this header (24-bit fields keep their low 24 bits).
    pub fn to_bytes(&self) -> [u8; TAG_HEADER_LEN] {
        let [_, s1, s2, s3] = self.data_size.to_be_bytes();
        let [t0, t1, t2, t3] = self.timestamp.to_be_bytes();
        let [_, i1, i2, i3] = self.stream_id.to_be_bytes();
        [self.tag_type, s1, s2, s3, t1, t2, t3, t0, i1, i2, i3]
    }
}

/// The 11-byte tag header of `message` (see [`TagHeader::of`]).
pub fn tag_header(message: &RtmpMessage) -> [u8; TAG_HEADER_LEN] {
    TagHeader::of(message).to_bytes()
}

/// The 4-byte PreviousTagSize that follows the tag of `message`.
pub fn tag_trailer(message: &RtmpMessage) -> [u8; TAG_TRAILER_LEN] {
    ((TAG_HEADER_LEN + message.payload.len()) as u32).to_be_bytes()
}

/// A message as an FLV tag: its tag type, timestamp and body (a slice of the message's
/// payload, never a copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// One of [`tag_type`].
    pub tag_type: u8,
    pub timestamp: u32,
    pub body: Bytes,
}

impl FlvTag {
    /// The tag carrying `message`, or `None` when it has no FLV form.
    ///
    /// - audio (8), video (9) and AMF0 data (18): as they are;
    /// - AMF3 data (15) starting with the 0x00 format byte, i.e. AMF0 values in the AMF3
    ///   envelope (what encoders that send type 15 put there): a script data tag (18) of
    ///   the payload from byte 1;
    /// - anything else (commands, protocol control, aggregates (split them first), AMF3
    ///   data in real AMF3): `None`.
    pub fn from_message(message: &RtmpMessage) -> Option<Self> {
        let (tag_type, body) = match message.type_id {
            type_id::AUDIO | type_id::VIDEO | type_id::DATA_AMF0 => {
                (message.type_id, message.payload.clone())
            }
            type_id::DATA_AMF3 if message.payload.first() == Some(&0x00) => {
                (tag_type::SCRIPT_DATA, message.payload.slice(1..))
            }
            _ => return None,
        };
        Some(Self {
            tag_type,
            timestamp: message.timestamp,
            body,
        })
    }

    pub fn header(&self) -> TagHeader {
        TagHeader {
            tag_type: self.tag_type,
            data_size: self.body.len() as u32,
            timestamp: self.timestamp,
            stream_id: 0,
        }
    }

    /// This tag's PreviousTagSize: header and body.
    pub fn size(&self) -> u32 {
        (TAG_HEADER_LEN + self.body.len()) as u32
    }

    /// One 15-byte buffer: `previous_tag_size` (the trailer of the tag before; 0, i.e.
    /// PreviousTagSize0, before the first) followed by this tag's header. Write it, then
    /// [`FlvTag::body`].
    pub fn prefix(&self, previous_tag_size: u32) -> Bytes {
        let mut b = BytesMut::with_capacity(TAG_TRAILER_LEN + TAG_HEADER_LEN);
        b.put_u32(previous_tag_size);
        b.put_slice(&self.header().to_bytes());
        b.freeze()
    }
}

/// Writes a live FLV body (HTTP-FLV) with one small allocation per message: [`FLV_HEADER`]
/// first, then per tag a prefix (the previous tag's trailer and this tag's header) and
/// the shared body.
#[derive(Debug, Default)]
pub struct FlvWriter {
    /// PreviousTagSize of the last tag written (0 before the first: PreviousTagSize0).
    previous_tag_size: u32,
}

impl FlvWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The first bytes of the body: [`FLV_HEADER`] (its PreviousTagSize0 comes in the
    /// first tag's prefix).
    pub fn header(&self) -> Bytes {
        Bytes::from_static(&FLV_HEADER)
    }

    /// The prefix and body of the tag carrying `message`, to write in this order;
    /// `None` (and nothing changes) when the message has no FLV form
    /// ([`FlvTag::from_message`]).
    pub fn write(&mut self, message: &RtmpMessage) -> Option<[Bytes; 2]> {
        let tag = FlvTag::from_message(message)?;
        let prefix = tag.prefix(self.previous_tag_size);
        self.previous_tag_size = tag.size();
        Some([prefix, tag.body])
    }

    /// The trailer of the last tag written, to end a file cleanly (a live body may end
    /// without it: readers stop at the last whole tag).
    pub fn finish(&self) -> Bytes {
        Bytes::copy_from_slice(&self.previous_tag_size.to_be_bytes())
    }
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
            // The header and PreviousTagSize0.
            let skip = (header_len as usize).saturating_add(TAG_TRAILER_LEN);
            if self.buffer.len() < skip {
                return Ok(None);
            }
            self.buffer.advance(skip);
            self.header_done = true;
        }
        let Some(header) = TagHeader::parse(&self.buffer) else {
            return Ok(None);
        };
        let len = header.data_size as usize;
        let total = TAG_HEADER_LEN + len + TAG_TRAILER_LEN;
        if self.buffer.len() < total {
            return Ok(None);
        }
        let mut tag = self.buffer.split_to(total);
        tag.advance(TAG_HEADER_LEN);
        tag.truncate(len);
        Ok(Some(RtmpMessage {
            timestamp: header.timestamp,
            type_id: header.tag_type,
            stream_id: 0,
            payload: tag.freeze(),
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

    fn msg(type_id: u8, timestamp: u32, payload: &'static [u8]) -> RtmpMessage {
        RtmpMessage {
            timestamp,
            type_id,
            stream_id: 1,
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn tag_header_parse_and_write() {
        let h = TagHeader {
            tag_type: 9,
            data_size: 0x01_0203,
            timestamp: 0x8a0b_0c0d,
            stream_id: 0x0a_0b0c,
        };
        let bytes = h.to_bytes();
        assert_eq!(
            bytes,
            [9, 1, 2, 3, 0x0b, 0x0c, 0x0d, 0x8a, 0x0a, 0x0b, 0x0c]
        );
        assert_eq!(TagHeader::parse(&bytes), Some(h));
        // The filter flag and reserved bits are not part of the type.
        let mut filtered = bytes;
        filtered[0] |= 0xe0;
        assert_eq!(TagHeader::parse(&filtered).map(|h| h.tag_type), Some(9));
        assert_eq!(TagHeader::parse(&bytes[..10]), None);
        let m = msg(8, 0x0100_0002, b"abc");
        assert_eq!(tag_header(&m), TagHeader::of(&m).to_bytes());
        assert_eq!(TagHeader::of(&m).data_size, 3);
        assert_eq!(FILE_HEADER[..9], FLV_HEADER);
        assert_eq!(FILE_HEADER[9..], [0, 0, 0, 0]);
    }

    #[test]
    fn flv_tags_of_messages() {
        for (t, want) in [(8u8, Some(8u8)), (9, Some(9)), (18, Some(18))] {
            let m = msg(t, 40, b"\x02\x00\x01x");
            let tag = FlvTag::from_message(&m);
            assert_eq!(tag.as_ref().map(|t| t.tag_type), want);
            assert_eq!(tag.map(|t| t.body), Some(m.payload.clone()));
        }
        // AMF0 in the AMF3 envelope: a script tag of the payload after the format byte,
        // sharing the message's bytes.
        let m = msg(15, 40, b"\x00\x02\x00\x0aonMetaData\x05");
        let tag = FlvTag::from_message(&m).unwrap();
        assert_eq!((tag.tag_type, tag.timestamp), (tag_type::SCRIPT_DATA, 40));
        assert_eq!(&tag.body[..], &m.payload[1..]);
        assert_eq!(tag.body.as_ptr() as usize, m.payload.as_ptr() as usize + 1);
        assert_eq!(tag.size(), 11 + 14);
        // Real AMF3 data, empty AMF3 data, commands, control, aggregates: no FLV form.
        for m in [
            msg(15, 0, b"\x06\x05x"),
            msg(15, 0, b""),
            msg(20, 0, b"\x02\x00\x01x"),
            msg(17, 0, b"\x00\x02"),
            msg(4, 0, b"\x00\x06\x00\x00\x00\x01"),
            msg(22, 0, b""),
        ] {
            assert_eq!(FlvTag::from_message(&m), None, "type {}", m.type_id);
        }
    }

    #[test]
    fn writer_puts_trailer_and_header_in_one_buffer() {
        let messages = [
            msg(18, 0, b"\x02\x00\x0aonMetaData\x05"),
            msg(20, 0, b"\x02\x00\x01x"), // skipped
            msg(9, 40, &[0x17, 0, 0, 0, 0, 1, 2]),
            msg(15, 60, b"\x00\x02\x00\x03abc"),
            msg(8, 0x1234_5678, &[0xaf, 1, 9]),
        ];
        let mut writer = FlvWriter::new();
        let mut body = writer.header().to_vec();
        let mut parts = 0;
        for m in &messages {
            if let Some([prefix, tag_body]) = writer.write(m) {
                assert_eq!(prefix.len(), TAG_TRAILER_LEN + TAG_HEADER_LEN);
                assert_eq!(
                    tag_body.as_ptr(),
                    m.payload[m.payload.len() - tag_body.len()..].as_ptr()
                );
                body.extend_from_slice(&prefix);
                body.extend_from_slice(&tag_body);
                parts += 1;
            }
        }
        body.extend_from_slice(&writer.finish());
        assert_eq!(parts, 4);
        // The same bytes as the three-part writer (header, payload, trailer per message).
        let mut three_part = FILE_HEADER.to_vec();
        for m in &messages {
            let Some(tag) = FlvTag::from_message(m) else {
                continue;
            };
            let as_message = RtmpMessage {
                type_id: tag.tag_type,
                payload: tag.body,
                ..m.clone()
            };
            three_part.extend_from_slice(&tag_header(&as_message));
            three_part.extend_from_slice(&as_message.payload);
            three_part.extend_from_slice(&tag_trailer(&as_message));
        }
        assert_eq!(body, three_part);
        let mut reader = FlvReader::new();
        reader.push(&body);
        let mut got = Vec::new();
        while let Some(tag) = reader.next_tag().unwrap() {
            got.push((tag.type_id, tag.timestamp, tag.payload));
        }
        assert_eq!(
            got.iter().map(|(t, ts, _)| (*t, *ts)).collect::<Vec<_>>(),
            vec![(18, 0), (9, 40), (18, 60), (8, 0x1234_5678)]
        );
        assert_eq!(&got[2].2[..], b"\x02\x00\x03abc");
    }

    #[test]
    fn rejects_what_is_not_flv() {
        let mut reader = FlvReader::new();
        reader.push(b"GIF89a...");
        assert_eq!(reader.next_tag(), Err(FlvError::NotFlv(*b"GIF")));
    }
}
