use super::*;
use std::time::Duration;

#[test]
fn new_calls_per_second_allow_a_seconds_burst_then_the_rate() {
    let t0 = std::time::Instant::now();
    let mut r = CallRate::new(10, t0);
    // A second's worth at once, then nothing until tokens come back.
    assert!((0..10).all(|_| r.admit(t0).is_ok()));
    assert!(r.admit(t0).is_err());
    // 100 ms later: one more (10 a second).
    let t1 = t0 + Duration::from_millis(100);
    assert!(r.admit(t1).is_ok());
    assert!(r.admit(t1).is_err());
    // After a long quiet spell, still only a second's burst.
    let t2 = t1 + Duration::from_secs(60);
    assert_eq!((0..100).filter(|_| r.admit(t2).is_ok()).count(), 10);
    // Refusals are logged once a second with their count (a fresh bucket: `admit` above
    // counted its own).
    let mut r = CallRate::new(10, t2);
    assert_eq!(r.log.refused(t2), Some(1));
    assert_eq!(r.log.refused(t2 + Duration::from_millis(10)), None);
    assert_eq!(r.log.refused(t2 + Duration::from_millis(20)), None);
    assert_eq!(r.log.refused(t2 + Duration::from_millis(1010)), Some(3));
    // 0: no limit.
    let mut none = CallRate::new(0, t0);
    assert!((0..10_000).all(|_| none.admit(t0).is_ok()));
}

#[test]
fn overload_refuses_for_two_seconds_after_the_last_report() {
    let o = Overload::default();
    let t0 = std::time::Instant::now() + Duration::from_secs(5);
    assert!(!o.active(t0));
    o.behind(t0);
    assert!(o.active(t0 + Duration::from_millis(1999)));
    assert!(!o.active(t0 + Duration::from_millis(2001)));
    // Reported again: refused until 2 s after that; an older report does not shorten it.
    o.behind(t0 + Duration::from_secs(1));
    o.behind(t0);
    assert!(o.active(t0 + Duration::from_millis(2999)));
    assert!(!o.active(t0 + Duration::from_millis(3001)));
}
