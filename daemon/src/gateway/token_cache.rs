//! The verified-token cache: claims of tokens that passed signature and time checks, keyed by
//! the SHA-256 of the token string (never the token itself), bounded, each entry dropped once
//! its token expires.
//!
//! Sharded so that concurrent requests rarely meet on the same shard; a shard's mutex is held
//! only for one hash-map operation and never across an `await`. The maps hash a key by folding
//! its words: a key is already a uniform digest, and only tokens that verified are inserted,
//! so a client cannot crowd a shard with keys of its choosing.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use super::auth::Claims;

const SHARDS: usize = 16;

/// SHA-256 of a token: what the cache is keyed by.
pub type TokenHash = [u8; 32];

pub fn token_hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

/// Now in Unix seconds, from the kernel's coarse real-time clock (the time of its last tick,
/// a few milliseconds behind at most): what the cache compares expiry times with. Reading it
/// does not read the clock source (about 15 ns here, against 50-130 ns for
/// `SystemTime::now`), and a lag of a tick is well inside the whole second an expiry time
/// is counted in.
pub fn unix_seconds() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to write; it writes nothing else.
    let read = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) };
    if read != 0 {
        return jsonwebtoken::get_current_timestamp();
    }
    u64::try_from(now.tv_sec).unwrap_or(0)
}

/// Hashes a [`TokenHash`] by folding its 8-byte words (no keyed hash needed: see the module
/// documentation).
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        for word in bytes.chunks(8) {
            let mut padded = [0u8; 8];
            padded[..word.len()].copy_from_slice(word);
            self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(padded);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Shard = HashMap<TokenHash, Entry, BuildHasherDefault<DigestHasher>>;

#[derive(Debug)]
struct Entry {
    claims: Arc<Claims>,
    /// Unix seconds after which the entry is no longer served.
    expires_at: u64,
}

#[derive(Debug)]
pub struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

impl TokenCache {
    /// A cache holding at most about `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect();
        TokenCache { shards, per_shard }
    }

    fn shard(&self, key: &TokenHash) -> &Mutex<Shard> {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    /// The cached claims of `key` if they are still valid at `now` (Unix seconds).
    pub fn get(&self, key: &TokenHash, now: u64) -> Option<Arc<Claims>> {
        let mut shard = self
            .shard(key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match shard.get(key) {
            Some(entry) if entry.expires_at >= now => Some(entry.claims.clone()),
            Some(_) => {
                shard.remove(key);
                None
            }
            None => None,
        }
    }

    /// Caches `claims` until `expires_at`. A full shard first drops its expired entries, then
    /// an arbitrary one.
    pub fn insert(&self, key: TokenHash, claims: Arc<Claims>, expires_at: u64, now: u64) {
        if expires_at < now {
            return;
        }
        let mut shard = self
            .shard(&key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, entry| entry.expires_at >= now);
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().copied()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(key, Entry { claims, expires_at });
    }

    /// Number of cached tokens (expired ones not yet dropped included).
    pub fn count(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Arc<Claims> {
        Arc::new(Claims::default())
    }

    #[test]
    fn expired_entries_are_not_served() {
        let cache = TokenCache::new(100);
        let key = token_hash("a.b.c");
        cache.insert(key, claims(), 1_000, 900);
        assert!(cache.get(&key, 1_000).is_some());
        assert!(cache.get(&key, 1_001).is_none());
        assert_eq!(cache.count(), 0);
    }

    #[test]
    fn size_stays_bounded() {
        let cache = TokenCache::new(64);
        for i in 0..10_000 {
            cache.insert(token_hash(&format!("token-{i}")), claims(), 2_000, 1_000);
        }
        assert!(cache.count() <= 64, "cache grew to {}", cache.count());
        let last = token_hash("token-9999");
        assert!(cache.get(&last, 1_000).is_some());
    }

    #[test]
    fn the_coarse_clock_is_the_wall_clock_to_the_second() {
        let before = jsonwebtoken::get_current_timestamp();
        let coarse = unix_seconds();
        let after = jsonwebtoken::get_current_timestamp();
        // A tick behind at most: at worst the second before `before`.
        assert!(
            coarse + 1 >= before && coarse <= after,
            "{before} {coarse} {after}"
        );
    }

    #[test]
    fn keys_are_digests_not_tokens() {
        assert_eq!(token_hash("x").len(), 32);
        assert_ne!(token_hash("x"), token_hash("y"));
    }
}
