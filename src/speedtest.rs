//! `longhaul speedtest`: which region should an encoder here publish to? Measures every
//! node's speed test (`longhaul_node::speedtest`) the way OBS's auto-config measures
//! ingest servers, and prints them ranked, best first.
//!
//! For each endpoint, one after the other (measured together they would share the
//! uplink they measure): the TCP connect time (median of [`CONNECTS`]), then an upload
//! for `--seconds` (what an encoder does: it sends), then with `--download` a download
//! for as long. The targets are the `--endpoint` URLs; or an entry's speed tests
//! (`--entry ID`, read from an origin's API: the data centres' and each region's, with
//! the entry's URL to publish to there); or by default the five nodes of `longhaul dev`
//! (from the embedded `config/dev.toml`, moved by `--port-offset`).
//!
//! The upload's throughput is the bytes the node read over the time it spent reading
//! them (its answer says both); the download's, the bytes read here from the answer's
//! head on. Neither counts the connect, measured on its own.
//!
//! Ranking ([`rank`]): upload throughput decides; endpoints within [`CLOSE_ENOUGH`] of
//! the best upload are ranked among themselves by connect time (a shorter round trip
//! recovers from loss sooner and carries less latency). An endpoint that cannot be
//! measured gets a row with its error, never a crash; the command fails only if none
//! could be measured.

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use longhaul_node::speedtest::body::FillerBody;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// TCP connects per endpoint; the median is reported (one slow SYN does not decide).
pub const CONNECTS: usize = 3;

/// How long a TCP connect may take before the endpoint counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a node may take to answer, past the test's own length.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Uploads within this share of the best one are as good as it: 10%, about what two
/// runs against the same node differ by on a busy uplink.
pub const CLOSE_ENOUGH: f64 = 0.9;

/// A throughput within this share of the node's per-test cap is reported as "at the
/// cap" (`+` in the table): the link is at least that fast.
const AT_CAP: f64 = 0.95;

#[derive(clap::Args)]
pub struct SpeedtestArgs {
    /// A node's speed-test URL (`http://fr-publish-speedtest.example.com/speedtest`, or
    /// `host:port` of its HTTP port); repeat for several. Default: the `longhaul dev`
    /// nodes.
    #[arg(long = "endpoint", value_name = "URL", conflicts_with = "entry")]
    endpoints: Vec<String>,
    /// Measure the speed tests an entry lists (the data centres', each region's), read
    /// from an origin's API, and name the entry's URL to publish to in each region.
    #[arg(long, value_name = "ID")]
    entry: Option<String>,
    /// Base URL of an origin's HTTP port, for `--entry`.
    #[arg(long, default_value = crate::entry::DEFAULT_API, env = "LONGHAUL_API", value_name = "URL")]
    api: String,
    /// Bearer token, when the origin sets `http.api_token`.
    #[arg(long, env = "LONGHAUL_API_TOKEN", value_name = "TOKEN")]
    api_token: Option<String>,
    /// The `longhaul dev` cluster's `--port-offset`, for the default targets.
    #[arg(
        long,
        default_value_t = 0,
        value_name = "N",
        env = "LONGHAUL_DEV_PORT_OFFSET"
    )]
    port_offset: u16,
    /// Seconds of upload (and of download) per endpoint, 1 to 10 (a node stops reading
    /// an upload after 15 s, and what the socket buffered still has to arrive).
    #[arg(long, default_value_t = longhaul_node::speedtest::DEFAULT_TEST_SECONDS,
          value_parser = clap::value_parser!(u64).range(1..=10), value_name = "S")]
    seconds: u64,
    /// Also measure the download (encoders only send; off by default).
    #[arg(long)]
    download: bool,
    /// One JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
}

/// What to measure: a node's speed test, and what is known of it beforehand.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port/speedtest`.
    pub url: Uri,
    /// Known from the dev layout; otherwise from the node's `GET /speedtest`.
    pub region: Option<String>,
    pub name: Option<String>,
    pub node: Option<String>,
    pub role: Option<String>,
    /// Where an encoder publishes to in this region, when known.
    pub ingest: Option<String>,
}

/// One endpoint's figures, or why there are none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measurement {
    pub connect: Option<Duration>,
    pub upload_bps: Option<f64>,
    pub upload_at_cap: bool,
    pub download_bps: Option<f64>,
    pub download_at_cap: bool,
    pub error: Option<String>,
}

/// A row of the result: the target, its figures, its place.
#[derive(Debug, Clone)]
pub struct Row {
    pub target: Target,
    pub measured: Measurement,
    /// 1 for the best; `None` for an endpoint that could not be measured.
    pub rank: Option<usize>,
    pub verdict: &'static str,
}

pub async fn run(args: SpeedtestArgs) -> anyhow::Result<()> {
    let dev = args.endpoints.is_empty() && args.entry.is_none();
    let targets = if let Some(id) = &args.entry {
        let entry = read_entry(&args.api, args.api_token.as_deref(), id).await?;
        entry_targets(&entry)?
    } else if dev {
        dev_targets(args.port_offset)?
    } else {
        args.endpoints
            .iter()
            .map(|e| endpoint_target(e))
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let seconds = Duration::from_secs(args.seconds);
    let mut rows = Vec::with_capacity(targets.len());
    for mut target in targets {
        if !args.json {
            eprintln!("measuring {} ...", target.url);
        }
        let measured = measure(&mut target, seconds, args.download).await;
        rows.push(Row {
            target,
            measured,
            rank: None,
            verdict: "",
        });
    }
    rank(&mut rows);
    if args.json {
        println!("{}", json_report(&rows, args.seconds));
    } else {
        print!("{}", table(&rows, args.download));
    }
    if rows.iter().all(|r| r.rank.is_none()) {
        if dev {
            anyhow::bail!(
                "no endpoint could be measured (is `longhaul dev` running, with this \
                 --port-offset? Otherwise name the nodes with --endpoint URL)"
            );
        }
        anyhow::bail!("no endpoint could be measured");
    }
    Ok(())
}

/// The dev cluster's nodes, origins first.
fn dev_targets(offset: u16) -> anyhow::Result<Vec<Target>> {
    crate::dev::nodes(offset)?
        .into_iter()
        .map(|n| {
            Ok(Target {
                url: format!("http://{}{}", n.http, longhaul_node::speedtest::PATH)
                    .parse()
                    .context("a dev node's speed-test URL")?,
                region: Some(n.region),
                name: Some(n.name),
                node: Some(n.id),
                role: Some(n.role.into()),
                ingest: Some(format!("rtmp://{}/kLive", n.rtmp)),
            })
        })
        .collect()
}

/// An entry, as the origin's API has it.
async fn read_entry(api: &str, token: Option<&str>, id: &str) -> anyhow::Result<serde_json::Value> {
    let api = crate::entry::api_base(api);
    let url: Uri = format!("{api}/api/v1/entries/{id}")
        .parse()
        .with_context(|| format!("bad API URL {api}"))?;
    let addr = resolve(&url).await?;
    let mut request = Request::get(&url).header(hyper::header::HOST, host_header(&url));
    if let Some(token) = token {
        request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    let response = send(addr, request, ANSWER_TIMEOUT)
        .await
        .with_context(|| format!("cannot reach the longhaul API at {api}"))?;
    let (status, body) = read_body(response, ANSWER_TIMEOUT).await?;
    if !status.is_success() {
        anyhow::bail!("GET {url} answered {}", refusal(status, &body));
    }
    serde_json::from_slice(&body).context("the API's answer is not JSON")
}

/// The speed tests an entry lists: the data centres' (origins; publish to the entry's
/// primary URL, which the cluster sends to its primary origin), then each region's
/// (edges; publish to the region's primary URL). A region without a speed test is
/// left out: there is nothing to measure.
pub fn entry_targets(entry: &serde_json::Value) -> anyhow::Result<Vec<Target>> {
    let endpoints = &entry["endpoints"];
    let text = |v: &serde_json::Value, key: &str| v[key].as_str().map(str::to_owned);
    let mut targets = Vec::new();
    let data_centres = endpoints["speed_tests"].as_array().into_iter().flatten();
    for t in data_centres {
        if let Some(url) = text(t, "url") {
            let mut target = endpoint_target(&url)?;
            target.region = text(t, "region");
            target.name = text(t, "name");
            target.role = Some("origin".into());
            target.ingest = text(endpoints, "primary_rtmp");
            targets.push(target);
        }
    }
    for r in endpoints["regions"].as_array().into_iter().flatten() {
        if let Some(url) = text(r, "speed_test") {
            let mut target = endpoint_target(&url)?;
            target.region = text(r, "region");
            target.name = text(r, "name");
            target.role = Some("edge".into());
            target.ingest = text(r, "primary_rtmp");
            targets.push(target);
        }
    }
    if targets.is_empty() {
        anyhow::bail!(
            "entry {} lists no speed tests (the origins' [endpoints] speed_tests and each \
             region's speed_test set them)",
            entry["id"].as_str().unwrap_or("?")
        );
    }
    Ok(targets)
}

/// A target from a URL as typed: `http://` is assumed without a scheme, and a URL
/// without a path gets `/speedtest`.
pub fn endpoint_target(typed: &str) -> anyhow::Result<Target> {
    let typed = typed.trim();
    let with_scheme = if typed.contains("://") {
        typed.to_string()
    } else {
        format!("http://{typed}")
    };
    let uri: Uri = with_scheme
        .parse()
        .with_context(|| format!("--endpoint {typed:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => anyhow::bail!(
            "--endpoint {typed:?}: {other}:// is not supported; speed tests are served over \
             plain http:// (what is measured is the path, not TLS)"
        ),
        None => anyhow::bail!("--endpoint {typed:?} has no scheme"),
    }
    if uri.host().is_none_or(str::is_empty) {
        anyhow::bail!("--endpoint {typed:?} has no host");
    }
    let path = uri.path().trim_end_matches('/');
    let path = if path.is_empty() {
        longhaul_node::speedtest::PATH
    } else {
        path
    };
    let url = format!(
        "http://{}{path}",
        uri.authority().map(|a| a.as_str()).unwrap_or_default()
    )
    .parse()
    .with_context(|| format!("--endpoint {typed:?} is not a URL"))?;
    Ok(Target {
        url,
        region: None,
        name: None,
        node: None,
        role: None,
        ingest: None,
    })
}

/// Measures one endpoint; whatever fails is said in `error`, with what was measured
/// up to then.
async fn measure(target: &mut Target, seconds: Duration, download: bool) -> Measurement {
    let mut m = Measurement::default();
    if let Err(e) = measure_into(target, seconds, download, &mut m).await {
        m.error = Some(crate::error_text(&e));
    }
    m
}

async fn measure_into(
    target: &mut Target,
    seconds: Duration,
    download: bool,
    m: &mut Measurement,
) -> anyhow::Result<()> {
    let addr = resolve(&target.url).await?;
    let mut connects = Vec::with_capacity(CONNECTS);
    for _ in 0..CONNECTS {
        let start = Instant::now();
        // A refusal or a timeout says enough: the endpoint is not one to publish to.
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => connects.push(start.elapsed()),
            Ok(Err(e)) => anyhow::bail!("cannot connect to {addr}: {e}"),
            Err(_) => anyhow::bail!(
                "cannot connect to {addr}: no answer in {} s",
                CONNECT_TIMEOUT.as_secs()
            ),
        }
    }
    m.connect = median(&mut connects);

    // What the node says it is, and its limits.
    let info = get_json(addr, &target.url)
        .await
        .context("GET /speedtest")?;
    let text = |key: &str| info[key].as_str().map(str::to_owned);
    target.node = target.node.take().or_else(|| text("node"));
    target.region = target.region.take().or_else(|| text("region"));
    target.role = target.role.take().or_else(|| text("role"));
    let max_bytes = info["upload"]["max_bytes"]
        .as_u64()
        .unwrap_or(longhaul_node::speedtest::MAX_BYTES);
    let cap = info["max_bits_per_second"].as_f64();

    let base = target.url.path().trim_end_matches('/').to_owned();
    let upload_url = sub_url(&target.url, &format!("{base}/upload"))?;
    let start = Instant::now();
    let request = Request::post(&upload_url)
        .header(hyper::header::HOST, host_header(&target.url))
        .header(hyper::header::CONTENT_TYPE, "application/octet-stream")
        .body(FillerBody::new(max_bytes).until(seconds))
        .context("building the upload request")?;
    let response = send(addr, request, seconds + ANSWER_TIMEOUT)
        .await
        .context("upload")?;
    let (status, body) = read_body(response, seconds + ANSWER_TIMEOUT).await?;
    let elapsed = start.elapsed();
    if !status.is_success() {
        anyhow::bail!("upload: {}", refusal(status, &body));
    }
    let answer: serde_json::Value =
        serde_json::from_slice(&body).context("upload: the answer is not JSON")?;
    let bytes = answer["bytes"]
        .as_u64()
        .context("upload: no `bytes` in the answer")?;
    // The node's own time, from the request's head to the body's last byte: neither
    // the connect nor the answer's way back (a round trip on a long path) is counted.
    // The client's time is the fallback, an underestimate by about a round trip.
    let reading = answer["seconds"]
        .as_f64()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= elapsed.as_secs_f64())
        .map_or(elapsed, Duration::from_secs_f64);
    let bps = throughput(bytes, reading);
    m.upload_bps = Some(bps);
    m.upload_at_cap = cap.is_some_and(|c| bps >= c * AT_CAP);

    if download {
        let url = sub_url(&target.url, &format!("{base}/download?bytes={max_bytes}"))?;
        let request = Request::get(&url)
            .header(hyper::header::HOST, host_header(&target.url))
            .body(Empty::<Bytes>::new())
            .context("building the download request")?;
        let response = send(addr, request, ANSWER_TIMEOUT)
            .await
            .context("download")?;
        // From the answer's head: the connect and the request's way out are not counted.
        let start = Instant::now();
        let status = response.status();
        if !status.is_success() {
            let (_, body) = read_body(response, ANSWER_TIMEOUT).await?;
            anyhow::bail!("download: {}", refusal(status, &body));
        }
        let mut body = response.into_body();
        let mut read: u64 = 0;
        let deadline = tokio::time::Instant::now() + seconds;
        // Bounded by the deadline and by the node's cap on the size.
        while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, body.frame()).await {
            let frame = frame.context("download: reading the body")?;
            if let Some(data) = frame.data_ref() {
                read += data.len() as u64;
            }
        }
        let bps = throughput(read, start.elapsed());
        m.download_bps = Some(bps);
        m.download_at_cap = cap.is_some_and(|c| bps >= c * AT_CAP);
    }
    Ok(())
}

/// The first address `url`'s host resolves to.
async fn resolve(url: &Uri) -> anyhow::Result<SocketAddr> {
    let host = url.host().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_u16().unwrap_or(80);
    tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} resolves to no address"))
}

fn host_header(url: &Uri) -> String {
    url.authority().map(|a| a.to_string()).unwrap_or_default()
}

fn sub_url(url: &Uri, path_and_query: &str) -> anyhow::Result<Uri> {
    format!("http://{}{path_and_query}", host_header(url))
        .parse()
        .with_context(|| format!("bad URL path {path_and_query}"))
}

/// One request on a fresh connection (each test measures its own TCP connection, as an
/// encoder's would be), its answer's head within `timeout`.
async fn send<B>(
    addr: SocketAddr,
    request: Request<B>,
    timeout: Duration,
) -> anyhow::Result<Response<Incoming>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "speed-test connection ended with an error");
            }
        });
        sender.send_request(request).await.context("no answer")
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| anyhow::bail!("no answer within {} s", timeout.as_secs()))
}

async fn read_body(
    response: Response<Incoming>,
    timeout: Duration,
) -> anyhow::Result<(hyper::StatusCode, Bytes)> {
    let status = response.status();
    let body = tokio::time::timeout(timeout, response.into_body().collect())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "the answer's body did not come within {} s",
                timeout.as_secs()
            )
        })?
        .context("reading the answer")?
        .to_bytes();
    Ok((status, body))
}

async fn get_json(addr: SocketAddr, url: &Uri) -> anyhow::Result<serde_json::Value> {
    let request = Request::get(url)
        .header(hyper::header::HOST, host_header(url))
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    let response = send(addr, request, ANSWER_TIMEOUT).await?;
    let (status, body) = read_body(response, ANSWER_TIMEOUT).await?;
    if !status.is_success() {
        anyhow::bail!("{}", refusal(status, &body));
    }
    serde_json::from_slice(&body).context("the answer is not JSON (is this a longhaul node?)")
}

/// A refusal as the node put it: `429 rate_limited: ...`.
fn refusal(status: hyper::StatusCode, body: &[u8]) -> String {
    let v: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let error = v.as_ref().map(|v| &v["error"]);
    match error.and_then(|e| Some((e["code"].as_str()?, e["message"].as_str()?))) {
        Some((code, message)) => format!("{} {code}: {message}", status.as_u16()),
        None => format!("{status}"),
    }
}

/// Bits per second of `bytes` in `elapsed`.
pub fn throughput(bytes: u64, elapsed: Duration) -> f64 {
    longhaul_node::speedtest::pace::bits_per_second(bytes, elapsed)
}

/// The median of `samples` (the lower middle of an even count), or `None` if empty.
pub fn median(samples: &mut [Duration]) -> Option<Duration> {
    samples.sort();
    samples.get(samples.len().checked_sub(1)? / 2).copied()
}

/// Orders `rows` best first and gives each its rank and verdict (see the module
/// documentation): `best`, `close` (within [`CLOSE_ENOUGH`] of the best upload),
/// `slower`, or `failed` (last, in the order measured).
pub fn rank(rows: &mut Vec<Row>) {
    let best = rows
        .iter()
        .filter(|r| r.measured.error.is_none())
        .filter_map(|r| r.measured.upload_bps)
        .fold(0.0_f64, f64::max);
    let close = |r: &Row| {
        r.measured.error.is_none()
            && r.measured
                .upload_bps
                .is_some_and(|u| u >= best * CLOSE_ENOUGH)
    };
    let mut measured: Vec<Row> = Vec::new();
    let mut failed: Vec<Row> = Vec::new();
    for row in rows.drain(..) {
        if row.measured.error.is_none() && row.measured.upload_bps.is_some() {
            measured.push(row);
        } else {
            failed.push(row);
        }
    }
    measured.sort_by(|a, b| {
        let (ca, cb) = (close(a), close(b));
        cb.cmp(&ca).then_with(|| {
            if ca && cb {
                a.measured.connect.cmp(&b.measured.connect)
            } else {
                let (ua, ub) = (
                    a.measured.upload_bps.unwrap_or(0.0),
                    b.measured.upload_bps.unwrap_or(0.0),
                );
                ub.total_cmp(&ua)
            }
        })
    });
    for (i, row) in measured.iter_mut().enumerate() {
        row.rank = Some(i + 1);
        row.verdict = match (i, close(row)) {
            (0, _) => "best",
            (_, true) => "close",
            (_, false) => "slower",
        };
    }
    for row in &mut failed {
        row.rank = None;
        row.verdict = "failed";
    }
    rows.extend(measured);
    rows.extend(failed);
}

/// Milliseconds as people read them: two decimals below 10 (a loopback or LAN connect
/// is a fraction of one), one above.
fn milliseconds(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.1}")
    }
}

fn mbit(bps: Option<f64>, at_cap: bool) -> String {
    match bps {
        Some(b) => format!("{:.1}{}", b / 1e6, if at_cap { "+" } else { "" }),
        None => "-".into(),
    }
}

/// The table people read: ranked rows, then which endpoint to use.
pub fn table(rows: &[Row], download: bool) -> String {
    let opt = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    let mut lines: Vec<Vec<String>> = vec![{
        let mut h = vec![
            "rank",
            "region",
            "place",
            "node",
            "role",
            "connect ms",
            "upload Mbit/s",
        ];
        if download {
            h.push("download Mbit/s");
        }
        h.extend(["verdict", "publish to"]);
        h.into_iter().map(String::from).collect()
    }];
    for r in rows {
        let m = &r.measured;
        let mut line = vec![
            r.rank.map_or("-".into(), |n| n.to_string()),
            opt(&r.target.region),
            opt(&r.target.name),
            opt(&r.target.node),
            opt(&r.target.role),
            m.connect.map_or("-".into(), milliseconds),
            mbit(m.upload_bps, m.upload_at_cap),
        ];
        if download {
            line.push(mbit(m.download_bps, m.download_at_cap));
        }
        line.push(r.verdict.into());
        line.push(match &m.error {
            Some(e) => format!("{}: {e}", r.target.url),
            None => r
                .target
                .ingest
                .clone()
                .unwrap_or_else(|| r.target.url.to_string()),
        });
        lines.push(line);
    }
    let columns = lines[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    // Figures right-aligned, words left-aligned; the last column not padded.
    let numeric = |c: usize| {
        matches!(
            lines[0][c].as_str(),
            "connect ms" | "upload Mbit/s" | "download Mbit/s"
        )
    };
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c + 1 == columns {
                    cell.clone()
                } else if numeric(c) {
                    format!("{cell:>w$}", w = widths[c])
                } else {
                    format!("{cell:<w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if rows
        .iter()
        .any(|r| r.measured.upload_at_cap || r.measured.download_at_cap)
    {
        out.push_str(&format!(
            "\n+ at the node's per-test cap ({} Mbit/s): the link is at least this fast.\n",
            longhaul_node::speedtest::MAX_BITS_PER_SECOND / 1_000_000
        ));
    }
    match rows.first().filter(|r| r.rank == Some(1)) {
        Some(best) => out.push_str(&format!(
            "\nUse {} ({}): {}\n",
            opt(&best.target.region),
            best.target
                .name
                .clone()
                .or_else(|| best.target.node.clone())
                .unwrap_or_default(),
            best.target
                .ingest
                .clone()
                .unwrap_or_else(|| best.target.url.to_string()),
        )),
        None => out.push_str("\nNo endpoint could be measured.\n"),
    }
    out
}

/// The `--json` document.
pub fn json_report(rows: &[Row], seconds: u64) -> serde_json::Value {
    let mbps = |b: Option<f64>| b.map(|b| (b / 1e4).round() / 100.0);
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let m = &r.measured;
            serde_json::json!({
                "rank": r.rank,
                "region": r.target.region,
                "name": r.target.name,
                "node": r.target.node,
                "role": r.target.role,
                "url": r.target.url.to_string(),
                "ingest": r.target.ingest,
                "connect_ms": m.connect.map(|c| c.as_secs_f64() * 1000.0),
                "upload_mbps": mbps(m.upload_bps),
                "upload_at_cap": m.upload_at_cap,
                "download_mbps": mbps(m.download_bps),
                "download_at_cap": m.download_at_cap,
                "verdict": r.verdict,
                "error": m.error,
            })
        })
        .collect();
    let best = results.iter().find(|r| r["rank"] == 1).cloned();
    serde_json::json!({ "seconds": seconds, "best": best, "results": results })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(region: &str, connect_ms: u64, upload_mbps: Option<f64>, error: Option<&str>) -> Row {
        Row {
            target: Target {
                url: format!("http://{region}.example.com/speedtest")
                    .parse()
                    .expect("url"),
                region: Some(region.into()),
                name: None,
                node: Some(format!("{region}-1")),
                role: Some("edge".into()),
                ingest: Some(format!("rtmp://{region}.example.com/kLive")),
            },
            measured: Measurement {
                connect: Some(Duration::from_millis(connect_ms)),
                upload_bps: upload_mbps.map(|m| m * 1e6),
                error: error.map(Into::into),
                ..Measurement::default()
            },
            rank: None,
            verdict: "",
        }
    }

    fn order(rows: &[Row]) -> Vec<(String, Option<usize>, &'static str)> {
        rows.iter()
            .map(|r| {
                (
                    r.target.region.clone().unwrap_or_default(),
                    r.rank,
                    r.verdict,
                )
            })
            .collect()
    }

    #[test]
    fn upload_decides_and_connect_time_breaks_near_ties() {
        let mut rows = vec![
            row("nyc", 120, Some(20.0), None),
            row("fra", 15, Some(47.0), None),
            row("gru", 200, None, Some("cannot connect")),
            row("pao", 180, Some(50.0), None),
            row("sin", 250, Some(44.0), None),
        ];
        rank(&mut rows);
        let o = |r: &str, n: Option<usize>, v| (r.to_string(), n, v);
        assert_eq!(
            order(&rows),
            vec![
                // fra and pao are within 10% of the best (50): fra connects sooner.
                o("fra", Some(1), "best"),
                o("pao", Some(2), "close"),
                // sin (44 < 45) is not; nyc is slower still; gru failed, last.
                o("sin", Some(3), "slower"),
                o("nyc", Some(4), "slower"),
                o("gru", None, "failed"),
            ]
        );
    }

    #[test]
    fn a_row_with_an_error_is_failed_even_with_figures() {
        let mut rows = vec![
            row("fra", 10, Some(40.0), Some("download: 503 busy: ...")),
            row("sin", 300, Some(5.0), None),
        ];
        rank(&mut rows);
        assert_eq!(rows[0].verdict, "best");
        assert_eq!(rows[1].verdict, "failed");
    }

    #[test]
    fn all_failed_ranks_none() {
        let mut rows = vec![
            row("fra", 10, None, Some("x")),
            row("sin", 10, None, Some("y")),
        ];
        rank(&mut rows);
        assert!(rows.iter().all(|r| r.rank.is_none()));
        assert!(table(&rows, false).contains("No endpoint could be measured."));
        assert_eq!(json_report(&rows, 4)["best"], serde_json::Value::Null);
    }

    #[test]
    fn median_of_connects() {
        let ms = Duration::from_millis;
        assert_eq!(median(&mut [ms(9), ms(1), ms(5)]), Some(ms(5)));
        assert_eq!(median(&mut [ms(9), ms(1)]), Some(ms(1)));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn throughput_arithmetic() {
        assert_eq!(throughput(6_250_000, Duration::from_secs(1)), 50e6);
        assert_eq!(throughput(1, Duration::ZERO), 0.0);
    }

    #[test]
    fn an_entrys_speed_tests_with_where_to_publish() {
        let entry = serde_json::json!({
            "id": "1_abcd1234",
            "endpoints": {
                "primary_rtmp": "rtmp://1_abcd1234.p.kpublish.example.com:1935/kLive/?t=tok",
                "speed_tests": [
                    {"region": "nyc", "name": "US (New York)", "url": "http://ny-publish-speedtest.example.com/speedtest"},
                ],
                "regions": [
                    {"region": "fra", "name": "EMEA (Frankfurt)", "speed_test": "http://fr-publish-speedtest.example.com",
                     "primary_rtmp": "rtmp://1_abcd1234.p.fra.kpublish.example.com:1935/kLive/?t=tok"},
                    {"region": "gru", "name": "LATAM (Sao Paulo)", "speed_test": null,
                     "primary_rtmp": "rtmp://1_abcd1234.p.gru.kpublish.example.com:1935/kLive/?t=tok"},
                ],
            },
        });
        let targets = entry_targets(&entry).expect("targets");
        let seen: Vec<(String, String, String)> = targets
            .iter()
            .map(|t| {
                (
                    t.region.clone().unwrap_or_default(),
                    t.url.to_string(),
                    t.ingest.clone().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "nyc".to_string(),
                    "http://ny-publish-speedtest.example.com/speedtest".to_string(),
                    "rtmp://1_abcd1234.p.kpublish.example.com:1935/kLive/?t=tok".to_string()
                ),
                (
                    "fra".to_string(),
                    "http://fr-publish-speedtest.example.com/speedtest".to_string(),
                    "rtmp://1_abcd1234.p.fra.kpublish.example.com:1935/kLive/?t=tok".to_string()
                ),
            ]
        );
        let none = serde_json::json!({"id": "1_x", "endpoints": {"regions": []}});
        let error = entry_targets(&none)
            .expect_err("nothing to measure")
            .to_string();
        assert!(error.contains("lists no speed tests"), "{error}");
    }

    #[test]
    fn endpoints_as_typed() {
        let url = |s: &str| endpoint_target(s).map(|t| t.url.to_string());
        assert_eq!(
            url("127.0.0.1:8083").unwrap(),
            "http://127.0.0.1:8083/speedtest"
        );
        assert_eq!(
            url("http://fr.example.com/").unwrap(),
            "http://fr.example.com/speedtest"
        );
        assert_eq!(
            url("http://fr.example.com/speedtest").unwrap(),
            "http://fr.example.com/speedtest"
        );
        assert_eq!(
            url("http://[::1]:8083").unwrap(),
            "http://[::1]:8083/speedtest"
        );
        let https = url("https://fr.example.com").unwrap_err().to_string();
        assert!(https.contains("https:// is not supported"), "{https}");
        assert!(url("http://").is_err());
    }

    #[test]
    fn the_table_marks_the_cap_and_names_the_endpoint_to_use() {
        let mut rows = vec![
            row("fra", 12, Some(49.9), None),
            row(
                "sin",
                250,
                None,
                Some("cannot connect to 127.0.0.1:8085: refused"),
            ),
        ];
        rows[0].measured.upload_at_cap = true;
        rank(&mut rows);
        let text = table(&rows, false);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with(
                "rank  region  place  node   role  connect ms  upload Mbit/s  verdict  publish to"
            ),
            "{text}"
        );
        assert!(
            lines[1].contains("49.9+")
                && lines[1].ends_with("best     rtmp://fra.example.com/kLive"),
            "{text}"
        );
        assert!(
            lines[2].contains("failed   http://sin.example.com/speedtest: cannot connect"),
            "{text}"
        );
        assert!(
            text.contains("+ at the node's per-test cap (50 Mbit/s)"),
            "{text}"
        );
        assert!(
            text.contains("\nUse fra (fra-1): rtmp://fra.example.com/kLive\n"),
            "{text}"
        );
        let json = json_report(&rows, 4);
        assert_eq!(json["best"]["region"], "fra");
        assert_eq!(json["results"][0]["upload_mbps"], 49.9);
        assert_eq!(json["results"][1]["rank"], serde_json::Value::Null);
    }
}
