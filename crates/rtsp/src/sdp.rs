//! What an ANNOUNCE says the encoder will send: its tracks, read from the SDP body.
//!
//! `sdp-types` parses the text; this module picks what a publish needs from each `m=`
//! line: the media kind, the RTP payload type, the `a=rtpmap` encoding, clock rate and
//! channels, the `a=fmtp` parameters (codec configuration: SPS/PPS, AAC config) and the
//! `a=control` the SETUP for the track will name. Which codecs are taken is the
//! depacketisers' decision ([`crate::depacketize::Track::new`]), not this module's.
//!
//! A publish carries at most one video and one audio track, as an RTMP publish does:
//! the stream is served on as one FLV stream. An SDP with more is refused with a reason,
//! rather than some of its tracks being silently dropped.

use thiserror::Error;

/// Tracks an SDP may describe, all kinds together. Ours take at most one video and one
/// audio; the bound keeps a hostile body from making us walk thousands of `m=` lines
/// before refusing it.
pub const MAX_MEDIA_LINES: usize = 8;

/// One `m=` line of an ANNOUNCE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnouncedTrack {
    /// `video` or `audio`.
    pub media: String,
    /// The RTP payload type the track's packets carry (the `m=` line's first format).
    pub payload_type: u8,
    /// `a=rtpmap` encoding name as written (`H264`, `MPEG4-GENERIC`, `opus`, ...).
    pub encoding: String,
    pub clock_rate: u32,
    /// `a=rtpmap`'s encoding parameters for audio: the channel count.
    pub channels: Option<u16>,
    /// `a=fmtp` for the payload type, without the payload type.
    pub fmtp: Option<String>,
    /// `a=control`: what the track's SETUP names (relative to the ANNOUNCE's URL, or
    /// absolute).
    pub control: String,
}

/// Why an SDP body cannot be published, in words for the encoder's log.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("the SDP body does not parse: {0}")]
    Syntax(String),
    #[error("the SDP describes no audio or video track")]
    NoTracks,
    #[error("the SDP has {0} media lines; at most {MAX_MEDIA_LINES} are read")]
    TooManyMedia(usize),
    #[error("the SDP has {count} {media} tracks; a publish takes one video and one audio track")]
    TooManyOfKind { media: String, count: usize },
    #[error("{media} track {index}: {what}")]
    Track {
        media: String,
        index: usize,
        what: String,
    },
}

/// The audio and video tracks of an ANNOUNCE's SDP body, in the order of its `m=`
/// lines. Other media (`application`, `text`) are not ours to carry and are skipped.
pub fn announced_tracks(body: &[u8]) -> Result<Vec<AnnouncedTrack>, SdpError> {
    let session = sdp_types::Session::parse(body).map_err(|e| SdpError::Syntax(e.to_string()))?;
    if session.medias.len() > MAX_MEDIA_LINES {
        return Err(SdpError::TooManyMedia(session.medias.len()));
    }
    let mut tracks = Vec::new();
    for (index, media) in session.medias.iter().enumerate() {
        if media.media != "video" && media.media != "audio" {
            continue;
        }
        let track = announced_track(media, index).map_err(|what| SdpError::Track {
            media: media.media.clone(),
            index,
            what,
        })?;
        tracks.push(track);
    }
    for kind in ["video", "audio"] {
        let count = tracks.iter().filter(|t| t.media == kind).count();
        if count > 1 {
            return Err(SdpError::TooManyOfKind {
                media: kind.into(),
                count,
            });
        }
    }
    if tracks.is_empty() {
        return Err(SdpError::NoTracks);
    }
    Ok(tracks)
}

fn announced_track(media: &sdp_types::Media, index: usize) -> Result<AnnouncedTrack, String> {
    if !media.proto.to_ascii_uppercase().starts_with("RTP/AVP") {
        return Err(format!("transport {} is not RTP/AVP", media.proto));
    }
    let first = media
        .fmt
        .split_ascii_whitespace()
        .next()
        .ok_or("no payload format on the m= line")?;
    let payload_type: u8 = first
        .parse()
        .ok()
        .filter(|pt| *pt < 128)
        .ok_or_else(|| format!("payload type {first:?} is not 0-127"))?;
    let rtpmap = attribute_for(media, "rtpmap", payload_type);
    let (encoding, clock_rate, channels) = match rtpmap {
        Some(map) => parse_rtpmap(map)?,
        None => static_payload_type(payload_type)
            .ok_or_else(|| format!("payload type {payload_type} has no a=rtpmap"))?,
    };
    let fmtp = attribute_for(media, "fmtp", payload_type).map(str::to_owned);
    // RFC 2326 C.1.1: without a control attribute the track is the session URL itself.
    let control = media
        .get_first_attribute_value("control")
        .flatten()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            if index == 0 {
                "*".to_owned()
            } else {
                format!("trackID={index}")
            }
        });
    Ok(AnnouncedTrack {
        media: media.media.clone(),
        payload_type,
        encoding,
        clock_rate,
        channels,
        fmtp,
        control,
    })
}

/// The value of `a={name}:{payload_type} ...` without the payload type.
fn attribute_for<'a>(media: &'a sdp_types::Media, name: &str, payload_type: u8) -> Option<&'a str> {
    media
        .attributes
        .iter()
        .filter(|a| a.attribute == name)
        .filter_map(|a| a.value.as_deref())
        .find_map(|value| {
            let (pt, rest) = value.trim().split_once(|c: char| c.is_ascii_whitespace())?;
            (pt.parse::<u8>().ok() == Some(payload_type)).then_some(rest.trim())
        })
}

/// `H264/90000`, `MPEG4-GENERIC/48000/2`.
fn parse_rtpmap(map: &str) -> Result<(String, u32, Option<u16>), String> {
    let mut parts = map.split('/');
    let encoding = parts.next().unwrap_or_default().trim();
    if encoding.is_empty() {
        return Err(format!("a=rtpmap {map:?} names no encoding"));
    }
    let clock_rate = parts
        .next()
        .and_then(|c| c.trim().parse::<u32>().ok())
        .filter(|c| *c > 0)
        .ok_or_else(|| format!("a=rtpmap {map:?} has no clock rate"))?;
    let channels = match parts.next() {
        Some(c) => Some(
            c.trim()
                .parse::<u16>()
                .map_err(|_| format!("a=rtpmap {map:?}: channels {c:?} is not a number"))?,
        ),
        None => None,
    };
    Ok((encoding.to_owned(), clock_rate, channels))
}

/// The static payload types (RFC 3551) a device might send without an `a=rtpmap`. None of
/// them is a codec we carry; they are named so the refusal says which codec it was.
fn static_payload_type(payload_type: u8) -> Option<(String, u32, Option<u16>)> {
    let (name, rate, channels) = match payload_type {
        0 => ("PCMU", 8000, Some(1)),
        8 => ("PCMA", 8000, Some(1)),
        14 => ("MPA", 90000, None),
        26 => ("JPEG", 90000, None),
        32 => ("MPV", 90000, None),
        33 => ("MP2T", 90000, None),
        _ => return None,
    };
    Some((name.to_owned(), rate, channels))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What ffmpeg 7 sends in its ANNOUNCE for `-c:v libx264 -c:a aac -f rtsp`.
    const FFMPEG_ANNOUNCE: &str = "v=0\r\n\
o=- 0 0 IN IP4 127.0.0.1\r\n\
s=No Name\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
a=tool:libavformat 61.7.100\r\n\
m=video 0 RTP/AVP 96\r\n\
b=AS:200\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QADKzZQUH7ARAAAAMAEAAAAwMg8UKZYA==,aOvjyyLA; profile-level-id=64000C\r\n\
a=control:streamid=0\r\n\
m=audio 0 RTP/AVP 97\r\n\
b=AS:128\r\n\
a=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=119056E500\r\n\
a=control:streamid=1\r\n";

    #[test]
    fn reads_ffmpegs_announce() {
        let tracks = announced_tracks(FFMPEG_ANNOUNCE.as_bytes()).unwrap();
        assert_eq!(tracks.len(), 2);
        let video = &tracks[0];
        assert_eq!(video.media, "video");
        assert_eq!(video.payload_type, 96);
        assert_eq!(
            (video.encoding.as_str(), video.clock_rate),
            ("H264", 90_000)
        );
        assert_eq!(video.channels, None);
        assert!(video
            .fmtp
            .as_deref()
            .unwrap()
            .starts_with("packetization-mode=1;"));
        assert_eq!(video.control, "streamid=0");
        let audio = &tracks[1];
        assert_eq!(
            (audio.encoding.as_str(), audio.clock_rate, audio.channels),
            ("MPEG4-GENERIC", 48_000, Some(2))
        );
        assert!(audio
            .fmtp
            .as_deref()
            .unwrap()
            .ends_with("config=119056E500"));
        assert_eq!(audio.control, "streamid=1");
    }

    #[test]
    fn refuses_what_a_publish_cannot_carry() {
        let two_videos = format!(
            "{FFMPEG_ANNOUNCE}m=video 0 RTP/AVP 98\r\na=rtpmap:98 H264/90000\r\na=control:streamid=2\r\n"
        );
        assert_eq!(
            announced_tracks(two_videos.as_bytes()),
            Err(SdpError::TooManyOfKind {
                media: "video".into(),
                count: 2
            })
        );
        let no_media = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n";
        assert_eq!(
            announced_tracks(no_media.as_bytes()),
            Err(SdpError::NoTracks)
        );
        let no_rtpmap =
            "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n";
        let err = announced_tracks(no_rtpmap.as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "video track 0: payload type 96 has no a=rtpmap"
        );
        assert!(matches!(
            announced_tracks(b"\xff\xfe"),
            Err(SdpError::Syntax(_))
        ));
        let many: String = (0..9)
            .map(|i| format!("m=audio 0 RTP/AVP {i}\r\n"))
            .collect::<String>();
        let many = format!("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n{many}");
        assert_eq!(
            announced_tracks(many.as_bytes()),
            Err(SdpError::TooManyMedia(9))
        );
    }

    #[test]
    fn static_payload_types_are_named_and_controls_defaulted() {
        let pcmu = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
        let tracks = announced_tracks(pcmu.as_bytes()).unwrap();
        assert_eq!(tracks[0].encoding, "PCMU");
        assert_eq!(tracks[0].control, "*");
    }
}
