//! The TCP sockets of another process, for checks on their options: [`connections_of`]
//! copies each connected TCP socket of a process into this one (`pidfd_open` +
//! `pidfd_getfd`, which needs the rights of `ptrace`: the same user with ptrace allowed, or
//! root), so `getsockopt` reads what the process set on it.

use std::net::TcpStream;
use std::os::fd::{FromRawFd, OwnedFd};

/// Every connected TCP socket (not a listener) that process `pid` holds, as a copy of its
/// descriptor. Panics when the process cannot be inspected.
pub fn connections_of(pid: u32) -> Vec<TcpStream> {
    let pidfd = pidfd_open(pid);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|error| panic!("cannot list the descriptors of pid {pid}: {error}"));
    let mut connections = Vec::new();
    for entry in fds.flatten() {
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if !is_socket {
            continue;
        }
        // Closed since the listing: skip it.
        let Some(copy) = pidfd_getfd(&pidfd, fd) else {
            continue;
        };
        let stream = TcpStream::from(copy);
        // A Unix socket has no IP address; a listener has no peer.
        if stream.local_addr().is_ok() && stream.peer_addr().is_ok() {
            connections.push(stream);
        }
    }
    connections
}

fn pidfd_open(pid: u32) -> OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    assert!(
        fd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

fn pidfd_getfd(pidfd: &OwnedFd, fd: i32) -> Option<OwnedFd> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_getfd takes a pidfd, a descriptor number of that process and flags, and
    // returns a new descriptor of ours or -1.
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if copy < 0 {
        let error = std::io::Error::last_os_error();
        assert_eq!(
            error.raw_os_error(),
            Some(libc::EBADF),
            "pidfd_getfd({fd}): {error} (copying another process's sockets needs ptrace rights)"
        );
        return None;
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Some(unsafe { OwnedFd::from_raw_fd(copy as i32) })
}
