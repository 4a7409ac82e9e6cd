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
//!
//! **Failover (tunnel wire format v2).** On a tunnel that speaks v2 the writer numbers
//! every frame and keeps what the origin has not acknowledged in a
//! [`longhaul_tunnel::retain::Retain`]. It does not end on a lost tunnel, an origin's end
//! marked `retry`, acknowledgements that stop (3 s), or a move the router
//! wants ([`Steer`], set by [`crate::routing`]): it authorises the publish again at the
//! origin the router picks now and resumes there (configuration, then the frames that
//! origin lacks), while the encoder's connection is not touched. A move the router plans
//! (a drain, a failback) is make-before-break: the old stream (the *shadow*) goes on
//! getting what the new one gets until the next keyframe, then is finished, so players
//! of the old origin lose nothing before the switch. Only a refusal (the token revoked
//! meanwhile) or the driver's stall limit, with no origin taking the stream, ends it.

use crate::relay_queue::{RelayLimits, RelayQueue, RelayStats};
use crate::state::EdgeState;
use crate::upstream::Asked;
use longhaul_router::{Failure, StreamId, When};
use longhaul_rtmp::RtmpMessage;
use longhaul_tunnel::class::FrameClass;
use longhaul_tunnel::retain::{ResumePoint, Retain, RetainLimits};
use longhaul_tunnel::{
    AuthoriseRequest, EndSignal, MediaFrame, PublishEnd, PublishHeader, PublishSender, StreamEnd,
    TunnelError, WireVersion,
};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};
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
    /// The origin the stream goes to now (it changes when the stream resumes elsewhere).
    origin: Mutex<String>,
    /// The router's wish to move the stream (wire version 2).
    steer: Steer,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, RelayQueue> {
        // The queue's methods do not panic; a poisoned lock would hold a consistent queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn origin(&self) -> String {
        self.origin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_origin(&self, origin: &str) {
        *self.origin.lock().unwrap_or_else(|e| e.into_inner()) = origin.to_string();
    }
}

/// The router's wish for one relayed stream, set by [`crate::routing`] and carried out by
/// the stream's writer: resume it at another origin now (its origin is in trouble or
/// draining), or at its next keyframe (a failback).
#[derive(Default)]
pub struct Steer {
    wanted: Mutex<Option<Wanted>>,
    changed: Notify,
}

/// A move the router wants.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub to: String,
    /// The router's reason, a metric label.
    pub reason: &'static str,
    pub when: When,
    /// When the router first wanted it.
    pub since: Instant,
}

impl Steer {
    /// The router wants the stream moved (replacing an earlier wish).
    pub fn want(&self, wanted: Wanted) {
        *self.wanted.lock().unwrap_or_else(|e| e.into_inner()) = Some(wanted);
        self.changed.notify_one();
    }

    fn current(&self) -> Option<Wanted> {
        self.wanted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn clear(&self) {
        *self.wanted.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// What a relay needs to resume its stream on a new tunnel stream (wire version 2).
pub struct Resume {
    pub state: Arc<EdgeState>,
    /// The shard of the stream's connection: it resumes on that shard's lane.
    pub shard: usize,
    /// The publish as first authorised: authorised again wherever the stream resumes.
    pub request: AuthoriseRequest,
    /// The stream's name as the origin files it, for the logs.
    pub stream_name: String,
    /// The router's id of the stream (the connection's).
    pub stream: StreamId,
    pub publication: u64,
    pub limits: RetainLimits,
}

/// One stream being relayed: the queue, shared with its writer task.
pub struct Relay {
    shared: Arc<Shared>,
    writer: JoinHandle<RelayEnd>,
}

impl Relay {
    /// Starts the writer task on `sender`, to `origin`. With `resume` (a tunnel that
    /// speaks wire version 2) the writer numbers and retains what it sends and, when the
    /// stream fails or the router moves it, resumes it on a new stream without the
    /// encoder noticing.
    /// The writer runs on `writers`, so a node shutting down can wait for every stream's
    /// tail to reach the origin before it closes the tunnels.
    pub fn start(
        sender: PublishSender,
        origin: &str,
        resume: Option<Resume>,
        limits: RelayLimits,
        drain_limit: Duration,
        writers: &TaskTracker,
    ) -> Relay {
        let shared = Arc::new(Shared {
            queue: Mutex::new(RelayQueue::new(limits)),
            data: Notify::new(),
            room: Notify::new(),
            finishing: AtomicBool::new(false),
            origin: Mutex::new(origin.to_string()),
            steer: Steer::default(),
        });
        let acks = sender.acks();
        let writer = Writer {
            shared: shared.clone(),
            end: sender.end_signal(),
            sender: Some(sender),
            acks,
            acked: None,
            drain_limit,
            drain_deadline: None,
            shadow: None,
            resume: resume.map(|r| Resuming {
                retain: Retain::new(r.limits),
                ack_limit: ack_limit(&r.state),
                setup: r,
                acked_here: None,
                eviction_logged: false,
            }),
        };
        let writer = writers.spawn(writer.run().in_current_span());
        Relay { shared, writer }
    }

    /// The router's handle on the stream.
    pub fn steer(&self) -> SteerHandle {
        SteerHandle(self.shared.clone())
    }

    /// The origin the stream goes to now.
    pub fn origin(&self) -> String {
        self.shared.origin()
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
    /// tunnel stream is not moving (nor could the stream resume on another).
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

/// The router's handle on one relayed stream (see [`Steer`]).
#[derive(Clone)]
pub struct SteerHandle(Arc<Shared>);

impl SteerHandle {
    pub fn want(&self, wanted: Wanted) {
        self.0.steer.want(wanted);
    }

    /// The origin the stream goes to now.
    pub fn origin(&self) -> String {
        self.0.origin()
    }

    /// The stream's queue now, and its counts since it started (an ongoing pause up
    /// to `now`): what the per-stream metrics report.
    pub fn report(&self, now: Instant) -> RelayReport {
        let queue = self.0.queue();
        RelayReport {
            queued_bytes: queue.queued_bytes(),
            queued_messages: queue.len(),
            paused: queue.is_paused(),
            totals: queue.totals(now),
        }
    }
}

/// One relayed stream's queue as [`SteerHandle::report`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayReport {
    pub queued_bytes: usize,
    pub queued_messages: usize,
    /// Reading the encoder is paused now (the queue is full).
    pub paused: bool,
    /// Drops and pauses since the stream started.
    pub totals: RelayStats,
}

/// How long frames may wait for an acknowledgement, with the tunnel said to be up,
/// before the writer gives up on the stream and resumes it: 3 s, or the router's silence
/// limit plus a second if that is longer. The router notices a silent origin (no
/// datagram for `router.silence_limit_ms` plus a round trip) and moves its streams
/// first; this catches what it cannot see, an origin whose connection lives but whose
/// stream does not move (a stuck handler, a stream-level stall), without taking a
/// slow ack for a dead one (acks come every 50 ms on a live stream).
fn ack_limit(state: &EdgeState) -> Duration {
    let silence = state.config.router.thresholds().silence_limit;
    (silence + Duration::from_secs(1)).max(ACK_STALL_LIMIT)
}

/// See [`ack_limit`].
const ACK_STALL_LIMIT: Duration = Duration::from_secs(3);

/// Pause between attempts to resume a stream when no origin answers: 200 ms, about one
/// sampling round of the router (250 ms), which by then may know the failed origin is
/// down, and short against the stall limit (15 s) that finally ends the publish.
const RESUME_RETRY: Duration = Duration::from_millis(200);

/// The longest one attempt to authorise a resumed stream may take: 2 s. An origin
/// answers from memory in a round trip; one that takes longer is not where a stream
/// that just failed should go, and the next attempt may pick another.
const RESUME_ATTEMPT_LIMIT: Duration = Duration::from_secs(2);

/// Frames written to the new stream per write when a resume re-sends what was retained.
const RESUME_BATCH: usize = 64;

/// The stream a planned move left (see [`Writer::feed_shadow`]).
struct Shadow {
    sender: PublishSender,
    since: Instant,
    origin: String,
}

/// The longest a shadow is fed while waiting for a keyframe: 4 s, two of the 2 s GOPs
/// ingest operators ask for. An encoder with a longer GOP (or audio only) has its old
/// stream finished then, mid-GOP.
const SHADOW_LIMIT: Duration = Duration::from_secs(4);

/// The longest one write to a shadow may wait: 500 ms. The old origin is draining or
/// being left for a better one; it must not hold back the stream that now counts.
const SHADOW_WRITE_LIMIT: Duration = Duration::from_millis(500);

/// The writer's version 2 state.
struct Resuming {
    setup: Resume,
    retain: Retain,
    /// The highest seq the current origin acknowledged since the stream went there.
    acked_here: Option<u64>,
    ack_limit: Duration,
    /// Frames given up for the bound were logged once; later ones are only counted.
    eviction_logged: bool,
}

/// Why a stream is to be resumed.
struct Cause {
    /// A metric label: `tunnel_lost`, `origin_ended`, `ack_stalled`, or the router's.
    reason: &'static str,
    /// For the log.
    detail: String,
    /// When the trouble began, as well as the edge can tell.
    since: Instant,
    /// A router's move (the old stream still works: it is finished, not reset).
    planned: bool,
}

/// How the pump stopped.
enum Stop {
    Done(RelayEnd),
    Resume(Cause),
}

struct Writer {
    shared: Arc<Shared>,
    /// `None` only while a resume opens the next stream.
    sender: Option<PublishSender>,
    end: EndSignal,
    acks: watch::Receiver<Option<u64>>,
    /// The last acknowledgement applied.
    acked: Option<u64>,
    drain_limit: Duration,
    drain_deadline: Option<tokio::time::Instant>,
    /// After a planned move, the stream at the origin the publish left, still fed until
    /// the next keyframe so its players lose nothing before the switch (see
    /// [`Writer::send`]).
    shadow: Option<Shadow>,
    resume: Option<Resuming>,
}

impl Writer {
    async fn run(mut self) -> RelayEnd {
        loop {
            match self.pump().await {
                Stop::Done(end) => return end,
                Stop::Resume(cause) => {
                    if let Err(end) = self.resume_stream(cause).await {
                        return end;
                    }
                }
            }
        }
    }

    fn finishing(&self) -> bool {
        self.shared.finishing.load(Ordering::Acquire)
    }

    /// Applies the origin's newest acknowledgement; a wrong one breaks the stream.
    fn apply_acks(&mut self, now: Instant) -> Option<Cause> {
        let r = self.resume.as_mut()?;
        let ack = *self.acks.borrow_and_update();
        let seq = ack.filter(|&s| Some(s) > self.acked)?;
        self.acked = Some(seq);
        match r.retain.ack(seq, now) {
            Ok(()) => {
                r.acked_here = Some(seq);
                None
            }
            Err(e) => Some(Cause {
                reason: "bad_ack",
                detail: e.to_string(),
                since: now,
                planned: false,
            }),
        }
    }

    /// What stops the stream before the next batch: the router wanting it moved now, or
    /// acknowledgements that stopped coming.
    fn check(&mut self, now: Instant) -> Option<Cause> {
        if let Some(cause) = self.apply_acks(now) {
            return Some(cause);
        }
        let r = self.resume.as_ref()?;
        if self.drain_deadline.is_some() {
            return None;
        }
        if let Some(w) = self.shared.steer.current() {
            // A move now (trouble, drain) or a failback: both open the stream at the
            // other origin at once; the switch for its players happens at the next
            // keyframe (the shadow).
            if w.to != self.shared.origin() {
                // The trouble began when the origin stopped acknowledging, if it did
                // (a dead or frozen origin); else when the router decided (a drain).
                let since = r
                    .retain
                    .ack_awaited_since()
                    .map_or(w.since, |a| a.min(w.since));
                return Some(Cause {
                    reason: w.reason,
                    detail: format!("the router moves it to {}", w.to),
                    since,
                    planned: true,
                });
            }
        }
        let since = r.retain.ack_awaited_since()?;
        (now.saturating_duration_since(since) >= r.ack_limit).then(|| Cause {
            reason: "ack_stalled",
            detail: format!("no acknowledgement for {:?}", r.ack_limit),
            since,
            planned: false,
        })
    }

    /// When [`Writer::check`] may find acknowledgements stalled, if nothing else happens.
    fn ack_deadline(&self) -> Option<tokio::time::Instant> {
        let r = self.resume.as_ref()?;
        let since = r.retain.ack_awaited_since()?;
        Some(tokio::time::Instant::from_std(since + r.ack_limit))
    }

    /// Sends from the queue on the current stream until it ends or must be resumed.
    async fn pump(&mut self) -> Stop {
        let v2 = self.resume.is_some();
        loop {
            let now = Instant::now();
            if self.drain_deadline.is_none() && self.finishing() {
                self.drain_deadline = Some(tokio::time::Instant::now() + self.drain_limit);
            }
            if let Some(cause) = self.check(now) {
                return Stop::Resume(cause);
            }
            let batch = self
                .shared
                .queue()
                .pop_batch(now, BATCH_MESSAGES, BATCH_BYTES);
            if !batch.is_empty() {
                self.shared.room.notify_one();
            }
            let frames: Vec<MediaFrame> = batch
                .into_iter()
                .map(|message| MediaFrame {
                    kind: message.type_id,
                    timestamp: message.timestamp,
                    payload: message.payload,
                })
                .collect();
            if frames.is_empty() {
                if self.drain_deadline.is_some() {
                    if let Some(shadow) = self.shadow.take() {
                        tokio::spawn(shadow.sender.finish().in_current_span());
                    }
                    if let Some(sender) = self.sender.take() {
                        sender.finish().await;
                    }
                    return Stop::Done(RelayEnd::Finished);
                }
                // Nothing to send: wait for a message, for the origin to end the stream,
                // or (version 2) for the router or the ack deadline. Acknowledgements do
                // not wake the writer: [`Writer::check`] applies the newest at the next
                // message or at the deadline, which is all they decide (what is kept,
                // whether they stalled). Waking for each (20 a second per stream) cost
                // a task wake-up per ack on a loaded edge.
                let ack_at = self.ack_deadline();
                tokio::select! {
                    _ = self.shared.data.notified() => continue,
                    e = self.end.wait() => return self.ended(e),
                    _ = self.shared.steer.changed.notified(), if v2 => continue,
                    _ = longhaul_node::tasks::sleep_until(ack_at) => continue,
                }
            }
            if let Err(stop) = self.send(frames).await {
                return stop;
            }
        }
    }

    /// Sends `frames` on the current stream (numbered and retained on version 2).
    async fn send(&mut self, frames: Vec<MediaFrame>) -> Result<(), Stop> {
        let Some(sender) = self.sender.as_mut() else {
            return Err(Stop::Resume(Cause {
                reason: "tunnel_lost",
                detail: "no stream".into(),
                since: Instant::now(),
                planned: false,
            }));
        };
        let (numbered, plain): (Vec<(u64, MediaFrame)>, Vec<MediaFrame>) = match self
            .resume
            .as_mut()
        {
            Some(r) => {
                let now = Instant::now();
                let numbered = frames
                    .into_iter()
                    .map(|f| (r.retain.push(f.clone(), now), f))
                    .collect();
                let given_up = r.retain.take_stats().evicted_unacked;
                if given_up > 0 {
                    r.setup.state.metrics.retain_evicted.inc_by(given_up);
                    if !r.eviction_logged {
                        r.eviction_logged = true;
                        tracing::warn!(stream = %r.setup.stream_name, frames = given_up,
                                "unacknowledged frames over the retention bound (relay.retain_bytes, relay.retain_messages) given up: a failover now would lose them; later ones are only counted (retain_evicted_frames_total)");
                    }
                }
                (numbered, Vec::new())
            }
            None => (Vec::new(), frames),
        };
        let v2 = self.resume.is_some();
        // A send may wait on QUIC flow control for as long as the origin does not read;
        // the origin ending the stream meanwhile wins, and finishing (which starts the
        // drain deadline) may begin while it waits.
        let sent = {
            let send = async {
                if v2 {
                    sender.send_sequenced(&numbered).await
                } else {
                    sender.send(&plain).await
                }
            };
            tokio::pin!(send);
            loop {
                let deadline = self.drain_deadline.unwrap_or_else(far_future);
                tokio::select! {
                    biased;
                    e = self.end.wait() => break Err(e),
                    sent = tokio::time::timeout_at(deadline, &mut send) => break Ok(sent),
                    _ = self.shared.data.notified(), if self.drain_deadline.is_none() => {
                        if self.shared.finishing.load(Ordering::Acquire) {
                            self.drain_deadline = Some(tokio::time::Instant::now() + self.drain_limit);
                        }
                    }
                }
            }
        };
        let sent = match sent {
            Ok(sent) => sent,
            Err(end) => return Err(self.ended(end)),
        };
        match sent {
            Ok(Ok(())) => {
                self.feed_shadow(numbered).await;
                Ok(())
            }
            Ok(Err(error)) => Err(self.send_failed(error).await),
            Err(_) => Err(Stop::Done(RelayEnd::DrainTimedOut)),
        }
    }

    /// After a planned move, the stream the publish left gets what the new one got, up
    /// to the first keyframe: then it is finished. Its players (who will find the stream
    /// at the new origin, whose GOP cache then starts at that keyframe) lose nothing
    /// before the switch. A shadow that cannot keep up, fails, or has waited
    /// [`SHADOW_LIMIT`] for a keyframe is finished where it stands.
    async fn feed_shadow(&mut self, numbered: Vec<(u64, MediaFrame)>) {
        let Some(shadow) = self.shadow.as_mut() else {
            return;
        };
        let cut = numbered
            .iter()
            .position(|(_, f)| FrameClass::of(f.kind, &f.payload) == FrameClass::Keyframe);
        let head = &numbered[..cut.unwrap_or(numbered.len())];
        let fed = head.is_empty()
            || matches!(
                tokio::time::timeout(SHADOW_WRITE_LIMIT, shadow.sender.send_sequenced(head)).await,
                Ok(Ok(()))
            );
        if cut.is_some() || !fed || shadow.since.elapsed() >= SHADOW_LIMIT {
            if let Some(shadow) = self.shadow.take() {
                tracing::debug!(origin = %shadow.origin, at_keyframe = cut.is_some(), fed,
                    "the stream at the origin the publish left is finished");
                tokio::spawn(shadow.sender.finish().in_current_span());
            }
        }
    }

    /// The origin's end of the stream: final on version 1, and on version 2 unless the
    /// origin says to retry or the tunnel was lost.
    fn ended(&self, end: PublishEnd) -> Stop {
        let resumable = self.resume.is_some() && self.drain_deadline.is_none();
        match end {
            PublishEnd::ByOrigin(e) if resumable && e.retry => Stop::Resume(Cause {
                reason: "origin_ended",
                detail: e.description,
                since: Instant::now(),
                planned: false,
            }),
            PublishEnd::TunnelLost(why) if resumable => Stop::Resume(Cause {
                reason: "tunnel_lost",
                detail: why,
                since: self.since_unacked(),
                planned: false,
            }),
            other => Stop::Done(relay_end(other)),
        }
    }

    /// A send failed: the origin's reason if it gives one within the grace (it ended the
    /// stream), else the error. On version 2 a lost connection resumes at once.
    async fn send_failed(&mut self, error: TunnelError) -> Stop {
        let connection_lost = matches!(
            &error,
            TunnelError::Write {
                source: quinn::WriteError::ConnectionLost(_),
                ..
            }
        );
        if self.resume.is_some() && self.drain_deadline.is_none() && connection_lost {
            return Stop::Resume(Cause {
                reason: "tunnel_lost",
                detail: error.to_string(),
                since: self.since_unacked(),
                planned: false,
            });
        }
        match tokio::time::timeout(END_REASON_GRACE, self.end.wait()).await {
            Ok(e) => self.ended(e),
            Err(_) if self.resume.is_some() && self.drain_deadline.is_none() => {
                Stop::Resume(Cause {
                    reason: "tunnel_lost",
                    detail: error.to_string(),
                    since: self.since_unacked(),
                    planned: false,
                })
            }
            Err(_) => Stop::Done(RelayEnd::Failed(error)),
        }
    }

    /// Since when the oldest unacknowledged frame has waited (now if none).
    fn since_unacked(&self) -> Instant {
        self.resume
            .as_ref()
            .and_then(|r| r.retain.ack_awaited_since())
            .unwrap_or_else(Instant::now)
    }

    /// Opens a new stream for the publish at the origin the router picks and re-sends
    /// what that origin lacks. Tries until it works, the origin refuses the publish (its
    /// token was revoked meanwhile: the encoder is told), or the driver gives up on the
    /// stall limit and aborts the writer.
    async fn resume_stream(&mut self, cause: Cause) -> Result<(), RelayEnd> {
        let Some(r) = self.resume.as_mut() else {
            return Err(RelayEnd::TunnelLost(cause.detail));
        };
        let state = r.setup.state.clone();
        let upstreams = state.upstreams.lane(r.setup.shard);
        let m = &state.metrics;
        let decided = Instant::now();
        let from = self.shared.origin();
        m.failover_detect
            .observe(decided.saturating_duration_since(cause.since).as_secs_f64());
        let (entry, rendition) = longhaul_endpoint::stream_parts(&r.setup.stream_name);
        let node = &state.config.node;
        tracing::warn!(%entry, %rendition, leg = %r.setup.request.leg,
            stream = %r.setup.stream_name, client = %r.setup.request.client_addr,
            region = %node.region, edge = %node.id, origin = %from,
            reason = cause.reason, detail = %cause.detail,
            "relayed stream failing over: resuming it on a new tunnel stream");
        // Make before break: a stream the router moves still works, and is finished
        // once the new one is open and fed. A failed one is reset now.
        let mut old = self.sender.take().filter(|_| cause.planned);
        if !cause.planned {
            upstreams.failed(&from, Failure::TunnelLost);
        }
        self.shared.steer.clear();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let asked = tokio::time::timeout(
                RESUME_ATTEMPT_LIMIT,
                upstreams.authorise(r.setup.request.clone()),
            )
            .await;
            let granted = match asked {
                Ok(Asked::Granted(g)) => g,
                Ok(Asked::Refused { reason, origin, .. })
                    if reason == longhaul_tunnel::wire::DRAINING_REASON =>
                {
                    // The router had not heard yet: not the publish's fault.
                    tracing::debug!(%origin, attempts, "resume: the origin is draining; trying another");
                    upstreams.failed(&origin, Failure::Unavailable);
                    tokio::time::sleep(RESUME_RETRY).await;
                    continue;
                }
                Ok(Asked::Refused {
                    code,
                    description,
                    origin,
                    ..
                }) => {
                    tracing::warn!(%origin, %code, "the resumed publish was refused: {description}");
                    return Err(RelayEnd::OriginEnded(StreamEnd::new(code, description)));
                }
                Ok(Asked::Unavailable { origin, error }) => {
                    tracing::debug!(%origin, %error, attempts, "resume: no answer; trying again");
                    tokio::time::sleep(RESUME_RETRY).await;
                    continue;
                }
                Err(_) => {
                    tracing::debug!(attempts, "resume: authorisation timed out; trying again");
                    continue;
                }
            };
            let point = match r.acked_here {
                Some(seq) if granted.origin == from => ResumePoint::After(seq),
                _ => ResumePoint::Keyframe,
            };
            let plan = r.retain.resume_plan(point);
            let header = PublishHeader {
                grant: granted.grant,
                stream_name: granted.stream_name.clone(),
                client_addr: r.setup.request.client_addr.clone(),
                publication: Some(r.setup.publication),
                resume_from: Some(plan.resume_from),
            };
            m.failover_frames
                .with_label_values(&["lost"])
                .inc_by(plan.lost);
            let mut sender = match upstreams.open(&granted, header).await {
                Ok(s) => s,
                Err(error) => {
                    tracing::debug!(origin = %granted.origin, %error, attempts, "resume: opening the stream failed; trying again");
                    tokio::time::sleep(RESUME_RETRY).await;
                    continue;
                }
            };
            if sender.version() != WireVersion::V2 {
                // The origin went back to version 1 (a downgrade mid-stream): the publish
                // cannot continue there without the encoder noticing.
                return Err(RelayEnd::TunnelLost(format!(
                    "origin {} no longer speaks tunnel wire version 2",
                    granted.origin
                )));
            }
            let mut sent = sender.send(&plan.config).await;
            for chunk in plan.frames.chunks(RESUME_BATCH) {
                if sent.is_err() {
                    break;
                }
                sent = sender.send_sequenced(chunk).await;
            }
            if let Err(error) = sent {
                tracing::debug!(origin = %granted.origin, %error, attempts, "resume: re-sending failed; trying again");
                continue;
            }
            let to = granted.origin.clone();
            if to != from {
                r.acked_here = None;
            }
            r.retain.restart_ack_clock(Instant::now());
            m.failovers
                .with_label_values(&[cause.reason, &from, &to])
                .inc();
            m.failover_resume.observe(decided.elapsed().as_secs_f64());
            m.failover_frames
                .with_label_values(&["resent"])
                .inc_by(plan.frames.len() as u64);
            let (entry, rendition) = longhaul_endpoint::stream_parts(&granted.stream_name);
            let node = &state.config.node;
            tracing::info!(%entry, %rendition, leg = %r.setup.request.leg,
                stream = %granted.stream_name, client = %r.setup.request.client_addr,
                region = %node.region, edge = %node.id, origin = %to, %from, %to,
                reason = cause.reason,
                resent = plan.frames.len(), config = plan.config.len(), lost = plan.lost,
                resume_from = plan.resume_from, attempts,
                took_ms = decided.elapsed().as_millis() as u64,
                "relayed stream resumed: the encoder saw nothing");
            if let Some(old) = self.shadow.take() {
                tokio::spawn(old.sender.finish().in_current_span());
            }
            self.shadow = old.take().map(|sender| Shadow {
                sender,
                since: Instant::now(),
                origin: from.clone(),
            });
            upstreams.placed(r.setup.stream, r.setup.request.leg, &to);
            self.shared.set_origin(&to);
            self.end = sender.end_signal();
            self.acks = sender.acks();
            self.acked = None;
            self.sender = Some(sender);
            return Ok(());
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
