//! # longhaul-rtsp: RTSP ingest, sans IO
//!
//! The product gives every entry RTSP endpoints for devices that do not speak RTMP (IP
//! cameras, some hardware encoders):
//!
//! ```text
//! rtsp://{entryId}.{p|b}.s.{host}:554/kLive/{entryId}_{n}?t={token}
//! ```
//!
//! An encoder publishes there with ANNOUNCE (an SDP describing its tracks), a SETUP per
//! track, then RECORD, and sends RTP: interleaved in the RTSP connection (`$`, channel,
//! length) or over UDP. This crate turns that into the messages the RTMP path carries
//! (FLV tag bodies: legacy for H.264 and AAC, Enhanced RTMP for H.265 and Opus), so an
//! RTSP publish goes through the same authorisation, hub, relay and tunnel as an RTMP
//! one. No Rust crate has the server side of ANNOUNCE/RECORD (retina is a client);
//! `rtsp-types` and `sdp-types` parse the messages, and the rest is built here the way
//! `longhaul-rtmp` is: plain, synchronous, deterministic code, bytes and time in, bytes
//! and events out, fuzzed.
//!
//! ## Layout
//!
//! - [`session`]: [`RtspSession`], the server side of one publishing connection:
//!   requests in, answers and [`RtspEvent`]s out (an ANNOUNCE to decide, a RECORD, the
//!   tracks' interleaved packets, a track set up over UDP). The driver answers its two
//!   questions; `longhaul_node::rtsp_connection` is the one every node runs.
//! - [`sdp`]: the tracks of an ANNOUNCE's SDP (at most one video and one audio).
//! - [`ingest`]: [`RtpIngest`], a recording session's media: per track reordering
//!   (bounded), loss and jitter counted, depacketising, and one millisecond timeline for
//!   the tracks from RTCP sender reports; RTMP messages out.
//! - [`rtp`]: RTP packets and RTCP sender reports (RFC 3550).
//! - [`depacketize`]: RTP payloads to access units and their FLV tag bodies, one module
//!   per codec: H.264 (RFC 6184), H.265 (RFC 7798), AAC (RFC 3640 `AAC-hbr`, and LATM,
//!   RFC 6416), Opus (RFC 7587).
//!
//! `cargo bench -p longhaul-rtsp --bench ingest` measures its cost per core beside the
//! RTMP session's for the same media (BENCHMARKS.md); `fuzz/` holds its fuzz targets.

pub mod depacketize;
pub mod ingest;
pub mod rtp;
pub mod sdp;
pub mod session;

pub use ingest::{RtpIngest, TrackCounts};
pub use rtsp_types::StatusCode;
pub use sdp::{announced_tracks, AnnouncedTrack, SdpError};
pub use session::{
    Answer, RtspEvent, RtspSession, SessionConfig, SessionError, TrackTransport, UdpPorts,
};
