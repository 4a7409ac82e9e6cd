//! The server side of an RTMP session: handshake, `connect`, publish and play.
//!
//! A [`ServerSession`] is a state machine. The driver reads the peer's bytes into
//! [`ServerSession::read_buffer`] and hands them over with
//! [`ServerSession::handle_read`] (tests and fuzzers pass a slice to
//! [`ServerSession::handle_input`]), writes out whatever [`ServerSession::output`]
//! holds, and answers the requests it reports ([`ServerEvent`]) with the
//! `accept_*`/`reject_*` methods. Time is passed in, never read, so timeouts are tested without sockets.
//! When the session fails (an error from `handle_input` or `handle_timeout`),
//! [`ServerSession::fail`] queues the last words the peer can understand.

use crate::amf0::Amf0Value;
use crate::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits, MAX_CHUNK_SIZE};
use crate::handshake::HandshakeProgress;
use crate::message::{self, bandwidth_limit, type_id, Command, RtmpMessage};
use crate::message_rate::{MessageRate, RateExceeded};
use crate::output::OutputQueue;
use crate::session_common::{self, csid, object, status_info, string, ControlState};
use bytes::BytesMut;
use std::collections::VecDeque;
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
    /// What the peer may make the chunk decoder hold once a publish on this connection
    /// was accepted ([`ServerSession::accept_publish`]).
    pub limits: DecoderLimits,
    /// What it may make the decoder hold before that (handshake, `connect`, a publish
    /// waiting for the driver, playing): see [`pre_publish_limits`].
    pub pre_publish_limits: DecoderLimits,
    /// Messages a second the peer may send, in bursts of two seconds' worth; more end
    /// the session ([`SessionError::TooManyMessages`]). 0: no bound. Default
    /// [`crate::message_rate::DEFAULT_MESSAGES_PER_SECOND`].
    pub max_messages_per_second: u32,
}

/// Audio, video and partial-message bytes a peer may send before a publish is accepted:
/// 1 MiB. Such a peer is not authorised yet (or is a player, which sends no media): it has
/// no reason to send large messages, and the memory it can pin stays small. Encoders that
/// send media before `NetStream.Publish.Start` send their first frames, sequence headers
/// and metadata: messages of a few KB to a few hundred KB.
pub const PRE_PUBLISH_MAX_BYTES: usize = 1024 * 1024;

/// The default [`ServerConfig::pre_publish_limits`]: [`DecoderLimits::default`] with
/// `max_buffered_bytes` and `max_media_len` at [`PRE_PUBLISH_MAX_BYTES`].
pub fn pre_publish_limits() -> DecoderLimits {
    DecoderLimits {
        max_buffered_bytes: PRE_PUBLISH_MAX_BYTES,
        max_media_len: PRE_PUBLISH_MAX_BYTES as u32,
        ..DecoderLimits::default()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            handshake_timeout: Duration::from_secs(10),
            media_timeout: Duration::from_secs(15),
            limits: DecoderLimits::default(),
            pre_publish_limits: pre_publish_limits(),
            max_messages_per_second: crate::message_rate::DEFAULT_MESSAGES_PER_SECOND,
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

impl ConnectRequest {
    /// Whether the client said in `connect` that it handles
    /// [`ServerSession::request_reconnect`]: Enhanced RTMP v2's `capsEx` with its
    /// `Reconnect` bit (0x01).
    pub fn supports_reconnect(&self) -> bool {
        const CAPS_EX_RECONNECT: u32 = 0x01;
        self.command_object
            .get("capsEx")
            .and_then(|v| match v {
                Amf0Value::Number(n) if n.is_finite() && *n >= 0.0 && *n <= f64::from(u32::MAX) => {
                    Some(*n as u32)
                }
                _ => None,
            })
            .is_some_and(|caps| caps & CAPS_EX_RECONNECT != 0)
    }
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
    #[error(transparent)]
    TooManyMessages(#[from] RateExceeded),
}

/// Most streams one connection may have open at once. Encoders open one per connection
/// (ffmpeg, OBS) and FMLE one per bitrate at most; players one. The bound keeps a peer
/// from making the session track streams without end.
pub const MAX_OPEN_STREAMS: usize = 16;

/// Most media bytes held for a stream whose publish the driver has not answered yet (the
/// origin checks the token with the registry meanwhile). 4 MiB is several seconds of a
/// high-bitrate stream (8 Mbit/s gives 1 MB/s), far more than an auth round trip needs.
pub const MAX_HELD_MEDIA_BYTES: usize = 4 * 1024 * 1024;

/// What each held message counts for beside its payload in [`MAX_HELD_MEDIA_BYTES`]
/// and [`ServerSession::buffered_bytes`]: its place in the held list. Without it a
/// peer could hold empty messages without limit while its publish waits.
pub const HELD_MESSAGE_COST: usize = std::mem::size_of::<RtmpMessage>();

/// Most messages one [`ServerSession::handle_input`] call decodes; the rest of the input
/// waits in the session ([`ServerSession::has_undecoded_input`]) until the driver calls
/// again. 1,024: 64 KiB of an honest stream hold a few video chunks and at most
/// some 200 audio frames, so only a flood of tiny messages meets it, and the events of
/// one call stay under 100 KB however the input is made (65,536 empty messages from one
/// 64 KiB read took 19.7 MB of events at once, measured with heaptrack on an edge).
pub const MAX_MESSAGES_PER_INPUT: usize = 1024;

/// Publish types of the spec (`live`, `record`, `append`) and Flash's `appendWithGap`,
/// compared case-insensitively (some encoders send `LIVE`).
const PUBLISH_TYPES: [&str; 4] = ["live", "record", "append", "appendwithgap"];

/// `fmsVer` and `capabilities` in the `connect` `_result`: the values FMS 3 sent, which
/// nginx-rtmp and SRS copy; some clients check that `fmsVer` starts with `FMS/`.
const FMS_VERSION: &str = "FMS/3,0,1,123";
const FMS_CAPABILITIES: f64 = 31.0;

#[derive(Debug)]
enum StreamState {
    /// Created by `createStream`, nothing requested yet (or finished and reusable).
    Idle,
    /// `publish` reported, the driver has not answered: media is held.
    PublishRequested {
        name: String,
        held: Vec<RtmpMessage>,
        held_bytes: usize,
    },
    Publishing {
        name: String,
    },
    /// Publish finished (FCUnpublish): late media is dropped, not an error.
    PublishFinished,
    PlayRequested,
    Playing,
}

#[derive(Debug)]
struct Stream {
    id: u32,
    state: StreamState,
}

enum Phase {
    Handshake(Box<crate::handshake::Handshake>),
    Chunks,
    Failed,
}

/// Capacity of each block a publisher's input is read into: 16 KiB. A message that
/// arrives whole in one chunk (most of a stream's, at the 4096-byte chunk size encoders
/// set) is a slice of its block, not a copy, so a block lives as long as any of its
/// messages is held: in the hub's GOP cache at an origin, in the edge's retained window
/// (wire v2) for a group of pictures. Once a block is held, the next read needs a fresh
/// one. Without a capacity the buffer started at zero and bytes allocated each fresh block
/// at the size of the read (about one message), plus its shared header: two `malloc`s
/// and two `free`s per message, 7.6 % of an edge relaying 200 publishers, where blocks of
/// 16 KiB take one per dozen messages of a 600 kbit/s stream. At most one partly filled
/// block per connection stays held beyond what is kept anyway.
pub const PUBLISH_READ_BLOCK: usize = 16 * 1024;

/// Capacity of the block every other connection reads into: 4 KiB, until a publish is
/// accepted. A player sends a few small commands and acknowledgements, consumed as they
/// arrive, so its one block is reused in place for the whole connection; a connection
/// not yet authorised reads its handshake (1,537 then 1,536 bytes) and `connect` in a
/// read or two. A player's connection used to cost a 64 KiB read buffer and a 16 KiB
/// input block (72 KiB of resident memory per RTMP player against 21 KiB over
/// HTTP-FLV in `loadtest/players_bench.py`, 2026-12-04).
pub const READ_BLOCK: usize = 4 * 1024;

/// Least room [`ServerSession::read_buffer`] leaves for one read: 4 KiB, one chunk at the
/// chunk size encoders set, so a read rarely splits a message. With less room left in
/// the block, the next read goes to a fresh one.
const MIN_READ_ROOM: usize = 4 * 1024;

/// The server side of one RTMP connection.
pub struct ServerSession {
    config: ServerConfig,
    created: Instant,
    phase: Phase,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    /// Received bytes not yet decoded; the driver reads into it ([`ServerSession::read_buffer`]).
    input: BytesMut,
    /// Capacity of each fresh block of `input`: [`READ_BLOCK`], then
    /// [`PUBLISH_READ_BLOCK`] once a publish is accepted.
    read_block: usize,
    output: OutputQueue,
    /// Events produced outside `handle_input` (media released by `accept_publish`).
    pending_events: VecDeque<ServerEvent>,
    connect: Option<ConnectRequest>,
    connect_transaction_id: f64,
    connect_answered: bool,
    /// `connect` was accepted: the peer reads `onStatus` from now on.
    connect_accepted: bool,
    handshake_done: bool,
    /// [`ServerSession::fail`] already queued its last words.
    failed_told: bool,
    /// A publish or a play was accepted on this connection.
    authorised: bool,
    object_encoding: f64,
    streams: Vec<Stream>,
    next_stream_id: u32,
    /// Bytes received, the peer's acknowledgement window, pings.
    control: ControlState,
    /// Last time a publish/play request, state change or media kept the session alive.
    last_activity: Instant,
    should_close: bool,
    /// Messages the peer may still send (spent one per decoded message).
    rate: MessageRate,
    /// The last `handle_input` stopped at [`MAX_MESSAGES_PER_INPUT`] with input left.
    undecoded: bool,
}

impl std::fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSession")
            .field("connect", &self.connect)
            .field("streams", &self.streams)
            .field("bytes_received", &self.control.bytes_received())
            .field("should_close", &self.should_close)
            .finish()
    }
}

impl ServerSession {
    /// A session in its handshake, with [`ServerConfig::pre_publish_limits`] in force.
    pub fn new(config: ServerConfig, now: Instant) -> Self {
        let rate = MessageRate::new(config.max_messages_per_second, now);
        Self {
            decoder: ChunkDecoder::new(config.pre_publish_limits.clone()),
            config,
            created: now,
            phase: Phase::Handshake(Box::new(crate::handshake::Handshake::new(
                crate::handshake::HandshakeRole::Server,
            ))),
            encoder: ChunkEncoder::new(),
            input: BytesMut::new(),
            read_block: READ_BLOCK,
            output: OutputQueue::new(),
            pending_events: VecDeque::new(),
            connect: None,
            connect_transaction_id: 1.0,
            connect_answered: false,
            connect_accepted: false,
            handshake_done: false,
            failed_told: false,
            authorised: false,
            object_encoding: 0.0,
            streams: Vec::new(),
            next_stream_id: 1,
            control: ControlState::default(),
            last_activity: now,
            should_close: false,
            rate,
            undecoded: false,
        }
    }

    /// Feeds bytes received from the peer (handshake included): a copy of them, for
    /// tests and fuzzing; a driver reads into [`ServerSession::read_buffer`] instead.
    ///
    /// Events made outside this call (media held until `accept_publish`) come first. After
    /// an error the session is dead: the driver calls [`ServerSession::fail`] to tell the
    /// peer why, flushes the output and closes the connection.
    pub fn handle_input(
        &mut self,
        now: Instant,
        input: &[u8],
    ) -> Result<Vec<ServerEvent>, SessionError> {
        self.input.extend_from_slice(input);
        self.handle_read(now, input.len())
    }

    /// Where the driver reads the peer's bytes: append only, then call
    /// [`ServerSession::handle_read`] with the count. It has room for a read of at least
    /// 4 KiB; messages are slices of it, so bytes are copied once, by the kernel.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        let held = self.input.len();
        if self.input.capacity() - held < MIN_READ_ROOM {
            // Reuses the block in place when nothing of it is held any more (a player's,
            // every time); else takes a fresh one and moves the undecoded tail there.
            // Asked for a block's size in all, not a block beside the tail: `bytes`
            // grows a block that cannot hold what is asked by doubling it, and asking
            // for `read_block` more than an undecoded tail grew a publisher's blocks to
            // 32 and 64 KiB (heaptrack, 200 publishers: 47 KiB of read blocks per stream
            // where one 16 KiB block serves).
            self.input
                .reserve(self.read_block.saturating_sub(held).max(MIN_READ_ROOM));
        }
        &mut self.input
    }

    /// Handles the `received` bytes the driver appended to
    /// [`ServerSession::read_buffer`] (0: decode on what the session still holds, after
    /// [`ServerSession::has_undecoded_input`]). As [`ServerSession::handle_input`] for
    /// the rest.
    pub fn handle_read(
        &mut self,
        now: Instant,
        received: usize,
    ) -> Result<Vec<ServerEvent>, SessionError> {
        let mut events: Vec<ServerEvent> = self.pending_events.drain(..).collect();
        self.control.count_received(received);
        let result = self.process_input(now, &mut events);
        if result.is_err() {
            self.phase = Phase::Failed;
        }
        result.map(|()| events)
    }

    fn process_input(
        &mut self,
        now: Instant,
        events: &mut Vec<ServerEvent>,
    ) -> Result<(), SessionError> {
        match &mut self.phase {
            Phase::Failed => {
                return Err(SessionError::Protocol(
                    "input after the session already failed".into(),
                ))
            }
            Phase::Handshake(handshake) => {
                let input = self.input.split();
                match handshake
                    .process(&input)
                    .map_err(|e| SessionError::Handshake(e.to_string()))?
                {
                    HandshakeProgress::InProgress { response } => {
                        self.output.push(response.into());
                        return Ok(());
                    }
                    HandshakeProgress::Done {
                        response,
                        remaining,
                    } => {
                        self.output.push(response.into());
                        self.phase = Phase::Chunks;
                        self.handshake_done = true;
                        self.input.extend_from_slice(&remaining);
                    }
                }
            }
            Phase::Chunks => {}
        }
        self.undecoded = false;
        let mut decoded = 0;
        while let Some(message) = self.decoder.decode(&mut self.input)? {
            self.rate.spend(now)?;
            self.handle_message(now, message, events)?;
            decoded += 1;
            if decoded == MAX_MESSAGES_PER_INPUT {
                self.undecoded = !self.input.is_empty();
                break;
            }
        }
        self.send_acknowledgement_if_due();
        Ok(())
    }

    /// The last [`ServerSession::handle_input`] stopped at [`MAX_MESSAGES_PER_INPUT`]
    /// with input left: call it again (with no new bytes if need be) before waiting on
    /// the socket, once there is room for more events.
    pub fn has_undecoded_input(&self) -> bool {
        self.undecoded
    }

    fn send_acknowledgement_if_due(&mut self) {
        if let Some(ack) = self.control.acknowledgement_due() {
            self.send_control(ack);
        }
    }

    fn handle_message(
        &mut self,
        now: Instant,
        message: RtmpMessage,
        events: &mut Vec<ServerEvent>,
    ) -> Result<(), SessionError> {
        match message.type_id {
            type_id::AUDIO
            | type_id::VIDEO
            | type_id::DATA_AMF0
            | type_id::DATA_AMF3
            | type_id::AGGREGATE => {
                let stream_id = message.stream_id;
                let parts = session_common::media_parts(message).map_err(|reason| {
                    SessionError::Protocol(format!("bad aggregate on stream {stream_id}: {reason}"))
                })?;
                for part in parts {
                    self.handle_media(now, part, events)?;
                }
                Ok(())
            }
            type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3 => {
                let command = session_common::parse_command(&message).map_err(|reason| {
                    SessionError::BadCommand {
                        name: "(unparsable)".into(),
                        reason: reason.to_string(),
                    }
                })?;
                self.handle_command(now, message.stream_id, command, events)
            }
            // Set Chunk Size and Abort are applied by the decoder, the rest of the
            // protocol control messages by `control`; shared objects are not supported
            // (no current encoder uses them).
            _ => {
                let reply = self
                    .control
                    .handle(&message)
                    .map_err(|reason| SessionError::Protocol(reason.into()))?;
                if let Some(reply) = reply {
                    self.send_control(reply);
                }
                Ok(())
            }
        }
    }

    fn stream_mut(&mut self, stream_id: u32) -> Option<&mut Stream> {
        self.streams.iter_mut().find(|s| s.id == stream_id)
    }

    /// The stream `id` for a new publish or play by `command`: it must exist (from
    /// `createStream`) and be neither publishing nor playing.
    fn idle_stream_mut(&mut self, id: u32, command: &str) -> Result<&mut Stream, SessionError> {
        let stream = self.stream_mut(id).ok_or_else(|| {
            Self::bad(command, format!("on stream {id}, which was never created"))
        })?;
        if !matches!(
            stream.state,
            StreamState::Idle | StreamState::PublishFinished
        ) {
            return Err(Self::bad(
                command,
                format!("stream {id} is already publishing or playing"),
            ));
        }
        Ok(stream)
    }

    fn handle_media(
        &mut self,
        now: Instant,
        message: RtmpMessage,
        events: &mut Vec<ServerEvent>,
    ) -> Result<(), SessionError> {
        let stream_id = message.stream_id;
        let type_id = message.type_id;
        let Some(stream) = self.stream_mut(stream_id) else {
            return Err(SessionError::Protocol(format!(
                "media message (type {type_id}) on stream {stream_id}, which was never created"
            )));
        };
        match &mut stream.state {
            StreamState::Publishing { .. } => {
                self.last_activity = now;
                events.push(ServerEvent::Media { stream_id, message });
                Ok(())
            }
            StreamState::PublishRequested {
                held, held_bytes, ..
            } => {
                *held_bytes += message.payload.len() + HELD_MESSAGE_COST;
                if *held_bytes > MAX_HELD_MEDIA_BYTES {
                    return Err(SessionError::Protocol(format!(
                        "more than {MAX_HELD_MEDIA_BYTES} bytes of media on stream {stream_id} \
                         before its publish was accepted"
                    )));
                }
                held.push(message);
                self.last_activity = now;
                Ok(())
            }
            StreamState::PublishFinished => {
                tracing::debug!(stream_id, "dropping media after the publish finished");
                Ok(())
            }
            StreamState::Idle | StreamState::PlayRequested | StreamState::Playing => {
                Err(SessionError::Protocol(format!(
                    "media message (type {type_id}) on stream {stream_id}, which has no publish request"
                )))
            }
        }
    }

    fn bad(name: &str, reason: impl Into<String>) -> SessionError {
        SessionError::BadCommand {
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    fn require_connect(&self, name: &str) -> Result<(), SessionError> {
        if self.connect.is_none() {
            return Err(Self::bad(name, "sent before connect"));
        }
        Ok(())
    }

    fn handle_command(
        &mut self,
        now: Instant,
        message_stream_id: u32,
        command: Command,
        events: &mut Vec<ServerEvent>,
    ) -> Result<(), SessionError> {
        let name = command.name.as_str();
        match name {
            "connect" => {
                if self.connect.is_some() {
                    return Err(Self::bad(name, "second connect on one connection"));
                }
                let object = &command.command_object;
                let app = object
                    .get("app")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| Self::bad(name, "command object has no string `app`"))?
                    .to_string();
                let request = ConnectRequest {
                    app,
                    tc_url: object
                        .get("tcUrl")
                        .and_then(|v| v.as_str())
                        .map(String::from),
                    flash_ver: object
                        .get("flashVer")
                        .and_then(|v| v.as_str())
                        .map(String::from),
                    command_object: command.command_object.clone(),
                };
                self.connect_transaction_id = command.transaction_id;
                self.object_encoding = object
                    .get("objectEncoding")
                    .and_then(|v| v.as_number())
                    .unwrap_or(0.0);
                self.connect = Some(request.clone());
                events.push(ServerEvent::ConnectRequested { request });
            }
            "releaseStream" => {
                // SRS answers `_result` (null, undefined); FMLE-style encoders wait for it.
                self.require_connect(name)?;
                self.send_result(
                    command.transaction_id,
                    Amf0Value::Null,
                    Amf0Value::Undefined,
                );
            }
            "FCPublish" => {
                self.require_connect(name)?;
                let stream_name = command
                    .arguments
                    .first()
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string();
                self.send_result(
                    command.transaction_id,
                    Amf0Value::Null,
                    Amf0Value::Undefined,
                );
                self.send_command(
                    0,
                    Command::new(
                        "onFCPublish",
                        0.0,
                        Amf0Value::Null,
                        vec![object(&[
                            ("code", string("NetStream.Publish.Start")),
                            (
                                "description",
                                string(&format!("FCPublish to stream {stream_name}.")),
                            ),
                        ])],
                    ),
                );
            }
            "FCUnpublish" => {
                self.require_connect(name)?;
                let stream_name = command.arguments.first().and_then(|v| v.as_str());
                self.send_command(
                    0,
                    Command::new(
                        "onFCUnpublish",
                        0.0,
                        Amf0Value::Null,
                        vec![object(&[
                            ("code", string("NetStream.Unpublish.Success")),
                            ("description", string("Stop publishing stream.")),
                        ])],
                    ),
                );
                self.send_result(
                    command.transaction_id,
                    Amf0Value::Null,
                    Amf0Value::Undefined,
                );
                // The publishing stream of that name, or the only one if the name differs
                // (some encoders send FCUnpublish with the name without its query).
                let publishing: Vec<(u32, bool)> = self
                    .streams
                    .iter()
                    .filter_map(|s| match &s.state {
                        StreamState::Publishing { name }
                        | StreamState::PublishRequested { name, .. } => {
                            Some((s.id, Some(name.as_str()) == stream_name))
                        }
                        _ => None,
                    })
                    .collect();
                let target = publishing
                    .iter()
                    .find(|(_, same_name)| *same_name)
                    .or(if publishing.len() == 1 {
                        publishing.first()
                    } else {
                        None
                    })
                    .map(|(id, _)| *id);
                if let Some(stream_id) = target {
                    self.send_message(
                        csid::COMMAND,
                        session_common::on_status(
                            stream_id,
                            "status",
                            "NetStream.Unpublish.Success",
                            "Stream unpublished.",
                        ),
                    );
                    self.finish_stream(now, stream_id, StreamState::PublishFinished, events);
                }
            }
            "createStream" => {
                self.require_connect(name)?;
                if self.streams.len() >= MAX_OPEN_STREAMS {
                    return Err(Self::bad(
                        name,
                        format!("more than {MAX_OPEN_STREAMS} streams open on one connection"),
                    ));
                }
                let id = self.next_stream_id;
                self.next_stream_id = id
                    .checked_add(1)
                    .ok_or_else(|| Self::bad(name, "stream ids exhausted"))?;
                self.streams.push(Stream {
                    id,
                    state: StreamState::Idle,
                });
                self.send_result(
                    command.transaction_id,
                    Amf0Value::Null,
                    Amf0Value::Number(f64::from(id)),
                );
            }
            "publish" => {
                self.require_connect(name)?;
                let publish_name = command
                    .arguments
                    .first()
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| Self::bad(name, "no stream name"))?
                    .to_string();
                let publish_type = command
                    .arguments
                    .get(1)
                    .and_then(|v| v.as_str())
                    .unwrap_or("live")
                    .to_string();
                if !PUBLISH_TYPES.contains(&publish_type.to_ascii_lowercase().as_str()) {
                    return Err(Self::bad(
                        name,
                        format!("unknown publish type {publish_type:?}"),
                    ));
                }
                let stream = self.idle_stream_mut(message_stream_id, name)?;
                stream.state = StreamState::PublishRequested {
                    name: publish_name.clone(),
                    held: Vec::new(),
                    held_bytes: 0,
                };
                self.last_activity = now;
                events.push(ServerEvent::PublishRequested {
                    stream_id: message_stream_id,
                    name: publish_name,
                    publish_type,
                });
            }
            "play" => {
                self.require_connect(name)?;
                let play_name = command
                    .arguments
                    .first()
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| Self::bad(name, "no stream name"))?
                    .to_string();
                let stream = self.idle_stream_mut(message_stream_id, name)?;
                stream.state = StreamState::PlayRequested;
                self.last_activity = now;
                events.push(ServerEvent::PlayRequested {
                    stream_id: message_stream_id,
                    name: play_name,
                });
            }
            "deleteStream" => {
                // deleteStream(null, streamId) arrives on stream 0.
                let Some(stream_id) = command.arguments.first().and_then(|v| v.as_number()) else {
                    return Err(Self::bad(name, "no stream id"));
                };
                if stream_id >= 0.0 && stream_id <= f64::from(u32::MAX) {
                    let stream_id = stream_id as u32;
                    self.finish_stream(now, stream_id, StreamState::Idle, events);
                    self.streams.retain(|s| s.id != stream_id);
                }
            }
            "closeStream" => {
                self.finish_stream(now, message_stream_id, StreamState::Idle, events);
            }
            _ => events.push(ServerEvent::UnhandledCommand {
                name: command.name.clone(),
            }),
        }
        Ok(())
    }

    /// Ends whatever `stream_id` was doing, reporting it, and leaves it in `next`.
    fn finish_stream(
        &mut self,
        now: Instant,
        stream_id: u32,
        next: StreamState,
        events: &mut Vec<ServerEvent>,
    ) {
        let Some(stream) = self.stream_mut(stream_id) else {
            return;
        };
        let previous = std::mem::replace(&mut stream.state, next);
        match previous {
            StreamState::PublishRequested { .. } | StreamState::Publishing { .. } => {
                events.push(ServerEvent::PublishFinished { stream_id })
            }
            StreamState::PlayRequested | StreamState::Playing => {
                events.push(ServerEvent::PlayFinished { stream_id })
            }
            StreamState::Idle | StreamState::PublishFinished => {}
        }
        self.last_activity = now;
    }

    /// Restarts the media clock at `now`: the driver did not read the peer for a while
    /// (it was waiting for a publish decision, or holding back a stream its upstream
    /// could not carry), so silence until now is not the peer's. A publisher gets a whole
    /// `media_timeout` from here.
    pub fn resume_media_clock(&mut self, now: Instant) {
        self.last_activity = self.last_activity.max(now);
    }

    /// When the driver must call [`ServerSession::handle_timeout`] next, if ever.
    ///
    /// Before any publish or play request (a stalled handshake, or a peer that connects
    /// and idles): `created + handshake_timeout`. While a stream publishes (or waits for
    /// its publish to be accepted): last media + `media_timeout`. While only playing:
    /// none (players send nothing). A connection left with no active stream gets
    /// `handshake_timeout` again from its last change.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if matches!(self.phase, Phase::Failed) {
            return None;
        }
        let any_publishing = self.streams.iter().any(|s| {
            matches!(
                s.state,
                StreamState::Publishing { .. } | StreamState::PublishRequested { .. }
            )
        });
        if any_publishing {
            return Some(self.last_activity + self.config.media_timeout);
        }
        let any_playing = self
            .streams
            .iter()
            .any(|s| matches!(s.state, StreamState::Playing | StreamState::PlayRequested));
        if any_playing {
            return None;
        }
        Some(self.last_activity.max(self.created) + self.config.handshake_timeout)
    }

    /// Errors with [`SessionError::Timeout`] if a deadline has passed (then, as after any
    /// error: [`ServerSession::fail`], flush, close).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        let Some(deadline) = self.poll_timeout() else {
            return Ok(());
        };
        if now < deadline {
            return Ok(());
        }
        let publishing = self.streams.iter().any(|s| {
            matches!(
                s.state,
                StreamState::Publishing { .. } | StreamState::PublishRequested { .. }
            )
        });
        self.phase = Phase::Failed;
        Err(SessionError::Timeout(if publishing {
            "no media from the publisher within media_timeout"
        } else if self.connect.is_none() {
            "handshake and connect not completed within handshake_timeout"
        } else {
            "no publish or play request within handshake_timeout"
        }))
    }

    /// Bytes to write to the peer.
    pub fn output(&mut self) -> &mut OutputQueue {
        &mut self.output
    }

    /// Events produced outside [`ServerSession::handle_input`]: the media held while a
    /// publish waited, released by [`ServerSession::accept_publish`]. Whatever the driver
    /// does not take here comes first in the next `handle_input` result.
    pub fn take_events(&mut self) -> Vec<ServerEvent> {
        self.pending_events.drain(..).collect()
    }

    /// True once a request was rejected: flush the output, then close the connection.
    pub fn should_close(&self) -> bool {
        self.should_close
    }

    /// What the peer sent in `connect`, once it did.
    pub fn connect_request(&self) -> Option<&ConnectRequest> {
        self.connect.as_ref()
    }

    /// Bytes received so far, handshake included.
    pub fn bytes_received(&self) -> u64 {
        self.control.bytes_received()
    }

    /// Bytes of the peer's input the session holds: received and not yet parsed (at most
    /// one incomplete chunk), in partial messages, and media held while a publish waits
    /// for its answer. Before [`ServerSession::is_authorised`] this is what
    /// [`ServerConfig::pre_publish_limits`] bound; a node adds it up across connections.
    pub fn buffered_bytes(&self) -> usize {
        let held: usize = self
            .streams
            .iter()
            .map(|s| match &s.state {
                StreamState::PublishRequested { held_bytes, .. } => *held_bytes,
                _ => 0,
            })
            .sum();
        self.input.len() + self.decoder.buffered_bytes() + held
    }

    /// True once a publish or a play was accepted on this connection (and from then on).
    pub fn is_authorised(&self) -> bool {
        self.authorised
    }

    /// True once the handshake is done (and still true if the session failed later).
    pub fn is_handshake_done(&self) -> bool {
        self.handshake_done
    }

    /// Tells the peer why the session ends, after `error` (from
    /// [`ServerSession::handle_input`], [`ServerSession::handle_timeout`] or the driver's
    /// own), and sets [`ServerSession::should_close`]: flush the output, then close.
    ///
    /// What is queued depends on how far the session got:
    /// - handshake not complete: nothing (the peer cannot read RTMP yet);
    /// - `connect` not accepted: `_error` to `connect` (its transaction id, 1 if it never
    ///   came) with `NetConnection.Connect.Rejected`;
    /// - otherwise `onStatus` of level `error` on the stream that publishes (or waits for
    ///   its publish to be accepted) with `NetStream.Failed`, else on the playing stream
    ///   with `NetStream.Play.Failed`, else on stream 0 with `NetConnection.Call.Failed`
    ///   (`NetConnection.Connect.IdleTimeout` for a timeout).
    ///
    /// The description is `error`'s text: ffmpeg prints it (`Server error: ...`), OBS
    /// logs it, and both stop on any error-level status. Nothing is queued if the session
    /// already told the peer it is closing (a `reject_*` call, or an earlier `fail`).
    pub fn fail(&mut self, error: &SessionError) {
        if self.failed_told || self.should_close {
            self.should_close = true;
            return;
        }
        self.failed_told = true;
        self.should_close = true;
        self.phase = Phase::Failed;
        let description = error.to_string();
        if !self.handshake_done {
            return;
        }
        if !self.connect_accepted {
            self.send_connect_error(&description);
            return;
        }
        let publishing = self.streams.iter().find(|s| {
            matches!(
                s.state,
                StreamState::Publishing { .. } | StreamState::PublishRequested { .. }
            )
        });
        let playing = self
            .streams
            .iter()
            .find(|s| matches!(s.state, StreamState::Playing | StreamState::PlayRequested));
        let (stream_id, code) = match (publishing, playing) {
            (Some(s), _) => (s.id, "NetStream.Failed"),
            (None, Some(s)) => (s.id, crate::status::PLAY_FAILED),
            (None, None) if matches!(error, SessionError::Timeout(_)) => {
                (0, "NetConnection.Connect.IdleTimeout")
            }
            (None, None) => (0, "NetConnection.Call.Failed"),
        };
        self.send_status(stream_id, "error", code, &description);
    }

    fn send_message(&mut self, csid: u32, message: RtmpMessage) {
        self.encoder.encode(csid, &message, &mut self.output);
    }

    fn send_control(&mut self, message: RtmpMessage) {
        self.send_message(csid::CONTROL, message);
    }

    fn send_command(&mut self, stream_id: u32, command: Command) {
        self.send_message(csid::COMMAND, command.to_message(stream_id));
    }

    fn send_result(&mut self, transaction_id: f64, command_object: Amf0Value, value: Amf0Value) {
        self.send_command(
            0,
            Command::new("_result", transaction_id, command_object, vec![value]),
        );
    }

    /// Sends Window Acknowledgement Size, Set Peer Bandwidth (dynamic), Set Chunk Size
    /// (and switches to it), then `_result` with `NetConnection.Connect.Success`. An
    /// Enhanced RTMP client's `fourCcList` is echoed: a relay forwards any codec.
    pub fn accept_connect(&mut self) {
        if self.connect.is_none() || self.connect_answered {
            tracing::warn!("accept_connect without a pending connect request");
            return;
        }
        self.connect_answered = true;
        self.connect_accepted = true;
        self.send_control(message::window_ack_size(self.config.window_ack_size));
        self.send_control(message::set_peer_bandwidth(
            self.config.peer_bandwidth,
            bandwidth_limit::DYNAMIC,
        ));
        let chunk_size = self.config.chunk_size.clamp(1, MAX_CHUNK_SIZE);
        self.send_control(message::set_chunk_size(chunk_size));
        self.encoder.set_chunk_size(chunk_size);

        let mut properties = vec![
            ("fmsVer".to_string(), string(FMS_VERSION)),
            (
                "capabilities".to_string(),
                Amf0Value::Number(FMS_CAPABILITIES),
            ),
        ];
        if let Some(four_cc_list) = self
            .connect
            .as_ref()
            .and_then(|c| c.command_object.get("fourCcList"))
        {
            properties.push(("fourCcList".to_string(), four_cc_list.clone()));
        }
        let information = object(&[
            ("level", string("status")),
            ("code", string("NetConnection.Connect.Success")),
            ("description", string("Connection succeeded.")),
            ("objectEncoding", Amf0Value::Number(self.object_encoding)),
        ]);
        let transaction_id = self.connect_transaction_id;
        self.send_command(
            0,
            Command::new(
                "_result",
                transaction_id,
                Amf0Value::Object(properties),
                vec![information],
            ),
        );
    }

    /// Sends `_error` with `NetConnection.Connect.Rejected` and `description`. The driver
    /// closes the connection after flushing the output.
    pub fn reject_connect(&mut self, description: &str) {
        self.connect_answered = true;
        self.should_close = true;
        self.send_connect_error(description);
    }

    /// `_error` to the `connect` request: `NetConnection.Connect.Rejected` and why.
    fn send_connect_error(&mut self, description: &str) {
        let transaction_id = self.connect_transaction_id;
        let info = status_info("error", "NetConnection.Connect.Rejected", description);
        self.send_command(
            0,
            Command::new("_error", transaction_id, Amf0Value::Null, vec![info]),
        );
    }

    /// Sends `NetStream.Publish.Start`; media on `stream_id` is reported from now on. Media
    /// held while the request waited is released as events: see
    /// [`ServerSession::take_events`]. The peer is now authorised: the decoder limits go
    /// from [`ServerConfig::pre_publish_limits`] to [`ServerConfig::limits`].
    pub fn accept_publish(&mut self, stream_id: u32) {
        let Some(stream) = self.stream_mut(stream_id) else {
            tracing::warn!(stream_id, "accept_publish for an unknown stream");
            return;
        };
        let StreamState::PublishRequested { name, held, .. } =
            std::mem::replace(&mut stream.state, StreamState::PublishFinished)
        else {
            tracing::warn!(
                stream_id,
                "accept_publish for a stream with no pending publish"
            );
            return;
        };
        let description = format!("Publishing {name}.");
        stream.state = StreamState::Publishing { name };
        self.authorised = true;
        self.decoder.set_limits(self.config.limits.clone());
        self.read_block = PUBLISH_READ_BLOCK;
        self.send_control(message::stream_begin(stream_id));
        self.send_message(
            csid::COMMAND,
            session_common::on_status(stream_id, "status", "NetStream.Publish.Start", &description),
        );
        self.pending_events.extend(
            held.into_iter()
                .map(|message| ServerEvent::Media { stream_id, message }),
        );
    }

    /// Sends `onStatus` level `error` with `code` (e.g. `NetStream.Publish.BadName`,
    /// `NetStream.Publish.Rejected`) and `description`. The driver closes the connection.
    pub fn reject_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        if let Some(stream) = self.stream_mut(stream_id) {
            stream.state = StreamState::PublishFinished;
        }
        self.should_close = true;
        self.send_status(stream_id, "error", code, description);
    }

    /// Sends StreamBegin, `NetStream.Play.Reset` and `NetStream.Play.Start`,
    /// `|RtmpSampleAccess` and `onStatus` `NetStream.Data.Start`: what nginx-rtmp and SRS
    /// send, and what ffmpeg, ffplay and VLC expect before media.
    pub fn accept_play(&mut self, stream_id: u32) {
        match self.stream_mut(stream_id) {
            Some(stream) if matches!(stream.state, StreamState::PlayRequested) => {
                stream.state = StreamState::Playing;
                self.authorised = true;
            }
            _ => {
                tracing::warn!(stream_id, "accept_play for a stream with no pending play");
                return;
            }
        }
        self.send_control(message::stream_begin(stream_id));
        self.send_status(
            stream_id,
            "status",
            "NetStream.Play.Reset",
            "Playing and resetting.",
        );
        self.send_status(
            stream_id,
            "status",
            "NetStream.Play.Start",
            "Started playing.",
        );
        self.send_message(
            csid::DATA,
            session_common::data_message(
                stream_id,
                &[
                    string("|RtmpSampleAccess"),
                    Amf0Value::Boolean(true),
                    Amf0Value::Boolean(true),
                ],
            ),
        );
        self.send_message(
            csid::DATA,
            session_common::data_message(
                stream_id,
                &[
                    string("onStatus"),
                    object(&[("code", string("NetStream.Data.Start"))]),
                ],
            ),
        );
    }

    /// Sends `onStatus` level `error` with `code` (e.g. `NetStream.Play.StreamNotFound`).
    /// The driver closes the connection.
    pub fn reject_play(&mut self, stream_id: u32, code: &str, description: &str) {
        if let Some(stream) = self.stream_mut(stream_id) {
            stream.state = StreamState::Idle;
        }
        self.should_close = true;
        self.send_status(stream_id, "error", code, description);
    }

    /// Sends an `onStatus` on `stream_id` (e.g. `NetStream.Publish.BadName` before closing a
    /// publisher that was taken over, or `NetStream.Play.UnpublishNotify`).
    /// Asks the client to reconnect (Enhanced RTMP v2's `NetConnection.Connect.
    /// ReconnectRequest`, an `onStatus` on the connection), for a server going away:
    /// a client that supports it ([`ConnectRequest::supports_reconnect`]) connects again
    /// (through the load balancer, to another server) and moves its publish there at a
    /// keyframe; the server keeps this connection until the client leaves.
    pub fn request_reconnect(&mut self, description: &str) {
        self.send_status(
            0,
            "status",
            crate::status::CONNECT_RECONNECT_REQUEST,
            description,
        );
    }

    pub fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        self.send_message(
            csid::COMMAND,
            session_common::on_status(stream_id, level, code, description),
        );
    }

    /// Queues a media or data message for a player on `stream_id` (the message's own
    /// stream id is replaced). The payload is shared, not copied.
    pub fn send_media(&mut self, stream_id: u32, message: &RtmpMessage) {
        let message = RtmpMessage {
            stream_id,
            ..message.clone()
        };
        self.send_message(session_common::media_csid(message.type_id), message);
    }
}
