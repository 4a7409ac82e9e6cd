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
    pub endpoints: EndpointsSection,
    /// Where edges connect their QUIC tunnels; off when absent.
    #[serde(default)]
    pub tunnel: Option<longhaul_tunnel::TunnelListenSection>,
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
    /// At least [`MIN_API_TOKEN_LEN`] characters: an empty or short secret is refused.
    pub api_token: Option<String>,
    /// HTTP connections open at once; more are closed at accept.
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers (slowloris guard).
    pub header_timeout_secs: f64,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8081).into(),
            api_token: None,
            max_connections: 10_000,
            header_timeout_secs: 10.0,
        }
    }
}

impl HttpSection {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.header_timeout_secs)
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
        Duration::from_secs_f64(self.handshake_timeout_secs)
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.write_timeout_secs)
    }
    pub fn media_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.media_timeout_secs)
    }
}

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

/// Shortest `http.api_token` accepted: 16 characters of a random secret are 80+ bits.
pub const MIN_API_TOKEN_LEN: usize = 16;

/// Longest timeout accepted, in seconds. An hour is far past any sensible handshake,
/// media gap or write stall; a larger value is a typo (or `inf`).
pub const MAX_TIMEOUT_SECS: f64 = 3600.0;

/// Most connections a listener may hold: tokio's semaphore caps permits near 2^61, and
/// a node's descriptor limit is far below this anyway.
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// A setting outside what the node can run with, named by its key.
#[derive(Debug, thiserror::Error)]
#[error("config key {key}: {reason}")]
pub struct InvalidSetting {
    pub key: &'static str,
    pub reason: String,
}

impl OriginConfig {
    /// Checks what serde's types cannot: ranges, finiteness, secrets' length.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if let Some(t) = &self.tunnel {
            t.transport.validate().map_err(|e| InvalidSetting {
                key: e.key,
                reason: e.reason,
            })?;
            if t.tls.cert.is_none() || t.tls.key.is_none() {
                return Err(InvalidSetting {
                    key: "tunnel.tls",
                    reason: "an origin's tunnel needs its certificate: set tunnel.tls.cert and tunnel.tls.key".into(),
                });
            }
        }
        let timeouts = [
            (
                "ingest.handshake_timeout_secs",
                self.ingest.handshake_timeout_secs,
            ),
            ("ingest.media_timeout_secs", self.ingest.media_timeout_secs),
            ("ingest.write_timeout_secs", self.ingest.write_timeout_secs),
            ("http.header_timeout_secs", self.http.header_timeout_secs),
        ];
        for (key, secs) in timeouts {
            if !(secs.is_finite() && secs > 0.0 && secs <= MAX_TIMEOUT_SECS) {
                return Err(InvalidSetting {
                    key,
                    reason: format!("{secs} is not a number of seconds in (0, {MAX_TIMEOUT_SECS}]"),
                });
            }
        }
        let counts = [
            ("ingest.max_connections", self.ingest.max_connections),
            ("http.max_connections", self.http.max_connections),
        ];
        for (key, n) in counts {
            if n == 0 || n > MAX_CONNECTIONS {
                return Err(InvalidSetting {
                    key,
                    reason: format!("{n} is not in 1..={MAX_CONNECTIONS}"),
                });
            }
        }
        let chunk = self.ingest.chunk_size;
        if !(128..=longhaul_rtmp::chunk::MAX_CHUNK_SIZE).contains(&chunk) {
            return Err(InvalidSetting {
                key: "ingest.chunk_size",
                reason: format!(
                    "{chunk} is not in 128..={}",
                    longhaul_rtmp::chunk::MAX_CHUNK_SIZE
                ),
            });
        }
        if let Some(token) = &self.http.api_token {
            if token.chars().count() < MIN_API_TOKEN_LEN {
                return Err(InvalidSetting {
                    key: "http.api_token",
                    reason: format!(
                        "shorter than {MIN_API_TOKEN_LEN} characters; use a random secret \
                         (or leave it unset to serve the API to loopback only)"
                    ),
                });
            }
        }
        if self.endpoints.renditions == 0
            || self.endpoints.renditions > longhaul_endpoint::MAX_RENDITION
        {
            return Err(InvalidSetting {
                key: "endpoints.renditions",
                reason: format!(
                    "{} is not in 1..={}",
                    self.endpoints.renditions,
                    longhaul_endpoint::MAX_RENDITION
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> OriginConfig {
        let doc =
            format!("[node]\nid = \"t\"\nregion = \"nyc\"\n[registry]\npath = \"r.db\"\n{extra}");
        toml::from_str(&doc).expect("parses")
    }

    #[test]
    fn defaults_are_valid() {
        config("").validate().expect("defaults valid");
    }

    #[test]
    fn bad_values_are_named_by_key() {
        for (extra, key) in [
            (
                "[ingest]\nmedia_timeout_secs = inf",
                "ingest.media_timeout_secs",
            ),
            (
                "[ingest]\nhandshake_timeout_secs = 0.0",
                "ingest.handshake_timeout_secs",
            ),
            (
                "[ingest]\nwrite_timeout_secs = 1e300",
                "ingest.write_timeout_secs",
            ),
            ("[ingest]\nmax_connections = 0", "ingest.max_connections"),
            ("[ingest]\nchunk_size = 1", "ingest.chunk_size"),
            ("[http]\napi_token = \"\"", "http.api_token"),
            ("[http]\napi_token = \"short\"", "http.api_token"),
            ("[endpoints]\nrenditions = 0", "endpoints.renditions"),
        ] {
            let err = config(extra).validate().expect_err(extra);
            assert_eq!(err.key, key, "{extra}: {err}");
        }
    }
}
