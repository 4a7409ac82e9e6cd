//! A cluster CA and node certificates, made on the spot: for `longhaul dev`, tests and
//! benchmarks. Production keeps its CA offline and points the configs at files.
//!
//! A certificate is issued for one role: an origin's to serve the tunnel (extended key
//! usage `serverAuth`) and to dial its peer origins (origin peering: `clientAuth` too),
//! an edge's only to authenticate as a tunnel client (`clientAuth`), so a stolen edge
//! key cannot serve as an origin. An origin tells a peer origin from an edge by its
//! hello and checks that its certificate is valid for that peer's configured name.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

use crate::settings::ClusterTlsPaths;

/// A CA able to sign node certificates.
pub struct ClusterCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// What a node certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRole {
    /// Serves the tunnel and dials peer origins: `serverAuth` and `clientAuth`.
    Origin,
    /// Connects to origins as a client: `clientAuth`.
    Edge,
}

impl NodeRole {
    fn usages(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            NodeRole::Origin => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            NodeRole::Edge => vec![ExtendedKeyUsagePurpose::ClientAuth],
        }
    }
}

/// Paths of a node's files.
#[derive(Debug, Clone)]
pub struct NodeFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl NodeFiles {
    /// Where [`ClusterCa::issue`] writes the files of `name` in `dir`.
    pub fn in_dir(dir: &Path, name: &str) -> NodeFiles {
        let stem = name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
        NodeFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        }
    }

    pub fn tls_paths(&self) -> ClusterTlsPaths {
        ClusterTlsPaths {
            ca: self.ca.clone(),
            cert: Some(self.cert.clone()),
            key: Some(self.key.clone()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl ClusterCa {
    /// A fresh CA named `name`.
    pub fn generate(name: &str) -> Result<ClusterCa, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(ClusterCa { cert, key })
    }

    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA certificate (not its key) to `dir/ca.pem`.
    pub fn write_ca(&self, dir: &Path) -> Result<PathBuf, PkiError> {
        let path = dir.join("ca.pem");
        write(&path, &self.cert.pem())?;
        Ok(path)
    }

    /// Signs a certificate for `name` in `role`, and writes it with its key and the CA
    /// to `dir` (`{name}.pem`, `{name}.key` and `ca.pem`, over any files of those names).
    pub fn issue(&self, name: &str, role: NodeRole, dir: &Path) -> Result<NodeFiles, PkiError> {
        let mut params = CertificateParams::new(vec![name.to_string()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = role.usages();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        self.write_ca(dir)?;
        let files = NodeFiles::in_dir(dir, name);
        write(&files.cert, &cert.pem())?;
        write_private(&files.key, &key.serialize_pem())?;
        Ok(files)
    }
}

/// Writes a private key readable by its owner alone (mode 600), from its creation on:
/// never a moment with the default mode.
fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    let fail = |source| PkiError::Write {
        path: path.display().to_string(),
        source,
    };
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(contents.as_bytes()).map_err(fail)
}

fn write(path: &Path, contents: &str) -> Result<(), PkiError> {
    std::fs::write(path, contents).map_err(|source| PkiError::Write {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_readable_by_their_owner_alone() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("test").unwrap();
        let files = ca
            .issue("fra-1.tunnel.test", NodeRole::Edge, dir.path())
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&files.key), 0o600);
        // Issued again over the old files (a re-run of `longhaul pki`): still 600.
        let again = ca
            .issue("fra-1.tunnel.test", NodeRole::Edge, dir.path())
            .unwrap();
        assert_eq!(mode(&again.key), 0o600);
    }
}
