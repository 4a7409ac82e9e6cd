//! The server side of one RTSP publishing connection, sans IO: bytes and time in,
//! responses and events out.
//!
//! An encoder publishes with (RFC 2326; RTSP 1.0, which is what cameras, ffmpeg and
//! GStreamer speak):
//!
//! ```text
//! OPTIONS   → 200, the methods we take
//! ANNOUNCE  → the SDP's tracks: RtspEvent::Announce; the driver checks the URL's
//!             token and answers (accept_announce, or refuse: 401 with the reason)
//! SETUP ×n  → one per track: TCP interleaved (channels in this connection) or UDP
//!             (the node's RTP/RTCP ports; RtspEvent::UdpTrack tells the driver whose
//!             datagrams are whose); 461 for a transport we do not take
//! RECORD    → RtspEvent::Record; the driver starts the publication and answers
//! $ch,len,… → RtspEvent::Packet: RTP or RTCP of a track (interleaved)
//! GET_PARAMETER / SET_PARAMETER → 200: keep-alives
//! TEARDOWN  → 200, RtspEvent::Teardown, and the connection closes
//! ```
//!
//! While the driver decides on an ANNOUNCE or a RECORD the session reads no further
//! input, so nothing the encoder pipelines behind it is taken before the answer. Every
//! bad request is answered with its status and a reason phrase that says what was
//! wrong (ffmpeg and GStreamer print the status line), and the ones that leave the
//! connection unusable (a request that does not parse, a refused publish) close it.
//!
//! What this session does not do: play (DESCRIBE/PLAY are answered 405: players take
//! the stream over RTMP or HTTP-FLV), multicast, RTSP 2.0, authentication headers (the
//! token is in the URL, as for RTMP).

use crate::sdp::{announced_tracks, AnnouncedTrack};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use rtsp_types::headers::{self, Transport, Transports};
use rtsp_types::{Message, Method, Request, StatusCode, Version};
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Bytes a request may take, headers and body (an ANNOUNCE's SDP) together: 64 KiB.
/// ffmpeg's ANNOUNCE for H.264 and AAC is about 700 bytes, a camera's with a long
/// `sprop-parameter-sets` a few KB; anything near this is not an encoder.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// Capacity of each block the connection's input is read into: 16 KiB, as an RTMP
/// publisher's (`longhaul_rtmp::server::PUBLISH_READ_BLOCK`, measured there). An
/// interleaved packet is a slice of its block, not a copy.
pub const READ_BLOCK: usize = 16 * 1024;

/// Least room [`RtspSession::read_buffer`] leaves for a read: 2 KiB, more than an RTP
/// packet of a 1,500-byte path (ffmpeg's are 1,472 bytes at most over TCP too).
const MIN_READ_ROOM: usize = 2 * 1024;

/// The methods this server takes, for OPTIONS.
const PUBLIC: &str = "OPTIONS, ANNOUNCE, SETUP, RECORD, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// The node's UDP ports for RTP and RTCP, shared by every session (datagrams are told
/// apart by their source address, as MediaMTX does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpPorts {
    pub rtp: u16,
    pub rtcp: u16,
}

/// What a session needs from its node.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The id in the `Session` header; the driver makes it unguessable.
    pub session_id: String,
    /// ANNOUNCE, SETUP and RECORD must be done within this time of connecting.
    pub setup_timeout: Duration,
    /// A recording session that receives nothing (no request, no packet, no datagram the
    /// driver reports) for this long is timed out; also the `timeout` the `Session`
    /// header announces, after which a UDP publisher must have sent a keep-alive.
    pub idle_timeout: Duration,
    /// Where UDP transport is offered; `None`: TCP interleaved only (461 for UDP).
    pub udp: Option<UdpPorts>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            session_id: "0".into(),
            setup_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            udp: None,
        }
    }
}

/// How one track's packets arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackTransport {
    /// In this connection, RTP on `rtp_channel` and RTCP on `rtcp_channel`.
    Interleaved { rtp_channel: u8, rtcp_channel: u8 },
    /// Datagrams from the client's address, these ports, to the node's [`UdpPorts`].
    Udp { client_rtp: u16, client_rtcp: u16 },
}

/// What the session tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtspEvent {
    /// An ANNOUNCE: the URL it was sent to and the tracks of its SDP. Answer with
    /// [`RtspSession::accept_announce`] or [`RtspSession::refuse`].
    Announce {
        url: String,
        tracks: Vec<AnnouncedTrack>,
    },
    /// A track was set up over UDP: the driver routes the client's datagrams from these
    /// ports to this session's track (`track` indexes the announced tracks).
    UdpTrack {
        track: usize,
        client_rtp: u16,
        client_rtcp: u16,
    },
    /// RECORD: answer with [`RtspSession::accept_record`] or [`RtspSession::refuse`].
    Record,
    /// An interleaved RTP or RTCP packet of a set-up track, once recording.
    Packet {
        track: usize,
        rtcp: bool,
        data: Bytes,
    },
    /// TEARDOWN: the publish ends; the connection closes once the answer is written.
    Teardown,
}

/// Why a session ended.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// A request that does not parse (answered 400 before closing).
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// A request the session answered, for the driver's metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The method (upper case; `OTHER` for one we do not know, `UNPARSED` for bytes
    /// that were no request).
    pub method: &'static str,
    pub status: u16,
    /// The status line's reason: for an error, what was wrong.
    pub reason: String,
}

/// Counts of what the session took and what it let go, for the driver's metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// Interleaved packets on a channel no track was set up on, or before RECORD was
    /// accepted: read and dropped.
    pub packets_dropped: u64,
}

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connected; no ANNOUNCE accepted yet.
    Start,
    /// The driver decides on an ANNOUNCE with this CSeq.
    Announcing {
        cseq: u32,
    },
    /// ANNOUNCE accepted: SETUPs, then RECORD.
    Announced,
    /// The driver decides on a RECORD with this CSeq.
    RecordAsked {
        cseq: u32,
    },
    Recording,
    /// The last answer is queued: write it and close.
    Closing,
}

/// One set-up track.
#[derive(Debug, Clone, Copy)]
struct SetUp {
    track: usize,
    transport: TrackTransport,
}

/// The server side of one RTSP publishing connection.
pub struct RtspSession {
    config: SessionConfig,
    connected: Instant,
    last_input: Instant,
    phase: Phase,
    input: BytesMut,
    output: BytesMut,
    tracks: Vec<AnnouncedTrack>,
    set_up: Vec<SetUp>,
    /// The ANNOUNCE's URL, against which SETUP's relative controls are read.
    announce_url: String,
    /// A session id was handed out (first SETUP): later requests must carry it.
    session_issued: bool,
    counts: SessionCounts,
    /// A decision was made while read bytes waited behind it.
    decided_with_input: bool,
    /// `counts.packets_dropped` at the last [`RtspSession::take_dropped_packets`].
    dropped_reported: u64,
    /// The method of the request being answered, for [`RtspSession::take_answers`].
    answering: &'static str,
    answers: Vec<Answer>,
}

impl RtspSession {
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        Self {
            config,
            connected: now,
            last_input: now,
            phase: Phase::Start,
            input: BytesMut::new(),
            output: BytesMut::new(),
            tracks: Vec::new(),
            set_up: Vec::new(),
            announce_url: String::new(),
            session_issued: false,
            counts: SessionCounts::default(),
            dropped_reported: 0,
            decided_with_input: false,
            answering: "UNPARSED",
            answers: Vec::new(),
        }
    }

    /// Where the driver reads the peer's bytes: append only, then call
    /// [`RtspSession::handle_read`] with the count.
    pub fn read_buffer(&mut self) -> &mut BytesMut {
        let held = self.input.len();
        if self.input.capacity() - held < MIN_READ_ROOM {
            self.input
                .reserve(READ_BLOCK.saturating_sub(held).max(MIN_READ_ROOM));
        }
        &mut self.input
    }

    /// Handles `input` as if it had been read (tests and fuzzing).
    pub fn handle_input(
        &mut self,
        now: Instant,
        input: &[u8],
    ) -> Result<Vec<RtspEvent>, SessionError> {
        self.input.extend_from_slice(input);
        self.handle_read(now, input.len())
    }

    /// Handles the `received` bytes the driver appended to [`RtspSession::read_buffer`]
    /// (0: go on with what the session holds, after a decision).
    pub fn handle_read(
        &mut self,
        now: Instant,
        received: usize,
    ) -> Result<Vec<RtspEvent>, SessionError> {
        if received > 0 {
            self.last_input = now;
        }
        self.decided_with_input = false;
        let mut events = Vec::new();
        while !self.waiting_for_decision() && self.phase != Phase::Closing {
            if !self.next_message(&mut events)? {
                break;
            }
        }
        Ok(events)
    }

    /// Whether input is held while the driver decides on an ANNOUNCE or a RECORD.
    pub fn waiting_for_decision(&self) -> bool {
        matches!(
            self.phase,
            Phase::Announcing { .. } | Phase::RecordAsked { .. }
        )
    }

    /// Whether bytes read while a decision was pending wait to be handled: after
    /// accepting, call [`RtspSession::handle_read`] with 0 before reading again. (Bytes
    /// of a message not yet whole do not count: they wait for the next read.)
    pub fn has_unhandled_input(&self) -> bool {
        self.decided_with_input && !self.waiting_for_decision()
    }

    /// Whether the session is recording (packets flow).
    pub fn is_recording(&self) -> bool {
        self.phase == Phase::Recording
    }

    /// The announced tracks (empty before an ANNOUNCE).
    pub fn tracks(&self) -> &[AnnouncedTrack] {
        &self.tracks
    }

    pub fn counts(&self) -> SessionCounts {
        self.counts
    }

    /// Interleaved packets dropped since the last call (see [`SessionCounts`]).
    pub fn take_dropped_packets(&mut self) -> u64 {
        let new = self.counts.packets_dropped - self.dropped_reported;
        self.dropped_reported = self.counts.packets_dropped;
        new
    }

    /// The requests answered since the last call: method (upper case, `OTHER` for one
    /// we do not know, `UNPARSED` for bytes that were no request) and status code.
    pub fn take_answers(&mut self) -> Vec<Answer> {
        std::mem::take(&mut self.answers)
    }

    /// Bytes the session holds: unhandled input and unwritten output.
    pub fn buffered_bytes(&self) -> usize {
        self.input.len() + self.output.len()
    }

    /// What to write to the peer; the driver writes it all, then checks
    /// [`RtspSession::should_close`].
    pub fn take_output(&mut self) -> Option<Bytes> {
        (!self.output.is_empty()).then(|| self.output.split().freeze())
    }

    /// The last answer is queued: close once it is written.
    pub fn should_close(&self) -> bool {
        self.phase == Phase::Closing
    }

    /// The driver saw activity for this session elsewhere (a UDP datagram of its tracks).
    pub fn note_activity(&mut self, now: Instant) {
        self.last_input = now;
    }

    /// Accepts the ANNOUNCE being decided: 200.
    pub fn accept_announce(&mut self) {
        if let Phase::Announcing { cseq } = self.phase {
            self.answering = "ANNOUNCE";
            self.respond(cseq, StatusCode::Ok, None, &[], b"");
            self.phase = Phase::Announced;
            self.decided_with_input = !self.input.is_empty();
        }
    }

    /// Accepts the RECORD being decided: 200, and packets flow from now on.
    pub fn accept_record(&mut self) {
        if let Phase::RecordAsked { cseq } = self.phase {
            self.answering = "RECORD";
            let session = self.session_header();
            self.respond(cseq, StatusCode::Ok, None, &[("Session", &session)], b"");
            self.phase = Phase::Recording;
            self.decided_with_input = !self.input.is_empty();
        }
    }

    /// Refuses the ANNOUNCE or RECORD being decided with `status` and `reason` (in the
    /// status line and as the body), then closes.
    pub fn refuse(&mut self, status: StatusCode, reason: &str) {
        if let Phase::Announcing { cseq } | Phase::RecordAsked { cseq } = self.phase {
            self.answering = if matches!(self.phase, Phase::Announcing { .. }) {
                "ANNOUNCE"
            } else {
                "RECORD"
            };
            self.respond_error(cseq, status, reason);
            self.phase = Phase::Closing;
        }
    }

    /// Ends a recording session the node cut (revoked, taken over): nothing more is read
    /// and the connection closes. RTSP 1.0 has no message a server sends unasked, so the
    /// encoder learns it from the closed connection; the driver logs the reason.
    pub fn close(&mut self) {
        self.phase = Phase::Closing;
    }

    /// When [`RtspSession::handle_timeout`] is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closing => None,
            Phase::Recording => Some(self.last_input + self.config.idle_timeout),
            // The driver's decision has limits of its own.
            Phase::Announcing { .. } | Phase::RecordAsked { .. } => None,
            Phase::Start | Phase::Announced => Some(self.connected + self.config.setup_timeout),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        match self.poll_timeout() {
            Some(due) if now >= due => {
                let what = if self.phase == Phase::Recording {
                    "nothing received within the idle time"
                } else {
                    "no ANNOUNCE, SETUP and RECORD within the setup time"
                };
                self.phase = Phase::Closing;
                Err(SessionError::Timeout(what))
            }
            _ => Ok(()),
        }
    }

    /// Handles one request or interleaved packet from the input; false when more bytes
    /// are needed.
    fn next_message(&mut self, events: &mut Vec<RtspEvent>) -> Result<bool, SessionError> {
        if self.input.is_empty() {
            return Ok(false);
        }
        if self.input[0] == b'$' {
            return Ok(self.interleaved(events));
        }
        let (request, consumed) = match Message::<Vec<u8>>::parse(&self.input[..]) {
            Ok((Message::Request(request), consumed)) => (request, consumed),
            Ok((Message::Response(_), consumed)) => {
                // We send no requests, so no response is ours; drop it and read on.
                self.input.advance(consumed);
                return Ok(true);
            }
            // The parser reads a `$` frame as data; those are handled above.
            Ok((Message::Data(_), _)) => {
                return Err(self.bad_request("an interleaved frame where a request was due".into()))
            }
            Err(rtsp_types::ParseError::Incomplete(_)) => {
                if self.input.len() > MAX_REQUEST_BYTES {
                    return Err(
                        self.bad_request(format!("a request of over {MAX_REQUEST_BYTES} bytes"))
                    );
                }
                return Ok(false);
            }
            Err(rtsp_types::ParseError::Error) => {
                let start =
                    String::from_utf8_lossy(&self.input[..self.input.len().min(40)]).into_owned();
                return Err(
                    self.bad_request(format!("a request that does not parse, starting {start:?}"))
                );
            }
        };
        if consumed > MAX_REQUEST_BYTES {
            return Err(self.bad_request(format!(
                "a request of {consumed} bytes, over {MAX_REQUEST_BYTES}"
            )));
        }
        self.input.advance(consumed);
        self.answering = method_label(request.method());
        self.request(request, events);
        self.answering = "UNPARSED";
        Ok(true)
    }

    /// `$`, channel, 16-bit length, packet (RFC 2326 10.12).
    fn interleaved(&mut self, events: &mut Vec<RtspEvent>) -> bool {
        if self.input.len() < 4 {
            return false;
        }
        let channel = self.input[1];
        let len = usize::from(u16::from_be_bytes([self.input[2], self.input[3]]));
        if self.input.len() < 4 + len {
            // Room for the whole packet in this block, so its bytes stay one slice.
            self.input.reserve(4 + len);
            return false;
        }
        let mut frame = self.input.split_to(4 + len);
        frame.advance(4);
        let data = frame.freeze();
        let found = self.set_up.iter().find_map(|s| match s.transport {
            TrackTransport::Interleaved { rtp_channel, .. } if rtp_channel == channel => {
                Some((s.track, false))
            }
            TrackTransport::Interleaved { rtcp_channel, .. } if rtcp_channel == channel => {
                Some((s.track, true))
            }
            _ => None,
        });
        match found {
            Some((track, rtcp)) if self.phase == Phase::Recording => {
                events.push(RtspEvent::Packet { track, rtcp, data })
            }
            _ => self.counts.packets_dropped += 1,
        }
        true
    }

    fn request(&mut self, request: Request<Vec<u8>>, events: &mut Vec<RtspEvent>) {
        let Some(cseq) = request
            .header(&headers::CSEQ)
            .and_then(|v| v.as_str().trim().parse::<u32>().ok())
        else {
            // No CSeq to answer with: RFC 2326 12.17 makes it mandatory. Answered with
            // CSeq 0, which clients ignore, and the connection goes on.
            self.respond_error(0, StatusCode::BadRequest, "CSeq missing or not a number");
            return;
        };
        if request.version() != Version::V1_0 {
            self.respond_error(
                cseq,
                StatusCode::RTSPVersionNotSupported,
                "only RTSP/1.0 is spoken here",
            );
            return;
        }
        let uri = request
            .request_uri()
            .map(|u| u.as_str().to_owned())
            .unwrap_or_default();
        match request.method() {
            Method::Options => {
                self.respond(cseq, StatusCode::Ok, None, &[("Public", PUBLIC)], b"");
            }
            Method::Announce => self.announce(cseq, uri, request.body(), events),
            Method::Setup => self.setup(cseq, &uri, &request, events),
            Method::Record => {
                if !self.session_matches(cseq, &request) {
                    return;
                }
                if self.phase != Phase::Announced || self.set_up.is_empty() {
                    self.respond_error(
                        cseq,
                        StatusCode::MethodNotValidInThisState,
                        "RECORD comes after ANNOUNCE and a SETUP of each track",
                    );
                    return;
                }
                self.phase = Phase::RecordAsked { cseq };
                events.push(RtspEvent::Record);
            }
            Method::Teardown => {
                if !self.session_matches(cseq, &request) {
                    return;
                }
                let session = self.session_header();
                self.respond(cseq, StatusCode::Ok, None, &[("Session", &session)], b"");
                self.phase = Phase::Closing;
                events.push(RtspEvent::Teardown);
            }
            Method::GetParameter | Method::SetParameter => {
                if !self.session_matches(cseq, &request) {
                    return;
                }
                let session = self.session_header();
                let extra: &[(&str, &str)] = if self.session_issued {
                    &[("Session", &session)]
                } else {
                    &[]
                };
                self.respond(cseq, StatusCode::Ok, None, extra, b"");
            }
            Method::Describe | Method::Play | Method::Pause => {
                self.respond_error(cseq, StatusCode::MethodNotAllowed,
                    "this endpoint takes publishes (ANNOUNCE, RECORD); play the stream over RTMP or HTTP-FLV");
            }
            other => {
                let name: &str = other.into();
                self.respond_error(
                    cseq,
                    StatusCode::NotImplemented,
                    &format!("{name} is not implemented"),
                );
            }
        }
    }

    fn announce(&mut self, cseq: u32, uri: String, body: &[u8], events: &mut Vec<RtspEvent>) {
        if self.phase != Phase::Start {
            self.respond_error(
                cseq,
                StatusCode::MethodNotValidInThisState,
                "this connection already announced",
            );
            return;
        }
        match announced_tracks(body) {
            Ok(tracks) => {
                self.tracks = tracks.clone();
                self.announce_url = uri.clone();
                self.phase = Phase::Announcing { cseq };
                events.push(RtspEvent::Announce { url: uri, tracks });
            }
            Err(e) => self.respond_error(cseq, StatusCode::UnsupportedMediaType, &e.to_string()),
        }
    }

    fn setup(
        &mut self,
        cseq: u32,
        uri: &str,
        request: &Request<Vec<u8>>,
        events: &mut Vec<RtspEvent>,
    ) {
        if self.phase != Phase::Announced {
            self.respond_error(
                cseq,
                StatusCode::MethodNotValidInThisState,
                "SETUP comes after an accepted ANNOUNCE and before RECORD",
            );
            return;
        }
        if self.session_issued && !self.session_matches(cseq, request) {
            return;
        }
        let Some(track) = self.track_for(uri) else {
            self.respond_error(
                cseq,
                StatusCode::NotFound,
                "the SETUP names no track of the ANNOUNCE's SDP",
            );
            return;
        };
        if self.set_up.iter().any(|s| s.track == track) {
            self.respond_error(
                cseq,
                StatusCode::MethodNotValidInThisState,
                "this track is already set up",
            );
            return;
        }
        let transports = match request.typed_header::<Transports>() {
            Ok(Some(t)) => t,
            Ok(None) => {
                self.respond_error(
                    cseq,
                    StatusCode::BadRequest,
                    "SETUP without a Transport header",
                );
                return;
            }
            Err(_) => {
                self.respond_error(
                    cseq,
                    StatusCode::BadRequest,
                    "the Transport header does not parse",
                );
                return;
            }
        };
        let Some((transport, reply)) = transports
            .iter()
            .find_map(|t| self.choose_transport(track, t))
        else {
            let why = if self.config.udp.is_some() {
                "unsupported transport: RTP/AVP/TCP interleaved or RTP/AVP over UDP unicast are taken"
            } else {
                "unsupported transport: RTP/AVP/TCP interleaved is taken here (UDP is not enabled)"
            };
            self.respond_error(cseq, StatusCode::UnsupportedTransport, why);
            return;
        };
        self.set_up.push(SetUp { track, transport });
        self.session_issued = true;
        if let TrackTransport::Udp {
            client_rtp,
            client_rtcp,
        } = transport
        {
            events.push(RtspEvent::UdpTrack {
                track,
                client_rtp,
                client_rtcp,
            });
        }
        let session = self.session_header();
        self.respond(
            cseq,
            StatusCode::Ok,
            None,
            &[("Transport", &reply), ("Session", &session)],
            b"",
        );
    }

    /// The transport taken for `track` from one the client offered, and the `Transport`
    /// header that answers it.
    fn choose_transport(
        &self,
        track: usize,
        offered: &Transport,
    ) -> Option<(TrackTransport, String)> {
        let Transport::Rtp(rtp) = offered else {
            return None;
        };
        if rtp.params.multicast || !matches!(rtp.profile, headers::RtpProfile::Avp) {
            return None;
        }
        match rtp.lower_transport {
            Some(headers::RtpLowerTransport::Tcp) => {
                let free = |c: u8| {
                    !self.set_up.iter().any(|s| matches!(s.transport,
                        TrackTransport::Interleaved { rtp_channel, rtcp_channel } if rtp_channel == c || rtcp_channel == c))
                };
                let (rtp_channel, rtcp_channel) = match rtp.params.interleaved {
                    Some((a, b)) => (a, b.unwrap_or(a.wrapping_add(1))),
                    None => {
                        let a = u8::try_from(track * 2).ok()?;
                        (a, a + 1)
                    }
                };
                if rtp_channel == rtcp_channel || !free(rtp_channel) || !free(rtcp_channel) {
                    return None;
                }
                let reply = format!("RTP/AVP/TCP;unicast;interleaved={rtp_channel}-{rtcp_channel}");
                Some((
                    TrackTransport::Interleaved {
                        rtp_channel,
                        rtcp_channel,
                    },
                    reply,
                ))
            }
            None | Some(headers::RtpLowerTransport::Udp) => {
                let ports = self.config.udp?;
                let (client_rtp, client_rtcp) = rtp.params.client_port?;
                let client_rtcp = client_rtcp.unwrap_or(client_rtp.wrapping_add(1));
                let reply = format!(
                    "RTP/AVP;unicast;client_port={client_rtp}-{client_rtcp};server_port={}-{}",
                    ports.rtp, ports.rtcp
                );
                Some((
                    TrackTransport::Udp {
                        client_rtp,
                        client_rtcp,
                    },
                    reply,
                ))
            }
            Some(_) => None,
        }
    }

    /// The announced track a SETUP URL names: its control, absolute or relative to the
    /// ANNOUNCE's URL. Relative controls are appended where each client appends them:
    /// ffmpeg after the whole URL, query included (`…/1_x_1?t=tok/streamid=0`),
    /// GStreamer to the path, before the query (`…/1_x_1/stream=0?t=tok`).
    fn track_for(&self, uri: &str) -> Option<usize> {
        let uri = uri.trim_end_matches('/');
        let path = uri
            .split('?')
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        let base = self.announce_url.trim_end_matches('/');
        self.tracks.iter().position(|t| {
            let control = t.control.trim_end_matches('/');
            if control == "*" {
                return uri == base || self.tracks.len() == 1;
            }
            if control.contains("://") {
                return uri == control;
            }
            let relative = format!("/{control}");
            uri == control || uri.ends_with(&relative) || path.ends_with(&relative)
        })
    }

    /// Whether the request's `Session` is ours; answers 454 if not. Before a session id
    /// was handed out, requests carry none.
    fn session_matches(&mut self, cseq: u32, request: &Request<Vec<u8>>) -> bool {
        if !self.session_issued {
            return true;
        }
        let given = request.header(&headers::SESSION).map(|v| {
            v.as_str()
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned()
        });
        match given {
            Some(id) if id == self.config.session_id => true,
            Some(_) => {
                self.respond_error(
                    cseq,
                    StatusCode::SessionNotFound,
                    "no such session on this connection",
                );
                false
            }
            None => {
                self.respond_error(
                    cseq,
                    StatusCode::SessionNotFound,
                    "the Session header is missing",
                );
                false
            }
        }
    }

    fn session_header(&self) -> String {
        format!(
            "{};timeout={}",
            self.config.session_id,
            self.config.idle_timeout.as_secs()
        )
    }

    fn bad_request(&mut self, what: String) -> SessionError {
        self.respond_error(0, StatusCode::BadRequest, &what);
        self.phase = Phase::Closing;
        self.input.clear();
        SessionError::BadRequest(what)
    }

    /// An error answer: the reason in the status line (one line, printable) and as a
    /// `text/plain` body.
    fn respond_error(&mut self, cseq: u32, status: StatusCode, reason: &str) {
        let phrase: String = reason
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .take(200)
            .collect();
        let body = format!("{phrase}\n");
        self.respond(
            cseq,
            status,
            Some(&phrase),
            &[("Content-Type", "text/plain")],
            body.as_bytes(),
        );
    }

    fn respond(
        &mut self,
        cseq: u32,
        status: StatusCode,
        phrase: Option<&str>,
        extra: &[(&str, &str)],
        body: &[u8],
    ) {
        let code = u16::from(status);
        // RFC 2326 7.1.1 spells it "OK"; rtsp-types' Display says "Ok".
        let phrase = match (phrase, status) {
            (Some(p), _) => p.to_owned(),
            (None, StatusCode::Ok) => "OK".to_owned(),
            (None, other) => other.to_string(),
        };
        self.answers.push(Answer {
            method: self.answering,
            status: code,
            reason: phrase.clone(),
        });
        let mut head = String::with_capacity(128);
        let _ = write!(
            head,
            "RTSP/1.0 {code} {phrase}\r\nCSeq: {cseq}\r\nServer: longhaul\r\n"
        );
        for (name, value) in extra {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        if !body.is_empty() {
            let _ = write!(head, "Content-Length: {}\r\n", body.len());
        }
        head.push_str("\r\n");
        self.output.put_slice(head.as_bytes());
        self.output.put_slice(body);
    }
}

/// A bounded `method` label: the methods of RFC 2326, else `OTHER`.
fn method_label(method: &Method) -> &'static str {
    match method {
        Method::Describe => "DESCRIBE",
        Method::GetParameter => "GET_PARAMETER",
        Method::Options => "OPTIONS",
        Method::Pause => "PAUSE",
        Method::Play => "PLAY",
        Method::Redirect => "REDIRECT",
        Method::Setup => "SETUP",
        Method::SetParameter => "SET_PARAMETER",
        Method::Announce => "ANNOUNCE",
        Method::Record => "RECORD",
        Method::Teardown => "TEARDOWN",
        _ => "OTHER",
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
