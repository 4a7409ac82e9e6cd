//! The synchronous core of one live stream: classifies each published message, keeps
//! the stream's configuration (metadata and sequence headers) and its GOP cache, and
//! counts what came in. No async, no locks: the hub wraps it in a mutex.

use longhaul_rtmp::media::Codec;
use longhaul_rtmp::RtmpMessage;

use crate::classify::{classify, Class, HeaderSlot, MediaKind};
use crate::gop::{GopAppend, GopCache};

/// A message as the hub forwards it, with what the players' queues need to know.
#[derive(Debug, Clone)]
pub(crate) struct Ingested {
    pub message: RtmpMessage,
    /// Metadata or a sequence header: replayed to players that skipped past it.
    pub is_config: bool,
    /// A player waiting to (re)start may start here: a video keyframe, or any audio
    /// frame on a stream that has shown no video.
    pub resume_point: bool,
}

/// Counters of one stream since it started (they survive takeovers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct IngestCounters {
    pub messages_in: u64,
    pub bytes_in: u64,
    pub keyframes: u64,
    pub gop_overflows: u64,
    pub video_codec: Option<Codec>,
    pub audio_codec: Option<Codec>,
}

/// Classification, configuration and GOP cache of one stream.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    metadata: Option<RtmpMessage>,
    /// Current sequence headers, in the order they first arrived.
    headers: Vec<(HeaderSlot, RtmpMessage)>,
    /// Bumped whenever metadata or a header changes, so a player can tell whether
    /// the configuration it has is still current.
    config_generation: u64,
    gop: GopCache,
    /// Some video was seen: players must start on a keyframe.
    has_video: bool,
    counters: IngestCounters,
}

impl StreamState {
    /// Takes in one published message: updates configuration, GOP cache and counters
    /// and returns the message to forward (metadata stripped of `@setDataFrame`).
    pub fn ingest(&mut self, message: RtmpMessage) -> Ingested {
        self.counters.messages_in += 1;
        self.counters.bytes_in += message.payload.len() as u64;
        let (message, class) = classify(message);
        let mut resume_point = false;
        match class {
            Class::Metadata => {
                self.metadata = Some(message.clone());
                self.config_generation += 1;
            }
            Class::SequenceHeader(slot) => {
                match slot.kind {
                    MediaKind::Video => {
                        self.has_video = true;
                        self.counters.video_codec = Some(slot.codec);
                    }
                    MediaKind::Audio => self.counters.audio_codec = Some(slot.codec),
                }
                match self.headers.iter_mut().find(|(s, _)| *s == slot) {
                    Some((_, stored)) => *stored = message.clone(),
                    None => self.headers.push((slot, message.clone())),
                }
                self.config_generation += 1;
            }
            Class::Keyframe { codec } => {
                self.has_video = true;
                self.counters.video_codec = Some(codec);
                self.counters.keyframes += 1;
                resume_point = true;
                self.gop.start(message.clone());
            }
            Class::Video { codec } => {
                self.has_video = true;
                if codec.is_some() {
                    self.counters.video_codec = codec;
                }
                self.append_to_gop(&message);
            }
            Class::Audio { codec } => {
                if codec.is_some() {
                    self.counters.audio_codec = codec;
                }
                resume_point = !self.has_video;
                self.append_to_gop(&message);
            }
            Class::Other => self.append_to_gop(&message),
        }
        Ingested {
            message,
            is_config: class.is_config(),
            resume_point,
        }
    }

    fn append_to_gop(&mut self, message: &RtmpMessage) {
        if self.gop.append(message.clone()) == GopAppend::Overflowed {
            self.counters.gop_overflows += 1;
            tracing::debug!(
                "GOP over the cache limit; new players wait for the next keyframe"
            );
        }
    }

    /// Forgets the configuration and GOP of the previous publisher (a takeover): the
    /// new publisher sends its own before any media. Counters carry on.
    pub fn reset_media(&mut self) {
        self.metadata = None;
        self.headers.clear();
        self.config_generation += 1;
        self.gop.reset();
        self.has_video = false;
    }

    /// Metadata first, then every sequence header in arrival order.
    pub fn config(&self) -> impl Iterator<Item = &RtmpMessage> {
        self.metadata
            .iter()
            .chain(self.headers.iter().map(|(_, message)| message))
    }

    pub fn config_generation(&self) -> u64 {
        self.config_generation
    }

    /// The cached GOP, starting on a keyframe; empty when there is none.
    pub fn gop(&self) -> &[RtmpMessage] {
        self.gop.messages()
    }

    /// Whether a player with no cached GOP to start from must wait for a keyframe
    /// (false for a stream that has shown no video: any audio frame will do).
    pub fn has_video(&self) -> bool {
        self.has_video
    }

    pub fn counters(&self) -> IngestCounters {
        self.counters
    }
}
