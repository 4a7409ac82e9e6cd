//! `longhaul dev`: the whole local cluster on 127.0.0.1, with nothing to configure.
//!
//! It reads the embedded `config/dev.toml` (the port table every developer and test
//! relies on), moves it by `--port-offset` when asked, and checks that every port is free
//! and that no other `longhaul dev` holds the data directory (a lock file) before it
//! writes anything. Then it makes the data directory's shared entries registry and
//! certificates, builds each node's config as a struct (the same types production
//! configs are read into, so dev nodes take the path production nodes take), starts the
//! nodes in this process, creates a demo entry on first start and prints commands to
//! publish and play that work when pasted.

use anyhow::Context;
use longhaul_edge::config::RelaySection;
use longhaul_edge::{Edge, EdgeConfig};
use longhaul_node::config::{HttpSection, NodeSection, RtmpSection, RtmpsSection};
use longhaul_origin::config::{
    EndpointsSection, LegAddress, RegionEndpoint, RegistrySection, SpeedTestSection,
};
use longhaul_origin::{Config as OriginConfig, Origin};
use longhaul_tunnel::pki::{ClusterCa, NodeFiles, NodeRole};
use longhaul_tunnel::{
    ClusterTlsPaths, OriginPeer, TransportSettings, TunnelListenSection, TunnelSection,
};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The dev cluster's layout, compiled in so `longhaul dev` needs no file.
const DEV_CLUSTER: &str = include_str!("../config/dev.toml");

/// What `longhaul dev` is asked to do.
pub struct DevOptions {
    /// Where the registry database and the dev certificates live.
    pub data_dir: PathBuf,
    /// Added to every port of the layout, so a second cluster can run beside the first.
    pub port_offset: u16,
}

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
    /// What an entry's speed tests call the data centre, `US (New York)`.
    name: String,
    rtmp: SocketAddr,
    rtmps: SocketAddr,
    /// RTSP publishes (ANNOUNCE/RECORD), for devices that do not speak RTMP.
    rtsp: SocketAddr,
    http: SocketAddr,
    /// UDP address of the QUIC endpoint the edges connect to.
    tunnel: SocketAddr,
}

impl DevOrigin {
    /// How another node reaches this origin's tunnel: an edge, or a peer origin.
    fn tunnel_peer(&self) -> OriginPeer {
        OriginPeer {
            id: self.id.clone(),
            region: self.region.clone(),
            addr: self.tunnel.to_string(),
            server_name: tunnel_name(&self.id),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevEdge {
    id: String,
    region: String,
    /// What an entry's endpoint list calls the region, `EMEA (Frankfurt)`.
    name: String,
    rtmp: SocketAddr,
    rtmps: SocketAddr,
    /// RTSP publishes, relayed to the origins as RTMP ones are.
    rtsp: SocketAddr,
    http: SocketAddr,
    /// Key of the origin in `origins` that takes leg p; leg b goes to the other.
    primary: String,
}

/// One port of the layout, named for the error that says it is taken.
struct LayoutPort {
    addr: SocketAddr,
    udp: bool,
    what: String,
}

impl DevCluster {
    /// The embedded layout, every port moved up by `offset`.
    fn load(offset: u16) -> anyhow::Result<DevCluster> {
        let mut cluster: DevCluster =
            toml::from_str(DEV_CLUSTER).context("the embedded config/dev.toml is invalid")?;
        let shift = |addr: &mut SocketAddr| -> anyhow::Result<()> {
            let port = addr.port().checked_add(offset).with_context(|| {
                format!(
                    "--port-offset {offset} moves port {} past 65535; the dev ports span \
                     1554-8085, so use an offset of at most {}",
                    addr.port(),
                    u16::MAX - 8085
                )
            })?;
            addr.set_port(port);
            Ok(())
        };
        for o in cluster.origins.values_mut() {
            for addr in [
                &mut o.rtmp,
                &mut o.rtmps,
                &mut o.rtsp,
                &mut o.http,
                &mut o.tunnel,
            ] {
                shift(addr)?;
            }
        }
        for e in cluster.edges.values_mut() {
            for addr in [&mut e.rtmp, &mut e.rtmps, &mut e.rtsp, &mut e.http] {
                shift(addr)?;
            }
        }
        Ok(cluster)
    }

    /// Every port the cluster listens on.
    fn ports(&self) -> Vec<LayoutPort> {
        let mut ports = Vec::new();
        let mut add = |addr, udp, what: String| ports.push(LayoutPort { addr, udp, what });
        for o in self.origins.values() {
            let node = format!("origin {}", o.region);
            add(o.rtmp, false, format!("RTMP of {node}"));
            add(o.rtmps, false, format!("RTMPS of {node}"));
            add(o.rtsp, false, format!("RTSP of {node}"));
            add(o.rtsp, true, format!("RTP over UDP of {node}"));
            add(next_port(o.rtsp), true, format!("RTCP over UDP of {node}"));
            add(o.http, false, format!("HTTP of {node}"));
            add(o.tunnel, true, format!("QUIC tunnel (UDP) of {node}"));
        }
        for e in self.edges.values() {
            let node = format!("edge {}", e.region);
            add(e.rtmp, false, format!("RTMP of {node}"));
            add(e.rtmps, false, format!("RTMPS of {node}"));
            add(e.rtsp, false, format!("RTSP of {node}"));
            add(e.rtsp, true, format!("RTP over UDP of {node}"));
            add(next_port(e.rtsp), true, format!("RTCP over UDP of {node}"));
            add(e.http, false, format!("HTTP of {node}"));
        }
        ports
    }
}

/// The port after `addr`'s (an RTSP node's RTCP port, after its RTP port).
fn next_port(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip(), addr.port().saturating_add(1))
}

/// Fails, naming every taken port, unless all of the layout's ports can be bound now.
/// (A port taken between this check and the node's own bind still fails that bind,
/// with the address named; this check exists so that nothing is written before.)
fn check_ports_free(cluster: &DevCluster, options: &DevOptions) -> anyhow::Result<()> {
    let taken: Vec<String> = cluster
        .ports()
        .into_iter()
        .filter_map(|p| {
            let result = if p.udp {
                std::net::UdpSocket::bind(p.addr).map(drop)
            } else {
                std::net::TcpListener::bind(p.addr).map(drop)
            };
            result
                .err()
                .map(|e| format!("  {} ({}): {}", p.addr, p.what, io_reason(&e)))
        })
        .collect();
    if taken.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the dev cluster's ports are not free:\n{}\nIs another `longhaul dev` running? Stop it, \
         or run this one beside it: `longhaul dev --port-offset {} --data-dir {}-2`",
        taken.join("\n"),
        options
            .port_offset
            .saturating_add(10_000)
            .min(u16::MAX - 8085),
        options.data_dir.display(),
    )
}

/// An IO error's words without Rust's ` (os error N)`.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The lock that keeps two `longhaul dev` off one data directory; held while the file
/// is open (the OS releases it when the process ends, however it ends).
struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    const FILE: &'static str = "dev.lock";

    /// Takes the lock of `dir` (created if missing), or says which process holds it.
    fn acquire(dir: &Path) -> anyhow::Result<DataDirLock> {
        use std::io::{Read, Seek, Write};
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
        let path = dir.join(Self::FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => String::new(),
                    pid => format!(" (pid {pid})"),
                };
                anyhow::bail!(
                    "the data dir {} is in use by another `longhaul dev`{holder}; \
                     stop it, or give this one its own `--data-dir` (and `--port-offset`)",
                    dir.display()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(DataDirLock { _file: file })
    }
}

/// The TLS files of the dev cluster: one RTMPS certificate, a cluster CA and a
/// certificate per node.
struct DevTls {
    rtmps_cert: PathBuf,
    rtmps_key: PathBuf,
    nodes: BTreeMap<String, NodeFiles>,
}

pub async fn run(options: DevOptions) -> anyhow::Result<()> {
    let cluster = DevCluster::load(options.port_offset)?;
    // Nothing is written before both checks: a second `longhaul dev` leaves the first
    // one's files as they are.
    check_ports_free(&cluster, &options)?;
    let _lock = DataDirLock::acquire(&options.data_dir)?;
    let data_dir = options
        .data_dir
        .canonicalize()
        .unwrap_or(options.data_dir.clone());
    let (rtmps_cert, rtmps_key) = dev_certificate(&data_dir)?;
    let tls = DevTls {
        rtmps_cert,
        rtmps_key,
        nodes: cluster_certificates(&data_dir, &cluster)?,
    };
    let registry_path = data_dir.join("registry.db");

    let mut origins = Vec::new();
    for node in cluster.origins.values() {
        let config = origin_config(node, &cluster, &registry_path, &tls)?;
        let origin = Origin::start(config)
            .await
            .with_context(|| format!("starting dev origin {}", node.id))?;
        origins.push((node, origin));
    }
    let mut edges = Vec::new();
    for node in cluster.edges.values() {
        let config = edge_config(node, &cluster, &tls)?;
        let edge = Edge::start(config)
            .await
            .with_context(|| format!("starting dev edge {}", node.id))?;
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
fn dev_transport() -> TransportSettings {
    TransportSettings {
        udp_recv_buffer: 2 * 1024 * 1024,
        udp_send_buffer: 2 * 1024 * 1024,
        ..TransportSettings::default()
    }
}

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

/// A dev node's `[tunnel.tls]`: the cluster CA and its own certificate.
fn cluster_tls(tls: &DevTls, id: &str) -> anyhow::Result<ClusterTlsPaths> {
    let files = tls
        .nodes
        .get(id)
        .with_context(|| format!("no tunnel certificate for {id}"))?;
    Ok(ClusterTlsPaths {
        ca: files.ca.clone(),
        cert: Some(files.cert.clone()),
        key: Some(files.key.clone()),
    })
}

/// Who a dev node is and where it listens: `[node]`, `[rtmp]`, `[rtmps]`, `[http]`.
struct NodeListeners {
    node: NodeSection,
    rtmp: RtmpSection,
    rtmps: RtmpsSection,
    http: HttpSection,
}

impl NodeListeners {
    fn new(
        id: &str,
        region: &str,
        (rtmp, rtmps, http): (SocketAddr, SocketAddr, SocketAddr),
        tls: &DevTls,
    ) -> NodeListeners {
        NodeListeners {
            node: NodeSection {
                id: id.into(),
                region: region.into(),
                certificate_poll_ms: NodeSection::DEFAULT_CERTIFICATE_POLL_MS,
                memory_trim_secs: longhaul_node::memory::DEFAULT_TRIM_SECS,
                drain_grace_secs: NodeSection::DEFAULT_DRAIN_GRACE_SECS,
            },
            rtmp: RtmpSection { listen: rtmp },
            rtmps: RtmpsSection {
                listen: Some(rtmps),
                cert: Some(tls.rtmps_cert.clone()),
                key: Some(tls.rtmps_key.clone()),
            },
            http: HttpSection {
                listen: http,
                ..HttpSection::default()
            },
        }
    }
}

/// The endpoints every dev origin hands out, the product's list on loopback: leg p at
/// the first origin (nyc) and leg b at the other (pao), over RTMP, RTMPS and RTSP (the
/// origins' `rtsp` ports; no RTSPS in dev), then each edge as its region's endpoint (both
/// legs at the edge, told apart by `i=0|1`; the edge relays leg p to its primary origin
/// and leg b to the other), over RTMP, RTMPS and RTSP.
fn dev_endpoints(cluster: &DevCluster) -> anyhow::Result<EndpointsSection> {
    let mut origins = cluster.origins.values();
    let primary = origins.next().context("config/dev.toml names no origin")?;
    let backup = origins.next().map(|o| LegAddress {
        host: o.rtmp.ip().to_string(),
        rtmp_port: Some(o.rtmp.port()),
        rtmps_port: Some(o.rtmps.port()),
        rtsp_port: Some(o.rtsp.port()),
        rtsps_port: None,
    });
    Ok(EndpointsSection {
        host: primary.rtmp.ip().to_string(),
        rtmp_port: primary.rtmp.port(),
        rtmps_port: primary.rtmps.port(),
        rtsp_port: Some(primary.rtsp.port()),
        rtsps_port: None,
        leg_subdomains: false,
        renditions: 3,
        backup,
        regions: cluster
            .edges
            .values()
            .map(|e| RegionEndpoint {
                region: e.region.clone(),
                name: e.name.clone(),
                host: e.rtmp.ip().to_string(),
                rtmp_port: e.rtmp.port(),
                rtmps_port: e.rtmps.port(),
                rtsp_port: Some(e.rtsp.port()),
                rtsps_port: None,
                backup: None,
                speed_test: Some(speed_test_url(e.http)),
            })
            .collect(),
        speed_tests: cluster
            .origins
            .values()
            .map(|o| SpeedTestSection {
                region: o.region.clone(),
                name: o.name.clone(),
                url: speed_test_url(o.http),
            })
            .collect(),
        ..EndpointsSection::default()
    })
}

/// A dev node's speed test, on its HTTP port.
fn speed_test_url(http: SocketAddr) -> String {
    format!("http://{http}{}", longhaul_node::speedtest::PATH)
}

/// A node of the dev cluster, as `longhaul speedtest` measures it.
pub struct DevNode {
    pub id: String,
    pub region: String,
    /// What the product calls the place, `EMEA (Frankfurt)`.
    pub name: String,
    pub role: &'static str,
    pub http: SocketAddr,
    pub rtmp: SocketAddr,
}

/// The five nodes of the dev cluster, origins first, its ports moved by `offset`.
pub fn nodes(offset: u16) -> anyhow::Result<Vec<DevNode>> {
    let cluster = DevCluster::load(offset)?;
    let origins = cluster.origins.values().map(|o| DevNode {
        id: o.id.clone(),
        region: o.region.clone(),
        name: o.name.clone(),
        role: "origin",
        http: o.http,
        rtmp: o.rtmp,
    });
    let edges = cluster.edges.values().map(|e| DevNode {
        id: e.id.clone(),
        region: e.region.clone(),
        name: e.name.clone(),
        role: "edge",
        http: e.http,
        rtmp: e.rtmp,
    });
    Ok(origins.chain(edges).collect())
}

fn origin_config(
    node: &DevOrigin,
    cluster: &DevCluster,
    registry: &Path,
    tls: &DevTls,
) -> anyhow::Result<OriginConfig> {
    let listeners = NodeListeners::new(
        &node.id,
        &node.region,
        (node.rtmp, node.rtmps, node.http),
        tls,
    );
    Ok(OriginConfig {
        node: listeners.node,
        rtmp: listeners.rtmp,
        rtmps: listeners.rtmps,
        rtsp: longhaul_node::RtspSection {
            listen: Some(node.rtsp),
            tls_listen: None,
            // RTP over UDP on the same port number, RTCP on the next.
            udp_listen: Some(node.rtsp),
        },
        http: longhaul_origin::config::HttpSection {
            server: listeners.http,
            api_token: None,
        },
        registry: Some(RegistrySection {
            path: Some(registry.to_path_buf()),
            ..RegistrySection::default()
        }),
        auth: Default::default(),
        ingest: Default::default(),
        endpoints: dev_endpoints(cluster)?,
        abuse: Default::default(),
        on_air: Default::default(),
        // Every other dev origin: each pulls the legs the other has, for its viewers.
        peering: longhaul_origin::config::PeeringSection {
            peers: cluster
                .origins
                .values()
                .filter(|o| o.id != node.id)
                .map(DevOrigin::tunnel_peer)
                .collect(),
            bind: ([127, 0, 0, 1], 0).into(),
            ..Default::default()
        },
        tunnel: Some(TunnelListenSection {
            listen: node.tunnel,
            tls: cluster_tls(tls, &node.id)?,
            edge_name_suffix: Some(TUNNEL_NAME_SUFFIX.into()),
            allow_any_edge_name: false,
            denied_certificates: Vec::new(),
            denied_certificates_file: None,
            transport: dev_transport(),
        }),
    })
}

fn edge_config(node: &DevEdge, cluster: &DevCluster, tls: &DevTls) -> anyhow::Result<EdgeConfig> {
    let primary = cluster.origins.get(&node.primary).with_context(|| {
        format!(
            "edge {}: primary {:?} is not an origin",
            node.id, node.primary
        )
    })?;
    let listeners = NodeListeners::new(
        &node.id,
        &node.region,
        (node.rtmp, node.rtmps, node.http),
        tls,
    );
    Ok(EdgeConfig {
        node: listeners.node,
        rtmp: listeners.rtmp,
        rtmps: listeners.rtmps,
        rtsp: longhaul_node::RtspSection {
            listen: Some(node.rtsp),
            tls_listen: None,
            // RTP over UDP on the same port number, RTCP on the next.
            udp_listen: Some(node.rtsp),
        },
        http: listeners.http,
        ingest: Default::default(),
        relay: RelaySection::default(),
        abuse: Default::default(),
        router: Default::default(),
        tunnel: TunnelSection {
            origins: cluster
                .origins
                .values()
                .map(DevOrigin::tunnel_peer)
                .collect(),
            primary: primary.id.clone(),
            tls: cluster_tls(tls, &node.id)?,
            bind: ([127, 0, 0, 1], 0).into(),
            transport: dev_transport(),
        },
    })
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
         -c:v libx264 -preset veryfast -tune zerolatency -g 60 -b:v 2500k -c:a aac";
    // Each region's encoder publishes to its edge: the primary leg (i=0) goes through the
    // tunnel to the edge's primary origin, the backup leg (i=1) to the other origin. One
    // encode sent to both legs (ffmpeg's tee; a leg that fails is dropped, the other goes
    // on) is what the rendition's on-air stream switches between without a seam.
    for (node, edge) in edges {
        let primary = cluster.origins.get(&node.primary);
        let backup = cluster.origins.iter().find(|(k, _)| **k != node.primary);
        let leg = |i: u8| format!("rtmp://{}/kLive/?t={token}&i={i}/{id}_1", edge.rtmp_addr);
        let origin_name = |o: Option<&DevOrigin>| o.map_or("-".to_string(), |o| o.region.clone());
        out.push_str(&format!(
            "\nFrom {region}: publish both legs through edge {region} (p to {p}, b to {b}):\n\n  \
             {test_pattern} -flags +global_header -map 0:v -map 1:a -f tee \
             \"[f=flv:onfail=ignore]{p_url}|[f=flv:onfail=ignore]{b_url}\"\n\
             \n  or one leg: {test_pattern} -f flv \"{p_url}\"   (i=1 for the backup)\n",
            region = node.region,
            p = origin_name(primary),
            b = origin_name(backup.map(|(_, o)| o)),
            p_url = leg(0),
            b_url = leg(1),
        ));
    }
    if let Some((node, origin)) = origins.first() {
        out.push_str(&format!(
            "\nOr publish straight to origin {region}:\n\n  {test_pattern} -f flv \"rtmp://{rtmp}/kLive/?t={token}/{id}_1\"\n",
            region = node.region,
            rtmp = origin.rtmp_addr,
        ));
        // The RTSP URLs are the ones the entry lists (leg p at the first origin, leg b at
        // the other), so what is printed is what the API and `longhaul entry` hand out.
        let endpoints = origin.state.endpoints_of(entry);
        if let Some(rtsp) = endpoints.rtsp.first() {
            out.push_str(&format!(
                "\nOr over RTSP, for devices without RTMP (primary leg at origin {region}; \
                 backup leg: {backup}):\n\n  {test_pattern} -f rtsp -rtsp_transport tcp \"{primary}\"\n",
                region = node.region,
                primary = rtsp.primary_rtsp,
                backup = rtsp.backup_rtsp,
            ));
        }
    }
    // Either origin plays the rendition from whichever leg is healthy (the origins pull
    // from each other what their viewers need); `.p` or `.b` after the name plays one leg.
    out.push_str("\nPlay at either origin, from whichever leg is healthy:\n");
    for (node, origin) in origins {
        out.push_str(&format!(
            "\n  {region}: ffplay rtmp://{rtmp}/kLive/{id}_1   or   ffplay http://{http}/live/{id}_1.flv\n",
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
        "\nWeb console: http://{api}/console/   (entries and their URLs to copy, what is live, the cluster)\n"
    ));
    out.push_str(&format!(
        "\nMore entries: {cli} entry create --name NAME   (API at http://{api})\n",
        cli = this_binary(),
    ));
    // A closed stdout (`longhaul dev | head`) must not stop the cluster: ignore errors.
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{out}").and_then(|()| stdout.flush());
}

/// How to run this binary from the current directory (`target/release/longhaul` after
/// `cargo run --release`), or `longhaul` when it is on the `PATH` or cannot be told.
fn this_binary() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "longhaul".into();
    };
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("longhaul") == exe));
    if on_path {
        return "longhaul".into();
    }
    match std::env::current_dir()
        .ok()
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_path_buf))
    {
        Some(relative) => relative.display().to_string(),
        None => exe.display().to_string(),
    }
}
