//! The calls up on this gateway, by Call-ID: how the gateway tells a line that its session
//! ended elsewhere or that the gateway shuts down.

use super::CallContext;
use crate::login::{AuditEvent, EndedBy};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tracing::warn;

/// What the gateway tells a call from outside.
#[derive(Debug, Clone, Copy)]
pub enum LineEvent {
    /// Its session ended elsewhere.
    SessionEnded { by: EndedBy },
    /// The gateway shuts down.
    Shutdown,
}

/// The calls up on this gateway, by Call-ID.
pub type Lines = Mutex<HashMap<String, tokio::sync::mpsc::Sender<LineEvent>>>;

/// A call's entry in `Lines`, removed when the call task ends.
pub(super) struct LineRegistration<'a> {
    ctx: &'a CallContext,
    call_id: String,
}

impl<'a> LineRegistration<'a> {
    pub(super) fn new(
        ctx: &'a CallContext,
        call_id: &str,
        tx: tokio::sync::mpsc::Sender<LineEvent>,
    ) -> Self {
        if let Ok(mut lines) = ctx.lines.lock() {
            lines.insert(call_id.to_string(), tx);
        }
        LineRegistration {
            ctx,
            call_id: call_id.to_string(),
        }
    }
}

impl Drop for LineRegistration<'_> {
    fn drop(&mut self) {
        if let Ok(mut lines) = self.ctx.lines.lock() {
            lines.remove(&self.call_id);
        }
    }
}

/// Tells every call up that the gateway shuts down.
pub fn shut_down_lines(ctx: &CallContext) {
    if let Ok(lines) = ctx.lines.lock() {
        for line in lines.values() {
            line.try_send(LineEvent::Shutdown).ok();
        }
    }
}

/// Tells the stay lines of this gateway when their session ended elsewhere (a log on at
/// another station, a station taken over, an agent removed, a force logout from the API or the
/// CLI): they play the drop prompt and hang up. The audit log's `logout` entries are the
/// source, so an end written by another process reaches the line too.
pub async fn drop_ended_lines(
    ctx: Arc<CallContext>,
    mut events: tokio::sync::broadcast::Receiver<Arc<crate::store::AuditRecord>>,
) {
    loop {
        match events.recv().await {
            Ok(e) => {
                if e.event != AuditEvent::Logout.as_str() {
                    continue;
                }
                let Some(call_id) = e.call_id.as_deref() else {
                    continue;
                };
                let line = ctx.lines.lock().ok().and_then(|l| l.get(call_id).cloned());
                if let Some(line) = line {
                    let by = EndedBy::from_reason(e.reason.as_deref().unwrap_or(""));
                    line.try_send(LineEvent::SessionEnded { by }).ok();
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    missed = n,
                    "session-ended events were missed; some stay lines may not be dropped"
                );
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
}
