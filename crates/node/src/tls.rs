//! The RTMPS server configuration, with a certificate that can be swapped while the node
//! runs.
//!
//! rustls with the `ring` provider and its safe defaults (TLS 1.2 and 1.3, no
//! renegotiation, no client certificates for encoders). The certificate is not fixed in
//! the configuration: rustls asks a [`longhaul_certs::slot::IdentitySlot`] at each
//! handshake, and the node's watcher ([`crate::reload`]) swaps in new files when they
//! change and pass their checks (parse, key matches, valid now). Connections already up
//! keep their session.

use longhaul_certs::{CredentialPaths, Credentials, Refusal, UnixTime, Usage};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("RTMPS certificate: {0}")]
    Files(#[from] Refusal),
    #[error("certificate {cert} and key {key} do not make a TLS configuration: {reason}")]
    Config {
        cert: String,
        key: String,
        reason: String,
    },
}

/// The RTMPS listener's TLS configuration and the certificate files behind it.
#[derive(Debug)]
pub struct RtmpsTls {
    pub config: Arc<rustls::ServerConfig>,
    /// For the node's certificate watcher (`what` = `rtmps`).
    pub credentials: Arc<Credentials>,
}

/// A server configuration from PEM files, for a listener whose certificate is not
/// watched.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    rtmps_tls(cert, key).map(|t| t.config)
}

/// The RTMPS configuration from PEM files, with the files' [`Credentials`] for the
/// node's certificate watcher.
pub fn rtmps_tls(cert: &Path, key: &Path) -> Result<RtmpsTls, TlsError> {
    let paths = CredentialPaths {
        ca: None,
        cert: Some(cert.to_path_buf()),
        key: Some(key.to_path_buf()),
    };
    let credentials = Credentials::load("rtmps", paths, Usage::Server, UnixTime::now())?;
    let config = rustls::ServerConfig::builder_with_provider(longhaul_certs::provider())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.with_no_client_auth()
                .with_cert_resolver(credentials.identity())
        })
        .map_err(|e| TlsError::Config {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            reason: e.to_string(),
        })?;
    Ok(RtmpsTls {
        config: Arc::new(config),
        credentials,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed certificate and key for 127.0.0.1 written into `dir`.
    pub(crate) fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])
            .expect("generate certificate");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, certified.cert.pem()).expect("write cert");
        std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write key");
        (cert, key)
    }

    #[test]
    fn loads_a_pem_certificate_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed(dir.path());
        let tls = rtmps_tls(&cert, &key).expect("valid configuration");
        assert!(tls.credentials.fingerprint().is_some());
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = self_signed(dir.path());
        let missing = dir.path().join("missing.pem");
        let err = server_config(&missing, &key).expect_err("no cert");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        // A certificate file where the key should be: no PRIVATE KEY block.
        let err = server_config(&cert, &cert).expect_err("no key");
        assert!(err.to_string().contains("private key"), "{err}");
    }
}
