//! Block-by-block deserialization that collects every error: a block is read into its raw
//! struct, each failing key is reported and left at its default, and unknown keys are listed.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::{MapAccessDeserializer, StringDeserializer};
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor,
};
use yaml_serde::Value;

use super::walk::Walk;
use super::{Pos, Seg, Source, clean_message, join, key, key_text};
use crate::config::error::ConfigError;
use crate::config::schema::Nested;

/// A block read by `Source::block`: its value (defaults where a key failed), whether it read
/// cleanly, and the keys whose value failed.
pub struct Block<T> {
    pub value: T,
    pub ok: bool,
    pub failed: BTreeSet<String>,
}

impl Source {
    /// Deserializes the mapping at `path` into `T`, leaving out the `nested` blocks (read on
    /// their own) and collecting every error: each unknown key, and each key whose value fails
    /// (that key is then left at its default and the block re-read without it). `context` names
    /// the block in messages, e.g. `in server "echo"`.
    pub fn block<T: DeserializeOwned + Default + Nested + fmt::Debug>(
        &self,
        path: &[Seg],
        nested: &[&str],
        context: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Block<T> {
        // The JSON Schema knows nested blocks only from `raw.rs`'s `nested_blocks!` table: a
        // call that names others is a bug every config test trips over.
        debug_assert_eq!(
            nested,
            T::NESTED,
            "nested blocks of {} differ from raw.rs's nested_blocks! table",
            std::any::type_name::<T>()
        );
        let fields = struct_fields::<T>();
        if let Some(value) = self.clean_block::<T>(path, nested, fields) {
            // Debug builds (every test) read the block from the text too: the two readings
            // must agree, or the shortcut would change what a file means.
            #[cfg(debug_assertions)]
            {
                let mut text_errors = Vec::new();
                #[cfg(test)]
                let reads = self.text_reads.load(std::sync::atomic::Ordering::Relaxed);
                let from_text =
                    self.block_from_text::<T>(path, nested, fields, context, &mut text_errors);
                // The check's reading is not one the loader makes.
                #[cfg(test)]
                self.text_reads
                    .store(reads, std::sync::atomic::Ordering::Relaxed);
                debug_assert!(
                    from_text.ok && format!("{:?}", from_text.value) == format!("{value:?}"),
                    "block {path:?} of {} read from the parsed document differs from the text: {value:?} vs {:?} ({text_errors:?})",
                    self.file.display(),
                    from_text.value,
                );
            }
            return Block {
                value,
                ok: true,
                failed: BTreeSet::new(),
            };
        }
        self.block_from_text(path, nested, fields, context, errors)
    }

    /// The block at `path` read from the document parsed once, when it reads cleanly (no
    /// unknown key, no failing value) and the file is plain: no YAML tag, which the parsed
    /// document's reader sees through and the text's does not, and only string keys, so a key
    /// is found by its name alone. `None` means read it from the text, which places errors.
    ///
    /// Reading each block from the text costs a parse of the whole file per block: quadratic
    /// in the servers a file holds, and most of a reload at 1000 servers.
    fn clean_block<T: DeserializeOwned + Default>(
        &self,
        path: &[Seg],
        nested: &[&str],
        fields: &'static [&'static str],
    ) -> Option<T> {
        if !self.plain {
            return None;
        }
        let Some(node) = self.node(path) else {
            // Absent: all defaults, as the text's walk finds.
            return Some(T::default());
        };
        let state = RefCell::new(BlockState::default());
        let seed = BlockSeed::<T> {
            nested,
            fields,
            state: &state,
            _type: PhantomData,
        };
        let value = seed.deserialize(node).ok()?;
        state.borrow().unknown.is_empty().then_some(value)
    }

    /// The node at `path` of the parsed document of a plain file (string keys only).
    fn node(&self, path: &[Seg]) -> Option<&Value> {
        path.iter()
            .try_fold(&self.value, |node, seg| match (seg, node) {
                (Seg::Key(name), Value::Mapping(map)) => map.get(name.as_str()),
                (Seg::Index(index), Value::Sequence(items)) => items.get(*index),
                _ => None,
            })
    }

    /// [`Source::block`] read from the text: errors carry their positions.
    fn block_from_text<T: DeserializeOwned + Default>(
        &self,
        path: &[Seg],
        nested: &[&str],
        fields: &'static [&'static str],
        context: &str,
        errors: &mut Vec<ConfigError>,
    ) -> Block<T> {
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
            match seed.deserialize(self.text_reader()) {
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

/// What to write instead of a bad value, by key name.
fn field_hint(key: &str) -> Option<String> {
    let hint = match key {
        "port" => {
            "write a port number such as 5010 inside port_range, or omit it to have one allocated"
        }
        "enabled" | "display_in_web" | "required" | "web" => "write true or false",
        "burst" | "failures" => "write a whole number of at least 1",
        "keep" | "buffer_lines" => "write a whole number",
        "policy" => "write one of on-failure, always, never",
        "rotation" => "write one of minutely, hourly, daily, never",
        "transport" => "write http or stdio",
        "sessions" => "write shared or per-client",
        "max_sessions" => "write a whole number of at least 1",
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
        | "start_timeout" | "stop_timeout" | "leeway" | "idle_timeout" => {
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
