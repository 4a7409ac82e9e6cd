//! Fuzzes the round trip of the URLs we hand out: an entry id, token, hosts and ports
//! drawn from the input, in both URL forms, at the data centres and a region. Every URL
//! built from hosts that pass `check_host` must resolve back, as ffmpeg would send it
//! (`app` = the URL's path, tcUrl = `scheme://host:port/app`), to its entry, leg and
//! token (unless it is longer than resolve_publish takes), and every RTSP URL (offered
//! when the form byte says so) with resolve_rtsp_publish to its rendition too. Any panic
//! or mismatch is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use longhaul_endpoint::{
    check_host, entry_endpoints, resolve_publish, resolve_rtsp_publish, EndpointHosts,
    IngestAddress, LegHosts, LegSource, RegionHosts, APPLICATION, MAX_INPUT_LEN,
};

const ID_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fuzz_target!(|data: &[u8]| {
    let [form, port_a, port_b, id_prefix, rest @ ..] = data else {
        return;
    };
    let subdomains = form & 1 == 1;
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(4, '\0');
    let id_part = parts.next().unwrap_or_default();
    let token = parts.next().unwrap_or_default();
    let hosts = [
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    ];
    if token.is_empty() || hosts.iter().any(|h| check_host(h, subdomains).is_err()) {
        return;
    }
    // An entry id of the registry's shape, whatever the bytes.
    let mut suffix: String = id_part
        .bytes()
        .take(16)
        .map(|b| char::from(ID_CHARS[usize::from(b) % ID_CHARS.len()]))
        .collect();
    while suffix.len() < 4 {
        suffix.push('a');
    }
    let entry_id = format!("{id_prefix}_{suffix}");
    // RTSP (and RTSPS) offered when the form's second bit says so.
    let rtsp = form & 2 == 2;
    let address = |host: &str, port: u8| {
        let a = IngestAddress::rtmp(host, u16::from(port) + 1, u16::from(port) + 300);
        if rtsp {
            a.with_rtsp(u16::from(port) + 600, Some(u16::from(port) + 900))
        } else {
            a
        }
    };
    let legs = |a: IngestAddress, b: IngestAddress| {
        if subdomains {
            LegHosts::Subdomains(a)
        } else {
            LegHosts::PerLeg { primary: a, backup: b }
        }
    };
    let plan = EndpointHosts {
        app: APPLICATION.into(),
        origins: legs(address(hosts[0], *port_a), address(hosts[1], *port_b)),
        speed_tests: vec![],
        regions: vec![RegionHosts {
            region: "fra".into(),
            name: "EMEA".into(),
            legs: legs(address(hosts[1], *port_b), address(hosts[1], *port_b)),
            speed_test: None,
        }],
    };
    if plan.origins.check().is_err() || plan.regions[0].legs.check().is_err() {
        return; // a host too long for `{entryId}.p.s.`, say: refused at configuration
    }
    let endpoints = entry_endpoints(&entry_id, token, &plan, 1);
    let expected_source = if subdomains {
        LegSource::HostLabel
    } else {
        LegSource::QueryParam
    };
    let places = std::iter::once(&endpoints.origins).chain(endpoints.regions.iter().map(|r| &r.urls));
    for urls in places {
        for (leg, _, url) in urls.all() {
            let (scheme, rest) = url.split_once("://").expect("a scheme");
            let (authority, app) = rest.split_once('/').expect("a path");
            let tc_url = format!("{scheme}://{authority}/{app}");
            if tc_url.len() > MAX_INPUT_LEN {
                continue; // refused for its length, by design (a registry token is short)
            }
            let target = resolve_publish(app, Some(&tc_url), &endpoints.stream_names[0], leg.other())
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(target.entry_id, entry_id, "{url}");
            assert_eq!((target.leg, target.leg_source), (leg, expected_source), "{url}");
            assert_eq!(target.token.as_deref(), Some(token), "{url}");
        }
    }
    let rtsp_places = std::iter::once(&endpoints.rtsp).chain(endpoints.regions.iter().map(|r| &r.rtsp));
    for renditions in rtsp_places {
        assert_eq!(renditions.len(), usize::from(rtsp));
        for rendition in renditions {
            for (leg, _, url) in rendition.all() {
                if url.len() > MAX_INPUT_LEN {
                    continue;
                }
                let target = resolve_rtsp_publish(url, leg.other()).unwrap_or_else(|e| panic!("{url}: {e}"));
                assert_eq!(target.stream_name, rendition.stream_name, "{url}");
                assert_eq!((target.leg, target.leg_source), (leg, expected_source), "{url}");
                assert_eq!(target.token.as_deref(), Some(token), "{url}");
            }
        }
    }
});
