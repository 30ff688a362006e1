//! G.711 µ-law (PCMU) and A-law (PCMA). Encoding runs once per prompt at load; decoding is a
//! 256-entry table lookup for the in-band detector and the test phone.

/// Encodes one 16-bit linear sample to µ-law (ITU-T G.711, with the 0x84 bias).
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    if s > CLIP {
        s = CLIP;
    }
    s += BIAS;
    let top = ((s >> 7) & 0xFF) as u32;
    let exponent = if top == 0 {
        0
    } else {
        (31 - top.leading_zeros()) as i32
    };
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) | mantissa) as u8
}

/// Decodes one µ-law byte to 16-bit linear.
pub fn ulaw_to_linear(u: u8) -> i16 {
    let u = !u;
    let sign = u & 0x80;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encodes one 16-bit linear sample to A-law.
pub fn linear_to_alaw(sample: i16) -> u8 {
    let mut s = (sample as i32) >> 3; // 13-bit magnitude domain
    let mask = if s >= 0 {
        0xD5
    } else {
        s = -s - 1;
        0x55
    };
    let s = s.min(0xFFF);
    let seg = match s {
        0..=0x1F => 0,
        0x20..=0x3F => 1,
        0x40..=0x7F => 2,
        0x80..=0xFF => 3,
        0x100..=0x1FF => 4,
        0x200..=0x3FF => 5,
        0x400..=0x7FF => 6,
        _ => 7,
    };
    let aval = if seg < 2 {
        (seg << 4) | ((s >> 1) & 0x0F)
    } else {
        (seg << 4) | ((s >> seg) & 0x0F)
    };
    (aval as u8) ^ mask
}

/// Decodes one A-law byte to 16-bit linear.
pub fn alaw_to_linear(a: u8) -> i16 {
    let a = a ^ 0x55;
    let seg = ((a & 0x70) >> 4) as i32;
    let mut t = ((a & 0x0F) as i32) << 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 {
        t as i16
    } else {
        -t as i16
    }
}

/// The µ-law byte for silence.
pub const ULAW_SILENCE: u8 = 0xFF;
/// The A-law byte for silence.
pub const ALAW_SILENCE: u8 = 0xD5;

#[cfg(test)]
#[path = "g711_tests.rs"]
mod tests;
