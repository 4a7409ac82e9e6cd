//! The publish decision: which stream a publish is for, and whether it may go on.
//!
//! 1. The URL rules (`longhaul_endpoint::resolve_publish`) find entry, rendition, leg and
//!    token in the connect `app`, the `tcUrl` and the publish name.
//! 2. The authority decides: the registry checks the token against the entry's current
//!    one (from memory, so this goes on while the database is down), or the platform's
//!    HTTP callback answers ([`crate::callback`]).
//! 3. The publish is registered as live under its entry, with the token generation it
//!    was allowed with, so a revocation can cut it ([`crate::revoke`]); one that was
//!    revoked between the check and now is refused here.
//! 4. The hub opens the stream; an older connection publishing the same entry, leg and
//!    rendition is taken over (it is told, and closes at once), so an encoder reconnecting
//!    after a network blip never waits for its dead TCP connection to time out.
//!
//! Before them, an address that keeps failing the token check is slowed, then refused
//! for a while (`longhaul_node::abuse_gate`), and every refusal of a direct publish for
//! its credentials counts against its address. A tunnelled publish is guarded at its
//! edge, which knows the encoder's address.
//!
//! Every refusal tells the encoder why (the `description` of the RTMP `onStatus`, which
//! ffmpeg prints and OBS logs), is logged with the client address, and is counted in
//! `longhaul_publishes_total{outcome="rejected",reason,transport,encoder_region}`.
//!
//! A publish an edge forwards through a tunnel meets the same two checks
//! ([`authorise`]) when the edge asks, and is opened ([`accept`]) when its stream arrives.

use crate::callback::{CallbackRequest, CallbackVerdict};
use crate::metrics::reason;
use crate::state::OriginState;
use longhaul_endpoint::{resolve_publish, EndpointError, Leg, PublishTarget};
use longhaul_hub::{Publication, PublishOutcome, PublisherInfo, StreamKey};
use longhaul_node::{LivePublish, Transport};
use longhaul_registry::TokenCheck;
use std::net::SocketAddr;
use std::sync::Arc;

pub use longhaul_rtmp::status::{
    PUBLISH_BAD_NAME as CODE_BAD_NAME, PUBLISH_REJECTED as CODE_REJECTED,
};

pub enum PublishDecision {
    Accept(Accepted),
    Reject {
        code: &'static str,
        /// The `reason` label it was counted under (an RTSP refusal's status is chosen
        /// by it).
        reason: &'static str,
        description: String,
    },
}

/// Why a publish may not go on: what the encoder hears, and the metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// RTMP status code.
    pub code: &'static str,
    /// The `reason` label of `longhaul_publishes_total`.
    pub reason: &'static str,
    /// The status description the encoder prints.
    pub description: String,
}

/// A publish the authority allowed: where it goes, and what a revocation checks it by.
#[derive(Debug, Clone)]
pub struct Authorised {
    pub target: PublishTarget,
    /// The token generation it was allowed with (`None` from a callback).
    pub generation: Option<u32>,
    /// The entry's revocation epoch before the check (see `longhaul_node::revocation`).
    pub epoch: u64,
}

/// An accepted publish: its stream in the hub, and its registration as live.
pub struct Accepted {
    pub publication: Publication,
    pub live: LivePublish,
    /// The publish continues a publication the hub held ([`longhaul_hub::Hub::resume`]).
    pub resumed: bool,
}

/// Who asks to publish, for the logs, the metrics and the hub's publisher info.
#[derive(Debug, Clone)]
pub struct Publisher {
    /// The encoder's address, as the node it connected to saw it.
    pub client: String,
    /// How the encoder reached us: `rtmp`, `rtmps`, or `tunnel` through an edge.
    pub transport: &'static str,
    /// The region the encoder published in: ours, or the edge's.
    pub region: String,
    /// The edge the publish came through.
    pub via: Option<String>,
    /// The connection (direct) or stream (tunnel) id, unique in this process.
    pub connection_id: u64,
}

/// Decides on a direct publish of `name` by the connection from `peer`, which
/// connected to `app` at `tc_url` (an RTMP `connect`'s fields, or an RTSP URL's parts).
pub async fn decide(
    state: &Arc<OriginState>,
    app: &str,
    tc_url: Option<&str>,
    name: &str,
    peer: SocketAddr,
    transport: Transport,
    connection_id: u64,
) -> PublishDecision {
    let publisher = Publisher {
        client: peer.to_string(),
        transport: transport.as_str(),
        region: state.config.node.region.clone(),
        via: None,
        connection_id,
    };
    if let Err(banned) = state.abuse.admit(peer.ip()).await {
        let why = reason::TOO_MANY_FAILURES;
        let r = refuse(
            state,
            &publisher,
            name,
            CODE_REJECTED,
            why,
            banned.to_string(),
        );
        return PublishDecision::Reject {
            code: r.code,
            reason: r.reason,
            description: r.description,
        };
    }
    let default_leg = state.config.ingest.default_leg;
    let accepted = match authorise(state, app, tc_url, name, default_leg, &publisher).await {
        Ok(authorised) => accept(state, &authorised, &publisher, None),
        Err(r) => Err(r),
    };
    match accepted {
        Ok(accepted) => PublishDecision::Accept(accepted),
        Err(r) => {
            state.abuse.failed(peer.ip(), r.reason);
            PublishDecision::Reject {
                code: r.code,
                reason: r.reason,
                description: r.description,
            }
        }
    }
}

/// Checks a publish: URL rules, then the token. Refusals are logged and counted here.
/// Shared by direct publishes and those an edge asks about over a tunnel, so both meet
/// exactly the same rules and words.
pub async fn authorise(
    state: &Arc<OriginState>,
    app: &str,
    tc_url: Option<&str>,
    name: &str,
    default_leg: Leg,
    publisher: &Publisher,
) -> Result<Authorised, Refusal> {
    let target = match resolve_publish(app, tc_url, name, default_leg) {
        Ok(t) => t,
        Err(e) => {
            let why = match e {
                EndpointError::UnknownApplication { .. } => reason::UNKNOWN_APP,
                _ => reason::BAD_STREAM_NAME,
            };
            return Err(refuse(
                state,
                publisher,
                name,
                CODE_BAD_NAME,
                why,
                format!("publish refused: {e}"),
            ));
        }
    };
    if state.draining.is_cancelled() {
        return Err(refuse(
            state,
            publisher,
            &target.stream_name,
            CODE_REJECTED,
            reason::DRAINING,
            format!(
                "publish refused: origin {} is draining (shutting down); publish again to reach another origin",
                state.config.node.id
            ),
        ));
    }
    let epoch = state.live.epoch();
    let decided = match (&state.callback, &state.registry) {
        (Some(callback), _) => {
            let request = CallbackRequest {
                entry_id: target.entry_id.clone(),
                rendition: target.rendition,
                leg: target.leg.as_str(),
                stream_name: target.stream_name.clone(),
                token: target.token.clone(),
                client_addr: publisher.client.clone(),
                transport: publisher.transport,
                encoder_region: publisher.region.clone(),
                edge: publisher.via.clone(),
                origin: state.config.node.id.clone(),
            };
            let (verdict, cached) = callback.check(&request).await;
            let outcome = match (&verdict, cached) {
                (CallbackVerdict::Allowed, false) => "allowed",
                (CallbackVerdict::Allowed, true) => "allowed_cached",
                (CallbackVerdict::Refused { .. }, false) => "refused",
                (CallbackVerdict::Refused { .. }, true) => "refused_cached",
                (CallbackVerdict::Unavailable { .. }, _) => "unavailable",
            };
            state.metrics.callbacks.with_label_values(&[outcome]).inc();
            match verdict {
                CallbackVerdict::Allowed => Ok(None),
                CallbackVerdict::Refused { reason: why } => {
                    Err((reason::CALLBACK_REFUSED, format!("publish refused: {why}")))
                }
                CallbackVerdict::Unavailable { .. } => Err((
                    reason::CALLBACK_UNAVAILABLE,
                    "publish refused: the authorisation service is unavailable; try again shortly"
                        .to_string(),
                )),
            }
        }
        (None, Some(registry)) => {
            let check = registry
                .check_token(&target.entry_id, target.token.as_deref())
                .await;
            // Fail static: while the registry is out of reach, a token or entry made a
            // moment ago elsewhere cannot be looked up. Refused, but not counted against
            // the address: the encoder may be right.
            let unverified = matches!(check, TokenCheck::Wrong | TokenCheck::UnknownEntry)
                && registry.state() != longhaul_registry::StoreState::Connected;
            match check {
                _ if unverified => Err((
                    reason::UNVERIFIED_TOKEN,
                    format!(
                        "publish refused: entry {} or its token is not the one this origin \
                         knows, and it cannot reach its registry to check; try again shortly",
                        target.entry_id
                    ),
                )),
                TokenCheck::Valid { generation } => Ok(Some(generation)),
                TokenCheck::Missing => Err((
                    reason::MISSING_TOKEN,
                    format!(
                        "publish refused: no token for entry {}; add ?t=<token> to the URL",
                        target.entry_id
                    ),
                )),
                TokenCheck::Wrong => Err((
                    reason::WRONG_TOKEN,
                    format!(
                        "publish refused: wrong token for entry {} (it may have been regenerated)",
                        target.entry_id
                    ),
                )),
                TokenCheck::UnknownEntry => Err((
                    reason::UNKNOWN_ENTRY,
                    format!("publish refused: entry {} does not exist", target.entry_id),
                )),
            }
        }
        // Validation requires one or the other.
        (None, None) => Err((
            reason::INTERNAL,
            "publish refused: this origin has no way to check tokens".to_string(),
        )),
    };
    match decided {
        Ok(generation) => Ok(Authorised {
            target,
            generation,
            epoch,
        }),
        Err((why, description)) => Err(refuse(
            state,
            publisher,
            &target.stream_name,
            CODE_REJECTED,
            why,
            description,
        )),
    }
}

/// Registers an authorised publish as live and opens (or takes over) its stream. A
/// publish whose token was revoked since it was authorised is refused instead.
pub fn accept(
    state: &Arc<OriginState>,
    authorised: &Authorised,
    publisher: &Publisher,
    resumable: Option<u64>,
) -> Result<Accepted, Refusal> {
    let target = &authorised.target;
    // Register first, then look: a revocation either sees this publish or has already
    // moved on what is current (see longhaul_node::revocation).
    let live = state.live.register(&target.entry_id, authorised.generation);
    if let Some((why, description)) = stale(state, authorised) {
        return Err(refuse(
            state,
            publisher,
            &target.stream_name,
            CODE_REJECTED,
            why,
            description,
        ));
    }
    let key = StreamKey::new(&target.stream_name, target.leg);
    let info = PublisherInfo {
        addr: publisher.client.clone(),
        connection_id: publisher.connection_id,
        region: publisher.region.clone(),
        via: publisher.via.clone(),
        replica_of: None,
    };
    let (publication, outcome) = match resumable {
        Some(id) => state.hub.resume(key, info, id),
        None => state.hub.publish(key, info),
    };
    let m = &state.metrics;
    m.publishes
        .with_label_values(&[
            "accepted",
            reason::OK,
            publisher.transport,
            &publisher.region,
        ])
        .inc();
    let client = &publisher.client;
    // The same fields on every publish event, at origins and edges (README, "Log fields").
    let (entry, rendition, leg, stream) = (
        &target.entry_id,
        target.rendition,
        target.leg,
        &target.stream_name,
    );
    let (region, edge, origin) = (
        &publisher.region,
        publisher.via.as_deref().unwrap_or(""),
        &state.config.node.id,
    );
    match &outcome {
        PublishOutcome::TookOver { previous } => {
            m.publish_takeovers.inc();
            tracing::info!(%entry, rendition, %leg, %stream, %client, %region, edge, %origin,
                %previous, "publish took over the stream from an older connection");
        }
        PublishOutcome::Resumed { previous } => {
            tracing::info!(%entry, rendition, %leg, %stream, %client, %region, edge, %origin,
                %previous, "publish resumed on a new tunnel stream: players stay attached");
        }
        PublishOutcome::New => {}
    }
    tracing::info!(%entry, rendition, %leg, %stream, %client, %region, edge, %origin,
        transport = publisher.transport, leg_source = ?target.leg_source, "publish accepted");
    Ok(Accepted {
        publication,
        live,
        resumed: matches!(outcome, PublishOutcome::Resumed { .. }),
    })
}

/// Why an authorised publish may no longer go on: its entry was revoked, deleted, or
/// given a new token since it was checked.
fn stale(state: &OriginState, authorised: &Authorised) -> Option<(&'static str, String)> {
    let entry_id = &authorised.target.entry_id;
    if let Some(why) = state
        .live
        .revoked_since(entry_id, authorised.epoch, authorised.generation)
    {
        return Some((reason::REVOKED, why.description));
    }
    match (&state.registry, authorised.generation) {
        (Some(registry), Some(generation)) => match registry.current_generation(entry_id) {
            Some(current) if current == generation => None,
            Some(_) => Some((
                reason::WRONG_TOKEN,
                format!(
                    "publish refused: the token of entry {entry_id} was regenerated a moment ago"
                ),
            )),
            None => Some((
                reason::UNKNOWN_ENTRY,
                format!("publish refused: entry {entry_id} was deleted a moment ago"),
            )),
        },
        _ => None,
    }
}

fn refuse(
    state: &OriginState,
    publisher: &Publisher,
    stream: &str,
    code: &'static str,
    why: &'static str,
    description: String,
) -> Refusal {
    state
        .metrics
        .publishes
        .with_label_values(&["rejected", why, publisher.transport, &publisher.region])
        .inc();
    // A publish name may carry the token (`name?t=...`): never into the logs.
    let stream = longhaul_endpoint::redact_tokens(stream);
    let (entry, rendition) =
        longhaul_endpoint::stream_parts(stream.split('?').next().unwrap_or_default());
    tracing::warn!(%entry, %rendition, %stream, client = %publisher.client,
        region = %publisher.region, edge = publisher.via.as_deref().unwrap_or(""),
        origin = %state.config.node.id, reason = why, transport = publisher.transport,
        "{description}");
    Refusal {
        code,
        reason: why,
        description,
    }
}
