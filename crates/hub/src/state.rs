//! The synchronous core of one live stream: rebases each published message onto the
//! stream's timeline (after a takeover), classifies it, keeps the stream's
//! configuration (metadata and sequence headers) and its GOP cache, and counts what
//! came in. No async, no locks: the hub wraps it in a mutex.

use longhaul_rtmp::media::Codec;
use longhaul_rtmp::RtmpMessage;

use crate::classify::{classify, Class, MediaKind};
use crate::config::{ConfigRefusal, StreamConfig};
use crate::gop::{GopAppend, GopCache};
use crate::timeline::{Continuation, Timeline};

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
    /// Configuration messages refused for the configuration's bounds.
    pub config_refused: u64,
    pub video_codec: Option<Codec>,
    pub audio_codec: Option<Codec>,
}

/// Classification, configuration and GOP cache of one stream.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    config: StreamConfig,
    gop: GopCache,
    timeline: Timeline,
    /// Some video was seen: players must start on a keyframe.
    has_video: bool,
    counters: IngestCounters,
}

impl StreamState {
    /// Takes in one published message: updates configuration, GOP cache and counters
    /// and returns the message to forward (on the stream's timeline, metadata stripped
    /// of `@setDataFrame`), or why a configuration message was refused (counted; it is
    /// neither stored nor forwarded).
    pub fn ingest(&mut self, message: RtmpMessage) -> Result<Ingested, ConfigRefusal> {
        self.counters.messages_in += 1;
        self.counters.bytes_in += message.payload.len() as u64;
        // Before anything is stored: the cache, the configuration and every player
        // see the same timeline.
        let message = self.timeline.rebase(message);
        let (message, class) = classify(message);
        let mut resume_point = false;
        match class {
            Class::Metadata => {
                if let Err(refusal) = self.config.set_metadata(&message) {
                    self.counters.config_refused += 1;
                    return Err(refusal);
                }
            }
            Class::SequenceHeader(slot) => {
                if let Err(refusal) = self.config.set_header(slot, &message) {
                    self.counters.config_refused += 1;
                    return Err(refusal);
                }
                match slot.kind {
                    MediaKind::Video => {
                        self.has_video = true;
                        self.counters.video_codec = Some(slot.codec);
                    }
                    MediaKind::Audio => self.counters.audio_codec = Some(slot.codec),
                }
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
        self.timeline.forwarded(&message);
        Ok(Ingested {
            message,
            is_config: class.is_config(),
            resume_point,
        })
    }

    fn append_to_gop(&mut self, message: &RtmpMessage) {
        if self.gop.append(message.clone()) == GopAppend::Overflowed {
            self.counters.gop_overflows += 1;
            tracing::debug!("GOP over the cache limit; new players wait for the next keyframe");
        }
    }

    /// A new publisher took the stream over: forgets the previous publisher's
    /// configuration and GOP (the new one sends its own before any media) and rebases
    /// the new publisher's timestamps to continue the stream's timeline. Counters
    /// carry on.
    pub fn take_over(&mut self) {
        self.timeline.take_over();
        self.config.clear();
        self.gop.reset();
        self.has_video = false;
    }

    /// A publication on the same clock took the stream over (a replica replaced by the
    /// same leg published here, or the reverse: [`Timeline::continue_clock`]). The
    /// configuration and GOP carry on (it is the same encoder's), and what it re-sends
    /// is dropped ([`StreamState::already_forwarded`]).
    pub fn continue_clock(&mut self) {
        self.timeline.continue_clock();
    }

    /// Whether `message`, from a publication that continues the clock, is one the
    /// stream already has: a configuration message identical to one in force, or media
    /// at or before the highest timestamp forwarded. Such a message is counted in and
    /// dropped. A publication whose media turns out to run on another clock is taken
    /// over as usual ([`StreamState::take_over`]).
    pub fn already_forwarded(&mut self, message: &RtmpMessage) -> bool {
        if !self.timeline.is_continuing() {
            return false;
        }
        let (stripped, class) = classify(message.clone());
        let have = if class.is_config() {
            self.config().any(|m| m.payload == stripped.payload)
        } else {
            match self.timeline.continuation(message) {
                Continuation::Forward => false,
                Continuation::AlreadyForwarded => true,
                Continuation::OtherClock => {
                    self.take_over();
                    false
                }
            }
        };
        if have {
            self.counters.messages_in += 1;
            self.counters.bytes_in += message.payload.len() as u64;
        }
        have
    }

    /// A rendition's other leg goes on air (`crate::rendition`): its timestamps continue
    /// the timeline if its clock is the same, or are rebased onto it
    /// ([`Timeline::switch_source`]). Configuration and GOP carry on: the leg's own
    /// configuration is forwarded next where it differs, and at a keyframe the cache
    /// starts a new GOP.
    pub fn switch_source(&mut self) {
        self.timeline.switch_source();
    }

    /// Metadata first, then every sequence header in arrival order.
    pub fn config(&self) -> impl Iterator<Item = &RtmpMessage> {
        self.config.messages()
    }

    pub fn config_generation(&self) -> u64 {
        self.config.generation()
    }

    /// Payload bytes of metadata and sequence headers stored.
    pub fn config_bytes(&self) -> usize {
        self.config.bytes()
    }

    /// The cached GOP, starting on a keyframe; empty when there is none.
    pub fn gop(&self) -> &[RtmpMessage] {
        self.gop.messages()
    }

    /// Payload bytes in the GOP cache.
    pub fn gop_bytes(&self) -> usize {
        self.gop.bytes()
    }

    /// Whether a player with no cached GOP to start from must wait for a keyframe
    /// (false for a stream that has shown no video: any audio frame will do).
    pub fn has_video(&self) -> bool {
        self.has_video
    }

    pub fn counters(&self) -> IngestCounters {
        self.counters
    }

    /// Added to every timestamp of the current publication (0 without a takeover).
    pub fn timestamp_offset(&self) -> u32 {
        self.timeline.offset()
    }

    /// `ingest` for tests whose messages are all within the configuration bounds.
    #[cfg(test)]
    pub fn accept(&mut self, message: RtmpMessage) -> Ingested {
        match self.ingest(message) {
            Ok(ingested) => ingested,
            Err(refusal) => panic!("refused: {refusal}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    #[test]
    fn metadata_is_stripped_shared_and_stored() {
        let mut state = StreamState::default();
        let (meta, offset) = set_data_frame(0);
        let original = meta.payload.clone();
        let ingested = state.accept(meta);
        assert!(ingested.is_config);
        assert_eq!(ingested.message.payload, original.slice(offset..));
        // A slice of the same buffer, not a copy.
        assert_eq!(
            ingested.message.payload.as_ptr(),
            original[offset..].as_ptr()
        );
        let config: Vec<_> = state.config().cloned().collect();
        assert_eq!(config, vec![ingested.message]);
    }

    #[test]
    fn headers_are_kept_per_slot_in_arrival_order() {
        let mut state = StreamState::default();
        state.accept(avc_header(0));
        state.accept(aac_header(0));
        let generation = state.config_generation();
        let mut newer = avc_header(5);
        newer.payload = bytes::Bytes::from_static(&[0x17, 0x00, 0, 0, 0, 2]);
        state.accept(newer.clone());
        assert!(state.config_generation() > generation);
        let config: Vec<_> = state.config().cloned().collect();
        assert_eq!(config, vec![newer, aac_header(0)]);
        let counters = state.counters();
        assert_eq!(counters.video_codec, Some(Codec::Legacy(7)));
        assert_eq!(counters.audio_codec, Some(Codec::Legacy(10)));
    }

    #[test]
    fn gop_starts_on_a_keyframe_and_includes_audio() {
        let mut state = StreamState::default();
        state.accept(avc_header(0));
        state.accept(aac(0)); // before any keyframe: not cached
        assert!(state.accept(keyframe(0, 100)).resume_point);
        assert!(!state.accept(aac(20)).resume_point);
        state.accept(inter(40, 50));
        assert_eq!(state.gop(), &[keyframe(0, 100), aac(20), inter(40, 50)]);
        state.accept(keyframe(80, 100));
        assert_eq!(state.gop(), &[keyframe(80, 100)]);
        let counters = state.counters();
        assert_eq!(counters.keyframes, 2);
        assert_eq!(counters.messages_in, 6);
        assert_eq!(counters.bytes_in, 7 + 5 + 100 + 5 + 50 + 100);
    }

    #[test]
    fn enhanced_rtmp_hevc_headers_and_keyframes() {
        let mut state = StreamState::default();
        // ExHeader, FrameType 1 (key), PacketType 0 (SequenceStart), FourCC hvc1.
        let header = message(9, 0, vec![0x90, b'h', b'v', b'c', b'1', 1, 2, 3]);
        // PacketType 3 (CodedFramesX): keyframe, then an inter frame (FrameType 2).
        let key = message(9, 0, vec![0x93, b'h', b'v', b'c', b'1', 9, 9]);
        let inter = message(9, 40, vec![0xa3, b'h', b'v', b'c', b'1', 8, 8]);
        assert!(state.accept(header.clone()).is_config);
        assert!(state.accept(key.clone()).resume_point);
        assert!(!state.accept(inter.clone()).resume_point);
        assert_eq!(state.config().cloned().collect::<Vec<_>>(), vec![header]);
        assert_eq!(state.gop(), &[key, inter]);
        assert_eq!(state.counters().video_codec, Some(Codec::FourCc(*b"hvc1")));
    }

    #[test]
    fn audio_only_stream_resumes_on_any_audio_frame() {
        let mut state = StreamState::default();
        state.accept(aac_header(0));
        assert!(state.accept(aac(0)).resume_point);
        assert!(!state.has_video());
        assert!(state.gop().is_empty());
    }

    #[test]
    fn gop_overflow_is_counted() {
        let mut state = StreamState::default();
        state.accept(keyframe(0, crate::GOP_CACHE_MAX_BYTES - 100));
        state.accept(inter(40, 200));
        assert!(state.gop().is_empty());
        assert_eq!(state.counters().gop_overflows, 1);
        state.accept(keyframe(80, 10));
        assert_eq!(state.gop().len(), 1);
    }

    /// Enhanced RTMP audio SequenceStart (SoundFormat 9, AudioPacketType 0) for FourCC
    /// `fourcc`, `len` bytes.
    fn ex_audio_header(ts: u32, fourcc: [u8; 4], len: usize) -> RtmpMessage {
        let mut payload = vec![0x90];
        payload.extend_from_slice(&fourcc);
        payload.resize(len.max(5), 0x11);
        message(8, ts, payload)
    }

    #[test]
    fn header_flood_with_new_fourccs_is_bounded_counted_and_not_forwarded() {
        let mut state = StreamState::default();
        state.accept(aac_header(0));
        state.accept(avc_header(0));
        let mut refused = 0;
        for i in 0..10_000u32 {
            match state.ingest(ex_audio_header(i, i.to_be_bytes(), 64)) {
                Ok(ingested) => assert!(ingested.is_config),
                Err(ConfigRefusal::TooManySlots {
                    kind: MediaKind::Audio,
                }) => refused += 1,
                Err(other) => panic!("unexpected {other}"),
            }
        }
        // The legacy AAC slot plus 7 FourCCs fill the 8 audio slots.
        let kept = crate::CONFIG_MAX_SLOTS_PER_KIND;
        assert_eq!(refused, 10_000 - (kept as u64 - 1));
        assert_eq!(state.config().count(), kept + 1);
        assert_eq!(state.counters().config_refused, refused);
        assert_eq!(state.counters().messages_in, 10_002);
        // A stored slot may still be updated; the video kind has its own slots.
        state.accept(ex_audio_header(20_000, 1u32.to_be_bytes(), 80));
        state.accept(message(9, 0, vec![0x90, b'a', b'v', b'0', b'1', 1]));
        assert_eq!(state.config().count(), kept + 2);
    }

    #[test]
    fn oversized_headers_and_metadata_are_refused_and_nothing_changes() {
        let mut state = StreamState::default();
        state.accept(avc_header(0));
        let generation = state.config_generation();
        let huge = 16 * 1024 * 1024 - 1; // the largest RTMP message
        let mut header = vec![0x17, 0x00];
        header.resize(huge, 0);
        assert_eq!(
            state.ingest(message(9, 0, header)).err(),
            Some(ConfigRefusal::TooLarge { bytes: huge })
        );
        let (meta, _) = set_data_frame(0);
        let mut payload = meta.payload.to_vec();
        payload.resize(crate::CONFIG_MESSAGE_MAX_BYTES + 100, 0);
        assert!(matches!(
            state.ingest(message(18, 0, payload)),
            Err(ConfigRefusal::TooLarge { .. })
        ));
        assert_eq!(
            state.config().cloned().collect::<Vec<_>>(),
            vec![avc_header(0)]
        );
        assert_eq!(state.config_generation(), generation);
        assert_eq!(state.config_bytes(), avc_header(0).payload.len());
        assert_eq!(state.counters().config_refused, 2);
    }

    #[test]
    fn after_a_takeover_config_and_gop_are_stored_rebased() {
        let mut state = StreamState::default();
        state.accept(avc_header(3_600_000));
        state.accept(keyframe(3_600_000, 10));
        state.accept(inter(3_600_040, 10));
        state.take_over();
        let header = state.accept(avc_header(0)).message;
        assert_eq!(header.timestamp, 3_600_041);
        assert_eq!(state.accept(keyframe(0, 10)).message.timestamp, 3_600_041);
        state.accept(inter(40, 10));
        let config: Vec<u32> = state.config().map(|m| m.timestamp).collect();
        assert_eq!(config, vec![3_600_041]);
        let gop: Vec<u32> = state.gop().iter().map(|m| m.timestamp).collect();
        assert_eq!(gop, vec![3_600_041, 3_600_081]);
        assert_eq!(state.timestamp_offset(), 3_600_041);
    }

    #[test]
    fn take_over_forgets_config_and_gop_but_not_counters() {
        let mut state = StreamState::default();
        state.accept(set_data_frame(0).0);
        state.accept(avc_header(0));
        state.accept(keyframe(0, 10));
        state.take_over();
        assert_eq!(state.config().count(), 0);
        assert!(state.gop().is_empty());
        assert!(!state.has_video());
        assert_eq!(state.counters().messages_in, 3);
    }
}
