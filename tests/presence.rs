//! A play at an origin where the stream is not live names the origin where it is: two
//! origin processes (nyc, pao) on one registry (an SQLite file, then PostgreSQL), a
//! real ffmpeg encoder publishing to nyc, plays at pao over RTMP (longhaul's own RTMP
//! client, which reads the onStatus description) and HTTP-FLV (a plain GET).
//!
//! - While the encoder publishes, pao's refusal names nyc with its play URLs.
//! - When the encoder stops, nyc removes its row at once: pao stops naming it (within
//!   its answer cache's 2 s).
//! - When nyc dies without a word (SIGKILL) mid-publish, its row expires: pao stops
//!   naming it within 3 of nyc's heartbeats (1 s here).
//! - While the database is down a publish goes on, the failed presence writes counted,
//!   and a miss says where the stream is live is unknown; once it is back, nyc is named.

mod support;

use longhaul_rtmp::connection::{ClientError, Player, RtmpUrl};
use std::time::{Duration, Instant};
use support::processes::*;
use support::*;
use tokio::net::TcpStream;

/// nyc's heartbeat here: its rows expire 3 s after its last write.
const HEARTBEAT: &str = "presence_heartbeat_secs = 1";

/// The refusal of an RTMP play of `stream` at `origin`: its code and description.
async fn rtmp_refusal(origin: &Node, stream: &str) -> (String, String) {
    let url = RtmpUrl::parse(&format!("rtmp://{}/kLive/{stream}", origin.addr("rtmp"))).unwrap();
    let io = TcpStream::connect(url.address()).await.expect("connect");
    let played = tokio::time::timeout(
        Duration::from_secs(10),
        Player::start(io, url.client_config(), &url.name),
    )
    .await
    .expect("an answer within 10 s");
    match played {
        Err(ClientError::Rejected { code, description }) => (code, description),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("the play of {stream} at the other origin was accepted"),
    }
}

/// The 404 of an HTTP-FLV play of `stream` at `origin`: its `error` object.
async fn flv_refusal(origin: &Node, stream: &str) -> serde_json::Value {
    let url = format!("http://{}/live/{stream}.flv", origin.addr("http"));
    let (status, content_type, body) = http("GET", &url, "", None).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let v: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
    v["error"].clone()
}

/// Polls (bounded) until neither of pao's answers names nyc; returns how long it took.
async fn until_not_named(pao: &Node, stream: &str, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (_, description) = rtmp_refusal(pao, stream).await;
        let error = flv_refusal(pao, stream).await;
        if !description.contains(NYC.id) && !error["message"].as_str().unwrap().contains(NYC.id) {
            assert!(
                description.ends_with("nor on any other origin"),
                "{description}"
            );
            assert_eq!(error["live_at"], serde_json::json!([]), "{error}");
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "pao still names nyc after {limit:?}: {description}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An entry created through `origin`'s API: (id, token).
async fn create_entry(origin: &Node) -> (String, String) {
    let url = format!("http://{}/api/v1/entries", origin.addr("http"));
    let (status, _, body) = http("POST", &url, r#"{"name":"town hall"}"#, None).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let field = |k: &str| v[k].as_str().unwrap().to_owned();
    (field("id"), field("token"))
}

/// nyc publishing `{id}_1`, pao answering plays of it; then the publish stops. Both on
/// `registry` (a `[registry]` section), or on the cluster's SQLite file.
async fn named_while_live_then_not(cluster: Cluster, registry: Option<String>) {
    let registry =
        registry.unwrap_or_else(|| format!("[registry]\npath = {:?}", cluster.path("registry.db")));
    let nyc = cluster.origin_with(&NYC, None, &format!("{registry}\n{HEARTBEAT}"));
    let pao = cluster.origin_with(&PAO, None, &registry);
    let (id, token) = create_entry(&nyc).await;
    let stream = format!("{id}_1");
    let encoder = ffmpeg_publish(
        &format!("rtmp://{}/kLive/?t={token}/{stream}", nyc.addr("rtmp")),
        "320x240",
        60,
        25,
    );
    wait_live(&nyc, &stream).await;

    let nyc_rtmp = format!("rtmp://{}/kLive/{stream}", nyc.addr("rtmp"));
    let nyc_flv = format!("http://{}/live/{stream}.flv", nyc.addr("http"));
    // nyc's first write follows its publish within a batch delay; pao's first answer
    // may come before it (and is kept 2 s): ask until it names nyc.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (code, description) = loop {
        let (code, description) = rtmp_refusal(&pao, &stream).await;
        if description.contains(NYC.id) || Instant::now() > deadline {
            break (code, description);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("RTMP play at pao: {code}: {description}");
    assert_eq!(code, "NetStream.Play.StreamNotFound");
    assert_eq!(
        description,
        format!(
            "stream {stream} is not live on {}; it is live on {} ({}): {nyc_rtmp}",
            PAO.id, NYC.id, NYC.region
        )
    );
    let error = flv_refusal(&pao, &stream).await;
    eprintln!("HTTP-FLV play at pao: {error}");
    assert_eq!(error["code"], "stream_not_live");
    assert_eq!(error["message"].as_str(), Some(description.as_str()));
    assert_eq!(
        error["live_at"],
        serde_json::json!([{
            "origin": NYC.id,
            "region": NYC.region,
            "rtmp": nyc_rtmp,
            "http_flv": nyc_flv,
        }])
    );
    // nyc itself plays it.
    let url = RtmpUrl::parse(&nyc_rtmp).unwrap();
    let io = TcpStream::connect(url.address()).await.unwrap();
    Player::start(io, url.client_config(), &url.name)
        .await
        .expect("nyc plays its own stream");

    let m = metrics_of(&pao).await;
    assert!(
        present(
            &m,
            "longhaul_presence_lookups_total",
            &[("outcome", "found")]
        ) >= 1.0
    );

    // The publish stops: nyc's row goes with it, well before it would expire.
    let mut encoder = encoder;
    encoder.kill().unwrap();
    let _ = encoder.wait();
    let took = until_not_named(&pao, &stream, Duration::from_secs(10)).await;
    eprintln!("pao stopped naming nyc {took:?} after the encoder was killed");
    let m = metrics_of(&nyc).await;
    assert!(present(&m, "longhaul_presence_writes_total", &[("outcome", "ok")]) >= 2.0);
    assert_eq!(
        metric(
            &m,
            "longhaul_presence_writes_total",
            &[("outcome", "failed")]
        ),
        0.0
    );

    // A name of no entry is answered from memory, without a read.
    let (_, description) = rtmp_refusal(&pao, "1_nosuchid_1").await;
    assert_eq!(
        description,
        format!(
            "stream 1_nosuchid_1 is not live on {}, nor on any other origin",
            PAO.id
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_play_where_the_stream_is_not_live_names_where_it_is_sqlite() {
    named_while_live_then_not(Cluster::new(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_play_where_the_stream_is_not_live_names_where_it_is_postgres() {
    let (url, password) = tokio::task::spawn_blocking(|| {
        let server = longhaul_registry::testing::shared_server()
            .unwrap_or_else(|e| panic!("PostgreSQL for the tests: {e}"));
        let db = server.create_database().expect("a database");
        (server.url(&db), server.password().to_owned())
    })
    .await
    .unwrap();
    let cluster = Cluster::new();
    let registry = cluster.postgres_registry(&url, &password);
    named_while_live_then_not(cluster, Some(registry)).await;
}

/// nyc dies mid-publish without clearing its rows: they expire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_origin_stops_being_named_when_its_rows_expire() {
    let cluster = Cluster::new();
    let registry = format!("[registry]\npath = {:?}", cluster.path("registry.db"));
    let nyc = cluster.origin_with(&NYC, None, &format!("{registry}\n{HEARTBEAT}"));
    let pao = cluster.origin(&PAO, None);
    let (id, token) = create_entry(&nyc).await;
    let stream = format!("{id}_2");
    let mut encoder = ffmpeg_publish(
        &format!("rtmp://{}/kLive/?t={token}/{stream}", nyc.addr("rtmp")),
        "320x240",
        60,
        25,
    );
    wait_live(&nyc, &stream).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !rtmp_refusal(&pao, &stream).await.1.contains(NYC.id) {
        assert!(Instant::now() < deadline, "pao never named nyc");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // SIGKILL: no clean stop, the row stays until it expires (3 heartbeats of 1 s),
    // then pao's cached answer (2 s) goes.
    drop(nyc);
    let took = until_not_named(&pao, &stream, Duration::from_secs(15)).await;
    eprintln!("pao stopped naming the killed nyc after {took:?}");
    encoder.kill().unwrap();
    let _ = encoder.wait();
}

/// The database goes away: a publish goes on (the failed presence writes are counted,
/// never felt), and a play miss says where the stream is live is unknown. Once the
/// database is back, nyc's retries write its streams and pao names it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_registry_is_down_publishes_go_on_and_a_miss_says_it_cannot_tell() {
    use longhaul_registry::testing::PostgresServer;
    let (server, database) = tokio::task::spawn_blocking(PostgresServer::start_with_database)
        .await
        .unwrap()
        .expect("a private PostgreSQL with a database");
    let cluster = Cluster::new();
    let registry = cluster.postgres_registry(&server.url(&database), server.password());
    let nyc = cluster.origin_with(&NYC, None, &format!("{registry}\n{HEARTBEAT}"));
    let pao = cluster.origin_with(&PAO, None, &registry);
    let (id, token) = create_entry(&nyc).await;
    // pao's copy has the entry (a stream of an entry it does not know is live nowhere).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let url = format!("http://{}/api/v1/entries/{id}", pao.addr("http"));
        if http("GET", &url, "", None).await.0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "pao never learnt the entry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.stop().expect("stop PostgreSQL");
        server
    })
    .await
    .unwrap();
    for node in [&nyc, &pao] {
        let deadline = Instant::now() + Duration::from_secs(12);
        while health_of(node).await["registry"]["state"] != "unreachable" {
            assert!(Instant::now() < deadline, "{}", node.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let stream = format!("{id}_3");
    let mut encoder = ffmpeg_publish(
        &format!("rtmp://{}/kLive/?t={token}/{stream}", nyc.addr("rtmp")),
        "320x240",
        60,
        25,
    );
    wait_live(&nyc, &stream).await;
    until_metrics(&nyc, "a failed presence write", |m| {
        metric(
            m,
            "longhaul_presence_writes_total",
            &[("outcome", "failed")],
        ) >= 1.0
    })
    .await;
    let (code, description) = rtmp_refusal(&pao, &stream).await;
    assert_eq!(code, "NetStream.Play.StreamNotFound");
    assert_eq!(
        description,
        format!(
            "stream {stream} is not live on {} (where it is live is unknown: the registry is unreachable)",
            PAO.id
        )
    );
    let error = flv_refusal(&pao, &stream).await;
    assert_eq!(error["message"].as_str(), Some(description.as_str()));
    assert!(error.get("live_at").is_none(), "{error}");
    assert!(
        nyc.logs().contains("cannot write where streams are live"),
        "{}",
        nyc.logs()
    );

    let _server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.restart().expect("restart PostgreSQL");
        server
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, description) = rtmp_refusal(&pao, &stream).await;
        if description.contains(NYC.id) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pao does not name nyc after the database came back: {description}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        nyc.logs()
            .contains("writing where streams are live works again"),
        "{}",
        nyc.logs()
    );
    // The publish never noticed.
    assert!(encoder.try_wait().unwrap().is_none(), "the encoder ended");
    encoder.kill().unwrap();
    let _ = encoder.wait();
}
