//! Media: RTP sockets, G.711, the prompt catalog, paced playback, DTMF, each call's line and
//! the pump that drives every line on one 20 ms schedule.

pub mod dtmf;
pub mod g711;
pub mod line;
pub mod player;
pub mod poll;
pub mod prompts;
pub mod pump;
pub mod realtime;
pub mod rtp;
pub mod srtp;

use prompts::Codec;

/// The media we negotiated for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: Codec,
    pub telephone_event: Option<u8>,
    /// Comfort noise, answered when offered (sent on stay lines while nothing plays).
    pub comfort_noise: Option<u8>,
}
