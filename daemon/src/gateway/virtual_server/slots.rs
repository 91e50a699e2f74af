//! The per-caller cap of a virtual server (`max_calls_per_caller`): how many requests each
//! caller has in flight at its members. A request over the cap is refused at once with a
//! JSON-RPC error ([`super::CALLER_BUSY`]), never queued. A [`Slot`] is held by the answer's
//! body until it has streamed, so it is given back when the answer ends, when the client goes
//! away (the body is dropped), and when the member fails (an error answer holds none). A
//! caller's count is removed at zero: the map holds only callers with requests in flight.
//!
//! Counts are kept under a keyed 64-bit hash of (virtual server, caller), never under
//! strings made for each call; the hash key is random per mcpd, so no one can aim two callers
//! at one count.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Frame, SizeHint};
use http_body_util::Either;

use crate::gateway::conn::BoxError;
use crate::gateway::response::{Body, UpstreamBody};

type Counts = Arc<Mutex<HashMap<u64, u32>>>;

/// The requests in flight per (virtual server, caller).
#[derive(Debug, Default, Clone)]
pub struct Slots {
    counts: Counts,
    hasher: std::collections::hash_map::RandomState,
}

/// One request in flight; given back when dropped.
#[derive(Debug)]
pub struct Slot {
    counts: Counts,
    key: u64,
    /// The call noted for cancellation (`links.rs`), forgotten with the slot.
    call: Option<super::links::CallNote>,
}

impl Slots {
    /// Takes a slot of `caller` on `server`, or says why not (the cap is reached).
    pub fn take(&self, server: &str, caller: impl Hash, cap: u32) -> Result<Slot, String> {
        let key = self.hasher.hash_one((server, caller));
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key).or_insert(0);
        if *count >= cap {
            let refusal = format!(
                "virtual server {server}: this caller already has {count} requests in flight, the most `max_calls_per_caller` allows ({cap}); retry when one has finished"
            );
            return Err(refusal);
        }
        *count += 1;
        Ok(Slot {
            counts: self.counts.clone(),
            key,
            call: None,
        })
    }

    /// How many callers have requests in flight (for tests).
    #[cfg(test)]
    pub fn callers(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Slot {
    /// Holds `call` (its note is forgotten when the slot is given back).
    pub fn hold_call(&mut self, call: Option<super::links::CallNote>) {
        self.call = call;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The answer, holding `slot` until its body has been written or dropped.
pub fn hold(answer: Response<Body>, slot: Slot) -> Response<Body> {
    let (parts, body) = answer.into_parts();
    match body {
        Either::Right(upstream) => {
            let held = Held {
                inner: upstream,
                _slot: slot,
            };
            Response::from_parts(parts, Either::Right(UpstreamBody::local(Box::pin(held))))
        }
        // A whole answer is already read: the request is over.
        full => Response::from_parts(parts, full),
    }
}

struct Held {
    inner: UpstreamBody,
    _slot: Slot,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_over_the_cap_is_refused_and_slots_come_back() {
        let slots = Slots::default();
        let first = slots.take("all", "alice", 2).unwrap();
        let second = slots.take("all", "alice", 2).unwrap();
        let refused = slots.take("all", "alice", 2).unwrap_err();
        assert!(refused.contains("(2)"), "{refused}");
        // Another caller, or another virtual server, has its own count.
        let bob = slots.take("all", "bob", 2).unwrap();
        let other = slots.take("other", "alice", 2).unwrap();
        drop(first);
        let third = slots.take("all", "alice", 2).unwrap();
        drop((second, third, bob, other));
        assert_eq!(slots.callers(), 0, "callers at zero are removed");
    }
}
