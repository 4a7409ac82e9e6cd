//! RTSP ingest per core beside RTMP ingest, for the same media (issue 18).
//!
//! **RTSP**: an `RtspSession` taken through OPTIONS, ANNOUNCE, SETUP (TCP interleaved,
//! both tracks) and RECORD with real request bytes, then a long run of `$`-interleaved
//! RTP of an H.264 and AAC stream, repeated with sequence numbers and timestamps
//! advanced, so the depacketisers see one continuous stream. Two streams, one after the
//! other (`LONGHAUL_BENCH_MEDIA=captured` or `synthetic` runs one):
//! - *captured*: ffmpeg's captures (`tests/fixtures/h264-inband.rtp`, `aac.rtp`, their
//!   sender reports first, as ffmpeg sends them): 145 kbit/s, small frames;
//! - *synthetic*: the capacity benchmark's 600 kbit/s stream (issue 17's unit: 536
//!   kbit/s of H.264 at 25 fps, 64 kbit/s of AAC) packetised here as ffmpeg's muxer
//!   does (single NAL units or FU-A up to 1,460 bytes; 6 AUs per AAC-hbr packet).
//!
//! The wire is fed through `read_buffer`/`handle_read` as a driver does, each packet
//! event to `RtpIngest::push`; out come `RtmpMessage`s (FLV tag bodies).
//!
//! **RTMP**: the messages that RTSP run produced, chunked by `ChunkEncoder` at chunk size
//! 4096 (audio on chunk stream 4, video on 6, as encoders do), fed the same way to a
//! `ServerSession` that a `ClientSession` took through handshake, `connect` and
//! `publish`; out come its `Media` events.
//!
//! Each read takes what a socket read into the session's buffer would with the socket
//! full: up to `READ` bytes (16 KiB; `LONGHAUL_BENCH_READ` sets it, e.g. 1460 for one
//! TCP segment a read), no more than the room the buffer offers. The clock passed in
//! follows the media's time at the read's offset (as if it arrived live), so RTMP's
//! message-rate bound and RTP's jitter see a live stream. Session set-up is outside
//! the timing; every message produced is dropped at once, as a hub would take it.
//!
//! The paths alternate (ABBA) over `ROUNDS` rounds of about a second each (a round is
//! a number of passes over a pre-built wire, each pass a fresh session, calibrated per
//! path); the figures are medians of the rounds. Both paths must deliver the same
//! messages (count and payload bytes), and the RTP must arrive with nothing lost.
//!
//! Run: `cargo bench -p longhaul-rtsp --bench ingest`

use bytes::Buf;
use longhaul_rtmp::chunk::ChunkEncoder;
use longhaul_rtmp::message::type_id;
use longhaul_rtmp::{
    ClientConfig, ClientEvent, ClientGoal, ClientSession, OutputQueue, RtmpMessage, ServerConfig,
    ServerEvent, ServerSession,
};
use longhaul_rtsp::{RtpIngest, RtspEvent, RtspSession, SessionConfig};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

/// Bytes a read takes at most (a socket read into the session's 16 KiB blocks).
const READ: usize = 16 * 1024;
/// Media in one pass over the wire: 30 minutes.
const PASS_MEDIA_SECS: f64 = 1800.0;
/// Rounds per path, alternating.
const ROUNDS: usize = 7;
/// What a round aims to take.
const ROUND_TARGET: Duration = Duration::from_secs(1);
/// Bounds on the passes of a round, whatever the calibration says.
const MAX_PASSES: usize = 200;
/// The issue-17 unit: a 600 kbit/s publisher (536 kbit/s of video at 25 fps, 64 kbit/s
/// of AAC at 48 kHz: 25 + 46.875 messages a second).
const STREAM_BYTES_PER_SEC: f64 = 600_000.0 / 8.0;
const STREAM_MESSAGES_PER_SEC: f64 = 25.0 + 48_000.0 / 1024.0;

const URL: &str = "rtsp://1_abcdefgh.p.s.localhost:1554/kLive/1_abcdefgh_1?t=tok";
const SESSION_ID: &str = "s3cr3t";

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The datagrams of a `.rtp`/`.rtcp` fixture: each a 2-byte big-endian length and bytes.
fn datagrams(name: &str) -> Vec<Vec<u8>> {
    let data = fixture(name);
    let mut rest = &data[..];
    let mut out = Vec::new();
    while let [high, low, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        out.push(tail[..len].to_vec());
        rest = &tail[len..];
    }
    out
}

fn sequence(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[2], p[3]])
}

fn timestamp(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[4], p[5], p[6], p[7]])
}

/// Where an RTP packet's payload starts (no padding in ffmpeg's packets).
fn payload_offset(p: &[u8]) -> usize {
    let mut at = 12 + 4 * usize::from(p[0] & 0x0f);
    if p[0] & 0x10 != 0 {
        let words = usize::from(u16::from_be_bytes([p[at + 2], p[at + 3]]));
        at += 4 + 4 * words;
    }
    at
}

/// One track's packets repeated for `media_secs`, each with its media time (s).
struct Track {
    channel: u8,
    clock: u32,
    payload_type: u8,
    packets: Vec<Vec<u8>>,
    /// RTP ticks one repetition of `packets` lasts.
    period: u32,
}

impl Track {
    fn repeated(&self, media_secs: f64) -> Vec<(f64, Vec<u8>)> {
        let first_ts = timestamp(&self.packets[0]);
        let first_seq = sequence(&self.packets[0]);
        let count = self.packets.len() as u32;
        let mut out = Vec::new();
        for round in 0u32.. {
            for (i, p) in self.packets.iter().enumerate() {
                let ts_off = timestamp(p).wrapping_sub(first_ts) + round * self.period;
                let at = f64::from(ts_off) / f64::from(self.clock);
                if at >= media_secs {
                    return out;
                }
                let mut p = p.clone();
                p[1] = (p[1] & 0x80) | self.payload_type;
                let seq = first_seq
                    .wrapping_add((round * count) as u16)
                    .wrapping_add(i as u16);
                p[2..4].copy_from_slice(&seq.to_be_bytes());
                let ts = first_ts.wrapping_add(ts_off);
                p[4..8].copy_from_slice(&ts.to_be_bytes());
                out.push((at, p));
            }
        }
        unreachable!()
    }
}

fn video_track() -> Track {
    let packets = datagrams("h264-inband.rtp");
    // 25 fps: the smallest step between two frames' timestamps.
    let frame = packets
        .windows(2)
        .map(|w| timestamp(&w[1]).wrapping_sub(timestamp(&w[0])))
        .filter(|&d| d > 0)
        .min()
        .expect("frames");
    let span = timestamp(packets.last().unwrap()).wrapping_sub(timestamp(&packets[0]));
    Track {
        channel: 0,
        clock: 90_000,
        payload_type: 96,
        period: span + frame,
        packets,
    }
}

fn audio_track() -> Track {
    let packets = datagrams("aac.rtp");
    let last = packets.last().unwrap();
    // AAC-hbr: AU-headers-length in bits, 16 bits (13 size, 3 index) per AU of 1024 samples.
    let at = payload_offset(last);
    let aus = u32::from(u16::from_be_bytes([last[at], last[at + 1]])) / 16;
    let span = timestamp(last).wrapping_sub(timestamp(&packets[0]));
    Track {
        channel: 2,
        clock: 48_000,
        payload_type: 97,
        period: span + aus * 1024,
        packets,
    }
}

/// A synthetic RTP packet: version 2, no CSRC, no extension.
fn rtp(payload_type: u8, sequence: u16, timestamp: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, payload_type | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&sequence.to_be_bytes());
    p.extend_from_slice(&timestamp.to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Bytes standing in for coded data (never zero, so no start codes).
fn filler(len: usize, seed: &mut u32) -> impl Iterator<Item = u8> + '_ {
    (0..len).map(move |_| {
        *seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (*seed >> 24) as u8 | 1
    })
}

/// Most RTP payload per packet, as ffmpeg's muxer: 1,472-byte packets less the header.
const MAX_RTP_PAYLOAD: usize = 1460;

/// One GOP of the issue-17 stream's video packetised as ffmpeg does (RFC 6184 mode 1):
/// 50 frames at 25 fps (2 s), 536 kbit/s on average with the IDR 5 times a P frame;
/// a NAL unit that fits is a single NAL unit packet, else FU-A fragments.
fn synthetic_video() -> Track {
    const FRAMES: u32 = 50;
    const TICKS_PER_FRAME: u32 = 90_000 / 25;
    let total = 536_000 / 8 * 2;
    let p_size = total / (FRAMES as usize + 4);
    let idr_size = total - p_size * (FRAMES as usize - 1);
    let mut seed = 1;
    let mut packets = Vec::new();
    let mut seq = 0u16;
    for frame in 0..FRAMES {
        let (nal_type, size) = if frame == 0 {
            (5u8, idr_size)
        } else {
            (1, p_size)
        };
        let mut nal = vec![0x60 | nal_type];
        nal.extend(filler(size - 1, &mut seed));
        let ts = frame * TICKS_PER_FRAME;
        if nal.len() <= MAX_RTP_PAYLOAD {
            packets.push(rtp(96, seq, ts, true, &nal));
            seq = seq.wrapping_add(1);
            continue;
        }
        let pieces: Vec<&[u8]> = nal[1..].chunks(MAX_RTP_PAYLOAD - 2).collect();
        for (i, piece) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            let header = nal_type | if i == 0 { 0x80 } else { 0 } | if last { 0x40 } else { 0 };
            let mut payload = vec![(nal[0] & 0xe0) | 28, header];
            payload.extend_from_slice(piece);
            packets.push(rtp(96, seq, ts, last, &payload));
            seq = seq.wrapping_add(1);
        }
    }
    Track {
        channel: 0,
        clock: 90_000,
        payload_type: 96,
        period: FRAMES * TICKS_PER_FRAME,
        packets,
    }
}

/// The issue-17 stream's audio: 64 kbit/s AAC-LC at 48 kHz (171-byte AUs), AAC-hbr with
/// 6 AUs a packet as ffmpeg aggregates them (its captures: 6 or 7).
fn synthetic_audio() -> Track {
    const PACKETS: u32 = 8;
    const AUS: u32 = 6;
    const AU_SIZE: u16 = 171;
    let mut seed = 2;
    let mut packets = Vec::new();
    for i in 0..PACKETS {
        let mut payload = (16 * AUS as u16).to_be_bytes().to_vec();
        for _ in 0..AUS {
            payload.extend_from_slice(&(AU_SIZE << 3).to_be_bytes());
        }
        payload.extend(filler(usize::from(AU_SIZE) * AUS as usize, &mut seed));
        packets.push(rtp(97, i as u16, i * AUS * 1024, true, &payload));
    }
    Track {
        channel: 2,
        clock: 48_000,
        payload_type: 97,
        period: PACKETS * AUS * 1024,
        packets,
    }
}

/// A stream to take in: the ANNOUNCE's SDP, its tracks, and the sender reports sent first.
struct Media {
    what: &'static str,
    sdp: String,
    video: Track,
    audio: Track,
    reports: Vec<(u8, Vec<u8>)>,
}

/// ffmpeg's captures (tests/fixtures): H.264 320x240 at 25 fps, AAC 48 kHz mono.
fn captured() -> Media {
    let mut reports = Vec::new();
    for (name, channel) in [("h264-inband.rtcp", 1), ("aac.rtcp", 3)] {
        reports.extend(datagrams(name).into_iter().map(|r| (channel, r)));
    }
    Media {
        what: "ffmpeg's captures (tests/fixtures/h264-inband, aac: H.264 320x240 at 25 fps, SPS/PPS in band, AAC 48 kHz mono)",
        sdp: sdp(),
        video: video_track(),
        audio: audio_track(),
        reports,
    }
}

/// The issue-17 unit, packetised here: 536 kbit/s of H.264 at 25 fps (2 s GOP) and
/// 64 kbit/s of AAC; SPS/PPS in the SDP.
fn synthetic() -> Media {
    let sdp = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
        m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
        a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QADKzZQUH7ARAAAAMAEAAAAwMg8UKZYA==,aOvjyyLA; profile-level-id=64000C\r\n\
        a=control:streamid=0\r\n\
        m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/1\r\n\
        a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=118856E500\r\n\
        a=control:streamid=1\r\n";
    Media {
        what: "synthetic 600 kbit/s (the capacity benchmark's stream: 536 kbit/s H.264 at 25 fps, 2 s GOP, FU-A; 64 kbit/s AAC, 6 AUs a packet)",
        sdp: sdp.into(),
        video: synthetic_video(),
        audio: synthetic_audio(),
        reports: Vec::new(),
    }
}

/// The ANNOUNCE's SDP: the two captures' media, with controls (audio on payload type 97).
fn sdp() -> String {
    let media = |name: &str, pt: u8, control: u8| -> String {
        let text = String::from_utf8(fixture(name)).unwrap();
        let mut lines: Vec<String> = text
            .lines()
            .skip_while(|l| !l.starts_with("m="))
            .map(|l| {
                l.replace(" RTP/AVP 96", &format!(" RTP/AVP {pt}"))
                    .replace("a=rtpmap:96 ", &format!("a=rtpmap:{pt} "))
                    .replace("a=fmtp:96 ", &format!("a=fmtp:{pt} "))
            })
            .collect();
        lines.push(format!("a=control:streamid={control}"));
        lines.iter().map(|l| format!("{l}\r\n")).collect()
    };
    format!(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{}{}",
        media("h264-inband.sdp", 96, 0),
        media("aac.sdp", 97, 1)
    )
}

fn interleave(wire: &mut Vec<u8>, channel: u8, packet: &[u8]) {
    wire.push(b'$');
    wire.push(channel);
    wire.extend_from_slice(&(packet.len() as u16).to_be_bytes());
    wire.extend_from_slice(packet);
}

/// A wire and the media time at each KiB of it (the clock a read at that offset sees).
struct Wire {
    bytes: Vec<u8>,
    secs_at_kib: Vec<f64>,
}

impl Wire {
    fn new(bytes: Vec<u8>, marks: &[(usize, f64)]) -> Self {
        let mut secs_at_kib = Vec::with_capacity(bytes.len() / 1024 + 1);
        let mut m = 0;
        for kib in 0..=bytes.len() / 1024 {
            while m + 1 < marks.len() && marks[m + 1].0 <= kib * 1024 {
                m += 1;
            }
            secs_at_kib.push(marks.get(m).map_or(0.0, |&(_, s)| s));
        }
        Self { bytes, secs_at_kib }
    }

    fn now(&self, base: Instant, offset: usize) -> Instant {
        base + Duration::from_secs_f64(self.secs_at_kib[offset / 1024])
    }
}

/// The RTSP wire: the sender reports, then both tracks' RTP in media-time order.
fn rtsp_wire(media: &Media, media_secs: f64) -> Wire {
    let mut packets: Vec<(f64, u8, Vec<u8>)> = Vec::new();
    for track in [&media.video, &media.audio] {
        packets.extend(
            track
                .repeated(media_secs)
                .into_iter()
                .map(|(at, p)| (at, track.channel, p)),
        );
    }
    packets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut wire = Vec::new();
    for (channel, report) in &media.reports {
        interleave(&mut wire, *channel, report);
    }
    let mut marks = Vec::with_capacity(packets.len());
    for (at, channel, p) in &packets {
        marks.push((wire.len(), *at));
        interleave(&mut wire, *channel, p);
    }
    Wire::new(wire, &marks)
}

fn rtsp_request(method: &str, url: &str, cseq: u32, extra: &str, body: &str) -> Vec<u8> {
    let length = if body.is_empty() {
        String::new()
    } else {
        format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n",
            body.len()
        )
    };
    format!("{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\n{extra}{length}User-Agent: Lavf59.27.100\r\n\r\n{body}")
        .into_bytes()
}

/// A session recording both tracks over TCP, and the media ingest for its tracks.
fn rtsp_recording(sdp: &str, now: Instant) -> (RtspSession, RtpIngest) {
    let config = SessionConfig {
        session_id: SESSION_ID.into(),
        ..SessionConfig::default()
    };
    let mut s = RtspSession::new(config, now);
    let session = format!("Session: {SESSION_ID}\r\n");
    s.handle_input(now, &rtsp_request("OPTIONS", URL, 1, "", ""))
        .unwrap();
    let events = s
        .handle_input(now, &rtsp_request("ANNOUNCE", URL, 2, "", sdp))
        .unwrap();
    let [RtspEvent::Announce { tracks, .. }] = &events[..] else {
        panic!("{events:?}")
    };
    let ingest = RtpIngest::new(tracks).expect("tracks taken");
    s.accept_announce();
    for (track, channels) in [(0, "0-1"), (1, "2-3")] {
        let transport =
            format!("Transport: RTP/AVP/TCP;unicast;interleaved={channels};mode=record\r\n");
        let extra = if track == 0 {
            transport
        } else {
            format!("{transport}{session}")
        };
        let url = format!("{URL}/streamid={track}");
        s.handle_input(now, &rtsp_request("SETUP", &url, 3 + track, &extra, ""))
            .unwrap();
    }
    let events = s
        .handle_input(now, &rtsp_request("RECORD", URL, 5, &session, ""))
        .unwrap();
    assert_eq!(events, [RtspEvent::Record]);
    s.accept_record();
    assert!(s.is_recording());
    let answers = s.take_answers();
    assert!(answers.iter().all(|a| a.status == 200), "{answers:?}");
    s.take_output();
    (s, ingest)
}

/// What a pass produced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    messages: u64,
    video: u64,
    audio: u64,
    payload_bytes: u64,
}

impl Tally {
    fn add(&mut self, m: &RtmpMessage) {
        self.messages += 1;
        match m.type_id {
            type_id::VIDEO => self.video += 1,
            type_id::AUDIO => self.audio += 1,
            _ => {}
        }
        self.payload_bytes += m.payload.len() as u64;
    }
}

/// One RTSP pass: a fresh recording session fed `wire` in socket-sized reads (at most
/// [`read_size`] bytes, no more than the room its buffer offers); the messages made are
/// dropped, or kept in `keep`. The time is the feeding's alone.
fn rtsp_pass(wire: &Wire, sdp: &str, keep: Option<&mut Vec<RtmpMessage>>) -> (Duration, Tally) {
    let base = Instant::now();
    let (mut session, mut ingest) = rtsp_recording(sdp, base);
    let mut messages = Vec::new();
    let mut tally = Tally::default();
    let mut kept = keep;
    let read = read_size();
    let start = Instant::now();
    let mut offset = 0;
    while offset < wire.bytes.len() {
        let now = wire.now(base, offset);
        let buffer = session.read_buffer();
        let room = buffer.capacity() - buffer.len();
        let n = room.min(read).min(wire.bytes.len() - offset);
        buffer.extend_from_slice(&wire.bytes[offset..offset + n]);
        offset += n;
        let events = session.handle_read(now, n).expect("RTSP input");
        for event in events {
            if let RtspEvent::Packet { track, rtcp, data } = event {
                ingest.push(now, track, rtcp, data, &mut messages);
                for m in messages.drain(..) {
                    tally.add(&m);
                    match &mut kept {
                        Some(k) => k.push(m),
                        None => drop(black_box(m)),
                    }
                }
            }
        }
    }
    let elapsed = start.elapsed();
    for track in 0..2 {
        let c = ingest.counts(track).unwrap();
        assert!(
            c.packets > 0 && c.lost == 0 && c.late == 0 && c.malformed == 0,
            "track {track}: {c:?}"
        );
    }
    assert_eq!(session.counts().packets_dropped, 0);
    (elapsed, tally)
}

/// A server session past handshake, `connect` and `publish` (accepted) on stream 1.
fn rtmp_publishing(now: Instant) -> ServerSession {
    let mut server = ServerSession::new(ServerConfig::default(), now);
    let mut client = ClientSession::new(
        ClientConfig::new("kLive", "rtmp://127.0.0.1:1935/kLive"),
        ClientGoal::Publish {
            name: "1_abcdefgh_1?t=tok".into(),
            publish_type: "live".into(),
        },
        now,
    );
    let mut ready = false;
    for _ in 0..50 {
        let to_server = client.output().to_vec();
        client.output().advance(to_server.len());
        let mut events = server.handle_input(now, &to_server).expect("server");
        while server.has_undecoded_input() {
            events.extend(server.handle_input(now, &[]).expect("server"));
        }
        for event in events {
            match event {
                ServerEvent::ConnectRequested { .. } => server.accept_connect(),
                ServerEvent::PublishRequested { stream_id, .. } => server.accept_publish(stream_id),
                _ => {}
            }
        }
        let to_client = server.output().to_vec();
        server.output().advance(to_client.len());
        let events = client.handle_input(now, &to_client).expect("client");
        ready |= events
            .iter()
            .any(|e| matches!(e, ClientEvent::Ready { stream_id: 1 }));
        if ready && to_server.is_empty() && to_client.is_empty() {
            return server;
        }
    }
    panic!("the RTMP publish did not start");
}

/// The RTMP wire of `messages`: chunk size 4096, audio on chunk stream 4, video on 6.
fn rtmp_wire(messages: &[RtmpMessage]) -> Wire {
    let mut encoder = ChunkEncoder::new();
    encoder.set_chunk_size(4096);
    let mut queue = OutputQueue::new();
    let mut wire = Vec::new();
    let mut marks = Vec::with_capacity(messages.len());
    for m in messages {
        marks.push((wire.len(), f64::from(m.timestamp) / 1000.0));
        let csid = if m.type_id == type_id::AUDIO { 4 } else { 6 };
        encoder.encode(csid, m, &mut queue);
        while queue.has_remaining() {
            let chunk = queue.chunk();
            wire.extend_from_slice(chunk);
            let n = chunk.len();
            queue.advance(n);
        }
    }
    Wire::new(wire, &marks)
}

/// One RTMP pass: a fresh publishing session fed `wire` as [`rtsp_pass`] feeds its own.
fn rtmp_pass(wire: &Wire) -> (Duration, Tally) {
    let base = Instant::now();
    let mut session = rtmp_publishing(base);
    let mut tally = Tally::default();
    let read = read_size();
    let start = Instant::now();
    let mut offset = 0;
    while offset < wire.bytes.len() {
        let now = wire.now(base, offset);
        let buffer = session.read_buffer();
        let room = buffer.capacity() - buffer.len();
        let n = room.min(read).min(wire.bytes.len() - offset);
        buffer.extend_from_slice(&wire.bytes[offset..offset + n]);
        offset += n;
        let mut received = n;
        loop {
            let events = session.handle_read(now, received).expect("RTMP input");
            received = 0;
            for event in events {
                if let ServerEvent::Media { message, .. } = event {
                    tally.add(&message);
                    drop(black_box(message));
                }
            }
            if !session.has_undecoded_input() {
                break;
            }
        }
        // Acknowledgements: a driver writes them out.
        let out = session.output();
        let pending = out.remaining();
        out.advance(pending);
    }
    (start.elapsed(), tally)
}

fn read_size() -> usize {
    std::env::var("LONGHAUL_BENCH_READ")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(READ)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Passes of a round so that it takes about [`ROUND_TARGET`], from one pass's time.
fn passes_for(one: Duration) -> usize {
    ((ROUND_TARGET.as_secs_f64() / one.as_secs_f64().max(1e-6)).round() as usize)
        .clamp(1, MAX_PASSES)
}

struct Figures {
    mb_per_sec: Vec<f64>,
    messages_per_sec: Vec<f64>,
    realtime: Vec<f64>,
}

impl Figures {
    fn new() -> Self {
        Self {
            mb_per_sec: Vec::new(),
            messages_per_sec: Vec::new(),
            realtime: Vec::new(),
        }
    }

    fn add(&mut self, passes: usize, time: Duration, tally: Tally, media_secs: f64) {
        let s = time.as_secs_f64();
        let n = passes as f64;
        self.mb_per_sec
            .push(n * tally.payload_bytes as f64 / s / 1e6);
        self.messages_per_sec.push(n * tally.messages as f64 / s);
        self.realtime.push(n * media_secs / s);
    }
}

/// Both paths on `media`, alternating; prints the rounds and the medians.
fn bench(media: &Media) {
    let read = read_size();
    let sdp = &media.sdp;
    let rtsp = rtsp_wire(media, PASS_MEDIA_SECS);

    // The reference pass: what RTSP ingest makes of the stream, which RTMP then carries.
    let mut messages = Vec::new();
    let (_, tally) = rtsp_pass(&rtsp, sdp, Some(&mut messages));
    let media_secs = f64::from(messages.last().expect("messages").timestamp) / 1000.0;
    let rtmp = rtmp_wire(&messages);
    drop(messages);
    assert!(tally.video > 0 && tally.audio > 0, "{tally:?}");
    let (_, rtmp_tally) = rtmp_pass(&rtmp);
    assert_eq!(
        rtmp_tally, tally,
        "RTMP delivered other messages than RTSP made"
    );

    let kbit = tally.payload_bytes as f64 * 8.0 / media_secs / 1000.0;
    println!(
        "media: {}, repeated for {media_secs:.0} s: \
         {} messages ({} video, {} audio), {:.1} MB of FLV tag bodies ({kbit:.0} kbit/s, {:.1} messages/s)",
        media.what,
        tally.messages,
        tally.video,
        tally.audio,
        tally.payload_bytes as f64 / 1e6,
        tally.messages as f64 / media_secs
    );
    println!(
        "wire: RTSP {:.1} MB interleaved, RTMP {:.1} MB at chunk size 4096; reads of up to {read} bytes",
        rtsp.bytes.len() as f64 / 1e6,
        rtmp.bytes.len() as f64 / 1e6
    );

    // Calibrated on warm passes (the first ones paid for page faults).
    let rtsp_passes = passes_for(rtsp_pass(&rtsp, sdp, None).0);
    let rtmp_passes = passes_for(rtmp_pass(&rtmp).0);
    println!("{ROUNDS} rounds per path, alternating; a round is {rtsp_passes} RTSP or {rtmp_passes} RTMP passes (one core)");
    let mut rtsp_fig = Figures::new();
    let mut rtmp_fig = Figures::new();
    let mut ratios = Vec::new();
    for round in 0..ROUNDS {
        let run_rtsp = || {
            let mut time = Duration::ZERO;
            for _ in 0..rtsp_passes {
                let (t, got) = rtsp_pass(&rtsp, sdp, None);
                assert_eq!(got, tally);
                time += t;
            }
            time
        };
        let run_rtmp = || {
            let mut time = Duration::ZERO;
            for _ in 0..rtmp_passes {
                let (t, got) = rtmp_pass(&rtmp);
                assert_eq!(got, tally);
                time += t;
            }
            time
        };
        let (t_rtsp, t_rtmp) = if round % 2 == 0 {
            let a = run_rtsp();
            (a, run_rtmp())
        } else {
            let b = run_rtmp();
            (run_rtsp(), b)
        };
        rtsp_fig.add(rtsp_passes, t_rtsp, tally, media_secs);
        rtmp_fig.add(rtmp_passes, t_rtmp, tally, media_secs);
        // CPU per message, RTSP over RTMP, within the round.
        let per_rtsp = t_rtsp.as_secs_f64() / rtsp_passes as f64;
        let per_rtmp = t_rtmp.as_secs_f64() / rtmp_passes as f64;
        ratios.push(per_rtsp / per_rtmp);
        println!(
            "round {round}: RTSP {:>7.1} MB/s {:>9.0} msg/s | RTMP {:>7.1} MB/s {:>9.0} msg/s | RTSP cost {:.2}x RTMP's",
            rtsp_fig.mb_per_sec[round],
            rtsp_fig.messages_per_sec[round],
            rtmp_fig.mb_per_sec[round],
            rtmp_fig.messages_per_sec[round],
            per_rtsp / per_rtmp
        );
    }

    println!();
    println!("medians of {ROUNDS} rounds, one core:");
    println!(
        "| path | media MB/s | messages/s | this stream, times real time | 600 kbit/s streams by bytes | by messages |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, f) in [("RTSP", &rtsp_fig), ("RTMP", &rtmp_fig)] {
        let mb = median(f.mb_per_sec.clone());
        let msgs = median(f.messages_per_sec.clone());
        println!(
            "| {name} | {mb:.1} | {msgs:.0} | {:.0} | {:.0} | {:.0} |",
            median(f.realtime.clone()),
            mb * 1e6 / STREAM_BYTES_PER_SEC,
            msgs / STREAM_MESSAGES_PER_SEC
        );
    }
    let ratio = median(ratios.clone());
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
    println!(
        "RTSP/RTMP CPU per message (and per byte): median {ratio:.2}x ({lo:.2}-{hi:.2}); RTSP throughput {:.2}x RTMP's",
        1.0 / ratio
    );
}

fn main() {
    let only = std::env::var("LONGHAUL_BENCH_MEDIA").unwrap_or_default();
    for (name, media) in [
        ("captured", captured as fn() -> Media),
        ("synthetic", synthetic),
    ] {
        if only.is_empty() || only == name {
            bench(&media());
            println!();
        }
    }
}
