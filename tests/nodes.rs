//! Several gateway nodes on one PostgreSQL store, as phones and administrators meet them: a
//! login on one node is known to the other, the database arbitrates claims whichever node
//! took the call, an action on one node reaches a stay line held by the other, and the stay
//! lines of a node that died are closed by a survivor.

#[path = "support/postgres.rs"]
mod postgres;
mod support;

use agentgw::login::rules::{AfterLogin, AlreadyLoggedOnPolicy, REASON_ADMINISTRATOR};
use agentgw::media::prompts::PromptId;
use postgres::TestDatabase;
use std::time::Duration;
use support::*;

/// Two gateways on one fresh PostgreSQL database, `node-a` and `node-b`.
async fn two_nodes(
    db: &TestDatabase,
    tweak: impl Fn(&mut agentgw::Config),
) -> (TestGateway, TestGateway) {
    let node = |id: &'static str| {
        let url = db.url.clone();
        let tweak = &tweak;
        move |c: &mut agentgw::Config| {
            c.store.url = url;
            c.gateway.node_id = Some(id.into());
            tweak(c);
        }
    };
    let a = start_gateway_with("127.0.0.1", node("node-a")).await;
    let b = start_gateway_with("127.0.0.1", node("node-b")).await;
    (a, b)
}

async fn log_in(gw: &TestGateway, keys: &str) -> Phone {
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(p.call().await, 200);
    p.press(keys).await;
    p
}

#[tokio::test]
async fn a_login_on_one_node_is_listed_and_enforced_by_the_other() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (a, b) = two_nodes(&db, |_| {}).await;
    let p = log_in(&a, "1001#1234#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    let sessions = b.store.list_sessions().await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        (sessions[0].agent.as_str(), sessions[0].node_id.as_str()),
        ("1001", "node-a")
    );
    // Node B's log (and so its events and webhooks) has node A's login, saying whose it was.
    let log = b.store.audit_log(Some("1001"), 10).await.unwrap();
    let login = log.iter().find(|r| r.event == "login").expect("audited");
    assert_eq!(login.node.as_deref(), Some("node-a"));
    // The same agent on node B: already logged on (8x8's default), whichever node took it.
    let q = log_in(&b, "1001#1234#").await;
    q.expect_prompt(PromptId::AgentAlreadyOnRetry).await;
    assert_eq!(a.store.list_sessions().await.unwrap().len(), 1);
}

#[tokio::test]
async fn fifty_phones_racing_for_one_agent_over_two_nodes_leave_one_session() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (a, b) = two_nodes(&db, |c| {
        c.login.already_logged_on = AlreadyLoggedOnPolicy::Reject;
        c.login.first_digit_timeout_secs = 1;
        c.login.max_attempts = 1;
    })
    .await;
    let mut phones = Vec::new();
    for i in 0..50 {
        let gw = if i % 2 == 0 { &a } else { &b };
        let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
        assert_eq!(p.call().await, 200);
        phones.push(p);
    }
    let tasks: Vec<_> = phones
        .into_iter()
        .map(|mut p| {
            tokio::spawn(async move {
                p.press("1001#1234#").await;
                p.wait_for_bye(60).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let won = results
        .iter()
        .filter(|r| r.as_deref() == Some("logged-in"))
        .count();
    assert_eq!(won, 1, "{results:?}");
    assert_eq!(a.store.list_sessions().await.unwrap().len(), 1);
    // Every loser has its audit row, whichever node refused it.
    assert_eq!(a.store.audit_events("1001", "login").await.unwrap(), 1);
    assert_eq!(
        b.store.audit_events("1001", "login_refused").await.unwrap(),
        49
    );
}

#[tokio::test]
async fn a_force_logout_on_one_node_drops_the_stay_line_held_by_the_other() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (a, b) = two_nodes(&db, |c| c.login.after_login = AfterLogin::Stay).await;
    let p = log_in(&a, "1001#1234#").await;
    p.expect_prompt(PromptId::AgentLoginOk).await;
    // An administrator on node B (its API and CLI end sessions through the store so).
    assert!(b.store.logout("1001", REASON_ADMINISTRATOR).await.unwrap());
    // Node A plays the prompt and hangs up, within a second or so.
    assert_eq!(p.wait_for_bye(5).await.as_deref(), Some("dropped"));
    assert!(
        p.heard_ids().contains(&PromptId::AdminLogout),
        "{:?}",
        p.heard_ids()
    );
}

#[tokio::test]
async fn the_stay_lines_of_a_node_that_died_are_closed_once_by_a_survivor() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (a, b) = two_nodes(&db, |c| {
        c.login.after_login = AfterLogin::Stay;
        c.gateway.node_timeout_secs = 3;
    })
    .await;
    let p = log_in(&a, "1001#1234#").await;
    p.expect_prompt(PromptId::AgentLoginOk).await;
    let q = log_in(&b, "1002#2345#").await;
    q.expect_prompt(PromptId::AgentLoginOk).await;
    // Node A dies: no goodbye, its heartbeat stops (its stay line's phone hears nothing more).
    drop(a);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(b.store.list_sessions().await.unwrap().len(), 2, "not yet");
    let mut closed = false;
    for _ in 0..100 {
        if b.store.list_sessions().await.unwrap().len() == 1 {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "node-a's stay line closed after node_timeout_secs");
    let left = b.store.list_sessions().await.unwrap();
    assert_eq!(
        (left[0].agent.as_str(), left[0].node_id.as_str()),
        ("1002", "node-b")
    );
    let log = b.store.audit_log(Some("1001"), 10).await.unwrap();
    let lost: Vec<_> = log
        .iter()
        .filter(|r| r.event == "logout" && r.reason.as_deref() == Some("node lost"))
        .collect();
    assert_eq!(lost.len(), 1, "{log:?}");
    assert_eq!(
        lost[0].node.as_deref(),
        Some("node-b"),
        "closed by the survivor"
    );
}

#[tokio::test]
async fn attempts_from_one_station_count_together_whichever_node_takes_them() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (a, b) = two_nodes(&db, |c| {
        c.login.station_attempts_per_min = 3;
        c.login.max_attempts = 1;
    })
    .await;
    let desk = PhoneOptions {
        user: "desk-7".into(),
        ..Default::default()
    };
    // Three wrong passcodes from one desk, spread over the nodes: each node saw at most two.
    for (i, gw) in [&a, &b, &a].into_iter().enumerate() {
        let mut p = Phone::new(gw.udp, desk.clone()).await;
        assert_eq!(p.call().await, 200);
        p.press("1001#0000#").await;
        assert_eq!(
            p.wait_for_bye(15).await.as_deref(),
            Some("incorrect"),
            "try {i}"
        );
    }
    // The fourth, right this time, on node B: over the desk's limit, refused unseen.
    let mut p = Phone::new(b.udp, desk.clone()).await;
    assert_eq!(p.call().await, 200);
    p.press("1001#1234#").await;
    assert_eq!(p.wait_for_bye(15).await.as_deref(), Some("incorrect"));
    assert!(a.store.list_sessions().await.unwrap().is_empty());
    let log = a.store.audit_log(Some("1001"), 10).await.unwrap();
    assert!(
        log.iter().any(|r| r.event == "login_refused"
            && r.reason.as_deref() == Some("too many attempts from this station or source")),
        "{log:?}"
    );
    // The wrong passcodes of both nodes count towards the agent's lockout alike.
    assert_eq!(
        a.store.audit_events("1001", "login_failed").await.unwrap(),
        3
    );
}

#[path = "support/daemon.rs"]
mod daemon;

/// Two `agentgw serve` processes on one database; `kill -9` of the one holding a stay line,
/// and the other closes that session after `node_timeout_secs`, once, as "node lost".
#[tokio::test]
async fn killing_a_node_process_closes_its_stay_lines_from_the_survivor() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (_pepper, store) = daemon::shared_store(&db.url);
    let node = |id: &str| {
        format!("[login]\nafter_login = \"stay\"\n[gateway]\nnode_id = \"{id}\"\nnode_timeout_secs = 3\n")
    };
    let mut a = daemon::Daemon::start_on_store(&store, &node("proc-a"));
    let b = daemon::Daemon::start_on_store(&store, &node("proc-b"));
    let mut p = Phone::new(a.sip_addr(), PhoneOptions::default()).await;
    assert_eq!(p.call().await, 200);
    p.press("1001#1234#").await;
    p.expect_prompt(PromptId::AgentLoginOk).await;
    let (_, listed) = b.http("GET", "/api/sessions", Some(&b.token()));
    assert!(listed.contains("\"node_id\":\"proc-a\""), "{listed}");

    a.child.kill().unwrap(); // SIGKILL: no goodbye, no BYE
    a.child.wait().unwrap();
    let mut closed = false;
    for _ in 0..150 {
        let (_, listed) = b.http("GET", "/api/sessions", Some(&b.token()));
        if listed.trim() == "[]" {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed, "proc-a's stay line closed by proc-b");
    let (_, audit) = b.http("GET", "/api/audit?agent=1001", Some(&b.token()));
    assert_eq!(
        audit.matches("\"reason\":\"node lost\"").count(),
        1,
        "{audit}"
    );
}
