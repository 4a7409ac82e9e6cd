//! The origin against real ffmpeg: publish with the token where ffmpeg and OBS put it,
//! play back over RTMP and HTTP-FLV, renditions, RTMPS, refusals and takeover.
//!
//! Streams are published with one keyframe for the whole clip (`-g 1000`), so a player
//! that joins while the clip runs receives it whole from the GOP cache and the frame
//! counts can be compared exactly with what was sent.

mod support;

use std::time::Duration;
use support::*;

/// 3 s at 25 fps.
const CLIP_SECONDS: u32 = 3;
const CLIP_FRAMES: u64 = 75;

async fn publish_and_play(origin: &TestOrigin, publish_url: &str, name: &str) {
    let publisher = ffmpeg_publish(publish_url, "320x240", CLIP_SECONDS, 1000);
    origin.wait_live(name).await;
    let dir = tempfile::tempdir().unwrap();
    let (rtmp_file, flv_file) = (dir.path().join("rtmp.flv"), dir.path().join("http.flv"));
    let rtmp_player = ffmpeg_record(&format!("{}/kLive/{name}", origin.rtmp()), &rtmp_file);
    let flv_player = ffmpeg_record(&format!("{}/live/{name}.flv", origin.http()), &flv_file);
    let out = wait_child(publisher).await;
    assert!(
        out.status.success(),
        "publisher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (player, file) in [(rtmp_player, &rtmp_file), (flv_player, &flv_file)] {
        let out = wait_child(player).await;
        assert!(
            out.status.success(),
            "player of {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let p = probe(file);
        assert_eq!(
            p,
            Probe {
                video_codec: "h264".into(),
                width: 320,
                height: 240,
                video_frames: CLIP_FRAMES,
                audio_codec: "aac".into()
            },
            "what {} received",
            file.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_in_app_query_publishes_and_plays_over_rtmp_and_http_flv() {
    require_ffmpeg();
    let origin = start_origin("").await;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let url = format!("{}/kLive/?t={}/{name}", origin.rtmp(), entry.token);
    publish_and_play(&origin, &url, &name).await;
    let m = origin.metrics();
    assert_eq!(
        metric(&m, "longhaul_publishes_total", &[("outcome", "accepted")]),
        1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "longhaul_bytes_received_total",
            &[("transport", "rtmp")]
        ) > 10_000.0
    );
    assert!(
        metric(
            &m,
            "longhaul_bytes_sent_total",
            &[("transport", "http-flv")]
        ) > 10_000.0
    );
    assert_eq!(
        metric(&m, "longhaul_plays_total", &[("outcome", "accepted")]),
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_in_stream_name_query_obs_style() {
    require_ffmpeg();
    let origin = start_origin("").await;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let url = format!("{}/kLive/{name}?t={}", origin.rtmp(), entry.token);
    publish_and_play(&origin, &url, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmps_publish() {
    require_ffmpeg();
    let origin = start_origin("").await;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    // ffmpeg does not verify certificates unless asked (tls_verify=0), as encoders in the field.
    let url = format!("{}/kLive/?t={}/{name}", origin.rtmps(), entry.token);
    publish_and_play(&origin, &url, &name).await;
    let m = origin.metrics();
    assert!(
        metric(
            &m,
            "longhaul_bytes_received_total",
            &[("transport", "rtmps")]
        ) > 10_000.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_renditions_at_once() {
    require_ffmpeg();
    let origin = start_origin("").await;
    let entry = origin.create_entry().await;
    let sizes = ["640x360", "480x270", "320x180"];
    let mut publishers = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let name = format!("{}_{}", entry.id, i + 1);
        let url = format!("{}/kLive/?t={}/{name}", origin.rtmp(), entry.token);
        publishers.push((name, size, ffmpeg_publish(&url, size, 4, 1000)));
    }
    let dir = tempfile::tempdir().unwrap();
    let mut players = Vec::new();
    for (name, size, _) in &publishers {
        origin.wait_live(name).await;
        let file = dir.path().join(format!("{name}.flv"));
        players.push((
            file.clone(),
            *size,
            ffmpeg_record(&format!("{}/live/{name}.flv", origin.http()), &file),
        ));
    }
    assert_eq!(
        origin.origin.state.hub.streams().len(),
        3,
        "three streams live at once"
    );
    for (_, _, p) in publishers {
        assert!(wait_child(p).await.status.success());
    }
    for (file, size, player) in players {
        assert!(wait_child(player).await.status.success());
        let p = probe(&file);
        assert_eq!(format!("{}x{}", p.width, p.height), *size);
        assert_eq!(p.video_frames, 100, "4 s at 25 fps of {}", file.display());
    }
}

/// Publishes with `url` and returns ffmpeg's exit success and its error output.
async fn try_publish(url: &str) -> (bool, String) {
    let out = wait_child(ffmpeg_publish(url, "160x120", 2, 25)).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_missing_stale_and_unknown_tokens_are_refused_with_the_reason() {
    require_ffmpeg();
    let origin = start_origin("").await;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let base = origin.rtmp();

    let (ok, err) = try_publish(&format!("{base}/kLive/?t=wrongtoken/{name}")).await;
    assert!(!ok && err.contains("wrong token"), "wrong token: {err}");

    let (ok, err) = try_publish(&format!("{base}/kLive/{name}")).await;
    assert!(!ok && err.contains("no token"), "missing token: {err}");

    let (ok, err) = try_publish(&format!("{base}/kLive/?t={}/1_zzzzzzzz_1", entry.token)).await;
    assert!(
        !ok && err.contains("does not exist"),
        "unknown entry: {err}"
    );

    // Regenerate through the API, as an operator would; the old token is refused at once.
    let client = reqwest_like_post(&format!(
        "{}/api/v1/entries/{}/regenerate-token",
        origin.http(),
        entry.id
    ))
    .await;
    let fresh = client["token"].as_str().expect("new token").to_string();
    assert_ne!(fresh, entry.token);
    let (ok, err) = try_publish(&format!("{base}/kLive/?t={}/{name}", entry.token)).await;
    assert!(!ok && err.contains("wrong token"), "stale token: {err}");
    let (ok, err) = try_publish(&format!("{base}/kLive/?t={fresh}/{name}")).await;
    assert!(ok, "fresh token must publish: {err}");

    let m = origin.metrics();
    let rejected = |reason| {
        metric(
            &m,
            "longhaul_publishes_total",
            &[("outcome", "rejected"), ("reason", reason)],
        )
    };
    assert_eq!(rejected("wrong_token"), 2.0, "{m}");
    assert_eq!(rejected("missing_token"), 1.0);
    assert_eq!(rejected("unknown_entry"), 1.0);
    assert!(origin.origin.state.hub.streams().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_publisher_takes_over_and_the_first_is_closed() {
    require_ffmpeg();
    let origin = start_origin("").await;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let url = format!("{}/kLive/?t={}/{name}", origin.rtmp(), entry.token);
    let first = ffmpeg_publish(&url, "160x120", 30, 25);
    origin.wait_live(&name).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = ffmpeg_publish(&url, "320x240", 3, 1000);
    let started = std::time::Instant::now();
    let first_out = wait_child(first).await;
    // The first encoder's connection is closed at once, not after a 30 s clip or a TCP timeout.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "first publisher lingered {:?}",
        started.elapsed()
    );
    let first_err = String::from_utf8_lossy(&first_out.stderr);
    assert!(
        !first_out.status.success() || first_err.contains("took it over"),
        "{first_err}"
    );
    // Players now get the second encoder's stream.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("after.flv");
    let player = ffmpeg_record(&format!("{}/live/{name}.flv", origin.http()), &file);
    assert!(wait_child(second).await.status.success());
    assert!(wait_child(player).await.status.success());
    assert_eq!(probe(&file).width, 320);
    let m = origin.metrics();
    assert_eq!(
        metric(&m, "longhaul_publish_takeovers_total", &[]),
        1.0,
        "{m}"
    );
}

/// POSTs to the API with hyper and returns the JSON body.
async fn reqwest_like_post(url: &str) -> serde_json::Value {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let req = hyper::Request::post(url)
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("API reachable");
    assert!(resp.status().is_success(), "POST {url}: {}", resp.status());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).expect("JSON")
}

/// A player joining mid-stream starts on a keyframe (from the GOP cache), with real
/// ffmpeg on both sides and a 1 s GOP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_joining_mid_stream_starts_on_a_keyframe() {
    require_ffmpeg();
    let origin = start_origin("").await;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let url = format!("{}/kLive/?t={}/{name}", origin.rtmp(), entry.token);
    let publisher = ffmpeg_publish(&url, "320x240", 5, 25);
    origin.wait_live(&name).await;
    tokio::time::sleep(Duration::from_millis(1700)).await; // well inside the second GOP
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("joined.flv");
    let player = ffmpeg_record(&format!("{}/live/{name}.flv", origin.http()), &file);
    assert!(wait_child(publisher).await.status.success());
    assert!(wait_child(player).await.status.success());
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=key_frame,pict_type",
        ])
        .args(["-of", "csv=p=0"])
        .arg(&file)
        .output()
        .unwrap();
    let frames: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        frames.first().is_some_and(|f| f.starts_with("1,I")),
        "first frame: {:?}",
        frames.first()
    );
    // It joined mid-stream: fewer than all 125 frames, and at least the last 2 GOPs.
    assert!((50..125).contains(&frames.len()), "{} frames", frames.len());
}
