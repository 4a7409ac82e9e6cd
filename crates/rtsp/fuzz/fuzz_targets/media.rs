//! Fuzzes a recording session's media: RTP and RTCP packets cut from the input go to an
//! `RtpIngest` announced with every codec the depacketisers take, and the reordering
//! timer is polled on a fake clock. Each packet is one byte (track in the low bits, RTCP
//! in the top bit, a clock step in between), two bytes of length, then its bytes. Any
//! panic is a bug; so is a message larger than the frame bound.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use longhaul_rtsp::depacketize::MAX_FRAME_BYTES;
use longhaul_rtsp::{announced_tracks, RtpIngest};
use std::time::{Duration, Instant};

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=fuzz\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QADKzZQUH7ARAAAAMAEAAAAwMg8UKZYA==,aOvjyyLA\r\n\
a=control:streamid=0\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=119056E500\r\n\
a=control:streamid=1\r\n";

const SDP_HEVC_OPUS: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=fuzz\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\na=control:streamid=0\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 opus/48000/2\r\na=control:streamid=1\r\n";

const SDP_LATM: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=fuzz\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:stream=0\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MP4A-LATM/44100\r\n\
a=fmtp:97 cpresent=0;config=40002410adca00\r\na=control:stream=1\r\n";

fuzz_target!(|data: &[u8]| {
    let Some((&first, mut rest)) = data.split_first() else { return };
    let sdp = match first % 3 {
        0 => SDP,
        1 => SDP_HEVC_OPUS,
        _ => SDP_LATM,
    };
    let Ok(tracks) = announced_tracks(sdp.as_bytes()) else { return };
    let Ok(mut ingest) = RtpIngest::new(&tracks) else { return };
    let mut now = Instant::now();
    let mut out = Vec::new();
    while rest.len() >= 3 {
        let head = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        rest = &rest[3..];
        let take = len.min(rest.len());
        let packet = Bytes::copy_from_slice(&rest[..take]);
        rest = &rest[take..];
        now += Duration::from_millis(u64::from((head >> 1) & 0x3f) * 5);
        ingest.push(now, usize::from(head & 1), head & 0x80 != 0, packet, &mut out);
        ingest.poll(now, &mut out);
        if head == 0xff {
            ingest.flush(now, &mut out);
        }
        for m in out.drain(..) {
            assert!(m.payload.len() <= MAX_FRAME_BYTES + 64, "a message of {} bytes", m.payload.len());
        }
    }
});
