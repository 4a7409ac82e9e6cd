//! The session against the requests ffmpeg and GStreamer send, and against bad ones.

use super::*;

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QADKzZQUH7ARAAAAMAEAAAAwMg8UKZYA==,aOvjyyLA; profile-level-id=64000C\r\n\
a=control:streamid=0\r\n\
m=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/48000/2\r\n\
a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=119056E500\r\n\
a=control:streamid=1\r\n";

const URL: &str = "rtsp://1_abcdefgh.p.s.localhost:1554/kLive/1_abcdefgh_1?t=tok";

fn session(udp: Option<UdpPorts>) -> (RtspSession, Instant) {
    let now = Instant::now();
    let config = SessionConfig {
        session_id: "s3cr3t".into(),
        udp,
        ..SessionConfig::default()
    };
    (RtspSession::new(config, now), now)
}

fn announce(cseq: u32) -> String {
    format!(
        "ANNOUNCE {URL} RTSP/1.0\r\nContent-Type: application/sdp\r\nCSeq: {cseq}\r\n\
         User-Agent: Lavf61.7.100\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
}

fn setup(cseq: u32, track: u32, transport: &str, session: Option<&str>) -> String {
    let session = session
        .map(|s| format!("Session: {s}\r\n"))
        .unwrap_or_default();
    format!("SETUP {URL}/streamid={track} RTSP/1.0\r\nTransport: {transport}\r\nCSeq: {cseq}\r\n{session}\r\n")
}

fn request(method: &str, cseq: u32, session: Option<&str>) -> String {
    let session = session
        .map(|s| format!("Session: {s}\r\n"))
        .unwrap_or_default();
    format!("{method} {URL} RTSP/1.0\r\nCSeq: {cseq}\r\n{session}\r\n")
}

fn output(s: &mut RtspSession) -> String {
    s.take_output()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
        .unwrap_or_default()
}

fn interleaved(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![b'$', channel];
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// OPTIONS, ANNOUNCE, two SETUPs, RECORD as ffmpeg sends them with
/// `-rtsp_transport tcp`; the session recording.
fn recording() -> (RtspSession, Instant) {
    let (mut s, now) = session(None);
    s.handle_input(now, request("OPTIONS", 1, None).as_bytes())
        .unwrap();
    s.handle_input(now, announce(2).as_bytes()).unwrap();
    s.accept_announce();
    s.handle_input(
        now,
        setup(
            3,
            0,
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
            None,
        )
        .as_bytes(),
    )
    .unwrap();
    s.handle_input(
        now,
        setup(
            4,
            1,
            "RTP/AVP/TCP;unicast;interleaved=2-3;mode=record",
            Some("s3cr3t"),
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(
        s.handle_input(now, request("RECORD", 5, Some("s3cr3t")).as_bytes())
            .unwrap(),
        [RtspEvent::Record]
    );
    s.accept_record();
    assert!(s.is_recording());
    let _ = output(&mut s);
    (s, now)
}

#[test]
fn ffmpeg_publish_over_tcp() {
    let (mut s, now) = session(None);
    assert!(s
        .handle_input(now, request("OPTIONS", 1, None).as_bytes())
        .unwrap()
        .is_empty());
    let out = output(&mut s);
    assert!(out.starts_with("RTSP/1.0 200 OK\r\nCSeq: 1\r\n"), "{out}");
    assert!(
        out.contains("Public: OPTIONS, ANNOUNCE, SETUP, RECORD"),
        "{out}"
    );

    let events = s.handle_input(now, announce(2).as_bytes()).unwrap();
    let [RtspEvent::Announce { url, tracks }] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(url, URL);
    assert_eq!(tracks.len(), 2);
    assert_eq!(output(&mut s), "", "no answer before the driver decides");
    s.accept_announce();
    assert!(output(&mut s).starts_with("RTSP/1.0 200 OK\r\nCSeq: 2\r\n"));

    s.handle_input(
        now,
        setup(
            3,
            0,
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record",
            None,
        )
        .as_bytes(),
    )
    .unwrap();
    let out = output(&mut s);
    assert!(
        out.contains("Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n"),
        "{out}"
    );
    assert!(out.contains("Session: s3cr3t;timeout=60\r\n"), "{out}");
    s.handle_input(
        now,
        setup(
            4,
            1,
            "RTP/AVP/TCP;unicast;interleaved=2-3;mode=record",
            Some("s3cr3t"),
        )
        .as_bytes(),
    )
    .unwrap();
    assert!(output(&mut s).contains("interleaved=2-3"));

    // RECORD and the first packets in one read: the packets wait for the decision.
    let mut bytes = request("RECORD", 5, Some("s3cr3t")).into_bytes();
    bytes.extend(interleaved(
        0,
        &[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x65],
    ));
    bytes.extend(interleaved(3, &[0x80, 200, 0, 6]));
    assert_eq!(s.handle_input(now, &bytes).unwrap(), [RtspEvent::Record]);
    assert!(!s.has_unhandled_input() && s.waiting_for_decision());
    s.accept_record();
    assert!(output(&mut s).starts_with("RTSP/1.0 200 OK\r\nCSeq: 5\r\n"));
    assert!(s.has_unhandled_input());
    let events = s.handle_read(now, 0).unwrap();
    assert!(!s.has_unhandled_input());
    assert_eq!(events.len(), 2);
    assert!(
        matches!(&events[0], RtspEvent::Packet { track: 0, rtcp: false, data } if data.len() == 13)
    );
    assert!(
        matches!(&events[1], RtspEvent::Packet { track: 1, rtcp: true, data } if data.len() == 4)
    );

    // A keep-alive, then TEARDOWN: answered, and the connection closes.
    s.handle_input(now, request("GET_PARAMETER", 6, Some("s3cr3t")).as_bytes())
        .unwrap();
    assert!(output(&mut s).starts_with("RTSP/1.0 200 OK\r\nCSeq: 6\r\n"));
    assert_eq!(
        s.handle_input(now, request("TEARDOWN", 7, Some("s3cr3t")).as_bytes())
            .unwrap(),
        [RtspEvent::Teardown]
    );
    assert!(output(&mut s).starts_with("RTSP/1.0 200 OK\r\nCSeq: 7\r\n"));
    assert!(s.should_close());
    let answers: Vec<_> = s
        .take_answers()
        .into_iter()
        .map(|a| (a.method, a.status))
        .collect();
    assert_eq!(
        answers,
        [
            ("OPTIONS", 200),
            ("ANNOUNCE", 200),
            ("SETUP", 200),
            ("SETUP", 200),
            ("RECORD", 200),
            ("GET_PARAMETER", 200),
            ("TEARDOWN", 200)
        ]
    );
}

#[test]
fn packets_split_across_reads_are_whole_slices() {
    let (mut s, now) = recording();
    let payload: Vec<u8> = (0..1400u32).map(|i| i as u8).collect();
    let bytes = interleaved(0, &payload);
    let mut events = Vec::new();
    for part in bytes.chunks(100) {
        events.extend(s.handle_input(now, part).unwrap());
        // A partial packet is not "unhandled": the driver reads on (no busy loop).
        assert!(!s.has_unhandled_input());
    }
    let [RtspEvent::Packet {
        track: 0,
        rtcp: false,
        data,
    }] = &events[..]
    else {
        panic!("{events:?}")
    };
    assert_eq!(&data[..], &payload[..]);
}

#[test]
fn a_refused_announce_is_told_why_and_closed() {
    let (mut s, now) = session(None);
    s.handle_input(now, announce(1).as_bytes()).unwrap();
    s.refuse(
        StatusCode::Unauthorized,
        "the token is not this entry's current token",
    );
    let out = output(&mut s);
    assert!(
        out.starts_with("RTSP/1.0 401 the token is not this entry's current token\r\nCSeq: 1\r\n"),
        "{out}"
    );
    assert!(
        out.ends_with("\r\n\r\nthe token is not this entry's current token\n"),
        "{out}"
    );
    assert!(s.should_close());
    // Nothing more is read.
    assert!(s
        .handle_input(
            now,
            setup(2, 0, "RTP/AVP/TCP;interleaved=0-1", None).as_bytes()
        )
        .unwrap()
        .is_empty());
    assert_eq!(output(&mut s), "");
}

#[test]
fn udp_is_461_unless_the_node_offers_it() {
    let (mut s, now) = session(None);
    s.handle_input(now, announce(1).as_bytes()).unwrap();
    s.accept_announce();
    let _ = output(&mut s);
    s.handle_input(
        now,
        setup(2, 0, "RTP/AVP/UDP;unicast;client_port=5000-5001", None).as_bytes(),
    )
    .unwrap();
    let out = output(&mut s);
    assert!(
        out.starts_with("RTSP/1.0 461 unsupported transport"),
        "{out}"
    );
    assert!(!s.should_close(), "the client may try TCP next");

    let (mut s, now) = session(Some(UdpPorts {
        rtp: 8000,
        rtcp: 8001,
    }));
    s.handle_input(now, announce(1).as_bytes()).unwrap();
    s.accept_announce();
    let events = s
        .handle_input(
            now,
            setup(
                2,
                1,
                "RTP/AVP/UDP;unicast;client_port=5002-5003;mode=record",
                None,
            )
            .as_bytes(),
        )
        .unwrap();
    assert_eq!(
        events,
        [RtspEvent::UdpTrack {
            track: 1,
            client_rtp: 5002,
            client_rtcp: 5003
        }]
    );
    let out = output(&mut s);
    assert!(
        out.contains("Transport: RTP/AVP;unicast;client_port=5002-5003;server_port=8000-8001\r\n"),
        "{out}"
    );
}

#[test]
fn requests_out_of_order_or_of_another_session() {
    let (mut s, now) = session(None);
    // SETUP and RECORD before ANNOUNCE.
    s.handle_input(
        now,
        setup(1, 0, "RTP/AVP/TCP;interleaved=0-1", None).as_bytes(),
    )
    .unwrap();
    assert!(output(&mut s).starts_with("RTSP/1.0 455 "));
    s.handle_input(now, request("RECORD", 2, None).as_bytes())
        .unwrap();
    assert!(output(&mut s).starts_with("RTSP/1.0 455 "));
    s.handle_input(now, announce(3).as_bytes()).unwrap();
    s.accept_announce();
    let _ = output(&mut s);
    // A track the SDP does not have.
    let bad = format!("SETUP {URL}/streamid=7 RTSP/1.0\r\nTransport: RTP/AVP/TCP;interleaved=0-1\r\nCSeq: 4\r\n\r\n");
    s.handle_input(now, bad.as_bytes()).unwrap();
    assert!(output(&mut s).starts_with("RTSP/1.0 404 "));
    s.handle_input(
        now,
        setup(5, 0, "RTP/AVP/TCP;interleaved=0-1", None).as_bytes(),
    )
    .unwrap();
    let _ = output(&mut s);
    // The same channels again, and a wrong or missing session.
    s.handle_input(
        now,
        setup(6, 1, "RTP/AVP/TCP;interleaved=0-1", Some("s3cr3t")).as_bytes(),
    )
    .unwrap();
    assert!(output(&mut s).starts_with("RTSP/1.0 461 "));
    s.handle_input(now, request("RECORD", 7, Some("guess")).as_bytes())
        .unwrap();
    assert!(output(&mut s).starts_with("RTSP/1.0 454 no such session"));
    s.handle_input(now, request("RECORD", 8, None).as_bytes())
        .unwrap();
    assert!(output(&mut s).starts_with("RTSP/1.0 454 the Session header is missing"));
    // Play is not served here; it says where to play.
    s.handle_input(now, request("DESCRIBE", 9, None).as_bytes())
        .unwrap();
    assert!(output(&mut s).starts_with("RTSP/1.0 405 this endpoint takes publishes"));
    s.handle_input(now, "OPTIONS * RTSP/1.0\r\n\r\n".as_bytes())
        .unwrap();
    assert!(output(&mut s).starts_with("RTSP/1.0 400 CSeq missing"));
    s.handle_input(now, "OPTIONS * RTSP/2.0\r\nCSeq: 10\r\n\r\n".as_bytes())
        .unwrap();
    assert!(output(&mut s).starts_with("RTSP/1.0 505 "));
    assert!(!s.should_close());
}

#[test]
fn garbage_and_huge_requests_are_400_and_close() {
    let (mut s, now) = session(None);
    let err = s
        .handle_input(now, b"\x16\x03\x01\x02\x00 not rtsp\r\n\r\n")
        .unwrap_err();
    assert!(matches!(err, SessionError::BadRequest(_)));
    assert!(output(&mut s).starts_with("RTSP/1.0 400 a request that does not parse"));
    let answers = s.take_answers();
    assert_eq!((answers[0].method, answers[0].status), ("UNPARSED", 400));
    assert!(answers[0]
        .reason
        .starts_with("a request that does not parse"));
    assert!(s.should_close());

    let (mut s, now) = session(None);
    let mut huge = format!("ANNOUNCE {URL} RTSP/1.0\r\nCSeq: 1\r\nX-Pad: ");
    huge.push_str(&"a".repeat(MAX_REQUEST_BYTES + 10));
    let err = s.handle_input(now, huge.as_bytes()).unwrap_err();
    assert!(matches!(err, SessionError::BadRequest(_)));
    assert!(output(&mut s).starts_with("RTSP/1.0 400 a request of over 65536 bytes"));
    assert!(s.should_close());
    assert_eq!(s.buffered_bytes(), 0);
}

#[test]
fn timeouts_before_and_after_record() {
    let (mut s, now) = session(None);
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(10)));
    assert!(s.handle_timeout(now + Duration::from_secs(9)).is_ok());
    assert_eq!(
        s.handle_timeout(now + Duration::from_secs(10)),
        Err(SessionError::Timeout(
            "no ANNOUNCE, SETUP and RECORD within the setup time"
        ))
    );
    assert!(s.should_close());

    let (mut s, now) = recording();
    let later = now + Duration::from_secs(30);
    s.handle_input(
        later,
        &interleaved(0, &[0x80, 96, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]),
    )
    .unwrap();
    assert_eq!(s.poll_timeout(), Some(later + Duration::from_secs(60)));
    s.note_activity(later + Duration::from_secs(50));
    assert!(s.handle_timeout(later + Duration::from_secs(100)).is_ok());
    assert_eq!(
        s.handle_timeout(later + Duration::from_secs(110)),
        Err(SessionError::Timeout(
            "nothing received within the idle time"
        ))
    );
}

#[test]
fn packets_before_record_or_on_unknown_channels_are_counted() {
    let (mut s, now) = recording();
    assert!(s
        .handle_input(now, &interleaved(9, &[1, 2, 3]))
        .unwrap()
        .is_empty());
    assert_eq!(s.counts().packets_dropped, 1);
}

#[test]
fn ffmpeg_options_with_query_and_user_agent() {
    let (mut s, now) = session(None);
    s.handle_input(now, b"OPTIONS rtsp://127.0.0.1:1554/kLive/1_c5y8czy6_1?t=o55xcdqax4k74st5 RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: Lavf61\r\n\r\n").unwrap();
    let out = output(&mut s);
    assert!(out.starts_with("RTSP/1.0 200 OK"), "{out}");
}

#[test]
fn setup_urls_as_gstreamer_writes_them() {
    let (mut s, now) = session(None);
    s.handle_input(now, announce(1).as_bytes()).unwrap();
    s.accept_announce();
    let _ = output(&mut s);
    // The control appended to the path, the query after it.
    let setup = "SETUP rtsp://1_abcdefgh.p.s.localhost:1554/kLive/1_abcdefgh_1/streamid=1?t=tok RTSP/1.0\r\n\
         Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nCSeq: 2\r\n\r\n";
    s.handle_input(now, setup.as_bytes()).unwrap();
    let out = output(&mut s);
    assert!(out.starts_with("RTSP/1.0 200 OK"), "{out}");
    let record = request("RECORD", 3, Some("s3cr3t"));
    assert_eq!(
        s.handle_input(now, record.as_bytes()).unwrap(),
        [RtspEvent::Record]
    );
}
