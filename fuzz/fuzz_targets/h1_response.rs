//! Fuzz target: a local server's response bytes through the gateway's own HTTP/1.1 client:
//! the response head parser, the framing decision and the body decoder.
//!
//! The first byte says whether the request was HEAD and the size of the pieces the rest
//! arrives in. Read in pieces or at once it gives the same head, body and verdict; decoded
//! bodies never exceed the input; a body framed by the close, or by `Transfer-Encoding` next
//! to `Content-Length`, never leaves its connection reusable.
//!
//! The checks are `mcpd::fuzzing::h1_response`; the gateway's unit tests replay the corpus
//! in daemon/tests-data/fuzz/h1_response/ through the same function.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcpd::fuzzing::h1_response(data));
