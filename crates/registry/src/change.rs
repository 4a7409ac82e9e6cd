//! Changes other parts of the node must react to, such as cutting live publishers when
//! an entry's token is regenerated or the entry is deleted.
//!
//! A change is what the node's in-memory copy of the entries learned, whoever made it:
//! this node's API, another origin sharing the database, or an operator's SQL. Listeners
//! registered with [`crate::Registry::on_change`] run synchronously on the registry's
//! sync task, right after the copy was updated and with no lock held, so a listener may
//! read the registry (and sees the change) but must not block.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// A committed change to an entry, as the in-memory copy saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RegistryChange {
    /// A new entry.
    Created { entry_id: String },
    /// The entry's name changed.
    Renamed { entry_id: String },
    /// The entry has a new token of this generation; older tokens are now refused.
    TokenRegenerated { entry_id: String, generation: u32 },
    /// The entry's token changed while its generation did not go up (a database
    /// restored from a backup, a trigger dropped by hand): no generation tells the old
    /// token's publishes from the new one's, so every live publish must be cut.
    TokenReset { entry_id: String },
    /// The entry is gone.
    Deleted { entry_id: String },
}

impl RegistryChange {
    /// The entry the change is about.
    pub fn entry_id(&self) -> &str {
        match self {
            RegistryChange::Created { entry_id }
            | RegistryChange::Renamed { entry_id }
            | RegistryChange::TokenRegenerated { entry_id, .. }
            | RegistryChange::TokenReset { entry_id }
            | RegistryChange::Deleted { entry_id } => entry_id,
        }
    }

    /// Every [`RegistryChange::kind`], in a fixed order (the metrics' label values).
    pub const KINDS: [&'static str; 5] = [
        "created",
        "renamed",
        "token_regenerated",
        "token_reset",
        "deleted",
    ];

    /// The `kind` label of `registry_changes_total`; one of [`RegistryChange::KINDS`].
    pub fn kind(&self) -> &'static str {
        let i = match self {
            RegistryChange::Created { .. } => 0,
            RegistryChange::Renamed { .. } => 1,
            RegistryChange::TokenRegenerated { .. } => 2,
            RegistryChange::TokenReset { .. } => 3,
            RegistryChange::Deleted { .. } => 4,
        };
        Self::KINDS[i]
    }

    /// Whether publishes authorised before this change must be cut.
    pub fn revokes(&self) -> bool {
        matches!(
            self,
            RegistryChange::TokenRegenerated { .. }
                | RegistryChange::TokenReset { .. }
                | RegistryChange::Deleted { .. }
        )
    }
}

type Listener = Arc<dyn Fn(&RegistryChange) + Send + Sync>;

/// The registered listeners.
#[derive(Default)]
pub(crate) struct Listeners {
    listeners: Mutex<Vec<Listener>>,
}

impl Listeners {
    pub(crate) fn add(&self, listener: Listener) {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(listener);
    }

    /// Calls every listener with `change`, in registration order. The list is copied
    /// first so a listener can register another without deadlocking. A listener that
    /// panics is logged and the others still run: one bug must not leave the rest of
    /// the node (and every later change) unheard.
    pub(crate) fn notify(&self, change: &RegistryChange) {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for listener in listeners {
            let heard = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| listener(change)));
            if heard.is_err() {
                tracing::error!(entry = %change.entry_id(), change = change.kind(),
                    "a registry change listener panicked (a bug); the other listeners still ran");
            }
        }
    }
}
