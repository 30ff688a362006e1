//! The load generator against a real gateway: it classifies each outcome from the prompts it
//! hears (logged in, incorrect, already on, locked, another prompt such as station-in-use),
//! from SIP (an error answer, no answer), from the clock (answered, no result in time),
//! and, against an IVR that is not agentgw, from how the call ends (when it hangs up after the
//! last key, or that it waits on the line).

#[path = "../../tests/support/kamailio.rs"]
mod kamailio;
#[path = "../../tests/support/mod.rs"]
mod support;

use agentgw::media::prompts::Codec;
use agentgw::media::srtp::Suite;
use agentgw_load::sip::Signalling;
use agentgw_load::{self as load, LoadOptions, Outcome, Summary};
use std::net::SocketAddr;
use std::time::Duration;
use support::start_gateway_with;

fn opts(target: SocketAddr, agents: &[(&str, &str)], calls: u64) -> LoadOptions {
    LoadOptions {
        target,
        uri_user: "login".into(),
        signalling: Signalling::Udp,
        srtp: None,
        phone_accounts: vec![],
        rate: 20.0,
        concurrency: 50,
        calls: Some(calls),
        duration: None,
        agents: agents
            .iter()
            .map(|(a, p)| (a.to_string(), p.to_string()))
            .collect(),
        type_ahead: false,
        stay: None,
        codec: Codec::Pcmu,
        send_audio: true,
        comfort_noise: false,
        call_timeout: Duration::from_secs(30),
        local_ip: "127.0.0.1".parse().unwrap(),
        ivr_hangup: vec![],
        ivr_waits: Outcome::Incorrect,
    }
}

async fn run(o: LoadOptions) -> Summary {
    load::run(o, |_, _| {})
        .await
        .expect("the generator's media threads start")
}

fn count(s: &Summary, o: Outcome) -> u64 {
    s.outcomes.get(o.as_str()).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_in_after_the_prompts_and_type_ahead_over_udp_and_tcp() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.already_logged_on = agentgw::login::rules::AlreadyLoggedOnPolicy::Replace;
    })
    .await;
    let agents = [("1001", "1234"), ("1002", "2345"), ("1003", "3456")];
    let s = run(opts(gw.udp, &agents, 6)).await;
    assert_eq!(count(&s, Outcome::LoggedIn), 6, "{}", s.table());
    assert_eq!(s.setup.count, 6);
    assert_eq!(s.result.count, 6);
    assert!(s.result.p50_ms > 0.0, "{}", s.table());
    assert!(s.rtp_received_per_call > 100.0, "{}", s.table());
    assert_eq!(s.rtp_lost, 0, "{}", s.table());
    let mut o = opts(gw.tcp, &agents, 6);
    o.signalling = Signalling::Tcp;
    o.type_ahead = true;
    o.codec = Codec::Pcma;
    let s = run(o).await;
    assert_eq!(count(&s, Outcome::LoggedIn), 6, "{}", s.table());
    assert_eq!(gw.store.list_sessions().await.unwrap().len(), 3);
    assert!(gw.settles().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_in_over_tls_with_srtp_as_phone_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, tls, ca) = support::start_tls_gateway(dir.path(), |c| {
        c.sip.trusted_networks = vec![];
        c.media.srtp = agentgw::sdp::SrtpPolicy::Require;
        c.login.already_logged_on = agentgw::login::rules::AlreadyLoggedOnPolicy::Replace;
        c.login.same_station = agentgw::login::rules::SameStationPolicy::Replace;
    })
    .await;
    let password = "load-phone-password";
    for user in ["load1", "load2"] {
        let secret = agentgw::login::Passcode(password.into());
        gw.store.add_phone(user, "agentgw", &secret).await.unwrap();
    }
    let agents = [("1001", "1234"), ("1002", "2345"), ("1003", "3456")];
    let over_tls = |suite| LoadOptions {
        signalling: Signalling::tls(&ca).unwrap(),
        srtp: Some(suite),
        phone_accounts: vec![
            ("load1".into(), password.into()),
            ("load2".into(), password.into()),
        ],
        ..opts(tls, &agents, 4)
    };
    for suite in [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm] {
        let s = run(over_tls(suite)).await;
        assert_eq!(count(&s, Outcome::LoggedIn), 4, "{}", s.table());
        assert!(s.rtp_received_per_call > 100.0, "{}", s.table());
        assert_eq!(s.srtp_refused, 0, "{}", s.table());
    }
    // The stations are the accounts the calls authenticated as.
    assert_eq!(gw.stations().await, ["load1", "load2"]);
    // Without accounts every call meets the challenge and fails.
    let s = run(LoadOptions {
        phone_accounts: vec![],
        calls: Some(1),
        ..over_tls(Suite::AesCm128HmacSha1_80)
    })
    .await;
    assert_eq!(s.sip_errors.get(&401), Some(&1), "{}", s.table());
    assert!(gw.settles().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incorrect_already_on_and_locked_are_told_apart_by_the_prompts() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.lockout_after = 2;
    })
    .await;
    let s = run(opts(gw.udp, &[("1001", "9999")], 1)).await;
    assert_eq!(count(&s, Outcome::Incorrect), 1, "{}", s.table());
    // 1002 logs on, then a second login of 1002 is refused (reject policy).
    let mut o = opts(gw.udp, &[("1002", "2345")], 2);
    o.concurrency = 1;
    let s = run(o).await;
    assert_eq!(
        (count(&s, Outcome::LoggedIn), count(&s, Outcome::AlreadyOn)),
        (1, 1),
        "{}",
        s.table()
    );
    // Two wrong passcodes lock 1003; the right one then hears "locked".
    let mut o = opts(gw.udp, &[("1003", "0000")], 2);
    o.concurrency = 1;
    run(o).await;
    let s = run(opts(gw.udp, &[("1003", "3456")], 1)).await;
    assert_eq!(count(&s, Outcome::Locked), 1, "{}", s.table());
    assert_eq!(s.failures(Outcome::Locked), 0);
    assert_eq!(s.failures(Outcome::LoggedIn), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sip_error_and_no_answer() {
    // max_calls = 1: of two calls at once, one is refused with 503.
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.sip.max_calls = 1;
    })
    .await;
    let mut o = opts(gw.udp, &[("1001", "1234")], 2);
    o.rate = 100.0;
    let s = run(o).await;
    assert_eq!(count(&s, Outcome::SipError), 1, "{}", s.table());
    assert_eq!(s.sip_errors.get(&503), Some(&1), "{}", s.table());
    // Nothing listening.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = dead.local_addr().unwrap();
    drop(dead);
    let mut o = opts(addr, &[("1001", "1234")], 1);
    o.call_timeout = Duration::from_secs(2);
    let s = run(o).await;
    assert_eq!(count(&s, Outcome::NoAnswer), 1, "{}", s.table());
}

/// A test IVR's answer to INVITE `m` (from `from`, to the IVR at `addr` with RTP on
/// `rtp_port`): the 200 with its SDP and To tag, and the BYE that hangs the call up later
/// (branch suffix `n`).
fn ivr_answer(
    m: &load::sip::Msg,
    from: SocketAddr,
    addr: SocketAddr,
    rtp_port: u16,
    n: usize,
) -> (String, String) {
    let sdp = format!("v=0\r\no=ivr 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n");
    let to = format!("{};tag=ivr1", m.header("To").unwrap());
    let ok = m
        .ok()
        .replace(
            "Content-Length: 0\r\n\r\n",
            &format!("Contact: <sip:ivr@{addr}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}", sdp.len()),
        )
        .replacen(&format!("To: {}", m.header("To").unwrap()), &format!("To: {to}"), 1);
    let bye = format!(
        "BYE sip:load@{from} SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bKivr{n}\r\nFrom: {to}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        m.header("From").unwrap(),
        m.header("Call-ID").unwrap(),
    );
    (ok, bye)
}

/// Another IVR: answers, plays nothing agentgw would, hangs up after a second.
async fn other_ivr() -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let rtp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtp_port = rtp.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _rtp = rtp;
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Some(m) = load::sip::Msg::parse(&buf[..n]) else {
                continue;
            };
            match m.method() {
                Some("INVITE") => {
                    let (ok, bye) = ivr_answer(&m, from, addr, rtp_port, 0);
                    sock.send_to(ok.as_bytes(), from).await.unwrap();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    sock.send_to(bye.as_bytes(), from).await.unwrap();
                }
                _ => continue,
            }
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_ivr_is_classified_by_how_the_call_ends() {
    let ivr = other_ivr().await;
    let mut o = opts(ivr, &[("1001", "1234")], 1);
    o.call_timeout = Duration::from_secs(10);
    let s = run(o).await;
    assert_eq!(count(&s, Outcome::PeerHungUp), 1, "{}", s.table());
    assert_eq!(s.setup.count, 1);
}

/// A login IVR that is not agentgw, without barge-in (keys pressed while it speaks are lost):
/// a 600 ms tone asks for the agent number, another for the passcode, each followed by
/// silence frames while it listens up to `#`. Its answer: 1001 with 1234, a 1 s tone and it
/// hangs up; agent 1003, a 0.8 s tone and it waits on the line (asking again); anything else,
/// a 2.5 s tone and it hangs up.
async fn login_ivr() -> SocketAddr {
    let sock = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut calls = std::collections::HashSet::new();
        let mut buf = [0u8; 4096];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Some(m) = load::sip::Msg::parse(&buf[..n]) else {
                continue;
            };
            match m.method() {
                Some("BYE") => {
                    sock.send_to(m.ok().as_bytes(), from).await.unwrap();
                    continue;
                }
                Some("INVITE") => {}
                _ => continue,
            }
            let call_id = m.header("Call-ID").unwrap().to_string();
            if !calls.insert(call_id) {
                continue; // a retransmission
            }
            let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let rtp_port = rtp.local_addr().unwrap().port();
            let phone = load::sip::sdp_media(m.body()).unwrap();
            let (ok, bye) = ivr_answer(&m, from, addr, rtp_port, calls.len());
            sock.send_to(ok.as_bytes(), from).await.unwrap();
            let sock = sock.clone();
            tokio::spawn(async move {
                let mut ivr = IvrMedia::new(rtp, phone);
                ivr.speak(600).await;
                let agent = ivr.listen().await;
                ivr.speak(600).await;
                let passcode = ivr.listen().await;
                match (agent.as_str(), passcode.as_str()) {
                    ("1001", "1234") => ivr.speak(1000).await,
                    ("1003", _) => {
                        ivr.speak(800).await;
                        ivr.listen().await; // until the phone gives up
                        return;
                    }
                    _ => ivr.speak(2500).await,
                }
                sock.send_to(bye.as_bytes(), from).await.unwrap();
            });
        }
    });
    addr
}

/// The RTP side of `login_ivr`'s calls: speaks (a 440 Hz tone) or listens (silence frames
/// out, RFC 4733 keys in), a frame every 20 ms.
struct IvrMedia {
    rtp: tokio::net::UdpSocket,
    phone: SocketAddr,
    writer: agentgw::media::rtp::RtpWriter,
    keys: agentgw::media::dtmf::rfc4733::EventReceiver,
    clock: tokio::time::Interval,
    samples: u32,
}

impl IvrMedia {
    fn new(rtp: tokio::net::UdpSocket, phone: SocketAddr) -> IvrMedia {
        IvrMedia {
            rtp,
            phone,
            writer: Default::default(),
            keys: Default::default(),
            clock: tokio::time::interval(Duration::from_millis(20)),
            samples: 0,
        }
    }

    /// One frame out (tone or silence), then the keys that came in since the last one.
    async fn frame(&mut self, tone: bool) -> Vec<char> {
        self.clock.tick().await;
        let mut frame = [agentgw::media::g711::ULAW_SILENCE; 160];
        if tone {
            for (i, b) in frame.iter_mut().enumerate() {
                let t = f64::from(self.samples + i as u32) / 8000.0;
                let v = (6000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16;
                *b = agentgw::media::g711::linear_to_ulaw(v);
            }
        }
        self.samples += 160;
        let pkt = self.writer.packet(0, &frame, 160).to_vec();
        let _ = self.rtp.send_to(&pkt, self.phone).await;
        let mut keys = vec![];
        let mut buf = [0u8; 2048];
        while let Ok(n) = self.rtp.try_recv(&mut buf) {
            if let Some((h, payload)) = agentgw::media::rtp::parse(&buf[..n]) {
                if h.payload_type == 101 {
                    if let Some(d) = self.keys.on_packet(h.ssrc, h.timestamp, payload) {
                        keys.push(d.as_char());
                    }
                }
            }
        }
        keys
    }

    /// A prompt of `ms`; keys pressed meanwhile are lost.
    async fn speak(&mut self, ms: u32) {
        for _ in 0..ms / 20 {
            self.frame(true).await;
        }
    }

    /// The keys up to `#` (without it), or what came within 10 s.
    async fn listen(&mut self) -> String {
        let mut entry = String::new();
        for _ in 0..500 {
            for k in self.frame(false).await {
                if k == '#' {
                    return entry;
                }
                entry.push(k);
            }
        }
        entry
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_ivr_keyed_after_its_prompts_and_classified_by_when_it_hangs_up() {
    let ivr = login_ivr().await;
    let agents = [("1001", "1234"), ("1002", "9999"), ("1003", "1234")];
    let ms = Duration::from_millis;
    let o = LoadOptions {
        ivr_hangup: vec![
            (Outcome::LoggedIn, ms(500), ms(2000)),
            (Outcome::Incorrect, ms(2000), ms(6000)),
        ],
        ..opts(ivr, &agents, 3)
    };
    let s = run(o).await;
    let table = s.table();
    // 1001 hung up on after ~1.1 s, 1002 after ~2.6 s; 1003 waited on: `ivr_waits`.
    assert_eq!(count(&s, Outcome::LoggedIn), 1, "{table}");
    assert_eq!(count(&s, Outcome::Incorrect), 2, "{table}");
    assert_eq!(s.hangup.count, 2, "{table}");
    assert!(
        s.hangup.p50_ms > 500.0 && s.hangup.max_ms < 6000.0,
        "{table}"
    );
    // Each answer's first packet: a frame or so after the IVR took the last key.
    assert_eq!(s.result.count, 3, "{table}");
    assert!(s.result.max_ms < 500.0, "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_agentgw_prompt_and_a_timeout() {
    let gw = start_gateway_with("127.0.0.1", |_| {}).await;
    // Each run numbers its calls from the same start, so its first call comes from the same
    // station as the previous run's: 1002 there hears "station in use" (same_station = reject).
    let typing_ahead = |agent| LoadOptions {
        type_ahead: true,
        ..opts(gw.udp, &[agent], 1)
    };
    let s = run(typing_ahead(("1001", "1234"))).await;
    assert_eq!(count(&s, Outcome::LoggedIn), 1, "{}", s.table());
    let s = run(typing_ahead(("1002", "2345"))).await;
    assert_eq!(count(&s, Outcome::OtherPrompt), 1, "{}", s.table());
    assert_eq!(
        s.other_prompts.get("station-in-use"),
        Some(&1),
        "{}",
        s.table()
    );
    // Answered, but no result within the call timeout (the prompts alone take longer).
    let mut o = opts(gw.udp, &[("1003", "3456")], 1);
    o.call_timeout = Duration::from_secs(1);
    let s = run(o).await;
    assert_eq!(count(&s, Outcome::Timeout), 1, "{}", s.table());
    assert_eq!(s.setup.count, 1, "{}", s.table());
    // The second it started in is listed as disturbed, with what happened.
    let listed = s.disturbed_seconds(Outcome::LoggedIn, Duration::from_secs(1));
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].contains("1 started, 1 timeout"), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_record_routing_proxy_the_ack_and_bye_follow_the_route_set() {
    // Stay lines: the generator hangs up, so its BYE must find its way through Kamailio.
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.already_logged_on = agentgw::login::rules::AlreadyLoggedOnPolicy::Replace;
        c.login.after_login = agentgw::login::rules::AfterLogin::Stay;
    })
    .await;
    let Some(kam) = kamailio::Kamailio::start(&[gw.udp]) else {
        return;
    };
    let mut o = opts(kam.addr, &[("1001", "1234")], 4);
    o.type_ahead = true;
    o.stay = Some(Duration::from_millis(500));
    let s = run(o).await;
    assert_eq!(
        count(&s, Outcome::LoggedIn),
        4,
        "{}\n{}",
        s.table(),
        kam.log()
    );
    assert!(s
        .disturbed_seconds(Outcome::LoggedIn, Duration::from_secs(1))
        .is_empty());
    assert!(
        gw.settles().await,
        "every call ended at the gateway: its BYE came through"
    );
}
