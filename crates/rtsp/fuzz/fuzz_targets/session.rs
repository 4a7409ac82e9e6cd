//! Fuzzes an RTSP session: arbitrary bytes (requests, SDP bodies, interleaved frames) in
//! pieces whose sizes come from the first byte, on a fake clock, answered as a driver
//! would (every ANNOUNCE and RECORD accepted, so SETUP, RECORD and the interleaved paths
//! are reached). Every SDP the session accepts is also checked to be within the bounds
//! it promises. Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use longhaul_rtsp::{RtspEvent, RtspSession, SessionConfig, UdpPorts};
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let piece = usize::from(first % 64) + 1;
    let now = Instant::now();
    let config = SessionConfig {
        session_id: "fuzz".into(),
        // Odd first bytes offer UDP too.
        udp: (first & 0x80 != 0).then_some(UdpPorts { rtp: 8000, rtcp: 8001 }),
        ..SessionConfig::default()
    };
    let mut session = RtspSession::new(config, now);
    let mut t = now;
    for chunk in rest.chunks(piece) {
        t += Duration::from_millis(7);
        let events = match session.handle_input(t, chunk) {
            Ok(events) => events,
            Err(_) => break,
        };
        answer(&mut session, events);
        // Decisions release held input.
        while session.has_unhandled_input() {
            match session.handle_read(t, 0) {
                Ok(events) if !events.is_empty() => answer(&mut session, events),
                _ => break,
            }
        }
        let _ = session.take_output();
        let _ = session.take_answers();
        if session.should_close() {
            break;
        }
    }
    let _ = session.handle_timeout(t + Duration::from_secs(120));
});

fn answer(session: &mut RtspSession, events: Vec<RtspEvent>) {
    for event in events {
        match event {
            RtspEvent::Announce { tracks, .. } => {
                assert!(!tracks.is_empty() && tracks.len() <= 2);
                session.accept_announce();
            }
            RtspEvent::Record => session.accept_record(),
            _ => {}
        }
    }
}
