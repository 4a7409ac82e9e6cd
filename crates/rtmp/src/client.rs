//! The client side of an RTMP session, sans IO: for relay legs (pushing a stream to
//! another node, pulling one from it) and for tests.
//!
//! A [`ClientSession`] queues C0 + C1 when created, then drives handshake, `connect` and
//! either the publish sequence ffmpeg and OBS send (`releaseStream`, `FCPublish`,
//! `createStream`, `publish`) or the play sequence (`createStream`, `play`). It reports
//! [`ClientEvent`]s; the driver moves bytes between the socket and
//! [`ClientSession::handle_input`] / [`ClientSession::output`].

use crate::amf0::Amf0Value;
use crate::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits, MAX_CHUNK_SIZE};
use crate::handshake::{Handshake, HandshakeProgress, HandshakeRole};
use crate::message::{self, type_id, Command, RtmpMessage};
use crate::output::OutputQueue;
use crate::session_common::{self, csid, string, ControlState};
use bytes::BytesMut;
use std::time::Instant;

/// Buffer length a player announces (Set Buffer Length): 3 s, what ffmpeg sends.
const PLAY_BUFFER_MILLIS: u32 = 3000;

/// `play` start argument: -2 means "live if there is one, else recorded" (ffmpeg's default
/// `rtmp_live any` sends -2000, in milliseconds).
const PLAY_START_ANY: f64 = -2000.0;

/// Settings of a client session.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// `app` of `connect`, query included (`kLive/?t=abc`).
    pub app: String,
    /// `tcUrl` of `connect` (`rtmp://host:1935/kLive/?t=abc`).
    pub tc_url: String,
    /// `flashVer` of `connect`.
    pub flash_ver: String,
    /// Chunk size announced and used for what this client sends.
    pub chunk_size: u32,
    /// More `connect` properties, sent after the standard ones (e.g. Enhanced RTMP's
    /// `fourCcList`).
    pub extra_connect_properties: Vec<(String, Amf0Value)>,
}

impl ClientConfig {
    /// A config with `flashVer` as ffmpeg sends it and a 4096-byte chunk size.
    pub fn new(app: impl Into<String>, tc_url: impl Into<String>) -> Self {
        Self {
            app: app.into(),
            tc_url: tc_url.into(),
            flash_ver: "FMLE/3.0 (compatible; longhaul)".to_string(),
            chunk_size: 4096,
            extra_connect_properties: Vec::new(),
        }
    }
}

/// What the client is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientGoal {
    Publish { name: String, publish_type: String },
    Play { name: String },
}

/// What the session reports to its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// `NetStream.Publish.Start` or `NetStream.Play.Start` arrived: media may flow.
    Ready { stream_id: u32 },
    /// The server refused: `_error` to a command, or an `onStatus` of level `error`.
    Rejected { code: String, description: String },
    /// Any other `onStatus` (or `onFCPublish`...).
    Status {
        level: String,
        code: String,
        description: String,
    },
    /// A media or data message while playing (aggregates already split).
    Media(RtmpMessage),
}

#[derive(Debug, thiserror::Error)]
pub enum ClientSessionError {
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error(transparent)]
    Chunk(#[from] crate::chunk::ChunkError),
    #[error("server sent a bad message: {0}")]
    Protocol(String),
    #[error("{0}")]
    NotReady(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Handshake,
    /// `connect` sent, waiting for its `_result`.
    Connecting,
    /// `createStream` sent, waiting for the stream id.
    CreatingStream,
    /// `publish`/`play` sent, waiting for the Start status.
    Requested,
    Ready,
    Finished,
    Failed,
}

/// Transaction ids of the commands this client sends.
mod tid {
    pub const CONNECT: f64 = 1.0;
    pub const RELEASE_STREAM: f64 = 2.0;
    pub const FC_PUBLISH: f64 = 3.0;
    pub const CREATE_STREAM: f64 = 4.0;
    pub const PUBLISH_OR_PLAY: f64 = 5.0;
    pub const FC_UNPUBLISH: f64 = 6.0;
    pub const DELETE_STREAM: f64 = 7.0;
}

/// The client side of one RTMP connection.
pub struct ClientSession {
    config: ClientConfig,
    goal: ClientGoal,
    step: Step,
    handshake: Handshake,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    input: BytesMut,
    output: OutputQueue,
    stream_id: u32,
    /// Bytes received, the server's acknowledgement window, pings.
    control: ControlState,
    start_error: Option<String>,
    /// Every message received, for tests that look at what the server sent.
    #[cfg(test)]
    received: Vec<RtmpMessage>,
}

impl std::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession")
            .field("goal", &self.goal)
            .field("step", &self.step)
            .field("stream_id", &self.stream_id)
            .finish()
    }
}

impl ClientSession {
    /// A new session with C0 + C1 queued in [`ClientSession::output`].
    pub fn new(config: ClientConfig, goal: ClientGoal, now: Instant) -> Self {
        let _ = now; // No client-side timers: drivers bound each step with their own.
        let mut handshake = Handshake::new(HandshakeRole::Client);
        let mut output = OutputQueue::new();
        let start_error = match handshake.start() {
            Ok(c0c1) => {
                output.push(c0c1.into());
                None
            }
            Err(e) => Some(e.to_string()),
        };
        Self {
            config,
            goal,
            step: Step::Handshake,
            handshake,
            decoder: ChunkDecoder::new(DecoderLimits::default()),
            encoder: ChunkEncoder::new(),
            input: BytesMut::new(),
            output,
            stream_id: 0,
            control: ControlState::default(),
            start_error,
            #[cfg(test)]
            received: Vec::new(),
        }
    }

    /// Bytes to write to the server.
    pub fn output(&mut self) -> &mut OutputQueue {
        &mut self.output
    }

    /// The stream id the server handed out (0 until then).
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// True once `NetStream.Publish.Start` / `NetStream.Play.Start` arrived.
    pub fn is_ready(&self) -> bool {
        self.step == Step::Ready
    }

    /// Feeds bytes received from the server.
    pub fn handle_input(
        &mut self,
        now: Instant,
        input: &[u8],
    ) -> Result<Vec<ClientEvent>, ClientSessionError> {
        let _ = now;
        if let Some(e) = self.start_error.take() {
            self.step = Step::Failed;
            return Err(ClientSessionError::Handshake(e));
        }
        if self.step == Step::Failed {
            return Err(ClientSessionError::Protocol(
                "input after the session already failed".into(),
            ));
        }
        let mut events = Vec::new();
        let result = self.process_input(input, &mut events);
        if result.is_err() {
            self.step = Step::Failed;
        }
        result.map(|()| events)
    }

    fn process_input(
        &mut self,
        input: &[u8],
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientSessionError> {
        self.control.count_received(input.len());
        if self.step == Step::Handshake {
            match self
                .handshake
                .process(input)
                .map_err(|e| ClientSessionError::Handshake(e.to_string()))?
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
                    self.input.extend_from_slice(&remaining);
                    self.send_connect();
                }
            }
        } else {
            self.input.extend_from_slice(input);
        }
        while let Some(message) = self.decoder.decode(&mut self.input)? {
            self.handle_message(message, events)?;
        }
        if let Some(ack) = self.control.acknowledgement_due() {
            self.send_control(ack);
        }
        Ok(())
    }

    fn send_control(&mut self, message: RtmpMessage) {
        self.encoder
            .encode(csid::CONTROL, &message, &mut self.output);
    }

    fn send_command(&mut self, stream_id: u32, command: Command) {
        let message = command.to_message(stream_id);
        self.encoder
            .encode(csid::COMMAND, &message, &mut self.output);
    }

    fn send_connect(&mut self) {
        let chunk_size = self.config.chunk_size.clamp(1, MAX_CHUNK_SIZE);
        self.send_control(message::set_chunk_size(chunk_size));
        self.encoder.set_chunk_size(chunk_size);
        let mut properties = vec![
            ("app".to_string(), string(&self.config.app)),
            ("type".to_string(), string("nonprivate")),
            ("flashVer".to_string(), string(&self.config.flash_ver)),
            ("tcUrl".to_string(), string(&self.config.tc_url)),
        ];
        if matches!(self.goal, ClientGoal::Play { .. }) {
            // What ffmpeg sends when playing: no proxy, all codecs, no video function.
            properties.extend([
                ("fpad".to_string(), Amf0Value::Boolean(false)),
                ("capabilities".to_string(), Amf0Value::Number(15.0)),
                ("audioCodecs".to_string(), Amf0Value::Number(4071.0)),
                ("videoCodecs".to_string(), Amf0Value::Number(252.0)),
                ("videoFunction".to_string(), Amf0Value::Number(1.0)),
            ]);
        }
        properties.extend(self.config.extra_connect_properties.iter().cloned());
        self.send_command(
            0,
            Command::new(
                "connect",
                tid::CONNECT,
                Amf0Value::Object(properties),
                vec![],
            ),
        );
        self.step = Step::Connecting;
    }

    fn handle_message(
        &mut self,
        message: RtmpMessage,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientSessionError> {
        #[cfg(test)]
        self.received.push(message.clone());
        match message.type_id {
            type_id::COMMAND_AMF0 | type_id::COMMAND_AMF3 => {
                let command = session_common::parse_command(&message)
                    .map_err(|e| ClientSessionError::Protocol(e.to_string()))?;
                self.handle_command(command, events)
            }
            type_id::AUDIO
            | type_id::VIDEO
            | type_id::DATA_AMF0
            | type_id::DATA_AMF3
            | type_id::AGGREGATE => {
                let parts = session_common::media_parts(message)
                    .map_err(|e| ClientSessionError::Protocol(format!("bad aggregate: {e}")))?;
                for part in parts {
                    self.handle_media(part, events);
                }
                Ok(())
            }
            _ => {
                let reply = self
                    .control
                    .handle(&message)
                    .map_err(|reason| ClientSessionError::Protocol(reason.into()))?;
                if let Some(reply) = reply {
                    self.send_control(reply);
                }
                Ok(())
            }
        }
    }

    fn handle_media(&mut self, message: RtmpMessage, events: &mut Vec<ClientEvent>) {
        // Any stream id: a client plays one stream per connection, and ffmpeg's own
        // server (`-listen 1`) sends media on another stream id than it handed out.
        let playing = matches!(self.goal, ClientGoal::Play { .. })
            && matches!(self.step, Step::Requested | Step::Ready);
        if playing && !session_common::is_play_housekeeping(&message) {
            events.push(ClientEvent::Media(message));
        }
    }

    fn handle_command(
        &mut self,
        command: Command,
        events: &mut Vec<ClientEvent>,
    ) -> Result<(), ClientSessionError> {
        match command.name.as_str() {
            "_result"
                if command.transaction_id == tid::CONNECT && self.step == Step::Connecting =>
            {
                if let ClientGoal::Publish { name, .. } = &self.goal {
                    let name = string(name);
                    self.send_command(
                        0,
                        Command::new(
                            "releaseStream",
                            tid::RELEASE_STREAM,
                            Amf0Value::Null,
                            vec![name.clone()],
                        ),
                    );
                    self.send_command(
                        0,
                        Command::new("FCPublish", tid::FC_PUBLISH, Amf0Value::Null, vec![name]),
                    );
                }
                self.send_command(
                    0,
                    Command::new("createStream", tid::CREATE_STREAM, Amf0Value::Null, vec![]),
                );
                self.step = Step::CreatingStream;
            }
            "_result"
                if command.transaction_id == tid::CREATE_STREAM
                    && self.step == Step::CreatingStream =>
            {
                let id = command
                    .arguments
                    .first()
                    .and_then(|v| v.as_number())
                    .filter(|n| *n >= 1.0 && *n <= f64::from(u32::MAX))
                    .ok_or_else(|| {
                        ClientSessionError::Protocol(format!(
                            "createStream _result without a valid stream id: {:?}",
                            command.arguments
                        ))
                    })?;
                self.stream_id = id as u32;
                let stream_id = self.stream_id;
                match self.goal.clone() {
                    ClientGoal::Publish { name, publish_type } => self.send_command(
                        stream_id,
                        Command::new(
                            "publish",
                            tid::PUBLISH_OR_PLAY,
                            Amf0Value::Null,
                            vec![string(&name), string(&publish_type)],
                        ),
                    ),
                    ClientGoal::Play { name } => {
                        self.send_command(
                            stream_id,
                            Command::new(
                                "play",
                                tid::PUBLISH_OR_PLAY,
                                Amf0Value::Null,
                                vec![string(&name), Amf0Value::Number(PLAY_START_ANY)],
                            ),
                        );
                        self.send_control(message::set_buffer_length(
                            stream_id,
                            PLAY_BUFFER_MILLIS,
                        ));
                    }
                }
                self.step = Step::Requested;
            }
            "_error" => {
                let (_, code, description) = session_common::read_status(command.arguments.first());
                events.push(ClientEvent::Rejected { code, description });
            }
            "onStatus" | "onFCPublish" | "onFCUnpublish" => {
                let (level, code, description) =
                    session_common::read_status(command.arguments.first());
                let start_code = match self.goal {
                    ClientGoal::Publish { .. } => "NetStream.Publish.Start",
                    ClientGoal::Play { .. } => "NetStream.Play.Start",
                };
                if level == "error" {
                    events.push(ClientEvent::Rejected { code, description });
                } else if command.name == "onStatus"
                    && code == start_code
                    && self.step == Step::Requested
                {
                    self.step = Step::Ready;
                    events.push(ClientEvent::Ready {
                        stream_id: self.stream_id,
                    });
                } else {
                    events.push(ClientEvent::Status {
                        level,
                        code,
                        description,
                    });
                }
            }
            // `_result`s of releaseStream/FCPublish, onBWDone, ...
            _ => {}
        }
        Ok(())
    }

    /// Queues a media or data message on the published stream (its stream id is set;
    /// the payload is shared, not copied).
    pub fn send_media(&mut self, message: &RtmpMessage) -> Result<(), ClientSessionError> {
        if self.step != Step::Ready || !matches!(self.goal, ClientGoal::Publish { .. }) {
            return Err(ClientSessionError::NotReady(
                "send_media before NetStream.Publish.Start (or on a playing session)",
            ));
        }
        let message = RtmpMessage {
            stream_id: self.stream_id,
            ..message.clone()
        };
        self.encoder.encode(
            session_common::media_csid(message.type_id),
            &message,
            &mut self.output,
        );
        Ok(())
    }

    /// Ends the session politely: `FCUnpublish` (when publishing) and `deleteStream`.
    pub fn finish(&mut self) {
        if matches!(self.step, Step::Finished | Step::Failed | Step::Handshake) {
            return;
        }
        if self.stream_id != 0 {
            if let ClientGoal::Publish { name, .. } = &self.goal {
                let name = string(name);
                self.send_command(
                    0,
                    Command::new(
                        "FCUnpublish",
                        tid::FC_UNPUBLISH,
                        Amf0Value::Null,
                        vec![name],
                    ),
                );
            }
            let stream_id = Amf0Value::Number(f64::from(self.stream_id));
            self.send_command(
                0,
                Command::new(
                    "deleteStream",
                    tid::DELETE_STREAM,
                    Amf0Value::Null,
                    vec![stream_id],
                ),
            );
        }
        self.step = Step::Finished;
    }

    /// Sends any message as is (tests of the server's handling of odd peers).
    #[cfg(test)]
    pub(crate) fn send_raw(&mut self, message: RtmpMessage) {
        let csid = match message.type_id {
            1..=6 => csid::CONTROL,
            other => session_common::media_csid(other),
        };
        self.encoder.encode(csid, &message, &mut self.output);
    }

    /// Every message received so far.
    #[cfg(test)]
    pub(crate) fn received(&self) -> &[RtmpMessage] {
        &self.received
    }
}
