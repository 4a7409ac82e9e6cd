//! One simulated encoder: connect and publish (timing the setup), send the metadata and
//! sequence headers, then the paced media, then unpublish.
//!
//! Pacing is by capture time, as `ffmpeg -re` does: each frame waits for its scheduled
//! time on a tokio timer and is stamped with that time, not with the moment it left. A
//! publisher held back by TCP (the path is slower than the stream) sends its frames
//! late, one after another, never skipping one; the delay shows as latency at the
//! player. Frames still unsent at the stop time (the run's end for this stream), or when
//! the connection broke, count as produced and lost (`Sent::unsent`); only a broken
//! connection is the stream's error.

use crate::measure::Sent;
use crate::plan::{self, Frames, Shape};
use crate::progress::Live;
use crate::stamp::Stamp;
use bytes::Bytes;
use longhaul_rtmp::connection::{ClientError, Publisher, RtmpUrl};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream};

/// A publishing encoder.
pub type Encoder = Publisher<TcpStream>;

/// TCP connect, then the RTMP handshake, `connect`, `createStream` and `publish` until
/// `NetStream.Publish.Start`, all before `deadline`. Returns the publisher and the
/// setup time (from the connect's start). A refusal is the server's status and words.
pub async fn publish(url: &str, deadline: Instant) -> Result<(Encoder, Duration), String> {
    publish_from(url, None, deadline).await
}

/// [`publish`] from the local address `from` (any when `None`): the soak's hostile
/// clients use loopback addresses of their own, so what a node does to their address
/// (slowing, banning) does not fall on the honest publishers.
pub async fn publish_from(
    url: &str,
    from: Option<IpAddr>,
    deadline: Instant,
) -> Result<(Encoder, Duration), String> {
    let url = RtmpUrl::parse(url).map_err(|e| format!("publish URL: {e}"))?;
    let started = Instant::now();
    let steps = async {
        let io = connect(&url.address(), from)
            .await
            .map_err(|e| format!("connecting to {}: {e}", url.address()))?;
        let _ = io.set_nodelay(true);
        Publisher::start(io, url.client_config(), &url.name)
            .await
            .map_err(|e| match e {
                ClientError::Rejected { code, description } => {
                    format!("publish refused: {code}: {description}")
                }
                other => format!("publishing at {}: {other}", url.address()),
            })
    };
    match tokio::time::timeout_at(deadline.into(), steps).await {
        Ok(Ok(p)) => Ok((p, started.elapsed())),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "publish at {} did not start within {:.1} s",
            url.address(),
            deadline.saturating_duration_since(started).as_secs_f64()
        )),
    }
}

/// A TCP connection to `address` (`HOST:PORT`), from the local address `from` when
/// given (port chosen by the system).
pub async fn connect(address: &str, from: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(from) = from else {
        return TcpStream::connect(address).await;
    };
    let mut last = None;
    for to in tokio::net::lookup_host(address).await? {
        let socket = match to {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(from, 0))?;
        match socket.connect(to).await {
            Ok(io) => return Ok(io),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to")
    }))
}

/// `@setDataFrame onMetaData` and the AVC and AAC sequence headers, before `deadline`.
pub async fn send_preamble(
    p: &mut Encoder,
    shape: &Shape,
    deadline: Instant,
) -> Result<(), String> {
    let [video, audio] = plan::sequence_headers();
    let steps = async {
        for m in [plan::metadata(shape), video, audio] {
            p.send(&m).await?;
        }
        Ok::<(), ClientError>(())
    };
    match tokio::time::timeout_at(deadline.into(), steps).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("sending the sequence headers: {e}")),
        Err(_) => Err("sending the sequence headers timed out".into()),
    }
}

/// Where the paced media goes and when.
pub struct Pacing<'a> {
    /// The stream's index, in every stamp.
    pub stream: u32,
    /// When frame 0 is captured.
    pub start: Instant,
    /// The same moment, unix microseconds (stamps are wall-clock times).
    pub start_unix_us: u64,
    /// Frames not sent by then stay unsent.
    pub stop: Instant,
    pub template: &'a Bytes,
    pub live: &'a Live,
}

/// What the paced sending did.
#[derive(Debug, Default)]
pub struct Sending {
    pub sent: Sent,
    /// When the last sent frame was due.
    pub last_due: Option<Instant>,
    pub error: Option<String>,
}

/// Sends `frames` paced at their capture times (see the module docs).
pub async fn send_paced(p: &mut Encoder, mut frames: Frames, pacing: Pacing<'_>) -> Sending {
    let mut out = Sending::default();
    let mut seq: u32 = 0;
    while let Some(frame) = frames.next() {
        let due = pacing.start + frame.at;
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let stamp = Stamp {
            stream: pacing.stream,
            seq,
            sent_us: pacing.start_unix_us + frame.at.as_micros() as u64,
        };
        let m = plan::media(&frame, stamp, pacing.template);
        let written = match tokio::time::timeout_at(pacing.stop.into(), p.send(&m)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                out.error = Some(format!("publisher: sending frame {seq}: {e}"));
                false
            }
            // Held back by the path: not an error, the publish itself worked.
            Err(_) => false,
        };
        if !written {
            // This frame may be partly in the socket (the player may still get it): it
            // counts as sent. The rest were produced all the same and never left:
            // offered, unsent, lost.
            out.sent.count(&frame, pacing.start_unix_us);
            for f in frames.by_ref() {
                out.sent.count(&f, pacing.start_unix_us);
                out.sent.unsent += 1;
            }
            break;
        }
        out.sent.count(&frame, pacing.start_unix_us);
        out.last_due = Some(due);
        pacing
            .live
            .offered_bytes
            .fetch_add(frame.len as u64, Ordering::Relaxed);
        seq = seq.wrapping_add(1);
    }
    out
}

/// Unpublishes (`FCUnpublish`, `deleteStream`, then a closed write side), bounded.
pub async fn finish(p: Encoder, limit: Duration) {
    match tokio::time::timeout(limit, p.finish()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "unpublish failed"),
        Err(_) => tracing::debug!("unpublish timed out"),
    }
}
