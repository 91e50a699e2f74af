//! How a virtual server reaches each member: statelessly (2026-07-28 members) or through a
//! member session opened lazily by `initialize`. Member sessions are a cache of this mcpd
//! (never part of the sealed id): keyed by the caller's session and the member's process, so
//! a restarted member or a restarted mcpd opens new ones on the next call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::probe_client::{Link, ProbeClient, ProbeError};

/// Most member sessions kept; past it the cache starts over (sessions reopen on demand).
const MAX_LINKS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LinkKey {
    /// The caller's session (or identity, for callers without one).
    session: u64,
    member: String,
}

#[derive(Debug, Default)]
pub struct Links {
    links: Mutex<HashMap<LinkKey, (Option<SystemTime>, Link)>>,
    /// The member and link of each recent call, by (client session, request id as JSON), so a
    /// client's `notifications/cancelled` reaches the member running the call.
    calls: Mutex<HashMap<(u64, String), (String, Link)>>,
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

impl Links {
    /// The link of `session` to the member, opened when there is none for its process.
    pub async fn get(&self, session: u64, member: &MemberAddress<'_>) -> Result<Link, ProbeError> {
        let key = LinkKey {
            session,
            member: member.name.to_owned(),
        };
        if let Some((started, link)) = self.lock().get(&key)
            && *started == member.started_at
        {
            return Ok(link.clone());
        }
        let client = match member.remote {
            Some(remote) => ProbeClient::remote(remote.clone()),
            None => ProbeClient::new(member.port, member.path),
        };
        let link = client
            .with_capabilities(super::backchannel::member_capabilities(member.roots))
            .open(member.timeout)
            .await?;
        let mut links = self.lock();
        if links.len() >= MAX_LINKS {
            links.clear();
        }
        links.insert(key, (member.started_at, link.clone()));
        Ok(link)
    }

    /// Notes that `request` of `session` runs in `member` over `link`.
    pub fn note_call(&self, session: u64, request: &str, member: &str, link: &Link) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if calls.len() >= MAX_LINKS {
            calls.clear();
        }
        calls.insert(
            (session, request.to_owned()),
            (member.to_owned(), link.clone()),
        );
    }

    /// Where `request` of `session` runs, and forgets it.
    pub fn take_call(&self, session: u64, request: &str) -> Option<(String, Link)> {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.remove(&(session, request.to_owned()))
    }

    /// Forgets the link (the member answered 404 to its session).
    pub fn forget(&self, session: u64, member: &str) {
        self.lock().remove(&LinkKey {
            session,
            member: member.to_owned(),
        });
    }

    /// Forgets every link of `session` (the caller ended it).
    pub fn end(&self, session: u64) {
        self.lock().retain(|key, _| key.session != session);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<LinkKey, (Option<SystemTime>, Link)>> {
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }
}
