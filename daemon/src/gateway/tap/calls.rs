//! The calls a tap follows (the first inline, so a single call costs no list): each call's
//! pending audit record (the gateway's compact
//! [`CallEntry`], or a whole [`AuditRecord`] for virtual servers), how an answer is matched to
//! it by id, its outcome, and its writing when the answer ends.

use serde_json::Value;

use mcpd_protocol::AuditRecord;

use crate::audit::{AuditLog, CallEntry};

/// The calls of one request that a tap follows: the first held inline (a request is one
/// call but for a batch, and then this costs no allocation), the rest of a batch in a vector.
#[derive(Default)]
pub struct Calls {
    first: Option<CallAudit>,
    /// Empty unless `first` is there.
    rest: Vec<CallAudit>,
}

impl Calls {
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &CallAudit> {
        self.first.iter().chain(&self.rest)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut CallAudit> {
        self.first.iter_mut().chain(&mut self.rest)
    }
}

impl IntoIterator for Calls {
    type Item = CallAudit;
    type IntoIter =
        std::iter::Chain<std::option::IntoIter<CallAudit>, std::vec::IntoIter<CallAudit>>;

    fn into_iter(self) -> Self::IntoIter {
        self.first.into_iter().chain(self.rest)
    }
}

impl FromIterator<CallAudit> for Calls {
    fn from_iter<I: IntoIterator<Item = CallAudit>>(calls: I) -> Self {
        let mut calls = calls.into_iter();
        let first = calls.next();
        // Collecting nothing allocates nothing.
        let rest = if first.is_some() {
            calls.collect()
        } else {
            Vec::new()
        };
        Calls { first, rest }
    }
}

impl From<CallAudit> for Calls {
    fn from(call: CallAudit) -> Self {
        Calls {
            first: Some(call),
            rest: Vec::new(),
        }
    }
}

impl From<Vec<CallAudit>> for Calls {
    fn from(calls: Vec<CallAudit>) -> Self {
        calls.into_iter().collect()
    }
}

/// A call whose outcome goes into its record.
pub struct CallAudit {
    pub(super) record: Pending,
    /// Its answer was seen.
    pub(super) answered: bool,
}

/// A call's record until the answer ends: the gateway's compact one, or a whole record
/// (virtual servers).
pub(super) enum Pending {
    Call(CallEntry),
    Record(Box<AuditRecord>),
}

impl CallAudit {
    pub fn new(record: impl Into<CallAudit>) -> Self {
        record.into()
    }

    /// The call's JSON-RPC id as the caller wrote it.
    fn id(&self) -> Option<&str> {
        match &self.record {
            Pending::Call(call) => call.names.request_id(),
            Pending::Record(record) => record.request_id.as_deref(),
        }
    }

    /// Whether `answer` (an id's JSON text) is this call's id: the same text, or the same
    /// JSON value written differently (`"a"` and `"\u0061"`).
    pub(super) fn is_answered_by(&self, answer: &[u8]) -> bool {
        let Some(id) = self.id() else {
            return false;
        };
        id.as_bytes() == answer
            || matches!(
                (serde_json::from_str::<Value>(id), serde_json::from_slice::<Value>(answer)),
                (Ok(a), Ok(b)) if a == b
            )
    }

    pub(super) fn settle(&mut self, error_code: Option<i64>, is_error: Option<bool>) {
        match &mut self.record {
            Pending::Call(call) => {
                call.error_code = error_code;
                call.is_error = is_error;
            }
            Pending::Record(record) => {
                record.error_code = error_code;
                record.is_error = is_error;
            }
        }
        self.answered = true;
    }

    pub(super) fn write(self, audit: &AuditLog, status: u16, duration: std::time::Duration) {
        match self.record {
            Pending::Call(mut call) => {
                call.status = status;
                call.duration = duration;
                audit.record_call(call);
            }
            Pending::Record(mut record) => {
                record.status = status;
                record.duration_ms = duration.as_secs_f64() * 1000.0;
                audit.record(&record);
            }
        }
    }
}

impl From<CallEntry> for CallAudit {
    fn from(call: CallEntry) -> Self {
        CallAudit {
            record: Pending::Call(call),
            answered: false,
        }
    }
}

impl From<AuditRecord> for CallAudit {
    fn from(record: AuditRecord) -> Self {
        CallAudit {
            record: Pending::Record(Box::new(record)),
            answered: false,
        }
    }
}
