//! Whether a stay line's phone is still there: RTP heard from it, or, after a silence of the
//! line timeout, an answer to a probe in its dialog (a phone on hold sends no audio but
//! answers).

use std::time::{Duration, Instant};

/// A stay line's silence, counted from the last RTP heard or probe answered.
#[derive(Debug)]
pub(super) struct Liveness {
    timeout: Duration,
    heard: u64,
    since: Instant,
}

impl Liveness {
    pub(super) fn new(timeout: Duration, now: Instant) -> Liveness {
        Liveness {
            timeout,
            heard: 0,
            since: now,
        }
    }

    /// With `heard` RTP packets taken from the phone so far: whether the line has been
    /// silent for the whole timeout (time to probe it).
    pub(super) fn silent(&mut self, heard: u64, now: Instant) -> bool {
        if heard != self.heard {
            self.heard = heard;
            self.since = now;
            return false;
        }
        now.duration_since(self.since) >= self.timeout
    }

    /// The phone answered a probe: its silence counts again from now.
    pub(super) fn answered(&mut self, now: Instant) {
        self.since = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_counted_from_the_last_packet_or_answer() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut l = Liveness::new(Duration::from_secs(30), t0);
        assert!(!l.silent(0, t0 + 29 * s));
        assert!(l.silent(0, t0 + 30 * s), "nothing heard for 30 s");
        assert!(!l.silent(5, t0 + 31 * s), "audio again");
        assert!(!l.silent(5, t0 + 60 * s));
        assert!(l.silent(5, t0 + 61 * s));
        l.answered(t0 + 62 * s);
        assert!(!l.silent(5, t0 + 91 * s), "on hold, but it answered");
        assert!(l.silent(5, t0 + 92 * s));
    }
}
