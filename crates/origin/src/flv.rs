//! HTTP-FLV playback: `GET /live/{entryId}_{n}.flv` streams the rendition's on-air
//! stream (the primary leg while it is healthy, else the backup, switched without the
//! player noticing: `longhaul_hub`'s renditions), `/live/{entryId}_{n}.p.flv` and
//! `.b.flv` one leg only. A stream not live here is a 404 whose JSON names the origins
//! where it is live ([`crate::elsewhere`]).
//!
//! The response body is fed by a task that reads the player's hub subscription and
//! writes it with `longhaul_rtmp::flv::FlvWriter`: per message one 15-byte buffer (the
//! previous tag's size and this tag's header), then the payload as the shared `Bytes` it
//! already is: no payload copy per player.
//!
//! A player that goes away makes hyper drop the body; the task's send fails and it ends.
//! A player that stops reading (its TCP window shut) is dropped after
//! `ingest.write_timeout_secs`: the task cancels the HTTP connection, which closes the
//! socket, and counts the drop.

use crate::elsewhere;
use crate::metrics::protocol;
use crate::state::OriginState;
use bytes::Bytes;
use hyper::body::Frame;
use hyper::{Method, Response, StatusCode};
use longhaul_hub::{LegChoice, PlayerEvent, StreamKey, Subscription};
use longhaul_node::http::{error, Body};
use longhaul_node::GaugeGuard;
use longhaul_rtmp::flv::FlvWriter;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Frames queued between the subscription task and hyper. Small: the hub's own bounded
/// queue is where a slow player is measured and skipped; this only smooths the hand-off.
const BODY_QUEUE: usize = 64;

pub async fn play(
    file: &str,
    method: &Method,
    peer: SocketAddr,
    state: &Arc<OriginState>,
    connection: CancellationToken,
) -> Response<Body> {
    let plays = &state.metrics.plays;
    let Some(stream) = file.strip_suffix(".flv") else {
        plays
            .with_label_values(&[protocol::HTTP_FLV, "bad_request"])
            .inc();
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "HTTP-FLV paths are /live/{entryId}_{n}.flv",
        );
    };
    // `{entryId}_{n}.flv` plays the rendition's on-air stream; `{entryId}_{n}.p.flv` or
    // `.b.flv`, that leg only.
    let (stream, choice) = LegChoice::from_play_name(stream);
    if method == Method::HEAD {
        // Whether it is live, without attaching a player.
        let legs = match choice {
            LegChoice::Only(leg) => vec![leg],
            _ => longhaul_hub::Leg::ALL.to_vec(),
        };
        let live = legs
            .into_iter()
            .any(|leg| state.hub.is_live(&StreamKey::new(stream, leg)));
        // A HEAD answer has no body: no lookup of where else it is live.
        return if live {
            flv_response(longhaul_node::http::full(""))
        } else {
            let node = &state.config.node.id;
            error(
                StatusCode::NOT_FOUND,
                NOT_LIVE,
                &format!("stream {stream} is not live on {node}"),
            )
        };
    }
    let Some(subscription) = state.subscribe(stream, choice).await else {
        plays
            .with_label_values(&[protocol::HTTP_FLV, "not_found"])
            .inc();
        let answer = state.elsewhere.find(state, stream).await;
        let message = elsewhere::not_live_message(&state.config.node.id, stream, &answer);
        tracing::info!(client = %peer, %stream, %message, "HTTP-FLV play refused: stream not live");
        return not_live(&message, &answer);
    };
    plays
        .with_label_values(&[protocol::HTTP_FLV, "accepted"])
        .inc();
    tracing::info!(client = %peer, %stream, "HTTP-FLV player attached");
    let (tx, rx) = mpsc::channel::<Bytes>(BODY_QUEUE);
    let sender = BodySender {
        tx,
        limit: state.config.ingest.write_timeout(),
    };
    tokio::spawn(feed(subscription, sender, peer, state.clone(), connection).in_current_span());
    flv_response(Body::new(ChannelBody { rx }))
}

fn flv_response(body: Body) -> Response<Body> {
    Response::builder()
        .header("content-type", "video/x-flv")
        .header("cache-control", "no-cache")
        .body(body)
        .expect("static response parts are valid")
}

/// The error code of a play of a stream not live here.
const NOT_LIVE: &str = "stream_not_live";

/// 404 `{"error": {"code": "stream_not_live", "message", "live_at": [{"origin",
/// "region", "rtmp", "http_flv"}]}}`; `live_at` is left out when this origin cannot
/// tell where else the stream is live (the message says why), and empty when it is live
/// nowhere else.
fn not_live(message: &str, answer: &elsewhere::Answer) -> Response<Body> {
    let mut error = serde_json::json!({ "code": NOT_LIVE, "message": message });
    if let Some(live_at) = elsewhere::live_at_json(answer) {
        error["live_at"] = live_at;
    }
    longhaul_node::http::json(
        StatusCode::NOT_FOUND,
        &serde_json::json!({ "error": error }),
    )
}

/// Writes the subscription into the body until the stream ends or the player leaves.
async fn feed(
    mut subscription: Subscription,
    mut body: BodySender,
    peer: SocketAddr,
    state: Arc<OriginState>,
    connection: CancellationToken,
) {
    let m = &state.metrics;
    let _active = GaugeGuard::new(m.players_active.with_label_values(&[protocol::HTTP_FLV]));
    let sent = m
        .connections
        .bytes_sent
        .with_label_values(&[protocol::HTTP_FLV]);
    let stream = subscription.name().to_string();
    let mut writer = FlvWriter::new();
    let mut open = body.send(writer.header()).await;
    while open == Sent::Ok {
        match subscription.recv().await {
            PlayerEvent::Message(message) => {
                // Messages FLV cannot carry (none reach players today) are passed over.
                let Some(parts) = writer.write(&message) else {
                    continue;
                };
                for part in parts {
                    let len = part.len() as u64;
                    open = body.send(part).await;
                    if open != Sent::Ok {
                        break;
                    }
                    sent.inc_by(len);
                }
            }
            PlayerEvent::Skipped { dropped_messages } => {
                m.player_skips
                    .with_label_values(&[protocol::HTTP_FLV])
                    .inc();
                tracing::info!(client = %peer, %stream, dropped_messages, "slow HTTP-FLV player skipped to the next keyframe");
            }
            PlayerEvent::Dropped { reason } => {
                m.player_drops
                    .with_label_values(&[protocol::HTTP_FLV])
                    .inc();
                tracing::warn!(client = %peer, %stream, %reason, "HTTP-FLV player dropped: it cannot keep up");
                connection.cancel();
                return;
            }
            PlayerEvent::Ended => {
                // The last tag's size closes the file, then the body ends.
                let _ = body.send(writer.finish()).await;
                break;
            }
        }
    }
    if open == Sent::Stalled {
        m.player_drops
            .with_label_values(&[protocol::HTTP_FLV])
            .inc();
        tracing::warn!(client = %peer, %stream, "HTTP-FLV player dropped: it stopped reading");
        connection.cancel();
    }
    tracing::info!(client = %peer, %stream, "HTTP-FLV player detached");
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
    limit: Duration,
}

impl BodySender {
    async fn send(&mut self, bytes: Bytes) -> Sent {
        // Fast path: room in the queue, no timer.
        match self.tx.try_send(bytes) {
            Ok(()) => Sent::Ok,
            Err(mpsc::error::TrySendError::Closed(_)) => Sent::Gone,
            Err(mpsc::error::TrySendError::Full(bytes)) => {
                match tokio::time::timeout(self.limit, self.tx.send(bytes)).await {
                    Ok(Ok(())) => Sent::Ok,
                    Ok(Err(_)) => Sent::Gone,
                    Err(_) => Sent::Stalled,
                }
            }
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
