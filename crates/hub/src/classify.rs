//! What one published message is to the hub: stream configuration (metadata, sequence
//! headers), the start of a GOP, or just another message, using the RTMP crate's
//! media inspector.

use std::fmt;

use bytes::Bytes;
use longhaul_rtmp::media::{self, Codec, DataKind, Frame};
use longhaul_rtmp::message::type_id;
use longhaul_rtmp::RtmpMessage;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MediaKind {
    Audio,
    Video,
}

impl fmt::Display for MediaKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        })
    }
}

/// Which decoder configuration a sequence header belongs to. A stream keeps one
/// header per slot; a new header for the same slot replaces the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct HeaderSlot {
    pub kind: MediaKind,
    pub codec: Codec,
    pub track: u8,
}

/// The hub's view of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// Stream metadata; the message has already had its `@setDataFrame` wrapper removed.
    Metadata,
    /// Decoder configuration for `slot`.
    SequenceHeader(HeaderSlot),
    /// A video keyframe: a GOP starts here.
    Keyframe { codec: Codec },
    /// Any other video message (inter frame, sequence end, command frame, unparsable).
    Video { codec: Option<Codec> },
    /// An audio frame (`codec` only for coded frames).
    Audio { codec: Option<Codec> },
    /// Any other message (non-metadata data messages, aggregates, ...).
    Other,
}

impl Class {
    /// Configuration a new or skipped player must have before media: kept apart from
    /// the GOP and replayed.
    pub fn is_config(self) -> bool {
        matches!(self, Class::Metadata | Class::SequenceHeader(_))
    }
}

/// Classifies `message`, returning the message to store and forward (identical to the
/// input except for metadata, whose `@setDataFrame` wrapper is sliced off: a refcount
/// bump, no copy).
pub(crate) fn classify(message: RtmpMessage) -> (RtmpMessage, Class) {
    match message.type_id {
        type_id::VIDEO => {
            let class = match media::inspect_video(&message.payload) {
                Some(info) => match info.frame {
                    Frame::SequenceHeader => Class::SequenceHeader(HeaderSlot {
                        kind: MediaKind::Video,
                        codec: info.codec,
                        track: info.track,
                    }),
                    Frame::Keyframe => Class::Keyframe { codec: info.codec },
                    Frame::Coded => Class::Video {
                        codec: Some(info.codec),
                    },
                    // Command frames carry no real codec; sequence ends say nothing new.
                    Frame::SequenceEnd | Frame::Other => Class::Video { codec: None },
                },
                None => Class::Video { codec: None },
            };
            (message, class)
        }
        type_id::AUDIO => {
            let class = match media::inspect_audio(&message.payload) {
                Some(info) if info.frame == Frame::SequenceHeader => {
                    Class::SequenceHeader(HeaderSlot {
                        kind: MediaKind::Audio,
                        codec: info.codec,
                        track: info.track,
                    })
                }
                Some(info) => Class::Audio {
                    codec: (info.frame == Frame::Coded).then_some(info.codec),
                },
                None => Class::Audio { codec: None },
            };
            (message, class)
        }
        // `inspect_data` reads AMF0; AMF3 data messages are forwarded as they are.
        type_id::DATA_AMF0 => match media::inspect_data(&message.payload) {
            DataKind::Metadata { body_offset } if body_offset <= message.payload.len() => {
                let payload: Bytes = message.payload.slice(body_offset..);
                (RtmpMessage { payload, ..message }, Class::Metadata)
            }
            _ => (message, Class::Other),
        },
        _ => (message, Class::Other),
    }
}
