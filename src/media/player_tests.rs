use super::*;
use crate::media::prompts::Catalog;

#[test]
fn plays_every_frame_then_reports_done_then_silence() {
    let c = Catalog::load(None).unwrap();
    let prompt = c.get(PromptId::Goodbye);
    let n = prompt.pcmu.len();
    let mut p = Player::new(Codec::Pcmu);
    p.play(PromptId::Goodbye, prompt.clone());
    let mut out = [0u8; 160];
    for i in 0..n {
        let done = p.next_frame(&mut out);
        assert_eq!(out, prompt.pcmu[i]);
        assert_eq!(done.is_some(), i == n - 1);
    }
    assert_eq!(p.next_frame(&mut out), None);
    assert_eq!(&out, Codec::Pcmu.silence());
}

#[test]
fn stop_cuts_the_prompt() {
    let c = Catalog::load(None).unwrap();
    let mut p = Player::new(Codec::Pcma);
    p.play(PromptId::AgentUser, c.get(PromptId::AgentUser));
    assert_eq!(p.stop(), Some(PromptId::AgentUser));
    let mut out = [0u8; 160];
    assert_eq!(p.next_frame(&mut out), None);
    assert_eq!(&out, Codec::Pcma.silence());
}
