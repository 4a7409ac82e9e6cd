//! A rendition's on-air stream: the one continuous stream of `{entryId}_{n}` that players
//! get by default, fed from whichever of its two legs (primary, backup) is on air. The
//! choice is [`crate::on_air::OnAir`]'s; this module carries it out under the
//! rendition's lock, called by each leg's push with the leg's state in hand:
//!
//! - the on-air leg's messages are forwarded (through the rendition's own
//!   configuration, GOP cache and timeline, to its own players);
//! - at a switch to a leg's keyframe, the leg's configuration goes first where it
//!   differs from what the players have, and the timeline continues
//!   ([`crate::state::StreamState::switch_source`]): timestamps never go back;
//! - at a switch *in sync* (the new leg's GOP cache holds the very video frame the
//!   players saw last, same timestamp, same bytes: one encoder sending both legs), what
//!   the new leg has after that frame is forwarded at once, with no keyframe to wait for
//!   and no frame twice;
//! - at a switch *from the cache* (nothing on air yet, or the new leg's cached keyframe
//!   is after the players' last frame on the same clock), the leg's configuration and
//!   its whole cached GOP are forwarded at once.
//!
//! Lock order: a leg's stream lock, then its rendition's (never the other way).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use longhaul_rtmp::message::type_id;
use longhaul_rtmp::RtmpMessage;

use crate::key::Leg;
use crate::on_air::{Offered, OnAir, OnAirSettings, Switch, SwitchReason, Verdict};
use crate::state::{Ingested, StreamState};
use crate::stats::{RecentSwitch, RenditionSummary, SwitchCount};
use crate::stream::{lock, Fanout};
use crate::timeline::is_after;

/// One rendition: its on-air choice and stream.
#[derive(Debug)]
pub(crate) struct Rendition {
    pub name: String,
    pub started_at: SystemTime,
    /// The hub's totals over all renditions, ended ones included (for counters).
    totals: Arc<OnAirCounters>,
    pub inner: Mutex<RenditionInner>,
}

/// Switches and backup time of every rendition a hub has had: what counters are made
/// of, since renditions come and go.
#[derive(Debug, Default)]
pub(crate) struct OnAirCounters {
    /// By the leg that went on air and why ([`switch_index`]).
    pub switches: [[AtomicU64; 4]; 2],
    /// Milliseconds the backup was on air in renditions that have ended.
    pub backup_ended_ms: AtomicU64,
    /// The last [`RECENT_SWITCHES`] switches from one leg to the other, oldest first,
    /// ended renditions' included: what an operator reads after a failover.
    pub recent: Mutex<std::collections::VecDeque<RecentSwitch>>,
}

/// Switches kept for [`crate::Hub::recent_switches`]: a console page's worth; each is
/// a name and a few words, so 32 cost about 2 KB.
pub const RECENT_SWITCHES: usize = 32;

#[derive(Debug)]
pub(crate) struct RenditionInner {
    pub on_air: OnAir,
    pub out: Fanout,
    /// The last video frame forwarded on air: its leg timestamp and payload, to find
    /// where the other leg is in sync with it.
    last_video: Option<(u32, Bytes)>,
    /// The leg timestamp of the last audio frame forwarded on air.
    last_audio: Option<u32>,
    /// Switches by the leg that went on air and why ([`switch_index`]).
    pub switches: [[u64; 4]; 2],
    pub last_switch: Option<(Switch, SystemTime)>,
    /// Since when the backup has been on air, if it is.
    backup_since: Option<Instant>,
    /// Time the backup spent on air before `backup_since`.
    backup_before: Duration,
}

/// The index of `reason` in [`RenditionInner::switches`].
pub(crate) fn switch_index(reason: SwitchReason) -> usize {
    match reason {
        SwitchReason::Started => 0,
        SwitchReason::Silent => 1,
        SwitchReason::Ended => 2,
        SwitchReason::Failback => 3,
    }
}

impl Rendition {
    pub fn new(name: String, settings: OnAirSettings, totals: Arc<OnAirCounters>) -> Rendition {
        Rendition {
            name,
            started_at: SystemTime::now(),
            totals,
            inner: Mutex::new(RenditionInner {
                on_air: OnAir::new(settings, Instant::now()),
                out: Fanout::default(),
                last_video: None,
                last_audio: None,
                switches: [[0; 4]; 2],
                last_switch: None,
                backup_since: None,
                backup_before: Duration::ZERO,
            }),
        }
    }

    /// One message `ingested` into the stream of `leg`, whose state (after it) is
    /// `leg_state`: forwarded on air, dropped, or the leg goes on air with it.
    /// `now` is when the message arrived.
    pub fn offer(&self, leg: Leg, ingested: &Ingested, leg_state: &StreamState, now: Instant) {
        let mut guard = lock(&self.inner);
        let inner = &mut *guard;
        if inner.out.ended {
            return;
        }
        let offered = if ingested.is_config {
            Offered::Config
        } else {
            Offered::Media {
                start_point: ingested.resume_point,
            }
        };
        let last_video = &inner.last_video;
        let verdict = inner.on_air.offer(leg, offered, now, || {
            join_point(last_video.as_ref(), leg_state).is_some()
        });
        match verdict {
            Verdict::Drop => {}
            Verdict::Forward => inner.forward(&self.name, ingested.message.clone(), now),
            Verdict::Switch(switch) => {
                self.totals.switches[usize::from(switch.to == Leg::Backup)]
                    [switch_index(switch.reason)]
                .fetch_add(1, Ordering::Relaxed);
                if switch.from.is_some() {
                    let mut recent = lock(&self.totals.recent);
                    if recent.len() == RECENT_SWITCHES {
                        recent.pop_front();
                    }
                    recent.push_back(RecentSwitch {
                        name: self.name.clone(),
                        switch,
                        at: SystemTime::now(),
                    });
                }
                inner.switch(&self.name, switch, ingested, leg_state, now)
            }
        }
    }

    /// A publication of `leg` started.
    pub fn leg_started(&self, leg: Leg) {
        lock(&self.inner).on_air.leg_started(leg);
    }

    /// The publication of `leg` ended. With neither leg live the rendition ends too: its
    /// players get what they have queued, then `Ended`. Whether it ended.
    pub fn leg_ended(&self, leg: Leg) -> bool {
        let mut inner = lock(&self.inner);
        inner.on_air.leg_ended(leg);
        if inner.on_air.any_live() {
            return false;
        }
        inner.out.end();
        let backup = Rendition::backup_on_air(&inner, Instant::now());
        self.totals
            .backup_ended_ms
            .fetch_add(backup.as_millis() as u64, Ordering::Relaxed);
        true
    }

    pub fn summary(&self) -> RenditionSummary {
        let inner = lock(&self.inner);
        let reasons = [
            SwitchReason::Started,
            SwitchReason::Silent,
            SwitchReason::Ended,
            SwitchReason::Failback,
        ];
        let switches = Leg::ALL
            .into_iter()
            .flat_map(|to| reasons.into_iter().map(move |reason| (to, reason)))
            .map(|(to, reason)| SwitchCount {
                to,
                reason,
                count: inner.switches[usize::from(to == Leg::Backup)][switch_index(reason)],
            })
            .filter(|c| c.count > 0)
            .collect();
        RenditionSummary {
            name: self.name.clone(),
            started_at: self.started_at,
            on_air: inner.on_air.on_air(),
            primary_live: inner.on_air.is_live(Leg::Primary),
            backup_live: inner.on_air.is_live(Leg::Backup),
            players: inner.out.players.len(),
            switches,
            last_switch: inner.last_switch,
            backup_on_air_seconds: Rendition::backup_on_air(&inner, Instant::now()).as_secs_f64(),
        }
    }

    /// Time the backup has been on air, to `now`.
    pub fn backup_on_air(inner: &RenditionInner, now: Instant) -> Duration {
        inner.backup_before
            + inner
                .backup_since
                .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }
}

/// How the on-air players can go on with a leg without waiting for its next keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Join {
    /// In sync: the leg's GOP cache holds the players' last video frame (same timestamp,
    /// same bytes); from this index on is what they lack.
    Sync(usize),
    /// From the leg's cached GOP, whose keyframe is after the players' last video frame
    /// (or nothing is on air yet).
    Cache,
}

/// How the players, whose last video frame on air is `last_video` (leg timestamp and
/// bytes), can join `leg_state` now, if they can.
fn join_point(last_video: Option<&(u32, Bytes)>, leg_state: &StreamState) -> Option<Join> {
    let gop = leg_state.gop();
    let keyframe = gop.first()?;
    let Some((timestamp, payload)) = last_video else {
        return Some(Join::Cache);
    };
    if let Some(i) = gop.iter().position(|m| {
        m.type_id == type_id::VIDEO && m.timestamp == *timestamp && m.payload == *payload
    }) {
        return Some(Join::Sync(i + 1));
    }
    let ahead = keyframe.timestamp.wrapping_sub(*timestamp);
    (is_after(keyframe.timestamp, *timestamp) && ahead <= crate::LEG_CLOCK_TOLERANCE_MS)
        .then_some(Join::Cache)
}

impl RenditionInner {
    /// Forwards one leg message on air.
    fn forward(&mut self, name: &str, message: RtmpMessage, now: Instant) {
        match message.type_id {
            type_id::VIDEO => self.last_video = Some((message.timestamp, message.payload.clone())),
            type_id::AUDIO => self.last_audio = Some(message.timestamp),
            _ => {}
        }
        self.out.push(&name, message, now, |refusal| {
            tracing::warn!(stream = name, %refusal, "configuration refused on air");
        });
    }

    /// `switch.to` goes on air with `ingested`, a message of its leg.
    fn switch(
        &mut self,
        name: &str,
        switch: Switch,
        ingested: &Ingested,
        leg_state: &StreamState,
        now: Instant,
    ) {
        self.switches[usize::from(switch.to == Leg::Backup)][switch_index(switch.reason)] += 1;
        self.last_switch = Some((switch, SystemTime::now()));
        if switch.from == Some(Leg::Backup) {
            self.backup_before = Rendition::backup_on_air(self, now);
            self.backup_since = None;
        }
        if switch.to == Leg::Backup {
            self.backup_since = Some(now);
        }
        let join = match join_point(self.last_video.as_ref(), leg_state) {
            _ if ingested.resume_point => None,
            join => join,
        };
        let (entry, rendition) = longhaul_endpoint::stream_parts(name);
        tracing::info!(
            %entry,
            %rendition,
            stream = name,
            leg = switch.to.as_str(),
            from = switch.from.map_or("none", Leg::as_str),
            to = switch.to.as_str(),
            reason = switch.reason.as_str(),
            at = match join {
                Some(Join::Sync(_)) => "in sync",
                Some(Join::Cache) => "cached keyframe",
                None => "keyframe",
            },
            "on-air leg switched: the rendition's players carry on"
        );
        match join {
            Some(Join::Sync(after)) => {
                // The same media: what the players lack of this leg's GOP, in order,
                // skipping what they already have of each track (this message is last).
                let (video, audio) = (self.last_video.as_ref().map(|v| v.0), self.last_audio);
                for message in &leg_state.gop()[after..] {
                    let seen = match message.type_id {
                        type_id::VIDEO => video.is_some_and(|v| !is_after(message.timestamp, v)),
                        type_id::AUDIO => audio.is_some_and(|a| !is_after(message.timestamp, a)),
                        _ => false,
                    };
                    if !seen {
                        self.forward(name, message.clone(), now);
                    }
                }
            }
            Some(Join::Cache) | None => {
                // At a keyframe (this message, or the one the leg's cache starts with):
                // the leg's configuration where it differs, stamped with the keyframe's
                // time (it applies from there; its own is when the encoder sent it,
                // maybe long ago), then the keyframe and what follows, on a timeline
                // that goes on.
                let media: Vec<RtmpMessage> = if join == Some(Join::Cache) {
                    leg_state.gop().to_vec()
                } else {
                    vec![ingested.message.clone()]
                };
                let at = media[0].timestamp;
                let have: Vec<&RtmpMessage> = self.out.state.config().collect();
                let differs: Vec<RtmpMessage> = leg_state
                    .config()
                    .filter(|m| !have.iter().any(|h| h.payload == m.payload))
                    .map(|m| RtmpMessage {
                        timestamp: at,
                        ..m.clone()
                    })
                    .collect();
                self.out.state.switch_source();
                for message in differs.into_iter().chain(media) {
                    self.forward(name, message, now);
                }
            }
        }
    }
}
