//! Tunnel benchmarks: an edge `TunnelClient` and an origin `server::serve` in one process,
//! on loopback, carrying a realistic live stream. Prints its figures; nothing is asserted.
//!
//! Two parts, chosen by the CLI filter (substrings of case names, e.g.
//! `cargo bench -p longhaul-tunnel --bench tunnel -- lossy/bbr`; no filter runs all):
//!
//! - **loopback** (`loopback/paced/{1,10}`, `loopback/bulk/{1,10}`): the tunnel straight on
//!   127.0.0.1 with the default transport settings. Paced streams give the latency the
//!   tunnel adds per message; bulk streams (sent as fast as the tunnel takes them) give
//!   throughput and CPU per Gbit/s. Median of 5 runs per figure, min-max beside it.
//! - **lossy** (`lossy/{bbr,cubic,newreno}/{0,1,2}%/{paced,bulk}`): the same tunnel through
//!   an in-process UDP proxy that models a long path (115 ms each way, random loss both
//!   ways, a 100 Mbit/s bottleneck with a drop-tail queue): the figures that choose the
//!   default congestion controller. One run per case (time bound), on a fresh tunnel per
//!   controller and loss rate: the paced stream first (so it includes the new tunnel's
//!   slow start, reported apart as the share after the first 5 s), then bulk.
//! - **load** (`load/{bbr,cubic,newreno}/1%/paced10`, only when a filter names it, e.g.
//!   `-- load`): ten paced streams on one tunnel over the same path, 60 Mbit/s offered to
//!   the 100 Mbit/s bottleneck: a loaded edge's tunnel rather than one stream.
//!
//! The stream (`benches/support/stream_plan.rs` at the workspace root, shared with the
//! relay-path bench): 25 fps video with a 100 KB keyframe every 2 s and P-frames of
//! 20-36 KB (28 KB on average), plus 48 kHz AAC frames of 300 B every 21.3 ms: about
//! 6.0 Mbit/s of payload. Every payload starts with its send time (nanoseconds since the bench's epoch,
//! big endian); the toy origin records when each message arrives. A paced message's send
//! time is its scheduled (capture) time, so a sender held back by the tunnel shows as
//! latency; a bulk message's is the moment its send starts.
//!
//! Latency percentiles count every message due in the window: one that has not arrived
//! by the end of the drain counts as infinitely late ("n/d" when a percentile lands on
//! one). CPU is the whole process (edge, origin and, in the lossy part, the proxy) from
//! `getrusage`, over the measured window, divided by the payload Gbit delivered in it.
//! Both ends share one tokio runtime with 2 workers: the machine has 2 cores.

use bytes::{BufMut, Bytes, BytesMut};
use longhaul_endpoint::Leg;
use longhaul_tunnel::pki::{ClusterCa, NodeRole};
use longhaul_tunnel::{
    client_endpoint, server, server_endpoint, AuthoriseRequest, Congestion, EdgeTls, Hello,
    IncomingPublish, LoadReport, MediaFrame, OriginPeer, OriginTls, PeerInfo, PublishHeader,
    PublishSender, TransportSettings, TunnelClient, TunnelListenSection, TunnelSection,
    TunnelService, TunnelSet, TunnelState, Verdict, VERSION,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[path = "../../../benches/support/measure.rs"]
mod measure;
// The toy origin does not look at keyframes: `Planned::key` is not read here.
#[allow(dead_code)]
#[path = "../../../benches/support/stream_plan.rs"]
mod stream_plan;

use measure::{
    bench_main, fail, fmt_ms, latency_ms, ms, nanos_at, percentile, process_cpu, selected, spread,
    stats, Window,
};
use stream_plan::{plan, plan_stream, template, Mode, Planned, VIDEO_TYPE};

/// Runs per loopback figure; the median is printed.
const RUNS: usize = 5;
/// Loopback: paced streams run this long per run (3 s: 216 messages per stream).
const LOOPBACK_PACED: Duration = Duration::from_secs(3);
/// Loopback bulk: the senders run this long before the window opens (flow-control
/// windows filled, quinn's pacer settled), then the window.
const LOOPBACK_WARMUP: Duration = Duration::from_millis(500);
const LOOPBACK_BULK: Duration = Duration::from_secs(2);
/// Lossy path: the paced stream and the bulk stream per controller and loss rate. With
/// 3 controllers x 3 loss rates this is most of the bench's 5-minute budget.
const LOSSY_PACED: Duration = Duration::from_secs(15);
const LOSSY_WARMUP: Duration = Duration::from_secs(1);
const LOSSY_BULK: Duration = Duration::from_secs(7);
/// After the senders stop, messages still in flight have this long to arrive.
const DRAIN: Duration = Duration::from_secs(2);
/// The budget the lossy figures count frames against: a player buffer of about 1 s is
/// what a low-latency ingest can hide (REFERENCE.md section 5: SRT wants 3 x RTT = 0.7 s
/// at 230 ms and 1 % loss).
const DEADLINE: Duration = Duration::from_secs(1);
/// The paced share is also given for frames due after this, past the slow start of the
/// new tunnel (a persistent tunnel with traffic on it is past it).
const STEADY_AFTER: Duration = Duration::from_secs(5);

/// Singapore to New York: 230 ms RTT (REFERENCE.md section 4).
const ONE_WAY: Duration = Duration::from_millis(115);
const LOSS_RATES: [f64; 3] = [0.0, 0.01, 0.02];
/// The emulated link of REFERENCE.md section 9 (100 Mbit/s, where TCP CUBIC got 0.86 and
/// BBR 45 Mbit/s at 1 % loss): the bulk figures are comparable with those.
const RATE_BITS_PER_S: f64 = 100e6;
/// Drop-tail queue at the bottleneck: 1,000 full-size packets, Linux's default
/// `txqueuelen` (120 ms at 100 Mbit/s).
const QUEUE_BYTES: f64 = 1_500_000.0;
/// Datagrams the proxy holds in its delay line per direction: 230 ms at 100 Mbit/s is
/// about 2,000 packets of 1,452 B; the rest is headroom for a sender above the cap.
const DELAY_LINE: usize = 65_536;
/// Bulk senders stop after this many messages even if time is left (about 40 GB).
const BULK_MAX_MESSAGES: usize = 2_000_000;

// ---------------------------------------------------------------------------------------
// Kernel counters

/// The kernel's count of UDP datagrams dropped for a full receive buffer, machine-wide.
fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let names = lines.next()?.split_whitespace();
    let values = lines.next()?.split_whitespace();
    names
        .zip(values)
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
}

// ---------------------------------------------------------------------------------------
// The stream

/// A fresh payload, as the edge's RTMP decoder hands over one fresh buffer per message:
/// send time first, the rest copied from a template.
fn payload(len: usize, stamp: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(len);
    b.put_u64(stamp);
    b.extend_from_slice(&template()[8..len]);
    b.freeze()
}

// ---------------------------------------------------------------------------------------
// The toy origin

/// One stream's arrivals, in order: (send stamp read from the payload, arrival), both in
/// nanoseconds since the epoch.
type Arrivals = Arc<Mutex<Vec<(u64, u64)>>>;

/// Allows every publish and records, per stream, each message's send stamp and arrival.
#[derive(Default)]
struct BenchOrigin {
    payload_bytes: AtomicU64,
    grants: AtomicU64,
    streams: Mutex<HashMap<String, Arrivals>>,
    finished: AtomicU64,
}

impl TunnelService for BenchOrigin {
    fn hello(&self) -> Hello {
        Hello {
            node_id: "nyc-1".into(),
            region: "nyc".into(),
            role: "origin".into(),
            version: VERSION.into(),
            lane: 0,
        }
    }
    fn load(&self) -> LoadReport {
        LoadReport {
            healthy: true,
            ..LoadReport::default()
        }
    }
    async fn authorise(&self, _peer: &PeerInfo, request: AuthoriseRequest) -> Verdict {
        Verdict::Allowed {
            grant: self.grants.fetch_add(1, Ordering::Relaxed),
            stream_name: request.name,
            generation: None,
        }
    }
    async fn publish(&self, _peer: &PeerInfo, header: PublishHeader, stream: IncomingPublish) {
        let record = Arc::new(Mutex::new(Vec::new()));
        lock(&self.streams).insert(header.stream_name, record.clone());
        let (mut media, ender) = stream.split();
        // Ends with the stream: finished, or the connection closed under it.
        while let Ok(Some(incoming)) = media.next().await {
            let frame = incoming.frame();
            let arrived = nanos_at(Instant::now());
            let stamp = frame
                .payload
                .get(..8)
                .map(|b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
                .unwrap_or(0);
            self.payload_bytes
                .fetch_add(frame.payload.len() as u64, Ordering::Relaxed);
            lock(&record).push((stamp, arrived));
        }
        self.finished.fetch_add(1, Ordering::Relaxed);
        ender.finish();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// Both ends

struct Tunnel {
    _dir: tempfile::TempDir,
    origin: Arc<BenchOrigin>,
    origin_shutdown: CancellationToken,
    client: TunnelClient,
    proxy: Option<Proxy>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.client.close();
        self.origin_shutdown.cancel();
    }
}

/// Starts an origin and an edge with `settings`, the edge dialling through a proxy with
/// `path` if given, and waits (at most 20 s) until the tunnel is connected.
async fn start_tunnel(settings: &TransportSettings, path: Option<PathModel>) -> Tunnel {
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail("tempdir", e));
    let ca = ClusterCa::generate("bench cluster CA").unwrap_or_else(|e| fail("CA", e));
    let origin_files = ca
        .issue("nyc-1.longhaul.internal", NodeRole::Origin, dir.path())
        .unwrap_or_else(|e| fail("origin certificate", e));
    let edge_files = ca
        .issue("sin-1.longhaul.internal", NodeRole::Edge, dir.path())
        .unwrap_or_else(|e| fail("edge certificate", e));
    let listen = TunnelListenSection {
        listen: ([127, 0, 0, 1], 0).into(),
        tls: origin_files.tls_paths(),
        edge_name_suffix: None,
        allow_any_edge_name: true,
        denied_certificates: Vec::new(),
        denied_certificates_file: None,
        transport: settings.clone(),
    };
    let tls = OriginTls::load(&listen).unwrap_or_else(|e| fail("origin TLS", e));
    let endpoint = server_endpoint(&listen, &tls).unwrap_or_else(|e| fail("origin endpoint", e));
    let origin_addr = endpoint
        .local_addr()
        .unwrap_or_else(|e| fail("origin address", e));
    let origin = Arc::new(BenchOrigin::default());
    let origin_shutdown = CancellationToken::new();
    tokio::spawn(server::serve(
        endpoint,
        origin.clone(),
        listen.clone(),
        tls,
        TunnelSet::new(),
        origin_shutdown.clone(),
    ));
    let proxy = match path {
        Some(model) => Some(Proxy::start(origin_addr, model, settings).await),
        None => None,
    };
    let section = TunnelSection {
        origins: vec![OriginPeer {
            id: "nyc-1".into(),
            region: "nyc".into(),
            addr: proxy.as_ref().map_or(origin_addr, |p| p.addr).to_string(),
            server_name: "nyc-1.longhaul.internal".into(),
        }],
        primary: "nyc-1".into(),
        tls: edge_files.tls_paths(),
        bind: ([127, 0, 0, 1], 0).into(),
        transport: settings.clone(),
    };
    let endpoint = client_endpoint(&section).unwrap_or_else(|e| fail("edge endpoint", e));
    let edge_tls = EdgeTls::load(&section.tls).unwrap_or_else(|e| fail("edge TLS", e));
    let client = TunnelClient::spawn(
        endpoint,
        Hello {
            node_id: "sin-1".into(),
            region: "sin".into(),
            role: "edge".into(),
            version: VERSION.into(),
            lane: 0,
        },
        section.origins[0].clone(),
        &section.transport,
        &edge_tls,
        longhaul_tunnel::EdgeHooks::load_only(Arc::new(LoadReport::default)),
        &TunnelSet::new(),
    )
    .unwrap_or_else(|e| fail("edge tunnel", e));
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.state() != TunnelState::Connected {
        if Instant::now() > deadline {
            fail("tunnel", "not connected within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Tunnel {
        _dir: dir,
        origin,
        origin_shutdown,
        client,
        proxy,
    }
}

async fn open(tunnel: &Tunnel, name: &str) -> PublishSender {
    let request = AuthoriseRequest {
        app: "live".into(),
        tc_url: None,
        name: name.into(),
        leg: Leg::Primary,
        client_addr: "192.0.2.7:50000".into(),
        transport: "rtmp".into(),
    };
    let verdict = tunnel
        .client
        .authorise(request)
        .await
        .unwrap_or_else(|e| fail("authorise", e));
    let Verdict::Allowed {
        grant, stream_name, ..
    } = verdict
    else {
        fail("authorise", "refused")
    };
    tunnel
        .client
        .open_publish(PublishHeader {
            grant,
            stream_name,
            client_addr: "192.0.2.7:50000".into(),
            publication: None,
            resume_from: None,
        })
        .await
        .unwrap_or_else(|e| fail("open_publish", e))
}

// ---------------------------------------------------------------------------------------
// A case: N streams, paced or bulk, then the figures

/// One stream's messages as the sender saw them: kind, send stamp, and whether it was
/// handed to the tunnel before the window closed.
struct Sent {
    name: String,
    messages: Vec<(u8, u64)>,
}

async fn send_paced(
    mut sender: PublishSender,
    name: String,
    plan: Vec<Planned>,
    w: Window,
) -> Sent {
    let mut messages = Vec::with_capacity(plan.len());
    for p in &plan {
        let due = w.start + p.at;
        if due >= w.close {
            break;
        }
        let stamp = nanos_at(due);
        // Due but never handed over (the sender was held back): counted, not delivered.
        messages.push((p.type_id, stamp));
        if Instant::now() >= w.close {
            continue;
        }
        tokio::time::sleep_until(due.into()).await;
        let frame = MediaFrame {
            kind: p.type_id,
            timestamp: p.timestamp,
            payload: payload(p.len, stamp),
        };
        match tokio::time::timeout_at(w.close.into(), sender.send(std::slice::from_ref(&frame)))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => fail("send", e),
            Err(_) => {}
        }
    }
    tokio::spawn(sender.finish());
    Sent { name, messages }
}

async fn send_bulk(mut sender: PublishSender, name: String, plan: Vec<Planned>, w: Window) -> Sent {
    let mut messages = Vec::new();
    tokio::time::sleep_until(w.start.into()).await;
    for p in plan.iter().cycle().take(BULK_MAX_MESSAGES) {
        let now = Instant::now();
        if now >= w.close {
            break;
        }
        let stamp = nanos_at(now);
        messages.push((p.type_id, stamp));
        let frame = MediaFrame {
            kind: p.type_id,
            timestamp: p.timestamp,
            payload: payload(p.len, stamp),
        };
        match tokio::time::timeout_at(w.close.into(), sender.send(std::slice::from_ref(&frame)))
            .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => fail("send", e),
            Err(_) => break,
        }
    }
    tokio::spawn(sender.finish());
    Sent { name, messages }
}

/// Figures of one case run.
#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    /// Messages due in the window.
    due: usize,
    p50: Option<Duration>,
    p99: Option<Duration>,
    /// Share of the video frames due in the window that arrived within [`DEADLINE`].
    within: f64,
    /// The same for frames due after [`STEADY_AFTER`] (paced only).
    within_steady: f64,
    payload_mbps: f64,
    /// CPU time per second of window: cores busy.
    cores: f64,
    /// Stamps that arrived out of order or altered (must be 0).
    mismatches: usize,
}

impl Figures {
    fn cores_per_gbps(&self) -> f64 {
        self.cores / (self.payload_mbps / 1e3)
    }
}

/// Edge-side connection figures at the end of a window.
struct PathFigures {
    lost_packets: u64,
    srtt: Option<Duration>,
    cwnd: Option<u64>,
}

fn path_figures(tunnel: &Tunnel) -> PathFigures {
    let s = tunnel.client.link().snapshot();
    PathFigures {
        lost_packets: s.lost_packets,
        srtt: s.srtt,
        cwnd: s.cwnd,
    }
}

static CASE: AtomicU64 = AtomicU64::new(0);

/// Runs `streams` streams for one window and waits for the drain.
async fn run_case(
    tunnel: &Tunnel,
    streams: usize,
    mode: Mode,
    warmup: Duration,
    length: Duration,
) -> (Figures, PathFigures) {
    let case = CASE.fetch_add(1, Ordering::Relaxed);
    let finished_before = tunnel.origin.finished.load(Ordering::Relaxed);
    let mut senders = Vec::new();
    for i in 0..streams {
        let name = format!("bench-{case}-{i}");
        senders.push((open(tunnel, &name).await, name));
    }
    // Every sender starts on the same instant, a little ahead so all are waiting.
    let w = Window::new(warmup, length);
    let plan_length = match mode {
        Mode::Paced => warmup + length,
        Mode::Bulk => Duration::from_secs(2), // one GOP, cycled
    };
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, (sender, name))| {
            let plan = plan_stream(plan_length, i, streams);
            match mode {
                Mode::Paced => tokio::spawn(send_paced(sender, name, plan, w)),
                Mode::Bulk => tokio::spawn(send_bulk(sender, name, plan, w)),
            }
        })
        .collect();
    tokio::time::sleep_until(w.open.into()).await;
    let (cpu0, bytes0) = (
        process_cpu(),
        tunnel.origin.payload_bytes.load(Ordering::Relaxed),
    );
    tokio::time::sleep_until(w.close.into()).await;
    let (cpu1, bytes1) = (
        process_cpu(),
        tunnel.origin.payload_bytes.load(Ordering::Relaxed),
    );
    let path = path_figures(tunnel);
    let mut sent = Vec::new();
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(s)) => sent.push(s),
            _ => fail("sender", "did not stop within 5 s of its window"),
        }
    }
    // The drain: until every stream has ended at the origin, at most DRAIN.
    let drained = w.close + DRAIN;
    while tunnel.origin.finished.load(Ordering::Relaxed) < finished_before + streams as u64
        && Instant::now() < drained
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cutoff = nanos_at(Instant::now().min(drained));
    let window = w.close - w.open;
    let mut figures = Figures {
        payload_mbps: (bytes1 - bytes0) as f64 * 8.0 / window.as_secs_f64() / 1e6,
        cores: (cpu1 - cpu0).as_secs_f64() / window.as_secs_f64(),
        ..Figures::default()
    };
    let (open_ns, close_ns) = (nanos_at(w.open), nanos_at(w.close));
    let start_ns = nanos_at(w.start);
    let deadline_ns = DEADLINE.as_nanos() as u64;
    let steady_ns = start_ns + STEADY_AFTER.as_nanos() as u64;
    let mut latencies = Vec::new();
    let (mut video, mut video_in_time, mut steady, mut steady_in_time) = (0, 0, 0, 0);
    for s in &sent {
        let record = lock(&tunnel.origin.streams)
            .get(&s.name)
            .map(|r| lock(r).clone())
            .unwrap_or_default();
        for (i, &(kind, stamp)) in s.messages.iter().enumerate() {
            // Bulk messages count if they had the whole deadline inside the window.
            let counted = match mode {
                Mode::Paced => true,
                Mode::Bulk => stamp >= open_ns && stamp + deadline_ns <= close_ns,
            };
            let arrived = match record.get(i) {
                Some(&(got, at)) if at <= cutoff => {
                    if got != stamp {
                        figures.mismatches += 1;
                    }
                    Some(at.saturating_sub(stamp))
                }
                _ => None,
            };
            if !counted {
                continue;
            }
            latencies.push(arrived.unwrap_or(u64::MAX));
            if kind == VIDEO_TYPE {
                let in_time = arrived.is_some_and(|l| l <= deadline_ns);
                video += 1;
                video_in_time += usize::from(in_time);
                if stamp >= steady_ns {
                    steady += 1;
                    steady_in_time += usize::from(in_time);
                }
            }
        }
    }
    latencies.sort_unstable();
    figures.due = latencies.len();
    figures.p50 = percentile(&latencies, 0.50);
    figures.p99 = percentile(&latencies, 0.99);
    figures.within = video_in_time as f64 / video.max(1) as f64;
    figures.within_steady = steady_in_time as f64 / steady.max(1) as f64;
    // Records of this case are no longer needed.
    let mut streams_map = lock(&tunnel.origin.streams);
    for s in &sent {
        streams_map.remove(&s.name);
    }
    (figures, path)
}

// ---------------------------------------------------------------------------------------
// The long-path proxy

/// One direction of the emulated path.
#[derive(Debug, Clone, Copy)]
struct PathModel {
    one_way: Duration,
    loss: f64,
    rate_bits_per_s: f64,
    queue_bytes: f64,
}

#[derive(Default)]
struct ProxyCounters {
    forwarded: AtomicU64,
    random_losses: AtomicU64,
    queue_drops: AtomicU64,
    overflows: AtomicU64,
}

/// Relays datagrams between the edge and the origin through a delay line, a bottleneck
/// and random loss, both ways alike.
struct Proxy {
    addr: SocketAddr,
    counters: Arc<ProxyCounters>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The bottleneck and loss of one direction.
struct Shaper {
    model: PathModel,
    rng: u64,
    /// When the bottleneck finishes sending what it holds.
    busy_until: Instant,
}

impl Shaper {
    fn new(model: PathModel, seed: u64) -> Self {
        Shaper {
            model,
            rng: seed | 1,
            busy_until: Instant::now(),
        }
    }

    fn random(&mut self) -> f64 {
        // xorshift64*: reproducible, fast, plenty for loss draws.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// When a datagram of `len` bytes arriving `now` leaves the far end, or why not.
    fn admit(&mut self, len: usize, now: Instant, c: &ProxyCounters) -> Option<Instant> {
        if self.random() < self.model.loss {
            c.random_losses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let start = self.busy_until.max(now);
        let backlog_bits = (start - now).as_secs_f64() * self.model.rate_bits_per_s;
        if backlog_bits / 8.0 + len as f64 > self.model.queue_bytes {
            c.queue_drops.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.busy_until =
            start + Duration::from_secs_f64(len as f64 * 8.0 / self.model.rate_bits_per_s);
        Some(self.busy_until + self.model.one_way)
    }
}

/// Where the far end of a direction sends.
#[derive(Clone)]
enum Target {
    Connected,
    /// The edge, learnt from its first datagram.
    Edge(Arc<Mutex<Option<SocketAddr>>>),
}

impl Proxy {
    async fn start(origin: SocketAddr, model: PathModel, settings: &TransportSettings) -> Proxy {
        let bind: SocketAddr = ([127, 0, 0, 1], 0).into();
        // The tunnel's own socket helper: the same buffer sizes as the ends.
        let socket = |what| {
            let (s, _) = longhaul_tunnel::endpoint::udp_socket(bind, settings)
                .unwrap_or_else(|e| fail(what, e));
            Arc::new(UdpSocket::from_std(s).unwrap_or_else(|e| fail(what, e)))
        };
        let edge_side = socket("proxy socket");
        let origin_side = socket("proxy socket");
        origin_side
            .connect(origin)
            .await
            .unwrap_or_else(|e| fail("proxy connect", e));
        let addr = edge_side
            .local_addr()
            .unwrap_or_else(|e| fail("proxy address", e));
        let counters = Arc::new(ProxyCounters::default());
        let edge = Arc::new(Mutex::new(None));
        let mut tasks = Vec::new();
        for (from, to, target, seed) in [
            (
                edge_side.clone(),
                origin_side.clone(),
                Target::Connected,
                0x5eed_0001u64,
            ),
            (
                origin_side.clone(),
                edge_side.clone(),
                Target::Edge(edge.clone()),
                0x5eed_0002,
            ),
        ] {
            let (tx, rx) = mpsc::channel(DELAY_LINE);
            let learn = match &target {
                Target::Connected => Some(edge.clone()),
                Target::Edge(_) => None,
            };
            tasks.push(tokio::spawn(receive(
                from,
                Shaper::new(model, seed),
                tx,
                learn,
                counters.clone(),
            )));
            tasks.push(tokio::spawn(deliver(to, target, rx, counters.clone())));
        }
        Proxy {
            addr,
            counters,
            tasks,
        }
    }
}

async fn receive(
    socket: Arc<UdpSocket>,
    mut shaper: Shaper,
    line: mpsc::Sender<(Instant, Bytes)>,
    learn_edge: Option<Arc<Mutex<Option<SocketAddr>>>>,
    counters: Arc<ProxyCounters>,
) {
    let mut buf = vec![0u8; 65_536];
    // Ends when the proxy is dropped (the task is aborted) or the socket fails.
    while let Ok((n, from)) = socket.recv_from(&mut buf).await {
        if let Some(edge) = &learn_edge {
            *lock(edge) = Some(from);
        }
        let now = Instant::now();
        let Some(due) = shaper.admit(n, now, &counters) else {
            continue;
        };
        if line
            .try_send((due, Bytes::copy_from_slice(&buf[..n])))
            .is_err()
        {
            counters.overflows.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn deliver(
    socket: Arc<UdpSocket>,
    target: Target,
    mut line: mpsc::Receiver<(Instant, Bytes)>,
    counters: Arc<ProxyCounters>,
) {
    while let Some((due, datagram)) = line.recv().await {
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let sent = match &target {
            Target::Connected => socket.send(&datagram).await,
            Target::Edge(edge) => {
                let Some(addr) = *lock(edge) else { continue };
                socket.send_to(&datagram, addr).await
            }
        };
        if sent.is_ok() {
            counters.forwarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Output

fn settings_line(s: &TransportSettings) -> String {
    format!(
        "congestion {}, stream window {} MiB, connection window {} MiB, send window {} MiB, \
         initial RTT {} ms, UDP buffers asked {} MiB",
        s.congestion.as_str(),
        s.stream_window >> 20,
        s.connection_window >> 20,
        s.send_window >> 20,
        s.initial_rtt_ms,
        s.udp_recv_buffer >> 20,
    )
}

fn environment(settings: &TransportSettings) {
    let sysctl = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/")))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into())
    };
    let granted = longhaul_tunnel::endpoint::udp_socket(([127, 0, 0, 1], 0).into(), settings)
        .map(|(socket, g)| {
            let state = quinn::udp::UdpSocketState::new((&socket).into());
            let (gso, gro) = state
                .map(|s| (s.max_gso_segments(), s.gro_segments()))
                .unwrap_or((0, 0));
            format!(
                "granted recv {} KiB, send {} KiB; quinn-udp GSO segments {gso}, GRO segments {gro}",
                g.recv >> 10,
                g.send >> 10
            )
        })
        .unwrap_or_else(|e| e.to_string());
    println!(
        "machine: {} cores; net.core.rmem_max {}, wmem_max {}; tunnel UDP socket: {granted}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        sysctl("net.core.rmem_max"),
        sysctl("net.core.wmem_max"),
    );
}

/// CPU per Gbit/s of building the payloads alone (alloc + copy per message), which the
/// loopback CPU figures include.
fn payload_cost() -> f64 {
    let plan = plan(Duration::from_secs(2), 1, 0.0);
    let (t0, cpu0) = (Instant::now(), process_cpu());
    let mut bytes = 0u64;
    for p in plan.iter().cycle().take(200_000) {
        bytes += std::hint::black_box(payload(p.len, 1)).len() as u64;
        if t0.elapsed() > Duration::from_millis(300) {
            break;
        }
    }
    let cpu = (process_cpu() - cpu0).as_secs_f64();
    cpu / (bytes as f64 * 8.0 / 1e9)
}

// ---------------------------------------------------------------------------------------
// Parts

async fn loopback(filters: &[String]) {
    let cases: Vec<(Mode, usize)> = [
        (Mode::Paced, 1),
        (Mode::Paced, 10),
        (Mode::Bulk, 1),
        (Mode::Bulk, 10),
    ]
    .into_iter()
    .filter(|(mode, n)| selected(filters, &format!("loopback/{}/{n}", mode.name())))
    .collect();
    if cases.is_empty() {
        return;
    }
    let settings = TransportSettings::default();
    println!("\n## loopback: edge TunnelClient -> origin server::serve on 127.0.0.1");
    println!("settings: {}", settings_line(&settings));
    println!(
        "paced: {} s per run; bulk: {} ms warm-up, then {} s measured; median (min-max) of {RUNS} runs",
        LOOPBACK_PACED.as_secs(),
        LOOPBACK_WARMUP.as_millis(),
        LOOPBACK_BULK.as_secs()
    );
    println!(
        "building the payloads alone (alloc + copy, included below): {:.3} cores per Gbit/s",
        payload_cost()
    );
    let tunnel = start_tunnel(&settings, None).await;
    println!();
    println!("| mode | streams | messages/run | latency p50 ms | latency p99 ms | payload Mbit/s | CPU cores | cores per Gbit/s | lost packets (5 runs) | kernel UDP drops (5 runs) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (mode, n) in cases {
        let mut runs = Vec::new();
        let lost0 = path_figures(&tunnel).lost_packets;
        let udp0 = udp_rcvbuf_errors();
        for _ in 0..RUNS {
            let (warmup, length) = match mode {
                Mode::Paced => (Duration::ZERO, LOOPBACK_PACED),
                Mode::Bulk => (LOOPBACK_WARMUP, LOOPBACK_BULK),
            };
            let (f, _) = run_case(&tunnel, n, mode, warmup, length).await;
            if f.mismatches > 0 {
                fail(
                    "loopback",
                    format!("{} messages arrived altered or out of order", f.mismatches),
                );
            }
            runs.push(f);
        }
        let lost = path_figures(&tunnel).lost_packets - lost0;
        let udp = match (udp0, udp_rcvbuf_errors()) {
            (Some(a), Some(b)) => (b - a).to_string(),
            _ => "?".into(),
        };
        println!(
            "| {} | {n} | {:.0} | {} | {} | {} | {} | {} | {lost} | {udp} |",
            mode.name(),
            stats(&runs, |f| f.due as f64).1,
            spread(stats(&runs, |f| latency_ms(f.p50)), fmt_ms),
            spread(stats(&runs, |f| latency_ms(f.p99)), fmt_ms),
            spread(stats(&runs, |f| f.payload_mbps), |v| format!("{v:.0}")),
            spread(stats(&runs, |f| f.cores), |v| format!("{v:.2}")),
            spread(stats(&runs, |f| f.cores_per_gbps()), |v| format!("{v:.2}")),
        );
    }
}

/// A group of lossy-path cases: the controllers and loss rates, and the cases run on
/// each fresh tunnel, in order.
struct LossyPart {
    name: &'static str,
    /// Runs only when a filter names it (keeps the default run within its budget).
    opt_in: bool,
    loss_rates: &'static [f64],
    cases: &'static [(Mode, usize)],
    about: &'static str,
}

const LOSSY_PARTS: [LossyPart; 2] = [
    LossyPart {
        name: "lossy",
        opt_in: false,
        loss_rates: &LOSS_RATES,
        cases: &[(Mode::Paced, 1), (Mode::Bulk, 1)],
        about: "paced: one 6 Mbit/s stream from the tunnel's start; bulk: one stream as fast as possible",
    },
    // A loaded tunnel: 10 paced streams, 60 Mbit/s offered to the 100 Mbit/s bottleneck.
    LossyPart {
        name: "load",
        opt_in: true,
        loss_rates: &[0.01],
        cases: &[(Mode::Paced, 10)],
        about: "paced10: ten 6 Mbit/s streams (60 Mbit/s offered) from the tunnel's start",
    },
];

fn case_name(part: &LossyPart, congestion: Congestion, loss: f64, mode: Mode, n: usize) -> String {
    let n = if n == 1 { String::new() } else { n.to_string() };
    format!(
        "{}/{}/{}%/{}{n}",
        part.name,
        congestion.as_str(),
        (loss * 100.0).round(),
        mode.name()
    )
}

async fn lossy(filters: &[String]) {
    for part in &LOSSY_PARTS {
        if part.opt_in && filters.is_empty() {
            continue;
        }
        lossy_part(part, filters).await;
    }
}

async fn lossy_part(part: &LossyPart, filters: &[String]) {
    let controllers = [Congestion::Bbr, Congestion::Cubic, Congestion::NewReno];
    let mut header = false;
    for congestion in controllers {
        for &loss in part.loss_rates {
            let cases: Vec<(Mode, usize)> = part
                .cases
                .iter()
                .copied()
                .filter(|&(m, n)| selected(filters, &case_name(part, congestion, loss, m, n)))
                .collect();
            if cases.is_empty() {
                continue;
            }
            let settings = TransportSettings {
                congestion,
                ..TransportSettings::default()
            };
            if !header {
                header = true;
                println!(
                    "\n## {}: edge -> UDP proxy -> origin, {} ms each way ({} ms RTT), \
                     {:.0} Mbit/s bottleneck with a {:.1} MB drop-tail queue, random loss both ways",
                    part.name,
                    ONE_WAY.as_millis(),
                    ONE_WAY.as_millis() * 2,
                    RATE_BITS_PER_S / 1e6,
                    QUEUE_BYTES / 1e6
                );
                println!(
                    "settings as the defaults but the controller: {}",
                    settings_line(&settings)
                );
                println!(
                    "one run per case, a fresh tunnel per controller and loss rate; {}; paced for {} s; \
                     bulk: {} s warm-up, {} s measured; 'in 1 s': share of video frames delivered within \
                     1 s of their send time (paced: all / due after {} s); latency over all messages \
                     (n/d: the percentile was not delivered within {} s of the window's end)",
                    part.about,
                    LOSSY_PACED.as_secs(),
                    LOSSY_WARMUP.as_secs(),
                    LOSSY_BULK.as_secs(),
                    STEADY_AFTER.as_secs(),
                    DRAIN.as_secs()
                );
                println!();
                println!("| controller | loss | mode | delivered Mbit/s | in 1 s | p50 ms | p99 ms | lost packets | srtt ms | cwnd KB | proxy: random loss / queue drops |");
                println!("|---|---|---|---|---|---|---|---|---|---|---|");
            }
            let model = PathModel {
                one_way: ONE_WAY,
                loss,
                rate_bits_per_s: RATE_BITS_PER_S,
                queue_bytes: QUEUE_BYTES,
            };
            let udp_errors0 = udp_rcvbuf_errors();
            let tunnel = start_tunnel(&settings, Some(model)).await;
            let counters = tunnel.proxy.as_ref().map(|p| p.counters.clone());
            let proxy_drops = || {
                counters.as_ref().map_or((0, 0), |c| {
                    (
                        c.random_losses.load(Ordering::Relaxed),
                        c.queue_drops.load(Ordering::Relaxed),
                    )
                })
            };
            for (mode, n) in cases {
                let before = path_figures(&tunnel);
                let p0 = proxy_drops();
                let (warmup, length) = match mode {
                    Mode::Paced => (Duration::ZERO, LOSSY_PACED),
                    Mode::Bulk => (LOSSY_WARMUP, LOSSY_BULK),
                };
                let (f, after) = run_case(&tunnel, n, mode, warmup, length).await;
                let p1 = proxy_drops();
                if f.mismatches > 0 {
                    fail(
                        "lossy",
                        format!("{} messages arrived altered or out of order", f.mismatches),
                    );
                }
                let within = match mode {
                    Mode::Paced => format!(
                        "{:.1} % / {:.1} %",
                        f.within * 100.0,
                        f.within_steady * 100.0
                    ),
                    Mode::Bulk => format!("{:.1} %", f.within * 100.0),
                };
                let n = if n == 1 { String::new() } else { n.to_string() };
                println!(
                    "| {} | {:.0} % | {}{n} | {:.2} | {within} | {} | {} | {} | {} | {} | {} / {} |",
                    congestion.as_str(),
                    loss * 100.0,
                    mode.name(),
                    f.payload_mbps,
                    ms(f.p50),
                    ms(f.p99),
                    after.lost_packets - before.lost_packets,
                    after
                        .srtt
                        .map_or("?".into(), |d| format!("{:.0}", d.as_secs_f64() * 1e3)),
                    after
                        .cwnd
                        .map_or("?".into(), |c| format!("{:.0}", c as f64 / 1e3)),
                    p1.0 - p0.0,
                    p1.1 - p0.1,
                );
            }
            drop(tunnel);
            if let (Some(a), Some(b)) = (udp_errors0, udp_rcvbuf_errors()) {
                if b > a {
                    println!(
                        "(kernel UDP receive-buffer drops, machine-wide, during this tunnel: {})",
                        b - a
                    );
                }
            }
        }
    }
}

fn main() {
    bench_main(|filters| async move {
        let defaults = TransportSettings::default();
        println!("# longhaul-tunnel bench (filters: {filters:?})");
        environment(&defaults);
        loopback(&filters).await;
        lossy(&filters).await;
    });
}
