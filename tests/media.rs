//! Black-box tests of the media: RTP that looks like a phone's, strict RTP and latching,
//! floods, hold, re-INVITEs, codecs, late offers.

mod support;

use agentgw::media::prompts::{Codec, PromptId};
use std::time::Duration;
use support::*;

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
    let agents = gw.agents().await;
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
    assert!(hold.body().contains("a=recvonly"));
    let unhold = phone
        .reinvite("sendrecv")
        .await
        .expect("re-INVITE answered");
    assert_eq!(unhold.status(), Some(200));
    assert!(unhold.body().contains("a=sendrecv"));
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
