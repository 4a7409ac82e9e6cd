//! Draining a node: the wait that edge and origin share once they take no new
//! publishes. Each node decides how it drains (an origin tells its edges, an edge asks
//! its encoders to reconnect); both then wait here for their publishes to leave,
//! bounded by `node.drain_grace_secs`.

use prometheus::IntGauge;
use std::time::Duration;

/// How often [`until_empty`] looks: 100 ms, small against a stream's move (under a
/// second) and the grace (25 s).
const POLL: Duration = Duration::from_millis(100);

/// Waits until `publishers` (the node's active-publishers gauge) reads 0, or `grace`
/// has passed; returns how many were left. Logs either end.
pub async fn until_empty(publishers: &IntGauge, grace: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let left = publishers.get().max(0) as u64;
        if left == 0 {
            tracing::info!("drained: no publish left");
            return 0;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                left,
                ?grace,
                "drain grace over with publishes left: they are ended"
            );
            return left;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_the_last_publish_or_the_grace() {
        let gauge = IntGauge::new("p", "p").unwrap();
        assert_eq!(until_empty(&gauge, Duration::from_secs(5)).await, 0);
        gauge.set(2);
        assert_eq!(until_empty(&gauge, Duration::from_secs(5)).await, 2);
        let g = gauge.clone();
        let leaving = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            g.set(0);
        });
        assert_eq!(until_empty(&gauge, Duration::from_secs(5)).await, 0);
        leaving.await.unwrap();
    }
}
