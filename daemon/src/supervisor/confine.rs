//! What a server's process does to itself between fork and exec, before the usual process
//! setup of `spawn.rs`: join its cgroup, take its `open_files` limit, drop to its user and
//! group, and set `no_new_privs` (always, so no setuid program it runs gains privileges).
//!
//! The order matters: the cgroup is joined while still root (writing `cgroup.procs` needs
//! it), the rlimit is set before dropping the right to raise it, and `PR_SET_PDEATHSIG`
//! (set afterwards by `spawn.rs`) must come after the user change, which clears it.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// What the spawner needs to confine one process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Confine {
    /// `cgroup.procs` files the process writes itself into.
    pub cgroup_procs: Vec<PathBuf>,
    /// `RLIMIT_NOFILE`, soft and hard.
    pub open_files: Option<u64>,
    /// uid and gid to run as.
    pub run_as: Option<(u32, u32)>,
}

impl Confine {
    /// Opens what the child will use, in the parent: the child may not allocate.
    pub fn prepare(&self) -> io::Result<Prepared> {
        let procs = self
            .cgroup_procs
            .iter()
            .map(|path| {
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(path)
                    .map(OwnedFd::from)
                    .map_err(|err| {
                        io::Error::new(err.kind(), format!("cannot open {}: {err}", path.display()))
                    })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Prepared {
            procs,
            open_files: self.open_files,
            run_as: self.run_as,
        })
    }
}

/// [`Confine`] with its files open, ready for the child.
#[derive(Debug)]
pub struct Prepared {
    procs: Vec<OwnedFd>,
    open_files: Option<u64>,
    run_as: Option<(u32, u32)>,
}

impl Prepared {
    /// Runs in the child between fork and exec: only async-signal-safe system calls, no
    /// allocation.
    pub fn enter(&self) -> io::Result<()> {
        // SAFETY: plain system calls on the child's own state, with buffers that live here.
        unsafe {
            for fd in &self.procs {
                if libc::write(fd.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(files) = self.open_files {
                let limit = libc::rlimit {
                    rlim_cur: files,
                    rlim_max: files,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some((uid, gid)) = self.run_as {
                if libc::setgroups(1, &gid) == -1
                    || libc::setgid(gid) == -1
                    || libc::setuid(uid) == -1
                {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Sets `RLIMIT_NOFILE` of the running process `pid` (a reload's new `open_files`).
pub fn set_open_files(pid: u32, files: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: files,
        rlim_max: files,
    };
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: prlimit reads the struct it is given and writes nothing (old limit is null).
    if unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
