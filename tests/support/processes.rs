//! Nodes as separate processes: the real `longhaul` binary running origins and edges
//! with configs written for the test, real QUIC tunnels with the cluster's mutual TLS.
//! A test holds [`Node`]s (killed when dropped) and talks to them over their sockets.

use super::*;
use longhaul_tunnel::pki::{ClusterCa, NodeFiles, NodeRole};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_longhaul");

/// A node process, killed when dropped, with the addresses from its "ready" log line.
pub struct Node {
    child: Child,
    ready: serde_json::Value,
    logs: Arc<Mutex<Vec<String>>>,
    /// The bearer token of its API, when it serves more than loopback (an origin on a
    /// host of its own: [`OriginExtra::netns`]).
    pub api_token: Option<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    pub fn addr(&self, field: &str) -> SocketAddr {
        self.ready[field]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no {field} address in {}", self.ready))
    }

    /// The process id, to read its memory from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits (15 s at most) for a log line holding every one of `parts`; returns it.
    pub async fn logged(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let found = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {parts:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends the node SIGHUP: it looks at its certificate files at once.
    pub fn hangup(&self) {
        self.signal(libc::SIGHUP);
    }

    /// Sends the node `signal` (SIGTERM, SIGSTOP, SIGCONT, ...).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("a pid");
        // SAFETY: kill(2) with a pid of our own child and a valid signal number.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill -{signal} {pid}: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits (at most `limit`) for the process to exit on its own; its exit status.
    pub async fn exited(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not exit within {limit:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs `longhaul <role> -c <config>` and waits for its "<role> ready" line.
pub fn spawn_node(role: &str, config: &Path) -> Node {
    spawn_node_logging(role, config, "info")
}

/// [`spawn_node`] with the log filter `log` (`debug`, `longhaul_origin=trace`, ...).
pub fn spawn_node_logging(role: &str, config: &Path, log: &str) -> Node {
    spawn_node_in(role, config, log, None)
}

/// [`spawn_node_logging`] in the network namespace `netns` (`ip netns exec`, which
/// becomes the node: the child's pid is the node's).
pub fn spawn_node_in(role: &str, config: &Path, log: &str, netns: Option<&str>) -> Node {
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, BIN]);
            c
        }
        None => Command::new(BIN),
    };
    let mut child = command
        .args(["--log-format", "json", "--log", log, role, "-c"])
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
    Node {
        child,
        ready,
        logs,
        api_token: None,
    }
}

pub struct OriginSpec {
    pub id: &'static str,
    pub region: &'static str,
}

pub const NYC: OriginSpec = OriginSpec {
    id: "nyc-test",
    region: "nyc",
};
pub const PAO: OriginSpec = OriginSpec {
    id: "pao-test",
    region: "pao",
};

pub fn tunnel_name(id: &str) -> String {
    format!("{id}.tunnel.test")
}

/// TOML added to an origin's config: keys of its `[node]` and `[tunnel]` tables, and
/// tables of its own (`[registry]` among them: [`Cluster::origin`] has it).
#[derive(Default, Clone, Copy)]
pub struct OriginExtra<'a> {
    pub node: &'a str,
    pub tunnel: &'a str,
    pub rest: &'a str,
    /// Run on this host: RTMP and HTTP on its address, the tunnel on all its links (an
    /// edge reaches it over a WAN link: [`super::hosts`]), and the API, which then serves
    /// more than loopback, behind [`API_TOKEN`]. `ports`, if given, are its own.
    pub netns: Option<&'a super::netns::Netns>,
}

/// The API token of an origin on a host of its own.
pub const API_TOKEN: &str = "test-api-token-0123456789";

pub struct Cluster {
    dir: tempfile::TempDir,
    ca: ClusterCa,
    rtmps: (PathBuf, PathBuf),
}

impl Cluster {
    pub fn new() -> Cluster {
        require_ffmpeg();
        let dir = tempfile::tempdir().unwrap();
        let rtmps = self_signed(dir.path());
        Cluster {
            ca: ClusterCa::generate("test cluster CA").unwrap(),
            dir,
            rtmps,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `[rtmps]` on an ephemeral port with the cluster's self-signed certificate, for
    /// [`Cluster::origin_with`] (edges always have it).
    pub fn rtmps_section(&self) -> String {
        format!(
            "[rtmps]\nlisten = \"127.0.0.1:0\"\ncert = {:?}\nkey = {:?}",
            self.rtmps.0, self.rtmps.1
        )
    }

    /// `[registry]` on the cluster's SQLite file.
    pub fn sqlite_registry(&self) -> String {
        format!("[registry]\npath = {:?}", self.path("registry.db"))
    }

    /// The cluster's registry file, opened as one more origin would.
    pub async fn registry(&self) -> std::sync::Arc<longhaul_registry::Registry> {
        let store =
            longhaul_registry::sqlite::SqliteStore::open(&self.path("registry.db")).unwrap();
        longhaul_registry::Registry::open(std::sync::Arc::new(store))
            .await
            .unwrap()
    }

    /// Issues (again, over any earlier files) the tunnel certificate of node `id`.
    pub fn files(&self, id: &str, role: NodeRole) -> NodeFiles {
        self.ca
            .issue(&tunnel_name(id), role, self.dir.path())
            .unwrap()
    }

    /// Where the tunnel files of node `id` are (as [`Cluster::files`] wrote them).
    pub fn files_of(&self, id: &str) -> NodeFiles {
        NodeFiles::in_dir(self.dir.path(), &tunnel_name(id))
    }

    /// The cluster CA, to issue replacement certificates.
    pub fn ca(&self) -> &ClusterCa {
        &self.ca
    }

    /// The RTMPS certificate and key every node of the cluster serves.
    pub fn rtmps_files(&self) -> &(PathBuf, PathBuf) {
        &self.rtmps
    }

    /// An origin on the cluster's SQLite file; `ports` pins (rtmp, http, tunnel) for a
    /// restart on the same addresses.
    pub fn origin(
        &self,
        spec: &OriginSpec,
        ports: Option<(SocketAddr, SocketAddr, SocketAddr)>,
    ) -> Node {
        self.origin_with(spec, ports, &self.sqlite_registry())
    }

    /// `[registry]` for a PostgreSQL database, its password in a file only the test
    /// user can read (the way production keeps it).
    pub fn postgres_registry(&self, url: &str, password: &str) -> String {
        let file = self.path("registry-password");
        std::fs::write(&file, format!("{password}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        format!("[registry]\nurl = {url:?}\npassword_file = {file:?}")
    }

    /// An origin whose config has `extra` (its `[registry]`, and anything else) added.
    pub fn origin_with(
        &self,
        spec: &OriginSpec,
        ports: Option<(SocketAddr, SocketAddr, SocketAddr)>,
        extra: &str,
    ) -> Node {
        self.origin_with_sections(
            spec,
            ports,
            OriginExtra {
                rest: extra,
                ..OriginExtra::default()
            },
        )
    }

    /// An origin with keys added to its `[node]` and `[tunnel]` tables and tables after.
    pub fn origin_with_sections(
        &self,
        spec: &OriginSpec,
        ports: Option<(SocketAddr, SocketAddr, SocketAddr)>,
        extra: OriginExtra<'_>,
    ) -> Node {
        let files = self.files(spec.id, NodeRole::Origin);
        let host = extra.netns.map_or("127.0.0.1".parse().unwrap(), |n| n.ip);
        let tunnel_host = extra
            .netns
            .map_or("127.0.0.1".parse().unwrap(), |_| "0.0.0.0".parse().unwrap());
        let any = SocketAddr::new(host, 0);
        let (rtmp, http, tunnel) = ports.unwrap_or((any, any, SocketAddr::new(tunnel_host, 0)));
        let api_token = extra.netns.map(|_| API_TOKEN.to_string());
        let api_token_line = api_token
            .as_ref()
            .map_or(String::new(), |t| format!("api_token = {t:?}"));
        let config = format!(
            r#"
            [node]
            id = "{id}"
            region = "{region}"
            {node_extra}
            [rtmp]
            listen = "{rtmp}"
            [http]
            listen = "{http}"
            {api_token_line}
            [tunnel]
            listen = "{tunnel}"
            edge_name_suffix = "tunnel.test"
            {tunnel_extra}
            [tunnel.tls]
            ca = {ca:?}
            cert = {cert:?}
            key = {key:?}
            [tunnel.transport]
            keep_alive_ms = 100
            idle_timeout_ms = 3000
            {rest}
            "#,
            node_extra = extra.node,
            tunnel_extra = extra.tunnel,
            rest = extra.rest,
            id = spec.id,
            region = spec.region,
            ca = files.ca,
            cert = files.cert,
            key = files.key,
        );
        let path = self.path(&format!("{}.toml", spec.id));
        std::fs::write(&path, config).unwrap();
        let mut node = spawn_node_in(
            "origin",
            &path,
            "info",
            extra.netns.map(|n| n.name.as_str()),
        );
        node.api_token = api_token;
        node
    }

    /// An edge with tunnels to `origins`, the first taking leg p. Without `certificate`
    /// it trusts the cluster CA but its own certificate comes from another CA.
    pub fn edge(
        &self,
        id: &str,
        region: &str,
        origins: &[(&OriginSpec, &Node)],
        certificate: bool,
    ) -> Node {
        self.edge_with(id, region, origins, certificate, "")
    }

    /// [`Cluster::edge`] with `extra` tables added to its config (`[router]`, ...).
    pub fn edge_with(
        &self,
        id: &str,
        region: &str,
        origins: &[(&OriginSpec, &Node)],
        certificate: bool,
        extra: &str,
    ) -> Node {
        let origins: Vec<_> = origins
            .iter()
            .map(|(spec, node)| (*spec, node.addr("tunnel")))
            .collect();
        self.edge_on(id, region, &origins, certificate, extra, None)
    }

    /// [`Cluster::edge_with`] given where it reaches each origin's tunnel, on host
    /// `netns` if given (RTMP, RTMPS and HTTP on its address).
    pub fn edge_on(
        &self,
        id: &str,
        region: &str,
        origins: &[(&OriginSpec, SocketAddr)],
        certificate: bool,
        extra: &str,
        netns: Option<&super::netns::Netns>,
    ) -> Node {
        let files = self.files(id, NodeRole::Edge);
        let host: std::net::IpAddr = netns.map_or("127.0.0.1".parse().unwrap(), |n| n.ip);
        let list: Vec<String> = origins
            .iter()
            .map(|(spec, addr)| {
                format!(
                    "{{ id = {:?}, region = {:?}, addr = \"{addr}\", server_name = {:?} }}",
                    spec.id,
                    spec.region,
                    tunnel_name(spec.id)
                )
            })
            .collect();
        let identity = if certificate {
            files
        } else {
            // A certificate the cluster CA never signed: what a host that is not part of
            // the cluster has at best, with a CA of its own beside the cluster's in its CA
            // file (an edge whose certificate chains to no CA it holds does not start).
            let dir = self.path("foreign");
            std::fs::create_dir_all(&dir).unwrap();
            let foreign = ClusterCa::generate("not the cluster CA").unwrap();
            let files = foreign
                .issue(&tunnel_name(id), NodeRole::Edge, &dir)
                .unwrap();
            let cluster_ca = self.ca.write_ca(self.dir.path()).unwrap();
            let both = dir.join("both-cas.pem");
            let pems = [&cluster_ca, &files.ca].map(|p| std::fs::read_to_string(p).unwrap());
            std::fs::write(&both, pems.concat()).unwrap();
            NodeFiles { ca: both, ..files }
        };
        let identity = format!(
            "ca = {:?}\ncert = {:?}\nkey = {:?}",
            identity.ca, identity.cert, identity.key
        );
        let config = format!(
            r#"
            [node]
            id = "{id}"
            region = "{region}"
            [rtmp]
            listen = "{host}:0"
            [rtmps]
            listen = "{host}:0"
            cert = {rtmps_cert:?}
            key = {rtmps_key:?}
            [http]
            listen = "{host}:0"
            [tunnel]
            primary = "{primary}"
            bind = "0.0.0.0:0"
            origins = [{list}]
            [tunnel.tls]
            {identity}
            [tunnel.transport]
            keep_alive_ms = 100
            idle_timeout_ms = 3000
            reconnect_initial_ms = 100
            reconnect_max_ms = 1000
            {extra}
            "#,
            primary = origins[0].0.id,
            list = list.join(", "),
            rtmps_cert = self.rtmps.0,
            rtmps_key = self.rtmps.1,
        );
        let path = self.path(&format!("{id}.toml"));
        std::fs::write(&path, config).unwrap();
        spawn_node_in("edge", &path, "info", netns.map(|n| n.name.as_str()))
    }
}

impl Cluster {
    /// Two origins (pao the primary, leg p's preferred one) and an edge `fra-test`
    /// routing between them with `router` (a `[router]` table), once both are healthy.
    pub async fn two_origins_and_an_edge(&self, router: &str) -> (Node, Node, Node) {
        let pao = self.origin(&PAO, None);
        let nyc = self.origin(&NYC, None);
        let fra = self.edge_with(
            "fra-test",
            "fra",
            &[(&PAO, &pao), (&NYC, &nyc)],
            true,
            router,
        );
        until_metrics(&fra, "both origins healthy", |m| {
            healthy(m, PAO.id) && healthy(m, NYC.id)
        })
        .await;
        (pao, nyc, fra)
    }

    /// [`Cluster::two_origins_and_an_edge`], each node on its host of `hosts`, the edge
    /// reaching the origins over its WAN links.
    pub async fn two_origins_and_an_edge_on(
        &self,
        router: &str,
        hosts: &super::hosts::Hosts,
    ) -> (Node, Node, Node) {
        let pao = self.origin_on(&PAO, None, &hosts.pao);
        let nyc = self.origin_on(&NYC, None, &hosts.nyc);
        let over = |link: &super::hosts::WanLink, node: &Node| {
            SocketAddr::new(link.origin_ip, node.addr("tunnel").port())
        };
        let fra = self.edge_on(
            "fra-test",
            "fra",
            &[
                (&PAO, over(&hosts.edge_to_pao, &pao)),
                (&NYC, over(&hosts.edge_to_nyc, &nyc)),
            ],
            true,
            router,
            Some(&hosts.edge),
        );
        until_metrics(&fra, "both origins healthy", |m| {
            healthy(m, PAO.id) && healthy(m, NYC.id)
        })
        .await;
        (pao, nyc, fra)
    }

    /// An origin on the cluster's SQLite file, on host `netns`; `ports` as for
    /// [`Cluster::origin`].
    pub fn origin_on(
        &self,
        spec: &OriginSpec,
        ports: Option<(SocketAddr, SocketAddr, SocketAddr)>,
        netns: &super::netns::Netns,
    ) -> Node {
        self.origin_with_sections(
            spec,
            ports,
            OriginExtra {
                rest: &self.sqlite_registry(),
                netns: Some(netns),
                ..OriginExtra::default()
            },
        )
    }
}

/// Rendition 1 of `entry` published at `node` (an edge or an origin), the token in the
/// app: its stream name and publish URL.
pub fn publish_url(node: &Node, entry: &longhaul_registry::Entry) -> (String, String) {
    let name = format!("{}_1", entry.id);
    let url = format!(
        "rtmp://{}/kLive/?t={}/{name}",
        node.addr("rtmp"),
        entry.token
    );
    (name, url)
}

/// Whether an edge's router counts `origin` healthy.
pub fn healthy(m: &str, origin: &str) -> bool {
    present(m, "longhaul_router_origin_healthy", &[("origin", origin)]) == 1.0
}

/// 3 s at 25 fps.
pub const CLIP_SECONDS: u32 = 3;
pub const CLIP_FRAMES: u64 = 75;

/// Publishes a clip to `publish_url` and records it from `origin`; checks every frame came.
/// The clip has one keyframe (`-g 1000`), so a player that joins while it runs receives
/// it whole from the origin's GOP cache and the frame counts compare exactly.
pub async fn relay_and_check(
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

/// A node's `/healthz` document.
pub async fn health_of(node: &Node) -> serde_json::Value {
    let url = format!("http://{}/healthz", node.addr("http"));
    let (_, _, body) = http("GET", &url, "", None).await;
    serde_json::from_slice(&body).expect("/healthz is JSON")
}

pub async fn metrics_of(node: &Node) -> String {
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
pub async fn until_metrics(node: &Node, what: &str, check: impl Fn(&str) -> bool) -> String {
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
pub fn present(m: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = m.lines().any(|l| {
        l.starts_with(&format!("{name}{{"))
            && labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
    });
    assert!(found, "no series {name} {labels:?} in:\n{m}");
    metric(m, name, labels)
}

/// The `longhaul_tunnel_state{state="connected"}` lines of the node's tunnels to `peer`:
/// one per lane (an edge process runs a shard per core, each with its own tunnel to
/// every origin).
fn connected_state_lines<'a>(m: &'a str, peer: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    m.lines()
        .filter(|l| l.starts_with("longhaul_tunnel_state{"))
        .filter(move |l| {
            l.contains(&format!("peer=\"{peer}\"")) && l.contains("state=\"connected\"")
        })
}

/// How many tunnels the node keeps to `peer`: one per lane.
pub fn lanes(m: &str, peer: &str) -> f64 {
    connected_state_lines(m, peer).count() as f64
}

/// Every tunnel to `peer` (one per lane) is connected.
pub fn connected(m: &str, peer: &str) -> bool {
    present(
        m,
        "longhaul_tunnel_state",
        &[("peer", peer), ("state", "connected")],
    );
    connected_state_lines(m, peer).all(|l| l.ends_with(" 1"))
}

/// Polls the origin's streams API until `name` is live.
pub async fn wait_live(origin: &Node, name: &str) -> serde_json::Value {
    wait_live_polling(origin, name, Duration::from_millis(100)).await
}

/// [`wait_live`], asking every `poll` (a test that times the stream's arrival asks
/// often).
pub async fn wait_live_polling(origin: &Node, name: &str, poll: Duration) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let url = format!("http://{}/api/v1/streams", origin.addr("http"));
        let (status, _, body) = http("GET", &url, "", origin.api_token.as_deref()).await;
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
        tokio::time::sleep(poll).await;
    }
}
