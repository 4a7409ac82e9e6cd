//! The soak (`longhaul-load soak`): a long run of churn through a cluster, to see that
//! what the nodes hold comes back down and that every bound holds, with the load
//! generator's own publishers, players and accounting (the streams of [`crate::run()`]).
//!
//! For `--length`:
//!
//! - `--publishers` *slots* per region, each publishing one session after another
//!   ([`churn`]): a session is one of a load run's streams (publish, headers, its own
//!   player at the origin, `--duration` of paced, stamped media, unpublish), so every
//!   frame an honest publisher offers is accounted for (received once, lost, late);
//! - `--lurkers` players joining random streams at the origin and leaving;
//! - hostile clients at the first region's publish address ([`hostile`]);
//! - every `--sample`, each `--node`'s RSS and bound counters ([`watch`]), printed as
//!   a line.
//!
//! Then the load stops (every loop checks the time before each step, and each step is
//! bounded), the nodes are watched for `--settle` more, and the report
//! ([`report::SoakReport`]) has per node RSS before, at its peak, when the load stopped
//! and at the end, the counters that grew, and what is still open.

pub mod churn;
pub mod config;
pub mod hostile;
pub mod report;
pub mod watch;

pub use config::{SoakArgs, SoakSettings};
pub use report::SoakReport;

use crate::entries::{EntriesClient, Entry};
use crate::player;
use crate::progress::Live;
use crate::run::{create_entries, one_stream, Ctx, LoadError, StreamSpec};
use churn::{Churn, Lurker};
use hostile::{Kind, Tally};
use report::{Lurking, NodeReport, Sessions, Tick};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use watch::{Sample, Watched};

/// A lurker gives a stream this long to be live before it picks another (the stream
/// may be between sessions).
const LURK_ATTACH: Duration = Duration::from_secs(1);
/// After a stream that was not live, a lurker waits this long before the next pick.
const LURK_RETRY: Duration = Duration::from_millis(500);
/// Goodbyes (a lurker's `deleteStream`) give up after this.
const GOODBYE: Duration = Duration::from_secs(1);
/// The token the bad-token clients present: the shape of a real one, never issued.
const WRONG_TOKEN: &str = "soakwrongtoken00";

/// What the tasks of a soak share.
#[derive(Default)]
struct Shared {
    sessions: Mutex<Sessions>,
    lurking: Mutex<Lurking>,
    live: AtomicU64,
    tallies: [Tally; 4],
}

impl Shared {
    fn tally(&self, kind: Kind) -> &Tally {
        let i = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        &self.tallies[i]
    }

    fn tick(&self, t: Duration, phase: &'static str, samples: &[Sample]) -> Tick {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        Tick {
            t: t.as_secs_f64(),
            phase,
            rss_kib: samples.iter().map(|s| s.rss_kib).collect(),
            sessions_live: self.live.load(Ordering::Relaxed),
            sessions_done: sessions.sessions,
            sessions_failed: sessions.failed,
            frames_lost: sessions.frames_lost,
        }
    }
}

/// Runs the soak; `on_tick` gets each timeline line as it is sampled (the binary prints
/// them). Errors are setup failures (the entries API).
pub async fn run(
    settings: SoakSettings,
    on_tick: impl Fn(String) + Send + Sync + 'static,
) -> Result<SoakReport, LoadError> {
    let slots = create_entries(&settings.load).await?;
    let (flood_entries, bad_entry) = hostile_entries(&settings).await?;
    let started = Instant::now();
    let end = started + settings.length;
    let shared = Arc::new(Shared::default());
    let nodes: Arc<Vec<Watched>> =
        Arc::new(settings.nodes.iter().cloned().map(Watched::new).collect());
    let names: Vec<String> = settings.nodes.iter().map(|n| n.name.clone()).collect();

    // The timeline: a sample now (before the load), then every --sample until told.
    let (stop_sampling, stopped) = tokio::sync::oneshot::channel::<()>();
    let on_tick = Arc::new(on_tick);
    let sampler = {
        let (nodes, shared, names, on_tick) = (
            nodes.clone(),
            shared.clone(),
            names.clone(),
            on_tick.clone(),
        );
        let every = settings.sample;
        tokio::spawn(async move {
            let mut history: Vec<Vec<Sample>> = vec![Vec::new(); nodes.len()];
            let mut timeline = Vec::new();
            let mut next = Instant::now();
            let mut stopped = stopped;
            loop {
                let samples = sample_all(&nodes).await;
                let now = Instant::now();
                let phase = if now < end { "load" } else { "settle" };
                let tick = shared.tick(now - started, phase, &samples);
                on_tick(tick.line(&names));
                timeline.push(tick);
                for (h, s) in history.iter_mut().zip(samples) {
                    h.push(s);
                }
                next += every;
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {}
                    _ = &mut stopped => break,
                }
            }
            (history, timeline)
        })
    };

    let ctx = Arc::new(Ctx::new(settings.load.clone(), Arc::new(Live::default())));
    let churn = Churn {
        gap: settings.gap,
        session: settings.load.duration,
        gop: settings.load.gop,
        slots: slots.len(),
        seed: settings.load.seed,
    };
    let mut load = Vec::new();
    for (slot, (region, entry)) in slots.iter().cloned().enumerate() {
        let start_at = started + Duration::from_secs_f64(slot as f64 / settings.load.ramp_per_sec);
        load.push(tokio::spawn(slot_task(
            ctx.clone(),
            churn,
            slot,
            region,
            entry,
            start_at,
            end,
            shared.clone(),
        )));
    }
    let slots = Arc::new(slots);
    for n in 0..settings.lurkers as usize {
        let lurker = Lurker::new(settings.load.seed, n, slots.len(), settings.lurk);
        load.push(tokio::spawn(lurker_task(
            ctx.clone(),
            slots.clone(),
            lurker,
            end,
            shared.clone(),
        )));
    }
    for handle in hostile_tasks(&settings, &flood_entries, bad_entry.as_ref(), end, &shared) {
        load.push(handle);
    }
    // Every task checks `end` before each step and each step is bounded: a session by
    // its stream limit, a hostile attempt by its waits, a lurk by its watch time.
    let limit = end + ctx.stream_limit() + hostile::FLOOD_LIMIT + 2 * hostile::WAIT;
    for handle in load {
        if tokio::time::timeout_at(limit.into(), handle).await.is_err() {
            tracing::warn!("a soak task did not end by the soak's hard limit");
        }
    }
    let load_stop = Instant::now();
    let at_stop = sample_all(&nodes).await;
    let stop_tick = shared.tick(load_stop - started, "stop", &at_stop);
    on_tick(stop_tick.line(&names));
    tokio::time::sleep(settings.settle).await;
    let _ = stop_sampling.send(());
    let (mut history, mut timeline) = sampler.await.unwrap_or_default();
    // The last sample is taken now, after the settling, whatever the sampling rhythm.
    let last = sample_all(&nodes).await;
    let tick = shared.tick(started.elapsed(), "end", &last);
    on_tick(tick.line(&names));
    timeline.push(stop_tick);
    timeline.push(tick);
    timeline.sort_by(|a, b| a.t.total_cmp(&b.t));
    let mut node_reports = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let h = &mut history[i];
        h.push(last[i].clone());
        let hwm = std::fs::read_to_string(format!("/proc/{}/status", node.spec.pid))
            .ok()
            .and_then(|s| watch::hwm_kib(&s));
        node_reports.push(NodeReport::new(
            &node.spec.name,
            node.spec.pid,
            h,
            &at_stop[i],
            hwm,
        ));
    }
    let sessions = shared
        .sessions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let lurking = shared
        .lurking
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let hostile = Kind::ALL
        .iter()
        .map(|k| (k.as_str(), shared.tally(*k).report()))
        .collect();
    Ok(SoakReport {
        settings,
        load_secs: (load_stop - started).as_secs_f64(),
        total_secs: started.elapsed().as_secs_f64(),
        sessions,
        lurking,
        hostile,
        nodes: node_reports,
        timeline,
    })
}

async fn sample_all(nodes: &[Watched]) -> Vec<Sample> {
    let mut samples = Vec::with_capacity(nodes.len());
    for node in nodes {
        samples.push(node.sample().await);
    }
    samples
}

/// The flooders' entries (one each) and the bad-token clients' (one for all, its token
/// replaced), from the first region's API.
async fn hostile_entries(
    settings: &SoakSettings,
) -> Result<(Vec<Entry>, Option<Entry>), LoadError> {
    let h = &settings.hostile;
    let Some(region) = settings.load.regions.first() else {
        return Ok((Vec::new(), None));
    };
    let client = EntriesClient::new(settings.load.api_token.clone());
    let create = |what: String| {
        let client = client.clone();
        async move {
            client
                .create(&region.api, &what)
                .await
                .map_err(|source| LoadError::Entries {
                    region: region.name.clone(),
                    source,
                })
        }
    };
    let mut flood = Vec::new();
    for i in 0..h.flooders {
        flood.push(create(format!("longhaul-load soak flooder {i}")).await?);
    }
    let bad = if h.bad_tokens > 0 {
        let mut e = create("longhaul-load soak bad token".into()).await?;
        e.token = WRONG_TOKEN.into();
        Some(e)
    } else {
        None
    };
    Ok((flood, bad))
}

/// One slot: sessions one after another while one still fits before `end`.
#[allow(clippy::too_many_arguments)]
async fn slot_task(
    ctx: Arc<Ctx>,
    churn: Churn,
    slot: usize,
    region: usize,
    entry: Entry,
    start_at: Instant,
    end: Instant,
    shared: Arc<Shared>,
) {
    tokio::time::sleep_until(start_at.into()).await;
    let mut i = 0u32;
    while churn.may_start(Instant::now(), end) {
        let spec = StreamSpec {
            k: churn.index(slot, i),
            name: Churn::name(&entry.id, i),
            hard_limit: Instant::now() + ctx.stream_limit(),
        };
        shared.live.fetch_add(1, Ordering::Relaxed);
        let outcome = one_stream(&ctx, &spec, region, &entry).await;
        shared.live.fetch_sub(1, Ordering::Relaxed);
        shared
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&outcome);
        tokio::time::sleep(churn.gap(slot, i)).await;
        i += 1;
    }
}

/// One lurker until `end`.
async fn lurker_task(
    ctx: Arc<Ctx>,
    slots: Arc<Vec<(usize, Entry)>>,
    mut lurker: Lurker,
    end: Instant,
    shared: Arc<Shared>,
) {
    let lurking = |f: &mut dyn FnMut(&mut Lurking)| {
        f(&mut shared.lurking.lock().unwrap_or_else(|e| e.into_inner()))
    };
    while Instant::now() < end {
        let lurk = lurker.next_lurk();
        let Some((region, entry)) = slots.get(lurk.slot) else {
            return;
        };
        let Some(region) = ctx.settings.regions.get(*region) else {
            return;
        };
        let url = region.play_url(&format!("{}_{}", entry.id, lurk.rendition));
        let mut viewer = match player::attach(&url, Instant::now() + LURK_ATTACH).await {
            Ok(v) => v,
            Err(e) => {
                if e.contains("StreamNotFound") {
                    lurking(&mut |l| l.not_live += 1);
                } else {
                    lurking(&mut |l| l.error(e.clone()));
                }
                tokio::time::sleep(LURK_RETRY).await;
                continue;
            }
        };
        lurking(&mut |l| l.attached += 1);
        let until = (Instant::now() + lurk.watch).min(end);
        let mut messages = 0u64;
        loop {
            match tokio::time::timeout_at(until.into(), viewer.recv()).await {
                Ok(Ok(Some(_))) => messages += 1,
                Ok(Ok(None)) => {
                    lurking(&mut |l| l.ended += 1);
                    break;
                }
                Ok(Err(e)) => {
                    lurking(&mut |l| l.error(format!("lurker: {e}")));
                    break;
                }
                Err(_) => break,
            }
        }
        lurking(&mut |l| l.messages += messages);
        let _ = tokio::time::timeout(GOODBYE, viewer.finish()).await;
    }
}

fn hostile_tasks(
    settings: &SoakSettings,
    flood_entries: &[Entry],
    bad_entry: Option<&Entry>,
    end: Instant,
    shared: &Arc<Shared>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let Some(region) = settings.load.regions.first() else {
        return tasks;
    };
    let h = settings.hostile;
    let address = longhaul_rtmp::RtmpUrl::parse(&format!("{}/soak", region.publish))
        .map(|u| u.address())
        .unwrap_or_default();
    let token_in = settings.load.token_in;
    for _ in 0..h.sprayers {
        let (address, shared) = (address.clone(), shared.clone());
        let from = Kind::Sprayer.source(h.from);
        tasks.push(tokio::spawn(async move {
            hostile::sprayer(address, from, end, shared.tally(Kind::Sprayer)).await
        }));
    }
    for entry in flood_entries {
        let url = region.publish_url(token_in, &format!("{}_1", entry.id), &entry.token);
        let shared = shared.clone();
        let from = Kind::Flooder.source(h.from);
        tasks.push(tokio::spawn(async move {
            hostile::flooder(url, from, end, shared.tally(Kind::Flooder)).await
        }));
    }
    for _ in 0..h.slowloris {
        let (address, shared) = (address.clone(), shared.clone());
        let from = Kind::Slowloris.source(h.from);
        tasks.push(tokio::spawn(async move {
            hostile::slowloris(address, from, end, shared.tally(Kind::Slowloris)).await
        }));
    }
    if let Some(entry) = bad_entry {
        for _ in 0..h.bad_tokens {
            let url = region.publish_url(token_in, &format!("{}_1", entry.id), &entry.token);
            let shared = shared.clone();
            let from = Kind::BadToken.source(h.from);
            tasks.push(tokio::spawn(async move {
                hostile::bad_token(url, from, end, shared.tally(Kind::BadToken)).await
            }));
        }
    }
    tasks
}
