//! One JSON-RPC message read raw, for the stdio bridge: `id`, `params`, `result` and
//! `error` stay raw JSON text, so a large result is passed on without being decoded and
//! encoded again. Rewriting a message (a new id, a new progress token) splices the raw parts
//! into a new object.
//!
//! Keys are read and refused as the gateway's reader does ([`super::parse`]): decoded, so
//! `"m\u0065thod"` is `method`, and a key twice (`{"id":1,"id":2}`) refuses the message, as
//! the server and mcpd must not read different ids from the same bytes. Unlike the gateway's
//! reader it also refuses keys JSON-RPC does not define, and batches (arrays).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::{INVALID_MARK, Text, first_time, invalid};

/// One JSON-RPC message, borrowed from the bytes it was read from. A member written as
/// `null` reads as absent.
#[derive(Debug, Default)]
pub struct Envelope<'a> {
    pub id: Option<&'a RawValue>,
    pub method: Option<Cow<'a, str>>,
    pub params: Option<&'a RawValue>,
    pub result: Option<&'a RawValue>,
    pub error: Option<&'a RawValue>,
}

/// The deepest nesting of arrays and objects accepted from a caller: servers' JSON readers
/// commonly stop at 128, and one that drops a message it cannot read leaves its caller
/// waiting.
pub const MAX_DEPTH: usize = 64;

/// True when `bytes` nest arrays and objects deeper than `max` (strings are skipped, so
/// brackets inside them do not count). A linear scan, cheaper than parsing.
pub fn too_deep(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
}

impl<'a> Envelope<'a> {
    /// Reads the envelope of `bytes`; the error says what is wrong, for a JSON-RPC error.
    pub fn parse(bytes: &'a [u8]) -> Result<Envelope<'a>, String> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'[') {
            return Err("JSON-RPC batches are not supported".to_owned());
        }
        if first != Some(&b'{') {
            return Err("not a JSON-RPC message (a JSON object)".to_owned());
        }
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let envelope = deserializer
            .deserialize_map(EnvelopeVisitor)
            .and_then(|envelope| deserializer.end().map(|()| envelope))
            .map_err(|err| {
                let text = err.to_string();
                let reason = text.strip_prefix(INVALID_MARK).unwrap_or(&text);
                format!("not a valid JSON-RPC message: {reason}")
            })?;
        envelope.kind()?;
        Ok(envelope)
    }

    /// The kind, from which fields are present; an error for a mix no peer should send.
    pub fn kind(&self) -> Result<Kind, String> {
        let id = self.id.filter(|id| id.get() != "null");
        match (
            &self.method,
            id,
            self.result.is_some() || self.error.is_some(),
        ) {
            (Some(_), Some(id), false) => {
                let first = id.get().as_bytes().first();
                if matches!(first, Some(b'"' | b'-' | b'0'..=b'9')) {
                    Ok(Kind::Request)
                } else {
                    Err("a request id must be a string or a number".to_owned())
                }
            }
            (Some(_), None, false) => Ok(Kind::Notification),
            (None, Some(_), true) => Ok(Kind::Response),
            _ => Err("a message must be a request, a notification or a response".to_owned()),
        }
    }
}

/// The members of one message; each may appear once, and no other key is allowed.
struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = Envelope<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message (an object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut envelope = Envelope::default();
        let mut seen = 0u8;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let (bit, slot) = match key.as_ref() {
                "jsonrpc" => (1, None),
                "id" => (2, Some(&mut envelope.id)),
                "method" => {
                    first_time(&mut seen, 4, "method")?;
                    let method: Option<Text<'de>> = map.next_value()?;
                    envelope.method = method.map(|Text(method)| method);
                    continue;
                }
                "params" => (8, Some(&mut envelope.params)),
                "result" => (16, Some(&mut envelope.result)),
                "error" => (32, Some(&mut envelope.error)),
                other => {
                    return Err(invalid(format_args!(
                        "the key \"{other}\" is not a JSON-RPC member"
                    )));
                }
            };
            first_time(&mut seen, bit, &key)?;
            match slot {
                Some(slot) => *slot = map.next_value()?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(envelope)
    }
}

/// `{"jsonrpc":"2.0","id":<id>,"method":"<method>","params":<params>}` (no `id` when `None`,
/// no `params` when `None`).
pub fn render_request(id: Option<&str>, method: &str, params: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + method.len() + params.map_or(0, str::len));
    out.extend_from_slice(br#"{"jsonrpc":"2.0","#);
    if let Some(id) = id {
        out.extend_from_slice(br#""id":"#);
        out.extend_from_slice(id.as_bytes());
        out.push(b',');
    }
    out.extend_from_slice(br#""method":"#);
    // A method name read from JSON: re-encoding it cannot fail.
    out.extend_from_slice(serde_json::to_string(method).unwrap_or_default().as_bytes());
    if let Some(params) = params {
        out.extend_from_slice(br#","params":"#);
        out.extend_from_slice(params.as_bytes());
    }
    out.push(b'}');
    out
}

/// A response with `id` and either `result` or `error` (raw JSON).
pub fn render_response(id: &str, result: Option<&str>, error: Option<&str>) -> Vec<u8> {
    let (key, value) = match (result, error) {
        (_, Some(error)) => ("error", error),
        (Some(result), None) => ("result", result),
        (None, None) => ("result", "{}"),
    };
    format!(r#"{{"jsonrpc":"2.0","id":{id},"{key}":{value}}}"#).into_bytes()
}

/// A JSON-RPC error response with `code` and `message`.
pub fn render_error(id: &str, code: i64, message: &str) -> Vec<u8> {
    let error = serde_json::json!({ "code": code, "message": message }).to_string();
    render_response(id, None, Some(&error))
}

/// The progress token in `params._meta.progressToken`, if any.
pub fn progress_token(params: Option<&RawValue>) -> Option<Box<RawValue>> {
    #[derive(Deserialize)]
    struct Params {
        #[serde(rename = "_meta")]
        meta: Option<Meta>,
    }
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "progressToken")]
        token: Option<Box<RawValue>>,
    }
    let params: Params = serde_json::from_str(params?.get()).ok()?;
    params.meta?.token.filter(|token| token.get() != "null")
}

/// `params` with `_meta.progressToken` replaced by `token` (raw JSON); `params` when it has
/// no `_meta` object.
pub fn with_progress_token(params: &RawValue, token: &str) -> Option<String> {
    type Object = serde_json::Map<String, serde_json::Value>;
    let mut object: std::collections::BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(params.get()).ok()?;
    let mut meta: Object = serde_json::from_str(object.get("_meta")?.get()).ok()?;
    meta.insert(
        "progressToken".to_owned(),
        serde_json::from_str(token).ok()?,
    );
    object.insert(
        "_meta".to_owned(),
        RawValue::from_string(serde_json::to_string(&meta).ok()?).ok()?,
    );
    serde_json::to_string(&object).ok()
}

/// The protocol version a request of the stateless generation (2026-07-28) names in
/// `params._meta`, if it names one.
pub fn stateless_version(params: Option<&RawValue>) -> Option<String> {
    #[derive(Deserialize)]
    struct Params {
        #[serde(rename = "_meta")]
        meta: Option<Meta>,
    }
    #[derive(Deserialize)]
    struct Meta {
        #[serde(rename = "io.modelcontextprotocol/protocolVersion")]
        version: Option<String>,
    }
    let params: Params = serde_json::from_str(params?.get()).ok()?;
    params.meta?.version
}

/// The raw `requestId` of a `notifications/cancelled`.
pub fn cancelled_request(params: Option<&RawValue>) -> Option<Box<RawValue>> {
    #[derive(Deserialize)]
    struct Params {
        #[serde(rename = "requestId")]
        request_id: Box<RawValue>,
    }
    let params: Params = serde_json::from_str(params?.get()).ok()?;
    Some(params.request_id)
}

/// `params` with key `key` set to `value` (raw JSON); for progress tokens and request ids
/// of notifications going back to a caller.
pub fn replace_key(params: &RawValue, key: &str, value: &str) -> Option<String> {
    let mut object: std::collections::BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(params.get()).ok()?;
    object.insert(
        key.to_owned(),
        RawValue::from_string(value.to_owned()).ok()?,
    );
    serde_json::to_string(&object).ok()
}

/// The text of a JSON value (`"abc"` -> `abc`) for comparing ids and tokens: two raw texts
/// may spell one value differently (`1` and `1.0` do not, but `"a"` and `"\u0061"` do).
pub fn canonical(raw: &RawValue) -> String {
    serde_json::from_str::<serde_json::Value>(raw.get())
        .map(|value| value.to_string())
        .unwrap_or_else(|_| raw.get().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_fields_present() {
        let kind = |text: &str| Envelope::parse(text.as_bytes()).map(|e| e.kind().unwrap());
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            Ok(Kind::Request)
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Ok(Kind::Notification)
        );
        assert_eq!(
            kind(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Ok(Kind::Response)
        );
        for bad in [
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","extra":1}"#,
            r#"{"jsonrpc":"2.0","id":1,"m\u0065thod":"a","method":"b"}"#,
            r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":5}"#,
            r#"{"jsonrpc":"2.0","id":1,"result":null}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"} {}"#,
            "not json",
            "",
        ] {
            assert!(kind(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn null_members_read_as_absent() {
        let envelope =
            Envelope::parse(br#"{"jsonrpc":"2.0","id":null,"method":"n","params":null}"#).unwrap();
        assert!(envelope.id.is_none() && envelope.params.is_none());
        assert_eq!(envelope.kind(), Ok(Kind::Notification));
        let escaped =
            Envelope::parse(br#"{"jsonrpc":"2.0","\u0069d":7,"method":"p\u0069ng"}"#).unwrap();
        assert_eq!(escaped.id.map(RawValue::get), Some("7"));
        assert_eq!(escaped.method.as_deref(), Some("ping"));
        let twice = Envelope::parse(br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#);
        assert!(twice.unwrap_err().contains(r#"the key "id" appears twice"#));
    }

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert!(!too_deep(br#"{"a":[[1]]}"#, 3));
        assert!(too_deep(br#"{"a":[[[1]]]}"#, 3));
        assert!(!too_deep(br#"{"a":"[[[[[[\"[[[["}"#, 1));
        assert!(too_deep(&[b'['; 65], MAX_DEPTH));
        assert!(!too_deep(&[b'['; 64], MAX_DEPTH));
    }

    #[test]
    fn progress_tokens_are_found_and_replaced() {
        let params = RawValue::from_string(
            r#"{"name":"p","arguments":{"x":1},"_meta":{"progressToken":"abc","other":2}}"#
                .to_owned(),
        )
        .unwrap();
        assert_eq!(progress_token(Some(&params)).unwrap().get(), r#""abc""#);
        let replaced = with_progress_token(&params, "17").unwrap();
        let value: serde_json::Value = serde_json::from_str(&replaced).unwrap();
        assert_eq!(value["_meta"]["progressToken"], 17);
        assert_eq!(value["_meta"]["other"], 2);
        assert_eq!(value["arguments"]["x"], 1);
        let plain = RawValue::from_string(r#"{"name":"p"}"#.to_owned()).unwrap();
        assert!(progress_token(Some(&plain)).is_none());
    }

    #[test]
    fn rendering_splices_raw_parts() {
        assert_eq!(
            render_request(Some("7"), "tools/call", Some(r#"{"a":1}"#)),
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"a":1}}"#
        );
        assert_eq!(
            render_response(r#""x""#, Some("[1]"), None),
            br#"{"jsonrpc":"2.0","id":"x","result":[1]}"#
        );
        let error = render_error("1", -32603, "server \"a\" exited");
        let value: serde_json::Value = serde_json::from_slice(&error).unwrap();
        assert_eq!(value["error"]["message"], "server \"a\" exited");
    }
}
