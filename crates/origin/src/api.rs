//! The entries API: `/api/v1/entries` and `/api/v1/streams`, JSON over HTTP.
//!
//! | method | path | does |
//! |---|---|---|
//! | POST | `/api/v1/entries` `{"name": ...}` | create an entry (201, the entry with its token and endpoints) |
//! | GET | `/api/v1/entries` | list entries |
//! | GET | `/api/v1/entries/{id}` | one entry |
//! | POST | `/api/v1/entries/{id}/regenerate-token` | new token; the old one is refused from now on |
//! | DELETE | `/api/v1/entries/{id}` | delete an entry (204) |
//! | GET | `/api/v1/entries/{id}/fmle.xml` | Adobe FMLE profile for encoders that import one |
//! | GET | `/api/v1/streams` | streams live on this node |
//!
//! Access: with `http.api_token` set, requests need `Authorization: Bearer <token>`;
//! without one, only loopback clients are served. The registry is SQLite, so its calls run
//! on the blocking pool, never on the reactor threads.

use crate::state::OriginState;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use longhaul_node::http::{error, json, Body};
use longhaul_registry::{Entry, RegistryError};
use std::net::SocketAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Largest request body the API reads. Entry requests are a few hundred bytes.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;

pub async fn handle(
    req: Request<Incoming>,
    peer: SocketAddr,
    rest: &[String],
    state: &Arc<OriginState>,
) -> Response<Body> {
    if let Some(refusal) = authorize(&req, peer, state) {
        return refusal;
    }
    let method = req.method().clone();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    match (&method, rest.as_slice()) {
        (&Method::POST, ["entries"]) => {
            let body = match read_json(req).await {
                Ok(v) => v,
                Err(resp) => return resp,
            };
            let name = match body.get("name") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "\"name\" must be a string",
                    )
                }
            };
            let registry = state.registry.clone();
            match blocking(move || registry.create_entry(name.as_deref())).await {
                Ok(entry) => {
                    tracing::info!(entry = %entry.id, client = %peer, "entry created");
                    json(StatusCode::CREATED, &entry_json(&entry, state))
                }
                Err(e) => registry_error(e),
            }
        }
        (&Method::GET, ["entries"]) => {
            let registry = state.registry.clone();
            match blocking(move || registry.list()).await {
                Ok(entries) => {
                    let list: Vec<_> = entries.iter().map(|e| entry_json(e, state)).collect();
                    json(StatusCode::OK, &serde_json::json!({ "entries": list }))
                }
                Err(e) => registry_error(e),
            }
        }
        (&Method::GET, ["entries", id]) => {
            let registry = state.registry.clone();
            let id = id.to_string();
            match blocking(move || registry.get(&id)).await {
                Ok(Some(entry)) => json(StatusCode::OK, &entry_json(&entry, state)),
                Ok(None) => not_found(&rest[1..].join("/")),
                Err(e) => registry_error(e),
            }
        }
        (&Method::POST, ["entries", id, "regenerate-token"]) => {
            let registry = state.registry.clone();
            let id = id.to_string();
            match blocking(move || registry.regenerate_token(&id)).await {
                Ok(entry) => {
                    tracing::info!(entry = %entry.id, client = %peer, generation = entry.token_generation, "entry token regenerated");
                    json(StatusCode::OK, &entry_json(&entry, state))
                }
                Err(e) => registry_error(e),
            }
        }
        (&Method::DELETE, ["entries", id]) => {
            let registry = state.registry.clone();
            let id_owned = id.to_string();
            match blocking(move || registry.delete(&id_owned)).await {
                Ok(true) => {
                    tracing::info!(entry = %id, client = %peer, "entry deleted");
                    Response::builder()
                        .status(StatusCode::NO_CONTENT)
                        .body(longhaul_node::http::full(""))
                        .expect("static response parts are valid")
                }
                Ok(false) => not_found(id),
                Err(e) => registry_error(e),
            }
        }
        (&Method::GET, ["entries", id, "fmle.xml"]) => {
            let registry = state.registry.clone();
            let id = id.to_string();
            match blocking(move || registry.get(&id)).await {
                Ok(None) => not_found(rest[1]),
                Ok(Some(entry)) => {
                    let endpoints = state.endpoints_of(&entry);
                    let xml = longhaul_endpoint::fmle_profile_xml(
                        &entry.id,
                        &endpoints,
                        &longhaul_endpoint::DEFAULT_LADDER,
                    );
                    Response::builder()
                        .header("content-type", "application/xml")
                        .header(
                            "content-disposition",
                            format!("attachment; filename=\"{}.xml\"", entry.id),
                        )
                        .body(longhaul_node::http::full(xml))
                        .expect("static response parts are valid")
                }
                Err(e) => registry_error(e),
            }
        }
        (&Method::GET, ["streams"]) => {
            let streams: Vec<_> = state.hub.streams().iter().map(stream_json).collect();
            json(StatusCode::OK, &serde_json::json!({ "streams": streams }))
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no API route for {} /api/v1/{}", method, rest.join("/")),
        ),
    }
}

/// `None` when the request may proceed, else the refusal to send.
fn authorize(
    req: &Request<Incoming>,
    peer: SocketAddr,
    state: &OriginState,
) -> Option<Response<Body>> {
    match &state.config.http.api_token {
        Some(expected) => {
            let presented = req
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
                None
            } else {
                tracing::warn!(client = %peer, "API request without a valid bearer token refused");
                Some(error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this API needs \"Authorization: Bearer <http.api_token>\"",
                ))
            }
        }
        None if peer.ip().is_loopback() => None,
        None => {
            tracing::warn!(client = %peer, "API request from a non-loopback address refused (no http.api_token set)");
            Some(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the API serves only loopback clients unless http.api_token is set",
            ))
        }
    }
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

async fn read_json(req: Request<Incoming>) -> Result<serde_json::Value, Response<Body>> {
    let bytes = Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
        .map_err(|e| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad_body",
                &format!("reading the request body failed (at most {MAX_REQUEST_BODY} bytes): {e}"),
            )
        })?
        .to_bytes();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::json!({}));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            "bad_json",
            &format!("request body is not valid JSON: {e}"),
        )
    })
}

/// A registry call on the blocking pool. A panic there is a bug; it becomes a 500.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, ApiFailure> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiFailure::Registry),
        Err(e) => Err(ApiFailure::Task(e.to_string())),
    }
}

enum ApiFailure {
    Registry(RegistryError),
    Task(String),
}

/// The JSON form of a live stream.
fn stream_json(s: &longhaul_hub::StreamSummary) -> serde_json::Value {
    let secs = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    serde_json::json!({
        "name": s.key.name,
        "leg": s.key.leg.as_str(),
        "publisher": s.publisher.addr,
        "publisher_region": s.publisher.region,
        "via_edge": s.publisher.via,
        "publisher_since": secs(s.publisher_since),
        "started_at": secs(s.started_at),
        "players": s.players,
        "messages_in": s.messages_in,
        "bytes_in": s.bytes_in,
        "keyframes": s.keyframes,
        "video_codec": s.video_codec.map(|c| codec_name(&c)),
        "audio_codec": s.audio_codec.map(|c| codec_name(&c)),
        "gop_cache_bytes": s.gop_cache_bytes,
        "player_skips": s.player_skips,
        "players_dropped": s.players_dropped,
        "takeovers": s.takeovers,
        "timestamp_offset": s.timestamp_offset,
        "config_bytes": s.config_bytes,
        "config_refused": s.config_refused,
    })
}

fn codec_name(codec: &longhaul_rtmp::media::Codec) -> String {
    match codec {
        longhaul_rtmp::media::Codec::FourCc(f) => String::from_utf8_lossy(f).into_owned(),
        longhaul_rtmp::media::Codec::Legacy(id) => format!("flv:{id}"),
    }
}

fn not_found(id: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        "entry_not_found",
        &format!("entry {id} does not exist"),
    )
}

fn registry_error(e: ApiFailure) -> Response<Body> {
    match e {
        ApiFailure::Registry(RegistryError::NotFound(id)) => not_found(&id),
        ApiFailure::Registry(RegistryError::InvalidName(why)) => error(
            StatusCode::BAD_REQUEST,
            "bad_name",
            &format!("invalid entry name: {why}"),
        ),
        ApiFailure::Registry(other) => {
            tracing::error!(error = %other, "registry operation failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "registry_error",
                &other.to_string(),
            )
        }
        ApiFailure::Task(e) => {
            tracing::error!(error = %e, "registry task failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the registry task failed",
            )
        }
    }
}
