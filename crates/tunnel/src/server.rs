//! The origin's end of the tunnels: accepts edges and hands their requests to the node.
//!
//! Each accepted connection must pass mutual TLS (handshakes refused for a missing or
//! foreign certificate are counted by reason), hold a certificate that is not on the
//! deny list, then say hello on its first stream. After that, authorisation requests on
//! the control stream and publish streams go to the node's [`TunnelService`]; the node
//! decides, the tunnel only carries. A peer origin (origin peering) says hello with the
//! role `origin`: it must be one the node names ([`TunnelService::peer_origin_name`])
//! and hold a certificate valid for that origin's name; it may only open pull streams
//! ([`TunnelService::pull`]), never authorise or publish. A certificate denied while its tunnel is up gets
//! that tunnel cut (closed with [`codes::DENIED`]) as soon as the new list is in force.

use crate::client::{close_reason, send_reports, HELLO_TIMEOUT};
use crate::codes;
use crate::link::{protocol_error, refusal, Link, StreamGuard, TunnelSet, TunnelState};
use crate::settings::TunnelListenSection;
use crate::stream::{
    control_writer, negotiated_version, write_ack, write_media, write_message, FrameReader,
    TunnelError, CONTROL_QUEUE,
};
use crate::tls::{OriginTls, PeerCertificate};
use crate::wire::{
    AuthoriseRequest, Frame, Hello, LoadReport, MediaFrame, Message, PublishHeader, PullHeader,
    SequencedFrame, StreamEnd, Verdict, WireVersion,
};
use rustls_pki_types::{CertificateDer, ServerName};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The edge on the other end of a tunnel, from its hello and the connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub node_id: String,
    pub region: String,
    pub version: String,
    /// Which of the edge's tunnels this is ([`crate::Hello::lane`]).
    pub lane: u16,
    pub addr: SocketAddr,
    /// The wire version the tunnel's handshake chose.
    pub wire: WireVersion,
    /// What the peer is: an edge, or a peer origin pulling legs.
    pub role: PeerRole,
}

/// Who is on the other end of an accepted tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// An edge: authorises and publishes.
    Edge,
    /// A peer origin: pulls legs it has viewers for (origin peering).
    Origin,
}

/// What the node (the origin) does with a tunnel's requests.
pub trait TunnelService: Send + Sync + 'static {
    /// This node's hello.
    fn hello(&self) -> Hello;
    /// This node's health and load, sent to every edge each report interval.
    fn load(&self) -> LoadReport;
    /// Decides on a publish an edge was asked for.
    fn authorise(
        &self,
        peer: &PeerInfo,
        request: AuthoriseRequest,
    ) -> impl Future<Output = Verdict> + Send;
    /// Runs an allowed publish's stream until it ends.
    fn publish(
        &self,
        peer: &PeerInfo,
        header: PublishHeader,
        stream: IncomingPublish,
    ) -> impl Future<Output = ()> + Send;
    /// The name the certificate of peer origin `node_id` must be valid for, if this node
    /// peers with it; `None` (the default) refuses its tunnel.
    fn peer_origin_name(&self, _node_id: &str) -> Option<String> {
        None
    }
    /// Serves a peer origin's pull stream until the peer leaves it (see
    /// [`crate::wire::PullHeader`]). By default, refused.
    fn pull(
        &self,
        _peer: &PeerInfo,
        header: PullHeader,
        stream: OutgoingPull,
    ) -> impl Future<Output = ()> + Send {
        async move {
            stream
                .end(StreamEnd::new(
                    "NetStream.Play.Failed",
                    format!(
                        "this node serves no pulls (asked for {} {})",
                        header.stream_name, header.leg
                    ),
                ))
                .await
        }
    }
}

/// Accepts tunnel connections on `endpoint` (made with `tls`, see
/// [`crate::endpoint::server_endpoint`]) until `shutdown`, then closes them all.
pub async fn serve<S: TunnelService>(
    endpoint: quinn::Endpoint,
    service: Arc<S>,
    section: TunnelListenSection,
    tls: Arc<OriginTls>,
    set: Arc<TunnelSet>,
    shutdown: CancellationToken,
) {
    if section.allow_any_edge_name {
        tracing::warn!("tunnel.allow_any_edge_name is on: any cluster certificate may speak as any edge; set tunnel.edge_name_suffix instead");
    }
    let section = Arc::new(section);
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let (service, set, shutdown) = (service.clone(), set.clone(), shutdown.clone());
        let (section, tls) = (section.clone(), tls.clone());
        tokio::spawn(async move {
            let addr = incoming.remote_address();
            let connection = match incoming.await {
                Ok(c) => c,
                // The edge closed it during the handshake (QUIC carries an application's
                // close there as APPLICATION_ERROR): an edge shutting down, not a refusal.
                Err(quinn::ConnectionError::ConnectionClosed(close))
                    if close.error_code == quinn::TransportErrorCode::APPLICATION_ERROR =>
                {
                    tracing::info!(client = %addr, "the edge closed its tunnel during the handshake (shutting down)");
                    return;
                }
                Err(e) => {
                    let reason = classify_refusal(&e);
                    set.count_refusal(reason);
                    tracing::warn!(client = %addr, reason, error = %e, "tunnel handshake refused");
                    return;
                }
            };
            // The verifier required a certificate: one is there.
            let Some(certificate) = PeerCertificate::of(&connection) else {
                set.count_refusal(refusal::NO_CLIENT_CERTIFICATE);
                connection.close(codes::PROTOCOL_ERROR.into(), b"no client certificate");
                return;
            };
            if tls.denied().current().contains(&certificate.fingerprint) {
                set.count_refusal(refusal::DENIED_CERTIFICATE);
                tracing::warn!(client = %addr, certificate = %certificate.names,
                    fingerprint = %certificate.fingerprint,
                    "tunnel refused: the edge's certificate is on the deny list");
                connection.close(codes::DENIED.into(), denied_reason(&certificate).as_bytes());
                return;
            }
            handle(
                connection,
                addr,
                certificate,
                service,
                &section,
                &tls,
                set,
                shutdown,
            )
            .await;
        }.in_current_span());
    }
    endpoint.close(codes::NORMAL.into(), b"origin shutting down");
    // Let the close frames go out (and the socket be released) before returning, so a
    // node restarted in the same process can bind the port again.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), endpoint.wait_idle()).await;
}

/// Names a failed handshake by the TLS alert that ended it.
fn classify_refusal(e: &quinn::ConnectionError) -> &'static str {
    let quinn::ConnectionError::TransportError(t) = e else {
        return refusal::OTHER;
    };
    // QUIC carries TLS alerts as transport error codes 0x100 + alert (RFC 9001, 4.8).
    match u64::from(t.code).checked_sub(0x100) {
        Some(116) => refusal::NO_CLIENT_CERTIFICATE, // certificate_required
        Some(42..=46) | Some(48) | Some(49) => refusal::BAD_CERTIFICATE,
        Some(120) => refusal::WRONG_PROTOCOL, // no_application_protocol
        _ => refusal::OTHER,
    }
}

/// What the edge reads in the close of a denied tunnel.
fn denied_reason(certificate: &PeerCertificate) -> String {
    format!(
        "certificate sha256 {} is denied at this origin",
        certificate.fingerprint
    )
}

/// Resolves when the deny list in force comes to hold `certificate` (at once if it
/// already does); pending forever if the list can no longer change.
async fn until_denied(
    mut list: tokio::sync::watch::Receiver<Arc<longhaul_certs::DenyList>>,
    certificate: &PeerCertificate,
) {
    if list
        .wait_for(|l| l.contains(&certificate.fingerprint))
        .await
        .is_err()
    {
        std::future::pending::<()>().await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle<S: TunnelService>(
    connection: quinn::Connection,
    addr: SocketAddr,
    certificate: PeerCertificate,
    service: Arc<S>,
    section: &TunnelListenSection,
    tls: &OriginTls,
    set: Arc<TunnelSet>,
    shutdown: CancellationToken,
) {
    let settings = &section.transport;
    let address = addr.to_string();
    let hello = tokio::time::timeout(HELLO_TIMEOUT, async {
        let (send, recv) =
            connection
                .accept_bi()
                .await
                .map_err(|source| TunnelError::ConnectionLost {
                    peer: address.clone(),
                    source,
                })?;
        // Control messages go out before queued media (see CONTROL_PRIORITY).
        let _ = send.set_priority(crate::CONTROL_PRIORITY);
        let mut reader = FrameReader::new(recv, &address);
        match reader.next_message().await? {
            Some(Message::Hello(h)) => Ok((send, reader, h)),
            other => Err(TunnelError::Protocol {
                peer: address.clone(),
                what: format!("expected a hello, got {other:?}"),
            }),
        }
    })
    .await;
    let (mut control_send, reader, hello) = match hello {
        Ok(Ok(h)) => h,
        // An edge that shuts down while its connection is being set up closes it with
        // the normal code before its hello: an end, not a refusal.
        Ok(Err(e)) if e.is_peer_shutdown() => {
            tracing::info!(client = %addr, "tunnel closed before its hello: the edge is shutting down");
            return;
        }
        Ok(Err(e)) => {
            set.count_refusal(refusal::NO_HELLO);
            tracing::warn!(client = %addr, error = %e, "tunnel refused: no hello");
            connection.close(codes::PROTOCOL_ERROR.into(), b"expected a hello");
            return;
        }
        Err(_) => {
            set.count_refusal(refusal::NO_HELLO);
            tracing::warn!(client = %addr, timeout = ?HELLO_TIMEOUT, "tunnel refused: no hello in time");
            connection.close(codes::PROTOCOL_ERROR.into(), b"no hello in time");
            return;
        }
    };
    let role = if hello.role == "origin" {
        PeerRole::Origin
    } else {
        PeerRole::Edge
    };
    let checked = check_hello(&hello).and_then(|()| match role {
        PeerRole::Origin => match service.peer_origin_name(&hello.node_id) {
            Some(name) => check_identity(&connection, &name),
            None => Err(format!(
                "origin {:?} is not one of this origin's peers (peering.peers)",
                hello.node_id
            )),
        },
        PeerRole::Edge => match &section.edge_name_suffix {
            Some(suffix) => check_identity(&connection, &format!("{}.{suffix}", hello.node_id)),
            None => Ok(()),
        },
    });
    if let Err(why) = checked {
        set.count_refusal(refusal::BAD_HELLO);
        tracing::warn!(client = %addr, node = %hello.node_id, region = %hello.region,
            role = %hello.role, "tunnel refused: {why}");
        connection.close(codes::PROTOCOL_ERROR.into(), close_reason(&why));
        return;
    }
    let peer = PeerInfo {
        node_id: hello.node_id.clone(),
        region: hello.region.clone(),
        version: hello.version.clone(),
        lane: hello.lane,
        addr,
        wire: negotiated_version(&connection),
        role,
    };
    // One link per edge lane across its reconnects. A newer connection from the same edge
    // and lane (it restarted while its old connection was half-open) replaces the old
    // one; an edge's other lanes (its other shards) keep theirs. A peer
    // origin's tunnel gets a link of its own, outside the set: the set is the node's
    // edges (revocations go to them), and its series are the peer's (this origin's
    // tunnel to that peer is in the set under the peer's id).
    let link = match role {
        PeerRole::Edge => set.link_for(
            &peer.node_id,
            &peer.region,
            peer.lane,
            TunnelState::Connected,
        ),
        PeerRole::Origin => Link::new(
            &peer.node_id,
            &peer.region,
            peer.lane,
            TunnelState::Connected,
        ),
    };
    if let Some(old) = link.connection() {
        old.close(
            codes::NORMAL.into(),
            b"replaced by a newer connection from the same node",
        );
        tracing::info!(peer = %peer.node_id, lane = peer.lane, old = %old.remote_address(),
            new = %addr, "a newer tunnel from the same edge and lane replaces the old one");
    }
    link.attach(connection.clone());
    link.set_state(
        TunnelState::Connected,
        &format!("edge {} from {addr}", peer.node_id),
    );
    tracing::info!(peer = %peer.node_id, region = %peer.region, version = %peer.version,
        lane = peer.lane, wire = ?peer.wire, client = %addr, role = %hello.role, "tunnel connected");
    if let Err(e) = write_message(
        &mut control_send,
        &Message::Hello(service.hello()),
        &address,
    )
    .await
    {
        if e.is_peer_shutdown() {
            tracing::info!(peer = %peer.node_id, "the edge closed its tunnel before our hello (shutting down)");
        } else {
            tracing::warn!(peer = %peer.node_id, error = %e, "sending hello failed");
        }
    }
    let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
    let writer =
        tokio::spawn(control_writer(control_send, rx, peer.node_id.clone()).in_current_span());
    link.set_control(Some(tx.clone()));
    let load: crate::client::LoadFn = {
        let service = service.clone();
        Arc::new(move || service.load())
    };
    let mut denied = false;
    let ended: Result<String, TunnelError> = tokio::select! {
        r = serve_control(reader, &service, &peer, &tx, &link) => r,
        why = accept_publishes(&connection, &service, &peer, &link, &set) => Ok(why),
        _ = send_reports(&tx, &load, settings.report_interval()) => Ok("report sender stopped".into()),
        _ = until_denied(tls.denied().subscribe(), &certificate) => {
            denied = true;
            Ok(denied_reason(&certificate))
        }
        _ = shutdown.cancelled() => Ok("origin shutting down".into()),
    };
    writer.abort();
    // An end either side chose (a shutdown, each saying so with the normal code) is no
    // incident; a vanished or misbehaving edge is.
    let orderly = shutdown.is_cancelled()
        || matches!(connection.close_reason(),
            Some(quinn::ConnectionError::ApplicationClosed(c)) if c.error_code == codes::NORMAL.into());
    let why = match ended {
        Ok(why) if denied => {
            set.count_denied_cut();
            tracing::warn!(peer = %peer.node_id, client = %addr, certificate = %certificate.names,
                fingerprint = %certificate.fingerprint,
                "tunnel cut: the edge's certificate was added to the deny list");
            connection.close(codes::DENIED.into(), close_reason(&why));
            why
        }
        Ok(why) => {
            connection.close(codes::NORMAL.into(), close_reason(&why));
            why
        }
        // The connection went (idle timeout, the edge closed it): not a protocol error.
        Err(e) if !matches!(e, TunnelError::Wire { .. } | TunnelError::Protocol { .. }) => {
            let why = match connection.close_reason() {
                Some(reason) => format!("connection closed: {reason}"),
                None => e.to_string(),
            };
            connection.close(codes::NORMAL.into(), close_reason(&why));
            why
        }
        Err(e) => {
            set.count_protocol_error(protocol_error::CONTROL_STREAM);
            let why = e.to_string();
            tracing::warn!(peer = %peer.node_id, client = %addr, error = %why,
                "tunnel closed: the edge broke the protocol");
            connection.close(codes::PROTOCOL_ERROR.into(), close_reason(&why));
            why
        }
    };
    if link.detach_if_current(&connection) {
        link.set_control(None);
        link.close(&why, orderly);
    }
}

/// Longest node id or region a hello may carry: they become metric labels.
const MAX_NAME_LEN: usize = 63;

/// A hello the origin takes: from an edge or a peer origin, with a node id and region
/// that are short lowercase names (they become log fields and metric labels).
fn check_hello(hello: &Hello) -> Result<(), String> {
    if hello.role != "edge" && hello.role != "origin" {
        return Err(format!(
            "hello from a {:?}, not an edge or an origin",
            hello.role
        ));
    }
    if hello.lane >= MAX_LANES {
        return Err(format!(
            "hello on lane {}: lanes go up to {} (one per shard of an edge)",
            hello.lane,
            MAX_LANES - 1
        ));
    }
    check_node_names(&hello.node_id, &hello.region)
}

/// Lanes an origin keeps per edge. An edge runs one per shard, a shard per core, and
/// the origin keeps a link (counters, series) per lane for as long as it runs: 256 is
/// past the core count of any host an edge runs on, and bounds what one edge's
/// certificate can make an origin keep.
pub const MAX_LANES: u16 = 256;

/// The rule for node ids and regions, checked the same way at both ends: by every node
/// on its own config at start (an edge the origins would refuse does not start), and by
/// an origin on each hello. Short lowercase names: they become log fields, metric labels
/// and certificate names.
pub fn check_node_names(node_id: &str, region: &str) -> Result<(), String> {
    for (what, name) in [("node id", node_id), ("region", region)] {
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if !ok {
            return Err(format!(
                "{what} {name:?} is not a short lowercase name (a-z, 0-9, - _ ., at most {MAX_NAME_LEN})"
            ));
        }
    }
    Ok(())
}

/// The peer's certificate must be valid for `name`: the id in its hello is its own.
fn check_identity(connection: &quinn::Connection, name: &str) -> Result<(), String> {
    let certificates = connection
        .peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or("the peer presented no certificate")?;
    let leaf = certificates
        .first()
        .ok_or("the peer presented no certificate")?;
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|_| format!("{name:?} is not a DNS name"))?;
    webpki::EndEntityCert::try_from(leaf)
        .and_then(|cert| cert.verify_is_valid_for_subject_name(&server_name))
        .map_err(|e| {
            format!(
                "its certificate is not valid for {name} ({e:?}): it may not speak as that edge"
            )
        })
}

/// Authorisations one connection may have in flight. An edge re-authorising every
/// publish after a reconnect sends a burst; each check is one SQLite read (well under a
/// millisecond), so 64 at once clear quickly, and past that the edge's requests wait on
/// the control stream instead of piling up as tasks here.
const MAX_AUTHORISATIONS_IN_FLIGHT: usize = 64;

async fn serve_control<S: TunnelService>(
    mut reader: FrameReader,
    service: &Arc<S>,
    peer: &PeerInfo,
    control: &mpsc::Sender<Message>,
    link: &Link,
) -> Result<String, TunnelError> {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_AUTHORISATIONS_IN_FLIGHT));
    loop {
        match reader.next_message().await? {
            Some(Message::Authorise { id, .. }) if peer.role == PeerRole::Origin => {
                let verdict = Verdict::Refused {
                    code: "NetStream.Publish.Rejected".into(),
                    reason: "peer_origin".into(),
                    description: "a peer origin does not publish through another origin".into(),
                };
                let _ = control.send(Message::Verdict { id, verdict }).await;
            }
            Some(Message::Authorise { id, request }) => {
                // Each request runs on its own so a slow registry lookup does not hold
                // up the next publish's verdict; the permit bounds how many.
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return Ok("closing".into());
                };
                let (service, peer, control) = (service.clone(), peer.clone(), control.clone());
                tokio::spawn(
                    async move {
                        let verdict = service.authorise(&peer, request).await;
                        let _ = control.send(Message::Verdict { id, verdict }).await;
                        drop(permit);
                    }
                    .in_current_span(),
                );
            }
            Some(Message::Report(report)) => link.set_peer_load(report),
            Some(Message::Unknown) => {}
            Some(other) => {
                return Err(TunnelError::Protocol {
                    peer: peer.node_id.clone(),
                    what: format!("unexpected message on the control stream: {other:?}"),
                })
            }
            None => return Ok("the edge closed the control stream".into()),
        }
    }
}

async fn accept_publishes<S: TunnelService>(
    connection: &quinn::Connection,
    service: &Arc<S>,
    peer: &PeerInfo,
    link: &Arc<Link>,
    set: &Arc<TunnelSet>,
) -> String {
    loop {
        let (mut send, recv) = match connection.accept_bi().await {
            Ok(s) => s,
            Err(e) => return format!("connection closed: {e}"),
        };
        let (service, peer, set) = (service.clone(), peer.clone(), set.clone());
        let open = link.stream_opened();
        tokio::spawn(
            async move {
                let mut reader = FrameReader::with_version(recv, &peer.node_id, peer.wire);
                let header = match tokio::time::timeout(HELLO_TIMEOUT, reader.next_message()).await
                {
                    Ok(Ok(Some(Message::Publish(h)))) if peer.role == PeerRole::Edge => h,
                    Ok(Ok(Some(Message::Pull(h)))) if peer.role == PeerRole::Origin => {
                        let stream = OutgoingPull {
                            reader,
                            send,
                            peer: peer.node_id.clone(),
                            _open: open,
                        };
                        service.pull(&peer, h, stream).await;
                        return;
                    }
                    other => {
                        set.count_protocol_error(protocol_error::PUBLISH_HEADER);
                        tracing::warn!(peer = %peer.node_id, client = %peer.addr,
                        role = ?peer.role, outcome = ?other.map(|r| r.map(|_| ())),
                        "stream without the header its peer may send (publish from an edge, pull from a peer origin); closed");
                        let _ = write_message(
                            &mut send,
                            &Message::End(StreamEnd::new(
                                "NetStream.Publish.BadName",
                                match peer.role {
                                    PeerRole::Edge => "a stream from an edge must start with a publish header",
                                    PeerRole::Origin => "a stream from a peer origin must start with a pull header",
                                },
                            )),
                            &peer.node_id,
                        )
                        .await;
                        let _ = send.finish();
                        return;
                    }
                };
                let stream = IncomingPublish {
                    reader,
                    send,
                    peer: peer.node_id.clone(),
                    _open: open,
                };
                service.publish(&peer, header, stream).await;
            }
            .in_current_span(),
        );
    }
}

/// The serving side of a peer origin's pull stream, handed to [`TunnelService::pull`].
pub struct OutgoingPull {
    reader: FrameReader,
    send: quinn::SendStream,
    peer: String,
    _open: StreamGuard,
}

impl OutgoingPull {
    /// Splits into what watches the asker and what sends to it, so the node can send
    /// media and notice the asker leaving at the same time.
    pub fn split(self) -> (PullAsker, PullSender) {
        (
            PullAsker {
                reader: self.reader,
                _open: self._open,
            },
            PullSender {
                send: self.send,
                peer: self.peer,
            },
        )
    }

    /// Ends the stream with a reason (refused).
    pub async fn end(self, end: StreamEnd) {
        self.split().1.end(end).await
    }
}

/// The asker's side of a pull stream, as the serving node watches it.
pub struct PullAsker {
    reader: FrameReader,
    _open: StreamGuard,
}

impl PullAsker {
    /// Resolves when the asker leaves the stream (it finished or reset its side, or the
    /// tunnel went). Cancel-safe. Anything it sends on the stream is a protocol error,
    /// which also ends it.
    pub async fn left(&mut self) -> Result<(), TunnelError> {
        match self.reader.next().await? {
            None => Ok(()),
            Some(other) => Err(TunnelError::Protocol {
                peer: self.reader.peer().to_string(),
                what: format!("the asker sent {other:?} on its pull stream"),
            }),
        }
    }
}

/// Sends a pulled leg to the asker.
pub struct PullSender {
    send: quinn::SendStream,
    peer: String,
}

impl PullSender {
    /// Tells the asker a publication of the leg started here; its messages follow.
    pub async fn live(&mut self) -> Result<(), TunnelError> {
        write_message(&mut self.send, &Message::LegLive, &self.peer).await
    }

    /// Tells the asker that publication ended.
    pub async fn gone(&mut self) -> Result<(), TunnelError> {
        write_message(&mut self.send, &Message::LegGone, &self.peer).await
    }

    /// Sends RTMP messages of the live publication, in order. Waits while QUIC holds
    /// the stream back.
    pub async fn send(&mut self, frames: &[MediaFrame]) -> Result<(), TunnelError> {
        write_media(&mut self.send, frames, &self.peer).await
    }

    /// Ends the stream with a reason.
    pub async fn end(mut self, end: StreamEnd) {
        let _ = write_message(&mut self.send, &Message::End(end), &self.peer).await;
        let _ = self.send.finish();
    }
}

/// The receiving side of one publish stream, handed to [`TunnelService::publish`].
pub struct IncomingPublish {
    reader: FrameReader,
    send: quinn::SendStream,
    peer: String,
    _open: StreamGuard,
}

impl IncomingPublish {
    /// Splits into the media reader and the handle that ends the stream, so the node can
    /// read media and react to a takeover at the same time.
    pub fn split(self) -> (MediaReceiver, PublishEnder) {
        (
            MediaReceiver {
                reader: self.reader,
                _open: self._open,
            },
            PublishEnder {
                send: self.send,
                peer: self.peer,
            },
        )
    }
}

/// Media of a publish stream, in order.
pub struct MediaReceiver {
    reader: FrameReader,
    _open: StreamGuard,
}

/// One RTMP message from a publish stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// Unsequenced: every message on version 1; on version 2, the configuration a
    /// resumed stream re-sends first.
    Plain(MediaFrame),
    /// Version 2: a message with its seq in the publication.
    Sequenced(SequencedFrame),
}

impl Incoming {
    /// The RTMP message, sequenced or not.
    pub fn frame(&self) -> &MediaFrame {
        match self {
            Incoming::Plain(f) => f,
            Incoming::Sequenced(s) => &s.frame,
        }
    }
}

impl MediaReceiver {
    /// The next RTMP message, `None` when the edge finished the stream (the encoder
    /// unpublished). Cancel-safe. Unknown JSON messages are skipped.
    pub async fn next(&mut self) -> Result<Option<Incoming>, TunnelError> {
        loop {
            match self.reader.next().await? {
                None => return Ok(None),
                Some(Frame::Media(m)) => return Ok(Some(Incoming::Plain(m))),
                Some(Frame::Sequenced(s)) => return Ok(Some(Incoming::Sequenced(s))),
                Some(Frame::Message(Message::Unknown)) => continue,
                Some(Frame::Message(other)) => {
                    return Err(TunnelError::Protocol {
                        peer: self.reader_peer(),
                        what: format!("unexpected message on a publish stream: {other:?}"),
                    })
                }
                Some(Frame::Ack(seq)) => {
                    return Err(TunnelError::Protocol {
                        peer: self.reader_peer(),
                        what: format!(
                            "an acknowledgement ({seq}) from the edge on a publish stream"
                        ),
                    })
                }
            }
        }
    }

    fn reader_peer(&self) -> String {
        self.reader.peer().to_string()
    }
}

/// Ends a publish stream with a reason the edge passes to its encoder.
pub struct PublishEnder {
    send: quinn::SendStream,
    peer: String,
}

impl PublishEnder {
    /// Tells the edge every seq up to and including `seq` is handled (version 2).
    pub async fn ack(&mut self, seq: u64) -> Result<(), TunnelError> {
        write_ack(&mut self.send, seq, &self.peer).await
    }

    pub async fn end(mut self, end: StreamEnd) {
        let _ = write_message(&mut self.send, &Message::End(end), &self.peer).await;
        let _ = self.send.finish();
    }

    /// Finishes our side without a reason: the stream ended normally.
    pub fn finish(mut self) {
        let _ = self.send.finish();
    }
}
