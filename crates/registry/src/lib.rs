//! # longhaul-registry: live entries and their publish tokens
//!
//! Every stream published to longhaul belongs to a live *entry*: an id like `1_gdrt137u`
//! that appears in its endpoint URLs and stream names, a human name, and a secret publish
//! *token* (`?t=...` in the URL) without which a publish is refused. The token can be
//! regenerated at any time; from then on the old one is refused, so a leaked URL can be
//! revoked.
//!
//! This crate keeps entries in an embedded SQLite file (WAL mode, with a busy timeout so
//! two processes, such as both origins of a region, can share one file), versioned with
//! `PRAGMA user_version` for future migrations.
//!
//! - [`Registry`]: open a file ([`Registry::open`]) or memory ([`Registry::open_in_memory`]);
//!   create, get, list, rename and delete [`Entry`]s; [`Registry::regenerate_token`].
//! - [`Registry::check_token`] answers a publish attempt with a [`TokenCheck`], comparing
//!   tokens in constant time (see [`token_check`]).
//! - [`Registry::on_change`] registers a listener for [`RegistryChange`]s (token
//!   regenerated, entry deleted), so live sessions can be cut.
//! - Ids and tokens come from the OS CSPRNG without bias ([`generate`]): ids are `1_` and 8
//!   of `[a-z0-9]`; tokens are 16 of `[a-z2-7]` (80 bits), URL-safe as they are.
//! - `testing` (cargo feature `testing`): real PostgreSQL servers for tests.
//!
//! `Registry` is `Send + Sync` and every call is a short blocking SQLite statement: from
//! async code, call it inside `spawn_blocking`.
//!
//! ```
//! use longhaul_registry::{Registry, TokenCheck};
//!
//! let registry = Registry::open_in_memory()?;
//! let entry = registry.create_entry(Some("Morning show"))?;
//! assert_eq!(
//!     registry.check_token(&entry.id, Some(&entry.token))?,
//!     TokenCheck::Valid { generation: 1 }
//! );
//!
//! let renewed = registry.regenerate_token(&entry.id)?;
//! assert_eq!(registry.check_token(&entry.id, Some(&entry.token))?, TokenCheck::Wrong);
//! assert!(registry.check_token(&entry.id, Some(&renewed.token))?.is_valid());
//! assert_eq!(registry.check_token(&entry.id, None)?, TokenCheck::Missing);
//! assert_eq!(registry.check_token("1_nosuchid", None)?, TokenCheck::UnknownEntry);
//! # Ok::<(), longhaul_registry::RegistryError>(())
//! ```

pub mod change;
pub mod entry;
pub mod error;
pub mod generate;
pub mod registry;
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;
pub mod token_check;

pub use change::RegistryChange;
pub use entry::{Entry, MAX_NAME_CHARS};
pub use error::RegistryError;
pub use registry::Registry;
pub use token_check::TokenCheck;
