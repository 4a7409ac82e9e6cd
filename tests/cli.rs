//! The `longhaul` binary: `entry` against a live API, config errors, and `longhaul dev`
//! with the commands it prints, pasted as a user would.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_longhaul");

/// Runs `longhaul origin --config <dir>/<file>` with `config` as that file's text and
/// `env` set, and returns what it printed. Used for configurations that stop the node.
fn origin_with(file: &str, config: &str, env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    std::fs::write(&path, config).unwrap();
    Command::new(BIN)
        .args(["origin", "--config"])
        .arg(&path)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_create_prints_the_new_entry_as_json() {
    let origin = start_origin("").await;
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

    // The human form too, and an error from the API reaches the user.
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

#[test]
fn a_bad_config_value_names_the_key_and_the_file() {
    let config = "[node]\nid = \"x\"\nregion = \"nyc\"\n[rtmp]\nlisten = 1935\n[registry]\npath = \"r.db\"\n";
    let out = origin_with("site.toml", config, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rtmp.listen") && err.contains("site.toml"),
        "{err}"
    );
}

#[test]
fn an_unknown_key_and_bad_toml_are_refused() {
    let config = "[node]\nid = \"x\"\nregion = \"nyc\"\n[registry]\npath = \"r.db\"\n[rtmp]\nlisten_addr = \"0.0.0.0:1\"\n";
    let out = origin_with("typo.toml", config, &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen_addr"), "{err}");

    let out = origin_with("typo.toml", "[node\n", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("typo.toml"));
}

#[test]
fn environment_overrides_the_file() {
    let config = "[node]\nid = \"x\"\nregion = \"nyc\"\n[registry]\npath = \"r.db\"\n";
    let out = origin_with(
        "site.toml",
        config,
        &[("LONGHAUL_HTTP__LISTEN", "not-an-address")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("http.listen") && err.contains("longhaul_"),
        "{err}"
    );
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
    for port in ["1935", "2935", "3935", "4935", "5935"] {
        assert!(
            text.contains(&format!("127.0.0.1:{port}")),
            "{port} missing:\n{text}"
        );
    }
    // Each publish command is followed by the play command for the origin it reaches.
    let mut pairs = Vec::new();
    for (i, line) in banner.iter().enumerate() {
        if !line.trim_start().starts_with("ffmpeg ") {
            continue;
        }
        let play = banner[i + 1..]
            .iter()
            .find_map(|l| l.split("ffplay ").nth(1))
            .unwrap_or_else(|| panic!("no play command after {line} in:\n{text}"));
        let url = play.split_whitespace().next().unwrap().to_string();
        pairs.push((line.trim().to_string(), url));
    }
    assert_eq!(pairs.len(), 4, "three edges and one origin:\n{text}");
    assert!(
        pairs[0].0.contains("127.0.0.1:3935"),
        "fra first: {}",
        pairs[0].0
    );
    for (publish, url) in pairs {
        paste_and_probe(&publish, &url);
    }
}

/// Pastes a publish command (bounded), then probes what the play command names.
fn paste_and_probe(publish: &str, url: &str) {
    let publisher = Command::new("sh")
        .arg("-c")
        .arg(format!("exec timeout 8 {publish} -loglevel error"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
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
    let _ = wait_bounded(publisher);
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
    let sites = [
        ("origin", "nyc"),
        ("origin", "pao"),
        ("edge", "fra"),
        ("edge", "gru"),
        ("edge", "sin"),
    ];
    for (role, site) in sites {
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
            .args(["-c", &format!("config/{site}.toml")])
            .env("LONGHAUL_RTMP__LISTEN", "127.0.0.1:0")
            .env("LONGHAUL_RTMPS__LISTEN", "127.0.0.1:0")
            .env("LONGHAUL_RTMPS__CERT", &cert)
            .env("LONGHAUL_RTMPS__KEY", &key)
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
