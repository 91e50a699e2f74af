//! A member's own `list_changed` sent on a session's standalone stream. A member that speaks
//! sessions sends `notifications/tools/list_changed` (or of prompts or resources) on the GET
//! stream of its sessions, which no call reads; so mcpd keeps, per member process reached
//! through a session, one member session of its own with that stream open, and a change it
//! hears there brings the member's probe forward (`refresh`), so listeners of every virtual
//! server see it within a moment. Started for the running members of a virtual server when
//! a client opens a listening stream there (whose answer waits, at most the member's health
//! timeout, until each is watched, so a change made after it opened is heard), and when a
//! call first opens a member session of a process; ends when the process stops or is
//! replaced, or when the member offers no stream.
//! A member's request on that stream (nobody's call) is answered with an error at once.
//! Bounded: one task per member name (members are configured, so few), [`MAX_WATCHES`] in
//! all.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use http_body_util::{BodyExt, Either, Limited};

use super::Context;
use super::backchannel::MemberRoute;
use super::call::MAX_REFUSAL;
use super::links::MemberAddress;
use crate::config::ServerConfig;
use crate::directory::{ServerEntry, ServerState};
use crate::gateway::tap::sse;
use crate::probe_client::{Link, ProbeClient};

/// Most members watched at once.
const MAX_WATCHES: usize = 4096;
/// Pause before opening a broken stream or a refused session again.
const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// The watched members, by name.
#[derive(Debug, Default)]
pub struct Watches {
    members: Mutex<HashMap<String, Watch>>,
}

#[derive(Debug)]
struct Watch {
    /// The member process watched.
    started_at: Option<SystemTime>,
    task: tokio::task::JoinHandle<()>,
    /// True once the stream is open, or the member turned out to have none.
    ready: watch::Receiver<bool>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watches {
    /// Makes sure the running members of the request's virtual server are watched, and
    /// waits (at most each member's health timeout) until they are.
    pub(super) async fn ensure_members(&self, context: &Context<'_>) {
        let all = context.shared.directory.all();
        let mut waits = Vec::new();
        for name in &context.config.members {
            let Some(entry) = all.get(name) else {
                continue;
            };
            let status = entry.status.load_full();
            if status.state != ServerState::Running {
                continue;
            }
            let member = entry.config.load_full();
            let Some(address) = MemberAddress::of(name, &member, &status, false) else {
                continue;
            };
            if let Some(ready) = self.ensure(context, entry, &member, &address) {
                waits.push(async move {
                    let mut ready = ready;
                    let _ = tokio::time::timeout(address.timeout, ready.wait_for(|r| *r)).await;
                });
            }
        }
        futures::future::join_all(waits).await;
    }

    /// Makes sure the member's process at `address` is watched; when it is (or will be),
    /// what says its stream is open.
    pub(super) fn ensure(
        &self,
        context: &Context<'_>,
        entry: &Arc<ServerEntry>,
        member: &Arc<ServerConfig>,
        address: &MemberAddress<'_>,
    ) -> Option<watch::Receiver<bool>> {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(watch) = members.get(address.name)
            && watch.started_at == address.started_at
        {
            return Some(watch.ready.clone());
        }
        if members.len() >= MAX_WATCHES && !members.contains_key(address.name) {
            members.retain(|_, watch| !watch.task.is_finished());
            if members.len() >= MAX_WATCHES {
                return None;
            }
        }
        let gateway = &context.live.config.gateway;
        let route = MemberRoute {
            member: member.clone(),
            port: address.port,
            link: Link::Stateless,
            entry: entry.clone(),
            pool: context.pool.clone(),
            // mcpd's own request, for no caller.
            peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            host: None,
            trusted_peer: false,
            max_body: gateway.max_body,
            header_timeout: context.shared.options.upstream_header_timeout,
            retry_after_secs: context.shared.options.retry_after_secs,
            claims: None,
            headers: http::HeaderMap::new(),
        };
        let (tell, ready) = watch::channel(false);
        let task = tokio::spawn(run(route, address.started_at, address.timeout, tell));
        members.insert(
            address.name.to_owned(),
            Watch {
                started_at: address.started_at,
                task,
                ready: ready.clone(),
            },
        );
        Some(ready)
    }
}

/// Watches the member process until it goes, or offers no stream.
async fn run(
    mut route: MemberRoute,
    started_at: Option<SystemTime>,
    timeout: Duration,
    ready: watch::Sender<bool>,
) {
    let name = route.member.name.clone();
    // Whoever waits is let go however this ends.
    let _ready = ReadyOnDrop(&ready);
    loop {
        let status = route.entry.status.load_full();
        if status.state != ServerState::Running || status.started_at != started_at {
            return;
        }
        let client = match &route.member.remote {
            Some(remote) => ProbeClient::remote(remote.clone()),
            None => ProbeClient::new(route.port, &route.member.path),
        };
        let opened = client
            .with_capabilities(super::backchannel::member_capabilities(false))
            .open(timeout, true)
            .await;
        match opened {
            Ok(link @ Link::Session { id: Some(_), .. }) => route.link = link,
            // No sessions: its changes come on the calls' own streams.
            Ok(_) => return,
            Err(err) => {
                tracing::debug!(member = %name, error = %err, "could not open a session to watch a member's changes");
                tokio::time::sleep(REOPEN_AFTER).await;
                continue;
            }
        }
        let answer = route
            .forward(super::subscriptions::listen_request(&route))
            .await;
        let status = answer.status();
        let is_sse = answer
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        match answer.into_body() {
            Either::Right(body) if status.is_success() && is_sse => {
                ready.send_replace(true);
                read(&route, body).await;
            }
            body => {
                if let Either::Right(body) = body {
                    let _ = Limited::new(body, MAX_REFUSAL).collect().await;
                }
                if status == http::StatusCode::METHOD_NOT_ALLOWED {
                    tracing::debug!(member = %name, "the member offers no session stream; its own list changes are seen by its probe");
                    return;
                }
            }
        }
        tokio::time::sleep(REOPEN_AFTER).await;
    }
}

/// Says ready when dropped.
struct ReadyOnDrop<'a>(&'a watch::Sender<bool>);

impl Drop for ReadyOnDrop<'_> {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

/// Reads the stream until it ends.
async fn read(route: &MemberRoute, body: crate::gateway::response::UpstreamBody) {
    let on_event = |event: &[u8]| std::ops::ControlFlow::Continue(handle(route, event));
    super::subscriptions::read_events(route, body, "its watched stream", on_event).await;
}

/// One event: a list change brings the member's probe forward; the id of a request (to
/// refuse).
fn handle(route: &MemberRoute, event: &[u8]) -> Option<serde_json::Value> {
    #[derive(serde::Deserialize)]
    struct Message {
        #[serde(default)]
        method: Option<String>,
        #[serde(default)]
        id: Option<serde_json::Value>,
    }
    let data = sse::data(event)?;
    let message = serde_json::from_slice::<Message>(&data).ok()?;
    let method = message.method?;
    if message.id.is_some() {
        return message.id;
    }
    if method.starts_with("notifications/") && method.ends_with("/list_changed") {
        super::refresh::member_lists_changed(&route.entry);
    }
    None
}
