//! The `longhaul` binary: `entry` against a live API, config errors, and `longhaul dev`
//! with the commands it prints, pasted as a user would.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::cluster::start_cluster;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_longhaul");

/// Runs `longhaul origin --config <dir>/<file>` with `config` as that file's text and
/// `env` set, and returns what it printed. Used for configurations that stop the node.
/// Runs `longhaul origin` on `config` in a temporary directory, where relative paths
/// in it (the registry's `r.db`) land and go away with it.
fn origin_with(file: &str, config: &str, env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    std::fs::write(&path, config).unwrap();
    Command::new(BIN)
        .current_dir(dir.path())
        .args(["origin", "--config"])
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_create_prints_the_new_entry_as_json() {
    let origin = start_origin(PRODUCTION_ENDPOINTS).await;
    let api = origin.http();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args([
                "entry", "create", "--name", "launch", "--json", "--api", &api,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let id = v["id"].as_str().expect("id");
    assert!(
        id.starts_with("1_")
            && id.len() == 10
            && id[2..]
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{id}"
    );
    let token = v["token"].as_str().expect("token");
    assert!(token.len() >= 13, "a token of at least 64 bits: {token}");
    assert_eq!(v["name"], "launch");
    let primary = v["endpoints"]["primary_rtmp"].as_str().expect("endpoints");
    assert!(primary.contains(token), "{primary}");
    // The registry really holds it.
    let stored = origin.registry().get(id).expect("stored");
    assert_eq!(stored.token, token);

    // The human form: a table of every place and leg, RTMP then RTMPS, then the streams.
    let (api, show_id) = (origin.http(), id.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["entry", "show", &show_id, "--api", &api])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    // Places are padded to the widest, "LATAM (Sao Paulo) [gru]" (23 characters).
    let row = |place: &str, leg: &str, url: String| format!("{place:23}  {leg:7}  {url}");
    let url = |scheme: &str, leg: &str, region: &str, port: u16| {
        format!("{scheme}://{id}.{leg}.{region}kpublish.example.com:{port}/kLive/?t={token}")
    };
    for line in [
        row("data centres", "primary", url("rtmp", "p", "", 1935)),
        row("", "", url("rtmps", "b", "", 443)),
        row(
            "APAC (Singapore) [sin]",
            "primary",
            url("rtmp", "p", "sin.", 1935),
        ),
        row("", "backup", url("rtmp", "b", "sin.", 1935)),
        format!("streams  {id}_1  {id}_2  {id}_3"),
        "  EMEA (Frankfurt)   http://fr-publish-speedtest.example.com".to_string(),
        // RTSP: a row per rendition and leg, the stream in the URL, RTSPS below.
        format!(
            "{:23}  {id}_2  primary  rtsp://{id}.p.s.kpublish.example.com:554/kLive/{id}_2?t={token}",
            ""
        ),
        format!(
            "{:23}  {:12}  {:7}  rtsps://{id}.b.s.kpublish.example.com:322/kLive/{id}_3?t={token}",
            "", "", ""
        ),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in\n{text}"
        );
    }

    // An error from the API reaches the user.
    let api = origin.http();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["entry", "show", "1_nonexist", "--api", &api])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What `longhaul origin` printed on stderr for a config it refused.
fn refusal(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "the node started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_config_value_names_the_key_the_file_and_its_line() {
    let config = "[node]\nid = \"x\"\nregion = \"nyc\"\n[rtmp]\nlisten = 1935\n[registry]\npath = \"r.db\"\n";
    let err = refusal(&origin_with("site.toml", config, &[]));
    assert!(
        err.contains(
            "site.toml line 5: rtmp.listen: expected socket address, found signed int `1935`"
        ),
        "{err}"
    );
    let config = "[node]\nid = \"x\"\nregion = \"nyc\"\n[rtmp]\nlisten = \"0.0.0.0:19x35\"\n[registry]\npath = \"r.db\"\n";
    let err = refusal(&origin_with("site.toml", config, &[]));
    assert!(
        err.contains("line 5: rtmp.listen: invalid socket address syntax; expected an address and port, e.g. \"0.0.0.0:1935\""),
        "{err}"
    );
    // The key as written: figment's profile name is not part of it.
    assert!(!err.contains("default."), "{err}");
}

#[test]
fn a_typo_in_a_file_is_refused_at_its_line_with_the_keys_there_are() {
    let config = "[node]\nid = \"x\"\nregion = \"nyc\"\n[registry]\npath = \"r.db\"\n[rtmp]\nlisten_addr = \"0.0.0.0:1\"\n";
    let err = refusal(&origin_with("typo.toml", config, &[]));
    assert!(
        err.contains("typo.toml line 7: rtmp.listen_addr: unknown key \"listen_addr\"; this table takes `listen`"),
        "{err}"
    );
    assert!(!err.contains("``"), "no doubled backticks: {err}");

    let err = refusal(&origin_with("typo.toml", "[node\n", &[]));
    assert!(
        err.contains("typo.toml is not valid TOML") && err.contains("line 1"),
        "{err}"
    );
}

#[test]
fn a_bad_environment_value_is_shown_with_its_variable_and_the_form_expected() {
    let config = "[node]\nid = \"x\"\nregion = \"nyc\"\n[registry]\npath = \"r.db\"\n";
    let err = refusal(&origin_with(
        "site.toml",
        config,
        &[("LONGHAUL_HTTP__LISTEN", "not-an-address")],
    ));
    assert!(
        err.contains("LONGHAUL_HTTP__LISTEN=\"not-an-address\" (sets http.listen): invalid socket address syntax; expected an address and port"),
        "{err}"
    );
    let err = refusal(&origin_with(
        "site.toml",
        config,
        &[("LONGHAUL_INGEST__MAX_CONNECTIONS", "-5")],
    ));
    assert!(
        err.contains("LONGHAUL_INGEST__MAX_CONNECTIONS=\"-5\" (sets ingest.max_connections): expected a whole number of 0 or more"),
        "{err}"
    );
}

#[test]
fn a_taken_port_is_named_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = format!(
        "[node]\nid = \"x\"\nregion = \"nyc\"\n[registry]\npath = \"r.db\"\n[rtmp]\nlisten = \"127.0.0.1:{port}\"\n"
    );
    let err = refusal(&origin_with("site.toml", &config, &[]));
    let cause = std::io::Error::from(std::io::ErrorKind::AddrInUse).to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_eq!(
        err.matches("Address already in use").count(),
        1,
        "{err} ({cause})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_commands_pointed_at_an_edge_are_told_it_is_one() {
    let cluster = start_cluster("").await;
    // A URL without a scheme is taken as http://.
    let api = cluster.edge.http_addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["entry", "list", "--api", &api])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("404 Not Found: this is edge test-edge")
            && err.contains("entries are managed at an origin")
            && err.contains("test-origin"),
        "{err}"
    );
    // And the same command at the origin, also without a scheme, works.
    let api = cluster.origin.origin.http_addr.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["entry", "list", "--api", &api])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.stop().await;
}

/// A second `longhaul dev` fails before it writes anything: the first one's files stay
/// byte for byte as they were, whether the second collides on ports or, moved by
/// `--port-offset`, on the data directory.
#[test]
fn a_second_dev_cluster_leaves_the_first_ones_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    // Away from the default ports, which another test's cluster uses.
    let first_offset = "20000";
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut dev = Command::new(BIN)
        .args(["dev", "--port-offset", first_offset, "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let stdout = dev.stdout.take().unwrap();
    let pid = dev.id();
    let mut dev = KillOnDrop(dev);
    let mut banner = String::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        banner.push_str(&line);
        banner.push('\n');
        if line.contains("longhaul entry create") {
            break;
        }
    }
    assert!(banner.contains("rtmp://127.0.0.1:21935"), "{banner}");
    // The running cluster writes its own files too (a presence write retried after
    // SQLite was busy): wait until they hold still for half a second.
    let mut before = files_of(dir.path());
    let settle = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = files_of(dir.path());
        if now == before || Instant::now() > settle {
            break;
        }
        before = now;
    }
    assert!(
        before.len() >= 5,
        "registry, certificates, lock: {before:?}"
    );

    let second = |offset: &str| {
        Command::new(BIN)
            .args(["dev", "--port-offset", offset, "--data-dir"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = second(first_offset);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("127.0.0.1:21935 (RTMP of origin nyc)") && err.contains("--port-offset"),
        "{err}"
    );
    assert_unchanged(&before, &files_of(dir.path()), "the port clash");

    let out = second("10000");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("is in use by another `longhaul dev` (pid"),
        "{err}"
    );
    assert_unchanged(&before, &files_of(dir.path()), "the lock clash");

    // Its demo entry lists the product's endpoints on the cluster's (moved) loopback
    // ports: leg p at nyc, leg b at pao, and each region's edge.
    let list = Command::new(BIN)
        .args(["entry", "list", "--api", "127.0.0.1:28081"])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    let id = list.split_whitespace().next().expect("the demo entry");
    let show = Command::new(BIN)
        .args(["entry", "show", id, "--api", "127.0.0.1:28081"])
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout).into_owned();
    for want in [
        "data centres             primary  rtmp://127.0.0.1:21935/kLive/?t=",
        "backup   rtmp://127.0.0.1:22935/kLive/?t=",
        "EMEA (Frankfurt) [fra]   primary  rtmp://127.0.0.1:23935/kLive/?t=",
        "LATAM (Sao Paulo) [gru]  primary  rtmp://127.0.0.1:24935/kLive/?t=",
        "APAC (Singapore) [sin]   primary  rtmp://127.0.0.1:25935/kLive/?t=",
        "rtmps://127.0.0.1:25936/kLive/?t=",
    ] {
        assert!(show.contains(want), "{want:?} missing:\n{show}");
    }

    // Ctrl-C: an orderly shutdown, logged at INFO; a log file gets no colour codes, and
    // every line says which node (or the dev launcher) spoke.
    // SAFETY: kill(2) on our own child's pid; no memory involved.
    unsafe {
        libc::kill(pid as i32, libc::SIGINT);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while dev.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "dev did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.contains("shutting down the dev cluster"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a file:\n{text}");
    for line in text.lines() {
        assert!(
            !line.contains(" WARN ") && !line.contains(" ERROR "),
            "{line}"
        );
        assert!(
            line.contains(" node{id=") || line.contains(" longhaul::dev:"),
            "a line that names no node: {line}"
        );
    }
}

/// Fails naming the files that differ between `before` and `after`.
fn assert_unchanged(
    before: &std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>,
    after: &std::collections::BTreeMap<std::path::PathBuf, Vec<u8>>,
    what: &str,
) {
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(changed.is_empty(), "{what} changed files: {changed:?}");
}

/// Every file under `dir` with its bytes.
fn files_of(dir: &std::path::Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut files = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// `longhaul dev` starts, prints commands, and the printed publish and play commands work.
#[test]
fn dev_cluster_prints_commands_that_work_when_pasted() {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let mut dev = Command::new(BIN)
        .args(["dev", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = dev.stdout.take().unwrap();
    let _dev = KillOnDrop(dev);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut banner = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && !banner
            .iter()
            .any(|l: &String| l.contains("longhaul entry create"))
    {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            banner.push(line);
        }
    }
    let text = banner.join("\n");
    assert!(
        text.contains("Web console: http://127.0.0.1:8081/console/"),
        "{text}"
    );
    for port in ["1935", "2935", "3935", "4935", "5935"] {
        assert!(
            text.contains(&format!("127.0.0.1:{port}")),
            "{port} missing:\n{text}"
        );
    }
    // A publish command per edge (both legs, with tee), one straight to an origin and
    // one over RTSP (the entry's primary RTSP URL, at the first origin); then the play
    // commands, RTMP and HTTP-FLV at each origin.
    let publishes: Vec<String> = banner
        .iter()
        .filter(|l| l.trim_start().starts_with("ffmpeg "))
        .map(|l| l.trim().to_string())
        .collect();
    assert_eq!(
        publishes.len(),
        5,
        "three edges, one origin, one RTSP:\n{text}"
    );
    assert!(
        publishes[4].contains("-f rtsp -rtsp_transport tcp \"rtsp://127.0.0.1:1554/kLive/")
            && publishes[4].contains("_1?t=")
            && publishes[4].ends_with("&i=0\""),
        "the entry's primary RTSP URL: {}",
        publishes[4]
    );
    assert!(
        text.contains("backup leg: rtsp://127.0.0.1:2554/kLive/"),
        "{text}"
    );
    assert!(
        publishes[0].contains("127.0.0.1:3935") && publishes[0].contains("-f tee"),
        "fra first, both legs: {}",
        publishes[0]
    );
    let plays: Vec<String> = banner
        .iter()
        .flat_map(|l| l.split("ffplay ").skip(1))
        .filter_map(|p| p.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert_eq!(plays.len(), 4, "RTMP and HTTP-FLV at both origins:\n{text}");
    // The first edge's legs reach both origins: each plays the rendition. The others
    // are checked at the first origin.
    for (i, publish) in publishes.iter().enumerate() {
        let urls = if i == 0 { &plays[..] } else { &plays[..1] };
        paste_and_probe(publish, urls);
    }
}

/// Pastes a publish command (bounded), then probes what each play command names.
fn paste_and_probe(publish: &str, urls: &[String]) {
    // ffmpeg takes its options before the output: `-loglevel` goes first.
    let publish = publish.replacen("ffmpeg ", "ffmpeg -loglevel error ", 1);
    let publisher = Command::new("sh")
        .arg("-c")
        .arg(format!("exec timeout 8 {publish}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    for url in urls {
        probe(&publish, url);
    }
    let _ = wait_bounded(publisher);
}

/// ffprobe finds H.264 and AAC at `url`.
fn probe(publish: &str, url: &str) {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "5000000",
            "-show_entries",
            "stream=codec_name",
            "-of",
            "csv=p=0",
            url,
        ])
        .output()
        .unwrap();
    let codecs = String::from_utf8_lossy(&probe.stdout);
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "published with {publish}\nffprobe {url}: {codecs} {}",
        String::from_utf8_lossy(&probe.stderr)
    );
}

/// Ends the dev cluster however the test ends.
struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The shipped production files load and run (with paths and ports moved by
/// `LONGHAUL_*` variables, as a container or systemd drop-in would), logging JSON:
/// base + role + site, for both origins and the three edges.
#[test]
fn shipped_configs_run_every_site_with_json_logs_and_pki_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    // The tunnel files come from `longhaul pki`, as an operator's test cluster gets them.
    let pki = dir.path().join("pki");
    let out = Command::new(BIN)
        .args(["pki", "--dir"])
        .arg(&pki)
        .args([
            "--origin",
            "origin.tunnel.test",
            "--edge",
            "edge.tunnel.test",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let files = |role: &str| longhaul_tunnel::pki::NodeFiles {
        ca: pki.join("ca.pem"),
        cert: pki.join(format!("{role}_tunnel_test.pem")),
        key: pki.join(format!("{role}_tunnel_test.key")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("origin.tunnel.test (origin)"), "{stdout}");
    assert!(stdout.contains("edge_tunnel_test.pem"), "{stdout}");
    // The fingerprint an operator puts in a deny list, as openssl would print it.
    let out = Command::new(BIN)
        .args(["pki", "fingerprint"])
        .arg(files("edge").cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8_lossy(&out.stdout);
    let fingerprint = printed.split_whitespace().next().unwrap_or_default();
    assert_eq!(fingerprint.len(), 64, "{printed}");
    assert!(printed.contains("edge.tunnel.test"), "{printed}");
    assert_eq!(
        longhaul_certs::Fingerprint::parse(fingerprint).ok(),
        longhaul_certs::check::describe_file(&files("edge").cert)
            .ok()
            .map(|d| d.fingerprint)
    );
    // Both origins on one PostgreSQL database over TLS, as production has them.
    let mut server =
        longhaul_registry::testing::PostgresServer::start().expect("a private PostgreSQL");
    let ca = server.enable_tls_with_test_ca().expect("TLS on");
    let db = server.create_database().expect("a database");
    let registry_url = server.url(&db);
    let password_file = dir.path().join("registry-password");
    std::fs::write(&password_file, format!("{}\n", server.password())).unwrap();
    let registry_ca = dir.path().join("registry-ca.pem");
    std::fs::write(&registry_ca, ca).unwrap();
    // Each region's edges: its `p` node (the site file) and its `b` node (the site file,
    // then `{site}-b.toml`).
    let sites = [
        ("origin", "nyc", None),
        ("origin", "pao", None),
        ("edge", "fra", None),
        ("edge", "fra", Some("fra-b")),
        ("edge", "gru", None),
        ("edge", "gru", Some("gru-b")),
        ("edge", "sin", None),
        ("edge", "sin", Some("sin-b")),
    ];
    for (role, site, node_file) in sites {
        let files = files(role);
        // Each role has its own keys: variables for the other role's would be refused.
        let role_env: Vec<(&str, std::ffi::OsString)> = if role == "origin" {
            vec![
                ("LONGHAUL_TUNNEL__LISTEN", "127.0.0.1:0".into()),
                ("LONGHAUL_REGISTRY__URL", registry_url.clone().into()),
                (
                    "LONGHAUL_REGISTRY__PASSWORD_FILE",
                    password_file.clone().into(),
                ),
                ("LONGHAUL_REGISTRY__TLS_CA", registry_ca.clone().into()),
                (
                    "LONGHAUL_REGISTRY__CACHE",
                    dir.path().join(format!("{site}-cache.json")).into(),
                ),
            ]
        } else {
            vec![("LONGHAUL_TUNNEL__BIND", "127.0.0.1:0".into())]
        };
        let mut node = Command::new(BIN)
            .args(["--log-format", "json", role])
            .args(["-c", "config/base.toml", "-c"])
            .arg(format!("config/{role}.toml"))
            // Production's registry is the origins' own layer.
            .args(if role == "origin" {
                &["-c", "config/registry.toml"][..]
            } else {
                &[][..]
            })
            .args(["-c", &format!("config/{site}.toml")])
            .args(
                node_file
                    .map(|f| vec!["-c".to_string(), format!("config/{f}.toml")])
                    .unwrap_or_default(),
            )
            .env("LONGHAUL_RTMP__LISTEN", "127.0.0.1:0")
            .env("LONGHAUL_RTMPS__LISTEN", "127.0.0.1:0")
            .env("LONGHAUL_RTMPS__CERT", &cert)
            .env("LONGHAUL_RTMPS__KEY", &key)
            .env("LONGHAUL_RTSP__LISTEN", "127.0.0.1:0")
            .env("LONGHAUL_RTSP__TLS_LISTEN", "127.0.0.1:0")
            .env("LONGHAUL_RTSP__UDP_LISTEN", "127.0.0.1:0")
            .env("LONGHAUL_HTTP__LISTEN", "127.0.0.1:0")
            .envs(role_env)
            .env("LONGHAUL_TUNNEL__TLS__CA", &files.ca)
            .env("LONGHAUL_TUNNEL__TLS__CERT", &files.cert)
            .env("LONGHAUL_TUNNEL__TLS__KEY", &files.key)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = node.stderr.take().unwrap();
        let _node = KillOnDrop(node);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let want = format!("{role} ready");
        let deadline = Instant::now() + Duration::from_secs(20);
        let ready = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("{role} {site} never logged {want:?}"));
            let v: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if v["message"] == want.as_str() {
                break v;
            }
        };
        assert_eq!(ready["region"], site, "{ready}");
        if role == "edge" {
            let id = node_file.map_or(format!("{site}-p"), str::to_string);
            assert_eq!(ready["node"], id.as_str(), "{ready}");
        }
        assert_eq!(ready["level"], "INFO", "{ready}");
    }
}

/// The CLI's own variables (`LONGHAUL_LOG`, `LONGHAUL_API`, ...) are not config keys.
#[test]
fn cli_variables_are_not_config_keys() {
    let config =
        "[node]\nid = \"x\"\nregion = \"nyc\"\n[registry]\npath = \"/nonexistent/dir/r.db\"\n";
    let env = [
        ("LONGHAUL_API", "http://127.0.0.1:1"),
        ("LONGHAUL_API_TOKEN", "whatever-whatever"),
        ("LONGHAUL_LOG", "info"),
        ("LONGHAUL_LOG_FORMAT", "human"),
    ];
    let out = origin_with("site.toml", config, &env);
    // It gets past configuration and fails on the registry path instead.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("registry") && !err.contains("unknown field"),
        "{err}"
    );
}
