//! A run: create the entries, start the stream tasks at the ramp rate, collect their
//! outcomes into the report. Everything is bounded by the run's hard limit.
//!
//! Each stream is one task for the publisher and one for its player:
//!
//! 1. wait for its slot in the ramp (streams alternate between regions);
//! 2. connect and publish, timing the setup ([`STEP_LIMIT`]); a refusal is the stream's
//!    error;
//! 3. send metadata and sequence headers;
//! 4. attach the player at the origin, retrying while the stream is not live
//!    ([`STEP_LIMIT`]);
//! 5. wait the stream's phase (a fraction of a GOP, so encoders are not in step), then
//!    send `duration` of paced media while the player task reads;
//! 6. tell the player how many frames went and when the last left, unpublish; the
//!    player stops when it has them all or `drain` after the last one left (its due
//!    time, unless the path held the publisher back).

use crate::config::Settings;
use crate::entries::{parse_entries_file, EntriesClient, EntriesError, Entry};
use crate::measure::{Figures, Meter, Sent};
use crate::plan::{self, Frames, Shape};
use crate::player::{self, unix_us, Done};
use crate::progress::{Live, Progress};
use crate::publisher::{self, Pacing};
use crate::report::{Outcome, Report};
use crate::viewer::{self, Viewed, ViewerFigures, ViewerUrl};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::watch;

/// Publishing (TCP connect to `Publish.Start`) and attaching a player each give up after
/// this. A loaded origin answers in tens of ms; over a 300 ms RTT path the publish takes
/// about 5 round trips (TCP, handshake, connect, createStream, publish): 1.5 s.
pub const STEP_LIMIT: Duration = Duration::from_secs(10);
/// Unpublishing gives up after this (it is a few small writes).
const FINISH_LIMIT: Duration = Duration::from_secs(5);
/// Slack in the run's hard limit beyond the two step limits, the phase and the drain:
/// scheduling delays of a loaded 2-core machine.
const MARGIN: Duration = Duration::from_secs(10);
/// Spreads stream phases over a GOP: the golden ratio's fraction visits [0, 1) evenly
/// for any number of streams.
const PHASE_STEP: f64 = 0.618_033_988_749_895;

/// Why a run could not be made (setup failures; a stream's own failures are in the
/// report).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("creating entries for region {region}: {source}")]
    Entries {
        region: String,
        source: EntriesError,
    },
    #[error("--entries {path}: {reason}")]
    EntriesFile { path: String, reason: String },
}

/// What every stream task shares.
pub(crate) struct Ctx {
    pub(crate) settings: Settings,
    shape: Shape,
    template: Bytes,
    pub(crate) live: Arc<Live>,
}

/// One stream to run: its index `k` (its stamps' stream number, its phase and its
/// seed), its name and when it must be over.
pub(crate) struct StreamSpec {
    pub(crate) k: usize,
    /// `{id}_{rendition}`.
    pub(crate) name: String,
    pub(crate) hard_limit: Instant,
}

impl Ctx {
    pub(crate) fn new(settings: Settings, live: Arc<Live>) -> Self {
        let shape = Shape {
            video_bps: settings.video_bps,
            fps: settings.fps,
            gop: settings.gop,
            audio_bps: settings.audio_bps,
        };
        Self {
            template: plan::template(shape.max_frame_len()),
            shape,
            live,
            settings,
        }
    }

    fn phase(&self, k: usize) -> Duration {
        self.settings.gop.mul_f64((k as f64 * PHASE_STEP).fract())
    }

    /// Stream `k`'s whole plan, offered and never sent (see [`Sent::unsent_plan`]).
    fn unsent_plan(&self, k: usize) -> Figures {
        let frames = Frames::new(self.shape, self.settings.duration, self.seed(k));
        Meter::new(self.settings.late).finish(Sent::unsent_plan(frames))
    }

    fn seed(&self, k: usize) -> u64 {
        self.settings.seed ^ (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    /// How long one stream may take from its start: the two steps, the phase, the
    /// media, the drain, the unpublish and a margin (the run's hard limit without the
    /// ramp).
    pub(crate) fn stream_limit(&self) -> Duration {
        hard_limit(&self.settings) - self.settings.ramp_time()
    }

    /// Frames a stream sends: a capacity hint for its meter.
    fn frames_per_stream(&self) -> usize {
        let audio = if self.shape.audio_bps > 0 {
            1.0 / plan::AUDIO_FRAME_SECS
        } else {
            0.0
        };
        ((f64::from(self.shape.fps) + audio) * self.settings.duration.as_secs_f64()) as usize + 2
    }
}

/// The hard limit of a run started now: ramp, the steps, the phase, the media, the
/// drain and a margin.
pub fn hard_limit(settings: &Settings) -> Duration {
    settings.ramp_time()
        + 2 * STEP_LIMIT
        + settings.gop
        + settings.duration
        + settings.drain
        + FINISH_LIMIT
        + MARGIN
}

/// Runs the load as `settings` say and reports what the players saw. Errors are setup
/// failures (the entries API); a stream's own failure is its row's `error`.
pub async fn run(settings: Settings) -> Result<Report, LoadError> {
    let entries = create_entries(&settings).await?;
    let started = Instant::now();
    let hard_limit = started + self::hard_limit(&settings);
    let live = Arc::new(Live::default());
    let progress = Progress::start(
        live.clone(),
        settings.total_publishers(),
        settings.ramp_time() + settings.gop + settings.duration + settings.drain,
        settings.progress,
    );
    let ctx = Arc::new(Ctx::new(settings, live));
    let mut tasks = Vec::with_capacity(ctx.settings.total_publishers());
    for (k, (region, entry)) in entries.into_iter().enumerate() {
        let start_at = started + Duration::from_secs_f64(k as f64 / ctx.settings.ramp_per_sec);
        let spec = StreamSpec {
            k,
            name: format!("{}_1", entry.id),
            hard_limit,
        };
        let name = spec.name.clone();
        let handle = tokio::spawn(stream_task(ctx.clone(), spec, region, entry, start_at));
        tasks.push((region, name, handle));
    }
    let mut outcomes = Vec::with_capacity(tasks.len());
    for (k, (region, name, handle)) in tasks.into_iter().enumerate() {
        let outcome =
            match tokio::time::timeout_at((hard_limit + FINISH_LIMIT).into(), handle).await {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => failed(
                    &ctx,
                    k,
                    region,
                    name,
                    format!("the stream's task failed: {e}"),
                ),
                Err(_) => failed(
                    &ctx,
                    k,
                    region,
                    name,
                    "the stream did not finish within the run's hard limit".into(),
                ),
            };
        outcomes.push(outcome);
    }
    progress.finish();
    let settings = ctx.settings.clone();
    Ok(Report::new(settings, outcomes))
}

fn failed(ctx: &Ctx, k: usize, region: usize, name: String, error: String) -> Outcome {
    Outcome {
        region,
        name,
        setup: None,
        figures: ctx.unsent_plan(k),
        error: Some(error),
        viewers: Default::default(),
    }
}

/// One entry per publisher, streams interleaved by region: `(region, entry)` in ramp
/// order.
pub(crate) async fn create_entries(settings: &Settings) -> Result<Vec<(usize, Entry)>, LoadError> {
    let per_region = match &settings.entries_file {
        Some(path) => {
            let file_error = |reason: String| LoadError::EntriesFile {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
            let names: Vec<&str> = settings.regions.iter().map(|r| r.name.as_str()).collect();
            parse_entries_file(&text, &names, settings.publishers_per_region as usize)
                .map_err(file_error)?
        }
        None => entries_from_api(settings).await?,
    };
    let mut per_region: Vec<_> = per_region.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::with_capacity(settings.total_publishers());
    for _ in 0..settings.publishers_per_region {
        for (region, entries) in per_region.iter_mut().enumerate() {
            out.extend(entries.next().map(|e| (region, e)));
        }
    }
    Ok(out)
}

/// `--publishers` entries per region from each region's API.
async fn entries_from_api(settings: &Settings) -> Result<Vec<Vec<Entry>>, LoadError> {
    let client = EntriesClient::new(settings.api_token.clone());
    let mut per_region = Vec::with_capacity(settings.regions.len());
    for region in &settings.regions {
        let mut entries = Vec::with_capacity(settings.publishers_per_region as usize);
        for i in 0..settings.publishers_per_region {
            let name = format!("longhaul-load {} {i}", region.name);
            let entry =
                client
                    .create(&region.api, &name)
                    .await
                    .map_err(|source| LoadError::Entries {
                        region: region.name.clone(),
                        source,
                    })?;
            entries.push(entry);
        }
        per_region.push(entries);
    }
    Ok(per_region)
}

async fn stream_task(
    ctx: Arc<Ctx>,
    spec: StreamSpec,
    region: usize,
    entry: Entry,
    start_at: Instant,
) -> Outcome {
    tokio::time::sleep_until(start_at.into()).await;
    one_stream(&ctx, &spec, region, &entry).await
}

/// Runs one stream of entry `entry` in region `region` now (steps 2 to 6 of the module
/// docs) and returns its outcome; a stream that failed before its media offers its
/// whole plan, lost.
pub(crate) async fn one_stream(
    ctx: &Ctx,
    spec: &StreamSpec,
    region: usize,
    entry: &Entry,
) -> Outcome {
    let mut outcome = Outcome {
        region,
        name: spec.name.clone(),
        setup: None,
        figures: Figures::default(),
        error: None,
        viewers: Default::default(),
    };
    stream(ctx, spec, entry, &mut outcome).await;
    if outcome.error.is_some() {
        ctx.live.failed.fetch_add(1, Ordering::Relaxed);
    }
    if outcome.figures.sent.frames == 0 {
        outcome.figures = ctx.unsent_plan(spec.k);
    }
    outcome
}

/// Stream `spec`, filling `outcome` as it goes (see the module docs for the steps).
async fn stream(ctx: &Ctx, spec: &StreamSpec, entry: &Entry, outcome: &mut Outcome) {
    let s = &ctx.settings;
    let (k, hard_limit) = (spec.k, spec.hard_limit);
    let Some(region) = s.regions.get(outcome.region) else {
        outcome.error = Some(format!("no region {}", outcome.region));
        return;
    };
    let step = |now: Instant| (now + STEP_LIMIT).min(hard_limit);
    let url = region.publish_url(s.token_in, &spec.name, &entry.token);
    let mut encoder = match publisher::publish(&url, step(Instant::now())).await {
        Ok((p, setup)) => {
            outcome.setup = Some(setup);
            p
        }
        Err(e) => {
            outcome.error = Some(e);
            return;
        }
    };
    ctx.live.up.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = publisher::send_preamble(&mut encoder, &ctx.shape, step(Instant::now())).await {
        outcome.error = Some(e);
        publisher::finish(encoder, FINISH_LIMIT).await;
        return;
    }
    let follow = region.play_urls(&spec.name);
    let (viewer, playing_at) = match player::attach_from(&follow, 0, step(Instant::now())).await {
        Ok(v) => v,
        Err(e) => {
            outcome.error = Some(e);
            publisher::finish(encoder, FINISH_LIMIT).await;
            return;
        }
    };
    // Counting viewers attach beside the player and stop when the media is due to end.
    let viewers_stop = (Instant::now() + ctx.phase(k) + s.duration).min(hard_limit);
    let viewer_url = s.viewers_at.clone().unwrap_or_else(|| {
        ViewerUrl::Rtmp(region.play.split('|').next().unwrap_or("").to_string())
    });
    let viewers: Vec<_> = (0..s.viewers)
        .map(|_| {
            tokio::spawn(viewer::view(
                viewer_url.clone(),
                spec.name.clone(),
                step(Instant::now()),
                viewers_stop,
            ))
        })
        .collect();
    tokio::time::sleep(ctx.phase(k)).await;
    let (done_tx, done_rx) = watch::channel(None);
    let meter = Meter::with_capacity(s.late, ctx.frames_per_stream());
    let player_task = tokio::spawn(player::play(
        viewer,
        k as u32,
        meter,
        done_rx,
        hard_limit,
        ctx.live.clone(),
        follow,
        playing_at,
    ));
    let start = Instant::now();
    let pacing = Pacing {
        stream: k as u32,
        start,
        start_unix_us: unix_us(SystemTime::now()),
        stop: (start + s.duration + s.drain).min(hard_limit),
        template: &ctx.template,
        live: &ctx.live,
    };
    let sending = publisher::send_paced(
        &mut encoder,
        Frames::new(ctx.shape, s.duration, ctx.seed(k)),
        pacing,
    )
    .await;
    // Drain from when the last frame left: its due time, or later when the path held
    // the publisher back (its frames in flight get the drain all the same).
    let until = Instant::now().max(sending.last_due.unwrap_or(start)) + s.drain;
    let _ = done_tx.send(Some(Done {
        // What can arrive: frames held back in the publisher never will.
        frames: sending.sent.frames - sending.sent.unsent,
        until,
    }));
    publisher::finish(encoder, FINISH_LIMIT).await;
    let (meter, play_error) =
        match tokio::time::timeout_at((hard_limit + FINISH_LIMIT).into(), player_task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => (
                Meter::new(s.late),
                Some(format!("the player's task failed: {e}")),
            ),
            Err(_) => (
                Meter::new(s.late),
                Some("the player did not stop by the run's hard limit".into()),
            ),
        };
    let mut viewed = Vec::with_capacity(viewers.len());
    for v in viewers {
        viewed.push(
            match tokio::time::timeout_at((hard_limit + FINISH_LIMIT).into(), v).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => Viewed {
                    bytes: 0,
                    error: Some(format!("the viewer's task failed: {e}")),
                },
                Err(_) => Viewed {
                    bytes: 0,
                    error: Some("the viewer did not stop by the run's hard limit".into()),
                },
            },
        );
    }
    outcome.viewers = ViewerFigures::of(&viewed, sending.sent.bytes);
    outcome.figures = meter.finish(sending.sent);
    outcome.error = sending.error.or(play_error);
}
