//! Media: RTP sockets, G.711, the prompt catalog, paced playback and DTMF.

pub mod dtmf;
pub mod g711;
pub mod player;
pub mod poll;
pub mod prompts;
pub mod rtp;
