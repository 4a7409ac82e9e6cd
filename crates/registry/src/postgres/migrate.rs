//! Versioned migrations of the PostgreSQL schema.
//!
//! Each migration is a SQL file in `crates/registry/migrations/postgres/`, numbered, and
//! applied once, in order, in one transaction with its row in `longhaul_migrations`. Two
//! origins starting at once against a new database both try: a transaction-scoped
//! advisory lock makes the second wait for the first and then find nothing to do. A
//! database migrated by a newer longhaul (a version this build does not know) is refused,
//! so an old origin never writes to a schema it does not understand.

use tokio_postgres::Client;

use crate::error::RegistryError;

/// A migration: its version, a name for the log and the table, and its SQL.
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this build knows, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "entries",
        sql: include_str!("../../migrations/postgres/0001_entries.sql"),
    },
    Migration {
        version: 2,
        name: "change_feed",
        sql: include_str!("../../migrations/postgres/0002_change_feed.sql"),
    },
    Migration {
        version: 3,
        name: "presence",
        sql: include_str!("../../migrations/postgres/0003_presence.sql"),
    },
];

/// The advisory lock key migrations hold: "lhmg" in ASCII, unlikely to meet another
/// application's key in a shared database.
const MIGRATION_LOCK: i64 = 0x6c68_6d67;

/// Brings the schema up to the newest migration. Returns the versions applied now.
pub async fn migrate(client: &mut Client, location: &str) -> Result<Vec<i32>, RegistryError> {
    let fail = |operation: &'static str| {
        let location = location.to_owned();
        move |e: tokio_postgres::Error| super::classify(&location, operation, e)
    };
    let tx = client
        .transaction()
        .await
        .map_err(fail("starting the migration transaction"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail("taking the migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS longhaul_migrations (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(fail("creating the migrations table"))?;
    let current: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM longhaul_migrations",
            &[],
        )
        .await
        .map_err(fail("reading the schema version"))?
        .get(0);
    let newest = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > newest {
        return Err(RegistryError::SchemaTooNew {
            location: location.to_owned(),
            found: i64::from(current),
            supported: i64::from(newest),
        });
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(migration.sql)
            .await
            .map_err(fail("applying a migration"))?;
        tx.execute(
            "INSERT INTO longhaul_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(fail("recording a migration"))?;
        applied.push(migration.version);
    }
    tx.commit()
        .await
        .map_err(fail("committing the migrations"))?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_one_two_three() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
            assert!(!m.sql.trim().is_empty(), "{}", m.name);
        }
    }
}
