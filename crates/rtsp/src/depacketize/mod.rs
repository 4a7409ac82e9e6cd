//! RTP payloads to frames (placeholder: see the crate docs).
