//! Serde types that mirror the YAML an operator writes, before validation.
//!
//! Every field is optional here (presence and cross-field rules are checked in `validate`), every
//! struct refuses unknown keys, and scalar formats (durations, sizes, port ranges, modes, listen
//! addresses, URLs, key algorithms) are parsed on the spot so their errors carry the exact
//! position the YAML parser reports. Nested blocks (`gateway`, `restart`, ...) are deserialized
//! one by one by `source::Source::block`, so a struct lists only its own fields; the keys of the
//! blocks it contains are named where it is read (`validate`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::model::{GatewayLimits, IpNet, RestartPolicy, Rotation};
use crate::authz::{ToolPattern, ToolRule};

/// The daemon file `mcpd.yaml`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    pub services_dir: Option<PathBuf>,
    pub port_range: Option<RawPortRange>,
    pub bin_dirs: Option<Vec<PathBuf>>,
    pub state_dir: Option<PathBuf>,
    pub cgroup: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub listen: Option<Listen>,
    pub public_url: Option<PublicUrl>,
    pub allowed_origins: Option<Vec<String>>,
    pub allowed_hosts: Option<Vec<AllowedHost>>,
    pub trusted_proxies: Option<Vec<TrustedProxy>>,
    pub max_body: Option<Size>,
    pub header_timeout: Option<Positive<Dur>>,
    pub idle_timeout: Option<Positive<Dur>>,
    pub body_idle_timeout: Option<Positive<Dur>>,
    pub max_connections: Option<NonZeroUsize>,
    pub max_connections_per_peer: Option<NonZeroUsize>,
    pub max_streams: Option<NonZeroU32>,
    pub max_upstream: Option<NonZeroUsize>,
    pub max_upstream_per_server: Option<NonZeroUsize>,
    pub upstream_wait: Option<Positive<Dur>>,
    /// Serve the status page at `/` and `/ui/` (default true).
    pub web: Option<bool>,
}

impl RawGateway {
    /// The timeouts and caps, with defaults for what the file leaves out.
    pub fn limits(&self) -> GatewayLimits {
        let defaults = GatewayLimits::default();
        let duration = |set: Option<Positive<Dur>>, default| set.map_or(default, |d| d.0.0);
        GatewayLimits {
            header_timeout: duration(self.header_timeout, defaults.header_timeout),
            idle_timeout: duration(self.idle_timeout, defaults.idle_timeout),
            body_idle_timeout: duration(self.body_idle_timeout, defaults.body_idle_timeout),
            max_connections: self.max_connections.map(NonZeroUsize::get),
            max_connections_per_peer: self.max_connections_per_peer.map(NonZeroUsize::get),
            max_streams: self
                .max_streams
                .map_or(defaults.max_streams, NonZeroU32::get),
            max_upstream: self.max_upstream.map(NonZeroUsize::get),
            max_upstream_per_server: self.max_upstream_per_server.map(NonZeroUsize::get),
            upstream_wait: duration(self.upstream_wait, defaults.upstream_wait),
        }
    }
}

/// A duration that must not be zero (a zero timeout would close every connection at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Positive<T>(pub T);

impl<'de> Deserialize<'de> for Positive<Dur> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let dur = Dur::deserialize(deserializer)?;
        if dur.0.is_zero() {
            return Err(de::Error::custom("must be longer than zero"));
        }
        Ok(Positive(dur))
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawControl {
    pub socket: Option<PathBuf>,
    pub mode: Option<Mode>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLogs {
    pub dir: Option<PathBuf>,
    pub rotation: Option<RawRotation>,
    pub keep: Option<usize>,
    pub buffer_lines: Option<usize>,
    pub audit: Option<bool>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawRotation {
    Minutely,
    Hourly,
    Daily,
    Never,
}

impl From<RawRotation> for Rotation {
    fn from(raw: RawRotation) -> Self {
        match raw {
            RawRotation::Minutely => Rotation::Minutely,
            RawRotation::Hourly => Rotation::Hourly,
            RawRotation::Daily => Rotation::Daily,
            RawRotation::Never => Rotation::Never,
        }
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub issuer: Option<String>,
    pub authorization_servers: Option<Vec<String>>,
    pub leeway: Option<Dur>,
}

/// One entry of `auth.keys`: exactly one of the three file kinds.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub hs256_secret_file: Option<PathBuf>,
    pub public_key_file: Option<PathBuf>,
    pub algorithm: Option<Alg>,
    pub jwks_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub stop_timeout: Option<Dur>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRestart {
    pub policy: Option<RawPolicy>,
    pub backoff: Option<Dur>,
    pub max_backoff: Option<Dur>,
    pub reset_after: Option<Dur>,
    pub burst: Option<u32>,
    pub window: Option<Dur>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RawPolicy {
    OnFailure,
    Always,
    Never,
}

impl From<RawPolicy> for RestartPolicy {
    fn from(raw: RawPolicy) -> Self {
        match raw {
            RawPolicy::OnFailure => RestartPolicy::OnFailure,
            RawPolicy::Always => RestartPolicy::Always,
            RawPolicy::Never => RestartPolicy::Never,
        }
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
    pub failures: Option<u32>,
    pub start_timeout: Option<Dur>,
}

/// A server file: its only top-level key is the block `mcp_servers`, a map of name to server.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServerFile {}

/// One entry of `mcp_servers`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub binary: Option<String>,
    pub package: Option<String>,
    pub port: Option<u16>,
    pub endpoint: Option<String>,
    pub enabled: Option<bool>,
    pub display_in_web: Option<bool>,
    pub description: Option<String>,
    pub args: Option<Vec<String>>,
    pub env: Option<BTreeMap<String, String>>,
    pub env_passthrough: Option<Vec<String>>,
    pub working_dir: Option<PathBuf>,
    pub path: Option<String>,
    pub stop_timeout: Option<Dur>,
    pub audit: Option<RawAudit>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub sandbox: Option<RawSandbox>,
    pub transport: Option<RawTransport>,
    pub sessions: Option<RawSessions>,
    pub max_sessions: Option<usize>,
    pub idle_timeout: Option<Dur>,
    // A remote server (`validate::remote`): `url` instead of `binary`.
    pub url: Option<String>,
    // A virtual server (`validate::virtual_server`): `aggregate` instead of `binary`.
    pub aggregate: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
    pub tools: Option<Vec<String>>,
    pub separator: Option<String>,
    pub prefix: Option<RawPrefix>,
    pub max_calls_per_caller: Option<u32>,
}

/// `sessions:` of a stdio server.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RawSessions {
    Shared,
    PerClient,
}

/// `transport:` of a server: how mcpd talks to the process it runs.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawTransport {
    Http,
    Stdio,
}

/// `tls:` of a remote server.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// PEM file of extra certificate authorities, trusted beside the system's.
    pub ca_file: Option<PathBuf>,
}

/// `upstream_auth:` of a remote server: the operator's credential, sent on every request.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamAuth {
    /// A file holding a token sent as `Authorization: Bearer <token>`.
    pub bearer_file: Option<PathBuf>,
    /// A header name (with `value_file`), e.g. `X-Api-Key`.
    pub header: Option<String>,
    /// A file holding the value of `header`.
    pub value_file: Option<PathBuf>,
}

/// `limits:` of a server or of `defaults`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub memory: Option<Size>,
    pub cpu: Option<f64>,
    pub tasks: Option<u64>,
    pub open_files: Option<u64>,
}

/// `prefix:` of a virtual server.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RawPrefix {
    Always,
    Never,
}

/// `sandbox:` of a server: what its process may not see or change.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSandbox {
    /// A private, empty `/tmp`.
    pub private_tmp: Option<bool>,
    /// Absolute paths mounted read-only for the server.
    pub read_only_paths: Option<Vec<PathBuf>>,
}

/// `audit:` of a server.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Keep each call's `arguments` in its audit record.
    pub arguments: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawOAuth {
    pub required: Option<bool>,
    pub scopes: Option<Scopes>,
    pub audience: Option<String>,
    pub client_id: Option<String>,
    pub tools: Option<RawToolRules>,
}

/// `oauth.tools`: tool pattern -> scopes, in the order written (first match wins).
#[derive(Debug, Default)]
pub struct RawToolRules(pub Vec<ToolRule>);

impl<'de> Deserialize<'de> for RawToolRules {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RulesVisitor;
        impl<'de> Visitor<'de> for RulesVisitor {
            type Value = RawToolRules;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of tool pattern to a list of scopes, e.g. \"delete_*\": [admin]")
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawToolRules, E> {
                Ok(RawToolRules::default())
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawToolRules, A::Error> {
                let mut rules = Vec::new();
                while let Some(pattern) = map.next_key::<String>()? {
                    let pattern = ToolPattern::parse(&pattern).map_err(|why| {
                        de::Error::custom(format!("tool pattern {pattern:?}: {why}"))
                    })?;
                    let scopes: Vec<String> = map.next_value()?;
                    if scopes.is_empty() {
                        return Err(de::Error::custom(format!(
                            "tool pattern \"{pattern}\" lists no scopes (only admin could call it: write [admin])"
                        )));
                    }
                    if let Some(bad) = scopes.iter().find(|scope| !valid_scope(scope)) {
                        return Err(de::Error::custom(format!(
                            "scope {bad:?} of tool pattern \"{pattern}\" is not a valid OAuth scope (visible ASCII, no spaces, quotes or backslashes)"
                        )));
                    }
                    rules.push(ToolRule { pattern, scopes });
                }
                Ok(RawToolRules(rules))
            }
        }
        deserializer.deserialize_any(RulesVisitor)
    }
}

/// `oauth.scopes`: each an RFC 6749 scope-token (they are written into `WWW-Authenticate`
/// challenges, so a quote or a space would break them).
#[derive(Debug, Default)]
pub struct Scopes(pub Vec<String>);

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let scopes = Vec::<String>::deserialize(deserializer)?;
        if let Some(bad) = scopes.iter().find(|scope| !valid_scope(scope)) {
            return Err(de::Error::custom(format!(
                "{bad:?} is not a valid OAuth scope (visible ASCII, no spaces, quotes or backslashes)"
            )));
        }
        Ok(Scopes(scopes))
    }
}

/// RFC 6749 scope-token: `%x21 / %x23-5B / %x5D-7E`, one or more.
pub fn valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

// Which blocks sit inside which: each is read on its own (`Source::block`'s `nested`), so
// a struct above lists only its own keys. The validator reads `Raw*::NESTED` and the JSON
// Schema (`schema.rs`) reads the same lines, so a new block is one entry here. Every block
// struct is listed, with `{}` when nothing nests in it.
super::schema::nested_blocks! {
    RawDaemon {
        gateway: RawGateway,
        control: RawControl,
        logs: RawLogs,
        auth: RawAuth,
        defaults: RawDefaults,
    }
    RawGateway {}
    RawControl {}
    RawLogs {}
    RawAuth { keys: Vec<RawKey> }
    RawKey {}
    RawDefaults { restart: RawRestart, health: RawHealth, limits: RawLimits }
    RawRestart {}
    RawHealth {}
    RawServerFile { mcp_servers: super::schema::ServerMap }
    RawServer {
        oauth: RawOAuth,
        restart: RawRestart,
        health: RawHealth,
        limits: RawLimits,
        tls: RawTls,
        upstream_auth: RawUpstreamAuth,
    }
    RawOAuth {}
    RawTls {}
    RawUpstreamAuth {}
    RawLimits {}
}

/// Implements `Deserialize` for a newtype parsed from a string scalar by `$parse`.
macro_rules! from_str_scalar {
    ($ty:ty, $expecting:literal, $parse:expr) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct StrVisitor;
                impl Visitor<'_> for StrVisitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, text: &str) -> Result<$ty, E> {
                        let parse: fn(&str) -> Result<$ty, String> = $parse;
                        parse(text).map_err(E::custom)
                    }
                }
                deserializer.deserialize_str(StrVisitor)
            }
        }
    };
}

/// A humantime duration such as `500ms`, `10s` or `1m 30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

from_str_scalar!(
    Dur,
    "a duration such as \"500ms\", \"10s\" or \"5m\"",
    |text| {
        humantime::parse_duration(text.trim())
            .map(Dur)
            .map_err(|err| format!("invalid duration \"{text}\": {err}"))
    }
);

/// A size in bytes: a plain number, or a number with a unit (`4MiB`, `4MB`, `512KiB`, `1G`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"4MiB\", \"512KB\" or a number of bytes")
            }
            fn visit_u64<E: de::Error>(self, bytes: u64) -> Result<Size, E> {
                Ok(Size(bytes))
            }
            fn visit_i64<E: de::Error>(self, bytes: i64) -> Result<Size, E> {
                u64::try_from(bytes)
                    .map(Size)
                    .map_err(|_| E::custom(format!("invalid size {bytes}: must not be negative")))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Size, E> {
                parse_size(text).map(Size).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Parses `4MiB`, `4 MB`, `4096`, `1g`: decimal (kB, MB, GB, TB) and binary (KiB, MiB, GiB, TiB)
/// units, case-insensitive, `K`/`M`/`G`/`T` alone meaning binary units.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("invalid size \"{text}\": {why}");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(bad("expected a number"));
    }
    let number: u64 = digits.parse().map_err(|_| bad("number too large"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return Err(bad(&format!("unknown unit \"{}\"", unit.trim()))),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| bad("too large"))
}

/// `start-end`, both in 1..=65535, `start <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPortRange {
    pub start: u16,
    pub end: u16,
}

from_str_scalar!(
    RawPortRange,
    "a port range such as \"5000-5999\"",
    parse_port_range
);

pub fn parse_port_range(text: &str) -> Result<RawPortRange, String> {
    let (start, end) = text
        .split_once('-')
        .ok_or_else(|| format!("invalid port range \"{text}\": expected START-END"))?;
    let parse = |part: &str| -> Result<u16, String> {
        let number: u64 = part.trim().parse().map_err(|_| {
            format!(
                "invalid port range \"{text}\": \"{}\" is not a number",
                part.trim()
            )
        })?;
        match u16::try_from(number) {
            Ok(port) if port >= 1 => Ok(port),
            _ => Err(format!(
                "invalid port range \"{text}\": {number} is outside 1-65535"
            )),
        }
    };
    let (start, end) = (parse(start)?, parse(end)?);
    if start > end {
        return Err(format!("invalid port range \"{text}\": start is above end"));
    }
    Ok(RawPortRange { start, end })
}

/// A file mode written as a quoted octal string, e.g. `"0660"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModeVisitor;
        impl Visitor<'_> for ModeVisitor {
            type Value = Mode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quoted octal file mode such as \"0660\"")
            }
            fn visit_u64<E: de::Error>(self, number: u64) -> Result<Mode, E> {
                Err(E::custom(format!(
                    "invalid mode {number}: a mode must be a quoted octal string"
                )))
            }
            fn visit_i64<E: de::Error>(self, number: i64) -> Result<Mode, E> {
                self.visit_u64(number.unsigned_abs())
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Mode, E> {
                match u32::from_str_radix(text.trim(), 8) {
                    Ok(mode) if mode <= 0o7777 => Ok(Mode(mode)),
                    _ => Err(E::custom(format!(
                        "invalid mode \"{text}\": not an octal mode from 0000 to 7777"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(ModeVisitor)
    }
}

/// `gateway.listen`: an IP socket address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub SocketAddr);

from_str_scalar!(Listen, "an address such as \"127.0.0.1:8080\"", |text| {
    text.trim()
        .parse()
        .map(Listen)
        .map_err(|_| format!("invalid listen address \"{text}\": expected IP:PORT"))
});

/// One entry of `gateway.trusted_proxies`: an IP address or CIDR network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy(pub IpNet);

from_str_scalar!(
    TrustedProxy,
    "an IP address or CIDR network such as \"10.0.0.0/8\"",
    |text| IpNet::parse(text).map(TrustedProxy)
);

/// One entry of `gateway.allowed_hosts`: a `Host` value as a client sends it, `host[:port]`
/// by the same grammar the gateway parses requests with (an entry that could never match a
/// request, such as `http://x`, is an error at load, not a silent miss).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost(pub String);

from_str_scalar!(
    AllowedHost,
    "a host[:port] such as \"mcp.example.com\" or \"10.0.0.5:8080\"",
    |text: &str| match crate::gateway::authority::parse(text) {
        Ok(_) => Ok(AllowedHost(text.to_owned())),
        Err(err) => Err(format!("invalid allowed_hosts entry \"{text}\": {err}")),
    }
);

/// `gateway.public_url`: an http(s) URL, kept without its trailing slash, plus its host[:port].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    pub url: String,
    pub host: String,
}

from_str_scalar!(
    PublicUrl,
    "a URL such as \"https://mcp.example.com\"",
    parse_public_url
);

pub fn parse_public_url(text: &str) -> Result<PublicUrl, String> {
    let bad = |why: &str| format!("invalid public_url \"{text}\": {why}");
    let url = text.trim().trim_end_matches('/');
    let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("the scheme must be http or https"));
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("user information is not allowed"));
    }
    if authority.host().is_empty() {
        return Err(bad("no host"));
    }
    if uri.query().is_some() || url.contains('#') {
        return Err(bad("a query or fragment is not allowed"));
    }
    Ok(PublicUrl {
        url: url.to_owned(),
        host: authority.as_str().to_owned(),
    })
}

/// An asymmetric JWT algorithm for a PEM public key. HS* and `none` are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alg(pub jsonwebtoken::Algorithm);

pub const PUBLIC_KEY_ALGORITHMS: &str =
    "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

from_str_scalar!(Alg, "a JWT algorithm such as \"RS256\"", |text| {
    use jsonwebtoken::Algorithm as A;
    let algorithm = match text.trim() {
        "RS256" => A::RS256,
        "RS384" => A::RS384,
        "RS512" => A::RS512,
        "PS256" => A::PS256,
        "PS384" => A::PS384,
        "PS512" => A::PS512,
        "ES256" => A::ES256,
        "ES384" => A::ES384,
        "EdDSA" => A::EdDSA,
        other => {
            return Err(format!("invalid algorithm \"{other}\" for a public key"));
        }
    };
    Ok(Alg(algorithm))
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_plain_decimal_and_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("4 MB"), Ok(4_000_000));
        assert_eq!(parse_size("512kb"), Ok(512_000));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(
            parse_size("4 parsecs")
                .unwrap_err()
                .contains("unknown unit \"parsecs\"")
        );
        assert!(parse_size("MiB").unwrap_err().contains("expected a number"));
    }

    #[test]
    fn port_ranges_are_ordered_and_inside_the_tcp_range() {
        assert_eq!(
            parse_port_range("5000-5999"),
            Ok(RawPortRange {
                start: 5000,
                end: 5999
            })
        );
        assert_eq!(
            parse_port_range("80-80"),
            Ok(RawPortRange { start: 80, end: 80 })
        );
        assert!(
            parse_port_range("5999-5000")
                .unwrap_err()
                .contains("start is above end")
        );
        assert!(
            parse_port_range("0-10")
                .unwrap_err()
                .contains("outside 1-65535")
        );
        assert!(
            parse_port_range("5000-70000")
                .unwrap_err()
                .contains("outside 1-65535")
        );
        assert!(
            parse_port_range("5000")
                .unwrap_err()
                .contains("expected START-END")
        );
    }

    #[test]
    fn public_urls_lose_their_trailing_slash_and_keep_their_authority() {
        let url = parse_public_url("https://mcp.example.com:8443/").unwrap();
        assert_eq!(url.url, "https://mcp.example.com:8443");
        assert_eq!(url.host, "mcp.example.com:8443");
        let url = parse_public_url("http://localhost:8080/base/").unwrap();
        assert_eq!(url.url, "http://localhost:8080/base");
        assert_eq!(url.host, "localhost:8080");
        assert!(
            parse_public_url("ftp://x")
                .unwrap_err()
                .contains("http or https")
        );
        assert!(parse_public_url("localhost:8080").is_err());
        assert!(
            parse_public_url("http://u:p@host")
                .unwrap_err()
                .contains("user information")
        );
    }
}
