//! A call's outcome read from its answer in place: the id, `error.code` and `result.isError`
//! of each message, found by walking the JSON's structure without building any value or
//! copying the text. Everything else (a tool's `content`, however large) is skipped over.
//!
//! Reads what a serde view of `{id, result: {isError}, error: {code}}` would read: a
//! message is an object; `id`, `result`, `error` and the fields inside may appear once
//! (keys compared after unescaping); `result` and `error` are objects or null, `isError` a
//! boolean or null, `code` an integer or null; a batch is read whole or not at all; nesting
//! deeper than 128 is refused. Anything else: no outcome (the record says unknown).

/// What one answer says of its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome<'a> {
    /// The answer's id as JSON text; `None` when absent or null.
    pub id: Option<&'a [u8]>,
    /// The JSON-RPC error code, for an error answer.
    pub error_code: Option<i64>,
    /// For a result: its `isError` (false when absent or null).
    pub is_error: Option<bool>,
}

/// Deepest nesting read (serde_json's limit too).
const MAX_DEPTH: u32 = 128;

/// Calls `each` with the outcome of every message of `text` (one message or a batch).
pub fn read<'a>(text: &'a [u8], mut each: impl FnMut(&Outcome<'a>)) {
    let mut reader = Reader { text, at: 0 };
    reader.space();
    match reader.peek() {
        Some(b'{') => {
            if let Some(outcome) = reader.message()
                && reader.end()
            {
                each(&outcome);
            }
        }
        Some(b'[') => {
            // Checked whole first: one malformed element and the batch says nothing.
            let start = reader.at;
            if reader.batch(&mut |_| {}).is_some() && reader.end() {
                reader.at = start;
                let _ = reader.batch(&mut each);
            }
        }
        _ => {}
    }
}

struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// Only whitespace left.
    fn end(&mut self) -> bool {
        self.space();
        self.at == self.text.len()
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.space();
        (self.peek() == Some(byte)).then(|| self.at += 1)
    }

    fn batch(&mut self, each: &mut impl FnMut(&Outcome<'a>)) -> Option<()> {
        self.eat(b'[')?;
        self.space();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Some(());
        }
        loop {
            let outcome = self.message()?;
            each(&outcome);
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// One message object.
    fn message(&mut self) -> Option<Outcome<'a>> {
        let mut outcome = Outcome {
            id: None,
            error_code: None,
            is_error: None,
        };
        let (mut id, mut result, mut error) = (false, false, false);
        self.object(|reader, key| {
            match key {
                Key::Id => {
                    once(&mut id)?;
                    let value = reader.value()?;
                    outcome.id = (value != b"null").then_some(value);
                }
                Key::Result => {
                    once(&mut result)?;
                    if !reader.null() {
                        outcome.is_error = Some(reader.result()?.unwrap_or(false));
                    }
                }
                Key::Error => {
                    once(&mut error)?;
                    if !reader.null() {
                        outcome.error_code = reader.error()?;
                    }
                }
                _ => {
                    reader.value()?;
                }
            }
            Some(())
        })?;
        Some(outcome)
    }

    /// `result`'s `isError`.
    fn result(&mut self) -> Option<Option<bool>> {
        let (mut seen, mut is_error) = (false, None);
        self.object(|reader, key| {
            if key == Key::IsError {
                once(&mut seen)?;
                is_error = match reader.value()? {
                    b"true" => Some(true),
                    b"false" => Some(false),
                    b"null" => None,
                    _ => return None,
                };
            } else {
                reader.value()?;
            }
            Some(())
        })?;
        Some(is_error)
    }

    /// `error`'s `code`.
    fn error(&mut self) -> Option<Option<i64>> {
        let (mut seen, mut code) = (false, None);
        self.object(|reader, key| {
            if key == Key::Code {
                once(&mut seen)?;
                code = match reader.value()? {
                    b"null" => None,
                    // An integer, as serde reads an `i64` (no fraction, no exponent, no `+`).
                    digits if !digits.starts_with(b"+") => {
                        Some(std::str::from_utf8(digits).ok()?.parse().ok()?)
                    }
                    _ => return None,
                };
            } else {
                reader.value()?;
            }
            Some(())
        })?;
        Some(code)
    }

    /// An object, each member's key given to `member`, which reads its value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, Key) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        self.space();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.space();
            let key = self.key()?;
            self.eat(b':')?;
            self.space();
            member(self, key)?;
            self.space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn null(&mut self) -> bool {
        let null = self.text[self.at..].starts_with(b"null");
        if null {
            self.at += 4;
        }
        null
    }

    fn key(&mut self) -> Option<Key> {
        let (raw, escaped) = self.string()?;
        let unescaped;
        let name: &[u8] = if escaped {
            unescaped = serde_json::from_slice::<String>(&self.text[raw.0 - 1..raw.1 + 1]).ok()?;
            unescaped.as_bytes()
        } else {
            &self.text[raw.0..raw.1]
        };
        Some(match name {
            b"id" => Key::Id,
            b"result" => Key::Result,
            b"error" => Key::Error,
            b"isError" => Key::IsError,
            b"code" => Key::Code,
            _ => Key::Other,
        })
    }

    /// A string at the cursor: the span of its contents, and whether it holds escapes.
    fn string(&mut self) -> Option<((usize, usize), bool)> {
        if self.peek() != Some(b'"') {
            return None;
        }
        let start = self.at + 1;
        let mut at = start;
        let mut escaped = false;
        loop {
            let found = at + quote_or_backslash(self.text.get(at..)?)?;
            if self.text[found] == b'"' {
                at = found;
                break;
            }
            escaped = true;
            at = found + 2;
        }
        self.at = at + 1;
        Some(((start, at), escaped))
    }

    /// Skips one value; returns its text.
    fn value(&mut self) -> Option<&'a [u8]> {
        self.space();
        let start = self.at;
        match self.peek()? {
            b'"' => {
                self.string()?;
            }
            b'{' | b'[' => self.nested()?,
            _ => {
                while let Some(byte) = self.peek() {
                    if matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    if !matches!(byte, b'0'..=b'9' | b'a'..=b'z' | b'-' | b'+' | b'.' | b'E') {
                        return None;
                    }
                    self.at += 1;
                }
                if self.at == start {
                    return None;
                }
            }
        }
        Some(&self.text[start..self.at])
    }

    /// Skips an object or array, brackets matched (up to [`MAX_DEPTH`]), strings skipped.
    fn nested(&mut self) -> Option<()> {
        // Bit n: the bracket open at depth n is `{`.
        let mut objects: u128 = 0;
        let mut depth: u32 = 0;
        loop {
            match self.peek()? {
                b'"' => {
                    self.string()?;
                    continue;
                }
                open @ (b'{' | b'[') => {
                    if depth >= MAX_DEPTH {
                        return None;
                    }
                    if open == b'{' {
                        objects |= 1 << depth;
                    } else {
                        objects &= !(1 << depth);
                    }
                    depth += 1;
                }
                close @ (b'}' | b']') => {
                    depth = depth.checked_sub(1)?;
                    let object = objects & (1 << depth) != 0;
                    if object != (close == b'}') {
                        return None;
                    }
                    if depth == 0 {
                        self.at += 1;
                        return Some(());
                    }
                }
                _ => {}
            }
            self.at += 1;
        }
    }
}

/// Where the first `"` or `\` of `bytes` is; `None` when there is none, or when a raw
/// control character (not allowed in a JSON string) comes before it.
fn quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    // Most strings of an answer are short (keys, ids, small values): read byte by byte, which
    // costs less than setting up a vector search; a longer one is searched with memchr.
    const SHORT: usize = 32;
    for (at, &byte) in bytes.iter().take(SHORT).enumerate() {
        match byte {
            b'"' | b'\\' => return Some(at),
            0..0x20 => return None,
            _ => {}
        }
    }
    let rest = bytes.get(SHORT..)?;
    let found = memchr::memchr2(b'"', b'\\', rest)?;
    // Folded without an early exit, so it is checked many bytes at a time.
    let control = rest[..found]
        .iter()
        .fold(false, |seen, &byte| seen | (byte < 0x20));
    (!control).then_some(SHORT + found)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Id,
    Result,
    Error,
    IsError,
    Code,
    Other,
}

/// Marks a field seen; `None` (refused) the second time.
fn once(seen: &mut bool) -> Option<()> {
    (!std::mem::replace(seen, true)).then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole-slice reading `quote_or_backslash` stands for: the first quote or backslash,
    /// with no control character before it.
    fn quote_or_backslash_slowly(bytes: &[u8]) -> Option<usize> {
        let found = bytes.iter().position(|&b| b == b'"' || b == b'\\')?;
        bytes[..found].iter().all(|&b| b >= 0x20).then_some(found)
    }

    #[test]
    fn string_ends_are_found_alike_on_both_sides_of_the_short_scan() {
        for len in [0, 1, 31, 32, 33, 64, 200] {
            for special in [
                None,
                Some(b'"'),
                Some(b'\\'),
                Some(b'\n'),
                Some(0x1f),
                Some(0x7f),
            ] {
                for at in 0..len.max(1) {
                    let mut bytes = vec![b'a'; len];
                    if let Some(byte) = special
                        && at < len
                    {
                        bytes[at] = byte;
                    }
                    // Some with a closing quote after everything, some without.
                    for closed in [false, true] {
                        let mut text = bytes.clone();
                        if closed {
                            text.push(b'"');
                        }
                        assert_eq!(
                            quote_or_backslash(&text),
                            quote_or_backslash_slowly(&text),
                            "{:?}",
                            String::from_utf8_lossy(&text)
                        );
                    }
                }
            }
        }
    }

    fn outcomes(text: &str) -> Vec<(Option<String>, Option<i64>, Option<bool>)> {
        let mut out = Vec::new();
        read(text.as_bytes(), |o| {
            out.push((
                o.id.map(|id| String::from_utf8(id.to_vec()).unwrap()),
                o.error_code,
                o.is_error,
            ));
        });
        out
    }

    fn one(
        id: &str,
        code: Option<i64>,
        is_error: Option<bool>,
    ) -> Vec<(Option<String>, Option<i64>, Option<bool>)> {
        vec![(Some(id.to_owned()), code, is_error)]
    }

    #[test]
    fn results_errors_and_batches() {
        let text = r#" {"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"\"isError\":true}"}],"isError":true}} "#;
        assert_eq!(outcomes(text), one("7", None, Some(true)));
        assert_eq!(
            outcomes(r#"{"result":{},"id":"a\"b"}"#),
            one(r#""a\"b""#, None, Some(false))
        );
        assert_eq!(
            outcomes(r#"{"id":1,"error":{"code":-32602,"message":"bad","data":[1,{"a":[]}]}}"#),
            one("1", Some(-32602), None)
        );
        assert_eq!(
            outcomes(r#"{"id":1,"result":{"isError":null},"error":null}"#),
            one("1", None, Some(false))
        );
        assert_eq!(
            outcomes(r#"[{"id":1,"result":{}},{"id":2,"error":{"code":5}}]"#),
            vec![
                (Some("1".into()), None, Some(false)),
                (Some("2".into()), Some(5), None)
            ]
        );
        assert_eq!(
            outcomes(r#"{"id":null,"result":{}}"#),
            vec![(None, None, Some(false))]
        );
        assert_eq!(
            outcomes(r#"{"method":"notifications/progress","params":{}}"#),
            vec![(None, None, None)]
        );
        // Keys are compared unescaped, as serde compares them.
        assert_eq!(
            outcomes(r#"{"i\u0064":3,"result":{"is\u0045rror":true}}"#),
            one("3", None, Some(true))
        );
    }

    #[test]
    fn what_a_serde_view_refuses_says_nothing() {
        for text in [
            "",
            "null",
            "[1]",
            r#"{"id":1,"id":2,"result":{}}"#,
            r#"{"id":1,"result":{"isError":true,"isError":false}}"#,
            r#"{"id":1,"result":{"isError":"yes"}}"#,
            r#"{"id":1,"result":[true]}"#,
            r#"{"id":1,"result":5}"#,
            r#"{"id":1,"error":{"code":1.5}}"#,
            r#"{"id":1,"error":{"code":1e3}}"#,
            r#"{"id":1,"error":{"code":99999999999999999999}}"#,
            r#"{"id":1,"result":{}"#,
            r#"{"id":1,"result":{}} x"#,
            r#"{"id":1,"result":{"content":[}]}}"#,
            "{\"id\":1,\"result\":{\"text\":\"raw\ncontrol\"}}",
            r#"[{"id":1,"result":{}},{"id":2,"result":7}]"#,
            r#"{"id":1 "result":{}}"#,
        ] {
            assert_eq!(outcomes(text), vec![], "{text}");
        }
    }

    #[test]
    fn long_strings_are_skipped_whatever_lies_where() {
        // Strings longer than memchr's vector width, with an escape or a raw control
        // character at every offset: escapes are skipped, control characters refused, as
        // serde refuses them.
        for at in 0..80 {
            let mut text = "y".repeat(80);
            text.replace_range(at..at + 1, "\\\"");
            let message =
                format!(r#"{{"id":"{text}","result":{{"content":[{{"text":"{text}"}}]}}}}"#);
            assert_eq!(
                outcomes(&message),
                one(&format!("\"{text}\""), None, Some(false)),
                "escape at {at}"
            );
            let mut raw = "y".repeat(80);
            raw.replace_range(at..at + 1, "\u{1}");
            let message = format!(r#"{{"id":1,"result":{{"content":[{{"text":"{raw}"}}]}}}}"#);
            assert_eq!(outcomes(&message), vec![], "control character at {at}");
            assert!(serde_json::from_str::<serde_json::Value>(&message).is_err());
        }
    }

    #[test]
    fn hostile_nesting_is_bounded() {
        let deep = format!(
            r#"{{"id":1,"result":{{"content":{}{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(outcomes(&deep), vec![]);
        let fine = format!(
            r#"{{"id":1,"result":{{"content":{}{}}}}}"#,
            "[".repeat(120),
            "]".repeat(120)
        );
        assert_eq!(outcomes(&fine), one("1", None, Some(false)));
        // Unterminated strings and escapes at the very end.
        assert_eq!(outcomes(r#"{"id":"\"#), vec![]);
        assert_eq!(outcomes(r#"{"id":1,"result":{"a":"\\"#), vec![]);
    }
}
