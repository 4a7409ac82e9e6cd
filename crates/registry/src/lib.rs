//! # longhaul-registry: live entries and their publish tokens
//!
//! Every stream published to longhaul belongs to a live *entry*: an id like `1_gdrt137u`
//! that appears in its endpoint URLs and stream names, a human name, and a secret publish
//! *token* (`?t=...` in the URL) without which a publish is refused. The token can be
//! regenerated at any time; from then on the old one is refused, and live publishes that
//! used it are cut, at every origin.
//!
//! ```text
//!               ┌──────────────── Registry (one per origin) ───────────────┐
//!  API ─write─▶ │ store ─────────────────────────┐                         │
//!               │  (EntryStore: SQLite file, or  │ change feed             │
//!               │   PostgreSQL shared by every   ▼ (data_version / NOTIFY)  │
//!               │   origin)                 sync task ──▶ replica (memory) │──▶ check_token
//!               │                                 └──▶ RegistryChange ─────│──▶ listeners
//!               └──────────────────────────────────────────────────────────┘    (revocation)
//! ```
//!
//! - [`store`]: the [`EntryStore`] interface, one async API over two back ends that pass
//!   the same test suite: [`sqlite::SqliteStore`] (one host, `longhaul dev`) and
//!   [`postgres::PostgresStore`] (origins in different data centres, versioned
//!   migrations, changes pushed with `LISTEN/NOTIFY`). Each has a change feed that says
//!   when anything changed, whoever changed it.
//! - [`Registry`]: the node's view. Publishes are checked against an in-memory
//!   [`replica`], kept in step by one sync task, so they keep being decided when the
//!   database is down (fail static; [`Registry::status`] says so) and never wait on it.
//!   Writes go to the store. Every difference the copy takes is told to the listeners
//!   ([`Registry::on_change`]) as a [`RegistryChange`]: the origin cuts live publishes
//!   on a regenerated token or a deleted entry, however the change reached it.
//! - [`presence`]: where streams are live, each origin's rows in the same store, so a
//!   play at an origin where a stream is not live can name the origin where it is.
//! - [`TokenCheck`]: a publish attempt's answer; tokens are compared in constant time
//!   ([`token_check`]).
//! - Ids and tokens come from the OS CSPRNG without bias ([`generate`]): ids are `1_` and 8
//!   of `[a-z0-9]`; tokens are 16 of `[a-z2-7]` (80 bits), URL-safe as they are.
//! - `testing` (cargo feature `testing`): real PostgreSQL servers for tests.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use longhaul_registry::{sqlite::SqliteStore, Registry, TokenCheck};
//! use std::sync::Arc;
//!
//! let registry = Registry::open(Arc::new(SqliteStore::open_in_memory()?)).await?;
//! let entry = registry.create_entry(Some("Morning show")).await?;
//! assert_eq!(
//!     registry.check_token(&entry.id, Some(&entry.token)).await,
//!     TokenCheck::Valid { generation: 1 }
//! );
//!
//! let renewed = registry.regenerate_token(&entry.id, None).await?;
//! assert_eq!(registry.check_token(&entry.id, Some(&entry.token)).await, TokenCheck::Wrong);
//! assert!(registry.check_token(&entry.id, Some(&renewed.token)).await.is_valid());
//! assert_eq!(registry.check_token(&entry.id, None).await, TokenCheck::Missing);
//! assert_eq!(registry.check_token("1_nosuchid", None).await, TokenCheck::UnknownEntry);
//! # Ok::<(), longhaul_registry::RegistryError>(())
//! # }).unwrap();
//! ```

pub mod cache;
pub mod change;
pub mod entry;
pub mod error;
pub mod generate;
pub mod postgres;
pub mod presence;
pub mod registry;
pub mod replica;
pub mod sqlite;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod token_check;

pub use cache::CacheFile;
pub use change::RegistryChange;
pub use entry::{Entry, MAX_NAME_CHARS};
pub use error::RegistryError;
pub use presence::{LiveAt, LiveStream, PresenceOrigin};
pub use registry::{Registry, RegistryStatus, StoreState};
pub use store::{open_store, EntryStore, StoreConfig, StoreEvent, StoreInfo};
pub use token_check::TokenCheck;
