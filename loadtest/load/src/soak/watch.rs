//! The nodes a soak watches: each one's resident memory (`VmRSS` of `/proc/PID/status`)
//! and the counters of its `/metrics` that show a bound being hit (connections refused,
//! relay pauses and drops, sessions ended by an error, abuse bans, slow players) or a
//! leak (connections, publishers and players still open once the load is gone).
//!
//! Parsing is plain code on text ([`rss_kib`], [`series`]); [`Watched::sample`] does the
//! reading, bounded in time.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Counter families whose growth means a bound was hit, or a refusal made: the soak
/// reports how much each series grew.
pub const BOUND_COUNTERS: &[&str] = &[
    "longhaul_connections_refused_total",
    "longhaul_session_errors_total",
    "longhaul_relay_pauses_total",
    "longhaul_relay_paused_seconds_total",
    "longhaul_relay_drops_total",
    "longhaul_publish_abuse_total",
    "longhaul_publish_abuse_bans_total",
    "longhaul_edge_publishes_total",
    "longhaul_edge_publish_ends_total",
    "longhaul_publishes_total",
    "longhaul_player_skips_total",
    "longhaul_player_drops_total",
    "longhaul_tunnel_reconnects_total",
];

/// Gauges of what is open now: once the load is gone they must be back at 0, or
/// something was not let go.
pub const OPEN_GAUGES: &[&str] = &[
    "longhaul_connections_active",
    "longhaul_edge_publishers_active",
    "longhaul_publishers_active",
    "longhaul_players_active",
];

/// A scrape gives up after this: a node answers /metrics in milliseconds, so 5 s means
/// it is stuck (which the sample then shows as missing counters).
const SCRAPE_LIMIT: Duration = Duration::from_secs(5);
/// Largest /metrics page read: a node's is a few tens of KB.
const MAX_PAGE: usize = 4 * 1024 * 1024;

/// A node to watch, from `NAME=PID,http://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeSpec {
    pub name: String,
    pub pid: u32,
    /// `http://HOST:PORT`, where its `/metrics` is.
    pub http: String,
}

/// Parses `NAME=PID,http://HOST:PORT`.
pub fn parse_node(spec: &str) -> Result<NodeSpec, String> {
    let bad = || format!("{spec:?} is not NAME=PID,http://HOST:PORT");
    let (name, rest) = spec.split_once('=').ok_or_else(bad)?;
    let (pid, http) = rest.split_once(',').ok_or_else(bad)?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "node name {name:?} must be letters, digits, - or _"
        ));
    }
    let pid: u32 = pid
        .parse()
        .map_err(|_| format!("{pid:?} is not a process id"))?;
    if !http.starts_with("http://") {
        return Err(format!("{http:?} is not an http:// URL"));
    }
    Ok(NodeSpec {
        name: name.to_string(),
        pid,
        http: http.trim_end_matches('/').to_string(),
    })
}

/// `VmRSS` of a `/proc/PID/status` text, KiB.
pub fn rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `VmHWM` (the process's peak resident memory so far) of a `/proc/PID/status` text,
/// KiB.
pub fn hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The series of `families` in a Prometheus text page, keyed `name{labels}` with the
/// constant `node` and `region` labels left out (they are the same on every line of a
/// node's page).
pub fn series(page: &str, families: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in page.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = key.split('{').next().unwrap_or(key);
        if !families.contains(&name) {
            continue;
        }
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        out.insert(without_node_labels(key), value);
    }
    out
}

/// `name{node="a",region="b",reason="c"}` → `name{reason="c"}`; `name` alone when no
/// other label is left.
fn without_node_labels(key: &str) -> String {
    let Some((name, labels)) = key.split_once('{') else {
        return key.to_string();
    };
    let labels = labels.trim_end_matches('}');
    let kept: Vec<&str> = labels
        .split(',')
        .filter(|l| !l.is_empty() && !l.starts_with("node=") && !l.starts_with("region="))
        .collect();
    if kept.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", kept.join(","))
    }
}

/// One look at a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    /// `None`: the process is gone (or /proc unreadable).
    pub rss_kib: Option<u64>,
    /// [`BOUND_COUNTERS`] and [`OPEN_GAUGES`] series; empty when /metrics did not answer.
    pub series: BTreeMap<String, f64>,
    /// Why /metrics did not answer.
    pub scrape_error: Option<String>,
}

/// A node and the client that scrapes it.
pub struct Watched {
    pub spec: NodeSpec,
    client: Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
}

impl Watched {
    pub fn new(spec: NodeSpec) -> Self {
        Self {
            spec,
            // A fresh connection per sample: a pooled one sits idle between samples
            // and the node may close it just as the next request goes out.
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(0)
                .build_http(),
        }
    }

    /// Its RSS now and its counters now (the scrape bounded to 5 s).
    pub async fn sample(&self) -> Sample {
        let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", self.spec.pid))
            .ok()
            .and_then(|s| rss_kib(&s));
        let families: Vec<&str> = BOUND_COUNTERS.iter().chain(OPEN_GAUGES).copied().collect();
        match tokio::time::timeout(SCRAPE_LIMIT, self.scrape()).await {
            Ok(Ok(page)) => Sample {
                rss_kib,
                series: series(&page, &families),
                scrape_error: None,
            },
            Ok(Err(e)) => Sample {
                rss_kib,
                series: BTreeMap::new(),
                scrape_error: Some(e),
            },
            Err(_) => Sample {
                rss_kib,
                series: BTreeMap::new(),
                scrape_error: Some(format!("no answer within {} s", SCRAPE_LIMIT.as_secs())),
            },
        }
    }

    async fn scrape(&self) -> Result<String, String> {
        let url = format!("{}/metrics", self.spec.http);
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let resp = self
            .client
            .get(uri)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: {}", resp.status()));
        }
        let body = Limited::new(resp.into_body(), MAX_PAGE)
            .collect()
            .await
            .map_err(|e| format!("reading {url}: {e}"))?
            .to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_from_proc_status() {
        let status = "Name:\tlonghaul\nVmPeak:\t  812345 kB\nVmRSS:\t   23456 kB\nThreads:\t5\n";
        assert_eq!(rss_kib(status), Some(23_456));
        assert_eq!(hwm_kib("VmHWM:\t   30000 kB\n"), Some(30_000));
        assert_eq!(rss_kib("Name:\tzombie\n"), None);
    }

    #[test]
    fn series_of_the_families_asked_for() {
        let page = "\
# HELP longhaul_connections_refused_total Connections refused before the RTMP handshake
# TYPE longhaul_connections_refused_total counter
longhaul_connections_refused_total{node=\"sin-1\",reason=\"too_many_connections\",region=\"sin\",transport=\"rtmp\"} 3
longhaul_connections_active{node=\"sin-1\",region=\"sin\"} 12
longhaul_relay_paused_seconds_total{node=\"sin-1\",region=\"sin\"} 0.25
longhaul_bytes_sent_total{node=\"sin-1\",region=\"sin\",transport=\"rtmp\"} 99
garbage line
longhaul_relay_pauses_total{node=\"sin-1\",region=\"sin\"} not-a-number
";
        let s = series(
            page,
            &[
                "longhaul_connections_refused_total",
                "longhaul_connections_active",
                "longhaul_relay_paused_seconds_total",
                "longhaul_relay_pauses_total",
            ],
        );
        let want: BTreeMap<String, f64> = [
            (
                "longhaul_connections_refused_total{reason=\"too_many_connections\",transport=\"rtmp\"}",
                3.0,
            ),
            ("longhaul_connections_active", 12.0),
            ("longhaul_relay_paused_seconds_total", 0.25),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(s, want);
    }

    #[test]
    fn node_specs() {
        assert_eq!(
            parse_node("edge=4242,http://127.0.0.1:8083/"),
            Ok(NodeSpec {
                name: "edge".into(),
                pid: 4242,
                http: "http://127.0.0.1:8083".into()
            })
        );
        for bad in [
            "edge",
            "edge=4242",
            "edge=x,http://h:1",
            "edge=1,https://h:1",
            "e dge=1,http://h:1",
        ] {
            assert!(parse_node(bad).is_err(), "{bad}");
        }
    }
}
