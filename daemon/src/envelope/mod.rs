//! The JSON-RPC envelope of an MCP message, read in one place for authorization, audit and
//! routing: each message's method, id and target name (`params.name` or `params.uri`), and
//! whether the body is a batch. Nothing else of the body is kept.
//!
//! The body is parsed once, borrowing strings from it where it has no escapes. A key the
//! decision depends on (`jsonrpc`, `id`, `method`, `params`, `result`, `error`, and `name`,
//! `uri`, `arguments` in `params`) appearing twice refuses the message: parsers disagree on
//! which copy wins (serde_json the last, others the first), so the gateway cannot know which
//! one the server will act on. Keys are compared decoded, so `"m\u0065thod"` is `method`.
//! Nesting deeper than serde_json's limit (128) is refused, as is anything after the value.
//!
//! [`raw`] reads one message for the stdio bridge with the same keys and refusals, keeping
//! its members as raw JSON text to splice into rewritten messages.

mod headers;
pub mod raw;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

pub use headers::{HeaderCheck, check_headers, header_text, is_stateless_version};

/// The visit methods of the JSON scalars other than strings, each answering `$answer`.
macro_rules! other_scalars {
    ($value:ty, $answer:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<$value, E> {
            $answer
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<$value, E> {
            $answer
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<$value, E> {
            $answer
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<$value, E> {
            $answer
        }
        fn visit_unit<E: de::Error>(self) -> Result<$value, E> {
            $answer
        }
    };
}

/// JSON-RPC: the body is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: the body is JSON but not a valid request.
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: a request's params are unusable.
pub const INVALID_PARAMS: i64 = -32602;
/// MCP 2026-07-28: `Mcp-Method`/`Mcp-Name` missing or not agreeing with the body.
pub const HEADER_MISMATCH: i64 = -32020;

/// The messages of one POST body.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub messages: Vec<Message<'a>>,
    /// The body was a JSON array.
    pub batch: bool,
}

/// One JSON-RPC message as far as the gateway needs it.
#[derive(Debug, Default)]
pub struct Message<'a> {
    /// `None` for a response (a client answering a server's request).
    pub method: Option<Cow<'a, str>>,
    /// The id as written (`1`, `"a"`), `None` for a notification.
    pub id: Option<&'a RawValue>,
    /// `params.name` (tools/call, prompts/get).
    pub name: Option<Cow<'a, str>>,
    /// `params.uri` (resources/read, resources/subscribe, ...).
    pub uri: Option<Cow<'a, str>>,
    /// `params.arguments` as written, for audit records that keep them.
    pub arguments: Option<&'a RawValue>,
    /// `params._meta` as written (the last one when written twice; see `meta_twice`), for a
    /// virtual server to adjust in place when it forwards the message.
    pub meta: Option<&'a RawValue>,
    /// `params._meta` appears more than once.
    pub meta_twice: bool,
}

impl Message<'_> {
    pub fn is_tool_call(&self) -> bool {
        self.method.as_deref() == Some("tools/call")
    }

    pub fn is_tool_list(&self) -> bool {
        self.method.as_deref() == Some("tools/list")
    }

    /// The id as JSON text (`1`, `"a"`), for logs and audit records.
    pub fn id_text(&self) -> Option<&str> {
        self.id.map(RawValue::get)
    }
}

/// Why a body was refused, with the JSON-RPC code to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeError {
    pub code: i64,
    pub message: String,
}

impl EnvelopeError {
    fn invalid(message: impl Into<String>) -> Self {
        EnvelopeError {
            code: INVALID_REQUEST,
            message: message.into(),
        }
    }
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Reads the envelope of a POST body.
pub fn parse(body: &[u8]) -> Result<Envelope<'_>, EnvelopeError> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let envelope = deserializer
        .deserialize_any(BodyVisitor)
        .map_err(classify)?;
    deserializer.end().map_err(classify)?;
    let envelope = envelope.map_err(EnvelopeError::invalid)?;
    if envelope.batch && envelope.messages.is_empty() {
        return Err(EnvelopeError::invalid(
            "an empty batch is not a valid request",
        ));
    }
    for message in &envelope.messages {
        check_targets(message)?;
    }
    Ok(envelope)
}

/// A request whose authorization depends on its target must name it.
fn check_targets(message: &Message<'_>) -> Result<(), EnvelopeError> {
    if message.is_tool_call() && message.name.is_none() {
        return Err(EnvelopeError {
            code: INVALID_PARAMS,
            message: "tools/call needs params.name, a string".into(),
        });
    }
    Ok(())
}

/// A duplicate or mistyped key is reported through serde's custom error with this prefix, so
/// it comes out as an invalid request rather than a parse error.
const INVALID_MARK: &str = "\u{0}invalid:";

fn classify(err: serde_json::Error) -> EnvelopeError {
    let text = err.to_string();
    match text.strip_prefix(INVALID_MARK) {
        Some(rest) => {
            // serde_json appends " at line L column C".
            let message = rest.rsplit_once(" at line ").map_or(rest, |(head, _)| head);
            EnvelopeError::invalid(message)
        }
        None if err.is_data() => {
            EnvelopeError::invalid(format!("invalid JSON-RPC message: {text}"))
        }
        None => EnvelopeError {
            code: PARSE_ERROR,
            message: format!("the body is not valid JSON: {text}"),
        },
    }
}

fn invalid<E: de::Error>(message: impl fmt::Display) -> E {
    E::custom(format_args!("{INVALID_MARK}{message}"))
}

/// The top level: one message, or an array of them. `Err` holds a shape error found after
/// the JSON itself parsed (kept apart so the JSON is still read to its end).
struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = Result<Envelope<'de>, &'static str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message or an array of them")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let message = MessageVisitor.visit_map(map)?;
        Ok(Ok(Envelope {
            messages: vec![message],
            batch: false,
        }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut messages = Vec::new();
        while let Some(message) = seq.next_element_seed(MessageSeed)? {
            messages.push(message);
        }
        Ok(Ok(Envelope {
            messages,
            batch: true,
        }))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err("a JSON-RPC message is an object"))
    }
    other_scalars!(Self::Value, Ok(Err("a JSON-RPC message is an object")));
}

struct MessageSeed;

impl<'de> DeserializeSeed<'de> for MessageSeed {
    type Value = Message<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(MessageVisitor)
    }
}

/// A string that borrows from the body when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// A string value, or `None` for any other JSON value (read to its end and dropped).
struct MaybeText;

impl<'de> DeserializeSeed<'de> for MaybeText {
    type Value = Option<Cow<'de, str>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MaybeText {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(text)))
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(text.to_owned())))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    other_scalars!(Self::Value, Ok(None));
}

/// Records `key` as seen; a second sighting refuses the message.
fn first_time<E: de::Error>(seen: &mut u8, bit: u8, key: &str) -> Result<(), E> {
    if *seen & bit != 0 {
        return Err(invalid(format_args!(
            "the key \"{key}\" appears twice in one message"
        )));
    }
    *seen |= bit;
    Ok(())
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON-RPC message (an object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut message = Message::default();
        let mut seen = 0u8;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match key.as_ref() {
                "method" => {
                    first_time(&mut seen, 1, "method")?;
                    let method = map.next_value_seed(MaybeText)?;
                    message.method =
                        Some(method.ok_or_else(|| invalid::<A::Error>("method must be a string"))?);
                }
                "id" => {
                    first_time(&mut seen, 2, "id")?;
                    let id: &'de RawValue = map.next_value()?;
                    message.id = Some(id);
                }
                "params" => {
                    first_time(&mut seen, 4, "params")?;
                    map.next_value_seed(ParamsSeed(&mut message))?;
                }
                "jsonrpc" | "result" | "error" => {
                    let bit = match key.as_ref() {
                        "jsonrpc" => 8,
                        "result" => 16,
                        _ => 32,
                    };
                    first_time(&mut seen, bit, &key)?;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(message)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(invalid("a batch may not hold another batch"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(invalid("each message of a batch is an object"))
    }
    other_scalars!(
        Self::Value,
        Err(invalid("each message of a batch is an object"))
    );
}

/// `params`: an object whose `name`, `uri` and `arguments` are kept; anything else (an array,
/// `null`) is passed over, as the server judges params it does not expect.
struct ParamsSeed<'m, 'de>(&'m mut Message<'de>);

impl<'de> DeserializeSeed<'de> for ParamsSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ParamsSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("params")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = 0u8;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            match key.as_ref() {
                "name" => {
                    first_time(&mut seen, 1, "params.name")?;
                    // A name that is not a string leaves `name` unset: a tools/call is then
                    // refused for want of a name; for other methods the server judges it.
                    self.0.name = map.next_value_seed(MaybeText)?;
                }
                "uri" => {
                    first_time(&mut seen, 2, "params.uri")?;
                    self.0.uri = map.next_value_seed(MaybeText)?;
                }
                "arguments" => {
                    first_time(&mut seen, 4, "params.arguments")?;
                    let arguments: &'de RawValue = map.next_value()?;
                    self.0.arguments = Some(arguments);
                }
                "_meta" => {
                    self.0.meta_twice |= self.0.meta.is_some();
                    self.0.meta = Some(map.next_value()?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    other_scalars!((), Ok(()));
}
