//! Behind a proxy: Debian's Kamailio with the shipped `deploy/kamailio/` configuration in
//! front of the gateway, as a PBX administrator deploys it.

#[path = "support/kamailio.rs"]
mod kamailio;
mod support;

use kamailio::Kamailio;
use support::*;

#[tokio::test]
async fn a_login_through_kamailio_records_the_phone_and_every_request_passes_through_it() {
    let gw = start_gateway().await;
    let Some(kam) = Kamailio::start(&[gw.udp]) else {
        return;
    };
    let mut p = Phone::new(kam.addr, PhoneOptions::default()).await;
    assert_eq!(p.call().await, 200, "{}", kam.log());
    let rr = p.invite_response.as_ref().unwrap().header("Record-Route");
    assert!(
        rr.is_some_and(|r| r.contains(&kam.addr.to_string())),
        "Kamailio record-routes: {rr:?}"
    );
    p.press("1001#1234#").await;
    assert_eq!(
        p.wait_for_bye(10).await.as_deref(),
        Some("logged-in"),
        "{}",
        kam.log()
    );
    // The gateway's BYE came through Kamailio (its Via on top), with the result for the PBX.
    let via = p.bye_header("Via").unwrap_or_default();
    assert!(via.contains(&kam.addr.to_string()), "BYE's top Via: {via}");
    assert_eq!(
        p.bye_header("Reason").as_deref(),
        Some("Q.850;cause=16;text=\"logged-in\"")
    );
    // The station is the phone's own From, not Kamailio's address.
    let sessions = gw.store.list_sessions().await.unwrap();
    assert_eq!(sessions[0].station, format!("{}@test.example", p.opts.user));

    // The caller's BYE reaches the gateway through Kamailio too: the call ends at once.
    let mut q = Phone::new(kam.addr, PhoneOptions::default()).await;
    assert_eq!(q.call().await, 200);
    q.expect_prompt(agentgw::media::prompts::PromptId::AgentUser)
        .await;
    assert_eq!(q.hangup().await, Some(200), "{}", kam.log());
    assert!(
        gw.settles().await,
        "calls {} dialogs {}",
        gw.gateway.active_calls(),
        gw.gateway.open_dialogs()
    );
}
