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
use hyper_util::rt::{TokioIo, TokioTimer};
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
///
/// Each connection gets a child cancellation token: the HTTP-FLV writer cancels it when
/// its player stops reading, which drops the connection and closes the socket (hyper
/// would otherwise wait on the stalled write for as long as TCP keeps the window shut).
pub async fn serve(listener: TcpListener, state: Arc<OriginState>, shutdown: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(
        state.config.http.max_connections,
    ));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            state
                .metrics
                .connections_refused
                .with_label_values(&["http", "too_many_connections"])
                .inc();
            tracing::warn!(client = %peer, limit = state.config.http.max_connections,
                "HTTP connection refused: too many connections");
            continue;
        };
        let state = state.clone();
        let connection = shutdown.child_token();
        tokio::spawn(async move {
            let _permit = permit;
            let token = connection.clone();
            let service_state = state.clone();
            let service = hyper::service::service_fn(move |req| {
                let state = service_state.clone();
                let token = token.clone();
                async move { Ok::<_, Infallible>(route(req, peer, &state, token).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(state.config.http.header_timeout())
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(client = %peer, error = %e, "http connection ended with an error");
                },
                _ = connection.cancelled() => {}
            }
        });
    }
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
        ["metrics"] if read => (
            "metrics",
            Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(full(state.metrics.render()))
                .expect("static response parts are valid"),
        ),
        ["live", file] if read => {
            let response = flv::play(file, &method, peer, state, connection).await;
            ("live", with_cors(response))
        }
        ["live", _] if method == Method::OPTIONS => ("live", with_cors(preflight())),
        ["api", "v1", rest @ ..] => {
            let rest: Vec<String> = rest.iter().map(|s| s.to_string()).collect();
            ("api", api::handle(req, peer, &rest, state).await)
        }
        _ => (
            "unknown",
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no route for {method} {path}"),
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
