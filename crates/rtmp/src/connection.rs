//! Thin tokio drivers of [`ClientSession`] over any byte stream, for relay legs and tests.
//!
//! The stream is any `AsyncRead + AsyncWrite + Unpin` (a `TcpStream`, a TLS stream for
//! `rtmps://`, a `tokio::io::duplex` pipe in tests): the drivers only move bytes, all
//! protocol logic is in the session. Writes hand the [`crate::OutputQueue`] to
//! `write_all_buf`, so headers and shared payload slices go out in vectored writes.
//! The drivers set no timeouts: callers wrap calls in `tokio::time::timeout`.

use crate::amf0::Amf0Value;
use crate::client::{ClientConfig, ClientEvent, ClientGoal, ClientSession, ClientSessionError};
use crate::message::RtmpMessage;
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::Poll;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Read buffer size: one typical TCP segment burst; the session buffers partial chunks.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Default RTMP port (used when the URL gives none).
pub const DEFAULT_RTMP_PORT: u16 = 1935;
/// Default RTMPS port (used when the URL gives none).
pub const DEFAULT_RTMPS_PORT: u16 = 443;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Session(#[from] ClientSessionError),
    #[error("server rejected the request: {code}: {description}")]
    Rejected { code: String, description: String },
    #[error("server closed the connection {0}")]
    Closed(&'static str),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlError {
    #[error("URL {0:?} does not start with rtmp:// or rtmps://")]
    Scheme(String),
    #[error("URL {0:?} has no host")]
    NoHost(String),
    #[error("URL {0:?} has a bad port")]
    BadPort(String),
    #[error("URL {0:?} has no app and stream name (rtmp://host/app/name)")]
    NoStreamName(String),
}

/// An `rtmp://` or `rtmps://` URL split the way ffmpeg splits it (REFERENCE.md section 1):
/// `kLive/?t=abc/name` gives app `kLive/?t=abc`, name `name`; `kLive/name?t=abc` gives app
/// `kLive`, name `name?t=abc`; `kLive?t=abc/name` gives app `kLive?t=abc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub app: String,
    pub name: String,
    /// `scheme://host:port/app`, port always present (as ffmpeg sends it).
    pub tc_url: String,
}

impl RtmpUrl {
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("rtmp://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("rtmps://") {
            (true, rest)
        } else {
            return Err(UrlError::Scheme(url.to_string()));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match authority.rsplit_once(':') {
            // IPv6 literal without a port: `[::1]`.
            Some((host, port)) if !port.contains(']') => (
                host,
                port.parse::<u16>()
                    .map_err(|_| UrlError::BadPort(url.to_string()))?,
            ),
            _ => (
                authority,
                if tls {
                    DEFAULT_RTMPS_PORT
                } else {
                    DEFAULT_RTMP_PORT
                },
            ),
        };
        if host.is_empty() {
            return Err(UrlError::NoHost(url.to_string()));
        }
        let (app, name) =
            split_app_and_name(path).ok_or(UrlError::NoStreamName(url.to_string()))?;
        let scheme = if tls { "rtmps" } else { "rtmp" };
        Ok(Self {
            tls,
            host: host.to_string(),
            port,
            tc_url: format!("{scheme}://{host}:{port}/{app}"),
            app,
            name,
        })
    }

    /// A client config connecting to this URL's app.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::new(self.app.clone(), self.tc_url.clone())
    }

    /// `host:port`, for `TcpStream::connect`.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// ffmpeg's rule (libavformat/rtmpproto.c, `rtmp_open`): with one `/` in the path the
/// app is what comes before it; with two or more, the app is the first two segments
/// (`app/instance`: this is how `kLive/?t=abc/name` keeps its query in the app), unless
/// the second segment holds a `:` (a `mp4:file` style play path).
fn split_app_and_name(path: &str) -> Option<(String, String)> {
    let first = path.find('/')?;
    let after = &path[first + 1..];
    let split_at = match (after.find('/'), after.find(':')) {
        (Some(second), colon) if colon.is_none_or(|c| c > second) => first + 1 + second,
        _ => first,
    };
    let app = &path[..split_at];
    let name = &path[split_at + 1..];
    if app.is_empty() || name.is_empty() {
        return None;
    }
    Some((app.to_string(), name.to_string()))
}

/// Session and stream together; shared by [`Publisher`] and [`Player`].
struct Driver<S> {
    io: S,
    session: ClientSession,
    read_buffer: Vec<u8>,
    events: VecDeque<ClientEvent>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    fn new(io: S, config: ClientConfig, goal: ClientGoal) -> Self {
        Self {
            io,
            session: ClientSession::new(config, goal, Instant::now()),
            read_buffer: vec![0; READ_BUFFER_BYTES],
            events: VecDeque::new(),
        }
    }

    async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.session.output().is_empty() {
            self.io.write_all_buf(self.session.output()).await?;
        }
        Ok(())
    }

    fn feed(&mut self, n: usize) -> Result<(), ClientError> {
        let input = self.read_buffer.get(..n).unwrap_or_default();
        let events = self.session.handle_input(Instant::now(), input)?;
        for event in events {
            if let ClientEvent::Rejected { code, description } = event {
                return Err(ClientError::Rejected { code, description });
            }
            self.events.push_back(event);
        }
        Ok(())
    }

    /// Reads once (waiting), feeds the session and flushes its answers. `Ok(false)` at EOF.
    async fn read_once(&mut self) -> Result<bool, ClientError> {
        let n = self.io.read(&mut self.read_buffer).await?;
        if n == 0 {
            return Ok(false);
        }
        self.feed(n)?;
        self.flush().await?;
        Ok(true)
    }

    /// Feeds whatever the server already sent (acknowledgements, pings, an error status)
    /// without waiting.
    async fn read_ready(&mut self) -> Result<(), ClientError> {
        loop {
            let Self {
                io, read_buffer, ..
            } = self;
            let ready = std::future::poll_fn(|cx| {
                let mut buf = ReadBuf::new(read_buffer);
                match Pin::new(&mut *io).poll_read(cx, &mut buf) {
                    Poll::Pending => Poll::Ready(None),
                    Poll::Ready(r) => Poll::Ready(Some(r.map(|()| buf.filled().len()))),
                }
            })
            .await;
            match ready {
                None => return Ok(()),
                Some(Ok(0)) => return Err(ClientError::Closed("while publishing")),
                Some(Ok(n)) => self.feed(n)?,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Drives the session until it reports `Ready`.
    async fn wait_ready(&mut self) -> Result<u32, ClientError> {
        self.flush().await?;
        loop {
            while let Some(event) = self.events.pop_front() {
                match event {
                    ClientEvent::Ready { stream_id } => return Ok(stream_id),
                    ClientEvent::Media(m) => {
                        // Media before Play.Start (some servers): keep it for recv().
                        self.events.push_front(ClientEvent::Media(m));
                        return Ok(self.session.stream_id());
                    }
                    other => tracing::debug!(?other, "rtmp client event before ready"),
                }
            }
            if !self.read_once().await? {
                return Err(ClientError::Closed("before the stream was ready"));
            }
        }
    }
}

/// Publishes one stream to an RTMP server.
pub struct Publisher<S> {
    driver: Driver<S>,
    stream_id: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Publisher<S> {
    /// Handshake, connect and publish `name` (type `live`); returns once the server sent
    /// `NetStream.Publish.Start`. A refusal is [`ClientError::Rejected`] with its reason.
    pub async fn start(io: S, config: ClientConfig, name: &str) -> Result<Self, ClientError> {
        let goal = ClientGoal::Publish {
            name: name.to_string(),
            publish_type: "live".to_string(),
        };
        let mut driver = Driver::new(io, config, goal);
        let stream_id = driver.wait_ready().await?;
        Ok(Self { driver, stream_id })
    }

    /// The stream id the server handed out.
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// Sends one media or data message (payload shared, not copied). Answers the
    /// server's pings and acknowledgement windows, and fails with
    /// [`ClientError::Rejected`] if the server sent an error status meanwhile.
    pub async fn send(&mut self, message: &RtmpMessage) -> Result<(), ClientError> {
        self.driver.read_ready().await?;
        self.driver.session.send_media(message)?;
        self.driver.flush().await
    }

    /// Status events (e.g. `onFCPublish`) received so far.
    pub fn take_statuses(&mut self) -> Vec<ClientEvent> {
        self.driver.events.drain(..).collect()
    }

    /// Sends `FCUnpublish` and `deleteStream`, then shuts the write side down.
    pub async fn finish(mut self) -> Result<(), ClientError> {
        self.driver.session.finish();
        self.driver.flush().await?;
        self.driver.io.shutdown().await?;
        Ok(())
    }

    /// The stream, e.g. to read what the server sends after `finish` in tests.
    pub fn into_inner(self) -> S {
        self.driver.io
    }
}

/// Plays one stream from an RTMP server.
pub struct Player<S> {
    driver: Driver<S>,
    stream_id: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Player<S> {
    /// Handshake, connect and play `name`; returns once the server sent
    /// `NetStream.Play.Start`. A refusal is [`ClientError::Rejected`] with its reason.
    pub async fn start(io: S, config: ClientConfig, name: &str) -> Result<Self, ClientError> {
        let goal = ClientGoal::Play {
            name: name.to_string(),
        };
        let mut driver = Driver::new(io, config, goal);
        let stream_id = driver.wait_ready().await?;
        Ok(Self { driver, stream_id })
    }

    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// The next media or data message; `Ok(None)` when the server closed the connection.
    /// Status events in between (e.g. `NetStream.Play.UnpublishNotify`) are logged.
    pub async fn recv(&mut self) -> Result<Option<RtmpMessage>, ClientError> {
        loop {
            while let Some(event) = self.driver.events.pop_front() {
                match event {
                    ClientEvent::Media(message) => return Ok(Some(message)),
                    other => tracing::debug!(?other, "rtmp player event"),
                }
            }
            if !self.driver.read_once().await? {
                return Ok(None);
            }
        }
    }

    /// Sends `deleteStream`, then shuts the write side down.
    pub async fn finish(mut self) -> Result<(), ClientError> {
        self.driver.session.finish();
        self.driver.flush().await?;
        self.driver.io.shutdown().await?;
        Ok(())
    }

    /// The stream, once playing, for a reader that only counts what arrives (the load
    /// generator's viewers). Bytes already read past `NetStream.Play.Start` stay behind.
    pub fn into_inner(self) -> S {
        self.driver.io
    }
}

/// Adds Enhanced RTMP's `fourCcList` to a config (the codecs a client announces).
pub fn with_four_cc_list(mut config: ClientConfig, four_ccs: &[&str]) -> ClientConfig {
    config.extra_connect_properties.push((
        "fourCcList".to_string(),
        Amf0Value::StrictArray(
            four_ccs
                .iter()
                .map(|f| Amf0Value::String(f.to_string()))
                .collect(),
        ),
    ));
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_like_ffmpeg() {
        let u = RtmpUrl::parse("rtmp://h:1935/kLive/?t=abc/1_gdrt137u_1").unwrap();
        assert_eq!(
            (u.app.as_str(), u.name.as_str()),
            ("kLive/?t=abc", "1_gdrt137u_1")
        );
        assert_eq!(u.tc_url, "rtmp://h:1935/kLive/?t=abc");
        let u = RtmpUrl::parse("rtmp://h:1935/kLive/1_gdrt137u_1?t=abc").unwrap();
        assert_eq!(
            (u.app.as_str(), u.name.as_str()),
            ("kLive", "1_gdrt137u_1?t=abc")
        );
        let u = RtmpUrl::parse("rtmp://h/kLive?t=abc/1_gdrt137u_1").unwrap();
        assert_eq!(
            (u.app.as_str(), u.name.as_str()),
            ("kLive?t=abc", "1_gdrt137u_1")
        );
        assert_eq!(u.port, 1935);
        assert_eq!(u.tc_url, "rtmp://h:1935/kLive?t=abc");
        let u = RtmpUrl::parse("rtmps://edge.example:443/kLive/inst/a/b").unwrap();
        assert!(u.tls);
        assert_eq!((u.app.as_str(), u.name.as_str()), ("kLive/inst", "a/b"));
        let u = RtmpUrl::parse("rtmps://edge.example/vod/mp4:x/y.mp4").unwrap();
        assert_eq!(
            (u.app.as_str(), u.name.as_str(), u.port),
            ("vod", "mp4:x/y.mp4", 443)
        );
        assert_eq!(u.address(), "edge.example:443");
        assert!(matches!(
            RtmpUrl::parse("http://h/a/b"),
            Err(UrlError::Scheme(_))
        ));
        assert!(matches!(
            RtmpUrl::parse("rtmp://h:x/a/b"),
            Err(UrlError::BadPort(_))
        ));
        assert!(matches!(
            RtmpUrl::parse("rtmp://h/a"),
            Err(UrlError::NoStreamName(_))
        ));
        assert!(matches!(
            RtmpUrl::parse("rtmp:///a/b"),
            Err(UrlError::NoHost(_))
        ));
    }
}
