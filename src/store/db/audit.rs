//! The audit log: its pages, the followers' reads, and on PostgreSQL the LISTEN that wakes them.

use super::*;

impl Db {
    /// A page of one tenant's audit log, of one agent or all: newest first before the id
    /// `before`, or oldest first after the id `after`.
    pub(in crate::store) async fn audit_log(
        &self,
        tenant: &str,
        q: &AuditQuery<'_>,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let order = if q.after.is_some() { "ASC" } else { "DESC" };
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit WHERE tenant = $1 AND ($2 IS NULL OR agent = $3) \
             AND ($4 IS NULL OR id < $5) AND ($6 IS NULL OR id > $7) ORDER BY id {order} LIMIT $8"
        ))
        .bind(tenant)
        .bind(q.agent)
        .bind(q.agent)
        .bind(q.before)
        .bind(q.before)
        .bind(q.after)
        .bind(q.after)
        .bind(q.limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(audit_record).collect())
    }

    /// Audit entries of every tenant after the id `after`, oldest first (the event stream).
    pub(in crate::store) async fn audit_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(audit_record).collect())
    }

    /// The id of the latest audit entry (0 when there is none).
    pub(in crate::store) async fn last_audit_id(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM audit")
            .fetch_one(&self.pool)
            .await?)
    }

    pub(in crate::store) async fn audit_count(
        &self,
        tenant: &str,
        agent: &str,
        event: &str,
    ) -> Result<usize, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit WHERE tenant = $1 AND agent = $2 AND event = $3",
        )
        .bind(tenant)
        .bind(agent)
        .bind(event)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as usize)
    }

    pub(in crate::store) async fn audit(
        &self,
        tenant: &str,
        a: &LoginAttempt,
        entry: Entry,
    ) -> Result<(), StoreError> {
        let mut lent = self.lane.lend().await?;
        let reason = Some(entry.reason);
        let mut tx = self.write_on(lent.conn(), false).await?;
        audit_row(
            &mut tx,
            self.at(tenant),
            AuditEntry::attempt(a, entry.event, reason),
        )
        .await?;
        tx.commit().await?;
        lent.give_back();
        Ok(())
    }

    /// (PostgreSQL) A wake-up each time a transaction that wrote audit entries commits, from
    /// any node: LISTEN on 'agentgw_audit', supervised. `PgListener` reconnects only on some
    /// errors and drops what was sent while it was away, so the listener is rebuilt on any
    /// error, sends a wake-up after every (re)connection (the follower then reads what it
    /// missed from the table), and notifies itself every `PING` to find a connection that
    /// died without an error. None on SQLite.
    pub(in crate::store) fn audit_wakeups(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(listen_audit(self.url.clone(), tx));
        Some(rx)
    }
}

/// Runs the supervised LISTEN of `Db::audit_wakeups` until its receiver is gone.
pub(super) async fn listen_audit(url: String, wake: tokio::sync::mpsc::Sender<()>) {
    const CHANNEL: &str = "agentgw_audit";
    const PING: Duration = Duration::from_secs(10);
    while !wake.is_closed() {
        let mut listener = match sqlx::postgres::PgListener::connect(&url).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "audit listener cannot connect; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if listener.listen(CHANNEL).await.is_err() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Connected (again): whatever was notified meanwhile is read from the table.
        let _ = wake.try_send(());
        let mut pinged = false;
        loop {
            match tokio::time::timeout(PING, listener.recv()).await {
                Ok(Ok(n)) => {
                    pinged &= n.payload() != "ping";
                    let _ = wake.try_send(());
                }
                Ok(Err(_)) => break,
                // Quiet: notify ourselves; no answer by the next round means a dead link.
                Err(_) if pinged => break,
                Err(_) => {
                    let ping = sqlx::query("SELECT pg_notify($1, 'ping')").bind(CHANNEL);
                    if ping.execute(&mut listener).await.is_err() {
                        break;
                    }
                    pinged = true;
                }
            }
            if wake.is_closed() {
                return;
            }
        }
    }
}

pub(super) const AUDIT_COLUMNS: &str =
    "id, at, tenant, agent, station, source, call_id, event, reason, node_id";

pub(super) fn audit_record(r: AnyRow) -> AuditRecord {
    AuditRecord {
        id: r.get(0),
        at: rfc3339(r.get(1), true),
        tenant: r.get(2),
        agent: r.get(3),
        station: r.get(4),
        source: r.get(5),
        call_id: r.get(6),
        event: r.get(7),
        reason: r.get(8),
        node: r.get(9),
    }
}

/// One row of the audit log.
pub(super) struct AuditEntry<'a> {
    pub(super) agent: &'a str,
    pub(super) station: Option<&'a str>,
    pub(super) source: Option<&'a str>,
    pub(super) call_id: Option<&'a str>,
    pub(super) event: AuditEvent,
    pub(super) reason: Option<&'a str>,
}

impl<'a> AuditEntry<'a> {
    /// An event of a login attempt, with where it came from.
    pub(super) fn attempt(a: &'a LoginAttempt, event: AuditEvent, reason: Option<&'a str>) -> Self {
        AuditEntry {
            agent: &a.agent.0,
            station: Some(a.station.as_str()),
            source: Some(&a.source),
            call_id: Some(a.call_id.as_str()),
            event,
            reason,
        }
    }

    /// An administrative event about an agent.
    pub(super) fn agent(agent: &'a str, event: AuditEvent, reason: Option<&'a str>) -> Self {
        AuditEntry {
            agent,
            station: None,
            source: None,
            call_id: None,
            event,
            reason,
        }
    }
}

pub(super) async fn audit_row(
    conn: &mut AnyConnection,
    at: At<'_>,
    e: AuditEntry<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit (at, tenant, agent, station, source, call_id, event, reason, node_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(now_ms())
    .bind(at.tenant)
    .bind(e.agent)
    .bind(e.station)
    .bind(e.source)
    .bind(e.call_id)
    .bind(e.event.as_str())
    .bind(e.reason)
    .bind(at.node)
    .execute(conn)
    .await?;
    Ok(())
}
