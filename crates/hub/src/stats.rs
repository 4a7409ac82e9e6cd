//! What the hub tells metrics and the API about its streams and publishers.

use std::fmt;
use std::time::SystemTime;

use longhaul_rtmp::media::Codec;

use crate::health::HealthFigures;
use crate::key::{Leg, StreamKey};
use crate::on_air::{Switch, SwitchReason};

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
    /// The peer origin this leg is pulled from (origin peering): a *replica* of a
    /// publish made there. A replica never takes over a publish made here
    /// ([`crate::Hub::publish_replica`]), and is not served to peers in turn
    /// ([`crate::Hub::subscribe_local`]). `None` for a publish made here.
    pub replica_of: Option<String>,
}

impl fmt::Display for PublisherInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection {} from {}", self.connection_id, self.addr)?;
        if let Some(edge) = &self.via {
            write!(f, " via edge {edge}")?;
        }
        if let Some(origin) = &self.replica_of {
            write!(f, " pulled from origin {origin}")?;
        }
        Ok(())
    }
}

/// A snapshot of one live stream and its counters. Counters run from when the stream
/// started and carry on across takeovers.
#[derive(Debug, Clone, PartialEq)]
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
    /// How the leg is doing now: rates, keyframe interval, declared figures, drift.
    pub health: HealthFigures,
}

/// A snapshot of one rendition's on-air stream: the stream of `name` that players get
/// by default, fed from whichever leg is on air.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionSummary {
    pub name: String,
    /// When its first leg started.
    pub started_at: SystemTime,
    /// The leg on air; `None` until the first leg reaches a keyframe.
    pub on_air: Option<Leg>,
    /// Which legs are live.
    pub primary_live: bool,
    pub backup_live: bool,
    /// Players of the on-air stream (not counting players of one leg by name).
    pub players: usize,
    /// Switches by the leg that went on air and why (the first leg on air is `started`).
    pub switches: Vec<SwitchCount>,
    /// The last switch and when.
    pub last_switch: Option<(Switch, SystemTime)>,
    /// Seconds the backup has been on air, all told.
    pub backup_on_air_seconds: f64,
}

/// A switch of a rendition from one leg to the other, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentSwitch {
    pub name: String,
    pub switch: Switch,
    pub at: SystemTime,
}

/// Switches of a rendition to `to` for `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchCount {
    pub to: Leg,
    pub reason: SwitchReason,
    pub count: u64,
}

impl RenditionSummary {
    /// Whether it plays from the backup with no primary at all ("backup only").
    pub fn backup_only(&self) -> bool {
        self.on_air == Some(Leg::Backup) && !self.primary_live
    }
}

/// On-air figures over every rendition a hub has had ([`crate::Hub::on_air_totals`]).
#[derive(Debug, Clone, PartialEq)]
pub struct OnAirTotals {
    /// Every (leg, reason) pair, zeros included.
    pub switches: Vec<SwitchCount>,
    /// Seconds a backup was on air, all renditions together.
    pub backup_on_air_seconds: f64,
}
