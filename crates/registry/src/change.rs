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
            | RegistryChange::Deleted { entry_id } => entry_id,
        }
    }

    /// The `kind` label of `registry_changes_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryChange::Created { .. } => "created",
            RegistryChange::Renamed { .. } => "renamed",
            RegistryChange::TokenRegenerated { .. } => "token_regenerated",
            RegistryChange::Deleted { .. } => "deleted",
        }
    }

    /// Whether publishes authorised before this change must be cut.
    pub fn revokes(&self) -> bool {
        matches!(
            self,
            RegistryChange::TokenRegenerated { .. } | RegistryChange::Deleted { .. }
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
    /// first so a listener can register another without deadlocking.
    pub(crate) fn notify(&self, change: &RegistryChange) {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for listener in listeners {
            listener(change);
        }
    }
}
