//! `longhaul speedtest` against `longhaul dev`: a ranked row for each of the five nodes,
//! as a table and as JSON; then the speed test's limits at one node, over plain TCP as
//! any client would meet them (an oversized request refused, the fifth test at once
//! refused busy, one address past its budget refused rate-limited, each in JSON).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_longhaul");

/// Away from the default ports (another test's cluster), from the offsets tests/cli.rs
/// uses (10000, 20000), and below Linux's ephemeral ports (32768 up), where any outgoing
/// connection on the machine may hold one: the ports are 16935 to 23085.
const OFFSET: u16 = 15000;

/// The regions of the dev cluster.
const REGIONS: [&str; 5] = ["nyc", "pao", "fra", "gru", "sin"];

/// Ends the dev cluster however the test ends.
struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `longhaul dev` at [`OFFSET`], once its banner is printed, and its demo entry's id.
fn start_dev(dir: &std::path::Path) -> (KillOnDrop, String) {
    let log = dir.join("dev.log");
    let mut dev = Command::new(BIN)
        .args(["dev", "--port-offset", &OFFSET.to_string(), "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("longhaul dev starts");
    let stdout = dev.stdout.take().expect("stdout");
    let mut dev = KillOnDrop(dev);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut entry = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "longhaul dev printed no banner; its log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        if let Ok(Some(status)) = dev.0.try_wait() {
            panic!(
                "longhaul dev ended ({status}); its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some(rest) = line.strip_prefix("Demo entry ") {
                entry = rest.split_whitespace().next().map(str::to_owned);
            }
            if line.contains("longhaul entry create") {
                return (dev, entry.expect("the banner names the demo entry"));
            }
        }
    }
}

fn speedtest(extra: &[&str]) -> std::process::Output {
    let out = Command::new(BIN)
        .args([
            "speedtest",
            "--port-offset",
            &OFFSET.to_string(),
            "--seconds",
            "1",
        ])
        .args(extra)
        .output()
        .expect("longhaul speedtest runs");
    assert!(
        out.status.success(),
        "longhaul speedtest {extra:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The HTTP port of a dev node.
fn http_port(base: u16) -> String {
    format!("127.0.0.1:{}", base + OFFSET)
}

/// A response read off a raw connection: status, head, body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    fn error_code(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body));
        v["error"]["code"].as_str().expect("error.code").to_owned()
    }
}

/// Sends `request` on a new connection and reads the head, then the body if the head
/// gives its length and `read_body`. The connection is handed back, still open.
fn exchange(addr: &str, request: &str, read_body: bool) -> (Answer, TcpStream) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 16 * 1024, "an endless head");
        stream.read_exact(&mut byte).expect("read the head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let mut answer = Answer {
        status,
        head,
        body: String::new(),
    };
    if read_body {
        let len: usize = answer
            .header("content-length")
            .and_then(|l| l.parse().ok())
            .expect("a content-length");
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).expect("read the body");
        answer.body = String::from_utf8_lossy(&body).into_owned();
    }
    (answer, stream)
}

fn get(addr: &str, path: &str, read_body: bool) -> (Answer, TcpStream) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    exchange(addr, &request, read_body)
}

#[test]
fn speedtest_ranks_every_dev_node_and_the_limits_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_dev, entry) = start_dev(dir.path());

    // The table: a header, a ranked row per node with a positive upload, the advice.
    let out = speedtest(&[]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("rank  region"), "{text}");
    for (i, line) in lines[1..=5].iter().enumerate() {
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[0], (i + 1).to_string(), "ranked in order: {text}");
        assert!(REGIONS.contains(&cells[1]), "{line}");
        // The figures: connect ms, then upload Mbit/s ("49.9+" at the node's cap).
        let figures: Vec<f64> = cells
            .iter()
            .filter(|c| c.contains('.'))
            .filter_map(|c| c.trim_end_matches('+').parse().ok())
            .collect();
        let upload = figures.get(1).copied().expect("connect and upload figures");
        assert!(upload > 0.0, "{line}");
        assert!(
            line.contains("rtmp://127.0.0.1:"),
            "the ingest to publish to: {line}"
        );
    }
    for region in REGIONS {
        assert_eq!(
            lines[1..=5]
                .iter()
                .filter(|l| l.split_whitespace().nth(1) == Some(region))
                .count(),
            1,
            "one row for {region}:\n{text}"
        );
    }
    assert!(text.contains("\nUse "), "{text}");

    // The JSON: the same five, each measured.
    let out = speedtest(&["--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), 5, "{report}");
    let mut regions: Vec<&str> = results
        .iter()
        .map(|r| r["region"].as_str().expect("region"))
        .collect();
    regions.sort();
    assert_eq!(regions, ["fra", "gru", "nyc", "pao", "sin"]);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["rank"], i + 1, "{r}");
        assert_eq!(r["error"], serde_json::Value::Null, "{r}");
        assert!(r["upload_mbps"].as_f64().is_some_and(|m| m > 0.0), "{r}");
        assert!(r["connect_ms"].as_f64().is_some_and(|m| m > 0.0), "{r}");
    }
    assert_eq!(report["best"], results[0]);

    // The speed tests the demo entry lists, each with the entry's URL to publish to.
    let api = http_port(8081);
    let out = speedtest(&["--entry", &entry, "--api", &api, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), 5, "{report}");
    for r in results {
        assert_eq!(r["error"], serde_json::Value::Null, "{r}");
        let ingest = r["ingest"].as_str().expect("ingest");
        assert!(
            ingest.starts_with("rtmp://127.0.0.1:") && ingest.contains("?t="),
            "{ingest}"
        );
    }

    // The limits, at fra.
    let fra = http_port(8083);
    let (answer, _) = get(&fra, "/speedtest/download?bytes=25000001", true);
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (400, "bad_request")
    );
    let (answer, _) = exchange(
        &fra,
        "POST /speedtest/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 30000000\r\n\r\n",
        true,
    );
    assert_eq!(
        (answer.status, answer.error_code().as_str()),
        (413, "too_large")
    );

    // Four downloads at once, held open unread; the fifth is refused, busy.
    let held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let (answer, stream) = get(&fra, "/speedtest/download?bytes=25000000", false);
            assert_eq!(answer.status, 200, "{}", answer.head);
            stream
        })
        .collect();
    let (busy, _) = get(&fra, "/speedtest/download?bytes=1000", true);
    assert_eq!((busy.status, busy.error_code().as_str()), (503, "busy"));
    assert_eq!(busy.header("retry-after").as_deref(), Some("5"));
    assert_eq!(
        busy.header("content-type").as_deref(),
        Some("application/json")
    );
    // Their slots come back when their clients go.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (answer, _) = get(&fra, "/speedtest/download?bytes=1000", true);
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.status, 503, "{}", answer.head);
        assert!(Instant::now() < deadline, "the slots never came back");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (metrics, _) = get(&fra, "/metrics", true);
    let busy_count = metrics
        .body
        .lines()
        .find(|l| {
            l.starts_with("longhaul_speedtest_requests_total{")
                && l.contains("kind=\"download\"")
                && l.contains("outcome=\"busy\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .expect("the busy series");
    assert!(busy_count >= 1, "{}", metrics.body);

    // One address past its budget (10, less the three speedtest runs'), at gru.
    let gru = http_port(8084);
    let mut allowed = 0;
    let limited = loop {
        assert!(allowed <= 10, "no rate limit after {allowed} tests");
        let (answer, _) = get(&gru, "/speedtest/download?bytes=1", true);
        match answer.status {
            200 => allowed += 1,
            429 => break answer,
            other => panic!("unexpected {other}: {}", answer.head),
        }
    };
    assert!(allowed >= 6, "only {allowed} tests before the limit");
    assert_eq!(limited.error_code(), "rate_limited");
    let retry: u64 = limited
        .header("retry-after")
        .and_then(|r| r.parse().ok())
        .expect("retry-after");
    assert!((1..=6).contains(&retry), "{retry}");
}
