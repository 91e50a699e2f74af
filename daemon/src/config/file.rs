//! Reading a file the configuration names (the daemon file, server files, key and secret
//! files): only a regular file, opened without blocking, and never more than
//! [`MAX_CONFIG_FILE`] bytes held in memory.
//!
//! The checks are made on the open descriptor, not the path, so a file swapped for a FIFO or
//! a device between a directory listing and the read is refused instead of blocking the reload
//! (opening a FIFO without `O_NONBLOCK` waits for a writer). Symbolic links are followed: a
//! server file linked from elsewhere is a normal set-up.

use std::fs::{File, FileType, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest configuration, key or secret file read: 4 MiB.
pub const MAX_CONFIG_FILE: u64 = 4 << 20;

/// The bytes of the regular file at `path`, at most [`MAX_CONFIG_FILE`] of them. Anything
/// else is an error whose text says what the file is or how large: a FIFO, socket, device or
/// directory (`InvalidInput`), or a larger file (`FileTooLarge`).
pub fn read_config_file(path: &Path) -> io::Result<Vec<u8>> {
    read_regular_file(path, MAX_CONFIG_FILE)
}

/// [`read_config_file`] as text; bytes that are not UTF-8 are an `InvalidData` error.
pub fn read_config_text(path: &Path) -> io::Result<String> {
    String::from_utf8(read_config_file(path)?).map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the file is not UTF-8 text ({})", err.utf8_error()),
        )
    })
}

/// [`read_config_file`] with the size limit given.
pub fn read_regular_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut file = OpenOptions::new()
        .read(true)
        // A FIFO opens at once instead of waiting for a writer; a terminal does not become
        // the daemon's controlling terminal. A regular file ignores both.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let metadata = file.metadata()?;
    let kind = metadata.file_type();
    if !kind.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "it is {}, not a regular file; mcpd reads only regular files",
                describe(kind)
            ),
        ));
    }
    if metadata.len() > limit {
        return Err(too_large(metadata.len(), limit));
    }
    read_at_most(&mut file, metadata.len(), limit)
}

/// Reads to the end, failing as soon as more than `limit` bytes arrive (the file may have grown
/// since it was measured), and never reserving more than what was read plus one chunk.
fn read_at_most(file: &mut File, expected: u64, limit: u64) -> io::Result<Vec<u8>> {
    // `expected <= limit`, checked by the caller; one byte more shows the end without a regrowth.
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0).saturating_add(1));
    let mut chunk = [0u8; 8192];
    loop {
        let read = match file.read(&mut chunk) {
            Ok(0) => return Ok(bytes),
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        let total = (bytes.len() + read) as u64;
        if total > limit {
            return Err(too_large(total, limit));
        }
        bytes.reserve_exact(read);
        bytes.extend_from_slice(&chunk[..read]);
    }
}

fn too_large(size: u64, limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!(
            "the file is {size} bytes, more than the {limit}-byte ({} MiB) limit",
            limit >> 20
        ),
    )
}

fn describe(kind: FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "of an unknown kind"
    }
}
