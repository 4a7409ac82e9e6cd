//! The origin's settings, as read from `config/*.toml` and `LONGHAUL_*` variables.
//!
//! Every section has defaults that make sense for a local node, so a site file holds only
//! what differs. Unknown keys are refused: a typo in a config file is an error that names
//! the key, not a setting silently ignored. The sections every node has (`[node]`,
//! `[rtmp]`, `[rtmps]`, `[ingest]`, `[abuse]`, most of `[http]`) are `longhaul_node`'s; the
//! origin adds the registry (an SQLite file, or a PostgreSQL database every origin shares),
//! how publishes are authorised (`[auth]`: by the registry, or by an HTTP callback to
//! the platform's own service), the endpoints it hands out, and the API token.

use longhaul_endpoint::{EndpointHosts, IngestAddress, Leg, LegHosts, RegionHosts, SpeedTest};
use longhaul_registry::postgres::PostgresSettings;
use longhaul_registry::StoreConfig;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use longhaul_node::config::{
    AbuseSection, IngestSection, InvalidSetting, NodeSection, RtmpSection, RtmpsSection,
    RtspSection,
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
    /// RTSP publishes; off unless `listen` is set.
    #[serde(default)]
    pub rtsp: RtspSection,
    #[serde(default)]
    pub http: HttpSection,
    /// Where entries and tokens are kept. Required unless `[auth]` sends every publish
    /// to a callback.
    #[serde(default)]
    pub registry: Option<RegistrySection>,
    #[serde(default)]
    pub auth: AuthSection,
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
    /// How a rendition's on-air stream picks between its primary and backup legs.
    #[serde(default)]
    pub on_air: OnAirSection,
    /// The other origins this one pulls legs from while it has viewers for them.
    #[serde(default)]
    pub peering: PeeringSection,
}

/// `[peering]`: origin peering (`crate::peering`). Each origin keeps a tunnel to every
/// peer named here and pulls from them the legs it has viewers for but no publish of,
/// so a viewer here gets a rendition's on-air stream from both legs wherever they were
/// published. Off while `peers` is empty. Needs `[tunnel]`: the peers dial this origin's
/// tunnel, and it dials theirs with the same certificate (which must then be issued for
/// `clientAuth` as well as `serverAuth`: `longhaul pki --origin` does both).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeeringSection {
    /// Every other origin (id, region, tunnel address, certificate name). A peer dialing
    /// in is let in only if it is named here, with a certificate valid for its
    /// `server_name`.
    pub peers: Vec<longhaul_tunnel::OriginPeer>,
    /// How long a pull goes on after the rendition's last viewer here left, so a viewer
    /// reloading its page finds the leg's GOP still warm. Default 5000 ms.
    pub linger_ms: u64,
    /// Local UDP address of the endpoint this origin dials its peers from.
    pub bind: SocketAddr,
}

impl Default for PeeringSection {
    fn default() -> Self {
        PeeringSection {
            peers: Vec::new(),
            linger_ms: 5_000,
            bind: ([0, 0, 0, 0], 0).into(),
        }
    }
}

impl PeeringSection {
    pub fn linger(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.linger_ms)
    }

    fn validate(&self, node_id: &str, tunnel_on: bool) -> Result<(), InvalidSetting> {
        if self.peers.is_empty() {
            return Ok(());
        }
        if !tunnel_on {
            return Err(InvalidSetting {
                key: "peering.peers",
                reason: "origin peering needs [tunnel]: peers dial this origin's tunnel, and it dials theirs with its certificate".into(),
            });
        }
        if self.linger_ms > 600_000 {
            return Err(InvalidSetting {
                key: "peering.linger_ms",
                reason: format!("{} is over 600000 (ten minutes)", self.linger_ms),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for peer in &self.peers {
            let bad = |reason: String| InvalidSetting {
                key: "peering.peers",
                reason,
            };
            longhaul_tunnel::check_node_names(&peer.id, &peer.region)
                .map_err(|r| bad(format!("peer {:?}: {r}", peer.id)))?;
            if peer.id == node_id {
                return Err(bad(format!("{:?} is this origin itself", peer.id)));
            }
            if !seen.insert(peer.id.as_str()) {
                return Err(bad(format!("{:?} is named twice", peer.id)));
            }
            if !peer
                .addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return Err(bad(format!(
                    "peer {:?}: addr {:?} is not host:port",
                    peer.id, peer.addr
                )));
            }
            if peer.server_name.is_empty() {
                return Err(bad(format!("peer {:?}: server_name is empty", peer.id)));
            }
        }
        Ok(())
    }
}

/// `[on_air]`: the rules of a rendition's one continuous stream (`longhaul_hub`'s
/// renditions): the primary leg while it is healthy, the backup while it is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OnAirSection {
    /// The leg on air is replaced after this many milliseconds without media. Default
    /// [`longhaul_hub::DEFAULT_SILENCE`] (500 ms).
    pub silence_ms: u64,
    /// A recovered primary goes back on air after this many milliseconds healthy, at a
    /// keyframe. Default [`longhaul_hub::DEFAULT_FAILBACK_AFTER`] (10 s).
    pub failback_after_ms: u64,
}

impl Default for OnAirSection {
    fn default() -> Self {
        OnAirSection {
            silence_ms: longhaul_hub::DEFAULT_SILENCE.as_millis() as u64,
            failback_after_ms: longhaul_hub::DEFAULT_FAILBACK_AFTER.as_millis() as u64,
        }
    }
}

impl OnAirSection {
    /// The shortest silence limit: 100 ms, two and a half frames at 25 fps; below it a
    /// jittery path would switch legs back and forth.
    pub const MIN_SILENCE_MS: u64 = 100;

    pub fn settings(&self) -> longhaul_hub::OnAirSettings {
        longhaul_hub::OnAirSettings {
            silence: std::time::Duration::from_millis(self.silence_ms),
            failback_after: std::time::Duration::from_millis(self.failback_after_ms),
        }
    }

    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if !(Self::MIN_SILENCE_MS..=60_000).contains(&self.silence_ms) {
            return Err(InvalidSetting {
                key: "on_air.silence_ms",
                reason: format!(
                    "{} is not in {}..=60000",
                    self.silence_ms,
                    Self::MIN_SILENCE_MS
                ),
            });
        }
        if self.failback_after_ms > 3_600_000 {
            return Err(InvalidSetting {
                key: "on_air.failback_after_ms",
                reason: format!("{} is over 3600000 (an hour)", self.failback_after_ms),
            });
        }
        Ok(())
    }
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

/// Where entries and tokens are kept: an SQLite file (`path`: one host, `longhaul dev`)
/// or a PostgreSQL database (`url`: origins in different data centres share it).
///
/// ```toml
/// [registry]
/// url = "postgres://longhaul@db.internal:5432/longhaul"
/// password_file = "/etc/longhaul/registry-password"   # or password_env = "PGPASSWORD"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySection {
    /// SQLite database file of entries and tokens (created if missing; its directory
    /// must exist).
    pub path: Option<PathBuf>,
    /// PostgreSQL URL, `postgres://user@host:port/database`, without a password.
    pub url: Option<String>,
    /// File holding the PostgreSQL password (one line; trailing whitespace ignored).
    /// Keep it readable by the node's user only.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the PostgreSQL password.
    pub password_env: Option<String>,
    /// The CA (PEM) that signed the PostgreSQL server's certificate. With it,
    /// connections use TLS and check the server; a database on another host needs it
    /// (or `?sslmode=disable` in the URL, on a private network you trust).
    pub tls_ca: Option<PathBuf>,
    /// A file where the origin keeps its last copy of the entries (mode 600: it holds
    /// the tokens), so that it can start, deciding publishes from that copy, while the
    /// database is unreachable. Without it, an origin needs the database to start.
    pub cache: Option<PathBuf>,
    /// Seconds between this origin's refreshes of the streams live on it in the
    /// registry (they are written at once when a publish starts or ends too); the other
    /// origins stop naming them 3 of these after the last, if this origin dies.
    /// Default [`RegistrySection::DEFAULT_PRESENCE_HEARTBEAT_SECS`].
    pub presence_heartbeat_secs: Option<u64>,
}

impl RegistrySection {
    /// 10 s: a crashed origin's streams stop being named within 30 s (3 heartbeats, so
    /// one late or lost write does not make a live stream vanish), for one small write
    /// per origin every 10 s.
    pub const DEFAULT_PRESENCE_HEARTBEAT_SECS: u64 = 10;
    /// Longest heartbeat: 10 minutes. Beyond it a crashed origin is named for too long.
    pub const MAX_PRESENCE_HEARTBEAT_SECS: u64 = 600;

    /// `presence_heartbeat_secs`, or its default.
    pub fn presence_heartbeat(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.presence_heartbeat_secs
                .unwrap_or(Self::DEFAULT_PRESENCE_HEARTBEAT_SECS),
        )
    }

    /// Checks that exactly one store is named and the password comes from one place.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        let invalid = |key, reason: &str| InvalidSetting {
            key,
            reason: reason.into(),
        };
        if let Some(secs) = self.presence_heartbeat_secs {
            if !(1..=Self::MAX_PRESENCE_HEARTBEAT_SECS).contains(&secs) {
                return Err(InvalidSetting {
                    key: "registry.presence_heartbeat_secs",
                    reason: format!("{secs} is not in 1..={}", Self::MAX_PRESENCE_HEARTBEAT_SECS),
                });
            }
        }
        match (&self.path, &self.url) {
            (None, None) => Err(invalid(
                "registry",
                "names no store: set registry.path (an SQLite file) or registry.url (PostgreSQL)",
            )),
            (Some(_), Some(_)) => Err(invalid(
                "registry",
                "names two stores: set registry.path (SQLite) or registry.url (PostgreSQL), not both",
            )),
            (Some(_), None) if self.tls_ca.is_some() => Err(invalid(
                "registry.tls_ca",
                "TLS is for registry.url (PostgreSQL); an SQLite file is local",
            )),
            (Some(_), None) if self.password_file.is_some() || self.password_env.is_some() => {
                Err(invalid(
                    "registry.password_file",
                    "a password is for registry.url (PostgreSQL); an SQLite file has none",
                ))
            }
            (None, Some(_)) if self.password_file.is_some() && self.password_env.is_some() => {
                Err(invalid(
                    "registry.password_env",
                    "set registry.password_file or registry.password_env, not both",
                ))
            }
            _ => Ok(()),
        }
    }

    /// The store to open, with the password read from its file or variable.
    /// `node` names the connections in PostgreSQL's `pg_stat_activity`.
    pub fn store_config(&self, node: &str) -> Result<StoreConfig, InvalidSetting> {
        self.validate()?;
        if let Some(path) = &self.path {
            return Ok(StoreConfig::Sqlite(path.clone()));
        }
        let url = self.url.clone().unwrap_or_default();
        let password = match (&self.password_file, &self.password_env) {
            (Some(file), _) => Some(
                std::fs::read_to_string(file)
                    .map(|p| p.trim_end().to_string())
                    .map_err(|e| InvalidSetting {
                        key: "registry.password_file",
                        reason: format!("cannot read {}: {e}", file.display()),
                    })?,
            ),
            (None, Some(var)) => Some(std::env::var(var).map_err(|_| InvalidSetting {
                key: "registry.password_env",
                reason: format!("the environment variable {var} is not set (or not UTF-8)"),
            })?),
            (None, None) => None,
        };
        let settings = PostgresSettings {
            url,
            password,
            application_name: format!("longhaul {node}"),
            tls_ca: self.tls_ca.clone(),
        };
        // Refuses a password written into the URL, a URL that does not parse, and a
        // remote database without TLS.
        settings.config().map_err(|e| InvalidSetting {
            key: if e.to_string().contains("registry.tls_ca") && self.tls_ca.is_some() {
                "registry.tls_ca"
            } else {
                "registry.url"
            },
            reason: e.to_string(),
        })?;
        Ok(StoreConfig::Postgres(settings))
    }
}

/// How publishes are authorised.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSection {
    pub mode: AuthMode,
    /// The callback, for `mode = "callback"`.
    pub callback: Option<CallbackSection>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// The token is checked against the entries registry.
    #[default]
    Registry,
    /// The origin asks the platform's own service over HTTP (see [`crate::callback`]).
    Callback,
}

/// The HTTP authorisation callback (see [`crate::callback`] for the request and reply).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackSection {
    /// Where to POST each publish, `http://host:port/path`.
    pub url: String,
    /// Milliseconds one call may take before it counts as failed.
    #[serde(default = "CallbackSection::default_timeout_ms")]
    pub timeout_ms: u64,
    /// Further attempts after a call that failed (no answer, or a 5xx); a refusal (4xx)
    /// is never retried.
    #[serde(default = "CallbackSection::default_retries")]
    pub retries: u32,
    /// Seconds an allowed answer is reused for the same entry, rendition, leg, token
    /// and client address; 0 asks every time.
    #[serde(default = "CallbackSection::default_cache_secs")]
    pub cache_secs: u64,
    /// Seconds a refusal is reused (short: a token just created on the platform should
    /// soon work; long enough that a reconnect loop does not call for every attempt).
    #[serde(default = "CallbackSection::default_refusal_cache_secs")]
    pub refusal_cache_secs: u64,
    /// Environment variable holding a bearer token sent with each call, so the service
    /// can tell the callback is ours.
    pub bearer_env: Option<String>,
}

impl CallbackSection {
    /// 2 s: the platform's service answers in milliseconds; a publish must not hang on
    /// one that does not (encoders give up on a publish after about 10 s).
    fn default_timeout_ms() -> u64 {
        2000
    }
    /// One retry rides out a dropped connection or a restarting instance; more would
    /// keep an encoder waiting past its own timeout.
    fn default_retries() -> u32 {
        1
    }
    /// 30 s: an encoder reconnecting in a loop costs one call per half-minute, and a
    /// revoked entry is cut at once anyway by the revoke API, which clears the cache.
    fn default_cache_secs() -> u64 {
        30
    }
    fn default_refusal_cache_secs() -> u64 {
        5
    }

    /// Longest `timeout_ms`: beyond 10 s the encoder has given up waiting.
    pub const MAX_TIMEOUT_MS: u64 = 10_000;
    /// Most `retries`: (retries + 1) x timeout must stay within an encoder's patience.
    pub const MAX_RETRIES: u32 = 3;
    /// Longest cache: a day. Beyond that an answer is stale by any measure.
    pub const MAX_CACHE_SECS: u64 = 86_400;
}

/// The endpoints this node hands out with every entry: the data centres' (primary and
/// backup leg, RTMP and RTMPS, and RTSP and RTSPS where set), each region's, and the
/// speed tests.
///
/// ```toml
/// [endpoints]
/// host = "kpublish.example.com"   # {entryId}.p.kpublish.example.com, {entryId}.b....
/// rtmp_port = 1935
/// rtmps_port = 443
/// rtsp_port = 554                 # rtsp://{entryId}.p.s.kpublish.example.com:554/kLive/{entryId}_1?t=...
/// rtsps_port = 322
/// leg_subdomains = true
/// renditions = 3
/// speed_tests = [{ region = "nyc", name = "US (New York)", url = "http://ny-speedtest.example.com" }]
///
/// [[endpoints.regions]]
/// region = "fra"
/// name = "EMEA (Frankfurt)"
/// host = "fra.kpublish.example.com" # {entryId}.p.fra.kpublish.example.com
/// speed_test = "http://fr-speedtest.example.com"
/// ```
///
/// Without leg subdomains (no wildcard DNS; `longhaul dev`), `host` and the ports are the
/// primary leg's and `[endpoints.backup]` the backup leg's (the same as the primary's
/// when absent); a region likewise, with its own `backup`. The leg then goes in `i=0|1`.
///
/// RTSP is listed only where `rtsp_port` is set (off by default, here and for each
/// region): point it at where the place's nodes take RTSP publishes (`[rtsp] listen`, or a
/// balancer in front). `rtsps_port` adds RTSPS and needs `rtsp_port`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointsSection {
    /// Host encoders publish to (`kpublish.example.com`, or `127.0.0.1` in dev); without
    /// leg subdomains, the primary leg's.
    pub host: String,
    /// The RTMP port encoders publish to (1935 in production).
    pub rtmp_port: u16,
    /// The RTMPS port (443 in production).
    pub rtmps_port: u16,
    /// The RTSP port devices publish to (554 in production); unset, no RTSP is listed.
    /// With leg subdomains the URLs are `rtsp://{entryId}.{p|b}.s.{host}:{port}/...`.
    pub rtsp_port: Option<u16>,
    /// The RTSPS port (322 in production); unset, no RTSPS is listed. Needs `rtsp_port`.
    pub rtsps_port: Option<u16>,
    /// Put entry and leg in the host name (`{entryId}.p.{host}`), as production DNS
    /// allows; off for hosts without wildcard DNS (dev), where the leg goes in `i=0|1`.
    /// The same for every region.
    pub leg_subdomains: bool,
    /// Renditions listed per entry (`{entryId}_1` ... `{entryId}_N`).
    pub renditions: u32,
    /// Where players reach this origin over RTMP, `rtmp://host[:port]/kLive` (or
    /// `rtmps://`): what another origin names to a player asking it for a stream live
    /// here. Default: from `rtmp.listen` when that is a specific address (dev:
    /// `rtmp://127.0.0.1:1935/kLive`); none when it listens on every address.
    pub play_rtmp: Option<String>,
    /// The same for HTTP-FLV, `http(s)://host[:port]/live`. Default: from `http.listen`
    /// when that is a specific address (dev: `http://127.0.0.1:8081/live`).
    pub play_http_flv: Option<String>,
    /// The backup leg's own host and ports, without leg subdomains (dev: origin pao).
    pub backup: Option<LegAddress>,
    /// Speed tests of the data centres, listed with every entry.
    pub speed_tests: Vec<SpeedTestSection>,
    /// The regional endpoints (edges near encoders far from the data centres), in the
    /// order entries list them.
    pub regions: Vec<RegionEndpoint>,
}

impl Default for EndpointsSection {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            rtmp_port: 1935,
            rtmps_port: 1936,
            rtsp_port: None,
            rtsps_port: None,
            leg_subdomains: false,
            renditions: 3,
            play_rtmp: None,
            play_http_flv: None,
            backup: None,
            speed_tests: Vec::new(),
            regions: Vec::new(),
        }
    }
}

/// Longest play base URL: room for any host name (253) and a path.
pub const MAX_PLAY_URL_LEN: usize = 512;

impl EndpointsSection {
    fn validate_play_urls(&self) -> Result<(), InvalidSetting> {
        let checks: [(&'static str, &Option<String>, &[&str]); 2] = [
            ("endpoints.play_rtmp", &self.play_rtmp, &["rtmp", "rtmps"]),
            (
                "endpoints.play_http_flv",
                &self.play_http_flv,
                &["http", "https"],
            ),
        ];
        for (key, value, schemes) in checks {
            let Some(value) = value else { continue };
            let invalid = |why: &str| InvalidSetting {
                key,
                reason: format!("{value:?} {why}"),
            };
            if value.len() > MAX_PLAY_URL_LEN {
                return Err(invalid(&format!("is longer than {MAX_PLAY_URL_LEN} bytes")));
            }
            let uri: hyper::Uri = value
                .parse()
                .map_err(|e| invalid(&format!("is not a URL: {e}")))?;
            let wanted = schemes.join("://host[:port]/path or ");
            if !uri.scheme_str().is_some_and(|s| schemes.contains(&s))
                || uri.host().is_none_or(str::is_empty)
                || uri.query().is_some()
                || uri.authority().is_some_and(|a| a.as_str().contains('@'))
            {
                return Err(invalid(&format!(
                    "is not a {wanted}://host[:port]/path URL without credentials or query"
                )));
            }
        }
        Ok(())
    }
}

/// One leg's own host and ports (`[endpoints.backup]`, a region's `backup`). A port left
/// out is the primary leg's, so the backup leg offers RTSP exactly when the primary does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegAddress {
    /// The leg's host name or address.
    pub host: String,
    /// Its RTMP port; the primary leg's when left out.
    #[serde(default)]
    pub rtmp_port: Option<u16>,
    /// Its RTMPS port; the primary leg's when left out.
    #[serde(default)]
    pub rtmps_port: Option<u16>,
    /// Its RTSP port; the primary leg's when left out (and, like it, unset: no RTSP).
    #[serde(default)]
    pub rtsp_port: Option<u16>,
    /// Its RTSPS port; the primary leg's when left out.
    #[serde(default)]
    pub rtsps_port: Option<u16>,
}

/// A data centre's speed test (`[endpoints] speed_tests`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedTestSection {
    /// The data centre's region code, as its origins' `node.region` (`nyc`).
    pub region: String,
    /// What operators read, `US (New York)`.
    pub name: String,
    /// The page, `http://` or `https://`.
    pub url: String,
}

/// A regional endpoint (`[[endpoints.regions]]`): where encoders near it publish, an
/// edge that relays both legs to the origins.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionEndpoint {
    /// The region code, as its edges' `node.region` (`fra`).
    pub region: String,
    /// What operators read, `EMEA (Frankfurt)`.
    pub name: String,
    /// With leg subdomains, the name under which `{entryId}.{p|b}.` go
    /// (`fra.kpublish.example.com`); without, the primary leg's host.
    pub host: String,
    /// 1935 unless said.
    #[serde(default = "RegionEndpoint::default_rtmp_port")]
    pub rtmp_port: u16,
    /// 443 unless said, the product's RTMPS port.
    #[serde(default = "RegionEndpoint::default_rtmps_port")]
    pub rtmps_port: u16,
    /// The region's RTSP port; unset (the default: edges take no RTSP yet), no RTSP is
    /// listed for it.
    #[serde(default)]
    pub rtsp_port: Option<u16>,
    /// The region's RTSPS port; unset, no RTSPS. Needs `rtsp_port`.
    #[serde(default)]
    pub rtsps_port: Option<u16>,
    /// The backup leg's own host and ports, without leg subdomains; absent, the backup
    /// leg is the primary's host and ports with `i=1`.
    #[serde(default)]
    pub backup: Option<LegAddress>,
    /// This region's speed test page.
    #[serde(default)]
    pub speed_test: Option<String>,
}

impl RegionEndpoint {
    fn default_rtmp_port() -> u16 {
        1935
    }
    fn default_rtmps_port() -> u16 {
        443
    }
}

impl Default for RegionEndpoint {
    fn default() -> Self {
        Self {
            region: String::new(),
            name: String::new(),
            host: String::new(),
            rtmp_port: Self::default_rtmp_port(),
            rtmps_port: Self::default_rtmps_port(),
            rtsp_port: None,
            rtsps_port: None,
            backup: None,
            speed_test: None,
        }
    }
}

/// Longest display name of a region or data centre: one line of a table.
pub const MAX_PLACE_NAME_LEN: usize = 64;

impl EndpointsSection {
    /// What [`longhaul_endpoint::entry_endpoints`] needs, from these settings.
    pub fn hosts(&self) -> EndpointHosts {
        EndpointHosts {
            app: longhaul_endpoint::APPLICATION.to_string(),
            origins: leg_hosts(
                self.leg_subdomains,
                &self.host,
                Ports {
                    rtmp: self.rtmp_port,
                    rtmps: self.rtmps_port,
                    rtsp: self.rtsp_port,
                    rtsps: self.rtsps_port,
                },
                self.backup.as_ref(),
            ),
            speed_tests: self
                .speed_tests
                .iter()
                .map(|t| SpeedTest {
                    region: t.region.clone(),
                    name: t.name.clone(),
                    url: t.url.clone(),
                })
                .collect(),
            regions: self
                .regions
                .iter()
                .map(|r| RegionHosts {
                    region: r.region.clone(),
                    name: r.name.clone(),
                    legs: leg_hosts(
                        self.leg_subdomains,
                        &r.host,
                        Ports {
                            rtmp: r.rtmp_port,
                            rtmps: r.rtmps_port,
                            rtsp: r.rtsp_port,
                            rtsps: r.rtsps_port,
                        },
                        r.backup.as_ref(),
                    ),
                    speed_test: r.speed_test.clone(),
                })
                .collect(),
        }
    }

    /// Checks the hosts, ports, names and URLs; a region's problem is named with its code.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if self.renditions == 0 || self.renditions > longhaul_endpoint::MAX_RENDITION {
            return Err(InvalidSetting {
                key: "endpoints.renditions",
                reason: format!(
                    "{} is not in 1..={}",
                    self.renditions,
                    longhaul_endpoint::MAX_RENDITION
                ),
            });
        }
        let invalid = |key, reason: String| InvalidSetting { key, reason };
        if self.leg_subdomains && self.backup.is_some() {
            return Err(invalid(
                "endpoints.backup",
                "with leg_subdomains, DNS routes {entryId}.b.{host} to the backup data centre; set leg_subdomains = false to give the backup leg its own host"
                    .into(),
            ));
        }
        let hosts = self.hosts();
        hosts.origins.check().map_err(|e| {
            let key = match (e.leg, e.field) {
                (Some(Leg::Backup), _) => "endpoints.backup",
                (_, "rtmp_port") => "endpoints.rtmp_port",
                (_, "rtmps_port") => "endpoints.rtmps_port",
                (_, "rtsp_port") => "endpoints.rtsp_port",
                (_, "rtsps_port") => "endpoints.rtsps_port",
                _ => "endpoints.host",
            };
            invalid(key, e.to_string())
        })?;
        for (i, t) in self.speed_tests.iter().enumerate() {
            check_place(&t.region, &t.name)
                .and_then(|()| check_speed_test(&t.url))
                .map_err(|e| invalid("endpoints.speed_tests", format!("entry {}: {e}", i + 1)))?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for (region, legs) in self.regions.iter().zip(&hosts.regions) {
            let named = |e: String| {
                invalid(
                    "endpoints.regions",
                    format!("region {:?}: {e}", region.region),
                )
            };
            check_place(&region.region, &region.name).map_err(named)?;
            if !seen.insert(region.region.as_str()) {
                return Err(named("is listed twice".into()));
            }
            if self.leg_subdomains && region.backup.is_some() {
                return Err(named(
                    "has a backup host, but with leg_subdomains DNS routes {entryId}.b.{host}; set leg_subdomains = false to give legs their own hosts"
                        .into(),
                ));
            }
            legs.legs.check().map_err(|e| named(e.to_string()))?;
            if let Some(url) = &region.speed_test {
                check_speed_test(url).map_err(named)?;
            }
        }
        Ok(())
    }
}

/// A place's configured ports: RTMP and RTMPS always, RTSP and RTSPS where set.
#[derive(Debug, Clone, Copy)]
struct Ports {
    rtmp: u16,
    rtmps: u16,
    rtsp: Option<u16>,
    rtsps: Option<u16>,
}

/// A place's legs from its settings: `{entryId}.{p|b}.{host}`, or the primary's host and
/// ports and the backup's (each defaulting to the primary's).
fn leg_hosts(subdomains: bool, host: &str, ports: Ports, backup: Option<&LegAddress>) -> LegHosts {
    let primary = IngestAddress {
        rtsp_port: ports.rtsp,
        rtsps_port: ports.rtsps,
        ..IngestAddress::rtmp(host, ports.rtmp, ports.rtmps)
    };
    match (subdomains, backup) {
        (true, _) => LegHosts::Subdomains(primary),
        (false, None) => LegHosts::shared(primary),
        (false, Some(b)) => LegHosts::PerLeg {
            backup: IngestAddress {
                rtsp_port: b.rtsp_port.or(ports.rtsp),
                rtsps_port: b.rtsps_port.or(ports.rtsps),
                ..IngestAddress::rtmp(
                    &b.host,
                    b.rtmp_port.unwrap_or(ports.rtmp),
                    b.rtmps_port.unwrap_or(ports.rtmps),
                )
            },
            primary,
        },
    }
}

/// A region code by the rule node regions follow (`node.region`, tunnel hellos), and a
/// display name that fits a table line.
fn check_place(region: &str, name: &str) -> Result<(), String> {
    // The rule checks a node id and a region; "region" stands in for a valid id.
    longhaul_tunnel::check_node_names("region", region)?;
    if name.trim().is_empty()
        || name.chars().count() > MAX_PLACE_NAME_LEN
        || name.chars().any(char::is_control)
    {
        return Err(format!(
            "name {name:?} is not one line of 1 to {MAX_PLACE_NAME_LEN} characters \
             (e.g. \"EMEA (Frankfurt)\")"
        ));
    }
    Ok(())
}

/// A speed test is a page operators open: an absolute `http` or `https` URL.
fn check_speed_test(url: &str) -> Result<(), String> {
    let parsed: Option<hyper::Uri> = url.parse().ok();
    let ok = parsed.as_ref().is_some_and(|u| {
        matches!(u.scheme_str(), Some("http" | "https"))
            && u.host().is_some_and(|h| !h.is_empty())
            && !u.authority().is_some_and(|a| a.as_str().contains('@'))
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "speed test {url:?} is not an http:// or https:// URL with a host (and no credentials)"
        ))
    }
}

/// Shortest `http.api_token` accepted: 16 characters of a random secret are 80+ bits.
pub const MIN_API_TOKEN_LEN: usize = 16;

impl OriginConfig {
    /// Checks what serde's types cannot: ranges, finiteness, secrets' length.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.node.validate()?;
        longhaul_tunnel::check_node_names(&self.node.id, &self.node.region).map_err(|reason| {
            InvalidSetting {
                key: "node",
                reason,
            }
        })?;
        match (&self.registry, self.auth.mode) {
            (Some(r), _) => r.validate()?,
            (None, AuthMode::Registry) => {
                return Err(InvalidSetting {
                    key: "registry",
                    reason: "is missing: set registry.path (an SQLite file) or registry.url \
                             (PostgreSQL), or authorise publishes by callback ([auth] mode = \"callback\")"
                        .into(),
                })
            }
            (None, AuthMode::Callback) => {}
        }
        self.validate_auth()?;
        if let Some(t) = &self.tunnel {
            t.validate().map_err(|e| InvalidSetting {
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
        self.on_air.validate()?;
        self.peering
            .validate(&self.node.id, self.tunnel.is_some())?;
        self.endpoints.validate()?;
        self.endpoints.validate_play_urls()
    }
}

impl OriginConfig {
    fn validate_auth(&self) -> Result<(), InvalidSetting> {
        let callback = match (self.auth.mode, &self.auth.callback) {
            (AuthMode::Registry, _) => return Ok(()),
            (AuthMode::Callback, None) => {
                return Err(InvalidSetting {
                    key: "auth.callback",
                    reason: "mode = \"callback\" needs [auth.callback] with its url".into(),
                })
            }
            (AuthMode::Callback, Some(c)) => c,
        };
        let url: hyper::Uri = callback.url.parse().map_err(|e| InvalidSetting {
            key: "auth.callback.url",
            reason: format!("{:?} is not a URL: {e}", callback.url),
        })?;
        if url.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(InvalidSetting {
                key: "auth.callback.url",
                reason: "holds credentials (user@ or user:password@): they would reach the logs; \
                         send a bearer token with auth.callback.bearer_env instead"
                    .into(),
            });
        }
        if url.scheme_str() != Some("http") || url.host().is_none() {
            return Err(InvalidSetting {
                key: "auth.callback.url",
                reason: format!(
                    "{:?} is not an http://host[:port]/path URL (for https, put a local proxy in front)",
                    callback.url
                ),
            });
        }
        let checks: [(&'static str, u64, u64); 4] = [
            (
                "auth.callback.timeout_ms",
                callback.timeout_ms,
                CallbackSection::MAX_TIMEOUT_MS,
            ),
            (
                "auth.callback.retries",
                u64::from(callback.retries),
                u64::from(CallbackSection::MAX_RETRIES),
            ),
            (
                "auth.callback.cache_secs",
                callback.cache_secs,
                CallbackSection::MAX_CACHE_SECS,
            ),
            (
                "auth.callback.refusal_cache_secs",
                callback.refusal_cache_secs,
                CallbackSection::MAX_CACHE_SECS,
            ),
        ];
        for (key, value, max) in checks {
            let min = u64::from(key == "auth.callback.timeout_ms");
            if !(min..=max).contains(&value) {
                return Err(InvalidSetting {
                    key,
                    reason: format!("{value} is not in {min}..={max}"),
                });
            }
        }
        if let Some(var) = &callback.bearer_env {
            if std::env::var(var).is_err() {
                return Err(InvalidSetting {
                    key: "auth.callback.bearer_env",
                    reason: format!("the environment variable {var} is not set (or not UTF-8)"),
                });
            }
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
            ("[endpoints]\nrtmp_port = 0", "endpoints.rtmp_port"),
            ("[endpoints]\nrtmps_port = 0", "endpoints.rtmps_port"),
            ("[endpoints]\nrtsp_port = 0", "endpoints.rtsp_port"),
            // RTSPS is listed beside RTSP, not alone.
            ("[endpoints]\nrtsps_port = 322", "endpoints.rtsps_port"),
            (
                "[endpoints.backup]\nhost = \"127.0.0.1\"\nrtsp_port = 2554",
                "endpoints.rtsp_port",
            ),
            (
                "[[endpoints.regions]]\nregion = \"fra\"\nname = \"EMEA\"\nhost = \"127.0.0.1\"\nrtsps_port = 3322",
                "endpoints.regions",
            ),
            ("[endpoints]\nhost = \"pub lish\"", "endpoints.host"),
            // An address has no subdomains.
            ("[endpoints]\nleg_subdomains = true", "endpoints.host"),
            (
                "[endpoints]\nhost = \"kpublish.example.com\"\nleg_subdomains = true\n[endpoints.backup]\nhost = \"b.example.com\"",
                "endpoints.backup",
            ),
            (
                "[endpoints.backup]\nhost = \"127.0.0.1\"\nrtmp_port = 0",
                "endpoints.backup",
            ),
            (
                "[endpoints]\nspeed_tests = [{ region = \"nyc\", name = \"US\", url = \"ftp://x\" }]",
                "endpoints.speed_tests",
            ),
            (
                "[endpoints]\nspeed_tests = [{ region = \"NYC\", name = \"US\", url = \"http://x\" }]",
                "endpoints.speed_tests",
            ),
            ("[abuse]\nban_secs = 0", "abuse.ban_secs"),
            (
                "[endpoints]\nplay_rtmp = \"http://h/kLive\"",
                "endpoints.play_rtmp",
            ),
            (
                "[endpoints]\nplay_rtmp = \"rtmp:///kLive\"",
                "endpoints.play_rtmp",
            ),
            (
                "[endpoints]\nplay_rtmp = \"rtmp://u:p@h/kLive\"",
                "endpoints.play_rtmp",
            ),
            (
                "[endpoints]\nplay_http_flv = \"rtmp://h/live\"",
                "endpoints.play_http_flv",
            ),
            (
                "[endpoints]\nplay_http_flv = \"https://h/live?x=1\"",
                "endpoints.play_http_flv",
            ),
            (
                "[endpoints]\nplay_http_flv = \"not a url\"",
                "endpoints.play_http_flv",
            ),
        ] {
            let err = config(extra).validate().expect_err(extra);
            assert_eq!(err.key, key, "{extra}: {err}");
        }
        let good = config(
            "[endpoints]\nplay_rtmp = \"rtmps://play-nyc.example.com/kLive\"\n\
             play_http_flv = \"https://play-nyc.example.com:8443/live\"",
        );
        good.validate().expect("good play URLs");
        for (secs, ok) in [(0, false), (1, true), (600, true), (601, false)] {
            let c = bare(&format!(
                "[registry]\npath = \"r.db\"\npresence_heartbeat_secs = {secs}"
            ));
            match c.validate() {
                Ok(()) => assert!(ok, "{secs}"),
                Err(e) => {
                    assert!(!ok, "{secs}: {e}");
                    assert_eq!(e.key, "registry.presence_heartbeat_secs");
                }
            }
        }
    }

    #[test]
    fn regions_are_checked_and_named_by_code() {
        let region = |extra: &str| {
            config(&format!(
                "[[endpoints.regions]]\nregion = \"fra\"\nname = \"EMEA (Frankfurt)\"\nhost = \"127.0.0.1\"\n{extra}"
            ))
            .validate()
        };
        region("").expect("valid");
        region("rtmp_port = 3935\nrtmps_port = 3936\nspeed_test = \"https://fr.example.com/t\"")
            .expect("valid");
        for (extra, words) in [
            ("rtmp_port = 0", "region \"fra\": primary rtmp_port is 0"),
            ("[endpoints.regions.backup]\nhost = \"\"", "backup host"),
            ("speed_test = \"fr.example.com\"", "speed test"),
            ("speed_test = \"http://u:pw@fr.example.com\"", "credentials"),
            (
                "[[endpoints.regions]]\nregion = \"fra\"\nname = \"again\"\nhost = \"127.0.0.1\"",
                "listed twice",
            ),
            (
                "[[endpoints.regions]]\nregion = \"São\"\nname = \"x\"\nhost = \"127.0.0.1\"",
                "short lowercase name",
            ),
            (
                "[[endpoints.regions]]\nregion = \"gru\"\nname = \"\"\nhost = \"127.0.0.1\"",
                "name \"\"",
            ),
        ] {
            let err = region(extra).expect_err(extra);
            assert_eq!(err.key, "endpoints.regions", "{extra}: {err}");
            assert!(err.reason.contains(words), "{extra}: {err}");
        }
        let subdomains = config(
            "[endpoints]\nhost = \"kpublish.example.com\"\nleg_subdomains = true\n\
             [[endpoints.regions]]\nregion = \"fra\"\nname = \"EMEA\"\nhost = \"fra.kpublish.example.com\"\n\
             [endpoints.regions.backup]\nhost = \"b.example.com\"",
        );
        let err = subdomains.validate().expect_err("backup under subdomains");
        assert!(err.reason.contains("leg_subdomains"), "{err}");
    }

    /// The endpoints `longhaul dev` hands out, built in Rust as it can build them, equal
    /// to the same settings written in TOML, and the URLs they give.
    #[test]
    fn endpoints_are_constructible_from_rust_and_toml_alike() {
        let region = |code: &str, name: &str, rtmp_port: u16| RegionEndpoint {
            region: code.into(),
            name: name.into(),
            host: "127.0.0.1".into(),
            rtmp_port,
            rtmps_port: rtmp_port + 1,
            ..RegionEndpoint::default()
        };
        let built = EndpointsSection {
            host: "127.0.0.1".into(),
            rtmp_port: 1935,
            rtmps_port: 1936,
            leg_subdomains: false,
            renditions: 3,
            rtsp_port: Some(1554),
            rtsps_port: None,
            backup: Some(LegAddress {
                host: "127.0.0.1".into(),
                rtmp_port: Some(2935),
                rtmps_port: Some(2936),
                rtsp_port: Some(2554),
                rtsps_port: None,
            }),
            play_rtmp: None,
            play_http_flv: None,
            speed_tests: vec![],
            regions: vec![
                region("fra", "EMEA (Frankfurt)", 3935),
                region("gru", "LATAM (Sao Paulo)", 4935),
                region("sin", "APAC (Singapore)", 5935),
            ],
        };
        built.validate().expect("valid");
        let written = config(
            r#"
            [endpoints]
            host = "127.0.0.1"
            rtmp_port = 1935
            rtmps_port = 1936
            rtsp_port = 1554
            backup = { host = "127.0.0.1", rtmp_port = 2935, rtmps_port = 2936, rtsp_port = 2554 }
            regions = [
              { region = "fra", name = "EMEA (Frankfurt)", host = "127.0.0.1", rtmp_port = 3935, rtmps_port = 3936 },
              { region = "gru", name = "LATAM (Sao Paulo)", host = "127.0.0.1", rtmp_port = 4935, rtmps_port = 4936 },
              { region = "sin", name = "APAC (Singapore)", host = "127.0.0.1", rtmp_port = 5935, rtmps_port = 5936 },
            ]
            "#,
        );
        assert_eq!(written.endpoints.hosts(), built.hosts());
        let e = longhaul_endpoint::entry_endpoints("1_abcd1234", "tok", &built.hosts(), 3);
        assert_eq!(
            e.origins.primary_rtmp,
            "rtmp://127.0.0.1:1935/kLive/?t=tok&i=0"
        );
        assert_eq!(
            e.origins.backup_rtmp,
            "rtmp://127.0.0.1:2935/kLive/?t=tok&i=1"
        );
        assert_eq!(
            e.origins.backup_rtmps,
            "rtmps://127.0.0.1:2936/kLive/?t=tok&i=1"
        );
        assert_eq!(
            e.regions[1].urls.primary_rtmp,
            "rtmp://127.0.0.1:4935/kLive/?t=tok&i=0"
        );
        assert_eq!(
            e.regions[1].urls.backup_rtmp,
            "rtmp://127.0.0.1:4935/kLive/?t=tok&i=1"
        );
        // A backup port left out is the primary's.
        let partial = config("[endpoints.backup]\nhost = \"::1\"\nrtmp_port = 2935");
        let e =
            longhaul_endpoint::entry_endpoints("1_abcd1234", "t", &partial.endpoints.hosts(), 1);
        assert_eq!(e.origins.backup_rtmp, "rtmp://[::1]:2935/kLive/?t=t&i=1");
        assert_eq!(e.origins.backup_rtmps, "rtmps://[::1]:1936/kLive/?t=t&i=1");
        assert!(e.rtsp.is_empty(), "no rtsp_port, no RTSP");
    }

    #[test]
    fn rtsp_is_listed_where_its_port_is_set() {
        let e = |c: &OriginConfig| {
            longhaul_endpoint::entry_endpoints("1_abcd1234", "t", &c.endpoints.hosts(), 2)
        };
        // Off unless set: the shipped default, and regions.
        let none = config(
            "[[endpoints.regions]]\nregion = \"fra\"\nname = \"EMEA\"\nhost = \"127.0.0.1\"",
        );
        none.validate().expect("valid");
        assert!(e(&none).rtsp.is_empty() && e(&none).regions[0].rtsp.is_empty());

        // Production's form: leg subdomains, 554 and 322.
        let prod = config(
            "[endpoints]\nhost = \"kpublish.example.com\"\nleg_subdomains = true\n\
             rtsp_port = 554\nrtsps_port = 322",
        );
        prod.validate().expect("valid");
        let rtsp = &e(&prod).rtsp[1];
        assert_eq!(
            rtsp.primary_rtsp,
            "rtsp://1_abcd1234.p.s.kpublish.example.com:554/kLive/1_abcd1234_2?t=t"
        );
        assert_eq!(
            rtsp.backup_rtsps.as_deref(),
            Some("rtsps://1_abcd1234.b.s.kpublish.example.com:322/kLive/1_abcd1234_2?t=t")
        );

        // A backup leg left without RTSP ports takes the primary's; a region sets its own.
        let dev = config(
            "[endpoints]\nrtsp_port = 1554\n[endpoints.backup]\nhost = \"127.0.0.2\"\n\
             [[endpoints.regions]]\nregion = \"fra\"\nname = \"EMEA\"\nhost = \"127.0.0.1\"\n\
             rtmp_port = 3935\nrtsp_port = 3554\nrtsps_port = 3322",
        );
        dev.validate().expect("valid");
        let e = e(&dev);
        assert_eq!(
            e.rtsp[0].backup_rtsp,
            "rtsp://127.0.0.2:1554/kLive/1_abcd1234_1?t=t&i=1"
        );
        assert_eq!(e.rtsp[0].primary_rtsps, None);
        assert_eq!(
            e.regions[0].rtsp[1].backup_rtsps.as_deref(),
            Some("rtsps://127.0.0.1:3322/kLive/1_abcd1234_2?t=t&i=1")
        );
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

    fn bare(doc: &str) -> OriginConfig {
        toml::from_str(&format!("[node]\nid = \"t\"\nregion = \"nyc\"\n{doc}")).expect("parses")
    }

    #[test]
    fn the_registry_names_one_store_and_one_password_source() {
        for (doc, key) in [
            ("", "registry"),
            ("[registry]", "registry"),
            (
                "[registry]\npath = \"r.db\"\nurl = \"postgres://u@h/d\"",
                "registry",
            ),
            (
                "[registry]\npath = \"r.db\"\npassword_env = \"X\"",
                "registry.password_file",
            ),
            (
                "[registry]\nurl = \"postgres://u@h/d\"\npassword_env = \"X\"\npassword_file = \"f\"",
                "registry.password_env",
            ),
        ] {
            let err = bare(doc).validate().expect_err(doc);
            assert_eq!(err.key, key, "{doc}: {err}");
        }
        // A password in the URL, an unreadable file, a missing variable: named, and the
        // password never shown.
        let section = |extra: &str| {
            bare(&format!("[registry]\n{extra}"))
                .registry
                .expect("a registry")
        };
        for (extra, key) in [
            ("url = \"postgres://u:hunter2@h/d\"", "registry.url"),
            ("url = \"not a url at all\"", "registry.url"),
            (
                "url = \"postgres://u@h/d\"\npassword_file = \"/nonexistent/pw\"",
                "registry.password_file",
            ),
            (
                "url = \"postgres://u@h/d\"\npassword_env = \"LONGHAUL_TEST_SURELY_UNSET_VAR\"",
                "registry.password_env",
            ),
            // A database on another host, in the clear: refused unless said on purpose.
            ("url = \"postgres://u@db.internal/d\"", "registry.url"),
            (
                "url = \"postgres://u@db.internal/d\"\ntls_ca = \"/nonexistent/ca.pem\"",
                "registry.tls_ca",
            ),
        ] {
            let err = section(extra).store_config("t").expect_err(extra);
            assert_eq!(err.key, key, "{extra}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let config = section(&format!(
            "url = \"postgres://longhaul@db.internal:5433/longhaul?sslmode=disable\"\npassword_file = {:?}",
            file.display().to_string()
        ))
        .store_config("nyc-1")
        .expect("valid");
        let StoreConfig::Postgres(settings) = config else {
            panic!("not PostgreSQL")
        };
        assert_eq!(
            settings.password.as_deref(),
            Some("s3cret"),
            "one line, trimmed"
        );
        assert_eq!(settings.application_name, "longhaul nyc-1");
        assert!(!format!("{settings:?}").contains("s3cret"));
    }

    #[test]
    fn the_callback_is_checked() {
        let valid =
            "[auth]\nmode = \"callback\"\n[auth.callback]\nurl = \"http://auth.internal:8080/p\"";
        bare(valid)
            .validate()
            .expect("a callback needs no registry");
        for (doc, key) in [
            ("[auth]\nmode = \"callback\"", "auth.callback"),
            (
                "[auth]\nmode = \"callback\"\n[auth.callback]\nurl = \"https://x/p\"",
                "auth.callback.url",
            ),
            (
                "[auth]\nmode = \"callback\"\n[auth.callback]\nurl = \"nope\"",
                "auth.callback.url",
            ),
            (
                &format!("{valid}\ntimeout_ms = 0"),
                "auth.callback.timeout_ms",
            ),
            (&format!("{valid}\nretries = 9"), "auth.callback.retries"),
            (
                "[auth]\nmode = \"callback\"\n[auth.callback]\nurl = \"http://u:pw@auth.internal/p\"",
                "auth.callback.url",
            ),
            (
                &format!("{valid}\nbearer_env = \"LONGHAUL_TEST_SURELY_UNSET_VAR\""),
                "auth.callback.bearer_env",
            ),
        ] {
            let err = bare(doc).validate().expect_err(doc);
            assert_eq!(err.key, key, "{doc}: {err}");
        }
        let err = toml::from_str::<OriginConfig>(
            "[node]\nid = \"t\"\nregion = \"nyc\"\n[auth]\nmode = \"ldap\"",
        )
        .expect_err("unknown mode");
        assert!(err.to_string().contains("ldap"), "{err}");
    }

    #[test]
    fn an_edge_s_name_is_bound_to_its_certificate_unless_said_otherwise() {
        let with = |keys: &str| {
            config(&format!(
                "[tunnel]\nlisten = \"127.0.0.1:0\"\n{keys}\n[tunnel.tls]\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\""
            ))
            .validate()
        };
        assert_eq!(with("").unwrap_err().key, "tunnel.edge_name_suffix");
        with("edge_name_suffix = \"tunnel.example\"").expect("bound");
        with("allow_any_edge_name = true").expect("unbound, on purpose");
        assert_eq!(
            with("edge_name_suffix = \"x\"\nallow_any_edge_name = true")
                .unwrap_err()
                .key,
            "tunnel.allow_any_edge_name"
        );
        let fingerprint = "ab".repeat(32);
        with(&format!(
            "edge_name_suffix = \"t\"\ndenied_certificates = [\"{fingerprint}\"]"
        ))
        .expect("a fingerprint");
        assert_eq!(
            with("edge_name_suffix = \"t\"\ndenied_certificates = [\"fra-1\"]")
                .unwrap_err()
                .key,
            "tunnel.denied_certificates"
        );
    }
}
