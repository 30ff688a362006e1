//! The keys of one call: which DTMF methods count, one press reported by two methods taken
//! once, and which methods delivered how many (for the log and the no-DTMF hint).

use crate::login::Outcome;
use crate::media::dtmf::{Digit, DtmfMethod, KeyMerger};
use std::time::Instant;

/// One call's keys.
#[derive(Debug)]
pub struct Keys {
    /// `[dtmf] methods`.
    accepted: Vec<DtmfMethod>,
    merger: KeyMerger,
    count: u32,
    /// Methods that delivered keys, in the order they first did.
    seen: Vec<DtmfMethod>,
}

/// What became of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// A new press, for the flow; `first_by_method`: the first key by its method on this
    /// call (worth a log line).
    Press { digit: Digit, first_by_method: bool },
    /// Another method's report of the last press, or a method not accepted.
    Ignored,
}

impl Keys {
    pub fn new(accepted: &[DtmfMethod]) -> Keys {
        Keys {
            accepted: accepted.to_vec(),
            merger: KeyMerger::default(),
            count: 0,
            seen: Vec::new(),
        }
    }

    /// Takes a key that came by `method` at `now`.
    pub fn take(&mut self, digit: Digit, method: DtmfMethod, now: Instant) -> Taken {
        if !self.accepted.contains(&method) || !self.merger.accept(digit, method, now) {
            return Taken::Ignored;
        }
        self.count += 1;
        let first_by_method = !self.seen.contains(&method);
        if first_by_method {
            self.seen.push(method);
        }
        Taken::Press {
            digit,
            first_by_method,
        }
    }

    /// Keys taken so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The methods that delivered keys, as `rfc4733+info`.
    pub fn methods(&self) -> String {
        self.seen
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join("+")
    }

    /// Whether the call ended with prompts heard and no key at all (and not for want of the
    /// store): the phone's DTMF mode is likely wrong.
    pub fn none_arrived(&self, heard_a_prompt: bool, outcome: Outcome) -> bool {
        self.count == 0 && heard_a_prompt && outcome != Outcome::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_press_reported_by_two_methods_counts_once_and_unaccepted_methods_not_at_all() {
        let t0 = Instant::now();
        let d = |c| Digit::from_char(c).unwrap();
        let mut k = Keys::new(&[DtmfMethod::Rfc4733, DtmfMethod::Info]);
        let first = k.take(d('1'), DtmfMethod::Rfc4733, t0);
        assert_eq!(
            first,
            Taken::Press {
                digit: d('1'),
                first_by_method: true
            }
        );
        // The same press by INFO 100 ms later: once.
        let again = k.take(d('1'), DtmfMethod::Info, t0 + Duration::from_millis(100));
        assert_eq!(again, Taken::Ignored);
        // In-band is not accepted here.
        let inband = k.take(d('2'), DtmfMethod::Inband, t0 + Duration::from_secs(1));
        assert_eq!(inband, Taken::Ignored);
        let by_info = k.take(d('2'), DtmfMethod::Info, t0 + Duration::from_secs(2));
        assert!(matches!(
            by_info,
            Taken::Press {
                first_by_method: true,
                ..
            }
        ));
        assert_eq!((k.count(), k.methods().as_str()), (2, "rfc4733+info"));
        assert!(!k.none_arrived(true, Outcome::LoggedIn));
        let silent = Keys::new(&[DtmfMethod::Rfc4733]);
        assert!(silent.none_arrived(true, Outcome::NoInput));
        assert!(!silent.none_arrived(true, Outcome::Unavailable));
        assert!(!silent.none_arrived(false, Outcome::CallerHungUp));
    }
}
