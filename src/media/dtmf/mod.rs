//! DTMF keys from every source, as one stream of `Digit`s.

pub mod inband;
pub mod rfc4733;

use std::fmt;

/// One telephone keypad key: `0`-`9`, `*`, `#`, `A`-`D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digit(char);

impl Digit {
    /// A key from its character; `None` for anything that is not a keypad key.
    pub fn from_char(c: char) -> Option<Digit> {
        let c = c.to_ascii_uppercase();
        matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(Digit(c))
    }

    /// A key from its RFC 4733 event code (0-15).
    pub fn from_event(code: u8) -> Option<Digit> {
        const KEYS: &[u8; 16] = b"0123456789*#ABCD";
        KEYS.get(code as usize).map(|&k| Digit(k as char))
    }

    /// The RFC 4733 event code of this key.
    pub fn event_code(self) -> u8 {
        match self.0 {
            '*' => 10,
            '#' => 11,
            'A'..='D' => 12 + (self.0 as u8 - b'A'),
            d => d as u8 - b'0',
        }
    }

    pub fn as_char(self) -> char {
        self.0
    }
}

impl fmt::Display for Digit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
#[path = "dtmf_tests.rs"]
mod tests;
