//! Both ends of a tunnel on loopback: real UDP, real TLS, a toy origin service.

use bytes::Bytes;
use longhaul_endpoint::Leg;
use longhaul_tunnel::pki::ClusterCa;
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
        }
    }
    fn load(&self) -> LoadReport {
        LoadReport {
            healthy: true,
            publishers: 1,
            connections: 2,
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
        while let Ok(Some(frame)) = media.next().await {
            self.frames
                .lock()
                .unwrap()
                .push((header.stream_name.clone(), frame));
            if header.stream_name == "end-me" {
                ender
                    .end(StreamEnd {
                        code: "NetStream.Publish.Rejected".into(),
                        description: "taken over".into(),
                    })
                    .await;
                return;
            }
        }
        self.finished.lock().unwrap().push(header.stream_name);
        ender.finish();
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    origin_tls: ClusterTlsPaths,
    edge_tls: ClusterTlsPaths,
}

fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let ca = ClusterCa::generate("test cluster CA").unwrap();
    let origin = ca.issue("nyc-1.longhaul.internal", dir.path()).unwrap();
    let edge = ca.issue("fra-1.longhaul.internal", dir.path()).unwrap();
    Cluster {
        origin_tls: origin.tls_paths(),
        edge_tls: edge.tls_paths(),
        _dir: dir,
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
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start_origin(tls: &ClusterTlsPaths, listen: SocketAddr) -> RunningOrigin {
    let section = TunnelListenSection {
        listen,
        tls: tls.clone(),
        edge_name_suffix: Some("longhaul.internal".into()),
        allow_any_edge_name: false,
        transport: fast(),
    };
    let endpoint = server_endpoint(&section).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let service = Arc::new(ToyOrigin::default());
    let set = TunnelSet::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server::serve(
        endpoint,
        service.clone(),
        section,
        set.clone(),
        shutdown.clone(),
    ));
    RunningOrigin {
        addr,
        service,
        set,
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
    let endpoint = client_endpoint(section).unwrap();
    let set = TunnelSet::new();
    let client = TunnelClient::spawn(
        endpoint,
        Hello {
            node_id: "fra-1".into(),
            region: "fra".into(),
            role: "edge".into(),
            version: VERSION.into(),
        },
        section.origins[0].clone(),
        section,
        longhaul_tunnel::EdgeHooks::load_only(Arc::new(LoadReport::default)),
        &set,
    )
    .unwrap();
    (client, set)
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
                })
                .await
                .unwrap(),
        );
    }
    let payload = Bytes::from(vec![7u8; 100_000]);
    for round in 0..20u32 {
        for s in &mut senders {
            s.send(&MediaFrame {
                kind: if round % 2 == 0 { 9 } else { 8 },
                timestamp: round * 40,
                payload: payload.slice(..(round as usize * 1000 + 1)),
            })
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
        text.contains(r#"longhaul_tunnel_open_streams{peer="nyc-1",peer_region="nyc"} 3"#),
        "{text}"
    );
    assert!(text
        .contains(r#"longhaul_tunnel_state{peer="nyc-1",peer_region="nyc",state="connected"} 1"#));
    assert!(text.contains("longhaul_tunnel_srtt_seconds{"));
    assert!(text.contains(r#"longhaul_tunnel_streams_total{peer="nyc-1",peer_region="nyc"} 3"#));
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
        })
        .await
        .unwrap();
    let mut end = sender.end_signal();
    sender
        .send(&MediaFrame {
            kind: 9,
            timestamp: 0,
            payload: Bytes::from_static(b"x"),
        })
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

    // A certificate from another CA is refused too.
    let other = tempfile::tempdir().unwrap();
    let foreign = ClusterCa::generate("someone else")
        .unwrap()
        .issue("fra-1.longhaul.internal", other.path())
        .unwrap();
    let tls = ClusterTlsPaths {
        ca: c.edge_tls.ca.clone(),
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
async fn a_hello_that_is_not_an_edge_s_is_refused() {
    for node_id in ["Not A Name {}", "sin-1"] {
        hello_refused(node_id).await;
    }
}

/// An edge with fra-1's certificate saying hello as `node_id` is refused.
async fn hello_refused(node_id: &str) {
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
        },
        section.origins[0].clone(),
        &section,
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
