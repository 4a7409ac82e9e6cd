//! Telling the cluster which streams are live here: the rows this origin keeps in the
//! registry's presence table (`longhaul_registry::presence`), which the other origins
//! read when a player asks them for a stream they do not have ([`crate::elsewhere`]).
//!
//! Off the publish path: a publish that starts or ends only wakes this task (the hub's
//! [`longhaul_hub::Hub::live_changed`], a flag); the task then reads the hub's live
//! keys and writes the origin's whole set in one statement. Starts and ends that come
//! while a write is under way fold into the next write. A heartbeat rewrites the set
//! every `registry.presence_heartbeat_secs`, so rows of a live stream never expire; a
//! failed write is logged (once per outage), counted in
//! `presence_writes_total{outcome="failed"}`, and retried, and never touches a publish.
//!
//! At start the first write (of what is live: nothing yet) clears rows this origin left
//! behind when it last died; at a clean stop it clears its rows again.

use crate::config::EndpointsSection;
use crate::state::OriginState;
use longhaul_node::NodeTasks;
use longhaul_registry::{LiveStream, PresenceOrigin, Registry};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How many heartbeats a row counts for: one late or lost write does not make a live
/// stream vanish, and a crashed origin's streams stop being named 3 heartbeats after
/// its last write.
pub const HEARTBEATS_PER_TTL: u32 = 3;

/// How long a start or end waits before it is written, so a burst (an edge's tunnel
/// reconnecting brings all its streams back at once) is one write: 50 ms, a small part
/// of what a player takes to retry.
pub const BATCH_DELAY: Duration = Duration::from_millis(50);

/// After a failed write, the next try: 2 s, or the heartbeat if shorter. A start or
/// end that comes meanwhile does not hurry it (the store is likely still away).
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Longest a write may take before it counts as failed: the store's own statement
/// limit is 5 s; the clearing write at a stop gets this too, so a stop never hangs on
/// the database.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where players reach this origin, resolved at start from `[endpoints]` and the bound
/// listeners.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlayUrls {
    /// `rtmp://host:port/kLive`, without a trailing `/`.
    pub rtmp: Option<String>,
    /// `http://host:port/live`, without a trailing `/`.
    pub http_flv: Option<String>,
}

impl PlayUrls {
    /// The configured bases, else bases from the listeners' addresses when those are
    /// specific (a wildcard address says nothing a player could use).
    pub fn resolve(endpoints: &EndpointsSection, rtmp: SocketAddr, http: SocketAddr) -> Self {
        let from = |addr: SocketAddr, scheme: &str, path: &str| {
            (!addr.ip().is_unspecified()).then(|| format!("{scheme}://{addr}/{path}"))
        };
        let trimmed = |s: &String| s.trim_end_matches('/').to_string();
        PlayUrls {
            rtmp: endpoints
                .play_rtmp
                .as_ref()
                .map(trimmed)
                .or_else(|| from(rtmp, "rtmp", longhaul_endpoint::APPLICATION)),
            http_flv: endpoints
                .play_http_flv
                .as_ref()
                .map(trimmed)
                .or_else(|| from(http, "http", "live")),
        }
    }

    /// This origin's row for `stream` (`{entryId}_N`); `None` for a name that is not a
    /// stream name (nothing else is published, but the hub does not promise it).
    pub fn live_stream(&self, stream: &str) -> Option<LiveStream> {
        let (entry_id, _) = longhaul_endpoint::parse_stream_name(stream)?;
        Some(LiveStream {
            stream: stream.to_string(),
            entry_id: entry_id.to_string(),
            rtmp: self.rtmp.as_ref().map(|base| format!("{base}/{stream}")),
            http_flv: self
                .http_flv
                .as_ref()
                .map(|base| format!("{base}/{stream}.flv")),
        })
    }
}

/// When to write next: the task's state, with time passed in.
#[derive(Debug)]
pub struct Schedule {
    heartbeat: Duration,
    /// Something changed since the last successful write.
    dirty: bool,
    /// The last write failed: changes wait for the retry.
    failing: bool,
    next: Instant,
}

impl Schedule {
    /// A schedule whose first write is due at once (it clears rows from before).
    pub fn new(heartbeat: Duration, now: Instant) -> Self {
        Schedule {
            heartbeat,
            dirty: true,
            failing: false,
            next: now,
        }
    }

    /// A stream started or ended.
    pub fn changed(&mut self, now: Instant) {
        self.dirty = true;
        if !self.failing {
            self.next = self.next.min(now + BATCH_DELAY);
        }
    }

    /// When the next write is due.
    pub fn next_write(&self) -> Instant {
        self.next
    }

    /// A write ended, at `now`.
    pub fn written(&mut self, ok: bool, now: Instant) {
        self.failing = !ok;
        if ok {
            self.dirty = false;
            self.next = now + self.heartbeat;
        } else {
            self.next = now + RETRY_AFTER.min(self.heartbeat);
        }
    }

    /// Whether a change is still waiting to be written.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }
}

/// Starts the task, if the origin has a registry. It stops (clearing the origin's
/// rows) when the node stops.
pub fn spawn(tasks: &mut NodeTasks, state: &Arc<OriginState>) {
    let Some(registry) = state.registry.clone() else {
        return;
    };
    let shutdown = tasks.shutdown_token();
    let heartbeat = state
        .config
        .registry
        .as_ref()
        .map_or(Duration::from_secs(10), |r| r.presence_heartbeat());
    tasks.spawn(run(state.clone(), registry, heartbeat, shutdown));
}

async fn run(
    state: Arc<OriginState>,
    registry: Arc<Registry>,
    heartbeat: Duration,
    shutdown: CancellationToken,
) {
    let origin = PresenceOrigin {
        id: state.config.node.id.clone(),
        region: state.config.node.region.clone(),
    };
    let ttl = heartbeat * HEARTBEATS_PER_TTL;
    let mut schedule = Schedule::new(heartbeat, Instant::now());
    let mut outage = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = state.hub.live_changed() => {
                schedule.changed(Instant::now());
                continue;
            }
            _ = tokio::time::sleep_until(schedule.next_write().into()) => {}
        }
        let streams = live_streams(&state);
        let result =
            tokio::time::timeout(WRITE_TIMEOUT, registry.set_presence(&origin, &streams, ttl))
                .await
                .unwrap_or_else(|_| Err(timed_out(&registry)));
        let ok = result.is_ok();
        state
            .metrics
            .presence_writes
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
        match result {
            Ok(()) if outage => {
                outage = false;
                tracing::info!(
                    streams = streams.len(),
                    "writing where streams are live works again"
                );
            }
            Ok(()) => {}
            Err(e) if !outage => {
                outage = true;
                tracing::warn!(error = %e, streams = streams.len(),
                    "cannot write where streams are live; other origins may not name this one to players (retrying)");
            }
            Err(e) => tracing::debug!(error = %e, "writing where streams are live failed again"),
        }
        schedule.written(ok, Instant::now());
    }
    // A clean stop: players asking elsewhere are no longer sent here.
    let cleared =
        tokio::time::timeout(WRITE_TIMEOUT, registry.set_presence(&origin, &[], ttl)).await;
    if !matches!(cleared, Ok(Ok(()))) {
        tracing::info!("could not clear this origin's live streams from the registry at stop; they expire within {ttl:?}");
    }
}

/// The streams live here now, one row per stream name (both legs are one).
fn live_streams(state: &OriginState) -> Vec<LiveStream> {
    let mut names: Vec<String> = state.hub.local_keys().into_iter().map(|k| k.name).collect();
    names.sort();
    names.dedup();
    names
        .iter()
        .filter_map(|name| state.play_urls.live_stream(name))
        .collect()
}

fn timed_out(registry: &Registry) -> longhaul_registry::RegistryError {
    longhaul_registry::RegistryError::Unavailable {
        location: registry.info().location,
        operation: "writing where streams are live",
        reason: format!("no answer within {WRITE_TIMEOUT:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_changes_is_one_write_after_the_batch_delay() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Duration::from_secs(10), t0);
        assert_eq!(
            s.next_write(),
            t0,
            "the first write clears rows from before"
        );
        s.written(true, t0);
        assert_eq!(s.next_write(), t0 + Duration::from_secs(10));
        assert!(!s.is_dirty());
        let t1 = t0 + Duration::from_secs(1);
        s.changed(t1);
        s.changed(t1 + Duration::from_millis(20));
        assert_eq!(
            s.next_write(),
            t1 + BATCH_DELAY,
            "the first change sets the time"
        );
        assert!(s.is_dirty());
        s.written(true, t1 + BATCH_DELAY);
        assert_eq!(s.next_write(), t1 + BATCH_DELAY + Duration::from_secs(10));
    }

    #[test]
    fn a_failed_write_is_retried_without_hurrying_for_changes() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Duration::from_secs(10), t0);
        s.written(false, t0);
        assert_eq!(s.next_write(), t0 + RETRY_AFTER);
        s.changed(t0 + Duration::from_millis(100));
        assert_eq!(
            s.next_write(),
            t0 + RETRY_AFTER,
            "the store is likely still away"
        );
        s.written(true, t0 + RETRY_AFTER);
        s.changed(t0 + RETRY_AFTER);
        assert_eq!(s.next_write(), t0 + RETRY_AFTER + BATCH_DELAY);
        // A heartbeat shorter than the retry pause bounds it.
        let mut fast = Schedule::new(Duration::from_secs(1), t0);
        fast.written(false, t0);
        assert_eq!(fast.next_write(), t0 + Duration::from_secs(1));
    }

    #[test]
    fn play_urls_come_from_the_config_else_from_specific_listen_addresses() {
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let any = |port| SocketAddr::from(([0, 0, 0, 0], port));
        let endpoints = EndpointsSection::default();
        let dev = PlayUrls::resolve(&endpoints, loopback(2935), loopback(8082));
        assert_eq!(dev.rtmp.as_deref(), Some("rtmp://127.0.0.1:2935/kLive"));
        assert_eq!(dev.http_flv.as_deref(), Some("http://127.0.0.1:8082/live"));
        let row = dev.live_stream("1_abcdefgh_2").unwrap();
        assert_eq!(row.entry_id, "1_abcdefgh");
        assert_eq!(
            row.rtmp.as_deref(),
            Some("rtmp://127.0.0.1:2935/kLive/1_abcdefgh_2")
        );
        assert_eq!(
            row.http_flv.as_deref(),
            Some("http://127.0.0.1:8082/live/1_abcdefgh_2.flv")
        );
        assert_eq!(dev.live_stream("not-a-stream"), None);

        let v6 = PlayUrls::resolve(&endpoints, "[::1]:1935".parse().unwrap(), any(8081));
        assert_eq!(v6.rtmp.as_deref(), Some("rtmp://[::1]:1935/kLive"));
        assert_eq!(
            v6.http_flv, None,
            "0.0.0.0 names no host a player could use"
        );

        let configured = EndpointsSection {
            play_rtmp: Some("rtmps://play-nyc.example.com/kLive/".into()),
            play_http_flv: Some("https://play-nyc.example.com/live".into()),
            ..EndpointsSection::default()
        };
        let prod = PlayUrls::resolve(&configured, any(1935), any(8081));
        assert_eq!(
            prod.live_stream("1_abcdefgh_1").unwrap().rtmp.as_deref(),
            Some("rtmps://play-nyc.example.com/kLive/1_abcdefgh_1")
        );
        assert_eq!(
            prod.http_flv.as_deref(),
            Some("https://play-nyc.example.com/live")
        );
    }
}
