//! Counters of what the emulator did, and their two renderings: the one-screen summary
//! printed at exit and the JSON written for the benchmark scripts (`--stats-json`).
//!
//! The benchmark compares the loss and rate it asked for with what the emulator actually
//! applied, so every packet that enters a direction is accounted for exactly once:
//! `packets_in = delivered_packets + lost_random + lost_burst + dropped_queue_full +
//! held_packets`.

use std::fmt::Write as _;

use serde::Serialize;

/// Counters of one direction, kept by [`crate::direction::Direction`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DirectionStats {
    /// Packets (and their bytes) read from the source device.
    pub packets_in: u64,
    pub bytes_in: u64,
    /// Lost by the independent (Bernoulli) loss.
    pub lost_random: u64,
    /// Lost by the Gilbert-Elliott chain.
    pub lost_burst: u64,
    /// Runs of consecutive Gilbert-Elliott losses; `lost_burst / loss_bursts` is the
    /// measured mean burst length.
    pub loss_bursts: u64,
    /// Tail-dropped because the bottleneck queue (or the safety cap) was full.
    pub dropped_queue_full: u64,
    /// Handed out for writing to the other device (see `write_errors` for failures).
    pub delivered_packets: u64,
    pub delivered_bytes: u64,
    /// Largest bottleneck backlog seen, in bytes, including the packet just queued.
    pub max_queue_bytes: u64,
    /// Largest number of packets held at once (queued plus in propagation).
    pub max_held_packets: u64,
    /// Packets still held when the counters were read (in flight at exit).
    pub held_packets: u64,
}

impl DirectionStats {
    /// Fraction of packets in that were lost (random or burst), `0` with no packets.
    pub fn loss_fraction(&self) -> f64 {
        if self.packets_in == 0 {
            0.0
        } else {
            (self.lost_random + self.lost_burst) as f64 / self.packets_in as f64
        }
    }
}

/// One direction in the report: its settings, the model's counters and the driver's.
#[derive(Debug, Clone, Serialize)]
pub struct DirectionReport {
    /// `a_to_b` or `b_to_a`.
    pub name: String,
    /// The resolved settings, in spec syntax.
    pub config: String,
    #[serde(flatten)]
    pub stats: DirectionStats,
    /// `(lost_random + lost_burst) / packets_in`.
    pub loss_fraction: f64,
    /// Mean delivered rate over the run, bits per second.
    pub delivered_bps: f64,
    /// Writes to the destination device that failed (the kernel refused the packet).
    pub write_errors: u64,
    /// Reads from the source device that failed with something other than "no data".
    pub read_errors: u64,
}

/// Everything `--stats-json` writes.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seed: u64,
    /// Wall time from `ready` to the end, seconds.
    pub elapsed_s: f64,
    pub a_to_b: DirectionReport,
    pub b_to_a: DirectionReport,
}

impl Report {
    /// The one-screen summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "longhaul-wan: {:.1} s, seed {}",
            self.elapsed_s, self.seed
        );
        for d in [&self.a_to_b, &self.b_to_a] {
            let s = &d.stats;
            let burst = if s.loss_bursts > 0 {
                format!(
                    " (mean burst {:.2})",
                    s.lost_burst as f64 / s.loss_bursts as f64
                )
            } else {
                String::new()
            };
            let _ = writeln!(out, "{}: {}", d.name, d.config);
            let _ = writeln!(
                out,
                "  in        {:>10} packets {:>14} bytes",
                s.packets_in, s.bytes_in
            );
            let _ = writeln!(
                out,
                "  delivered {:>10} packets {:>14} bytes  {:.2} Mbit/s",
                s.delivered_packets,
                s.delivered_bytes,
                d.delivered_bps / 1e6
            );
            let _ = writeln!(
                out,
                "  lost      {:>10} random  {:>10} burst{}  = {:.3}%",
                s.lost_random,
                s.lost_burst,
                burst,
                d.loss_fraction * 100.0
            );
            let _ = writeln!(
                out,
                "  dropped   {:>10} queue full; max queue {} bytes, max held {} packets, {} held at exit",
                s.dropped_queue_full, s.max_queue_bytes, s.max_held_packets, s.held_packets
            );
            if d.write_errors + d.read_errors > 0 {
                let _ = writeln!(
                    out,
                    "  errors    {} write, {} read",
                    d.write_errors, d.read_errors
                );
            }
        }
        out
    }
}
