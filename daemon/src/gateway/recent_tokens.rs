//! The tokens a gateway worker thread verified last, with their claims: the first place a
//! token is looked up, before the shared verified-token cache (`token_cache`).
//!
//! A client sends the same token with every request of its connection. Comparing it with the
//! few this thread saw last costs a pass over its bytes; the shared cache first hashes it with
//! SHA-256 and takes a shard's lock. Entries are compared in full and in constant time (every
//! byte of a same-length entry is read, whatever differs), so a client timing its own
//! requests learns nothing of another client's token. Each entry names the authenticator that
//! verified it (its generation), so a reload, which builds a new one, retires every entry.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::auth::Claims;

/// Tokens remembered per thread.
const SLOTS: usize = 4;

/// A new generation for each authenticator built (never 0, which no entry holds).
pub fn next_generation() -> u64 {
    static GENERATION: AtomicU64 = AtomicU64::new(1);
    GENERATION.fetch_add(1, Ordering::Relaxed)
}

struct Entry {
    generation: u64,
    /// Reused by the token that takes the slot: with more clients than slots, every request
    /// replaces an entry, and that costs no allocation once the slot's buffer is long
    /// enough.
    token: Vec<u8>,
    claims: Arc<Claims>,
    /// Unix seconds after which the entry is no longer served.
    until: u64,
}

/// The last [`SLOTS`] tokens verified, replaced oldest first.
#[derive(Default)]
pub struct RecentTokens {
    slots: [Option<Entry>; SLOTS],
    next: usize,
}

impl RecentTokens {
    /// The claims of `token` if it was put here by the authenticator of `generation` and is
    /// still valid at `now` (Unix seconds).
    pub fn get(&self, generation: u64, token: &[u8], now: u64) -> Option<Arc<Claims>> {
        self.slots.iter().flatten().find_map(|entry| {
            (entry.generation == generation
                && same_bytes(&entry.token, token)
                && entry.until >= now)
                .then(|| entry.claims.clone())
        })
    }

    /// Remembers `token`'s claims until `until`, in place of the oldest entry.
    pub fn put(&mut self, generation: u64, token: &[u8], claims: Arc<Claims>, until: u64) {
        match &mut self.slots[self.next] {
            Some(entry) => {
                entry.generation = generation;
                entry.token.clear();
                entry.token.extend_from_slice(token);
                entry.claims = claims;
                entry.until = until;
            }
            empty => {
                *empty = Some(Entry {
                    generation,
                    token: token.to_vec(),
                    claims,
                    until,
                });
            }
        }
        self.next = (self.next + 1) % SLOTS;
    }
}

/// `a == b`, reading every byte when the lengths agree: the time taken does not say where
/// the first difference is. (A length is not secret: a JWT's follows from its claims.)
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

thread_local! {
    static RECENT: RefCell<RecentTokens> = RefCell::new(RecentTokens::default());
}

/// [`RecentTokens::get`] on this thread's entries.
pub fn get(generation: u64, token: &[u8], now: u64) -> Option<Arc<Claims>> {
    RECENT.with(|recent| recent.borrow().get(generation, token, now))
}

/// [`RecentTokens::put`] on this thread's entries.
pub fn put(generation: u64, token: &[u8], claims: Arc<Claims>, until: u64) {
    RECENT.with(|recent| recent.borrow_mut().put(generation, token, claims, until));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(subject: &str) -> Arc<Claims> {
        Arc::new(Claims {
            subject: Some(subject.into()),
            ..Claims::default()
        })
    }

    fn subject(claims: Option<Arc<Claims>>) -> Option<String> {
        claims.and_then(|claims| claims.subject.clone())
    }

    #[test]
    fn a_token_is_served_only_whole_to_its_own_generation_until_it_expires() {
        let mut recent = RecentTokens::default();
        recent.put(7, b"aaa.bbb.ccc", claims("alice"), 1_000);
        assert_eq!(
            subject(recent.get(7, b"aaa.bbb.ccc", 1_000)),
            Some("alice".into())
        );
        assert!(recent.get(7, b"aaa.bbb.ccc", 1_001).is_none(), "expired");
        assert!(
            recent.get(8, b"aaa.bbb.ccc", 900).is_none(),
            "another authenticator"
        );
        for other in [
            &b"aaa.bbb.ccd"[..],
            b"aaa.bbb.cc",
            b"aaa.bbb.ccc.",
            b"baa.bbb.ccc",
            b"",
        ] {
            assert!(recent.get(7, other, 900).is_none(), "{other:?}");
        }
    }

    #[test]
    fn the_oldest_entry_makes_room() {
        let mut recent = RecentTokens::default();
        for i in 0..=SLOTS {
            recent.put(
                1,
                format!("token-{i}").as_bytes(),
                claims(&i.to_string()),
                10,
            );
        }
        assert!(recent.get(1, b"token-0", 1).is_none());
        for i in 1..=SLOTS {
            assert_eq!(
                subject(recent.get(1, format!("token-{i}").as_bytes(), 1)),
                Some(i.to_string())
            );
        }
    }

    #[test]
    fn byte_comparison_is_equality() {
        let samples: [&[u8]; 6] = [b"", b"a", b"b", b"ab", b"ba", b"abc"];
        for a in samples {
            for b in samples {
                assert_eq!(same_bytes(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn generations_differ() {
        assert_ne!(next_generation(), next_generation());
    }
}
