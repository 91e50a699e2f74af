//! A spawned server process as the daemon holds it: its pid, its exit (waited for through a
//! pidfd, so nothing polls and nothing calls `waitpid(-1)`), and the daemon's ends of its
//! pipes. Made by `vfork.rs`; a child dropped before its exit was seen is reaped in the
//! background, so it never stays a zombie.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use tokio::io::unix::AsyncFd;

/// One spawned process.
#[derive(Debug)]
pub struct Child {
    pid: u32,
    /// Readable once the process exited; registered with the runtime on the first `wait`.
    pidfd: Option<OwnedFd>,
    watched: Option<AsyncFd<OwnedFd>>,
    status: Option<ExitStatus>,
    /// The write end of the process's stdin (stdio servers only).
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

impl Child {
    pub(super) fn new(
        pid: u32,
        pidfd: OwnedFd,
        stdin: Option<OwnedFd>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Self {
        Child {
            pid,
            pidfd: Some(pidfd),
            watched: None,
            status: None,
            stdin,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// The pid, until the process has been reaped.
    pub fn id(&self) -> Option<u32> {
        self.status.is_none().then_some(self.pid)
    }

    /// Waits for the process to exit and reaps it. Cancel-safe.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if self.watched.is_none() {
                let pidfd = self
                    .pidfd
                    .take()
                    .ok_or_else(|| io::Error::other("no pidfd"))?;
                // SAFETY: the pidfd is owned here and only ever polled for readability.
                self.watched = Some(unsafe {
                    AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
                }?);
            }
            if let Some(watched) = &self.watched {
                let mut ready = watched.readable().await?;
                ready.clear_ready();
            }
        }
    }

    /// The exit status if the process has exited (reaping it), else `None`.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let status = reap(self.pid)?;
        if let Some(status) = status {
            self.status = Some(status);
            self.watched = None;
            self.pidfd = None;
        }
        Ok(status)
    }
}

/// `waitpid(pid, WNOHANG)`: `Some` once the process exited and was reaped by this call.
fn reap(pid: u32) -> io::Result<Option<ExitStatus>> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    let mut status = 0;
    loop {
        // SAFETY: waits for one child of ours; writes only `status`.
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        match reaped {
            0 => return Ok(None),
            -1 => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
            _ => return Ok(Some(ExitStatus::from_raw(status))),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.status.is_some() || matches!(reap(self.pid), Ok(Some(_)) | Err(_)) {
            return;
        }
        // Still running: reap it when it exits, so it does not stay a zombie.
        let pid = self.pid;
        let (pidfd, watched) = (self.pidfd.take(), self.watched.take());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let watched = match (watched, pidfd) {
                (Some(watched), _) => watched,
                // SAFETY: as in `wait`.
                (None, Some(pidfd)) => match unsafe {
                    AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
                } {
                    Ok(watched) => watched,
                    Err(_) => return,
                },
                (None, None) => return,
            };
            loop {
                if !matches!(reap(pid), Ok(None)) {
                    return;
                }
                match watched.readable().await {
                    Ok(mut ready) => ready.clear_ready(),
                    Err(_) => return,
                }
            }
        });
    }
}
