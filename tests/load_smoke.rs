//! The load generator against a real cluster in this process: 2 regions of 12
//! publishers at about 1 Mbit/s for 5 s, one region through the edge (and its QUIC
//! tunnel), one straight at the origin, players at the origin. Checks the report's
//! accounting, not timings: on loopback every frame arrives, once.

mod support;

use std::time::Duration;
use support::cluster::start_cluster;

const PUBLISHERS: u64 = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_generator_accounts_for_every_frame() {
    let cluster = start_cluster("").await;
    let origin = cluster.origin.origin.rtmp_addr;
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let settings = longhaul_load::Settings::from_args([
        "longhaul-load".to_string(),
        "--region".into(),
        format!("fra=rtmp://{}/kLive", cluster.edge.rtmp_addr),
        "--region".into(),
        format!("nyc=rtmp://{origin}/kLive"),
        "--play".into(),
        format!("rtmp://{origin}/kLive"),
        "--api".into(),
        cluster.origin.http(),
        "--publishers".into(),
        PUBLISHERS.to_string(),
        "--bitrate".into(),
        "900k".into(),
        "--audio-bitrate".into(),
        "96k".into(),
        "--gop".into(),
        "1s".into(),
        "--duration".into(),
        "5s".into(),
        "--ramp".into(),
        "100/s".into(),
        "--drain".into(),
        "3s".into(),
        "--token-in".into(),
        "name".into(),
        "--quiet".into(),
    ])
    .expect("settings");
    let report = tokio::time::timeout(Duration::from_secs(60), longhaul_load::run(settings))
        .await
        .expect("the run ends within a minute")
        .expect("the run completes");
    println!("{}", report.table());
    assert!(report.errors().is_empty(), "{:#?}", report.errors());

    assert_eq!(report.streams.len(), 2 * PUBLISHERS as usize);
    for s in &report.streams {
        assert!(s.publish_setup_ms.is_some_and(|ms| ms > 0.0), "{s:?}");
        // 5 s at 25 fps + 48 kHz AAC: 125 video and 235 audio frames.
        assert_eq!(s.frames_sent, 125 + 235, "{s:?}");
        assert_eq!(s.frames_received, s.frames_sent, "{s:?}");
        assert_eq!(
            (s.frames_lost, s.frames_duplicated, s.frames_unsent),
            (0, 0, 0),
            "{s:?}"
        );
        assert!((s.delivered_share - 1.0).abs() < 1e-9, "{s:?}");
        assert!(
            s.latency_ms.p50.is_some() && s.latency_ms.max.is_some(),
            "{s:?}"
        );
        assert!((s.offered_kbps / 996.0 - 1.0).abs() < 0.1, "{s:?}");
    }
    assert_eq!(report.regions.len(), 2);
    let mut frames = 0;
    for r in &report.regions {
        let a = &r.figures;
        assert_eq!(
            (a.publishers, a.publishers_failed),
            (PUBLISHERS, 0),
            "{r:?}"
        );
        let rows: Vec<_> = report
            .streams
            .iter()
            .filter(|s| s.region == r.region)
            .collect();
        assert_eq!(rows.len() as u64, PUBLISHERS);
        assert_eq!(
            a.frames_sent,
            rows.iter().map(|s| s.frames_sent).sum::<u64>()
        );
        assert_eq!(a.frames_received, a.frames_sent);
        assert!(a.publish_setup_ms.p50.is_some() && a.publish_setup_ms.p99.is_some());
        frames += a.frames_sent;
    }
    let t = &report.total;
    assert_eq!(t.publishers, 2 * PUBLISHERS);
    assert_eq!(t.frames_sent, frames);
    assert_eq!(
        (t.frames_received, t.frames_lost, t.frames_duplicated),
        (frames, 0, 0)
    );
    assert!((t.delivered_share - 1.0).abs() < 1e-9);

    report.write_json(&json).expect("write the JSON report");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("read json")).expect("parse json");
    for key in ["settings", "total", "regions", "streams"] {
        assert!(v.get(key).is_some(), "no {key}");
    }
    use longhaul_load::report::{AGGREGATE_KEYS as AGG, STREAM_KEYS as STREAM};
    for key in AGG {
        assert!(v["total"].get(key).is_some(), "total has no {key}");
        for r in v["regions"].as_array().expect("regions") {
            assert!(r.get(key).is_some(), "a region has no {key}");
        }
    }
    for s in v["streams"].as_array().expect("streams") {
        for key in STREAM {
            assert!(s.get(key).is_some(), "a stream has no {key}");
        }
        for p in ["p50", "p90", "p99", "max"] {
            assert!(s["latency_ms"][p].is_number(), "latency {p}: {s}");
        }
    }
    assert!(v["total"]["publish_setup_ms"]["p99"].is_number());
    assert_eq!(v["regions"][0]["region"], "fra");
    assert_eq!(v["total"]["frames_sent"], frames);
    assert_eq!(v["streams"][0]["frames_lost"], 0);
    assert!(v["streams"][0]["latency_ms"]["p99"].is_number());
    assert!(v["streams"][0]["error"].is_null());
    cluster.stop().await;
}

/// A refused publish is the stream's error, with the origin's status and words; the run
/// still completes and reports it (through `--entries`, so no API is involved).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_publish_is_the_streams_error() {
    let cluster = start_cluster("").await;
    let entry = cluster.origin.create_entry().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let entries = dir.path().join("entries.txt");
    std::fs::write(&entries, format!("fra {} not-the-token\n", entry.id)).expect("write");
    let origin = cluster.origin.origin.rtmp_addr;
    let settings = longhaul_load::Settings::from_args([
        "longhaul-load".to_string(),
        "--region".into(),
        format!("fra=rtmp://{}/kLive", cluster.edge.rtmp_addr),
        "--play".into(),
        format!("rtmp://{origin}/kLive"),
        "--entries".into(),
        entries.display().to_string(),
        "--publishers".into(),
        "1".into(),
        "--duration".into(),
        "1s".into(),
        "--quiet".into(),
    ])
    .expect("settings");
    let report = tokio::time::timeout(Duration::from_secs(30), longhaul_load::run(settings))
        .await
        .expect("the run ends")
        .expect("the run completes");
    let s = &report.streams[0];
    let error = s.error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("publish refused: NetStream.Publish."),
        "{s:?}"
    );
    // Its whole plan was offered and none of it arrived: a refused publisher counts
    // against the shares, not only the streams that got through.
    assert_eq!(s.publish_setup_ms, None, "{s:?}");
    assert!(s.frames_sent > 0, "{s:?}");
    assert_eq!(
        (s.frames_unsent, s.frames_lost),
        (s.frames_sent, s.frames_sent)
    );
    assert_eq!(report.total.delivered_share, 0.0);
    assert_eq!(
        (report.total.publishers, report.total.publishers_failed),
        (1, 1)
    );
    cluster.stop().await;
}
