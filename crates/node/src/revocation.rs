//! Live publishes by entry, so that a revocation (a regenerated token, a deleted entry,
//! an operator's kick) can cut every one of them at once.
//!
//! Both nodes keep one [`LivePublishes`]: an origin for the encoders publishing to it
//! directly and the streams arriving through tunnels, an edge for the streams it relays.
//! A publish registers with the token generation it was authorised with and gets a
//! [`LivePublish`] whose [`LivePublish::revoked`] resolves when it must stop, with the
//! words to tell its encoder. Dropping the handle unregisters it.
//!
//! The race between a publish being authorised and its token being revoked is closed by
//! order, not by a lock over both. A publish notes the entry's revocation epoch
//! ([`LivePublishes::epoch`]) before it is authorised (an origin's check, an edge's round
//! trip to its origin), registers after, and then asks
//! [`LivePublishes::revoked_since`] whether a revocation covering it came in between;
//! [`LivePublishes::revoke`] moves the epoch on and remembers what it cut for
//! [`RECENT_FOR`]. Whichever of the two comes second sees the other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Why a publish was cut, for its encoder and the logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// RTMP status code sent with the description (`NetStream.Publish.Rejected`).
    pub code: String,
    /// The `reason` label: `token_revoked`, `entry_deleted`, `kicked`.
    pub reason: String,
    /// What the encoder is told (ffmpeg prints it, OBS logs it).
    pub description: String,
}

/// Which publishes of an entry a revocation cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Those authorised with a token generation older than this one (a regeneration).
    Before(u32),
    /// All of them (a deletion, a kick).
    All,
}

impl Cut {
    /// Whether a publish authorised with `generation` (unknown: `None`) is cut.
    pub fn cuts(self, generation: Option<u32>) -> bool {
        match (self, generation) {
            (Cut::All, _) | (Cut::Before(_), None) => true,
            (Cut::Before(current), Some(g)) => g < current,
        }
    }
}

struct Slot {
    id: u64,
    generation: Option<u32>,
    tx: watch::Sender<Option<Revoked>>,
}

/// How long a revocation is remembered for publishes authorised before it and
/// registered after. That gap is one authorisation: a token check at an origin, or an
/// edge's round trip to its origin and the stream's opening, bounded by the tunnel's
/// authorise timeout (5 s); a minute leaves a wide margin and keeps the memory small.
pub const RECENT_FOR: Duration = Duration::from_secs(60);

/// The latest revocation of an entry.
struct Recent {
    /// Revocations of the entry so far (kept while it is recent).
    epoch: u64,
    cut: Cut,
    why: Revoked,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    by_entry: Mutex<HashMap<String, Vec<Slot>>>,
    recent: Mutex<HashMap<String, Recent>>,
    next_id: AtomicU64,
}

/// The node's live publishes, by entry. Cheap to clone.
#[derive(Clone, Default)]
pub struct LivePublishes {
    inner: Arc<Inner>,
}

impl LivePublishes {
    pub fn new() -> LivePublishes {
        LivePublishes::default()
    }

    /// Registers a publish of `entry_id` authorised with token `generation` (`None`
    /// where the authority has no generations, as with an HTTP callback).
    pub fn register(&self, entry_id: &str, generation: Option<u32>) -> LivePublish {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        self.lock()
            .entry(entry_id.to_owned())
            .or_default()
            .push(Slot { id, generation, tx });
        LivePublish {
            registry: self.clone(),
            entry_id: entry_id.to_owned(),
            id,
            rx,
        }
    }

    /// The entry's revocation epoch: note it before authorising a publish, and give it to
    /// [`LivePublishes::revoked_since`] after registering it.
    pub fn epoch(&self, entry_id: &str) -> u64 {
        self.recent().get(entry_id).map_or(0, |r| r.epoch)
    }

    /// A revocation of `entry_id` that came after `epoch` and covers `generation`: the
    /// publish must not go on. Call it after [`LivePublishes::register`].
    pub fn revoked_since(
        &self,
        entry_id: &str,
        epoch: u64,
        generation: Option<u32>,
    ) -> Option<Revoked> {
        self.recent()
            .get(entry_id)
            .filter(|r| r.epoch != epoch && r.cut.cuts(generation))
            .map(|r| r.why.clone())
    }

    /// Cuts the publishes of `entry_id` that `cut` covers; returns how many.
    pub fn revoke(&self, entry_id: &str, cut: Cut, why: &Revoked) -> usize {
        {
            let now = Instant::now();
            let mut recent = self.recent();
            recent.retain(|_, r| now.saturating_duration_since(r.at) < RECENT_FOR);
            let epoch = recent.get(entry_id).map_or(0, |r| r.epoch) + 1;
            recent.insert(
                entry_id.to_owned(),
                Recent {
                    epoch,
                    cut,
                    why: why.clone(),
                    at: now,
                },
            );
        }
        let by_entry = self.lock();
        let Some(slots) = by_entry.get(entry_id) else {
            return 0;
        };
        let mut cut_now = 0;
        for slot in slots.iter().filter(|s| cut.cuts(s.generation)) {
            // A publish already cut keeps its first reason.
            let fresh = slot.tx.send_if_modified(|state| {
                if state.is_none() {
                    *state = Some(why.clone());
                    true
                } else {
                    false
                }
            });
            cut_now += usize::from(fresh);
        }
        cut_now
    }

    /// Live publishes of `entry_id`, cut or not yet gone.
    pub fn count(&self, entry_id: &str) -> usize {
        self.lock().get(entry_id).map_or(0, Vec::len)
    }

    /// Every live publish.
    pub fn total(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, HashMap<String, Recent>> {
        self.inner
            .recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Slot>>> {
        self.inner
            .by_entry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn unregister(&self, entry_id: &str, id: u64) {
        let mut by_entry = self.lock();
        if let Some(slots) = by_entry.get_mut(entry_id) {
            slots.retain(|s| s.id != id);
            if slots.is_empty() {
                by_entry.remove(entry_id);
            }
        }
    }
}

/// One registered publish. Unregisters when dropped.
pub struct LivePublish {
    registry: LivePublishes,
    entry_id: String,
    id: u64,
    rx: watch::Receiver<Option<Revoked>>,
}

impl std::fmt::Debug for LivePublish {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LivePublish")
            .field("entry_id", &self.entry_id)
            .field("revoked", &*self.rx.borrow())
            .finish()
    }
}

impl LivePublish {
    pub fn entry_id(&self) -> &str {
        &self.entry_id
    }

    /// Resolves when the publish is cut; pending until then. Cancel-safe.
    pub async fn revoked(&mut self) -> Revoked {
        let revoked = self.rx.wait_for(Option::is_some).await.map(|r| r.clone());
        match revoked {
            Ok(Some(r)) => r,
            // The sender lives as long as the registration: unreachable, but never
            // resolve on a made-up reason.
            _ => std::future::pending().await,
        }
    }

    /// The revocation, if it has come.
    pub fn is_revoked(&self) -> Option<Revoked> {
        self.rx.borrow().clone()
    }
}

impl Drop for LivePublish {
    fn drop(&mut self) {
        self.registry.unregister(&self.entry_id, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(reason: &str) -> Revoked {
        Revoked {
            code: "NetStream.Publish.Rejected".into(),
            reason: reason.into(),
            description: format!("cut: {reason}"),
        }
    }

    #[test]
    fn cuts_choose_by_generation() {
        for (cut, generation, cuts) in [
            (Cut::All, Some(7), true),
            (Cut::All, None, true),
            (Cut::Before(2), Some(1), true),
            (Cut::Before(2), Some(2), false),
            (Cut::Before(2), Some(3), false),
            (Cut::Before(2), None, true),
        ] {
            assert_eq!(cut.cuts(generation), cuts, "{cut:?} {generation:?}");
        }
    }

    #[tokio::test]
    async fn a_regeneration_cuts_the_old_token_only() {
        let live = LivePublishes::new();
        let mut old = live.register("1_a", Some(1));
        let mut new = live.register("1_a", Some(2));
        let other = live.register("1_b", Some(1));
        assert_eq!(live.revoke("1_a", Cut::Before(2), &why("token_revoked")), 1);
        assert_eq!(old.revoked().await.reason, "token_revoked");
        assert!(new.is_revoked().is_none());
        assert!(other.is_revoked().is_none());
        // Cut again (the edge hears it from both origins): counted once, first words kept.
        assert_eq!(live.revoke("1_a", Cut::All, &why("entry_deleted")), 1);
        assert_eq!(old.revoked().await.reason, "token_revoked");
        assert_eq!(new.revoked().await.reason, "entry_deleted");
        assert_eq!(live.total(), 3);
    }

    #[test]
    fn dropping_unregisters() {
        let live = LivePublishes::new();
        let a = live.register("1_a", Some(1));
        let b = live.register("1_a", Some(1));
        assert_eq!(live.count("1_a"), 2);
        drop(a);
        assert_eq!(live.count("1_a"), 1);
        drop(b);
        assert_eq!(live.count("1_a"), 0);
        assert_eq!(live.total(), 0);
        assert_eq!(live.revoke("1_a", Cut::All, &why("kicked")), 0);
    }

    #[test]
    fn a_revocation_between_check_and_registration_is_caught() {
        let live = LivePublishes::new();
        // Authorised with generation 1, epoch noted...
        let epoch = live.epoch("1_a");
        // ...the token is regenerated meanwhile (nothing registered yet to cut)...
        assert_eq!(live.revoke("1_a", Cut::Before(2), &why("token_revoked")), 0);
        // ...then the publish registers: it finds the revocation.
        let _a = live.register("1_a", Some(1));
        let found = live.revoked_since("1_a", epoch, Some(1)).expect("caught");
        assert_eq!(found.reason, "token_revoked");
        // The new token's publish is not covered, nor one checked after the revocation.
        assert!(live.revoked_since("1_a", epoch, Some(2)).is_none());
        assert!(live
            .revoked_since("1_a", live.epoch("1_a"), Some(1))
            .is_none());
        assert!(live.revoked_since("1_b", 0, Some(1)).is_none());
    }

    #[tokio::test]
    async fn revoked_is_cancel_safe_and_waits() {
        let live = LivePublishes::new();
        let mut a = live.register("1_a", Some(1));
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), a.revoked())
                .await
                .is_err()
        );
        live.revoke("1_a", Cut::All, &why("kicked"));
        assert_eq!(a.revoked().await.reason, "kicked");
    }
}
