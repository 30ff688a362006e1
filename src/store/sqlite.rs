//! The embedded default store: SQLite through sqlx, WAL mode, migrations embedded in the binary.

use super::{Agent, LoginAttempt, LoginResult, Session, StoreError};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub(super) struct SqliteStore {
    pool: SqlitePool,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

impl SqliteStore {
    pub(super) async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("store URL {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open {url}: {e}")))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot migrate {url}: {e}")))?;
        Ok(SqliteStore { pool })
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    pub(super) async fn add_agent(
        &self,
        tenant: &str,
        number: &str,
        name: &str,
        hash: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "INSERT INTO agents (tenant, number, name, passcode_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(tenant)
        .bind(number)
        .bind(name)
        .bind(hash)
        .bind(now_ms())
        .execute(&mut *tx)
        .await;
        match r {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AgentExists(number.into()))
            }
            r => r?,
        };
        audit_row(
            &mut tx,
            tenant,
            AuditEntry::agent(number, "agent_added", None),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn set_passcode(
        &self,
        tenant: &str,
        number: &str,
        hash: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query("UPDATE agents SET passcode_hash = ?, failed_attempts = 0 WHERE tenant = ? AND number = ?")
            .bind(hash)
            .bind(tenant)
            .bind(number)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NoSuchAgent(number.into()));
        }
        audit_row(
            &mut tx,
            tenant,
            AuditEntry::agent(number, "passcode_changed", None),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn remove_agent(&self, tenant: &str, number: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let had_session = sqlx::query("DELETE FROM sessions WHERE tenant = ? AND agent = ?")
            .bind(tenant)
            .bind(number)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        let n = sqlx::query("DELETE FROM agents WHERE tenant = ? AND number = ?")
            .bind(tenant)
            .bind(number)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NoSuchAgent(number.into()));
        }
        if had_session {
            audit_row(
                &mut tx,
                tenant,
                AuditEntry::agent(number, "logout", Some("agent removed")),
            )
            .await?;
        }
        audit_row(
            &mut tx,
            tenant,
            AuditEntry::agent(number, "agent_removed", None),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The agent's passcode hash and enabled flag, if the agent exists.
    pub(super) async fn passcode_hash(
        &self,
        tenant: &str,
        number: &str,
    ) -> Result<Option<(String, bool)>, StoreError> {
        let row = sqlx::query(
            "SELECT passcode_hash, enabled FROM agents WHERE tenant = ? AND number = ?",
        )
        .bind(tenant)
        .bind(number)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1) != 0)))
    }

    pub(super) async fn list_agents(&self, tenant: &str) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.number, a.name, a.enabled, s.agent IS NOT NULL FROM agents a \
             LEFT JOIN sessions s ON s.tenant = a.tenant AND s.agent = a.number \
             WHERE a.tenant = ? ORDER BY length(a.number), a.number",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Agent {
                number: r.get(0),
                name: r.get(1),
                enabled: r.get::<i64, _>(2) != 0,
                logged_on: r.get::<i64, _>(3) != 0,
            })
            .collect())
    }

    pub(super) async fn list_sessions(&self, tenant: &str) -> Result<Vec<Session>, StoreError> {
        let rows = sqlx::query(
            "SELECT agent, station, source, node_id, status, \
             strftime('%Y-%m-%dT%H:%M:%SZ', logged_in_at / 1000, 'unixepoch') \
             FROM sessions WHERE tenant = ? ORDER BY logged_in_at, agent",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Session {
                agent: r.get(0),
                station: r.get(1),
                source: r.get(2),
                node_id: r.get(3),
                status: r.get(4),
                logged_in_at: r.get(5),
            })
            .collect())
    }

    pub(super) async fn logout(
        &self,
        tenant: &str,
        agent: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "DELETE FROM sessions WHERE tenant = ? AND agent = ? RETURNING station, call_id",
        )
        .bind(tenant)
        .bind(agent)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let station: String = row.get(0);
        let call_id: Option<String> = row.get(1);
        audit_row(
            &mut tx,
            tenant,
            AuditEntry {
                station: Some(&station),
                call_id: call_id.as_deref(),
                ..AuditEntry::agent(agent, "logout", Some(reason))
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn claim_session(
        &self,
        tenant: &str,
        a: &LoginAttempt,
        node_id: &str,
    ) -> Result<LoginResult, StoreError> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        // The primary key arbitrates: of two simultaneous claims exactly one inserts a row.
        let inserted = sqlx::query(
            "INSERT INTO sessions (tenant, agent, station, source, node_id, call_id, logged_in_at, last_seen_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, agent) DO NOTHING",
        )
        .bind(tenant)
        .bind(&a.agent.0)
        .bind(&a.station)
        .bind(&a.source)
        .bind(node_id)
        .bind(&a.call_id)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let (result, event, reason) = if inserted {
            (LoginResult::LoggedIn, "login", None)
        } else {
            (
                LoginResult::AlreadyLoggedOn,
                "login_refused",
                Some("already logged on"),
            )
        };
        audit_row(&mut tx, tenant, AuditEntry::attempt(a, event, reason)).await?;
        tx.commit().await?;
        Ok(result)
    }

    pub(super) async fn audit(
        &self,
        tenant: &str,
        a: &LoginAttempt,
        event: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        audit_row(&mut conn, tenant, AuditEntry::attempt(a, event, reason)).await
    }
}

/// One row of the audit log.
struct AuditEntry<'a> {
    agent: &'a str,
    station: Option<&'a str>,
    source: Option<&'a str>,
    call_id: Option<&'a str>,
    event: &'a str,
    reason: Option<&'a str>,
}

impl<'a> AuditEntry<'a> {
    /// An event of a login attempt, with where it came from.
    fn attempt(a: &'a LoginAttempt, event: &'a str, reason: Option<&'a str>) -> Self {
        AuditEntry {
            agent: &a.agent.0,
            station: Some(&a.station),
            source: Some(&a.source),
            call_id: Some(&a.call_id),
            event,
            reason,
        }
    }

    /// An administrative event about an agent.
    fn agent(agent: &'a str, event: &'a str, reason: Option<&'a str>) -> Self {
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

async fn audit_row(
    conn: &mut sqlx::SqliteConnection,
    tenant: &str,
    e: AuditEntry<'_>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit (at, tenant, agent, station, source, call_id, event, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(now_ms())
    .bind(tenant)
    .bind(e.agent)
    .bind(e.station)
    .bind(e.source)
    .bind(e.call_id)
    .bind(e.event)
    .bind(e.reason)
    .execute(conn)
    .await?;
    Ok(())
}
