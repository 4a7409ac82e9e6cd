//! The hub through its public API: snapshots, takeover, end of stream, slow players
//! and fan-out.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use longhaul_hub::*;
use longhaul_rtmp::media::Codec;
use longhaul_rtmp::RtmpMessage;

#[allow(dead_code)]
#[path = "../src/testutil.rs"]
mod testutil;
use testutil::*;

fn key(leg: Leg) -> StreamKey {
    StreamKey::new("1_gdrt137u_1", leg)
}

fn encoder(connection_id: u64) -> PublisherInfo {
    PublisherInfo {
        addr: format!("192.0.2.{connection_id}:50000"),
        connection_id,
        ..Default::default()
    }
}

fn stripped_metadata() -> RtmpMessage {
    let (meta, offset) = set_data_frame(0);
    RtmpMessage {
        payload: meta.payload.slice(offset..),
        ..meta
    }
}

fn drain(sub: &mut Subscription) -> Vec<PlayerEvent> {
    std::iter::from_fn(|| sub.try_recv())
        .take_while(|e| !matches!(e, PlayerEvent::Ended | PlayerEvent::Dropped { .. }))
        .collect()
}

fn m(message: RtmpMessage) -> PlayerEvent {
    PlayerEvent::Message(message)
}

#[test]
fn new_player_gets_metadata_headers_then_gop_from_its_keyframe() {
    let hub = Hub::new();
    let (publication, outcome) = hub.publish(key(Leg::Primary), encoder(1));
    assert_eq!(outcome, PublishOutcome::New);
    for message in [
        set_data_frame(0).0,
        avc_header(0),
        aac_header(0),
        inter(0, 100), // before the first keyframe
        keyframe(40, 1000),
        aac(41),
        inter(80, 100),
    ] {
        publication.push(message).expect("current publisher");
    }
    let mut player = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    publication
        .push(inter(120, 100))
        .expect("current publisher");
    assert_eq!(
        drain(&mut player),
        vec![
            m(stripped_metadata()),
            m(avc_header(0)),
            m(aac_header(0)),
            m(keyframe(40, 1000)),
            m(aac(41)),
            m(inter(80, 100)),
            m(inter(120, 100)),
        ]
    );
}

#[test]
fn no_gap_and_no_duplicate_between_snapshot_and_live() {
    const MESSAGES: u32 = 1500; // below the player queue bound: nobody is skipped
    let hub = Hub::new();
    let (publication, _) = hub.publish(key(Leg::Primary), encoder(1));
    publication.push(avc_header(0)).expect("current publisher");
    let publisher = std::thread::spawn(move || {
        for ts in 0..MESSAGES {
            let message = if ts % 10 == 0 {
                keyframe(ts, 50)
            } else {
                inter(ts, 50)
            };
            publication.push(message).expect("current publisher");
            if ts % 50 == 0 {
                std::thread::yield_now();
            }
        }
        // Dropping the publication ends the stream.
    });
    let mut players = Vec::new();
    while !publisher.is_finished() {
        if let Some(player) = hub.subscribe("1_gdrt137u_1", LegChoice::PreferPrimary) {
            players.push(player);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    publisher.join().expect("publisher thread");
    assert!(!players.is_empty());
    for player in &mut players {
        let events = drain(player);
        assert_eq!(events.first(), Some(&m(avc_header(0))));
        let timestamps: Vec<u32> = events[1..]
            .iter()
            .map(|e| match e {
                PlayerEvent::Message(message) => message.timestamp,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        if let Some(&first) = timestamps.first() {
            assert_eq!(first % 10, 0, "starts on a keyframe");
            let expected: Vec<u32> = (first..MESSAGES).collect();
            assert_eq!(timestamps, expected, "no gap, no duplicate");
        }
        assert_eq!(player.try_recv(), Some(PlayerEvent::Ended));
    }
}

#[test]
fn oversized_gop_is_not_cached_and_new_players_wait_for_a_keyframe() {
    let hub = Hub::new();
    let (publication, _) = hub.publish(key(Leg::Primary), encoder(1));
    publication.push(avc_header(0)).expect("current");
    publication
        .push(keyframe(0, GOP_CACHE_MAX_BYTES - 1000))
        .expect("current");
    publication.push(inter(40, 2000)).expect("current");
    let summary = hub.stream(&key(Leg::Primary)).expect("live");
    assert_eq!(summary.gop_overflows, 1);
    assert_eq!(summary.gop_cache_bytes, 0);

    let mut player = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    publication.push(inter(80, 100)).expect("current");
    publication.push(aac(81)).expect("current");
    publication.push(keyframe(120, 100)).expect("current");
    assert_eq!(
        drain(&mut player),
        vec![m(avc_header(0)), m(keyframe(120, 100))]
    );
}

#[tokio::test]
async fn takeover_tells_the_old_publication_and_players_carry_on() {
    let hub = Hub::new();
    let (old, _) = hub.publish(key(Leg::Primary), encoder(1));
    old.push(avc_header(0)).expect("current");
    old.push(keyframe(0, 100)).expect("current");
    let mut player = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    assert_eq!(drain(&mut player).len(), 2);

    let (new, outcome) = hub.publish(key(Leg::Primary), encoder(2));
    assert_eq!(
        outcome,
        PublishOutcome::TookOver {
            previous: encoder(1)
        }
    );
    assert!(old.is_taken_over());
    tokio::time::timeout(Duration::from_secs(1), old.taken_over())
        .await
        .expect("taken_over resolves");
    assert_eq!(old.push(inter(40, 100)), Err(TakenOver));
    drop(old); // no longer the publisher: does not end the stream
    assert_eq!(player.try_recv(), None);

    let mut header = avc_header(0);
    header.payload = bytes::Bytes::from_static(&[0x17, 0x00, 0, 0, 0, 7]);
    new.push(header.clone()).expect("current");
    new.push(keyframe(0, 100)).expect("current");
    // The new publisher's timeline continues 1 ms after the old one's last timestamp.
    let rebased = |message: RtmpMessage| RtmpMessage {
        timestamp: message.timestamp + TAKEOVER_TIMESTAMP_STEP_MS,
        ..message
    };
    assert_eq!(
        drain(&mut player),
        vec![m(rebased(header)), m(rebased(keyframe(0, 100)))]
    );

    let summary = hub.stream(&key(Leg::Primary)).expect("live");
    assert_eq!(summary.takeovers, 1);
    assert_eq!(summary.timestamp_offset, TAKEOVER_TIMESTAMP_STEP_MS);
    assert_eq!(summary.publisher, encoder(2));
    assert_eq!(summary.players, 1);
    assert!(!new.is_taken_over());

    new.finish();
    assert_eq!(player.recv().await, PlayerEvent::Ended);
}

#[tokio::test]
async fn a_resumed_publication_continues_the_stream_without_a_rebase() {
    let hub = Hub::new();
    let (old, outcome) = hub.resume(key(Leg::Primary), encoder(1), 77);
    assert_eq!(outcome, PublishOutcome::New);
    old.push(avc_header(0)).expect("current");
    old.push(keyframe(3_000, 100)).expect("current");
    let mut player = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    assert_eq!(drain(&mut player).len(), 2);

    // The same encoder publish, on a new tunnel stream: it continues.
    let (new, outcome) = hub.resume(key(Leg::Primary), encoder(2), 77);
    assert_eq!(
        outcome,
        PublishOutcome::Resumed {
            previous: encoder(1)
        }
    );
    assert!(old.is_taken_over());
    assert_eq!(old.push(inter(3_040, 100)), Err(TakenOver));
    drop(old);
    new.push(inter(3_040, 100)).expect("current");
    // Timestamps exactly as the encoder sent them: no offset, no repeated headers.
    assert_eq!(drain(&mut player), vec![m(inter(3_040, 100))]);
    // A new player still gets the configuration and the GOP from before the resume.
    let mut late = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    assert_eq!(
        drain(&mut late),
        vec![
            m(avc_header(0)),
            m(keyframe(3_000, 100)),
            m(inter(3_040, 100))
        ]
    );
    let summary = hub.stream(&key(Leg::Primary)).expect("live");
    assert_eq!((summary.resumes, summary.takeovers), (1, 0));
    assert_eq!(summary.timestamp_offset, 0);

    // Another publish (another id, or a direct one) is a takeover as before.
    let (other, outcome) = hub.resume(key(Leg::Primary), encoder(3), 78);
    assert!(matches!(outcome, PublishOutcome::TookOver { .. }));
    other.push(keyframe(0, 100)).expect("current");
    assert_eq!(
        drain(&mut player),
        vec![m(RtmpMessage {
            timestamp: 3_040 + TAKEOVER_TIMESTAMP_STEP_MS,
            ..keyframe(0, 100)
        })]
    );
    let (_direct, outcome) = hub.publish(key(Leg::Primary), encoder(4));
    assert!(matches!(outcome, PublishOutcome::TookOver { .. }));
}

#[tokio::test]
async fn finish_ends_the_stream_after_what_players_have_queued() {
    let hub = Hub::new();
    let (publication, _) = hub.publish(key(Leg::Primary), encoder(1));
    let mut player = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    let waiter = tokio::spawn(async move {
        let mut events = Vec::new();
        loop {
            let event = player.recv().await;
            let end = event == PlayerEvent::Ended;
            events.push(event);
            if end {
                break;
            }
        }
        assert_eq!(player.recv().await, PlayerEvent::Ended, "Ended is sticky");
        events
    });
    tokio::task::yield_now().await;
    publication.push(aac_header(0)).expect("current");
    publication.push(aac(0)).expect("current");
    publication.finish();
    let events = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("player ends")
        .expect("player task");
    assert_eq!(
        events,
        vec![m(aac_header(0)), m(aac(0)), PlayerEvent::Ended]
    );
    assert!(!hub.is_live(&key(Leg::Primary)));
    assert!(hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .is_none());
    assert!(hub.streams().is_empty());
}

#[test]
fn slow_player_is_skipped_to_a_keyframe_and_resumes_there() {
    let hub = Hub::new();
    let (publication, _) = hub.publish(key(Leg::Primary), encoder(1));
    publication.push(avc_header(0)).expect("current");
    publication.push(keyframe(0, 100)).expect("current");
    let mut slow = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    let mut ts = 1;
    for _ in 0..PLAYER_QUEUE_MAX_MESSAGES + 10 {
        publication.push(inter(ts, 100)).expect("current");
        ts += 1;
    }
    publication.push(keyframe(ts, 100)).expect("current");
    publication.push(inter(ts + 1, 100)).expect("current");
    // Snapshot (2) + 2046 inter frames fill the queue; it is emptied when the next
    // arrives, and that one and the 11 after it are lost too.
    let lost = PLAYER_QUEUE_MAX_MESSAGES as u64 + 12;
    assert_eq!(
        drain(&mut slow),
        vec![
            PlayerEvent::Skipped {
                dropped_messages: lost
            },
            m(avc_header(0)), // the unread snapshot's header was lost: sent again
            m(keyframe(ts, 100)),
            m(inter(ts + 1, 100)),
        ]
    );
    assert_eq!(
        hub.stream(&key(Leg::Primary)).expect("live").player_skips,
        1
    );
}

#[test]
fn publisher_never_blocks_on_a_stuck_player() {
    const MESSAGES: u32 = 100_000;
    let hub = Hub::new();
    let (publication, _) = hub.publish(key(Leg::Primary), encoder(1));
    publication.push(avc_header(0)).expect("current");
    let _stuck = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    let mut reader = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    let started = Instant::now();
    let mut read = 0usize;
    for ts in 0..MESSAGES {
        let message = if ts % 50 == 0 {
            keyframe(ts, 64)
        } else {
            inter(ts, 64)
        };
        publication.push(message).expect("current");
        if ts % 1000 == 999 {
            read += drain(&mut reader).len();
        }
    }
    let elapsed = started.elapsed();
    read += drain(&mut reader).len();
    // Debug build, shared 2-core machine: well under a second in practice.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(
        read,
        MESSAGES as usize + 1,
        "the reading player missed nothing"
    );
    let summary = hub.stream(&key(Leg::Primary)).expect("live");
    assert_eq!(summary.player_skips, PLAYER_MAX_SKIPS as u64 - 1);
    assert_eq!(summary.players_dropped, 1);
    assert_eq!(summary.players, 1);
}

#[test]
fn repeatedly_skipped_player_is_dropped() {
    let hub = Hub::new();
    let (publication, _) = hub.publish(key(Leg::Primary), encoder(1));
    publication.push(avc_header(0)).expect("current");
    let mut stuck = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    let mut ts = 0;
    while hub
        .stream(&key(Leg::Primary))
        .expect("live")
        .players_dropped
        == 0
    {
        let message = if ts % 50 == 0 {
            keyframe(ts, 64)
        } else {
            inter(ts, 64)
        };
        publication.push(message).expect("current");
        ts += 1;
        assert!(ts < 100_000, "never dropped");
    }
    let reason = DropReason::TooSlow {
        skips: PLAYER_MAX_SKIPS,
        window: PLAYER_SKIP_WINDOW,
    };
    assert_eq!(stuck.try_recv(), Some(PlayerEvent::Dropped { reason }));
    assert_eq!(stuck.try_recv(), Some(PlayerEvent::Dropped { reason }));
    assert_eq!(hub.stream(&key(Leg::Primary)).expect("live").players, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_players_that_keep_up_receive_everything_sharing_payloads() {
    const PLAYERS: usize = 100;
    const MESSAGES: u32 = 3000;
    const BATCH: u32 = 200; // well below the queue bound
    let hub = Hub::new();
    let (publication, _) = hub.publish(key(Leg::Primary), encoder(1));
    let mut pushed = vec![avc_header(0), keyframe(0, 100)];
    for message in &pushed {
        publication.push(message.clone()).expect("current");
    }
    let received = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..PLAYERS {
        let mut player = hub
            .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
            .expect("live");
        let received = Arc::clone(&received);
        tasks.push(tokio::spawn(async move {
            let mut events = Vec::new();
            loop {
                match player.recv().await {
                    PlayerEvent::Ended => return events,
                    event => {
                        events.push(event);
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for ts in 1..=MESSAGES {
        let message = match ts % 50 {
            0 => keyframe(ts, 1000 + ts as usize),
            n if n % 2 == 0 => aac(ts),
            _ => inter(ts, 500 + ts as usize),
        };
        pushed.push(message.clone());
        publication.push(message).expect("current");
        if ts % BATCH == 0 {
            // Pace the publisher so the players keep up.
            let target = PLAYERS * pushed.len();
            while received.load(Ordering::Relaxed) < target {
                tokio::task::yield_now().await;
            }
        }
    }
    publication.finish();
    for task in tasks {
        let events = task.await.expect("player task");
        assert_eq!(events.len(), pushed.len());
        for (event, sent) in events.iter().zip(&pushed) {
            let PlayerEvent::Message(got) = event else {
                panic!("unexpected {event:?}");
            };
            assert_eq!(got, sent);
            assert_eq!(
                got.payload.as_ptr(),
                sent.payload.as_ptr(),
                "shared, not copied"
            );
        }
    }
}

#[test]
fn leg_choice_prefers_primary_and_falls_back() {
    let hub = Hub::new();
    assert!(hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .is_none());
    let (backup, _) = hub.publish(key(Leg::Backup), encoder(2));
    let player = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("backup live");
    assert_eq!(player.leg(), Some(Leg::Backup));
    assert!(hub
        .subscribe("1_gdrt137u_1", LegChoice::Only(Leg::Primary))
        .is_none());
    let (_primary, _) = hub.publish(key(Leg::Primary), encoder(1));
    let player = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    assert_eq!(player.leg(), Some(Leg::Primary));
    let player = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferBackup)
        .expect("live");
    assert_eq!(player.leg(), Some(Leg::Backup));
    drop(backup);
    let player = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferBackup)
        .expect("live");
    assert_eq!(player.leg(), Some(Leg::Primary));
}

#[test]
fn summaries_count_what_came_in() {
    let hub = Hub::new();
    let (publication, _) = hub.publish(key(Leg::Primary), encoder(1));
    let (_backup, _) = hub.publish(key(Leg::Backup), encoder(2));
    let _player = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    publication.push(avc_header(0)).expect("current");
    publication.push(aac_header(0)).expect("current");
    publication.push(keyframe(0, 1000)).expect("current");
    let streams = hub.streams();
    assert_eq!(streams.len(), 2);
    let primary = &streams[0];
    assert_eq!(primary.key, key(Leg::Primary));
    assert_eq!(primary.publisher, encoder(1));
    assert_eq!(primary.players, 1);
    assert_eq!(primary.messages_in, 3);
    assert_eq!(primary.bytes_in, 7 + 4 + 1000);
    assert_eq!(primary.keyframes, 1);
    assert_eq!(primary.video_codec, Some(Codec::Legacy(7)));
    assert_eq!(primary.audio_codec, Some(Codec::Legacy(10)));
    assert_eq!(primary.gop_cache_messages, 1);
    assert_eq!(streams[1].players, 0);
    assert_eq!(streams[1].bytes_in, 0);
}

/// A `tracing` subscriber that records the `stream` field of every warn event.
struct WarnLog(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for WarnLog {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct StreamField(String);
        impl tracing::field::Visit for StreamField {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
                if field.name() == "stream" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut stream = StreamField(String::new());
            event.record(&mut stream);
            self.0.lock().expect("not poisoned").push(stream.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Enhanced RTMP audio SequenceStart for FourCC `fourcc`, `len` bytes.
fn ex_audio_header(ts: u32, fourcc: [u8; 4], len: usize) -> RtmpMessage {
    let mut payload = vec![0x90];
    payload.extend_from_slice(&fourcc);
    payload.resize(len, 0x11);
    message(8, ts, payload)
}

#[test]
fn configuration_flood_is_refused_counted_and_logged_once() {
    const FLOOD: u32 = 5000;
    let warnings = Arc::new(Mutex::new(Vec::new()));
    let _log = tracing::subscriber::set_default(WarnLog(Arc::clone(&warnings)));
    let hub = Hub::new();
    let (publication, _) = hub.publish(key(Leg::Primary), encoder(1));
    for message in [avc_header(0), aac_header(0), keyframe(0, 100)] {
        publication.push(message).expect("current");
    }
    let mut early = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    assert_eq!(drain(&mut early).len(), 3);

    // A new random-looking FourCC with every message: the legacy AAC slot and 7 of
    // these fill the 8 audio slots; the rest are refused. So is a 16 MiB header.
    let flood: Vec<RtmpMessage> = (0..FLOOD)
        .map(|i| ex_audio_header(i, i.wrapping_mul(2_654_435_761).to_be_bytes(), 1000))
        .collect();
    for message in &flood {
        publication.push(message.clone()).expect("current");
    }
    let mut huge = vec![0x17, 0x00];
    huge.resize(16 * 1024 * 1024 - 1, 0);
    publication.push(message(9, 0, huge)).expect("current");
    publication.push(inter(40, 100)).expect("current");

    let kept = CONFIG_MAX_SLOTS_PER_KIND - 1;
    let summary = hub.stream(&key(Leg::Primary)).expect("live");
    assert_eq!(summary.config_refused, u64::from(FLOOD) - kept as u64 + 1);
    assert_eq!(summary.config_bytes, 7 + 4 + kept * 1000);
    assert_eq!(summary.messages_in, 3 + u64::from(FLOOD) + 2);

    // The attached player got the accepted headers only, then the live frame.
    let mut expected: Vec<PlayerEvent> = flood[..kept].iter().cloned().map(m).collect();
    expected.push(m(inter(40, 100)));
    assert_eq!(drain(&mut early), expected);

    // A new player's snapshot holds the bounded configuration, then the GOP.
    let mut late = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    let mut expected = vec![m(avc_header(0)), m(aac_header(0))];
    expected.extend(flood[..kept].iter().cloned().map(m));
    expected.extend([m(keyframe(0, 100)), m(inter(40, 100))]);
    assert_eq!(drain(&mut late), expected);

    assert_eq!(
        *warnings.lock().expect("not poisoned"),
        vec!["1_gdrt137u_1.p".to_string()],
        "one warning for the stream, with its key"
    );
}

/// An hour of stream from one encoder, from `start`: 25 fps video (keyframe every 50
/// frames) interleaved with 48 kHz AAC, after metadata and headers.
fn encoder_stream(start: u32, video_frames: u32) -> Vec<RtmpMessage> {
    let mut messages = vec![
        set_data_frame(start).0,
        avc_header(start),
        aac_header(start),
    ];
    let mut audio = f64::from(start);
    for frame in 0..video_frames {
        let video = start + frame * 40;
        while audio < f64::from(video) + 40.0 {
            messages.push(aac(audio as u32));
            audio += 1024.0 / 48.0;
        }
        messages.push(if frame % 50 == 0 {
            keyframe(video, 200)
        } else {
            inter(video, 100)
        });
    }
    messages
}

fn timestamps(events: &[PlayerEvent]) -> Vec<u32> {
    events
        .iter()
        .map(|e| match e {
            PlayerEvent::Message(message) => message.timestamp,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// Timestamps of one message type (8 audio, 9 video): what a player's demuxer checks
/// for monotonic DTS.
fn track_timestamps(events: &[PlayerEvent], type_id: u8) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            PlayerEvent::Message(message) if message.type_id == type_id => Some(message.timestamp),
            _ => None,
        })
        .collect()
}

fn never_decrease(timestamps: &[u32]) -> bool {
    timestamps.windows(2).all(|w| w[0] <= w[1])
}

#[test]
fn takeover_continues_the_timeline_for_attached_and_new_players() {
    let hub = Hub::new();
    let (a, _) = hub.publish(key(Leg::Primary), encoder(1));
    // Encoder A has been running for an hour.
    let a_stream = encoder_stream(3_600_000, 120);
    for message in &a_stream {
        a.push(message.clone()).expect("current");
    }
    assert_eq!(
        hub.stream(&key(Leg::Primary))
            .expect("live")
            .timestamp_offset,
        0,
        "no takeover: the encoder's own timestamps"
    );
    let mut attached = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    let before = drain(&mut attached);
    // A's own interleave, as sent (audio may trail video by a few ms).
    let a_high = a_stream.iter().map(|m| m.timestamp).max().unwrap_or(0);

    // Encoder B reconnects and takes over, its clock starting at 0.
    let (b, _) = hub.publish(key(Leg::Primary), encoder(2));
    drop(a);
    let b_stream = encoder_stream(0, 120);
    let (b_first, b_rest) = b_stream.split_at(b_stream.len() / 2);
    for message in b_first {
        b.push(message.clone()).expect("current");
    }
    let offset = hub
        .stream(&key(Leg::Primary))
        .expect("live")
        .timestamp_offset;
    assert_eq!(offset, a_high + TAKEOVER_TIMESTAMP_STEP_MS);

    // A player attached across the takeover: B's messages continue after A's, the
    // same messages (shared payloads) shifted by one offset, so B's spacing is kept.
    let after = drain(&mut attached);
    assert_eq!(after.len(), b_first.len());
    for (event, sent) in after.iter().zip(b_first) {
        let PlayerEvent::Message(got) = event else {
            panic!("unexpected {event:?}");
        };
        assert_eq!(got.timestamp, sent.timestamp.wrapping_add(offset));
        // Shared, not copied (metadata is a slice: its wrapper is stripped).
        assert!(sent.payload.as_ptr_range().contains(&got.payload.as_ptr()));
    }
    let first_after = timestamps(&after)[0];
    assert!(
        timestamps(&before).iter().all(|&ts| ts < first_after),
        "every timestamp after the takeover follows every one before it"
    );
    for type_id in [8, 9] {
        let mut track = track_timestamps(&before, type_id);
        track.extend(track_timestamps(&after, type_id));
        assert!(never_decrease(&track), "type {type_id} DTS never decreases");
    }

    // A player that joins after the takeover gets the rebased configuration and GOP,
    // then live messages on the same timeline as the attached player.
    let mut late = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    for message in b_rest {
        b.push(message.clone()).expect("current");
    }
    let live = drain(&mut attached);
    let joined = drain(&mut late);
    let config: Vec<u32> = timestamps(&joined[..3]);
    assert_eq!(config, vec![offset; 3], "metadata and headers rebased");
    let joined_media = &joined[3..];
    let PlayerEvent::Message(gop_start) = &joined_media[0] else {
        panic!("unexpected {:?}", joined_media[0]);
    };
    assert_eq!(gop_start.payload[0], 0x17, "starts on a keyframe");
    let position = after
        .iter()
        .chain(&live)
        .position(|e| e == &joined_media[0])
        .expect("the late player's GOP is what the attached player got");
    let attached_tail: Vec<&PlayerEvent> = after.iter().chain(&live).skip(position).collect();
    assert_eq!(
        joined_media.iter().collect::<Vec<_>>(),
        attached_tail,
        "same messages, same timestamps"
    );
    for type_id in [8, 9] {
        assert!(never_decrease(&track_timestamps(&joined, type_id)));
    }
}

/// The crate doc's claim: a reconnecting encoder whose old connection was closed
/// (FIN/RST reached us, the connection task dropped its publication) before the new
/// publish gets no takeover: the stream ends and starts anew.
#[tokio::test]
async fn reconnect_after_the_old_connection_closed_ends_the_stream_instead() {
    let hub = Hub::new();
    let (old, _) = hub.publish(key(Leg::Primary), encoder(1));
    old.push(avc_header(3_600_000)).expect("current");
    old.push(keyframe(3_600_000, 100)).expect("current");
    let mut player = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    drop(old); // the old connection's task saw FIN or RST first
    let (new, outcome) = hub.publish(key(Leg::Primary), encoder(2));
    assert_eq!(outcome, PublishOutcome::New);
    new.push(keyframe(0, 100)).expect("current");
    assert_eq!(drain(&mut player).len(), 2);
    assert_eq!(player.recv().await, PlayerEvent::Ended);
    let summary = hub.stream(&key(Leg::Primary)).expect("live");
    assert_eq!((summary.takeovers, summary.timestamp_offset), (0, 0));
    let mut again = hub
        .subscribe("1_gdrt137u_1", LegChoice::PreferPrimary)
        .expect("live");
    assert_eq!(
        drain(&mut again),
        vec![m(keyframe(0, 100))],
        "timestamps as sent"
    );
}

/// Whether `live_changed` resolves now (it stores one wake-up until taken).
async fn told(hub: &Hub) -> bool {
    tokio::time::timeout(Duration::from_millis(50), hub.live_changed())
        .await
        .is_ok()
}

/// The node's presence task is woken when a stream starts or ends, not on a takeover
/// or for media, and changes while it is busy fold into one wake-up.
#[tokio::test]
async fn starts_and_ends_wake_the_live_set_watcher_once() {
    let hub = Hub::new();
    assert!(!told(&hub).await, "nothing happened yet");
    let (first, _) = hub.publish(key(Leg::Primary), encoder(1));
    let (backup, _) = hub.publish(key(Leg::Backup), encoder(2));
    assert!(told(&hub).await);
    assert!(!told(&hub).await, "two starts fold into one wake-up");
    let mut keys = hub.keys();
    keys.sort();
    assert_eq!(keys, [key(Leg::Primary), key(Leg::Backup)]);

    first.push(keyframe(0, 100)).unwrap();
    let (second, outcome) = hub.publish(key(Leg::Primary), encoder(3));
    assert!(matches!(outcome, PublishOutcome::TookOver { .. }));
    drop(first); // the taken-over publication: the stream goes on
    assert!(!told(&hub).await, "media and a takeover change nothing");

    drop(second);
    assert!(told(&hub).await, "an end");
    assert_eq!(hub.keys(), [key(Leg::Backup)]);
    drop(backup);
    assert!(told(&hub).await);
    assert!(hub.keys().is_empty());
}

fn replica_of(peer: &str) -> PublisherInfo {
    PublisherInfo {
        addr: "192.0.2.200:7400".into(),
        replica_of: Some(peer.into()),
        ..Default::default()
    }
}

#[test]
fn a_replica_never_takes_over_a_publish_made_here_nor_is_served_on() {
    let hub = Hub::new();
    let (here, _) = hub.publish(key(Leg::Primary), encoder(1));
    assert!(
        hub.publish_replica(key(Leg::Primary), replica_of("pao-1"))
            .is_none(),
        "a replica took over a publish made here"
    );
    assert!(!here.is_taken_over());
    let (_replica, _) = hub
        .publish_replica(key(Leg::Backup), replica_of("pao-1"))
        .expect("nothing here to refuse it");
    // Served to a peer: the leg published here, never the replica.
    assert!(hub.subscribe_local("1_gdrt137u_1", Leg::Primary).is_some());
    assert!(hub.subscribe_local("1_gdrt137u_1", Leg::Backup).is_none());
    // Told to the cluster: only what was published here.
    assert_eq!(hub.local_keys(), vec![key(Leg::Primary)]);
    // Players here get both.
    assert!(hub
        .subscribe("1_gdrt137u_1", LegChoice::Only(Leg::Backup))
        .is_some());
}

#[test]
fn the_leg_published_here_continues_its_replica_on_the_same_clock() {
    let hub = Hub::new();
    let (replica, _) = hub
        .publish_replica(key(Leg::Primary), replica_of("pao-1"))
        .expect("nothing here");
    let stream = encoder_stream(3_600_000, 120);
    // The replica got the first 100 frames (two GOPs) ...
    let cut = stream
        .iter()
        .position(|m| m.type_id == 9 && m.timestamp == 3_600_000 + 100 * 40)
        .expect("frame 100");
    for message in &stream[..cut] {
        replica.push(message.clone()).expect("current");
    }
    let mut player = hub
        .subscribe("1_gdrt137u_1", LegChoice::Only(Leg::Primary))
        .expect("live");
    let before = drain(&mut player);
    // ... then the edge moved the leg here, and resends from the keyframe before what
    // it knew delivered: configuration, frame 50 (a keyframe) onwards.
    let (here, outcome) = hub.publish(key(Leg::Primary), encoder(2));
    assert!(matches!(outcome, PublishOutcome::TookOver { .. }));
    assert!(replica.is_taken_over());
    let resent = stream[..3].iter().chain(
        stream
            .iter()
            .skip_while(|m| m.timestamp < 3_600_000 + 50 * 40),
    );
    for message in resent {
        here.push(message.clone()).expect("current");
    }
    let after = drain(&mut player);
    let all: Vec<PlayerEvent> = before.into_iter().chain(after).collect();
    // What the player got is the encoder's stream once from the keyframe it joined at
    // (frame 50), timestamps as sent: nothing twice, no rebase, nothing missing.
    let want: Vec<u32> = stream
        .iter()
        .filter(|m| m.type_id == 9 && m.timestamp >= 3_600_000 + 50 * 40)
        .map(|m| m.timestamp)
        .collect();
    let video = track_timestamps(&all, 9);
    // The first is the video sequence header of the player's snapshot.
    assert_eq!(video[1..], want[..]);
    let audio = track_timestamps(&all, 8);
    assert!(audio.windows(2).all(|w| w[0] < w[1]), "audio twice or back");
    assert_eq!(
        hub.stream(&key(Leg::Primary))
            .expect("live")
            .timestamp_offset,
        0
    );
}
