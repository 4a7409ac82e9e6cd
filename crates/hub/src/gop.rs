//! The GOP cache: the current group of pictures, from its keyframe on (audio and data
//! included), so a new player can start decoding at once instead of waiting up to a
//! whole keyframe interval.

use longhaul_rtmp::RtmpMessage;

/// Largest GOP the cache holds, in payload bytes. A 2 s GOP at 20 Mbit/s is 5 MB and a
/// 4 s GOP (the longest YouTube accepts without a warning) at 12 Mbit/s is 6 MB; 8 MiB
/// covers both and bounds the memory a stream pins per cached GOP.
pub const GOP_CACHE_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Largest GOP the cache holds, in messages. A 10 s GOP at 30 fps with 48 kHz AAC
/// (46.9 frames/s) is 300 + 469 = 769 messages; 1024 leaves room for data messages.
pub const GOP_CACHE_MAX_MESSAGES: usize = 1024;

/// The messages of the current GOP, or nothing when there is no usable one.
#[derive(Debug, Default)]
pub(crate) struct GopCache {
    messages: Vec<RtmpMessage>,
    bytes: usize,
    /// A GOP is being cached: a keyframe was seen and the limits have held since.
    caching: bool,
}

/// What happened to a message offered to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GopAppend {
    Cached,
    /// No GOP is being cached (no keyframe yet, or the current GOP overflowed).
    NotCaching,
    /// This message pushed the GOP over a limit: the cache was emptied and stays empty
    /// until the next keyframe.
    Overflowed,
}

impl GopCache {
    /// Starts a new GOP with `keyframe`, dropping the previous one.
    pub fn start(&mut self, keyframe: RtmpMessage) -> GopAppend {
        self.reset();
        self.caching = true;
        self.append(keyframe)
    }

    /// Appends a message to the current GOP, if one is being cached.
    pub fn append(&mut self, message: RtmpMessage) -> GopAppend {
        if !self.caching {
            return GopAppend::NotCaching;
        }
        let bytes = self.bytes + message.payload.len();
        if bytes > GOP_CACHE_MAX_BYTES || self.messages.len() >= GOP_CACHE_MAX_MESSAGES {
            self.reset();
            return GopAppend::Overflowed;
        }
        self.bytes = bytes;
        self.messages.push(message);
        GopAppend::Cached
    }

    /// Forgets everything; nothing is cached until the next keyframe.
    pub fn reset(&mut self) {
        // A fresh Vec releases the old GOP's memory (and payload references) at once.
        self.messages = Vec::new();
        self.bytes = 0;
        self.caching = false;
    }

    /// The cached GOP, starting on its keyframe; empty when there is none.
    pub fn messages(&self) -> &[RtmpMessage] {
        &self.messages
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(len: usize) -> RtmpMessage {
        RtmpMessage {
            timestamp: 0,
            type_id: 9,
            stream_id: 1,
            payload: Bytes::from(vec![0u8; len]),
        }
    }

    #[test]
    fn nothing_before_the_first_keyframe() {
        let mut gop = GopCache::default();
        assert_eq!(gop.append(msg(10)), GopAppend::NotCaching);
        assert_eq!(gop.start(msg(10)), GopAppend::Cached);
        assert_eq!(gop.append(msg(10)), GopAppend::Cached);
        assert_eq!(gop.messages().len(), 2);
        assert_eq!(gop.bytes(), 20);
    }

    #[test]
    fn byte_limit_drops_the_gop_until_the_next_keyframe() {
        let mut gop = GopCache::default();
        gop.start(msg(GOP_CACHE_MAX_BYTES - 10));
        assert_eq!(gop.append(msg(10)), GopAppend::Cached);
        assert_eq!(gop.append(msg(1)), GopAppend::Overflowed);
        assert!(gop.messages().is_empty());
        assert_eq!(gop.append(msg(1)), GopAppend::NotCaching);
        assert_eq!(gop.start(msg(1)), GopAppend::Cached);
        assert_eq!(gop.messages().len(), 1);
    }

    #[test]
    fn message_limit() {
        let mut gop = GopCache::default();
        gop.start(msg(1));
        for _ in 1..GOP_CACHE_MAX_MESSAGES {
            assert_eq!(gop.append(msg(1)), GopAppend::Cached);
        }
        assert_eq!(gop.append(msg(1)), GopAppend::Overflowed);
        assert_eq!(gop.bytes(), 0);
    }
}
