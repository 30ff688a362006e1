//! Connections for the login path, lent without sqlx's pool.
//!
//! Two costs of the pool, found in a profile of the SQLite threads during a login storm:
//! each connection keeps its own page cache, and a write on one makes every other read the
//! pages it changed again at its next transaction, so logins spread over the pool's
//! connections mostly started cold; and the pool tests every connection it takes back with a
//! ping, a round trip to the connection's worker thread (two a login, for nothing). The
//! login path keeps its connection warm here (`LANE_CONNECTIONS` in `sqlite.rs` says how
//! many and why). A connection goes back only when the statements it was lent for finished;
//! one whose statement failed, or whose future was dropped before it finished, is closed
//! instead (which rolls back whatever it left open), so none is lent again in an unknown
//! state.

use super::StoreError;
use sqlx::any::AnyConnectOptions;
use sqlx::AnyConnection;
use sqlx::{ConnectOptions, Executor};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// At most `size` connections, opened when first needed and kept while idle.
#[derive(Debug)]
pub(super) struct Lane {
    opts: AnyConnectOptions,
    /// What a new connection runs first.
    setup: &'static str,
    /// Idle connections, with when each came back.
    idle: Mutex<Vec<(AnyConnection, Instant)>>,
    /// A connection idle longer than this is pinged before it is lent (None: never): a
    /// database server that restarted meanwhile closed it, and the call it is lent to must
    /// not be the one to find out.
    ping_after: Option<Duration>,
    permits: Semaphore,
    wait: Duration,
}

/// A connection lent by a [`Lane`]: closed when dropped, unless given back.
#[derive(Debug)]
pub(super) struct Lent<'a> {
    lane: &'a Lane,
    conn: Option<AnyConnection>,
    _permit: SemaphorePermit<'a>,
}

impl Lane {
    /// A lane of up to `size` connections opened with `opts` (each running `setup` first); a
    /// caller waits at most `wait` for one (as for the pool's `acquire_timeout`).
    pub(super) fn new(
        opts: AnyConnectOptions,
        setup: &'static str,
        size: usize,
        wait: Duration,
        ping_after: Option<Duration>,
    ) -> Lane {
        Lane {
            opts,
            setup,
            ping_after,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Semaphore::new(size),
            wait,
        }
    }

    /// An idle connection, or a new one while fewer than `size` are out.
    pub(super) async fn lend(&self) -> Result<Lent<'_>, StoreError> {
        let permit = match tokio::time::timeout(self.wait, self.permits.acquire()).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(StoreError::Unavailable("the store is closed".into())),
            Err(_) => {
                return Err(StoreError::Unavailable(format!(
                    "no database connection free within {:?}",
                    self.wait
                )))
            }
        };
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let idle = match idle {
            Some((mut c, since)) if self.ping_after.is_some_and(|p| since.elapsed() > p) => {
                match tokio::time::timeout(self.wait, sqlx::Connection::ping(&mut c)).await {
                    Ok(Ok(())) => Some(c),
                    _ => None,
                }
            }
            other => other.map(|(c, _)| c),
        };
        let conn = match idle {
            Some(c) => c,
            None => self
                .connect()
                .await
                .map_err(|e| StoreError::Unavailable(format!("cannot open the database: {e}")))?,
        };
        Ok(Lent {
            lane: self,
            conn: Some(conn),
            _permit: permit,
        })
    }

    /// A new connection, within the lane's wait (a database host that does not answer must
    /// not leave a caller in silence for the kernel's TCP timeout).
    async fn connect(&self) -> Result<AnyConnection, sqlx::Error> {
        let connect = async {
            let mut conn = self.opts.connect().await?;
            conn.execute(self.setup).await?;
            Ok(conn)
        };
        tokio::time::timeout(self.wait, connect)
            .await
            .unwrap_or(Err(sqlx::Error::PoolTimedOut))
    }

    /// Lends nothing more and closes the idle connections (those out are closed when they
    /// come back).
    pub(super) async fn close(&self) {
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|p| p.into_inner()));
        for (c, _) in idle {
            sqlx::Connection::close(c).await.ok();
        }
    }

    #[cfg(test)]
    pub(super) fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Lent<'_> {
    pub(super) fn conn(&mut self) -> &mut AnyConnection {
        // Only `give_back` (which consumes the loan) takes it out.
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("a loan holds its connection until given back"))
    }

    /// Its statements finished: the connection is idle again, for the next loan.
    pub(super) fn give_back(mut self) {
        if let Some(c) = self.conn.take() {
            if !self.lane.permits.is_closed() {
                self.lane
                    .idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((c, Instant::now()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[tokio::test]
    async fn a_loan_given_back_is_lent_again_and_one_left_unfinished_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}/lane.db?mode=rwc", dir.path().display());
        let opts = AnyConnectOptions::from_str(&url).unwrap();
        let lane = Lane::new(
            opts,
            "PRAGMA busy_timeout = 2000",
            2,
            Duration::from_millis(200),
            None,
        );
        let mut a = lane.lend().await.unwrap();
        sqlx::query("CREATE TABLE t (x)")
            .execute(a.conn())
            .await
            .unwrap();
        a.give_back();
        assert_eq!(lane.idle(), 1);

        // Left inside its write transaction (a statement failed, or its future was dropped
        // mid-way): closed, not lent again, and the write lock goes with it.
        let mut b = lane.lend().await.unwrap();
        assert_eq!(lane.idle(), 0, "the idle one was lent");
        sqlx::query("BEGIN IMMEDIATE; INSERT INTO t VALUES (1)")
            .execute(b.conn())
            .await
            .unwrap();
        drop(b);
        assert_eq!(lane.idle(), 0);
        let mut c = lane.lend().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE; INSERT INTO t VALUES (2); COMMIT")
            .execute(c.conn())
            .await
            .expect("the dropped loan's transaction was rolled back and its lock released");
        let rows: Vec<i64> = sqlx::query_scalar("SELECT x FROM t")
            .fetch_all(c.conn())
            .await
            .unwrap();
        assert_eq!(rows, vec![2]);

        // Two out at most: a third waits, then hears the store is unavailable.
        let d = lane.lend().await.unwrap();
        assert!(matches!(lane.lend().await, Err(StoreError::Unavailable(_))));
        c.give_back();
        d.give_back();
        assert_eq!(lane.idle(), 2);

        lane.close().await;
        assert_eq!(lane.idle(), 0);
        assert!(matches!(lane.lend().await, Err(StoreError::Unavailable(_))));
    }
}
