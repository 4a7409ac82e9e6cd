//! Publish abuse end to end: an edge and an origin in one process, tunnelled over
//! loopback QUIC, small thresholds, and an encoder (longhaul's own RTMP client) on
//! 127.0.0.1 that keeps publishing with a wrong token. It is refused by the origin, then
//! slowed, then refused at the edge without the origin being asked; an address on the
//! ignore list never is. The origin's direct publishes meet the same guard.

mod support;

use longhaul_rtmp::connection::{ClientError, Publisher, RtmpUrl};
use std::time::{Duration, Instant};
use support::cluster::*;
use support::*;
use tokio::net::TcpStream;

async fn publish(url: &str) -> Result<Publisher<TcpStream>, ClientError> {
    let url = RtmpUrl::parse(url).expect("url");
    let io = TcpStream::connect(url.address()).await.expect("connect");
    Publisher::start(io, url.client_config(), &url.name).await
}

/// Publishes to `url`, expecting a refusal (within 10 s): its description, and how long
/// the refusal took.
async fn refused(url: &str) -> (String, Duration) {
    let start = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), publish(url))
        .await
        .expect("an answer within 10 s");
    let Err(ClientError::Rejected { code, description }) = result else {
        panic!("expected a refusal, got {:?}", result.map(|_| ()));
    };
    assert_eq!(code, "NetStream.Publish.Rejected", "{description}");
    (description, start.elapsed())
}

/// The origin's count of tunnelled publishes it refused for a wrong token.
fn origin_wrong_tokens(cluster: &TestCluster) -> f64 {
    metric(
        &cluster.origin.metrics(),
        "longhaul_publishes_total",
        &[
            ("outcome", "rejected"),
            ("reason", "wrong_token"),
            ("transport", "tunnel"),
        ],
    )
}

fn edge_series(cluster: &TestCluster, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(&cluster.edge_metrics(), name, labels)
}

const BANNED_PREFIX: &str =
    "publish refused: too many failed publish attempts from 127.0.0.1; try again in ";

/// The seconds a refusal for a ban says to wait.
fn retry_secs(description: &str) -> u64 {
    description
        .strip_prefix(BANNED_PREFIX)
        .and_then(|rest| rest.strip_suffix(" s"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a ban's refusal: {description}"))
}

/// The tarpit's delay in this test: short, but far above a loopback round trip.
const DELAY: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_keeps_failing_is_slowed_then_refused_at_the_edge() {
    let cluster = start_cluster(
        "[abuse]\nslow_after = 2\nban_after = 4\nmax_delay_ms = 300\nwindow_secs = 60\nban_secs = 60",
    )
    .await;
    let entry = cluster.origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let bad = cluster.edge_publish_url("not-the-token", &name);

    // Two failures cost nothing: the origin refuses them, in its words.
    for n in 1..=2 {
        let (description, _) = refused(&bad).await;
        assert!(description.contains("wrong token"), "{n}: {description}");
        assert_eq!(origin_wrong_tokens(&cluster), f64::from(n));
    }
    // The next two wait first, then the origin refuses them all the same.
    for n in 3..=4 {
        let (description, took) = refused(&bad).await;
        assert!(description.contains("wrong token"), "{n}: {description}");
        assert!(took >= DELAY, "attempt {n} was answered after {took:?}");
        assert_eq!(origin_wrong_tokens(&cluster), f64::from(n));
    }
    // The fourth failure banned the address: refused at the edge, the origin not asked,
    // the encoder told why and for how long; the right token is refused too (the
    // address is banned, not the token).
    let good = cluster.edge_publish_url(&entry.token, &name);
    for url in [&bad, &bad, &good] {
        let (description, _) = refused(url).await;
        assert!(
            (55..=60).contains(&retry_secs(&description)),
            "{description}"
        );
    }
    assert_eq!(origin_wrong_tokens(&cluster), 4.0);
    let origin = cluster.origin.metrics();
    assert_eq!(
        metric(
            &origin,
            "longhaul_publishes_total",
            &[("outcome", "accepted")]
        ),
        0.0,
        "{origin}"
    );
    for (name, labels, want) in [
        (
            "longhaul_edge_publishes_total",
            &[("outcome", "refused"), ("reason", "too_many_failures")][..],
            3.0,
        ),
        (
            "longhaul_edge_publishes_total",
            &[("outcome", "refused"), ("reason", "wrong_token")][..],
            4.0,
        ),
        (
            "longhaul_publish_abuse_total",
            &[("action", "slowed")][..],
            2.0,
        ),
        (
            "longhaul_publish_abuse_total",
            &[("action", "refused")][..],
            3.0,
        ),
        ("longhaul_publish_abuse_bans_total", &[][..], 1.0),
        ("longhaul_publish_abuse_banned", &[][..], 1.0),
        ("longhaul_publish_abuse_tracked", &[][..], 1.0),
    ] {
        assert_eq!(
            edge_series(&cluster, name, labels),
            want,
            "{name} {labels:?}:\n{}",
            cluster.edge_metrics()
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_on_the_ignore_list_is_never_slowed_or_banned() {
    let cluster = start_cluster(
        "[abuse]\nslow_after = 1\nban_after = 2\nmax_delay_ms = 2000\nignore = [\"127.0.0.0/8\"]",
    )
    .await;
    let entry = cluster.origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let bad = cluster.edge_publish_url("not-the-token", &name);
    for n in 1..=5 {
        let (description, _) = refused(&bad).await;
        assert!(description.contains("wrong token"), "{n}: {description}");
    }
    assert_eq!(origin_wrong_tokens(&cluster), 5.0);
    let _publisher = publish(&cluster.edge_publish_url(&entry.token, &name))
        .await
        .expect("the right token publishes");
    for (name, labels) in [
        ("longhaul_publish_abuse_total", &[("action", "slowed")][..]),
        ("longhaul_publish_abuse_total", &[("action", "refused")][..]),
        ("longhaul_publish_abuse_bans_total", &[][..]),
        ("longhaul_publish_abuse_tracked", &[][..]),
        (
            "longhaul_edge_publishes_total",
            &[("reason", "too_many_failures")][..],
        ),
    ] {
        assert_eq!(
            edge_series(&cluster, name, labels),
            0.0,
            "{name} {labels:?}"
        );
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_publishes_at_the_origin_meet_the_same_guard() {
    let origin = start_origin("[abuse]\nslow_after = 2\nban_after = 2\nban_secs = 60").await;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let bad = format!("{}/kLive/?t=not-the-token/{name}", origin.rtmp());
    for n in 1..=2 {
        let (description, _) = refused(&bad).await;
        assert!(description.contains("wrong token"), "{n}: {description}");
    }
    let (description, _) = refused(&bad).await;
    assert!(
        (55..=60).contains(&retry_secs(&description)),
        "{description}"
    );
    let m = origin.metrics();
    let rejected = |reason| {
        metric(
            &m,
            "longhaul_publishes_total",
            &[("outcome", "rejected"), ("reason", reason)],
        )
    };
    assert_eq!(rejected("wrong_token"), 2.0, "{m}");
    assert_eq!(rejected("too_many_failures"), 1.0, "{m}");
    assert_eq!(
        metric(&m, "longhaul_publish_abuse_bans_total", &[]),
        1.0,
        "{m}"
    );
    origin.origin.stop().await;
}
