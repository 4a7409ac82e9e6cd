//! [`SqliteStore`]: entries and tokens in an embedded SQLite file (WAL mode), the store of
//! a single host and of `longhaul dev`, whose two origins open the same file.
//!
//! Every call is one short statement on a connection behind a mutex, run on tokio's
//! blocking pool so the reactor never waits on the disk. Changes made by other
//! connections (the other dev origin, a second process) are seen by a watcher thread
//! with a connection of its own that reads `PRAGMA data_version`, a counter SQLite bumps
//! whenever another connection commits, every [`WATCH_INTERVAL`]; a bump becomes a
//! [`StoreEvent::Resync`], since SQLite does not say which rows changed.
//!
//! Where streams are live ([`crate::presence`]) is kept in a second file beside it
//! ([`presence_path`]), so presence writes do not make every origin re-read the entries.

mod presence;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};
use tokio::sync::mpsc;

use crate::entry::{validate_name, Entry};
use crate::error::RegistryError;
use crate::generate::{new_entry_id, new_token, ENTRY_ID_ATTEMPTS};
use crate::presence::{LiveAt, LiveStream, PresenceOrigin};
use crate::store::{EntryStore, StoreEvent, StoreInfo, FEED_CAPACITY};

pub use presence::{presence_path, PRESENCE_SCHEMA_VERSION};
pub use schema::{BUSY_TIMEOUT, SCHEMA_VERSION};

/// What `path` says in errors of an in-memory store.
const IN_MEMORY: &str = ":memory:";

/// The columns of [`Entry`], in the order [`entry_from_row`] reads them.
const ENTRY_COLUMNS: &str = "id, name, token, created_at, token_generation";

/// How often the watcher reads `PRAGMA data_version`. The read is a lookup in the
/// WAL index in shared memory (about 2 µs here), so polling every 100 ms costs nothing
/// and a change made by another process reaches this one's copy within a tenth of a
/// second, well inside the one second a change may take to reach every origin.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// The entries store in an SQLite file. Cheap to share (`Arc`).
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// In memory, the feeds' senders, kept so the feeds stay open (nothing else can
    /// change the database, so nothing is ever sent after the first `Resync`).
    idle_feeds: Mutex<Vec<mpsc::Sender<StoreEvent>>>,
    /// Where the file is; `None` in memory (the watcher then has nothing to watch).
    file: Option<PathBuf>,
    path: String,
    /// Where streams are live: a connection to the presence file (or a database of its
    /// own in memory).
    presence: Arc<Mutex<Connection>>,
    presence_path: String,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens the file at `path`, creating it and its schema if missing. The directory
    /// must exist. Several processes may open the same file.
    pub fn open(path: &Path) -> Result<SqliteStore, RegistryError> {
        let shown = path.display().to_string();
        let conn = Connection::open(path).map_err(|source| RegistryError::Sql {
            path: shown.clone(),
            operation: "opening the database file",
            source,
        })?;
        let presence_file = presence_path(path);
        let presence_shown = presence_file.display().to_string();
        let presence = Connection::open(&presence_file).map_err(|source| RegistryError::Sql {
            path: presence_shown.clone(),
            operation: "opening the presence file",
            source,
        })?;
        SqliteStore::with_connection(
            conn,
            Some(path.to_owned()),
            shown,
            (presence, presence_shown),
        )
    }

    /// A store in memory, gone when dropped: for tests. Its feed sends one `Resync`
    /// and nothing more (no other connection can change it).
    pub fn open_in_memory() -> Result<SqliteStore, RegistryError> {
        let conn = Connection::open_in_memory().map_err(|source| RegistryError::Sql {
            path: IN_MEMORY.to_owned(),
            operation: "opening an in-memory database",
            source,
        })?;
        let presence = Connection::open_in_memory().map_err(|source| RegistryError::Sql {
            path: IN_MEMORY.to_owned(),
            operation: "opening an in-memory database",
            source,
        })?;
        SqliteStore::with_connection(
            conn,
            None,
            IN_MEMORY.to_owned(),
            (presence, IN_MEMORY.to_owned()),
        )
    }

    fn with_connection(
        mut conn: Connection,
        file: Option<PathBuf>,
        path: String,
        (mut presence, presence_path): (Connection, String),
    ) -> Result<SqliteStore, RegistryError> {
        schema::prepare(&mut conn, &path)?;
        presence::prepare(&mut presence, &presence_path)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            idle_feeds: Mutex::new(Vec::new()),
            file,
            path,
            presence: Arc::new(Mutex::new(presence)),
            presence_path,
        })
    }

    /// The database file's path as shown in errors (`:memory:` for in-memory ones).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &str) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let (conn, path) = (self.conn.clone(), self.path.clone());
        tokio::task::spawn_blocking(move || f(&lock(&conn), &path))
            .await
            .map_err(|e| RegistryError::Unavailable {
                location: self.path.clone(),
                operation: "running a statement",
                reason: format!("the blocking task failed: {e}"),
            })?
    }

    /// Runs `f` with the presence connection on the blocking pool.
    async fn with_presence<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &str) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let (conn, path) = (self.presence.clone(), self.presence_path.clone());
        tokio::task::spawn_blocking(move || f(&mut lock(&conn), &path))
            .await
            .map_err(|e| RegistryError::Unavailable {
                location: self.presence_path.clone(),
                operation: "running a statement",
                reason: format!("the blocking task failed: {e}"),
            })?
    }
}

#[async_trait]
impl EntryStore for SqliteStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            backend: "sqlite",
            location: self.path.clone(),
        }
    }

    async fn create(&self, name: Option<&str>) -> Result<Entry, RegistryError> {
        if let Some(name) = name {
            validate_name(name)?;
        }
        let name = name.map(str::to_owned);
        self.with_conn(move |conn, path| create(conn, path, name.as_deref()))
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<Entry>, RegistryError> {
        let id = id.to_owned();
        self.with_conn(move |conn, path| get(conn, path, &id)).await
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<Entry>, RegistryError> {
        let ids = ids.to_vec();
        self.with_conn(move |conn, path| {
            let mut found = Vec::with_capacity(ids.len());
            for id in &ids {
                found.extend(get(conn, path, id)?);
            }
            Ok(found)
        })
        .await
    }

    async fn list(&self) -> Result<Vec<Entry>, RegistryError> {
        self.with_conn(list).await
    }

    async fn rename(&self, id: &str, name: &str) -> Result<Entry, RegistryError> {
        validate_name(name)?;
        let (id, name) = (id.to_owned(), name.to_owned());
        self.with_conn(move |conn, path| {
            conn.query_row(
                &format!("UPDATE entries SET name = ?2 WHERE id = ?1 RETURNING {ENTRY_COLUMNS}"),
                params![id, name],
                entry_from_row,
            )
            .optional()
            .map_err(|source| sql_error(path, "renaming an entry", source))?
            .ok_or(RegistryError::NotFound(id))
        })
        .await
    }

    async fn delete(&self, id: &str) -> Result<bool, RegistryError> {
        let id = id.to_owned();
        self.with_conn(move |conn, path| {
            conn.execute("DELETE FROM entries WHERE id = ?1", [&id])
                .map(|n| n > 0)
                .map_err(|source| sql_error(path, "deleting an entry", source))
        })
        .await
    }

    async fn regenerate_token(
        &self,
        id: &str,
        expected: Option<u32>,
    ) -> Result<Entry, RegistryError> {
        let token = new_token()?;
        let id = id.to_owned();
        self.with_conn(move |conn, path| {
            let updated = conn
                .query_row(
                    &format!(
                        "UPDATE entries SET token = ?2, token_generation = token_generation + 1
                         WHERE id = ?1 AND (?3 IS NULL OR token_generation = ?3)
                         RETURNING {ENTRY_COLUMNS}"
                    ),
                    params![id, token, expected],
                    entry_from_row,
                )
                .optional()
                .map_err(|source| sql_error(path, "regenerating a token", source))?;
            match (updated, expected) {
                (Some(entry), _) => Ok(entry),
                // Nothing matched: either no such entry or another generation.
                (None, Some(expected)) => match get(conn, path, &id)? {
                    Some(now) => Err(RegistryError::Conflict {
                        id,
                        expected,
                        found: now.token_generation,
                    }),
                    None => Err(RegistryError::NotFound(id)),
                },
                (None, None) => Err(RegistryError::NotFound(id)),
            }
        })
        .await
    }

    fn watch(&self) -> mpsc::Receiver<StoreEvent> {
        let (tx, rx) = mpsc::channel(FEED_CAPACITY);
        let Some(file) = self.file.clone() else {
            // In memory: nothing else can change it.
            let _ = tx.try_send(StoreEvent::Resync);
            lock(&self.idle_feeds).push(tx);
            return rx;
        };
        let spawned = std::thread::Builder::new()
            .name("registry-watch".into())
            .spawn(move || watch_file(&file, tx));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the registry watcher thread; changes by other processes will not be seen");
        }
        rx
    }

    async fn set_presence(
        &self,
        origin: &PresenceOrigin,
        streams: &[LiveStream],
        ttl: Duration,
    ) -> Result<(), RegistryError> {
        let (origin, streams) = (origin.clone(), streams.to_vec());
        let ttl = ttl.min(crate::presence::MAX_TTL);
        self.with_presence(move |conn, path| presence::set(conn, path, &origin, &streams, ttl))
            .await
    }

    async fn presence_of(&self, stream: &str) -> Result<Vec<LiveAt>, RegistryError> {
        let stream = stream.to_owned();
        self.with_presence(move |conn, path| presence::of(conn, path, &stream))
            .await
    }
}

/// The watcher: reports a `Resync` whenever another connection committed, until the
/// receiver is dropped. A failing file (unreadable, removed disk) is reported as `Lost`
/// and retried every interval; the next success is a `Resync`.
///
/// The first `Resync` goes out only once the first `data_version` is read: a commit
/// made before it is in what that resync reads, one made after it bumps the version. A
/// first `Resync` sent before the read could miss a commit made in between.
fn watch_file(file: &Path, tx: mpsc::Sender<StoreEvent>) {
    let mut conn: Option<Connection> = None;
    // The version last read; `None` at the start and after the file was lost, so the
    // next good read says Resync.
    let mut last: Option<i64> = None;
    let mut reported_lost = false;
    let mut first = true;
    while !tx.is_closed() {
        if !first {
            std::thread::sleep(WATCH_INTERVAL);
        }
        first = false;
        let event = match read_version(&mut conn, file) {
            Ok(version) => {
                let changed = last != Some(version);
                last = Some(version);
                reported_lost = false;
                changed.then_some(StoreEvent::Resync)
            }
            Err(e) => {
                conn = None;
                last = None;
                let news = !reported_lost;
                reported_lost = true;
                news.then(|| StoreEvent::Lost {
                    reason: format!("reading {}: {e}", file.display()),
                })
            }
        };
        if let Some(event) = event {
            if tx.blocking_send(event).is_err() {
                return;
            }
        }
    }
}

/// `PRAGMA data_version` on the watcher's own connection, opened if need be.
fn read_version(conn: &mut Option<Connection>, file: &Path) -> rusqlite::Result<i64> {
    if conn.is_none() {
        let c = Connection::open(file)?;
        c.busy_timeout(BUSY_TIMEOUT)?;
        *conn = Some(c);
    }
    match conn {
        Some(c) => c.query_row("PRAGMA data_version", [], |row| row.get(0)),
        None => Err(rusqlite::Error::InvalidQuery),
    }
}

fn create(conn: &Connection, path: &str, name: Option<&str>) -> Result<Entry, RegistryError> {
    let token = new_token()?;
    let created_at = crate::entry::unix_now();
    for _ in 0..ENTRY_ID_ATTEMPTS {
        let id = new_entry_id()?;
        let entry = Entry {
            name: name.map_or_else(|| id.clone(), str::to_owned),
            id,
            token: token.clone(),
            created_at,
            token_generation: 1,
        };
        let inserted = conn.execute(
            "INSERT INTO entries (id, name, token, created_at, token_generation)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                entry.id,
                entry.name,
                entry.token,
                entry.created_at,
                entry.token_generation
            ],
        );
        match inserted {
            Ok(_) => return Ok(entry),
            Err(e) if is_constraint_violation(&e) => continue,
            Err(source) => return Err(sql_error(path, "creating an entry", source)),
        }
    }
    Err(RegistryError::IdsExhausted {
        location: path.to_owned(),
        attempts: ENTRY_ID_ATTEMPTS,
    })
}

fn get(conn: &Connection, path: &str, id: &str) -> Result<Option<Entry>, RegistryError> {
    conn.query_row(
        &format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE id = ?1"),
        [id],
        entry_from_row,
    )
    .optional()
    .map_err(|source| sql_error(path, "reading an entry", source))
}

fn list(conn: &Connection, path: &str) -> Result<Vec<Entry>, RegistryError> {
    let list = || -> rusqlite::Result<Vec<Entry>> {
        let mut statement = conn.prepare(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries ORDER BY created_at, id"
        ))?;
        let rows = statement.query_map([], entry_from_row)?;
        rows.collect()
    };
    list().map_err(|source| sql_error(path, "listing entries", source))
}

/// The connection. A panic elsewhere while holding the lock cannot leave it half used
/// (every call is one statement, and rusqlite rolls back dropped transactions), so a
/// poisoned lock is taken over rather than failing forever.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn sql_error(path: &str, operation: &'static str, source: rusqlite::Error) -> RegistryError {
    RegistryError::Sql {
        path: path.to_owned(),
        operation,
        source,
    }
}

fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        id: row.get(0)?,
        name: row.get(1)?,
        token: row.get(2)?,
        created_at: row.get(3)?,
        token_generation: row.get(4)?,
    })
}

fn is_constraint_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(e, _) if e.code == ErrorCode::ConstraintViolation
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SqliteStore>();
    }

    #[test]
    fn debug_does_not_show_tokens() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert_eq!(format!("{store:?}"), "SqliteStore { path: \":memory:\" }");
    }

    /// A token written by hand without a new generation still gets one, so live
    /// publishes of the old token are cut like after a regeneration through the API.
    #[tokio::test]
    async fn a_hand_written_token_change_bumps_the_generation() {
        let store = SqliteStore::open_in_memory().unwrap();
        let entry = store.create(Some("x")).await.unwrap();
        let id = entry.id.clone();
        store
            .with_conn(move |conn, path| {
                conn.execute(
                    "UPDATE entries SET token = 'handwritten' WHERE id = ?1",
                    [&id],
                )
                .map_err(|source| sql_error(path, "test update", source))
            })
            .await
            .unwrap();
        let now = store.get(&entry.id).await.unwrap().unwrap();
        assert_eq!(now.token, "handwritten");
        assert_eq!(now.token_generation, 2);
    }
}
