//! The endpoints we hand out, in both URL forms, their FMLE export, and that every URL we
//! hand out resolves back to the right target.

use longhaul_endpoint::{
    entry_endpoints, fmle_profile_xml, resolve_publish, EndpointHosts, Endpoints, Leg, LegSource,
    RenditionProfile, DEFAULT_LADDER,
};

fn hosts(rtmp_host: &str, use_leg_subdomains: bool) -> EndpointHosts {
    EndpointHosts {
        rtmp_host: rtmp_host.into(),
        rtmp_port: 1935,
        rtmps_port: 443,
        app: "kLive".into(),
        use_leg_subdomains,
    }
}

#[test]
fn leg_subdomain_form_matches_the_product() {
    let endpoints = entry_endpoints(
        "1_gdrt137u",
        "b9106yth4",
        &hosts("kpublish.example.com", true),
        3,
    );
    assert_eq!(
        endpoints,
        Endpoints {
            primary_rtmp: "rtmp://1_gdrt137u.p.kpublish.example.com:1935/kLive/?t=b9106yth4".into(),
            backup_rtmp: "rtmp://1_gdrt137u.b.kpublish.example.com:1935/kLive/?t=b9106yth4".into(),
            primary_rtmps: "rtmps://1_gdrt137u.p.kpublish.example.com:443/kLive/?t=b9106yth4"
                .into(),
            backup_rtmps: "rtmps://1_gdrt137u.b.kpublish.example.com:443/kLive/?t=b9106yth4".into(),
            stream_names: vec![
                "1_gdrt137u_1".into(),
                "1_gdrt137u_2".into(),
                "1_gdrt137u_3".into()
            ],
        }
    );
}

#[test]
fn query_leg_form_for_local_development() {
    let endpoints = entry_endpoints("1_gdrt137u", "tok", &hosts("127.0.0.1", false), 1);
    assert_eq!(
        endpoints.primary_rtmp,
        "rtmp://127.0.0.1:1935/kLive/?t=tok&i=0"
    );
    assert_eq!(
        endpoints.backup_rtmp,
        "rtmp://127.0.0.1:1935/kLive/?t=tok&i=1"
    );
    assert_eq!(
        endpoints.primary_rtmps,
        "rtmps://127.0.0.1:443/kLive/?t=tok&i=0"
    );
    assert_eq!(
        endpoints.backup_rtmps,
        "rtmps://127.0.0.1:443/kLive/?t=tok&i=1"
    );
    assert_eq!(endpoints.stream_names, ["1_gdrt137u_1"]);
    let v6 = entry_endpoints("1_gdrt137u", "tok", &hosts("::1", false), 1);
    assert_eq!(v6.primary_rtmp, "rtmp://[::1]:1935/kLive/?t=tok&i=0");
}

#[test]
fn renditions_are_clamped_and_tokens_escaped() {
    let h = hosts("127.0.0.1", false);
    assert_eq!(
        entry_endpoints("1_gdrt137u", "t", &h, 0).stream_names.len(),
        1
    );
    let many = entry_endpoints("1_gdrt137u", "t", &h, 1000).stream_names;
    assert_eq!(many.len(), 99);
    assert_eq!(many.last().map(String::as_str), Some("1_gdrt137u_99"));
    let odd = entry_endpoints("1_gdrt137u", "a&b=c", &h, 1);
    assert_eq!(
        odd.primary_rtmp,
        "rtmp://127.0.0.1:1935/kLive/?t=a%26b%3Dc&i=0"
    );
}

/// The `app` and tcUrl ffmpeg sends for `ffmpeg -f flv '<url>/<stream name>'`: the app
/// is the URL's path (with its query) and tcUrl is `proto://host:port/app`.
fn as_ffmpeg_sends(url: &str) -> (String, String) {
    let (scheme_host, app) = url
        .split_once(":1935/")
        .or(url.split_once(":443/"))
        .unwrap();
    let port = if url.contains(":1935/") { 1935 } else { 443 };
    (app.to_owned(), format!("{scheme_host}:{port}/{app}"))
}

#[test]
fn handed_out_urls_resolve_back() {
    for use_leg_subdomains in [true, false] {
        let endpoints = entry_endpoints(
            "1_gdrt137u",
            "tok",
            &hosts("kpublish.example.com", use_leg_subdomains),
            2,
        );
        let expected_source = if use_leg_subdomains {
            LegSource::HostLabel
        } else {
            LegSource::QueryParam
        };
        for (url, leg) in [
            (&endpoints.primary_rtmp, Leg::Primary),
            (&endpoints.backup_rtmp, Leg::Backup),
            (&endpoints.primary_rtmps, Leg::Primary),
            (&endpoints.backup_rtmps, Leg::Backup),
        ] {
            for name in &endpoints.stream_names {
                let (app, tc_url) = as_ffmpeg_sends(url);
                // The node default is the opposite leg, to show the URL decided.
                let other = if leg == Leg::Primary {
                    Leg::Backup
                } else {
                    Leg::Primary
                };
                let target = resolve_publish(&app, Some(&tc_url), name, other).unwrap();
                assert_eq!(target.entry_id, "1_gdrt137u");
                assert_eq!(&target.stream_name, name);
                assert_eq!(
                    (target.leg, target.leg_source),
                    (leg, expected_source),
                    "{url}"
                );
                assert_eq!(target.token.as_deref(), Some("tok"));
            }
        }
    }
}

#[test]
fn endpoints_serialize_with_field_names() {
    let endpoints = entry_endpoints("1_gdrt137u", "tok", &hosts("127.0.0.1", false), 1);
    let json = serde_json::to_value(&endpoints).unwrap();
    assert_eq!(
        json["primary_rtmp"],
        "rtmp://127.0.0.1:1935/kLive/?t=tok&i=0"
    );
    assert_eq!(json["stream_names"][0], "1_gdrt137u_1");
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
    let endpoints = entry_endpoints("1_gdrt137u", "tok", &hosts("127.0.0.1", false), 3);
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
        "rtmp://127.0.0.1:1935/kLive/?t=tok&amp;i=1"
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
        primary_rtmp: "rtmp://h/<x>&\"'".into(),
        backup_rtmp: "rtmp://b".into(),
        primary_rtmps: String::new(),
        backup_rtmps: String::new(),
        stream_names: vec![],
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
    let endpoints = entry_endpoints("1_gdrt137u", "tok", &hosts("h.example.com", true), 3);
    let xml = fmle_profile_xml("1_gdrt137u", &endpoints, &[]);
    assert_eq!(element(&xml, "outputsize"), "1280x720;854x480;640x360");
}
