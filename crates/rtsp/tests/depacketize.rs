//! The depacketisers on RTP captured from ffmpeg (tests/fixtures, see its README.md):
//! frame counts, keyframes, decoder configurations and tag layouts checked against what
//! ffmpeg encoded, and (when ffprobe is installed) the tags written to an FLV file that
//! ffprobe must read back with the right codec, size and frame count.

use bytes::Bytes;
use longhaul_rtmp::flv::FlvWriter;
use longhaul_rtmp::media::{inspect_audio, inspect_video, Codec, Frame};
use longhaul_rtmp::RtmpMessage;
use longhaul_rtsp::depacketize::{Kind, Track, TrackFrame};
use longhaul_rtsp::rtp::{sender_reports, RtpPacket};
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The datagrams of a `.rtp`/`.rtcp` fixture: each a 2-byte big-endian length and bytes.
fn datagrams(name: &str) -> Vec<Bytes> {
    let data = std::fs::read(fixture_path(name)).expect("fixture");
    let mut rest = &data[..];
    let mut out = Vec::new();
    while let [high, low, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*high, *low]));
        out.push(Bytes::copy_from_slice(&tail[..len]));
        rest = &tail[len..];
    }
    out
}

/// The rtpmap (encoding, clock rate, channels) and fmtp of the fixture's one media.
fn sdp(name: &str) -> (String, u32, Option<u16>, Option<String>) {
    let text = std::fs::read_to_string(fixture_path(name)).expect("fixture");
    let rtpmap = text
        .lines()
        .find_map(|l| l.strip_prefix("a=rtpmap:96 "))
        .expect("rtpmap");
    let mut parts = rtpmap.trim().split('/');
    let encoding = parts.next().unwrap().to_owned();
    let clock_rate = parts.next().unwrap().parse().unwrap();
    let channels = parts.next().map(|c| c.parse().unwrap());
    let fmtp = text
        .lines()
        .find_map(|l| l.strip_prefix("a=fmtp:96 "))
        .map(|f| f.trim().to_owned());
    (encoding, clock_rate, channels, fmtp)
}

/// The track of fixture `name` and every frame it produces from its packets.
fn depacketize(name: &str) -> (Track, Vec<TrackFrame>) {
    let (encoding, clock_rate, channels, fmtp) = sdp(&format!("{name}.sdp"));
    let mut track = Track::new(&encoding, clock_rate, channels, fmtp.as_deref()).unwrap();
    let mut out = Vec::new();
    let mut previous_sequence: Option<u16> = None;
    for datagram in datagrams(&format!("{name}.rtp")) {
        let packet = RtpPacket::parse(datagram).unwrap();
        if let Some(previous) = previous_sequence {
            assert_eq!(packet.sequence, previous.wrapping_add(1), "{name}: a gap");
        }
        previous_sequence = Some(packet.sequence);
        track.push(&packet, &mut out).unwrap();
    }
    assert_eq!(track.dropped_frames(), 0, "{name}");
    (track, out)
}

/// Splits an AVCC/HVCC frame (4-byte lengths) into its NAL units, checking the lengths
/// add up to the body.
fn length_prefixed(mut data: &[u8]) -> Vec<&[u8]> {
    let mut nal_units = Vec::new();
    while !data.is_empty() {
        let len = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
        assert!(len > 0 && 4 + len <= data.len(), "lengths add up");
        nal_units.push(&data[4..4 + len]);
        data = &data[4 + len..];
    }
    nal_units
}

fn base64(text: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        bits = (bits << 6) | alphabet.iter().position(|&a| a == c).unwrap() as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

/// The frame kinds, checking each body is recognised by the relay's inspector as
/// `codec` and that kind.
fn classify(kind: Kind, codec: Codec, frames: &[TrackFrame]) -> Vec<Frame> {
    frames
        .iter()
        .map(|f| {
            let info = match kind {
                Kind::Video => inspect_video(&f.body),
                Kind::Audio => inspect_audio(&f.body),
            }
            .expect("a recognised tag");
            assert_eq!((info.codec, info.frame), (codec, f.frame));
            f.frame
        })
        .collect()
}

/// Checks an H.264 fixture of 2 s at 25 fps, GOP 25: one sequence header, 50 frames,
/// keyframes at 0 and 25, timestamps 3600 apart.
fn check_h264(name: &str) -> Vec<TrackFrame> {
    let (track, out) = depacketize(name);
    assert_eq!((track.kind(), track.codec()), (Kind::Video, "h264"));
    let kinds = classify(Kind::Video, Codec::Legacy(7), &out);
    assert_eq!(kinds[0], Frame::SequenceHeader);
    let frames: Vec<&TrackFrame> = out[1..].iter().collect();
    assert_eq!(frames.len(), 50, "{name}: ffmpeg encoded 50 frames");
    assert!(frames.iter().all(|f| f.frame != Frame::SequenceHeader));
    let keyframes: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| f.frame == Frame::Keyframe)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keyframes, [0, 25], "{name}");
    for pair in frames.windows(2) {
        assert_eq!(
            pair[1].rtp_timestamp.wrapping_sub(pair[0].rtp_timestamp),
            3600
        );
    }
    for (i, frame) in frames.iter().enumerate() {
        let nal_units = length_prefixed(&frame.body[5..]);
        let types: Vec<u8> = nal_units.iter().map(|n| n[0] & 0x1f).collect();
        // No SPS, PPS or AUD in frames; an IDR exactly in keyframes.
        assert!(types.iter().all(|t| ![7, 8, 9].contains(t)), "{types:?}");
        assert_eq!(types.contains(&5), i == 0 || i == 25, "{i}: {types:?}");
    }
    out
}

/// The SPS and PPS of an AVCDecoderConfigurationRecord.
fn avc_parameter_sets(record: &[u8]) -> (Vec<u8>, Vec<u8>) {
    assert_eq!((record[0], record[4], record[5]), (1, 0xff, 0xe1));
    let sps_len = usize::from(u16::from_be_bytes([record[6], record[7]]));
    let sps = record[8..8 + sps_len].to_vec();
    let rest = &record[8 + sps_len..];
    assert_eq!(rest[0], 1, "one PPS");
    let pps_len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
    let pps = rest[3..3 + pps_len].to_vec();
    // Then, for High profile, the 4-byte chroma/bit depth extension.
    assert!(rest.len() == 3 + pps_len || rest.len() == 7 + pps_len);
    assert_eq!(&record[1..4], &sps[1..4], "profile, compatibility, level");
    (sps, pps)
}

#[test]
fn h264_with_sprop_parameter_sets() {
    let out = check_h264("h264-sprop");
    let (_, _, _, fmtp) = sdp("h264-sprop.sdp");
    let fmtp = fmtp.unwrap();
    let sets = fmtp
        .split(';')
        .find_map(|p| p.trim().strip_prefix("sprop-parameter-sets="))
        .unwrap();
    let (sprop_sps, sprop_pps) = sets.split_once(',').unwrap();
    let (sps, pps) = avc_parameter_sets(&out[0].body[5..]);
    assert_eq!(sps, base64(sprop_sps));
    assert_eq!(pps, base64(sprop_pps));
    assert_eq!(&out[0].body[..5], &[0x17, 0, 0, 0, 0]);
    flv_probe("h264-sprop", &out, &[]);
}

#[test]
fn h264_with_in_band_parameter_sets_stap_a_and_fu_a() {
    // This capture has no sprop-parameter-sets: SPS, PPS and SEI come in a STAP-A before
    // each IDR, which ffmpeg splits into FU-A fragments.
    let (_, _, _, fmtp) = sdp("h264-inband.sdp");
    assert!(!fmtp.unwrap().contains("sprop"));
    let out = check_h264("h264-inband");
    let (sps, pps) = avc_parameter_sets(&out[0].body[5..]);
    assert_eq!((sps[0] & 0x1f, pps[0] & 0x1f), (7, 8));
    // The first frame keeps the SEI (x264's version string) before the IDR.
    let nal_units = length_prefixed(&out[1].body[5..]);
    assert_eq!(nal_units[0][0] & 0x1f, 6);
    flv_probe("h264-inband", &out, &[]);
}

/// Checks an AAC fixture: one sequence header (the fmtp config), then `count` AUs, 1024
/// apart.
fn check_aac(name: &str, count: usize) -> Vec<TrackFrame> {
    let (track, out) = depacketize(name);
    assert_eq!((track.kind(), track.codec()), (Kind::Audio, "aac"));
    let kinds = classify(Kind::Audio, Codec::Legacy(10), &out);
    assert_eq!(kinds[0], Frame::SequenceHeader);
    assert!(kinds[1..].iter().all(|k| *k == Frame::Coded));
    let (_, _, _, fmtp) = sdp(&format!("{name}.sdp"));
    let config = fmtp
        .unwrap()
        .split(';')
        .find_map(|p| p.trim().strip_prefix("config=").map(str::to_owned))
        .unwrap();
    let config: Vec<u8> = (0..config.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&config[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(&out[0].body[2..], &config[..]);
    let frames = &out[1..];
    assert_eq!(frames.len(), count, "{name}");
    for pair in frames.windows(2) {
        assert_eq!(
            pair[1].rtp_timestamp.wrapping_sub(pair[0].rtp_timestamp),
            1024
        );
    }
    out
}

#[test]
fn aac_several_access_units_per_packet() {
    // ffmpeg encodes 95 AUs for 2 s (93.75 of 1024 samples at 48 kHz, rounded up, and
    // the encoder's flush: `ffprobe -count_frames` on the same command's ADTS output says
    // 95), but its RTP muxer never sends the last 5 it holds for aggregation at the end:
    // 90 AU headers in 13 packets, 6 or 7 AUs each.
    let out = check_aac("aac", 90);
    assert_eq!(datagrams("aac.rtp").len(), 13);
    flv_probe("aac", &out, &[]);
}

#[test]
fn aac_fragmented_access_units() {
    // All 95 AUs ffmpeg encoded (see above): without aggregation nothing is held back.
    let out = check_aac("aac-fragmented", 95);
    // Packets of 200 bytes at 256 kbit/s: every AU (about 680 bytes) came in fragments,
    // and each is whole again.
    let packets = datagrams("aac-fragmented.rtp").len();
    assert!(packets > 3 * (out.len() - 1), "{packets} packets");
    assert!(out[1..].iter().all(|f| f.body.len() > 200));
    flv_probe("aac-fragmented", &out, &[]);
}

#[test]
fn rtcp_sender_reports_of_the_captures() {
    for name in ["h264-sprop", "aac"] {
        let rtcp = datagrams(&format!("{name}.rtcp"));
        let rtp = RtpPacket::parse(datagrams(&format!("{name}.rtp"))[0].clone()).unwrap();
        let reports = sender_reports(&rtcp[0]).unwrap();
        assert_eq!(reports.len(), 1, "{name}");
        assert_eq!(reports[0].ssrc, rtp.ssrc);
        // ffmpeg sends its report during the 2 s capture.
        let since_first = reports[0].rtp_timestamp.wrapping_sub(rtp.timestamp);
        assert!(since_first < 2 * 90_000, "{name}: {since_first}");
        assert!(reports[0].ntp_timestamp >> 32 > 3_900_000_000, "after 2023");
    }
}

/// Writes the frames to an FLV file (timestamps in ms from the first) and checks with
/// ffprobe that it reads back as the expected stream; skipped without ffprobe.
/// `expect` holds extra `key=value` lines that ffprobe's `-show_streams` must print.
fn flv_probe(name: &str, frames: &[TrackFrame], expect: &[&str]) {
    if Command::new("ffprobe").arg("-version").output().is_err() {
        eprintln!("ffprobe not installed: {name} not checked with ffprobe");
        return;
    }
    let video = frames
        .first()
        .is_some_and(|f| inspect_video(&f.body).is_some() && f.body[0] & 0x0f == 7);
    let clock = if video { 90_000 } else { 48_000 };
    let first = frames[0].rtp_timestamp;
    let mut writer = FlvWriter::new();
    let mut file = writer.header().to_vec();
    for f in frames {
        let message = RtmpMessage {
            timestamp: (u64::from(f.rtp_timestamp.wrapping_sub(first)) * 1000 / clock) as u32,
            type_id: if video { 9 } else { 8 },
            stream_id: 1,
            payload: f.body.clone(),
        };
        for part in writer.write(&message).unwrap() {
            file.extend_from_slice(&part);
        }
    }
    file.extend_from_slice(&writer.finish());
    let path =
        std::env::temp_dir().join(format!("longhaul-rtsp-{name}-{}.flv", std::process::id()));
    std::fs::write(&path, &file).unwrap();
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_streams"])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).ok();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{name}: {text}");
    let coded = frames
        .iter()
        .filter(|f| f.frame != Frame::SequenceHeader)
        .count();
    let mut wanted = vec![format!("nb_read_frames={coded}")];
    if video {
        wanted.extend(["codec_name=h264", "width=320", "height=240"].map(String::from));
    } else {
        wanted.extend(["codec_name=aac", "sample_rate=48000"].map(String::from));
    }
    wanted.extend(expect.iter().map(|s| s.to_string()));
    for line in wanted {
        assert!(
            text.lines().any(|l| l == line),
            "{name}: ffprobe did not say {line}:\n{text}"
        );
    }
}

/// Checks an H.265 fixture of 2 s at 25 fps, keyint 25: one sequence start, 50 frames,
/// keyframes (IRAP) at 0 and 25, timestamps 3600 apart.
fn check_h265(name: &str) -> Vec<TrackFrame> {
    let (track, out) = depacketize(name);
    assert_eq!((track.kind(), track.codec()), (Kind::Video, "h265"));
    let kinds = classify(Kind::Video, Codec::FourCc(*b"hvc1"), &out);
    assert_eq!(kinds[0], Frame::SequenceHeader);
    let frames = &out[1..];
    assert_eq!(frames.len(), 50, "{name}: ffmpeg encoded 50 frames");
    let keyframes: Vec<usize> = (0..frames.len())
        .filter(|&i| frames[i].frame == Frame::Keyframe)
        .collect();
    assert_eq!(keyframes, [0, 25], "{name}");
    for pair in frames.windows(2) {
        assert_eq!(
            pair[1].rtp_timestamp.wrapping_sub(pair[0].rtp_timestamp),
            3600
        );
    }
    for frame in frames {
        // CodedFramesX: no composition time, the NAL units right after the FourCC.
        let types: Vec<u8> = length_prefixed(&frame.body[5..])
            .iter()
            .map(|n| (n[0] >> 1) & 0x3f)
            .collect();
        assert!(types.iter().all(|t| !(32..=35).contains(t)), "{types:?}");
        let irap = types.iter().any(|t| (16..=23).contains(t));
        assert_eq!(irap, frame.frame == Frame::Keyframe, "{types:?}");
    }
    out
}

/// The VPS, SPS and PPS arrays of an HEVCDecoderConfigurationRecord.
fn hevc_parameter_sets(record: &[u8]) -> Vec<(u8, Vec<u8>)> {
    assert_eq!(record[0], 1);
    assert_eq!(record[21] & 0x03, 3, "4-byte lengths");
    let mut sets = Vec::new();
    let mut rest = &record[23..];
    for _ in 0..record[22] {
        let nal_type = rest[0] & 0x3f;
        let count = u16::from_be_bytes([rest[1], rest[2]]);
        rest = &rest[3..];
        for _ in 0..count {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            sets.push((nal_type, rest[2..2 + len].to_vec()));
            rest = &rest[2 + len..];
        }
    }
    assert!(rest.is_empty());
    sets
}

#[test]
fn h265_with_sprop_parameter_sets() {
    let out = check_h265("h265-sprop");
    let (_, _, _, fmtp) = sdp("h265-sprop.sdp");
    let fmtp = fmtp.unwrap();
    let sprop = |name: &str| {
        fmtp.split(';')
            .find_map(|p| p.trim().strip_prefix(name))
            .map(base64)
            .unwrap()
    };
    let sets = hevc_parameter_sets(&out[0].body[5..]);
    assert_eq!(
        sets,
        [
            (32, sprop("sprop-vps=")),
            (33, sprop("sprop-sps=")),
            (34, sprop("sprop-pps="))
        ]
    );
    // Profile, tier and level: the SPS's profile_tier_level (Main, level 2.0 = 60).
    assert_eq!((record_byte(&out, 1), record_byte(&out, 12)), (0x01, 60));
    annex_b_probe("h265-sprop", &out);
}

#[test]
fn h265_with_in_band_parameter_sets_ap_and_fu() {
    // No sprop: VPS, SPS and PPS arrive in an AP before each IRAP, which comes in FUs.
    let (_, _, _, fmtp) = sdp("h265.sdp");
    assert!(fmtp.is_none());
    let out = check_h265("h265");
    let types: Vec<u8> = hevc_parameter_sets(&out[0].body[5..])
        .iter()
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(types, [32, 33, 34]);
    annex_b_probe("h265", &out);
}

fn record_byte(out: &[TrackFrame], at: usize) -> u8 {
    out[0].body[5 + at]
}

/// ffmpeg 5.1 reads no Enhanced RTMP, so the HEVC tags are checked another way: the
/// record's parameter sets and every frame's NAL units written as an Annex B stream,
/// which ffprobe must read as 320x240 HEVC of 50 frames. Skipped without ffprobe.
fn annex_b_probe(name: &str, out: &[TrackFrame]) {
    if Command::new("ffprobe").arg("-version").output().is_err() {
        eprintln!("ffprobe not installed: {name} not checked with ffprobe");
        return;
    }
    let mut stream = Vec::new();
    for (_, set) in hevc_parameter_sets(&out[0].body[5..]) {
        stream.extend_from_slice(&[0, 0, 0, 1]);
        stream.extend_from_slice(&set);
    }
    for frame in &out[1..] {
        for nal_unit in length_prefixed(&frame.body[5..]) {
            stream.extend_from_slice(&[0, 0, 0, 1]);
            stream.extend_from_slice(nal_unit);
        }
    }
    let path =
        std::env::temp_dir().join(format!("longhaul-rtsp-{name}-{}.hevc", std::process::id()));
    std::fs::write(&path, &stream).unwrap();
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-f",
            "hevc",
        ])
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).ok();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{name}: {text}");
    for line in [
        "codec_name=hevc",
        "width=320",
        "height=240",
        "nb_read_frames=50",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{name}: ffprobe did not say {line}:\n{text}"
        );
    }
}

#[test]
fn opus_one_frame_per_packet() {
    // 2 s of 20 ms packets, plus the encoder's flush: 101 packets, 960 apart.
    let (track, out) = depacketize("opus");
    assert_eq!((track.kind(), track.codec()), (Kind::Audio, "opus"));
    let kinds = classify(Kind::Audio, Codec::FourCc(*b"Opus"), &out);
    assert_eq!(kinds[0], Frame::SequenceHeader);
    assert_eq!(kinds.len(), 1 + 101);
    // OpusHead, version 1, 2 channels (sprop-stereo=1), 48 kHz, mapping family 0.
    let head = &out[0].body[5..];
    assert_eq!(&head[..10], b"OpusHead\x01\x02");
    assert_eq!(&head[12..16], &48_000u32.to_le_bytes());
    assert_eq!((head.len(), head[18]), (19, 0));
    let packets = datagrams("opus.rtp");
    for (frame, datagram) in out[1..].iter().zip(packets) {
        let packet = RtpPacket::parse(datagram).unwrap();
        assert_eq!(frame.rtp_timestamp, packet.timestamp);
        assert_eq!(&frame.body[5..], &packet.payload[..]);
    }
    for pair in out[1..].windows(2) {
        assert_eq!(
            pair[1].rtp_timestamp.wrapping_sub(pair[0].rtp_timestamp),
            960
        );
    }
}
