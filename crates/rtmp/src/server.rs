//! The server side of an RTMP session: handshake, `connect`, publish and play.
//!
//! A [`ServerSession`] is a state machine. The driver feeds it received bytes with
//! [`ServerSession::handle_input`], writes out whatever [`ServerSession::output`] holds,
//! and answers the requests it reports ([`ServerEvent`]) with the `accept_*`/`reject_*`
//! methods. Time is passed in, never read, so timeouts are tested without sockets.

use crate::amf0::Amf0Value;
use crate::message::RtmpMessage;
use crate::output::OutputQueue;
use std::time::{Duration, Instant};

/// Settings of a server session.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Chunk size announced to the peer right after `connect` is accepted.
    pub chunk_size: u32,
    /// Window acknowledgement size announced to the peer.
    pub window_ack_size: u32,
    /// Peer bandwidth announced to the peer (limit type dynamic).
    pub peer_bandwidth: u32,
    /// The handshake and `connect` must complete within this time.
    pub handshake_timeout: Duration,
    /// A publishing session that sends no media for this long is timed out.
    pub media_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            handshake_timeout: Duration::from_secs(10),
            media_timeout: Duration::from_secs(15),
        }
    }
}

/// Everything the peer said in `connect`, with the whole command object kept.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRequest {
    /// `app` as sent, query included (`kLive/?t=abc`).
    pub app: String,
    /// `tcUrl`, if sent.
    pub tc_url: Option<String>,
    /// `flashVer`, if sent.
    pub flash_ver: Option<String>,
    /// The whole command object (fourCcList, capsEx, videoCodecs, ...).
    pub command_object: Amf0Value,
}

/// What the session reports to its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// The peer asks to connect. Answer with `accept_connect` or `reject_connect`.
    ConnectRequested { request: ConnectRequest },
    /// The peer asks to publish on `stream_id`. `name` is the publish name as sent,
    /// query included; `publish_type` is as sent (`live`, `LIVE`, `record`, ...).
    /// Answer with `accept_publish` or `reject_publish`.
    PublishRequested {
        stream_id: u32,
        name: String,
        publish_type: String,
    },
    /// The peer asks to play `name` on `stream_id`. Answer with `accept_play` or `reject_play`.
    PlayRequested { stream_id: u32, name: String },
    /// Audio, video or data message on a publishing stream, payload untouched.
    /// Aggregate messages arrive already split into their parts.
    Media {
        stream_id: u32,
        message: RtmpMessage,
    },
    /// The publisher stopped (`FCUnpublish`, `deleteStream` or `closeStream` of a publishing stream).
    PublishFinished { stream_id: u32 },
    /// A player stopped (`deleteStream`/`closeStream` of a playing stream).
    PlayFinished { stream_id: u32 },
    /// A command the session does not act on (logged by the driver).
    UnhandledCommand { name: String },
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error(transparent)]
    Chunk(#[from] crate::chunk::ChunkError),
    #[error("bad command {name}: {reason}")]
    BadCommand { name: String, reason: String },
    #[error("{0}")]
    Protocol(String),
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

/// The server side of one RTMP connection.
pub struct ServerSession {
    _config: ServerConfig,
}

impl ServerSession {
    pub fn new(config: ServerConfig, now: Instant) -> Self {
        let _ = now;
        Self { _config: config }
    }
    /// Feeds bytes received from the peer (handshake included).
    pub fn handle_input(
        &mut self,
        now: Instant,
        input: &[u8],
    ) -> Result<Vec<ServerEvent>, SessionError> {
        let _ = (now, input);
        unimplemented!()
    }
    /// When the driver must call [`ServerSession::handle_timeout`] next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        unimplemented!()
    }
    /// Errors with [`SessionError::Timeout`] if a deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        let _ = now;
        unimplemented!()
    }
    /// Bytes to write to the peer.
    pub fn output(&mut self) -> &mut OutputQueue {
        unimplemented!()
    }
    pub fn accept_connect(&mut self) {}
    /// Sends `_error` with `NetConnection.Connect.Rejected` and `description`. The driver
    /// closes the connection after flushing the output.
    pub fn reject_connect(&mut self, description: &str) {
        let _ = description;
    }
    /// Sends `NetStream.Publish.Start`; media on `stream_id` is reported from now on.
    pub fn accept_publish(&mut self, stream_id: u32) {
        let _ = stream_id;
    }
    /// Sends `onStatus` level `error` with `code` (e.g. `NetStream.Publish.BadName`,
    /// `NetStream.Publish.Rejected`) and `description`. The driver closes the connection.
    pub fn reject_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        let _ = (stream_id, code, description);
    }
    /// Sends StreamBegin, `NetStream.Play.Reset` and `NetStream.Play.Start`,
    /// and `|RtmpSampleAccess`.
    pub fn accept_play(&mut self, stream_id: u32) {
        let _ = stream_id;
    }
    /// Sends `onStatus` level `error` with `code` (e.g. `NetStream.Play.StreamNotFound`).
    pub fn reject_play(&mut self, stream_id: u32, code: &str, description: &str) {
        let _ = (stream_id, code, description);
    }
    /// Sends an `onStatus` on `stream_id` (e.g. `NetStream.Publish.BadName` before closing a
    /// publisher that was taken over, or `NetStream.Play.UnpublishNotify`).
    pub fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        let _ = (stream_id, level, code, description);
    }
    /// Queues a media or data message for a player on `stream_id` (the message's own
    /// stream id is replaced). The payload is shared, not copied.
    pub fn send_media(&mut self, stream_id: u32, message: &RtmpMessage) {
        let _ = (stream_id, message);
    }
}
