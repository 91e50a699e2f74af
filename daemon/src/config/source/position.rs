//! Where a key or value is written: a probe walks to the node and fails there on purpose, so
//! the error yaml_serde returns carries the node's line and column.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::walk::Walk;
use super::{Pos, Seg, Source};

impl Source {
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
        match walk.deserialize(self.text_reader()) {
            Ok(_) => None,
            Err(err) => err.location().map(|l| Pos {
                line: Some(l.line()),
                column: Some(l.column()),
            }),
        }
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
