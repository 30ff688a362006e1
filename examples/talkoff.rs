//! Counts the keys the in-band DTMF detector finds in speech (talk-off): every WAV given
//! (8 kHz mono 16-bit) is sent through a G.711 round trip, µ-law and A-law, as on a call.
//! Run by scripts/talkoff.sh.

use agentgw::media::dtmf::inband::InbandDetector;
use agentgw::media::g711;

fn main() {
    let mut seconds = 0f64;
    let mut false_keys = Vec::new();
    let files: Vec<String> = std::env::args().skip(1).collect();
    for path in &files {
        let reader = match hound::WavReader::open(path) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(2);
            }
        };
        let spec = reader.spec();
        assert!(
            spec.sample_rate == 8000 && spec.channels == 1,
            "{path}: not 8 kHz mono"
        );
        let samples: Vec<i16> = reader.into_samples::<i16>().map_while(Result::ok).collect();
        seconds += samples.len() as f64 / 8000.0;
        let ulaw: Vec<i16> = samples
            .iter()
            .map(|&s| g711::ulaw_to_linear(g711::linear_to_ulaw(s)))
            .collect();
        let alaw: Vec<i16> = samples
            .iter()
            .map(|&s| g711::alaw_to_linear(g711::linear_to_alaw(s)))
            .collect();
        for (codec, audio) in [("PCMU", &ulaw), ("PCMA", &alaw)] {
            let mut d = InbandDetector::new();
            for frame in audio.chunks(160) {
                d.feed(frame, |k| false_keys.push(format!("{path} ({codec}): {k}")));
            }
        }
    }
    for k in &false_keys {
        println!("false key: {k}");
    }
    println!(
        "talk-off: {} false keys in {:.1} minutes of speech ({} files, each through PCMU and PCMA)",
        false_keys.len(),
        seconds / 60.0,
        files.len()
    );
}
