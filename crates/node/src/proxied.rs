//! Reading a connection's PROXY header off its socket, before anything else (before the
//! TLS handshake on RTMPS), and handing the bytes read past it to whoever reads next.
//!
//! The header is parsed by [`crate::proxy_header::parse`] as bytes arrive. A read may take
//! more than the header (a balancer sends the header and the client's first bytes
//! together): [`Rewound`] gives those back before reading the socket again, so RTMP and
//! TLS see exactly what the client sent. At most [`proxy_header::MAX_LEN`] bytes are read
//! for a header; the caller bounds the time.

use crate::proxy_header::{self, ProxyHeader, ProxyHeaderError};
use bytes::{Buf, Bytes};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Why no PROXY header could be read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderReadError {
    #[error(transparent)]
    Header(#[from] ProxyHeaderError),
    #[error("the connection closed after {0} bytes, before a whole PROXY header")]
    Closed(usize),
    #[error("reading the PROXY header: {0}")]
    Io(#[from] io::Error),
}

/// Reads the PROXY header at the start of `io`; gives it and the stream, with whatever
/// was read past the header put back in front.
pub async fn read_header<S: AsyncRead + Unpin>(
    mut io: S,
) -> Result<(ProxyHeader, Rewound<S>), HeaderReadError> {
    let mut buf = vec![0u8; proxy_header::MAX_LEN];
    let mut filled = 0;
    loop {
        // parse() refuses a header longer than MAX_LEN before it is all read, so the
        // buffer never fills up without an answer.
        let n = io.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(HeaderReadError::Closed(filled));
        }
        filled += n;
        if let Some(header) = proxy_header::parse(&buf[..filled])? {
            buf.truncate(filled);
            let rest = Bytes::from(buf).slice(header.len..);
            return Ok((header, Rewound::new(io, rest)));
        }
        if filled == buf.len() {
            // Not reached (see above); refused rather than looping on a full buffer.
            return Err(ProxyHeaderError::TooLong(filled).into());
        }
    }
}

/// A stream with bytes already read from it put back in front.
#[derive(Debug)]
pub struct Rewound<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewound<S> {
    /// `inner`, whose next reads give `prefix` first.
    pub fn new(inner: S, prefix: Bytes) -> Self {
        Self { prefix, inner }
    }

    /// `inner` with nothing put back.
    pub fn plain(inner: S) -> Self {
        Self::new(inner, Bytes::new())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn the_bytes_after_the_header_are_read_next_however_they_arrive() {
        let header = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 1935\r\n";
        let mut sent = header.to_vec();
        sent.extend((0..3000u32).map(|i| i as u8)); // C0 + C1 and more
        for piece in [1, 7, 50, 4096] {
            let (mut client, server) = tokio::io::duplex(64);
            let to_send = sent.clone();
            let writer = tokio::spawn(async move {
                for part in to_send.chunks(piece) {
                    client.write_all(part).await.expect("write");
                }
                client.shutdown().await.expect("shutdown");
            });
            let (parsed, mut rest) = read_header(server).await.expect("header");
            assert_eq!(parsed.len, header.len());
            assert_eq!(parsed.source, Some("203.0.113.7:56324".parse().unwrap()));
            let mut after = Vec::new();
            rest.read_to_end(&mut after).await.expect("read");
            assert_eq!(after, sent[header.len()..], "pieces of {piece}");
            writer.await.expect("writer");
        }
    }

    #[tokio::test]
    async fn a_connection_without_a_header_or_cut_short_is_refused() {
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(&[3u8; 1537]).await.expect("write"); // plain RTMP
        let err = read_header(server).await.expect_err("no header");
        assert!(
            matches!(err, HeaderReadError::Header(ProxyHeaderError::Missing(_))),
            "{err}"
        );
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(b"PROXY TCP4 203.0.").await.expect("write");
        drop(client);
        let err = read_header(server).await.expect_err("cut short");
        assert_eq!(
            err.to_string(),
            "the connection closed after 17 bytes, before a whole PROXY header"
        );
    }
}
