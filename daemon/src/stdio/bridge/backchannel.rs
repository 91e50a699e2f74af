//! Requests the child sends back to its client (`sampling/createMessage`,
//! `elicitation/create`, `roots/list`): relayed to the caller whose request caused them, on
//! that request's SSE stream, under an id of mcpd's (so two callers' ids never meet), and the
//! caller's answer written back to the child under the child's own id.
//!
//! stdio carries no stream per request, so the related request is found by the
//! `_meta.progressToken` the child's request carries (a token of mcpd's, see `bridge`), else
//! it is the request of the only caller with requests in flight; otherwise the child's request
//! is refused at once. So is a request the caller cannot take: it did not declare the
//! capability in its `initialize`, or it speaks 2026-07-28 (no server requests on its streams).
//! A relayed request still unanswered when its caller's request ends (answered, cancelled,
//! the caller gone, the child replaced) is answered to the child with an error: the child
//! never waits forever. Only the session that received a relayed request may answer it.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::super::envelope::{self, Envelope};
use super::{Bridge, METHOD_NOT_FOUND, Pending, SERVER_GONE, with_newline};

/// Server requests queued for one caller's stream; more are refused to the child.
pub(super) const REQUEST_QUEUE: usize = 16;
/// Relayed requests waiting for an answer, per bridge; more are refused to the child.
const MAX_RELAYED: usize = 4096;
/// The methods relayed, with the client capability each needs.
const RELAYED: [(&str, &str); 3] = [
    ("sampling/createMessage", "sampling"),
    ("elicitation/create", "elicitation"),
    ("roots/list", "roots"),
];

/// The client capabilities a caller declared that matter for server requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub sampling: bool,
    pub elicitation: bool,
    pub roots: bool,
}

impl Capabilities {
    /// From a `capabilities` object (of `initialize`, or of 2026-07-28 request metadata).
    pub fn from_object(capabilities: Option<&RawValue>) -> Capabilities {
        #[derive(Deserialize, Default)]
        struct Declared<'a> {
            #[serde(borrow)]
            sampling: Option<&'a RawValue>,
            #[serde(borrow)]
            elicitation: Option<&'a RawValue>,
            #[serde(borrow)]
            roots: Option<&'a RawValue>,
        }
        let declared: Declared<'_> = capabilities
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or_default();
        let present = |raw: Option<&RawValue>| raw.is_some_and(|raw| raw.get() != "null");
        Capabilities {
            sampling: present(declared.sampling),
            elicitation: present(declared.elicitation),
            roots: present(declared.roots),
        }
    }

    /// From the params of a client's `initialize`.
    pub fn of_initialize(params: Option<&RawValue>) -> Capabilities {
        #[derive(Deserialize)]
        struct Params<'a> {
            #[serde(borrow)]
            capabilities: Option<&'a RawValue>,
        }
        let params: Option<Params<'_>> = params.and_then(|p| serde_json::from_str(p.get()).ok());
        Capabilities::from_object(params.and_then(|p| p.capabilities))
    }

    /// As three bits (sampling 1, elicitation 2, roots 4), for sealed session ids.
    pub fn bits(&self) -> u8 {
        u8::from(self.sampling) | u8::from(self.elicitation) << 1 | u8::from(self.roots) << 2
    }

    pub fn from_bits(bits: u8) -> Capabilities {
        Capabilities {
            sampling: bits & 1 != 0,
            elicitation: bits & 2 != 0,
            roots: bits & 4 != 0,
        }
    }

    fn has(&self, capability: &str) -> bool {
        match capability {
            "sampling" => self.sampling,
            "elicitation" => self.elicitation,
            "roots" => self.roots,
            _ => false,
        }
    }
}

/// The capabilities mcpd declares to a stdio child: every one it can relay.
pub const CHILD_CAPABILITIES: &str = r#"{"sampling":{},"elicitation":{},"roots":{}}"#;

/// A caller of the child, as far as the child's requests are concerned.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// What the caller declared.
    pub capabilities: Capabilities,
    /// Why its request can carry no server requests back, if it cannot (its generation,
    /// no session, no `text/event-stream` accepted).
    pub cannot_take: Option<&'static str>,
}

/// Who may be asked on behalf of a caller's request.
pub(super) struct Asker {
    /// What the caller declared.
    pub capabilities: Capabilities,
    /// The caller's request stream, or why it has none.
    pub requests: Result<mpsc::Sender<Bytes>, &'static str>,
}

/// A server request relayed to a caller, waiting for its answer.
pub(super) struct Relayed {
    /// The caller's request it belongs to (its upstream id).
    upstream: u64,
    /// The session that may answer.
    session: Option<Arc<str>>,
    /// The child's own id, raw JSON, and the child it came from.
    child_id: Box<RawValue>,
    generation: u64,
    /// The caller's stream, to tell it when the child cancels the request.
    stream: mpsc::Sender<Bytes>,
}

/// Why a caller's answer to a relayed request was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum AnswerRefused {
    /// No relayed request has this id (never sent, already answered, or forged).
    Unknown,
    /// The request was relayed to another session.
    OtherSession,
}

impl Bridge {
    /// A request from the child of `generation` that a client must answer: relayed to the
    /// caller it concerns, or refused to the child at once.
    pub(super) fn relay_server_request(&self, generation: u64, message: &Envelope<'_>) {
        let Some(child_id) = message.id else { return };
        let method = message.method.as_deref().unwrap_or_default();
        let refusal = match self.try_relay(generation, child_id, method, message.params) {
            Ok(()) => return,
            Err(refusal) => refusal,
        };
        tracing::debug!(server = %self.name, method, reason = %refusal.1, "refused a request of the server");
        let answer = envelope::render_error(child_id.get(), refusal.0, &refusal.1);
        self.write_to_child(generation, with_newline(answer));
    }

    fn try_relay(
        &self,
        generation: u64,
        child_id: &RawValue,
        method: &str,
        params: Option<&RawValue>,
    ) -> Result<(), (i64, String)> {
        let name = &self.name;
        let Some((_, capability)) = RELAYED.iter().find(|(relayed, _)| *relayed == method) else {
            return Err((
                METHOD_NOT_FOUND,
                format!("mcpd does not relay {method} from server \"{name}\" to its clients"),
            ));
        };
        let related = related_token(params);
        let mut state = self.lock();
        let upstream = match related {
            Some(upstream) => state
                .pending
                .get(&upstream)
                .filter(|p| p.generation == generation && p.asker.is_some())
                .map(|_| upstream),
            None => only_caller(state.pending.iter(), generation),
        };
        let Some(upstream) = upstream else {
            let callers = distinct_callers(state.pending.values(), generation);
            let why = if callers == 0 {
                "no client request is in flight on it".to_owned()
            } else {
                format!(
                    "{callers} clients have requests in flight and the request names none of them (no _meta.progressToken)"
                )
            };
            return Err((
                SERVER_GONE,
                format!(
                    "mcpd cannot tell which client {method} from server \"{name}\" is for: {why}"
                ),
            ));
        };
        let pending = state.pending.get(&upstream).expect("found above");
        let asker = pending.asker.as_ref().expect("callers only");
        let stream = match &asker.requests {
            Ok(stream) => stream.clone(),
            Err(why) => {
                return Err((
                    METHOD_NOT_FOUND,
                    format!(
                        "mcpd cannot relay {method} to the client whose request caused it: the client {why}"
                    ),
                ));
            }
        };
        if !asker.capabilities.has(capability) {
            return Err((
                METHOD_NOT_FOUND,
                format!(
                    "the client whose request caused {method} did not declare the {capability} capability"
                ),
            ));
        }
        if state.relayed.len() >= MAX_RELAYED {
            return Err((
                SERVER_GONE,
                format!("mcpd has {MAX_RELAYED} requests of server \"{name}\" waiting for clients"),
            ));
        }
        let session = pending.session.clone();
        let relay_id = self.next_relay_id();
        let line = envelope::render_request(
            Some(&relay_id.to_string()),
            method,
            params.map(RawValue::get),
        );
        if stream.try_send(Bytes::from(line)).is_err() {
            return Err((
                SERVER_GONE,
                format!("the client of server \"{name}\" does not take more requests now"),
            ));
        }
        state.relayed.insert(
            relay_id,
            Relayed {
                upstream,
                session,
                child_id: child_id.to_owned(),
                generation,
                stream,
            },
        );
        Ok(())
    }

    /// A caller's answer (a JSON-RPC response) to a relayed request, from `session`: written
    /// to the child under its own id.
    pub fn answer_relayed(
        &self,
        session: Option<&str>,
        message: &Envelope<'_>,
    ) -> Result<(), AnswerRefused> {
        let relay_id = message
            .id
            .and_then(|id| id.get().parse::<u64>().ok())
            .ok_or(AnswerRefused::Unknown)?;
        let relayed = {
            let mut state = self.lock();
            let relayed = state.relayed.get(&relay_id).ok_or(AnswerRefused::Unknown)?;
            if relayed.session.as_deref() != session || session.is_none() {
                return Err(AnswerRefused::OtherSession);
            }
            state.relayed.remove(&relay_id).expect("found above")
        };
        let answer = envelope::render_response(
            relayed.child_id.get(),
            message.result.map(RawValue::get),
            message.error.map(RawValue::get),
        );
        self.write_to_child(relayed.generation, with_newline(answer));
        Ok(())
    }

    /// The child gave up on a request it sent (`notifications/cancelled`): the caller is told
    /// under mcpd's id, and a late answer is then unknown.
    pub(super) fn child_cancelled(&self, generation: u64, params: Option<&RawValue>) {
        let Some(request) = envelope::cancelled_request(params) else {
            return;
        };
        let key = envelope::canonical(&request);
        let found = {
            let mut state = self.lock();
            let id = state
                .relayed
                .iter()
                .find(|(_, r)| {
                    r.generation == generation && envelope::canonical(&r.child_id) == key
                })
                .map(|(id, _)| *id);
            id.and_then(|id| state.relayed.remove(&id).map(|r| (id, r)))
        };
        if let Some((relay_id, relayed)) = found {
            let params =
                serde_json::json!({ "requestId": relay_id, "reason": "the server cancelled it" });
            let line = envelope::render_request(
                None,
                "notifications/cancelled",
                Some(&params.to_string()),
            );
            let _ = relayed.stream.try_send(Bytes::from(line));
        }
    }

    /// The caller's request `upstream` ended (`why`): relayed requests of it still unanswered
    /// are answered to the child with an error.
    pub(super) fn end_relayed(&self, upstream: u64, why: &str) {
        let ended: Vec<Relayed> = {
            let mut state = self.lock();
            let ids: Vec<u64> = state
                .relayed
                .iter()
                .filter(|(_, r)| r.upstream == upstream)
                .map(|(id, _)| *id)
                .collect();
            ids.iter()
                .filter_map(|id| state.relayed.remove(id))
                .collect()
        };
        for relayed in ended {
            let answer = envelope::render_error(
                relayed.child_id.get(),
                SERVER_GONE,
                &format!("the client did not answer: its request {why}"),
            );
            self.write_to_child(relayed.generation, with_newline(answer));
        }
    }

    /// The child of `generation` is gone: its relayed requests need no answer.
    pub(super) fn forget_relayed(&self, generation: u64) {
        self.lock()
            .relayed
            .retain(|_, relayed| relayed.generation != generation);
    }

    /// Relayed requests waiting for a caller's answer.
    pub fn relayed(&self) -> usize {
        self.lock().relayed.len()
    }

    /// Writes `line` to the child of `generation`, if it is still the attached one; never
    /// waits (a child that does not read its stdin loses it).
    pub(super) fn write_to_child(&self, generation: u64, line: Bytes) {
        let stdin = {
            let state = self.lock();
            state
                .link
                .as_ref()
                .filter(|link| link.generation == generation)
                .map(|link| link.stdin.clone())
        };
        if let Some(stdin) = stdin {
            let _ = stdin.try_send(line);
        }
    }
}

/// The upstream id in the request's `_meta.progressToken` (mcpd's tokens are upstream ids).
fn related_token(params: Option<&RawValue>) -> Option<u64> {
    let token = envelope::progress_token(params)?;
    let text = token.get();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    text.parse().ok()
}

/// The caller's identity for telling callers apart: its session, or (no session) its request.
fn caller_key(upstream: u64, pending: &Pending) -> (Option<&str>, u64) {
    match &pending.session {
        Some(session) => (Some(session), 0),
        None => (None, upstream),
    }
}

/// The newest request of the only caller with requests in flight on the child of
/// `generation` (mcpd's own requests do not count), if exactly one caller has any.
fn only_caller<'a>(
    pending: impl Iterator<Item = (&'a u64, &'a Pending)>,
    generation: u64,
) -> Option<u64> {
    let mut found: Option<((Option<&str>, u64), u64)> = None;
    for (upstream, p) in pending {
        if p.generation != generation || p.asker.is_none() {
            continue;
        }
        let key = caller_key(*upstream, p);
        match &found {
            None => found = Some((key, *upstream)),
            Some((other, newest)) if *other == key => {
                found = Some((key, (*newest).max(*upstream)));
            }
            Some(_) => return None,
        }
    }
    found.map(|(_, upstream)| upstream)
}

/// How many callers have requests in flight on the child of `generation`.
fn distinct_callers<'a>(pending: impl Iterator<Item = &'a Pending>, generation: u64) -> usize {
    let mut sessions = std::collections::HashSet::new();
    let mut stateless = 0;
    for p in pending.filter(|p| p.generation == generation && p.asker.is_some()) {
        match &p.session {
            Some(session) => {
                sessions.insert(session.clone());
            }
            None => stateless += 1,
        }
    }
    sessions.len() + stateless
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn capabilities_are_read_from_initialize_and_survive_bits() {
        let declared = Capabilities::of_initialize(Some(&raw(
            r#"{"capabilities":{"sampling":{},"roots":{"listChanged":true},"elicitation":null}}"#,
        )));
        assert_eq!(
            declared,
            Capabilities {
                sampling: true,
                elicitation: false,
                roots: true
            }
        );
        for text in [
            r#"{"capabilities":[]}"#,
            "[]",
            "{}",
            r#"{"capabilities":1}"#,
        ] {
            assert_eq!(
                Capabilities::of_initialize(Some(&raw(text))),
                Capabilities::default()
            );
        }
        for bits in 0..8u8 {
            assert_eq!(Capabilities::from_bits(bits).bits(), bits);
        }
    }

    #[test]
    fn a_progress_token_names_the_related_request() {
        let token = |text: &str| related_token(Some(&raw(text)));
        assert_eq!(token(r#"{"_meta":{"progressToken":7}}"#), Some(7));
        assert_eq!(token(r#"{"_meta":{"progressToken":"7"}}"#), Some(7));
        assert_eq!(token(r#"{"_meta":{"progressToken":"p"}}"#), None);
        assert_eq!(token(r#"{"_meta":{}}"#), None);
        assert_eq!(token(r#"{"messages":[]}"#), None);
    }

    fn pending(session: Option<&str>, caller: bool, generation: u64) -> Pending {
        let (progress, _) = mpsc::channel(1);
        let (done, _) = oneshot::channel();
        Pending {
            session: session.map(Arc::from),
            caller_id: raw("1"),
            caller_key: "1".to_owned(),
            token: None,
            progress,
            done,
            generation,
            asker: caller.then(|| Asker {
                capabilities: Capabilities::default(),
                requests: Err("test"),
            }),
        }
    }

    #[test]
    fn only_one_caller_in_flight_is_related_and_mcpds_own_requests_do_not_count() {
        let only = |table: Vec<(u64, Pending)>| {
            let map: std::collections::HashMap<u64, Pending> = table.into_iter().collect();
            (
                only_caller(map.iter(), 1),
                distinct_callers(map.values(), 1),
            )
        };
        // mcpd's probe, another child's request, and two requests of session a: a's newest.
        assert_eq!(
            only(vec![
                (1, pending(None, false, 1)),
                (2, pending(Some("a"), true, 1)),
                (3, pending(Some("b"), true, 0)),
                (4, pending(Some("a"), true, 1)),
            ]),
            (Some(4), 1)
        );
        // Two sessions, or two callers without a session: nobody.
        assert_eq!(
            only(vec![
                (2, pending(Some("a"), true, 1)),
                (4, pending(Some("b"), true, 1)),
            ]),
            (None, 2)
        );
        assert_eq!(
            only(vec![
                (2, pending(None, true, 1)),
                (4, pending(None, true, 1))
            ]),
            (None, 2)
        );
        assert_eq!(only(vec![(1, pending(None, false, 1))]), (None, 0));
    }
}
