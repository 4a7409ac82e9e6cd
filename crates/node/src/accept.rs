//! The RTMP and RTMPS accept loop: connection caps, PROXY header, TLS handshake, one task
//! per connection.
//!
//! What happens to a connection once accepted is the node's business (an origin feeds
//! its hub, an edge its tunnel): the node implements [`ConnectionHandler`]. What happens
//! before is the same everywhere and lives here, in this order:
//!
//! 1. one permit of a [`ConnectionLimits`] semaphore per open connection, shared by every
//!    listener of the node; without a free permit the socket is closed at once;
//! 2. with `ingest.proxy_protocol` on, a socket from outside `ingest.proxy_trusted` is
//!    closed at once;
//! 3. the shard with the fewest open connections ([`crate::shards`]) takes the socket,
//!    and what follows runs on its thread: with the PROXY protocol on, the header is read
//!    (within the ingest handshake timeout, at most [`crate::proxy_header::MAX_LEN`]
//!    bytes) and the client address it names is the connection's peer from then on, for
//!    everything downstream;
//! 4. a place among the connections of that address ([`crate::address_limit`],
//!    `ingest.max_connections_per_address`);
//! 5. on an RTMPS listener, the TLS handshake, bounded by the ingest handshake timeout;
//! 6. the node's handler, with the connection's charge against the budget for
//!    unauthorised connections ([`crate::unauthorised`]), which its driver keeps.
//!
//! Every refusal is counted in `connections_refused_total{transport, reason}` (reasons
//! [`reason`]) and logged with the client address. None of them can be told to the peer
//! in its protocol: they all come before the RTMP handshake (and before TLS), where a
//! server can only close the socket.

use crate::address_limit::AddressLimit;
use crate::config::IngestSection;
use crate::listeners::TlsListener;
use crate::proxied::{self, Rewound};
use crate::shards::{ShardSlot, Shards};
use crate::tasks::NodeTasks;
use crate::unauthorised::{Charge, UnauthorisedBudget};
use prometheus::{IntCounter, IntCounterVec};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How a connection reached us, as the `transport` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Rtmp,
    Rtmps,
    /// RTSP publishes (`longhaul_rtsp`): cameras and encoders that do not speak RTMP.
    Rtsp,
    /// RTSP over TLS, with the RTMPS certificate.
    Rtsps,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Rtmp => "rtmp",
            Transport::Rtmps => "rtmps",
            Transport::Rtsp => "rtsp",
            Transport::Rtsps => "rtsps",
        }
    }

    /// The protocol spoken on this transport, TLS or not.
    pub fn protocol(self) -> Protocol {
        match self {
            Transport::Rtmp | Transport::Rtmps => Protocol::Rtmp,
            Transport::Rtsp | Transport::Rtsps => Protocol::Rtsp,
        }
    }

    /// The transport of `protocol`, over TLS when `tls`.
    pub fn of(protocol: Protocol, tls: bool) -> Transport {
        match (protocol, tls) {
            (Protocol::Rtmp, false) => Transport::Rtmp,
            (Protocol::Rtmp, true) => Transport::Rtmps,
            (Protocol::Rtsp, false) => Transport::Rtsp,
            (Protocol::Rtsp, true) => Transport::Rtsps,
        }
    }
}

/// What a listener's connections speak: the node's handler picks its driver by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Rtmp,
    Rtsp,
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
    /// `ingest.proxy_protocol` is on and the socket's address is not in `proxy_trusted`.
    pub const PROXY_UNTRUSTED: &str = "proxy_untrusted";
    /// A trusted socket sent no valid PROXY header (malformed, missing, cut short, late).
    pub const PROXY_HEADER: &str = "proxy_header";
    /// The client's address already has `ingest.max_connections_per_address` open.
    pub const TOO_MANY_FROM_ADDRESS: &str = "too_many_from_address";
    /// Connections not yet authorised hold `ingest.unauthorised_memory_bytes`: this one,
    /// growing, was closed (counted by the connection's driver).
    pub const UNAUTHORISED_MEMORY: &str = "unauthorised_memory";
    /// The socket could not be moved to the reactor of the shard picked for it (its
    /// deregistration or registration failed: the OS refused an epoll change).
    pub const SHARD_HANDOFF: &str = "shard_handoff";
}

/// Pause after a failed `accept` (EMFILE and friends) so the loop backs off instead of
/// spinning: 50 ms lets a few connections close while costing a burst of new ones little.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// A connection's byte stream: plain TCP or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for S {}

/// What every accepted connection reads from: the socket, after its PROXY header if any.
pub type Socket = Rewound<TcpStream>;

/// An accepted connection, handed to the node.
pub struct Accepted<S> {
    pub io: S,
    /// The client: the socket's peer, or the address its PROXY header named.
    pub peer: SocketAddr,
    pub transport: Transport,
    /// Cancelled when the node stops.
    pub shutdown: CancellationToken,
    /// Its charge against the node's budget for unauthorised connections, which the
    /// connection's driver keeps up to date until a publish or play is accepted.
    pub unauthorised: UnauthorisedCharge,
    /// The shard ([`crate::shards`]) whose thread runs the connection's task: what the
    /// node keeps per shard (an edge's tunnel lane) is this one's.
    pub shard: usize,
}

/// A connection's [`Charge`] against the node's unauthorised-memory budget, and the
/// counter (`connections_refused_total{transport, reason="unauthorised_memory"}`) its
/// closing for want of room goes to.
pub struct UnauthorisedCharge {
    pub charge: Charge,
    pub refused: IntCounter,
}

/// Runs one accepted connection to its end.
pub trait ConnectionHandler: Send + Sync + 'static {
    /// Drives the connection until it ends or its `shutdown` is cancelled.
    fn serve_connection<S: Io>(
        self: Arc<Self>,
        accepted: Accepted<S>,
    ) -> impl Future<Output = ()> + Send;
}

/// What every listener of a node shares: the connection caps, the PROXY protocol
/// setting, and how refusals are counted.
#[derive(Clone)]
pub struct ConnectionLimits {
    /// One permit per open connection, all listeners together.
    slots: Arc<Semaphore>,
    max_connections: usize,
    per_address: AddressLimit,
    budget: UnauthorisedBudget,
    /// The networks allowed to send PROXY headers, when `ingest.proxy_protocol` is on.
    proxy_trusted: Option<Arc<Vec<ipnet::IpNet>>>,
    /// Bounds the PROXY header and the TLS handshake, each.
    handshake_timeout: Duration,
    /// `connections_refused_total{transport, reason}`.
    refused: IntCounterVec,
}

impl ConnectionLimits {
    /// `ingest.max_connections` connections at once, `max_connections_per_address` from
    /// one address, the PROXY protocol if `proxy_protocol`, PROXY headers and TLS
    /// handshakes bounded by `ingest.handshake_timeout_secs`, the unauthorised-memory
    /// budget; refusals counted in `refused`, a counter labelled `transport, reason`.
    pub fn new(ingest: &IngestSection, refused: IntCounterVec) -> Self {
        // Validated at start; were it not, an unreadable list trusts nobody.
        let trusted = ingest.proxy_trusted_nets().unwrap_or_default();
        Self {
            slots: Arc::new(Semaphore::new(ingest.max_connections)),
            max_connections: ingest.max_connections,
            per_address: AddressLimit::new(ingest.max_connections_per_address),
            budget: UnauthorisedBudget::new(ingest.unauthorised_memory_bytes),
            proxy_trusted: ingest.proxy_protocol.then(|| Arc::new(trusted)),
            handshake_timeout: ingest.handshake_timeout(),
            refused,
        }
    }

    /// The node's budget for unauthorised connections (for tests and load reports).
    pub fn unauthorised_budget(&self) -> &UnauthorisedBudget {
        &self.budget
    }

    /// Connections per address (for tests).
    pub fn per_address(&self) -> &AddressLimit {
        &self.per_address
    }

    /// `unauthorised_held_bytes` (what connections not yet authorised hold now, charged
    /// to `ingest.unauthorised_memory_bytes`), `connections_limit` and
    /// `connections_open`, read at scrape time.
    pub fn collector(&self) -> Box<dyn prometheus::core::Collector> {
        Box::new(LimitsCollector {
            budget: self.budget.clone(),
            slots: self.slots.clone(),
            max_connections: self.max_connections,
            templates: LimitsFamilies::new(),
        })
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

/// The connection cap's figures, read at scrape time: `unauthorised_held_bytes` (bytes
/// held in the buffers of connections not yet authorised), `connections_limit`
/// (`ingest.max_connections`) and `connections_open` (all listeners together), so an
/// alert can compare the two without knowing the config.
struct LimitsCollector {
    budget: UnauthorisedBudget,
    slots: Arc<Semaphore>,
    max_connections: usize,
    templates: LimitsFamilies,
}

struct LimitsFamilies {
    held: prometheus::IntGauge,
    limit: prometheus::IntGauge,
    open: prometheus::IntGauge,
}

impl LimitsFamilies {
    fn new() -> LimitsFamilies {
        // Constant names: building them cannot fail.
        let gauge = |name: &str, help: &str| {
            prometheus::IntGauge::new(name, help).expect("valid metric definition")
        };
        LimitsFamilies {
            held: gauge(
                "unauthorised_held_bytes",
                "Bytes held in the buffers of connections not yet authorised, charged to \
                 ingest.unauthorised_memory_bytes",
            ),
            limit: gauge(
                "connections_limit",
                "RTMP connections this node takes at once, all listeners together (ingest.max_connections)",
            ),
            open: gauge(
                "connections_open",
                "RTMP connections holding one of the ingest.max_connections slots now",
            ),
        }
    }

    fn collectors(&self) -> [&dyn prometheus::core::Collector; 3] {
        [&self.held, &self.limit, &self.open]
    }
}

impl prometheus::core::Collector for LimitsCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.templates
            .collectors()
            .into_iter()
            .flat_map(|c| c.desc())
            .collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let f = LimitsFamilies::new();
        f.held
            .set(i64::try_from(self.budget.used()).unwrap_or(i64::MAX));
        f.limit
            .set(i64::try_from(self.max_connections).unwrap_or(i64::MAX));
        let open = self
            .max_connections
            .saturating_sub(self.slots.available_permits());
        f.open.set(i64::try_from(open).unwrap_or(i64::MAX));
        f.collectors()
            .into_iter()
            .flat_map(|c| c.collect())
            .collect()
    }
}

/// Spawns into `tasks` the accept loops of the node's RTMP listener and of its RTMPS,
/// RTSP and RTSPS listeners where they are on; all share `limits`, `handler` and
/// `shards`. Call it on shard 0's runtime (the one that made `shards`).
pub fn spawn_listeners<H: ConnectionHandler>(
    tasks: &mut NodeTasks,
    listeners: StreamListeners,
    limits: ConnectionLimits,
    handler: Arc<H>,
    shards: Arc<Shards>,
) {
    let shutdown = tasks.shutdown_token();
    let StreamListeners {
        rtmp,
        rtmps,
        rtsp,
        rtsps,
    } = listeners;
    let plain = [(Some(rtmp), Protocol::Rtmp), (rtsp, Protocol::Rtsp)];
    let tls = [(rtmps, Protocol::Rtmp), (rtsps, Protocol::Rtsp)];
    for (listener, protocol) in plain {
        let Some(listener) = listener else { continue };
        let (limits, handler, shards) = (limits.clone(), handler.clone(), shards.clone());
        tasks.spawn(serve(
            listener,
            None,
            protocol,
            limits,
            handler,
            shards,
            shutdown.clone(),
        ));
    }
    for (listener, protocol) in tls {
        let Some(TlsListener { listener, tls }) = listener else {
            continue;
        };
        let (limits, handler, shards) = (limits.clone(), handler.clone(), shards.clone());
        tasks.spawn(serve(
            listener,
            Some(tls),
            protocol,
            limits,
            handler,
            shards,
            shutdown.clone(),
        ));
    }
}

/// The listeners whose connections carry streams (not HTTP): what
/// [`spawn_listeners`] serves. RTMP is always on; the rest where configured.
pub struct StreamListeners {
    pub rtmp: TcpListener,
    pub rtmps: Option<TlsListener>,
    pub rtsp: Option<TcpListener>,
    pub rtsps: Option<TlsListener>,
}

/// Accepts connections on `listener` (TLS-wrapped when `tls` is set) until `shutdown`,
/// handing each to `handler` on a task of its own, on the least loaded of `shards`.
/// Runs on shard 0's runtime.
pub async fn serve<H: ConnectionHandler>(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    protocol: Protocol,
    limits: ConnectionLimits,
    handler: Arc<H>,
    shards: Arc<Shards>,
    shutdown: CancellationToken,
) {
    let transport = Transport::of(protocol, tls.is_some());
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (stream, socket_peer) = tokio::select! {
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
            tracing::warn!(client = %socket_peer, %transport, limit = limits.max_connections,
                "connection refused: too many connections");
            continue; // dropping the stream closes it
        };
        if let Some(trusted) = &limits.proxy_trusted {
            let ip = socket_peer.ip().to_canonical();
            if !trusted.iter().any(|net| net.contains(&ip)) {
                limits.refuse(transport, reason::PROXY_UNTRUSTED);
                tracing::warn!(client = %socket_peer, %transport,
                    "connection refused: ingest.proxy_protocol is on and {ip} is not in \
                     ingest.proxy_trusted");
                continue;
            }
        }
        let _ = stream.set_nodelay(true);
        let slot = shards.pick();
        let shard = slot.shard();
        let pending = Pending {
            socket_peer,
            transport,
            permit,
            slot,
            limits: limits.clone(),
            handler: handler.clone(),
            acceptor: acceptor.clone(),
            shutdown: shutdown.clone(),
        };
        if shard == 0 {
            tokio::spawn(pending.serve(stream).in_current_span());
            continue;
        }
        // To another shard: the socket leaves this runtime's reactor and joins that one's
        // (`from_std` registers it with the runtime it runs on), so its readiness wakes
        // the connection's own thread.
        let socket = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                limits.refuse(transport, reason::SHARD_HANDOFF);
                tracing::warn!(client = %socket_peer, %transport, shard, error = %e,
                    "connection closed: cannot hand it to its shard");
                continue;
            }
        };
        shards.handle(shard).spawn(
            async move {
                match TcpStream::from_std(socket) {
                    Ok(stream) => pending.serve(stream).await,
                    Err(e) => {
                        pending.limits.refuse(transport, reason::SHARD_HANDOFF);
                        tracing::warn!(client = %socket_peer, %transport, shard, error = %e,
                            "connection closed: its shard cannot take it");
                    }
                }
            }
            .in_current_span(),
        );
    }
}

/// An accepted socket on its way to its task: what the steps after the accept need.
struct Pending<H> {
    socket_peer: SocketAddr,
    transport: Transport,
    /// Its place under `ingest.max_connections`, held to the connection's end.
    permit: tokio::sync::OwnedSemaphorePermit,
    /// Its place on its shard, likewise.
    slot: ShardSlot,
    limits: ConnectionLimits,
    handler: Arc<H>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
}

impl<H: ConnectionHandler> Pending<H> {
    /// The PROXY header, the per-address cap and the TLS handshake, then the handler.
    async fn serve(self, stream: TcpStream) {
        let Pending {
            socket_peer,
            transport,
            permit,
            slot,
            limits,
            handler,
            acceptor,
            shutdown,
        } = self;
        let (_permit, shard) = (permit, slot.shard());
        let _slot = slot;
        let Some((io, peer)) = limits.proxy_header(stream, socket_peer, transport).await else {
            return;
        };
        let _address_slot = match limits.per_address.try_open(peer.ip()) {
            Ok(slot) => slot,
            Err(e) => {
                limits.refuse(transport, reason::TOO_MANY_FROM_ADDRESS);
                tracing::warn!(client = %peer, %transport, limit = e.max,
                "connection refused: {e}");
                return;
            }
        };
        let unauthorised = UnauthorisedCharge {
            charge: limits.budget.charge(),
            refused: limits
                .refused
                .with_label_values(&[transport.as_str(), reason::UNAUTHORISED_MEMORY]),
        };
        let Some(acceptor) = acceptor else {
            let accepted = Accepted {
                io,
                peer,
                transport,
                shutdown,
                unauthorised,
                shard,
            };
            return handler.serve_connection(accepted).await;
        };
        let timeout = limits.handshake_timeout;
        match tokio::time::timeout(timeout, acceptor.accept(io)).await {
            Ok(Ok(tls_stream)) => {
                let accepted = Accepted {
                    io: tls_stream,
                    peer,
                    transport,
                    shutdown,
                    unauthorised,
                    shard,
                };
                // Boxed: a TLS connection's state is larger (its stream's record
                // layer, 1.2 KB, inside every future of it), and this task is
                // sized by its largest branch: inline, every plain RTMP
                // connection's task was 11.8 KiB for the TLS branch's 10 KB
                // (`-Zprint-type-sizes`, 2026-12-04).
                Box::pin(handler.serve_connection(accepted)).await
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
}

impl ConnectionLimits {
    /// With the PROXY protocol on, reads `stream`'s header and gives the stream and the
    /// client it names (the socket's peer for LOCAL and UNKNOWN); `None`, counted and
    /// logged, if there is no valid header in time. Off: the stream and its peer.
    async fn proxy_header(
        &self,
        stream: TcpStream,
        socket_peer: SocketAddr,
        transport: Transport,
    ) -> Option<(Socket, SocketAddr)> {
        if self.proxy_trusted.is_none() {
            return Some((Rewound::plain(stream), socket_peer));
        }
        let timeout = self.handshake_timeout;
        let error = match tokio::time::timeout(timeout, proxied::read_header(stream)).await {
            Ok(Ok((header, io))) => {
                let peer = header.source.unwrap_or(socket_peer);
                tracing::debug!(client = %peer, balancer = %socket_peer, %transport,
                    version = header.version, "PROXY header read");
                return Some((io, peer));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no whole PROXY header within {timeout:?}"),
        };
        self.refuse(transport, reason::PROXY_HEADER);
        tracing::warn!(client = %socket_peer, %transport, %error,
            "connection refused: {error}");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Echoes one line's worth of bytes back, after the transport and the peer.
    struct Echo;

    impl ConnectionHandler for Echo {
        async fn serve_connection<S: Io>(self: Arc<Self>, accepted: Accepted<S>) {
            let (mut io, transport) = (accepted.io, accepted.transport);
            let mut buf = [0u8; 16];
            if let Ok(n) = io.read(&mut buf).await {
                let tag = format!("{transport} {} ", accepted.peer);
                let _ = io.write_all(tag.as_bytes()).await;
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
        let ingest = IngestSection {
            max_connections: max,
            ..IngestSection::default()
        };
        serve_with(tls, ingest).await
    }

    async fn serve_with(tls: Option<Arc<rustls::ServerConfig>>, ingest: IngestSection) -> Served {
        serve_on(tls, ingest, Arc::new(Echo), Shards::single()).await
    }

    async fn serve_on<H: ConnectionHandler>(
        tls: Option<Arc<rustls::ServerConfig>>,
        ingest: IngestSection,
        handler: Arc<H>,
        shards: Arc<Shards>,
    ) -> Served {
        let refused = IntCounterVec::new(
            prometheus::Opts::new("refused", "refused"),
            &["transport", "reason"],
        )
        .expect("valid");
        let limits = ConnectionLimits::new(&ingest, refused.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(
            listener,
            tls,
            Protocol::Rtmp,
            limits.clone(),
            handler,
            shards,
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

    /// Answers with the connection's shard and the thread that runs it, once the client
    /// says "go" (so the test can hold several open at once).
    struct WhereAmI;

    impl ConnectionHandler for WhereAmI {
        async fn serve_connection<S: Io>(self: Arc<Self>, accepted: Accepted<S>) {
            let mut io = accepted.io;
            let mut buf = [0u8; 2];
            if io.read_exact(&mut buf).await.is_ok() {
                let thread = std::thread::current().name().unwrap_or("?").to_string();
                let _ = io
                    .write_all(format!("{} {thread}", accepted.shard).as_bytes())
                    .await;
            }
        }
    }

    /// Waits (briefly) for the shards' open connections to be `want`.
    async fn open_become(shards: &Shards, want: Vec<usize>) {
        for _ in 0..200 {
            if shards.open_connections() == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(shards.open_connections(), want);
    }

    #[tokio::test]
    async fn connections_are_spread_over_the_shards_and_run_on_their_threads() {
        let shards = Shards::start(std::num::NonZeroUsize::new(2).expect("2")).expect("shards");
        let served = serve_on(
            None,
            IngestSection::default(),
            Arc::new(WhereAmI),
            shards.clone(),
        )
        .await;
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(TcpStream::connect(served.addr).await.expect("connect"));
        }
        open_become(&shards, vec![2, 2]).await;
        let here = std::thread::current().name().unwrap_or("?").to_string();
        let mut on = Vec::new();
        for mut c in clients {
            c.write_all(b"go").await.expect("write");
            let mut reply = String::new();
            c.read_to_string(&mut reply).await.expect("read");
            on.push(reply);
        }
        on.sort();
        assert_eq!(
            on,
            [
                format!("0 {here}"),
                format!("0 {here}"),
                "1 longhaul-shard-1".to_string(),
                "1 longhaul-shard-1".to_string()
            ]
        );
        open_become(&shards, vec![0, 0]).await;
        served.stop().await;
        shards.stop().await;
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
        let local = first.local_addr().expect("addr");
        assert_eq!(reply, format!("rtmp {local} hi").as_bytes());
        served.stop().await;
    }

    impl Served {
        /// Waits (briefly) for `reason` to be counted `n` times on `transport`.
        async fn counted(&self, transport: &str, reason: &str, n: u64) {
            let counter = self.refused.with_label_values(&[transport, reason]);
            for _ in 0..200 {
                if counter.get() >= n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(counter.get(), n, "{reason}");
        }
    }

    /// Sends `first`, then "hi"; returns what the server answered before closing.
    async fn exchange(addr: SocketAddr, first: &[u8]) -> Vec<u8> {
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The server may have closed already: what it answered is what counts.
        let _ = client.write_all(first).await;
        let _ = client.write_all(b"hi").await;
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut reply))
            .await
            .expect("closed in time");
        reply
    }

    fn behind_balancer(trusted: &str) -> IngestSection {
        IngestSection {
            proxy_protocol: true,
            proxy_trusted: vec![trusted.into()],
            handshake_timeout_secs: 1.0,
            ..IngestSection::default()
        }
    }

    #[tokio::test]
    async fn a_proxy_header_from_a_trusted_balancer_names_the_client() {
        let served = serve_with(None, behind_balancer("127.0.0.0/8")).await;
        let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 1935\r\n";
        let reply = exchange(served.addr, v1).await;
        assert_eq!(reply, b"rtmp 203.0.113.7:56324 hi");
        // v2, LOCAL: the balancer's own connection keeps the socket's address.
        let mut local = crate::proxy_header::V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        let reply = String::from_utf8(exchange(served.addr, &local).await).expect("text");
        assert!(reply.starts_with("rtmp 127.0.0.1:"), "{reply}");
        // Without a header, or with a broken one: closed, counted.
        assert_eq!(exchange(served.addr, &[3u8; 64]).await, b"");
        assert_eq!(exchange(served.addr, b"PROXY TCP4 1.2.3.4\n").await, b"");
        served.counted("rtmp", reason::PROXY_HEADER, 2).await;
        // One that never finishes its header is let go after the handshake timeout.
        let mut slow = tokio::net::TcpStream::connect(served.addr)
            .await
            .expect("connect");
        slow.write_all(b"PROXY TCP4 ").await.expect("write");
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest))
            .await
            .expect("closed by the server");
        served.counted("rtmp", reason::PROXY_HEADER, 3).await;
        served.stop().await;
    }

    #[tokio::test]
    async fn with_the_proxy_protocol_on_untrusted_sockets_are_refused() {
        let served = serve_with(None, behind_balancer("10.0.0.0/8")).await;
        let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 1935\r\n";
        assert_eq!(exchange(served.addr, v1).await, b"");
        served.counted("rtmp", reason::PROXY_UNTRUSTED, 1).await;
        served.counted("rtmp", reason::PROXY_HEADER, 0).await;
        served.stop().await;
    }

    #[tokio::test]
    async fn connections_per_address_are_capped_on_the_address_the_header_names() {
        let ingest = IngestSection {
            max_connections_per_address: 1,
            ..behind_balancer("127.0.0.1")
        };
        let served = serve_with(None, ingest).await;
        let header = |ip: &str| format!("PROXY TCP4 {ip} 192.0.2.1 4000 1935\r\n");
        // The first client from 203.0.113.7 holds its place while its handler reads.
        let mut first = tokio::net::TcpStream::connect(served.addr)
            .await
            .expect("connect");
        first
            .write_all(header("203.0.113.7").as_bytes())
            .await
            .expect("write");
        for _ in 0..200 {
            if served.limits.per_address().sources() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // All from 127.0.0.1: only the header's address tells them apart.
        assert_eq!(
            exchange(served.addr, header("203.0.113.7").as_bytes()).await,
            b""
        );
        served
            .counted("rtmp", reason::TOO_MANY_FROM_ADDRESS, 1)
            .await;
        let other = exchange(served.addr, header("203.0.113.8").as_bytes()).await;
        assert_eq!(other, b"rtmp 203.0.113.8:4000 hi");
        first.write_all(b"hi").await.expect("write");
        let mut reply = Vec::new();
        first.read_to_end(&mut reply).await.expect("read");
        assert_eq!(reply, b"rtmp 203.0.113.7:4000 hi");
        // Its place was given back.
        let again = exchange(served.addr, header("203.0.113.7").as_bytes()).await;
        assert_eq!(again, b"rtmp 203.0.113.7:4000 hi");
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
