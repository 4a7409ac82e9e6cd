//! The origin's side of the edge tunnels: publishes that arrive through an edge.
//!
//! An edge asks before it accepts a publish; [`crate::publish::authorise`] answers, the
//! same check a direct publish meets, and an allowed publish gets a one-time grant. When
//! the edge then opens the publish stream, the grant is redeemed and the stream goes into
//! the hub exactly as a direct one would, with the encoder's address and region (the
//! edge's) kept for the logs, the metrics and the streams API.

use crate::metrics::reason;
use crate::publish::{self, Authorised, Publisher};
use crate::resume::{park, Carried, Resumables};
use crate::state::OriginState;
use longhaul_hub::Publication;
use longhaul_node::{GaugeGuard, LivePublish};
use longhaul_rtmp::chunk::DEFAULT_MAX_DATA_LEN;
use longhaul_rtmp::message::{type_id, RtmpMessage};
use longhaul_rtmp::{media_parts, MediaParts};
use longhaul_tunnel::class::FrameClass;
use longhaul_tunnel::dedupe::{Admit, Dedupe};
use longhaul_tunnel::{
    AuthoriseRequest, Hello, Incoming, IncomingPublish, LoadReport, OutgoingPull, PeerInfo,
    PublishHeader, PullHeader, StreamEnd, TunnelService, Verdict,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a grant waits for its publish stream. The edge opens the stream right after
/// the verdict, one round trip at most (230 ms Singapore-New York); 30 s leaves room for
/// a path losing packets for many seconds, and a grant left over is only a few bytes.
const GRANT_TTL: Duration = Duration::from_secs(30);

/// Grants held at once per origin, beyond which the oldest are dropped. Ten thousand is
/// every publish of a full edge fleet arriving in the same 30 s.
const MAX_GRANTS: usize = 10_000;

/// RTMP message stream id tunnelled media is filed under (the hub ignores it; players
/// get their own).
const TUNNEL_STREAM_ID: u32 = 1;

/// An allowed publish waiting for its stream.
struct Grant {
    authorised: Authorised,
    publisher: Publisher,
    issued: Instant,
}

/// Implements [`TunnelService`] for an origin.
pub struct TunnelSide {
    state: Arc<OriginState>,
    grants: Mutex<HashMap<u64, Grant>>,
    /// Publishes that can resume on another stream (wire version 2).
    resumables: Resumables,
    /// The node's shutdown: once cancelled, reports say it is draining.
    shutdown: CancellationToken,
}

impl TunnelSide {
    pub fn new(state: Arc<OriginState>, shutdown: CancellationToken) -> Self {
        Self {
            state,
            grants: Mutex::new(HashMap::new()),
            resumables: Resumables::default(),
            shutdown,
        }
    }

    fn grants(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Grant>> {
        self.grants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `grant` under a fresh id from the OS CSPRNG: 64 random bits, so a grant
    /// cannot be guessed by another cluster member (a redeemed grant is also bound to
    /// the edge it was given to and re-checked against the token's generation), and one
    /// from before a restart is never taken for a new one.
    fn store(&self, grant: Grant) -> u64 {
        let mut grants = self.grants();
        let id = loop {
            let mut bytes = [0u8; 8];
            if let Err(e) = getrandom::fill(&mut bytes) {
                // Never seen on Linux. The grant still works (guessable, and it may
                // replace another, whose stream is then refused): better than refusing
                // every publish. Logged.
                tracing::error!(error = %e, "the OS random number generator failed");
                break u64::from_le_bytes(bytes);
            }
            let id = u64::from_le_bytes(bytes);
            if !grants.contains_key(&id) {
                break id;
            }
        };
        let now = Instant::now();
        grants.retain(|_, g| now.duration_since(g.issued) < GRANT_TTL);
        if grants.len() >= MAX_GRANTS {
            if let Some(oldest) = grants.iter().min_by_key(|(_, g)| g.issued).map(|(k, _)| *k) {
                grants.remove(&oldest);
            }
        }
        grants.insert(id, grant);
        id
    }

    /// Takes the grant `id` if `peer` was given it and it has not expired. A grant is
    /// redeemed once: a second stream with it is refused.
    fn redeem(&self, id: u64, peer: &PeerInfo) -> Option<Grant> {
        let mut grants = self.grants();
        let mine = grants
            .get(&id)
            .is_some_and(|g| g.publisher.via.as_deref() == Some(peer.node_id.as_str()));
        if !mine {
            return None;
        }
        grants
            .remove(&id)
            .filter(|g| g.issued.elapsed() < GRANT_TTL)
    }
}

fn publisher(state: &OriginState, peer: &PeerInfo, client_addr: &str) -> Publisher {
    Publisher {
        client: client_addr.to_string(),
        transport: "tunnel",
        region: peer.region.clone(),
        via: Some(peer.node_id.clone()),
        connection_id: state
            .next_connection_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
    }
}

impl TunnelService for TunnelSide {
    fn hello(&self) -> Hello {
        Hello {
            node_id: self.state.config.node.id.clone(),
            region: self.state.config.node.region.clone(),
            role: "origin".into(),
            version: longhaul_tunnel::VERSION.into(),
            lane: 0,
        }
    }

    /// See [`load_report`].
    fn load(&self) -> LoadReport {
        load_report(&self.state, self.shutdown.is_cancelled())
    }

    fn peer_origin_name(&self, node_id: &str) -> Option<String> {
        self.state.peering.as_ref()?.peer_name(node_id)
    }

    async fn pull(&self, peer: &PeerInfo, header: PullHeader, stream: OutgoingPull) {
        crate::peering::serve(&self.state, peer, header, stream).await
    }

    async fn authorise(&self, peer: &PeerInfo, request: AuthoriseRequest) -> Verdict {
        let who = publisher(&self.state, peer, &request.client_addr);
        match publish::authorise(
            &self.state,
            &request.app,
            request.tc_url.as_deref(),
            &request.name,
            request.leg,
            &who,
        )
        .await
        {
            Ok(authorised) => {
                let stream_name = authorised.target.stream_name.clone();
                let generation = authorised.generation;
                let grant = self.store(Grant {
                    authorised,
                    publisher: who,
                    issued: Instant::now(),
                });
                Verdict::Allowed {
                    grant,
                    stream_name,
                    generation,
                }
            }
            Err(r) => Verdict::Refused {
                code: r.code.into(),
                reason: r.reason.into(),
                description: r.description,
            },
        }
    }

    async fn publish(&self, peer: &PeerInfo, header: PublishHeader, stream: IncomingPublish) {
        let (mut media, mut ender) = stream.split();
        let Some(grant) = self.redeem(header.grant, peer) else {
            let (entry, rendition) = longhaul_endpoint::stream_parts(&header.stream_name);
            tracing::warn!(%entry, %rendition, stream = %header.stream_name,
                client = %header.client_addr, region = %peer.region, edge = %peer.node_id,
                origin = %self.state.config.node.id, reason = reason::UNKNOWN_GRANT,
                "tunnel publish refused: unknown or expired grant");
            self.state
                .metrics
                .publishes
                .with_label_values(&["rejected", reason::UNKNOWN_GRANT, "tunnel", &peer.region])
                .inc();
            ender
                .end(StreamEnd::new(
                    publish::CODE_REJECTED,
                    "publish refused: the origin has no authorisation for this stream (expired or from before a restart); publish again",
                ))
                .await;
            return;
        };
        // Wire version 2: the publish may have come from another stream (a resume). Its
        // admission state is shared with that stream, and taking the hub over happens
        // under its lock (see crate::resume).
        let carried = header
            .publication
            .map(|id| (id, self.resumables.carried(id)));
        let accepted = match &carried {
            Some((id, c)) => {
                let mut dedupe = c.dedupe();
                let accepted =
                    publish::accept(&self.state, &grant.authorised, &grant.publisher, Some(*id));
                if let Ok(a) = &accepted {
                    if !a.resumed {
                        // A publication new to this hub: from its first frame, or, resumed
                        // from another origin, from the first place decoding can start.
                        *dedupe = match header.resume_from {
                            Some(_) => Dedupe::resumed_here(),
                            None => Dedupe::new(),
                        };
                    }
                }
                accepted.map(|a| {
                    let resume_ack = if a.resumed { dedupe.resume() } else { None };
                    (a, Some(c.next_stream()), resume_ack)
                })
            }
            None => publish::accept(&self.state, &grant.authorised, &grant.publisher, None)
                .map(|a| (a, None, None)),
        };
        // A grant of a token revoked since it was given is refused here, in the
        // revocation's words.
        let (accepted, stream_number, resume_ack) = match accepted {
            Ok(a) => a,
            Err(refusal) => {
                ender
                    .end(StreamEnd::new(refusal.code, refusal.description))
                    .await;
                return;
            }
        };
        let publish::Accepted {
            publication,
            mut live,
            resumed,
        } = accepted;
        let m = &self.state.metrics;
        if resumed {
            m.tunnel_resumes.with_label_values(&["continued"]).inc();
        } else if header.resume_from.is_some() {
            m.tunnel_resumes.with_label_values(&["moved_here"]).inc();
        }
        let _active = GaugeGuard::new(m.publishers_active.clone());
        let (stream, client) = (
            &grant.authorised.target.stream_name,
            &grant.publisher.client,
        );
        let media_timeout = self.state.config.ingest.media_timeout();
        let end = match (&carried, stream_number) {
            (Some((_, c)), Some(number)) => {
                let mut resumable = Resumable {
                    carried: c,
                    number,
                    ender: &mut ender,
                    resume_ack,
                };
                relay(
                    &mut media,
                    &publication,
                    &mut live,
                    media_timeout,
                    Some(&mut resumable),
                )
                .await
            }
            _ => relay(&mut media, &publication, &mut live, media_timeout, None).await,
        };
        let stats = carried.as_ref().map(|(_, c)| c.dedupe().take_stats());
        if let Some(s) = stats {
            m.tunnel_resent
                .with_label_values(&["duplicate"])
                .inc_by(s.duplicates);
            m.tunnel_resent
                .with_label_values(&["missing"])
                .inc_by(s.missing);
            m.tunnel_resent
                .with_label_values(&["skipped"])
                .inc_by(s.skipped);
        }
        match end {
            RelayEnd::Finished => {
                publication.finish();
                tracing::info!(edge = %peer.node_id, %client, %stream, "tunnel publish ended");
                ender.finish();
            }
            RelayEnd::EdgeShutdown => {
                publication.finish();
                tracing::info!(edge = %peer.node_id, %client, %stream,
                    "tunnel publish ended: the edge shut its tunnel down");
            }
            RelayEnd::Revoked(why) => {
                publication.finish();
                tracing::warn!(edge = %peer.node_id, %client, %stream, reason = %why.reason,
                    "tunnel publish cut: {}", why.description);
                ender.end(StreamEnd::new(why.code, why.description)).await;
            }
            RelayEnd::Resumed => {
                // Another stream of the same publish took over: the edge left this one.
                tracing::info!(edge = %peer.node_id, %client, %stream,
                    "tunnel publish moved to a newer stream of the same publish");
                ender.finish();
            }
            RelayEnd::TakenOver => {
                tracing::info!(edge = %peer.node_id, %client, %stream,
                    "tunnel publish taken over by a newer connection");
                ender
                    .end(StreamEnd::new(
                        publish::CODE_REJECTED,
                        "another connection published this stream with the current token and took it over",
                    ))
                    .await;
            }
            RelayEnd::Failed { kind, error } => {
                m.connections
                    .session_errors
                    .with_label_values(&[kind])
                    .inc();
                tracing::warn!(edge = %peer.node_id, %client, %stream, kind, %error,
                    "tunnel publish failed");
                match carried {
                    // The stream, not the publish, failed: the edge resumes it, here or
                    // elsewhere. Players stay attached for a while in case it is here.
                    Some((_, c)) if kind == "tunnel" => {
                        park(publication, c, stream.clone(), peer.node_id.clone());
                    }
                    _ => {
                        publication.finish();
                        ender
                            .end(StreamEnd::new(
                                publish::CODE_REJECTED,
                                format!("the origin ended the stream: {error}"),
                            ))
                            .await;
                    }
                }
            }
        }
    }
}

/// This origin's health and load for its edges: healthy unless shutting down or draining
/// (then also `draining`) or its registry is out of reach: publishes are still decided
/// from memory then, but an edge with a healthy origin to send new ones to should (its
/// router decides).
pub fn load_report(state: &OriginState, shutting_down: bool) -> LoadReport {
    let m = &state.metrics;
    let draining = shutting_down || state.draining.is_cancelled();
    let registry_up = state
        .registry
        .as_ref()
        .is_none_or(|r| r.state() == longhaul_registry::StoreState::Connected);
    LoadReport {
        healthy: registry_up && !draining,
        draining,
        publishers: m.publishers_active.get().max(0) as u64,
        connections: ["rtmp", "rtmps"]
            .iter()
            .map(|t| {
                m.connections
                    .connections_active
                    .with_label_values(&[t])
                    .get()
                    .max(0) as u64
            })
            .sum(),
    }
}

enum RelayEnd {
    /// The edge finished the stream: the encoder unpublished.
    Finished,
    /// The edge closed its whole tunnel on purpose (shutting down after draining).
    EdgeShutdown,
    TakenOver,
    /// Another stream of the same publish (wire version 2) took the hub over.
    Resumed,
    /// The entry's token was revoked: tell the encoder why.
    Revoked(longhaul_node::Revoked),
    /// The `kind` label of `session_errors_total`, and what happened.
    Failed {
        kind: &'static str,
        error: String,
    },
}

/// What a version 2 stream's relay needs beside the media: the publication's shared
/// admission state, this stream's number among its streams, and the way back to the
/// edge for acknowledgements.
struct Resumable<'a> {
    carried: &'a Carried,
    number: u64,
    ender: &'a mut longhaul_tunnel::PublishEnder,
    /// Sent at once: what the hub already has of a resumed publication.
    resume_ack: Option<u64>,
}

/// Moves media from the tunnel into the hub until the edge finishes, someone takes the
/// stream over, or the stream breaks a rule a direct publish is held to as well: only
/// audio, video, data and aggregate messages (an aggregate is split, as the RTMP session
/// does), data messages within the chunk decoder's cap, and media at least every
/// `media_timeout`. On a version 2 stream (`resumable`), each sequenced frame is admitted
/// by the publication's [`Dedupe`] (resent frames dropped) and acknowledged when due.
async fn relay(
    media: &mut longhaul_tunnel::MediaReceiver,
    publication: &Publication,
    live: &mut LivePublish,
    media_timeout: Duration,
    mut resumable: Option<&mut Resumable<'_>>,
) -> RelayEnd {
    let taken_over = |r: &Option<&mut Resumable<'_>>| match r {
        Some(r) if r.carried.replaced(r.number) => RelayEnd::Resumed,
        _ => RelayEnd::TakenOver,
    };
    if let Some(r) = resumable.as_mut() {
        if let Some(seq) = r.resume_ack.take() {
            if let Err(e) = r.ender.ack(seq).await {
                return RelayEnd::Failed {
                    kind: "tunnel",
                    error: e.to_string(),
                };
            }
        }
    }
    // When the next acknowledgement is due, read under the lock each frame is admitted
    // under, not taken again per frame.
    let mut ack_at = resumable
        .as_ref()
        .and_then(|r| r.carried.dedupe().ack_deadline());
    loop {
        let due = ack_at.map(tokio::time::Instant::from_std);
        let frame = tokio::select! {
            frame = tokio::time::timeout(media_timeout, media.next()) => frame,
            _ = publication.taken_over() => return taken_over(&resumable),
            why = live.revoked() => return RelayEnd::Revoked(why),
            _ = longhaul_node::tasks::sleep_until(due) => {
                if let Some(r) = resumable.as_mut() {
                    let ack = {
                        let mut dedupe = r.carried.dedupe();
                        let ack = dedupe.poll_ack(Instant::now());
                        ack_at = dedupe.ack_deadline();
                        ack
                    };
                    if let Some(seq) = ack {
                        if let Err(e) = r.ender.ack(seq).await {
                            return RelayEnd::Failed { kind: "tunnel", error: e.to_string() };
                        }
                    }
                }
                continue;
            }
        };
        let incoming = match frame {
            Ok(Ok(Some(f))) => f,
            Ok(Ok(None)) => return RelayEnd::Finished,
            Ok(Err(e)) if e.is_peer_shutdown() => return RelayEnd::EdgeShutdown,
            Ok(Err(e)) => {
                return RelayEnd::Failed {
                    kind: "tunnel",
                    error: e.to_string(),
                }
            }
            Err(_) => {
                return RelayEnd::Failed {
                    kind: "timeout",
                    error: format!("no media from the publisher within {media_timeout:?}"),
                }
            }
        };
        let (seq, frame) = match incoming {
            Incoming::Plain(frame) => (None, frame),
            Incoming::Sequenced(s) => (Some(s.seq), s.frame),
        };
        // Only a resumable stream's admission looks at what the frame is.
        let class = resumable
            .is_some()
            .then(|| FrameClass::of(frame.kind, &frame.payload));
        let message = RtmpMessage {
            timestamp: frame.timestamp,
            type_id: frame.kind,
            stream_id: TUNNEL_STREAM_ID,
            payload: frame.payload,
        };
        let parts = match check_media(message) {
            Ok(parts) => parts,
            Err(error) => {
                return RelayEnd::Failed {
                    kind: "protocol",
                    error,
                }
            }
        };
        let Some(r) = resumable.as_mut() else {
            if seq.is_some() {
                return RelayEnd::Failed {
                    kind: "protocol",
                    error: "a sequenced frame on a publish stream without a publication id".into(),
                };
            }
            for part in parts {
                if publication.push(part).is_err() {
                    return RelayEnd::TakenOver;
                }
            }
            continue;
        };
        let ack = {
            // Decide and push under the publication's lock: a resume that takes the hub
            // over waits for this frame, and a frame is never admitted once it has.
            let mut dedupe = r.carried.dedupe();
            if publication.is_taken_over() {
                drop(dedupe);
                return taken_over(&resumable);
            }
            // Always classified on this path (see above).
            let class = class.unwrap_or(FrameClass::Event);
            let admit = match seq {
                Some(seq) => dedupe.admit(seq, class, Instant::now()),
                None => dedupe.admit_config(class),
            };
            if admit == Admit::Deliver {
                for part in parts {
                    if publication.push(part).is_err() {
                        drop(dedupe);
                        return taken_over(&resumable);
                    }
                }
            }
            let ack = dedupe.poll_ack(Instant::now());
            ack_at = dedupe.ack_deadline();
            ack
        };
        if let Some(seq) = ack {
            if let Err(e) = r.ender.ack(seq).await {
                return RelayEnd::Failed {
                    kind: "tunnel",
                    error: e.to_string(),
                };
            }
        }
    }
}

/// The media a tunnelled frame stands for, or why it may not enter the hub. The same
/// rules as a direct publish: audio, video and data pass, an aggregate gives its media
/// parts ([`media_parts`], shared with the RTMP session; other parts are dropped), data
/// within the chunk decoder's cap. Anything else is not media and ends the stream: an
/// edge never sends it, so it is a broken or hostile peer.
pub(crate) fn check_media(message: RtmpMessage) -> Result<MediaParts, String> {
    match message.type_id {
        type_id::AUDIO | type_id::VIDEO | type_id::AGGREGATE => {}
        type_id::DATA_AMF0 | type_id::DATA_AMF3 => {
            if message.payload.len() > DEFAULT_MAX_DATA_LEN as usize {
                return Err(format!(
                    "a data message of {} bytes, over the {DEFAULT_MAX_DATA_LEN}-byte limit",
                    message.payload.len()
                ));
            }
        }
        other => {
            return Err(format!(
                "an RTMP message of type {other}, which is not media (only audio, video, data and aggregates cross a tunnel)"
            ))
        }
    }
    media_parts(message).map_err(|e| format!("bad aggregate: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(type_id: u8, len: usize) -> RtmpMessage {
        RtmpMessage {
            timestamp: 0,
            type_id,
            stream_id: 1,
            payload: Bytes::from(vec![0u8; len]),
        }
    }

    #[test]
    fn only_media_enters_the_hub() {
        assert_eq!(check_media(msg(9, 10)).unwrap().count(), 1);
        assert_eq!(check_media(msg(8, 10)).unwrap().count(), 1);
        assert_eq!(check_media(msg(18, 10)).unwrap().count(), 1);
        for control in [1u8, 4, 5, 6, 20, 17] {
            let e = check_media(msg(control, 4)).unwrap_err();
            assert!(e.contains("not media"), "{control}: {e}");
        }
        let e = check_media(msg(18, DEFAULT_MAX_DATA_LEN as usize + 1)).unwrap_err();
        assert!(e.contains("limit"), "{e}");
    }

    #[test]
    fn aggregates_are_split_and_only_their_media_enters_the_hub() {
        // One aggregate holding a video tag (type 9, 3 bytes, timestamp 40) and a
        // SetChunkSize (type 1) smuggled inside.
        let mut body = Vec::new();
        for (kind, payload) in [(9u8, &[1u8, 2, 3][..]), (1u8, &[0, 0, 16, 0][..])] {
            body.push(kind);
            body.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
            body.extend_from_slice(&[0, 0, 40, 0]);
            body.extend_from_slice(&[0, 0, 0]);
            body.extend_from_slice(payload);
            body.extend_from_slice(&((payload.len() + 11) as u32).to_be_bytes());
        }
        // As on a direct publish, the non-media part is dropped: no player gets it.
        for payload in [body.clone(), body[..3 + 11 + 4].to_vec()] {
            let aggregate = RtmpMessage {
                timestamp: 40,
                type_id: type_id::AGGREGATE,
                stream_id: 1,
                payload: Bytes::from(payload),
            };
            let parts: Vec<_> = check_media(aggregate).unwrap().collect();
            assert_eq!(parts.len(), 1);
            assert_eq!(parts[0].type_id, 9);
            assert_eq!(&parts[0].payload[..], &[1, 2, 3]);
        }
        let broken = RtmpMessage {
            timestamp: 40,
            type_id: type_id::AGGREGATE,
            stream_id: 1,
            payload: Bytes::from(body[..7].to_vec()),
        };
        assert!(check_media(broken).unwrap_err().contains("bad aggregate"));
    }
}
