//! What H.264 and H.265 depacketisers share: assembling NAL units into access units,
//! resynchronising after a loss, and reading parameter sets.
//!
//! Both payload formats (RFC 6184, RFC 7798) carry NAL units whole, several to a packet
//! (STAP-A, AP) or one over several packets (FU-A, FU). An access unit ends at the RTP
//! marker bit or when the RTP timestamp changes (RFC 6184, 5.1: the marker is set on
//! the last packet of an access unit, and every packet of one access unit has its
//! timestamp). [`Assembler`] holds the access unit in progress within
//! [`MAX_FRAME_BYTES`] and [`MAX_NAL_UNITS_PER_FRAME`], drops it whole when part of it
//! is missing, and after a loss skips packets until an access unit starts, so a frame
//! missing its first slices is never emitted as if complete.
//!
//! Parameter sets are read from their RBSP: the NAL unit with its emulation prevention
//! bytes removed ([`rbsp`]), through a checked bit reader ([`BitReader`]).

use super::{DepacketizeError, MAX_FRAME_BYTES, MAX_NAL_UNITS_PER_FRAME};
use crate::rtp::RtpPacket;
use bytes::{Bytes, BytesMut};

/// An access unit the assembler completed.
#[derive(Debug)]
pub(super) struct AccessUnit {
    pub(super) timestamp: u32,
    pub(super) nal_units: Vec<Bytes>,
    /// Part of it is missing (already counted as dropped): not a frame to emit, but its
    /// complete NAL units may still hold parameter sets.
    pub(super) damaged: bool,
}

/// NAL units to access units, for one track.
#[derive(Debug, Default)]
pub(super) struct Assembler {
    /// The RTP timestamp of the access unit in progress, if one is.
    timestamp: Option<u32>,
    nal_units: Vec<Bytes>,
    /// Bytes of the access unit once written: NAL units, their 4-byte lengths, and
    /// the fragment in progress.
    size: usize,
    /// A fragmented NAL unit in progress (its header rebuilt, then the fragments).
    fragment: Option<BytesMut>,
    /// Part of the access unit in progress is missing: drop it when it ends.
    damaged: bool,
    /// After a loss: skip packets until one starts an access unit.
    resynchronising: bool,
    /// The timestamp and marker bit of the last packet seen.
    last_packet: Option<(u32, bool)>,
    /// The timestamp of the last access unit counted as dropped (not to count it twice).
    counted_timestamp: Option<u32>,
    /// Video waits for a keyframe at the start and after every loss.
    pub(super) waiting_for_keyframe: bool,
    pub(super) dropped_frames: u64,
}

impl Assembler {
    pub(super) fn new() -> Self {
        Self {
            waiting_for_keyframe: true,
            ..Self::default()
        }
    }

    /// Starts on `packet`: returns whether to read its payload (false while
    /// resynchronising after a loss) and puts in `done` the access unit that a new
    /// timestamp completed.
    pub(super) fn begin_packet(
        &mut self,
        packet: &RtpPacket,
        done: &mut Option<AccessUnit>,
    ) -> bool {
        let previous = self.last_packet.replace((packet.timestamp, packet.marker));
        if self.resynchronising {
            let starts_access_unit = match previous {
                Some((timestamp, marker)) => marker || timestamp != packet.timestamp,
                // Lost before any packet was seen: where this one is, is unknown.
                None => false,
            };
            if !starts_access_unit {
                self.count_dropped(packet.timestamp);
                return false;
            }
            self.resynchronising = false;
        }
        if let Some(timestamp) = self.timestamp {
            if timestamp != packet.timestamp {
                *done = self.finish();
            }
        }
        if self.timestamp.is_none() {
            self.timestamp = Some(packet.timestamp);
        }
        true
    }

    /// The stream ended: the access unit in progress, whole, if a sender did not mark
    /// its last packet (nothing else would end it).
    pub(super) fn flush(&mut self) -> Option<AccessUnit> {
        self.finish()
    }

    /// Ends `packet`: the access unit, if its marker bit ended one.
    pub(super) fn end_packet(&mut self, packet: &RtpPacket) -> Option<AccessUnit> {
        if packet.marker {
            self.finish()
        } else {
            None
        }
    }

    /// Adds a complete NAL unit to the access unit in progress.
    pub(super) fn push_nal_unit(&mut self, nal_unit: Bytes) -> Result<(), DepacketizeError> {
        if nal_unit.is_empty() {
            return Err(self.damage(DepacketizeError::Malformed {
                what: "NAL unit",
                reason: "empty".to_owned(),
            }));
        }
        if self.nal_units.len() >= MAX_NAL_UNITS_PER_FRAME {
            return Err(self.damage(DepacketizeError::TooManyNalUnits));
        }
        self.grow(4 + nal_unit.len())?;
        self.nal_units.push(nal_unit);
        Ok(())
    }

    /// Starts a fragmented NAL unit whose rebuilt header is `header`. A fragment still
    /// in progress lost its end: the access unit is damaged.
    pub(super) fn start_fragment(
        &mut self,
        header: &[u8],
        data: &[u8],
    ) -> Result<(), DepacketizeError> {
        if let Some(unfinished) = self.fragment.take() {
            self.size = self.size.saturating_sub(4 + unfinished.len());
            self.damaged = true;
        }
        self.grow(4 + header.len() + data.len())?;
        let mut fragment = BytesMut::with_capacity(header.len() + data.len());
        fragment.extend_from_slice(header);
        fragment.extend_from_slice(data);
        self.fragment = Some(fragment);
        Ok(())
    }

    /// Continues the fragmented NAL unit; `end` completes it. `what` names the packet
    /// type for the error when no fragment was started.
    pub(super) fn continue_fragment(
        &mut self,
        data: &[u8],
        end: bool,
        what: &'static str,
    ) -> Result<(), DepacketizeError> {
        if self.fragment.is_none() {
            return Err(self.damage(DepacketizeError::FragmentWithoutStart(what)));
        }
        self.grow(data.len())?;
        let Some(fragment) = self.fragment.as_mut() else {
            return Err(self.damage(DepacketizeError::FragmentWithoutStart(what)));
        };
        fragment.extend_from_slice(data);
        if end {
            if let Some(fragment) = self.fragment.take() {
                // Its size is counted already: push without counting it again.
                if self.nal_units.len() >= MAX_NAL_UNITS_PER_FRAME {
                    return Err(self.damage(DepacketizeError::TooManyNalUnits));
                }
                self.nal_units.push(fragment.freeze());
            }
        }
        Ok(())
    }

    /// Marks the access unit in progress damaged, for `error`, and returns the error.
    pub(super) fn damage(&mut self, error: DepacketizeError) -> DepacketizeError {
        self.damaged = true;
        self.fragment = None;
        error
    }

    /// Packets were lost: the access unit in progress is dropped, and packets are
    /// skipped until one starts an access unit; then a keyframe is awaited.
    pub(super) fn lost(&mut self) {
        if let Some(timestamp) = self.timestamp {
            self.count_dropped(timestamp);
        }
        self.clear();
        self.resynchronising = true;
        self.waiting_for_keyframe = true;
    }

    fn grow(&mut self, bytes: usize) -> Result<(), DepacketizeError> {
        let size = self.size.saturating_add(bytes);
        if size > MAX_FRAME_BYTES {
            return Err(self.damage(DepacketizeError::FrameTooLarge { size }));
        }
        self.size = size;
        Ok(())
    }

    /// Ends the access unit in progress: it, or `None` when it was empty. A damaged one
    /// is counted as dropped here, and a keyframe awaited.
    fn finish(&mut self) -> Option<AccessUnit> {
        let timestamp = self.timestamp?;
        let damaged = self.damaged || self.fragment.is_some();
        let nal_units = std::mem::take(&mut self.nal_units);
        self.clear();
        if damaged {
            self.count_dropped(timestamp);
            self.waiting_for_keyframe = true;
        }
        if nal_units.is_empty() {
            return None;
        }
        Some(AccessUnit {
            timestamp,
            nal_units,
            damaged,
        })
    }

    fn clear(&mut self) {
        self.timestamp = None;
        self.nal_units.clear();
        self.size = 0;
        self.fragment = None;
        self.damaged = false;
    }

    /// Counts the access unit at `timestamp` as dropped, once.
    pub(super) fn count_dropped(&mut self, timestamp: u32) {
        if self.counted_timestamp != Some(timestamp) {
            self.counted_timestamp = Some(timestamp);
            self.dropped_frames += 1;
        }
    }
}

/// Splits an aggregation packet's payload (STAP-A after its 1-byte header, AP after its
/// 2-byte header) into its NAL units: each a 16-bit size and that many bytes.
pub(super) fn split_aggregate(
    mut payload: Bytes,
    what: &'static str,
    mut each: impl FnMut(Bytes) -> Result<(), DepacketizeError>,
) -> Result<(), DepacketizeError> {
    if payload.is_empty() {
        return Err(DepacketizeError::Malformed {
            what,
            reason: "no NAL units".to_owned(),
        });
    }
    while !payload.is_empty() {
        let size = match payload.get(..2) {
            Some(&[high, low]) => usize::from(u16::from_be_bytes([high, low])),
            _ => {
                return Err(DepacketizeError::Truncated {
                    what,
                    needed: 2,
                    left: payload.len(),
                })
            }
        };
        let end = 2 + size;
        if end > payload.len() {
            return Err(DepacketizeError::Truncated {
                what,
                needed: size,
                left: payload.len() - 2,
            });
        }
        let nal_unit = payload.slice(2..end);
        payload = payload.slice(end..);
        each(nal_unit)?;
    }
    Ok(())
}

/// The RBSP of a NAL unit: every emulation prevention byte (the 0x03 of 0x00 0x00 0x03)
/// removed (H.264 7.3.1, H.265 7.3.1.1).
pub(super) fn rbsp(nal_unit: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal_unit.len());
    let mut zeros = 0;
    for &byte in nal_unit {
        if zeros >= 2 && byte == 0x03 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        out.push(byte);
    }
    out
}

/// Reads bits, most significant first, from an RBSP; `None` past its end.
#[derive(Clone)]
pub(super) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits.
    position: usize,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Self { data, position: 0 }
    }

    pub(super) fn bit(&mut self) -> Option<u32> {
        let byte = self.data.get(self.position / 8)?;
        let bit = (byte >> (7 - self.position % 8)) & 1;
        self.position += 1;
        Some(u32::from(bit))
    }

    /// `count` bits (at most 32) as a number.
    pub(super) fn bits(&mut self, count: u32) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..count.min(32) {
            value = (value << 1) | self.bit()?;
        }
        Some(value)
    }

    pub(super) fn skip(&mut self, count: usize) -> Option<()> {
        let position = self.position.checked_add(count)?;
        if position > self.data.len() * 8 {
            return None;
        }
        self.position = position;
        Some(())
    }

    /// An unsigned Exp-Golomb number, ue(v) (H.264 9.1): at most 31 leading zeros.
    pub(super) fn unsigned_exp_golomb(&mut self) -> Option<u32> {
        let mut leading_zeros = 0;
        while self.bit()? == 0 {
            leading_zeros += 1;
            if leading_zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(leading_zeros)?;
        // 2^n - 1 + rest: at most 2^32 - 2 for n = 31.
        ((1u64 << leading_zeros) - 1 + u64::from(rest))
            .try_into()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(timestamp: u32, marker: bool) -> RtpPacket {
        RtpPacket {
            marker,
            payload_type: 96,
            sequence: 0,
            timestamp,
            ssrc: 1,
            payload: Bytes::new(),
        }
    }

    #[test]
    fn emulation_prevention_bytes_are_removed() {
        assert_eq!(
            rbsp(&[0x42, 0, 0, 3, 1, 0, 0, 3, 0, 3]),
            [0x42, 0, 0, 1, 0, 0, 0, 3]
        );
        assert_eq!(rbsp(&[0, 3, 0, 0, 3]), [0, 3, 0, 0]);
    }

    #[test]
    fn exp_golomb_and_bits() {
        // 1 | 010 | 011 | 00100 | 0000 1000 0 -> 0, 1, 2, 3, 15
        let data = [0b1010_0110, 0b0100_0001, 0b0000_0000];
        let mut r = BitReader::new(&data);
        assert_eq!(r.unsigned_exp_golomb(), Some(0));
        assert_eq!(r.unsigned_exp_golomb(), Some(1));
        assert_eq!(r.unsigned_exp_golomb(), Some(2));
        assert_eq!(r.unsigned_exp_golomb(), Some(3));
        // 0001 000, then only 5 zero bits left.
        assert_eq!(r.unsigned_exp_golomb(), Some(7));
        assert_eq!(r.unsigned_exp_golomb(), None);
        let mut r = BitReader::new(&[0xff; 2]);
        assert_eq!(r.bits(12), Some(0xfff));
        assert_eq!(r.skip(4), Some(()));
        assert_eq!(r.bit(), None);
        assert_eq!(BitReader::new(&[0; 8]).unsigned_exp_golomb(), None);
    }

    #[test]
    fn timestamp_change_and_marker_end_access_units() {
        let mut a = Assembler::new();
        let mut done = None;
        assert!(a.begin_packet(&packet(1, false), &mut done));
        a.push_nal_unit(Bytes::from_static(&[1, 2])).unwrap();
        assert!(a.end_packet(&packet(1, false)).is_none());
        assert!(a.begin_packet(&packet(2, true), &mut done));
        let first = done.take().unwrap();
        assert_eq!((first.timestamp, first.nal_units.len()), (1, 1));
        a.push_nal_unit(Bytes::from_static(&[3])).unwrap();
        let second = a.end_packet(&packet(2, true)).unwrap();
        assert_eq!(second.timestamp, 2);
    }

    #[test]
    fn after_a_loss_packets_are_skipped_until_an_access_unit_starts() {
        let mut a = Assembler::new();
        let mut done = None;
        assert!(a.begin_packet(&packet(1, false), &mut done));
        a.push_nal_unit(Bytes::from_static(&[1])).unwrap();
        a.lost();
        assert_eq!(a.dropped_frames, 1);
        // Same timestamp, after a packet without marker: the rest of the damaged unit.
        assert!(!a.begin_packet(&packet(1, true), &mut done));
        assert!(a.begin_packet(&packet(2, true), &mut done));
        assert!(done.is_none());
        assert_eq!(a.dropped_frames, 1);
    }

    #[test]
    fn frames_are_bounded() {
        let mut a = Assembler::new();
        let mut done = None;
        a.begin_packet(&packet(1, false), &mut done);
        let big = Bytes::from(vec![1u8; 60_000]);
        let mut result = Ok(());
        for _ in 0..100 {
            result = a.push_nal_unit(big.clone());
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(
            result,
            Err(DepacketizeError::FrameTooLarge { .. })
        ));
        assert!(a.end_packet(&packet(1, true)).is_some_and(|au| au.damaged));
        assert_eq!(a.dropped_frames, 1);

        a.begin_packet(&packet(2, false), &mut done);
        let mut result = Ok(());
        for _ in 0..=MAX_NAL_UNITS_PER_FRAME {
            result = a.push_nal_unit(Bytes::from_static(&[1]));
        }
        assert_eq!(result, Err(DepacketizeError::TooManyNalUnits));
    }
}
