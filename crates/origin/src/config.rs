//! The origin's settings, as read from `config/*.toml` and `LONGHAUL_*` variables.
//!
//! Every section has defaults that make sense for a local node, so a site file holds only
//! what differs. Unknown keys are refused: a typo in a config file is an error that names
//! the key, not a setting silently ignored. The sections every node has (`[node]`,
//! `[rtmp]`, `[rtmps]`, `[ingest]`, `[abuse]`, most of `[http]`) are `longhaul_node`'s; the origin
//! adds the registry, the endpoints it hands out, and the API token.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use longhaul_node::config::{
    AbuseSection, IngestSection, InvalidSetting, NodeSection, RtmpSection, RtmpsSection,
};

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
    /// Addresses that keep failing to publish directly here are slowed, then refused.
    /// (A publish through an edge is the edge's to guard: it knows the encoder.)
    #[serde(default)]
    pub abuse: AbuseSection,
    /// Where edges connect their QUIC tunnels; off when absent.
    #[serde(default)]
    pub tunnel: Option<longhaul_tunnel::TunnelListenSection>,
}

/// The origin's `[http]`: the listener and limits every node has, and the API's token.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "HttpKeys")]
pub struct HttpSection {
    /// API, `/metrics`, `/healthz` and HTTP-FLV playback.
    pub server: longhaul_node::HttpSection,
    /// Bearer token the entries API requires. Without one, the API answers only
    /// requests from loopback addresses (playback, metrics and health stay open).
    /// At least [`MIN_API_TOKEN_LEN`] characters: an empty or short secret is refused.
    pub api_token: Option<String>,
}

/// `[http]` as written: the shared keys and the origin's own in one table, read as one
/// plain struct so that a bad value is named by its full key (`http.listen`).
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HttpKeys {
    listen: SocketAddr,
    max_connections: usize,
    header_timeout_secs: f64,
    api_token: Option<String>,
}

impl Default for HttpKeys {
    fn default() -> Self {
        HttpSection::default().into()
    }
}

impl From<HttpKeys> for HttpSection {
    fn from(k: HttpKeys) -> Self {
        let server = longhaul_node::HttpSection {
            listen: k.listen,
            max_connections: k.max_connections,
            header_timeout_secs: k.header_timeout_secs,
        };
        Self {
            server,
            api_token: k.api_token,
        }
    }
}

impl From<HttpSection> for HttpKeys {
    fn from(s: HttpSection) -> Self {
        Self {
            listen: s.server.listen,
            max_connections: s.server.max_connections,
            header_timeout_secs: s.server.header_timeout_secs,
            api_token: s.api_token,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySection {
    /// SQLite database file of entries and tokens.
    pub path: PathBuf,
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

impl OriginConfig {
    /// Checks what serde's types cannot: ranges, finiteness, secrets' length.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.node.validate()?;
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
        self.http.server.validate()?;
        self.ingest.validate()?;
        self.abuse.validate()?;
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
        // The shared sections' own checks are longhaul_node's tests; here, that the
        // origin runs them and its own.
        for (extra, key) in [
            (
                "[ingest]\nmedia_timeout_secs = inf",
                "ingest.media_timeout_secs",
            ),
            ("[http]\nmax_connections = 0", "http.max_connections"),
            ("[http]\napi_token = \"\"", "http.api_token"),
            ("[http]\napi_token = \"short\"", "http.api_token"),
            ("[endpoints]\nrenditions = 0", "endpoints.renditions"),
            ("[abuse]\nban_secs = 0", "abuse.ban_secs"),
        ] {
            let err = config(extra).validate().expect_err(extra);
            assert_eq!(err.key, key, "{extra}: {err}");
        }
    }

    #[test]
    fn http_section_keeps_its_keys_in_one_table() {
        let c = config(
            "[http]\nlisten = \"0.0.0.0:8081\"\napi_token = \"0123456789abcdef\"\nheader_timeout_secs = 5",
        );
        assert_eq!(c.http.server.listen.port(), 8081);
        assert_eq!(c.http.server.header_timeout_secs, 5.0);
        assert_eq!(c.http.api_token.as_deref(), Some("0123456789abcdef"));
        let doc = "[node]\nid = \"t\"\nregion = \"nyc\"\n[registry]\npath = \"r.db\"\n[http]\napi_tokn = \"x\"";
        let err = toml::from_str::<OriginConfig>(doc).expect_err("typo refused");
        assert!(err.to_string().contains("api_tokn"), "{err}");
    }
}
