//! A SIP INFO's DTMF body: its Content-Type (the first line of the input) and body.
#![no_main]
use agentgw::media::dtmf::info::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (ctype, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    let _ = parse(ctype, body);
});
