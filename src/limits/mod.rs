//! Token buckets and refusal logs: the limits every listener and the login path share (new
//! calls a second, SIP datagrams per source, requests per call, login attempts per station and
//! per source, the media threads' overload), each answering "may this go on?" and counting what
//! it refused.

mod attempts;
mod packets;

pub use attempts::SourceLimiter;
pub use packets::PacketLimiter;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Refusals counted for a log line once a second at most (during a storm).
#[derive(Debug, Default)]
pub struct RefusalLog {
    /// Refused since the last log line, and when that was.
    refused: u64,
    logged_at: Option<std::time::Instant>,
}

impl RefusalLog {
    /// Counts a refusal; returns how many to log when a second has passed since the last log
    /// line.
    pub const fn new() -> RefusalLog {
        RefusalLog {
            refused: 0,
            logged_at: None,
        }
    }

    pub fn refused(&mut self, now: std::time::Instant) -> Option<u64> {
        self.refused += 1;
        match self.logged_at {
            Some(t) if now.saturating_duration_since(t) < Duration::from_secs(1) => None,
            _ => {
                self.logged_at = Some(now);
                Some(std::mem::take(&mut self.refused))
            }
        }
    }
}

/// A token bucket of one second's worth, refilled continuously: at most `rate` at once, then
/// `rate` a second. Used for new calls (`CallRate`), SIP datagrams per source
/// (`PacketLimiter`) and requests per call (`Route`).
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    at: std::time::Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(rate: u32, now: std::time::Instant) -> TokenBucket {
        TokenBucket {
            tokens: f64::from(rate),
            at: now,
        }
    }

    /// Refills for the time since the last take and takes one token if there is one.
    pub fn take(&mut self, rate: u32, now: std::time::Instant) -> bool {
        let rate = f64::from(rate);
        let since = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + since * rate).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether it would be full again by `now` (nothing left to remember).
    pub fn refilled(&self, rate: u32, now: std::time::Instant) -> bool {
        now.saturating_duration_since(self.at).as_secs_f64() * f64::from(rate) + self.tokens
            >= f64::from(rate)
    }
}

/// New calls per second (`[sip] max_calls_per_second`): a `TokenBucket`, one token per call.
#[derive(Debug)]
pub struct CallRate {
    rate: u32,
    bucket: TokenBucket,
    log: RefusalLog,
}

impl CallRate {
    pub fn new(rate: u32, now: std::time::Instant) -> CallRate {
        CallRate {
            rate,
            bucket: TokenBucket::full(rate, now),
            log: RefusalLog::default(),
        }
    }

    /// Whether a new call may start at `now` (always, with no limit); a refusal carries the
    /// refusals to log, once a second (`RefusalLog`).
    pub fn admit(&mut self, now: std::time::Instant) -> Result<(), Option<u64>> {
        if self.rate == 0 || self.bucket.take(self.rate, now) {
            Ok(())
        } else {
            Err(self.log.refused(now))
        }
    }
}

/// Whether the gateway is behind its media schedule (`[sip] refuse_when_overloaded`): the
/// media threads report how late their ticks run; while 100 ms or more of lateness piled up
/// within a second, and for `OVERLOAD_HOLD` after, new calls are refused.
#[derive(Debug)]
pub struct Overload {
    epoch: std::time::Instant,
    /// Milliseconds after `epoch` until which new calls are refused.
    until_ms: AtomicU64,
    /// Calls refused so far (`agentgw_calls_refused_overloaded_total`).
    pub refused: AtomicU64,
}

/// How long new calls are refused after the media threads were last behind.
pub const OVERLOAD_HOLD: Duration = Duration::from_secs(2);

impl Default for Overload {
    fn default() -> Self {
        Overload {
            epoch: std::time::Instant::now(),
            until_ms: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

impl Overload {
    fn ms(&self, t: std::time::Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// The media threads are behind at `now`: refuse new calls until `OVERLOAD_HOLD` later.
    pub fn behind(&self, now: std::time::Instant) {
        self.until_ms.fetch_max(
            self.ms(now) + OVERLOAD_HOLD.as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    /// Whether new calls are refused at `now`.
    pub fn active(&self, now: std::time::Instant) -> bool {
        self.ms(now) < self.until_ms.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
