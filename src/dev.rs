//! `longhaul dev`: the whole local cluster on 127.0.0.1, with nothing to configure.
//!
//! It reads the embedded `config/dev.toml` (the port table every developer and test
//! relies on), makes a data directory with the shared entries registry and a self-signed
//! certificate for RTMPS, starts the nodes in this process, creates a demo entry on first
//! start and prints commands to publish and play that work when pasted.

use anyhow::Context;
use longhaul_origin::{Config as OriginConfig, Origin};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The dev cluster's layout, compiled in so `longhaul dev` needs no file.
const DEV_CLUSTER: &str = include_str!("../config/dev.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevCluster {
    origins: BTreeMap<String, DevNode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DevNode {
    id: String,
    region: String,
    rtmp: SocketAddr,
    rtmps: SocketAddr,
    http: SocketAddr,
    /// UDP port of the QUIC tunnel endpoint (used once edges exist).
    #[allow(dead_code)]
    tunnel: SocketAddr,
}

pub async fn run(data_dir: PathBuf) -> anyhow::Result<()> {
    let cluster: DevCluster =
        toml::from_str(DEV_CLUSTER).context("the embedded config/dev.toml is invalid")?;
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);
    let (cert, key) = dev_certificate(&data_dir)?;
    let registry_path = data_dir.join("registry.db");

    let mut origins = Vec::new();
    for node in cluster.origins.values() {
        let config = origin_config(node, &registry_path, &cert, &key)?;
        let origin = Origin::start(config).await.with_context(|| {
            format!(
                "starting dev origin {} (is another `longhaul dev` running?)",
                node.id
            )
        })?;
        origins.push((node, origin));
    }
    let first = &origins
        .first()
        .context("config/dev.toml names no origin")?
        .1;
    let entry = demo_entry(first).await?;
    print_banner(&data_dir, &origins, &entry);

    tokio::select! {
        _ = crate::shutdown_signal() => tracing::info!("shutting down the dev cluster"),
        _ = async { for (_, o) in origins.iter_mut() { o.wait().await; } } => {
            tracing::error!("a dev node stopped unexpectedly");
        }
    }
    for (_, origin) in origins {
        origin.stop().await;
    }
    Ok(())
}

fn origin_config(
    node: &DevNode,
    registry: &Path,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<OriginConfig> {
    // Built as a TOML document so dev nodes take exactly the path production configs take.
    let doc = format!(
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
        [registry]
        path = {registry:?}
        [endpoints]
        host = "{host}"
        rtmp_port = {rtmp_port}
        rtmps_port = {rtmps_port}
        leg_subdomains = false
        renditions = 3
        "#,
        id = node.id,
        region = node.region,
        rtmp = node.rtmp,
        rtmps = node.rtmps,
        http = node.http,
        cert = cert.display().to_string(),
        key = key.display().to_string(),
        registry = registry.display().to_string(),
        host = node.rtmp.ip(),
        rtmp_port = node.rtmp.port(),
        rtmps_port = node.rtmps.port(),
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
    let registry = origin.state.registry.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        if let Some(entry) = registry.list()?.into_iter().next() {
            return Ok(entry);
        }
        Ok(registry.create_entry(Some("demo"))?)
    })
    .await?
}

fn print_banner(data_dir: &Path, origins: &[(&DevNode, Origin)], entry: &longhaul_registry::Entry) {
    let mut out = String::new();
    out.push_str(&format!(
        "\nlonghaul dev cluster is up (data in {})\n\n",
        data_dir.display()
    ));
    for (node, o) in origins {
        out.push_str(&format!(
            "  origin {:<4} rtmp://{}  rtmps://{}  http://{}\n",
            node.region,
            o.rtmp_addr,
            o.rtmps_addr
                .map(|a| a.to_string())
                .unwrap_or_else(|| "-".into()),
            o.http_addr
        ));
    }
    let id = &entry.id;
    let token = &entry.token;
    out.push_str(&format!("\nDemo entry {id} (token {token}).\n"));
    // The primary leg to the first origin, the backup leg to the second, as encoders
    // configured for redundancy do.
    for ((node, origin), leg) in origins.iter().zip([0, 1]) {
        let (rtmp, http) = (origin.rtmp_addr, origin.http_addr);
        let which = if leg == 0 { "primary" } else { "backup" };
        out.push_str(&format!(
            "\nPublish a test pattern, {which} leg, to origin {region}:\n\n  \
             ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -f lavfi -i sine=frequency=440 \
             -c:v libx264 -preset veryfast -tune zerolatency -g 60 -b:v 2500k -c:a aac -f flv \
             \"rtmp://{rtmp}/kLive/?t={token}&i={leg}/{id}_1\"\n\n\
             Play it:\n\n  ffplay rtmp://{rtmp}/kLive/{id}_1\n  ffplay http://{http}/live/{id}_1.flv\n",
            region = node.region,
        ));
    }
    let api = origins[0].1.http_addr;
    out.push_str(&format!(
        "\nMore entries: longhaul entry create --name NAME   (API at http://{api})\n"
    ));
    println!("{out}");
}
