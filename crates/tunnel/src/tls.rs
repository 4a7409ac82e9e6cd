//! Mutual TLS for the tunnels: the cluster CA signs every node's certificate, one role
//! each.
//!
//! Origins present a certificate for their `server_name`, issued to serve
//! (`serverAuth`; and `clientAuth`, to dial their peer origins with it), and require a
//! client certificate from every edge or peer, issued to authenticate as a client
//! (`clientAuth`); both chain to the cluster CA and nothing else
//! (no web PKI roots), so a host that is not part of the cluster cannot open a tunnel,
//! an edge cannot be led to a host that merely holds some public certificate, and an
//! edge's certificate cannot serve as an origin (webpki checks the extended key usage
//! with the chain, in every handshake). TLS 1.3 only (QUIC requires it), with rustls's
//! safe defaults and the `ring` provider, negotiating the ALPN: [`crate::ALPNS`], version 2 preferred, version 1 for a peer
//! that speaks only that (an upgrade in progress).
//!
//! The certificate, key and CA are read through `longhaul_certs`'s slots, so the node's
//! watcher can swap them while tunnels run: [`OriginTls::reloadables`] and
//! [`EdgeTls::reloadables`] hand it what to watch (`what` = `tunnel`, and
//! `denied_certificates` on an origin with a deny list file). A tunnel that is up keeps
//! going on the certificates it was made with; the next handshake uses the new ones.
//! The origin does not resume TLS sessions: every connection's certificate is checked in
//! full against the CA and the deny list in force.

use crate::settings::{ClusterTlsPaths, TunnelListenSection};
use crate::ALPNS;
use longhaul_certs::slot::{PeerClientVerifier, PeerServerVerifier};
use longhaul_certs::{
    CredentialPaths, Credentials, DeniedCertificates, Fingerprint, Refusal, Reload, UnixTime, Usage,
};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls_pki_types::CertificateDer;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TunnelTlsError {
    #[error("tunnel TLS: {0}")]
    Files(#[from] Refusal),
    #[error("tunnel TLS: an origin needs both tls.cert and tls.key")]
    OriginWithoutCertificate,
    #[error("tunnel TLS: tls.cert and tls.key go together; only one is set")]
    HalfAPair,
    #[error("tunnel TLS configuration: {0}")]
    Config(String),
}

/// Whether this node presents a client certificate.
pub enum ClientIdentity {
    /// The normal case: a certificate from the cluster CA.
    Certificate,
    /// No certificate configured: every origin will refuse this edge.
    None,
}

fn config_error(e: impl std::fmt::Display) -> TunnelTlsError {
    TunnelTlsError::Config(e.to_string())
}

fn credential_paths(paths: &ClusterTlsPaths) -> CredentialPaths {
    CredentialPaths {
        ca: Some(paths.ca.clone()),
        cert: paths.cert.clone(),
        key: paths.key.clone(),
    }
}

/// The edge side: trust only the cluster CA, present this node's client certificate.
pub struct EdgeTls {
    credentials: Arc<Credentials>,
    identity: ClientIdentity,
    crypto: Arc<QuicClientConfig>,
}

impl EdgeTls {
    /// Reads and checks the files (the certificate must be the CA's, for `clientAuth`).
    pub fn load(paths: &ClusterTlsPaths) -> Result<EdgeTls, TunnelTlsError> {
        let identity = match (&paths.cert, &paths.key) {
            (Some(_), Some(_)) => ClientIdentity::Certificate,
            (None, None) => ClientIdentity::None,
            _ => return Err(TunnelTlsError::HalfAPair),
        };
        let credentials = Credentials::load(
            "tunnel",
            credential_paths(paths),
            Usage::Client,
            UnixTime::now(),
        )?;
        let trust = credentials
            .trust()
            .ok_or_else(|| config_error("no cluster CA"))?;
        let mut config = rustls::ClientConfig::builder_with_provider(longhaul_certs::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PeerServerVerifier(trust)))
            .with_client_cert_resolver(credentials.identity());
        config.alpn_protocols = ALPNS.iter().map(|a| a.to_vec()).collect();
        let crypto = Arc::new(QuicClientConfig::try_from(config).map_err(config_error)?);
        Ok(EdgeTls {
            credentials,
            identity,
            crypto,
        })
    }

    pub fn identity(&self) -> &ClientIdentity {
        &self.identity
    }

    /// The QUIC client configuration every tunnel of this edge dials with.
    pub fn crypto(&self) -> Arc<QuicClientConfig> {
        self.crypto.clone()
    }

    /// What the node's certificate watcher reloads.
    pub fn reloadables(&self) -> Vec<Arc<dyn Reload>> {
        vec![self.credentials.clone()]
    }
}

/// The origin side: present this node's server certificate, require a client
/// certificate from the cluster CA that is not on the deny list.
pub struct OriginTls {
    credentials: Arc<Credentials>,
    denied: Arc<DeniedCertificates>,
    crypto: Arc<QuicServerConfig>,
}

impl OriginTls {
    /// Reads and checks the files (the certificate must be the CA's, for `serverAuth`)
    /// and the deny list.
    pub fn load(section: &TunnelListenSection) -> Result<Arc<OriginTls>, crate::TunnelError> {
        let paths = &section.tls;
        if paths.cert.is_none() || paths.key.is_none() {
            return Err(TunnelTlsError::OriginWithoutCertificate.into());
        }
        let credentials = Credentials::load(
            "tunnel",
            credential_paths(paths),
            Usage::Server,
            UnixTime::now(),
        )
        .map_err(TunnelTlsError::from)?;
        let denied = DeniedCertificates::load(
            section.denied_fingerprints()?,
            section.denied_certificates_file.as_deref(),
        )
        .map_err(TunnelTlsError::from)?;
        let trust = credentials
            .trust()
            .ok_or_else(|| config_error("no cluster CA"))?;
        let mut config = rustls::ServerConfig::builder_with_provider(longhaul_certs::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(config_error)?
            .with_client_cert_verifier(Arc::new(PeerClientVerifier(trust)))
            .with_cert_resolver(credentials.identity());
        config.alpn_protocols = ALPNS.iter().map(|a| a.to_vec()).collect();
        // No resumption: a resumed session skips the client certificate check, and a
        // tunnel is one long connection, so a full handshake costs one round trip a
        // reconnect. With it off, a CA swap or a denied certificate reaches every
        // handshake.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        let crypto = Arc::new(QuicServerConfig::try_from(config).map_err(config_error)?);
        Ok(Arc::new(OriginTls {
            credentials,
            denied,
            crypto,
        }))
    }

    /// The QUIC server configuration of the tunnel endpoint.
    pub fn crypto(&self) -> Arc<QuicServerConfig> {
        self.crypto.clone()
    }

    /// The deny list in force, and its changes.
    pub fn denied(&self) -> &Arc<DeniedCertificates> {
        &self.denied
    }

    /// What the node's certificate watcher reloads.
    pub fn reloadables(&self) -> Vec<Arc<dyn Reload>> {
        let mut items: Vec<Arc<dyn Reload>> = vec![self.credentials.clone()];
        if self.denied.has_file() {
            items.push(self.denied.clone());
        }
        items
    }
}

/// The certificate a peer authenticated with, as the logs and the deny list see it.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    pub fingerprint: Fingerprint,
    /// Its DNS names, comma-separated (`?` if it has none that parse).
    pub names: String,
}

impl PeerCertificate {
    /// The leaf certificate of `connection`'s peer, if it presented one.
    pub fn of(connection: &quinn::Connection) -> Option<PeerCertificate> {
        let chain = connection
            .peer_identity()?
            .downcast::<Vec<CertificateDer<'static>>>()
            .ok()?;
        let leaf = chain.first()?;
        Some(PeerCertificate {
            fingerprint: Fingerprint::of(leaf.as_ref()),
            names: dns_names(leaf),
        })
    }
}

fn dns_names(leaf: &CertificateDer<'_>) -> String {
    let names = longhaul_certs::check::subject_names(leaf.as_ref());
    if names.is_empty() {
        "?".into()
    } else {
        names.join(",")
    }
}
