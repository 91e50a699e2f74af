//! The 2026-07-28 routing headers: `Mcp-Method` names the method of every POST and `Mcp-Name`
//! the target of `tools/call`, `prompts/get` and `resources/*`. Intermediaries act on the
//! headers and servers on the body, so the two must agree or the request is refused (-32020);
//! otherwise a client could show the gateway one tool and the server another.
//!
//! A value that is not plain visible ASCII travels as `=?base64?<standard base64 of UTF-8>?=`
//! and is decoded before comparing.

use std::borrow::Cow;

use base64::Engine;
use http::HeaderMap;

use super::{EnvelopeError, HEADER_MISMATCH, INVALID_REQUEST, Message};

pub const MCP_METHOD: &str = "mcp-method";
pub const MCP_NAME: &str = "mcp-name";

/// What [`check_headers`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderCheck {
    /// The request is not of a generation that carries the headers.
    NotApplicable,
    Agree,
}

/// True for `MCP-Protocol-Version` values of the stateless generation (2026-07-28 and later;
/// versions are dates, so they compare as text).
pub fn is_stateless_version(version: &str) -> bool {
    version.len() == 10 && version >= "2026-07-28"
}

/// Checks `Mcp-Method` and `Mcp-Name` against a body's messages when the request declares a
/// protocol version of 2026-07-28 or later.
pub fn check_headers(
    headers: &HeaderMap,
    messages: &[Message<'_>],
    batch: bool,
) -> Result<HeaderCheck, EnvelopeError> {
    let stateless = headers
        .get("mcp-protocol-version")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|version| is_stateless_version(version.trim()));
    if !stateless {
        return Ok(HeaderCheck::NotApplicable);
    }
    if batch {
        return Err(EnvelopeError {
            code: INVALID_REQUEST,
            message: "protocol 2026-07-28 has no batches: send one message per request".into(),
        });
    }
    let Some(message) = messages.first() else {
        return Ok(HeaderCheck::Agree);
    };
    let method_header = single(headers, MCP_METHOD)?;
    match (&message.method, method_header) {
        (None, None) => {}
        (Some(_), None) => return Err(mismatch("the Mcp-Method header is required")),
        (None, Some(_)) => {
            return Err(mismatch(
                "Mcp-Method is set but the body is a response, which has no method",
            ));
        }
        (Some(method), Some(header)) if header != method.as_ref() => {
            return Err(mismatch(
                "the Mcp-Method header does not match the body's method",
            ));
        }
        _ => {}
    }
    let target = match message.method.as_deref() {
        Some("tools/call" | "prompts/get") => message.name.as_deref(),
        Some("resources/read" | "resources/subscribe" | "resources/unsubscribe") => {
            message.uri.as_deref()
        }
        _ => None,
    };
    let name_header = single(headers, MCP_NAME)?;
    match (target, name_header) {
        (None, None) => Ok(HeaderCheck::Agree),
        (Some(_), None) => Err(mismatch("the Mcp-Name header is required for this method")),
        (None, Some(_)) => Err(mismatch(
            "Mcp-Name is set but the body names no tool, prompt or resource",
        )),
        (Some(target), Some(header)) => match decode(header) {
            Some(decoded) if decoded == target => Ok(HeaderCheck::Agree),
            Some(_) => Err(mismatch("the Mcp-Name header does not match the body")),
            None => Err(mismatch("the Mcp-Name header is not validly encoded")),
        },
    }
}

/// The one value of `name`, as text: two of them, or bytes that are not text, are refused.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, EnvelopeError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(mismatch(&format!(
            "the {name} header appears more than once"
        )));
    }
    first
        .to_str()
        .map(|text| Some(text.trim()))
        .map_err(|_| mismatch(&format!("the {name} header is not visible ASCII")))
}

/// `value` as a header carries it: plain when it is visible ASCII without edge spaces (and
/// does not look encoded), else `=?base64?...?=` (the inverse of `decode`).
pub fn header_text(value: &str) -> Cow<'_, str> {
    let plain = value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && value.trim() == value
        && !value.starts_with("=?base64?");
    if plain {
        Cow::Borrowed(value)
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
        Cow::Owned(format!("=?base64?{encoded}?="))
    }
}

/// A header value as sent: plain, or `=?base64?...?=`.
fn decode(value: &str) -> Option<Cow<'_, str>> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        Some(encoded) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()?;
            String::from_utf8(bytes).ok().map(Cow::Owned)
        }
        None => Some(Cow::Borrowed(value)),
    }
}

fn mismatch(message: &str) -> EnvelopeError {
    EnvelopeError {
        code: HEADER_MISMATCH,
        message: message.to_owned(),
    }
}
