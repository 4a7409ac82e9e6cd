//! The edge's HTTP port: `/metrics` and `/healthz`, nothing else.
//!
//! `/healthz` says whether the edge can do its job, which is to reach origins:
//!
//! ```json
//! {"status": "ok", "node": "fra-1", "region": "fra", "role": "edge", "version": "0.1.0",
//!  "publishers": 3, "connections": 4,
//!  "tunnels": [{"origin": "nyc-1", "region": "nyc", "primary": true, "state": "connected",
//!               "srtt_ms": 92.4, "open_streams": 3, "reconnects": 0}, ...]}
//! ```
//!
//! `status` is `ok` (HTTP 200) with every tunnel connected, `degraded` (200) with some,
//! `unavailable` (503) with none: a load balancer should send encoders elsewhere then,
//! as every publish here would be refused. The accept loop (connection cap, header
//! timeout) is `longhaul_node::http`'s.

use crate::state::EdgeState;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use longhaul_node::http::{json, metrics, not_found, Body};
use longhaul_tunnel::TunnelState;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the edge's routes on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, state: Arc<EdgeState>, shutdown: CancellationToken) {
    let settings = state.config.http.clone();
    let refused = state.metrics.connections.connections_refused.clone();
    longhaul_node::http::serve(
        listener,
        settings,
        refused,
        shutdown,
        move |req, peer, _| {
            let state = state.clone();
            async move { route(&req, peer, &state) }
        },
    )
    .await
}

fn route(req: &Request<Incoming>, peer: SocketAddr, state: &EdgeState) -> Response<Body> {
    let path = req.uri().path();
    let method = req.method();
    let read = method == Method::GET || method == Method::HEAD;
    let (route, response) = match path.trim_matches('/') {
        "healthz" if read => ("healthz", health(state)),
        "metrics" if read => ("metrics", metrics(state.metrics.render())),
        _ => ("unknown", not_found(method, path)),
    };
    state
        .metrics
        .http_requests
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    if route == "unknown" {
        tracing::debug!(client = %peer, %path, "http request for an unknown route");
    }
    response
}

/// The health document; see the module documentation.
pub fn health(state: &EdgeState) -> Response<Body> {
    let primary = &state.config.tunnel.primary;
    let snapshots = state.upstreams.set().snapshots();
    let connected = snapshots
        .iter()
        .filter(|s| s.state == TunnelState::Connected)
        .count();
    let (status, code) = match connected {
        0 => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
        n if n == snapshots.len() => ("ok", StatusCode::OK),
        _ => ("degraded", StatusCode::OK),
    };
    let tunnels: Vec<_> = snapshots
        .iter()
        .map(|s| {
            serde_json::json!({
                "origin": s.peer,
                "region": s.peer_region,
                "primary": &s.peer == primary,
                "state": s.state.as_str(),
                "srtt_ms": s.srtt.map(|d| d.as_secs_f64() * 1000.0),
                "open_streams": s.open_streams,
                "reconnects": s.reconnects,
            })
        })
        .collect();
    json(
        code,
        &serde_json::json!({
            "status": status,
            "node": state.config.node.id,
            "region": state.config.node.region,
            "role": "edge",
            "version": env!("CARGO_PKG_VERSION"),
            "publishers": state.metrics.publishers_active.get(),
            "connections": state.connections.open_connections(),
            "tunnels": tunnels,
        }),
    )
}
