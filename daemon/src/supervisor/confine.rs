//! What a server's process does to itself between fork and exec, before the usual process
//! setup of `spawn.rs`: join its cgroup, enter its sandbox (a mount namespace of its own
//! with a private `/tmp` and read-only paths), take its `open_files` limit, drop to its user
//! and group, and set `no_new_privs` (always, so no setuid program it runs gains privileges).
//!
//! The order matters: the cgroup is joined and the mounts made while still root (both need
//! it), the rlimit is set before dropping the right to raise it, and `PR_SET_PDEATHSIG`
//! (set afterwards by `spawn.rs`) must come after the user change, which clears it.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
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
    pub sandbox: crate::config::Sandbox,
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
        let c_path = |path: &std::path::Path| {
            CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
        };
        let sandbox = if self.sandbox.is_empty() {
            None
        } else {
            Some(Mounts {
                private_tmp: self.sandbox.private_tmp,
                read_only: self
                    .sandbox
                    .read_only_paths
                    .iter()
                    .map(|path| c_path(path))
                    .collect::<io::Result<Vec<_>>>()?,
            })
        };
        Ok(Prepared {
            procs,
            open_files: self.open_files,
            run_as: self.run_as,
            sandbox,
        })
    }
}

/// [`Confine`] with its files open, ready for the child.
#[derive(Debug)]
pub struct Prepared {
    procs: Vec<OwnedFd>,
    open_files: Option<u64>,
    run_as: Option<(u32, u32)>,
    sandbox: Option<Mounts>,
}

/// The sandbox's mounts, with their paths ready for the child.
#[derive(Debug)]
struct Mounts {
    private_tmp: bool,
    read_only: Vec<CString>,
}

impl Mounts {
    /// A mount namespace of the child's own: nothing it mounts reaches the host, then the
    /// private `/tmp` and the read-only bind mounts. System calls only, no allocation.
    ///
    /// # Safety
    /// Call in the child between fork and exec.
    unsafe fn enter(&self) -> io::Result<()> {
        let fail = || Err(io::Error::last_os_error());
        // SAFETY: plain system calls with NUL-terminated strings that live in `self`.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) == -1 {
                return fail();
            }
            let none = std::ptr::null();
            if libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) == -1
            {
                return fail();
            }
            if self.private_tmp
                && libc::mount(
                    c"tmpfs".as_ptr(),
                    c"/tmp".as_ptr(),
                    c"tmpfs".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    c"mode=1777".as_ptr().cast(),
                ) == -1
            {
                return fail();
            }
            for path in &self.read_only {
                if libc::mount(
                    path.as_ptr(),
                    path.as_ptr(),
                    none,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) == -1
                    || libc::mount(
                        none,
                        path.as_ptr(),
                        none,
                        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
                        std::ptr::null(),
                    ) == -1
                {
                    return fail();
                }
            }
        }
        Ok(())
    }
}

impl Prepared {
    /// The open `cgroup.procs` files, in order.
    pub fn procs(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.procs.iter().map(AsRawFd::as_raw_fd)
    }

    /// Runs in the child between fork and exec: only async-signal-safe system calls, no
    /// allocation. `procs` are the numbers the child has [`Prepared::procs`] at.
    pub fn enter(&self, procs: &[RawFd]) -> io::Result<()> {
        // SAFETY: plain system calls on the child's own state, with buffers that live here.
        unsafe {
            for fd in procs {
                if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(mounts) = &self.sandbox {
                mounts.enter()?;
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
                // Raw system calls: glibc's wrappers would change every thread's
                // credentials, and in a vfork child those threads are the daemon's.
                if libc::syscall(libc::SYS_setgroups, 1usize, &gid as *const libc::gid_t) == -1
                    || libc::syscall(libc::SYS_setgid, gid) == -1
                    || libc::syscall(libc::SYS_setuid, uid) == -1
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
