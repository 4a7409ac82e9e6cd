//! Where else a stream is live: the answer to a play of a stream that is not live here.
//!
//! A play miss asks the registry's presence rows ([`crate::presence`] writes them at
//! every origin) and names the origins where the stream is live, with their play URLs,
//! in the refusal: RTMP's `NetStream.Play.StreamNotFound` description, HTTP-FLV's JSON
//! (`live_at`). When origins peer (a later issue) this becomes a redirect or a proxy.
//!
//! A play miss is cheap for a stranger to cause, so the lookup is bounded:
//! - a name that is not a stream name, or (with registry authorisation) of an entry the
//!   in-memory copy does not hold, is answered from memory: it is live nowhere;
//! - answers are kept [`CACHE_FOR`] per stream ([`AnswerCache`], at most
//!   [`CACHE_CAPACITY`] streams), so players retrying a stream cost one read;
//! - at most [`LOOKUPS_AT_ONCE`] reads at a time, each given [`LOOKUP_TIMEOUT`]; past
//!   either the refusal says where the stream is live is unknown, and why.
//!
//! What a player reads never holds the store's location or its error (they name the
//! database host): those go to the log.

use crate::state::OriginState;
use longhaul_registry::{LiveAt, StoreState};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Presence reads in flight at once; a miss beyond it is answered "unknown". Four keeps
/// a flood of plays of real entries' streams from costing the database more than a few
/// indexed single-stream reads at a time (the same bound as unknown-token lookups,
/// `longhaul_registry::registry::READ_THROUGH_LIMIT`).
pub const LOOKUPS_AT_ONCE: usize = 4;

/// Longest a play miss waits for the registry: one round trip (70 ms New York-Palo
/// Alto) with ample room; a player told "not here" a second late loses little, one kept
/// waiting longer may give up on its own.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);

/// How long an answer is reused for the same stream: players retry a missing stream
/// every few hundred milliseconds (the load player every 50 ms), so 2 s turns a
/// retrying crowd into one read per stream every 2 s, and a publish that moved is named
/// at most 2 s late.
pub const CACHE_FOR: Duration = Duration::from_secs(2);

/// Streams whose answers are kept at once: a few hundred kilobytes at most. When full,
/// expired answers go; if none has expired, all go (strangers filling it with names get
/// no more lookups for it: each lookup still needs a slot).
pub const CACHE_CAPACITY: usize = 4096;

/// What the cluster knows of where a stream is live, besides here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Live at these origins (never this one).
    Elsewhere(Vec<LiveAt>),
    /// Live at no other origin.
    Nowhere,
    /// This origin cannot tell; the reason is for the player.
    Unknown(String),
}

/// The `presence_lookups_total{outcome}` labels.
pub mod outcome {
    /// Read from the store: live elsewhere.
    pub const FOUND: &str = "found";
    /// Read from the store: live nowhere else.
    pub const NOT_FOUND: &str = "not_found";
    /// Answered from the cache.
    pub const CACHED: &str = "cached";
    /// Answered from memory without a read: not a stream name, an unknown entry, no
    /// registry, or the registry known to be unreachable.
    pub const SKIPPED: &str = "skipped";
    /// Every lookup slot was taken.
    pub const BUSY: &str = "busy";
    /// The read failed or timed out.
    pub const FAILED: &str = "failed";
}

/// Answers of recent lookups, per stream, with time passed in.
#[derive(Debug, Default)]
pub struct AnswerCache {
    answers: HashMap<String, (Instant, Answer)>,
}

impl AnswerCache {
    /// The answer for `stream` if it is younger than [`CACHE_FOR`].
    pub fn get(&self, stream: &str, now: Instant) -> Option<Answer> {
        self.answers
            .get(stream)
            .filter(|(at, _)| now.saturating_duration_since(*at) < CACHE_FOR)
            .map(|(_, answer)| answer.clone())
    }

    /// Keeps `answer` for `stream`, making room if need be.
    pub fn put(&mut self, stream: &str, answer: Answer, now: Instant) {
        if self.answers.len() >= CACHE_CAPACITY && !self.answers.contains_key(stream) {
            self.answers
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < CACHE_FOR);
            if self.answers.len() >= CACHE_CAPACITY {
                self.answers.clear();
            }
        }
        self.answers.insert(stream.to_string(), (now, answer));
    }

    pub fn len(&self) -> usize {
        self.answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }
}

/// The origin's lookups: the cache and the slots.
#[derive(Debug)]
pub struct Finder {
    cache: Mutex<AnswerCache>,
    slots: Semaphore,
}

impl Default for Finder {
    fn default() -> Self {
        Finder {
            cache: Mutex::new(AnswerCache::default()),
            slots: Semaphore::new(LOOKUPS_AT_ONCE),
        }
    }
}

impl Finder {
    /// Where else `stream` is live, as far as the cluster knows (bounded: see the
    /// module's doc). Counted in `presence_lookups_total{outcome}`.
    pub async fn find(&self, state: &OriginState, stream: &str) -> Answer {
        let (answer, how) = self.look_up(state, stream).await;
        state
            .metrics
            .presence_lookups
            .with_label_values(&[how])
            .inc();
        answer
    }

    async fn look_up(&self, state: &OriginState, stream: &str) -> (Answer, &'static str) {
        let Some(registry) = &state.registry else {
            return (
                Answer::Unknown(
                    "this origin has no registry; publishes are authorised by callback".into(),
                ),
                outcome::SKIPPED,
            );
        };
        let Some((entry_id, _)) = longhaul_endpoint::parse_stream_name(stream) else {
            return (Answer::Nowhere, outcome::SKIPPED);
        };
        // With registry authorisation, only the registry's entries are ever published.
        if state.config.auth.mode == crate::config::AuthMode::Registry
            && registry.get(entry_id).is_none()
        {
            return (Answer::Nowhere, outcome::SKIPPED);
        }
        if let Some(answer) = lock(&self.cache).get(stream, Instant::now()) {
            return (answer, outcome::CACHED);
        }
        if registry.state() == StoreState::Unreachable {
            return (
                Answer::Unknown("the registry is unreachable".into()),
                outcome::SKIPPED,
            );
        }
        let Ok(_slot) = self.slots.try_acquire() else {
            return (
                Answer::Unknown("too many lookups at once; try again".into()),
                outcome::BUSY,
            );
        };
        let read = tokio::time::timeout(LOOKUP_TIMEOUT, registry.presence_of(stream)).await;
        let rows = match read {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::warn!(%stream, error = %e, "cannot read where a stream is live");
                return (
                    Answer::Unknown("the registry could not be read".into()),
                    outcome::FAILED,
                );
            }
            Err(_) => {
                tracing::warn!(%stream, "reading where a stream is live took longer than {LOOKUP_TIMEOUT:?}");
                return (
                    Answer::Unknown(format!(
                        "the registry did not answer within {LOOKUP_TIMEOUT:?}"
                    )),
                    outcome::FAILED,
                );
            }
        };
        let elsewhere: Vec<LiveAt> = rows
            .into_iter()
            .filter(|row| row.origin != state.config.node.id)
            .collect();
        let (answer, how) = if elsewhere.is_empty() {
            (Answer::Nowhere, outcome::NOT_FOUND)
        } else {
            (Answer::Elsewhere(elsewhere), outcome::FOUND)
        };
        lock(&self.cache).put(stream, answer.clone(), Instant::now());
        (answer, how)
    }
}

/// Whether `stream` may be live somewhere: a stream name and, with registry
/// authorisation, of an entry the registry holds. What is not could never be published,
/// so nothing is asked of the database or the peers for it.
pub fn may_be_live(state: &OriginState, stream: &str) -> bool {
    let Some((entry_id, _)) = longhaul_endpoint::parse_stream_name(stream) else {
        return false;
    };
    match (&state.registry, state.config.auth.mode) {
        (Some(registry), crate::config::AuthMode::Registry) => registry.get(entry_id).is_some(),
        _ => true,
    }
}

/// The refusal's words: where the stream is not, and where it is.
pub fn not_live_message(node: &str, stream: &str, answer: &Answer) -> String {
    match answer {
        Answer::Elsewhere(at) => {
            let places: Vec<String> = at
                .iter()
                .map(|l| match &l.rtmp {
                    Some(url) => format!("{} ({}): {url}", l.origin, l.region),
                    None => format!("{} ({})", l.origin, l.region),
                })
                .collect();
            format!(
                "stream {stream} is not live on {node}; it is live on {}",
                places.join("; and on ")
            )
        }
        Answer::Nowhere => {
            format!("stream {stream} is not live on {node}, nor on any other origin")
        }
        Answer::Unknown(why) => {
            format!("stream {stream} is not live on {node} (where it is live is unknown: {why})")
        }
    }
}

/// HTTP-FLV's `live_at`: the origins and their play URLs; `None` when unknown.
pub fn live_at_json(answer: &Answer) -> Option<serde_json::Value> {
    match answer {
        Answer::Elsewhere(at) => Some(
            at.iter()
                .map(|l| {
                    serde_json::json!({
                        "origin": l.origin,
                        "region": l.region,
                        "rtmp": l.rtmp,
                        "http_flv": l.http_flv,
                    })
                })
                .collect(),
        ),
        Answer::Nowhere => Some(serde_json::json!([])),
        Answer::Unknown(_) => None,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(origin: &str, region: &str, rtmp: Option<&str>) -> LiveAt {
        LiveAt {
            stream: "1_abcdefgh_1".into(),
            entry_id: "1_abcdefgh".into(),
            origin: origin.into(),
            region: region.into(),
            rtmp: rtmp.map(str::to_string),
            http_flv: rtmp.map(|_| "http://127.0.0.1:8082/live/1_abcdefgh_1.flv".into()),
            updated_at: 1,
            expires_at: 2,
        }
    }

    #[test]
    fn the_message_names_where_the_stream_is_live() {
        let one = Answer::Elsewhere(vec![at(
            "pao-dev",
            "pao",
            Some("rtmp://127.0.0.1:2935/kLive/1_abcdefgh_1"),
        )]);
        assert_eq!(
            not_live_message("nyc-dev", "1_abcdefgh_1", &one),
            "stream 1_abcdefgh_1 is not live on nyc-dev; it is live on pao-dev (pao): \
             rtmp://127.0.0.1:2935/kLive/1_abcdefgh_1"
        );
        let two = Answer::Elsewhere(vec![
            at("fra-1", "fra", None),
            at("pao-dev", "pao", Some("rtmp://p/kLive/1_abcdefgh_1")),
        ]);
        assert_eq!(
            not_live_message("nyc-dev", "1_abcdefgh_1", &two),
            "stream 1_abcdefgh_1 is not live on nyc-dev; it is live on fra-1 (fra); \
             and on pao-dev (pao): rtmp://p/kLive/1_abcdefgh_1"
        );
        assert_eq!(
            not_live_message("nyc-dev", "x", &Answer::Nowhere),
            "stream x is not live on nyc-dev, nor on any other origin"
        );
        assert_eq!(
            not_live_message("nyc-dev", "x", &Answer::Unknown("the registry is unreachable".into())),
            "stream x is not live on nyc-dev (where it is live is unknown: the registry is unreachable)"
        );
    }

    #[test]
    fn the_json_lists_the_origins_or_nothing_when_unknown() {
        let one = Answer::Elsewhere(vec![at(
            "pao-dev",
            "pao",
            Some("rtmp://p/kLive/1_abcdefgh_1"),
        )]);
        assert_eq!(
            live_at_json(&one).unwrap(),
            serde_json::json!([{
                "origin": "pao-dev",
                "region": "pao",
                "rtmp": "rtmp://p/kLive/1_abcdefgh_1",
                "http_flv": "http://127.0.0.1:8082/live/1_abcdefgh_1.flv",
            }])
        );
        assert_eq!(
            live_at_json(&Answer::Nowhere).unwrap(),
            serde_json::json!([])
        );
        assert_eq!(live_at_json(&Answer::Unknown("x".into())), None);
    }

    #[test]
    fn answers_are_kept_briefly_and_the_cache_stays_bounded() {
        let t0 = Instant::now();
        let mut cache = AnswerCache::default();
        cache.put("1_abcdefgh_1", Answer::Nowhere, t0);
        assert_eq!(
            cache.get("1_abcdefgh_1", t0 + CACHE_FOR / 2),
            Some(Answer::Nowhere)
        );
        assert_eq!(cache.get("1_abcdefgh_1", t0 + CACHE_FOR), None);
        assert_eq!(cache.get("1_abcdefgh_2", t0), None);

        let mut cache = AnswerCache::default();
        for n in 0..CACHE_CAPACITY {
            cache.put(&format!("s{n}"), Answer::Nowhere, t0);
        }
        assert_eq!(cache.len(), CACHE_CAPACITY);
        // Full of fresh answers: a new stream makes room by clearing them.
        cache.put("new", Answer::Nowhere, t0);
        assert_eq!(cache.len(), 1);
        // Full with some expired: only those go.
        for n in 0..CACHE_CAPACITY - 1 {
            cache.put(&format!("old{n}"), Answer::Nowhere, t0);
        }
        let later = t0 + CACHE_FOR;
        cache.put("fresh", Answer::Nowhere, later);
        cache.put("fresher", Answer::Nowhere, later);
        assert_eq!(cache.len(), 2);
        assert!(cache.get("fresh", later).is_some());
    }
}
