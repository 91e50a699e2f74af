//! HTML text escaping: the one way a string reaches the page.
//!
//! Control characters (C0 but tab and newline, DEL, C1) and bidi overrides get the visible
//! form of `mcpd_protocol::terminal` (`\x1b`, `\u{202e}`), as on the terminal; Unicode
//! noncharacters, which HTML forbids, become U+FFFD; then `& < > " '` become entities, so the
//! result is safe in element text and in quoted attribute values alike.

use std::fmt::Write as _;

use mcpd_protocol::terminal::{self, Keep};

/// `text` escaped for HTML text or a double- or single-quoted attribute value.
pub fn escape(text: &str) -> String {
    let visible = terminal::escape(text, Keep::TabsAndNewlines);
    let mut out = String::with_capacity(visible.len() + 16);
    for c in visible.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if is_noncharacter(c) => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn is_noncharacter(c: char) -> bool {
    let code = u32::from(c);
    (0xfdd0..=0xfdef).contains(&code) || code & 0xfffe == 0xfffe
}

/// Appends `format_args` to `out` (writing to a `String` cannot fail).
pub fn push(out: &mut String, args: std::fmt::Arguments<'_>) {
    let _ = out.write_fmt(args);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_quotes_and_controls_are_inert() {
        assert_eq!(
            escape("<script>alert('x')</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
        );
        assert_eq!(escape("a\" onmouseover=\"x"), "a&quot; onmouseover=&quot;x");
        assert_eq!(escape("&amp;"), "&amp;amp;");
        assert_eq!(escape("\u{1b}[2J\u{0}\u{7}"), "\\x1b[2J\\x00\\x07");
        assert_eq!(escape("a\rb"), "a\\x0db");
        assert_eq!(escape("\u{202e}evil"), "\\u{202e}evil");
        assert_eq!(escape("\u{fffe}\u{fdd0}"), "\u{fffd}\u{fffd}");
        assert_eq!(escape("line\n\tnext é 😀"), "line\n\tnext é 😀");
    }
}
