//! Cutting live publishes of an entry, everywhere: at this origin and at every edge
//! tunnelled to it.
//!
//! Three things revoke: a regenerated token and a deleted entry (the registry tells us,
//! whichever origin's API made the change, see [`watch_registry`]), and an operator's
//! `POST /api/v1/entries/{id}/revoke` (the kick, and the callback mode's way to say a
//! token is no longer good). Each one:
//!
//! 1. cuts this origin's live publishes of the entry that it covers, direct or
//!    tunnelled: the encoder hears `NetStream.Publish.Rejected` with the reason, then
//!    its socket (or tunnel stream) closes, and players see the stream end; a publish
//!    authorised a moment before and registered a moment after is caught too (see
//!    `longhaul_node::revocation`);
//! 2. sends a `revoke` message to every connected edge, which cuts the streams it relays
//!    for the entry, to whichever origin;
//! 3. is counted (`longhaul_revocations_total{reason}`, `longhaul_publishes_cut_total`)
//!    and logged with the entry.

use crate::state::OriginState;
use longhaul_node::{Cut, Revoked};
use longhaul_registry::RegistryChange;
use longhaul_rtmp::status;
use std::sync::{Arc, Weak};

/// Why publishes were cut: the `reason` label and the word in the logs.
pub mod reason {
    pub const TOKEN_REVOKED: &str = "token_revoked";
    pub const ENTRY_DELETED: &str = "entry_deleted";
    pub const KICKED: &str = "kicked";
}

/// Cuts the live publishes of `entry_id` that `cut` covers, here and at every edge.
/// Returns how many were cut here and how many edges were told.
pub fn revoke(
    state: &OriginState,
    entry_id: &str,
    cut: Cut,
    why: &'static str,
    description: String,
) -> (usize, usize) {
    let revoked = Revoked {
        code: status::PUBLISH_REJECTED.to_string(),
        reason: why.to_string(),
        description,
    };
    if let Some(callback) = &state.callback {
        callback.forget(entry_id);
    }
    let here = state
        .live
        .revoke(entry_id, cut, &revoked, std::time::Instant::now());
    let edges = state.tunnels.revoke(&longhaul_tunnel::Revocation {
        entry_id: entry_id.to_owned(),
        before_generation: cut.floor(),
        code: revoked.code.clone(),
        reason: revoked.reason.clone(),
        description: revoked.description.clone(),
    });
    let m = &state.metrics;
    m.revocations.with_label_values(&[why]).inc();
    m.publishes_cut
        .with_label_values(&[why])
        .inc_by(here as u64);
    tracing::info!(entry = %entry_id, reason = why, ?cut, cut_here = here, edges_told = edges,
        "publishes revoked: {}", revoked.description);
    (here, edges)
}

/// Cuts live publishes whenever the registry's copy learns that a token was
/// regenerated or an entry deleted, wherever the change was made.
pub fn watch_registry(state: &Arc<OriginState>) {
    let Some(registry) = &state.registry else {
        return;
    };
    // Weak: the registry's listener must not keep the node's state alive.
    let weak: Weak<OriginState> = Arc::downgrade(state);
    registry.on_change(move |change| {
        let Some(state) = weak.upgrade() else {
            return;
        };
        match change {
            RegistryChange::TokenRegenerated {
                entry_id,
                generation,
            } => {
                revoke(
                    &state,
                    entry_id,
                    Cut::Before(*generation),
                    reason::TOKEN_REVOKED,
                    format!(
                        "publish stopped: the token of entry {entry_id} was regenerated; \
                         update the encoder with the new token"
                    ),
                );
            }
            RegistryChange::TokenReset { entry_id } => {
                revoke(
                    &state,
                    entry_id,
                    Cut::All,
                    reason::TOKEN_REVOKED,
                    format!(
                        "publish stopped: the token of entry {entry_id} was replaced; \
                         update the encoder with the current token"
                    ),
                );
            }
            RegistryChange::Deleted { entry_id } => {
                revoke(
                    &state,
                    entry_id,
                    Cut::All,
                    reason::ENTRY_DELETED,
                    format!("publish stopped: entry {entry_id} was deleted"),
                );
            }
            _ => {}
        }
    });
}
