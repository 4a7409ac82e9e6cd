//! The regional relay path end to end: the real `longhaul` binary running origins and
//! edges as separate processes, real QUIC tunnels with the cluster's mutual TLS, and
//! real ffmpeg publishing to the edges and playing from the origins.
//!
//! Streams are published with one keyframe for the whole clip (`-g 1000`), so a player
//! that joins while the clip runs receives it whole from the origin's GOP cache and the
//! frame counts compare exactly with what was sent.

mod support;

use longhaul_tunnel::pki::{ClusterCa, NodeFiles};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_longhaul");
/// 3 s at 25 fps.
const CLIP_SECONDS: u32 = 3;
const CLIP_FRAMES: u64 = 75;

/// A node process, killed when dropped, with the addresses from its "ready" log line.
struct Node {
    child: Child,
    ready: serde_json::Value,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn addr(&self, field: &str) -> SocketAddr {
        self.ready[field]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no {field} address in {}", self.ready))
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

/// Runs `longhaul <role> -c <config>` and waits for its "<role> ready" line.
fn spawn_node(role: &str, config: &Path) -> Node {
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "--log", "info", role, "-c"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn longhaul");
    let stderr = child.stderr.take().unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = logs.clone();
    let want = format!("{role} ready");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["message"] == want.as_str() {
                    let _ = tx.send(v);
                }
            }
            sink.lock().unwrap().push(line);
        }
    });
    let ready = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(v) => v,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "{role} {} did not get ready: {}",
                config.display(),
                logs.lock().unwrap().join("\n")
            );
        }
    };
    Node { child, ready, logs }
}

struct OriginSpec {
    id: &'static str,
    region: &'static str,
}

const NYC: OriginSpec = OriginSpec {
    id: "nyc-test",
    region: "nyc",
};
const PAO: OriginSpec = OriginSpec {
    id: "pao-test",
    region: "pao",
};

fn tunnel_name(id: &str) -> String {
    format!("{id}.tunnel.test")
}

struct Cluster {
    dir: tempfile::TempDir,
    ca: ClusterCa,
    rtmps: (PathBuf, PathBuf),
}

impl Cluster {
    fn new() -> Cluster {
        require_ffmpeg();
        let dir = tempfile::tempdir().unwrap();
        let rtmps = self_signed(dir.path());
        Cluster {
            ca: ClusterCa::generate("test cluster CA").unwrap(),
            dir,
            rtmps,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The cluster's registry file, opened as one more origin would.
    async fn registry(&self) -> std::sync::Arc<longhaul_registry::Registry> {
        let store =
            longhaul_registry::sqlite::SqliteStore::open(&self.path("registry.db")).unwrap();
        longhaul_registry::Registry::open(std::sync::Arc::new(store))
            .await
            .unwrap()
    }

    fn files(&self, id: &str) -> NodeFiles {
        self.ca.issue(&tunnel_name(id), self.dir.path()).unwrap()
    }

    /// An origin; `ports` pins (rtmp, http, tunnel) for a restart on the same addresses.
    fn origin(
        &self,
        spec: &OriginSpec,
        ports: Option<(SocketAddr, SocketAddr, SocketAddr)>,
    ) -> Node {
        let files = self.files(spec.id);
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (rtmp, http, tunnel) = ports.unwrap_or((any, any, any));
        let config = format!(
            r#"
            [node]
            id = "{id}"
            region = "{region}"
            [rtmp]
            listen = "{rtmp}"
            [http]
            listen = "{http}"
            [registry]
            path = {registry:?}
            [tunnel]
            listen = "{tunnel}"
            edge_name_suffix = "tunnel.test"
            [tunnel.tls]
            ca = {ca:?}
            cert = {cert:?}
            key = {key:?}
            [tunnel.transport]
            keep_alive_ms = 300
            idle_timeout_ms = 3000
            "#,
            id = spec.id,
            region = spec.region,
            registry = self.path("registry.db"),
            ca = files.ca,
            cert = files.cert,
            key = files.key,
        );
        let path = self.path(&format!("{}.toml", spec.id));
        std::fs::write(&path, config).unwrap();
        spawn_node("origin", &path)
    }

    /// An edge with tunnels to `origins`, the first taking leg p. Without `certificate`
    /// it trusts the cluster CA but its own certificate comes from another CA.
    fn edge(
        &self,
        id: &str,
        region: &str,
        origins: &[(&OriginSpec, &Node)],
        certificate: bool,
    ) -> Node {
        let files = self.files(id);
        let list: Vec<String> = origins
            .iter()
            .map(|(spec, node)| {
                format!(
                    "{{ id = {:?}, region = {:?}, addr = \"{}\", server_name = {:?} }}",
                    spec.id,
                    spec.region,
                    node.addr("tunnel"),
                    tunnel_name(spec.id)
                )
            })
            .collect();
        let identity = if certificate {
            files
        } else {
            // A certificate the cluster CA never signed: what a host that is not part of
            // the cluster has at best. (With none at all, the edge refuses to start.)
            let dir = self.path("foreign");
            std::fs::create_dir_all(&dir).unwrap();
            let foreign = ClusterCa::generate("not the cluster CA").unwrap();
            let mut files = foreign.issue(&tunnel_name(id), &dir).unwrap();
            files.ca = self.ca.write_ca(self.dir.path()).unwrap();
            files
        };
        let identity = format!("cert = {:?}\nkey = {:?}", identity.cert, identity.key);
        let config = format!(
            r#"
            [node]
            id = "{id}"
            region = "{region}"
            [rtmp]
            listen = "127.0.0.1:0"
            [rtmps]
            listen = "127.0.0.1:0"
            cert = {rtmps_cert:?}
            key = {rtmps_key:?}
            [http]
            listen = "127.0.0.1:0"
            [tunnel]
            primary = "{primary}"
            bind = "127.0.0.1:0"
            origins = [{list}]
            [tunnel.tls]
            ca = {ca:?}
            {identity}
            [tunnel.transport]
            keep_alive_ms = 300
            idle_timeout_ms = 3000
            reconnect_initial_ms = 100
            reconnect_max_ms = 1000
            "#,
            primary = origins[0].0.id,
            list = list.join(", "),
            ca = self.path("ca.pem"),
            rtmps_cert = self.rtmps.0,
            rtmps_key = self.rtmps.1,
        );
        let path = self.path(&format!("{id}.toml"));
        std::fs::write(&path, config).unwrap();
        spawn_node("edge", &path)
    }
}

async fn metrics_of(node: &Node) -> String {
    let (status, _, body) = http(
        "GET",
        &format!("http://{}/metrics", node.addr("http")),
        "",
        None,
    )
    .await;
    assert_eq!(status, 200);
    String::from_utf8(body.to_vec()).unwrap()
}

/// Polls `node`'s metrics until `check` holds (10 s at most).
async fn until_metrics(node: &Node, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = metrics_of(node).await;
        if check(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{m}\n{}",
            node.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of a series that must exist (so a 0 means 0, not a renamed series).
fn present(m: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = m.lines().any(|l| {
        l.starts_with(&format!("{name}{{"))
            && labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
    });
    assert!(found, "no series {name} {labels:?} in:\n{m}");
    metric(m, name, labels)
}

fn connected(m: &str, peer: &str) -> bool {
    present(
        m,
        "longhaul_tunnel_state",
        &[("peer", peer), ("state", "connected")],
    ) == 1.0
}

/// Polls the origin's streams API until `name` is live.
async fn wait_live(origin: &Node, name: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = format!("http://{}/api/v1/streams", origin.addr("http"));
        let (status, _, body) = http("GET", &url, "", None).await;
        if status == 200 {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if let Some(s) = v["streams"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["name"] == name))
            {
                return s.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} never went live on the origin: {}",
            origin.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes a clip to `publish_url` and records it from `origin`; checks every frame came.
async fn relay_and_check(
    publish_url: &str,
    origin: &Node,
    name: &str,
    size: (u64, u64),
) -> serde_json::Value {
    let publisher = ffmpeg_publish(
        publish_url,
        &format!("{}x{}", size.0, size.1),
        CLIP_SECONDS,
        1000,
    );
    let stream = wait_live(origin, name).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("played.flv");
    let player = ffmpeg_record(
        &format!("rtmp://{}/kLive/{name}", origin.addr("rtmp")),
        &file,
    );
    let out = wait_child(publisher).await;
    assert!(
        out.status.success(),
        "publisher of {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = wait_child(player).await;
    assert!(
        out.status.success(),
        "player of {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        probe(&file),
        Probe {
            video_codec: "h264".into(),
            width: size.0,
            height: size.1,
            video_frames: CLIP_FRAMES,
            audio_codec: "aac".into(),
        },
        "what the player of {name} on the origin received"
    );
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_edge_relays_to_the_origin_its_leg_is_routed_to() {
    let cluster = Cluster::new();
    let nyc = cluster.origin(&NYC, None);
    let pao = cluster.origin(&PAO, None);
    let fra = cluster.edge("fra-test", "fra", &[(&NYC, &nyc), (&PAO, &pao)], true);
    let gru = cluster.edge("gru-test", "gru", &[(&NYC, &nyc), (&PAO, &pao)], true);
    let sin = cluster.edge("sin-test", "sin", &[(&PAO, &pao), (&NYC, &nyc)], true);
    for edge in [&fra, &gru, &sin] {
        until_metrics(edge, "both tunnels up", |m| {
            connected(m, NYC.id) && connected(m, PAO.id)
        })
        .await;
    }
    let entry = cluster
        .registry()
        .await
        .create_entry(Some("relay"))
        .await
        .unwrap();
    let (id, token) = (&entry.id, &entry.token);

    // A wrong token is refused at the edge with the origin's words, and nothing is
    // opened on the tunnel for it.
    let url = format!(
        "rtmp://{}/kLive/?t=wrongtoken0000000/{id}_1",
        fra.addr("rtmp")
    );
    let out = wait_child(ffmpeg_publish(&url, "320x240", CLIP_SECONDS, 1000)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("wrong token for entry {id}")),
        "ffmpeg said: {stderr}"
    );
    let m = metrics_of(&fra).await;
    assert_eq!(
        metric(
            &m,
            "longhaul_edge_publishes_total",
            &[("outcome", "refused"), ("reason", "wrong_token")]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        present(&m, "longhaul_tunnel_streams_total", &[("peer", NYC.id)]),
        0.0,
        "{m}"
    );
    let m = metrics_of(&nyc).await;
    assert_eq!(
        metric(
            &m,
            "longhaul_publishes_total",
            &[
                ("outcome", "rejected"),
                ("reason", "wrong_token"),
                ("transport", "tunnel"),
                ("encoder_region", "fra")
            ]
        ),
        1.0,
        "{m}"
    );

    // fra: token in the app query, primary leg -> nyc.
    let url = format!("rtmp://{}/kLive/?t={token}/{id}_1", fra.addr("rtmp"));
    let s = relay_and_check(&url, &nyc, &format!("{id}_1"), (320, 240)).await;
    assert_eq!(s["via_edge"], "fra-test", "{s}");
    assert_eq!(s["publisher_region"], "fra", "{s}");
    assert_eq!(s["leg"], "primary", "{s}");
    // gru: token in the stream name (OBS style), primary leg -> nyc.
    let url = format!("rtmp://{}/kLive/{id}_2?t={token}", gru.addr("rtmp"));
    let s = relay_and_check(&url, &nyc, &format!("{id}_2"), (320, 240)).await;
    assert_eq!(s["via_edge"], "gru-test", "{s}");
    // sin: primary leg -> pao, its preferred origin.
    let url = format!("rtmp://{}/kLive/?t={token}/{id}_3", sin.addr("rtmp"));
    let s = relay_and_check(&url, &pao, &format!("{id}_3"), (320, 240)).await;
    assert_eq!(s["via_edge"], "sin-test", "{s}");
    // fra, backup leg (i=1) -> pao, the other origin.
    let url = format!("rtmp://{}/kLive/?t={token}&i=1/{id}_1", fra.addr("rtmp"));
    let s = relay_and_check(&url, &pao, &format!("{id}_1"), (320, 240)).await;
    assert_eq!(s["leg"], "backup", "{s}");

    // Three renditions through one edge at once, all on its one connection to nyc.
    let (fra_rtmp, nyc_ref) = (fra.addr("rtmp"), &nyc);
    let run = |n: u32, size: (u64, u64)| {
        let url = format!("rtmp://{fra_rtmp}/kLive/?t={token}/{id}_{n}");
        let name = format!("{id}_{n}");
        async move { relay_and_check(&url, nyc_ref, &name, size).await }
    };
    let watch = async {
        // While all three run, the edge's one tunnel to nyc carries three streams.
        until_metrics(&fra, "three open streams", |m| {
            metric(m, "longhaul_tunnel_open_streams", &[("peer", NYC.id)]) == 3.0
        })
        .await
    };
    let (_, _, _, m) = tokio::join!(
        run(1, (320, 240)),
        run(2, (480, 360)),
        run(3, (640, 480)),
        watch
    );
    assert_eq!(
        present(&m, "longhaul_tunnel_reconnects_total", &[("peer", NYC.id)]),
        0.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "longhaul_tunnel_state_changes_total",
            &[("peer", NYC.id), ("to", "connected")]
        ),
        1.0,
        "one connection for everything: {m}"
    );
    let m = metrics_of(&nyc).await;
    assert_eq!(
        metric(
            &m,
            "longhaul_publishes_total",
            &[
                ("outcome", "accepted"),
                ("transport", "tunnel"),
                ("encoder_region", "fra")
            ]
        ),
        4.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_without_a_cluster_certificate_is_refused_by_the_origin() {
    let cluster = Cluster::new();
    let nyc = cluster.origin(&NYC, None);
    let edge = cluster.edge("rogue-test", "fra", &[(&NYC, &nyc)], false);
    until_metrics(&nyc, "the refusal counted", |m| {
        metric(
            m,
            "longhaul_tunnel_handshake_refusals_total",
            &[("reason", "bad_certificate")],
        ) >= 1.0
    })
    .await;
    let m = metrics_of(&edge).await;
    assert!(!connected(&m, NYC.id), "{m}");
    // An encoder on that edge hears why it cannot publish.
    let entry = cluster.registry().await.create_entry(None).await.unwrap();
    let url = format!(
        "rtmp://{}/kLive/?t={}/{}_1",
        edge.addr("rtmp"),
        entry.token,
        entry.id
    );
    let out = wait_child(ffmpeg_publish(&url, "320x240", 1, 25)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unreachable"), "ffmpeg said: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_reconnects_after_its_origin_restarts() {
    let cluster = Cluster::new();
    let nyc = cluster.origin(&NYC, None);
    let ports = (nyc.addr("rtmp"), nyc.addr("http"), nyc.addr("tunnel"));
    let fra = cluster.edge("fra-test", "fra", &[(&NYC, &nyc)], true);
    until_metrics(&fra, "tunnel up", |m| connected(m, NYC.id)).await;
    drop(nyc); // SIGKILL: no goodbye, the edge finds out by its idle timeout
    until_metrics(&fra, "tunnel lost", |m| !connected(m, NYC.id)).await;
    let nyc = cluster.origin(&NYC, Some(ports));
    let m = until_metrics(&fra, "tunnel back", |m| connected(m, NYC.id)).await;
    assert!(
        present(&m, "longhaul_tunnel_reconnects_total", &[("peer", NYC.id)]) >= 1.0,
        "{m}"
    );
    let entry = cluster.registry().await.create_entry(None).await.unwrap();
    let name = format!("{}_1", entry.id);
    let url = format!(
        "rtmp://{}/kLive/?t={}/{name}",
        fra.addr("rtmp"),
        entry.token
    );
    relay_and_check(&url, &nyc, &name, (320, 240)).await;
}
