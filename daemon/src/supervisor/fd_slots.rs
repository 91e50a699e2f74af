//! The low descriptor numbers a spawn puts the child's descriptors at (its stdin, stdout and
//! stderr, its cgroup files), so the child can leave the daemon's descriptor table cheaply.
//!
//! The child is cloned sharing the daemon's table (`CLONE_FILES`: nothing copied) and its
//! first system call is `close_range(bound, ~0, CLOSE_RANGE_UNSHARE)`, which gives it a
//! private table holding only the descriptors below `bound`: the slots and the few the daemon
//! opened before the spawner started. Without the slots the child's descriptors are wherever
//! the lowest free numbers were, and each spawn copied the daemon's whole table (~4000
//! descriptors at 1000 servers) then closed it again before exec (BENCH.md, "1000 servers:
//! start-up, a spawn's descriptors").
//!
//! The slots are taken once, when the spawner starts and the daemon holds few descriptors,
//! and stay open for the daemon's life: each holds `/dev/null` except while a spawn has put
//! one of the child's descriptors there. `dup3` replaces a slot's file in one step, so a slot's
//! number is never free for another thread to take.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// How many descriptors a spawn can place: stdin, stdout, stderr and five cgroup files.
pub const SLOTS: usize = 8;

/// The reserved numbers; used by the spawner thread only.
#[derive(Debug)]
pub struct Slots {
    held: Vec<OwnedFd>,
    null: OwnedFd,
    bound: RawFd,
}

impl Slots {
    /// Takes [`SLOTS`] of the lowest free numbers from 3 up.
    pub fn new() -> io::Result<Self> {
        let null = OwnedFd::from(std::fs::File::open("/dev/null")?);
        let held = (0..SLOTS)
            .map(|_| dup_at_least(&null, 3))
            .collect::<io::Result<Vec<_>>>()?;
        let bound = held.iter().map(AsRawFd::as_raw_fd).max().unwrap_or(2) + 1;
        Ok(Slots { held, null, bound })
    }

    /// One more than the highest slot: the child keeps the descriptors below it.
    pub fn bound(&self) -> RawFd {
        self.bound
    }

    /// Puts `fds` in the first slots, in order; `None` when there are more than [`SLOTS`].
    /// The slots hold `/dev/null` again when the returned value is dropped.
    pub fn place(&self, fds: &[RawFd]) -> Option<io::Result<Placed<'_>>> {
        if fds.len() > self.held.len() {
            return None;
        }
        let mut placed = Placed {
            slots: self,
            at: Vec::with_capacity(fds.len()),
        };
        for (fd, slot) in fds.iter().zip(&self.held) {
            if let Err(err) = replace(*fd, slot.as_raw_fd()) {
                return Some(Err(err));
            }
            placed.at.push(slot.as_raw_fd());
        }
        Some(Ok(placed))
    }
}

/// A spawn's descriptors in the slots.
#[derive(Debug)]
pub struct Placed<'a> {
    slots: &'a Slots,
    /// Where each descriptor given to `place` is now, in the same order.
    pub at: Vec<RawFd>,
}

impl Drop for Placed<'_> {
    fn drop(&mut self) {
        for slot in &self.at {
            // Cannot fail: both are open, and `slot` is a number the table already has.
            let _ = replace(self.slots.null.as_raw_fd(), *slot);
        }
    }
}

/// Makes `slot` refer to `fd`'s file (close-on-exec), closing what it referred to.
fn replace(fd: RawFd, slot: RawFd) -> io::Result<()> {
    if fd == slot {
        return Ok(());
    }
    // SAFETY: dup3 onto a number this module owns; `fd` stays open and owned by its owner.
    if unsafe { libc::dup3(fd, slot, libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn dup_at_least(fd: &OwnedFd, lowest: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor that nothing else owns.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, lowest) };
    if new == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just made, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(fd: RawFd) -> String {
        std::fs::read_link(format!("/proc/self/fd/{fd}"))
            .map(|path| path.display().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn placed_descriptors_sit_below_the_bound_and_the_slots_go_back_to_dev_null() {
        let slots = Slots::new().expect("slots");
        assert!(slots.bound() > 3);
        let (read, write) = std::io::pipe().expect("pipe");
        let fds = [read.as_raw_fd(), write.as_raw_fd()];
        {
            let placed = slots.place(&fds).expect("fits").expect("placed");
            assert_eq!(placed.at.len(), 2);
            for (fd, at) in fds.iter().zip(&placed.at) {
                assert!(*at < slots.bound() && *at >= 3);
                assert_eq!(target(*at), target(*fd), "slot {at} holds fd {fd}'s pipe");
            }
        }
        for slot in &slots.held {
            assert_eq!(target(slot.as_raw_fd()), "/dev/null");
        }
        assert!(slots.place(&[0; SLOTS + 1]).is_none(), "too many to place");
    }

    /// A descriptor the daemon holds below the bound, without close-on-exec (one it
    /// inherited), is copied into the child's private table with the slots: the child must
    /// close it, and must leave the daemon's own table as it was.
    #[tokio::test]
    async fn a_child_spawned_through_the_slots_holds_only_its_stdio() {
        use std::io::Read;

        let below = std::fs::File::open("/dev/null").expect("open");
        let slots = Slots::new().expect("slots");
        assert!(below.as_raw_fd() < slots.bound());
        let (_keep, inherited) = std::io::pipe().expect("pipe");
        // SAFETY: dup2 onto the number `below` owns; the new one has no close-on-exec.
        assert_ne!(
            unsafe { libc::dup2(inherited.as_raw_fd(), below.as_raw_fd()) },
            -1
        );
        let spec = crate::supervisor::spawn::SpawnSpec {
            name: "fds".into(),
            binary: "/bin/ls".into(),
            args: vec!["-l".into(), "/proc/self/fd/".into()],
            env: vec![],
            working_dir: None,
            confine: Default::default(),
            stdin_pipe: false,
        };
        let stack = super::super::vfork::ChildStack::new().expect("stack");
        let daemon_pid = std::process::id() as libc::pid_t;
        let mut child =
            super::super::vfork::launch(&spec, &stack, Some(&slots), daemon_pid).expect("launch");
        let mut listed = String::new();
        std::fs::File::from(child.stdout.take().expect("stdout"))
            .read_to_string(&mut listed)
            .expect("read");
        assert!(child.wait().await.expect("wait").success());
        // `fd -> target` per line; ls's own handle on the directory points into /proc.
        let held: Vec<&str> = listed
            .lines()
            .filter_map(|line| line.split_once(" -> "))
            .filter(|(_, target)| !target.starts_with("/proc/"))
            .filter_map(|(head, _)| head.split_whitespace().last())
            .collect();
        assert_eq!(held, ["0", "1", "2"], "the child's descriptors: {listed}");
        assert_eq!(target(below.as_raw_fd()), target(inherited.as_raw_fd()));
        for slot in &slots.held {
            assert_eq!(target(slot.as_raw_fd()), "/dev/null");
        }
    }
}
