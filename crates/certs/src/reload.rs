//! Things a node reloads from files while it runs: its certificates and its deny list.
//!
//! Each is a [`Reload`]: the node's watcher (`longhaul_node::reload`) calls
//! [`Reload::reload`] every poll and on SIGHUP, logs the [`Outcome`] and counts it. The
//! reload reads the files (the only IO here, a few KB), asks [`crate::settle`] whether
//! they changed and settled, asks [`crate::check`] whether they may be used, and only
//! then swaps them into the slots handshakes read. A refusal changes nothing.

use crate::check::{check, Checked, FileRead, Files, Refusal, Usage};
use crate::fingerprint::{parse_deny_file, DenyList, Fingerprint};
use crate::settle::{digest, Settle, Step};
use crate::slot::{IdentitySlot, TrustSlot};
use rustls_pki_types::UnixTime;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// New files are in use; what changed, for the log.
    Reloaded(String),
    /// New files were refused; the old ones stay in use.
    Refused(Refusal),
}

/// Something reloaded from files while the node runs.
pub trait Reload: Send + Sync {
    /// Its name in logs and in the `what` label of the metrics (`rtmps`, `tunnel`,
    /// `denied_certificates`).
    fn what(&self) -> &'static str;
    /// Looks at the files and, if they changed (and settled, unless `forced`), takes
    /// them into use or refuses them. `None`: nothing to do.
    fn reload(&self, now: UnixTime, forced: bool) -> Option<Outcome>;
    /// Unix time (seconds) the certificate in use stops being valid, if it has one.
    fn not_after(&self) -> Option<u64>;
}

/// Where a node's certificate, key and CA are.
#[derive(Debug, Clone, Default)]
pub struct CredentialPaths {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl CredentialPaths {
    fn read(&self) -> Files {
        let read = |p: &Option<PathBuf>| p.as_deref().map(FileRead::read);
        Files {
            ca: read(&self.ca),
            cert: read(&self.cert),
            key: read(&self.key),
        }
    }
}

fn digest_of(files: &Files) -> crate::settle::Digest {
    digest(files.all().map(|f| &f.contents))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a [`Credentials`] serves now, for the log line of the next change.
#[derive(Debug, Clone)]
struct Served {
    fingerprint: Fingerprint,
    not_after: u64,
    not_after_text: String,
}

/// A node's certificate and key, and the CA it checks peers with (when it has one),
/// reloaded together: a new CA and the certificate it signed arrive as one change.
#[derive(Debug)]
pub struct Credentials {
    what: &'static str,
    paths: CredentialPaths,
    usage: Usage,
    identity: Arc<IdentitySlot>,
    trust: Option<Arc<TrustSlot>>,
    state: Mutex<(Settle, Option<Served>)>,
}

impl Credentials {
    /// Reads and checks the files at start; a refusal here stops the node, naming the
    /// file. `usage` is the role the certificate must have when there is a CA.
    pub fn load(
        what: &'static str,
        paths: CredentialPaths,
        usage: Usage,
        now: UnixTime,
    ) -> Result<Arc<Credentials>, Refusal> {
        let files = paths.read();
        let checked = check(&files, usage, now)?;
        let trust = match (&checked.roots, &paths.ca) {
            (Some(roots), Some(ca)) => {
                Some(TrustSlot::new(&roots.store).map_err(|e| Refusal::new(ca, e.to_string()))?)
            }
            _ => None,
        };
        let served = served(&checked);
        Ok(Arc::new(Credentials {
            what,
            usage,
            identity: IdentitySlot::new(checked.identity.map(|i| i.key)),
            trust,
            state: Mutex::new((Settle::new(digest_of(&files)), served)),
            paths,
        }))
    }

    /// The certificate and key to present, for rustls.
    pub fn identity(&self) -> Arc<IdentitySlot> {
        self.identity.clone()
    }

    /// The verifiers of peers' certificates, when there is a CA.
    pub fn trust(&self) -> Option<Arc<TrustSlot>> {
        self.trust.clone()
    }

    /// The fingerprint of the certificate presented now.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        lock(&self.state).1.as_ref().map(|s| s.fingerprint)
    }

    fn take(&self, checked: Checked) -> Result<Option<Served>, Refusal> {
        if let (Some(trust), Some(roots), Some(ca)) = (&self.trust, &checked.roots, &self.paths.ca)
        {
            trust
                .set(&roots.store)
                .map_err(|e| Refusal::new(ca, e.to_string()))?;
        }
        let served = served(&checked);
        self.identity.set(checked.identity.map(|i| i.key));
        Ok(served)
    }
}

fn served(checked: &Checked) -> Option<Served> {
    checked.identity.as_ref().map(|i| Served {
        fingerprint: i.fingerprint,
        not_after: i.not_after,
        not_after_text: i.not_after_text.clone(),
    })
}

impl Reload for Credentials {
    fn what(&self) -> &'static str {
        self.what
    }

    fn reload(&self, now: UnixTime, forced: bool) -> Option<Outcome> {
        let files = self.paths.read();
        let digest = digest_of(&files);
        let mut state = lock(&self.state);
        if state.0.observe(digest, forced) != Step::Check {
            return None;
        }
        let outcome = check(&files, self.usage, now).and_then(|c| {
            let names = c
                .identity
                .as_ref()
                .map(|i| i.names.join(","))
                .unwrap_or_default();
            Ok((self.take(c)?, names))
        });
        match outcome {
            Ok((served, names)) => {
                state.0.accepted(digest);
                let was = state
                    .1
                    .as_ref()
                    .map_or("none".to_string(), |s| s.fingerprint.to_string());
                let detail = match &served {
                    Some(s) => format!(
                        "now presenting certificate sha256 {} ({names}), valid until {}; was {was}",
                        s.fingerprint, s.not_after_text
                    ),
                    None => "the CA changed".to_string(),
                };
                state.1 = served;
                Some(Outcome::Reloaded(detail))
            }
            Err(refusal) => {
                state.0.refused(digest);
                Some(Outcome::Refused(refusal))
            }
        }
    }

    fn not_after(&self) -> Option<u64> {
        lock(&self.state).1.as_ref().map(|s| s.not_after)
    }
}

/// Certificates refused whatever signed them: fingerprints from the config and,
/// reloaded like the certificates, from a file. Connections subscribe to changes, so a
/// fingerprint added while its holder is connected reaches that connection.
#[derive(Debug)]
pub struct DeniedCertificates {
    inline: Vec<Fingerprint>,
    file: Option<PathBuf>,
    list: watch::Sender<Arc<DenyList>>,
    settle: Mutex<Settle>,
}

impl DeniedCertificates {
    /// The list from `inline` and the file, read now; a file that cannot be read or has
    /// a bad line stops the node at start, naming the file and line.
    pub fn load(
        inline: Vec<Fingerprint>,
        file: Option<&Path>,
    ) -> Result<Arc<DeniedCertificates>, Refusal> {
        let read = file.map(FileRead::read);
        let list = match &read {
            Some(read) => list_from(&inline, read)?,
            None => DenyList::new(inline.iter().copied()),
        };
        let digest = digest(read.iter().map(|r| &r.contents));
        Ok(Arc::new(DeniedCertificates {
            inline,
            file: file.map(Path::to_path_buf),
            list: watch::Sender::new(Arc::new(list)),
            settle: Mutex::new(Settle::new(digest)),
        }))
    }

    /// The list in force.
    pub fn current(&self) -> Arc<DenyList> {
        self.list.borrow().clone()
    }

    /// The list in force, and each change to it.
    pub fn subscribe(&self) -> watch::Receiver<Arc<DenyList>> {
        self.list.subscribe()
    }

    /// Whether there is a file to reload (otherwise the list is fixed).
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }
}

fn list_from(inline: &[Fingerprint], read: &FileRead) -> Result<DenyList, Refusal> {
    let text = read
        .contents
        .as_ref()
        .map_err(|e| Refusal::new(&read.path, format!("cannot read it: {e}")))?;
    let text =
        std::str::from_utf8(text).map_err(|_| Refusal::new(&read.path, "is not UTF-8 text"))?;
    let listed = parse_deny_file(text).map_err(|e| Refusal::new(&read.path, e))?;
    Ok(DenyList::new(inline.iter().copied().chain(listed)))
}

impl Reload for DeniedCertificates {
    fn what(&self) -> &'static str {
        "denied_certificates"
    }

    fn reload(&self, _now: UnixTime, forced: bool) -> Option<Outcome> {
        let file = self.file.as_deref()?;
        let read = FileRead::read(file);
        let digest = digest([&read.contents]);
        let mut settle = lock(&self.settle);
        if settle.observe(digest, forced) != Step::Check {
            return None;
        }
        match list_from(&self.inline, &read) {
            Ok(list) => {
                settle.accepted(digest);
                let old = self.current();
                let detail = format!(
                    "{} certificates denied (was {}): {} added, {} removed",
                    list.len(),
                    old.len(),
                    list.difference(&old),
                    old.difference(&list)
                );
                self.list.send_replace(Arc::new(list));
                Some(Outcome::Reloaded(detail))
            }
            Err(refusal) => {
                settle.refused(digest);
                Some(Outcome::Refused(refusal))
            }
        }
    }

    fn not_after(&self) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair};

    fn write_pair(dir: &Path, name: &str) -> Fingerprint {
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        // As an operator's tool should: new files beside, then renamed over the old.
        for (file, text) in [("cert.pem", cert.pem()), ("key.pem", key.serialize_pem())] {
            let tmp = dir.join(format!("{file}.new"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, dir.join(file)).unwrap();
        }
        Fingerprint::of(cert.der())
    }

    fn rtmps(dir: &Path) -> Arc<Credentials> {
        let paths = CredentialPaths {
            ca: None,
            cert: Some(dir.join("cert.pem")),
            key: Some(dir.join("key.pem")),
        };
        Credentials::load("rtmps", paths, Usage::Server, UnixTime::now()).unwrap()
    }

    fn served(c: &Credentials) -> Fingerprint {
        let key = c.identity().current().expect("a certificate");
        Fingerprint::of(key.cert[0].as_ref())
    }

    #[test]
    fn swapped_files_are_served_once_settled_and_a_bad_swap_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let first = write_pair(dir.path(), "a.test");
        let c = rtmps(dir.path());
        let now = UnixTime::now();
        assert_eq!(served(&c), first);
        assert_eq!(c.reload(now, false), None);

        let second = write_pair(dir.path(), "b.test");
        assert_eq!(
            c.reload(now, false),
            None,
            "waits a look for the files to settle"
        );
        let Some(Outcome::Reloaded(detail)) = c.reload(now, false) else {
            panic!("expected a reload");
        };
        assert!(detail.contains(&second.to_string()) && detail.contains(&first.to_string()));
        assert_eq!((served(&c), c.fingerprint()), (second, Some(second)));

        // A key that is not the certificate's: refused once, the old pair stays.
        std::fs::copy(dir.path().join("key.pem"), dir.path().join("old.key")).unwrap();
        write_pair(dir.path(), "c.test");
        std::fs::copy(dir.path().join("old.key"), dir.path().join("key.pem")).unwrap();
        assert_eq!(c.reload(now, false), None);
        let Some(Outcome::Refused(r)) = c.reload(now, false) else {
            panic!("expected a refusal");
        };
        assert_eq!(r.file, dir.path().join("key.pem"));
        assert_eq!(served(&c), second);
        assert_eq!(c.reload(now, false), None, "refused once, not every poll");
        assert!(matches!(c.reload(now, true), Some(Outcome::Refused(_))));
    }

    #[test]
    fn a_sighup_reloads_at_once() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path(), "a.test");
        let c = rtmps(dir.path());
        let second = write_pair(dir.path(), "b.test");
        assert!(matches!(
            c.reload(UnixTime::now(), true),
            Some(Outcome::Reloaded(_))
        ));
        assert_eq!(served(&c), second);
        assert_eq!(
            c.reload(UnixTime::now(), true),
            None,
            "nothing changed since"
        );
    }

    #[test]
    fn a_missing_file_at_start_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let paths = CredentialPaths {
            ca: None,
            cert: Some(dir.path().join("nope.pem")),
            key: Some(dir.path().join("nope.key")),
        };
        let err = Credentials::load("rtmps", paths, Usage::Server, UnixTime::now()).unwrap_err();
        assert_eq!(err.file, dir.path().join("nope.pem"));
    }

    #[test]
    fn the_deny_file_is_reloaded_and_subscribers_see_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("denied.txt");
        let (a, b) = (Fingerprint::of(b"a"), Fingerprint::of(b"b"));
        std::fs::write(&file, "# nobody yet\n").unwrap();
        let denied = DeniedCertificates::load(vec![a], Some(&file)).unwrap();
        let mut rx = denied.subscribe();
        assert!(denied.current().contains(&a) && !denied.current().contains(&b));

        std::fs::write(&file, format!("{b}\n")).unwrap();
        let now = UnixTime::now();
        assert_eq!(denied.reload(now, false), None);
        let Some(Outcome::Reloaded(detail)) = denied.reload(now, false) else {
            panic!("expected a reload");
        };
        assert!(
            detail.starts_with("2 certificates denied (was 1)"),
            "{detail}"
        );
        assert!(rx.has_changed().unwrap());
        assert!(rx.borrow_and_update().contains(&b));

        std::fs::write(&file, "not a fingerprint\n").unwrap();
        let Some(Outcome::Refused(r)) = denied.reload(now, true) else {
            panic!("expected a refusal");
        };
        assert!(r.reason.starts_with("line 1:"), "{r}");
        assert!(denied.current().contains(&b), "the old list stays");

        let err = DeniedCertificates::load(vec![], Some(&dir.path().join("gone"))).unwrap_err();
        assert!(err.reason.contains("cannot read"), "{err}");
        assert!(!DeniedCertificates::load(vec![a], None).unwrap().has_file());
    }
}
