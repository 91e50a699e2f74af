//! The JSON Schemas of `mcpd.yaml` and of a server file (`mcpd schema daemon|server`),
//! generated from the raw config types the validator reads, so the two cannot drift apart.
//!
//! Each block struct of `raw` derives `JsonSchema` (its own keys, `additionalProperties:
//! false` from `deny_unknown_fields`); the blocks nested in it come from the one
//! `nested_blocks!` table in `raw.rs`, which the validator also reads. Scalars that the
//! validator parses from strings (durations, sizes, port ranges, modes, addresses) describe
//! their grammar here as a `pattern`.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value, json};

use super::raw::*;

/// Where the .deb installs the schemas; `services/` files point their editors here.
pub const INSTALL_DIR: &str = "/usr/share/mcpd/schema";
/// File name of the daemon file's schema.
pub const DAEMON_FILE: &str = "mcpd.schema.json";
/// File name of a server file's schema.
pub const SERVER_FILE: &str = "server.schema.json";

/// A block of the YAML and the blocks read on their own inside it.
pub trait Nested {
    /// The keys of the nested blocks, passed to `Source::block` so it leaves them out.
    const NESTED: &'static [&'static str];
    /// The schema of each nested block, by key.
    fn nested_schemas(generator: &mut SchemaGenerator) -> Vec<(&'static str, Schema)>;
}

/// The schema of a block's value: a struct with its nested blocks, a list of blocks, or a map.
pub trait BlockSchema {
    fn block_schema(generator: &mut SchemaGenerator) -> Schema;
}

impl<T: JsonSchema + Nested> BlockSchema for T {
    fn block_schema(generator: &mut SchemaGenerator) -> Schema {
        let mut schema = T::json_schema(generator);
        let nested = T::nested_schemas(generator);
        if !nested.is_empty() {
            let properties = schema
                .ensure_object()
                .entry("properties")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(properties) = properties {
                for (key, block) in nested {
                    properties.insert(key.to_owned(), nullable(block).to_value());
                }
            }
        }
        schema
    }
}

/// `nested_blocks! { Parent { key: Child, ... } ... }`: implements [`Nested`] for each parent.
macro_rules! nested_blocks {
    ($($parent:ident { $($key:ident: $child:ty),* $(,)? })*) => {
        $(impl $crate::config::schema::Nested for $parent {
            const NESTED: &'static [&'static str] = &[$(stringify!($key)),*];
            fn nested_schemas(
                _generator: &mut schemars::SchemaGenerator,
            ) -> Vec<(&'static str, schemars::Schema)> {
                vec![$((
                    stringify!($key),
                    <$child as $crate::config::schema::BlockSchema>::block_schema(_generator),
                )),*]
            }
        })*
    };
}
pub(crate) use nested_blocks;

impl<T: BlockSchema> BlockSchema for Vec<T> {
    fn block_schema(generator: &mut SchemaGenerator) -> Schema {
        let items = T::block_schema(generator);
        json_schema!({ "type": "array", "items": items })
    }
}

/// `mcp_servers`: server name -> server block.
pub struct ServerMap;

impl BlockSchema for ServerMap {
    fn block_schema(generator: &mut SchemaGenerator) -> Schema {
        let server = RawServer::block_schema(generator);
        json_schema!({
            "type": "object",
            "description": "The servers of this file, by name.",
            "propertyNames": { "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$" },
            "additionalProperties": nullable(server),
        })
    }
}

/// A block may be written empty (`gateway:` alone reads as null).
fn nullable(schema: Schema) -> Schema {
    json_schema!({ "anyOf": [schema, { "type": "null" }] })
}

/// The schema of `mcpd.yaml`.
pub fn daemon() -> Value {
    document::<RawDaemon>(
        DAEMON_FILE,
        "mcpd daemon configuration (mcpd.yaml)",
        &[],
        true,
    )
}

/// The schema of a server file (`services_dir/*.yaml`).
pub fn server() -> Value {
    document::<RawServerFile>(
        SERVER_FILE,
        "mcpd server file (services_dir/*.yaml)",
        &["mcp_servers"],
        false,
    )
}

fn document<T: BlockSchema>(
    file: &str,
    title: &str,
    required: &[&str],
    may_be_empty: bool,
) -> Value {
    let mut generator = SchemaGenerator::default();
    let root = T::block_schema(&mut generator);
    let mut root = match root.to_value() {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    root.insert("title".into(), json!(title));
    if !required.is_empty() {
        root.insert("required".into(), json!(required));
    }
    if may_be_empty {
        // An empty daemon file means every default.
        root.insert("type".into(), json!(["object", "null"]));
    }
    let definitions = generator.take_definitions(true);
    let mut document = Map::new();
    document.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    document.insert("$id".into(), json!(format!("file://{INSTALL_DIR}/{file}")));
    document.extend(root);
    if !definitions.is_empty() {
        document.insert("$defs".into(), Value::Object(definitions));
    }
    Value::Object(document)
}

/// The schema text as `mcpd schema` prints it and the .deb installs it.
pub fn render(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema serializes");
    text.push('\n');
    text
}

/// A string scalar with a grammar.
fn string(description: &str, pattern: &str) -> Schema {
    json_schema!({ "type": "string", "description": description, "pattern": pattern })
}

/// Case-insensitive alternatives as a regex without flags: `MiB` -> `[mM][iI][bB]`.
fn any_case(words: &[&str]) -> String {
    let classes = |word: &str| {
        word.chars()
            .map(|c| {
                if c.is_ascii_alphabetic() {
                    format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
    };
    words
        .iter()
        .map(|word| classes(word))
        .collect::<Vec<_>>()
        .join("|")
}

/// humantime's units (`humantime::parse_duration`), longest first.
const DURATION_UNITS: &str = "nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|\
    minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|\
    years|year|yrs|yr|y";

fn duration_pattern() -> String {
    // humantime also reads a bare "0".
    format!(r"^\s*(0|([0-9]+(\.[0-9]+)?\s*({DURATION_UNITS})\s*)+)\s*$")
}

macro_rules! scalar_schema {
    ($ty:ty, $name:literal, $schema:expr) => {
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

scalar_schema!(
    Dur,
    "Duration",
    string(
        "A duration such as \"500ms\", \"10s\", \"5m\" or \"1h 30m\".",
        &duration_pattern()
    )
);

impl JsonSchema for Positive<Dur> {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("PositiveDuration")
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let duration = generator.subschema_for::<Dur>();
        json_schema!({
            "description": "A duration longer than zero, such as \"10s\".",
            "allOf": [duration, { "not": { "pattern": "^[^1-9]*$" } }],
        })
    }
}

scalar_schema!(Size, "Size", {
    let units = any_case(&[
        "kib", "mib", "gib", "tib", "kb", "mb", "gb", "tb", "k", "m", "g", "t", "b",
    ]);
    json_schema!({
        "description": "A size: a number of bytes, or a number with a unit such as \"4MiB\" or \"512KB\" (K, M, G, T alone are binary units).",
        "anyOf": [
            { "type": "integer", "minimum": 0 },
            { "type": "string", "pattern": format!(r"^\s*[0-9]+\s*({units})?\s*$") },
        ],
    })
});

scalar_schema!(
    RawPortRange,
    "PortRange",
    string(
        "A port range START-END with 1 <= START <= END <= 65535, such as \"5000-5999\".",
        r"^\s*[0-9]+\s*-\s*[0-9]+\s*$"
    )
);

scalar_schema!(
    Mode,
    "FileMode",
    string(
        "A quoted octal file mode from \"0000\" to \"7777\", such as \"0660\".",
        r"^\s*0*[0-7]{1,4}\s*$"
    )
);

scalar_schema!(
    Listen,
    "ListenAddress",
    string(
        "An IP address and port, such as \"127.0.0.1:8080\" or \"[::1]:8080\" (no host names).",
        r"^\s*([0-9]{1,3}(\.[0-9]{1,3}){3}|\[[0-9A-Fa-f:.]+(%[0-9A-Za-z]+)?\]):[0-9]{1,5}\s*$"
    )
);

scalar_schema!(
    PublicUrl,
    "PublicUrl",
    string(
        "The http(s) URL clients reach the gateway at, such as \"https://mcp.example.com\" (no user, query or fragment).",
        r"^\s*[hH][tT][tT][pP][sS]?://[^/@?#\s]+(/[^?#\s]*)?\s*$"
    )
);

scalar_schema!(
    AllowedHost,
    "AllowedHost",
    string(
        "A Host value host[:port], such as \"mcp.example.com\" or \"10.0.0.5:8080\".",
        r"^([^\s/@?#:\[\]]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$"
    )
);

scalar_schema!(
    TrustedProxy,
    "TrustedProxy",
    string(
        "An IP address or CIDR network, such as \"10.0.0.0/8\" or \"::1\".",
        r"^\s*[0-9A-Fa-f:.]+(/[0-9]{1,3})?\s*$"
    )
);

scalar_schema!(
    Alg,
    "PublicKeyAlgorithm",
    json_schema!({
        "description": "The JWT algorithm of a PEM public key.",
        "enum": PUBLIC_KEY_ALGORITHMS.split(", ").collect::<Vec<_>>(),
    })
);

/// A scope as RFC 6749 writes it (visible ASCII but `"` and `\\`, no spaces).
const SCOPE_PATTERN: &str = "^[\\x21\\x23-\\x5B\\x5D-\\x7E]+$";

impl JsonSchema for Scopes {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Scopes")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "OAuth scopes; a token passes with any one of them.",
            "type": "array",
            "items": { "type": "string", "pattern": SCOPE_PATTERN },
        })
    }
}

impl JsonSchema for RawToolRules {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("ToolRules")
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Per-tool rules: a glob on tool names (`*`, `?`) -> the scopes that may call the tools it matches (besides admin). The first matching pattern decides.",
            "type": ["object", "null"],
            "propertyNames": {
                "pattern": "^[A-Za-z0-9_.\\-/*?]{1,128}$",
            },
            "additionalProperties": {
                "type": "array",
                "minItems": 1,
                "items": { "type": "string", "pattern": SCOPE_PATTERN },
            },
        })
    }
}
