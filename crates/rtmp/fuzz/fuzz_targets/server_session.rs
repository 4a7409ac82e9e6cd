//! Fuzzes a whole server session past the handshake: arbitrary bytes after a real
//! handshake go through chunk decoding, command parsing and every session state
//! (connect, publish, play, held media). The session is also answered as a driver would
//! (accept every request), so the post-accept paths are reached too, and a failed
//! session says its last words (`ServerSession::fail`). Any panic is a bug.
#![no_main]

use bytes::Buf;
use libfuzzer_sys::fuzz_target;
use longhaul_rtmp::client::{ClientConfig, ClientGoal, ClientSession};
use longhaul_rtmp::server::{ServerConfig, ServerEvent, ServerSession};
use longhaul_rtmp::OutputQueue;
use std::time::{Duration, Instant};

/// A server session that has completed the handshake with a real client session.
fn handshaken(now: Instant) -> Option<ServerSession> {
    let mut server = ServerSession::new(ServerConfig::default(), now);
    let goal = ClientGoal::Publish {
        name: "1_abcdefgh_1".into(),
        publish_type: "live".into(),
    };
    let mut client =
        ClientSession::new(ClientConfig::new("kLive", "rtmp://h:1935/kLive"), goal, now);
    // C0+C1 -> S0+S1+S2 -> C2; the client's connect follows C2 and is discarded below.
    for _ in 0..4 {
        let to_server = take(client.output());
        if !to_server.is_empty() {
            server.handle_input(now, &to_server).ok()?;
        }
        let to_client = take(server.output());
        if !to_client.is_empty() {
            client.handle_input(now, &to_client).ok()?;
        }
    }
    Some(server)
}

/// Everything queued, removed from the queue.
fn take(queue: &mut OutputQueue) -> Vec<u8> {
    let bytes = queue.to_vec();
    queue.advance(bytes.len());
    bytes
}

fn answer(server: &mut ServerSession, events: Vec<ServerEvent>) {
    for event in events {
        match event {
            ServerEvent::ConnectRequested { .. } => server.accept_connect(),
            ServerEvent::PublishRequested { stream_id, .. } => server.accept_publish(stream_id),
            ServerEvent::PlayRequested { stream_id, .. } => server.accept_play(stream_id),
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    let Some(mut server) = handshaken(start) else {
        return;
    };
    for (i, piece) in data.chunks(251).enumerate() {
        let now = start + Duration::from_millis(i as u64 * 10);
        match server.handle_input(now, piece) {
            Ok(events) => {
                answer(&mut server, events);
                let held = server.take_events();
                answer(&mut server, held);
            }
            Err(e) => {
                // The last words to the peer must not panic either, in any state.
                server.fail(&e);
                return;
            }
        }
        if let Err(e) = server.handle_timeout(now) {
            server.fail(&e);
            return;
        }
        if server.should_close() {
            return;
        }
    }
});
