//! The publisher's handle on a live stream: push messages, learn of a takeover, end
//! the stream.

use std::fmt;
use std::sync::Arc;

use longhaul_rtmp::RtmpMessage;
use tokio::sync::watch;

use crate::hub::HubShared;
use crate::key::StreamKey;
use crate::stats::PublisherInfo;
use crate::stream::{lock, Stream};

/// How a publication came to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// The stream was not live: a new stream started.
    New,
    /// The stream was live and this publication took it over from `previous`, whose
    /// `Publication` has been told ([`Publication::taken_over`]). Players stayed attached.
    TookOver { previous: PublisherInfo },
    /// The stream was live with the same resumable publish ([`crate::Hub::resume`]): this
    /// publication continues it from `previous` (the stream that carried it before),
    /// keeping its configuration, GOP cache and timeline. Players stayed attached.
    Resumed { previous: PublisherInfo },
}

/// The error of pushing to a publication that is no longer the stream's publisher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TakenOver;

impl fmt::Display for TakenOver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the stream was taken over by another publisher")
    }
}

impl std::error::Error for TakenOver {}

/// The right to publish one stream. Dropping it (or [`Publication::finish`]) ends the
/// stream, unless another publication has taken it over meanwhile.
#[derive(Debug)]
pub struct Publication {
    pub(crate) hub: Arc<HubShared>,
    pub(crate) stream: Arc<Stream>,
    pub(crate) id: u64,
    pub(crate) taken_over: watch::Receiver<bool>,
}

impl Publication {
    pub fn key(&self) -> &StreamKey {
        &self.stream.key
    }

    /// Takes in one message from the encoder and forwards it to every player. Never
    /// waits on players: a slow player is skipped, not waited for. Timestamps are
    /// forwarded as sent, plus the stream's offset if this publication took the stream
    /// over (see the crate doc, "Takeover"). A configuration message beyond the
    /// configuration bounds is refused (counted, not forwarded) without failing the
    /// push. Fails once the stream was taken over by another publisher.
    pub fn push(&self, message: RtmpMessage) -> Result<(), TakenOver> {
        let mut inner = lock(&self.stream.inner);
        if inner.publication_id != self.id || inner.fanout.ended {
            return Err(TakenOver);
        }
        inner.push(&self.stream, message);
        Ok(())
    }

    /// Whether another publication has taken this stream over.
    pub fn is_taken_over(&self) -> bool {
        *self.taken_over.borrow()
    }

    /// Resolves when another publication takes this stream over (at once if it
    /// already has); never resolves otherwise. The connection task selects on it to
    /// close the old encoder's socket at once.
    pub async fn taken_over(&self) {
        let mut taken_over = self.taken_over.clone();
        if taken_over.wait_for(|taken| *taken).await.is_err() {
            // The sender is gone without a takeover: the stream ended with this
            // publication, which then cannot be taken over any more.
            std::future::pending::<()>().await;
        }
    }

    /// Ends the publication: if it is still the stream's publisher, the stream ends
    /// and its players get `Ended` after what they have queued.
    pub fn finish(self) {
        // Drop does the work.
    }
}

impl Drop for Publication {
    fn drop(&mut self) {
        self.hub.end_publication(&self.stream, self.id);
    }
}
