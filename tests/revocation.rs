//! One registry for both data centres, and revocation that cuts live streams: two origin
//! processes (nyc, pao) sharing a real PostgreSQL, an edge process (fra) tunnelled to
//! both, real ffmpeg encoders.
//!
//! - A token regenerated, or an entry deleted, through pao's API cuts within 2 s both an
//!   encoder publishing through the edge and one publishing straight to nyc; each
//!   encoder's stderr says why; the new token then publishes.
//! - An entry created through nyc's API is accepted at pao, and neither refuses it while
//!   the database is briefly down (fail static); writes answer 503 meanwhile; an origin
//!   restarted during the outage starts from its saved copy and takes it too.

mod support;

use std::process::Output;
use std::time::{Duration, Instant};
use support::processes::*;
use support::*;

/// The issue's promise: every live publish of the entry is cut within this of the call.
const CUT_LIMIT: Duration = Duration::from_secs(2);

/// A fresh database on the test server (`.ci/run`'s, or this process's own).
async fn database() -> (String, String) {
    tokio::task::spawn_blocking(|| {
        let server = longhaul_registry::testing::shared_server()
            .unwrap_or_else(|e| panic!("PostgreSQL for the tests: {e}"));
        let db = server.create_database().expect("a database");
        (server.url(&db), server.password().to_owned())
    })
    .await
    .unwrap()
}

async fn api(node: &Node, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    let url = format!("http://{}/api/v1{path}", node.addr("http"));
    let (status, _, bytes) = http(method, &url, body, None).await;
    let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, value)
}

async fn create_entry(node: &Node, name: &str) -> (String, String) {
    let (status, v) = api(node, "POST", "/entries", &format!(r#"{{"name":"{name}"}}"#)).await;
    assert_eq!(status, 201, "{v}");
    (
        v["id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

/// An encoder that runs for far longer than the test waits, unless it is cut.
fn encoder(url: &str) -> std::process::Child {
    ffmpeg_publish(url, "320x240", 60, 50)
}

/// Waits for an encoder to end; returns when it ended and what it said.
fn ended(child: std::process::Child) -> tokio::task::JoinHandle<(Instant, Output)> {
    tokio::task::spawn_blocking(move || {
        let out = wait_bounded(child);
        (Instant::now(), out)
    })
}

/// Each encoder ended within [`CUT_LIMIT`] of `called`, its stderr saying `words`.
async fn assert_cut(
    called: Instant,
    encoders: [(&str, tokio::task::JoinHandle<(Instant, Output)>); 2],
    words: &str,
) {
    for (what, encoder) in encoders {
        let (at, out) = encoder.await.unwrap();
        let took = at.saturating_duration_since(called);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("the encoder {what} was cut {took:?} after the call: {stderr}");
        assert!(took <= CUT_LIMIT, "{what}: cut after {took:?}");
        assert!(stderr.contains(words), "{what}: ffmpeg said: {stderr}");
    }
}

struct TwoSites {
    cluster: Cluster,
    nyc: Node,
    pao: Node,
    edge: Node,
}

/// nyc and pao on one PostgreSQL database, and edge fra (leg p to nyc) tunnelled to both.
async fn two_sites() -> TwoSites {
    let (url, password) = database().await;
    let cluster = Cluster::new();
    let registry = cluster.postgres_registry(&url, &password);
    let nyc = cluster.origin_with(&NYC, None, &registry);
    let pao = cluster.origin_with(&PAO, None, &registry);
    let edge = cluster.edge("fra-test", "fra", &[(&NYC, &nyc), (&PAO, &pao)], true);
    until_metrics(&edge, "the edge's tunnels to both origins", |m| {
        connected(m, NYC.id) && connected(m, PAO.id)
    })
    .await;
    TwoSites {
        cluster,
        nyc,
        pao,
        edge,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regeneration_and_deletion_at_the_other_origin_cut_live_publishes_within_2s() {
    let sites = two_sites().await;
    let (id, token) = create_entry(&sites.nyc, "town hall").await;
    let via_edge = |token: &str, n: u32| {
        format!(
            "rtmp://{}/kLive/?t={token}/{id}_{n}",
            sites.edge.addr("rtmp")
        )
    };
    let direct = |token: &str, n: u32| {
        format!(
            "rtmp://{}/kLive/?t={token}/{id}_{n}",
            sites.nyc.addr("rtmp")
        )
    };

    // Regeneration through pao, while nyc carries both publishes.
    let relayed = ended(encoder(&via_edge(&token, 1)));
    let straight = ended(encoder(&direct(&token, 2)));
    wait_live(&sites.nyc, &format!("{id}_1")).await;
    let live = wait_live(&sites.nyc, &format!("{id}_2")).await;
    assert_eq!(live["via_edge"], serde_json::Value::Null);
    let called = Instant::now();
    let (status, renewed) = api(
        &sites.pao,
        "POST",
        &format!("/entries/{id}/regenerate-token"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    let regenerated = format!("the token of entry {id} was regenerated");
    assert_cut(
        called,
        [("through the edge", relayed), ("straight to nyc", straight)],
        &regenerated,
    )
    .await;

    // The old token is refused from now on; the new one publishes, by either path.
    let new_token = renewed["token"].as_str().unwrap().to_owned();
    let old = wait_child(ffmpeg_publish(&via_edge(&token, 1), "320x240", 2, 50)).await;
    let stderr = String::from_utf8_lossy(&old.stderr);
    assert!(!old.status.success());
    assert!(stderr.contains("wrong token"), "ffmpeg said: {stderr}");
    let relayed = ended(encoder(&via_edge(&new_token, 1)));
    let straight = ended(encoder(&direct(&new_token, 2)));
    wait_live(&sites.nyc, &format!("{id}_1")).await;
    wait_live(&sites.nyc, &format!("{id}_2")).await;

    // Deletion through pao cuts both again.
    let called = Instant::now();
    let (status, _) = api(&sites.pao, "DELETE", &format!("/entries/{id}"), "").await;
    assert_eq!(status, 204);
    let deleted = format!("entry {id} was deleted");
    assert_cut(
        called,
        [("through the edge", relayed), ("straight to nyc", straight)],
        &deleted,
    )
    .await;

    // Counted at nyc (where the publishes were) and at the edge (which both origins told).
    let m = metrics_of(&sites.nyc).await;
    assert!(
        present(
            &m,
            "longhaul_revocations_total",
            &[("reason", "token_revoked")]
        ) >= 1.0
    );
    assert!(
        present(
            &m,
            "longhaul_revocations_total",
            &[("reason", "entry_deleted")]
        ) >= 1.0
    );
    assert!(
        present(
            &m,
            "longhaul_publishes_cut_total",
            &[("reason", "token_revoked")]
        ) >= 1.0
    );
    let m = metrics_of(&sites.edge).await;
    assert!(
        present(
            &m,
            "longhaul_edge_revocations_total",
            &[("reason", "token_revoked")]
        ) >= 1.0,
        "{m}"
    );
    drop(sites.cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_made_at_nyc_publishes_at_pao_and_neither_refuses_it_while_the_database_is_down() {
    use longhaul_registry::testing::PostgresServer;
    let (server, database) = tokio::task::spawn_blocking(PostgresServer::start_with_database)
        .await
        .unwrap()
        .expect("a private PostgreSQL with a database");
    let cluster = Cluster::new();
    let registry = cluster.postgres_registry(&server.url(&database), server.password());
    let with_cache = |site: &str| {
        format!(
            "{registry}\ncache = {:?}",
            cluster.path(&format!("{site}-cache.json"))
        )
    };
    let nyc = cluster.origin_with(&NYC, None, &with_cache("nyc"));
    let mut pao = cluster.origin_with(&PAO, None, &with_cache("pao"));

    // Made through nyc, published at pao right away.
    let (id, token) = create_entry(&nyc, "shared").await;
    let url =
        |node: &Node, n: u32| format!("rtmp://{}/kLive/?t={token}/{id}_{n}", node.addr("rtmp"));
    let at_pao = ended(encoder(&url(&pao, 1)));
    wait_live(&pao, &format!("{id}_1")).await;

    // pao has saved its copy with the entry (within `SAVE_INTERVAL`).
    let pao_cache = cluster.path("pao-cache.json");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&pao_cache).is_ok_and(|c| c.contains(&id)) {
        assert!(Instant::now() < deadline, "pao never saved its copy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The database goes down: both origins still take the entry's token.
    let server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.stop().expect("stop PostgreSQL");
        server
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(12);
    for node in [&nyc, &pao] {
        loop {
            let v = health_of(node).await;
            if v["status"] == "degraded" {
                assert_eq!(v["registry"]["state"], "unreachable", "{v}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "healthz never said degraded: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let m = metrics_of(&nyc).await;
    assert_eq!(
        present(&m, "longhaul_registry_up", &[("backend", "postgres")]),
        0.0
    );
    let at_nyc = ended(encoder(&url(&nyc, 2)));
    wait_live(&nyc, &format!("{id}_2")).await;
    // pao restarts in the middle of the outage: it starts from its saved copy.
    let pao_addresses = (pao.addr("rtmp"), pao.addr("http"), pao.addr("tunnel"));
    drop(pao);
    pao = cluster.origin_with(&PAO, Some(pao_addresses), &with_cache("pao"));
    let health = health_of(&pao).await;
    assert_eq!(health["registry"]["state"], "unreachable", "{health}");
    assert!(
        pao.logs()
            .contains("starting from the entries saved on disk"),
        "{}",
        pao.logs()
    );
    let again_at_pao = ended(encoder(&url(&pao, 3)));
    wait_live(&pao, &format!("{id}_3")).await;
    // Changes are refused, clearly, with a hint to retry.
    let (status, v) = api(&pao, "POST", "/entries", r#"{"name":"while down"}"#).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "registry_unavailable");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("publishes go on"),
        "{v}"
    );

    // Back: healthy again, writes work.
    let _server = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.restart().expect("restart PostgreSQL");
        server
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let (status, v) = api(&nyc, "POST", "/entries", r#"{"name":"after"}"#).await;
        if status == 201 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "writes never came back: {status} {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // pao, started from its copy, catches up with the database and says so.
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let v = health_of(&pao).await;
        if v["status"] == "ok" && v["registry"]["entries"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "pao never caught up: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The encoders ran on throughout: none was cut (the first one at pao went with
    // the process it published to).
    let encoders = [at_nyc, again_at_pao];
    assert!(
        encoders.iter().all(|e| !e.is_finished()),
        "an encoder stopped while the database was down"
    );
    // Stopping the origins ends them.
    drop((nyc, pao));
    for encoder in encoders {
        encoder.await.unwrap();
    }
    at_pao.await.unwrap();
    drop(cluster);
}
