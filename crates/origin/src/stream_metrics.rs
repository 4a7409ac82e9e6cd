//! Per-stream health as Prometheus series, read from the hub at scrape time: what an
//! operator needs to see that one entry's encoder sends 1.2 Mbit/s instead of the 4 it
//! declared, a 6 s GOP, or a rendition running on its backup leg only. Series exist
//! while the stream does: nothing is kept between scrapes, so an ended stream's
//! series are gone at the next one.
//!
//! Labels: `entry` and `rendition` (from the stream name `{entryId}_{n}`), `leg`
//! (`primary`, `backup`), and on `longhaul_stream_info` only, `encoder_region`, `edge`
//! (empty for a direct publish), `video_codec`, `audio_codec`. Cardinality is bounded
//! by the legs published here: at most `longhaul_node::metrics::STREAM_SERIES_LIMIT`
//! (2,000) legs get series (the
//! first by name), the rest are counted in `longhaul_stream_series_omitted`. Legs
//! pulled from a peer origin get none here: their health is reported where they are
//! published, so an alert fires once.
//!
//! | series | labels | what |
//! |---|---|---|
//! | `stream_info` | + region, edge, codecs | 1 per live leg |
//! | `stream_bitrate_bits_per_second` | entry, rendition, leg | payload bits/s over the last 5 s |
//! | `stream_declared_bitrate_bits_per_second` | entry, rendition, leg | `videodatarate` + `audiodatarate` of its onMetaData (absent if neither) |
//! | `stream_frames_per_second` | entry, rendition, leg | video frames/s over the last 5 s |
//! | `stream_declared_frames_per_second` | entry, rendition, leg | onMetaData `framerate` (absent if not declared) |
//! | `stream_keyframe_interval_seconds` | entry, rendition, leg | media time between keyframes (absent before two) |
//! | `stream_track_present` | + `track` (video, audio) | 1 if a frame of it arrived in the last 5 s |
//! | `stream_timestamp_drift_seconds` | entry, rendition, leg | media time minus wall time since its clock was first seen |
//! | `stream_last_media_age_seconds` | entry, rendition, leg | since the last audio or video frame |
//! | `stream_players` | entry, rendition, leg | players of this leg by name (`{name}.p`) |
//! | `stream_received_bytes_total` | entry, rendition, leg | payload bytes since the stream started |
//! | `stream_reconnects_total` | entry, rendition, leg | encoder reconnects and tunnel resumes |
//! | `stream_start_time_seconds` | entry, rendition, leg | Unix time the stream started |
//! | `rendition_players` | entry, rendition | players of the on-air stream (`{name}`) |
//! | `rendition_on_air` | entry, rendition, leg | 1 for the leg on air, 0 for the other |
//! | `rendition_backup_only` | entry, rendition | 1 while it plays from the backup with no primary |
//! | `stream_series_omitted` | | legs beyond the limit, left out |

use longhaul_endpoint::stream_parts;
use longhaul_hub::{Hub, Leg, RenditionSummary, StreamSummary};
use longhaul_node::metrics::STREAM_SERIES_LIMIT;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounterVec, IntGauge, IntGaugeVec, Opts};

const LEG: &[&str] = &["entry", "rendition", "leg"];
const RENDITION: &[&str] = &["entry", "rendition"];

/// The series families, built afresh at every scrape.
struct Families {
    info: IntGaugeVec,
    bitrate: GaugeVec,
    declared_bitrate: GaugeVec,
    fps: GaugeVec,
    declared_fps: GaugeVec,
    keyframe_interval: GaugeVec,
    track_present: IntGaugeVec,
    drift: GaugeVec,
    last_media_age: GaugeVec,
    players: IntGaugeVec,
    received: IntCounterVec,
    reconnects: IntCounterVec,
    start_time: GaugeVec,
    rendition_players: IntGaugeVec,
    on_air: IntGaugeVec,
    backup_only: IntGaugeVec,
    omitted: IntGauge,
}

impl Families {
    fn new() -> Families {
        // Constant names and labels: building them cannot fail.
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            GaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        Families {
            info: int_gauge(
                "stream_info",
                "1 per live leg published here, with where it comes from and its codecs",
                &[
                    "entry",
                    "rendition",
                    "leg",
                    "encoder_region",
                    "edge",
                    "video_codec",
                    "audio_codec",
                ],
            ),
            bitrate: gauge(
                "stream_bitrate_bits_per_second",
                "Payload bits per second arriving on the leg, over the last 5 s",
                LEG,
            ),
            declared_bitrate: gauge(
                "stream_declared_bitrate_bits_per_second",
                "Bitrate the encoder declares in onMetaData (videodatarate + audiodatarate)",
                LEG,
            ),
            fps: gauge(
                "stream_frames_per_second",
                "Video frames per second arriving on the leg, over the last 5 s",
                LEG,
            ),
            declared_fps: gauge(
                "stream_declared_frames_per_second",
                "Frame rate the encoder declares in onMetaData",
                LEG,
            ),
            keyframe_interval: gauge(
                "stream_keyframe_interval_seconds",
                "Media time between the leg's last two keyframes, or since the last one if longer",
                LEG,
            ),
            track_present: int_gauge(
                "stream_track_present",
                "1 if a frame of the track (video, audio) arrived in the last 5 s",
                &["entry", "rendition", "leg", "track"],
            ),
            drift: gauge(
                "stream_timestamp_drift_seconds",
                "Media time minus wall time since the encoder's clock was first seen (negative: slower than real time)",
                LEG,
            ),
            last_media_age: gauge(
                "stream_last_media_age_seconds",
                "Seconds since the leg's last audio or video frame",
                LEG,
            ),
            players: int_gauge(
                "stream_players",
                "Players of this leg by its explicit name ({name}.p, {name}.b)",
                LEG,
            ),
            received: counter(
                "stream_received_bytes_total",
                "Payload bytes the leg published since the stream started",
                LEG,
            ),
            reconnects: counter(
                "stream_reconnects_total",
                "Times the leg's encoder reconnected (a takeover) or its tunnel stream was resumed",
                LEG,
            ),
            start_time: gauge(
                "stream_start_time_seconds",
                "Unix time the leg's stream started",
                LEG,
            ),
            rendition_players: int_gauge(
                "rendition_players",
                "Players of the rendition's on-air stream ({entryId}_{n})",
                RENDITION,
            ),
            on_air: int_gauge(
                "rendition_on_air",
                "1 for the leg on air for the rendition's players, 0 for the other",
                LEG,
            ),
            backup_only: int_gauge(
                "rendition_backup_only",
                "1 while the rendition plays from its backup leg with no primary leg live",
                RENDITION,
            ),
            omitted: IntGauge::with_opts(Opts::new(
                "stream_series_omitted",
                "Live legs left out of the per-stream series for the limit (2,000 legs)",
            ))
            .expect("valid metric"),
        }
    }

    fn collectors(&self) -> [&dyn Collector; 17] {
        [
            &self.info,
            &self.bitrate,
            &self.declared_bitrate,
            &self.fps,
            &self.declared_fps,
            &self.keyframe_interval,
            &self.track_present,
            &self.drift,
            &self.last_media_age,
            &self.players,
            &self.received,
            &self.reconnects,
            &self.start_time,
            &self.rendition_players,
            &self.on_air,
            &self.backup_only,
            &self.omitted,
        ]
    }

    fn leg(&self, s: &StreamSummary, entry: &str, rendition: &str) {
        let leg = s.key.leg.as_str();
        let labels = [entry, rendition, leg];
        let codec = |c: Option<longhaul_rtmp::media::Codec>| c.map(codec_label).unwrap_or_default();
        self.info
            .with_label_values(&[
                entry,
                rendition,
                leg,
                &s.publisher.region,
                s.publisher.via.as_deref().unwrap_or(""),
                &codec(s.video_codec),
                &codec(s.audio_codec),
            ])
            .set(1);
        let h = &s.health;
        self.bitrate.with_label_values(&labels).set(h.bitrate_bps);
        if let Some(declared) = h.declared.bitrate_bps() {
            self.declared_bitrate
                .with_label_values(&labels)
                .set(declared);
        }
        self.fps.with_label_values(&labels).set(h.frame_rate);
        if let Some(declared) = h.declared.frame_rate {
            self.declared_fps.with_label_values(&labels).set(declared);
        }
        if let Some(interval) = h.keyframe_interval {
            self.keyframe_interval
                .with_label_values(&labels)
                .set(interval.as_secs_f64());
        }
        for (track, present) in [("video", h.video_present), ("audio", h.audio_present)] {
            self.track_present
                .with_label_values(&[entry, rendition, leg, track])
                .set(i64::from(present));
        }
        self.drift
            .with_label_values(&labels)
            .set(h.timestamp_drift_seconds);
        if let Some(age) = h.since_last_media {
            self.last_media_age
                .with_label_values(&labels)
                .set(age.as_secs_f64());
        }
        self.players
            .with_label_values(&labels)
            .set(s.players as i64);
        self.received.with_label_values(&labels).inc_by(s.bytes_in);
        self.reconnects
            .with_label_values(&labels)
            .inc_by(s.takeovers + s.resumes);
        self.start_time.with_label_values(&labels).set(
            s.started_at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
    }

    fn rendition(&self, r: &RenditionSummary, entry: &str, rendition: &str) {
        self.rendition_players
            .with_label_values(&[entry, rendition])
            .set(r.players as i64);
        for leg in Leg::ALL {
            self.on_air
                .with_label_values(&[entry, rendition, leg.as_str()])
                .set(i64::from(r.on_air == Some(leg)));
        }
        self.backup_only
            .with_label_values(&[entry, rendition])
            .set(i64::from(r.backup_only()));
    }
}

/// The codec as the metrics and the streams API name it: its FourCC (`avc1`, `hvc1`,
/// `av01`, `Opus`; legacy H.264 and AAC as `avc1` and `mp4a`), or `flv:N` for another
/// legacy FLV codec id.
pub(crate) fn codec_label(codec: longhaul_rtmp::media::Codec) -> String {
    match codec {
        longhaul_rtmp::media::Codec::FourCc(f) => String::from_utf8_lossy(&f).into_owned(),
        longhaul_rtmp::media::Codec::Legacy(7) => "avc1".into(),
        longhaul_rtmp::media::Codec::Legacy(10) => "mp4a".into(),
        longhaul_rtmp::media::Codec::Legacy(id) => format!("flv:{id}"),
    }
}

/// The per-stream series of one hub (see the module's table).
pub struct StreamCollector {
    hub: Hub,
    templates: Families,
}

impl StreamCollector {
    pub fn new(hub: Hub) -> StreamCollector {
        StreamCollector {
            hub,
            templates: Families::new(),
        }
    }
}

impl Collector for StreamCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.templates
            .collectors()
            .into_iter()
            .flat_map(|c| c.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let f = Families::new();
        let mut legs: Vec<StreamSummary> = self
            .hub
            .streams()
            .into_iter()
            .filter(|s| s.publisher.replica_of.is_none())
            .collect();
        legs.sort_by(|a, b| a.key.cmp(&b.key));
        let omitted = legs.len().saturating_sub(STREAM_SERIES_LIMIT);
        legs.truncate(STREAM_SERIES_LIMIT);
        f.omitted.set(omitted as i64);
        let mut names = std::collections::BTreeSet::new();
        for s in &legs {
            let (entry, rendition) = stream_parts(&s.key.name);
            f.leg(s, &entry, &rendition);
            names.insert(s.key.name.clone());
        }
        // Renditions with a leg that has series here, and those played here from a
        // peer's legs (their players are this origin's).
        for r in self.hub.renditions() {
            if names.contains(&r.name) || r.players > 0 {
                let (entry, rendition) = stream_parts(&r.name);
                f.rendition(&r, &entry, &rendition);
            }
        }
        f.collectors()
            .into_iter()
            .flat_map(|c| c.collect())
            .collect()
    }
}
