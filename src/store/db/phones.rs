//! Phone accounts: their sealed digest secrets, by user name.

use super::*;

impl Db {
    /// Adds a phone account, or replaces its secret; true when it was new.
    pub(in crate::store) async fn put_phone(
        &self,
        username: &str,
        realm: &str,
        secret: &str,
    ) -> Result<bool, StoreError> {
        // Immediate: it reads, then writes.
        let mut tx = self.write(true).await?;
        let existed: Option<i64> =
            sqlx::query_scalar("SELECT created_at FROM phones WHERE username = $1")
                .bind(username)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO phones (username, realm, secret, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (username) DO UPDATE SET realm = excluded.realm, secret = excluded.secret",
        )
        .bind(username)
        .bind(realm)
        .bind(secret)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(existed.is_none())
    }

    /// The realm and sealed secret of `username`'s account.
    pub(in crate::store) async fn phone(
        &self,
        username: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT realm, secret FROM phones WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Every account: user name, realm, created (ms), by user name.
    pub(in crate::store) async fn phones(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT username, realm, created_at FROM phones ORDER BY username")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Removes `username`'s account; false when there was none.
    pub(in crate::store) async fn remove_phone(&self, username: &str) -> Result<bool, StoreError> {
        let mut tx = self.write(false).await?;
        let n = sqlx::query("DELETE FROM phones WHERE username = $1")
            .bind(username)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }
}
