//! Black-box tests: a gateway on free loopback ports, called by the test phone like a real
//! phone would, over real SIP and RTP.

mod support;

use agentgw::media::prompts::PromptId;
use std::time::Duration;
use support::*;

#[tokio::test]
async fn agent_logs_in_hearing_each_prompt_and_the_session_is_recorded() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(phone.call().await, 200);
    phone.expect_prompt(PromptId::AgentUser).await;
    phone.press("1001#").await;
    phone.expect_prompt(PromptId::AgentPass).await;
    phone.press("1234#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    // RFC 3326: the outcome as a Q.850 cause, which a PBX reads as the hang-up cause.
    assert_eq!(
        phone.bye_header("Reason").as_deref(),
        Some("Q.850;cause=16;text=\"logged-in\"")
    );
    assert_eq!(
        phone.heard_ids(),
        vec![
            PromptId::AgentUser,
            PromptId::AgentPass,
            PromptId::AgentLoginOk
        ]
    );
    assert!(
        phone.heard().iter().all(|h| h.complete),
        "{:?}",
        phone.heard()
    );
    let sessions = gw.store.list_sessions().await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].agent, "1001");
    assert_eq!(
        sessions[0].station,
        format!("{}@test.example", phone.opts.user)
    );
}

#[tokio::test]
async fn wrong_passcode_hears_login_incorrect_then_logs_in() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    phone.call().await;
    assert!(phone.wait_for_prompt_start(PromptId::AgentUser, 5).await);
    phone.press("1001#9999#").await;
    assert!(
        phone
            .wait_for_prompt_start(PromptId::AgentIncorrect, 10)
            .await,
        "{:?}",
        phone.heard()
    );
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
    phone.press("1001#1234#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    let heard = phone.heard_ids();
    assert_eq!(heard.first(), Some(&PromptId::AgentUser));
    assert!(heard.contains(&PromptId::AgentIncorrect));
    assert_eq!(heard.last(), Some(&PromptId::AgentLoginOk));
    assert_eq!(gw.store.list_sessions().await.unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_agent_hears_the_same_as_a_wrong_passcode() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    phone.call().await;
    phone.press("4242#1234#").await;
    assert!(
        phone
            .wait_for_prompt_start(PromptId::AgentIncorrect, 10)
            .await,
        "{:?}",
        phone.heard()
    );
    phone.hangup().await;
}

#[tokio::test]
async fn too_many_attempts_hear_login_incorrect_goodbye_and_are_hung_up() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    phone.call().await;
    for _ in 0..3 {
        phone.press("1001#0000#").await;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(phone.wait_for_bye(15).await.as_deref(), Some("incorrect"));
    assert_eq!(
        phone.bye_header("Reason").as_deref(),
        Some("Q.850;cause=21;text=\"incorrect\"")
    );
    let heard = phone.heard_ids();
    assert_eq!(
        &heard[heard.len() - 2..],
        &[PromptId::LoginIncorrect, PromptId::Goodbye],
        "{heard:?}"
    );
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
}

#[tokio::test]
async fn agent_already_logged_on_hears_that_prompt_and_keeps_no_second_session() {
    let gw = start_gateway().await;
    let mut first = Phone::new(gw.udp, PhoneOptions::default()).await;
    first.call().await;
    first.press("1002#2345#").await;
    assert_eq!(first.wait_for_bye(10).await.as_deref(), Some("logged-in"));

    let mut second = Phone::new(gw.udp, PhoneOptions::default()).await;
    second.call().await;
    second.press("1002#2345#").await;
    // "That agent is already logged on. Please enter your agent number…" (8x8 Contact Now).
    second.expect_prompt(PromptId::AgentAlreadyOnRetry).await;
    second.hangup().await;
    let sessions = gw.store.list_sessions().await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        sessions[0].station,
        format!("{}@test.example", first.opts.user)
    );
}

#[tokio::test]
async fn typing_ahead_cuts_the_prompt_and_keeps_every_key() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    phone.call().await;
    assert!(phone.wait_for_prompt_start(PromptId::AgentUser, 5).await);
    phone.press("1001#1234#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    let heard = phone.heard();
    assert_eq!(heard[0].prompt, PromptId::AgentUser);
    assert!(
        !heard[0].complete,
        "agent-user was cut by the first key: {heard:?}"
    );
    assert_eq!(heard.last().unwrap().prompt, PromptId::AgentLoginOk);
}

#[tokio::test]
async fn caller_hanging_up_mid_prompt_leaves_no_session_and_frees_the_call() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    phone.call().await;
    assert!(phone.wait_for_prompt_start(PromptId::AgentUser, 5).await);
    phone.press("1001#").await;
    assert_eq!(phone.hangup().await, Some(200));
    assert!(
        gw.settles().await,
        "calls {} dialogs {}",
        gw.gateway.active_calls(),
        gw.gateway.open_dialogs()
    );
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
    // No more RTP after the hang-up.
    let n = phone.received.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(phone.received.lock().unwrap().len(), n);
}

/// CPU time of the calling thread (the test's runtime thread, where the gateway's tasks run).
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    assert_eq!(
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) },
        0
    );
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

#[tokio::test]
async fn caller_hanging_up_during_a_slow_check_is_waited_for_without_spinning() {
    use sqlx::Connection;
    let gw = start_gateway().await;
    // Another writer holds the database, so the login check waits (SQLite's busy timeout).
    let mut writer = sqlx::SqliteConnection::connect(&gw.config.store.url)
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut writer)
        .await
        .unwrap();
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    phone.call().await;
    phone.press("1001#1234#").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(phone.hangup().await, Some(200));
    // The call waits for its check (to release the session it may claim): the gateway's
    // tasks run on this thread, and waiting must not use it (it spun until the check ended).
    let before = thread_cpu();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = thread_cpu() - before;
    assert_eq!(gw.gateway.active_calls(), 1, "still waiting for the check");
    assert!(
        used < Duration::from_millis(250),
        "{used:?} of CPU in 1 s of waiting"
    );
    // The writer lets go: the check ends, and the hung-up caller keeps no session.
    sqlx::query("ROLLBACK").execute(&mut writer).await.unwrap();
    assert!(gw.settles().await, "calls {}", gw.gateway.active_calls());
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
}

#[tokio::test]
async fn keys_sent_between_the_answer_and_the_ack_are_kept() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(phone.call_pressing_before_ack("1001#1234#").await, 200);
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    assert_eq!(gw.store.list_sessions().await.unwrap().len(), 1);
}

#[tokio::test]
async fn two_simultaneous_logins_of_one_agent_leave_exactly_one_session() {
    let gw = start_gateway().await;
    let mut a = Phone::new(gw.udp, PhoneOptions::default()).await;
    let mut b = Phone::new(gw.udp, PhoneOptions::default()).await;
    a.call().await;
    b.call().await;
    tokio::join!(a.press("1001#1234#"), b.press("1001#1234#"));
    let (ra, rb) = tokio::join!(a.wait_for_bye(8), b.wait_for_bye(8));
    // One hears "Agent logged in." and is hung up; the other is asked for an agent number again.
    assert_eq!(
        [ra.as_deref(), rb.as_deref()]
            .iter()
            .filter(|r| **r == Some("logged-in"))
            .count(),
        1
    );
    let loser = if ra.is_some() { &b } else { &a };
    assert!(
        loser.heard_ids().contains(&PromptId::AgentAlreadyOnRetry),
        "{:?}",
        loser.heard()
    );
    assert_eq!(gw.store.list_sessions().await.unwrap().len(), 1);
}

#[tokio::test]
async fn tcp_caller_logs_in() {
    let gw = start_gateway().await;
    logs_in_over_tcp(gw.tcp).await;
}

#[tokio::test]
async fn ipv6_caller_logs_in_with_ip6_sdp() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        support::not_checked_loudly("no IPv6 loopback (::1) on this machine");
        return;
    }
    let gw = start_gateway_with("::1", |_| {}).await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(phone.call().await, 200);
    assert!(phone.answer_sdp.as_ref().unwrap().contains("c=IN IP6 ::1"));
    phone.press("1001#1234#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
}

#[tokio::test]
async fn store_down_means_service_unavailable_and_a_clean_hangup() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    phone.call().await;
    gw.store.close().await;
    phone.press("1001#1234#").await;
    assert_eq!(
        phone.wait_for_bye(10).await.as_deref(),
        Some("service-unavailable")
    );
    assert_eq!(
        phone.heard_ids().last(),
        Some(&PromptId::ServiceUnavailable)
    );
}
