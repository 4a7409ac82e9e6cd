//! What the benchmarks measure with and how they print it: the clock every send and
//! arrival stamp counts from, the process's CPU time, the measured window, latency
//! percentiles, min / median / max over runs and the figures' formatting, plus the little
//! harness around a bench's `main` (case filters, the runtime, giving up).
//!
//! Shared, through `#[path]` includes, by `benches/relay_path.rs` (root package) and
//! `crates/tunnel/benches/tunnel.rs` (`longhaul-tunnel`), so that the two benches measure
//! and print alike and their figures can be read side by side. Each bench stays a single
//! `harness = false` target; this file needs only `std`, `libc` and `tokio`, which both
//! packages have.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Time and CPU

/// The instant send and arrival stamps count from (set on first use: `bench_main` does).
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `t` in nanoseconds since the epoch (0 before it).
pub fn nanos_at(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

/// CPU time (user + system) of the whole process.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The window of a case run.
#[derive(Clone, Copy)]
pub struct Window {
    /// Senders start.
    pub start: Instant,
    /// Figures count from here (bulk: after the warm-up).
    pub open: Instant,
    /// Senders stop.
    pub close: Instant,
}

impl Window {
    /// Senders start on the same instant, 50 ms from now so all are waiting; figures count
    /// after `warmup`, for `length`.
    pub fn new(warmup: Duration, length: Duration) -> Window {
        let start = Instant::now() + Duration::from_millis(50);
        Window {
            start,
            open: start + warmup,
            close: start + warmup + length,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Statistics

/// The `q` quantile (0..=1, nearest rank) of sorted latencies in nanoseconds, where
/// `u64::MAX` marks a message that never arrived: `None` when the quantile lands on one.
pub fn percentile(sorted: &[u64], q: f64) -> Option<Duration> {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted
        .get(i)
        .filter(|&&l| l != u64::MAX)
        .map(|&l| Duration::from_nanos(l))
}

/// (min, median, max) of `key` over runs.
pub fn stats<T>(runs: &[T], key: impl Fn(&T) -> f64) -> (f64, f64, f64) {
    let mut v: Vec<f64> = runs.iter().map(key).collect();
    v.sort_by(f64::total_cmp);
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

// ---------------------------------------------------------------------------------------
// Output

/// "median (min-max)" of [`stats`].
pub fn spread(s: (f64, f64, f64), fmt: impl Fn(f64) -> String) -> String {
    format!("{} ({}-{})", fmt(s.1), fmt(s.0), fmt(s.2))
}

/// Milliseconds, two decimals below 10 ms; "n/d" for a latency that was not delivered.
pub fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) if d < Duration::from_millis(10) => format!("{:.2}", d.as_secs_f64() * 1e3),
        Some(d) => format!("{:.0}", d.as_secs_f64() * 1e3),
        None => "n/d".into(),
    }
}

/// A latency as milliseconds for [`stats`]: not delivered is infinitely late.
pub fn latency_ms(d: Option<Duration>) -> f64 {
    d.map_or(f64::INFINITY, |d| d.as_secs_f64() * 1e3)
}

/// A [`latency_ms`] figure printed as [`ms`] does.
pub fn fmt_ms(v: f64) -> String {
    if v.is_finite() {
        ms(Some(Duration::from_secs_f64(v / 1e3)))
    } else {
        "n/d".into()
    }
}

// ---------------------------------------------------------------------------------------
// Harness

pub fn fail(what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("{what}: {e}");
    std::process::exit(1)
}

/// Whether the case named `case` runs: no filter, or one that is a substring of it.
pub fn selected(filters: &[String], case: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| case.contains(f.as_str()))
}

/// A bench's `main`: sets the epoch, runs `body` with the case filters (the words on the
/// command line) on a tokio runtime with 2 workers (the machine has 2 cores), then
/// prints the total time.
pub fn bench_main<F: Future<Output = ()>>(body: impl FnOnce(Vec<String>) -> F) {
    // `cargo bench` passes `--bench`; every other word filters cases.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    epoch();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail("runtime", e));
    let started = Instant::now();
    runtime.block_on(body(filters));
    println!("\ntotal {:.0} s", started.elapsed().as_secs_f64());
}
