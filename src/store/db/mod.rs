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

mod agents;
mod audit;
mod nodes;
mod phones;
mod sessions;

use audit::*;

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

    /// Whether several nodes may share this store (PostgreSQL).
    pub(super) fn shared(&self) -> bool {
        self.backend == Backend::Postgres
    }
}
