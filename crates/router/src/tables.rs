//! The router's rules as tables: a health history (time, event) and the choices and
//! moves expected along it. Two origins unless said: `pao-1` the primary (leg p),
//! `nyc-1` the other (leg b). Default thresholds: recovery hold 10 s, failback 30 s,
//! 3 bad path samples of 4.

use crate::{Failure, OriginReport, PathStats, Reason, Router, Thresholds, TunnelStatus, When};
use longhaul_endpoint::Leg::{self, Backup as B, Primary as P};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const PAO: &str = "pao-1";
const NYC: &str = "nyc-1";

/// One row of a history: an input, or what is expected at that time.
#[derive(Debug, Clone)]
enum S {
    Up(&'static str),
    Connecting(&'static str),
    Down(&'static str),
    Report(&'static str, bool, bool),
    /// A path sample: packets sent and lost since the last one, RTT in ms.
    Path(&'static str, u64, u64, u64),
    /// Congestion events since the last sample (with 100 packets, no loss, 100 ms RTT).
    Congestion(&'static str, u64),
    /// The connection's counters start again (a new connection).
    PathReset(&'static str),
    /// A path sample in which the edge sent keep-alives and nothing came back.
    Quiet(&'static str),
    /// A look at the received-datagram counter between samples: whether something came.
    Listen(&'static str, bool),
    Fail(&'static str),
    Place(u64, Leg, &'static str),
    /// A new publish of this leg goes to this origin, for this reason.
    Choose(Leg, &'static str, Option<Reason>),
    /// `Router::moves` gives exactly these (stream, from, to, reason, when).
    Moves(&'static [(u64, &'static str, &'static str, Reason, When)]),
    /// `Router::keyframe` for the stream gives a move to this origin, or none.
    Keyframe(u64, Option<&'static str>),
    Healthy(&'static str, bool),
}

use S::*;

fn good(o: &'static str) -> S {
    Path(o, 100, 0, 100)
}

fn lossy(o: &'static str) -> S {
    Path(o, 100, 30, 100)
}

fn run_with(origins: &[&str], th: Thresholds, rows: &[(u64, S)]) {
    let t0 = Instant::now();
    let mut r = Router::new(th, origins.iter().copied(), PAO).unwrap();
    let mut counters: HashMap<&str, PathStats> = HashMap::new();
    for (i, (ms, step)) in rows.iter().enumerate() {
        let now = t0 + Duration::from_millis(*ms);
        let at = format!("row {i} at {ms} ms: {step:?}");
        match step.clone() {
            Up(o) => r.tunnel(o, TunnelStatus::Connected, now),
            Connecting(o) => r.tunnel(o, TunnelStatus::Connecting, now),
            Down(o) => {
                counters.remove(o);
                r.tunnel(o, TunnelStatus::Down, now)
            }
            Report(o, healthy, draining) => r.report(o, OriginReport { healthy, draining }, now),
            Path(o, sent, lost, rtt) => {
                let c = counters.entry(o).or_default();
                c.sent_packets += sent;
                c.lost_packets += lost;
                c.received_datagrams += 1;
                c.rtt = Duration::from_millis(rtt);
                r.path(o, *c, now)
            }
            Congestion(o, events) => {
                let c = counters.entry(o).or_default();
                c.sent_packets += 100;
                c.congestion_events += events;
                c.received_datagrams += 1;
                c.rtt = Duration::from_millis(100);
                r.path(o, *c, now)
            }
            Quiet(o) => {
                let c = counters.entry(o).or_default();
                c.sent_packets += 4;
                r.path(o, *c, now)
            }
            Listen(o, heard) => {
                let c = counters.entry(o).or_default();
                c.received_datagrams += u64::from(heard);
                r.listen(o, c.received_datagrams, now)
            }
            PathReset(o) => {
                let c = PathStats {
                    rtt: Duration::from_millis(100),
                    sent_packets: 5,
                    ..Default::default()
                };
                counters.insert(o, c);
                r.path(o, c, now)
            }
            Fail(o) => r.failure(o, Failure::Unavailable, now),
            Place(id, leg, o) => r.place(id, leg, o),
            Choose(leg, o, reason) => {
                let c = r.choose(leg, now);
                assert_eq!((c.origin.as_str(), c.reason), (o, reason), "{at}");
            }
            Moves(expected) => {
                let got: Vec<_> = r
                    .moves(now)
                    .into_iter()
                    .map(|m| (m.stream, m.from, m.to, m.reason, m.when))
                    .collect();
                let want: Vec<_> = expected
                    .iter()
                    .map(|(s, f, t, r, w)| (*s, f.to_string(), t.to_string(), *r, *w))
                    .collect();
                assert_eq!(got, want, "{at}");
            }
            Keyframe(id, to) => {
                let got = r.keyframe(id, now).map(|m| m.to);
                assert_eq!(got.as_deref(), to, "{at}");
            }
            Healthy(o, h) => {
                r.advance(now);
                assert_eq!(r.is_healthy(o), Some(h), "{at}");
            }
        }
    }
}

fn run(rows: &[(u64, S)]) {
    run_with(&[NYC, PAO], Thresholds::default(), rows)
}

#[test]
fn both_healthy_each_leg_to_its_origin() {
    run(&[
        (0, Up(PAO)),
        (0, Up(NYC)),
        (0, Choose(P, PAO, None)),
        (0, Choose(B, NYC, None)),
        (0, Healthy(PAO, true)),
        (100, Report(PAO, true, false)),
        (200, good(PAO)),
        (450, good(PAO)),
        (500, Choose(P, PAO, None)),
    ]);
}

#[test]
fn before_any_tunnel_is_up_legs_go_to_their_preferred_origin() {
    run(&[
        (0, Choose(P, PAO, None)),
        (0, Choose(B, NYC, None)),
        (0, Healthy(PAO, false)),
        // The other origin connects first: leg p goes there until the primary does.
        (300, Up(NYC)),
        (300, Choose(P, NYC, Some(Reason::OriginDown))),
        (800, Up(PAO)),
        // A first connection is no recovery: no hold, no failback wait.
        (800, Choose(P, PAO, None)),
    ]);
}

#[test]
fn primary_down_fails_over_at_once_and_fails_back_after_30_s() {
    run(&[
        (0, Up(PAO)),
        (0, Up(NYC)),
        (1_000, Down(PAO)),
        (1_000, Choose(P, NYC, Some(Reason::OriginDown))),
        (1_000, Choose(B, NYC, None)),
        (1_000, Healthy(PAO, false)),
        (5_000, Connecting(PAO)),
        (6_000, Up(PAO)),
        // Good again, but held: not healthy for 10 s, no legs for 30 s.
        (15_999, Healthy(PAO, false)),
        (16_000, Healthy(PAO, true)),
        (16_000, Choose(P, NYC, Some(Reason::OriginDown))),
        (35_999, Choose(P, NYC, Some(Reason::OriginDown))),
        (36_000, Choose(P, PAO, None)),
    ]);
}

#[test]
fn a_flapping_tunnel_does_not_bounce_streams() {
    let mut rows = vec![
        (0, Up(PAO)),
        (0, Up(NYC)),
        (0, Place(1, P, PAO)),
        (1_000, Down(PAO)),
        (
            1_000,
            Moves(&[(1, PAO, NYC, Reason::OriginDown, When::Now)]),
        ),
        // The edge moved it.
        (1_100, Place(1, P, NYC)),
    ];
    // Up 3 s, down 1 s, for a minute: never 10 s clear.
    let mut t = 2_000;
    while t < 62_000 {
        rows.push((t, Up(PAO)));
        rows.push((t + 2_900, Choose(P, NYC, Some(Reason::OriginDown))));
        rows.push((t + 2_900, Moves(&[])));
        rows.push((t + 3_000, Down(PAO)));
        t += 4_000;
    }
    rows.push((t, Up(PAO)));
    rows.push((t + 29_000, Moves(&[])));
    rows.push((t + 29_000, Keyframe(1, None)));
    rows.push((
        t + 30_000,
        Moves(&[(1, NYC, PAO, Reason::Failback, When::AtKeyframe)]),
    ));
    run(&rows);
}

#[test]
fn a_lossy_path_needs_most_of_a_window_and_a_clean_one_to_leave() {
    run(&[
        (0, Up(PAO)),
        (0, Up(NYC)),
        (0, Place(1, P, PAO)),
        (0, good(PAO)), // baseline
        (250, lossy(PAO)),
        (500, good(PAO)),
        (750, lossy(PAO)),
        (1_000, good(PAO)),
        // Two bad in any four: a noisy path, not a failover.
        (1_000, Choose(P, PAO, None)),
        (1_000, Moves(&[])),
        (1_250, lossy(PAO)),
        (1_500, lossy(PAO)),
        // Three of the last four.
        (1_500, Choose(P, NYC, Some(Reason::PathLossy))),
        (1_500, Moves(&[(1, PAO, NYC, Reason::PathLossy, When::Now)])),
        (1_500, Moves(&[])), // given once
        (1_750, good(PAO)),
        (2_000, good(PAO)),
        (2_250, good(PAO)),
        // One bad of the last four: still lossy (leaving needs a clean window).
        (2_250, Healthy(PAO, false)),
        (2_500, good(PAO)),
        // Clean since 2.5 s: healthy at 12.5 s, legs back at 32.5 s.
        (12_499, Healthy(PAO, false)),
        (12_500, Healthy(PAO, true)),
        (32_499, Choose(P, NYC, Some(Reason::PathLossy))),
        (32_500, Choose(P, PAO, None)),
    ]);
}

#[test]
fn slow_and_congested_paths_are_lossy_too() {
    run(&[
        (0, Up(PAO)),
        (0, Up(NYC)),
        (0, good(NYC)),
        (250, Path(NYC, 100, 0, 1_500)),
        (500, Path(NYC, 100, 0, 1_500)),
        (750, Path(NYC, 100, 0, 1_500)),
        (750, Choose(B, PAO, Some(Reason::PathLossy))),
        (1_000, good(PAO)),
        // 100 ms RTT, 250 ms samples: 2.5 round trips each; 2 events is over half.
        (1_250, Congestion(PAO, 2)),
        (1_500, Congestion(PAO, 2)),
        (1_500, Healthy(PAO, true)),
        (1_750, Congestion(PAO, 2)),
        (1_750, Healthy(PAO, false)),
    ]);
}

#[test]
fn one_congestion_event_or_a_few_lost_keepalives_are_not_trouble() {
    run(&[
        (0, Up(PAO)),
        (0, Up(NYC)),
        (0, good(PAO)),
        (250, Congestion(PAO, 1)),
        (500, Congestion(PAO, 1)),
        (750, Congestion(PAO, 1)),
        (1_000, Congestion(PAO, 1)),
        // An idle tunnel: 4 packets, 2 lost, is too few to judge.
        (1_250, Path(PAO, 4, 2, 100)),
        (1_500, Path(PAO, 4, 2, 100)),
        (1_750, Path(PAO, 4, 2, 100)),
        (1_750, Healthy(PAO, true)),
        (1_750, Choose(P, PAO, None)),
    ]);
}

#[test]
fn a_new_connection_restarts_the_counters_without_a_judgment() {
    run(&[
        (0, Up(PAO)),
        (0, Up(NYC)),
        (0, Path(PAO, 10_000, 0, 100)),
        (250, PathReset(PAO)),
        (500, good(PAO)),
        (750, good(PAO)),
        (750, Healthy(PAO, true)),
    ]);
}

#[test]
fn both_origins_down_new_publishes_go_to_the_preferred_and_live_ones_stay() {
    run(&[
        (0, Up(PAO)),
        (0, Up(NYC)),
        (0, Place(1, P, PAO)),
        (0, Place(2, B, NYC)),
        (1_000, Down(PAO)),
        (1_000, Down(NYC)),
        (1_000, Choose(P, PAO, None)),
        (1_000, Choose(B, NYC, None)),
        // Nowhere better to go.
        (1_000, Moves(&[])),
        // The other comes back: the stream on the dead one goes there now; the one on
        // it stays.
        (3_000, Up(NYC)),
        (
            3_000,
            Moves(&[(1, PAO, NYC, Reason::OriginDown, When::Now)]),
        ),
        (3_000, Choose(P, NYC, Some(Reason::OriginDown))),
    ]);
}

#[test]
fn with_none_healthy_the_least_bad_is_picked() {
    run(&[
        (0, Up(PAO)),
        (0, Up(NYC)),
        (0, Place(1, P, PAO)),
        (1_000, Report(NYC, true, true)),
        (1_000, Down(PAO)),
        // Draining beats down.
        (1_000, Choose(P, NYC, Some(Reason::OriginDown))),
        (
            1_000,
            Moves(&[(1, PAO, NYC, Reason::OriginDown, When::Now)]),
        ),
        (1_000, Choose(B, NYC, None)),
        // Both report unhealthy (their shared registry is out of reach): each leg
        // stays with its preferred origin.
        (2_000, Up(PAO)),
        (2_000, Report(PAO, false, false)),
        (2_000, Report(NYC, false, false)),
        (2_000, Choose(P, PAO, None)),
        (2_000, Choose(B, NYC, None)),
        (2_000, Moves(&[])),
    ]);
}

#[test]
fn a_draining_origin_loses_its_legs_and_its_streams() {
    run(&[
        (0, Up(PAO)),
        (0, Up(NYC)),
        (0, Place(1, P, PAO)),
        (0, Place(2, P, PAO)),
        (0, Place(3, B, NYC)),
        (5_000, Report(PAO, false, true)),
        (5_000, Choose(P, NYC, Some(Reason::OriginDraining))),
        (
            5_000,
            Moves(&[
                (1, PAO, NYC, Reason::OriginDraining, When::Now),
                (2, PAO, NYC, Reason::OriginDraining, When::Now),
            ]),
        ),
        // It went away: the wanted moves change reason and are given again.
        (6_000, Down(PAO)),
        (
            6_000,
            Moves(&[
                (1, PAO, NYC, Reason::OriginDown, When::Now),
                (2, PAO, NYC, Reason::OriginDown, When::Now),
            ]),
        ),
    ]);
}

/// A frozen origin (SIGSTOP) or a cut path: the connection stays "up" until QUIC's
/// idle timeout, but nothing comes back. After the silence limit (600 ms) plus one RTT
/// (100 ms here) the origin is silent: its legs go elsewhere and its live streams
/// should move. Heard from again, it recovers like any trouble.
#[test]
fn an_origin_that_answers_nothing_is_silent_after_its_limit_and_an_rtt() {
    // Silence limit 600 ms, RTT 100 ms: silent once 700 ms pass with nothing heard.
    run(&[
        (0, Up(PAO)),
        (0, Up(NYC)),
        (0, Place(1, P, PAO)),
        (0, good(PAO)),
        (0, good(NYC)),
        (250, good(PAO)),
        // Frozen after 250 ms: samples go on, nothing comes back.
        (500, Quiet(PAO)),
        (750, Quiet(PAO)),
        (750, Healthy(PAO, true)),
        (950, Quiet(PAO)),
        (950, Healthy(PAO, true)),
        (950, Choose(P, PAO, None)),
        (951, Quiet(PAO)),
        (951, Healthy(PAO, false)),
        (951, Choose(P, NYC, Some(Reason::OriginSilent))),
        (
            951,
            Moves(&[(1, PAO, NYC, Reason::OriginSilent, When::Now)]),
        ),
        // NYC kept answering the whole time.
        (951, good(NYC)),
        (951, Healthy(NYC, true)),
        // Thawed: heard from again, then the recovery hold, then failback.
        (2_000, good(PAO)),
        (2_000, Healthy(PAO, false)),
        (12_000, good(PAO)),
        (12_000, Healthy(PAO, true)),
        (12_000, Choose(P, NYC, Some(Reason::OriginSilent))),
        (32_000, good(PAO)),
        (32_000, Choose(P, PAO, None)),
    ]);
}

#[test]
fn silence_is_judged_at_each_look_between_path_samples() {
    run(&[
        (0, Up(PAO)),
        (0, Up(NYC)),
        (0, good(PAO)),
        (0, good(NYC)),
        // Heard at 100 ms by a look between samples, then nothing.
        (100, Listen(PAO, true)),
        (250, good(NYC)),
        (250, Quiet(PAO)),
        (500, Quiet(PAO)),
        (750, Listen(PAO, false)),
        (800, Listen(PAO, false)),
        (800, Healthy(PAO, true)),
        // 701 ms after it was last heard: silent at this look, not at the next sample.
        (801, Listen(PAO, false)),
        (801, Healthy(PAO, false)),
        (801, Choose(P, NYC, Some(Reason::OriginSilent))),
        // Heard again: clear of the silence (recovering, not yet healthy).
        (850, Listen(PAO, true)),
        (850, Healthy(PAO, false)),
        (10_900, good(PAO)),
        (10_900, Healthy(PAO, true)),
    ]);
}

#[test]
fn an_unhealthy_report_moves_legs_to_a_healthy_other() {
    run(&[
        (0, Up(PAO)),
        (0, Up(NYC)),
        (1_000, Report(PAO, false, false)),
        (1_000, Choose(P, NYC, Some(Reason::OriginUnhealthy))),
        (2_000, Report(PAO, true, false)),
        (2_000, Choose(P, NYC, Some(Reason::OriginUnhealthy))),
        (32_000, Choose(P, PAO, None)),
    ]);
}

#[test]
fn failures_count_within_their_window() {
    run(&[
        (0, Up(PAO)),
        (0, Up(NYC)),
        (0, Fail(PAO)),
        (5_000, Fail(PAO)),
        (10_000, Fail(PAO)), // the first is out of the window
        (10_000, Choose(P, PAO, None)),
        (11_000, Fail(PAO)),
        (11_000, Choose(P, NYC, Some(Reason::OriginUnhealthy))),
        // Leaving needs no failure in the window (until 21 s), then the hold. (The
        // edge advances the router every 250 ms; here at the moment that matters.)
        (20_999, Healthy(PAO, false)),
        (21_000, Healthy(PAO, false)),
        (30_999, Healthy(PAO, false)),
        (31_000, Healthy(PAO, true)),
    ]);
}

#[test]
fn failures_while_the_tunnel_is_down_do_not_hold_the_origin_out() {
    run(&[
        // An edge starting: publishes to the primary fail before its tunnel is up.
        (0, Fail(PAO)),
        (100, Fail(PAO)),
        (200, Fail(PAO)),
        (300, Up(PAO)),
        (300, Up(NYC)),
        (300, Choose(P, PAO, None)),
        // And during an outage.
        (1_000, Down(PAO)),
        (1_000, Fail(PAO)),
        (1_100, Fail(PAO)),
        (1_200, Fail(PAO)),
        (2_000, Up(PAO)),
        (12_000, Healthy(PAO, true)),
    ]);
}

#[test]
fn failback_of_a_live_stream_waits_for_a_keyframe() {
    run(&[
        (0, Up(NYC)),
        (0, Connecting(PAO)),
        (0, Place(1, P, NYC)), // placed while the primary was not up
        (0, Moves(&[])),
        (1_000, Up(PAO)),
        // A first connection: the primary takes its leg at once, the live stream
        // goes back at its next keyframe.
        (
            1_000,
            Moves(&[(1, NYC, PAO, Reason::Failback, When::AtKeyframe)]),
        ),
        (1_000, Moves(&[])),
        (1_500, Keyframe(1, Some(PAO))),
        (1_500, Place(1, P, PAO)),
        (1_500, Keyframe(1, None)),
        (1_500, Moves(&[])),
    ]);
}

#[test]
fn a_failback_no_longer_wanted_is_not_done_at_the_keyframe() {
    run(&[
        (0, Up(PAO)),
        (0, Up(NYC)),
        (0, Place(1, P, PAO)),
        (1_000, Down(PAO)),
        (
            1_000,
            Moves(&[(1, PAO, NYC, Reason::OriginDown, When::Now)]),
        ),
        (1_000, Place(1, P, NYC)),
        (2_000, Up(PAO)),
        (
            32_000,
            Moves(&[(1, NYC, PAO, Reason::Failback, When::AtKeyframe)]),
        ),
        (33_000, Down(PAO)),
        (33_000, Keyframe(1, None)),
        (33_000, Moves(&[])),
    ]);
}

#[test]
fn one_origin_configured_takes_both_legs_whatever_its_health() {
    run_with(
        &[PAO],
        Thresholds::default(),
        &[
            (0, Up(PAO)),
            (0, Place(1, B, PAO)),
            (0, Choose(P, PAO, None)),
            (0, Choose(B, PAO, None)),
            (1_000, Down(PAO)),
            (1_000, Choose(P, PAO, None)),
            (1_000, Choose(B, PAO, None)),
            (1_000, Moves(&[])),
        ],
    );
}

#[test]
fn leg_b_falls_back_to_the_primary() {
    run(&[
        (0, Up(PAO)),
        (0, Up(NYC)),
        (0, Place(1, B, NYC)),
        (1_000, Down(NYC)),
        (1_000, Choose(B, PAO, Some(Reason::OriginDown))),
        (
            1_000,
            Moves(&[(1, NYC, PAO, Reason::OriginDown, When::Now)]),
        ),
    ]);
}

#[test]
fn short_thresholds_from_config_apply() {
    let th = Thresholds {
        recover_hold: Duration::from_millis(500),
        failback_after: Duration::from_secs(2),
        ..Thresholds::default()
    };
    run_with(
        &[NYC, PAO],
        th,
        &[
            (0, Up(PAO)),
            (0, Up(NYC)),
            (100, Down(PAO)),
            (100, Choose(P, NYC, Some(Reason::OriginDown))),
            (1_000, Up(PAO)),
            (1_499, Healthy(PAO, false)),
            (1_500, Healthy(PAO, true)),
            (2_999, Choose(P, NYC, Some(Reason::OriginDown))),
            (3_000, Choose(P, PAO, None)),
        ],
    );
}

#[test]
fn three_origins_leg_b_goes_to_the_first_other_then_the_primary() {
    run_with(
        &["fra-1", NYC, PAO],
        Thresholds::default(),
        &[
            (0, Up("fra-1")),
            (0, Up(NYC)),
            (0, Up(PAO)),
            (0, Choose(B, "fra-1", None)),
            (100, Down("fra-1")),
            (100, Choose(B, PAO, Some(Reason::OriginDown))),
            (100, Down(PAO)),
            (100, Choose(B, NYC, Some(Reason::OriginDown))),
            (100, Choose(P, NYC, Some(Reason::OriginDown))),
        ],
    );
}

#[test]
fn thresholds_are_checked() {
    assert!(Thresholds::default().check().is_ok());
    let bad = [
        Thresholds {
            sample_window: 0,
            ..Default::default()
        },
        Thresholds {
            bad_samples: 5,
            ..Default::default()
        },
        Thresholds {
            lossy_fraction: f64::NAN,
            ..Default::default()
        },
        Thresholds {
            failback_after: Duration::from_secs(1),
            ..Default::default()
        },
        Thresholds {
            failures: 0,
            ..Default::default()
        },
    ];
    for th in bad {
        assert!(th.check().is_err(), "{th:?}");
    }
    assert!(Router::new(Thresholds::default(), [NYC], PAO).is_err());
}

#[test]
fn unknown_origins_and_streams_are_ignored() {
    let now = Instant::now();
    let mut r = Router::new(Thresholds::default(), [NYC, PAO], PAO).unwrap();
    r.tunnel("sin-1", TunnelStatus::Down, now);
    r.failure("sin-1", Failure::TunnelLost, now);
    r.place(9, P, "sin-1");
    r.remove(42);
    assert_eq!(r.keyframe(9, now), None);
    assert_eq!(r.is_healthy("sin-1"), None);
    assert!(r.placements().iter().all(|(_, _, n)| *n == 0));
    // A path sample with all counters at their maximum, then at zero, then an
    // instant earlier than the last: no panic, no judgment.
    r.tunnel(PAO, TunnelStatus::Connected, now);
    let max = PathStats {
        rtt: Duration::MAX,
        sent_packets: u64::MAX,
        lost_packets: u64::MAX,
        congestion_events: u64::MAX,
        received_datagrams: u64::MAX,
    };
    r.path(PAO, max, now);
    r.path(PAO, PathStats::default(), now + Duration::from_secs(1));
    r.path(PAO, max, now);
    let _ = r.choose(P, now);
    // Silence judged against an RTT of Duration::MAX: no overflow.
    r.path(PAO, max, now + Duration::from_secs(5));
    let _ = r.choose(P, now + Duration::from_secs(5));
}

#[test]
fn health_changes_and_placements_are_reported() {
    let t0 = Instant::now();
    let mut r = Router::new(Thresholds::default(), [NYC, PAO], PAO).unwrap();
    r.tunnel(PAO, TunnelStatus::Connected, t0);
    r.tunnel(PAO, TunnelStatus::Down, t0 + Duration::from_secs(1));
    let changes: Vec<_> = r
        .take_changes()
        .into_iter()
        .map(|c| (c.origin, c.from.as_str(), c.to.as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            (PAO.to_string(), "unknown", "healthy"),
            (PAO.to_string(), "healthy", "troubled")
        ]
    );
    assert!(r.take_changes().is_empty());
    r.place(1, P, NYC);
    r.place(2, B, NYC);
    r.place(3, B, NYC);
    r.remove(2);
    assert_eq!(
        r.placements(),
        [(NYC, P, 1), (NYC, B, 1), (PAO, P, 0), (PAO, B, 0)]
    );
}
