//! RTSP publishes at an origin, from real ffmpeg: ANNOUNCE/SETUP/RECORD with RTP
//! interleaved over TCP, played back over RTMP and HTTP-FLV and compared with ffprobe;
//! a wrong token refused with 401 before any media is taken.
//!
//! As in `origin_ffmpeg.rs`, the clip has one keyframe (`-g 1000`), so players that join
//! while it runs get it whole from the GOP cache and the frame counts compare exactly.

mod support;

use support::*;

/// 3 s at 25 fps.
const CLIP_SECONDS: u32 = 3;
const CLIP_FRAMES: u64 = 75;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_over_rtsp_tcp_and_plays_over_rtmp_and_http_flv() {
    publish_and_play_over("tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_over_rtsp_udp_and_plays_over_rtmp_and_http_flv() {
    publish_and_play_over("udp").await;
}

/// ffmpeg publishes the clip over RTSP with RTP over `transport`; RTMP and HTTP-FLV
/// players at the origin get all of it.
async fn publish_and_play_over(transport: &str) {
    require_ffmpeg();
    let origin = start_origin(RTSP_ON).await;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let url = format!("{}/kLive/{name}?t={}", origin.rtsp(), entry.token);
    let publisher = ffmpeg_publish_rtsp(&url, transport, CLIP_SECONDS, 1000);
    origin.wait_live(&name).await;
    let dir = tempfile::tempdir().unwrap();
    let (rtmp_file, flv_file) = (dir.path().join("rtmp.flv"), dir.path().join("http.flv"));
    let rtmp_player = ffmpeg_record(&format!("{}/kLive/{name}", origin.rtmp()), &rtmp_file);
    let flv_player = ffmpeg_record(&format!("{}/live/{name}.flv", origin.http()), &flv_file);
    let out = wait_child(publisher).await;
    assert!(
        out.status.success(),
        "RTSP publisher failed: {}",
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
        assert_eq!(
            probe(file),
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
    let m = origin.metrics();
    assert_eq!(
        metric(
            &m,
            "longhaul_publishes_total",
            &[("outcome", "accepted"), ("transport", "rtsp")]
        ),
        1.0,
        "{m}"
    );
    for (method, status) in [("ANNOUNCE", "200"), ("SETUP", "200"), ("RECORD", "200")] {
        assert!(
            metric(
                &m,
                "longhaul_rtsp_requests_total",
                &[("method", method), ("status", status)]
            ) >= 1.0,
            "{method} {status}: {m}"
        );
    }
    assert!(
        metric(
            &m,
            "longhaul_rtsp_packets_total",
            &[("outcome", "received")]
        ) > 75.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "longhaul_rtsp_packets_total", &[("outcome", "lost")]),
        0.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_with_401_and_no_media_taken() {
    require_ffmpeg();
    let origin = start_origin(RTSP_ON).await;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let url = format!("{}/kLive/{name}?t=not-the-token", origin.rtsp());
    let out = wait_child(ffmpeg_publish_rtsp(&url, "tcp", 2, 25)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "publish with a wrong token succeeded"
    );
    assert!(stderr.contains("401"), "ffmpeg said: {stderr}");
    let m = origin.metrics();
    assert_eq!(
        metric(
            &m,
            "longhaul_publishes_total",
            &[("outcome", "rejected"), ("transport", "rtsp")]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "longhaul_rtsp_requests_total",
            &[("method", "ANNOUNCE"), ("status", "401")]
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "longhaul_rtsp_packets_total",
            &[("outcome", "received")]
        ),
        0.0
    );
    assert!(origin.origin.state.hub.streams().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsp_publish_at_an_edge_is_relayed_to_the_origin() {
    require_ffmpeg();
    let cluster = support::cluster::start_cluster(RTSP_ON).await;
    let origin = &cluster.origin;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let edge = cluster.edge.rtsp_addr.expect("the edge's rtsp listener");
    let url = format!("rtsp://{edge}/kLive/{name}?t={}", entry.token);
    let publisher = ffmpeg_publish_rtsp(&url, "tcp", CLIP_SECONDS, 1000);
    origin.wait_live(&name).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rtmp.flv");
    let player = ffmpeg_record(&format!("{}/kLive/{name}", origin.rtmp()), &file);
    let out = wait_child(publisher).await;
    assert!(
        out.status.success(),
        "RTSP publisher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = wait_child(player).await;
    assert!(
        out.status.success(),
        "player: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        probe(&file),
        Probe {
            video_codec: "h264".into(),
            width: 320,
            height: 240,
            video_frames: CLIP_FRAMES,
            audio_codec: "aac".into()
        }
    );
    // The origin saw a tunnelled publish; the edge counted an RTSP one.
    let m = cluster.edge_metrics();
    assert!(
        metric(&m, "longhaul_connections_total", &[("transport", "rtsp")]) >= 1.0,
        "{m}"
    );
    assert!(
        metric(
            &m,
            "longhaul_rtsp_packets_total",
            &[("outcome", "received")]
        ) > 75.0,
        "{m}"
    );

    // A wrong token at the edge: the origin's refusal, as 401.
    let url = format!("rtsp://{edge}/kLive/{name}?t=wrong");
    let out = wait_child(ffmpeg_publish_rtsp(&url, "tcp", 2, 25)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("401"),
        "ffmpeg said: {stderr}"
    );
    cluster.stop().await;
}

/// RTSPS: RTSP over TLS with the RTMPS certificate, RTP interleaved inside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_over_rtsps() {
    require_ffmpeg();
    let origin = start_origin("[rtsp]\ntls_listen = \"127.0.0.1:0\"\n").await;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let url = format!("{}/kLive/{name}?t={}", origin.rtsps(), entry.token);
    let publisher = ffmpeg_publish_rtsp(&url, "tcp", CLIP_SECONDS, 1000);
    origin.wait_live(&name).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rtmp.flv");
    let player = ffmpeg_record(&format!("{}/kLive/{name}", origin.rtmp()), &file);
    let out = wait_child(publisher).await;
    assert!(
        out.status.success(),
        "RTSPS publisher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = wait_child(player).await;
    assert!(
        out.status.success(),
        "player: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(probe(&file).video_frames, CLIP_FRAMES);
    let m = origin.metrics();
    assert!(
        metric(
            &m,
            "longhaul_bytes_received_total",
            &[("transport", "rtsps")]
        ) > 10_000.0,
        "{m}"
    );
}
