//! # longhaul-rtmp: the RTMP protocol, sans IO
//!
//! Everything longhaul speaks to encoders and players over RTMP lives here, as plain,
//! synchronous, deterministic code: bytes and time in, bytes and events out. The async
//! drivers in the node crates (and [`connection`] here, for clients) only move bytes
//! between sockets and these state machines.
//!
//! ## Layout
//!
//! - [`amf0`]: the AMF0 codec (every type; rml_rtmp's rejects some that encoders send).
//! - [`chunk`]: chunk stream decoder and encoder (one partial message per chunk stream).
//! - [`message`]: [`RtmpMessage`], protocol control builders, commands, aggregates.
//! - [`output`]: [`OutputQueue`], what to write, as shared segments for vectored writes.
//! - [`flv`]: FLV tags (HTTP-FLV out, files and HTTP-FLV bodies in).
//! - [`media`]: keyframe / sequence header / codec inspection of audio and video tags.
//! - [`handshake`]: the C0-C2/S0-S2 handshake (plain and digest), over rml_rtmp's.
//! - [`server`]: [`ServerSession`], what an ingest or playback node runs per connection:
//!   handshake, `connect`, publish and play, timeouts. The driver answers its requests.
//! - [`client`]: [`ClientSession`], the other side, for relay legs and tests.
//! - [`connection`]: tokio drivers of the client over any byte stream ([`Publisher`],
//!   [`Player`]) and [`RtmpUrl`], which splits URLs the way ffmpeg does.
//!
//! Media and data messages travel untouched: payloads are [`bytes::Bytes`] shared by every
//! consumer, and no session rebuilds `@setDataFrame`/`onMetaData` or looks inside a codec.

pub mod amf0;
pub mod chunk;
pub mod message;
pub mod output;

pub mod client;
pub mod connection;
pub mod flv;
pub mod handshake;
pub mod media;
pub mod message_rate;
pub mod server;
mod session_common;
#[cfg(test)]
mod session_tests;
pub mod status;

pub use client::{ClientConfig, ClientEvent, ClientGoal, ClientSession, ClientSessionError};
pub use connection::{ClientError, Player, Publisher, RtmpUrl};
pub use message::RtmpMessage;
pub use output::OutputQueue;
pub use server::{ConnectRequest, ServerConfig, ServerEvent, ServerSession, SessionError};
pub use session_common::{media_parts, MediaParts};
