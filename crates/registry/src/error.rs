//! What went wrong in the registry. Every error names the store (the SQLite file, or the
//! PostgreSQL host and database, never a password) and the operation, so a log line alone
//! says where to look; [`RegistryError::is_unavailable`] tells the API to answer 503.

use thiserror::Error;

/// A registry failure.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// SQLite failed while doing `operation` on the database at `path`.
    #[error("registry {path}: {operation} failed: {source}")]
    Sql {
        path: String,
        operation: &'static str,
        #[source]
        source: rusqlite::Error,
    },

    /// PostgreSQL refused or failed a statement (the server answered: not a lost
    /// connection, which is [`RegistryError::Unavailable`]).
    #[error("registry {location}: {operation} failed: {reason}")]
    Postgres {
        location: String,
        operation: &'static str,
        reason: String,
    },

    /// The database cannot be reached now (connection refused or lost, no answer in
    /// time). Entries are still served from memory; changes wait until it is back.
    #[error("registry {location} is unreachable: {operation} failed: {reason}")]
    Unavailable {
        location: String,
        operation: &'static str,
        reason: String,
    },

    /// The database was written by a newer longhaul with a schema this build does not know.
    #[error(
        "registry {location}: database schema version {found} is newer than this build \
         understands (up to {supported}); upgrade longhaul"
    )]
    SchemaTooNew {
        /// The SQLite file, or the PostgreSQL database.
        location: String,
        found: i64,
        supported: i64,
    },

    /// No entry has this id.
    #[error("no live entry with id '{0}'")]
    NotFound(String),

    /// A change asked for the state it expected (a token generation) and found another.
    #[error(
        "entry {id} is at token generation {found}, not {expected}: someone else changed it first"
    )]
    Conflict {
        id: String,
        expected: u32,
        found: u32,
    },

    /// An entry name that is too long or has control characters.
    #[error("invalid entry name: {0}")]
    InvalidName(&'static str),

    /// The operating system's random number generator failed.
    #[error("could not read the operating system's random number generator: {0}")]
    Random(String),

    /// Every freshly drawn entry id was taken (astronomically unlikely; see
    /// [`crate::generate::ENTRY_ID_ATTEMPTS`]).
    #[error("registry {location}: no free entry id found after {attempts} attempts")]
    IdsExhausted { location: String, attempts: u32 },

    /// The store's settings cannot work (a password in the URL, an unreadable password
    /// file, a URL that does not parse).
    #[error("registry settings: {0}")]
    Settings(String),

    /// The registry's background task is gone (the node is shutting down).
    #[error("the registry is shutting down")]
    Closed,
}

impl RegistryError {
    /// True when the database is out of reach, rather than the request being wrong: the
    /// API answers 503 and the caller may retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            RegistryError::Unavailable { .. } | RegistryError::Closed => true,
            RegistryError::Sql { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::CannotOpen
                        | rusqlite::ErrorCode::SystemIoFailure
                        | rusqlite::ErrorCode::DiskFull
                )
            ),
            _ => false,
        }
    }
}
