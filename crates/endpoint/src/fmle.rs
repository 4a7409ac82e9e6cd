//! Adobe Flash Media Live Encoder (FMLE) profile XML, the settings file FMLE, Wirecast
//! and other encoders import, so an operator need not copy URLs by hand.
//!
//! Layout (REFERENCE.md section 8): root `flashmedialiveencoder_profile`; `preset`,
//! `capture`, `encode/video` with `datarate` and `outputsize` as `;`-separated lists (one
//! item per rendition, highest first as given), `encode/audio`, and `output/rtmp` with
//! `url`, `backup_url` and `stream` = `{entryId}_%i` (FMLE numbers renditions from 1).
//! FMLE cannot do RTMPS, so the plain RTMP URLs are exported; it has one primary and one
//! backup URL, so they are the data centres' (an operator near a region pastes that
//! region's URLs instead). Every value is XML-escaped.

use serde::{Deserialize, Serialize};

use crate::endpoints::Endpoints;

/// One rung of a bitrate ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenditionProfile {
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
    /// Video bitrate in kbit/s.
    pub video_kbps: u32,
    /// Audio bitrate in kbit/s.
    pub audio_kbps: u32,
}

/// A common three-rung 16:9 ladder for live ingest: 720p, 480p and 360p at bitrates
/// that suit H.264 Main at 30 fps, with 128 kbit/s audio.
pub const DEFAULT_LADDER: [RenditionProfile; 3] = [
    RenditionProfile {
        width: 1280,
        height: 720,
        video_kbps: 2500,
        audio_kbps: 128,
    },
    RenditionProfile {
        width: 854,
        height: 480,
        video_kbps: 1200,
        audio_kbps: 128,
    },
    RenditionProfile {
        width: 640,
        height: 360,
        video_kbps: 700,
        audio_kbps: 128,
    },
];

/// Keyframe interval written into the profile: 2 s keeps HLS segments of 2, 4 or 6 s
/// aligned on keyframes.
const KEYFRAME_FREQUENCY: &str = "2 Seconds";
/// Capture frame rate written into the profile.
const FRAME_RATE: &str = "30.00";

/// The FMLE profile XML for `entry_id` with `endpoints` and the ladder `renditions`
/// (rendition `i` of the ladder publishes as `{entryId}_{i}`). An empty ladder means
/// [`DEFAULT_LADDER`]. FMLE has a single audio encoder, so the first rendition's audio
/// bitrate is used.
pub fn fmle_profile_xml(
    entry_id: &str,
    endpoints: &Endpoints,
    renditions: &[RenditionProfile],
) -> String {
    let ladder = if renditions.is_empty() {
        &DEFAULT_LADDER[..]
    } else {
        renditions
    };
    let top = ladder[0];
    let capture = ladder
        .iter()
        .max_by_key(|r| u64::from(r.width) * u64::from(r.height))
        .copied()
        .unwrap_or(top);
    let list = |item: &dyn Fn(&RenditionProfile) -> String| {
        ladder.iter().map(item).collect::<Vec<_>>().join(";")
    };
    let datarates = list(&|r| r.video_kbps.to_string());
    let sizes = list(&|r| format!("{}x{}", r.width, r.height));

    let e = xml_escape;
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<flashmedialiveencoder_profile>
  <preset>
    <name>{name}</name>
    <description>{description}</description>
  </preset>
  <capture>
    <video>
      <device></device>
      <crossbar_input>0</crossbar_input>
      <frame_rate>{FRAME_RATE}</frame_rate>
      <size>
        <width>{cap_w}</width>
        <height>{cap_h}</height>
      </size>
    </video>
    <audio>
      <device></device>
      <crossbar_input>0</crossbar_input>
      <sample_rate>44100</sample_rate>
      <channels>2</channels>
      <input_volume>75</input_volume>
    </audio>
  </capture>
  <encode>
    <video>
      <format>H.264</format>
      <datarate>{datarates}</datarate>
      <outputsize>{sizes}</outputsize>
      <advanced>
        <profile>Main</profile>
        <level>3.1</level>
        <keyframe_frequency>{KEYFRAME_FREQUENCY}</keyframe_frequency>
      </advanced>
    </video>
    <audio>
      <format>AAC</format>
      <datarate>{audio}</datarate>
    </audio>
  </encode>
  <output>
    <rtmp>
      <url>{url}</url>
      <backup_url>{backup_url}</backup_url>
      <stream>{stream}</stream>
    </rtmp>
  </output>
</flashmedialiveencoder_profile>
"#,
        name = e(&format!("longhaul {entry_id}")),
        description = e(&format!(
            "Live entry {entry_id}: {} renditions, primary and backup",
            ladder.len()
        )),
        cap_w = capture.width,
        cap_h = capture.height,
        datarates = e(&datarates),
        sizes = e(&sizes),
        audio = top.audio_kbps,
        url = e(&endpoints.origins.primary_rtmp),
        backup_url = e(&endpoints.origins.backup_rtmp),
        stream = e(&format!("{entry_id}_%i")),
    )
}

/// Escapes the five XML special characters.
pub(crate) fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_all_five() {
        assert_eq!(
            xml_escape(r#"a&b<c>d"e'f"#),
            "a&amp;b&lt;c&gt;d&quot;e&apos;f"
        );
    }
}
