//! Chunk stream throughput: how many 10 KB video messages one core decodes and encodes.
//!
//! Plain `std::time`, no framework: each figure is the median of 5 runs. The input is
//! fed to the decoders in 64 KiB pieces, as socket reads would deliver it. rml_rtmp 0.8's
//! `ChunkDeserializer` is measured on the same bytes for comparison (REFERENCE.md quotes
//! about 700k messages/s at chunk size 4096 for it).
//!
//! Run: `cargo bench -p longhaul-rtmp --bench parse`

use bytes::{Buf, Bytes, BytesMut};
use longhaul_rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits};
use longhaul_rtmp::{OutputQueue, RtmpMessage};
use std::hint::black_box;
use std::time::{Duration, Instant};

const MESSAGES: usize = 5_000;
const PAYLOAD: usize = 10_000;
const READ_SIZE: usize = 64 * 1024;
const RUNS: usize = 5;

fn messages() -> Vec<RtmpMessage> {
    (0..MESSAGES)
        .map(|i| {
            let mut p = vec![(i % 251) as u8; PAYLOAD];
            p[0] = if i % 60 == 0 { 0x17 } else { 0x27 };
            RtmpMessage {
                timestamp: (i * 33) as u32,
                type_id: 9,
                stream_id: 1,
                payload: Bytes::from(p),
            }
        })
        .collect()
}

/// The wire bytes: Set Chunk Size, then the messages on chunk stream 6.
fn stream(msgs: &[RtmpMessage], chunk_size: u32) -> Vec<u8> {
    let mut enc = ChunkEncoder::new();
    let mut q = OutputQueue::new();
    enc.encode(2, &ChunkEncoder::set_chunk_size_message(chunk_size), &mut q);
    enc.set_chunk_size(chunk_size);
    for m in msgs {
        enc.encode(6, m, &mut q);
    }
    q.to_vec()
}

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

fn report(what: &str, chunk_size: u32, n: usize, payload_bytes: usize, t: Duration) {
    let s = t.as_secs_f64();
    println!(
        "{what:<28} chunk {chunk_size:>5}: {:>10.0} msg/s  {:>8.1} MB/s payload  ({n} msgs in {:.1} ms)",
        n as f64 / s,
        payload_bytes as f64 / s / 1e6,
        s * 1e3
    );
}

fn bench_decode(wire: &[u8], chunk_size: u32) {
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        let mut input = BytesMut::with_capacity(2 * READ_SIZE);
        let mut n = 0;
        let start = Instant::now();
        for piece in wire.chunks(READ_SIZE) {
            input.extend_from_slice(piece);
            while let Some(m) = dec.decode(&mut input).expect("decodes") {
                n += 1;
                black_box(&m);
            }
        }
        times.push(start.elapsed());
        assert_eq!(n, MESSAGES + 1);
    }
    report(
        "longhaul ChunkDecoder",
        chunk_size,
        MESSAGES,
        MESSAGES * PAYLOAD,
        median(times),
    );
}

fn bench_rml_decode(wire: &[u8], chunk_size: u32) {
    use rml_rtmp::chunk_io::ChunkDeserializer;
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let mut de = ChunkDeserializer::new();
        let mut n = 0;
        let start = Instant::now();
        for piece in wire.chunks(READ_SIZE) {
            let mut bytes = piece;
            while let Some(m) = de.get_next_message(bytes).expect("rml decodes") {
                bytes = &[];
                if m.type_id == 1 {
                    let size = u32::from_be_bytes([m.data[0], m.data[1], m.data[2], m.data[3]]);
                    de.set_max_chunk_size(size as usize).expect("chunk size");
                }
                n += 1;
                black_box(&m);
            }
        }
        times.push(start.elapsed());
        assert_eq!(n, MESSAGES + 1);
    }
    report(
        "rml_rtmp ChunkDeserializer",
        chunk_size,
        MESSAGES,
        MESSAGES * PAYLOAD,
        median(times),
    );
}

fn bench_encode(msgs: &[RtmpMessage], chunk_size: u32) {
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(chunk_size);
        let mut q = OutputQueue::new();
        let mut wire = 0;
        let start = Instant::now();
        for m in msgs {
            enc.encode(6, m, &mut q);
            // A driver writes the queue out; here it is only walked and dropped.
            wire += q.remaining();
            let n = q.remaining();
            q.advance(n);
        }
        times.push(start.elapsed());
        black_box(wire);
    }
    report(
        "longhaul ChunkEncoder",
        chunk_size,
        MESSAGES,
        MESSAGES * PAYLOAD,
        median(times),
    );
}

fn main() {
    let msgs = messages();
    println!("{MESSAGES} video messages of {PAYLOAD} bytes, fed in {READ_SIZE}-byte reads, median of {RUNS} runs, one core");
    for chunk_size in [4096u32, 128] {
        let wire = stream(&msgs, chunk_size);
        println!("chunk size {chunk_size}: {} wire bytes", wire.len());
        bench_decode(&wire, chunk_size);
        bench_rml_decode(&wire, chunk_size);
        bench_encode(&msgs, chunk_size);
    }
}
