//! Sessions: the claim of a login (as the policies decide), listing, status, logouts, expiry.

use super::*;

/// The sessions of the stay lines a node holds (`$1`: the node).
pub(super) const STAY_SESSIONS_OF_NODE: &str =
    "SELECT tenant, agent FROM sessions WHERE node_id = $1 AND stay = 1";

impl Db {
    pub(in crate::store) async fn list_sessions(
        &self,
        tenant: &str,
    ) -> Result<Vec<Session>, StoreError> {
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
    pub(in crate::store) async fn set_status(
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

    pub(in crate::store) async fn status(
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

    pub(in crate::store) async fn logout(
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

    pub(in crate::store) async fn close_stay_sessions(
        &self,
        node_id: &str,
        reason: &str,
    ) -> Result<usize, StoreError> {
        self.end_selected(STAY_SESSIONS_OF_NODE, node_id, reason)
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
        let ended = self.end_found(&mut tx, select, value, reason).await?;
        tx.commit().await?;
        let n = ended.len();
        self.tell(ended);
        Ok(n)
    }

    /// Inside `tx`: ends the sessions `select` (tenant, agent) finds with `value`; the
    /// sessions ended, to tell once `tx` commits.
    pub(super) async fn end_found<'q, T>(
        &self,
        tx: &mut AnyConnection,
        select: &'q str,
        value: T,
        reason: &str,
    ) -> Result<Vec<SessionEnded>, StoreError>
    where
        T: 'q + Send + sqlx::Encode<'q, Any> + sqlx::Type<Any>,
    {
        let found: Vec<(String, String)> = sqlx::query_as(select)
            .bind(value)
            .fetch_all(&mut *tx)
            .await?;
        let mut ended = Vec::new();
        for (tenant, agent) in &found {
            ended.extend(
                delete_session(tx, self.at(tenant), SessionOf::Agent(agent), reason).await?,
            );
        }
        Ok(ended)
    }

    pub(in crate::store) async fn sessions_by_status(
        &self,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM sessions GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(|(s, n)| (s, n as u64)).collect())
    }

    pub(in crate::store) async fn count_sessions(&self) -> Result<usize, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as usize)
    }

    /// Ends every session (of every tenant) logged on before `before_ms`.
    pub(in crate::store) async fn expire_sessions(
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

    pub(in crate::store) async fn logout_station(
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
    pub(in crate::store) async fn claim_session(
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
}

/// (SQLite) The usual login: nobody holds the agent or the station, so every policy claims it
/// and ends nothing. The session and its audit row are written by one batch of
/// statements, its own write transaction, in one round trip to the connection's thread
/// (the general path takes five: BEGIN, SELECT, INSERT, INSERT, COMMIT). True when the
/// session was recorded; false when someone holds either, with nothing written, for the
/// general path to decide (on the same connection). A batch that fails may have stopped
/// inside its transaction: the caller closes the connection rather than give it back.
pub(super) async fn claim_if_free(
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
