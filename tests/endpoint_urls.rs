//! The URLs an entry hands out work when pasted into an encoder: the data centres'
//! primary and backup legs, RTMP and RTMPS, go live on the origin each leg names, and a
//! region's legs go through its edge to the origin the edge routes each leg to. The URLs
//! come from the origin's own `[endpoints]` settings type and endpoint model, filled with
//! the cluster's addresses as `longhaul dev` fills them with its port table.

mod support;

use longhaul_endpoint::{entry_endpoints, Leg};
use longhaul_origin::config::{EndpointsSection, LegAddress, RegionEndpoint};
use support::processes::*;
use support::*;

/// Long enough for every stream to be seen live while all eight publish at once.
const CLIP_SECONDS: u32 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_out_urls_go_live_on_the_origin_each_leg_names() {
    let cluster = Cluster::new();
    let extra = format!(
        "[registry]\npath = {:?}\n{}",
        cluster.path("registry.db"),
        cluster.rtmps_section()
    );
    let nyc = cluster.origin_with(&NYC, None, &extra);
    let pao = cluster.origin_with(&PAO, None, &extra);
    // fra's leg p goes to nyc, leg b to pao.
    let fra = cluster.edge("fra-test", "fra", &[(&NYC, &nyc), (&PAO, &pao)], true);
    until_metrics(&fra, "both tunnels up", |m| {
        connected(m, NYC.id) && connected(m, PAO.id)
    })
    .await;

    // Leg p straight to nyc, leg b to pao; the edge fra takes both on its own ports.
    let (n, p, f) = (nyc.addr("rtmp"), pao.addr("rtmp"), fra.addr("rtmp"));
    let section = EndpointsSection {
        host: n.ip().to_string(),
        rtmp_port: n.port(),
        rtmps_port: nyc.addr("rtmps").port(),
        rtsp_port: None,
        rtsps_port: None,
        leg_subdomains: false,
        renditions: 4,
        backup: Some(LegAddress {
            host: p.ip().to_string(),
            rtmp_port: Some(p.port()),
            rtmps_port: Some(pao.addr("rtmps").port()),
            ..LegAddress::default()
        }),
        play_rtmp: None,
        play_http_flv: None,
        speed_tests: vec![],
        regions: vec![RegionEndpoint {
            region: "fra".into(),
            name: "EMEA (Frankfurt)".into(),
            host: f.ip().to_string(),
            rtmp_port: f.port(),
            rtmps_port: fra.addr("rtmps").port(),
            ..RegionEndpoint::default()
        }],
    };
    section.validate().expect("valid endpoints");
    let entry = cluster
        .registry()
        .await
        .create_entry(Some("pasted"))
        .await
        .unwrap();
    let endpoints = entry_endpoints(&entry.id, &entry.token, &section.hosts(), 4);
    let region = &endpoints.regions[0];

    // Each URL with a rendition of its own, so no two publishes share a stream; leg p
    // lands on nyc, leg b on pao, whether straight or through fra.
    let names = &endpoints.stream_names;
    let mut cases = Vec::new();
    for (urls, via, renditions) in [
        (&endpoints.origins, None, [&names[0], &names[1]]),
        (&region.urls, Some("fra-test"), [&names[2], &names[3]]),
    ] {
        for (leg, secure, url) in urls.all() {
            let origin = if leg == Leg::Primary { &nyc } else { &pao };
            cases.push((url, renditions[usize::from(secure)], leg, origin, via));
        }
    }
    assert_eq!(cases.len(), 8);
    // As an operator pastes them: `ffmpeg ... -f flv '<URL>/<stream name>'`.
    let publishers: Vec<_> = cases
        .iter()
        .map(|(url, name, ..)| {
            ffmpeg_publish(&format!("{url}/{name}"), "320x240", CLIP_SECONDS, 50)
        })
        .collect();
    for (url, name, leg, origin, via) in &cases {
        let live = wait_live(origin, name).await;
        assert_eq!(live["leg"], leg.as_str(), "{url}: {live}");
        assert_eq!(live["via_edge"].as_str(), *via, "{url}: {live}");
    }
    for (publisher, (url, ..)) in publishers.into_iter().zip(&cases) {
        let out = wait_child(publisher).await;
        assert!(
            out.status.success(),
            "ffmpeg publishing to {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
