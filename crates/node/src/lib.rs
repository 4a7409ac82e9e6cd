//! # longhaul-node: what every longhaul node shares
//!
//! longhaul runs two kinds of node. An **origin** takes encoders and players and keeps
//! the streams; an **edge** takes encoders near them and forwards each stream over a QUIC
//! tunnel to an origin. Both listen for RTMP and RTMPS the same way, read the same
//! settings sections, serve `/metrics`, `/healthz` and a speed test over HTTP, and count
//! what they do in Prometheus series labelled with the node. That common part lives
//! here, once; what a node does with a connection stays in its own crate.
//!
//! ```text
//!             ┌────────────────────── longhaul-node ──────────────────────┐
//!  encoder ──▶│ listeners ─▶ accept::serve: caps, PROXY, TLS ─▶ Handler  ├─▶ origin: hub
//!             │                                          (the node's)     ├─▶ edge: tunnel
//!  scraper ──▶│ listeners ─▶ http::serve: cap, header timeout ─▶ route    │
//!             │ config: [node] [rtmp] [rtmps] [http] [ingest] [abuse]     │
//!             │ abuse: slow, then ban, who keeps failing; tls; metrics    │
//!             └───────────────────────────────────────────────────────────┘
//! ```
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | the shared settings sections, their defaults and validation ([`InvalidSetting`] names the key) |
//! | [`abuse`] | [`AbuseGuard`], sans IO: addresses that keep failing to publish are slowed, then banned (fail2ban's rule) |
//! | [`abuse_gate`] | [`AbuseGate`]: the guard at a node's door, with its delay, logs and metrics |
//! | [`listeners`] | binding RTMP, RTMPS (with its certificate) and HTTP before a node reports ready |
//! | [`accept`] | the RTMP/RTMPS accept loop: connection caps, PROXY header, TLS handshake, [`ConnectionHandler`] |
//! | [`shards`] | [`Shards`]: one current-thread runtime per core, each connection handed to the least loaded |
//! | [`proxy_header`] | the PROXY protocol header (v1, v2), sans IO: the client a load balancer names |
//! | [`proxied`] | reading that header off a socket, the bytes past it put back ([`proxied::Rewound`]) |
//! | [`address_limit`] | connections open per client address (IPv6: per /64), with places given back on drop |
//! | [`unauthorised`] | the node-wide budget for what connections not yet authorised hold in their buffers |
//! | [`http`] | the HTTP/1.1 accept loop (cap, header timeout) and JSON/metrics responses |
//! | [`tls`] | the RTMPS server configuration from PEM files, its certificate swappable |
//! | [`reload`] | [`CertificateWatch`]: the node's TLS files looked at every second and on SIGHUP, reloaded when they pass their checks |
//! | [`metrics`] | a per-node Prometheus registry, metric builders, [`GaugeGuard`] |
//! | [`revocation`] | live publishes by entry, so a revoked token or a deleted entry cuts them all ([`LivePublishes`]) |
//! | [`connection`] | the loop every node runs per RTMP connection; the node's part is a [`connection::Connection`] |
//! | [`rtsp_udp`] | the RTP and RTCP ports RTSP publishes over UDP share, datagrams routed by source |
//! | [`rtsp_connection`] | the same for an RTSP publish (`longhaul_rtsp`): the node decides the publish and takes its media, an [`rtsp_connection::RtspConnection`] |
//! | [`speedtest`] | the speed-test routes both nodes mount (`/speedtest`): bounded, paced, limited per node and per client |
//! | [`session_io`] | an RTMP session's writes with a time limit, and its deadline timer |
//! | [`tasks`] | [`NodeTasks`]: a node's tasks and the token that stops them |
//!
//! A node starts like this (the origin and the edge both do):
//!
//! ```ignore
//! let listeners = Listeners::bind(&config.rtmp, &config.rtmps, &config.rtsp, &config.http).await?;
//! let limits = ConnectionLimits::new(&config.ingest, metrics.connections_refused.clone());
//! let mut tasks = NodeTasks::new();
//! let shards = Shards::single(); // or Shards::start(cores): a thread per core, no stealing
//! accept::spawn_listeners(&mut tasks, listeners.streams, limits, handler, shards);
//! tasks.spawn(http::serve(listeners.http, config.http.clone(), refused, tasks.shutdown_token(), route));
//! // the RTMPS certificate (and the node's tunnel files) reloaded when they change or on SIGHUP
//! let watch = CertificateWatch::new(reloadables, config.node.certificate_poll());
//! metrics.register(watch.collector());
//! watch.spawn(&mut tasks);
//! // the node's handle keeps `tasks`: stop(), wait(), shutdown_token()
//! ```
//!
//! This crate knows nothing of hubs, registries or tunnels: dependencies point from the
//! nodes to it, and from it only to the protocol crates (`longhaul-rtmp` for session
//! settings, `longhaul-endpoint` for the leg type).

pub mod abuse;
pub mod abuse_gate;
pub mod accept;
pub mod address_limit;
pub mod config;
pub mod connection;
pub mod drain;
pub mod http;
pub mod listeners;
pub mod memory;
pub mod metrics;
pub mod proxied;
pub mod proxy_header;
pub mod reload;
pub mod revocation;
pub mod rtsp_connection;
pub mod rtsp_udp;
pub mod session_io;
pub mod shards;
pub mod speedtest;
pub mod tasks;
pub mod tls;
pub mod unauthorised;

pub use abuse::AbuseGuard;
pub use abuse_gate::AbuseGate;
pub use accept::{
    Accepted, ConnectionHandler, ConnectionLimits, Io, Protocol, StreamListeners, Transport,
    UnauthorisedCharge,
};
pub use config::{
    AbuseSection, HttpSection, IngestSection, InvalidSetting, NodeSection, RtmpSection,
    RtmpsSection, RtspSection,
};
pub use listeners::{ListenError, Listeners, TlsListener};
pub use longhaul_certs::Reload;
pub use metrics::GaugeGuard;
pub use reload::CertificateWatch;
pub use revocation::{Cut, LivePublish, LivePublishes, Revoked};
pub use shards::Shards;
pub use tasks::NodeTasks;

/// The span a node runs in: every log line of the node, and of the tasks it spawns
/// through [`NodeTasks`] (or with `in_current_span`), carries `node{id=...}`, so the
/// lines of several nodes in one process (`longhaul dev`, the tests) say who spoke.
pub fn node_span(id: &str) -> tracing::Span {
    tracing::info_span!("node", id = %id)
}
pub use tls::TlsError;
