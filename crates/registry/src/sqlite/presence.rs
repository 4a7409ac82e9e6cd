//! Presence in SQLite ([`crate::presence`]): a file of its own beside the entries'
//! (`registry.db` → `registry-presence.db`), versioned like it with `PRAGMA
//! user_version`.
//!
//! Why another file: the entries' watcher notices any commit to the entries' file
//! (`PRAGMA data_version` says only that something changed) and makes every origin
//! re-read every entry. Presence is written on every publish start and end and on each
//! origin's heartbeat; in the same file each of those writes would cost every other
//! origin a full re-read.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, TransactionBehavior};

use crate::error::RegistryError;
use crate::presence::{distinct, millis, LiveAt, LiveStream, PresenceOrigin, FORGET_AFTER};

/// The presence schema version this build writes and understands.
pub const PRESENCE_SCHEMA_VERSION: i64 = 1;

const SCHEMA_V1: &str = "
    CREATE TABLE presence (
        stream       TEXT    NOT NULL,
        origin       TEXT    NOT NULL,
        entry_id     TEXT    NOT NULL,
        region       TEXT    NOT NULL,
        rtmp_url     TEXT,
        http_flv_url TEXT,
        updated_at   INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL,
        PRIMARY KEY (stream, origin)
    ) STRICT;
    CREATE INDEX presence_origin ON presence (origin);
";

/// Where the presence file of the entries' file `entries` is: `-presence` added to its
/// stem (`registry.db` → `registry-presence.db`).
pub fn presence_path(entries: &Path) -> PathBuf {
    let stem = entries
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match entries.extension() {
        Some(ext) => format!("{stem}-presence.{}", ext.to_string_lossy()),
        None => format!("{stem}-presence"),
    };
    entries.with_file_name(name)
}

/// Sets up a presence connection (busy timeout, WAL) and its schema. `path` is only for
/// error messages.
pub(crate) fn prepare(conn: &mut Connection, path: &str) -> Result<(), RegistryError> {
    let sql = |operation| {
        let path = path.to_owned();
        move |source| RegistryError::Sql {
            path,
            operation,
            source,
        }
    };
    conn.busy_timeout(super::BUSY_TIMEOUT)
        .map_err(sql("setting the busy timeout"))?;
    super::schema::switch_to_wal(conn).map_err(sql("switching to WAL journal mode"))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql("setting synchronous mode"))?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql("starting the schema transaction"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sql("reading the schema version"))?;
    if version > PRESENCE_SCHEMA_VERSION {
        return Err(RegistryError::SchemaTooNew {
            location: path.to_owned(),
            found: version,
            supported: PRESENCE_SCHEMA_VERSION,
        });
    }
    if version < 1 {
        tx.execute_batch(SCHEMA_V1)
            .map_err(sql("creating the presence schema"))?;
    }
    tx.pragma_update(None, "user_version", PRESENCE_SCHEMA_VERSION)
        .map_err(sql("writing the schema version"))?;
    tx.commit().map_err(sql("committing the schema"))?;
    Ok(())
}

/// Now, Unix milliseconds by this host's clock (0 before 1970).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, millis)
}

/// [`crate::EntryStore::set_presence`] on `conn`.
pub(crate) fn set(
    conn: &mut Connection,
    path: &str,
    origin: &PresenceOrigin,
    streams: &[LiveStream],
    ttl: std::time::Duration,
) -> Result<(), RegistryError> {
    let err = |source| RegistryError::Sql {
        path: path.to_owned(),
        operation: "writing where streams are live",
        source,
    };
    let now = now_ms();
    let expires = now.saturating_add(millis(ttl));
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    {
        // Rows of this origin not in `streams` go; the rest are written anew.
        let keep: Vec<&LiveStream> = distinct(streams);
        let mut existing = tx
            .prepare_cached("SELECT stream FROM presence WHERE origin = ?1")
            .map_err(err)?;
        let names: Vec<String> = existing
            .query_map([&origin.id], |row| row.get(0))
            .map_err(err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(err)?;
        let wanted: std::collections::HashSet<&str> =
            keep.iter().map(|s| s.stream.as_str()).collect();
        let mut delete = tx
            .prepare_cached("DELETE FROM presence WHERE stream = ?1 AND origin = ?2")
            .map_err(err)?;
        for name in names.iter().filter(|n| !wanted.contains(n.as_str())) {
            delete.execute(params![name, origin.id]).map_err(err)?;
        }
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO presence (stream, origin, entry_id, region, rtmp_url, http_flv_url,
                                       updated_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (stream, origin) DO UPDATE SET
                     entry_id = excluded.entry_id, region = excluded.region,
                     rtmp_url = excluded.rtmp_url, http_flv_url = excluded.http_flv_url,
                     updated_at = excluded.updated_at, expires_at = excluded.expires_at",
            )
            .map_err(err)?;
        for s in keep {
            upsert
                .execute(params![
                    s.stream,
                    origin.id,
                    s.entry_id,
                    origin.region,
                    s.rtmp,
                    s.http_flv,
                    now,
                    expires
                ])
                .map_err(err)?;
        }
        tx.execute(
            "DELETE FROM presence WHERE expires_at < ?1",
            [now.saturating_sub(millis(FORGET_AFTER))],
        )
        .map_err(err)?;
    }
    tx.commit().map_err(err)
}

/// [`crate::EntryStore::presence_of`] on `conn`.
pub(crate) fn of(
    conn: &Connection,
    path: &str,
    stream: &str,
) -> Result<Vec<LiveAt>, RegistryError> {
    let read = || -> rusqlite::Result<Vec<LiveAt>> {
        let mut statement = conn.prepare_cached(
            "SELECT stream, entry_id, origin, region, rtmp_url, http_flv_url, updated_at, expires_at
             FROM presence WHERE stream = ?1 AND expires_at > ?2 ORDER BY origin",
        )?;
        let rows = statement.query_map(params![stream, now_ms()], |row| {
            Ok(LiveAt {
                stream: row.get(0)?,
                entry_id: row.get(1)?,
                origin: row.get(2)?,
                region: row.get(3)?,
                rtmp: row.get(4)?,
                http_flv: row.get(5)?,
                updated_at: row.get(6)?,
                expires_at: row.get(7)?,
            })
        })?;
        rows.collect()
    };
    read().map_err(|source| RegistryError::Sql {
        path: path.to_owned(),
        operation: "reading where a stream is live",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_presence_file_sits_beside_the_entries() {
        assert_eq!(
            presence_path(Path::new("/var/lib/longhaul/registry.db")),
            Path::new("/var/lib/longhaul/registry-presence.db")
        );
        assert_eq!(
            presence_path(Path::new("dev/registry")),
            Path::new("dev/registry-presence")
        );
    }
}
