//! Mutual TLS for the tunnels: the cluster CA signs every node's certificate.
//!
//! Origins present a certificate for their `server_name` and require a client certificate
//! from every edge; both chain to the cluster CA and nothing else (no web PKI roots), so a
//! host that is not part of the cluster cannot open a tunnel, and an edge cannot be led to
//! a host that merely holds some public certificate. TLS 1.3 only (QUIC requires it), with
//! rustls's safe defaults and the `ring` provider, negotiating the ALPN [`crate::ALPN`].

use crate::settings::ClusterTlsPaths;
use crate::ALPN;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TunnelTlsError {
    #[error("reading {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error("{what} {path} holds no PEM certificate")]
    Empty { what: &'static str, path: String },
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

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TunnelTlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TunnelTlsError::Read {
            what,
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TunnelTlsError::Empty {
            what,
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TunnelTlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TunnelTlsError::Read {
        what: "tunnel private key",
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn roots(ca: &Path) -> Result<Arc<RootCertStore>, TunnelTlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs("cluster CA certificate", ca)? {
        roots
            .add(cert)
            .map_err(|e| TunnelTlsError::Config(format!("cluster CA {}: {e}", ca.display())))?;
    }
    Ok(Arc::new(roots))
}

fn config_error(e: impl std::fmt::Display) -> TunnelTlsError {
    TunnelTlsError::Config(e.to_string())
}

/// The edge side: trust only the cluster CA, present this node's certificate.
pub fn client_crypto(
    paths: &ClusterTlsPaths,
) -> Result<(Arc<QuicClientConfig>, ClientIdentity), TunnelTlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_root_certificates(roots(&paths.ca)?);
    let (mut config, identity) = match (&paths.cert, &paths.key) {
        (Some(cert), Some(key_path)) => (
            builder
                .with_client_auth_cert(certs("tunnel certificate", cert)?, key(key_path)?)
                .map_err(config_error)?,
            ClientIdentity::Certificate,
        ),
        (None, None) => (builder.with_no_client_auth(), ClientIdentity::None),
        _ => return Err(TunnelTlsError::HalfAPair),
    };
    config.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(config).map_err(config_error)?;
    Ok((Arc::new(quic), identity))
}

/// The origin side: present this node's certificate, require one from the cluster CA.
pub fn server_crypto(paths: &ClusterTlsPaths) -> Result<Arc<QuicServerConfig>, TunnelTlsError> {
    let (Some(cert), Some(key_path)) = (&paths.cert, &paths.key) else {
        return Err(TunnelTlsError::OriginWithoutCertificate);
    };
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&paths.ca)?, provider())
        .build()
        .map_err(config_error)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs("tunnel certificate", cert)?, key(key_path)?)
        .map_err(config_error)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(config).map_err(config_error)?;
    Ok(Arc::new(quic))
}
