//! A node behind an L4 load balancer (`ingest.proxy_protocol`): a real `longhaul origin`
//! process, a balancer in front of it that sends real PROXY headers (v1, and v2 with
//! TLVs; written byte by byte from the spec in `support::balancer`), and real ffmpeg
//! publishing through it over RTMP and RTMPS. Every connection comes from 127.0.0.1; only
//! the headers tell the clients apart, so each check below passes only if the node took
//! the client's address from the header: the publisher address in the streams API, the
//! log lines, the per-address connection cap, and the publish abuse guard.
//!
//! On the code before the PROXY protocol these fail: the node refuses its config
//! (`proxy_protocol` is an unknown key), and without the key it would read the header as
//! a broken RTMP handshake.

mod support;

use longhaul_rtmp::connection::{ClientError, Publisher, RtmpUrl};
use std::net::SocketAddr;
use std::time::Duration;
use support::balancer::{Balancer, Header};
use support::processes::*;
use support::{ffmpeg_publish, http, metric, wait_child};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// An origin with RTMP and RTMPS that expects PROXY headers from 127.0.0.1 only, and at
/// most two connections per client address.
fn origin_behind_balancer(cluster: &Cluster, extra: &str) -> Node {
    let config = format!(
        r#"
        [registry]
        path = {db:?}
        [rtmps]
        listen = "127.0.0.1:0"
        cert = {cert:?}
        key = {key:?}
        [ingest]
        proxy_protocol = true
        proxy_trusted = ["127.0.0.1/32"]
        max_connections_per_address = 2
        {extra}
        "#,
        db = cluster.path("registry.db"),
        cert = cluster.path("cert.pem"),
        key = cluster.path("key.pem"),
    );
    cluster.origin_with(&NYC, None, &config)
}

async fn create_entry(node: &Node) -> (String, String) {
    let url = format!("http://{}/api/v1/entries", node.addr("http"));
    let (status, _, body) = http("POST", &url, r#"{"name":"proxied"}"#, None).await;
    assert_eq!(status, 201);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

fn client(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Publishes with the repo's RTMP client through `balancer`; the server's refusal, if any.
async fn publish_via(balancer: &Balancer, path: &str) -> Result<(), String> {
    let url = RtmpUrl::parse(&balancer.url("rtmp", path)).unwrap();
    let io = TcpStream::connect(url.address()).await.unwrap();
    match Publisher::start(io, url.client_config(), &url.name).await {
        Ok(publisher) => publisher.finish().await.map_err(|e| e.to_string()),
        Err(ClientError::Rejected { description, .. }) => Err(description),
        Err(e) => Err(e.to_string()),
    }
}

/// ffmpeg through a v1 balancer (RTMP) and a v2 one with TLVs (RTMPS, the header before
/// the TLS handshake): the origin sees each encoder at the address its header names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_behind_a_balancer_is_seen_at_the_address_the_header_names() {
    let cluster = Cluster::new();
    let origin = origin_behind_balancer(&cluster, "");
    let (id, token) = create_entry(&origin).await;
    let v1 = Balancer::start(origin.addr("rtmp"), Header::V1, client("203.0.113.7:50001")).await;
    let v2 = Balancer::start(
        origin.addr("rtmps"),
        Header::V2WithTlvs,
        client("198.51.100.9:50002"),
    )
    .await;
    let rtmp = ffmpeg_publish(
        &v1.url("rtmp", &format!("kLive/?t={token}/{id}_1")),
        "320x240",
        4,
        50,
    );
    let rtmps = ffmpeg_publish(
        &v2.url("rtmps", &format!("kLive/?t={token}/{id}_2")),
        "320x240",
        4,
        50,
    );
    let first = wait_live(&origin, &format!("{id}_1")).await;
    let second = wait_live(&origin, &format!("{id}_2")).await;
    assert_eq!(first["publisher"], "203.0.113.7:50001", "{first}");
    assert_eq!(second["publisher"], "198.51.100.9:50002", "{second}");
    for encoder in [rtmp, rtmps] {
        let out = wait_child(encoder).await;
        assert!(
            out.status.success(),
            "ffmpeg: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let m = metrics_of(&origin).await;
    assert_eq!(
        metric(&m, "longhaul_connections_total", &[("transport", "rtmps")]),
        1.0
    );
    let logs = origin.logs();
    for addr in ["203.0.113.7", "198.51.100.9"] {
        assert!(
            logs.lines()
                .any(|l| l.contains("publish accepted") && l.contains(addr)),
            "no publish logged from {addr}:\n{logs}"
        );
    }
}

/// With the PROXY protocol on, a socket from outside `proxy_trusted` is closed at once,
/// and a trusted one that sends no header (ffmpeg straight at the node) too; each is
/// counted and logged with its address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_sockets_and_missing_headers_are_refused() {
    let cluster = Cluster::new();
    let origin = origin_behind_balancer(&cluster, "");
    let (id, token) = create_entry(&origin).await;
    // From 127.0.0.2: a local address, but not the trusted one.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(client("127.0.0.2:0")).unwrap();
    let mut stranger = socket.connect(origin.addr("rtmp")).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stranger.read_to_end(&mut rest))
        .await
        .expect("closed at once");
    assert!(read.map_or(true, |n| n == 0), "the stranger got nothing");
    // ffmpeg straight at the node, from the trusted address, with no header.
    let direct = format!("rtmp://{}/kLive/?t={token}/{id}_1", origin.addr("rtmp"));
    let out = wait_child(ffmpeg_publish(&direct, "320x240", 2, 50)).await;
    assert!(!out.status.success(), "no header, no publish");
    let m = until_metrics(&origin, "both refusals", |m| {
        metric(
            m,
            "longhaul_connections_refused_total",
            &[("reason", "proxy_header")],
        ) >= 1.0
    })
    .await;
    let refused = |reason: &str| {
        present(
            &m,
            "longhaul_connections_refused_total",
            &[("transport", "rtmp"), ("reason", reason)],
        )
    };
    assert_eq!(refused("proxy_untrusted"), 1.0);
    assert_eq!(refused("proxy_header"), 1.0);
    let logs = origin.logs();
    assert!(
        logs.contains("127.0.0.2 is not in ingest.proxy_trusted"),
        "{logs}"
    );
    assert!(
        logs.lines()
            .any(|l| l.contains("no PROXY protocol header") && l.contains("127.0.0.1:")),
        "{logs}"
    );
}

/// The per-address cap and the abuse guard count the header's address: two idle
/// connections "from" 203.0.113.7 fill its two places, its third is refused, while
/// 203.0.113.8 (the same socket address, 127.0.0.1) publishes; and a wrong token from
/// 203.0.113.7 bans 203.0.113.7, not 203.0.113.8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_the_abuse_guard_key_on_the_header_address() {
    let cluster = Cluster::new();
    let origin = origin_behind_balancer(&cluster, "[abuse]\nslow_after = 1\nban_after = 1");
    let (id, token) = create_entry(&origin).await;
    let a = Balancer::start(origin.addr("rtmp"), Header::V1, client("203.0.113.7:4000")).await;
    let b = Balancer::start(
        origin.addr("rtmp"),
        Header::V2WithTlvs,
        client("203.0.113.8:4000"),
    )
    .await;

    let idle = [
        TcpStream::connect(a.addr).await.unwrap(),
        TcpStream::connect(a.addr).await.unwrap(),
    ];
    until_metrics(&origin, "two connections from 203.0.113.7", |m| {
        metric(m, "longhaul_connections_active", &[("transport", "rtmp")]) >= 2.0
    })
    .await;
    let third = publish_via(&a, &format!("kLive/?t={token}/{id}_1")).await;
    assert!(third.is_err(), "a third connection from 203.0.113.7");
    publish_via(&b, &format!("kLive/?t={token}/{id}_1"))
        .await
        .expect("203.0.113.8 has places of its own");
    let m = metrics_of(&origin).await;
    assert_eq!(
        present(
            &m,
            "longhaul_connections_refused_total",
            &[("transport", "rtmp"), ("reason", "too_many_from_address")]
        ),
        1.0
    );
    assert!(
        origin
            .logs()
            .contains("203.0.113.7 already has 2 connections open"),
        "{}",
        origin.logs()
    );
    drop(idle);
    until_metrics(&origin, "the idle connections closed", |m| {
        metric(m, "longhaul_connections_active", &[("transport", "rtmp")]) == 0.0
    })
    .await;

    // A wrong token from 203.0.113.7 bans it (ban_after = 1)...
    let wrong = publish_via(&a, &format!("kLive/?t=wrongwrongwrongw/{id}_2")).await;
    assert!(wrong.is_err_and(|e| e.contains("wrong token")));
    let banned = publish_via(&a, &format!("kLive/?t={token}/{id}_2")).await;
    let words = banned.expect_err("203.0.113.7 is banned");
    assert!(
        words.contains("too many failed publish attempts from 203.0.113.7"),
        "{words}"
    );
    // ...and not 203.0.113.8.
    publish_via(&b, &format!("kLive/?t={token}/{id}_2"))
        .await
        .expect("203.0.113.8 is not banned");
}
