//! One continuous stream per rendition at an origin. A real ffmpeg encoder sends both
//! legs of a rendition, the way the product's primary and backup URLs ask, with ffmpeg's
//! `tee` muxer and `onfail=ignore`; its primary leg goes through a TCP relay the test can
//! cut. Players of the rendition attach at the origin: ffmpeg recording it over RTMP and
//! over HTTP-FLV (one HTTP connection), and an RTMP client of the test's own that times
//! each frame's arrival. Mid-stream the primary leg's connection is cut (the origin sees
//! the leg end) or turned into a black hole (the leg goes silent), as a network failure
//! between the encoder and its primary would; the test checks that
//!
//! - the encoder ran to the end (its backup leg carried on);
//! - no player's connection closed before the end, and each got the stream to its end
//!   with timestamps that never went back and no hole in the video;
//! - the streams API and the metrics name the backup on air, and the switch;
//!
//! and prints the longest wait between two frames at the timing player. A last test
//! sends the legs through two edges instead (`fra-p`, `fra-b`, both to one origin) and
//! kills the primary leg's edge.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A TCP relay to `target` that the test can cut ([`Relay::cut`]: every connection
/// closed) or turn into a black hole ([`Relay::blackhole`]: connections stay open, bytes
/// are read and dropped both ways, as on a path that died without a word).
struct Relay {
    addr: SocketAddr,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
    blackhole: Arc<AtomicBool>,
}

/// Copies `from` to `to` until either closes; drops what it reads while `blackhole`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    blackhole: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !blackhole.load(Ordering::Relaxed) && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let blackhole = Arc::new(AtomicBool::new(false));
        let (held, hole) = (tasks.clone(), blackhole.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(node) = TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (node_read, node_write) = node.into_split();
                let up = tokio::spawn(pump(client_read, node_write, hole.clone()));
                let down = tokio::spawn(pump(node_read, client_write, hole.clone()));
                held.lock()
                    .unwrap()
                    .extend([up.abort_handle(), down.abort_handle()]);
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Relay {
            addr,
            tasks,
            blackhole,
        }
    }

    /// Drops every connection (and takes no more): both ends see it closed.
    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// From now on nothing crosses, and nobody is told.
    fn blackhole(&self) {
        self.blackhole.store(true, Ordering::Relaxed);
    }
}

/// What happens to the primary leg.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// Its connection is closed: the origin sees the leg end.
    Cut,
    /// Its connection stays open and carries nothing: the origin sees the leg go silent.
    Blackhole,
}

/// The clip: 12 s at 25 fps, a keyframe every second.
const SECONDS: u32 = 12;

/// Waits for the timing player (at most 30 s); checks it played to the end with
/// timestamps always forward and got over 100 frames after `fault`. The frames after
/// the fault, and the longest wait between two frames over the whole play.
async fn timing_figures(
    timing: tokio::task::JoinHandle<Result<Vec<(u32, Instant)>, String>>,
    fault: Instant,
) -> (usize, Duration) {
    let frames = tokio::time::timeout(Duration::from_secs(30), timing)
        .await
        .expect("the timing player ends")
        .expect("the timing task")
        .expect("the timing player played to the end");
    assert!(
        frames.windows(2).all(|w| w[1].0 > w[0].0),
        "timestamps went back at the timing player"
    );
    let after = frames.iter().filter(|f| f.1 >= fault).count();
    assert!(after > 100, "{after} frames after the fault");
    let longest = frames
        .windows(2)
        .map(|w| w[1].1.duration_since(w[0].1))
        .max()
        .unwrap_or_default();
    (after, longest)
}

/// What the timing player saw: per video frame, its timestamp and when it arrived.
async fn time_frames(url: String) -> Result<Vec<(u32, Instant)>, String> {
    let url = longhaul_rtmp::RtmpUrl::parse(&url).map_err(|e| e.to_string())?;
    let io = TcpStream::connect(url.address())
        .await
        .map_err(|e| e.to_string())?;
    let mut player = longhaul_rtmp::Player::start(io, url.client_config(), &url.name)
        .await
        .map_err(|e| e.to_string())?;
    let mut frames = Vec::new();
    loop {
        match player.recv().await {
            Ok(Some(m)) if m.type_id == 9 && m.payload.get(1) == Some(&1) => {
                frames.push((m.timestamp, Instant::now()))
            }
            Ok(Some(_)) => {}
            Ok(None) => return Ok(frames),
            Err(e) => return Err(format!("{e} after {} frames", frames.len())),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendition_plays_on_from_the_backup_when_the_primary_legs_connection_is_cut() {
    the_rendition_plays_on_from_the_backup(Fault::Cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendition_plays_on_from_the_backup_when_the_primary_leg_goes_silent() {
    the_rendition_plays_on_from_the_backup(Fault::Blackhole).await;
}

/// Publishes both legs, applies `fault` to the primary's connection, checks the players.
async fn the_rendition_plays_on_from_the_backup(fault: Fault) {
    require_ffmpeg();
    let origin = start_origin("").await;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let relay = Relay::start(origin.origin.rtmp_addr).await;
    let primary = format!("rtmp://{}/kLive/?t={}&i=0/{name}", relay.addr, entry.token);
    let backup = format!("{}/kLive/?t={}&i=1/{name}", origin.rtmp(), entry.token);
    let encoder = ffmpeg_tee([&primary, &backup], SECONDS);
    let started = Instant::now();
    let hub = origin.origin.state.hub.clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !hub.renditions().iter().any(|r| {
        r.name == name
            && r.primary_live
            && r.backup_live
            && r.on_air == Some(longhaul_hub::Leg::Primary)
    }) {
        assert!(Instant::now() < deadline, "both legs never went live");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let rtmp_file = dir.path().join("rtmp.flv");
    let flv_file = dir.path().join("http.flv");
    let rtmp_player = ffmpeg_record(&format!("{}/kLive/{name}", origin.rtmp()), &rtmp_file);
    let flv_player = ffmpeg_record(&format!("{}/live/{name}.flv", origin.http()), &flv_file);
    let timing = tokio::spawn(time_frames(format!("{}/kLive/{name}", origin.rtmp())));
    let left = f64::from(SECONDS) - started.elapsed().as_secs_f64();

    tokio::time::sleep(Duration::from_secs(3)).await;
    match fault {
        Fault::Cut => relay.cut(),
        Fault::Blackhole => relay.blackhole(),
    }
    let cut = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, _, body) = http(
        "GET",
        &format!("{}/api/v1/streams", origin.http()),
        "",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let rendition = &v["renditions"][0];
    assert_eq!(rendition["name"], name.as_str(), "{v}");
    assert_eq!(rendition["on_air"], "backup", "{v}");
    assert_eq!(rendition["last_switch"]["from"], "primary", "{v}");
    let reason = rendition["last_switch"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The console's cluster page lists the failover.
    let (status, _, page) = http(
        "GET",
        &format!("{}/console/cluster/live", origin.http()),
        "",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let page = String::from_utf8_lossy(&page);
    let failovers = &page[page.find("Recent failovers").expect("failovers section")..];
    assert!(
        failovers.contains(&format!("<code>{name}</code>"))
            && failovers.contains("primary → backup")
            && failovers.contains(&reason),
        "{page}"
    );
    let m = origin.metrics();
    match fault {
        // The origin saw the connection close: the leg ended.
        Fault::Cut => {
            assert_eq!(reason, "ended", "{v}");
            assert_eq!(rendition["backup_only"], true, "{v}");
            assert_eq!(
                metric(&m, "longhaul_renditions_backup_only", &[]),
                1.0,
                "{m}"
            );
        }
        // The leg is still live, and silent.
        Fault::Blackhole => {
            assert_eq!(reason, "silent", "{v}");
            assert_eq!(rendition["backup_only"], false, "{v}");
            assert_eq!(rendition["primary_live"], true, "{v}");
        }
    }

    let out = wait_child(encoder).await;
    assert!(
        out.status.success(),
        "the encoder failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (player, file, what) in [
        (rtmp_player, &rtmp_file, "RTMP"),
        (flv_player, &flv_file, "HTTP-FLV"),
    ] {
        let out = wait_child(player).await;
        assert!(
            out.status.success(),
            "the {what} player: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        check_recording(file, left, &format!("the {what} player"));
    }
    let (after, longest) = timing_figures(timing, cut).await;
    let m = origin.metrics();
    let switched = metric(&m, "longhaul_on_air_switches_total", &[("to", "backup")]);
    assert_eq!(switched, 1.0, "{m}");
    assert_eq!(
        metric(
            &m,
            "longhaul_on_air_switches_total",
            &[("to", "primary"), ("reason", "started")]
        ),
        1.0
    );
    eprintln!(
        "{fault:?}: {} frames after the fault, the longest wait between two frames {:.3} s; switched for {reason}",
        after,
        longest.as_secs_f64()
    );
}

/// The legs through two edges of a region (`fra-p` and `fra-b`, as production runs
/// them), both to nyc; the primary leg's edge is killed (SIGKILL) mid-stream. Its
/// encoder leg fails (`tee` drops it), nyc's copy of the leg goes silent (the origin
/// holds a failed tunnel publish a while for a resume that never comes), and the
/// rendition's players carry on from the backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendition_plays_on_when_the_primary_legs_edge_is_killed() {
    use support::processes::*;
    require_ffmpeg();
    let cluster = Cluster::new();
    let nyc = cluster.origin(&NYC, None);
    let edge_p = cluster.edge("fra-p-test", "fra", &[(&NYC, &nyc)], true);
    let edge_b = cluster.edge("fra-b-test", "fra", &[(&NYC, &nyc)], true);
    for edge in [&edge_p, &edge_b] {
        until_metrics(edge, "nyc healthy", |m| healthy(m, NYC.id)).await;
    }
    let entry = cluster.registry().await.create_entry(None).await.unwrap();
    let name = format!("{}_1", entry.id);
    let url = |edge: &Node, leg: u8| {
        format!(
            "rtmp://{}/kLive/?t={}&i={leg}/{name}",
            edge.addr("rtmp"),
            entry.token
        )
    };
    let encoder = ffmpeg_tee([&url(&edge_p, 0), &url(&edge_b, 1)], SECONDS);
    let started = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(15);
    let api = format!("http://{}/api/v1/streams", nyc.addr("http"));
    let on_air = |v: &serde_json::Value| v["renditions"][0]["on_air"].clone();
    loop {
        let (_, _, body) = http("GET", &api, "", None).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let r = &v["renditions"][0];
        if r["primary_live"] == true && r["backup_live"] == true && on_air(&v) == "primary" {
            break;
        }
        assert!(Instant::now() < deadline, "both legs never went live: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rtmp.flv");
    let play = format!("rtmp://{}/kLive/{name}", nyc.addr("rtmp"));
    let player = ffmpeg_record(&play, &file);
    let timing = tokio::spawn(time_frames(play));
    let left = f64::from(SECONDS) - started.elapsed().as_secs_f64();

    tokio::time::sleep(Duration::from_secs(3)).await;
    drop(edge_p); // SIGKILL
    let killed = Instant::now();

    let out = wait_child(encoder).await;
    assert!(
        out.status.success(),
        "the encoder failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = wait_child(player).await;
    assert!(
        out.status.success(),
        "the player: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_recording(&file, left, "the player");
    let (after, longest) = timing_figures(timing, killed).await;
    let m = metrics_of(&nyc).await;
    let silent = metric(
        &m,
        "longhaul_on_air_switches_total",
        &[("to", "backup"), ("reason", "silent")],
    );
    let ended = metric(
        &m,
        "longhaul_on_air_switches_total",
        &[("to", "backup"), ("reason", "ended")],
    );
    assert_eq!(silent + ended, 1.0, "{m}");
    eprintln!(
        "edge killed: {} frames after the kill, the longest wait between two frames {:.3} s; switched for {}",
        after,
        longest.as_secs_f64(),
        if silent == 1.0 { "silent" } else { "ended" }
    );
}

/// What happens to the primary leg when its legs reach two origins.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PeerFault {
    /// The encoder's connection to the primary leg's edge is cut: pao sees the leg end.
    EncoderCut,
    /// The primary leg's edge is killed: pao holds the leg for a resume, silent.
    EdgeKilled,
    /// pao, the primary leg's origin, is killed, then started again.
    OriginKilled,
}

/// The UDP port of each origin's tunnel, on its own host.
const PEER_TUNNEL_PORT: u16 = 7400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_at_the_other_origin_plays_on_when_the_primary_legs_encoder_connection_is_cut() {
    legs_at_two_origins(PeerFault::EncoderCut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_at_the_other_origin_plays_on_when_the_primary_legs_edge_is_killed() {
    legs_at_two_origins(PeerFault::EdgeKilled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_at_the_other_origin_plays_on_when_the_primary_origin_is_killed_and_fails_back() {
    legs_at_two_origins(PeerFault::OriginKilled).await;
}

/// The streams API of `node` (an origin on a host of its own, so with its token).
async fn streams_of(node: &support::processes::Node) -> serde_json::Value {
    let (status, _, body) = http(
        "GET",
        &format!("http://{}/api/v1/streams", node.addr("http")),
        "",
        node.api_token.as_deref(),
    )
    .await;
    assert_eq!(status, 200);
    serde_json::from_slice(&body).unwrap()
}

/// Polls `node`'s streams API until `check` holds of it, for at most `limit`.
async fn until_streams(
    node: &support::processes::Node,
    what: &str,
    limit: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + limit;
    loop {
        let v = streams_of(node).await;
        if check(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: never, at {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether leg `leg` of `name` is pulled from `from` and the rendition has the primary
/// on air, in a streams API answer.
fn pulled_and_on_air(v: &serde_json::Value, name: &str, leg: &str, from: &str) -> bool {
    leg_of(v, name, leg).is_some_and(|l| l["pulled_from"] == from)
        && v["renditions"][0]["on_air"] == "primary"
}

/// The leg `leg` of `name` in a streams API answer.
fn leg_of<'a>(v: &'a serde_json::Value, name: &str, leg: &str) -> Option<&'a serde_json::Value> {
    v["streams"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name && s["leg"] == leg)
}

/// The players of a rendition at one origin: ffmpeg recording it over RTMP and over
/// HTTP-FLV, and the timing player.
struct Viewers {
    at: &'static str,
    recorders: Vec<(std::process::Child, std::path::PathBuf, &'static str)>,
    timing: tokio::task::JoinHandle<Result<Vec<(u32, Instant)>, String>>,
}

impl Viewers {
    fn attach(
        node: &support::processes::Node,
        at: &'static str,
        name: &str,
        dir: &std::path::Path,
    ) -> Viewers {
        let play = format!("rtmp://{}/kLive/{name}", node.addr("rtmp"));
        let (rtmp_file, flv_file) = (
            dir.join(format!("{at}-rtmp.flv")),
            dir.join(format!("{at}-http.flv")),
        );
        let recorders = vec![
            (ffmpeg_record(&play, &rtmp_file), rtmp_file, "RTMP"),
            (
                ffmpeg_record(
                    &format!("http://{}/live/{name}.flv", node.addr("http")),
                    &flv_file,
                ),
                flv_file,
                "HTTP-FLV",
            ),
        ];
        Viewers {
            at,
            recorders,
            timing: tokio::spawn(time_frames(play)),
        }
    }

    /// Every player played to the end (`left` seconds of the clip at least) with video
    /// timestamps always forward; the timing player's longest wait between two frames is
    /// bounded. What they saw, for the log.
    async fn check(self, left: f64, at_fault: Instant) -> String {
        let mut steps = Vec::new();
        for (player, file, what) in self.recorders {
            let out = wait_child(player).await;
            assert!(
                out.status.success(),
                "the {what} player at {}: {}",
                self.at,
                String::from_utf8_lossy(&out.stderr)
            );
            let times = video_times(&file);
            assert!(
                times.windows(2).all(|w| w[1] > w[0]),
                "the {what} player at {}: video timestamps went back",
                self.at
            );
            let span = times.last().copied().unwrap_or_default()
                - times.first().copied().unwrap_or_default();
            assert!(
                span >= left - 1.5,
                "the {what} player at {} got {span:.2} s of {left:.2} s",
                self.at
            );
            let worst = times.windows(2).map(|w| w[1] - w[0]).fold(0.0f64, f64::max);
            steps.push(format!("{what} {worst:.3} s"));
        }
        let (after, longest) = timing_figures(self.timing, at_fault).await;
        assert!(
            longest < Duration::from_millis(2500),
            "the timing player at {} waited {longest:?} between two frames",
            self.at
        );
        format!(
            "at {}: {after} frames after the fault, the longest wait between two frames {:.3} s, the largest timestamp step {}",
            self.at,
            longest.as_secs_f64(),
            steps.join(", ")
        )
    }
}

/// Origin peering end to end. pao and nyc each run on a host of their own, 80 ms apart
/// (a WAN link of the project's emulator, 40 ms each way), and peer. The encoder sends
/// both legs with `tee` through two edges of one region (`fra-p`, `fra-b`, in the
/// test's namespace): leg p reaches pao, leg b nyc. Players attach at both origins;
/// each origin pulls the leg it lacks from the other for them, and both put leg p on
/// air. Then `fault` hits the primary leg: the players must play on from the backup,
/// with no connection closed and timestamps never going back, and the API and metrics
/// must show the switch and the bytes pulled. When pao itself is killed, its players go
/// with it: the check is at nyc, and pao is started again to see leg p come back on air.
async fn legs_at_two_origins(fault: PeerFault) {
    use support::hosts::{WanLink, WAN_ONE_WAY};
    use support::netns::Netns;
    use support::processes::*;
    require_ffmpeg();
    let seconds: u32 = match fault {
        PeerFault::OriginKilled => 32,
        _ => 16,
    };
    let cluster = Cluster::new();
    let (pao_host, nyc_host) = (Netns::new(), Netns::new());
    let between = WanLink::new(&pao_host, &nyc_host, WAN_ONE_WAY);
    let peering = |peer: &OriginSpec, at: std::net::IpAddr| {
        format!(
            "{}\n[on_air]\nfailback_after_ms = 2000\n[peering]\npeers = [{{ id = {:?}, region = {:?}, addr = \"{at}:{PEER_TUNNEL_PORT}\", server_name = {:?} }}]\n",
            cluster.sqlite_registry(),
            peer.id,
            peer.region,
            tunnel_name(peer.id)
        )
    };
    let (pao_rest, nyc_rest) = (
        peering(&NYC, between.origin_ip),
        peering(&PAO, between.edge_ip),
    );
    let ports = |host: &Netns| {
        Some((
            SocketAddr::new(host.ip, 1935),
            SocketAddr::new(host.ip, 8080),
            SocketAddr::new([0, 0, 0, 0].into(), PEER_TUNNEL_PORT),
        ))
    };
    let start_pao = || {
        cluster.origin_with_sections(
            &PAO,
            ports(&pao_host),
            OriginExtra {
                rest: &pao_rest,
                netns: Some(&pao_host),
                ..OriginExtra::default()
            },
        )
    };
    let mut pao = Some(start_pao());
    let nyc = cluster.origin_with_sections(
        &NYC,
        ports(&nyc_host),
        OriginExtra {
            rest: &nyc_rest,
            netns: Some(&nyc_host),
            ..OriginExtra::default()
        },
    );
    let origins = [
        (&PAO, SocketAddr::new(pao_host.ip, PEER_TUNNEL_PORT)),
        (&NYC, SocketAddr::new(nyc_host.ip, PEER_TUNNEL_PORT)),
    ];
    let router = "[router]\nrecover_hold_ms = 1000\nfailback_after_ms = 3000";
    let mut edge_p = Some(cluster.edge_on("fra-p-test", "fra", &origins, true, router, None));
    let edge_b = cluster.edge_on("fra-b-test", "fra", &origins, true, router, None);
    for edge in [edge_p.as_ref().unwrap(), &edge_b] {
        until_metrics(edge, "both origins healthy", |m| {
            healthy(m, PAO.id) && healthy(m, NYC.id)
        })
        .await;
    }
    until_metrics(&nyc, "nyc's tunnel to pao", |m| connected(m, PAO.id)).await;
    until_metrics(pao.as_ref().unwrap(), "pao's tunnel to nyc", |m| {
        connected(m, NYC.id)
    })
    .await;
    let entry = cluster.registry().await.create_entry(None).await.unwrap();
    let name = format!("{}_1", entry.id);
    let relay = Relay::start(edge_p.as_ref().unwrap().addr("rtmp")).await;
    let url =
        |at: SocketAddr, leg: u8| format!("rtmp://{at}/kLive/?t={}&i={leg}/{name}", entry.token);
    let encoder = ffmpeg_tee([&url(relay.addr, 0), &url(edge_b.addr("rtmp"), 1)], seconds);
    let started = Instant::now();
    until_streams(&nyc, "leg b live at nyc", Duration::from_secs(15), |v| {
        leg_of(v, &name, "backup").is_some()
    })
    .await;
    until_streams(
        pao.as_ref().unwrap(),
        "leg p live at pao",
        Duration::from_secs(15),
        |v| leg_of(v, &name, "primary").is_some(),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let mut viewers = vec![Viewers::attach(&nyc, "nyc", &name, dir.path())];
    if fault != PeerFault::OriginKilled {
        viewers.push(Viewers::attach(
            pao.as_ref().unwrap(),
            "pao",
            &name,
            dir.path(),
        ));
    }
    let left = f64::from(seconds) - started.elapsed().as_secs_f64();
    // nyc has viewers now: it pulls leg p from pao and, once it has been healthy for
    // the failback time (2 s here), puts it on air. pao pulls leg b from nyc.
    let v = until_streams(
        &nyc,
        "leg p pulled from pao and on air at nyc",
        Duration::from_secs(10),
        |v| pulled_and_on_air(v, &name, "primary", PAO.id),
    )
    .await;
    eprintln!("on air at nyc: {}", v["renditions"][0]);
    if fault != PeerFault::OriginKilled {
        until_streams(
            pao.as_ref().unwrap(),
            "leg b pulled from nyc to pao",
            Duration::from_secs(10),
            |v| pulled_and_on_air(v, &name, "backup", NYC.id),
        )
        .await;
    }
    let pao_m = metrics_of(pao.as_ref().unwrap()).await;
    assert!(
        metric(
            &pao_m,
            "longhaul_peer_bytes_total",
            &[("peer", NYC.id), ("direction", "out")]
        ) > 0.0,
        "pao served nyc nothing: {pao_m}"
    );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at_fault = Instant::now();
    match fault {
        PeerFault::EncoderCut => relay.cut(),
        PeerFault::EdgeKilled => drop(edge_p.take()),
        PeerFault::OriginKilled => drop(pao.take()),
    }
    let mut switched = Vec::new();
    let watched = match &pao {
        Some(pao) => vec![(&nyc, "nyc"), (pao, "pao")],
        None => vec![(&nyc, "nyc")],
    };
    for (node, at) in watched {
        let v = until_streams(node, "the backup on air", Duration::from_secs(3), |v| {
            v["renditions"][0]["on_air"] == "backup"
        })
        .await;
        let rendition = &v["renditions"][0];
        assert_eq!(rendition["last_switch"]["from"], "primary", "{at}: {v}");
        switched.push(format!(
            "at {at} {:.3} s ({})",
            at_fault.elapsed().as_secs_f64(),
            rendition["last_switch"]["reason"]
                .as_str()
                .unwrap_or_default()
        ));
    }

    if fault == PeerFault::OriginKilled {
        // pao comes back; the edge moves leg p back to it (failback, 3 s here), and nyc
        // pulls it from there again and puts it back on air (failback, 2 s).
        tokio::time::sleep(Duration::from_secs(2)).await;
        pao = Some(start_pao());
        let v = until_streams(
            &nyc,
            "leg p back from pao and on air at nyc",
            Duration::from_secs(20),
            |v| pulled_and_on_air(v, &name, "primary", PAO.id),
        )
        .await;
        eprintln!("failed back at nyc: {}", v["renditions"][0]);
    }

    let out = wait_child(encoder).await;
    assert!(
        out.status.success(),
        "the encoder failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = Vec::new();
    for v in viewers {
        seen.push(v.check(left, at_fault).await);
    }
    let m = metrics_of(&nyc).await;
    assert!(
        metric(
            &m,
            "longhaul_peer_bytes_total",
            &[("peer", PAO.id), ("direction", "in")]
        ) > 0.0,
        "{m}"
    );
    assert!(
        metric(&m, "longhaul_on_air_switches_total", &[("to", "backup")]) >= 1.0,
        "{m}"
    );
    if fault == PeerFault::OriginKilled {
        // Leg p went back on air at nyc after pao's restart.
        assert!(
            metric(
                &m,
                "longhaul_on_air_switches_total",
                &[("to", "primary"), ("reason", "failback")]
            ) >= 1.0,
            "{m}"
        );
    }
    if let Some(pao) = &pao {
        let pao_m = metrics_of(pao).await;
        // The restarted pao served nyc the leg again; a pao that stayed pulled leg b.
        assert!(
            metric(
                &pao_m,
                "longhaul_peer_bytes_total",
                &[("peer", NYC.id), ("direction", "out")]
            ) > 0.0,
            "{pao_m}"
        );
        if fault != PeerFault::OriginKilled {
            assert!(
                metric(
                    &pao_m,
                    "longhaul_peer_bytes_total",
                    &[("peer", NYC.id), ("direction", "in")]
                ) > 0.0,
                "{pao_m}"
            );
        }
    }
    eprintln!(
        "{fault:?}: the backup on air {}; {}",
        switched.join(", "),
        seen.join("; ")
    );
    drop(between);
}

/// A free UDP port on loopback, for a node's tunnel that its peer must know before it
/// starts.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// A play of a rendition at an origin that has no leg of it: the origin asks its peer,
/// which has the leg, and the player gets the stream (RTMP and HTTP-FLV). Once the
/// players have gone, the pull stops after `peering.linger_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_play_at_an_origin_with_no_leg_pulls_the_rendition_from_its_peer() {
    use support::processes::*;
    require_ffmpeg();
    let cluster = Cluster::new();
    let (pao_port, nyc_port) = (free_udp_port(), free_udp_port());
    let rest = |peer: &OriginSpec, port: u16| {
        format!(
            "{}\n[peering]\nlinger_ms = 1000\npeers = [{{ id = {:?}, region = {:?}, addr = \"127.0.0.1:{port}\", server_name = {:?} }}]\n",
            cluster.sqlite_registry(),
            peer.id,
            peer.region,
            tunnel_name(peer.id)
        )
    };
    let (pao_rest, nyc_rest) = (rest(&NYC, nyc_port), rest(&PAO, pao_port));
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let start = |spec: &OriginSpec, port: u16, rest: &str| {
        cluster.origin_with_sections(
            spec,
            Some((any, any, SocketAddr::new([127, 0, 0, 1].into(), port))),
            OriginExtra {
                rest,
                ..OriginExtra::default()
            },
        )
    };
    let pao = start(&PAO, pao_port, &pao_rest);
    let nyc = start(&NYC, nyc_port, &nyc_rest);
    until_metrics(&nyc, "nyc's tunnel to pao", |m| connected(m, PAO.id)).await;
    let entry = cluster.registry().await.create_entry(None).await.unwrap();
    let (name, url) = publish_url(&pao, &entry);
    let encoder = ffmpeg_publish(&url, "320x240", 12, 25);
    wait_live(&pao, &name).await;

    for play in [
        format!("rtmp://{}/kLive/{name}", nyc.addr("rtmp")),
        format!("http://{}/live/{name}.flv", nyc.addr("http")),
    ] {
        let probe = tokio::process::Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", "5000000"])
            .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0"])
            .arg(&play)
            .output()
            .await
            .unwrap();
        let codecs = String::from_utf8_lossy(&probe.stdout);
        assert!(
            codecs.contains("h264") && codecs.contains("aac"),
            "{play}: {codecs} {}",
            String::from_utf8_lossy(&probe.stderr)
        );
    }
    let m = metrics_of(&nyc).await;
    assert!(
        metric(&m, "longhaul_peer_legs_pulled_total", &[("peer", PAO.id)]) >= 1.0,
        "{m}"
    );
    // The players have gone: a second after the last, the pull ends and with it the
    // replica (pao keeps its own publish).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = metrics_of(&pao).await;
        let serving = metric(
            &m,
            "longhaul_peer_pulls",
            &[("peer", NYC.id), ("direction", "out")],
        );
        if serving == 0.0 && streams_of(&nyc).await["streams"] == serde_json::json!([]) {
            break;
        }
        assert!(Instant::now() < deadline, "the pull never ended: {m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(streams_of(&pao).await["streams"][0]["name"] == name.as_str());
    let out = wait_child(encoder).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The page the browser check opens: mpegts.js playing `flv` (HTTP-FLV), muted so it may
/// start on its own; mpegts.js's errors kept for the driver to read.
fn player_page(flv: &str) -> String {
    format!(
        r#"<!doctype html><html><body><video muted autoplay></video>
<script src="/mpegts.js"></script>
<script>
window.lastError = null;
const player = mpegts.createPlayer({{ type: "flv", isLive: true, url: "{flv}" }},
  {{ enableWorker: false, liveBufferLatencyChasing: false }});
player.on(mpegts.Events.ERROR, (kind, detail) => {{ window.lastError = kind + ": " + detail; }});
player.attachMediaElement(document.querySelector("video"));
player.load();
player.play();
</script></body></html>"#
    )
}

/// Serves the player page and mpegts.js on loopback until the task is dropped.
async fn serve_page(page: String) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let script = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/browser/node_modules/mpegts.js/dist/mpegts.js"),
    )
    .expect("mpegts.js: run `npm ci --prefix tests/browser` (.ci/run does)");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (page, script) = (page.clone(), script.clone());
            tokio::spawn(async move {
                let mut request = vec![0u8; 4096];
                let n = socket.read(&mut request).await.unwrap_or(0);
                let line = String::from_utf8_lossy(&request[..n]);
                let (kind, body) = if line.starts_with("GET /mpegts.js") {
                    ("application/javascript", script)
                } else if line.starts_with("GET / ") {
                    ("text/html", page.into_bytes())
                } else {
                    ("text/plain", b"not here".to_vec())
                };
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    (addr, task)
}

/// What the browser's video element said, each 200 ms.
#[derive(Debug, Clone, serde::Deserialize)]
struct VideoState {
    ms: u64,
    current: f64,
    error: Option<String>,
}

/// The browser check: the rendition's HTTP-FLV stream played by mpegts.js in Debian's
/// headless Chromium (driven by `tests/browser/play.mjs`) keeps playing when the
/// primary leg's connection is killed: the video element's currentTime goes on past the
/// kill as fast as the wall clock, with no error and no reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_player_plays_on_across_a_primary_kill() {
    require_ffmpeg();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: install Debian's chromium (.ci/run does)"
    );
    let origin = start_origin("").await;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let relay = Relay::start(origin.origin.rtmp_addr).await;
    let primary = format!("rtmp://{}/kLive/?t={}&i=0/{name}", relay.addr, entry.token);
    let backup = format!("{}/kLive/?t={}&i=1/{name}", origin.rtmp(), entry.token);
    let encoder = ffmpeg_tee([&primary, &backup], 20);
    let hub = origin.origin.state.hub.clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !hub
        .renditions()
        .iter()
        .any(|r| r.name == name && r.backup_live && r.on_air == Some(longhaul_hub::Leg::Primary))
    {
        assert!(Instant::now() < deadline, "both legs never went live");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (page, _server) =
        serve_page(player_page(&format!("{}/live/{name}.flv", origin.http()))).await;
    let mut browser = tokio::process::Command::new("node")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/play.mjs"))
        .arg(format!("http://{page}/"))
        .arg("12")
        .env("CHROMIUM", &chromium)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node (Debian's nodejs) runs tests/browser/play.mjs");
    let stdout = browser.stdout.take().unwrap();
    let states: Arc<Mutex<Vec<VideoState>>> = Arc::default();
    let reader = tokio::spawn({
        let states = states.clone();
        async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(state) = serde_json::from_str::<VideoState>(&line) {
                    states.lock().unwrap().push(state);
                }
            }
        }
    });
    let current = || states.lock().unwrap().last().cloned();
    let deadline = Instant::now() + Duration::from_secs(15);
    while current().is_none_or(|s| s.current < 2.0) {
        assert!(
            Instant::now() < deadline,
            "the browser never played 2 s: {:?}",
            current()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    relay.cut();
    let before = current().unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = current().unwrap();
    let out = browser.wait_with_output().await.unwrap();
    reader.abort();
    assert!(
        out.status.success(),
        "the browser driver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = states.lock().unwrap().clone();
    assert!(all.iter().all(|s| s.error.is_none()), "mpegts.js: {all:?}");
    assert!(
        all.windows(2).all(|w| w[1].current >= w[0].current),
        "currentTime went back: {all:?}"
    );
    let played = after.current - before.current;
    let wall = (after.ms - before.ms) as f64 / 1000.0;
    assert!(
        played >= wall - 1.0,
        "the video played {played:.2} s of the {wall:.2} s after the kill: {all:?}"
    );
    eprintln!(
        "browser: currentTime {:.2} s at the kill, {:.2} s {wall:.2} s later",
        before.current, after.current
    );
    let _ = wait_child(encoder).await;
}
