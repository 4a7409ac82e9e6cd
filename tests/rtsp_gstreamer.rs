//! RTSP publishes from GStreamer's `rtspclientsink` at an origin, over TCP and UDP. In
//! a test binary of its own: the other RTSP tests run five ffmpeg encoders at once, and
//! GStreamer's live pipeline is the one that suffers on two shared cores.

mod support;

use support::*;

/// 3 s at 25 fps.
const CLIP_FRAMES: u64 = 75;

/// GStreamer's `rtspclientsink` (AAC in LATM, SETUP URLs of its own form), over TCP
/// and UDP. Its live x264enc sends two IDR pictures first (the origin's log showed NAL
/// types [6, 5, 5] at 40 and 80 ms, 2026-12-05), so a player joining after them starts
/// at the second: it gets 74 of the 75 frames, the first being the only one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_publishes_over_rtsp_and_plays_over_rtmp() {
    require_ffmpeg();
    require_gstreamer();
    let origin = start_origin(RTSP_ON).await;
    for protocols in ["tcp", "udp"] {
        let entry = origin.create_entry().await;
        let name = format!("{}_1", entry.id);
        let url = format!("{}/kLive/{name}?t={}", origin.rtsp(), entry.token);
        let publisher = gstreamer_publish_rtsp(&url, protocols, CLIP_FRAMES as u32);
        origin.wait_live(&name).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("rtmp.flv");
        let player = ffmpeg_record(&format!("{}/kLive/{name}", origin.rtmp()), &file);
        let out = wait_child(publisher).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() || closing_race(&stderr),
            "GStreamer over {protocols} failed: {stderr}"
        );
        let out = wait_child(player).await;
        assert!(
            out.status.success(),
            "player: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p = probe(&file);
        assert_eq!(
            (
                p.video_codec.as_str(),
                p.width,
                p.height,
                p.audio_codec.as_str()
            ),
            ("h264", 320, 240, "aac"),
            "over {protocols}"
        );
        assert!(
            (CLIP_FRAMES - 1..=CLIP_FRAMES).contains(&p.video_frames),
            "over {protocols}: {} of {CLIP_FRAMES} frames",
            p.video_frames
        );
    }
}

/// A failure of rtspclientsink at its close, seen once in CI (GStreamer 1.22, over
/// TCP, 2026-12-05; not reproduced in runs by hand): closing, it cancels its pending
/// writes (`writev_bytes: Operation was cancelled`) while its sending thread still
/// writes, which then fails as "Could not send message. (Received end-of-file)", and
/// gst-launch exits 1. It comes after the last frame was sent: the frames the player
/// recorded, checked after, say whether anything was lost.
fn closing_race(stderr: &str) -> bool {
    stderr.contains("Operation was cancelled")
        && stderr.contains("Could not send message. (Received end-of-file)")
        && !stderr.contains("Could not open resource")
}
