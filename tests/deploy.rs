//! The deployment files of `deploy/` against the code and config they deploy, so that a
//! change on either side that breaks the other fails here instead of in a cluster:
//!
//! - `deploy/kubernetes/*.yaml`: every document parses and names its apiVersion, kind
//!   and name; each pod's config layers (the image's shipped `config/` files, then the
//!   ConfigMap's) load as the binary loads them, into the node's own config types, and
//!   pass its checks; the container's ports are the config's listeners; the Services
//!   reach named ports of the pods they select; the probes ask the HTTP port for the
//!   paths the node serves; every file the config names is mounted from a Secret, and
//!   every directory it writes is writable; the grace period covers the drain; a
//!   PodDisruptionBudget selects every pod.
//! - the probes' paths answer as the manifests expect, on a real origin and edge: live and
//!   ready while serving, live and not ready while draining.
//! - `deploy/container/Containerfile`: what it copies exists, it builds and runs the
//!   binary Cargo.toml names, on the toolchain the workspace asks for, and exposes the
//!   shipped config's ports; its user is the one the manifests run as.
//! - `deploy/prometheus/`: the dev job scrapes every node of `config/dev.toml` at its HTTP
//!   port; the Kubernetes job keeps the manifests' pods and reads labels they carry.
//!
//! Schemas and promtool are `.ci/run`'s (kubernetes-validate, promtool check config);
//! these are the checks no schema knows.

mod support;

use figment::providers::{Format, Toml};
use figment::Figment;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::cluster::start_cluster;
use support::{http, start_origin};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Where the Kubernetes manifests are.
const KUBERNETES_DIR: &str = "deploy/kubernetes";
const CONTAINERFILE: &str = "deploy/container/Containerfile";

/// The environment variables of the CLI itself, not config keys (as
/// `src/config_file.rs`'s `CLI_VARIABLES`).
const CLI_VARIABLES: &[&str] = &["LOG", "LOG_FORMAT", "API", "API_TOKEN", "DEV_PORT_OFFSET"];

/// What an edge's stop may take after its drain beyond `ingest.write_timeout_secs`
/// (crates/edge/src/lib.rs, `DRAIN_MARGIN`).
const EDGE_STOP_MARGIN: Duration = Duration::from_secs(3);

fn read(relative: &str) -> String {
    let path = Path::new(ROOT).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// Every document of a YAML file (empty ones, such as a header of comments, left out).
fn yaml_documents(relative: &str) -> Vec<Value> {
    let text = read(relative);
    let mut documents = Vec::new();
    for (i, document) in serde_norway::Deserializer::from_str(&text).enumerate() {
        let value = Value::deserialize(document)
            .unwrap_or_else(|e| panic!("{relative}: document {} is not YAML: {e}", i + 1));
        if !value.is_null() {
            documents.push(value);
        }
    }
    documents
}

/// The manifests under deploy/kubernetes, by file.
fn manifests() -> Vec<(String, Vec<Value>)> {
    let dir = Path::new(ROOT).join(KUBERNETES_DIR);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {KUBERNETES_DIR}: {e}"))
        .map(|entry| entry.expect("a directory entry").file_name())
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {KUBERNETES_DIR}");
    files
        .into_iter()
        .map(|name| {
            let relative = format!("{KUBERNETES_DIR}/{name}");
            let documents = yaml_documents(&relative);
            (relative, documents)
        })
        .collect()
}

fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"))
}

fn kind(document: &Value) -> &str {
    document["kind"].as_str().unwrap_or("")
}

fn name(document: &Value) -> &str {
    document["metadata"]["name"].as_str().unwrap_or("")
}

/// Whether `selector` (a map of labels) picks a pod with `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// A node's role, from its subcommand.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Origin,
    Edge,
}

/// A StatefulSet or Deployment that runs a node, and what its config says.
struct Workload<'a> {
    file: &'a str,
    name: String,
    document: &'a Value,
    pod_labels: &'a Value,
    container: &'a Value,
    role: Role,
    node: NodeView,
}

impl Workload<'_> {
    fn what(&self) -> String {
        format!("{} {}", self.file, self.name)
    }

    fn pod_spec(&self) -> &Value {
        &self.document["spec"]["template"]["spec"]
    }

    /// The volume named by the container's mount at exactly `mount_path`, and the mount.
    fn mount(&self, mount_path: &Path) -> Option<(&Value, &Value)> {
        let mounts = self.container["volumeMounts"].as_array()?;
        let mount = mounts
            .iter()
            .find(|m| m["mountPath"].as_str().map(Path::new) == Some(mount_path))?;
        let volume_name = &mount["name"];
        let pod_volumes = self.pod_spec()["volumes"].as_array();
        let claims = self.document["spec"]["volumeClaimTemplates"].as_array();
        let volume = pod_volumes
            .into_iter()
            .chain(claims)
            .flatten()
            .find(|v| &v["name"] == volume_name || &v["metadata"]["name"] == volume_name)?;
        Some((volume, mount))
    }

    /// The container port named `name`: its number and protocol.
    fn port(&self, name: &str) -> Option<(u16, String)> {
        self.container["ports"].as_array()?.iter().find_map(|p| {
            (p["name"] == name).then(|| {
                let number = p["containerPort"].as_u64().unwrap_or(0) as u16;
                let protocol = p["protocol"].as_str().unwrap_or("TCP").to_string();
                (number, protocol)
            })
        })
    }
}

/// What the checks need of a node's loaded config, origin or edge alike.
struct NodeView {
    /// Listeners by the name their container port must have: rtmp, rtmps, rtsp, rtsps,
    /// rtp and rtcp (UDP), http, tunnel (UDP).
    listens: Vec<(&'static str, SocketAddr, &'static str)>,
    /// Files the node reads, by their key.
    files: Vec<(&'static str, PathBuf)>,
    /// Directories the node writes, by the key that names them.
    writes: Vec<(&'static str, PathBuf)>,
    /// The longest a stop on SIGTERM may take: the drain's grace, then the close.
    stop: Duration,
    /// The probes' paths: liveness (true while draining), readiness (false while
    /// draining).
    liveness: &'static str,
    readiness: &'static str,
}

/// `[rtsp]`'s listeners, by the names their container ports must have: RTSP and RTSPS
/// over TCP, and with UDP transport on, RTP on `udp_listen` and RTCP on the port after it
/// (`longhaul_node::rtsp_udp`). Kubernetes' port names are 15 characters at most.
fn rtsp_listens(
    rtsp: &longhaul_node::config::RtspSection,
) -> Vec<(&'static str, SocketAddr, &'static str)> {
    let mut listens = Vec::new();
    listens.extend(rtsp.listen.map(|a| ("rtsp", a, "TCP")));
    listens.extend(rtsp.tls_listen.map(|a| ("rtsps", a, "TCP")));
    if let Some(rtp) = rtsp.udp_listen {
        let rtcp = SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1));
        listens.push(("rtp", rtp, "UDP"));
        listens.push(("rtcp", rtcp, "UDP"));
    }
    listens
}

fn origin_view(config: &longhaul_origin::Config) -> NodeView {
    let mut listens = vec![("rtmp", config.rtmp.listen, "TCP")];
    if let Some(rtmps) = config.rtmps.listen {
        listens.push(("rtmps", rtmps, "TCP"));
    }
    listens.extend(rtsp_listens(&config.rtsp));
    listens.push(("http", config.http.server.listen, "TCP"));
    let mut files = Vec::new();
    files.extend(config.rtmps.cert.clone().map(|f| ("rtmps.cert", f)));
    files.extend(config.rtmps.key.clone().map(|f| ("rtmps.key", f)));
    if let Some(tunnel) = &config.tunnel {
        listens.push(("tunnel", tunnel.listen, "UDP"));
        files.push(("tunnel.tls.ca", tunnel.tls.ca.clone()));
        files.extend(tunnel.tls.cert.clone().map(|f| ("tunnel.tls.cert", f)));
        files.extend(tunnel.tls.key.clone().map(|f| ("tunnel.tls.key", f)));
        files.extend(
            (tunnel.denied_certificates_file.clone())
                .map(|f| ("tunnel.denied_certificates_file", f)),
        );
    }
    let mut writes = Vec::new();
    if let Some(registry) = &config.registry {
        files.extend((registry.password_file.clone()).map(|f| ("registry.password_file", f)));
        files.extend(registry.tls_ca.clone().map(|f| ("registry.tls_ca", f)));
        let parent = |f: &PathBuf| f.parent().map(Path::to_path_buf).unwrap_or_default();
        writes.extend(
            registry
                .cache
                .as_ref()
                .map(|f| ("registry.cache", parent(f))),
        );
        writes.extend(registry.path.as_ref().map(|f| ("registry.path", parent(f))));
    }
    NodeView {
        listens,
        files,
        writes,
        stop: config.node.drain_grace() + config.ingest.write_timeout(),
        liveness: "/healthz",
        readiness: "/readyz",
    }
}

fn edge_view(config: &longhaul_edge::EdgeConfig) -> NodeView {
    let mut listens = vec![("rtmp", config.rtmp.listen, "TCP")];
    if let Some(rtmps) = config.rtmps.listen {
        listens.push(("rtmps", rtmps, "TCP"));
    }
    listens.extend(rtsp_listens(&config.rtsp));
    listens.push(("http", config.http.listen, "TCP"));
    let mut files = Vec::new();
    files.extend(config.rtmps.cert.clone().map(|f| ("rtmps.cert", f)));
    files.extend(config.rtmps.key.clone().map(|f| ("rtmps.key", f)));
    files.push(("tunnel.tls.ca", config.tunnel.tls.ca.clone()));
    files.extend(
        config
            .tunnel
            .tls
            .cert
            .clone()
            .map(|f| ("tunnel.tls.cert", f)),
    );
    files.extend(config.tunnel.tls.key.clone().map(|f| ("tunnel.tls.key", f)));
    NodeView {
        listens,
        files,
        writes: Vec::new(),
        stop: config.node.drain_grace() + config.ingest.write_timeout() + EDGE_STOP_MARGIN,
        // An edge's /healthz is 503 while no origin is reachable, which a restart cannot
        // mend: its liveness is /livez (crates/edge/src/http.rs).
        liveness: "/livez",
        readiness: "/readyz",
    }
}

/// The Containerfile's instructions, one a line (continuations joined).
fn containerfile() -> Vec<(String, String)> {
    let text = read(CONTAINERFILE);
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(part) = line.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (word, rest) = current.split_once(' ').unwrap_or((&current, ""));
        instructions.push((word.to_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    instructions
}

/// The image's copies of the repository: (source in the repository, path in the image).
fn image_copies() -> Vec<(String, String)> {
    containerfile()
        .into_iter()
        .filter(|(word, rest)| word == "COPY" && !rest.starts_with("--from"))
        .flat_map(|(_, rest)| {
            let parts: Vec<String> = rest.split_whitespace().map(String::from).collect();
            let (dest, sources) = parts.split_last().expect("COPY has a destination");
            let dest = dest.clone();
            sources
                .iter()
                .map(move |s| (s.clone(), dest.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The repository's file that the image has at `path`, if the runtime stage copies it
/// in (the last `COPY SRC/ DEST/` whose DEST holds it).
fn shipped_file(path: &str) -> Option<PathBuf> {
    image_copies()
        .into_iter()
        .filter(|(source, dest)| source.ends_with('/') && dest.ends_with('/'))
        .filter(|(_, dest)| dest.starts_with("/usr/") || dest.starts_with("/etc/"))
        .find_map(|(source, dest)| {
            let rest = path.strip_prefix(dest.as_str())?;
            Some(Path::new(ROOT).join(source).join(rest))
        })
}

/// The config layers named by a container's args, in order, with their text: from the
/// image (the shipped `config/`) or from a ConfigMap of `documents` mounted in the pod.
fn config_layers(
    what: &str,
    container: &Value,
    pod_spec: &Value,
    documents: &[Value],
) -> (Role, Vec<(String, String)>) {
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: the container has no args"))
        .iter()
        .map(|a| text(a, "an arg"))
        .collect();
    let mut rest = args.iter().copied();
    let role = loop {
        match rest.next() {
            Some("--log-format" | "--log") => {
                rest.next();
            }
            Some("origin") => break Role::Origin,
            Some("edge") => break Role::Edge,
            other => panic!("{what}: args {args:?} run no node (found {other:?})"),
        }
    };
    let mut layers = Vec::new();
    while let Some(arg) = rest.next() {
        assert!(
            arg == "-c" || arg == "--config",
            "{what}: unexpected arg {arg:?} in {args:?}"
        );
        let path = rest
            .next()
            .unwrap_or_else(|| panic!("{what}: -c without a file"));
        let text = if let Some(file) = shipped_file(path) {
            std::fs::read_to_string(&file).unwrap_or_else(|e| {
                panic!(
                    "{what}: {path} is the image's copy of {}, which cannot be read: {e}",
                    file.display()
                )
            })
        } else {
            config_map_file(what, path, container, pod_spec, documents)
        };
        layers.push((path.to_string(), text));
    }
    assert!(!layers.is_empty(), "{what}: no config files in {args:?}");
    (role, layers)
}

/// The text of `path` in a ConfigMap mounted in the pod.
fn config_map_file(
    what: &str,
    path: &str,
    container: &Value,
    pod_spec: &Value,
    documents: &[Value],
) -> String {
    let path = Path::new(path);
    let (dir, key) = (path.parent().unwrap_or(Path::new("/")), path.file_name());
    let key = key
        .map(|k| k.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mount = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"].as_str().map(Path::new) == Some(dir))
        .unwrap_or_else(|| {
            panic!(
                "{what}: config file {} is neither in the image's shipped config nor in a mounted volume",
                path.display()
            )
        });
    let volume = pod_spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("{what}: no volume {} for {}", mount["name"], dir.display()));
    let map_name = volume["configMap"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: {} is mounted from no ConfigMap", dir.display()));
    let map = documents
        .iter()
        .find(|d| kind(d) == "ConfigMap" && name(d) == map_name)
        .unwrap_or_else(|| panic!("{what}: ConfigMap {map_name} is not in the same file"));
    map["data"][&key]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: ConfigMap {map_name} has no key {key}"))
        .to_string()
}

/// The container's `LONGHAUL_*` variables as config keys and values; a value from a
/// Secret is a stand-in of the length a secret has.
fn config_variables(what: &str, container: &Value) -> Vec<(String, String)> {
    let mut variables = Vec::new();
    for variable in container["env"].as_array().into_iter().flatten() {
        let name = text(&variable["name"], "an env name");
        let Some(key) = name.strip_prefix("LONGHAUL_") else {
            continue;
        };
        if CLI_VARIABLES.contains(&key) {
            continue;
        }
        let value = match variable["value"].as_str() {
            Some(v) => v.to_string(),
            None if variable["valueFrom"]["secretKeyRef"].is_object() => {
                "a-secret-of-24-characters".to_string()
            }
            None => panic!("{what}: {name} has neither a value nor a Secret"),
        };
        variables.push((key.to_lowercase().replace("__", "."), value));
    }
    variables
}

/// Loads the layers as `longhaul origin|edge -c ...` does (src/config_file.rs: TOML files
/// merged in order by figment, then the variables), into the node's config types, and
/// runs the node's own checks.
fn load_node(
    what: &str,
    role: Role,
    layers: &[(String, String)],
    env: &[(String, String)],
) -> NodeView {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut figment = Figment::new();
    for (i, (path, text)) in layers.iter().enumerate() {
        let file_name = Path::new(path).file_name().expect("a file name");
        let file = dir
            .path()
            .join(format!("{i}-{}", file_name.to_string_lossy()));
        std::fs::write(&file, text).expect("write a layer");
        figment = figment.merge(Toml::file_exact(&file));
    }
    for (key, value) in env {
        figment = figment.merge((key.as_str(), value.as_str()));
    }
    let named: Vec<&str> = layers.iter().map(|(p, _)| p.as_str()).collect();
    match role {
        Role::Origin => {
            let config: longhaul_origin::Config = figment.extract().unwrap_or_else(|e| {
                panic!("{what}: the origin's config ({named:?}) does not load: {e}")
            });
            config
                .validate()
                .unwrap_or_else(|e| panic!("{what}: the origin's config is refused: {e}"));
            origin_view(&config)
        }
        Role::Edge => {
            let config: longhaul_edge::EdgeConfig = figment.extract().unwrap_or_else(|e| {
                panic!("{what}: the edge's config ({named:?}) does not load: {e}")
            });
            config
                .validate()
                .unwrap_or_else(|e| panic!("{what}: the edge's config is refused: {e}"));
            edge_view(&config)
        }
    }
}

/// Every node workload of every manifest, its config loaded.
fn workloads(manifests: &[(String, Vec<Value>)]) -> Vec<Workload<'_>> {
    let mut workloads = Vec::new();
    for (file, documents) in manifests {
        for document in documents {
            if !matches!(kind(document), "StatefulSet" | "Deployment") {
                continue;
            }
            let what = format!("{file} {}", name(document));
            let pod_spec = &document["spec"]["template"]["spec"];
            let containers = pod_spec["containers"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: no containers"));
            assert_eq!(containers.len(), 1, "{what}: one container, the node");
            let container = &containers[0];
            let (role, layers) = config_layers(&what, container, pod_spec, documents);
            let env = config_variables(&what, container);
            let node = load_node(&what, role, &layers, &env);
            workloads.push(Workload {
                file,
                name: name(document).to_string(),
                document,
                pod_labels: &document["spec"]["template"]["metadata"]["labels"],
                container,
                role,
                node,
            });
        }
    }
    workloads
}

#[test]
fn every_manifest_parses_and_names_itself() {
    let mut kinds = BTreeSet::new();
    for (file, documents) in manifests() {
        assert!(!documents.is_empty(), "{file} holds no document");
        for (i, document) in documents.iter().enumerate() {
            let at = format!("{file} document {}", i + 1);
            assert!(document["apiVersion"].is_string(), "{at}: no apiVersion");
            assert!(document["kind"].is_string(), "{at}: no kind");
            assert!(!name(document).is_empty(), "{at}: no metadata.name");
            kinds.insert(kind(document).to_string());
        }
    }
    for needed in [
        "ConfigMap",
        "Service",
        "StatefulSet",
        "Deployment",
        "PodDisruptionBudget",
    ] {
        assert!(
            kinds.contains(needed),
            "no {needed} in {KUBERNETES_DIR}: {kinds:?}"
        );
    }
}

#[test]
fn an_origin_and_an_edge_load_their_config_as_the_binary_does() {
    let manifests = manifests();
    let workloads = workloads(&manifests);
    assert!(
        workloads.iter().any(|w| w.role == Role::Origin),
        "no origin"
    );
    assert!(workloads.iter().any(|w| w.role == Role::Edge), "no edge");
    for w in &workloads {
        // One identity per pod: a second pod with the same node id would take its
        // tunnels by turns.
        assert_eq!(
            w.document["spec"]["replicas"],
            1,
            "{}: one pod per node",
            w.what()
        );
        if kind(w.document) == "Deployment" {
            assert_eq!(
                w.document["spec"]["strategy"]["type"],
                "Recreate",
                "{}: the old pod must stop before the new one dials the origins",
                w.what()
            );
        }
    }
}

#[test]
fn container_ports_are_the_config_listeners() {
    let manifests = manifests();
    for w in workloads(&manifests) {
        let mut want = BTreeSet::new();
        for (port_name, addr, protocol) in &w.node.listens {
            assert!(
                addr.ip().is_unspecified(),
                "{}: {port_name} listens on {addr}, which no Service can reach",
                w.what()
            );
            want.insert((port_name.to_string(), addr.port(), protocol.to_string()));
        }
        let have: BTreeSet<(String, u16, String)> = w.container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let port_name = p["name"].as_str().unwrap_or("").to_string();
                let number = p["containerPort"].as_u64().unwrap_or(0) as u16;
                let protocol = p["protocol"].as_str().unwrap_or("TCP").to_string();
                (port_name, number, protocol)
            })
            .collect();
        assert_eq!(
            have,
            want,
            "{}: container ports against the config's listeners",
            w.what()
        );
    }
}

#[test]
fn services_reach_the_named_ports_of_the_pods_they_select() {
    let manifests = manifests();
    let workloads = workloads(&manifests);
    for (file, documents) in &manifests {
        let mut exposed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for service in documents.iter().filter(|d| kind(d) == "Service") {
            let what = format!("{file} Service {}", name(service));
            let selector = &service["spec"]["selector"];
            let selected: Vec<&Workload> = workloads
                .iter()
                .filter(|w| w.file == file && selects(selector, w.pod_labels))
                .collect();
            assert!(!selected.is_empty(), "{what} selects no pod of {file}");
            for port in service["spec"]["ports"].as_array().into_iter().flatten() {
                let target = text(&port["targetPort"], "a targetPort (by name)");
                let protocol = port["protocol"].as_str().unwrap_or("TCP");
                for w in &selected {
                    let (number, container_protocol) = w.port(target).unwrap_or_else(|| {
                        panic!("{what}: {} has no container port {target}", w.what())
                    });
                    assert_eq!(
                        protocol, container_protocol,
                        "{what}: port {target}'s protocol"
                    );
                    if matches!(target, "rtp" | "rtcp") {
                        // A SETUP over UDP answers server_port with the node's own RTP
                        // and RTCP ports: the encoder sends to those numbers.
                        assert_eq!(
                            port["port"].as_u64(),
                            Some(u64::from(number)),
                            "{what}: {target} must be published as the pod's port {number}"
                        );
                    }
                    exposed
                        .entry(w.name.clone())
                        .or_default()
                        .insert(target.to_string());
                }
                if target == "tunnel" {
                    // The edges hear of a drain over the tunnel and move their streams:
                    // a draining (not ready) origin must stay reachable there.
                    assert_eq!(
                        service["spec"]["publishNotReadyAddresses"], true,
                        "{what}: the tunnel must stay up while the origin drains"
                    );
                }
            }
        }
        for w in workloads.iter().filter(|w| w.file == file) {
            let mut needed: Vec<&str> = match w.role {
                Role::Origin => vec!["rtmp", "rtmps", "http", "tunnel"],
                Role::Edge => vec!["rtmp", "rtmps"],
            };
            // RTSP where the node listens for it: both roles take publishes.
            needed.extend(
                (w.node.listens.iter())
                    .map(|(n, _, _)| *n)
                    .filter(|n| matches!(*n, "rtsp" | "rtsps" | "rtp" | "rtcp")),
            );
            let have = exposed.get(&w.name).cloned().unwrap_or_default();
            for port in &needed {
                assert!(
                    have.contains(*port),
                    "{}: no Service exposes {port}",
                    w.what()
                );
            }
        }
    }
}

#[test]
fn probes_ask_the_http_port_for_the_paths_the_node_serves() {
    let manifests = manifests();
    for w in workloads(&manifests) {
        let http_port = w
            .node
            .listens
            .iter()
            .find(|(n, _, _)| *n == "http")
            .map(|(_, addr, _)| addr.port())
            .expect("every node has an HTTP port");
        let probe_port = |probe: &Value, which: &str| {
            let port = &probe["httpGet"]["port"];
            match port.as_str() {
                Some(port_name) => {
                    w.port(port_name)
                        .unwrap_or_else(|| {
                            panic!("{}: {which} names no port {port_name}", w.what())
                        })
                        .0
                }
                None => port.as_u64().unwrap_or(0) as u16,
            }
        };
        let liveness = &w.container["livenessProbe"];
        let readiness = &w.container["readinessProbe"];
        assert_eq!(
            probe_port(liveness, "livenessProbe"),
            http_port,
            "{}",
            w.what()
        );
        assert_eq!(
            probe_port(readiness, "readinessProbe"),
            http_port,
            "{}",
            w.what()
        );
        assert_eq!(
            liveness["httpGet"]["path"],
            w.node.liveness,
            "{}: liveness",
            w.what()
        );
        assert_eq!(
            readiness["httpGet"]["path"],
            w.node.readiness,
            "{}: readiness",
            w.what()
        );
        let startup = &w.container["startupProbe"];
        if !startup.is_null() {
            assert_eq!(
                probe_port(startup, "startupProbe"),
                http_port,
                "{}",
                w.what()
            );
            assert_eq!(
                startup["httpGet"]["path"],
                w.node.liveness,
                "{}: startup",
                w.what()
            );
        }
    }
}

#[test]
fn every_file_the_config_names_is_mounted_and_every_directory_it_writes_is_writable() {
    let manifests = manifests();
    for w in workloads(&manifests) {
        for (key, file) in &w.node.files {
            let dir = file.parent().unwrap_or(Path::new("/"));
            let file_name = file.file_name().map(|f| f.to_string_lossy().into_owned());
            let (volume, _) = w.mount(dir).unwrap_or_else(|| {
                panic!(
                    "{}: {key} is {}, but nothing is mounted at {}",
                    w.what(),
                    file.display(),
                    dir.display()
                )
            });
            let items = volume["secret"]["items"].as_array().unwrap_or_else(|| {
                panic!(
                    "{}: {key} ({}) is not from a Secret with its items listed",
                    w.what(),
                    file.display()
                )
            });
            assert!(
                items
                    .iter()
                    .any(|i| i["path"].as_str() == file_name.as_deref()),
                "{}: the Secret {} mounted at {} has no item {:?} for {key}",
                w.what(),
                volume["secret"]["secretName"],
                dir.display(),
                file_name
            );
        }
        for (key, dir) in &w.node.writes {
            let (volume, mount) = w.mount(dir).unwrap_or_else(|| {
                panic!(
                    "{}: {key} writes in {}, where nothing is mounted",
                    w.what(),
                    dir.display()
                )
            });
            assert_ne!(
                mount["readOnly"],
                true,
                "{}: {} is read-only",
                w.what(),
                dir.display()
            );
            assert!(
                volume["spec"]["accessModes"].is_array()
                    || volume["persistentVolumeClaim"].is_object(),
                "{}: {key} in {} must outlive the pod (a persistent volume)",
                w.what(),
                dir.display()
            );
        }
        // Everything else is read-only: the node writes only where the checks above say.
        assert_eq!(
            w.container["securityContext"]["readOnlyRootFilesystem"],
            true,
            "{}",
            w.what()
        );
    }
}

#[test]
fn the_grace_period_covers_the_drain_and_the_pod_runs_as_the_image_user() {
    let manifests = manifests();
    let user = image_user();
    for w in workloads(&manifests) {
        let grace = w.pod_spec()["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30);
        assert!(
            Duration::from_secs(grace) >= w.node.stop,
            "{}: terminationGracePeriodSeconds {grace} is shorter than the drain and stop ({:?})",
            w.what(),
            w.node.stop
        );
        let security = &w.pod_spec()["securityContext"];
        assert_eq!(security["runAsNonRoot"], true, "{}", w.what());
        assert_eq!(
            security["runAsUser"].as_u64(),
            Some(user),
            "{}: the image's user",
            w.what()
        );
    }
}

#[test]
fn a_disruption_budget_selects_every_pod_and_both_legs_of_a_region_share_one() {
    let manifests = manifests();
    let workloads = workloads(&manifests);
    for w in &workloads {
        let documents = &manifests
            .iter()
            .find(|(f, _)| f == w.file)
            .expect("its file")
            .1;
        let budgets: Vec<&Value> = documents
            .iter()
            .filter(|d| kind(d) == "PodDisruptionBudget")
            .filter(|d| selects(&d["spec"]["selector"]["matchLabels"], w.pod_labels))
            .collect();
        assert_eq!(
            budgets.len(),
            1,
            "{}: one PodDisruptionBudget selects it",
            w.what()
        );
        let spec = &budgets[0]["spec"];
        assert!(
            spec["maxUnavailable"].is_number() || spec["minAvailable"].is_number(),
            "{}: the budget sets no bound",
            w.what()
        );
        if w.role == Role::Edge {
            // The p and b nodes of a region carry the two legs of every stream: one
            // budget over both keeps an eviction from taking both at once.
            let others = workloads
                .iter()
                .filter(|o| o.file == w.file && o.role == Role::Edge && o.name != w.name);
            for other in others {
                assert!(
                    selects(&spec["selector"]["matchLabels"], other.pod_labels),
                    "{}: its budget does not cover {}",
                    w.what(),
                    other.name
                );
                assert_eq!(spec["maxUnavailable"], 1, "{}: one leg at a time", w.what());
            }
        }
    }
}

/// The UID the Containerfile's runtime stage runs as.
fn image_user() -> u64 {
    let users: Vec<String> = containerfile()
        .into_iter()
        .filter(|(word, _)| word == "USER")
        .map(|(_, rest)| rest)
        .collect();
    let last = users.last().expect("the Containerfile sets a USER");
    let uid = last.split(':').next().unwrap_or("");
    uid.parse()
        .unwrap_or_else(|_| panic!("the Containerfile's USER {last:?} is not a numeric UID"))
}

#[test]
fn the_containerfile_builds_and_runs_the_binary_with_the_shipped_config() {
    let instructions = containerfile();
    for (source, _) in image_copies() {
        assert!(
            Path::new(ROOT).join(&source).exists(),
            "{CONTAINERFILE} copies {source}, which is not in the repository"
        );
    }
    let cargo: toml::Table = read("Cargo.toml").parse().expect("Cargo.toml");
    let bins: Vec<&str> = cargo["bin"]
        .as_array()
        .expect("Cargo.toml's [[bin]]")
        .iter()
        .filter_map(|b| b["name"].as_str())
        .collect();
    assert_eq!(bins, ["longhaul"]);
    let build = instructions
        .iter()
        .find(|(word, rest)| word == "RUN" && rest.contains("cargo build"))
        .expect("a RUN cargo build");
    for flag in ["--release", "--locked", "--bin longhaul"] {
        assert!(
            build.1.contains(flag),
            "the build lacks {flag}: {}",
            build.1
        );
    }
    let rust_version = cargo["workspace"]["package"]["rust-version"]
        .as_str()
        .expect("the workspace's rust-version");
    let builder = &instructions
        .iter()
        .find(|(w, _)| w == "FROM")
        .expect("a FROM")
        .1;
    assert!(
        builder.contains(&format!("rust:{rust_version}-")),
        "the builder ({builder}) is not the workspace's Rust {rust_version}"
    );
    // The binary the build makes is the one the image runs.
    let installed = instructions
        .iter()
        .filter(|(w, rest)| w == "COPY" && rest.starts_with("--from"))
        .find_map(|(_, rest)| {
            let parts: Vec<&str> = rest.split_whitespace().collect();
            (parts.len() == 3 && parts[1].ends_with("/target/release/longhaul"))
                .then(|| parts[2].to_string())
        })
        .expect("the runtime stage copies target/release/longhaul");
    let entrypoint = &instructions
        .iter()
        .find(|(w, _)| w == "ENTRYPOINT")
        .expect("an ENTRYPOINT")
        .1;
    let entrypoint: Vec<String> =
        serde_json::from_str(entrypoint).expect("ENTRYPOINT in exec form");
    assert_eq!(entrypoint, [installed]);
    // Its ports are the shipped config's: base.toml's listeners (RTSP's UDP, RTP and the
    // RTCP port after it) and origin.toml's tunnel.
    let port = |file: &str, keys: &[&str]| -> u16 {
        let table: toml::Table = read(file).parse().expect("TOML");
        let mut value = &toml::Value::Table(table.clone());
        for key in keys {
            value = &value[*key];
        }
        let addr: SocketAddr = value
            .as_str()
            .expect("a listen address")
            .parse()
            .expect("an address");
        addr.port()
    };
    let want: BTreeSet<String> = [
        format!("{}/tcp", port("config/base.toml", &["rtmp", "listen"])),
        format!("{}/tcp", port("config/base.toml", &["rtmps", "listen"])),
        format!("{}/tcp", port("config/base.toml", &["rtsp", "listen"])),
        format!("{}/tcp", port("config/base.toml", &["rtsp", "tls_listen"])),
        format!("{}/udp", port("config/base.toml", &["rtsp", "udp_listen"])),
        format!(
            "{}/udp",
            port("config/base.toml", &["rtsp", "udp_listen"]) + 1
        ),
        format!("{}/tcp", port("config/base.toml", &["http", "listen"])),
        format!("{}/udp", port("config/origin.toml", &["tunnel", "listen"])),
    ]
    .into();
    let exposed: BTreeSet<String> = instructions
        .iter()
        .filter(|(w, _)| w == "EXPOSE")
        .flat_map(|(_, rest)| {
            rest.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        exposed, want,
        "EXPOSE against config/base.toml and config/origin.toml"
    );
    // The manifests' shipped layers are where the image puts config/.
    assert!(
        shipped_file("/usr/share/longhaul/config/base.toml")
            .is_some_and(|f| f == Path::new(ROOT).join("config/").join("base.toml")),
        "the image has config/ at /usr/share/longhaul/config/"
    );
}

/// `config/dev.toml`'s nodes: (HTTP address, node id, role).
fn dev_nodes() -> BTreeSet<(String, String, String)> {
    let dev: toml::Table = read("config/dev.toml").parse().expect("config/dev.toml");
    let mut nodes = BTreeSet::new();
    for (table, role) in [("origins", "origin"), ("edges", "edge")] {
        for node in dev[table].as_table().expect("a table of nodes").values() {
            nodes.insert((
                node["http"].as_str().expect("http").to_string(),
                node["id"].as_str().expect("id").to_string(),
                role.to_string(),
            ));
        }
    }
    nodes
}

#[test]
fn the_dev_scrape_job_scrapes_every_node_of_longhaul_dev() {
    let documents = yaml_documents("deploy/prometheus/prometheus.yml");
    let config = &documents[0];
    assert!(
        config["rule_files"].as_array().is_some_and(|r| r
            .iter()
            .any(|f| f.as_str().is_some_and(|f| f.starts_with("rules/")))),
        "prometheus.yml reads the rules in rules/"
    );
    let job = config["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .find(|j| j["job_name"] == "longhaul-dev")
        .expect("a longhaul-dev job");
    assert_eq!(
        job["metrics_path"].as_str().unwrap_or("/metrics"),
        "/metrics"
    );
    let mut scraped = BTreeSet::new();
    for group in job["static_configs"].as_array().expect("static_configs") {
        for target in group["targets"].as_array().expect("targets") {
            scraped.insert((
                text(target, "a target").to_string(),
                text(&group["labels"]["node"], "a node label").to_string(),
                text(&group["labels"]["role"], "a role label").to_string(),
            ));
        }
    }
    assert_eq!(scraped, dev_nodes(), "the dev job against config/dev.toml");
}

/// Prometheus's name for a Kubernetes label or annotation in its meta labels.
fn meta_name(prefix: &str, key: &str) -> String {
    let sanitized: String = key
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{prefix}{sanitized}")
}

#[test]
fn the_kubernetes_scrape_job_keeps_the_pods_and_reads_their_labels() {
    let documents = yaml_documents("deploy/prometheus/kubernetes.yml");
    let job = documents[0]["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .find(|j| j["job_name"] == "longhaul-kubernetes")
        .expect("a longhaul-kubernetes job");
    assert_eq!(job["kubernetes_sd_configs"][0]["role"], "pod");
    let rules = job["relabel_configs"].as_array().expect("relabel_configs");
    let manifests = manifests();
    for w in workloads(&manifests) {
        let template = &w.document["spec"]["template"]["metadata"];
        let mut meta: BTreeMap<String, String> = BTreeMap::new();
        for (prefix, map) in [
            ("__meta_kubernetes_pod_label_", &template["labels"]),
            (
                "__meta_kubernetes_pod_annotation_",
                &template["annotations"],
            ),
        ] {
            for (key, value) in map.as_object().into_iter().flatten() {
                meta.insert(meta_name(prefix, key), value.as_str().unwrap_or("").into());
            }
        }
        // Discovery's own labels, always there.
        meta.insert("__meta_kubernetes_namespace".into(), "longhaul".into());
        meta.insert("__meta_kubernetes_pod_name".into(), w.name.clone());
        meta.insert("__address__".into(), "10.0.0.1:8081".into());
        for rule in rules {
            let sources: Vec<&str> = rule["source_labels"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| text(s, "a source label"))
                .collect();
            for source in &sources {
                assert!(
                    meta.contains_key(*source),
                    "{}: the scrape job reads {source}, which the pod does not have",
                    w.what()
                );
            }
            if rule["action"] == "keep" {
                // The keep rules match literal values; a pattern would need a regex
                // engine here.
                let regex = text(&rule["regex"], "a keep rule's regex");
                assert!(regex.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
                let value: Vec<&str> = sources.iter().map(|s| meta[*s].as_str()).collect();
                assert_eq!(
                    value.join(";"),
                    regex,
                    "{}: dropped by a keep rule",
                    w.what()
                );
            }
        }
        let http = w.port("http").expect("an http port").0;
        let annotations = &template["annotations"];
        assert_eq!(
            annotations["prometheus.io/port"],
            http.to_string(),
            "{}",
            w.what()
        );
        assert_eq!(
            annotations["prometheus.io/path"],
            "/metrics",
            "{}",
            w.what()
        );
    }
}

/// The liveness and readiness paths the manifests give a role.
fn probe_paths(role: Role) -> (String, String) {
    let manifests = manifests();
    let workloads = workloads(&manifests);
    let w = workloads
        .iter()
        .find(|w| w.role == role)
        .expect("a workload of the role");
    let path =
        |probe: &str| text(&w.container[probe]["httpGet"]["path"], "a probe path").to_string();
    (path("livenessProbe"), path("readinessProbe"))
}

/// GET `url`: status and the JSON body.
async fn get(url: &str) -> (u16, Value) {
    let (status, _, body) = http("GET", url, "", None).await;
    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_stays_live_and_stops_being_ready_while_it_drains() {
    let (liveness, readiness) = probe_paths(Role::Origin);
    let origin = start_origin("").await;
    let base = origin.http();
    assert_eq!(get(&format!("{base}{liveness}")).await.0, 200);
    let (status, ready) = get(&format!("{base}{readiness}")).await;
    assert_eq!(
        (status, &ready["ready"]),
        (200, &Value::Bool(true)),
        "{ready}"
    );

    let (status, _, body) = http("POST", &format!("{base}/api/v1/drain"), "", None).await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let (status, ready) = get(&format!("{base}{readiness}")).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["ready"], false);
    assert_eq!(ready["reason"], "draining");
    let (status, live) = get(&format!("{base}{liveness}")).await;
    assert_eq!(
        status, 200,
        "a draining origin must not be restarted: {live}"
    );
    origin.origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_stays_live_and_stops_being_ready_while_it_drains() {
    let (liveness, readiness) = probe_paths(Role::Edge);
    let cluster = start_cluster("").await;
    let base = format!("http://{}", cluster.edge.http_addr);
    assert_eq!(get(&format!("{base}{liveness}")).await.0, 200);
    let (status, ready) = get(&format!("{base}{readiness}")).await;
    assert_eq!(
        (status, &ready["ready"]),
        (200, &Value::Bool(true)),
        "{ready}"
    );

    // No publish is left, so the drain returns at once; the edge stays draining.
    cluster.edge.drain().await;
    let (status, ready) = get(&format!("{base}{readiness}")).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["reason"], "draining");
    let (status, live) = get(&format!("{base}{liveness}")).await;
    assert_eq!(status, 200, "a draining edge must not be restarted: {live}");
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_without_an_origin_is_not_ready_but_live() {
    let (liveness, readiness) = probe_paths(Role::Edge);
    let cluster = start_cluster("").await;
    let base = format!("http://{}", cluster.edge.http_addr);
    let support::cluster::TestCluster { origin, edge, .. } = cluster;
    origin.origin.stop().await;
    // The tunnel sees the origin gone within the router's silence limit and the
    // tunnel's idle timeout; 15 s bounds both with room on a shared machine.
    let deadline = Instant::now() + Duration::from_secs(15);
    let ready = loop {
        let (status, ready) = get(&format!("{base}{readiness}")).await;
        if status == 503 {
            break ready;
        }
        assert!(
            Instant::now() < deadline,
            "still ready with its origin gone: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ready["reason"], "unavailable", "{ready}");
    assert_eq!(get(&format!("{base}/healthz")).await.0, 503);
    let (status, live) = get(&format!("{base}{liveness}")).await;
    assert_eq!(
        status, 200,
        "an origin outage is no reason to restart an edge: {live}"
    );
    edge.stop().await;
}
