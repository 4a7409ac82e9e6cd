//! [`Registry`]: live entries and their publish tokens in an SQLite file.

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};

use crate::change::{Listeners, RegistryChange};
use crate::entry::{validate_name, Entry};
use crate::error::RegistryError;
use crate::generate::{new_entry_id, new_token, ENTRY_ID_ATTEMPTS};
use crate::schema;
use crate::token_check::{tokens_equal, TokenCheck};

/// What `path` says in errors of an in-memory registry.
const IN_MEMORY: &str = ":memory:";

/// The columns of [`Entry`], in the order [`entry_from_row`] reads them.
const ENTRY_COLUMNS: &str = "id, name, token, created_at, token_generation";

/// The entries registry. Cheap to share (`Arc<Registry>`); every method is a short
/// blocking SQLite call, so async callers should use `spawn_blocking`.
pub struct Registry {
    conn: Mutex<Connection>,
    path: String,
    listeners: Listeners,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("path", &self.path)
            .finish()
    }
}

impl Registry {
    /// Opens the registry file at `path`, creating it and its schema if missing. The
    /// directory must exist. Several processes may open the same file.
    pub fn open(path: &Path) -> Result<Registry, RegistryError> {
        let shown = path.display().to_string();
        let conn = Connection::open(path).map_err(|source| RegistryError::Sql {
            path: shown.clone(),
            operation: "opening the database file",
            source,
        })?;
        Registry::with_connection(conn, shown)
    }

    /// A registry in memory, gone when dropped: for tests.
    pub fn open_in_memory() -> Result<Registry, RegistryError> {
        let conn = Connection::open_in_memory().map_err(|source| RegistryError::Sql {
            path: IN_MEMORY.to_owned(),
            operation: "opening an in-memory database",
            source,
        })?;
        Registry::with_connection(conn, IN_MEMORY.to_owned())
    }

    fn with_connection(mut conn: Connection, path: String) -> Result<Registry, RegistryError> {
        schema::prepare(&mut conn, &path)?;
        Ok(Registry {
            conn: Mutex::new(conn),
            path,
            listeners: Listeners::default(),
        })
    }

    /// The database file's path as shown in errors (`:memory:` for in-memory ones).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Creates an entry with a fresh id and token (generation 1). `name` defaults to
    /// the id.
    pub fn create_entry(&self, name: Option<&str>) -> Result<Entry, RegistryError> {
        if let Some(name) = name {
            validate_name(name)?;
        }
        let token = new_token()?;
        let created_at = unix_now();
        let conn = self.conn();
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
                Err(source) => return Err(self.sql_error("creating an entry", source)),
            }
        }
        Err(RegistryError::IdsExhausted {
            path: self.path.clone(),
            attempts: ENTRY_ID_ATTEMPTS,
        })
    }

    /// The entry with this id, if any.
    pub fn get(&self, id: &str) -> Result<Option<Entry>, RegistryError> {
        self.conn()
            .query_row(
                &format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE id = ?1"),
                [id],
                entry_from_row,
            )
            .optional()
            .map_err(|source| self.sql_error("reading an entry", source))
    }

    /// Every entry, oldest first.
    pub fn list(&self) -> Result<Vec<Entry>, RegistryError> {
        let conn = self.conn();
        let list = || -> rusqlite::Result<Vec<Entry>> {
            let mut statement = conn.prepare(&format!(
                "SELECT {ENTRY_COLUMNS} FROM entries ORDER BY created_at, rowid"
            ))?;
            let rows = statement.query_map([], entry_from_row)?;
            rows.collect()
        };
        list().map_err(|source| self.sql_error("listing entries", source))
    }

    /// Renames an entry and returns it as it now is.
    pub fn rename(&self, id: &str, name: &str) -> Result<Entry, RegistryError> {
        validate_name(name)?;
        self.conn()
            .query_row(
                &format!("UPDATE entries SET name = ?2 WHERE id = ?1 RETURNING {ENTRY_COLUMNS}"),
                params![id, name],
                entry_from_row,
            )
            .optional()
            .map_err(|source| self.sql_error("renaming an entry", source))?
            .ok_or_else(|| RegistryError::NotFound(id.to_owned()))
    }

    /// Deletes an entry; `false` if there was none. Listeners hear
    /// [`RegistryChange::Deleted`].
    pub fn delete(&self, id: &str) -> Result<bool, RegistryError> {
        let deleted = self
            .conn()
            .execute("DELETE FROM entries WHERE id = ?1", [id])
            .map_err(|source| self.sql_error("deleting an entry", source))?
            > 0;
        if deleted {
            self.listeners.notify(&RegistryChange::Deleted {
                entry_id: id.to_owned(),
            });
        }
        Ok(deleted)
    }

    /// Gives an entry a fresh token of the next generation; the old token is refused
    /// from then on. Listeners hear [`RegistryChange::TokenRegenerated`].
    pub fn regenerate_token(&self, id: &str) -> Result<Entry, RegistryError> {
        let token = new_token()?;
        let entry = self
            .conn()
            .query_row(
                &format!(
                    "UPDATE entries SET token = ?2, token_generation = token_generation + 1
                     WHERE id = ?1 RETURNING {ENTRY_COLUMNS}"
                ),
                params![id, token],
                entry_from_row,
            )
            .optional()
            .map_err(|source| self.sql_error("regenerating a token", source))?
            .ok_or_else(|| RegistryError::NotFound(id.to_owned()))?;
        self.listeners.notify(&RegistryChange::TokenRegenerated {
            entry_id: entry.id.clone(),
            generation: entry.token_generation,
        });
        Ok(entry)
    }

    /// Checks a presented publish token against the entry's current one, in constant
    /// time over the token's content (see [`crate::token_check`]). An empty token counts
    /// as missing.
    pub fn check_token(
        &self,
        entry_id: &str,
        presented: Option<&str>,
    ) -> Result<TokenCheck, RegistryError> {
        let stored: Option<(String, u32)> = self
            .conn()
            .query_row(
                "SELECT token, token_generation FROM entries WHERE id = ?1",
                [entry_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|source| self.sql_error("checking a token", source))?;
        let Some((stored, generation)) = stored else {
            return Ok(TokenCheck::UnknownEntry);
        };
        Ok(match presented {
            None | Some("") => TokenCheck::Missing,
            Some(presented) if tokens_equal(stored.as_bytes(), presented.as_bytes()) => {
                TokenCheck::Valid { generation }
            }
            Some(_) => TokenCheck::Wrong,
        })
    }

    /// Calls `listener` after every committed token regeneration or deletion made
    /// through this handle (see [`crate::change`]).
    pub fn on_change(&self, listener: impl Fn(&RegistryChange) + Send + Sync + 'static) {
        self.listeners.add(std::sync::Arc::new(listener));
    }

    /// The connection. A panic elsewhere while holding the lock cannot leave it half
    /// used (every method is one statement, and rusqlite rolls back dropped
    /// transactions), so a poisoned lock is taken over rather than failing forever.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn sql_error(&self, operation: &'static str, source: rusqlite::Error) -> RegistryError {
        RegistryError::Sql {
            path: self.path.clone(),
            operation,
            source,
        }
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

/// Now in Unix seconds; 0 if the clock is before 1970.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn registry_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Registry>();
        assert_send_sync::<Arc<Registry>>();
    }

    #[test]
    fn debug_does_not_show_tokens() {
        let registry = Registry::open_in_memory().unwrap();
        registry.create_entry(None).unwrap();
        assert_eq!(format!("{registry:?}"), "Registry { path: \":memory:\" }");
    }
}
