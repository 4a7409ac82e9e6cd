//! Changes other parts of the node must react to, such as cutting live publishers
//! when an entry's token is regenerated or the entry is deleted.
//!
//! Listeners registered with [`crate::Registry::on_change`] run synchronously on the
//! thread that made the change, after it is committed, with no registry lock held (so a
//! listener may call back into the registry). They see changes made through the same
//! `Registry` handle only: another process sharing the file is not observed here.

use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// A committed change to the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RegistryChange {
    /// The entry has a new token of this generation; older tokens are now refused.
    TokenRegenerated { entry_id: String, generation: u32 },
    /// The entry is gone.
    Deleted { entry_id: String },
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
