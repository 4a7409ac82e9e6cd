//! Live counters every stream task bumps, and the progress bar that shows them on stderr
//! (publishers up / failed, elapsed / total, delivered Mbit/s over the last tick). The
//! bar is hidden when stderr is not a terminal or with `--quiet`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The bar redraws this often: a live rate over 0.5 s is steady enough to read.
const TICK: Duration = Duration::from_millis(500);

/// Counters shared by every stream task (relaxed atomics: they are only displayed).
#[derive(Debug, Default)]
pub struct Live {
    /// Publishers whose publish started.
    pub up: AtomicU64,
    /// Streams that ended with an error.
    pub failed: AtomicU64,
    /// Payload bytes the publishers sent.
    pub offered_bytes: AtomicU64,
    /// Payload bytes of stamped frames the players received.
    pub delivered_bytes: AtomicU64,
}

/// The bar's task; stop it with [`Progress::finish`].
pub struct Progress {
    bar: ProgressBar,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts the bar for a run of `publishers` over `total` (hidden unless `show` and
    /// stderr is a terminal).
    pub fn start(live: Arc<Live>, publishers: usize, total: Duration, show: bool) -> Self {
        let target = if show && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total.as_secs().max(1)), target);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} s  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        if bar.is_hidden() {
            return Self { bar, task: None };
        }
        let started = Instant::now();
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            let mut last = (Instant::now(), 0u64);
            loop {
                tick.tick().await;
                let now = Instant::now();
                let bytes = live.delivered_bytes.load(Ordering::Relaxed);
                let secs = now.duration_since(last.0).as_secs_f64().max(1e-3);
                let mbps = (bytes - last.1.min(bytes)) as f64 * 8.0 / secs / 1e6;
                last = (now, bytes);
                b.set_position(started.elapsed().as_secs());
                b.set_message(format!(
                    "publishers up {}/{publishers}, failed {}, delivered {mbps:.1} Mbit/s",
                    live.up.load(Ordering::Relaxed),
                    live.failed.load(Ordering::Relaxed),
                ));
            }
        });
        Self {
            bar,
            task: Some(task),
        }
    }

    /// Stops and clears the bar.
    pub fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
        }
        self.bar.finish_and_clear();
    }
}
