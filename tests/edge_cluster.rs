//! The regional relay path end to end: the real `longhaul` binary running origins and
//! edges as separate processes, real QUIC tunnels with the cluster's mutual TLS, and
//! real ffmpeg publishing to the edges and playing from the origins.
//!
//! Streams are published with one keyframe for the whole clip (see
//! `support::processes::relay_and_check`).

mod support;

use support::processes::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_edge_relays_to_the_origin_its_leg_is_routed_to() {
    let cluster = Cluster::new();
    let nyc = cluster.origin(&NYC, None);
    let pao = cluster.origin(&PAO, None);
    let fra = cluster.edge("fra-test", "fra", &[(&NYC, &nyc), (&PAO, &pao)], true);
    let gru = cluster.edge("gru-test", "gru", &[(&NYC, &nyc), (&PAO, &pao)], true);
    let sin = cluster.edge("sin-test", "sin", &[(&PAO, &pao), (&NYC, &nyc)], true);
    for edge in [&fra, &gru, &sin] {
        until_metrics(edge, "both tunnels up", |m| {
            connected(m, NYC.id) && connected(m, PAO.id)
        })
        .await;
    }
    let entry = cluster
        .registry()
        .await
        .create_entry(Some("relay"))
        .await
        .unwrap();
    let (id, token) = (&entry.id, &entry.token);

    // A wrong token is refused at the edge with the origin's words, and nothing is
    // opened on the tunnel for it.
    let url = format!(
        "rtmp://{}/kLive/?t=wrongtoken0000000/{id}_1",
        fra.addr("rtmp")
    );
    let out = wait_child(ffmpeg_publish(&url, "320x240", CLIP_SECONDS, 1000)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("wrong token for entry {id}")),
        "ffmpeg said: {stderr}"
    );
    let m = metrics_of(&fra).await;
    assert_eq!(
        metric(
            &m,
            "longhaul_edge_publishes_total",
            &[("outcome", "refused"), ("reason", "wrong_token")]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        present(&m, "longhaul_tunnel_streams_total", &[("peer", NYC.id)]),
        0.0,
        "{m}"
    );
    let m = metrics_of(&nyc).await;
    assert_eq!(
        metric(
            &m,
            "longhaul_publishes_total",
            &[
                ("outcome", "rejected"),
                ("reason", "wrong_token"),
                ("transport", "tunnel"),
                ("encoder_region", "fra")
            ]
        ),
        1.0,
        "{m}"
    );

    // fra: token in the app query, primary leg -> nyc.
    let url = format!("rtmp://{}/kLive/?t={token}/{id}_1", fra.addr("rtmp"));
    let s = relay_and_check(&url, &nyc, &format!("{id}_1"), (320, 240)).await;
    assert_eq!(s["via_edge"], "fra-test", "{s}");
    assert_eq!(s["publisher_region"], "fra", "{s}");
    assert_eq!(s["leg"], "primary", "{s}");
    // gru: token in the stream name (OBS style), primary leg -> nyc.
    let url = format!("rtmp://{}/kLive/{id}_2?t={token}", gru.addr("rtmp"));
    let s = relay_and_check(&url, &nyc, &format!("{id}_2"), (320, 240)).await;
    assert_eq!(s["via_edge"], "gru-test", "{s}");
    // sin: primary leg -> pao, its preferred origin.
    let url = format!("rtmp://{}/kLive/?t={token}/{id}_3", sin.addr("rtmp"));
    let s = relay_and_check(&url, &pao, &format!("{id}_3"), (320, 240)).await;
    assert_eq!(s["via_edge"], "sin-test", "{s}");
    // fra, backup leg (i=1) -> pao, the other origin.
    let url = format!("rtmp://{}/kLive/?t={token}&i=1/{id}_1", fra.addr("rtmp"));
    let s = relay_and_check(&url, &pao, &format!("{id}_1"), (320, 240)).await;
    assert_eq!(s["leg"], "backup", "{s}");

    // Three renditions through one edge at once, all on its connections to nyc (one per
    // shard).
    let (fra_rtmp, nyc_ref) = (fra.addr("rtmp"), &nyc);
    let run = |n: u32, size: (u64, u64)| {
        let url = format!("rtmp://{fra_rtmp}/kLive/?t={token}/{id}_{n}");
        let name = format!("{id}_{n}");
        async move { relay_and_check(&url, nyc_ref, &name, size).await }
    };
    let watch = async {
        // While all three run, the edge's tunnels to nyc carry three streams.
        until_metrics(&fra, "three open streams", |m| {
            metric(m, "longhaul_tunnel_open_streams", &[("peer", NYC.id)]) == 3.0
        })
        .await
    };
    let (_, _, _, m) = tokio::join!(
        run(1, (320, 240)),
        run(2, (480, 360)),
        run(3, (640, 480)),
        watch
    );
    assert_eq!(
        present(&m, "longhaul_tunnel_reconnects_total", &[("peer", NYC.id)]),
        0.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "longhaul_tunnel_state_changes_total",
            &[("peer", NYC.id), ("to", "connected")]
        ),
        lanes(&m, NYC.id),
        "one connection per lane (shard) for everything: {m}"
    );
    let m = metrics_of(&nyc).await;
    assert_eq!(
        metric(
            &m,
            "longhaul_publishes_total",
            &[
                ("outcome", "accepted"),
                ("transport", "tunnel"),
                ("encoder_region", "fra")
            ]
        ),
        4.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_without_a_cluster_certificate_is_refused_by_the_origin() {
    let cluster = Cluster::new();
    let nyc = cluster.origin(&NYC, None);
    let edge = cluster.edge("rogue-test", "fra", &[(&NYC, &nyc)], false);
    until_metrics(&nyc, "the refusal counted", |m| {
        metric(
            m,
            "longhaul_tunnel_handshake_refusals_total",
            &[("reason", "bad_certificate")],
        ) >= 1.0
    })
    .await;
    let m = metrics_of(&edge).await;
    assert!(!connected(&m, NYC.id), "{m}");
    // An encoder on that edge hears why it cannot publish.
    let entry = cluster.registry().await.create_entry(None).await.unwrap();
    let url = format!(
        "rtmp://{}/kLive/?t={}/{}_1",
        edge.addr("rtmp"),
        entry.token,
        entry.id
    );
    let out = wait_child(ffmpeg_publish(&url, "320x240", 1, 25)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unreachable"), "ffmpeg said: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_reconnects_after_its_origin_restarts() {
    let cluster = Cluster::new();
    let nyc = cluster.origin(&NYC, None);
    let ports = (nyc.addr("rtmp"), nyc.addr("http"), nyc.addr("tunnel"));
    let fra = cluster.edge("fra-test", "fra", &[(&NYC, &nyc)], true);
    until_metrics(&fra, "tunnel up", |m| connected(m, NYC.id)).await;
    drop(nyc); // SIGKILL: no goodbye, the edge finds out by its idle timeout
    until_metrics(&fra, "tunnel lost", |m| !connected(m, NYC.id)).await;
    let nyc = cluster.origin(&NYC, Some(ports));
    let m = until_metrics(&fra, "tunnel back", |m| connected(m, NYC.id)).await;
    assert!(
        present(&m, "longhaul_tunnel_reconnects_total", &[("peer", NYC.id)]) >= 1.0,
        "{m}"
    );
    let entry = cluster.registry().await.create_entry(None).await.unwrap();
    let (name, url) = publish_url(&fra, &entry);
    relay_and_check(&url, &nyc, &name, (320, 240)).await;
}
