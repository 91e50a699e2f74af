//! mcpd-loadgen: drives MCP `tools/call` (or `tools/list`) requests over streamable HTTP at a
//! fixed number of connections, one MCP session per connection, and prints requests/s and
//! latency percentiles as one JSON line. Used by `bench/run.sh` against a direct backend,
//! mcpd (servers and virtual servers), nginx and other MCP proxies alike. Given several
//! `--url`s it measures them interleaved, in turns (`interleave`). A request unanswered after
//! `--request-timeout` fails its connection (`deadline`), so a backend that stops answering
//! cannot hang a run.

mod deadline;
mod interleave;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::deadline::Deadline;

#[derive(Parser, Debug, Clone)]
#[command(about = "MCP tools/call load generator")]
struct Args {
    /// Full URL of the MCP endpoint, e.g. http://127.0.0.1:8080/api/v1/mcp/echo/mcp. Given more
    /// than once, the targets are measured interleaved: each has its own connections and they
    /// take turns of `--slice`, so a drift of the machine's speed slows them alike; the output
    /// then holds one result per target.
    #[arg(long, required = true)]
    url: Vec<String>,
    /// Concurrent connections (each with its own MCP session), per target.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// How long to measure (per target), after a warm-up of one second.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    duration: Duration,
    /// Bearer token to send (for servers that require OAuth): once for every target, or once
    /// per `--url`, in order (`-` for none).
    #[arg(long)]
    token: Vec<String>,
    /// With several `--url`s: a process whose CPU time each target's turns are charged with
    /// (`cpu_us_per_req` in its result), once per `--url` in order (`-` for none).
    #[arg(long)]
    cpu_pid: Vec<String>,
    /// With several `--url`s: the length of one target's turn, in seconds.
    #[arg(long, default_value = "0.2", value_parser = parse_secs)]
    slice: Duration,
    /// Tool to call with {"text": "hello"}: once for every target, or once per `--url`.
    #[arg(long, default_value = "echo")]
    tool: Vec<String>,
    /// What each request is: `tools/call` of `--tool`, or `tools/list` (the answer must hold
    /// at least `--min-tools` tools).
    #[arg(long, default_value = "tools/call", value_parser = ["tools/call", "tools/list"])]
    method: String,
    /// With `--method tools/list`: fewer tools in an answer is an error.
    #[arg(long, default_value_t = 1)]
    min_tools: usize,
    /// Instead of tools/call: start `streams` concurrent `progress` calls and report event delays.
    #[arg(long)]
    sse_streams: Option<usize>,
    /// How long a request may wait for its answer, in seconds (a connection's opening counts
    /// as one request): a request not answered by then fails its connection, which is counted
    /// (`failed_connections`, `failed_streams`) and reported on stderr with its URL, and the
    /// run goes on without it.
    #[arg(long, default_value = "30", value_parser = parse_timeout)]
    request_timeout: Duration,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs = s.parse::<f64>().map_err(|e| e.to_string())?;
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_secs(s)? {
        timeout if timeout.is_zero() => Err("a timeout must be more than 0".to_owned()),
        timeout => Ok(timeout),
    }
}

struct Target {
    authority: String,
    path: String,
    addr: String,
}

fn target(url: &str) -> anyhow::Result<Target> {
    let rest = url.strip_prefix("http://").context("only http:// URLs")?;
    let (authority, path) = rest.split_once('/').map_or((rest, "/"), |(a, p)| (a, p));
    Ok(Target {
        authority: authority.to_owned(),
        path: format!("/{}", path.trim_start_matches('/')),
        addr: authority.to_owned(),
    })
}

/// One HTTP/1.1 connection holding one MCP session.
struct Session {
    sender: http1::SendRequest<Full<Bytes>>,
    session_id: Option<String>,
    target_host: String,
    path: String,
    token: Option<String>,
    /// The time limit of every request on this connection, its opening included.
    deadline: Deadline,
}

/// The error of a request that `deadline` gave up on.
fn timed_out(deadline: &Deadline) -> anyhow::Error {
    anyhow!(
        "no answer within {} s (--request-timeout)",
        deadline.timeout().as_secs_f64()
    )
}

impl Session {
    async fn open(t: &Target, token: Option<String>, timeout: Duration) -> anyhow::Result<Session> {
        let mut deadline = Deadline::new(timeout);
        let connect = async {
            let stream = TcpStream::connect(&t.addr)
                .await
                .with_context(|| format!("connect {}", t.addr))?;
            stream.set_nodelay(true)?;
            anyhow::Ok(http1::handshake(TokioIo::new(stream)).await?)
        };
        let (sender, conn) = deadline
            .limit(Instant::now(), connect)
            .await
            .ok_or_else(|| timed_out(&deadline).context(format!("connect {}", t.addr)))??;
        tokio::spawn(conn);
        let mut session = Session {
            sender,
            session_id: None,
            target_host: t.authority.clone(),
            path: t.path.clone(),
            token,
            deadline,
        };
        let init = serde_json::json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"mcpd-loadgen","version":"1"}}});
        session
            .post(init.to_string(), Instant::now())
            .await
            .context("initialize")?;
        let done = serde_json::json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        session
            .post(done.to_string(), Instant::now())
            .await
            .context("notifications/initialized")?;
        Ok(session)
    }

    /// POSTs one JSON-RPC message, started at `started`; returns the whole response body.
    async fn post(&mut self, body: String, started: Instant) -> anyhow::Result<Bytes> {
        let mut req = Request::post(&self.path)
            .header("host", &self.target_host)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(id) = &self.session_id {
            req = req.header("mcp-session-id", id);
        }
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        let Session {
            sender,
            session_id,
            deadline,
            ..
        } = self;
        let exchange = async {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            if let Some(id) = resp.headers().get("mcp-session-id") {
                *session_id = Some(id.to_str()?.to_owned());
            }
            let bytes = resp.into_body().collect().await?.to_bytes();
            if !status.is_success() {
                bail!("HTTP {status}: {}", String::from_utf8_lossy(&bytes));
            }
            Ok(bytes)
        };
        match deadline.limit(started, exchange).await {
            Some(answer) => answer,
            None => Err(timed_out(deadline)),
        }
    }
}

/// The latencies measured after the warm-up, and every request answered (warm-up included).
struct Measured {
    latencies_us: Vec<u32>,
    requests_total: u64,
}

/// One connection's requests, sent one after the other: the session, the id of the last
/// request, and what was measured. The single-target and the in-turns workers both send
/// through it.
struct Caller<'a> {
    args: &'a Args,
    tool: &'a str,
    session: Session,
    id: u64,
    measured: Measured,
}

impl<'a> Caller<'a> {
    /// A caller with room for `capacity` latencies made up front.
    fn new(args: &'a Args, tool: &'a str, session: Session, capacity: usize) -> Caller<'a> {
        Caller {
            args,
            tool,
            session,
            id: 1,
            measured: Measured {
                latencies_us: Vec::with_capacity(capacity),
                requests_total: 0,
            },
        }
    }

    /// Sends the next request, started at `started`, and checks its answer; counts it, and
    /// records its latency when `measuring`. An error (a wrong answer, a broken connection, no
    /// answer within `--request-timeout`) ends the connection.
    async fn call(&mut self, started: Instant, measuring: bool) -> anyhow::Result<()> {
        self.id += 1;
        let body = request_body(self.args, self.tool, self.id);
        let answer = self.session.post(body, started).await;
        let answer = answer.with_context(|| format!("{} (id {})", self.args.method, self.id))?;
        check_answer(self.args, &answer)?;
        self.measured.requests_total += 1;
        if measuring {
            let elapsed = started.elapsed().as_micros();
            self.measured
                .latencies_us
                .push(u32::try_from(elapsed).unwrap_or(u32::MAX));
        }
        Ok(())
    }
}

/// The JSON-RPC request with id `id`: `tools/call` of `tool`, or `tools/list`.
fn request_body(args: &Args, tool: &str, id: u64) -> String {
    if args.method == "tools/list" {
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#)
    } else {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{}","arguments":{{"text":"hello"}}}}}}"#,
            tool
        )
    }
}

/// An answer that is not a result (or a list shorter than `--min-tools`) is an error.
fn check_answer(args: &Args, body: &[u8]) -> anyhow::Result<()> {
    if !body.windows(6).any(|w| w == b"result") || count(body, br#""error":{"#) > 0 {
        bail!("unexpected answer: {}", String::from_utf8_lossy(body));
    }
    if args.method == "tools/list" {
        let tools = count(body, br#""inputSchema""#);
        if tools < args.min_tools {
            bail!(
                "tools/list answered {tools} tools, fewer than {}",
                args.min_tools
            );
        }
    }
    Ok(())
}

async fn worker(args: Args, warmup_end: Instant, end: Instant) -> anyhow::Result<Measured> {
    let t = target(&args.url[0])?;
    let token = args.token.first().cloned();
    let session = Session::open(&t, token, args.request_timeout).await?;
    let mut caller = Caller::new(&args, &args.tool[0], session, 100_000);
    loop {
        let now = Instant::now();
        if now >= end {
            return Ok(caller.measured);
        }
        caller.call(now, now >= warmup_end).await?;
    }
}

/// Occurrences of `needle` in `haystack`.
fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn run_calls(args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let warmup_end = start + Duration::from_secs(1);
    let end = warmup_end + args.duration;
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        tasks.push(tokio::spawn(worker(args.clone(), warmup_end, end)));
    }
    let mut all = Vec::new();
    let mut requests_total = 0u64;
    let mut errors = 0usize;
    for task in tasks {
        match task.await? {
            Ok(measured) => {
                all.extend(measured.latencies_us);
                requests_total += measured.requests_total;
            }
            Err(error) => {
                errors += 1;
                eprintln!("connection to {} failed: {error:#}", args.url[0]);
            }
        }
    }
    all.sort_unstable();
    let rps = all.len() as f64 / args.duration.as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "url": args.url[0], "method": args.method, "connections": args.connections,
            "requests": all.len(), "requests_total": requests_total,
            "rps": rps.round(), "p50_us": percentile(&all, 50.0), "p99_us": percentile(&all, 99.0),
            "failed_connections": errors,
        })
    );
    if errors > 0 {
        bail!("{errors} connections failed");
    }
    Ok(())
}

/// Opens `streams` sessions, then (once every session is open) starts one `progress` call
/// (20 steps, 50 ms apart) on each at once, and measures, for each event, how late it arrived
/// relative to the interval the server was asked to keep. Session set-up is kept out of the
/// figure: 500 `initialize` exchanges competing for the servers' CPU would otherwise delay the
/// first calls' events by whatever set-up the later sessions still cost, which measures
/// set-up, not the delivery of events.
async fn run_sse(args: Args, streams: usize) -> anyhow::Result<()> {
    let t = target(&args.url[0])?;
    let steps = 20u64;
    let interval_ms = 50u64;
    let all_open = Arc::new(tokio::sync::Barrier::new(streams));
    let request_timeout = args.request_timeout;
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let all_open = all_open.clone();
        let token = args.token.first().cloned();
        let t = Target {
            authority: t.authority.clone(),
            path: t.path.clone(),
            addr: t.addr.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let opened = Session::open(&t, token, request_timeout).await;
            // Every task reaches the barrier, even one whose session failed, or the rest wait
            // for ever.
            all_open.wait().await;
            let mut session = opened?;
            let call = serde_json::json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{
                "name":"progress","arguments":{"steps":steps,"interval_ms":interval_ms},"_meta":{"progressToken":"p"}}});
            let mut req = Request::post(&session.path)
                .header("host", &session.target_host)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-session-id", session.session_id.clone().unwrap_or_default());
            if let Some(token) = &session.token {
                req = req.header("authorization", format!("Bearer {token}"));
            }
            let req = req.body(Full::new(Bytes::from(call.to_string())))?;
            let Session { sender, deadline, .. } = &mut session;
            // The whole stream is one request: it must end within --request-timeout.
            let stream = async {
                sender.ready().await?;
                let started = Instant::now();
                let resp = sender.send_request(req).await?;
                let head_us = started.elapsed().as_micros() as u32;
                let mut body = resp.into_body();
                let mut delays = Vec::new();
                let mut events = 0u64;
                while let Some(frame) = body.frame().await {
                    let frame = frame?;
                    if let Some(data) = frame.data_ref() {
                        let needle = b"notifications/progress";
                        for _ in data.windows(needle.len()).filter(|w| w == needle) {
                            events += 1;
                            let expected = Duration::from_millis(interval_ms * events);
                            delays.push(started.elapsed().saturating_sub(expected).as_micros() as u32);
                        }
                    }
                }
                anyhow::Ok((events, delays, head_us))
            };
            match deadline.limit(Instant::now(), stream).await {
                Some(streamed) => streamed,
                None => Err(timed_out(deadline).context("progress call")),
            }
        }));
    }
    let mut events = 0;
    let mut delays = Vec::new();
    let mut by_event: Vec<Vec<u32>> = vec![Vec::new(); steps as usize];
    let mut heads = Vec::new();
    let mut failed = 0;
    for task in tasks {
        match task.await? {
            Ok((e, d, head_us)) => {
                events += e;
                for (n, delay) in d.iter().enumerate() {
                    if let Some(slot) = by_event.get_mut(n) {
                        slot.push(*delay);
                    }
                }
                delays.extend(d);
                heads.push(head_us);
            }
            Err(error) => {
                failed += 1;
                eprintln!("stream to {} failed: {error:#}", args.url[0]);
            }
        }
    }
    delays.sort_unstable();
    heads.sort_unstable();
    // Where the delay builds up: the answer's head (the call's own latency, which every event
    // of the stream inherits) and the median delay of event 1, 2, ... 20.
    let by_event: Vec<u32> = by_event
        .iter_mut()
        .map(|slot| {
            slot.sort_unstable();
            percentile(slot, 50.0)
        })
        .collect();
    println!(
        "{}",
        serde_json::json!({"url": args.url, "streams": streams, "events": events,
            "expected_events": steps * streams as u64, "p50_delay_us": percentile(&delays, 50.0),
            "p99_delay_us": percentile(&delays, 99.0), "failed_streams": failed,
            "p50_head_us": percentile(&heads, 50.0), "p50_delay_by_event_us": by_event})
    );
    // As in the other modes: the figures are printed, and the run still fails.
    if failed > 0 {
        bail!("{failed} of {streams} streams failed");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.sse_streams {
        Some(_) if args.url.len() > 1 => bail!("--sse-streams takes one --url"),
        _ if args.url.len() == 1 && args.token.len() > 1 => bail!("one --url takes one --token"),
        _ if args.url.len() == 1 && args.tool.len() > 1 => bail!("one --url takes one --tool"),
        _ if args.url.len() == 1 && !args.cpu_pid.is_empty() => {
            bail!("--cpu-pid goes with several --url (one measures CPU by its own means)")
        }
        Some(streams) => run_sse(args, streams).await,
        None if args.url.len() > 1 => interleave::run(args).await,
        None => run_calls(args).await,
    }
}
