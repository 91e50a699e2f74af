//! The client sessions of one stdio server (`Mcp-Session-Id`): mcpd answers `initialize`
//! itself from the child's own answer, so sessions cost the child nothing and survive its
//! restarts. Each session may hold one GET stream for the notifications the child sends to
//! every client (logging, list changes, resource updates).
//!
//! The table is bounded: at [`MAX_SESSIONS`] the session used least recently is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

/// Sessions kept per server.
pub const MAX_SESSIONS: usize = 4096;
/// Notifications queued for one GET stream; more are dropped for that stream.
const STREAM_QUEUE: usize = 256;

/// One client session.
#[derive(Debug)]
pub struct Session {
    pub id: Arc<str>,
    pub protocol_version: String,
    /// What the client declared in `initialize` (for the server's requests it may answer).
    pub capabilities: super::bridge::Capabilities,
    last_used: Mutex<Instant>,
    stream: Mutex<Option<mpsc::Sender<Bytes>>>,
}

impl Session {
    pub fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// Opens the session's GET stream, replacing (ending) an earlier one.
    pub fn open_stream(&self) -> mpsc::Receiver<Bytes> {
        let (sender, receiver) = mpsc::channel(STREAM_QUEUE);
        *self.stream.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender);
        receiver
    }

    fn send(&self, message: &Bytes) {
        let stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stream) = stream.as_ref() {
            let _ = stream.try_send(message.clone());
        }
    }
}

/// The sessions of one server, by id.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<Arc<str>, Arc<Session>>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Session>>> {
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session speaking `protocol_version`; evicts the least recently used one at the cap
    /// (returned, so its requests can be cancelled).
    pub fn open(
        &self,
        protocol_version: String,
        capabilities: super::bridge::Capabilities,
    ) -> (Arc<Session>, Option<Arc<str>>) {
        let id: Arc<str> = Arc::from(new_id());
        let session = Arc::new(Session {
            id: id.clone(),
            protocol_version,
            capabilities,
            last_used: Mutex::new(Instant::now()),
            stream: Mutex::new(None),
        });
        let mut sessions = self.lock();
        let mut evicted = None;
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .values()
                .min_by_key(|s| *s.last_used.lock().unwrap_or_else(|e| e.into_inner()))
                .map(|s| s.id.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
                evicted = Some(oldest);
            }
        }
        sessions.insert(id, session.clone());
        (session, evicted)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.lock().get(id).cloned()
    }

    pub fn close(&self, id: &str) -> bool {
        self.lock().remove(id).is_some()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends `message` to every session's GET stream.
    pub fn broadcast(&self, message: Bytes) {
        let sessions: Vec<Arc<Session>> = self.lock().values().cloned().collect();
        for session in sessions {
            session.send(&message);
        }
    }
}

/// 128 random bits as 32 hex digits: visible ASCII, as `Mcp-Session-Id` requires.
fn new_id() -> String {
    let bits: u128 = rand::random();
    format!("{bits:032x}")
}
