//! An edge and an origin in one process, tunnelled over loopback QUIC: encoders publish at
//! the edge (longhaul's own RTMP client, where exact bytes matter; ffmpeg for the real
//! thing), players play from the origin.

mod support;

use longhaul_rtmp::connection::{ClientError, Player, Publisher, RtmpUrl};
use longhaul_rtmp::message::type_id;
use longhaul_rtmp::RtmpMessage;
use std::time::{Duration, Instant};
use support::cluster::*;
use support::*;
use tokio::net::TcpStream;

fn avc_header() -> RtmpMessage {
    msg(
        type_id::VIDEO,
        0,
        vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff],
    )
}
fn aac_header() -> RtmpMessage {
    msg(type_id::AUDIO, 0, vec![0xaf, 0x00, 0x12, 0x10])
}
fn keyframe(ts: u32, fill: u8) -> RtmpMessage {
    msg(
        type_id::VIDEO,
        ts,
        [vec![0x17, 1, 0, 0, 0], vec![fill; 3000]].concat(),
    )
}
fn inter(ts: u32, fill: u8) -> RtmpMessage {
    msg(
        type_id::VIDEO,
        ts,
        [vec![0x27, 1, 0, 0, 0], vec![fill; 800]].concat(),
    )
}
fn audio(ts: u32) -> RtmpMessage {
    msg(type_id::AUDIO, ts, [vec![0xaf, 1], vec![7; 200]].concat())
}

async fn publish(url: &str) -> Result<Publisher<TcpStream>, ClientError> {
    let url = RtmpUrl::parse(url).expect("url");
    let io = TcpStream::connect(url.address()).await.expect("connect");
    Publisher::start(io, url.client_config(), &url.name).await
}

/// Waits (bounded) until the origin's hub has taken `n` messages of `name`'s primary leg.
async fn wait_messages(cluster: &TestCluster, name: &str, n: u64) {
    let key = longhaul_hub::StreamKey::new(name, longhaul_endpoint::Leg::Primary);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = cluster
            .origin
            .origin
            .state
            .hub
            .stream(&key)
            .map_or(0, |s| s.messages_in);
        if got >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {got} of {n} messages at the origin"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A new entry's first rendition, published through the edge by longhaul's client.
async fn publishing_at_the_edge(
    cluster: &TestCluster,
) -> (longhaul_registry::Entry, String, Publisher<TcpStream>) {
    let entry = cluster.origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let publisher = publish(&cluster.edge_publish_url(&entry.token, &name))
        .await
        .expect("publish accepted through the edge");
    (entry, name, publisher)
}

async fn play_from_origin(cluster: &TestCluster, name: &str) -> Player<TcpStream> {
    let url = RtmpUrl::parse(&format!("{}/kLive/{name}", cluster.origin.rtmp())).expect("url");
    let io = TcpStream::connect(url.address()).await.expect("connect");
    Player::start(io, url.client_config(), &url.name)
        .await
        .expect("play accepted at the origin")
}

/// The next message the player gets of `type_id`, within 10 s.
async fn next_of(player: &mut Player<TcpStream>, type_id: u8) -> RtmpMessage {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, player.recv())
            .await
            .expect("a message within 10 s")
            .expect("play goes on")
            .expect("stream still live");
        if m.type_id == type_id {
            return m;
        }
    }
}

/// The value of the first series in `text` whose line contains every one of `labels`.
fn series(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_at_the_edge_plays_from_the_origin_byte_for_byte() {
    let cluster = start_cluster("").await;
    let (_, name, mut publisher) = publishing_at_the_edge(&cluster).await;

    for m in [avc_header(), aac_header(), keyframe(0, 1), audio(10)] {
        publisher.send(&m).await.expect("send");
    }
    for i in 1..10u32 {
        publisher.send(&inter(i * 40, 2)).await.expect("send");
    }
    cluster.origin.wait_live(&name).await;
    // A tunnelled stream is live at the origin from its header on; let its first GOP
    // arrive so the player below joins on the cache, not on live media.
    wait_messages(&cluster, &name, 13).await;

    // A player at the origin starts on the cached GOP: headers, then the keyframe.
    let mut player = play_from_origin(&cluster, &name).await;
    assert_eq!(
        next_of(&mut player, type_id::VIDEO).await.payload,
        avc_header().payload
    );
    let first = next_of(&mut player, type_id::VIDEO).await;
    assert_eq!(
        first.payload,
        keyframe(0, 1).payload,
        "the keyframe, untouched"
    );

    // Live media after the player attached goes through too.
    let live = keyframe(1000, 9);
    publisher.send(&live).await.expect("send");
    loop {
        let m = next_of(&mut player, type_id::VIDEO).await;
        if m.payload == live.payload {
            break;
        }
    }

    let (status, _, body) = http(
        "GET",
        &format!("http://{}/healthz", cluster.edge.http_addr),
        "",
        None,
    )
    .await;
    let health: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["publishers"], 1, "{health}");
    assert_eq!(health["tunnels"][0]["state"], "connected", "{health}");
    assert_eq!(health["tunnels"][0]["open_streams"], 1, "{health}");

    let edge = cluster.edge_metrics();
    assert_eq!(
        series(
            &edge,
            "longhaul_edge_publishes_total",
            &["outcome=\"accepted\""]
        ),
        Some(1.0),
        "{edge}"
    );
    assert_eq!(
        series(&edge, "longhaul_edge_publishers_active", &[]),
        Some(1.0)
    );
    assert!(
        edge.contains("longhaul_tunnel_state{"),
        "tunnel series: {edge}"
    );
    let origin = cluster.origin.metrics();
    assert_eq!(
        series(
            &origin,
            "longhaul_publishes_total",
            &["outcome=\"accepted\"", "transport=\"tunnel\""]
        ),
        Some(1.0),
        "{origin}"
    );

    // The encoder unpublishes: the edge finishes the tunnel stream, the player hears the end.
    publisher.finish().await.expect("finish");
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = player.recv().await {}
    })
    .await;
    assert!(ended.is_ok(), "the player saw the stream end");
    let edge = cluster.edge_metrics();
    assert_eq!(
        series(
            &edge,
            "longhaul_edge_publish_ends_total",
            &["reason=\"unpublished\""]
        ),
        Some(1.0),
        "{edge}"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origins_refusal_reaches_the_encoder_in_its_words() {
    let cluster = start_cluster("").await;
    let entry = cluster.origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let refused = publish(&cluster.edge_publish_url("not-the-token", &name)).await;
    let Err(ClientError::Rejected { code, description }) = refused else {
        panic!("expected a refusal, got {:?}", refused.map(|_| ()));
    };
    assert_eq!(code, "NetStream.Publish.Rejected");
    assert!(description.contains("wrong token"), "{description}");
    let edge = cluster.edge_metrics();
    assert_eq!(
        series(
            &edge,
            "longhaul_edge_publishes_total",
            &["outcome=\"refused\"", "reason=\"wrong_token\""]
        ),
        Some(1.0),
        "{edge}"
    );

    // A name the URL rules refuse never leaves the edge.
    let refused = publish(&format!(
        "rtmp://{}/kLive/not-an-entry",
        cluster.edge.rtmp_addr
    ))
    .await;
    let Err(ClientError::Rejected { code, description }) = refused else {
        panic!("expected a refusal");
    };
    assert_eq!(code, "NetStream.Publish.BadName");
    assert!(
        description.starts_with("publish refused: "),
        "{description}"
    );
    assert_eq!(
        series(
            &cluster.edge_metrics(),
            "longhaul_edge_publishes_total",
            &["reason=\"bad_request\""]
        ),
        Some(1.0)
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_origin_is_refused_as_such() {
    let pki = tempfile::tempdir().expect("tempdir");
    let ca = longhaul_tunnel::pki::ClusterCa::generate("test").expect("CA");
    let files = ca
        .issue(
            "test-edge",
            longhaul_tunnel::pki::NodeRole::Edge,
            pki.path(),
        )
        .expect("cert");
    // Nothing listens on this UDP port.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr");
    drop(silent);
    let edge = start_edge(addr, &files, "").await;

    let url = format!("rtmp://{}/kLive/?t=abc/1_abcd1234_1", edge.rtmp_addr);
    let refused = publish(&url).await;
    let Err(ClientError::Rejected { code, description }) = refused else {
        panic!("expected a refusal");
    };
    assert_eq!(code, "NetStream.Publish.Rejected");
    assert_eq!(
        description,
        "publish refused: the origin test-origin is unreachable from edge test-edge"
    );
    let metrics = edge.state.metrics.render();
    assert_eq!(
        series(
            &metrics,
            "longhaul_edge_publishes_total",
            &["reason=\"tunnel_unavailable\""]
        ),
        Some(1.0),
        "{metrics}"
    );
    let health = longhaul_edge::http::health(&edge.state);
    assert_eq!(health.status(), 503);
    edge.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_at_an_edge_is_refused_with_where_to_go() {
    let cluster = start_cluster("").await;
    let url = RtmpUrl::parse(&format!(
        "rtmp://{}/kLive/1_abcd1234_1",
        cluster.edge.rtmp_addr
    ))
    .expect("url");
    let io = TcpStream::connect(url.address()).await.expect("connect");
    let refused = Player::start(io, url.client_config(), &url.name).await;
    let Err(ClientError::Rejected { code, description }) = refused else {
        panic!("expected a refusal");
    };
    assert_eq!(code, "NetStream.Play.Failed");
    assert_eq!(description, "this is an edge: play from the origin");
    assert_eq!(
        series(
            &cluster.edge_metrics(),
            "longhaul_edge_plays_refused_total",
            &[]
        ),
        Some(1.0)
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_at_the_origin_reaches_the_encoder_at_the_edge() {
    let cluster = start_cluster("").await;
    let (entry, name, mut at_edge) = publishing_at_the_edge(&cluster).await;
    at_edge.send(&avc_header()).await.expect("send");
    at_edge.send(&keyframe(0, 1)).await.expect("send");
    cluster.origin.wait_live(&name).await;

    // The same encoder reconnects straight to the origin, same leg: it takes over.
    let direct = format!("{}/kLive/?t={}/{name}", cluster.origin.rtmp(), entry.token);
    let _direct = publish(&direct).await.expect("direct publish takes over");

    // The edge's encoder hears the origin's reason the next time it sends.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (code, description) = loop {
        assert!(
            Instant::now() < deadline,
            "the takeover never reached the edge's encoder"
        );
        match at_edge.send(&inter(40, 2)).await {
            Ok(()) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(ClientError::Rejected { code, description }) => break (code, description),
            Err(e) => panic!("expected the origin's status, got {e}"),
        }
    };
    assert_eq!(code, "NetStream.Publish.Rejected");
    assert!(description.contains("took it over"), "{description}");
    let edge = cluster.edge_metrics();
    assert_eq!(
        series(
            &edge,
            "longhaul_edge_publish_ends_total",
            &["reason=\"origin_ended\""]
        ),
        Some(1.0),
        "{edge}"
    );
    cluster.stop().await;
}

/// ffmpeg publishes at the edge; ffprobe reads the stream back from the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_through_the_edge() {
    require_ffmpeg();
    let cluster = start_cluster("").await;
    let entry = cluster.origin.create_entry().await;
    let name = format!("{}_1", entry.id);
    let encoder = ffmpeg_publish(
        &cluster.edge_publish_url(&entry.token, &name),
        "320x240",
        6,
        25,
    );
    cluster.origin.wait_live(&name).await;
    let file = cluster.pki.path().join("played.flv");
    let player = ffmpeg_record(&format!("{}/kLive/{name}", cluster.origin.rtmp()), &file);
    let out = wait_child(encoder).await;
    assert!(
        out.status.success(),
        "ffmpeg publish through the edge failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = wait_child(player).await;
    assert!(
        out.status.success(),
        "recording from the origin failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "recorded {size} bytes");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_shutting_down_ends_its_streams_cleanly_at_the_origin() {
    let cluster = start_cluster("").await;
    let (_, name, mut publisher) = publishing_at_the_edge(&cluster).await;
    for m in [avc_header(), aac_header(), keyframe(0, 1)] {
        publisher.send(&m).await.expect("send");
    }
    cluster.origin.wait_live(&name).await;
    let mut player = play_from_origin(&cluster, &name).await;
    let last = inter(4000, 7);
    for i in 1..100u32 {
        publisher.send(&inter(i * 40, 2)).await.expect("send");
    }
    publisher.send(&last).await.expect("send");
    loop {
        if next_of(&mut player, type_id::VIDEO).await.payload == last.payload {
            break;
        }
    }
    // The edge stops with the encoder still connected: its stream is finished, not cut.
    let TestCluster {
        origin, edge, pki, ..
    } = cluster;
    edge.stop().await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = player.recv().await {}
    })
    .await;
    assert!(ended.is_ok(), "the player saw the stream end");
    let m = origin.metrics();
    assert_eq!(
        series(&m, "longhaul_session_errors_total", &["kind=\"tunnel\""]),
        None,
        "no tunnel error at the origin: {m}"
    );
    assert_eq!(
        series(&m, "longhaul_publishers_active", &[]),
        Some(0.0),
        "{m}"
    );
    drop(pki);
    origin.origin.stop().await;
}

/// A tunnel client of our own, a cluster member with a certificate for `node_id`: what
/// a buggy or hostile edge could send.
async fn raw_tunnel(cluster: &TestCluster, node_id: &str) -> longhaul_tunnel::TunnelClient {
    use longhaul_tunnel::*;
    let dir = cluster.pki.path();
    let files = cluster
        .ca
        .issue(
            &format!("{node_id}.longhaul.internal"),
            longhaul_tunnel::pki::NodeRole::Edge,
            dir,
        )
        .unwrap();
    let section = TunnelSection {
        origins: vec![OriginPeer {
            id: "test-origin".into(),
            region: "nyc".into(),
            addr: cluster.origin.origin.tunnel_addr.unwrap().to_string(),
            server_name: ORIGIN_NAME.into(),
        }],
        primary: "test-origin".into(),
        tls: files.tls_paths(),
        bind: "127.0.0.1:0".parse().unwrap(),
        transport: TransportSettings {
            udp_recv_buffer: 262_144,
            udp_send_buffer: 262_144,
            ..TransportSettings::default()
        },
    };
    let client = TunnelClient::spawn(
        client_endpoint(&section).unwrap(),
        Hello {
            node_id: node_id.into(),
            region: "gru".into(),
            role: "edge".into(),
            version: VERSION.into(),
            lane: 0,
        },
        section.origins[0].clone(),
        &section.transport,
        &EdgeTls::load(&section.tls).unwrap(),
        longhaul_tunnel::EdgeHooks::load_only(std::sync::Arc::new(LoadReport::default)),
        &TunnelSet::new(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.state() != TunnelState::Connected {
        assert!(Instant::now() < deadline, "raw tunnel did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client
}

async fn origin_end(sender: &longhaul_tunnel::PublishSender) -> String {
    let mut end = sender.end_signal();
    match tokio::time::timeout(Duration::from_secs(10), end.wait()).await {
        Ok(longhaul_tunnel::PublishEnd::ByOrigin(e)) => e.description,
        other => panic!("expected the origin to end the stream, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_holds_tunnel_streams_to_the_rules_of_a_direct_publish() {
    use longhaul_tunnel::{AuthoriseRequest, MediaFrame, PublishHeader, Verdict};
    let cluster = start_cluster("").await;
    let entry = cluster.origin.create_entry().await;
    let raw = raw_tunnel(&cluster, "raw-edge").await;
    let header = |grant, n: u32| PublishHeader {
        grant,
        stream_name: format!("{}_{n}", entry.id),
        client_addr: "192.0.2.1:1".into(),
        publication: None,
        resume_from: None,
    };
    let authorise = |n: u32| AuthoriseRequest {
        app: format!("kLive/?t={}", entry.token),
        tc_url: None,
        name: format!("{}_{n}", entry.id),
        leg: longhaul_endpoint::Leg::Primary,
        client_addr: "192.0.2.1:1".into(),
        transport: "rtmp".into(),
    };

    // A grant nobody was given.
    let sender = raw.open_publish(header(12345, 1)).await.unwrap();
    assert!(origin_end(&sender).await.contains("no authorisation"));

    // A real grant works once, and only for the edge it was given to.
    let Verdict::Allowed { grant, .. } = raw.authorise(authorise(1)).await.unwrap() else {
        panic!("refused")
    };
    let other = raw_tunnel(&cluster, "other-edge").await;
    let stolen = other.open_publish(header(grant, 1)).await.unwrap();
    assert!(origin_end(&stolen).await.contains("no authorisation"));
    let mut sender = raw.open_publish(header(grant, 1)).await.unwrap();
    for m in [avc_header(), keyframe(0, 1)] {
        let frame = MediaFrame {
            kind: m.type_id,
            timestamp: m.timestamp,
            payload: m.payload,
        };
        sender.send(&[frame]).await.unwrap();
    }
    cluster.origin.wait_live(&format!("{}_1", entry.id)).await;
    let again = raw.open_publish(header(grant, 1)).await.unwrap();
    assert!(origin_end(&again).await.contains("no authorisation"));

    // Only media crosses: a SetChunkSize in the stream ends it before any player sees it.
    let bad = MediaFrame {
        kind: 1,
        timestamp: 40,
        payload: bytes::Bytes::from_static(&[0, 0, 0x10, 0]),
    };
    let _ = sender.send(&[bad]).await;
    let why = origin_end(&sender).await;
    assert!(why.contains("not media"), "{why}");
    let m = cluster.origin.metrics();
    assert_eq!(
        series(
            &m,
            "longhaul_publishes_total",
            &["reason=\"unknown_grant\""]
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        series(&m, "longhaul_session_errors_total", &["kind=\"protocol\""]),
        Some(1.0),
        "{m}"
    );
    raw.close();
    other.close();
    cluster.stop().await;
}

/// The status an encoder at the edge hears next, sending until it does (10 s at most).
async fn next_refusal(publisher: &mut Publisher<TcpStream>) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "no status reached the edge's encoder"
        );
        match publisher.send(&inter(40, 2)).await {
            Ok(()) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(ClientError::Rejected { code, description }) => return (code, description),
            Err(e) => panic!("expected a status, got {e}"),
        }
    }
}

/// An origin's `revoke` on the control stream alone (the origin does not end its side of
/// the stream here) makes the edge cut the streams it relays for the entry, when the
/// revocation covers their token's generation, telling the encoder why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_the_control_stream_cuts_the_edge_s_relays() {
    use longhaul_tunnel::Revocation;
    let cluster = start_cluster("").await;
    let (entry, name, mut at_edge) = publishing_at_the_edge(&cluster).await;
    at_edge.send(&avc_header()).await.expect("send");
    at_edge.send(&keyframe(0, 1)).await.expect("send");
    cluster.origin.wait_live(&name).await;
    let revocation = |before_generation, words: &str| Revocation {
        entry_id: entry.id.clone(),
        before_generation,
        code: "NetStream.Publish.Rejected".into(),
        reason: "token_revoked".into(),
        description: format!("publish stopped: {words}"),
    };

    // Generation 1 is current: a revocation of older tokens leaves it alone.
    let told = cluster
        .origin
        .origin
        .tunnels
        .revoke(&revocation(Some(1), "older than 1 (must not cut)"));
    assert_eq!(told, 1, "the one edge was told");
    let deadline = Instant::now() + Duration::from_secs(10);
    while series(
        &cluster.edge_metrics(),
        "longhaul_edge_revocations_total",
        &["reason=\"token_revoked\""],
    ) != Some(1.0)
    {
        assert!(
            Instant::now() < deadline,
            "the edge never took the revocation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 2..6u32 {
        at_edge
            .send(&inter(i * 40, 2))
            .await
            .expect("still relayed");
    }
    wait_messages(&cluster, &name, 6).await;
    assert_eq!(
        series(
            &cluster.edge_metrics(),
            "longhaul_edge_publish_ends_total",
            &["reason=\"revoked\""]
        ),
        None,
        "a revocation of older tokens cut nothing"
    );
    // Generation 2 is made current elsewhere: the stream of generation 1 is cut.
    cluster
        .origin
        .origin
        .tunnels
        .revoke(&revocation(Some(2), "older than 2"));
    let (code, description) = next_refusal(&mut at_edge).await;
    assert_eq!(code, "NetStream.Publish.Rejected");
    assert_eq!(description, "publish stopped: older than 2");
    let m = cluster.edge_metrics();
    for (series_name, label, value) in [
        (
            "longhaul_edge_revocations_total",
            "reason=\"token_revoked\"",
            2.0,
        ),
        (
            "longhaul_edge_publish_ends_total",
            "reason=\"revoked\"",
            1.0,
        ),
    ] {
        assert_eq!(series(&m, series_name, &[label]), Some(value), "{m}");
    }
    cluster.stop().await;
}

/// Regenerating a token through the API cuts the stream an edge relays (the origin ends
/// it and tells the edge), and a grant given before the regeneration is refused when
/// its stream arrives after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_regeneration_cuts_relays_and_voids_outstanding_grants() {
    use longhaul_tunnel::{AuthoriseRequest, PublishHeader, Verdict};
    let cluster = start_cluster("").await;
    let (entry, name, mut at_edge) = publishing_at_the_edge(&cluster).await;
    at_edge.send(&avc_header()).await.expect("send");
    at_edge.send(&keyframe(0, 1)).await.expect("send");
    cluster.origin.wait_live(&name).await;

    // A grant for rendition 2, not yet redeemed.
    let raw = raw_tunnel(&cluster, "raw-edge").await;
    let Verdict::Allowed {
        grant, generation, ..
    } = raw
        .authorise(AuthoriseRequest {
            app: format!("kLive/?t={}", entry.token),
            tc_url: None,
            name: format!("{}_2", entry.id),
            leg: longhaul_endpoint::Leg::Primary,
            client_addr: "192.0.2.1:1".into(),
            transport: "rtmp".into(),
        })
        .await
        .unwrap()
    else {
        panic!("refused")
    };
    assert_eq!(generation, Some(1), "verdicts say the token's generation");

    cluster.origin.regenerate_token(&entry.id).await;
    let (_, description) = next_refusal(&mut at_edge).await;
    assert!(description.contains("was regenerated"), "{description}");

    let late = raw
        .open_publish(PublishHeader {
            grant,
            stream_name: format!("{}_2", entry.id),
            client_addr: "192.0.2.1:1".into(),
            publication: None,
            resume_from: None,
        })
        .await
        .unwrap();
    let why = origin_end(&late).await;
    assert!(why.contains("regenerated"), "{why}");
    let m = cluster.origin.metrics();
    assert_eq!(
        series(
            &m,
            "longhaul_publishes_cut_total",
            &["reason=\"token_revoked\""]
        ),
        Some(1.0),
        "{m}"
    );
    raw.close();
    cluster.stop().await;
}

/// A UDP port on loopback free now, with the one after it free too.
fn two_free_udp_ports() -> u16 {
    for _ in 0..100 {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = a.local_addr().expect("addr").port();
        if port < u16::MAX && std::net::UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two free UDP ports in a row on loopback");
}

/// An edge on two shards: its connections are shared out between the shards, each
/// shard's publishes go over its own tunnel (lane) to the origin, which keeps both lanes
/// side by side, and a regeneration cuts the streams of both.
#[tokio::test]
async fn an_edge_on_two_shards_relays_over_a_lane_each_and_a_regeneration_cuts_both() {
    // A fixed tunnel port: lane 1 takes the next one.
    let port = two_free_udp_ports();
    let bind = format!("[tunnel]\nbind = \"127.0.0.1:{port}\"");
    let cluster = start_cluster_sharded("", &bind, 2).await;
    let lanes = cluster.edge.state.upstreams.lanes();
    let ports: Vec<u16> = lanes
        .iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect();
    assert_eq!(ports, [port, port + 1]);
    let entry = cluster.origin.create_entry().await;
    let mut publishers = Vec::new();
    for n in 1..=4 {
        let name = format!("{}_{n}", entry.id);
        let mut p = publish(&cluster.edge_publish_url(&entry.token, &name))
            .await
            .expect("publish accepted through the edge");
        p.send(&avc_header()).await.expect("send");
        p.send(&keyframe(0, n as u8)).await.expect("send");
        cluster.origin.wait_live(&name).await;
        publishers.push(p);
    }
    // The origin sees the edge twice, once per lane, two streams on each.
    let mut links: Vec<_> = cluster
        .origin
        .origin
        .tunnels
        .snapshots()
        .into_iter()
        .filter(|l| l.peer == "test-edge")
        .collect();
    links.sort_by_key(|l| l.lane);
    let lanes: Vec<(u16, i64)> = links.iter().map(|l| (l.lane, l.open_streams)).collect();
    assert_eq!(lanes, [(0, 2), (1, 2)], "{links:?}");
    let m = cluster.edge_metrics();
    for lane in ["lane=\"0\"", "lane=\"1\""] {
        assert_eq!(
            series(&m, "longhaul_tunnel_open_streams", &[lane]),
            Some(2.0),
            "{m}"
        );
    }
    cluster.origin.regenerate_token(&entry.id).await;
    for p in &mut publishers {
        let (_, description) = next_refusal(p).await;
        assert!(description.contains("was regenerated"), "{description}");
    }
    // Each lane heard the revocation; each stream ended, by the revocation or by the
    // origin's end of its stream, whichever came first (both carry the origin's words).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = cluster.edge_metrics();
        let ends = ["revoked", "origin_ended"]
            .map(|r| {
                series(
                    &m,
                    "longhaul_edge_publish_ends_total",
                    &[&format!("reason=\"{r}\"")],
                )
                .unwrap_or(0.0)
            })
            .iter()
            .sum::<f64>();
        let told = series(
            &m,
            "longhaul_edge_revocations_total",
            &["reason=\"token_revoked\""],
        );
        if ends == 4.0 && told == Some(2.0) {
            break;
        }
        assert!(Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.stop().await;
}
