//! Why a probe failed, and how a reply that is not the expected result becomes that reason.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::ProbeClient;
use super::http::{HttpError, Outcome, Reply};

/// Why a probe failed; the text goes to `mcpctl status` (LAST-ERROR) and the log.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot connect to {at}: {source}")]
    Connect {
        at: Arc<str>,
        #[source]
        source: io::Error,
    },
    #[error("no answer from {at} within {timeout:?}")]
    Timeout { at: Arc<str>, timeout: Duration },
    #[error("{method} to {at}: {source}")]
    Http {
        at: Arc<str>,
        method: &'static str,
        #[source]
        source: HttpError,
    },
    #[error("{method} to {at}: HTTP {status}{}", detail(.body))]
    Status {
        at: Arc<str>,
        method: &'static str,
        status: u16,
        body: String,
    },
    #[error("{method} to {at}: JSON-RPC error {code}: {message}")]
    Rpc {
        at: Arc<str>,
        method: &'static str,
        code: i64,
        message: String,
    },
    #[error("{method} to {at}: {reason}")]
    Protocol {
        at: Arc<str>,
        method: &'static str,
        reason: String,
    },
    /// A remote server could not be reached (TCP or TLS).
    #[error("{0}")]
    Unreachable(#[from] crate::remote::ConnectError),
    #[error("{0} (and server/discover failed: {1})")]
    BothFailed(Box<ProbeError>, Box<ProbeError>),
}

impl ProbeError {
    /// The server could not be reached or went quiet: asking it another way will not help.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ProbeError::Connect { .. } | ProbeError::Timeout { .. } | ProbeError::Unreachable(_)
        )
    }
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
        let at = self.at.clone();
        match outcome {
            Outcome::Error(error) => ProbeError::Rpc {
                at,
                method,
                code: error.code,
                message: error.message,
            },
            Outcome::Status(body) => ProbeError::Status {
                at,
                method,
                status,
                body,
            },
            Outcome::Accepted if (200..300).contains(&status) => ProbeError::Protocol {
                at,
                method,
                reason: format!("HTTP {status} with an empty body"),
            },
            Outcome::Accepted | Outcome::Result(_) => ProbeError::Status {
                at,
                method,
                status,
                body: String::new(),
            },
        }
    }
}
