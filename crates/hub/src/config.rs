//! A stream's configuration: its metadata and sequence headers, which a new or skipped
//! player must get before any media. Bounded in slots and bytes, because every byte
//! stored here comes from the publisher and is handed to every new player: a publisher
//! sending SequenceStart messages with ever new FourCCs or tracks, or huge ones, is
//! refused beyond the bounds instead of growing the stream's memory and every
//! player's snapshot.

use std::fmt;

use longhaul_rtmp::RtmpMessage;

use crate::classify::{HeaderSlot, MediaKind};

/// Most sequence-header slots (codec and track) a stream keeps per kind (audio,
/// video). A plain stream has one per kind; an Enhanced RTMP multitrack stream has one
/// per track: a handful in practice (a few camera angles, a few audio languages or a
/// commentary mix). 8 per kind covers that with room to spare, and caps how many
/// headers a publisher cycling through random FourCCs or track ids can make the hub
/// keep and hand to every new player.
pub const CONFIG_MAX_SLOTS_PER_KIND: usize = 8;

/// Largest configuration message (sequence header or metadata) a stream keeps, in
/// payload bytes. Real ones are tiny: an AAC AudioSpecificConfig is 2-5 bytes, an
/// Opus or FLAC header a few dozen, an AVC, HEVC, VVC or AV1 decoder configuration
/// record (parameter sets) a few hundred bytes to a few KB, an `onMetaData` well under
/// 1 KB to a few KB. 1 MiB is hundreds of times any of them; a bigger one is not a
/// decoder configuration.
pub const CONFIG_MESSAGE_MAX_BYTES: usize = 1024 * 1024;

/// Most payload bytes of configuration (metadata and every header) a stream keeps in
/// all. Slots times [`CONFIG_MESSAGE_MAX_BYTES`] would be 17 MiB, more than a player's
/// whole queue; real configurations total a few KB even with 8 tracks per kind, so
/// 2 MiB never refuses one. It bounds what every new or skipped player is handed
/// before any media: a snapshot (this plus a full GOP cache) always fits in a player
/// queue with room for live messages (asserted in `player_queue.rs`).
pub const CONFIG_MAX_BYTES: usize = 2 * 1024 * 1024;

/// Most configuration messages a stream keeps: metadata plus every header slot.
pub(crate) const CONFIG_MAX_MESSAGES: usize = 1 + 2 * CONFIG_MAX_SLOTS_PER_KIND;

const _: () = assert!(CONFIG_MESSAGE_MAX_BYTES <= CONFIG_MAX_BYTES);

/// Why a configuration message was refused (not stored and not forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigRefusal {
    /// Larger than [`CONFIG_MESSAGE_MAX_BYTES`].
    TooLarge { bytes: usize },
    /// A new slot for `kind` when it already has [`CONFIG_MAX_SLOTS_PER_KIND`].
    TooManySlots { kind: MediaKind },
    /// Storing it would take the configuration over [`CONFIG_MAX_BYTES`].
    OverBudget { bytes: usize, stored: usize },
}

impl fmt::Display for ConfigRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigRefusal::TooLarge { bytes } => write!(
                f,
                "configuration message of {bytes} bytes, over the {CONFIG_MESSAGE_MAX_BYTES}-byte limit"
            ),
            ConfigRefusal::TooManySlots { kind } => write!(
                f,
                "new {kind} sequence header slot (codec, track) beyond {CONFIG_MAX_SLOTS_PER_KIND} per kind"
            ),
            ConfigRefusal::OverBudget { bytes, stored } => write!(
                f,
                "configuration message of {bytes} bytes would take the stream's \
                 {stored} stored configuration bytes over {CONFIG_MAX_BYTES}"
            ),
        }
    }
}

/// Metadata and sequence headers of one stream, within the bounds above.
#[derive(Debug, Default)]
pub(crate) struct StreamConfig {
    metadata: Option<RtmpMessage>,
    /// Current sequence headers, in the order their slots first arrived; at most
    /// [`CONFIG_MAX_SLOTS_PER_KIND`] per kind, so the linear lookups stay short.
    headers: Vec<(HeaderSlot, RtmpMessage)>,
    /// Payload bytes of `metadata` and `headers`.
    bytes: usize,
    /// Bumped whenever metadata or a header changes, so a player can tell whether
    /// the configuration it has is still current.
    generation: u64,
}

impl StreamConfig {
    /// Stores `message` as the stream's metadata, replacing the previous one.
    pub fn set_metadata(&mut self, message: &RtmpMessage) -> Result<(), ConfigRefusal> {
        let replaced = self.metadata.as_ref().map_or(0, |m| m.payload.len());
        self.check(replaced, message.payload.len())?;
        self.bytes = self.bytes - replaced + message.payload.len();
        self.metadata = Some(message.clone());
        self.generation += 1;
        Ok(())
    }

    /// Stores `message` as the header of `slot`, replacing that slot's previous one.
    pub fn set_header(
        &mut self,
        slot: HeaderSlot,
        message: &RtmpMessage,
    ) -> Result<(), ConfigRefusal> {
        let existing = self.headers.iter().position(|(s, _)| *s == slot);
        let replaced = match existing {
            Some(index) => self.headers[index].1.payload.len(),
            None => {
                let of_kind = self.headers.iter().filter(|(s, _)| s.kind == slot.kind);
                if of_kind.count() >= CONFIG_MAX_SLOTS_PER_KIND {
                    return Err(ConfigRefusal::TooManySlots { kind: slot.kind });
                }
                0
            }
        };
        self.check(replaced, message.payload.len())?;
        self.bytes = self.bytes - replaced + message.payload.len();
        match existing {
            Some(index) => self.headers[index].1 = message.clone(),
            None => self.headers.push((slot, message.clone())),
        }
        self.generation += 1;
        Ok(())
    }

    /// Whether a message of `bytes` may replace one of `replaced` bytes.
    fn check(&self, replaced: usize, bytes: usize) -> Result<(), ConfigRefusal> {
        if bytes > CONFIG_MESSAGE_MAX_BYTES {
            return Err(ConfigRefusal::TooLarge { bytes });
        }
        let stored = self.bytes - replaced;
        if stored + bytes > CONFIG_MAX_BYTES {
            return Err(ConfigRefusal::OverBudget { bytes, stored });
        }
        Ok(())
    }

    /// Forgets everything (a takeover: the new publisher sends its own).
    pub fn clear(&mut self) {
        self.metadata = None;
        self.headers = Vec::new();
        self.bytes = 0;
        self.generation += 1;
    }

    /// Metadata first, then every sequence header in arrival order.
    pub fn messages(&self) -> impl Iterator<Item = &RtmpMessage> {
        self.metadata
            .iter()
            .chain(self.headers.iter().map(|(_, message)| message))
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Payload bytes stored.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use longhaul_rtmp::media::Codec;

    fn slot(kind: MediaKind, fourcc: [u8; 4], track: u8) -> HeaderSlot {
        HeaderSlot {
            kind,
            codec: Codec::FourCc(fourcc),
            track,
        }
    }

    #[test]
    fn slots_are_capped_per_kind_but_replacements_pass() {
        let mut config = StreamConfig::default();
        for i in 0..CONFIG_MAX_SLOTS_PER_KIND as u8 {
            let header = message(8, 0, vec![0x90, b'O', b'p', b'u', i]);
            assert_eq!(
                config.set_header(slot(MediaKind::Audio, *b"Opus", i), &header),
                Ok(())
            );
        }
        let ninth = slot(MediaKind::Audio, *b"Opus", 200);
        assert_eq!(
            config.set_header(ninth, &aac_header(0)),
            Err(ConfigRefusal::TooManySlots {
                kind: MediaKind::Audio
            })
        );
        // Video slots are counted apart; an existing audio slot may be replaced.
        assert_eq!(
            config.set_header(slot(MediaKind::Video, *b"hvc1", 0), &avc_header(0)),
            Ok(())
        );
        let generation = config.generation();
        assert_eq!(
            config.set_header(slot(MediaKind::Audio, *b"Opus", 3), &aac_header(40)),
            Ok(())
        );
        assert!(config.generation() > generation);
        assert_eq!(config.messages().count(), CONFIG_MAX_SLOTS_PER_KIND + 1);
    }

    #[test]
    fn oversized_messages_and_budget_are_refused() {
        let mut config = StreamConfig::default();
        let big = message(9, 0, vec![0; CONFIG_MESSAGE_MAX_BYTES + 1]);
        let video = slot(MediaKind::Video, *b"av01", 0);
        assert_eq!(
            config.set_header(video, &big),
            Err(ConfigRefusal::TooLarge {
                bytes: CONFIG_MESSAGE_MAX_BYTES + 1
            })
        );
        assert_eq!(
            config.set_metadata(&big),
            Err(ConfigRefusal::TooLarge {
                bytes: big.payload.len()
            })
        );
        assert_eq!(config.messages().count(), 0);

        // Fill the budget with maximal headers, then one byte more is refused.
        let max = message(9, 0, vec![0; CONFIG_MESSAGE_MAX_BYTES]);
        let slots = CONFIG_MAX_BYTES / CONFIG_MESSAGE_MAX_BYTES;
        for track in 0..slots as u8 {
            assert_eq!(
                config.set_header(slot(MediaKind::Video, *b"av01", track), &max),
                Ok(())
            );
        }
        assert_eq!(config.bytes(), CONFIG_MAX_BYTES);
        assert_eq!(
            config.set_metadata(&message(18, 0, vec![0])),
            Err(ConfigRefusal::OverBudget {
                bytes: 1,
                stored: CONFIG_MAX_BYTES
            })
        );
        // Replacing a stored header by a smaller one frees its bytes.
        assert_eq!(
            config.set_header(slot(MediaKind::Video, *b"av01", 0), &avc_header(0)),
            Ok(())
        );
        assert_eq!(
            config.bytes(),
            CONFIG_MAX_BYTES - CONFIG_MESSAGE_MAX_BYTES + avc_header(0).payload.len()
        );
        assert_eq!(config.set_metadata(&message(18, 0, vec![0])), Ok(()));
        config.clear();
        assert_eq!((config.bytes(), config.messages().count()), (0, 0));
    }
}
