//! The async side of one relayed stream: the task that feeds the tunnel stream from the
//! [`RelayQueue`], and the wake-ups between it and the connection driver.
//!
//! ```text
//!  connection driver ── push ──▶ RelayQueue ── pop ──▶ writer task ── send ──▶ tunnel stream
//!        ▲   (reads the encoder only      │                  │ (waits on QUIC flow and
//!        └── while should_read) ◀── room ─┘                  │  congestion control)
//!                                                            └─ the origin's end, if it ends it
//! ```
//!
//! The queue decides (sans IO, time passed in); this module only moves messages and
//! wakes whoever waits: the writer when a message arrives, the driver when the writer
//! took one (the queue may have dropped under its bound). The writer ends when the origin
//! ends the stream (its [`StreamEnd`] goes to the encoder; the origin stops reading, so
//! the next send fails, and the reason that came with it is picked up), when the tunnel
//! fails, or, after [`Relay::finish`], once it has sent what was queued and finished the
//! stream, given at most `drain_limit` for that.

use crate::relay_queue::{RelayLimits, RelayQueue, RelayStats};
use longhaul_rtmp::RtmpMessage;
use longhaul_tunnel::{EndSignal, MediaFrame, PublishEnd, PublishSender, StreamEnd, TunnelError};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// After a failed send, how long to wait for the origin's reason (an `end` message sent
/// just before it stopped reading). Both travel on the same connection and arrive within
/// a round trip of each other: 500 ms is twice the longest path's (230 ms).
const END_REASON_GRACE: Duration = Duration::from_millis(500);

/// Most messages the writer takes from the queue for one tunnel write. Taking what is
/// queued in one go (instead of one message per write) puts small messages in one QUIC
/// buffer together ([`longhaul_tunnel::wire::encode_media_batch`]); 64 messages is
/// about half a second of a 60 fps stream with AAC, and what a batch holds is out of the
/// queue's accounting until written, so it stays small.
const BATCH_MESSAGES: usize = 64;

/// Most payload bytes the writer takes for one write (it always takes at least one
/// message): 64 KiB, one QUIC stream write of a few packets' worth, so that a batch of
/// large frames does not sit outside the queue's drop rule for long.
const BATCH_BYTES: usize = 64 * 1024;

/// Why a relay's writer stopped.
#[derive(Debug)]
pub enum RelayEnd {
    /// The origin ended the stream (taken over, grant unknown, tunnel lost): tell the
    /// encoder in these words.
    OriginEnded(StreamEnd),
    /// The tunnel failed under the stream (connection lost, stream reset): why.
    TunnelLost(String),
    /// A send failed and the origin said nothing.
    Failed(TunnelError),
    /// Everything queued went out and the stream was finished.
    Finished,
    /// [`Relay::finish`] was called but the queue did not drain within `drain_limit`.
    DrainTimedOut,
}

struct Shared {
    queue: Mutex<RelayQueue>,
    /// Wakes the writer: a message was queued, or finishing began.
    data: Notify,
    /// Wakes the driver: the writer took a message.
    room: Notify,
    finishing: AtomicBool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, RelayQueue> {
        // The queue's methods do not panic; a poisoned lock would hold a consistent queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One stream being relayed: the queue, shared with its writer task.
pub struct Relay {
    shared: Arc<Shared>,
    writer: JoinHandle<RelayEnd>,
}

impl Relay {
    /// Starts the writer task on `sender`.
    /// The writer runs on `writers`, so a node shutting down can wait for every stream's
    /// tail to reach the origin before it closes the tunnels.
    pub fn start(
        sender: PublishSender,
        limits: RelayLimits,
        drain_limit: Duration,
        writers: &TaskTracker,
    ) -> Relay {
        let shared = Arc::new(Shared {
            queue: Mutex::new(RelayQueue::new(limits)),
            data: Notify::new(),
            room: Notify::new(),
            finishing: AtomicBool::new(false),
        });
        let writer = writers.spawn(write(shared.clone(), sender, drain_limit).in_current_span());
        Relay { shared, writer }
    }

    /// Queues a message read from the encoder.
    pub fn push(&self, message: RtmpMessage, now: Instant) {
        self.shared.queue().push(message, now);
        self.shared.data.notify_one();
    }

    /// See [`RelayQueue::should_read`].
    pub fn should_read(&self, now: Instant) -> bool {
        self.shared.queue().should_read(now)
    }

    /// When the driver must look again though nothing happened: the queue's drop
    /// deadline, or the moment the writer will have been idle for `stall_limit` while
    /// messages wait.
    pub fn poll_timeout(&self, stall_limit: Duration) -> Option<Instant> {
        let queue = self.shared.queue();
        let stall = queue.writer_idle_since().map(|t| t + stall_limit);
        match (queue.poll_timeout(), stall) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when messages have waited `stall_limit` with the writer taking none: the
    /// tunnel stream is not moving.
    pub fn is_stalled(&self, now: Instant, stall_limit: Duration) -> bool {
        self.shared
            .queue()
            .writer_idle_since()
            .is_some_and(|t| now.saturating_duration_since(t) >= stall_limit)
    }

    /// See [`RelayQueue::take_stats`].
    pub fn take_stats(&self, now: Instant) -> RelayStats {
        self.shared.queue().take_stats(now)
    }

    /// Resolves once the writer took a message since the last call (or right away if it
    /// did meanwhile). Holds no borrow of the relay.
    pub fn room(&self) -> impl Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        async move { shared.room.notified().await }
    }

    /// Resolves when the writer stops. Cancel-safe.
    pub async fn ended(&mut self) -> RelayEnd {
        match (&mut self.writer).await {
            Ok(end) => end,
            // The writer panicked (a bug) or was aborted: nothing more will go out.
            Err(e) => RelayEnd::Failed(TunnelError::Protocol {
                peer: "edge".into(),
                what: format!("the relay writer task ended: {e}"),
            }),
        }
    }

    /// Lets the writer send what is queued and finish the stream, in the background.
    pub fn finish(self) {
        self.shared.finishing.store(true, Ordering::Release);
        self.shared.data.notify_one();
    }

    /// Stops the writer at once; the stream is finished where it stands.
    pub fn abort(self) {
        self.writer.abort();
    }
}

async fn write(shared: Arc<Shared>, mut sender: PublishSender, drain_limit: Duration) -> RelayEnd {
    let mut end = sender.end_signal();
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    loop {
        if drain_deadline.is_none() && shared.finishing.load(Ordering::Acquire) {
            drain_deadline = Some(tokio::time::Instant::now() + drain_limit);
        }
        let batch = shared
            .queue()
            .pop_batch(Instant::now(), BATCH_MESSAGES, BATCH_BYTES);
        if batch.is_empty() {
            if drain_deadline.is_some() {
                sender.finish().await;
                return RelayEnd::Finished;
            }
            // Nothing to send: wait for a message, or for the origin to end the stream.
            tokio::select! {
                _ = shared.data.notified() => continue,
                e = end.wait() => return relay_end(e),
            }
        }
        shared.room.notify_one();
        let frames: Vec<MediaFrame> = batch
            .into_iter()
            .map(|message| MediaFrame {
                kind: message.type_id,
                timestamp: message.timestamp,
                payload: message.payload,
            })
            .collect();
        // A send may wait on QUIC flow control for as long as the origin does not read;
        // the origin ending the stream meanwhile wins, and finishing (which starts the
        // drain deadline) may begin while it waits.
        let send = sender.send(&frames);
        tokio::pin!(send);
        let sent = loop {
            let deadline = drain_deadline.unwrap_or_else(far_future);
            tokio::select! {
                biased;
                e = end.wait() => return relay_end(e),
                sent = tokio::time::timeout_at(deadline, &mut send) => break sent,
                _ = shared.data.notified(), if drain_deadline.is_none() => {
                    if shared.finishing.load(Ordering::Acquire) {
                        drain_deadline = Some(tokio::time::Instant::now() + drain_limit);
                    }
                }
            }
        };
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return failed(&mut end, error).await,
            Err(_) => return RelayEnd::DrainTimedOut,
        }
    }
}

fn relay_end(end: PublishEnd) -> RelayEnd {
    match end {
        PublishEnd::ByOrigin(e) => RelayEnd::OriginEnded(e),
        PublishEnd::TunnelLost(why) => RelayEnd::TunnelLost(why),
    }
}

/// A deadline no send reaches (a year away).
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

/// A send failed: the origin's reason if it gives one within the grace, else the error.
async fn failed(end: &mut EndSignal, error: TunnelError) -> RelayEnd {
    match tokio::time::timeout(END_REASON_GRACE, end.wait()).await {
        Ok(e) => relay_end(e),
        Err(_) => RelayEnd::Failed(error),
    }
}
