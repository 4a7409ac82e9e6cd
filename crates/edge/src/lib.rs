//! # longhaul-edge: the edge node
//!
//! An edge takes RTMP and RTMPS publishes from encoders near it and forwards each stream
//! over a persistent QUIC tunnel to an origin. Built up module by module:
//!
//! | module | what it holds |
//! |---|---|
//! | [`relay_queue`] | the bounded, sans-IO queue between an encoder's socket and its tunnel stream |

pub mod relay_queue;
