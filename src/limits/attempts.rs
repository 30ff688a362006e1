//! Login attempts per minute per calling station and per source address, across calls.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Login attempts per minute from one source (an address, or a calling station), across
/// calls: enough for people, too few to enumerate agent numbers or spray passcodes.
#[derive(Debug)]
pub struct SourceLimiter {
    per_minute: u32,
    /// Source (by a keyed 64-bit hash of its name: 8 bytes instead of a string per source,
    /// and no allocation per new one) → (start of its current minute, attempts in it).
    /// Bounded by `MAX_SOURCES`; minutes that ended are dropped once a minute.
    seen: HashMap<u64, (Instant, u32)>,
    keys: std::collections::hash_map::RandomState,
    last_prune: Option<Instant>,
}

/// Sources remembered at once; past it, the oldest minutes are forgotten first.
const MAX_SOURCES: usize = 100_000;

impl SourceLimiter {
    pub fn new(per_minute: u32) -> SourceLimiter {
        SourceLimiter {
            per_minute,
            seen: HashMap::new(),
            keys: std::collections::hash_map::RandomState::new(),
            last_prune: None,
        }
    }

    /// How many sources it remembers now.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }

    /// Counts an attempt from `source`; false when it is over the limit.
    pub fn allow(&mut self, source: &str, now: Instant) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let minute = Duration::from_secs(60);
        let due = self
            .last_prune
            .is_none_or(|t| now.saturating_duration_since(t) >= minute);
        if due || self.seen.len() >= MAX_SOURCES {
            self.seen
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < minute);
            // A storm of new stations (a load test, a shift start on a large PBX) leaves the
            // table at its peak size; once the stations are forgotten, give the memory back.
            if self.seen.capacity() > 4 * self.seen.len().max(256) {
                self.seen.shrink_to(2 * self.seen.len());
            }
            self.last_prune = Some(now);
        }
        let key = std::hash::BuildHasher::hash_one(&self.keys, source);
        let entry = self.seen.entry(key).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        entry.1 += 1;
        entry.1 <= self.per_minute
    }

    /// Whether `source` has used up its minute, without counting an attempt.
    pub fn spent(&self, source: &str, now: Instant) -> bool {
        let key = std::hash::BuildHasher::hash_one(&self.keys, source);
        self.per_minute > 0
            && self.seen.get(&key).is_some_and(|(start, n)| {
                now.saturating_duration_since(*start) < Duration::from_secs(60)
                    && *n >= self.per_minute
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_over_its_attempts_per_minute_is_refused_until_the_minute_ends() {
        let mut l = SourceLimiter::new(3);
        let ip = "192.0.2.9";
        let other = "192.0.2.10";
        let t0 = Instant::now();
        assert!(l.allow(ip, t0) && l.allow(ip, t0) && l.allow(ip, t0));
        assert!(!l.allow(ip, t0 + Duration::from_secs(10)));
        assert!(l.allow(other, t0 + Duration::from_secs(10)));
        assert!(l.allow(ip, t0 + Duration::from_secs(61)));
        // Looking does not count.
        let mut l = SourceLimiter::new(2);
        assert!(!l.spent(ip, t0));
        assert!(l.allow(ip, t0) && !l.spent(ip, t0) && l.allow(ip, t0));
        assert!(l.spent(ip, t0) && l.spent(ip, t0 + Duration::from_secs(59)));
        assert!(!l.spent(ip, t0 + Duration::from_secs(60)));
    }

    #[test]
    fn sources_whose_minute_ended_are_forgotten_within_a_minute() {
        // One station per call (a load generator, a large PBX): the map must not grow for ever.
        let mut l = SourceLimiter::new(10);
        let t0 = Instant::now();
        for i in 0..1000 {
            l.allow(&format!("station-{i}"), t0);
        }
        assert_eq!(l.remembered(), 1000);
        let peak = l.seen.capacity();
        l.allow("one-more", t0 + Duration::from_secs(61));
        assert_eq!(l.remembered(), 1);
        // And the table itself shrinks: the memory of the storm goes back.
        assert!(
            l.seen.capacity() < peak / 10,
            "{} of {peak}",
            l.seen.capacity()
        );
    }
}
