//! The nodes sharing the store (heartbeats, the lost ones' stay lines) and the attempt counts they share.

use super::sessions::STAY_SESSIONS_OF_NODE;
use super::*;

impl Db {
    /// Counts an attempt under each `(key, limit)` in the current minute (limit 0: not
    /// counted); true when any count is over its limit.
    pub(in crate::store) async fn count_attempts(
        &self,
        keys: &[(String, u32)],
    ) -> Result<bool, StoreError> {
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
    pub(in crate::store) async fn forget_attempts(&self) -> Result<(), StoreError> {
        let mut tx = self.write(false).await?;
        sqlx::query("DELETE FROM attempts WHERE window_start <= $1")
            .bind(now_ms() - 60_000)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The instance and last heartbeat of node `node_id`, if it is registered.
    pub(in crate::store) async fn node(
        &self,
        node_id: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT instance, last_seen_at FROM nodes WHERE node_id = $1")
                .bind(node_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Registers (or takes over) `node_id` for this `instance`.
    pub(in crate::store) async fn register_node(
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
    pub(in crate::store) async fn heartbeat(
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
    pub(in crate::store) async fn deregister_node(
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
    pub(in crate::store) async fn reap_lost_nodes(
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
            let closed = self
                .end_found(&mut tx, STAY_SESSIONS_OF_NODE, node.as_str(), reason)
                .await?;
            out.push((node, closed.len()));
            ended.extend(closed);
        }
        tx.commit().await?;
        self.tell(ended);
        Ok(out)
    }
}
