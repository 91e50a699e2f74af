//! Why a probe failed, and how a reply that is not the expected result becomes that reason.

use std::io;
use std::time::Duration;

use super::ProbeClient;
use super::http::{HttpError, Outcome, Reply};

/// Why a probe failed; the text goes to `mcpctl status` (LAST-ERROR) and the log.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect to 127.0.0.1:{port}: {source}")]
    Connect {
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error("no answer from 127.0.0.1:{port} within {timeout:?}")]
    Timeout { port: u16, timeout: Duration },
    #[error("{method} to 127.0.0.1:{port}: {source}")]
    Http {
        port: u16,
        method: &'static str,
        #[source]
        source: HttpError,
    },
    #[error("{method} to 127.0.0.1:{port}: HTTP {status}{}", detail(.body))]
    Status {
        port: u16,
        method: &'static str,
        status: u16,
        body: String,
    },
    #[error("{method} to 127.0.0.1:{port}: JSON-RPC error {code}: {message}")]
    Rpc {
        port: u16,
        method: &'static str,
        code: i64,
        message: String,
    },
    #[error("{method} to 127.0.0.1:{port}: {reason}")]
    Protocol {
        port: u16,
        method: &'static str,
        reason: String,
    },
    #[error("{0} (and server/discover failed: {1})")]
    BothFailed(Box<ProbeError>, Box<ProbeError>),
}

fn detail(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl ProbeClient {
    /// The result of `reply`, with the session id it carried.
    pub(super) fn result<T>(
        &self,
        reply: Reply<T>,
        method: &'static str,
    ) -> Result<(T, Option<Box<str>>), ProbeError> {
        match reply.outcome {
            Outcome::Result(result) => Ok((result, reply.session_id)),
            outcome => Err(self.refused(reply.status, outcome, method)),
        }
    }

    pub(super) fn refused<T>(
        &self,
        status: u16,
        outcome: Outcome<T>,
        method: &'static str,
    ) -> ProbeError {
        let port = self.port;
        match outcome {
            Outcome::Error(error) => ProbeError::Rpc {
                port,
                method,
                code: error.code,
                message: error.message,
            },
            Outcome::Status(body) => ProbeError::Status {
                port,
                method,
                status,
                body,
            },
            Outcome::Accepted if (200..300).contains(&status) => ProbeError::Protocol {
                port,
                method,
                reason: format!("HTTP {status} with an empty body"),
            },
            Outcome::Accepted | Outcome::Result(_) => ProbeError::Status {
                port,
                method,
                status,
                body: String::new(),
            },
        }
    }
}
