//! The cluster page: this origin, the tunnels it holds (every edge lane and peer origin,
//! with state and RTT), streams per node, recent failovers and refusals by reason, as
//! this origin sees them. The script refreshes it every 2 s.

use crate::layout::{date, page, Frame, Section};
use maud::{html, Markup};

/// What the cluster page shows.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub node: NodeRow,
    /// Tunnels from edges (one per edge lane).
    pub edges: Vec<TunnelRow>,
    /// Tunnels to peer origins.
    pub origins: Vec<TunnelRow>,
    /// The latest switches between legs here, newest first, ended renditions' included.
    pub failovers: Vec<FailoverRow>,
    /// Tunnel publishes resumed here: `continued` (the same origin) and `moved_here`.
    pub resumes: Vec<(String, u64)>,
    /// Refusals since the node started, by what was refused and why.
    pub refusals: Vec<RefusalRow>,
}

/// This origin.
#[derive(Debug, Clone, Default)]
pub struct NodeRow {
    pub id: String,
    pub region: String,
    pub version: String,
    /// `serving` or `draining`.
    pub state: String,
    /// The entries database: `sqlite connected`, `postgres unreachable`, or `callback`.
    pub registry: String,
    pub streams: usize,
    pub publishers: i64,
    pub players: i64,
}

/// One tunnel.
#[derive(Debug, Clone, Default)]
pub struct TunnelRow {
    pub peer: String,
    pub region: String,
    pub lane: u16,
    /// `connected`, `connecting`, `reconnecting`, `down`.
    pub state: &'static str,
    pub rtt_ms: Option<f64>,
    /// Packets declared lost over the tunnel's life, in percent of those sent.
    pub loss_percent: f64,
    /// Publish streams open on it now (pull streams, between origins).
    pub streams: i64,
    pub reconnects: u64,
    /// The peer's last report on the tunnel (origins report; edges do not):
    /// `healthy`, `unhealthy` or `draining`, and the streams published there.
    pub report: Option<(&'static str, u64)>,
}

/// A switch between a rendition's legs.
#[derive(Debug, Clone, Default)]
pub struct FailoverRow {
    pub at: u64,
    pub rendition: String,
    pub from: Option<&'static str>,
    pub to: &'static str,
    pub reason: &'static str,
}

/// Refusals of one kind.
#[derive(Debug, Clone, Default)]
pub struct RefusalRow {
    /// `publish`, `tunnel handshake`, `rtsp request`.
    pub what: &'static str,
    pub reason: String,
    pub count: u64,
}

/// The cluster page.
pub fn cluster_page(frame: &Frame, view: &ClusterView) -> Markup {
    let body = html! {
        h1 { "Cluster" }
        div id="cluster" data-refresh="/console/cluster/live" {
            (cluster_fragment(view))
        }
    };
    page(frame, Section::Cluster, "Cluster", body)
}

/// The part of the cluster page the script refreshes.
pub fn cluster_fragment(view: &ClusterView) -> Markup {
    let n = &view.node;
    html! {
        section aria-labelledby="this-origin" {
            h2 id="this-origin" { "This origin" }
            table role="table" {
                thead role="rowgroup" { tr role="row" {
                    th scope="col" role="columnheader" { "Node" } th scope="col" role="columnheader" { "Region" } th scope="col" role="columnheader" { "State" }
                    th scope="col" role="columnheader" { "Entries" } th scope="col" role="columnheader" { "Streams" } th scope="col" role="columnheader" { "Publishers" }
                    th scope="col" role="columnheader" { "Players" } th scope="col" role="columnheader" { "Version" }
                } }
                tbody role="rowgroup" { tr role="row" {
                    td role="cell" data-label="Node" { (n.id) }
                    td role="cell" data-label="Region" { (n.region) }
                    td role="cell" data-label="State" { (n.state) }
                    td role="cell" data-label="Entries" { (n.registry) }
                    td role="cell" data-label="Streams" { (n.streams) }
                    td role="cell" data-label="Publishers" { (n.publishers) }
                    td role="cell" data-label="Players" { (n.players) }
                    td role="cell" data-label="Version" { (n.version) }
                } }
            }
        }
        section aria-labelledby="edges" {
            h2 id="edges" { "Edges" }
            (tunnels(&view.edges, "No edge has a tunnel to this origin."))
        }
        section aria-labelledby="origins" {
            h2 id="origins" { "Peer origins" }
            p class="muted" { "Streams here are pulls: legs one origin sends the other while it has viewers for them." }
            (tunnels(&view.origins, "This origin peers with no other."))
        }
        section aria-labelledby="failovers" {
            h2 id="failovers" { "Recent failovers" }
            @if view.failovers.is_empty() {
                p class="muted" { "No rendition has switched legs here since the origin started." }
            } @else {
                table role="table" {
                    thead role="rowgroup" { tr role="row" { th scope="col" role="columnheader" { "When" } th scope="col" role="columnheader" { "Rendition" } th scope="col" role="columnheader" { "Switch" } th scope="col" role="columnheader" { "Why" } } }
                    tbody role="rowgroup" {
                        @for f in &view.failovers {
                            tr role="row" {
                                td role="cell" data-label="When" { (date(f.at)) }
                                td role="cell" data-label="Rendition" { code { (f.rendition) } }
                                td role="cell" data-label="Switch" { (f.from.unwrap_or("-")) " → " (f.to) }
                                td role="cell" data-label="Why" { (f.reason.replace('_', " ")) }
                            }
                        }
                    }
                }
            }
            @if view.resumes.iter().any(|(_, n)| *n > 0) {
                p {
                    "Streams an edge resumed here without its encoder noticing: "
                    @for (i, (how, count)) in view.resumes.iter().enumerate() {
                        @if i > 0 { ", " }
                        (count) " " (how.replace('_', " "))
                    }
                    "."
                }
            }
        }
        section aria-labelledby="refusals" {
            h2 id="refusals" { "Refusals since start" }
            @if view.refusals.is_empty() {
                p class="muted" { "Nothing has been refused." }
            } @else {
                table role="table" {
                    thead role="rowgroup" { tr role="row" { th scope="col" role="columnheader" { "What" } th scope="col" role="columnheader" { "Reason" } th scope="col" role="columnheader" { "Count" } } }
                    tbody role="rowgroup" {
                        @for r in &view.refusals {
                            tr role="row" data-reason=(r.reason) {
                                td role="cell" data-label="What" { (r.what) }
                                td role="cell" data-label="Reason" { (r.reason.replace('_', " ")) }
                                td role="cell" data-label="Count" { (r.count) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn tunnels(rows: &[TunnelRow], none: &str) -> Markup {
    let with_report = rows.iter().any(|t| t.report.is_some());
    html! {
        @if rows.is_empty() {
            p class="muted" { (none) }
        } @else {
            table role="table" {
                thead role="rowgroup" { tr role="row" {
                    th scope="col" role="columnheader" { "Node" } th scope="col" role="columnheader" { "Region" } th scope="col" role="columnheader" { "Lane" }
                    th scope="col" role="columnheader" { "Tunnel" } th scope="col" role="columnheader" { "RTT" } th scope="col" role="columnheader" { "Loss" }
                    th scope="col" role="columnheader" { "Streams" } th scope="col" role="columnheader" { "Reconnects" }
                    @if with_report { th scope="col" role="columnheader" { "Its report" } }
                } }
                tbody role="rowgroup" {
                    @for t in rows {
                        tr role="row" data-peer=(t.peer) data-state=(t.state) {
                            td role="cell" data-label="Node" { (t.peer) }
                            td role="cell" data-label="Region" { (t.region) }
                            td role="cell" data-label="Lane" { (t.lane) }
                            td role="cell" data-label="Tunnel" { span class={ "state-" (t.state) } { (t.state) } }
                            td role="cell" data-label="RTT" { @match t.rtt_ms { Some(ms) => (format!("{ms:.1} ms")), None => "-" } }
                            td role="cell" data-label="Loss" { (format!("{:.2} %", t.loss_percent)) }
                            td role="cell" data-label="Streams" { (t.streams) }
                            td role="cell" data-label="Reconnects" { (t.reconnects) }
                            @if with_report {
                                td role="cell" data-label="Its report" {
                                    @match t.report {
                                        Some((health, publishers)) => { (health) ", " (publishers) " publishing" }
                                        None => "-",
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_shows_tunnels_failovers_and_refusals() {
        let view = ClusterView {
            node: NodeRow {
                id: "nyc-1".into(),
                region: "nyc".into(),
                state: "serving".into(),
                streams: 2,
                ..NodeRow::default()
            },
            edges: vec![TunnelRow {
                peer: "fra-p".into(),
                region: "fra".into(),
                state: "connected",
                rtt_ms: Some(91.46),
                streams: 2,
                ..TunnelRow::default()
            }],
            failovers: vec![FailoverRow {
                at: 1_796_507_403,
                rendition: "1_gdrt137u_1".into(),
                from: Some("p"),
                to: "b",
                reason: "leg_gone",
            }],
            refusals: vec![RefusalRow {
                what: "publish",
                reason: "wrong_token".into(),
                count: 4,
            }],
            ..ClusterView::default()
        };
        let frame = Frame {
            node: "nyc-1",
            region: "nyc",
            csrf: None,
            can_sign_out: false,
        };
        let html = cluster_page(&frame, &view).into_string();
        assert!(html.contains("data-peer=\"fra-p\" data-state=\"connected\""));
        assert!(html.contains("91.5 ms"));
        assert!(html.contains("p → b") && html.contains("leg gone"));
        assert!(html.contains("wrong token") && html.contains(">4<"));
        assert!(html.contains("This origin peers with no other."));
    }
}
