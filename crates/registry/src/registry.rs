//! [`Registry`]: a node's view of the entries, an in-memory copy kept in step with the
//! store, and the one place the node changes entries through.
//!
//! ```text
//!  API write ──▶ store (SQLite / PostgreSQL) ──commit──▶ change feed ─┐
//!     │                                                               ▼
//!     └── refresh(id) ──────────────────────────────────────▶ sync task ──▶ replica
//!  publish ──▶ check_token (replica; a miss asks the store once)        └──▶ listeners
//! ```
//!
//! - **Reads come from memory.** `check_token`, `get` and `list` never wait on the
//!   database, so publishes keep being decided, and nothing valid is refused, while the
//!   database is unreachable (fail static). [`Registry::status`] says so.
//! - **One writer of the copy.** A single task applies everything the copy learns, in
//!   order: the feed's resyncs and changes, and a refresh after each of this node's own
//!   writes. Each update is a read of the store made after the event it answers, so the
//!   copy only moves forward in time, and every difference it finds is told to the
//!   listeners as a [`RegistryChange`], however the change came (this node's API,
//!   another origin, a resync after an outage). Revocation hangs off those.
//! - **Writes go to the store**, then wait (briefly) for the copy to take them, so a
//!   read right after a write through this node sees it. When the store is
//!   unreachable a write fails with [`RegistryError::Unavailable`] (the API's 503).
//! - **A miss asks the store.** A token the copy does not know (an entry created or a
//!   token regenerated a moment ago at another origin, before its notification came) is
//!   looked up once in the store before being refused; at most [`READ_THROUGH_LIMIT`]
//!   lookups at a time, so a flood of bad tokens cannot flood the database.

use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime};
use tracing::Instrument;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::cache::{CacheFile, SAVE_INTERVAL};
use crate::change::{Listeners, RegistryChange};
use crate::entry::Entry;
use crate::error::RegistryError;
use crate::presence::{LiveAt, LiveStream, PresenceOrigin};
use crate::replica::Replica;
use crate::store::{EntryStore, StoreEvent, StoreInfo};
use crate::token_check::TokenCheck;

/// Store lookups for unknown tokens in flight at once; beyond that a miss is answered
/// from memory. Four keeps a bad-token flood from costing the database more than a few
/// single-row reads at a time (the abuse guard at each node's door bounds it further),
/// while an ordinary burst of new publishes finds a slot: a lookup is one round trip to
/// the database, under a millisecond beside it and about 70 ms across the continent.
pub const READ_THROUGH_LIMIT: usize = 4;

/// How long a write waits for the copy to take it, and a miss for its lookup. One
/// round trip to the database (70 ms New York-Palo Alto) behind at most one batch of
/// changes; if the store is slower than this the answer stands without it and the
/// feed catches up later.
pub const REFRESH_WAIT: Duration = Duration::from_secs(2);

/// Changes read in one batch (`get_many`): a burst of notifications (a bulk token
/// rotation after a leak) costs a round trip per batch, not per entry.
pub const CHANGE_BATCH: usize = 256;

/// Pause before the sync task starts again after a panic (a bug): long enough not to
/// spin on a change that panics every time, short against a revocation's 2 s.
const RESTART_PAUSE: Duration = Duration::from_millis(200);

/// Requests waiting for the sync task. Each API write and each unknown-token lookup
/// is one; past 256 waiting (the database is slow, and the node busy) a lookup is
/// skipped and a write answers without waiting for the copy.
const REQUEST_QUEUE: usize = 256;

/// After a failed resync, how long before trying again (the feed also asks for one as
/// soon as it reconnects).
pub const RESYNC_RETRY: Duration = Duration::from_secs(1);

/// Whether the store can be reached, as far as this node knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreState {
    /// The change feed is up and the last read succeeded.
    Connected,
    /// The store cannot be reached: entries are served from memory, writes are refused.
    Unreachable,
}

impl StoreState {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreState::Connected => "connected",
            StoreState::Unreachable => "unreachable",
        }
    }
}

/// A snapshot of the registry's health, for `/healthz` and the metrics.
#[derive(Debug, Clone)]
pub struct RegistryStatus {
    pub store: StoreInfo,
    pub state: StoreState,
    /// Since when it is in this state.
    pub since: SystemTime,
    /// The last error seen reaching the store.
    pub last_error: Option<String>,
    /// Entries in the copy.
    pub entries: usize,
    /// Whole-table reads done to catch up (one at start, one per reconnect).
    pub resyncs: u64,
    /// Changes applied to the copy, by [`RegistryChange::kind`].
    pub changes: Vec<(&'static str, u64)>,
    /// Times the store became unreachable.
    pub outages: u64,
}

struct Health {
    state: StoreState,
    since: SystemTime,
    last_error: Option<String>,
    resyncs: u64,
    changes: [u64; RegistryChange::KINDS.len()],
    outages: u64,
}

/// What the sync task is asked to do besides following the feed.
enum Request {
    /// Read this entry again and say when the copy has it.
    Refresh {
        entry_id: String,
        done: oneshot::Sender<()>,
    },
    /// A write found the store unreachable: catch up once it is back.
    Resync,
}

/// A node's entries: the store, the copy, the listeners. Share it as `Arc<Registry>`;
/// dropping the last handle stops its sync task.
pub struct Registry {
    store: Arc<dyn EntryStore>,
    /// The last copy on disk, to start from when the store is unreachable at start.
    cache: Option<CacheFile>,
    /// The copy changed since it was last saved.
    dirty: std::sync::atomic::AtomicBool,
    replica: RwLock<Replica>,
    listeners: Listeners,
    health: Mutex<Health>,
    requests: mpsc::Sender<Request>,
    read_through: Semaphore,
    stop: CancellationToken,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("store", &self.store.info())
            .finish()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Registry {
    /// Loads every entry from `store` and starts following its changes. Fails if the
    /// store cannot be read now: a node must have its entries before it serves.
    pub async fn open(store: Arc<dyn EntryStore>) -> Result<Arc<Registry>, RegistryError> {
        Registry::open_with_cache(store, None).await
    }

    /// [`Registry::open`], keeping the copy in `cache` too: when the store cannot be
    /// read at start, the node starts from the last copy saved there (its state
    /// `Unreachable` until the store is back) instead of failing.
    pub async fn open_with_cache(
        store: Arc<dyn EntryStore>,
        cache: Option<CacheFile>,
    ) -> Result<Arc<Registry>, RegistryError> {
        let feed = store.watch();
        let location = store.info().location;
        let (snapshot, fresh) = match store.list().await {
            Ok(snapshot) => (snapshot, true),
            Err(e) if e.is_unavailable() => {
                let saved = match &cache {
                    Some(c) => {
                        let c = c.clone();
                        let at = location.clone();
                        tokio::task::spawn_blocking(move || c.load(&at))
                            .await
                            .map_err(|_| RegistryError::Closed)??
                    }
                    None => None,
                };
                let Some((entries, saved_at)) = saved else {
                    return Err(e);
                };
                tracing::warn!(registry = %location, error = %e, entries = entries.len(),
                    saved_at, cache = %cache.as_ref().map(|c| c.path().display().to_string()).unwrap_or_default(),
                    "registry unreachable at start: starting from the entries saved on disk");
                (entries, false)
            }
            Err(e) => return Err(e),
        };
        let mut replica = Replica::new();
        replica.apply_snapshot(snapshot);
        let (requests_tx, requests) = mpsc::channel(REQUEST_QUEUE);
        let registry = Arc::new(Registry {
            store,
            cache,
            dirty: std::sync::atomic::AtomicBool::new(fresh),
            replica: RwLock::new(replica),
            listeners: Listeners::default(),
            health: Mutex::new(Health {
                state: if fresh {
                    StoreState::Connected
                } else {
                    StoreState::Unreachable
                },
                since: SystemTime::now(),
                last_error: (!fresh).then(|| "unreachable at start".to_string()),
                resyncs: u64::from(fresh),
                changes: [0; RegistryChange::KINDS.len()],
                outages: 0,
            }),
            requests: requests_tx,
            read_through: Semaphore::new(READ_THROUGH_LIMIT),
            stop: CancellationToken::new(),
        });
        if fresh {
            registry.save().await;
        }
        tokio::spawn(
            supervise(
                Arc::downgrade(&registry),
                registry.stop.clone(),
                feed,
                requests,
            )
            .in_current_span(),
        );
        Ok(registry)
    }

    /// Which store this is.
    pub fn info(&self) -> StoreInfo {
        self.store.info()
    }

    /// Creates an entry with a fresh id and token.
    pub async fn create_entry(&self, name: Option<&str>) -> Result<Entry, RegistryError> {
        let entry = self.written(self.store.create(name).await)?;
        self.caught_up(&entry.id).await;
        Ok(entry)
    }

    /// Renames an entry.
    pub async fn rename(&self, id: &str, name: &str) -> Result<Entry, RegistryError> {
        let entry = self.written(self.store.rename(id, name).await)?;
        self.caught_up(id).await;
        Ok(entry)
    }

    /// Deletes an entry; `false` if there was none. Its live publishes are cut (by the
    /// listeners of [`RegistryChange::Deleted`]).
    pub async fn delete(&self, id: &str) -> Result<bool, RegistryError> {
        let deleted = self.written(self.store.delete(id).await)?;
        self.caught_up(id).await;
        Ok(deleted)
    }

    /// Gives an entry a fresh token; the old one is refused from then on, and live
    /// publishes that used it are cut. With `expected`, only if the entry is at that
    /// generation ([`RegistryError::Conflict`] otherwise).
    pub async fn regenerate_token(
        &self,
        id: &str,
        expected: Option<u32>,
    ) -> Result<Entry, RegistryError> {
        let entry = self.written(self.store.regenerate_token(id, expected).await)?;
        self.caught_up(id).await;
        Ok(entry)
    }

    /// A write's result: an unreachable store is news for the status, and the copy
    /// must catch up once it is back.
    fn written<T>(&self, result: Result<T, RegistryError>) -> Result<T, RegistryError> {
        if let Err(e) = &result {
            if e.is_unavailable() {
                self.set_state(StoreState::Unreachable, Some(e.to_string()));
                let _ = self.requests.try_send(Request::Resync);
            }
        }
        result
    }

    /// The entry with this id, from memory.
    pub fn get(&self, id: &str) -> Option<Entry> {
        self.replica().get(id).cloned()
    }

    /// Every entry, oldest first, from memory.
    pub fn list(&self) -> Vec<Entry> {
        self.replica().list()
    }

    /// The entry's current token generation, from memory; `None` if there is no entry.
    pub fn current_generation(&self, id: &str) -> Option<u32> {
        self.replica().get(id).map(|e| e.token_generation)
    }

    /// Checks a publish token. Answered from memory; a token the copy does not take is
    /// looked up in the store once (while it is reachable) before being refused.
    pub async fn check_token(&self, entry_id: &str, presented: Option<&str>) -> TokenCheck {
        let check = self.replica().check_token(entry_id, presented);
        let worth_asking = matches!(check, TokenCheck::Wrong | TokenCheck::UnknownEntry)
            && presented.is_some_and(|t| !t.is_empty())
            && self.state() == StoreState::Connected;
        if !worth_asking {
            return check;
        }
        let Ok(_slot) = self.read_through.try_acquire() else {
            return check;
        };
        self.caught_up(entry_id).await;
        self.replica().check_token(entry_id, presented)
    }

    /// Records the streams live on `origin` (see [`crate::presence`]): straight to the
    /// store, not the copy. Call it off the publish path: it waits on the database.
    pub async fn set_presence(
        &self,
        origin: &PresenceOrigin,
        streams: &[LiveStream],
        ttl: Duration,
    ) -> Result<(), RegistryError> {
        self.store.set_presence(origin, streams, ttl).await
    }

    /// Where `stream` is live, asked of the store (rows not expired).
    pub async fn presence_of(&self, stream: &str) -> Result<Vec<LiveAt>, RegistryError> {
        self.store.presence_of(stream).await
    }

    /// Calls `listener` after every change the copy takes, from this node or any other
    /// (see [`crate::change`]).
    pub fn on_change(&self, listener: impl Fn(&RegistryChange) + Send + Sync + 'static) {
        self.listeners.add(Arc::new(listener));
    }

    /// Health and counters, for `/healthz` and the metrics.
    pub fn status(&self) -> RegistryStatus {
        let h = lock(&self.health);
        RegistryStatus {
            store: self.store.info(),
            state: h.state,
            since: h.since,
            last_error: h.last_error.clone(),
            entries: self.replica().len(),
            resyncs: h.resyncs,
            changes: RegistryChange::KINDS
                .iter()
                .copied()
                .zip(h.changes)
                .collect(),
            outages: h.outages,
        }
    }

    /// Whether the store can be reached, as far as this node knows.
    pub fn state(&self) -> StoreState {
        lock(&self.health).state
    }

    fn replica(&self) -> std::sync::RwLockReadGuard<'_, Replica> {
        self.replica.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the sync task to read `entry_id` again and waits (at most [`REFRESH_WAIT`])
    /// until the copy has it.
    async fn caught_up(&self, entry_id: &str) {
        let (done, finished) = oneshot::channel();
        let request = Request::Refresh {
            entry_id: entry_id.to_owned(),
            done,
        };
        if self.requests.try_send(request).is_err() {
            return;
        }
        let _ = tokio::time::timeout(REFRESH_WAIT, finished).await;
    }

    /// Applies what the store says of `ids` now (`found`: those that exist), and tells
    /// the listeners.
    fn apply_many(&self, ids: &[String], found: Vec<Entry>) {
        let mut found: std::collections::HashMap<String, Entry> =
            found.into_iter().map(|e| (e.id.clone(), e)).collect();
        let changes: Vec<RegistryChange> = {
            let mut replica = self.replica.write().unwrap_or_else(PoisonError::into_inner);
            ids.iter()
                .flat_map(|id| replica.apply(id, found.remove(id)))
                .collect()
        };
        self.announce(changes);
    }

    fn apply_snapshot(&self, snapshot: Vec<Entry>) {
        let changes = self
            .replica
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .apply_snapshot(snapshot);
        lock(&self.health).resyncs += 1;
        self.announce(changes);
    }

    /// Writes the copy to the cache file, if there is one and the copy changed.
    async fn save(&self) {
        let Some(cache) = &self.cache else {
            return;
        };
        if !self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let (cache, entries, store) = (cache.clone(), self.list(), self.store.info().location);
        let saved = tokio::task::spawn_blocking(move || cache.save(&store, entries)).await;
        if let Ok(Err(e)) | Err(e) = saved.map_err(|e| RegistryError::Settings(e.to_string())) {
            self.dirty.store(true, std::sync::atomic::Ordering::Release);
            tracing::warn!(error = %e, "saving the registry's copy to disk failed");
        }
    }

    fn announce(&self, changes: Vec<RegistryChange>) {
        if !changes.is_empty() {
            self.dirty.store(true, std::sync::atomic::Ordering::Release);
        }
        for change in changes {
            {
                let mut h = lock(&self.health);
                if let Some(i) = RegistryChange::KINDS
                    .iter()
                    .position(|k| *k == change.kind())
                {
                    h.changes[i] += 1;
                }
            }
            tracing::info!(entry = %change.entry_id(), change = change.kind(),
                registry = %self.store.info().location, "registry change");
            self.listeners.notify(&change);
        }
    }

    fn set_state(&self, state: StoreState, error: Option<String>) {
        let mut h = lock(&self.health);
        if h.state != state {
            let location = self.store.info().location;
            match state {
                StoreState::Unreachable => {
                    h.outages += 1;
                    tracing::warn!(registry = %location, error = error.as_deref().unwrap_or(""),
                        entries = self.replica().len(),
                        "registry unreachable: publishes are decided from memory, entry changes are refused");
                }
                StoreState::Connected => {
                    tracing::info!(registry = %location, "registry reachable again")
                }
            }
            h.state = state;
            h.since = SystemTime::now();
        }
        if error.is_some() {
            h.last_error = error;
        }
    }
}

/// Runs the sync task, and runs it again if it panics (a bug): the copy must not stop
/// following the store while the node goes on deciding publishes from it. A restart
/// reads the whole table again, so nothing missed meanwhile is lost. Ends when the
/// registry is dropped.
async fn supervise(
    registry: Weak<Registry>,
    stop: CancellationToken,
    mut feed: mpsc::Receiver<StoreEvent>,
    mut requests: mpsc::Receiver<Request>,
) {
    use futures_util::FutureExt;
    let mut resync_owed = false;
    loop {
        let run = std::panic::AssertUnwindSafe(sync(
            &registry,
            &stop,
            &mut feed,
            &mut requests,
            resync_owed,
        ))
        .catch_unwind()
        .await;
        let Err(panic) = run else {
            return;
        };
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let Some(r) = registry.upgrade() else {
            return;
        };
        tracing::error!(registry = %r.store.info().location, panic = %what,
            "the registry's sync task panicked (a bug); starting it again");
        r.set_state(
            StoreState::Unreachable,
            Some(format!("the sync task panicked: {what}")),
        );
        drop(r);
        resync_owed = true;
        tokio::select! {
            _ = tokio::time::sleep(RESTART_PAUSE) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// The sync task: the only writer of the copy. Returns when the registry is dropped.
///
/// The feed comes first (`biased`): a revocation must not wait behind lookups. Changes
/// that arrived together are read in one batch; a feed that ended (its task died) counts
/// as a lost database and is started again.
async fn sync(
    registry: &Weak<Registry>,
    stop: &CancellationToken,
    feed: &mut mpsc::Receiver<StoreEvent>,
    requests: &mut mpsc::Receiver<Request>,
    mut resync_owed: bool,
) {
    // The feed says the database is reachable (until it says Lost).
    let mut feed_up = !resync_owed;
    let retry = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(retry);
    let mut save_tick = tokio::time::interval(SAVE_INTERVAL);
    save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if resync_owed {
        retry
            .as_mut()
            .reset(tokio::time::Instant::now() + RESYNC_RETRY);
        feed_up = true;
    }
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            event = feed.recv() => {
                let Some(registry) = registry.upgrade() else { return };
                let Some(event) = event else {
                    // The feed's task is gone: start another, which resyncs first.
                    registry.set_state(
                        StoreState::Unreachable,
                        Some("the change feed ended".into()),
                    );
                    tracing::error!(registry = %registry.store.info().location,
                        "the registry's change feed ended; starting it again");
                    *feed = registry.store.watch();
                    feed_up = false;
                    continue;
                };
                match take_batch(event, feed) {
                    Batch::Resync => {
                        feed_up = true;
                        resync_owed = !resync(&registry).await;
                    }
                    Batch::Changed(ids) => {
                        if !refresh(&registry, &ids).await {
                            resync_owed = true;
                        }
                    }
                    Batch::Lost(reason) => {
                        feed_up = false;
                        registry.set_state(StoreState::Unreachable, Some(reason));
                    }
                }
                retry.as_mut().reset(tokio::time::Instant::now() + RESYNC_RETRY);
            }
            _ = save_tick.tick() => {
                let Some(registry) = registry.upgrade() else { return };
                registry.save().await;
            }
            () = &mut retry, if resync_owed && feed_up => {
                let Some(registry) = registry.upgrade() else { return };
                resync_owed = !resync(&registry).await;
                retry.as_mut().reset(tokio::time::Instant::now() + RESYNC_RETRY);
            }
            request = requests.recv() => {
                let Some(request) = request else { return };
                let Some(registry) = registry.upgrade() else { return };
                match request {
                    // Whoever asked has given up waiting: skip it.
                    Request::Refresh { done, .. } if done.is_closed() => {}
                    Request::Refresh { entry_id, done } => {
                        if !refresh(&registry, std::slice::from_ref(&entry_id)).await {
                            resync_owed = true;
                            retry.as_mut().reset(tokio::time::Instant::now() + RESYNC_RETRY);
                        }
                        let _ = done.send(());
                    }
                    Request::Resync => {
                        resync_owed = true;
                        retry.as_mut().reset(tokio::time::Instant::now() + RESYNC_RETRY);
                    }
                }
            }
        }
    }
}

/// What the feed said, with whatever else it had ready folded in.
enum Batch {
    Resync,
    Changed(Vec<String>),
    Lost(String),
}

/// Folds `first` and the events already waiting behind it into one thing to do: a
/// resync if any asks for one (or the changes are too many to read one by one), the
/// changed ids otherwise. A loss ends the batch, to be told at once.
fn take_batch(first: StoreEvent, feed: &mut mpsc::Receiver<StoreEvent>) -> Batch {
    let mut ids: Vec<String> = Vec::new();
    let mut resync = false;
    let mut next = Some(first);
    while let Some(event) = next.take() {
        match event {
            StoreEvent::Resync => resync = true,
            StoreEvent::Changed { entry_id } => {
                if !ids.contains(&entry_id) {
                    ids.push(entry_id);
                }
            }
            StoreEvent::Lost { reason } => return Batch::Lost(reason),
        }
        if ids.len() > CHANGE_BATCH {
            resync = true;
        }
        if resync && ids.len() > CHANGE_BATCH * 4 {
            break;
        }
        next = feed.try_recv().ok();
    }
    if resync {
        Batch::Resync
    } else {
        Batch::Changed(ids)
    }
}

/// Reads the whole table into the copy. False if the store could not be read.
async fn resync(registry: &Registry) -> bool {
    match registry.store.list().await {
        Ok(snapshot) => {
            registry.apply_snapshot(snapshot);
            registry.set_state(StoreState::Connected, None);
            true
        }
        Err(e) => {
            registry.set_state(StoreState::Unreachable, Some(e.to_string()));
            false
        }
    }
}

/// Reads `ids` into the copy, in one query. False if the store could not be read.
async fn refresh(registry: &Registry, ids: &[String]) -> bool {
    match registry.store.get_many(ids).await {
        Ok(found) => {
            registry.apply_many(ids, found);
            true
        }
        Err(e) if e.is_unavailable() => {
            registry.set_state(StoreState::Unreachable, Some(e.to_string()));
            false
        }
        Err(e) => {
            tracing::warn!(entries = ids.len(), error = %e,
                "reading entries for the in-memory copy failed");
            false
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
