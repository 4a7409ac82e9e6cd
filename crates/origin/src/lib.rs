//! # longhaul-origin: the origin node
//!
//! An origin (New York, Palo Alto) is where every stream ends up. It takes RTMP and RTMPS
//! straight from encoders (and, with the edges, through the QUIC tunnels), lets in only
//! the holder of an entry's current token, and serves each live stream to players over
//! RTMP and HTTP-FLV.
//!
//! ```text
//!  encoder ──RTMP/RTMPS──▶ ingest ─┬──▶ hub (GOP cache, fan-out) ──▶ RTMP players
//!  edge ═══QUIC tunnel══▶ tunnel ─┤                              └──▶ HTTP-FLV players
//!                                 └─ publish: URL rules, token check ─▶ registry (memory copy
//!                                                        or HTTP callback)   of SQLite/PostgreSQL)
//!  operator ──HTTP──▶ api (entries, tokens, revoke, FMLE export), /metrics, /healthz
//!  registry change (any origin) ──▶ revoke: cut live publishes here, tell every edge
//!  hub start/end ──▶ presence ──▶ registry ◀── elsewhere ◀── a play of a stream not live here
//! ```
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | the node's settings (TOML + environment, loaded by the CLI) |
//! | [`ingest`] | RTMP/RTMPS listeners and the per-connection driver of `longhaul_rtmp::server` |
//! | [`publish`] | the publish decision: abuse guard (direct publishes), URL rules, token check (or callback), takeover |
//! | [`callback`] | the HTTP authorisation callback, for platforms that keep their own entries |
//! | [`revoke`] | cutting an entry's live publishes here and at every edge |
//! | [`http`], [`api`], [`flv`] | the HTTP port: routing, entries API, HTTP-FLV playback |
//! | [`api_key`] | the check of the API key, shared by the API and the console's sign-in |
//! | [`console`] | the web console's routes, access and sessions (its pages are `longhaul_console`'s) |
//! | [`presence`], [`elsewhere`] | the streams live here, written to the registry; where else a stream is live, for a play that misses here |
//! | [`peering`] | pulling from peer origins the legs this origin has viewers for, and serving theirs |
//! | [`metrics`], [`stream_metrics`] | Prometheus series: per node, and per stream (health read from the hub at scrape time) |
//! | [`tunnel`] | publishes arriving from edges over QUIC tunnels |
//! | [`resume`] | what outlives a tunnel stream of a publish that can resume (wire v2) |
//! | [`drain`] | taking the origin out of service: edges move its streams elsewhere |
//!
//! Listeners, the accept loops, TLS and the shared settings sections are
//! `longhaul_node`'s, which the edge uses too.
//!
//! Start a node with [`Origin::start`]; it binds every listener before returning, so the
//! caller learns the real addresses (port 0 in tests) and bind errors at once.

pub mod api;
pub mod api_key;
pub mod callback;
pub mod config;
pub mod console;
pub mod drain;
pub mod elsewhere;
pub mod flv;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod peering;
pub mod presence;
pub mod publish;
pub mod resume;
pub mod revoke;
mod rtsp_ingest;
pub mod state;
pub mod stream_metrics;
pub mod tunnel;

use crate::config::OriginConfig;
use crate::metrics::Metrics;
use crate::state::OriginState;
use longhaul_hub::Hub;
use longhaul_node::speedtest::NodeIdentity;
use longhaul_node::{
    accept, AbuseGate, CertificateWatch, ConnectionLimits, ListenError, Listeners, NodeTasks,
};
use longhaul_registry::Registry;
use longhaul_tunnel::TunnelSet;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use config::OriginConfig as Config;

/// Why an origin could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::InvalidSetting),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("opening the entries registry: {0}")]
    Registry(#[from] longhaul_registry::RegistryError),
    #[error("the authorisation callback: {0}")]
    Callback(String),
    #[error("cannot start the tunnel listener: {0}")]
    Tunnel(#[from] longhaul_tunnel::TunnelError),
    #[error("cannot start origin peering: {0}")]
    Peering(longhaul_tunnel::TunnelError),
}

/// The handle of a running origin.
pub struct Origin {
    pub state: Arc<OriginState>,
    pub rtmp_addr: SocketAddr,
    pub rtmps_addr: Option<SocketAddr>,
    /// RTSP and RTSPS publishes, when `[rtsp]` turns them on.
    pub rtsp_addr: Option<SocketAddr>,
    pub rtsps_addr: Option<SocketAddr>,
    pub http_addr: SocketAddr,
    /// The QUIC (UDP) address edges connect to, when the tunnel is on.
    pub tunnel_addr: Option<SocketAddr>,
    /// The origin's tunnels, one per connected edge.
    pub tunnels: Arc<longhaul_tunnel::TunnelSet>,
    tasks: NodeTasks,
}

impl Origin {
    /// Opens the registry, binds every listener and starts serving.
    pub async fn start(config: OriginConfig) -> Result<Origin, StartError> {
        let span = longhaul_node::node_span(&config.node.id);
        Self::start_in_span(config).instrument(span).await
    }

    async fn start_in_span(config: OriginConfig) -> Result<Origin, StartError> {
        config.validate()?;
        let registry = match &config.registry {
            Some(section) => {
                let store_config = section.store_config(&config.node.id)?;
                let store = longhaul_registry::open_store(&store_config).await?;
                let cache = section.cache.clone().map(longhaul_registry::CacheFile::new);
                Some(Registry::open_with_cache(store, cache).await?)
            }
            None => None,
        };
        let callback = match (&config.auth.mode, &config.auth.callback) {
            (config::AuthMode::Callback, Some(section)) => {
                Some(callback::CallbackAuthority::new(section).map_err(StartError::Callback)?)
            }
            _ => None,
        };
        let listeners = Listeners::bind(
            &config.rtmp,
            &config.rtmps,
            &config.rtsp,
            &config.http.server,
        )
        .await?;
        let (rtmp_addr, rtmps_addr, http_addr) = (
            listeners.rtmp_addr,
            listeners.rtmps_addr,
            listeners.http_addr,
        );
        let (rtsp_addr, rtsps_addr) = (listeners.rtsp_addr, listeners.rtsps_addr);
        let tunnel_tls = match &config.tunnel {
            Some(section) => Some(longhaul_tunnel::OriginTls::load(section)?),
            None => None,
        };
        let tunnel_endpoint = match (&config.tunnel, &tunnel_tls) {
            (Some(section), Some(tls)) => Some(longhaul_tunnel::server_endpoint(section, tls)?),
            _ => None,
        };
        let mut reloadables = listeners.reloadables();
        reloadables.extend(tunnel_tls.iter().flat_map(|t| t.reloadables()));
        let certificates = CertificateWatch::new(reloadables, config.node.certificate_poll());
        let tunnel_addr = tunnel_endpoint.as_ref().and_then(|e| e.local_addr().ok());
        let tunnels = TunnelSet::new();
        let metrics = Metrics::new(&config.node.id, &config.node.region);
        metrics.register(Box::new(longhaul_tunnel::TunnelCollector::new(
            tunnels.clone(),
        )));
        let limits = ConnectionLimits::new(
            &config.ingest,
            metrics.connections.connections_refused.clone(),
        );
        metrics.register(limits.collector());
        if let Some(registry) = &registry {
            metrics.register(Box::new(metrics::RegistryCollector::new(registry)));
        }
        let peering = peering::Peering::start(&config, &tunnels).map_err(StartError::Peering)?;
        metrics.start_peer_series(config.peering.peers.iter().map(|p| p.id.as_str()));
        let hub = Hub::with_on_air(config.on_air.settings());
        metrics.register(Box::new(metrics::OnAirCollector::new(hub.clone())));
        metrics.register(Box::new(stream_metrics::StreamCollector::new(hub.clone())));
        let abuse = AbuseGate::new(&config.abuse, metrics.abuse.clone())?;
        metrics.register(abuse.collector());
        metrics.register(certificates.collector());
        let speedtest = longhaul_node::speedtest::SpeedTest::new(NodeIdentity {
            id: config.node.id.clone(),
            region: config.node.region.clone(),
            role: "origin",
        });
        metrics.register(speedtest.collector());
        let rtsp_udp = longhaul_node::rtsp_udp::bind(&config.rtsp, &metrics.connections).await?;
        let state = Arc::new(OriginState {
            speedtest,
            rtsp_udp,
            metrics,
            abuse,
            registry,
            callback,
            hub,
            connections: limits.clone(),
            next_connection_id: std::sync::atomic::AtomicU64::new(1),
            live: longhaul_node::LivePublishes::new(),
            tunnels: tunnels.clone(),
            play_urls: presence::PlayUrls::resolve(&config.endpoints, rtmp_addr, http_addr),
            elsewhere: elsewhere::Finder::default(),
            draining: CancellationToken::new(),
            peering,
            console: console::ConsoleSessions::default(),
            config,
        });
        revoke::watch_registry(&state);
        let mut tasks = NodeTasks::new();
        presence::spawn(&mut tasks, &state);
        if let Some(udp) = &state.rtsp_udp {
            tasks.spawn(udp.clone().serve(tasks.shutdown_token()));
        }
        peering::spawn(&mut tasks, &state);
        accept::spawn_listeners(
            &mut tasks,
            listeners.streams,
            limits,
            state.clone(),
            longhaul_node::Shards::single(),
        );
        tasks.spawn(http::serve(
            listeners.http,
            state.clone(),
            tasks.shutdown_token(),
        ));
        if let (Some(endpoint), Some(section), Some(tls)) =
            (tunnel_endpoint, &state.config.tunnel, tunnel_tls)
        {
            tasks.spawn(longhaul_tunnel::server::serve(
                endpoint,
                Arc::new(tunnel::TunnelSide::new(
                    state.clone(),
                    tasks.shutdown_token(),
                )),
                section.clone(),
                tls,
                tunnels.clone(),
                tasks.shutdown_token(),
            ));
        }
        certificates.spawn(&mut tasks);
        if let Some(every) = state.config.node.memory_trim() {
            tasks.spawn(longhaul_node::memory::trim_periodically(
                every,
                tasks.shutdown_token(),
            ));
        }
        tracing::info!(
            node = %state.config.node.id,
            region = %state.config.node.region,
            rtmp = %rtmp_addr,
            rtmps = %rtmps_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
            rtsp = %rtsp_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
            rtsps = %rtsps_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
            http = %http_addr,
            tunnel = %tunnel_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
            play_rtmp = %state.play_urls.rtmp.as_deref().unwrap_or("unknown (set endpoints.play_rtmp)"),
            play_http_flv = %state.play_urls.http_flv.as_deref().unwrap_or("unknown (set endpoints.play_http_flv)"),
            registry = %state.registry.as_ref().map_or_else(|| "none".to_string(), |r| r.info().location),
            auth = %state.callback.as_ref().map_or_else(|| "registry".to_string(), |c| format!("callback {}", c.url())),
            "origin ready"
        );
        Ok(Origin {
            state,
            rtmp_addr,
            rtmps_addr,
            rtsp_addr,
            rtsps_addr,
            http_addr,
            tunnel_addr,
            tunnels,
            tasks,
        })
    }

    /// A token that stops the node when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.tasks.shutdown_token()
    }

    /// Drains the origin ([`drain`]): no new publishes, edges told to move their
    /// streams; returns once no publish is left or after `node.drain_grace_secs`.
    pub async fn drain(&self) {
        drain::begin(&self.state, "shutdown");
        drain::until_empty(&self.state, self.state.config.node.drain_grace()).await;
    }

    /// Stops accepting, closes every connection and waits for the listeners to end.
    pub async fn stop(self) {
        self.tasks.stop().await
    }

    /// Runs until the shutdown token is cancelled or a listener task ends.
    pub async fn wait(&mut self) {
        self.tasks.wait().await
    }
}
