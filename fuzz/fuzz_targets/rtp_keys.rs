//! RTP from a peer: the header, RFC 4733 events, and G.711 audio through the in-band DTMF
//! detector. The input is a series of packets, each prefixed by its length (one byte).
#![no_main]
use agentgw::media::dtmf::inband::InbandDetector;
use agentgw::media::dtmf::rfc4733::EventReceiver;
use agentgw::media::g711::{alaw_to_linear, ulaw_to_linear};
use agentgw::media::rtp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut events = EventReceiver::default();
    let mut inband = InbandDetector::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (packet, next) = tail.split_at(usize::from(len).min(tail.len()));
        rest = next;
        let Some((header, payload)) = rtp::parse(packet) else {
            continue;
        };
        match header.payload_type {
            0 | 8 => {
                let decode = if header.payload_type == 0 {
                    ulaw_to_linear
                } else {
                    alaw_to_linear
                };
                let samples: Vec<i16> = payload.iter().map(|&b| decode(b)).collect();
                inband.feed(&samples, |_| {});
            }
            _ => {
                let _ = events.on_packet(header.ssrc, header.timestamp, payload);
            }
        }
    }
});
