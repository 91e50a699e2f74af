//! What the accept loops (gateway and control socket) do when `accept` fails: say plainly
//! when it is the open-file limit, log at most one line per interval (with how many failures
//! it stood for), and tell the loop whether to pause before trying again.

use std::io;
use std::time::{Duration, Instant};

/// At most one log line per this interval and listener.
pub const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// How long a loop pauses after a failure caused by exhausted resources, so it does not spin.
pub const PAUSE: Duration = Duration::from_millis(50);

/// Rate-limits the accept-failure warnings of one listener.
#[derive(Debug)]
pub struct AcceptErrors {
    listener: &'static str,
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl AcceptErrors {
    pub fn new(listener: &'static str) -> Self {
        AcceptErrors {
            listener,
            last_logged: None,
            suppressed: 0,
        }
    }

    /// Records one failure, logs it unless a line went out within [`LOG_INTERVAL`], and
    /// returns true when the loop should pause for [`PAUSE`] (the failure was a lack of
    /// resources, not one client's aborted connection).
    pub fn failed(&mut self, err: &io::Error, now: Instant) -> bool {
        let errno = err.raw_os_error();
        let fd_limit = matches!(errno, Some(libc::EMFILE | libc::ENFILE));
        let resources = fd_limit || matches!(errno, Some(libc::ENOBUFS | libc::ENOMEM));
        if self
            .last_logged
            .is_some_and(|at| now.duration_since(at) < LOG_INTERVAL)
        {
            self.suppressed += 1;
            return resources;
        }
        let listener = self.listener;
        let suppressed = self.suppressed;
        if fd_limit {
            tracing::warn!(listener, cause = %err, suppressed,
                "cannot accept connections: out of file descriptors (the open-file limit; raise \
                 LimitNOFILE= in the unit or `ulimit -n`); open connections are still served");
        } else {
            tracing::warn!(listener, cause = %err, suppressed, "accepting a connection failed");
        }
        self.last_logged = Some(now);
        self.suppressed = 0;
        resources
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_a_pause_only_for_resources() {
        let mut errors = AcceptErrors::new("gateway");
        let start = Instant::now();
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(errors.failed(&emfile, start));
        assert_eq!(errors.last_logged, Some(start));
        for i in 1..100 {
            assert!(errors.failed(&emfile, start + Duration::from_millis(i)));
        }
        assert_eq!(errors.suppressed, 99);
        let later = start + LOG_INTERVAL;
        let aborted = io::Error::from_raw_os_error(libc::ECONNABORTED);
        assert!(!errors.failed(&aborted, later));
        assert_eq!((errors.last_logged, errors.suppressed), (Some(later), 0));
    }
}
