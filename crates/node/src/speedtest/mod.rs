//! The speed-test endpoint every node serves on its HTTP port, so an encoder's operator
//! can tell which region to publish to (the product lists a speed-test URL per data
//! centre and region): `longhaul speedtest` measures them all.
//!
//! | route | does |
//! |---|---|
//! | `GET /speedtest` | this node, its region and role, and the limits below, as JSON |
//! | `GET /speedtest/download?bytes=N` | N bytes of filler (default [`DEFAULT_DOWNLOAD_BYTES`], at most [`MAX_BYTES`]), paced |
//! | `POST /speedtest/upload` | reads and discards a body of at most [`MAX_BYTES`], paced; answers `{"bytes", "seconds", "bits_per_second"}` |
//!
//! No authentication: the routes are public, like the product's speed-test pages. What
//! keeps them from being abused:
//!
//! - **Not an amplifier.** A response is never larger than [`MAX_BYTES`], and only a
//!   client that completed a TCP handshake gets one: a spoofed source address never
//!   completes it, so nobody can point the bytes at a third party.
//! - **Bounded cost per test.** Each test is paced to [`MAX_BITS_PER_SECOND`] and an
//!   upload must finish within [`MAX_TEST_DURATION`].
//! - **Bounded tests at once.** At most [`MAX_CONCURRENT`] per node; beyond, `503` with
//!   `Retry-After`.
//! - **Bounded tests per client.** A token bucket per address ([`budget`]); beyond,
//!   `429` with `Retry-After`.
//!
//! Every refusal is a JSON error (`{"error": {"code", "message"}}`), an info log line
//! with the client's address, and a count in
//! `longhaul_speedtest_requests_total{kind, outcome}`; the bytes moved are counted in
//! `longhaul_speedtest_bytes_total{direction}` and tests running in
//! `longhaul_speedtest_active`. The node registers [`SpeedTest::collector`] in its
//! registry and mounts [`SpeedTest::routes`] in its router.
//!
//! The client address is the TCP peer's: a node behind an HTTP load balancer sees the
//! balancer's, and the per-client limit then applies to all its clients together.

pub mod body;
pub mod budget;
pub mod pace;

use crate::http::{error, json, Body, Client};
use axum::extract::RawQuery;
use axum::routing::{get, post};
use axum::{Extension, Router};
use body::FillerBody;
use budget::{Budget, Decision};
use http_body_util::BodyExt;
use hyper::{HeaderMap, Response, StatusCode};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounterVec, IntGauge, Opts};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Where the routes are mounted.
pub const PATH: &str = "/speedtest";

/// The most bytes one test moves, either way: 25 MB.
///
/// That is [`DEFAULT_TEST_SECONDS`] (4 s) at [`MAX_BITS_PER_SECOND`] (50 Mbit/s), so a
/// test at the cap can run its whole length, and no response is ever larger: a request
/// of a few hundred bytes can never make the node send more than 25 MB.
pub const MAX_BYTES: u64 = 25_000_000;

/// A download's size when the request names none: 5 MB, just under a second at the cap.
pub const DEFAULT_DOWNLOAD_BYTES: u64 = 5_000_000;

/// Each test's bandwidth cap: 50 Mbit/s.
///
/// The top of the ingest range: the highest bitrate the big platforms recommend for a
/// live encode is about 51 Mbit/s (YouTube, 2160p60). A link faster than this is fast
/// enough for any encoder, and measuring it more exactly would change no one's choice
/// of region; a tighter cap would hide the difference between adequate and ample for 4K.
pub const MAX_BITS_PER_SECOND: u64 = 50_000_000;

/// Tests running at once on a node: 4.
///
/// With [`MAX_BITS_PER_SECOND`] that is at most 200 Mbit/s of speed tests per node,
/// a small share of a node sized for hundreds of ingest streams, and enough for people
/// picking a region (each test lasts a few seconds; `longhaul speedtest` runs one at a
/// time).
pub const MAX_CONCURRENT: usize = 4;

/// The test length `longhaul speedtest` uses by default: 4 seconds, so that the five
/// regions take about half a minute. OBS's auto-config streams 10 s to each server; on a
/// 300 ms path TCP's slow start needs about 2 s to reach [`MAX_BITS_PER_SECOND`], so a
/// 4 s test of a long path reads low (`--seconds 10` for a closer figure; a test at
/// the cap still ends at [`MAX_BYTES`]).
pub const DEFAULT_TEST_SECONDS: u64 = 4;

/// How long an upload may take before the node stops reading it: 15 s, [`MAX_BYTES`]
/// at about 13 Mbit/s. A client slower than that holds a slot for no use.
pub const MAX_TEST_DURATION: Duration = Duration::from_secs(15);

/// `Retry-After` when every slot is taken: a test at the cap ends within 4 s.
const BUSY_RETRY_AFTER_SECS: u64 = 5;

/// The `kind` label of `speedtest_requests_total`.
pub mod kind {
    pub const DOWNLOAD: &str = "download";
    pub const UPLOAD: &str = "upload";
    pub const ALL: [&str; 2] = [DOWNLOAD, UPLOAD];
}

/// The `outcome` label of `speedtest_requests_total`.
pub mod outcome {
    /// Served: a download started, an upload read to its end.
    pub const OK: &str = "ok";
    /// Refused: the request asked for too much, or was malformed.
    pub const BAD_REQUEST: &str = "bad_request";
    /// Refused: the body was (or said it would be) larger than the cap.
    pub const TOO_LARGE: &str = "too_large";
    /// Refused: the client's address spent its budget.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// Refused: every slot was taken (or too many addresses tracked).
    pub const BUSY: &str = "busy";
    /// An upload that took longer than [`super::MAX_TEST_DURATION`].
    pub const TIMEOUT: &str = "timeout";
    /// An upload whose client went away before its end.
    pub const ABORTED: &str = "aborted";
    pub const ALL: [&str; 7] = [
        OK,
        BAD_REQUEST,
        TOO_LARGE,
        RATE_LIMITED,
        BUSY,
        TIMEOUT,
        ABORTED,
    ];
}

/// The speed-test series, registered in the node's registry through
/// [`SpeedTest::collector`].
#[derive(Clone)]
struct Series {
    requests: IntCounterVec,
    bytes: IntCounterVec,
    active: IntGauge,
}

impl Series {
    fn new() -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "speedtest_requests_total",
                "Speed-test requests, by kind (download, upload) and outcome (ok or why refused)",
            ),
            &["kind", "outcome"],
        )
        .expect("valid metric definition");
        let bytes = IntCounterVec::new(
            Opts::new(
                "speedtest_bytes_total",
                "Bytes moved by speed tests, by direction (download: sent, upload: read)",
            ),
            &["direction"],
        )
        .expect("valid metric definition");
        // Present at 0 from the start, so rate() and alerts work before the first test.
        for k in kind::ALL {
            bytes.with_label_values(&[k]);
            for o in outcome::ALL {
                requests.with_label_values(&[k, o]);
            }
        }
        let active = IntGauge::new("speedtest_active", "Speed tests running now")
            .expect("valid metric definition");
        Self {
            requests,
            bytes,
            active,
        }
    }
}

impl Collector for Series {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.requests.desc();
        d.extend(self.bytes.desc());
        d.extend(self.active.desc());
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut m = self.requests.collect();
        m.extend(self.bytes.collect());
        m.extend(self.active.collect());
        m
    }
}

/// Who this node is, for `GET /speedtest`.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub id: String,
    pub region: String,
    /// `origin` or `edge`.
    pub role: &'static str,
}

/// A node's speed-test endpoint: its limits' state and its series. Cheap to clone.
#[derive(Clone)]
pub struct SpeedTest {
    inner: Arc<Inner>,
}

struct Inner {
    node: NodeIdentity,
    /// Tests at once, at most.
    concurrent: usize,
    slots: Arc<Semaphore>,
    budget: Mutex<Budget>,
    series: Series,
}

impl SpeedTest {
    pub fn new(node: NodeIdentity) -> Self {
        Self::with_limits(node, MAX_CONCURRENT, Budget::default())
    }

    /// With other limits than the defaults (tests).
    pub fn with_limits(node: NodeIdentity, concurrent: usize, budget: Budget) -> Self {
        Self {
            inner: Arc::new(Inner {
                node,
                concurrent,
                slots: Arc::new(Semaphore::new(concurrent)),
                budget: Mutex::new(budget),
                series: Series::new(),
            }),
        }
    }

    /// The series, for the node's registry.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(self.inner.series.clone())
    }

    /// The routes under [`PATH`], for the node's router (any state: they keep their own).
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let (info, download, upload) = (self.clone(), self.clone(), self.clone());
        Router::new()
            .route(PATH, get(move || async move { info.info() }))
            .route(
                &format!("{PATH}/download"),
                get(
                    move |client: Option<Extension<Client>>, RawQuery(query): RawQuery| async move {
                        download.download(peer(client), query.as_deref())
                    },
                ),
            )
            .route(
                &format!("{PATH}/upload"),
                post(
                    move |client: Option<Extension<Client>>, headers: HeaderMap, body: Body| async move {
                        upload.upload(peer(client), &headers, body).await
                    },
                ),
            )
    }

    /// `GET /speedtest`.
    fn info(&self) -> Response<Body> {
        let node = &self.inner.node;
        json(
            StatusCode::OK,
            &serde_json::json!({
                "node": node.id,
                "region": node.region,
                "role": node.role,
                "version": env!("CARGO_PKG_VERSION"),
                "download": {
                    "path": format!("{PATH}/download"),
                    "default_bytes": DEFAULT_DOWNLOAD_BYTES,
                    "max_bytes": MAX_BYTES,
                },
                "upload": { "path": format!("{PATH}/upload"), "max_bytes": MAX_BYTES },
                "max_bits_per_second": MAX_BITS_PER_SECOND,
                "max_seconds": MAX_TEST_DURATION.as_secs(),
                "max_concurrent": self.inner.concurrent,
                "per_client": { "burst": budget::BURST, "refill_seconds": budget::REFILL.as_secs() },
            }),
        )
    }

    /// `GET /speedtest/download?bytes=N`.
    fn download(&self, client: SocketAddr, query: Option<&str>) -> Response<Body> {
        let bytes = match download_size(query) {
            Ok(b) => b,
            Err(message) => {
                return self.refuse(
                    kind::DOWNLOAD,
                    client,
                    outcome::BAD_REQUEST,
                    StatusCode::BAD_REQUEST,
                    &message,
                    None,
                )
            }
        };
        let held = match self.admit(kind::DOWNLOAD, client) {
            Ok(h) => h,
            Err(refusal) => return *refusal,
        };
        let series = &self.inner.series;
        series
            .requests
            .with_label_values(&[kind::DOWNLOAD, outcome::OK])
            .inc();
        let counted = series.bytes.with_label_values(&[kind::DOWNLOAD]);
        tracing::debug!(%client, bytes, "speed test: download");
        let body = FillerBody::new(bytes)
            .paced(MAX_BITS_PER_SECOND)
            .on_frame(Box::new(move |n| counted.inc_by(n)))
            .holding(held);
        Response::builder()
            .header("content-type", "application/octet-stream")
            .header("cache-control", "no-store")
            .body(Body::new(body))
            .expect("static response parts are valid")
    }

    /// `POST /speedtest/upload`: reads the body (paced, within the cap and the time
    /// limit), then says how much came in how long.
    async fn upload(&self, client: SocketAddr, headers: &HeaderMap, body: Body) -> Response<Body> {
        let declared = headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BYTES) {
            return self.too_large(client);
        }
        let _held = match self.admit(kind::UPLOAD, client) {
            Ok(h) => h,
            Err(refusal) => return *refusal,
        };
        let counted = self.inner.series.bytes.with_label_values(&[kind::UPLOAD]);
        let started = Instant::now();
        let deadline = started + MAX_TEST_DURATION;
        let mut body = body;
        let mut read: u64 = 0;
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    return self.refuse(
                        kind::UPLOAD,
                        client,
                        outcome::TIMEOUT,
                        StatusCode::REQUEST_TIMEOUT,
                        &format!(
                            "the upload took longer than {} s; {read} bytes came",
                            MAX_TEST_DURATION.as_secs()
                        ),
                        None,
                    )
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    self.count(kind::UPLOAD, outcome::ABORTED);
                    tracing::debug!(%client, read, error = %e, "speed test: upload ended early");
                    return error(StatusCode::BAD_REQUEST, "aborted", &e.to_string());
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            let n = data.len() as u64;
            read += n;
            counted.inc_by(n);
            if read > MAX_BYTES {
                return self.too_large(client);
            }
            let wait = pace::wait(read, started.elapsed(), MAX_BITS_PER_SECOND);
            if !wait.is_zero() {
                tokio::time::sleep_until((Instant::now() + wait).min(deadline)).await;
            }
        }
        let seconds = started.elapsed();
        self.count(kind::UPLOAD, outcome::OK);
        tracing::debug!(%client, read, seconds = seconds.as_secs_f64(), "speed test: upload");
        json(
            StatusCode::OK,
            &serde_json::json!({
                "bytes": read,
                "seconds": seconds.as_secs_f64(),
                "bits_per_second": pace::bits_per_second(read, seconds),
                "node": self.inner.node.id,
                "region": self.inner.node.region,
            }),
        )
    }

    /// A slot and a token for one test from `client`, or the refusal to send.
    fn admit(
        &self,
        kind: &'static str,
        client: SocketAddr,
    ) -> Result<(OwnedSemaphorePermit, crate::GaugeGuard), Box<Response<Body>>> {
        // The slot first: a refusal for it costs the client no token.
        let Ok(permit) = self.inner.slots.clone().try_acquire_owned() else {
            return Err(Box::new(self.busy(
                kind,
                client,
                &format!(
                    "this node runs at most {} speed tests at once; try again shortly",
                    self.inner.concurrent
                ),
            )));
        };
        let decision = self
            .inner
            .budget
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take(client.ip(), std::time::Instant::now());
        match decision {
            Decision::Allowed => Ok((
                permit,
                crate::GaugeGuard::new(self.inner.series.active.clone()),
            )),
            Decision::Limited { retry_after } => {
                let secs = retry_after.as_secs_f64().ceil() as u64;
                Err(Box::new(self.refuse(
                    kind,
                    client,
                    outcome::RATE_LIMITED,
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!(
                        "{} speed tests from one address, then one every {} s; try again in {secs} s",
                        budget::BURST,
                        budget::REFILL.as_secs(),
                    ),
                    Some(secs),
                )))
            }
            Decision::Full => Err(Box::new(self.busy(
                kind,
                client,
                "this node is tracking too many speed-test clients; try again shortly",
            ))),
        }
    }

    fn busy(&self, kind: &str, client: SocketAddr, why: &str) -> Response<Body> {
        self.refuse(
            kind,
            client,
            outcome::BUSY,
            StatusCode::SERVICE_UNAVAILABLE,
            why,
            Some(BUSY_RETRY_AFTER_SECS),
        )
    }

    fn too_large(&self, client: SocketAddr) -> Response<Body> {
        self.refuse(
            kind::UPLOAD,
            client,
            outcome::TOO_LARGE,
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("an upload is at most {MAX_BYTES} bytes"),
            None,
        )
    }

    fn count(&self, kind: &str, outcome: &str) {
        self.inner
            .series
            .requests
            .with_label_values(&[kind, outcome])
            .inc();
    }

    /// A refusal: counted, logged with the client, answered in JSON.
    fn refuse(
        &self,
        kind: &str,
        client: SocketAddr,
        outcome: &str,
        status: StatusCode,
        message: &str,
        retry_after: Option<u64>,
    ) -> Response<Body> {
        self.count(kind, outcome);
        tracing::info!(%client, kind, outcome, %status, "speed test refused: {message}");
        let mut response = error(status, outcome, message);
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, secs.max(1).into());
        }
        response
    }
}

/// The client's address, or 0.0.0.0:0 when the router runs without the accept loop
/// (tests calling it directly).
fn peer(client: Option<Extension<Client>>) -> SocketAddr {
    client.map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), |c| c.0 .0)
}

/// The download size a query asks for: `bytes=N`, 1 to [`MAX_BYTES`], default
/// [`DEFAULT_DOWNLOAD_BYTES`]; other parameters are ignored (cache busters).
pub fn download_size(query: Option<&str>) -> Result<u64, String> {
    let value = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == "bytes")
        .map(|(_, v)| v);
    let Some(value) = value else {
        return Ok(DEFAULT_DOWNLOAD_BYTES);
    };
    match value.parse::<u64>() {
        Ok(n) if (1..=MAX_BYTES).contains(&n) => Ok(n),
        Ok(n) if n > MAX_BYTES => Err(format!(
            "bytes={n} is more than a download may be ({MAX_BYTES} bytes)"
        )),
        _ => Err(format!(
            "bytes={value:?} is not a number of bytes from 1 to {MAX_BYTES}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn node() -> NodeIdentity {
        NodeIdentity {
            id: "fra-1".into(),
            region: "fra".into(),
            role: "edge",
        }
    }

    async fn call(
        test: &SpeedTest,
        method: &str,
        uri: &str,
        body: Body,
        client: &str,
    ) -> (StatusCode, HeaderMap, bytes::Bytes) {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .body(body)
            .expect("request");
        let addr: SocketAddr = client.parse().expect("address");
        request.extensions_mut().insert(Client(addr));
        let response = test
            .routes::<()>()
            .oneshot(request)
            .await
            .expect("infallible");
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, bytes)
    }

    fn error_code(body: &[u8]) -> String {
        let v: serde_json::Value = serde_json::from_slice(body).expect("JSON error");
        v["error"]["code"].as_str().expect("code").to_owned()
    }

    fn metric(test: &SpeedTest, kind: &str, outcome: &str) -> u64 {
        test.inner
            .series
            .requests
            .with_label_values(&[kind, outcome])
            .get()
    }

    #[test]
    fn download_sizes_are_bounded() {
        assert_eq!(download_size(None), Ok(DEFAULT_DOWNLOAD_BYTES));
        assert_eq!(download_size(Some("x=1")), Ok(DEFAULT_DOWNLOAD_BYTES));
        assert_eq!(download_size(Some("x=1&bytes=1000")), Ok(1000));
        assert_eq!(download_size(Some("bytes=25000000")), Ok(MAX_BYTES));
        for bad in [
            "bytes=25000001",
            "bytes=0",
            "bytes=-1",
            "bytes=",
            "bytes",
            "bytes=1e6",
        ] {
            assert!(download_size(Some(bad)).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn serves_a_download_of_the_size_asked_and_counts_it() {
        let test = SpeedTest::new(node());
        let (status, headers, body) = call(
            &test,
            "GET",
            "/speedtest/download?bytes=100000",
            Body::empty(),
            "192.0.2.1:5000",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body.len(), 100_000);
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(metric(&test, kind::DOWNLOAD, outcome::OK), 1);
        let sent = test.inner.series.bytes.with_label_values(&[kind::DOWNLOAD]);
        assert_eq!(sent.get(), 100_000);
        assert_eq!(test.inner.series.active.get(), 0, "the slot is back");
        assert_eq!(test.inner.slots.available_permits(), MAX_CONCURRENT);
    }

    #[tokio::test]
    async fn an_oversized_download_is_refused_in_json() {
        let test = SpeedTest::new(node());
        let (status, _, body) = call(
            &test,
            "GET",
            "/speedtest/download?bytes=1000000000",
            Body::empty(),
            "192.0.2.1:5000",
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&body), outcome::BAD_REQUEST);
        assert_eq!(metric(&test, kind::DOWNLOAD, outcome::BAD_REQUEST), 1);
    }

    #[tokio::test]
    async fn an_upload_is_read_and_measured() {
        let test = SpeedTest::new(node());
        let (status, _, body) = call(
            &test,
            "POST",
            "/speedtest/upload",
            Body::new(FillerBody::new(300_000)),
            "192.0.2.1:5000",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["bytes"], 300_000);
        assert!(v["seconds"].as_f64().is_some_and(|s| s > 0.0), "{v}");
        assert_eq!(metric(&test, kind::UPLOAD, outcome::OK), 1);
    }

    #[tokio::test]
    async fn an_upload_declared_or_found_too_large_is_refused() {
        let test = SpeedTest::new(node());
        let request = hyper::Request::builder()
            .method("POST")
            .uri("/speedtest/upload")
            .header("content-length", (MAX_BYTES + 1).to_string())
            .body(Body::empty())
            .expect("request");
        let response = test.routes::<()>().oneshot(request).await.expect("ok");
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        // A chunked body that runs past the cap is cut at it.
        let (status, _, body) = call(
            &test,
            "POST",
            "/speedtest/upload",
            Body::new(FillerBody::new(MAX_BYTES + 100_000)),
            "192.0.2.1:5000",
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(error_code(&body), outcome::TOO_LARGE);
        assert_eq!(metric(&test, kind::UPLOAD, outcome::TOO_LARGE), 2);
    }

    #[tokio::test]
    async fn beyond_the_slots_is_busy_with_retry_after() {
        let test = SpeedTest::with_limits(node(), 1, Budget::default());
        // A download held open (its body not read) keeps the only slot.
        let mut request = hyper::Request::builder()
            .uri("/speedtest/download?bytes=1000")
            .body(Body::empty())
            .expect("request");
        request
            .extensions_mut()
            .insert(Client("192.0.2.1:1".parse().expect("addr")));
        let held = test.routes::<()>().oneshot(request).await.expect("ok");
        assert_eq!(held.status(), StatusCode::OK);
        let (status, headers, body) = call(
            &test,
            "GET",
            "/speedtest/download",
            Body::empty(),
            "192.0.2.2:1",
        )
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(headers["retry-after"], "5");
        assert_eq!(error_code(&body), outcome::BUSY);
        drop(held);
        let (status, _, _) = call(
            &test,
            "GET",
            "/speedtest/download?bytes=10",
            Body::empty(),
            "192.0.2.2:1",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "the slot came back with the body");
        assert_eq!(metric(&test, kind::DOWNLOAD, outcome::BUSY), 1);
    }

    #[tokio::test]
    async fn beyond_the_budget_is_rate_limited_with_retry_after() {
        let budget = Budget::new(2, Duration::from_secs(6), 100);
        let test = SpeedTest::with_limits(node(), 4, budget);
        for _ in 0..2 {
            let (status, _, _) = call(
                &test,
                "GET",
                "/speedtest/download?bytes=10",
                Body::empty(),
                "198.51.100.7:1",
            )
            .await;
            assert_eq!(status, StatusCode::OK);
        }
        let (status, headers, body) = call(
            &test,
            "GET",
            "/speedtest/download?bytes=10",
            Body::empty(),
            "198.51.100.7:2",
        )
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["retry-after"], "6");
        assert_eq!(error_code(&body), outcome::RATE_LIMITED);
        // Another address is not limited by the first one's tests.
        let (status, _, _) = call(
            &test,
            "GET",
            "/speedtest/download?bytes=10",
            Body::empty(),
            "198.51.100.8:1",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn the_info_names_the_node_and_the_limits() {
        let test = SpeedTest::new(node());
        let (status, _, body) =
            call(&test, "GET", "/speedtest", Body::empty(), "192.0.2.1:1").await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            (v["node"].as_str(), v["region"].as_str()),
            (Some("fra-1"), Some("fra"))
        );
        assert_eq!(v["upload"]["max_bytes"], MAX_BYTES);
        assert_eq!(v["max_bits_per_second"], MAX_BITS_PER_SECOND);
    }

    #[test]
    fn the_series_render_under_the_node_registry() {
        let registry = crate::metrics::node_registry("fra-1", "fra");
        let test = SpeedTest::new(node());
        registry.register(test.collector()).expect("registered");
        let text = crate::metrics::render(&registry);
        // The node's labels come in no fixed order: each label is looked for on its own.
        for (name, labels) in [
            (
                "longhaul_speedtest_requests_total{",
                &["kind=\"upload\"", "outcome=\"busy\""][..],
            ),
            (
                "longhaul_speedtest_bytes_total{",
                &["direction=\"download\""][..],
            ),
            ("longhaul_speedtest_active{", &[][..]),
        ] {
            let found = text.lines().any(|l| {
                l.starts_with(name)
                    && l.ends_with("} 0")
                    && ["node=\"fra-1\"", "region=\"fra\""]
                        .iter()
                        .chain(labels)
                        .all(|label| l.contains(label))
            });
            assert!(found, "{name} {labels:?} missing in\n{text}");
        }
    }
}
