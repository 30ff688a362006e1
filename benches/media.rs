//! Micro-benchmarks of the per-packet media paths.

use agentgw::media::dtmf::inband::InbandDetector;
use agentgw::media::dtmf::rfc4733::{self, EventReceiver};
use agentgw::media::dtmf::Digit;
use agentgw::media::g711;
use agentgw::media::prompts::{Catalog, Codec, PromptId};
use agentgw::media::rtp::RtpWriter;
use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn inband(c: &mut Criterion) {
    // A prompt's audio (speech-like), decoded from µ-law as it arrives on a call.
    let catalog = Catalog::load(None).expect("prompts");
    let frames = catalog
        .get(PromptId::AgentUser)
        .frames(Codec::Pcmu)
        .to_vec();
    let audio: Vec<[i16; 160]> = frames
        .iter()
        .map(|f| {
            let mut out = [0i16; 160];
            for (o, &b) in out.iter_mut().zip(f.iter()) {
                *o = g711::ulaw_to_linear(b);
            }
            out
        })
        .collect();
    let mut d = InbandDetector::new();
    let mut i = 0;
    c.bench_function("inband_detector_20ms_frame", |b| {
        b.iter(|| {
            d.feed(black_box(&audio[i % audio.len()]), |k| {
                black_box(k);
            });
            i += 1;
        })
    });
    let silence = [0i16; 160];
    c.bench_function("inband_detector_20ms_silence", |b| {
        b.iter(|| {
            d.feed(black_box(&silence), |k| {
                black_box(k);
            })
        })
    });
}

fn rtp(c: &mut Criterion) {
    let catalog = Catalog::load(None).expect("prompts");
    let frame = catalog.get(PromptId::AgentUser).frames(Codec::Pcmu)[10];
    let mut w = RtpWriter::default();
    c.bench_function("rtp_packet_from_prompt_frame", |b| {
        b.iter(|| {
            black_box(w.packet(0, black_box(&frame), 160).len());
        })
    });
    let mut r = EventReceiver::default();
    let payload = rfc4733::encode(Digit::from_char('5').expect("digit"), false, 160);
    let mut ts = 0u32;
    c.bench_function("rfc4733_event_parse", |b| {
        b.iter(|| {
            ts = ts.wrapping_add(1);
            black_box(r.on_packet(1, ts, black_box(&payload)));
        })
    });
}

/// A whole login through the flow (sans-IO): start, 10 keys, the store's answer, the prompts'
/// ends; every action drained. What one call costs the gateway outside SIP, RTP and the store.
fn login_flow(c: &mut Criterion) {
    use agentgw::login::{CheckOutcome, Flow, FlowConfig, Input};
    use agentgw::media::dtmf::Digit;
    use agentgw::media::prompts::PromptId;
    use std::time::{Duration, Instant};
    let cfg = FlowConfig {
        max_attempts: 3,
        digit_timeout: Duration::from_secs(5),
        first_digit_timeout: Duration::from_secs(10),
        max_digits: 16,
        stay: false,
        ask_extension: false,
    };
    let keys: Vec<Digit> = "1001#1234#".chars().filter_map(Digit::from_char).collect();
    let now = Instant::now();
    c.bench_function("login_flow_whole_call", |b| {
        b.iter(|| {
            let mut f = Flow::new(cfg.clone());
            let mut n = 0;
            let mut drain = |f: &mut Flow| {
                while let Some(a) = f.poll_action() {
                    black_box(a);
                    n += 1;
                }
            };
            f.handle(Input::Started, now);
            drain(&mut f);
            f.handle(Input::PromptDone(PromptId::AgentUser), now);
            for (i, k) in keys.iter().enumerate() {
                f.handle(Input::Digit(*k), now);
                if i == 4 {
                    f.handle(Input::PromptDone(PromptId::AgentPass), now);
                }
                drain(&mut f);
            }
            f.handle(Input::CheckResult(CheckOutcome::LoggedIn), now);
            f.handle(Input::PromptDone(PromptId::AgentLoginOk), now);
            f.handle(Input::PromptDone(PromptId::Goodbye), now);
            drain(&mut f);
            n
        })
    });
}

criterion_group!(benches, inband, rtp, login_flow);
criterion_main!(benches);
