//! The session store the rest of the code uses: agents, sessions, audit. Passcodes are hashed
//! with argon2id on the blocking pool behind a semaphore (a login storm cannot stall media) and
//! are never logged, returned or stored in clear.

mod sqlite;

use crate::login::{AgentNumber, Passcode};
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;

/// The tenant every agent belongs to until tenants are configured.
pub const DEFAULT_TENANT: &str = "default";

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
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// An agent as listed (never with its passcode hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub number: String,
    pub name: String,
    pub enabled: bool,
    pub logged_on: bool,
}

/// A logged-on agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub agent: String,
    pub station: String,
    pub source: String,
    pub node_id: String,
    pub status: String,
    /// RFC 3339, UTC.
    pub logged_in_at: String,
}

/// Who is trying to log in, from where.
#[derive(Debug, Clone)]
pub struct LoginAttempt {
    pub agent: AgentNumber,
    pub passcode: Passcode,
    /// The caller's station (From user@host).
    pub station: String,
    /// The caller's signalling address.
    pub source: String,
    pub call_id: String,
}

/// The store's decision on a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginResult {
    LoggedIn,
    /// Unknown agent, disabled agent or wrong passcode: the caller is told the same.
    Incorrect,
    AlreadyLoggedOn,
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

/// Argon2id hashing off the async runtime, a bounded number at a time.
#[derive(Debug, Clone)]
struct Hasher {
    permits: Arc<Semaphore>,
}

impl Hasher {
    fn new() -> Hasher {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hasher {
            permits: Arc::new(Semaphore::new(n)),
        }
    }

    async fn hash(&self, p: &Passcode) -> Result<String, StoreError> {
        let _permit = self.permits.acquire().await.map_err(|_| closed())?;
        let p = p.clone();
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(p.0.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| StoreError::Invalid(format!("cannot hash passcode: {e}")))
        })
        .await
        .map_err(|_| closed())?
    }

    /// Verifies `p` against `phc`; with no hash (unknown agent) it verifies against a dummy so
    /// that unknown agents and wrong passcodes take the same time.
    async fn verify(&self, p: &Passcode, phc: Option<String>) -> Result<bool, StoreError> {
        let _permit = self.permits.acquire().await.map_err(|_| closed())?;
        let p = p.clone();
        tokio::task::spawn_blocking(move || {
            let known = phc.is_some();
            let phc = phc.unwrap_or_else(|| dummy_hash().to_string());
            let ok = PasswordHash::new(&phc)
                .map(|h| {
                    Argon2::default()
                        .verify_password(p.0.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false);
            known && ok
        })
        .await
        .map_err(|_| closed())
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the hashing pool is shut down".into())
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"not-a-passcode", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// The store: SQLite today (embedded, WAL), PostgreSQL when several nodes share it.
#[derive(Debug, Clone)]
pub struct Store {
    db: sqlite::SqliteStore,
    hasher: Hasher,
    /// Recorded on each session: which gateway holds the agent's call.
    node_id: String,
}

impl Store {
    /// Opens (creating when missing) the store at `url` and runs its migrations.
    pub async fn open(url: &str, node_id: &str) -> Result<Store, StoreError> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::Invalid(format!(
                "store URL {url:?} is not supported: use sqlite://PATH"
            )));
        }
        Ok(Store {
            db: sqlite::SqliteStore::open(url).await?,
            hasher: Hasher::new(),
            node_id: node_id.to_string(),
        })
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
        validate_agent_number(number)?;
        validate_passcode(passcode)?;
        let hash = self.hasher.hash(passcode).await?;
        self.db.add_agent(DEFAULT_TENANT, number, name, &hash).await
    }

    pub async fn set_passcode(&self, number: &str, passcode: &Passcode) -> Result<(), StoreError> {
        validate_passcode(passcode)?;
        let hash = self.hasher.hash(passcode).await?;
        self.db.set_passcode(DEFAULT_TENANT, number, &hash).await
    }

    pub async fn remove_agent(&self, number: &str) -> Result<(), StoreError> {
        self.db.remove_agent(DEFAULT_TENANT, number).await
    }

    pub async fn agent_exists(&self, number: &str) -> Result<bool, StoreError> {
        Ok(self
            .db
            .passcode_hash(DEFAULT_TENANT, number)
            .await?
            .is_some())
    }

    pub async fn list_agents(&self) -> Result<Vec<Agent>, StoreError> {
        self.db.list_agents(DEFAULT_TENANT).await
    }

    pub async fn list_sessions(&self) -> Result<Vec<Session>, StoreError> {
        self.db.list_sessions(DEFAULT_TENANT).await
    }

    /// Ends an agent's session; false when it had none.
    pub async fn logout(&self, agent: &str, reason: &str) -> Result<bool, StoreError> {
        self.db.logout(DEFAULT_TENANT, agent, reason).await
    }

    /// Checks the credentials and, when right, records the session in one statement that the
    /// database arbitrates: of two simultaneous logins of one agent, one wins.
    pub async fn login(&self, a: &LoginAttempt) -> Result<LoginResult, StoreError> {
        let stored = self.db.passcode_hash(DEFAULT_TENANT, &a.agent.0).await?;
        let (hash, enabled) = match stored {
            Some((h, e)) => (Some(h), e),
            None => (None, false),
        };
        let known = hash.is_some();
        let right = self.hasher.verify(&a.passcode, hash).await?;
        if !right || !enabled {
            let reason = match (known, right) {
                (false, _) => "unknown agent",
                (true, false) => "wrong passcode",
                (true, true) => "agent disabled",
            };
            self.db
                .audit(DEFAULT_TENANT, a, "login_failed", Some(reason))
                .await?;
            return Ok(LoginResult::Incorrect);
        }
        self.db
            .claim_session(DEFAULT_TENANT, a, &self.node_id)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let s = Store::open(&url, "node-a").await.unwrap();
        (dir, s)
    }

    fn attempt(agent: &str, pass: &str, station: &str) -> LoginAttempt {
        LoginAttempt {
            agent: AgentNumber(agent.into()),
            passcode: Passcode(pass.into()),
            station: station.into(),
            source: "127.0.0.1:5061".into(),
            call_id: format!("call-{station}"),
        }
    }

    #[tokio::test]
    async fn right_wrong_unknown_and_already_on() {
        let (_d, s) = store().await;
        s.add_agent("1001", "Ann", &Passcode("1234".into()))
            .await
            .unwrap();
        assert_eq!(
            s.login(&attempt("1001", "9999", "a@h")).await.unwrap(),
            LoginResult::Incorrect
        );
        assert_eq!(
            s.login(&attempt("4242", "1234", "a@h")).await.unwrap(),
            LoginResult::Incorrect
        );
        assert_eq!(
            s.login(&attempt("1001", "1234", "a@h")).await.unwrap(),
            LoginResult::LoggedIn
        );
        assert_eq!(
            s.login(&attempt("1001", "1234", "b@h")).await.unwrap(),
            LoginResult::AlreadyLoggedOn
        );
        let sessions = s.list_sessions().await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].station, "a@h");
        assert!(s.logout("1001", "test").await.unwrap());
        assert!(!s.logout("1001", "test").await.unwrap());
    }

    #[tokio::test]
    async fn the_hash_is_argon2id_and_not_the_passcode() {
        let (_d, s) = store().await;
        s.add_agent("1001", "", &Passcode("86420".into()))
            .await
            .unwrap();
        let (h, _) =
            s.db.passcode_hash(DEFAULT_TENANT, "1001")
                .await
                .unwrap()
                .unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("86420"));
    }

    #[tokio::test]
    async fn bad_numbers_and_duplicates_are_refused_with_a_reason() {
        let (_d, s) = store().await;
        let p = Passcode("1234".into());
        assert!(matches!(
            s.add_agent("12a", "", &p).await,
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            s.add_agent("1001", "", &Passcode("12".into())).await,
            Err(StoreError::Invalid(_))
        ));
        s.add_agent("1001", "", &p).await.unwrap();
        assert!(matches!(
            s.add_agent("1001", "", &p).await,
            Err(StoreError::AgentExists(_))
        ));
        assert!(matches!(
            s.remove_agent("1002").await,
            Err(StoreError::NoSuchAgent(_))
        ));
    }
}
