//! A small inspector for audio and video tag bodies: only what a relay needs.
//!
//! A relay forwards media untouched; it only has to know which messages are sequence
//! headers (to hand them to new players and to replay after a failover), which video
//! frames are keyframes (where a new player may start), and which codec and track a
//! message belongs to. Legacy FLV (H.264, AAC, ...) and Enhanced RTMP (FourCC codecs,
//! multitrack) are both understood; anything unknown is passed through as `Other`.

/// Codec of a tag: a legacy FLV codec id or an Enhanced RTMP FourCC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Legacy FLV video CodecID (7 = AVC) or audio SoundFormat (10 = AAC, 2 = MP3, ...).
    Legacy(u8),
    /// Enhanced RTMP FourCC (`avc1`, `hvc1`, `av01`, `vp09`, `mp4a`, `Opus`, ...).
    FourCc([u8; 4]),
}

/// What a tag is, for a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Decoder configuration (AVC/HEVC/AV1 sequence start, AAC AudioSpecificConfig, ...).
    SequenceHeader,
    /// A video keyframe (coded frame).
    Keyframe,
    /// Any other coded frame (inter video frame, audio frame).
    Coded,
    /// End of sequence.
    SequenceEnd,
    /// Metadata, command frames and anything else.
    Other,
}

/// The result of inspecting one audio or video payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagInfo {
    pub codec: Codec,
    /// Enhanced RTMP track id (0 when not multitrack).
    pub track: u8,
    pub frame: Frame,
}

/// Inspects a video message payload. `None` for an empty or truncated payload.
pub fn inspect_video(payload: &[u8]) -> Option<TagInfo> {
    let _ = payload;
    unimplemented!()
}

/// Inspects an audio message payload. `None` for an empty or truncated payload.
pub fn inspect_audio(payload: &[u8]) -> Option<TagInfo> {
    let _ = payload;
    unimplemented!()
}

/// What a data message (type 18) carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataKind {
    /// Stream metadata. `body_offset` is where the `onMetaData` name starts, so
    /// `payload.slice(body_offset..)` is the metadata as players expect it: the
    /// `@setDataFrame` wrapper removed, the rest byte for byte as sent.
    Metadata { body_offset: usize },
    /// Any other data message (`onTextData`, `onCuePoint`, ...), forwarded as is.
    Other,
}

/// Inspects a data message (AMF0) payload.
pub fn inspect_data(payload: &[u8]) -> DataKind {
    let _ = payload;
    unimplemented!()
}
