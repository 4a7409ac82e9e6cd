//! # longhaul-load: the regional load generator
//!
//! Simulates regional encoders and measures what reaches the origins. For every region
//! (`--region sin=rtmp://EDGE:1935/kLive`), N publishers each get an entry from the
//! origin's API, publish a synthetic live stream to the region's edge (or straight to an
//! origin), and a matching player at the origin plays it back and records, frame by
//! frame, what arrived and when.
//!
//! ## The stream
//!
//! Synthetic FLV tags ([`plan`]): video at `--fps` with a keyframe every `--gop`
//! (keyframe ≈ 4 average P-frames, P-frames ±30 %, sized to hit `--bitrate`), AAC
//! frames every 1024/48000 s sized from `--audio-bitrate`, after `onMetaData` and the
//! AVC/AAC sequence headers. Every media payload carries after its FLV tag header a
//! [`stamp`]: magic, stream index, sequence number and send time (unix µs: publisher
//! and player may be different processes). The send time is the frame's scheduled
//! capture time, and publishers are paced on it ([`publisher`]): a publisher held back
//! by TCP sends late, never skips, and the delay shows as latency, as with `ffmpeg -re`.
//!
//! ## A run ([`run()`])
//!
//! Entries are created first ([`entries`]), one per publisher. Publishers then start at
//! `--ramp` per second; each publishes (timing the setup), sends its headers, attaches
//! its player (retrying while the stream is not live), and only then sends `--duration`
//! of paced media; then it unpublishes, and the player reads until it has every frame or
//! `--drain` after the last one left. Every wait is bounded, and the whole run has a
//! hard limit ([`run::hard_limit`]).
//!
//! ## What is measured ([`measure`], [`report`])
//!
//! Per stream: publish setup time; offered and delivered kbit/s; frames offered,
//! received, lost, duplicated, out of order; received within 1 s and 3 s (and later than
//! `--late`); latency p50/p90/p99/max, of all frames and of video alone; stalls (gaps
//! over 500 ms between video frames at the player, and the missing tail of a stream that
//! stopped arriving) and their length. *Offered* is everything the encoder produced in
//! `--duration`, written or not: frames a slow path held back in the publisher, and a
//! failed stream's whole plan, are offered and lost, and a lost frame counts as
//! infinitely late in the percentiles. Per region and in total: sums, and percentiles
//! over all frames. The summary table goes to stdout, the full report to `--json` (its shape is
//! [`Report`]'s, documented in `loadtest/README.md`).
//!
//! ## The soak ([`soak`])
//!
//! `longhaul-load soak` keeps such streams coming and going for `--length` (30 minutes
//! by default): each publisher slot publishes a session, stops, and comes back; players
//! join and leave streams; hostile clients (chunk-stream-id sprays, floods of empty
//! messages, half-open handshakes, wrong tokens) work beside them; and the nodes' RSS
//! and bound counters are sampled all along and after. Every honest frame is accounted
//! for as in a run.
//!
//! ## Scale
//!
//! One task per publisher and one per player; one allocation per frame (its payload,
//! filled from a shared template); a player records 4 bytes per frame and a bit per
//! sequence number. Sized for 1,000+ concurrent 600 kbit/s streams in one process.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = longhaul_load::Settings::from_args([
//!     "longhaul-load",
//!     "--region", "fra=rtmp://127.0.0.1:3935/kLive",
//!     "--play", "rtmp://127.0.0.1:1935/kLive",
//!     "--api", "http://127.0.0.1:8081",
//!     "--publishers", "10", "--duration", "20s",
//! ])?;
//! let report = longhaul_load::run(settings).await?;
//! print!("{}", report.table());
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod entries;
pub mod measure;
pub mod plan;
pub mod player;
pub mod progress;
pub mod publisher;
pub mod report;
pub mod run;
pub mod soak;
pub mod stamp;
pub mod viewer;

pub use config::{Cli, LoadArgs, Mode, Settings, TokenIn};
pub use report::Report;
pub use run::{run, LoadError};
