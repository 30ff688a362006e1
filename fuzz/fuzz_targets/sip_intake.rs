//! What a peer's SIP message meets first: agentgw's RFC 3261 checks over UDP and TCP, then
//! the SIP stack's parser on what they pass (as sent, or as they rewrite it). A rewrite must
//! parse: the checks only rewrite what the stack can read.
#![no_main]
use agentgw::sip::validate::{check, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for stream in [false, true] {
        match check(data, 65535, stream) {
            Verdict::Pass => {
                let _ = rsipstack::sip::SipMessage::try_from(data);
            }
            Verdict::Rewrite(bytes) => {
                let _ = rsipstack::sip::SipMessage::try_from(&bytes[..]);
                // Checked again, a rewrite passes as it is.
                assert_eq!(check(&bytes, 65535, stream), Verdict::Pass);
            }
            Verdict::Answer { answer, .. } => {
                assert!(answer.starts_with(b"SIP/2.0 "));
                assert!(answer.ends_with(b"\r\n\r\n"));
            }
            Verdict::Drop(_) => {}
        }
    }
});
