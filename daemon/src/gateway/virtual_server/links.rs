//! How a virtual server reaches each member: statelessly (2026-07-28 members) or through a
//! member session opened lazily by `initialize`. Member sessions are a cache of this mcpd
//! (never part of the sealed id): keyed by the caller's session and the member's process, so
//! a restarted member or a restarted mcpd opens new ones on the next call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use crate::probe_client::{Link, ProbeClient, ProbeError};

/// Most member sessions kept; past it the cache starts over (sessions reopen on demand).
const MAX_LINKS: usize = 10_000;

/// The links of one caller's session (or identity, for callers without one): per member, the
/// member process's start and the link. A few members at most, so a list.
type SessionLinks = Vec<(String, Option<SystemTime>, Link)>;

#[derive(Debug, Default)]
pub struct Links {
    /// By the caller's session; looked up without making a key.
    links: Mutex<HashMap<u64, SessionLinks>>,
    /// Links in `links`, for the bound.
    count: std::sync::atomic::AtomicUsize,
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
    pub async fn get(&self, session: u64, member: &MemberAddress<'_>) -> Result<Link, ProbeError> {
        if let Some(links) = self.lock().get(&session)
            && let Some((_, _, link)) = links
                .iter()
                .find(|(name, started, _)| name == member.name && *started == member.started_at)
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
        if self.count.load(Ordering::Relaxed) >= MAX_LINKS {
            links.clear();
            self.count.store(0, Ordering::Relaxed);
        }
        let of_session = links.entry(session).or_default();
        let before = of_session.len();
        // A link of the member's previous process goes.
        of_session.retain(|(name, _, _)| name != member.name);
        let removed = before - of_session.len();
        of_session.push((member.name.to_owned(), member.started_at, link.clone()));
        self.count.fetch_add(1, Ordering::Relaxed);
        self.count.fetch_sub(removed, Ordering::Relaxed);
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
        let mut links = self.lock();
        if let Some(of_session) = links.get_mut(&session) {
            let before = of_session.len();
            of_session.retain(|(name, _, _)| name != member);
            self.count
                .fetch_sub(before - of_session.len(), Ordering::Relaxed);
            if of_session.is_empty() {
                links.remove(&session);
            }
        }
    }

    /// Forgets every link of `session` (the caller ended it).
    pub fn end(&self, session: u64) {
        if let Some(of_session) = self.lock().remove(&session) {
            self.count.fetch_sub(of_session.len(), Ordering::Relaxed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, SessionLinks>> {
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }
}
