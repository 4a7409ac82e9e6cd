//! The settings sections every node has: `[node]`, `[rtmp]`, `[rtmps]`, `[http]`, `[ingest]`,
//! `[abuse]`.
//!
//! Origins and edges take encoders the same way, so they read these sections the same
//! way; each node's own config struct puts them beside its own sections. Every section
//! has defaults that make sense for a local node, so a site file holds only what differs,
//! and unknown keys are refused: a typo is an error that names the key, not a setting
//! silently ignored. What serde's types cannot check (ranges, finiteness) is checked by
//! the `validate` methods, which name the key of a bad value in an [`InvalidSetting`].

use crate::abuse::{self, AbuseLimits};
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
    /// How often the node looks at its certificate, key, CA and deny list files for
    /// changes, in milliseconds; 0: only on SIGHUP. A change is taken into use once the
    /// files read the same twice in a row, so within two polls. Reading a few KB a
    /// second costs nothing; see `longhaul_certs::settle` for why polling, not inotify.
    #[serde(default = "default_certificate_poll_ms")]
    pub certificate_poll_ms: u64,
    /// How often, in seconds, the node hands memory freed by past load back to the
    /// system (`malloc_trim`; `crate::memory`); 0: never. Default
    /// [`crate::memory::DEFAULT_TRIM_SECS`].
    #[serde(default = "default_memory_trim_secs")]
    pub memory_trim_secs: u64,
    /// On SIGTERM the node drains: it takes no new publishes, an origin tells its edges
    /// (which move their streams to another origin without their encoders noticing),
    /// and it exits once no publish is left or after this many seconds. Default
    /// [`NodeSection::DEFAULT_DRAIN_GRACE_SECS`]; 0: exit at once.
    #[serde(default = "default_drain_grace_secs")]
    pub drain_grace_secs: u64,
}

fn default_drain_grace_secs() -> u64 {
    NodeSection::DEFAULT_DRAIN_GRACE_SECS
}

fn default_certificate_poll_ms() -> u64 {
    NodeSection::DEFAULT_CERTIFICATE_POLL_MS
}

fn default_memory_trim_secs() -> u64 {
    crate::memory::DEFAULT_TRIM_SECS
}

impl NodeSection {
    /// A second: see `certificate_poll_ms`.
    pub const DEFAULT_CERTIFICATE_POLL_MS: u64 = 1000;

    /// 25 s. Edges move an origin's tunnelled streams within about a second (a router
    /// sample, 250 ms, then a resume of two round trips); what is left is encoders
    /// connected directly, which cannot be moved and get the rest of the time to finish.
    /// Kubernetes kills a pod 30 s after SIGTERM (`terminationGracePeriodSeconds`'
    /// default): 25 s leaves 5 s to close.
    pub const DEFAULT_DRAIN_GRACE_SECS: u64 = 25;

    /// How long a draining node waits for its publishes to leave.
    pub fn drain_grace(&self) -> Duration {
        Duration::from_secs(self.drain_grace_secs)
    }

    /// How often to look at the certificate files; `None`: only on SIGHUP.
    pub fn certificate_poll(&self) -> Option<Duration> {
        (self.certificate_poll_ms > 0).then(|| Duration::from_millis(self.certificate_poll_ms))
    }

    /// How often to trim the allocator; `None`: never.
    pub fn memory_trim(&self) -> Option<Duration> {
        (self.memory_trim_secs > 0).then(|| Duration::from_secs(self.memory_trim_secs))
    }

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
        if (1..100).contains(&self.certificate_poll_ms) || self.certificate_poll_ms > 3_600_000 {
            return Err(InvalidSetting {
                key: "node.certificate_poll_ms",
                reason: format!(
                    "{} is out of range: 100 to 3600000 ms, or 0 to reload on SIGHUP only",
                    self.certificate_poll_ms
                ),
            });
        }
        if self.drain_grace_secs > 3_600 {
            return Err(InvalidSetting {
                key: "node.drain_grace_secs",
                reason: format!(
                    "{} s is over an hour; a rolling restart would take that long per node",
                    self.drain_grace_secs
                ),
            });
        }
        if self.memory_trim_secs > 86_400 {
            return Err(InvalidSetting {
                key: "node.memory_trim_secs",
                reason: format!(
                    "{} is out of range: at most 86400 (a day), or 0 never to trim",
                    self.memory_trim_secs
                ),
            });
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

/// `[rtsp]`: RTSP publishes (`longhaul_rtsp`), for cameras and encoders that do not
/// speak RTMP. Off unless `listen` is set (554 in production, as the product's RTSP
/// endpoints say); `tls_listen` adds RTSPS (322 in production) with the RTMPS
/// certificate, so it needs `[rtmps]`'s `cert` and `key`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtspSection {
    /// Plain RTSP listener; off when `None`.
    pub listen: Option<SocketAddr>,
    /// RTSP over TLS listener; off when `None`.
    pub tls_listen: Option<SocketAddr>,
    /// RTP over UDP (SETUP with `client_port`): the node's RTP port, RTCP on the next
    /// one, shared by every RTSP connection (`crate::rtsp_udp`). Off when `None`: SETUP
    /// over UDP is answered 461 and encoders fall back to TCP interleaved.
    pub udp_listen: Option<SocketAddr>,
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
    /// Connections open at once from one client address (IPv6: one /64), all listeners
    /// together; more are refused at accept (`too_many_from_address`). Default
    /// [`DEFAULT_MAX_CONNECTIONS_PER_ADDRESS`]. Behind a load balancer without
    /// `proxy_protocol`, every client has the balancer's address: raise this there.
    pub max_connections_per_address: usize,
    /// Bytes that connections not yet authorised (before a publish or play is accepted)
    /// may hold in their sessions' buffers, all together (`longhaul_node::unauthorised`).
    /// A connection whose buffers would pass it is closed (`unauthorised_memory`).
    /// Default [`DEFAULT_UNAUTHORISED_MEMORY_BYTES`].
    pub unauthorised_memory_bytes: usize,
    /// RTMP messages a second one connection may send, in bursts of two seconds' worth;
    /// a connection sending more is closed with the reason (`message_rate` in
    /// `session_errors_total`). 0: no bound. Default
    /// [`longhaul_rtmp::message_rate::DEFAULT_MESSAGES_PER_SECOND`] (5,000; encoders
    /// send about 100 per rendition).
    pub max_messages_per_second: u32,
    /// Every connection on the RTMP and RTMPS listeners starts with a PROXY protocol
    /// header (v1 or v2) from a load balancer, naming the client; that address replaces
    /// the socket's everywhere (logs, metrics, limits, the abuse guard). Connections
    /// from addresses outside `proxy_trusted` are refused (`proxy_untrusted`), and a
    /// trusted one without a valid header too (`proxy_header`).
    pub proxy_protocol: bool,
    /// The load balancers' addresses and networks (CIDR) allowed to send PROXY headers.
    pub proxy_trusted: Vec<String>,
}

/// Default `ingest.max_connections_per_address`: 64. An encoder uses one connection per
/// rendition (OBS 1; a hardware encoder with 4 renditions 4; FMLE one per bitrate), and
/// sends primary and backup to different nodes. 64 lets a studio or an office behind one
/// NAT address run a dozen multi-rendition encoders on one node, plus a few RTMP players,
/// while one host alone takes under 1% of the default `max_connections` (10,000).
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 64;

/// Default `ingest.unauthorised_memory_bytes`: 256 MiB. A connection not yet authorised
/// may hold up to 1 MiB in partial messages (the pre-publish decoder limit); measured,
/// one holding the start of a 1,000,000-byte message costs the node 1,184 KiB of resident
/// memory (120 of them: +139 MiB; `unauthorised_holders_without_a_budget` in
/// `tests/hardening.rs`). The default cap of 10,000 connections could so pin 11 GiB;
/// 256 MiB lets about 260 such connections hold their partial messages at once, some
/// 300 MiB of resident memory, a small part of a node's. Honest clients hold nothing between reads before they
/// are authorised (their `connect` and `publish` arrive whole), so they do not draw on it.
pub const DEFAULT_UNAUTHORISED_MEMORY_BYTES: usize = 256 * 1024 * 1024;

/// Smallest `ingest.unauthorised_memory_bytes`: one connection's worth of partial
/// messages (the pre-publish decoder limit) and one read, so that one honest client
/// sending a large message before it is authorised always fits.
pub const MIN_UNAUTHORISED_MEMORY_BYTES: usize =
    longhaul_rtmp::server::PRE_PUBLISH_MAX_BYTES + longhaul_rtmp::server::READ_BLOCK;

impl Default for IngestSection {
    fn default() -> Self {
        Self {
            default_leg: Leg::Primary,
            handshake_timeout_secs: 10.0,
            media_timeout_secs: 15.0,
            write_timeout_secs: 15.0,
            chunk_size: 4096,
            max_connections: 10_000,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            unauthorised_memory_bytes: DEFAULT_UNAUTHORISED_MEMORY_BYTES,
            max_messages_per_second: longhaul_rtmp::message_rate::DEFAULT_MESSAGES_PER_SECOND,
            proxy_protocol: false,
            proxy_trusted: Vec::new(),
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
            max_messages_per_second: self.max_messages_per_second,
            ..longhaul_rtmp::ServerConfig::default()
        }
    }

    /// The networks `proxy_trusted` names; a bad entry is named by its key, and so is an
    /// empty list while `proxy_protocol` is on (every connection would be refused).
    pub fn proxy_trusted_nets(&self) -> Result<Vec<ipnet::IpNet>, InvalidSetting> {
        let nets = self
            .proxy_trusted
            .iter()
            .map(|s| parse_net("ingest.proxy_trusted", s))
            .collect::<Result<Vec<_>, _>>()?;
        if self.proxy_protocol && nets.is_empty() {
            return Err(InvalidSetting {
                key: "ingest.proxy_trusted",
                reason: "is empty while ingest.proxy_protocol is on: name the load \
                         balancers' addresses or networks (e.g. [\"10.0.0.0/8\"])"
                    .into(),
            });
        }
        Ok(nets)
    }

    pub fn validate(&self) -> Result<(), InvalidSetting> {
        check_secs("ingest.handshake_timeout_secs", self.handshake_timeout_secs)?;
        check_secs("ingest.media_timeout_secs", self.media_timeout_secs)?;
        check_secs("ingest.write_timeout_secs", self.write_timeout_secs)?;
        check_connections("ingest.max_connections", self.max_connections)?;
        check_connections(
            "ingest.max_connections_per_address",
            self.max_connections_per_address,
        )?;
        if self.unauthorised_memory_bytes < MIN_UNAUTHORISED_MEMORY_BYTES {
            return Err(InvalidSetting {
                key: "ingest.unauthorised_memory_bytes",
                reason: format!(
                    "{} is less than {MIN_UNAUTHORISED_MEMORY_BYTES}, what one connection \
                     may hold before it is authorised",
                    self.unauthorised_memory_bytes
                ),
            });
        }
        self.proxy_trusted_nets()?;
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

/// How a node treats sources that keep failing to publish (`longhaul_node::abuse`, where
/// each default's reason is): after `slow_after` publishes refused for their credentials
/// within `window_secs`, each further attempt from that address (an IPv6 /64) is delayed,
/// 1 s doubling up to `max_delay_ms`; after `ban_after`, its publishes are refused at once
/// for `ban_secs`. fail2ban's `findtime`, `maxretry`, `bantime` and `ignoreip`, with a
/// tarpit between the first and the ban because encoders retry by themselves.
///
/// ```toml
/// [abuse]
/// enabled = true
/// window_secs = 600        # failures count for 10 minutes (fail2ban's findtime)
/// slow_after = 5           # then each attempt waits 1, 2, 4, 8 s...
/// ban_after = 10           # then refused at once...
/// ban_secs = 600           # ...for 10 minutes (fail2ban's bantime)
/// max_delay_ms = 8000      # the longest wait
/// max_tracked = 10000      # addresses remembered at once
/// ignore = ["192.0.2.10", "198.51.100.0/24"]   # never slowed or refused
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AbuseSection {
    /// Off: every publish is decided as it comes, however often its address failed.
    pub enabled: bool,
    /// Seconds a failure counts for. Default 600 ([`abuse::DEFAULT_WINDOW`]).
    pub window_secs: u64,
    /// Failures in the window after which attempts are delayed. Default 5
    /// ([`abuse::DEFAULT_SLOW_AFTER`]); equal to `ban_after`: never delayed.
    pub slow_after: u32,
    /// Failures in the window after which the address is refused at once. Default 10
    /// ([`abuse::DEFAULT_BAN_AFTER`]).
    pub ban_after: u32,
    /// Seconds a ban lasts. Default 600 ([`abuse::DEFAULT_BAN`]).
    pub ban_secs: u64,
    /// The longest delay, in milliseconds; 0: never delayed. Default 8000
    /// ([`abuse::DEFAULT_MAX_DELAY`]).
    pub max_delay_ms: u64,
    /// Addresses (IPv6: /64s) tracked at once; when full, the quietest is forgotten.
    /// Default 10,000 ([`abuse::DEFAULT_MAX_TRACKED`]).
    pub max_tracked: usize,
    /// Addresses and networks (CIDR) never slowed, refused or counted: the operator's
    /// monitoring, a studio whose many encoders share one address.
    pub ignore: Vec<String>,
}

impl Default for AbuseSection {
    fn default() -> Self {
        Self {
            enabled: true,
            window_secs: abuse::DEFAULT_WINDOW.as_secs(),
            slow_after: abuse::DEFAULT_SLOW_AFTER,
            ban_after: abuse::DEFAULT_BAN_AFTER,
            ban_secs: abuse::DEFAULT_BAN.as_secs(),
            max_delay_ms: abuse::DEFAULT_MAX_DELAY.as_millis() as u64,
            max_tracked: abuse::DEFAULT_MAX_TRACKED,
            ignore: Vec::new(),
        }
    }
}

impl AbuseSection {
    /// The guard's limits; a value out of range, or an `ignore` entry that is not an
    /// address or a network, is named by its key.
    pub fn limits(&self) -> Result<AbuseLimits, InvalidSetting> {
        let max_period = abuse::MAX_PERIOD.as_secs();
        for (key, secs) in [
            ("abuse.window_secs", self.window_secs),
            ("abuse.ban_secs", self.ban_secs),
        ] {
            if !(1..=max_period).contains(&secs) {
                return Err(InvalidSetting {
                    key,
                    reason: format!("{secs} is not a number of seconds in 1..={max_period}"),
                });
            }
        }
        let max_ban_after = abuse::MAX_BAN_AFTER;
        if !(1..=max_ban_after).contains(&self.ban_after) {
            return Err(InvalidSetting {
                key: "abuse.ban_after",
                reason: format!("{} is not in 1..={max_ban_after}", self.ban_after),
            });
        }
        if !(1..=self.ban_after).contains(&self.slow_after) {
            return Err(InvalidSetting {
                key: "abuse.slow_after",
                reason: format!(
                    "{} is not in 1..={} (abuse.ban_after; equal: never delayed)",
                    self.slow_after, self.ban_after
                ),
            });
        }
        let max_delay_ms = abuse::MAX_DELAY_CAP.as_millis() as u64;
        if self.max_delay_ms > max_delay_ms {
            return Err(InvalidSetting {
                key: "abuse.max_delay_ms",
                reason: format!(
                    "{} is more than {max_delay_ms}: encoders give up before they hear why",
                    self.max_delay_ms
                ),
            });
        }
        if !(1..=abuse::MAX_TRACKED).contains(&self.max_tracked) {
            return Err(InvalidSetting {
                key: "abuse.max_tracked",
                reason: format!("{} is not in 1..={}", self.max_tracked, abuse::MAX_TRACKED),
            });
        }
        let ignore = self
            .ignore
            .iter()
            .map(|s| parse_net("abuse.ignore", s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AbuseLimits {
            window: Duration::from_secs(self.window_secs),
            slow_after: self.slow_after,
            ban_after: self.ban_after,
            ban: Duration::from_secs(self.ban_secs),
            max_delay: Duration::from_millis(self.max_delay_ms),
            max_tracked: self.max_tracked,
            ignore,
        })
    }

    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.limits().map(drop)
    }
}

/// An entry of a list of networks (`abuse.ignore`, `ingest.proxy_trusted`): a network in
/// CIDR notation, or one address.
fn parse_net(key: &'static str, s: &str) -> Result<ipnet::IpNet, InvalidSetting> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| InvalidSetting {
            key,
            reason: format!(
                "{s:?} is not an address or a network in CIDR notation \
                 (e.g. \"192.0.2.10\", \"198.51.100.0/24\", \"2001:db8::/32\")"
            ),
        })
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
        #[serde(default)]
        abuse: AbuseSection,
    }

    fn sections(extra: &str) -> Sections {
        let doc = format!("[node]\nid = \"t\"\nregion = \"nyc\"\n{extra}");
        toml::from_str(&doc).expect("parses")
    }

    fn validate(s: &Sections) -> Result<(), InvalidSetting> {
        s.node.validate()?;
        s.http.validate()?;
        s.ingest.validate()?;
        s.abuse.validate()
    }

    #[test]
    fn defaults_are_valid() {
        let s = sections("");
        validate(&s).expect("defaults valid");
        assert_eq!(s.node.certificate_poll(), Some(Duration::from_secs(1)));
        let sighup_only = sections("certificate_poll_ms = 0");
        validate(&sighup_only).expect("0 is SIGHUP only");
        assert_eq!(sighup_only.node.certificate_poll(), None);
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
                "[ingest]\nmax_connections_per_address = 0",
                "ingest.max_connections_per_address",
            ),
            (
                "[ingest]\nunauthorised_memory_bytes = 1000",
                "ingest.unauthorised_memory_bytes",
            ),
            ("[ingest]\nproxy_protocol = true", "ingest.proxy_trusted"),
            (
                "[ingest]\nproxy_trusted = [\"10.0.0.0/40\"]",
                "ingest.proxy_trusted",
            ),
            (
                "[http]\nheader_timeout_secs = nan",
                "http.header_timeout_secs",
            ),
            ("[http]\nmax_connections = 2000000", "http.max_connections"),
            ("[abuse]\nwindow_secs = 0", "abuse.window_secs"),
            ("[abuse]\nban_secs = 100000000", "abuse.ban_secs"),
            ("[abuse]\nban_after = 0", "abuse.ban_after"),
            ("[abuse]\nban_after = 1000", "abuse.ban_after"),
            ("[abuse]\nslow_after = 0", "abuse.slow_after"),
            ("[abuse]\nslow_after = 11", "abuse.slow_after"),
            ("[abuse]\nmax_delay_ms = 60000", "abuse.max_delay_ms"),
            ("[abuse]\nmax_tracked = 0", "abuse.max_tracked"),
            ("[abuse]\nignore = [\"10.0.0/8\"]", "abuse.ignore"),
            ("[abuse]\nignore = [\"10.0.0.0/33\"]", "abuse.ignore"),
            ("certificate_poll_ms = 50", "node.certificate_poll_ms"),
            ("certificate_poll_ms = 3600001", "node.certificate_poll_ms"),
        ] {
            let err = validate(&sections(extra)).expect_err(extra);
            assert_eq!(err.key, key, "{extra}: {err}");
        }
        let mut s = sections("");
        s.node.id = " ".into();
        assert_eq!(validate(&s).expect_err("empty id").key, "node.id");
    }

    #[test]
    fn abuse_defaults_are_the_guards_and_ignore_takes_addresses_and_networks() {
        let s = sections(
            "[abuse]\nignore = [\"192.0.2.10\", \"198.51.100.0/24\", \" 2001:db8::/32 \"]",
        );
        let limits = s.abuse.limits().expect("valid");
        assert_eq!(
            AbuseLimits {
                ignore: Vec::new(),
                ..limits.clone()
            },
            AbuseLimits::default()
        );
        let nets: Vec<String> = limits.ignore.iter().map(|n| n.to_string()).collect();
        assert_eq!(nets, ["192.0.2.10/32", "198.51.100.0/24", "2001:db8::/32"]);
        assert!(sections("").abuse.enabled);
        let err = validate(&sections("[abuse]\nignore = [\"nyc\"]")).expect_err("bad net");
        assert!(
            err.to_string().contains("\"nyc\" is not an address"),
            "{err}"
        );
    }

    #[test]
    fn proxy_protocol_is_off_by_default_and_takes_addresses_and_networks() {
        let s = sections("");
        assert!(!s.ingest.proxy_protocol);
        assert_eq!(
            s.ingest.max_connections_per_address,
            DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
        );
        let s = sections(
            "[ingest]\nproxy_protocol = true\nproxy_trusted = [\"10.0.0.0/8\", \"127.0.0.1\", \"fd00::/8\"]",
        );
        validate(&s).expect("valid");
        let nets: Vec<String> = s
            .ingest
            .proxy_trusted_nets()
            .expect("valid")
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"]);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let doc = "[node]\nid = \"t\"\nregion = \"nyc\"\n[http]\nlisten_addr = \"1.2.3.4:5\"";
        let err = toml::from_str::<Sections>(doc).expect_err("unknown key");
        assert!(err.to_string().contains("listen_addr"), "{err}");
        let doc = "[node]\nid = \"t\"\nregion = \"nyc\"\n[abuse]\nbantime = 600";
        let err = toml::from_str::<Sections>(doc).expect_err("unknown key");
        assert!(err.to_string().contains("bantime"), "{err}");
    }
}
