//! A gateway call's audit record while its request runs, and the rendering of every record
//! as its JSON line.
//!
//! The request path only gathers what it knows, cheaply: the server's config and the token's
//! claims are shared (`Arc`), the time is the `Instant` the request already read (the writer
//! turns it into wall-clock time from one reading of both clocks per batch), the caller a
//! `SocketAddr`. Formatting (the RFC 3339 time, the address, the JSON) happens on the audit
//! writer thread, straight into its file buffer. The line is exactly what serializing [`AuditRecord`] gives (same
//! fields, same order, same omissions), which `mcpctl audit` reads back.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use mcpd_protocol::{AuditDecision, AuditRecord};

use crate::config::{ServerConfig, VirtualConfig};
use crate::gateway::auth::Claims;

/// A `tools/call` through the gateway, as the request path knows it.
#[derive(Debug)]
pub struct CallEntry {
    /// When the request was read: the record's `time`.
    pub started: Instant,
    /// The server addressed; its name goes into the record (as `member` when the call came
    /// through a virtual server).
    pub server: Arc<ServerConfig>,
    /// The virtual server the call came through, named as the record's `server`.
    pub via_virtual: Option<Arc<VirtualConfig>>,
    /// The verified token's claims: subject, client id and scopes.
    pub claims: Option<Arc<Claims>>,
    /// The tool and the JSON-RPC id as the caller wrote it.
    pub names: CallNames,
    pub peer: SocketAddr,
    /// The call's arguments (JSON text), only with `audit: {arguments: true}`.
    pub arguments: Option<Box<str>>,
    pub decision: AuditDecision,
    pub status: u16,
    pub error_code: Option<i64>,
    pub is_error: Option<bool>,
    /// From the request to the end of the response.
    pub duration: Duration,
}

/// A call's tool name and JSON-RPC id (its JSON text as the caller wrote it), together: in
/// place when they are short, as they nearly always are, else in one allocation.
///
/// In place matters: a record is made on a gateway thread and dropped on the audit writer's,
/// and an allocation freed on another thread never returns to its own thread's cache, so
/// each record would send the gateway's allocator down its slow path (measured: bench/BENCH.md,
/// "the audit record's names in place").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallNames {
    /// The tool's name followed by the id's text.
    text: NamesText,
    tool_len: usize,
    has_id: bool,
}

/// Bytes of names kept in place; longer names take an allocation.
const INLINE_NAMES: usize = 56;

#[derive(Debug, Clone, PartialEq, Eq)]
enum NamesText {
    /// The first `len` bytes hold the text (whole UTF-8: written from one `&str`).
    Inline {
        len: u8,
        bytes: [u8; INLINE_NAMES],
    },
    Heap(Box<str>),
}

impl Default for NamesText {
    fn default() -> Self {
        NamesText::Inline {
            len: 0,
            bytes: [0; INLINE_NAMES],
        }
    }
}

impl NamesText {
    fn as_str(&self) -> &str {
        match self {
            NamesText::Inline { len, bytes } => {
                let text = &bytes[..usize::from(*len)];
                debug_assert!(std::str::from_utf8(text).is_ok());
                // SAFETY: `CallNames::new` is the only writer of these bytes: it copies two
                // whole `&str`s back to back, so the first `len` bytes are UTF-8. Checking
                // them again on every read (the tap matching answers, the writer) would
                // read them twice more per call.
                unsafe { std::str::from_utf8_unchecked(text) }
            }
            NamesText::Heap(text) => text,
        }
    }
}

impl CallNames {
    pub fn new(tool: &str, request_id: Option<&str>) -> Self {
        let id = request_id.unwrap_or_default();
        let len = tool.len() + id.len();
        let text = match u8::try_from(len) {
            Ok(short) if len <= INLINE_NAMES => {
                let mut bytes = [0; INLINE_NAMES];
                bytes[..tool.len()].copy_from_slice(tool.as_bytes());
                bytes[tool.len()..len].copy_from_slice(id.as_bytes());
                NamesText::Inline { len: short, bytes }
            }
            _ => {
                let mut text = String::with_capacity(len);
                text.push_str(tool);
                text.push_str(id);
                NamesText::Heap(text.into_boxed_str())
            }
        };
        CallNames {
            text,
            tool_len: tool.len(),
            has_id: request_id.is_some(),
        }
    }

    pub fn tool(&self) -> &str {
        &self.text.as_str()[..self.tool_len]
    }

    /// The JSON-RPC id's text; `None` for a call without one.
    pub fn request_id(&self) -> Option<&str> {
        self.has_id.then(|| &self.text.as_str()[self.tool_len..])
    }
}

/// Unix milliseconds of `at` (0 before 1970).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// RFC 3339 times with milliseconds, the date and time of day formatted once per second; and
/// the wall-clock time of an `Instant`, from one reading of both clocks.
#[derive(Default)]
pub struct TimeFormat {
    second: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`.
    prefix: [u8; 19],
    /// Both clocks read at the same moment.
    clocks: Option<(Instant, SystemTime)>,
}

impl TimeFormat {
    /// Reads both clocks: the wall-clock times of instants are taken from this reading on.
    pub fn read_clocks(&mut self) {
        self.clocks = Some((Instant::now(), SystemTime::now()));
    }

    /// A format whose clocks read `wall` at `instant`.
    #[cfg(test)]
    pub fn with_clocks(instant: Instant, wall: SystemTime) -> Self {
        TimeFormat {
            clocks: Some((instant, wall)),
            ..TimeFormat::default()
        }
    }

    /// The wall-clock time of `instant` (the clocks are read first if they never were).
    pub fn wall(&mut self, instant: Instant) -> SystemTime {
        let (read_at, wall) = *self
            .clocks
            .get_or_insert_with(|| (Instant::now(), SystemTime::now()));
        match read_at.checked_duration_since(instant) {
            Some(ago) => wall.checked_sub(ago).unwrap_or(UNIX_EPOCH),
            None => wall + instant.duration_since(read_at),
        }
    }

    /// `at` as `YYYY-MM-DDTHH:MM:SS.mmmZ`, what `humantime::format_rfc3339_millis` writes.
    pub fn format(&mut self, at: SystemTime) -> Rfc3339 {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since.as_secs();
        if self.second != Some(second) {
            let whole = UNIX_EPOCH + Duration::from_secs(second);
            let text = humantime::format_rfc3339_seconds(whole).to_string();
            let Some(prefix) = text.as_bytes().get(..19) else {
                // Beyond year 9999: humantime's own text, uncached.
                return Rfc3339::Other(humantime::format_rfc3339_millis(at).to_string());
            };
            self.prefix.copy_from_slice(prefix);
            self.second = Some(second);
        }
        let mut out = [0u8; 24];
        out[..19].copy_from_slice(&self.prefix);
        let millis = since.subsec_millis();
        out[19] = b'.';
        out[20] = b'0' + (millis / 100) as u8;
        out[21] = b'0' + (millis / 10 % 10) as u8;
        out[22] = b'0' + (millis % 10) as u8;
        out[23] = b'Z';
        Rfc3339::Short(out)
    }
}

/// A formatted time, on the stack in the common case.
pub enum Rfc3339 {
    Short([u8; 24]),
    Other(String),
}

impl Rfc3339 {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Rfc3339::Short(bytes) => bytes,
            Rfc3339::Other(text) => text.as_bytes(),
        }
    }

    #[cfg(test)]
    pub fn as_str(&self) -> &str {
        match self {
            // Only ASCII digits and separators are written.
            Rfc3339::Short(bytes) => std::str::from_utf8(bytes).unwrap_or_default(),
            Rfc3339::Other(text) => text,
        }
    }
}

/// Appends `entry`'s JSON line (without the newline) to `out`: the fields of
/// [`AuditRecord`] in its order, written by hand (a test holds it to serde's output).
pub fn render_call(entry: &CallEntry, time: &mut TimeFormat, out: &mut Vec<u8>) {
    let claims = entry.claims.as_deref();
    let at = time.wall(entry.started);
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(time.format(at).as_bytes());
    out.extend_from_slice(b"\",\"ts\":");
    decimal(out, unix_ms(at));
    out.extend_from_slice(b",\"server\":");
    match &entry.via_virtual {
        Some(virtual_server) => {
            string(out, &virtual_server.name);
            out.extend_from_slice(b",\"member\":");
            string(out, &entry.server.name);
        }
        None => string(out, &entry.server.name),
    }
    out.extend_from_slice(b",\"tool\":");
    string(out, entry.names.tool());
    out.extend_from_slice(b",\"subject\":");
    optional(out, claims.and_then(|c| c.subject.as_deref()));
    out.extend_from_slice(b",\"client_id\":");
    optional(out, claims.and_then(|c| c.client_id.as_deref()));
    out.extend_from_slice(b",\"scopes\":[");
    for (i, scope) in claims.map_or(&[][..], |c| &c.scopes).iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, scope);
    }
    out.extend_from_slice(match entry.decision {
        AuditDecision::Allow => b"],\"decision\":\"allow\",\"status\":",
        AuditDecision::Deny => b"],\"decision\":\"deny\",\"status\":",
    });
    decimal(out, u64::from(entry.status));
    if let Some(code) = entry.error_code {
        out.extend_from_slice(b",\"error_code\":");
        number(out, code);
    }
    if let Some(is_error) = entry.is_error {
        let text: &[u8] = if is_error {
            b",\"is_error\":true"
        } else {
            b",\"is_error\":false"
        };
        out.extend_from_slice(text);
    }
    out.extend_from_slice(b",\"duration_ms\":");
    number(out, entry.duration.as_secs_f64() * 1000.0);
    out.extend_from_slice(b",\"request_id\":");
    optional(out, entry.names.request_id());
    out.extend_from_slice(b",\"caller\":\"");
    address(out, entry.peer);
    out.extend_from_slice(b"\",\"via\":\"gateway\"");
    if let Some(arguments) = &entry.arguments {
        out.extend_from_slice(b",\"arguments\":");
        string(out, arguments);
    }
    out.push(b'}');
}

/// `peer` as its `Display` writes it (an address's text needs no escaping); an IPv4 one
/// without the formatting machinery, as it is the common case.
fn address(out: &mut Vec<u8>, peer: SocketAddr) {
    match peer {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                decimal(out, u64::from(octet));
            }
            out.push(b':');
            decimal(out, u64::from(v4.port()));
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{peer}");
        }
    }
}

/// `value` in decimal.
fn decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// A JSON string: copied as is when nothing in it needs escaping, else escaped by serde_json.
fn string(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(out, text);
    }
}

fn optional(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => string(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// A number or boolean, as serde_json writes it.
fn number(out: &mut Vec<u8>, value: impl Serialize) {
    // Writing a number into a Vec cannot fail.
    let _ = serde_json::to_writer(out, &value);
}

/// Appends `record`'s JSON line (without the newline) to `out`.
pub fn render_record(record: &AuditRecord, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(out, record);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_builder::{daemon_config, server_config};

    fn entry(claims: Option<Claims>, arguments: Option<&str>) -> CallEntry {
        CallEntry {
            started: Instant::now(),
            server: Arc::new(server_config(
                &daemon_config(std::path::Path::new("/tmp")),
                "db",
            )),
            via_virtual: None,
            claims: claims.map(Arc::new),
            names: CallNames::new("del\"ete\u{1b}", Some("\"a\\u0062\"")),
            peer: "[::1]:40000".parse().unwrap(),
            arguments: arguments.map(Box::from),
            decision: AuditDecision::Deny,
            status: 403,
            error_code: Some(-32602),
            is_error: None,
            duration: Duration::from_micros(1_250),
        }
    }

    /// The wall-clock time the tests' clocks give a call.
    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(1_796_000_000_123)
    }

    /// The record an [`AuditRecord`] built the old way would hold.
    fn as_record(entry: &CallEntry) -> AuditRecord {
        let claims = entry.claims.as_deref();
        AuditRecord {
            time: humantime::format_rfc3339_millis(at()).to_string(),
            ts: unix_ms(at()),
            server: entry
                .via_virtual
                .as_ref()
                .map_or_else(|| entry.server.name.clone(), |v| v.name.clone()),
            member: entry
                .via_virtual
                .as_ref()
                .map(|_| entry.server.name.clone()),
            tool: entry.names.tool().to_owned(),
            subject: claims.and_then(|c| c.subject.clone()),
            client_id: claims.and_then(|c| c.client_id.clone()),
            scopes: claims.map(|c| c.scopes.clone()).unwrap_or_default(),
            decision: entry.decision,
            status: entry.status,
            error_code: entry.error_code,
            is_error: entry.is_error,
            duration_ms: entry.duration.as_secs_f64() * 1000.0,
            request_id: entry.names.request_id().map(str::to_owned),
            caller: entry.peer.to_string(),
            via: "gateway".into(),
            arguments: entry.arguments.as_deref().map(str::to_owned),
        }
    }

    #[test]
    fn a_calls_tool_and_id_come_back_apart_from_their_one_allocation() {
        for (tool, id) in [
            ("echo", Some("17")),
            ("echo", None),
            ("", None),
            ("", Some("")),
            ("日本", Some("\"ü\"")),
            ("x", Some("")),
        ] {
            let names = CallNames::new(tool, id);
            assert_eq!((names.tool(), names.request_id()), (tool, id));
        }
        // Around the bytes kept in place, with characters of several bytes on the edge.
        for total in INLINE_NAMES - 3..INLINE_NAMES + 4 {
            for split in [0, 1, total / 2, total] {
                // `total` bytes: two-byte characters, then one ASCII byte when odd.
                let text = "é".repeat(total / 2) + &"x".repeat(total % 2);
                let (tool, id) = text.split_at((split / 2 * 2).min(text.len()));
                let names = CallNames::new(tool, Some(id));
                assert_eq!((names.tool(), names.request_id()), (tool, Some(id)));
                assert_eq!(names.clone(), names);
            }
        }
        assert_ne!(CallNames::new("ab", None), CallNames::new("a", Some("b")));
    }

    #[test]
    fn a_call_renders_exactly_as_its_record_serializes() {
        let claims = Claims {
            subject: Some("alice\n".into()),
            client_id: Some("cli".into()),
            scopes: vec!["user".into(), "tools:read".into()],
            ..Claims::default()
        };
        let mut allowed = entry(Some(claims.clone()), None);
        allowed.decision = AuditDecision::Allow;
        allowed.status = 200;
        allowed.error_code = None;
        allowed.is_error = Some(true);
        allowed.names = CallNames::new("Übersicht_日本", Some("17"));
        allowed.peer = "10.1.2.3:65535".parse().unwrap();
        allowed.duration = Duration::from_nanos(123_456_789);
        let mut unknown = entry(None, Some("{}"));
        unknown.error_code = None;
        unknown.names = CallNames::new("del\"ete\u{1b}", None);
        unknown.duration = Duration::ZERO;
        unknown.peer = "[fe80::1%7]:8080".parse().unwrap();
        let mut zeros = entry(None, None);
        zeros.peer = "0.0.0.0:0".parse().unwrap();
        let mut nines = entry(None, None);
        nines.peer = "255.199.90.9:10009".parse().unwrap();
        let mut through_virtual = entry(None, None);
        through_virtual.via_virtual = Some(Arc::new(VirtualConfig {
            name: "all\"v".into(),
            file: "v.yaml".into(),
            endpoint: String::new(),
            enabled: true,
            display_in_web: true,
            description: String::new(),
            oauth: crate::config::test_builder::no_oauth(),
            audit_arguments: false,
            aggregate: vec![],
            exclude: vec![],
            tools: vec![],
            separator: "_".into(),
            prefix: crate::config::PrefixMode::Always,
            prefix_at: (None, None),
            members: vec!["db".into()],
            max_calls_per_caller: 16,
        }));
        for entry in [
            entry(None, None),
            entry(Some(claims), Some(r#"{"sql":"drop table x"}"#)),
            allowed,
            unknown,
            through_virtual,
            zeros,
            nines,
        ] {
            let mut out = b"previous line\n".to_vec();
            let mut time = TimeFormat::with_clocks(entry.started, at());
            render_call(&entry, &mut time, &mut out);
            let line = std::str::from_utf8(&out[b"previous line\n".len()..]).unwrap();
            let expected = serde_json::to_string(&as_record(&entry)).unwrap();
            assert_eq!(line, expected);
            let back: AuditRecord = serde_json::from_str(line).unwrap();
            assert_eq!(back, as_record(&entry));
        }
    }

    #[test]
    fn an_instant_is_dated_from_the_clocks_reading() {
        let read_at = Instant::now();
        let mut time = TimeFormat::with_clocks(read_at, at());
        let before = read_at.checked_sub(Duration::from_millis(1_500)).unwrap();
        assert_eq!(time.wall(before), at() - Duration::from_millis(1_500));
        assert_eq!(time.wall(read_at), at());
        let after = read_at + Duration::from_millis(7);
        assert_eq!(time.wall(after), at() + Duration::from_millis(7));
        // Before the epoch: written as the epoch.
        let mut early = TimeFormat::with_clocks(read_at, UNIX_EPOCH);
        let dated = early.wall(before);
        assert_eq!(unix_ms(dated), 0);
        assert_eq!(early.format(dated).as_str(), "1970-01-01T00:00:00.000Z");
        // Never read: read now, so a just-taken instant is about now.
        let mut fresh = TimeFormat::default();
        let now = SystemTime::now();
        let dated = fresh.wall(Instant::now());
        assert!(dated.duration_since(now).unwrap_or_default() < Duration::from_secs(60));
    }

    #[test]
    fn times_match_humantime_across_seconds_and_days() {
        let mut format = TimeFormat::default();
        for ms in [
            0,
            999,
            1_000,
            59_999,
            86_399_999,
            86_400_000,
            1_796_000_000_001,
            1_796_000_000_999,
            1_796_000_001_000,
            253_402_300_799_999,
        ] {
            let at = UNIX_EPOCH + Duration::from_millis(ms);
            assert_eq!(
                format.format(at).as_str(),
                humantime::format_rfc3339_millis(at).to_string(),
                "{ms}"
            );
        }
    }
}
