//! Port assignment: explicit ports, lowest-free allocation in the range, persistence in `state_dir`.
//!
//! Explicit ports are honoured as written. Every other server gets the lowest port of the
//! range that no server claims explicitly and no other server was given; the assignment is
//! kept in `<state_dir>/ports.json` (name -> port) so a server keeps its port across reloads
//! and daemon restarts. A state directory that cannot be written costs persistence only: the
//! allocator logs one warning and keeps working in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};

use crate::config::{PortRange, ServerConfig};

/// The name of the file in `state_dir` that remembers allocated ports.
pub const PORTS_FILE: &str = "ports.json";

/// Whether `127.0.0.1:port` is free: `Ok(true)` when we could bind it ourselves, `Ok(false)`
/// when another process holds it (`EADDRINUSE`, or `EACCES` for a port we may not bind).
/// Any other failure (out of descriptors, buffers or memory: `EMFILE`, `ENFILE`, `ENOBUFS`,
/// `ENOMEM`) says nothing about the port and comes back as the error itself, so a caller
/// never takes it for a port in use (and never moves a server because of it).
pub fn port_free(port: u16) -> std::io::Result<bool> {
    match TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)) {
        Ok(_) => Ok(true),
        Err(err) if port_taken(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

/// True for the errors of a bind that mean the port itself is not available.
pub fn port_taken(err: &std::io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EADDRINUSE | libc::EACCES))
}

/// Which port each server gets, and the file that remembers allocated ones.
#[derive(Debug, Clone)]
pub struct PortAllocator {
    range: PortRange,
    /// `<state_dir>/ports.json`; `None` once writing it failed (memory only from then on).
    file: Option<PathBuf>,
    /// Ports written explicitly in server files.
    explicit: BTreeMap<String, u16>,
    /// Ports allocated by us (persisted).
    allocated: BTreeMap<String, u16>,
}

impl PortAllocator {
    /// An allocator for `range` that remembers allocations in `state_dir/ports.json`, reading
    /// what an earlier run saved. A missing or unreadable file starts empty.
    pub fn load(state_dir: &Path, range: PortRange) -> Self {
        let file = state_dir.join(PORTS_FILE);
        let allocated = match std::fs::read(&file) {
            Ok(bytes) => match serde_json::from_slice::<BTreeMap<String, u16>>(&bytes) {
                Ok(map) => map,
                Err(err) => {
                    tracing::warn!(file = %file.display(), error = %err,
                        "ignoring unreadable port assignments; ports will be allocated afresh");
                    BTreeMap::new()
                }
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(err) => {
                tracing::warn!(file = %file.display(), error = %err,
                    "cannot read port assignments; ports will be allocated afresh");
                BTreeMap::new()
            }
        };
        PortAllocator {
            range,
            file: Some(file),
            explicit: BTreeMap::new(),
            allocated,
        }
    }

    /// An allocator that never touches the disk.
    pub fn in_memory(range: PortRange) -> Self {
        PortAllocator {
            range,
            file: None,
            explicit: BTreeMap::new(),
            allocated: BTreeMap::new(),
        }
    }

    /// The port of `name`, if it has one.
    pub fn port(&self, name: &str) -> Option<u16> {
        self.explicit
            .get(name)
            .or_else(|| self.allocated.get(name))
            .copied()
    }

    /// Every assignment, by name.
    pub fn assignments(&self) -> BTreeMap<String, u16> {
        let mut all = self.allocated.clone();
        all.extend(self.explicit.iter().map(|(n, p)| (n.clone(), *p)));
        all
    }

    /// Assigns a port to every server of `servers`: explicit ports as written, remembered
    /// allocations kept when still valid, the rest lowest-free. Servers no longer present
    /// lose their allocation. Does not write the file (see [`PortAllocator::persist`]).
    /// Servers left without a port (the range is full) are returned.
    pub fn assign(&mut self, servers: &BTreeMap<String, ServerConfig>) -> Vec<String> {
        self.explicit = servers
            .values()
            .filter(|s| s.kind.uses_port())
            .filter_map(|s| s.port.map(|p| (s.name.clone(), p)))
            .collect();
        let claimed: BTreeSet<u16> = self.explicit.values().copied().collect();
        let mut kept = BTreeMap::new();
        let mut taken = claimed.clone();
        for (name, port) in std::mem::take(&mut self.allocated) {
            let wanted = servers
                .get(&name)
                .is_some_and(|s| s.port.is_none() && s.kind.uses_port());
            if wanted && self.range.contains(port) && taken.insert(port) {
                kept.insert(name, port);
            }
        }
        self.allocated = kept;
        let mut unassigned = Vec::new();
        for server in servers.values() {
            if server.port.is_some()
                || !server.kind.uses_port()
                || self.allocated.contains_key(&server.name)
            {
                continue;
            }
            match self.range.iter().find(|p| !taken.contains(p)) {
                Some(port) => {
                    taken.insert(port);
                    self.allocated.insert(server.name.clone(), port);
                }
                None => unassigned.push(server.name.clone()),
            }
        }
        unassigned
    }

    /// Moves the allocated server `name` off a port another process holds: takes the lowest
    /// port that no server claims and that is free right now (bind test), skipping `busy`.
    /// Returns the new port, or `None` when the range has none left or the server's port is
    /// explicit. A bind test that fails for another reason than a taken port (see
    /// [`port_free`]) stops the search with that error, and nothing is moved.
    pub fn reassign(&mut self, name: &str, busy: u16) -> std::io::Result<Option<u16>> {
        if self.explicit.contains_key(name) {
            return Ok(None);
        }
        let taken: BTreeSet<u16> = self
            .explicit
            .values()
            .chain(
                self.allocated
                    .iter()
                    .filter(|(n, _)| *n != name)
                    .map(|(_, p)| p),
            )
            .copied()
            .collect();
        for port in self.range.iter() {
            if port != busy && !taken.contains(&port) && port_free(port)? {
                self.allocated.insert(name.to_owned(), port);
                return Ok(Some(port));
            }
        }
        Ok(None)
    }

    /// Writes the allocated ports to `ports.json` atomically (temp file + rename). A failure
    /// logs one warning and switches to memory only.
    pub fn persist(&mut self) {
        let Some(file) = &self.file else { return };
        if let Err(err) = write_atomically(file, &self.allocated) {
            if err.raw_os_error().is_some_and(is_resource_shortage) {
                // Out of descriptors or memory for a moment: the next change tries again.
                tracing::warn!(file = %file.display(), error = %err,
                    "cannot save port assignments now; trying again at the next change");
                return;
            }
            tracing::warn!(file = %file.display(), error = %err,
                "cannot save port assignments; allocated ports will not survive a daemon restart \
                 (make state_dir writable to fix)");
            self.file = None;
        }
    }
}

/// Errors that say the process ran short of a resource, not that a path is unusable.
fn is_resource_shortage(errno: i32) -> bool {
    matches!(
        errno,
        libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
    )
}

fn write_atomically(file: &Path, ports: &BTreeMap<String, u16>) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{PORTS_FILE}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut out = std::fs::File::create(&tmp)?;
        let mut json = serde_json::to_vec_pretty(ports).map_err(std::io::Error::other)?;
        json.push(b'\n');
        out.write_all(&json)?;
        out.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_builder::server_running;

    // Only `reassign_skips_a_port_held_by_another_process` binds; the others compute with
    // the numbers of RANGE and never touch a socket.

    fn servers(list: &[(&str, Option<u16>)]) -> BTreeMap<String, ServerConfig> {
        list.iter()
            .map(|(name, port)| {
                let mut s = server_running(name, "/bin/true");
                s.port = *port;
                ((*name).to_owned(), s)
            })
            .collect()
    }

    const RANGE: PortRange = PortRange {
        start: 41000,
        end: 41004,
    };

    #[test]
    fn explicit_ports_are_honoured_and_skipped_by_allocation() {
        let mut ports = PortAllocator::in_memory(RANGE);
        let left = ports.assign(&servers(&[("a", None), ("b", Some(41000)), ("c", None)]));
        assert!(left.is_empty());
        assert_eq!(ports.port("b"), Some(41000));
        assert_eq!(ports.port("a"), Some(41001));
        assert_eq!(ports.port("c"), Some(41002));
    }

    #[test]
    fn allocations_survive_reassign_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut ports = PortAllocator::load(dir.path(), RANGE);
        ports.assign(&servers(&[("a", None), ("b", None)]));
        ports.persist();
        assert_eq!(ports.port("b"), Some(41001));

        // "a" removed, "z" added (sorts last but would be lowest-free): "b" keeps its port.
        let mut again = PortAllocator::load(dir.path(), RANGE);
        again.assign(&servers(&[("b", None), ("z", None)]));
        assert_eq!(again.port("b"), Some(41001));
        assert_eq!(again.port("z"), Some(41000));
        again.persist();
        let saved: BTreeMap<String, u16> =
            serde_json::from_slice(&std::fs::read(dir.path().join(PORTS_FILE)).unwrap()).unwrap();
        assert_eq!(
            saved,
            BTreeMap::from([("b".into(), 41001), ("z".into(), 41000)])
        );
    }

    #[test]
    fn a_new_explicit_claim_moves_an_allocated_server() {
        let mut ports = PortAllocator::in_memory(RANGE);
        ports.assign(&servers(&[("a", None)]));
        assert_eq!(ports.port("a"), Some(41000));
        ports.assign(&servers(&[("a", None), ("b", Some(41000))]));
        assert_eq!(ports.port("a"), Some(41001));
    }

    #[test]
    fn a_full_range_leaves_servers_unassigned() {
        let mut ports = PortAllocator::in_memory(PortRange {
            start: 41010,
            end: 41011,
        });
        let left = ports.assign(&servers(&[("a", None), ("b", None), ("c", None)]));
        assert_eq!(left, vec!["c".to_owned()]);
        assert_eq!(ports.port("c"), None);
    }

    #[test]
    fn reassign_skips_a_port_held_by_another_process() {
        // This test binds, so its ports come from the test allocator.
        let block = mcpd_testkit::port_block(5);
        let [first, held, explicit, next] = [0, 1, 2, 3].map(|i| block.port(i));
        let range = PortRange {
            start: first,
            end: block.port(4),
        };
        let _held = mcpd_testkit::hold_port(held);
        let mut ports = PortAllocator::in_memory(range);
        ports.assign(&servers(&[("a", None), ("b", Some(explicit))]));
        assert_eq!(ports.port("a"), Some(first));
        assert!(!port_free(held).unwrap());
        // `first` is "busy" (the caller saw it), `held` is held, `explicit` is explicit.
        assert_eq!(ports.reassign("a", first).unwrap(), Some(next));
        assert_eq!(ports.reassign("b", explicit).unwrap(), None);
    }

    #[test]
    fn only_a_taken_port_counts_as_in_use() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        assert!(!port_free(port).unwrap());
        for taken in [libc::EADDRINUSE, libc::EACCES] {
            assert!(port_taken(&std::io::Error::from_raw_os_error(taken)));
        }
        // Running out of descriptors, buffers or memory says nothing about the port (the
        // end-to-end test in tests/abuse_files.rs runs the daemon out of descriptors).
        for resource in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(!port_taken(&std::io::Error::from_raw_os_error(resource)));
        }
    }

    #[test]
    fn an_unwritable_state_dir_keeps_working_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"").unwrap();
        let mut ports = PortAllocator::load(&blocker.join("state"), RANGE);
        ports.assign(&servers(&[("a", None)]));
        ports.persist();
        assert_eq!(ports.port("a"), Some(41000));
        assert!(ports.file.is_none());
    }

    #[test]
    fn a_corrupt_file_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PORTS_FILE), b"{not json").unwrap();
        let mut ports = PortAllocator::load(dir.path(), RANGE);
        ports.assign(&servers(&[("a", None)]));
        assert_eq!(ports.port("a"), Some(41000));
    }
}
