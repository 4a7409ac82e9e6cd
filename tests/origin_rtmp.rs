//! The origin driven by longhaul's own RTMP client, where exact bytes and timing matter:
//! Enhanced RTMP and metadata passed through byte for byte, timeouts, a slow player.

mod support;

use bytes::{BufMut, Bytes, BytesMut};
use longhaul_rtmp::amf0::{self, Amf0Value};
use longhaul_rtmp::connection::{with_four_cc_list, Player, Publisher, RtmpUrl};
use longhaul_rtmp::message::type_id;
use longhaul_rtmp::RtmpMessage;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

async fn publisher(
    origin: &TestOrigin,
    entry: &longhaul_registry::Entry,
    name: &str,
) -> Publisher<TcpStream> {
    let url = RtmpUrl::parse(&format!(
        "{}/kLive/?t={}/{name}",
        origin.rtmp(),
        entry.token
    ))
    .unwrap();
    let io = TcpStream::connect(url.address()).await.unwrap();
    let config = with_four_cc_list(url.client_config(), &["hvc1", "av01", "Opus"]);
    Publisher::start(io, config, &url.name)
        .await
        .expect("publish accepted")
}

async fn player(origin: &TestOrigin, name: &str) -> Player<TcpStream> {
    player_with_receive_buffer(origin, name, None).await
}

/// A player whose socket receive buffer is fixed (no autotuning: on this kernel a
/// loopback buffer may otherwise grow to 32 MB and hide a player that does not read).
async fn player_with_receive_buffer(
    origin: &TestOrigin,
    name: &str,
    buffer: Option<u32>,
) -> Player<TcpStream> {
    let url = RtmpUrl::parse(&format!("{}/kLive/{name}", origin.rtmp())).unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(size) = buffer {
        socket.set_recv_buffer_size(size).unwrap();
    }
    let io = socket.connect(origin.origin.rtmp_addr).await.unwrap();
    Player::start(io, url.client_config(), &url.name)
        .await
        .expect("play accepted")
}

/// `@setDataFrame` + `onMetaData` with fields no fixed struct knows of.
fn metadata() -> (RtmpMessage, Bytes) {
    let mut body = BytesMut::new();
    amf0::encode(&Amf0Value::String("onMetaData".into()), &mut body);
    amf0::encode(
        &Amf0Value::EcmaArray(vec![
            ("width".into(), Amf0Value::Number(1920.0)),
            (
                "videocodecid".into(),
                Amf0Value::Number(f64::from(u32::from_be_bytes(*b"hvc1"))),
            ),
            (
                "audiocodecid".into(),
                Amf0Value::Number(f64::from(u32::from_be_bytes(*b"Opus"))),
            ),
            (
                "encoder".into(),
                Amf0Value::String("obs-output module (libobs version 30.1.2)".into()),
            ),
            ("x-longhaul-custom".into(), Amf0Value::Boolean(true)),
        ]),
        &mut body,
    );
    let mut full = BytesMut::new();
    amf0::encode(&Amf0Value::String("@setDataFrame".into()), &mut full);
    full.put_slice(&body);
    (msg(type_id::DATA_AMF0, 0, full.to_vec()), body.freeze())
}

/// An Enhanced RTMP video tag: ex-header, frame type, packet type, FourCC, body.
fn ex_video(frame_type: u8, packet_type: u8, fourcc: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80 | (frame_type << 4) | packet_type];
    v.extend_from_slice(fourcc);
    v.extend_from_slice(body);
    v
}

/// An Enhanced RTMP audio tag: SoundFormat 9, packet type, FourCC, body.
fn ex_audio(packet_type: u8, fourcc: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut v = vec![(9 << 4) | packet_type];
    v.extend_from_slice(fourcc);
    v.extend_from_slice(body);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enhanced_rtmp_and_metadata_pass_through_byte_for_byte() {
    let origin = start_origin("").await;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let mut publisher = publisher(&origin, &entry, &name).await;

    let (meta, meta_body) = metadata();
    let sent = vec![
        msg(type_id::VIDEO, 0, ex_video(1, 0, b"hvc1", &[1, 2, 3, 4, 5])), // HEVC SequenceStart
        msg(type_id::AUDIO, 0, ex_audio(0, b"Opus", b"OpusHead\x01\x02")), // Opus SequenceStart
        msg(
            type_id::VIDEO,
            0,
            ex_video(1, 1, b"hvc1", &[0, 0, 0, 7, 0xaa, 0xbb]),
        ), // keyframe
        msg(
            type_id::AUDIO,
            20,
            ex_audio(1, b"Opus", &[0xfc, 0xff, 0xfe]),
        ),
        msg(type_id::VIDEO, 33, ex_video(2, 3, b"hvc1", &[0xcc; 100])), // CodedFramesX inter
        msg(
            type_id::VIDEO,
            66,
            ex_video(2, 1, b"hvc1", &[0, 0, 1, 0, 0xdd]),
        ),
    ];
    publisher.send(&meta).await.unwrap();
    for m in &sent {
        publisher.send(m).await.unwrap();
    }
    origin.wait_live(&name).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A player joining now gets metadata, both sequence headers and the GOP from the keyframe.
    let mut player = player(&origin, &name).await;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 7 && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), player.recv()).await {
            Ok(Ok(Some(m))) => got.push(m),
            other => panic!(
                "player stopped early after {} messages: {other:?}",
                got.len()
            ),
        }
    }
    let payloads: Vec<&Bytes> = got.iter().map(|m| &m.payload).collect();
    // Metadata: the @setDataFrame wrapper removed, every byte of the rest as sent.
    assert_eq!(payloads[0], &meta_body, "metadata first, untouched");
    for m in &sent {
        assert!(
            got.iter().any(|g| g.payload == m.payload
                && g.type_id == m.type_id
                && g.timestamp == m.timestamp),
            "message type {} ts {} not delivered byte for byte",
            m.type_id,
            m.timestamp
        );
    }
    // Sequence headers come before the keyframe, and the keyframe before its GOP.
    let pos = |p: &[u8]| got.iter().position(|g| g.payload[..] == *p).unwrap();
    assert!(pos(&sent[0].payload) < pos(&sent[2].payload));
    assert!(pos(&sent[1].payload) < pos(&sent[2].payload));
    assert!(pos(&sent[2].payload) < pos(&sent[4].payload));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed() {
    let origin = start_origin("[ingest]\nhandshake_timeout_secs = 0.5\n").await;
    let mut socket = TcpStream::connect(origin.origin.rtmp_addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    assert!(started.elapsed() >= Duration::from_millis(400));
    let m = origin.metrics();
    assert_eq!(
        metric(&m, "longhaul_session_errors_total", &[("kind", "timeout")]),
        1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_sends_no_media_is_closed() {
    let origin = start_origin("[ingest]\nmedia_timeout_secs = 0.5\n").await;
    let entry = origin.create_entry().await;
    let name = format!("{}_2", entry.id);
    let publisher = publisher(&origin, &entry, &name).await;
    let mut socket = publisher.into_inner();
    let mut buf = vec![0u8; 4096];
    let mut heard = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline.into(), socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => heard.extend_from_slice(&buf[..n]), // statuses, then the reason
            Err(_) => panic!("an idle publisher was not closed"),
        }
    }
    // Its last words: an error status whose description says why.
    let heard = String::from_utf8_lossy(&heard);
    assert!(
        heard.contains("NetStream.Failed") && heard.contains("no media"),
        "{heard}"
    );
    assert!(
        origin.origin.state.hub.streams().is_empty(),
        "its stream ended with it"
    );
    let m = origin.metrics();
    assert_eq!(
        metric(&m, "longhaul_session_errors_total", &[("kind", "timeout")]),
        1.0,
        "{m}"
    );
}

/// A player that stops reading neither slows the publisher nor other players; it is
/// skipped, then dropped, and that is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_player_cannot_slow_the_publisher() {
    // A stuck player is let go after 10 s of write stall: a publisher it held back would
    // take at least that long, so finishing well inside it shows it was never held.
    let origin = start_origin("[ingest]\nwrite_timeout_secs = 10.0\n").await;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let mut publisher = publisher(&origin, &entry, &name).await;
    // Legacy AVC: sequence header, then 25 fps with a keyframe every 50 frames, 20 KB each.
    publisher
        .send(&msg(
            type_id::VIDEO,
            0,
            vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f],
        ))
        .await
        .unwrap();
    publisher
        .send(&msg(
            type_id::VIDEO,
            0,
            [vec![0x17, 1, 0, 0, 0], vec![7; 20_000]].concat(),
        ))
        .await
        .unwrap();
    origin.wait_live(&name).await;
    let stuck = player_with_receive_buffer(&origin, &name, Some(64 * 1024)).await; // never reads again
    let mut healthy = player(&origin, &name).await;
    let reader = tokio::spawn(async move {
        let mut n = 0u64;
        while let Ok(Ok(Some(_))) =
            tokio::time::timeout(Duration::from_secs(5), healthy.recv()).await
        {
            n += 1;
        }
        n
    });
    let frames = 2_000u32; // 40 MB, far past socket buffers and the player queue bound
    let started = Instant::now();
    for i in 1..=frames {
        let head = if i % 50 == 0 {
            vec![0x17, 1, 0, 0, 0]
        } else {
            vec![0x27, 1, 0, 0, 0]
        };
        publisher
            .send(&msg(
                type_id::VIDEO,
                i * 40,
                [head, vec![(i % 251) as u8; 20_000]].concat(),
            ))
            .await
            .unwrap();
    }
    let publish_time = started.elapsed();
    publisher.finish().await.unwrap();
    let received = reader.await.unwrap();
    assert!(
        publish_time < Duration::from_secs(5),
        "publisher was held back: {publish_time:?}"
    );
    assert!(
        received > u64::from(frames) / 2,
        "the healthy player got {received} of {frames}"
    );
    // The stuck player's writes stall for the 10 s write timeout, then it is dropped.
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(&origin.metrics(), "longhaul_player_drops_total", &[]) < 1.0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let m = origin.metrics();
    let skipped_or_dropped = metric(&m, "longhaul_player_skips_total", &[])
        + metric(&m, "longhaul_player_drops_total", &[]);
    assert!(
        skipped_or_dropped >= 1.0,
        "the stuck player was neither skipped nor dropped: {m}"
    );
    drop(stuck);
}

/// A player attached while a second encoder takes over keeps a timeline that never goes
/// back, though the new encoder starts its timestamps at 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_attached_across_a_takeover_see_monotonic_timestamps() {
    let origin = start_origin("").await;
    let entry = origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let keyframe = |ts: u32| {
        msg(
            type_id::VIDEO,
            ts,
            [vec![0x17, 1, 0, 0, 0], vec![1; 500]].concat(),
        )
    };
    let inter = |ts: u32| {
        msg(
            type_id::VIDEO,
            ts,
            [vec![0x27, 1, 0, 0, 0], vec![2; 200]].concat(),
        )
    };
    let header = msg(type_id::VIDEO, 0, vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]);

    // Encoder A has been live an hour.
    let mut a = publisher(&origin, &entry, &name).await;
    a.send(&header).await.unwrap();
    let base = 3_600_000;
    for i in 0..10 {
        a.send(&if i == 0 {
            keyframe(base)
        } else {
            inter(base + i * 40)
        })
        .await
        .unwrap();
    }
    origin.wait_live(&name).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while origin.origin.state.hub.streams()[0].messages_in < 11 {
        assert!(
            Instant::now() < deadline,
            "A's frames did not reach the hub"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut player = player(&origin, &name).await;
    // Encoder B reconnects and starts again at 0.
    let mut b = publisher(&origin, &entry, &name).await;
    b.send(&header).await.unwrap();
    for i in 0..10 {
        b.send(&if i == 0 { keyframe(0) } else { inter(i * 40) })
            .await
            .unwrap();
    }
    let mut video = Vec::new();
    while video.len() < 20 {
        match tokio::time::timeout(Duration::from_secs(5), player.recv()).await {
            Ok(Ok(Some(m))) if m.type_id == type_id::VIDEO && m.payload.get(1) == Some(&1) => {
                video.push(m.timestamp)
            }
            Ok(Ok(Some(_))) => {}
            other => panic!(
                "player stopped after {} frames: {other:?}; streams: {:?}",
                video.len(),
                origin.origin.state.hub.streams()
            ),
        }
    }
    assert!(
        video.windows(2).all(|w| w[1] >= w[0]),
        "timestamps went back: {video:?}"
    );
    // B's frames keep their 40 ms spacing.
    assert!(
        video[10..].windows(2).all(|w| w[1] - w[0] == 40),
        "{video:?}"
    );
    drop(a);
}
