//! One worker's idle upstream connections: a list per server shared by every request, and
//! the connection each client connection used last, held for that client's next request.
//!
//! Holding a client connection's upstream connection for it (what HAProxy calls a private
//! server connection) means a client's requests find their connection open: a burst of calls
//! on open sessions connects nothing, where a shared list holds only as many connections as
//! were ever busy at once, and the burst opens the rest while its callers wait. The price is
//! one kept upstream connection per client connection that used one, which every connection
//! pays under the caps anyway; a held connection yields to others:
//! - when its client connection closes it joins the shared list;
//! - a request that finds none of its own nor a shared one while its server is at a cap takes
//!   another client's held connection rather than wait (`take_held_by_any`);
//! - closing a server's idle connections to make room (`Caps::acquire`) closes held ones too.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Key, Link};

pub(super) struct Idle {
    pub link: Link,
    /// When the connection last finished a request.
    pub since: Instant,
}

/// What a client connection holds: its server and the connection.
struct Held {
    key: Key,
    idle: Idle,
}

#[derive(Default)]
pub(super) struct Idles {
    /// By server, most recently used last.
    shared: HashMap<Key, Vec<Idle>>,
    /// By client connection (`Owner::id`): at most one each.
    held: HashMap<u64, Held>,
}

impl Idles {
    /// `owner`'s held connection when it goes to `key`, else the most recently used shared one.
    /// A held connection to another server joins the shared list (the client moved on).
    /// Whether it is still fresh and open is the caller's to check, outside the lock.
    pub fn take(&mut self, key: Key, owner: Option<u64>) -> Option<Idle> {
        if let Some(held) = owner.and_then(|owner| self.held.remove(&owner)) {
            if held.key == key {
                return Some(held.idle);
            }
            self.shared.entry(held.key).or_default().push(held.idle);
        }
        // An emptied list stays (no allocation per request when one connection goes back
        // and forth); `prune` removes lists left empty.
        self.shared.get_mut(&key)?.pop()
    }

    /// Any client connection's held connection to `key`: for a request at a cap.
    pub fn take_held_by_any(&mut self, key: Key) -> Option<Idle> {
        let owner = self
            .held
            .iter()
            .find_map(|(owner, held)| (held.key == key).then_some(*owner))?;
        self.held.remove(&owner).map(|held| held.idle)
    }

    /// Keeps `link`, finished at `now`: held for `owner`, or in the shared list, which keeps
    /// at most `max_shared` per server (their places under the caps bound them anyway).
    pub fn give_back(
        &mut self,
        key: Key,
        idle: Idle,
        owner: Option<u64>,
        max_shared: usize,
        idle_timeout: Duration,
    ) {
        let (key, idle) = match owner {
            Some(owner) => match self.held.insert(owner, Held { key, idle }) {
                // One request at a time per client connection: only a connection to another
                // server can be there, and it goes to the others.
                Some(previous) => (previous.key, previous.idle),
                None => return,
            },
            None => (key, idle),
        };
        let now = idle.since;
        let list = self.shared.entry(key).or_default();
        list.retain(|kept| now.duration_since(kept.since) < idle_timeout);
        if list.len() < max_shared {
            list.push(idle);
        }
    }

    /// `owner`'s client connection closed: what it held is for anyone now.
    pub fn release(&mut self, owner: u64, max_shared: usize) {
        if let Some(Held { key, idle }) = self.held.remove(&owner) {
            let list = self.shared.entry(key).or_default();
            if list.len() < max_shared {
                // Kept in the order of use: the newest stays at the end.
                let at = list.partition_point(|kept| kept.since <= idle.since);
                list.insert(at, idle);
            }
        }
    }

    /// Takes every idle connection (to `key` only, when given), shared or held, to be closed
    /// once the lock is let go.
    pub fn take_all(&mut self, key: Option<Key>) -> Vec<Idle> {
        let mut taken = match key {
            Some(key) => self
                .shared
                .get_mut(&key)
                .map(std::mem::take)
                .unwrap_or_default(),
            None => std::mem::take(&mut self.shared)
                .into_values()
                .flatten()
                .collect(),
        };
        let held = std::mem::take(&mut self.held);
        for (owner, held) in held {
            if key.is_none_or(|key| key == held.key) {
                taken.push(held.idle);
            } else {
                self.held.insert(owner, held);
            }
        }
        taken
    }

    /// Keeps only what `keep` accepts (it gets each connection and returns it when kept);
    /// drops the shared lists left empty.
    pub fn retain(&mut self, mut keep: impl FnMut(Idle) -> Option<Idle>) {
        self.shared.retain(|_, list| {
            *list = std::mem::take(list)
                .into_iter()
                .filter_map(&mut keep)
                .collect();
            !list.is_empty()
        });
        self.held = std::mem::take(&mut self.held)
            .into_iter()
            .filter_map(|(owner, Held { key, idle })| {
                keep(idle).map(|idle| (owner, Held { key, idle }))
            })
            .collect();
    }

    /// How many connections are idle, shared and held.
    pub fn len(&self) -> usize {
        self.shared.values().map(Vec::len).sum::<usize>() + self.held.len()
    }
}
