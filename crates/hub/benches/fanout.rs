//! Fan-out throughput: one publisher pushing a realistic stream to 1 and to 100 players
//! that drain their subscriptions, all on one current-thread tokio runtime, so the
//! figures are per core (publisher and players together). Median of 5 runs.
//!
//! Two figures per player count: the hub's hand-off alone, and the hand-off plus the
//! RTMP chunking each player connection does before its socket write (a
//! `ChunkEncoder` at 4096-byte chunks into an `OutputQueue`, drained as a write would).
//!
//! The stream: 25 fps video, a keyframe every 50 frames (2 s GOP), 10-20 KB per video
//! frame, plus 48 kHz AAC (46.875 frames/s, ~300 B each). Payloads are built before
//! timing: the figure is the hub's cost, not allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Buf;
use bytes::Bytes;
use longhaul_hub::{Hub, Leg, LegChoice, PlayerEvent, PublisherInfo, StreamKey};
use longhaul_rtmp::chunk::ChunkEncoder;
use longhaul_rtmp::message::type_id;
use longhaul_rtmp::{OutputQueue, RtmpMessage};

/// Video frames per run: 200 s of stream.
const VIDEO_FRAMES: u32 = 5_000;
/// The publisher pushes this many messages, then lets the players catch up: well under
/// the player queue bound, so nobody is skipped and every message is delivered.
const BATCH: usize = 64;
const RUNS: usize = 5;

fn stream() -> Vec<RtmpMessage> {
    let mut messages = vec![
        RtmpMessage {
            timestamp: 0,
            type_id: type_id::VIDEO,
            stream_id: 1,
            payload: Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]),
        },
        RtmpMessage {
            timestamp: 0,
            type_id: type_id::AUDIO,
            stream_id: 1,
            payload: Bytes::from_static(&[0xaf, 0, 0x12, 0x10]),
        },
    ];
    let mut seed: u32 = 0x1234_5678;
    let mut audio_ms = 0.0f64;
    for frame in 0..VIDEO_FRAMES {
        let video_ms = frame * 40;
        while audio_ms < f64::from(video_ms) {
            let mut payload = vec![0x5a; 300];
            payload[0] = 0xaf;
            payload[1] = 1;
            messages.push(RtmpMessage {
                timestamp: audio_ms as u32,
                type_id: type_id::AUDIO,
                stream_id: 1,
                payload: Bytes::from(payload),
            });
            audio_ms += 1024.0 / 48.0;
        }
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let len = 10_000 + (seed >> 8) as usize % 10_001;
        let mut payload = vec![0xa5; len];
        payload[0] = if frame % 50 == 0 { 0x17 } else { 0x27 };
        payload[1] = 1;
        messages.push(RtmpMessage {
            timestamp: video_ms,
            type_id: type_id::VIDEO,
            stream_id: 1,
            payload: Bytes::from(payload),
        });
    }
    messages
}

struct Run {
    elapsed: Duration,
    delivered_messages: u64,
    delivered_bytes: u64,
    skips: u64,
}

fn run(players: usize, messages: &[RtmpMessage], chunking: bool) -> Run {
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot build a runtime: {error}");
            std::process::exit(1);
        }
    };
    runtime.block_on(async {
        let hub = Hub::new();
        let key = StreamKey::new("bench", Leg::Primary);
        let publisher = PublisherInfo {
            addr: "192.0.2.1:50000".into(),
            connection_id: 1,
            ..Default::default()
        };
        let (publication, _) = hub.publish(key, publisher);
        let delivered_messages = Arc::new(AtomicU64::new(0));
        let delivered_bytes = Arc::new(AtomicU64::new(0));
        let skips = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..players {
            let Some(mut subscription) = hub.subscribe("bench", LegChoice::default()) else {
                eprintln!("stream not live");
                std::process::exit(1);
            };
            let (count, bytes, skips) = (
                Arc::clone(&delivered_messages),
                Arc::clone(&delivered_bytes),
                Arc::clone(&skips),
            );
            tasks.push(tokio::spawn(async move {
                let mut encoder = ChunkEncoder::new();
                encoder.set_chunk_size(4096);
                let mut output = OutputQueue::new();
                loop {
                    match subscription.recv().await {
                        PlayerEvent::Message(message) => {
                            if chunking {
                                encoder.encode(6, &message, &mut output);
                                let written = output.remaining();
                                output.advance(written);
                            }
                            bytes.fetch_add(message.payload.len() as u64, Ordering::Relaxed);
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        PlayerEvent::Skipped { .. } => {
                            skips.fetch_add(1, Ordering::Relaxed);
                        }
                        PlayerEvent::Dropped { .. } | PlayerEvent::Ended => return,
                    }
                }
            }));
        }
        let started = Instant::now();
        for (index, batch) in messages.chunks(BATCH).enumerate() {
            for message in batch {
                if publication.push(message.clone()).is_err() {
                    eprintln!("publication taken over");
                    std::process::exit(1);
                }
            }
            let pushed = ((index * BATCH + batch.len()) * players) as u64;
            while delivered_messages.load(Ordering::Relaxed) < pushed
                && skips.load(Ordering::Relaxed) == 0
            {
                tokio::task::yield_now().await;
            }
        }
        publication.finish();
        for task in tasks {
            let _ = task.await;
        }
        Run {
            elapsed: started.elapsed(),
            delivered_messages: delivered_messages.load(Ordering::Relaxed),
            delivered_bytes: delivered_bytes.load(Ordering::Relaxed),
            skips: skips.load(Ordering::Relaxed),
        }
    })
}

fn main() {
    let messages = stream();
    let bytes: usize = messages.iter().map(|m| m.payload.len()).sum();
    println!(
        "fanout: {} messages ({} video at 25 fps, GOP 50, 10-20 KB; AAC ~300 B), {:.1} MB per run; \
         current_thread runtime (one core); median of {RUNS} runs",
        messages.len(),
        VIDEO_FRAMES,
        bytes as f64 / 1e6
    );
    for (players, chunking) in [(1usize, false), (100, false), (1, true), (100, true)] {
        let mut runs: Vec<Run> = (0..RUNS)
            .map(|_| run(players, &messages, chunking))
            .collect();
        runs.sort_by_key(|r| r.elapsed);
        let median = &runs[RUNS / 2];
        let seconds = median.elapsed.as_secs_f64();
        let skips: u64 = runs.iter().map(|r| r.skips).sum();
        let what = if chunking {
            "hub + RTMP chunking"
        } else {
            "hub hand-off only  "
        };
        println!(
            "{what} {players:>3} players: {:>10} messages in {:>8.1} ms: {:>12.0} messages/s, \
             {:>8.1} MB/s delivered per core ({:.0} ns per message per player); skips {skips}",
            median.delivered_messages,
            seconds * 1e3,
            median.delivered_messages as f64 / seconds,
            median.delivered_bytes as f64 / seconds / 1e6,
            seconds * 1e9 / median.delivered_messages.max(1) as f64,
        );
    }
}
