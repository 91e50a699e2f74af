//! The `url:` of a remote server: `http` or `https`, a host, an optional port and path; no
//! user information (credentials go in `upstream_auth`) and no fragment.

use http::{HeaderValue, Uri};

/// A checked remote URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    /// As written.
    pub text: String,
    pub https: bool,
    /// The host to connect to and to name in TLS (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written: the `Host` header.
    pub authority: HeaderValue,
    /// Path and query, starting with `/`: the request target of every request.
    pub target: String,
}

impl RemoteUrl {
    pub fn parse(text: &str) -> Result<RemoteUrl, String> {
        if text.contains('#') {
            return Err("has a fragment (#...); a fragment is never sent to a server".into());
        }
        if let Some(bad) = text.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "contains {:?}; write visible characters only, percent-encoded",
                bad
            ));
        }
        let uri: Uri = text.parse().map_err(|err| {
            format!("is not a URL ({err}); write e.g. https://mcp.example.com/mcp")
        })?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(other) => {
                return Err(format!(
                    "has the scheme {other:?}; only http and https are supported"
                ));
            }
            None => return Err("has no scheme; write https://host/path".into()),
        };
        let Some(authority) = uri.authority() else {
            return Err("has no host".into());
        };
        if authority.as_str().contains('@') {
            return Err(
                "carries user information (user:password@); put the credential in a file \
                 named by upstream_auth instead"
                    .into(),
            );
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err("has no host".into());
        }
        let port = match authority.port_u16() {
            Some(0) => return Err("has port 0".into()),
            Some(port) => port,
            None if authority.as_str().ends_with(':') => return Err("has an empty port".into()),
            None if https => 443,
            None => 80,
        };
        let target = match uri.path_and_query() {
            Some(target) if target.as_str().starts_with('/') => target.as_str().to_owned(),
            Some(target) if target.as_str().is_empty() => "/".to_owned(),
            Some(target) => format!("/{}", target.as_str()),
            None => "/".to_owned(),
        };
        let authority = HeaderValue::from_str(authority.as_str())
            .map_err(|_| "has a host that cannot go in a Host header".to_owned())?;
        Ok(RemoteUrl {
            text: text.to_owned(),
            https,
            host: host.to_owned(),
            port,
            authority,
            target,
        })
    }

    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_http_and_https_urls() {
        let url = RemoteUrl::parse("https://mcp.example.com/mcp").unwrap();
        assert!(url.https);
        assert_eq!(url.host, "mcp.example.com");
        assert_eq!(url.port, 443);
        assert_eq!(url.authority, "mcp.example.com");
        assert_eq!(url.target, "/mcp");
        let url = RemoteUrl::parse("http://127.0.0.1:8080/api/v1/mcp/echo/mcp?x=1").unwrap();
        assert!(!url.https);
        assert_eq!(url.port, 8080);
        assert_eq!(url.authority, "127.0.0.1:8080");
        assert_eq!(url.target, "/api/v1/mcp/echo/mcp?x=1");
        let url = RemoteUrl::parse("https://[::1]:8443").unwrap();
        assert_eq!(url.host, "::1");
        assert_eq!(url.address(), "[::1]:8443");
        assert_eq!(url.target, "/");
    }

    #[test]
    fn refuses_what_cannot_be_a_remote_server() {
        for (bad, why) in [
            ("ftp://example.com/mcp", "scheme"),
            ("example.com/mcp", "URL"),
            ("https://user:pw@example.com/mcp", "user information"),
            ("https://example.com/mcp#top", "fragment"),
            ("https://example.com/m cp", "visible"),
            ("https://example.com/mcp\r\nX: y", "visible"),
            ("https://:443/mcp", "host"),
            ("https://example.com:0/mcp", "port 0"),
        ] {
            let err = RemoteUrl::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
