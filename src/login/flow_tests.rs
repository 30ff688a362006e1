//! The flow driven with simulated time, branch by branch, as a caller would meet it.

use super::*;

fn cfg() -> FlowConfig {
    FlowConfig {
        max_attempts: 3,
        digit_timeout: Duration::from_secs(5),
        first_digit_timeout: Duration::from_secs(10),
        max_digits: 16,
        stay: false,
        ask_extension: false,
        ask_extension_when_withheld: true,
        station_verified: true,
    }
}

struct Call {
    flow: Flow,
    now: Instant,
    log: Vec<Action>,
}

impl Call {
    fn new() -> Call {
        let mut c = Call {
            flow: Flow::new(cfg()),
            now: Instant::now(),
            log: vec![],
        };
        c.input(Input::Started);
        c
    }
    fn input(&mut self, i: Input) -> Vec<Action> {
        self.flow.handle(i, self.now);
        self.drain()
    }
    fn drain(&mut self) -> Vec<Action> {
        let mut out = vec![];
        while let Some(a) = self.flow.poll_action() {
            out.push(a);
        }
        self.log.extend(out.clone());
        out
    }
    fn keys(&mut self, s: &str) -> Vec<Action> {
        let mut out = vec![];
        for c in s.chars() {
            out.extend(self.input(Input::Digit(Digit::from_char(c).unwrap())));
        }
        out
    }
    /// Keys `keys`, then the store answers `outcome`; what the flow does then.
    fn checked(&mut self, keys: &str, outcome: CheckOutcome) -> Vec<Action> {
        self.keys(keys);
        self.input(Input::CheckResult(outcome))
    }
    fn done(&mut self, p: PromptId) -> Vec<Action> {
        self.input(Input::PromptDone(p))
    }
    /// The last prompts: `playing` ends, each of `then` plays and ends, and the call is hung
    /// up with `outcome`.
    fn closes(&mut self, playing: PromptId, then: &[PromptId], outcome: Outcome) {
        let mut ended = playing;
        for &next in then {
            assert_eq!(
                self.done(ended),
                vec![Action::Play(next)],
                "after {ended:?}"
            );
            ended = next;
        }
        assert_eq!(
            self.done(ended),
            vec![Action::Hangup(outcome)],
            "after {ended:?}"
        );
    }
    fn wait(&mut self, d: Duration) -> Vec<Action> {
        self.now += d;
        if self.flow.poll_timeout().is_some_and(|t| t <= self.now) {
            self.flow.handle_timeout(self.now);
        }
        self.drain()
    }
    fn played(&self) -> Vec<PromptId> {
        self.log
            .iter()
            .filter_map(|a| match a {
                Action::Play(p) => Some(*p),
                _ => None,
            })
            .collect()
    }
}

fn check(agent: &str, pass: &str) -> Action {
    Action::Check {
        agent: AgentNumber(agent.into()),
        passcode: Passcode(pass.into()),
        replace: false,
        new_passcode: None,
        extension: None,
    }
}

#[test]
fn agent_logs_in_after_hearing_each_prompt() {
    let mut c = Call::new();
    assert_eq!(c.played(), vec![PromptId::AgentUser]);
    c.done(PromptId::AgentUser);
    assert_eq!(c.keys("1001#"), vec![Action::Play(PromptId::AgentPass)]);
    c.done(PromptId::AgentPass);
    assert_eq!(c.keys("1234#"), vec![check("1001", "1234")]);
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::LoggedIn)),
        vec![Action::Play(PromptId::AgentLoginOk)]
    );
    c.closes(PromptId::AgentLoginOk, &[], Outcome::LoggedIn);
    assert!(c.flow.is_done());
}

#[test]
fn wrong_passcode_hears_login_incorrect_then_succeeds() {
    let mut c = Call::new();
    c.done(PromptId::AgentUser);
    c.keys("1001#");
    c.done(PromptId::AgentPass);
    c.keys("9999#");
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::Incorrect)),
        vec![Action::Play(PromptId::AgentIncorrect)]
    );
    c.done(PromptId::AgentIncorrect);
    c.keys("1001#");
    c.done(PromptId::AgentPass);
    assert_eq!(c.keys("1234#"), vec![check("1001", "1234")]);
}

#[test]
fn too_many_attempts_hears_login_incorrect_goodbye_and_is_hung_up() {
    let mut c = Call::new();
    for attempt in 1..=3 {
        c.keys("1001#");
        let a = c.checked("0000#", CheckOutcome::Incorrect);
        if attempt < 3 {
            assert_eq!(a, vec![Action::Play(PromptId::AgentIncorrect)]);
        } else {
            assert_eq!(a, vec![Action::Play(PromptId::LoginIncorrect)]);
        }
    }
    c.closes(
        PromptId::LoginIncorrect,
        &[PromptId::Goodbye],
        Outcome::Incorrect,
    );
}

#[test]
fn already_logged_on_hears_that_and_is_asked_again_until_the_attempt_limit() {
    let mut c = Call::new();
    let a = c.checked("1001#1234#", CheckOutcome::AlreadyLoggedOn);
    assert_eq!(a, vec![Action::Play(PromptId::AgentAlreadyOnRetry)]);
    c.checked("1001#1234#", CheckOutcome::AlreadyLoggedOn);
    let a = c.checked("1001#1234#", CheckOutcome::AlreadyLoggedOn);
    assert_eq!(a, vec![Action::Play(PromptId::AgentAlreadyOn)]);
    c.closes(
        PromptId::AgentAlreadyOn,
        &[PromptId::Goodbye],
        Outcome::AlreadyLoggedOn,
    );
}

#[test]
fn confirm_1_moves_the_session_here_and_2_cancels() {
    let mut c = Call::new();
    let a = c.checked("1001#1234#", CheckOutcome::NeedsConfirm);
    assert_eq!(a, vec![Action::Play(PromptId::AgentConfirm)]);
    let a = c.keys("1");
    assert_eq!(
        a,
        vec![
            Action::StopPrompt,
            Action::Check {
                agent: AgentNumber("1001".into()),
                passcode: Passcode("1234".into()),
                replace: true,
                new_passcode: None,
                extension: None,
            }
        ]
    );
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::LoggedIn)),
        vec![Action::Play(PromptId::AgentLoginOk)]
    );

    let mut c = Call::new();
    c.checked("1001#1234#", CheckOutcome::NeedsConfirm);
    assert_eq!(
        c.keys("2"),
        vec![Action::StopPrompt, Action::Play(PromptId::Goodbye)]
    );
    c.closes(PromptId::Goodbye, &[], Outcome::Cancelled);
}

#[test]
fn confirm_with_no_answer_cancels() {
    let mut c = Call::new();
    c.checked("1001#1234#", CheckOutcome::NeedsConfirm);
    assert_eq!(c.keys("5"), vec![], "other keys are ignored");
    c.done(PromptId::AgentConfirm);
    assert_eq!(
        c.wait(Duration::from_secs(10)),
        vec![Action::Play(PromptId::Goodbye)]
    );
    c.closes(PromptId::Goodbye, &[], Outcome::Cancelled);
}

#[test]
fn locked_station_in_use_and_not_allowed_each_say_why_then_goodbye() {
    for (result, prompt, outcome) in [
        (CheckOutcome::Locked, PromptId::AgentLocked, Outcome::Locked),
        (
            CheckOutcome::StationInUse,
            PromptId::StationInUse,
            Outcome::StationInUse,
        ),
        (
            CheckOutcome::StationNotAllowed,
            PromptId::StationNotAllowed,
            Outcome::StationNotAllowed,
        ),
    ] {
        let mut c = Call::new();
        c.keys("1001#1234#");
        assert_eq!(
            c.input(Input::CheckResult(result)),
            vec![Action::Play(prompt)]
        );
        assert_eq!(c.done(prompt), vec![Action::Play(PromptId::Goodbye)]);
        assert_eq!(c.done(PromptId::Goodbye), vec![Action::Hangup(outcome)]);
    }
}

#[test]
fn store_down_hears_service_unavailable_and_is_hung_up() {
    let mut c = Call::new();
    let a = c.checked("1001#1234#", CheckOutcome::Unavailable);
    assert_eq!(a, vec![Action::Play(PromptId::ServiceUnavailable)]);
    c.closes(PromptId::ServiceUnavailable, &[], Outcome::Unavailable);
}

#[test]
fn typing_during_a_prompt_stops_it_and_keeps_every_key() {
    let mut c = Call::new();
    // First key barges in on agent-user; the whole login is typed ahead.
    let a = c.keys("1");
    assert_eq!(a, vec![Action::StopPrompt]);
    let a = c.keys("001#1234#");
    assert_eq!(
        a,
        vec![
            Action::Play(PromptId::AgentPass),
            Action::StopPrompt,
            check("1001", "1234")
        ]
    );
}

#[test]
fn keys_typed_during_the_check_answer_the_next_prompt() {
    let mut c = Call::new();
    c.keys("1001#0000#");
    let a = c.checked("1001#1234#", CheckOutcome::Incorrect);
    // agent-incorrect is not played: the caller already answered it.
    assert_eq!(a, vec![check("1001", "1234")]);
}

#[test]
fn silence_replays_the_prompt_once_then_goodbye() {
    let mut c = Call::new();
    c.done(PromptId::AgentUser);
    assert_eq!(c.wait(Duration::from_secs(9)), vec![]);
    assert_eq!(
        c.wait(Duration::from_secs(1)),
        vec![Action::Play(PromptId::AgentUser)]
    );
    c.done(PromptId::AgentUser);
    assert_eq!(
        c.wait(Duration::from_secs(10)),
        vec![Action::Play(PromptId::Goodbye)]
    );
    c.closes(PromptId::Goodbye, &[], Outcome::NoInput);
}

#[test]
fn no_timeout_runs_while_a_prompt_plays() {
    let c = Call::new();
    assert_eq!(c.flow.poll_timeout(), None);
}

#[test]
fn inter_digit_timeout_ends_an_entry_without_pound() {
    let mut c = Call::new();
    c.keys("1001");
    assert_eq!(c.wait(Duration::from_secs(4)), vec![]);
    assert_eq!(
        c.wait(Duration::from_secs(1)),
        vec![Action::Play(PromptId::AgentPass)]
    );
}

#[test]
fn max_digits_ends_an_entry() {
    let mut c = Call::new();
    let a = c.keys("1234567890123456");
    assert_eq!(a.last(), Some(&Action::Play(PromptId::AgentPass)));
}

#[test]
fn empty_agent_number_counts_as_a_wrong_attempt() {
    let mut c = Call::new();
    assert_eq!(
        c.keys("#"),
        vec![Action::StopPrompt, Action::Play(PromptId::AgentIncorrect)]
    );
}

#[test]
fn caller_hanging_up_during_the_check_releases_the_session_it_made() {
    let mut c = Call::new();
    c.keys("1001#1234#");
    assert_eq!(c.input(Input::Hangup), vec![]);
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::LoggedIn)),
        vec![Action::Release {
            agent: AgentNumber("1001".into())
        }]
    );
    // A caller who hangs up anywhere else leaves nothing to do.
    let mut c = Call::new();
    c.keys("1001#");
    assert_eq!(c.input(Input::Hangup), vec![]);
    assert!(c.flow.is_done());
    assert_eq!(c.input(Input::CheckResult(CheckOutcome::LoggedIn)), vec![]);
}

#[test]
fn time_limit_says_goodbye_or_drops_a_pending_check() {
    let mut c = Call::new();
    c.keys("10");
    assert_eq!(
        c.input(Input::TimeLimit),
        vec![Action::Play(PromptId::Goodbye)]
    );
    c.closes(PromptId::Goodbye, &[], Outcome::TimeLimit);

    let mut c = Call::new();
    c.keys("1001#1234#");
    assert_eq!(
        c.input(Input::TimeLimit),
        vec![Action::Hangup(Outcome::TimeLimit)]
    );
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::LoggedIn)),
        vec![Action::Release {
            agent: AgentNumber("1001".into())
        }]
    );
}

#[test]
fn passcode_is_never_shown_by_debug() {
    let a = check("1001", "8642");
    assert!(!format!("{a:?}").contains("8642"));
}

fn logout_call() -> Call {
    let mut c = Call {
        flow: Flow::with_mode(cfg(), Mode::Logout),
        now: Instant::now(),
        log: vec![],
    };
    let a = c.input(Input::Started);
    assert_eq!(a, vec![Action::LogoutStation]);
    c
}

#[test]
fn calling_the_logout_number_from_the_station_logs_its_agent_off() {
    let mut c = logout_call();
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::LoggedOff)),
        vec![Action::Play(PromptId::AgentLoggedOff)]
    );
    c.closes(PromptId::AgentLoggedOff, &[], Outcome::LoggedOff);
}

#[test]
fn a_logout_call_from_a_station_not_verified_ends_nobodys_session_without_the_passcode() {
    let mut c = Call {
        flow: Flow::with_mode(cfg().for_caller(false, false), Mode::Logout),
        now: Instant::now(),
        log: vec![],
    };
    assert_eq!(
        c.input(Input::Started),
        vec![Action::Play(PromptId::AgentUser)]
    );
    assert_eq!(c.keys("1001#1234#").last(), Some(&check("1001", "1234")));
    assert!(!c.log.contains(&Action::LogoutStation));
}

#[test]
fn calling_the_logout_number_from_elsewhere_asks_for_the_credentials() {
    let mut c = logout_call();
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::NotLoggedOn)),
        vec![Action::Play(PromptId::AgentUser)]
    );
    assert_eq!(c.keys("1001#1234#").last(), Some(&check("1001", "1234")));
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::LoggedOff)),
        vec![Action::Play(PromptId::AgentLoggedOff)]
    );
    let mut c = logout_call();
    c.input(Input::CheckResult(CheckOutcome::NotLoggedOn));
    c.keys("1001#1234#");
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::NotLoggedOn)),
        vec![Action::Play(PromptId::AgentNotLoggedOn)]
    );
    c.closes(
        PromptId::AgentNotLoggedOn,
        &[PromptId::Goodbye],
        Outcome::NotLoggedOn,
    );
}

/// Keys typed while the logout call's station lookup runs are not lost: they answer the
/// prompt for the credentials when nobody is logged on at the station, and go with the
/// session when somebody is.
#[test]
fn keys_typed_during_the_logout_station_lookup_are_kept() {
    let mut c = logout_call();
    assert_eq!(c.keys("1003#3456#"), vec![]);
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::NotLoggedOn)),
        vec![check("1003", "3456")]
    );
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::NotLoggedOn)),
        vec![Action::Play(PromptId::AgentNotLoggedOn)]
    );
    let mut c = logout_call();
    c.keys("1003#");
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::LoggedOff)),
        vec![Action::Play(PromptId::AgentLoggedOff)]
    );
}

fn staying() -> Call {
    let mut c = Call {
        flow: Flow::new(FlowConfig {
            stay: true,
            ..cfg()
        }),
        now: Instant::now(),
        log: vec![],
    };
    c.input(Input::Started);
    c.keys("1001#1234#");
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::LoggedIn)),
        vec![Action::Play(PromptId::AgentLoginOk)]
    );
    assert_eq!(c.done(PromptId::AgentLoginOk), vec![], "the line stays up");
    assert!(c.flow.is_staying());
    c
}

#[test]
fn on_a_stay_line_the_agent_sets_and_hears_the_status() {
    let mut c = staying();
    assert_eq!(c.keys("1"), vec![Action::SetStatus(AgentStatus::Available)]);
    assert_eq!(c.keys("3"), vec![], "one change at a time");
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::Status(
            AgentStatus::Available
        ))),
        vec![Action::Play(PromptId::StatusAvailable)]
    );
    assert_eq!(
        c.keys("3"),
        vec![Action::SetStatus(AgentStatus::WorkOffline)]
    );
    c.input(Input::CheckResult(CheckOutcome::Status(
        AgentStatus::WorkOffline,
    )));
    assert_eq!(c.keys("0"), vec![Action::QueryStatus]);
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::Status(
            AgentStatus::OnBreak
        ))),
        vec![Action::Play(PromptId::StatusOnBreak)]
    );
    assert_eq!(c.keys("7"), vec![]);
    // No silence timeout on a stay line.
    assert_eq!(c.flow.poll_timeout(), None);
}

#[test]
fn nine_logs_off_and_hanging_up_logs_off_too() {
    let mut c = staying();
    assert_eq!(
        c.keys("9"),
        vec![Action::Logout {
            reason: REASON_BY_PHONE
        }]
    );
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::LoggedOff)),
        vec![Action::Play(PromptId::AgentLoggedOff)]
    );
    c.closes(PromptId::AgentLoggedOff, &[], Outcome::LoggedOff);

    let mut c = staying();
    assert_eq!(
        c.input(Input::Hangup),
        vec![Action::Logout {
            reason: REASON_STATION_HUNG_UP
        }]
    );
}

#[test]
fn a_stay_line_whose_session_moved_hears_why_and_is_hung_up() {
    let mut c = staying();
    assert_eq!(
        c.input(Input::SessionEnded {
            by: EndedBy::LogOnElsewhere
        }),
        vec![Action::Play(PromptId::SessionDropped)]
    );
    // A late end of an earlier prompt does not cut the closing one short.
    assert_eq!(c.done(PromptId::AgentLoginOk), vec![]);
    c.closes(PromptId::SessionDropped, &[], Outcome::Dropped);
    let mut c = staying();
    assert_eq!(
        c.input(Input::SessionEnded { by: EndedBy::Other }),
        vec![Action::Play(PromptId::AgentLoggedOff)]
    );
    // A login line (not staying) ignores it.
    let mut c = Call::new();
    assert_eq!(
        c.input(Input::SessionEnded {
            by: EndedBy::LogOnElsewhere
        }),
        vec![]
    );
}

#[test]
fn a_stay_line_at_session_max_hours_logs_off_with_goodbye() {
    let mut c = staying();
    assert_eq!(
        c.input(Input::TimeLimit),
        vec![
            Action::Logout {
                reason: REASON_MAX_HOURS
            },
            Action::Play(PromptId::Goodbye)
        ]
    );
}

#[test]
fn an_expired_passcode_is_changed_twice_keyed_then_the_agent_logs_on() {
    let mut c = Call::new();
    c.keys("1001#1234#");
    assert_eq!(
        c.input(Input::CheckResult(CheckOutcome::MustChangePasscode)),
        vec![Action::Play(PromptId::PasscodeExpired)]
    );
    // A run is refused, then a mismatch, then it works.
    assert_eq!(
        c.keys("1234#"),
        vec![Action::StopPrompt, Action::Play(PromptId::PasscodeInvalid)]
    );
    assert_eq!(
        c.keys("8642#"),
        vec![Action::StopPrompt, Action::Play(PromptId::PasscodeAgain)]
    );
    assert_eq!(
        c.keys("8643#"),
        vec![Action::StopPrompt, Action::Play(PromptId::PasscodeMismatch)]
    );
    let mut c2 = Call::new();
    c2.keys("1001#1234#");
    c2.input(Input::CheckResult(CheckOutcome::MustChangePasscode));
    c2.keys("8642#");
    assert_eq!(
        c2.keys("8642#"),
        vec![
            Action::StopPrompt,
            Action::Check {
                agent: AgentNumber("1001".into()),
                passcode: Passcode("1234".into()),
                replace: false,
                new_passcode: Some(Passcode("8642".into())),
                extension: None,
            }
        ]
    );
    assert_eq!(
        c2.input(Input::CheckResult(CheckOutcome::LoggedIn)),
        vec![Action::Play(PromptId::AgentLoginOk)]
    );
    // The third bad entry of the first call ends it.
    assert_eq!(
        c.keys("1001#"),
        vec![Action::StopPrompt, Action::Play(PromptId::Goodbye)]
    );
}

#[test]
fn with_station_prompt_the_extension_is_asked_after_the_passcode() {
    let mut c = Call {
        flow: Flow::new(FlowConfig {
            ask_extension: true,
            ..cfg()
        }),
        now: Instant::now(),
        log: vec![],
    };
    c.input(Input::Started);
    c.keys("1001#1234");
    assert_eq!(c.keys("#"), vec![Action::Play(PromptId::AgentExtension)]);
    let a = c.keys("2007#");
    assert_eq!(
        a.last(),
        Some(&Action::Check {
            agent: AgentNumber("1001".into()),
            passcode: Passcode("1234".into()),
            replace: false,
            new_passcode: None,
            extension: Some("2007".into()),
        })
    );
    // # alone: the agent's default extension (an empty extension for the store).
    let mut c = Call {
        flow: Flow::new(FlowConfig {
            ask_extension: true,
            ..cfg()
        }),
        now: Instant::now(),
        log: vec![],
    };
    c.input(Input::Started);
    c.keys("1001#1234#");
    assert!(
        matches!(c.keys("#").last(), Some(Action::Check { extension: Some(e), .. }) if e.is_empty())
    );
}

#[test]
fn a_withheld_caller_is_asked_for_the_extension_when_so_configured() {
    let asked = |cfg: FlowConfig, withheld| {
        let mut c = Call {
            flow: Flow::new(cfg.for_caller(withheld, true)),
            now: Instant::now(),
            log: vec![],
        };
        c.input(Input::Started);
        c.keys("1001#1234");
        c.keys("#") == vec![Action::Play(PromptId::AgentExtension)]
    };
    assert!(asked(cfg(), true));
    assert!(!asked(cfg(), false));
    let no_prompt = FlowConfig {
        ask_extension_when_withheld: false,
        ..cfg()
    };
    assert!(!asked(no_prompt, true));
}

#[test]
fn shutdown_says_goodbye_and_a_stay_line_logs_its_agent_out() {
    let mut c = Call::new();
    assert_eq!(
        c.input(Input::Shutdown),
        vec![Action::StopPrompt, Action::Play(PromptId::Goodbye)]
    );
    c.closes(PromptId::Goodbye, &[], Outcome::Shutdown);
    let mut c = staying();
    assert_eq!(
        c.input(Input::Shutdown),
        vec![
            Action::Logout {
                reason: REASON_SHUTDOWN
            },
            Action::Play(PromptId::Goodbye)
        ]
    );
}
