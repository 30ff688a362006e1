//! IPv4 and IPv6 callers on one port: separate listeners of both families, and one `[::]`
//! listener, serve both end to end (answers, RTP, the gateway's own BYE), over UDP and TCP,
//! several calls at a time.

mod support;

use agentgw::sip::{ListenAddr, Transport};
use std::net::{IpAddr, SocketAddr};
use support::*;

fn ipv6() -> bool {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        support::not_checked_loudly("no IPv6 loopback (::1) on this machine");
        return false;
    }
    true
}

/// A port free on both loopbacks, for UDP and TCP.
fn free_dual_port() -> u16 {
    for _ in 0..100 {
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = v4.local_addr().unwrap().port();
        let free = std::net::UdpSocket::bind(("::1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("::1", port)).is_ok();
        if free {
            return port;
        }
    }
    panic!("no port free on both loopbacks");
}

fn listen(addrs: &[(&str, Transport)], port: u16) -> Vec<ListenAddr> {
    addrs
        .iter()
        .map(|(ip, transport)| ListenAddr {
            transport: *transport,
            addr: SocketAddr::new(ip.parse::<IpAddr>().unwrap(), port),
        })
        .collect()
}

/// Three callers at once to `to`, each logged in with the gateway's BYE after it.
async fn three_log_in(to: SocketAddr, transport: Transport) {
    let mut phones = Vec::new();
    for _ in 0..3 {
        let opts = PhoneOptions {
            transport,
            ..PhoneOptions::default()
        };
        let mut p = Phone::new(to, opts).await;
        assert_eq!(p.call().await, 200, "{to} {transport:?}");
        phones.push(p);
    }
    for (p, (agent, passcode)) in phones.iter_mut().zip(DEMO_AGENTS) {
        p.press(&format!("{agent}#{passcode}#")).await;
    }
    for p in &phones {
        assert_eq!(
            p.wait_for_bye(10).await.as_deref(),
            Some("logged-in"),
            "{to} {transport:?}"
        );
    }
}

/// Three callers at a time of each family, over UDP and over TCP, to `port` on loopback.
async fn callers_of_both_families_log_in(port: u16) {
    for ip in ["::1", "127.0.0.1"] {
        for transport in [Transport::Udp, Transport::Tcp] {
            three_log_in(SocketAddr::new(ip.parse().unwrap(), port), transport).await;
        }
    }
}

#[tokio::test]
async fn ipv4_and_ipv6_listeners_on_one_port_serve_both_families() {
    if !ipv6() {
        return;
    }
    let port = free_dual_port();
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.sip.listen = listen(
            &[
                ("127.0.0.1", Transport::Udp),
                ("::1", Transport::Udp),
                ("127.0.0.1", Transport::Tcp),
                ("::1", Transport::Tcp),
            ],
            port,
        );
        c.login.already_logged_on = agentgw::login::rules::AlreadyLoggedOnPolicy::Replace;
    })
    .await;
    callers_of_both_families_log_in(port).await;
    assert!(gw.settles().await);
}

#[tokio::test]
async fn one_unspecified_ipv6_listener_serves_both_families() {
    if !ipv6() {
        return;
    }
    let port = free_dual_port();
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.sip.listen = listen(&[("::", Transport::Udp), ("::", Transport::Tcp)], port);
        c.login.already_logged_on = agentgw::login::rules::AlreadyLoggedOnPolicy::Replace;
    })
    .await;
    callers_of_both_families_log_in(port).await;
    assert!(gw.settles().await);
}
