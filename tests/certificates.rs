//! Certificates swapped under running nodes: the real `longhaul` binary, real RTMPS and
//! QUIC tunnels, real ffmpeg streams through the swaps, and a rustls client of the
//! test's own reading which certificate a new handshake gets.
//!
//! New files are written beside the old and renamed over them, as certbot's symlinks and
//! Kubernetes' secret volumes do in effect; the nodes look at them every second (the
//! default `node.certificate_poll_ms`) or on SIGHUP.

mod support;

use longhaul_certs::Fingerprint;
use longhaul_tunnel::pki::{ClusterCa, NodeRole};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::processes::*;
use support::*;

/// The ends of the two RTMPS certificates, told apart in `certificate_expiry_seconds`:
/// 1 January of these years, and their Unix times.
const FIRST: (i32, f64) = (2035, 2_051_222_400.0);
const SECOND: (i32, f64) = (2036, 2_082_758_400.0);

/// 10 s at 25 fps, one keyframe for the whole clip: a player that joins while it runs
/// gets it whole from the GOP cache, so a frame count tells an unbroken stream.
const CLIP_SECONDS: u32 = 10;
const CLIP_FRAMES: u64 = 250;

/// Takes any server certificate: the test only reads which one was served.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The fingerprint of the certificate a new RTMPS handshake with `addr` gets (a fresh
/// client each time: no session to resume).
async fn served(addr: SocketAddr) -> Fingerprint {
    let provider = longhaul_certs::provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("RTMPS handshake");
    let leaf = &tls.get_ref().1.peer_certificates().expect("a certificate")[0];
    Fingerprint::of(leaf.as_ref())
}

/// Waits (15 s at most) until new RTMPS handshakes with `addr` get `want`.
async fn until_served(addr: SocketAddr, want: Fingerprint) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while served(addr).await != want {
        assert!(Instant::now() < deadline, "{want} never served on {addr}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes a self-signed certificate for 127.0.0.1 valid until 1 January of `until.0`
/// beside `cert` and `key`, then renames it over them; returns its fingerprint.
fn swap_in_self_signed(cert: &Path, key: &Path, until: (i32, f64)) -> Fingerprint {
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(until.0, 1, 1);
    let pair = rcgen::KeyPair::generate().unwrap();
    let certificate = params.self_signed(&pair).unwrap();
    for (path, text) in [(cert, certificate.pem()), (key, pair.serialize_pem())] {
        let staging = path.with_extension("new");
        std::fs::write(&staging, text).unwrap();
        std::fs::rename(&staging, path).unwrap();
    }
    Fingerprint::of(certificate.der())
}

fn rtmps_section(cert: &Path, key: &Path) -> String {
    format!("[rtmps]\nlisten = \"127.0.0.1:0\"\ncert = {cert:?}\nkey = {key:?}")
}

fn reloads(m: &str, what: &str, result: &str) -> f64 {
    metric(
        m,
        "longhaul_certificate_reloads_total",
        &[("what", what), ("result", result)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rtmps_certificate_is_swapped_under_a_live_rtmps_stream() {
    let cluster = Cluster::new();
    let (cert, key) = (cluster.path("rtmps.pem"), cluster.path("rtmps.key"));
    let first = swap_in_self_signed(&cert, &key, FIRST);
    let registry = cluster.sqlite_registry();
    let origin = cluster.origin_with(
        &NYC,
        None,
        &format!("{registry}\n{}", rtmps_section(&cert, &key)),
    );
    let rtmps = origin.addr("rtmps");
    assert_eq!(served(rtmps).await, first);
    let m = metrics_of(&origin).await;
    let expiry = [("what", "rtmps")];
    assert_eq!(
        present(&m, "longhaul_certificate_expiry_seconds", &expiry),
        FIRST.1
    );
    assert_eq!(reloads(&m, "rtmps", "reloaded"), 0.0, "{m}");

    let entry = cluster
        .registry()
        .await
        .create_entry(Some("rtmps swap"))
        .await
        .unwrap();
    let name = format!("{}_1", entry.id);
    let url = format!("rtmps://{rtmps}/kLive/?t={}/{name}", entry.token);
    let publisher = ffmpeg_publish(&url, "320x240", CLIP_SECONDS, 1000);
    wait_live(&origin, &name).await;
    let played = cluster.path("played.flv");
    let player = ffmpeg_record(
        &format!("rtmp://{}/kLive/{name}", origin.addr("rtmp")),
        &played,
    );

    // A new certificate: new handshakes get it within two polls.
    let second = swap_in_self_signed(&cert, &key, SECOND);
    until_served(rtmps, second).await;
    let m = until_metrics(&origin, "the reload counted", |m| {
        reloads(m, "rtmps", "reloaded") == 1.0
    })
    .await;
    assert_eq!(
        present(&m, "longhaul_certificate_expiry_seconds", &expiry),
        SECOND.1
    );
    origin
        .logged(&["certificate files reloaded", &second.to_string()])
        .await;

    // A certificate whose key is not beside it: refused, naming the key file; the
    // second one goes on serving.
    let staging = cluster.path("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let (other_cert, other_key) = (staging.join("other.pem"), staging.join("other.key"));
    swap_in_self_signed(&other_cert, &other_key, FIRST);
    std::fs::rename(&other_cert, &cert).unwrap();
    until_metrics(&origin, "the refusal counted", |m| {
        reloads(m, "rtmps", "refused") == 1.0
    })
    .await;
    let line = origin
        .logged(&["new certificate files refused", "does not belong"])
        .await;
    assert!(line.contains(&*key.to_string_lossy()), "{line}");
    assert_eq!(served(rtmps).await, second);

    // The encoder's RTMPS session ran its whole length through both, and the player got
    // every frame.
    let out = wait_child(publisher).await;
    assert!(
        out.status.success(),
        "the RTMPS publisher failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = wait_child(player).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(probe(&played).video_frames, CLIP_FRAMES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_at_once() {
    let cluster = Cluster::new();
    let (cert, key) = (cluster.path("rtmps.pem"), cluster.path("rtmps.key"));
    let first = swap_in_self_signed(&cert, &key, FIRST);
    let rest = format!(
        "{}\n{}",
        cluster.sqlite_registry(),
        rtmps_section(&cert, &key)
    );
    let origin = cluster.origin_with_sections(
        &NYC,
        None,
        OriginExtra {
            node: "certificate_poll_ms = 0",
            rest: &rest,
            ..OriginExtra::default()
        },
    );
    let rtmps = origin.addr("rtmps");
    let second = swap_in_self_signed(&cert, &key, SECOND);
    // No polling: three seconds (three default polls) on, the first is still served.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(served(rtmps).await, first);

    origin.hangup();
    until_served(rtmps, second).await;
    origin.logged(&["SIGHUP: reloading certificates"]).await;
    let m = metrics_of(&origin).await;
    assert_eq!(reloads(&m, "rtmps", "reloaded"), 1.0, "{m}");
    // A SIGHUP with nothing new says so and counts nothing.
    origin.hangup();
    origin.logged(&["SIGHUP: no certificate"]).await;
    let m = metrics_of(&origin).await;
    assert_eq!(reloads(&m, "rtmps", "reloaded"), 1.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origin_tunnel_certificate_is_swapped_while_an_edge_relays() {
    let cluster = Cluster::new();
    let nyc = cluster.origin(&NYC, None);
    let fra = cluster.edge("fra-test", "fra", &[(&NYC, &nyc)], true);
    until_metrics(&fra, "the tunnel up", |m| connected(m, NYC.id)).await;
    let entry = cluster
        .registry()
        .await
        .create_entry(Some("tunnel swap"))
        .await
        .unwrap();
    let (name, url) = publish_url(&fra, &entry);
    let publisher = ffmpeg_publish(&url, "320x240", CLIP_SECONDS, 1000);
    wait_live(&nyc, &name).await;
    let played = cluster.path("played.flv");
    let player = ffmpeg_record(
        &format!("rtmp://{}/kLive/{name}", nyc.addr("rtmp")),
        &played,
    );

    // nyc's new certificate from the cluster CA, renamed over the files it serves.
    let live = cluster.files_of(NYC.id);
    let staging = cluster.path("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let fresh = cluster
        .ca()
        .issue(&tunnel_name(NYC.id), NodeRole::Origin, &staging)
        .unwrap();
    std::fs::rename(&fresh.cert, &live.cert).unwrap();
    std::fs::rename(&fresh.key, &live.key).unwrap();
    let new = longhaul_certs::check::describe_file(&live.cert)
        .unwrap()
        .fingerprint;
    until_metrics(&nyc, "the reload counted", |m| {
        reloads(m, "tunnel", "reloaded") == 1.0
    })
    .await;
    nyc.logged(&["certificate files reloaded", &new.to_string()])
        .await;

    // A new tunnel handshake gets the new certificate, and verifies it against the CA.
    let gru = cluster.files(GRU, NodeRole::Edge);
    let tls = longhaul_tunnel::EdgeTls::load(&gru.tls_paths()).unwrap();
    let endpoint = quinn::Endpoint::client(([127, 0, 0, 1], 0).into()).unwrap();
    let connection = endpoint
        .connect_with(
            quinn::ClientConfig::new(tls.crypto()),
            nyc.addr("tunnel"),
            &tunnel_name(NYC.id),
        )
        .unwrap()
        .await
        .expect("a handshake with the new certificate");
    let seen = longhaul_tunnel::tls::PeerCertificate::of(&connection).unwrap();
    assert_eq!(seen.fingerprint, new);
    connection.close(0u32.into(), b"done");

    // A certificate of another CA: refused, naming the file; the new one stays.
    let foreign = ClusterCa::generate("not the cluster CA")
        .unwrap()
        .issue(&tunnel_name(NYC.id), NodeRole::Origin, &staging)
        .unwrap();
    std::fs::rename(&foreign.cert, &live.cert).unwrap();
    std::fs::rename(&foreign.key, &live.key).unwrap();
    until_metrics(&nyc, "the refusal counted", |m| {
        reloads(m, "tunnel", "refused") == 1.0
    })
    .await;
    let line = nyc
        .logged(&["new certificate files refused", "not signed by the CA"])
        .await;
    assert!(line.contains(&*live.cert.to_string_lossy()), "{line}");

    // The tunnel never dropped: the stream went through whole, and each of the edge's
    // tunnels (one per shard) connected once and never again.
    let out = wait_child(publisher).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = wait_child(player).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(probe(&played).video_frames, CLIP_FRAMES);
    let m = metrics_of(&fra).await;
    let peer = [("peer", NYC.id)];
    assert_eq!(present(&m, "longhaul_tunnel_reconnects_total", &peer), 0.0);
    let entered = [("peer", NYC.id), ("to", "connected")];
    assert_eq!(
        present(&m, "longhaul_tunnel_state_changes_total", &entered),
        lanes(&m, NYC.id),
        "each lane connected once"
    );
    assert!(connected(&m, NYC.id));
}

const GRU: &str = "gru-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_edge_certificate_cuts_its_live_tunnel_and_keeps_it_out() {
    let cluster = Cluster::new();
    let denied = cluster.path("denied.txt");
    std::fs::write(&denied, "# edge certificates shut out of this origin\n").unwrap();
    let tunnel = format!("denied_certificates_file = {denied:?}");
    let nyc = cluster.origin_with_sections(
        &NYC,
        None,
        OriginExtra {
            tunnel: &tunnel,
            rest: &cluster.sqlite_registry(),
            ..OriginExtra::default()
        },
    );
    let fra = cluster.edge("fra-test", "fra", &[(&NYC, &nyc)], true);
    let m = until_metrics(&fra, "the tunnel up", |m| connected(m, NYC.id)).await;
    // One live tunnel per shard of the edge.
    let tunnels = lanes(&m, NYC.id);
    let entry = cluster
        .registry()
        .await
        .create_entry(Some("denied"))
        .await
        .unwrap();
    let (name, url) = publish_url(&fra, &entry);
    let publisher = ffmpeg_publish(&url, "320x240", 20, 25);
    wait_live(&nyc, &name).await;

    // The operator reads the stolen certificate's fingerprint and lists it.
    let out = Command::new(BIN)
        .args(["pki", "fingerprint"])
        .arg(cluster.files_of("fra-test").cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let fingerprint = stdout.split_whitespace().next().unwrap().to_string();
    let listed = Instant::now();
    std::fs::write(
        &denied,
        format!("# fra-test: key copied off the host\n{fingerprint}\n"),
    )
    .unwrap();
    until_metrics(&nyc, "the live tunnels cut", |m| {
        metric(m, "longhaul_tunnel_denied_cuts_total", &[]) == tunnels
    })
    .await;
    eprintln!(
        "fra's live tunnel cut {:?} after its fingerprint was listed",
        listed.elapsed()
    );
    let line = nyc
        .logged(&["tunnel cut", "deny list", "fra-test", &fingerprint])
        .await;
    assert!(line.contains("127.0.0.1:"), "the edge's address: {line}");
    let m = metrics_of(&nyc).await;
    assert_eq!(reloads(&m, "denied_certificates", "reloaded"), 1.0, "{m}");

    // It cannot come back: every reconnect is refused after the handshake, and counted.
    let m = until_metrics(&nyc, "reconnects refused", |m| {
        metric(
            m,
            "longhaul_tunnel_handshake_refusals_total",
            &[("reason", "denied_certificate")],
        ) >= 2.0
    })
    .await;
    let at_fra = metrics_of(&fra).await;
    let up = [("peer", NYC.id), ("state", "connected")];
    assert_eq!(
        metric(&at_fra, "longhaul_tunnel_state", &up),
        0.0,
        "{at_fra}"
    );
    assert_eq!(
        metric(&m, "longhaul_tunnel_denied_cuts_total", &[]),
        tunnels
    );
    nyc.logged(&["tunnel refused", "deny list", &fingerprint])
        .await;
    fra.logged(&["the origin denies this edge's certificate"])
        .await;
    // The encoder relayed through fra lost its stream (however ffmpeg reports it).
    wait_child(publisher).await;
}

/// SIGHUP's default action ends a process: a node with no certificate files at all
/// takes it too, for `systemctl reload` sent to every node alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_nothing_to_reload_lives_through_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("plain.toml");
    let registry = dir.path().join("registry.db");
    std::fs::write(
        &config,
        format!(
            "[node]\nid = \"plain-test\"\nregion = \"nyc\"\n[rtmp]\nlisten = \"127.0.0.1:0\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[registry]\npath = {registry:?}\n"
        ),
    )
    .unwrap();
    let origin = spawn_node("origin", &config);
    origin.hangup();
    origin.logged(&["SIGHUP: no certificate"]).await;
    assert_eq!(health_of(&origin).await["status"], "ok");
}
