//! The JWT matrix through the real gateway: each case a request, asserting the status, the
//! exact `WWW-Authenticate` challenge and, when allowed, what the upstream received.

use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderMap, Request, StatusCode};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tempfile::TempDir;

use super::support::*;
use crate::config::{AuthConfig, KeySource};
use crate::directory::ServerState;
use crate::gateway::GatewayOptions;

const HS_SECRET: &str = "a-test-secret-for-hs256-of-some-length";
const ISSUER: &str = "https://issuer.test";

fn key_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests-data")
        .join(name)
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(key_file(name)).unwrap()
}

#[derive(Clone, Copy)]
enum Signer {
    Hs,
    Rs,
    Es,
    Ed,
    /// The RSA key published only in the JWKS, under kid `rsa2`.
    JwksRsa,
}

fn sign(signer: Signer, claims: &Value, kid: Option<&str>) -> String {
    let (alg, key) = match signer {
        Signer::Hs => (
            Algorithm::HS256,
            EncodingKey::from_secret(HS_SECRET.as_bytes()),
        ),
        Signer::Rs => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&pem("rsa-private.pem")).unwrap(),
        ),
        Signer::Es => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&pem("ec-private.pem")).unwrap(),
        ),
        Signer::Ed => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&pem("ed25519-private.pem")).unwrap(),
        ),
        Signer::JwksRsa => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&pem("rsa2-private.pem")).unwrap(),
        ),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Valid claims for the `user` scope; tests change what they need.
fn claims(scope: &str) -> Value {
    json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": "mcp",
        "exp": now() + 300,
        "iat": now(),
        "scope": scope,
    })
}

fn write_jwks(dir: &std::path::Path) -> PathBuf {
    let rsa = EncodingKey::from_rsa_pem(&pem("rsa2-private.pem")).unwrap();
    let mut rsa_jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap();
    rsa_jwk.common.key_id = Some("rsa2".into());
    let ec = EncodingKey::from_ec_pem(&pem("ec-private.pem")).unwrap();
    let mut ec_jwk = Jwk::from_encoding_key(&ec, Algorithm::ES256).unwrap();
    ec_jwk.common.key_id = Some("ec1".into());
    let set = JwkSet {
        keys: vec![rsa_jwk, ec_jwk],
    };
    let path = dir.join("jwks.json");
    std::fs::write(&path, serde_json::to_vec(&set).unwrap()).unwrap();
    path
}

struct Setup {
    _dir: TempDir,
    _upstream: Upstream,
    gateway: Gateway,
}

fn auth_config(dir: &std::path::Path) -> AuthConfig {
    let secret = dir.join("jwt.secret");
    std::fs::write(&secret, format!("{HS_SECRET}\n")).unwrap();
    AuthConfig {
        issuer: Some(ISSUER.into()),
        authorization_servers: vec![ISSUER.into()],
        keys: vec![
            KeySource::Hs256SecretFile(secret),
            KeySource::PublicKeyFile {
                path: key_file("rsa-public.pem"),
                algorithm: Algorithm::RS256,
            },
            KeySource::PublicKeyFile {
                path: key_file("ec-public.pem"),
                algorithm: Algorithm::ES256,
            },
            KeySource::PublicKeyFile {
                path: key_file("ed25519-public.pem"),
                algorithm: Algorithm::EdDSA,
            },
            KeySource::JwksFile(write_jwks(dir)),
        ],
        leeway: Duration::from_secs(2),
    }
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path(), auth_config(dir.path()));
    let upstream = Upstream::start().await;
    let running = status(ServerState::Running, Some(upstream.port));
    let mut client_bound = oauth(&["user"]);
    client_bound.client_id = Some("app-1".into());
    let servers = vec![
        (
            server_config(&config, "open", "/echo", no_oauth()),
            running.clone(),
        ),
        (
            server_config(&config, "user", "/echo", oauth(&["user", "reader"])),
            running.clone(),
        ),
        (
            server_config(&config, "admin-only", "/echo", oauth(&["admin"])),
            running.clone(),
        ),
        (
            server_config(&config, "client", "/echo", client_bound),
            running,
        ),
    ];
    let gateway = Gateway::start(directory(servers), config, GatewayOptions::default()).await;
    Setup {
        _dir: dir,
        _upstream: upstream,
        gateway,
    }
}

fn metadata(server: &str) -> String {
    format!("http://localhost:8080/.well-known/oauth-protected-resource/api/v1/mcp/{server}/mcp")
}

async fn call(
    s: &Setup,
    server: &str,
    authorization: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    call_path(s, &format!("/api/v1/mcp/{server}/mcp"), authorization).await
}

async fn call_path(
    s: &Setup,
    path: &str,
    authorization: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = Request::post(s.gateway.url(path))
        .header("x-mcp-subject", "spoofed")
        .header("x-mcp-scopes", "admin");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let (status, headers, bytes) = send(&client(), request.body(body("{}")).unwrap()).await;
    (status, headers, json(&bytes))
}

async fn with_token(s: &Setup, server: &str, token: &str) -> (StatusCode, HeaderMap, Value) {
    call(s, server, Some(&format!("Bearer {token}"))).await
}

fn upstream_header(echo: &Value, name: &str) -> Option<String> {
    echo["headers"][name].as_array().map(|values| {
        assert_eq!(values.len(), 1, "{name}: {values:?}");
        values[0].as_str().unwrap().to_owned()
    })
}

/// Passed through: the upstream saw the verified identity and no client credentials.
fn assert_allowed(result: (StatusCode, HeaderMap, Value), scopes: &str) {
    let (status, _, echo) = result;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(
        upstream_header(&echo, "x-mcp-subject").as_deref(),
        Some("alice")
    );
    assert_eq!(
        upstream_header(&echo, "x-mcp-scopes").as_deref(),
        Some(scopes)
    );
    assert_eq!(upstream_header(&echo, "authorization"), None);
}

fn assert_invalid_token(result: (StatusCode, HeaderMap, Value), server: &str) {
    let (status, headers, body) = result;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        headers["www-authenticate"],
        format!(
            "Bearer error=\"invalid_token\", resource_metadata=\"{}\"",
            metadata(server)
        )
    );
    assert_eq!(body["server"], server);
}

fn assert_no_token(result: (StatusCode, HeaderMap, Value), server: &str) {
    let (status, headers, body) = result;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        headers["www-authenticate"],
        format!("Bearer resource_metadata=\"{}\"", metadata(server))
    );
}

fn assert_insufficient(result: (StatusCode, HeaderMap, Value), server: &str, scopes: &str) {
    let (status, headers, body) = result;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        headers["www-authenticate"],
        format!(
            "Bearer error=\"insufficient_scope\", scope=\"{scopes}\", resource_metadata=\"{}\"",
            metadata(server)
        )
    );
    assert_eq!(body["server"], server);
}

#[tokio::test]
async fn valid_hs256() {
    let s = setup().await;
    let token = sign(Signer::Hs, &claims("user"), None);
    assert_allowed(with_token(&s, "user", &token).await, "user");
    // Verified once, then served from the cache: the same answer.
    assert_allowed(with_token(&s, "user", &token).await, "user");
    assert_eq!(s.gateway.ctx.live().auth.cached_tokens(), 1);
}

#[tokio::test]
async fn valid_rs256() {
    let s = setup().await;
    let token = sign(Signer::Rs, &claims("user"), None);
    assert_allowed(with_token(&s, "user", &token).await, "user");
}

#[tokio::test]
async fn valid_es256() {
    let s = setup().await;
    let token = sign(Signer::Es, &claims("reader"), None);
    assert_allowed(with_token(&s, "user", &token).await, "reader");
}

#[tokio::test]
async fn valid_eddsa() {
    let s = setup().await;
    let token = sign(Signer::Ed, &claims("user"), None);
    assert_allowed(with_token(&s, "user", &token).await, "user");
}

#[tokio::test]
async fn jwks_key_selected_by_kid() {
    let s = setup().await;
    let token = sign(Signer::JwksRsa, &claims("user"), Some("rsa2"));
    assert_allowed(with_token(&s, "user", &token).await, "user");
    // The same key under a kid the JWKS does not have, or the EC key's kid: refused.
    let token = sign(Signer::JwksRsa, &claims("user"), Some("unknown"));
    assert_invalid_token(with_token(&s, "user", &token).await, "user");
    let token = sign(Signer::JwksRsa, &claims("user"), Some("ec1"));
    assert_invalid_token(with_token(&s, "user", &token).await, "user");
}

#[tokio::test]
async fn expired_token() {
    let s = setup().await;
    let mut c = claims("user");
    c["exp"] = json!(now() - 60);
    assert_invalid_token(
        with_token(&s, "user", &sign(Signer::Hs, &c, None)).await,
        "user",
    );
}

#[tokio::test]
async fn missing_exp() {
    let s = setup().await;
    let mut c = claims("user");
    c.as_object_mut().unwrap().remove("exp");
    assert_invalid_token(
        with_token(&s, "user", &sign(Signer::Hs, &c, None)).await,
        "user",
    );
}

#[tokio::test]
async fn nbf_in_the_future() {
    let s = setup().await;
    let mut c = claims("user");
    c["nbf"] = json!(now() + 120);
    assert_invalid_token(
        with_token(&s, "user", &sign(Signer::Hs, &c, None)).await,
        "user",
    );
}

#[tokio::test]
async fn wrong_or_missing_issuer() {
    let s = setup().await;
    let mut c = claims("user");
    c["iss"] = json!("https://other.test");
    assert_invalid_token(
        with_token(&s, "user", &sign(Signer::Hs, &c, None)).await,
        "user",
    );
    c.as_object_mut().unwrap().remove("iss");
    assert_invalid_token(
        with_token(&s, "user", &sign(Signer::Hs, &c, None)).await,
        "user",
    );
    // An array is not one issuer, even when it holds the right one (jsonwebtoken accepts it).
    for iss in [
        json!([ISSUER]),
        json!([ISSUER, "https://other.test"]),
        json!(1),
    ] {
        c["iss"] = iss;
        assert_invalid_token(
            with_token(&s, "user", &sign(Signer::Hs, &c, None)).await,
            "user",
        );
    }
}

#[tokio::test]
async fn tokens_with_critical_extensions_are_refused() {
    let s = setup().await;
    let key = EncodingKey::from_secret(HS_SECRET.as_bytes());
    for crit in [vec!["exp".to_owned()], vec!["b64".to_owned()], Vec::new()] {
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(crit.clone());
        let token = jsonwebtoken::encode(&header, &claims("user"), &key).unwrap();
        let (status, _, body) = with_token(&s, "user", &token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{crit:?}: {body}");
        assert!(body.to_string().contains("crit"), "{body}");
    }
}

#[tokio::test]
async fn missing_audience() {
    let s = setup().await;
    let mut c = claims("user");
    c.as_object_mut().unwrap().remove("aud");
    assert_invalid_token(
        with_token(&s, "user", &sign(Signer::Hs, &c, None)).await,
        "user",
    );
}

#[tokio::test]
async fn wrong_audience() {
    let s = setup().await;
    let mut c = claims("user");
    c["aud"] = json!(["other", "another"]);
    assert_insufficient(
        with_token(&s, "user", &sign(Signer::Hs, &c, None)).await,
        "user",
        "user reader",
    );
    // An array that contains the audience passes.
    c["aud"] = json!(["other", "mcp"]);
    assert_allowed(
        with_token(&s, "user", &sign(Signer::Hs, &c, None)).await,
        "user",
    );
}

#[tokio::test]
async fn no_scope() {
    let s = setup().await;
    let mut c = claims("user");
    c.as_object_mut().unwrap().remove("scope");
    assert_insufficient(
        with_token(&s, "user", &sign(Signer::Hs, &c, None)).await,
        "user",
        "user reader",
    );
}

#[tokio::test]
async fn scp_claim_as_array_or_string() {
    let s = setup().await;
    let mut c = claims("user");
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["other", "reader"]);
    assert_allowed(
        with_token(&s, "user", &sign(Signer::Hs, &c, None)).await,
        "other reader",
    );
    c["scp"] = json!("reader other");
    assert_allowed(
        with_token(&s, "user", &sign(Signer::Hs, &c, None)).await,
        "reader other",
    );
}

#[tokio::test]
async fn user_scope_on_an_admin_only_server() {
    let s = setup().await;
    let token = sign(Signer::Hs, &claims("user reader"), None);
    assert_insufficient(
        with_token(&s, "admin-only", &token).await,
        "admin-only",
        "admin",
    );
    // The same cached token still passes where its scope fits: per-server checks run each time.
    assert_allowed(with_token(&s, "user", &token).await, "user reader");
}

#[tokio::test]
async fn admin_scope_passes_every_server() {
    let s = setup().await;
    let token = sign(Signer::Rs, &claims("admin"), None);
    assert_allowed(with_token(&s, "user", &token).await, "admin");
    assert_allowed(with_token(&s, "admin-only", &token).await, "admin");
}

#[tokio::test]
async fn client_id_must_match() {
    let s = setup().await;
    let mut c = claims("user");
    c["client_id"] = json!("app-2");
    assert_insufficient(
        with_token(&s, "client", &sign(Signer::Hs, &c, None)).await,
        "client",
        "user",
    );
    c.as_object_mut().unwrap().remove("client_id");
    assert_insufficient(
        with_token(&s, "client", &sign(Signer::Hs, &c, None)).await,
        "client",
        "user",
    );
    c["azp"] = json!("app-1");
    let (status, _, echo) = with_token(&s, "client", &sign(Signer::Hs, &c, None)).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    assert_eq!(
        upstream_header(&echo, "x-mcp-client-id").as_deref(),
        Some("app-1")
    );
    c["client_id"] = json!("app-1");
    c.as_object_mut().unwrap().remove("azp");
    let (status, _, _) = with_token(&s, "client", &sign(Signer::Hs, &c, None)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn alg_none_is_refused() {
    let s = setup().await;
    // base64url of {"alg":"none","typ":"JWT"}, with the claims of a genuine token.
    let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let genuine = sign(Signer::Hs, &claims("admin"), None);
    let payload = genuine.split('.').nth(1).unwrap();
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        assert_invalid_token(with_token(&s, "user", &token).await, "user");
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let s = setup().await;
    let key = EncodingKey::from_secret(&pem("rsa-public.pem"));
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims("admin"), &key).unwrap();
    assert_invalid_token(with_token(&s, "user", &token).await, "user");
}

#[tokio::test]
async fn garbage_tokens() {
    let s = setup().await;
    for token in ["garbage", "a.b.c", "", "...."] {
        assert_invalid_token(with_token(&s, "user", token).await, "user");
    }
    // A valid token with one flipped signature character.
    let mut token = sign(Signer::Hs, &claims("user"), None);
    let last = token.pop().unwrap();
    token.push(if last == 'A' { 'B' } else { 'A' });
    assert_invalid_token(with_token(&s, "user", &token).await, "user");
}

#[tokio::test]
async fn missing_token_or_bearer_prefix() {
    let s = setup().await;
    assert_no_token(call(&s, "user", None).await, "user");
    let token = sign(Signer::Hs, &claims("user"), None);
    assert_no_token(call(&s, "user", Some(&token)).await, "user");
    assert_no_token(
        call(&s, "user", Some(&format!("Basic {token}"))).await,
        "user",
    );
    // The scheme is case-insensitive.
    assert_allowed(
        call(&s, "user", Some(&format!("bearer {token}"))).await,
        "user",
    );
}

#[tokio::test]
async fn token_in_query_string_is_refused() {
    let s = setup().await;
    let token = sign(Signer::Hs, &claims("user"), None);
    let (status, headers, body) = call_path(
        &s,
        &format!("/api/v1/mcp/user/mcp?access_token={token}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        headers["www-authenticate"],
        format!(
            "Bearer error=\"invalid_request\", resource_metadata=\"{}\"",
            metadata("user")
        )
    );
    // In any spelling a server could read as access_token, with & or ; between parameters.
    for query in [
        "ACCESS_TOKEN=x",
        "access%5Ftoken=x",
        "a=1;access_token=x",
        "a=1;Access%5ftoken=x",
    ] {
        let (status, _, body) = call_path(&s, &format!("/api/v1/mcp/user/mcp?{query}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
    }
    // Even together with a valid header.
    let (status, _, _) = call_path(
        &s,
        &format!("/api/v1/mcp/user/mcp?access_token={token}"),
        Some(&format!("Bearer {token}")),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn open_servers_never_see_client_identity_headers() {
    let s = setup().await;
    let token = sign(Signer::Hs, &claims("admin"), None);
    let (status, _, echo) = with_token(&s, "open", &token).await;
    assert_eq!(status, StatusCode::OK, "{echo}");
    for name in [
        "x-mcp-subject",
        "x-mcp-scopes",
        "x-mcp-client-id",
        "authorization",
    ] {
        assert_eq!(upstream_header(&echo, name), None, "{name}");
    }
}

#[tokio::test]
async fn reload_swaps_keys_and_empties_the_cache() {
    let s = setup().await;
    let token = sign(Signer::Hs, &claims("user"), None);
    assert_allowed(with_token(&s, "user", &token).await, "user");
    let mut config = s.gateway.ctx.live().config.clone();
    config
        .auth
        .keys
        .retain(|key| !matches!(key, KeySource::Hs256SecretFile(_)));
    s.gateway.ctx.reload(config.clone()).unwrap();
    assert_invalid_token(with_token(&s, "user", &token).await, "user");

    // A reload whose keys fail to load changes nothing.
    config
        .auth
        .keys
        .push(KeySource::Hs256SecretFile("/nonexistent/secret".into()));
    let err = s.gateway.ctx.reload(config).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/secret"), "{err}");
    let rs = sign(Signer::Rs, &claims("user"), None);
    assert_allowed(with_token(&s, "user", &rs).await, "user");
}
