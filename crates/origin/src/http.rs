//! The origin's HTTP port: entries API, HTTP-FLV playback, `/metrics` and `/healthz`.
//!
//! The accept loop (connection cap, header timeout) is `longhaul_node::http`'s; routing
//! is a `match` on method and path segments, small enough that a router crate would add
//! more than it saves. Every error is a JSON body
//! `{"error": {"code": ..., "message": ...}}` with a fitting status, and is counted in
//! `longhaul_http_requests_total{route,status}`.

use crate::api;
use crate::flv;
use crate::state::OriginState;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use longhaul_node::http::{full, json, metrics, not_found, Body};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the origin's routes on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, state: Arc<OriginState>, shutdown: CancellationToken) {
    let settings = state.config.http.server.clone();
    let refused = state.metrics.connections.connections_refused.clone();
    longhaul_node::http::serve(
        listener,
        settings,
        refused,
        shutdown,
        move |req, peer, connection| {
            let state = state.clone();
            async move { route(req, peer, &state, connection).await }
        },
    )
    .await
}

async fn route(
    req: Request<Incoming>,
    peer: SocketAddr,
    state: &Arc<OriginState>,
    connection: CancellationToken,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    let read = method == Method::GET || method == Method::HEAD;
    let (route_label, response) = match segments.as_slice() {
        ["healthz"] if read => ("healthz", health(state)),
        ["metrics"] if read => ("metrics", metrics(state.metrics.render())),
        ["live", file] if read => {
            let response = flv::play(file, &method, peer, state, connection).await;
            ("live", with_cors(response))
        }
        ["live", _] if method == Method::OPTIONS => ("live", with_cors(preflight())),
        ["api", "v1", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            ("api", api::handle(req, peer, &rest, state).await)
        }
        _ => ("unknown", not_found(&method, &path)),
    };
    state
        .metrics
        .http_requests
        .with_label_values(&[route_label, response.status().as_str()])
        .inc();
    if response.status().is_server_error() {
        tracing::warn!(client = %peer, %path, status = %response.status(), "http request failed");
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

fn health(state: &OriginState) -> Response<Body> {
    json(
        StatusCode::OK,
        &serde_json::json!({
            "status": "ok",
            "node": state.config.node.id,
            "region": state.config.node.region,
            "role": "origin",
            "version": env!("CARGO_PKG_VERSION"),
            "streams": state.hub.streams().len(),
        }),
    )
}
