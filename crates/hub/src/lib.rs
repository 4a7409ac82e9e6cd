//! # longhaul-hub: live streams, the GOP cache and fan-out
//!
//! Every longhaul node keeps its live streams here. An encoder's connection task
//! *publishes* a stream and pushes each RTMP media and data message into the hub; the
//! RTMP and HTTP-FLV players' tasks *subscribe* to a stream and receive those messages.
//! The hub knows nothing of sockets or protocols: it only decides what each player
//! gets and when, so that
//!
//! - a new player starts playing at once: it first gets the stream's metadata, every
//!   sequence header, and the current GOP from its keyframe (the *GOP cache*), then
//!   live messages, with no gap and no duplicate between the two;
//! - one slow player never slows the publisher or the other players;
//! - a new publication of a stream that is still live *takes it over*: the attached
//!   players carry on with the new publisher's headers and media, on a timeline that
//!   keeps going forward (see "Takeover" below for when this applies to a reconnecting
//!   encoder, and when it does not).
//!
//! - a player of a rendition gets one continuous stream from its two legs: the primary
//!   while it is healthy, the backup while it is not, switched without the player
//!   noticing (see "Renditions" below).
//!
//! ## Main types
//!
//! - [`Hub`]: the map of live streams by [`StreamKey`] (stream name plus [`Leg`],
//!   primary or backup). Cheap to clone.
//! - [`Publication`] (from [`Hub::publish`]): [`Publication::push`] a message;
//!   [`Publication::taken_over`] resolves when another connection publishes the same
//!   key (the hub answers [`PublishOutcome::TookOver`] to that one); dropping it ends
//!   the stream and its players get [`PlayerEvent::Ended`].
//! - [`Subscription`] (from [`Hub::subscribe`]: by default the rendition's on-air stream,
//!   or one leg by [`LegChoice`]): [`Subscription::recv`] yields [`PlayerEvent`]s.
//! - [`RenditionSummary`] (from [`Hub::renditions`]): which leg is on air, the switches.
//! - [`StreamSummary`] (from [`Hub::streams`]): per-stream figures for metrics and the API.
//!
//! ## What the hub does with a message
//!
//! Each pushed message is classified with `longhaul_rtmp::media`: metadata
//! (`@setDataFrame` stripped: the stored and forwarded message is
//! `payload.slice(body_offset..)`, a refcount bump), a sequence header (kept per audio or
//! video, codec and track), a video keyframe (opens a new GOP in the cache) or anything
//! else (appended to the current GOP).
//!
//! The configuration (metadata and sequence headers) is bounded, since every new player
//! gets all of it: at most [`CONFIG_MAX_SLOTS_PER_KIND`] header slots per kind, no
//! message over [`CONFIG_MESSAGE_MAX_BYTES`], [`CONFIG_MAX_BYTES`] in all. A
//! configuration message beyond these is *refused*: neither stored nor forwarded,
//! counted in [`StreamSummary::config_refused`], and the first refusal on a stream is
//! logged at warn with its key. A new player's snapshot (configuration plus GOP cache)
//! therefore always fits in its queue, with room for live messages.
//!
//! Messages are otherwise forwarded untouched: the
//! payload [`bytes::Bytes`] is shared by the GOP cache and every player, never copied.
//! Timestamps are forwarded exactly as the encoder sent them on a stream that never
//! saw a takeover. After a takeover they are rebased by a constant offset (below), so
//! on that stream they are the current encoder's timestamps plus
//! [`StreamSummary::timestamp_offset`]; anything downstream that compares one leg's
//! timing with the other leg's (a separate stream, with its own offset) must allow for
//! it.
//!
//! The classification, configuration and GOP cache live in a plain synchronous
//! `StreamState`, and the per-player policy in a synchronous `PlayerQueue`, both tested
//! without tokio; the async parts (a mutex per stream, a `Notify` per player) are thin.
//!
//! ## Fan-out and the slow-player policy
//!
//! Every player has its own bounded queue ([`PLAYER_QUEUE_MAX_MESSAGES`] messages,
//! [`PLAYER_QUEUE_MAX_BYTES`] payload bytes). The publisher, under the stream's lock,
//! appends each message to each queue (a refcount bump and a `VecDeque` push, never a
//! wait) and wakes the player's task only when its queue was empty. Per-player queues
//! rather than one `tokio::sync::broadcast` ring, because
//!
//! - the skip decision is made when the message is offered, so a lagging player can be
//!   moved exactly to the next keyframe with the right headers; a broadcast receiver
//!   only learns it lagged after the ring overwrote its place, and must then scan for
//!   a keyframe that may already have scrolled out of the ring;
//! - a queue holds only what its player has not read, while a broadcast ring pins its
//!   last N messages for every stream even when every player is caught up;
//! - a new player's snapshot (configuration + GOP) is simply its queue's first entries.
//!
//! The cost is O(players) cheap steps per published message on the publisher's task;
//! `benches/fanout.rs` measures it: publisher and 100 draining players on one core
//! deliver about 18 million messages/s (~54 ns per message per player) with a 25 fps,
//! 10-20 KB-per-frame stream.
//!
//! When a message arrives for a player whose queue is full, the player is *skipped*:
//! its queue is emptied and it drops every message up to the next keyframe (on a
//! stream without video, the next audio frame). There it gets
//! [`PlayerEvent::Skipped`] with the number of messages it lost, the metadata and
//! sequence headers again if any changed or were among the lost messages, and resumes
//! on the keyframe: never mid-GOP. A player skipped [`PLAYER_MAX_SKIPS`] times within
//! [`PLAYER_SKIP_WINDOW`] is dropped ([`PlayerEvent::Dropped`]) so that its connection
//! can be closed. A new player that joins while no GOP is cached (none yet, or the
//! current one outgrew [`GOP_CACHE_MAX_BYTES`] / [`GOP_CACHE_MAX_MESSAGES`]) likewise
//! waits for the next keyframe, without a `Skipped` report.
//!
//! ## Takeover
//!
//! Publishing a key that is live takes it over: the old publication's pushes fail
//! with [`TakenOver`] and its [`Publication::taken_over`] resolves so its task can
//! close the old socket; the old publisher's metadata, headers and GOP are forgotten;
//! the players stay attached and receive the new publisher's headers and media as
//! they arrive. (An encoder starts with headers and a keyframe, so players carry on.)
//!
//! The new encoder starts its own clock (OBS and ffmpeg start at 0), so forwarding its
//! timestamps as sent would make them jump back by however long the old one ran,
//! which stalls flv.js/mpegts.js players and makes `ffmpeg -c copy` reject
//! non-monotonic DTS. Instead, when the new publication's first message arrives, the
//! hub sets an offset that puts it [`TAKEOVER_TIMESTAMP_STEP_MS`] (1 ms) after the
//! highest timestamp forwarded on the stream so far, and adds that offset (wrapping,
//! like RTMP timestamps) to every message of the publication before it is cached or
//! forwarded: a new `RtmpMessage` around the same shared payload, no copy. The new
//! publisher's own spacing is kept; the wall-clock gap of the reconnect is not in
//! the timeline (players see a short underrun, not a jump); new players get the
//! rebased configuration and GOP, on the same timeline as attached players. The new
//! encoder's own interleave is forwarded as it is: if its first message is a video
//! frame and its first audio frame is stamped earlier, that audio lands before the
//! continuation point by the same amount.
//!
//! Whether a *reconnecting encoder* benefits depends on which connection the hub hears
//! about first. A takeover only happens while the old publication still exists: when
//! the old TCP connection is half-open on our side (the encoder's host lost its
//! network, crashed or changed address, and no FIN or RST reached us), until the
//! connection layer gives up on it (in the origin, the session's media timeout). If
//! the encoder closed the old connection and its FIN or RST reached us before the new
//! publish, the old publication was dropped first: the stream ended, its players got
//! [`PlayerEvent::Ended`] (and must subscribe again), and the new publish starts a new
//! stream ([`PublishOutcome::New`], timestamps as sent, counters from zero).

//! ## Renditions
//!
//! Encoders that want redundancy publish each rendition twice, a primary and a backup
//! leg: two streams in the hub. Each name with a live leg also has an *on-air* stream,
//! with its own configuration, GOP cache, timeline and players, fed from whichever leg
//! `on_air` picks: the primary while it has sent media within the silence limit
//! ([`OnAirSettings`], 500 ms by default), else the backup; back to a recovered primary
//! only after it has been healthy for the failback time (10 s), at a keyframe. Every
//! message of a leg is offered to its rendition after the leg's own players, under the
//! rendition's lock (`rendition`). A switch happens on a keyframe of the leg going on
//! air, its headers sent first where they differ, or at once *in sync*: when that leg's
//! GOP cache holds the very video frame (same timestamp, same bytes) the players got
//! last, which is the case for one encode sent to both legs (ffmpeg's `tee`), what
//! follows it is forwarded with no keyframe to wait for and nothing twice. Timestamps go
//! on: a leg on the same clock keeps its own; one behind, or far ahead, is rebased as
//! after a takeover ([`LEG_CLOCK_TOLERANCE_MS`]). The on-air stream ends when both legs
//! have. A player asks for one leg by name (`{name}.p`, `{name}.b`:
//! [`LegChoice::from_play_name`]).
//!
//! The cost: each published message is classified and stored twice, for its leg and
//! for the on-air stream (a refcount, not a copy, of its payload); the per-player work
//! is unchanged.

mod classify;
mod config;
mod event;
mod gop;
mod health;
mod hub;
mod key;
mod on_air;
mod player_queue;
mod publication;
mod rendition;
mod state;
mod stats;
mod stream;
mod subscription;
mod timeline;

#[cfg(test)]
mod testutil;

pub use config::{CONFIG_MAX_BYTES, CONFIG_MAX_SLOTS_PER_KIND, CONFIG_MESSAGE_MAX_BYTES};
pub use event::{DropReason, PlayerEvent};
pub use gop::{GOP_CACHE_MAX_BYTES, GOP_CACHE_MAX_MESSAGES};
pub use health::{HealthFigures, RATE_WINDOW_SECONDS, TIMESTAMP_JUMP_MS, TRACK_PRESENT_WITHIN};
pub use hub::Hub;
pub use key::{Leg, LegChoice, StreamKey};
pub use on_air::{OnAirSettings, SwitchReason, DEFAULT_FAILBACK_AFTER, DEFAULT_SILENCE};
pub use player_queue::{
    PLAYER_MAX_SKIPS, PLAYER_QUEUE_MAX_BYTES, PLAYER_QUEUE_MAX_MESSAGES, PLAYER_SKIP_WINDOW,
};
pub use publication::{Publication, PublishOutcome, TakenOver};
pub use rendition::RECENT_SWITCHES;
pub use stats::{
    OnAirTotals, PublisherInfo, RecentSwitch, RenditionSummary, StreamSummary, SwitchCount,
};
pub use subscription::Subscription;
pub use timeline::{LEG_CLOCK_TOLERANCE_MS, TAKEOVER_TIMESTAMP_STEP_MS};
