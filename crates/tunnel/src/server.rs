//! The origin's end of the tunnels: accepts edges and hands their requests to the node.
//!
//! Each accepted connection must pass mutual TLS (handshakes refused for a missing or
//! foreign certificate are counted by reason), then say hello on its first stream. After
//! that, authorisation requests on the control stream and publish streams go to the
//! node's [`TunnelService`]; the node decides, the tunnel only carries.

use crate::client::{send_reports, HELLO_TIMEOUT};
use crate::codes;
use crate::link::{refusal, Link, StreamGuard, TunnelSet, TunnelState};
use crate::settings::TransportSettings;
use crate::stream::{control_writer, write_message, FrameReader, TunnelError, CONTROL_QUEUE};
use crate::wire::{
    AuthoriseRequest, Frame, Hello, LoadReport, MediaFrame, Message, PublishHeader, StreamEnd,
    Verdict,
};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The edge on the other end of a tunnel, from its hello and the connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub node_id: String,
    pub region: String,
    pub version: String,
    pub addr: SocketAddr,
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
}

/// Accepts tunnel connections on `endpoint` until `shutdown`, then closes them all.
pub async fn serve<S: TunnelService>(
    endpoint: quinn::Endpoint,
    service: Arc<S>,
    settings: TransportSettings,
    set: Arc<TunnelSet>,
    shutdown: CancellationToken,
) {
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            _ = shutdown.cancelled() => break,
        };
        let (service, set, shutdown) = (service.clone(), set.clone(), shutdown.clone());
        let settings = settings.clone();
        tokio::spawn(async move {
            let addr = incoming.remote_address();
            let connection = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    let reason = classify_refusal(&e);
                    set.count_refusal(reason);
                    tracing::warn!(client = %addr, reason, error = %e, "tunnel handshake refused");
                    return;
                }
            };
            handle(connection, addr, service, settings, set, shutdown).await;
        });
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

async fn handle<S: TunnelService>(
    connection: quinn::Connection,
    addr: SocketAddr,
    service: Arc<S>,
    settings: TransportSettings,
    set: Arc<TunnelSet>,
    shutdown: CancellationToken,
) {
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
    let peer = PeerInfo {
        node_id: hello.node_id.clone(),
        region: hello.region.clone(),
        version: hello.version.clone(),
        addr,
    };
    let link = Link::new(&peer.node_id, &peer.region, TunnelState::Connected);
    link.attach(connection.clone());
    set.add(link.clone());
    tracing::info!(peer = %peer.node_id, region = %peer.region, version = %peer.version,
        client = %addr, "tunnel from edge connected");
    if let Err(e) = write_message(
        &mut control_send,
        &Message::Hello(service.hello()),
        &address,
    )
    .await
    {
        tracing::warn!(peer = %peer.node_id, error = %e, "sending hello failed");
    }
    let (tx, rx) = mpsc::channel(CONTROL_QUEUE);
    let writer = tokio::spawn(control_writer(control_send, rx, peer.node_id.clone()));
    let load: crate::client::LoadFn = {
        let service = service.clone();
        Arc::new(move || service.load())
    };
    let why = tokio::select! {
        why = serve_control(reader, &service, &peer, &tx, &link) => why,
        why = accept_publishes(&connection, &service, &peer, &link) => why,
        _ = send_reports(&tx, &load, settings.report_interval()) => "report sender stopped".into(),
        _ = shutdown.cancelled() => {
            connection.close(codes::NORMAL.into(), b"origin shutting down");
            "origin shutting down".into()
        }
    };
    writer.abort();
    // Whatever ended the control stream or the accept loop ends the connection.
    connection.close(codes::PROTOCOL_ERROR.into(), b"control stream failed");
    link.set_state(TunnelState::Closed, &why);
    link.detach();
    set.remove(&link);
}

async fn serve_control<S: TunnelService>(
    mut reader: FrameReader,
    service: &Arc<S>,
    peer: &PeerInfo,
    control: &mpsc::Sender<Message>,
    link: &Link,
) -> String {
    loop {
        match reader.next_message().await {
            Ok(Some(Message::Authorise { id, request })) => {
                // Each request runs on its own so a slow registry lookup does not hold
                // up the next publish's verdict.
                let (service, peer, control) = (service.clone(), peer.clone(), control.clone());
                tokio::spawn(async move {
                    let verdict = service.authorise(&peer, request).await;
                    let _ = control.send(Message::Verdict { id, verdict }).await;
                });
            }
            Ok(Some(Message::Report(report))) => link.set_peer_load(report),
            Ok(Some(Message::Unknown)) => {}
            Ok(Some(other)) => {
                tracing::warn!(peer = %peer.node_id, message = ?other,
                    "unexpected control message from the edge; ignored");
            }
            Ok(None) => return "the edge closed the control stream".into(),
            Err(e) => return e.to_string(),
        }
    }
}

async fn accept_publishes<S: TunnelService>(
    connection: &quinn::Connection,
    service: &Arc<S>,
    peer: &PeerInfo,
    link: &Arc<Link>,
) -> String {
    loop {
        let (mut send, recv) = match connection.accept_bi().await {
            Ok(s) => s,
            Err(e) => return format!("connection closed: {e}"),
        };
        let (service, peer) = (service.clone(), peer.clone());
        let open = link.stream_opened();
        tokio::spawn(async move {
            let mut reader = FrameReader::new(recv, &peer.node_id);
            let header = match tokio::time::timeout(HELLO_TIMEOUT, reader.next_message()).await {
                Ok(Ok(Some(Message::Publish(h)))) => h,
                other => {
                    tracing::warn!(peer = %peer.node_id, outcome = ?other.map(|r| r.map(|_| ())),
                        "publish stream without a publish header; closed");
                    let _ = write_message(
                        &mut send,
                        &Message::End(StreamEnd {
                            code: "NetStream.Publish.BadName".into(),
                            description: "publish stream opened without a publish header".into(),
                        }),
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
        });
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

impl MediaReceiver {
    /// The next RTMP message, `None` when the edge finished the stream (the encoder
    /// unpublished). Cancel-safe. Unknown JSON messages are skipped.
    pub async fn next(&mut self) -> Result<Option<MediaFrame>, TunnelError> {
        loop {
            match self.reader.next().await? {
                None => return Ok(None),
                Some(Frame::Media(m)) => return Ok(Some(m)),
                Some(Frame::Message(Message::Unknown)) => continue,
                Some(Frame::Message(other)) => {
                    return Err(TunnelError::Protocol {
                        peer: self.reader_peer(),
                        what: format!("unexpected message on a publish stream: {other:?}"),
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
    pub async fn end(mut self, end: StreamEnd) {
        let _ = write_message(&mut self.send, &Message::End(end), &self.peer).await;
        let _ = self.send.finish();
    }

    /// Finishes our side without a reason: the stream ended normally.
    pub fn finish(mut self) {
        let _ = self.send.finish();
    }
}
