//! The HTTP/1.1 accept loop every node serves `/metrics` and `/healthz` from, and the
//! response builders its routes share.
//!
//! The loop caps open connections (`http.max_connections`; more are closed at accept
//! and counted in `connections_refused_total{transport="http"}`) and bounds the time a
//! client may take to send its headers (`http.header_timeout_secs`, the slowloris
//! guard). Routing is the node's: an `axum::Router`, which finds the client's address
//! and the connection's token in each request's extensions ([`Client`],
//! [`ConnectionToken`]). Errors are JSON bodies
//! `{"error": {"code": ..., "message": ...}}` with a fitting status.

use crate::accept::{reason, ACCEPT_ERROR_BACKOFF};
use crate::config::HttpSection;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::IntCounterVec;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::Instrument;

/// Response body: either a whole buffer or a stream (HTTP-FLV).
pub type Body = axum::body::Body;

/// The client's address, in every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Client(pub SocketAddr);

/// The connection's cancellation token, in every request's extensions. A route that
/// streams a body (HTTP-FLV) cancels it when its client stops reading, which drops the
/// connection and closes the socket (hyper would otherwise wait on the stalled write
/// for as long as TCP keeps the window shut).
#[derive(Debug, Clone)]
pub struct ConnectionToken(pub CancellationToken);

/// The `transport` label of HTTP connections in `connections_refused_total`.
pub const TRANSPORT: &str = "http";

/// Serves HTTP on `listener` until `shutdown` fires, answering each request with
/// `router`. Each connection gets a child of `shutdown` as its [`ConnectionToken`].
pub async fn serve(
    listener: TcpListener,
    settings: HttpSection,
    refused: IntCounterVec,
    shutdown: CancellationToken,
    router: axum::Router,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    let header_timeout = settings.header_timeout();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "http accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refused
                .with_label_values(&[TRANSPORT, reason::TOO_MANY_CONNECTIONS])
                .inc();
            tracing::warn!(client = %peer, limit = settings.max_connections,
                "HTTP connection refused: too many connections");
            continue;
        };
        let router = router.clone();
        let connection = shutdown.child_token();
        tokio::spawn(async move {
            let _permit = permit;
            let token = ConnectionToken(connection.clone());
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(Client(peer));
                req.extensions_mut().insert(token.clone());
                router.clone().oneshot(req.map(Body::new))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(client = %peer, error = %e, "http connection ended with an error");
                },
                _ = connection.cancelled() => {}
            }
        }.in_current_span());
    }
}

/// A whole-buffer body.
pub fn full(body: impl Into<Bytes>) -> Body {
    Body::from(body.into())
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

/// The `/metrics` response: a Prometheus text exposition.
pub fn metrics(exposition: String) -> Response<Body> {
    Response::builder()
        .header("content-type", "text/plain; version=0.0.4")
        .body(full(exposition))
        .expect("static response parts are valid")
}

/// The answer to a method a route does not take.
pub fn method_not_allowed(method: &hyper::Method, path: &str) -> Response<Body> {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("{method} is not a method of {path}"),
    )
}

/// The answer to a path no route knows.
pub fn not_found(method: &hyper::Method, path: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no route for {method} {path}"),
    )
}
