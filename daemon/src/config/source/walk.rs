//! Descends a path of keys and indexes in a YAML document, then hands the node found to a
//! seed (a block being read, or a position probe).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use yaml_serde::Value;

use super::{Seg, key_text};

/// Descends `path`, then hands the node to `then`; `None` when the path does not exist.
pub(super) struct Walk<'p, S> {
    pub(super) path: &'p [Seg],
    pub(super) then: S,
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
