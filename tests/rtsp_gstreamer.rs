//! RTSP publishes from GStreamer's `rtspclientsink` at an origin, over TCP and UDP. In
//! a test binary of its own: the other RTSP tests run five ffmpeg encoders at once, and
//! GStreamer's live pipeline is the one that suffers on two shared cores.

mod support;

use std::process::{Child, Output};
use std::time::{Duration, Instant};
use support::*;

/// 3 s at 25 fps.
const CLIP_FRAMES: u64 = 75;

/// How long gst-launch may take over the 3 s live clip before it counts as stuck at
/// its end (see [`wait_or_interrupt`]). Unstuck runs took 3.2 s on a loaded machine.
const CLIP_LIMIT: Duration = Duration::from_secs(20);

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
        let (out, interrupted) = tokio::task::spawn_blocking(move || wait_or_interrupt(publisher))
            .await
            .expect("wait task");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if interrupted {
            // Its exit status then says how it took the interrupt, nothing about us.
            eprintln!("gst-launch over {protocols} stuck at its end, interrupted: {stderr}");
        } else {
            assert!(
                out.status.success() || closing_race(&stderr),
                "GStreamer over {protocols} failed: {stderr}"
            );
        }
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

/// Waits for gst-launch within [`CLIP_LIMIT`]; past it, interrupts it as Ctrl-C would
/// (it then stops its pipeline and sends TEARDOWN) and says so.
///
/// GStreamer 1.22's client sometimes never finishes its end of stream: its RTCP BYEs
/// go out, then the pipeline waits forever, seen in CI past 60 s over UDP. Measured on
/// 2026-12-06 beside GStreamer's own RTSP server (gst-rtsp-server 1.22's record mode,
/// the same pipeline): stuck in 3 of 20 runs over UDP there, 4 of 20 here; over TCP
/// with a busy core, 5 of 30 there. Without retransmission (`rtx-time=0`) none of 20
/// stuck over UDP, but TCP still did. SIGINT ended every stuck run within 60 ms,
/// with status 0, after the origin had logged the whole clip. So a stuck end says
/// nothing of ours; the recorded frames, checked after, say whether anything was lost.
fn wait_or_interrupt(mut child: Child) -> (Output, bool) {
    let deadline = Instant::now() + CLIP_LIMIT;
    while Instant::now() < deadline {
        if child.try_wait().expect("gst-launch status").is_some() {
            return (child.wait_with_output().expect("gst-launch output"), false);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on the pid of a child not yet reaped: no other process has it.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("gst-launch status").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (child.wait_with_output().expect("gst-launch output"), true)
}

/// A failure of rtspclientsink at its close (GStreamer 1.22, over TCP): closing, it
/// cancels its pending writes (`writev_bytes: Operation was cancelled`) while its
/// sending thread still writes, which then fails as "Could not send message. (Received
/// end-of-file)", and gst-launch exits 1. It comes after the last frame was sent, and
/// it is the client's: beside GStreamer's own RTSP server it failed so in 2 of 33 runs
/// over TCP with a busy core (2026-12-06), as in 3 of 30 here. The frames the player
/// recorded, checked after, say whether anything was lost.
fn closing_race(stderr: &str) -> bool {
    stderr.contains("Operation was cancelled")
        && stderr.contains("Could not send message. (Received end-of-file)")
        && !stderr.contains("Could not open resource")
}
