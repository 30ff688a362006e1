//! RFC 4733 telephone-events in the RTP stream. One key is one event, and one event is every
//! packet sharing an RTP timestamp (start, repeats, three end packets): it is counted once, on
//! the first packet seen, whatever the sequence numbers say (some phones repeat them). Counting
//! at the first packet also means a lost start packet or lost end packets change nothing.

use super::Digit;

/// Turns telephone-event RTP payloads into keys, each once.
#[derive(Debug, Default)]
pub struct EventReceiver {
    /// Stream and timestamp of the last event counted; its repeats and end packets are ignored.
    /// A new stream (SSRC) starts a new timestamp space.
    last: Option<(u32, u32)>,
}

impl EventReceiver {
    /// Feeds one telephone-event packet; returns the key when this packet starts a new event.
    pub fn on_packet(&mut self, ssrc: u32, rtp_timestamp: u32, payload: &[u8]) -> Option<Digit> {
        if payload.len() < 4 {
            return None;
        }
        let digit = Digit::from_event(payload[0])?;
        // Same timestamp: a repeat or end packet of the event already counted. Older: a late
        // packet of an earlier event (reordered by the network).
        if self
            .last
            .is_some_and(|(id, last)| id == ssrc && rtp_timestamp.wrapping_sub(last) as i32 <= 0)
        {
            return None;
        }
        self.last = Some((ssrc, rtp_timestamp));
        Some(digit)
    }
}

/// Writes the 4-byte event payload (used by the test phone and the load tool).
pub fn encode(digit: Digit, end: bool, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [
        digit.event_code(),
        if end { 0x80 | 10 } else { 10 },
        d[0],
        d[1],
    ]
}

#[cfg(test)]
#[path = "rfc4733_tests.rs"]
mod tests;
