//! Agents: their records for a login, failure counts, administrative changes, imports.

use super::*;

impl Db {
    pub(in crate::store) async fn set_passcode(
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

    pub(in crate::store) async fn remove_agent(
        &self,
        tenant: &str,
        number: &str,
    ) -> Result<(), StoreError> {
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
    pub(in crate::store) async fn agent_record(
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
    pub(in crate::store) async fn set_failures(
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

    /// Lifts a lock; false when the agent was not locked.
    pub(in crate::store) async fn unlock(
        &self,
        tenant: &str,
        number: &str,
    ) -> Result<bool, StoreError> {
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
    pub(in crate::store) async fn create_agent(
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
    pub(in crate::store) async fn update_agent(
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
    pub(in crate::store) async fn existing_agents(
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
    pub(in crate::store) async fn import(
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
    pub(in crate::store) async fn agent(
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

    pub(in crate::store) async fn list_agents(
        &self,
        tenant: &str,
    ) -> Result<Vec<Agent>, StoreError> {
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

    /// The passcode hashes made with a pepper (`keyid=` in the PHC string).
    pub(in crate::store) async fn peppered_hashes(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT passcode_hash FROM agents WHERE passcode_hash LIKE '%keyid=%'",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Inserts an agent and applies `changes`; audits `agent_added`.
pub(super) async fn insert_agent(
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
pub(super) async fn apply_changes(
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

pub(super) async fn set_fields(
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

/// Ends a change of `rows` rows of agent `number`: none is an unknown agent (and the change
/// rolled back); else the change is audited as `event` and committed.
pub(super) async fn agent_changed(
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
