//! The gateway's events: every audit entry, read back from the store in id order by one
//! follower task and handed to whoever listens (the event stream, webhooks, metrics, the stay
//! lines of this gateway). Because the audit log is the source, an event written by any process
//! on the store (the CLI, another gateway on the same database) reaches them too, and a
//! consumer that reconnects with the last id it saw can be given exactly what it missed.

use crate::store::{AuditRecord, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, Notify};
use tracing::warn;

/// How often the follower looks for new entries when nobody pokes it.
const POLL: Duration = Duration::from_millis(100);
/// Entries read per query.
const BATCH: u32 = 500;

/// The audit log, followed.
#[derive(Clone)]
pub struct Events {
    tx: broadcast::Sender<Arc<AuditRecord>>,
    wake: Arc<Notify>,
    store: Store,
}

impl Events {
    /// Starts following the audit log from its current end.
    pub async fn start(store: Store) -> Result<Events, crate::store::StoreError> {
        let (tx, _) = broadcast::channel(4096);
        let events = Events {
            tx,
            wake: Arc::new(Notify::new()),
            store,
        };
        let from = events.store.last_audit_id().await?;
        if let Some(mut wakeups) = events.store.audit_wakeups() {
            // Another node's entry wakes the follower at its commit, not at the next poll.
            let wake = Arc::downgrade(&events.wake);
            tokio::spawn(async move {
                while wakeups.recv().await.is_some() {
                    match wake.upgrade() {
                        Some(w) => w.notify_one(),
                        None => break,
                    }
                }
            });
        }
        tokio::spawn(events.clone().follow(from));
        Ok(events)
    }

    /// Looks for new entries now rather than at the next poll.
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Every entry written from now on, in id order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AuditRecord>> {
        self.tx.subscribe()
    }

    /// Entries after `after`, oldest first (a reconnecting consumer's backlog).
    pub async fn since(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, crate::store::StoreError> {
        self.store.audit_after(after, limit).await
    }

    async fn follow(self, mut cursor: i64) {
        let mut failing = false;
        loop {
            match self.store.audit_after(cursor, BATCH).await {
                Ok(batch) => {
                    failing = false;
                    let full = batch.len() as u32 == BATCH;
                    for r in batch {
                        cursor = r.id;
                        // Nobody listening is fine.
                        let _ = self.tx.send(Arc::new(r));
                    }
                    if full {
                        continue;
                    }
                }
                Err(e) => {
                    if !failing {
                        warn!(error = %e, "cannot read the audit log; events wait until the store is back");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = self.wake.notified() => {}
            }
            if self.tx.receiver_count() == 0 && Arc::strong_count(&self.wake) == 1 {
                // Every handle is gone: the gateway stopped.
                break;
            }
        }
    }
}
