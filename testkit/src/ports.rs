//! Loopback test ports: blocks outside the kernel's ephemeral range, owned by one test.
//!
//! The kernel picks the source port of every outgoing connection (and of every bind to port
//! 0) from `/proc/sys/net/ipv4/ip_local_port_range` (32768-60999 by default), so a test port
//! inside that range can be held for a moment by any connection on the machine, the suite's
//! own included. Test ports therefore come from outside it: slots of [`SLOT`] ports from
//! 10000 up to the start of the ephemeral range (or, when the kernel leaves too little room
//! there, anywhere above 1024 and outside it), never in mcpd's default `port_range`
//! (5000-5999) nor the default gateway port (8080).
//!
//! A block is distinct across the tests of one process (an atomic counter) and across test
//! processes, even of different checkouts (an exclusive `flock` on one file per slot in
//! `/tmp/mcpd-test-ports`, held until the process exits), and every port of it is checked
//! to be bindable when it is handed out.

use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, TcpListener};
use std::ops::RangeInclusive;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::fcntl::{Flock, FlockArg};

/// Ports are handed out in slots of this many; a slot starts at a multiple of it.
pub const SLOT: u16 = 20;

/// Where the kernel keeps its ephemeral range.
const EPHEMERAL_FILE: &str = "/proc/sys/net/ipv4/ip_local_port_range";
/// Linux's default ephemeral range, assumed when [`EPHEMERAL_FILE`] cannot be read.
const DEFAULT_EPHEMERAL: RangeInclusive<u16> = 32768..=60999;
/// Ports a test never gets: mcpd's default `port_range` and its default gateway port, where
/// a daemon on the machine may be running.
const AVOIDED: [RangeInclusive<u16>; 2] = [5000..=5999, 8080..=8080];
/// Test ports start here when the ephemeral range leaves room enough below it; lower ports
/// are where well-known services listen.
const PREFERRED_FIRST: u16 = 10_000;
/// The fewest slots the preferred part must have to be used alone.
const ENOUGH_SLOTS: usize = 200;
/// The directory of the per-slot lock files, shared by every test process of the machine.
const LOCK_DIR: &str = "/tmp/mcpd-test-ports";

/// A range of loopback ports owned by one test: `start..start + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortBlock {
    pub start: u16,
    pub len: u16,
}

impl PortBlock {
    /// The `i`th port of the block.
    pub fn port(&self, i: u16) -> u16 {
        assert!(i < self.len, "port {i} is outside a block of {}", self.len);
        self.start + i
    }

    /// The last port of the block (inclusive).
    pub fn last(&self) -> u16 {
        self.start + self.len - 1
    }

    /// The block as a `port_range` value of mcpd.yaml, e.g. `"20040-20059"`.
    pub fn range(&self) -> String {
        format!("{}-{}", self.start, self.last())
    }

    pub fn ports(&self) -> impl Iterator<Item = u16> + use<> {
        self.start..self.start + self.len
    }
}

/// A block of at least `n` consecutive free loopback ports (a multiple of [`SLOT`]), outside
/// the ephemeral range and owned by the calling test: no other test of any test process gets
/// them while this process runs.
pub fn port_block(n: u16) -> PortBlock {
    assert!(n > 0, "a port block needs at least one port");
    let slots = usize::from(n.div_ceil(SLOT));
    let pool = pool();
    assert!(
        !pool.is_empty(),
        "no test ports outside the ephemeral range {:?} ({EPHEMERAL_FILE}); narrow it",
        ephemeral_range()
    );
    // Start each process at a different place, so concurrent test processes rarely even
    // contend for the same lock files.
    static NEXT: OnceLock<AtomicUsize> = OnceLock::new();
    let next = NEXT.get_or_init(|| AtomicUsize::new(std::process::id() as usize * 7 % pool.len()));
    for _ in 0..pool.len() {
        let first = next.fetch_add(slots, Ordering::Relaxed) % pool.len();
        let Some(candidates) = pool.get(first..first + slots) else {
            continue; // would run past the end of the pool; the counter wraps next time
        };
        let start = candidates[0];
        let contiguous = candidates
            .iter()
            .enumerate()
            .all(|(k, slot)| u32::from(*slot) == u32::from(start) + k as u32 * u32::from(SLOT));
        if !contiguous {
            continue; // the block would straddle an avoided range
        }
        let block = PortBlock {
            start,
            len: slots as u16 * SLOT,
        };
        if claim(candidates) && block.ports().all(bindable) {
            return block;
        }
    }
    panic!(
        "no free block of {n} ports among the {} test slots outside the ephemeral range {:?}",
        pool.len(),
        ephemeral_range()
    );
}

/// One free loopback port for this test (nothing listens on it until the test does).
pub fn free_port() -> u16 {
    port_block(1).start
}

/// True when a listener could bind `127.0.0.1:port` right now.
pub fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Listens on `127.0.0.1:port`, for a test that needs that very port held; panics saying
/// which port is taken when it cannot.
pub fn hold_port(port: u16) -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap_or_else(|error| {
        panic!(
            "port {port} is taken ({error}): this test needs 127.0.0.1:{port} free; \
             find the holder with `ss -ltnp 'sport = :{port}'`"
        )
    })
}

/// Checks that `127.0.0.1:port` is free, for a test that needs that very port; panics saying
/// which port is taken when it is not.
pub fn require_free(port: u16) {
    drop(hold_port(port));
}

/// The kernel's ephemeral port range, from `/proc/sys/net/ipv4/ip_local_port_range`; Linux's
/// default (32768-60999) when that file cannot be read or parsed.
pub fn ephemeral_range() -> RangeInclusive<u16> {
    std::fs::read_to_string(EPHEMERAL_FILE)
        .ok()
        .and_then(|text| parse_range(&text))
        .unwrap_or(DEFAULT_EPHEMERAL)
}

/// Parses the two numbers of `ip_local_port_range` ("32768\t60999\n").
fn parse_range(text: &str) -> Option<RangeInclusive<u16>> {
    let mut numbers = text.split_whitespace().map(str::parse::<u16>);
    let (Some(Ok(first)), Some(Ok(last)), None) = (numbers.next(), numbers.next(), numbers.next())
    else {
        return None;
    };
    (first <= last).then_some(first..=last)
}

/// The first port of every slot tests may use, ascending; computed once per process.
fn pool() -> &'static [u16] {
    static POOL: OnceLock<Vec<u16>> = OnceLock::new();
    POOL.get_or_init(|| pool_for(&ephemeral_range()))
}

/// The slots (first ports) outside `ephemeral`, above 1024 and clear of [`AVOIDED`]: those
/// from [`PREFERRED_FIRST`] to the start of `ephemeral` when there are enough of them, else
/// every such slot.
fn pool_for(ephemeral: &RangeInclusive<u16>) -> Vec<u16> {
    let usable = |first: &u16| {
        let last = first + (SLOT - 1);
        let overlaps =
            |range: &RangeInclusive<u16>| *first <= *range.end() && last >= *range.start();
        *first > 1024 && !overlaps(ephemeral) && !AVOIDED.iter().any(overlaps)
    };
    let all: Vec<u16> = (SLOT..=u16::MAX - (SLOT - 1))
        .step_by(usize::from(SLOT))
        .filter(usable)
        .collect();
    let preferred: Vec<u16> = all
        .iter()
        .copied()
        .filter(|first| *first >= PREFERRED_FIRST && first < ephemeral.start())
        .collect();
    if preferred.len() >= ENOUGH_SLOTS {
        preferred
    } else {
        all
    }
}

/// Takes the cross-process lock file of each slot of `slots`; kept until the process exits.
fn claim(slots: &[u16]) -> bool {
    static HELD: Mutex<Vec<Flock<File>>> = Mutex::new(Vec::new());
    let Some(dir) = lock_dir() else {
        return false;
    };
    let mut locks = Vec::with_capacity(slots.len());
    for first in slots {
        let path = dir.join(format!("port-{first}.lock"));
        // Another user's test process may have created the file; a read-only descriptor is
        // enough for flock.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .or_else(|_| File::open(&path));
        let Ok(file) = file else {
            return false;
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => locks.push(lock),
            Err(_) => return false, // another process has it (our own locks are dropped here)
        }
    }
    HELD.lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .extend(locks);
    true
}

/// [`LOCK_DIR`], created open to every user (sticky) on first use; the temp dir's
/// `mcpd-test-ports` when /tmp cannot be used.
fn lock_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let fixed = PathBuf::from(LOCK_DIR);
        let fallback = std::env::temp_dir().join("mcpd-test-ports");
        [fixed, fallback].into_iter().find(|dir| {
            if std::fs::create_dir(dir).is_ok() {
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
            }
            dir.is_dir()
        })
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_ephemeral_range_file_is_parsed() {
        assert_eq!(parse_range("32768\t60999\n"), Some(32768..=60999));
        assert_eq!(parse_range("1024 65535"), Some(1024..=65535));
        assert_eq!(parse_range(""), None);
        assert_eq!(parse_range("32768"), None);
        assert_eq!(parse_range("60999 32768"), None);
        assert_eq!(parse_range("1 2 3"), None);
        assert_eq!(parse_range("x 2"), None);
    }

    /// What the kernel says, read here independently of [`ephemeral_range`].
    fn ephemeral_from_proc() -> RangeInclusive<u16> {
        let text = std::fs::read_to_string(EPHEMERAL_FILE).expect("read the ephemeral range");
        let numbers: Vec<u16> = text
            .split_whitespace()
            .map(|n| n.parse().expect("a port number"))
            .collect();
        numbers[0]..=numbers[1]
    }

    #[test]
    fn blocks_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let ephemeral = ephemeral_from_proc();
        assert_eq!(ephemeral_range(), ephemeral);
        let blocks: Vec<PortBlock> = [1, 20, 25, 60, 1, 40].map(port_block).into();
        let mut seen = HashSet::new();
        for block in &blocks {
            assert_eq!(block.len % SLOT, 0);
            assert_eq!(block.start % SLOT, 0);
            for port in block.ports() {
                assert!(seen.insert(port), "port {port} handed out twice");
                assert!(port > 1024, "port {port} is privileged");
                assert!(
                    !ephemeral.contains(&port),
                    "port {port} is inside the ephemeral range {ephemeral:?}"
                );
                assert!(
                    !(5000..=5999).contains(&port) && port != 8080,
                    "port {port} is one of mcpd's defaults"
                );
                assert!(bindable(port), "port {port} was handed out taken");
            }
        }
        assert_eq!(blocks[2].len, 40, "25 ports round up to two slots");
        assert_eq!(
            blocks[2].range(),
            format!("{}-{}", blocks[2].start, blocks[2].start + 39)
        );
    }

    #[test]
    fn the_pool_stays_outside_any_ephemeral_range() {
        let default = pool_for(&DEFAULT_EPHEMERAL);
        assert_eq!(default.first(), Some(&PREFERRED_FIRST));
        assert_eq!(
            default.last(),
            Some(&(32740)),
            "the last slot ends at 32759"
        );
        // A range that leaves little room below: low ports and the top are used, minus
        // mcpd's defaults.
        let wide = pool_for(&(2000..=65000));
        assert!(!wide.is_empty());
        for first in &wide {
            let block = *first..=*first + (SLOT - 1);
            assert!(*first > 1024);
            assert!(*block.end() < 2000 || *first > 65000, "{block:?}");
        }
        let wide_low = pool_for(&(6000..=65000));
        assert!(
            wide_low
                .iter()
                .all(|first| !(4981..=5999).contains(first) && *first > 1024),
            "{wide_low:?}"
        );
        assert!(pool_for(&(1..=65535)).is_empty());
    }

    #[test]
    fn a_taken_port_is_named() {
        let port = free_port();
        let _held = hold_port(port);
        let panic = std::panic::catch_unwind(|| require_free(port)).expect_err("the port is taken");
        let message = panic.downcast_ref::<String>().expect("a formatted message");
        assert!(
            message.starts_with(&format!("port {port} is taken")),
            "{message}"
        );
    }
}
