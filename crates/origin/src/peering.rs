//! Origin peering: each origin pulls from its peers the legs it has viewers for but no
//! publish of, so every origin serves a rendition's on-air stream from both legs,
//! wherever each was published.
//!
//! An encoder sends a rendition's primary leg through its region's `p` edge and the
//! backup through the `b` edge; the edges' routers put them on different origins
//! (New York, Palo Alto). A viewer at either origin should get one stream that survives
//! the loss of either leg, of either edge or of the other origin: so each origin keeps
//! a tunnel to every peer ([`crate::config::PeeringSection`]; the same QUIC code as the
//! edges', mutual TLS, hello role `origin`) and, while a rendition has viewers here:
//!
//! - for each leg not published here, it opens a *pull stream* to every peer
//!   (`longhaul_tunnel::wire::PullHeader`). A peer that has the leg, published there,
//!   sends it (configuration, GOP, live); one that has not keeps the stream open and
//!   sends it when it starts. The pulled leg enters the hub as a *replica*
//!   ([`longhaul_hub::Hub::publish_replica`]), with its own GOP cache, so the on-air
//!   stream can switch to it at once;
//! - a replica never takes over a publish made here, is never served on to a peer
//!   ([`longhaul_hub::Hub::subscribe_local`]) and is not written to presence: origins
//!   never feed one another in a ring;
//! - when the leg is published here (the edge moved it here), the pull stops; when the
//!   rendition has had no viewer here for `peering.linger_ms`, every pull of it stops.
//!
//! A play of a rendition with no leg here asks for it ([`Peering::subscribe`]): the
//! pulls start, and the player waits up to [`ON_DEMAND_WAIT`] for the first leg.
//!
//! The decision of what to pull is [`PullPlan::wanted`], plain code with time passed
//! in; [`spawn`] runs it every [`SCAN_EVERY`] against the hub and starts or stops the
//! pull tasks. Viewers here are the hub's players less the pulls this origin serves
//! (a peer pulling a leg is not a viewer: counting it would make two origins pull from
//! each other for ever).

use crate::state::OriginState;
use crate::tunnel::check_media;
use longhaul_hub::{Hub, Leg, LegChoice, PlayerEvent, Publication, PublisherInfo, StreamKey};
use longhaul_node::{GaugeGuard, NodeTasks};
use longhaul_rtmp::message::RtmpMessage;
use longhaul_tunnel::{
    MediaFrame, OutgoingPull, PeerInfo, PullHeader, Pulled, StreamEnd, TunnelClient,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How often the origin compares what it pulls with what its viewers need. 100 ms: a
/// leg that ends here (the edge moved it to the other origin) is pulled back from there
/// within a tenth of a second, well inside the on-air silence limit (500 ms), and a scan
/// of a thousand renditions costs well under a millisecond.
pub const SCAN_EVERY: Duration = Duration::from_millis(100);

/// How long a play of a rendition with no leg here waits for a peer to send one. Two
/// round trips New York-Palo Alto (70 ms) and the peer's first keyframe are well
/// inside it; a player kept waiting longer may give up on its own.
pub const ON_DEMAND_WAIT: Duration = Duration::from_secs(2);

/// After a pull stream fails (the tunnel is down, the peer restarted), the next try:
/// short, because a viewer may be waiting on it; the tunnel's own reconnect backoff
/// keeps a dead peer from being hammered (a pull on a down tunnel fails at once,
/// without a packet).
pub const RETRY_AFTER: Duration = Duration::from_millis(250);

/// Renditions asked for by plays that missed here, kept at once: each costs one pull
/// stream per leg and peer for `linger_ms`. Past it the oldest asks are forgotten.
pub const MAX_ASKED: usize = 1024;

/// RTMP messages sent to a peer in one write: what a subscription has queued, up to
/// this many. A GOP of a 6 Mbit/s stream at 25 fps is a few hundred messages; 64 keeps
/// one write's bytes to a few hundred kilobytes.
const BATCH: usize = 64;

/// RTMP message stream id pulled media is filed under (the hub ignores it).
const PULLED_STREAM_ID: u32 = 1;

/// The pure part: which (rendition, leg) pairs this origin should pull, from the hub's
/// viewers, its own publishes and the plays that asked.
#[derive(Debug, Default)]
pub struct PullPlan {
    /// When each rendition last had a viewer here (or a play asking for it).
    last_viewed: HashMap<String, Instant>,
}

impl PullPlan {
    /// Notes the viewers seen at `now` (names with at least one viewer here, peer pulls
    /// not counted) and returns every (rendition, leg) to pull: each leg not published
    /// here of a rendition viewed within `linger`.
    pub fn wanted(
        &mut self,
        viewed: impl IntoIterator<Item = String>,
        published_here: &HashSet<StreamKey>,
        linger: Duration,
        now: Instant,
    ) -> HashSet<StreamKey> {
        for name in viewed {
            self.last_viewed.insert(name, now);
        }
        self.last_viewed
            .retain(|_, at| now.saturating_duration_since(*at) < linger);
        let mut wanted = HashSet::new();
        for name in self.last_viewed.keys() {
            for leg in Leg::ALL {
                let key = StreamKey::new(name.clone(), leg);
                if !published_here.contains(&key) {
                    wanted.insert(key);
                }
            }
        }
        wanted
    }
}

/// What the origin's peering shares between its scan, its pulls and its plays.
pub struct Peering {
    clients: Vec<TunnelClient>,
    linger: Duration,
    /// Renditions plays asked for, and when.
    asked: Mutex<HashMap<String, Instant>>,
    /// Pulls this origin serves now, by rendition: not viewers here.
    serving: Mutex<HashMap<String, usize>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Peering {
    /// Starts the tunnels to every peer in `[peering]`; `None` when it names none.
    /// The tunnels' links go into `tunnels`, under each peer's id: their series are
    /// this origin's view of the path to that peer.
    pub fn start(
        config: &crate::config::OriginConfig,
        tunnels: &Arc<longhaul_tunnel::TunnelSet>,
    ) -> Result<Option<Arc<Peering>>, longhaul_tunnel::TunnelError> {
        let section = &config.peering;
        let Some(tunnel) = config.tunnel.as_ref().filter(|_| !section.peers.is_empty()) else {
            return Ok(None);
        };
        let tls = longhaul_tunnel::EdgeTls::load(&tunnel.tls)?;
        let endpoint =
            longhaul_tunnel::endpoint::client_endpoint_at(section.bind, &tunnel.transport)?;
        let hello = longhaul_tunnel::Hello {
            node_id: config.node.id.clone(),
            region: config.node.region.clone(),
            role: "origin".into(),
            version: longhaul_tunnel::VERSION.into(),
            lane: 0,
        };
        let mut clients = Vec::new();
        for peer in &section.peers {
            // An origin's own load goes to the edges; a peer has no use for it.
            let hooks =
                longhaul_tunnel::EdgeHooks::load_only(Arc::new(|| longhaul_tunnel::LoadReport {
                    healthy: true,
                    ..Default::default()
                }));
            clients.push(TunnelClient::spawn(
                endpoint.clone(),
                hello.clone(),
                peer.clone(),
                &tunnel.transport,
                &tls,
                hooks,
                tunnels,
            )?);
        }
        Ok(Some(Arc::new(Peering {
            clients,
            linger: section.linger(),
            asked: Mutex::new(HashMap::new()),
            serving: Mutex::new(HashMap::new()),
        })))
    }

    /// The peer origin named `node_id`'s certificate name, if it is a peer.
    pub fn peer_name(&self, node_id: &str) -> Option<String> {
        self.clients
            .iter()
            .find(|c| c.peer().id == node_id)
            .map(|c| c.peer().server_name.clone())
    }

    /// Closes every tunnel to a peer.
    pub fn close(&self) {
        for client in &self.clients {
            client.close();
        }
    }

    fn ask(&self, name: &str, now: Instant) {
        let mut asked = lock(&self.asked);
        if asked.len() >= MAX_ASKED && !asked.contains_key(name) {
            if let Some(oldest) = asked
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(k, _)| k.clone())
            {
                asked.remove(&oldest);
            }
        }
        asked.insert(name.to_string(), now);
    }

    /// A play's subscription: at once if a leg of `name` is live here; else, when a peer
    /// is connected and `name` may be live there, the pulls of its legs start and the
    /// play waits up to [`ON_DEMAND_WAIT`] for one.
    pub async fn subscribe(
        &self,
        state: &OriginState,
        name: &str,
        choice: LegChoice,
    ) -> Option<longhaul_hub::Subscription> {
        if let Some(s) = state.hub.subscribe(name, choice) {
            return Some(s);
        }
        if !crate::elsewhere::may_be_live(state, name)
            || !self
                .clients
                .iter()
                .any(|c| c.state() == longhaul_tunnel::TunnelState::Connected)
        {
            return None;
        }
        self.ask(name, Instant::now());
        let mut changes = state.hub.watch_live();
        let wait = async {
            loop {
                if let Some(s) = state.hub.subscribe(name, choice) {
                    return Some(s);
                }
                if changes.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(ON_DEMAND_WAIT, wait)
            .await
            .ok()
            .flatten()
    }

    /// Names with a viewer here now: players of the on-air stream or of a leg, less the
    /// pulls this origin serves; and the renditions plays asked for within the linger.
    fn viewed(&self, hub: &Hub, now: Instant) -> Vec<String> {
        let mut players: HashMap<String, usize> = HashMap::new();
        for r in hub.renditions() {
            *players.entry(r.name).or_default() += r.players;
        }
        for s in hub.streams() {
            *players.entry(s.key.name).or_default() += s.players;
        }
        {
            let serving = lock(&self.serving);
            for (name, n) in serving.iter() {
                if let Some(p) = players.get_mut(name) {
                    *p = p.saturating_sub(*n);
                }
            }
        }
        let linger = self.linger;
        let mut asked = lock(&self.asked);
        asked.retain(|_, at| now.saturating_duration_since(*at) < linger);
        players
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, _)| name)
            .chain(asked.keys().cloned())
            .collect()
    }
}

/// Runs origin peering: every [`SCAN_EVERY`], starts the pulls the plan wants and stops
/// the others.
pub fn spawn(tasks: &mut NodeTasks, state: &Arc<OriginState>) {
    let Some(peering) = state.peering.clone() else {
        return;
    };
    let state = state.clone();
    let shutdown = tasks.shutdown_token();
    tasks.spawn(async move {
        let mut plan = PullPlan::default();
        let mut pulls: HashMap<(StreamKey, usize), CancellationToken> = HashMap::new();
        let mut tick = tokio::time::interval(SCAN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => break,
            }
            let now = Instant::now();
            let viewed = peering.viewed(&state.hub, now);
            let here: HashSet<StreamKey> = state.hub.local_keys().into_iter().collect();
            let wanted = plan.wanted(viewed, &here, peering.linger, now);
            pulls.retain(|(key, _), stop| {
                let keep = wanted.contains(key) && !stop.is_cancelled();
                if !keep {
                    stop.cancel();
                }
                keep
            });
            for key in wanted {
                for (i, client) in peering.clients.iter().enumerate() {
                    pulls.entry((key.clone(), i)).or_insert_with(|| {
                        let stop = shutdown.child_token();
                        tokio::spawn(pull(
                            state.clone(),
                            client.clone(),
                            key.clone(),
                            stop.clone(),
                        ));
                        stop
                    });
                }
            }
        }
        for stop in pulls.values() {
            stop.cancel();
        }
        peering.close();
    });
}

/// Pulls leg `key` from the peer behind `client` until `stop`: the leg enters the hub
/// as a replica each time the peer says a publication of it is live there.
async fn pull(
    state: Arc<OriginState>,
    client: TunnelClient,
    key: StreamKey,
    stop: CancellationToken,
) {
    let peer = client.peer().id.clone();
    let m = &state.metrics;
    let bytes = m.peer_bytes.with_label_values(&[&peer, "in"]);
    let header = PullHeader {
        stream_name: key.name.clone(),
        leg: key.leg,
    };
    while !stop.is_cancelled() {
        let opened = tokio::select! {
            r = client.open_pull(header.clone()) => r,
            _ = stop.cancelled() => return,
        };
        let mut stream = match opened {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, stream = %key, error = %e, "cannot open a pull stream");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_AFTER) => continue,
                    _ = stop.cancelled() => return,
                }
            }
        };
        let _open = GaugeGuard::new(m.peer_pulls.with_label_values(&[&peer, "in"]));
        let mut publication: Option<Publication> = None;
        let ended = loop {
            let next = tokio::select! {
                n = stream.next() => n,
                _ = stop.cancelled() => return,
            };
            match next {
                Ok(Some(Pulled::Live)) => {
                    let info = PublisherInfo {
                        addr: client.peer().addr.clone(),
                        region: client.peer().region.clone(),
                        replica_of: Some(peer.clone()),
                        ..Default::default()
                    };
                    // End the last one first (the peer said it ended): not a takeover.
                    drop(publication.take());
                    publication = state.hub.publish_replica(key.clone(), info).map(|(p, _)| p);
                    if publication.is_some() {
                        m.peer_legs_pulled.with_label_values(&[&peer]).inc();
                        tracing::info!(%peer, stream = %key, "pulling a leg from a peer origin");
                    }
                }
                Ok(Some(Pulled::Media(frame))) => {
                    bytes.inc_by(frame.payload.len() as u64);
                    let Some(p) = &publication else { continue };
                    let message = RtmpMessage {
                        timestamp: frame.timestamp,
                        type_id: frame.kind,
                        stream_id: PULLED_STREAM_ID,
                        payload: frame.payload,
                    };
                    let parts = match check_media(message) {
                        Ok(parts) => parts,
                        Err(error) => {
                            break (format!("the peer sent what is not media: {error}"), true)
                        }
                    };
                    for part in parts {
                        if p.push(part).is_err() {
                            // Published here meanwhile: the scan stops this pull.
                            publication = None;
                            break;
                        }
                    }
                }
                Ok(Some(Pulled::Gone)) => {
                    if publication.take().is_some() {
                        tracing::info!(%peer, stream = %key, "the pulled leg ended at the peer origin");
                    }
                }
                Ok(Some(Pulled::Refused(end))) => {
                    break (format!("refused: {}", end.description), false)
                }
                Ok(None) => break ("the peer finished the stream".to_string(), false),
                Err(e) => {
                    let broken = matches!(
                        e,
                        longhaul_tunnel::TunnelError::Wire { .. }
                            | longhaul_tunnel::TunnelError::Protocol { .. }
                    );
                    break (e.to_string(), broken);
                }
            }
        };
        let (ended, broken) = ended;
        // A peer that breaks the format is an incident whether or not the leg was live;
        // the stream is left (the peer sees it go) and asked for again after a pause.
        if broken {
            tracing::warn!(%peer, stream = %key, why = %ended, live = publication.is_some(),
                "pull from a peer origin broken off");
            drop(publication.take());
        } else if publication.take().is_some() {
            tracing::info!(%peer, stream = %key, why = %ended, "pull from a peer origin ended");
        } else {
            tracing::debug!(%peer, stream = %key, why = %ended, "pull stream ended");
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY_AFTER) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Serves a peer origin's pull of `header`'s leg: the leg's publication here, each time
/// there is one (never a replica), until the peer leaves the stream.
pub async fn serve(state: &OriginState, peer: &PeerInfo, header: PullHeader, stream: OutgoingPull) {
    let name = header.stream_name.clone();
    if longhaul_endpoint::parse_stream_name(&name).is_none() {
        stream
            .end(StreamEnd::new(
                "NetStream.Play.StreamNotFound",
                format!("{name:?} is not a stream name"),
            ))
            .await;
        return;
    }
    let Some(peering) = state.peering.as_ref() else {
        stream
            .end(StreamEnd::new(
                "NetStream.Play.Failed",
                "this origin does not peer",
            ))
            .await;
        return;
    };
    let m = &state.metrics;
    let _open = GaugeGuard::new(m.peer_pulls.with_label_values(&[&peer.node_id, "out"]));
    *lock(&peering.serving).entry(name.clone()).or_default() += 1;
    let _serving = ServingGuard {
        peering: peering.clone(),
        name: name.clone(),
    };
    let bytes = m.peer_bytes.with_label_values(&[&peer.node_id, "out"]);
    let (mut asker, mut sender) = stream.split();
    let mut changes = state.hub.watch_live();
    let why = 'serving: loop {
        let mut subscription = loop {
            if let Some(s) = state.hub.subscribe_local(&name, header.leg) {
                break s;
            }
            tokio::select! {
                c = changes.changed() => if c.is_err() { break 'serving "the node is stopping".to_string() },
                r = asker.left() => break 'serving left(r),
            }
        };
        if let Err(e) = sender.live().await {
            break e.to_string();
        }
        loop {
            let event = tokio::select! {
                e = subscription.recv() => e,
                r = asker.left() => break 'serving left(r),
            };
            let mut frames = Vec::new();
            let mut last = Some(event);
            while let Some(event) = last.take() {
                match event {
                    PlayerEvent::Message(msg) => {
                        frames.push(MediaFrame {
                            kind: msg.type_id,
                            timestamp: msg.timestamp,
                            payload: msg.payload,
                        });
                        if frames.len() < BATCH {
                            last = subscription.try_recv();
                        }
                    }
                    PlayerEvent::Skipped { dropped_messages } => {
                        tracing::warn!(peer = %peer.node_id, stream = %name, leg = %header.leg,
                            dropped_messages, "a peer's pull fell behind; skipped to the next keyframe");
                        last = subscription.try_recv();
                    }
                    other => last = Some(other),
                }
                if let Some(PlayerEvent::Ended | PlayerEvent::Dropped { .. }) = &last {
                    break;
                }
            }
            if !frames.is_empty() {
                let n: usize = frames.iter().map(|f| f.payload.len()).sum();
                if let Err(e) = sender.send(&frames).await {
                    break 'serving e.to_string();
                }
                bytes.inc_by(n as u64);
            }
            match last {
                Some(PlayerEvent::Ended) => {
                    if let Err(e) = sender.gone().await {
                        break 'serving e.to_string();
                    }
                    break;
                }
                Some(PlayerEvent::Dropped { reason }) => {
                    sender
                        .end(StreamEnd::new(
                            "NetStream.Play.Failed",
                            format!("the pull could not keep up: {reason}"),
                        ))
                        .await;
                    break 'serving format!("dropped: {reason}");
                }
                _ => {}
            }
        }
    };
    tracing::debug!(peer = %peer.node_id, stream = %name, leg = %header.leg, %why, "pull served to a peer ended");
}

fn left(r: Result<(), longhaul_tunnel::TunnelError>) -> String {
    match r {
        Ok(()) => "the peer left".into(),
        Err(e) => e.to_string(),
    }
}

/// Takes a served pull off the count when it ends.
struct ServingGuard {
    peering: Arc<Peering>,
    name: String,
}

impl Drop for ServingGuard {
    fn drop(&mut self) {
        let mut serving = lock(&self.peering.serving);
        if let Some(n) = serving.get_mut(&self.name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                serving.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, leg: Leg) -> StreamKey {
        StreamKey::new(name, leg)
    }

    #[test]
    fn a_viewed_rendition_pulls_the_legs_not_published_here_until_the_linger_passes() {
        let mut plan = PullPlan::default();
        let t0 = Instant::now();
        let linger = Duration::from_secs(5);
        let here: HashSet<StreamKey> = [key("0_a_1", Leg::Backup)].into();
        let wanted = plan.wanted(["0_a_1".to_string()], &here, linger, t0);
        assert_eq!(wanted, [key("0_a_1", Leg::Primary)].into());
        // The viewer leaves: the pull goes on for the linger, then stops.
        let wanted = plan.wanted([], &here, linger, t0 + Duration::from_secs(4));
        assert_eq!(wanted, [key("0_a_1", Leg::Primary)].into());
        let wanted = plan.wanted([], &here, linger, t0 + Duration::from_secs(5));
        assert!(wanted.is_empty());
    }

    #[test]
    fn a_rendition_with_no_leg_here_pulls_both_and_one_published_here_is_not_pulled() {
        let mut plan = PullPlan::default();
        let t0 = Instant::now();
        let linger = Duration::from_secs(5);
        let wanted = plan.wanted(["0_b_2".to_string()], &HashSet::new(), linger, t0);
        assert_eq!(
            wanted,
            [key("0_b_2", Leg::Primary), key("0_b_2", Leg::Backup)].into()
        );
        let both: HashSet<StreamKey> =
            [key("0_b_2", Leg::Primary), key("0_b_2", Leg::Backup)].into();
        assert!(plan
            .wanted(["0_b_2".to_string()], &both, linger, t0)
            .is_empty());
    }

    #[test]
    fn nothing_viewed_pulls_nothing() {
        let mut plan = PullPlan::default();
        let here: HashSet<StreamKey> = [key("0_c_1", Leg::Primary)].into();
        assert!(plan
            .wanted([], &here, Duration::from_secs(5), Instant::now())
            .is_empty());
    }
}
