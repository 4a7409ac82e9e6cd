//! A rendition's on-air stream through the hub's public API: both legs published, a
//! player of the rendition, and the legs failing, ending and coming back. The silence
//! and failback times are short (the rules are `on_air`'s own tests); the sleeps only
//! make a leg silent.

use std::time::Duration;

use longhaul_hub::*;
use longhaul_rtmp::RtmpMessage;

#[allow(dead_code)]
#[path = "../src/testutil.rs"]
mod testutil;
use testutil::*;

const NAME: &str = "1_gdrt137u_1";
const SILENCE: Duration = Duration::from_millis(60);

fn hub(failback_after: Duration) -> Hub {
    Hub::with_on_air(OnAirSettings {
        silence: SILENCE,
        failback_after,
    })
}

fn publish(hub: &Hub, leg: Leg) -> Publication {
    let (publication, _) = hub.publish(
        StreamKey::new(NAME, leg),
        PublisherInfo {
            addr: format!("192.0.2.{}:50000", leg.label()),
            ..Default::default()
        },
    );
    publication
}

/// What the player has been sent so far (messages only).
fn received(player: &mut Subscription) -> Vec<RtmpMessage> {
    std::iter::from_fn(|| player.try_recv())
        .filter_map(|e| match e {
            PlayerEvent::Message(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// Video timestamps of `messages`, with `+` for keyframes' ("+40", "80").
fn video(messages: &[RtmpMessage]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.type_id == 9 && m.payload.get(1) == Some(&1))
        .map(|m| {
            let key = if m.payload[0] >> 4 == 1 { "+" } else { "" };
            format!("{key}{}", m.timestamp)
        })
        .collect()
}

/// The same frame, as one encoder sends it on both legs (ffmpeg's tee).
fn frame(ts: u32) -> RtmpMessage {
    if ts.is_multiple_of(400) {
        keyframe(ts, 50)
    } else {
        inter(ts, 20 + (ts / 40 % 7) as usize)
    }
}

fn headers(publication: &Publication) {
    publication.push(avc_header(0)).unwrap();
    publication.push(aac_header(0)).unwrap();
}

fn rendition(hub: &Hub) -> RenditionSummary {
    hub.renditions()
        .into_iter()
        .find(|r| r.name == NAME)
        .expect("the rendition")
}

#[test]
fn one_encoder_on_both_legs_the_backup_takes_over_in_sync_with_no_keyframe_wait() {
    let hub = hub(Duration::from_secs(60));
    let primary = publish(&hub, Leg::Primary);
    let backup = publish(&hub, Leg::Backup);
    headers(&primary);
    headers(&backup);
    let mut player = hub.subscribe(NAME, LegChoice::OnAir).expect("live");
    assert_eq!(player.leg(), None);
    for ts in (0..=200).step_by(40) {
        primary.push(frame(ts)).unwrap();
        backup.push(frame(ts)).unwrap();
    }
    // The primary stops after 200 ms; the backup goes on.
    std::thread::sleep(SILENCE + Duration::from_millis(20));
    for ts in (240..=360).step_by(40) {
        backup.push(frame(ts)).unwrap();
    }
    let got = received(&mut player);
    assert_eq!(
        video(&got),
        ["+0", "40", "80", "120", "160", "200", "240", "280", "320", "360"],
        "every frame once, in order, from 240 on off the backup mid-GOP"
    );
    let r = rendition(&hub);
    assert_eq!(r.on_air, Some(Leg::Backup));
    let (switch, _) = r.last_switch.expect("a switch");
    assert_eq!(
        (switch.from, switch.to, switch.reason),
        (Some(Leg::Primary), Leg::Backup, SwitchReason::Silent)
    );
    assert!(!r.backup_only(), "the primary is still live");
    // The hub's log of switches has it (and not the first leg going on air), and keeps
    // it after the rendition ends.
    drop((primary, backup, player));
    assert!(hub.renditions().is_empty());
    let recent = hub.recent_switches();
    assert_eq!(recent.len(), 1, "{recent:?}");
    assert_eq!(recent[0].name, NAME);
    assert_eq!(
        (recent[0].switch.from, recent[0].switch.to),
        (Some(Leg::Primary), Leg::Backup)
    );
}

#[test]
fn another_encoder_on_the_backup_goes_on_air_at_its_keyframe_with_its_headers() {
    let hub = hub(Duration::from_secs(60));
    let primary = publish(&hub, Leg::Primary);
    let backup = publish(&hub, Leg::Backup);
    headers(&primary);
    // Another encoder: its own AVC header, its own clock, started 100 ms later.
    let mut other_header = avc_header(0);
    other_header.payload = bytes::Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x4d]);
    backup.push(other_header.clone()).unwrap();
    let mut player = hub.subscribe(NAME, LegChoice::OnAir).expect("live");
    for ts in (0..=200).step_by(40) {
        primary.push(frame(ts)).unwrap();
        backup.push(inter(ts + 100, 30)).unwrap();
    }
    std::thread::sleep(SILENCE + Duration::from_millis(20));
    backup.push(inter(340, 30)).unwrap(); // not a keyframe: waited past
    backup.push(keyframe(380, 60)).unwrap();
    backup.push(inter(420, 30)).unwrap();
    let got = received(&mut player);
    assert_eq!(
        video(&got),
        ["+0", "40", "80", "120", "160", "200", "+380", "420"]
    );
    let header_at = got
        .iter()
        .position(|m| m.payload == other_header.payload)
        .expect("the backup's own header re-sent");
    assert_eq!(got[header_at].timestamp, 380, "stamped with the keyframe");
    assert_eq!(video(&got[header_at + 1..])[0], "+380");
}

#[test]
fn a_backup_that_lags_or_runs_on_another_clock_keeps_timestamps_going_forward() {
    let hub = hub(Duration::from_secs(60));
    let primary = publish(&hub, Leg::Primary);
    let backup = publish(&hub, Leg::Backup);
    headers(&primary);
    headers(&backup);
    let mut player = hub.subscribe(NAME, LegChoice::OnAir).expect("live");
    for ts in (10_000..=10_200).step_by(40) {
        primary.push(frame(ts)).unwrap();
    }
    std::thread::sleep(SILENCE + Duration::from_millis(20));
    backup.push(keyframe(400, 60)).unwrap(); // an encoder started later
    backup.push(inter(440, 30)).unwrap();
    let got = received(&mut player);
    let times: Vec<u32> = got.iter().map(|m| m.timestamp).collect();
    assert!(
        times.windows(2).all(|w| w[1] >= w[0]),
        "timestamps went back: {times:?}"
    );
    assert_eq!(video(&got).last().map(String::as_str), Some("10241"));
}

#[test]
fn the_on_air_stream_outlives_one_leg_and_ends_with_both() {
    let hub = hub(Duration::from_secs(60));
    let primary = publish(&hub, Leg::Primary);
    let backup = publish(&hub, Leg::Backup);
    headers(&primary);
    headers(&backup);
    let mut player = hub.subscribe(NAME, LegChoice::OnAir).expect("live");
    primary.push(frame(0)).unwrap();
    backup.push(frame(0)).unwrap();
    drop(primary);
    backup.push(frame(40)).unwrap();
    backup.push(frame(80)).unwrap();
    let got = received(&mut player);
    assert_eq!(video(&got), ["+0", "40", "80"], "in sync at once");
    let r = rendition(&hub);
    let (switch, _) = r.last_switch.unwrap();
    assert_eq!(switch.reason, SwitchReason::Ended);
    assert!(r.backup_only());
    assert!(!r.primary_live && r.backup_live);
    assert!(hub.subscribe(NAME, LegChoice::Only(Leg::Primary)).is_none());
    drop(backup);
    assert_eq!(player.try_recv(), Some(PlayerEvent::Ended));
    assert!(hub.renditions().is_empty());
    assert!(hub.subscribe(NAME, LegChoice::OnAir).is_none());
}

#[test]
fn a_backup_alone_plays_and_a_primary_that_arrives_takes_over_after_the_failback_time() {
    let failback = Duration::from_millis(150);
    let hub = hub(failback);
    let backup = publish(&hub, Leg::Backup);
    headers(&backup);
    let mut player = hub.subscribe(NAME, LegChoice::OnAir).expect("live");
    backup.push(frame(0)).unwrap();
    std::thread::sleep(SILENCE);
    backup.push(frame(400)).unwrap(); // the primary had its chance
    backup.push(frame(440)).unwrap();
    assert!(rendition(&hub).backup_only());
    let primary = publish(&hub, Leg::Primary);
    headers(&primary);
    let mut ts = 480;
    let deadline = std::time::Instant::now() + failback + Duration::from_millis(100);
    while std::time::Instant::now() < deadline {
        primary.push(frame(ts)).unwrap();
        backup.push(frame(ts)).unwrap();
        ts += 40;
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = rendition(&hub);
    assert_eq!(r.on_air, Some(Leg::Primary), "{r:?}");
    let (switch, _) = r.last_switch.unwrap();
    assert_eq!(switch.reason, SwitchReason::Failback);
    assert!(r.backup_on_air_seconds >= 0.15, "{r:?}");
    let got = received(&mut player);
    let mut times: Vec<u32> = video(&got)
        .iter()
        .map(|t| t.trim_start_matches('+').parse().unwrap())
        .collect();
    let all = times.len();
    times.dedup();
    assert_eq!(times.len(), all, "a frame twice");
    assert!(times.windows(2).all(|w| w[1] > w[0]), "{times:?}");
    assert_eq!(times[..3], [400, 440, 480]);
    assert_eq!(*times.last().unwrap(), ts - 40);
}

#[test]
fn players_of_one_leg_by_name_stay_on_it() {
    let hub = hub(Duration::from_secs(60));
    let primary = publish(&hub, Leg::Primary);
    let backup = publish(&hub, Leg::Backup);
    let (name, choice) = LegChoice::from_play_name("1_gdrt137u_1.b");
    let mut player = hub.subscribe(name, choice).expect("live");
    assert_eq!(player.leg(), Some(Leg::Backup));
    primary.push(keyframe(0, 10)).unwrap();
    backup.push(keyframe(7, 10)).unwrap();
    assert_eq!(video(&received(&mut player)), ["+7"]);
    drop(backup);
    assert_eq!(player.try_recv(), Some(PlayerEvent::Ended));
    drop(primary);
}

#[test]
fn a_backup_alone_whose_keyframe_came_while_the_primary_was_awaited_plays_from_its_cache() {
    let hub = hub(Duration::from_secs(60));
    let backup = publish(&hub, Leg::Backup);
    headers(&backup);
    let mut player = hub.subscribe(NAME, LegChoice::OnAir).expect("live");
    backup.push(keyframe(0, 50)).unwrap();
    backup.push(inter(40, 20)).unwrap();
    assert!(
        video(&received(&mut player)).is_empty(),
        "the primary's chance"
    );
    std::thread::sleep(SILENCE);
    backup.push(inter(80, 20)).unwrap();
    backup.push(inter(120, 20)).unwrap();
    let got = received(&mut player);
    assert_eq!(video(&got), ["+0", "40", "80", "120"]);
    assert_eq!(got[0], avc_header(0), "its headers first");
}
