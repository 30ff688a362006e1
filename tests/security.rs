//! Who may call, as callers outside the trusted networks meet it: Digest challenges (SHA-256
//! and MD5), wrong passwords, replays and unknown accounts refused; a station that could be
//! forged ends nobody's session; a barred network never locks an agent out.

mod support;

use agentgw::digest::Authenticate;
use agentgw::media::prompts::PromptId;
use agentgw::store::AgentChanges;
use support::*;

const PASSWORD: &str = "correct horse battery";

/// A gateway on loopback that trusts no network (every test phone is "outside"), with the
/// phone account desk-7.
async fn untrusting(tweak: impl FnOnce(&mut agentgw::Config)) -> TestGateway {
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.sip.trusted_networks = vec![];
        tweak(c);
    })
    .await;
    gw.store
        .add_phone(
            "desk-7",
            "agentgw",
            &agentgw::login::Passcode(PASSWORD.into()),
        )
        .await
        .unwrap();
    gw
}

fn account(password: &str, algorithm: &'static str) -> PhoneOptions {
    PhoneOptions {
        digest: Some(("desk-7".into(), password.into(), algorithm)),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_caller_without_credentials_is_challenged_with_sha_256_then_md5() {
    let gw = untrusting(|_| {}).await;
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(p.call().await, 401);
    let r = p.invite_response.clone().unwrap();
    let challenges: Vec<&str> = r.headers("WWW-Authenticate").collect();
    assert_eq!(challenges.len(), 2, "{r:?}");
    assert!(
        challenges[0].contains("algorithm=SHA-256"),
        "{challenges:?}"
    );
    assert!(challenges[1].contains("algorithm=MD5"), "{challenges:?}");
    assert!(challenges
        .iter()
        .all(|c| c.contains("realm=\"agentgw\"") && c.contains("qop=\"auth\"")));
    // Over TCP too.
    let opts = PhoneOptions {
        transport: agentgw::sip::Transport::Tcp,
        ..Default::default()
    };
    let mut p = Phone::new(gw.tcp, opts).await;
    assert_eq!(p.call().await, 401);
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_phone_account_logs_in_with_sha_256_or_md5_and_is_the_station() {
    let gw = untrusting(|_| {}).await;
    for (algorithm, agent) in [("SHA-256", "1001#1234#"), ("MD5", "1002#2345#")] {
        let mut p = Phone::new(gw.udp, account(PASSWORD, algorithm)).await;
        assert_eq!(p.call().await, 200, "{algorithm}");
        assert!(p.authorization.as_deref().unwrap().contains(algorithm));
        p.press(agent).await;
        assert_eq!(
            p.wait_for_bye(10).await.as_deref(),
            Some("logged-in"),
            "{algorithm}"
        );
        let sessions = gw.store.list_sessions().await.unwrap();
        assert_eq!(sessions.last().unwrap().station, "desk-7", "{algorithm}");
        gw.store.logout(&sessions[0].agent, "test").await.unwrap();
    }
}

#[tokio::test]
async fn a_wrong_password_an_unknown_account_and_a_replay_get_403() {
    let gw = untrusting(|_| {}).await;
    let mut p = Phone::new(gw.udp, account("wrong password!", "SHA-256")).await;
    assert_eq!(p.call().await, 403);
    let mut p = Phone::new(
        gw.udp,
        PhoneOptions {
            digest: Some(("desk-8".into(), PASSWORD.into(), "MD5")),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(p.call().await, 403);

    // A call authenticated, then its INVITE's credentials sent again in a new call: the
    // nonce count was used.
    let mut p = Phone::new(gw.udp, account(PASSWORD, "SHA-256")).await;
    assert_eq!(p.call().await, 200);
    let captured = p.authorization.clone().unwrap();
    p.hangup().await;
    let mut replay = Phone::new(
        gw.udp,
        PhoneOptions {
            invite_headers: captured,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(replay.call().await, 403);
    let warning = replay.answer_header("Warning");
    assert!(warning.contains("replay"), "{warning:?}");
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_logout_call_from_a_station_that_could_be_forged_ends_nobodys_session() {
    // Nobody authenticates, nobody is trusted: a caller's From is its own word.
    let gw = untrusting(|c| c.sip.authenticate = Authenticate::Off).await;
    let mut agent_phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    agent_phone.call().await;
    agent_phone.press("1001#1234#").await;
    assert_eq!(
        agent_phone.wait_for_bye(10).await.as_deref(),
        Some("logged-in")
    );
    // Another phone (another port) claims the agent's station in its From.
    let opts = PhoneOptions {
        user: agent_phone.opts.user.clone(),
        dialed: "logout".into(),
        ..Default::default()
    };
    let mut spoof = Phone::new(gw.udp, opts).await;
    spoof.call().await;
    assert!(
        spoof.wait_for_prompt_start(PromptId::AgentUser, 10).await,
        "{:?}",
        spoof.heard()
    );
    spoof.hangup().await;
    assert_eq!(gw.store.list_sessions().await.unwrap().len(), 1);

    // An authenticated phone is its station: its logout call needs no passcode.
    let gw = untrusting(|_| {}).await;
    let mut p = Phone::new(gw.udp, account(PASSWORD, "MD5")).await;
    p.call().await;
    p.press("1001#1234#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    let opts = PhoneOptions {
        dialed: "logout".into(),
        ..account(PASSWORD, "SHA-256")
    };
    let mut p = Phone::new(gw.udp, opts).await;
    assert_eq!(p.call().await, 200);
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-off"));
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
}

#[tokio::test]
async fn wrong_passcodes_from_a_barred_network_leave_the_lockout_count_alone() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.lockout_after = 3;
        c.login.max_attempts = 3;
    })
    .await;
    let office = AgentChanges {
        networks: Some(vec!["10.0.0.0/8".parse().unwrap()]),
        ..Default::default()
    };
    gw.store.update_agent("1003", &office).await.unwrap();
    for _ in 0..2 {
        refused_three_times(&gw, "1003#0000#").await;
    }
    let agent = gw.store.agent("1003").await.unwrap().unwrap();
    assert!(!agent.locked, "{agent:?}");
    // Once the network is allowed, the right passcode logs the agent in at once.
    let anywhere = AgentChanges {
        networks: Some(vec![]),
        ..Default::default()
    };
    gw.store.update_agent("1003", &anywhere).await.unwrap();
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    p.call().await;
    p.press("1003#3456#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
}

#[tokio::test]
async fn a_source_failing_20_times_a_minute_is_refused_even_with_the_right_password() {
    let gw = untrusting(|_| {}).await;
    for _ in 0..20 {
        let mut p = Phone::new(gw.udp, account("a wrong guess!", "MD5")).await;
        assert_eq!(p.call().await, 403);
    }
    let mut p = Phone::new(gw.udp, account(PASSWORD, "SHA-256")).await;
    assert_eq!(p.call().await, 403);
    let warning = p.answer_header("Warning");
    assert!(warning.contains("too many failed"), "{warning:?}");
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
}
