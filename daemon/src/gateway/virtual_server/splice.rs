//! The body a virtual server forwards to a member: the caller's bytes as written, with the
//! member's own name spliced over `params.name` and `params._meta` made to suit the member's
//! protocol generation (a 2026-07-28 member gets the per-request metadata it needs, the
//! caller's kept; a session member loses the 2026-07-28 keys, which would contradict its
//! session's version). The arguments are never decoded.
//!
//! The parts are found where the envelope reader saw them (`Message::name`, `Message::meta`
//! borrow from the body). A body whose parts cannot be edited in place (a name written with
//! escapes, `_meta` twice or with escapes) goes the slow way, through a parsed value, to the
//! same result.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use super::STATELESS_VERSION;
use crate::envelope::Message;
use crate::probe_client::Link;

/// The keys of the per-request metadata of 2026-07-28.
const STATELESS_META_PREFIX: &str = "io.modelcontextprotocol/";

/// The per-request metadata a 2026-07-28 member needs, with mcpd's values.
fn stateless_defaults() -> [(&'static str, Value); 3] {
    [
        (
            "io.modelcontextprotocol/protocolVersion",
            json!(STATELESS_VERSION),
        ),
        (
            "io.modelcontextprotocol/clientInfo",
            json!({ "name": "mcpd", "version": env!("CARGO_PKG_VERSION") }),
        ),
        ("io.modelcontextprotocol/clientCapabilities", json!({})),
    ]
}

/// The same defaults as JSON members (`"key":value`), written once.
fn stateless_members() -> &'static [(&'static str, String); 3] {
    static MEMBERS: std::sync::OnceLock<[(&'static str, String); 3]> = std::sync::OnceLock::new();
    MEMBERS.get_or_init(|| {
        stateless_defaults().map(|(key, value)| (key, format!("\"{key}\":{value}")))
    })
}

/// The body to send to the member; `None` when it has no params object to put the name in.
/// `name`: the member's name of the tool or prompt (`None`: the name is not changed).
pub(super) fn member_body(
    body: &Bytes,
    message: &Message<'_>,
    name: Option<&str>,
    link: &Link,
) -> Option<Bytes> {
    match in_place(body, message, name, link) {
        Some(spliced) => Some(spliced),
        None => through_value(body, name, link),
    }
}

/// Where `part`, a string borrowed from `body`, lies in it.
fn span_in(body: &[u8], part: &str) -> Option<Range<usize>> {
    let start = (part.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(part.len())?;
    (body.get(start..end)? == part.as_bytes()).then_some(start..end)
}

/// The body edited in place, or `None` to go through a parsed value. Written into one buffer
/// of the exact length, so the common call allocates once.
fn in_place(body: &Bytes, message: &Message<'_>, name: Option<&str>, link: &Link) -> Option<Bytes> {
    if message.meta_twice {
        return None;
    }
    // The anchor: the name's string (with its quotes), replaced by the member's name; or,
    // without a new name, the `uri`'s, kept. A string with escapes is not borrowed.
    let anchor = match (name, message.name.as_ref(), message.uri.as_ref()) {
        (Some(_), Some(Cow::Borrowed(text)), _) | (None, _, Some(Cow::Borrowed(text))) => {
            let inner = span_in(body, text)?;
            let quoted = inner.start.checked_sub(1)?..inner.end + 1;
            (body.get(quoted.start) == Some(&b'"') && body.get(inner.end) == Some(&b'"'))
                .then_some(quoted)?
        }
        _ => return None,
    };
    let written_name: Cow<'_, [u8]> = match name {
        Some(name) if !needs_escaping(name) => Cow::Borrowed(name.as_bytes()),
        Some(name) => Cow::Owned(serde_json::to_vec(name).ok()?),
        None => Cow::Borrowed(&body[anchor.start + 1..anchor.end - 1]),
    };
    let quoted = matches!(written_name, Cow::Borrowed(_));
    let members = stateless_members();
    // What goes after the anchor (a new `_meta`), and what goes inside an existing `_meta`
    // right after its `{` (the members it lacks).
    let mut add_meta = false;
    let mut missing = [false; 3];
    let mut meta_open = None;
    let mut meta_has_members = false;
    let meta = message.meta.map(|meta| meta.get());
    if meta.is_some_and(|meta| meta.contains('\\')) {
        return None;
    }
    match (link, meta) {
        (Link::Session { .. }, None) => {}
        (Link::Session { .. }, Some(meta)) => {
            if meta.contains(STATELESS_META_PREFIX) {
                return None;
            }
        }
        (Link::Stateless, None) => add_meta = true,
        (Link::Stateless, Some(meta)) if meta.starts_with('{') => {
            let keys = MetaKeys::read(meta)?;
            missing = keys.found.map(|found| !found);
            if missing.contains(&true) {
                meta_open = Some(span_in(body, meta)?.start + 1);
                meta_has_members = keys.count > 0;
            }
        }
        // `_meta` that is not an object is left for the member to judge.
        (Link::Stateless, Some(_)) => {}
    }

    // The pieces, in order: up to the anchor, the name, a new `_meta`, up to `_meta`'s `{`,
    // its missing members, the rest.
    let mut pieces: [&[u8]; 16] = [&[]; 16];
    let mut count = 0;
    let mut at = 0;
    let anchor_first = meta_open.is_none_or(|open| anchor.start < open);
    for step in 0..2 {
        let anchor_now = (step == 0) == anchor_first;
        if anchor_now {
            pieces[count] = body.get(at..anchor.start)?;
            count += 1;
            if quoted {
                pieces[count] = b"\"";
                count += 1;
            }
            pieces[count] = &written_name;
            count += 1;
            if quoted {
                pieces[count] = b"\"";
                count += 1;
            }
            if add_meta {
                pieces[count] = new_meta();
                count += 1;
            }
            at = anchor.end;
        } else if let Some(open) = meta_open {
            pieces[count] = body.get(at..open)?;
            count += 1;
            let mut first = true;
            for (index, (_, member)) in members.iter().enumerate() {
                if missing[index] {
                    if !first {
                        pieces[count] = b",";
                        count += 1;
                    }
                    pieces[count] = member.as_bytes();
                    count += 1;
                    first = false;
                }
            }
            if meta_has_members {
                pieces[count] = b",";
                count += 1;
            }
            at = open;
        }
    }
    pieces[count] = &body[at..];
    count += 1;
    let pieces = &pieces[..count];
    let mut out = Vec::with_capacity(pieces.iter().map(|p| p.len()).sum());
    for piece in pieces {
        out.extend_from_slice(piece);
    }
    Some(Bytes::from(out))
}

/// `,"_meta":{...}` with mcpd's per-request metadata, written once.
fn new_meta() -> &'static [u8] {
    static NEW_META: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    NEW_META.get_or_init(|| {
        let members: Vec<&str> = stateless_members()
            .iter()
            .map(|(_, m)| m.as_str())
            .collect();
        format!(",\"_meta\":{{{}}}", members.join(",")).into_bytes()
    })
}

/// True when `text` cannot be written as a JSON string by just quoting it.
fn needs_escaping(text: &str) -> bool {
    text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Which of the per-request metadata keys a `_meta` object written without escapes has, and
/// how many keys it has, read without allocating.
struct MetaKeys {
    found: [bool; 3],
    count: usize,
}

impl MetaKeys {
    fn read(meta: &str) -> Option<MetaKeys> {
        use serde::de::{Deserializer, MapAccess, Visitor};
        struct Keys;
        impl<'de> Visitor<'de> for Keys {
            type Value = MetaKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut keys = MetaKeys {
                    found: [false; 3],
                    count: 0,
                };
                while let Some(key) = map.next_key::<&'de str>()? {
                    map.next_value::<IgnoredAny>()?;
                    keys.count += 1;
                    for (index, (wanted, _)) in stateless_members().iter().enumerate() {
                        keys.found[index] |= *wanted == key;
                    }
                }
                Ok(keys)
            }
        }
        serde_json::Deserializer::from_str(meta)
            .deserialize_map(Keys)
            .ok()
    }
}

/// The body parsed, edited and written again (the slow way).
fn through_value(body: &[u8], name: Option<&str>, link: &Link) -> Option<Bytes> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let params = value.get_mut("params")?.as_object_mut()?;
    if let Some(name) = name {
        params.insert("name".into(), Value::String(name.to_owned()));
    }
    if *link != Link::Stateless {
        if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
            meta.retain(|key, _| !key.starts_with(STATELESS_META_PREFIX));
        }
    } else {
        let meta = params.entry("_meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            for (key, default) in stateless_defaults() {
                meta.entry(key).or_insert(default);
            }
        }
    }
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope;

    fn session() -> Link {
        Link::Session {
            id: Some("s".into()),
            version: "2025-11-25".into(),
        }
    }

    /// Both ways give the same JSON for `body`.
    fn both(body: &str, name: Option<&str>, link: &Link) -> (Option<Value>, Option<Value>) {
        let bytes = Bytes::copy_from_slice(body.as_bytes());
        let parsed = envelope::parse(&bytes).expect("a message");
        let message = &parsed.messages[0];
        let fast = in_place(&bytes, message, name, link)
            .map(|b| serde_json::from_slice::<Value>(&b).expect("valid JSON"));
        let slow = through_value(&bytes, name, link)
            .map(|b| serde_json::from_slice::<Value>(&b).expect("valid JSON"));
        let chosen = member_body(&bytes, message, name, link)
            .map(|b| serde_json::from_slice::<Value>(&b).expect("valid JSON"));
        assert_eq!(chosen, slow, "{body}");
        (fast, slow)
    }

    #[test]
    fn in_place_and_through_a_value_agree() {
        let bodies = [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a_echo","arguments":{"text":"hi \"x\" \\ \u00e9"}}}"#,
            r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"arguments":{"name":"inner"},"name":"a_echo"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a_echo","_meta":{"progressToken":5}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{},"name":"a_echo"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a_echo","_meta":null}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a_echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"},"io.modelcontextprotocol/clientCapabilities":{"x":{}}}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a_echo","_meta":{"io.modelcontextprotocol/clientInfo":{"name":"c"},"progressToken":"p"}}}"#,
            // The slow way: escapes in the name or in _meta, or _meta twice.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a_\u0065cho"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a_echo","_meta":{"io.modelcontextprotocol\/protocolVersion":"1"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a_echo","_meta":{"a":1},"_meta":{"b":2}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\u0061me":"a_echo"}}"#,
            " { \"jsonrpc\" : \"2.0\" , \"id\" : 1 , \"method\" : \"tools/call\" , \"params\" : { \"name\" : \"a_echo\" , \"_meta\" : { } } } ",
        ];
        for body in bodies {
            for link in [session(), Link::Stateless] {
                for name in [Some("echo"), Some("we\"ird\n")] {
                    let (fast, slow) = both(body, name, &link);
                    if let Some(fast) = fast {
                        assert_eq!(Some(fast), slow, "{body} {link:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_common_call_is_edited_in_place() {
        let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a_echo","arguments":{"text":"hello"}}}"#;
        let bytes = Bytes::from_static(body.as_bytes());
        let parsed = envelope::parse(&bytes).unwrap();
        let message = &parsed.messages[0];
        let out = in_place(&bytes, message, Some("echo"), &session()).expect("in place");
        assert_eq!(
            &out[..],
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hello"}}}"#
        );
        let out = in_place(&bytes, message, Some("echo"), &Link::Stateless).expect("in place");
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["params"]["name"], "echo");
        assert_eq!(
            value["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
            STATELESS_VERSION
        );
        // The arguments pass as written (not re-encoded).
        assert!(memchr::memmem::find(&out, br#""arguments":{"text":"hello"}"#).is_some());
    }

    #[test]
    fn the_session_keys_of_a_stateless_caller_are_dropped_for_a_session_member() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a_echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","progressToken":1}}}"#;
        let (fast, slow) = both(body, Some("echo"), &session());
        assert!(fast.is_none(), "goes the slow way");
        let slow = slow.unwrap();
        assert_eq!(slow["params"]["_meta"], json!({"progressToken": 1}));
    }

    #[test]
    fn a_call_without_params_has_no_body() {
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get"}"#;
        let bytes = Bytes::from_static(body.as_bytes());
        let parsed = envelope::parse(&bytes).unwrap();
        assert!(member_body(&bytes, &parsed.messages[0], Some("p"), &session()).is_none());
    }
}
