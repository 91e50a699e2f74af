//! What the proxy does differently for a remote server (`url:`): the request carries the
//! remote's own `Host`, no cookie of the caller (the caller's `Authorization` is removed for
//! every server) and the operator's credential; a redirect is answered with 502 instead of
//! being followed or passed on (its `Location` would send the client, or its token, to
//! another host).

use http::header::{self, HeaderMap};
use http::{Response, StatusCode};

use super::response::{self, Body};
use crate::remote::RemoteTarget;

/// Sets the remote's `Host` and credential, and removes what only the gateway may see.
pub fn prepare(headers: &mut HeaderMap, target: &RemoteTarget) {
    headers.remove(header::COOKIE);
    headers.remove(header::AUTHORIZATION);
    headers.insert(header::HOST, target.host_header().clone());
    if let Some(credential) = &target.credential {
        headers.insert(credential.header.clone(), credential.value.clone());
    }
}

/// 502 for a redirect from a remote server; `None` for any other status.
pub fn refuse_redirect(server: &str, status: StatusCode) -> Option<Response<Body>> {
    if !status.is_redirection() {
        return None;
    }
    tracing::warn!(
        server,
        status = status.as_u16(),
        "the remote server answered with a redirect, which is not followed"
    );
    Some(response::error(
        StatusCode::BAD_GATEWAY,
        &format!(
            "the remote server answered with a redirect (HTTP {}), which mcpd does not follow; \
             fix the server's url",
            status.as_u16()
        ),
        Some(server),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::{Credential, RemoteUrl};

    #[test]
    fn the_callers_credentials_never_reach_a_remote() {
        let url = RemoteUrl::parse("https://mcp.example.com:8443/mcp").unwrap();
        let credential = Credential::from_file(
            http::HeaderName::from_static("x-api-key"),
            b"k3y\n",
            false,
            "key".into(),
        )
        .unwrap();
        let target = RemoteTarget::new(url, None, Some(credential)).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer caller".parse().unwrap());
        headers.insert(header::COOKIE, "session=caller".parse().unwrap());
        headers.insert(header::HOST, "gateway.local".parse().unwrap());
        headers.insert("x-api-key", "caller-key".parse().unwrap());
        prepare(&mut headers, &target);
        assert!(headers.get(header::AUTHORIZATION).is_none());
        assert!(headers.get(header::COOKIE).is_none());
        assert_eq!(headers[header::HOST], "mcp.example.com:8443");
        assert_eq!(headers.get_all("x-api-key").iter().count(), 1);
        assert_eq!(headers["x-api-key"], "k3y");
    }

    #[test]
    fn redirects_are_refused() {
        assert!(refuse_redirect("r", StatusCode::OK).is_none());
        for status in [301, 302, 303, 307, 308] {
            let status = StatusCode::from_u16(status).unwrap();
            let answer = refuse_redirect("r", status).unwrap();
            assert_eq!(answer.status(), StatusCode::BAD_GATEWAY);
            assert!(answer.headers().get(header::LOCATION).is_none());
        }
    }
}
