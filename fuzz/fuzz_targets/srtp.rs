//! SRTP packets from a peer: unprotected (with each suite) or refused, never a panic; and an
//! offer's `a=crypto` key parameters read or refused.
#![no_main]
use agentgw::media::srtp::{MasterKey, Receiver, Suite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for suite in Suite::ALL {
        // A fixed key per suite (30 bytes for AES-CM, 28 for GCM): runs repeat.
        let key = MasterKey::from_inline(suite, "inline:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0e")
            .or_else(|| {
                MasterKey::from_inline(suite, "inline:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHA==")
            })
            .expect("a key of the suite's length");
        let mut rx = Receiver::new(&key);
        let mut buf = data.to_vec();
        let _ = rx.unprotect(&mut buf);
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = MasterKey::from_inline(suite, text);
        }
    }
});
