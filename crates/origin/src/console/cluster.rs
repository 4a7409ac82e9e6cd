//! The cluster page's view, filled from this origin's state: its tunnels (edges and
//! peer origins), the renditions' switches, and the refusals its metrics count.

use super::access::Visitor;
use super::{frame, html, secs};
use crate::state::OriginState;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use hyper::StatusCode;
use longhaul_console::cluster::{ClusterView, FailoverRow, NodeRow, RefusalRow, TunnelRow};
use std::sync::Arc;

/// What the cluster page shows, from this origin's state.
fn cluster_view(state: &OriginState) -> ClusterView {
    use prometheus::core::Collector;
    let peers: Vec<&str> = state
        .config
        .peering
        .peers
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    let (mut origins, mut edges) = (Vec::new(), Vec::new());
    for t in state.tunnels.snapshots() {
        let row = TunnelRow {
            rtt_ms: t.srtt.map(|d| d.as_secs_f64() * 1e3),
            loss_percent: if t.sent_packets == 0 {
                0.0
            } else {
                t.lost_packets as f64 * 100.0 / t.sent_packets as f64
            },
            state: t.state.as_str(),
            streams: t.open_streams,
            reconnects: t.reconnects,
            report: t.peer_load.as_ref().map(|r| {
                let health = match (r.draining, r.healthy) {
                    (true, _) => "draining",
                    (false, true) => "healthy",
                    (false, false) => "unhealthy",
                };
                (health, r.publishers)
            }),
            lane: t.lane,
            region: t.peer_region,
            peer: t.peer,
        };
        if peers.contains(&row.peer.as_str()) {
            origins.push(row);
        } else {
            edges.push(row);
        }
    }
    edges.sort_by(|a, b| (&a.region, &a.peer, a.lane).cmp(&(&b.region, &b.peer, b.lane)));
    origins.sort_by(|a, b| a.peer.cmp(&b.peer));

    let failovers: Vec<FailoverRow> = state
        .hub
        .recent_switches()
        .into_iter()
        .map(|r| FailoverRow {
            at: secs(r.at),
            rendition: r.name,
            from: r.switch.from.map(|l| l.as_str()),
            to: r.switch.to.as_str(),
            reason: r.switch.reason.as_str(),
        })
        .collect();

    let mut refusals: std::collections::BTreeMap<(&'static str, String), u64> = Default::default();
    for family in state.metrics.publishes.collect() {
        for m in family.get_metric() {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_owned())
            };
            if label("outcome").as_deref() == Some("rejected") {
                let reason = label("reason").unwrap_or_default();
                *refusals.entry(("publish", reason)).or_default() +=
                    m.get_counter().get_value() as u64;
            }
        }
    }
    for (reason, n) in state.tunnels.refusals() {
        if n > 0 {
            *refusals
                .entry(("tunnel handshake", reason.to_owned()))
                .or_default() += n;
        }
    }
    for reason in super::refusal::ALL {
        let n = state
            .metrics
            .console_refusals
            .with_label_values(&[reason])
            .get();
        if n > 0 {
            refusals.insert(("console", reason.to_owned()), n);
        }
    }
    let registry = match (&state.registry, &state.callback) {
        (Some(r), _) => {
            let s = r.status();
            format!(
                "{} {}, {} entries",
                s.store.backend,
                s.state.as_str(),
                s.entries
            )
        }
        (None, Some(_)) => "callback".into(),
        (None, None) => "-".into(),
    };
    ClusterView {
        node: NodeRow {
            id: state.config.node.id.clone(),
            region: state.config.node.region.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            state: if state.draining.is_cancelled() {
                "draining".into()
            } else {
                "serving".into()
            },
            registry,
            streams: state.hub.streams().len(),
            publishers: state.metrics.publishers_active.get(),
            players: [
                crate::metrics::protocol::RTMP,
                crate::metrics::protocol::HTTP_FLV,
            ]
            .iter()
            .map(|p| state.metrics.players_active.with_label_values(&[p]).get())
            .sum(),
        },
        edges,
        origins,
        failovers,
        resumes: ["continued", "moved_here"]
            .iter()
            .map(|how| {
                (
                    (*how).to_owned(),
                    state.metrics.tunnel_resumes.with_label_values(&[how]).get(),
                )
            })
            .collect(),
        refusals: refusals
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|((what, reason), count)| RefusalRow {
                what,
                reason,
                count,
            })
            .collect(),
    }
}

/// `GET /console/cluster`.
pub(crate) async fn page(
    State(state): State<Arc<OriginState>>,
    Extension(visitor): Extension<Visitor>,
) -> Response {
    html(
        StatusCode::OK,
        longhaul_console::cluster::cluster_page(
            &frame(&state, Some(&visitor)),
            &cluster_view(&state),
        ),
    )
}

/// `GET /console/cluster/live`: the part of the page the script refreshes.
pub(crate) async fn live(State(state): State<Arc<OriginState>>) -> Response {
    html(
        StatusCode::OK,
        longhaul_console::cluster::cluster_fragment(&cluster_view(&state)),
    )
}
