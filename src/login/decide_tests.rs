//! The order of the login checks, decision by decision, without a store or a hash.

use super::*;
use std::time::Duration;

const NOW: i64 = 1_000_000_000;

fn record() -> AgentRecord {
    AgentRecord {
        passcode_hash: String::new(),
        enabled: true,
        failures: Failures::default(),
        stations: Vec::new(),
        networks: Vec::new(),
        must_change: false,
        default_extension: String::new(),
        language: String::new(),
    }
}

fn attempt(mode: Mode) -> Attempt<'static> {
    Attempt {
        mode,
        over_limit: false,
        source_ip: "192.0.2.7".parse().unwrap(),
        station: "2001@pbx.example",
        extension: None,
        new_passcode: None,
        agent: "1001",
    }
}

const LOCKOUT_RULE: Lockout = Lockout {
    after: 3,
    window: Duration::from_secs(900),
    duration: Duration::from_secs(900),
};

fn rules(networks: &[Network]) -> Rules<'_> {
    Rules {
        networks,
        lockout: &LOCKOUT_RULE,
    }
}

/// The answer and audit entry of a verdict that stops the caller.
fn stopped(v: &Verdict) -> (CheckOutcome, &'static str, &'static str) {
    match v {
        Verdict::Stop { answer, audit, .. } => (*answer, audit.event.as_str(), audit.reason),
        other => panic!("not a stop: {other:?}"),
    }
}

#[test]
fn right_credentials_go_on_at_the_callers_station() {
    let v = decide(
        &attempt(Mode::Login),
        Some(&record()),
        true,
        &rules(&[]),
        NOW,
    );
    assert_eq!(
        v,
        Verdict::Proceed {
            station: "2001@pbx.example".into(),
            writes: Writes::default()
        }
    );
    assert!(v.credentials_right());
}

#[test]
fn over_the_attempt_limits_is_refused_before_anything_is_looked_at() {
    let a = Attempt {
        over_limit: true,
        ..attempt(Mode::Login)
    };
    // Even with a record and the right passcode (the store reads neither).
    let v = decide(&a, Some(&record()), true, &rules(&[]), NOW);
    assert_eq!(
        stopped(&v),
        (CheckOutcome::OverLimit, "login_refused", REASON_OVER_LIMIT)
    );
    assert!(!v.credentials_right());
}

#[test]
fn an_unknown_agent_and_a_wrong_passcode_sound_the_same_and_are_audited_apart() {
    let unknown = decide(&attempt(Mode::Login), None, false, &rules(&[]), NOW);
    assert_eq!(
        stopped(&unknown),
        (CheckOutcome::Incorrect, "login_failed", "unknown agent")
    );
    let wrong = decide(
        &attempt(Mode::Login),
        Some(&record()),
        false,
        &rules(&[]),
        NOW,
    );
    assert_eq!(
        stopped(&wrong),
        (CheckOutcome::Incorrect, "login_failed", "wrong passcode")
    );
    let Verdict::Stop { writes, .. } = wrong else {
        unreachable!()
    };
    let (failures, locked) = writes.failures.expect("the failure is counted");
    assert_eq!((failures.count, locked), (1, false));
}

#[test]
fn the_third_wrong_passcode_locks_and_a_locked_agent_is_told_only_with_the_right_one() {
    let mut r = record();
    r.failures = Failures {
        count: 2,
        window_start_ms: Some(NOW - 1000),
        locked_until_ms: None,
    };
    let v = decide(&attempt(Mode::Login), Some(&r), false, &rules(&[]), NOW);
    let Verdict::Stop { writes, .. } = v else {
        panic!("{v:?}")
    };
    let (failures, locked_now) = writes.failures.unwrap();
    assert!(locked_now);
    assert!(failures.locked(NOW + 1));
    r.failures = failures;
    let right = decide(&attempt(Mode::Login), Some(&r), true, &rules(&[]), NOW + 1);
    assert_eq!(
        stopped(&right),
        (CheckOutcome::Locked, "login_refused", "agent locked")
    );
    let wrong = decide(&attempt(Mode::Login), Some(&r), false, &rules(&[]), NOW + 1);
    assert_eq!(
        stopped(&wrong),
        (
            CheckOutcome::Incorrect,
            "login_failed",
            "wrong passcode (agent locked)"
        )
    );
    // A lock does not count further failures.
    let Verdict::Stop { writes, .. } = wrong else {
        unreachable!()
    };
    assert_eq!(writes.failures, None);
}

#[test]
fn networks_of_the_gateway_and_of_the_agent_refuse_as_login_incorrect() {
    let office: Vec<Network> = vec!["10.0.0.0/8".parse().unwrap()];
    let v = decide(
        &attempt(Mode::Login),
        Some(&record()),
        true,
        &rules(&office),
        NOW,
    );
    assert_eq!(
        stopped(&v),
        (
            CheckOutcome::Incorrect,
            "login_refused",
            "source network not allowed"
        )
    );
    let mut r = record();
    r.networks = office;
    let v = decide(&attempt(Mode::Login), Some(&r), true, &rules(&[]), NOW);
    assert_eq!(
        stopped(&v),
        (
            CheckOutcome::Incorrect,
            "login_refused",
            "source network not allowed for this agent"
        )
    );
}

#[test]
fn a_barred_source_never_touches_the_lockout_count() {
    let mut r = record();
    r.networks = vec!["10.0.0.0/8".parse().unwrap()];
    r.failures.count = 2;
    // A wrong passcode from outside the agent's networks: refused, no failure written.
    let v = decide(&attempt(Mode::Login), Some(&r), false, &rules(&[]), NOW);
    let Verdict::Stop {
        answer,
        audit,
        writes,
    } = &v
    else {
        panic!("not a stop: {v:?}")
    };
    assert_eq!(*answer, CheckOutcome::Incorrect);
    assert_eq!(audit.reason, "source network not allowed for this agent");
    assert_eq!(writes.failures, None);
    // A locked agent is not told apart from outside either.
    r.failures = Failures {
        count: 3,
        window_start_ms: Some(NOW),
        locked_until_ms: Some(NOW + 60_000),
    };
    let v = decide(&attempt(Mode::Login), Some(&r), true, &rules(&[]), NOW);
    assert_eq!(stopped(&v).0, CheckOutcome::Incorrect);
}

#[test]
fn a_disabled_agent_fails_like_a_wrong_passcode() {
    let mut r = record();
    r.enabled = false;
    let v = decide(&attempt(Mode::Login), Some(&r), true, &rules(&[]), NOW);
    assert_eq!(
        stopped(&v),
        (CheckOutcome::Incorrect, "login_failed", "agent disabled")
    );
}

#[test]
fn right_credentials_clear_earlier_failures() {
    let mut r = record();
    r.failures = Failures {
        count: 1,
        window_start_ms: Some(NOW - 1000),
        locked_until_ms: None,
    };
    let v = decide(&attempt(Mode::Login), Some(&r), true, &rules(&[]), NOW);
    let Verdict::Proceed { writes, .. } = v else {
        panic!("{v:?}")
    };
    assert_eq!(writes.failures, Some((Failures::default(), false)));
}

#[test]
fn a_station_outside_the_agents_logon_stations_is_refused_after_the_credentials() {
    let mut r = record();
    r.stations = vec!["3*@pbx.example".into()];
    let v = decide(&attempt(Mode::Login), Some(&r), true, &rules(&[]), NOW);
    assert_eq!(
        stopped(&v),
        (
            CheckOutcome::StationNotAllowed,
            "login_refused",
            "station not allowed for this agent"
        )
    );
    assert!(v.credentials_right(), "the agent's language applies");
}

#[test]
fn a_keyed_extension_is_the_station_and_hash_alone_the_agents_default() {
    let mut r = record();
    r.default_extension = "2002".into();
    let keyed = Attempt {
        extension: Some("2005"),
        ..attempt(Mode::Login)
    };
    let station = |v: Verdict| match v {
        Verdict::Proceed { station, .. } => station,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        station(decide(&keyed, Some(&r), true, &rules(&[]), NOW)),
        "2005"
    );
    let default = Attempt {
        extension: Some(""),
        ..attempt(Mode::Login)
    };
    assert_eq!(
        station(decide(&default, Some(&r), true, &rules(&[]), NOW)),
        "2002"
    );
    // No default extension: the signalled station.
    r.default_extension.clear();
    assert_eq!(
        station(decide(&default, Some(&r), true, &rules(&[]), NOW)),
        "2001@pbx.example"
    );
}

#[test]
fn a_passcode_that_must_change_holds_the_login_until_a_good_new_one_comes() {
    let mut r = record();
    r.must_change = true;
    let v = decide(&attempt(Mode::Login), Some(&r), true, &rules(&[]), NOW);
    assert_eq!(
        stopped(&v),
        (
            CheckOutcome::MustChangePasscode,
            "login_held",
            "the passcode must be changed"
        )
    );
    let weak = Passcode("1111".into());
    let a = Attempt {
        new_passcode: Some(&weak),
        ..attempt(Mode::Login)
    };
    let v = decide(&a, Some(&r), true, &rules(&[]), NOW);
    assert!(matches!(v, Verdict::BadNewPasscode { .. }), "{v:?}");
    let good = Passcode("8642".into());
    let a = Attempt {
        new_passcode: Some(&good),
        ..attempt(Mode::Login)
    };
    let v = decide(&a, Some(&r), true, &rules(&[]), NOW);
    let Verdict::Proceed { writes, .. } = v else {
        panic!("{v:?}")
    };
    assert!(writes.set_passcode);
}

#[test]
fn a_logout_by_credentials_stops_after_them() {
    let mut r = record();
    r.must_change = true;
    r.stations = vec!["nowhere".into()];
    let v = decide(&attempt(Mode::Logout), Some(&r), true, &rules(&[]), NOW);
    assert!(matches!(v, Verdict::Proceed { .. }), "{v:?}");
}
