//! HTTP-FLV playback: `GET /live/{entryId}_{n}.flv` streams the live FLV.
//!
//! The response body is fed by a task that reads the player's hub subscription: the FLV
//! header, then each message as a tag (header, shared payload, trailer; no payload copy).
//! When the player goes away hyper drops the body, the task's send fails and it ends.

use crate::http::{error, Body};
use crate::state::OriginState;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper::{Response, StatusCode};
use longhaul_hub::{LegChoice, PlayerEvent};
use longhaul_rtmp::flv;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// Frames queued between the subscription task and hyper. Small: the hub's own bounded
/// queue is where a slow player is measured and skipped; this only smooths the hand-off.
const BODY_QUEUE: usize = 64;

pub async fn play(file: &str, peer: SocketAddr, state: &Arc<OriginState>) -> Response<Body> {
    let plays = &state.metrics.plays;
    let Some(stream) = file.strip_suffix(".flv") else {
        plays.with_label_values(&["http-flv", "bad_request"]).inc();
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "HTTP-FLV paths are /live/{entryId}_{n}.flv",
        );
    };
    let Some(mut subscription) = state.hub.subscribe(stream, LegChoice::default()) else {
        plays.with_label_values(&["http-flv", "not_found"]).inc();
        return error(
            StatusCode::NOT_FOUND,
            "stream_not_live",
            &format!("stream {stream} is not live on this node"),
        );
    };
    plays.with_label_values(&["http-flv", "accepted"]).inc();
    tracing::info!(client = %peer, %stream, "HTTP-FLV player attached");
    let (tx, rx) = mpsc::channel::<Bytes>(BODY_QUEUE);
    let state_for_task = state.clone();
    let stream_name = stream.to_string();
    tokio::spawn(async move {
        let m = &state_for_task.metrics;
        let active = m.players_active.with_label_values(&["http-flv"]);
        let sent = m.bytes_sent.with_label_values(&["http-flv"]);
        active.inc();
        let limit = state_for_task.config.ingest.write_timeout();
        let mut body = BodySender { tx, limit };
        let mut open = body.send(Bytes::from_static(&flv::FILE_HEADER)).await;
        while open == Sent::Ok {
            match subscription.recv().await {
                PlayerEvent::Message(message) => {
                    let len = message.payload.len() + flv::TAG_HEADER_LEN + 4;
                    for part in [
                        Bytes::copy_from_slice(&flv::tag_header(&message)),
                        message.payload.clone(),
                        Bytes::copy_from_slice(&flv::tag_trailer(&message)),
                    ] {
                        open = body.send(part).await;
                        if open != Sent::Ok {
                            break;
                        }
                    }
                    sent.inc_by(len as u64);
                }
                PlayerEvent::Skipped { dropped_messages } => {
                    m.player_skips.with_label_values(&["http-flv"]).inc();
                    tracing::info!(client = %peer, stream = %stream_name, dropped_messages, "slow HTTP-FLV player skipped to the next keyframe");
                }
                PlayerEvent::Dropped { reason } => {
                    m.player_drops.with_label_values(&["http-flv"]).inc();
                    tracing::warn!(client = %peer, stream = %stream_name, %reason, "HTTP-FLV player dropped: it cannot keep up");
                    break;
                }
                PlayerEvent::Ended => break,
            }
        }
        if open == Sent::Stalled {
            m.player_drops.with_label_values(&["http-flv"]).inc();
            tracing::warn!(client = %peer, stream = %stream_name, "HTTP-FLV player dropped: it stopped reading");
        }
        active.dec();
        tracing::info!(client = %peer, stream = %stream_name, "HTTP-FLV player detached");
    });
    Response::builder()
        .header("content-type", "video/x-flv")
        .header("cache-control", "no-cache")
        .body(ChannelBody { rx }.boxed())
        .expect("static response parts are valid")
}

#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Ok,
    /// The player went away (hyper dropped the body).
    Gone,
    /// The player stopped reading for longer than `ingest.write_timeout_secs`.
    Stalled,
}

struct BodySender {
    tx: mpsc::Sender<Bytes>,
    limit: std::time::Duration,
}

impl BodySender {
    async fn send(&mut self, bytes: Bytes) -> Sent {
        match tokio::time::timeout(self.limit, self.tx.send(bytes)).await {
            Ok(Ok(())) => Sent::Ok,
            Ok(Err(_)) => Sent::Gone,
            Err(_) => Sent::Stalled,
        }
    }
}

/// A response body fed by a channel; it ends when the sender is dropped.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}
