//! One YAML file as written: its syntax check, its paths and positions, and the errors that
//! point into it.
//!
//! yaml_serde has no spanned values, but it stamps each deserialization error with the position
//! of the node being read. Both the blocks ([`block`]) and the position lookups ([`position`])
//! use that: a [`walk::Walk`] seed descends to a path and deserializes there (a block) or fails
//! on purpose (a probe), and the error's location is the node's position. Each such reading
//! parses the whole text again, so a block that reads cleanly is read from the document parsed
//! once instead; the text is read again only where an error needs its position.

mod block;
mod position;
mod walk;

use std::path::{Path, PathBuf};

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

/// A parsed YAML file.
pub struct Source {
    pub file: PathBuf,
    text: String,
    /// The whole document, for structure (which keys exist).
    pub value: Value,
    /// No YAML tag (`!name`), anchor or alias (`&a`, `*a`), and no key but a string anywhere
    /// in it: the document parsed once reads as the text does (`Source::block`).
    plain: bool,
    /// How many times the text was read again after [`Source::parse`] (blocks, positions).
    #[cfg(test)]
    pub text_reads: std::sync::atomic::AtomicUsize,
}

impl Source {
    /// Parses `text`; a syntax error comes back with its position.
    pub fn parse(file: &Path, text: String) -> Result<Source, ConfigError> {
        match yaml_serde::from_str::<Value>(&text) {
            Ok(value) => Ok(Source {
                file: file.to_owned(),
                plain: !has_node_properties(&text) && is_plain(&value),
                text,
                value,
                #[cfg(test)]
                text_reads: Default::default(),
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
            plain: true,
            #[cfg(test)]
            text_reads: Default::default(),
        }
    }

    /// A fresh reader of the text, counted in tests.
    fn text_reader(&self) -> yaml_serde::Deserializer<'_> {
        #[cfg(test)]
        self.text_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        yaml_serde::Deserializer::from_str(&self.text)
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
}

/// True when `text` may hold a tag, anchor or alias (`!t`, `&a`, `*a`): one of `!&*` where a
/// node can start (first on its line, or after `:`, `-`, `?`, `[`, `{` or `,` and blanks). The
/// text's reader reads those nodes differently from the parsed document's (an anchored `5` or
/// `!!int "5"` is no number there). Quoted text can make it true without need, never false.
fn has_node_properties(text: &str) -> bool {
    text.lines().any(|line| {
        line.match_indices(['!', '&', '*']).any(|(at, _)| {
            line[..at]
                .trim_end_matches([' ', '\t'])
                .chars()
                .next_back()
                .is_none_or(|before| matches!(before, ':' | '-' | '?' | '[' | '{' | ','))
        })
    })
}

/// True when neither a YAML tag (`!name`) nor a key other than a string appears in `node`.
fn is_plain(node: &Value) -> bool {
    match node {
        Value::Tagged(_) => false,
        Value::Sequence(items) => items.iter().all(is_plain),
        Value::Mapping(map) => map
            .iter()
            .all(|(key, value)| key.is_string() && is_plain(value)),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => true,
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
