//! A peer's SDP offer: parsed, and when usable answered (RFC 3264), the answer parsing back.
#![no_main]
use agentgw::sdp::{answer, parse, Origin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(offer) = parse(data) {
        let a = answer(
            Origin {
                session_id: 1,
                version: 1,
            },
            "192.0.2.1:40000".parse().unwrap(),
            offer.negotiate(),
            offer.direction.answer(),
            &offer,
            None,
        );
        assert!(parse(a.as_bytes()).is_ok(), "our answer parses: {a}");
    }
});
