//! The store's tests, each on SQLite and on PostgreSQL.

use super::*;
use crate::login::rules::{self, AlreadyLoggedOnPolicy, SameStationPolicy};

#[path = "../../tests/support/postgres.rs"]
mod postgres;

/// What keeps a test's store alive: its SQLite directory, or its PostgreSQL database.
enum Scratch {
    #[allow(dead_code)]
    Dir(tempfile::TempDir),
    #[allow(dead_code)]
    Database(postgres::TestDatabase),
}

/// A fresh store of each backend: SQLite in a temporary directory, PostgreSQL in a database
/// of its own (none, said loudly, when no server can be reached outside CI).
async fn stores() -> Vec<(Store, Scratch)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let mut out = vec![(
        Store::open(&url, "node-a").await.unwrap(),
        Scratch::Dir(dir),
    )];
    if let Some(db) = postgres::TestDatabase::create().await {
        let s = Store::open(&db.url, "node-a").await.unwrap();
        out.push((s, Scratch::Database(db)));
    }
    out
}

/// Tests whose body runs once per backend, with `s` the store.
macro_rules! on_both {
    ($($(#[$doc:meta])* async fn $name:ident($s:ident) $body:block)*) => {$(
        $(#[$doc])*
        #[tokio::test]
        async fn $name() {
            for ($s, _scratch) in stores().await {
                $body
            }
        }
    )*};
}

/// Logs `agent` in with `pass` at `station` under the default policy.
async fn login(s: &Store, agent: &str, pass: &str, station: &str) -> LoginResult {
    login_with(s, agent, pass, station, &policy()).await
}

/// Logs `agent` in with `pass` at `station` under `p`.
async fn login_with(
    s: &Store,
    agent: &str,
    pass: &str,
    station: &str,
    p: &LoginPolicy,
) -> LoginResult {
    s.login(&attempt(agent, pass, station), p).await.unwrap()
}

/// Adds agent `number` named `name` with passcode `pass`.
async fn add(s: &Store, number: &str, name: &str, pass: &str) {
    s.add_agent(number, name, &Passcode(pass.into()))
        .await
        .unwrap();
}

fn attempt(agent: &str, pass: &str, station: &str) -> LoginAttempt {
    LoginAttempt {
        agent: AgentNumber(agent.into()),
        passcode: Passcode(pass.into()),
        station: Station(station.into()),
        source: "127.0.0.1:5061".into(),
        source_ip: "127.0.0.1".parse().unwrap(),
        call_id: CallId(format!("call-{station}")),
        replace: false,
        new_passcode: None,
        extension: None,
        over_limit: false,
    }
}

fn policy() -> LoginPolicy {
    LoginPolicy::from(&crate::config::LoginConfig::default())
}

on_both! {
    async fn right_wrong_unknown_and_already_on(s) {
        add(&s, "1001", "Ann", "1234").await;
        assert_eq!(
            login(&s, "1001", "9999", "a@h").await,
            LoginResult::Incorrect
        );
        assert_eq!(
            login(&s, "4242", "1234", "a@h").await,
            LoginResult::Incorrect
        );
        assert_eq!(
            login(&s, "1001", "1234", "a@h").await,
            LoginResult::LoggedIn
        );
        assert_eq!(
            login(&s, "1001", "1234", "b@h").await,
            LoginResult::AlreadyLoggedOn
        );
        let sessions = s.list_sessions().await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].station, "a@h");
        assert!(s.logout("1001", "test").await.unwrap());
        assert!(!s.logout("1001", "test").await.unwrap());
    }
}

on_both! {
    async fn the_hash_is_argon2id_and_not_the_passcode(s) {
        add(&s, "1001", "", "86420").await;
        let h =
            s.db.agent_record(DEFAULT_TENANT, "1001")
                .await
                .unwrap()
                .unwrap()
                .passcode_hash;
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("86420"));
    }
}

#[tokio::test]
async fn the_pepper_is_needed_to_verify_and_old_hashes_still_verify() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    // Made before the pepper: no keyid.
    let plain = Store::open(&url, "n").await.unwrap();
    plain
        .add_agent("1001", "", &Passcode("1234".into()))
        .await
        .unwrap();
    let with = |pepper: &[u8]| HashSettings {
        pepper: Some(pepper.to_vec()),
        ..HashSettings::default()
    };
    let peppered = Store::open_with(&url, "n", &with(b"0123456789abcdef0123"))
        .await
        .unwrap();
    peppered
        .add_agent("1002", "", &Passcode("2345".into()))
        .await
        .unwrap();
    let h = peppered
        .db
        .agent_record(DEFAULT_TENANT, "1002")
        .await
        .unwrap()
        .unwrap();
    assert!(h.passcode_hash.contains("keyid="), "{}", h.passcode_hash);
    assert!(
        h.passcode_hash.contains("m=4096,t=1,p=1"),
        "{}",
        h.passcode_hash
    );
    assert_eq!(peppered.peppered_hashes().await.unwrap(), (1, 0));
    let ok = |s: &Store, a: &str, p: &str| {
        let (s, a, p) = (s.clone(), a.to_string(), p.to_string());
        async move {
            s.login(&attempt(&a, &p, &format!("st-{a}")), &policy())
                .await
                .unwrap()
                == LoginResult::LoggedIn
        }
    };
    assert!(
        ok(&peppered, "1001", "1234").await,
        "a hash made before the pepper"
    );
    assert!(ok(&peppered, "1002", "2345").await);
    peppered.logout("1002", "t").await.unwrap();
    // The database alone (no pepper), or another pepper, cannot verify it.
    assert!(!ok(&plain, "1002", "2345").await);
    let other = Store::open_with(&url, "n", &with(b"another-pepper-entirely"))
        .await
        .unwrap();
    assert!(!ok(&other, "1002", "2345").await);
    assert_eq!(other.peppered_hashes().await.unwrap(), (1, 1));
}

on_both! {
    async fn bad_numbers_and_duplicates_are_refused_with_a_reason(s) {
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

on_both! {
    async fn wrong_passcodes_across_calls_lock_the_agent_until_unlocked(s) {
        add(&s, "1001", "", "1234").await;
        let mut p = policy();
        p.lockout.after = 3;
        for _ in 0..3 {
            assert_eq!(
                login_with(&s, "1001", "0000", "a@h", &p).await,
                LoginResult::Incorrect
            );
        }
        // Locked: the right passcode hears "locked", a wrong one still only "incorrect".
        assert_eq!(
            login_with(&s, "1001", "1234", "a@h", &p).await,
            LoginResult::Locked
        );
        assert_eq!(
            login_with(&s, "1001", "0000", "a@h", &p).await,
            LoginResult::Incorrect
        );
        assert!(s.list_agents().await.unwrap()[0].locked);
        assert!(s.unlock("1001").await.unwrap());
        assert!(!s.unlock("1001").await.unwrap());
        assert_eq!(
            login_with(&s, "1001", "1234", "a@h", &p).await,
            LoginResult::LoggedIn
        );
    }
}

on_both! {
    async fn a_right_login_clears_the_failure_count(s) {
        add(&s, "1001", "", "1234").await;
        let mut p = policy();
        p.lockout.after = 3;
        for _ in 0..2 {
            login_with(&s, "1001", "0000", "a@h", &p).await;
        }
        login_with(&s, "1001", "1234", "a@h", &p).await;
        s.logout("1001", "test").await.unwrap();
        for _ in 0..2 {
            login_with(&s, "1001", "0000", "a@h", &p).await;
        }
        assert_eq!(
            login_with(&s, "1001", "1234", "a@h", &p).await,
            LoginResult::LoggedIn
        );
    }
}

on_both! {
    async fn policies_move_sessions_in_one_step_and_audit_why(s) {
        for n in ["1001", "1002"] {
            s.add_agent(n, "", &Passcode("1234".into())).await.unwrap();
        }
        let mut p = policy();
        assert_eq!(
            login_with(&s, "1001", "1234", "a@h", &p).await,
            LoginResult::LoggedIn
        );
        // Another agent at the same station.
        assert_eq!(
            login_with(&s, "1002", "1234", "a@h", &p).await,
            LoginResult::StationInUse
        );
        p.same_station = SameStationPolicy::Replace;
        assert_eq!(
            login_with(&s, "1002", "1234", "a@h", &p).await,
            LoginResult::LoggedIn
        );
        let sessions = s.list_sessions().await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].agent, "1002");
        // The same agent elsewhere: confirm asks, replace moves.
        p.already_logged_on = AlreadyLoggedOnPolicy::Confirm;
        assert_eq!(
            login_with(&s, "1002", "1234", "b@h", &p).await,
            LoginResult::NeedsConfirm
        );
        let mut confirmed = attempt("1002", "1234", "b@h");
        confirmed.replace = true;
        assert_eq!(
            s.login(&confirmed, &p).await.unwrap(),
            LoginResult::LoggedIn
        );
        let sessions = s.list_sessions().await.unwrap();
        assert_eq!((sessions.len(), sessions[0].station.as_str()), (1, "b@h"));
        let reasons: Vec<String> =
            sqlx::query_scalar("SELECT reason FROM audit WHERE event = 'logout' ORDER BY id")
                .fetch_all(&s.db.pool_for_tests())
                .await
                .unwrap();
        assert_eq!(
            reasons,
            vec![rules::REASON_STATION_TAKEN, rules::REASON_MOVED]
        );
    }
}

on_both! {
    /// The usual login (nobody holds the agent or the station) is written by one batch: the
    /// session and its audit row as the general path writes them; a batch that fails inside
    /// its transaction leaves no transaction open on a connection lent again.
    async fn a_free_claim_is_one_batch_and_a_failed_batch_leaves_no_transaction_open(s) {
        for n in 1001..=1009 {
            s.add_agent(&n.to_string(), "", &Passcode("1234".into()))
                .await
                .unwrap();
        }
        assert_eq!(
            login(&s, "1001", "1234", "a@h").await,
            LoginResult::LoggedIn
        );
        let sessions = s.list_sessions().await.unwrap();
        assert_eq!(sessions.len(), 1);
        assert_eq!(
            (sessions[0].agent.as_str(), sessions[0].station.as_str()),
            ("1001", "a@h")
        );
        let audit = s.audit_log(Some("1001"), 10).await.unwrap();
        let login = audit.iter().find(|r| r.event == "login").expect("audited");
        assert_eq!(
            (
                login.station.as_deref(),
                login.source.as_deref(),
                login.call_id.as_deref(),
                login.reason.as_deref()
            ),
            (Some("a@h"), Some("127.0.0.1:5061"), Some("call-a@h"), None)
        );
        // An agent that is not in the table: the session insert fails on its foreign key,
        // after the batch's BEGIN.
        let ghost = attempt("9999", "1234", "g@h");
        assert!(s
            .db
            .claim_session(s.tenant.as_str(), &ghost, &s.node_id, &policy())
            .await
            .is_err());
        // The connection it failed on was closed, not lent again: the login path's
        // connection is lent out again and again and none is in a transaction
        // ("cannot start a transaction within a transaction").
        for n in 1002..=1009 {
            let a = attempt(&n.to_string(), "1234", &format!("s{n}@h"));
            assert_eq!(s.login(&a, &policy()).await.unwrap(), LoginResult::LoggedIn);
        }
        assert_eq!(s.list_sessions().await.unwrap().len(), 9);
    }
}

on_both! {
    async fn sessions_older_than_session_max_hours_expire(s) {
        add(&s, "1001", "", "1234").await;
        login(&s, "1001", "1234", "a@h").await;
        let mut ended = s.subscribe();
        assert_eq!(
            s.expire_sessions(std::time::Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        assert_eq!(
            s.expire_sessions(std::time::Duration::from_millis(1))
                .await
                .unwrap(),
            1
        );
        assert!(s.list_sessions().await.unwrap().is_empty());
        assert_eq!(
            ended.recv().await.unwrap().reason,
            crate::login::rules::REASON_SESSION_EXPIRED
        );
    }
}

on_both! {
    async fn stations_and_networks_per_agent_and_per_gateway(s) {
        add(&s, "1001", "", "1234").await;
        s.set_restrictions(
            "1001",
            &["20*@pbx".into()],
            &["10.0.0.0/8".parse().unwrap()],
        )
        .await
        .unwrap();
        let mut a = attempt("1001", "1234", "2001@pbx");
        assert_eq!(
            s.login(&a, &policy()).await.unwrap(),
            LoginResult::Incorrect,
            "127.0.0.1 is not in 10/8"
        );
        a.source_ip = "10.1.2.3".parse().unwrap();
        let mut elsewhere = a.clone();
        elsewhere.station = Station("3001@pbx".into());
        assert_eq!(
            s.login(&elsewhere, &policy()).await.unwrap(),
            LoginResult::StationNotAllowed
        );
        let mut p = policy();
        p.networks = vec!["192.168.0.0/16".parse().unwrap()];
        assert_eq!(
            s.login(&a, &p).await.unwrap(),
            LoginResult::Incorrect,
            "gateway-wide network refusal"
        );
        assert_eq!(s.login(&a, &policy()).await.unwrap(), LoginResult::LoggedIn);
    }
}

/// On PostgreSQL a commit with audit entries, from any process, wakes every store's listener
/// (LISTEN/NOTIFY through a trigger); SQLite has none (its audit log is polled).
#[tokio::test]
async fn an_audit_commit_anywhere_wakes_the_listeners_on_postgresql() {
    for (s, _scratch) in stores().await {
        let Some(mut wakeups) = s.audit_wakeups() else {
            assert!(!s.db.shared(), "PostgreSQL has a listener");
            continue;
        };
        let five = std::time::Duration::from_secs(5);
        // The first wake-up says it is listening (and to read what was missed).
        assert_eq!(
            tokio::time::timeout(five, wakeups.recv()).await,
            Ok(Some(()))
        );
        // Another node, another connection: an agent added there wakes this one.
        let url = s.db.url.clone();
        let other = Store::open(&url, "node-b").await.unwrap();
        add(&other, "1001", "", "1234").await;
        assert_eq!(
            tokio::time::timeout(five, wakeups.recv()).await,
            Ok(Some(()))
        );
    }
}

on_both! {
    /// A phone account keeps the password's HA1s, for its realm only; list and remove.
    async fn phone_accounts_keep_their_digest_secrets_for_their_realm(s) {
        let pw = Passcode("correct horse battery".into());
        assert!(s.add_phone("desk-7", "agentgw", &pw).await.unwrap());
        let want = crate::digest::Ha1s::of("desk-7", "agentgw", &pw.0);
        assert_eq!(s.phone_secrets("desk-7", "agentgw").await.unwrap(), Some(want));
        assert_eq!(s.phone_secrets("desk-7", "other").await.unwrap(), None);
        assert_eq!(s.phone_secrets("desk-8", "agentgw").await.unwrap(), None);
        let short = s.add_phone("desk-8", "agentgw", &Passcode("short".into())).await;
        assert!(matches!(short, Err(StoreError::Invalid(_))), "{short:?}");
        let bad = s.add_phone("desk 8", "agentgw", &pw).await;
        assert!(matches!(bad, Err(StoreError::Invalid(_))), "{bad:?}");
        // Setting the password again replaces the secret.
        let pw2 = Passcode("another long password".into());
        assert!(!s.add_phone("desk-7", "agentgw", &pw2).await.unwrap());
        let want = crate::digest::Ha1s::of("desk-7", "agentgw", &pw2.0);
        assert_eq!(s.phone_secrets("desk-7", "agentgw").await.unwrap(), Some(want));
        let listed = s.phones().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].username.as_str(), listed[0].realm.as_str()), ("desk-7", "agentgw"));
        assert!(s.remove_phone("desk-7").await.unwrap());
        assert!(!s.remove_phone("desk-7").await.unwrap());
        assert_eq!(s.phone_secrets("desk-7", "agentgw").await.unwrap(), None);
    }
}

#[tokio::test]
async fn a_phone_secret_sealed_with_a_pepper_is_unreadable_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let with = HashSettings {
        pepper: Some(b"0123456789abcdef0123".to_vec()),
        ..HashSettings::default()
    };
    let peppered = Store::open_with(&url, "n", &with).await.unwrap();
    let pw = Passcode("correct horse battery".into());
    peppered.add_phone("desk-7", "agentgw", &pw).await.unwrap();
    let (_, secret) = peppered.db.phone("desk-7").await.unwrap().unwrap();
    let ha1s = crate::digest::Ha1s::of("desk-7", "agentgw", &pw.0);
    assert!(!secret.contains(&ha1s.md5) && !secret.contains(&ha1s.sha256));
    assert_eq!(
        peppered.phone_secrets("desk-7", "agentgw").await.unwrap(),
        Some(ha1s)
    );
    let plain = Store::open(&url, "n").await.unwrap();
    assert_eq!(
        plain.phone_secrets("desk-7", "agentgw").await.unwrap(),
        None
    );
}
