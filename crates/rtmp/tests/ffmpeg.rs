//! `ServerSession` against the real ffmpeg (`/usr/bin/ffmpeg`), as publisher and player.
//!
//! Each test runs a one-connection tokio server on 127.0.0.1:0 and one ffmpeg process,
//! both bounded in time (ffmpeg is killed on timeout). Skipped, with a notice, when
//! ffmpeg is not installed.

mod common;

use common::{serve, Policy, Recorded};
use longhaul_rtmp::connection::{ClientError, Player, Publisher, RtmpUrl};
use longhaul_rtmp::message::type_id;
use longhaul_rtmp::RtmpMessage;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::net::TcpListener;

const FFMPEG: &str = "/usr/bin/ffmpeg";
/// Bound on one ffmpeg run (a 2 s stream at real time, plus start-up on a busy machine).
const FFMPEG_TIMEOUT: Duration = Duration::from_secs(60);

fn have_ffmpeg() -> bool {
    if Path::new(FFMPEG).exists() {
        true
    } else {
        eprintln!("NOTICE: {FFMPEG} not found, skipping the real-ffmpeg test");
        false
    }
}

/// Runs ffmpeg with `args`; `None` if it had to be killed after the timeout.
async fn run_ffmpeg(args: &[&str]) -> Option<Output> {
    let child = tokio::process::Command::new(FFMPEG)
        .args(["-hide_banner", "-nostdin", "-loglevel", "info"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg");
    tokio::time::timeout(FFMPEG_TIMEOUT, child.wait_with_output())
        .await
        .ok()
        .map(|r| r.expect("ffmpeg output"))
}

/// Serves one connection with `policy` while ffmpeg runs `args` (`{url}` replaced by
/// `rtmp://127.0.0.1:PORT` + `path`).
async fn serve_ffmpeg(policy: Policy, path: &str, args: &[&str]) -> (Recorded, Output) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("rtmp://{}{}", listener.local_addr().unwrap(), path);
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        serve(socket, policy).await
    });
    let args: Vec<String> = args.iter().map(|a| a.replace("{url}", &url)).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run_ffmpeg(&args)
        .await
        .expect("ffmpeg finished within the timeout");
    let recorded = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("server finished after ffmpeg exited")
        .unwrap();
    (recorded, output)
}

const PUBLISH_ARGS: &[&str] = &[
    "-re",
    "-f",
    "lavfi",
    "-i",
    "testsrc=size=320x240:rate=25",
    "-f",
    "lavfi",
    "-i",
    "sine",
    "-t",
    "2",
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-g",
    "25",
    "-c:a",
    "aac",
    "-f",
    "flv",
    "{url}",
];

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_published_media(recorded: &Recorded, output: &Output) {
    assert!(
        output.status.success(),
        "ffmpeg failed:\n{}",
        stderr(output)
    );
    assert_eq!(recorded.error, None, "{recorded:?}");
    let metadata = recorded
        .media
        .iter()
        .find(|m| m.type_id == type_id::DATA_AMF0)
        .expect("a data message");
    // Passed through untouched: ffmpeg's `@setDataFrame`, `onMetaData`, object.
    assert!(metadata.payload.starts_with(b"\x02\x00\x0d@setDataFrame"));
    assert!(metadata.payload.windows(10).any(|w| w == b"onMetaData"));
    let video: Vec<&RtmpMessage> = recorded.media.iter().filter(|m| m.is_video()).collect();
    let audio: Vec<&RtmpMessage> = recorded.media.iter().filter(|m| m.is_audio()).collect();
    // AVC sequence header first, AAC sequence header first.
    assert_eq!(
        video.first().map(|m| &m.payload[..2]),
        Some(&[0x17, 0x00][..])
    );
    assert_eq!(
        audio.first().map(|m| &m.payload[..2]),
        Some(&[0xaf, 0x00][..])
    );
    assert!(video.len() >= 40, "{} video messages", video.len());
    assert!(audio.len() >= 40, "{} audio messages", audio.len());
    assert!(
        recorded.publish_finished || recorded.peer_closed,
        "{recorded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_with_the_token_in_the_app() {
    if !have_ffmpeg() {
        return;
    }
    let (recorded, output) = serve_ffmpeg(
        Policy::AcceptPublish,
        "/kLive/?t=abc/1_abcdefgh_1",
        PUBLISH_ARGS,
    )
    .await;
    let connect = recorded.connect.as_ref().expect("connect");
    assert_eq!(connect.app, "kLive/?t=abc");
    let tc_url = connect.tc_url.as_deref().expect("tcUrl");
    assert!(tc_url.starts_with("rtmp://127.0.0.1:") && tc_url.ends_with("/kLive/?t=abc"));
    assert!(connect.flash_ver.is_some());
    let (stream_id, name, publish_type) = recorded.publish.clone().expect("publish");
    assert_eq!(
        (stream_id, name.as_str(), publish_type.as_str()),
        (1, "1_abcdefgh_1", "live")
    );
    assert_published_media(&recorded, &output);
    eprintln!(
        "ffmpeg connect object: {:?}\nunhandled commands: {:?}\nmedia messages: {}\npublish finished: {} peer closed: {}",
        connect.command_object,
        recorded.unhandled,
        recorded.media.len(),
        recorded.publish_finished,
        recorded.peer_closed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_with_the_token_in_the_stream_name() {
    if !have_ffmpeg() {
        return;
    }
    let (recorded, output) = serve_ffmpeg(
        Policy::AcceptPublish,
        "/kLive/1_abcdefgh_1?t=abc",
        PUBLISH_ARGS,
    )
    .await;
    assert_eq!(recorded.connect.as_ref().expect("connect").app, "kLive");
    let (_, name, _) = recorded.publish.clone().expect("publish");
    assert_eq!(name, "1_abcdefgh_1?t=abc");
    assert_published_media(&recorded, &output);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_exits_non_zero_on_a_rejected_publish() {
    if !have_ffmpeg() {
        return;
    }
    let policy = Policy::RejectPublish {
        code: "NetStream.Publish.BadName".into(),
        description: "token refused by longhaul test".into(),
    };
    let (recorded, output) = serve_ffmpeg(policy, "/kLive/?t=bad/1_abcdefgh_1", PUBLISH_ARGS).await;
    assert!(recorded.publish.is_some());
    assert!(
        !output.status.success(),
        "ffmpeg succeeded:\n{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("token refused by longhaul test"),
        "ffmpeg did not print the server's reason:\n{}",
        stderr(&output)
    );
    assert!(recorded.media.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_exits_non_zero_on_a_rejected_connect() {
    if !have_ffmpeg() {
        return;
    }
    let policy = Policy::RejectConnect {
        description: "app refused by longhaul test".into(),
    };
    let (recorded, output) = serve_ffmpeg(policy, "/kLive/x", PUBLISH_ARGS).await;
    assert!(recorded.connect.is_some());
    assert!(recorded.publish.is_none());
    assert!(
        !output.status.success(),
        "ffmpeg succeeded:\n{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_plays_recorded_messages() {
    if !have_ffmpeg() {
        return;
    }
    // Record a real stream first, then replay it to ffmpeg as a player.
    let (recorded, output) = serve_ffmpeg(Policy::AcceptPublish, "/kLive/x", PUBLISH_ARGS).await;
    assert_published_media(&recorded, &output);

    let (played, output) = serve_ffmpeg(
        Policy::Play(recorded.media),
        "/kLive/x",
        &["-i", "{url}", "-t", "1", "-f", "null", "-"],
    )
    .await;
    let log = stderr(&output);
    assert!(output.status.success(), "ffmpeg player failed:\n{log}");
    assert_eq!(
        played.play.as_ref().map(|(id, n)| (*id, n.as_str())),
        Some((1, "x"))
    );
    assert!(log.contains("Video: h264"), "{log}");
    assert!(log.contains("Audio: aac"), "{log}");
    // "frame=   25" or more: frames were decoded.
    let frames: u32 = log
        .rsplit("frame=")
        .next()
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(frames >= 20, "only {frames} frames decoded:\n{log}");
}

/// A port free a moment ago, for an ffmpeg that listens itself (`-listen 1`).
async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Connects to ffmpeg once it listens (it takes a moment to start).
async fn connect_when_listening(port: u16) -> tokio::net::TcpStream {
    for _ in 0..200 {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ffmpeg did not listen on port {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_pushes_to_a_listening_ffmpeg() {
    if !have_ffmpeg() {
        return;
    }
    let (recorded, output) = serve_ffmpeg(Policy::AcceptPublish, "/kLive/x", PUBLISH_ARGS).await;
    assert_published_media(&recorded, &output);

    let port = free_port().await;
    let url = format!("rtmp://127.0.0.1:{port}/live/x");
    let ffmpeg = tokio::spawn({
        let url = url.clone();
        async move { run_ffmpeg(&["-listen", "1", "-i", &url, "-f", "null", "-"]).await }
    });
    let io = connect_when_listening(port).await;
    let config = RtmpUrl::parse(&url).unwrap().client_config();
    let mut publisher = tokio::time::timeout(FFMPEG_TIMEOUT, Publisher::start(io, config, "x"))
        .await
        .expect("ffmpeg answered in time")
        .expect("ffmpeg accepted the publish");
    for m in &recorded.media {
        publisher.send(m).await.expect("send");
    }
    publisher.finish().await.expect("finish");
    let output = ffmpeg.await.unwrap().expect("ffmpeg finished in time");
    let log = stderr(&output);
    assert!(output.status.success(), "listening ffmpeg failed:\n{log}");
    assert!(
        log.contains("Video: h264") && log.contains("Audio: aac"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn player_plays_from_a_listening_ffmpeg() {
    if !have_ffmpeg() {
        return;
    }
    let port = free_port().await;
    let url = format!("rtmp://127.0.0.1:{port}/live/x");
    let mut args: Vec<&str> = PUBLISH_ARGS[..PUBLISH_ARGS.len() - 1].to_vec();
    args.extend(["-listen", "1", &url]);
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let ffmpeg = tokio::spawn(async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ffmpeg(&args).await
    });
    let io = connect_when_listening(port).await;
    let config = RtmpUrl::parse(&url).unwrap().client_config();
    let received = tokio::time::timeout(FFMPEG_TIMEOUT, async {
        let mut player = Player::start(io, config, "x").await?;
        eprintln!("ffmpeg's createStream gave stream {}", player.stream_id());
        let mut received = Vec::new();
        while let Some(m) = player.recv().await? {
            received.push(m);
        }
        Ok::<_, ClientError>(received)
    })
    .await
    .expect("stream ended in time")
    .expect("play works");
    let output = ffmpeg.await.unwrap().expect("ffmpeg finished in time");
    assert!(
        output.status.success(),
        "ffmpeg failed:\n{}",
        stderr(&output)
    );
    eprintln!(
        "ffmpeg sent media on stream ids {:?}",
        received
            .iter()
            .map(|m| m.stream_id)
            .collect::<std::collections::BTreeSet<_>>()
    );
    let video = received.iter().filter(|m| m.is_video()).count();
    let audio = received.iter().filter(|m| m.is_audio()).count();
    assert!(
        video >= 40 && audio >= 40,
        "{video} video, {audio} audio messages"
    );
    assert!(received.iter().any(|m| m.is_data()), "no metadata");
}
