//! How many allocations the per-call steps of a virtual server's forward make on the
//! request's thread: the body spliced for the member, a session id opened before, the caller's
//! slot, and the member's SSE answer relayed. Counted with the test allocator and bounded, so
//! a regression (a parse into a value, a string made per call) shows as a failing count
//! rather than a slower bench.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::BodyExt;

use super::backchannel::{CallerSide, MemberRoute, Relaying, Relays};
use super::opened::Opened;
use super::slots::Slots;
use super::splice;
use crate::alloc_count::allocations;
use crate::envelope;
use crate::gateway::response::UpstreamBody;
use crate::probe_client::Link;
use crate::virtuals::seal::{self, SessionFacts, SessionKey};

const CALL: &[u8] = br#"{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"one_echo","arguments":{"text":"hello"}}}"#;
const SSE_ANSWER: &[u8] = b"data: {\"jsonrpc\":\"2.0\",\"id\":17,\"result\":{\"resultType\":\"complete\",\"content\":[{\"type\":\"text\",\"text\":\"hello\"}],\"isError\":false}}\n\n";
const CALLS: u64 = 200;

fn session_link() -> Link {
    Link::Session {
        id: Some("member-session".into()),
        version: "2025-11-25".into(),
    }
}

/// Allocations per call of `step`, after one warm-up call.
fn per_call(mut step: impl FnMut()) -> f64 {
    step();
    let before = allocations();
    for _ in 0..CALLS {
        step();
    }
    (allocations() - before) as f64 / CALLS as f64
}

#[test]
fn the_forwarded_body_is_one_allocation() {
    let body = Bytes::from_static(CALL);
    let parsed = envelope::parse(&body).unwrap();
    let message = &parsed.messages[0];
    for link in [session_link(), Link::Stateless] {
        let allocated = per_call(|| {
            let out = splice::member_body(&body, message, Some("echo"), &link).expect("a body");
            assert!(out.len() >= CALL.len() - 4);
        });
        assert!(
            allocated <= 1.0,
            "{link:?}: {allocated} allocations per call"
        );
    }
}

#[test]
fn a_session_id_opened_before_and_a_slot_allocate_nothing() {
    let key = SessionKey::from_bytes(&[5; 32]);
    let facts = SessionFacts {
        protocol_version: "2025-11-25".into(),
        principal: seal::principal(None, None),
        issued_at: seal::unix_secs(SystemTime::now()),
        nonce: 1,
        capabilities: 0,
    };
    let id = key.seal("one", &facts);
    let opened = Opened::default();
    let slots = Slots::default();
    let peer: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let allocated = per_call(|| {
        let facts = opened.open(&key, "one", &id, SystemTime::now()).unwrap();
        assert_eq!(facts.nonce, 1);
        let slot = slots.take("one", peer, 16).unwrap();
        drop(slot);
    });
    assert_eq!(allocated, 0.0);
}

#[tokio::test]
async fn an_sse_answer_with_nothing_to_relay_passes_without_allocating() {
    let relays = Arc::new(Relays::default());
    let route = Arc::new(MemberRoute::for_tests(Link::Stateless));
    let caller = CallerSide {
        session: Some(1),
        capabilities: Default::default(),
        stateless: false,
    };
    let mut total = 0;
    for _ in 0..CALLS {
        // The member's answer and the relay around it (made per call, not counted here: the
        // boxing of the answer body is the proxy's, the same on the member's own route).
        let answer = http_body_util::Full::new(Bytes::from_static(SSE_ANSWER))
            .map_err(|never| match never {});
        let upstream = UpstreamBody::local(Box::pin(answer));
        let mut relaying = Relaying::new(upstream, relays.clone(), route.clone(), caller, None);
        let before = allocations();
        let frame = relaying.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), SSE_ANSWER);
        assert!(relaying.frame().await.is_none());
        total += allocations() - before;
        drop(relaying);
    }
    assert_eq!(total, 0, "allocations over {CALLS} answers");
}
