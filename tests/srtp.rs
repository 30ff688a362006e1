//! SRTP as phones meet it: a login over TLS with each crypto suite (the prompts heard only by
//! unprotecting them, the keys accepted only protected), and offers of RTP/SAVP, RTP/AVP with
//! and without keys, over TLS and not, under each `[media] srtp` setting.

mod support;

use agentgw::media::srtp::Suite;
use agentgw::sdp::SrtpPolicy;
use agentgw::sip::Transport;
use std::net::SocketAddr;
use support::*;

/// A gateway with a TLS listener and `[media] srtp = policy`; its TLS address and CA.
async fn gateway(dir: &std::path::Path, policy: SrtpPolicy) -> (TestGateway, SocketAddr, Vec<u8>) {
    start_tls_gateway(dir, |c| c.media.srtp = policy).await
}

fn phone(ca: &[u8], tls: bool, srtp: Option<(Suite, bool)>) -> PhoneOptions {
    PhoneOptions {
        transport: if tls { Transport::Tls } else { Transport::Udp },
        tls_ca: Some(ca.to_vec()),
        srtp,
        ..Default::default()
    }
}

#[tokio::test]
async fn an_agent_logs_in_over_tls_with_srtp_of_each_suite() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, tls, ca) = gateway(dir.path(), SrtpPolicy::Require).await;
    let agents = [
        ("1001#1234#", "1001"),
        ("1002#2345#", "1002"),
        ("1003#3456#", "1003"),
    ];
    for (suite, (keys, agent)) in Suite::ALL.into_iter().zip(agents) {
        let mut p = Phone::new(tls, phone(&ca, true, Some((suite, true)))).await;
        assert_eq!(p.call().await, 200, "{suite:?}");
        let answer = p.answer_sdp.clone().unwrap();
        assert!(
            answer.contains("m=audio ") && answer.contains(" RTP/SAVP "),
            "{answer}"
        );
        assert!(
            answer.contains(&format!("a=crypto:1 {} inline:", suite.name())),
            "{answer}"
        );
        p.press(keys).await;
        assert_eq!(
            p.wait_for_bye(10).await.as_deref(),
            Some("logged-in"),
            "{suite:?}"
        );
        // Heard: the prompts, unprotected; nothing that failed to.
        assert!(p
            .heard_ids()
            .contains(&agentgw::media::prompts::PromptId::AgentLoginOk));
        assert_eq!(*p.srtp_refused.lock().unwrap(), 0, "{suite:?}");
        let sessions = gw.store.list_sessions().await.unwrap();
        assert!(sessions.iter().any(|s| s.agent == agent), "{suite:?}");
    }
}

/// The status of an INVITE with this offer, the answer's SDP and the Warning.
async fn offered(to: SocketAddr, opts: PhoneOptions) -> (u16, String, String) {
    let mut p = Phone::new(to, opts).await;
    let status = p.call().await;
    let r = p.invite_response.clone().unwrap();
    if status == 200 {
        p.hangup().await;
    }
    let warning = r.header("Warning").unwrap_or_default().to_string();
    (status, r.body().to_string(), warning)
}

#[tokio::test]
async fn srtp_offers_under_each_policy_and_transport() {
    let dir = tempfile::tempdir().unwrap();
    let savp = Some((Suite::AesCm128HmacSha1_80, true));
    let best_effort = Some((Suite::AesCm128HmacSha1_32, false));
    for policy in [SrtpPolicy::Off, SrtpPolicy::Offer, SrtpPolicy::Require] {
        let sub = dir.path().join(format!("{policy:?}"));
        std::fs::create_dir(&sub).unwrap();
        let (gw, tls, ca) = gateway(&sub, policy).await;
        // (over TLS, what is offered) → the status, and whether the answer has a key.
        let cases = [
            (true, savp, SrtpPolicy::Off, 488, false),
            (true, savp, SrtpPolicy::Offer, 200, true),
            (true, savp, SrtpPolicy::Require, 200, true),
            (false, savp, SrtpPolicy::Offer, 488, false),
            (false, savp, SrtpPolicy::Require, 488, false),
            (true, best_effort, SrtpPolicy::Off, 200, false),
            (true, best_effort, SrtpPolicy::Offer, 200, true),
            (false, best_effort, SrtpPolicy::Offer, 200, false),
            (true, None, SrtpPolicy::Offer, 200, false),
            (true, None, SrtpPolicy::Require, 488, false),
            (false, None, SrtpPolicy::Require, 488, false),
            (false, None, SrtpPolicy::Off, 200, false),
        ];
        for (over_tls, srtp, when, status, keyed) in cases {
            if when != policy {
                continue;
            }
            let to = if over_tls { tls } else { gw.udp };
            let (got, body, warning) = offered(to, phone(&ca, over_tls, srtp)).await;
            let what = format!("{policy:?}: tls {over_tls}, {srtp:?}: {body}{warning}");
            assert_eq!(got, status, "{what}");
            assert_eq!(body.contains("a=crypto:"), keyed, "{what}");
            assert_eq!(
                warning.contains("srtp") || warning.contains("SRTP"),
                status == 488,
                "{what}"
            );
        }
    }
}

#[tokio::test]
async fn a_tenant_requires_srtp_on_its_numbers_while_the_default_offers_it() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, tls, ca) = start_tls_gateway(dir.path(), |c| {
        c.media.srtp = SrtpPolicy::Offer;
        c.tenant = vec![toml::from_str(
            "name = \"secure\"\nnumbers = [\"login-secure\"]\nsrtp = \"require\"",
        )
        .unwrap()];
    })
    .await;
    let plain = |dialed: &str| PhoneOptions {
        dialed: dialed.into(),
        ..phone(&ca, true, None)
    };
    assert_eq!(offered(tls, plain("login")).await.0, 200);
    let (status, _, warning) = offered(tls, plain("login-secure")).await;
    assert_eq!(status, 488, "{warning}");
    let keyed = PhoneOptions {
        dialed: "login-secure".into(),
        ..phone(&ca, true, Some((Suite::AesCm128HmacSha1_80, true)))
    };
    assert_eq!(offered(tls, keyed).await.0, 200);
    drop(gw);
}
