//! The body's framing: `Content-Length`, chunked encoding or the end of the connection,
//! decoded into one buffer with the decoded size counted against a limit.

use tokio::io::AsyncRead;

use super::{HttpError, Reader, memchr};

/// The longest chunk-size or trailer line accepted.
pub(super) const MAX_LINE: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// `Content-Length` bytes still to come.
    Length(u64),
    Chunked(Chunk),
    /// Until the server closes the connection.
    UntilClose,
    Done,
}

impl Framing {
    pub(super) fn reusable(self) -> bool {
        !matches!(self, Framing::UntilClose)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

/// Decodes the body into `out`, counting what was decoded against `limit`.
pub(super) struct BodyReader {
    pub(super) framing: Framing,
    pub(super) out: Vec<u8>,
    decoded: usize,
    pub(super) limit: usize,
}

impl BodyReader {
    pub(super) fn new(framing: Framing, limit: usize) -> Self {
        BodyReader {
            framing,
            out: Vec::new(),
            decoded: 0,
            limit,
        }
    }

    pub(super) fn done(&self) -> bool {
        self.framing == Framing::Done
    }

    /// Decodes what is available, reading once from the connection if that was not enough
    /// for any progress.
    pub(super) async fn step<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut Reader<'_, R>,
    ) -> Result<(), HttpError> {
        let before = (self.decoded, self.framing);
        self.decode(reader)?;
        if (self.decoded, self.framing) != before || self.done() {
            return Ok(());
        }
        if reader.fill().await? == 0 {
            if self.framing == Framing::UntilClose {
                self.framing = Framing::Done;
                return Ok(());
            }
            return Err(HttpError::Malformed(
                "the connection closed before the end of the body".into(),
            ));
        }
        self.decode(reader)
    }

    /// Moves as many body bytes as possible from `reader` to `out`.
    fn decode<R>(&mut self, reader: &mut Reader<'_, R>) -> Result<(), HttpError> {
        loop {
            let available = &reader.buf[reader.pos..];
            match self.framing {
                Framing::Done => return Ok(()),
                Framing::Length(left) | Framing::Chunked(Chunk::Data(left)) => {
                    if available.is_empty() {
                        return Ok(());
                    }
                    let take = available
                        .len()
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.emit(&available[..take])?;
                    reader.pos += take;
                    let left = left - take as u64;
                    self.framing = match (self.framing, left) {
                        (Framing::Length(_), 0) => Framing::Done,
                        (Framing::Length(_), left) => Framing::Length(left),
                        (_, 0) => Framing::Chunked(Chunk::DataEnd),
                        (_, left) => Framing::Chunked(Chunk::Data(left)),
                    };
                }
                Framing::UntilClose => {
                    if available.is_empty() {
                        return Ok(());
                    }
                    let take = available.len();
                    self.emit(&reader.buf[reader.pos..reader.pos + take])?;
                    reader.pos += take;
                }
                Framing::Chunked(Chunk::Size) => {
                    let Some(line) = line(available)? else {
                        return Ok(());
                    };
                    reader.pos += line.len();
                    let text = std::str::from_utf8(trim_line(line))
                        .ok()
                        .map(|text| text.split(';').next().unwrap_or("").trim())
                        .filter(|text| !text.is_empty() && text.len() <= 15)
                        .ok_or_else(|| HttpError::Malformed("bad chunk size line".into()))?;
                    let size = u64::from_str_radix(text, 16)
                        .map_err(|_| HttpError::Malformed(format!("bad chunk size {text:?}")))?;
                    self.framing = Framing::Chunked(if size == 0 {
                        Chunk::Trailer
                    } else {
                        Chunk::Data(size)
                    });
                }
                Framing::Chunked(Chunk::DataEnd) => {
                    let Some(line) = line(available)? else {
                        return Ok(());
                    };
                    if !trim_line(line).is_empty() {
                        return Err(HttpError::Malformed(
                            "chunk data longer than its size".into(),
                        ));
                    }
                    reader.pos += line.len();
                    self.framing = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(Chunk::Trailer) => {
                    let Some(line) = line(available)? else {
                        return Ok(());
                    };
                    reader.pos += line.len();
                    if trim_line(line).is_empty() {
                        self.framing = Framing::Done;
                    }
                }
            }
        }
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
        self.decoded = self.decoded.saturating_add(bytes.len());
        if self.decoded > self.limit {
            return Err(HttpError::TooLarge { limit: self.limit });
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

/// The next line of `available` including its `\n`, if complete.
fn line(available: &[u8]) -> Result<Option<&[u8]>, HttpError> {
    match memchr(b'\n', &available[..available.len().min(MAX_LINE)]) {
        Some(end) => Ok(Some(&available[..=end])),
        None if available.len() >= MAX_LINE => {
            Err(HttpError::Malformed("chunk framing line too long".into()))
        }
        None => Ok(None),
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
