//! Prometheus metrics: gateway traffic, auth failures and reloads as counters the code
//! updates, and per-server state read from the `Directory` at each scrape.
//!
//! Served by the gateway at `GET /metrics` in the Prometheus text format.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::directory::{Directory, ServerState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabel {
    pub server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub server: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriterLabel {
    /// `gateway` (a worker about to sleep) or `thread` (the audit log's own).
    pub by: &'static str,
}

/// Every metric the daemon exports. Cheap handles: clones share the same values.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Gateway requests by server and response status.
    pub requests: Family<RequestLabels, Counter>,
    /// Time to response headers, by server.
    pub latency: Family<ServerLabel, Histogram>,
    /// Response bodies (SSE streams included) still being sent, by server.
    pub active_streams: Family<ServerLabel, Gauge>,
    /// Refused tokens by reason (missing, invalid, expired, insufficient_scope, ...).
    pub auth_failures: Family<ReasonLabel, Counter>,
    pub reloads: Counter,
    pub reload_failures: Counter,
    /// Audit records dropped: the audit queue was full, or the file did not take them.
    pub audit_dropped: Counter,
    /// Audit batches written, by who wrote them.
    pub audit_batches: Family<WriterLabel, Counter>,
    /// Each server's handles into the families above, made on its first request.
    servers: RwLock<HashMap<Box<str>, Arc<ServerMetrics>>>,
}

/// One server's gateway metrics. The families hand out handles that share their values, so
/// keeping them spares every request the label allocations and the family's lock.
#[derive(Debug)]
pub struct ServerMetrics {
    pub latency: Histogram,
    pub active_streams: Gauge,
    server: String,
    requests: Family<RequestLabels, Counter>,
    by_status: Mutex<Vec<(u16, Counter)>>,
}

impl ServerMetrics {
    /// Counts one request answered with `status`.
    pub fn count(&self, status: u16) {
        let mut by_status = self
            .by_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, counter)) = by_status.iter().find(|(known, _)| *known == status) {
            counter.inc();
            return;
        }
        let counter = self
            .requests
            .get_or_create(&RequestLabels {
                server: self.server.clone(),
                status,
            })
            .clone();
        counter.inc();
        by_status.push((status, counter));
    }
}

fn latency_histogram() -> Histogram {
    // 50 us .. ~13 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 19))
}

impl Metrics {
    /// The audit log's counters, shared with these.
    pub fn audit_counters(&self) -> crate::audit::AuditCounters {
        let by = |by| {
            self.audit_batches
                .get_or_create(&WriterLabel { by })
                .clone()
        };
        crate::audit::AuditCounters {
            dropped: self.audit_dropped.clone(),
            batches_by_gateway: by("gateway"),
            batches_by_thread: by("thread"),
        }
    }

    pub fn new(directory: Arc<Directory>) -> Self {
        let mut registry = Registry::with_prefix("mcpd");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<ServerLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let active_streams = Family::<ServerLabel, Gauge>::default();
        let auth_failures = Family::<ReasonLabel, Counter>::default();
        let reloads = Counter::default();
        let reload_failures = Counter::default();
        let audit_dropped = Counter::default();
        let audit_batches = Family::<WriterLabel, Counter>::default();
        registry.register(
            "gateway_requests",
            "Gateway requests by server and status",
            requests.clone(),
        );
        registry.register(
            "gateway_request_duration_seconds",
            "Time from request to upstream response headers",
            latency.clone(),
        );
        registry.register(
            "gateway_active_streams",
            "Response bodies still streaming to clients",
            active_streams.clone(),
        );
        registry.register(
            "gateway_auth_failures",
            "Requests refused by the token checks, by reason",
            auth_failures.clone(),
        );
        registry.register("reloads", "Configuration reloads applied", reloads.clone());
        registry.register(
            "reload_failures",
            "Configuration reloads with at least one file in error",
            reload_failures.clone(),
        );
        registry.register(
            "audit_dropped",
            "Audit records dropped: the audit queue was full, or the audit file could not be written",
            audit_dropped.clone(),
        );
        registry.register(
            "audit_batches",
            "Audit log batches written, by a gateway worker about to sleep or the audit thread",
            audit_batches.clone(),
        );
        registry.register_collector(Box::new(ServerCollector { directory }));
        Metrics {
            registry,
            requests,
            latency,
            active_streams,
            auth_failures,
            reloads,
            reload_failures,
            audit_dropped,
            audit_batches,
            servers: RwLock::default(),
        }
    }

    /// The gateway metrics of server `name`. Only for configured servers: names from
    /// requests would otherwise let clients mint label sets.
    pub fn server(&self, name: &str) -> Arc<ServerMetrics> {
        if let Some(known) = self
            .servers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return known.clone();
        }
        let label = ServerLabel {
            server: name.to_owned(),
        };
        let made = Arc::new(ServerMetrics {
            latency: self.latency.get_or_create(&label).clone(),
            active_streams: self.active_streams.get_or_create(&label).clone(),
            server: name.to_owned(),
            requests: self.requests.clone(),
            by_status: Mutex::default(),
        });
        self.servers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.into())
            .or_insert(made)
            .clone()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Per-server gauges and counters, read from the live directory at each scrape.
#[derive(Debug)]
struct ServerCollector {
    directory: Arc<Directory>,
}

/// Every server state, one `mcpd_server_state` series each (the lifecycle tests walk it too).
pub(crate) const STATES: [ServerState; 8] = [
    ServerState::Disabled,
    ServerState::Stopped,
    ServerState::Starting,
    ServerState::Running,
    ServerState::Backoff,
    ServerState::Stopping,
    ServerState::Failed,
    ServerState::Unreachable,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    server: String,
    state: &'static str,
}

impl Collector for ServerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let servers = self.directory.all();
        let now = SystemTime::now();

        let gauge = ConstGauge::new(0i64);
        let mut state = encoder.encode_descriptor(
            "server_state",
            "1 for the state each server is in, 0 for the others",
            None,
            gauge.metric_type(),
        )?;
        for (name, entry) in servers.iter() {
            let current = entry.status.load().state;
            for candidate in STATES {
                let labels = StateLabels {
                    server: name.clone(),
                    state: candidate.as_str(),
                };
                ConstGauge::new(i64::from(current == candidate))
                    .encode(state.encode_family(&labels)?)?;
            }
        }

        let counter = ConstCounter::new(0u64);
        let mut restarts = encoder.encode_descriptor(
            "server_restarts",
            "Restarts of each server since the daemon started",
            None,
            counter.metric_type(),
        )?;
        for (name, entry) in servers.iter() {
            let labels = ServerLabel {
                server: name.clone(),
            };
            ConstCounter::new(u64::from(entry.status.load().restarts))
                .encode(restarts.encode_family(&labels)?)?;
        }

        let mut uptime = encoder.encode_descriptor(
            "server_uptime_seconds",
            "Seconds since each running server's process was started (0 when not running)",
            None,
            gauge.metric_type(),
        )?;
        for (name, entry) in servers.iter() {
            let status = entry.status.load();
            let seconds = match (status.state, status.started_at) {
                (ServerState::Running, Some(started)) => now
                    .duration_since(started)
                    .unwrap_or(Duration::ZERO)
                    .as_secs_f64(),
                _ => 0.0,
            };
            let labels = ServerLabel {
                server: name.clone(),
            };
            ConstGauge::new(seconds).encode(uptime.encode_family(&labels)?)?;
        }

        let mut tools = encoder.encode_descriptor(
            "server_tools",
            "Tools each server offered at its last probe",
            None,
            gauge.metric_type(),
        )?;
        for (name, entry) in servers.iter() {
            let labels = ServerLabel {
                server: name.clone(),
            };
            let count = i64::try_from(entry.status.load().tools.len()).unwrap_or(i64::MAX);
            ConstGauge::new(count).encode(tools.encode_family(&labels)?)?;
        }

        let mut probe = encoder.encode_descriptor(
            "server_probe_seconds",
            "How long each server's last readiness or liveness probe took (absent before the first)",
            None,
            gauge.metric_type(),
        )?;
        for (name, entry) in servers.iter() {
            let Some(took) = entry.last_probe() else {
                continue;
            };
            let labels = ServerLabel {
                server: name.clone(),
            };
            ConstGauge::new(took.as_secs_f64()).encode(probe.encode_family(&labels)?)?;
        }
        encode_usage(&mut encoder, &servers)
    }
}

/// Resource usage of each server with a process, as last sampled by the supervisor;
/// OOM kills for every server.
fn encode_usage(
    encoder: &mut DescriptorEncoder,
    servers: &std::collections::BTreeMap<String, Arc<crate::directory::ServerEntry>>,
) -> Result<(), std::fmt::Error> {
    let running = |entry: &crate::directory::ServerEntry| entry.status.load().pid.is_some();
    type Read = fn(&crate::directory::ServerUsage) -> f64;
    let gauges: [(&str, &str, Read); 2] = [
        (
            "server_memory_bytes",
            "Memory each server's processes use (cgroup, else resident memory from /proc)",
            |u| u.memory_bytes as f64,
        ),
        (
            "server_tasks",
            "Processes and threads of each server",
            |u| u.tasks as f64,
        ),
    ];
    for (name, help, value) in gauges {
        let mut family =
            encoder.encode_descriptor(name, help, None, ConstGauge::new(0.0).metric_type())?;
        for (server, entry) in servers.iter().filter(|(_, e)| running(e)) {
            let labels = ServerLabel {
                server: server.clone(),
            };
            ConstGauge::new(value(&entry.usage.load())).encode(family.encode_family(&labels)?)?;
        }
    }
    let mut cpu = encoder.encode_descriptor(
        "server_cpu_seconds",
        "CPU time of each server's current process and its children",
        None,
        ConstCounter::new(0.0).metric_type(),
    )?;
    for (server, entry) in servers.iter().filter(|(_, e)| running(e)) {
        let labels = ServerLabel {
            server: server.clone(),
        };
        ConstCounter::new(entry.usage.load().cpu_seconds).encode(cpu.encode_family(&labels)?)?;
    }
    let mut oom = encoder.encode_descriptor(
        "server_oom_kills",
        "Processes of each server the OOM killer killed since the daemon started",
        None,
        ConstCounter::new(0u64).metric_type(),
    )?;
    for (server, entry) in servers.iter() {
        let labels = ServerLabel {
            server: server.clone(),
        };
        ConstCounter::new(entry.usage.load().oom_kills).encode(oom.encode_family(&labels)?)?;
    }
    Ok(())
}
