//! Black-box tests: a gateway on free loopback ports, called by the test phone like a real
//! phone would, over real SIP and RTP.

mod support;

use agentgw::media::dtmf::DtmfMethod;
use agentgw::media::prompts::{Codec, PromptId};
use agentgw::sip::Transport;
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
async fn rtp_from_the_gateway_looks_like_a_real_phones() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    phone.call().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    phone.hangup().await;
    let rx = phone.received.lock().unwrap().clone();
    assert!(rx.len() >= 40, "{} packets in 1 s", rx.len());
    assert!(rx[0].marker, "first packet carries the marker bit");
    assert!(rx[1..].iter().all(|r| !r.marker));
    assert!(rx
        .iter()
        .all(|r| r.ssrc == rx[0].ssrc && r.payload_type == 0 && r.payload.len() == 160));
    for w in rx.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
        assert_eq!(w[1].ts, w[0].ts.wrapping_add(160));
    }
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
async fn late_offer_gets_our_offer_in_the_200_and_the_answer_from_the_ack() {
    let gw = start_gateway().await;
    let opts = PhoneOptions {
        late_offer: true,
        ..Default::default()
    };
    let mut phone = Phone::new(gw.udp, opts).await;
    assert_eq!(phone.call().await, 200);
    let offer = phone.answer_sdp.clone().unwrap();
    assert!(
        offer.contains("m=audio") && offer.contains(" 0 8 101"),
        "{offer}"
    );
    phone.press("1003#3456#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
}

#[tokio::test]
async fn pcma_caller_hears_pcma_prompts() {
    let gw = start_gateway().await;
    let opts = PhoneOptions {
        codecs: vec![Codec::Pcma],
        telephone_event: Some(96),
        ..Default::default()
    };
    let mut phone = Phone::new(gw.udp, opts).await;
    phone.call().await;
    assert!(phone.answer_sdp.as_ref().unwrap().contains("RTP/AVP 8 96"));
    phone.expect_prompt(PromptId::AgentUser).await;
    phone.press("1001#1234#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
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

/// Keys sent as INFO after the 200 but before the ACK (the ACK lost or overtaken on the way,
/// or a dialer keying the moment it is answered): the dialog is confirmed for the caller once
/// it has the 200 (RFC 3261 §12.1.1), so each INFO is answered 200 once the ACK is in, and
/// its key counts, in order. Past `MAX_REQUESTS_BEFORE_ACK` a request waiting for the ACK
/// gets 500 with Retry-After at once.
#[tokio::test]
async fn info_keys_sent_before_the_ack_are_answered_and_kept_in_order() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(phone.invite_until_answered().await, 200);
    let digits = "1001#1234#";
    for c in digits.chars() {
        let signal = if c == '#' {
            "11".to_string()
        } else {
            c.to_string()
        };
        let req = phone.in_dialog(
            "INFO",
            "application/dtmf-relay",
            &format!("Signal={signal}\r\nDuration=160\r\n"),
        );
        phone.send_raw(req.as_bytes()).await;
    }
    // Over the bound: keepalive INFOs (no body) past it are refused at once, before the ACK.
    let over = agentgw::sip::MAX_REQUESTS_BEFORE_ACK - digits.len() + 3;
    for _ in 0..over {
        let req = phone.in_dialog("INFO", "", "");
        phone.send_raw(req.as_bytes()).await;
    }
    let mut early = Vec::new();
    while let Some(m) = phone.final_response("INFO", 1).await {
        early.push(m.status());
    }
    assert_eq!(early, vec![Some(500); 3], "before the ACK");
    phone.ack().await;
    let mut answers = Vec::new();
    for _ in 0..agentgw::sip::MAX_REQUESTS_BEFORE_ACK {
        answers.push(
            phone
                .final_response("INFO", 5)
                .await
                .and_then(|m| m.status()),
        );
    }
    assert!(answers.iter().all(|s| *s == Some(200)), "{answers:?}");
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    assert_eq!(gw.store.list_sessions().await.unwrap().len(), 1);
}

/// At most `MAX_REQUESTS_BEFORE_ACK_IN_ALL` requests wait for an ACK across all calls (each
/// holds a transaction): past it they get 500 at once; the ones that waited are answered
/// when their calls are ACKed.
#[tokio::test]
async fn requests_waiting_for_an_ack_are_bounded_in_all_calls() {
    use agentgw::sip::{MAX_REQUESTS_BEFORE_ACK, MAX_REQUESTS_BEFORE_ACK_IN_ALL};
    let gw = start_gateway().await;
    let calls = MAX_REQUESTS_BEFORE_ACK_IN_ALL / MAX_REQUESTS_BEFORE_ACK + 1;
    let mut phones = Vec::new();
    for _ in 0..calls {
        let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
        assert_eq!(phone.invite_until_answered().await, 200);
        for _ in 0..MAX_REQUESTS_BEFORE_ACK {
            let req = phone.in_dialog("INFO", "", "");
            phone.send_raw(req.as_bytes()).await;
        }
        phones.push(phone);
    }
    let mut last = phones.pop().unwrap();
    for _ in 0..MAX_REQUESTS_BEFORE_ACK {
        let m = last
            .final_response("INFO", 5)
            .await
            .expect("refused at once");
        assert_eq!(m.status(), Some(500));
    }
    for phone in &mut phones {
        phone.ack().await;
    }
    for phone in &mut phones {
        for _ in 0..MAX_REQUESTS_BEFORE_ACK {
            let m = phone
                .final_response("INFO", 5)
                .await
                .expect("answered after the ACK");
            assert_eq!(m.status(), Some(200));
        }
        assert_eq!(phone.hangup().await, Some(200));
    }
    last.ack().await;
    assert_eq!(last.hangup().await, Some(200));
    assert!(gw.settles().await, "calls {}", gw.gateway.active_calls());
}

/// A re-INVITE (a hold) that overtakes the caller's ACK is answered once the ACK is in, and
/// the call goes on; a call that ends without its ACK answers what waited with 481.
#[tokio::test]
async fn a_re_invite_before_the_ack_is_answered_after_it() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(phone.invite_until_answered().await, 200);
    let hold = phone.our_sdp().replace("a=sendrecv", "a=sendonly");
    let reinvite = phone.in_dialog("INVITE", "application/sdp", &hold);
    let cseq = phone.cseq();
    phone.send_raw(reinvite.as_bytes()).await;
    // (The 200 to the first INVITE comes again until the ACK: told apart by CSeq.)
    let of_reinvite = |m: &SipMsg| {
        m.header("CSeq")
            .is_some_and(|c| c.starts_with(&format!("{cseq} ")))
    };
    while let Some(m) = phone.final_response("INVITE", 1).await {
        assert!(!of_reinvite(&m), "answered before the ACK: {m:?}");
    }
    phone.ack().await;
    let resp = loop {
        let m = phone
            .final_response("INVITE", 5)
            .await
            .expect("answered after the ACK");
        if of_reinvite(&m) {
            break m;
        }
    };
    assert_eq!(resp.status(), Some(200));
    assert!(String::from_utf8_lossy(&resp.body).contains("a=recvonly"));
    phone.ack_cseq(cseq).await;
    phone.press("1001#1234#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));

    // No ACK at all: what waited for it is answered 481 when the call ends (Timer H, 32 s,
    // is too long for a test: the caller's BYE ends it).
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(phone.invite_until_answered().await, 200);
    let info = phone.in_dialog("INFO", "application/dtmf", "1");
    phone.send_raw(info.as_bytes()).await;
    assert_eq!(phone.hangup().await, Some(200));
    let resp = phone
        .final_response("INFO", 5)
        .await
        .expect("INFO answered");
    assert_eq!(resp.status(), Some(481));
    assert!(gw.settles().await, "calls {}", gw.gateway.active_calls());
}

#[tokio::test]
async fn cancel_gets_200_and_a_487_that_is_retransmitted_until_acked() {
    // Ring before answering so the CANCEL arrives while the INVITE is still pending.
    let gw = start_gateway_with("127.0.0.1", |c| c.sip.answer_after_ms = 3000).await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    phone.send_invite().await;
    let ringing = loop {
        let r = phone
            .response("INVITE", 5)
            .await
            .expect("provisional response");
        if r.status() == Some(180) {
            break r;
        }
    };
    assert!(ringing.header("To").unwrap().contains("tag="));
    phone.send_cancel().await;
    let cancel_resp = phone.final_response("CANCEL", 5).await.unwrap();
    assert_eq!(cancel_resp.status(), Some(200));
    let first = phone.final_response("INVITE", 5).await.unwrap();
    assert_eq!(first.status(), Some(487));
    // Not ACKed yet: the 487 must be sent again (Timer G), then the ACK stops it.
    let again = phone.final_response("INVITE", 3).await;
    assert_eq!(again.and_then(|m| m.status()), Some(487));
    phone.invite_response = Some(first);
    phone.ack_failure().await;
    assert!(
        gw.settles().await,
        "calls {} dialogs {}",
        gw.gateway.active_calls(),
        gw.gateway.open_dialogs()
    );
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
}

#[tokio::test]
async fn options_is_answered_with_allow_and_accept() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    let r = phone.options().await.expect("OPTIONS answered");
    assert_eq!(r.status(), Some(200));
    assert!(r.header("Allow").unwrap().contains("INVITE"));
    assert_eq!(r.header("Accept"), Some("application/sdp"));
    assert!(!r.header("Supported").unwrap_or("").contains("timer"));
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
async fn an_rtp_flood_on_one_call_leaves_it_and_the_other_calls_working() {
    let gw = start_gateway().await;
    let mut victim = Phone::new(gw.udp, PhoneOptions::default()).await;
    let other_opts = PhoneOptions {
        user: "other".into(),
        ..Default::default()
    };
    let mut other = Phone::new(gw.udp, other_opts).await;
    assert_eq!(victim.call().await, 200);
    assert_eq!(other.call().await, 200);
    // The victim's own packet first: the gateway latches its RTP to the phone.
    victim.send_audio_frame().await;
    assert!(victim.wait_for_prompt_start(PromptId::AgentUser, 5).await);
    // RTP and junk at the victim's RTP port as fast as one socket sends, for 1.5 s, while the
    // other caller keys: the gateway reads at most 32 packets per call per 20 ms, the rest
    // overflow that one socket's buffer.
    let target = victim.gateway_rtp().expect("the gateway's RTP address");
    let flood = std::thread::spawn(move || {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut rtp = [0u8; 172];
        rtp[0] = 0x80;
        let (start, mut sent) = (std::time::Instant::now(), 0u32);
        while start.elapsed() < Duration::from_millis(1500) {
            rtp[2..4].copy_from_slice(&(sent as u16).to_be_bytes());
            let pkt: &[u8] = if sent % 2 == 0 { &rtp } else { &[0xff; 40] };
            let _ = socket.send_to(pkt, target);
            sent += 1;
        }
        sent
    });
    let sessions = async {
        tokio::join!(
            async {
                // Keys once the flood is over (during it they would overflow with the rest).
                while !flood.is_finished() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                victim.press("1001#1234#").await;
                victim.wait_for_bye(15).await
            },
            async {
                assert!(other.wait_for_prompt_start(PromptId::AgentUser, 5).await);
                other.press("1002#2345#").await;
                other.wait_for_bye(15).await
            }
        )
    };
    let (v, o) = sessions.await;
    let flooded = flood.join().unwrap();
    assert!(flooded > 10_000, "only {flooded} packets sent");
    assert_eq!(o.as_deref(), Some("logged-in"), "{:?}", other.heard());
    assert_eq!(v.as_deref(), Some("logged-in"), "{:?}", victim.heard());
    assert_eq!(gw.store.list_sessions().await.unwrap().len(), 2);
}

/// Keys from a third party who found the call's RTP port (another address than the phone's),
/// against the gateway with `strict_rtp` on or off: the intruder keys another agent's number
/// and passcode while the phone keys its own.
async fn intruder_keys(strict: bool) -> (Option<String>, Vec<String>, u64) {
    let gw = start_gateway_with("127.0.0.1", |c| c.media.strict_rtp = strict).await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(phone.call().await, 200);
    // The phone's own packet first: the gateway learns its RTP source.
    phone.send_audio_frame().await;
    assert!(phone.wait_for_prompt_start(PromptId::AgentUser, 5).await);
    let intruder = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    phone.press_from(&intruder, "1002#2345#").await;
    phone.press("1001#1234#").await;
    let result = phone.wait_for_bye(15).await;
    let agents = gw
        .store
        .list_sessions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.agent)
        .collect();
    let (admin, token) = gw.start_admin().await;
    let (_, metrics) = http(admin, "GET", "/metrics", Some(&token), None).await;
    let dropped = metric(&metrics, "agentgw_rtp_foreign_dropped_total")
        .expect("agentgw_rtp_foreign_dropped_total in /metrics");
    (result, agents, dropped)
}

#[tokio::test]
async fn strict_rtp_drops_keys_from_another_address_than_the_phones() {
    let (result, agents, dropped) = intruder_keys(true).await;
    assert_eq!(result.as_deref(), Some("logged-in"));
    assert_eq!(
        agents,
        vec!["1001".to_string()],
        "only the phone's keys count"
    );
    // 10 keys of 6 packets each from the intruder.
    assert_eq!(dropped, 60);
}

#[tokio::test]
async fn without_strict_rtp_keys_from_anywhere_reach_the_call() {
    // What strict RTP guards against: the intruder's keys log its agent in on this call.
    let (_, agents, dropped) = intruder_keys(false).await;
    assert_eq!(agents, vec!["1002".to_string()]);
    assert_eq!(dropped, 0);
}

/// A phone calling over TCP logs 1001 in.
async fn logs_in_over_tcp(gateway: std::net::SocketAddr) {
    let opts = PhoneOptions {
        transport: Transport::Tcp,
        ..Default::default()
    };
    let mut phone = Phone::new(gateway, opts).await;
    assert_eq!(phone.call().await, 200);
    phone.press("1001#1234#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
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
async fn hold_and_unhold_keep_the_call_and_the_flow() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    phone.call().await;
    phone.press("1001#").await;
    let hold = phone
        .reinvite("sendonly")
        .await
        .expect("re-INVITE answered");
    assert_eq!(hold.status(), Some(200));
    assert!(String::from_utf8_lossy(&hold.body).contains("a=recvonly"));
    let unhold = phone
        .reinvite("sendrecv")
        .await
        .expect("re-INVITE answered");
    assert_eq!(unhold.status(), Some(200));
    assert!(String::from_utf8_lossy(&unhold.body).contains("a=sendrecv"));
    phone.press("1234#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
}

#[tokio::test]
async fn a_reinvite_that_moves_the_media_moves_where_the_gateway_sends() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(phone.call().await, 200);
    // The phone's own RTP first: the gateway latches to it.
    phone.send_audio_frame().await;
    assert!(phone.wait_for_prompt_start(PromptId::AgentUser, 5).await);
    // The media moves to another socket (another port in the SDP).
    let moved = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let old_port = phone
        .our_sdp()
        .split("m=audio ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let body = phone.our_sdp().replace(
        &format!("m=audio {old_port} "),
        &format!("m=audio {} ", moved.local_addr().unwrap().port()),
    );
    let resp = phone.reinvite_with(&body).await.expect("a final response");
    assert_eq!(resp.status(), Some(200));
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(Duration::from_secs(2), moved.recv_from(&mut buf)).await;
    assert!(got.is_ok(), "no RTP at the new address after the re-INVITE");
    // A refresh with the same SDP keeps sending there.
    let resp = phone.reinvite_with(&body).await.expect("a final response");
    assert_eq!(resp.status(), Some(200));
    let got = tokio::time::timeout(Duration::from_secs(2), moved.recv_from(&mut buf)).await;
    assert!(got.is_ok(), "no RTP at the new address after a refresh");
}

#[tokio::test]
async fn unparseable_sdp_gets_400_with_a_warning_and_no_codec_gets_488() {
    let gw = start_gateway().await;
    // Over UDP and TCP: the answers are stateless, sent on the request's own connection.
    for (transport, addr) in [(Transport::Udp, gw.udp), (Transport::Tcp, gw.tcp)] {
        let opts = || PhoneOptions {
            transport,
            ..Default::default()
        };
        let mut phone = Phone::new(addr, opts()).await;
        let bad = phone
            .raw_invite("v=0\r\nm=audio nonsense RTP/AVP 0\r\n")
            .await;
        assert_eq!(bad.status(), Some(400), "{transport:?}");
        assert!(
            bad.header("Warning").unwrap().contains("399 agentgw"),
            "{bad:?}"
        );

        let mut phone = Phone::new(addr, opts()).await;
        let g729 = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        let r = phone.raw_invite(g729).await;
        assert_eq!(r.status(), Some(488), "{transport:?}");
    }
    // And the gateway still logs agents in.
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    phone.call().await;
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

#[tokio::test]
async fn in_dialog_requests_for_unknown_calls_get_481_and_unknown_methods_405() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    phone.set_to_tag("nosuchdialog");
    assert_eq!(phone.hangup().await, Some(481));
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    let r = phone.raw_request("SUBSCRIBE").await;
    assert_eq!(r.status(), Some(405));
    assert!(r.header("Allow").unwrap().contains("INVITE"));
}

#[tokio::test]
async fn malformed_sip_is_dropped_and_everything_else_keeps_working() {
    let gw = start_gateway().await;
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let big_header = format!(
        "INVITE sip:login@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\nX-Big: {}\r\n\r\n",
        "a".repeat(60000)
    );
    for datagram in [
        &b"\x00\x01\x02garbage"[..],
        b"INVITE sip:login@127.0.0.1 SIP/2.0\r\nVia: broken\r\n\r\n",
        b"INVITE\r\n\r\n",
        b"SIP/2.0 200 OK\r\nCSeq: x\r\n\r\n",
        b"FOO sip:login@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKy\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: junk\r\nCSeq: 1 FOO\r\nContent-Length: 0\r\n\r\n",
        big_header.as_bytes(),
    ] {
        junk.send_to(datagram, gw.udp).unwrap();
    }
    // Garbage on a TCP connection too.
    let mut tcp = tokio::net::TcpStream::connect(gw.tcp).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"NOT SIP AT ALL\r\n\r\n\x00\xff")
        .await
        .unwrap();
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(phone.call().await, 200);
    phone.press("1001#1234#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
}

#[tokio::test]
async fn calls_over_max_calls_per_second_get_503_with_retry_after_1() {
    let gw = start_gateway_with("127.0.0.1", |c| c.sip.max_calls_per_second = 2).await;
    let mut answered = vec![];
    let mut refused = 0;
    for _ in 0..4 {
        let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
        match p.call().await {
            200 => answered.push(p),
            503 => {
                let r = p.invite_response.as_ref().unwrap();
                assert_eq!(r.header("Retry-After"), Some("1"));
                refused += 1;
            }
            other => panic!("INVITE answered {other}"),
        }
    }
    // Four at once against two a second: the burst of two, maybe one more as time passes.
    assert!(
        (2..=3).contains(&answered.len()),
        "{} answered",
        answered.len()
    );
    assert_eq!(answered.len() + refused, 4);
    // A second later there is room again, and the answered calls go on as usual.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut later = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(later.call().await, 200);
    later.press("1001#1234#").await;
    assert_eq!(later.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    for mut p in answered {
        p.hangup().await;
    }
    assert!(gw.settles().await);
}

#[tokio::test]
async fn calls_past_max_calls_get_503_with_retry_after() {
    let gw = start_gateway_with("127.0.0.1", |c| c.sip.max_calls = 1).await;
    let mut first = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(first.call().await, 200);
    let mut second = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(second.call().await, 503);
    assert!(second
        .invite_response
        .as_ref()
        .unwrap()
        .header("Retry-After")
        .is_some());
    first.hangup().await;
    assert!(gw.settles().await);
    let mut third = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(third.call().await, 200);
}

/// A refusal is sent once and again for each retransmission of the INVITE, never on a timer
/// of its own: over UDP a source address can be forged, and a 503 retransmitted until an ACK
/// that never comes (RFC 3261 Timer G, ~10 times in 32 s) would turn each forged INVITE into
/// a stream of answers at someone else.
#[tokio::test]
async fn a_refused_invite_is_answered_once_and_again_only_when_retransmitted() {
    let gw = start_gateway_with("127.0.0.1", |c| c.sip.max_calls = 1).await;
    let mut first = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(first.call().await, 200);
    let mut forged = Phone::new(gw.udp, PhoneOptions::default()).await;
    let invite = forged.invite_text();
    forged.send_raw(invite.as_bytes()).await;
    let refusal = forged.final_response("INVITE", 5).await.expect("refused");
    assert_eq!(refusal.status(), Some(503));
    // Timer G would have sent it again at 0.5, 1.5 and 3.5 s.
    assert!(
        forged.response("INVITE", 4).await.is_none(),
        "the refusal was sent again without a retransmitted INVITE"
    );
    // A retransmitted INVITE (the same branch) gets the same answer again, and its ACK is
    // taken quietly.
    forged.send_raw(invite.as_bytes()).await;
    let again = forged
        .final_response("INVITE", 5)
        .await
        .expect("answered again");
    assert_eq!(again.status(), Some(503));
    assert_eq!(again.header("To"), refusal.header("To"));
    forged.invite_response = Some(again);
    forged.ack_failure().await;
    assert!(forged.response("INVITE", 1).await.is_none());
    // The gateway goes on as before.
    first.press("1001#1234#").await;
    assert_eq!(first.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    assert!(gw.settles().await);
}

/// A burst of new calls' INVITEs at once (a PBX passing on a shift start) is answered
/// without a retransmission: the SIP UDP socket's receive buffer (`[sip]
/// udp_receive_buffer_kib`, 4 MiB) holds the burst while the gateway works through it. With
/// the kernel's default (208 KiB, ~48 datagrams on loopback) the kernel dropped most of them
/// and each phone would have waited 0.5 s to send its INVITE again.
#[tokio::test]
async fn a_burst_of_invites_is_answered_without_retransmissions() {
    const CALLS: usize = 300;
    let rmem_max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root && rmem_max < 8 << 20 {
        let why = format!(
            "a_burst_of_invites_is_answered_without_retransmissions needs root (SO_RCVBUFFORCE) \
             or net.core.rmem_max >= 8 MiB (it is {rmem_max}) for the 4 MiB buffer"
        );
        assert!(std::env::var("CI").is_err(), "{why}");
        eprintln!("SKIPPED: {why}");
        return;
    }
    let gw = start_gateway().await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // This end holds every answer too (two per call, with retransmitted 200s).
    let asked: libc::c_int = 16 << 20;
    // SAFETY: the socket's fd is open; the value is a c_int whose size is passed with it.
    let set = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&asked as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert!(set == 0 || !root, "SO_RCVBUFFORCE as root");
    let me = sock.local_addr().unwrap();
    let gwa = gw.udp;
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 9 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
    let request = |method: &str, n: usize, cseq: u32, to_tag: &str, body: &str| {
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{method} sip:login@{gwa} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKburst{n}x{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:burst{n}@test.example>;tag=b{n}\r\nTo: <sip:login@{gwa}>{to_tag}\r\n\
             Call-ID: burst-{n}\r\nCSeq: {cseq} {method}\r\nContact: <sip:burst{n}@{me}>\r\n{ct}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    for n in 0..CALLS {
        let invite = request("INVITE", n, 1, "", sdp);
        sock.send_to(invite.as_bytes(), gwa).await.unwrap();
    }
    // The 200s within 5 s (a phone's Timer A would have retransmitted at 0.5 s).
    let mut answered = std::collections::HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65536];
    while answered.len() < CALLS {
        let Ok(Ok((len, _))) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await
        else {
            break;
        };
        let Some(m) = SipMsg::parse(&buf[..len]) else {
            continue;
        };
        if m.status() != Some(200) || m.cseq_method() != "INVITE" {
            continue;
        }
        let n: usize = m
            .header("Call-ID")
            .and_then(|c| c.strip_prefix("burst-"))
            .and_then(|n| n.parse().ok())
            .expect("a Call-ID of ours");
        let tag = m
            .header("To")
            .and_then(|t| t.split(";tag=").nth(1))
            .map(|t| t.split(';').next().unwrap_or(t).to_string())
            .expect("a To tag");
        answered.insert(n, tag);
    }
    for (n, tag) in &answered {
        let tag = format!(";tag={tag}");
        for (method, cseq) in [("ACK", 1), ("BYE", 2)] {
            let req = request(method, *n, cseq, &tag, "");
            sock.send_to(req.as_bytes(), gwa).await.unwrap();
        }
    }
    assert_eq!(answered.len(), CALLS, "answered without a retransmission");
    assert!(gw.settles().await, "calls {}", gw.gateway.active_calls());
}

/// A caller that sends re-INVITEs without ACKing them gets one at a time: while one waits for
/// its ACK, the next is refused at once with 500 and Retry-After 0-10 s (RFC 3261 §14.2),
/// statelessly. Each one taken on would hold a transaction (~22 KiB) and its 2xx
/// retransmissions for 32 s: 20,000 took the gateway to 459 MB.
#[tokio::test]
async fn re_invites_not_acked_are_taken_one_at_a_time() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(phone.call().await, 200);
    let sdp = phone.our_sdp();
    let first = phone.in_dialog("INVITE", "application/sdp", &sdp);
    let first_cseq = phone.cseq();
    phone.send_raw(first.as_bytes()).await;
    let ok = phone.final_response("INVITE", 5).await.expect("answered");
    assert_eq!(ok.status(), Some(200));
    for _ in 0..20 {
        let again = phone.in_dialog("INVITE", "application/sdp", &sdp);
        phone.send_raw(again.as_bytes()).await;
    }
    // 20 refusals, each once; the first re-INVITE's 200 is retransmitted until its ACK, as
    // RFC 3261 says for a 2xx.
    let mut refused = 0;
    while let Some(r) = phone.response("INVITE", 3).await {
        match r.status() {
            Some(500) => {
                let after: u32 = r
                    .header("Retry-After")
                    .expect("Retry-After")
                    .parse()
                    .unwrap();
                assert!(after <= 10, "Retry-After {after}");
                refused += 1;
            }
            Some(200) => {}
            other => panic!("re-INVITE answered {other:?}"),
        }
    }
    assert_eq!(refused, 20);
    // Once the first is ACKed, the next re-INVITE is taken (hold), and the login goes on.
    phone.ack_cseq(first_cseq).await;
    let hold = phone.reinvite("sendonly").await.expect("answered");
    assert_eq!(hold.status(), Some(200));
    let unhold = phone.reinvite("sendrecv").await.expect("answered");
    assert_eq!(unhold.status(), Some(200));
    phone.press("1001#1234#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
}

/// A caller gets `MAX_REQUESTS_PER_SECOND_PER_CALL` requests a second in its call (a second's
/// worth at once); past it 503 with Retry-After 1, statelessly, and the call goes on.
#[tokio::test]
async fn requests_in_a_call_past_the_per_call_rate_get_503_and_the_call_goes_on() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(phone.call().await, 200);
    let max = agentgw::sip::MAX_REQUESTS_PER_SECOND_PER_CALL as usize;
    let (mut ok, mut refused) = (0, 0);
    let started = std::time::Instant::now();
    for _ in 0..max + 60 {
        match phone.info_keepalive().await {
            Some(200) => ok += 1,
            Some(503) => refused += 1,
            other => panic!("INFO answered {other:?}"),
        }
    }
    // The bucket refills at `max` a second while the INFOs go out.
    let refill = (started.elapsed().as_secs_f64() * max as f64).ceil() as usize;
    assert!(
        (max..=max + refill).contains(&ok),
        "{ok} answered 200, {refused} 503, refill {refill}"
    );
    assert_eq!(ok + refused, max + 60);
    // A second later the caller has its budget again: it keys its login over INFO.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    phone.press_info("1001#1234#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
}

/// A request in a call the gateway has hung up (its BYE not yet answered) gets 481: the call
/// is gone, nothing went wrong inside the gateway.
#[tokio::test]
async fn a_request_after_the_gateway_hung_up_gets_481() {
    let gw = start_gateway().await;
    let opts = PhoneOptions {
        deaf: true,
        ..Default::default()
    };
    let mut phone = Phone::new(gw.udp, opts).await;
    assert_eq!(phone.call().await, 200);
    phone.press("1001#1234#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    assert_eq!(phone.info_keepalive().await, Some(481));
}

#[tokio::test]
async fn phone_sending_sip_info_only_logs_in() {
    let gw = start_gateway().await;
    let opts = PhoneOptions {
        telephone_event: None,
        ..Default::default()
    };
    let mut phone = Phone::new(gw.udp, opts).await;
    phone.call().await;
    // Other INFO content is refused without harming the call.
    assert_eq!(
        phone
            .info("application/media_control+xml", "<media_control/>")
            .await,
        Some(415)
    );
    assert_eq!(
        phone.info("application/dtmf-relay", "Signal=Z\r\n").await,
        Some(400)
    );
    assert_eq!(phone.info_keepalive().await, Some(200));
    phone.press_info("1001#1234#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    assert_eq!(gw.gateway.dtmf_keys(DtmfMethod::Info), 10);
}

#[tokio::test]
async fn phone_sending_tones_in_the_audio_only_logs_in() {
    let gw = start_gateway().await;
    let opts = PhoneOptions {
        telephone_event: None,
        codecs: vec![Codec::Pcma],
        ..Default::default()
    };
    let mut phone = Phone::new(gw.udp, opts).await;
    phone.call().await;
    assert!(!phone
        .answer_sdp
        .as_ref()
        .unwrap()
        .contains("telephone-event"));
    phone.press_tones("1001#1234#", false).await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    assert_eq!(gw.gateway.dtmf_keys(DtmfMethod::Inband), 10);
}

#[tokio::test]
async fn phone_sending_events_and_audible_tones_counts_each_key_once() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    phone.call().await;
    phone.press_tones("1001#1234#", true).await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    assert_eq!(gw.gateway.dtmf_keys(DtmfMethod::Rfc4733), 10);
    assert_eq!(gw.gateway.dtmf_keys(DtmfMethod::Inband), 0);
}

#[tokio::test]
async fn phone_sending_events_and_info_counts_each_key_once() {
    let gw = start_gateway().await;
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    phone.call().await;
    for c in "1001#1234#".chars() {
        phone.press(&c.to_string()).await;
        assert_eq!(
            phone
                .info(
                    "application/dtmf-relay",
                    &format!("Signal={c}\r\nDuration=160\r\n")
                )
                .await,
            Some(200)
        );
    }
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    let total = gw.gateway.dtmf_keys(DtmfMethod::Rfc4733) + gw.gateway.dtmf_keys(DtmfMethod::Info);
    assert_eq!(total, 10);
}

#[tokio::test]
async fn a_method_left_out_of_the_config_is_ignored() {
    let gw = start_gateway_with("127.0.0.1", |c| c.dtmf.methods = vec![DtmfMethod::Rfc4733]).await;
    let opts = PhoneOptions {
        telephone_event: None,
        ..Default::default()
    };
    let mut phone = Phone::new(gw.udp, opts).await;
    phone.call().await;
    phone.press_info("1001#1234#").await;
    phone.press_tones("1001#1234#", false).await;
    assert_eq!(phone.wait_for_bye(1).await, None);
    assert_eq!(
        gw.gateway.dtmf_keys(DtmfMethod::Info) + gw.gateway.dtmf_keys(DtmfMethod::Inband),
        0
    );
    phone.hangup().await;
}

/// One seeded mutation of a SIP message: bytes flipped, cut short, a line added, emptied,
/// given an odd value or dropped, other line endings, an odd start line or length, junk after
/// it, or a broken SDP line.
fn mutate(rng: &mut rand::rngs::StdRng, m: &[u8]) -> Vec<u8> {
    use rand::Rng;
    const WEIRD: &[&str] = &[
        "",
        " ",
        ";",
        "<",
        ">",
        "\"",
        "%",
        "%zz",
        "\0",
        "\u{ff}",
        "99999999999999999999999999",
        "-1",
        "sip:",
        "sips:",
        "tel:",
        "<sip:@>",
        "[::1",
        "[:::]:99999",
        "é",
        ";branch",
        ";branch=",
        ";tag=;tag=",
        "SIP/2.0/XYZ",
        "SIP/3.0/UDP x",
        "4294967296 INVITE",
        "0 INVITE",
        "1",
        ",,,,",
        "<sip:a@b>;>;<",
        "sip:a@b:0",
        "sip:a@b:65536",
        "sip:a@300.1.1.1",
        "*",
        "<sip:a@b;lr>, <>",
    ];
    const HEADERS: &[&str] = &[
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Content-Length",
        "Max-Forwards",
        "Content-Type",
        "Route",
        "Record-Route",
        "Expires",
        "Authorization",
        "v",
        "f",
        "t",
        "i",
        "m",
        "l",
        "Supported",
        "Require",
        "Session-Expires",
        "RSeq",
        "RAck",
        "Refer-To",
    ];
    const START: &[&str] = &[
        "INVITE",
        "INVITE sip:x SIP/2.0 extra",
        "INVITE  SIP/2.0",
        "SIP/2.0 999 X",
        "SIP/2.0 abc OK",
        "SIP/2.0 100",
        "ACK * SIP/2.0",
        "INVITE <sip:x> SIP/2.0",
        "BYE sip:x@[::1]:5060;transport=tcp SIP/2.0",
        "CANCEL sip:login@127.0.0.1 SIP/2.0",
        "PRACK sip:x SIP/2.0",
    ];
    const SDP: &[&str] = &[
        "m=audio 99999 RTP/AVP 0",
        "c=IN IP4 ::1",
        "m=audio 0 RTP/AVP",
        "a=rtpmap:101 telephone-event",
        "m=audio x RTP/AVP 0",
        "c=IN IP6 1.2.3.4",
        "a=fmtp:101 0-99999999",
        "m=video 5 RTP/AVP 0",
        "a=rtpmap:0 PCMU/0",
        "m=audio 4000/99 RTP/AVP 0",
    ];
    let split = |m: &[u8]| -> Vec<Vec<u8>> {
        String::from_utf8_lossy(m)
            .split("\r\n")
            .map(|l| l.as_bytes().to_vec())
            .collect()
    };
    let mut out = m.to_vec();
    if m.is_empty() {
        return out;
    }
    match rng.gen_range(0..10) {
        0 => {
            for _ in 0..rng.gen_range(1..8) {
                let i = rng.gen_range(0..out.len());
                out[i] = rng.gen();
            }
        }
        1 => out.truncate(rng.gen_range(0..=out.len())),
        k @ 2..=4 => {
            let mut lines = split(m);
            let i = rng.gen_range(0..lines.len());
            let header = HEADERS[rng.gen_range(0..HEADERS.len())];
            let weird = WEIRD[rng.gen_range(0..WEIRD.len())];
            match k {
                2 => lines.insert(i, format!("{header}: {weird}").into_bytes()),
                3 => {
                    let name = String::from_utf8_lossy(&lines[i]);
                    let name = name.split(':').next().unwrap_or("").to_string();
                    lines[i] = format!("{name}: {weird}").into_bytes();
                }
                _ => {
                    lines.remove(i);
                }
            }
            out = lines.join(&b"\r\n"[..]);
        }
        5 => {
            let to = ["\n", "\r", "\r\n ", "\r\n\t"][rng.gen_range(0..4)];
            out = String::from_utf8_lossy(m)
                .replacen("\r\n", to, rng.gen_range(1..6))
                .into_bytes();
        }
        6 => {
            let mut lines = split(m);
            lines[0] = START[rng.gen_range(0..START.len())].as_bytes().to_vec();
            out = lines.join(&b"\r\n"[..]);
        }
        7 => {
            let len = ["99999", "-5", "1e3", "", "18446744073709551616"][rng.gen_range(0..5)];
            out = String::from_utf8_lossy(m)
                .replacen("Content-Length: ", &format!("Content-Length: {len}"), 1)
                .into_bytes();
        }
        8 => out.extend((0..rng.gen_range(1..200)).map(|_| rng.gen::<u8>())),
        _ => {
            let mut lines = split(m);
            if let Some(body) = lines.iter().position(|l| l.starts_with(b"v=0")) {
                let i = rng.gen_range(body..lines.len());
                lines[i] = SDP[rng.gen_range(0..SDP.len())].as_bytes().to_vec();
            }
            out = lines.join(&b"\r\n"[..]);
        }
    }
    out
}

/// A seeded storm of mutated SIP (see `mutate`; seed 4733 unless AGENTGW_FUZZ_SEED), 4,000 datagrams over UDP and 100 TCP
/// connections of up to 20 messages each, built from every request the gateway handles and
/// a response, then 400 mutated requests inside a live call's dialog: nothing panics, and a
/// phone logs in afterwards over UDP and TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_sip_never_panics_the_gateway() {
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::{AtomicUsize, Ordering};
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        hook(info)
    }));
    let gw = start_gateway().await;
    let target = gw.udp;
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
    let request = |method: &str, n: u32, body: &str| {
        let ctype = if body.is_empty() {
            ""
        } else if method == "INFO" {
            "Content-Type: application/dtmf-relay\r\n"
        } else {
            "Content-Type: application/sdp\r\n"
        };
        format!(
            "{method} sip:login@{target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{n}f;rport\r\n\
             Max-Forwards: 70\r\nFrom: \"A\" <sip:f{n}@127.0.0.1>;tag=t{n}\r\nTo: <sip:login@127.0.0.1>\r\n\
             Call-ID: fuzz{n}@x\r\nCSeq: 1 {method}\r\nContact: <sip:f{n}@127.0.0.1:9>\r\n{ctype}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let seeds = |n: u32| {
        [
            request("INVITE", n, sdp),
            request("ACK", n, ""),
            request("BYE", n, ""),
            request("CANCEL", n, ""),
            request("OPTIONS", n, ""),
            request("REGISTER", n, ""),
            request("INFO", n, "Signal=1\r\nDuration=100\r\n"),
            request("UPDATE", n, sdp),
            format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {target};branch=z9hG4bK{n}r\r\nFrom: <sip:login@{target}>;tag=x\r\n\
                 To: <sip:f{n}@127.0.0.1>;tag=y\r\nCall-ID: r{n}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
            ),
        ]
    };
    // Another seed, for a longer hunt by hand: AGENTGW_FUZZ_SEED=N cargo test --test login mutated
    let seed = std::env::var("AGENTGW_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4733);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut message = |n: u32| {
        let seeds = seeds(n);
        let mut m = seeds[rng.gen_range(0..seeds.len())].clone().into_bytes();
        for _ in 0..rng.gen_range(1..=3) {
            m = mutate(&mut rng, &m);
        }
        m.truncate(60_000);
        m
    };
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for n in 0..4000 {
        let _ = udp.send_to(&message(n), target).await;
        if n % 200 == 199 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for c in 0..100 {
        let Ok(mut tcp) = tokio::net::TcpStream::connect(gw.tcp).await else {
            continue;
        };
        for n in 0..20 {
            let m = message(10_000 + c * 20 + n);
            if tokio::io::AsyncWriteExt::write_all(&mut tcp, &m)
                .await
                .is_err()
            {
                break;
            }
        }
    }
    // Inside a live call's dialog: re-INVITEs, UPDATEs, INFOs, OPTIONS, ACKs and BYEs,
    // mutated (a mutated BYE may end it).
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(phone.call().await, 200);
    phone.press("100").await;
    let offer = phone.our_sdp();
    for n in 0..400 {
        let (method, ctype, body) = match n % 6 {
            0 => ("INVITE", "application/sdp", offer.as_str()),
            1 => ("UPDATE", "application/sdp", offer.as_str()),
            2 => (
                "INFO",
                "application/dtmf-relay",
                "Signal=5\r\nDuration=160\r\n",
            ),
            3 => ("OPTIONS", "", ""),
            4 => ("ACK", "", ""),
            _ => ("BYE", "", ""),
        };
        let mut m = phone.in_dialog(method, ctype, body).into_bytes();
        for _ in 0..rng.gen_range(1..=2) {
            m = mutate(&mut rng, &m);
        }
        phone.send_raw(&m).await;
        if n % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    phone.hangup().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "a mutated message made the gateway panic"
    );
    for transport in [Transport::Udp, Transport::Tcp] {
        let opts = PhoneOptions {
            transport,
            ..Default::default()
        };
        let mut phone = Phone::new(gw.udp, opts).await;
        assert_eq!(phone.call().await, 200, "{transport:?}");
        phone.press("1002#2345#").await;
        assert_eq!(
            phone.wait_for_bye(10).await.as_deref(),
            Some("logged-in"),
            "{transport:?}"
        );
        gw.store.logout("1002", "test").await.ok();
    }
}

/// A TCP connection from `source` to the gateway, and whether the gateway closes it at once
/// (within 2 s; `false`: still open after 300 ms).
async fn tcp_from(source: &str, gateway: std::net::SocketAddr) -> (tokio::net::TcpStream, bool) {
    use tokio::io::AsyncReadExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    let mut stream = socket.connect(gateway).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await
    {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("the gateway wrote on an idle connection"),
    };
    (stream, closed)
}

#[tokio::test]
async fn tcp_connections_past_the_limits_are_closed_at_once_and_calls_go_on() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.sip.max_tcp_connections = 4;
        c.sip.max_tcp_connections_per_source = 2;
    })
    .await;
    let (admin, token) = gw.start_admin().await;
    let metric = |name: &'static str| {
        let token = token.clone();
        async move {
            let (_, text) = http(admin, "GET", "/metrics", Some(&token), None).await;
            support::metric(&text, name).unwrap()
        }
    };
    // Two idle connections from one source are kept; a third from it is closed.
    let (first, closed) = tcp_from("127.0.0.1", gw.tcp).await;
    assert!(!closed);
    let (_second, closed) = tcp_from("127.0.0.1", gw.tcp).await;
    assert!(!closed);
    let (_, closed) = tcp_from("127.0.0.1", gw.tcp).await;
    assert!(closed, "a third connection from one source");
    // Two more from another source fill the gateway; a fifth from a third source is closed.
    let (_other1, closed) = tcp_from("127.0.0.2", gw.tcp).await;
    assert!(!closed);
    let (_other2, closed) = tcp_from("127.0.0.2", gw.tcp).await;
    assert!(!closed);
    let (_, closed) = tcp_from("127.0.0.3", gw.tcp).await;
    assert!(closed, "a fifth connection in all");
    assert_eq!(metric("agentgw_tcp_connections").await, 4);
    assert_eq!(metric("agentgw_tcp_connections_refused_total").await, 2);
    // One closed by its peer frees its place: a phone over TCP from the first source logs in.
    drop(first);
    let mut open = 4;
    for _ in 0..100 {
        open = metric("agentgw_tcp_connections").await;
        if open == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open, 3);
    logs_in_over_tcp(gw.tcp).await;
}

/// OPTIONS from `source` to the gateway, `n` at once; how many were answered within 1 s.
async fn options_answered(source: &str, gateway: std::net::SocketAddr, n: u32) -> usize {
    let sock = tokio::net::UdpSocket::bind((source, 0)).await.unwrap();
    let me = sock.local_addr().unwrap();
    for i in 0..n {
        let m = format!(
            "OPTIONS sip:login@{gateway} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKo{i}{}\r\nMax-Forwards: 70\r\n\
             From: <sip:probe@{me}>;tag=o{i}\r\nTo: <sip:login@{gateway}>\r\nCall-ID: o{i}-{me}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            rand::random::<u32>()
        );
        sock.send_to(m.as_bytes(), gateway).await.unwrap();
    }
    let mut answered = 0;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Ok(_)) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
        answered += 1;
    }
    answered
}

#[tokio::test]
async fn a_source_sending_too_many_datagrams_is_cut_to_its_rate_and_others_are_not() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.sip.max_packets_per_second_per_source = 20;
    })
    .await;
    let (admin, token) = gw.start_admin().await;
    // 100 at once from one source: its second's worth (20) are answered.
    let answered = options_answered("127.0.0.1", gw.udp, 100).await;
    assert!((20..=22).contains(&answered), "{answered} answered");
    // Another source meanwhile is not held back.
    assert_eq!(options_answered("127.0.0.2", gw.udp, 10).await, 10);
    let (_, text) = http(admin, "GET", "/metrics", Some(&token), None).await;
    let dropped = support::metric(&text, "agentgw_sip_packets_dropped_total").unwrap();
    assert!((78..=80).contains(&dropped), "{dropped} dropped");
    // A second later the first source's budget is back: a phone there logs in.
    let mut phone = Phone::new(gw.udp, PhoneOptions::default()).await;
    assert_eq!(phone.call().await, 200);
    phone.press("1001#1234#").await;
    assert_eq!(phone.wait_for_bye(10).await.as_deref(), Some("logged-in"));
}

#[tokio::test]
async fn a_tcp_connection_flooding_requests_is_shut_down_and_others_go_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gw = start_gateway_with("127.0.0.1", |c| {
        // 50 messages or 100 KiB a second per source.
        c.sip.max_packets_per_second_per_source = 50;
    })
    .await;
    let (admin, token) = gw.start_admin().await;
    let mut flood = tokio::net::TcpStream::connect(gw.tcp).await.unwrap();
    let me = flood.local_addr().unwrap();
    let target = gw.tcp;
    let mut sent = 0;
    let mut shut = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 65536];
    while tokio::time::Instant::now() < deadline {
        let batch: String = (0..50)
            .map(|i| {
                let n = sent + i;
                format!(
                    "OPTIONS sip:login@{target};transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKf{n}\r\n\
                     Max-Forwards: 70\r\nFrom: <sip:flood@{me}>;tag=f{n}\r\nTo: <sip:login@{target}>\r\n\
                     Call-ID: flood{n}\r\nCSeq: 1 OPTIONS\r\nX-Padding: {}\r\nContent-Length: 0\r\n\r\n",
                    "x".repeat(700)
                )
            })
            .collect();
        sent += 50;
        if flood.write_all(batch.as_bytes()).await.is_err() {
            shut = true;
            break;
        }
        // Read what came back; the end of the stream is the gateway shutting it down.
        match tokio::time::timeout(Duration::from_millis(5), flood.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                shut = true;
                break;
            }
            _ => {}
        }
    }
    assert!(shut, "still open after {sent} requests");
    let (_, text) = http(admin, "GET", "/metrics", Some(&token), None).await;
    assert_eq!(
        support::metric(&text, "agentgw_tcp_connections_shut_down_total"),
        Some(1),
        "{text}"
    );
    // A second on, the source's budget is back: a phone over TCP from it logs in.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    logs_in_over_tcp(gw.tcp).await;
}
