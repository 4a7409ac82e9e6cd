//! Frames over QUIC streams: the thin IO layer under both ends of a tunnel.
//!
//! [`FrameReader`] feeds a stream's bytes to the sans-IO [`FrameDecoder`]; the write
//! helpers put a frame's header and payload on the stream without copying the payload.
//! The control stream's writer runs as its own task fed by a channel, so request handlers
//! and the report timer never wait on one another.

use crate::wire::{
    encode_ack, encode_media_batch, encode_message, encode_sequenced_batch, Frame, FrameDecoder,
    MediaFrame, Message, WireError, WireVersion,
};
use std::time::Duration;
use tokio::sync::mpsc;

/// What went wrong on a tunnel, said so that the log line is enough to act on.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("the tunnel to {peer} is not connected")]
    NotConnected { peer: String },
    #[error("{peer} did not answer within {after:?}")]
    Timeout { peer: String, after: Duration },
    #[error("the tunnel connection to {peer} was lost: {source}")]
    ConnectionLost {
        peer: String,
        source: quinn::ConnectionError,
    },
    #[error("writing to {peer}: {source}")]
    Write {
        peer: String,
        source: quinn::WriteError,
    },
    #[error("reading from {peer}: {source}")]
    Read {
        peer: String,
        source: quinn::ReadError,
    },
    #[error("{peer} broke the tunnel format: {source}")]
    Wire { peer: String, source: WireError },
    #[error("{peer} broke the tunnel protocol: {what}")]
    Protocol { peer: String, what: String },
    #[error("cannot connect to {peer}: {reason}")]
    Connect { peer: String, reason: String },
    /// A message that would not fit in a frame; it was not sent (sending it would
    /// break the stream it went on, and with the control stream the whole tunnel).
    #[error("the {what} is {len} bytes encoded, over the {max}-byte limit of a tunnel message")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("cannot open the tunnel UDP socket on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] crate::tls::TunnelTlsError),
    #[error(transparent)]
    Settings(#[from] crate::settings::InvalidTunnelSetting),
}

impl TunnelError {
    /// The peer closed the whole connection on purpose (`codes::NORMAL`: shutting down
    /// after draining, or replaced by a newer connection): an end, not a failure.
    pub fn is_peer_shutdown(&self) -> bool {
        let lost = match self {
            TunnelError::ConnectionLost { source, .. } => source,
            TunnelError::Read {
                source: quinn::ReadError::ConnectionLost(source),
                ..
            } => source,
            TunnelError::Write {
                source: quinn::WriteError::ConnectionLost(source),
                ..
            } => source,
            _ => return false,
        };
        matches!(lost, quinn::ConnectionError::ApplicationClosed(c)
            if c.error_code == quinn::VarInt::from_u32(crate::codes::NORMAL))
    }
}

/// How much one read asks of quinn. 64 KiB: a few video frames of a high-bitrate stream.
const READ_CHUNK: usize = 64 * 1024;

/// Reads whole frames from a QUIC receive stream.
pub(crate) struct FrameReader {
    recv: quinn::RecvStream,
    decoder: FrameDecoder,
    peer: String,
}

impl FrameReader {
    pub(crate) fn new(recv: quinn::RecvStream, peer: &str) -> Self {
        Self::with_version(recv, peer, WireVersion::V1)
    }

    /// A reader of a publish stream on a connection that speaks `version`.
    pub(crate) fn with_version(recv: quinn::RecvStream, peer: &str, version: WireVersion) -> Self {
        Self {
            recv,
            decoder: FrameDecoder::with_version(version),
            peer: peer.to_string(),
        }
    }

    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// The next frame, or `None` when the peer finished the stream cleanly.
    ///
    /// Cancel-safe: bytes already read stay in the decoder.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, TunnelError> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => return Ok(Some(frame)),
                Ok(None) => {}
                Err(source) => {
                    let _ = self.recv.stop(crate::codes::PROTOCOL_ERROR.into());
                    return Err(TunnelError::Wire {
                        peer: self.peer.clone(),
                        source,
                    });
                }
            }
            match self.recv.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => self.decoder.push(&chunk.bytes),
                Ok(None) if self.decoder.buffered() == 0 => return Ok(None),
                Ok(None) => {
                    return Err(TunnelError::Protocol {
                        peer: self.peer.clone(),
                        what: format!(
                            "stream finished inside a frame ({} bytes pending)",
                            self.decoder.buffered()
                        ),
                    })
                }
                Err(source) => {
                    return Err(TunnelError::Read {
                        peer: self.peer.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// The next frame, which must be a JSON message.
    pub(crate) async fn next_message(&mut self) -> Result<Option<Message>, TunnelError> {
        match self.next().await? {
            None => Ok(None),
            Some(Frame::Message(m)) => Ok(Some(m)),
            Some(Frame::Media(m)) => Err(TunnelError::Protocol {
                peer: self.peer.clone(),
                what: format!("media frame of kind {} where a message belongs", m.kind),
            }),
            Some(Frame::Sequenced(s)) => Err(TunnelError::Protocol {
                peer: self.peer.clone(),
                what: format!("sequenced frame {} where a message belongs", s.seq),
            }),
            Some(Frame::Ack(seq)) => Err(TunnelError::Protocol {
                peer: self.peer.clone(),
                what: format!("acknowledgement of {seq} where a message belongs"),
            }),
        }
    }
}

pub(crate) async fn write_message(
    send: &mut quinn::SendStream,
    message: &Message,
    peer: &str,
) -> Result<(), TunnelError> {
    send.write_all(&encode_message(message))
        .await
        .map_err(|source| TunnelError::Write {
            peer: peer.to_string(),
            source,
        })
}

pub(crate) async fn write_media(
    send: &mut quinn::SendStream,
    frames: &[MediaFrame],
    peer: &str,
) -> Result<(), TunnelError> {
    let mut chunks = encode_media_batch(frames);
    send.write_all_chunks(&mut chunks)
        .await
        .map_err(|source| TunnelError::Write {
            peer: peer.to_string(),
            source,
        })
}

/// Writes version 2's sequenced frames, under the same copy rule as [`write_media`].
pub(crate) async fn write_sequenced(
    send: &mut quinn::SendStream,
    frames: &[(u64, MediaFrame)],
    peer: &str,
) -> Result<(), TunnelError> {
    let mut chunks = encode_sequenced_batch(frames.iter().map(|(seq, f)| (*seq, f)));
    send.write_all_chunks(&mut chunks)
        .await
        .map_err(|source| TunnelError::Write {
            peer: peer.to_string(),
            source,
        })
}

/// Writes an acknowledgement (version 2).
pub(crate) async fn write_ack(
    send: &mut quinn::SendStream,
    seq: u64,
    peer: &str,
) -> Result<(), TunnelError> {
    send.write_all(&encode_ack(seq))
        .await
        .map_err(|source| TunnelError::Write {
            peer: peer.to_string(),
            source,
        })
}

/// The wire version a connection's handshake chose by ALPN. A peer that negotiated
/// none (impossible with our TLS configs, which require one) is taken as version 1.
pub(crate) fn negotiated_version(connection: &quinn::Connection) -> WireVersion {
    connection
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol.as_deref().and_then(WireVersion::from_alpn))
        .unwrap_or(WireVersion::V1)
}

/// Messages queued for the control stream before senders wait. Control traffic is a few
/// requests per publish and a report every few seconds; 1,024 absorbs a reconnect storm
/// of publishes.
pub(crate) const CONTROL_QUEUE: usize = 1024;

/// Writes queued control messages until the channel closes or the stream fails.
pub(crate) async fn control_writer(
    mut send: quinn::SendStream,
    mut queue: mpsc::Receiver<Message>,
    peer: String,
) {
    while let Some(message) = queue.recv().await {
        if let Err(e) = write_message(&mut send, &message, &peer).await {
            tracing::debug!(%peer, error = %e, "control stream writer stopped");
            return;
        }
    }
    let _ = send.finish();
}
