//! Whether certificate files may be served, sans IO: the bytes read and the time are
//! passed in, the answer is a [`Checked`] set ready for rustls or a [`Refusal`] that
//! names the file and says why.
//!
//! What is refused, at start as on every reload (a reload refused leaves the old files in
//! use):
//! - a file that cannot be read, holds no PEM block of its kind, or does not parse;
//! - a key that does not belong to the certificate (rustls compares the public keys);
//! - a certificate not valid now: expired, or not valid yet;
//! - with a CA: a certificate the CA did not sign, or signed for the other role. The
//!   cluster's certificates carry one extended key usage each: origins serve
//!   (`serverAuth`), edges authenticate as clients (`clientAuth`); webpki checks it as it
//!   checks the chain, here and in every handshake.

use crate::fingerprint::Fingerprint;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use x509_cert::der::Decode;

/// The role a certificate is checked for, by its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Serves TLS (`serverAuth`): an origin's tunnel certificate.
    Server,
    /// Authenticates a TLS client (`clientAuth`): an edge's tunnel certificate.
    Client,
}

impl Usage {
    fn key_usage(self) -> webpki::KeyUsage {
        match self {
            Usage::Server => webpki::KeyUsage::server_auth(),
            Usage::Client => webpki::KeyUsage::client_auth(),
        }
    }

    fn eku(self) -> &'static str {
        match self {
            Usage::Server => "serverAuth",
            Usage::Client => "clientAuth",
        }
    }
}

/// One file as read: its bytes, or why it could not be read.
#[derive(Debug, Clone)]
pub struct FileRead {
    pub path: PathBuf,
    pub contents: Result<Vec<u8>, String>,
}

impl FileRead {
    /// Reads `path` whole (certificates and keys are a few KB).
    pub fn read(path: &Path) -> FileRead {
        FileRead {
            path: path.to_path_buf(),
            contents: std::fs::read(path).map_err(|e| e.to_string()),
        }
    }

    fn bytes(&self) -> Result<&[u8], Refusal> {
        self.contents
            .as_deref()
            .map_err(|e| Refusal::new(&self.path, format!("cannot read it: {e}")))
    }
}

/// The files of one set of credentials, as read. A CA alone is a trust store (an edge
/// without a certificate of its own); a certificate needs its key.
#[derive(Debug, Clone, Default)]
pub struct Files {
    pub ca: Option<FileRead>,
    pub cert: Option<FileRead>,
    pub key: Option<FileRead>,
}

impl Files {
    /// Every file, in a fixed order (for hashing).
    pub fn all(&self) -> impl Iterator<Item = &FileRead> {
        [&self.ca, &self.cert, &self.key].into_iter().flatten()
    }
}

/// Why files were refused, naming the one at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub file: PathBuf,
    pub reason: String,
}

impl Refusal {
    pub fn new(file: &Path, reason: impl Into<String>) -> Refusal {
        Refusal {
            file: file.to_path_buf(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.reason)
    }
}

impl std::error::Error for Refusal {}

/// A certificate and key that passed every check.
#[derive(Debug, Clone)]
pub struct Identity {
    pub key: Arc<CertifiedKey>,
    /// Of the leaf (first) certificate.
    pub fingerprint: Fingerprint,
    /// Unix time (seconds) the leaf stops being valid.
    pub not_after: u64,
    /// The same, as the certificate writes it (`2027-03-01T00:00:00Z`), for the logs.
    pub not_after_text: String,
    /// The leaf's DNS names, for the logs.
    pub names: Vec<String>,
}

/// A CA file that passed every check.
#[derive(Debug, Clone)]
pub struct Roots {
    pub store: Arc<RootCertStore>,
}

/// Files that may be served.
#[derive(Debug, Clone)]
pub struct Checked {
    pub identity: Option<Identity>,
    pub roots: Option<Roots>,
}

/// The TLS provider every longhaul certificate is checked and served with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Checks `files` at time `now`. With both a CA and a certificate, the certificate must
/// chain to the CA for `usage`.
pub fn check(files: &Files, usage: Usage, now: UnixTime) -> Result<Checked, Refusal> {
    let roots = files.ca.as_ref().map(roots).transpose()?;
    let identity = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => Some(identity(cert, key, now)?),
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => {
            return Err(Refusal::new(
                &one.path,
                "a certificate and its key go together; only one is set",
            ))
        }
    };
    if let (Some(roots), Some(identity), Some(cert)) = (&roots, &identity, &files.cert) {
        chains_to(identity, cert, roots, files.ca.as_ref(), usage, now)?;
    }
    Ok(Checked { identity, roots })
}

/// Checks a certificate and key with no CA to chain to (RTMPS: a public certificate,
/// whose chain the encoders check).
pub fn check_served(cert: &FileRead, key: &FileRead, now: UnixTime) -> Result<Identity, Refusal> {
    identity(cert, key, now)
}

fn certificates(file: &FileRead) -> Result<Vec<CertificateDer<'static>>, Refusal> {
    let certs = CertificateDer::pem_slice_iter(file.bytes()?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Refusal::new(&file.path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(Refusal::new(&file.path, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

fn roots(file: &FileRead) -> Result<Roots, Refusal> {
    let mut store = RootCertStore::empty();
    for (i, cert) in certificates(file)?.into_iter().enumerate() {
        store.add(cert).map_err(|e| {
            Refusal::new(
                &file.path,
                format!("certificate {} is not a usable CA certificate: {e}", i + 1),
            )
        })?;
    }
    Ok(Roots {
        store: Arc::new(store),
    })
}

/// What the leaf certificate says of itself.
struct Leaf {
    not_before: u64,
    not_after: u64,
    not_after_text: String,
    not_before_text: String,
    names: Vec<String>,
}

fn leaf(file: &FileRead, der: &CertificateDer<'_>) -> Result<Leaf, Refusal> {
    let cert = x509_cert::Certificate::from_der(der.as_ref()).map_err(|e| {
        Refusal::new(
            &file.path,
            format!("its first certificate does not parse: {e}"),
        )
    })?;
    let tbs = &cert.tbs_certificate;
    Ok(Leaf {
        not_before: tbs.validity.not_before.to_unix_duration().as_secs(),
        not_after: tbs.validity.not_after.to_unix_duration().as_secs(),
        not_before_text: tbs.validity.not_before.to_string(),
        not_after_text: tbs.validity.not_after.to_string(),
        names: names_in(&cert),
    })
}

/// The first certificate of a PEM file, described: what `longhaul pki fingerprint`
/// prints and the deny list takes.
#[derive(Debug, Clone)]
pub struct Described {
    pub fingerprint: Fingerprint,
    pub names: Vec<String>,
    /// When it stops being valid, as the certificate writes it.
    pub not_after: String,
}

/// Reads the first certificate of the PEM file at `path`.
pub fn describe_file(path: &Path) -> Result<Described, Refusal> {
    let file = FileRead::read(path);
    let chain = certificates(&file)?;
    let leaf = leaf(&file, &chain[0])?;
    Ok(Described {
        fingerprint: Fingerprint::of(chain[0].as_ref()),
        names: leaf.names,
        not_after: leaf.not_after_text,
    })
}

/// The DNS names and IP addresses a DER certificate is issued for (its subject
/// alternative names), for logs; empty if it does not parse.
pub fn subject_names(der: &[u8]) -> Vec<String> {
    x509_cert::Certificate::from_der(der)
        .map(|c| names_in(&c))
        .unwrap_or_default()
}

fn names_in(cert: &x509_cert::Certificate) -> Vec<String> {
    use x509_cert::ext::pkix::name::GeneralName;
    let Ok(Some((_, san))) = cert
        .tbs_certificate
        .get::<x509_cert::ext::pkix::SubjectAltName>()
    else {
        return Vec::new();
    };
    san.0
        .iter()
        .filter_map(|n| match n {
            GeneralName::DnsName(d) => Some(d.to_string()),
            GeneralName::IpAddress(ip) => {
                let ip = ip.as_bytes();
                <[u8; 4]>::try_from(ip)
                    .map(std::net::IpAddr::from)
                    .or_else(|_| <[u8; 16]>::try_from(ip).map(std::net::IpAddr::from))
                    .ok()
                    .map(|ip| ip.to_string())
            }
            _ => None,
        })
        .collect()
}

fn identity(cert: &FileRead, key: &FileRead, now: UnixTime) -> Result<Identity, Refusal> {
    let chain = certificates(cert)?;
    let leaf = leaf(cert, &chain[0])?;
    let der = PrivateKeyDer::from_pem_slice(key.bytes()?)
        .map_err(|e| Refusal::new(&key.path, format!("not a PEM private key file: {e}")))?;
    let fingerprint = Fingerprint::of(chain[0].as_ref());
    let now_secs = now.as_secs();
    if now_secs > leaf.not_after {
        return Err(Refusal::new(
            &cert.path,
            format!("the certificate expired at {}", leaf.not_after_text),
        ));
    }
    if now_secs < leaf.not_before {
        return Err(Refusal::new(
            &cert.path,
            format!(
                "the certificate is not valid until {}",
                leaf.not_before_text
            ),
        ));
    }
    let certified = CertifiedKey::from_der(chain, der, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => Refusal::new(
            &key.path,
            format!(
                "the key does not belong to the certificate in {}",
                cert.path.display()
            ),
        ),
        other => Refusal::new(&key.path, format!("the key is not usable: {other}")),
    })?;
    Ok(Identity {
        key: Arc::new(certified),
        fingerprint,
        not_after: leaf.not_after,
        not_after_text: leaf.not_after_text,
        names: leaf.names,
    })
}

fn chains_to(
    identity: &Identity,
    cert: &FileRead,
    roots: &Roots,
    ca: Option<&FileRead>,
    usage: Usage,
    now: UnixTime,
) -> Result<(), Refusal> {
    let ca_path = ca.map_or_else(String::new, |c| c.path.display().to_string());
    let chain = &identity.key.cert;
    let end = webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| Refusal::new(&cert.path, format!("the certificate does not parse: {e}")))?;
    let algorithms = provider().signature_verification_algorithms.all;
    end.verify_for_usage(
        algorithms,
        &roots.store.roots,
        &chain[1..],
        now,
        usage.key_usage(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| {
        let reason = match e {
            webpki::Error::UnknownIssuer => {
                format!("the certificate is not signed by the CA in {ca_path}")
            }
            #[allow(deprecated)]
            webpki::Error::RequiredEkuNotFound | webpki::Error::RequiredEkuNotFoundContext(_) => {
                format!(
                    "the certificate is not for this role: its extended key usage lacks {} ({})",
                    usage.eku(),
                    match usage {
                        Usage::Server =>
                            "an origin serves the tunnel; issue it with `longhaul pki --origin`",
                        Usage::Client =>
                            "an edge is the tunnel's client; issue it with `longhaul pki --edge`",
                    }
                )
            }
            other => format!("the certificate does not verify against {ca_path}: {other}"),
        };
        Refusal::new(&cert.path, reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    use std::time::Duration;

    struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn ca(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        Ca {
            cert: p.self_signed(&key).unwrap(),
            key,
        }
    }

    fn file(name: &str, text: impl Into<Vec<u8>>) -> FileRead {
        FileRead {
            path: PathBuf::from(name),
            contents: Ok(text.into()),
        }
    }

    /// A leaf for `name` signed by `ca`, valid from one day before `now` to `days` after.
    fn leaf_for(ca: &Ca, name: &str, ekus: Vec<ExtendedKeyUsagePurpose>) -> (FileRead, FileRead) {
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.extended_key_usages = ekus;
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
        (
            file("node.pem", cert.pem()),
            file("node.key", key.serialize_pem()),
        )
    }

    fn files(ca: &Ca, (cert, key): (FileRead, FileRead)) -> Files {
        Files {
            ca: Some(file("ca.pem", ca.cert.pem())),
            cert: Some(cert),
            key: Some(key),
        }
    }

    fn now() -> UnixTime {
        UnixTime::now()
    }

    #[test]
    fn a_role_certificate_passes_for_its_role() {
        let ca = ca("cluster");
        let server = leaf_for(&ca, "nyc-1.t", vec![ExtendedKeyUsagePurpose::ServerAuth]);
        let checked = check(&files(&ca, server), Usage::Server, now()).expect("accepted");
        let id = checked.identity.expect("identity");
        assert_eq!(id.names, vec!["nyc-1.t".to_string()]);
        assert_eq!(id.fingerprint, Fingerprint::of(id.key.cert[0].as_ref()));
        assert!(id.not_after > now().as_secs());
        assert_eq!(checked.roots.expect("roots").store.roots.len(), 1);

        let client = leaf_for(&ca, "fra-1.t", vec![ExtendedKeyUsagePurpose::ClientAuth]);
        check(&files(&ca, client), Usage::Client, now()).expect("accepted");
        // A certificate issued for both roles (before roles were split) passes for either.
        let both = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        for usage in [Usage::Server, Usage::Client] {
            check(
                &files(&ca, leaf_for(&ca, "old.t", both.clone())),
                usage,
                now(),
            )
            .expect("both roles");
        }
    }

    #[test]
    fn a_certificate_for_the_other_role_is_refused() {
        let ca = ca("cluster");
        let edge = leaf_for(&ca, "fra-1.t", vec![ExtendedKeyUsagePurpose::ClientAuth]);
        let err = check(&files(&ca, edge), Usage::Server, now()).unwrap_err();
        assert_eq!(err.file, PathBuf::from("node.pem"));
        assert!(err.reason.contains("lacks serverAuth"), "{err}");
        let origin = leaf_for(&ca, "nyc-1.t", vec![ExtendedKeyUsagePurpose::ServerAuth]);
        let err = check(&files(&ca, origin), Usage::Client, now()).unwrap_err();
        assert!(err.reason.contains("lacks clientAuth"), "{err}");
    }

    #[test]
    fn a_certificate_from_another_ca_is_refused() {
        let (ours, theirs) = (ca("cluster"), ca("someone else"));
        let leaf = leaf_for(
            &theirs,
            "fra-1.t",
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        let err = check(&files(&ours, leaf), Usage::Client, now()).unwrap_err();
        assert!(
            err.reason.contains("not signed by the CA in ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_the_key() {
        let ca = ca("cluster");
        let (cert, _) = leaf_for(&ca, "a.t", vec![ExtendedKeyUsagePurpose::ServerAuth]);
        let (_, other_key) = leaf_for(&ca, "b.t", vec![ExtendedKeyUsagePurpose::ServerAuth]);
        let err = check(&files(&ca, (cert, other_key)), Usage::Server, now()).unwrap_err();
        assert_eq!(err.file, PathBuf::from("node.key"));
        assert!(err.reason.contains("does not belong"), "{err}");
    }

    #[test]
    fn an_expired_or_future_certificate_is_refused() {
        let mut p = CertificateParams::new(vec!["a.t".to_string()]).unwrap();
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let key = KeyPair::generate().unwrap();
        let cert = file("a.pem", p.self_signed(&key).unwrap().pem());
        let key = file("a.key", key.serialize_pem());
        let err = check_served(&cert, &key, now()).unwrap_err();
        assert_eq!(err.file, PathBuf::from("a.pem"));
        assert!(err.reason.contains("expired at 2021-01-01"), "{err}");
        let early = UnixTime::since_unix_epoch(Duration::from_secs(1_500_000_000));
        let err = check_served(&cert, &key, early).unwrap_err();
        assert!(err.reason.contains("not valid until 2020-01-01"), "{err}");
        let then = UnixTime::since_unix_epoch(Duration::from_secs(1_590_000_000));
        let id = check_served(&cert, &key, then).expect("valid in May 2020");
        assert_eq!(id.not_after, 1_609_459_200);
    }

    #[test]
    fn unreadable_and_malformed_files_name_the_file() {
        let ca = ca("cluster");
        let (cert, key) = leaf_for(&ca, "a.t", vec![ExtendedKeyUsagePurpose::ServerAuth]);
        let missing = FileRead {
            path: PathBuf::from("gone.pem"),
            contents: Err("No such file or directory".into()),
        };
        let cases = [
            (missing.clone(), key.clone(), "gone.pem", "cannot read it"),
            (
                file("c.pem", "hello"),
                key.clone(),
                "c.pem",
                "no CERTIFICATE",
            ),
            (
                file(
                    "c.pem",
                    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                ),
                key.clone(),
                "c.pem",
                "does not parse",
            ),
            (
                cert.clone(),
                file("k.pem", "not a key"),
                "k.pem",
                "private key",
            ),
            (cert.clone(), cert.clone(), "node.pem", "private key"),
        ];
        for (c, k, at, says) in cases {
            let err = check_served(&c, &k, now()).unwrap_err();
            assert_eq!(err.file, PathBuf::from(at), "{err}");
            assert!(err.reason.contains(says), "{err} should say {says}");
        }
        let only_cert = Files {
            ca: None,
            cert: Some(cert),
            key: None,
        };
        assert!(check(&only_cert, Usage::Server, now()).is_err());
        let bad_ca = Files {
            ca: Some(file("ca.pem", "")),
            ..Files::default()
        };
        let err = check(&bad_ca, Usage::Client, now()).unwrap_err();
        assert_eq!(err.file, PathBuf::from("ca.pem"));
    }
}
