//! Publishes that can resume (tunnel wire version 2): what an origin keeps of an encoder
//! publish across the tunnel streams that carry it.
//!
//! An edge numbers a publish's frames and, when its stream dies (the tunnel was lost, the
//! router moved it), opens a new one with the same `publication` id and resends what
//! this origin had not acknowledged. Two things must outlive the stream for that:
//!
//! - **The admission state** ([`longhaul_tunnel::dedupe::Dedupe`]): the last seq the hub
//!   took, so resent frames are dropped, and a gap being waited out goes on being
//!   waited out. One [`Carried`] per publication id, shared by the streams that carry
//!   it; the one that is the hub's publisher decides under its lock, and a resume takes
//!   the hub over under the same lock, so a frame is never admitted by a stream that
//!   is no longer the publisher (it would be dropped as a duplicate by the next one,
//!   and lost).
//! - **The hub's publication** after its stream failed: [`park`] holds it for
//!   [`RESUME_GRACE`], so players stay attached while the edge comes back; a resume
//!   within that continues it ([`longhaul_hub::Hub::resume`]), otherwise it ends then.

use longhaul_hub::Publication;
use longhaul_tunnel::dedupe::Dedupe;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

/// How long a failed stream's publication stays in the hub for its edge to resume it:
/// 5 s. The edge finds the tunnel dead within `router.silence_limit_ms` (600 ms) plus a
/// round trip, reconnects after `tunnel.transport.reconnect_initial_ms` (500 ms, then
/// a handshake of one round trip: 230 ms on the longest path) and authorises again (one
/// more): about 2.2 s at worst for a resume here, with room for a lost packet or two.
/// Past that the edge has resumed elsewhere or given up, and players here should see
/// the stream end rather than wait on it.
pub const RESUME_GRACE: Duration = Duration::from_secs(5);

/// One publication's state at this origin, shared by the streams that carry it.
#[derive(Debug)]
pub struct Carried {
    dedupe: Mutex<Dedupe>,
    /// Counts the streams that became the hub's publisher for it: a stream taken over
    /// while this moved past its own number was replaced by a resume.
    streams: AtomicU64,
}

impl Carried {
    /// Admission state, locked. Hold it across deciding and pushing a frame.
    pub fn dedupe(&self) -> MutexGuard<'_, Dedupe> {
        self.dedupe.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stream became the publisher: its number.
    pub fn next_stream(&self) -> u64 {
        self.streams.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Whether the stream numbered `mine` has been replaced by a later one.
    pub fn replaced(&self, mine: u64) -> bool {
        self.streams.load(Ordering::Acquire) > mine
    }
}

/// The publications of this origin that can resume, by the edge's publication id.
/// Entries go when nothing holds their [`Carried`] any more (no stream, nothing parked).
#[derive(Debug, Default)]
pub struct Resumables {
    by_id: Mutex<HashMap<u64, Weak<Carried>>>,
}

impl Resumables {
    /// The state of publication `id`, made fresh if no stream or parked publication
    /// holds it.
    pub fn carried(&self, id: u64) -> Arc<Carried> {
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(&id).and_then(Weak::upgrade) {
            return c;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let c = Arc::new(Carried {
            dedupe: Mutex::new(Dedupe::new()),
            streams: AtomicU64::new(0),
        });
        map.insert(id, Arc::downgrade(&c));
        c
    }

    /// Publications held (for tests and the logs).
    pub fn len(&self) -> usize {
        let map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        map.values().filter(|w| w.strong_count() > 0).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Holds `publication` (its stream failed) for [`RESUME_GRACE`] or until a resume takes
/// it over, then lets it go: if it is still the hub's publisher the stream ends.
pub fn park(publication: Publication, carried: Arc<Carried>, stream: String, edge: String) {
    tokio::spawn(async move {
        let resumed = tokio::time::timeout(RESUME_GRACE, publication.taken_over())
            .await
            .is_ok();
        if resumed {
            tracing::debug!(%stream, %edge, "parked publication taken over");
        } else {
            tracing::info!(%stream, %edge, grace = ?RESUME_GRACE,
                "tunnel publish not resumed here in time: the stream ends");
        }
        drop(publication);
        drop(carried);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carried_state_lives_as_long_as_something_holds_it() {
        let r = Resumables::default();
        let a = r.carried(7);
        a.dedupe().admit(
            0,
            longhaul_tunnel::class::FrameClass::Audio,
            std::time::Instant::now(),
        );
        let b = r.carried(7);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(b.dedupe().last(), Some(0));
        let first = a.next_stream();
        assert!(!a.replaced(first));
        let second = b.next_stream();
        assert!(a.replaced(first) && !a.replaced(second));
        drop((a, b));
        assert!(r.is_empty());
        assert_eq!(r.carried(7).dedupe().last(), None, "fresh once let go");
    }
}
