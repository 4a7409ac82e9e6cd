//! Both ends of a tunnel on loopback: real UDP, real TLS, a toy origin service.

use bytes::Bytes;
use longhaul_endpoint::Leg;
use longhaul_tunnel::pki::{ClusterCa, NodeRole};
use longhaul_tunnel::*;
use prometheus::{Encoder, Registry};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Allows names starting with `ok`, ends streams named `end-me` after their first frame,
/// and records every frame it receives.
#[derive(Default)]
struct ToyOrigin {
    frames: Mutex<Vec<(String, MediaFrame)>>,
    finished: Mutex<Vec<String>>,
    peers: Mutex<Vec<PeerInfo>>,
}

impl TunnelService for ToyOrigin {
    fn hello(&self) -> Hello {
        Hello {
            node_id: "nyc-1".into(),
            region: "nyc".into(),
            role: "origin".into(),
            version: VERSION.into(),
            lane: 0,
        }
    }
    fn load(&self) -> LoadReport {
        LoadReport {
            healthy: true,
            publishers: 1,
            connections: 2,
            draining: false,
        }
    }
    async fn authorise(&self, peer: &PeerInfo, request: AuthoriseRequest) -> Verdict {
        self.peers.lock().unwrap().push(peer.clone());
        if request.name.starts_with("ok") || request.name == "end-me" {
            Verdict::Allowed {
                grant: 42,
                stream_name: request.name,
                generation: None,
            }
        } else {
            Verdict::Refused {
                code: "NetStream.Publish.Rejected".into(),
                reason: "wrong_token".into(),
                description: format!("publish refused: wrong token for {}", request.name),
            }
        }
    }
    async fn publish(&self, _peer: &PeerInfo, header: PublishHeader, stream: IncomingPublish) {
        let (mut media, ender) = stream.split();
        while let Ok(Some(incoming)) = media.next().await {
            let frame = match incoming {
                Incoming::Plain(f) => f,
                Incoming::Sequenced(s) => s.frame,
            };
            self.frames
                .lock()
                .unwrap()
                .push((header.stream_name.clone(), frame));
            if header.stream_name == "end-me" {
                ender
                    .end(StreamEnd::new("NetStream.Publish.Rejected", "taken over"))
                    .await;
                return;
            }
        }
        self.finished.lock().unwrap().push(header.stream_name);
        ender.finish();
    }

    /// pao-1 is this toy origin's one peer.
    fn peer_origin_name(&self, node_id: &str) -> Option<String> {
        (node_id == "pao-1").then(|| "pao-1.longhaul.internal".to_string())
    }

    /// Serves the leg asked for as three frames between `leg_live` and `leg_gone`, then
    /// waits for the asker to leave.
    async fn pull(&self, peer: &PeerInfo, header: PullHeader, stream: OutgoingPull) {
        self.peers.lock().unwrap().push(peer.clone());
        let (mut asker, mut sender) = stream.split();
        if header.stream_name == "not-here" {
            sender
                .end(StreamEnd::new("NetStream.Play.StreamNotFound", "not here"))
                .await;
            return;
        }
        let frames: Vec<MediaFrame> = (0..3)
            .map(|i| MediaFrame {
                kind: 9,
                timestamp: i * 40,
                payload: Bytes::from(vec![i as u8; 100]),
            })
            .collect();
        let _ = sender.live().await;
        let _ = sender.send(&frames).await;
        let _ = sender.gone().await;
        let _ = asker.left().await;
        self.finished
            .lock()
            .unwrap()
            .push(format!("pull {}", header.stream_name));
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    ca: ClusterCa,
    origin_tls: ClusterTlsPaths,
    edge_tls: ClusterTlsPaths,
}

fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::generate("test cluster CA").unwrap();
    let origin = ca
        .issue("nyc-1.longhaul.internal", NodeRole::Origin, dir.path())
        .unwrap();
    let edge = ca
        .issue("fra-1.longhaul.internal", NodeRole::Edge, dir.path())
        .unwrap();
    Cluster {
        origin_tls: origin.tls_paths(),
        edge_tls: edge.tls_paths(),
        ca,
        dir,
    }
}

fn fast() -> TransportSettings {
    TransportSettings {
        reconnect_initial_ms: 50,
        reconnect_max_ms: 200,
        report_interval_ms: 100,
        keep_alive_ms: 200,
        idle_timeout_ms: 2_000,
        authorise_timeout_ms: 2_000,
        udp_recv_buffer: 256 * 1024,
        udp_send_buffer: 256 * 1024,
        ..TransportSettings::default()
    }
}

struct RunningOrigin {
    addr: SocketAddr,
    service: Arc<ToyOrigin>,
    set: Arc<TunnelSet>,
    tls: Arc<OriginTls>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start_origin(tls: &ClusterTlsPaths, listen: SocketAddr) -> RunningOrigin {
    start_origin_denying(tls, listen, None)
}

/// An origin whose deny list is read from `denied` (a file), if given.
fn start_origin_denying(
    tls: &ClusterTlsPaths,
    listen: SocketAddr,
    denied: Option<std::path::PathBuf>,
) -> RunningOrigin {
    let section = TunnelListenSection {
        listen,
        tls: tls.clone(),
        edge_name_suffix: Some("longhaul.internal".into()),
        allow_any_edge_name: false,
        denied_certificates: Vec::new(),
        denied_certificates_file: denied,
        transport: fast(),
    };
    let origin_tls = OriginTls::load(&section).unwrap();
    let endpoint = server_endpoint(&section, &origin_tls).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let service = Arc::new(ToyOrigin::default());
    let set = TunnelSet::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server::serve(
        endpoint,
        service.clone(),
        section,
        origin_tls.clone(),
        set.clone(),
        shutdown.clone(),
    ));
    RunningOrigin {
        addr,
        service,
        set,
        tls: origin_tls,
        shutdown,
        task,
    }
}

fn edge_section(tls: ClusterTlsPaths, origin: SocketAddr) -> TunnelSection {
    TunnelSection {
        origins: vec![OriginPeer {
            id: "nyc-1".into(),
            region: "nyc".into(),
            addr: origin.to_string(),
            server_name: "nyc-1.longhaul.internal".into(),
        }],
        primary: "nyc-1".into(),
        tls,
        bind: ([127, 0, 0, 1], 0).into(),
        transport: fast(),
    }
}

fn start_edge(section: &TunnelSection) -> (TunnelClient, Arc<TunnelSet>) {
    let (client, set, _) = start_edge_with_tls(section);
    (client, set)
}

/// [`start_edge`], with the edge's TLS files to reload.
fn start_edge_with_tls(section: &TunnelSection) -> (TunnelClient, Arc<TunnelSet>, EdgeTls) {
    start_edge_lane(section, 0)
}

/// Edge `fra-1`'s tunnel on `lane` (one per shard of a sharded edge).
fn start_edge_lane(section: &TunnelSection, lane: u16) -> (TunnelClient, Arc<TunnelSet>, EdgeTls) {
    let endpoint = client_endpoint(section).unwrap();
    let set = TunnelSet::new();
    let tls = EdgeTls::load(&section.tls).unwrap();
    let client = TunnelClient::spawn(
        endpoint,
        Hello {
            node_id: "fra-1".into(),
            region: "fra".into(),
            role: "edge".into(),
            version: VERSION.into(),
            lane,
        },
        section.origins[0].clone(),
        &section.transport,
        &tls,
        longhaul_tunnel::EdgeHooks::load_only(Arc::new(LoadReport::default)),
        &set,
    )
    .unwrap();
    (client, set, tls)
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn request(name: &str) -> AuthoriseRequest {
    AuthoriseRequest {
        app: "kLive".into(),
        tc_url: None,
        name: name.into(),
        leg: Leg::Primary,
        client_addr: "192.0.2.7:50000".into(),
        transport: "rtmp".into(),
    }
}

fn render(set: &Arc<TunnelSet>) -> String {
    let r = Registry::new_custom(Some("longhaul".into()), None).unwrap();
    r.register(Box::new(TunnelCollector::new(set.clone())))
        .unwrap();
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&r.gather(), &mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn authorise_publish_and_end_over_one_connection() {
    let c = cluster();
    let origin = start_origin(&c.origin_tls, ([127, 0, 0, 1], 0).into());
    let section = edge_section(c.edge_tls.clone(), origin.addr);
    let (client, edge_set) = start_edge(&section);
    until("connected", || client.state() == TunnelState::Connected).await;
    assert_eq!(client.peer_hello().unwrap().node_id, "nyc-1");

    // Refusals carry the origin's words.
    match client.authorise(request("bad")).await.unwrap() {
        Verdict::Refused {
            reason,
            description,
            ..
        } => {
            assert_eq!(reason, "wrong_token");
            assert!(description.contains("wrong token for bad"));
        }
        v => panic!("expected a refusal, got {v:?}"),
    }
    let peers = origin.service.peers.lock().unwrap().clone();
    assert_eq!(peers[0].node_id, "fra-1");
    assert_eq!(peers[0].region, "fra");

    // Three streams at once, all on the one connection.
    let mut senders = Vec::new();
    for i in 0..3 {
        let name = format!("ok-{i}");
        let Verdict::Allowed {
            grant, stream_name, ..
        } = client.authorise(request(&name)).await.unwrap()
        else {
            panic!("refused")
        };
        senders.push(
            client
                .open_publish(PublishHeader {
                    grant,
                    stream_name,
                    client_addr: "192.0.2.7:50000".into(),
                    publication: None,
                    resume_from: None,
                })
                .await
                .unwrap(),
        );
    }
    let payload = Bytes::from(vec![7u8; 100_000]);
    for round in 0..20u32 {
        for s in &mut senders {
            s.send(&[MediaFrame {
                kind: if round % 2 == 0 { 9 } else { 8 },
                timestamp: round * 40,
                payload: payload.slice(..(round as usize * 1000 + 1)),
            }])
            .await
            .unwrap();
        }
    }
    until("all frames in", || {
        origin.service.frames.lock().unwrap().len() == 60
    })
    .await;
    let text = render(&edge_set);
    assert!(
        text.contains(r#"longhaul_tunnel_open_streams{lane="0",peer="nyc-1",peer_region="nyc"} 3"#),
        "{text}"
    );
    assert!(text.contains(
        r#"longhaul_tunnel_state{lane="0",peer="nyc-1",peer_region="nyc",state="connected"} 1"#
    ));
    assert!(text.contains("longhaul_tunnel_srtt_seconds{"));
    assert!(text
        .contains(r#"longhaul_tunnel_streams_total{lane="0",peer="nyc-1",peer_region="nyc"} 3"#));
    for s in senders {
        s.finish().await;
    }
    until("streams finished", || {
        origin.service.finished.lock().unwrap().len() == 3
    })
    .await;
    {
        let frames = origin.service.frames.lock().unwrap();
        for i in 0..3 {
            let mine: Vec<_> = frames
                .iter()
                .filter(|(n, _)| *n == format!("ok-{i}"))
                .map(|(_, f)| f)
                .collect();
            assert_eq!(mine.len(), 20);
            for (round, f) in mine.iter().enumerate() {
                assert_eq!(f.timestamp, round as u32 * 40, "in order");
                assert_eq!(f.payload.len(), round * 1000 + 1, "unchanged");
                assert_eq!(f.kind, if round % 2 == 0 { 9 } else { 8 });
            }
        }
    }
    until("stream count back to 0", || {
        edge_set.snapshots()[0].open_streams == 0
    })
    .await;
    assert_eq!(origin.set.snapshots()[0].peer, "fra-1");

    // The origin ends a stream: the edge hears why.
    let Verdict::Allowed {
        grant, stream_name, ..
    } = client.authorise(request("end-me")).await.unwrap()
    else {
        panic!("refused")
    };
    let mut sender = client
        .open_publish(PublishHeader {
            grant,
            stream_name,
            client_addr: "x".into(),
            publication: None,
            resume_from: None,
        })
        .await
        .unwrap();
    let mut end = sender.end_signal();
    sender
        .send(&[MediaFrame {
            kind: 9,
            timestamp: 0,
            payload: Bytes::from_static(b"x"),
        }])
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), end.wait())
        .await
        .unwrap();
    match end {
        PublishEnd::ByOrigin(e) => assert_eq!(e.description, "taken over"),
        other => panic!("expected the origin's end, got {other:?}"),
    }

    // Reports flow both ways.
    until("reports", || {
        edge_set.snapshots()[0]
            .peer_load
            .as_ref()
            .map(|l| l.publishers)
            == Some(1)
            && origin.set.snapshots()[0].peer_load.is_some()
    })
    .await;
    client.close();
    until("closed", || client.state() == TunnelState::Closed).await;
    origin.shutdown.cancel();
}

#[tokio::test]
async fn an_edge_without_a_cluster_certificate_is_refused_and_counted() {
    let c = cluster();
    let origin = start_origin(&c.origin_tls, ([127, 0, 0, 1], 0).into());
    let no_cert = ClusterTlsPaths {
        ca: c.edge_tls.ca.clone(),
        cert: None,
        key: None,
    };
    let (client, _) = start_edge(&edge_section(no_cert, origin.addr));
    until("refusal counted", || {
        origin
            .set
            .refusals()
            .iter()
            .any(|(r, n)| *r == "no_client_certificate" && *n > 0)
    })
    .await;
    assert_ne!(client.state(), TunnelState::Connected);
    assert!(origin.set.links().is_empty());
    assert!(matches!(
        client.authorise(request("ok")).await,
        Err(TunnelError::NotConnected { .. })
    ));

    // A certificate from another CA is refused too: a host with a CA of its own that
    // trusts the cluster's (its CA file holds both, or it would not start).
    let other = tempfile::tempdir().unwrap();
    let foreign = ClusterCa::generate("someone else")
        .unwrap()
        .issue("fra-1.longhaul.internal", NodeRole::Edge, other.path())
        .unwrap();
    let both = other.path().join("both.pem");
    let pems = [&c.edge_tls.ca, &foreign.ca].map(|p| std::fs::read_to_string(p).unwrap());
    std::fs::write(&both, pems.concat()).unwrap();
    let tls = ClusterTlsPaths {
        ca: both,
        ..foreign.tls_paths()
    };
    let (client, _) = start_edge(&edge_section(tls, origin.addr));
    until("bad certificate counted", || {
        origin
            .set
            .refusals()
            .iter()
            .any(|(r, n)| *r == "bad_certificate" && *n > 0)
    })
    .await;
    assert_ne!(client.state(), TunnelState::Connected);
    let text = render(&origin.set);
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("longhaul_tunnel_handshake_refusals_total{reason=\"bad_certificate\"}")
        })
        .unwrap_or_else(|| panic!("{text}"));
    assert_ne!(line.rsplit(' ').next(), Some("0"), "{line}");
}

/// An authorisation request too big for one message is refused by the client, not sent
/// (the origin would close the whole tunnel on the oversized frame); the tunnel carries
/// the next request as before.
#[tokio::test]
async fn an_authorisation_too_big_to_send_is_refused_and_the_tunnel_stays() {
    let c = cluster();
    let origin = start_origin(&c.origin_tls, ([127, 0, 0, 1], 0).into());
    let (client, edge_set) = start_edge(&edge_section(c.edge_tls.clone(), origin.addr));
    until("connected", || client.state() == TunnelState::Connected).await;
    let huge = request(&format!("ok{}", "x".repeat(70_000)));
    match client.authorise(huge).await {
        Err(longhaul_tunnel::TunnelError::TooLarge { len, max, .. }) => assert!(len > max),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let Verdict::Allowed { .. } = client.authorise(request("ok")).await.unwrap() else {
        panic!("refused")
    };
    assert_eq!(
        edge_set.snapshots()[0].reconnects,
        0,
        "the tunnel never dropped"
    );
    origin.shutdown.cancel();
}

#[tokio::test]
async fn the_edge_reconnects_after_the_origin_restarts() {
    let c = cluster();
    let origin = start_origin(&c.origin_tls, ([127, 0, 0, 1], 0).into());
    let addr = origin.addr;
    let (client, edge_set) = start_edge(&edge_section(c.edge_tls.clone(), addr));
    until("connected", || client.state() == TunnelState::Connected).await;
    origin.shutdown.cancel();
    origin.task.await.unwrap();
    until("lost", || client.state() != TunnelState::Connected).await;
    // The same address, a new process's worth of state.
    let origin = start_origin(&c.origin_tls, addr);
    until("reconnected", || client.state() == TunnelState::Connected).await;
    let Verdict::Allowed { .. } = client.authorise(request("ok")).await.unwrap() else {
        panic!("refused after reconnect")
    };
    let s = &edge_set.snapshots()[0];
    assert!(s.reconnects >= 1, "{s:?}");
    assert!(s.transitions[1] >= 2, "connected twice: {s:?}");
    origin.shutdown.cancel();
}

#[tokio::test]
async fn a_stream_cut_by_the_tunnel_is_told_apart_from_an_origin_end() {
    let c = cluster();
    let origin = start_origin(&c.origin_tls, ([127, 0, 0, 1], 0).into());
    let (client, _) = start_edge(&edge_section(c.edge_tls.clone(), origin.addr));
    until("connected", || client.state() == TunnelState::Connected).await;
    let Verdict::Allowed {
        grant, stream_name, ..
    } = client.authorise(request("ok")).await.unwrap()
    else {
        panic!("refused")
    };
    let sender = client
        .open_publish(PublishHeader {
            grant,
            stream_name,
            client_addr: "x".into(),
            publication: None,
            resume_from: None,
        })
        .await
        .unwrap();
    let mut end = sender.end_signal();
    origin.shutdown.cancel();
    let end = tokio::time::timeout(Duration::from_secs(5), end.wait())
        .await
        .unwrap();
    assert!(matches!(end, PublishEnd::TunnelLost(_)), "{end:?}");
}

#[tokio::test]
async fn an_origin_keeps_one_link_per_edge_across_reconnects() {
    let c = cluster();
    let origin = start_origin(&c.origin_tls, ([127, 0, 0, 1], 0).into());
    let section = edge_section(c.edge_tls.clone(), origin.addr);
    let (first, _) = start_edge(&section);
    until("first connected", || {
        first.state() == TunnelState::Connected
    })
    .await;
    // The same edge comes back (a restart) while its old connection is still up.
    let (second, _) = start_edge(&section);
    until("second connected", || {
        second.state() == TunnelState::Connected
    })
    .await;
    until("the old connection replaced", || {
        first.state() != TunnelState::Connected
    })
    .await;
    first.close();
    let links = origin.set.snapshots();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].state, TunnelState::Connected);
    origin.shutdown.cancel();
}

#[tokio::test]
async fn an_edge_s_lanes_are_kept_side_by_side_and_labelled() {
    let c = cluster();
    let origin = start_origin(&c.origin_tls, ([127, 0, 0, 1], 0).into());
    let section = edge_section(c.edge_tls.clone(), origin.addr);
    let (lane0, edge_set, _) = start_edge_lane(&section, 0);
    let (lane1, _, _) = start_edge_lane(&section, 1);
    until("both lanes connected", || {
        lane0.state() == TunnelState::Connected && lane1.state() == TunnelState::Connected
    })
    .await;
    // Neither is taken for a reconnect of the other: both stay, and both carry work.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lane0.state(), TunnelState::Connected);
    assert_eq!(lane1.state(), TunnelState::Connected);
    for lane in [&lane0, &lane1] {
        assert!(matches!(
            lane.authorise(request("ok-lane")).await.unwrap(),
            Verdict::Allowed { .. }
        ));
    }
    let mut links = origin.set.snapshots();
    links.sort_by_key(|l| l.lane);
    assert_eq!(links.len(), 2, "{links:?}");
    assert_eq!((links[0].lane, links[1].lane), (0, 1));
    assert!(links
        .iter()
        .all(|l| l.peer == "fra-1" && l.state == TunnelState::Connected));
    let series = render(&origin.set);
    for lane in ["0", "1"] {
        let line = format!(
            "longhaul_tunnel_state{{lane=\"{lane}\",peer=\"fra-1\",peer_region=\"fra\",state=\"connected\"}} 1"
        );
        assert!(series.contains(&line), "{line} missing from\n{series}");
    }
    assert!(render(&edge_set).contains("lane=\"0\""));
    lane0.close();
    lane1.close();
    origin.shutdown.cancel();
}

#[tokio::test]
async fn a_hello_that_is_not_an_edge_s_is_refused() {
    for node_id in ["Not A Name {}", "sin-1"] {
        hello_refused(node_id, 0).await;
    }
    // fra-1 itself, on a lane past the bound.
    hello_refused("fra-1", longhaul_tunnel::server::MAX_LANES).await;
}

/// An edge with fra-1's certificate saying hello as `node_id` on `lane` is refused.
async fn hello_refused(node_id: &str, lane: u16) {
    let c = cluster();
    let origin = start_origin(&c.origin_tls, ([127, 0, 0, 1], 0).into());
    let section = edge_section(c.edge_tls.clone(), origin.addr);
    let endpoint = client_endpoint(&section).unwrap();
    let set = TunnelSet::new();
    let client = TunnelClient::spawn(
        endpoint,
        Hello {
            node_id: node_id.into(),
            region: "fra".into(),
            role: "edge".into(),
            version: VERSION.into(),
            lane,
        },
        section.origins[0].clone(),
        &section.transport,
        &EdgeTls::load(&section.tls).unwrap(),
        longhaul_tunnel::EdgeHooks::load_only(Arc::new(LoadReport::default)),
        &set,
    )
    .unwrap();
    until("refused", || {
        origin
            .set
            .refusals()
            .iter()
            .any(|(r, n)| *r == "bad_hello" && *n > 0)
    })
    .await;
    assert_ne!(client.state(), TunnelState::Connected);
    client.close();
    origin.shutdown.cancel();
}

/// A QUIC handshake of our own to `addr` with `crypto`.
async fn handshake(
    crypto: Arc<quinn::crypto::rustls::QuicClientConfig>,
    addr: SocketAddr,
    name: &str,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
    endpoint
        .connect_with(quinn::ClientConfig::new(crypto), addr, name)
        .unwrap()
        .await
}

fn pem_pair(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> (
    Vec<rustls_pki_types::CertificateDer<'static>>,
    rustls_pki_types::PrivateKeyDer<'static>,
) {
    use rustls_pki_types::pem::PemObject;
    let chain = rustls_pki_types::CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (
        chain,
        rustls_pki_types::PrivateKeyDer::from_pem_file(key).unwrap(),
    )
}

fn fingerprint(path: &std::path::Path) -> longhaul_certs::Fingerprint {
    longhaul_certs::check::describe_file(path)
        .unwrap()
        .fingerprint
}

/// Certificates are issued for one role, and the role is checked in the handshake
/// itself (webpki's extended key usage check), not only when a node loads its files:
/// here a server and a client made without longhaul's load checks try the other role.
#[tokio::test]
async fn a_certificate_is_refused_in_the_other_role() {
    let c = cluster();
    let edge_cert = c.edge_tls.cert.clone().unwrap();
    let edge_key = c.edge_tls.key.clone().unwrap();
    let origin_cert = c.origin_tls.cert.clone().unwrap();
    let origin_key = c.origin_tls.key.clone().unwrap();

    // Loading refuses both mix-ups, naming the file and the missing usage.
    let mixed = |cert: &std::path::PathBuf, key: &std::path::PathBuf| ClusterTlsPaths {
        ca: c.origin_tls.ca.clone(),
        cert: Some(cert.clone()),
        key: Some(key.clone()),
    };
    // An origin's certificate is for both: origins dial their peers (origin peering).
    assert!(EdgeTls::load(&mixed(&origin_cert, &origin_key)).is_ok());
    let section = TunnelListenSection {
        listen: ([127, 0, 0, 1], 0).into(),
        tls: mixed(&edge_cert, &edge_key),
        edge_name_suffix: Some("longhaul.internal".into()),
        allow_any_edge_name: false,
        denied_certificates: Vec::new(),
        denied_certificates_file: None,
        transport: fast(),
    };
    let err = OriginTls::load(&section).err().unwrap().to_string();
    assert!(err.contains("lacks serverAuth"), "{err}");

    // An edge's certificate served as an origin's: the edge refuses the handshake,
    // though the certificate is the cluster CA's and names the host dialled.
    let (chain, key) = pem_pair(&edge_cert, &edge_key);
    let mut server = rustls::ServerConfig::builder_with_provider(longhaul_certs::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    server.alpn_protocols = vec![ALPN.to_vec()];
    let server = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server).unwrap(),
    ));
    let fake = quinn::Endpoint::server(server, ([127, 0, 0, 1], 0).into()).unwrap();
    let accepting = tokio::spawn({
        let fake = fake.clone();
        async move {
            if let Some(incoming) = fake.accept().await {
                let _ = incoming.await;
            }
        }
    });
    let edge = EdgeTls::load(&c.edge_tls).unwrap();
    let refused = handshake(
        edge.crypto(),
        fake.local_addr().unwrap(),
        "fra-1.longhaul.internal",
    )
    .await
    .expect_err("the edge refuses a server certificate without serverAuth");
    let text = refused.to_string();
    assert!(
        text.to_lowercase().contains("purpose") || text.contains("usage"),
        "{text}"
    );
    accepting.abort();

    // An origin's certificate presented as an edge's: TLS lets it in (it is for
    // clientAuth too), and the hello refuses it, as an edge (the certificate is not
    // valid for the edge's name) and as an origin (nyc-1 is no peer of this origin).
    let origin = start_origin(&c.origin_tls, ([127, 0, 0, 1], 0).into());
    for role in ["edge", "origin"] {
        let client = dial(
            &mixed(&origin_cert, &origin_key),
            "fra-1",
            role,
            origin.addr,
        );
        until("the hello refused", || {
            origin
                .set
                .refusals()
                .iter()
                .any(|(r, n)| *r == "bad_hello" && *n > 0)
        })
        .await;
        assert_ne!(client.state(), TunnelState::Connected);
        client.close();
    }
    assert!(origin.service.peers.lock().unwrap().is_empty());
    origin.shutdown.cancel();
}

/// A tunnel client of `tls` saying hello as `node_id` in `role`, to the origin nyc-1 at
/// `origin`.
fn dial(tls: &ClusterTlsPaths, node_id: &str, role: &str, origin: SocketAddr) -> TunnelClient {
    let section = edge_section(tls.clone(), origin);
    let tls = EdgeTls::load(tls).unwrap();
    TunnelClient::spawn(
        client_endpoint(&section).unwrap(),
        Hello {
            node_id: node_id.into(),
            region: "pao".into(),
            role: role.into(),
            version: VERSION.into(),
            lane: 0,
        },
        section.origins[0].clone(),
        &section.transport,
        &tls,
        longhaul_tunnel::EdgeHooks::load_only(Arc::new(LoadReport::default)),
        &TunnelSet::new(),
    )
    .unwrap()
}

/// Origin peering's pull stream: a peer origin (its hello says `origin`, its certificate
/// is the peer's name) asks for a leg and gets it; a peer's refusal reaches the asker;
/// an edge may not pull, and an origin may not claim another origin's name.
#[tokio::test]
async fn a_peer_origin_pulls_a_leg_and_no_one_else_may() {
    let c = cluster();
    let pao =
        c.ca.issue("pao-1.longhaul.internal", NodeRole::Origin, c.dir.path())
            .unwrap()
            .tls_paths();
    let origin = start_origin(&c.origin_tls, ([127, 0, 0, 1], 0).into());
    let peer = dial(&pao, "pao-1", "origin", origin.addr);
    until("the peer connected", || {
        peer.state() == TunnelState::Connected
    })
    .await;
    let header = |name: &str| PullHeader {
        stream_name: name.into(),
        leg: Leg::Primary,
    };
    let mut pull = peer.open_pull(header("0_abcdefgh_1")).await.unwrap();
    let mut got = Vec::new();
    while let Some(p) = tokio::time::timeout(Duration::from_secs(5), pull.next())
        .await
        .expect("the peer sends")
        .unwrap()
    {
        let gone = p == Pulled::Gone;
        got.push(p);
        if gone {
            break;
        }
    }
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[0], Pulled::Live);
    assert!(matches!(&got[3], Pulled::Media(f) if f.timestamp == 80 && f.payload.len() == 100));
    drop(pull);
    until("the pull ended at the peer", || {
        origin
            .service
            .finished
            .lock()
            .unwrap()
            .contains(&"pull 0_abcdefgh_1".to_string())
    })
    .await;
    let mut refused = peer.open_pull(header("not-here")).await.unwrap();
    assert!(matches!(
        refused.next().await.unwrap(),
        Some(Pulled::Refused(e)) if e.description == "not here"
    ));
    let seen = origin.service.peers.lock().unwrap().clone();
    assert!(seen
        .iter()
        .all(|p| p.role == PeerRole::Origin && p.node_id == "pao-1"));

    // An edge opening a pull stream: refused, the tunnel goes on.
    let (edge, _) = start_edge(&edge_section(c.edge_tls.clone(), origin.addr));
    until("the edge connected", || {
        edge.state() == TunnelState::Connected
    })
    .await;
    let mut by_edge = edge.open_pull(header("0_abcdefgh_1")).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), by_edge.next())
        .await
        .expect("an answer");
    assert!(matches!(answer, Ok(Some(Pulled::Refused(_)))), "{answer:?}");
    assert_eq!(edge.state(), TunnelState::Connected);

    // pao-1's certificate claiming to be another origin: refused at the hello.
    let impostor = dial(&pao, "sin-1", "origin", origin.addr);
    until("the impostor refused", || {
        origin
            .set
            .refusals()
            .iter()
            .any(|(r, n)| *r == "bad_hello" && *n > 0)
    })
    .await;
    impostor.close();
    origin.shutdown.cancel();
}

/// The origin's certificate is swapped under a live tunnel: the tunnel goes on, the
/// next handshake gets the new certificate, and a certificate the CA did not sign is
/// refused with the old one still served.
#[tokio::test]
async fn the_origin_certificate_is_swapped_under_a_live_tunnel() {
    let c = cluster();
    let origin = start_origin(&c.origin_tls, ([127, 0, 0, 1], 0).into());
    let (client, edge_set) = start_edge(&edge_section(c.edge_tls.clone(), origin.addr));
    until("connected", || client.state() == TunnelState::Connected).await;
    let (cert, key) = (
        c.origin_tls.cert.clone().unwrap(),
        c.origin_tls.key.clone().unwrap(),
    );
    let old = fingerprint(&cert);

    // New files beside the old, renamed over them (what certbot and k8s do, in effect).
    let staging = c.dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let fresh =
        c.ca.issue("nyc-1.longhaul.internal", NodeRole::Origin, &staging)
            .unwrap();
    std::fs::rename(&fresh.cert, &cert).unwrap();
    std::fs::rename(&fresh.key, &key).unwrap();
    let new = fingerprint(&cert);
    assert_ne!(old, new);
    let now = longhaul_certs::UnixTime::now();
    let outcomes: Vec<_> = origin
        .tls
        .reloadables()
        .iter()
        .filter_map(|r| r.reload(now, true))
        .collect();
    assert!(
        matches!(&outcomes[..], [longhaul_certs::Outcome::Reloaded(d)] if d.contains(&new.to_string())),
        "{outcomes:?}"
    );

    // The live tunnel carries on, on its old session.
    assert_eq!(client.state(), TunnelState::Connected);
    assert!(matches!(
        client.authorise(request("ok-after-swap")).await,
        Ok(Verdict::Allowed { .. })
    ));
    assert_eq!(edge_set.snapshots()[0].reconnects, 0);
    // A new handshake sees the new certificate.
    let edge = EdgeTls::load(&c.edge_tls).unwrap();
    let served = |crypto| async {
        let connection = handshake(crypto, origin.addr, "nyc-1.longhaul.internal")
            .await
            .unwrap();
        let seen = longhaul_tunnel::tls::PeerCertificate::of(&connection)
            .unwrap()
            .fingerprint;
        connection.close(0u32.into(), b"done");
        seen
    };
    assert_eq!(served(edge.crypto()).await, new);

    // A certificate from another CA for the same name: refused, naming the file.
    let foreign = ClusterCa::generate("someone else")
        .unwrap()
        .issue("nyc-1.longhaul.internal", NodeRole::Origin, &staging)
        .unwrap();
    std::fs::rename(&foreign.cert, &cert).unwrap();
    std::fs::rename(&foreign.key, &key).unwrap();
    let outcomes: Vec<_> = origin
        .tls
        .reloadables()
        .iter()
        .filter_map(|r| r.reload(now, true))
        .collect();
    let [longhaul_certs::Outcome::Refused(refusal)] = &outcomes[..] else {
        panic!("expected a refusal: {outcomes:?}");
    };
    assert_eq!(refusal.file, cert);
    assert!(refusal.reason.contains("not signed by the CA"), "{refusal}");
    assert_eq!(served(edge.crypto()).await, new, "the accepted one stays");
    assert_eq!(client.state(), TunnelState::Connected);
    client.close();
    origin.shutdown.cancel();
}

/// An edge's fingerprint added to the deny list cuts its live tunnel, and it cannot
/// connect again until the fingerprint is taken out.
#[tokio::test]
async fn a_denied_edge_is_cut_and_kept_out_until_lifted() {
    let c = cluster();
    let denied = c.dir.path().join("denied.txt");
    std::fs::write(&denied, "# nobody\n").unwrap();
    let origin = start_origin_denying(
        &c.origin_tls,
        ([127, 0, 0, 1], 0).into(),
        Some(denied.clone()),
    );
    let (client, _) = start_edge(&edge_section(c.edge_tls.clone(), origin.addr));
    until("connected", || client.state() == TunnelState::Connected).await;
    let edge = fingerprint(c.edge_tls.cert.as_ref().unwrap());
    let reload = || {
        let now = longhaul_certs::UnixTime::now();
        origin
            .tls
            .reloadables()
            .iter()
            .filter_map(|r| r.reload(now, true))
            .collect::<Vec<_>>()
    };

    std::fs::write(&denied, format!("# fra-1, key lost\n{edge}\n")).unwrap();
    assert!(matches!(
        &reload()[..],
        [longhaul_certs::Outcome::Reloaded(_)]
    ));
    until("the live tunnel cut", || {
        client.state() != TunnelState::Connected && origin.set.denied_cuts() == 1
    })
    .await;
    until("the reconnect refused", || {
        origin
            .set
            .refusals()
            .iter()
            .any(|(r, n)| *r == "denied_certificate" && *n > 0)
    })
    .await;
    assert_ne!(client.state(), TunnelState::Connected);
    assert!(matches!(
        client.authorise(request("ok")).await,
        Err(TunnelError::NotConnected { .. })
    ));
    let text = render(&origin.set);
    assert!(
        text.contains("longhaul_tunnel_denied_cuts_total 1"),
        "{text}"
    );

    std::fs::write(&denied, "# fra-1 has a new key\n").unwrap();
    assert!(matches!(
        &reload()[..],
        [longhaul_certs::Outcome::Reloaded(_)]
    ));
    until("connected again", || {
        client.state() == TunnelState::Connected
    })
    .await;
    client.close();
    origin.shutdown.cancel();
}

/// What an operator does for a stolen edge key: deny the old certificate, give the edge
/// a new one. The edge takes its new files without a restart and is let back in.
#[tokio::test]
async fn a_denied_edge_comes_back_with_a_new_certificate() {
    let c = cluster();
    let denied = c.dir.path().join("denied.txt");
    let old = fingerprint(c.edge_tls.cert.as_ref().unwrap());
    std::fs::write(&denied, "").unwrap();
    let origin = start_origin_denying(
        &c.origin_tls,
        ([127, 0, 0, 1], 0).into(),
        Some(denied.clone()),
    );
    let (client, _, edge_tls) = start_edge_with_tls(&edge_section(c.edge_tls.clone(), origin.addr));
    until("connected", || client.state() == TunnelState::Connected).await;
    let now = longhaul_certs::UnixTime::now();
    std::fs::write(&denied, format!("{old}\n")).unwrap();
    for r in origin.tls.reloadables() {
        r.reload(now, true);
    }
    until("cut", || origin.set.denied_cuts() == 1).await;

    let staging = c.dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let fresh =
        c.ca.issue("fra-1.longhaul.internal", NodeRole::Edge, &staging)
            .unwrap();
    let (cert, key) = (c.edge_tls.cert.unwrap(), c.edge_tls.key.unwrap());
    std::fs::rename(&fresh.cert, &cert).unwrap();
    std::fs::rename(&fresh.key, &key).unwrap();
    let outcomes: Vec<_> = edge_tls
        .reloadables()
        .iter()
        .filter_map(|r| r.reload(now, true))
        .collect();
    assert!(
        matches!(&outcomes[..], [longhaul_certs::Outcome::Reloaded(_)]),
        "{outcomes:?}"
    );
    until("back in with the new certificate", || {
        client.state() == TunnelState::Connected
    })
    .await;
    assert!(matches!(
        client.authorise(request("ok-again")).await,
        Ok(Verdict::Allowed { .. })
    ));
    client.close();
    origin.shutdown.cancel();
}
