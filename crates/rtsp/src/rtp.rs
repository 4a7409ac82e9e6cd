//! RTP packets and RTCP sender reports (RFC 3550), as an RTSP publisher sends them.
//!
//! A publisher's media arrives as RTP packets (interleaved in the RTSP connection or over
//! UDP) and, beside them, RTCP compound packets whose sender reports tie each stream's
//! RTP clock to wall-clock time: that is how the session lines audio up with video.
//! [`RtpPacket::parse`] reads the fixed header, skips CSRCs and the header extension,
//! removes padding, and hands the payload on as a slice of the received buffer (no
//! copy). [`sender_reports`] walks an RTCP compound packet and returns its sender
//! reports. [`is_rtcp`] tells the two apart where they share a channel (RFC 5761).
//!
//! Every read is checked against the packet's length: a malformed packet is an
//! [`RtpError`] saying what was wrong, never a panic.

use bytes::Bytes;

/// The only RTP/RTCP version in use (RFC 3550, 5.1).
const RTP_VERSION: u8 = 2;

/// Bytes of the fixed RTP header (RFC 3550, 5.1).
const RTP_HEADER_LEN: usize = 12;

/// Bytes of an RTCP packet's common header (version, count, type, length).
const RTCP_HEADER_LEN: usize = 4;

/// RTCP packet type of a sender report (RFC 3550, 6.4.1).
const RTCP_SENDER_REPORT: u8 = 200;

/// Bytes of a sender report after the common header, up to its report blocks: SSRC,
/// NTP timestamp (8), RTP timestamp, packet count, octet count (RFC 3550, 6.4.1).
const SENDER_INFO_LEN: usize = 24;

/// An RTP packet: the header fields a depacketiser and a session need, and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// The marker bit: for video, the last packet of an access unit (RFC 6184, 5.1).
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// The payload, CSRCs, extension and padding removed: a slice of the packet.
    pub payload: Bytes,
}

impl RtpPacket {
    /// Parses one RTP packet (version 2; CSRC list, header extension and padding
    /// handled). The payload is a zero-copy slice of `packet`.
    pub fn parse(packet: Bytes) -> Result<RtpPacket, RtpError> {
        let len = packet.len();
        let header = packet
            .get(..RTP_HEADER_LEN)
            .ok_or(RtpError::TooShort { len })?;
        let version = header[0] >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::Version { version });
        }
        let has_padding = header[0] & 0x20 != 0;
        let has_extension = header[0] & 0x10 != 0;
        let csrc_count = usize::from(header[0] & 0x0f);
        let marker = header[1] & 0x80 != 0;
        let payload_type = header[1] & 0x7f;
        let sequence = u16::from_be_bytes([header[2], header[3]]);
        let timestamp = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let ssrc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);

        let mut start = RTP_HEADER_LEN + 4 * csrc_count;
        if start > len {
            return Err(RtpError::HeaderOverrun { header: start, len });
        }
        if has_extension {
            // 16-bit profile-defined id, 16-bit length in 32-bit words, then the words.
            let words = packet
                .get(start + 2..start + 4)
                .ok_or(RtpError::HeaderOverrun {
                    header: start + 4,
                    len,
                })?;
            let words = usize::from(u16::from_be_bytes([words[0], words[1]]));
            start += 4 + 4 * words;
            if start > len {
                return Err(RtpError::HeaderOverrun { header: start, len });
            }
        }
        let mut end = len;
        if has_padding {
            // The last byte counts the padding bytes, itself included (RFC 3550, 5.1).
            let padding = usize::from(packet.last().copied().unwrap_or(0));
            let available = len - start;
            if padding == 0 || padding > available {
                return Err(RtpError::Padding { padding, available });
            }
            end -= padding;
        }
        Ok(RtpPacket {
            marker,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            payload: packet.slice(start..end),
        })
    }
}

/// An RTCP sender report's sender information (RFC 3550, 6.4.1): the RTP timestamp
/// that corresponds to an NTP wall-clock time, for the stream `ssrc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    /// 64-bit NTP timestamp: seconds since 1900 in the high 32 bits, the fraction below.
    pub ntp_timestamp: u64,
    pub rtp_timestamp: u32,
    /// The sender's packet count.
    pub packets: u32,
    /// The sender's payload octet count.
    pub octets: u32,
}

/// The sender reports (type 200) of an RTCP compound packet, in order; receiver
/// reports, SDES, BYE, APP and any other type are skipped by their length. An empty
/// `compound` has none. Report blocks inside sender reports are not read: a publisher's
/// reports about what it receives say nothing the ingest needs.
pub fn sender_reports(compound: &[u8]) -> Result<Vec<SenderReport>, RtpError> {
    let mut reports = Vec::new();
    let mut offset = 0;
    while offset < compound.len() {
        let rest = &compound[offset..];
        let header = rest.get(..RTCP_HEADER_LEN).ok_or(RtpError::RtcpTruncated {
            offset,
            left: rest.len(),
        })?;
        let version = header[0] >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::RtcpVersion { offset, version });
        }
        let packet_type = header[1];
        // Length in 32-bit words minus one, the header included (RFC 3550, 6.4.1).
        let length = 4 * (usize::from(u16::from_be_bytes([header[2], header[3]])) + 1);
        let packet = rest.get(..length).ok_or(RtpError::RtcpLength {
            offset,
            length,
            left: rest.len(),
        })?;
        if packet_type == RTCP_SENDER_REPORT {
            let info = packet
                .get(RTCP_HEADER_LEN..RTCP_HEADER_LEN + SENDER_INFO_LEN)
                .ok_or(RtpError::SenderReportTooShort { offset, length })?;
            let word = |at: usize| {
                u32::from_be_bytes([info[at], info[at + 1], info[at + 2], info[at + 3]])
            };
            reports.push(SenderReport {
                ssrc: word(0),
                ntp_timestamp: (u64::from(word(4)) << 32) | u64::from(word(8)),
                rtp_timestamp: word(12),
                packets: word(16),
                octets: word(20),
            });
        }
        offset += length;
    }
    Ok(reports)
}

/// Whether a packet on a channel shared by RTP and RTCP is RTCP (RFC 5761, 4): its
/// second byte, the RTCP packet type, is in 192..=223 (RTP payload types 64..=95 with
/// the marker bit, which RFC 5761 reserves for this).
pub fn is_rtcp(packet: &[u8]) -> bool {
    matches!(packet.get(1), Some(192..=223))
}

/// What was wrong with an RTP or RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("RTP packet of {len} bytes, shorter than the 12-byte header")]
    TooShort { len: usize },
    #[error("RTP version {version}, expected 2")]
    Version { version: u8 },
    #[error("RTP header with its CSRCs and extension is {header} bytes, longer than the {len}-byte packet")]
    HeaderOverrun { header: usize, len: usize },
    #[error("RTP padding of {padding} bytes, with {available} bytes after the header")]
    Padding { padding: usize, available: usize },
    #[error("RTCP packet at byte {offset}: {left} bytes left, short of a 4-byte header")]
    RtcpTruncated { offset: usize, left: usize },
    #[error("RTCP packet at byte {offset}: version {version}, expected 2")]
    RtcpVersion { offset: usize, version: u8 },
    #[error(
        "RTCP packet at byte {offset} says {length} bytes, only {left} left in the compound packet"
    )]
    RtcpLength {
        offset: usize,
        length: usize,
        left: usize,
    },
    #[error("RTCP sender report at byte {offset} is {length} bytes, short of its 28-byte sender information")]
    SenderReportTooShort { offset: usize, length: usize },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(first: u8, marker_pt: u8) -> Vec<u8> {
        vec![
            first, marker_pt, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04,
        ]
    }

    #[test]
    fn plain_packet() {
        let mut p = header(0x80, 0x80 | 96);
        p.extend_from_slice(b"payload");
        let packet = RtpPacket::parse(Bytes::from(p)).unwrap();
        assert_eq!(
            packet,
            RtpPacket {
                marker: true,
                payload_type: 96,
                sequence: 0x1234,
                timestamp: 0xdead_beef,
                ssrc: 0x0102_0304,
                payload: Bytes::from_static(b"payload"),
            }
        );
    }

    #[test]
    fn csrcs_extension_and_padding_are_removed() {
        // Padding, extension, 2 CSRCs.
        let mut p = header(0x80 | 0x20 | 0x10 | 2, 97);
        p.extend_from_slice(&[0xaa; 8]); // CSRCs
        p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, 1, 2, 3, 4]); // one-word extension
        p.extend_from_slice(b"abc");
        p.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let packet = RtpPacket::parse(Bytes::from(p)).unwrap();
        assert!(!packet.marker);
        assert_eq!(packet.payload_type, 97);
        assert_eq!(&packet.payload[..], b"abc");
    }

    #[test]
    fn empty_payload_is_fine() {
        let packet = RtpPacket::parse(Bytes::from(header(0x80, 96))).unwrap();
        assert!(packet.payload.is_empty());
    }

    #[test]
    fn malformed_packets_say_what_is_wrong() {
        let err = |p: Vec<u8>| RtpPacket::parse(Bytes::from(p)).unwrap_err();
        assert_eq!(err(vec![0x80; 11]), RtpError::TooShort { len: 11 });
        let e = err(header(0x40, 96));
        assert_eq!(e, RtpError::Version { version: 1 });
        assert_eq!(e.to_string(), "RTP version 1, expected 2");
        // 15 CSRCs announced, none there.
        assert_eq!(
            err(header(0x8f, 96)),
            RtpError::HeaderOverrun {
                header: 72,
                len: 12
            }
        );
        // Extension header cut short, then extension words missing.
        let mut p = header(0x90, 96);
        p.extend_from_slice(&[0xbe, 0xde]);
        assert!(matches!(err(p), RtpError::HeaderOverrun { .. }));
        let mut p = header(0x90, 96);
        p.extend_from_slice(&[0xbe, 0xde, 0x00, 0x02, 0, 0, 0, 0]);
        assert!(matches!(err(p), RtpError::HeaderOverrun { .. }));
        // Padding longer than the payload, and a padding count of 0.
        let mut p = header(0xa0, 96);
        p.extend_from_slice(&[1, 9]);
        assert_eq!(
            err(p),
            RtpError::Padding {
                padding: 9,
                available: 2
            }
        );
        let mut p = header(0xa0, 96);
        p.push(0);
        assert!(matches!(err(p), RtpError::Padding { padding: 0, .. }));
    }

    #[test]
    fn never_panics_on_short_input() {
        for first in 0..=255u8 {
            for len in 0..40 {
                let mut p = vec![first; len];
                if len > 1 {
                    p[1] = 96;
                }
                let _ = RtpPacket::parse(Bytes::from(p.clone()));
                let _ = sender_reports(&p);
                let _ = is_rtcp(&p);
            }
        }
    }

    fn sender_report(ssrc: u32, ntp: u64, rtp: u32) -> Vec<u8> {
        // One report block (24 bytes), so RC = 1 and length = 12 words.
        let mut p = vec![0x81, 200, 0, 12];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&ntp.to_be_bytes());
        p.extend_from_slice(&rtp.to_be_bytes());
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend_from_slice(&900u32.to_be_bytes());
        p.extend_from_slice(&[0x55; 24]);
        p
    }

    #[test]
    fn compound_packet_gives_its_sender_reports() {
        let mut compound = sender_report(0x1111, 0xe000_0000_8000_0000, 90_000);
        // SDES with one chunk (CNAME "ab"), padded to a word: length 2.
        compound.extend_from_slice(&[0x81, 202, 0, 2, 0, 0, 0x11, 0x11, 1, 2, b'a', b'b']);
        // Receiver report without blocks.
        compound.extend_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 9]);
        compound.extend(sender_report(0x2222, 5, 6));
        let reports = sender_reports(&compound).unwrap();
        assert_eq!(
            reports,
            vec![
                SenderReport {
                    ssrc: 0x1111,
                    ntp_timestamp: 0xe000_0000_8000_0000,
                    rtp_timestamp: 90_000,
                    packets: 7,
                    octets: 900,
                },
                SenderReport {
                    ssrc: 0x2222,
                    ntp_timestamp: 5,
                    rtp_timestamp: 6,
                    packets: 7,
                    octets: 900,
                }
            ]
        );
        assert!(sender_reports(&[]).unwrap().is_empty());
    }

    #[test]
    fn malformed_rtcp_says_what_is_wrong() {
        assert_eq!(
            sender_reports(&[0x80, 200]),
            Err(RtpError::RtcpTruncated { offset: 0, left: 2 })
        );
        assert_eq!(
            sender_reports(&[0x40, 200, 0, 0]),
            Err(RtpError::RtcpVersion {
                offset: 0,
                version: 1
            })
        );
        let mut p = sender_report(1, 2, 3);
        p.truncate(20);
        assert_eq!(
            sender_reports(&p),
            Err(RtpError::RtcpLength {
                offset: 0,
                length: 52,
                left: 20
            })
        );
        // A sender report whose length leaves no room for the sender information.
        let mut p = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
        p.extend_from_slice(&[0x80, 200, 0, 1, 0, 0, 0, 1]);
        assert_eq!(
            sender_reports(&p),
            Err(RtpError::SenderReportTooShort {
                offset: 8,
                length: 8
            })
        );
    }

    #[test]
    fn rtcp_is_told_from_rtp() {
        assert!(is_rtcp(&sender_report(1, 2, 3)));
        assert!(is_rtcp(&[0x80, 201]));
        assert!(is_rtcp(&[0x80, 223]));
        assert!(!is_rtcp(&[0x80, 96]));
        assert!(!is_rtcp(&[0x80, 0x80 | 96]));
        assert!(!is_rtcp(&[0x80, 224]));
        assert!(!is_rtcp(&[0x80]));
        assert!(!is_rtcp(&[]));
    }
}
