//! What a media frame is to a resumed publish: configuration, a keyframe, a frame that
//! depends on earlier ones, or one that stands alone.
//!
//! The edge's [`crate::retain`] buffer and the origin's [`crate::dedupe`] must agree on
//! where a publication may restart (a keyframe) and what a restart re-sends first (the
//! configuration in force), so both classify with this one function, on top of
//! [`longhaul_rtmp::media`]'s inspector. The rules follow the edge's relay queue:
//! configuration is never dropped, video is cut only up to a keyframe, audio frames decode
//! on their own.

use longhaul_rtmp::media::{self, DataKind, Frame};

/// RTMP message type ids of audio, video and AMF0/AMF3 data (RTMP spec 7.1).
const AUDIO: u8 = 8;
const VIDEO: u8 = 9;
const DATA_AMF3: u8 = 15;
const DATA_AMF0: u8 = 18;

/// What one media frame is, for retention and deduplication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameClass {
    /// Describes the stream and replaces the previous frame of its slot: a resume re-sends
    /// the last one of each slot before anything else.
    Config(ConfigSlot),
    /// A video keyframe: a group of pictures starts here, and so may a resume.
    Keyframe,
    /// A video frame that references earlier ones (inter frames), a sequence end, or a
    /// video payload the inspector cannot read: only decodable after its keyframe.
    Inter,
    /// An audio frame (or an unreadable audio payload): decodes on its own. In a stream
    /// that has video, audio goes with its video's group of pictures, as the relay queue
    /// drops it; in an audio-only stream every audio frame is a place to start.
    Audio,
    /// A data message that is not metadata (`onCuePoint`, `onTextData`), an Enhanced RTMP
    /// metadata or command frame, or a message of another type: not part of any picture,
    /// never held back after a gap (cue points matter to ad insertion).
    Event,
}

/// Which configuration a [`FrameClass::Config`] frame replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigSlot {
    /// `onMetaData` (with or without `@setDataFrame`).
    Metadata,
    /// A video sequence header of an Enhanced RTMP track (0 without multitrack).
    VideoHeader(u8),
    /// An audio sequence header of a track.
    AudioHeader(u8),
}

impl FrameClass {
    /// Classifies an RTMP message by its type id and payload.
    pub fn of(kind: u8, payload: &[u8]) -> Self {
        match kind {
            VIDEO => match media::inspect_video(payload) {
                Some(info) => match info.frame {
                    Frame::SequenceHeader => {
                        FrameClass::Config(ConfigSlot::VideoHeader(info.track))
                    }
                    Frame::Keyframe => FrameClass::Keyframe,
                    Frame::Coded | Frame::SequenceEnd => FrameClass::Inter,
                    Frame::Other => FrameClass::Event,
                },
                None => FrameClass::Inter,
            },
            AUDIO => match media::inspect_audio(payload) {
                Some(info) if info.frame == Frame::SequenceHeader => {
                    FrameClass::Config(ConfigSlot::AudioHeader(info.track))
                }
                _ => FrameClass::Audio,
            },
            DATA_AMF0 => match media::inspect_data(payload) {
                DataKind::Metadata { .. } => FrameClass::Config(ConfigSlot::Metadata),
                DataKind::Other => FrameClass::Event,
            },
            DATA_AMF3 => match payload.split_first() {
                // An AMF3 data message is an AMF0 body after one format byte (0).
                Some((0, rest))
                    if matches!(media::inspect_data(rest), DataKind::Metadata { .. }) =>
                {
                    FrameClass::Config(ConfigSlot::Metadata)
                }
                _ => FrameClass::Event,
            },
            _ => FrameClass::Event,
        }
    }

    /// Whether the frame is video (configuration included): a stream that has sent one
    /// restarts only at keyframes.
    pub fn is_video(self) -> bool {
        matches!(
            self,
            FrameClass::Keyframe
                | FrameClass::Inter
                | FrameClass::Config(ConfigSlot::VideoHeader(_))
        )
    }

    /// Whether a publication may (re)start at this frame: a keyframe, or in a stream
    /// without video so far, an audio frame.
    pub fn starts_decoding(self, seen_video: bool) -> bool {
        match self {
            FrameClass::Keyframe => true,
            FrameClass::Audio => !seen_video,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Payloads and the class each gets.
    #[test]
    fn classes_follow_the_media_inspector() {
        let set_data_frame: Vec<u8> = [
            &[2u8, 0, 13][..],
            b"@setDataFrame",
            &[2, 0, 10],
            b"onMetaData",
            &[8, 0, 0, 0, 0],
        ]
        .concat();
        let cue: Vec<u8> = [&[2u8, 0, 10][..], b"onCuePoint"].concat();
        let amf3_meta: Vec<u8> = [&[0u8][..], &set_data_frame].concat();
        let cases: &[(u8, &[u8], FrameClass)] = &[
            (
                VIDEO,
                &[0x17, 0, 0, 0, 0, 1],
                FrameClass::Config(ConfigSlot::VideoHeader(0)),
            ),
            (VIDEO, &[0x17, 1, 0, 0, 0, 0x65], FrameClass::Keyframe),
            (VIDEO, &[0x27, 1, 0, 0, 0, 0x41], FrameClass::Inter),
            (VIDEO, &[0x17, 2, 0, 0, 0], FrameClass::Inter),
            (VIDEO, &[], FrameClass::Inter),
            (VIDEO, &[0x57, 0], FrameClass::Event),
            // E-RTMP HEVC keyframe: 0x80 | (1 << 4) | CodedFrames, then "hvc1".
            (VIDEO, &[0x91, b'h', b'v', b'c', b'1'], FrameClass::Keyframe),
            (
                AUDIO,
                &[0xaf, 0, 0x12, 0x10],
                FrameClass::Config(ConfigSlot::AudioHeader(0)),
            ),
            (AUDIO, &[0xaf, 1, 0x21], FrameClass::Audio),
            (AUDIO, &[], FrameClass::Audio),
            (
                DATA_AMF0,
                &set_data_frame,
                FrameClass::Config(ConfigSlot::Metadata),
            ),
            (DATA_AMF0, &cue, FrameClass::Event),
            (DATA_AMF0, &[], FrameClass::Event),
            (
                DATA_AMF3,
                &amf3_meta,
                FrameClass::Config(ConfigSlot::Metadata),
            ),
            (DATA_AMF3, &[], FrameClass::Event),
            (20, b"command", FrameClass::Event),
        ];
        for (kind, payload, class) in cases {
            assert_eq!(
                FrameClass::of(*kind, payload),
                *class,
                "kind {kind} {payload:?}"
            );
        }
    }

    #[test]
    fn restarts_are_keyframes_or_audio_without_video() {
        assert!(FrameClass::Keyframe.starts_decoding(true));
        assert!(FrameClass::Audio.starts_decoding(false));
        assert!(!FrameClass::Audio.starts_decoding(true));
        assert!(!FrameClass::Inter.starts_decoding(false));
        assert!(!FrameClass::Event.starts_decoding(false));
        assert!(!FrameClass::Config(ConfigSlot::Metadata).starts_decoding(false));
        assert!(FrameClass::Config(ConfigSlot::VideoHeader(1)).is_video());
        assert!(!FrameClass::Config(ConfigSlot::AudioHeader(0)).is_video());
    }
}
