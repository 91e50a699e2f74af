//! The bridge to one stdio server: mcpd is the child's only MCP client and multiplexes every
//! caller over its stdin/stdout.
//!
//! Each request gets a fresh upstream id from a counter; the table of pending requests maps
//! it back to the caller's own id (kept as raw JSON, string or number as sent) and session.
//! A progress token is rewritten to the upstream id, so tokens of different callers never
//! collide, and mapped back on `notifications/progress`. A caller's cancellation is sent with
//! the upstream id; a caller that goes away cancels too. When the child's process ends or its
//! stdout closes, every pending request is answered at once with an error naming the server.
//!
//! The bridge outlives the child's processes: a restart attaches new pipes (a new
//! generation), and client sessions (`sessions.rs`) stay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::envelope::{self, Envelope};
use super::frame::{Line, LineReader, MAX_LINE};
use super::sessions::Sessions;

mod backchannel;
mod inbound;

pub use backchannel::{AnswerRefused, CHILD_CAPABILITIES, Caller, Capabilities};

/// Messages queued for the child's stdin; a caller waits when the child does not read.
const STDIN_QUEUE: usize = 256;
/// Progress notifications queued for one caller; more are dropped (and counted).
const CALLER_QUEUE: usize = 64;

/// JSON-RPC error codes the bridge answers with.
pub const SERVER_GONE: i64 = -32603;
pub const METHOD_NOT_FOUND: i64 = -32601;

/// Where a stdio server's stdout lines that are not messages go (its log).
pub type OutputSink = Arc<dyn Fn(String) + Send + Sync>;

/// Counters of what the bridge dropped or refused.
#[derive(Debug, Default)]
pub struct Counters {
    /// Lines over [`MAX_LINE`].
    pub too_long: AtomicU64,
    /// Lines that were not JSON-RPC messages (logged as output).
    pub not_json: AtomicU64,
    /// Responses whose id matches no pending request.
    pub unknown_responses: AtomicU64,
    /// Progress notifications dropped because their caller did not keep up.
    pub progress_dropped: AtomicU64,
}

/// One request waiting for the child's answer.
struct Pending {
    /// The caller's session; `None` for mcpd's own requests (probes).
    session: Option<Arc<str>>,
    /// The caller's id, raw JSON, and its canonical text (for cancellation).
    caller_id: Box<RawValue>,
    caller_key: String,
    /// The caller's progress token, raw JSON, when it sent one.
    token: Option<Box<RawValue>>,
    progress: mpsc::Sender<Bytes>,
    done: oneshot::Sender<Bytes>,
    /// The child generation it was written to.
    generation: u64,
    /// Whom the child's requests about it may go to; `None` for mcpd's own requests.
    asker: Option<backchannel::Asker>,
}

/// The current child's stdin, if one is attached.
struct Link {
    generation: u64,
    stdin: mpsc::Sender<Bytes>,
}

#[derive(Default)]
struct State {
    link: Option<Link>,
    pending: HashMap<u64, Pending>,
    /// Requests of the child relayed to callers, by mcpd's id.
    relayed: HashMap<u64, backchannel::Relayed>,
    /// Why the last child went away, for callers that come while none is attached.
    gone: Option<String>,
}

/// The bridge of one stdio server.
pub struct Bridge {
    name: Arc<str>,
    state: Mutex<State>,
    next_id: AtomicU64,
    /// Ids of the child's requests as callers see them.
    next_relay_id: AtomicU64,
    generations: AtomicU64,
    pub sessions: Sessions,
    pub counters: Counters,
    /// The child's `initialize` result (raw JSON) and protocol version, once initialized.
    init: arc_swap::ArcSwapOption<InitInfo>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").field("name", &self.name).finish()
    }
}

/// What the child said to mcpd's `initialize`.
#[derive(Debug)]
pub struct InitInfo {
    pub result: Box<RawValue>,
    pub protocol_version: String,
}

/// A request in flight: its progress notifications and its answer, both already rewritten to
/// the caller's ids. Dropping it before the answer cancels the request at the child.
pub struct Call {
    bridge: Arc<Bridge>,
    upstream_id: u64,
    pub progress: mpsc::Receiver<Bytes>,
    /// The child's requests relayed to this caller (ids already mcpd's).
    pub requests: mpsc::Receiver<Bytes>,
    pub done: oneshot::Receiver<Bytes>,
    answered: bool,
}

impl Call {
    /// The answer; progress already queued stays readable in `progress`.
    pub async fn answer(&mut self) -> Bytes {
        let answer = (&mut self.done).await.unwrap_or_else(|_| {
            // Cannot happen: the bridge answers every pending request it drops.
            Bytes::from_static(br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"the request was dropped"}}"#)
        });
        self.answered = true;
        answer
    }

    /// Marks the call as over without cancelling it (its answer was read elsewhere).
    pub fn finish(&mut self) {
        self.answered = true;
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.answered {
            self.bridge.abandon(self.upstream_id);
        }
    }
}

impl Bridge {
    pub fn new(name: &str) -> Arc<Bridge> {
        Arc::new(Bridge {
            name: Arc::from(name),
            state: Mutex::new(State::default()),
            next_id: AtomicU64::new(1),
            next_relay_id: AtomicU64::new(1),
            generations: AtomicU64::new(0),
            sessions: Sessions::default(),
            counters: Counters::default(),
            init: arc_swap::ArcSwapOption::empty(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn next_relay_id(&self) -> u64 {
        self.next_relay_id.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The child's initialize result, once mcpd initialized it.
    pub fn init_info(&self) -> Option<Arc<InitInfo>> {
        self.init.load_full()
    }

    /// Takes a new child's pipes: a writer task for stdin and a reader task for stdout, on
    /// the current runtime. Requests still pending for an earlier child are failed.
    pub fn attach(
        self: &Arc<Self>,
        stdin: impl AsyncWrite + Unpin + Send + 'static,
        stdout: impl AsyncRead + Unpin + Send + 'static,
        output: OutputSink,
    ) {
        let generation = self.generations.fetch_add(1, Ordering::SeqCst) + 1;
        let (queue, mut queued) = mpsc::channel::<Bytes>(STDIN_QUEUE);
        let previous = {
            let mut state = self.lock();
            state.gone = None;
            state.link.replace(Link {
                generation,
                stdin: queue,
            })
        };
        if let Some(previous) = previous {
            self.fail(previous.generation, "was replaced by a new process");
        }
        self.init.store(None);
        let name = self.name.clone();
        tokio::spawn(async move {
            let mut stdin = stdin;
            while let Some(message) = queued.recv().await {
                if let Err(err) = stdin.write_all(&message).await {
                    tracing::debug!(server = %name, error = %err, "cannot write to the server's stdin");
                    return;
                }
            }
        });
        let bridge = self.clone();
        tokio::spawn(async move {
            let mut lines = LineReader::new(BufReader::new(stdout), MAX_LINE);
            let why = loop {
                match lines.next().await {
                    Ok(Some(Line::Text(line))) => bridge.on_child_line(generation, line, &output),
                    Ok(Some(Line::TooLong(len))) => {
                        let count = bridge.counters.too_long.fetch_add(1, Ordering::Relaxed) + 1;
                        output(format!(
                            "mcpd refused a stdout line of {len} bytes (over {MAX_LINE}; {count} so far)"
                        ));
                    }
                    Ok(None) => break "closed its stdout".to_owned(),
                    Err(err) => break format!("stdout could not be read: {err}"),
                }
            };
            bridge.detach(generation, &why);
        });
    }

    /// The child of `generation` is gone (`why`: "exited: exit code 1", "closed its stdout"):
    /// its pending requests are answered with an error naming the server.
    pub fn detach(&self, generation: u64, why: &str) {
        {
            let mut state = self.lock();
            if state
                .link
                .as_ref()
                .is_some_and(|link| link.generation == generation)
            {
                state.link = None;
                state.gone = Some(why.to_owned());
            }
        }
        self.fail(generation, why);
    }

    /// Requests waiting for the child's answer.
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// The generation of the attached child.
    pub fn generation(&self) -> Option<u64> {
        self.lock().link.as_ref().map(|link| link.generation)
    }

    fn fail(&self, generation: u64, why: &str) {
        let failed: Vec<Pending> = {
            let mut state = self.lock();
            let ids: Vec<u64> = state
                .pending
                .iter()
                .filter(|(_, p)| p.generation == generation)
                .map(|(id, _)| *id)
                .collect();
            ids.iter()
                .filter_map(|id| state.pending.remove(id))
                .collect()
        };
        let message = format!("server \"{}\" {why}", self.name);
        self.forget_relayed(generation);
        for pending in failed {
            let _ = pending.done.send(Bytes::from(envelope::render_error(
                pending.caller_id.get(),
                SERVER_GONE,
                &message,
            )));
        }
    }

    /// Sends a request for a caller: `params` is sent as is except for a progress token,
    /// rewritten to the upstream id. `caller` is what the caller declared it can answer
    /// (`None` for mcpd's own requests); the child's requests about this one reach the
    /// call's `requests` when the caller has a session. Fails (with the JSON-RPC error to
    /// answer) when no child is attached.
    pub async fn call(
        self: &Arc<Self>,
        session: Option<Arc<str>>,
        caller: Option<Caller>,
        caller_id: &RawValue,
        method: &str,
        params: Option<&RawValue>,
    ) -> Result<Call, Bytes> {
        let upstream_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let upstream = upstream_id.to_string();
        let token = envelope::progress_token(params);
        let rewritten = match (&token, params) {
            (Some(_), Some(params)) => envelope::with_progress_token(params, &upstream),
            _ => None,
        };
        let params = rewritten.as_deref().or(params.map(RawValue::get));
        let line = with_newline(envelope::render_request(Some(&upstream), method, params));
        let (progress_tx, progress) = mpsc::channel(CALLER_QUEUE);
        let (requests_tx, requests) = mpsc::channel(backchannel::REQUEST_QUEUE);
        let asker = caller.map(|caller| backchannel::Asker {
            capabilities: caller.capabilities,
            requests: match (caller.cannot_take, &session) {
                (Some(why), _) => Err(why),
                (None, None) => Err("has no session"),
                (None, Some(_)) => Ok(requests_tx),
            },
        });
        let (done_tx, done) = oneshot::channel();
        let stdin = {
            let mut state = self.lock();
            let Some(link) = &state.link else {
                let why = state
                    .gone
                    .clone()
                    .unwrap_or_else(|| "is not running".to_owned());
                return Err(Bytes::from(envelope::render_error(
                    caller_id.get(),
                    SERVER_GONE,
                    &format!("server \"{}\" {why}", self.name),
                )));
            };
            let stdin = link.stdin.clone();
            let generation = link.generation;
            state.pending.insert(
                upstream_id,
                Pending {
                    session,
                    caller_key: envelope::canonical(caller_id),
                    caller_id: caller_id.to_owned(),
                    token,
                    progress: progress_tx,
                    done: done_tx,
                    generation,
                    asker,
                },
            );
            stdin
        };
        let call = Call {
            bridge: self.clone(),
            upstream_id,
            progress,
            requests,
            done,
            answered: false,
        };
        if stdin.send(line).await.is_err() {
            // The writer ended (the child is going): the reader's detach answers it.
        }
        Ok(call)
    }

    /// Writes a notification to the child as is (e.g. `notifications/initialized`).
    pub async fn notify(&self, method: &str, params: Option<&str>) {
        let stdin = self.lock().link.as_ref().map(|link| link.stdin.clone());
        if let Some(stdin) = stdin {
            let _ = stdin
                .send(with_newline(envelope::render_request(None, method, params)))
                .await;
        }
    }

    /// The caller of `session` cancelled its request `caller_id`: the child is told with the
    /// upstream id and the caller gets an error answer. A cancel that matches nothing is
    /// ignored.
    pub fn cancel(&self, session: &str, caller_id: &RawValue, reason: Option<&str>) {
        let key = envelope::canonical(caller_id);
        let found = {
            let state = self.lock();
            state
                .pending
                .iter()
                .find(|(_, p)| p.session.as_deref() == Some(session) && p.caller_key == key)
                .map(|(id, _)| *id)
        };
        if let Some(upstream_id) = found {
            self.cancel_upstream(upstream_id, reason.unwrap_or("cancelled by the client"));
        }
    }

    /// Cancels every request of `session` (it ended).
    pub fn cancel_session(&self, session: &str) {
        let ids: Vec<u64> = {
            let state = self.lock();
            state
                .pending
                .iter()
                .filter(|(_, p)| p.session.as_deref() == Some(session))
                .map(|(id, _)| *id)
                .collect()
        };
        for id in ids {
            self.cancel_upstream(id, "the client session ended");
        }
    }

    /// A caller dropped its call before the answer (it went away).
    fn abandon(&self, upstream_id: u64) {
        self.cancel_upstream(upstream_id, "the client went away");
    }

    fn cancel_upstream(&self, upstream_id: u64, reason: &str) {
        let (pending, stdin) = {
            let mut state = self.lock();
            let Some(pending) = state.pending.remove(&upstream_id) else {
                return;
            };
            let stdin = state
                .link
                .as_ref()
                .filter(|link| link.generation == pending.generation)
                .map(|link| link.stdin.clone());
            (pending, stdin)
        };
        self.end_relayed(upstream_id, "was cancelled");
        let _ = pending.done.send(Bytes::from(envelope::render_error(
            pending.caller_id.get(),
            -32800,
            &format!("request cancelled: {reason}"),
        )));
        if let Some(stdin) = stdin {
            let params = serde_json::json!({ "requestId": upstream_id, "reason": reason });
            let line = envelope::render_request(
                None,
                "notifications/cancelled",
                Some(&params.to_string()),
            );
            // Never wait here (this runs in drops): a child that does not read its stdin
            // loses the cancel, and its liveness probe fails anyway.
            let _ = stdin.try_send(with_newline(line));
        }
    }

    /// mcpd's own request (probes): the raw `result`, or the error as text.
    pub async fn request(
        self: &Arc<Self>,
        method: &str,
        params: &str,
        timeout: Duration,
    ) -> Result<Box<RawValue>, String> {
        let id = RawValue::from_string("0".to_owned()).map_err(|e| e.to_string())?;
        let params = RawValue::from_string(params.to_owned()).map_err(|e| e.to_string())?;
        let mut call = self
            .call(None, None, &id, method, Some(&params))
            .await
            .map_err(|answer| String::from_utf8_lossy(&answer).into_owned())?;
        let answer = tokio::time::timeout(timeout, call.answer())
            .await
            .map_err(|_| format!("no answer to {method} within {timeout:?}"))?;
        let envelope = Envelope::parse(&answer)?;
        if let Some(error) = envelope.error {
            return Err(format!("{method} failed: {}", error.get()));
        }
        envelope
            .result
            .map(RawValue::to_owned)
            .ok_or_else(|| format!("{method}: an answer without a result"))
    }

    /// Initializes the attached child as mcpd, declaring the client capabilities whose
    /// requests it relays to callers (`backchannel`), then says `notifications/initialized`.
    pub async fn initialize(self: &Arc<Self>, timeout: Duration) -> Result<(), String> {
        let params = format!(
            r#"{{"protocolVersion":"{}","capabilities":{},"clientInfo":{{"name":"mcpd","version":"{}"}}}}"#,
            super::CHILD_VERSION,
            CHILD_CAPABILITIES,
            env!("CARGO_PKG_VERSION")
        );
        let result = self.request("initialize", &params, timeout).await?;
        #[derive(serde::Deserialize)]
        struct Negotiated {
            #[serde(rename = "protocolVersion")]
            protocol_version: String,
        }
        let negotiated: Negotiated = serde_json::from_str(result.get())
            .map_err(|err| format!("initialize: an invalid result: {err}"))?;
        self.notify("notifications/initialized", None).await;
        self.init.store(Some(Arc::new(InitInfo {
            result,
            protocol_version: negotiated.protocol_version,
        })));
        if self.generation().is_some_and(|generation| generation > 1) {
            // A new process may offer other tools than the one the sessions knew.
            self.sessions.broadcast(Bytes::from_static(
                br#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#,
            ));
        }
        Ok(())
    }
}

/// `line` ended by `\n`, as one line: a CR or LF inside JSON text can only be white space
/// (strings escape them), so it becomes a space rather than end the line early.
pub fn with_newline(mut line: Vec<u8>) -> Bytes {
    one_line(&mut line);
    line.push(b'\n');
    Bytes::from(line)
}

/// Replaces CR and LF (JSON white space) with spaces.
pub fn one_line(line: &mut [u8]) {
    for byte in line.iter_mut() {
        if *byte == b'\n' || *byte == b'\r' {
            *byte = b' ';
        }
    }
}
