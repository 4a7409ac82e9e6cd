//! `longhaul dev`: the whole local cluster on 127.0.0.1, with nothing to configure.
//!
//! It reads the embedded `config/dev.toml` (the port table every developer and test
//! relies on), makes a data directory with the shared entries registry and a self-signed
//! certificate for RTMPS, starts the nodes in this process, creates a demo entry on first
//! start and prints commands to publish and play that work when pasted.

use anyhow::Context;
use longhaul_edge::{Edge, EdgeConfig};
use longhaul_origin::{Config as OriginConfig, Origin};
use longhaul_tunnel::pki::{ClusterCa, NodeFiles, NodeRole};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The dev cluster's layout, compiled in so `longhaul dev` needs no file.
const DEV_CLUSTER: &str = include_str!("../config/dev.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevCluster {
    origins: BTreeMap<String, DevOrigin>,
    edges: BTreeMap<String, DevEdge>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevOrigin {
    id: String,
    region: String,
    rtmp: SocketAddr,
    rtmps: SocketAddr,
    http: SocketAddr,
    /// UDP address of the QUIC endpoint the edges connect to.
    tunnel: SocketAddr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevEdge {
    id: String,
    region: String,
    rtmp: SocketAddr,
    rtmps: SocketAddr,
    http: SocketAddr,
    /// Key of the origin in `origins` that takes leg p; leg b goes to the other.
    primary: String,
}

/// The TLS files of the dev cluster: one RTMPS certificate, a cluster CA and a
/// certificate per node.
struct DevTls {
    rtmps_cert: PathBuf,
    rtmps_key: PathBuf,
    nodes: BTreeMap<String, NodeFiles>,
}

pub async fn run(data_dir: PathBuf) -> anyhow::Result<()> {
    let cluster: DevCluster =
        toml::from_str(DEV_CLUSTER).context("the embedded config/dev.toml is invalid")?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);
    let (rtmps_cert, rtmps_key) = dev_certificate(&data_dir)?;
    let tls = DevTls {
        rtmps_cert,
        rtmps_key,
        nodes: cluster_certificates(&data_dir, &cluster)?,
    };
    let registry_path = data_dir.join("registry.db");

    let mut origins = Vec::new();
    for node in cluster.origins.values() {
        let config = origin_config(node, &registry_path, &tls)?;
        let origin = Origin::start(config).await.with_context(|| {
            format!(
                "starting dev origin {} (is another `longhaul dev` running?)",
                node.id
            )
        })?;
        origins.push((node, origin));
    }
    let mut edges = Vec::new();
    for node in cluster.edges.values() {
        let config = edge_config(node, &cluster, &tls)?;
        let edge = Edge::start(config).await.with_context(|| {
            format!(
                "starting dev edge {} (is another `longhaul dev` running?)",
                node.id
            )
        })?;
        edges.push((node, edge));
    }
    let first = &origins
        .first()
        .context("config/dev.toml names no origin")?
        .1;
    let entry = demo_entry(first).await?;
    print_banner(&data_dir, &cluster, &origins, &edges, &entry);

    tokio::select! {
        _ = crate::shutdown_signal() => tracing::info!("shutting down the dev cluster"),
        _ = async { for (_, o) in origins.iter_mut() { o.wait().await; } } => {
            tracing::error!("a dev origin stopped unexpectedly");
        }
        _ = async { for (_, e) in edges.iter_mut() { e.wait().await; } } => {
            tracing::error!("a dev edge stopped unexpectedly");
        }
    }
    for (_, edge) in edges {
        edge.stop().await;
    }
    for (_, origin) in origins {
        origin.stop().await;
    }
    Ok(())
}

/// Tunnel settings for loopback: 2 MiB UDP buffers, within a stock kernel's cap, carry a
/// dev cluster's few streams; the 8 MiB production default would only log that the
/// kernel granted less.
const DEV_TRANSPORT: &str = r#"
        [tunnel.transport]
        udp_recv_buffer = 2097152
        udp_send_buffer = 2097152
"#;

/// Dev nodes' tunnel certificates are issued for `{id}.` this; origins check it.
const TUNNEL_NAME_SUFFIX: &str = "tunnel.longhaul.dev";

/// The name a node's tunnel certificate is issued for.
fn tunnel_name(id: &str) -> String {
    format!("{id}.{TUNNEL_NAME_SUFFIX}")
}

/// A fresh cluster CA and node certificates, made on every start (all dev nodes start
/// together, so nothing outlives them) in `data_dir/cluster`.
fn cluster_certificates(
    data_dir: &Path,
    cluster: &DevCluster,
) -> anyhow::Result<BTreeMap<String, NodeFiles>> {
    let dir = data_dir.join("cluster");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = ClusterCa::generate("longhaul dev cluster CA").context("making the dev cluster CA")?;
    let ids = (cluster.origins.values().map(|o| (&o.id, NodeRole::Origin)))
        .chain(cluster.edges.values().map(|e| (&e.id, NodeRole::Edge)));
    let mut nodes = BTreeMap::new();
    for (id, role) in ids {
        let files = ca
            .issue(&tunnel_name(id), role, &dir)
            .with_context(|| format!("making the tunnel certificate of {id}"))?;
        nodes.insert(id.clone(), files);
    }
    tracing::info!(dir = %dir.display(), "made the dev cluster CA and node certificates");
    Ok(nodes)
}

fn node_tls<'a>(tls: &'a DevTls, id: &str) -> anyhow::Result<&'a NodeFiles> {
    tls.nodes
        .get(id)
        .with_context(|| format!("no tunnel certificate for {id}"))
}

/// What every dev node's config starts with: who it is and where it listens.
fn node_sections(
    id: &str,
    region: &str,
    (rtmp, rtmps, http): (SocketAddr, SocketAddr, SocketAddr),
    tls: &DevTls,
) -> String {
    format!(
        r#"
        [node]
        id = "{id}"
        region = "{region}"
        [rtmp]
        listen = "{rtmp}"
        [rtmps]
        listen = "{rtmps}"
        cert = {cert:?}
        key = {key:?}
        [http]
        listen = "{http}"
        "#,
        cert = tls.rtmps_cert.display().to_string(),
        key = tls.rtmps_key.display().to_string(),
    )
}

/// A dev node's `[tunnel.tls]` and `[tunnel.transport]`.
fn tunnel_tls_sections(files: &NodeFiles) -> String {
    format!(
        r#"
        [tunnel.tls]
        ca = {ca:?}
        cert = {cert:?}
        key = {key:?}
        {DEV_TRANSPORT}
        "#,
        ca = files.ca.display().to_string(),
        cert = files.cert.display().to_string(),
        key = files.key.display().to_string(),
    )
}

// Configs are built as TOML documents so dev nodes take exactly the path production
// configs take.
fn origin_config(node: &DevOrigin, registry: &Path, tls: &DevTls) -> anyhow::Result<OriginConfig> {
    let doc = format!(
        r#"
        {common}
        [registry]
        path = {registry:?}
        [endpoints]
        host = "{host}"
        rtmp_port = {rtmp_port}
        rtmps_port = {rtmps_port}
        leg_subdomains = false
        renditions = 3
        [tunnel]
        listen = "{tunnel}"
        edge_name_suffix = "{suffix}"
        {tunnel_tls}
        "#,
        common = node_sections(
            &node.id,
            &node.region,
            (node.rtmp, node.rtmps, node.http),
            tls
        ),
        registry = registry.display().to_string(),
        host = node.rtmp.ip(),
        rtmp_port = node.rtmp.port(),
        rtmps_port = node.rtmps.port(),
        tunnel = node.tunnel,
        suffix = TUNNEL_NAME_SUFFIX,
        tunnel_tls = tunnel_tls_sections(node_tls(tls, &node.id)?),
    );
    toml::from_str(&doc).with_context(|| format!("dev config of {}", node.id))
}

fn edge_config(node: &DevEdge, cluster: &DevCluster, tls: &DevTls) -> anyhow::Result<EdgeConfig> {
    let primary = cluster.origins.get(&node.primary).with_context(|| {
        format!(
            "edge {}: primary {:?} is not an origin",
            node.id, node.primary
        )
    })?;
    let origins: Vec<String> = cluster
        .origins
        .values()
        .map(|o| {
            format!(
                "{{ id = {id:?}, region = {region:?}, addr = \"{addr}\", server_name = {name:?} }}",
                id = o.id,
                region = o.region,
                addr = o.tunnel,
                name = tunnel_name(&o.id),
            )
        })
        .collect();
    let doc = format!(
        r#"
        {common}
        [tunnel]
        primary = "{primary}"
        bind = "127.0.0.1:0"
        origins = [{origins}]
        {tunnel_tls}
        "#,
        common = node_sections(
            &node.id,
            &node.region,
            (node.rtmp, node.rtmps, node.http),
            tls
        ),
        primary = primary.id,
        origins = origins.join(", "),
        tunnel_tls = tunnel_tls_sections(node_tls(tls, &node.id)?),
    );
    toml::from_str(&doc).with_context(|| format!("dev config of {}", node.id))
}

/// A self-signed certificate for 127.0.0.1 and localhost, made once per data dir.
fn dev_certificate(data_dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = data_dir.join("tls");
    let (cert, key) = (dir.join("dev-cert.pem"), dir.join("dev-key.pem"));
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .context("generating the dev certificate")?;
    std::fs::write(&cert, certified.cert.pem())
        .with_context(|| format!("writing {}", cert.display()))?;
    write_private(&key, certified.key_pair.serialize_pem().as_bytes())?;
    tracing::info!(cert = %cert.display(), "made a self-signed dev certificate");
    Ok((cert, key))
}

fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}

/// The first entry of the registry, created as "demo" when there is none.
async fn demo_entry(origin: &Origin) -> anyhow::Result<longhaul_registry::Entry> {
    let registry = origin
        .state
        .registry
        .as_ref()
        .context("the dev origin has no registry")?;
    if let Some(entry) = registry.list().into_iter().next() {
        return Ok(entry);
    }
    Ok(registry.create_entry(Some("demo")).await?)
}

fn print_banner(
    data_dir: &Path,
    cluster: &DevCluster,
    origins: &[(&DevOrigin, Origin)],
    edges: &[(&DevEdge, Edge)],
    entry: &longhaul_registry::Entry,
) {
    let mut out = String::new();
    out.push_str(&format!(
        "\nlonghaul dev cluster is up (data in {})\n\n",
        data_dir.display()
    ));
    for (node, o) in origins {
        out.push_str(&format!(
            "  origin {:<4} rtmp://{}  rtmps://{}  http://{}  tunnel udp/{}\n",
            node.region,
            o.rtmp_addr,
            o.rtmps_addr
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            o.http_addr,
            o.tunnel_addr
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
        ));
    }
    for (node, e) in edges {
        out.push_str(&format!(
            "  edge   {:<4} rtmp://{}  rtmps://{}  http://{}\n",
            node.region,
            e.rtmp_addr,
            e.rtmps_addr
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            e.http_addr,
        ));
    }
    let (id, token) = (&entry.id, &entry.token);
    out.push_str(&format!("\nDemo entry {id} (token {token}).\n"));
    let test_pattern =
        "ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440 \
         -c:v libx264 -preset veryfast -tune zerolatency -g 60 -b:v 2500k -c:a aac -f flv";
    // Each region's encoder publishes to its edge: the primary leg (i=0) goes through the
    // tunnel to the edge's primary origin, the backup leg (i=1) to the other origin.
    for (node, edge) in edges {
        let primary = cluster.origins.get(&node.primary);
        let backup = cluster.origins.iter().find(|(k, _)| **k != node.primary);
        let play = |o: Option<&DevOrigin>| {
            o.map(|o| {
                format!(
                    "ffplay rtmp://{}/kLive/{id}_1   (origin {})",
                    o.rtmp, o.region
                )
            })
            .unwrap_or_default()
        };
        out.push_str(&format!(
            "\nFrom {region}: publish through edge {region}, primary leg:\n\n  \
             {test_pattern} \"rtmp://{rtmp}/kLive/?t={token}&i=0/{id}_1\"\n\
             \n  play: {play_p}\n\
             \n  backup leg: same command with i=1; play: {play_b}\n",
            region = node.region,
            rtmp = edge.rtmp_addr,
            play_p = play(primary),
            play_b = play(backup.map(|(_, o)| o)),
        ));
    }
    if let Some((node, origin)) = origins.first() {
        out.push_str(&format!(
            "\nOr publish straight to origin {region}:\n\n  {test_pattern} \"rtmp://{rtmp}/kLive/?t={token}/{id}_1\"\n\
             \n  play: ffplay http://{http}/live/{id}_1.flv\n",
            region = node.region,
            rtmp = origin.rtmp_addr,
            http = origin.http_addr,
        ));
    }
    let api = origins
        .first()
        .map(|(_, o)| o.http_addr.to_string())
        .unwrap_or_default();
    out.push_str(&format!(
        "\nMore entries: longhaul entry create --name NAME   (API at http://{api})\n"
    ));
    println!("{out}");
}
