//! Bytes waiting to be written to the peer, as a queue of shared segments.
//!
//! Chunk headers are small owned buffers; payload chunks are zero-copy slices of the
//! message's [`Bytes`]. The queue implements [`bytes::Buf`] with `chunks_vectored`, so a
//! driver hands it to `write_all_buf` and the kernel gathers it in one `writev`.

use bytes::{Buf, Bytes};
use std::collections::VecDeque;
use std::io::IoSlice;

#[derive(Debug, Default)]
pub struct OutputQueue {
    segments: VecDeque<Bytes>,
    len: usize,
}

impl OutputQueue {
    pub fn new() -> Self {
        Self::default()
    }
    /// Appends a segment; empty segments are ignored.
    pub fn push(&mut self, segment: Bytes) {
        if !segment.is_empty() {
            self.len += segment.len();
            self.segments.push_back(segment);
        }
    }
    /// Total bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Copies everything queued into one buffer (tests and small control traffic).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for s in &self.segments {
            v.extend_from_slice(s);
        }
        v
    }
}

impl Buf for OutputQueue {
    fn remaining(&self) -> usize {
        self.len
    }
    fn chunk(&self) -> &[u8] {
        self.segments.front().map(|s| &s[..]).unwrap_or(&[])
    }
    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, seg) in dst.iter_mut().zip(self.segments.iter()) {
            *slot = IoSlice::new(seg);
            n += 1;
        }
        n
    }
    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len, "advance past end of OutputQueue");
        self.len -= cnt;
        while cnt > 0 {
            let front = self.segments.front_mut().expect("len accounted");
            if cnt >= front.len() {
                cnt -= front.len();
                self.segments.pop_front();
            } else {
                front.advance(cnt);
                cnt = 0;
            }
        }
    }
}
