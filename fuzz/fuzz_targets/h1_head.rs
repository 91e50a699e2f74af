//! Fuzz target: the hand HTTP/1.1 head parser and its decision to handle a request by hand
//! (the gateway's client-facing fast path; anything else goes to hyper).
//!
//! The input is the bytes a client sent. The parser never panics; a head it handles by hand
//! reads the same in an independent strict reading and in `httparse`, is plainly framed, and
//! no shorter prefix of it is handled by hand.
//!
//! The checks are `mcpd::fuzzing::h1_head`; the gateway's unit tests replay the corpus in
//! daemon/tests-data/fuzz/h1_head/ through the same function.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mcpd::fuzzing::h1_head(data));
