//! Starting one process the cheap way: `clone(CLONE_VM | CLONE_VFORK)`, as `posix_spawn`
//! does. The child runs on a stack of its own in the daemon's memory until it execs, so no
//! page table is copied and none is torn down at exec; a plain `fork` of a daemon holding
//! thousands of servers costs both, for every spawn (BENCH.md, "1000 servers").
//!
//! What runs in the child (`run_child`) is held to stricter rules than after a `fork`: it
//! shares the daemon's memory, so it allocates nothing, takes no lock, and makes only raw
//! system calls (glibc's `setuid` would signal the daemon's threads); all signals are
//! blocked around the clone, and the child sets every disposition back to default before it
//! unblocks them, so no daemon handler ever runs in it. Everything it needs (the program,
//! `argv`, `envp`, the directory, the confinement's open files) is prepared before.
//!
//! The child's standard descriptors are pipes made here (stdin is `/dev/null` unless the
//! server speaks stdio); it closes every other descriptor before exec (`close_range`), so
//! the server starts with exactly 0, 1 and 2, even when the daemon itself inherited a
//! descriptor without close-on-exec.
//!
//! The child does not copy the daemon's descriptor table either: its descriptors are put in
//! low reserved numbers (`fd_slots.rs`), it is cloned sharing the table (`CLONE_FILES`) and
//! its first system call takes a private table of only the numbers below the slots' bound
//! (`CLOSE_RANGE_UNSHARE`; a full `unshare(CLONE_FILES)` on kernels without it).

use std::ffi::{CStr, CString, c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

use super::child::Child;
use super::confine::Prepared;
use super::fd_slots::Slots;
use super::spawn::SpawnSpec;

/// The child's stack: its own mapping, with a guard page below it.
pub struct ChildStack {
    base: *mut c_void,
    len: usize,
}

const STACK_SIZE: usize = 256 * 1024;
const GUARD_SIZE: usize = 4096;

impl ChildStack {
    pub fn new() -> io::Result<Self> {
        let len = STACK_SIZE + GUARD_SIZE;
        // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = ChildStack { base, len };
        // SAFETY: the lowest page of the mapping made above.
        if unsafe { libc::mprotect(base, GUARD_SIZE, libc::PROT_NONE) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The top of the stack (stacks grow down), 16-byte aligned.
    fn top(&self) -> *mut c_void {
        // SAFETY: one past the end of the mapping, whose length is a multiple of 16.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`; no child runs on it once `launch` returned.
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

/// Where the child failed, with the errno it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
enum Stage {
    Stdio = 1,
    Chdir = 2,
    Confine = 3,
    Session = 4,
    Exec = 5,
}

impl Stage {
    fn of(code: i64) -> Option<Self> {
        [
            Stage::Stdio,
            Stage::Chdir,
            Stage::Confine,
            Stage::Session,
            Stage::Exec,
        ]
        .into_iter()
        .find(|stage| *stage as i64 == code)
    }

    fn doing(self) -> &'static str {
        match self {
            Stage::Stdio => "setting up its stdin, stdout and stderr",
            Stage::Chdir => "changing to its working directory",
            Stage::Confine => "entering its cgroup, sandbox, limits and user",
            Stage::Session => "starting its session",
            Stage::Exec => "executing it",
        }
    }
}

/// What the child reads: all of it prepared (and allocated) by the parent.
struct ChildArgs<'a> {
    program: &'a CStr,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    working_dir: Option<&'a CStr>,
    /// The child's stdin, stdout and stderr, in the daemon's descriptor table.
    stdio: [RawFd; 3],
    /// The cgroup files it writes itself into, in the same table.
    procs: &'a [RawFd],
    /// Cloned sharing the daemon's table: keep only the descriptors below this number.
    unshare_below: Option<RawFd>,
    confine: &'a Prepared,
    daemon_pid: libc::pid_t,
    /// `stage << 32 | errno` when the child failed before exec; written by the child.
    failure: AtomicI64,
}

/// Starts `spec` as a child of the calling thread (`PR_SET_PDEATHSIG` is tied to it); with
/// `slots`, without copying the daemon's descriptor table into it.
pub fn launch(
    spec: &SpawnSpec,
    stack: &ChildStack,
    slots: Option<&Slots>,
    daemon_pid: libc::pid_t,
) -> io::Result<Child> {
    let confine = spec.confine.prepare()?;
    let program = program(spec)?;
    let c_string = |text: &[u8]| CString::new(text).map_err(io::Error::other);
    let args = std::iter::once(c_string(spec.binary.as_os_str().as_bytes()))
        .chain(spec.args.iter().map(|arg| c_string(arg.as_bytes())))
        .collect::<io::Result<Vec<_>>>()?;
    let env = spec
        .env
        .iter()
        .map(|(key, value)| c_string(format!("{key}={value}").as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let working_dir = match &spec.working_dir {
        Some(dir) => Some(c_string(dir.as_os_str().as_bytes())?),
        None => None,
    };
    let argv = null_terminated(&args);
    let envp = null_terminated(&env);

    let (stdin_child, stdin_parent) = if spec.stdin_pipe {
        let (read, write) = pipe()?;
        (read, Some(write))
    } else {
        (dev_null()?, None)
    };
    let (stdout_parent, stdout_child) = pipe()?;
    let (stderr_parent, stderr_child) = pipe()?;

    let needed: Vec<RawFd> = [&stdin_child, &stdout_child, &stderr_child]
        .into_iter()
        .map(AsRawFd::as_raw_fd)
        .chain(confine.procs())
        .collect();
    // Too many cgroup files for the slots: the child copies the whole table, as a fork does.
    let placed = slots.and_then(|slots| slots.place(&needed)).transpose()?;
    let (at, unshare_below) = match (&placed, slots) {
        (Some(placed), Some(slots)) => (placed.at.as_slice(), Some(slots.bound())),
        _ => (needed.as_slice(), None),
    };
    let child_args = ChildArgs {
        program: &program,
        argv: &argv,
        envp: &envp,
        working_dir: working_dir.as_deref(),
        stdio: [at[0], at[1], at[2]],
        procs: &at[3..],
        unshare_below,
        confine: &confine,
        daemon_pid,
        failure: AtomicI64::new(0),
    };
    let flags = libc::CLONE_VM
        | libc::CLONE_VFORK
        | libc::CLONE_PIDFD
        | libc::SIGCHLD
        | if unshare_below.is_some() {
            libc::CLONE_FILES
        } else {
            0
        };
    let mut pidfd: c_int = -1;
    // SAFETY: all signals are blocked for the clone (restored right after); the child runs
    // `child_main` on its own stack and only reads `child_args`, which outlives it: with
    // CLONE_VFORK this thread resumes only once the child exec'd or exited.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut before);
        let pid = libc::clone(
            child_main,
            stack.top(),
            flags,
            std::ptr::from_ref(&child_args).cast_mut().cast(),
            &mut pidfd as *mut c_int,
        );
        let error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &before, std::ptr::null_mut());
        if pid == -1 {
            return Err(error);
        }
        pid
    };
    // SAFETY: CLONE_PIDFD stored a new descriptor that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let failure = child_args.failure.load(Ordering::SeqCst);
    drop(placed);
    drop((stdin_child, stdout_child, stderr_child));
    if failure != 0 {
        // The child exited without exec: reap it here.
        let mut status = 0;
        // SAFETY: waits for the child just made, which nothing else waits for.
        while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
        let errno = io::Error::from_raw_os_error((failure & 0xffff_ffff) as i32);
        return Err(match Stage::of(failure >> 32) {
            Some(Stage::Exec) | None => errno,
            Some(stage) => io::Error::new(errno.kind(), format!("{}: {errno}", stage.doing())),
        });
    }
    let pid = u32::try_from(pid).map_err(io::Error::other)?;
    Ok(Child::new(
        pid,
        pidfd,
        stdin_parent,
        stdout_parent,
        stderr_parent,
    ))
}

/// The file to execute: `binary` itself when it names a path, else the first match in the
/// `PATH` of the child's environment (configured binaries are absolute already).
fn program(spec: &SpawnSpec) -> io::Result<CString> {
    let binary = &spec.binary;
    let found = if binary.as_os_str().as_bytes().contains(&b'/') {
        binary.clone()
    } else {
        let path = spec
            .env
            .iter()
            .find(|(key, _)| key == "PATH")
            .map(|(_, value)| value.as_str())
            .unwrap_or("/usr/local/bin:/usr/bin:/bin");
        path.split(':')
            .map(|dir| Path::new(dir).join(binary))
            .find(|candidate| is_executable(candidate))
            .unwrap_or_else(|| PathBuf::from(binary))
    };
    CString::new(std::os::unix::ffi::OsStringExt::into_vec(
        found.into_os_string(),
    ))
    .map_err(io::Error::other)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are new descriptors owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn dev_null() -> io::Result<OwnedFd> {
    std::fs::File::open("/dev/null").map(OwnedFd::from)
}

/// The child: set up, then exec; on failure, leave `stage << 32 | errno` and exit 127.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `ChildArgs` of `launch`, alive until this child execs or exits.
    let args = unsafe { &*arg.cast::<ChildArgs<'_>>() };
    // SAFETY: runs in the vfork child, which `run_child` is written for.
    let (stage, errno) = unsafe { run_child(args) };
    args.failure
        .store(((stage as i64) << 32) | i64::from(errno), Ordering::SeqCst);
    // SAFETY: ends the child only (no CLONE_THREAD), without running any exit handler.
    unsafe { libc::_exit(127) }
}

fn errno() -> c_int {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

/// Everything between clone and exec; returns only on failure.
///
/// # Safety
/// Only in the vfork child: raw system calls, no allocation, no lock.
unsafe fn run_child(args: &ChildArgs<'_>) -> (Stage, c_int) {
    // SAFETY: system calls on the child's own descriptor table, signal state and process.
    unsafe {
        // Leave the daemon's table first: nothing below may change what its threads use.
        if let Some(bound) = args.unshare_below
            && libc::syscall(
                libc::SYS_close_range,
                bound as u32,
                u32::MAX,
                libc::CLOSE_RANGE_UNSHARE,
            ) == -1
            && libc::syscall(libc::SYS_unshare, libc::CLONE_FILES) == -1
        {
            return (Stage::Stdio, errno());
        }
        // Move a source that sits on 0-2 out of the way first, so no dup2 overwrites it.
        let mut stdio = args.stdio;
        for fd in &mut stdio {
            if *fd < 3 {
                let moved = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3);
                if moved == -1 {
                    return (Stage::Stdio, errno());
                }
                *fd = moved;
            }
        }
        for (target, fd) in (0..).zip(stdio) {
            if libc::dup2(fd, target) == -1 {
                return (Stage::Stdio, errno());
            }
        }
        if let Some(dir) = args.working_dir
            && libc::chdir(dir.as_ptr()) == -1
        {
            return (Stage::Chdir, errno());
        }
        if let Err(err) = args.confine.enter(args.procs) {
            return (Stage::Confine, err.raw_os_error().unwrap_or(libc::EINVAL));
        }
        // Everything else goes (the cgroup files were written above), including what the
        // daemon inherited without close-on-exec (a jobserver pipe, a stray descriptor of
        // whoever started it). Close-on-exec would close the rest at exec anyway; old
        // kernels without close_range keep that.
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        if let Err(errno) = session(args.daemon_pid) {
            return (Stage::Session, errno);
        }
        libc::execve(
            args.program.as_ptr(),
            args.argv.as_ptr(),
            args.envp.as_ptr(),
        );
        (Stage::Exec, errno())
    }
}

/// Own session and process group, die with the daemon, default signal dispositions, then
/// nothing blocked.
///
/// # Safety
/// Only in the vfork child (see `run_child`).
unsafe fn session(daemon_pid: libc::pid_t) -> Result<(), c_int> {
    // SAFETY: plain system calls on the child's own state.
    unsafe {
        if libc::setsid() == -1 {
            return Err(errno());
        }
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) == -1
        {
            return Err(errno());
        }
        // The daemon may have died between clone and prctl: then nobody would kill us.
        if libc::getppid() != daemon_pid {
            return Err(libc::ESRCH);
        }
        // Dispositions first: with signals still blocked, no daemon handler can run here.
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut default.sa_mask);
        for signal in 1..libc::SIGRTMAX() {
            if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                // Fails harmlessly for the signals libc reserves.
                libc::sigaction(signal, &default, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        if libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const libc::sigset_t,
            std::ptr::null_mut::<libc::sigset_t>(),
            8usize,
        ) == -1
        {
            return Err(errno());
        }
    }
    Ok(())
}
