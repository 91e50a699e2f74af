//! Just enough of Server-Sent Events to read and rewrite one event's data: events end at a
//! blank line (`\n\n`, `\r\n\r\n` or `\r\r`), `data:` lines join with `\n`, one space after
//! the colon is not part of the value.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};

/// Takes the first complete event (with its blank line) off `buffer`.
pub fn next_event(buffer: &mut BytesMut) -> Option<Bytes> {
    let end = event_end(buffer)?;
    Some(buffer.split_to(end).freeze())
}

/// The index just past the first blank line.
pub fn event_end(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = memchr::memchr2(b'\n', b'\r', &bytes[from..]) {
        let at = from + found;
        if let Some(end) = blank_line_end(bytes, at) {
            return Some(end);
        }
        from = at + 1;
    }
    None
}

/// Where an event ends when the line break at `at` (a `\n` or `\r`) starts its blank line:
/// just past `\n\n`, `\n\r\n` or `\r\r`.
fn blank_line_end(bytes: &[u8], at: usize) -> Option<usize> {
    let next = bytes.get(at + 1);
    match bytes[at] {
        b'\n' if next == Some(&b'\n') => Some(at + 2),
        b'\n' if next == Some(&b'\r') && bytes.get(at + 2) == Some(&b'\n') => Some(at + 3),
        b'\r' if next == Some(&b'\r') => Some(at + 2),
        _ => None,
    }
}

/// The first complete event of `bytes`, read in one pass over its lines: the index just
/// past its blank line (what [`event_end`] gives) and its data (what [`data_ref`] gives for
/// the event). What an observed answer is read with: the event's end and its `data:` line
/// are found together rather than by two searches of the same bytes.
pub fn split_event(bytes: &[u8]) -> Option<(usize, Option<Cow<'_, [u8]>>)> {
    let mut first = None;
    let mut several = false;
    let mut from = 0;
    loop {
        // Every `\r` and `\n` ends a line here: a `\r\n` then leaves an empty line between
        // them, which holds no data, so the data is what `data_ref`'s lines give.
        let at = from + memchr::memchr2(b'\n', b'\r', &bytes[from..])?;
        if let Some(value) = data_value(&bytes[from..at]) {
            several |= first.is_some();
            first = Some(value);
        }
        if let Some(end) = blank_line_end(bytes, at) {
            let data = match first {
                Some(_) if several => data(&bytes[..end]).map(Cow::Owned),
                one => one.map(Cow::Borrowed),
            };
            return Some((end, data));
        }
        from = at + 1;
    }
}

fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    event
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .flat_map(|line| line.split(|&b| b == b'\r'))
}

fn data_value(line: &[u8]) -> Option<&[u8]> {
    let value = line.strip_prefix(b"data")?;
    match value.first() {
        None => Some(value),
        Some(b':') => {
            let value = &value[1..];
            Some(value.strip_prefix(b" ").unwrap_or(value))
        }
        _ => None,
    }
}

/// The event's data, borrowed from `event` when it is one `data:` line (the common case);
/// `None` when it has no `data:` line.
pub fn data_ref(event: &[u8]) -> Option<Cow<'_, [u8]>> {
    let mut first = None;
    let mut rest = event;
    loop {
        // Lines end at `\r\n`, `\n` or `\r`, as in [`lines`].
        let (line, next) = match memchr::memchr2(b'\n', b'\r', rest) {
            Some(at) => {
                let end = if rest[at..].starts_with(b"\r\n") {
                    at + 2
                } else {
                    at + 1
                };
                (&rest[..at], Some(&rest[end..]))
            }
            None => (rest, None),
        };
        if let Some(value) = data_value(line) {
            if first.is_some() {
                return data(event).map(Cow::Owned);
            }
            first = Some(value);
        }
        match next {
            Some(next) => rest = next,
            None => return first.map(Cow::Borrowed),
        }
    }
}

/// The event's data, or `None` when it has no `data:` line.
pub fn data(event: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for value in lines(event).filter_map(data_value) {
        match &mut out {
            Some(out) => {
                out.push(b'\n');
                out.extend_from_slice(value);
            }
            None => out = Some(value.to_vec()),
        }
    }
    out
}

/// `event` with its data replaced by `data` (one line: JSON has no raw newlines); its other
/// fields (`id:`, `event:`, `retry:`, comments) kept in place.
pub fn with_data(event: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(event.len() + data.len());
    let mut written = false;
    for line in lines(event) {
        if line.is_empty() {
            continue;
        }
        if data_value(line).is_some() {
            if !written {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(data);
                out.push(b'\n');
                written = true;
            }
        } else {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out.push(b'\n');
    out
}

/// A whole event carrying `data`.
pub fn event(data: &[u8]) -> Vec<u8> {
    let mut out = b"event: message\ndata: ".to_vec();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_at_blank_lines_of_any_style() {
        let mut buffer =
            BytesMut::from(&b"id: 1\ndata: a\n\ndata: b\r\n\r\ndata: c\r\rdata: partial"[..]);
        assert_eq!(&next_event(&mut buffer).unwrap()[..], b"id: 1\ndata: a\n\n");
        assert_eq!(&next_event(&mut buffer).unwrap()[..], b"data: b\r\n\r\n");
        assert_eq!(&next_event(&mut buffer).unwrap()[..], b"data: c\r\r");
        assert!(next_event(&mut buffer).is_none());
        assert_eq!(&buffer[..], b"data: partial");
    }

    /// The byte-by-byte definition [`event_end`] must agree with.
    fn event_end_reference(bytes: &[u8]) -> Option<usize> {
        (0..bytes.len()).find_map(|i| match bytes[i] {
            b'\n' if bytes.get(i + 1) == Some(&b'\n') => Some(i + 2),
            b'\n' if bytes[i + 1..].starts_with(b"\r\n") => Some(i + 3),
            b'\r' if bytes.get(i + 1) == Some(&b'\r') => Some(i + 2),
            _ => None,
        })
    }

    #[test]
    fn event_ends_agree_with_the_definition_at_every_offset() {
        let sample = b"a\r\nb\n\rc\r\n\r\nd\n\ne\r\rf\n\r\ng\r\n\nh\r";
        for start in 0..sample.len() {
            for end in start..=sample.len() {
                let bytes = &sample[start..end];
                assert_eq!(event_end(bytes), event_end_reference(bytes), "{bytes:?}");
            }
        }
    }

    /// [`split_event`] is [`event_end`] and [`data_ref`] of the event, on every slice of a
    /// sample with every line ending, blank-line form and data-line form.
    #[test]
    fn an_event_split_in_one_pass_agrees_with_its_end_and_data() {
        let sample: &[u8] = b"data: a\r\ndata:b\n\rdata\r\r\nid: 1\ndata: {}\n\ndata: x\r\r: c\ndata:  y\r\n\r\nevent: m\rdata: z\n\r\ndatum: w\r\r";
        for start in 0..sample.len() {
            for end in start..=sample.len() {
                let bytes = &sample[start..end];
                let expected = event_end(bytes).map(|end| (end, data_ref(&bytes[..end])));
                assert_eq!(
                    split_event(bytes),
                    expected,
                    "{:?}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }

    #[test]
    fn data_lines_join() {
        assert_eq!(
            data(b"event: message\ndata: {\"a\":\ndata:1}\n\n").unwrap(),
            b"{\"a\":\n1}"
        );
        assert_eq!(data(b"data\n\n").unwrap(), b"");
        assert!(data(b": comment\nid: 3\n\n").is_none());
        assert!(data(b"database: x\n\n").is_none());
        for event in [
            &b"event: message\ndata: {\"a\":\ndata:1}\n\n"[..],
            b"id: 1\r\ndata: {}\r\n\r\n",
            b"data\n\n",
            b": comment\n\n",
            b"data: a\rdata: b\r\r",
            b"data: a\r\r\ndata: b",
            b"id: 1\rdata:x",
            b"",
        ] {
            assert_eq!(data_ref(event).map(Cow::into_owned), data(event));
        }
        assert!(matches!(
            data_ref(b"data: {}\n\n"),
            Some(Cow::Borrowed(b"{}"))
        ));
    }

    #[test]
    fn rewriting_keeps_other_fields() {
        let event = b"id: 7\r\nevent: message\r\ndata: {\"x\":\r\ndata: 1}\r\n\r\n";
        assert_eq!(
            with_data(event, b"{}"),
            b"id: 7\nevent: message\ndata: {}\n\n".to_vec()
        );
    }
}
