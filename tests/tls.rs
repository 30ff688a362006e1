//! SIP over TLS as phones and PBX trunks meet it: logins over TLS 1.3 and 1.2 (Contact with
//! transport=tls or sips:, the BYE on the same connection), a renewed certificate shown to new
//! connections after a reload while a call goes on, handshakes that fail or stall closed and
//! counted, connections held to the TCP limits, and client certificates required from a CA
//! (mutual TLS).

mod support;

use agentgw::sip::Transport;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn over_tls(ca: &[u8]) -> PhoneOptions {
    PhoneOptions {
        transport: Transport::Tls,
        tls_ca: Some(ca.to_vec()),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_agent_logs_in_over_tls_and_the_bye_comes_back_on_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, tls, ca) = start_tls_gateway(dir.path(), |_| {}).await;
    let opts = PhoneOptions {
        tls_version: Some(&rustls::version::TLS13),
        ..over_tls(&ca)
    };
    let mut p = Phone::new(tls, opts).await;
    assert_eq!(p.call().await, 200);
    let contact = p.answer_header("Contact");
    assert!(
        contact.to_ascii_lowercase().contains(";transport=tls"),
        "{contact}"
    );
    p.press("1001#1234#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    assert_eq!(gw.store.list_sessions().await.unwrap().len(), 1);
    // A SIPS Request-URI gets a SIPS Contact (RFC 3261 §8.1.1.8); TLS 1.2 is served too.
    let opts = PhoneOptions {
        sips: true,
        tls_version: Some(&rustls::version::TLS12),
        ..over_tls(&ca)
    };
    let mut p = Phone::new(tls, opts).await;
    assert_eq!(p.call().await, 200);
    let contact = p.answer_header("Contact");
    assert!(contact.starts_with("<sips:agentgw@127.0.0.1:"), "{contact}");
    p.press("1002#2345#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
}

#[tokio::test]
async fn a_reload_shows_a_renewed_certificate_to_new_connections_and_calls_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, tls, old_ca) = start_tls_gateway(dir.path(), |c| {
        c.login.after_login = agentgw::login::rules::AfterLogin::Stay;
    })
    .await;
    let mut staying = Phone::new(tls, over_tls(&old_ca)).await;
    assert_eq!(staying.call().await, 200);
    staying.press("1001#1234#").await;
    staying
        .expect_prompt(agentgw::media::prompts::PromptId::AgentLoginOk)
        .await;
    // The renewed certificate, from another CA, at the same paths.
    let renewed = dir.path().join("renewed");
    std::fs::create_dir(&renewed).unwrap();
    let (cert, key, new_ca) = certificate(&renewed, "gateway", "127.0.0.1");
    std::fs::copy(cert, gw.config.sip.tls_certificate.as_ref().unwrap()).unwrap();
    std::fs::copy(key, gw.config.sip.tls_private_key.as_ref().unwrap()).unwrap();
    gw.gateway.reload(&gw.config).unwrap();
    let mut p = Phone::new(tls, over_tls(&new_ca)).await;
    assert_eq!(p.call().await, 200);
    p.hangup().await;
    // The stay line's connection was not touched: its agent hangs up and is logged out.
    assert_eq!(gw.store.list_sessions().await.unwrap().len(), 1);
    assert_eq!(staying.hangup().await, Some(200));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(gw.store.list_sessions().await.unwrap().is_empty());
    // A broken certificate file refuses the reload and keeps the running one.
    std::fs::write(gw.config.sip.tls_certificate.as_ref().unwrap(), "not PEM").unwrap();
    let e = gw.gateway.reload(&gw.config).unwrap_err().to_string();
    assert!(e.starts_with("TLS: certificate "), "{e}");
    let mut p = Phone::new(tls, over_tls(&new_ca)).await;
    assert_eq!(p.call().await, 200);
}

#[tokio::test]
async fn clear_sip_on_the_tls_port_and_a_silent_connection_are_closed_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, tls, _) = start_tls_gateway(dir.path(), |c| c.sip.tcp_message_timeout_secs = 1).await;
    let (admin, token) = gw.start_admin().await;
    // SIP in clear: not a TLS record, the connection is closed at once.
    let mut clear = tokio::net::TcpStream::connect(tls).await.unwrap();
    clear
        .write_all(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), clear.read(&mut buf)).await;
    assert!(
        !matches!(n, Ok(Ok(n)) if n > 0 && buf.starts_with(b"SIP/2.0")),
        "answered in clear"
    );
    // Connected and silent: closed once the handshake's time is up.
    let mut silent = tokio::net::TcpStream::connect(tls).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    let (_, metrics) = http(admin, "GET", "/metrics", Some(&token), None).await;
    assert_eq!(
        metric(&metrics, "agentgw_tls_handshakes_failed_total"),
        Some(2),
        "{metrics}"
    );
}

#[tokio::test]
async fn tls_connections_are_held_to_the_tcp_connection_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, tls, ca) = start_tls_gateway(dir.path(), |c| {
        c.sip.max_tcp_connections_per_source = 1;
        c.login.after_login = agentgw::login::rules::AfterLogin::Stay;
    })
    .await;
    let (admin, token) = gw.start_admin().await;
    let mut staying = Phone::new(tls, over_tls(&ca)).await;
    assert_eq!(staying.call().await, 200);
    // A second connection from the same source is closed at once, before any handshake.
    let mut second = tokio::net::TcpStream::connect(tls).await.unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    let (_, metrics) = http(admin, "GET", "/metrics", Some(&token), None).await;
    let count = |name| metric(&metrics, name);
    assert_eq!(count("agentgw_tcp_connections_refused_total"), Some(1));
    assert_eq!(count("agentgw_tls_handshakes_failed_total"), Some(0));
    // The call on the first connection goes on.
    staying.press("1001#1234#").await;
    let logged_in = agentgw::media::prompts::PromptId::AgentLoginOk;
    assert!(staying.wait_for_prompt_start(logged_in, 10).await);
    assert_eq!(gw.agents().await, ["1001"]);
}

#[tokio::test]
async fn with_a_client_ca_only_a_phone_with_a_certificate_from_it_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let _ = certificate(dir.path(), "trunk", "127.0.0.1");
    let client_ca_file = dir.path().join("trunk-ca.pem");
    let (gw, tls, ca) =
        start_tls_gateway(dir.path(), |c| c.sip.tls_client_ca = Some(client_ca_file)).await;
    let opts = PhoneOptions {
        tls_client: Some((
            std::fs::read(dir.path().join("trunk.pem")).unwrap(),
            std::fs::read(dir.path().join("trunk.key")).unwrap(),
        )),
        ..over_tls(&ca)
    };
    let mut p = Phone::new(tls, opts).await;
    assert_eq!(p.call().await, 200);
    p.press("1002#2345#").await;
    assert_eq!(p.wait_for_bye(10).await.as_deref(), Some("logged-in"));
    // Without a certificate: the gateway ends the handshake (TLS 1.3 tells the client after
    // its Finished), and the INVITE gets nothing.
    let mut p = Phone::new(tls, over_tls(&ca)).await;
    assert_eq!(p.call().await, 0);
    assert_eq!(gw.store.list_sessions().await.unwrap().len(), 1);
}
