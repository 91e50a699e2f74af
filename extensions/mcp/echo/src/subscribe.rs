//! Resource subscriptions, offered only with `MCP_ECHO_SUBSCRIBE=1` (with resources): the
//! server declares `resources.subscribe`, keeps each session's subscribed URIs, and offers
//! `touch`, which sends `notifications/resources/updated` of a URI to every session that
//! subscribed to it, as a server whose resource changed does. For tests of gateways,
//! `touch` can also misbehave on request: `times` sends each update that many times (a
//! flood), and `everyone` sends it to every session with any subscription, whether it
//! subscribed to that URI or not.

// resources/subscribe is what this exists to exercise; 2026-07-28 deprecates it.
#![allow(deprecated)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::ResourceUpdatedNotificationParam;
use rmcp::service::Peer;
use rmcp::{RoleServer, schemars, tool, tool_router};
use serde::Deserialize;

use crate::server::Echo;

/// Most updates one `touch` sends to one session.
const MAX_TIMES: u32 = 10_000;

/// The URIs one session subscribed to.
pub type Subscribed = Arc<Mutex<HashSet<String>>>;

/// A session that subscribed to something: its URIs (gone with the session), and how to
/// reach it.
type Subscriber = (Weak<Mutex<HashSet<String>>>, Peer<RoleServer>);

static SESSIONS: Mutex<Vec<Subscriber>> = Mutex::new(Vec::new());

/// Notes `uri` as subscribed by the session of `peer`.
pub fn subscribe(subscribed: &Subscribed, peer: &Peer<RoleServer>, uri: String) {
    let fresh = {
        let mut uris = subscribed.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = uris.is_empty();
        uris.insert(uri);
        fresh
    };
    if fresh {
        let mut sessions = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|(uris, _)| uris.strong_count() > 0);
        sessions.push((Arc::downgrade(subscribed), peer.clone()));
    }
}

pub fn unsubscribe(subscribed: &Subscribed, uri: &str) {
    subscribed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(uri);
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct TouchArgs {
    /// The URI whose resource changed.
    pub uri: String,
    /// Send each update this many times (default 1, at most 10000).
    #[serde(default)]
    pub times: Option<u32>,
    /// Send it to every session with a subscription, not only to those subscribed to `uri`.
    #[serde(default)]
    pub everyone: Option<bool>,
}

#[tool_router(router = subscribe_router, vis = "pub(crate)")]
impl Echo {
    #[tool(
        description = "Says a resource changed: notifications/resources/updated to its subscribers"
    )]
    async fn touch(
        &self,
        Parameters(TouchArgs {
            uri,
            times,
            everyone,
        }): Parameters<TouchArgs>,
    ) -> String {
        let times = times.unwrap_or(1).clamp(1, MAX_TIMES);
        let everyone = everyone.unwrap_or(false);
        let peers: Vec<Peer<RoleServer>> = SESSIONS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(uris, _)| {
                uris.upgrade().is_some_and(|uris| {
                    let uris = uris.lock().unwrap_or_else(|e| e.into_inner());
                    (everyone && !uris.is_empty()) || uris.contains(&uri)
                })
            })
            .map(|(_, peer)| peer.clone())
            .collect();
        let mut sent = 0;
        for peer in &peers {
            for _ in 0..times {
                let update = ResourceUpdatedNotificationParam::new(uri.clone());
                if peer.notify_resource_updated(update).await.is_ok() {
                    sent += 1;
                }
            }
        }
        format!("notified {} sessions ({sent} updates)", peers.len())
    }
}
