//! The entries API: `/api/v1/...`, JSON over HTTP, described route by route in
//! `crates/origin/openapi.json` (served at `GET /api/v1/openapi.json`; a test checks the
//! server against it).
//!
//! | method | path | does |
//! |---|---|---|
//! | POST | `/api/v1/entries` `{"name"}` | create an entry (201, the entry with its token and endpoints) |
//! | GET | `/api/v1/entries` | list entries |
//! | GET | `/api/v1/entries/{id}` | one entry |
//! | PATCH | `/api/v1/entries/{id}` `{"name"}` | rename an entry |
//! | POST | `/api/v1/entries/{id}/regenerate-token` `{"generation"}` | new token; the old one is refused from now on and its live publishes are cut, at every origin and edge |
//! | DELETE | `/api/v1/entries/{id}` | delete an entry (204); its live publishes are cut |
//! | POST | `/api/v1/entries/{id}/revoke` | cut the entry's live publishes now (a kick; with the callback, forget its cached answers) |
//! | GET | `/api/v1/entries/{id}/fmle.xml` | Adobe FMLE profile for encoders that import one |
//! | GET | `/api/v1/streams` | streams live on this node |
//! | POST | `/api/v1/drain` | drain: no new publishes, edges move their streams to another origin (SIGTERM does the same, then exits) |
//! | GET | `/api/v1/openapi.json` | this API's OpenAPI document |
//!
//! - **Access**: with `http.api_token` set, requests need `Authorization: Bearer <token>`;
//!   without one, only loopback clients are served. The OpenAPI document is open. The
//!   token is checked as the console's sign-in checks the key ([`crate::api_key`]): a
//!   wrong one is a credential failure of the client's address in the node's abuse
//!   guard (`[abuse]`), so an address that keeps guessing is slowed, then refused with
//!   429 and `retry-after` for a while, the right token included. Refusals are counted in `api_refusals_total{reason}` ([`refusal`]).
//! - **Errors** are `{"error": {"code", "message"}}`: 400 for a body or value that is
//!   wrong, 404 for an unknown entry, 409 when a regeneration names a generation that
//!   is no longer current, 413 for a body over [`MAX_REQUEST_BODY`], 415 for a body that
//!   is not JSON, 408 for a body not sent within [`BODY_TIMEOUT`], 503 (with
//!   `retry-after`) while the entries database is unreachable.
//! - **Writes are logged** with the caller (client address and how it was let in).
//! - Reads (`GET`) come from the node's in-memory copy of the entries, so they answer
//!   while the database is down; writes go to the database.

use crate::api_key::{self, KeyRefused};
use crate::revoke;
use crate::state::OriginState;
use axum::extract::{FromRequest, Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use hyper::StatusCode;
use longhaul_node::http::{error, json, Body, Client};
use longhaul_node::Cut;
use longhaul_registry::{Entry, Registry, RegistryError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body the API reads. Entry requests are a few hundred bytes.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

/// Longest a client may take to send a request's body (its headers have their own
/// limit, `http.header_timeout_secs`): a 64 KiB body takes milliseconds on any link a
/// control-plane client has, and a client trickling one must not hold a connection.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Seconds a client is told to wait (`retry-after`) when the database is unreachable:
/// the registry's change feed retries within 5 s.
const RETRY_AFTER_SECS: u64 = 5;

/// The OpenAPI document, kept beside this crate and served as it is.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Who made a request, for the logs of every write.
#[derive(Debug, Clone)]
pub struct Caller {
    pub client: SocketAddr,
    /// How it was let in: `bearer token` or `loopback`.
    pub by: &'static str,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.client, self.by)
    }
}

/// The API's routes, to be nested under `/api/v1`.
pub fn router(state: Arc<OriginState>) -> Router<Arc<OriginState>> {
    let guarded = Router::new()
        .route("/entries", post(create).get(list))
        .route("/entries/{id}", get(show).patch(rename).delete(delete))
        .route("/entries/{id}/regenerate-token", post(regenerate))
        .route("/entries/{id}/revoke", post(kick))
        .route("/entries/{id}/fmle.xml", get(fmle))
        .route("/streams", get(streams))
        .route("/drain", post(drain))
        .layer(axum::middleware::from_fn_with_state(state, authorize));
    Router::new()
        .route("/openapi.json", get(openapi))
        .merge(guarded)
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
}

/// An API error: a status and the JSON body `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `retry-after`; a 503 without one gets `RETRY_AFTER_SECS`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = error(self.status, self.code, &self.message);
        let retry_after = self.retry_after.or_else(|| {
            (self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(RETRY_AFTER_SECS)
        });
        if let Some(secs) = retry_after {
            response.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from(secs),
            );
        }
        response
    }
}

/// Why the API refused a request at its door: the `reason` label of
/// `api_refusals_total`.
pub mod refusal {
    /// `http.api_token` is set and the request has no bearer token.
    pub const NO_KEY: &str = "no_key";
    /// A bearer token that is not `http.api_token`.
    pub const WRONG_KEY: &str = "wrong_key";
    /// The address failed too often (the node's abuse guard).
    pub const TOO_MANY_FAILURES: &str = "too_many_failures";
    /// No `http.api_token`, and the client is not on loopback (or names another host,
    /// or came through a proxy).
    pub const NOT_LOOPBACK: &str = "not_loopback";
    pub const ALL: [&str; 4] = [NO_KEY, WRONG_KEY, TOO_MANY_FAILURES, NOT_LOOPBACK];
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(id) => not_found(&id),
            RegistryError::InvalidName(why) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_name",
                format!("invalid entry name: {why}"),
            ),
            RegistryError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            e if e.is_unavailable() => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "registry_unavailable",
                format!(
                    "{e}; entries are still served from memory and publishes go on, \
                     but changes are refused until the database is back: retry shortly"
                ),
            ),
            e => {
                tracing::error!(error = %e, "registry operation failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "registry_error",
                    e.to_string(),
                )
            }
        }
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "entry_not_found",
        format!("entry {id} does not exist"),
    )
}

/// A JSON request body. An empty body reads as `{}`, so requests whose fields are all
/// optional need none; anything else must be `application/json` (415), at most
/// [`MAX_REQUEST_BODY`] bytes (413), valid JSON (400 `bad_json`) of the right shape
/// (400 `bad_request`, naming the field).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json_type = req
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|t| {
                let t = t.trim().to_ascii_lowercase();
                t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
            });
        let read = tokio::time::timeout(BODY_TIMEOUT, Bytes::from_request(req, state))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!("the request body was not received within {BODY_TIMEOUT:?}"),
                )
            })?;
        let bytes = read.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the request body is over {MAX_REQUEST_BODY} bytes"),
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_body",
                    format!("reading the request body failed: {rejection}"),
                )
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else if json_type != Some(true) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON, with Content-Type: application/json",
            ));
        } else {
            &bytes
        };
        serde_json::from_slice(bytes).map(JsonBody).map_err(|e| {
            let code = if e.is_data() {
                "bad_request"
            } else {
                "bad_json"
            };
            let what = if e.is_data() {
                "the request body does not fit this route"
            } else {
                "the request body is not valid JSON"
            };
            ApiError::new(StatusCode::BAD_REQUEST, code, format!("{what}: {e}"))
        })
    }
}

/// The `{id}` of a route, or a JSON 400 (an id that is not valid UTF-8 once decoded).
pub struct EntryId(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for EntryId {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| EntryId(id))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_entry_id",
                    format!("the entry id in the path is not readable: {e}"),
                )
            })
    }
}

/// Lets a request through when it carries the API token (or, without one configured,
/// comes from loopback), and notes the [`Caller`].
async fn authorize(
    State(state): State<Arc<OriginState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let client = client_of(&req);
    let path = req.uri().path().to_owned();
    let refused = |reason: &str| {
        state
            .metrics
            .api_refusals
            .with_label_values(&[reason])
            .inc()
    };
    let by = match &state.config.http.api_token {
        Some(expected) => {
            // The scheme's name is case-insensitive (RFC 9110, section 11.1).
            let presented = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split_once(' '))
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, token)| token.trim())
                .filter(|token| !token.is_empty());
            let Some(presented) = presented else {
                // A client that sends none is set up wrong, not guessing.
                refused(refusal::NO_KEY);
                tracing::warn!(%client, %path, "API request without a bearer token refused");
                return Err(unauthorized());
            };
            match api_key::check(&state.abuse, client.ip(), presented, expected).await {
                Ok(()) => "bearer token",
                Err(KeyRefused::Banned(banned)) => {
                    refused(refusal::TOO_MANY_FAILURES);
                    tracing::warn!(%client, %path, source = %banned.source,
                        "API request refused: too many failed attempts from this address");
                    let secs = banned.retry_after_secs();
                    return Err(ApiError {
                        retry_after: Some(secs),
                        ..ApiError::new(
                            StatusCode::TOO_MANY_REQUESTS,
                            "too_many_failures",
                            format!(
                                "too many requests with a wrong token from {}: try again in {secs} s",
                                banned.source
                            ),
                        )
                    });
                }
                Err(KeyRefused::Wrong) => {
                    refused(refusal::WRONG_KEY);
                    tracing::warn!(%client, %path, "API request with a wrong bearer token refused");
                    return Err(unauthorized());
                }
            }
        }
        // Loopback as the console has it: the address, a Host naming this machine (a
        // page of another site pointed at 127.0.0.1 sends its own), no proxy's headers.
        None if longhaul_console::session::Access::of(
            false,
            crate::console::access_request(client, req.headers()),
        ) == longhaul_console::session::Access::Loopback =>
        {
            "loopback"
        }
        None => {
            refused(refusal::NOT_LOOPBACK);
            tracing::warn!(%client, %path,
                "API request refused: no http.api_token set, and not from loopback by a loopback name");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the API serves only loopback clients (by a loopback name such as 127.0.0.1 or localhost, not through a proxy) unless http.api_token is set",
            ));
        }
    };
    req.extensions_mut().insert(Caller { client, by });
    Ok(next.run(req).await)
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this API needs \"Authorization: Bearer <http.api_token>\"",
    )
}

fn client_of(req: &Request) -> SocketAddr {
    req.extensions()
        .get::<Client>()
        .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0)
}

/// The registry, or why this origin has none.
fn registry(state: &OriginState) -> Result<&Arc<Registry>, ApiError> {
    state.registry.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_registry",
            "this origin keeps no entries: publishes are authorised by the platform's callback",
        )
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateEntry {
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameEntry {
    name: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RegenerateToken {
    /// Only if the entry is at this generation now (else 409).
    generation: Option<u32>,
}

async fn create(
    State(state): State<Arc<OriginState>>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<CreateEntry>,
) -> Result<Response, ApiError> {
    let entry = registry(&state)?.create_entry(body.name.as_deref()).await?;
    tracing::info!(entry = %entry.id, %caller, "entry created");
    Ok(json(StatusCode::CREATED, &entry_json(&entry, &state)))
}

async fn list(State(state): State<Arc<OriginState>>) -> Result<Response, ApiError> {
    let entries: Vec<_> = registry(&state)?
        .list()
        .iter()
        .map(|e| entry_json(e, &state))
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "entries": entries }),
    ))
}

async fn show(
    State(state): State<Arc<OriginState>>,
    EntryId(id): EntryId,
) -> Result<Response, ApiError> {
    let entry = registry(&state)?.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(json(StatusCode::OK, &entry_json(&entry, &state)))
}

async fn rename(
    State(state): State<Arc<OriginState>>,
    Extension(caller): Extension<Caller>,
    EntryId(id): EntryId,
    JsonBody(body): JsonBody<RenameEntry>,
) -> Result<Response, ApiError> {
    let entry = registry(&state)?.rename(&id, &body.name).await?;
    tracing::info!(entry = %entry.id, %caller, "entry renamed");
    Ok(json(StatusCode::OK, &entry_json(&entry, &state)))
}

async fn delete(
    State(state): State<Arc<OriginState>>,
    Extension(caller): Extension<Caller>,
    EntryId(id): EntryId,
) -> Result<Response, ApiError> {
    if !registry(&state)?.delete(&id).await? {
        return Err(not_found(&id));
    }
    tracing::info!(entry = %id, %caller, "entry deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn regenerate(
    State(state): State<Arc<OriginState>>,
    Extension(caller): Extension<Caller>,
    EntryId(id): EntryId,
    JsonBody(body): JsonBody<RegenerateToken>,
) -> Result<Response, ApiError> {
    let entry = registry(&state)?
        .regenerate_token(&id, body.generation)
        .await?;
    tracing::info!(entry = %entry.id, %caller, generation = entry.token_generation,
        "entry token regenerated");
    Ok(json(StatusCode::OK, &entry_json(&entry, &state)))
}

/// Cuts the entry's live publishes now: here, and at every edge this origin reaches.
async fn kick(
    State(state): State<Arc<OriginState>>,
    Extension(caller): Extension<Caller>,
    EntryId(id): EntryId,
) -> Result<Response, ApiError> {
    // With a callback, the platform knows the entries: any id of the right shape.
    match (&state.callback, &state.registry) {
        (None, Some(registry)) if registry.get(&id).is_none() => return Err(not_found(&id)),
        (Some(_), _) if !longhaul_endpoint::is_entry_id(&id) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_entry_id",
                format!("{id:?} is not an entry id (like 1_gdrt137u)"),
            ))
        }
        _ => {}
    }
    let (here, edges) = revoke::revoke(
        &state,
        &id,
        Cut::All,
        revoke::reason::KICKED,
        format!("publish stopped: an operator revoked the live publishes of entry {id}"),
    );
    tracing::info!(entry = %id, %caller, cut_here = here, edges_told = edges,
        "entry's live publishes revoked");
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "entry_id": id, "cut": here, "edges": edges }),
    ))
}

/// Starts draining (see [`crate::drain`]); the node keeps running, empty, until it is
/// stopped.
async fn drain(
    State(state): State<Arc<OriginState>>,
    Extension(caller): Extension<Caller>,
) -> Response {
    let (started, edges) = crate::drain::begin(&state, "api");
    tracing::info!(%caller, started, edges_told = edges, "drain requested");
    let publishers = state.metrics.publishers_active.get().max(0);
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({ "draining": true, "started": started, "edges": edges, "publishers": publishers }),
    )
}

async fn fmle(
    State(state): State<Arc<OriginState>>,
    EntryId(id): EntryId,
) -> Result<Response, ApiError> {
    let entry = registry(&state)?.get(&id).ok_or_else(|| not_found(&id))?;
    let endpoints = state.endpoints_of(&entry);
    let xml = longhaul_endpoint::fmle_profile_xml(
        &entry.id,
        &endpoints,
        &longhaul_endpoint::DEFAULT_LADDER,
    );
    Ok(Response::builder()
        .header("content-type", "application/xml")
        .header(
            "content-disposition",
            format!("attachment; filename=\"{}.xml\"", entry.id),
        )
        .body(Body::from(xml))
        .expect("static response parts are valid"))
}

async fn streams(State(state): State<Arc<OriginState>>) -> Response {
    let streams: Vec<_> = state.hub.streams().iter().map(stream_json).collect();
    let renditions: Vec<_> = state.hub.renditions().iter().map(rendition_json).collect();
    json(
        StatusCode::OK,
        &serde_json::json!({ "streams": streams, "renditions": renditions }),
    )
}

async fn openapi() -> Response {
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(OPENAPI))
        .expect("static response parts are valid")
}

async fn wrong_method(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not a method of {} (see /api/v1/openapi.json)",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn no_route(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no API route for {} {}", req.method(), req.uri().path()),
    )
}

/// The JSON form of an entry: its fields, token and endpoints.
pub fn entry_json(entry: &Entry, state: &OriginState) -> serde_json::Value {
    let mut v = serde_json::to_value(entry).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "endpoints".into(),
            serde_json::to_value(state.endpoints_of(entry)).unwrap_or_default(),
        );
    }
    v
}

/// Unix seconds of `t` (0 before 1970).
fn secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The JSON form of a live stream.
fn stream_json(s: &longhaul_hub::StreamSummary) -> serde_json::Value {
    serde_json::json!({
        "name": s.key.name,
        "leg": s.key.leg.as_str(),
        "publisher": s.publisher.addr,
        "publisher_region": s.publisher.region,
        "via_edge": s.publisher.via,
        "pulled_from": s.publisher.replica_of,
        "publisher_since": secs(s.publisher_since),
        "started_at": secs(s.started_at),
        "players": s.players,
        "messages_in": s.messages_in,
        "bytes_in": s.bytes_in,
        "keyframes": s.keyframes,
        "video_codec": s.video_codec.map(crate::stream_metrics::codec_label),
        "audio_codec": s.audio_codec.map(crate::stream_metrics::codec_label),
        "gop_cache_bytes": s.gop_cache_bytes,
        "player_skips": s.player_skips,
        "players_dropped": s.players_dropped,
        "takeovers": s.takeovers,
        "resumes": s.resumes,
        "timestamp_offset": s.timestamp_offset,
        "config_bytes": s.config_bytes,
        "config_refused": s.config_refused,
        "health": health_json(s),
    })
}

/// How a leg is doing: the figures the per-stream metrics carry.
fn health_json(s: &longhaul_hub::StreamSummary) -> serde_json::Value {
    let h = &s.health;
    serde_json::json!({
        "bitrate_bps": h.bitrate_bps.round(),
        "declared_bitrate_bps": h.declared.bitrate_bps(),
        "frame_rate": h.frame_rate,
        "declared_frame_rate": h.declared.frame_rate,
        "keyframe_interval_seconds": h.keyframe_interval.map(|d| d.as_secs_f64()),
        "video_present": h.video_present,
        "audio_present": h.audio_present,
        "timestamp_drift_seconds": h.timestamp_drift_seconds,
        "since_last_media_seconds": h.since_last_media.map(|d| d.as_secs_f64()),
        "reconnects": s.takeovers + s.resumes,
    })
}

/// The JSON form of a rendition's on-air stream.
fn rendition_json(r: &longhaul_hub::RenditionSummary) -> serde_json::Value {
    let switches: Vec<_> = r
        .switches
        .iter()
        .map(|c| {
            serde_json::json!({
                "to": c.to.as_str(),
                "reason": c.reason.as_str(),
                "count": c.count,
            })
        })
        .collect();
    let last_switch = r.last_switch.map(|(s, at)| {
        serde_json::json!({
            "from": s.from.map(|l| l.as_str()),
            "to": s.to.as_str(),
            "reason": s.reason.as_str(),
            "at": secs(at),
        })
    });
    serde_json::json!({
        "name": r.name,
        "on_air": r.on_air.map(|l| l.as_str()),
        "primary_live": r.primary_live,
        "backup_live": r.backup_live,
        "backup_only": r.backup_only(),
        "players": r.players,
        "switches": switches,
        "last_switch": last_switch,
        "backup_on_air_seconds": r.backup_on_air_seconds,
        "started_at": secs(r.started_at),
    })
}
