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
    let urls = urls
        .iter()
        .map(|u| RtmpUrl::parse(u).map_err(|e| format!("play URL: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let mut last = String::from("no attempt");
    for url in urls.iter().cycle() {
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
        match tokio::time::timeout_at(deadline.into(), attempt).await {
            Ok(Ok(p)) => return Ok(p),
            Ok(Err((true, e))) => last = e,
            // With several origins, one may be restarting: ask the others.
            Ok(Err((false, e))) if urls.len() > 1 => last = e,
            Ok(Err((false, e))) => return Err(e),
            Err(_) => break,
        }
        if Instant::now() + ATTACH_RETRY >= deadline {
            break;
        }
        if std::ptr::eq(url, urls.last().unwrap_or(url)) {
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
/// stream's play URLs, when it may move between origins), a stream that ends while its
/// publisher is still sending is played again from whichever origin has it: frames seen
/// twice count as duplicates, frames never seen as lost.
pub async fn play(
    mut player: Viewer,
    stream: u32,
    mut meter: Meter,
    mut done: watch::Receiver<Option<Done>>,
    hard_limit: Instant,
    live: Arc<Live>,
    follow: Vec<String>,
) -> (Meter, Option<String>) {
    let mut told = false;
    let error = loop {
        let known = *done.borrow();
        let deadline = known.map_or(hard_limit, |d| d.until.min(hard_limit));
        if known.is_some_and(|d| meter.received() >= d.frames) {
            break None;
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
        let ended = matches!(message, Ok(Ok(None)) | Ok(Err(_)));
        if ended && follow.len() > 1 && done.borrow().is_none() {
            // Moved (failover, drain): find it again, within the same limits.
            let _ = tokio::time::timeout(Duration::from_secs(1), player.finish()).await;
            match attach_any(&follow, hard_limit).await {
                Ok(p) => {
                    player = p;
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
