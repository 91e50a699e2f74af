//! Glob patterns on tool names (`delete_*`, `get_?`, `*`): `*` matches any run of characters,
//! `?` exactly one, everything else itself. Patterns hold only the characters tool names may
//! (`[A-Za-z0-9._/-]`, a little wider than SEP-986 to allow namespaced names) plus `*` and `?`.

use std::fmt;

/// Longest pattern accepted (SEP-986 caps tool names at 128).
pub const MAX_PATTERN: usize = 128;

/// A checked glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolPattern(String);

impl ToolPattern {
    /// Checks `text`; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<ToolPattern, String> {
        if text.is_empty() {
            return Err("a tool pattern may not be empty".into());
        }
        if text.len() > MAX_PATTERN {
            return Err(format!(
                "a tool pattern is at most {MAX_PATTERN} characters"
            ));
        }
        if let Some(bad) = text.chars().find(|&c| {
            !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '*' | '?'))
        }) {
            return Err(format!(
                "{:?} may not appear in a tool pattern: use letters, digits, `_`, `-`, `.`, `/`, and `*` or `?` as wildcards",
                bad
            ));
        }
        Ok(ToolPattern(normalize(text)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes(), false)
    }

    /// True when every name `other` matches, this pattern matches too (so a rule for `other`
    /// placed after one for `self` can never apply). Exact for most patterns; when it cannot
    /// tell, it answers false (no warning rather than a wrong one).
    pub fn covers(&self, other: &ToolPattern) -> bool {
        glob_match(self.0.as_bytes(), other.0.as_bytes(), true)
    }
}

impl fmt::Display for ToolPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs of wildcards in a canonical order (`?` before `*`, one `*`): `*?*` and `?*` match the
/// same names, and [`ToolPattern::covers`] compares patterns symbol by symbol.
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '*' && c != '?' {
            out.push(c);
            continue;
        }
        let (mut stars, mut marks) = (0, 0);
        let mut current = Some(c);
        while let Some(w) = current {
            if w == '*' {
                stars += 1;
            } else {
                marks += 1;
            }
            current = chars.next_if(|&n| n == '*' || n == '?');
        }
        out.extend(std::iter::repeat_n('?', marks));
        if stars > 0 {
            out.push('*');
        }
    }
    out
}

/// Matches `pattern` against `text`. With `symbolic`, `text` is itself a pattern: its `*` can
/// only be consumed by a `*` of `pattern`, and its `?` by a `?` or `*`.
fn glob_match(pattern: &[u8], text: &[u8], symbolic: bool) -> bool {
    let (mut p, mut t) = (0, 0);
    // The last `*` of the pattern and the text position it was tried at.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        let literal_ok = |pc: u8, tc: u8| {
            if symbolic {
                match (pc, tc) {
                    (b'?', b'*') => false,
                    (b'?', _) => true,
                    (_, b'*' | b'?') => false,
                    (pc, tc) => pc == tc,
                }
            } else {
                pc == b'?' || pc == tc
            }
        };
        if p < pattern.len() && pattern[p] == b'*' {
            backtrack = Some((p, t));
            p += 1;
        } else if p < pattern.len() && literal_ok(pattern[p], text[t]) {
            p += 1;
            t += 1;
        } else if let Some((star, at)) = backtrack {
            p = star + 1;
            t = at + 1;
            backtrack = Some((star, at + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> ToolPattern {
        ToolPattern::parse(text).unwrap()
    }

    #[test]
    fn matching() {
        let cases = [
            ("*", "anything", true),
            ("*", "", true),
            ("delete_*", "delete_db", true),
            ("delete_*", "delete_", true),
            ("delete_*", "undelete_db", false),
            ("*_delete*", "db_delete_all", true),
            ("get_?", "get_a", true),
            ("get_?", "get_ab", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXcYb", false),
            ("search", "search", true),
            ("search", "Search", false),
        ];
        for (p, name, expected) in cases {
            assert_eq!(pattern(p).matches(name), expected, "{p} ~ {name}");
        }
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", "del ete", "a[bc]", "x\u{0}", "ü*", &"a".repeat(129)] {
            assert!(ToolPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn coverage() {
        let cases = [
            ("*", "delete_*", true),
            ("delete_*", "delete_db", true),
            ("delete_*", "delete_?*", true),
            ("delete_?*", "delete_*", false),
            ("search", "search", true),
            ("*_db", "delete_db", true),
            ("*a*", "*a*a*", true),
            ("?*", "*?", true),
            ("delete_db", "delete_*", false),
            ("get_?", "get_*", false),
            ("get_*", "get_?", true),
        ];
        for (earlier, later, expected) in cases {
            assert_eq!(
                pattern(earlier).covers(&pattern(later)),
                expected,
                "{earlier} covers {later}"
            );
        }
    }
}
