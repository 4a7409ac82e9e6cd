//! The PROXY protocol header, sans IO: what an L4 load balancer (HAProxy, AWS NLB,
//! nginx `proxy_protocol on`) sends first on each connection it forwards, naming the
//! client it accepted. HAProxy's `proxy-protocol.txt` defines two forms:
//!
//! - **v1**, text: `PROXY TCP4 203.0.113.7 192.0.2.1 56324 1935\r\n` (also `TCP6`, and
//!   `PROXY UNKNOWN ...\r\n` when the balancer does not know), at most
//!   [`V1_MAX_LEN`] = 107 bytes, CRLF included;
//! - **v2**, binary: the 12-byte [`V2_SIGNATURE`], version and command (`0x21` PROXY,
//!   `0x20` LOCAL: a health check of the balancer's own), address family and transport,
//!   a big-endian length, then the addresses and optional TLVs (AWS NLB adds its VPC
//!   endpoint id, HAProxy its TLS details).
//!
//! [`parse`] is a pure function over the bytes received so far: it says whether they hold
//! a whole header (and how long it is, so the bytes after it go to RTMP or TLS), need more
//! bytes, or cannot be a header. The address it gives is the client's: the source of a
//! PROXY command over TCP4 or TCP6; `None` for LOCAL, UNKNOWN, UNIX or unspecified
//! families, where the node keeps the socket's peer (the balancer itself).
//!
//! The parsing of both forms is the `ppp` crate's (2.3: a pure `&[u8]` parser that tells
//! an incomplete header from a wrong one; maintained, its last fix in 2025, and its one
//! dependency, `thiserror` 1, was already in our tree; `proxy-header`, the other candidate,
//! is a 0.1 with four commits). On top of it this module adds what a server must decide
//! itself: refusing at the first byte that no header starts with (rather than waiting for
//! more), the length caps, waiting for a v1 line's CRLF before parsing it (ppp's guesses
//! at a partial line refuse some cuts, e.g. one ending in the space before a port), and
//! checking the v2 TLV list is well formed.

use std::net::SocketAddr;

/// The longest v1 header, CRLF included (proxy-protocol.txt section 2.1: "the maximum
/// line lengths the receiver must support including the CRLF are ... 107 bytes").
pub const V1_MAX_LEN: usize = 107;

/// The longest header accepted, v2 included: 4,096 bytes, nginx's
/// `NGX_PROXY_PROTOCOL_MAX_HEADER`. The spec allows 16 + 65,535; what balancers send is far
/// less: 16 + 36 for TCP6 addresses, plus TLVs of at most a few hundred bytes (AWS's VPC
/// endpoint id is 22, HAProxy's TLS details with a client certificate CN about 200, a
/// unique id at most 128). A peer announcing more is not a balancer we know.
pub const MAX_LEN: usize = 4096;

/// The first 12 bytes of every v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The first 6 bytes of every v1 header.
pub const V1_PREFIX: &[u8] = b"PROXY ";

/// A whole header at the start of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 or 2.
    pub version: u8,
    /// Bytes the header takes; what follows is the client's.
    pub len: usize,
    /// The client's address, when the header names one (TCP over IPv4 or IPv6).
    pub source: Option<SocketAddr>,
}

/// Why the input cannot start with a PROXY header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no PROXY protocol header: the connection starts with {0}")]
    Missing(String),
    #[error("PROXY v2 header declares {0} bytes, more than the {MAX_LEN} accepted")]
    TooLong(usize),
    #[error("malformed PROXY v{version} header: {reason}")]
    Malformed { version: u8, reason: String },
}

/// Reads a PROXY header from the start of `input` (the bytes received so far):
/// `Ok(Some)` when it is all there, `Ok(None)` when more bytes are needed, `Err` when no
/// header can start this way. Never panics, on any input.
pub fn parse(input: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    if input.is_empty() {
        return Ok(None);
    }
    if starts_as(input, &V2_SIGNATURE) {
        return parse_v2(input);
    }
    if starts_as(input, V1_PREFIX) {
        return parse_v1(input);
    }
    Err(ProxyHeaderError::Missing(first_bytes(input)))
}

/// `input` and `prefix` agree on their common length.
fn starts_as(input: &[u8], prefix: &[u8]) -> bool {
    let n = input.len().min(prefix.len());
    input[..n] == prefix[..n]
}

/// The first few bytes, for the log: text if they are printable, else hex.
fn first_bytes(input: &[u8]) -> String {
    let head = &input[..input.len().min(8)];
    if head.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("{:?}", String::from_utf8_lossy(head))
    } else {
        let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
        format!("bytes {}", hex.join(" "))
    }
}

fn malformed(version: u8, reason: impl std::fmt::Display) -> ProxyHeaderError {
    ProxyHeaderError::Malformed {
        version,
        reason: reason.to_string(),
    }
}

fn parse_v1(input: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    use ppp::v1::{Addresses, BinaryParseError, Header};
    // The line is handed to ppp only once its CRLF is in: ppp's guesses at what a
    // partial line is miss some cuts (one ending in the space before a port).
    let window = &input[..input.len().min(V1_MAX_LEN)];
    let line_len = match window.iter().position(|&b| b == b'\r' || b == b'\n') {
        None if input.len() >= V1_MAX_LEN => {
            return Err(malformed(1, format!("no CRLF within {V1_MAX_LEN} bytes")))
        }
        None => return Ok(None),
        Some(i) if window[i] == b'\n' => return Err(malformed(1, "the line ends in LF, not CRLF")),
        Some(i) if i + 2 > V1_MAX_LEN => {
            return Err(malformed(1, format!("longer than {V1_MAX_LEN} bytes")))
        }
        Some(i) => match input.get(i + 1) {
            None => return Ok(None),
            Some(b'\n') => i + 2,
            Some(_) => return Err(malformed(1, "CR not followed by LF")),
        },
    };
    let header = Header::try_from(&input[..line_len]).map_err(|e| match e {
        BinaryParseError::Parse(e) => malformed(1, e),
        BinaryParseError::InvalidUtf8(_) => malformed(1, "not ASCII text"),
    })?;
    let len = header.header.len();
    if len > V1_MAX_LEN {
        return Err(malformed(1, format!("longer than {V1_MAX_LEN} bytes")));
    }
    let source = match header.addresses {
        Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        Addresses::Unknown => None,
    };
    Ok(Some(ProxyHeader {
        version: 1,
        len,
        source,
    }))
}

/// Bytes of the v2 fixed part: signature, version/command, family/transport, length.
const V2_FIXED: usize = 16;

fn parse_v2(input: &[u8]) -> Result<Option<ProxyHeader>, ProxyHeaderError> {
    use ppp::v2::{Addresses, Command, Header};
    let Some(declared) = input.get(14..V2_FIXED) else {
        return Ok(None);
    };
    let len = V2_FIXED + usize::from(u16::from_be_bytes([declared[0], declared[1]]));
    if len > MAX_LEN {
        return Err(ProxyHeaderError::TooLong(len));
    }
    let Some(whole) = input.get(..len) else {
        return Ok(None);
    };
    let header = Header::try_from(whole).map_err(|e| malformed(2, e))?;
    for tlv in header.tlvs() {
        tlv.map_err(|e| malformed(2, format!("bad TLV list: {e}")))?;
    }
    let source = match (header.command, header.addresses) {
        (Command::Proxy, Addresses::IPv4(a)) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        (Command::Proxy, Addresses::IPv6(a)) => {
            Some(SocketAddr::new(a.source_address.into(), a.source_port))
        }
        _ => None,
    };
    Ok(Some(ProxyHeader {
        version: 2,
        len,
        source,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 header built byte by byte as proxy-protocol.txt section 2.2 lays it out:
    /// signature, `ver_cmd`, `fam`, length (big endian), addresses, TLVs.
    fn v2(ver_cmd: u8, fam: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(ver_cmd);
        out.push(fam);
        let len = (addresses.len() + tlvs.len()) as u16;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(addresses);
        out.extend_from_slice(tlvs);
        out
    }

    /// TCP over IPv4 (`fam` 0x11): 203.0.113.7:56324 -> 192.0.2.1:1935.
    const TCP4_ADDRESSES: [u8; 12] = [203, 0, 113, 7, 192, 0, 2, 1, 0xdc, 0x04, 0x07, 0x8f];

    fn at(s: &str) -> Option<SocketAddr> {
        Some(s.parse().expect("address"))
    }

    #[test]
    fn v1_tcp4_and_tcp6_give_the_source_and_the_length() {
        let line = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 1935\r\n";
        let mut input = line.to_vec();
        input.extend_from_slice(&[3, 0, 0, 0]); // C0 and the start of C1 behind it
        let header = parse(&input).expect("valid").expect("whole");
        assert_eq!(
            header,
            ProxyHeader {
                version: 1,
                len: line.len(),
                source: at("203.0.113.7:56324"),
            }
        );
        let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 443\r\n";
        let header = parse(line).expect("valid").expect("whole");
        assert_eq!(header.source, at("[2001:db8::7]:4000"));
        assert_eq!(header.len, line.len());
    }

    #[test]
    fn v1_unknown_keeps_the_socket_peer() {
        for line in [
            &b"PROXY UNKNOWN\r\n"[..],
            b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
        ] {
            let header = parse(line).expect("valid").expect("whole");
            assert_eq!((header.len, header.source), (line.len(), None));
        }
    }

    #[test]
    fn v1_the_longest_line_is_accepted_and_one_more_byte_is_not() {
        // The spec's longest TCP6 line (104 bytes) and its worst case, UNKNOWN with every
        // optional field at its longest (107).
        let tcp6 = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(tcp6.len(), 104);
        let header = parse(tcp6).expect("valid").expect("whole");
        assert_eq!(header.len, 104);
        let longest = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest.len(), V1_MAX_LEN);
        let header = parse(longest).expect("valid").expect("whole");
        assert_eq!((header.len, header.source), (V1_MAX_LEN, None));
        let mut too_long = longest.to_vec();
        too_long.insert(14, b'f');
        assert!(matches!(
            parse(&too_long),
            Err(ProxyHeaderError::Malformed { version: 1, .. })
        ));
        // 107 bytes and still no CRLF: no v1 header is that long.
        let mut endless = b"PROXY UNKNOWN ".to_vec();
        endless.resize(V1_MAX_LEN, b'a');
        assert!(matches!(
            parse(&endless),
            Err(ProxyHeaderError::Malformed { version: 1, .. })
        ));
    }

    #[test]
    fn every_truncation_of_a_header_asks_for_more() {
        let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 1935\r\n".to_vec();
        let v2 = v2(0x21, 0x11, &TCP4_ADDRESSES, &[0x04, 0, 1, 0]); // a NOOP TLV
        for whole in [v1, v2] {
            for cut in 0..whole.len() {
                assert_eq!(
                    parse(&whole[..cut]),
                    Ok(None),
                    "{cut} bytes of {:?}",
                    String::from_utf8_lossy(&whole)
                );
            }
            let header = parse(&whole).expect("valid").expect("whole");
            assert_eq!(header.len, whole.len());
            assert_eq!(header.source, at("203.0.113.7:56324"));
        }
    }

    #[test]
    fn v2_proxy_tcp4_and_tcp6_give_the_source() {
        let input = v2(0x21, 0x11, &TCP4_ADDRESSES, &[]);
        let header = parse(&input).expect("valid").expect("whole");
        assert_eq!(
            header,
            ProxyHeader {
                version: 2,
                len: 28,
                source: at("203.0.113.7:56324"),
            }
        );
        let mut addresses = Vec::new();
        addresses.extend_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        addresses.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        addresses.extend_from_slice(&[0x0f, 0xa0, 0x01, 0xbb]); // 4000, 443
        let input = v2(0x21, 0x21, &addresses, &[]);
        let header = parse(&input).expect("valid").expect("whole");
        assert_eq!((header.len, header.source), (52, at("[2001:db8::7]:4000")));
    }

    #[test]
    fn v2_with_tlvs_is_measured_to_its_end() {
        // AWS NLB's VPC endpoint TLV (type 0xEA, subtype 0x01, the endpoint id), then an
        // ALPN TLV (0x01) and an authority TLV (0x02), as HAProxy sends them.
        let mut tlvs = vec![0xea, 0x00, 0x17, 0x01];
        tlvs.extend_from_slice(b"vpce-08d2bf15fac5001c9");
        tlvs.extend_from_slice(&[0x01, 0x00, 0x02]);
        tlvs.extend_from_slice(b"h2");
        tlvs.extend_from_slice(&[0x02, 0x00, 0x0b]);
        tlvs.extend_from_slice(b"example.com");
        let mut input = v2(0x21, 0x11, &TCP4_ADDRESSES, &tlvs);
        let len = input.len();
        input.extend_from_slice(&[0x16, 0x03, 0x01]); // a TLS ClientHello behind it
        let header = parse(&input).expect("valid").expect("whole");
        assert_eq!(header.len, len);
        assert_eq!(header.source, at("203.0.113.7:56324"));
    }

    #[test]
    fn v2_local_and_other_families_keep_the_socket_peer() {
        // LOCAL (a balancer's health check), with or without addresses.
        for input in [
            v2(0x20, 0x00, &[], &[]),
            v2(0x20, 0x11, &TCP4_ADDRESSES, &[]),
            // PROXY over UNSPEC, and over UNIX (two 108-byte paths).
            v2(0x21, 0x00, &[], &[]),
            v2(0x21, 0x31, &[0u8; 216], &[]),
        ] {
            let header = parse(&input).expect("valid").expect("whole");
            assert_eq!((header.len, header.source), (input.len(), None));
        }
    }

    #[test]
    fn malformed_v2_headers_are_refused() {
        for (input, what) in [
            (
                v2(0x11, 0x11, &TCP4_ADDRESSES, &[]),
                "version 1 in a v2 header",
            ),
            (v2(0x22, 0x11, &TCP4_ADDRESSES, &[]), "command 2"),
            (v2(0x21, 0x41, &TCP4_ADDRESSES, &[]), "family 4"),
            (
                v2(0x21, 0x11, &TCP4_ADDRESSES[..8], &[]),
                "addresses cut short",
            ),
            (
                v2(0x21, 0x11, &TCP4_ADDRESSES, &[0x04, 0x00, 0x09, 0]),
                "a TLV longer than the header",
            ),
            (v2(0x21, 0x11, &TCP4_ADDRESSES, &[0x04, 0x00]), "half a TLV"),
        ] {
            assert!(
                matches!(
                    parse(&input),
                    Err(ProxyHeaderError::Malformed { version: 2, .. })
                ),
                "{what}: {:?}",
                parse(&input)
            );
        }
    }

    #[test]
    fn a_v2_header_over_the_cap_is_refused_before_it_arrives() {
        let mut input = V2_SIGNATURE.to_vec();
        input.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&input), Err(ProxyHeaderError::TooLong(16 + 65_535)));
        let mut input = V2_SIGNATURE.to_vec();
        let len = (MAX_LEN - 16) as u16;
        input.extend_from_slice(&[0x21, 0x11]);
        input.extend_from_slice(&len.to_be_bytes());
        assert_eq!(parse(&input), Ok(None), "exactly the cap is waited for");
    }

    #[test]
    fn what_no_header_starts_with_is_refused_at_once() {
        // RTMP's C0, a TLS ClientHello, HTTP, and v1 with the wrong case.
        for input in [
            &[3u8, 0, 0, 0][..],
            &[0x16, 0x03, 0x01],
            b"GET / HTTP/1.1\r\n",
            b"proxy TCP4",
            b"PROXY\r\n",
        ] {
            assert!(
                matches!(parse(input), Err(ProxyHeaderError::Missing(_))),
                "{input:?}: {:?}",
                parse(input)
            );
        }
        assert_eq!(
            parse(&[3, 0, 0, 0]).unwrap_err().to_string(),
            "no PROXY protocol header: the connection starts with bytes 03 00 00 00"
        );
        for bad in [
            &b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 1935\n"[..],
            b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 1935\rX",
            b"PROXY TCP4 203.0.113.7 192.0.2.1  1935\r\n",
            b"PROXY TCP4 203.0.113.999 192.0.2.1 56324 1935\r\n",
            b"PROXY TCP4 203.0.113.7 192.0.2.1 99999 1935\r\n",
            b"PROXY TCP9 203.0.113.7 192.0.2.1 56324 1935\r\n",
            b"PROXY TCP4 2001:db8::7 192.0.2.1 56324 1935\r\n",
        ] {
            assert!(
                matches!(
                    parse(bad),
                    Err(ProxyHeaderError::Malformed { version: 1, .. })
                ),
                "{:?}: {:?}",
                String::from_utf8_lossy(bad),
                parse(bad)
            );
        }
    }
}
