//! QUIC endpoints on UDP sockets sized for long, fast paths.
//!
//! The socket is made here (socket2) rather than by quinn so its buffers can be asked
//! for before binding; the kernel caps them at `net.core.rmem_max`/`wmem_max`, and what it
//! granted is logged, because a silently small receive buffer shows up only as loss.

use crate::settings::{TransportSettings, TunnelListenSection, TunnelSection};
use crate::stream::TunnelError;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use std::sync::Arc;

/// Buffer sizes the kernel granted a tunnel socket.
#[derive(Debug, Clone, Copy)]
pub struct SocketBuffers {
    pub recv: usize,
    pub send: usize,
}

/// Binds a UDP socket on `addr` with the buffers `settings` ask for.
pub fn udp_socket(
    addr: SocketAddr,
    settings: &TransportSettings,
) -> Result<(std::net::UdpSocket, SocketBuffers), TunnelError> {
    let bind_error = |source| TunnelError::Bind { addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(bind_error)?;
    // Asking too much is not an error: the kernel grants what it allows.
    let _ = socket.set_recv_buffer_size(settings.udp_recv_buffer);
    let _ = socket.set_send_buffer_size(settings.udp_send_buffer);
    socket.bind(&addr.into()).map_err(bind_error)?;
    socket.set_nonblocking(true).map_err(bind_error)?;
    // Linux reports twice the usable size (it counts its bookkeeping); halve it to
    // compare with what was asked.
    let granted = SocketBuffers {
        recv: socket.recv_buffer_size().unwrap_or(0) / 2,
        send: socket.send_buffer_size().unwrap_or(0) / 2,
    };
    let local = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .unwrap_or(addr);
    if granted.recv < settings.udp_recv_buffer || granted.send < settings.udp_send_buffer {
        tracing::warn!(%local, asked_recv = settings.udp_recv_buffer, granted_recv = granted.recv,
            asked_send = settings.udp_send_buffer, granted_send = granted.send,
            "the kernel granted smaller UDP buffers than asked; raise net.core.rmem_max and net.core.wmem_max");
    } else {
        tracing::info!(%local, recv = granted.recv, send = granted.send, "tunnel UDP buffers");
    }
    Ok((socket.into(), granted))
}

fn endpoint(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
    addr: SocketAddr,
) -> Result<quinn::Endpoint, TunnelError> {
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| TunnelError::Bind { addr, source })
}

/// The edge's endpoint: one socket for the tunnels to every origin.
pub fn client_endpoint(section: &TunnelSection) -> Result<quinn::Endpoint, TunnelError> {
    section.validate()?;
    let (socket, _) = udp_socket(section.bind, &section.transport)?;
    endpoint(socket, None, section.bind)
}

/// A client endpoint on `bind`: what an origin dials its peer origins from (origin
/// peering), with the transport settings of its own tunnel.
pub fn client_endpoint_at(
    bind: SocketAddr,
    transport: &TransportSettings,
) -> Result<quinn::Endpoint, TunnelError> {
    transport.validate()?;
    let (socket, _) = udp_socket(bind, transport)?;
    endpoint(socket, None, bind)
}

/// The origin's endpoint, accepting edges with certificates of the cluster CA (see
/// [`crate::tls::OriginTls::load`]).
pub fn server_endpoint(
    section: &TunnelListenSection,
    tls: &crate::tls::OriginTls,
) -> Result<quinn::Endpoint, TunnelError> {
    section.transport.validate()?;
    let mut server = quinn::ServerConfig::with_crypto(tls.crypto());
    server.transport_config(Arc::new(section.transport.transport_config()));
    let (socket, _) = udp_socket(section.listen, &section.transport)?;
    endpoint(socket, Some(server), section.listen)
}
