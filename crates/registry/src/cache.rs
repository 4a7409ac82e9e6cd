//! The last copy of the entries, on the origin's own disk: what lets an origin that
//! restarts while its database is unreachable start anyway, deciding publishes from the
//! entries it last knew (fail static across a restart, not only while running).
//!
//! The sync task writes the whole copy after changes, at most once per
//! [`SAVE_INTERVAL`], to a temporary file then renamed over the old one, so a crash
//! mid-write leaves the previous copy whole. The file holds every entry's token: it is
//! created readable by the node's user alone (mode 600), like the database's own files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::entry::Entry;
use crate::error::RegistryError;

/// How often the copy may be written. A burst of changes (a bulk rotation) costs four
/// writes a second, not one per change (10,000 entries are about 1 MB of JSON, written
/// in a few milliseconds); a restart within that quarter second starts from a copy a
/// quarter second old, which the first resync after the database is back brings up to
/// date.
pub const SAVE_INTERVAL: Duration = Duration::from_millis(250);

/// The file's format version; a file of another version is not read.
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Saved {
    format: u32,
    /// Unix seconds.
    saved_at: i64,
    /// Where the entries came from (`StoreInfo::location`), so a file left from another
    /// database is not taken for this one's.
    store: String,
    entries: Vec<Entry>,
}

/// The cache file of one registry.
#[derive(Debug, Clone)]
pub struct CacheFile {
    path: PathBuf,
}

impl CacheFile {
    pub fn new(path: impl Into<PathBuf>) -> CacheFile {
        CacheFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entries saved from `store`, and when (Unix seconds); `None` if there is no
    /// file, or it is from another store or format.
    pub fn load(&self, store: &str) -> Result<Option<(Vec<Entry>, i64)>, RegistryError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error("reading", e)),
        };
        let saved: Saved = serde_json::from_slice(&bytes).map_err(|e| self.error("parsing", e))?;
        if saved.format != FORMAT || saved.store != store {
            return Ok(None);
        }
        Ok(Some((saved.entries, saved.saved_at)))
    }

    /// Writes `entries` (from `store`) in place of the last copy.
    pub fn save(&self, store: &str, entries: Vec<Entry>) -> Result<(), RegistryError> {
        let saved = Saved {
            format: FORMAT,
            saved_at: crate::entry::unix_now(),
            store: store.to_owned(),
            entries,
        };
        let bytes = serde_json::to_vec(&saved).map_err(|e| self.error("encoding", e))?;
        let temporary = self.path.with_extension("tmp");
        let write = || -> std::io::Result<()> {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&temporary)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &self.path)
        };
        write().map_err(|e| self.error("writing", e))
    }

    fn error(&self, doing: &str, e: impl std::fmt::Display) -> RegistryError {
        RegistryError::Settings(format!(
            "the registry's cache {}: {doing} failed: {e}",
            self.path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Entry {
        Entry {
            id: id.into(),
            name: "n".into(),
            token: "abcdefghijklmnop".into(),
            created_at: 1,
            token_generation: 2,
        }
    }

    #[test]
    fn saves_and_loads_for_its_store_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheFile::new(dir.path().join("cache.json"));
        assert!(cache.load("pg://a").unwrap().is_none(), "no file yet");
        cache
            .save("pg://a", vec![entry("1_a"), entry("1_b")])
            .unwrap();
        let (entries, _) = cache.load("pg://a").unwrap().expect("saved");
        assert_eq!(entries, vec![entry("1_a"), entry("1_b")]);
        assert!(cache.load("pg://other").unwrap().is_none());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cache.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "tokens are readable by the node alone");
        std::fs::write(cache.path(), "not json").unwrap();
        let err = cache.load("pg://a").unwrap_err().to_string();
        assert!(
            err.contains("cache.json") && err.contains("parsing"),
            "{err}"
        );
    }
}
