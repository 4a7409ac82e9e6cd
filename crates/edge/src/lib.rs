//! # longhaul-edge: the edge node
//!
//! An edge (Frankfurt, São Paulo, Singapore) sits near encoders that are far from the
//! origins. It takes their RTMP and RTMPS publishes over a short, clean path and carries
//! each stream to an origin over a QUIC tunnel that is already open, past its handshake
//! and slow start, and runs a congestion controller made for long lossy paths. The
//! encoder never speaks TCP across the ocean.
//!
//! ```text
//!                 ┌──────────────────────────── edge ───────────────────────────────┐
//!  encoder ─RTMP─▶│ ingest: ServerSession ─ publish? ─▶ upstream ═══ control ═══════╪═▶ origin (leg p)
//!  encoder ─RTMPS▶│    │ media                 ◀─ verdict (the origin's own words)   │
//!                 │    ▼                                                            │
//!                 │ relay_queue (sans IO): pause reading at pause_bytes,            │
//!                 │    │          drop whole GOPs older than max_delay             │
//!                 │    ▼                                                            │
//!                 │ relay: writer task ════ one QUIC stream per published stream ═══╪═▶ origin hub
//!                 │ http: /metrics, /healthz (tunnel states)                        │
//!                 └─────────────────────────────────────────────────────────────────┘
//! ```
//!
//! - **One tunnel per origin, from start-up.** `[tunnel] origins` lists them. A tunnel
//!   that drops reconnects with jittered backoff; `/healthz` and the `longhaul_tunnel_*`
//!   series show each one.
//! - **A router picks each publish's origin** (`longhaul_router`, fed every 250 ms by
//!   [`routing`]): leg `p` prefers `primary`, leg `b` the other origin; a leg whose
//!   preferred origin is down, draining, unhealthy or on a lossy path goes to a healthy
//!   one, and comes back after `router.failback_after_ms` (30 s). Live streams it would
//!   move are logged and counted only: they stay where they are until tunnel wire format
//!   v2 lets them move without touching the encoder.
//! - **The origin decides.** The edge resolves the leg from the URL, then asks the
//!   origin, which checks the token as for a direct publish. A refusal reaches the encoder
//!   in the origin's words; an origin out of reach is refused as such.
//! - **A slow tunnel slows the encoder, then costs whole GOPs.** The relay queue stops
//!   reading the encoder's socket at `relay.pause_bytes`, so its TCP window closes; if the
//!   queue stays full past `relay.max_delay_ms`, whole GOPs are dropped from its front,
//!   never sequence headers or metadata, and every drop is counted.
//! - **The origin can end a stream** (a takeover by the backup encoder's reconnect, say):
//!   the encoder hears the origin's status.
//! - **Who keeps failing is refused here.** An address (an IPv6 /64) whose publishes the
//!   origin refused for their credentials `abuse.slow_after` times in `abuse.window_secs`
//!   waits before each further attempt is passed on; after `abuse.ban_after`, its
//!   publishes are refused at the edge for `abuse.ban_secs`, without a tunnel round trip
//!   (`longhaul_node::abuse`, fail2ban's rule; `too_many_failures` in the metrics).
//! - **Publishes only.** A play is refused: players play from the origins.
//! - **A shard per core** ([`Edge::start_sharded`], `longhaul --threads N edge`): each
//!   shard is a thread with tokio's current-thread runtime, takes its share of the
//!   connections (the least loaded gets the next) and has its own lane of tunnels, one
//!   to each origin, with its own router. A stream's connection, relay writer and QUIC
//!   connection driver then run on one thread, and no one tunnel caps the edge at a
//!   core. The origins keep an edge's lanes side by side (the hello says the lane).
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | [`EdgeConfig`]: the shared sections, `[relay]`, `[router]` and `[tunnel]` |
//! | [`ingest`] | the per-connection driver of `longhaul_rtmp::ServerSession` |
//! | [`upstream`] | the tunnels to the origins and the router: which takes a leg, verdicts, publish streams |
//! | [`routing`] | the router's driver: tunnel states, path samples and reports in; health changes and wanted moves logged and counted |
//! | [`relay_queue`] | the bounded queue between encoder and tunnel, sans IO |
//! | [`relay`] | the writer task that feeds a tunnel stream from the queue |
//! | [`http`] | `/metrics` and `/healthz` |
//! | [`metrics`], [`stream_metrics`] | Prometheus series: per node, and per relayed stream (queue, pauses, drops, read at scrape time) |
//! | [`state`] | what the node's tasks share |
//!
//! Start a node with [`Edge::start`] (one shard) or [`Edge::start_sharded`]; it binds every listener and opens the tunnels'
//! UDP socket before returning, so the caller learns the real addresses (port 0 in tests)
//! and bind errors at once.

pub mod config;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod relay;
pub mod relay_queue;
pub mod routing;
pub mod state;
pub mod stream_metrics;
pub mod upstream;

pub use config::EdgeConfig;

use crate::metrics::Metrics;
use crate::state::EdgeState;
use crate::upstream::Upstreams;
use longhaul_node::speedtest::NodeIdentity;
use longhaul_node::{
    accept, AbuseGate, CertificateWatch, ConnectionLimits, Cut, InvalidSetting, ListenError,
    Listeners, LivePublishes, NodeTasks, Revoked, Shards,
};
use longhaul_tunnel::{EdgeHooks, LoadFn, LoadReport, Revocation, RevokeFn, TunnelError};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Why an edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] InvalidSetting),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("cannot start the tunnels: {0}")]
    Tunnel(#[from] TunnelError),
    #[error("cannot start the shards' threads: {0}")]
    Shards(std::io::Error),
}

/// Time on top of the drain limit: connections notice a shutdown in one scheduler turn,
/// and a writer that drained then waits up to 2 s for the origin to take the stream's
/// end (`PublishSender::finish`); 3 s covers both.
const DRAIN_MARGIN: std::time::Duration = std::time::Duration::from_secs(3);

/// What the edge does with an origin's revocation: cut the relayed streams of the entry
/// it covers, whichever origin they go to. Each stream's connection tells its encoder
/// and counts the end (`edge_publish_ends_total{reason="revoked"}`).
fn revoke_hook(live: LivePublishes, counter: prometheus::IntCounterVec) -> RevokeFn {
    std::sync::Arc::new(move |r: Revocation| {
        let cut = Cut::from_floor(r.before_generation);
        let why = Revoked {
            code: r.code,
            reason: r.reason,
            description: r.description,
        };
        let n = live.revoke(&r.entry_id, cut, &why, std::time::Instant::now());
        counter
            .with_label_values(&[crate::metrics::label(&why.reason)])
            .inc();
        tracing::info!(entry = %r.entry_id, reason = %why.reason, ?cut, cut_here = n,
            "revocation from an origin: {}", why.description);
    })
}

/// What the edge reports of itself to the origins: healthy while it takes new
/// publishes (not shutting down, under its connection cap), draining once shutting down.
fn load_hook(
    metrics: &Metrics,
    limits: &ConnectionLimits,
    config: &EdgeConfig,
    shutdown: CancellationToken,
    drain: CancellationToken,
) -> LoadFn {
    let (publishers, limits) = (metrics.publishers_active.clone(), limits.clone());
    let cap = config.ingest.max_connections;
    Arc::new(move || {
        let draining = shutdown.is_cancelled() || drain.is_cancelled();
        let connections = limits.open_connections();
        LoadReport {
            healthy: !draining && connections < cap,
            publishers: publishers.get().max(0) as u64,
            connections: connections as u64,
            draining,
        }
    })
}

/// The handle of a running edge.
pub struct Edge {
    pub state: Arc<EdgeState>,
    pub rtmp_addr: SocketAddr,
    pub rtmps_addr: Option<SocketAddr>,
    /// RTSP and RTSPS publishes, when `[rtsp]` turns them on.
    pub rtsp_addr: Option<SocketAddr>,
    pub rtsps_addr: Option<SocketAddr>,
    pub http_addr: SocketAddr,
    tasks: NodeTasks,
    shards: Arc<Shards>,
}

impl Edge {
    /// Binds every listener, starts a tunnel to every configured origin, and serves, all
    /// on the caller's runtime (one shard).
    pub async fn start(config: EdgeConfig) -> Result<Edge, StartError> {
        Self::start_sharded(config, 1).await
    }

    /// [`Edge::start`] with `shards` shards (`longhaul_node::shards`): the caller's
    /// runtime and `shards - 1` threads of their own, each running the connections handed
    /// to it and its own lane of tunnels to every origin. Give it a current-thread
    /// runtime: the caller's is shard 0.
    pub async fn start_sharded(config: EdgeConfig, shards: usize) -> Result<Edge, StartError> {
        let span = longhaul_node::node_span(&config.node.id);
        Self::start_in_span(config, shards.max(1))
            .instrument(span)
            .await
    }

    async fn start_in_span(config: EdgeConfig, shards: usize) -> Result<Edge, StartError> {
        config.validate()?;
        let listeners =
            Listeners::bind(&config.rtmp, &config.rtmps, &config.rtsp, &config.http).await?;
        let metrics = Metrics::new(&config.node.id, &config.node.region);
        let refused = metrics.connections.connections_refused.clone();
        let limits = ConnectionLimits::new(&config.ingest, refused);
        metrics.register(limits.collector());
        let mut tasks = NodeTasks::new();
        let draining = CancellationToken::new();
        let load = load_hook(
            &metrics,
            &limits,
            &config,
            tasks.shutdown_token(),
            draining.clone(),
        );
        let live = LivePublishes::new();
        let revoke = revoke_hook(live.clone(), metrics.revocations.clone());
        let most = usize::from(longhaul_tunnel::server::MAX_LANES);
        if shards > most {
            return Err(StartError::Shards(std::io::Error::other(format!(
                "{shards} shards asked (--threads): an edge runs at most {most}, one tunnel lane each"
            ))));
        }
        let shards = match shards {
            1 => Shards::single(),
            n => {
                Shards::start(std::num::NonZeroUsize::new(n).unwrap_or(std::num::NonZeroUsize::MIN))
                    .map_err(StartError::Shards)?
            }
        };
        let upstreams = Upstreams::start(
            &config.tunnel,
            config.router.thresholds(),
            &config.node,
            EdgeHooks { load, revoke },
            &shards,
        )?;
        for o in &config.tunnel.origins {
            metrics.router_origin_healthy.with_label_values(&[&o.id]);
        }
        metrics.register(Box::new(longhaul_tunnel::TunnelCollector::new(
            upstreams.set().clone(),
        )));
        let abuse = AbuseGate::new(&config.abuse, metrics.abuse.clone())?;
        metrics.register(abuse.collector());
        let mut reloadables = listeners.reloadables();
        reloadables.extend(upstreams.reloadables());
        let certificates = CertificateWatch::new(reloadables, config.node.certificate_poll());
        metrics.register(certificates.collector());
        let speedtest = longhaul_node::speedtest::SpeedTest::new(NodeIdentity {
            id: config.node.id.clone(),
            region: config.node.region.clone(),
            role: "edge",
        });
        metrics.register(speedtest.collector());
        let rtsp_udp = longhaul_node::rtsp_udp::bind(&config.rtsp, &metrics.connections).await?;
        if let Some(udp) = &rtsp_udp {
            tasks.spawn(udp.clone().serve(tasks.shutdown_token()));
        }
        let state = Arc::new(EdgeState {
            speedtest,
            rtsp_udp,
            metrics,
            upstreams,
            connections: limits.clone(),
            abuse,
            next_connection_id: std::sync::atomic::AtomicU64::new(1),
            relay_writers: tokio_util::task::TaskTracker::new(),
            live,
            relays: Default::default(),
            draining,
            config,
        });
        state
            .metrics
            .register(Box::new(stream_metrics::RelayStreamCollector::new(&state)));
        let (rtmp_addr, rtmps_addr, http_addr) = (
            listeners.rtmp_addr,
            listeners.rtmps_addr,
            listeners.http_addr,
        );
        let (rtsp_addr, rtsps_addr) = (listeners.rtsp_addr, listeners.rtsps_addr);
        accept::spawn_listeners(
            &mut tasks,
            listeners.streams,
            limits,
            state.clone(),
            shards.clone(),
        );
        tasks.spawn(http::serve(
            listeners.http,
            state.clone(),
            tasks.shutdown_token(),
        ));
        certificates.spawn(&mut tasks);
        if let Some(every) = state.config.node.memory_trim() {
            tasks.spawn(longhaul_node::memory::trim_periodically(
                every,
                tasks.shutdown_token(),
            ));
        }
        tasks.spawn(routing::drive(state.clone(), tasks.shutdown_token()));
        let origins: Vec<&str> = state
            .config
            .tunnel
            .origins
            .iter()
            .map(|o| o.id.as_str())
            .collect();
        tracing::info!(
            node = %state.config.node.id,
            region = %state.config.node.region,
            rtmp = %rtmp_addr,
            rtmps = %rtmps_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
            rtsp = %rtsp_addr.map_or_else(|| "off".to_string(), |a| a.to_string()),
            http = %http_addr,
            origins = %origins.join(","),
            primary = %state.config.tunnel.primary,
            shards = shards.len(),
            "edge ready"
        );
        Ok(Edge {
            state,
            rtmp_addr,
            rtmps_addr,
            rtsp_addr,
            rtsps_addr,
            http_addr,
            tasks,
            shards,
        })
    }

    /// A token that stops the node when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.tasks.shutdown_token()
    }

    /// Drains the edge: it takes no new publishes, asks every encoder that supports it
    /// (Enhanced RTMP v2 `capsEx` Reconnect) to reconnect, which brings it back through
    /// another edge, and returns once no publish is left or after
    /// `node.drain_grace_secs`.
    pub async fn drain(&self) {
        let state = &self.state;
        if !state.draining.is_cancelled() {
            state.draining.cancel();
            tracing::info!(
                edge = %state.config.node.id,
                region = %state.config.node.region,
                reason = "shutdown",
                publishers = state.metrics.publishers_active.get(),
                "draining: no new publishes; encoders that support it are asked to reconnect"
            );
        }
        let grace = state.config.node.drain_grace();
        longhaul_node::drain::until_empty(&state.metrics.publishers_active, grace).await;
    }

    /// Stops accepting and ends every connection; lets each relayed stream send what it
    /// has queued (within `ingest.write_timeout_secs`, the drain limit), then closes the
    /// tunnels (the origins hear a normal close, after the streams' ends).
    pub async fn stop(self) {
        self.tasks.stop().await;
        let writers = &self.state.relay_writers;
        writers.close();
        // Connections see the shutdown and finish their relays; each writer then drains
        // within the drain limit. A margin on top covers the connections' own wake-up.
        let limit = self.state.config.ingest.write_timeout() + DRAIN_MARGIN;
        if tokio::time::timeout(limit, writers.wait()).await.is_err() {
            tracing::warn!(
                left = writers.len(),
                ?limit,
                "relayed streams still draining at shutdown; closing the tunnels under them"
            );
        }
        self.state.upstreams.close().await;
        self.shards.stop().await;
    }

    /// Runs until the shutdown token is cancelled or a listener task ends.
    pub async fn wait(&mut self) {
        self.tasks.wait().await
    }
}
