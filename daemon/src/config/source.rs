//! One YAML file as written: syntax check, block-by-block deserialization that collects every
//! error, and the line and column of any key or value.
//!
//! yaml_serde has no spanned values, but it stamps each deserialization error with the position
//! of the node being read. Both the blocks and the position lookups use that: a `Walk` seed
//! descends to a path and deserializes there (a block) or fails on purpose (a probe), and the
//! error's location is the node's position. Files are small, so re-reading one per lookup is cheap.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::value::{MapAccessDeserializer, StringDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess,
    Visitor,
};
use yaml_serde::Value;

use super::error::ConfigError;

/// One step of a path inside a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

pub fn key(name: &str) -> Seg {
    Seg::Key(name.to_owned())
}

/// Appends `segs` to `path`.
pub fn join(path: &[Seg], segs: impl IntoIterator<Item = Seg>) -> Vec<Seg> {
    path.iter().cloned().chain(segs).collect()
}

/// A 1-based position; `None` when unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: Option<usize>,
    pub column: Option<usize>,
}

/// A block read by `Source::block`: its value (defaults where a key failed), whether it read
/// cleanly, and the keys whose value failed.
pub struct Block<T> {
    pub value: T,
    pub ok: bool,
    pub failed: BTreeSet<String>,
}

/// A parsed YAML file.
pub struct Source {
    pub file: PathBuf,
    text: String,
    /// The whole document, for structure (which keys exist).
    pub value: Value,
}

impl Source {
    /// Parses `text`; a syntax error comes back with its position.
    pub fn parse(file: &Path, text: String) -> Result<Source, ConfigError> {
        match yaml_serde::from_str::<Value>(&text) {
            Ok(value) => Ok(Source {
                file: file.to_owned(),
                text,
                value,
            }),
            Err(err) => {
                let message = clean_message(&err);
                let (message, hint) = match message.strip_prefix("duplicate entry with key ") {
                    Some(key) => (
                        format!("key {key} appears twice in the mapping that starts here"),
                        "a key, or a server name, may appear only once: remove or rename the second one",
                    ),
                    None => (
                        format!("invalid YAML: {message}"),
                        "check indentation (spaces, not tabs), `key: value` pairs and matching quotes and brackets",
                    ),
                };
                Err(ConfigError {
                    file: file.to_owned(),
                    line: err.location().map(|l| l.line()),
                    column: err.location().map(|l| l.column()),
                    message,
                    hint: Some(hint.into()),
                })
            }
        }
    }

    /// No file at all: an empty document (built-in defaults).
    pub fn empty() -> Source {
        Source {
            file: PathBuf::new(),
            text: String::new(),
            value: Value::Null,
        }
    }

    pub fn error(
        &self,
        pos: Pos,
        message: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// Where the value at `path` starts; falls back to its key, then to its parents.
    pub fn value_pos(&self, path: &[Seg]) -> Pos {
        self.probe(path, Probe::Value)
            .unwrap_or_else(|| self.key_pos(path))
    }

    /// Where the key that ends `path` is written; falls back to the parents.
    pub fn key_pos(&self, path: &[Seg]) -> Pos {
        let Some((last, parent)) = path.split_last() else {
            return Pos::default();
        };
        let found = match last {
            Seg::Key(name) => self.probe(parent, Probe::Key(name)),
            Seg::Index(_) => self.probe(path, Probe::Value),
        };
        found.unwrap_or_else(|| self.value_pos(parent))
    }

    fn probe(&self, path: &[Seg], probe: Probe<'_>) -> Option<Pos> {
        let walk = Walk { path, then: probe };
        match walk.deserialize(yaml_serde::Deserializer::from_str(&self.text)) {
            Ok(_) => None,
            Err(err) => err.location().map(|l| Pos {
                line: Some(l.line()),
                column: Some(l.column()),
            }),
        }
    }

    /// Deserializes the mapping at `path` into `T`, leaving out the `nested` blocks (read on
    /// their own) and collecting every error: each unknown key, and each key whose value fails
    /// (that key is then left at its default and the block re-read without it). `context` names
    /// the block in messages, e.g. `in server "echo"`.
    pub fn block<T: DeserializeOwned + Default>(
        &self,
        path: &[Seg],
        nested: &[&str],
        context: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Block<T> {
        let fields = struct_fields::<T>();
        let state = RefCell::new(BlockState::default());
        let before = errors.len();
        let mut value = None;
        loop {
            state.borrow_mut().last_key = None;
            let seed = Walk {
                path,
                then: BlockSeed::<T> {
                    nested,
                    fields,
                    state: &state,
                    _type: PhantomData,
                },
            };
            match seed.deserialize(yaml_serde::Deserializer::from_str(&self.text)) {
                Ok(found) => {
                    value = found;
                    break;
                }
                Err(err) => {
                    let pos = Pos {
                        line: err.location().map(|l| l.line()),
                        column: err.location().map(|l| l.column()),
                    };
                    let mut state = state.borrow_mut();
                    match state.last_key.take() {
                        Some(culprit) if !state.skip.contains(&culprit) => {
                            errors.push(self.error(
                                pos,
                                format!(
                                    "invalid value for \"{culprit}\" {context}: {}",
                                    clean_message(&err)
                                ),
                                field_hint(&culprit),
                            ));
                            state.skip.insert(culprit);
                        }
                        _ => {
                            errors.push(self.error(
                                pos,
                                format!("{} {context}", clean_message(&err)),
                                "write the block as indented `key: value` lines, or as {key: value, ...}".to_owned(),
                            ));
                            break;
                        }
                    }
                }
            }
        }
        let valid = fields
            .iter()
            .chain(nested)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        for unknown in &state.borrow().unknown {
            errors.push(self.error(
                self.key_pos(&join(path, [key(unknown)])),
                format!("unknown key \"{unknown}\" {context}"),
                format!("valid keys: {valid}"),
            ));
        }
        Block {
            value: value.unwrap_or_default(),
            ok: errors.len() == before,
            failed: state.into_inner().skip,
        }
    }
}

/// The message of a yaml_serde error without its path prefix and position suffix (both are
/// reported separately).
fn clean_message(err: &yaml_serde::Error) -> String {
    let mut text = err.to_string();
    if let Some(location) = err.location() {
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        if let Some(stripped) = text.strip_suffix(&suffix) {
            text = stripped.to_owned();
        }
    }
    match text.split_once(": ") {
        Some((head, tail)) if !head.contains(char::is_whitespace) && !head.contains('"') => {
            tail.to_owned()
        }
        _ => text,
    }
}

/// What to write instead of a bad value, by key name.
fn field_hint(key: &str) -> Option<String> {
    let hint = match key {
        "port" => {
            "write a port number such as 5010 inside port_range, or omit it to have one allocated"
        }
        "enabled" | "display_in_web" | "required" => "write true or false",
        "burst" | "failures" => "write a whole number of at least 1",
        "keep" | "buffer_lines" => "write a whole number",
        "policy" => "write one of on-failure, always, never",
        "rotation" => "write one of minutely, hourly, daily, never",
        "env" => "write a map of NAME: value pairs",
        "binary" => "write a program name (looked up in bin_dirs, then PATH) or an absolute path",
        "args"
        | "scopes"
        | "allowed_origins"
        | "allowed_hosts"
        | "trusted_proxies"
        | "env_passthrough"
        | "bin_dirs"
        | "authorization_servers" => "write a list, e.g. [a, b]",
        "backoff" | "max_backoff" | "reset_after" | "window" | "interval" | "timeout"
        | "start_timeout" | "stop_timeout" | "leeway" => {
            "write a duration such as \"500ms\", \"10s\" or \"5m\""
        }
        "max_body" => "write a size such as \"4MiB\", \"512KB\" or a number of bytes",
        "port_range" => "write START-END with 1 <= START <= END <= 65535, e.g. 5000-5999",
        "mode" => "write a quoted octal mode such as \"0660\" (unquoted, YAML reads a number)",
        "listen" => {
            "write IP:PORT, e.g. 127.0.0.1:8080, 0.0.0.0:8080 or [::1]:8080 (no host names)"
        }
        "public_url" => {
            "write an http(s) URL without query, e.g. http://localhost:8080 or https://mcp.example.com"
        }
        "algorithm" => {
            "write one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA (an HS256 secret goes in hs256_secret_file)"
        }
        _ => "write a single value (a string, number or boolean as the key expects)",
    };
    Some(hint.to_owned())
}

/// The field names of a struct deriving `Deserialize`, read from what it asks the deserializer for.
fn struct_fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Grab<'a>(&'a mut &'static [&'static str]);
    #[derive(Debug)]
    struct Stop;
    impl fmt::Display for Stop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> Deserializer<'de> for Grab<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Grab(&mut fields));
    fields
}

/// Descends `path`, then hands the node to `then`; `None` when the path does not exist.
struct Walk<'p, S> {
    path: &'p [Seg],
    then: S,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Walk<'_, S> {
    type Value = Option<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        match self.path.split_first() {
            None => self.then.deserialize(deserializer).map(Some),
            Some((seg, rest)) => deserializer.deserialize_any(WalkVisitor {
                seg,
                rest,
                then: self.then,
            }),
        }
    }
}

struct WalkVisitor<'p, S> {
    seg: &'p Seg,
    rest: &'p [Seg],
    then: S,
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for WalkVisitor<'_, S> {
    type Value = Option<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut then = Some(self.then);
        let mut found = None;
        while let Some(key) = map.next_key::<Value>()? {
            let hit = matches!(self.seg, Seg::Key(name) if key_text(&key) == *name);
            match then.take_if(|_| hit) {
                Some(then) => {
                    found = map.next_value_seed(Walk {
                        path: self.rest,
                        then,
                    })?
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut then = Some(self.then);
        let mut found = None;
        let mut index = 0;
        loop {
            let hit = matches!(self.seg, Seg::Index(wanted) if *wanted == index);
            match then.take_if(|_| hit) {
                Some(then) => match seq.next_element_seed(Walk {
                    path: self.rest,
                    then,
                })? {
                    Some(value) => found = value,
                    None => break,
                },
                None => {
                    if seq.next_element::<IgnoredAny>()?.is_none() {
                        break;
                    }
                }
            }
            index += 1;
        }
        Ok(found)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A mapping key as text (`key: ...` keys are strings; numbers and booleans are shown as written).
pub fn key_text(key: &Value) -> String {
    match key {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => "null".into(),
        other => format!("{other:?}"),
    }
}

const PROBE: &str = "position probe";

/// Fails on purpose on the node it reaches (`Value`) or on the key `Key` of the mapping it
/// reaches, so the error carries that node's position.
#[derive(Clone, Copy)]
enum Probe<'a> {
    Value,
    Key(&'a str),
}

impl<'de> DeserializeSeed<'de> for Probe<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(ProbeVisitor(self))
    }
}

struct ProbeVisitor<'a>(Probe<'a>);

impl<'de> Visitor<'de> for ProbeVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PROBE)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Probe::Key(name) = self.0 else {
            return Err(de::Error::custom(PROBE));
        };
        while map.next_key_seed(KeyProbe(name))?.is_some() {
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(PROBE))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(PROBE))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(PROBE))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(PROBE))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(PROBE))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(PROBE))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(PROBE))
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(PROBE))
    }
}

/// Reads one key; fails when it is the wanted one.
struct KeyProbe<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for KeyProbe<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeyProbe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<(), E> {
        if text == self.0 {
            Err(E::custom(PROBE))
        } else {
            Ok(())
        }
    }
    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<(), E> {
        self.visit_str(&flag.to_string())
    }
    fn visit_i64<E: de::Error>(self, number: i64) -> Result<(), E> {
        self.visit_str(&number.to_string())
    }
    fn visit_u64<E: de::Error>(self, number: u64) -> Result<(), E> {
        self.visit_str(&number.to_string())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.visit_str("null")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

#[derive(Default)]
struct BlockState {
    /// Keys whose value failed; left out of the next read.
    skip: BTreeSet<String>,
    /// Keys the struct does not know, in the order found.
    unknown: Vec<String>,
    /// The key being read when an error happened.
    last_key: Option<String>,
}

struct BlockSeed<'a, T> {
    nested: &'a [&'a str],
    fields: &'static [&'static str],
    state: &'a RefCell<BlockState>,
    _type: PhantomData<T>,
}

impl<'de, T: DeserializeOwned + Default> DeserializeSeed<'de> for BlockSeed<'_, T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: DeserializeOwned + Default> Visitor<'de> for BlockSeed<'_, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a mapping with keys {}", self.fields.join(", "))
    }

    /// An empty block (`restart:` with nothing under it) means all defaults.
    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        Ok(T::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(Filter {
            map,
            nested: self.nested,
            fields: self.fields,
            state: self.state,
        }))
    }
}

/// Hands the struct only the keys it knows and that have not failed yet.
struct Filter<'a, A> {
    map: A,
    nested: &'a [&'a str],
    fields: &'static [&'static str],
    state: &'a RefCell<BlockState>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Filter<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.map.next_key::<Value>()? {
            let name = key_text(&key);
            let mut state = self.state.borrow_mut();
            state.last_key = Some(name.clone());
            let nested = self.nested.contains(&name.as_str());
            let known = nested || self.fields.contains(&name.as_str());
            if !known && !state.unknown.contains(&name) {
                state.unknown.push(name.clone());
            }
            if !known || nested || state.skip.contains(&name) {
                drop(state);
                self.map.next_value::<IgnoredAny>()?;
                continue;
            }
            return seed
                .deserialize(StringDeserializer::<A::Error>::new(name))
                .map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}
