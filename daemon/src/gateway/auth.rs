//! Bearer-token checks for servers with `oauth.required`: loading verification keys, verifying
//! a JWT once (no `crit` extension, signature, `exp`, `nbf`, `iss` one string, `aud` present)
//! with a verified-token cache, and the per-server checks (audience, scope, client) that run on
//! the cached claims every request.
//!
//! Tokens are never logged: errors carry a reason, not the token.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;

use super::headers::{X_MCP_CLIENT_ID, X_MCP_SCOPES, X_MCP_SUBJECT};
use super::recent_tokens;
use super::token_cache::{TokenCache, token_hash, unix_seconds};
use crate::config::{AuthConfig, KeySource, OAuthConfig};

/// How many verified tokens are cached at most.
pub const TOKEN_CACHE_CAPACITY: usize = 10_000;

/// The scope that passes every server.
pub const ADMIN_SCOPE: &str = "admin";

/// A verification key file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HS256 secret file {} is empty", path.display())]
    EmptySecret { path: PathBuf },
    #[error("key file {} is not a valid {algorithm:?} public key in PEM form: {source}", path.display())]
    Pem {
        path: PathBuf,
        algorithm: Algorithm,
        source: jsonwebtoken::errors::Error,
    },
    #[error("key file {} is configured with {algorithm:?}, which is not a public-key algorithm", path.display())]
    NotPublicKeyAlgorithm { path: PathBuf, algorithm: Algorithm },
    #[error("JWKS file {} is not a valid JSON Web Key Set: {source}", path.display())]
    JwksJson {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("JWKS file {}: key {kid}: {reason}", path.display())]
    Jwk {
        path: PathBuf,
        kid: String,
        reason: String,
    },
}

/// Why a token was refused before any per-server check (answered with 401 `invalid_token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("no configured key matches the token's algorithm and key id")]
    NoMatchingKey,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not the configured one")]
    WrongIssuer,
    #[error("token lacks a required claim (exp, aud, or iss when an issuer is configured)")]
    MissingClaim,
    #[error("token claims are invalid")]
    InvalidClaims,
    #[error("token header lists critical extensions (crit) that are not understood")]
    CriticalExtension,
}

impl TokenError {
    /// Short label for metrics and logs.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::NoMatchingKey => "no_matching_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::MissingClaim => "missing_claim",
            TokenError::InvalidClaims => "invalid_claims",
            TokenError::CriticalExtension => "unknown_crit",
        }
    }

    /// How telling an error is when several keys were tried: a failure after the signature
    /// verified says more than a signature mismatch with another key.
    fn rank(self) -> u8 {
        match self {
            TokenError::Malformed | TokenError::NoMatchingKey | TokenError::CriticalExtension => 0,
            TokenError::BadSignature => 1,
            _ => 2,
        }
    }

    fn from_jwt(err: &jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match err.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
            ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => TokenError::InvalidClaims,
            ErrorKind::InvalidAlgorithm => TokenError::NoMatchingKey,
            _ => TokenError::Malformed,
        }
    }
}

/// Why a verified token may not use a server (answered with 403 `insufficient_scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("token audience does not include the server's audience")]
    Audience,
    #[error("token client is not the server's client_id")]
    Client,
    #[error("token has none of the server's scopes")]
    Scope,
}

impl Denied {
    pub fn reason(self) -> &'static str {
        match self {
            Denied::Audience => "wrong_audience",
            Denied::Client => "wrong_client",
            Denied::Scope => "insufficient_scope",
        }
    }
}

/// What the gateway keeps of a verified token.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    pub subject: Option<String>,
    pub audiences: Vec<String>,
    pub scopes: Vec<String>,
    /// `client_id`, else `azp`.
    pub client_id: Option<String>,
    /// `exp`, Unix seconds.
    pub expires_at: u64,
    /// Ready-made values of `X-MCP-Subject`, `X-MCP-Scopes` and `X-MCP-Client-Id` (absent when
    /// the claim is absent or not a valid header value).
    pub subject_header: Option<HeaderValue>,
    pub scopes_header: Option<HeaderValue>,
    pub client_header: Option<HeaderValue>,
    /// The same three as the lines of a request head (`name: value\r\n` each, those
    /// present), rendered once per verified token: what the gateway's own HTTP/1.1 client
    /// writes into every request to a local server.
    pub identity_head: bytes::Bytes,
}

impl Claims {
    /// The identity headers with their values (those present).
    pub fn identity_headers(&self) -> impl Iterator<Item = (&'static HeaderName, &HeaderValue)> {
        [
            (&X_MCP_SUBJECT, &self.subject_header),
            (&X_MCP_SCOPES, &self.scopes_header),
            (&X_MCP_CLIENT_ID, &self.client_header),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.as_ref()?)))
    }

    /// Renders [`Claims::identity_head`] from the header values.
    fn with_identity_head(mut self) -> Self {
        let mut head = Vec::new();
        for (name, value) in self.identity_headers() {
            head.extend_from_slice(name.as_str().as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value.as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        self.identity_head = head.into();
        self
    }
}

/// The token of an `Authorization` header value: `None` when it holds no bearer credential
/// (another scheme, or bytes that are not visible ASCII).
///
/// Read as bytes, in one folded pass that the compiler turns into vector instructions: a
/// token is hundreds of bytes, and `HeaderValue::to_str` followed by a search for the space
/// read it byte by byte, twice, on every authenticated request (and a UTF-8 check of the
/// result, a third time).
pub fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    // What `HeaderValue::to_str` accepts: tab and visible ASCII (space included).
    let visible = bytes.iter().fold(true, |visible, &b| {
        visible & (b == b'\t' || (b' '..=b'~').contains(&b))
    });
    if !visible {
        return None;
    }
    // `Bearer` alone (an empty token, its trailing space trimmed in transit) counts as a
    // bearer credential that fails verification.
    let (scheme, token) = match memchr::memchr(b' ', bytes) {
        Some(space) => (&bytes[..space], &bytes[space + 1..]),
        None => (bytes, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = token.trim_ascii();
    // SAFETY: every byte is tab or visible ASCII (checked above), so `token` is UTF-8; a
    // check here would read the token once more on every authenticated request.
    Some(unsafe { std::str::from_utf8_unchecked(token) })
}

/// Checks a verified token against one server's `oauth` settings. The token's `aud` must hold
/// the configured `audience` or, as RFC 8707 clients send it, the server's `resource` (its
/// public endpoint, exactly as its RFC 9728 metadata says).
pub fn authorize(claims: &Claims, oauth: &OAuthConfig, resource: &str) -> Result<(), Denied> {
    if !claims
        .audiences
        .iter()
        .any(|aud| *aud == oauth.audience || aud == resource)
    {
        return Err(Denied::Audience);
    }
    if let Some(wanted) = &oauth.client_id
        && claims.client_id.as_deref() != Some(wanted.as_str())
    {
        return Err(Denied::Client);
    }
    let has_scope = oauth.scopes.is_empty()
        || claims
            .scopes
            .iter()
            .any(|scope| scope == ADMIN_SCOPE || oauth.scopes.contains(scope));
    if has_scope {
        Ok(())
    } else {
        Err(Denied::Scope)
    }
}

/// A claim that is either one string or an array of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values; a single string is split on whitespace when `split` (scopes).
    fn into_vec(self, split: bool) -> Vec<String> {
        match self {
            OneOrMany::One(one) if split => one.split_whitespace().map(str::to_owned).collect(),
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    aud: Option<OneOrMany>,
    scope: Option<OneOrMany>,
    scp: Option<OneOrMany>,
    client_id: Option<String>,
    azp: Option<String>,
    exp: f64,
    /// Only its shape is looked at here (its value is checked by jsonwebtoken).
    #[serde(default)]
    iss: Option<serde_json::Value>,
}

impl RawClaims {
    fn into_claims(self) -> Claims {
        let mut scopes = self.scope.map(|s| s.into_vec(true)).unwrap_or_default();
        if let Some(scp) = self.scp {
            for scope in scp.into_vec(true) {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
            }
        }
        let client_id = self.client_id.or(self.azp);
        let header = |value: &str| HeaderValue::from_str(value).ok();
        Claims {
            subject_header: self.sub.as_deref().and_then(header),
            scopes_header: (!scopes.is_empty())
                .then(|| header(&scopes.join(" ")))
                .flatten(),
            client_header: client_id.as_deref().and_then(header),
            subject: self.sub,
            audiences: self.aud.map(|a| a.into_vec(false)).unwrap_or_default(),
            scopes,
            client_id,
            // jsonwebtoken already checked `exp` is a non-negative number in range.
            expires_at: self.exp.max(0.0) as u64,
            identity_head: bytes::Bytes::new(),
        }
        .with_identity_head()
    }
}

/// One usable verification key.
struct VerifyKey {
    /// Set for JWKS keys that carry a `kid`.
    kid: Option<String>,
    key: DecodingKey,
    /// Algorithms this key accepts (one family), the rest of the checks included.
    validation: Validation,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

/// The loaded keys plus issuer and leeway, and the cache of tokens they verified. Built anew
/// (with an empty cache) on every configuration reload.
#[derive(Debug)]
pub struct Authenticator {
    keys: Vec<VerifyKey>,
    leeway: u64,
    /// `auth.issuer` is set: `iss` must then be that one string (an array is refused).
    issuer_required: bool,
    cache: TokenCache,
    /// Names this authenticator's entries in each worker's recent tokens, so none outlives
    /// it (a reload builds a new one).
    generation: u64,
}

impl Authenticator {
    /// Reads every key file of `config`.
    pub fn load(config: &AuthConfig) -> Result<Self, KeyError> {
        let mut loaded = Vec::new();
        for source in &config.keys {
            load_source(source, &mut loaded)?;
        }
        let leeway = config.leeway.as_secs();
        let keys = loaded
            .into_iter()
            .map(|(kid, key, algorithms)| VerifyKey {
                kid,
                key,
                validation: validation(algorithms, config.issuer.as_deref(), leeway),
            })
            .collect();
        Ok(Authenticator {
            keys,
            leeway,
            issuer_required: config.issuer.is_some(),
            cache: TokenCache::new(TOKEN_CACHE_CAPACITY),
            generation: recent_tokens::next_generation(),
        })
    }

    /// How many verification keys are loaded.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// How many verified tokens are cached.
    pub fn cached_tokens(&self) -> usize {
        self.cache.count()
    }

    /// Verifies `token` (signature, `exp`, `nbf`, `iss`, presence of `aud`), from this
    /// thread's recent tokens or the cache when it was verified before and has not expired.
    pub fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        let now = unix_seconds();
        if let Some(claims) = recent_tokens::get(self.generation, token.as_bytes(), now) {
            return Ok(claims);
        }
        let hash = token_hash(token);
        if let Some(claims) = self.cache.get(&hash, now) {
            self.remember(token, &claims);
            return Ok(claims);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        // RFC 7515 section 4.1.11: mcpd understands no JWS extension, so a token that lists
        // any in `crit` (or lists none: `[]` is forbidden too) must not be accepted.
        if header.crit.is_some() {
            return Err(TokenError::CriticalExtension);
        }
        let mut best = TokenError::NoMatchingKey;
        let candidates = self.keys.iter().filter(|key| {
            key.validation.algorithms.contains(&header.alg)
                && match (&header.kid, &key.kid) {
                    (Some(wanted), Some(kid)) => wanted == kid,
                    _ => true,
                }
        });
        for key in candidates {
            match jsonwebtoken::decode::<RawClaims>(token, &key.key, &key.validation) {
                Ok(data) => {
                    // jsonwebtoken accepts an `iss` array that contains the issuer; one
                    // issuer is one string (RFC 7519 section 4.1.1).
                    if self.issuer_required
                        && !matches!(data.claims.iss, Some(serde_json::Value::String(_)))
                    {
                        return Err(TokenError::WrongIssuer);
                    }
                    let claims = Arc::new(data.claims.into_claims());
                    self.cache
                        .insert(hash, claims.clone(), self.valid_until(&claims), now);
                    self.remember(token, &claims);
                    return Ok(claims);
                }
                Err(err) => {
                    let err = TokenError::from_jwt(&err);
                    if err.rank() >= best.rank() {
                        best = err;
                    }
                }
            }
        }
        Err(best)
    }

    /// Unix seconds until which a verified token is served again without verifying it.
    fn valid_until(&self, claims: &Claims) -> u64 {
        claims.expires_at.saturating_add(self.leeway)
    }

    /// Puts a verified token in this thread's recent tokens.
    fn remember(&self, token: &str, claims: &Arc<Claims>) {
        let until = self.valid_until(claims);
        recent_tokens::put(self.generation, token.as_bytes(), claims.clone(), until);
    }
}

fn validation(algorithms: Vec<Algorithm>, issuer: Option<&str>, leeway: u64) -> Validation {
    let mut validation = Validation::new_for_family(algorithms[0].family());
    validation.algorithms = algorithms;
    validation.leeway = leeway;
    validation.validate_exp = true;
    validation.validate_nbf = true;
    // `aud` must be present; which audience it must contain depends on the server, so it is
    // checked per request by `authorize` on the cached claims.
    validation.validate_aud = false;
    let mut required = vec!["exp", "aud"];
    if let Some(issuer) = issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    validation.set_required_spec_claims(&required);
    validation
}

type Loaded = (Option<String>, DecodingKey, Vec<Algorithm>);

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    crate::config::read_config_file(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Reads an HS256 secret file: its bytes, trailing newline trimmed. Also used to mint tokens.
pub fn read_hs256_secret(path: &Path) -> Result<Vec<u8>, KeyError> {
    let mut secret = read(path)?;
    while matches!(secret.last(), Some(b'\n' | b'\r')) {
        secret.pop();
    }
    if secret.is_empty() {
        return Err(KeyError::EmptySecret {
            path: path.to_owned(),
        });
    }
    Ok(secret)
}

fn load_source(source: &KeySource, out: &mut Vec<Loaded>) -> Result<(), KeyError> {
    match source {
        KeySource::Hs256SecretFile(path) => {
            let secret = read_hs256_secret(path)?;
            out.push((
                None,
                DecodingKey::from_secret(&secret),
                vec![Algorithm::HS256],
            ));
        }
        KeySource::PublicKeyFile { path, algorithm } => {
            let pem = read(path)?;
            let key = match algorithm.family() {
                AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
                AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
                AlgorithmFamily::Ed => DecodingKey::from_ed_pem(&pem),
                AlgorithmFamily::Hmac => {
                    return Err(KeyError::NotPublicKeyAlgorithm {
                        path: path.clone(),
                        algorithm: *algorithm,
                    });
                }
            }
            .map_err(|source| KeyError::Pem {
                path: path.clone(),
                algorithm: *algorithm,
                source,
            })?;
            out.push((None, key, vec![*algorithm]));
        }
        KeySource::JwksFile(path) => {
            let text = read(path)?;
            let set: JwkSet =
                serde_json::from_slice(&text).map_err(|source| KeyError::JwksJson {
                    path: path.clone(),
                    source,
                })?;
            for jwk in &set.keys {
                if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
                    continue;
                }
                let kid = jwk.common.key_id.clone();
                let fail = |reason: String| KeyError::Jwk {
                    path: path.clone(),
                    kid: kid.clone().unwrap_or_else(|| "(no kid)".into()),
                    reason,
                };
                let algorithms = match jwk.common.key_algorithm {
                    Some(alg) => vec![
                        Algorithm::try_from(alg)
                            .map_err(|_| fail(format!("{alg} is not a signing algorithm")))?,
                    ],
                    None => match &jwk.algorithm {
                        AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa.algorithms().to_vec(),
                        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                            EllipticCurve::P256 => vec![Algorithm::ES256],
                            EllipticCurve::P384 => vec![Algorithm::ES384],
                            _ => return Err(fail("unsupported elliptic curve".into())),
                        },
                        AlgorithmParameters::OctetKeyPair(_) => vec![Algorithm::EdDSA],
                        AlgorithmParameters::OctetKey(_) => {
                            AlgorithmFamily::Hmac.algorithms().to_vec()
                        }
                        _ => {
                            return Err(fail("unsupported key type".into()));
                        }
                    },
                };
                let key = DecodingKey::from_jwk(jwk).map_err(|e| fail(e.to_string()))?;
                if algorithms.iter().any(|alg| alg.family() != key.family()) {
                    return Err(fail("its `alg` does not match its key type".into()));
                }
                out.push((kid, key, algorithms));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderValue;
    use jsonwebtoken::{EncodingKey, Header};

    use super::{Algorithm, Authenticator, Path, TokenError, bearer_token};
    use crate::config::{AuthConfig, KeySource};

    fn hs256(dir: &Path, secret: &str) -> Authenticator {
        let path = dir.join(format!("{secret}.secret"));
        std::fs::write(&path, secret).unwrap();
        Authenticator::load(&AuthConfig {
            issuer: None,
            authorization_servers: Vec::new(),
            keys: vec![KeySource::Hs256SecretFile(path)],
            leeway: Duration::ZERO,
        })
        .unwrap()
    }

    fn token(secret: &str, expires_at: u64) -> String {
        let claims = serde_json::json!({"sub": "alice", "aud": "mcp", "exp": expires_at});
        let key = EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }

    /// A token verified once is served again from this thread's recent tokens, but only by
    /// the authenticator that verified it: after a reload to other keys, the same thread
    /// refuses it.
    #[test]
    fn a_remembered_token_does_not_outlive_its_authenticator() {
        let dir = tempfile::tempdir().unwrap();
        let now = jsonwebtoken::get_current_timestamp();
        let signed = token("first-secret", now + 3600);
        let first = hs256(dir.path(), "first-secret");
        for _ in 0..3 {
            let claims = first.verify(&signed).unwrap();
            assert_eq!(claims.subject.as_deref(), Some("alice"));
        }
        let second = hs256(dir.path(), "other-secret");
        assert_eq!(
            second.verify(&signed).unwrap_err(),
            TokenError::BadSignature
        );
        assert!(first.verify(&signed).is_ok());
        let tampered = format!("{signed}x");
        assert!(first.verify(&tampered).is_err());
    }

    /// The identity lines written into a local server's request head are the header values,
    /// in order, only those present; a claim that is not a valid header value is left out.
    #[test]
    fn identity_lines_are_rendered_from_the_header_values() {
        let claims = |value: serde_json::Value| {
            serde_json::from_value::<super::RawClaims>(value)
                .unwrap()
                .into_claims()
        };
        let full = claims(serde_json::json!({
            "sub": "alice", "scope": "user tools:read", "client_id": "cli", "exp": 1, "aud": "mcp"
        }));
        assert_eq!(
            &full.identity_head[..],
            b"x-mcp-subject: alice\r\nx-mcp-scopes: user tools:read\r\nx-mcp-client-id: cli\r\n"
        );
        let partial = claims(serde_json::json!({"sub": "bad\nname", "azp": "app", "exp": 1}));
        assert_eq!(&partial.identity_head[..], b"x-mcp-client-id: app\r\n");
        let none = claims(serde_json::json!({"exp": 1}));
        assert!(none.identity_head.is_empty());
    }

    /// A verified token is remembered until its `exp` (plus the leeway, here none), and not
    /// served from there after it.
    #[test]
    fn a_remembered_token_expires() {
        let dir = tempfile::tempdir().unwrap();
        let auth = hs256(dir.path(), "expiring-secret");
        let now = super::unix_seconds();
        let signed = token("expiring-secret", now + 3600);
        assert!(auth.verify(&signed).is_ok());
        let held = |at| super::recent_tokens::get(auth.generation, signed.as_bytes(), at);
        assert!(held(now + 3600).is_some(), "remembered until it expires");
        assert!(held(now + 3601).is_none(), "served past its expiry");
    }

    /// What `bearer_token` reads is what the text's own reading gives: the scheme before the
    /// first space, any case, and the rest trimmed; nothing from a value with a byte that is
    /// not visible ASCII or tab.
    #[test]
    fn bearer_tokens_are_read_as_the_header_text_says() {
        let reference = |value: &HeaderValue| -> Option<String> {
            let text = value.to_str().ok()?;
            let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        };
        let values: [&[u8]; 16] = [
            b"Bearer abc.def.ghi",
            b"bearer abc",
            b"BEARER  abc ",
            b"Bearer\tabc",
            b"Bearer",
            b"Bearer ",
            b"Basic abc",
            b"Bearerabc",
            b" Bearer abc",
            b"Bearer a b c",
            b"Bearer abc\t",
            b"Bearer ab\x80c",
            b"Bearer \xffabc",
            b"Bearer a~b!c",
            b"",
            b"Bear abc",
        ];
        for bytes in values {
            let value = HeaderValue::from_bytes(bytes).unwrap();
            assert_eq!(
                bearer_token(&value).map(str::to_owned),
                reference(&value),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let long = format!("Bearer {}", "x".repeat(4000));
        let value = HeaderValue::from_str(&long).unwrap();
        assert_eq!(bearer_token(&value).map(str::len), Some(4000));
        let mut bad = long.into_bytes();
        bad[3000] = 0x80;
        let value = HeaderValue::from_bytes(&bad).unwrap();
        assert_eq!(bearer_token(&value), None, "one byte past ASCII anywhere");
    }
}
