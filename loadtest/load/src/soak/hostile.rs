//! The soak's hostile clients: what a stranger (or a broken encoder) does to an ingest
//! port, over and over for the whole soak, each attempt bounded in time.
//!
//! | kind | does | the node should |
//! |---|---|---|
//! | sprayer | handshake, then one tiny message on each of 65,536 chunk stream ids (the bytes of `tests/hardening.rs`) | close it at the 65th high id (`DecoderLimits::max_high_chunk_streams`) |
//! | flooder | publishes with a valid token, then one-byte chunks that each decode to an empty video message | close it at the message rate (`ingest.max_messages_per_second`); with that off, pause reading at the relay queue's bound (each message costs its place) |
//! | slowloris | sends one byte of the handshake and nothing more | close it after `ingest.handshake_timeout_secs` |
//! | bad token | publishes with a wrong token | refuse with a reason; slow, then ban its address |
//!
//! Each kind connects from a loopback address of its own (`--hostile-from` and the next
//! three), so bans fall on it alone. What happened to every attempt is counted in a
//! [`Tally`] per kind.

use crate::publisher::{self, connect};
use bytes::{BufMut, BytesMut};
use longhaul_rtmp::handshake::{Handshake, HandshakeProgress, HandshakeRole};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A node has this long to close a connection that broke a rule (a spray) or to finish
/// a handshake or publish: it decides from the bytes it has, in milliseconds; 10 s
/// leaves room for a loaded 2-core machine.
pub const WAIT: Duration = Duration::from_secs(10);
/// Between two attempts of a sprayer, a flooder or a bad-token client: about one
/// attack per second each, for the whole soak.
pub const PAUSE: Duration = Duration::from_secs(1);
/// Bytes of one-byte chunks a flooder sends per connection: 1 MiB is a million empty
/// messages, 60 times what fills the edge's relay queue to its 1 MiB bound at
/// `MESSAGE_COST` bytes each (72 MB held without that cost, `crates/edge/src/relay_queue.rs`).
pub const FLOOD_BYTES: usize = 1024 * 1024;
/// A flood's writes give up after this: a node that stopped reading holds the flooder
/// back (back-pressure is the bound), and the attempt ends there.
pub const FLOOD_LIMIT: Duration = Duration::from_secs(20);
/// The chunk stream a flooder's empty messages use (one-byte basic headers reach 63).
const FLOOD_CSID: u8 = 20;
/// Distinct error texts kept per kind; more are counted under "(other errors)".
const ERRORS_KEPT: usize = 20;

/// The four kinds, in the order of their source addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Sprayer,
    Flooder,
    Slowloris,
    BadToken,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Sprayer,
        Kind::Flooder,
        Kind::Slowloris,
        Kind::BadToken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sprayer => "sprayer",
            Kind::Flooder => "flooder",
            Kind::Slowloris => "slowloris",
            Kind::BadToken => "bad_token",
        }
    }

    /// Its source address: `first` plus its place in [`Kind::ALL`].
    pub fn source(self, first: std::net::Ipv4Addr) -> IpAddr {
        let offset = Kind::ALL.iter().position(|k| *k == self).unwrap_or(0) as u32;
        IpAddr::V4(std::net::Ipv4Addr::from(
            u32::from(first).wrapping_add(offset),
        ))
    }
}

/// What one kind's attempts came to.
#[derive(Debug, Default)]
pub struct Tally {
    attempts: AtomicU64,
    stopped: AtomicU64,
    held: AtomicU64,
    not_stopped: AtomicU64,
    failed: AtomicU64,
    longest_ms: AtomicU64,
    bytes: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

/// A [`Tally`] read out.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TallyReport {
    pub attempts: u64,
    /// The node ended the attempt as it should: closed the connection, or refused the
    /// publish with a reason.
    pub stopped: u64,
    /// The node stopped reading and held the client back until it gave up (a flood
    /// paused at the relay queue's bound).
    pub held: u64,
    /// The node let it be: a spray not closed within [`WAIT`], a flood taken whole, a
    /// half-open handshake still open when the load ended, a bad token accepted.
    pub not_stopped: u64,
    /// The attempt could not be made as planned (connection refused or reset before the
    /// attack, a publish cut without a reason); the texts are in `errors`.
    pub failed: u64,
    /// The longest the node took to end one attempt, ms.
    pub longest_ms: u64,
    /// Attack bytes written.
    pub bytes: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    fn attempt(&self) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
    }

    fn stopped_after(&self, took: Duration) {
        self.stopped.fetch_add(1, Ordering::Relaxed);
        self.longest_ms
            .fetch_max(took.as_millis() as u64, Ordering::Relaxed);
    }

    fn failed(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < ERRORS_KEPT || errors.contains_key(&error) {
            *errors.entry(error).or_default() += 1;
        } else {
            *errors.entry("(other errors)".into()).or_default() += 1;
        }
    }

    pub fn report(&self) -> TallyReport {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TallyReport {
            attempts: get(&self.attempts),
            stopped: get(&self.stopped),
            held: get(&self.held),
            not_stopped: get(&self.not_stopped),
            failed: get(&self.failed),
            longest_ms: get(&self.longest_ms),
            bytes: get(&self.bytes),
            errors: self
                .errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// One tiny message (type 99, one byte) on each of 65,536 chunk stream ids: 3-byte
/// basic headers (csid 64 + the next two bytes), as `tests/hardening.rs` sends.
pub fn spray() -> Vec<u8> {
    let mut out = Vec::with_capacity(65_536 * 15);
    for id in 0..65_536u32 {
        out.push(0x01);
        out.extend_from_slice(&(id as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 1, 99, 1, 0, 0, 0, 7]);
    }
    out
}

/// A type-0 chunk header of an empty video message on message stream `stream_id`,
/// then `n - 12` one-byte type-3 headers on the same chunk stream: each one a new empty
/// message (its length, 0, is complete at once). `n` bytes in all.
pub fn flood(stream_id: u32, n: usize) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(n.max(12));
    out.put_u8(FLOOD_CSID); // fmt 0
    out.put_slice(&[0, 0, 0]); // timestamp
    out.put_slice(&[0, 0, 0]); // length 0
    out.put_u8(longhaul_rtmp::message::type_id::VIDEO);
    out.put_u32_le(stream_id);
    out.resize(n.max(12), 0xc0 | FLOOD_CSID); // fmt 3
    out.to_vec()
}

/// Reads until the peer closes (EOF or error) or `limit`: `true` if it closed.
async fn closed_within(io: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = vec![0u8; 16 * 1024];
    let read_all = async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read_all).await.is_ok()
}

/// Completes the RTMP handshake as a client.
pub async fn handshaken(address: &str, from: IpAddr) -> Result<TcpStream, String> {
    let mut io = connect(address, Some(from))
        .await
        .map_err(|e| format!("connecting: {}", e.kind()))?;
    let mut handshake = Handshake::new(HandshakeRole::Client);
    let c0c1 = handshake.start().map_err(|e| format!("handshake: {e}"))?;
    io.write_all(&c0c1)
        .await
        .map_err(|e| format!("writing C0C1: {}", e.kind()))?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = io
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading S0S1S2: {}", e.kind()))?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        match handshake
            .process(&buf[..n])
            .map_err(|e| format!("handshake: {e}"))?
        {
            HandshakeProgress::InProgress { response } => io
                .write_all(&response)
                .await
                .map_err(|e| format!("writing C2: {}", e.kind()))?,
            HandshakeProgress::Done { response, .. } => {
                io.write_all(&response)
                    .await
                    .map_err(|e| format!("writing C2: {}", e.kind()))?;
                return Ok(io);
            }
        }
    }
}

/// A sprayer until `until`: handshake, spray, wait for the node to close it.
pub async fn sprayer(address: String, from: IpAddr, until: Instant, tally: &Tally) {
    let payload = spray();
    while Instant::now() < until {
        tally.attempt();
        let started = Instant::now();
        match tokio::time::timeout(WAIT, handshaken(&address, from)).await {
            Ok(Ok(mut io)) => {
                let written = tokio::time::timeout(WAIT, io.write_all(&payload)).await;
                if let Ok(Ok(())) = written {
                    tally
                        .bytes
                        .fetch_add(payload.len() as u64, Ordering::Relaxed);
                }
                // A failed write is the node closing on us part way: the expected end.
                let cut = matches!(written, Ok(Err(_))) || closed_within(&mut io, WAIT).await;
                if cut {
                    tally.stopped_after(started.elapsed());
                } else {
                    tally.not_stopped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Err(e)) => tally.failed(e),
            Err(_) => tally.failed(format!("handshake not done within {} s", WAIT.as_secs())),
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// A flooder until `until`: publish `url` (a valid token), then [`FLOOD_BYTES`] of
/// empty messages.
pub async fn flooder(url: String, from: IpAddr, until: Instant, tally: &Tally) {
    while Instant::now() < until {
        tally.attempt();
        let started = Instant::now();
        match publisher::publish_from(&url, Some(from), Instant::now() + WAIT).await {
            Ok((encoder, _)) => {
                let bytes = flood(encoder.stream_id(), FLOOD_BYTES);
                let mut io = encoder.into_inner();
                let mut written = 0usize;
                let sending = async {
                    for piece in bytes.chunks(64 * 1024) {
                        io.write_all(piece).await?;
                        written += piece.len();
                    }
                    Ok::<(), std::io::Error>(())
                };
                match tokio::time::timeout(FLOOD_LIMIT, sending).await {
                    Ok(Ok(())) => {
                        // Taken whole; closed by the node soon after, or let be.
                        if closed_within(&mut io, Duration::from_secs(1)).await {
                            tally.stopped_after(started.elapsed());
                        } else {
                            tally.not_stopped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Err(_)) => tally.stopped_after(started.elapsed()),
                    Err(_) => {
                        tally.held.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tally.bytes.fetch_add(written as u64, Ordering::Relaxed);
            }
            Err(e) => tally.failed(e),
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// A slowloris until `until`: one byte of C0, then nothing; again once the node closed
/// it. A connection still open at `until` is `not_stopped`.
pub async fn slowloris(address: String, from: IpAddr, until: Instant, tally: &Tally) {
    while Instant::now() < until {
        tally.attempt();
        let started = Instant::now();
        let mut io = match tokio::time::timeout(WAIT, connect(&address, Some(from))).await {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => {
                tally.failed(format!("connecting: {}", e.kind()));
                tokio::time::sleep(PAUSE).await;
                continue;
            }
            Err(_) => {
                tally.failed("connect timed out".into());
                continue;
            }
        };
        if io.write_all(&[3]).await.is_err() {
            tally.stopped_after(started.elapsed());
            continue;
        }
        tally.bytes.fetch_add(1, Ordering::Relaxed);
        let left = until.saturating_duration_since(Instant::now());
        if closed_within(&mut io, left).await {
            tally.stopped_after(started.elapsed());
        } else {
            tally.not_stopped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A bad-token client until `until`: publish `url` (a wrong token) and expect a refusal
/// with a reason.
pub async fn bad_token(url: String, from: IpAddr, until: Instant, tally: &Tally) {
    while Instant::now() < until {
        tally.attempt();
        let started = Instant::now();
        match publisher::publish_from(&url, Some(from), Instant::now() + WAIT).await {
            Ok((encoder, _)) => {
                tally.not_stopped.fetch_add(1, Ordering::Relaxed);
                publisher::finish(encoder, WAIT).await;
            }
            Err(e) if e.starts_with("publish refused: ") => tally.stopped_after(started.elapsed()),
            Err(e) => tally.failed(e),
        }
        tokio::time::sleep(PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use longhaul_rtmp::chunk::{ChunkDecoder, DecoderLimits};

    fn decode_all(bytes: &[u8]) -> Result<Vec<longhaul_rtmp::RtmpMessage>, String> {
        let mut decoder = ChunkDecoder::new(DecoderLimits::default());
        let mut input = bytes::BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = decoder.decode(&mut input).map_err(|e| e.to_string())? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn the_flood_decodes_to_empty_video_messages() {
        let messages = decode_all(&flood(1, 12 + 1000)).expect("valid chunks");
        assert_eq!(messages.len(), 1001);
        assert!(messages
            .iter()
            .all(|m| m.type_id == 9 && m.payload.is_empty() && m.stream_id == 1));
    }

    #[test]
    fn the_spray_is_refused_by_the_decoder() {
        let e = decode_all(&spray()).expect_err("refused");
        assert!(e.contains("chunk stream"), "{e}");
    }

    #[test]
    fn each_kind_its_own_address() {
        let first = std::net::Ipv4Addr::new(127, 0, 0, 2);
        let sources: Vec<IpAddr> = Kind::ALL.iter().map(|k| k.source(first)).collect();
        assert_eq!(
            sources,
            ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
                .map(|a| a.parse::<IpAddr>().unwrap())
        );
    }
}
