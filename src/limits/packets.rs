//! SIP datagrams per second from one source (`[sip] max_packets_per_second_per_source`),
//! checked before the SIP stack parses them, as Kamailio's pike module does. A request
//! over UDP made a server transaction that the stack kept for 32 s (Timer J) after the
//! answer, about 1.6 KiB each: without a limit a flood of OPTIONS at 125,000/s took an idle
//! gateway from 25 to 415 MB in 10 s. Requests outside a call are answered statelessly now
//! (`spawn_reply`), so what the limit bounds is mostly the CPU a source can take.

use super::{RefusalLog, TokenBucket};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::warn;

/// Sources remembered at most; past it (a flood from many addresses) the new ones share one
/// budget.
const MAX_SOURCES: usize = 65_536;

/// The per-source budgets; shared with the metrics.
#[derive(Debug, Default)]
pub struct PacketLimiter {
    state: Mutex<LimiterState>,
    /// Datagrams dropped for the limit (`agentgw_sip_packets_dropped_total`).
    pub dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct LimiterState {
    /// Datagrams a second per source; 0: no limit.
    rate: u32,
    sources: HashMap<IpAddr, TokenBucket>,
    /// For sources past `MAX_SOURCES`.
    shared: Option<TokenBucket>,
    pruned_at: Option<Instant>,
    log: RefusalLog,
}

impl PacketLimiter {
    /// Sets the rate (0: no limit); the buckets start over.
    pub fn set_rate(&self, rate: u32) {
        let mut s = self.lock();
        if s.rate != rate {
            s.rate = rate;
            s.sources.clear();
            s.shared = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Whether a datagram from `source` may go on to the SIP stack; a dropped one is
    /// counted, and logged once a second with the count.
    pub fn allow(&self, source: IpAddr, now: Instant) -> bool {
        let mut s = self.lock();
        let rate = s.rate;
        if rate == 0 {
            return true;
        }
        // Forget the sources whose budget is whole again, every 10 s.
        if s.pruned_at
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(10))
        {
            s.pruned_at = Some(now);
            s.sources.retain(|_, b| !b.refilled(rate, now));
            if s.sources.capacity() > 4 * s.sources.len().max(1024) {
                s.sources.shrink_to_fit();
            }
        }
        let ok = if let Some(b) = s.sources.get_mut(&source) {
            b.take(rate, now)
        } else if s.sources.len() < MAX_SOURCES {
            let mut b = TokenBucket::full(rate, now);
            let ok = b.take(rate, now);
            s.sources.insert(source, b);
            ok
        } else {
            s.shared
                .get_or_insert_with(|| TokenBucket::full(rate, now))
                .take(rate, now)
        };
        if !ok {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if let Some(n) = s.log.refused(now) {
                warn!(%source, dropped = n, rate, "SIP datagrams dropped: over [sip] max_packets_per_second_per_source");
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_gets_a_second_of_packets_refilled_continuously() {
        let l = PacketLimiter::default();
        let t0 = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        // No limit by default.
        assert!((0..10_000).all(|_| l.allow(a, t0)));
        l.set_rate(100);
        assert_eq!((0..150).filter(|_| l.allow(a, t0)).count(), 100);
        assert_eq!(l.dropped.load(Ordering::Relaxed), 50);
        // Another source has its own budget.
        assert_eq!((0..150).filter(|_| l.allow(b, t0)).count(), 100);
        // 100 ms later: 10 more.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!((0..50).filter(|_| l.allow(a, t1)).count(), 10);
        // Sources whose budget is whole again are forgotten at the next prune.
        let t2 = t0 + Duration::from_secs(11);
        assert!(l.allow(b, t2));
        assert_eq!(l.lock().sources.len(), 1);
    }

    #[test]
    fn sources_past_the_table_share_one_budget() {
        let l = PacketLimiter::default();
        l.set_rate(5);
        let t0 = Instant::now();
        for i in 0..MAX_SOURCES as u32 {
            assert!(l.allow(IpAddr::from(i.to_be_bytes()), t0));
        }
        let passed = (0..20u32)
            .filter(|i| l.allow(IpAddr::from((u32::MAX - i).to_be_bytes()), t0))
            .count();
        assert_eq!(passed, 5);
        assert_eq!(l.lock().sources.len(), MAX_SOURCES);
    }
}
