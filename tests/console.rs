//! The web console (`/console/`).
//!
//! - In a browser: Debian's headless Chromium, driven by `tests/browser/console.mjs`
//!   (playwright-core), against `longhaul dev`. It creates an entry, copies its primary
//!   URL from the page (the clipboard, as an operator would), and a real ffmpeg
//!   publishes to that URL (and the backup URL, at the other origin); the rendition
//!   shows up live on the entry page, with its backup leg named at the other origin; the token is
//!   regenerated through the confirmation, the live encoder is cut and the page copies
//!   the new URL; the FMLE profile is downloaded and parsed; the cluster page shows the
//!   edges' tunnels. Screenshots of each page go to `target/console-screenshots/` (to
//!   `docs/console/`, which the README links, with `LONGHAUL_UPDATE_SCREENSHOTS=1`).
//! - Access: without credentials the console refuses (a sign-in with the API key when
//!   one is set; loopback only without one), a form without its CSRF token is refused,
//!   and no page shows a token unless asked.

mod support;

use hyper::header::HeaderMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// `longhaul dev`'s ports moved by this much (other tests use 10000, 15000, 20000).
const PORT_OFFSET: u16 = 25_000;

/// One request with headers in and out.
async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    form: Option<&str>,
) -> (u16, HeaderMap, String) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    if form.is_some() {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    let req = req
        .body(Full::new(bytes::Bytes::from(
            form.unwrap_or_default().to_string(),
        )))
        .unwrap();
    let resp = client.request(req).await.expect("origin reachable");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// The session cookie (`name=value`) a response sets.
fn session_cookie(headers: &HeaderMap) -> Option<(String, String)> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("longhaul_console="))
        .map(|c| {
            let pair = c.split(';').next().unwrap().to_string();
            (pair, c.to_string())
        })
}

/// The CSRF token of the first form on a page.
fn csrf_of(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_asks_for_the_key_and_each_forms_csrf_token() {
    let key = "console-test-api-key";
    let origin = start_origin(&format!("[http]\napi_token = \"{key}\"\n")).await;
    let base = origin.http();

    // No session: pages send the browser to sign in, the rest is 401.
    let (status, headers, _) = request("GET", &format!("{base}/console/entries"), &[], None).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/console/sign-in");
    let (status, _, body) =
        request("GET", &format!("{base}/console/cluster/live"), &[], None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _, body) = request(
        "POST",
        &format!("{base}/console/entries"),
        &[],
        Some("name=x&csrf=x"),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    // A cookie that is no session is no better.
    let (status, _, _) = request(
        "GET",
        &format!("{base}/console/entries"),
        &[("cookie", "longhaul_console=0123")],
        None,
    )
    .await;
    assert_eq!(status, 303);

    // A wrong key is refused, and counted.
    let (status, headers, body) = request(
        "POST",
        &format!("{base}/console/sign-in"),
        &[],
        Some("key=not-the-key"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        body.contains("That is not this origin&#39;s API key")
            || body.contains("That is not this origin's API key"),
        "{body}"
    );
    assert!(session_cookie(&headers).is_none());
    assert_eq!(
        metric(
            &origin.metrics(),
            "longhaul_console_refusals_total",
            &[("reason", "wrong_key")]
        ),
        1.0
    );

    // The key gives a session: an HttpOnly, SameSite=Strict cookie, Secure over HTTPS.
    let (status, headers, _) = request(
        "POST",
        &format!("{base}/console/sign-in"),
        &[("x-forwarded-proto", "https")],
        Some(&format!("key={key}")),
    )
    .await;
    assert_eq!(status, 303);
    let (cookie, set_cookie) = session_cookie(&headers).expect("a session cookie");
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"));
    assert!(set_cookie.contains("Secure"), "{set_cookie}");
    let (_, plain, _) = request(
        "POST",
        &format!("{base}/console/sign-in"),
        &[],
        Some(&format!("key={key}")),
    )
    .await;
    assert!(!session_cookie(&plain).unwrap().1.contains("Secure"));

    let with_cookie = [("cookie", cookie.as_str())];
    let (status, headers, page) = request(
        "GET",
        &format!("{base}/console/entries"),
        &with_cookie,
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert!(headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert_eq!(headers["cache-control"], "no-store");
    let csrf = csrf_of(&page);

    // A form without its CSRF token (or with another) is refused, and nothing changes.
    for form in ["name=no-token", "name=wrong-token&csrf=0123456789"] {
        let (status, _, body) = request(
            "POST",
            &format!("{base}/console/entries"),
            &with_cookie,
            Some(form),
        )
        .await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("security token"), "{body}");
    }
    let registry = origin.origin.state.registry.clone().unwrap();
    assert!(registry.list().is_empty());
    assert_eq!(
        metric(
            &origin.metrics(),
            "longhaul_console_refusals_total",
            &[("reason", "csrf")]
        ),
        2.0
    );

    // With it, the entry is made.
    let (status, headers, _) = request(
        "POST",
        &format!("{base}/console/entries"),
        &with_cookie,
        Some(&format!("name=Made+here&csrf={csrf}")),
    )
    .await;
    assert_eq!(status, 303);
    let entry = registry.list().pop().expect("the entry was made");
    assert_eq!(entry.name, "Made here");
    assert_eq!(
        headers["location"],
        format!("/console/entries/{}?done=created", entry.id)
    );

    // No page shows the token unless asked; asked, the entry page does.
    let entry_url = format!("{base}/console/entries/{}", entry.id);
    for url in [
        entry_url.clone(),
        format!("{entry_url}/live"),
        format!("{entry_url}/regenerate"),
        format!("{entry_url}/delete"),
        format!("{base}/console/entries"),
        format!("{base}/console/cluster"),
    ] {
        let (status, _, page) = request("GET", &url, &with_cookie, None).await;
        assert_eq!(status, 200, "{url}: {page}");
        assert!(!page.contains(&entry.token), "{url} shows the token");
    }
    let (_, _, page) = request("GET", &format!("{entry_url}?reveal=1"), &with_cookie, None).await;
    assert!(page.contains(&format!("?t={}", entry.token)));

    // Regenerating and deleting need the token too.
    let (status, _, _) = request(
        "POST",
        &format!("{entry_url}/regenerate"),
        &with_cookie,
        Some("generation=1"),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = request(
        "POST",
        &format!("{entry_url}/delete"),
        &with_cookie,
        Some(""),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(registry.get(&entry.id).unwrap().token, entry.token);

    // Signing out ends the session.
    let (status, _, _) = request(
        "POST",
        &format!("{base}/console/sign-out"),
        &with_cookie,
        Some(&format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(status, 303);
    let (status, _, _) = request(
        "GET",
        &format!("{base}/console/entries"),
        &with_cookie,
        None,
    )
    .await;
    assert_eq!(status, 303);
}

/// This machine's address on its default route (no packet is sent: a UDP socket's
/// connect only picks the route), to reach a node from off loopback.
fn outside_address() -> IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .connect("192.0.2.1:9")
        .expect("a default route, to reach the node from an address that is not loopback");
    let ip = socket.local_addr().unwrap().ip();
    assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
    ip
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_the_console_serves_loopback_only() {
    let origin = start_origin("[http]\nlisten = \"0.0.0.0:0\"\n").await;
    let port = origin.origin.http_addr.port();
    let outside = SocketAddr::new(outside_address(), port);
    let (status, _, body) = request(
        "GET",
        &format!("http://{outside}/console/entries"),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("only loopback clients"), "{body}");
    let (status, _, _) = request(
        "POST",
        &format!("http://{outside}/console/entries"),
        &[],
        Some("name=x"),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(
        metric(
            &origin.metrics(),
            "longhaul_console_refusals_total",
            &[("reason", "not_loopback")]
        ),
        2.0
    );
    assert!(origin
        .origin
        .state
        .registry
        .as_ref()
        .unwrap()
        .list()
        .is_empty());

    // Loopback is served, with a session made on the spot; its forms still need the
    // CSRF token.
    let local = format!("http://127.0.0.1:{port}");
    let (status, headers, page) =
        request("GET", &format!("{local}/console/entries"), &[], None).await;
    assert_eq!(status, 200);
    let (cookie, set_cookie) = session_cookie(&headers).expect("a loopback session");
    assert!(
        set_cookie.contains("HttpOnly")
            && set_cookie.contains("SameSite=Strict")
            && !set_cookie.contains("Secure"),
        "{set_cookie}"
    );

    // Loopback by address only is not enough: a page of another site whose name points
    // at 127.0.0.1 (DNS rebinding) sends its own Host, and a local proxy forwards.
    for headers in [
        &[("host", "evil.example:8081")][..],
        &[("x-forwarded-for", "203.0.113.7")][..],
        &[("forwarded", "for=203.0.113.7")][..],
    ] {
        let (status, _, _) =
            request("GET", &format!("{local}/console/entries"), headers, None).await;
        assert_eq!(status, 403, "{headers:?}");
        let (status, _, _) =
            request("GET", &format!("{local}/api/v1/entries"), headers, None).await;
        assert_eq!(status, 403, "the API: {headers:?}");
    }
    let (status, _, _) = request(
        "GET",
        &format!("{local}/console/entries"),
        &[("host", "localhost")],
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = request(
        "POST",
        &format!("{local}/console/entries"),
        &[("cookie", cookie.as_str())],
        Some("name=x"),
    )
    .await;
    assert_eq!(status, 403);
    // A form sent from another site is refused, its token notwithstanding.
    let (status, _, _) = request(
        "POST",
        &format!("{local}/console/entries"),
        &[
            ("cookie", cookie.as_str()),
            ("sec-fetch-site", "cross-site"),
        ],
        Some(&format!("name=x&csrf={}", csrf_of(&page))),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _, _) = request(
        "POST",
        &format!("{local}/console/entries"),
        &[
            ("cookie", cookie.as_str()),
            ("origin", "http://evil.example"),
        ],
        Some(&format!("name=x&csrf={}", csrf_of(&page))),
    )
    .await;
    assert_eq!(status, 403);
    assert!(origin
        .origin
        .state
        .registry
        .as_ref()
        .unwrap()
        .list()
        .is_empty());
    let (status, _, _) = request(
        "POST",
        &format!("{local}/console/entries"),
        &[
            ("cookie", cookie.as_str()),
            ("sec-fetch-site", "same-origin"),
            ("origin", &local),
        ],
        Some(&format!("name=x&csrf={}", csrf_of(&page))),
    )
    .await;
    assert_eq!(status, 303);
}

/// What the console cannot read or has not gets its own page, with a fitting status,
/// and is counted; what needs a session refuses without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_consoles_pages_and_guesses_are_cut_off() {
    let key = "console-test-api-key";
    let origin = start_origin(&format!(
        "[http]\napi_token = \"{key}\"\n[abuse]\nslow_after = 2\nban_after = 3\nmax_delay_ms = 10\n"
    ))
    .await;
    let base = origin.http();
    let entry = origin.create_entry().await;
    for url in [
        format!("{base}/console/entries/{}/endpoints.json", entry.id),
        format!("{base}/console/entries/{}/live", entry.id),
    ] {
        let (status, _, body) = request("GET", &url, &[], None).await;
        assert_eq!(status, 401, "{url}: {body}");
        assert!(!body.contains(&entry.token));
    }
    let (status, headers, _) = request(
        "GET",
        &format!("{base}/console/entries/{}/fmle.xml", entry.id),
        &[],
        None,
    )
    .await;
    assert_eq!(
        (status, &headers["location"]),
        (303, &"/console/sign-in".parse().unwrap())
    );

    let (_, headers, _) = request(
        "POST",
        &format!("{base}/console/sign-in"),
        &[],
        Some(&format!("key={key}")),
    )
    .await;
    let (cookie, _) = session_cookie(&headers).unwrap();
    let with_cookie = [("cookie", cookie.as_str())];
    let (status, headers, body) = request(
        "GET",
        &format!("{base}/console/entries/{}/endpoints.json", entry.id),
        &with_cookie,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["cache-control"], "no-store");
    assert!(
        body.contains(&entry.token),
        "the copy buttons' source has the token"
    );

    for (url, status) in [
        (format!("{base}/console/entries/%FF%FE"), 400),
        (format!("{base}/console/entries/1_nosuch00"), 404),
        (format!("{base}/console/entries?q=a&q=b"), 400),
        (format!("{base}/console/no-such-page"), 404),
    ] {
        let (got, headers, body) = request("GET", &url, &with_cookie, None).await;
        assert_eq!(got, status, "{url}: {body}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{url}: the console's page, not the API's JSON"
        );
        assert!(body.contains("<h1>"), "{body}");
    }
    let big = format!("name={}", "x".repeat(100_000));
    let (status, _, body) = request(
        "POST",
        &format!("{base}/console/entries"),
        &with_cookie,
        Some(&big),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    let m = origin.metrics();
    assert_eq!(
        metric(
            &m,
            "longhaul_console_refusals_total",
            &[("reason", "bad_request")]
        ),
        3.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "longhaul_console_refusals_total",
            &[("reason", "not_found")]
        ),
        2.0
    );

    // Wrong keys from one address are slowed, then refused for a while (the node's
    // abuse guard), the right key included.
    for _ in 0..3 {
        let (status, _, _) = request(
            "POST",
            &format!("{base}/console/sign-in"),
            &[],
            Some("key=guess"),
        )
        .await;
        assert_eq!(status, 401);
    }
    let (status, headers, body) = request(
        "POST",
        &format!("{base}/console/sign-in"),
        &[],
        Some(&format!("key={key}")),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert!(session_cookie(&headers).is_none());
}

/// Kills `longhaul dev` (and ffmpeg) when the test ends, however it ends.
struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(serde::Deserialize, Debug)]
struct Step {
    step: String,
    #[serde(flatten)]
    fields: serde_json::Map<String, serde_json::Value>,
}

impl Step {
    fn text(&self, field: &str) -> String {
        self.fields[field].as_str().unwrap_or_default().to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_publishes_regenerates_and_exports_from_the_console() {
    require_ffmpeg();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: install Debian's chromium (.ci/run does)"
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shots = if std::env::var_os("LONGHAUL_UPDATE_SCREENSHOTS").is_some() {
        root.join("docs/console")
    } else {
        root.join("target/console-screenshots")
    };
    std::fs::create_dir_all(&shots).unwrap();
    let data = tempfile::tempdir().unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let dev = Command::new(env!("CARGO_BIN_EXE_longhaul"))
        .args([
            "dev",
            "--port-offset",
            &PORT_OFFSET.to_string(),
            "--data-dir",
        ])
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _dev = KillOnDrop(dev);
    let base = format!("http://127.0.0.1:{}", 8081 + PORT_OFFSET);
    let api = format!("{base}/api/v1");
    // Up, with its edges' tunnels connected.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = tokio::time::timeout(Duration::from_secs(2), async {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<http_body_util::Empty<bytes::Bytes>>();
            client
                .get(format!("{base}/metrics").parse().unwrap())
                .await
                .ok()
        })
        .await
        .ok()
        .flatten();
        if let Some(resp) = up {
            use http_body_util::BodyExt;
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8_lossy(&body);
            let connected = text
                .lines()
                .filter(|l| {
                    l.starts_with("longhaul_tunnel_state{")
                        && l.contains("state=\"connected\"")
                        && l.ends_with(" 1")
                })
                .count();
            // Three edges and the peer origin.
            if connected >= 4 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "longhaul dev never came up with its edges"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let mut browser = Command::new("node")
        .arg(root.join("tests/browser/console.mjs"))
        .arg(&base)
        .arg(&shots)
        .arg(downloads.path())
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node (Debian's nodejs) runs tests/browser/console.mjs");
    let mut to_browser = browser.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Step>();
    let stdout = browser.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            match serde_json::from_str::<Step>(&line) {
                Ok(step) => {
                    let _ = tx.send(step);
                }
                Err(_) => eprintln!("browser: {line}"),
            }
        }
    });
    let _browser = KillOnDrop(browser);
    let next = |expected: &str| -> Step {
        let step = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the browser never reached \"{expected}\""));
        assert_eq!(step.step, expected, "{step:?}");
        step
    };

    let created = next("created");
    let id = created.text("id");
    assert!(created.text("notice").contains("Entry created"));
    let (_, _, body) = http("GET", &format!("{api}/entries/{id}"), "", None).await;
    let entry: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(entry["name"], "Console check");
    let old_token = entry["token"].as_str().unwrap().to_string();
    let old_primary = entry["endpoints"]["primary_rtmp"]
        .as_str()
        .unwrap()
        .to_string();

    let copied = next("copied");
    assert_eq!(
        copied.text("url"),
        old_primary,
        "the clipboard has the primary URL"
    );
    assert!(
        !copied.text("shown").contains(&old_token),
        "the page masks the token"
    );
    // One ffmpeg publishes to what was copied (the URL, then the stream name) and to
    // the backup URL (at the other origin), as the product asks of an encoder.
    let backup = entry["endpoints"]["backup_rtmp"].as_str().unwrap();
    let encoder = ffmpeg_tee(
        [
            &format!("{}/{id}_1", copied.text("url")),
            &format!("{backup}/{id}_1"),
        ],
        60,
    );
    let _encoder = KillOnDrop(encoder);
    writeln!(to_browser, "published").unwrap();

    let live = next("live");
    let row = live.text("row");
    assert!(
        row.contains(&format!("{id}_1")) && row.contains("on air"),
        "{row}"
    );
    // The backup leg, at the other origin, is named there.
    assert_eq!(
        live.text("elsewhere"),
        format!("{id}_1 at pao-dev (pao)"),
        "{live:?}"
    );
    assert!(row.contains("kbit/s") || row.contains("Mbit/s"), "{row}");

    let regenerated = next("regenerated");
    assert!(
        regenerated.text("warning").contains("refused from now on")
            && regenerated.text("warning").contains("cut at once"),
        "{regenerated:?}"
    );
    assert!(regenerated.text("notice").contains("Token regenerated"));
    let (_, _, body) = http("GET", &format!("{api}/entries/{id}"), "", None).await;
    let entry: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(entry["token_generation"], 2);
    let new_primary = entry["endpoints"]["primary_rtmp"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_primary, old_primary);

    // The live encoder was cut: ffmpeg ends long before its 60 s.
    next("cut shown");
    let mut encoder = _encoder;
    let cut_by = Instant::now() + Duration::from_secs(10);
    loop {
        if encoder.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < cut_by, "the live encoder was not cut");
        std::thread::sleep(Duration::from_millis(100));
    }

    let again = next("copied again");
    assert_eq!(
        again.text("url"),
        new_primary,
        "the page copies the new URL"
    );
    assert_eq!(
        again.text("revealed"),
        new_primary,
        "and shows it when asked"
    );

    let fmle = next("fmle");
    let xml = std::fs::read_to_string(fmle.text("path")).unwrap();
    let doc = roxmltree::Document::parse(&xml).expect("the FMLE profile is XML");
    assert_eq!(
        doc.root_element().tag_name().name(),
        "flashmedialiveencoder_profile"
    );
    let text_of = |tag: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name(tag))
            .and_then(|n| n.text())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(text_of("url"), new_primary);
    assert_eq!(
        text_of("backup_url"),
        entry["endpoints"]["backup_rtmp"].as_str().unwrap()
    );
    assert!(text_of("stream").starts_with(&format!("{id}_")), "{xml}");

    let cluster = next("cluster");
    assert_eq!(cluster.fields["edges"], 3, "{cluster:?}");
    assert_eq!(cluster.fields["peers"], 1, "{cluster:?}");
    assert!(
        cluster.text("peerReport").starts_with("healthy, "),
        "the peer origin's report: {cluster:?}"
    );

    let phone = next("phone");
    assert_eq!(
        phone.fields["overflow"], false,
        "the entry page scrolls sideways on a phone"
    );
    // On a phone the cluster page's tables are laid out as blocks, and must still be
    // tables, rows, headers and cells to a screen reader: Chromium's accessibility
    // tree says what one gets there, and every part says its role for browsers that
    // guess a table's semantics from its layout (WebKit is reported to drop them).
    assert_eq!(phone.fields["display"], "block", "{phone:?}");
    assert_eq!(phone.fields["unroled"], 0, "{phone:?}");
    let tables = phone.fields["tables"].as_u64().unwrap();
    let role = |r: &str| phone.fields["roles"][r].as_u64().unwrap_or(0);
    assert!(tables >= 3, "{phone:?}");
    assert!(role("table") >= tables, "{phone:?}");
    assert!(role("row") > tables, "{phone:?}");
    assert!(role("columnheader") >= 3 * tables, "{phone:?}");
    assert!(role("cell") >= 3 * tables, "{phone:?}");
    for shot in [
        "entries",
        "entry",
        "regenerate",
        "delete",
        "cluster",
        "entry-phone",
    ] {
        let path = shots.join(format!("{shot}.png"));
        assert!(
            std::fs::metadata(&path).is_ok_and(|m| m.len() > 1000),
            "no screenshot at {}",
            path.display()
        );
    }
}
