//! The origin's HTTP port: entries API, HTTP-FLV playback, `/metrics` and `/healthz`.
//!
//! One hyper HTTP/1.1 server; routing is a `match` on method and path segments, small
//! enough that a router crate would add more than it saves. Every error is a JSON body
//! `{"error": {"code": ..., "message": ...}}` with a fitting status, and is counted in
//! `longhaul_http_requests_total{route,status}`.

use crate::api;
use crate::flv;
use crate::state::OriginState;
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Response body: either a whole buffer or a stream (HTTP-FLV).
pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body the API reads. Entry requests are a few hundred bytes.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

/// Serves HTTP on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, state: Arc<OriginState>, shutdown: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let state = state.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(req, peer, &state).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(client = %peer, error = %e, "http connection ended with an error");
                },
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

async fn route(
    req: Request<Incoming>,
    peer: SocketAddr,
    state: &Arc<OriginState>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (route_label, response) = match (req.method(), segments.as_slice()) {
        (&Method::GET, ["healthz"]) => ("healthz", health(state)),
        (&Method::GET, ["metrics"]) => (
            "metrics",
            Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(full(state.metrics.render()))
                .expect("static response parts are valid"),
        ),
        (&Method::GET, ["live", file]) => ("live", flv::play(file, peer, state).await),
        (_, ["api", "v1", rest @ ..]) => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            ("api", api::handle(req, peer, &rest, state).await)
        }
        _ => (
            "unknown",
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no route for {} {}", req.method(), path),
            ),
        ),
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

/// A whole-buffer body.
pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(value.to_string()))
        .expect("static response parts are valid")
}

/// A JSON error response: `{"error": {"code": ..., "message": ...}}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": { "code": code, "message": message } }),
    )
}
