//! [`PostgresStore`]: entries and tokens in PostgreSQL, one source of truth for origins in
//! different data centres.
//!
//! - Statements run on a small connection pool (`deadpool-postgres` over
//!   `tokio-postgres`); a connection that broke is replaced on the next call, so the
//!   store recovers by itself when the database comes back.
//! - The schema is versioned ([`migrate`]): applied at connect, under an advisory lock.
//! - Changes are pushed, not polled: a trigger announces every committed change on the
//!   channel `longhaul_entries` (`NOTIFY`), and the feed (`feed.rs`) keeps one connection
//!   `LISTEN`ing, reconnecting with backoff and asking for a resync after each reconnect,
//!   since notifications sent while it was away are lost.
//! - Every call is bounded in time ([`STATEMENT_TIMEOUT`]); a database that does not
//!   answer is [`RegistryError::Unavailable`], which the API turns into a 503.
//! - The password comes from the settings (read from a file or an environment variable
//!   by the node), never from the URL, and is never logged: [`StoreInfo`] and every
//!   error name the user, host, port and database only.
//! - A database on another host is reached over TLS, checked against a configured CA
//!   ([`tls`]), unless the operator says otherwise on purpose.

mod feed;
pub mod migrate;
pub mod tls;

use std::str::FromStr;
use std::time::Duration;
use tracing::Instrument;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::{NoTls, Row};

use crate::entry::{validate_name, Entry};
use crate::error::RegistryError;
use crate::generate::{new_entry_id, new_token, ENTRY_ID_ATTEMPTS};
use crate::presence::{distinct, LiveAt, LiveStream, PresenceOrigin, FORGET_AFTER, MAX_TTL};
use crate::store::{EntryStore, StoreEvent, StoreInfo, FEED_CAPACITY};

/// Longest a statement may take, on the server (`statement_timeout`) and as seen from
/// here. Registry statements are single-row reads and writes that take well under a
/// millisecond; 5 s only runs out when the database is stuck or out of reach, and the
/// caller (an operator's API request) should hear so rather than wait.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a new connection may take, TCP and authentication included: a few round
/// trips between data centres (about 70 ms New York-Palo Alto) with room for loss.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Pooled connections per origin. The API writes and the change feed's reads are
/// rare and short; 4 lets a burst of API calls overlap without holding many of the
/// database's connection slots (PostgreSQL allows 100 by default).
pub const POOL_SIZE: usize = 4;

/// What a PostgreSQL store needs.
#[derive(Clone)]
pub struct PostgresSettings {
    /// `postgres://user@host:port/database[?options]`, without a password.
    pub url: String,
    /// The password, read by the node from a file or an environment variable.
    pub password: Option<String>,
    /// Shown in `pg_stat_activity` (the node's id), so a DBA can tell origins apart.
    pub application_name: String,
    /// The CA (PEM) that signed the database's certificate: connections then use TLS
    /// and check the server (see [`tls`]).
    pub tls_ca: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("application_name", &self.application_name)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

impl PostgresSettings {
    /// The connection settings and how to secure them, or why they cannot work. A
    /// password written into the URL is refused: URLs end up in logs, shell histories
    /// and process lists.
    pub fn config(&self) -> Result<(tokio_postgres::Config, tls::Transport), RegistryError> {
        let mut config = tokio_postgres::Config::from_str(&self.url).map_err(|e| {
            RegistryError::Settings(format!(
                "registry.url is not a PostgreSQL URL (postgres://user@host:port/database): {e}"
            ))
        })?;
        if config.get_password().is_some() {
            return Err(RegistryError::Settings(
                "registry.url holds a password; remove it and set registry.password_file \
                 or registry.password_env instead, so it stays out of logs and process lists"
                    .into(),
            ));
        }
        if config.get_hosts().is_empty() {
            return Err(RegistryError::Settings(
                "registry.url names no host (postgres://user@host:port/database)".into(),
            ));
        }
        if let Some(password) = &self.password {
            config.password(password.as_bytes());
        }
        config
            .application_name(&self.application_name)
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            // Unacknowledged data for this long means the peer is gone (Linux).
            .tcp_user_timeout(Duration::from_secs(20))
            .options(format!(
                "-c statement_timeout={}",
                STATEMENT_TIMEOUT.as_millis()
            ));
        let transport = tls::transport(&mut config, self.tls_ca.as_deref())?;
        Ok((config, transport))
    }
}

/// `user@host:port/database`: where the store is, without secrets.
fn location(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// The entries store in PostgreSQL.
pub struct PostgresStore {
    pool: Pool,
    config: tokio_postgres::Config,
    transport: tls::Transport,
    /// The schema is known to be up to date.
    migrated: std::sync::atomic::AtomicBool,
    location: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish()
    }
}

const ENTRY_COLUMNS: &str = "id, name, token, created_at, token_generation";

impl PostgresStore {
    /// Connects, brings the schema up to date and returns the store. Fails if the
    /// database cannot be reached now: a node must load its entries once before serving.
    pub async fn connect(settings: &PostgresSettings) -> Result<PostgresStore, RegistryError> {
        let store = PostgresStore::new(settings)?;
        store.migrate().await?;
        Ok(store)
    }

    /// The store, without connecting yet: its first statement connects, and brings the
    /// schema up to date first if [`PostgresStore::migrate`] has not. A node whose
    /// database is down at start can thus start from its cache and catch up later.
    pub fn new(settings: &PostgresSettings) -> Result<PostgresStore, RegistryError> {
        let (config, transport) = settings.config()?;
        let location = location(&config);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &transport {
            tls::Transport::Plain => Manager::from_config(config.clone(), NoTls, manager_config),
            tls::Transport::Tls(connector) => {
                Manager::from_config(config.clone(), connector.clone(), manager_config)
            }
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(STATEMENT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| RegistryError::Settings(format!("building the connection pool: {e}")))?;
        Ok(PostgresStore {
            pool,
            config,
            transport,
            location,
            migrated: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Brings the schema up to date (once; later calls return at once).
    pub async fn migrate(&self) -> Result<(), RegistryError> {
        if self.migrated.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        let mut client = self.pooled("connecting").await?;
        let applied = migrate::migrate(&mut client, &self.location).await?;
        if !applied.is_empty() {
            tracing::info!(registry = %self.location, versions = ?applied, "registry schema migrated");
        }
        self.migrated
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Where the store is: `postgres://user@host:port/database`.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// A pooled connection, the schema brought up to date first if need be.
    async fn client(
        &self,
        operation: &'static str,
    ) -> Result<deadpool_postgres::Object, RegistryError> {
        if !self.migrated.load(std::sync::atomic::Ordering::Acquire) {
            self.migrate().await?;
        }
        self.pooled(operation).await
    }

    async fn pooled(
        &self,
        operation: &'static str,
    ) -> Result<deadpool_postgres::Object, RegistryError> {
        self.pool
            .get()
            .await
            .map_err(|e| RegistryError::Unavailable {
                location: self.location.clone(),
                operation,
                reason: pool_error(e),
            })
    }

    /// Awaits a statement for at most [`STATEMENT_TIMEOUT`] (the server stops it then
    /// too; this also covers a connection that went silent).
    async fn timed<T>(
        &self,
        operation: &'static str,
        statement: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, RegistryError> {
        match tokio::time::timeout(STATEMENT_TIMEOUT, statement).await {
            Ok(result) => result.map_err(|e| classify(&self.location, operation, e)),
            Err(_) => Err(RegistryError::Unavailable {
                location: self.location.clone(),
                operation,
                reason: format!("no answer within {STATEMENT_TIMEOUT:?}"),
            }),
        }
    }
}

#[async_trait]
impl EntryStore for PostgresStore {
    fn info(&self) -> StoreInfo {
        StoreInfo {
            backend: "postgres",
            location: self.location.clone(),
        }
    }

    async fn create(&self, name: Option<&str>) -> Result<Entry, RegistryError> {
        if let Some(name) = name {
            validate_name(name)?;
        }
        let token = new_token()?;
        let created_at = crate::entry::unix_now();
        for _ in 0..ENTRY_ID_ATTEMPTS {
            let id = new_entry_id()?;
            let name = name.map_or_else(|| id.clone(), str::to_owned);
            const OP: &str = "creating an entry";
            let client = self.client(OP).await?;
            let insert = format!(
                "INSERT INTO longhaul_entries (id, name, token, created_at, token_generation)
                 VALUES ($1, $2, $3, $4, 1)
                 ON CONFLICT (id) DO NOTHING
                 RETURNING {ENTRY_COLUMNS}"
            );
            let row = self
                .timed(
                    OP,
                    client.query_opt(&insert, &[&id, &name, &token, &created_at]),
                )
                .await?;
            if let Some(row) = row {
                return entry_from_row(&row, &self.location);
            }
        }
        Err(RegistryError::IdsExhausted {
            location: self.location.clone(),
            attempts: ENTRY_ID_ATTEMPTS,
        })
    }

    async fn get(&self, id: &str) -> Result<Option<Entry>, RegistryError> {
        const OP: &str = "reading an entry";
        let client = self.client(OP).await?;
        let select = format!("SELECT {ENTRY_COLUMNS} FROM longhaul_entries WHERE id = $1");
        let row = self.timed(OP, client.query_opt(&select, &[&id])).await?;
        row.map(|r| entry_from_row(&r, &self.location)).transpose()
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<Entry>, RegistryError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        const OP: &str = "reading entries";
        let client = self.client(OP).await?;
        let select = format!("SELECT {ENTRY_COLUMNS} FROM longhaul_entries WHERE id = ANY($1)");
        let rows = self.timed(OP, client.query(&select, &[&ids])).await?;
        rows.iter()
            .map(|r| entry_from_row(r, &self.location))
            .collect()
    }

    async fn list(&self) -> Result<Vec<Entry>, RegistryError> {
        const OP: &str = "listing entries";
        let client = self.client(OP).await?;
        let select =
            format!("SELECT {ENTRY_COLUMNS} FROM longhaul_entries ORDER BY created_at, id");
        let rows = self.timed(OP, client.query(&select, &[])).await?;
        rows.iter()
            .map(|r| entry_from_row(r, &self.location))
            .collect()
    }

    async fn rename(&self, id: &str, name: &str) -> Result<Entry, RegistryError> {
        validate_name(name)?;
        const OP: &str = "renaming an entry";
        let client = self.client(OP).await?;
        let update = format!(
            "UPDATE longhaul_entries SET name = $2 WHERE id = $1 RETURNING {ENTRY_COLUMNS}"
        );
        let row = self
            .timed(OP, client.query_opt(&update, &[&id, &name]))
            .await?;
        match row {
            Some(row) => entry_from_row(&row, &self.location),
            None => Err(RegistryError::NotFound(id.to_owned())),
        }
    }

    async fn delete(&self, id: &str) -> Result<bool, RegistryError> {
        const OP: &str = "deleting an entry";
        let client = self.client(OP).await?;
        let deleted = self
            .timed(
                OP,
                client.execute("DELETE FROM longhaul_entries WHERE id = $1", &[&id]),
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn regenerate_token(
        &self,
        id: &str,
        expected: Option<u32>,
    ) -> Result<Entry, RegistryError> {
        let token = new_token()?;
        let expected_db: Option<i32> = expected.map(|g| i32::try_from(g).unwrap_or(i32::MAX));
        const OP: &str = "regenerating a token";
        let client = self.client(OP).await?;
        let update = format!(
            "UPDATE longhaul_entries
             SET token = $2, token_generation = token_generation + 1
             WHERE id = $1 AND ($3::integer IS NULL OR token_generation = $3)
             RETURNING {ENTRY_COLUMNS}"
        );
        let row = self
            .timed(OP, client.query_opt(&update, &[&id, &token, &expected_db]))
            .await?;
        drop(client);
        if let Some(row) = row {
            return entry_from_row(&row, &self.location);
        }
        match (expected, self.get(id).await?) {
            (Some(expected), Some(now)) => Err(RegistryError::Conflict {
                id: id.to_owned(),
                expected,
                found: now.token_generation,
            }),
            _ => Err(RegistryError::NotFound(id.to_owned())),
        }
    }

    fn watch(&self) -> mpsc::Receiver<StoreEvent> {
        let (tx, rx) = mpsc::channel(FEED_CAPACITY);
        tokio::spawn(
            feed::run(
                self.config.clone(),
                self.transport.clone(),
                self.location.clone(),
                tx,
            )
            .in_current_span(),
        );
        rx
    }

    async fn set_presence(
        &self,
        origin: &PresenceOrigin,
        streams: &[LiveStream],
        ttl: Duration,
    ) -> Result<(), RegistryError> {
        const OP: &str = "writing where streams are live";
        let rows = distinct(streams);
        let names: Vec<&str> = rows.iter().map(|s| s.stream.as_str()).collect();
        let entries: Vec<&str> = rows.iter().map(|s| s.entry_id.as_str()).collect();
        let rtmp: Vec<Option<&str>> = rows.iter().map(|s| s.rtmp.as_deref()).collect();
        let http_flv: Vec<Option<&str>> = rows.iter().map(|s| s.http_flv.as_deref()).collect();
        let ttl_secs = ttl.min(MAX_TTL).as_secs_f64();
        let forget_secs = FORGET_AFTER.as_secs_f64();
        let mut client = self.client(OP).await?;
        let write = async {
            let tx = client.transaction().await?;
            tx.execute(
                "DELETE FROM longhaul_presence WHERE origin = $1 AND NOT (stream = ANY($2))",
                &[&origin.id, &names],
            )
            .await?;
            tx.execute(
                "INSERT INTO longhaul_presence
                     (stream, origin, entry_id, region, rtmp_url, http_flv_url, updated_at, expires_at)
                 SELECT s, $1, e, $2, r, h, now(), now() + make_interval(secs => $7)
                 FROM unnest($3::text[], $4::text[], $5::text[], $6::text[]) AS t(s, e, r, h)
                 ON CONFLICT (stream, origin) DO UPDATE SET
                     entry_id = EXCLUDED.entry_id, region = EXCLUDED.region,
                     rtmp_url = EXCLUDED.rtmp_url, http_flv_url = EXCLUDED.http_flv_url,
                     updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at",
                &[
                    &origin.id,
                    &origin.region,
                    &names,
                    &entries,
                    &rtmp,
                    &http_flv,
                    &ttl_secs,
                ],
            )
            .await?;
            tx.commit().await?;
            // Outside the transaction: other origins' rows, long dead; a clash with a
            // writer of the same rows cannot hold up this origin's own write.
            client
                .execute(
                    "DELETE FROM longhaul_presence
                     WHERE expires_at < now() - make_interval(secs => $1)",
                    &[&forget_secs],
                )
                .await?;
            Ok::<(), tokio_postgres::Error>(())
        };
        self.timed(OP, write).await
    }

    async fn presence_of(&self, stream: &str) -> Result<Vec<LiveAt>, RegistryError> {
        const OP: &str = "reading where a stream is live";
        let client = self.client(OP).await?;
        let rows = self
            .timed(
                OP,
                client.query(
                    "SELECT stream, entry_id, origin, region, rtmp_url, http_flv_url,
                            (extract(epoch FROM updated_at) * 1000)::bigint,
                            (extract(epoch FROM expires_at) * 1000)::bigint
                     FROM longhaul_presence
                     WHERE stream = $1 AND expires_at > now()
                     ORDER BY origin",
                    &[&stream],
                ),
            )
            .await?;
        rows.iter()
            .map(|row| {
                let read = || -> Result<LiveAt, tokio_postgres::Error> {
                    Ok(LiveAt {
                        stream: row.try_get(0)?,
                        entry_id: row.try_get(1)?,
                        origin: row.try_get(2)?,
                        region: row.try_get(3)?,
                        rtmp: row.try_get(4)?,
                        http_flv: row.try_get(5)?,
                        updated_at: row.try_get(6)?,
                        expires_at: row.try_get(7)?,
                    })
                };
                read().map_err(|e| classify(&self.location, "reading a row", e))
            })
            .collect()
    }
}

fn entry_from_row(row: &Row, location: &str) -> Result<Entry, RegistryError> {
    let read = || -> Result<Entry, tokio_postgres::Error> {
        let generation: i32 = row.try_get(4)?;
        Ok(Entry {
            id: row.try_get(0)?,
            name: row.try_get(1)?,
            token: row.try_get(2)?,
            created_at: row.try_get(3)?,
            // The column's CHECK keeps it at 1 or more.
            token_generation: u32::try_from(generation).unwrap_or(1),
        })
    };
    read().map_err(|e| classify(location, "reading a row", e))
}

/// A driver error as a registry error: the server's own refusals stay
/// [`RegistryError::Postgres`]; everything that means "not reachable now" (no
/// connection, connection lost, the server shutting down or out of slots) is
/// [`RegistryError::Unavailable`].
pub(crate) fn classify(
    location: &str,
    operation: &'static str,
    e: tokio_postgres::Error,
) -> RegistryError {
    let unreachable = match e.as_db_error() {
        None => true,
        Some(db) => {
            let code = db.code().code();
            // Class 08: connection exceptions; 57P01-03: shutting down or starting up;
            // 53300: too many connections.
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }
    };
    let reason = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => with_causes(&e),
    };
    if unreachable {
        RegistryError::Unavailable {
            location: location.to_owned(),
            operation,
            reason,
        }
    } else {
        RegistryError::Postgres {
            location: location.to_owned(),
            operation,
            reason,
        }
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => with_causes(&e),
        },
        deadpool_postgres::PoolError::Timeout(_) => {
            format!("no connection within {CONNECT_TIMEOUT:?}")
        }
        other => other.to_string(),
    }
}

/// An error with the errors that caused it: the driver's "error connecting to server"
/// says nothing until its cause ("invalid peer certificate: UnknownIssuer", "Connection
/// refused") is added.
pub(crate) fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
