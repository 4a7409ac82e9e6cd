//! The RTMP handshake (C0/C1/C2, S0/S1/S2), server and client side.
//!
//! A thin wrapper over `rml_rtmp::handshake::Handshake`, which implements both the plain
//! handshake of the RTMP spec and the Flash Player 9 digest handshake that ffmpeg, OBS and
//! Flash clients send (it picks the right one from the peer's packet 1). The wrapper adds
//! what rml_rtmp leaves out: errors that say what the peer sent (a TLS ClientHello or an
//! HTTP request on a plain RTMP port is the usual mistake), and a clear done state.

use rml_rtmp::handshake::{Handshake as RmlHandshake, HandshakeProcessResult, PeerType};

/// The only RTMP version byte (C0/S0) longhaul speaks: 3, plain RTMP. 6 and 8 are RTMPE
/// (encrypted), which no current encoder needs.
const RTMP_VERSION: u8 = 3;

/// First byte of a TLS record carrying a handshake (a ClientHello): an `rtmps://` client
/// pointed at a plain RTMP port.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Which side of the handshake this is (the digest handshake differs per side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeRole {
    Server,
    Client,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandshakeError {
    #[error("peer's first byte 0x{0:02x} looks like a TLS ClientHello: an rtmps client on a plain RTMP port")]
    TlsOnPlainPort(u8),
    #[error("peer's first byte 0x{0:02x} looks like an HTTP request, not RTMP")]
    HttpOnRtmpPort(u8),
    #[error("peer sent RTMP version byte {0}, only {RTMP_VERSION} (plain RTMP) is supported")]
    UnsupportedVersion(u8),
    #[error("handshake input after the handshake completed")]
    AlreadyCompleted,
    #[error("handshake failed: {0}")]
    Other(String),
}

/// What feeding bytes to the handshake produced.
#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeProgress {
    /// Not done yet; send `response` to the peer (may be empty).
    InProgress { response: Vec<u8> },
    /// Done; send `response`, then treat `remaining` as the start of the chunk stream.
    Done {
        response: Vec<u8>,
        remaining: Vec<u8>,
    },
}

/// One side of an RTMP handshake.
pub struct Handshake {
    inner: RmlHandshake,
    role: HandshakeRole,
    saw_first_byte: bool,
    done: bool,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshake")
            .field("role", &self.role)
            .field("done", &self.done)
            .finish()
    }
}

impl Handshake {
    pub fn new(role: HandshakeRole) -> Self {
        let peer_type = match role {
            HandshakeRole::Server => PeerType::Server,
            HandshakeRole::Client => PeerType::Client,
        };
        Self {
            inner: RmlHandshake::new(peer_type),
            role,
            saw_first_byte: false,
            done: false,
        }
    }

    pub fn role(&self) -> HandshakeRole {
        self.role
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// C0 + C1 (client side: send them first). A server need not call this: its S0 + S1
    /// come with the response to the client's C0 + C1.
    pub fn start(&mut self) -> Result<Vec<u8>, HandshakeError> {
        self.inner
            .generate_outbound_p0_and_p1()
            .map_err(|e| HandshakeError::Other(e.to_string()))
    }

    /// Feeds bytes from the peer.
    pub fn process(&mut self, input: &[u8]) -> Result<HandshakeProgress, HandshakeError> {
        if self.done {
            return Err(HandshakeError::AlreadyCompleted);
        }
        if !self.saw_first_byte {
            if let Some(&first) = input.first() {
                self.saw_first_byte = true;
                match first {
                    RTMP_VERSION => {}
                    TLS_HANDSHAKE_RECORD => return Err(HandshakeError::TlsOnPlainPort(first)),
                    // 'G'ET, 'P'OST, 'H'EAD, 'O'PTIONS
                    b'G' | b'P' | b'H' | b'O' => return Err(HandshakeError::HttpOnRtmpPort(first)),
                    other => return Err(HandshakeError::UnsupportedVersion(other)),
                }
            }
        }
        match self.inner.process_bytes(input) {
            Ok(HandshakeProcessResult::InProgress { response_bytes }) => {
                Ok(HandshakeProgress::InProgress {
                    response: response_bytes,
                })
            }
            Ok(HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            }) => {
                self.done = true;
                Ok(HandshakeProgress::Done {
                    response: response_bytes,
                    remaining: remaining_bytes,
                })
            }
            Err(e) => Err(HandshakeError::Other(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_and_server_complete_in_any_split() {
        for split in [1usize, 7, 1537, 3073] {
            let mut client = Handshake::new(HandshakeRole::Client);
            let mut server = Handshake::new(HandshakeRole::Server);
            let c0c1 = client.start().unwrap();
            let mut s_out = Vec::new();
            for piece in c0c1.chunks(split) {
                match server.process(piece).unwrap() {
                    HandshakeProgress::InProgress { response } => s_out.extend(response),
                    HandshakeProgress::Done { .. } => panic!("server done before C2"),
                }
            }
            let mut c2 = Vec::new();
            for piece in s_out.chunks(split) {
                match client.process(piece).unwrap() {
                    HandshakeProgress::InProgress { response } => c2.extend(response),
                    HandshakeProgress::Done { response, .. } => c2.extend(response),
                }
            }
            assert!(client.is_done());
            c2.extend_from_slice(b"tail");
            match server.process(&c2).unwrap() {
                HandshakeProgress::Done { remaining, .. } => assert_eq!(remaining, b"tail"),
                other => panic!("server not done: {other:?}"),
            }
            assert!(server.is_done() && client.is_done());
            assert_eq!(server.process(b"x"), Err(HandshakeError::AlreadyCompleted));
        }
    }

    #[test]
    fn wrong_first_bytes_are_named() {
        let mut s = Handshake::new(HandshakeRole::Server);
        assert_eq!(
            s.process(&[0x16, 3, 1]),
            Err(HandshakeError::TlsOnPlainPort(0x16))
        );
        let mut s = Handshake::new(HandshakeRole::Server);
        assert_eq!(
            s.process(b"GET / HTTP/1.1\r\n"),
            Err(HandshakeError::HttpOnRtmpPort(b'G'))
        );
        let mut s = Handshake::new(HandshakeRole::Server);
        assert_eq!(s.process(&[6]), Err(HandshakeError::UnsupportedVersion(6)));
    }
}
