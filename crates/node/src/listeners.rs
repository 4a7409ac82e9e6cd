//! Binding a node's TCP listeners (RTMP, RTMPS with its certificate, RTSP and RTSPS when
//! configured, HTTP) before it reports ready.
//!
//! A node binds everything up front so a taken port or an unreadable certificate stops it
//! at start with the address or file named, and so its caller learns the real addresses
//! (port 0 in tests) before anything connects.

use crate::accept::StreamListeners;
use crate::config::{HttpSection, RtmpSection, RtmpsSection, RtspSection};
use crate::tls::{self, TlsError};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Why a node's listeners could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("RTMPS is configured to listen on {0} but rtmps.cert and rtmps.key are not both set")]
    RtmpsWithoutCertificate(SocketAddr),
    #[error("RTSPS is configured to listen on {0} (rtsp.tls_listen) but rtmps.cert and rtmps.key, whose certificate it serves, are not both set")]
    RtspsWithoutCertificate(SocketAddr),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The RTMPS listener and the TLS configuration its connections are wrapped in.
pub struct TlsListener {
    pub listener: TcpListener,
    pub tls: Arc<rustls::ServerConfig>,
}

/// A node's bound listeners and their real addresses.
pub struct Listeners {
    /// RTMP, RTMPS, RTSP and RTSPS: for [`crate::accept::spawn_listeners`].
    pub streams: StreamListeners,
    pub http: TcpListener,
    pub rtmp_addr: SocketAddr,
    pub rtmps_addr: Option<SocketAddr>,
    pub rtsp_addr: Option<SocketAddr>,
    pub rtsps_addr: Option<SocketAddr>,
    pub http_addr: SocketAddr,
    /// The RTMPS certificate files, for the node's certificate watcher.
    pub rtmps_certificate: Option<Arc<longhaul_certs::Credentials>>,
}

impl Listeners {
    /// What the node's certificate watcher reloads for these listeners (the RTMPS
    /// certificate, when RTMPS is on).
    pub fn reloadables(&self) -> Vec<Arc<dyn longhaul_certs::Reload>> {
        self.rtmps_certificate
            .iter()
            .map(|c| c.clone() as Arc<dyn longhaul_certs::Reload>)
            .collect()
    }

    /// Loads the RTMPS certificate (if RTMPS or RTSPS is on) and binds every listener.
    pub async fn bind(
        rtmp: &RtmpSection,
        rtmps: &RtmpsSection,
        rtsp: &RtspSection,
        http: &HttpSection,
    ) -> Result<Listeners, ListenError> {
        let wants_tls = rtmps.listen.is_some() || rtsp.tls_listen.is_some();
        let tls = match (wants_tls, &rtmps.cert, &rtmps.key) {
            (false, _, _) => None,
            (true, Some(cert), Some(key)) => Some(tls::rtmps_tls(cert, key)?),
            (true, _, _) => {
                return Err(match rtmps.listen {
                    Some(addr) => ListenError::RtmpsWithoutCertificate(addr),
                    None => {
                        ListenError::RtspsWithoutCertificate(rtsp.tls_listen.unwrap_or(rtmp.listen))
                    }
                })
            }
        };
        let (rtmp, rtmp_addr) = bind("RTMP", rtmp.listen).await?;
        let rtmps_certificate = tls.as_ref().map(|t| t.credentials.clone());
        let tls_config = tls.map(|t| t.config);
        let (rtmps, rtmps_addr) = match (rtmps.listen, &tls_config) {
            (Some(addr), Some(tls)) => {
                let (listener, addr) = bind("RTMPS", addr).await?;
                let tls = tls.clone();
                (Some(TlsListener { listener, tls }), Some(addr))
            }
            _ => (None, None),
        };
        let rtsp_tls_listen = rtsp.tls_listen;
        let (rtsp, rtsp_addr) = match rtsp.listen {
            Some(addr) => {
                let (listener, addr) = bind("RTSP", addr).await?;
                (Some(listener), Some(addr))
            }
            None => (None, None),
        };
        let (rtsps, rtsps_addr) = match (rtsp_tls_listen, &tls_config) {
            (Some(addr), Some(tls)) => {
                let (listener, addr) = bind("RTSPS", addr).await?;
                let tls = tls.clone();
                (Some(TlsListener { listener, tls }), Some(addr))
            }
            _ => (None, None),
        };
        let (http, http_addr) = bind("HTTP", http.listen).await?;
        Ok(Listeners {
            streams: StreamListeners {
                rtmp,
                rtmps,
                rtsp,
                rtsps,
            },
            http,
            rtmp_addr,
            rtmps_addr,
            rtsp_addr,
            rtsps_addr,
            http_addr,
            rtmps_certificate,
        })
    }
}

/// Binds `addr`, returning the listener and its real address.
async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ListenError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { what, addr, source })?;
    // local_addr of a bound socket only fails on a closed descriptor; the asked address
    // is then the best answer left.
    let real = listener.local_addr().unwrap_or(addr);
    Ok((listener, real))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_port() -> SocketAddr {
        ([127, 0, 0, 1], 0).into()
    }

    #[tokio::test]
    async fn binds_port_zero_and_reports_real_addresses() {
        let rtmp = RtmpSection { listen: any_port() };
        let http = HttpSection {
            listen: any_port(),
            ..HttpSection::default()
        };
        let l = Listeners::bind(
            &rtmp,
            &RtmpsSection::default(),
            &RtspSection::default(),
            &http,
        )
        .await
        .expect("binds");
        assert_ne!(l.rtmp_addr.port(), 0);
        assert_ne!(l.http_addr.port(), 0);
        assert!(l.streams.rtmps.is_none() && l.rtmps_addr.is_none());
        assert!(l.streams.rtsp.is_none() && l.rtsp_addr.is_none());
    }

    #[tokio::test]
    async fn rtmps_without_certificate_is_refused() {
        let rtmps = RtmpsSection {
            listen: Some(any_port()),
            ..RtmpsSection::default()
        };
        let err = Listeners::bind(
            &RtmpSection { listen: any_port() },
            &rtmps,
            &RtspSection::default(),
            &HttpSection::default(),
        )
        .await
        .err()
        .expect("refused");
        assert!(
            matches!(err, ListenError::RtmpsWithoutCertificate(_)),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_taken_port_names_the_listener() {
        let taken = TcpListener::bind(any_port()).await.expect("bind");
        let rtmp = RtmpSection {
            listen: taken.local_addr().expect("addr"),
        };
        let err = Listeners::bind(
            &rtmp,
            &RtmpsSection::default(),
            &RtspSection::default(),
            &HttpSection::default(),
        )
        .await
        .err()
        .expect("refused");
        assert!(err.to_string().contains("RTMP"), "{err}");
    }
}
