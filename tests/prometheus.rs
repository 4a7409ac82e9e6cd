//! The dashboard and the alert rules against a real cluster: `longhaul dev` runs, a real
//! Prometheus (Debian's package) scrapes it with the shipped scrape config and loads
//! the shipped rules, encoders publish a few streams (both legs of one rendition, one
//! leg of another at a quarter of its declared bitrate and an 8 s GOP), players watch
//! at both origins, and a wrong token and a bad stream name are tried. Then every
//! panel's query in `deploy/grafana/longhaul-dashboard.json`, and both sides of every
//! alert's condition, are evaluated through Prometheus's HTTP API: any that errors or
//! returns nothing fails the test, with its name.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_longhaul");

/// Moves every port of the dev cluster clear of the other tests' clusters (the CLI
/// tests use 20,000, the speed test 15,000) and below Linux's ephemeral range
/// (32,768 and up), where any outgoing connection may hold a port: 11,935 to 18,085.
const PORT_OFFSET: u16 = 10_000;

/// Where the test's Prometheus listens: below the ephemeral range too.
const PROMETHEUS: &str = "127.0.0.1:19090";

/// Every process here runs at most this long (encoders, players): past the test's
/// deadlines with room.
const RUN_SECONDS: u32 = 120;

/// Kills a child process however the test ends.
struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command run in a process group of its own, which is killed whole however the
/// test ends: `timeout` does not pass a SIGKILL on to what it runs, so killing it alone
/// would leave an encoder or a player loop behind.
struct KilledGroup(Child);
impl Drop for KilledGroup {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: kill(2) with a negative pid signals the process group this test
            // made for the child (`process_group(0)`); no memory is involved.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let _ = self.0.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `dev`'s port `port` moved by the offset.
fn moved(port: u16) -> u16 {
    port + PORT_OFFSET
}

/// Starts `longhaul dev` and returns it with its banner (up to the `entry create` hint).
fn start_dev(dir: &Path) -> (Killed, String) {
    std::fs::create_dir_all(dir).expect("the dev data directory");
    let log = dev_log(dir);
    let mut dev = Command::new(BIN)
        .args([
            "--log-format",
            "json",
            "dev",
            "--port-offset",
            &PORT_OFFSET.to_string(),
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("the dev log"))
        .spawn()
        .expect("longhaul dev starts");
    let stdout = dev.stdout.take().expect("stdout piped");
    let dev = Killed(dev);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut banner = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !banner.iter().any(|l: &String| l.contains("entry create")) {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            banner.push(line);
        }
    }
    let text = banner.join("\n");
    assert!(
        text.contains("entry create"),
        "no banner from longhaul dev:\n{text}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    (dev, text)
}

/// Where [`start_dev`] writes the cluster's log (JSON lines).
fn dev_log(dir: &Path) -> PathBuf {
    dir.join("dev.log")
}

/// The fields every publish, refusal, failover and drain line carries, at origins and
/// edges alike (README, "Log fields").
const STREAM_FIELDS: [&str; 7] = [
    "entry",
    "rendition",
    "stream",
    "client",
    "region",
    "edge",
    "origin",
];

/// Checks the cluster's JSON log: the publishes and refusals this test made are
/// logged with [`STREAM_FIELDS`] (and `leg` once known, `reason` on refusals), and the
/// rendition's first leg going on air names its entry and rendition.
fn check_log_fields(log: &Path, entry: &str) {
    let text = std::fs::read_to_string(log).expect("the dev log");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let with = |message: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            })
            .collect()
    };
    let has = |line: &serde_json::Value, fields: &[&str]| {
        for field in fields {
            assert!(!line[field].is_null(), "no {field} in {line}");
        }
    };
    let accepted = with("publish accepted");
    // Rendition 1's two legs and rendition 2's one: at the edge and again at the origin.
    assert!(accepted.len() >= 6, "publish accepted lines: {accepted:?}");
    for line in &accepted {
        has(line, &STREAM_FIELDS);
        has(line, &["leg", "transport"]);
        assert_eq!(line["entry"], entry, "{line}");
    }
    let refused: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["reason"] == "wrong_token" || l["reason"] == "bad_stream_name")
        .collect();
    // The wrong token at the edge and at the origin it asked; the bad name at an origin.
    assert!(refused.len() >= 3, "refusals: {refused:?}");
    for line in &refused {
        has(line, &STREAM_FIELDS);
        has(line, &["reason", "transport"]);
    }
    let on_air = with("on-air leg switched");
    assert!(!on_air.is_empty(), "no on-air switch logged");
    for line in &on_air {
        has(line, &["entry", "rendition", "stream", "leg", "reason"]);
    }
}

/// A shell command run for at most [`RUN_SECONDS`], quiet.
fn run_bounded(command: &str) -> KilledGroup {
    use std::os::unix::process::CommandExt;
    KilledGroup(
        Command::new("sh")
            .arg("-c")
            .arg(format!("exec timeout {RUN_SECONDS} {command}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn sh"),
    )
}

/// The banner's command for `what` (`-f tee` for an edge's both legs, or `or one leg:`).
fn banner_command(banner: &str, edge_port: u16, one_leg: bool) -> String {
    let port = format!("127.0.0.1:{}", moved(edge_port));
    let line = banner
        .lines()
        .find(|l| {
            l.contains(&port) && l.contains("ffmpeg ") && (one_leg == l.contains("or one leg:"))
        })
        .unwrap_or_else(|| panic!("a command for {port} in the banner:\n{banner}"));
    let start = line.find("ffmpeg ").expect("ffmpeg in the line");
    let command = &line[start..];
    let end = command.find("   (").unwrap_or(command.len());
    command[..end].trim().to_string()
}

/// `text` with `from` replaced by `to`, which must be there.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} in {text}");
    text.replace(from, to)
}

/// The shipped scrape config, pointed at this cluster's ports, scraping every second,
/// with the shipped rules by absolute path.
fn scrape_config() -> String {
    let shipped = std::fs::read_to_string(repo().join("deploy/prometheus/prometheus.yml"))
        .expect("deploy/prometheus/prometheus.yml");
    let mut config = shipped;
    for port in 8081..=8085u16 {
        config = replaced(
            &config,
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{}", moved(port)),
        );
    }
    config = replaced(&config, "scrape_interval: 15s", "scrape_interval: 1s");
    config = replaced(
        &config,
        "evaluation_interval: 15s",
        "evaluation_interval: 1s",
    );
    replaced(
        &config,
        "\"rules/*.yml\"",
        &format!(
            "\"{}\"",
            repo().join("deploy/prometheus/rules/*.yml").display()
        ),
    )
}

/// One instant query; `Err` with Prometheus's error, or the result's series.
async fn query(expr: &str) -> Result<Vec<serde_json::Value>, String> {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", expr)
        .finish();
    let (status, _, answer) = http_typed(
        "POST",
        &format!("http://{PROMETHEUS}/api/v1/query"),
        "application/x-www-form-urlencoded",
        &body,
    )
    .await;
    let v: serde_json::Value = serde_json::from_slice(&answer)
        .map_err(|e| format!("HTTP {status}, not JSON ({e}): {answer:?}"))?;
    if v["status"] != "success" {
        return Err(format!("HTTP {status}: {} {}", v["errorType"], v["error"]));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// The parts of an alert's condition that select series: split at the top-level
/// `and`/`or`/`unless` and comparison operators, keeping what names a metric. Each
/// must return data on a working cluster, even where the whole condition (healthy,
/// so not firing) returns nothing.
fn condition_sides(expr: &str) -> Vec<String> {
    let mut sides = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'"' => quoted = !quoted,
            b'(' | b'{' | b'[' if !quoted => depth += 1,
            b')' | b'}' | b']' if !quoted => depth -= 1,
            _ => {}
        }
        if depth == 0 && !quoted {
            let rest = &expr[i..];
            let op = [
                "==", "!=", ">=", "<=", ">", "<", " and ", " or ", " unless ",
            ]
            .iter()
            .find(|op| rest.starts_with(**op));
            if let Some(op) = op {
                sides.push(expr[start..i].to_string());
                i += op.len();
                start = i;
                continue;
            }
        }
        i += 1;
    }
    sides.push(expr[start..].to_string());
    sides
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| s.contains("longhaul_") || s.starts_with("up{") || s.starts_with("up "))
        .collect()
}

#[test]
fn condition_sides_split_at_the_top_level_only() {
    assert_eq!(
        condition_sides("a_x < 0.5 * longhaul_b{x=~\"a|b>c\"}"),
        vec!["0.5 * longhaul_b{x=~\"a|b>c\"}"]
    );
    assert_eq!(
        condition_sides("longhaul_p == 0\n and max_over_time(longhaul_p[30m]) == 1"),
        vec!["longhaul_p", "max_over_time(longhaul_p[30m])"]
    );
    assert_eq!(
        condition_sides("sum by (a) (rate(longhaul_c{r!~\"x\"}[5m])) * 60 > 6"),
        vec!["sum by (a) (rate(longhaul_c{r!~\"x\"}[5m])) * 60"]
    );
    assert_eq!(
        condition_sides("up{job=~\"longhaul.*\"} == 0"),
        vec!["up{job=~\"longhaul.*\"}"]
    );
}

/// Every panel query of the dashboard, as `(panel title, expr)` with Grafana's
/// variables filled in: `$entry` is `entry`, `$__rate_interval` 30 s.
fn panel_queries(entry: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/longhaul-dashboard.json"))
        .expect("deploy/grafana/longhaul-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target has an expr");
            let expr = expr
                .replace("$__rate_interval", "30s")
                .replace("$entry", entry);
            assert!(
                !expr.contains('$'),
                "an unknown variable in {title}: {expr}"
            );
            queries.push((title.to_string(), expr));
        }
    }
    assert!(
        queries.len() > 20,
        "the dashboard's panels: {}",
        queries.len()
    );
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_panel_and_alert_query_returns_data_from_longhaul_dev() {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let (_dev, banner) = start_dev(&dir.path().join("dev"));

    // Both legs of rendition 1 through fra (leg p to nyc, b to pao), small and fast.
    let small = |c: &str| {
        let c = replaced(c, "size=1280x720", "size=320x240");
        replaced(&c, "-preset veryfast", "-preset ultrafast")
    };
    let tee = small(&banner_command(&banner, 3935, false));
    // `.../kLive/?t=TOKEN&i=0/{entryId}_1|...`: the entry the banner made.
    let name = tee
        .split("/kLive/")
        .nth(1)
        .and_then(|rest| rest.split('/').nth(1))
        .and_then(|rest| rest.split(['|', '"', ' ']).next())
        .unwrap_or_else(|| panic!("a stream name in {tee}"));
    let entry = name
        .rsplit_once('_')
        .map(|(entry, _)| entry.to_string())
        .unwrap_or_else(|| panic!("an entry id in {name}"));
    let _both_legs = run_bounded(&replaced(&tee, "ffmpeg ", "ffmpeg -loglevel error "));
    // One leg of rendition 2 through sin: 4 Mbit/s declared, 1 sent, an 8 s GOP.
    let one_leg = small(&banner_command(&banner, 5935, true));
    let one_leg = replaced(&one_leg, "_1\"", "_2\"");
    let one_leg = replaced(&one_leg, "-g 60", "-g 240");
    let one_leg = replaced(&one_leg, "-b:v 2500k", "-b:v 4M -maxrate 1M -bufsize 1M");
    let _second = run_bounded(&replaced(&one_leg, "ffmpeg ", "ffmpeg -loglevel error "));
    // Players of rendition 1 at both origins; each origin pulls the leg it lacks.
    let _players: Vec<KilledGroup> = [8081u16, 8082]
        .iter()
        .map(|port| {
            // Again after a 404 (the stream not live yet) or an end: 200 tries at most,
            // and the whole group is killed with the test.
            run_bounded(&format!(
                "sh -c 'for i in $(seq 200); do curl -s -N --max-time 20 -o /dev/null http://127.0.0.1:{}/live/{entry}_1.flv; sleep 0.5; done'",
                moved(*port)
            ))
        })
        .collect();
    // Refused publishes: a wrong token through an edge, a bad stream name at an origin.
    let token = one_leg
        .split("?t=")
        .nth(1)
        .and_then(|t| t.split('&').next())
        .expect("a token in the banner's command")
        .to_string();
    let refused = [
        format!(
            "rtmp://127.0.0.1:{}/kLive/?t=not{token}/{entry}_3",
            moved(4935)
        ),
        format!(
            "rtmp://127.0.0.1:{}/kLive/?t={token}/not-a-stream",
            moved(1935)
        ),
    ];
    for url in &refused {
        let status = Command::new("timeout")
            .args(["20", "ffmpeg", "-loglevel", "quiet", "-re", "-f", "lavfi"])
            .args([
                "-i",
                "testsrc=size=160x120:rate=10",
                "-t",
                "5",
                "-c:v",
                "libx264",
            ])
            .args(["-f", "flv", url])
            .status()
            .expect("ffmpeg runs");
        assert!(!status.success(), "{url} was refused");
    }

    let prom_dir = tempfile::tempdir().unwrap();
    let config = prom_dir.path().join("prometheus.yml");
    std::fs::write(&config, scrape_config()).unwrap();
    let check = Command::new("promtool")
        .args(["check", "config"])
        .arg(&config)
        .output()
        .expect("promtool is installed (.ci/run installs Debian's prometheus package)");
    assert!(
        check.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let _prometheus = Killed(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (Debian's package)"),
    );

    // Listening, then every target up.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(PROMETHEUS).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "prometheus is not listening on {PROMETHEUS}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        let up = query("sum(up{job=~\"longhaul.*\"})")
            .await
            .unwrap_or_default();
        if up.first().and_then(|s| s["value"][1].as_str()) == Some("5") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the five dev nodes are not all up: {up:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The alerts' conditions, from the rules Prometheus loaded.
    let (status, _, rules) = http(
        "GET",
        &format!("http://{PROMETHEUS}/api/v1/rules"),
        "",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let rules: serde_json::Value = serde_json::from_slice(&rules).unwrap();
    let mut wanted: Vec<(String, String)> = panel_queries(&entry);
    let mut alerts = 0;
    for group in rules["data"]["groups"].as_array().expect("rule groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["name"].as_str().unwrap_or_default();
            let expr = rule["query"].as_str().expect("a rule's query");
            alerts += 1;
            wanted.push((format!("alert {name}"), expr.to_string()));
            for side in condition_sides(expr) {
                wanted.push((format!("alert {name}, side"), side));
            }
        }
    }
    assert!(alerts >= 15, "the shipped rules loaded: {alerts}");

    // Rates need two scrapes in their window and the 8 s GOP two keyframes: wait
    // for every query to have data, up to a minute.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut empty: Vec<String>;
    loop {
        empty = Vec::new();
        for (what, expr) in &wanted {
            match query(expr).await {
                Err(e) => panic!("{what}: {expr}: {e}"),
                // A whole alert condition is empty while the cluster is healthy.
                Ok(series) if series.is_empty() && !what.starts_with("alert ") => {
                    empty.push(format!("{what}: {expr}"))
                }
                Ok(series) if series.is_empty() && what.ends_with(", side") => {
                    empty.push(format!("{what}: {expr}"))
                }
                Ok(_) => {}
            }
        }
        if empty.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert!(
        empty.is_empty(),
        "queries with no data after a minute:\n{}",
        empty.join("\n")
    );
    // The rendition sent at a quarter of its declared rate with an 8 s GOP raises its
    // two alerts (pending, then firing) on the real cluster: the GOP's length is known
    // at its second keyframe, 8 s in.
    let wanted_alerts = [
        "LonghaulBitrateBelowDeclared",
        "LonghaulKeyframeIntervalLong",
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let alerts = query("ALERTS").await.unwrap();
        let names: Vec<&str> = alerts
            .iter()
            .filter(|s| s["metric"]["entry"] == entry.as_str() && s["metric"]["rendition"] == "2")
            .filter_map(|s| s["metric"]["alertname"].as_str())
            .collect();
        if wanted_alerts.iter().all(|a| names.contains(a)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{wanted_alerts:?} for {entry}_2 after a minute: {alerts:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    check_log_fields(&dev_log(&dir.path().join("dev")), &entry);
}
