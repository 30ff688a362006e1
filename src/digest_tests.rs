//! Digest responses by RFC 7616's example (the same computation as RFC 8760's for SIP), the
//! parsing of credentials, and nonces: expiry, forgery and replay.

use super::*;

const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

/// RFC 7616 §3.9.1's example, by both algorithms.
fn example(algorithm: Algorithm) -> Credentials {
    Credentials {
        username: "Mufasa".into(),
        realm: "http-auth@example.org".into(),
        nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v".into(),
        uri: "/dir/index.html".into(),
        response: String::new(),
        algorithm,
        cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ".into(),
        count: 1,
    }
}

#[test]
fn responses_match_rfc_7616s_example() {
    let ha1s = Ha1s::of("Mufasa", "http-auth@example.org", "Circle of Life");
    let c = example(Algorithm::Md5);
    assert_eq!(
        response(&ha1s.md5, &c, "GET"),
        "8ca523f5e9506fed4657c9700eebdbec"
    );
    let c = example(Algorithm::Sha256);
    assert_eq!(
        response(&ha1s.sha256, &c, "GET"),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
}

#[test]
fn credentials_are_read_with_quotes_commas_and_any_case() {
    let c = parse(
        "Digest username=\"bob\",realm=\"agentgw\", nonce=\"n,1\", uri=\"sip:login@192.0.2.1\", \
         response=\"ABCD\", ALGORITHM=SHA-256, cnonce=\"c\", qop=auth, nc=0000000a",
    )
    .unwrap();
    assert_eq!(c.username, "bob");
    assert_eq!(c.nonce, "n,1");
    assert_eq!(c.algorithm, Algorithm::Sha256);
    assert_eq!(c.count, 10);
    assert_eq!(c.response, "abcd");
    let without_qop =
        "Digest username=\"bob\", realm=\"agentgw\", nonce=\"n\", uri=\"sip:x\", response=\"a\"";
    assert_eq!(parse(without_qop), Err("no qop (qop=auth is required)"));
    assert_eq!(
        parse("Basic Ym9iOnNlY3JldA=="),
        Err("not Digest credentials")
    );
    let sess = "Digest username=\"b\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"a\", algorithm=MD5-sess, qop=auth, nc=00000001, cnonce=\"c\"";
    assert_eq!(parse(sess), Err("algorithm not offered"));
    // nc is 8LHEX: a sign, a short or a long count is no count.
    for nc in ["+0000001", "0000001", "000000001", "0000000g"] {
        let c = format!("{without_qop}, qop=auth, cnonce=\"c\", nc={nc}");
        assert_eq!(parse(&c), Err("no nonce count (nc)"), "{nc}");
    }
}

#[test]
fn both_algorithms_are_offered_sha_256_first() {
    const BOTH: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];
    let c = challenges("agentgw", &BOTH, "n", false);
    assert_eq!(c.len(), 2);
    assert!(c[0].contains("algorithm=SHA-256") && c[1].contains("algorithm=MD5"));
    assert!(c
        .iter()
        .all(|c| c.contains("qop=\"auth\"") && !c.contains("stale")));
    assert!(challenges("agentgw", &BOTH, "n", true)[0].ends_with("stale=true"));
    let md5_first = challenges("agentgw", &[Algorithm::Md5, Algorithm::Sha256], "n", false);
    assert!(md5_first[0].contains("algorithm=MD5"), "{md5_first:?}");
}

/// The Authorization a phone (desk-7) sends for `nonce` with `password`.
fn answer(nonce: &str, password: &str, count: u32, algorithm: Algorithm) -> String {
    let challenge = &challenges("agentgw", &[algorithm], nonce, false)[0];
    let uri = "sip:login@192.0.2.1";
    authorization(challenge, ("desk-7", password), "INVITE", uri, count).unwrap()
}

#[test]
fn a_right_response_is_taken_once_per_count_and_a_wrong_one_refused() {
    let nonces = Nonces::default();
    let account = Ha1s::of("desk-7", "agentgw", "s3cret");
    let now = 1_000_000;
    let nonce = nonces.issue(now);
    for algorithm in [Algorithm::Sha256, Algorithm::Md5] {
        let count = if algorithm == Algorithm::Md5 { 2 } else { 1 };
        let auth = answer(&nonce, "s3cret", count, algorithm);
        let First::Lookup(c) = first(Some(&auth), "agentgw", &ALL, &nonces, now + 1) else {
            panic!("not looked up")
        };
        assert_eq!(
            finish(&c, Some(&account), "INVITE", &nonces, now + 1),
            Ok("desk-7".into())
        );
        // The same request again: a replay.
        assert_eq!(
            finish(&c, Some(&account), "INVITE", &nonces, now + 2),
            Err("a nonce count used before (a replay)")
        );
    }
    let auth = answer(&nonce, "guess", 3, Algorithm::Sha256);
    let First::Lookup(c) = first(Some(&auth), "agentgw", &ALL, &nonces, now + 1) else {
        panic!("not looked up")
    };
    assert_eq!(
        finish(&c, Some(&account), "INVITE", &nonces, now),
        Err("wrong password")
    );
    assert_eq!(
        finish(&c, None, "INVITE", &nonces, now),
        Err("no such phone account")
    );
    // A wrong password does not use up the count.
    let auth = answer(&nonce, "s3cret", 3, Algorithm::Sha256);
    let First::Lookup(c) = first(Some(&auth), "agentgw", &ALL, &nonces, now + 1) else {
        panic!("not looked up")
    };
    assert!(finish(&c, Some(&account), "INVITE", &nonces, now).is_ok());
    // An algorithm that was not offered.
    let auth = answer(&nonce, "s3cret", 4, Algorithm::Md5);
    assert_eq!(
        first(Some(&auth), "agentgw", &[Algorithm::Sha256], &nonces, now),
        First::Refuse("algorithm not offered")
    );
}

#[test]
fn nonces_expire_and_cannot_be_made_up() {
    let nonces = Nonces::default();
    let now = 1_000_000;
    let nonce = nonces.issue(now);
    assert_eq!(nonces.state(&nonce, now), NonceState::Fresh);
    assert_eq!(
        nonces.state(&nonce, now + NONCE_LIFETIME_SECS),
        NonceState::Fresh
    );
    assert_eq!(
        nonces.state(&nonce, now + NONCE_LIFETIME_SECS + 1),
        NonceState::Stale
    );
    assert_eq!(Nonces::default().state(&nonce, now), NonceState::Forged);
    let mut tampered = nonce.clone().into_bytes();
    tampered[0] = if tampered[0] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(nonces.state(&tampered, now), NonceState::Forged);
    assert_eq!(nonces.state("é", now), NonceState::Forged);
    let stale = answer(&nonce, "s3cret", 1, Algorithm::Md5);
    assert_eq!(
        first(
            Some(&stale),
            "agentgw",
            &ALL,
            &nonces,
            now + NONCE_LIFETIME_SECS + 1
        ),
        First::Challenge { stale: true }
    );
    assert_eq!(
        first(None, "agentgw", &ALL, &nonces, now),
        First::Challenge { stale: false }
    );
    assert_eq!(
        first(
            Some(&answer("ab", "x", 1, Algorithm::Md5)),
            "agentgw",
            &ALL,
            &nonces,
            now
        ),
        First::Refuse("a nonce not issued here")
    );
}

#[test]
fn a_phones_authorization_answers_each_challenge_and_checks_out() {
    const BOTH: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];
    let ha1s = Ha1s::of("desk1", "agentgw", "correct horse battery");
    for (challenge, ha1) in challenges("agentgw", &BOTH, "n0", false)
        .iter()
        .zip([&ha1s.sha256, &ha1s.md5])
    {
        let uri = "sip:login@192.0.2.1";
        let value = authorization(
            challenge,
            ("desk1", "correct horse battery"),
            "INVITE",
            uri,
            1,
        );
        let c = parse(&value.expect("a Digest challenge with qop=auth")).unwrap();
        assert_eq!((c.username.as_str(), c.nonce.as_str()), ("desk1", "n0"));
        assert_eq!((c.uri.as_str(), c.count), (uri, 1));
        assert_eq!(response(ha1, &c, "INVITE"), c.response);
        assert_ne!(response(ha1, &c, "BYE"), c.response, "the method is in it");
    }
    let no_qop = "Digest realm=\"agentgw\", nonce=\"n0\", algorithm=MD5";
    assert_eq!(
        authorization(no_qop, ("u", "p"), "INVITE", "sip:x", 1),
        None
    );
    let sess = "Digest realm=\"agentgw\", nonce=\"n0\", algorithm=MD5-sess, qop=\"auth\"";
    assert_eq!(authorization(sess, ("u", "p"), "INVITE", "sip:x", 1), None);
    let basic = "Basic realm=\"agentgw\"";
    assert_eq!(authorization(basic, ("u", "p"), "INVITE", "sip:x", 1), None);
}
