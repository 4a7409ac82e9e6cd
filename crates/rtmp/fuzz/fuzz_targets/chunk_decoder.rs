//! Fuzzes the chunk decoder with arbitrary bytes fed in arbitrary splits, then every
//! parser that sees peer data (commands, AMF0, aggregates, media inspection) with each
//! message it produces. Any panic is a bug: peer input must only ever produce errors.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use longhaul_rtmp::chunk::{ChunkDecoder, DecoderLimits};
use longhaul_rtmp::message::{split_aggregate, Command, RtmpMessage};
use longhaul_rtmp::{amf0, media};

fn inspect(m: &RtmpMessage) {
    let _ = Command::parse(m);
    let _ = amf0::decode_all(&m.payload);
    let _ = media::inspect_video(&m.payload);
    let _ = media::inspect_audio(&m.payload);
    if let media::DataKind::Metadata { body_offset } = media::inspect_data(&m.payload) {
        // The offset must be usable as a slice start.
        let _ = m.payload.slice(body_offset..);
    }
    if let Ok(parts) = split_aggregate(m) {
        for p in &parts {
            let _ = media::inspect_video(&p.payload);
            let _ = media::inspect_audio(&p.payload);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // First byte: split seed; the rest: the stream. Small limits so they get hit.
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let limits = DecoderLimits {
        max_partial_streams: 4,
        max_high_chunk_streams: 4,
        max_buffered_bytes: 1 << 16,
        ..DecoderLimits::default()
    };
    let mut dec = ChunkDecoder::new(limits);
    let mut input = BytesMut::new();
    let mut pos = 0;
    let mut step = usize::from(seed % 64) + 1;
    while pos < stream.len() {
        let n = step.min(stream.len() - pos);
        input.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
        step = (step * 7 + usize::from(seed)) % 97 + 1;
        loop {
            match dec.decode(&mut input) {
                Ok(Some(m)) => inspect(&m),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert!(dec.bytes_received() + input.len() as u64 == stream.len() as u64);
});
