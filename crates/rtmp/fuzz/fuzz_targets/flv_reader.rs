//! Fuzzes the FLV reader (HTTP-FLV bodies, files) with arbitrary bytes in arbitrary
//! splits. Any panic is a bug; tags read must never exceed the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use longhaul_rtmp::flv::FlvReader;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else { return };
    let mut reader = FlvReader::new();
    let mut payload_total = 0usize;
    for piece in stream.chunks(usize::from(seed) + 1) {
        reader.push(piece);
        loop {
            match reader.next_tag() {
                Ok(Some(tag)) => payload_total += tag.payload.len(),
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert!(payload_total <= stream.len());
});
