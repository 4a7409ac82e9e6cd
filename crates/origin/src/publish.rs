//! The publish decision: which stream a publish is for, and whether it may go on.
//!
//! 1. The URL rules (`longhaul_endpoint::resolve_publish`) find entry, rendition, leg and
//!    token in the connect `app`, the `tcUrl` and the publish name.
//! 2. The registry checks the token against the entry's current one.
//! 3. The hub opens the stream; an older connection publishing the same entry, leg and
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

use crate::metrics::reason;
use crate::state::OriginState;
use longhaul_endpoint::{resolve_publish, EndpointError, Leg, PublishTarget};
use longhaul_hub::{Publication, PublishOutcome, PublisherInfo, StreamKey};
use longhaul_node::Transport;
use longhaul_registry::TokenCheck;
use longhaul_rtmp::server::ConnectRequest;
use std::net::SocketAddr;
use std::sync::Arc;

pub use longhaul_rtmp::status::{
    PUBLISH_BAD_NAME as CODE_BAD_NAME, PUBLISH_REJECTED as CODE_REJECTED,
};

pub enum PublishDecision {
    Accept(Publication),
    Reject {
        code: &'static str,
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

/// Decides on a direct publish of `name` by the connection from `peer`.
pub async fn decide(
    state: &Arc<OriginState>,
    connect: Option<&ConnectRequest>,
    name: &str,
    peer: SocketAddr,
    transport: Transport,
    connection_id: u64,
) -> PublishDecision {
    let (app, tc_url) = match connect {
        Some(c) => (c.app.as_str(), c.tc_url.as_deref()),
        None => ("", None),
    };
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
            description: r.description,
        };
    }
    let default_leg = state.config.ingest.default_leg;
    match authorise(state, app, tc_url, name, default_leg, &publisher).await {
        Ok(target) => PublishDecision::Accept(accept(state, &target, &publisher)),
        Err(r) => {
            state.abuse.failed(peer.ip(), r.reason);
            PublishDecision::Reject {
                code: r.code,
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
) -> Result<PublishTarget, Refusal> {
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
    let registry = state.registry.clone();
    let (entry_id, token) = (target.entry_id.clone(), target.token.clone());
    let check =
        tokio::task::spawn_blocking(move || registry.check_token(&entry_id, token.as_deref()))
            .await;
    let refusal = match check {
        Ok(Ok(TokenCheck::Valid { .. })) => None,
        Ok(Ok(TokenCheck::Missing)) => Some((
            reason::MISSING_TOKEN,
            format!(
                "publish refused: no token for entry {}; add ?t=<token> to the URL",
                target.entry_id
            ),
        )),
        Ok(Ok(TokenCheck::Wrong)) => Some((
            reason::WRONG_TOKEN,
            format!(
                "publish refused: wrong token for entry {} (it may have been regenerated)",
                target.entry_id
            ),
        )),
        Ok(Ok(TokenCheck::UnknownEntry)) => Some((
            reason::UNKNOWN_ENTRY,
            format!("publish refused: entry {} does not exist", target.entry_id),
        )),
        Ok(Err(e)) => Some((
            reason::INTERNAL,
            format!("publish refused: the registry failed: {e}"),
        )),
        Err(e) => Some((
            reason::INTERNAL,
            format!("publish refused: the registry task failed: {e}"),
        )),
    };
    match refusal {
        Some((why, description)) => Err(refuse(
            state,
            publisher,
            &target.stream_name,
            CODE_REJECTED,
            why,
            description,
        )),
        None => Ok(target),
    }
}

/// Opens (or takes over) the stream of an authorised publish.
pub fn accept(
    state: &Arc<OriginState>,
    target: &PublishTarget,
    publisher: &Publisher,
) -> Publication {
    let key = StreamKey::new(&target.stream_name, target.leg);
    let info = PublisherInfo {
        addr: publisher.client.clone(),
        connection_id: publisher.connection_id,
        region: publisher.region.clone(),
        via: publisher.via.clone(),
    };
    let (publication, outcome) = state.hub.publish(key, info);
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
    if let PublishOutcome::TookOver { previous } = outcome {
        m.publish_takeovers.inc();
        tracing::info!(%client, stream = %target.stream_name, leg = %target.leg, %previous,
            "publish took over the stream from an older connection");
    }
    tracing::info!(%client, stream = %target.stream_name, entry = %target.entry_id,
        rendition = target.rendition, leg = %target.leg, leg_source = ?target.leg_source,
        transport = publisher.transport, encoder_region = %publisher.region,
        via = publisher.via.as_deref().unwrap_or("direct"), "publish accepted");
    publication
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
    let stream = stream.split('?').next().unwrap_or_default();
    tracing::warn!(client = %publisher.client, %stream, reason = why, transport = publisher.transport,
        encoder_region = %publisher.region, via = publisher.via.as_deref().unwrap_or("direct"),
        "{description}");
    Refusal {
        code,
        reason: why,
        description,
    }
}
