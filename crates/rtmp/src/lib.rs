//! # longhaul-rtmp: the RTMP protocol, sans IO
//!
//! Everything longhaul speaks to encoders and players over RTMP lives here, as plain,
//! synchronous, deterministic code: bytes and time in, bytes and events out. The async
//! drivers in the node crates (and [`connection`] here, for clients) only move bytes
//! between sockets and these state machines.
//!
//! (Layout and details are filled in with the implementation.)

pub mod amf0;
pub mod chunk;
pub mod message;
pub mod output;

pub use message::RtmpMessage;
pub use output::OutputQueue;
pub mod client;
pub mod connection;
pub mod flv;
pub mod handshake;
pub mod media;
pub mod server;
mod session_common;
#[cfg(test)]
mod session_tests;
