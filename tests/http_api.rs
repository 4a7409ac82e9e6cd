//! The origin's HTTP port: health, metrics, the entries API and its errors.

mod support;

use longhaul_endpoint::{resolve_rtsp_publish, Leg};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    let origin = start_origin("").await;
    let (status, ctype, body) = http("GET", &format!("{}/healthz", origin.http()), "", None).await;
    assert_eq!((status, ctype.as_str()), (200, "application/json"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["role"], "origin");

    let (status, ctype, body) = http("GET", &format!("{}/metrics", origin.http()), "", None).await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("longhaul_http_requests_total"), "{text}");
    assert!(text.contains("route=\"healthz\""), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_lifecycle_and_errors() {
    let origin = start_origin("").await;
    let api = format!("{}/api/v1", origin.http());

    let (status, _, body) = http(
        "POST",
        &format!("{api}/entries"),
        r#"{"name":"town hall"}"#,
        None,
    )
    .await;
    assert_eq!(status, 201);
    let entry: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let id = entry["id"].as_str().unwrap().to_string();
    assert_eq!(entry["name"], "town hall");
    let names = entry["endpoints"]["stream_names"].as_array().unwrap();
    assert_eq!(names.len(), 3);
    assert_eq!(names[0], format!("{id}_1"));

    let (status, _, body) = http("GET", &format!("{api}/entries"), "", None).await;
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list["entries"].as_array().unwrap().len(), 1);

    let (status, ctype, body) =
        http("GET", &format!("{api}/entries/{id}/fmle.xml"), "", None).await;
    assert_eq!((status, ctype.as_str()), (200, "application/xml"));
    let xml = String::from_utf8_lossy(&body);
    assert!(
        xml.contains("<flashmedialiveencoder_profile>") && xml.contains(&format!("{id}_%i")),
        "{xml}"
    );

    let (status, _, body) = http(
        "POST",
        &format!("{api}/entries/{id}/regenerate-token"),
        "",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let regenerated: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_ne!(regenerated["token"], entry["token"]);
    assert_eq!(
        regenerated["token_generation"].as_u64(),
        Some(entry["token_generation"].as_u64().unwrap() + 1)
    );

    // Errors: JSON bodies with a code and a message.
    let (status, _, body) = http("POST", &format!("{api}/entries"), "{not json", None).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "bad_json"));
    let (status, _, body) = http("POST", &format!("{api}/entries"), r#"{"name": 5}"#, None).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "bad_request"));
    let (status, _, body) = http("GET", &format!("{api}/entries/1_nothere"), "", None).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (404, "entry_not_found")
    );
    let (status, _, body) = http("GET", &format!("{api}/nothing"), "", None).await;
    assert_eq!((status, error_code(&body).as_str()), (404, "not_found"));
    let (status, _, body) = http(
        "GET",
        &format!("{}/live/{id}_1.flv", origin.http()),
        "",
        None,
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (404, "stream_not_live")
    );
    let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(100_000));
    let (status, _, body) = http("POST", &format!("{api}/entries"), &big, None).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (413, "body_too_large")
    );
    let (status, _, body) = http_typed(
        "POST",
        &format!("{api}/entries"),
        "text/plain",
        r#"{"name":"x"}"#,
    )
    .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (415, "unsupported_media_type")
    );
    let (status, _, body) = http("POST", &format!("{api}/entries"), r#"{"nmae":"x"}"#, None).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "bad_request"));
    assert!(String::from_utf8_lossy(&body).contains("nmae"));

    // Rename, and a regeneration that insists on a generation no longer current.
    let (status, _, body) = http(
        "PATCH",
        &format!("{api}/entries/{id}"),
        r#"{"name":"renamed"}"#,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let renamed: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(renamed["name"], "renamed");
    let (status, _, body) = http(
        "POST",
        &format!("{api}/entries/{id}/regenerate-token"),
        r#"{"generation":1}"#,
        None,
    )
    .await;
    assert_eq!((status, error_code(&body).as_str()), (409, "conflict"));
    let (status, _, body) = http("PATCH", &format!("{api}/entries/{id}"), "", None).await;
    assert_eq!((status, error_code(&body).as_str()), (400, "bad_request"));
    let (status, _, body) = http("PUT", &format!("{api}/entries/{id}"), "", None).await;
    assert_eq!(status, 405, "{}", String::from_utf8_lossy(&body));

    let (status, _, _) = http("DELETE", &format!("{api}/entries/{id}"), "", None).await;
    assert_eq!(status, 204);
    let (status, _, body) = http("DELETE", &format!("{api}/entries/{id}"), "", None).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (404, "entry_not_found")
    );

    let m = origin.metrics();
    assert!(
        metric(
            &m,
            "longhaul_http_requests_total",
            &[("route", "api"), ("status", "404")]
        ) >= 3.0,
        "{m}"
    );
}

/// An entry lists the configured endpoints: the data centres' legs on leg subdomains,
/// over RTMP and, one pair per rendition, RTSP; every region's legs under its own name
/// (no RTSP: none configured), the speed tests; every RTSP URL resolves back to its
/// entry, rendition, leg and token; a regenerated token reaches every URL, and the FMLE
/// export keeps the data centres' pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_lists_the_data_centres_and_regional_endpoints() {
    let origin = start_origin(PRODUCTION_ENDPOINTS).await;
    let api = format!("{}/api/v1", origin.http());
    let (status, _, body) = http("POST", &format!("{api}/entries"), "{}", None).await;
    assert_eq!(status, 201);
    let entry: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let (id, token) = (
        entry["id"].as_str().unwrap(),
        entry["token"].as_str().unwrap(),
    );
    let ep = &entry["endpoints"];
    assert_eq!(
        ep["primary_rtmp"],
        format!("rtmp://{id}.p.kpublish.example.com:1935/kLive/?t={token}")
    );
    assert_eq!(
        ep["backup_rtmps"],
        format!("rtmps://{id}.b.kpublish.example.com:443/kLive/?t={token}")
    );
    let regions = ep["regions"].as_array().unwrap();
    let codes: Vec<&str> = regions
        .iter()
        .map(|r| r["region"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["fra", "gru", "sin"]);
    for r in regions {
        let code = r["region"].as_str().unwrap();
        for (field, scheme, leg, port) in [
            ("primary_rtmp", "rtmp", "p", 1935),
            ("backup_rtmp", "rtmp", "b", 1935),
            ("primary_rtmps", "rtmps", "p", 443),
            ("backup_rtmps", "rtmps", "b", 443),
        ] {
            assert_eq!(
                r[field],
                format!(
                    "{scheme}://{id}.{leg}.{code}.kpublish.example.com:{port}/kLive/?t={token}"
                ),
                "{r}"
            );
        }
    }
    assert_eq!(regions[0]["name"], "EMEA (Frankfurt)");
    assert_eq!(
        regions[0]["speed_test"],
        "http://fr-publish-speedtest.example.com"
    );
    assert!(regions[2].get("speed_test").is_none(), "{}", regions[2]);
    assert!(
        regions.iter().all(|r| r.get("rtsp").is_none()),
        "no RTSP configured for a region, none listed: {ep}"
    );

    // RTSP: a pair of URLs per rendition, the stream in the path, `.s.` after the leg.
    let rtsp = ep["rtsp"].as_array().expect("rtsp listed");
    assert_eq!(rtsp.len(), 3, "{ep}");
    for (n, rendition) in (1..).zip(rtsp) {
        let name = format!("{id}_{n}");
        assert_eq!(rendition["stream_name"], name.as_str());
        for (field, scheme, leg, port) in [
            ("primary_rtsp", "rtsp", Leg::Primary, 554),
            ("backup_rtsp", "rtsp", Leg::Backup, 554),
            ("primary_rtsps", "rtsps", Leg::Primary, 322),
            ("backup_rtsps", "rtsps", Leg::Backup, 322),
        ] {
            let url = rendition[field].as_str().expect(field);
            assert_eq!(
                url,
                format!(
                    "{scheme}://{id}.{}.s.kpublish.example.com:{port}/kLive/{name}?t={token}",
                    leg.label()
                )
            );
            // The origin's own rule for an RTSP publish's URL takes it back.
            let target = resolve_rtsp_publish(url, leg.other()).expect(url);
            assert_eq!(
                (
                    target.entry_id.as_str(),
                    target.rendition,
                    target.leg,
                    target.token.as_deref()
                ),
                (id, n, leg, Some(token)),
                "{url}"
            );
        }
    }
    assert_eq!(ep["speed_tests"][0]["name"], "US (New York)");
    assert_eq!(
        ep["speed_tests"][1]["url"],
        "http://pa-publish-speedtest.example.com"
    );

    // A new token is in every URL at once.
    let (status, _, body) = http(
        "POST",
        &format!("{api}/entries/{id}/regenerate-token"),
        "",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let regenerated: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let new_token = regenerated["token"].as_str().unwrap();
    assert_eq!(
        regenerated["endpoints"]["regions"][1]["backup_rtmp"],
        format!("rtmp://{id}.b.gru.kpublish.example.com:1935/kLive/?t={new_token}")
    );
    assert_eq!(
        regenerated["endpoints"]["rtsp"][2]["backup_rtsps"],
        format!("rtsps://{id}.b.s.kpublish.example.com:322/kLive/{id}_3?t={new_token}")
    );

    let (status, _, body) = http("GET", &format!("{api}/entries/{id}/fmle.xml"), "", None).await;
    assert_eq!(status, 200);
    let xml = String::from_utf8_lossy(&body);
    assert!(
        xml.contains(&format!(
            "<url>rtmp://{id}.p.kpublish.example.com:1935/kLive/?t={new_token}</url>"
        )) && xml.contains(&format!(
            "<backup_url>rtmp://{id}.b.kpublish.example.com:1935/kLive/?t={new_token}</backup_url>"
        )),
        "{xml}"
    );
}

/// With `http.api_token` set, the API needs it; a wrong one counts against the
/// address in the node's abuse guard, which slows and then refuses an address that
/// keeps guessing (429 with `retry-after`), the right token included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_token_is_required_when_set() {
    let origin = start_origin(
        "[http]\napi_token = \"s3cret-api-token\"\n\
         [abuse]\nslow_after = 2\nban_after = 3\nmax_delay_ms = 10\n",
    )
    .await;
    let url = format!("{}/api/v1/entries", origin.http());
    let (status, _, body) = http("GET", &url, "", None).await;
    assert_eq!((status, error_code(&body).as_str()), (401, "unauthorized"));
    let (status, _, _) = http("GET", &url, "", Some("s3cret-api-token")).await;
    assert_eq!(status, 200);
    // Health and metrics stay open to monitoring.
    let (status, _, _) = http("GET", &format!("{}/healthz", origin.http()), "", None).await;
    assert_eq!(status, 200);
    let refusals = |reason: &str| {
        metric(
            &origin.metrics(),
            "longhaul_api_refusals_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(refusals("no_key"), 1.0);
    assert_eq!(
        refusals("wrong_key"),
        0.0,
        "the series is there before a guess"
    );

    // Guesses: three wrong tokens (one a prefix of the right one) ban the address.
    for guess in ["wrong", "s3cret", "s3cret-api-token-"] {
        let (status, _, body) = http("GET", &url, "", Some(guess)).await;
        assert_eq!((status, error_code(&body).as_str()), (401, "unauthorized"));
    }
    let (status, _, body) = http("GET", &url, "", Some("s3cret-api-token")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (429, "too_many_failures"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let head = response_head(&origin.http(), "/api/v1/entries", "s3cret-api-token").await;
    assert!(head.starts_with("HTTP/1.1 429"), "{head}");
    let retry_after: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .unwrap_or_else(|| panic!("no retry-after: {head}"))
        .trim()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{head}");
    assert_eq!(refusals("wrong_key"), 3.0);
    assert_eq!(refusals("too_many_failures"), 2.0);
}

/// The status line and headers of a GET with a bearer token, as sent.
async fn response_head(base: &str, path: &str, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    text.split("\r\n\r\n").next().unwrap_or("").to_owned()
}

/// A client that sends headers and then trickles (here: stops sending) its body is
/// answered 408, in JSON, after the body timeout, and the connection is not held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_comes_is_a_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = start_origin("").await;
    let mut socket = tokio::net::TcpStream::connect(origin.origin.http_addr)
        .await
        .unwrap();
    socket
        .write_all(
            b"POST /api/v1/entries HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"name\"",
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        longhaul_origin::api::BODY_TIMEOUT + std::time::Duration::from_secs(5),
        socket.read_to_end(&mut answer),
    )
    .await;
    assert!(read.is_ok(), "no answer in time");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"request_timeout\""), "{text}");
    assert!(
        started.elapsed()
            >= longhaul_origin::api::BODY_TIMEOUT - std::time::Duration::from_millis(500)
    );
}
