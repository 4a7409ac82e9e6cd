//! Tunnel settings as they appear in a node's config: peers, certificates, transport.
//!
//! The transport defaults are for long, lossy paths (Singapore to New York: 230 ms RTT,
//! up to a few percent loss), where quinn's own defaults cap throughput; every default
//! says why it is what it is. A site file overrides what differs (`initial_rtt_ms` per
//! region, for instance).

use crate::probe_rtt_hold::ProbeRttHoldConfig;
use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// An edge's `[tunnel]` section: which origins to keep tunnels to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSection {
    /// Every origin this edge keeps a tunnel open to.
    pub origins: Vec<OriginPeer>,
    /// Id of the origin leg `p` (primary) prefers; leg `b` prefers the first other one.
    /// Where a leg goes is the edge's router's decision (`longhaul_router`), not this
    /// crate's: the transport carries.
    pub primary: String,
    pub tls: ClusterTlsPaths,
    /// Local UDP address of the edge's QUIC endpoint. An edge on several shards opens
    /// one endpoint per shard: with a fixed port here, shard i binds the port plus i.
    #[serde(default = "any_port")]
    pub bind: SocketAddr,
    #[serde(default)]
    pub transport: TransportSettings,
}

fn any_port() -> SocketAddr {
    ([0, 0, 0, 0], 0).into()
}

impl TunnelSection {
    pub fn validate(&self) -> Result<(), InvalidTunnelSetting> {
        if self.origins.is_empty() {
            return Err(invalid("tunnel.origins", "at least one origin is needed"));
        }
        for (i, o) in self.origins.iter().enumerate() {
            if !o
                .addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return Err(invalid(
                    "tunnel.origins",
                    format!("origin {}: addr {:?} is not host:port", o.id, o.addr),
                ));
            }
            // One UDP socket serves every origin: an IPv6 origin needs an IPv6 `bind`.
            if let Ok(a) = o.addr.parse::<SocketAddr>() {
                if a.is_ipv6() != self.bind.is_ipv6() {
                    return Err(invalid(
                        "tunnel.bind",
                        format!(
                            "{} cannot reach origin {} at {} (set tunnel.bind to an address of its family)",
                            self.bind, o.id, o.addr
                        ),
                    ));
                }
            }
            if o.id.is_empty() || o.server_name.is_empty() {
                return Err(invalid(
                    "tunnel.origins",
                    format!("origin {i} needs an id and a server_name"),
                ));
            }
            if self.origins[..i].iter().any(|p| p.id == o.id) {
                return Err(invalid(
                    "tunnel.origins",
                    format!("origin id {} appears twice", o.id),
                ));
            }
        }
        if !self.origins.iter().any(|o| o.id == self.primary) {
            return Err(invalid(
                "tunnel.primary",
                format!(
                    "{:?} is not the id of an origin in tunnel.origins",
                    self.primary
                ),
            ));
        }
        self.transport.validate()
    }
}

/// One origin a node keeps a tunnel to: an edge's origins (`[tunnel] origins`), or an
/// origin's peers (`[peering] peers`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginPeer {
    /// Node id, e.g. `nyc-1`: the `peer` label of the tunnel metrics.
    pub id: String,
    /// Region code, e.g. `nyc`.
    pub region: String,
    /// The origin's QUIC (UDP) address, `host:port`. A host name is resolved again on
    /// every reconnect, so moving an origin is a DNS change, not an edge restart.
    pub addr: String,
    /// The name its certificate is checked against.
    pub server_name: String,
}

/// An origin's `[tunnel]` section: where it accepts edges.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelListenSection {
    /// UDP address for QUIC.
    pub listen: SocketAddr,
    pub tls: ClusterTlsPaths,
    /// An edge saying hello as `fra-1` must hold a certificate valid for
    /// `fra-1.<edge_name_suffix>`: a cluster member cannot speak as another edge (take
    /// over its tunnel, redeem its grants; its node id names it in logs, metrics and the
    /// streams API). Required, unless `allow_any_edge_name` says otherwise on purpose.
    #[serde(default)]
    pub edge_name_suffix: Option<String>,
    /// Let any cluster certificate claim any edge id (no `edge_name_suffix`). Unsafe: one
    /// stolen edge certificate then speaks for every edge. Off by default; the origin
    /// warns at start when it is on.
    #[serde(default)]
    pub allow_any_edge_name: bool,
    /// Edge certificates this origin refuses whatever signed them: SHA-256 fingerprints
    /// of their DER (`longhaul pki fingerprint FILE` prints one; openssl's
    /// `AB:CD:...` form is read too). A denied edge's live tunnel is cut and it cannot
    /// connect again: one stolen edge certificate is shut out without a new CA.
    #[serde(default)]
    pub denied_certificates: Vec<String>,
    /// A file of more fingerprints, one a line (`#` comments), reloaded like the
    /// certificates (every `node.certificate_poll_ms` and on SIGHUP): adding a line cuts
    /// that edge's tunnel within two polls. A file with a bad line is refused whole and
    /// the list in force stays.
    #[serde(default)]
    pub denied_certificates_file: Option<PathBuf>,
    #[serde(default)]
    pub transport: TransportSettings,
}

/// PEM files of the cluster's mutual TLS: every node has a certificate signed by the
/// cluster CA for its role (an origin's to serve, `serverAuth`; an edge's to connect,
/// `clientAuth`), and accepts only peers that have one too. Reloaded while the node
/// runs, all three together (see [`crate::tls`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsPaths {
    /// The cluster CA certificate.
    pub ca: PathBuf,
    /// This node's certificate chain. An edge without one is refused by every origin.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The congestion controller of a tunnel connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Congestion {
    Bbr,
    Cubic,
    NewReno,
}

impl Congestion {
    pub fn as_str(self) -> &'static str {
        match self {
            Congestion::Bbr => "bbr",
            Congestion::Cubic => "cubic",
            Congestion::NewReno => "newreno",
        }
    }
}

/// QUIC transport tunables.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportSettings {
    /// BBR by default, chosen from the long-haul benchmark (`loadtest/longhaul_bench.py`,
    /// BENCHMARKS.md): one 6 Mbit/s stream through the edge over emulated paths of
    /// 80-300 ms RTT and 0-2 % loss each way. With BBR every frame of every setting
    /// arrived, all within 1 s (p99 491 ms at 230 ms and 1 %). With Cubic and NewReno
    /// the tunnel carries 8-71 % of the bitrate as soon as there is any loss (25 % and
    /// 16 % at 230 ms and 1 %) and the edge's relay queue drops the rest a GOP at a
    /// time: loss-based control sits at the Mathis limit, as a direct TCP/CUBIC publish
    /// does (17 %). The caveat: quinn 0.11's BBRv1 overshoots a bottleneck when offered
    /// more than it carries (`cargo bench -p longhaul-tunnel --bench tunnel -- lossy`:
    /// 64-71 Mbit/s of 100 in bulk runs, with many bottleneck drops, where Cubic gets
    /// 91), so a tunnel should not be offered more than its path carries. And its
    /// ProbeRTT drops the window to 4 packets for 200 ms and a round trip (seen 0.7 s
    /// into a stream: 246 KB to 5.7 KB); `hold_window_in_probe_rtt` keeps the window.
    pub congestion: Congestion,
    /// With BBR: keep the window through BBR's ProbeRTTs ([`crate::probe_rtt_hold`]),
    /// where quinn's BBR drops it to 4 packets for 200 ms and a round trip to measure a
    /// minimum RTT it then takes from the connection's lifetime minimum anyway. On by
    /// default: at 230 ms RTT and 1 % loss it took the p99 of a 6 Mbit/s stream from
    /// 487-552 ms to 399-460 ms, within the goal of 2 x RTT in 3 of 3 runs (BENCHMARKS.md,
    /// "The goal check", both measured alternately in one run). Off gives quinn's BBR
    /// unchanged, for side-by-side runs of the long-haul benchmark.
    pub hold_window_in_probe_rtt: bool,
    /// Per-stream receive window: what one publish may have in flight or queued inside
    /// QUIC. It is also how much media can sit in the tunnel when the path is slower
    /// than the stream, before the edge's relay queue (which drops old GOPs) sees any
    /// of it, so it is a latency bound as much as a rate cap. 1 MiB lets one stream run
    /// at 36 Mbit/s at 230 ms RTT (six times a 6 Mbit/s stream's bandwidth-delay
    /// product, room for retransmissions), while holding at most 1.4 s of a 6 Mbit/s
    /// stream; 8 MiB held 11 s in a review probe with an origin that stopped reading.
    /// Measured through a 230 ms, 100 Mbit/s emulated path (BENCHMARKS.md): one stream
    /// as fast as it goes reaches 33 Mbit/s (17 at 1-2 % loss) with p99 under 0.7 s and
    /// no bottleneck drops; with 8 MiB, 64-71 Mbit/s but 11,000-40,000 drops and p99
    /// 1-2 s. A 6 Mbit/s stream arrives whole either way.
    pub stream_window: u64,
    /// Per-connection receive window. 64 MiB: 2.2 Gbit/s at 230 ms, a loaded edge's
    /// worth of streams. It bounds memory only when the origin stops reading.
    pub connection_window: u64,
    /// Bytes the sender keeps unacknowledged per connection; same sizing as the window.
    pub send_window: u64,
    /// RTT assumed before the first sample. Set per site (fra-nyc 90 ms, sin-nyc
    /// 230 ms); 250 ms errs long, which only delays the first loss timer.
    pub initial_rtt_ms: u64,
    /// Keep-alive interval. 100 ms: NAT bindings stay (cloudflared sends one a second),
    /// and the origin's acknowledgement of each tells the edge's router it is alive,
    /// so a frozen origin or a cut path is noticed within its silence limit (600 ms, six
    /// keep-alives) instead of the idle timeout. Ten small packets a second each way
    /// (a PING of about 40 bytes, its ACK about as big) cost about 1 kB/s per tunnel.
    pub keep_alive_ms: u64,
    /// Idle timeout. 10 s: ten keep-alives lost in a row, which a path at a few percent
    /// loss never does; cloudflared's 5 s flaps on such paths.
    pub idle_timeout_ms: u64,
    /// Publish streams a peer may open at once. A busy edge relays a few thousand.
    pub max_streams: u32,
    /// UDP receive and send buffer asked of the kernel. quinn at a few hundred Mbit/s
    /// drops datagrams with the 200-400 KiB defaults; 8 MiB holds 70 ms at 1 Gbit/s.
    /// The kernel may grant less (net.core.rmem_max): the granted sizes are logged.
    pub udp_recv_buffer: usize,
    pub udp_send_buffer: usize,
    /// Health and load reports on the control stream, both ways.
    pub report_interval_ms: u64,
    /// Reconnect backoff: the first wait is up to this, doubling after each failure...
    pub reconnect_initial_ms: u64,
    /// ...up to this cap. Each wait is drawn uniformly below the bound (full jitter), so
    /// edges that lost an origin together do not come back together.
    pub reconnect_max_ms: u64,
    /// How long an edge waits for an origin's verdict on a publish.
    pub authorise_timeout_ms: u64,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            congestion: Congestion::Bbr,
            hold_window_in_probe_rtt: true,
            stream_window: 1024 * 1024,
            connection_window: 64 * 1024 * 1024,
            send_window: 64 * 1024 * 1024,
            initial_rtt_ms: 250,
            keep_alive_ms: 100,
            idle_timeout_ms: 10_000,
            max_streams: 4_096,
            udp_recv_buffer: 8 * 1024 * 1024,
            udp_send_buffer: 8 * 1024 * 1024,
            report_interval_ms: 5_000,
            reconnect_initial_ms: 500,
            reconnect_max_ms: 15_000,
            authorise_timeout_ms: 5_000,
        }
    }
}

impl TunnelListenSection {
    /// Checks the transport and that edges' names are bound to their certificates
    /// (or explicitly not).
    pub fn validate(&self) -> Result<(), InvalidTunnelSetting> {
        self.transport.validate()?;
        self.denied_fingerprints()?;
        match (&self.edge_name_suffix, self.allow_any_edge_name) {
            (None, false) => Err(invalid(
                "tunnel.edge_name_suffix",
                "is not set: set it to the domain edges' certificates are issued under \
                 (an edge saying hello as fra-1 must hold a certificate for fra-1.<suffix>), \
                 or set tunnel.allow_any_edge_name = true to let any cluster certificate \
                 claim any edge (unsafe)",
            )),
            (Some(_), true) => Err(invalid(
                "tunnel.allow_any_edge_name",
                "is true while tunnel.edge_name_suffix is set: choose one",
            )),
            (Some(suffix), false) if suffix.trim_matches('.').is_empty() => Err(invalid(
                "tunnel.edge_name_suffix",
                "is empty: set the domain edges' certificates are issued under",
            )),
            _ => Ok(()),
        }
    }

    /// `denied_certificates`, read.
    pub fn denied_fingerprints(
        &self,
    ) -> Result<Vec<longhaul_certs::Fingerprint>, InvalidTunnelSetting> {
        self.denied_certificates
            .iter()
            .map(|f| longhaul_certs::Fingerprint::parse(f))
            .collect::<Result<_, _>>()
            .map_err(|e| invalid("tunnel.denied_certificates", e))
    }
}

/// A tunnel setting that cannot work, naming its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting {key}: {reason}")]
pub struct InvalidTunnelSetting {
    pub key: &'static str,
    pub reason: String,
}

fn invalid(key: &'static str, reason: impl Into<String>) -> InvalidTunnelSetting {
    InvalidTunnelSetting {
        key,
        reason: reason.into(),
    }
}

/// Longest wait for a verdict and for opening a publish stream: 10 s. An origin keeps a
/// grant 30 s, so an edge never opens a stream with one that has expired meanwhile; and
/// an encoder waiting for Publish.Start longer than that has long given up.
pub const MAX_AUTHORISE_TIMEOUT_MS: u64 = 10_000;

/// Largest value a QUIC variable-length integer holds (2^62 - 1).
const VARINT_MAX: u64 = (1 << 62) - 1;

impl TransportSettings {
    pub fn validate(&self) -> Result<(), InvalidTunnelSetting> {
        let windows = [
            ("tunnel.transport.stream_window", self.stream_window),
            ("tunnel.transport.connection_window", self.connection_window),
            ("tunnel.transport.send_window", self.send_window),
        ];
        for (key, v) in windows {
            if !(16 * 1024..=VARINT_MAX).contains(&v) {
                return Err(invalid(key, format!("{v} is not between 16 KiB and 2^62")));
            }
        }
        if self.keep_alive_ms == 0 || self.keep_alive_ms >= self.idle_timeout_ms {
            return Err(invalid(
                "tunnel.transport.keep_alive_ms",
                "must be above 0 and below idle_timeout_ms",
            ));
        }
        // quinn's idle timeout is a varint of milliseconds; a day is plenty.
        if self.idle_timeout_ms > 86_400_000 {
            return Err(invalid(
                "tunnel.transport.idle_timeout_ms",
                "at most one day",
            ));
        }
        if self.initial_rtt_ms == 0 || self.initial_rtt_ms > 10_000 {
            return Err(invalid(
                "tunnel.transport.initial_rtt_ms",
                "must be between 1 and 10,000",
            ));
        }
        if self.max_streams == 0 {
            return Err(invalid("tunnel.transport.max_streams", "must be above 0"));
        }
        if self.reconnect_initial_ms == 0 || self.reconnect_max_ms < self.reconnect_initial_ms {
            return Err(invalid(
                "tunnel.transport.reconnect_max_ms",
                "reconnect_initial_ms must be above 0 and at most reconnect_max_ms",
            ));
        }
        if self.report_interval_ms < 100 {
            return Err(invalid(
                "tunnel.transport.report_interval_ms",
                "at least 100 ms between reports",
            ));
        }
        if !(1..=MAX_AUTHORISE_TIMEOUT_MS).contains(&self.authorise_timeout_ms) {
            return Err(invalid(
                "tunnel.transport.authorise_timeout_ms",
                format!("must be between 1 and {MAX_AUTHORISE_TIMEOUT_MS}"),
            ));
        }
        Ok(())
    }

    /// The quinn transport configuration for these settings.
    pub fn transport_config(&self) -> TransportConfig {
        let mut t = TransportConfig::default();
        let varint = |v: u64| VarInt::from_u64(v.min(VARINT_MAX)).unwrap_or(VarInt::MAX);
        t.stream_receive_window(varint(self.stream_window))
            .receive_window(varint(self.connection_window))
            .send_window(self.send_window)
            .initial_rtt(Duration::from_millis(self.initial_rtt_ms))
            .keep_alive_interval(Some(Duration::from_millis(self.keep_alive_ms)))
            .max_idle_timeout(
                IdleTimeout::try_from(Duration::from_millis(self.idle_timeout_ms)).ok(),
            )
            .max_concurrent_bidi_streams(VarInt::from_u32(self.max_streams))
            // Nothing uses unidirectional streams or datagrams yet.
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .datagram_receive_buffer_size(None);
        match self.congestion {
            Congestion::Bbr if self.hold_window_in_probe_rtt => t.congestion_controller_factory(
                Arc::new(ProbeRttHoldConfig::new(Arc::new(BbrConfig::default()))),
            ),
            Congestion::Bbr => t.congestion_controller_factory(Arc::new(BbrConfig::default())),
            Congestion::Cubic => t.congestion_controller_factory(Arc::new(CubicConfig::default())),
            Congestion::NewReno => {
                t.congestion_controller_factory(Arc::new(NewRenoConfig::default()))
            }
        };
        t
    }

    pub fn report_interval(&self) -> Duration {
        Duration::from_millis(self.report_interval_ms)
    }

    pub fn authorise_timeout(&self) -> Duration {
        Duration::from_millis(self.authorise_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(toml_origins: &[(&str, &str)], primary: &str) -> TunnelSection {
        TunnelSection {
            origins: toml_origins
                .iter()
                .enumerate()
                .map(|(i, (id, region))| OriginPeer {
                    id: id.to_string(),
                    region: region.to_string(),
                    addr: format!("127.0.0.1:{}", 4433 + i),
                    server_name: format!("{id}.longhaul.internal"),
                })
                .collect(),
            primary: primary.into(),
            tls: ClusterTlsPaths {
                ca: "ca.pem".into(),
                cert: None,
                key: None,
            },
            bind: any_port(),
            transport: TransportSettings::default(),
        }
    }

    #[test]
    fn bad_sections_name_their_key() {
        assert_eq!(
            section(&[("nyc-1", "nyc")], "pao-1")
                .validate()
                .unwrap_err()
                .key,
            "tunnel.primary"
        );
        assert_eq!(
            section(&[("a", "x"), ("a", "y")], "a")
                .validate()
                .unwrap_err()
                .key,
            "tunnel.origins"
        );
        let mut s = section(&[("nyc-1", "nyc")], "nyc-1");
        s.transport.keep_alive_ms = s.transport.idle_timeout_ms;
        assert_eq!(
            s.validate().unwrap_err().key,
            "tunnel.transport.keep_alive_ms"
        );
        s.transport = TransportSettings {
            stream_window: 10,
            ..Default::default()
        };
        assert_eq!(
            s.validate().unwrap_err().key,
            "tunnel.transport.stream_window"
        );
        assert!(section(&[("nyc-1", "nyc")], "nyc-1").validate().is_ok());
        let mut s = section(&[("nyc-1", "nyc")], "nyc-1");
        s.origins[0].addr = "nyc-1.longhaul.internal".into();
        assert_eq!(s.validate().unwrap_err().key, "tunnel.origins");
        s.origins[0].addr = "nyc-1.longhaul.internal:4433".into();
        assert!(s.validate().is_ok());
        s.origins[0].addr = "[2001:db8::1]:4433".into();
        assert_eq!(s.validate().unwrap_err().key, "tunnel.bind");
        s.bind = "[::]:0".parse().unwrap();
        assert!(s.validate().is_ok());
    }

    #[test]
    fn defaults_validate_and_build_for_each_controller() {
        for c in [Congestion::Bbr, Congestion::Cubic, Congestion::NewReno] {
            let s = TransportSettings {
                congestion: c,
                ..Default::default()
            };
            s.validate().unwrap();
            let _ = s.transport_config();
        }
    }
}
