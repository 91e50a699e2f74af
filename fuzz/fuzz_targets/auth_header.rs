//! Fuzz target: an `Authorization` header value through the gateway's bearer-token path:
//! header value -> bearer token -> JWT verification against an HS256 key set.
//!
//! Refusing is fine; panicking is not, and a second look at the same token (served from the
//! verified-token cache when it passed) must give the same answer. Replayed by the gateway's
//! unit tests from daemon/tests-data/fuzz/auth_header/.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use mcpd::config::{AuthConfig, KeySource};
use mcpd::gateway::{Authenticator, auth};

/// The secret the seed tokens of the corpus are signed with.
const SECRET: &[u8] = b"mcpd-fuzz-secret";

fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("mcpd-fuzz-{}.secret", std::process::id()));
        std::fs::write(&path, SECRET).expect("write the secret");
        let config = AuthConfig {
            issuer: None,
            authorization_servers: Vec::new(),
            keys: vec![KeySource::Hs256SecretFile(path.clone())],
            leeway: Duration::from_secs(30),
        };
        let auth = Authenticator::load(&config).expect("load the key");
        let _ = std::fs::remove_file(&path);
        auth
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let Some(token) = auth::bearer_token(&value) else {
        return;
    };
    let auth = authenticator();
    let first = auth.verify(token).map(|claims| claims.expires_at);
    let second = auth.verify(token).map(|claims| claims.expires_at);
    assert_eq!(first, second);
});
