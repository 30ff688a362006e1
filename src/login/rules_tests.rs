//! The rules, decision by decision.

use super::*;

fn holdings(agent_station: Option<&str>, station_agent: Option<&str>) -> Holdings {
    Holdings {
        agent_station: agent_station.map(String::from),
        station_agent: station_agent.map(String::from),
    }
}

use AlreadyLoggedOnPolicy as A;
use SameStationPolicy as S;

#[test]
fn a_free_agent_at_a_free_station_claims() {
    let d = decide_claim("1001", &holdings(None, None), A::Reject, S::Reject, false);
    assert_eq!(d, ClaimDecision::Claim { end: vec![] });
}

#[test]
fn already_logged_on_under_each_policy() {
    let h = holdings(Some("a@pbx"), None);
    assert_eq!(
        decide_claim("1001", &h, A::Reject, S::Reject, false),
        ClaimDecision::AlreadyLoggedOn
    );
    assert_eq!(
        decide_claim("1001", &h, A::Confirm, S::Reject, false),
        ClaimDecision::AskToReplace
    );
    let moved = ClaimDecision::Claim {
        end: vec![("1001".into(), REASON_MOVED)],
    };
    assert_eq!(decide_claim("1001", &h, A::Confirm, S::Reject, true), moved);
    assert_eq!(
        decide_claim("1001", &h, A::Replace, S::Reject, false),
        moved
    );
    // Reject stays reject even if a confirmation is claimed.
    assert_eq!(
        decide_claim("1001", &h, A::Reject, S::Reject, true),
        ClaimDecision::AlreadyLoggedOn
    );
}

#[test]
fn one_agent_per_station() {
    let h = holdings(None, Some("1002"));
    assert_eq!(
        decide_claim("1001", &h, A::Reject, S::Reject, false),
        ClaimDecision::StationInUse
    );
    assert_eq!(
        decide_claim("1001", &h, A::Reject, S::Replace, false),
        ClaimDecision::Claim {
            end: vec![("1002".into(), REASON_STATION_TAKEN)]
        }
    );
    // The agent's own session at this very station is not "another agent".
    let own = holdings(Some("b@pbx"), Some("1001"));
    assert_eq!(
        decide_claim("1001", &own, A::Replace, S::Reject, false),
        ClaimDecision::Claim {
            end: vec![("1001".into(), REASON_MOVED)]
        }
    );
}

#[test]
fn station_patterns() {
    assert!(station_matches("2001@pbx.example", "2001@PBX.example"));
    assert!(station_matches("20*@pbx.example", "2001@pbx.example"));
    assert!(!station_matches("20*@pbx.example", "3001@pbx.example"));
    assert!(station_matches("*@10.1.*", "7@10.1.2.3"));
    assert!(!station_matches("*@10.1.*", "7@10.2.2.3"));
    assert!(station_matches("*", "anything"));
    assert!(station_allowed(&[], "x@y"));
    assert!(!station_allowed(&["a@*".into()], "b@y"));
}

#[test]
fn networks() {
    let n: Network = "10.0.0.0/8".parse().unwrap();
    assert!(n.contains("10.200.1.1".parse().unwrap()));
    assert!(!n.contains("11.0.0.1".parse().unwrap()));
    assert!(
        n.contains("::ffff:10.1.1.1".parse().unwrap()),
        "IPv4-mapped IPv6"
    );
    let v6: Network = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
    assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    let host: Network = "192.0.2.7".parse().unwrap();
    assert!(
        host.contains("192.0.2.7".parse().unwrap()) && !host.contains("192.0.2.8".parse().unwrap())
    );
    let all: Network = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("8.8.8.8".parse().unwrap()));
    assert!("10.0.0.0/33".parse::<Network>().is_err());
    assert!("ten".parse::<Network>().is_err());
    assert!(source_allowed(&[], "1.2.3.4".parse().unwrap()));
}

#[test]
fn five_failures_in_the_window_lock_and_the_lock_ends_by_itself() {
    let rule = Lockout {
        after: 5,
        window: Duration::from_secs(15 * 60),
        duration: Duration::from_secs(15 * 60),
    };
    let mut f = Failures::default();
    let t0 = 1_000_000_000i64;
    for i in 0..4 {
        let (next, locked) = f.after_failure(&rule, t0 + i * 1000);
        assert!(!locked);
        f = next;
    }
    let (f, locked) = f.after_failure(&rule, t0 + 5000);
    assert!(locked);
    assert!(f.locked(t0 + 5000 + 14 * 60 * 1000));
    assert!(!f.locked(t0 + 5000 + 15 * 60 * 1000 + 1));
}

#[test]
fn failures_spread_beyond_the_window_do_not_lock() {
    let rule = Lockout {
        after: 3,
        window: Duration::from_secs(60),
        duration: Duration::from_secs(60),
    };
    let mut f = Failures::default();
    for i in 0..10 {
        let (next, locked) = f.after_failure(&rule, i * 40_000);
        assert!(!locked, "failure {i}");
        f = next;
    }
}

#[test]
fn new_passcodes_follow_the_rules() {
    assert_eq!(new_passcode_problem("8642", "1001"), None);
    assert_eq!(new_passcode_problem("975310", "1001"), None);
    assert!(new_passcode_problem("123", "1001").is_some());
    assert!(new_passcode_problem("1234567890123", "1001").is_some());
    assert!(new_passcode_problem("12a4", "1001").is_some());
    assert!(new_passcode_problem("7777", "1001").is_some());
    assert!(new_passcode_problem("1234", "1001").is_some());
    assert!(new_passcode_problem("6543", "1001").is_some());
    assert!(new_passcode_problem("1001", "1001").is_some());
}
