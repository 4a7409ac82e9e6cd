//! Fuzzes the AMF0 decoder; whatever decodes must re-encode and decode to the same value.
//! The same input is read as stream metadata too (`media::declared_figures`): no panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use longhaul_rtmp::{amf0, media};

fuzz_target!(|data: &[u8]| {
    let _ = media::declared_figures(data);
    let mut rest = data;
    while !rest.is_empty() {
        let Ok(v) = amf0::decode(&mut rest) else {
            return;
        };
        let mut out = BytesMut::new();
        amf0::encode(&v, &mut out);
        let again = amf0::decode_all(&out).expect("re-encoded value decodes");
        // NaN != NaN: compare the encodings instead of the values.
        let mut out2 = BytesMut::new();
        amf0::encode_all(&again, &mut out2);
        assert_eq!(out, out2, "encode(decode(encode(v))) differs");
        assert_eq!(again.len(), 1);
    }
});
