//! Where streams are live: each origin's record, in the shared store, of the streams
//! live on it, so a play at an origin where a stream is not live can name the origin
//! where it is.
//!
//! ```text
//!  origin nyc ──set_presence(nyc, [1_abc_1, ...], ttl)──▶ store ◀──presence_of(1_abc_1)── origin pao
//!             (on every publish start/end, and a heartbeat)       (on a play miss)
//! ```
//!
//! - **Keyed by (stream, origin).** The primary and backup legs of a stream have the
//!   same name (`{entryId}_N`) at two origins; each origin has one row per stream live
//!   on it, whichever legs.
//! - **An origin writes its whole set.** [`EntryStore::set_presence`] replaces every
//!   row of the origin by the streams it names (one transaction), so a write lost or
//!   failed is repaired by the next one, and an empty set clears the origin (at start,
//!   its rows from before a crash; at a clean stop, its rows now).
//! - **Rows expire.** Each write gives its rows a lifetime (`ttl`, a few of the origin's
//!   heartbeats); readers ignore rows past it, so the streams of an origin that crashed
//!   stop being named within that time. Rows long expired are deleted by whichever
//!   origin writes next ([`FORGET_AFTER`]).
//! - **One clock.** Times are the store's: PostgreSQL's `now()` (origins on different
//!   hosts need not agree on the time), the host's clock for SQLite (one host).
//! - **Not on the publish path**, and not in the entries' change feed: presence writes
//!   do not make other origins re-read the entries (SQLite keeps them in a file of their
//!   own, [`crate::sqlite::presence_path`]; PostgreSQL's table has no trigger).
//!
//! [`EntryStore::set_presence`]: crate::EntryStore::set_presence

use std::time::Duration;

use serde::Serialize;

/// A stream live on the origin that writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveStream {
    /// `{entryId}_N`.
    pub stream: String,
    pub entry_id: String,
    /// Where a player plays it at this origin over RTMP, if the origin knows its public
    /// address (`rtmp://host:port/kLive/{stream}`).
    pub rtmp: Option<String>,
    /// ... and over HTTP-FLV (`http://host:port/live/{stream}.flv`).
    pub http_flv: Option<String>,
}

/// The origin that writes: its node id and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceOrigin {
    pub id: String,
    pub region: String,
}

/// One stream live at one origin, as read from the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveAt {
    pub stream: String,
    pub entry_id: String,
    /// The origin's node id.
    pub origin: String,
    pub region: String,
    pub rtmp: Option<String>,
    pub http_flv: Option<String>,
    /// The origin's last write of it, Unix milliseconds by the store's clock.
    pub updated_at: i64,
    /// Past this (Unix milliseconds, the store's clock) the row no longer counts.
    pub expires_at: i64,
}

/// Rows expired for this long are deleted by the next write of any origin: an origin
/// that never comes back leaves nothing behind for good. An hour keeps a row of an
/// origin cut off from the database for a while around for its own next write to
/// replace, and costs nothing: a row per stream that was live.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// The longest lifetime a write may give its rows (a day): a bad setting cannot keep a
/// crashed origin's streams named for longer.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Streams one write may carry: far above what an origin serves (a few thousand
/// streams), so a bug cannot send the store an unbounded statement.
pub const MAX_STREAMS: usize = 100_000;

/// Milliseconds in `d`, saturating (the stores keep times as `i64` milliseconds).
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `streams` with one row per stream name (the first wins), at most [`MAX_STREAMS`].
pub(crate) fn distinct(streams: &[LiveStream]) -> Vec<&LiveStream> {
    let mut seen = std::collections::HashSet::new();
    streams
        .iter()
        .filter(|s| seen.insert(s.stream.as_str()))
        .take(MAX_STREAMS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(stream: &str) -> LiveStream {
        LiveStream {
            stream: stream.into(),
            entry_id: "1_abcdefgh".into(),
            rtmp: None,
            http_flv: None,
        }
    }

    #[test]
    fn a_stream_named_twice_is_one_row() {
        let rows = [
            live("1_abcdefgh_1"),
            live("1_abcdefgh_2"),
            live("1_abcdefgh_1"),
        ];
        let names: Vec<_> = distinct(&rows).iter().map(|s| s.stream.clone()).collect();
        assert_eq!(names, ["1_abcdefgh_1", "1_abcdefgh_2"]);
    }

    #[test]
    fn durations_saturate() {
        assert_eq!(millis(Duration::from_secs(2)), 2000);
        assert_eq!(millis(Duration::MAX), i64::MAX);
    }
}
