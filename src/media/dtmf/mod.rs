//! DTMF keys from every source, as one stream of `Digit`s.

pub mod inband;
pub mod info;
pub mod rfc4733;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

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

/// How a key reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtmfMethod {
    /// RFC 4733 telephone-events in the RTP stream.
    Rfc4733,
    /// SIP INFO requests.
    Info,
    /// Tones in the audio.
    Inband,
}

impl DtmfMethod {
    pub const ALL: [DtmfMethod; 3] = [DtmfMethod::Rfc4733, DtmfMethod::Info, DtmfMethod::Inband];

    pub fn as_str(self) -> &'static str {
        match self {
            DtmfMethod::Rfc4733 => "rfc4733",
            DtmfMethod::Info => "info",
            DtmfMethod::Inband => "inband",
        }
    }
}

impl fmt::Display for DtmfMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DtmfMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DtmfMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| format!("{s:?} is not one of rfc4733, info, inband"))
    }
}

/// A key reported by a second method within this time of the same key from another method is
/// the same press (a phone sending RFC 4733 and INFO, or events and audible tones).
pub const SAME_PRESS_WINDOW: Duration = Duration::from_millis(500);

/// Merges the keys of every method of one call into one stream, each press once.
#[derive(Debug, Default)]
pub struct KeyMerger {
    /// The last key accepted, by which method, and when.
    last: Option<(Digit, DtmfMethod, Instant)>,
}

impl KeyMerger {
    /// Whether this key is a new press (true) or another method's report of the last one.
    pub fn accept(&mut self, digit: Digit, method: DtmfMethod, now: Instant) -> bool {
        if let Some((d, m, at)) = self.last {
            if d == digit && m != method && now.saturating_duration_since(at) < SAME_PRESS_WINDOW {
                return false;
            }
        }
        self.last = Some((digit, method, now));
        true
    }
}

/// Keys received, by method, for the whole process (exported by /metrics later).
#[derive(Debug, Default)]
pub struct DtmfCounters {
    counts: [AtomicU64; 3],
}

impl DtmfCounters {
    pub fn add(&self, method: DtmfMethod) {
        self.counts[method as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, method: DtmfMethod) -> u64 {
        self.counts[method as usize].load(Ordering::Relaxed)
    }
}

impl<'de> serde::Deserialize<'de> for DtmfMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for DtmfMethod {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
#[path = "dtmf_tests.rs"]
mod tests;
