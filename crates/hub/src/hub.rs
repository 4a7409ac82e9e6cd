//! The hub: live streams by key, their renditions' on-air streams, publishing (with
//! takeover) and subscribing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::key::{LegChoice, StreamKey};
use crate::on_air::OnAirSettings;
use crate::on_air::SwitchReason;
use crate::publication::{Publication, PublishOutcome};
use crate::rendition::{switch_index, OnAirCounters, Rendition};
use crate::stats::{
    OnAirTotals, PublisherInfo, RecentSwitch, RenditionSummary, StreamSummary, SwitchCount,
};
use crate::stream::{lock, Stream};
use crate::subscription::{Source, Subscription};

/// The live streams of one node. Cheap to clone: clones share the same streams.
///
/// Locking, in this order and never the other way: the stream map, the rendition map,
/// a stream, a rendition.
#[derive(Debug, Clone, Default)]
pub struct Hub {
    shared: Arc<HubShared>,
}

#[derive(Debug, Default)]
pub(crate) struct HubShared {
    streams: Mutex<HashMap<StreamKey, Arc<Stream>>>,
    /// The on-air stream of every name with a live leg.
    renditions: Mutex<HashMap<String, Arc<Rendition>>>,
    on_air: OnAirSettings,
    on_air_counters: Arc<OnAirCounters>,
    next_publication_id: AtomicU64,
    /// Told when a stream starts or ends (not on a takeover): see [`Hub::live_changed`].
    changed: tokio::sync::Notify,
    /// Bumped when a stream starts, ends or is taken over: see [`Hub::watch_live`].
    generation: watch::Sender<u64>,
}

impl Hub {
    pub fn new() -> Hub {
        Hub::default()
    }

    /// A hub whose renditions choose their on-air leg by `settings`.
    pub fn with_on_air(settings: OnAirSettings) -> Hub {
        Hub {
            shared: Arc::new(HubShared {
                on_air: settings,
                ..HubShared::default()
            }),
        }
    }

    /// Starts publishing `key`. If the stream is already live, this publication takes
    /// it over: the previous publication is told (and its pushes fail from now on),
    /// the previous publisher's metadata, sequence headers and GOP are forgotten, and
    /// the players stay attached and carry on with what the new publisher sends, its
    /// timestamps rebased to continue just after the previous publisher's (see the
    /// crate doc, "Takeover").
    pub fn publish(
        &self,
        key: StreamKey,
        publisher: PublisherInfo,
    ) -> (Publication, PublishOutcome) {
        self.start(key, publisher, None, false)
            .expect("a publish that is not a replica always starts")
    }

    /// Publishes a leg pulled from a peer origin (`publisher.replica_of` names it), as
    /// [`Hub::publish`] does, unless `key` is live with a publish made here: a replica
    /// never takes one over (`None` then). A publish made here takes a replica over as it
    /// would any publication.
    pub fn publish_replica(
        &self,
        key: StreamKey,
        publisher: PublisherInfo,
    ) -> Option<(Publication, PublishOutcome)> {
        debug_assert!(publisher.replica_of.is_some());
        self.start(key, publisher, None, true)
    }

    /// Publishes `key` for the encoder publish the edge names `resumable` (a tunnel
    /// publish, wire version 2), which may come back on another stream after its tunnel
    /// failed. If the stream is live under that same `resumable` id, this publication
    /// *continues* it ([`PublishOutcome::Resumed`]): the old publication's pushes fail and
    /// it is told as in a takeover, but the metadata, headers, GOP cache and timeline are
    /// kept (it is the same encoder, on the same clock), and the players carry on with no
    /// gap in their timestamps. Otherwise as [`Hub::publish`], and the stream remembers
    /// `resumable` for the next resume.
    pub fn resume(
        &self,
        key: StreamKey,
        publisher: PublisherInfo,
        resumable: u64,
    ) -> (Publication, PublishOutcome) {
        self.start(key, publisher, Some(resumable), false)
            .expect("a publish that is not a replica always starts")
    }

    /// Starts a publication; `None` only for a `replica` that would take over a publish
    /// made here.
    fn start(
        &self,
        key: StreamKey,
        publisher: PublisherInfo,
        resumable: Option<u64>,
        replica: bool,
    ) -> Option<(Publication, PublishOutcome)> {
        let id = self
            .shared
            .next_publication_id
            .fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = watch::channel(false);
        let mut streams = lock(&self.shared.streams);
        if let Some(stream) = streams.get(&key) {
            let stream = Arc::clone(stream);
            let (previous, resumed) = {
                let mut inner = lock(&stream.inner);
                if replica && inner.publisher.replica_of.is_none() {
                    return None;
                }
                let resumed = resumable.is_some() && inner.resumable == resumable;
                // A replica and the same leg published here are one encoder's leg, on
                // one clock.
                let same_clock =
                    inner.publisher.replica_of.is_some() || publisher.replica_of.is_some();
                inner.publication_id = id;
                inner.resumable = resumable;
                if resumed {
                    inner.resumes += 1;
                } else {
                    inner.takeovers += 1;
                    inner.publisher_since = std::time::SystemTime::now();
                    if same_clock {
                        inner.fanout.state.continue_clock();
                    } else {
                        inner.fanout.state.take_over();
                        inner.health.new_clock();
                    }
                }
                let old_sender = std::mem::replace(&mut inner.taken_over, sender);
                old_sender.send_replace(true);
                (std::mem::replace(&mut inner.publisher, publisher), resumed)
            };
            drop(streams);
            self.shared.generation.send_modify(|g| *g += 1);
            let publication = self.publication(stream, id, receiver);
            if resumed {
                tracing::info!(stream = %key, %previous, "publication resumed on a new stream");
                return Some((publication, PublishOutcome::Resumed { previous }));
            }
            tracing::info!(stream = %key, %previous, "publication taken over");
            return Some((publication, PublishOutcome::TookOver { previous }));
        }
        let rendition = {
            let mut renditions = lock(&self.shared.renditions);
            let rendition = renditions.entry(key.name.clone()).or_insert_with(|| {
                Arc::new(Rendition::new(
                    key.name.clone(),
                    self.shared.on_air,
                    Arc::clone(&self.shared.on_air_counters),
                ))
            });
            Arc::clone(rendition)
        };
        rendition.leg_started(key.leg);
        let mut stream = Stream::new(key.clone(), rendition, publisher, id, sender);
        stream
            .inner
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .resumable = resumable;
        let stream = Arc::new(stream);
        streams.insert(key, Arc::clone(&stream));
        drop(streams);
        self.shared.changed.notify_one();
        self.shared.generation.send_modify(|g| *g += 1);
        Some((self.publication(stream, id, receiver), PublishOutcome::New))
    }

    fn publication(
        &self,
        stream: Arc<Stream>,
        id: u64,
        taken_over: watch::Receiver<bool>,
    ) -> Publication {
        Publication {
            hub: Arc::clone(&self.shared),
            stream,
            id,
            taken_over,
        }
    }

    /// Attaches a player to the live stream `name` as `choice` says (see [`LegChoice`]:
    /// by default the rendition's on-air stream, fed from whichever leg is on air).
    /// `None` when no acceptable leg is live.
    pub fn subscribe(&self, name: &str, choice: LegChoice) -> Option<Subscription> {
        if choice == LegChoice::OnAir {
            let rendition = lock(&self.shared.renditions).get(name).cloned()?;
            let player = {
                let mut inner = lock(&rendition.inner);
                if inner.out.ended {
                    return None;
                }
                inner.out.attach()
            };
            return Some(Subscription {
                source: Source::OnAir(rendition),
                player,
            });
        }
        for leg in choice.candidates().into_iter().flatten() {
            let key = StreamKey::new(name, leg);
            let Some(stream) = lock(&self.shared.streams).get(&key).cloned() else {
                continue;
            };
            let player = {
                let mut inner = lock(&stream.inner);
                if inner.fanout.ended {
                    continue;
                }
                inner.fanout.attach()
            };
            return Some(Subscription {
                source: Source::Leg(stream),
                player,
            });
        }
        None
    }

    /// Attaches a player to leg `leg` of `name` if it is live with a publish made here,
    /// not a replica pulled from a peer: what a peer origin's pull is served from, so
    /// that origins never feed one another in a ring. The player follows takeovers as
    /// any does (a replica never takes over a publish made here).
    pub fn subscribe_local(&self, name: &str, leg: crate::key::Leg) -> Option<Subscription> {
        let stream = lock(&self.shared.streams)
            .get(&StreamKey::new(name, leg))
            .cloned()?;
        let player = {
            let mut inner = lock(&stream.inner);
            if inner.fanout.ended || inner.publisher.replica_of.is_some() {
                return None;
            }
            inner.fanout.attach()
        };
        Some(Subscription {
            source: Source::Leg(stream),
            player,
        })
    }

    /// A counter bumped whenever a stream starts, ends or is taken over: for tasks
    /// waiting on a stream's state (any number of them, unlike [`Hub::live_changed`]).
    pub fn watch_live(&self) -> watch::Receiver<u64> {
        self.shared.generation.subscribe()
    }

    /// The keys of the live streams published here (replicas left out): what this node
    /// tells the cluster it has.
    pub fn local_keys(&self) -> Vec<StreamKey> {
        let streams: Vec<Arc<Stream>> = lock(&self.shared.streams).values().cloned().collect();
        streams
            .iter()
            .filter(|s| lock(&s.inner).publisher.replica_of.is_none())
            .map(|s| s.key.clone())
            .collect()
    }

    /// Whether `key` has a live publication.
    pub fn is_live(&self, key: &StreamKey) -> bool {
        lock(&self.shared.streams).contains_key(key)
    }

    /// The keys of every live stream, unsorted: one short hold of the map's lock, no
    /// stream's lock.
    pub fn keys(&self) -> Vec<StreamKey> {
        lock(&self.shared.streams).keys().cloned().collect()
    }

    /// Resolves when a stream has started or ended since the last time it resolved (at
    /// once if one has). Changes in between fold into one wake-up. For one waiter: the
    /// node's task that tells the cluster which streams are live here, off the publish
    /// path (a publish only sets a flag).
    pub async fn live_changed(&self) {
        self.shared.changed.notified().await
    }

    /// Every live stream, sorted by key.
    pub fn streams(&self) -> Vec<StreamSummary> {
        let streams: Vec<Arc<Stream>> = lock(&self.shared.streams).values().cloned().collect();
        let mut summaries: Vec<StreamSummary> = streams.iter().map(|s| s.summary()).collect();
        summaries.sort_by(|a, b| a.key.cmp(&b.key));
        summaries
    }

    /// One live stream.
    pub fn stream(&self, key: &StreamKey) -> Option<StreamSummary> {
        let stream = lock(&self.shared.streams).get(key).cloned();
        stream.map(|s| s.summary())
    }

    /// On-air switches and time on the backup over every rendition this hub has had,
    /// ended ones included: what counters are made of.
    pub fn on_air_totals(&self) -> OnAirTotals {
        let counters = &self.shared.on_air_counters;
        let mut switches = Vec::new();
        for to in crate::key::Leg::ALL {
            for reason in [
                SwitchReason::Started,
                SwitchReason::Silent,
                SwitchReason::Ended,
                SwitchReason::Failback,
            ] {
                let count = counters.switches[usize::from(to == crate::key::Leg::Backup)]
                    [switch_index(reason)]
                .load(Ordering::Relaxed);
                switches.push(SwitchCount { to, reason, count });
            }
        }
        let ended = counters.backup_ended_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        let live: f64 = self
            .renditions()
            .iter()
            .map(|r| r.backup_on_air_seconds)
            .sum();
        OnAirTotals {
            switches,
            backup_on_air_seconds: ended + live,
        }
    }

    /// The latest switches from one leg to the other (failovers and failbacks, not the
    /// first leg going on air), newest first, up to
    /// [`RECENT_SWITCHES`](crate::RECENT_SWITCHES), ended renditions'
    /// included.
    pub fn recent_switches(&self) -> Vec<RecentSwitch> {
        lock(&self.shared.on_air_counters.recent)
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    /// Every rendition with a live leg, sorted by name: which leg is on air, switches,
    /// time on the backup.
    pub fn renditions(&self) -> Vec<RenditionSummary> {
        let renditions: Vec<Arc<Rendition>> =
            lock(&self.shared.renditions).values().cloned().collect();
        let mut summaries: Vec<RenditionSummary> = renditions.iter().map(|r| r.summary()).collect();
        summaries.sort_by(|a, b| a.name.cmp(&b.name));
        summaries
    }
}

impl HubShared {
    /// Ends `stream` if publication `id` is still its publisher.
    pub(crate) fn end_publication(&self, stream: &Arc<Stream>, id: u64) {
        let mut streams = lock(&self.streams);
        let mut renditions = lock(&self.renditions);
        let mut inner = lock(&stream.inner);
        if inner.publication_id != id || inner.fanout.ended {
            return;
        }
        inner.fanout.end();
        if streams
            .get(&stream.key)
            .is_some_and(|s| Arc::ptr_eq(s, stream))
        {
            streams.remove(&stream.key);
            self.changed.notify_one();
            self.generation.send_modify(|g| *g += 1);
        }
        if stream.rendition.leg_ended(stream.key.leg)
            && renditions
                .get(&stream.rendition.name)
                .is_some_and(|r| Arc::ptr_eq(r, &stream.rendition))
        {
            renditions.remove(&stream.rendition.name);
        }
        tracing::info!(stream = %stream.key, "publication ended");
    }
}
