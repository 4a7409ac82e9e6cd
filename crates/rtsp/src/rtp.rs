//! RTP packets (placeholder).
