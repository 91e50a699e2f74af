//! A member said its lists changed (`notifications/tools/list_changed`, or of prompts or
//! resources, on a stream mcpd reads for a virtual server: a call's answer, a subscription's
//! member stream): its probe lists them at its next liveness probe, brought forward to the
//! next probe step, and the virtual servers' listeners see the change from the directory.
//! Many such notifications before that probe cost one listing.

use std::sync::atomic::Ordering;

use crate::directory::ServerEntry;

pub fn member_lists_changed(entry: &ServerEntry) {
    if !entry.relist.swap(true, Ordering::Relaxed) {
        entry.check_now.notify_one();
    }
}
