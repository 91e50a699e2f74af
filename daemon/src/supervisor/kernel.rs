//! What the supervisor needs of the kernel, checked once before anything is spawned.
//!
//! Children are spawned with `clone(CLONE_PIDFD)` (Linux 5.2) and waited for by polling their
//! pidfd (Linux 5.3). On an older kernel every spawn would fail one by one; the daemon says
//! so once at start instead.

use std::io;

/// Why the kernel cannot run the supervisor.
#[derive(Debug, thiserror::Error)]
#[error(
    "this kernel ({release}) lacks pidfds ({source}): mcpd spawns and waits for servers through them and needs Linux 5.3 or newer"
)]
pub struct Unsupported {
    release: String,
    source: io::Error,
}

/// Checks that pidfds can be made for a process and polled: `pidfd_open`, which came with
/// pollable pidfds in 5.3, on the daemon itself.
pub fn check() -> Result<(), Unsupported> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd < 0 {
        return Err(Unsupported {
            release: release(),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: `fd` was just returned by the kernel and nothing else holds it.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(())
}

fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_owned())
        .unwrap_or_else(|_| "release unknown".to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_kernel_has_pidfds() {
        super::check().expect("the test machine runs Linux 5.3 or newer");
    }
}
