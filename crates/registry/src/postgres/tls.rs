//! TLS to PostgreSQL: origins in two data centres reach one database across a WAN, and
//! what crosses it (every entry's publish token) must not cross it in the clear.
//!
//! The rule, checked when the settings are read:
//! - `registry.tls_ca` set: TLS is required, and the server's certificate must chain to
//!   that CA and name the host in `registry.url` (rustls, the ring provider, TLS 1.2+).
//! - no `tls_ca`, the database on this host (loopback or a unix socket): plain.
//! - no `tls_ca`, a database elsewhere: refused at start, unless the URL says
//!   `sslmode=disable` on purpose (a private network the operator trusts).
//!
//! `sslmode=require` without a CA is refused too: encryption without checking who
//! answers stops an eavesdropper but not an impostor, and an origin would hand any
//! impostor its password's proof and read tokens from it.

use std::path::Path;
use std::sync::Arc;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::RegistryError;

/// How a store's connections are made.
#[derive(Clone)]
pub enum Transport {
    /// No TLS: the database is on this host, or the operator said `sslmode=disable`.
    Plain,
    /// TLS, checked against the configured CA.
    Tls(MakeRustlsConnect),
}

/// Decides the transport for `config` (and sets its `sslmode` to match).
pub fn transport(
    config: &mut tokio_postgres::Config,
    tls_ca: Option<&Path>,
) -> Result<Transport, RegistryError> {
    let settings = |why: String| RegistryError::Settings(why);
    let mode = config.get_ssl_mode();
    match tls_ca {
        Some(ca) => {
            if mode == SslMode::Disable {
                return Err(settings(
                    "registry.url says sslmode=disable but registry.tls_ca is set: drop one".into(),
                ));
            }
            config.ssl_mode(SslMode::Require);
            Ok(Transport::Tls(MakeRustlsConnect::new(client_config(ca)?)))
        }
        None if mode == SslMode::Require => Err(settings(
            "registry.url says sslmode=require: set registry.tls_ca too, the CA that signed \
             the database's certificate, so the server is checked, not only encrypted"
                .into(),
        )),
        None if mode == SslMode::Disable => Ok(Transport::Plain),
        None if is_local(config) => {
            config.ssl_mode(SslMode::Disable);
            Ok(Transport::Plain)
        }
        None => Err(settings(format!(
            "registry.url points at {} without TLS: set registry.tls_ca (the CA that signed \
             the database's certificate), or add ?sslmode=disable to the URL if the network \
             between them is private and trusted",
            hosts(config)
        ))),
    }
}

/// Whether every host of `config` is this machine.
fn is_local(config: &tokio_postgres::Config) -> bool {
    config.get_hosts().iter().all(|host| match host {
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        Host::Unix(_) => true,
    })
}

fn hosts(config: &tokio_postgres::Config) -> String {
    let names: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    names.join(", ")
}

/// A rustls client that trusts the certificates in the PEM file `ca` alone.
fn client_config(ca: &Path) -> Result<rustls::ClientConfig, RegistryError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let bad =
        |why: String| RegistryError::Settings(format!("registry.tls_ca {}: {why}", ca.display()));
    let mut roots = rustls::RootCertStore::empty();
    let certificates =
        CertificateDer::pem_file_iter(ca).map_err(|e| bad(format!("cannot read it: {e}")))?;
    for certificate in certificates {
        let certificate = certificate.map_err(|e| bad(format!("not PEM certificates: {e}")))?;
        roots
            .add(certificate)
            .map_err(|e| bad(format!("a certificate is not a usable CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("holds no certificate".into()));
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("TLS setup failed: {e}")))
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn decide(url: &str, ca: Option<&Path>) -> Result<&'static str, String> {
        let mut config = tokio_postgres::Config::from_str(url).unwrap();
        transport(&mut config, ca)
            .map(|t| match t {
                Transport::Plain => "plain",
                Transport::Tls(_) => "tls",
            })
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_remote_database_needs_tls_or_an_explicit_no() {
        assert_eq!(decide("postgres://u@127.0.0.1/d", None), Ok("plain"));
        assert_eq!(decide("postgres://u@localhost/d", None), Ok("plain"));
        assert_eq!(decide("postgres://u@[::1]/d", None), Ok("plain"));
        let err = decide("postgres://u@db.internal/d", None).unwrap_err();
        assert!(
            err.contains("registry.tls_ca") && err.contains("db.internal"),
            "{err}"
        );
        assert_eq!(
            decide("postgres://u@db.internal/d?sslmode=disable", None),
            Ok("plain")
        );
        let err = decide("postgres://u@db.internal/d?sslmode=require", None).unwrap_err();
        assert!(err.contains("registry.tls_ca"), "{err}");
    }

    #[test]
    fn a_ca_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = decide("postgres://u@db.internal/d", Some(&missing)).unwrap_err();
        assert!(err.contains("missing.pem"), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = decide("postgres://u@db.internal/d", Some(&empty)).unwrap_err();
        assert!(err.contains("no certificate"), "{err}");
        let ca = rcgen::generate_simple_self_signed(vec!["db".into()]).unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, ca.cert.pem()).unwrap();
        assert_eq!(decide("postgres://u@db.internal/d", Some(&pem)), Ok("tls"));
        let err = decide("postgres://u@db.internal/d?sslmode=disable", Some(&pem)).unwrap_err();
        assert!(err.contains("drop one"), "{err}");
    }
}
