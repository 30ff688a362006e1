//! In-band DTMF: a Goertzel detector on decoded G.711 audio, meant to meet the ITU-T Q.24
//! receiver figures: tones of 40 ms and more detected, under 23 ms rejected; frequency
//! deviation up to ±1.5% accepted, beyond ±3.5% rejected; twist up to 8 dB (normal) and 4 dB
//! (reverse) accepted; 15 dB signal-to-noise accepted; a 40 ms pause separates two keys.
//!
//! Audio is cut into 5 ms sub-blocks (40 samples); each computes the DFT at the eight DTMF
//! frequencies at once (a Goertzel-style single-bin DFT, one array lane per frequency, from a
//! table of cos/sin so that the loop vectorises and no sample waits on the previous one). Every 5 ms the last four sub-blocks
//! are combined, by rotating their DFT values, into the DFT of a 20 ms window: 50 Hz bins that
//! separate the row tones, at a 5 ms step, for the cost of one pass over the audio.
//!
//! A window is a candidate key when one row and one column tone carry most of its energy, each
//! clearly above the other tones of its group, within the twist limits. A key is reported once
//! consecutive candidate windows show tone frequencies within 2.5% of the nominal ones
//! (measured from the phase advance between windows) and the audio has held a steady level
//! for seven sub-blocks (35 ms: a 23 ms tone never fills more than five), and the two tones,
//! corrected for how far off their bin centre they are, carry 80% of the energy (speech
//! rarely does: zero false keys in 41 minutes of synthesized speech, see BENCHMARKS.md).
//! Sans-IO: feed samples, get keys.

use super::Digit;

const RATE: f32 = 8000.0;
/// Samples per sub-block (5 ms): the step between analysis windows.
pub const SUB_BLOCK: usize = 40;
/// Sub-blocks per analysis window (20 ms).
const WINDOW_SUBS: usize = 4;
/// Samples per analysis window.
const WINDOW: usize = SUB_BLOCK * WINDOW_SUBS;
const FREQS: [f32; 8] = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// Consecutive candidate windows of one key, measured on frequency, before it is reported.
const WINDOWS_TO_REPORT: u8 = 4;
/// Consecutive sub-blocks of steady energy before a key is reported (35 ms of tone).
const SUBS_TO_REPORT: u8 = 7;
/// Sub-block energy below which audio is silence (about -45 dBm0).
const MIN_SUB_ENERGY: f32 = 20.0 * 20.0 * SUB_BLOCK as f32;
/// Tone power below which a window is silence: about -36 dBm0 per tone for 16-bit G.711.
const MIN_TONE_POWER: f32 = (40.0 * WINDOW as f32 / 2.0) * (40.0 * WINDOW as f32 / 2.0);
/// Share of the window energy the two tones must carry, as measured in their bins.
const MIN_TONE_SHARE: f32 = 0.5;
/// The same share once the bin loss of an off-centre tone is corrected (see `pure`).
const MIN_PURE_SHARE: f32 = 0.8;
/// How much stronger the chosen tone must be than the next one of its group (6 dB).
const MIN_GROUP_MARGIN: f32 = 4.0;
/// Twist limits as power ratios, a little beyond Q.24's 8 dB normal / 4 dB reverse.
const MAX_NORMAL_TWIST: f32 = 7.94; // 9 dB: column weaker than row
const MAX_REVERSE_TWIST: f32 = 3.16; // 5 dB: row weaker than column
/// Allowed frequency deviation (Q.24: accept 1.5%, reject 3.5%).
const MAX_DEVIATION: f32 = 0.02;
/// Energy change that ends a run of steady sub-blocks (3 dB).
const MAX_STEP: f32 = 2.0;

type Complex = (f32, f32);

fn mul(a: Complex, b: Complex) -> Complex {
    (a.0 * b.0 - a.1 * b.1, a.0 * b.1 + a.1 * b.0)
}

/// Per-frequency constants.
struct Coeffs {
    /// cos(ωn) and sin(ωn) for n in a sub-block, one lane per frequency: the sub-block DFT is a
    /// plain multiply-add per sample with no dependency between samples but the sum.
    cos: [[f32; 8]; SUB_BLOCK],
    sin: [[f32; 8]; SUB_BLOCK],
    /// e^{-jω·SUB_BLOCK}: the rotation of one sub-block later.
    step: [Complex; 8],
    /// Phase advance of each nominal frequency over one sub-block, in radians mod 2π.
    advance: [f32; 8],
}

fn coeffs() -> &'static Coeffs {
    static C: std::sync::OnceLock<Coeffs> = std::sync::OnceLock::new();
    C.get_or_init(|| {
        let mut c = Coeffs {
            cos: [[0.0; 8]; SUB_BLOCK],
            sin: [[0.0; 8]; SUB_BLOCK],
            step: [(0.0, 0.0); 8],
            advance: [0.0; 8],
        };
        for (k, f) in FREQS.iter().enumerate() {
            let w = 2.0 * std::f64::consts::PI * *f as f64 / RATE as f64;
            for n in 0..SUB_BLOCK {
                c.cos[n][k] = (w * n as f64).cos() as f32;
                c.sin[n][k] = (w * n as f64).sin() as f32;
            }
            let st = -w * SUB_BLOCK as f64;
            c.step[k] = (st.cos() as f32, st.sin() as f32);
            let cycles = f * SUB_BLOCK as f32 / RATE;
            c.advance[k] = 2.0 * std::f32::consts::PI * (cycles - cycles.floor());
        }
        c
    })
}

/// The tones of one window.
#[derive(Debug, Clone, Copy, Default)]
struct Tones {
    row: usize,
    col: usize,
    /// DFT values of the row and column tones (for the frequency check).
    row_x: Complex,
    col_x: Complex,
    row_p: f32,
    col_p: f32,
    /// Energy of the window.
    energy: f32,
}

/// Detects DTMF keys in 8 kHz linear audio.
#[derive(Debug)]
pub struct InbandDetector {
    /// DFT sums (real, imaginary) of the sub-block being filled.
    re: [f32; 8],
    im: [f32; 8],
    energy: f32,
    filled: usize,
    /// DFT values and energies of the last sub-blocks, oldest first once full.
    subs: [[Complex; 8]; WINDOW_SUBS],
    sub_energy: [f32; WINDOW_SUBS],
    /// Sub-blocks seen, to know when a whole window is available and where the ring starts.
    seen: u64,
    /// Sub-blocks of steady energy so far (the tone's duration), and their peak energy.
    run: u8,
    run_peak: f32,
    /// The candidate key and how many windows it has lasted on frequency.
    current: Option<(char, u8)>,
    last_tones: Option<Tones>,
    /// Whether the key being held was reported (it is not reported twice).
    reported: bool,
}

impl Default for InbandDetector {
    fn default() -> Self {
        InbandDetector::new()
    }
}

impl InbandDetector {
    pub fn new() -> InbandDetector {
        InbandDetector {
            re: [0.0; 8],
            im: [0.0; 8],
            energy: 0.0,
            filled: 0,
            subs: [[(0.0, 0.0); 8]; WINDOW_SUBS],
            sub_energy: [0.0; WINDOW_SUBS],
            seen: 0,
            run: 0,
            run_peak: 0.0,
            current: None,
            last_tones: None,
            reported: false,
        }
    }

    /// Feeds audio and calls `on_key` for each key recognised.
    pub fn feed(&mut self, samples: &[i16], mut on_key: impl FnMut(Digit)) {
        let c = coeffs();
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (SUB_BLOCK - self.filled).min(rest.len());
            let (chunk, tail) = rest.split_at(take);
            rest = tail;
            let (mut re, mut im, mut energy) = (self.re, self.im, self.energy);
            for (i, &v) in chunk.iter().enumerate() {
                let v = v as f32;
                let n = self.filled + i;
                energy += v * v;
                for k in 0..8 {
                    re[k] += v * c.cos[n][k];
                    im[k] -= v * c.sin[n][k];
                }
            }
            self.filled += take;
            if self.filled < SUB_BLOCK {
                (self.re, self.im, self.energy) = (re, im, energy);
                continue;
            }
            let slot = (self.seen % WINDOW_SUBS as u64) as usize;
            for k in 0..8 {
                self.subs[slot][k] = (re[k], im[k]);
            }
            self.sub_energy[slot] = energy;
            self.seen += 1;
            self.track_run(energy);
            (self.re, self.im, self.energy, self.filled) = ([0.0; 8], [0.0; 8], 0.0, 0);
            if self.seen >= WINDOW_SUBS as u64 {
                if let Some(d) = self.window() {
                    on_key(d);
                }
            }
        }
    }

    /// Measures how long the audio has kept a steady level, in sub-blocks: a tone's duration.
    /// A sub-block only partly filled by the tone starts no run (the next full one is more
    /// than twice as strong), so a 23 ms tone never reaches seven.
    /// A drop in level (silence, or the pause between keys in noise) also ends the key held, so
    /// the next tone is a new key even if it is the same key.
    fn track_run(&mut self, energy: f32) {
        if energy < MIN_SUB_ENERGY || energy * MAX_STEP < self.run_peak {
            self.reported = false;
        }
        if energy < MIN_SUB_ENERGY {
            self.run = 0;
            self.run_peak = 0.0;
        } else if self.run > 0
            && energy * MAX_STEP >= self.run_peak
            && energy <= self.run_peak * MAX_STEP
        {
            self.run = self.run.saturating_add(1);
            self.run_peak = self.run_peak.max(energy);
        } else {
            self.run = 1;
            self.run_peak = energy;
        }
    }

    /// Analyses the window made of the last four sub-blocks.
    fn window(&mut self) -> Option<Digit> {
        let c = coeffs();
        let oldest = (self.seen % WINDOW_SUBS as u64) as usize;
        let mut x = [(0f32, 0f32); 8];
        for (k, xk) in x.iter_mut().enumerate() {
            let mut rot = (1.0, 0.0);
            for m in 0..WINDOW_SUBS {
                let d = mul(self.subs[(oldest + m) % WINDOW_SUBS][k], rot);
                xk.0 += d.0;
                xk.1 += d.1;
                rot = mul(rot, c.step[k]);
            }
        }
        let energy: f32 = self.sub_energy.iter().sum();
        match analyse(&x, energy) {
            Some(t) => self.on_candidate(t),
            None => {
                self.current = None;
                self.last_tones = None;
                None
            }
        }
    }

    fn on_candidate(&mut self, t: Tones) -> Option<Digit> {
        let key = KEYS[t.row][t.col - 4];
        let continues = match (self.current, self.last_tones) {
            (Some((k, _)), Some(prev)) => {
                k == key && on_frequency(&prev, &t).is_some_and(|(dr, dc)| pure(&t, dr, dc))
            }
            _ => false,
        };
        if self.current.is_some_and(|(k, _)| k != key) {
            // Another key straight after this one, without a pause.
            self.reported = false;
        }
        let n = if continues {
            self.current.map_or(1, |(_, n)| n.saturating_add(1))
        } else {
            1
        };
        self.current = Some((key, n));
        self.last_tones = Some(t);
        if n >= WINDOWS_TO_REPORT && self.run >= SUBS_TO_REPORT && !self.reported {
            self.reported = true;
            return Digit::from_char(key);
        }
        None
    }
}

/// How far (in Hz) each tone is from its nominal frequency, measured from how far it turned in
/// phase over one sub-block; `None` when either is off by more than the allowed deviation.
fn on_frequency(prev: &Tones, now: &Tones) -> Option<(f32, f32)> {
    let c = coeffs();
    let off_hz = |k: usize, a: Complex, b: Complex| {
        // Phase of b · conj(a): how far the tone turned over one sub-block.
        let re = b.0 * a.0 + b.1 * a.1;
        let im = b.1 * a.0 - b.0 * a.1;
        let mut off = im.atan2(re) - c.advance[k];
        while off > std::f32::consts::PI {
            off -= 2.0 * std::f32::consts::PI;
        }
        while off < -std::f32::consts::PI {
            off += 2.0 * std::f32::consts::PI;
        }
        off * RATE / (2.0 * std::f32::consts::PI * SUB_BLOCK as f32)
    };
    let dr = off_hz(now.row, prev.row_x, now.row_x);
    let dc = off_hz(now.col, prev.col_x, now.col_x);
    (dr.abs() <= MAX_DEVIATION * FREQS[now.row] && dc.abs() <= MAX_DEVIATION * FREQS[now.col])
        .then_some((dr, dc))
}

/// Whether the two tones, their power corrected for how far off the bin centre they are, carry
/// nearly all of the window's energy: true of DTMF, rarely of speech.
fn pure(t: &Tones, row_off_hz: f32, col_off_hz: f32) -> bool {
    let bin_hz = RATE / WINDOW as f32;
    let loss = |off_hz: f32| {
        let x = std::f32::consts::PI * off_hz / bin_hz;
        if x.abs() < 1e-3 {
            1.0
        } else {
            (x.sin() / x).powi(2).max(0.05)
        }
    };
    let tone_energy =
        2.0 * (t.row_p / loss(row_off_hz) + t.col_p / loss(col_off_hz)) / WINDOW as f32;
    tone_energy >= MIN_PURE_SHARE * t.energy
}

/// The per-window tests on the eight DFT values and the window energy.
fn analyse(x: &[Complex; 8], energy: f32) -> Option<Tones> {
    let mut power = [0f32; 8];
    for k in 0..8 {
        power[k] = x[k].0 * x[k].0 + x[k].1 * x[k].1;
    }
    let (row, row_p, row_next) = strongest(&power[..4]);
    let (col, col_p, col_next) = strongest(&power[4..]);
    let col = col + 4;
    if row_p < MIN_TONE_POWER || col_p < MIN_TONE_POWER {
        return None;
    }
    if row_p < MIN_GROUP_MARGIN * row_next || col_p < MIN_GROUP_MARGIN * col_next {
        return None;
    }
    if col_p * MAX_NORMAL_TWIST < row_p || row_p * MAX_REVERSE_TWIST < col_p {
        return None;
    }
    // A tone of amplitude A over N samples has |X|² = (A·N/2)² and energy A²·N/2.
    let tone_energy = 2.0 * (row_p + col_p) / WINDOW as f32;
    if tone_energy < MIN_TONE_SHARE * energy {
        return None;
    }
    Some(Tones {
        row,
        col,
        row_x: x[row],
        col_x: x[col],
        row_p,
        col_p,
        energy,
    })
}

/// Index and power of the strongest entry, and the power of the runner-up.
fn strongest(p: &[f32]) -> (usize, f32, f32) {
    let mut best = 0;
    for k in 1..p.len() {
        if p[k] > p[best] {
            best = k;
        }
    }
    let next = p
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != best)
        .map(|(_, v)| *v)
        .fold(0f32, f32::max);
    (best, p[best], next)
}

#[cfg(test)]
#[path = "inband_tests.rs"]
mod tests;
