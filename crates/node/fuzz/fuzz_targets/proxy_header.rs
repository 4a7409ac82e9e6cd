//! Fuzzes the PROXY protocol header parser with whatever a socket may start with. Any
//! panic is a bug. A whole header must fit in the input and under the caps, and must be
//! read the same from any longer input (what follows it is the client's, not the
//! header's); every prefix of an input that parses must ask for more, never fail.
#![no_main]

use libfuzzer_sys::fuzz_target;
use longhaul_node::proxy_header::{parse, MAX_LEN, V1_MAX_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(header)) = parse(data) else {
        return;
    };
    assert!(header.len <= data.len() && header.len <= MAX_LEN, "{header:?}");
    assert!(header.version == 2 || header.len <= V1_MAX_LEN, "{header:?}");
    let mut longer = data[..header.len].to_vec();
    longer.extend_from_slice(b"\x03 and what follows");
    assert_eq!(parse(&longer), Ok(Some(header)));
    for cut in 0..header.len {
        assert_eq!(parse(&data[..cut]), Ok(None), "{cut} of {header:?}");
    }
});
