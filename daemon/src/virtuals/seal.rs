//! Session ids of virtual servers, sealed with an AEAD (ChaCha20-Poly1305) so that mcpd keeps
//! no session store: the id carries what the session needs, and any mcpd holding the same key
//! (a restarted one, or a second one behind a load balancer) continues it.
//!
//! Wire form: base64url (no padding) of `version (1) | key id (1) | nonce (12) | ciphertext`.
//! The associated data binds the id to the virtual server's name, so an id of one virtual
//! server is not accepted by another. Anything that does not open (tampered, truncated,
//! another key, another server, expired) is "no such session": the caller answers 404.
//!
//! The key (32 random bytes) lives in `state_dir/virtual-sessions.key`, created 0600 on first
//! use; deleting it (and restarting) rotates it, ending every session.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The key file's name in `state_dir`.
pub const KEY_FILE: &str = "virtual-sessions.key";
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
/// Longest id accepted before decoding (ids mcpd makes are about 150 characters).
pub const MAX_ID_LEN: usize = 512;
/// How long a session lives.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a session id holds: immutable facts of the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFacts {
    /// The protocol version negotiated with the client.
    #[serde(rename = "pv")]
    pub protocol_version: String,
    /// A hash of the caller's identity (token subject and client), so an id is useless to
    /// another caller.
    #[serde(rename = "p")]
    pub principal: String,
    /// Issued at, Unix seconds.
    #[serde(rename = "iat")]
    pub issued_at: u64,
    /// Distinguishes sessions (member sessions are cached per session).
    #[serde(rename = "n")]
    pub nonce: u64,
    /// The client capabilities the caller declared (`stdio::Capabilities::bits`), so the
    /// requests members send back are relayed only to a caller that can answer them.
    #[serde(rename = "c", default)]
    pub capabilities: u8,
}

/// A loaded key.
pub struct SessionKey {
    cipher: ChaCha20Poly1305,
    id: u8,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKey(kid {})", self.id)
    }
}

impl SessionKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        SessionKey {
            cipher: ChaCha20Poly1305::new(bytes.into()),
            id: Sha256::digest(bytes)[0],
        }
    }

    /// Reads the key of `state_dir`, creating it (0600) when there is none.
    pub fn load_or_create(state_dir: &Path) -> std::io::Result<Self> {
        let path: PathBuf = state_dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} holds {} bytes, not 32: delete it to make a new key",
                            path.display(),
                            bytes.len()
                        ),
                    )
                })?;
                Ok(Self::from_bytes(&key))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(state_dir)?;
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                let created = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path);
                match created {
                    Ok(mut file) => {
                        file.write_all(&key)?;
                        file.sync_all()?;
                        // Said once, where an operator running two instances looks first.
                        tracing::warn!(
                            path = %path.display(),
                            "made a new virtual-session key: sessions of virtual servers opened by another mcpd (or before this key) are unknown here; give every mcpd behind the same load balancer a copy of this file"
                        );
                        Ok(Self::from_bytes(&key))
                    }
                    // Another worker made it first: use that one.
                    Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(state_dir)
                    }
                    Err(err) => Err(err),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// The sealed id of `facts` for the virtual server `server`.
    pub fn seal(&self, server: &str, facts: &SessionFacts) -> String {
        let plain = serde_json::to_vec(facts).unwrap_or_default();
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: server.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(2 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.push(self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// The facts of a sealed id of `server`, if it opens and has not expired.
    pub fn open(&self, server: &str, id: &str, now: SystemTime) -> Option<SessionFacts> {
        if id.len() > MAX_ID_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(id.trim()).ok()?;
        if bytes.len() < 2 + NONCE_LEN + 16 || bytes[0] != VERSION || bytes[1] != self.id {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = bytes[2..2 + NONCE_LEN].try_into().ok()?;
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &bytes[2 + NONCE_LEN..],
                    aad: server.as_bytes(),
                },
            )
            .ok()?;
        let facts: SessionFacts = serde_json::from_slice(&plain).ok()?;
        let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        let expires = facts.issued_at.saturating_add(SESSION_LIFETIME.as_secs());
        (now < expires).then_some(facts)
    }
}

/// Unix seconds of `at`.
pub fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A short hash naming a caller: the token's subject and client, or nobody.
pub fn principal(subject: Option<&str>, client: Option<&str>) -> String {
    let mut hash = Sha256::new();
    hash.update(subject.unwrap_or("").as_bytes());
    hash.update([0]);
    hash.update(client.unwrap_or("").as_bytes());
    let digest = hash.finalize();
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(24);
    for byte in &digest[..12] {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> SessionFacts {
        SessionFacts {
            protocol_version: "2025-11-25".into(),
            principal: principal(Some("alice"), None),
            issued_at: unix_secs(SystemTime::now()),
            nonce: 7,
            capabilities: 0,
        }
    }

    #[test]
    fn seals_and_opens_and_refuses_everything_else() {
        let key = SessionKey::from_bytes(&[1; 32]);
        let other = SessionKey::from_bytes(&[2; 32]);
        let id = key.seal("all", &facts());
        let now = SystemTime::now();
        assert_eq!(key.open("all", &id, now), Some(facts()));
        assert_eq!(key.open("other", &id, now), None, "another server");
        assert_eq!(other.open("all", &id, now), None, "another key");
        assert_eq!(key.open("all", &id[..id.len() - 3], now), None, "truncated");
        let mut bytes = URL_SAFE_NO_PAD.decode(&id).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            key.open("all", &URL_SAFE_NO_PAD.encode(&bytes), now),
            None,
            "tampered"
        );
        for junk in ["", "x", "!!!!", &"A".repeat(600), "AQ"] {
            assert_eq!(key.open("all", junk, now), None, "{junk}");
        }
        let later = now + SESSION_LIFETIME + Duration::from_secs(1);
        assert_eq!(key.open("all", &id, later), None, "expired");
    }

    #[test]
    fn a_principal_is_the_hex_of_the_first_12_bytes_of_the_hash() {
        let mut hash = Sha256::new();
        hash.update(b"alice\0cli");
        let expected: String = hash.finalize()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(principal(Some("alice"), Some("cli")), expected);
        assert_eq!(principal(None, None).len(), 24);
    }

    #[test]
    fn key_file_is_created_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = SessionKey::load_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let second = SessionKey::load_or_create(dir.path()).unwrap();
        let id = first.seal("all", &facts());
        assert!(second.open("all", &id, SystemTime::now()).is_some());
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(SessionKey::load_or_create(dir.path()).is_err());
    }
}
