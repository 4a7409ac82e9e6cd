//! Failover that keeps the encoder connected (tunnel wire format v2), end to end: real
//! origin and edge processes, real QUIC tunnels, a real ffmpeg encoder publishing
//! through the edge and a real ffmpeg player on the origin that takes the stream after
//! the fault.
//!
//! For each fault on the primary origin (killed, frozen) the test asserts that
//! - the encoder was never disconnected: its ffmpeg ran to the end and exited 0;
//! - the stream went on at the other origin, and what its player received from the
//!   moment it joined has no hole (video packets at most two frame durations apart)
//!   and runs to the end of the clip;
//! - the edge gave up no frame it had not seen acknowledged (`failover_frames_total
//!   {what="lost"}` is 0) and the origin that took the stream over missed none
//!   (`tunnel_resent_frames_total{what="missing"}` is 0);
//!
//! and prints the time from the fault to the stream being live at the other origin,
//! with the edge's own detection and resume times.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::processes::*;
use support::*;

/// No failback within a test (the primary is gone or frozen anyway), and the
/// router's short recovery hold.
const ROUTER: &str = "[router]\nrecover_hold_ms = 1000\nfailback_after_ms = 600000";

/// The clip: 14 s at 25 fps, a keyframe every second.
const SECONDS: u32 = 14;
const GOP: u32 = 25;

/// Video packet timestamps (seconds) of a recording, in order.
fn video_times(file: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

/// What a fault does to the primary origin, and undoes at the end.
enum Fault {
    Kill,
    Freeze,
}

async fn encoder_stays_connected_through(fault: Fault) {
    require_ffmpeg();
    let cluster = Cluster::new();
    let (pao, nyc, fra) = cluster.two_origins_and_an_edge(ROUTER).await;
    let entry = cluster.registry().await.create_entry(None).await.unwrap();
    let name = format!("{}_1", entry.id);
    let url = format!(
        "rtmp://{}/kLive/?t={}/{name}",
        fra.addr("rtmp"),
        entry.token
    );
    let publisher = ffmpeg_publish(&url, "320x240", SECONDS, GOP);
    let started = Instant::now();
    wait_live(&pao, &name).await;
    // Media flows to the primary for a while, acknowledged as it goes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pao_pid = pao.pid() as i32;
    let signal = |sig| {
        // SAFETY: kill(2) on a child process id of this test.
        assert_eq!(unsafe { libc::kill(pao_pid, sig) }, 0);
    };
    let faulted = Instant::now();
    let frozen = match fault {
        Fault::Kill => {
            drop(pao);
            None
        }
        Fault::Freeze => {
            signal(libc::SIGSTOP);
            Some(pao)
        }
    };
    let stream = wait_live(&nyc, &name).await;
    let live_after = faulted.elapsed();
    assert_eq!(stream["leg"], "primary", "{stream}");
    assert_eq!(stream["via_edge"], "fra-test", "{stream}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("played.flv");
    let player = ffmpeg_record(&format!("rtmp://{}/kLive/{name}", nyc.addr("rtmp")), &file);
    // What is left of the clip when the player starts (it gets a little more: the
    // origin's GOP cache from the last keyframe).
    let left = f64::from(SECONDS) - started.elapsed().as_secs_f64();
    let out = wait_child(publisher).await;
    assert!(
        out.status.success(),
        "the encoder was disconnected: {}\nedge: {}",
        String::from_utf8_lossy(&out.stderr),
        fra.logs()
    );
    let out = wait_child(player).await;
    assert!(
        out.status.success(),
        "player on nyc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let times = video_times(&file);
    assert!(times.len() > 25, "the player got {} frames", times.len());
    let worst = times.windows(2).map(|w| w[1] - w[0]).fold(0.0f64, f64::max);
    assert!(
        worst <= 0.081,
        "a hole of {worst:.3} s in what the player on nyc received"
    );
    let span = times.last().copied().unwrap_or_default() - times[0];
    assert!(
        span >= left - 0.5,
        "the player on nyc got {span:.2} s of the {left:.2} s left of the clip when it joined"
    );

    let m = metrics_of(&fra).await;
    let failovers = metric(
        &m,
        "longhaul_failovers_total",
        &[("from", PAO.id), ("to", NYC.id)],
    );
    assert_eq!(failovers, 1.0, "{m}");
    assert_eq!(
        metric(&m, "longhaul_failover_frames_total", &[("what", "lost")]),
        0.0
    );
    let resent = metric(&m, "longhaul_failover_frames_total", &[("what", "resent")]);
    let detect = metric(&m, "longhaul_failover_detect_seconds_sum", &[]);
    let resume = metric(&m, "longhaul_failover_resume_seconds_sum", &[]);
    let n = metrics_of(&nyc).await;
    assert_eq!(
        metric(
            &n,
            "longhaul_tunnel_resumes_total",
            &[("how", "moved_here")]
        ),
        1.0,
        "{n}"
    );
    assert_eq!(
        metric(
            &n,
            "longhaul_tunnel_resent_frames_total",
            &[("what", "missing")]
        ),
        0.0
    );
    eprintln!(
        "live on nyc {:.3} s after the fault; the edge detected it in {detect:.3} s and resumed in {resume:.3} s, resending {resent} frames; worst hole at the player {worst:.3} s",
        live_after.as_secs_f64()
    );
    fra.logged(&["relayed stream resumed", PAO.id, NYC.id])
        .await;
    if frozen.is_some() {
        signal(libc::SIGCONT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_encoder_stays_connected_when_its_primary_origin_is_killed() {
    encoder_stays_connected_through(Fault::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_encoder_stays_connected_when_its_primary_origin_freezes() {
    encoder_stays_connected_through(Fault::Freeze).await;
}
