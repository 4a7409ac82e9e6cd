//! The entry store: where entries and tokens are kept for good, behind one async
//! interface with two implementations that pass the same test suite.
//!
//! - [`crate::sqlite::SqliteStore`]: an embedded SQLite file, the default for one host
//!   and for `longhaul dev` (both dev origins open the same file).
//! - [`crate::postgres::PostgresStore`]: a PostgreSQL database, for origins on different
//!   machines (New York and Palo Alto) sharing one source of truth.
//!
//! A store does two things: the operations (create, read, rename, regenerate, delete),
//! and [`EntryStore::watch`], a feed that tells the node when anything changed, whoever
//! changed it, so every origin's in-memory copy ([`crate::replica`]) follows within a
//! second. The node never reads the store on the publish path; [`crate::Registry`] puts
//! the two together.
//!
//! Beside the entries, a store keeps where streams are live ([`crate::presence`]): each
//! origin's rows, written off the publish path and read on a play miss.

use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::entry::Entry;
use crate::error::RegistryError;
use crate::presence::{LiveAt, LiveStream, PresenceOrigin};

/// What a store's change feed says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// The feed is (re)connected: anything may have changed while it was not, so read
    /// everything again. Always the first event.
    Resync,
    /// This entry changed (created, renamed, given a new token, deleted): read it again.
    Changed { entry_id: String },
    /// The feed lost the database: changes are not seen until the next `Resync`.
    Lost { reason: String },
}

/// Which store, for logs, `/healthz` and metrics. Never holds a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The file's path, or `host:port/database` (with the user, never the password).
    pub location: String,
}

/// Entries and tokens kept for good. Every method is one short statement (or a short
/// transaction); all are safe to call from many tasks at once.
#[async_trait]
pub trait EntryStore: Send + Sync + 'static {
    fn info(&self) -> StoreInfo;

    /// Creates an entry with a fresh id and token (generation 1). `name` defaults to
    /// the id.
    async fn create(&self, name: Option<&str>) -> Result<Entry, RegistryError>;

    /// The entry with this id, if any.
    async fn get(&self, id: &str) -> Result<Option<Entry>, RegistryError>;

    /// The entries among `ids` that exist, in one round trip (a burst of changes is
    /// read in batches).
    async fn get_many(&self, ids: &[String]) -> Result<Vec<Entry>, RegistryError>;

    /// Every entry, oldest first.
    async fn list(&self) -> Result<Vec<Entry>, RegistryError>;

    /// Renames an entry and returns it as it now is.
    async fn rename(&self, id: &str, name: &str) -> Result<Entry, RegistryError>;

    /// Deletes an entry; `false` if there was none.
    async fn delete(&self, id: &str) -> Result<bool, RegistryError>;

    /// Gives an entry a fresh token of the next generation. With `expected`, only if
    /// the entry is at that generation now ([`RegistryError::Conflict`] otherwise), so
    /// two operators regenerating at once do not both hand out a token.
    async fn regenerate_token(
        &self,
        id: &str,
        expected: Option<u32>,
    ) -> Result<Entry, RegistryError>;

    /// Starts the change feed. It sends [`StoreEvent::Resync`] once connected, then a
    /// [`StoreEvent::Changed`] per committed change (by this process or any other), and
    /// on losing the database [`StoreEvent::Lost`] followed, once back, by another
    /// `Resync`. It stays open until the receiver is dropped: a feed that ends by
    /// itself has failed.
    fn watch(&self) -> mpsc::Receiver<StoreEvent>;

    /// Replaces every presence row of `origin` by `streams` (a stream named twice is
    /// one row), each updated now and counting for `ttl` (at most
    /// [`crate::presence::MAX_TTL`]); an empty list clears the origin. Also deletes
    /// any origin's rows expired for [`crate::presence::FORGET_AFTER`].
    async fn set_presence(
        &self,
        origin: &PresenceOrigin,
        streams: &[LiveStream],
        ttl: std::time::Duration,
    ) -> Result<(), RegistryError>;

    /// The origins where `stream` is live: its rows not yet expired, by origin id.
    async fn presence_of(&self, stream: &str) -> Result<Vec<LiveAt>, RegistryError>;
}

/// Events a feed may hold before its reader takes them. A burst of changes beyond it
/// (a bulk import) waits in the database's own queue (PostgreSQL holds notifications
/// up to 8 GB) or is folded into one resync (SQLite), so nothing is lost.
pub const FEED_CAPACITY: usize = 1024;

/// Which store a node opens: the `[registry]` section, resolved.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// An SQLite file (created if missing; its directory must exist).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database.
    Postgres(crate::postgres::PostgresSettings),
}

/// Opens the store `config` names: the file (with its schema), or the database (with
/// migrations applied, or, if it cannot be reached now, applied once it can).
pub async fn open_store(
    config: &StoreConfig,
) -> Result<std::sync::Arc<dyn EntryStore>, RegistryError> {
    match config {
        StoreConfig::Sqlite(path) => {
            let path = path.clone();
            let shown = path.display().to_string();
            let store =
                tokio::task::spawn_blocking(move || crate::sqlite::SqliteStore::open(&path))
                    .await
                    .map_err(|e| RegistryError::Unavailable {
                        location: shown,
                        operation: "opening the database file",
                        reason: format!("the blocking task failed: {e}"),
                    })??;
            Ok(std::sync::Arc::new(store))
        }
        StoreConfig::Postgres(settings) => {
            let store = crate::postgres::PostgresStore::new(settings)?;
            // A database down now is not an error yet: the registry may start from its
            // cache; the schema is brought up to date on the first statement that works.
            match store.migrate().await {
                Err(e) if !e.is_unavailable() => return Err(e),
                _ => {}
            }
            Ok(std::sync::Arc::new(store))
        }
    }
}
