//! The whole ingest path in one process, on loopback: an RTMP publisher (longhaul's own
//! client) → edge (`Edge::start`) → QUIC tunnel → origin (`Origin::start`) → an RTMP
//! player at the origin, against the same publisher publishing straight to the origin,
//! measured side by side in one run (the runs alternate between the two paths).
//! Prints its figures; nothing is asserted.
//!
//! `cargo bench -p longhaul --bench relay_path` (filters: substrings of the case names
//! `{paced,bulk}/{1,10}`, e.g. `-- paced`).
//!
//! The stream is the tunnel bench's (`benches/support/stream_plan.rs`): 25 fps video, a 100 KB keyframe every 2 s, 20-36 KB
//! P-frames, 300 B AAC frames every 21.3 ms: about 6.0 Mbit/s. Every media payload
//! carries, after its FLV tag header (so the hub still sees keyframes), its send time in
//! nanoseconds since the bench's epoch and a sequence number; the player records when
//! each arrives. A paced message's send time is its scheduled (capture) time, so a
//! publisher held back by the path shows as latency; a bulk message's is the moment its
//! send starts.
//!
//! Latency percentiles count every message due in the window, one that never reached the
//! player (skipped by the hub, dropped by the edge's relay queue, still in flight after
//! the drain) as infinitely late ("n/d" when a percentile lands on one). CPU is the whole
//! process (publisher, edge, origin, player) from `getrusage` over the measured window,
//! divided by the payload Gbit the players received in it; the edge path's extra over
//! the direct path is the cost of the edge and the tunnel. Everything shares one tokio
//! runtime with 2 workers: the machine has 2 cores. Median of 5 runs, min-max beside it.

use bytes::{BufMut, Bytes, BytesMut};
use longhaul_edge::{Edge, EdgeConfig};
use longhaul_origin::{Config as OriginConfig, Origin};
use longhaul_rtmp::connection::{Player, Publisher, RtmpUrl};
use longhaul_rtmp::message::type_id;
use longhaul_rtmp::RtmpMessage;
use longhaul_tunnel::pki::{ClusterCa, NodeFiles, NodeRole};
use longhaul_tunnel::{TransportSettings, TunnelState};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

#[path = "support/measure.rs"]
mod measure;
#[path = "support/stream_plan.rs"]
mod stream_plan;

use measure::{
    bench_main, fail, fmt_ms, latency_ms, nanos_at, percentile, process_cpu, selected, spread,
    stats, Window,
};
use stream_plan::{template, Mode, Planned, KEYFRAME};

// The shared plan's message types are RTMP's.
const _: () = assert!(stream_plan::AUDIO_TYPE == type_id::AUDIO);
const _: () = assert!(stream_plan::VIDEO_TYPE == type_id::VIDEO);

const RUNS: usize = 5;
/// Paced streams run this long per run (3 s: 216 messages per stream).
const PACED: Duration = Duration::from_secs(3);
/// Bulk: the publishers run this long before the window opens, then the window.
const WARMUP: Duration = Duration::from_millis(500);
const BULK: Duration = Duration::from_secs(2);
/// After the publishers stop, messages in flight have this long to reach the players.
const DRAIN: Duration = Duration::from_secs(2);
/// Bulk messages count in the latency figures if sent this long before the window
/// closed (they had this long to arrive inside it).
const BULK_DEADLINE: Duration = Duration::from_secs(1);
/// Bulk publishers stop after this many messages even if time is left.
const BULK_MAX_MESSAGES: usize = 2_000_000;
/// Every wait on a connection, a publish or a live stream gives up after this.
const STEP_LIMIT: Duration = Duration::from_secs(20);
/// The origin's certificate name, which the edge checks.
const ORIGIN_NAME: &str = "nyc-1.longhaul.internal";

// ---------------------------------------------------------------------------------------
// The stream

/// Stream `i` of `streams` (see [`stream_plan::plan_stream`]), but the first video frame
/// is a keyframe whatever the phase, so a player starts at once.
fn plan(length: Duration, i: usize, streams: usize) -> Vec<Planned> {
    let mut out = stream_plan::plan_stream(length, i, streams);
    if let Some(first) = out.iter_mut().find(|p| p.type_id == type_id::VIDEO) {
        first.key = true;
        first.len = KEYFRAME;
    }
    out
}

/// FLV tag header bytes before the stamp: AVC NALU (keyframe 0x17 / inter 0x27, packet
/// type 1, composition time 0) or AAC raw (0xaf, packet type 1).
fn tag_header(type_id: u8, key: bool) -> &'static [u8] {
    match (type_id, key) {
        (type_id::VIDEO, true) => &[0x17, 1, 0, 0, 0],
        (type_id::VIDEO, false) => &[0x27, 1, 0, 0, 0],
        _ => &[0xaf, 1],
    }
}

/// A fresh payload, as an encoder's RTMP stack hands over one buffer per message: tag
/// header, send stamp, sequence number, then template bytes up to `len`.
fn media(p: &Planned, stamp: u64, seq: u64) -> RtmpMessage {
    let head = tag_header(p.type_id, p.key);
    let mut b = BytesMut::with_capacity(p.len);
    b.put_slice(head);
    b.put_u64(stamp);
    b.put_u64(seq);
    b.extend_from_slice(&template()[head.len() + 16..p.len]);
    RtmpMessage {
        timestamp: p.timestamp,
        type_id: p.type_id,
        stream_id: 1,
        payload: b.freeze(),
    }
}

/// Stamp and sequence number of a media payload the bench made, if it is one.
fn read_stamp(m: &RtmpMessage) -> Option<(u64, u64)> {
    let at = match (m.type_id, m.payload.first()) {
        (type_id::VIDEO, Some(0x17 | 0x27)) if m.payload.get(1) == Some(&1) => 5,
        (type_id::AUDIO, Some(0xaf)) if m.payload.get(1) == Some(&1) => 2,
        _ => return None,
    };
    let word = |i: usize| {
        m.payload
            .get(i..i + 8)
            .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
    };
    Some((word(at)?, word(at + 8)?))
}

fn sequence_headers() -> [RtmpMessage; 2] {
    let msg = |type_id, payload: &'static [u8]| RtmpMessage {
        timestamp: 0,
        type_id,
        stream_id: 1,
        payload: Bytes::from_static(payload),
    };
    [
        msg(
            type_id::VIDEO,
            &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 0],
        ),
        msg(type_id::AUDIO, &[0xaf, 0x00, 0x12, 0x10]),
    ]
}

// ---------------------------------------------------------------------------------------
// The cluster

struct Cluster {
    origin: Origin,
    edge: Edge,
    settings: TransportSettings,
    _dir: tempfile::TempDir,
}

fn tls_toml(files: &NodeFiles) -> String {
    format!(
        "[tunnel.tls]\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
        files.ca.display().to_string(),
        files.cert.display().to_string(),
        files.key.display().to_string(),
    )
}

/// An origin with its tunnel listener and an edge whose one origin it is, on port 0,
/// with the default tunnel transport settings; returns once the tunnel is connected.
async fn start_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail("tempdir", e));
    let ca = ClusterCa::generate("bench cluster CA").unwrap_or_else(|e| fail("CA", e));
    let origin_files = ca
        .issue(ORIGIN_NAME, NodeRole::Origin, dir.path())
        .unwrap_or_else(|e| fail("origin certificate", e));
    let edge_files = ca
        .issue("sin-1.longhaul.internal", NodeRole::Edge, dir.path())
        .unwrap_or_else(|e| fail("edge certificate", e));
    let origin_doc = format!(
        r#"
        [node]
        id = "nyc-1"
        region = "nyc"
        [rtmp]
        listen = "127.0.0.1:0"
        [http]
        listen = "127.0.0.1:0"
        [registry]
        path = {db:?}
        [tunnel]
        listen = "127.0.0.1:0"
        {tls}
        "#,
        db = dir.path().join("registry.db").display().to_string(),
        tls = tls_toml(&origin_files),
    );
    let config: OriginConfig =
        toml::from_str(&origin_doc).unwrap_or_else(|e| fail("origin config", e));
    let origin = Origin::start(config)
        .await
        .unwrap_or_else(|e| fail("origin start", e));
    let tunnel = origin
        .tunnel_addr
        .unwrap_or_else(|| fail("origin", "no tunnel address"));
    let edge_doc = format!(
        r#"
        [node]
        id = "sin-1"
        region = "sin"
        [rtmp]
        listen = "127.0.0.1:0"
        [http]
        listen = "127.0.0.1:0"
        [tunnel]
        primary = "nyc-1"
        bind = "127.0.0.1:0"
        origins = [{{ id = "nyc-1", region = "nyc", addr = "{tunnel}", server_name = "{ORIGIN_NAME}" }}]
        {tls}
        "#,
        tls = tls_toml(&edge_files),
    );
    let config: EdgeConfig = toml::from_str(&edge_doc).unwrap_or_else(|e| fail("edge config", e));
    let settings = config.tunnel.transport.clone();
    let edge = Edge::start(config)
        .await
        .unwrap_or_else(|e| fail("edge start", e));
    let deadline = Instant::now() + STEP_LIMIT;
    while !edge
        .state
        .upstreams
        .set()
        .snapshots()
        .iter()
        .all(|s| s.state == TunnelState::Connected)
    {
        if Instant::now() > deadline {
            fail("edge", "its tunnel did not connect");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Cluster {
        origin,
        edge,
        settings,
        _dir: dir,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Publisher → origin.
    Direct,
    /// Publisher → edge → tunnel → origin.
    Edge,
}

/// Waits (bounded) until `name` is live in the origin's hub.
async fn wait_live(origin: &Origin, name: &str) {
    let deadline = Instant::now() + STEP_LIMIT;
    while !origin
        .state
        .hub
        .streams()
        .iter()
        .any(|s| s.key.name == name)
    {
        if Instant::now() > deadline {
            fail("origin", format!("{name} did not go live"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn connect(addr: &str) -> TcpStream {
    match tokio::time::timeout(STEP_LIMIT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            s
        }
        Ok(Err(e)) => fail("connect", e),
        Err(_) => fail("connect", "timed out"),
    }
}

/// One stream ready to go: its publisher has published and sent its sequence headers,
/// its player at the origin plays.
struct Ready {
    publisher: Publisher<TcpStream>,
    player: Player<TcpStream>,
}

async fn prepare(cluster: &Cluster, path: Path) -> Ready {
    let entry = cluster
        .origin
        .state
        .registry
        .as_ref()
        .unwrap_or_else(|| fail("entry", "the bench origin has no registry"))
        .create_entry(Some("bench"))
        .await
        .unwrap_or_else(|e| fail("entry", e));
    let name = format!("{}_1", entry.id);
    let host = match path {
        Path::Direct => cluster.origin.rtmp_addr,
        Path::Edge => cluster.edge.rtmp_addr,
    };
    let url = RtmpUrl::parse(&format!("rtmp://{host}/kLive/?t={}/{name}", entry.token))
        .unwrap_or_else(|e| fail("url", e));
    let io = connect(&url.address()).await;
    let mut publisher = match tokio::time::timeout(
        STEP_LIMIT,
        Publisher::start(io, url.client_config(), &url.name),
    )
    .await
    {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => fail("publish", e),
        Err(_) => fail("publish", "timed out"),
    };
    for m in sequence_headers() {
        publisher.send(&m).await.unwrap_or_else(|e| fail("send", e));
    }
    wait_live(&cluster.origin, &name).await;
    let url = RtmpUrl::parse(&format!("rtmp://{}/kLive/{name}", cluster.origin.rtmp_addr))
        .unwrap_or_else(|e| fail("url", e));
    let io = connect(&url.address()).await;
    let player = match tokio::time::timeout(
        STEP_LIMIT,
        Player::start(io, url.client_config(), &url.name),
    )
    .await
    {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => fail("play", e),
        Err(_) => fail("play", "timed out"),
    };
    Ready { publisher, player }
}

/// What a publisher sent: per message (video?, send stamp), in sequence order.
type Sent = Vec<(bool, u64)>;

async fn publish(
    mut publisher: Publisher<TcpStream>,
    plan: Vec<Planned>,
    mode: Mode,
    w: Window,
) -> Sent {
    let mut sent = Vec::with_capacity(plan.len());
    tokio::time::sleep_until(w.start.into()).await;
    let count = match mode {
        Mode::Paced => plan.len(),
        Mode::Bulk => BULK_MAX_MESSAGES,
    };
    for p in plan.iter().cycle().take(count) {
        let stamp = match mode {
            Mode::Paced => {
                let due = w.start + p.at;
                if due >= w.close {
                    break;
                }
                let stamp = nanos_at(due);
                sent.push((p.type_id == type_id::VIDEO, stamp));
                // Due, but the publisher is held back past the window: counted as late.
                if Instant::now() >= w.close {
                    continue;
                }
                tokio::time::sleep_until(due.into()).await;
                stamp
            }
            Mode::Bulk => {
                let now = Instant::now();
                if now >= w.close {
                    break;
                }
                let stamp = nanos_at(now);
                sent.push((p.type_id == type_id::VIDEO, stamp));
                stamp
            }
        };
        let m = media(p, stamp, sent.len() as u64);
        match tokio::time::timeout_at(w.close.into(), publisher.send(&m)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => fail("publisher", e),
            Err(_) => break,
        }
    }
    // Unpublish in the background: the player hears the end.
    tokio::spawn(async move {
        let _ = tokio::time::timeout(DRAIN, publisher.finish()).await;
    });
    sent
}

/// What a player received: (sequence number, stamp, arrival) of each bench message.
type Received = Vec<(u64, u64, u64)>;

async fn play(
    mut player: Player<TcpStream>,
    until: Instant,
    bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Received {
    let mut got = Vec::new();
    loop {
        let m = match tokio::time::timeout_at(until.into(), player.recv()).await {
            Ok(Ok(Some(m))) => m,
            _ => break,
        };
        let arrived = nanos_at(Instant::now());
        if let Some((stamp, seq)) = read_stamp(&m) {
            bytes.fetch_add(m.payload.len() as u64, std::sync::atomic::Ordering::Relaxed);
            got.push((seq, stamp, arrived));
        }
    }
    got
}

#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    due: usize,
    p50: Option<Duration>,
    p99: Option<Duration>,
    payload_mbps: f64,
    cores: f64,
    /// Due messages the player never got (skipped, dropped or late past the drain).
    missing: usize,
}

impl Figures {
    fn cores_per_gbps(&self) -> f64 {
        self.cores / (self.payload_mbps / 1e3)
    }
}

async fn run(cluster: &Cluster, path: Path, mode: Mode, streams: usize) -> Figures {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let mut ready = Vec::new();
    for _ in 0..streams {
        ready.push(prepare(cluster, path).await);
    }
    let (warmup, length) = match mode {
        Mode::Paced => (Duration::ZERO, PACED),
        Mode::Bulk => (WARMUP, BULK),
    };
    let w = Window::new(warmup, length);
    let plan_length = match mode {
        Mode::Paced => length,
        Mode::Bulk => Duration::from_secs(2),
    };
    let bytes = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (i, r) in ready.into_iter().enumerate() {
        let plan = plan(plan_length, i, streams);
        tasks.push((
            tokio::spawn(publish(r.publisher, plan, mode, w)),
            tokio::spawn(play(r.player, w.close + DRAIN, bytes.clone())),
        ));
    }
    tokio::time::sleep_until(w.open.into()).await;
    let (cpu0, bytes0) = (process_cpu(), bytes.load(Ordering::Relaxed));
    tokio::time::sleep_until(w.close.into()).await;
    let (cpu1, bytes1) = (process_cpu(), bytes.load(Ordering::Relaxed));
    let window = (w.close - w.open).as_secs_f64();
    let mut f = Figures {
        payload_mbps: (bytes1 - bytes0) as f64 * 8.0 / window / 1e6,
        cores: (cpu1 - cpu0).as_secs_f64() / window,
        ..Figures::default()
    };
    let (open_ns, close_ns) = (nanos_at(w.open), nanos_at(w.close));
    let deadline_ns = BULK_DEADLINE.as_nanos() as u64;
    let mut latencies = Vec::new();
    for (publisher, player) in tasks {
        let limit = w.close + DRAIN + Duration::from_secs(5);
        let sent = match tokio::time::timeout_at(limit.into(), publisher).await {
            Ok(Ok(s)) => s,
            _ => fail("publisher", "did not stop"),
        };
        let received = match tokio::time::timeout_at(limit.into(), player).await {
            Ok(Ok(r)) => r,
            _ => fail("player", "did not stop"),
        };
        // Sequence numbers start at 1; the player may have missed some (skips).
        let mut arrival = vec![None; sent.len()];
        for (seq, stamp, at) in received {
            if let Some(slot) = (seq as usize)
                .checked_sub(1)
                .and_then(|i| arrival.get_mut(i))
            {
                if sent[seq as usize - 1].1 == stamp {
                    *slot = Some(at.saturating_sub(stamp));
                }
            }
        }
        for (&(_, stamp), got) in sent.iter().zip(arrival) {
            let counted = match mode {
                Mode::Paced => true,
                Mode::Bulk => stamp >= open_ns && stamp + deadline_ns <= close_ns,
            };
            if counted {
                latencies.push(got.unwrap_or(u64::MAX));
                f.missing += usize::from(got.is_none());
            }
        }
    }
    latencies.sort_unstable();
    f.due = latencies.len();
    f.p50 = percentile(&latencies, 0.5);
    f.p99 = percentile(&latencies, 0.99);
    // Let the unpublished streams leave the hub before the next run.
    tokio::time::sleep(Duration::from_millis(100)).await;
    f
}

// ---------------------------------------------------------------------------------------
// Output

fn ratio(edge: f64, direct: f64) -> String {
    if edge.is_finite() && direct.is_finite() && direct > 0.0 {
        format!("{:.2}x", edge / direct)
    } else {
        "-".into()
    }
}

fn main() {
    bench_main(|filters| async move {
        let cluster = start_cluster().await;
        let s = &cluster.settings;
        println!("# relay path: RTMP publisher -> [edge -> QUIC tunnel ->] origin -> RTMP player, loopback, one process");
        println!(
            "tunnel settings: congestion {}, stream window {} MiB, connection window {} MiB, send window {} MiB, \
             UDP buffers asked {} MiB (net.core.rmem_max {}); edge relay queue: defaults",
            s.congestion.as_str(),
            s.stream_window >> 20,
            s.connection_window >> 20,
            s.send_window >> 20,
            s.udp_recv_buffer >> 20,
            std::fs::read_to_string("/proc/sys/net/core/rmem_max").map_or("?".into(), |v| v.trim().to_string()),
        );
        println!(
            "paced: {} s per run; bulk: {} ms warm-up, then {} s measured; runs alternate direct/edge; \
             median (min-max) of {RUNS} runs; ratio = edge median / direct median",
            PACED.as_secs(),
            WARMUP.as_millis(),
            BULK.as_secs()
        );
        println!();
        println!("| mode | streams | path | messages/run | missing | latency p50 ms | latency p99 ms | payload Mbit/s | CPU cores | cores per Gbit/s |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for (mode, n) in [
            (Mode::Paced, 1),
            (Mode::Paced, 10),
            (Mode::Bulk, 1),
            (Mode::Bulk, 10),
        ] {
            if !selected(&filters, &format!("{}/{n}", mode.name())) {
                continue;
            }
            let (mut direct, mut edge) = (Vec::new(), Vec::new());
            for _ in 0..RUNS {
                direct.push(run(&cluster, Path::Direct, mode, n).await);
                edge.push(run(&cluster, Path::Edge, mode, n).await);
            }
            let mut medians = Vec::new();
            for (path, runs) in [("direct", &direct), ("edge", &edge)] {
                let p50 = stats(runs, |f| latency_ms(f.p50));
                let p99 = stats(runs, |f| latency_ms(f.p99));
                let mbps = stats(runs, |f| f.payload_mbps);
                let cores = stats(runs, |f| f.cores);
                let per_gbps = stats(runs, |f| f.cores_per_gbps());
                println!(
                    "| {} | {n} | {path} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
                    mode.name(),
                    stats(runs, |f| f.due as f64).1,
                    stats(runs, |f| f.missing as f64).1,
                    spread(p50, fmt_ms),
                    spread(p99, fmt_ms),
                    spread(mbps, |v| format!("{v:.0}")),
                    spread(cores, |v| format!("{v:.2}")),
                    spread(per_gbps, |v| format!("{v:.2}")),
                );
                medians.push((p50.1, p99.1, mbps.1, per_gbps.1));
            }
            let (d, e) = (medians[0], medians[1]);
            println!(
                "| {} | {n} | edge / direct | | | {} | {} | {} | | {} |",
                mode.name(),
                ratio(e.0, d.0),
                ratio(e.1, d.1),
                ratio(e.2, d.2),
                ratio(e.3, d.3),
            );
        }
        let Cluster { origin, edge, .. } = cluster;
        edge.stop().await;
        origin.stop().await;
    });
}
