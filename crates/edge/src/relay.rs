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
use longhaul_tunnel::{EndSignal, MediaFrame, PublishSender, StreamEnd, TunnelError};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// After a failed send, how long to wait for the origin's reason (an `end` message sent
/// just before it stopped reading). Both travel on the same connection and arrive within
/// a round trip of each other: 500 ms is twice the longest path's (230 ms).
const END_REASON_GRACE: Duration = Duration::from_millis(500);

/// How often to look for the origin's reason during [`END_REASON_GRACE`].
const END_REASON_POLL: Duration = Duration::from_millis(10);

/// Why a relay's writer stopped.
#[derive(Debug)]
pub enum RelayEnd {
    /// The origin ended the stream (taken over, grant unknown, tunnel lost): tell the
    /// encoder in these words.
    OriginEnded(StreamEnd),
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
    pub fn start(sender: PublishSender, limits: RelayLimits, drain_limit: Duration) -> Relay {
        let shared = Arc::new(Shared {
            queue: Mutex::new(RelayQueue::new(limits)),
            data: Notify::new(),
            room: Notify::new(),
            finishing: AtomicBool::new(false),
        });
        let writer = tokio::spawn(write(shared.clone(), sender, drain_limit));
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
        // The origin may have ended the stream while nothing was being sent.
        if let Some(e) = origin_end_now(&mut end) {
            return RelayEnd::OriginEnded(e);
        }
        if drain_deadline.is_none() && shared.finishing.load(Ordering::Acquire) {
            drain_deadline = Some(tokio::time::Instant::now() + drain_limit);
        }
        let next = shared.queue().pop(Instant::now());
        let Some(message) = next else {
            if drain_deadline.is_some() {
                sender.finish().await;
                return RelayEnd::Finished;
            }
            shared.data.notified().await;
            continue;
        };
        shared.room.notify_one();
        let frame = MediaFrame {
            kind: message.type_id,
            timestamp: message.timestamp,
            payload: message.payload,
        };
        let sent = match drain_deadline {
            None => sender.send(&frame).await,
            Some(deadline) => match tokio::time::timeout_at(deadline, sender.send(&frame)).await {
                Ok(sent) => sent,
                Err(_) => return RelayEnd::DrainTimedOut,
            },
        };
        if let Err(error) = sent {
            return failed(&mut end, error).await;
        }
    }
}

/// A send failed: the origin's reason if it gives one within the grace, else the error.
async fn failed(end: &mut EndSignal, error: TunnelError) -> RelayEnd {
    let deadline = tokio::time::Instant::now() + END_REASON_GRACE;
    loop {
        if let Some(e) = origin_end_now(end) {
            return RelayEnd::OriginEnded(e);
        }
        if tokio::time::Instant::now() >= deadline {
            return RelayEnd::Failed(error);
        }
        tokio::time::sleep(END_REASON_POLL).await;
    }
}

/// The origin's end of the stream, if it has come.
///
/// `EndSignal::wait`'s future is not `Send` (its `match` keeps a watch guard's type alive
/// across an await), so a task that must be `Send` cannot await it. It is polled once
/// here, synchronously, and dropped before any await. Once `wait` is `Send`, the writer
/// can select on it instead of looking after each failed send.
fn origin_end_now(end: &mut EndSignal) -> Option<StreamEnd> {
    let mut wait = std::pin::pin!(end.wait());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match wait.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(e) => Some(e),
        std::task::Poll::Pending => None,
    }
}
