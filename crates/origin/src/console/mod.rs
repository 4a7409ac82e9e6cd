//! The web console at `/console/`: `longhaul_console`'s pages, filled from this
//! origin's registry, hub and tunnels, behind its sessions.
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/console/` | to the entries |
//! | GET, POST | `/console/sign-in` | the API key, exchanged for a session cookie |
//! | POST | `/console/sign-out` | ends the session |
//! | GET | `/console/entries?q=` | list and search; POST creates |
//! | GET | `/console/entries/{id}?reveal=1` | an entry's page (`reveal`: tokens shown, logged) |
//! | GET | `/console/entries/{id}/live` | its live renditions (the part the script refreshes) |
//! | GET | `/console/entries/{id}/endpoints.json` | its endpoints with the token, for the copy buttons (logged) |
//! | GET | `/console/entries/{id}/fmle.xml` | the FMLE profile |
//! | GET, POST | `/console/entries/{id}/regenerate` | the confirmation; POST regenerates the token |
//! | GET, POST | `/console/entries/{id}/delete` | the confirmation; POST deletes |
//! | GET | `/console/cluster`, `/console/cluster/live` | the cluster page, and its refreshed part |
//! | GET | `/console/assets/console.css`, `console.js` | the console's own stylesheet and script |
//!
//! Access is [`longhaul_console::session`]'s: with `http.api_token` set, a session from
//! signing in with it; without one, loopback only. Every POST carries the session's
//! CSRF token. Refusals get a page saying why with a fitting status, a log line with
//! the client, and `console_refusals_total{reason}`; every change is logged with the
//! caller, as the API logs it. Pages are `no-store`, framed by no one, and load nothing
//! but this node's stylesheet and script (`Content-Security-Policy`).

mod access;
mod cluster;
mod entries;

pub use access::{access_request, refusal, ConsoleSessions};

use crate::state::OriginState;
use access::Visitor;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{HeaderMap, StatusCode};
use longhaul_console::layout::{self, Frame};
use longhaul_console::Markup;
use std::sync::Arc;

/// The console's routes, at their full paths (`/console/...`).
pub fn router(state: Arc<OriginState>) -> Router<Arc<OriginState>> {
    let guarded = Router::new()
        .route("/console/entries", get(entries::list).post(entries::create))
        .route("/console/entries/{id}", get(entries::show))
        .route("/console/entries/{id}/live", get(entries::live))
        .route(
            "/console/entries/{id}/endpoints.json",
            get(entries::endpoints_json),
        )
        .route("/console/entries/{id}/fmle.xml", get(entries::fmle))
        .route(
            "/console/entries/{id}/regenerate",
            get(entries::confirm_regenerate).post(entries::regenerate),
        )
        .route(
            "/console/entries/{id}/delete",
            get(entries::confirm_delete).post(entries::delete),
        )
        .route("/console/cluster", get(cluster::page))
        .route("/console/cluster/live", get(cluster::live))
        .layer(axum::middleware::from_fn_with_state(state, access::admit));
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/entries") }),
        )
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/entries") }),
        )
        .route(
            "/console/sign-in",
            get(access::sign_in_form).post(access::sign_in),
        )
        .route(
            "/console/sign-out",
            get(access::sign_out).post(access::sign_out),
        )
        .route("/console/{*rest}", axum::routing::any(no_page))
        .route(
            "/console/assets/console.css",
            get(|| async { asset("text/css; charset=utf-8", layout::STYLESHEET) }),
        )
        .route(
            "/console/assets/icon.svg",
            get(|| async { asset("image/svg+xml", layout::ICON) }),
        )
        .route(
            "/console/assets/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", layout::SCRIPT) }),
        )
        .merge(guarded)
}

/// The header of every page: this node, and the session's sign-out form.
pub(crate) fn frame<'a>(state: &'a OriginState, visitor: Option<&'a Visitor>) -> Frame<'a> {
    Frame {
        node: &state.config.node.id,
        region: &state.config.node.region,
        csrf: visitor.map(|v| v.session.csrf.as_str()),
        can_sign_out: visitor.is_some_and(|v| v.session.by == BY_KEY),
    }
}

/// How a console session was let in, as the logs of its changes name the caller.
pub(crate) const BY_KEY: &str = "console, api key";
pub(crate) const BY_LOOPBACK: &str = "console, loopback";

/// A console page: HTML, never cached, never framed.
pub(crate) fn html(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(h);
    response
}

/// What every console answer carries: never cached (pages show entries and tokens),
/// never framed, nothing loaded but this node's own assets.
pub(crate) fn secure_headers(h: &mut HeaderMap) {
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(layout::CONTENT_SECURITY_POLICY),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
/// A refused or failed request, before it is a page: what happened and what to do.
/// A handler behind [`access::admit`] returns it as its error; `admit` makes the page,
/// with the visitor's frame, log line and count ([`Refusal::answer`]).
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    status: StatusCode,
    /// The `console_refusals_total` reason ([`refusal`]).
    reason: &'static str,
    title: &'static str,
    message: String,
}

impl Refusal {
    /// A refusal counted under the reason its status implies (see [`Refusal::counted`]).
    pub(crate) fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Self {
        let reason = match status.as_u16() {
            401 => refusal::NO_SESSION,
            403 => refusal::NOT_LOOPBACK,
            404 => refusal::NOT_FOUND,
            409 | 503 => refusal::REGISTRY,
            429 => refusal::TOO_MANY_FAILURES,
            400..=499 => refusal::BAD_REQUEST,
            _ => refusal::INTERNAL,
        };
        Refusal {
            status,
            reason,
            title,
            message: message.into(),
        }
    }

    /// Counted under `reason` instead.
    pub(crate) fn counted(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }

    /// The page that says so, logged with the client and the path, and counted in
    /// `console_refusals_total{reason}`.
    pub(crate) fn answer(
        self,
        state: &OriginState,
        client: std::net::SocketAddr,
        path: &str,
        visitor: Option<&Visitor>,
    ) -> Response {
        state
            .metrics
            .console_refusals
            .with_label_values(&[self.reason])
            .inc();
        if self.status.is_server_error() {
            tracing::error!(%client, %path, reason = self.reason, status = self.status.as_u16(),
                message = %self.message, "console request failed");
        } else {
            tracing::warn!(%client, %path, reason = self.reason, status = self.status.as_u16(),
                message = %self.message, "console request refused");
        }
        html(
            self.status,
            layout::error_page(
                &frame(state, visitor),
                self.status.as_u16(),
                self.title,
                &self.message,
            ),
        )
    }
}

/// Carried to [`access::admit`] in the response's extensions, which answers it.
impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// `/console/...` that is no page: the console's own 404 (not the API's JSON one).
async fn no_page(
    axum::extract::State(state): axum::extract::State<Arc<OriginState>>,
    axum::Extension(longhaul_node::http::Client(client)): axum::Extension<
        longhaul_node::http::Client,
    >,
    uri: hyper::Uri,
) -> Response {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "No such page",
        format!("The console has no page at {}.", uri.path()),
    )
    .answer(&state, client, uri.path(), None)
}

/// Unix seconds of `t` (0 before 1970).
pub(crate) fn secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
