//! The publish decision: which stream a publish is for, and whether it may go on.
//!
//! 1. The URL rules (`longhaul_endpoint::resolve_publish`) find entry, rendition, leg and
//!    token in the connect `app`, the `tcUrl` and the publish name.
//! 2. The registry checks the token against the entry's current one.
//! 3. The hub opens the stream; an older connection publishing the same entry, leg and
//!    rendition is taken over (it is told, and closes at once), so an encoder reconnecting
//!    after a network blip never waits for its dead TCP connection to time out.
//!
//! Every refusal tells the encoder why (the `description` of the RTMP `onStatus`, which
//! ffmpeg prints and OBS logs), is logged with the client address, and is counted in
//! `longhaul_publishes_total{outcome="rejected",reason}`.

use crate::metrics::reason;
use crate::state::OriginState;
use longhaul_endpoint::{resolve_publish, EndpointError, PublishTarget};
use longhaul_hub::{Publication, PublishOutcome, PublisherInfo, StreamKey};
use longhaul_node::Transport;
use longhaul_registry::TokenCheck;
use longhaul_rtmp::server::ConnectRequest;
use std::net::SocketAddr;
use std::sync::Arc;

/// RTMP status code for a publish refused for its name or application.
pub const CODE_BAD_NAME: &str = "NetStream.Publish.BadName";
/// RTMP status code for a publish refused for its token.
pub const CODE_REJECTED: &str = "NetStream.Publish.Rejected";

pub enum PublishDecision {
    Accept(Publication),
    Reject {
        code: &'static str,
        description: String,
    },
}

/// Decides on a publish of `name` by the connection from `peer`.
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
    let target = match resolve_publish(app, tc_url, name, state.config.ingest.default_leg) {
        Ok(t) => t,
        Err(e) => {
            let why = match e {
                EndpointError::UnknownApplication { .. } => reason::UNKNOWN_APP,
                _ => reason::BAD_STREAM_NAME,
            };
            return reject(
                state,
                peer,
                name,
                CODE_BAD_NAME,
                why,
                format!("publish refused: {e}"),
            );
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
    if let Some((why, description)) = refusal {
        let code = CODE_REJECTED;
        return reject(state, peer, &target.stream_name, code, why, description);
    }
    accept(state, &target, peer, transport, connection_id)
}

fn accept(
    state: &Arc<OriginState>,
    target: &PublishTarget,
    peer: SocketAddr,
    transport: Transport,
    connection_id: u64,
) -> PublishDecision {
    let key = StreamKey::new(&target.stream_name, target.leg);
    let info = PublisherInfo {
        addr: peer.to_string(),
        connection_id,
    };
    let (publication, outcome) = state.hub.publish(key, info);
    let m = &state.metrics;
    m.publishes
        .with_label_values(&["accepted", reason::OK])
        .inc();
    if let PublishOutcome::TookOver { previous } = outcome {
        m.publish_takeovers.inc();
        tracing::info!(client = %peer, stream = %target.stream_name, leg = %target.leg, %previous,
            "publish took over the stream from an older connection");
    }
    tracing::info!(client = %peer, stream = %target.stream_name, entry = %target.entry_id,
        rendition = target.rendition, leg = %target.leg, leg_source = ?target.leg_source,
        transport = transport.as_str(), "publish accepted");
    PublishDecision::Accept(publication)
}

fn reject(
    state: &OriginState,
    peer: SocketAddr,
    stream: &str,
    code: &'static str,
    why: &'static str,
    description: String,
) -> PublishDecision {
    state
        .metrics
        .publishes
        .with_label_values(&["rejected", why])
        .inc();
    tracing::warn!(client = %peer, %stream, reason = why, "{description}");
    PublishDecision::Reject { code, description }
}
