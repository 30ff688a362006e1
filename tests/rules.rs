//! The login rules as phones meet them: already logged on under each policy, one agent per
//! station, Logon Stations, lockout, attempt limits, and 50 phones racing for one agent.

mod support;

use agentgw::login::rules::{AlreadyLoggedOnPolicy, SameStationPolicy};
use agentgw::login::rules::{AnonymousStation, StationFrom};
use agentgw::media::prompts::PromptId;
use std::time::Duration;
use support::*;

fn station_of(p: &Phone) -> String {
    format!("{}@test.example", p.opts.user)
}

async fn logged_in(gw: &TestGateway, keys: &str) -> Phone {
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    p.call().await;
    p.press(keys).await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    p
}

#[tokio::test]
async fn replace_moves_the_session_to_the_new_station_at_once() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.already_logged_on = AlreadyLoggedOnPolicy::Replace
    })
    .await;
    let _first = logged_in(&gw, "1001#1234#").await;
    let second = logged_in(&gw, "1001#1234#").await;
    let sessions = gw.store.list_sessions().await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].station, station_of(&second));
}

#[tokio::test]
async fn confirm_asks_and_1_moves_the_session_here() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.already_logged_on = AlreadyLoggedOnPolicy::Confirm
    })
    .await;
    let first = logged_in(&gw, "1001#1234#").await;
    let mut second = Phone::new(gw.udp, PhoneOptions::default()).await;
    second.call().await;
    second.press("1001#1234#").await;
    assert!(
        second
            .wait_for_prompt_start(PromptId::AgentConfirm, 10)
            .await,
        "{:?}",
        second.heard()
    );
    // Still at the first station until the caller answers.
    assert_eq!(
        gw.store.list_sessions().await.unwrap()[0].station,
        station_of(&first)
    );
    second.press("1").await;
    assert_eq!(second.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    let sessions = gw.store.list_sessions().await.unwrap();
    assert_eq!(
        (sessions.len(), sessions[0].station.clone()),
        (1, station_of(&second))
    );
}

#[tokio::test]
async fn confirm_2_cancels_and_changes_nothing() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.already_logged_on = AlreadyLoggedOnPolicy::Confirm
    })
    .await;
    let first = logged_in(&gw, "1001#1234#").await;
    let mut second = Phone::new(gw.udp, PhoneOptions::default()).await;
    second.call().await;
    second.press("1001#1234#").await;
    assert!(
        second
            .wait_for_prompt_start(PromptId::AgentConfirm, 10)
            .await
    );
    second.press("2").await;
    assert_eq!(second.wait_for_bye(10).await.as_deref(), Some("cancelled"));
    assert_eq!(
        gw.store.list_sessions().await.unwrap()[0].station,
        station_of(&first)
    );
}

#[tokio::test]
async fn a_second_agent_at_a_station_in_use_is_told_so_or_takes_it_over() {
    let gw = start_gateway().await;
    let first = logged_in(&gw, "1001#1234#").await;
    let opts = PhoneOptions {
        user: first.opts.user.clone(),
        ..Default::default()
    };
    let mut second = Phone::new(gw.udp, opts.clone()).await;
    second.call().await;
    second.press("1002#2345#").await;
    assert_eq!(
        second.wait_for_bye(10).await.as_deref(),
        Some("station-in-use")
    );
    assert!(second.heard_ids().contains(&PromptId::StationInUse));

    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.same_station = SameStationPolicy::Replace
    })
    .await;
    let first = logged_in(&gw, "1001#1234#").await;
    let opts = PhoneOptions {
        user: first.opts.user.clone(),
        ..Default::default()
    };
    let mut second = Phone::new(gw.udp, opts).await;
    second.call().await;
    second.press("1002#2345#").await;
    assert_eq!(second.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    let sessions = gw.store.list_sessions().await.unwrap();
    assert_eq!((sessions.len(), sessions[0].agent.as_str()), (1, "1002"));
}

#[tokio::test]
async fn an_agent_outside_its_logon_stations_hears_not_allowed() {
    let gw = start_gateway().await;
    gw.store
        .set_restrictions("1001", &["desk-*@test.example".into()], &[])
        .await
        .unwrap();
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    p.call().await;
    p.press("1001#1234#").await;
    assert_eq!(
        p.wait_for_bye(10).await.as_deref(),
        Some("station-not-allowed")
    );
    let opts = PhoneOptions {
        user: "desk-7".into(),
        ..Default::default()
    };
    let mut desk = Phone::new(gw.udp, opts).await;
    desk.call().await;
    desk.press("1001#1234#").await;
    assert_eq!(desk.wait_for_bye(10).await.as_deref(), Some("logged-in"));
}

#[tokio::test]
async fn a_source_outside_the_allowed_networks_hears_only_login_incorrect() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.allowed_networks = vec!["10.0.0.0/8".parse().unwrap()]
    })
    .await;
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    p.call().await;
    p.press("1001#1234#").await;
    assert!(
        p.wait_for_prompt_start(PromptId::AgentIncorrect, 10).await,
        "{:?}",
        p.heard()
    );
    p.hangup().await;
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
}

#[tokio::test]
async fn wrong_passcodes_across_calls_lock_the_agent_until_unlocked() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.lockout_after = 3;
        c.login.max_attempts = 3;
    })
    .await;
    refused_three_times(&gw, "1003#0000#").await;
    // The right passcode now hears that the agent is locked.
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    p.call().await;
    p.press("1003#3456#").await;
    assert_eq!(p.wait_for_bye(15).await.as_deref(), Some("locked"));
    assert!(p.heard_ids().contains(&PromptId::AgentLocked));
    assert!(gw.store.unlock("1003").await.unwrap());
    logged_in(&gw, "1003#3456#").await;
}

#[tokio::test]
async fn a_station_over_its_attempts_per_minute_hears_login_incorrect_slowly() {
    let gw = start_gateway_with("127.0.0.1", |c| c.login.station_attempts_per_min = 1).await;
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    p.call().await;
    p.press("1001#0000#").await;
    assert!(p.wait_for_prompt_start(PromptId::AgentIncorrect, 10).await);
    // The right passcode, but over the limit: "Login incorrect", and no session.
    p.press("1001#1234#").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let incorrect = p
        .heard_ids()
        .iter()
        .filter(|h| **h == PromptId::AgentIncorrect)
        .count();
    assert_eq!(incorrect, 2, "{:?}", p.heard());
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
    assert_eq!(
        gw.store
            .audit_events("1001", "login_refused")
            .await
            .unwrap(),
        1,
        "the refusal is audited"
    );
    p.hangup().await;
}

/// 50 phones log the same agent on at once; every policy ends with exactly one session, and
/// the audit log has a line for every phone that did not end up holding it.
async fn race(policy: AlreadyLoggedOnPolicy) -> (TestGateway, Vec<Option<String>>) {
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.already_logged_on = policy;
        c.login.first_digit_timeout_secs = 1;
        c.login.max_attempts = 1;
    })
    .await;
    let mut phones = Vec::new();
    for _ in 0..50 {
        let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
        assert_eq!(p.call().await, 200);
        phones.push(p);
    }
    let mut tasks = Vec::new();
    for mut p in phones {
        tasks.push(tokio::spawn(async move {
            p.press("1001#1234#").await;
            p.wait_for_bye(60).await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    (gw, results)
}

async fn audit_count(gw: &TestGateway, event: &str) -> usize {
    gw.store.audit_events("1001", event).await.unwrap()
}

#[tokio::test]
async fn fifty_phones_racing_for_one_agent_under_reject() {
    let (gw, results) = race(AlreadyLoggedOnPolicy::Reject).await;
    let won = results
        .iter()
        .filter(|r| r.as_deref() == Some("logged-in"))
        .count();
    assert_eq!(won, 1, "{results:?}");
    assert_eq!(gw.store.list_sessions().await.unwrap().len(), 1);
    assert_eq!(audit_count(&gw, "login").await, 1);
    assert_eq!(audit_count(&gw, "login_refused").await, 49);
}

#[tokio::test]
async fn fifty_phones_racing_for_one_agent_under_replace() {
    let (gw, results) = race(AlreadyLoggedOnPolicy::Replace).await;
    assert!(
        results.iter().all(|r| r.as_deref() == Some("logged-in")),
        "{results:?}"
    );
    assert_eq!(gw.store.list_sessions().await.unwrap().len(), 1);
    assert_eq!(audit_count(&gw, "login").await, 50);
    assert_eq!(
        audit_count(&gw, "logout").await,
        49,
        "each move ends the previous session"
    );
}

#[tokio::test]
async fn fifty_phones_racing_for_one_agent_under_confirm() {
    let (gw, results) = race(AlreadyLoggedOnPolicy::Confirm).await;
    let won = results
        .iter()
        .filter(|r| r.as_deref() == Some("logged-in"))
        .count();
    assert_eq!(won, 1, "{results:?}");
    // Nobody pressed 1: every other caller was asked, then cancelled by the timeout.
    assert_eq!(
        results
            .iter()
            .filter(|r| r.as_deref() == Some("cancelled"))
            .count(),
        49
    );
    assert_eq!(gw.store.list_sessions().await.unwrap().len(), 1);
    assert_eq!(audit_count(&gw, "login_held").await, 49);
}

#[tokio::test]
async fn the_station_can_come_from_p_asserted_identity_or_a_pbx_header() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.station = StationFrom::Pai;
        c.sip.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let opts = PhoneOptions {
        invite_headers: "P-Asserted-Identity: \"Desk 7\" <sip:2007@pbx.example;user=phone>\r\n"
            .into(),
        ..Default::default()
    };
    let mut p = Phone::new(gw.udp, opts).await;
    p.call().await;
    p.press("1001#1234#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    assert_eq!(
        gw.store.list_sessions().await.unwrap()[0].station,
        "2007@pbx.example"
    );

    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.station = StationFrom::Header;
        c.login.station_header = "X-Station".into();
        c.sip.trusted_networks = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let opts = PhoneOptions {
        invite_headers: "X-Station: desk-42\r\n".into(),
        ..Default::default()
    };
    let mut p = Phone::new(gw.udp, opts).await;
    p.call().await;
    p.press("1002#2345#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    // Without the header, From is the station.
    let mut q = Phone::new(gw.udp, PhoneOptions::default()).await;
    q.call().await;
    q.press("1003#3456#").await;
    assert_eq!(q.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    let stations = gw.stations().await;
    assert!(
        stations.contains(&"desk-42".to_string()) && stations.contains(&station_of(&q)),
        "{stations:?}"
    );
}

#[tokio::test]
async fn a_station_asserted_from_outside_the_trusted_networks_is_ignored_and_a_bad_one_refused() {
    // Only 192.0.2.20 is a trusted PBX: a phone on loopback claiming a station is not believed.
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.station = StationFrom::Header;
        c.sip.trusted_networks = vec!["192.0.2.20/32".parse().unwrap()];
        c.sip.authenticate = agentgw::digest::Authenticate::Off;
    })
    .await;
    let opts = PhoneOptions {
        invite_headers: "X-Station: 9999@ceo-office.example\r\n".into(),
        ..Default::default()
    };
    let mut p = Phone::new(gw.udp, opts).await;
    assert_eq!(p.call().await, 200);
    p.press("1001#1234#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    let sessions = gw.store.list_sessions().await.unwrap();
    assert_eq!(
        sessions[0].station,
        station_of(&p),
        "the From, not the claim"
    );

    // From a trusted source, a value that is no station is refused, saying why.
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.station = StationFrom::Header;
        c.sip.trusted_networks = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    for bad in ["@", "desk 42", "sip:<x>"] {
        let opts = PhoneOptions {
            invite_headers: format!("X-Station: {bad}\r\n"),
            ..Default::default()
        };
        let mut p = Phone::new(gw.udp, opts).await;
        assert_eq!(p.call().await, 400, "{bad:?}");
        let refusal = p.invite_response.clone().unwrap();
        assert!(
            refusal
                .header("Warning")
                .unwrap_or("")
                .contains("X-Station"),
            "{bad:?}: {:?}",
            refusal.header("Warning")
        );
    }
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
}

/// A phone whose caller ID is withheld, as a PBX sends it (RFC 3323).
fn anonymous() -> PhoneOptions {
    PhoneOptions {
        user: "anonymous".into(),
        from_host: "anonymous.invalid".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn two_anonymous_callers_log_different_agents_on() {
    // Default: the extension is asked; # with no default extension is a station of the call.
    let gw = start_gateway().await;
    let mut p = Phone::new(gw.udp, anonymous()).await;
    p.call().await;
    p.press("1001#1234#").await;
    assert!(p.wait_for_prompt_start(PromptId::AgentExtension, 10).await);
    p.press("#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    let mut q = Phone::new(gw.udp, anonymous()).await;
    q.call().await;
    q.press("1002#2345##").await;
    assert_eq!(q.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    // A third keys an extension: that is its station.
    let mut r = Phone::new(gw.udp, anonymous()).await;
    r.call().await;
    r.press("1003#3456#2003#").await;
    assert_eq!(r.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    let stations = gw.stations().await;
    assert_eq!(stations.len(), 3);
    assert_eq!(stations[0], "2003");
    assert!(stations[1].starts_with("anonymous-") && stations[2].starts_with("anonymous-"));
    assert_ne!(stations[1], stations[2], "{stations:?}");

    // "call": no prompt, a station of the call alone.
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.anonymous_station = AnonymousStation::Call
    })
    .await;
    for keys in ["1001#1234#", "1002#2345#"] {
        let mut p = Phone::new(gw.udp, anonymous()).await;
        p.call().await;
        p.press(keys).await;
        assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
        assert!(!p.heard_ids().contains(&PromptId::AgentExtension));
    }
    let sessions = gw.store.list_sessions().await.unwrap();
    assert_eq!(sessions.len(), 2);
    assert_ne!(sessions[0].station, sessions[1].station);
}

#[tokio::test]
async fn calling_the_logout_number_logs_the_agent_off() {
    let gw = start_gateway().await;
    let agent_phone = logged_in(&gw, "1001#1234#").await;
    // From the agent's station: no questions.
    let opts = PhoneOptions {
        user: agent_phone.opts.user.clone(),
        dialed: "logout".into(),
        ..Default::default()
    };
    let mut p = Phone::new(gw.udp, opts).await;
    p.call().await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-off"));
    assert_eq!(p.heard_ids(), vec![PromptId::AgentLoggedOff]);
    assert!(gw.store.list_sessions().await.unwrap().is_empty());

    // From anywhere, with the agent number and passcode.
    logged_in(&gw, "1002#2345#").await;
    let opts = PhoneOptions {
        dialed: "logout".into(),
        ..Default::default()
    };
    let mut p = Phone::new(gw.udp, opts.clone()).await;
    p.call().await;
    assert!(
        p.wait_for_prompt_start(PromptId::AgentUser, 10).await,
        "{:?}",
        p.heard()
    );
    p.press("1002#2345#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-off"));
    assert!(gw.store.list_sessions().await.unwrap().is_empty());

    // An agent who is not logged on.
    let mut p = Phone::new(gw.udp, opts).await;
    p.call().await;
    p.press("1003#3456#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("not-logged-on"));
    assert!(p.heard_ids().contains(&PromptId::AgentNotLoggedOn));
}

fn stay(c: &mut agentgw::Config) {
    c.login.after_login = agentgw::login::rules::AfterLogin::Stay;
}

async fn staying(gw: &TestGateway, keys: &str) -> Phone {
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    p.call().await;
    p.press(keys).await;
    p.expect_prompt(PromptId::AgentLoginOk).await;
    p
}

#[tokio::test]
async fn a_stay_line_keeps_the_call_up_with_the_status_menu() {
    let gw = start_gateway_with("127.0.0.1", stay).await;
    let mut p = staying(&gw, "1001#1234#").await;
    assert_eq!(p.wait_for_bye(1).await, None, "the line stays up");
    assert_eq!(
        gw.store.list_sessions().await.unwrap()[0].status,
        "on_break"
    );
    p.press("1").await;
    p.expect_prompt(PromptId::StatusAvailable).await;
    assert_eq!(
        gw.store.list_sessions().await.unwrap()[0].status,
        "available"
    );
    p.press("0").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let available = p
        .heard_ids()
        .iter()
        .filter(|h| **h == PromptId::StatusAvailable)
        .count();
    assert_eq!(available, 2, "0 tells the status: {:?}", p.heard());
    p.press("9").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-off"));
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
}

#[tokio::test]
async fn hanging_up_a_stay_line_logs_the_agent_out() {
    let gw = start_gateway_with("127.0.0.1", stay).await;
    let mut p = staying(&gw, "1002#2345#").await;
    assert_eq!(p.hangup().await, Some(200));
    for _ in 0..50 {
        if gw.store.list_sessions().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
    assert_eq!(gw.store.audit_events("1002", "logout").await.unwrap(), 1);
    assert!(gw.settles().await);
}

#[tokio::test]
async fn a_stay_line_whose_phone_went_away_is_logged_out_as_station_lost() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        stay(c);
        c.login.line_timeout_secs = 2;
    })
    .await;
    // A phone that stops sending RTP after the login and answers nothing (power cut).
    let mut p = Phone::new(
        gw.udp,
        PhoneOptions {
            deaf: true,
            ..Default::default()
        },
    )
    .await;
    p.call().await;
    p.press("1001#1234#").await;
    p.expect_prompt(PromptId::AgentLoginOk).await;
    // Silent 2 s, then probed; no answer within the probe's 32 s: logged out.
    let mut gone = false;
    for _ in 0..45 {
        if gw.store.list_sessions().await.unwrap().is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(gone, "the session of the vanished phone ended");
    let log = gw.store.audit_log(Some("1001"), 5).await.unwrap();
    assert!(
        log.iter()
            .any(|r| r.event == "logout" && r.reason.as_deref() == Some("station lost")),
        "{log:?}"
    );
    assert!(p.requests_named("OPTIONS") >= 1, "probed in its dialog");
}

#[tokio::test]
async fn a_silent_stay_line_that_answers_the_probe_stays_logged_on() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        stay(c);
        c.login.line_timeout_secs = 1;
    })
    .await;
    let mut p = staying(&gw, "1001#1234#").await;
    // On hold: no RTP, but the phone answers what comes in its dialog.
    assert_eq!(
        p.reinvite("sendonly").await.and_then(|r| r.status()),
        Some(200)
    );
    let mut probed = false;
    for _ in 0..50 {
        if p.requests_named("OPTIONS") >= 2 {
            probed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(probed, "probed again after each answer");
    assert_eq!(gw.store.list_sessions().await.unwrap().len(), 1);
    assert_eq!(p.wait_for_bye(1).await, None);
}

#[tokio::test]
async fn a_stay_line_displaced_by_a_log_on_elsewhere_hears_the_drop_prompt_and_gets_a_bye() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        stay(c);
        c.login.already_logged_on = AlreadyLoggedOnPolicy::Replace;
    })
    .await;
    let first = staying(&gw, "1003#3456#").await;
    let second = staying(&gw, "1003#3456#").await;
    assert_eq!(first.wait_for_bye(15).await.as_deref(), Some("dropped"));
    assert!(
        first.heard_ids().contains(&PromptId::SessionDropped),
        "{:?}",
        first.heard()
    );
    assert_eq!(second.wait_for_bye(1).await, None);
    let sessions = gw.store.list_sessions().await.unwrap();
    assert_eq!(
        (sessions.len(), sessions[0].station.clone()),
        (1, station_of(&second))
    );
}

#[tokio::test]
async fn an_agent_flagged_must_change_sets_a_new_passcode_at_first_login() {
    let gw = start_gateway().await;
    gw.store.set_must_change("1002", true).await.unwrap();
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    p.call().await;
    p.press("1002#2345#").await;
    assert!(
        p.wait_for_prompt_start(PromptId::PasscodeExpired, 10).await,
        "{:?}",
        p.heard()
    );
    p.press("1111#").await;
    assert!(
        p.wait_for_prompt_start(PromptId::PasscodeInvalid, 10).await,
        "{:?}",
        p.heard()
    );
    p.press("97531#").await;
    assert!(
        p.wait_for_prompt_start(PromptId::PasscodeAgain, 10).await,
        "{:?}",
        p.heard()
    );
    p.press("97531#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    gw.store.logout("1002", "test").await.unwrap();
    // The old passcode is gone, the new one works, and no change is asked again.
    let mut old = Phone::new(gw.udp, PhoneOptions::default()).await;
    old.call().await;
    old.press("1002#2345#").await;
    assert!(
        old.wait_for_prompt_start(PromptId::AgentIncorrect, 10)
            .await,
        "{:?}",
        old.heard()
    );
    old.hangup().await;
    logged_in(&gw, "1002#97531#").await;
}

#[tokio::test]
async fn with_station_prompt_the_agent_keys_an_extension_or_takes_the_default() {
    let gw = start_gateway_with("127.0.0.1", |c| c.login.station = StationFrom::Prompt).await;
    gw.store
        .set_default_extension("1002", "2002")
        .await
        .unwrap();
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    p.call().await;
    p.press("1001#1234#").await;
    assert!(
        p.wait_for_prompt_start(PromptId::AgentExtension, 10).await,
        "{:?}",
        p.heard()
    );
    p.press("2001#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    let mut q = Phone::new(gw.udp, PhoneOptions::default()).await;
    q.call().await;
    q.press("1002#2345##").await;
    assert_eq!(q.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    let stations = gw.stations().await;
    assert_eq!(stations, vec!["2001", "2002"]);
}

#[tokio::test]
async fn the_number_dialed_picks_the_tenant_with_its_agents_sessions_and_language() {
    // A Spanish prompt set with only agent-user recorded (a tone here); the rest falls back.
    let prompts = tempfile::tempdir().unwrap();
    std::fs::create_dir(prompts.path().join("es")).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(prompts.path().join("es/agent-user.wav"), spec).unwrap();
    for n in 0..8000 {
        w.write_sample(((n as f32 * 0.3).sin() * 6000.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    let dir = prompts.path().to_path_buf();
    let gw = start_gateway_with("127.0.0.1", move |c| {
        c.prompts.dir = Some(dir);
        c.tenant = vec![agentgw::config::TenantConfig {
            name: "acme".into(),
            numbers: vec!["login-acme".into()],
            logout_numbers: vec![],
            language: Some("es".into()),
            already_logged_on: None,
            same_station: None,
            srtp: None,
        }];
    })
    .await;
    let acme = gw.store.for_tenant("acme");
    acme.add_agent(
        "1001",
        "Acme agent",
        &agentgw::login::Passcode("9753".into()),
    )
    .await
    .unwrap();
    let opts = PhoneOptions {
        dialed: "login-acme".into(),
        ..Default::default()
    };
    let mut p = Phone::new(gw.udp, opts).await;
    p.call().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let es = agentgw::media::prompts::Catalog::load_language(Some(prompts.path()), "es").unwrap();
    let first = es.get(PromptId::AgentUser).pcmu[2];
    assert!(
        p.received
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.payload == first),
        "the acme caller hears the Spanish agent-user"
    );
    // The default tenant's credentials are "incorrect" in acme.
    p.press("1001#1234#").await;
    assert!(
        p.wait_for_prompt_start(PromptId::AgentIncorrect, 10).await,
        "{:?}",
        p.heard()
    );
    p.press("1001#9753#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    assert_eq!(acme.list_sessions().await.unwrap().len(), 1);
    assert!(
        gw.store.list_sessions().await.unwrap().is_empty(),
        "the default tenant has no session"
    );
}

#[tokio::test]
async fn an_agent_with_its_own_language_hears_it_once_identified() {
    let prompts = tempfile::tempdir().unwrap();
    std::fs::create_dir(prompts.path().join("fr")).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w =
        hound::WavWriter::create(prompts.path().join("fr/agent-loginok.wav"), spec).unwrap();
    for n in 0..4000 {
        w.write_sample(((n as f32 * 0.21).sin() * 5000.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
    let dir = prompts.path().to_path_buf();
    let gw = start_gateway_with("127.0.0.1", move |c| c.prompts.dir = Some(dir)).await;
    gw.store.set_language("1003", "fr").await.unwrap();
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    p.call().await;
    p.press("1003#3456#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    let fr = agentgw::media::prompts::Catalog::load_language(Some(prompts.path()), "fr").unwrap();
    let frame = fr.get(PromptId::AgentLoginOk).pcmu[3];
    assert!(
        p.received
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.payload == frame),
        "the French agent-loginok"
    );
    assert!(
        !p.heard_ids().contains(&PromptId::AgentLoginOk),
        "not the English one"
    );
}

/// While collecting keys nothing plays: a phone that offered CN gets comfort noise (a packet
/// every 200 ms), the next prompt starts a new talkspurt (marker bit), and a phone that did not
/// offer it still gets a silence frame every 20 ms.
#[tokio::test]
async fn comfort_noise_while_collecting_keys_when_the_phone_offered_it() {
    let gw = start_gateway().await;
    let mut cn_phone = Phone::new(
        gw.udp,
        PhoneOptions {
            comfort_noise: true,
            ..Default::default()
        },
    )
    .await;
    let mut plain = Phone::new(gw.udp, PhoneOptions::default()).await;
    cn_phone.call().await;
    plain.call().await;
    for p in [&cn_phone, &plain] {
        p.expect_prompt(PromptId::AgentUser).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let from = [&cn_phone, &plain].map(|p| p.received.lock().unwrap().len());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let window = |p: &Phone, from: usize| p.received.lock().unwrap()[from..].to_vec();

    // The prompt's last frame may still be on its way when the phone counts it heard (a busy
    // test machine); what follows it is comfort noise only.
    let rx: Vec<_> = window(&cn_phone, from[0])
        .into_iter()
        .skip_while(|r| r.payload_type == 0)
        .collect();
    let cn = rx.iter().filter(|r| r.payload_type == 13).count();
    assert!((4..=6).contains(&cn), "about 5 CN packets a second: {cn}");
    assert!(
        rx.iter().all(|r| r.payload_type == 13),
        "no silence frames while collecting: {:?}",
        rx.iter()
            .map(|r| (r.payload_type, r.seq, r.ts, r.payload.len()))
            .collect::<Vec<_>>()
    );
    let rx = window(&plain, from[1]);
    assert!(
        (40..=60).contains(&rx.len()) && rx.iter().all(|r| r.payload_type == 0),
        "a phone without CN: 50 silence frames a second, got {} packets",
        rx.len()
    );

    // The next prompt is audio again, its first packet marked as a new talkspurt.
    let before = cn_phone.received.lock().unwrap().len();
    cn_phone.press("1001#").await;
    assert!(
        cn_phone
            .wait_for_prompt_start(PromptId::AgentPass, 10)
            .await
    );
    let rx = window(&cn_phone, before);
    let first_audio = rx.iter().find(|r| r.payload_type == 0).expect("audio");
    assert!(first_audio.marker, "a new talkspurt after comfort noise");
    cn_phone.press("1234#").await;
    cn_phone.expect_prompt(PromptId::AgentLoginOk).await;
    cn_phone.hangup().await;
    plain.hangup().await;
}

#[tokio::test]
async fn an_idle_stay_line_sends_comfort_noise_when_the_phone_offered_it() {
    let gw = start_gateway_with("127.0.0.1", stay).await;
    let opts = PhoneOptions {
        comfort_noise: true,
        ..Default::default()
    };
    let mut p = Phone::new(gw.udp, opts).await;
    p.call().await;
    assert!(p
        .answer_sdp
        .as_ref()
        .unwrap()
        .contains("a=rtpmap:13 CN/8000"));
    p.press("1001#1234#").await;
    p.expect_prompt(PromptId::AgentLoginOk).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let from = p.received.lock().unwrap().len();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rx = p.received.lock().unwrap()[from..].to_vec();
    let cn = rx.iter().filter(|r| r.payload_type == 13).count();
    assert!((4..=6).contains(&cn), "about 5 CN packets a second: {cn}");
    assert!(
        rx.iter().all(|r| r.payload_type == 13),
        "no silence frames while idle"
    );
    // A key brings audio back (the status prompt).
    p.press("1").await;
    p.expect_prompt(PromptId::StatusAvailable).await;
    p.hangup().await;
}
