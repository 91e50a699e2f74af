//! Framing of a stdio server's stdout: newline-delimited messages, split on the `\n` byte
//! (so a UTF-8 sequence cut across reads is never decoded in halves), each line capped.
//!
//! A line longer than the cap is not kept: its bytes are skipped up to the next `\n` and
//! the line is reported as [`Line::TooLong`] with its length, so one huge write costs at most
//! the cap in memory.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The largest message line accepted from a stdio server.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// One line of a server's stdout.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line without its `\n`, its trailing `\r` and a leading UTF-8 byte-order mark.
    Text(Vec<u8>),
    /// A line over the cap, skipped; its length in bytes.
    TooLong(usize),
}

/// Reads [`Line`]s from `inner`, each at most `max` bytes.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    max: usize,
    line: Vec<u8>,
    /// Bytes of an over-long line skipped so far; `Some` while skipping.
    skipped: Option<usize>,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            max,
            line: Vec::new(),
            skipped: None,
        }
    }

    /// The next line, or `None` at the end of the stream. A last line without `\n` counts.
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let buf = self.inner.fill_buf().await?;
            if buf.is_empty() {
                if let Some(skipped) = self.skipped.take() {
                    return Ok(Some(Line::TooLong(skipped)));
                }
                if self.line.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(Line::Text(clean(std::mem::take(&mut self.line)))));
            }
            let newline = buf.iter().position(|&b| b == b'\n');
            let take = newline.map_or(buf.len(), |at| at);
            match &mut self.skipped {
                Some(skipped) => *skipped += take,
                None if self.line.len() + take > self.max => {
                    self.skipped = Some(self.line.len() + take);
                    self.line = Vec::new();
                }
                None => self.line.extend_from_slice(&buf[..take]),
            }
            let consumed = newline.map_or(take, |at| at + 1);
            self.inner.consume(consumed);
            if newline.is_some() {
                if let Some(skipped) = self.skipped.take() {
                    return Ok(Some(Line::TooLong(skipped)));
                }
                return Ok(Some(Line::Text(clean(std::mem::take(&mut self.line)))));
            }
        }
    }
}

/// Drops a trailing `\r` and a leading byte-order mark.
fn clean(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.starts_with(b"\xEF\xBB\xBF") {
        line.drain(..3);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Line> {
        // A tiny buffer, so lines and the cap straddle reads.
        let reader = tokio::io::BufReader::with_capacity(3, input);
        let mut lines = LineReader::new(reader, max);
        let mut out = Vec::new();
        while let Some(line) = lines.next().await.expect("read") {
            out.push(line);
        }
        out
    }

    fn text(s: &str) -> Line {
        Line::Text(s.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn splits_on_newlines_and_cleans_ends() {
        assert_eq!(
            lines(b"\xEF\xBB\xBF{\"a\":1}\r\n\nplain\r\nlast", 100).await,
            vec![text("{\"a\":1}"), text(""), text("plain"), text("last")]
        );
    }

    #[tokio::test]
    async fn an_over_long_line_is_skipped_and_measured_and_the_next_one_kept() {
        let mut input = vec![b'x'; 25];
        input.extend_from_slice(b"\nok\n");
        input.extend(vec![b'y'; 11]);
        assert_eq!(
            lines(&input, 10).await,
            vec![Line::TooLong(25), text("ok"), Line::TooLong(11)]
        );
        assert_eq!(lines(b"0123456789\n", 10).await, vec![text("0123456789")]);
    }

    #[tokio::test]
    async fn a_multibyte_character_across_reads_stays_whole() {
        let input = "é€😀\n".as_bytes();
        assert_eq!(lines(input, 100).await, vec![text("é€😀")]);
    }
}
