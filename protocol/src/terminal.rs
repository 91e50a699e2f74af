//! Text that a server or a client controls, made safe to show on an operator's terminal.
//!
//! Server output, tool names and descriptions, error messages and request details can carry
//! bytes a terminal obeys: ANSI CSI sequences (cursor moves, erasing), OSC (window title,
//! OSC 52 clipboard writes), C1 controls (U+0080-U+009F, which some terminals take as
//! 8-bit ESC/CSI), a bare CR or BS that overwrites what was shown, DEL, and Unicode bidi
//! overrides and isolates (U+202A-U+202E, U+2066-U+2069) that reorder what is read.
//!
//! [`escape`] replaces each such character by a visible form: `\x1b` for C0 controls and
//! DEL, `\u{9b}` for C1 controls and bidi characters. Everything else, including all other
//! valid UTF-8 text, is unchanged. A backslash is not escaped, so literal text such as
//! `\x1b` reads the same as an escaped ESC: `--json` output is the exact form.
//!
//! Both `mcpctl` (at its output boundary) and the daemon (in its own log fields) use it, so
//! the visible form is the same everywhere.

use std::borrow::Cow;
use std::fmt;

/// Which layout characters [`escape`] leaves as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Nothing: the result is one line without tabs (names, errors, table cells).
    Nothing,
    /// Tabs (harmless, and common in server logs): a log line stays one line.
    Tabs,
    /// Tabs and newlines: multi-line text keeps its lines (a tool result, a JSON schema).
    TabsAndNewlines,
}

/// Whether `c` must be shown escaped under `keep`.
pub fn is_unsafe(c: char, keep: Keep) -> bool {
    match c {
        '\t' => keep == Keep::Nothing,
        '\n' => keep != Keep::TabsAndNewlines,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' => true,
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        _ => false,
    }
}

/// `text` with every character a terminal would obey replaced by its visible form; borrowed
/// when there is nothing to replace.
pub fn escape(text: &str, keep: Keep) -> Cow<'_, str> {
    let Some(first) = text.find(|c| is_unsafe(c, keep)) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if is_unsafe(c, keep) {
            push_visible(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn push_visible(out: &mut String, c: char) {
    use std::fmt::Write;
    let code = u32::from(c);
    let _ = if code < 0x80 {
        write!(out, "\\x{code:02x}")
    } else {
        write!(out, "\\u{{{code:x}}}")
    };
}

/// Displays a string escaped as by [`escape`] with [`Keep::Nothing`]: for log fields
/// (`tracing::warn!(reason = %Escaped(&reason), ...)`), so a value is escaped where it is
/// logged and a log line stays one line.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape(self.0, Keep::Nothing))
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// JSON text with the characters JSON leaves raw (DEL, C1 controls, bidi characters) written
/// as `\uXXXX` escapes. The JSON value is exactly the same (these characters can only occur
/// inside strings, where `\uXXXX` denotes them); C0 controls are already escaped by every
/// JSON encoder.
pub fn json_safe(json: &str) -> Cow<'_, str> {
    let unsafe_in_json =
        |c: char| c != '\n' && c != '\t' && c != '\r' && is_unsafe(c, Keep::Nothing);
    let Some(first) = json.find(unsafe_in_json) else {
        return Cow::Borrowed(json);
    };
    let mut out = String::with_capacity(json.len() + 12);
    out.push_str(&json[..first]);
    for c in json[first..].chars() {
        if unsafe_in_json(c) {
            use std::fmt::Write;
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> String {
        escape(text, Keep::Nothing).into_owned()
    }

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for text in [
            "",
            "hello world",
            "héllo wörld, 日本語, emoji 🦀, math ∑, arrows →",
            "Ünïcödé with combining e\u{301} and ZWJ 👩\u{200d}💻",
            "backslash \\x1b stays literal",
            "\u{a0}non-breaking and \u{ff}",
        ] {
            assert!(matches!(escape(text, Keep::Nothing), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn csi_and_osc_sequences_lose_their_escape() {
        assert_eq!(line("\x1b[2J\x1b[H"), "\\x1b[2J\\x1b[H");
        assert_eq!(line("red \x1b[31mX\x1b[0m"), "red \\x1b[31mX\\x1b[0m");
        // OSC 0 window title, terminated by BEL and by ST.
        assert_eq!(line("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
        assert_eq!(line("\x1b]2;title\x1b\\"), "\\x1b]2;title\\x1b\\");
        // OSC 52: write "evil" to the clipboard.
        assert_eq!(line("\x1b]52;c;ZXZpbA==\x07"), "\\x1b]52;c;ZXZpbA==\\x07");
    }

    #[test]
    fn c1_controls_are_escaped() {
        // U+009B is an 8-bit CSI, U+009D an 8-bit OSC, U+0085 NEL.
        assert_eq!(line("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(line("\u{9d}52;c;x\u{9c}"), "\\u{9d}52;c;x\\u{9c}");
        assert_eq!(line("\u{80}\u{85}\u{9f}"), "\\u{80}\\u{85}\\u{9f}");
    }

    #[test]
    fn overwriting_controls_are_escaped() {
        assert_eq!(line("ok\rFAILED"), "ok\\x0dFAILED");
        assert_eq!(line("abc\x08\x08X"), "abc\\x08\\x08X");
        assert_eq!(line("del\x7f"), "del\\x7f");
        assert_eq!(line("nul\0bell\x07"), "nul\\x00bell\\x07");
    }

    #[test]
    fn bidi_overrides_and_isolates_are_escaped() {
        assert_eq!(line("a\u{202e}cba"), "a\\u{202e}cba");
        for c in ('\u{202a}'..='\u{202e}').chain('\u{2066}'..='\u{2069}') {
            assert_eq!(line(&c.to_string()), format!("\\u{{{:x}}}", u32::from(c)));
        }
        // Marks that only hint direction are left alone.
        assert_eq!(line("\u{200e}\u{200f}"), "\u{200e}\u{200f}");
    }

    #[test]
    fn tabs_and_newlines_follow_keep() {
        assert_eq!(escape("a\tb\nc", Keep::Nothing), "a\\x09b\\x0ac");
        assert_eq!(escape("a\tb\nc", Keep::Tabs), "a\tb\\x0ac");
        assert_eq!(escape("a\tb\nc\r", Keep::TabsAndNewlines), "a\tb\nc\\x0d");
    }

    #[test]
    fn escaping_twice_changes_nothing_more() {
        let once = line("\x1b[1m\u{9b}\u{202e}\r\n");
        assert_eq!(line(&once), once);
        assert!(!once.chars().any(|c| is_unsafe(c, Keep::Nothing)));
    }

    #[test]
    fn escaped_displays_the_same_form() {
        assert_eq!(
            format!("{}", Escaped("x\x1b]0;t\x07\n")),
            "x\\x1b]0;t\\x07\\x0a"
        );
        assert_eq!(format!("{:?}", Escaped("\u{202e}")), "\\u{202e}");
    }

    #[test]
    fn json_stays_exact_and_carries_no_raw_controls() {
        let hostile = "\x1b]52;c;eA==\x07 \u{9b}2J \u{202e}evil\u{2069} \x7f\r\n\ttab";
        let json = serde_json::to_string(&serde_json::json!({ "text": hostile })).unwrap();
        let safe = json_safe(&json);
        assert!(
            !safe.chars().any(|c| is_unsafe(c, Keep::Nothing)),
            "{safe:?}"
        );
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["text"], hostile);
        // Pretty JSON keeps its layout.
        let pretty = serde_json::to_string_pretty(&serde_json::json!({"a": "\u{85}"})).unwrap();
        assert_eq!(json_safe(&pretty), "{\n  \"a\": \"\\u0085\"\n}");
    }
}
