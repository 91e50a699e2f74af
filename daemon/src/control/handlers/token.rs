//! `token`: mints an HS256 JWT with the daemon's own secret, for operators and tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcpd_protocol::{ErrorCode, Response, TokenReply, TokenRequest};
use serde::Serialize;

use super::{HandlerError, HandlerResult};
use crate::config::KeySource;
use crate::control::context::ControlContext;

/// The longest lifetime a minted token may have.
const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    aud: &'a str,
    scope: String,
    iat: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    client_id: &'static str,
}

pub(super) async fn token(ctx: &ControlContext, request: TokenRequest) -> HandlerResult {
    if request.scopes.is_empty() {
        return Err(HandlerError::new(
            ErrorCode::InvalidArgument,
            "give at least one --scope",
        ));
    }
    if let Some(bad) = request
        .scopes
        .iter()
        .find(|s| s.is_empty() || s.contains(char::is_whitespace))
    {
        return Err(HandlerError::new(
            ErrorCode::InvalidArgument,
            format!("scope {bad:?} is empty or contains whitespace"),
        ));
    }
    let ttl = Duration::from_secs(request.ttl_secs);
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(HandlerError::new(
            ErrorCode::InvalidArgument,
            "--ttl must be between 1s and 366 days",
        ));
    }

    let config = ctx.config.load_full();
    let secret_file = config
        .auth
        .keys
        .iter()
        .find_map(|key| match key {
            KeySource::Hs256SecretFile(path) => Some(path.clone()),
            _ => None,
        })
        .ok_or_else(|| {
            HandlerError::new(
                ErrorCode::NotConfigured,
                "no HS256 key is configured; add `- {hs256_secret_file: PATH}` under auth.keys in mcpd.yaml",
            )
        })?;
    let read = {
        let secret_file = secret_file.clone();
        tokio::task::spawn_blocking(move || crate::config::read_config_file(&secret_file)).await
    };
    let secret = read
        .map_err(std::io::Error::other)
        .and_then(|read| read)
        .map_err(|e| {
            HandlerError::new(
                ErrorCode::NotConfigured,
                format!(
                    "cannot read the HS256 secret {}: {e}",
                    secret_file.display()
                ),
            )
        })?;
    let secret = trim_trailing_newlines(&secret);
    if secret.is_empty() {
        return Err(HandlerError::new(
            ErrorCode::NotConfigured,
            format!("the HS256 secret {} is empty", secret_file.display()),
        ));
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let exp = now + ttl.as_secs();
    let claims = Claims {
        sub: request.subject.as_deref().unwrap_or("mcpctl"),
        aud: request.audience.as_deref().unwrap_or("mcp"),
        scope: request.scopes.join(" "),
        iat: now,
        exp,
        iss: config.auth.issuer.as_deref(),
        client_id: "mcpctl",
    };
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| HandlerError::new(ErrorCode::Internal, format!("cannot sign the token: {e}")))?;
    Ok(Response::Token(TokenReply {
        token,
        expires_at_unix: exp,
    })
    .into())
}

/// The secret file's content without its trailing line break(s), as the gateway reads it.
fn trim_trailing_newlines(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|b| *b != b'\n' && *b != b'\r')
        .map_or(0, |i| i + 1);
    &bytes[..end]
}

#[cfg(test)]
mod tests {
    use super::trim_trailing_newlines;

    #[test]
    fn trims_only_trailing_line_breaks() {
        assert_eq!(trim_trailing_newlines(b"abc\n"), b"abc");
        assert_eq!(trim_trailing_newlines(b"abc\r\n\n"), b"abc");
        assert_eq!(trim_trailing_newlines(b" a\nb "), b" a\nb ");
        assert_eq!(trim_trailing_newlines(b"\n"), b"");
    }
}
