//! `toggle_late`, a tool that changes the server's tool list at run time: it adds the tool
//! `late` (acting like `echo`), or removes it when present, and sends
//! `notifications/tools/list_changed` to the caller (a stateless request's own stream, or the
//! calling session's) and to every other open session (on its standalone stream), as a
//! server whose tools changed for everyone does. Offered only with `MCP_ECHO_TOOL_CHANGES=1`,
//! for tests of clients and gateways that must follow a server's own `list_changed`. The tool
//! list is the process's: every session and every stateless request sees `late` once it is
//! added.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::service::{Peer, RequestContext};
use rmcp::{RoleServer, tool, tool_router};

use crate::server::Echo;

/// Whether `late` is offered now.
static LATE: AtomicBool = AtomicBool::new(false);

/// The sessions told of changes (those whose transport closed are dropped at the next change).
static SESSIONS: Mutex<Vec<Peer<RoleServer>>> = Mutex::new(Vec::new());

/// Notes a session that completed its handshake.
pub fn session_opened(peer: Peer<RoleServer>) {
    SESSIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(peer);
}

/// The name of the tool added and removed.
pub const LATE_TOOL: &str = "late";

/// Adds `late` to `router` when it is offered now.
pub fn with_late(router: &ToolRouter<Echo>) -> Option<ToolRouter<Echo>> {
    if !LATE.load(Ordering::Relaxed) {
        return None;
    }
    let mut router = router.clone();
    let mut late = router.map.get("echo")?.clone();
    late.attr.name = LATE_TOOL.into();
    late.attr.description = Some("Added at run time by toggle_late; acts like echo".into());
    router.add_route(late);
    Some(router)
}

#[tool_router(router = changes_router, vis = "pub(crate)")]
impl Echo {
    #[tool(
        description = "Adds the tool `late` (or removes it when present) and sends notifications/tools/list_changed"
    )]
    async fn toggle_late(&self, ctx: RequestContext<RoleServer>) -> String {
        let now = !LATE.fetch_xor(true, Ordering::Relaxed);
        if let Err(error) = ctx.peer.notify_tool_list_changed().await {
            tracing::warn!(%error, "could not send notifications/tools/list_changed");
        }
        let sessions: Vec<Peer<RoleServer>> = {
            let mut sessions = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
            sessions.retain(|peer| !peer.is_transport_closed());
            sessions.clone()
        };
        for peer in sessions {
            // A session without a listening stream may not take it; that is its loss.
            let _ = peer.notify_tool_list_changed().await;
        }
        if now {
            format!("added {LATE_TOOL}")
        } else {
            format!("removed {LATE_TOOL}")
        }
    }
}
