//! The origin's Prometheus metrics, all prefixed `longhaul_`.
//!
//! Built on `longhaul_node::metrics`: the node's own registry, `node` and `region` as
//! constant labels. Labels here are kept to small fixed sets (transport, outcome,
//! reason); the per-stream series, behind a cardinality limit, are
//! [`crate::stream_metrics`]'s.

use longhaul_node::metrics::{
    counter, counter_vec, gauge, gauge_vec, node_registry, AbuseSeries, ConnectionSeries,
};
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

/// Re-exported: the origin's modules count connections, players and publishers with it.
pub use longhaul_node::GaugeGuard;

/// Why a publish was refused or how it ended, as the `reason` label.
pub mod reason {
    pub const OK: &str = "ok";
    pub const MISSING_TOKEN: &str = "missing_token";
    pub const WRONG_TOKEN: &str = "wrong_token";
    pub const UNKNOWN_ENTRY: &str = "unknown_entry";
    pub const BAD_STREAM_NAME: &str = "bad_stream_name";
    pub const UNKNOWN_APP: &str = "unknown_app";
    pub const INTERNAL: &str = "internal_error";
    /// The authorisation callback refused the publish.
    pub const CALLBACK_REFUSED: &str = "callback_refused";
    /// The authorisation callback did not answer.
    pub const CALLBACK_UNAVAILABLE: &str = "callback_unavailable";
    /// The token is not the one this origin knows, and it cannot reach its registry to
    /// look for a newer one: not counted as a credential failure.
    pub const UNVERIFIED_TOKEN: &str = "unverified_token";
    /// The entry was revoked between the check and the stream's start.
    pub const REVOKED: &str = "revoked";
    /// A tunnelled publish whose grant is unknown or expired.
    pub const UNKNOWN_GRANT: &str = "unknown_grant";
    /// The origin is draining (shutting down): publish elsewhere. An edge that hears it
    /// while resuming a stream tries another origin.
    pub const DRAINING: &str = longhaul_tunnel::wire::DRAINING_REASON;
    /// The client's address is banned for too many failed publishes
    /// (`longhaul_node::abuse`); refused before any check.
    pub const TOO_MANY_FAILURES: &str = longhaul_node::abuse_gate::REFUSED_REASON;
}

/// The `protocol` label of player series.
pub mod protocol {
    pub const RTMP: &str = "rtmp";
    pub const HTTP_FLV: &str = "http-flv";
}

pub struct Metrics {
    registry: Registry,
    /// The RTMP connection series every node has.
    pub connections: ConnectionSeries,
    /// `publish_abuse_total{action}`, `publish_abuse_bans_total`: the abuse guard's.
    pub abuse: AbuseSeries,
    pub publishes: IntCounterVec,
    pub publish_takeovers: IntCounter,
    /// `tunnel_resumes_total{how}`: tunnel publishes that came back on a new stream
    /// (wire version 2): `continued` a publication this hub held, or `moved_here` from
    /// another origin.
    pub tunnel_resumes: IntCounterVec,
    /// `tunnel_resent_frames_total{what}`: on resumed tunnel publishes, frames dropped as
    /// already in the hub (`duplicate`), never received (`missing`: the edge could not
    /// keep them) and dropped after such a gap until a keyframe (`skipped`).
    pub tunnel_resent: IntCounterVec,
    pub publishers_active: IntGauge,
    /// `draining`: 1 once the origin drains (SIGTERM or the API).
    pub draining: IntGauge,
    pub players_active: IntGaugeVec,
    pub plays: IntCounterVec,
    pub player_skips: IntCounterVec,
    pub player_drops: IntCounterVec,
    pub http_requests: IntCounterVec,
    /// `revocations_total{reason}`: revocations this origin carried out.
    pub revocations: IntCounterVec,
    /// `publishes_cut_total{reason}`: live publishes cut here by revocations.
    pub publishes_cut: IntCounterVec,
    /// `auth_callbacks_total{outcome}`: publish checks by the HTTP callback.
    pub callbacks: IntCounterVec,
    /// `presence_writes_total{outcome}` (ok, failed): writes of the streams live here
    /// to the registry.
    pub presence_writes: IntCounterVec,
    /// `presence_lookups_total{outcome}` (`crate::elsewhere::outcome`): play misses
    /// asking where else a stream is live.
    pub presence_lookups: IntCounterVec,
    /// `peer_bytes_total{peer,direction}`: media bytes of pulled legs to and from each
    /// peer origin (origin peering): what crosses between data centres.
    pub peer_bytes: IntCounterVec,
    /// `peer_pulls{peer,direction}`: pull streams open now, `in` (this origin pulling
    /// from the peer) and `out` (serving the peer).
    pub peer_pulls: IntGaugeVec,
    /// `peer_legs_pulled_total{peer}`: publications of a leg pulled from each peer.
    pub peer_legs_pulled: IntCounterVec,
    /// `console_refusals_total{reason}` (`crate::console::refusal`): console requests
    /// refused (not loopback without a key, no session, a wrong key, no CSRF token).
    pub console_refusals: IntCounterVec,
    /// `api_refusals_total{reason}` (`crate::api::refusal`): API requests refused at
    /// the door (no token, a wrong one, an address banned for guessing, not loopback).
    pub api_refusals: IntCounterVec,
}

impl Metrics {
    /// Metrics of one node; `node` and `region` become constant labels of every series.
    pub fn new(node: &str, region: &str) -> Self {
        let r = node_registry(node, region);
        let publish_takeovers = counter(
            &r,
            "publish_takeovers_total",
            "Publishes that took over a stream from an older connection of the same entry, leg and rendition",
        );
        let publishers_active = gauge(&r, "publishers_active", "Streams being published now");
        Self {
            connections: ConnectionSeries::new(&r),
            abuse: AbuseSeries::new(&r),
            publishes: counter_vec(
                &r,
                "publishes_total",
                "Publish requests by outcome (accepted, rejected), reason, transport (rtmp, rtmps, tunnel) and the region the encoder published in",
                &["outcome", "reason", "transport", "encoder_region"],
            ),
            publish_takeovers,
            tunnel_resumes: counter_vec(
                &r,
                "tunnel_resumes_total",
                "Tunnel publishes resumed on a new stream without the encoder noticing: continued (this hub held the publication) or moved_here (from another origin)",
                &["how"],
            ),
            tunnel_resent: counter_vec(
                &r,
                "tunnel_resent_frames_total",
                "On resumed tunnel publishes: frames dropped as already here (duplicate), never received (missing) and dropped after such a gap until a keyframe (skipped)",
                &["what"],
            ),
            publishers_active,
            draining: gauge(
                &r,
                "draining",
                "1 once the origin drains (SIGTERM or POST /api/v1/drain): it takes no new publishes and its edges move their streams elsewhere",
            ),
            players_active: gauge_vec(&r, "players_active", "Players attached now", &["protocol"]),
            plays: counter_vec(
                &r,
                "plays_total",
                "Play requests by protocol and outcome",
                &["protocol", "outcome"],
            ),
            player_skips: counter_vec(
                &r,
                "player_skips_total",
                "Times a slow player was skipped forward to the next keyframe",
                &["protocol"],
            ),
            player_drops: counter_vec(
                &r,
                "player_drops_total",
                "Players disconnected because they could not keep up",
                &["protocol"],
            ),
            http_requests: counter_vec(
                &r,
                "http_requests_total",
                "HTTP requests by route and status",
                &["route", "status"],
            ),
            revocations: counter_vec(
                &r,
                "revocations_total",
                "Revocations carried out (a token regenerated, an entry deleted, an operator's kick), by reason",
                &["reason"],
            ),
            publishes_cut: counter_vec(
                &r,
                "publishes_cut_total",
                "Live publishes at this origin cut by a revocation, by reason (edges count their own)",
                &["reason"],
            ),
            callbacks: counter_vec(
                &r,
                "auth_callbacks_total",
                "Publishes checked by the HTTP authorisation callback, by outcome (allowed, refused, their _cached forms, unavailable)",
                &["outcome"],
            ),
            presence_writes: counter_vec(
                &r,
                "presence_writes_total",
                "Writes of the streams live on this origin to the registry, by outcome (ok, failed); a failure never affects a publish",
                &["outcome"],
            ),
            presence_lookups: counter_vec(
                &r,
                "presence_lookups_total",
                "Plays of a stream not live here that asked where else it is live, by outcome (found, not_found, cached, skipped, busy, failed)",
                &["outcome"],
            ),
            peer_bytes: counter_vec(
                &r,
                "peer_bytes_total",
                "Media bytes of legs pulled between origins (origin peering), by peer origin and direction (in: pulled from it, out: served to it)",
                &["peer", "direction"],
            ),
            peer_pulls: gauge_vec(
                &r,
                "peer_pulls",
                "Pull streams open now, by peer origin and direction (in: pulling from it, out: serving it); a pull lasts while the rendition has viewers at the asking origin",
                &["peer", "direction"],
            ),
            peer_legs_pulled: counter_vec(
                &r,
                "peer_legs_pulled_total",
                "Publications of a leg pulled from each peer origin (a replica started here)",
                &["peer"],
            ),
            console_refusals: counter_vec(
                &r,
                "console_refusals_total",
                "Web console requests refused, by reason (not_loopback: no http.api_token and not on loopback; no_session; wrong_key at sign-in; csrf: a form without its token)",
                &["reason"],
            ),
            api_refusals: counter_vec(
                &r,
                "api_refusals_total",
                "API requests refused at the door, by reason (no_key; wrong_key; too_many_failures: the address is banned for wrong keys; not_loopback: no http.api_token and not on loopback)",
                &["reason"],
            ),
            registry: r,
        }
        .with_player_series()
        .with_refusal_series()
    }

    /// The peering series of every configured peer start at 0 (both directions), so
    /// a rate over them has a series before the first pull.
    pub fn start_peer_series<'a>(&self, peers: impl IntoIterator<Item = &'a str>) {
        for peer in peers {
            for direction in ["in", "out"] {
                self.peer_bytes.with_label_values(&[peer, direction]);
                self.peer_pulls.with_label_values(&[peer, direction]);
            }
            self.peer_legs_pulled.with_label_values(&[peer]);
        }
    }

    /// The console's and the API's refusal series start at 0, so an alert on a rise of
    /// wrong keys has a series to compare with.
    fn with_refusal_series(self) -> Self {
        for reason in crate::console::refusal::ALL {
            self.console_refusals.with_label_values(&[reason]);
        }
        for reason in crate::api::refusal::ALL {
            self.api_refusals.with_label_values(&[reason]);
        }
        self
    }

    /// The player series start at 0 for both protocols, so a rate over them (a
    /// dashboard panel, an alert) has a series before the first player or drop.
    fn with_player_series(self) -> Self {
        for p in [protocol::RTMP, protocol::HTTP_FLV] {
            self.players_active.with_label_values(&[p]);
            self.player_skips.with_label_values(&[p]);
            self.player_drops.with_label_values(&[p]);
        }
        self
    }

    /// Adds a collector (the tunnels') to this node's registry, under its prefix and labels.
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(collector) {
            tracing::error!(error = %e, "registering a metrics collector failed");
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        longhaul_node::metrics::render(&self.registry)
    }
}

/// The registry's health and counters, read at scrape time from
/// [`longhaul_registry::Registry::status`]:
/// `registry_up{backend}` (0 while the store is unreachable and publishes are decided
/// from memory), `registry_entries`, `registry_state_since_seconds` (Unix time of the
/// last change between reachable and not), `registry_resyncs_total`,
/// `registry_outages_total`, `registry_changes_total{kind}`.
pub struct RegistryCollector {
    registry: std::sync::Weak<longhaul_registry::Registry>,
    templates: RegistryFamilies,
}

struct RegistryFamilies {
    up: IntGaugeVec,
    entries: IntGauge,
    since: prometheus::Gauge,
    resyncs: IntCounter,
    outages: IntCounter,
    changes: IntCounterVec,
}

impl RegistryFamilies {
    fn new() -> Self {
        // Constant names and labels: building them cannot fail.
        let opts = prometheus::Opts::new;
        RegistryFamilies {
            up: IntGaugeVec::new(
                opts("registry_up", "1 while the entries store is reachable; 0 while publishes are decided from the in-memory copy"),
                &["backend"],
            )
            .expect("valid metric"),
            entries: IntGauge::with_opts(opts("registry_entries", "Entries in the in-memory copy"))
                .expect("valid metric"),
            since: prometheus::Gauge::with_opts(opts(
                "registry_state_since_seconds",
                "Unix time the store last became reachable or unreachable",
            ))
            .expect("valid metric"),
            resyncs: IntCounter::with_opts(opts(
                "registry_resyncs_total",
                "Whole-table reads to catch up with the store (start, reconnects)",
            ))
            .expect("valid metric"),
            outages: IntCounter::with_opts(opts(
                "registry_outages_total",
                "Times the entries store became unreachable",
            ))
            .expect("valid metric"),
            changes: IntCounterVec::new(
                opts(
                    "registry_changes_total",
                    "Changes the in-memory copy took, from any origin, by kind",
                ),
                &["kind"],
            )
            .expect("valid metric"),
        }
    }

    fn collectors(&self) -> [&dyn prometheus::core::Collector; 6] {
        [
            &self.up,
            &self.entries,
            &self.since,
            &self.resyncs,
            &self.outages,
            &self.changes,
        ]
    }
}

impl RegistryCollector {
    pub fn new(registry: &std::sync::Arc<longhaul_registry::Registry>) -> Self {
        Self {
            registry: std::sync::Arc::downgrade(registry),
            templates: RegistryFamilies::new(),
        }
    }
}

impl prometheus::core::Collector for RegistryCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.templates
            .collectors()
            .into_iter()
            .flat_map(|c| c.desc())
            .collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let Some(registry) = self.registry.upgrade() else {
            return Vec::new();
        };
        let status = registry.status();
        let f = RegistryFamilies::new();
        f.up.with_label_values(&[status.store.backend])
            .set(i64::from(
                status.state == longhaul_registry::StoreState::Connected,
            ));
        f.entries.set(status.entries as i64);
        f.since.set(
            status
                .since
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        f.resyncs.inc_by(status.resyncs);
        f.outages.inc_by(status.outages);
        for (kind, n) in status.changes {
            f.changes.with_label_values(&[kind]).inc_by(n);
        }
        f.collectors()
            .into_iter()
            .flat_map(|c| c.collect())
            .collect()
    }
}

/// The renditions' on-air streams, read at scrape time from the hub
/// ([`longhaul_hub::Hub::renditions`], [`longhaul_hub::Hub::on_air_totals`]):
/// `on_air_switches_total{to,reason}` (`reason`: started, silent, ended, failback),
/// `on_air_backup_seconds_total` (time a backup leg was on air), `renditions{on_air}`
/// (live renditions by the leg on air: primary, backup, none yet) and
/// `renditions_backup_only` (on air from the backup with no primary live).
pub struct OnAirCollector {
    hub: longhaul_hub::Hub,
    templates: OnAirFamilies,
}

struct OnAirFamilies {
    switches: IntCounterVec,
    backup_seconds: prometheus::Counter,
    renditions: IntGaugeVec,
    backup_only: IntGauge,
}

impl OnAirFamilies {
    fn new() -> Self {
        // Constant names and labels: building them cannot fail.
        let opts = prometheus::Opts::new;
        OnAirFamilies {
            switches: IntCounterVec::new(
                opts(
                    "on_air_switches_total",
                    "Legs that went on air for their rendition's players, by leg and why",
                ),
                &["to", "reason"],
            )
            .expect("valid metric"),
            backup_seconds: prometheus::Counter::with_opts(opts(
                "on_air_backup_seconds_total",
                "Time a backup leg was on air, all renditions together",
            ))
            .expect("valid metric"),
            renditions: IntGaugeVec::new(
                opts(
                    "renditions",
                    "Live renditions by the leg on air (none: no keyframe yet)",
                ),
                &["on_air"],
            )
            .expect("valid metric"),
            backup_only: IntGauge::with_opts(opts(
                "renditions_backup_only",
                "Renditions on air from the backup with no primary leg live",
            ))
            .expect("valid metric"),
        }
    }

    fn collectors(&self) -> [&dyn prometheus::core::Collector; 4] {
        [
            &self.switches,
            &self.backup_seconds,
            &self.renditions,
            &self.backup_only,
        ]
    }
}

impl OnAirCollector {
    pub fn new(hub: longhaul_hub::Hub) -> Self {
        Self {
            hub,
            templates: OnAirFamilies::new(),
        }
    }
}

impl prometheus::core::Collector for OnAirCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.templates
            .collectors()
            .into_iter()
            .flat_map(|c| c.desc())
            .collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let f = OnAirFamilies::new();
        let totals = self.hub.on_air_totals();
        for c in &totals.switches {
            f.switches
                .with_label_values(&[c.to.as_str(), c.reason.as_str()])
                .inc_by(c.count);
        }
        f.backup_seconds.inc_by(totals.backup_on_air_seconds);
        for on_air in ["primary", "backup", "none"] {
            f.renditions.with_label_values(&[on_air]);
        }
        for r in self.hub.renditions() {
            let on_air = r.on_air.map_or("none", |l| l.as_str());
            f.renditions.with_label_values(&[on_air]).inc();
            if r.backup_only() {
                f.backup_only.inc();
            }
        }
        f.collectors()
            .into_iter()
            .flat_map(|c| c.collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_series_with_node_labels() {
        let m = Metrics::new("nyc-1", "nyc");
        m.publishes
            .with_label_values(&["rejected", reason::WRONG_TOKEN, "tunnel", "fra"])
            .inc();
        let text = m.render();
        // Label order is the registry's business; check the set.
        let line = text
            .lines()
            .find(|l| l.starts_with("longhaul_publishes_total{"))
            .expect("series rendered");
        for label in [
            "node=\"nyc-1\"",
            "region=\"nyc\"",
            "outcome=\"rejected\"",
            "reason=\"wrong_token\"",
            "transport=\"tunnel\"",
            "encoder_region=\"fra\"",
        ] {
            assert!(line.contains(label), "{label} missing in {line}");
        }
        assert!(line.ends_with(" 1"), "{line}");
    }

    /// The refusals the abuse guard counts are the ones this node calls credential
    /// failures; a renamed reason would silently stop counting.
    #[test]
    fn the_abuse_guard_counts_the_credential_reasons() {
        use longhaul_node::abuse_gate::is_credential_failure;
        for r in [
            reason::MISSING_TOKEN,
            reason::WRONG_TOKEN,
            reason::UNKNOWN_ENTRY,
            reason::CALLBACK_REFUSED,
        ] {
            assert!(is_credential_failure(r), "{r}");
        }
        for r in [
            reason::OK,
            reason::BAD_STREAM_NAME,
            reason::UNKNOWN_APP,
            reason::INTERNAL,
            reason::TOO_MANY_FAILURES,
            reason::CALLBACK_UNAVAILABLE,
            reason::UNVERIFIED_TOKEN,
            reason::REVOKED,
            reason::UNKNOWN_GRANT,
        ] {
            assert!(!is_credential_failure(r), "{r}");
        }
    }
}
