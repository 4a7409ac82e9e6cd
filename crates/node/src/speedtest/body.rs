//! The bytes a speed test moves: a body of filler that ends after a number of bytes or
//! at a deadline, whichever comes first, optionally paced to a bandwidth cap. The node
//! sends it as the download; `longhaul speedtest` sends it as the upload.
//!
//! The filler is a 64 KiB block of pseudo-random bytes, repeated: nothing on the path
//! compresses HTTP bodies it was not asked to, and a compressor's window (gzip's 32 KiB)
//! is shorter than the block, so the bytes measured are the bytes sent.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Bytes per frame: 64 KiB, a few milliseconds at the cap, so the pace is smooth.
pub const CHUNK: usize = 64 * 1024;

/// The filler block, made once.
fn block() -> Bytes {
    static BLOCK: OnceLock<Bytes> = OnceLock::new();
    BLOCK
        .get_or_init(|| {
            // xorshift64*: fast, and plenty random for a compressor to find nothing.
            let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut out = Vec::with_capacity(CHUNK);
            while out.len() < CHUNK {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
            }
            Bytes::from(out)
        })
        .clone()
}

/// Called with the size of each frame as it is handed to the connection (the node
/// counts `speedtest_bytes_total` with it).
pub type OnFrame = Box<dyn Fn(u64) + Send + Sync>;

/// A body of `limit` filler bytes, ended early at `deadline` if one is set, and paced
/// to `bits_per_second` if that is not 0. Whatever it holds (a concurrency slot, a
/// gauge guard) is released when the connection drops it: at its end, or when the
/// client goes away.
pub struct FillerBody {
    remaining: u64,
    sent: u64,
    started: Instant,
    deadline: Option<Instant>,
    bits_per_second: u64,
    pause: Option<Pin<Box<Sleep>>>,
    on_frame: Option<OnFrame>,
    _held: Option<Box<dyn Send + Sync>>,
}

impl FillerBody {
    /// `limit` bytes, as fast as the connection takes them.
    pub fn new(limit: u64) -> Self {
        Self {
            remaining: limit,
            sent: 0,
            started: Instant::now(),
            deadline: None,
            bits_per_second: 0,
            pause: None,
            on_frame: None,
            _held: None,
        }
    }

    /// Ends the body `after` its start, however many bytes are left.
    pub fn until(mut self, after: Duration) -> Self {
        self.deadline = Some(self.started + after);
        self
    }

    /// Never faster than `bits_per_second` on average (0: no cap).
    pub fn paced(mut self, bits_per_second: u64) -> Self {
        self.bits_per_second = bits_per_second;
        self
    }

    /// Calls `f` with the size of every frame.
    pub fn on_frame(mut self, f: OnFrame) -> Self {
        self.on_frame = Some(f);
        self
    }

    /// Keeps `held` until the body is dropped.
    pub fn holding(mut self, held: impl Send + Sync + 'static) -> Self {
        self._held = Some(Box::new(held));
        self
    }

    /// Bytes handed out so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

impl Body for FillerBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.remaining == 0 || this.deadline.is_some_and(|d| Instant::now() >= d) {
            this.remaining = 0;
            return Poll::Ready(None);
        }
        if let Some(pause) = this.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
        }
        let wait = super::pace::wait(this.sent, this.started.elapsed(), this.bits_per_second);
        if !wait.is_zero() {
            let mut pause = Box::pin(tokio::time::sleep(wait));
            if pause.as_mut().poll(cx).is_pending() {
                this.pause = Some(pause);
                return Poll::Pending;
            }
        }
        let len = this.remaining.min(CHUNK as u64);
        // `len` is at most CHUNK, a usize.
        let frame = block().slice(..len as usize);
        this.remaining -= len;
        this.sent += len;
        if let Some(f) = &this.on_frame {
            f(len);
        }
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        if self.deadline.is_some() {
            let mut hint = SizeHint::new();
            hint.set_upper(self.remaining);
            hint
        } else {
            SizeHint::with_exact(self.remaining)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn ends_after_its_bytes_and_counts_them() {
        let counted = Arc::new(AtomicU64::new(0));
        let c = counted.clone();
        let body = FillerBody::new(200_000).on_frame(Box::new(move |n| {
            c.fetch_add(n, Ordering::Relaxed);
        }));
        assert_eq!(body.size_hint().exact(), Some(200_000));
        let bytes = body.collect().await.expect("infallible").to_bytes();
        assert_eq!(bytes.len(), 200_000);
        assert_eq!(counted.load(Ordering::Relaxed), 200_000);
        // Not a run of one byte: the filler varies.
        assert!(bytes[..64].iter().any(|b| *b != bytes[0]));
    }

    #[tokio::test(start_paused = true)]
    async fn paced_to_its_cap() {
        // 4 chunks at 8 Mbit/s (1 MB/s): the last is due after 3 chunks' time.
        let body = FillerBody::new(4 * CHUNK as u64).paced(8_000_000);
        let start = Instant::now();
        let bytes = body.collect().await.expect("infallible").to_bytes();
        assert_eq!(bytes.len(), 4 * CHUNK);
        let took = start.elapsed();
        let due = Duration::from_secs_f64(3.0 * CHUNK as f64 / 1_000_000.0);
        assert!(
            took >= due && took < due + Duration::from_millis(50),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ends_at_its_deadline() {
        let body = FillerBody::new(u64::MAX)
            .paced(8_000_000)
            .until(Duration::from_secs(1));
        let bytes = body.collect().await.expect("infallible").to_bytes();
        // About 1 MB in a second at 1 MB/s, give or take a chunk.
        assert!(
            bytes.len() >= 1_000_000 - CHUNK && bytes.len() <= 1_000_000 + CHUNK,
            "{}",
            bytes.len()
        );
    }

    #[tokio::test]
    async fn releases_what_it_holds_when_dropped() {
        let slots = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = slots.clone().try_acquire_owned().expect("free");
        let body = FillerBody::new(10).holding(permit);
        assert_eq!(slots.available_permits(), 0);
        drop(body);
        assert_eq!(slots.available_permits(), 1);
    }
}
