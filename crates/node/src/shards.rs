//! Shards: a node's connections spread over threads that each run tokio's current-thread
//! runtime, so a connection and everything it wakes stay on one core.
//!
//! Why not tokio's multi-thread runtime: each relayed message wakes three tasks (the
//! connection, its relay writer, the tunnel's connection driver), and work stealing puts
//! them on different workers. Measured on the edge (`loadtest/relay_cost.py`, 200
//! publishers, 2026-12-04): 15.1 CPU-ms per relayed MB on one current-thread runtime,
//! 22.2 on a two-worker multi-thread one, with 2.9 times the context switches. A shard
//! is the one-core case, once per core: nothing is stolen, and a wake-up never crosses
//! a thread. nginx runs one worker process per core for the same reason.
//!
//! Shard 0 is the runtime that starts the [`Shards`] (the node's own: its HTTP server,
//! timers and accept loops run there too); shards 1..n are threads of their own.
//! [`crate::accept::serve`] hands each accepted socket to the shard with the fewest open
//! connections (Envoy's "exact balance": the kernel's `SO_REUSEPORT` hash spreads a few
//! long-lived streams unevenly), moving the socket's registration to that shard's
//! reactor, and the connection's task runs there to its end. What a node keeps per shard
//! (an edge: its tunnels, one lane per shard) it indexes by [`crate::Accepted::shard`].

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

/// A node's shards: their runtimes, and how many connections each runs.
pub struct Shards {
    handles: Vec<Handle>,
    /// Open connections per shard, for [`Shards::pick`].
    open: Vec<AtomicUsize>,
    /// Where [`Shards::pick`] starts looking, turned on each pick so ties spread.
    next: AtomicUsize,
    stop: CancellationToken,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// A connection's place on its shard: counted in [`Shards::pick`] until dropped.
pub struct ShardSlot {
    shards: Arc<Shards>,
    shard: usize,
}

impl Drop for ShardSlot {
    fn drop(&mut self) {
        self.shards.open[self.shard].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shards {
    /// One shard: everything on the caller's runtime (what a node without `--threads`
    /// above 1 runs, and every test node).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn single() -> Arc<Shards> {
        Self::with_handles(
            vec![Handle::current()],
            Vec::new(),
            CancellationToken::new(),
        )
    }

    /// `n` shards: the caller's runtime, and `n - 1` threads, each with a current-thread
    /// runtime, named `longhaul-shard-{i}`.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(n: NonZeroUsize) -> std::io::Result<Arc<Shards>> {
        let stop = CancellationToken::new();
        let mut handles = vec![Handle::current()];
        let mut threads = Vec::new();
        for i in 1..n.get() {
            match Self::spawn_shard(i, &stop) {
                Ok((handle, thread)) => {
                    handles.push(handle);
                    threads.push(thread);
                }
                Err(e) => {
                    // The threads already started end with the token.
                    stop.cancel();
                    return Err(e);
                }
            }
        }
        Ok(Self::with_handles(handles, threads, stop))
    }

    /// Shard `i`'s thread, running its runtime until `stop`.
    fn spawn_shard(
        i: usize,
        stop: &CancellationToken,
    ) -> std::io::Result<(Handle, std::thread::JoinHandle<()>)> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("longhaul-shard-{i}"))
            .spawn(move || {
                runtime.block_on(stop.cancelled());
                // Dropping the runtime drops the tasks still on it: by then the node
                // has stopped them.
            })?;
        Ok((handle, thread))
    }

    fn with_handles(
        handles: Vec<Handle>,
        threads: Vec<std::thread::JoinHandle<()>>,
        stop: CancellationToken,
    ) -> Arc<Shards> {
        Arc::new(Shards {
            open: handles.iter().map(|_| AtomicUsize::new(0)).collect(),
            handles,
            next: AtomicUsize::new(0),
            stop,
            threads: Mutex::new(threads),
        })
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Never: there is always shard 0.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Shard `i`'s runtime, to start what the node keeps per shard on it (enter it, then
    /// spawn). `i` below [`Shards::len`].
    pub fn handle(&self, i: usize) -> &Handle {
        &self.handles[i]
    }

    /// The shard for a new connection: the one with the fewest open, ties taken in turn.
    pub fn pick(self: &Arc<Self>) -> ShardSlot {
        let n = self.handles.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let shard = (0..n)
            .map(|k| (start + k) % n)
            .min_by_key(|&i| self.open[i].load(Ordering::Relaxed))
            .unwrap_or(0);
        self.open[shard].fetch_add(1, Ordering::Relaxed);
        ShardSlot {
            shards: self.clone(),
            shard,
        }
    }

    /// Connections open on each shard now.
    pub fn open_connections(&self) -> Vec<usize> {
        self.open
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .collect()
    }

    /// Ends the shard threads (their runtimes drop what is left on them) and waits for
    /// them. Call once the node has stopped its connections.
    pub async fn stop(&self) {
        self.stop.cancel();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        if threads.is_empty() {
            return;
        }
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        let _ = joined.await;
    }
}

/// Dropping the last handle ends the shard threads (a node that failed to start, say);
/// [`Shards::stop`] also waits for them.
impl Drop for Shards {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ShardSlot {
    pub fn shard(&self) -> usize {
        self.shard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_go_to_the_least_loaded_shard_and_ties_take_turns() {
        let shards = Shards::start(NonZeroUsize::new(3).unwrap()).unwrap();
        let a = shards.pick();
        let b = shards.pick();
        let c = shards.pick();
        let mut got = [a.shard(), b.shard(), c.shard()];
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2], "one each while all are level");
        let freed = b.shard();
        drop(b);
        let d = shards.pick();
        assert_eq!(d.shard(), freed, "the one shard with a free place");
        assert_eq!(shards.open_connections().iter().sum::<usize>(), 3);
        assert!(shards.open_connections().iter().all(|&n| n == 1));
        drop((a, c, d));
        assert_eq!(shards.open_connections(), vec![0, 0, 0]);
        shards.stop().await;
    }

    #[tokio::test]
    async fn a_task_spawned_on_a_shard_runs_on_its_thread() {
        let shards = Shards::start(NonZeroUsize::new(2).unwrap()).unwrap();
        let name = shards
            .handle(1)
            .spawn(async { std::thread::current().name().map(str::to_string) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("longhaul-shard-1"));
        shards.stop().await;
    }
}
