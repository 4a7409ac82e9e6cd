//! The tokio drivers ([`Publisher`], [`Player`]) against `ServerSession` over an
//! in-memory duplex pipe: what a relay leg does, end to end, without sockets.

mod common;

use bytes::Bytes;
use common::{serve, Policy};
use longhaul_rtmp::client::ClientConfig;
use longhaul_rtmp::connection::{with_four_cc_list, ClientError, Player, Publisher, RtmpUrl};
use longhaul_rtmp::message::type_id;
use longhaul_rtmp::RtmpMessage;
use std::time::Duration;

const TEST_TIMEOUT: Duration = Duration::from_secs(10);

fn config() -> ClientConfig {
    RtmpUrl::parse("rtmp://origin.test/kLive/?t=abc/1_abcdefgh_1")
        .unwrap()
        .client_config()
}

fn frames() -> Vec<RtmpMessage> {
    let mut v = vec![RtmpMessage {
        timestamp: 0,
        type_id: type_id::VIDEO,
        stream_id: 0,
        payload: Bytes::from_static(b"\x17\x00\x00\x00\x00avcC"),
    }];
    for i in 1..50u32 {
        v.push(RtmpMessage {
            timestamp: i * 40,
            type_id: if i % 2 == 0 {
                type_id::VIDEO
            } else {
                type_id::AUDIO
            },
            stream_id: 0,
            payload: Bytes::from(vec![i as u8; 10_000 + i as usize]),
        });
    }
    v
}

#[tokio::test]
async fn publisher_delivers_media_untouched() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(serve(server_io, Policy::AcceptPublish));
    let config = with_four_cc_list(config(), &["hvc1", "av01"]);
    let sent = frames();
    tokio::time::timeout(TEST_TIMEOUT, async {
        let mut publisher = Publisher::start(client_io, config, "1_abcdefgh_1").await?;
        assert_eq!(publisher.stream_id(), 1);
        for m in &sent {
            publisher.send(m).await?;
        }
        publisher.finish().await
    })
    .await
    .expect("in time")
    .expect("publish works");
    let recorded = tokio::time::timeout(TEST_TIMEOUT, server)
        .await
        .unwrap()
        .unwrap();
    let connect = recorded.connect.unwrap();
    assert_eq!(connect.app, "kLive/?t=abc");
    assert_eq!(
        connect.tc_url.as_deref(),
        Some("rtmp://origin.test:1935/kLive/?t=abc")
    );
    assert!(connect.command_object.get("fourCcList").is_some());
    assert_eq!(
        recorded.publish,
        Some((1, "1_abcdefgh_1".to_string(), "live".to_string()))
    );
    let got: Vec<_> = recorded
        .media
        .iter()
        .map(|m| (m.timestamp, m.type_id, m.payload.clone()))
        .collect();
    let want: Vec<_> = sent
        .iter()
        .map(|m| (m.timestamp, m.type_id, m.payload.clone()))
        .collect();
    assert_eq!(got, want);
    assert!(recorded.publish_finished);
}

#[tokio::test]
async fn publisher_gets_the_servers_reason_on_rejection() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(serve(
        server_io,
        Policy::RejectPublish {
            code: "NetStream.Publish.BadName".into(),
            description: "already publishing".into(),
        },
    ));
    let result = tokio::time::timeout(TEST_TIMEOUT, Publisher::start(client_io, config(), "x"))
        .await
        .expect("in time");
    match result {
        Err(ClientError::Rejected { code, description }) => {
            assert_eq!(code, "NetStream.Publish.BadName");
            assert_eq!(description, "already publishing");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("publish was accepted"),
    }
    let _ = server.await;
}

#[tokio::test]
async fn rejected_connect_is_an_error_with_its_reason() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(serve(
        server_io,
        Policy::RejectConnect {
            description: "unknown app".into(),
        },
    ));
    let err = tokio::time::timeout(TEST_TIMEOUT, Player::start(client_io, config(), "x"))
        .await
        .expect("in time")
        .err()
        .expect("rejected");
    assert!(
        err.to_string()
            .contains("NetConnection.Connect.Rejected: unknown app"),
        "{err}"
    );
    let _ = server.await;
}

#[tokio::test]
async fn player_receives_what_the_server_sends() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let sent = frames();
    let server = tokio::spawn(serve(server_io, Policy::Play(sent.clone())));
    let received = tokio::time::timeout(TEST_TIMEOUT, async {
        let mut player = Player::start(client_io, config(), "1_abcdefgh_1").await?;
        assert_eq!(player.stream_id(), 1);
        let mut received = Vec::new();
        while received.len() < sent.len() {
            match player.recv().await? {
                Some(m) => received.push(m),
                None => break,
            }
        }
        player.finish().await?;
        Ok::<_, ClientError>(received)
    })
    .await
    .expect("in time")
    .expect("play works");
    let got: Vec<_> = received
        .iter()
        .map(|m| (m.timestamp, m.type_id, m.stream_id, m.payload.clone()))
        .collect();
    let want: Vec<_> = sent
        .iter()
        .map(|m| (m.timestamp, m.type_id, 1, m.payload.clone()))
        .collect();
    assert_eq!(got, want);
    let recorded = tokio::time::timeout(TEST_TIMEOUT, server)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recorded.play, Some((1, "1_abcdefgh_1".to_string())));
    assert!(recorded.play_finished);
}
