//! The edge's side of its tunnels: one persistent tunnel per configured origin, the
//! router that says which origin takes a leg, and the two questions a publish asks.
//!
//! All the edge knows of `longhaul_tunnel` is here (and in [`crate::routing`], which reads
//! its links for the router). At start-up [`Upstreams::start`] opens, for each of the
//! edge's shards, a [`Lane`]: one QUIC endpoint and one [`TunnelClient`] per origin in
//! `[tunnel] origins`, started on that shard's runtime and saying the shard's index as
//! their lane; they connect at once and reconnect with backoff for as long as the edge
//! runs, so a publish never waits for a QUIC handshake. A connection asks and relays
//! through its own shard's lane. Which origin a publish's leg goes to is
//! the [`Router`]'s choice (`longhaul_router`): leg `p` prefers `tunnel.primary`, leg `b`
//! the other origin, and a leg whose preferred origin is in trouble goes to a healthy
//! one ([`crate::routing`] feeds the router). [`Lane::open_publish`] asks the chosen
//! origin for a verdict (the tunnel bounds the wait with
//! `tunnel.transport.authorise_timeout_ms`) and, when allowed, opens the stream the media
//! will go on; a publish that gets no verdict counts against the origin.

use longhaul_endpoint::Leg;
use longhaul_node::NodeSection;
use longhaul_router::{Choice, Failure, Router, StreamId, Thresholds};
use longhaul_tunnel::{
    AuthoriseRequest, EdgeHooks, EdgeTls, Hello, PublishHeader, PublishSender, TunnelClient,
    TunnelError, TunnelSection, TunnelSet, Verdict, WireVersion,
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The tunnels of one edge: a [`Lane`] per shard.
pub struct Upstreams {
    lanes: Vec<Lane>,
    /// Every lane's links, for the metrics collector and `/healthz`.
    set: Arc<TunnelSet>,
    /// The edge's tunnel certificate and CA, shared by its tunnels.
    tls: EdgeTls,
}

/// One shard's tunnels: its own QUIC endpoint (socket) and a tunnel to every origin, all
/// driven by the shard's thread, and its own router, fed with those tunnels' paths. A
/// publish on the shard asks and relays through its lane, so nothing of a relayed
/// message crosses a thread. An edge with one shard has one lane, lane 0.
pub struct Lane {
    index: u16,
    clients: Vec<TunnelClient>,
    /// Which origin each leg goes to; fed by [`crate::routing`].
    router: Mutex<Router>,
    endpoint: quinn::Endpoint,
}

/// An origin's answer to [`Lane::authorise`].
pub enum Asked {
    Granted(Granted),
    Refused {
        code: String,
        reason: String,
        description: String,
        origin: String,
    },
    Unavailable {
        origin: String,
        error: TunnelError,
    },
}

/// An allowed publish, before its stream is open.
pub struct Granted {
    pub tunnel: TunnelClient,
    pub grant: u64,
    pub stream_name: String,
    pub generation: Option<u32>,
    pub origin: String,
}

/// A random publication id from the OS CSPRNG: an origin takes a resumed stream as the
/// same publish by it, so it must not be guessable by another edge (which could
/// otherwise continue someone else's stream; it would also need a grant for the
/// stream's entry).
fn random_id() -> u64 {
    let mut bytes = [0u8; 8];
    if let Err(e) = getrandom::fill(&mut bytes) {
        tracing::error!(error = %e, "the OS random number generator failed");
    }
    u64::from_le_bytes(bytes)
}

/// What an origin said about a publish.
pub enum Decision {
    /// Allowed, and the stream is open: media may go at once.
    Allowed {
        sender: PublishSender,
        /// The stream's name as the origin files it (`{entryId}_{n}`).
        stream_name: String,
        origin: String,
        /// The token generation the origin allowed it with, if it says.
        generation: Option<u32>,
        /// The id that lets the publish resume on another stream (wire version 2).
        publication: Option<u64>,
    },
    /// Refused by the origin, in its words: pass them to the encoder.
    Refused {
        code: String,
        reason: String,
        description: String,
        origin: String,
    },
    /// No answer: the tunnel is down, or the origin did not answer in time.
    Unavailable { origin: String, error: TunnelError },
}

impl Upstreams {
    /// Starts a lane per shard: on each shard's runtime, a QUIC endpoint and a tunnel to
    /// every configured origin, saying the shard's index as its lane. `hooks.load`
    /// answers the origins' load questions (health, publishers, connections);
    /// `thresholds` are the routers'.
    pub fn start(
        section: &TunnelSection,
        thresholds: Thresholds,
        node: &NodeSection,
        hooks: EdgeHooks,
        shards: &longhaul_node::Shards,
    ) -> Result<Upstreams, TunnelError> {
        let tls = EdgeTls::load(&section.tls)?;
        let set = TunnelSet::new();
        let lanes = (0..shards.len())
            .map(|i| {
                // The endpoint's driver, its socket and the tunnels' tasks belong to the
                // runtime they start on.
                let _on_shard = shards.handle(i).enter();
                let index = u16::try_from(i).unwrap_or(u16::MAX);
                Lane::start(section, thresholds.clone(), node, &hooks, &tls, &set, index)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Upstreams { lanes, set, tls })
    }

    /// What the node's certificate watcher reloads for the tunnels.
    pub fn reloadables(&self) -> Vec<Arc<dyn longhaul_node::Reload>> {
        self.tls.reloadables()
    }

    /// Every tunnel, for the metrics collector and `/healthz`.
    pub fn set(&self) -> &Arc<TunnelSet> {
        &self.set
    }

    /// Shard `shard`'s lane (lane 0 for a shard out of range, which there is not).
    pub fn lane(&self, shard: usize) -> &Lane {
        self.lanes.get(shard).unwrap_or(&self.lanes[0])
    }

    pub fn lanes(&self) -> &[Lane] {
        &self.lanes
    }

    /// Closes every tunnel of every lane (the origins hear a normal close), the lanes
    /// side by side.
    pub async fn close(&self) {
        let mut closing = tokio::task::JoinSet::new();
        for lane in &self.lanes {
            for client in &lane.clients {
                client.close();
            }
            closing.spawn(idle(lane.endpoint.clone()));
        }
        while closing.join_next().await.is_some() {}
    }
}

impl Lane {
    fn start(
        section: &TunnelSection,
        thresholds: Thresholds,
        node: &NodeSection,
        hooks: &EdgeHooks,
        tls: &EdgeTls,
        set: &Arc<TunnelSet>,
        index: u16,
    ) -> Result<Lane, TunnelError> {
        let ids = section.origins.iter().map(|o| o.id.clone());
        let router = Router::new(thresholds, ids, &section.primary).map_err(|e| {
            longhaul_tunnel::settings::InvalidTunnelSetting {
                key: "tunnel.primary",
                reason: e.to_string(),
            }
        })?;
        let endpoint = match (index, section.bind.port()) {
            (0, _) | (_, 0) => longhaul_tunnel::client_endpoint(section)?,
            // A fixed port (for a firewall's egress rule, say): lane i takes the i-th
            // port after it.
            (_, port) => {
                let mut bind = section.bind;
                bind.set_port(port.checked_add(index).ok_or_else(|| {
                    longhaul_tunnel::settings::InvalidTunnelSetting {
                        key: "tunnel.bind",
                        reason: format!("port {port} leaves no room for lane {index}'s port"),
                    }
                })?);
                longhaul_tunnel::endpoint::client_endpoint_at(bind, &section.transport)?
            }
        };
        let hello = Hello {
            node_id: node.id.clone(),
            region: node.region.clone(),
            role: "edge".into(),
            version: longhaul_tunnel::VERSION.into(),
            lane: index,
        };
        let clients = section
            .origins
            .iter()
            .map(|peer| {
                TunnelClient::spawn(
                    endpoint.clone(),
                    hello.clone(),
                    peer.clone(),
                    &section.transport,
                    tls,
                    hooks.clone(),
                    set,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Lane {
            index,
            clients,
            router: Mutex::new(router),
            endpoint,
        })
    }

    pub fn index(&self) -> u16 {
        self.index
    }

    /// The lane's UDP address.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.endpoint.local_addr()
    }

    pub fn clients(&self) -> &[TunnelClient] {
        &self.clients
    }

    /// The router, for its driver and the health document. Held briefly: every
    /// publish asks it.
    pub fn router(&self) -> MutexGuard<'_, Router> {
        // The router's methods do not panic; a poisoned lock holds a consistent router.
        self.router.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where a new publish's `leg` goes now.
    pub fn route(&self, leg: Leg) -> Choice {
        self.router().choose(leg, Instant::now())
    }

    /// A relayed stream's leg went to `origin`: the router counts it there.
    pub fn placed(&self, stream: StreamId, leg: Leg, origin: &str) {
        self.router().place(stream, leg, origin);
    }

    /// The relayed stream ended.
    pub fn ended(&self, stream: StreamId) {
        self.router().remove(stream);
    }

    /// A stream sent to `origin` failed there (the router counts it against it).
    pub fn failed(&self, origin: &str, failure: Failure) {
        self.router().failure(origin, failure, Instant::now());
    }

    /// Asks the origin the router picks for `request.leg` about a publish and, when it
    /// allows it, opens the publish stream. On a tunnel that speaks wire version 2 the
    /// publish gets a random publication id, so it can resume on another stream.
    pub async fn open_publish(&self, request: AuthoriseRequest) -> Decision {
        let client_addr = request.client_addr.clone();
        let granted = match self.authorise(request).await {
            Asked::Granted(g) => g,
            Asked::Refused {
                code,
                reason,
                description,
                origin,
            } => {
                return Decision::Refused {
                    code,
                    reason,
                    description,
                    origin,
                }
            }
            Asked::Unavailable { origin, error } => return Decision::Unavailable { origin, error },
        };
        let publication = (granted.tunnel.version() == Some(WireVersion::V2)).then(random_id);
        let header = PublishHeader {
            grant: granted.grant,
            stream_name: granted.stream_name.clone(),
            client_addr,
            publication,
            resume_from: None,
        };
        match self.open(&granted, header).await {
            Ok(sender) => Decision::Allowed {
                sender,
                stream_name: granted.stream_name,
                origin: granted.origin,
                generation: granted.generation,
                publication,
            },
            Err(error) => Decision::Unavailable {
                origin: granted.origin,
                error,
            },
        }
    }

    /// Asks the origin the router picks for `request.leg` whether the publish may go on.
    /// A tunnel that gives no answer counts against its origin.
    pub async fn authorise(&self, request: AuthoriseRequest) -> Asked {
        let choice = self.route(request.leg);
        let Some(tunnel) = self.clients.iter().find(|c| c.peer().id == choice.origin) else {
            // Unreachable: the router knows only the configured origins.
            let origin = choice.origin;
            let error = TunnelError::NotConnected {
                peer: origin.clone(),
            };
            return Asked::Unavailable { origin, error };
        };
        if let Some(reason) = choice.reason {
            tracing::info!(leg = %request.leg, origin = %choice.origin,
                preferred = %choice.preferred, %reason,
                "publish routed away from the leg's preferred origin");
        }
        let origin = tunnel.peer().id.clone();
        match tunnel.authorise(request).await {
            Err(error @ TunnelError::TooLarge { .. }) => Asked::Refused {
                code: longhaul_rtmp::status::PUBLISH_BAD_NAME.into(),
                reason: "bad_request".into(),
                description: format!(
                    "publish refused: the connect app, tcUrl and publish name are too long to \
                     forward ({error})"
                ),
                origin,
            },
            Err(error) => {
                self.failed(&origin, Failure::Unavailable);
                Asked::Unavailable { origin, error }
            }
            Ok(Verdict::Refused {
                code,
                reason,
                description,
            }) => Asked::Refused {
                code,
                reason,
                description,
                origin,
            },
            Ok(Verdict::Allowed {
                grant,
                stream_name,
                generation,
            }) => Asked::Granted(Granted {
                tunnel: tunnel.clone(),
                grant,
                stream_name,
                generation,
                origin,
            }),
        }
    }

    /// Opens the publish stream of an allowed publish with `header` (its grant and, on
    /// wire version 2, its publication and resume point).
    pub async fn open(
        &self,
        granted: &Granted,
        header: PublishHeader,
    ) -> Result<PublishSender, TunnelError> {
        let opened = granted.tunnel.open_publish(header).await;
        if opened.is_err() {
            self.failed(&granted.origin, Failure::Unavailable);
        }
        opened
    }
}

/// Lets an endpoint's close frames go out before its socket is released, so an edge
/// restarted in the same process can bind again. 2 s: several round trips on the longest
/// path.
async fn idle(endpoint: quinn::Endpoint) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), endpoint.wait_idle()).await;
}
