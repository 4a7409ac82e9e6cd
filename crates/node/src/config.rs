//! The settings sections every node has: `[node]`, `[rtmp]`, `[rtmps]`, `[http]`, `[ingest]`.
//!
//! Origins and edges take encoders the same way, so they read these sections the same
//! way; each node's own config struct puts them beside its own sections. Every section
//! has defaults that make sense for a local node, so a site file holds only what differs,
//! and unknown keys are refused: a typo is an error that names the key, not a setting
//! silently ignored. What serde's types cannot check (ranges, finiteness) is checked by
//! the `validate` methods, which name the key of a bad value in an [`InvalidSetting`].

use longhaul_endpoint::Leg;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Who this node is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Unique node id, e.g. `nyc-1`.
    pub id: String,
    /// Region code, e.g. `nyc`.
    pub region: String,
}

impl NodeSection {
    /// Both names are labels of every metric and words of every log line: not empty.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        for (key, value) in [("node.id", &self.id), ("node.region", &self.region)] {
            if value.trim().is_empty() {
                return Err(InvalidSetting {
                    key,
                    reason: "is empty; name this node (e.g. id = \"nyc-1\", region = \"nyc\")"
                        .into(),
                });
            }
        }
        Ok(())
    }
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

/// The HTTP port's listener and limits. A node whose `[http]` has more keys (the origin's
/// `api_token`) reads the table into its own struct and builds this one from it: serde's
/// `flatten` would work, but figment's errors would then name `http`, not `http.listen`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// `/metrics`, `/healthz`, and whatever else the node serves over HTTP.
    pub listen: SocketAddr,
    /// HTTP connections open at once; more are closed at accept.
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers (slowloris guard).
    pub header_timeout_secs: f64,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8081).into(),
            max_connections: 10_000,
            header_timeout_secs: 10.0,
        }
    }
}

impl HttpSection {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.header_timeout_secs)
    }

    pub fn validate(&self) -> Result<(), InvalidSetting> {
        check_secs("http.header_timeout_secs", self.header_timeout_secs)?;
        check_connections("http.max_connections", self.max_connections)
    }
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

    /// The `longhaul_rtmp` session settings these limits give.
    pub fn server_config(&self) -> longhaul_rtmp::ServerConfig {
        longhaul_rtmp::ServerConfig {
            chunk_size: self.chunk_size,
            handshake_timeout: self.handshake_timeout(),
            media_timeout: self.media_timeout(),
            ..longhaul_rtmp::ServerConfig::default()
        }
    }

    pub fn validate(&self) -> Result<(), InvalidSetting> {
        check_secs("ingest.handshake_timeout_secs", self.handshake_timeout_secs)?;
        check_secs("ingest.media_timeout_secs", self.media_timeout_secs)?;
        check_secs("ingest.write_timeout_secs", self.write_timeout_secs)?;
        check_connections("ingest.max_connections", self.max_connections)?;
        let max = longhaul_rtmp::chunk::MAX_CHUNK_SIZE;
        if !(MIN_CHUNK_SIZE..=max).contains(&self.chunk_size) {
            return Err(InvalidSetting {
                key: "ingest.chunk_size",
                reason: format!("{} is not in {MIN_CHUNK_SIZE}..={max}", self.chunk_size),
            });
        }
        Ok(())
    }
}

/// Smallest outgoing chunk size accepted: 128 is the RTMP default (spec 5.4.1) that every
/// peer starts with; going below it only multiplies chunk headers.
pub const MIN_CHUNK_SIZE: u32 = 128;

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

/// `secs` must be a finite number of seconds in (0, [`MAX_TIMEOUT_SECS`]].
pub fn check_secs(key: &'static str, secs: f64) -> Result<(), InvalidSetting> {
    if secs.is_finite() && secs > 0.0 && secs <= MAX_TIMEOUT_SECS {
        Ok(())
    } else {
        Err(InvalidSetting {
            key,
            reason: format!("{secs} is not a number of seconds in (0, {MAX_TIMEOUT_SECS}]"),
        })
    }
}

/// A connection cap must be in `1..=`[`MAX_CONNECTIONS`].
pub fn check_connections(key: &'static str, n: usize) -> Result<(), InvalidSetting> {
    if n == 0 || n > MAX_CONNECTIONS {
        Err(InvalidSetting {
            key,
            reason: format!("{n} is not in 1..={MAX_CONNECTIONS}"),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sections {
        node: NodeSection,
        #[serde(default)]
        http: HttpSection,
        #[serde(default)]
        ingest: IngestSection,
    }

    fn sections(extra: &str) -> Sections {
        let doc = format!("[node]\nid = \"t\"\nregion = \"nyc\"\n{extra}");
        toml::from_str(&doc).expect("parses")
    }

    fn validate(s: &Sections) -> Result<(), InvalidSetting> {
        s.node.validate()?;
        s.http.validate()?;
        s.ingest.validate()
    }

    #[test]
    fn defaults_are_valid() {
        validate(&sections("")).expect("defaults valid");
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
            (
                "[http]\nheader_timeout_secs = nan",
                "http.header_timeout_secs",
            ),
            ("[http]\nmax_connections = 2000000", "http.max_connections"),
        ] {
            let err = validate(&sections(extra)).expect_err(extra);
            assert_eq!(err.key, key, "{extra}: {err}");
        }
        let mut s = sections("");
        s.node.id = " ".into();
        assert_eq!(validate(&s).expect_err("empty id").key, "node.id");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let doc = "[node]\nid = \"t\"\nregion = \"nyc\"\n[http]\nlisten_addr = \"1.2.3.4:5\"";
        let err = toml::from_str::<Sections>(doc).expect_err("unknown key");
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }
}
