//! What the hub tells metrics and the API about its streams and publishers.

use std::fmt;
use std::time::SystemTime;

use longhaul_rtmp::media::Codec;

use crate::key::StreamKey;

/// Who is publishing a stream, as the connection layer describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublisherInfo {
    /// The encoder's address (`ip:port`), as the node it connected to saw it.
    pub addr: String,
    /// The connection layer's id for the publishing connection.
    pub connection_id: u64,
    /// The region the encoder published in: the origin's own, or the edge's.
    pub region: String,
    /// The edge node the stream came through, `None` for a direct publish.
    pub via: Option<String>,
}

impl fmt::Display for PublisherInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection {} from {}", self.connection_id, self.addr)?;
        if let Some(edge) = &self.via {
            write!(f, " via edge {edge}")?;
        }
        Ok(())
    }
}

/// A snapshot of one live stream and its counters. Counters run from when the stream
/// started and carry on across takeovers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    pub key: StreamKey,
    /// The current publisher.
    pub publisher: PublisherInfo,
    /// When the current publisher started (differs from `started_at` after a takeover).
    pub publisher_since: SystemTime,
    /// When the stream started: its first publication.
    pub started_at: SystemTime,
    /// Players attached now.
    pub players: usize,
    pub messages_in: u64,
    /// Payload bytes published.
    pub bytes_in: u64,
    pub keyframes: u64,
    /// Last video codec seen, if any video arrived.
    pub video_codec: Option<Codec>,
    /// Last audio codec seen, if any audio arrived.
    pub audio_codec: Option<Codec>,
    /// Payload bytes of metadata and sequence headers kept now (what every new player
    /// gets before the GOP; at most [`crate::CONFIG_MAX_BYTES`]).
    pub config_bytes: usize,
    /// Messages and payload bytes in the GOP cache now.
    pub gop_cache_messages: usize,
    pub gop_cache_bytes: usize,
    /// GOPs that outgrew the GOP cache (new players waited for the next keyframe).
    pub gop_overflows: u64,
    /// Metadata or sequence headers refused (neither stored nor forwarded) for
    /// exceeding the configuration bounds: [`crate::CONFIG_MAX_SLOTS_PER_KIND`] slots
    /// per kind, [`crate::CONFIG_MESSAGE_MAX_BYTES`] per message,
    /// [`crate::CONFIG_MAX_BYTES`] in all. The first one is logged at warn.
    pub config_refused: u64,
    /// Times a slow player was skipped forward to a keyframe.
    pub player_skips: u64,
    /// Players dropped for being skipped too often.
    pub players_dropped: u64,
    /// Times a new publisher took the stream over.
    pub takeovers: u64,
    /// Times the publication went on from a new tunnel stream after its stream failed
    /// (the edge resumed it: the encoder saw nothing).
    pub resumes: u64,
    /// Added (wrapping, in ms) to every timestamp of the current publisher so that it
    /// continues the stream's timeline after a takeover; 0 on a stream that never saw
    /// one, whose timestamps are exactly the encoder's.
    pub timestamp_offset: u32,
}
