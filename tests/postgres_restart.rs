//! The PostgreSQL server going away and coming back (its own test binary: it stops the server
//! every other PostgreSQL test uses). Callers meanwhile hear "service unavailable" and get a
//! clean BYE, a stay line stays up, /readyz says 503; once the server is back the gateway
//! logs agents on again without a restart.

#[path = "support/postgres.rs"]
mod postgres;
mod support;

use agentgw::login::rules::AfterLogin;
use agentgw::media::prompts::PromptId;
use postgres::TestDatabase;
use std::process::Command;
use std::time::Duration;
use support::*;

/// `pg_ctlcluster 15 main ACTION`; starts the server again when dropped, whatever happened.
struct Cluster;

impl Cluster {
    fn run(action: &str) -> bool {
        Command::new("pg_ctlcluster")
            .args(["15", "main", action, "-m", "fast"])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        Cluster::run("start");
    }
}

async fn readyz(addr: std::net::SocketAddr) -> u16 {
    http(addr, "GET", "/readyz", None, None).await.0
}

#[tokio::test]
async fn callers_hear_service_unavailable_while_postgresql_is_down_and_log_in_after() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.store.url = db.url.clone();
        c.login.after_login = AfterLogin::Stay;
    })
    .await;
    let (admin, _) = gw.start_admin().await;
    let mut stay = Phone::new(gw.udp, PhoneOptions::default()).await;
    stay.call().await;
    stay.press("1001#1234#").await;
    stay.expect_prompt(PromptId::AgentLoginOk).await;
    assert_eq!(readyz(admin).await, 200);

    let _restart = Cluster;
    if !Cluster::run("stop") {
        not_checked_loudly("pg_ctlcluster cannot stop PostgreSQL here (CI runs as root)");
        return;
    }
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(p.call().await, 200);
    p.press("1002#2345#").await;
    assert_eq!(
        p.wait_for_bye(15).await.as_deref(),
        Some("service-unavailable")
    );
    assert_eq!(p.heard_ids().last(), Some(&PromptId::ServiceUnavailable));
    assert_eq!(readyz(admin).await, 503);
    assert_eq!(stay.wait_for_bye(1).await, None, "the stay line stays up");

    assert!(Cluster::run("start"));
    let mut ready = false;
    for _ in 0..60 {
        if readyz(admin).await == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(ready, "/readyz back to 200 once PostgreSQL is");
    let mut q = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(q.call().await, 200);
    q.press("1003#3456#").await;
    q.expect_prompt(PromptId::AgentLoginOk).await;
    let agents = gw.agents().await;
    assert_eq!(agents, ["1001", "1003"], "nothing lost, nothing doubled");
    assert_eq!(stay.wait_for_bye(1).await, None);
}
