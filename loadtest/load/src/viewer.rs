//! Viewers: extra players per stream that only count the bytes they get, cheaply, so
//! the players-per-core benchmark can load an origin (or nginx-rtmp) with thousands of
//! them from one core without the generator being the limit.
//!
//! A measuring player ([`crate::player`]) parses every chunk and stamps every frame:
//! about what the server spends to send it. A viewer attaches the same way (RTMP `play`
//! until `NetStream.Play.Start`, or an HTTP-FLV `GET` answered `200`), then wakes every
//! [`READ_PAUSE`] and reads whatever the socket holds in 64 KiB reads, counting it and
//! parsing nothing: at 600 kbit/s that is 7.5 KB per wake-up, ten wake-ups a second,
//! well inside the socket's receive buffer. What a server sends a viewer is checked by
//! count: a viewer that kept up got about what its stream's publisher sent
//! ([`ViewerFigures::min_share`]); one the server fell behind on (dropped GOPs, a cut
//! connection) got less. The stream's own player still measures its frames' latency.

use crate::player;
use std::io::ErrorKind;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Time between a viewer's reads. 100 ms of a 600 kbit/s stream is 7.5 KB, of a
/// 6 Mbit/s one 75 KB: both fit the kernel's default receive buffer (128 KiB and up),
/// so the server never waits on a viewer's window for it.
pub const READ_PAUSE: Duration = Duration::from_millis(100);
/// Bytes read per `read` call.
const READ_SIZE: usize = 64 * 1024;

/// How viewers play: the protocol and the base URL a stream's name is added to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewerUrl {
    /// `rtmp://HOST:PORT/APP`: plays `{base}/{name}`.
    Rtmp(String),
    /// `http://HOST:PORT/PATH`: gets `{base}/{name}.flv`.
    HttpFlv { host_port: String, path: String },
}

impl ViewerUrl {
    /// Parses `--viewers-at`.
    pub fn parse(base: &str) -> Result<Self, String> {
        let base = base.trim_end_matches('/');
        if base.starts_with("rtmp://") {
            return Ok(Self::Rtmp(base.to_string()));
        }
        let Some(rest) = base.strip_prefix("http://") else {
            return Err(format!("{base:?} is neither rtmp:// nor http://"));
        };
        let (host_port, path) = rest.split_once('/').unwrap_or((rest, ""));
        if host_port.is_empty() {
            return Err(format!("{base:?} has no host"));
        }
        Ok(Self::HttpFlv {
            host_port: host_port.to_string(),
            path: if path.is_empty() {
                String::new()
            } else {
                format!("/{path}")
            },
        })
    }

    /// `rtmp` or `http-flv`, for the report.
    pub fn protocol(&self) -> &'static str {
        match self {
            Self::Rtmp(_) => "rtmp",
            Self::HttpFlv { .. } => "http-flv",
        }
    }
}

/// What one viewer got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Viewed {
    pub bytes: u64,
    pub error: Option<String>,
}

/// A stream's viewers together.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ViewerFigures {
    pub viewers: u64,
    /// Viewers that never attached or whose connection broke.
    pub failed: u64,
    pub bytes: u64,
    /// The least any viewer of the stream got, over the bytes its publisher sent (1.0:
    /// all of it; a little above 1 counts the headers and the cached GOP).
    pub min_share: f64,
}

impl ViewerFigures {
    pub fn of(viewed: &[Viewed], sent_bytes: u64) -> Self {
        let min = viewed.iter().map(|v| v.bytes).min().unwrap_or(0);
        Self {
            viewers: viewed.len() as u64,
            failed: viewed.iter().filter(|v| v.error.is_some()).count() as u64,
            bytes: viewed.iter().map(|v| v.bytes).sum(),
            min_share: if viewed.is_empty() || sent_bytes == 0 {
                1.0
            } else {
                min as f64 / sent_bytes as f64
            },
        }
    }
}

/// One viewer of stream `name`: attach before `attach_by`, then count bytes until
/// `stop` or the server closes.
pub async fn view(url: ViewerUrl, name: String, attach_by: Instant, stop: Instant) -> Viewed {
    let (io, already) = match attach(&url, &name, attach_by).await {
        Ok(attached) => attached,
        Err(e) => {
            return Viewed {
                bytes: 0,
                error: Some(e),
            }
        }
    };
    let mut viewed = count(io, stop).await;
    viewed.bytes += already;
    viewed
}

/// The playing connection and the media bytes already read with the answer.
async fn attach(url: &ViewerUrl, name: &str, by: Instant) -> Result<(TcpStream, u64), String> {
    match url {
        ViewerUrl::Rtmp(base) => player::attach(&format!("{base}/{name}"), by)
            .await
            .map(|p| (p.into_inner(), 0)),
        ViewerUrl::HttpFlv { host_port, path } => loop {
            match get_flv(host_port, &format!("{path}/{name}.flv")).await {
                Ok(io) => return Ok(io),
                Err(e) if Instant::now() + player::ATTACH_RETRY >= by => return Err(e),
                Err(_) => tokio::time::sleep(player::ATTACH_RETRY).await,
            }
        },
    }
}

/// `GET path` on a fresh connection; the connection once the answer's headers are read
/// and say `200`, and how many body bytes came with them.
async fn get_flv(host_port: &str, path: &str) -> Result<(TcpStream, u64), String> {
    let mut io = TcpStream::connect(host_port)
        .await
        .map_err(|e| format!("connecting to {host_port}: {e}"))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host_port}\r\nUser-Agent: longhaul-load\r\nAccept: */*\r\n\r\n");
    io.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() > 16 * 1024 {
            return Err(format!("GET {path}: headers over 16 KiB"));
        }
        let n = io
            .read(&mut buf)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        if n == 0 {
            return Err(format!("GET {path}: closed before the headers ended"));
        }
        head.extend_from_slice(&buf[..n]);
    };
    let status = head.split(|&b| b == b'\r').next().unwrap_or_default();
    if !status.starts_with(b"HTTP/1.1 200") && !status.starts_with(b"HTTP/1.0 200") {
        return Err(format!("GET {path}: {}", String::from_utf8_lossy(status)));
    }
    Ok((io, (head.len() - end) as u64))
}

/// Reads and counts until `stop`, the peer's close or an error, pausing between reads.
async fn count(io: TcpStream, stop: Instant) -> Viewed {
    let mut out = Viewed::default();
    let mut buf = vec![0u8; READ_SIZE];
    while Instant::now() < stop {
        // Everything the socket holds now.
        loop {
            match io.try_read(&mut buf) {
                Ok(0) => return out,
                Ok(n) => out.bytes += n as u64,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.error = Some(format!("reading: {e}"));
                    return out;
                }
            }
        }
        tokio::time::sleep(READ_PAUSE.min(stop.saturating_duration_since(Instant::now()))).await;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viewer_urls() {
        assert_eq!(
            ViewerUrl::parse("rtmp://127.0.0.1:1935/kLive/").unwrap(),
            ViewerUrl::Rtmp("rtmp://127.0.0.1:1935/kLive".into())
        );
        assert_eq!(
            ViewerUrl::parse("http://127.0.0.1:8082/live").unwrap(),
            ViewerUrl::HttpFlv {
                host_port: "127.0.0.1:8082".into(),
                path: "/live".into()
            }
        );
        assert_eq!(
            ViewerUrl::parse("http://127.0.0.1:8082").unwrap(),
            ViewerUrl::HttpFlv {
                host_port: "127.0.0.1:8082".into(),
                path: String::new()
            }
        );
        assert!(ViewerUrl::parse("srt://x").is_err());
        assert!(ViewerUrl::parse("http:///live").is_err());
    }

    #[test]
    fn figures_take_the_worst_viewer() {
        let viewed = [
            Viewed {
                bytes: 1_000,
                error: None,
            },
            Viewed {
                bytes: 900,
                error: None,
            },
            Viewed {
                bytes: 10,
                error: Some("reading: reset".into()),
            },
        ];
        let f = ViewerFigures::of(&viewed, 1_000);
        assert_eq!(f.viewers, 3);
        assert_eq!(f.failed, 1);
        assert_eq!(f.bytes, 1_910);
        assert!((f.min_share - 0.01).abs() < 1e-9);
        assert_eq!(ViewerFigures::of(&[], 1_000).min_share, 1.0);
    }

    #[tokio::test]
    async fn a_viewer_counts_what_an_http_flv_server_sends() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut io, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let n = io.read(&mut req).await.unwrap();
            assert!(req[..n].starts_with(b"GET /live/1_abc_1.flv HTTP/1.1\r\n"));
            io.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n\r\n")
                .await
                .unwrap();
            for _ in 0..5 {
                io.write_all(&[7u8; 10_000]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let url = ViewerUrl::parse(&format!("http://{addr}/live")).unwrap();
        let now = Instant::now();
        let viewed = view(
            url,
            "1_abc_1".into(),
            now + Duration::from_secs(5),
            now + Duration::from_secs(10),
        )
        .await;
        server.await.unwrap();
        assert_eq!(viewed.error, None);
        assert_eq!(viewed.bytes, 50_000);
    }
}
