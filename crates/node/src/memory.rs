//! Handing memory freed after a load back to the system.
//!
//! glibc's allocator keeps what a load freed in its arenas for reuse instead of
//! returning it: after the 30-minute soak (BENCHMARKS.md, "Soak") the edge still held
//! 144 MB of its 195 MB peak with no stream left, and the origin all of its peak. To an
//! SRE that reads as a leak, and the memory is not available to anything else on the
//! host. `malloc_trim(0)` gives back every free page of every arena (glibc 2.8 and later
//! also from the middle of a heap, with `MADV_DONTNEED`); [`trim_periodically`] calls it
//! every `node.memory_trim_secs` on a blocking thread, where the walk over the arenas
//! (it takes their locks one at a time) never holds up a runtime worker. On other
//! allocators and platforms there is nothing to call and the task does nothing.

use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Default `node.memory_trim_secs`: 10. A trim of a node holding 200 MB took about
/// 1 ms here (logged at debug level with its duration), so a call every 10 s costs
/// nothing, and memory freed by a load is back within 10 s of the load's end, sooner
/// than a Prometheus scrape interval makes it visible.
pub const DEFAULT_TRIM_SECS: u64 = 10;

/// Calls `malloc_trim(0)` every `interval` until `shutdown`.
pub async fn trim_periodically(interval: Duration, shutdown: CancellationToken) {
    if !TRIM_AVAILABLE {
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let started = Instant::now();
        let released = tokio::task::spawn_blocking(trim).await.unwrap_or(false);
        tracing::debug!(
            released,
            took_ms = started.elapsed().as_secs_f64() * 1000.0,
            "malloc_trim"
        );
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_AVAILABLE: bool = true;
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
const TRIM_AVAILABLE: bool = false;

/// Gives free memory back; true when some was.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn trim() -> bool {
    // SAFETY: malloc_trim only walks the allocator's own arenas under their locks; it
    // takes no pointer from us and is safe to call from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// Gives free memory back; true when some was (never, without glibc).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Megabytes allocated in small pieces and freed, with one piece allocated after
    /// them still live: glibc cannot shrink the heap from its top, and keeps the freed
    /// pages (no piece reaches its mmap threshold) until a trim.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_trim_gives_freed_memory_back() {
        fn rss_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap()
        }
        // Run on a thread of its own so the pieces come from one arena, touched.
        std::thread::spawn(|| {
            let pieces: Vec<Vec<u8>> = (0..64 * 1024).map(|i| vec![i as u8; 1024]).collect();
            let pin = vec![1u8; 1024];
            let held = rss_kib();
            drop(pieces);
            let freed = rss_kib();
            trim();
            let after = rss_kib();
            eprintln!("RSS {held} KiB held, {freed} KiB freed, {after} KiB trimmed");
            drop(pin);
            assert!(
                after + 32 * 1024 < held,
                "64 MiB freed, RSS {held} KiB before the trim, {after} KiB after"
            );
        })
        .join()
        .unwrap();
    }
}
