//! The endpoints we hand out, in both URL forms (leg subdomains; a host and port per
//! leg), at the data centres and the regional edges, over RTMP and (where offered) RTSP,
//! their JSON and FMLE forms, and that every URL we hand out resolves back to the right
//! entry, rendition, leg and token.

use longhaul_endpoint::{
    entry_endpoints, fmle_profile_xml, resolve_publish, resolve_rtsp_publish, EndpointHosts,
    Endpoints, IngestAddress, Leg, LegHosts, LegSource, LegUrls, RegionHosts, RenditionProfile,
    RtspRendition, SpeedTest, DEFAULT_LADDER,
};

fn address(host: &str, rtmp_port: u16, rtmps_port: u16) -> IngestAddress {
    IngestAddress::rtmp(host, rtmp_port, rtmps_port)
}

/// The product's layout: data centres behind `kpublish.example.com` (RTSP on 554, RTSPS
/// on 322), regions fra, gru and sin under it (RTMP only: edges take no RTSP yet), speed
/// tests for the data centres and two of the regions.
fn production() -> EndpointHosts {
    let region = |code: &str, name: &str, speed_test: Option<&str>| RegionHosts {
        region: code.into(),
        name: name.into(),
        legs: LegHosts::Subdomains(address(&format!("{code}.kpublish.example.com"), 1935, 443)),
        speed_test: speed_test.map(Into::into),
    };
    EndpointHosts {
        app: "kLive".into(),
        origins: LegHosts::Subdomains(
            address("kpublish.example.com", 1935, 443).with_rtsp(554, Some(322)),
        ),
        speed_tests: vec![
            SpeedTest {
                region: "nyc".into(),
                name: "US (New York)".into(),
                url: "http://ny-publish-speedtest.example.com".into(),
            },
            SpeedTest {
                region: "pao".into(),
                name: "US (Palo Alto)".into(),
                url: "http://pa-publish-speedtest.example.com".into(),
            },
        ],
        regions: vec![
            region(
                "fra",
                "EMEA (Frankfurt)",
                Some("http://fr-publish-speedtest.example.com"),
            ),
            region(
                "gru",
                "LATAM (Sao Paulo)",
                Some("http://br-publish-speedtest.example.com"),
            ),
            region("sin", "APAC (Singapore)", None),
        ],
    }
}

/// The dev cluster's layout (config/dev.toml): leg p to origin nyc, leg b to origin pao
/// (RTSP on 1554 and 2554, no RTSPS), each edge taking both legs on its own ports.
fn dev() -> EndpointHosts {
    let edge = |code: &str, name: &str, rtmp: u16| RegionHosts {
        region: code.into(),
        name: name.into(),
        legs: LegHosts::shared(address("127.0.0.1", rtmp, rtmp + 1)),
        speed_test: None,
    };
    EndpointHosts {
        app: "kLive".into(),
        origins: LegHosts::PerLeg {
            primary: address("127.0.0.1", 1935, 1936).with_rtsp(1554, None),
            backup: address("127.0.0.1", 2935, 2936).with_rtsp(2554, None),
        },
        speed_tests: vec![],
        regions: vec![
            edge("fra", "EMEA (Frankfurt)", 3935),
            edge("gru", "LATAM (Sao Paulo)", 4935),
            edge("sin", "APAC (Singapore)", 5935),
        ],
    }
}

fn single(host: &str) -> EndpointHosts {
    EndpointHosts::single("kLive", LegHosts::shared(address(host, 1935, 443)))
}

#[test]
fn leg_subdomain_form_matches_the_product() {
    let endpoints = entry_endpoints("1_gdrt137u", "b9106yth4", &production(), 3);
    assert_eq!(
        endpoints.origins,
        LegUrls {
            primary_rtmp: "rtmp://1_gdrt137u.p.kpublish.example.com:1935/kLive/?t=b9106yth4".into(),
            backup_rtmp: "rtmp://1_gdrt137u.b.kpublish.example.com:1935/kLive/?t=b9106yth4".into(),
            primary_rtmps: "rtmps://1_gdrt137u.p.kpublish.example.com:443/kLive/?t=b9106yth4"
                .into(),
            backup_rtmps: "rtmps://1_gdrt137u.b.kpublish.example.com:443/kLive/?t=b9106yth4".into(),
        }
    );
    assert_eq!(
        endpoints.stream_names,
        ["1_gdrt137u_1", "1_gdrt137u_2", "1_gdrt137u_3"]
    );
    let regions: Vec<(&str, &str)> = endpoints
        .regions
        .iter()
        .map(|r| (r.region.as_str(), r.name.as_str()))
        .collect();
    assert_eq!(
        regions,
        [
            ("fra", "EMEA (Frankfurt)"),
            ("gru", "LATAM (Sao Paulo)"),
            ("sin", "APAC (Singapore)")
        ]
    );
    let fra = &endpoints.regions[0];
    assert_eq!(
        fra.urls,
        LegUrls {
            primary_rtmp: "rtmp://1_gdrt137u.p.fra.kpublish.example.com:1935/kLive/?t=b9106yth4"
                .into(),
            backup_rtmp: "rtmp://1_gdrt137u.b.fra.kpublish.example.com:1935/kLive/?t=b9106yth4"
                .into(),
            primary_rtmps: "rtmps://1_gdrt137u.p.fra.kpublish.example.com:443/kLive/?t=b9106yth4"
                .into(),
            backup_rtmps: "rtmps://1_gdrt137u.b.fra.kpublish.example.com:443/kLive/?t=b9106yth4"
                .into(),
        }
    );
    assert_eq!(
        fra.speed_test.as_deref(),
        Some("http://fr-publish-speedtest.example.com")
    );
    assert_eq!(
        endpoints.regions[2].urls.backup_rtmp,
        "rtmp://1_gdrt137u.b.sin.kpublish.example.com:1935/kLive/?t=b9106yth4"
    );
    assert_eq!(endpoints.regions[2].speed_test, None);
    assert_eq!(endpoints.speed_tests, production().speed_tests);
}

#[test]
fn per_leg_form_puts_each_leg_on_its_own_origin() {
    let endpoints = entry_endpoints("1_gdrt137u", "tok", &dev(), 1);
    assert_eq!(
        endpoints.origins,
        LegUrls {
            primary_rtmp: "rtmp://127.0.0.1:1935/kLive/?t=tok&i=0".into(),
            backup_rtmp: "rtmp://127.0.0.1:2935/kLive/?t=tok&i=1".into(),
            primary_rtmps: "rtmps://127.0.0.1:1936/kLive/?t=tok&i=0".into(),
            backup_rtmps: "rtmps://127.0.0.1:2936/kLive/?t=tok&i=1".into(),
        }
    );
    // An edge takes both legs; i says which origin it forwards each to.
    let sin = &endpoints.regions[2];
    assert_eq!(sin.region, "sin");
    assert_eq!(
        sin.urls,
        LegUrls {
            primary_rtmp: "rtmp://127.0.0.1:5935/kLive/?t=tok&i=0".into(),
            backup_rtmp: "rtmp://127.0.0.1:5935/kLive/?t=tok&i=1".into(),
            primary_rtmps: "rtmps://127.0.0.1:5936/kLive/?t=tok&i=0".into(),
            backup_rtmps: "rtmps://127.0.0.1:5936/kLive/?t=tok&i=1".into(),
        }
    );
    assert!(endpoints.speed_tests.is_empty());
}

#[test]
fn one_shared_host_keeps_the_old_form() {
    let endpoints = entry_endpoints("1_gdrt137u", "tok", &single("127.0.0.1"), 1);
    assert_eq!(
        endpoints.origins.primary_rtmp,
        "rtmp://127.0.0.1:1935/kLive/?t=tok&i=0"
    );
    assert_eq!(
        endpoints.origins.backup_rtmps,
        "rtmps://127.0.0.1:443/kLive/?t=tok&i=1"
    );
    assert_eq!(endpoints.stream_names, ["1_gdrt137u_1"]);
    assert!(endpoints.regions.is_empty());
    let v6 = entry_endpoints("1_gdrt137u", "tok", &single("::1"), 1);
    assert_eq!(
        v6.origins.primary_rtmp,
        "rtmp://[::1]:1935/kLive/?t=tok&i=0"
    );
}

#[test]
fn rtsp_urls_name_each_rendition_in_both_forms() {
    let endpoints = entry_endpoints("1_gdrt137u", "b9106yth4", &production(), 2);
    assert_eq!(
        endpoints.rtsp,
        [1, 2].map(|n| RtspRendition {
            stream_name: format!("1_gdrt137u_{n}"),
            primary_rtsp: format!(
                "rtsp://1_gdrt137u.p.s.kpublish.example.com:554/kLive/1_gdrt137u_{n}?t=b9106yth4"
            ),
            backup_rtsp: format!(
                "rtsp://1_gdrt137u.b.s.kpublish.example.com:554/kLive/1_gdrt137u_{n}?t=b9106yth4"
            ),
            primary_rtsps: Some(format!(
                "rtsps://1_gdrt137u.p.s.kpublish.example.com:322/kLive/1_gdrt137u_{n}?t=b9106yth4"
            )),
            backup_rtsps: Some(format!(
                "rtsps://1_gdrt137u.b.s.kpublish.example.com:322/kLive/1_gdrt137u_{n}?t=b9106yth4"
            )),
        })
    );
    // The regions (edges) offer no RTSP: none listed.
    assert!(endpoints.regions.iter().all(|r| r.rtsp.is_empty()));

    // A host per leg: the leg in i=0|1, primary at the first origin; no RTSPS port, no
    // RTSPS URL.
    let endpoints = entry_endpoints("1_abcd1234", "tok", &dev(), 3);
    assert_eq!(endpoints.rtsp.len(), 3);
    let first = &endpoints.rtsp[0];
    assert_eq!(first.stream_name, "1_abcd1234_1");
    assert_eq!(
        first.primary_rtsp,
        "rtsp://127.0.0.1:1554/kLive/1_abcd1234_1?t=tok&i=0"
    );
    assert_eq!(
        first.backup_rtsp,
        "rtsp://127.0.0.1:2554/kLive/1_abcd1234_1?t=tok&i=1"
    );
    assert_eq!((&first.primary_rtsps, &first.backup_rtsps), (&None, &None));
    assert_eq!(
        endpoints.rtsp[2].backup_rtsp,
        "rtsp://127.0.0.1:2554/kLive/1_abcd1234_3?t=tok&i=1"
    );

    // No RTSP port, no RTSP.
    assert!(entry_endpoints("1_gdrt137u", "tok", &single("::1"), 3)
        .rtsp
        .is_empty());
    let v6 = EndpointHosts::single(
        "kLive",
        LegHosts::shared(address("::1", 1935, 443).with_rtsp(554, Some(322))),
    );
    assert_eq!(
        entry_endpoints("1_gdrt137u", "a&b", &v6, 1).rtsp[0].primary_rtsps,
        Some("rtsps://[::1]:322/kLive/1_gdrt137u_1?t=a%26b&i=0".into())
    );
}

#[test]
fn renditions_are_clamped_and_tokens_escaped() {
    let h = dev();
    assert_eq!(
        entry_endpoints("1_gdrt137u", "t", &h, 0).stream_names.len(),
        1
    );
    let many = entry_endpoints("1_gdrt137u", "t", &h, 1000).stream_names;
    assert_eq!(many.len(), 99);
    assert_eq!(many.last().map(String::as_str), Some("1_gdrt137u_99"));
    let odd = entry_endpoints("1_gdrt137u", "a&b=c", &h, 1);
    assert_eq!(
        odd.origins.primary_rtmp,
        "rtmp://127.0.0.1:1935/kLive/?t=a%26b%3Dc&i=0"
    );
    assert_eq!(
        odd.regions[0].urls.backup_rtmp,
        "rtmp://127.0.0.1:3935/kLive/?t=a%26b%3Dc&i=1"
    );
}

/// The `app` and tcUrl ffmpeg sends for `ffmpeg -f flv '<url>/<stream name>'`: the app
/// is the URL's path (with its query) and tcUrl is `proto://host:port/app`.
fn as_ffmpeg_sends(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, app) = rest.split_once('/').unwrap();
    assert!(
        authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok()),
        "every URL names its port: {url}"
    );
    (app.to_owned(), format!("{scheme}://{authority}/{app}"))
}

/// Every URL of `endpoints`, with the place it is for and its leg.
fn every_url(endpoints: &Endpoints) -> Vec<(String, Leg, String)> {
    let mut places = vec![("origins".to_owned(), &endpoints.origins)];
    places.extend(
        endpoints
            .regions
            .iter()
            .map(|r| (r.region.clone(), &r.urls)),
    );
    places
        .into_iter()
        .flat_map(|(place, urls)| {
            urls.all()
                .map(|(leg, _, url)| (place.clone(), leg, url.to_owned()))
        })
        .collect()
}

/// Every RTSP URL of `endpoints`, with the place it is for, its stream name and its leg.
fn every_rtsp_url(endpoints: &Endpoints) -> Vec<(String, String, Leg, String)> {
    let mut places = vec![("origins".to_owned(), &endpoints.rtsp)];
    places.extend(
        endpoints
            .regions
            .iter()
            .map(|r| (r.region.clone(), &r.rtsp)),
    );
    let mut urls = Vec::new();
    for (place, renditions) in places {
        for rendition in renditions {
            for (leg, _, url) in rendition.all() {
                urls.push((
                    place.clone(),
                    rendition.stream_name.clone(),
                    leg,
                    url.to_owned(),
                ));
            }
        }
    }
    urls
}

#[test]
fn handed_out_urls_resolve_back() {
    // (hosts, where the leg comes from, RTSP URLs per rendition)
    for (hosts, expected_source, rtsp_per_rendition) in [
        (production(), LegSource::HostLabel, 4),
        (dev(), LegSource::QueryParam, 2),
        (single("::1"), LegSource::QueryParam, 0),
    ] {
        for token in ["tok", "a&b=c/d?e f%"] {
            let endpoints = entry_endpoints("1_gdrt137u", token, &hosts, 2);
            let urls = every_url(&endpoints);
            assert_eq!(urls.len(), 4 * (1 + hosts.regions.len()));
            for (place, leg, url) in urls {
                for name in &endpoints.stream_names {
                    let (app, tc_url) = as_ffmpeg_sends(&url);
                    // The node default is the opposite leg, to show the URL decided.
                    let target = resolve_publish(&app, Some(&tc_url), name, leg.other())
                        .unwrap_or_else(|e| panic!("{place} {url}: {e}"));
                    assert_eq!(target.entry_id, "1_gdrt137u");
                    assert_eq!(&target.stream_name, name);
                    assert_eq!(
                        (target.leg, target.leg_source),
                        (leg, expected_source),
                        "{url}"
                    );
                    assert_eq!(target.token.as_deref(), Some(token), "{url}");
                }
            }

            // RTSP: every URL names its stream; it resolves to that rendition.
            let rtsp = every_rtsp_url(&endpoints);
            assert_eq!(rtsp.len(), rtsp_per_rendition * 2, "{rtsp:?}");
            for (place, name, leg, url) in rtsp {
                let target = resolve_rtsp_publish(&url, leg.other())
                    .unwrap_or_else(|e| panic!("{place} {url}: {e}"));
                assert_eq!(target.entry_id, "1_gdrt137u", "{url}");
                assert_eq!(target.stream_name, name, "{url}");
                assert_eq!(
                    (target.leg, target.leg_source),
                    (leg, expected_source),
                    "{url}"
                );
                assert_eq!(target.token.as_deref(), Some(token), "{url}");
            }
        }
    }
}

#[test]
fn endpoints_serialize_flat_with_regions_and_speed_tests() {
    let endpoints = entry_endpoints("1_gdrt137u", "tok", &production(), 1);
    let json = serde_json::to_value(&endpoints).unwrap();
    assert_eq!(
        json["primary_rtmp"],
        "rtmp://1_gdrt137u.p.kpublish.example.com:1935/kLive/?t=tok"
    );
    assert_eq!(json["stream_names"][0], "1_gdrt137u_1");
    let fra = &json["regions"][0];
    assert_eq!(fra["region"], "fra");
    assert_eq!(fra["name"], "EMEA (Frankfurt)");
    assert_eq!(
        fra["backup_rtmps"],
        "rtmps://1_gdrt137u.b.fra.kpublish.example.com:443/kLive/?t=tok"
    );
    assert_eq!(fra["speed_test"], "http://fr-publish-speedtest.example.com");
    assert!(
        json["regions"][2].get("speed_test").is_none(),
        "none configured, none shown: {}",
        json["regions"][2]
    );
    assert_eq!(json["speed_tests"][1]["name"], "US (Palo Alto)");
    assert_eq!(json["rtsp"][0]["stream_name"], "1_gdrt137u_1");
    assert_eq!(
        json["rtsp"][0]["backup_rtsps"],
        "rtsps://1_gdrt137u.b.s.kpublish.example.com:322/kLive/1_gdrt137u_1?t=tok"
    );
    assert!(
        fra.get("rtsp").is_none(),
        "a region without RTSP lists none: {fra}"
    );
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "backup_rtmp",
            "backup_rtmps",
            "primary_rtmp",
            "primary_rtmps",
            "regions",
            "rtsp",
            "speed_tests",
            "stream_names"
        ]
    );
    let back: Endpoints = serde_json::from_value(json).unwrap();
    assert_eq!(back, endpoints);
    // Without RTSP the JSON is as it was: no `rtsp` key, nor RTSPS keys without RTSPS.
    let plain =
        serde_json::to_value(entry_endpoints("1_gdrt137u", "tok", &single("h"), 1)).unwrap();
    assert!(plain.get("rtsp").is_none(), "{plain}");
    let dev = serde_json::to_value(entry_endpoints("1_gdrt137u", "tok", &dev(), 1)).unwrap();
    let mut keys: Vec<&str> = dev["rtsp"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["backup_rtsp", "primary_rtsp", "stream_name"]);
    // What older clients stored (no regions, no speed tests) still reads.
    let old = serde_json::json!({
        "primary_rtmp": "rtmp://a", "backup_rtmp": "rtmp://b",
        "primary_rtmps": "rtmps://a", "backup_rtmps": "rtmps://b",
        "stream_names": ["1_gdrt137u_1"],
    });
    let old: Endpoints = serde_json::from_value(old).unwrap();
    assert!(old.regions.is_empty() && old.speed_tests.is_empty() && old.rtsp.is_empty());
    assert_eq!(serde_json::to_value(Leg::Backup).unwrap(), "backup");
}

/// The text between `<tag>` and `</tag>`, asserting it occurs exactly once.
fn element<'a>(xml: &'a str, tag: &str) -> &'a str {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    assert_eq!(xml.matches(&open).count(), 1, "<{tag}> once in\n{xml}");
    let start = xml.find(&open).unwrap() + open.len();
    let end = start + xml[start..].find(&close).unwrap();
    &xml[start..end]
}

#[test]
fn fmle_profile_has_the_paths_encoders_import() {
    let endpoints = entry_endpoints("1_gdrt137u", "tok", &dev(), 3);
    let xml = fmle_profile_xml("1_gdrt137u", &endpoints, &DEFAULT_LADDER);
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"));
    let root = element(&xml, "flashmedialiveencoder_profile");
    let rtmp = element(element(root, "output"), "rtmp");
    // `&` in the URLs must be escaped.
    assert_eq!(
        element(rtmp, "url"),
        "rtmp://127.0.0.1:1935/kLive/?t=tok&amp;i=0"
    );
    assert_eq!(
        element(rtmp, "backup_url"),
        "rtmp://127.0.0.1:2935/kLive/?t=tok&amp;i=1"
    );
    assert_eq!(element(rtmp, "stream"), "1_gdrt137u_%i");
    let encode = element(root, "encode");
    let video = element(encode, "video");
    assert_eq!(element(video, "format"), "H.264");
    assert_eq!(element(video, "datarate"), "2500;1200;700");
    assert_eq!(element(video, "outputsize"), "1280x720;854x480;640x360");
    let advanced = element(video, "advanced");
    for tag in ["profile", "level", "keyframe_frequency"] {
        assert!(!element(advanced, tag).is_empty(), "{tag}");
    }
    assert_eq!(element(element(encode, "audio"), "datarate"), "128");
    let capture = element(root, "capture");
    assert_eq!(element(element(capture, "video"), "width"), "1280");
    let preset = element(root, "preset");
    assert_eq!(element(preset, "name"), "longhaul 1_gdrt137u");
    element(preset, "description");
    assert!(!xml.contains("&i="), "unescaped ampersand");
}

#[test]
fn fmle_profile_escapes_and_balances_every_element() {
    let endpoints = Endpoints {
        origins: LegUrls {
            primary_rtmp: "rtmp://h/<x>&\"'".into(),
            backup_rtmp: "rtmp://b".into(),
            primary_rtmps: String::new(),
            backup_rtmps: String::new(),
        },
        stream_names: vec![],
        rtsp: vec![],
        regions: vec![],
        speed_tests: vec![],
    };
    let ladder = [RenditionProfile {
        width: 320,
        height: 240,
        video_kbps: 300,
        audio_kbps: 64,
    }];
    let xml = fmle_profile_xml("1_gdrt137u", &endpoints, &ladder);
    assert_eq!(element(&xml, "url"), "rtmp://h/&lt;x&gt;&amp;&quot;&apos;");
    let encode = element(&xml, "encode");
    assert_eq!(element(element(encode, "video"), "datarate"), "300");
    assert_eq!(element(element(encode, "audio"), "datarate"), "64");
    // Every opening tag is closed, in order (a small stack check; no XML crate needed).
    let body = xml.split_once("?>").unwrap().1;
    let mut stack = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find('<') {
        let end = start + rest[start..].find('>').unwrap();
        let tag = &rest[start + 1..end];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name.to_owned()), "in\n{xml}");
        } else {
            stack.push(tag.to_owned());
        }
        rest = &rest[end + 1..];
    }
    assert!(stack.is_empty(), "unclosed {stack:?}");
}

#[test]
fn fmle_profile_with_an_empty_ladder_uses_the_default() {
    let endpoints = entry_endpoints("1_gdrt137u", "tok", &production(), 3);
    let xml = fmle_profile_xml("1_gdrt137u", &endpoints, &[]);
    assert_eq!(element(&xml, "outputsize"), "1280x720;854x480;640x360");
}
