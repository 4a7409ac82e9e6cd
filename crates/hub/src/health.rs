//! How one published leg is doing, from what it sends: its recent bitrate and frame
//! rate, keyframe interval, what its metadata declares, whether audio and video are
//! arriving, how far its timestamps drift from the wall clock, and how long since its
//! last media. These are what an ingest operator watches (REFERENCE.md section 7:
//! declared vs actual bitrate, a dropped track, PTS drift, keyframe interval, frame
//! rate) and what the per-stream metrics and the streams API report.
//!
//! Plain code with time passed in: the hub feeds it every message it forwards and asks
//! for [`HealthFigures`] when a scrape or the API wants them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use longhaul_rtmp::media::{declared_figures, DeclaredFigures};
use longhaul_rtmp::message::type_id;
use longhaul_rtmp::RtmpMessage;

use crate::state::Ingested;

/// The span the bitrate and frame rate are averaged over, in whole seconds. Five
/// seconds hold two and a half GOPs at the 2 s keyframe interval ingest guides ask for,
/// so one keyframe more or less in the window moves the figure by a fraction of a GOP's
/// share, while a drop in bitrate still shows within one scrape interval (Prometheus's
/// default is 15 s, ours 5 s in `deploy/prometheus`).
pub const RATE_WINDOW_SECONDS: u64 = 5;

/// A track is *present* while a frame of it arrived within this long: the rate window,
/// so a track that stopped shows as gone at the same time as its bitrate does.
pub const TRACK_PRESENT_WITHIN: Duration = Duration::from_secs(RATE_WINDOW_SECONDS);

/// A forward jump in the timestamps larger than this is a discontinuity (an encoder
/// that restarted its clock under the same connection), not drift: the drift is
/// measured afresh from there. Drift itself grows by milliseconds per minute; no
/// encoder's clock runs a minute apart from the wall between two frames.
pub const TIMESTAMP_JUMP_MS: i64 = 60_000;

/// Figures of one leg, as of `now`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HealthFigures {
    /// Payload bits per second over the last [`RATE_WINDOW_SECONDS`] whole seconds (or
    /// the whole seconds the leg has been live, if fewer); 0 in its first second.
    pub bitrate_bps: f64,
    /// Video frames per second, over the same span.
    pub frame_rate: f64,
    /// Media time between the last two keyframes, or since the last one if that is
    /// longer already (a GOP that has not ended yet); `None` before two keyframes.
    pub keyframe_interval: Option<Duration>,
    /// What the encoder's `onMetaData` declares.
    pub declared: DeclaredFigures,
    /// A video or audio frame arrived within [`TRACK_PRESENT_WITHIN`].
    pub video_present: bool,
    pub audio_present: bool,
    /// Media time minus wall time elapsed since the leg's clock was anchored (its first
    /// media, a new publisher, or a timestamp jump), as of the last media: negative
    /// when the encoder sends slower than real time (Kaltura's "incoming rate too
    /// slow"), positive when faster. Network jitter shows in it by tens of ms.
    pub timestamp_drift_seconds: f64,
    /// Wall time since the last audio or video frame; `None` before any.
    pub since_last_media: Option<Duration>,
}

/// Bytes and video frames that arrived in one whole second of the leg's life.
#[derive(Debug, Clone, Copy)]
struct Second {
    index: u64,
    bytes: u64,
    video_frames: u64,
}

/// Where the leg's clock was anchored for drift: the wall instant and the media time
/// (ms, unwrapped) of one message.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    wall: Instant,
    media_ms: i64,
}

/// The running record of one leg.
#[derive(Debug)]
pub(crate) struct Health {
    /// Second 0 of the rate window's buckets.
    epoch: Instant,
    /// The last [`RATE_WINDOW_SECONDS`] + 1 seconds with anything in them, oldest first.
    seconds: VecDeque<Second>,
    /// The highest timestamp seen, unwrapped (RTMP timestamps are 32-bit ms and wrap).
    media_ms: Option<(u32, i64)>,
    anchor: Option<Anchor>,
    /// Wall instant of the last audio or video frame (a new publisher's clock keeps it:
    /// silence is silence, whoever publishes next).
    last_media_at: Option<Instant>,
    /// Unwrapped media time of the last audio or video frame, on the current clock.
    last_media_ms: Option<(Instant, i64)>,
    last_video: Option<Instant>,
    last_audio: Option<Instant>,
    /// Unwrapped media time of the last keyframe, and the interval before it.
    last_keyframe_ms: Option<i64>,
    keyframe_interval_ms: Option<i64>,
    declared: DeclaredFigures,
}

impl Health {
    pub fn new(now: Instant) -> Health {
        Health {
            epoch: now,
            seconds: VecDeque::with_capacity(RATE_WINDOW_SECONDS as usize + 1),
            media_ms: None,
            anchor: None,
            last_media_at: None,
            last_media_ms: None,
            last_video: None,
            last_audio: None,
            last_keyframe_ms: None,
            keyframe_interval_ms: None,
            declared: DeclaredFigures::default(),
        }
    }

    /// A new publisher's clock (a takeover, a replica replaced): drift is measured
    /// afresh, keyframe intervals too. Rates and declared figures carry on until the
    /// new publisher sends its own.
    pub fn new_clock(&mut self) {
        self.media_ms = None;
        self.anchor = None;
        self.last_keyframe_ms = None;
        self.keyframe_interval_ms = None;
        self.last_media_ms = None;
    }

    /// Takes in one message the leg forwarded, at `now`.
    pub fn record(&mut self, ingested: &Ingested, now: Instant) {
        let message = &ingested.message;
        let kind = message.type_id;
        let video_frame = kind == type_id::VIDEO && !ingested.is_config;
        self.count(now, message.payload.len() as u64, video_frame);
        if ingested.is_config {
            if kind == type_id::DATA_AMF0 {
                self.declared = declared_figures(&message.payload);
            }
            return;
        }
        if kind != type_id::VIDEO && kind != type_id::AUDIO {
            return;
        }
        let media_ms = self.unwrap(message);
        if kind == type_id::VIDEO {
            self.last_video = Some(now);
            if ingested.resume_point {
                if let Some(previous) = self.last_keyframe_ms {
                    if media_ms > previous {
                        self.keyframe_interval_ms = Some(media_ms - previous);
                    }
                }
                self.last_keyframe_ms = Some(media_ms);
            }
        } else {
            self.last_audio = Some(now);
        }
        // Audio and video interleave a few ms out of order: the anchor is the first
        // frame's, and the figure is taken at the highest timestamp.
        self.anchor.get_or_insert(Anchor {
            wall: now,
            media_ms,
        });
        let highest = self.media_ms.map_or(media_ms, |(_, h)| h);
        self.last_media_at = Some(now);
        self.last_media_ms = Some((now, highest));
    }

    /// The message's timestamp on an unwrapped, monotonic-ish scale: steps from the
    /// highest timestamp seen. A jump of over [`TIMESTAMP_JUMP_MS`] either way
    /// re-anchors the drift there.
    fn unwrap(&mut self, message: &RtmpMessage) -> i64 {
        let ts = message.timestamp;
        let Some((raw, highest)) = self.media_ms else {
            self.media_ms = Some((ts, 0));
            return 0;
        };
        let step = i64::from(ts.wrapping_sub(raw) as i32);
        if step.abs() > TIMESTAMP_JUMP_MS {
            // A discontinuity: carry on from the highest point, measured afresh.
            self.media_ms = Some((ts, highest));
            self.anchor = None;
            self.last_keyframe_ms = None;
            return highest;
        }
        let here = highest + step;
        if step > 0 {
            self.media_ms = Some((ts, here));
        }
        here
    }

    fn count(&mut self, now: Instant, bytes: u64, video_frame: bool) {
        let index = now.saturating_duration_since(self.epoch).as_secs();
        match self.seconds.back_mut() {
            Some(second) if second.index == index => {
                second.bytes += bytes;
                second.video_frames += u64::from(video_frame);
            }
            _ => {
                self.seconds.push_back(Second {
                    index,
                    bytes,
                    video_frames: u64::from(video_frame),
                });
                while self.seconds.len() > RATE_WINDOW_SECONDS as usize + 1 {
                    self.seconds.pop_front();
                }
            }
        }
    }

    /// The figures as of `now`.
    pub fn figures(&self, now: Instant) -> HealthFigures {
        let current = now.saturating_duration_since(self.epoch).as_secs();
        // Whole seconds before the current one, at most the window, at most the leg's age.
        let span = current.min(RATE_WINDOW_SECONDS);
        let (mut bytes, mut frames) = (0u64, 0u64);
        for second in &self.seconds {
            if second.index < current && second.index + span >= current {
                bytes += second.bytes;
                frames += second.video_frames;
            }
        }
        let per_second = |n: u64| {
            if span == 0 {
                0.0
            } else {
                n as f64 / span as f64
            }
        };
        let since_last_media = self
            .last_media_at
            .map(|at| now.saturating_duration_since(at));
        let keyframe_interval = self.keyframe_interval_ms.map(|interval| {
            let open = match (self.last_keyframe_ms, self.last_media_ms) {
                (Some(keyframe), Some((_, media))) => media - keyframe,
                _ => 0,
            };
            Duration::from_millis(interval.max(open).max(0) as u64)
        });
        let timestamp_drift_seconds = match (self.anchor, self.last_media_ms) {
            (Some(anchor), Some((wall, media))) => {
                let media = (media - anchor.media_ms) as f64 / 1000.0;
                let wall = wall.saturating_duration_since(anchor.wall).as_secs_f64();
                media - wall
            }
            _ => 0.0,
        };
        let present = |last: Option<Instant>| {
            last.is_some_and(|at| now.saturating_duration_since(at) <= TRACK_PRESENT_WITHIN)
        };
        HealthFigures {
            bitrate_bps: per_second(bytes) * 8.0,
            frame_rate: per_second(frames),
            keyframe_interval,
            declared: self.declared,
            video_present: present(self.last_video),
            audio_present: present(self.last_audio),
            timestamp_drift_seconds,
            since_last_media,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StreamState;
    use crate::testutil::*;

    /// Feeds `message` through a stream's state (as the hub does) into `health`.
    fn feed(state: &mut StreamState, health: &mut Health, message: RtmpMessage, now: Instant) {
        let ingested = state.accept(message);
        health.record(&ingested, now);
    }

    /// A 25 fps stream with 40 ms frames of `frame_bytes`, a keyframe every `gop_ms`,
    /// audio every 20 ms... for `seconds` of wall and media time in step, from `t0`.
    fn steady(
        state: &mut StreamState,
        health: &mut Health,
        t0: Instant,
        seconds: u64,
        gop_ms: u32,
        frame_bytes: usize,
    ) {
        for ms in (0..seconds as u32 * 1000).step_by(20) {
            let now = t0 + Duration::from_millis(u64::from(ms));
            feed(state, health, aac(ms), now);
            if ms % 40 == 0 {
                let frame = if ms % gop_ms == 0 {
                    keyframe(ms, frame_bytes)
                } else {
                    inter(ms, frame_bytes)
                };
                feed(state, health, frame, now);
            }
        }
    }

    #[test]
    fn a_steady_stream_has_its_rates_gop_and_no_drift() {
        let t0 = Instant::now();
        let mut state = StreamState::default();
        let mut health = Health::new(t0);
        feed(&mut state, &mut health, avc_header(0), t0);
        steady(&mut state, &mut health, t0, 10, 2000, 1000);
        let f = health.figures(t0 + Duration::from_millis(10_000));
        assert_eq!(f.frame_rate, 25.0);
        // 25 frames of ~1000 bytes and 50 audio frames of 5 bytes a second.
        let expected = (25.0 * 1000.0 + 50.0 * 5.0) * 8.0;
        assert!((f.bitrate_bps - expected).abs() < expected * 0.02, "{f:?}");
        assert_eq!(f.keyframe_interval, Some(Duration::from_secs(2)));
        assert!(f.video_present && f.audio_present);
        assert!(f.timestamp_drift_seconds.abs() < 0.001, "{f:?}");
        assert_eq!(f.since_last_media, Some(Duration::from_millis(20)));
    }

    #[test]
    fn a_long_gop_shows_while_it_is_still_open() {
        let t0 = Instant::now();
        let mut state = StreamState::default();
        let mut health = Health::new(t0);
        steady(&mut state, &mut health, t0, 20, 8000, 100);
        let f = health.figures(t0 + Duration::from_secs(20));
        assert_eq!(f.keyframe_interval, Some(Duration::from_secs(8)));
        // A GOP of 2 s after 8 s ones reads 8 s until the next keyframe shows it.
        let mut health = Health::new(t0);
        let mut state = StreamState::default();
        steady(&mut state, &mut health, t0, 4, 2000, 100);
        let f = health.figures(t0 + Duration::from_secs(4));
        assert_eq!(f.keyframe_interval, Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_slow_encoder_drifts_behind_the_wall_clock() {
        let t0 = Instant::now();
        let mut state = StreamState::default();
        let mut health = Health::new(t0);
        // 10 s of media sent over 11 s of wall time.
        for ms in (0..10_000u32).step_by(40) {
            let now = t0 + Duration::from_millis(u64::from(ms) * 11 / 10);
            feed(&mut state, &mut health, inter(ms, 100), now);
        }
        let f = health.figures(t0 + Duration::from_millis(11_000));
        assert!(
            (f.timestamp_drift_seconds + 0.996).abs() < 0.01,
            "{}",
            f.timestamp_drift_seconds
        );
    }

    #[test]
    fn a_timestamp_jump_or_wrap_is_not_drift() {
        let t0 = Instant::now();
        let mut state = StreamState::default();
        let mut health = Health::new(t0);
        let start = u32::MAX - 1000; // wraps after 1 s
        for i in 0..100u32 {
            let now = t0 + Duration::from_millis(u64::from(i) * 40);
            feed(
                &mut state,
                &mut health,
                inter(start.wrapping_add(i * 40), 100),
                now,
            );
        }
        let f = health.figures(t0 + Duration::from_millis(4000));
        assert!(f.timestamp_drift_seconds.abs() < 0.001, "{f:?}");
        // The encoder restarts its clock 5 minutes ahead: measured afresh from there.
        for i in 100..150u32 {
            let now = t0 + Duration::from_millis(u64::from(i) * 40);
            feed(&mut state, &mut health, inter(300_000 + i * 40, 100), now);
        }
        let f = health.figures(t0 + Duration::from_millis(6000));
        assert!(f.timestamp_drift_seconds.abs() < 0.05, "{f:?}");
    }

    #[test]
    fn a_track_that_stops_is_gone_and_silence_is_counted() {
        let t0 = Instant::now();
        let mut state = StreamState::default();
        let mut health = Health::new(t0);
        steady(&mut state, &mut health, t0, 2, 2000, 100);
        // Video stops; audio goes on for 8 s.
        for ms in (2000..10_000u32).step_by(20) {
            let now = t0 + Duration::from_millis(u64::from(ms));
            feed(&mut state, &mut health, aac(ms), now);
        }
        let f = health.figures(t0 + Duration::from_millis(10_000));
        assert!(!f.video_present && f.audio_present, "{f:?}");
        assert_eq!(f.frame_rate, 0.0);
        // Then nothing: six seconds on, the window is empty and both tracks are gone.
        let f = health.figures(t0 + Duration::from_millis(16_000));
        assert_eq!(f.since_last_media, Some(Duration::from_millis(6020)));
        assert_eq!(f.bitrate_bps, 0.0);
        assert!(!f.video_present && !f.audio_present, "{f:?}");
    }

    #[test]
    fn a_new_clock_measures_drift_afresh_but_keeps_the_silence() {
        let t0 = Instant::now();
        let mut state = StreamState::default();
        let mut health = Health::new(t0);
        steady(&mut state, &mut health, t0, 3, 2000, 100);
        health.new_clock();
        let f = health.figures(t0 + Duration::from_millis(4000));
        assert_eq!(f.since_last_media, Some(Duration::from_millis(1020)));
        assert_eq!(f.timestamp_drift_seconds, 0.0);
        assert_eq!(f.keyframe_interval, None);
    }

    #[test]
    fn declared_figures_come_from_the_metadata() {
        let t0 = Instant::now();
        let mut state = StreamState::default();
        let mut health = Health::new(t0);
        let (empty, _) = set_data_frame(0);
        feed(&mut state, &mut health, empty, t0);
        assert_eq!(health.figures(t0).declared.bitrate_bps(), None);
        feed(
            &mut state,
            &mut health,
            metadata_declaring(0, 3872.0, 128.0, 30.0),
            t0,
        );
        let declared = health.figures(t0).declared;
        assert_eq!(declared.bitrate_bps(), Some(4_000_000.0));
        assert_eq!(declared.frame_rate, Some(30.0));
        assert_eq!(health.figures(t0).bitrate_bps, 0.0);
    }
}
