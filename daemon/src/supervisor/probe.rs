//! Readiness and liveness probes: what a probe is ([`Prober`] makes a [`Probe`] per process;
//! MCP by default) and the two loops that run it against a server's port and report back to
//! its task.
//!
//! A probe belongs to one process generation: readiness hands it to liveness (so the
//! connection and session readiness opened are the ones liveness keeps using), and a restart
//! makes a new one.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::directory::ToolInfo;
use crate::offers::Offers;
use crate::probe_client::ProbeClient;

pub type ProbeFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Makes the probe of one process of a server on `127.0.0.1:<port>` answering at `path`.
pub trait Prober: Send + Sync {
    fn probe(&self, port: u16, path: &str) -> Box<dyn Probe>;
}

/// Probes one process; may keep a connection between calls.
pub trait Probe: Send + Debug {
    /// Readiness: the server answers and lists its tools.
    fn ready(&mut self, timeout: Duration) -> ProbeFuture<'_, Vec<ToolInfo>>;
    /// Liveness: a light request; `Some(tools)` when this probe also listed the tools.
    fn alive(&mut self, timeout: Duration) -> ProbeFuture<'_, Option<Vec<ToolInfo>>>;
    /// The prompts and resources listed with the tools by the last `ready` or tool-listing
    /// `alive`, once (`None`: not listed, or the listing failed).
    fn take_offers(&mut self) -> Option<Offers> {
        None
    }
    /// The next `alive` lists the tools (and the rest), when this probe lists them at all.
    fn relist_next(&mut self) {}
}

/// A probe whose next liveness probe lists the lists when `relist` is set (the server said
/// they changed: `ServerEntry::relist`).
#[derive(Debug)]
pub struct Relisting {
    pub inner: Box<dyn Probe>,
    pub relist: Arc<std::sync::atomic::AtomicBool>,
}

impl Probe for Relisting {
    fn ready(&mut self, timeout: Duration) -> ProbeFuture<'_, Vec<ToolInfo>> {
        self.inner.ready(timeout)
    }

    fn alive(&mut self, timeout: Duration) -> ProbeFuture<'_, Option<Vec<ToolInfo>>> {
        if self
            .relist
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.inner.relist_next();
        }
        self.inner.alive(timeout)
    }

    fn take_offers(&mut self) -> Option<Offers> {
        self.inner.take_offers()
    }
}

/// The real probe: the light MCP client of [`crate::probe_client`].
#[derive(Debug, Clone, Copy, Default)]
pub struct McpProber;

/// The client capabilities the probe declares: those of a client that takes sampling and
/// elicitation, so a server offering some tools only to such clients (the official
/// `server-everything` does) lists them, and a virtual server, whose member sessions take
/// them for their callers, can offer them. The probe never calls a tool, so it is never
/// asked. Not `roots`: a server may ask for them as soon as the session opens.
pub const PROBE_CAPABILITIES: &str = r#"{"sampling":{},"elicitation":{}}"#;

impl Prober for McpProber {
    fn probe(&self, port: u16, path: &str) -> Box<dyn Probe> {
        Box::new(ProbeClient::new(port, path).with_capabilities(PROBE_CAPABILITIES))
    }
}

impl Probe for ProbeClient {
    fn ready(&mut self, timeout: Duration) -> ProbeFuture<'_, Vec<ToolInfo>> {
        Box::pin(async move {
            ProbeClient::ready(self, timeout)
                .await
                .map_err(|error| error.to_string())
        })
    }

    fn alive(&mut self, timeout: Duration) -> ProbeFuture<'_, Option<Vec<ToolInfo>>> {
        Box::pin(async move {
            ProbeClient::alive(self, timeout)
                .await
                .map_err(|error| error.to_string())
        })
    }

    fn take_offers(&mut self) -> Option<Offers> {
        ProbeClient::take_offers(self)
    }

    fn relist_next(&mut self) {
        ProbeClient::relist_next(self);
    }
}

/// A probe that only checks that the port accepts a TCP connection (no tools). For servers
/// that do not speak MCP yet, and for tests with plain fixture processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpProber;

impl Prober for TcpProber {
    fn probe(&self, port: u16, _path: &str) -> Box<dyn Probe> {
        Box::new(TcpProbe { port })
    }
}

#[derive(Debug)]
struct TcpProbe {
    port: u16,
}

impl TcpProbe {
    async fn connect(&self, timeout: Duration) -> Result<(), String> {
        let port = self.port;
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(("127.0.0.1", port)))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(format!("cannot connect to 127.0.0.1:{port}: {err}")),
            Err(_) => Err(format!(
                "no answer from 127.0.0.1:{port} within {timeout:?}"
            )),
        }
    }
}

impl Probe for TcpProbe {
    fn ready(&mut self, timeout: Duration) -> ProbeFuture<'_, Vec<ToolInfo>> {
        Box::pin(async move { self.connect(timeout).await.map(|()| Vec::new()) })
    }

    fn alive(&mut self, timeout: Duration) -> ProbeFuture<'_, Option<Vec<ToolInfo>>> {
        Box::pin(async move { self.connect(timeout).await.map(|()| None) })
    }
}

/// What a probe loop reports.
#[derive(Debug)]
pub enum ProbeReport {
    /// Ready, with the tools and the probe, for liveness to go on with.
    Ready {
        tools: Vec<ToolInfo>,
        probe: Box<dyn Probe>,
    },
    /// Alive; `Some` when the tools were listed again (and the prompts and resources, when
    /// they were listed too).
    Alive(Option<Vec<ToolInfo>>, Option<Offers>),
    NotAlive(String),
}

/// The longest pause between two readiness probes. A server is seen ready at most this long
/// after it is: with 1000 servers starting at once, the last of them sets the time to all
/// running, and the 500 ms this was added up to that much to it (1000 servers: 2.15 s to all
/// running with 500 ms, 2.02 s with 200 ms, 1.88-1.90 s with 100 ms). A probe of a port nobody
/// listens on yet is refused at once, so probing more often costs little.
const READINESS_RETRY_CAP: Duration = Duration::from_millis(100);

/// Probes until the server answers, retrying quickly at first (`first_retry`, doubling up to
/// [`READINESS_RETRY_CAP`]); reports `Ready` once, with how long that probe took. The start
/// timeout is the caller's.
pub async fn readiness(
    mut probe: Box<dyn Probe>,
    timeout: Duration,
    first_retry: Duration,
    report: impl Fn(ProbeReport, Duration) -> bool + Send,
) {
    let mut retry = first_retry;
    loop {
        let began = Instant::now();
        if let Ok(tools) = probe.ready(timeout).await {
            report(ProbeReport::Ready { tools, probe }, began.elapsed());
            return;
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(READINESS_RETRY_CAP).max(retry);
    }
}

/// Liveness probes start on a grid shared by every server: the probes due in one step go out
/// on one wake-up of the runtime instead of one each. With 1000 servers probed every 10 s
/// that is 50 probes per wake-up, 2 wake-ups a second. A server's step is the longest of
/// these that fits four times in its interval (none for shorter intervals), and a probe
/// goes out on the last grid point at or before it is due: never later than the interval.
pub const PROBE_STEPS: [Duration; 2] = [Duration::from_millis(500), Duration::from_millis(100)];

/// The grid a wake-up of `check_now` waits for: a flood of them costs one probe per step.
const CHECK_NOW_STEP: Duration = Duration::from_millis(100);

/// The grid step of a server probed every `interval` (zero: no grid).
fn step_for(interval: Duration) -> Duration {
    PROBE_STEPS
        .into_iter()
        .find(|step| *step * 4 <= interval)
        .unwrap_or(Duration::ZERO)
}

/// The grid point of `step` at or after `at` (`up`), or at or before it; `at` itself when
/// `step` is zero.
fn on_grid(at: Instant, step: Duration, up: bool) -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    let step = step.as_nanos();
    if step == 0 {
        return at;
    }
    let since = at.saturating_duration_since(origin).as_nanos();
    let steps = if up {
        since.div_ceil(step)
    } else {
        since / step
    };
    origin + Duration::from_nanos(u64::try_from(steps * step).unwrap_or(u64::MAX))
}

/// Probes every `interval` (the first one after `first_delay`, spread by the caller so many
/// servers do not probe in lockstep), each time on the last point of its grid
/// ([`PROBE_STEPS`]) before it is due, and reports every result with how long it took. A
/// wake-up of `check_now` (the gateway found the port refusing connections) brings the next
/// probe forward to the next 100 ms grid point, so a flood of such wake-ups costs at most one
/// probe per step.
pub async fn liveness(
    mut probe: Box<dyn Probe>,
    interval: Duration,
    timeout: Duration,
    first_delay: Duration,
    check_now: Arc<Notify>,
    report: impl Fn(ProbeReport, Duration) -> bool + Send,
) {
    let step = step_for(interval);
    let next = |due: Instant| {
        let check_now = &check_now;
        async move {
            tokio::select! {
                () = tokio::time::sleep_until(on_grid(due, step, false)) => {}
                () = check_now.notified() => {
                    tokio::time::sleep_until(on_grid(Instant::now(), CHECK_NOW_STEP, true)).await;
                }
            }
        }
    };
    next(Instant::now() + first_delay.max(step)).await;
    loop {
        let began = Instant::now();
        let result = match probe.alive(timeout).await {
            Ok(tools) => ProbeReport::Alive(tools, probe.take_offers()),
            Err(reason) => ProbeReport::NotAlive(reason),
        };
        if !report(result, began.elapsed()) {
            return;
        }
        next(began + interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_gets_the_longest_step_that_fits_four_times_in_its_interval() {
        assert_eq!(step_for(Duration::from_secs(10)), PROBE_STEPS[0]);
        assert_eq!(step_for(Duration::from_secs(2)), PROBE_STEPS[0]);
        assert_eq!(step_for(Duration::from_millis(1999)), PROBE_STEPS[1]);
        assert_eq!(step_for(Duration::from_millis(400)), PROBE_STEPS[1]);
        assert_eq!(step_for(Duration::from_millis(200)), Duration::ZERO);
    }

    #[test]
    fn a_probe_goes_out_on_the_last_grid_point_before_it_is_due_never_after() {
        let now = Instant::now();
        for interval in [
            Duration::from_secs(10),
            Duration::from_secs(2),
            Duration::from_millis(500),
        ] {
            let step = step_for(interval);
            for offset_ms in [0u64, 1, 99, 250, 499, 777] {
                let began = now + Duration::from_millis(offset_ms);
                let due = began + interval;
                let at = on_grid(due, step, false);
                assert!(at <= due, "{interval:?} {offset_ms}");
                assert!(
                    at + step > due || step.is_zero(),
                    "{interval:?} {offset_ms}"
                );
                assert!(at >= began + interval * 3 / 4, "{interval:?} {offset_ms}");
                let up = on_grid(due, step, true);
                assert!(up >= due && up < due + step, "{interval:?} {offset_ms}");
            }
        }
        assert_eq!(on_grid(now, Duration::ZERO, false), now);
    }
}
