//! Publishes authorised by the platform's own service: the origin POSTs each publish to
//! an HTTP callback (here a small server in the test) instead of checking its registry.
//! Allowed, refused in the service's words (which reach ffmpeg), a service that does not
//! answer (retried, then refused), answers reused from the cache, and the revoke API.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use longhaul_rtmp::connection::{ClientError, Publisher, RtmpUrl};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::cluster::*;
use support::*;
use tokio::net::{TcpListener, TcpStream};

/// A stream name of the entry shape; the service, not a registry, knows the entry.
const ENTRY: &str = "1_callback";

/// The test's authorisation service: it answers by token and keeps every request.
#[derive(Clone, Default)]
struct Service {
    requests: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Service {
    /// Serves on a free loopback port; returns the callback URL.
    async fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let service = service.clone();
                tokio::spawn(async move {
                    let handler = hyper::service::service_fn(move |req| {
                        let service = service.clone();
                        async move { Ok::<_, std::convert::Infallible>(service.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), handler)
                        .await;
                });
            }
        });
        format!("http://{addr}/longhaul/publish")
    }

    async fn answer(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let mut request: serde_json::Value = serde_json::from_slice(&body).unwrap();
        request["authorization"] = auth.into();
        let token = request["token"].as_str().unwrap_or("").to_owned();
        self.requests.lock().unwrap().push(request);
        let reply = |status: StatusCode, body: &str| {
            Response::builder()
                .status(status)
                .body(Full::new(Bytes::from(body.to_owned())))
                .unwrap()
        };
        match token.as_str() {
            "good" => reply(StatusCode::NO_CONTENT, ""),
            "suspended" => reply(
                StatusCode::FORBIDDEN,
                r#"{"reason":"entry suspended: invoice 42 is unpaid"}"#,
            ),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(5)).await;
                reply(StatusCode::NO_CONTENT, "")
            }
            _ => reply(StatusCode::FORBIDDEN, "unknown token\n"),
        }
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        self.requests.lock().unwrap().clone()
    }
}

fn callback_config(url: &str) -> String {
    format!(
        r#"
        [auth]
        mode = "callback"
        [auth.callback]
        url = "{url}"
        timeout_ms = 300
        retries = 1
        cache_secs = 30
        refusal_cache_secs = 1
        bearer_env = "PATH"
        "#
    )
}

async fn publish(url: &str) -> Result<Publisher<TcpStream>, ClientError> {
    let url = RtmpUrl::parse(url).expect("url");
    let io = TcpStream::connect(url.address()).await.expect("connect");
    Publisher::start(io, url.client_config(), &url.name).await
}

fn audio(ts: u32) -> longhaul_rtmp::RtmpMessage {
    msg(8, ts, vec![0xaf, 1, 7, 7, 7])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_allows_refuses_times_out_and_is_cached() {
    let service = Service::default();
    let url = service.start().await;
    let origin = start_origin(&callback_config(&url)).await;
    let at = |token: &str, n: u32| format!("{}/kLive/?t={token}/{ENTRY}_{n}", origin.rtmp());

    // Allowed: the service heard what the issue promises, with our bearer.
    let mut allowed = publish(&at("good", 1)).await.expect("allowed");
    allowed.send(&audio(0)).await.unwrap();
    origin.wait_live(&format!("{ENTRY}_1")).await;
    let asked = service.requests();
    assert_eq!(asked.len(), 1);
    let r = &asked[0];
    for (key, value) in [
        ("entry_id", serde_json::json!(ENTRY)),
        ("rendition", serde_json::json!(1)),
        ("leg", serde_json::json!("primary")),
        ("stream_name", serde_json::json!(format!("{ENTRY}_1"))),
        ("token", serde_json::json!("good")),
        ("transport", serde_json::json!("rtmp")),
        ("encoder_region", serde_json::json!("nyc")),
        ("edge", serde_json::Value::Null),
        ("origin", serde_json::json!("test-origin")),
    ] {
        assert_eq!(r[key], value, "{key} in {r}");
    }
    assert!(
        r["client_addr"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{r}"
    );
    assert_eq!(
        r["authorization"],
        format!("Bearer {}", std::env::var("PATH").unwrap())
    );

    // The same question again is answered from the cache.
    let again = publish(&at("good", 2)).await.expect("allowed");
    let _ = publish(&at("good", 2)).await;
    assert_eq!(
        service
            .requests()
            .iter()
            .filter(|r| r["rendition"] == 2)
            .count(),
        1,
        "the second publish of rendition 2 reused the answer"
    );
    drop(again);

    // Refused, in the service's words, which reach a real encoder.
    require_ffmpeg();
    let out = wait_child(ffmpeg_publish(&at("suspended", 3), "320x240", 2, 50)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("publish refused: entry suspended: invoice 42 is unpaid"),
        "ffmpeg said: {stderr}"
    );
    // A plain-text refusal gives its first line.
    match publish(&at("nonsense", 3)).await {
        Err(ClientError::Rejected { description, .. }) => {
            assert_eq!(description, "publish refused: unknown token")
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }

    // No answer: tried twice (300 ms each, with a pause), then refused as unavailable.
    let before = service.requests().len();
    let started = Instant::now();
    match publish(&at("slow", 4)).await {
        Err(ClientError::Rejected { description, .. }) => assert!(
            description.contains("authorisation service is unavailable"),
            "{description}"
        ),
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(service.requests().len(), before + 2, "one retry");

    let m = origin.metrics();
    for (outcome, at_least) in [
        ("allowed", 2.0),
        ("allowed_cached", 1.0),
        ("refused", 2.0),
        ("unavailable", 1.0),
    ] {
        assert!(
            metric(&m, "longhaul_auth_callbacks_total", &[("outcome", outcome)]) >= at_least,
            "{outcome}: {m}"
        );
    }
    drop(allowed);
}

/// The revoke API cuts the entry's live publishes, here and through the edge, and
/// forgets the cached answers so the next attempt asks the service again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_cuts_live_publishes_and_forgets_the_answers() {
    let service = Service::default();
    let url = service.start().await;
    let cluster = start_cluster_with(&callback_config(&url), "").await;
    let origin = &cluster.origin;

    let mut direct = publish(&format!("{}/kLive/?t=good/{ENTRY}_1", origin.rtmp()))
        .await
        .expect("allowed");
    let mut relayed = publish(&cluster.edge_publish_url("good", &format!("{ENTRY}_2")))
        .await
        .expect("allowed through the edge");
    direct.send(&audio(0)).await.unwrap();
    relayed.send(&audio(0)).await.unwrap();
    origin.wait_live(&format!("{ENTRY}_1")).await;
    origin.wait_live(&format!("{ENTRY}_2")).await;
    let through_edge = service
        .requests()
        .into_iter()
        .find(|r| r["rendition"] == 2)
        .unwrap();
    assert_eq!(through_edge["edge"], "test-edge");
    assert_eq!(through_edge["encoder_region"], "fra");
    assert_eq!(through_edge["transport"], "tunnel");

    let (status, _, body) = http(
        "POST",
        &format!("{}/api/v1/entries/{ENTRY}/revoke", origin.http()),
        "",
        None,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["edges"], 1);
    for publisher in [&mut direct, &mut relayed] {
        let deadline = Instant::now() + Duration::from_secs(5);
        let description = loop {
            assert!(Instant::now() < deadline, "the publish was not cut");
            match publisher.send(&audio(40)).await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(ClientError::Rejected { description, .. }) => break description,
                Err(e) => panic!("expected a status, got {e}"),
            }
        };
        assert!(description.contains("an operator revoked"), "{description}");
    }

    // The answer was forgotten: publishing again asks the service again.
    let asked = service.requests().len();
    let _again = publish(&format!("{}/kLive/?t=good/{ENTRY}_1", origin.rtmp()))
        .await
        .expect("allowed again");
    assert_eq!(service.requests().len(), asked + 1);

    // An id that is not an entry id is a bad request.
    let (status, _, body) = http(
        "POST",
        &format!("{}/api/v1/entries/not-an-id/revoke", origin.http()),
        "",
        None,
    )
    .await;
    assert_eq!((status, error_code(&body).as_str()), (400, "bad_entry_id"));
    cluster.stop().await;
}
