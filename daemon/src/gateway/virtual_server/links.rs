//! How a virtual server reaches each member: statelessly (2026-07-28) or through a member
//! session opened lazily by `initialize`. A caller with a session of its own (2025-11-25) gets
//! a member session whenever the member has them, even one that speaks 2026-07-28 too: a kept
//! session costs the member far less per call than a stateless request, and the member's
//! requests (sampling, elicitation) then reach the caller on the call's stream. A 2026-07-28
//! caller reaches such a member statelessly, so the member asks it with `input_required`.
//! Member sessions are a cache of this mcpd (never part of the sealed id): keyed by the
//! caller's session and the member's process, so a restarted member or a restarted mcpd
//! opens new ones on the next call.
//!
//! Also the calls in flight (for `cancel.rs`): each is noted while its answer streams
//! ([`CallNote`], held with the caller's slot), so the map holds only calls in flight.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::directory::ServerEntry;
use crate::probe_client::{Link, ProbeClient, ProbeError};

/// Most member sessions kept; past it the cache starts over (sessions reopen on demand).
const MAX_LINKS: usize = 10_000;
/// Most calls in flight noted; past it a call is not noted (a cancellation of it is not
/// passed on; the call still runs to its end).
const MAX_CALLS: usize = 100_000;

/// One member link of a caller.
#[derive(Debug)]
struct Kept {
    member: String,
    /// The member process's start: a link of another process is not used.
    started_at: Option<SystemTime>,
    /// Opened for a caller with a session (a session preferred).
    for_session: bool,
    link: Link,
}

/// A member session of a caller that ended its own: where it was opened, and its id.
#[derive(Debug)]
pub struct MemberSession {
    pub member: String,
    /// The member process it was opened in.
    pub started_at: Option<SystemTime>,
    /// A `Link::Session` with an id.
    pub link: Link,
}

/// The links of one caller's session (or identity, for callers without one). A few members
/// at most, so a list.
type SessionLinks = Vec<Kept>;

/// A call in flight: its member and link, and which note made it.
type Noted = (Arc<ServerEntry>, Link, u64);
type Calls = Arc<Mutex<HashMap<u64, Noted>>>;

#[derive(Debug, Default)]
pub struct Links {
    /// By the caller's session; looked up without making a key.
    links: Mutex<HashMap<u64, SessionLinks>>,
    /// Links in `links`, for the bound.
    count: AtomicUsize,
    /// The member and link of each call in flight, by a keyed hash of (client session,
    /// request id as JSON), so a client's `notifications/cancelled` reaches the member
    /// running the call.
    calls: Calls,
    hasher: std::collections::hash_map::RandomState,
    next_note: AtomicU64,
}

/// A call noted as in flight; dropped when its answer has ended, which forgets it.
#[derive(Debug)]
pub struct CallNote {
    calls: Calls,
    key: u64,
    note: u64,
}

impl Drop for CallNote {
    fn drop(&mut self) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if calls
            .get(&self.key)
            .is_some_and(|noted| noted.2 == self.note)
        {
            calls.remove(&self.key);
        }
    }
}

/// Where the member runs now, and how long its handshake may take.
pub struct MemberAddress<'a> {
    pub name: &'a str,
    pub port: u16,
    pub path: &'a str,
    /// The member process's start: a link of another process is not used.
    pub started_at: Option<SystemTime>,
    pub timeout: Duration,
    /// A remote member's target (then `port` and `path` are unused).
    pub remote: Option<&'a std::sync::Arc<crate::remote::RemoteTarget>>,
    /// The caller declared `roots`: so does its member session (see
    /// [`super::backchannel::member_capabilities`]).
    pub roots: bool,
}

impl<'a> MemberAddress<'a> {
    /// Where `name` (its config and latest status) runs now; `None` while it has no port yet.
    pub fn of(
        name: &'a str,
        config: &'a crate::config::ServerConfig,
        status: &crate::directory::ServerStatus,
        roots: bool,
    ) -> Option<Self> {
        let remote = config.remote.as_ref();
        Some(MemberAddress {
            name,
            port: status.port.or(config.port).or(remote.map(|_| 0))?,
            path: &config.path,
            started_at: status.started_at,
            timeout: config.health.timeout,
            remote,
            roots,
        })
    }
}

impl Links {
    /// The link of `session` to the member, opened when there is none for its process.
    /// `for_session`: the caller has a session of its own, so a member session is preferred.
    /// The link, and whether it was opened now.
    pub async fn get(
        &self,
        session: u64,
        member: &MemberAddress<'_>,
        for_session: bool,
    ) -> Result<(Link, bool), ProbeError> {
        if let Some(links) = self.lock().get(&session)
            && let Some(kept) = links.iter().find(|kept| {
                kept.member == member.name
                    && kept.started_at == member.started_at
                    && kept.for_session == for_session
            })
        {
            return Ok((kept.link.clone(), false));
        }
        let client = match member.remote {
            Some(remote) => ProbeClient::remote(remote.clone()),
            None => ProbeClient::new(member.port, member.path),
        };
        let link = client
            .with_capabilities(super::backchannel::member_capabilities(member.roots))
            .open(member.timeout, for_session)
            .await?;
        let mut links = self.lock();
        if self.count.load(Ordering::Relaxed) >= MAX_LINKS {
            links.clear();
            self.count.store(0, Ordering::Relaxed);
        }
        let of_session = links.entry(session).or_default();
        let before = of_session.len();
        // A link of the member's previous process (or of the other kind) goes.
        of_session.retain(|kept| kept.member != member.name);
        let removed = before - of_session.len();
        of_session.push(Kept {
            member: member.name.to_owned(),
            started_at: member.started_at,
            for_session,
            link: link.clone(),
        });
        self.count.fetch_add(1, Ordering::Relaxed);
        self.count.fetch_sub(removed, Ordering::Relaxed);
        Ok((link, true))
    }

    /// Notes that `request` of `session` runs in `member` over `link`, until the note is
    /// dropped; `None` when [`MAX_CALLS`] calls are noted already.
    pub fn note_call(
        &self,
        session: u64,
        request: &str,
        member: &Arc<ServerEntry>,
        link: &Link,
    ) -> Option<CallNote> {
        let key = self.hasher.hash_one((session, request));
        let note = self.next_note.fetch_add(1, Ordering::Relaxed);
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if calls.len() >= MAX_CALLS && !calls.contains_key(&key) {
            return None;
        }
        calls.insert(key, (member.clone(), link.clone(), note));
        Some(CallNote {
            calls: self.calls.clone(),
            key,
            note,
        })
    }

    /// Where `request` of `session` runs (if it still does), and forgets it.
    pub fn take_call(&self, session: u64, request: &str) -> Option<(Arc<ServerEntry>, Link)> {
        let key = self.hasher.hash_one((session, request));
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.remove(&key).map(|(entry, link, _)| (entry, link))
    }

    /// Calls noted (for tests).
    #[cfg(test)]
    pub fn calls_noted(&self) -> usize {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Forgets the link (the member answered 404 to its session).
    pub fn forget(&self, session: u64, member: &str) {
        let mut links = self.lock();
        if let Some(of_session) = links.get_mut(&session) {
            let before = of_session.len();
            of_session.retain(|kept| kept.member != member);
            self.count
                .fetch_sub(before - of_session.len(), Ordering::Relaxed);
            if of_session.is_empty() {
                links.remove(&session);
            }
        }
    }

    /// Forgets every link of `session` (the caller ended it); returns its member sessions,
    /// for the members to be told.
    pub fn end(&self, session: u64) -> Vec<MemberSession> {
        let Some(of_session) = self.lock().remove(&session) else {
            return Vec::new();
        };
        self.count.fetch_sub(of_session.len(), Ordering::Relaxed);
        of_session
            .into_iter()
            .filter(|kept| matches!(kept.link, Link::Session { id: Some(_), .. }))
            .map(|kept| MemberSession {
                member: kept.member,
                started_at: kept.started_at,
                link: kept.link,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, SessionLinks>> {
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Arc<ServerEntry> {
        use crate::config::test_builder::{daemon_config, server_config};
        use crate::directory::{ServerState, ServerStatus};
        let config = server_config(&daemon_config(std::path::Path::new("/tmp")), "m");
        Arc::new(ServerEntry::new(
            config,
            ServerStatus::new(ServerState::Running),
        ))
    }

    #[test]
    fn a_call_is_noted_while_in_flight_only() {
        let links = Links::default();
        let member = entry();
        let first = links.note_call(1, "7", &member, &Link::Stateless).unwrap();
        let other = links.note_call(2, "7", &member, &Link::Stateless).unwrap();
        assert_eq!(links.calls_noted(), 2);
        drop(first);
        assert_eq!(links.calls_noted(), 1, "the call ended");
        assert!(links.take_call(1, "7").is_none());
        assert!(links.take_call(2, "7").is_some(), "another session's");
        drop(other);
        assert_eq!(links.calls_noted(), 0);
        // The same id noted again while the first is in flight: the first's end leaves the
        // second's note alone.
        let a = links.note_call(3, "9", &member, &Link::Stateless).unwrap();
        let b = links.note_call(3, "9", &member, &Link::Stateless).unwrap();
        drop(a);
        assert_eq!(links.calls_noted(), 1);
        drop(b);
        assert_eq!(links.calls_noted(), 0);
    }

    #[test]
    fn calls_in_flight_are_bounded() {
        let links = Links::default();
        let member = entry();
        let held: Vec<CallNote> = (0..MAX_CALLS as u64)
            .map(|n| links.note_call(n, "1", &member, &Link::Stateless).unwrap())
            .collect();
        assert!(
            links
                .note_call(u64::MAX, "1", &member, &Link::Stateless)
                .is_none()
        );
        drop(held);
        assert_eq!(links.calls_noted(), 0);
        assert!(
            links
                .note_call(u64::MAX, "1", &member, &Link::Stateless)
                .is_some()
        );
    }
}
