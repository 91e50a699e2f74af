//! Just enough of Server-Sent Events to read and rewrite one event's data: events end at a
//! blank line (`\n\n`, `\r\n\r\n` or `\r\r`), `data:` lines join with `\n`, one space after
//! the colon is not part of the value.

use bytes::{Bytes, BytesMut};

/// Takes the first complete event (with its blank line) off `buffer`.
pub fn next_event(buffer: &mut BytesMut) -> Option<Bytes> {
    let end = event_end(buffer)?;
    Some(buffer.split_to(end).freeze())
}

/// The index just past the first blank line.
fn event_end(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                if bytes.get(i + 1) == Some(&b'\n') {
                    return Some(i + 2);
                }
                if bytes.get(i + 1) == Some(&b'\r') && bytes.get(i + 2) == Some(&b'\n') {
                    return Some(i + 3);
                }
            }
            b'\r' if bytes.get(i + 1) == Some(&b'\r') => return Some(i + 2),
            _ => {}
        }
        i += 1;
    }
    None
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

    #[test]
    fn data_lines_join() {
        assert_eq!(
            data(b"event: message\ndata: {\"a\":\ndata:1}\n\n").unwrap(),
            b"{\"a\":\n1}"
        );
        assert_eq!(data(b"data\n\n").unwrap(), b"");
        assert!(data(b": comment\nid: 3\n\n").is_none());
        assert!(data(b"database: x\n\n").is_none());
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
