//! Session ids of virtual servers that opened on this mcpd, remembered so that a session's
//! later requests skip the AEAD (opening an id costs more than the rest of a forwarded call's
//! own work). Only ids that opened with this mcpd's key are kept, under the virtual server
//! they were opened for; expiry is checked on every use, and an ended session is refused by
//! the caller as before. Bounded: past [`MAX_OPENED`] ids the memory starts over (the ids
//! then open again, once each).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::virtuals::seal::{self, SESSION_LIFETIME, SessionFacts, SessionKey};

/// Most ids remembered.
const MAX_OPENED: usize = 4096;

/// By the id as the client sent it: the virtual server it opened for, and its facts.
type Ids = HashMap<Box<str>, (Box<str>, Arc<SessionFacts>)>;

#[derive(Debug, Default)]
pub struct Opened {
    ids: Mutex<Ids>,
}

impl Opened {
    /// The facts of `id` for `server`: remembered, or opened with `key` (and remembered).
    pub fn open(
        &self,
        key: &SessionKey,
        server: &str,
        id: &str,
        now: SystemTime,
    ) -> Option<Arc<SessionFacts>> {
        if let Some((opened_for, facts)) = self.lock().get(id)
            && **opened_for == *server
        {
            return unexpired(facts, now).then(|| facts.clone());
        }
        let facts = Arc::new(key.open(server, id, now)?);
        let mut ids = self.lock();
        if ids.len() >= MAX_OPENED {
            ids.clear();
        }
        ids.insert(Box::from(id), (Box::from(server), facts.clone()));
        Some(facts)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ids> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The same expiry rule as [`SessionKey::open`].
fn unexpired(facts: &SessionFacts, now: SystemTime) -> bool {
    let now = seal::unix_secs(now);
    now < facts.issued_at.saturating_add(SESSION_LIFETIME.as_secs())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_remembered_id_opens_only_for_its_server_and_until_it_expires() {
        let key = SessionKey::from_bytes(&[3; 32]);
        let now = SystemTime::now();
        let facts = SessionFacts {
            protocol_version: "2025-11-25".into(),
            principal: seal::principal(None, None),
            issued_at: seal::unix_secs(now),
            nonce: 9,
            capabilities: 0,
        };
        let id = key.seal("all", &facts);
        let opened = Opened::default();
        assert_eq!(opened.open(&key, "all", &id, now).as_deref(), Some(&facts));
        // Remembered now: the same answer, and still not for another server.
        assert_eq!(opened.open(&key, "all", &id, now).as_deref(), Some(&facts));
        assert!(opened.open(&key, "other", &id, now).is_none());
        let later = now + SESSION_LIFETIME + Duration::from_secs(1);
        assert!(opened.open(&key, "all", &id, later).is_none(), "expired");
        // Another key's mcpd (another `Opened`) does not open it.
        let other = SessionKey::from_bytes(&[4; 32]);
        assert!(Opened::default().open(&other, "all", &id, now).is_none());
        for junk in ["", "x", &id[..id.len() - 2]] {
            assert!(opened.open(&key, "all", junk, now).is_none(), "{junk}");
        }
    }
}
