use super::*;

const LINPHONE: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
    m=audio 7078 RTP/AVP 96 8 0 120\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:8 PCMA/8000\r\n\
    a=rtpmap:120 telephone-event/8000\r\na=fmtp:120 0-16\r\na=sendrecv\r\n";

#[test]
fn picks_first_supported_codec_and_the_peers_telephone_event_type() {
    let m = parse(LINPHONE.as_bytes()).unwrap();
    assert_eq!(m.addr, "10.0.0.5:7078".parse().unwrap());
    assert_eq!(m.codecs, vec![Codec::Pcma, Codec::Pcmu]);
    assert_eq!(m.telephone_event, Some(120));
    let n = m.negotiate();
    let a = answer(
        Origin {
            session_id: 5,
            version: 1,
        },
        "192.0.2.1:20000".parse().unwrap(),
        n,
        Direction::SendRecv,
        &m,
        None,
    );
    assert!(a.contains("m=audio 20000 RTP/AVP 8 120\r\n"), "{a}");
    assert!(a.contains("a=rtpmap:120 telephone-event/8000\r\n"), "{a}");
    assert!(a.contains("c=IN IP4 192.0.2.1\r\n"), "{a}");
}

#[test]
fn ipv6_and_media_level_connection_and_hold() {
    let sdp = "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP6 ::1\r\na=sendonly\r\n";
    let m = parse(sdp.as_bytes()).unwrap();
    assert_eq!(m.addr, "[::1]:4000".parse().unwrap());
    assert_eq!(m.direction, Direction::SendOnly);
    let a = answer(
        Origin {
            session_id: 1,
            version: 2,
        },
        "[::1]:20002".parse().unwrap(),
        m.negotiate(),
        m.direction.answer(),
        &m,
        None,
    );
    assert!(
        a.contains("c=IN IP6 ::1\r\n") && a.contains("a=recvonly\r\n"),
        "{a}"
    );
}

#[test]
fn no_common_codec_and_garbage_are_told_apart() {
    let sdp = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    assert_eq!(parse(sdp.as_bytes()), Err(SdpError::NoCommonCodec));
    assert!(matches!(parse(b"hello"), Err(SdpError::Malformed(_))));
    assert!(matches!(
        parse(b"v=0\r\nm=audio x RTP/AVP 0\r\n"),
        Err(SdpError::Malformed(_))
    ));
    assert!(matches!(
        parse(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n"),
        Err(SdpError::Malformed(_))
    ));
    assert!(matches!(parse(&[0xff, 0xfe]), Err(SdpError::Malformed(_))));
}

#[test]
fn our_offer_lists_both_codecs_and_events() {
    let o = offer(
        Origin {
            session_id: 1,
            version: 1,
        },
        "127.0.0.1:20000".parse().unwrap(),
        false,
        &[],
    );
    assert!(o.contains("m=audio 20000 RTP/AVP 0 8 101\r\n"), "{o}");
    let back = parse(o.as_bytes()).unwrap();
    assert_eq!(back.codecs, vec![Codec::Pcmu, Codec::Pcma]);
    assert_eq!(back.telephone_event, Some(101));
}

#[test]
fn comfort_noise_is_answered_when_offered() {
    let sdp = "v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 4000 RTP/AVP 0 101 13\r\na=rtpmap:101 telephone-event/8000\r\n";
    let m = parse(sdp.as_bytes()).unwrap();
    assert_eq!(m.comfort_noise, Some(13));
    let a = answer(
        Origin {
            session_id: 1,
            version: 1,
        },
        "192.0.2.1:20000".parse().unwrap(),
        m.negotiate(),
        Direction::SendRecv,
        &m,
        None,
    );
    assert!(
        a.contains("RTP/AVP 0 101 13\r\n") && a.contains("a=rtpmap:13 CN/8000\r\n"),
        "{a}"
    );
    let m = parse(b"v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 4000 RTP/AVP 0\r\n").unwrap();
    assert_eq!(m.comfort_noise, None);
}

#[test]
fn a_disabled_or_missing_audio_stream_is_no_audio_and_other_streams_are_rejected_in_place() {
    let port0 = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n";
    assert!(matches!(parse(port0.as_bytes()), Err(SdpError::NoAudio(_))));
    let video = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 4002 RTP/AVP 96\r\n";
    assert!(matches!(parse(video.as_bytes()), Err(SdpError::NoAudio(_))));
    assert_eq!(SdpError::NoAudio("x").status(), 488);
    // Video, a disabled audio stream, the audio stream taken, an application stream.
    let offer = "v=0\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=video 4002 RTP/AVP 96\r\n\
                 a=rtpmap:96 H264/90000\r\nm=audio 0 RTP/AVP 8\r\nm=audio 4000 RTP/AVP 0 101\r\n\
                 a=rtpmap:101 telephone-event/8000\r\nm=application 5000 UDP/BFCP *\r\n";
    let m = parse(offer.as_bytes()).unwrap();
    assert_eq!(m.addr.port(), 4000);
    let a = answered(&m);
    let lines: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(
        lines,
        [
            "m=video 0 RTP/AVP 96",
            "m=audio 0 RTP/AVP 8",
            "m=audio 30000 RTP/AVP 0 101",
            "m=application 0 UDP/BFCP *"
        ],
        "{a}"
    );
}

#[test]
fn a_garbled_stream_is_rejected_with_an_answer_that_parses() {
    // Found by the sdp fuzz target: a stream whose fields are not SDP tokens.
    let offer =
        "v=0\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio\u{12}\u{12} 4 RTP/01:db8::10\r\u{8}t=0\r\n\
                 m=audio 4000 RTP/AVP 0\r\n";
    let m = parse(offer.as_bytes()).unwrap();
    assert_eq!(m.rejected.0, ["audio 0 RTP/01db810 0"]);
    let a = answered(&m);
    assert!(parse(a.as_bytes()).is_ok(), "{a}");
    // An audio stream over another transport: its formats are not payload types.
    let offer = "v=0\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=audio 5 0 *\r\nm=audio 4000 RTP/AVP 0\r\n";
    assert_eq!(parse(offer.as_bytes()).unwrap().rejected.0, ["audio 0 0 *"]);
}

/// Our answer to the offer `m`, as a call makes it (from 10.0.0.1:30000).
fn answered(m: &RemoteMedia) -> String {
    answer(
        Origin {
            session_id: 1,
            version: 1,
        },
        "10.0.0.1:30000".parse().unwrap(),
        m.negotiate(),
        m.direction.answer(),
        m,
        None,
    )
}

/// An offer of `profile` with these `a=crypto` lines.
fn secure_offer(profile: &str, crypto: &[String]) -> RemoteMedia {
    let lines: String = crypto.iter().map(|c| format!("a=crypto:{c}\r\n")).collect();
    let sdp = format!("v=0\r\nc=IN IP4 10.0.0.5\r\nm=audio 4000 {profile} 0\r\n{lines}");
    parse(sdp.as_bytes()).unwrap()
}

#[test]
fn crypto_lines_of_supported_suites_are_read_and_the_answer_carries_ours() {
    let key = MasterKey::generate(Suite::AesCm128HmacSha1_32);
    let m = secure_offer(
        "RTP/SAVP",
        &[
            "1 AES_256_CM_HMAC_SHA1_80 inline:AAAA".into(),
            format!("2 AES_CM_128_HMAC_SHA1_32 {}|2^31", key.to_inline()),
            "3 AES_CM_128_HMAC_SHA1_80 inline:tooshort".into(),
            format!(
                "4 AES_CM_128_HMAC_SHA1_80 {} UNENCRYPTED_SRTP",
                key.to_inline()
            ),
        ],
    );
    assert!(m.secure);
    assert_eq!(m.crypto.len(), 1, "{:?}", m.crypto);
    assert_eq!((m.crypto[0].tag, &m.crypto[0].key), (2, &key));
    let ours = Crypto {
        tag: 2,
        key: MasterKey::generate(Suite::AesCm128HmacSha1_32),
    };
    let a = answer(
        Origin {
            session_id: 1,
            version: 1,
        },
        "10.0.0.1:30000".parse().unwrap(),
        m.negotiate(),
        Direction::SendRecv,
        &m,
        Some(&ours),
    );
    assert!(a.contains("m=audio 30000 RTP/SAVP 0\r\n"), "{a}");
    assert!(
        a.contains(&format!(
            "a=crypto:2 AES_CM_128_HMAC_SHA1_32 {}\r\n",
            ours.key.to_inline()
        )),
        "{a}"
    );
    assert_eq!(parse(a.as_bytes()).unwrap().crypto, vec![ours]);
}

#[test]
fn the_srtp_policy_decides_by_profile_keys_and_transport() {
    use SrtpPolicy::{Off, Offer, Require};
    let key = MasterKey::generate(Suite::AeadAes128Gcm).to_inline();
    let savp = secure_offer("RTP/SAVP", &[format!("1 AEAD_AES_128_GCM {key}")]);
    let savp_unknown = secure_offer("RTP/SAVP", &["1 F8_128_HMAC_SHA1_80 inline:AAAA".into()]);
    let best_effort = secure_offer("RTP/AVP", &[format!("1 AEAD_AES_128_GCM {key}")]);
    let plain = secure_offer("RTP/AVP", &[]);
    let keyed = |r: Result<Option<&Crypto>, SdpError>| r.map(|c| c.is_some());
    for (policy, tls, offer, want) in [
        (Off, true, &savp, Err(())),
        (Off, true, &best_effort, Ok(false)),
        (Offer, true, &savp, Ok(true)),
        (Offer, false, &savp, Err(())),
        (Offer, true, &savp_unknown, Err(())),
        (Offer, true, &best_effort, Ok(true)),
        (Offer, false, &best_effort, Ok(false)),
        (Offer, false, &plain, Ok(false)),
        (Require, true, &savp, Ok(true)),
        (Require, true, &best_effort, Ok(true)),
        (Require, true, &plain, Err(())),
        (Require, false, &best_effort, Err(())),
    ] {
        let got = keyed(choose_crypto(policy, tls, offer));
        assert_eq!(
            got.map_err(|e| assert_eq!(e.status(), 488)),
            want,
            "{policy:?} {tls} {offer:?}"
        );
    }
}

#[test]
fn a_late_offer_carries_keys_only_over_tls_and_require_refuses_it_elsewhere() {
    use SrtpPolicy::{Off, Offer, Require};
    for (policy, tls, want) in [
        (Off, true, Ok(false)),
        (Off, false, Ok(false)),
        (Offer, true, Ok(true)),
        (Offer, false, Ok(false)),
        (Require, true, Ok(true)),
        (Require, false, Err(())),
    ] {
        let got = late_offer_keys(policy, tls).map_err(|e| assert_eq!(e.status(), 488));
        assert_eq!(got, want, "{policy:?} {tls}");
    }
}
