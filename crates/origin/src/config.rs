//! The origin's settings, as read from `config/*.toml` and `LONGHAUL_*` variables.
//!
//! Every section has defaults that make sense for a local node, so a site file holds only
//! what differs. Unknown keys are refused: a typo in a config file is an error that names
//! the key, not a setting silently ignored.

use longhaul_endpoint::Leg;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything an origin node needs to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    pub node: NodeSection,
    #[serde(default)]
    pub rtmp: RtmpSection,
    #[serde(default)]
    pub rtmps: RtmpsSection,
    #[serde(default)]
    pub http: HttpSection,
    pub registry: RegistrySection,
    #[serde(default)]
    pub ingest: IngestSection,
    #[serde(default)]
    pub playback: PlaybackSection,
    #[serde(default)]
    pub endpoints: EndpointsSection,
}

/// Who this node is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Unique node id, e.g. `nyc-1`.
    pub id: String,
    /// Region code, e.g. `nyc`.
    pub region: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpSection {
    /// Plain RTMP listener.
    pub listen: SocketAddr,
}

impl Default for RtmpSection {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 1935).into(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpsSection {
    /// RTMP over TLS listener; off when `None`.
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// API, `/metrics`, `/healthz` and HTTP-FLV playback.
    pub listen: SocketAddr,
    /// Bearer token the entries API requires. Without one, the API answers only
    /// requests from loopback addresses (playback, metrics and health stay open).
    pub api_token: Option<String>,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8081).into(),
            api_token: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// SQLite database file of entries and tokens.
    pub path: PathBuf,
}

/// Limits and timeouts of RTMP ingest.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSection {
    /// The leg (primary/backup) of a publish whose URL names none.
    pub default_leg: Leg,
    /// Seconds a connection may take to finish the handshake and ask to publish or play.
    /// 10 s: a TLS and RTMP handshake over a 300 ms path needs about 6 round trips.
    pub handshake_timeout_secs: f64,
    /// Seconds a publisher may send no media before it is closed. 15 s: encoders send
    /// audio every ~23 ms and video every frame; OBS reconnects after 10-20 s of silence.
    pub media_timeout_secs: f64,
    /// Seconds a write to a peer may make no progress before the connection is closed.
    /// A player that stops reading is thus let go even while the hub's bounded queue
    /// already shields the publisher from it. 15 s: longer than a TCP retransmission
    /// burst on a 300 ms path (RTO backs off 0.3, 0.6, 1.2, 2.4, 4.8 s).
    pub write_timeout_secs: f64,
    /// Outgoing chunk size. 4096: large enough that a 10 KB frame is 3 chunks, and what
    /// OBS and ffmpeg use themselves.
    pub chunk_size: u32,
    /// Connections open at once, all listeners together; more are refused at accept.
    pub max_connections: usize,
}

impl Default for IngestSection {
    fn default() -> Self {
        Self {
            default_leg: Leg::Primary,
            handshake_timeout_secs: 10.0,
            media_timeout_secs: 15.0,
            write_timeout_secs: 15.0,
            chunk_size: 4096,
            max_connections: 10_000,
        }
    }
}

impl IngestSection {
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.handshake_timeout_secs.max(0.001))
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.write_timeout_secs.max(0.001))
    }
    pub fn media_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.media_timeout_secs.max(0.001))
    }
}

/// Playback settings.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PlaybackSection {}

/// How this node names its endpoints in the entries it hands out.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointsSection {
    /// Host encoders publish to (`kpublish.example.com`, or `127.0.0.1` in dev).
    pub host: String,
    pub rtmp_port: u16,
    pub rtmps_port: u16,
    /// Put entry and leg in the host name (`{entryId}.p.{host}`), as production DNS
    /// allows; off for hosts without wildcard DNS (dev), where the leg goes in `i=0|1`.
    pub leg_subdomains: bool,
    /// Renditions listed per entry (`{entryId}_1` ... `{entryId}_N`).
    pub renditions: u32,
}

impl Default for EndpointsSection {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            rtmp_port: 1935,
            rtmps_port: 1936,
            leg_subdomains: false,
            renditions: 3,
        }
    }
}
