//! Framing and body encoding: the only code that knows bincode.
//!
//! A frame is a big-endian `u32` body length followed by the body, a bincode (serde, standard
//! configuration) encoding of one message. A length over [`MAX_FRAME`] is refused before any
//! buffer is allocated, and the body buffer grows only as bytes actually arrive, so a peer that
//! announces a large frame and sends little costs little. Truncated or malformed input is an
//! error, never a panic.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest body accepted or produced: 16 MiB.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// How much of a body is allocated up front; the rest grows as data arrives.
const INITIAL_BUFFER: usize = 64 * 1024;

fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_FRAME>,
> {
    bincode::config::standard().with_limit::<MAX_FRAME>()
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("control socket I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes is larger than the {max}-byte limit")]
    TooLarge { len: u64, max: usize },
    #[error("frame truncated: expected {expected} bytes, got {got}")]
    Truncated { expected: usize, got: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Encodes `message` as one complete frame (length prefix included).
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    let mut frame = vec![0u8; 4];
    bincode::serde::encode_into_std_write(message, &mut frame, config())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    let len = frame.len() - 4;
    if len > MAX_FRAME {
        return Err(CodecError::TooLarge {
            len: len as u64,
            max: MAX_FRAME,
        });
    }
    let prefix = u32::try_from(len).map_err(|_| CodecError::TooLarge {
        len: len as u64,
        max: MAX_FRAME,
    })?;
    frame[..4].copy_from_slice(&prefix.to_be_bytes());
    Ok(frame)
}

/// Decodes one body (without its length prefix); trailing bytes are an error.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    let (message, used) = bincode::serde::decode_from_slice::<T, _>(body, config())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes after the message",
            body.len() - used
        )));
    }
    Ok(message)
}

/// Decodes one complete frame held in memory (length prefix included).
pub fn decode_frame<T: DeserializeOwned>(frame: &[u8]) -> Result<T, CodecError> {
    let Some((prefix, body)) = frame.split_first_chunk::<4>() else {
        return Err(CodecError::Truncated {
            expected: 4,
            got: frame.len(),
        });
    };
    let len = checked_len(*prefix)?;
    if body.len() < len {
        return Err(CodecError::Truncated {
            expected: len,
            got: body.len(),
        });
    }
    if body.len() > len {
        return Err(CodecError::Malformed(format!(
            "{} bytes after the frame",
            body.len() - len
        )));
    }
    decode_body(body)
}

fn checked_len(prefix: [u8; 4]) -> Result<usize, CodecError> {
    let len = u32::from_be_bytes(prefix);
    match usize::try_from(len) {
        Ok(len) if len <= MAX_FRAME => Ok(len),
        _ => Err(CodecError::TooLarge {
            len: u64::from(len),
            max: MAX_FRAME,
        }),
    }
}

/// Reads one frame's body. `Ok(None)` when the peer closed the stream cleanly between frames.
pub async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Vec<u8>>, CodecError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        let n = reader.read(&mut prefix[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(CodecError::Truncated { expected: 4, got })
            };
        }
        got += n;
    }
    let len = checked_len(prefix)?;
    let mut body = Vec::with_capacity(len.min(INITIAL_BUFFER));
    (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut body)
        .await?;
    if body.len() < len {
        return Err(CodecError::Truncated {
            expected: len,
            got: body.len(),
        });
    }
    Ok(Some(body))
}

/// Reads and decodes one message. `Ok(None)` when the peer closed the stream between frames.
pub async fn read_message<T, R>(reader: &mut R) -> Result<Option<T>, CodecError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    match read_body(reader).await? {
        Some(body) => decode_body(&body).map(Some),
        None => Ok(None),
    }
}

/// Encodes and writes one message as a frame, then flushes.
pub async fn write_message<T, W>(writer: &mut W, message: &T) -> Result<(), CodecError>
where
    T: Serialize,
    W: AsyncWrite + Unpin,
{
    let frame = encode_frame(message)?;
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}
