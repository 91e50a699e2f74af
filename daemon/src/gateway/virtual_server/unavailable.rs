//! What a caller of a virtual server gets when a member is down or breaks off its answer:
//! JSON-RPC errors ([`MEMBER_UNAVAILABLE`]) that name the member and its state, never an
//! empty success.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::id_value;
use crate::config::{PrefixMode, VirtualConfig};
use crate::directory::{Directory, ServerState};

pub(super) fn down_message(
    name: &str,
    member: &str,
    state: ServerState,
    error: Option<&str>,
) -> String {
    let mut text = format!("member server \"{member}\" of virtual server {name} is {state}");
    if let Some(error) = error {
        text.push_str(": ");
        text.push_str(error);
    }
    text
}

/// The member (not running) whose tool the exposed name would be, to say so.
pub(super) fn member_down(
    directory: &Directory,
    config: &VirtualConfig,
    exposed: &str,
) -> Option<(String, ServerState)> {
    let all = directory.all();
    config
        .members
        .iter()
        .filter(|member| match config.prefix {
            PrefixMode::Always => exposed
                .strip_prefix(member.as_str())
                .is_some_and(|rest| rest.starts_with(&config.separator)),
            PrefixMode::Never => true,
        })
        .filter_map(|member| {
            let state = all.get(member)?.status.load().state;
            (state != ServerState::Running).then(|| (member.clone(), state))
        })
        .max_by_key(|(member, _)| member.len())
}

/// The SSE event that ends a caller's stream when the member breaks off its answer.
/// Written for every call that streams (it is sent only if the member breaks off), so in one
/// buffer of the right size, without formatting.
pub(super) fn broke_off_event(id: Option<&RawValue>, name: &str, member: &str) -> Bytes {
    // An id as written may span lines (`[1,\n2]`); one that does is written again on one.
    let id = match id.map(RawValue::get) {
        Some(raw) if !raw.contains(['\n', '\r']) => std::borrow::Cow::Borrowed(raw),
        _ => std::borrow::Cow::Owned(id_value(id).to_string()),
    };
    let member = json_text(member);
    let name = json_text(name);
    let pieces: [&[u8]; 9] = [
        b"\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":",
        id.as_bytes(),
        b",\"error\":{\"code\":",
        MEMBER_UNAVAILABLE_TEXT.as_bytes(),
        b",\"message\":\"member server \\\"",
        member.as_bytes(),
        b"\\\" of virtual server ",
        name.as_bytes(),
        b" broke off its answer (it stopped or crashed)\"}}\n\n",
    ];
    let mut out = Vec::with_capacity(pieces.iter().map(|p| p.len()).sum());
    for piece in pieces {
        out.extend_from_slice(piece);
    }
    Bytes::from(out)
}

/// [`MEMBER_UNAVAILABLE`] as JSON.
const MEMBER_UNAVAILABLE_TEXT: &str = "-32011";

/// `text` as it goes between the quotes of a JSON string.
fn json_text(text: &str) -> std::borrow::Cow<'_, str> {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        return std::borrow::Cow::Borrowed(text);
    }
    let quoted = serde_json::to_string(text).unwrap_or_default();
    std::borrow::Cow::Owned(quoted[1..quoted.len().saturating_sub(1)].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::virtual_server::MEMBER_UNAVAILABLE;
    use serde_json::Value;

    #[test]
    fn the_broke_off_event_is_one_json_rpc_error() {
        assert_eq!(MEMBER_UNAVAILABLE_TEXT, MEMBER_UNAVAILABLE.to_string());
        for (id, member) in [
            (Some(r#""a\"b""#), "m"),
            (Some("17"), "we\"ird\\"),
            (Some("[1,\n2]"), "m"),
            (None, "m"),
        ] {
            let id: Option<Box<RawValue>> = id.map(|id| RawValue::from_string(id.into()).unwrap());
            let event = broke_off_event(id.as_deref(), "all", member);
            let text = std::str::from_utf8(&event).unwrap();
            let data = text
                .strip_prefix("\n\nevent: message\ndata: ")
                .and_then(|rest| rest.strip_suffix("\n\n"))
                .expect("one event");
            assert!(!data.contains('\n'), "{data}");
            let value: Value = serde_json::from_str(data).unwrap();
            assert_eq!(value["error"]["code"], MEMBER_UNAVAILABLE);
            assert_eq!(
                value["error"]["message"],
                format!(
                    "member server \"{member}\" of virtual server all broke off its answer (it stopped or crashed)"
                )
            );
            assert_eq!(value["id"], id_value(id.as_deref()));
        }
    }
}
