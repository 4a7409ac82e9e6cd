//! Fuzzes the tunnel's frame decoder with whatever a peer may put on a stream, pushed in
//! pieces whose sizes come from the input too, in wire version 1 or 2 (the first byte's
//! top bit). Any panic is a bug; the decoder must never hold more than one frame's worth
//! plus one push, and a decoded media, sequenced or acknowledgement frame re-encodes to
//! bytes that decode to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use longhaul_tunnel::wire::{
    encode_ack, encode_media, encode_message, encode_sequenced, Frame, FrameDecoder,
    WireVersion, FRAME_HEADER_LEN, MAX_MEDIA_LEN, SEQUENCED_PREFIX_LEN,
};

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let version = if first & 0x80 != 0 {
        WireVersion::V2
    } else {
        WireVersion::V1
    };
    let step = usize::from(first & 0x7f).max(1);
    let mut decoder = FrameDecoder::with_version(version);
    for piece in rest.chunks(step) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let bytes = match &frame {
                        Frame::Message(m) => encode_message(m),
                        Frame::Media(m) => encode_media(m),
                        Frame::Sequenced(s) => encode_sequenced(s.seq, &s.frame),
                        Frame::Ack(seq) => encode_ack(*seq).to_vec().into(),
                    };
                    let mut again = FrameDecoder::with_version(version);
                    again.push(&bytes);
                    if !matches!(frame, Frame::Message(_)) {
                        assert_eq!(again.next_frame(), Ok(Some(frame)));
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(
            decoder.buffered() <= FRAME_HEADER_LEN + MAX_MEDIA_LEN + SEQUENCED_PREFIX_LEN + step
        );
    }
});
