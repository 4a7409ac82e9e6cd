//! The edge's router end to end: real origin and edge processes, real QUIC tunnels, real
//! ffmpeg. With the primary origin killed, a new publish on leg p goes to the other
//! origin and plays there; once the primary is back and has been healthy for the
//! failback time (short here), a new publish on leg p goes to it again. A frozen
//! primary (SIGSTOP) is found silent within its silence limit and an RTT, long before
//! the tunnel's idle timeout, and leg p goes to the other origin meanwhile.
//!
//! These are new publishes, each step publishing anew; live streams moving with the
//! router (the encoder staying connected) are tests/failover.rs.

mod support;

use std::time::Duration;
use support::processes::*;
use support::*;

/// Failback after 3 s clear, healthy again after 1 s: the 2 s between them let the test
/// see the primary healthy while its leg still goes to the other origin.
const ROUTER: &str = "[router]\nrecover_hold_ms = 1000\nfailback_after_ms = 3000";

async fn two_origins_and_an_edge(cluster: &Cluster) -> (Node, Node, Node) {
    cluster.two_origins_and_an_edge(ROUTER).await
}

/// Where the edge's router sends leg p's new publishes, and why not to the primary.
async fn route_of_leg_p(edge: &Node) -> (String, serde_json::Value) {
    let h = health_of(edge).await;
    let route = &h["routes"]["primary"];
    (
        route["origin"].as_str().unwrap_or_default().to_string(),
        route["reason"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leg_p_fails_over_to_the_other_origin_and_back_after_the_failback_time() {
    let cluster = Cluster::new();
    let (pao, nyc, fra) = two_origins_and_an_edge(&cluster).await;
    let ports = (pao.addr("rtmp"), pao.addr("http"), pao.addr("tunnel"));
    assert_eq!(route_of_leg_p(&fra).await.0, PAO.id);
    let entry = cluster.registry().await.create_entry(None).await.unwrap();
    let url = |n: u32| {
        format!(
            "rtmp://{}/kLive/?t={}/{}_{n}",
            fra.addr("rtmp"),
            entry.token,
            entry.id
        )
    };

    // SIGKILL: the edge hears nothing more (the router's silence limit, 600 ms) and then
    // loses the tunnel (its idle timeout, 3 s here): down is the reason from then on.
    drop(pao);
    let killed = std::time::Instant::now();
    loop {
        let (origin, reason) = route_of_leg_p(&fra).await;
        if (origin.as_str(), reason.as_str()) == (NYC.id, Some("origin_down")) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "leg p not routed away from the killed primary as down: {origin} {reason}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A new publish on leg p goes to nyc, is counted there while it runs, and plays.
    let (name, publish) = (format!("{}_1", entry.id), url(1));
    let placed = until_metrics(&fra, "the stream placed on nyc", |m| {
        metric(
            m,
            "longhaul_router_streams",
            &[("origin", NYC.id), ("leg", "p")],
        ) == 1.0
    });
    let (s, _) = tokio::join!(relay_and_check(&publish, &nyc, &name, (320, 240)), placed);
    assert_eq!(s["leg"], "primary", "{s}");
    assert_eq!(s["via_edge"], "fra-test", "{s}");
    fra.logged(&["publish routed away", PAO.id, "origin_down"])
        .await;

    // The primary comes back on its addresses: healthy after the recovery hold, but
    // leg p stays with nyc until the failback time has passed.
    let pao = cluster.origin(&PAO, Some(ports));
    until_metrics(&fra, "the primary healthy again", |m| healthy(m, PAO.id)).await;
    let (origin, reason) = route_of_leg_p(&fra).await;
    assert_eq!(
        (origin.as_str(), reason.as_str()),
        (NYC.id, Some("origin_down"))
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while route_of_leg_p(&fra).await.0 != PAO.id {
        assert!(
            std::time::Instant::now() < deadline,
            "leg p never failed back to {}: {}",
            PAO.id,
            fra.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let name = format!("{}_2", entry.id);
    let s = relay_and_check(&url(2), &pao, &name, (320, 240)).await;
    assert_eq!(s["leg"], "primary", "{s}");
    fra.logged(&["origin health changed", PAO.id, "healthy"])
        .await;
}

/// SIGSTOP: the primary's tunnel stays "connected" (nothing closes it until the idle
/// timeout, 3 s here), but nothing comes back from it. The router finds it silent after
/// its silence limit (600 ms) plus an RTT: leg p goes to nyc, and a new publish plays
/// there. SIGCONT: heard from again, it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_primary_is_found_silent_before_the_idle_timeout() {
    let cluster = Cluster::new();
    let (pao, nyc, fra) = two_origins_and_an_edge(&cluster).await;
    let signal = |sig| {
        // SAFETY: kill(2) on a child process id of this test.
        assert_eq!(unsafe { libc::kill(pao.pid() as i32, sig) }, 0);
    };
    signal(libc::SIGSTOP);
    let frozen = std::time::Instant::now();
    // The first route away from pao says why: silent, not down (the tunnel still
    // counts as connected until the idle timeout).
    let (origin, reason) = loop {
        let (origin, reason) = route_of_leg_p(&fra).await;
        if origin != PAO.id {
            break (origin, reason);
        }
        assert!(
            frozen.elapsed() < Duration::from_secs(10),
            "leg p stayed on the frozen primary: {}",
            fra.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    eprintln!("frozen primary routed around after {:?}", frozen.elapsed());
    assert_eq!(
        (origin.as_str(), reason.as_str()),
        (NYC.id, Some("origin_silent"))
    );
    let entry = cluster.registry().await.create_entry(None).await.unwrap();
    let (name, url) = publish_url(&fra, &entry);
    let s = relay_and_check(&url, &nyc, &name, (320, 240)).await;
    assert_eq!(s["leg"], "primary", "{s}");
    signal(libc::SIGCONT);
    until_metrics(&fra, "the primary healthy again", |m| healthy(m, PAO.id)).await;
}
