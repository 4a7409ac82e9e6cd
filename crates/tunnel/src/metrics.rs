//! Prometheus series of a node's tunnels, read from the live connections at scrape time.
//!
//! quinn keeps RTT, congestion window, loss and byte counts per connection; copying them
//! into gauges on a timer would only make them stale. [`TunnelCollector`] reads them when
//! Prometheus scrapes. Register it in a registry with a `longhaul` prefix and `node`,
//! `region` constant labels, like every other longhaul series.

use crate::link::{TunnelSet, TunnelState};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts};
use std::sync::Arc;

/// Each link's labels: its peer, and which of the edge's tunnels to that peer it is
/// (`lane`, "0" on an edge that runs one shard). `max by (peer)` or `sum by (peer)`
/// gives a peer's view across lanes.
const PEER: &[&str] = &["peer", "peer_region", "lane"];

/// One family's definition, made afresh for every scrape.
struct Families {
    state: IntGaugeVec,
    state_changes: IntCounterVec,
    srtt: GaugeVec,
    cwnd: IntGaugeVec,
    lost: IntCounterVec,
    sent_packets: IntCounterVec,
    sent: IntCounterVec,
    received: IntCounterVec,
    open_streams: IntGaugeVec,
    streams: IntCounterVec,
    reconnects: IntCounterVec,
    refusals: IntCounterVec,
    protocol_errors: IntCounterVec,
    denied_cuts: IntCounterVec,
}

impl Families {
    fn new() -> Families {
        // The names and labels are constants: building them cannot fail.
        let gauge = |n: &str, h: &str, l: &[&str]| {
            IntGaugeVec::new(Opts::new(n, h), l).expect("valid metric")
        };
        let counter = |n: &str, h: &str, l: &[&str]| {
            IntCounterVec::new(Opts::new(n, h), l).expect("valid metric")
        };
        Families {
            state: gauge(
                "tunnel_state",
                "1 for the state each tunnel is in",
                &["peer", "peer_region", "lane", "state"],
            ),
            state_changes: counter(
                "tunnel_state_changes_total",
                "Times each tunnel entered each state",
                &["peer", "peer_region", "lane", "to"],
            ),
            srtt: GaugeVec::new(
                Opts::new(
                    "tunnel_srtt_seconds",
                    "Smoothed round-trip time of each tunnel",
                ),
                PEER,
            )
            .expect("valid metric"),
            cwnd: gauge(
                "tunnel_cwnd_bytes",
                "Congestion window of each tunnel",
                PEER,
            ),
            lost: counter(
                "tunnel_lost_packets_total",
                "Packets each tunnel declared lost",
                PEER,
            ),
            sent_packets: counter(
                "tunnel_sent_packets_total",
                "QUIC packets each tunnel sent (with tunnel_lost_packets_total, the path's loss)",
                PEER,
            ),
            sent: counter(
                "tunnel_sent_bytes_total",
                "UDP bytes each tunnel sent",
                PEER,
            ),
            received: counter(
                "tunnel_received_bytes_total",
                "UDP bytes each tunnel received",
                PEER,
            ),
            open_streams: gauge(
                "tunnel_open_streams",
                "Publish streams open on each tunnel",
                PEER,
            ),
            streams: counter(
                "tunnel_streams_total",
                "Publish streams opened on each tunnel",
                PEER,
            ),
            reconnects: counter(
                "tunnel_reconnects_total",
                "Reconnection attempts of each tunnel",
                PEER,
            ),
            refusals: counter(
                "tunnel_handshake_refusals_total",
                "Tunnel connections refused before they were up, by reason",
                &["reason"],
            ),
            protocol_errors: counter(
                "tunnel_protocol_errors_total",
                "Tunnels closed, or publish streams refused, for breaking the protocol, by reason",
                &["reason"],
            ),
            denied_cuts: counter(
                "tunnel_denied_cuts_total",
                "Live tunnels cut because the edge's certificate was added to the deny list",
                &[],
            ),
        }
    }

    fn collectors(&self) -> [&dyn Collector; 14] {
        [
            &self.state,
            &self.state_changes,
            &self.srtt,
            &self.cwnd,
            &self.lost,
            &self.sent_packets,
            &self.sent,
            &self.received,
            &self.open_streams,
            &self.streams,
            &self.reconnects,
            &self.refusals,
            &self.protocol_errors,
            &self.denied_cuts,
        ]
    }
}

/// Collects the series of every tunnel in a [`TunnelSet`].
pub struct TunnelCollector {
    set: Arc<TunnelSet>,
    templates: Families,
}

impl TunnelCollector {
    pub fn new(set: Arc<TunnelSet>) -> Self {
        Self {
            set,
            templates: Families::new(),
        }
    }
}

impl Collector for TunnelCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.templates
            .collectors()
            .into_iter()
            .flat_map(|c| c.desc())
            .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let f = Families::new();
        for s in self.set.snapshots() {
            let lane = s.lane.to_string();
            let peer = [s.peer.as_str(), s.peer_region.as_str(), lane.as_str()];
            for (state, entered) in TunnelState::ALL.iter().zip(s.transitions) {
                let labels = [peer[0], peer[1], peer[2], state.as_str()];
                f.state
                    .with_label_values(&labels)
                    .set(i64::from(s.state == *state));
                f.state_changes.with_label_values(&labels).inc_by(entered);
            }
            if let Some(rtt) = s.srtt {
                f.srtt.with_label_values(&peer).set(rtt.as_secs_f64());
            }
            if let Some(cwnd) = s.cwnd {
                f.cwnd.with_label_values(&peer).set(cwnd as i64);
            }
            f.lost.with_label_values(&peer).inc_by(s.lost_packets);
            f.sent_packets
                .with_label_values(&peer)
                .inc_by(s.sent_packets);
            f.sent.with_label_values(&peer).inc_by(s.sent_bytes);
            f.received.with_label_values(&peer).inc_by(s.received_bytes);
            f.open_streams.with_label_values(&peer).set(s.open_streams);
            f.streams.with_label_values(&peer).inc_by(s.streams_total);
            f.reconnects.with_label_values(&peer).inc_by(s.reconnects);
        }
        for (reason, n) in self.set.refusals() {
            f.refusals.with_label_values(&[reason]).inc_by(n);
        }
        for (reason, n) in self.set.protocol_errors() {
            f.protocol_errors.with_label_values(&[reason]).inc_by(n);
        }
        f.denied_cuts
            .with_label_values::<&str>(&[])
            .inc_by(self.set.denied_cuts());
        f.collectors()
            .into_iter()
            .flat_map(|c| c.collect())
            .collect()
    }
}
