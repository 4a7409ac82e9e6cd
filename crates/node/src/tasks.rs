//! The tasks of a running node and the token that stops them.
//!
//! A node's handle (`Origin`, `Edge`) holds one [`NodeTasks`]: every listener loop and
//! background task is spawned into it, cancelling its token stops them all, and
//! [`NodeTasks::wait`] returns when the token is cancelled or any task ends (a listener
//! loop ending on its own is a node that no longer serves).

use std::future::Future;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

#[derive(Default)]
pub struct NodeTasks {
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl NodeTasks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` until the node stops; the task watches [`NodeTasks::shutdown_token`].
    /// It runs in the caller's span (the node's, see [`crate::node_span`]), so its log
    /// lines, and those of the tasks it spawns the same way, name the node.
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task.in_current_span());
    }

    /// A token that stops the node when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Cancels the token and waits for every task to end.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Returns when the token is cancelled or a task ends.
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            _ = self.tasks.join_next() => {}
        }
    }
}

/// Sleeps until `at`; forever without one. For a `select!` branch whose deadline may
/// not exist (an acknowledgement due, a stall deadline).
pub async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn stop_cancels_and_joins_every_task() {
        let mut tasks = NodeTasks::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        for _ in 0..2 {
            let token = tasks.shutdown_token();
            let tx = tx.clone();
            tasks.spawn(async move {
                token.cancelled().await;
                let _ = tx.send(()).await;
            });
        }
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), tasks.stop())
            .await
            .expect("stops");
        assert!(rx.recv().await.is_some() && rx.recv().await.is_some());
    }

    #[tokio::test]
    async fn wait_returns_when_a_task_ends() {
        let mut tasks = NodeTasks::new();
        tasks.spawn(async {});
        tokio::time::timeout(Duration::from_secs(5), tasks.wait())
            .await
            .expect("returns");
    }
}
