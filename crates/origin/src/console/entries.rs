//! The entries pages' handlers: list, create, an entry's page and its live part, the
//! endpoints for the copy buttons, the FMLE export, and regenerate and delete with
//! their confirmations.

use super::access::{bad_form, check_csrf, CsrfForm, Visitor};
use super::{frame, html, secs, secure_headers, Refusal};
use crate::api::ApiError;
use crate::state::OriginState;
use axum::extract::rejection::{FormRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::StatusCode;
use longhaul_console::entries::{
    EntryList, EntryRow, EntryView, Live, LiveElsewhere, LiveLeg, LiveRendition,
};
use longhaul_registry::Entry;
use serde::Deserialize;
use std::sync::Arc;

/// The `{id}` of a route, or the refusal of a path that cannot be read.
fn entry_id(path: Result<Path<String>, PathRejection>) -> Result<String, Refusal> {
    path.map(|Path(id)| id).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "Not an entry id",
            format!("The entry id in the path cannot be read: {}", e.body_text()),
        )
    })
}

/// A query string that cannot be read.
fn bad_query(e: QueryRejection) -> Refusal {
    Refusal::new(
        StatusCode::BAD_REQUEST,
        "Not readable",
        format!("The query string cannot be read: {}", e.body_text()),
    )
}

/// A registry error as a refusal with the API's status and words.
fn registry_failed(e: ApiError) -> Refusal {
    Refusal::new(e.status, "The change was not made", e.message)
}

fn no_entry(id: &str) -> Refusal {
    Refusal::new(
        StatusCode::NOT_FOUND,
        "No such entry",
        format!("Entry {id} does not exist (it may have been deleted)."),
    )
}

fn registry_of(state: &OriginState) -> Result<&Arc<longhaul_registry::Registry>, Refusal> {
    state.registry.as_ref().ok_or_else(|| {
        Refusal::new(
            StatusCode::NOT_FOUND,
            "No entries here",
            "This origin keeps no entries: publishes are authorised by the platform's callback.",
        )
    })
}

fn entry_of(state: &OriginState, id: &str) -> Result<Entry, Refusal> {
    registry_of(state)?.get(id).ok_or_else(|| no_entry(id))
}

#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    done: String,
}

/// What a redirect after a change says, by its `done` word (never text from the URL).
fn done_notice(done: &str) -> Option<&'static str> {
    match done {
        "created" => Some("Entry created. Copy its URLs into your encoder."),
        "regenerated" => Some(
            "Token regenerated: the old one is refused from now on and its live publishes \
             were cut. Update your encoder with the new URL.",
        ),
        "deleted" => Some("Entry deleted; its live publishes were cut."),
        _ => None,
    }
}

/// Renditions live at this origin by entry id.
fn live_counts(state: &OriginState) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for r in state.hub.renditions() {
        if let Some((id, _)) = r.name.rsplit_once('_') {
            *counts.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

/// `GET /console/entries?q=`: the list, newest first, searched by id or name.
pub(crate) async fn list(
    State(state): State<Arc<OriginState>>,
    Extension(visitor): Extension<Visitor>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    let Query(query) = query.map_err(bad_query)?;
    let registry = registry_of(&state)?;
    let mut all = registry.list();
    all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let needle = query.q.trim().to_lowercase();
    let live = live_counts(&state);
    let matching: Vec<&Entry> = all
        .iter()
        .filter(|e| {
            needle.is_empty()
                || e.id.to_lowercase().contains(&needle)
                || e.name.to_lowercase().contains(&needle)
        })
        .collect();
    let list = EntryList {
        rows: matching
            .iter()
            .take(longhaul_console::entries::MAX_LISTED)
            .map(|e| EntryRow {
                id: e.id.clone(),
                name: e.name.clone(),
                created_at: u64::try_from(e.created_at).unwrap_or(0),
                live_renditions: live.get(&e.id).copied().unwrap_or(0),
            })
            .collect(),
        matched: matching.len(),
        total: all.len(),
        query: query.q.clone(),
    };
    Ok(html(
        StatusCode::OK,
        longhaul_console::entries::list_page(
            &frame(&state, Some(&visitor)),
            &list,
            &visitor.session.csrf,
            done_notice(&query.done),
        ),
    ))
}

#[derive(Deserialize)]
pub(crate) struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

/// `POST /console/entries`: creates an entry (CSRF checked) and goes to its page.
pub(crate) async fn create(
    State(state): State<Arc<OriginState>>,
    Extension(visitor): Extension<Visitor>,
    form: Result<Form<CreateForm>, FormRejection>,
) -> Result<Response, Refusal> {
    let Form(form) = form.map_err(bad_form)?;
    check_csrf(&visitor, &form.csrf)?;
    let registry = registry_of(&state)?;
    let name = Some(form.name.trim()).filter(|n| !n.is_empty());
    match registry.create_entry(name).await {
        Ok(entry) => {
            tracing::info!(entry = %entry.id, caller = %visitor.caller, "entry created");
            Ok(
                Redirect::to(&format!("/console/entries/{}?done=created", entry.id))
                    .into_response(),
            )
        }
        Err(e) => Err(registry_failed(e.into())),
    }
}

/// What of the entry is live: here, and at other origins (each of its stream names
/// looked up through [`crate::elsewhere::Finder`]: cached 2 s, bounded).
async fn live_of(state: &OriginState, entry: &Entry) -> Live {
    let mut elsewhere = Vec::new();
    for stream in state.endpoints_of(entry).stream_names {
        if let crate::elsewhere::Answer::Elsewhere(at) = state.elsewhere.find(state, &stream).await
        {
            elsewhere.push(LiveElsewhere {
                origins: at
                    .iter()
                    .map(|l| format!("{} ({})", l.origin, l.region))
                    .collect(),
                stream,
            });
        }
    }
    Live {
        here: live_renditions(state, &entry.id),
        elsewhere,
    }
}

/// The entry's renditions live at this origin, for its page.
fn live_renditions(state: &OriginState, id: &str) -> Vec<LiveRendition> {
    let prefix = format!("{id}_");
    let streams = state.hub.streams();
    let mut live: Vec<LiveRendition> = state
        .hub
        .renditions()
        .into_iter()
        .filter(|r| {
            r.name
                .strip_prefix(&prefix)
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|r| {
            let mut legs: Vec<LiveLeg> = streams
                .iter()
                .filter(|s| s.key.name == r.name)
                .map(|s| {
                    let codec = |c: Option<longhaul_rtmp::media::Codec>| {
                        c.map(crate::stream_metrics::codec_label)
                            .unwrap_or_else(|| "-".into())
                    };
                    let from = match (&s.publisher.via, &s.publisher.replica_of) {
                        (_, Some(peer)) => format!("pulled from {peer}"),
                        (Some(edge), None) => format!("{} via {edge}", s.publisher.addr),
                        (None, None) => s.publisher.addr.clone(),
                    };
                    LiveLeg {
                        leg: s.key.leg.as_str(),
                        bitrate_bps: s.health.bitrate_bps,
                        frame_rate: s.health.frame_rate,
                        gop_seconds: s.health.keyframe_interval.map(|d| d.as_secs_f64()),
                        players: s.players,
                        codecs: format!("{} / {}", codec(s.video_codec), codec(s.audio_codec)),
                        from,
                    }
                })
                .collect();
            legs.sort_by_key(|l| l.leg);
            legs.reverse(); // p before b
            LiveRendition {
                on_air: r.on_air.map(|l| l.as_str()),
                players: r.players,
                last_switch: r.last_switch.and_then(|(s, at)| {
                    let from = s.from?;
                    Some((
                        format!(
                            "{} → {} ({})",
                            from.as_str(),
                            s.to.as_str(),
                            s.reason.as_str().replace('_', " ")
                        ),
                        secs(at),
                    ))
                }),
                name: r.name,
                legs,
            }
        })
        .collect();
    live.sort_by(|a, b| a.name.cmp(&b.name));
    live
}

#[derive(Deserialize, Default)]
pub(crate) struct EntryQuery {
    #[serde(default)]
    reveal: Option<String>,
    #[serde(default)]
    done: String,
}

/// `GET /console/entries/{id}`: the entry's page; `?reveal=1` shows its tokens (logged).
pub(crate) async fn show(
    State(state): State<Arc<OriginState>>,
    Extension(visitor): Extension<Visitor>,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<EntryQuery>, QueryRejection>,
) -> Result<Response, Refusal> {
    let id = entry_id(id)?;
    let Query(query) = query.map_err(bad_query)?;
    let entry = entry_of(&state, &id)?;
    let reveal = query.reveal.is_some_and(|r| r == "1" || r == "true");
    if reveal {
        tracing::info!(entry = %entry.id, caller = %visitor.caller, "entry token shown in the console");
    }
    let endpoints = state.endpoints_of(&entry);
    let live = live_of(&state, &entry).await;
    let view = EntryView {
        id: &entry.id,
        name: &entry.name,
        created_at: u64::try_from(entry.created_at).unwrap_or(0),
        token: &entry.token,
        token_generation: entry.token_generation,
        endpoints: &endpoints,
        live: &live,
    };
    Ok(html(
        StatusCode::OK,
        longhaul_console::entries::entry_page(
            &frame(&state, Some(&visitor)),
            &view,
            reveal,
            done_notice(&query.done),
        ),
    ))
}

/// `GET /console/entries/{id}/live`: the part of the entry page the script refreshes.
pub(crate) async fn live(
    State(state): State<Arc<OriginState>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Refusal> {
    let id = entry_id(id)?;
    let entry = entry_of(&state, &id)?;
    Ok(html(
        StatusCode::OK,
        longhaul_console::entries::live_fragment(&live_of(&state, &entry).await),
    ))
}

/// `GET /console/entries/{id}/endpoints.json`: the endpoints with the token, for the
/// copy buttons (logged, never cached).
pub(crate) async fn endpoints_json(
    State(state): State<Arc<OriginState>>,
    Extension(visitor): Extension<Visitor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Refusal> {
    let id = entry_id(id)?;
    let entry = entry_of(&state, &id)?;
    tracing::info!(entry = %entry.id, caller = %visitor.caller,
        "entry endpoints with token read by the console (copy)");
    let mut response = longhaul_node::http::json(
        StatusCode::OK,
        &serde_json::to_value(state.endpoints_of(&entry)).unwrap_or_default(),
    )
    .into_response();
    secure_headers(response.headers_mut());
    Ok(response)
}

/// `GET /console/entries/{id}/fmle.xml`: the FMLE profile, as a download.
pub(crate) async fn fmle(
    State(state): State<Arc<OriginState>>,
    Extension(visitor): Extension<Visitor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Refusal> {
    let id = entry_id(id)?;
    let entry = entry_of(&state, &id)?;
    tracing::info!(entry = %entry.id, caller = %visitor.caller, "FMLE profile exported by the console");
    let xml = longhaul_endpoint::fmle_profile_xml(
        &entry.id,
        &state.endpoints_of(&entry),
        &longhaul_endpoint::DEFAULT_LADDER,
    );
    let mut response = xml.into_response();
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}.xml\"", entry.id)) {
        h.insert("content-disposition", v);
    }
    secure_headers(h);
    Ok(response)
}

/// Renditions of `id` with a leg live at this origin.
fn live_renditions_count(state: &OriginState, id: &str) -> usize {
    let prefix = format!("{id}_");
    state
        .hub
        .renditions()
        .iter()
        .filter(|r| r.name.starts_with(&prefix))
        .count()
}

/// `GET /console/entries/{id}/regenerate`: what a regeneration does, and its button.
pub(crate) async fn confirm_regenerate(
    State(state): State<Arc<OriginState>>,
    Extension(visitor): Extension<Visitor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Refusal> {
    let id = entry_id(id)?;
    let entry = entry_of(&state, &id)?;
    Ok(html(
        StatusCode::OK,
        longhaul_console::entries::regenerate_page(
            &frame(&state, Some(&visitor)),
            &entry.id,
            &entry.name,
            entry.token_generation,
            live_renditions_count(&state, &entry.id),
            &visitor.session.csrf,
        ),
    ))
}

#[derive(Deserialize)]
pub(crate) struct RegenerateForm {
    #[serde(default)]
    csrf: String,
    generation: Option<u32>,
}

/// `POST /console/entries/{id}/regenerate`: a new token (CSRF checked; only from the
/// generation the confirmation showed, else 409); the registry's change cuts the old
/// token's live publishes everywhere.
pub(crate) async fn regenerate(
    State(state): State<Arc<OriginState>>,
    Extension(visitor): Extension<Visitor>,
    id: Result<Path<String>, PathRejection>,
    form: Result<Form<RegenerateForm>, FormRejection>,
) -> Result<Response, Refusal> {
    let id = entry_id(id)?;
    let Form(form) = form.map_err(bad_form)?;
    check_csrf(&visitor, &form.csrf)?;
    let registry = registry_of(&state)?;
    match registry.regenerate_token(&id, form.generation).await {
        Ok(entry) => {
            tracing::info!(entry = %entry.id, caller = %visitor.caller,
                generation = entry.token_generation, "entry token regenerated");
            Ok(
                Redirect::to(&format!("/console/entries/{}?done=regenerated", entry.id))
                    .into_response(),
            )
        }
        Err(e) => Err(registry_failed(e.into())),
    }
}

/// `GET /console/entries/{id}/delete`: what a deletion does, and its button.
pub(crate) async fn confirm_delete(
    State(state): State<Arc<OriginState>>,
    Extension(visitor): Extension<Visitor>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Refusal> {
    let id = entry_id(id)?;
    let entry = entry_of(&state, &id)?;
    Ok(html(
        StatusCode::OK,
        longhaul_console::entries::delete_page(
            &frame(&state, Some(&visitor)),
            &entry.id,
            &entry.name,
            live_renditions_count(&state, &entry.id),
            &visitor.session.csrf,
        ),
    ))
}

/// `POST /console/entries/{id}/delete`: deletes the entry (CSRF checked).
pub(crate) async fn delete(
    State(state): State<Arc<OriginState>>,
    Extension(visitor): Extension<Visitor>,
    id: Result<Path<String>, PathRejection>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, Refusal> {
    let id = entry_id(id)?;
    let Form(form) = form.map_err(bad_form)?;
    check_csrf(&visitor, &form.csrf)?;
    let registry = registry_of(&state)?;
    match registry.delete(&id).await {
        Ok(true) => {
            tracing::info!(entry = %id, caller = %visitor.caller, "entry deleted");
            Ok(Redirect::to("/console/entries?done=deleted").into_response())
        }
        Ok(false) => Err(no_entry(&id)),
        Err(e) => Err(registry_failed(e.into())),
    }
}
