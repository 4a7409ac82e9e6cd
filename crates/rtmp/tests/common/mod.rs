//! A tiny RTMP server for integration tests: one connection, driven by `ServerSession`
//! over any async byte stream, answering requests by a fixed policy and recording what
//! the peer did.
#![allow(dead_code)]

use longhaul_rtmp::server::{ConnectRequest, ServerConfig, ServerEvent, ServerSession};
use longhaul_rtmp::RtmpMessage;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How the test server answers.
#[derive(Debug, Clone)]
pub enum Policy {
    /// Accept connect and publish; record media.
    AcceptPublish,
    /// Accept connect, reject publish with this code and description.
    RejectPublish { code: String, description: String },
    /// Accept connect, reject it with this description.
    RejectConnect { description: String },
    /// Accept connect and play, then send these messages.
    Play(Vec<RtmpMessage>),
}

/// What the peer did.
#[derive(Debug, Default)]
pub struct Recorded {
    pub connect: Option<ConnectRequest>,
    /// (stream id, name, type)
    pub publish: Option<(u32, String, String)>,
    pub play: Option<(u32, String)>,
    pub media: Vec<RtmpMessage>,
    pub publish_finished: bool,
    pub play_finished: bool,
    pub peer_closed: bool,
    pub unhandled: Vec<String>,
    /// The session error that ended the connection, if any.
    pub error: Option<String>,
}

pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(mut io: S, policy: Policy) -> Recorded {
    let mut session = ServerSession::new(ServerConfig::default(), Instant::now());
    let mut recorded = Recorded::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !session.output().is_empty() && io.write_all_buf(session.output()).await.is_err() {
            recorded.peer_closed = true;
            break;
        }
        if session.should_close() {
            let _ = io.shutdown().await;
            break;
        }
        let read = match session.poll_timeout() {
            Some(deadline) => {
                match tokio::time::timeout_at(deadline.into(), io.read(&mut buf)).await {
                    Ok(read) => read,
                    Err(_elapsed) => {
                        if let Err(e) = session.handle_timeout(Instant::now()) {
                            recorded.error = Some(e.to_string());
                            break;
                        }
                        continue;
                    }
                }
            }
            None => io.read(&mut buf).await,
        };
        let n = match read {
            Ok(0) | Err(_) => {
                recorded.peer_closed = true;
                break;
            }
            Ok(n) => n,
        };
        let events = match session.handle_input(Instant::now(), &buf[..n]) {
            Ok(events) => events,
            Err(e) => {
                recorded.error = Some(e.to_string());
                break;
            }
        };
        for event in events {
            match event {
                ServerEvent::ConnectRequested { request } => {
                    recorded.connect = Some(request);
                    match &policy {
                        Policy::RejectConnect { description } => {
                            session.reject_connect(description)
                        }
                        _ => session.accept_connect(),
                    }
                }
                ServerEvent::PublishRequested {
                    stream_id,
                    name,
                    publish_type,
                } => {
                    recorded.publish = Some((stream_id, name, publish_type));
                    match &policy {
                        Policy::RejectPublish { code, description } => {
                            session.reject_publish(stream_id, code, description)
                        }
                        _ => {
                            session.accept_publish(stream_id);
                            for event in session.take_events() {
                                if let ServerEvent::Media { message, .. } = event {
                                    recorded.media.push(message);
                                }
                            }
                        }
                    }
                }
                ServerEvent::PlayRequested { stream_id, name } => {
                    recorded.play = Some((stream_id, name));
                    session.accept_play(stream_id);
                    if let Policy::Play(messages) = &policy {
                        for m in messages {
                            session.send_media(stream_id, m);
                        }
                    }
                }
                ServerEvent::Media { message, .. } => recorded.media.push(message),
                ServerEvent::PublishFinished { .. } => recorded.publish_finished = true,
                ServerEvent::PlayFinished { .. } => recorded.play_finished = true,
                ServerEvent::UnhandledCommand { name } => recorded.unhandled.push(name),
            }
        }
    }
    recorded
}
