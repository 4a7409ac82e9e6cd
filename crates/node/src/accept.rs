//! The RTMP and RTMPS accept loop: connection cap, TLS handshake, one task per connection.
//!
//! What happens to a connection once accepted is the node's business (an origin feeds
//! its hub, an edge its tunnel): the node implements [`ConnectionHandler`]. What happens
//! before is the same everywhere and lives here:
//!
//! - one permit of a [`ConnectionLimits`] semaphore per open connection, shared by every
//!   listener of the node; without a free permit the socket is closed at once;
//! - on an RTMPS listener, the TLS handshake, bounded by the ingest handshake timeout;
//! - every refusal counted in `connections_refused_total{transport, reason}` (reasons
//!   [`reason`]) and logged with the client address.

use crate::config::IngestSection;
use crate::listeners::TlsListener;
use crate::tasks::NodeTasks;
use prometheus::IntCounterVec;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How a connection reached us, as the `transport` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Rtmp,
    Rtmps,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Rtmp => "rtmp",
            Transport::Rtmps => "rtmps",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `reason` label of `connections_refused_total`.
pub mod reason {
    pub const TOO_MANY_CONNECTIONS: &str = "too_many_connections";
    pub const TLS_HANDSHAKE: &str = "tls_handshake";
    pub const TLS_TIMEOUT: &str = "tls_timeout";
}

/// Pause after a failed `accept` (EMFILE and friends) so the loop backs off instead of
/// spinning: 50 ms lets a few connections close while costing a burst of new ones little.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// A connection's byte stream: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for S {}

/// An accepted connection, handed to the node.
pub struct Accepted<S> {
    pub io: S,
    pub peer: SocketAddr,
    pub transport: Transport,
    /// Cancelled when the node stops.
    pub shutdown: CancellationToken,
}

/// Runs one accepted connection to its end.
pub trait ConnectionHandler: Send + Sync + 'static {
    /// Drives the connection until it ends or its `shutdown` is cancelled.
    fn serve_connection<S: Io>(
        self: Arc<Self>,
        accepted: Accepted<S>,
    ) -> impl Future<Output = ()> + Send;
}

/// What every listener of a node shares: the connection cap and how refusals are counted.
#[derive(Clone)]
pub struct ConnectionLimits {
    /// One permit per open connection, all listeners together.
    slots: Arc<Semaphore>,
    max_connections: usize,
    tls_handshake_timeout: Duration,
    /// `connections_refused_total{transport, reason}`.
    refused: IntCounterVec,
}

impl ConnectionLimits {
    /// `ingest.max_connections` connections at once, TLS handshakes bounded by
    /// `ingest.handshake_timeout_secs`; refusals counted in `refused`, a counter labelled
    /// `transport, reason`.
    pub fn new(ingest: &IngestSection, refused: IntCounterVec) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(ingest.max_connections)),
            max_connections: ingest.max_connections,
            tls_handshake_timeout: ingest.handshake_timeout(),
            refused,
        }
    }

    /// Connections open now, all listeners together (for load reports).
    pub fn open_connections(&self) -> usize {
        self.max_connections - self.slots.available_permits()
    }

    fn refuse(&self, transport: Transport, reason: &str) {
        self.refused
            .with_label_values(&[transport.as_str(), reason])
            .inc();
    }
}

/// Spawns into `tasks` the accept loops of the node's RTMP listener and, when RTMPS is on,
/// its RTMPS listener; both share `limits` and `handler`.
pub fn spawn_listeners<H: ConnectionHandler>(
    tasks: &mut NodeTasks,
    rtmp: TcpListener,
    rtmps: Option<TlsListener>,
    limits: ConnectionLimits,
    handler: Arc<H>,
) {
    let shutdown = tasks.shutdown_token();
    if let Some(rtmps) = rtmps {
        let tls = Some(rtmps.tls);
        let (limits, handler) = (limits.clone(), handler.clone());
        tasks.spawn(serve(
            rtmps.listener,
            tls,
            limits,
            handler,
            shutdown.clone(),
        ));
    }
    tasks.spawn(serve(rtmp, None, limits, handler, shutdown));
}

/// Accepts connections on `listener` (TLS-wrapped when `tls` is set) until `shutdown`,
/// handing each to `handler` on its own task.
pub async fn serve<H: ConnectionHandler>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnectionLimits,
    handler: Arc<H>,
    shutdown: CancellationToken,
) {
    let transport = if tls.is_some() {
        Transport::Rtmps
    } else {
        Transport::Rtmp
    };
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(%transport, error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = limits.slots.clone().try_acquire_owned() else {
            limits.refuse(transport, reason::TOO_MANY_CONNECTIONS);
            tracing::warn!(client = %peer, %transport, limit = limits.max_connections,
                "connection refused: too many connections");
            continue; // dropping the stream closes it
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        let acceptor = acceptor.clone();
        let limits = limits.clone();
        tokio::spawn(
            async move {
                let _permit = permit;
                let accepted = Accepted {
                    io: stream,
                    peer,
                    transport,
                    shutdown,
                };
                let Some(acceptor) = acceptor else {
                    return handler.serve_connection(accepted).await;
                };
                let timeout = limits.tls_handshake_timeout;
                match tokio::time::timeout(timeout, acceptor.accept(accepted.io)).await {
                    Ok(Ok(tls_stream)) => {
                        let shutdown = accepted.shutdown;
                        let accepted = Accepted {
                            io: tls_stream,
                            peer,
                            transport,
                            shutdown,
                        };
                        handler.serve_connection(accepted).await
                    }
                    Ok(Err(e)) => {
                        limits.refuse(transport, reason::TLS_HANDSHAKE);
                        tracing::warn!(client = %peer, error = %e, "RTMPS TLS handshake failed");
                    }
                    Err(_) => {
                        limits.refuse(transport, reason::TLS_TIMEOUT);
                        tracing::warn!(client = %peer, ?timeout, "RTMPS TLS handshake timed out");
                    }
                }
            }
            .in_current_span(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Echoes one line's worth of bytes back, tagged with the transport.
    struct Echo;

    impl ConnectionHandler for Echo {
        async fn serve_connection<S: Io>(self: Arc<Self>, accepted: Accepted<S>) {
            let (mut io, transport) = (accepted.io, accepted.transport);
            let mut buf = [0u8; 16];
            if let Ok(n) = io.read(&mut buf).await {
                let _ = io.write_all(transport.as_str().as_bytes()).await;
                let _ = io.write_all(&buf[..n]).await;
            }
        }
    }

    /// An accept loop on a port-0 listener, under `max` connections.
    struct Served {
        addr: SocketAddr,
        limits: ConnectionLimits,
        refused: IntCounterVec,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    async fn serve_echo(tls: Option<Arc<rustls::ServerConfig>>, max: usize) -> Served {
        let refused = IntCounterVec::new(
            prometheus::Opts::new("refused", "refused"),
            &["transport", "reason"],
        )
        .expect("valid");
        let ingest = IngestSection {
            max_connections: max,
            ..IngestSection::default()
        };
        let limits = ConnectionLimits::new(&ingest, refused.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let handler = Arc::new(Echo);
        let task = tokio::spawn(serve(
            listener,
            tls,
            limits.clone(),
            handler,
            shutdown.clone(),
        ));
        Served {
            addr,
            limits,
            refused,
            shutdown,
            task,
        }
    }

    impl Served {
        async fn stop(self) {
            self.shutdown.cancel();
            self.task.await.expect("serve ends on shutdown");
        }
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_and_counted() {
        let served = serve_echo(None, 1).await;
        // The first connection holds the only permit while its handler waits to read.
        let mut first = tokio::net::TcpStream::connect(served.addr)
            .await
            .expect("connect");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut second = tokio::net::TcpStream::connect(served.addr)
            .await
            .expect("connect");
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), second.read_to_end(&mut buf))
            .await
            .expect("closed in time");
        assert_eq!(n.unwrap_or(0), 0, "the refused connection gets nothing");
        let refused = served
            .refused
            .with_label_values(&["rtmp", reason::TOO_MANY_CONNECTIONS]);
        assert_eq!(refused.get(), 1);
        assert_eq!(served.limits.open_connections(), 1);
        first.write_all(b"hi").await.expect("write");
        let mut reply = Vec::new();
        first.read_to_end(&mut reply).await.expect("read");
        assert_eq!(reply, b"rtmphi");
        served.stop().await;
    }

    #[tokio::test]
    async fn a_failed_tls_handshake_is_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = crate::tls::tests::self_signed(dir.path());
        let tls = crate::tls::server_config(&cert, &key).expect("tls");
        let served = serve_echo(Some(tls), 10).await;
        // Plain RTMP (C0 = 3 and C1) to an RTMPS port.
        let mut client = tokio::net::TcpStream::connect(served.addr)
            .await
            .expect("connect");
        client.write_all(&[3u8; 1537]).await.expect("write");
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut buf)).await;
        let counted = served
            .refused
            .with_label_values(&["rtmps", reason::TLS_HANDSHAKE]);
        for _ in 0..100 {
            if counted.get() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(counted.get(), 1);
        served.stop().await;
    }
}
