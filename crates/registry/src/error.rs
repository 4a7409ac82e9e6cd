//! What went wrong in the registry: SQL and file errors name the database file and the
//! operation, so a log line alone says where to look.

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

    /// The file was written by a newer longhaul with a schema this build does not know.
    #[error(
        "registry {path}: database schema version {found} is newer than this build \
         understands (up to {supported}); upgrade longhaul"
    )]
    SchemaTooNew {
        path: String,
        found: i64,
        supported: i64,
    },

    /// No entry has this id.
    #[error("no live entry with id '{0}'")]
    NotFound(String),

    /// An entry name that is too long or has control characters.
    #[error("invalid entry name: {0}")]
    InvalidName(&'static str),

    /// The operating system's random number generator failed.
    #[error("could not read the operating system's random number generator: {0}")]
    Random(String),

    /// Every freshly drawn entry id was taken (astronomically unlikely; see
    /// [`crate::generate::ENTRY_ID_ATTEMPTS`]).
    #[error("registry {path}: no free entry id found after {attempts} attempts")]
    IdsExhausted { path: String, attempts: u32 },
}
