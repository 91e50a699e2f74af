//! The caps on upstream connections shared by every worker: a place per connection, idle or
//! busy, under one cap per server and one for all; a request at a cap first closes idle
//! connections, then waits at most `gateway.upstream_wait`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Key, Pool, UpstreamError};

/// The upstream connection caps, shared by the workers: a place per connection, idle or busy.
#[derive(Debug)]
pub struct Caps {
    total: Arc<Semaphore>,
    pub(super) per_server: usize,
    by_port: Mutex<HashMap<Key, Arc<Semaphore>>>,
    wait: Duration,
    /// Every worker's pool, so a request at a cap can close the idle connections of all.
    pools: Mutex<Vec<std::sync::Weak<Pool>>>,
}

/// The places one upstream connection holds; dropped with it.
#[derive(Debug)]
pub(super) struct Places {
    _server: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

impl Caps {
    pub fn new(total: usize, per_server: usize, wait: Duration) -> Self {
        Caps {
            total: Arc::new(Semaphore::new(total.min(Semaphore::MAX_PERMITS))),
            per_server: per_server.min(Semaphore::MAX_PERMITS),
            by_port: Mutex::default(),
            wait,
            pools: Mutex::default(),
        }
    }

    /// Lets requests at a cap close `pool`'s idle connections.
    pub fn register(&self, pool: &Arc<Pool>) {
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pools.retain(|pool| pool.strong_count() > 0);
        pools.push(Arc::downgrade(pool));
    }

    /// Closes the idle connections of every worker (to `port` only, when given), giving their
    /// places back.
    fn close_idle(&self, port: Option<Key>) {
        let pools: Vec<Arc<Pool>> = self
            .pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect();
        for pool in pools {
            pool.close_idle(port);
        }
    }

    fn server(&self, port: Key) -> Arc<Semaphore> {
        let mut by_port = self
            .by_port
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        by_port
            .entry(port)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_server)))
            .clone()
    }

    /// Places for a new connection to `port`. At a cap, idle connections are closed first,
    /// then the request waits at most `wait`.
    pub(super) async fn acquire(&self, port: Key) -> Result<Places, UpstreamError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let server = self.server(port);
        let busy = |cap| UpstreamError::Busy {
            key: port,
            wait: self.wait,
            cap,
        };
        let server = match server.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.close_idle(Some(port));
                tokio::time::timeout_at(deadline, server.acquire_owned())
                    .await
                    .map_err(|_| busy("gateway.max_upstream_per_server"))?
                    .map_err(|_| busy("gateway.max_upstream_per_server"))?
            }
        };
        let total = match self.total.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                self.close_idle(None);
                tokio::time::timeout_at(deadline, self.total.clone().acquire_owned())
                    .await
                    .map_err(|_| busy("gateway.max_upstream"))?
                    .map_err(|_| busy("gateway.max_upstream"))?
            }
        };
        Ok(Places {
            _server: server,
            _total: total,
        })
    }
}
