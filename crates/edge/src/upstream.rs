//! The edge's side of its tunnels: one persistent tunnel per configured origin, which
//! origin takes a leg, and the two questions a publish asks of it.
//!
//! All the edge knows of `longhaul_tunnel` is here. At start-up [`Upstreams::start`] opens
//! one QUIC endpoint and spawns one [`TunnelClient`] per origin in `[tunnel] origins`;
//! they connect at once and reconnect with backoff for as long as the edge runs, so a
//! publish never waits for a QUIC handshake. Leg `p` goes to `tunnel.primary`, leg `b` to
//! the other origin. [`Upstreams::open_publish`] asks that origin for a verdict (the
//! tunnel bounds the wait with `tunnel.transport.authorise_timeout_ms`) and, when
//! allowed, opens the stream the media will go on.

use longhaul_endpoint::Leg;
use longhaul_node::NodeSection;
use longhaul_tunnel::{
    AuthoriseRequest, EdgeHooks, EdgeTls, Hello, PublishHeader, PublishSender, TunnelClient,
    TunnelError, TunnelSection, TunnelSet, Verdict,
};
use std::sync::Arc;

/// The tunnels of one edge.
pub struct Upstreams {
    clients: Vec<TunnelClient>,
    section: TunnelSection,
    set: Arc<TunnelSet>,
    endpoint: quinn::Endpoint,
    /// The edge's tunnel certificate and CA, shared by its tunnels.
    tls: EdgeTls,
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
    /// Opens the edge's QUIC endpoint and starts a tunnel to every configured origin.
    /// `load` answers the origins' load questions (publishers, connections).
    pub fn start(
        section: &TunnelSection,
        node: &NodeSection,
        hooks: EdgeHooks,
    ) -> Result<Upstreams, TunnelError> {
        let tls = EdgeTls::load(&section.tls)?;
        let endpoint = longhaul_tunnel::client_endpoint(section)?;
        let set = TunnelSet::new();
        let hello = Hello {
            node_id: node.id.clone(),
            region: node.region.clone(),
            role: "edge".into(),
            version: longhaul_tunnel::VERSION.into(),
        };
        let clients = section
            .origins
            .iter()
            .map(|peer| {
                TunnelClient::spawn(
                    endpoint.clone(),
                    hello.clone(),
                    peer.clone(),
                    section,
                    &tls,
                    hooks.clone(),
                    &set,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Upstreams {
            clients,
            section: section.clone(),
            set,
            endpoint,
            tls,
        })
    }

    /// What the node's certificate watcher reloads for the tunnels.
    pub fn reloadables(&self) -> Vec<Arc<dyn longhaul_node::Reload>> {
        self.tls.reloadables()
    }

    /// Every tunnel, for the metrics collector and `/healthz`.
    pub fn set(&self) -> &Arc<TunnelSet> {
        &self.set
    }

    pub fn clients(&self) -> &[TunnelClient] {
        &self.clients
    }

    /// The tunnel that takes `leg`.
    pub fn for_leg(&self, leg: Leg) -> Option<&TunnelClient> {
        let peer = self.section.origin_for(leg)?;
        self.clients.iter().find(|c| c.peer().id == peer.id)
    }

    /// Asks the origin of `request.leg` about a publish and, when it allows it, opens
    /// the publish stream.
    pub async fn open_publish(&self, request: AuthoriseRequest) -> Decision {
        let Some(tunnel) = self.for_leg(request.leg) else {
            // Validation makes this unreachable: `primary` names a configured origin.
            let origin = self.section.primary.clone();
            let error = TunnelError::NotConnected {
                peer: origin.clone(),
            };
            return Decision::Unavailable { origin, error };
        };
        let origin = tunnel.peer().id.clone();
        let client_addr = request.client_addr.clone();
        match tunnel.authorise(request).await {
            Err(error @ TunnelError::TooLarge { .. }) => Decision::Refused {
                code: longhaul_rtmp::status::PUBLISH_BAD_NAME.into(),
                reason: "bad_request".into(),
                description: format!(
                    "publish refused: the connect app, tcUrl and publish name are too long to \
                     forward ({error})"
                ),
                origin,
            },
            Err(error) => Decision::Unavailable { origin, error },
            Ok(Verdict::Refused {
                code,
                reason,
                description,
            }) => Decision::Refused {
                code,
                reason,
                description,
                origin,
            },
            Ok(Verdict::Allowed {
                grant,
                stream_name,
                generation,
            }) => {
                let header = PublishHeader {
                    grant,
                    stream_name: stream_name.clone(),
                    client_addr,
                };
                match tunnel.open_publish(header).await {
                    Ok(sender) => Decision::Allowed {
                        sender,
                        stream_name,
                        origin,
                        generation,
                    },
                    Err(error) => Decision::Unavailable { origin, error },
                }
            }
        }
    }

    /// Closes every tunnel (the origins hear a normal close) and the endpoint.
    pub async fn close(&self) {
        for client in &self.clients {
            client.close();
        }
        // Let the close frames go out before the socket is released, so an edge restarted
        // in the same process can bind again. 2 s: several round trips on the longest path.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), self.endpoint.wait_idle())
            .await;
    }
}
