//! Who may call: a caller from `[sip] trusted_networks` is taken as it is, any other is
//! challenged with SIP Digest (`crate::digest`) and its phone account becomes its station.

use super::*;
use crate::digest::{self, Authenticate, First, Ha1s};
use crate::limits::SourceLimiter;
use futures_util::future::BoxFuture;

/// Whose word a call's station is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// From `[sip] trusted_networks`: the station (From, or what the PBX asserts) is the
    /// PBX's word.
    Trusted,
    /// Authenticated with Digest as this phone account, which is its station.
    Authenticated(String),
    /// Taken without authentication (`[sip] authenticate = "off"`): its station is its From,
    /// which it could have forged.
    Unverified,
}

impl Caller {
    /// Whether the station is known to be the caller's (a logout call may end its session
    /// without the agent's passcode).
    pub fn station_verified(&self) -> bool {
        !matches!(self, Caller::Unverified)
    }
}

/// Reads a phone account's Digest secrets (the store, in the gateway); Err: the store is
/// unavailable.
#[derive(Clone)]
pub struct PhoneAccounts(pub Arc<dyn Fn(String) -> AccountRead + Send + Sync>);

/// A read of one account's secrets.
pub type AccountRead = BoxFuture<'static, Result<Option<Ha1s>, String>>;

impl std::fmt::Debug for PhoneAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PhoneAccounts")
    }
}

/// Failed authentications a minute from one source address, past which its credentials are
/// refused unread (403) until the minute ends: a password guessed online costs a minute per
/// 20 guesses. Bounded like the attempt limiters (`SourceLimiter`).
pub const MAX_AUTH_FAILURES_PER_MINUTE: u32 = 20;

/// What authentication needs: the policy, the realm, the accounts, the nonces issued and the
/// failures counted by source.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub authenticate: Authenticate,
    pub realm: String,
    /// Offered in this order.
    pub algorithms: Vec<digest::Algorithm>,
    pub accounts: PhoneAccounts,
    pub nonces: Arc<digest::Nonces>,
    pub failures: Arc<Mutex<SourceLimiter>>,
}

impl AuthSettings {
    /// New: no nonce issued, no failure counted.
    pub fn new(
        authenticate: Authenticate,
        realm: String,
        algorithms: Vec<digest::Algorithm>,
        accounts: PhoneAccounts,
    ) -> AuthSettings {
        AuthSettings {
            authenticate,
            realm,
            algorithms,
            accounts,
            nonces: Arc::default(),
            failures: Arc::new(Mutex::new(SourceLimiter::new(MAX_AUTH_FAILURES_PER_MINUTE))),
        }
    }

    /// Whether `source` failed too often this minute.
    fn spent(&self, source: IpAddr) -> bool {
        let now = std::time::Instant::now();
        self.failures
            .lock()
            .is_ok_and(|f| f.spent(&source.to_string(), now))
    }

    /// Counts a failure of `source`.
    fn failed(&self, source: IpAddr) {
        if let Ok(mut f) = self.failures.lock() {
            f.allow(&source.to_string(), std::time::Instant::now());
        }
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One line per refused authentication, the source last, for fail2ban.
fn refused(why: &str, user: &str, source: SocketAddr) {
    warn!(
        target: "agentgw::security",
        "phone refused: reason=\"{why}\" user={user} source={}",
        source.ip()
    );
}

impl Acceptor {
    /// A new INVITE from `source`: taken on (`admit`) as the caller it is, or answered 401
    /// (challenged) or 403 (refused); a caller's credentials are checked in a task of its
    /// own, as its account is read from the store.
    pub(super) async fn on_invite(self: &Arc<Self>, tx: Transaction) {
        let Some(source) = source_of(&tx) else {
            spawn_reply(tx, StatusCode::BadRequest, vec![]);
            return;
        };
        if self
            .settings
            .trusted
            .iter()
            .any(|n| n.contains(source.ip()))
        {
            return self.admit(tx, source, Caller::Trusted).await;
        }
        let auth = &self.settings.auth;
        if auth.authenticate == Authenticate::Off {
            return self.admit(tx, source, Caller::Unverified).await;
        }
        let now = now_secs();
        let value = tx.original.header_value("Authorization");
        let credentials = match digest::first(
            value.as_deref(),
            &auth.realm,
            &auth.algorithms,
            &auth.nonces,
            now,
        ) {
            First::Challenge { stale } => {
                let nonce = auth.nonces.issue(now);
                let headers = digest::challenges(&auth.realm, &auth.algorithms, &nonce, stale)
                    .into_iter()
                    .map(|c| Header::WwwAuthenticate(c.into()))
                    .collect();
                debug!(%source, stale, "INVITE challenged: 401");
                spawn_reply(tx, StatusCode::Unauthorized, headers);
                return;
            }
            First::Refuse(why) => {
                auth.failed(source.ip());
                refused(why, "-", source);
                spawn_reply(tx, StatusCode::Forbidden, vec![warning(why)]);
                return;
            }
            First::Lookup(_) if auth.spent(source.ip()) => {
                let why = "too many failed authentications from this source: wait a minute";
                refused(why, "-", source);
                spawn_reply(tx, StatusCode::Forbidden, vec![warning(why)]);
                return;
            }
            First::Lookup(c) => c,
        };
        let me = self.clone();
        tokio::spawn(async move {
            let auth = &me.settings.auth;
            let account = (auth.accounts.0)(credentials.username.clone()).await;
            let method = tx.original.method.to_string();
            let verdict = account.map(|a| {
                digest::finish(&credentials, a.as_ref(), &method, &auth.nonces, now_secs())
            });
            match verdict {
                Ok(Ok(user)) => me.admit(tx, source, Caller::Authenticated(user)).await,
                Ok(Err(why)) => {
                    auth.failed(source.ip());
                    refused(why, &credentials.username, source);
                    spawn_reply(tx, StatusCode::Forbidden, vec![warning(why)]);
                }
                Err(e) => {
                    warn!(%source, error = %e, "INVITE refused: the phone accounts cannot be read (503)");
                    spawn_reply(
                        tx,
                        StatusCode::ServiceUnavailable,
                        vec![Header::RetryAfter("5".into())],
                    );
                }
            }
        });
    }
}
