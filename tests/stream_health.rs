//! Per-stream health, end to end: real ffmpeg encoders publish through an edge to an
//! origin, one at 1 Mbit/s while its metadata declares 4, one with an 8 s GOP and one
//! healthy; the origin's `/metrics` and streams API show each one's figures, the edge's
//! `/metrics` its relayed streams, and the alert rules shipped in `deploy/prometheus`,
//! run by `promtool` over the series this origin exported, fire for the first two
//! and not for the third.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::cluster::start_cluster;
use support::*;

/// How long each encoder runs: long enough for two 8 s GOPs to have started and the
/// 5 s rate window to have filled, with room for a slow machine.
const ENCODE_SECONDS: u32 = 30;

/// A test encoder (320x240, 25 fps, H.264 + AAC 64 kbit/s, at real time) with its video
/// bitrate declared as `declared` and capped at `max_rate` (x264's VBV), a keyframe
/// every `gop` frames and never on a scene cut.
fn encoder(url: &str, declared: &str, max_rate: &str, gop: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &ENCODE_SECONDS.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-b:v", declared, "-maxrate", max_rate, "-bufsize", max_rate])
        .args(["-g", &gop.to_string(), "-sc_threshold", "0"])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg")
}

/// The value of `name{...}` for the stream `entry`'s primary leg of rendition 1.
fn leg_value(metrics: &str, name: &str, entry: &str) -> f64 {
    let prefix = format!("{name}{{");
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter(|l| l.contains(&format!("entry=\"{entry}\"")) && l.contains("leg=\"primary\""))
        .collect();
    assert_eq!(lines.len(), 1, "one {name} for {entry}:\n{metrics}");
    lines[0]
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a number in {}", lines[0]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_bitrate_and_long_gop_show_per_stream_and_fire_their_alerts() {
    require_ffmpeg();
    let cluster = start_cluster("").await;
    let origin = &cluster.origin;
    let mut entries = Vec::new();
    for _ in 0..3 {
        entries.push(origin.create_entry().await);
    }
    let names: Vec<String> = entries.iter().map(|e| format!("{}_1", e.id)).collect();
    let url = |i: usize| cluster.edge_publish_url(&entries[i].token, &names[i]);
    // Declares 4 Mbit/s of video, sends at most 1.
    let low = encoder(&url(0), "4M", "1M", 50);
    // An 8 s GOP at an honest rate.
    let long_gop = encoder(&url(1), "500k", "500k", 200);
    // Healthy: 2 s GOP, at its declared rate.
    let healthy = encoder(&url(2), "500k", "500k", 50);
    for name in &names {
        origin.wait_live(name).await;
    }
    // Two keyframes of the 8 s GOP (at 0 s and 8 s), and the 5 s window full.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let metrics = origin.metrics();
    let (low_id, long_id, healthy_id) = (&entries[0].id, &entries[1].id, &entries[2].id);

    // 1 Mbit/s of video (x264's cap, which it holds within a few per cent over 5 s) and
    // 64 kbit/s of audio, against 4,000 * 1000 / 1024 + 64,000 / 1024 declared kbit/s
    // (ffmpeg writes bit_rate / 1024).
    let bitrate = leg_value(&metrics, "longhaul_stream_bitrate_bits_per_second", low_id);
    assert!(
        (600_000.0..1_400_000.0).contains(&bitrate),
        "bitrate of the capped stream: {bitrate}"
    );
    let declared = leg_value(
        &metrics,
        "longhaul_stream_declared_bitrate_bits_per_second",
        low_id,
    );
    assert_eq!(declared, (3906.25 + 62.5) * 1000.0, "declared bitrate");
    for id in [low_id, long_id, healthy_id] {
        let fps = leg_value(&metrics, "longhaul_stream_frames_per_second", id);
        assert!((23.0..=27.0).contains(&fps), "{id}: {fps} fps");
        for track in ["video", "audio"] {
            let line = metrics
                .lines()
                .find(|l| {
                    l.starts_with("longhaul_stream_track_present{")
                        && l.contains(&format!("entry=\"{id}\""))
                        && l.contains(&format!("track=\"{track}\""))
                })
                .unwrap_or_else(|| panic!("{id} {track} present:\n{metrics}"));
            assert!(line.ends_with(" 1"), "{line}");
        }
        let drift = leg_value(&metrics, "longhaul_stream_timestamp_drift_seconds", id);
        assert!(drift.abs() < 0.5, "{id}: drift {drift}");
        let age = leg_value(&metrics, "longhaul_stream_last_media_age_seconds", id);
        assert!(age < 1.0, "{id}: last media {age} s ago");
    }
    assert_eq!(
        leg_value(
            &metrics,
            "longhaul_stream_keyframe_interval_seconds",
            long_id
        ),
        8.0,
        "the long GOP"
    );
    assert_eq!(
        leg_value(
            &metrics,
            "longhaul_stream_keyframe_interval_seconds",
            healthy_id
        ),
        2.0,
        "the healthy GOP"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("longhaul_stream_info{")
                && l.contains(&format!("entry=\"{low_id}\""))
                && l.contains("edge=\"test-edge\"")
                && l.contains("encoder_region=\"fra\"")
                && l.contains("video_codec=\"avc1\"")
                && l.contains("audio_codec=\"mp4a\"")),
        "stream_info of {low_id}:\n{metrics}"
    );

    // The streams API has the same figures.
    let (status, _, body) = http(
        "GET",
        &format!("{}/api/v1/streams", origin.http()),
        "",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let stream = v["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == names[1].as_str()))
        .unwrap_or_else(|| panic!("{} in {v}", names[1]));
    assert_eq!(
        stream["health"]["keyframe_interval_seconds"], 8.0,
        "{stream}"
    );
    assert_eq!(stream["health"]["video_present"], true, "{stream}");
    assert_eq!(stream["video_codec"], "avc1", "{stream}");

    // The edge shows each relayed stream, the origin it goes to, and its queue.
    let edge_metrics = cluster.edge_metrics();
    for id in [low_id, long_id, healthy_id] {
        assert!(
            edge_metrics
                .lines()
                .any(|l| l.starts_with("longhaul_relay_stream_info{")
                    && l.contains(&format!("entry=\"{id}\""))
                    && l.contains("origin=\"test-origin\"")
                    && l.ends_with(" 1")),
            "relay_stream_info of {id}:\n{edge_metrics}"
        );
        assert!(
            edge_metrics
                .lines()
                .any(|l| l.starts_with("longhaul_relay_stream_queued_bytes{")
                    && l.contains(&format!("entry=\"{id}\""))),
            "relay_stream_queued_bytes of {id}"
        );
    }

    // The shipped rules over these series, held for five minutes: exactly the two
    // alerts fire, for exactly those streams.
    let rules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/rules/longhaul-alerts.yml");
    let dir = tempfile::tempdir().unwrap();
    let series: Vec<String> = metrics
        .lines()
        .filter(|l| l.starts_with("longhaul_stream_") || l.starts_with("longhaul_rendition_"))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some(format!(
                "      - series: '{name}'\n        values: '{value}x20'\n"
            ))
        })
        .collect();
    let labels = |entry: &str| {
        format!(
            "node=\"test-origin\",region=\"nyc\",entry=\"{entry}\",rendition=\"1\",leg=\"primary\""
        )
    };
    let test = format!(
        "rule_files:\n  - {rules}\nevaluation_interval: 15s\ntests:\n  - interval: 15s\n    input_series:\n{series}    promql_expr_test:\n      - expr: ALERTS{{alertstate=\"firing\"}}\n        eval_time: 4m\n        exp_samples:\n          - labels: 'ALERTS{{alertname=\"LonghaulBitrateBelowDeclared\",alertstate=\"firing\",severity=\"warning\",{low}}}'\n            value: 1\n          - labels: 'ALERTS{{alertname=\"LonghaulKeyframeIntervalLong\",alertstate=\"firing\",severity=\"warning\",{long}}}'\n            value: 1\n",
        rules = rules.display(),
        series = series.concat(),
        low = labels(low_id),
        long = labels(long_id),
    );
    let file = dir.path().join("scraped.test.yml");
    std::fs::write(&file, &test).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("promtool is installed (.ci/run installs Debian's prometheus package)");
    assert!(
        out.status.success(),
        "promtool test rules over the scraped series:\n{}{}\n{test}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    for mut child in [low, long_gop, healthy] {
        let _ = child.kill();
        let _ = child.wait();
    }
    cluster.stop().await;
}
