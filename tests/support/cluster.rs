//! An origin with its tunnel listener and an edge tunnelled to it, on loopback: real
//! QUIC, real mutual TLS on a cluster CA made for the test.

use super::{merge, start_origin, TestOrigin};
use longhaul_edge::{Edge, EdgeConfig};
use longhaul_tunnel::pki::{ClusterCa, NodeFiles, NodeRole};
use longhaul_tunnel::TunnelState;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The origin's certificate name, which the edge checks.
pub const ORIGIN_NAME: &str = "test-origin.longhaul.internal";

/// QUIC settings for a test on loopback: quick reconnects, small UDP buffers (the
/// kernel's defaults suffice, and asking more only logs a warning).
const FAST_TRANSPORT: &str = r#"
    reconnect_initial_ms = 50
    reconnect_max_ms = 200
    udp_recv_buffer = 262144
    udp_send_buffer = 262144
"#;

pub struct TestCluster {
    pub origin: TestOrigin,
    pub edge: Edge,
    pub pki: tempfile::TempDir,
    /// The cluster CA, to issue more node certificates.
    pub ca: ClusterCa,
}

impl TestCluster {
    /// `rtmp://edge/kLive/?t=TOKEN/NAME`, where an encoder near the edge publishes.
    pub fn edge_publish_url(&self, token: &str, name: &str) -> String {
        format!("rtmp://{}/kLive/?t={token}/{name}", self.edge.rtmp_addr)
    }

    pub fn edge_metrics(&self) -> String {
        self.edge.state.metrics.render()
    }

    pub async fn stop(self) {
        self.edge.stop().await;
        self.origin.origin.stop().await;
    }
}

/// An origin with `[tunnel]` and an edge whose primary (and only) origin it is, its
/// tunnel connected. `edge_extra` is TOML merged over the edge's config.
pub async fn start_cluster(edge_extra: &str) -> TestCluster {
    start_cluster_with("", edge_extra).await
}

/// [`start_cluster`], with `origin_extra` added to the origin's config too.
pub async fn start_cluster_with(origin_extra: &str, edge_extra: &str) -> TestCluster {
    start_cluster_sharded(origin_extra, edge_extra, 1).await
}

/// [`start_cluster_with`], the edge on `shards` shards (a thread each past the first, and
/// a tunnel lane each); [`wait_connected`] waits for every lane.
pub async fn start_cluster_sharded(
    origin_extra: &str,
    edge_extra: &str,
    shards: usize,
) -> TestCluster {
    let pki = tempfile::tempdir().expect("tempdir");
    let ca = ClusterCa::generate("longhaul test cluster").expect("CA");
    let origin_files = ca
        .issue(ORIGIN_NAME, NodeRole::Origin, pki.path())
        .expect("origin cert");
    let edge_files = ca
        .issue("test-edge.longhaul.internal", NodeRole::Edge, pki.path())
        .expect("edge cert");
    let origin = start_origin(&format!(
        r#"
        [tunnel]
        listen = "127.0.0.1:0"
        edge_name_suffix = "longhaul.internal"
        {tunnel}
        {origin_extra}
        "#,
        tunnel = tunnel_tls_and_transport(&origin_files),
    ))
    .await;
    let tunnel = origin
        .origin
        .tunnel_addr
        .expect("the origin's tunnel is on");
    let edge = start_edge_on(tunnel, &edge_files, edge_extra, shards).await;
    wait_connected(&edge).await;
    TestCluster {
        origin,
        edge,
        pki,
        ca,
    }
}

/// An edge on ephemeral ports whose one origin is at `tunnel` (nothing need listen there).
pub async fn start_edge(tunnel: SocketAddr, files: &NodeFiles, extra: &str) -> Edge {
    start_edge_on(tunnel, files, extra, 1).await
}

/// [`start_edge`] on `shards` shards.
pub async fn start_edge_on(
    tunnel: SocketAddr,
    files: &NodeFiles,
    extra: &str,
    shards: usize,
) -> Edge {
    let doc = format!(
        r#"
        [node]
        id = "test-edge"
        region = "fra"
        [rtmp]
        listen = "127.0.0.1:0"
        [http]
        listen = "127.0.0.1:0"
        [tunnel]
        primary = "test-origin"
        bind = "127.0.0.1:0"
        origins = [{{ id = "test-origin", region = "nyc", addr = "{tunnel}", server_name = "{ORIGIN_NAME}" }}]
        {rest}
        "#,
        rest = tunnel_tls_and_transport(files),
    );
    let mut table: toml::Table = doc.parse().expect("edge test config");
    merge(&mut table, extra.parse().expect("extra edge config"));
    let config: EdgeConfig = table.try_into().expect("edge test config");
    Edge::start_sharded(config, shards)
        .await
        .expect("edge starts")
}

/// `[tunnel.tls]` with a node's files and `[tunnel.transport]` for loopback.
fn tunnel_tls_and_transport(files: &NodeFiles) -> String {
    format!(
        "[tunnel.tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n[tunnel.transport]\n{FAST_TRANSPORT}",
        files.ca.display().to_string(),
        files.cert.display().to_string(),
        files.key.display().to_string(),
    )
}

/// Waits (bounded) until every tunnel of `edge` is connected.
pub async fn wait_connected(edge: &Edge) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let snapshots = edge.state.upstreams.set().snapshots();
        if snapshots.iter().all(|s| s.state == TunnelState::Connected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the edge's tunnels did not connect within 10 s: {snapshots:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
