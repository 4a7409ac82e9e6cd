//! The marker every synthetic media payload carries right after its FLV tag header: a
//! magic, the stream's index, the frame's sequence number and its send time, so that a
//! player (maybe in another process on the same machine) can tell which frame of which
//! stream arrived, and how late.
//!
//! Layout (big endian), [`STAMP_LEN`] bytes:
//!
//! | bytes | what |
//! |---|---|
//! | 0..4 | [`MAGIC`], `LHLD` |
//! | 4..8 | stream index (`u32`) |
//! | 8..12 | sequence number within the stream, from 0 (`u32`) |
//! | 12..20 | send time: the frame's scheduled capture time, unix microseconds (`u64`) |
//!
//! The stamp sits after the tag header, so the relay still sees an ordinary AVC NALU
//! (keyframe or inter) or AAC raw frame and treats keyframes as keyframes.

use bytes::BufMut;
use longhaul_rtmp::message::type_id;

/// Marks a payload as one of ours; anything else a player receives is not measured.
pub const MAGIC: [u8; 4] = *b"LHLD";
/// Bytes of a stamp.
pub const STAMP_LEN: usize = 20;

/// FLV video tag header of an AVC keyframe NALU: frame type 1 + codec 7, packet type 1
/// (NALU), composition time 0 (as `benches/relay_path.rs` sends, which the origin takes).
pub const AVC_KEY_HEADER: [u8; 5] = [0x17, 1, 0, 0, 0];
/// FLV video tag header of an AVC inter-frame NALU (frame type 2).
pub const AVC_INTER_HEADER: [u8; 5] = [0x27, 1, 0, 0, 0];
/// FLV audio tag header of an AAC raw frame: format 10, 44 kHz flag, 16 bit, stereo;
/// packet type 1 (raw).
pub const AAC_RAW_HEADER: [u8; 2] = [0xaf, 1];

/// Which stream, which frame, when it was due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub stream: u32,
    pub seq: u32,
    /// Scheduled capture time, unix microseconds.
    pub sent_us: u64,
}

impl Stamp {
    /// Appends the stamp's [`STAMP_LEN`] bytes.
    pub fn put(&self, out: &mut impl BufMut) {
        out.put_slice(&MAGIC);
        out.put_u32(self.stream);
        out.put_u32(self.seq);
        out.put_u64(self.sent_us);
    }

    /// The stamp of a media payload of RTMP type `type_id`, if it carries one: an AVC
    /// NALU or AAC raw frame whose bytes after the tag header start with [`MAGIC`].
    /// Sequence headers, metadata and anyone else's media give `None`.
    pub fn read(type_id: u8, payload: &[u8]) -> Option<Self> {
        let header = match type_id {
            type_id::VIDEO => match payload.get(..2)? {
                [0x17 | 0x27, 1] => AVC_KEY_HEADER.len(),
                _ => return None,
            },
            type_id::AUDIO => match payload.get(..2)? {
                [0xaf, 1] => AAC_RAW_HEADER.len(),
                _ => return None,
            },
            _ => return None,
        };
        let b = payload.get(header..header + STAMP_LEN)?;
        if b[..4] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut sent = [0u8; 8];
        sent.copy_from_slice(&b[12..20]);
        Some(Self {
            stream: u32_at(4),
            seq: u32_at(8),
            sent_us: u64::from_be_bytes(sent),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(header: &[u8], stamp: Stamp, tail: usize) -> Vec<u8> {
        let mut v = header.to_vec();
        stamp.put(&mut v);
        v.extend(std::iter::repeat_n(0x5a, tail));
        v
    }

    #[test]
    fn round_trips_after_each_tag_header() {
        let s = Stamp {
            stream: 7,
            seq: 123_456,
            sent_us: 1_764_000_000_123_456,
        };
        for (t, h) in [
            (type_id::VIDEO, &AVC_KEY_HEADER[..]),
            (type_id::VIDEO, &AVC_INTER_HEADER[..]),
            (type_id::AUDIO, &AAC_RAW_HEADER[..]),
        ] {
            assert_eq!(Stamp::read(t, &payload(h, s, 100)), Some(s));
            // Exactly the stamp, nothing after it.
            assert_eq!(Stamp::read(t, &payload(h, s, 0)), Some(s));
        }
    }

    #[test]
    fn foreign_payloads_are_refused() {
        let s = Stamp {
            stream: 1,
            seq: 2,
            sent_us: 3,
        };
        // Sequence headers (packet type 0).
        assert_eq!(
            Stamp::read(type_id::VIDEO, &[0x17, 0, 0, 0, 0, 1, 0x64]),
            None
        );
        assert_eq!(Stamp::read(type_id::AUDIO, &[0xaf, 0, 0x12, 0x10]), None);
        // A real encoder's frame: no magic.
        let mut real = AVC_INTER_HEADER.to_vec();
        real.extend([0u8; 40]);
        assert_eq!(Stamp::read(type_id::VIDEO, &real), None);
        // Truncated stamp.
        let p = payload(&AVC_KEY_HEADER, s, 0);
        assert_eq!(Stamp::read(type_id::VIDEO, &p[..p.len() - 1]), None);
        // Right bytes, wrong message type; wrong header for the type.
        assert_eq!(Stamp::read(type_id::DATA_AMF0, &p), None);
        assert_eq!(Stamp::read(type_id::AUDIO, &p), None);
        assert_eq!(
            Stamp::read(type_id::VIDEO, &payload(&AAC_RAW_HEADER, s, 10)),
            None
        );
        assert_eq!(Stamp::read(type_id::VIDEO, &[]), None);
    }
}
