//! The session store the rest of the code uses: agents, sessions, audit. It reads, hashes and
//! writes; what a login attempt means is `login::decide`'s. Passcodes are hashed with argon2id
//! on threads of their own (`hasher.rs`) and are never logged, returned or stored in clear.

mod agents;
mod db;
mod hasher;
mod lane;
mod phones;
pub use phones::{Phone, MIN_PHONE_PASSWORD_CHARS};

use hasher::Hasher;
pub use hasher::{HashSettings, DEFAULT_HASH_ITERATIONS, DEFAULT_HASH_MEMORY_KIB};

pub use agents::{
    parse_import, parse_networks, AgentChanges, AgentFieldsInput, AgentInput, ImportRow,
    ImportSummary, IMPORT_COLUMNS, MAX_IMPORT_ROWS,
};

pub(crate) use crate::login::decide::AgentRecord;
use crate::login::decide::{decide, Attempt, Entry, Rules, Verdict, Writes, LOCKOUT};
use crate::login::rules::Network;
use crate::login::AuditEvent;
use crate::login::{AgentNumber, AgentStatus, CallId, Mode, Passcode, Station, Tenant};
use std::net::IpAddr;
use std::sync::Arc;
use tracing::warn;

pub use crate::login::rules::{LoginPolicy, REASON_ADMINISTRATOR};

/// The tenant every agent belongs to until tenants are configured.
pub use crate::login::DEFAULT_TENANT;

/// A store failure, phrased for whoever sees it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("agent {0} does not exist")]
    NoSuchAgent(String),
    #[error("agent {0} already exists")]
    AgentExists(String),
    #[error("{0}")]
    Invalid(String),
    /// An import refused as a whole: one message per bad line.
    #[error("nothing was imported: {}", .0.join("; "))]
    Import(Vec<String>),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// An agent as listed (never with its passcode hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Agent {
    pub tenant: String,
    pub number: String,
    pub name: String,
    pub enabled: bool,
    pub logged_on: bool,
    /// Locked after too many wrong passcodes, now.
    pub locked: bool,
    /// "Logon Stations" patterns (empty: any station).
    pub stations: Vec<String>,
    /// Networks the agent may log on from (empty: any).
    pub networks: Vec<String>,
    /// The station used when the agent presses # at the extension prompt.
    pub default_extension: String,
    /// Prompt language; empty: the tenant's.
    pub language: String,
    /// The passcode must be changed at the next login.
    pub must_change: bool,
}

/// A logged-on agent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Session {
    pub agent: String,
    pub station: String,
    pub source: String,
    pub node_id: String,
    pub status: String,
    /// RFC 3339, UTC.
    pub logged_in_at: String,
}

/// A session that ended (logout, a move to another station, a station taken over, agent
/// removed): the gateway drops the stay line that held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnded {
    pub agent: String,
    pub station: String,
    /// The call that logged the agent on (a stay line keeps it up).
    pub call_id: Option<String>,
    pub reason: String,
}

/// One line of the audit log (and one event of the event stream and webhooks).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Increasing: the event stream's `id`, a consumer's Last-Event-ID.
    pub id: i64,
    /// RFC 3339, UTC, with milliseconds.
    pub at: String,
    pub tenant: String,
    pub agent: Option<String>,
    pub station: Option<String>,
    pub source: Option<String>,
    /// The SIP Call-ID of the call the event happened on.
    pub call_id: Option<String>,
    pub event: String,
    pub reason: Option<String>,
    /// The node that wrote it: a gateway's `[gateway] node_id`, or that of the command line
    /// that did (none for entries written before nodes were recorded).
    pub node: Option<String>,
}

/// Which page of the audit log to read: newest first, or oldest first after an id.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditQuery<'a> {
    pub agent: Option<&'a str>,
    /// Entries older than this id, newest first (the previous page's last id).
    pub before: Option<i64>,
    /// Entries newer than this id, oldest first (paging forward, as the event stream does).
    pub after: Option<i64>,
    pub limit: u32,
}

/// Who is trying to log in, from where.
#[derive(Debug, Clone)]
pub struct LoginAttempt {
    pub agent: AgentNumber,
    pub passcode: Passcode,
    /// The caller's station (From user@host).
    pub station: Station,
    /// The caller's signalling address (`ip:port`) and its IP.
    pub source: String,
    pub source_ip: IpAddr,
    pub call_id: CallId,
    /// The caller confirmed moving the agent's session here.
    pub replace: bool,
    /// A forced passcode change: the new passcode to set before logging on.
    pub new_passcode: Option<Passcode>,
    /// The station or the source is over its attempts a minute: refused unseen.
    pub over_limit: bool,
    /// The extension keyed (`station = "prompt"`): the station to log on at; empty: the
    /// agent's default extension.
    pub extension: Option<String>,
}

/// The store's decision on a login attempt: the flow's own vocabulary (the store never
/// answers `Status` or `Unavailable`; the caller maps a store error to `Unavailable`).
pub type LoginResult = crate::login::CheckOutcome;

/// Whether a store URL names a PostgreSQL database (several nodes sharing it).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// How often a gateway tells the store it is alive, for a node timeout: a tenth of it, from 1
/// to 5 seconds.
pub fn heartbeat_every(timeout: std::time::Duration) -> std::time::Duration {
    (timeout / 10).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(5),
    )
}

/// A store URL fit to show: its password replaced by `****`.
pub fn mask_password(url: &str) -> String {
    let mut url = url.to_string();
    if let (Some(at), Some(scheme_end)) = (url.rfind('@'), url.find("://")) {
        if let Some(colon) = url[scheme_end + 3..at].find(':') {
            url.replace_range(scheme_end + 3 + colon + 1..at, "****");
        }
    }
    url
}

/// Checks that an agent number is something a phone can key: 1 to 16 digits.
pub fn validate_agent_number(n: &str) -> Result<(), StoreError> {
    if (1..=16).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "agent number {n:?} must be 1 to 16 digits (it is keyed on a phone)"
        )))
    }
}

/// Checks that a passcode is something a phone can key: 4 to 16 digits.
pub fn validate_passcode(p: &Passcode) -> Result<(), StoreError> {
    if (4..=16).contains(&p.0.len()) && p.0.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(StoreError::Invalid(
            "a passcode must be 4 to 16 digits (it is keyed on a phone)".into(),
        ))
    }
}

/// The store: SQLite today (embedded, WAL), PostgreSQL when several nodes share it.
#[derive(Debug, Clone)]
pub struct Store {
    db: db::Db,
    hasher: Hasher,
    /// Recorded on each session: which gateway holds the agent's call.
    node_id: String,
    /// The tenant this view of the store works in: agent numbers, stations and sessions are
    /// per tenant.
    tenant: Tenant,
    /// How long the login path's queries take (for `/metrics`).
    latency: Arc<crate::metrics::Histogram>,
}

impl Store {
    /// Opens (creating when missing) the store at `url` and runs its migrations, hashing with
    /// the default parameters and no pepper.
    pub async fn open(url: &str, node_id: &str) -> Result<Store, StoreError> {
        Store::open_with(url, node_id, &HashSettings::default()).await
    }

    /// Opens the store, hashing passcodes as `hashing` says.
    pub async fn open_with(
        url: &str,
        node_id: &str,
        hashing: &HashSettings,
    ) -> Result<Store, StoreError> {
        Ok(Store {
            db: db::Db::open(url, node_id).await?,
            hasher: Hasher::new(hashing)?,
            node_id: node_id.to_string(),
            tenant: Tenant(DEFAULT_TENANT.to_string()),
            latency: Arc::default(),
        })
    }

    /// The same store, working in `tenant`.
    pub fn for_tenant(&self, tenant: &str) -> Store {
        Store {
            tenant: Tenant(tenant.to_string()),
            ..self.clone()
        }
    }

    /// The latency of the login path's queries.
    pub fn latency(&self) -> &crate::metrics::Histogram {
        &self.latency
    }

    async fn timed<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let r = f.await;
        self.latency.observe(started.elapsed());
        r
    }

    /// Sessions of every tenant by status.
    pub async fn sessions_by_status(&self) -> Result<Vec<(String, u64)>, StoreError> {
        self.timed(self.db.sessions_by_status()).await
    }

    /// How many agents' passcodes were hashed with a pepper, and how many of those with
    /// another pepper than this store's (they cannot log in).
    pub async fn peppered_hashes(&self) -> Result<(usize, usize), StoreError> {
        let hashes = self.db.peppered_hashes().await?;
        let ours = self.hasher.pepper_keyid_b64();
        let other = hashes
            .iter()
            .filter(|h| {
                ours.as_ref()
                    .is_none_or(|o| !h.contains(&format!("keyid={o}")))
            })
            .count();
        Ok((hashes.len(), other))
    }

    /// The tenant this view works in.
    pub fn tenant(&self) -> &str {
        self.tenant.as_str()
    }

    /// Closes the store; every later query fails as "unavailable".
    pub async fn close(&self) {
        self.db.close().await;
    }

    pub async fn add_agent(
        &self,
        number: &str,
        name: &str,
        passcode: &Passcode,
    ) -> Result<(), StoreError> {
        let changes = AgentChanges {
            name: Some(name.to_string()),
            ..AgentChanges::default()
        };
        self.create_agent(number, passcode, &changes).await
    }

    /// Creates an agent with its settings in one transaction.
    pub async fn create_agent(
        &self,
        number: &str,
        passcode: &Passcode,
        changes: &AgentChanges,
    ) -> Result<(), StoreError> {
        validate_agent_number(number)?;
        validate_passcode(passcode)?;
        changes.validate()?;
        let hash = self.hasher.hash(passcode).await?;
        self.db
            .create_agent(self.tenant.as_str(), number, &hash, changes)
            .await
    }

    /// Changes an agent's settings in one transaction.
    pub async fn update_agent(
        &self,
        number: &str,
        changes: &AgentChanges,
    ) -> Result<(), StoreError> {
        changes.validate()?;
        self.db
            .update_agent(self.tenant.as_str(), number, None, changes)
            .await
    }

    /// One agent, if it exists.
    pub async fn agent(&self, number: &str) -> Result<Option<Agent>, StoreError> {
        self.db.agent(self.tenant.as_str(), number).await
    }

    /// Sets a passcode and whether it must be changed at the next login.
    pub async fn reset_passcode(
        &self,
        number: &str,
        passcode: &Passcode,
        must_change: bool,
    ) -> Result<(), StoreError> {
        validate_passcode(passcode)?;
        let hash = self.hasher.hash(passcode).await?;
        let changes = AgentChanges {
            must_change: Some(must_change),
            ..AgentChanges::default()
        };
        self.db
            .update_agent(self.tenant.as_str(), number, Some(&hash), &changes)
            .await
    }

    /// Creates or updates every agent of an import in one transaction, or none: every row is
    /// checked first and all the problems are reported together, with their lines.
    /// `errors` are problems already found (parse errors), reported with the rest.
    pub async fn import_agents(
        &self,
        rows: &[ImportRow],
        mut errors: Vec<String>,
    ) -> Result<ImportSummary, StoreError> {
        let mut seen = std::collections::HashMap::new();
        for r in rows {
            if let Err(e) = r.validate() {
                errors.push(format!("line {}: {e}", r.line));
            }
            if let Some(first) = seen.insert(r.number.as_str(), r.line) {
                errors.push(format!(
                    "line {}: agent {} is also on line {first}",
                    r.line, r.number
                ));
            }
        }
        let numbers: Vec<&str> = rows.iter().map(|r| r.number.as_str()).collect();
        let existing = self
            .db
            .existing_agents(self.tenant.as_str(), &numbers)
            .await?;
        for r in rows {
            if r.passcode.is_none() && !existing.contains(&r.number) {
                errors.push(format!(
                    "line {}: agent {} does not exist, so it needs a passcode",
                    r.line, r.number
                ));
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| {
                e.split_once(' ')
                    .and_then(|(_, rest)| rest.split(':').next())
                    .and_then(|n| n.parse::<usize>().ok())
            });
            return Err(StoreError::Import(errors));
        }
        let mut hashed = Vec::with_capacity(rows.len());
        for r in rows {
            let hash = match &r.passcode {
                Some(p) => Some(self.hasher.hash(p).await?),
                None => None,
            };
            hashed.push((r.line, r.number.clone(), hash, r.changes.clone()));
        }
        self.db.import(self.tenant.as_str(), &hashed).await
    }

    pub async fn set_passcode(&self, number: &str, passcode: &Passcode) -> Result<(), StoreError> {
        validate_passcode(passcode)?;
        let hash = self.hasher.hash(passcode).await?;
        self.db
            .set_passcode(self.tenant.as_str(), number, &hash)
            .await
    }

    pub async fn remove_agent(&self, number: &str) -> Result<(), StoreError> {
        self.db.remove_agent(self.tenant.as_str(), number).await
    }

    pub async fn agent_exists(&self, number: &str) -> Result<bool, StoreError> {
        Ok(self
            .db
            .agent_record(self.tenant.as_str(), number)
            .await?
            .is_some())
    }

    /// Sets where an agent may log on: station patterns and networks (empty: anywhere).
    pub async fn set_restrictions(
        &self,
        number: &str,
        stations: &[String],
        networks: &[Network],
    ) -> Result<(), StoreError> {
        let changes = AgentChanges {
            stations: Some(stations.to_vec()),
            networks: Some(networks.to_vec()),
            ..AgentChanges::default()
        };
        self.update_agent(number, &changes).await
    }

    /// The latest audit entries (newest first), of one agent or all.
    pub async fn audit_log(
        &self,
        agent: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.audit_page(AuditQuery {
            agent,
            limit,
            ..AuditQuery::default()
        })
        .await
    }

    /// A page of the audit log (at most 1000 entries).
    pub async fn audit_page(&self, q: AuditQuery<'_>) -> Result<Vec<AuditRecord>, StoreError> {
        let q = AuditQuery {
            limit: q.limit.clamp(1, 1000),
            ..q
        };
        self.db.audit_log(self.tenant.as_str(), &q).await
    }

    /// Audit entries of every tenant after the id `after`, oldest first (at most `limit`).
    pub async fn audit_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.db.audit_after(after, limit.clamp(1, 1000)).await
    }

    /// The id of the latest audit entry of every tenant (0: none).
    pub async fn last_audit_id(&self) -> Result<i64, StoreError> {
        self.db.last_audit_id().await
    }

    /// How many audit entries of `event` an agent has.
    pub async fn audit_events(&self, agent: &str, event: &str) -> Result<usize, StoreError> {
        self.db
            .audit_count(self.tenant.as_str(), agent, event)
            .await
    }

    /// Sets an agent's prompt language (empty: the tenant's).
    pub async fn set_language(&self, number: &str, language: &str) -> Result<(), StoreError> {
        let changes = AgentChanges {
            language: Some(language.to_string()),
            ..AgentChanges::default()
        };
        self.update_agent(number, &changes).await
    }

    /// Sets the extension an agent logs on at when pressing # at the extension prompt.
    pub async fn set_default_extension(
        &self,
        number: &str,
        extension: &str,
    ) -> Result<(), StoreError> {
        let changes = AgentChanges {
            default_extension: Some(extension.to_string()),
            ..AgentChanges::default()
        };
        self.update_agent(number, &changes).await
    }

    /// Flags (or clears) an agent's "change the passcode at the next login".
    pub async fn set_must_change(&self, number: &str, must_change: bool) -> Result<(), StoreError> {
        let changes = AgentChanges {
            must_change: Some(must_change),
            ..AgentChanges::default()
        };
        self.update_agent(number, &changes).await
    }

    /// Lifts a lockout; false when the agent was not locked.
    pub async fn unlock(&self, number: &str) -> Result<bool, StoreError> {
        self.db.unlock(self.tenant.as_str(), number).await
    }

    pub async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.db.list_agents(self.tenant.as_str()).await
    }

    pub async fn list_sessions(&self) -> Result<Vec<Session>, StoreError> {
        self.db.list_sessions(self.tenant.as_str()).await
    }

    /// Closes the sessions of stay lines this gateway held before it restarted (their lines
    /// are gone); how many.
    pub async fn close_stay_sessions(&self) -> Result<usize, StoreError> {
        self.db
            .close_stay_sessions(&self.node_id, crate::login::rules::REASON_RESTART)
            .await
    }

    /// Registers this gateway as a live node of the store, under a new instance id (returned).
    /// A node id seen alive within `timeout` is this gateway's own run that just died, or
    /// another gateway with the same id: it is watched for two heartbeats, and if it beats,
    /// this start is refused.
    pub async fn join_nodes(&self, timeout: std::time::Duration) -> Result<String, StoreError> {
        let instance = format!("{:016x}", rand::random::<u64>());
        if let Some((_, seen)) = self.db.node(&self.node_id).await? {
            if db::now_ms() - seen < timeout.as_millis() as i64 {
                tokio::time::sleep(
                    heartbeat_every(timeout) * 2 + std::time::Duration::from_millis(500),
                )
                .await;
                if let Some((_, again)) = self.db.node(&self.node_id).await? {
                    if again > seen {
                        return Err(StoreError::Invalid(format!(
                            "node_id {:?} is in use by another running gateway on this store: \
                             give each node its own [gateway] node_id",
                            self.node_id
                        )));
                    }
                }
            }
        }
        self.db.register_node(&self.node_id, &instance).await?;
        Ok(instance)
    }

    /// This node is alive. False when another instance took its node id (or a node declared
    /// this one lost): it registers again and says so.
    pub async fn heartbeat(&self, instance: &str) -> Result<bool, StoreError> {
        if self.db.heartbeat(&self.node_id, instance).await? {
            return Ok(true);
        }
        self.db.register_node(&self.node_id, instance).await?;
        Ok(false)
    }

    /// This node stops cleanly: nobody needs to watch for it.
    pub async fn leave_nodes(&self, instance: &str) -> Result<(), StoreError> {
        self.db.deregister_node(&self.node_id, instance).await
    }

    /// Closes the stay-line sessions of the nodes silent for `timeout` ("node lost"), each
    /// node by one survivor only; the nodes lost and their sessions closed.
    pub async fn reap_lost_nodes(
        &self,
        timeout: std::time::Duration,
    ) -> Result<Vec<(String, usize)>, StoreError> {
        let before = db::now_ms() - timeout.as_millis() as i64;
        self.db
            .reap_lost_nodes(&self.node_id, before, crate::login::rules::REASON_NODE_LOST)
            .await
    }

    /// On a store several nodes share: counts the attempt in the store, per calling station
    /// and per source address and minute, so that calls spread over the nodes count together
    /// (each node also counts its own in memory); true when over a limit.
    async fn over_shared_limits(
        &self,
        a: &LoginAttempt,
        policy: &LoginPolicy,
    ) -> Result<bool, StoreError> {
        if !self.db.shared() {
            return Ok(false);
        }
        let keys = [
            (
                format!("station:{}:{}", self.tenant, a.station),
                policy.station_attempts_per_min,
            ),
            (
                format!("source:{}", a.source_ip),
                policy.source_attempts_per_min,
            ),
        ];
        self.timed(self.db.count_attempts(&keys)).await
    }

    /// Forgets the shared attempt counts of past minutes.
    pub async fn forget_attempts(&self) -> Result<(), StoreError> {
        self.db.forget_attempts().await
    }

    /// A wake-up each time any process on this store commits audit entries (PostgreSQL's
    /// LISTEN/NOTIFY); None when the store cannot tell (SQLite: the audit log is polled).
    pub fn audit_wakeups(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        self.db.audit_wakeups()
    }

    /// Sessions of every tenant.
    pub async fn count_sessions(&self) -> Result<usize, StoreError> {
        self.db.count_sessions().await
    }

    /// Ends the sessions (of every tenant) older than `max_age`; how many.
    pub async fn expire_sessions(&self, max_age: std::time::Duration) -> Result<usize, StoreError> {
        let before = db::now_ms() - max_age.as_millis() as i64;
        self.db
            .expire_sessions(before, crate::login::rules::REASON_SESSION_EXPIRED)
            .await
    }

    /// Every session ended from now on (for the stay lines this gateway holds).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<SessionEnded> {
        self.db.subscribe()
    }

    /// Sets a logged-on agent's status; false when the agent has no session.
    pub async fn set_status(&self, agent: &str, status: AgentStatus) -> Result<bool, StoreError> {
        self.db
            .set_status(self.tenant.as_str(), agent, status)
            .await
    }

    /// A logged-on agent's status; `None` when the agent has no session.
    pub async fn status(&self, agent: &str) -> Result<Option<AgentStatus>, StoreError> {
        self.db.status(self.tenant.as_str(), agent).await
    }

    /// Ends an agent's session; false when it had none.
    pub async fn logout(&self, agent: &str, reason: &str) -> Result<bool, StoreError> {
        self.timed(self.db.logout(self.tenant.as_str(), agent, reason))
            .await
    }

    /// Checks a login against the credentials and the rules (`login::decide`) and, when
    /// everything allows it, records the session as the policies say (`rules::decide_claim`).
    /// Every decision is audited with its reason; refusals are logged with the source address
    /// in a stable format (`login failed: …` / `login refused: … source=IP`) for fail2ban.
    pub async fn login(
        &self,
        a: &LoginAttempt,
        policy: &LoginPolicy,
    ) -> Result<LoginResult, StoreError> {
        Ok(self.login_identified(a, policy).await?.0)
    }

    /// `login`, with the agent's own prompt language when the credentials were right (read
    /// with the credentials, not by a second query).
    pub async fn login_identified(
        &self,
        a: &LoginAttempt,
        policy: &LoginPolicy,
    ) -> Result<(LoginResult, Option<String>), StoreError> {
        let (station, language) = match self.check(a, policy, Mode::Login).await? {
            (Ok(station), language) => (station, language),
            (Err(answer), language) => return Ok((answer, language)),
        };
        // A keyed extension is the station to claim; otherwise the attempt as it came.
        let moved;
        let a = if station == a.station.0 {
            a
        } else {
            moved = LoginAttempt {
                station: Station(station),
                ..a.clone()
            };
            &moved
        };
        let result = self
            .timed(
                self.db
                    .claim_session(self.tenant.as_str(), a, &self.node_id, policy),
            )
            .await?;
        Ok((result, language))
    }

    /// Logs an agent off by phone with its credentials (checked like a login).
    pub async fn logout_with_credentials(
        &self,
        a: &LoginAttempt,
        policy: &LoginPolicy,
    ) -> Result<(LoginResult, Option<String>), StoreError> {
        let language = match self.check(a, policy, Mode::Logout).await? {
            (Ok(_), language) => language,
            (Err(answer), language) => return Ok((answer, language)),
        };
        let result = if self.logout(&a.agent.0, "logged off by phone").await? {
            LoginResult::LoggedOff
        } else {
            LoginResult::NotLoggedOn
        };
        Ok((result, language))
    }

    /// Ends the session of whoever is logged on at `station`; the agent, if there was one.
    pub async fn logout_station(
        &self,
        station: &str,
        reason: &str,
    ) -> Result<Option<String>, StoreError> {
        self.db
            .logout_station(self.tenant.as_str(), station, reason)
            .await
    }

    /// Reads the agent, verifies the passcode and writes what `decide` says: the station to
    /// go on at, or the answer for a caller who may go no further; with the agent's language
    /// when the credentials were right. Over the attempt limits nothing is read or hashed.
    async fn check(
        &self,
        a: &LoginAttempt,
        policy: &LoginPolicy,
        mode: Mode,
    ) -> Result<(Result<String, LoginResult>, Option<String>), StoreError> {
        let over_limit = a.over_limit || self.over_shared_limits(a, policy).await?;
        let (record, right) = if over_limit {
            (None, false)
        } else {
            let record = self
                .timed(self.db.agent_record(self.tenant.as_str(), &a.agent.0))
                .await?;
            let hash = record.as_ref().map(|r| r.passcode_hash.clone());
            // Verified even for unknown agents (against a dummy), so every answer takes as long.
            let right = self.hasher.verify(&a.passcode, hash).await?;
            (record, right)
        };
        let attempt = Attempt {
            mode,
            over_limit,
            source_ip: a.source_ip,
            station: a.station.as_str(),
            extension: a.extension.as_deref(),
            new_passcode: a.new_passcode.as_ref(),
            agent: &a.agent.0,
        };
        let rules = Rules {
            networks: &policy.networks,
            lockout: &policy.lockout,
        };
        let verdict = decide(&attempt, record.as_ref(), right, &rules, db::now_ms());
        let language = record
            .filter(|r| verdict.credentials_right() && !r.language.is_empty())
            .map(|r| r.language);
        match verdict {
            Verdict::Stop {
                answer,
                audit,
                writes,
            } => {
                if audit.is_security() {
                    security_log(audit, a);
                }
                self.write(a, writes).await?;
                self.timed(self.db.audit(self.tenant.as_str(), a, audit))
                    .await?;
                Ok((Err(answer), language))
            }
            Verdict::BadNewPasscode { problem, writes } => {
                self.write(a, writes).await?;
                Err(StoreError::Invalid(format!("new passcode {problem}")))
            }
            Verdict::Proceed { station, writes } => {
                self.write(a, writes).await?;
                Ok((Ok(station), language))
            }
        }
    }

    /// The writes of a decision: the failure record (and a lockout), the new passcode.
    async fn write(&self, a: &LoginAttempt, writes: Writes) -> Result<(), StoreError> {
        if let Some((failures, locked_now)) = writes.failures {
            if locked_now {
                security_log(LOCKOUT, a);
            }
            let lockout = locked_now.then_some(LOCKOUT);
            self.db
                .set_failures(self.tenant.as_str(), a, failures, lockout)
                .await?;
        }
        if let (true, Some(new)) = (writes.set_passcode, &a.new_passcode) {
            let hash = self.hasher.hash(new).await?;
            self.db
                .set_passcode(self.tenant.as_str(), &a.agent.0, &hash)
                .await?;
        }
        Ok(())
    }
}

/// One line per refused or failed login, with the source address last, for fail2ban (see the
/// docs/login-rules.md for the filter).
pub fn security_log(entry: Entry, a: &LoginAttempt) {
    let what = match entry.event {
        AuditEvent::LoginFailed => "login failed",
        AuditEvent::Lockout => "agent locked",
        _ => "login refused",
    };
    warn!(
        target: "agentgw::security",
        "{what}: reason=\"{}\" agent={} station={} source={}",
        entry.reason, a.agent, a.station, a.source_ip
    );
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
