//! Shared pieces of the integration tests: an origin on real sockets, entries, and real
//! ffmpeg/ffprobe processes with time limits.

#![allow(dead_code)]

pub mod balancer;
pub mod cluster;
pub mod hosts;
pub mod netns;
pub mod processes;

use longhaul_origin::{Config, Origin};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// An RTMP message on stream 1, as an encoder sends it.
pub fn msg(type_id: u8, timestamp: u32, payload: Vec<u8>) -> longhaul_rtmp::RtmpMessage {
    longhaul_rtmp::RtmpMessage {
        timestamp,
        type_id,
        stream_id: 1,
        payload: bytes::Bytes::from(payload),
    }
}

/// `[rtsp]` on an ephemeral port: merge it into [`start_origin`]'s config.
pub const RTSP_ON: &str = "[rtsp]\nlisten = \"127.0.0.1:0\"\nudp_listen = \"127.0.0.1:0\"\n";

/// Every ffmpeg run is bounded: no test waits on a hung process for longer than this.
pub const PROCESS_LIMIT: Duration = Duration::from_secs(60);

pub struct TestOrigin {
    pub origin: Origin,
    pub dir: tempfile::TempDir,
}

impl TestOrigin {
    pub fn rtmp(&self) -> String {
        format!("rtmp://{}", self.origin.rtmp_addr)
    }
    pub fn rtmps(&self) -> String {
        format!(
            "rtmps://{}",
            self.origin.rtmps_addr.expect("rtmps configured")
        )
    }
    pub fn http(&self) -> String {
        format!("http://{}", self.origin.http_addr)
    }
    /// `rtsps://ADDR` of the origin's RTSPS listener (`[rtsp] tls_listen`).
    pub fn rtsps(&self) -> String {
        format!(
            "rtsps://{}",
            self.origin.rtsps_addr.expect("rtsps configured")
        )
    }
    /// `rtsp://ADDR` of the origin's RTSP listener (start it with [`RTSP_ON`]).
    pub fn rtsp(&self) -> String {
        format!("rtsp://{}", self.origin.rtsp_addr.expect("rtsp configured"))
    }
    pub fn registry(&self) -> &std::sync::Arc<longhaul_registry::Registry> {
        self.origin
            .state
            .registry
            .as_ref()
            .expect("the test origin keeps a registry")
    }
    pub async fn create_entry(&self) -> longhaul_registry::Entry {
        self.registry()
            .create_entry(Some("test"))
            .await
            .expect("create entry")
    }
    /// Regenerates entry `id`'s token through the API, as an operator would (200 asserted).
    pub async fn regenerate_token(&self, id: &str) {
        let url = format!("{}/api/v1/entries/{id}/regenerate-token", self.http());
        let (status, _, _) = http("POST", &url, "", None).await;
        assert_eq!(status, 200, "regenerate-token at {url}");
    }
    /// Waits until `name` is being published (bounded).
    pub async fn wait_live(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self
                .origin
                .state
                .hub
                .streams()
                .iter()
                .any(|s| s.key.name == name)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("stream {name} did not go live within 20 s");
    }
    pub fn metrics(&self) -> String {
        self.origin.state.metrics.render()
    }
}

/// `[endpoints]` as production hands them out (config/origin.toml's form): leg
/// subdomains of `kpublish.example.com`, RTSP on 554 and RTSPS on 322 at the data
/// centres, speed tests for both data centres, regions fra, gru and sin (RTMP only; fra
/// and gru with a speed test). Merge it into [`start_origin`]'s config.
pub const PRODUCTION_ENDPOINTS: &str = r#"
    [endpoints]
    host = "kpublish.example.com"
    rtmp_port = 1935
    rtmps_port = 443
    rtsp_port = 554
    rtsps_port = 322
    leg_subdomains = true
    speed_tests = [
      { region = "nyc", name = "US (New York)", url = "http://ny-publish-speedtest.example.com" },
      { region = "pao", name = "US (Palo Alto)", url = "http://pa-publish-speedtest.example.com" },
    ]
    [[endpoints.regions]]
    region = "fra"
    name = "EMEA (Frankfurt)"
    host = "fra.kpublish.example.com"
    speed_test = "http://fr-publish-speedtest.example.com"
    [[endpoints.regions]]
    region = "gru"
    name = "LATAM (Sao Paulo)"
    host = "gru.kpublish.example.com"
    speed_test = "http://br-publish-speedtest.example.com"
    [[endpoints.regions]]
    region = "sin"
    name = "APAC (Singapore)"
    host = "sin.kpublish.example.com"
"#;

/// Starts an origin on ephemeral ports with RTMPS and a fresh registry; `extra` is TOML
/// merged over that config (e.g. `[ingest]\nmedia_timeout_secs = 0.5`).
pub async fn start_origin(extra: &str) -> TestOrigin {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path());
    let doc = format!(
        r#"
        [node]
        id = "test-origin"
        region = "nyc"
        [rtmp]
        listen = "127.0.0.1:0"
        [rtmps]
        listen = "127.0.0.1:0"
        cert = {cert:?}
        key = {key:?}
        [http]
        listen = "127.0.0.1:0"
        [registry]
        path = {db:?}
        "#,
        cert = cert.display().to_string(),
        key = key.display().to_string(),
        db = dir.path().join("registry.db").display().to_string(),
    );
    let mut table: toml::Table = doc.parse().expect("test config");
    let extra: toml::Table = extra.parse().expect("extra test config");
    // A `[registry]` of the test's own (PostgreSQL, say) replaces the SQLite file.
    if extra.contains_key("registry") {
        table.remove("registry");
    }
    merge(&mut table, extra);
    let config: Config = table.try_into().expect("test config");
    let origin = Origin::start(config).await.expect("origin starts");
    TestOrigin { origin, dir }
}

/// Merges `over` into `base`, table by table.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

/// Fails loudly when ffmpeg is missing: `.ci/run` installs it.
pub fn require_ffmpeg() {
    for tool in ["ffmpeg", "ffprobe"] {
        let ok = Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        assert!(
            ok,
            "{tool} is not installed: run .ci/run, which installs it from Debian's packages"
        );
    }
}

/// A test source published to `url`: H.264 + AAC, `seconds` long, one keyframe per
/// `gop` frames, at real time (`-re`), like a live encoder.
pub fn ffmpeg_publish(url: &str, size: &str, seconds: u32, gop: u32) -> Child {
    ffmpeg_encode(size, seconds, gop)
        .args(["-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg")
}

/// ffmpeg encoding the test source (`size`, 25 fps, a keyframe every `gop` frames, with
/// AAC) for `seconds` at real time; the output is the caller's.
fn ffmpeg_encode(size: &str, seconds: u32, gop: u32) -> Command {
    let mut command = Command::new("ffmpeg");
    command
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", &format!("testsrc=size={size}:rate=25")])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-g", &gop.to_string(), "-c:a", "aac", "-b:a", "64k"]);
    command
}

/// [`ffmpeg_publish`] over RTSP: ANNOUNCE and RECORD to `url`, RTP over `transport`
/// (`tcp`, interleaved in the RTSP connection, or `udp`).
pub fn ffmpeg_publish_rtsp(url: &str, transport: &str, seconds: u32, gop: u32) -> Child {
    ffmpeg_encode("320x240", seconds, gop)
        .args(["-f", "rtsp", "-rtsp_transport", transport, url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg")
}

/// Fails loudly when GStreamer's RTSP client sink is missing: `.ci/run` installs it.
pub fn require_gstreamer() {
    let ok = Command::new("gst-inspect-1.0")
        .args(["rtspclientsink"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "GStreamer's rtspclientsink is not installed: run .ci/run, which installs \
         gstreamer1.0-rtsp and friends from Debian's packages"
    );
}

/// GStreamer publishing 320x240 H.264 (x264enc, one keyframe for the whole clip) and
/// AAC (avenc_aac) to `url` with `rtspclientsink`, RTP over `protocols` (`tcp`,
/// `udp`), `frames` video frames at 25 fps in real time.
pub fn gstreamer_publish_rtsp(url: &str, protocols: &str, frames: u32) -> Child {
    let audio_buffers = frames * 1764 / 1024; // 44.1 kHz, 1024 samples a buffer
    let pipeline = format!(
        "videotestsrc num-buffers={frames} is-live=true \
         ! video/x-raw,width=320,height=240,framerate=25/1 \
         ! x264enc tune=zerolatency key-int-max=1000 speed-preset=ultrafast ! h264parse \
         ! queue ! s.sink_0 \
         audiotestsrc num-buffers={audio_buffers} samplesperbuffer=1024 is-live=true \
         ! audio/x-raw,rate=44100,channels=1 ! avenc_aac ! aacparse ! queue ! s.sink_1 \
         rtspclientsink name=s protocols={protocols} location={url}"
    );
    Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        // Warnings and errors to stderr, which a failed or hung run prints.
        .env("GST_DEBUG", "*:2")
        .env("GST_DEBUG_NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gst-launch-1.0")
}

/// [`ffmpeg_publish`]'s encode (320x240, 25 fps, a keyframe a second) sent to both
/// `urls` at once with ffmpeg's `tee` muxer, as an encoder sends a rendition's primary
/// and backup legs: a leg that fails is dropped (`onfail=ignore`) and the other goes on.
pub fn ffmpeg_tee(urls: [&str; 2], seconds: u32) -> Child {
    let outputs = urls.map(|u| format!("[f=flv:onfail=ignore]{u}")).join("|");
    ffmpeg_encode("320x240", seconds, 25)
        // The flv muxer needs the codecs' headers up front; tee does not ask for them.
        .args(["-flags", "+global_header", "-map", "0:v", "-map", "1:a"])
        .args(["-f", "tee", &outputs])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg")
}

/// Video packet timestamps (seconds) of a recording, in order.
pub fn video_times(file: &Path) -> Vec<f64> {
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

/// Checks a recording of a 25 fps stream that a player `what` joined with `left`
/// seconds of it to go: video timestamps always forward, no hole over two frame
/// durations, and at least what was left. The worst hole, seconds.
pub fn check_recording(file: &Path, left: f64, what: &str) -> f64 {
    let times = video_times(file);
    assert!(times.len() > 25, "{what} got {} frames", times.len());
    assert!(
        times.windows(2).all(|w| w[1] > w[0]),
        "{what}: video timestamps went back"
    );
    let worst = times.windows(2).map(|w| w[1] - w[0]).fold(0.0f64, f64::max);
    assert!(
        worst <= 0.081,
        "a hole of {worst:.3} s in what {what} received"
    );
    let span = times.last().copied().unwrap_or_default() - times[0];
    assert!(
        span >= left - 0.5,
        "{what} got {span:.2} s of the {left:.2} s left of the clip when it joined"
    );
    worst
}

/// Records `url` (RTMP or HTTP-FLV) with stream copy into `out` until the stream ends.
pub fn ffmpeg_record(url: &str, out: &Path) -> Child {
    Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-y",
            "-i",
            url,
            "-c",
            "copy",
            "-f",
            "flv",
        ])
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg")
}

/// Waits for `child` within [`PROCESS_LIMIT`], killing it past that.
pub fn wait_bounded(mut child: Child) -> Output {
    let deadline = Instant::now() + PROCESS_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().expect("collect output"),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect output");
                panic!(
                    "process ran past {PROCESS_LIMIT:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("waiting for process: {e}"),
        }
    }
}

/// Async form of [`wait_bounded`], for tests on the tokio runtime.
pub async fn wait_child(child: Child) -> Output {
    tokio::task::spawn_blocking(move || wait_bounded(child))
        .await
        .expect("wait task")
}

/// What ffprobe reports of a file's streams.
#[derive(Debug, PartialEq)]
pub struct Probe {
    pub video_codec: String,
    pub width: u64,
    pub height: u64,
    pub video_frames: u64,
    pub audio_codec: String,
}

pub fn probe(file: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,codec_name,width,height,nb_read_frames",
        ])
        .args(["-of", "json"])
        .arg(file)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe json");
    let streams = v["streams"].as_array().expect("streams");
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("a video stream");
    let audio = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .expect("an audio stream");
    Probe {
        video_codec: video["codec_name"].as_str().unwrap_or("").into(),
        width: video["width"].as_u64().unwrap_or(0),
        height: video["height"].as_u64().unwrap_or(0),
        video_frames: video["nb_read_frames"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        audio_codec: audio["codec_name"].as_str().unwrap_or("").into(),
    }
}

/// The value of a Prometheus series, by its exact text before the value.
pub fn metric(text: &str, series_prefix: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(series_prefix) && !l.starts_with('#'))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One HTTP request with hyper; returns status, content type and body. A body is sent
/// as JSON.
pub async fn http(
    method: &str,
    url: &str,
    body: &str,
    bearer: Option<&str>,
) -> (u16, String, bytes::Bytes) {
    let content_type = (!body.is_empty()).then_some("application/json");
    request(method, url, content_type, body, bearer).await
}

/// One HTTP request with a body of the given content type.
pub async fn http_typed(
    method: &str,
    url: &str,
    content_type: &str,
    body: &str,
) -> (u16, String, bytes::Bytes) {
    request(method, url, Some(content_type), body, None).await
}

async fn request(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: &str,
    bearer: Option<&str>,
) -> (u16, String, bytes::Bytes) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some(content_type) = content_type {
        req = req.header("content-type", content_type);
    }
    if let Some(token) = bearer {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let resp = client.request(req).await.expect("API reachable");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, content_type, body)
}

/// The `error.code` of a JSON error body.
pub fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).expect("a JSON error body");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    v["error"]["code"].as_str().unwrap_or_default().to_string()
}
