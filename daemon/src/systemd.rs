//! systemd integration: `sd_notify` messages (READY, RELOADING, STATUS, WATCHDOG, STOPPING),
//! and the `STATUS=` line that follows the servers' states.
//!
//! Every call is a no-op when `NOTIFY_SOCKET` is not set, so the daemon behaves the same
//! outside systemd. Failures to notify are logged once per kind and never fatal.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::directory::{Directory, ServerState};

/// The shortest time between two `STATUS=` updates: a burst of state changes (every server
/// starting at once, a crash loop) is one update.
pub const STATUS_INTERVAL: Duration = Duration::from_millis(250);

/// The order in which states other than running are counted in the status line.
const COUNTED: [ServerState; 7] = [
    ServerState::Starting,
    ServerState::Backoff,
    ServerState::Failed,
    ServerState::Unreachable,
    ServerState::Stopping,
    ServerState::Stopped,
    ServerState::Disabled,
];

/// The status line for servers in `states` and `config_errors` configuration errors, e.g.
/// `3/4 servers running, 1 backoff`.
pub fn status_line(states: impl IntoIterator<Item = ServerState>, config_errors: usize) -> String {
    let states: Vec<ServerState> = states.into_iter().collect();
    let count = |wanted: ServerState| states.iter().filter(|&&state| state == wanted).count();
    let mut line = format!(
        "{}/{} servers running",
        count(ServerState::Running),
        states.len()
    );
    for state in COUNTED {
        let n = count(state);
        if n > 0 {
            line.push_str(&format!(", {n} {}", state.as_str()));
        }
    }
    match config_errors {
        0 => {}
        1 => line.push_str(", 1 configuration error"),
        n => line.push_str(&format!(", {n} configuration errors")),
    }
    line
}

/// The status line of `directory` now.
pub fn directory_status(directory: &Directory) -> String {
    let all = directory.all();
    status_line(
        all.values().map(|entry| entry.status.load().state),
        directory.config_errors().len(),
    )
}

/// Calls `publish` with the directory's status line whenever it changes, at most once per
/// `interval`; runs until aborted. The first line is published at once.
pub async fn follow_status(
    directory: std::sync::Arc<Directory>,
    interval: Duration,
    mut publish: impl FnMut(&str),
) {
    let mut changes = directory.subscribe();
    let mut last = String::new();
    loop {
        changes.mark_unchanged();
        let line = directory_status(&directory);
        if line != last {
            publish(&line);
            last = line;
        }
        tokio::time::sleep(interval).await;
        // Changes made during the sleep are seen here at once; otherwise wait for the next.
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Sends state changes to the service manager.
#[derive(Debug, Clone, Copy, Default)]
pub struct Notifier;

impl Notifier {
    /// `READY=1` with a status line: configuration loaded, gateway and socket bound.
    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `RELOADING=1` (with `MONOTONIC_USEC`, as systemd's reload protocol asks).
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now]),
            Err(_) => send(&[NotifyState::Reloading]),
        }
    }

    /// `STATUS=...`, shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        send(&[NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1`: the main loop is alive.
    pub fn watchdog(&self) {
        send(&[NotifyState::Watchdog]);
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&self) {
        send(&[
            NotifyState::Stopping,
            NotifyState::Status("stopping servers"),
        ]);
    }

    /// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, if the watchdog is enabled
    /// for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        sd_notify::watchdog_enabled().map(|usec| usec / 2)
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::config::test_builder::server_running;
    use crate::directory::{ServerEntry, ServerStatus};

    #[test]
    fn the_line_counts_running_servers_then_each_other_state() {
        use ServerState::*;
        assert_eq!(status_line([], 0), "0/0 servers running");
        assert_eq!(
            status_line([Running, Running, Running, Backoff], 0),
            "3/4 servers running, 1 backoff"
        );
        assert_eq!(
            status_line(
                [
                    Disabled, Failed, Starting, Running, Stopped, Starting, Stopping
                ],
                1
            ),
            "1/7 servers running, 2 starting, 1 failed, 1 stopping, 1 stopped, 1 disabled, \
             1 configuration error"
        );
        assert_eq!(
            status_line([Running], 3),
            "1/1 servers running, 3 configuration errors"
        );
    }

    fn directory_of(states: &[ServerState]) -> Arc<Directory> {
        let directory = Arc::new(Directory::new());
        set_states(&directory, states);
        directory
    }

    fn set_states(directory: &Directory, states: &[ServerState]) {
        let entries: BTreeMap<String, Arc<ServerEntry>> = states
            .iter()
            .enumerate()
            .map(|(i, &state)| {
                let name = format!("s{i}");
                let config = server_running(&name, "/bin/true");
                (
                    name,
                    Arc::new(ServerEntry::new(config, ServerStatus::new(state))),
                )
            })
            .collect();
        directory.replace(entries);
    }

    fn set_state(directory: &Directory, name: &str, state: ServerState) {
        let entry = directory.get(name).expect("entry");
        entry.status.store(Arc::new(ServerStatus::new(state)));
        directory.state_changed();
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_changes_is_one_update_and_the_last_state_is_always_published() {
        use ServerState::*;
        let directory = directory_of(&[Starting, Starting]);
        let published = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = published.clone();
        let follower = tokio::spawn(follow_status(
            directory.clone(),
            STATUS_INTERVAL,
            move |line| sink.lock().unwrap().push(line.to_owned()),
        ));
        tokio::task::yield_now().await;
        assert_eq!(
            *published.lock().unwrap(),
            ["0/2 servers running, 2 starting"]
        );

        // A hundred changes within one interval: one update, with the final counts.
        for i in 0..100 {
            let state = if i % 2 == 0 { Running } else { Backoff };
            set_state(&directory, "s0", state);
            set_state(&directory, "s1", state);
        }
        set_state(&directory, "s0", Running);
        set_state(&directory, "s1", Backoff);
        tokio::time::sleep(STATUS_INTERVAL * 3).await;
        assert_eq!(
            *published.lock().unwrap(),
            [
                "0/2 servers running, 2 starting",
                "1/2 servers running, 1 backoff"
            ]
        );

        // A change long after the last one is published, and no sooner than the interval.
        set_state(&directory, "s1", Running);
        tokio::time::sleep(STATUS_INTERVAL * 2).await;
        assert_eq!(
            published.lock().unwrap().last().unwrap(),
            "2/2 servers running"
        );
        assert_eq!(published.lock().unwrap().len(), 3);

        // A change that returns to the published counts sends nothing.
        set_state(&directory, "s1", Backoff);
        set_state(&directory, "s1", Running);
        tokio::time::sleep(STATUS_INTERVAL * 2).await;
        assert_eq!(published.lock().unwrap().len(), 3);

        // New servers count too.
        set_states(&directory, &[Running, Running, Failed]);
        tokio::time::sleep(STATUS_INTERVAL * 2).await;
        assert_eq!(
            published.lock().unwrap().last().unwrap(),
            "2/3 servers running, 1 failed"
        );

        follower.abort();
    }
}
