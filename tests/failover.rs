//! Kamailio in front of two `agentgw serve` nodes on one PostgreSQL database, as a contact
//! center deploys them: calls land on both nodes, a node killed with `kill -9` costs a caller
//! at most Kamailio's failover timeout, and a node drained by SIGTERM stops getting new calls
//! while its calls in progress finish.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/kamailio.rs"]
mod kamailio;
#[path = "support/postgres.rs"]
mod postgres;
mod support;

use daemon::Daemon;
use kamailio::Kamailio;
use postgres::TestDatabase;
use std::time::{Duration, Instant};
use support::*;

/// Two nodes on one fresh database behind Kamailio. Every login replaces the agent's
/// session, so one demo agent can log in again and again.
async fn nodes_behind_kamailio(db: &TestDatabase) -> Option<(Daemon, Daemon, Kamailio, Pepper)> {
    let (pepper, store) = daemon::shared_store(&db.url);
    let node = |id: &str| {
        format!("[login]\nalready_logged_on = \"replace\"\n[gateway]\nnode_id = \"{id}\"\n")
    };
    let a = Daemon::start_on_store(&store, &node("node-a"));
    let b = Daemon::start_on_store(&store, &node("node-b"));
    let kam = Kamailio::start(&[a.sip_addr(), b.sip_addr()])?;
    Some((a, b, kam, Pepper(pepper)))
}

/// The directory of the nodes' pepper file, kept while they run.
struct Pepper(#[allow(dead_code)] tempfile::TempDir);

/// A call through Kamailio: answered (200), and the port of the node that answered (its
/// Contact).
async fn call_through(kam: &Kamailio) -> (Phone, u16) {
    let mut p = Phone::new(kam.addr, PhoneOptions::default()).await;
    assert_eq!(p.call().await, 200, "{}", kam.log());
    let contact = p.answer_header("Contact");
    let port = contact
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("a node's Contact: {contact}"));
    (p, port)
}

/// Logs `keys` in through Kamailio; the node's port and the time from INVITE to the answer.
async fn log_in_through(kam: &Kamailio, keys: &str) -> (u16, Duration) {
    let started = Instant::now();
    let (mut p, port) = call_through(kam).await;
    let answered = started.elapsed();
    p.press(keys).await;
    assert_eq!(
        p.wait_for_bye(10).await.as_deref(),
        Some("logged-in"),
        "{}",
        kam.log()
    );
    (port, answered)
}

/// The nodes that logged `agent` in, oldest first, from the audit log any node serves.
fn login_nodes(node: &Daemon, agent: &str) -> Vec<String> {
    let (status, body) = node.http(
        "GET",
        &format!("/api/audit?agent={agent}&since=0"),
        Some(&node.token()),
    );
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "login")
        .map(|e| e["node"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn logins_through_kamailio_reach_both_nodes_and_all_succeed_after_one_is_killed() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let Some((a, b, kam, _pepper)) = nodes_behind_kamailio(&db).await else {
        return;
    };
    let mut ports = Vec::new();
    for _ in 0..4 {
        ports.push(log_in_through(&kam, "1001#1234#").await.0);
    }
    assert!(
        ports.contains(&a.port) && ports.contains(&b.port),
        "round robin over both nodes: {ports:?} (a {}, b {})",
        a.port,
        b.port
    );
    // The shared audit log says which node took each login, as the callers saw it.
    let took: Vec<&str> = ports
        .iter()
        .map(|p| if *p == a.port { "node-a" } else { "node-b" })
        .collect();
    assert_eq!(login_nodes(&b, "1001"), took);

    // Kill the node whose turn is next (round robin: the first call's), SIGKILL: no drain, no
    // goodbye. The next call goes to it before any probe can have noticed (a probe's OPTIONS
    // times out after FR_TIMER too), and fails over to the survivor.
    let (mut dead, survivor, survivor_id) = if ports[0] == a.port {
        (a, b, "node-b")
    } else {
        (b, a, "node-a")
    };
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let mut answered = Vec::new();
    for _ in 0..6 {
        let (port, took) = log_in_through(&kam, "1001#1234#").await;
        assert_eq!(
            port, survivor.port,
            "after a node died every call is the other's"
        );
        answered.push(took);
    }
    eprintln!("after kill -9 of a node, INVITE to answer through Kamailio: {answered:?}");
    let failed_over = format!(
        "agentgw node sip:{} failed (408), trying the next",
        dead.sip_addr()
    );
    assert!(kam.log().contains(&failed_over), "{}", kam.log());
    let down = format!("agentgw node down: sip:{}", dead.sip_addr());
    assert!(kam.log().contains(&down), "{}", kam.log());
    let nodes = login_nodes(&survivor, "1001");
    assert_eq!(nodes.len(), 10, "{nodes:?}");
    assert!(nodes[4..].iter().all(|n| n == survivor_id), "{nodes:?}");
}

#[tokio::test]
async fn a_draining_node_finishes_its_calls_while_kamailio_sends_new_ones_to_the_other() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let Some((mut a, mut b, kam, _pepper)) = nodes_behind_kamailio(&db).await else {
        return;
    };
    // Two calls in progress, keys not yet pressed: round robin gives one to each node.
    let (mut on_draining, port) = call_through(&kam).await;
    let (mut on_other, other_port) = call_through(&kam).await;
    assert_ne!(port, other_port, "round robin over both nodes");
    let (draining, other) = if port == a.port {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    draining.signal("-TERM");
    for _ in 0..100 {
        if draining.http("GET", "/readyz", None).0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // It is the draining node's turn: it answers 503 and Kamailio tries the other at once
    // (unless a probe's 503 took the node out first).
    for _ in 0..4 {
        let (port, _) = log_in_through(&kam, "1001#1234#").await;
        assert_eq!(port, other.port, "a draining node gets no new call");
    }
    let log = kam.log();
    let out = format!("agentgw node down: sip:{}", draining.sip_addr());
    assert!(
        log.contains("failed (503), trying the next") || log.contains(&out),
        "Kamailio took the draining node out: {log}"
    );
    // The calls in progress log their agents in, the draining node's too; then it stops.
    on_draining.press("1002#2345#").await;
    on_other.press("1003#3456#").await;
    for p in [&on_draining, &on_other] {
        assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    }
    assert_eq!(draining.wait_exit(15), Some(0), "the drained node exits");
    let node = if port == a.port { "node-a" } else { "node-b" };
    assert_eq!(login_nodes(other, "1002"), [node]);
}
