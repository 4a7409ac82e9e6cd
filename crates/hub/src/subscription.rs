//! A player's handle on a live stream: a bounded queue of events to receive.

use std::sync::Arc;

use crate::event::PlayerEvent;
use crate::key::StreamKey;
use crate::stream::{lock, Player, Stream};

/// One player attached to a stream. Dropping it detaches the player.
#[derive(Debug)]
pub struct Subscription {
    pub(crate) stream: Arc<Stream>,
    pub(crate) player: Arc<Player>,
}

impl Subscription {
    /// The stream (and so the leg) this player is attached to.
    pub fn key(&self) -> &StreamKey {
        &self.stream.key
    }

    /// The next event. The first events are the stream's metadata, its sequence
    /// headers and the cached GOP from its keyframe, then live messages. After
    /// `Ended` or `Dropped`, returns that same event again at once.
    pub async fn recv(&mut self) -> PlayerEvent {
        loop {
            if let Some(event) = self.try_recv() {
                return event;
            }
            self.player.notify.notified().await;
        }
    }

    /// The next event if one is ready.
    pub fn try_recv(&mut self) -> Option<PlayerEvent> {
        lock(&self.player.queue).pop()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        lock(&self.stream.inner).detach(self.player.id);
    }
}
