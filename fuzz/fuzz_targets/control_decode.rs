//! Fuzz target: the control-protocol decoder on arbitrary bytes.
//!
//! Bodies and whole frames, as requests (what the daemon decodes) and responses (what mcpctl
//! decodes). Decoding may fail but never panic, and whatever decodes re-encodes to a frame
//! that decodes to the same message. Replayed by protocol/tests/codec.rs from
//! protocol/tests-data/fuzz/control_decode/.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mcpd_protocol::codec;
use mcpd_protocol::{Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = codec::decode_body::<Request>(data) {
        let frame = codec::encode_frame(&request).expect("a decoded request encodes");
        assert_eq!(
            codec::decode_frame::<Request>(&frame).expect("round trip"),
            request
        );
    }
    if let Ok(response) = codec::decode_body::<Response>(data) {
        let frame = codec::encode_frame(&response).expect("a decoded response encodes");
        assert_eq!(
            codec::decode_frame::<Response>(&frame).expect("round trip"),
            response
        );
    }
    let _ = codec::decode_frame::<Request>(data);
});
