//! Who may use the console: [`admit`] lets a request through with its session or
//! refuses it, signing in and out, and the CSRF check of every form (see
//! `longhaul_console::session` for the rules).
//!
//! Sign-in checks the key as the API does (`crate::api_key`): failures count with the
//! node's publish failures in its abuse guard (`[abuse]`, `longhaul_node::abuse_gate`),
//! so an address that keeps trying keys is slowed, then refused for a while, as one
//! that keeps trying tokens is.

use super::{frame, html, Refusal, BY_KEY, BY_LOOPBACK};
use crate::api::Caller;
use crate::api_key::{self, KeyRefused};
use crate::state::OriginState;
use axum::extract::rejection::FormRejection;
use axum::extract::{OriginalUri, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use hyper::header::{HeaderValue, COOKIE, HOST, SET_COOKIE};
use hyper::{HeaderMap, Method, StatusCode};
use longhaul_console::session::{self, Access, Session};
use longhaul_node::http::Client;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Why the console refused a request: the `reason` label of `console_refusals_total`.
pub mod refusal {
    /// No `http.api_token`, and the client is not on loopback (or names another host,
    /// or came through a proxy).
    pub const NOT_LOOPBACK: &str = "not_loopback";
    /// A page that needs a session, without one (not signed in, or it expired).
    pub const NO_SESSION: &str = "no_session";
    /// A sign-in with the wrong key.
    pub const WRONG_KEY: &str = "wrong_key";
    /// The address failed too often (the node's abuse guard).
    pub const TOO_MANY_FAILURES: &str = "too_many_failures";
    /// A form without its session's CSRF token, or sent from another site.
    pub const CSRF: &str = "csrf";
    /// A request that cannot be read (a path, query or form).
    pub const BAD_REQUEST: &str = "bad_request";
    /// No such page or entry.
    pub const NOT_FOUND: &str = "not_found";
    /// The registry refused the change (a conflict) or could not make it.
    pub const REGISTRY: &str = "registry";
    /// The node failed (its random number generator).
    pub const INTERNAL: &str = "internal";
    pub const ALL: [&str; 9] = [
        NOT_LOOPBACK,
        NO_SESSION,
        WRONG_KEY,
        TOO_MANY_FAILURES,
        CSRF,
        BAD_REQUEST,
        NOT_FOUND,
        REGISTRY,
        INTERNAL,
    ];
}

/// The node's console sessions.
#[derive(Debug, Default)]
pub struct ConsoleSessions(Mutex<session::Sessions>);

impl ConsoleSessions {
    fn with<T>(&self, f: impl FnOnce(&mut session::Sessions) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The first live session among the request's cookies.
    fn find(&self, headers: &HeaderMap, now: Instant) -> Option<(String, Session)> {
        let ids: Vec<String> = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(session::session_ids_of)
            .map(str::to_owned)
            .collect();
        self.with(|s| {
            ids.into_iter()
                .find_map(|id| s.get(&id, now).map(|session| (id, session)))
        })
    }
}

/// The session a request came with (or was given), who made it, and what it asked.
#[derive(Debug, Clone)]
pub(crate) struct Visitor {
    pub(crate) session: Session,
    pub(crate) caller: Caller,
    /// The request's path, for the log lines of its refusals.
    pub(crate) path: String,
    /// A session made for this request (loopback): its cookie goes on the response.
    new_cookie: Option<String>,
}

impl Visitor {
    /// The page of `refusal`, logged with this client and counted.
    pub(crate) fn refuse(&self, state: &OriginState, refusal: Refusal) -> Response {
        refusal.answer(state, self.caller.client, &self.path, Some(self))
    }
}

fn client_of(req: &Request) -> SocketAddr {
    req.extensions()
        .get::<Client>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0)
}

/// Whether the page came over HTTPS, at a TLS-terminating proxy in front of the node
/// (the node itself serves plain HTTP): the cookie is then `Secure`.
fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// What the loopback rule looks at in a request (the entries API applies it too).
pub fn access_request<'a>(client: SocketAddr, headers: &'a HeaderMap) -> session::Request<'a> {
    session::Request {
        client: client.ip(),
        host: headers.get(HOST).and_then(|v| v.to_str().ok()),
        forwarded: headers.contains_key("forwarded") || headers.contains_key("x-forwarded-for"),
    }
}

/// Whether a form was sent from another site, as the browser says (`Sec-Fetch-Site`,
/// or an `Origin` that is not this host): refused whatever it carries.
fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return !matches!(site, "same-origin" | "none");
    }
    match (text("origin"), text(HOST.as_str())) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            !origin_host.eq_ignore_ascii_case(host)
        }
        _ => false,
    }
}

/// Lets a request through with its session (see the module's doc), or refuses it.
pub(crate) async fn admit(
    State(state): State<Arc<OriginState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let client = client_of(&req);
    let path = req.uri().path().to_owned();
    let access = Access::of(
        state.config.http.api_token.is_some(),
        access_request(client, req.headers()),
    );
    if access == Access::Forbidden {
        return Refusal::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "This console serves only loopback clients, by a loopback name and not through \
             a proxy, unless the origin sets http.api_token; set one and sign in with it.",
        )
        .counted(refusal::NOT_LOOPBACK)
        .answer(&state, client, &path, None);
    }
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    if !reads && cross_site(req.headers()) {
        return Refusal::new(
            StatusCode::FORBIDDEN,
            "Form refused",
            "This form was sent from another site; the console takes forms from its own pages only.",
        )
        .counted(refusal::CSRF)
        .answer(&state, client, &path, None);
    }
    let now = Instant::now();
    let visitor = match (state.console.find(req.headers(), now), access) {
        (Some((_, session)), _) => Visitor {
            caller: Caller {
                client,
                by: session.by,
            },
            session,
            path,
            new_cookie: None,
        },
        (None, Access::Loopback) if reads => {
            let Some((session_id, session)) = state.console.with(|s| s.start(BY_LOOPBACK, now))
            else {
                return random_failed(&state, client, &path);
            };
            Visitor {
                caller: Caller {
                    client,
                    by: BY_LOOPBACK,
                },
                new_cookie: Some(session::cookie(&session_id, over_https(req.headers()))),
                session,
                path,
            }
        }
        (None, Access::Loopback) => {
            return Refusal::new(
                StatusCode::FORBIDDEN,
                "No console session",
                "This form came without a console session (cookies off, or the node \
                 restarted): reload the page and submit it again.",
            )
            .counted(refusal::NO_SESSION)
            .answer(&state, client, &path, None);
        }
        (None, _) => {
            // A page goes to the sign-in; what the script fetches gets a 401 it can tell.
            if reads && !path.ends_with("/live") && !path.ends_with(".json") {
                state
                    .metrics
                    .console_refusals
                    .with_label_values(&[refusal::NO_SESSION])
                    .inc();
                tracing::info!(%client, %path, "console page without a session: to the sign-in");
                return Redirect::to("/console/sign-in").into_response();
            }
            return Refusal::new(
                StatusCode::UNAUTHORIZED,
                "Sign in first",
                "This needs a console session: sign in with the API key at /console/sign-in.",
            )
            .counted(refusal::NO_SESSION)
            .answer(&state, client, &path, None);
        }
    };
    let cookie = visitor.new_cookie.clone();
    req.extensions_mut().insert(visitor.clone());
    let mut response = next.run(req).await;
    if let Some(refused) = response.extensions_mut().remove::<Refusal>() {
        response = visitor.refuse(&state, refused);
    }
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

fn random_failed(state: &OriginState, client: SocketAddr, path: &str) -> Response {
    tracing::error!("the operating system's random number generator failed: no console session");
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "No session",
        "The node could not make a session (its random number generator failed); try again.",
    )
    .counted(refusal::INTERNAL)
    .answer(state, client, path, None)
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

/// The form's CSRF token checked against the session's, or the refusal.
pub(crate) fn check_csrf(visitor: &Visitor, presented: &str) -> Result<(), Refusal> {
    if visitor.session.csrf_matches(presented) {
        Ok(())
    } else {
        Err(csrf_refused())
    }
}

fn csrf_refused() -> Refusal {
    Refusal::new(
        StatusCode::FORBIDDEN,
        "Form refused",
        "This form did not carry the page's security token (it may be from an old page or \
         another site): reload the page and submit it again.",
    )
    .counted(refusal::CSRF)
}

/// A form that could not be read, with the status axum gives it (400, 413, 415).
pub(crate) fn bad_form(e: FormRejection) -> Refusal {
    Refusal::new(
        e.status(),
        "Form not readable",
        format!("The form could not be read: {}", e.body_text()),
    )
    .counted(refusal::BAD_REQUEST)
}

/// `GET /console/sign-in`: the form (with no key configured, there is nothing to sign
/// in with: straight to the entries).
pub(crate) async fn sign_in_form(State(state): State<Arc<OriginState>>) -> Response {
    if state.config.http.api_token.is_none() {
        // Nothing to sign in with: loopback is let in, anything else is refused there.
        return Redirect::to("/console/entries").into_response();
    }
    html(
        StatusCode::OK,
        longhaul_console::sign_in_page(&frame(&state, None), None),
    )
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    key: String,
}

/// `POST /console/sign-in`: the key (compared as digests, in constant time) for a
/// session cookie; the session the browser had before ends.
pub(crate) async fn sign_in(
    State(state): State<Arc<OriginState>>,
    Extension(Client(client)): Extension<Client>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    const PATH: &str = "/console/sign-in";
    let Some(key) = state.config.http.api_token.as_deref() else {
        return Redirect::to("/console/entries").into_response();
    };
    if cross_site(&headers) {
        return Refusal::new(
            StatusCode::FORBIDDEN,
            "Form refused",
            "This sign-in was sent from another site.",
        )
        .counted(refusal::CSRF)
        .answer(&state, client, PATH, None);
    }
    let presented = match form {
        Ok(Form(f)) => f.key,
        Err(e) => return bad_form(e).answer(&state, client, PATH, None),
    };
    match api_key::check(&state.abuse, client.ip(), &presented, key).await {
        Ok(()) => {}
        Err(KeyRefused::Banned(banned)) => {
            let secs = banned.retry_after_secs();
            let message = format!(
                "Too many failed attempts from {}: try again in {secs} s.",
                banned.source
            );
            let mut response = Refusal::new(StatusCode::TOO_MANY_REQUESTS, "Not now", message)
                .counted(refusal::TOO_MANY_FAILURES)
                .answer(&state, client, PATH, None);
            response
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
            return response;
        }
        Err(KeyRefused::Wrong) => {
            tracing::warn!(%client, "console sign-in with a wrong key refused");
            state
                .metrics
                .console_refusals
                .with_label_values(&[refusal::WRONG_KEY])
                .inc();
            return html(
                StatusCode::UNAUTHORIZED,
                longhaul_console::sign_in_page(
                    &frame(&state, None),
                    Some("That is not this origin's API key."),
                ),
            );
        }
    }
    let now = Instant::now();
    if let Some((old, _)) = state.console.find(&headers, now) {
        state.console.with(|s| s.end(&old));
    }
    let Some((id, _)) = state.console.with(|s| s.start(BY_KEY, now)) else {
        return random_failed(&state, client, PATH);
    };
    tracing::info!(%client, "console session started (api key)");
    let mut response = Redirect::to("/console/entries").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::cookie(&id, over_https(&headers))) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// `POST /console/sign-out`: ends the session (its form's CSRF token checked) and
/// removes its cookie; a session that already ended just loses its cookie. `GET` goes
/// back to the entries.
pub(crate) async fn sign_out(
    State(state): State<Arc<OriginState>>,
    Extension(Client(client)): Extension<Client>,
    OriginalUri(uri): OriginalUri,
    method: Method,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if method != Method::POST {
        return Redirect::to("/console/entries").into_response();
    }
    if let Some((id, session)) = state.console.find(&headers, Instant::now()) {
        let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
        if cross_site(&headers) || !session.csrf_matches(&csrf) {
            return csrf_refused().answer(&state, client, uri.path(), None);
        }
        state.console.with(|s| s.end(&id));
        tracing::info!(%client, by = session.by, "console session ended");
    }
    let mut response = Redirect::to("/console/sign-in").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::cookie_removed(over_https(&headers))) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}
