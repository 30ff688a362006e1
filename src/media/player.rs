//! Paced playback. A `Player` is sans-IO: each 20 ms it fills one frame (prompt audio, or
//! silence between prompts) and says when a prompt has finished; the gateway's media threads
//! drive every call's player.

use super::prompts::{Codec, EncodedPrompt, Frame, PromptId};
use std::sync::Arc;
use std::time::Duration;

/// The packetisation interval of every stream.
pub const PTIME: Duration = Duration::from_millis(20);

/// Plays prompts frame by frame for one call.
#[derive(Debug)]
pub struct Player {
    codec: Codec,
    current: Option<Playing>,
}

#[derive(Debug)]
struct Playing {
    id: PromptId,
    prompt: Arc<EncodedPrompt>,
    next: usize,
}

impl Player {
    pub fn new(codec: Codec) -> Player {
        Player {
            codec,
            current: None,
        }
    }

    pub fn set_codec(&mut self, codec: Codec) {
        self.codec = codec;
    }

    /// Starts `prompt` from its beginning, replacing whatever was playing.
    pub fn play(&mut self, id: PromptId, prompt: Arc<EncodedPrompt>) {
        self.current = Some(Playing {
            id,
            prompt,
            next: 0,
        });
    }

    /// Stops the prompt playing now (barge-in); returns which one it was.
    pub fn stop(&mut self) -> Option<PromptId> {
        self.current.take().map(|p| p.id)
    }

    pub fn playing(&self) -> Option<PromptId> {
        self.current.as_ref().map(|p| p.id)
    }

    /// Copies the frame for this tick into `out` (prompt audio, or silence when nothing plays)
    /// and returns the prompt that ended with this frame, if one did.
    pub fn next_frame(&mut self, out: &mut Frame) -> Option<PromptId> {
        let Some(p) = self.current.as_mut() else {
            *out = *self.codec.silence();
            return None;
        };
        let frames = p.prompt.frames(self.codec);
        match frames.get(p.next) {
            Some(frame) => *out = *frame,
            None => *out = *self.codec.silence(),
        }
        p.next += 1;
        if p.next >= frames.len() {
            return self.current.take().map(|p| p.id);
        }
        None
    }
}

#[cfg(test)]
#[path = "player_tests.rs"]
mod tests;
