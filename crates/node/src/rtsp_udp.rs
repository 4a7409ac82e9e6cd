//! RTP and RTCP over UDP for RTSP publishes: the node's two UDP sockets, shared by every
//! RTSP connection, and the routes that send each datagram to its connection.
//!
//! As MediaMTX does, a node listens on one RTP port and one RTCP port (`[rtsp]
//! udp_listen`, RTCP on the next port) rather than a pair per session: a firewall opens
//! two ports, not a range. A datagram is told apart by its source: a SETUP over UDP names
//! the client's ports, and the connection registers (client address, port) → (track,
//! RTP or RTCP) for the connection's peer address only. A datagram from a source no
//! route names is dropped and counted (`rtsp_packets_total{outcome="unrouted"}`), so a
//! third party cannot inject media into someone's stream without also spoofing the
//! publisher's address and ports.
//!
//! A route's connection gets its datagrams through a bounded queue; when the connection
//! does not keep up, datagrams are dropped there and counted
//! (`rtsp_packets_total{outcome="overflow"}`): UDP media is loss-tolerant, and the
//! socket's reader never waits on one slow connection.

use crate::metrics::rtsp_outcome;
use bytes::{Bytes, BytesMut};
use prometheus::IntCounterVec;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Datagrams queued per connection: 256, about half a second of a 4 Mbit/s stream's RTP
/// (1,400-byte packets), past which the connection is not keeping up with its socket.
pub const ROUTE_QUEUE: usize = 256;

/// Largest datagram read: an RTP packet over any path's MTU fits.
const MAX_DATAGRAM: usize = 2048;

/// One datagram for a connection.
#[derive(Debug)]
pub struct Datagram {
    pub track: usize,
    pub rtcp: bool,
    pub data: Bytes,
}

/// Where a source's datagrams go.
struct Route {
    track: usize,
    rtcp: bool,
    /// The connection that registered the route, so it removes only its own.
    owner: u64,
    queue: mpsc::Sender<Datagram>,
}

type Routes = Arc<Mutex<HashMap<SocketAddr, Route>>>;

/// The node's RTP and RTCP sockets and their routes.
pub struct RtspUdp {
    rtp: Arc<UdpSocket>,
    rtcp: Arc<UdpSocket>,
    routes: Routes,
    packets: IntCounterVec,
    next_owner: std::sync::atomic::AtomicU64,
}

/// Binds `[rtsp] udp_listen` when set (a taken port stops the node at start with the
/// address named); the node then spawns [`RtspUdp::serve`].
pub async fn bind(
    section: &crate::config::RtspSection,
    series: &crate::metrics::ConnectionSeries,
) -> Result<Option<Arc<RtspUdp>>, crate::ListenError> {
    let Some(addr) = section.udp_listen else {
        return Ok(None);
    };
    let udp = RtspUdp::bind(addr, series.rtsp_packets.clone())
        .await
        .map_err(|source| crate::ListenError::Bind {
            what: "RTSP over UDP (RTP, and RTCP on the next port)",
            addr,
            source,
        })?;
    Ok(Some(udp))
}

impl RtspUdp {
    /// Binds RTP on `rtp` and RTCP on the next port of the same address. Port 0 (tests)
    /// takes an even port whose next one is free, as RFC 3550 (11) asks of RTP ports.
    pub async fn bind(rtp: SocketAddr, packets: IntCounterVec) -> std::io::Result<Arc<RtspUdp>> {
        // 16 tries: a free even port with a free odd one after it is the common case.
        let tries = if rtp.port() == 0 { 16 } else { 1 };
        let mut last = None;
        for _ in 0..tries {
            let rtp_socket = UdpSocket::bind(rtp).await?;
            let real = rtp_socket.local_addr()?;
            if rtp.port() == 0 && real.port() % 2 == 1 {
                continue;
            }
            let rtcp_addr = SocketAddr::new(real.ip(), real.port().wrapping_add(1));
            match UdpSocket::bind(rtcp_addr).await {
                Ok(rtcp_socket) => {
                    return Ok(Arc::new(RtspUdp {
                        rtp: Arc::new(rtp_socket),
                        rtcp: Arc::new(rtcp_socket),
                        routes: Arc::default(),
                        packets,
                        next_owner: std::sync::atomic::AtomicU64::new(1),
                    }))
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "no free even port with a free port after it",
            )
        }))
    }

    /// The RTP and RTCP ports, for the SETUP answer's `server_port`.
    pub fn ports(&self) -> (u16, u16) {
        let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or_default();
        (port(&self.rtp), port(&self.rtcp))
    }

    /// Reads both sockets until `shutdown`, routing each datagram.
    pub async fn serve(self: Arc<Self>, shutdown: CancellationToken) {
        let rtp = self.clone().read_loop(self.rtp.clone(), false);
        let rtcp = self.clone().read_loop(self.rtcp.clone(), true);
        tokio::select! {
            _ = rtp => {}
            _ = rtcp => {}
            _ = shutdown.cancelled() => {}
        }
    }

    async fn read_loop(self: Arc<Self>, socket: Arc<UdpSocket>, rtcp_port: bool) {
        let mut buf = BytesMut::new();
        loop {
            buf.reserve(MAX_DATAGRAM);
            let (n, from) = match socket.recv_buf_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    // ICMP port-unreachable from a client that went away surfaces here
                    // on some systems: not the socket's end.
                    tracing::debug!(error = %e, "RTSP UDP receive failed");
                    continue;
                }
            };
            let data = buf.split_to(n).freeze();
            self.route(from, rtcp_port, data);
        }
    }

    /// Hands a datagram from `from` to its connection, or counts it.
    fn route(&self, from: SocketAddr, rtcp_port: bool, data: Bytes) {
        let outcome = {
            let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            match routes.get(&from) {
                // RTP sent to the RTCP port (or the other way) is not the track's.
                Some(route) if route.rtcp == rtcp_port => {
                    let datagram = Datagram {
                        track: route.track,
                        rtcp: route.rtcp,
                        data,
                    };
                    match route.queue.try_send(datagram) {
                        Ok(()) => None,
                        Err(_) => Some(rtsp_outcome::OVERFLOW),
                    }
                }
                _ => Some(rtsp_outcome::UNROUTED),
            }
        };
        if let Some(outcome) = outcome {
            self.packets.with_label_values(&[outcome]).inc();
        }
    }

    /// A connection's routes: datagrams from its client's ports for its tracks, queued
    /// for it. Removed when the returned value is dropped.
    pub fn connection(self: &Arc<Self>) -> (UdpRoutes, mpsc::Receiver<Datagram>) {
        let (queue, received) = mpsc::channel(ROUTE_QUEUE);
        let owner = self
            .next_owner
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let routes = UdpRoutes {
            udp: self.clone(),
            owner,
            queue,
            sources: Vec::new(),
        };
        (routes, received)
    }
}

/// One connection's routes (see [`RtspUdp::connection`]).
pub struct UdpRoutes {
    udp: Arc<RtspUdp>,
    owner: u64,
    queue: mpsc::Sender<Datagram>,
    sources: Vec<SocketAddr>,
}

impl UdpRoutes {
    /// Routes `client`'s datagrams from `rtp_port` and `rtcp_port` to `track`. A source
    /// another connection holds is taken over: the newer SETUP is the live one.
    pub fn add(&mut self, client: std::net::IpAddr, track: usize, rtp_port: u16, rtcp_port: u16) {
        let mut routes = self.udp.routes.lock().unwrap_or_else(|e| e.into_inner());
        for (port, rtcp) in [(rtp_port, false), (rtcp_port, true)] {
            let source = SocketAddr::new(client, port);
            routes.insert(
                source,
                Route {
                    track,
                    rtcp,
                    owner: self.owner,
                    queue: self.queue.clone(),
                },
            );
            self.sources.push(source);
        }
    }

    /// The node's RTP and RTCP ports.
    pub fn ports(&self) -> (u16, u16) {
        self.udp.ports()
    }
}

impl Drop for UdpRoutes {
    fn drop(&mut self) {
        let mut routes = self.udp.routes.lock().unwrap_or_else(|e| e.into_inner());
        for source in &self.sources {
            if routes.get(source).is_some_and(|r| r.owner == self.owner) {
                routes.remove(source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Opts;

    fn counter() -> IntCounterVec {
        IntCounterVec::new(Opts::new("rtsp_packets_total", "test"), &["outcome"]).unwrap()
    }

    #[tokio::test]
    async fn datagrams_reach_the_connection_of_their_source_only() {
        let packets = counter();
        let udp = RtspUdp::bind("127.0.0.1:0".parse().unwrap(), packets.clone())
            .await
            .unwrap();
        let (rtp_port, rtcp_port) = udp.ports();
        assert_eq!(rtcp_port, rtp_port + 1);
        let shutdown = CancellationToken::new();
        tokio::spawn(udp.clone().serve(shutdown.clone()));

        let client_rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client_rtcp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (mut routes, mut received) = udp.connection();
        let port = |s: &UdpSocket| s.local_addr().unwrap().port();
        routes.add(
            "127.0.0.1".parse().unwrap(),
            1,
            port(&client_rtp),
            port(&client_rtcp),
        );

        let to = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        stranger.send_to(b"not yours", to(rtp_port)).await.unwrap();
        client_rtp.send_to(b"rtp", to(rtp_port)).await.unwrap();
        client_rtcp.send_to(b"rtcp", to(rtcp_port)).await.unwrap();
        // RTP sent to the RTCP port is not taken as RTCP.
        client_rtp
            .send_to(b"misdirected", to(rtcp_port))
            .await
            .unwrap();

        // The two ports are read side by side: which comes first is the scheduler's.
        let mut got = Vec::new();
        for _ in 0..2 {
            let d = received.recv().await.unwrap();
            got.push((d.track, d.rtcp, d.data.to_vec()));
        }
        got.sort();
        assert_eq!(
            got,
            [(1, false, b"rtp".to_vec()), (1, true, b"rtcp".to_vec())]
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(
            packets.with_label_values(&[rtsp_outcome::UNROUTED]).get(),
            2
        );

        // Gone with the connection.
        drop(routes);
        client_rtp.send_to(b"late", to(rtp_port)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(
            packets.with_label_values(&[rtsp_outcome::UNROUTED]).get(),
            3
        );
        shutdown.cancel();
    }
}
