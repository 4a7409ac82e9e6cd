//! The origin's HTTP port: entries API, HTTP-FLV playback, `/metrics`, `/healthz` and
//! `/readyz`, and the speed test (`/speedtest`, `longhaul_node::speedtest`'s routes).
//!
//! `/healthz` is 200 while the node runs, draining or not (a liveness check: restarting
//! a draining origin would cut what it is waiting for). `/readyz` is 200 while the origin
//! takes new publishes, 503 once it drains (SIGTERM or `POST /api/v1/drain`), so a load
//! balancer or Kubernetes' readiness probe sends new encoders and players elsewhere at
//! once (`deploy/kubernetes/origin.yaml` probes both).
//!
//! The accept loop (connection cap, header timeout) is `longhaul_node::http`'s; routing
//! is an `axum::Router` ([`router`]), the API's part in [`crate::api`]. Every error is a
//! JSON body `{"error": {"code": ..., "message": ...}}` with a fitting status, and is
//! counted in `longhaul_http_requests_total{route,status}`.

use crate::api;
use crate::console;
use crate::flv;
use crate::state::OriginState;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::middleware::Next;
use axum::routing::get;
use axum::{Extension, Router};
use hyper::{Method, Response, StatusCode};
use longhaul_node::http::{
    full, json, method_not_allowed, metrics, not_found, Body, Client, ConnectionToken,
};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the origin's routes on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, state: Arc<OriginState>, shutdown: CancellationToken) {
    let settings = state.config.http.server.clone();
    let refused = state.metrics.connections.connections_refused.clone();
    longhaul_node::http::serve(listener, settings, refused, shutdown, router(state)).await
}

/// Every route of the origin's HTTP port.
pub fn router(state: Arc<OriginState>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|State(s): State<Arc<OriginState>>| async move { health(&s) }),
        )
        .route(
            "/readyz",
            get(|State(s): State<Arc<OriginState>>| async move { readiness(&s) }),
        )
        .route(
            "/metrics",
            get(|State(s): State<Arc<OriginState>>| async move { metrics(s.metrics.render()) }),
        )
        .route(
            "/live/{file}",
            get(play).options(|| async { with_cors(preflight()) }),
        )
        .nest("/api/v1", api::router(state.clone()))
        .merge(console::router(state.clone()))
        .merge(state.speedtest.routes())
        .fallback(|req: Request| async move { not_found(req.method(), req.uri().path()) })
        .method_not_allowed_fallback(|req: Request| async move {
            method_not_allowed(req.method(), req.uri().path())
        })
        .layer(axum::extract::DefaultBodyLimit::max(api::MAX_REQUEST_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// `GET`/`HEAD /live/{entryId}_{n}.flv`.
async fn play(
    State(state): State<Arc<OriginState>>,
    Path(file): Path<String>,
    method: Method,
    Extension(Client(peer)): Extension<Client>,
    Extension(ConnectionToken(connection)): Extension<ConnectionToken>,
) -> Response<Body> {
    with_cors(flv::play(&file, &method, peer, &state, connection).await)
}

/// Counts each request in `http_requests_total{route, status}` (route: `healthz`,
/// `readyz`, `metrics`, `live`, `api`, `console`, `speedtest`, `unknown`) and logs server errors.
async fn count(State(state): State<Arc<OriginState>>, req: Request, next: Next) -> Response<Body> {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let route = match matched.as_deref().unwrap_or(req.uri().path()) {
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        p if p.starts_with("/live/") => "live",
        p if p.starts_with("/api/") => "api",
        p if p == "/console" || p.starts_with("/console/") => "console",
        p if p == "/speedtest" || p.starts_with("/speedtest/") => "speedtest",
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
    if response.status().is_server_error() {
        tracing::warn!(client = ?client, %path, status = %response.status(), "http request failed");
    }
    response
}

/// Lets browser players (flv.js, mpegts.js) on any site fetch the live streams: they are
/// public, cookie-less GETs, so any origin may read them.
fn with_cors(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(
        hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN,
        hyper::header::HeaderValue::from_static("*"),
    );
    response
}

/// The answer to a CORS preflight for playback.
fn preflight() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header("access-control-allow-methods", "GET, HEAD, OPTIONS")
        .header("access-control-allow-headers", "range")
        .header("access-control-max-age", "86400")
        .body(full(""))
        .expect("static response parts are valid")
}

/// `/healthz`: 200 with `status` `ok`, or `degraded` while the entries database is
/// unreachable (publishes are still decided, from memory: the node should stay in its
/// load balancer's pool, but an operator should know).
fn health(state: &OriginState) -> Response<Body> {
    // Where the database is and its last error stay in the logs: this port is public
    // (players fetch HTTP-FLV from it).
    let registry = state.registry.as_ref().map(|r| {
        let s = r.status();
        serde_json::json!({
            "backend": s.store.backend,
            "state": s.state.as_str(),
            "since": s.since.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            "entries": s.entries,
        })
    });
    let degraded = registry
        .as_ref()
        .is_some_and(|r| r["state"] != longhaul_registry::StoreState::Connected.as_str());
    json(
        StatusCode::OK,
        &serde_json::json!({
            "status": if degraded { "degraded" } else { "ok" },
            "node": state.config.node.id,
            "region": state.config.node.region,
            "role": "origin",
            "version": env!("CARGO_PKG_VERSION"),
            "streams": state.hub.streams().len(),
            "registry": registry,
            "auth": if state.callback.is_some() { "callback" } else { "registry" },
        }),
    )
}

/// `/readyz`: 200 `{"ready": true, ...}` while the origin takes new publishes, 503
/// `{"ready": false, "reason": "draining", ...}` once it drains. A degraded registry
/// leaves it ready, as `/healthz` says why: publishes are still decided, from memory.
fn readiness(state: &OriginState) -> Response<Body> {
    let draining = state.draining.is_cancelled();
    let code = if draining {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json(
        code,
        &serde_json::json!({
            "ready": !draining,
            "reason": if draining { Some("draining") } else { None },
            "node": state.config.node.id,
            "role": "origin",
        }),
    )
}
