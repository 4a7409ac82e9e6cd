//! The two bits of IO every node's RTMP connection driver does around its
//! `longhaul_rtmp::ServerSession`: writing the session's output with a time limit, and
//! one timer for the session's next deadline.
//!
//! A peer that stops reading must not hold a connection (and its buffers) forever: every
//! write gives up after the node's `ingest.write_timeout_secs`, and the driver closes the
//! connection. The session's last words (a refusal, a failure status) get the same limit.

use longhaul_rtmp::ServerSession;
use prometheus::IntCounter;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Sleep;

/// Why a write to the peer failed.
#[derive(Debug)]
pub enum WriteError {
    Io(std::io::Error),
    /// No progress within the write time limit: the peer stopped reading.
    Stalled,
}

/// The write half of a connection, with its time limit and byte counter.
pub struct SessionWriter<W> {
    writer: W,
    limit: Duration,
    bytes_out: IntCounter,
}

impl<W: AsyncWrite + Unpin> SessionWriter<W> {
    pub fn new(writer: W, limit: Duration, bytes_out: IntCounter) -> Self {
        Self {
            writer,
            limit,
            bytes_out,
        }
    }

    /// Writes whatever the session queued.
    pub async fn flush(&mut self, session: &mut ServerSession) -> Result<(), WriteError> {
        let queued = session.output().len();
        if queued == 0 {
            return Ok(());
        }
        let write = self.writer.write_all_buf(session.output());
        match tokio::time::timeout(self.limit, write).await {
            Ok(Ok(())) => {
                self.bytes_out.inc_by(queued as u64);
                Ok(())
            }
            Ok(Err(e)) => Err(WriteError::Io(e)),
            Err(_) => Err(WriteError::Stalled),
        }
    }

    /// Shuts the write side down, giving up after the limit.
    pub async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(self.limit, self.writer.shutdown()).await;
    }

    /// Writes what the session queued (its last words: a refusal, a status) and shuts
    /// down, giving up after the limit on a peer that does not read.
    pub async fn close(&mut self, session: &mut ServerSession) {
        let writer = &mut self.writer;
        let _ = tokio::time::timeout(self.limit, async {
            let _ = writer.write_all_buf(session.output()).await;
            let _ = writer.shutdown().await;
        })
        .await;
    }
}

/// One timer for a connection's next deadline, moved rather than re-created on every
/// turn of the driver's loop.
pub struct DeadlineTimer {
    sleep: Pin<Box<Sleep>>,
    armed: bool,
}

impl Default for DeadlineTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl DeadlineTimer {
    pub fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: false,
        }
    }

    /// Aims the timer at `deadline`; `None` disarms it.
    pub fn set(&mut self, deadline: Option<std::time::Instant>) {
        self.armed = deadline.is_some();
        if let Some(deadline) = deadline.map(tokio::time::Instant::from_std) {
            if self.sleep.deadline() != deadline {
                self.sleep.as_mut().reset(deadline);
            }
        }
    }

    /// Resolves at the deadline; never while disarmed. Cancel-safe.
    pub fn wait(&mut self) -> impl Future<Output = ()> + '_ {
        let armed = self.armed;
        let sleep = self.sleep.as_mut();
        async move {
            if armed {
                sleep.await
            } else {
                std::future::pending().await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn the_timer_fires_at_its_deadline_and_never_disarmed() {
        let mut timer = DeadlineTimer::new();
        timer.set(None);
        let idle = tokio::time::timeout(Duration::from_secs(3600), timer.wait()).await;
        assert!(idle.is_err(), "a disarmed timer never fires");
        // Deadlines are std instants; under a paused tokio clock, take "now" from tokio.
        let before = tokio::time::Instant::now();
        timer.set(Some(before.into_std() + Duration::from_millis(250)));
        timer.wait().await;
        assert_eq!(before.elapsed(), Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_does_not_read_stalls_the_write() {
        // A duplex pipe with a 16-byte buffer that nobody reads.
        let (ours, _theirs) = tokio::io::duplex(16);
        let counter = IntCounter::new("out", "out").expect("valid");
        let mut writer = SessionWriter::new(ours, Duration::from_secs(15), counter.clone());
        let mut session =
            ServerSession::new(longhaul_rtmp::ServerConfig::default(), Instant::now());
        // The S0+S1+S2 of a handshake are queued once C0+C1 arrive.
        let c0c1 = [[3u8].as_slice(), &[0u8; 1536]].concat();
        session
            .handle_input(Instant::now(), &c0c1)
            .expect("handshake");
        assert!(session.output().len() > 16);
        assert!(matches!(
            writer.flush(&mut session).await,
            Err(WriteError::Stalled)
        ));
        assert_eq!(counter.get(), 0);
    }
}
