//! The database's schema and connection settings, versioned with `PRAGMA user_version`
//! so later releases can migrate files written by this one.

use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use crate::error::RegistryError;

/// The schema version this build writes and understands. Version 0 is an empty file.
pub const SCHEMA_VERSION: i64 = 2;

/// How long a statement waits for another connection's write lock before failing. Two
/// origins (two processes) share one file; registry writes are single short statements,
/// so 5 s only runs out if something is badly stuck.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between attempts to switch a new file to WAL while another connection holds it.
const WAL_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// Version 1: the entries table. `STRICT` makes SQLite refuse wrongly typed values.
const SCHEMA_V1: &str = "
    CREATE TABLE entries (
        id               TEXT    NOT NULL PRIMARY KEY,
        name             TEXT    NOT NULL,
        token            TEXT    NOT NULL,
        created_at       INTEGER NOT NULL,
        token_generation INTEGER NOT NULL
    ) STRICT;
";

/// Version 2: a token changed without a new generation (an operator's hand-written
/// `UPDATE`) gets one, so the change revokes live publishes of the old token like a
/// regeneration through the API does: revocation goes by generation. The trigger only
/// writes `token_generation`, so it does not fire itself again.
const SCHEMA_V2: &str = "
    CREATE TRIGGER entries_token_changed AFTER UPDATE OF token ON entries
    WHEN NEW.token IS NOT OLD.token AND NEW.token_generation <= OLD.token_generation
    BEGIN
        UPDATE entries SET token_generation = OLD.token_generation + 1 WHERE id = NEW.id;
    END;
";

/// Sets up a freshly opened connection (busy timeout, WAL) and brings the schema to
/// [`SCHEMA_VERSION`]. `path` is only for error messages.
pub(crate) fn prepare(conn: &mut Connection, path: &str) -> Result<(), RegistryError> {
    let sql = |operation| {
        let path = path.to_owned();
        move |source| RegistryError::Sql {
            path,
            operation,
            source,
        }
    };
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sql("setting the busy timeout"))?;
    // WAL lets readers in one process go on while another writes. In-memory databases
    // answer "memory" and stay so, which is fine.
    switch_to_wal(conn).map_err(sql("switching to WAL journal mode"))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql("setting synchronous mode"))?;

    // IMMEDIATE takes the write lock up front, so two processes opening a new file at
    // once do not both try to create the schema.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql("starting the schema transaction"))?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sql("reading the schema version"))?;
    if version > SCHEMA_VERSION {
        return Err(RegistryError::SchemaTooNew {
            location: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 1 {
        tx.execute_batch(SCHEMA_V1)
            .map_err(sql("creating the schema"))?;
    }
    if version < 2 {
        tx.execute_batch(SCHEMA_V2)
            .map_err(sql("adding the token generation trigger"))?;
    }
    // Future migrations: `if version < 3 { ... }`, each in this transaction.
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(sql("writing the schema version"))?;
    tx.commit().map_err(sql("committing the schema"))?;
    Ok(())
}

/// Sets `journal_mode = WAL`. Switching needs an exclusive lock and SQLite answers
/// "busy" at once, without the busy handler, when another connection holds the file (two
/// processes opening a new file together), so retry for up to [`BUSY_TIMEOUT`]. Once a
/// file is in WAL mode it stays so, and later opens succeed at once.
pub(crate) fn switch_to_wal(conn: &Connection) -> rusqlite::Result<()> {
    let started = Instant::now();
    loop {
        match conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        }) {
            Ok(_) => return Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::DatabaseBusy && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(WAL_RETRY_PAUSE);
            }
            Err(e) => return Err(e),
        }
    }
}
