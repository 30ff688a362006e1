//! The store's SQL, one text for both backends through sqlx's Any driver: SQLite (embedded, WAL)
//! or PostgreSQL (several nodes), chosen by the URL, with each one's migrations embedded.

use super::lane::Lane;
use super::{
    Agent, AgentChanges, AgentRecord, AuditQuery, AuditRecord, ImportSummary, LoginAttempt,
    LoginPolicy, LoginResult, Session, SessionEnded, StoreError,
};
use crate::login::decide::Entry;
use crate::login::rules::{decide_claim, ClaimDecision, Failures, Holdings};
use crate::login::AgentStatus;
use crate::login::AuditEvent;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{Any, Executor, Row};
use sqlx::{AnyConnection, AnyPool};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database the URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn of(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if super::is_postgres_url(url) {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::Invalid(format!(
                "store URL {:?} is not supported: use sqlite://PATH or postgres://USER:PASSWORD@HOST/DATABASE",
                super::mask_password(url)
            )))
        }
    }

    /// What every new connection runs first.
    fn session_setup(self) -> &'static str {
        match self {
            // WAL (kept in the file), foreign keys, 5 s for a lock held elsewhere, and 1 MiB
            // of page cache per connection (SQLite's default is 2 MiB): the login path reads
            // a few index pages per query, and the audit table only grows, so a bigger cache
            // is memory that fills with audit pages and never comes back. The OS page cache
            // holds the file anyway.
            Backend::Sqlite => {
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                 PRAGMA busy_timeout = 5000; PRAGMA cache_size = -1024;"
            }
            Backend::Postgres => "SET application_name = 'agentgw'",
        }
    }

    /// How a write transaction starts; `immediate`: with SQLite's write lock taken at once
    /// (a claim, an import), so that of simultaneous claims each sees the one before it.
    fn begin(self, immediate: bool) -> &'static str {
        match self {
            Backend::Sqlite if immediate => "BEGIN IMMEDIATE",
            _ => "BEGIN",
        }
    }

    /// What a write transaction runs first. On PostgreSQL: one lock for every writer of every
    /// node, held to the commit, so that writes are serialised as SQLite's are: of claims on
    /// several nodes each sees the one before it, and audit ids are committed in their order
    /// (a follower of the audit log never passes over an id committed late). SQLite has one
    /// writer at a time already.
    fn write_lock(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite => None,
            Backend::Postgres => Some("SELECT pg_advisory_xact_lock(7125001)"),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Db {
    backend: Backend,
    /// The URL it was opened with (a PostgreSQL listener connects to it too).
    pub(super) url: String,
    /// This gateway's node id, on the audit entries it writes.
    node_id: String,
    pool: AnyPool,
    /// The login path's connections (the agent's record, the claim, its audit rows).
    lane: Arc<Lane>,
    /// Every session ended, told after its transaction commits.
    ended: broadcast::Sender<SessionEnded>,
}

/// Where a write happens: the tenant it is in, and the node that writes it (on its audit
/// rows).
#[derive(Debug, Clone, Copy)]
struct At<'a> {
    node: &'a str,
    tenant: &'a str,
}

/// Which session `delete_session` ends.
enum SessionOf<'a> {
    Agent(&'a str),
    Station(&'a str),
}

/// Ends a session inside `tx` and audits why; the ended session, if there was one.
async fn delete_session(
    tx: &mut AnyConnection,
    at: At<'_>,
    which: SessionOf<'_>,
    reason: &str,
) -> Result<Option<SessionEnded>, StoreError> {
    let (sql, key) = match which {
        SessionOf::Agent(a) => ("DELETE FROM sessions WHERE tenant = $1 AND agent = $2 RETURNING agent, station, call_id", a),
        SessionOf::Station(s) => ("DELETE FROM sessions WHERE tenant = $1 AND station = $2 RETURNING agent, station, call_id", s),
    };
    let row = sqlx::query(sql)
        .bind(at.tenant)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let ended = SessionEnded {
        agent: row.get(0),
        station: row.get(1),
        call_id: row.get(2),
        reason: reason.to_string(),
    };
    audit_row(
        tx,
        at,
        AuditEntry {
            station: Some(&ended.station),
            call_id: ended.call_id.as_deref(),
            ..AuditEntry::agent(&ended.agent, AuditEvent::Logout, Some(reason))
        },
    )
    .await?;
    Ok(Some(ended))
}

pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// RFC 3339 (UTC) of a Unix time in milliseconds, with the milliseconds when `millis`.
pub(super) fn rfc3339(ms: i64, millis: bool) -> String {
    let (days, in_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, sec, milli) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    if millis {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{sec:02}.{milli:03}Z")
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{sec:02}Z")
    }
}

/// The login path's connections (`Lane`), besides the pool's four for everything else: one.
/// Each connection has its own page cache, and a write on one makes the others read the
/// pages it changed again at their next transaction; with the login path spread over several
/// connections that re-reading was a sixth of the SQLite threads' time in a profile, besides
/// the pool's ping on every return. On one connection, in a storm of 300 type-ahead
/// logins a second, the SQLite threads took 1.44 s for 9,000 logins against 2.47 s on four
/// (BENCHMARKS.md). One connection serialises the login path's statements (~0.1 ms
/// each): 300 logins a second keep it 5% busy, and a write lock held elsewhere (a CLI import)
/// holds up every claim whatever the number of connections.
const LANE_CONNECTIONS: usize = 1;

/// The login path's connections on PostgreSQL: its server runs statements in parallel, one
/// process per connection, so calls on several at once do not queue behind each other.
const POSTGRES_LANE_CONNECTIONS: usize = 8;

impl Db {
    pub(super) async fn open(url: &str, node_id: &str) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let shown = super::mask_password(url);
        let url = match backend {
            // Created when missing.
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_string(),
        };
        let opts = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Invalid(format!("store URL {shown:?}: {e}")))?;
        let (lane_size, pool_size) = match backend {
            Backend::Sqlite => (LANE_CONNECTIONS, 4),
            Backend::Postgres => (POSTGRES_LANE_CONNECTIONS, 4),
        };
        let ping_after = (backend == Backend::Postgres).then_some(Duration::from_secs(1));
        let lane = Arc::new(Lane::new(
            opts.clone(),
            backend.session_setup(),
            lane_size,
            Duration::from_secs(5),
            ping_after,
        ));
        let setup = backend.session_setup();
        let pool = AnyPoolOptions::new()
            .max_connections(pool_size)
            // sqlx pings a connection before lending it: a round trip to the connection's
            // worker thread and back for nothing on an embedded database file, which has no
            // link to lose; worth it on PostgreSQL, whose server may have restarted since.
            .test_before_acquire(backend == Backend::Postgres)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(setup).await?;
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open {shown}: {e}")))?;
        let migrations = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrations
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot migrate {shown}: {e}")))?;
        let (ended, _) = broadcast::channel(1024);
        Ok(Db {
            backend,
            url: url.clone(),
            node_id: node_id.to_string(),
            pool,
            lane,
            ended,
        })
    }

    /// A write in `tenant`, by this node.
    fn at<'a>(&'a self, tenant: &'a str) -> At<'a> {
        At {
            node: &self.node_id,
            tenant,
        }
    }

    /// A write transaction on a connection of the pool (see `Backend::write_lock`).
    async fn write(&self, immediate: bool) -> Result<sqlx::Transaction<'static, Any>, StoreError> {
        let mut tx = self.pool.begin_with(self.backend.begin(immediate)).await?;
        if let Some(lock) = self.backend.write_lock() {
            (&mut *tx).execute(lock).await?;
        }
        Ok(tx)
    }

    /// A write transaction on `conn` (a connection of the login path).
    async fn write_on<'c>(
        &self,
        conn: &'c mut AnyConnection,
        immediate: bool,
    ) -> Result<sqlx::Transaction<'c, Any>, StoreError> {
        let mut tx = sqlx::Connection::begin_with(conn, self.backend.begin(immediate)).await?;
        if let Some(lock) = self.backend.write_lock() {
            (&mut *tx).execute(lock).await?;
        }
        Ok(tx)
    }

    #[cfg(test)]
    pub(super) fn pool_for_tests(&self) -> AnyPool {
        self.pool.clone()
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<SessionEnded> {
        self.ended.subscribe()
    }

    fn tell(&self, ended: impl IntoIterator<Item = SessionEnded>) {
        for e in ended {
            // Nobody listening (the CLI) is fine.
            let _ = self.ended.send(e);
        }
    }

    pub(super) async fn close(&self) {
        self.lane.close().await;
        self.pool.close().await;
    }

    pub(super) async fn set_passcode(
        &self,
        tenant: &str,
        number: &str,
        hash: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write(false).await?;
        let n = sqlx::query("UPDATE agents SET passcode_hash = $1, failed_attempts = 0, must_change = 0 WHERE tenant = $2 AND number = $3")
            .bind(hash)
            .bind(tenant)
            .bind(number)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        agent_changed(tx, self.at(tenant), number, n, AuditEvent::PasscodeChanged).await
    }

    pub(super) async fn remove_agent(&self, tenant: &str, number: &str) -> Result<(), StoreError> {
        let mut tx = self.write(false).await?;
        let ended = delete_session(
            &mut tx,
            self.at(tenant),
            SessionOf::Agent(number),
            "agent removed",
        )
        .await?;
        let n = sqlx::query("DELETE FROM agents WHERE tenant = $1 AND number = $2")
            .bind(tenant)
            .bind(number)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        agent_changed(tx, self.at(tenant), number, n, AuditEvent::AgentRemoved).await?;
        self.tell(ended);
        Ok(())
    }

    /// What a login needs to know about an agent, if it exists.
    pub(super) async fn agent_record(
        &self,
        tenant: &str,
        number: &str,
    ) -> Result<Option<AgentRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT passcode_hash, enabled, failed_attempts, failure_window_start, locked_until, \
             allowed_stations, allowed_networks, must_change, default_extension, language \
             FROM agents WHERE tenant = $1 AND number = $2",
        )
        .bind(tenant)
        .bind(number);
        let mut lent = self.lane.lend().await?;
        let row = row.fetch_optional(lent.conn()).await?;
        lent.give_back();
        Ok(row.map(|r| AgentRecord {
            passcode_hash: r.get(0),
            enabled: r.get::<i64, _>(1) != 0,
            failures: Failures {
                count: r.get::<i64, _>(2) as u32,
                window_start_ms: r.get(3),
                locked_until_ms: r.get(4),
            },
            stations: split_list(&r.get::<String, _>(5)),
            networks: split_list(&r.get::<String, _>(6))
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
            must_change: r.get::<i64, _>(7) != 0,
            default_extension: r.get(8),
            language: r.get(9),
        }))
    }

    /// Stores an agent's failure record; `event` (a lockout) is audited with it.
    pub(super) async fn set_failures(
        &self,
        tenant: &str,
        a: &LoginAttempt,
        f: Failures,
        event: Option<Entry>,
    ) -> Result<(), StoreError> {
        let mut lent = self.lane.lend().await?;
        let mut tx = self.write_on(lent.conn(), false).await?;
        sqlx::query(
            "UPDATE agents SET failed_attempts = $1, failure_window_start = $2, locked_until = $3 \
             WHERE tenant = $4 AND number = $5",
        )
        .bind(f.count as i64)
        .bind(f.window_start_ms)
        .bind(f.locked_until_ms)
        .bind(tenant)
        .bind(&a.agent.0)
        .execute(&mut *tx)
        .await?;
        if let Some(e) = event {
            audit_row(
                &mut tx,
                self.at(tenant),
                AuditEntry::attempt(a, e.event, Some(e.reason)),
            )
            .await?;
        }
        tx.commit().await?;
        lent.give_back();
        Ok(())
    }

    /// A page of one tenant's audit log, of one agent or all: newest first before the id
    /// `before`, or oldest first after the id `after`.
    pub(super) async fn audit_log(
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
    pub(super) async fn audit_after(
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
    pub(super) async fn last_audit_id(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM audit")
            .fetch_one(&self.pool)
            .await?)
    }

    pub(super) async fn audit_count(
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

    /// Lifts a lock; false when the agent was not locked.
    pub(super) async fn unlock(&self, tenant: &str, number: &str) -> Result<bool, StoreError> {
        let mut tx = self.write(false).await?;
        let row = sqlx::query(
            "SELECT CASE WHEN locked_until > $1 THEN 1 ELSE 0 END FROM agents WHERE tenant = $2 AND number = $3",
        )
        .bind(now_ms())
        .bind(tenant)
        .bind(number)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::NoSuchAgent(number.into()));
        };
        let was_locked = row.get::<i64, _>(0) != 0;
        sqlx::query(
            "UPDATE agents SET failed_attempts = 0, failure_window_start = NULL, locked_until = NULL \
             WHERE tenant = $1 AND number = $2",
        )
        .bind(tenant)
        .bind(number)
        .execute(&mut *tx)
        .await?;
        if was_locked {
            audit_row(
                &mut tx,
                self.at(tenant),
                AuditEntry::agent(number, AuditEvent::Unlock, Some("administrator")),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(was_locked)
    }

    /// Creates an agent with `changes` applied, in one transaction.
    pub(super) async fn create_agent(
        &self,
        tenant: &str,
        number: &str,
        hash: &str,
        changes: &AgentChanges,
    ) -> Result<(), StoreError> {
        let mut tx = self.write(false).await?;
        insert_agent(&mut tx, self.at(tenant), number, hash, changes).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Changes an agent's fields (and its passcode, when `hash` is given) in one transaction.
    pub(super) async fn update_agent(
        &self,
        tenant: &str,
        number: &str,
        hash: Option<&str>,
        changes: &AgentChanges,
    ) -> Result<(), StoreError> {
        let mut tx = self.write(false).await?;
        if !apply_changes(&mut tx, self.at(tenant), number, hash, changes).await? {
            return Err(StoreError::NoSuchAgent(number.into()));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Which of `numbers` exist.
    pub(super) async fn existing_agents(
        &self,
        tenant: &str,
        numbers: &[&str],
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut found = std::collections::HashSet::new();
        for chunk in numbers.chunks(500) {
            let marks: Vec<String> = (2..chunk.len() + 2).map(|i| format!("${i}")).collect();
            let marks = marks.join(",");
            let sql =
                format!("SELECT number FROM agents WHERE tenant = $1 AND number IN ({marks})");
            let mut q = sqlx::query_scalar::<_, String>(&sql).bind(tenant);
            for n in chunk {
                q = q.bind(*n);
            }
            found.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(found)
    }

    /// Creates or updates every row in one transaction: all of them or none.
    pub(super) async fn import(
        &self,
        tenant: &str,
        rows: &[(usize, String, Option<String>, AgentChanges)],
    ) -> Result<ImportSummary, StoreError> {
        let mut tx = self.write(true).await?;
        let mut summary = ImportSummary {
            created: 0,
            updated: 0,
        };
        for (line, number, hash, changes) in rows {
            if apply_changes(&mut tx, self.at(tenant), number, hash.as_deref(), changes).await? {
                summary.updated += 1;
            } else if let Some(hash) = hash {
                insert_agent(&mut tx, self.at(tenant), number, hash, changes).await?;
                summary.created += 1;
            } else {
                return Err(StoreError::Import(vec![format!(
                    "line {line}: agent {number} does not exist, so it needs a passcode"
                )]));
            }
        }
        tx.commit().await?;
        Ok(summary)
    }

    /// One agent, if it exists.
    pub(super) async fn agent(
        &self,
        tenant: &str,
        number: &str,
    ) -> Result<Option<Agent>, StoreError> {
        Ok(self
            .query_agents(tenant, Some(number))
            .await?
            .into_iter()
            .next())
    }

    pub(super) async fn list_agents(&self, tenant: &str) -> Result<Vec<Agent>, StoreError> {
        self.query_agents(tenant, None).await
    }

    async fn query_agents(
        &self,
        tenant: &str,
        number: Option<&str>,
    ) -> Result<Vec<Agent>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.number, a.name, a.enabled, CASE WHEN s.agent IS NULL THEN 0 ELSE 1 END, \
             CASE WHEN a.locked_until > $1 THEN 1 ELSE 0 END, a.allowed_stations, a.allowed_networks, \
             a.default_extension, a.language, a.must_change, a.tenant FROM agents a \
             LEFT JOIN sessions s ON s.tenant = a.tenant AND s.agent = a.number \
             WHERE a.tenant = $2 AND ($3 IS NULL OR a.number = $4) ORDER BY length(a.number), a.number",
        )
        .bind(now_ms())
        .bind(tenant)
        .bind(number)
        .bind(number)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Agent {
                number: r.get(0),
                name: r.get(1),
                enabled: r.get::<i64, _>(2) != 0,
                logged_on: r.get::<i64, _>(3) != 0,
                locked: r.get::<i64, _>(4) != 0,
                stations: split_list(&r.get::<String, _>(5)),
                networks: split_list(&r.get::<String, _>(6)),
                default_extension: r.get(7),
                language: r.get(8),
                must_change: r.get::<i64, _>(9) != 0,
                tenant: r.get(10),
            })
            .collect())
    }

    pub(super) async fn list_sessions(&self, tenant: &str) -> Result<Vec<Session>, StoreError> {
        let rows = sqlx::query(
            "SELECT agent, station, source, node_id, status, logged_in_at \
             FROM sessions WHERE tenant = $1 ORDER BY logged_in_at, agent",
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
                logged_in_at: rfc3339(r.get(5), false),
            })
            .collect())
    }

    /// Sets a session's status; false when the agent has no session.
    pub(super) async fn set_status(
        &self,
        tenant: &str,
        agent: &str,
        status: AgentStatus,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write(false).await?;
        let n = sqlx::query(
            "UPDATE sessions SET status = $1, last_seen_at = $2 WHERE tenant = $3 AND agent = $4",
        )
        .bind(status.as_str())
        .bind(now_ms())
        .bind(tenant)
        .bind(agent)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        audit_row(
            &mut tx,
            self.at(tenant),
            AuditEntry::agent(agent, AuditEvent::Status, Some(status.as_str())),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn status(
        &self,
        tenant: &str,
        agent: &str,
    ) -> Result<Option<AgentStatus>, StoreError> {
        let s: Option<String> =
            sqlx::query_scalar("SELECT status FROM sessions WHERE tenant = $1 AND agent = $2")
                .bind(tenant)
                .bind(agent)
                .fetch_optional(&self.pool)
                .await?;
        Ok(s.and_then(|s| AgentStatus::parse(&s)))
    }

    pub(super) async fn logout(
        &self,
        tenant: &str,
        agent: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write(false).await?;
        let ended =
            delete_session(&mut tx, self.at(tenant), SessionOf::Agent(agent), reason).await?;
        tx.commit().await?;
        let found = ended.is_some();
        self.tell(ended);
        Ok(found)
    }

    pub(super) async fn close_stay_sessions(
        &self,
        node_id: &str,
        reason: &str,
    ) -> Result<usize, StoreError> {
        self.end_selected(
            "SELECT tenant, agent FROM sessions WHERE node_id = $1 AND stay = 1",
            node_id,
            reason,
        )
        .await
    }

    /// Ends, in one transaction, the sessions `select` (tenant, agent) finds with `value`.
    async fn end_selected<'q, T>(
        &self,
        select: &'q str,
        value: T,
        reason: &str,
    ) -> Result<usize, StoreError>
    where
        T: 'q + Send + sqlx::Encode<'q, Any> + sqlx::Type<Any>,
    {
        let mut tx = self.write(false).await?;
        let found: Vec<(String, String)> = sqlx::query_as(select)
            .bind(value)
            .fetch_all(&mut *tx)
            .await?;
        let mut ended = Vec::new();
        for (tenant, agent) in &found {
            ended.extend(
                delete_session(&mut tx, self.at(tenant), SessionOf::Agent(agent), reason).await?,
            );
        }
        tx.commit().await?;
        let n = ended.len();
        self.tell(ended);
        Ok(n)
    }

    /// (PostgreSQL) A wake-up each time a transaction that wrote audit entries commits, from
    /// any node: LISTEN on 'agentgw_audit', supervised. `PgListener` reconnects only on some
    /// errors and drops what was sent while it was away, so the listener is rebuilt on any
    /// error, sends a wake-up after every (re)connection (the follower then reads what it
    /// missed from the table), and notifies itself every `PING` to find a connection that
    /// died without an error. None on SQLite.
    pub(super) fn audit_wakeups(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(listen_audit(self.url.clone(), tx));
        Some(rx)
    }

    /// Whether several nodes may share this store (PostgreSQL).
    pub(super) fn shared(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Counts an attempt under each `(key, limit)` in the current minute (limit 0: not
    /// counted); true when any count is over its limit.
    pub(super) async fn count_attempts(&self, keys: &[(String, u32)]) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut over = false;
        let mut lent = self.lane.lend().await?;
        let mut tx = self.write_on(lent.conn(), false).await?;
        for (key, limit) in keys.iter().filter(|(_, limit)| *limit > 0) {
            let count: i64 = sqlx::query_scalar(
                "INSERT INTO attempts (key, window_start, count) VALUES ($1, $2, 1) \
                 ON CONFLICT (key) DO UPDATE SET \
                 count = CASE WHEN attempts.window_start <= $3 THEN 1 ELSE attempts.count + 1 END, \
                 window_start = CASE WHEN attempts.window_start <= $3 THEN $2 ELSE attempts.window_start END \
                 RETURNING count",
            )
            .bind(key)
            .bind(now)
            .bind(now - 60_000)
            .fetch_one(&mut *tx)
            .await?;
            over |= count > i64::from(*limit);
        }
        tx.commit().await?;
        lent.give_back();
        Ok(over)
    }

    /// Forgets the attempt counts of past minutes.
    pub(super) async fn forget_attempts(&self) -> Result<(), StoreError> {
        let mut tx = self.write(false).await?;
        sqlx::query("DELETE FROM attempts WHERE window_start <= $1")
            .bind(now_ms() - 60_000)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The instance and last heartbeat of node `node_id`, if it is registered.
    pub(super) async fn node(&self, node_id: &str) -> Result<Option<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT instance, last_seen_at FROM nodes WHERE node_id = $1")
                .bind(node_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Registers (or takes over) `node_id` for this `instance`.
    pub(super) async fn register_node(
        &self,
        node_id: &str,
        instance: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write(false).await?;
        sqlx::query(
            "INSERT INTO nodes (node_id, instance, started_at, last_seen_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (node_id) DO UPDATE SET instance = excluded.instance, \
             started_at = excluded.started_at, last_seen_at = excluded.last_seen_at",
        )
        .bind(node_id)
        .bind(instance)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// This node is alive; false when its row is gone or another instance took it.
    pub(super) async fn heartbeat(
        &self,
        node_id: &str,
        instance: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write(false).await?;
        let n =
            sqlx::query("UPDATE nodes SET last_seen_at = $1 WHERE node_id = $2 AND instance = $3")
                .bind(now_ms())
                .bind(node_id)
                .bind(instance)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// A node stopping cleanly: no longer one to watch.
    pub(super) async fn deregister_node(
        &self,
        node_id: &str,
        instance: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.write(false).await?;
        sqlx::query("DELETE FROM nodes WHERE node_id = $1 AND instance = $2")
            .bind(node_id)
            .bind(instance)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The nodes (other than `own`) silent since before `before_ms`: each is removed and its
    /// stay-line sessions ended with `reason`, in one transaction, so that of the surviving
    /// nodes exactly one does it. The nodes lost, with how many sessions each held.
    pub(super) async fn reap_lost_nodes(
        &self,
        own: &str,
        before_ms: i64,
        reason: &str,
    ) -> Result<Vec<(String, usize)>, StoreError> {
        let mut tx = self.write(false).await?;
        let lost: Vec<String> = sqlx::query_scalar(
            "DELETE FROM nodes WHERE last_seen_at < $1 AND node_id <> $2 RETURNING node_id",
        )
        .bind(before_ms)
        .bind(own)
        .fetch_all(&mut *tx)
        .await?;
        let mut ended = Vec::new();
        let mut out = Vec::new();
        for node in lost {
            let held: Vec<(String, String)> = sqlx::query_as(
                "SELECT tenant, agent FROM sessions WHERE node_id = $1 AND stay = 1",
            )
            .bind(&node)
            .fetch_all(&mut *tx)
            .await?;
            for (tenant, agent) in &held {
                ended.extend(
                    delete_session(&mut tx, self.at(tenant), SessionOf::Agent(agent), reason)
                        .await?,
                );
            }
            out.push((node, held.len()));
        }
        tx.commit().await?;
        self.tell(ended);
        Ok(out)
    }

    pub(super) async fn sessions_by_status(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM sessions GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(s, n)| (s, n as u64)).collect())
    }

    /// The passcode hashes made with a pepper (`keyid=` in the PHC string).
    pub(super) async fn peppered_hashes(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT passcode_hash FROM agents WHERE passcode_hash LIKE '%keyid=%'",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub(super) async fn count_sessions(&self) -> Result<usize, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as usize)
    }

    /// Ends every session (of every tenant) logged on before `before_ms`.
    pub(super) async fn expire_sessions(
        &self,
        before_ms: i64,
        reason: &str,
    ) -> Result<usize, StoreError> {
        self.end_selected(
            "SELECT tenant, agent FROM sessions WHERE logged_in_at < $1",
            before_ms,
            reason,
        )
        .await
    }

    pub(super) async fn logout_station(
        &self,
        tenant: &str,
        station: &str,
        reason: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.write(false).await?;
        let ended = delete_session(
            &mut tx,
            self.at(tenant),
            SessionOf::Station(station),
            reason,
        )
        .await?;
        tx.commit().await?;
        let agent = ended.as_ref().map(|e| e.agent.clone());
        self.tell(ended);
        Ok(agent)
    }

    /// Records the session as the policies decide, in one write transaction taken at once
    /// (BEGIN IMMEDIATE), so that of simultaneous claims each sees the one before it: at no
    /// moment are there two sessions of one agent, or none while one is being moved.
    pub(super) async fn claim_session(
        &self,
        tenant: &str,
        a: &LoginAttempt,
        node_id: &str,
        policy: &LoginPolicy,
    ) -> Result<LoginResult, StoreError> {
        // One connection for both paths: a claim that was not free goes on with it.
        let mut lent = self.lane.lend().await?;
        if self.backend == Backend::Sqlite
            && claim_if_free(lent.conn(), tenant, a, node_id, policy).await?
        {
            lent.give_back();
            return Ok(LoginResult::LoggedIn);
        }
        let mut tx = self.write_on(lent.conn(), true).await?;
        // Who holds this agent and who holds this station, in one query (one round trip to
        // the connection's thread instead of two).
        let held: Vec<(String, String)> = sqlx::query_as(
            "SELECT agent, station FROM sessions WHERE tenant = $1 AND (agent = $2 OR station = $3)",
        )
        .bind(tenant)
        .bind(&a.agent.0)
        .bind(a.station.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let agent_station = held
            .iter()
            .find(|(agent, _)| *agent == a.agent.0)
            .map(|(_, station)| station.clone());
        let station_agent = held
            .iter()
            .find(|(_, station)| *station == a.station.0)
            .map(|(agent, _)| agent.clone());
        let holdings = Holdings {
            agent_station,
            station_agent,
        };
        let mut ended = Vec::new();
        let decision = decide_claim(
            &a.agent.0,
            &holdings,
            policy.already_logged_on,
            policy.same_station,
            a.replace,
        );
        let (result, entry) = match decision.refusal() {
            Some(refusal) => refusal,
            None => {
                let ClaimDecision::Claim { end } = decision else {
                    unreachable!("only a claim has no refusal")
                };
                for (agent, why) in end {
                    ended.extend(
                        delete_session(&mut tx, self.at(tenant), SessionOf::Agent(&agent), why)
                            .await?,
                    );
                }
                let now = now_ms();
                sqlx::query(
                    "INSERT INTO sessions (tenant, agent, station, source, node_id, call_id, status, stay, logged_in_at, last_seen_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(tenant)
                .bind(&a.agent.0)
                .bind(a.station.as_str())
                .bind(&a.source)
                .bind(node_id)
                .bind(a.call_id.as_str())
                .bind(policy.initial_status.as_str())
                .bind(policy.stay as i64)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                (LoginResult::LoggedIn, Entry::new(AuditEvent::Login, ""))
            }
        };
        let reason = (!entry.reason.is_empty()).then_some(entry.reason);
        audit_row(
            &mut tx,
            self.at(tenant),
            AuditEntry::attempt(a, entry.event, reason),
        )
        .await?;
        if let Err(e) = tx.commit().await {
            // The connection broke with the COMMIT on its way: whether it was done is read
            // back on another connection (the session of this call is there, or not).
            drop(lent);
            if result == LoginResult::LoggedIn && self.holds(tenant, a).await? {
                tracing::info!(agent = %a.agent, "a login whose commit was in doubt was found done");
                self.tell(ended);
                return Ok(result);
            }
            return Err(e.into());
        }
        lent.give_back();
        self.tell(ended);
        Ok(result)
    }

    /// Whether the agent's session is the one `a`'s call claimed.
    async fn holds(&self, tenant: &str, a: &LoginAttempt) -> Result<bool, StoreError> {
        let mut lent = self.lane.lend().await?;
        let call: Option<Option<String>> =
            sqlx::query_scalar("SELECT call_id FROM sessions WHERE tenant = $1 AND agent = $2")
                .bind(tenant)
                .bind(&a.agent.0)
                .fetch_optional(lent.conn())
                .await?;
        lent.give_back();
        Ok(call.flatten().as_deref() == Some(a.call_id.as_str()))
    }

    pub(super) async fn audit(
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
}

/// Runs the supervised LISTEN of `Db::audit_wakeups` until its receiver is gone.
async fn listen_audit(url: String, wake: tokio::sync::mpsc::Sender<()>) {
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

/// (SQLite) The usual login: nobody holds the agent or the station, so every policy claims it
/// and ends nothing. The session and its audit row are written by one batch of
/// statements, its own write transaction, in one round trip to the connection's thread
/// (the general path takes five: BEGIN, SELECT, INSERT, INSERT, COMMIT). True when the
/// session was recorded; false when someone holds either, with nothing written, for the
/// general path to decide (on the same connection). A batch that fails may have stopped
/// inside its transaction: the caller closes the connection rather than give it back.
async fn claim_if_free(
    conn: &mut AnyConnection,
    tenant: &str,
    a: &LoginAttempt,
    node_id: &str,
    policy: &LoginPolicy,
) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "BEGIN IMMEDIATE; \
         INSERT INTO sessions (tenant, agent, station, source, node_id, call_id, status, stay, logged_in_at, last_seen_at) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9 \
         WHERE NOT EXISTS (SELECT 1 FROM sessions WHERE tenant = ?1 AND (agent = ?2 OR station = ?3)) \
         RETURNING 1; \
         INSERT INTO audit (at, tenant, agent, station, source, call_id, event, reason, node_id) \
         SELECT ?9, ?1, ?2, ?3, ?4, ?6, 'login', NULL, ?5 WHERE changes() = 1; \
         COMMIT;",
    )
    .bind(tenant)
    .bind(&a.agent.0)
    .bind(a.station.as_str())
    .bind(&a.source)
    .bind(node_id)
    .bind(a.call_id.as_str())
    .bind(policy.initial_status.as_str())
    .bind(policy.stay as i64)
    .bind(now_ms())
    .fetch_all(conn)
    .await?;
    Ok(!inserted.is_empty())
}

/// Inserts an agent and applies `changes`; audits `agent_added`.
async fn insert_agent(
    tx: &mut AnyConnection,
    at: At<'_>,
    number: &str,
    hash: &str,
    changes: &AgentChanges,
) -> Result<(), StoreError> {
    let r = sqlx::query(
        "INSERT INTO agents (tenant, number, passcode_hash, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(at.tenant)
    .bind(number)
    .bind(hash)
    .bind(now_ms())
    .execute(&mut *tx)
    .await;
    match r {
        Err(e) if is_unique_violation(&e) => return Err(StoreError::AgentExists(number.into())),
        r => r?,
    };
    set_fields(tx, at.tenant, number, None, changes).await?;
    audit_row(
        tx,
        at,
        AuditEntry::agent(number, AuditEvent::AgentAdded, None),
    )
    .await
}

/// Applies `changes` (and a new passcode hash) to an existing agent and audits what changed;
/// false when there is no such agent.
async fn apply_changes(
    tx: &mut AnyConnection,
    at: At<'_>,
    number: &str,
    hash: Option<&str>,
    changes: &AgentChanges,
) -> Result<bool, StoreError> {
    if !set_fields(tx, at.tenant, number, hash, changes).await? {
        return Ok(false);
    }
    let fields = changes.field_names().join(",");
    if !fields.is_empty() {
        audit_row(
            tx,
            at,
            AuditEntry::agent(number, AuditEvent::AgentUpdated, Some(&fields)),
        )
        .await?;
    }
    if hash.is_some() {
        audit_row(
            tx,
            at,
            AuditEntry::agent(number, AuditEvent::PasscodeChanged, None),
        )
        .await?;
    }
    Ok(true)
}

async fn set_fields(
    tx: &mut AnyConnection,
    tenant: &str,
    number: &str,
    hash: Option<&str>,
    c: &AgentChanges,
) -> Result<bool, StoreError> {
    let networks = c.networks.as_ref().map(|n| {
        n.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    });
    let n = sqlx::query(
        "UPDATE agents SET name = COALESCE($1, name), enabled = COALESCE($2, enabled), \
         allowed_stations = COALESCE($3, allowed_stations), allowed_networks = COALESCE($4, allowed_networks), \
         default_extension = COALESCE($5, default_extension), language = COALESCE($6, language), \
         must_change = COALESCE($7, must_change), passcode_hash = COALESCE($8, passcode_hash), \
         failed_attempts = CASE WHEN $9 IS NULL THEN failed_attempts ELSE 0 END \
         WHERE tenant = $10 AND number = $11",
    )
    .bind(c.name.as_deref())
    .bind(c.enabled.map(i64::from))
    .bind(c.stations.as_ref().map(|s| s.join(",")))
    .bind(networks)
    .bind(c.default_extension.as_deref())
    .bind(c.language.as_deref())
    .bind(c.must_change.map(i64::from))
    .bind(hash)
    .bind(hash)
    .bind(tenant)
    .bind(number)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(n > 0)
}

const AUDIT_COLUMNS: &str =
    "id, at, tenant, agent, station, source, call_id, event, reason, node_id";

fn audit_record(r: AnyRow) -> AuditRecord {
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
struct AuditEntry<'a> {
    agent: &'a str,
    station: Option<&'a str>,
    source: Option<&'a str>,
    call_id: Option<&'a str>,
    event: AuditEvent,
    reason: Option<&'a str>,
}

impl<'a> AuditEntry<'a> {
    /// An event of a login attempt, with where it came from.
    fn attempt(a: &'a LoginAttempt, event: AuditEvent, reason: Option<&'a str>) -> Self {
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
    fn agent(agent: &'a str, event: AuditEvent, reason: Option<&'a str>) -> Self {
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

/// Ends a change of `rows` rows of agent `number`: none is an unknown agent (and the change
/// rolled back); else the change is audited as `event` and committed.
async fn agent_changed(
    mut tx: sqlx::Transaction<'_, Any>,
    at: At<'_>,
    number: &str,
    rows: u64,
    event: AuditEvent,
) -> Result<(), StoreError> {
    if rows == 0 {
        return Err(StoreError::NoSuchAgent(number.into()));
    }
    audit_row(&mut tx, at, AuditEntry::agent(number, event, None)).await?;
    tx.commit().await?;
    Ok(())
}

async fn audit_row(
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
