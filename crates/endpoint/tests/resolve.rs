//! `resolve_publish` against what real encoders send (REFERENCE.md section 1) and the
//! ways it must refuse.

use longhaul_endpoint::{
    resolve_publish, EndpointError, EntrySource, Leg, LegSource, Place, PublishTarget,
    MAX_INPUT_LEN,
};

fn resolve(app: &str, tc_url: Option<&str>, name: &str) -> Result<PublishTarget, EndpointError> {
    resolve_publish(app, tc_url, name, Leg::Primary)
}

fn token(app: &str, tc_url: Option<&str>, name: &str) -> Option<String> {
    resolve(app, tc_url, name).unwrap().token
}

/// Every row of the REFERENCE.md section 1 table, with the tcUrl ffmpeg builds
/// (`proto://host:port/app`).
#[test]
fn reference_table_rows() {
    // rtmp://h:1935/kLive/?t=abc/1_gdrt137u_1
    // rtmp://h:1935/kLive/1_gdrt137u_1?t=abc
    // rtmp://h:1935/kLive?t=abc/1_gdrt137u_1
    // -rtmp_app 'kLive/?t=abc' -rtmp_playpath 1_gdrt137u_1
    let rows = [
        ("kLive/?t=abc", "1_gdrt137u_1"),
        ("kLive", "1_gdrt137u_1?t=abc"),
        ("kLive?t=abc", "1_gdrt137u_1"),
        ("kLive/?t=abc", "1_gdrt137u_1"),
    ];
    for (app, name) in rows {
        for tc_url in [None, Some(format!("rtmp://h:1935/{app}"))] {
            let target = resolve(app, tc_url.as_deref(), name).unwrap();
            assert_eq!(
                target,
                PublishTarget {
                    entry_id: "1_gdrt137u".into(),
                    rendition: 1,
                    leg: Leg::Primary,
                    leg_source: LegSource::NodeDefault,
                    token: Some("abc".into()),
                    stream_name: "1_gdrt137u_1".into(),
                },
                "app {app:?} name {name:?} tcUrl {tc_url:?}"
            );
        }
    }
}

/// OBS (librtmp) puts the server URL as given into tcUrl and the stream key into the name.
#[test]
fn obs_style_token_only_in_tc_url() {
    let target = resolve("kLive/", Some("rtmp://h:1935/kLive/?t=abc"), "1_gdrt137u_3").unwrap();
    assert_eq!(target.token.as_deref(), Some("abc"));
    assert_eq!(target.rendition, 3);
    assert_eq!(target.stream_name, "1_gdrt137u_3");
}

#[test]
fn application_is_matched_case_insensitively_and_trailing_slashes_trimmed() {
    for app in ["kLive", "klive", "KLIVE/", "kLive//?t=abc", "kLive?"] {
        assert!(resolve(app, None, "1_gdrt137u_1").is_ok(), "{app}");
    }
}

#[test]
fn other_applications_are_refused_without_echoing_the_query() {
    for (app, shown) in [
        ("live", "live"),
        ("", ""),
        ("kLive/extra", "kLive/extra"),
        ("kLive2?t=secret", "kLive2"),
    ] {
        let err = resolve(app, None, "1_gdrt137u_1").unwrap_err();
        assert_eq!(
            err,
            EndpointError::UnknownApplication { app: shown.into() },
            "{app}"
        );
        assert!(!err.to_string().contains("secret"));
    }
}

#[test]
fn token_precedence_is_name_then_app_then_tc_url() {
    let tc = Some("rtmp://h:1935/kLive/?t=fromtc");
    assert_eq!(
        token("kLive/?t=fromapp", tc, "1_gdrt137u_1?t=fromname").as_deref(),
        Some("fromname")
    );
    assert_eq!(
        token("kLive/?t=fromapp", tc, "1_gdrt137u_1").as_deref(),
        Some("fromapp")
    );
    assert_eq!(
        token("kLive", tc, "1_gdrt137u_1").as_deref(),
        Some("fromtc")
    );
    assert_eq!(token("kLive", None, "1_gdrt137u_1"), None);
    // An empty value counts as absent and falls through to the next place.
    assert_eq!(
        token("kLive/?t=fromapp", None, "1_gdrt137u_1?t=").as_deref(),
        Some("fromapp")
    );
    assert_eq!(token("kLive/?t=", None, "1_gdrt137u_1"), None);
}

#[test]
fn query_values_are_percent_decoded() {
    assert_eq!(
        token("kLive/?t=a%2Fb%20c", None, "1_gdrt137u_1").as_deref(),
        Some("a/b c")
    );
    assert_eq!(
        token("kLive/?%74=abc", None, "1_gdrt137u_1").as_deref(),
        Some("abc")
    );
    let target = resolve("kLive/?e=1%5Fgdrt137u&i=%31", None, "1_gdrt137u_1").unwrap();
    assert_eq!(target.leg, Leg::Backup);
}

#[test]
fn wowza_style_app_query() {
    let target = resolve(
        "kLive/?p=102&e=1_gdrt137u&i=1&t=abc",
        Some("rtmp://127.0.0.1:1935/kLive/?p=102&e=1_gdrt137u&i=1&t=abc"),
        "1_gdrt137u_2",
    )
    .unwrap();
    assert_eq!(target.entry_id, "1_gdrt137u");
    assert_eq!(target.rendition, 2);
    assert_eq!(target.leg, Leg::Backup);
    assert_eq!(target.leg_source, LegSource::QueryParam);
    assert_eq!(target.token.as_deref(), Some("abc"));
}

#[test]
fn leg_from_i_param_in_app_or_tc_url() {
    let from_app = resolve("kLive/?i=0", None, "1_gdrt137u_1").unwrap();
    assert_eq!(
        (from_app.leg, from_app.leg_source),
        (Leg::Primary, LegSource::QueryParam)
    );
    let from_tc = resolve_publish(
        "kLive",
        Some("rtmp://127.0.0.1:1935/kLive/?t=x&i=1"),
        "1_gdrt137u_1",
        Leg::Primary,
    )
    .unwrap();
    assert_eq!(
        (from_tc.leg, from_tc.leg_source),
        (Leg::Backup, LegSource::QueryParam)
    );
}

#[test]
fn leg_defaults_to_the_node_leg() {
    let target = resolve_publish("kLive", None, "1_gdrt137u_1", Leg::Backup).unwrap();
    assert_eq!(
        (target.leg, target.leg_source),
        (Leg::Backup, LegSource::NodeDefault)
    );
    let plain_host = resolve_publish(
        "kLive",
        Some("rtmp://publish.example.com:1935/kLive"),
        "1_gdrt137u_1",
        Leg::Backup,
    )
    .unwrap();
    assert_eq!(plain_host.leg_source, LegSource::NodeDefault);
}

#[test]
fn entry_and_leg_from_the_tc_url_host() {
    for (host, leg) in [("p", Leg::Primary), ("b", Leg::Backup), ("B", Leg::Backup)] {
        let tc = format!("rtmp://1_gdrt137u.{host}.kpublish.example.com:1935/kLive/?t=abc");
        let target =
            resolve_publish("kLive/?t=abc", Some(&tc), "1_gdrt137u_1", Leg::Primary).unwrap();
        assert_eq!(target.entry_id, "1_gdrt137u");
        assert_eq!((target.leg, target.leg_source), (leg, LegSource::HostLabel));
    }
    let rtmps = resolve(
        "kLive",
        Some("rtmps://1_gdrt137u.b.kpublish.example.com:443/kLive/?t=abc"),
        "1_gdrt137u_1",
    )
    .unwrap();
    assert_eq!(rtmps.leg, Leg::Backup);
}

#[test]
fn host_and_i_param_must_agree() {
    let tc = Some("rtmp://1_gdrt137u.p.kpublish.example.com:1935/kLive");
    let agreeing = resolve("kLive/?i=0", tc, "1_gdrt137u_1").unwrap();
    assert_eq!(agreeing.leg_source, LegSource::HostLabel);
    assert_eq!(
        resolve("kLive/?i=1", tc, "1_gdrt137u_1").unwrap_err(),
        EndpointError::LegMismatch {
            host: Leg::Primary,
            param: Leg::Backup
        }
    );
}

#[test]
fn bad_i_values_are_refused() {
    for value in ["2", "p", "primary", "01"] {
        let err = resolve(&format!("kLive/?i={value}"), None, "1_gdrt137u_1").unwrap_err();
        assert_eq!(
            err,
            EndpointError::BadLegParam {
                value: value.into(),
                place: Place::App
            }
        );
    }
}

#[test]
fn entry_mismatch_with_the_host() {
    let err = resolve(
        "kLive",
        Some("rtmp://1_aaaaaaaa.p.kpublish.example.com:1935/kLive"),
        "1_gdrt137u_1",
    )
    .unwrap_err();
    assert_eq!(
        err,
        EndpointError::EntryMismatch {
            stream_entry: "1_gdrt137u".into(),
            other_entry: "1_aaaaaaaa".into(),
            other: EntrySource::TcUrlHost,
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("1_gdrt137u") && message.contains("1_aaaaaaaa"),
        "{message}"
    );
}

#[test]
fn entry_mismatch_with_the_e_param() {
    assert_eq!(
        resolve("kLive/?e=1_aaaaaaaa", None, "1_gdrt137u_1").unwrap_err(),
        EndpointError::EntryMismatch {
            stream_entry: "1_gdrt137u".into(),
            other_entry: "1_aaaaaaaa".into(),
            other: EntrySource::Param(Place::App),
        }
    );
    assert_eq!(
        resolve("kLive", None, "1_gdrt137u_1?e=1_aaaaaaaa").unwrap_err(),
        EndpointError::EntryMismatch {
            stream_entry: "1_gdrt137u".into(),
            other_entry: "1_aaaaaaaa".into(),
            other: EntrySource::Param(Place::StreamName),
        }
    );
    assert!(resolve("kLive/?e=1_gdrt137u", None, "1_gdrt137u_1").is_ok());
}

#[test]
fn bad_stream_names_say_the_expected_form_without_the_query() {
    for (name, shown) in [
        ("foo", "foo"),
        ("", ""),
        ("1_gdrt137u", "1_gdrt137u"),
        ("1_gdrt137u_0", "1_gdrt137u_0"),
        ("1_gdrt137u_100", "1_gdrt137u_100"),
        ("1_GDRT137U_1", "1_GDRT137U_1"),
        ("mystream?t=secret", "mystream"),
        ("1_gdrt137u_1/", "1_gdrt137u_1/"),
    ] {
        let err = resolve("kLive/?t=abc", None, name).unwrap_err();
        assert_eq!(
            err,
            EndpointError::BadStreamName { name: shown.into() },
            "{name}"
        );
        let message = err.to_string();
        assert!(message.contains("{entryId}_{n}"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }
}

#[test]
fn lenient_entry_suffix_lengths() {
    assert_eq!(
        resolve("kLive", None, "0_abcd_1").unwrap().entry_id,
        "0_abcd"
    );
    assert_eq!(
        resolve("kLive", None, "12345_abcdefghij012345_7")
            .unwrap()
            .rendition,
        7
    );
}

#[test]
fn over_long_inputs_are_refused() {
    let long = "a".repeat(MAX_INPUT_LEN + 1);
    let at_limit = format!("kLive/?x={}", "a".repeat(MAX_INPUT_LEN - 9));
    assert_eq!(at_limit.len(), MAX_INPUT_LEN);
    assert!(resolve(&at_limit, None, "1_gdrt137u_1").is_ok());
    assert_eq!(
        resolve(&format!("kLive/?x={long}"), None, "1_gdrt137u_1").unwrap_err(),
        EndpointError::InputTooLong {
            place: Place::App,
            len: MAX_INPUT_LEN + 10,
            max: MAX_INPUT_LEN
        }
    );
    assert!(matches!(
        resolve("kLive", Some(&long), "1_gdrt137u_1"),
        Err(EndpointError::InputTooLong {
            place: Place::TcUrl,
            ..
        })
    ));
    assert!(matches!(
        resolve("kLive", None, &long),
        Err(EndpointError::InputTooLong {
            place: Place::StreamName,
            ..
        })
    ));
}

/// A deterministic scatter of hostile inputs built from the characters the parser cares
/// about: nothing may panic.
#[test]
fn never_panics_on_odd_input() {
    const PIECES: &[&str] = &[
        "kLive",
        "/",
        "?",
        "&",
        "=",
        "%",
        "%4",
        "%zz",
        "%FF",
        "t",
        "e",
        "i",
        "0",
        "1",
        "_",
        "1_gdrt137u",
        "_1",
        ".",
        ".p.",
        "rtmp://",
        ":",
        "[",
        "]",
        "@",
        "é",
        "\u{0}",
        "\u{FFFD}",
        " ",
        "b",
        "99",
        "100",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let random_text = |next: &mut dyn FnMut() -> u64| {
        let len = next() % 12;
        (0..len)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect::<String>()
    };
    for _ in 0..20_000 {
        let app = random_text(&mut next);
        let tc = random_text(&mut next);
        let name = random_text(&mut next);
        let with_tc = next() % 2 == 0;
        let _ = resolve_publish(&app, with_tc.then_some(tc.as_str()), &name, Leg::Primary);
    }
}
