//! The detector against the ITU-T Q.24 receiver figures, on synthesized audio sent through
//! G.711 as on a call.

use super::*;
use crate::media::g711;
use rand::{Rng, SeedableRng};

const KEYS_ALL: &str = "123A456B789C*0#D";
/// About -8 dBm0 per tone.
const AMP: f32 = 9000.0;

fn freqs_of(key: char) -> (f32, f32) {
    for (r, row) in KEYS.iter().enumerate() {
        for (c, k) in row.iter().enumerate() {
            if *k == key {
                return (FREQS[r], FREQS[4 + c]);
            }
        }
    }
    panic!("no key {key}");
}

/// Builds audio from segments: Some((key, ms)) is a tone, None((ms)) silence.
struct Audio {
    samples: Vec<f32>,
}

impl Audio {
    fn new() -> Audio {
        Audio { samples: vec![] }
    }
    fn silence(mut self, ms: usize) -> Audio {
        self.samples.extend(std::iter::repeat_n(0.0, ms * 8));
        self
    }
    fn tone_with(
        mut self,
        key: char,
        ms: usize,
        row_scale: f32,
        col_scale: f32,
        row_amp: f32,
        col_amp: f32,
    ) -> Audio {
        let (fr, fc) = freqs_of(key);
        let (fr, fc) = (fr * row_scale, fc * col_scale);
        let start = self.samples.len();
        for n in 0..ms * 8 {
            let t = (start + n) as f32 / 8000.0;
            let v = row_amp * (2.0 * std::f32::consts::PI * fr * t).sin()
                + col_amp * (2.0 * std::f32::consts::PI * fc * t).sin();
            self.samples.push(v);
        }
        self
    }
    fn tone(self, key: char, ms: usize) -> Audio {
        self.tone_with(key, ms, 1.0, 1.0, AMP, AMP)
    }
    fn noise(mut self, rms: f32, seed: u64) -> Audio {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // Uniform noise of the wanted RMS: amplitude sqrt(3)·rms.
        let a = 3f32.sqrt() * rms;
        for s in &mut self.samples {
            *s += rng.gen_range(-a..a);
        }
        self
    }
    fn ulaw(&self) -> Vec<i16> {
        self.samples
            .iter()
            .map(|&v| g711::ulaw_to_linear(g711::linear_to_ulaw(v.clamp(-32768.0, 32767.0) as i16)))
            .collect()
    }
    fn alaw(&self) -> Vec<i16> {
        self.samples
            .iter()
            .map(|&v| g711::alaw_to_linear(g711::linear_to_alaw(v.clamp(-32768.0, 32767.0) as i16)))
            .collect()
    }
}

fn detect(samples: &[i16]) -> String {
    let mut d = InbandDetector::new();
    let mut out = String::new();
    // Fed in 20 ms frames, as RTP delivers it.
    for frame in samples.chunks(160) {
        d.feed(frame, |k| out.push(k.as_char()));
    }
    out
}

#[test]
fn every_key_at_40_50_and_100_ms_is_detected_once() {
    for ms in [40, 50, 100] {
        for key in KEYS_ALL.chars() {
            for lead in [0, 13, 37, 61] {
                let mut a = Audio::new().silence(30);
                a.samples.extend(std::iter::repeat_n(0.0, lead));
                let a = a.tone(key, ms).silence(60);
                assert_eq!(
                    detect(&a.ulaw()),
                    key.to_string(),
                    "{key} for {ms} ms, lead {lead}"
                );
            }
        }
    }
}

#[test]
fn tones_of_20_and_22_ms_are_rejected() {
    for ms in [20, 22] {
        for key in KEYS_ALL.chars() {
            for lead in [0, 5, 20, 40, 79] {
                let mut a = Audio::new().silence(30);
                a.samples.extend(std::iter::repeat_n(0.0, lead));
                let a = a.tone(key, ms).silence(60);
                assert_eq!(detect(&a.ulaw()), "", "{key} for {ms} ms, lead {lead}");
            }
        }
    }
}

#[test]
fn frequency_deviation_of_1_5_percent_is_accepted_and_3_5_percent_rejected() {
    for key in KEYS_ALL.chars() {
        for (r, c) in [
            (1.015, 1.015),
            (0.985, 0.985),
            (1.015, 0.985),
            (0.985, 1.015),
        ] {
            let a = Audio::new()
                .silence(20)
                .tone_with(key, 60, r, c, AMP, AMP)
                .silence(40);
            assert_eq!(detect(&a.ulaw()), key.to_string(), "{key} at {r}/{c}");
        }
        for dev in [1.035f32, 0.965, 1.05, 0.95] {
            for (r, c) in [(dev, 1.0), (1.0, dev), (dev, dev)] {
                let a = Audio::new()
                    .silence(20)
                    .tone_with(key, 60, r, c, AMP, AMP)
                    .silence(40);
                assert_eq!(detect(&a.ulaw()), "", "{key} at {r}/{c} must be rejected");
            }
        }
    }
}

#[test]
fn twist_of_8_db_normal_and_4_db_reverse_is_accepted() {
    let db = |d: f32| 10f32.powf(d / 20.0);
    for key in KEYS_ALL.chars() {
        // Normal twist: the column (high) tone weaker than the row tone.
        let a = Audio::new()
            .silence(20)
            .tone_with(key, 50, 1.0, 1.0, AMP, AMP / db(8.0))
            .silence(40);
        assert_eq!(detect(&a.ulaw()), key.to_string(), "{key} normal twist");
        // Reverse twist: the row tone weaker.
        let a = Audio::new()
            .silence(20)
            .tone_with(key, 50, 1.0, 1.0, AMP / db(4.0), AMP)
            .silence(40);
        assert_eq!(detect(&a.ulaw()), key.to_string(), "{key} reverse twist");
        // Far beyond: rejected.
        let a = Audio::new()
            .silence(20)
            .tone_with(key, 50, 1.0, 1.0, AMP, AMP / db(16.0))
            .silence(40);
        assert_eq!(detect(&a.ulaw()), "", "{key} 16 dB twist");
    }
}

#[test]
fn white_noise_at_15_db_snr_still_lets_every_key_through() {
    // Signal power of two tones of amplitude AMP: AMP²; noise 15 dB below.
    let noise_rms = (AMP * AMP / 10f32.powf(1.5)).sqrt();
    for (i, key) in KEYS_ALL.chars().enumerate() {
        let a = Audio::new()
            .silence(40)
            .tone(key, 50)
            .silence(60)
            .noise(noise_rms, i as u64);
        assert_eq!(detect(&a.ulaw()), key.to_string(), "{key} in noise");
    }
    // Noise alone gives nothing.
    let a = Audio::new().silence(5000).noise(noise_rms * 3.0, 99);
    assert_eq!(detect(&a.ulaw()), "");
}

#[test]
fn a_40_ms_pause_separates_two_presses_of_one_key() {
    for key in KEYS_ALL.chars() {
        let a = Audio::new()
            .silence(20)
            .tone(key, 45)
            .silence(40)
            .tone(key, 45)
            .silence(40);
        assert_eq!(detect(&a.ulaw()), format!("{key}{key}"), "{key}");
    }
    let a = Audio::new().silence(20);
    let mut a = a;
    for key in "1001#1234#".chars() {
        a = a.tone(key, 50).silence(50);
    }
    assert_eq!(detect(&a.ulaw()), "1001#1234#");
}

#[test]
fn a_law_round_trip_is_detected_too() {
    for key in KEYS_ALL.chars() {
        let a = Audio::new().silence(20).tone(key, 40).silence(40);
        assert_eq!(detect(&a.alaw()), key.to_string(), "{key}");
    }
}

#[test]
fn quiet_tones_are_ignored_and_loud_ones_still_detected() {
    let a = Audio::new()
        .silence(20)
        .tone_with('5', 60, 1.0, 1.0, 20.0, 20.0)
        .silence(40);
    assert_eq!(detect(&a.ulaw()), "");
    let a = Audio::new()
        .silence(20)
        .tone_with('5', 60, 1.0, 1.0, 15000.0, 15000.0)
        .silence(40);
    assert_eq!(detect(&a.ulaw()), "5");
}

#[test]
fn a_long_press_is_one_key_and_a_pause_in_noise_still_separates_keys() {
    let a = Audio::new().silence(20).tone('7', 800).silence(40);
    assert_eq!(detect(&a.ulaw()), "7");
    let noise_rms = (AMP * AMP / 10f32.powf(1.5)).sqrt();
    let a = Audio::new()
        .silence(20)
        .tone('9', 50)
        .silence(40)
        .tone('9', 50)
        .silence(40)
        .noise(noise_rms, 7);
    assert_eq!(detect(&a.ulaw()), "99");
}
