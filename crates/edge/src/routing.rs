//! The router's driver: feeds `longhaul_router` what the edge observes of each origin,
//! and logs and counts what it decides.
//!
//! Every [`SAMPLE_INTERVAL`] (250 ms) it reads each tunnel's state, its live
//! connection's path counters (quinn's `Connection::stats()`) and the origin's last
//! report, and gives them with the time to the router of the tunnel's
//! [`Lane`] (one per shard: each lane's router judges the paths
//! its own streams take). Between samples, every [`LISTEN_INTERVAL`] (50 ms), it gives the
//! router each connection's received-datagram counter alone, so a silent origin is
//! noticed within 50 ms of the silence limit, and hands out the moves that follow. Publishes ask the router directly; stream failures are fed where they
//! happen (upstream, ingest). The router is a pure state machine: this task only moves
//! observations into it and its answers out.
//!
//! Health changes are logged (INFO, a warning for trouble). Live streams the router
//! wants moved are logged at INFO with from, to and reason, counted in
//! `longhaul_router_moves_wanted_total{from,to,reason}`, and handed to the stream's
//! relay ([`crate::relay::Steer`]), which resumes it at the other origin (tunnel wire
//! format v2: the encoder sees nothing): at once when its origin is in trouble or
//! draining, at its next keyframe for a failback. A stream on a version 1 tunnel stays
//! where it was placed and ends with its tunnel.

use crate::relay::Wanted;
use crate::state::EdgeState;
use crate::upstream::Lane;
use longhaul_endpoint::Leg;
use longhaul_router::{
    OriginReport, PathStats, Status, TunnelStatus, LISTEN_INTERVAL, SAMPLE_INTERVAL,
};
use longhaul_tunnel::TunnelState;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// The router's view of a tunnel state.
fn status(state: TunnelState) -> TunnelStatus {
    match state {
        TunnelState::Connected => TunnelStatus::Connected,
        TunnelState::Connecting => TunnelStatus::Connecting,
        TunnelState::Backoff | TunnelState::Closed => TunnelStatus::Down,
    }
}

/// Runs until `shutdown`.
pub async fn drive(state: Arc<EdgeState>, shutdown: CancellationToken) {
    start_move_series(&state);
    let mut tick = tokio::time::interval(LISTEN_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sample: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let now = Instant::now();
        // A path sample every SAMPLE_INTERVAL (less a tick's slack), a look between.
        let full = last_sample.is_none_or(|t| {
            now.saturating_duration_since(t) + LISTEN_INTERVAL / 2 >= SAMPLE_INTERVAL
        });
        if full {
            last_sample = Some(now);
        }
        sample(&state, now, full);
    }
}

/// `router_moves_wanted_total` starts at 0 for every pair of configured origins and
/// every reason (two origins: 12 series), so a rate over it has a series before the
/// first move.
fn start_move_series(state: &EdgeState) {
    let origins: Vec<String> = state
        .upstreams
        .lane(0)
        .clients()
        .iter()
        .map(|c| c.peer().id.clone())
        .collect();
    for from in &origins {
        for to in origins.iter().filter(|to| *to != from) {
            for reason in longhaul_router::Reason::ALL {
                state
                    .metrics
                    .router_moves_wanted
                    .with_label_values(&[from, to, reason.as_str()]);
            }
        }
    }
}

/// One round, lane by lane: observations in (path samples when `full`, else the
/// received-datagram counters alone), changes and moves out; then the gauges, across
/// lanes: an origin is healthy when it is on every lane, and streams placed are summed.
pub fn sample(state: &EdgeState, now: Instant, full: bool) {
    let mut healthy: Vec<(String, bool)> = Vec::new();
    let mut placed: Vec<(String, Leg, usize)> = Vec::new();
    for lane in state.upstreams.lanes() {
        let (statuses, placements) = sample_lane(state, lane, now, full);
        for (origin, s) in statuses {
            let ok = matches!(s, Status::Healthy { .. });
            match healthy.iter_mut().find(|(o, _)| *o == origin) {
                Some((_, h)) => *h &= ok,
                None => healthy.push((origin, ok)),
            }
        }
        for (origin, leg, n) in placements {
            match placed
                .iter_mut()
                .find(|(o, l, _)| *o == origin && *l == leg)
            {
                Some((_, _, sum)) => *sum += n,
                None => placed.push((origin, leg, n)),
            }
        }
    }
    let m = &state.metrics;
    for (origin, ok) in healthy {
        m.router_origin_healthy
            .with_label_values(&[&origin])
            .set(i64::from(ok));
    }
    for (origin, leg, n) in placed {
        m.router_streams
            .with_label_values(&[&origin, leg.label()])
            .set(n as i64);
    }
}

/// What one lane's router says of each origin, and its streams placed per origin and leg.
type LaneView = (Vec<(String, Status)>, Vec<(String, Leg, usize)>);

/// One lane's round: its tunnels' observations into its router; the router's health
/// changes logged, its moves handed to the streams' relays.
fn sample_lane(state: &EdgeState, lane: &Lane, now: Instant, full: bool) -> LaneView {
    let (changes, moves, statuses, placements) = {
        let mut router = lane.router();
        for client in lane.clients() {
            let origin = client.peer().id.as_str();
            let link = client.link();
            router.tunnel(origin, status(client.state()), now);
            match link.path_sample() {
                Some(p) if full => {
                    let stats = PathStats {
                        rtt: p.rtt,
                        sent_packets: p.sent_packets,
                        lost_packets: p.lost_packets,
                        congestion_events: p.congestion_events,
                        received_datagrams: p.received_datagrams,
                    };
                    router.path(origin, stats, now);
                }
                Some(p) => router.listen(origin, p.received_datagrams, now),
                None => {}
            }
            if let Some(r) = link.peer_load() {
                let report = OriginReport {
                    healthy: r.healthy,
                    draining: r.draining,
                };
                router.report(origin, report, now);
            }
        }
        let changes = router.take_changes();
        let moves = router.moves(now);
        let statuses: Vec<(String, Status)> = router
            .statuses()
            .into_iter()
            .map(|(o, s)| (o.to_string(), s))
            .collect();
        let placements: Vec<(String, Leg, usize)> = router
            .placements()
            .into_iter()
            .map(|(o, l, n)| (o.to_string(), l, n))
            .collect();
        (changes, moves, statuses, placements)
    };
    let lane_index = lane.index();
    for c in changes {
        let trouble = c.to.trouble().map(|t| format!("{t:?}")).unwrap_or_default();
        match c.to {
            Status::Troubled { .. } => tracing::warn!(origin = %c.origin, lane = lane_index,
                from = c.from.as_str(), to = c.to.as_str(), %trouble,
                "router: origin in trouble; new publishes of its legs go elsewhere"),
            _ => tracing::info!(origin = %c.origin, lane = lane_index, from = c.from.as_str(),
                to = c.to.as_str(), %trouble, "router: origin health changed"),
        }
    }
    let m = &state.metrics;
    for mv in moves {
        tracing::info!(stream = mv.stream, leg = %mv.leg, from = %mv.from, to = %mv.to,
            reason = %mv.reason, when = ?mv.when, lane = lane_index,
            "router: a live stream should move");
        m.router_moves_wanted
            .with_label_values(&[&mv.from, &mv.to, mv.reason.as_str()])
            .inc();
        if let Some(steer) = state.relays.get(mv.stream) {
            steer.want(Wanted {
                to: mv.to,
                reason: mv.reason.as_str(),
                when: mv.when,
                since: now,
            });
        }
    }
    (statuses, placements)
}
