//! Strict SIP, from outside: every malformed request gets the answer RFC 3261 gives it (and
//! never a call), and valid requests the SIP stack's parser used to drop are served.

mod support;

use agentgw::sip::Transport;
use std::net::SocketAddr;
use std::time::Duration;
use support::*;

/// A gateway's INVITE from a fresh phone, changed by `change`, sent over UDP; the status
/// line of the answer (empty: none within 2 s).
async fn answer_to(gw: &TestGateway, change: impl Fn(String) -> String) -> String {
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    let invite = change(p.invite_text());
    answer_to_bytes(gw.udp, invite.as_bytes()).await
}

/// The first line of the answer to `data` sent from a socket of its own.
async fn answer_to_bytes(to: SocketAddr, data: &[u8]) -> String {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(data, to).await.unwrap();
    let mut buf = vec![0u8; 65536];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), s.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                let first = text.lines().next().unwrap_or_default().to_string();
                if first.starts_with("SIP/2.0 1") {
                    continue; // 100 Trying, 180
                }
                return text;
            }
            _ => return String::new(),
        }
    }
}

/// The value of a message's Content-Length.
fn content_length(message: &str) -> String {
    message
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .to_string()
}

/// `message` with its Content-Length value replaced by `value`.
fn with_content_length(message: String, value: &str) -> String {
    let old = format!("Content-Length: {}", content_length(&message));
    message.replacen(&old, &format!("Content-Length: {value}"), 1)
}

fn status(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

/// The answers to each malformed INVITE, and no call set up by any.
#[tokio::test]
async fn every_malformed_request_gets_its_rfc_3261_answer_and_no_call() {
    let gw = start_gateway().await;
    let header = |name: &'static str| {
        move |inv: String| {
            inv.lines()
                .filter(|l| !l.starts_with(&format!("{name}:")))
                .map(|l| format!("{l}\r\n"))
                .collect::<String>()
                .replacen("\r\n\r\n\r\n", "\r\n\r\n", 1)
        }
    };
    type Change = Box<dyn Fn(String) -> String>;
    let cases: Vec<(&str, Change, &str)> = vec![
        (
            "an extension method",
            Box::new(|i| i.replace("INVITE", "FOOBAR")),
            "SIP/2.0 501 ",
        ),
        (
            "a method with %-escapes",
            Box::new(|i| i.replace("INVITE", "FOO%42AR")),
            "SIP/2.0 501 ",
        ),
        (
            "no Call-ID",
            Box::new(header("Call-ID")),
            "SIP/2.0 400 Missing Call-ID",
        ),
        (
            "no CSeq",
            Box::new(header("CSeq")),
            "SIP/2.0 400 Missing CSeq",
        ),
        (
            "no From",
            Box::new(header("From")),
            "SIP/2.0 400 Missing From",
        ),
        ("no To", Box::new(header("To")), "SIP/2.0 400 Missing To"),
        (
            "a bad CSeq",
            Box::new(|i| i.replace("CSeq: 1 INVITE", "CSeq: one INVITE")),
            "SIP/2.0 400 Malformed CSeq",
        ),
        (
            "an empty host",
            Box::new(|i| i.replacen("@127.0.0.1", "@", 1)),
            "SIP/2.0 400 Request-URI without a host",
        ),
        (
            "spaces in the Request-URI",
            Box::new(|i| i.replacen("sip:login@", "sip:log in@", 1)),
            "SIP/2.0 400 Malformed Request-Line",
        ),
        (
            "SIP/3.0",
            Box::new(|i| i.replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1)),
            "SIP/2.0 505 ",
        ),
        (
            "Require: foo",
            Box::new(|i| i.replace("Max-Forwards:", "Require: foo\r\nMax-Forwards:")),
            "SIP/2.0 420 ",
        ),
        (
            "a text/plain body",
            Box::new(|i| i.replace("application/sdp", "text/plain")),
            "SIP/2.0 415 ",
        ),
        (
            "Content-Encoding: gzip",
            Box::new(|i| i.replace("Max-Forwards:", "Content-Encoding: gzip\r\nMax-Forwards:")),
            "SIP/2.0 415 ",
        ),
        (
            "no Content-Type",
            Box::new(header("Content-Type")),
            "SIP/2.0 415 ",
        ),
        (
            "a foo: Request-URI",
            Box::new(|i| {
                let uri = i.split(' ').nth(1).unwrap().to_string();
                i.replacen(&uri, "foo:bar", 1)
            }),
            "SIP/2.0 416 ",
        ),
        (
            "Content-Length past the datagram",
            Box::new(|i| with_content_length(i, "9999")),
            "SIP/2.0 400 Content-Length larger than the body",
        ),
        (
            "a negative Content-Length",
            Box::new(|i| with_content_length(i, "-1")),
            "SIP/2.0 400 Malformed Content-Length",
        ),
        (
            "Content-Length 2^64-1",
            Box::new(|i| with_content_length(i, "18446744073709551615")),
            "SIP/2.0 400 Malformed Content-Length",
        ),
        (
            "two Content-Length headers",
            Box::new(|i| {
                let twice = format!("{0}\r\nContent-Length: {0}", content_length(&i));
                with_content_length(i, &twice)
            }),
            "SIP/2.0 400 Duplicate Content-Length",
        ),
        (
            "two CSeq headers",
            Box::new(|i| i.replace("CSeq: 1 INVITE", "CSeq: 1 INVITE\r\nCSeq: 2 INVITE")),
            "SIP/2.0 400 Duplicate CSeq",
        ),
        (
            "unbalanced quotes in a display name",
            Box::new(|i| i.replace("From: <", "From: \"Desk <")),
            "SIP/2.0 400 Malformed From header: unbalanced quotes",
        ),
        (
            "<…> in the Request-URI",
            Box::new(|i| {
                let uri = i.split(' ').nth(1).unwrap().to_string();
                i.replacen(&uri, &format!("<{uri}>"), 1)
            }),
            "SIP/2.0 400 Malformed Request-URI",
        ),
    ];
    for (what, change, want) in cases {
        let a = answer_to(&gw, change).await;
        assert!(status(&a).starts_with(want), "{what}: got {a:?}");
    }
    // The answers say what they need to: Allow, Unsupported, Accept, Accept-Encoding.
    let a = answer_to(&gw, |i| i.replace("INVITE", "FOOBAR")).await;
    assert!(
        a.contains("\r\nAllow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO\r\n"),
        "{a}"
    );
    let a = answer_to(&gw, |i| {
        i.replace("Max-Forwards:", "Require: foo\r\nMax-Forwards:")
    })
    .await;
    assert!(a.contains("\r\nUnsupported: foo\r\n"), "{a}");
    let a = answer_to(&gw, |i| i.replace("application/sdp", "text/plain")).await;
    assert!(a.contains("\r\nAccept: application/sdp\r\n"), "{a}");
    assert_eq!(
        gw.gateway.active_calls(),
        0,
        "no call from an invalid request"
    );
    assert!(gw.settles().await);
    // Counted by status.
    let (admin, token) = gw.start_admin().await;
    let (_, text) = http(admin, "GET", "/metrics", Some(&token), None).await;
    for (status, n) in [
        ("400", 14),
        ("415", 4),
        ("416", 1),
        ("420", 2),
        ("501", 3),
        ("505", 1),
    ] {
        let line = format!("agentgw_sip_invalid_total{{status=\"{status}\"}} {n}");
        assert!(text.contains(&line), "{line} in\n{text}");
    }
}

/// OPTIONS gets the same checks (and no call is involved): Require, SIP/3.0.
#[tokio::test]
async fn options_are_checked_alike() {
    let gw = start_gateway().await;
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    let options = p.invite_text().replace("INVITE", "OPTIONS");
    let a = answer_to_bytes(
        gw.udp,
        options
            .replace("Max-Forwards:", "Require: foo\r\nMax-Forwards:")
            .as_bytes(),
    )
    .await;
    assert!(status(&a).starts_with("SIP/2.0 420 "), "{a}");
    let a = answer_to_bytes(
        gw.udp,
        options.replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1).as_bytes(),
    )
    .await;
    assert!(status(&a).starts_with("SIP/2.0 505 "), "{a}");
}

/// Valid requests that RFC 3261 allows and phones send: served as any other.
#[tokio::test]
async fn folded_headers_non_utf8_octets_and_a_datagram_over_8_kb_are_served() {
    let gw = start_gateway().await;
    type Change = fn(String) -> Vec<u8>;
    let cases: [(&str, Change); 4] = [
        ("a From tag with spaces around =", |i| {
            i.replacen(";tag=", " ; tag = ", 1).into_bytes()
        }),
        ("a folded From", |i| {
            i.replacen("From: <", "From:\r\n <", 1)
                .replacen(">;tag=", ">\r\n\t;tag=", 1)
                .into_bytes()
        }),
        ("Latin-1 in the display name", |i| {
            let mut b = i
                .replacen("From: <", "From: \"Ren? Desk\" <", 1)
                .into_bytes();
            let at = b.windows(4).position(|w| w == b"Ren?").unwrap();
            b[at + 3] = 0xe9;
            b
        }),
        ("a 20 KB datagram", |i| {
            let pad = format!("X-Pad: {}\r\n", "p".repeat(20_000));
            i.replacen("Max-Forwards:", &format!("{pad}Max-Forwards:"), 1)
                .into_bytes()
        }),
    ];
    for (what, change) in cases {
        let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
        let invite = change(p.invite_text());
        p.send_raw(&invite).await;
        let r = p.final_response("INVITE", 5).await;
        assert_eq!(
            r.as_ref().and_then(|r| r.status()),
            Some(200),
            "{what}: {r:?}"
        );
    }
}

/// A message over `[sip] max_message_bytes` is answered 513, unread.
#[tokio::test]
async fn a_message_over_the_configured_size_gets_513() {
    let gw = start_gateway_with("127.0.0.1", |c| c.sip.max_message_bytes = 4000).await;
    let a = answer_to(&gw, |i| {
        let pad = format!("X-Pad: {}\r\n", "p".repeat(5_000));
        i.replacen("Max-Forwards:", &format!("{pad}Max-Forwards:"), 1)
    })
    .await;
    assert!(status(&a).starts_with("SIP/2.0 513 "), "{a}");
    assert_eq!(gw.gateway.active_calls(), 0);
}

/// An RFC 2543 peer sends no From tag, in its INVITE, its ACK and its BYE: it logs in, and
/// hangs up, as any phone.
#[tokio::test]
async fn a_caller_without_from_tags_logs_in_and_hangs_up() {
    let gw = start_gateway_with("127.0.0.1", |c| {
        c.login.after_login = agentgw::login::rules::AfterLogin::Stay;
    })
    .await;
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    let invite = p.invite_text();
    let from = invite.lines().find(|l| l.starts_with("From:")).unwrap();
    let untagged = from.split(";tag=").next().unwrap().to_string();
    let untag = |req: String| req.replace(from, &untagged);
    p.send_raw(untag(invite.clone()).as_bytes()).await;
    let ok = p.final_response("INVITE", 5).await.expect("answered");
    assert_eq!(ok.status(), Some(200));
    p.learn_answer(&ok);
    let to = ok.header("To").unwrap().to_string();
    // The ACK and the BYE as the INVITE, without a From tag, with the gateway's To tag.
    let in_call = |method: &str, cseq: u32| {
        let branch = format!("z9hG4bK{}", rand::random::<u32>());
        let head = invite.split("\r\n\r\n").next().unwrap();
        let mut lines: Vec<String> = head
            .lines()
            .filter(|l| !l.starts_with("Content-Type"))
            .map(|l| {
                if l.starts_with("INVITE ") {
                    l.replacen("INVITE", method, 1)
                } else if l.starts_with("CSeq:") {
                    format!("CSeq: {cseq} {method}")
                } else if l.starts_with("To:") {
                    format!("To: {to}")
                } else if l.starts_with("Content-Length") {
                    "Content-Length: 0".into()
                } else if l.starts_with("Via:") {
                    let old = l
                        .split("branch=")
                        .nth(1)
                        .unwrap()
                        .split(';')
                        .next()
                        .unwrap();
                    l.replace(old, &branch)
                } else {
                    l.to_string()
                }
            })
            .collect();
        lines.push(String::new());
        lines.push(String::new());
        untag(lines.join("\r\n"))
    };
    p.send_raw(in_call("ACK", 1).as_bytes()).await;
    p.press("1001#1234#").await;
    p.expect_prompt(agentgw::media::prompts::PromptId::AgentLoginOk)
        .await;
    p.send_raw(in_call("BYE", 2).as_bytes()).await;
    let bye = p.final_response("BYE", 5).await.expect("BYE answered");
    assert_eq!(bye.status(), Some(200));
    assert!(gw.settles().await, "the call ended");
    assert!(
        gw.store.list_sessions().await.unwrap().is_empty(),
        "hung up: logged out"
    );
}

/// Reads from `s` until a whole response head came; its text (empty: closed first).
async fn read_answer(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&got).to_string()
}

/// Whether the gateway closed `s` within `secs`.
async fn closed_within(s: &mut tokio::net::TcpStream, secs: u64) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Over TCP: the same answers on the connection, which stays open for the next request; a
/// message whose length cannot be framed (a bad or too large Content-Length) is answered and
/// the connection closed.
#[tokio::test]
async fn over_tcp_invalid_requests_are_answered_on_the_connection() {
    use tokio::io::AsyncWriteExt;
    let gw = start_gateway().await;
    let opts = PhoneOptions {
        transport: Transport::Tcp,
        ..PhoneOptions::default()
    };
    let mut p = Phone::new(gw.tcp, opts.clone()).await;
    let invite = p.invite_text();
    let mut s = tokio::net::TcpStream::connect(gw.tcp).await.unwrap();
    for (bad, want) in [
        (
            invite.replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1),
            "SIP/2.0 505 ",
        ),
        (invite.replace("INVITE", "FOOBAR"), "SIP/2.0 501 "),
        (
            invite.replace("Max-Forwards:", "Require: foo\r\nMax-Forwards:"),
            "SIP/2.0 420 ",
        ),
    ] {
        s.write_all(bad.as_bytes()).await.unwrap();
        let a = read_answer(&mut s).await;
        assert!(status(&a).starts_with(want), "{want}: {a:?}");
    }
    // Then a valid INVITE on the same connection is served.
    s.write_all(invite.as_bytes()).await.unwrap();
    let mut a = read_answer(&mut s).await;
    while status(&a).starts_with("SIP/2.0 1") {
        a = read_answer(&mut s).await;
    }
    assert!(status(&a).starts_with("SIP/2.0 200 "), "{a:?}");
    for (cl, want) in [("-1", "SIP/2.0 400 "), ("99999", "SIP/2.0 513 ")] {
        let mut s = tokio::net::TcpStream::connect(gw.tcp).await.unwrap();
        let mut p = Phone::new(gw.tcp, opts.clone()).await;
        let invite = p.invite_text();
        let bad = with_content_length(invite, cl);
        s.write_all(bad.as_bytes()).await.unwrap();
        let a = read_answer(&mut s).await;
        assert!(status(&a).starts_with(want), "{cl}: {a:?}");
        assert!(
            closed_within(&mut s, 5).await,
            "{cl}: closed after the answer"
        );
    }
}

/// A TCP peer that sends a byte a second, or nothing, is disconnected after
/// `[sip] tcp_message_timeout_secs`; a normal one is not.
#[tokio::test]
async fn slow_and_silent_tcp_peers_are_disconnected() {
    use tokio::io::AsyncWriteExt;
    let gw = start_gateway_with("127.0.0.1", |c| c.sip.tcp_message_timeout_secs = 2).await;
    let mut silent = tokio::net::TcpStream::connect(gw.tcp).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(gw.tcp).await.unwrap();
    let dripping = tokio::spawn(async move {
        for b in b"INVITE sip:login@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1" {
            if slow.write_all(&[*b]).await.is_err() {
                return (slow, true);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        (slow, false)
    });
    assert!(
        closed_within(&mut silent, 10).await,
        "a silent peer is disconnected"
    );
    let (mut slow, write_failed) = dripping.await.unwrap();
    assert!(
        write_failed || closed_within(&mut slow, 1).await,
        "a peer sending a byte every 0.5 s is disconnected"
    );
    // A phone over TCP still logs in.
    logs_in_over_tcp(gw.tcp).await;
    let (admin, token) = gw.start_admin().await;
    let (_, text) = http(admin, "GET", "/metrics", Some(&token), None).await;
    assert!(
        text.contains("agentgw_tcp_connections_too_slow_total 2"),
        "{text}"
    );
}

/// RFC 3264: an offer with no usable audio stream is refused 488; the streams agentgw does
/// not take are answered with port 0, in the offer's order.
#[tokio::test]
async fn sdp_offers_are_answered_stream_by_stream() {
    let gw = start_gateway().await;
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    let port0 = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 0 RTP/AVP 0\r\n";
    let r = p.raw_invite(port0).await;
    assert_eq!(r.status(), Some(488), "{r:?}");
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    let video_only = port0.replace("m=audio 0 RTP/AVP 0", "m=video 4002 RTP/AVP 96");
    assert_eq!(p.raw_invite(&video_only).await.status(), Some(488));
    let mut p = Phone::new(gw.udp, PhoneOptions::default()).await;
    let both = port0.replace(
        "m=audio 0 RTP/AVP 0\r\n",
        "m=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=audio 4000 RTP/AVP 0\r\n",
    );
    let r = p.raw_invite(&both).await;
    assert_eq!(r.status(), Some(200));
    let m: Vec<&str> = r.body().lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(m.len(), 2, "{}", r.body());
    assert_eq!(m[0], "m=video 0 RTP/AVP 96");
    assert!(m[1].starts_with("m=audio ") && !m[1].starts_with("m=audio 0 "));
}
