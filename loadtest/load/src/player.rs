//! One player at the origin, per stream: attach (retrying while the stream is not live
//! yet), then read until the stream's frames are all in, the drain after its last frame
//! is over, the connection ends, or the run's hard limit; every stamped frame of its own
//! stream goes into a [`Meter`] with its arrival time.

use crate::measure::Meter;
use crate::progress::Live;
use crate::stamp::Stamp;
use longhaul_rtmp::connection::{ClientError, Player, RtmpUrl};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// A play of a stream that is not live yet is retried this often: the origin refuses it
/// at once, and a stream goes live within a round trip of its publish (tunnelled: the
/// edge's grant, then the tunnel stream).
pub const ATTACH_RETRY: Duration = Duration::from_millis(50);
/// The status an origin refuses a play of a stream that is not live with
/// (`crates/origin/src/ingest.rs`).
const NOT_LIVE: &str = "NetStream.Play.StreamNotFound";

/// One attempt to attach at one origin gives up after this: an origin that is frozen
/// (SIGSTOP) still completes TCP handshakes from its listen backlog but never answers,
/// and the other origins must get their turn. An origin that answers does so within a
/// few round trips: 1 s is over 10 of the 80 ms paths the failover tests run on.
pub const ATTACH_ATTEMPT_LIMIT: Duration = Duration::from_secs(1);

/// A followed stream (several play URLs) that stays silent this long while its
/// publisher is still sending is looked for elsewhere: the origin stopped getting it
/// (its link to the edge cut, or frozen) and the edge moved it. At 25 fps with audio a
/// frame comes every 40 ms or less, so 1.5 s without one is not jitter; it is also well
/// within a group of pictures of the load's streams in the failover tests (5 s), so the
/// player finds the moved stream's cached group still starting before what it missed.
pub const FOLLOW_SILENCE: Duration = Duration::from_millis(1500);

/// A playing player.
pub type Viewer = Player<TcpStream>;

/// Now, unix microseconds (0 if the clock is before 1970).
pub fn unix_us(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros().try_into().unwrap_or(u64::MAX))
}

/// Plays `url` until `NetStream.Play.Start`, retrying every [`ATTACH_RETRY`] while the
/// origin says the stream is not live, until `deadline`.
pub async fn attach(url: &str, deadline: Instant) -> Result<Viewer, String> {
    attach_any(&[url.to_string()], deadline).await
}

/// [`attach`] to whichever of `urls` has the stream live, asking each in turn (one that
/// cannot be reached, an origin restarting, is passed over).
pub async fn attach_any(urls: &[String], deadline: Instant) -> Result<Viewer, String> {
    attach_from(urls, 0, deadline)
        .await
        .map(|(viewer, _)| viewer)
}

/// [`attach_any`], asking `urls[first]` first; the viewer and the index of its URL.
pub async fn attach_from(
    urls: &[String],
    first: usize,
    deadline: Instant,
) -> Result<(Viewer, usize), String> {
    let urls = urls
        .iter()
        .map(|u| RtmpUrl::parse(u).map_err(|e| format!("play URL: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let mut last = String::from("no attempt");
    let turns = (0..urls.len()).cycle().skip(first % urls.len().max(1));
    for (index, url) in turns.map(|i| (i, &urls[i])) {
        let attempt = async {
            let io = TcpStream::connect(url.address())
                .await
                .map_err(|e| (false, format!("connecting to {}: {e}", url.address())))?;
            let _ = io.set_nodelay(true);
            Player::start(io, url.client_config(), &url.name)
                .await
                .map_err(|e| match e {
                    ClientError::Rejected { code, description } => (
                        code == NOT_LIVE,
                        format!("play refused: {code}: {description}"),
                    ),
                    other => (false, format!("playing at {}: {other}", url.address())),
                })
        };
        let limit = if urls.len() > 1 {
            deadline.min(Instant::now() + ATTACH_ATTEMPT_LIMIT)
        } else {
            deadline
        };
        match tokio::time::timeout_at(limit.into(), attempt).await {
            Ok(Ok(p)) => return Ok((p, index)),
            Ok(Err((true, e))) => last = e,
            // With several origins, one may be restarting: ask the others.
            Ok(Err((false, e))) if urls.len() > 1 => last = e,
            Ok(Err((false, e))) => return Err(e),
            Err(_) if limit < deadline => {
                last = format!(
                    "{} did not answer within {ATTACH_ATTEMPT_LIMIT:?}",
                    url.address()
                )
            }
            Err(_) => break,
        }
        if Instant::now() + ATTACH_RETRY >= deadline {
            break;
        }
        // A round of all the URLs done: wait before the next.
        if (index + 1) % urls.len() == first % urls.len() {
            tokio::time::sleep(ATTACH_RETRY).await;
        }
    }
    Err(format!(
        "the player could not attach within {:.1} s: {last}",
        deadline.saturating_duration_since(started).as_secs_f64()
    ))
}

/// Told to the player once its publisher is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    /// Frames sent: with all of them in, the player stops.
    pub frames: u64,
    /// When the last frame left + the drain: the player stops then at the latest.
    pub until: Instant,
}

/// Reads stamped frames of stream `stream` into `meter` (see the module docs). Returns
/// the meter and the error that ended the reading early, if any. With `follow` (the
/// stream's play URLs, when it may move between origins; `player` plays `follow[at]`), a
/// stream that ends, or stays silent for [`FOLLOW_SILENCE`], while its publisher is still
/// sending is played again from whichever origin has it, the others asked first: frames
/// seen twice count as duplicates, frames never seen as lost.
#[allow(clippy::too_many_arguments)]
pub async fn play(
    mut player: Viewer,
    stream: u32,
    mut meter: Meter,
    mut done: watch::Receiver<Option<Done>>,
    hard_limit: Instant,
    live: Arc<Live>,
    follow: Vec<String>,
    mut at: usize,
) -> (Meter, Option<String>) {
    let mut told = false;
    let following = follow.len() > 1;
    let error = loop {
        let known = *done.borrow();
        let mut deadline = known.map_or(hard_limit, |d| d.until.min(hard_limit));
        if known.is_some_and(|d| meter.received() >= d.frames) {
            break None;
        }
        let silent_at = Instant::now() + FOLLOW_SILENCE;
        let watching_silence = following && known.is_none() && silent_at < deadline;
        if watching_silence {
            deadline = silent_at;
        }
        let message = tokio::select! {
            changed = done.changed(), if !told => {
                told = true;
                if changed.is_err() {
                    // The publisher's task ended without a word: keep reading to the limit.
                    tracing::debug!(stream, "publisher gone without a summary");
                }
                continue;
            }
            r = tokio::time::timeout_at(deadline.into(), player.recv()) => r,
        };
        let ended =
            matches!(message, Ok(Ok(None)) | Ok(Err(_))) || (watching_silence && message.is_err());
        if ended && following && done.borrow().is_none() {
            // Moved (failover, drain): find it again, within the same limits.
            let _ = tokio::time::timeout(Duration::from_secs(1), player.finish()).await;
            match attach_from(&follow, at + 1, hard_limit).await {
                Ok((p, index)) => {
                    player = p;
                    at = index;
                    continue;
                }
                Err(e) => return (meter, Some(format!("player lost the moved stream: {e}"))),
            }
        }
        match message {
            Err(_) => break None,
            Ok(Ok(None)) => break None,
            Ok(Err(e)) => break Some(format!("player: {e}")),
            Ok(Ok(Some(m))) => {
                let Some(stamp) = Stamp::read(m.type_id, &m.payload) else {
                    continue;
                };
                if stamp.stream != stream {
                    continue;
                }
                let video = m.type_id == longhaul_rtmp::message::type_id::VIDEO;
                meter.arrival(stamp, video, m.payload.len(), unix_us(SystemTime::now()));
                live.delivered_bytes
                    .fetch_add(m.payload.len() as u64, Ordering::Relaxed);
            }
        }
    };
    // Leave quietly; a failure to say goodbye changes no figure.
    let _ = tokio::time::timeout(Duration::from_secs(1), player.finish()).await;
    (meter, error)
}
