//! Who may use the console: [`admit`] lets a request through with its session or
//! refuses it, signing in and out, and the CSRF check of every form (see
//! `longhaul_console::session` for the rules).

use super::{frame, html, Refusal, BY_KEY, BY_LOOPBACK};
use crate::api::Caller;
use crate::state::OriginState;
use axum::extract::rejection::FormRejection;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use hyper::header::{HeaderValue, COOKIE, SET_COOKIE};
use hyper::{HeaderMap, StatusCode};
use longhaul_console::session::{self, Access, Session};
use longhaul_node::http::Client;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Why the console refused a request: the `reason` label of `console_refusals_total`.
pub mod refusal {
    /// No `http.api_token`, and the client is not on loopback.
    pub const NOT_LOOPBACK: &str = "not_loopback";
    /// A page that needs a session, without one (not signed in, or it expired).
    pub const NO_SESSION: &str = "no_session";
    /// A sign-in with the wrong key.
    pub const WRONG_KEY: &str = "wrong_key";
    /// A form without its session's CSRF token.
    pub const CSRF: &str = "csrf";
    pub const ALL: [&str; 4] = [NOT_LOOPBACK, NO_SESSION, WRONG_KEY, CSRF];
}

/// The node's console sessions.
#[derive(Debug, Default)]
pub struct ConsoleSessions(Mutex<session::Sessions>);

impl ConsoleSessions {
    fn with<T>(&self, f: impl FnOnce(&mut session::Sessions) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The session a request came with (or was given), and who made it.
#[derive(Debug, Clone)]
pub(crate) struct Visitor {
    pub(crate) session_id: String,
    pub(crate) session: Session,
    pub(crate) caller: Caller,
    /// A session made for this request (loopback): its cookie goes on the response.
    new_cookie: Option<String>,
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

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::session_id_of)
        .map(str::to_owned)
}

/// Lets a request through with its session (see the module's doc), or refuses it.
pub(crate) async fn admit(
    State(state): State<Arc<OriginState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let client = client_of(&req);
    let path = req.uri().path().to_owned();
    let access = Access::of(state.config.http.api_token.is_some(), client.ip());
    if access == Access::Forbidden {
        tracing::warn!(%client, %path,
            "console request from a non-loopback address refused (no http.api_token set)");
        return Refusal::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "This console serves only loopback clients unless the origin sets http.api_token; \
             set one and sign in with it.",
        )
        .counted(refusal::NOT_LOOPBACK)
        .page(&state, None);
    }
    let now = Instant::now();
    let found = session_cookie(req.headers())
        .and_then(|id| state.console.with(|s| s.get(&id, now)).map(|s| (id, s)));
    let visitor = match (found, access) {
        (Some((session_id, session)), _) => Visitor {
            caller: Caller {
                client,
                by: session.by,
            },
            session_id,
            session,
            new_cookie: None,
        },
        (None, Access::Loopback) if req.method() == hyper::Method::GET => {
            let Some((session_id, session)) = state.console.with(|s| s.start(BY_LOOPBACK, now))
            else {
                return random_failed(&state);
            };
            Visitor {
                caller: Caller {
                    client,
                    by: BY_LOOPBACK,
                },
                new_cookie: Some(session::cookie(&session_id, over_https(req.headers()))),
                session_id,
                session,
            }
        }
        (None, Access::Loopback) => {
            tracing::warn!(%client, %path, "console form without a session refused");
            return Refusal::new(
                StatusCode::FORBIDDEN,
                "No console session",
                "This form came without a console session (cookies off, or the node \
                 restarted): reload the page and submit it again.",
            )
            .counted(refusal::NO_SESSION)
            .page(&state, None);
        }
        (None, _) => {
            tracing::info!(%client, %path, "console request without a session: sign in");
            state
                .metrics
                .console_refusals
                .with_label_values(&[refusal::NO_SESSION])
                .inc();
            if req.method() == hyper::Method::GET
                && !path.ends_with("/live")
                && !path.ends_with(".json")
            {
                return Redirect::to("/console/sign-in").into_response();
            }
            return Refusal::new(
                StatusCode::UNAUTHORIZED,
                "Sign in first",
                "This needs a console session: sign in with the API key at /console/sign-in.",
            )
            .page(&state, None);
        }
    };
    let cookie = visitor.new_cookie.clone();
    req.extensions_mut().insert(visitor);
    let mut response = next.run(req).await;
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

fn random_failed(state: &OriginState) -> Response {
    tracing::error!("the operating system's random number generator failed: no console session");
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "No session",
        "The node could not make a session (its random number generator failed); try again.",
    )
    .page(state, None)
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

/// The form's CSRF token checked against the session's, or the refusal.
pub(crate) fn check_csrf(visitor: &Visitor, presented: &str, path: &str) -> Result<(), Refusal> {
    if visitor.session.csrf_matches(presented) {
        return Ok(());
    }
    tracing::warn!(client = %visitor.caller.client, %path,
        "console form without its CSRF token refused");
    Err(Refusal::new(
        StatusCode::FORBIDDEN,
        "Form refused",
        "This form did not carry the page's security token (it may be from an old page or \
         another site): reload the page and submit it again.",
    )
    .counted(refusal::CSRF))
}
/// A form that could not be read.
pub(crate) fn bad_form(state: &OriginState, visitor: &Visitor, e: FormRejection) -> Response {
    tracing::warn!(client = %visitor.caller.client, error = %e, "console form not readable");
    Refusal::new(
        StatusCode::BAD_REQUEST,
        "Form not readable",
        format!("The form could not be read: {e}"),
    )
    .page(state, Some(visitor))
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

/// `POST /console/sign-in`: the key, checked in constant time, for a session cookie.
pub(crate) async fn sign_in(
    State(state): State<Arc<OriginState>>,
    Extension(Client(client)): Extension<Client>,
    headers: HeaderMap,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    let Some(key) = state.config.http.api_token.as_deref() else {
        return Redirect::to("/console/entries").into_response();
    };
    let presented = form.map(|Form(f)| f.key).unwrap_or_default();
    if !session::key_matches(&presented, key) {
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
    let Some((id, _)) = state.console.with(|s| s.start(BY_KEY, Instant::now())) else {
        return random_failed(&state);
    };
    tracing::info!(%client, "console session started (api key)");
    let mut response = Redirect::to("/console/entries").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::cookie(&id, over_https(&headers))) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// `POST /console/sign-out`: ends the session and removes its cookie.
pub(crate) async fn sign_out(
    State(state): State<Arc<OriginState>>,
    Extension(visitor): Extension<Visitor>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let form = match form {
        Ok(Form(f)) => f,
        Err(e) => return bad_form(&state, &visitor, e),
    };
    if let Err(refused) = check_csrf(&visitor, &form.csrf, "/console/sign-out") {
        return refused.page(&state, Some(&visitor));
    }
    state.console.with(|s| s.end(&visitor.session_id));
    tracing::info!(caller = %visitor.caller, "console session ended");
    let mut response = Redirect::to("/console/sign-in").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&session::cookie_removed(over_https(&headers))) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}
