//! Black-box tests of every way phones send keys: RFC 4733, SIP INFO, in-band tones, and
//! one press reported two ways.

mod support;

use agentgw::media::dtmf::DtmfMethod;
use agentgw::media::prompts::Codec;
use support::*;

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
