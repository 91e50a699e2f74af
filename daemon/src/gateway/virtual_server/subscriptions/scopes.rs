//! The scopes of resource subscriptions (see the parent module): per scope, the URIs
//! subscribed to and the member offering each, the updates not sent yet (at most one per
//! URI), and the task reading each member's stream; bounded per scope ([`MAX_URIS`]) and
//! per mcpd ([`MAX_SCOPES`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::pump;

/// Most URIs one scope subscribes to.
pub const MAX_URIS: usize = 256;
/// Most scopes with subscriptions per mcpd.
pub const MAX_SCOPES: usize = 10_000;

/// The scopes of this mcpd, by scope id (a session's nonce, or a listen request's own id).
#[derive(Debug, Default)]
pub struct Subscriptions {
    scopes: Mutex<HashMap<u64, Arc<Scope>>>,
}

/// The subscriptions of one scope and what its listener has not sent yet.
#[derive(Debug, Default)]
pub struct Scope {
    state: Mutex<ScopeState>,
    wake: Notify,
}

#[derive(Debug, Default)]
pub(super) struct ScopeState {
    /// Subscribed URIs, with the member that offers each.
    pub(super) uris: HashMap<String, String>,
    /// Updated URIs not yet sent, each once, in the order they came.
    pub(super) pending: Vec<String>,
    /// The task reading each member's stream for this scope.
    pub(super) pumps: HashMap<String, pump::Pump>,
}

impl Subscriptions {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Scope>>> {
        self.scopes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The scope `id`, made when there is none (`None` when mcpd holds [`MAX_SCOPES`] and
    /// none of them can go).
    pub fn scope(&self, id: u64) -> Option<Arc<Scope>> {
        let mut scopes = self.lock();
        if let Some(scope) = scopes.get(&id) {
            return Some(scope.clone());
        }
        if scopes.len() >= MAX_SCOPES {
            // Scopes nobody listens to and with nothing subscribed go first.
            scopes.retain(|_, scope| Arc::strong_count(scope) > 1 || !scope.is_empty());
            if scopes.len() >= MAX_SCOPES {
                return None;
            }
        }
        let scope = Arc::new(Scope::default());
        scopes.insert(id, scope.clone());
        Some(scope)
    }

    /// Forgets the scope `id` (its session ended, or its listen request): its member
    /// streams end.
    pub fn end(&self, id: u64) {
        let scope = self.lock().remove(&id);
        if let Some(scope) = scope {
            scope.state().pumps.clear();
        }
    }

    /// Forgets the scope `id` if nothing is subscribed in it and nobody listens to it.
    pub fn release(&self, id: u64) {
        let mut scopes = self.lock();
        if scopes
            .get(&id)
            .is_some_and(|scope| Arc::strong_count(scope) == 1 && scope.is_empty())
        {
            scopes.remove(&id);
        }
    }
}

impl Scope {
    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, ScopeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.state().uris.is_empty()
    }

    /// Waits for updates to send.
    pub async fn updated(&self) {
        self.wake.notified().await;
    }

    /// The updated URIs not sent yet (each once), and forgets them.
    pub fn take_pending(&self) -> Vec<String> {
        std::mem::take(&mut self.state().pending)
    }

    /// The member `member` says `uri` changed: pending when the scope subscribed to it there.
    pub(super) fn member_updated(&self, member: &str, uri: &str) -> bool {
        let mut state = self.state();
        if state.uris.get(uri).is_none_or(|m| m != member) {
            return false;
        }
        if !state.pending.iter().any(|pending| pending == uri) {
            state.pending.push(uri.to_owned());
        }
        drop(state);
        self.wake.notify_one();
        true
    }

    /// Ends the member's stream when nothing is subscribed there (a subscription failed).
    pub(super) fn drop_idle_pump(&self, member: &str) {
        let mut state = self.state();
        if !state.uris.values().any(|m| m == member) {
            state.pumps.remove(member);
        }
    }

    /// The member's stream ended for good: its subscriptions go.
    pub(super) fn member_gone(&self, member: &str) {
        let mut state = self.state();
        state.uris.retain(|_, m| m != member);
        state.pumps.remove(member);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_subscribed_uris_of_their_member_are_pending_and_each_once() {
        let scope = Scope::default();
        scope.state().uris.insert("docs://a".into(), "docs".into());
        assert!(!scope.member_updated("docs", "docs://b"), "not subscribed");
        assert!(!scope.member_updated("other", "docs://a"), "another member");
        for _ in 0..1000 {
            assert!(scope.member_updated("docs", "docs://a"));
        }
        assert_eq!(scope.take_pending(), ["docs://a"]);
        assert!(scope.take_pending().is_empty());
        scope.member_gone("docs");
        assert!(!scope.member_updated("docs", "docs://a"));
        assert!(scope.is_empty());
    }

    #[test]
    fn scopes_are_bounded_and_idle_ones_make_room() {
        let subscriptions = Subscriptions::default();
        for id in 0..MAX_SCOPES as u64 {
            assert!(subscriptions.scope(id).is_some());
        }
        // Every scope is empty and held by nobody else: one more makes room.
        assert!(subscriptions.scope(u64::MAX).is_some());
        // Those idle scopes make room for as many held ones.
        let held: Vec<Arc<Scope>> = (0..MAX_SCOPES as u64)
            .map(|id| subscriptions.scope(1_000_000 + id).expect("room"))
            .collect();
        // Now every scope is held: one more is refused.
        assert!(subscriptions.scope(2_000_000).is_none());
        subscriptions.end(1_000_000);
        drop(held);
        assert!(subscriptions.scope(2_000_000).is_some());
    }
}
