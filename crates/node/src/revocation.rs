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
//! order, not by a lock over both. A publish notes the revocation epoch
//! ([`LivePublishes::epoch`], one counter for the node that only goes up) before it is
//! authorised (an origin's check, an edge's round trip to its origin), registers after,
//! and then asks [`LivePublishes::revoked_since`] whether a revocation of its entry that
//! covers it came in between; [`LivePublishes::revoke`] takes the next epoch and
//! remembers every revocation of the last [`RECENT_FOR`]. Whichever of the two comes
//! second sees the other. Time is passed in, as everywhere in longhaul's state.

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
    /// The cut a wire message's `before_generation` says: cut publishes older than it,
    /// or (absent) all of them.
    pub fn from_floor(before_generation: Option<u32>) -> Cut {
        before_generation.map_or(Cut::All, Cut::Before)
    }

    /// The `before_generation` of a wire message saying this cut.
    pub fn floor(self) -> Option<u32> {
        match self {
            Cut::Before(g) => Some(g),
            Cut::All => None,
        }
    }

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

/// A revocation of the last [`RECENT_FOR`].
struct Recent {
    /// Its place in the node's order of revocations.
    epoch: u64,
    cut: Cut,
    why: Revoked,
    at: Instant,
}

#[derive(Default)]
struct Inner {
    by_entry: Mutex<HashMap<String, Vec<Slot>>>,
    /// Recent revocations by entry, oldest first.
    recent: Mutex<HashMap<String, Vec<Recent>>>,
    next_id: AtomicU64,
    /// The last epoch given out; only goes up.
    epoch: AtomicU64,
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
        let mut waiting = rx.clone();
        let revocation = Box::pin(async move {
            let revoked = waiting.wait_for(Option::is_some).await.map(|r| r.clone());
            match revoked {
                Ok(Some(r)) => r,
                // The sender lives as long as the registration: unreachable, but never
                // resolve on a made-up reason.
                _ => std::future::pending().await,
            }
        });
        LivePublish {
            publishes: self.clone(),
            entry_id: entry_id.to_owned(),
            id,
            rx,
            revocation,
            revoked: None,
        }
    }

    /// The revocation epoch now: note it before authorising a publish, and give it to
    /// [`LivePublishes::revoked_since`] after registering it.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    /// A revocation of `entry_id` after `epoch` that covers `generation`: the publish
    /// must not go on. Call it after [`LivePublishes::register`].
    pub fn revoked_since(
        &self,
        entry_id: &str,
        epoch: u64,
        generation: Option<u32>,
    ) -> Option<Revoked> {
        self.recent()
            .get(entry_id)?
            .iter()
            .rev()
            .find(|r| r.epoch > epoch && r.cut.cuts(generation))
            .map(|r| r.why.clone())
    }

    /// Cuts the publishes of `entry_id` that `cut` covers, at `now`; returns how many.
    pub fn revoke(&self, entry_id: &str, cut: Cut, why: &Revoked, now: Instant) -> usize {
        {
            let mut recent = self.recent();
            // Taken under the lock, so epochs are in the lists in order.
            let epoch = self.inner.epoch.fetch_add(1, Ordering::AcqRel) + 1;
            recent.retain(|_, list| {
                list.retain(|r| now.saturating_duration_since(r.at) < RECENT_FOR);
                !list.is_empty()
            });
            recent.entry(entry_id.to_owned()).or_default().push(Recent {
                epoch,
                cut,
                why: why.clone(),
                at: now,
            });
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

    fn recent(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Recent>>> {
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
    publishes: LivePublishes,
    entry_id: String,
    id: u64,
    rx: watch::Receiver<Option<Revoked>>,
    /// Waits for the revocation; made once, so a driver that selects on it on every
    /// turn of its loop (every socket read) registers no new waiter each time.
    revocation: std::pin::Pin<Box<dyn std::future::Future<Output = Revoked> + Send>>,
    /// The revocation, once `revocation` has resolved (it may not be polled again).
    revoked: Option<Revoked>,
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
        if let Some(r) = &self.revoked {
            return r.clone();
        }
        let r = (&mut self.revocation).await;
        self.revoked = Some(r.clone());
        r
    }

    /// The revocation, if it has come.
    pub fn is_revoked(&self) -> Option<Revoked> {
        self.rx.borrow().clone()
    }
}

impl Drop for LivePublish {
    fn drop(&mut self) {
        self.publishes.unregister(&self.entry_id, self.id);
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
        assert_eq!(
            live.revoke("1_a", Cut::Before(2), &why("token_revoked"), Instant::now()),
            1
        );
        assert_eq!(old.revoked().await.reason, "token_revoked");
        assert!(new.is_revoked().is_none());
        assert!(other.is_revoked().is_none());
        // Cut again (the edge hears it from both origins): counted once, first words kept.
        assert_eq!(
            live.revoke("1_a", Cut::All, &why("entry_deleted"), Instant::now()),
            1
        );
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
        assert_eq!(
            live.revoke("1_a", Cut::All, &why("kicked"), Instant::now()),
            0
        );
    }

    #[test]
    fn a_revocation_between_check_and_registration_is_caught() {
        let live = LivePublishes::new();
        // Authorised with generation 1, epoch noted...
        let epoch = live.epoch();
        // ...the token is regenerated meanwhile (nothing registered yet to cut)...
        assert_eq!(
            live.revoke("1_a", Cut::Before(2), &why("token_revoked"), Instant::now()),
            0
        );
        // ...then the publish registers: it finds the revocation.
        let _a = live.register("1_a", Some(1));
        let found = live.revoked_since("1_a", epoch, Some(1)).expect("caught");
        assert_eq!(found.reason, "token_revoked");
        // The new token's publish is not covered, nor one checked after the revocation.
        assert!(live.revoked_since("1_a", epoch, Some(2)).is_none());
        assert!(live.revoked_since("1_a", live.epoch(), Some(1)).is_none());
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
        live.revoke("1_a", Cut::All, &why("kicked"), Instant::now());
        assert_eq!(a.revoked().await.reason, "kicked");
    }

    /// Revocations are remembered for RECENT_FOR, then forgotten; epochs never repeat,
    /// so one noted before an expiry cannot pass for one taken after.
    #[test]
    fn recent_revocations_expire_and_epochs_never_repeat() {
        let live = LivePublishes::new();
        let t0 = Instant::now();
        let noted = live.epoch();
        live.revoke("1_a", Cut::All, &why("kicked"), t0);
        assert!(live.revoked_since("1_a", noted, Some(1)).is_some());
        // Long after, another entry's revocation prunes the old record...
        live.revoke("1_b", Cut::All, &why("kicked"), t0 + RECENT_FOR * 2);
        assert!(live.revoked_since("1_a", noted, Some(1)).is_none());
        // ...and a new revocation of 1_a takes a fresh epoch: one noted just before it
        // is caught, whatever was pruned.
        let before = live.epoch();
        live.revoke("1_a", Cut::All, &why("kicked"), t0 + RECENT_FOR * 2);
        assert!(live.revoked_since("1_a", before, Some(1)).is_some());
        assert!(live.epoch() > before);
    }

    /// An edge hears from two origins: a deletion (all) then, late, a regeneration
    /// (older than 2). A publish authorised before both is caught by the deletion.
    #[test]
    fn a_narrow_revocation_does_not_hide_a_wide_one() {
        let live = LivePublishes::new();
        let now = Instant::now();
        let noted = live.epoch();
        live.revoke("1_a", Cut::All, &why("entry_deleted"), now);
        live.revoke("1_a", Cut::Before(2), &why("token_revoked"), now);
        let found = live.revoked_since("1_a", noted, Some(3)).expect("caught");
        assert_eq!(found.reason, "entry_deleted");
    }

    #[test]
    fn cuts_travel_as_floors() {
        for cut in [Cut::All, Cut::Before(7)] {
            assert_eq!(Cut::from_floor(cut.floor()), cut);
        }
    }
}
