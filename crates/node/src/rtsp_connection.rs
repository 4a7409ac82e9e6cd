//! The loop every node runs for one RTSP publishing connection, around its
//! `longhaul_rtsp::RtspSession` and the media of the publish (`RtpIngest`).
//!
//! The RTSP counterpart of [`crate::connection`]: the session decides everything RTSP
//! (requests, transports, timeouts); the loop moves bytes and time, turns the RTP of a
//! recording session into the RTMP messages an RTMP publish carries, and hands the node
//! two things only, through an [`RtspConnection`]: the publish to decide (an ANNOUNCE's
//! URL, split into what an RTMP encoder would have sent) and its media. So an origin
//! puts an RTSP publish in its hub and an edge relays it to an origin exactly as they do
//! an RTMP one.
//!
//! - An ANNOUNCE whose tracks no depacketiser takes is answered 415 before the node is
//!   asked; a URL without a path, 400.
//! - The node's refusal is answered with its RTSP status (401 for a token, 404 for a
//!   name, 503 when the node cannot take it now) and its words as the reason phrase, and
//!   the connection closes.
//! - A node that ends the connection mid-stream (a revocation, a takeover, a lost tunnel)
//!   closes it: RTSP 1.0 has no message a server sends unasked; the node logs why.
//!
//! Metrics: `rtsp_requests_total{method,status}`, `rtsp_packets_total{outcome}` (from
//! the media's counts when the publish ends, and the session's unrouted packets as they
//! come), and what [`crate::connection::End`] counts for every connection.

use crate::accept::{Transport, UnauthorisedCharge};
use crate::config::IngestSection;
use crate::connection::{End, NodeEnd};
use crate::metrics::{rtsp_outcome, ConnectionSeries};
use crate::rtsp_udp::{Datagram, RtspUdp, UdpRoutes};
use longhaul_endpoint::{redact_tokens, RtspPublishParts};
use longhaul_rtmp::server::SessionError as RtmpSessionError;
use longhaul_rtmp::RtmpMessage;
use longhaul_rtsp::{
    RtpIngest, RtspEvent, RtspSession, SessionConfig, SessionError, StatusCode, UdpPorts,
};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A publish the node refused: the RTSP status and the words the encoder gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub description: String,
}

impl Refusal {
    /// The status of a refusal counted under `reason` (the `reason` label of
    /// `publishes_total`, the same at origins and edges): 401 for a token, 404 for a
    /// name or an entry, 403 for an address refused for failing too often, 503 for the
    /// rest (draining, an origin out of reach, the authority down).
    pub fn for_reason(reason: &str, description: String) -> Refusal {
        let status = match reason {
            "missing_token" | "wrong_token" | "unverified_token" | "revoked"
            | "callback_refused" => StatusCode::Unauthorized,
            "unknown_entry" | "bad_stream_name" | "unknown_app" | "bad_request" => {
                StatusCode::NotFound
            }
            "too_many_failures" => StatusCode::Forbidden,
            _ => StatusCode::ServiceUnavailable,
        };
        Refusal {
            status,
            description,
        }
    }
}

/// What a node does with one RTSP publishing connection.
pub trait RtspConnection: Send {
    /// The node's own reasons to end a connection.
    type End: NodeEnd + Send;
    /// Something the node waits on beside the socket.
    type Wake: Send;

    /// Decides the publish an ANNOUNCE asks for: `parts` is its URL as an RTMP encoder
    /// would have sent it (`app`, `tcUrl`, publish name with the token). `Ok` with the
    /// stream's name once the node takes the media.
    fn on_announce(
        &mut self,
        parts: RtspPublishParts,
    ) -> impl Future<Output = Result<String, Refusal>> + Send;

    /// One message of the accepted publish.
    fn on_media(&mut self, message: RtmpMessage, now: Instant);

    /// Resolves when the node has something for this connection; pending when nothing
    /// can come. Cancel-safe.
    fn wake(&mut self) -> impl Future<Output = Self::Wake> + Send;

    /// Handles what [`RtspConnection::wake`] gave; an error ends the connection.
    fn on_wake(&mut self, wake: Self::Wake) -> Result<(), End<Self::End>>;

    /// Whether to read the socket now (an edge pauses while its relay queue is full).
    fn may_read(&mut self, _now: Instant) -> bool {
        true
    }

    /// The node's own deadline, if any.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// The node's deadline came (or another one: check).
    fn on_timer(&mut self, _now: Instant) -> Result<(), End<Self::End>> {
        Ok(())
    }

    /// The encoder ended the publish (TEARDOWN).
    fn on_teardown(&mut self);
}

/// What the loop needs beside the connection.
pub struct RtspSettings {
    pub peer: SocketAddr,
    pub transport: Transport,
    /// ANNOUNCE, SETUP and RECORD within `ingest.handshake_timeout_secs`; a recording
    /// session silent for `ingest.media_timeout_secs` ends.
    pub setup_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub series: ConnectionSeries,
    pub unauthorised: UnauthorisedCharge,
    /// The node's RTP/RTCP ports, when UDP transport is on (`[rtsp] udp_listen`).
    pub udp: Option<Arc<RtspUdp>>,
}

impl RtspSettings {
    pub fn new(
        ingest: &IngestSection,
        series: &ConnectionSeries,
        transport: Transport,
        peer: SocketAddr,
        unauthorised: UnauthorisedCharge,
        udp: Option<Arc<RtspUdp>>,
    ) -> Self {
        Self {
            udp,
            peer,
            transport,
            setup_timeout: Duration::from_secs_f64(ingest.handshake_timeout_secs.max(1.0)),
            idle_timeout: Duration::from_secs_f64(ingest.media_timeout_secs.max(1.0)),
            write_timeout: ingest.write_timeout(),
            series: series.clone(),
            unauthorised,
        }
    }
}

/// How long after a TEARDOWN over UDP the last datagrams are waited for, at most:
/// 500 ms, far past the time between the last packet and the TEARDOWN of an encoder on
/// any path (one-way delay differences between two sockets of one host).
pub const UDP_TEARDOWN_LINGER: Duration = Duration::from_millis(500);

/// ...and the quiet that ends the wait sooner: 50 ms without a datagram. A stream
/// sends a packet every few milliseconds while it lives.
pub const UDP_TEARDOWN_QUIET: Duration = Duration::from_millis(50);

/// The loop's own state beside the node's.
struct Driver {
    session: RtspSession,
    /// The depacketisers of the ANNOUNCE's tracks; the media once accepted.
    media: Option<RtpIngest>,
    publishing: bool,
    /// RECORD was accepted: media is taken (until the publish ends).
    recording: bool,
    /// Whether the last turn of the loop read the socket.
    was_reading: bool,
    messages: Vec<RtmpMessage>,
    peer: SocketAddr,
    transport: Transport,
    write_timeout: Duration,
    series: ConnectionSeries,
    /// Given back (dropped) once a publish is accepted.
    unauthorised: Option<UnauthorisedCharge>,
    /// This connection's UDP routes and the datagrams they bring, with UDP on.
    udp: Option<(UdpRoutes, mpsc::Receiver<Datagram>)>,
}

/// Runs the connection on `io` until it ends; the stream's name, if it published, and
/// how it ended.
pub async fn drive<S, C>(
    mut io: S,
    conn: &mut C,
    settings: RtspSettings,
    shutdown: &CancellationToken,
) -> (Option<String>, End<C::End>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    C: RtspConnection,
{
    let udp = settings.udp.as_ref().map(|u| u.connection());
    let config = SessionConfig {
        session_id: session_id(),
        setup_timeout: settings.setup_timeout,
        idle_timeout: settings.idle_timeout,
        udp: udp.as_ref().map(|(routes, _)| {
            let (rtp, rtcp) = routes.ports();
            UdpPorts { rtp, rtcp }
        }),
    };
    let mut d = Driver {
        session: RtspSession::new(config, Instant::now()),
        media: None,
        publishing: false,
        recording: false,
        was_reading: true,
        messages: Vec::new(),
        peer: settings.peer,
        transport: settings.transport,
        write_timeout: settings.write_timeout,
        series: settings.series,
        unauthorised: Some(settings.unauthorised),
        udp,
    };
    let (end, stream) = d.run(&mut io, conn, shutdown).await;
    if let Some(media) = &d.media {
        d.count_media(media);
    }
    (stream, end)
}

impl Driver {
    async fn run<S, C>(
        &mut self,
        io: &mut S,
        conn: &mut C,
        shutdown: &CancellationToken,
    ) -> (End<C::End>, Option<String>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
        C: RtspConnection,
    {
        let mut stream = None;
        let label = [self.transport.as_str()];
        let bytes_in = self.series.bytes_received.with_label_values(&label);
        let bytes_out = self.series.bytes_sent.with_label_values(&label);
        let write_timeout = self.write_timeout;
        loop {
            if let Some(out) = self.session.take_output() {
                match tokio::time::timeout(write_timeout, io.write_all(&out)).await {
                    Ok(Ok(())) => bytes_out.inc_by(out.len() as u64),
                    Ok(Err(e)) => return (End::Io(e), stream),
                    Err(_) => return (End::WriteStalled, stream),
                }
            }
            self.count_answers();
            if self.session.should_close() {
                let _ = tokio::time::timeout(write_timeout, io.shutdown()).await;
                let end = if self.publishing {
                    End::PeerClosed
                } else {
                    End::Rejected
                };
                return (end, stream);
            }
            let now = Instant::now();
            let reading = !self.session.waiting_for_decision() && conn.may_read(now);
            if reading && !self.was_reading {
                // The node paused reading (an edge's full relay queue): the encoder was
                // not silent, so its idle time starts again now.
                self.session.note_activity(now);
            }
            self.was_reading = reading;
            let deadline = [
                self.session.poll_timeout().filter(|_| reading),
                self.media.as_ref().and_then(RtpIngest::poll_timeout),
                conn.deadline(),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let unhandled = self.session.has_unhandled_input();
            let result: Result<Vec<RtspEvent>, End<C::End>> = tokio::select! {
                read = io.read_buf(self.session.read_buffer()), if reading && !unhandled => match read {
                    Ok(0) => Err(End::PeerClosed),
                    Ok(n) => {
                        bytes_in.inc_by(n as u64);
                        self.session.handle_read(Instant::now(), n).map_err(session_end)
                    }
                    Err(e) => Err(End::Io(e)),
                },
                _ = std::future::ready(()), if reading && unhandled => {
                    self.session.handle_read(Instant::now(), 0).map_err(session_end)
                }
                _ = sleep => {
                    let now = Instant::now();
                    if let Some(media) = &mut self.media {
                        media.poll(now, &mut self.messages);
                        for m in self.messages.drain(..) {
                            conn.on_media(m, now);
                        }
                    }
                    match conn.on_timer(now) {
                        Ok(()) if reading => self.session.handle_timeout(now).map(|()| Vec::new()).map_err(session_end),
                        Ok(()) => Ok(Vec::new()),
                        Err(end) => Err(end),
                    }
                }
                Some(datagram) = next_datagram(&mut self.udp) => {
                    self.on_datagram(conn, datagram);
                    Ok(Vec::new())
                }
                wake = conn.wake() => conn.on_wake(wake).map(|()| Vec::new()),
                _ = shutdown.cancelled() => Err(End::Shutdown),
            };
            let events = match result {
                Ok(events) => events,
                Err(end) => {
                    if matches!(end, End::PeerClosed) {
                        // An encoder that hangs up without TEARDOWN: what it sent is
                        // still the stream's.
                        self.flush_media(conn);
                    }
                    // A last answer (a 400 for what did not parse) before closing.
                    if let Some(out) = self.session.take_output() {
                        let _ = tokio::time::timeout(write_timeout, io.write_all(&out)).await;
                    }
                    self.count_answers();
                    return (end, stream);
                }
            };
            for event in events {
                if let Some(name) = self.on_event(conn, event).await {
                    stream = Some(name);
                }
            }
            let dropped = self.session.take_dropped_packets();
            if dropped > 0 {
                self.series
                    .rtsp_packets
                    .with_label_values(&[rtsp_outcome::UNROUTED])
                    .inc_by(dropped);
            }
            if let Err(end) = self.charge() {
                return (end, stream);
            }
        }
    }

    /// Acts on one session event; the stream's name when a publish was accepted.
    async fn on_event<C: RtspConnection>(
        &mut self,
        conn: &mut C,
        event: RtspEvent,
    ) -> Option<String> {
        let peer = self.peer;
        match event {
            RtspEvent::Announce { url, tracks } => {
                let media = match RtpIngest::new(&tracks) {
                    Ok(media) => media,
                    Err((index, e)) => {
                        let t = &tracks[index];
                        let why = format!("track {index} ({} {}): {e}", t.media, t.encoding);
                        tracing::warn!(client = %peer, url = %redact_tokens(&url),
                            "RTSP publish refused: {why}");
                        self.session.refuse(StatusCode::UnsupportedMediaType, &why);
                        return None;
                    }
                };
                let Some(parts) = RtspPublishParts::from_url(&url) else {
                    self.session.refuse(StatusCode::BadRequest,
                        "the ANNOUNCE URL has no path: rtsp://HOST:PORT/kLive/{entryId}_{n}?t={token}");
                    return None;
                };
                match conn.on_announce(parts).await {
                    Ok(stream) => {
                        tracing::info!(client = %peer, %stream, codecs = ?media.codecs(),
                            transport = self.transport.as_str(), "RTSP publish accepted");
                        self.media = Some(media);
                        self.publishing = true;
                        self.session.accept_announce();
                        Some(stream)
                    }
                    Err(refusal) => {
                        self.session.refuse(refusal.status, &refusal.description);
                        None
                    }
                }
            }
            RtspEvent::Record => {
                if self.publishing {
                    self.session.accept_record();
                    self.recording = true;
                } else {
                    self.session.refuse(
                        StatusCode::MethodNotValidInThisState,
                        "no accepted ANNOUNCE",
                    );
                }
                None
            }
            RtspEvent::Packet { track, rtcp, data } => {
                let now = Instant::now();
                if let Some(media) = &mut self.media {
                    media.push(now, track, rtcp, data, &mut self.messages);
                    for m in self.messages.drain(..) {
                        conn.on_media(m, now);
                    }
                }
                None
            }
            RtspEvent::UdpTrack {
                track,
                client_rtp,
                client_rtcp,
            } => {
                if let Some((routes, _)) = &mut self.udp {
                    routes.add(peer.ip(), track, client_rtp, client_rtcp);
                }
                None
            }
            RtspEvent::Teardown => {
                self.take_last_datagrams(conn).await;
                self.flush_media(conn);
                conn.on_teardown();
                None
            }
        }
    }

    /// Over UDP, an encoder's TEARDOWN can overtake its last datagrams (ffmpeg sends it
    /// right after its last packet, on another socket): they are taken until
    /// [`UDP_TEARDOWN_QUIET`] passes without one, for at most [`UDP_TEARDOWN_LINGER`].
    async fn take_last_datagrams<C: RtspConnection>(&mut self, conn: &mut C) {
        if self.udp.is_none() || !self.recording {
            return;
        }
        let until = Instant::now() + UDP_TEARDOWN_LINGER;
        while Instant::now() < until {
            let next = tokio::time::timeout(UDP_TEARDOWN_QUIET, next_datagram(&mut self.udp));
            match next.await {
                Ok(Some(datagram)) => self.on_datagram(conn, datagram),
                _ => break,
            }
        }
    }

    /// The publish ends: what the media still holds (reordering, a last picture without
    /// its marker) goes to the node.
    fn flush_media<C: RtspConnection>(&mut self, conn: &mut C) {
        if let Some(media) = &mut self.media {
            let now = Instant::now();
            media.flush(now, &mut self.messages);
            for m in self.messages.drain(..) {
                conn.on_media(m, now);
            }
        }
    }

    /// A UDP datagram of one of this connection's tracks: media once recording.
    fn on_datagram<C: RtspConnection>(&mut self, conn: &mut C, datagram: Datagram) {
        let now = Instant::now();
        self.session.note_activity(now);
        match &mut self.media {
            Some(media) if self.recording => {
                media.push(
                    now,
                    datagram.track,
                    datagram.rtcp,
                    datagram.data,
                    &mut self.messages,
                );
                for m in self.messages.drain(..) {
                    conn.on_media(m, now);
                }
            }
            _ => self
                .series
                .rtsp_packets
                .with_label_values(&[rtsp_outcome::UNROUTED])
                .inc(),
        }
    }

    /// Until a publish is accepted, what the session holds counts against the node's
    /// budget for unauthorised connections.
    fn charge<N>(&mut self) -> Result<(), End<N>> {
        let Some(pre) = &mut self.unauthorised else {
            return Ok(());
        };
        if self.publishing {
            self.unauthorised = None;
            return Ok(());
        }
        if let Err(e) = pre.charge.set(self.session.buffered_bytes()) {
            pre.refused.inc();
            tracing::warn!(client = %self.peer, used_bytes = e.used, limit_bytes = e.limit,
                "RTSP connection closed before it was authorised: {e}");
            return Err(End::UnauthorisedMemory);
        }
        Ok(())
    }

    /// Counts the requests answered, and logs the refused ones with the client and why.
    fn count_answers(&mut self) {
        for answer in self.session.take_answers() {
            let status = answer.status.to_string();
            self.series
                .rtsp_requests
                .with_label_values(&[answer.method, &status])
                .inc();
            if answer.status >= 400 {
                tracing::warn!(client = %self.peer, transport = self.transport.as_str(),
                    method = answer.method, status = answer.status,
                    "RTSP request refused: {}", answer.reason);
            }
        }
    }

    /// The media's packet counts into `rtsp_packets_total`, and a log line per track.
    fn count_media(&self, media: &RtpIngest) {
        let packets = &self.series.rtsp_packets;
        let mut tracks = Vec::new();
        for (track, codec) in media.codecs().into_iter().enumerate() {
            let Some(c) = media.counts(track) else {
                continue;
            };
            packets
                .with_label_values(&[rtsp_outcome::RECEIVED])
                .inc_by(c.packets);
            packets
                .with_label_values(&[rtsp_outcome::LOST])
                .inc_by(c.lost);
            packets
                .with_label_values(&[rtsp_outcome::LATE])
                .inc_by(c.late);
            packets
                .with_label_values(&[rtsp_outcome::MALFORMED])
                .inc_by(c.malformed);
            tracks.push(format!(
                "{codec}: {} frames ({} dropped) from {} packets, {} lost, {} late, {} malformed, jitter {:.1} ms",
                c.frames, c.dropped_frames, c.packets, c.lost, c.late, c.malformed, c.jitter_ms
            ));
        }
        tracing::info!(client = %self.peer, tracks = %tracks.join("; "), "RTSP media ended");
    }
}

/// The next datagram of the connection's UDP routes; pending without UDP.
async fn next_datagram(
    udp: &mut Option<(UdpRoutes, mpsc::Receiver<Datagram>)>,
) -> Option<Datagram> {
    match udp {
        Some((_, received)) => received.recv().await,
        None => std::future::pending().await,
    }
}

/// An RTSP session's error as the connection's end (the kinds `session_errors_total`
/// counts are RTMP's names: `timeout`, `protocol`).
fn session_end<N>(e: SessionError) -> End<N> {
    End::Session(match e {
        SessionError::Timeout(what) => RtmpSessionError::Timeout(what),
        SessionError::BadRequest(what) => RtmpSessionError::Protocol(format!("RTSP: {what}")),
    })
}

/// An unguessable session id: 64 random bits, hex.
fn session_id() -> String {
    let mut bytes = [0u8; 8];
    // Without randomness the id is still checked within its own connection only.
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unauthorised::UnauthorisedBudget;
    use prometheus::{IntCounter, Registry};

    /// A node that accepts every publish, counts its media, and pauses reading for a
    /// while after RECORD, as an edge with a full relay queue does.
    struct PausingNode {
        media: usize,
        pause_until: Option<Instant>,
        pause: Duration,
        paused: bool,
    }

    impl RtspConnection for PausingNode {
        type End = NoEnd;
        type Wake = ();

        async fn on_announce(&mut self, parts: RtspPublishParts) -> Result<String, Refusal> {
            Ok(parts.name.split('?').next().unwrap_or_default().to_owned())
        }
        fn on_media(&mut self, _message: RtmpMessage, now: Instant) {
            self.media += 1;
            if !self.paused {
                self.paused = true;
                self.pause_until = Some(now + self.pause);
            }
        }
        async fn wake(&mut self) {
            std::future::pending().await
        }
        fn on_wake(&mut self, _wake: ()) -> Result<(), End<NoEnd>> {
            Ok(())
        }
        fn may_read(&mut self, now: Instant) -> bool {
            self.pause_until.is_none_or(|until| now >= until)
        }
        fn deadline(&self) -> Option<Instant> {
            self.pause_until
        }
        fn on_timer(&mut self, now: Instant) -> Result<(), End<NoEnd>> {
            if self.pause_until.is_some_and(|until| now >= until) {
                self.pause_until = None;
            }
            Ok(())
        }
        fn on_teardown(&mut self) {}
    }

    #[derive(Debug)]
    struct NoEnd;
    impl NodeEnd for NoEnd {
        fn error_kind(&self) -> Option<&'static str> {
            None
        }
    }

    const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
        m=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\na=control:streamid=0\r\n";

    /// A pause in reading longer than the idle time does not time the encoder out: its
    /// idle time starts again when reading does.
    #[tokio::test]
    async fn a_pause_in_reading_is_not_the_encoders_silence() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let series = ConnectionSeries::new(&Registry::new());
        let budget = UnauthorisedBudget::new(1 << 20);
        let settings = RtspSettings {
            peer: ([127, 0, 0, 1], 5000).into(),
            transport: Transport::Rtsp,
            setup_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_millis(300),
            write_timeout: Duration::from_secs(5),
            series,
            unauthorised: UnauthorisedCharge {
                charge: budget.charge(),
                refused: IntCounter::new("refused", "test").unwrap(),
            },
            udp: None,
        };
        let mut node = PausingNode {
            media: 0,
            pause_until: None,
            pause: Duration::from_millis(800),
            paused: false,
        };
        let shutdown = CancellationToken::new();
        let client_side = async {
            let url = "rtsp://127.0.0.1:1554/kLive/1_abcdefgh_1?t=tok";
            let mut requests = vec![format!(
                "ANNOUNCE {url} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
                SDP.len()
            )];
            requests.push(format!(
                "SETUP {url}/streamid=0 RTSP/1.0\r\nCSeq: 2\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n\r\n"
            ));
            let mut buf = vec![0u8; 4096];
            let mut session = String::new();
            for request in requests {
                client.write_all(request.as_bytes()).await.unwrap();
                let n = client.read(&mut buf).await.unwrap();
                let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
                assert!(answer.starts_with("RTSP/1.0 200"), "{answer}");
                if let Some(line) = answer.lines().find(|l| l.starts_with("Session: ")) {
                    session = line["Session: ".len()..]
                        .split(';')
                        .next()
                        .unwrap()
                        .to_owned();
                }
            }
            let record = format!("RECORD {url} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n");
            client.write_all(record.as_bytes()).await.unwrap();
            let n = client.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"RTSP/1.0 200"));
            // Opus packets every 100 ms for 1.5 s: the node reads none for 800 ms of it.
            for seq in 0..15u16 {
                let mut packet = vec![0x80, 97];
                packet.extend_from_slice(&seq.to_be_bytes());
                packet.extend_from_slice(&(u32::from(seq) * 4800).to_be_bytes());
                packet.extend_from_slice(&[0, 0, 0, 1, 0xfc, 0xff, 0xfe]);
                let mut frame = vec![b'$', 0];
                frame.extend_from_slice(&(packet.len() as u16).to_be_bytes());
                frame.extend_from_slice(&packet);
                client.write_all(&frame).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop(client);
        };
        // The node pauses at the first media, for longer than the idle time.
        let server_side = drive(server, &mut node, settings, &shutdown);
        let ((stream, end), ()) = tokio::join!(server_side, client_side);
        assert_eq!(stream.as_deref(), Some("1_abcdefgh_1"));
        assert!(matches!(end, End::PeerClosed), "{end:?}");
        // Every packet is a frame, after the OpusHead.
        assert_eq!(node.media, 16);
    }
}
