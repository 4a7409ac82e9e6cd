//! The edge's settings, as read from `config/*.toml` and `LONGHAUL_*` variables.
//!
//! The sections every node has (`[node]`, `[rtmp]`, `[rtmps]`, `[http]`, `[ingest]`,
//! `[abuse]`) are `longhaul_node`'s; `[tunnel]` is `longhaul_tunnel`'s (the origins to keep tunnels to,
//! which one leg p prefers, the cluster's TLS files, QUIC tunables); `[relay]` is
//! the edge's own: how much of a stream it holds while its tunnel is slow; `[router]`
//! holds the thresholds of `longhaul_router` (when a leg leaves an origin in trouble
//! and when it comes back). Everything but
//! `[node]` and `[tunnel]` has defaults, so a site file holds only what differs, and
//! unknown keys are refused.
//!
//! ```toml
//! [node]
//! id = "fra-1"
//! region = "fra"
//! [rtmp]
//! listen = "0.0.0.0:1935"
//! [http]
//! listen = "0.0.0.0:8083"          # /metrics and /healthz
//! [relay]
//! pause_bytes = 1048576            # stop reading an encoder at 1 MiB queued
//! max_delay_ms = 2000              # then drop whole GOPs older than this
//! [abuse]
//! ignore = ["198.51.100.0/24"]     # a studio's encoders behind one NAT: never banned
//! [router]
//! failback_after_ms = 30000        # leg p back to the primary 30 s after it recovered
//! [tunnel]
//! primary = "nyc-1"                # leg p prefers it, leg b the other origin
//! origins = [
//!   { id = "nyc-1", region = "nyc", addr = "nyc-1.longhaul.internal:4433", server_name = "nyc-1.longhaul.internal" },
//!   { id = "pao-1", region = "pao", addr = "pao-1.longhaul.internal:4433", server_name = "pao-1.longhaul.internal" },
//! ]
//! [tunnel.tls]
//! ca = "/etc/longhaul/cluster/ca.pem"
//! cert = "/etc/longhaul/cluster/fra-1.pem"
//! key = "/etc/longhaul/cluster/fra-1-key.pem"
//! [tunnel.transport]
//! initial_rtt_ms = 90
//! ```

use crate::relay_queue::{RelayLimits, DEFAULT_MAX_DELAY, DEFAULT_PAUSE_BYTES};
use longhaul_node::config::{
    AbuseSection, HttpSection, IngestSection, InvalidSetting, NodeSection, RtmpSection,
    RtmpsSection, RtspSection,
};
use longhaul_router::Thresholds;
use longhaul_tunnel::TunnelSection;
use serde::Deserialize;
use std::time::Duration;

/// Everything an edge node needs to run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    pub node: NodeSection,
    #[serde(default)]
    pub rtmp: RtmpSection,
    #[serde(default)]
    pub rtmps: RtmpsSection,
    /// RTSP publishes, relayed as RTMP ones are; off unless `listen` is set.
    #[serde(default)]
    pub rtsp: RtspSection,
    /// `/metrics` and `/healthz` only: an edge serves no API and no playback.
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub ingest: IngestSection,
    #[serde(default)]
    pub relay: RelaySection,
    /// Addresses that keep failing to publish are slowed, then refused here, before
    /// their publishes cost a tunnel round trip.
    #[serde(default)]
    pub abuse: AbuseSection,
    /// Where each leg goes when an origin is in trouble, and when it comes back.
    #[serde(default)]
    pub router: RouterSection,
    pub tunnel: TunnelSection,
}

/// The router's thresholds (`longhaul_router`, whose constants say why each default is
/// what it is). Times in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouterSection {
    /// How long the preferred origin must have been clear of trouble before its leg's
    /// new publishes (and, later, live streams at a keyframe) go back to it. Default
    /// 30 s, as AWS MediaLive waits.
    pub failback_after_ms: u64,
    /// How long an origin that was in trouble must stay clear before it counts as
    /// healthy (a failover target) again. Default 10 s.
    pub recover_hold_ms: u64,
    /// Path samples (one every 250 ms) judged together. Default 4.
    pub sample_window: u32,
    /// Bad samples among them that make a path lossy. Default 3.
    pub bad_samples: u32,
    /// Share of a sample's packets lost that makes it bad. Default 0.10.
    pub lossy_fraction: f64,
    /// Smoothed RTT that makes a sample bad. Default 1,000 ms.
    pub max_rtt_ms: u64,
    /// Stream failures at one origin within `failure_window_ms` that put it in
    /// trouble. Default 3 in 10 s.
    pub failures: u32,
    pub failure_window_ms: u64,
    /// How long an origin's connection may send nothing at all (not even the
    /// acknowledgement of a keep-alive), plus one RTT, before it counts as silent
    /// (frozen or cut off) and its legs go elsewhere. Must be above
    /// `tunnel.transport.keep_alive_ms`. Default 600 ms (`longhaul_router::DEFAULT_SILENCE_LIMIT`
    /// says why).
    pub silence_limit_ms: u64,
}

impl Default for RouterSection {
    fn default() -> Self {
        let th = Thresholds::default();
        Self {
            failback_after_ms: th.failback_after.as_millis() as u64,
            recover_hold_ms: th.recover_hold.as_millis() as u64,
            sample_window: th.sample_window,
            bad_samples: th.bad_samples,
            lossy_fraction: th.lossy_fraction,
            max_rtt_ms: th.max_rtt.as_millis() as u64,
            failures: th.failures,
            failure_window_ms: th.failure_window.as_millis() as u64,
            silence_limit_ms: th.silence_limit.as_millis() as u64,
        }
    }
}

/// Longest time setting of `[router]`: one hour. Longer is a typo (a failback that
/// never comes in practice).
pub const MAX_ROUTER_MS: u64 = 3_600_000;

impl RouterSection {
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            failback_after: Duration::from_millis(self.failback_after_ms),
            recover_hold: Duration::from_millis(self.recover_hold_ms),
            sample_window: self.sample_window,
            bad_samples: self.bad_samples,
            lossy_fraction: self.lossy_fraction,
            max_rtt: Duration::from_millis(self.max_rtt_ms),
            failures: self.failures,
            failure_window: Duration::from_millis(self.failure_window_ms),
            silence_limit: Duration::from_millis(self.silence_limit_ms),
        }
    }

    pub fn validate(&self) -> Result<(), InvalidSetting> {
        for (key, ms) in [
            ("router.failback_after_ms", self.failback_after_ms),
            ("router.recover_hold_ms", self.recover_hold_ms),
            ("router.max_rtt_ms", self.max_rtt_ms),
            ("router.failure_window_ms", self.failure_window_ms),
            ("router.silence_limit_ms", self.silence_limit_ms),
        ] {
            if !(1..=MAX_ROUTER_MS).contains(&ms) {
                return Err(InvalidSetting {
                    key,
                    reason: format!("{ms} is not in 1..={MAX_ROUTER_MS}"),
                });
            }
        }
        self.thresholds().check().map_err(|(name, reason)| {
            let key = match name {
                "sample_window" => "router.sample_window",
                "bad_samples" => "router.bad_samples",
                "lossy_fraction" => "router.lossy_fraction",
                "max_rtt" => "router.max_rtt_ms",
                "failures" => "router.failures",
                "failback_after" => "router.failback_after_ms",
                "silence_limit" => "router.silence_limit_ms",
                _ => "router",
            };
            InvalidSetting { key, reason }
        })
    }
}

/// How much of each stream the edge holds while its tunnel is slower than its encoder
/// (see [`crate::relay_queue`] for the rules).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySection {
    /// Queued bytes per stream (payload, plus each message's own cost) at which the edge
    /// stops reading the encoder.
    /// Default [`DEFAULT_PAUSE_BYTES`] (1 MiB); the reason is there.
    pub pause_bytes: usize,
    /// Milliseconds the oldest queued message of a full queue may wait before whole GOPs
    /// are dropped. Default [`DEFAULT_MAX_DELAY`] (2 s); the reason is there.
    pub max_delay_ms: u64,
    /// What the edge keeps of each stream that the origin has not acknowledged (tunnel
    /// wire version 2), to resume it elsewhere without the encoder noticing: payload
    /// bytes plus each frame's cost. Default `longhaul_tunnel::retain::DEFAULT_MAX_BYTES`
    /// (4 MiB); the reason is there.
    pub retain_bytes: usize,
    /// ... and frames. Default `longhaul_tunnel::retain::DEFAULT_MAX_MESSAGES` (4,096).
    pub retain_messages: usize,
    /// Keep each stream's acknowledged frames back to its last keyframe too, so that a
    /// resume at another origin gives its players a picture at once. Default true. Off,
    /// the edge keeps only what is unacknowledged: about a round trip of each stream
    /// instead of up to a group of pictures (BENCHMARKS.md, "Relay cost": memory per
    /// stream), and players at a new origin wait for the next keyframe.
    pub retain_gop_head: bool,
}

impl Default for RelaySection {
    fn default() -> Self {
        Self {
            pause_bytes: DEFAULT_PAUSE_BYTES,
            max_delay_ms: DEFAULT_MAX_DELAY.as_millis() as u64,
            retain_bytes: longhaul_tunnel::retain::DEFAULT_MAX_BYTES,
            retain_messages: longhaul_tunnel::retain::DEFAULT_MAX_MESSAGES,
            retain_gop_head: true,
        }
    }
}

/// Smallest `relay.retain_bytes`: 256 KiB, under a second of a 2.5 Mbit/s stream's
/// unacknowledged frames at the longest path's round trip; less and a failover loses
/// frames on an ordinary stream.
pub const MIN_RETAIN_BYTES: usize = 256 * 1024;
/// Largest `relay.retain_bytes`: 256 MiB, the same ceiling as `relay.pause_bytes`.
pub const MAX_RETAIN_BYTES: usize = 256 * 1024 * 1024;

/// Smallest `relay.pause_bytes`: 64 KiB, one socket read. Below it the edge would pause
/// on every keyframe of an ordinary stream.
pub const MIN_PAUSE_BYTES: usize = 64 * 1024;
/// Largest `relay.pause_bytes`: 256 MiB, minutes of any stream; more is a typo, and a
/// few such streams would exhaust an edge.
pub const MAX_PAUSE_BYTES: usize = 256 * 1024 * 1024;
/// Largest `relay.max_delay_ms`: one minute. Beyond it a stream is not live any more;
/// the edge would be a recorder.
pub const MAX_DELAY_MS: u64 = 60_000;

impl RelaySection {
    /// The bounds of each stream's unacknowledged window (wire version 2).
    pub fn retain_limits(&self) -> longhaul_tunnel::retain::RetainLimits {
        longhaul_tunnel::retain::RetainLimits {
            max_bytes: self.retain_bytes,
            max_messages: self.retain_messages,
            keep_gop_head: self.retain_gop_head,
            ..Default::default()
        }
    }

    pub fn limits(&self) -> RelayLimits {
        RelayLimits {
            pause_bytes: self.pause_bytes,
            max_delay: Duration::from_millis(self.max_delay_ms),
            ..RelayLimits::default()
        }
    }

    pub fn validate(&self) -> Result<(), InvalidSetting> {
        if !(MIN_PAUSE_BYTES..=MAX_PAUSE_BYTES).contains(&self.pause_bytes) {
            return Err(InvalidSetting {
                key: "relay.pause_bytes",
                reason: format!(
                    "{} is not in {MIN_PAUSE_BYTES}..={MAX_PAUSE_BYTES}",
                    self.pause_bytes
                ),
            });
        }
        if !(1..=MAX_DELAY_MS).contains(&self.max_delay_ms) {
            return Err(InvalidSetting {
                key: "relay.max_delay_ms",
                reason: format!("{} is not in 1..={MAX_DELAY_MS}", self.max_delay_ms),
            });
        }
        if !(MIN_RETAIN_BYTES..=MAX_RETAIN_BYTES).contains(&self.retain_bytes) {
            return Err(InvalidSetting {
                key: "relay.retain_bytes",
                reason: format!(
                    "{} is not in {MIN_RETAIN_BYTES}..={MAX_RETAIN_BYTES}",
                    self.retain_bytes
                ),
            });
        }
        if !(64..=1_000_000).contains(&self.retain_messages) {
            return Err(InvalidSetting {
                key: "relay.retain_messages",
                reason: format!("{} is not in 64..=1000000", self.retain_messages),
            });
        }
        Ok(())
    }
}

impl EdgeConfig {
    /// Checks what serde's types cannot; a bad value is named by its key.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.node.validate()?;
        longhaul_tunnel::check_node_names(&self.node.id, &self.node.region).map_err(|reason| {
            InvalidSetting {
                key: "node",
                reason: format!("{reason}: origins would refuse this edge's hello"),
            }
        })?;
        self.http.validate()?;
        self.ingest.validate()?;
        self.relay.validate()?;
        self.abuse.validate()?;
        self.router.validate()?;
        self.tunnel.validate().map_err(|e| InvalidSetting {
            key: e.key,
            reason: e.reason,
        })?;
        let keep_alive = self.tunnel.transport.keep_alive_ms;
        if self.router.silence_limit_ms <= keep_alive {
            return Err(InvalidSetting {
                key: "router.silence_limit_ms",
                reason: format!(
                    "{} is not above tunnel.transport.keep_alive_ms ({keep_alive}): a live \
                     origin would look silent between two keep-alives",
                    self.router.silence_limit_ms
                ),
            });
        }
        if self.tunnel.tls.cert.is_none() || self.tunnel.tls.key.is_none() {
            return Err(InvalidSetting {
                key: "tunnel.tls",
                reason: "an edge needs its cluster certificate to be let in by the origins: \
                         set tunnel.tls.cert and tunnel.tls.key"
                    .into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        [node]
        id = "fra-1"
        region = "fra"
        [tunnel]
        primary = "nyc-1"
        origins = [
          { id = "nyc-1", region = "nyc", addr = "127.0.0.1:4433", server_name = "nyc-1.longhaul.internal" },
          { id = "pao-1", region = "pao", addr = "127.0.0.1:4434", server_name = "pao-1.longhaul.internal" },
        ]
        [tunnel.tls]
        ca = "ca.pem"
        cert = "fra-1.pem"
        key = "fra-1-key.pem"
    "#;

    fn config(extra: &str) -> EdgeConfig {
        toml::from_str(&format!("{BASE}\n{extra}")).expect("parses")
    }

    #[test]
    fn a_site_file_needs_only_node_and_tunnel() {
        let c = config("");
        c.validate().expect("valid");
        assert_eq!(c.relay.limits(), RelayLimits::default());
        assert_eq!(c.tunnel.origins.len(), 2);
        assert_eq!(c.router.thresholds(), Thresholds::default());
        let c = config("[router]\nfailback_after_ms = 2000\nrecover_hold_ms = 1000");
        c.validate().expect("valid");
        assert_eq!(c.router.thresholds().failback_after, Duration::from_secs(2));
    }

    #[test]
    fn bad_values_are_named_by_key() {
        for (extra, key) in [
            ("[relay]\npause_bytes = 10", "relay.pause_bytes"),
            ("[relay]\nmax_delay_ms = 0", "relay.max_delay_ms"),
            ("[relay]\nmax_delay_ms = 3600000", "relay.max_delay_ms"),
            ("[ingest]\nchunk_size = 1", "ingest.chunk_size"),
            ("[http]\nmax_connections = 0", "http.max_connections"),
            ("[abuse]\nslow_after = 0", "abuse.slow_after"),
            ("[abuse]\nignore = [\"fra\"]", "abuse.ignore"),
            (
                "[router]\nfailback_after_ms = 0",
                "router.failback_after_ms",
            ),
            (
                "[router]\nrecover_hold_ms = 40000",
                "router.failback_after_ms",
            ),
            ("[router]\nbad_samples = 9", "router.bad_samples"),
            ("[router]\nlossy_fraction = 1.5", "router.lossy_fraction"),
            ("[router]\nfailures = 0", "router.failures"),
            (
                "[tunnel.transport]\nkeep_alive_ms = 20000",
                "tunnel.transport.keep_alive_ms",
            ),
        ] {
            let err = config(extra).validate().expect_err(extra);
            assert_eq!(err.key, key, "{extra}: {err}");
        }
        let mut c = config("");
        c.node.id = "FRA-1".into();
        let err = c.validate().expect_err("upper case");
        assert_eq!(err.key, "node", "{err}");
        assert!(err.reason.contains("origins would refuse"), "{err}");
        let mut c = config("");
        c.tunnel.primary = "sin-1".into();
        assert_eq!(c.validate().expect_err("primary").key, "tunnel.primary");
        c = config("");
        c.tunnel.tls.key = None;
        assert_eq!(c.validate().expect_err("no key").key, "tunnel.tls");
    }

    #[test]
    fn unknown_keys_are_refused() {
        for extra in [
            "[relay]\npause = 1",
            "[http]\napi_token = \"x\"",
            "[abuse]\nfindtime = 600",
        ] {
            let err =
                toml::from_str::<EdgeConfig>(&format!("{BASE}\n{extra}")).expect_err("unknown key");
            assert!(err.to_string().contains("unknown field"), "{extra}: {err}");
        }
    }
}
