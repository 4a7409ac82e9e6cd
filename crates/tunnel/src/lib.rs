//! # longhaul-tunnel: persistent, multiplexed QUIC tunnels from edges to origins
//!
//! An edge near the encoders keeps one QUIC connection open to each origin, from start-up
//! on, and carries every stream it takes over it. The connection is already past its
//! handshake and slow start when a publish arrives, runs a congestion controller chosen
//! for long lossy paths (BBR by default), and multiplexes streams so one lost packet
//! holds up only the stream it belonged to.
//!
//! ```text
//!  edge                                                   origin
//!  TunnelClient ══════════ one QUIC connection (mTLS) ═══════ serve() → TunnelService
//!    stream 0 (bidi): control   hello ⇄ hello, report ⇄ report,
//!                               authorise → verdict, ...
//!    stream 4 (bidi): publish   header, media, media, ...  →
//!                                                          ←  end (optional)
//!    stream 8 (bidi): publish   ...
//! ```
//!
//! ## Wire format, version 1
//!
//! The version is the ALPN: [`ALPN`] = `longhaul-tunnel/1`. A change that an older peer
//! cannot read gets a new ALPN, and nodes offer both during an upgrade. Additions that an
//! older peer can skip (new message types, new optional fields) do not.
//!
//! Every stream is a sequence of **frames**: `kind: u8`, `length: u32` (big endian), then
//! `length` bytes of body.
//! - kind `0`: a **message**, the body a JSON object tagged by `"type"` (at most 64 KiB).
//!   Receivers skip types they do not know.
//! - kind `1..=255`: an **RTMP message** of that type id (8 audio, 9 video, 18 data, ...),
//!   the body its `timestamp: u32` (big endian, milliseconds) then its payload, unchanged
//!   (at most 16 MiB). Nine bytes of framing per message.
//!
//! **Control stream**: the first bidirectional stream, opened by the edge.
//! 1. edge → origin `{"type":"hello","node_id","region","role":"edge","version","lane"}`;
//!    origin → edge the same with `"role":"origin"`. Nothing else before the hellos.
//!    `lane` (absent: 0) tells an edge's tunnels to one origin apart: a sharded edge
//!    keeps one per shard, and the origin keeps one link per (edge, lane); a second
//!    connection on the same lane replaces the first (the edge restarted).
//! 2. Both ways, every `report_interval_ms`: `{"type":"report","healthy","publishers",
//!    "connections","draining"}`. `healthy`: the node takes new work (an origin: its
//!    registry is reachable and it is not shutting down); `draining` (absent: false): it
//!    is shutting down. The edge's router (`longhaul_router`) reads them; the transport
//!    only carries them.
//! 3. edge → origin `{"type":"authorise","id","app","tc_url","name","leg","client_addr",
//!    "transport"}`, answered by `{"type":"verdict","id","verdict":"allowed","grant",
//!    "stream_name","generation"}` or `{"type":"verdict","id","verdict":"refused","code",
//!    "reason","description"}`. Requests may overlap; `id` pairs them. `generation` (the
//!    token generation the publish was authorised with) may be absent.
//! 4. origin → edge `{"type":"revoke","entry_id","before_generation","code","reason",
//!    "description"}`: cut the live publishes of `entry_id` authorised with a generation
//!    before `before_generation` (absent: all of them), telling each encoder
//!    `description`. Sent when an entry's token is regenerated or the entry deleted,
//!    wherever that happened; an edge cuts the streams it relays to any origin.
//!
//! Draining needs no message of its own: an origin that drains sends a report with
//! `draining` at once, and refuses authorisations with reason `origin_draining`
//! ([`wire::DRAINING_REASON`]). Later additions go here, skippable by older peers.
//!
//! **Publish stream**: one bidirectional stream per published stream, opened by the edge
//! after an `allowed` verdict. Edge → origin: `{"type":"publish","grant","stream_name",
//! "client_addr"}`, then RTMP message frames as they arrive from the encoder; the edge
//! finishes the stream when the encoder unpublishes. Origin → edge: nothing, or one
//! `{"type":"end","code","description"}` when the origin ends the stream (taken over,
//! unknown grant), which the edge passes to the encoder as an RTMP status.
//!
//! **Pull stream** (origin peering): one bidirectional stream per leg an origin wants
//! from a peer origin, opened on its own tunnel to that peer. Its hello says
//! `"role":"origin"`, and the peer lets it in only if its node id is one of the peer's
//! configured peers and its certificate is valid for that peer's name (origins'
//! certificates are issued for `clientAuth` as well); such a tunnel may open pull
//! streams only, and its authorisations are refused. Asker → peer:
//! `{"type":"pull","stream_name","leg"}`, then nothing; the asker finishes its side to
//! leave. Peer → asker: `{"type":"leg_live"}` each time a publication of that leg made
//! at the peer starts (at once if one is live), then its RTMP message frames as a player
//! would get them (configuration, GOP, live), and `{"type":"leg_gone"}` when it ends; or
//! one `end` refusing the pull. Version 1 framing, on either wire version. A pulled leg
//! is never served on to another peer.
//!
//! Application close and stream error codes are in [`codes`].
//!
//! ## Wire format, version 2
//!
//! [`ALPN_V2`] = `longhaul-tunnel/2`: a publish survives the loss of its stream (a tunnel
//! lost, an origin ending it, the router moving the leg) without the encoder noticing.
//! Everything of version 1 stays as it is; on top of it ([`wire::WireVersion::V2`]):
//!
//! - kind `0xf0`: a **sequenced RTMP message**, the body `seq: u64`, `type_id: u8`
//!   (never 0), `timestamp: u32` (big endian), then the payload. Eighteen bytes of
//!   framing per message (nine more than version 1: 0.1 % of a 6 Mbit/s stream).
//! - kind `0xf1`: an **acknowledgement**, the body `seq: u64`, exactly 8 bytes.
//! - kinds `0xf2..=0xff`: reserved, refused. Kinds `1..=0xef` are RTMP messages as in
//!   version 1 (no RTMP message type id is above 22).
//!
//! **Publish stream.** The header gains `"publication"` (a random `u64` the edge gives
//! the encoder's publish, the same on every stream that carries it) and, on a resumed
//! stream, `"resume_from"` (the seq of the first sequenced frame to follow). Edge →
//! origin after the header: every RTMP message as a sequenced frame, numbered from 0 for
//! the publication and going on across streams. A resumed stream first carries the
//! configuration in force as plain (unsequenced) RTMP message frames: metadata, then the
//! sequence headers; then sequenced frames from `resume_from`: after the last one this
//! origin acknowledged of the publication, or, for an origin that acknowledged none of it
//! (the router moved the leg there), from the keyframe before the first frame no origin
//! acknowledged. Origin → edge: acknowledgements, each saying every seq up to its own is
//! in the hub (or dropped there as seen before or past a gap), sent
//! [`dedupe::ACK_EVERY`] frames or [`dedupe::ACK_DELAY`] after the first unacknowledged
//! one, whichever is first; on a resumed stream of a publication it holds, one at once
//! with what it has. Binary, not JSON: they go up to twenty times a second on every
//! publish stream. `end` is as in version 1, with `"retry": true` when the end is the
//! origin's rather than the publish's (the edge then resumes the publish elsewhere
//! instead of telling the encoder).
//!
//! **Resuming.** The edge keeps what the origin has not acknowledged and the current
//! group of pictures ([`retain`]; bounded in bytes and frames, cut only at keyframes,
//! configuration in force kept aside). When the
//! stream dies (or the router moves it) it authorises the publish again (at the origin
//! the router picks) and opens a stream with the same `publication` and `resume_from`. An origin whose hub holds a
//! publication of that `stream_name` with that `publication` continues it (players stay
//! attached, timestamps stay monotonic) and drops the frames it has seen ([`dedupe`]);
//! after a gap (frames the edge could not keep) it delivers from the next keyframe only.
//!
//! ## Modules
//!
//! | module | what it holds |
//! |---|---|
//! | [`wire`] | frames and messages, sans IO (fuzzed) |
//! | [`retain`] | the edge's unacknowledged frames of a publish, for a resume (v2) |
//! | [`dedupe`] | the origin's admission of a resumed publish's frames, and its acks (v2) |
//! | [`class`] | what a media frame is to a resume: configuration, keyframe, ... |
//! | [`client`] | the reconnecting tunnel to one origin (an edge's, or a peer origin's) |
//! | [`server`] | the origin's accept loop and the [`server::TunnelService`] it calls |
//! | [`settings`] | config sections and transport tunables, with their reasons |
//! | [`tls`] | mutual TLS on a cluster CA, one role per certificate, reloadable; the deny list |
//! | [`endpoint`] | UDP sockets with sized buffers, QUIC endpoints |
//! | [`link`] | per-tunnel state and counters, across reconnects |
//! | [`metrics`] | the Prometheus collector |
//! | [`backoff`] | capped exponential backoff with full jitter |
//! | [`pki`] | a cluster CA and origin or edge certificates made on the spot (dev, tests) |

pub mod backoff;
pub mod class;
pub mod client;
pub mod dedupe;
pub mod endpoint;
pub mod link;
pub mod metrics;
pub mod pki;
pub mod probe_rtt_hold;
pub mod retain;
pub mod server;
pub mod settings;
mod stream;
pub mod tls;
pub mod wire;

pub use client::{
    EdgeHooks, EndSignal, LoadFn, PublishEnd, PublishSender, PullReceiver, Pulled, RevokeFn,
    TunnelClient,
};
pub use endpoint::{client_endpoint, server_endpoint};
pub use link::{LinkSnapshot, PathSample, TunnelSet, TunnelState};
pub use metrics::TunnelCollector;
pub use server::{
    check_node_names, Incoming, IncomingPublish, MediaReceiver, OutgoingPull, PeerInfo, PeerRole,
    PublishEnder, PullAsker, PullSender, TunnelService,
};
pub use settings::{
    ClusterTlsPaths, Congestion, OriginPeer, TransportSettings, TunnelListenSection, TunnelSection,
};
pub use stream::TunnelError;
pub use tls::{EdgeTls, OriginTls};
pub use wire::{
    AuthoriseRequest, Hello, LoadReport, MediaFrame, PublishHeader, PullHeader, Revocation,
    SequencedFrame, StreamEnd, Verdict, WireVersion,
};

/// The ALPN of wire format version 1.
pub const ALPN: &[u8] = b"longhaul-tunnel/1";
/// The ALPN of wire format version 2: sequenced media and acknowledgements on publish
/// streams, so a publish resumes on another stream (see "Wire format, version 2").
pub const ALPN_V2: &[u8] = b"longhaul-tunnel/2";
/// Every version this build can speak, the preferred first: what a node offers during an
/// upgrade. Not yet what [`tls`] negotiates: the drivers speak version 1 only until they
/// are wired to `retain` and `dedupe`.
pub const ALPNS: &[&[u8]] = &[ALPN_V2, ALPN];

/// QUIC application error codes, in connection closes and stream stops.
pub mod codes {
    /// A node shutting down, or a stream ended on purpose.
    pub const NORMAL: u32 = 0;
    /// The peer broke the wire format or the protocol.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// A publish stream given up on before its end (stalled, aborted): reset, not finished.
    pub const CANCELLED: u32 = 2;
    /// The edge's certificate is on the origin's deny list (`tunnel.denied_certificates`):
    /// the origin closes the connection right after the handshake, or the live tunnel
    /// when the fingerprint is added.
    pub const DENIED: u32 = 3;
}

/// quinn send priority of the control stream; publish streams keep the default 0. quinn
/// sends the highest-priority stream's pending data first, so verdicts and reports are
/// never queued behind media.
///
/// Audio is not given a stream of its own ahead of video, on purpose. A publish is one
/// ordered QUIC stream carrying the encoder's messages as it interleaved them, so the
/// origin's players get audio and video in the order a direct publish gives them, and
/// the hub's GOP cache, takeover and timestamp rules see one timeline. Audio is 2 % of
/// a 6 Mbit/s stream's bytes: under congestion it is not what waits; under loss what
/// waits is everything behind a lost packet until it is repaired (head-of-line), which
/// a separate audio stream would spare audio alone while the video tail stays (in the
/// long-haul benchmark the p99 of video frames and of all frames differ by under 5 %).
/// Priority among publishes of one tunnel is equal: one encoder's stream is not more
/// urgent than another's.
pub const CONTROL_PRIORITY: i32 = 1;

/// This build's version, sent in hellos.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
