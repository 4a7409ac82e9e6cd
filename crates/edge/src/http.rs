//! The edge's HTTP port: `/metrics`, `/healthz`, the probes `/livez` and `/readyz`, and
//! the speed test (`/speedtest`, `longhaul_node::speedtest`'s routes), nothing else. A
//! request for the entries API (`/api/...`, what `longhaul entry --api` sends) is
//! answered with a JSON 404 that says this is an edge and names the origins that serve
//! the API, so a client pointed at the wrong node learns where to go.
//!
//! `/healthz` says whether the edge can do its job, which is to reach origins:
//!
//! ```json
//! {"status": "ok", "node": "fra-1", "region": "fra", "role": "edge", "version": "0.1.0",
//!  "publishers": 3, "connections": 4, "legs": {"primary": true, "backup": true},
//!  "routes": {"primary": {"origin": "nyc-1", "preferred": "nyc-1", "reason": null},
//!             "backup": {"origin": "nyc-1", "preferred": "pao-1", "reason": "origin_down"}},
//!  "tunnels": [{"origin": "nyc-1", "region": "nyc", "lane": 0, "primary": true,
//!               "state": "connected", "healthy": true, "srtt_ms": 92.4,
//!               "open_streams": 3, "reconnects": 0}, ...]}
//! ```
//!
//! `routes` says where the router sends each leg's new publishes now, and why not to its
//! preferred origin; `legs` says which legs can be published now (the tunnel to the
//! origin the router picks for it is connected). An edge on several shards lists each
//! shard's tunnels (`lane`), each with its lane's router's judgement; `routes` and `legs`
//! are lane 0's.
//! `status` is `ok` (HTTP 200) with both, `degraded` (200) with only leg p, `unavailable`
//! (503) without leg p: every encoder's default leg would be refused, so a load balancer
//! should send encoders elsewhere. The accept loop (connection cap, header timeout) is
//! `longhaul_node::http`'s.
//!
//! For Kubernetes (`deploy/kubernetes/edge.yaml`) and load balancers that tell liveness
//! from readiness:
//! - `/readyz` is 200 while the edge takes new publishes: 503 with `reason` `draining`
//!   once it drains (SIGTERM), or `unavailable` when `/healthz` is 503. Its pod then
//!   leaves the Service, and new encoders go to another edge.
//! - `/livez` is 200 while the node answers HTTP at all. `/healthz` is no liveness check
//!   for an edge: it is 503 while no origin can be reached, which a restart cannot mend,
//!   and a liveness probe on it would restart every edge through an origin outage.

use crate::state::EdgeState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::routing::get;
use hyper::{Response, StatusCode};
use longhaul_endpoint::Leg;
use longhaul_node::http::{json, method_not_allowed, metrics, not_found, Body, Client};
use longhaul_tunnel::TunnelState;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the edge's routes on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, state: Arc<EdgeState>, shutdown: CancellationToken) {
    let settings = state.config.http.clone();
    let refused = state.metrics.connections.connections_refused.clone();
    longhaul_node::http::serve(listener, settings, refused, shutdown, router(state)).await
}

/// `/healthz`, `/livez`, `/readyz` and `/metrics` (GET and HEAD), `/speedtest`;
/// anything else is a JSON 404.
pub fn router(state: Arc<EdgeState>) -> axum::Router {
    axum::Router::new()
        .route(
            "/healthz",
            get(|State(s): State<Arc<EdgeState>>| async move { health(&s) }),
        )
        .route(
            "/livez",
            get(|State(s): State<Arc<EdgeState>>| async move { liveness(&s) }),
        )
        .route(
            "/readyz",
            get(|State(s): State<Arc<EdgeState>>| async move { readiness(&s) }),
        )
        .route(
            "/metrics",
            get(|State(s): State<Arc<EdgeState>>| async move { metrics(s.metrics.render()) }),
        )
        .route(
            "/api",
            axum::routing::any(|State(s): State<Arc<EdgeState>>| async move { not_an_origin(&s) }),
        )
        .route(
            "/api/{*rest}",
            axum::routing::any(|State(s): State<Arc<EdgeState>>| async move { not_an_origin(&s) }),
        )
        .merge(state.speedtest.routes())
        .fallback(|req: Request| async move { not_found(req.method(), req.uri().path()) })
        .method_not_allowed_fallback(|req: Request| async move {
            method_not_allowed(req.method(), req.uri().path())
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// The answer to an API request: this node is an edge; the origins serve the API.
fn not_an_origin(state: &EdgeState) -> Response<Body> {
    let node = &state.config.node;
    let origins: Vec<String> = state
        .config
        .tunnel
        .origins
        .iter()
        .map(|o| format!("{} ({}, tunnel {})", o.id, o.region, o.addr))
        .collect();
    let message = format!(
        "this is edge {} ({}), which serves no API; entries are managed at an origin's HTTP \
         port: {}",
        node.id,
        node.region,
        origins.join(", ")
    );
    longhaul_node::http::error(StatusCode::NOT_FOUND, "not_an_origin", &message)
}

/// Counts each request in `http_requests_total{route, status}`.
async fn count(State(state): State<Arc<EdgeState>>, req: Request, next: Next) -> Response<Body> {
    let route = match req.uri().path().trim_matches('/') {
        "healthz" => "healthz",
        "livez" => "livez",
        "readyz" => "readyz",
        "metrics" => "metrics",
        p if p == "api" || p.starts_with("api/") => "api",
        p if p == "speedtest" || p.starts_with("speedtest/") => "speedtest",
        _ => "unknown",
    };
    let client = req.extensions().get::<Client>().map(|c| c.0);
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    state
        .metrics
        .http_requests
        .with_label_values(&[route, response.status().as_str()])
        .inc();
    if route == "unknown" {
        tracing::debug!(client = ?client, %path, "http request for an unknown route");
    }
    response
}

/// `/livez`: 200 while the node answers HTTP; see the module documentation.
fn liveness(state: &EdgeState) -> Response<Body> {
    json(
        StatusCode::OK,
        &serde_json::json!({ "live": true, "node": state.config.node.id, "role": "edge" }),
    )
}

/// `/readyz`: 200 while the edge takes new publishes, 503 while it drains or while
/// `/healthz` is 503 (no origin for leg p); see the module documentation.
fn readiness(state: &EdgeState) -> Response<Body> {
    let reason = if state.draining.is_cancelled() {
        Some("draining")
    } else if health(state).status() == StatusCode::SERVICE_UNAVAILABLE {
        Some("unavailable")
    } else {
        None
    };
    let code = match reason {
        Some(_) => StatusCode::SERVICE_UNAVAILABLE,
        None => StatusCode::OK,
    };
    json(
        code,
        &serde_json::json!({
            "ready": reason.is_none(),
            "reason": reason,
            "node": state.config.node.id,
            "role": "edge",
        }),
    )
}

/// The health document; see the module documentation.
pub fn health(state: &EdgeState) -> Response<Body> {
    let tunnel = &state.config.tunnel;
    let primary = &tunnel.primary;
    let snapshots = state.upstreams.set().snapshots();
    // Routes as lane 0 would take them (every lane's router sees the same origins, over
    // paths of its own); each tunnel's health as its lane's router judges it.
    let now = std::time::Instant::now();
    let routes = {
        let mut router = state.upstreams.lane(0).router();
        Leg::ALL.map(|leg| router.choose(leg, now))
    };
    let healthy: Vec<(String, u16, bool)> = state
        .upstreams
        .lanes()
        .iter()
        .flat_map(|lane| {
            let router = lane.router();
            router
                .statuses()
                .into_iter()
                .map(|(o, s)| (o.to_string(), lane.index(), s.rank() == 0))
                .collect::<Vec<_>>()
        })
        .collect();
    let up = |choice: &longhaul_router::Choice| {
        snapshots
            .iter()
            .any(|s| s.peer == choice.origin && s.lane == 0 && s.state == TunnelState::Connected)
    };
    let (primary_up, backup_up) = (up(&routes[0]), up(&routes[1]));
    // A leg whose routed origin is unreachable (none is) is refused; with leg p (every
    // encoder's default) refused, the edge must leave a load balancer's pool.
    let (status, code) = match (primary_up, backup_up) {
        (true, true) => ("ok", StatusCode::OK),
        (true, false) => ("degraded", StatusCode::OK),
        (false, _) => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
    };
    let route = |c: &longhaul_router::Choice| {
        serde_json::json!({
            "origin": c.origin,
            "preferred": c.preferred,
            "reason": c.reason.map(|r| r.as_str()),
        })
    };
    let tunnels: Vec<_> = snapshots
        .iter()
        .map(|s| {
            serde_json::json!({
                "origin": s.peer,
                "region": s.peer_region,
                "lane": s.lane,
                "primary": &s.peer == primary,
                "state": s.state.as_str(),
                "healthy": healthy.iter().any(|(o, l, h)| *o == s.peer && *l == s.lane && *h),
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
            "legs": { "primary": primary_up, "backup": backup_up },
            "routes": { "primary": route(&routes[0]), "backup": route(&routes[1]) },
            "tunnels": tunnels,
        }),
    )
}
