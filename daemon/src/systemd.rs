//! systemd integration: `sd_notify` messages (READY, RELOADING, STATUS, WATCHDOG, STOPPING).
//!
//! Every call is a no-op when `NOTIFY_SOCKET` is not set, so the daemon behaves the same
//! outside systemd. Failures to notify are logged once per kind and never fatal.

use std::time::Duration;

use sd_notify::NotifyState;

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
