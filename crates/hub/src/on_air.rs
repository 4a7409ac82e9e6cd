//! Which leg of a rendition is on air: the choice behind the one continuous stream the
//! hub serves per rendition from its primary and backup legs ([`crate::LegChoice::OnAir`]).
//! Plain, synchronous and deterministic, with time passed in: the rendition's driver
//! (`crate::rendition`) calls it under its lock for every message of either leg.
//!
//! ## Rules
//! - A leg is *healthy* while it is live and has sent media within
//!   [`OnAirSettings::silence`].
//! - The primary is on air while it is healthy; the backup when the primary is not and
//!   the backup is. With neither healthy, whatever is on air stays: there is nothing
//!   better to show, and a leg that comes back carries on at once.
//! - At the start the primary is preferred: the backup goes on air first only if the
//!   primary has not shown healthy within `silence` of the rendition's first leg.
//! - Back from the backup to a primary that recovered only once it has been healthy for
//!   [`OnAirSettings::failback_after`] (MediaLive waits 30 s; a flapping primary would
//!   otherwise bounce the viewers between two encodes), or at once if the backup fails.
//! - A switch happens on a message of the leg going on air that a player can start
//!   from: a video keyframe, or any audio frame on a stream without video. Or at once
//!   when the driver finds the leg *joinable*: in sync with what is on air (the same
//!   encoded media, as an encoder that sends both legs with ffmpeg's `tee` muxer
//!   produces: the viewers' decoders need no keyframe, and the switch costs no more
//!   than the silence), or with a cached keyframe its viewers can start from without
//!   going back in time (the rendition's first leg on air, say, whose keyframe came
//!   while the primary was being waited for).

use std::time::{Duration, Instant};

use crate::key::Leg;

/// How long the on-air leg may send no media before the other leg replaces it: 500 ms.
/// Frames come every 40 ms or less at 25 fps with audio; a packet lost on the tunnel is
/// recovered in about 1.5 round trips, 345 ms on the longest path we serve (230 ms),
/// so a leg silent for 500 ms has stopped, and half the 1 s gap budget is left for the
/// switch.
pub const DEFAULT_SILENCE: Duration = Duration::from_millis(500);

/// How long a recovered primary must stay healthy before it goes back on air: 10 s, a
/// third of MediaLive's 30 s, because a switch at a keyframe costs a viewer nothing
/// here (no re-buffering), while a primary that failed once is worth watching a while.
pub const DEFAULT_FAILBACK_AFTER: Duration = Duration::from_secs(10);

/// The on-air rules' settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnAirSettings {
    /// No media for this long and a leg is no longer healthy.
    pub silence: Duration,
    /// A recovered primary goes back on air after this long healthy.
    pub failback_after: Duration,
}

impl Default for OnAirSettings {
    fn default() -> Self {
        OnAirSettings {
            silence: DEFAULT_SILENCE,
            failback_after: DEFAULT_FAILBACK_AFTER,
        }
    }
}

/// Why a leg went on air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SwitchReason {
    /// The rendition's first leg on air.
    Started,
    /// The leg that was on air sent no media for the silence limit.
    Silent,
    /// The leg that was on air ended (its publication is gone).
    Ended,
    /// The primary has been healthy for the failback time.
    Failback,
}

impl SwitchReason {
    /// As in metrics, logs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchReason::Started => "started",
            SwitchReason::Silent => "silent",
            SwitchReason::Ended => "ended",
            SwitchReason::Failback => "failback",
        }
    }
}

/// A leg going on air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    /// The leg that was on air; `None` at the start.
    pub from: Option<Leg>,
    pub to: Leg,
    pub reason: SwitchReason,
}

/// What the driver offers: the kind of one message of a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Metadata or a sequence header.
    Config,
    /// Media; `start_point` when a player may start on it (a video keyframe, or audio on
    /// a stream without video).
    Media { start_point: bool },
}

/// What to do with the offered message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its leg is on air: forward it.
    Forward,
    /// Its leg is not on air: drop it.
    Drop,
    /// Its leg goes on air with this message (the driver sends the leg's configuration
    /// first, or for an in-sync switch what the viewers lack of the leg's GOP).
    Switch(Switch),
}

#[derive(Debug, Clone, Copy, Default)]
struct Track {
    live: bool,
    last_media: Option<Instant>,
    /// Since when it has been healthy without a break; `None` while it is not.
    healthy_since: Option<Instant>,
}

/// The on-air choice of one rendition.
#[derive(Debug, Clone)]
pub struct OnAir {
    settings: OnAirSettings,
    created: Instant,
    on_air: Option<Leg>,
    tracks: [Track; 2],
}

fn index(leg: Leg) -> usize {
    match leg {
        Leg::Primary => 0,
        Leg::Backup => 1,
    }
}

impl OnAir {
    pub fn new(settings: OnAirSettings, now: Instant) -> OnAir {
        OnAir {
            settings,
            created: now,
            on_air: None,
            tracks: [Track::default(); 2],
        }
    }

    /// A publication of `leg` started (or a new one took it over).
    pub fn leg_started(&mut self, leg: Leg) {
        self.tracks[index(leg)].live = true;
    }

    /// The publication of `leg` ended. If it was on air, it stays so until the other leg
    /// reaches a switch point (its viewers keep what they have).
    pub fn leg_ended(&mut self, leg: Leg) {
        self.tracks[index(leg)] = Track::default();
    }

    /// Whether either leg is live.
    pub fn any_live(&self) -> bool {
        self.tracks.iter().any(|t| t.live)
    }

    pub fn is_live(&self, leg: Leg) -> bool {
        self.tracks[index(leg)].live
    }

    /// The leg on air now; `None` before the first switch point.
    pub fn on_air(&self) -> Option<Leg> {
        self.on_air
    }

    /// Whether `leg` is healthy at `now`: live, with media within the silence limit.
    pub fn healthy(&self, leg: Leg, now: Instant) -> bool {
        let track = &self.tracks[index(leg)];
        track.live
            && track
                .last_media
                .is_some_and(|at| now.saturating_duration_since(at) <= self.settings.silence)
    }

    /// Why `leg` (on air, and being replaced) is no longer good.
    fn failed(&self, leg: Leg) -> SwitchReason {
        if self.tracks[index(leg)].live {
            SwitchReason::Silent
        } else {
            SwitchReason::Ended
        }
    }

    /// The leg that should replace the one on air at `now`, and why; `None` to keep it.
    pub fn wanted(&self, now: Instant) -> Option<(Leg, SwitchReason)> {
        let primary = self.healthy(Leg::Primary, now);
        let backup = self.healthy(Leg::Backup, now);
        match self.on_air {
            None if primary => Some((Leg::Primary, SwitchReason::Started)),
            None if backup
                && now.saturating_duration_since(self.created) >= self.settings.silence =>
            {
                Some((Leg::Backup, SwitchReason::Started))
            }
            None => None,
            Some(Leg::Primary) if !primary && backup => {
                Some((Leg::Backup, self.failed(Leg::Primary)))
            }
            Some(Leg::Primary) => None,
            Some(Leg::Backup) if primary && !backup => {
                Some((Leg::Primary, self.failed(Leg::Backup)))
            }
            Some(Leg::Backup) => {
                let since = self.tracks[index(Leg::Primary)].healthy_since;
                let recovered = since.is_some_and(|s| {
                    now.saturating_duration_since(s) >= self.settings.failback_after
                });
                (primary && recovered).then_some((Leg::Primary, SwitchReason::Failback))
            }
        }
    }

    /// One message of `leg` at `now`: forward it, drop it, or switch to its leg.
    /// `joinable` is asked only when a switch to `leg` is wanted and the message is media
    /// that is not a start point: whether the viewers can go on with this leg from here
    /// without waiting for its next keyframe (see the module docs).
    pub fn offer(
        &mut self,
        leg: Leg,
        offered: Offered,
        now: Instant,
        joinable: impl FnOnce() -> bool,
    ) -> Verdict {
        let silence = self.settings.silence;
        let track = &mut self.tracks[index(leg)];
        if !track.live {
            // A message of a leg the driver said ended: nothing to decide on.
            return Verdict::Drop;
        }
        if let Offered::Media { .. } = offered {
            let broken = track
                .last_media
                .is_none_or(|at| now.saturating_duration_since(at) > silence);
            if broken {
                track.healthy_since = Some(now);
            }
            track.last_media = Some(now);
        }
        if let (Some((wanted, reason)), Offered::Media { start_point }) =
            (self.wanted(now), offered)
        {
            if wanted == leg && (start_point || joinable()) {
                let from = self.on_air.replace(leg);
                return Verdict::Switch(Switch {
                    from,
                    to: leg,
                    reason,
                });
            }
        }
        if self.on_air == Some(leg) {
            Verdict::Forward
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Leg::{Backup, Primary};

    const KEY: Offered = Offered::Media { start_point: true };
    const INTER: Offered = Offered::Media { start_point: false };

    /// One step of a history: at `ms`, `what` happens; the verdict expected.
    enum Step {
        Start(Leg),
        End(Leg),
        /// A message of a leg, whether the leg is joinable there, the verdict.
        Msg(u64, Leg, Offered, bool, Verdict),
    }
    use Step::*;

    fn run(name: &str, settings: OnAirSettings, steps: &[Step]) -> OnAir {
        let t0 = Instant::now();
        let mut air = OnAir::new(settings, t0);
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Start(leg) => air.leg_started(leg),
                End(leg) => air.leg_ended(leg),
                Msg(ms, leg, offered, sync, want) => {
                    let got = air.offer(leg, offered, t0 + Duration::from_millis(ms), || sync);
                    assert_eq!(
                        got, want,
                        "{name}: step {i} at {ms} ms ({leg:?} {offered:?})"
                    );
                }
            }
        }
        air
    }

    fn switch(from: Option<Leg>, to: Leg, reason: SwitchReason) -> Verdict {
        Verdict::Switch(Switch { from, to, reason })
    }

    const FAST: OnAirSettings = OnAirSettings {
        silence: Duration::from_millis(500),
        failback_after: Duration::from_secs(2),
    };

    #[test]
    fn the_primary_goes_on_air_at_its_first_keyframe_and_the_backup_is_dropped() {
        let air = run(
            "start",
            FAST,
            &[
                Start(Backup),
                Start(Primary),
                Msg(0, Backup, Offered::Config, false, Verdict::Drop),
                Msg(0, Backup, KEY, false, Verdict::Drop),
                Msg(0, Primary, Offered::Config, false, Verdict::Drop),
                Msg(10, Primary, INTER, false, Verdict::Drop), // nothing to join from
                Msg(
                    20,
                    Primary,
                    KEY,
                    false,
                    switch(None, Primary, SwitchReason::Started),
                ),
                Msg(40, Backup, KEY, false, Verdict::Drop),
                Msg(60, Primary, INTER, false, Verdict::Forward),
                Msg(60, Primary, Offered::Config, false, Verdict::Forward),
            ],
        );
        assert_eq!(air.on_air(), Some(Primary));
    }

    #[test]
    fn a_backup_alone_goes_on_air_once_the_primary_had_its_chance() {
        run(
            "backup only",
            FAST,
            &[
                Start(Backup),
                Msg(0, Backup, KEY, false, Verdict::Drop),
                Msg(480, Backup, KEY, false, Verdict::Drop),
                Msg(500, Backup, INTER, false, Verdict::Drop),
                Msg(
                    520,
                    Backup,
                    KEY,
                    false,
                    switch(None, Backup, SwitchReason::Started),
                ),
                Msg(540, Backup, INTER, false, Verdict::Forward),
            ],
        );
    }

    #[test]
    fn a_silent_primary_is_replaced_at_the_backups_next_keyframe_or_at_once_in_sync() {
        let history = |sync: bool, at_inter: Verdict, at_key: Verdict| {
            vec![
                Start(Primary),
                Start(Backup),
                Msg(
                    0,
                    Primary,
                    KEY,
                    false,
                    switch(None, Primary, SwitchReason::Started),
                ),
                Msg(0, Backup, KEY, false, Verdict::Drop),
                Msg(400, Primary, INTER, false, Verdict::Forward),
                // The primary stops at 400 ms; the backup goes on.
                Msg(880, Backup, INTER, sync, Verdict::Drop), // 480 ms of silence: not yet
                Msg(920, Backup, INTER, sync, at_inter),
                Msg(1000, Backup, KEY, sync, at_key),
            ]
        };
        let silent = switch(Some(Primary), Backup, SwitchReason::Silent);
        run("keyframe", FAST, &history(false, Verdict::Drop, silent));
        run("in sync", FAST, &history(true, silent, Verdict::Forward));
    }

    #[test]
    fn an_ended_primary_is_replaced_and_a_new_one_waits_for_the_failback_time() {
        run(
            "ended, back, failback",
            FAST,
            &[
                Start(Primary),
                Start(Backup),
                Msg(
                    0,
                    Primary,
                    KEY,
                    false,
                    switch(None, Primary, SwitchReason::Started),
                ),
                Msg(0, Backup, KEY, false, Verdict::Drop),
                End(Primary),
                Msg(40, Primary, INTER, false, Verdict::Drop), // a straggler
                Msg(
                    40,
                    Backup,
                    KEY,
                    false,
                    switch(Some(Primary), Backup, SwitchReason::Ended),
                ),
                Msg(400, Backup, INTER, false, Verdict::Forward),
                Msg(800, Backup, INTER, false, Verdict::Forward),
                Start(Primary),
                Msg(1000, Primary, KEY, false, Verdict::Drop), // healthy from here
                Msg(1200, Backup, INTER, false, Verdict::Forward),
                Msg(1400, Primary, INTER, false, Verdict::Drop),
                Msg(1600, Backup, INTER, false, Verdict::Forward),
                Msg(1800, Primary, INTER, false, Verdict::Drop),
                Msg(2000, Backup, INTER, false, Verdict::Forward),
                Msg(2200, Primary, INTER, false, Verdict::Drop),
                Msg(2400, Backup, INTER, false, Verdict::Forward),
                Msg(2600, Primary, INTER, false, Verdict::Drop),
                Msg(2800, Backup, INTER, false, Verdict::Forward),
                // Healthy for 2 s: back on air, here in sync (no keyframe needed).
                Msg(
                    3000,
                    Primary,
                    INTER,
                    true,
                    switch(Some(Backup), Primary, SwitchReason::Failback),
                ),
                Msg(3040, Backup, KEY, false, Verdict::Drop),
            ],
        );
    }

    #[test]
    fn a_flapping_primary_restarts_its_failback_clock() {
        run(
            "flapping",
            FAST,
            &[
                Start(Primary),
                Start(Backup),
                Msg(
                    0,
                    Primary,
                    KEY,
                    false,
                    switch(None, Primary, SwitchReason::Started),
                ),
                Msg(
                    600,
                    Backup,
                    KEY,
                    false,
                    switch(Some(Primary), Backup, SwitchReason::Silent),
                ),
                Msg(700, Primary, KEY, false, Verdict::Drop), // back: healthy since 700
                Msg(1000, Backup, INTER, false, Verdict::Forward),
                Msg(1300, Primary, KEY, false, Verdict::Drop), // 600 ms gap: since 1300
                Msg(1400, Backup, INTER, false, Verdict::Forward),
                Msg(1700, Primary, INTER, false, Verdict::Drop),
                Msg(1800, Backup, INTER, false, Verdict::Forward),
                Msg(2200, Primary, INTER, false, Verdict::Drop),
                Msg(2200, Backup, INTER, false, Verdict::Forward),
                Msg(2600, Backup, INTER, false, Verdict::Forward),
                Msg(3000, Backup, INTER, false, Verdict::Forward),
                // 2 s after 1300, but silent from 2200 to 3300: healthy since 3300 only.
                Msg(3300, Primary, KEY, false, Verdict::Drop),
                Msg(3400, Backup, INTER, false, Verdict::Forward),
                Msg(3700, Primary, INTER, false, Verdict::Drop),
                Msg(3800, Backup, INTER, false, Verdict::Forward),
                Msg(4100, Primary, INTER, false, Verdict::Drop),
                Msg(4200, Backup, INTER, false, Verdict::Forward),
                Msg(4500, Primary, INTER, false, Verdict::Drop),
                Msg(4600, Backup, INTER, false, Verdict::Forward),
                Msg(4900, Primary, INTER, false, Verdict::Drop),
                Msg(5000, Backup, INTER, false, Verdict::Forward),
                Msg(
                    5300,
                    Primary,
                    KEY,
                    false,
                    switch(Some(Backup), Primary, SwitchReason::Failback),
                ),
            ],
        );
    }

    #[test]
    fn a_failing_backup_hands_back_to_a_healthy_primary_at_once() {
        run(
            "backup fails",
            FAST,
            &[
                Start(Primary),
                Start(Backup),
                Msg(0, Backup, KEY, false, Verdict::Drop),
                Msg(
                    0,
                    Primary,
                    KEY,
                    false,
                    switch(None, Primary, SwitchReason::Started),
                ),
                Msg(
                    600,
                    Backup,
                    KEY,
                    false,
                    switch(Some(Primary), Backup, SwitchReason::Silent),
                ),
                Msg(700, Primary, KEY, false, Verdict::Drop),
                End(Backup),
                Msg(
                    740,
                    Primary,
                    KEY,
                    false,
                    switch(Some(Backup), Primary, SwitchReason::Ended),
                ),
            ],
        );
    }

    #[test]
    fn with_neither_leg_healthy_the_on_air_leg_stays() {
        let air = run(
            "both silent",
            FAST,
            &[
                Start(Primary),
                Start(Backup),
                Msg(
                    0,
                    Primary,
                    KEY,
                    false,
                    switch(None, Primary, SwitchReason::Started),
                ),
                Msg(0, Backup, KEY, false, Verdict::Drop),
                // Both stop; the backup comes back first, then the primary.
                Msg(
                    2000,
                    Backup,
                    KEY,
                    false,
                    switch(Some(Primary), Backup, SwitchReason::Silent),
                ),
                Msg(2010, Primary, KEY, false, Verdict::Drop),
            ],
        );
        assert_eq!(air.on_air(), Some(Backup));
        let air = run(
            "the on-air leg back first",
            FAST,
            &[
                Start(Primary),
                Start(Backup),
                Msg(
                    0,
                    Primary,
                    KEY,
                    false,
                    switch(None, Primary, SwitchReason::Started),
                ),
                Msg(2000, Primary, INTER, false, Verdict::Forward),
            ],
        );
        assert_eq!(air.on_air(), Some(Primary));
    }

    #[test]
    fn joinable_is_asked_only_when_it_matters() {
        let t0 = Instant::now();
        let mut air = OnAir::new(FAST, t0);
        air.leg_started(Primary);
        air.leg_started(Backup);
        let never = || -> bool { panic!("joinable asked needlessly") };
        assert_eq!(air.offer(Backup, INTER, t0, never), Verdict::Drop);
        assert_eq!(
            air.offer(Primary, KEY, t0, never),
            switch(None, Primary, SwitchReason::Started)
        );
        assert_eq!(air.offer(Primary, INTER, t0, never), Verdict::Forward);
        assert_eq!(air.offer(Backup, Offered::Config, t0, never), Verdict::Drop);
    }
}
