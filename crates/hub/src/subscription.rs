//! A player's handle on a live stream, one leg's or a rendition's on-air stream: a
//! bounded queue of events to receive.

use std::sync::Arc;

use crate::event::PlayerEvent;
use crate::key::Leg;
use crate::rendition::Rendition;
use crate::stream::{lock, Player, Stream};

/// What a player is attached to.
#[derive(Debug)]
pub(crate) enum Source {
    /// One leg, asked for by name ([`crate::LegChoice::Only`] and the like).
    Leg(Arc<Stream>),
    /// A rendition's on-air stream.
    OnAir(Arc<Rendition>),
}

/// One player attached to a stream. Dropping it detaches the player.
#[derive(Debug)]
pub struct Subscription {
    pub(crate) source: Source,
    pub(crate) player: Arc<Player>,
}

impl Subscription {
    /// The stream name played.
    pub fn name(&self) -> &str {
        match &self.source {
            Source::Leg(stream) => &stream.key.name,
            Source::OnAir(rendition) => &rendition.name,
        }
    }

    /// The leg this player is attached to; `None` for the on-air stream, which follows
    /// whichever leg is on air.
    pub fn leg(&self) -> Option<Leg> {
        match &self.source {
            Source::Leg(stream) => Some(stream.key.leg),
            Source::OnAir(_) => None,
        }
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
        match &self.source {
            Source::Leg(stream) => lock(&stream.inner).fanout.detach(self.player.id),
            Source::OnAir(rendition) => lock(&rendition.inner).out.detach(self.player.id),
        }
    }
}
