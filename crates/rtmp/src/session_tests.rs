//! Tests of [`crate::server::ServerSession`] and [`crate::client::ClientSession`] driven
//! against each other in memory: bytes piped both ways, a fake clock, no sockets.

use crate::amf0::Amf0Value;
use crate::client::{ClientConfig, ClientEvent, ClientGoal, ClientSession};
use crate::message::{self, Command};
use crate::message::{type_id, RtmpMessage};
use crate::server::{
    ServerConfig, ServerEvent, ServerSession, SessionError, HELD_MESSAGE_COST,
    MAX_HELD_MEDIA_BYTES, MAX_MESSAGES_PER_INPUT, MAX_OPEN_STREAMS, PUBLISH_READ_BLOCK, READ_BLOCK,
};
use bytes::{BufMut, Bytes, BytesMut};
use std::time::{Duration, Instant};

struct Pair {
    now: Instant,
    server: ServerSession,
    client: ClientSession,
    server_events: Vec<ServerEvent>,
    client_events: Vec<ClientEvent>,
}

fn config() -> ClientConfig {
    let mut c = ClientConfig::new("kLive/?t=abc", "rtmp://127.0.0.1:1935/kLive/?t=abc");
    c.extra_connect_properties.push((
        "fourCcList".into(),
        Amf0Value::StrictArray(vec![
            Amf0Value::String("hvc1".into()),
            Amf0Value::String("av01".into()),
        ]),
    ));
    c
}

fn publish(name: &str, publish_type: &str) -> ClientGoal {
    ClientGoal::Publish {
        name: name.into(),
        publish_type: publish_type.into(),
    }
}

impl Pair {
    fn new(goal: ClientGoal) -> Self {
        Self::with_server(ServerConfig::default(), goal)
    }

    fn with_server(server: ServerConfig, goal: ClientGoal) -> Self {
        let now = Instant::now();
        Self {
            now,
            server: ServerSession::new(server, now),
            client: ClientSession::new(config(), goal, now),
            server_events: Vec::new(),
            client_events: Vec::new(),
        }
    }

    /// Moves bytes both ways until neither side has anything to say.
    fn pump(&mut self) -> Result<(), SessionError> {
        loop {
            let to_server = self.client.output().to_vec();
            bytes::Buf::advance(self.client.output(), to_server.len());
            // Feed in uneven pieces: the sessions must not care where reads split.
            for piece in to_server.chunks(1000) {
                let events = self.server.handle_input(self.now, piece)?;
                self.server_events.extend(events);
                while self.server.has_undecoded_input() {
                    let events = self.server.handle_input(self.now, &[])?;
                    self.server_events.extend(events);
                }
            }
            let to_client = self.server.output().to_vec();
            bytes::Buf::advance(self.server.output(), to_client.len());
            if !to_client.is_empty() {
                let events = self
                    .client
                    .handle_input(self.now, &to_client)
                    .expect("client accepts the server's bytes");
                self.client_events.extend(events);
            }
            if to_server.is_empty() && to_client.is_empty() {
                return Ok(());
            }
        }
    }

    fn take_server_events(&mut self) -> Vec<ServerEvent> {
        std::mem::take(&mut self.server_events)
    }

    /// Connects and, for a publisher, gets to PublishRequested on stream 1.
    fn connect(&mut self) {
        self.pump().unwrap();
        let events = self.take_server_events();
        assert!(
            matches!(events.as_slice(), [ServerEvent::ConnectRequested { .. }]),
            "{events:?}"
        );
        self.server.accept_connect();
        self.pump().unwrap();
    }

    fn publishing(name: &str) -> Self {
        Self::publishing_with(ServerConfig::default(), name)
    }

    fn publishing_with(server: ServerConfig, name: &str) -> Self {
        let mut pair = Pair::with_server(server, publish(name, "live"));
        pair.connect();
        let events = pair.take_server_events();
        assert_eq!(
            events,
            vec![ServerEvent::PublishRequested {
                stream_id: 1,
                name: name.into(),
                publish_type: "live".into()
            }]
        );
        pair.server.accept_publish(1);
        pair.pump().unwrap();
        assert!(pair
            .client_events
            .contains(&ClientEvent::Ready { stream_id: 1 }));
        pair
    }
}

fn media(type_id: u8, timestamp: u32, body: &'static [u8]) -> RtmpMessage {
    RtmpMessage {
        timestamp,
        type_id,
        stream_id: 0,
        payload: Bytes::from_static(body),
    }
}

fn media_events(events: &[ServerEvent]) -> Vec<(u32, RtmpMessage)> {
    events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Media { stream_id, message } => Some((*stream_id, message.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn connect_publish_media_and_unpublish() {
    let mut pair = Pair::new(publish("1_abcdefgh_1", "live"));
    pair.pump().unwrap();
    let events = pair.take_server_events();
    let [ServerEvent::ConnectRequested { request }] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(request.app, "kLive/?t=abc");
    assert_eq!(
        request.tc_url.as_deref(),
        Some("rtmp://127.0.0.1:1935/kLive/?t=abc")
    );
    assert!(request
        .flash_ver
        .as_deref()
        .unwrap()
        .starts_with("FMLE/3.0"));
    assert!(matches!(
        request.command_object.get("fourCcList"),
        Some(Amf0Value::StrictArray(list)) if list.len() == 2
    ));
    assert_eq!(pair.server.connect_request(), Some(request));

    pair.server.accept_connect();
    pair.pump().unwrap();
    // releaseStream and FCPublish were answered: onFCPublish reached the client.
    assert!(pair.client_events.iter().any(|e| matches!(
        e,
        ClientEvent::Status { code, .. } if code == "NetStream.Publish.Start"
    )));
    assert_eq!(
        pair.take_server_events(),
        vec![ServerEvent::PublishRequested {
            stream_id: 1,
            name: "1_abcdefgh_1".into(),
            publish_type: "live".into()
        }]
    );
    pair.server.accept_publish(1);
    pair.pump().unwrap();
    assert!(pair
        .client_events
        .contains(&ClientEvent::Ready { stream_id: 1 }));

    let sent = [
        media(type_id::DATA_AMF0, 0, b"\x02\x00\x0d@setDataFrame"),
        media(type_id::VIDEO, 0, b"\x17\x00\x00\x00\x00seqhdr"),
        media(type_id::AUDIO, 0, b"\xaf\x00\x12\x10"),
        media(type_id::VIDEO, 40, &[0x27; 9000]),
    ];
    for m in &sent {
        pair.client.send_media(m).unwrap();
    }
    pair.pump().unwrap();
    let got = media_events(&pair.take_server_events());
    assert_eq!(got.len(), sent.len());
    for ((stream_id, got), sent) in got.iter().zip(&sent) {
        assert_eq!(*stream_id, 1);
        assert_eq!(
            (got.type_id, got.timestamp, &got.payload),
            (sent.type_id, sent.timestamp, &sent.payload)
        );
        assert_eq!(got.stream_id, 1);
    }

    pair.client.finish();
    pair.pump().unwrap();
    // FCUnpublish then deleteStream: reported once.
    assert_eq!(
        pair.take_server_events(),
        vec![ServerEvent::PublishFinished { stream_id: 1 }]
    );
    assert!(!pair.server.should_close());
    assert!(pair.server.bytes_received() > 3073 + 9000);
}

#[test]
fn rejected_connect_carries_code_and_description() {
    let mut pair = Pair::new(publish("x", "live"));
    pair.pump().unwrap();
    pair.server.reject_connect("bad token");
    pair.pump().unwrap();
    assert!(pair.server.should_close());
    assert_eq!(
        pair.client_events,
        vec![ClientEvent::Rejected {
            code: "NetConnection.Connect.Rejected".into(),
            description: "bad token".into()
        }]
    );
}

#[test]
fn rejected_publish_carries_code_and_description() {
    let mut pair = Pair::new(publish("x", "live"));
    pair.connect();
    pair.take_server_events();
    pair.server.reject_publish(
        1,
        "NetStream.Publish.BadName",
        "stream x is already published",
    );
    pair.pump().unwrap();
    assert!(pair.server.should_close());
    assert!(pair.client_events.contains(&ClientEvent::Rejected {
        code: "NetStream.Publish.BadName".into(),
        description: "stream x is already published".into()
    }));
}

#[test]
fn upper_case_publish_type_is_accepted() {
    let mut pair = Pair::new(publish("x", "LIVE"));
    pair.connect();
    assert_eq!(
        pair.take_server_events(),
        vec![ServerEvent::PublishRequested {
            stream_id: 1,
            name: "x".into(),
            publish_type: "LIVE".into()
        }]
    );
}

#[test]
fn unknown_publish_type_is_a_bad_command() {
    let mut pair = Pair::new(publish("x", "sideways"));
    assert!(matches!(
        pair.pump().and_then(|()| {
            pair.server.accept_connect();
            pair.pump()
        }),
        Err(SessionError::BadCommand { name, .. }) if name == "publish"
    ));
}

#[test]
fn create_stream_is_bounded() {
    let mut pair = Pair::publishing("x");
    // Stream 1 is open; MAX_OPEN_STREAMS - 1 more fit.
    for i in 0..MAX_OPEN_STREAMS - 1 {
        pair.client.send_raw(
            Command::new("createStream", 10.0 + i as f64, Amf0Value::Null, vec![]).to_message(0),
        );
        pair.pump().unwrap();
    }
    pair.client
        .send_raw(Command::new("createStream", 99.0, Amf0Value::Null, vec![]).to_message(0));
    let err = pair.pump().unwrap_err();
    assert!(
        err.to_string()
            .contains(&format!("more than {MAX_OPEN_STREAMS} streams")),
        "{err}"
    );
    // A failed session stays failed.
    assert!(pair.server.handle_input(pair.now, b"x").is_err());
}

#[test]
fn amf3_commands_are_handled_like_amf0() {
    let mut pair = Pair::publishing("x");
    let mut m = Command::new("createStream", 10.0, Amf0Value::Null, vec![]).to_message(0);
    let mut body = vec![0u8];
    body.extend_from_slice(&m.payload);
    m.type_id = type_id::COMMAND_AMF3;
    m.payload = body.into();
    pair.client.send_raw(m);
    pair.pump().unwrap();
    // The _result with stream id 2 reached the client.
    assert!(pair.client.received().iter().any(|m| {
        Command::parse(m).is_ok_and(|c| {
            c.name == "_result"
                && c.transaction_id == 10.0
                && c.arguments == vec![Amf0Value::Number(2.0)]
        })
    }));
}

#[test]
fn media_before_accept_is_held_then_released_in_order() {
    let mut pair = Pair::new(publish("x", "live"));
    pair.connect();
    pair.take_server_events();
    // The client is not Ready yet: send raw on stream 1.
    for ts in [0u32, 40, 80] {
        let mut m = media(type_id::VIDEO, ts, b"\x27frame");
        m.stream_id = 1;
        pair.client.send_raw(m);
    }
    pair.pump().unwrap();
    assert!(media_events(&pair.take_server_events()).is_empty());
    pair.server.accept_publish(1);
    let released = media_events(&pair.server.take_events());
    assert_eq!(
        released
            .iter()
            .map(|(_, m)| m.timestamp)
            .collect::<Vec<_>>(),
        vec![0, 40, 80]
    );
    assert!(released.iter().all(|(id, _)| *id == 1));
}

#[test]
fn buffered_bytes_count_partial_messages_and_held_media_until_authorised() {
    let mut pair = Pair::new(publish("x", "live"));
    pair.connect();
    pair.take_server_events();
    assert!(!pair.server.is_authorised());
    assert_eq!(pair.server.buffered_bytes(), 0);
    // A 100,000-byte video message, half of its chunks received.
    pair.client.send_raw(RtmpMessage {
        timestamp: 0,
        type_id: type_id::VIDEO,
        stream_id: 1,
        payload: Bytes::from(vec![0x27u8; 100_000]),
    });
    let bytes = pair.client.output().to_vec();
    bytes::Buf::advance(pair.client.output(), bytes.len());
    let half = bytes.len() / 2;
    pair.server.handle_input(pair.now, &bytes[..half]).unwrap();
    let partial = pair.server.buffered_bytes();
    assert!(
        partial > 45_000 && partial <= half,
        "{partial} of {half} bytes received"
    );
    // Whole, it is held until the publish is answered.
    pair.server.handle_input(pair.now, &bytes[half..]).unwrap();
    assert_eq!(pair.server.buffered_bytes(), 100_000 + HELD_MESSAGE_COST);
    pair.server.accept_publish(1);
    assert!(pair.server.is_authorised());
    assert_eq!(pair.server.buffered_bytes(), 0);
    assert_eq!(media_events(&pair.server.take_events()).len(), 1);
}

#[test]
fn a_play_accepted_authorises_the_connection() {
    let mut pair = Pair::new(ClientGoal::Play { name: "x".into() });
    pair.connect();
    pair.take_server_events();
    assert!(!pair.server.is_authorised());
    pair.server.accept_play(1);
    assert!(pair.server.is_authorised());
}

#[test]
fn held_media_not_taken_comes_first_in_next_input() {
    let mut pair = Pair::new(publish("x", "live"));
    pair.connect();
    pair.take_server_events();
    let mut m = media(type_id::AUDIO, 7, b"\xaf\x01a");
    m.stream_id = 1;
    pair.client.send_raw(m);
    pair.pump().unwrap();
    pair.server.accept_publish(1);
    pair.pump().unwrap();
    pair.client
        .send_media(&media(type_id::AUDIO, 30, b"\xaf\x01b"))
        .unwrap();
    pair.pump().unwrap();
    let got = media_events(&pair.take_server_events());
    assert_eq!(
        got.iter().map(|(_, m)| m.timestamp).collect::<Vec<_>>(),
        vec![7, 30]
    );
}

/// A publish requested but not accepted, then video frames of `frame_len` bytes until
/// the session refuses to hold more: the pair and the session's error.
fn overflow_held_media(frame_len: usize) -> (Pair, SessionError) {
    let mut pair = Pair::new(publish("x", "live"));
    pair.connect();
    pair.take_server_events();
    let frame: &'static [u8] = Box::leak(vec![0x27u8; frame_len].into_boxed_slice());
    for ts in 0..(MAX_HELD_MEDIA_BYTES / frame_len + 2) as u32 {
        let mut m = media(type_id::VIDEO, ts, frame);
        m.stream_id = 1;
        pair.client.send_raw(m);
        if let Err(err) = pair.pump() {
            return (pair, err);
        }
    }
    panic!("held media past MAX_HELD_MEDIA_BYTES was not refused");
}

#[test]
fn held_media_is_bounded() {
    let (_pair, err) = overflow_held_media(256 * 1024);
    assert!(
        err.to_string().contains("before its publish was accepted"),
        "{err}"
    );
}

/// `n` empty video messages on stream 1, as a flooder sends them: one message header
/// announcing a 0-byte message, then one-byte chunks (fmt 3) that each repeat it.
fn empty_message_flood(n: usize) -> Vec<u8> {
    const CSID: u8 = 20;
    let mut out = vec![CSID, 0, 0, 0, 0, 0, 0, type_id::VIDEO, 1, 0, 0, 0];
    out.resize(12 + n - 1, 0xc0 | CSID);
    out
}

/// A server config with the message rate off (the tests of the per-call cap and of the
/// held list must not meet it first).
fn unlimited_rate() -> ServerConfig {
    ServerConfig {
        max_messages_per_second: 0,
        ..ServerConfig::default()
    }
}

#[test]
fn a_flood_of_empty_messages_is_decoded_in_bounded_steps() {
    let mut pair = Pair::publishing_with(unlimited_rate(), "x");
    let n = 3 * MAX_MESSAGES_PER_INPUT + 10;
    let mut events = pair
        .server
        .handle_input(pair.now, &empty_message_flood(n))
        .unwrap();
    assert_eq!(media_events(&events).len(), MAX_MESSAGES_PER_INPUT);
    let mut calls = 1;
    while pair.server.has_undecoded_input() {
        let more = pair.server.handle_input(pair.now, &[]).unwrap();
        assert!(more.len() <= MAX_MESSAGES_PER_INPUT);
        events.extend(more);
        calls += 1;
    }
    let media = media_events(&events);
    assert_eq!((media.len(), calls), (n, 4));
    assert!(media.iter().all(|(_, m)| m.payload.is_empty()));
}

#[test]
fn a_peer_sending_more_messages_than_its_rate_is_cut_with_the_reason() {
    let config = ServerConfig {
        max_messages_per_second: 500,
        ..ServerConfig::default()
    };
    let mut pair = Pair::publishing_with(config, "x");
    // A steady 400 a second for 10 s is fine ...
    for i in 0..40 {
        let now = pair.now + Duration::from_millis(100 * i);
        let events = pair
            .server
            .handle_input(now, &empty_message_flood(40))
            .unwrap();
        assert_eq!(media_events(&events).len(), 40);
    }
    // ... and so is a burst of the 2 s allowance; past that the session fails.
    let now = pair.now + Duration::from_secs(20);
    let err = pair
        .server
        .handle_input(now, &empty_message_flood(1000 + 1))
        .unwrap_err();
    assert!(matches!(err, SessionError::TooManyMessages(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("more than 500 messages a second (bursts of at most 1000)"),
        "{err}"
    );
    pair.server.fail(&err);
    let said = String::from_utf8_lossy(&pair.server.output().to_vec()).into_owned();
    assert!(said.contains("more than 500 messages a second"), "{said}");
}

#[test]
fn held_empty_messages_count_toward_the_held_bound() {
    let mut pair = Pair::with_server(unlimited_rate(), publish("x", "live"));
    pair.connect();
    pair.take_server_events();
    let most = MAX_HELD_MEDIA_BYTES / HELD_MESSAGE_COST;
    let mut result = pair
        .server
        .handle_input(pair.now, &empty_message_flood(most + 1));
    let mut held = 0;
    while let Ok(events) = &result {
        assert!(events.is_empty(), "held, not reported");
        held = pair.server.buffered_bytes();
        assert!(pair.server.has_undecoded_input(), "refused before the end");
        result = pair.server.handle_input(pair.now, &[]);
    }
    assert!(held <= MAX_HELD_MEDIA_BYTES, "{held}");
    let err = result.unwrap_err();
    assert!(
        err.to_string().contains("before its publish was accepted"),
        "{err}"
    );
}

#[test]
fn media_on_a_stream_never_requested_is_an_error() {
    let mut pair = Pair::publishing("x");
    let mut m = media(type_id::VIDEO, 0, b"\x17");
    m.stream_id = 7;
    pair.client.send_raw(m);
    let err = pair.pump().unwrap_err();
    assert!(matches!(err, SessionError::Protocol(_)));
    assert!(err.to_string().contains("stream 7"), "{err}");
}

#[test]
fn aggregate_is_split_into_media_events() {
    let mut pair = Pair::publishing("x");
    let mut body = BytesMut::new();
    for (tag_type, ts, payload) in [(9u8, 1000u32, &b"\x17vid"[..]), (8, 1023, &b"\xafaud"[..])] {
        body.put_u8(tag_type);
        body.put_uint(payload.len() as u64, 3);
        body.put_uint(u64::from(ts & 0xff_ffff), 3);
        body.put_u8((ts >> 24) as u8);
        body.put_uint(1, 3);
        body.put_slice(payload);
        body.put_u32(11 + payload.len() as u32);
    }
    pair.client.send_raw(RtmpMessage {
        timestamp: 5000,
        type_id: type_id::AGGREGATE,
        stream_id: 1,
        payload: body.freeze(),
    });
    pair.pump().unwrap();
    let got = media_events(&pair.take_server_events());
    let summary: Vec<_> = got
        .iter()
        .map(|(id, m)| (*id, m.type_id, m.timestamp, &m.payload[..]))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, type_id::VIDEO, 5000, &b"\x17vid"[..]),
            (1, type_id::AUDIO, 5023, &b"\xafaud"[..])
        ]
    );
    // A truncated aggregate is an error, not a panic.
    pair.client.send_raw(RtmpMessage {
        timestamp: 0,
        type_id: type_id::AGGREGATE,
        stream_id: 1,
        payload: Bytes::from_static(&[9, 0, 0, 50, 0, 0, 0, 0, 0, 0, 1, 1, 2]),
    });
    assert!(pair.pump().unwrap_err().to_string().contains("aggregate"));
}

#[test]
fn play_and_send_media_reach_the_client() {
    let mut pair = Pair::new(ClientGoal::Play { name: "x".into() });
    pair.connect();
    assert_eq!(
        pair.take_server_events(),
        vec![ServerEvent::PlayRequested {
            stream_id: 1,
            name: "x".into()
        }]
    );
    pair.server.accept_play(1);
    pair.pump().unwrap();
    assert!(pair
        .client_events
        .contains(&ClientEvent::Ready { stream_id: 1 }));
    // Play.Reset came as a status; |RtmpSampleAccess and Data.Start were not media.
    assert!(pair
        .client_events
        .iter()
        .any(|e| matches!(e, ClientEvent::Status { code, .. } if code == "NetStream.Play.Reset")));
    assert!(!pair
        .client_events
        .iter()
        .any(|e| matches!(e, ClientEvent::Media(_))));
    pair.client_events.clear();

    let mut sent = vec![
        media(type_id::DATA_AMF0, 0, b"\x02\x00\x0aonMetaData"),
        media(type_id::VIDEO, 0, b"\x17\x00seq"),
        media(type_id::AUDIO, 10, b"\xaf\x01aac"),
    ];
    sent[1].stream_id = 42; // replaced by send_media
    for m in &sent {
        pair.server.send_media(1, m);
    }
    pair.pump().unwrap();
    let got: Vec<_> = pair
        .client_events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Media(m) => Some((m.type_id, m.timestamp, m.stream_id, m.payload.clone())),
            _ => None,
        })
        .collect();
    let want: Vec<_> = sent
        .iter()
        .map(|m| (m.type_id, m.timestamp, 1, m.payload.clone()))
        .collect();
    assert_eq!(got, want);

    pair.client.finish();
    pair.pump().unwrap();
    assert_eq!(
        pair.take_server_events(),
        vec![ServerEvent::PlayFinished { stream_id: 1 }]
    );
}

#[test]
fn rejected_play_carries_code_and_closes() {
    let mut pair = Pair::new(ClientGoal::Play { name: "x".into() });
    pair.connect();
    pair.server
        .reject_play(1, "NetStream.Play.StreamNotFound", "no such stream");
    pair.pump().unwrap();
    assert!(pair.server.should_close());
    assert!(pair.client_events.contains(&ClientEvent::Rejected {
        code: "NetStream.Play.StreamNotFound".into(),
        description: "no such stream".into()
    }));
}

#[test]
fn handshake_timeout_with_a_fake_clock() {
    let start = Instant::now();
    let config = ServerConfig::default();
    let mut server = ServerSession::new(config.clone(), start);
    assert_eq!(
        server.poll_timeout(),
        Some(start + config.handshake_timeout)
    );
    // Half a C0+C1 does not move the deadline.
    server
        .handle_input(start + Duration::from_secs(1), &[3; 700])
        .unwrap();
    assert_eq!(
        server.poll_timeout(),
        Some(start + config.handshake_timeout)
    );
    server
        .handle_timeout(start + config.handshake_timeout - Duration::from_millis(1))
        .unwrap();
    let err = server
        .handle_timeout(start + config.handshake_timeout)
        .unwrap_err();
    assert!(matches!(err, SessionError::Timeout(_)), "{err}");
    assert!(err.to_string().contains("handshake"), "{err}");
}

#[test]
fn connected_but_idle_peer_times_out() {
    let mut pair = Pair::new(publish("x", "live"));
    pair.pump().unwrap(); // connect requested, never answered
    let deadline = pair.server.poll_timeout().unwrap();
    assert_eq!(
        deadline,
        pair.now + ServerConfig::default().handshake_timeout
    );
    assert!(pair.server.handle_timeout(deadline).is_err());
}

#[test]
fn media_timeout_with_a_fake_clock() {
    let mut pair = Pair::publishing("x");
    let media_timeout = ServerConfig::default().media_timeout;
    assert_eq!(pair.server.poll_timeout(), Some(pair.now + media_timeout));
    pair.now += Duration::from_secs(5);
    pair.client
        .send_media(&media(type_id::AUDIO, 0, b"\xaf\x01"))
        .unwrap();
    pair.pump().unwrap();
    let deadline = pair.now + media_timeout;
    assert_eq!(pair.server.poll_timeout(), Some(deadline));
    pair.server
        .handle_timeout(deadline - Duration::from_millis(1))
        .unwrap();
    let err = pair.server.handle_timeout(deadline).unwrap_err();
    assert!(err.to_string().contains("no media"), "{err}");
}

#[test]
fn a_slow_publish_decision_does_not_eat_the_media_timeout() {
    let mut pair = Pair::new(publish("x", "live"));
    pair.connect();
    let _ = pair.take_server_events();
    let media_timeout = ServerConfig::default().media_timeout;
    // The node asks its origin for longer than media_timeout; the encoder waits for
    // Publish.Start and sends nothing meanwhile.
    pair.now += media_timeout + Duration::from_secs(1);
    pair.server.accept_publish(1);
    pair.server.resume_media_clock(pair.now);
    assert_eq!(pair.server.poll_timeout(), Some(pair.now + media_timeout));
    pair.server.handle_timeout(pair.now).unwrap();
    // An earlier instant never moves the clock back.
    pair.server
        .resume_media_clock(pair.now - Duration::from_secs(3));
    assert_eq!(pair.server.poll_timeout(), Some(pair.now + media_timeout));
}

#[test]
fn playing_session_has_no_deadline() {
    let mut pair = Pair::new(ClientGoal::Play { name: "x".into() });
    pair.connect();
    pair.server.accept_play(1);
    pair.pump().unwrap();
    assert_eq!(pair.server.poll_timeout(), None);
}

/// A small deterministic generator for garbage (xorshift64).
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn garbage_after_the_handshake_errors_and_never_panics() {
    for seed in 1..200u64 {
        let mut pair = Pair::new(publish("x", "live"));
        pair.pump().unwrap();
        let mut result = Ok(Vec::new());
        for piece in garbage(seed, 4096).chunks(333) {
            result = pair.server.handle_input(pair.now, piece);
            if result.is_err() {
                break;
            }
        }
        let _ = result; // any outcome but a panic is fine for random bytes
    }
    // A chunk continuing a message on a chunk stream never started is a clear error.
    let mut pair = Pair::new(publish("x", "live"));
    pair.pump().unwrap();
    let err = pair
        .server
        .handle_input(pair.now, &[0xc9, 0, 0])
        .unwrap_err();
    assert!(matches!(err, SessionError::Chunk(_)), "{err}");
    // A command that is not AMF0 is a clear error.
    let mut pair = Pair::new(publish("x", "live"));
    pair.pump().unwrap();
    pair.client.send_raw(RtmpMessage {
        timestamp: 0,
        type_id: type_id::COMMAND_AMF0,
        stream_id: 0,
        payload: Bytes::from_static(&[0xff, 0xff]),
    });
    assert!(matches!(pair.pump(), Err(SessionError::BadCommand { .. })));
}

#[test]
fn garbage_handshake_is_an_error() {
    let mut server = ServerSession::new(ServerConfig::default(), Instant::now());
    let err = server
        .handle_input(Instant::now(), b"GET / HTTP/1.1\r\n\r\n")
        .unwrap_err();
    assert!(err.to_string().contains("HTTP"), "{err}");
}

#[test]
fn ping_and_acknowledgement_windows_are_answered() {
    let mut pair = Pair::publishing("x");
    pair.client.send_raw(message::ping_request(1234));
    pair.client.send_raw(message::window_ack_size(5000));
    pair.pump().unwrap();
    for _ in 0..3 {
        pair.client
            .send_media(&media(type_id::VIDEO, 0, &[0x27; 3000]))
            .unwrap();
        pair.pump().unwrap();
    }
    let received = pair.client.received();
    assert!(received
        .iter()
        .any(|m| m.type_id == type_id::USER_CONTROL && m.payload[..] == [0, 7, 0, 0, 0x04, 0xd2]));
    let acks = received
        .iter()
        .filter(|m| m.type_id == type_id::ACKNOWLEDGEMENT)
        .count();
    assert!(
        acks >= 1,
        "no acknowledgement after 9000 bytes with a 5000 window"
    );
}

#[test]
fn connect_result_echoes_four_cc_list_and_object_encoding() {
    let mut pair = Pair::new(publish("x", "live"));
    pair.connect();
    let result = pair
        .client
        .received()
        .iter()
        .filter_map(|m| Command::parse(m).ok())
        .find(|c| c.name == "_result" && c.transaction_id == 1.0)
        .expect("connect _result");
    assert_eq!(
        result.command_object.get("fmsVer"),
        Some(&Amf0Value::String("FMS/3,0,1,123".into()))
    );
    assert!(result.command_object.get("fourCcList").is_some());
    let info = result.arguments.first().unwrap();
    assert_eq!(
        info.get("code").and_then(|v| v.as_str()),
        Some("NetConnection.Connect.Success")
    );
    assert_eq!(info.get("objectEncoding"), Some(&Amf0Value::Number(0.0)));
    // The server switched to its configured chunk size.
    assert!(pair
        .client
        .received()
        .iter()
        .any(|m| m.type_id == type_id::SET_CHUNK_SIZE && m.payload[..] == 4096u32.to_be_bytes()));
}

/// A command message (type 20) of `n` AMF0 nulls in a strict array: `0x0A <u32 n> 0x05 x n`.
fn strict_array_of_nulls(n: u32) -> RtmpMessage {
    let mut body = vec![0x0a];
    body.extend_from_slice(&n.to_be_bytes());
    body.resize(5 + n as usize, 0x05);
    RtmpMessage {
        timestamp: 0,
        type_id: type_id::COMMAND_AMF0,
        stream_id: 0,
        payload: body.into(),
    }
}

#[test]
fn huge_command_is_refused_from_its_header() {
    // The attack of the review: Set Chunk Size 16 MiB, then a 16 MiB command holding a
    // strict array of nulls (each byte became a 56-byte value: 16 MB in, 819 MB peak).
    let mut pair = Pair::new(publish("x", "live"));
    pair.pump().unwrap();
    pair.client
        .send_raw(crate::chunk::ChunkEncoder::set_chunk_size_message(
            crate::chunk::MAX_CHUNK_SIZE,
        ));
    pair.pump().unwrap();
    let attack = strict_array_of_nulls(crate::chunk::MAX_MESSAGE_LEN - 5);
    let mut enc = crate::chunk::ChunkEncoder::new();
    enc.set_chunk_size(crate::chunk::MAX_CHUNK_SIZE);
    let bytes = enc.encode_to_vec(3, &attack);
    // The 12-byte chunk header alone is refused: nothing of the payload is buffered.
    let err = pair
        .server
        .handle_input(pair.now, &bytes[..12])
        .unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Chunk(crate::chunk::ChunkError::MessageTooLarge {
                type_id: 20,
                len: 16_777_215,
                max: 65_536
            })
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "message of type 20 declares 16777215 bytes, more than the 65536 allowed for its type"
    );
}

#[test]
fn large_but_legal_command_array_decodes() {
    // A 15 KB createStream whose argument is an array of 15000 nulls: within the command
    // cap and the AMF0 value budget, so it is read (and answered) like any createStream.
    let mut pair = Pair::publishing("x");
    let mut m = Command::new("createStream", 10.0, Amf0Value::Null, vec![]).to_message(0);
    let array = strict_array_of_nulls(15_000);
    let mut body = BytesMut::from(&m.payload[..]);
    body.extend_from_slice(&array.payload);
    m.payload = body.freeze();
    pair.client.send_raw(m);
    pair.pump().unwrap();
    assert!(pair.client.received().iter().any(|m| {
        Command::parse(m).is_ok_and(|c| c.name == "_result" && c.transaction_id == 10.0)
    }));
}

#[test]
fn big_media_is_refused_until_a_publish_is_accepted() {
    use crate::chunk::{ChunkError, MAX_MESSAGE_LEN};
    use crate::server::PRE_PUBLISH_MAX_BYTES;
    let big: &'static [u8] = Box::leak(vec![0x27u8; PRE_PUBLISH_MAX_BYTES + 1].into_boxed_slice());
    // Publish requested, not accepted: a frame over 1 MiB is refused from its header.
    let mut pair = Pair::new(publish("x", "live"));
    pair.connect();
    pair.take_server_events();
    let mut m = media(type_id::VIDEO, 0, big);
    m.stream_id = 1;
    pair.client.send_raw(m.clone());
    let err = pair.pump().unwrap_err();
    assert!(
        matches!(
            err,
            SessionError::Chunk(ChunkError::MessageTooLarge { type_id: 9, max, .. })
                if max as usize == PRE_PUBLISH_MAX_BYTES
        ),
        "{err}"
    );
    // Once accepted, the same frame (and up to the protocol maximum) is fine.
    let mut pair = Pair::publishing("x");
    pair.client.send_media(&m).unwrap();
    pair.pump().unwrap();
    assert_eq!(media_events(&pair.take_server_events()).len(), 1);
    assert_eq!(
        crate::chunk::DecoderLimits::default().max_media_len,
        MAX_MESSAGE_LEN
    );
}

impl Pair {
    /// `fail(err)` on the server, then its output to the client: what the client reports.
    fn fail_and_deliver(&mut self, err: &SessionError) -> Vec<ClientEvent> {
        self.server.fail(err);
        assert!(self.server.should_close());
        let to_client = self.server.output().to_vec();
        bytes::Buf::advance(self.server.output(), to_client.len());
        self.client
            .handle_input(self.now, &to_client)
            .expect("client reads the last words")
    }

    /// Last words for `err` are exactly one rejection with `code` carrying the error text.
    fn assert_told(&mut self, err: &SessionError, code: &str) {
        let events = self.fail_and_deliver(err);
        let text = err.to_string();
        assert_eq!(
            events,
            vec![ClientEvent::Rejected {
                code: code.into(),
                description: text
            }],
            "after {err:?}"
        );
        // A second call adds nothing.
        self.server.fail(err);
        assert_eq!(self.server.output().len(), 0);
    }
}

#[test]
fn fail_says_nothing_before_the_handshake_completes() {
    let mut pair = Pair::new(publish("x", "live"));
    let err = pair
        .server
        .handle_input(pair.now, &garbage(3, 1537))
        .unwrap_err();
    let before = pair.server.output().len();
    pair.server.fail(&err);
    assert!(pair.server.should_close());
    assert_eq!(pair.server.output().len(), before);
    assert!(!pair.server.is_handshake_done());
}

#[test]
fn fail_before_connect_is_accepted_rejects_the_connect() {
    // Timed out waiting for the driver (e.g. the registry) to answer connect.
    let mut pair = Pair::new(publish("x", "live"));
    pair.pump().unwrap();
    pair.take_server_events();
    let later = pair.now + Duration::from_secs(11);
    let err = pair.server.handle_timeout(later).unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    pair.assert_told(&err, "NetConnection.Connect.Rejected");

    // A command too large for the pre-authorisation limits, before connect is answered.
    let mut pair = Pair::new(publish("x", "live"));
    pair.pump().unwrap();
    pair.client.send_raw(strict_array_of_nulls(70_000));
    let err = pair.pump().unwrap_err();
    assert!(
        err.to_string().contains("more than the 65536 allowed"),
        "{err}"
    );
    pair.assert_told(&err, "NetConnection.Connect.Rejected");
}

#[test]
fn fail_after_connect_without_a_stream_answers_on_stream_0() {
    // Unknown publish type: a bad command, no stream active yet.
    let mut pair = Pair::new(publish("x", "sideways"));
    pair.pump().unwrap();
    pair.server.accept_connect();
    let err = pair.pump().unwrap_err();
    assert!(err.to_string().contains("unknown publish type"), "{err}");
    pair.assert_told(&err, "NetConnection.Call.Failed");

    // Publish on a stream never created, by a player.
    let mut pair = Pair::new(ClientGoal::Play { name: "x".into() });
    pair.connect();
    pair.take_server_events();
    pair.client.send_raw(
        Command::new(
            "publish",
            9.0,
            Amf0Value::Null,
            vec![Amf0Value::String("y".into())],
        )
        .to_message(5),
    );
    let err = pair.pump().unwrap_err();
    assert!(err.to_string().contains("never created"), "{err}");
    // The play request on stream 1 is pending: the error goes there.
    pair.assert_told(&err, "NetStream.Play.Failed");

    // Connected, then idle: an idle timeout.
    let mut pair = Pair::new(publish("x", "live"));
    pair.pump().unwrap();
    pair.server.accept_connect();
    let err = pair
        .server
        .handle_timeout(pair.now + Duration::from_secs(11))
        .unwrap_err();
    pair.assert_told(&err, "NetConnection.Connect.IdleTimeout");
}

#[test]
fn fail_while_publishing_answers_on_the_publishing_stream() {
    // createStream limit.
    let mut pair = Pair::publishing("x");
    let mut result = Ok(());
    for i in 0..MAX_OPEN_STREAMS {
        pair.client.send_raw(
            Command::new("createStream", 10.0 + i as f64, Amf0Value::Null, vec![]).to_message(0),
        );
        result = pair.pump();
    }
    let err = result.unwrap_err();
    pair.assert_told(&err, "NetStream.Failed");

    // Media timeout.
    let mut pair = Pair::publishing("x");
    let err = pair
        .server
        .handle_timeout(pair.now + Duration::from_secs(16))
        .unwrap_err();
    assert!(err.to_string().contains("no media"), "{err}");
    pair.assert_told(&err, "NetStream.Failed");

    // Held media overflow (publish requested, not accepted yet).
    let (mut pair, err) = overflow_held_media(512 * 1024);
    pair.assert_told(&err, "NetStream.Failed");

    // Media on a stream never created, while publishing on stream 1.
    let mut pair = Pair::publishing("x");
    let mut m = media(type_id::VIDEO, 0, b"\x17");
    m.stream_id = 7;
    pair.client.send_raw(m);
    let err = pair.pump().unwrap_err();
    pair.assert_told(&err, "NetStream.Failed");
}

#[test]
fn fail_after_a_rejection_adds_nothing() {
    let mut pair = Pair::new(publish("x", "live"));
    pair.pump().unwrap();
    pair.server.reject_connect("bad token");
    let queued = pair.server.output().len();
    pair.server.fail(&SessionError::Protocol("late".into()));
    assert_eq!(pair.server.output().len(), queued);
    assert!(pair.server.should_close());
}

#[test]
fn a_reconnect_request_reaches_a_publisher_on_its_connection() {
    let mut pair = Pair::publishing("1_abcdefgh_1");
    // This client sent no capsEx: it does not say it handles a reconnect request.
    assert!(!pair.server.connect_request().unwrap().supports_reconnect());
    pair.client_events.clear();
    pair.server
        .request_reconnect("edge fra-1 is shutting down: connect again");
    pair.pump().unwrap();
    assert_eq!(
        pair.client_events,
        vec![ClientEvent::Status {
            level: "status".into(),
            code: "NetConnection.Connect.ReconnectRequest".into(),
            description: "edge fra-1 is shutting down: connect again".into(),
        }]
    );
}

#[test]
fn caps_ex_says_whether_a_client_handles_a_reconnect_request() {
    let with = |caps: Amf0Value| {
        let request = crate::server::ConnectRequest {
            app: "kLive".into(),
            tc_url: None,
            flash_ver: None,
            command_object: Amf0Value::Object(vec![("capsEx".into(), caps)]),
        };
        request.supports_reconnect()
    };
    assert!(with(Amf0Value::Number(1.0)));
    assert!(with(Amf0Value::Number(3.0)));
    assert!(!with(Amf0Value::Number(2.0)));
    assert!(!with(Amf0Value::Number(-1.0)));
    assert!(!with(Amf0Value::Number(f64::NAN)));
    assert!(!with(Amf0Value::String("1".into())));
}

/// Hands `bytes` to the server the way a driver does: read into its buffer, no more per
/// read than the room it offers.
fn read_in(server: &mut ServerSession, now: Instant, bytes: &[u8]) -> Vec<ServerEvent> {
    read_in_blocks(server, now, bytes, &mut std::collections::HashMap::new())
}

/// [`read_in`], noting each block read into: where it ends, and its size when first seen
/// (a block is first seen just after it was taken, when it starts where its allocation
/// does).
fn read_in_blocks(
    server: &mut ServerSession,
    now: Instant,
    mut bytes: &[u8],
    blocks: &mut std::collections::HashMap<usize, usize>,
) -> Vec<ServerEvent> {
    let mut events = Vec::new();
    while !bytes.is_empty() {
        let buffer = server.read_buffer();
        blocks.entry(block_end(buffer)).or_insert(buffer.capacity());
        let n = (buffer.capacity() - buffer.len()).min(bytes.len());
        assert!(n > 0, "the read buffer offers room");
        buffer.extend_from_slice(&bytes[..n]);
        bytes = &bytes[n..];
        events.extend(server.handle_read(now, n).unwrap());
        while server.has_undecoded_input() {
            events.extend(server.handle_read(now, 0).unwrap());
        }
    }
    events
}

/// What a peer's `ChunkEncoder` writes for `messages` on chunk stream `csid`.
fn chunked(
    encoder: &mut crate::chunk::ChunkEncoder,
    csid: u32,
    messages: &[RtmpMessage],
) -> Vec<u8> {
    let mut out = crate::output::OutputQueue::new();
    for m in messages {
        encoder.encode(csid, m, &mut out);
    }
    out.to_vec()
}

/// Where `buffer`'s allocation ends: the same for as long as it reads into one block
/// (its start moves as bytes are consumed and moved back to the front).
fn block_end(buffer: &BytesMut) -> usize {
    buffer.as_ptr() as usize + buffer.capacity()
}

#[test]
fn a_players_one_small_block_is_reused_for_the_whole_connection() {
    let mut pair = Pair::new(ClientGoal::Play { name: "x".into() });
    pair.connect();
    pair.take_server_events();
    pair.server.accept_play(1);
    pair.pump().unwrap();
    let buffer = pair.server.read_buffer();
    assert!(
        buffer.capacity() <= 2 * READ_BLOCK,
        "{} bytes",
        buffer.capacity()
    );
    let end = block_end(buffer);
    let mut encoder = crate::chunk::ChunkEncoder::new();
    // 300 KB of acknowledgements and pings, far more than the block holds.
    for i in 0..20_000 {
        pair.now += Duration::from_millis(1); // 2,000 messages a second: within the rate
        let bytes = chunked(
            &mut encoder,
            2,
            &[message::acknowledgement(i), message::ping_response(i)],
        );
        read_in(&mut pair.server, pair.now, &bytes);
        assert_eq!(
            block_end(pair.server.read_buffer()),
            end,
            "read {i} went to a new block"
        );
    }
}

#[test]
fn a_publishers_media_are_slices_of_its_read_blocks() {
    let mut pair = Pair::publishing("stream");
    let mut encoder = crate::chunk::ChunkEncoder::new();
    let mut bytes = chunked(&mut encoder, 2, &[message::set_chunk_size(4096)]);
    encoder.set_chunk_size(4096);
    let frame = |i: u32| RtmpMessage {
        timestamp: i * 40,
        type_id: type_id::VIDEO,
        stream_id: 1,
        payload: Bytes::from(vec![0x27; 3000]),
    };
    bytes.extend(chunked(&mut encoder, 6, &[frame(0)]));
    let buffer = pair.server.read_buffer();
    let block = buffer.as_ptr() as usize..block_end(buffer);
    let events = read_in(&mut pair.server, pair.now, &bytes);
    let media = media_events(&events);
    assert_eq!(media.len(), 1);
    let payload = media[0].1.payload.as_ptr() as usize;
    assert!(
        block.contains(&payload),
        "the frame was copied out of the block"
    );

    // Held frames keep their blocks, and a fresh block (a publisher's size) takes
    // several frames: not an allocation per message. Two frames per read, so reads end
    // mid-chunk and blocks change with an undecoded tail.
    let mut held = Vec::new();
    let mut blocks = std::collections::HashMap::new();
    for i in 1..=100 {
        let bytes = chunked(&mut encoder, 6, &[frame(2 * i), frame(2 * i + 1)]);
        held.extend(media_events(&read_in_blocks(
            &mut pair.server,
            pair.now,
            &bytes,
            &mut blocks,
        )));
    }
    assert_eq!(held.len(), 200);
    assert!(held.iter().all(|(_, m)| m.payload.len() == 3000));
    blocks.remove(&block.end);
    // Each a block's size, never grown to hold a tail beside a whole block: 600 KB in
    // blocks of 16 KiB, each left once less than 4 KiB is free.
    assert!(
        blocks.values().all(|&size| size == PUBLISH_READ_BLOCK),
        "{blocks:?}"
    );
    assert!(
        blocks.len() <= 600_000 / (PUBLISH_READ_BLOCK - 4096) + 2,
        "{} blocks",
        blocks.len()
    );

    // Frames let go at once (acknowledged, nothing kept): the block is reused in place
    // and never grows past a block's size, tails and all.
    drop(held);
    let mut blocks = std::collections::HashMap::new();
    for i in 101..=300 {
        let bytes = chunked(&mut encoder, 6, &[frame(2 * i), frame(2 * i + 1)]);
        drop(read_in_blocks(
            &mut pair.server,
            pair.now,
            &bytes,
            &mut blocks,
        ));
    }
    assert!(
        blocks.values().all(|&size| size <= PUBLISH_READ_BLOCK),
        "{blocks:?}"
    );
}
