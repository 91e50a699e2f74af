//! The operator's credential for a remote server (`upstream_auth`): a header name and a value
//! read from a file. The value is never logged, shown or compared in the open; `Debug`
//! prints only the header's name and the file.

use std::path::PathBuf;

use http::{HeaderName, HeaderValue};

/// The header a remote server receives on every request from mcpd.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub header: HeaderName,
    /// Marked sensitive (HPACK never indexes it).
    pub value: HeaderValue,
    /// Where it was read from.
    pub file: PathBuf,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("header", &self.header)
            .field("file", &self.file)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// Why a credential file cannot be used; never quotes the file's content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("the file is empty")]
    Empty,
    #[error("the file holds more than one line (a line break inside the value)")]
    LineBreak,
    #[error("the file holds a control character or a byte outside printable ASCII (at byte {0})")]
    Control(usize),
    #[error("the value starts or ends with white space")]
    Padded,
}

impl Credential {
    /// `header: <value>` from the bytes of a file: one line of printable ASCII, a single
    /// trailing line break (LF or CRLF) allowed. `bearer` prefixes `Bearer `.
    pub fn from_file(
        header: HeaderName,
        bytes: &[u8],
        bearer: bool,
        file: PathBuf,
    ) -> Result<Credential, CredentialError> {
        let text = bytes
            .strip_suffix(b"\n")
            .map(|rest| rest.strip_suffix(b"\r").unwrap_or(rest))
            .unwrap_or(bytes);
        if text.is_empty() {
            return Err(CredentialError::Empty);
        }
        if text.iter().any(|b| *b == b'\n' || *b == b'\r') {
            return Err(CredentialError::LineBreak);
        }
        if let Some(at) = text.iter().position(|b| !(0x20..0x7f).contains(b)) {
            return Err(CredentialError::Control(at));
        }
        if text.first() == Some(&b' ') || text.last() == Some(&b' ') {
            return Err(CredentialError::Padded);
        }
        let mut value = Vec::with_capacity(text.len() + 7);
        if bearer {
            value.extend_from_slice(b"Bearer ");
        }
        value.extend_from_slice(text);
        // Printable ASCII is always a valid header value.
        let mut value = HeaderValue::from_bytes(&value).map_err(|_| CredentialError::Control(0))?;
        value.set_sensitive(true);
        Ok(Credential {
            header,
            value,
            file,
        })
    }
}

/// Why `name` cannot carry the credential (`upstream_auth.header`), if it cannot: not an
/// HTTP token, a header about the connection or the message, one the gateway sets itself,
/// or one whose name has `_` (refused on every request, like nginx).
pub fn refused_header_name(name: &str) -> Option<&'static str> {
    let Ok(parsed) = HeaderName::from_bytes(name.as_bytes()) else {
        return Some("is not a valid HTTP header name (a token: letters, digits, !#$%&'*+-.^_`|~)");
    };
    let lower = parsed.as_str();
    if lower.contains('_') {
        return Some("contains `_`; such headers are dropped on the way (write `-`)");
    }
    if lower.starts_with("x-mcp-") || lower.starts_with("mcp-") {
        return Some("is set by mcpd or the MCP client (X-MCP-*, Mcp-*)");
    }
    if lower.starts_with("x-forwarded-") || lower == "forwarded" || lower == "x-real-ip" {
        return Some("is a forwarding header, set by the gateway");
    }
    match lower {
        "connection"
        | "keep-alive"
        | "proxy-authenticate"
        | "proxy-authorization"
        | "proxy-connection"
        | "te"
        | "trailer"
        | "transfer-encoding"
        | "upgrade" => Some("is a hop-by-hop header, which never reaches the server"),
        "host" => Some("is the server's host, set from url"),
        "content-length" | "content-type" | "accept" | "accept-encoding" | "content-encoding" => {
            Some("describes the message itself")
        }
        "authorization" => Some("is what bearer_file sets; use upstream_auth: {bearer_file: F}"),
        "cookie" => Some("is never forwarded (callers' cookies are dropped); use another header"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Credential, CredentialError> {
        Credential::from_file(http::header::AUTHORIZATION, bytes, true, PathBuf::from("t"))
    }

    #[test]
    fn one_line_with_an_optional_line_break() {
        assert_eq!(read(b"abc\n").unwrap().value, "Bearer abc");
        assert_eq!(read(b"abc\r\n").unwrap().value, "Bearer abc");
        assert_eq!(read(b"abc").unwrap().value, "Bearer abc");
        assert!(read(b"abc").unwrap().value.is_sensitive());
    }

    #[test]
    fn refuses_what_could_break_a_header() {
        assert_eq!(read(b""), Err(CredentialError::Empty));
        assert_eq!(read(b"\n"), Err(CredentialError::Empty));
        assert_eq!(read(b"a\nb"), Err(CredentialError::LineBreak));
        assert_eq!(read(b"a\rb\n"), Err(CredentialError::LineBreak));
        assert_eq!(read(b"a\nb\n"), Err(CredentialError::LineBreak));
        assert_eq!(read(b"a\x1b[2Jb"), Err(CredentialError::Control(1)));
        assert_eq!(read(b"a\0"), Err(CredentialError::Control(1)));
        assert_eq!(read("é".as_bytes()), Err(CredentialError::Control(0)));
        assert_eq!(read(b" abc"), Err(CredentialError::Padded));
    }

    #[test]
    fn the_value_never_shows_in_debug() {
        let text = format!("{:?}", read(b"s3cret").unwrap());
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn header_names() {
        assert_eq!(refused_header_name("X-Api-Key"), None);
        for bad in [
            "X Api",
            "",
            "X_Api_Key",
            "Host",
            "Connection",
            "Transfer-Encoding",
            "Authorization",
            "Cookie",
            "X-MCP-Subject",
            "Mcp-Session-Id",
            "X-Forwarded-For",
            "Content-Length",
        ] {
            assert!(refused_header_name(bad).is_some(), "{bad}");
        }
    }
}
