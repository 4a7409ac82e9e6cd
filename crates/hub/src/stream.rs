//! One live stream inside the hub: its synchronous state, current publisher and
//! players, behind one mutex that the publisher pushes under and new players attach
//! under (so a new player's snapshot and its live data meet with no gap and no
//! duplicate). The players and what feeds them ([`Fanout`]) are shared with a
//! rendition's on-air stream (`crate::rendition`), which is fed from the legs.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use longhaul_rtmp::RtmpMessage;
use tokio::sync::{watch, Notify};

use crate::health::Health;
use crate::key::StreamKey;
use crate::player_queue::{Offer, PlayerQueue};
use crate::rendition::Rendition;
use crate::state::{Ingested, StreamState};
use crate::stats::{PublisherInfo, StreamSummary};

/// Locks a mutex, recovering the data if a thread panicked while holding it: the hub's
/// state stays consistent between statements, and one broken task must not take every
/// stream down with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A player attached to a stream: its queue and the wake-up for its task.
#[derive(Debug)]
pub(crate) struct Player {
    pub id: u64,
    pub queue: Mutex<PlayerQueue>,
    pub notify: Notify,
}

impl Player {
    /// Runs `f` on the queue and wakes the player's task if it now has something to
    /// read where it had nothing.
    fn update<R>(&self, f: impl FnOnce(&mut PlayerQueue) -> R) -> R {
        let (result, wake) = {
            let mut queue = lock(&self.queue);
            let was_idle = queue.is_idle();
            let result = f(&mut queue);
            (result, was_idle && !queue.is_idle())
        };
        if wake {
            // Stores a permit if the task is not waiting yet: no lost wake-up.
            self.notify.notify_one();
        }
        result
    }
}

#[derive(Debug)]
pub(crate) struct Stream {
    pub key: StreamKey,
    pub started_at: SystemTime,
    /// The rendition this leg feeds (its on-air stream).
    pub rendition: Arc<Rendition>,
    pub inner: Mutex<StreamInner>,
}

/// The players of a stream and what they are fed from: the stream's synchronous state
/// (configuration, GOP cache, timeline) and a queue per player.
#[derive(Debug, Default)]
pub(crate) struct Fanout {
    pub state: StreamState,
    pub players: Vec<Arc<Player>>,
    pub next_player_id: u64,
    /// The stream ended; it takes no new players.
    pub ended: bool,
    pub player_skips: u64,
    pub players_dropped: u64,
    /// A configuration refusal has been logged: later ones are only counted (in
    /// `StreamSummary::config_refused`), so a publisher cannot flood the log.
    pub config_refusal_logged: bool,
}

#[derive(Debug)]
pub(crate) struct StreamInner {
    pub fanout: Fanout,
    pub publisher: PublisherInfo,
    pub publisher_since: SystemTime,
    /// Id of the current publication; pushes from any other are refused.
    pub publication_id: u64,
    /// Set to `true` when the current publication is taken over.
    pub taken_over: watch::Sender<bool>,
    pub takeovers: u64,
    /// Times the publication was resumed on a new stream ([`crate::Hub::resume`]).
    pub resumes: u64,
    /// The edge's id of the encoder publish being carried, for a tunnel publish that
    /// can resume ([`crate::Hub::resume`]); `None` for any other.
    pub resumable: Option<u64>,
    /// How the leg is doing: rates, keyframe interval, drift ([`crate::health`]).
    pub health: Health,
}

impl Stream {
    pub fn new(
        key: StreamKey,
        rendition: Arc<Rendition>,
        publisher: PublisherInfo,
        publication_id: u64,
        taken_over: watch::Sender<bool>,
    ) -> Stream {
        let now = SystemTime::now();
        Stream {
            key,
            started_at: now,
            rendition,
            inner: Mutex::new(StreamInner {
                fanout: Fanout::default(),
                publisher,
                publisher_since: now,
                publication_id,
                taken_over,
                takeovers: 0,
                resumes: 0,
                resumable: None,
                health: Health::new(Instant::now()),
            }),
        }
    }

    pub fn summary(&self) -> StreamSummary {
        let inner = lock(&self.inner);
        let fanout = &inner.fanout;
        let counters = fanout.state.counters();
        StreamSummary {
            key: self.key.clone(),
            publisher: inner.publisher.clone(),
            publisher_since: inner.publisher_since,
            started_at: self.started_at,
            players: fanout.players.len(),
            messages_in: counters.messages_in,
            bytes_in: counters.bytes_in,
            keyframes: counters.keyframes,
            video_codec: counters.video_codec,
            audio_codec: counters.audio_codec,
            gop_cache_messages: fanout.state.gop().len(),
            gop_cache_bytes: fanout.state.gop_bytes(),
            gop_overflows: counters.gop_overflows,
            config_refused: counters.config_refused,
            config_bytes: fanout.state.config_bytes(),
            player_skips: fanout.player_skips,
            players_dropped: fanout.players_dropped,
            takeovers: inner.takeovers,
            resumes: inner.resumes,
            timestamp_offset: fanout.state.timestamp_offset(),
            health: inner.health.figures(Instant::now()),
        }
    }
}

impl StreamInner {
    /// Takes in one message from the current publisher and offers it to every player,
    /// then to the rendition's on-air stream.
    pub fn push(&mut self, stream: &Stream, message: RtmpMessage) {
        let publisher = &self.publisher;
        // One clock read per message, for the players' queues, the health figures and
        // the on-air stream alike.
        let now = Instant::now();
        let ingested = self.fanout.push(&stream.key, message, now, |refusal| {
            tracing::warn!(
                stream = %stream.key,
                %publisher,
                %refusal,
                "configuration message refused (not stored, not forwarded); \
                 further refusals on this stream are only counted (config_refused)"
            );
        });
        if let Some(ingested) = ingested {
            self.health.record(&ingested, now);
            stream
                .rendition
                .offer(stream.key.leg, &ingested, &self.fanout.state, now);
        }
    }
}

impl Fanout {
    /// Takes in one message and offers it to every player: what was forwarded, or `None`
    /// for a configuration message refused for the bounds (`refused` logs the first) or
    /// a message the stream already has ([`StreamState::already_forwarded`]).
    /// `stream` names the stream in log lines; `now` is when the message arrived.
    pub fn push(
        &mut self,
        stream: &dyn std::fmt::Display,
        message: RtmpMessage,
        now: Instant,
        refused: impl FnOnce(&crate::config::ConfigRefusal),
    ) -> Option<Ingested> {
        if self.state.already_forwarded(&message) {
            return None;
        }
        let ingested = match self.state.ingest(message) {
            Ok(ingested) => ingested,
            Err(refusal) => {
                if !self.config_refusal_logged {
                    self.config_refusal_logged = true;
                    refused(&refusal);
                }
                return None;
            }
        };
        self.offer(stream, &ingested, now);
        Some(ingested)
    }

    /// Offers an ingested message to every player.
    fn offer(&mut self, stream: &dyn std::fmt::Display, ingested: &Ingested, now: Instant) {
        let state = &self.state;
        let mut dropped = Vec::new();
        for player in &self.players {
            match player.update(|queue| queue.offer(ingested, state, now)) {
                Offer::Queued | Offer::NotQueued => {}
                Offer::SkipStarted => {
                    self.player_skips += 1;
                    tracing::debug!(%stream, player = player.id, "slow player skipped to the next keyframe");
                }
                Offer::Dropped(reason) => {
                    self.players_dropped += 1;
                    dropped.push(player.id);
                    tracing::info!(%stream, player = player.id, %reason, "slow player dropped");
                }
            }
        }
        if !dropped.is_empty() {
            self.players.retain(|player| !dropped.contains(&player.id));
        }
    }

    /// Attaches a new player, its queue primed with the stream's snapshot.
    pub fn attach(&mut self) -> Arc<Player> {
        let player = Arc::new(Player {
            id: self.next_player_id,
            queue: Mutex::new(PlayerQueue::new(&self.state)),
            notify: Notify::new(),
        });
        self.next_player_id += 1;
        self.players.push(Arc::clone(&player));
        player
    }

    pub fn detach(&mut self, player_id: u64) {
        self.players.retain(|player| player.id != player_id);
    }

    /// The publication ended: every player gets what it has queued, then `Ended`.
    pub fn end(&mut self) {
        self.ended = true;
        for player in self.players.drain(..) {
            player.update(PlayerQueue::end);
        }
    }
}
