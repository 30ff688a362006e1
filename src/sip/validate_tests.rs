use super::*;

const OK: &str =
    "INVITE sip:login@gw.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n\
Max-Forwards: 70\r\nFrom: \"Desk\" <sip:2001@pbx.example>;tag=a1\r\nTo: <sip:login@gw.example>\r\n\
Call-ID: c1@192.0.2.1\r\nCSeq: 1 INVITE\r\nContact: <sip:2001@192.0.2.1>\r\n\
Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n";

fn status(msg: &str) -> u16 {
    match check(msg.as_bytes(), 65535, false) {
        Verdict::Answer { status, .. } => status,
        Verdict::Pass | Verdict::Rewrite(_) => 0,
        Verdict::Drop(_) => 1,
    }
}

fn answer(msg: &str) -> String {
    match check(msg.as_bytes(), 65535, false) {
        Verdict::Answer { answer, .. } => String::from_utf8(answer).unwrap(),
        v => panic!("not answered: {v:?}"),
    }
}

#[test]
fn a_valid_request_passes_and_responses_are_left_to_the_stack() {
    assert_eq!(check(OK.as_bytes(), 65535, false), Verdict::Pass);
    assert_eq!(
        check(b"SIP/2.0 200 OK\r\n\r\n", 65535, false),
        Verdict::Pass
    );
    assert_eq!(check(b"\r\n\r\n", 65535, false), Verdict::Pass);
}

#[test]
fn each_fault_gets_its_rfc_3261_status() {
    let cases: [(&str, &str, u16); 16] = [
        ("SIP/2.0\r\n", "SIP/3.0\r\n", 505),
        ("INVITE sip:", "FOOBAR sip:", 400), // the CSeq method differs: 400 first
        ("Call-ID: c1@192.0.2.1\r\n", "", 400),
        ("CSeq: 1 INVITE\r\n", "", 400),
        ("CSeq: 1 INVITE", "CSeq: x INVITE", 400),
        (
            "CSeq: 1 INVITE\r\n",
            "CSeq: 1 INVITE\r\nCSeq: 2 INVITE\r\n",
            400,
        ),
        ("To: <sip:login@gw.example>\r\n", "", 400),
        ("\"Desk\"", "\"Desk", 400),
        ("sip:login@gw.example SIP", "sip:@ SIP", 400),
        ("sip:login@gw.example SIP", "sip:lo gin@gw.example SIP", 400),
        (
            "sip:login@gw.example SIP",
            "<sip:login@gw.example> SIP",
            400,
        ),
        ("sip:login@gw.example SIP", "foo:bar SIP", 416),
        ("Content-Length: 4", "Content-Length: 99", 400),
        ("Content-Length: 4", "Content-Length: -4", 400),
        (
            "Content-Length: 4",
            "Content-Length: 18446744073709551615",
            400,
        ),
        ("application/sdp", "text/plain", 415),
    ];
    for (from, to, want) in cases {
        let msg = OK.replacen(from, to, 1);
        assert_eq!(status(&msg), want, "{from:?} → {to:?}");
    }
    let foobar = OK
        .replace("INVITE sip:", "FOOBAR sip:")
        .replace("1 INVITE", "1 FOOBAR");
    assert_eq!(status(&foobar), 501);
    assert!(answer(&foobar).contains("\r\nAllow: INVITE, ACK"));
    let escaped = foobar.replace("FOOBAR", "FOO%42AR");
    assert_eq!(status(&escaped), 501);
    let require = OK.replace("Contact:", "Require: foo, 100rel\r\nContact:");
    assert!(answer(&require).contains("\r\nUnsupported: foo, 100rel\r\n"));
    let gzip = OK.replace("Contact:", "Content-Encoding: gzip\r\nContact:");
    assert!(answer(&gzip).starts_with("SIP/2.0 415 "));
    assert!(answer(&gzip).contains("\r\nAccept-Encoding: identity\r\n"));
    let untyped = OK.replace("Content-Type: application/sdp\r\n", "");
    assert!(answer(&untyped).contains("\r\nAccept: application/sdp\r\n"));
    assert_eq!(
        status(&OK.replacen("Content-Length: 4", "Content-Length: 4\r\nl: 4", 1)),
        400
    );
    match check(OK.as_bytes(), 100, false) {
        Verdict::Answer { status, .. } => assert_eq!(status, 513),
        v => panic!("{v:?}"),
    }
}

#[test]
fn an_answer_names_the_fault_and_echoes_the_transaction() {
    let a = answer(&OK.replace("Call-ID: c1@192.0.2.1\r\n", "i: \r\n"));
    assert!(
        a.starts_with("SIP/2.0 400 Malformed Call-ID header\r\n"),
        "{a}"
    );
    assert!(a.contains("\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n"));
    assert!(a.contains("\r\nCSeq: 1 INVITE\r\n"));
    assert!(a.contains("\r\nWarning: 399 agentgw \"Malformed Call-ID header\"\r\n"));
    // A To tag, the same for a retransmission.
    let to = a
        .lines()
        .find(|l| l.starts_with("To:"))
        .unwrap()
        .to_string();
    assert!(to.contains(";tag=sl"), "{to}");
    let again = answer(&OK.replace("Call-ID: c1@192.0.2.1\r\n", "i: \r\n"));
    assert!(again.contains(&to));
    assert!(a.ends_with("Content-Length: 0\r\n\r\n"));
}

#[test]
fn an_invalid_ack_is_dropped_unanswered() {
    let ack = OK
        .replace("INVITE sip:", "ACK sip:")
        .replace("1 INVITE", "1 ACK")
        .replace("Call-ID: c1@192.0.2.1\r\n", "");
    assert_eq!(status(&ack), 1);
}

#[test]
fn folded_headers_and_octets_that_are_not_utf8_are_rewritten_for_the_stack() {
    let folded = OK.replace(
        "From: \"Desk\" <sip:2001@pbx.example>;tag=a1",
        "From: \"Desk\"\r\n <sip:2001@pbx.example>\r\n\t;tag=a1",
    );
    match check(folded.as_bytes(), 65535, false) {
        Verdict::Rewrite(bytes) => {
            let text = String::from_utf8(bytes).unwrap();
            assert!(
                text.contains("\r\nFrom: \"Desk\" <sip:2001@pbx.example>;tag=a1\r\n"),
                "{text}"
            );
            assert!(text.ends_with("\r\n\r\nv=0\n"));
        }
        v => panic!("{v:?}"),
    }
    let mut latin1 = OK.replace("\"Desk\"", "\"D\u{e9}sk\"").into_bytes();
    let at = latin1
        .windows(2)
        .position(|w| w == "\u{e9}".as_bytes())
        .unwrap();
    latin1.splice(at..at + 2, [0xe9]);
    assert!(matches!(check(&latin1, 65535, false), Verdict::Rewrite(_)));
}

#[test]
fn a_stream_message_needs_its_content_length() {
    let none = OK.replace("Content-Length: 4\r\n", "");
    assert_eq!(status(&none), 0, "a datagram's body is the rest");
    match check(none.as_bytes(), 65535, true) {
        Verdict::Answer { status, .. } => assert_eq!(status, 400),
        v => panic!("{v:?}"),
    }
}

#[test]
fn a_version_with_a_multibyte_character_is_malformed_not_a_panic() {
    let msg = OK.replacen("SIP/2.0\r\n", "SI\u{e9}/2.0\r\n", 1);
    assert_eq!(status(&msg), 400);
    let msg = OK.replacen("SIP/2.0\r\n", "SIP\u{e9}2.0\r\n", 1);
    assert_eq!(status(&msg), 400);
}

#[test]
fn parameters_with_spaces_are_compacted_and_quoted_names_kept() {
    assert_eq!(
        compact_params("\"A ; B = C\" <sip:a@b;x = y> ; tag = 12").as_deref(),
        Some("\"A ; B = C\" <sip:a@b;x = y>;tag=12")
    );
    assert_eq!(compact_params("<sip:a@b>;tag=1"), None);
    assert_eq!(
        compact_params("SIP/2.0/UDP 192.0.2.1:5060 ; branch = z9hG4bK1").as_deref(),
        Some("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1")
    );
}
