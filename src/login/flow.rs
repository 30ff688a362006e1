//! The login IVR as a sans-IO state machine. It owns no socket, timer or database handle:
//! the call driver (`call/`) feeds it `Input`s with the current time, drains `Action`s, and
//! wakes it at `poll_timeout()`. Every rule is therefore testable in microseconds with
//! simulated time.

use crate::login::rules;
use crate::login::{AgentNumber, Passcode};
use crate::media::dtmf::Digit;
use crate::media::prompts::PromptId;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Who ended a stay line's session from elsewhere: it decides what the line hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// A log on of the same agent at another station.
    LogOnElsewhere,
    /// An administrator (force logout).
    Administrator,
    /// Anything else (agent removed, station taken over, expiry).
    Other,
}

impl EndedBy {
    /// Who ended a session, from the reason its logout was audited with.
    pub fn from_reason(reason: &str) -> EndedBy {
        match reason {
            rules::REASON_MOVED => EndedBy::LogOnElsewhere,
            rules::REASON_ADMINISTRATOR => EndedBy::Administrator,
            _ => EndedBy::Other,
        }
    }
}

/// What a logged-on agent is doing (8x8 VCC): a new session starts on break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    OnBreak,
    Available,
    WorkOffline,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::OnBreak => "on_break",
            AgentStatus::Available => "available",
            AgentStatus::WorkOffline => "work_offline",
        }
    }

    pub fn parse(s: &str) -> Option<AgentStatus> {
        [
            AgentStatus::OnBreak,
            AgentStatus::Available,
            AgentStatus::WorkOffline,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }

    fn prompt(self) -> PromptId {
        match self {
            AgentStatus::OnBreak => PromptId::StatusOnBreak,
            AgentStatus::Available => PromptId::StatusAvailable,
            AgentStatus::WorkOffline => PromptId::StatusWorkOffline,
        }
    }
}

/// What the store said about an agent number + passcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Right, and the session is now recorded.
    LoggedIn,
    /// Unknown agent or wrong passcode (indistinguishable to the caller).
    Incorrect,
    /// Right, but the agent already has a session; nothing changed.
    AlreadyLoggedOn,
    /// Right, the agent has a session elsewhere, and the caller must confirm moving it here.
    NeedsConfirm,
    /// Right, but the agent is locked after too many wrong passcodes.
    Locked,
    /// Right, but another agent is logged on at this station.
    StationInUse,
    /// Right, but the agent may not log on at this station.
    StationNotAllowed,
    /// Right, but the passcode must be changed first (answer with `new_passcode`).
    MustChangePasscode,
    /// (Logout calls) the agent's session is ended.
    LoggedOff,
    /// (Logout calls) the agent has no session.
    NotLoggedOn,
    /// (Stay lines) the agent's status, after a change or a query.
    Status(AgentStatus),
    /// Refused unseen: the station or the source is over its attempts a minute. The caller
    /// hears "Login incorrect" after `OVER_LIMIT_DELAY`, told nothing and slowed down, so
    /// that no agent number can be learned.
    OverLimit,
    /// The store could not be reached.
    Unavailable,
}

/// How a call ended, for the log, the BYE and the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    LoggedIn,
    Incorrect,
    AlreadyLoggedOn,
    NoInput,
    Unavailable,
    TimeLimit,
    CallerHungUp,
    Locked,
    StationInUse,
    StationNotAllowed,
    /// The caller chose not to move the session (pressed 2 or nothing).
    Cancelled,
    /// A logout call ended a session.
    LoggedOff,
    /// A logout call found no session to end.
    NotLoggedOn,
    /// A stay line whose session was ended elsewhere (a log on at another station, an
    /// administrator).
    Dropped,
    /// The gateway shut down.
    Shutdown,
    /// A stay line's phone sent no RTP for `line_timeout_secs` and did not answer the probe.
    LineLost,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::LoggedIn => "logged-in",
            Outcome::Incorrect => "incorrect",
            Outcome::AlreadyLoggedOn => "already-logged-on",
            Outcome::NoInput => "no-input",
            Outcome::Unavailable => "service-unavailable",
            Outcome::TimeLimit => "time-limit",
            Outcome::CallerHungUp => "caller-hung-up",
            Outcome::Locked => "locked",
            Outcome::StationInUse => "station-in-use",
            Outcome::StationNotAllowed => "station-not-allowed",
            Outcome::Cancelled => "cancelled",
            Outcome::LoggedOff => "logged-off",
            Outcome::NotLoggedOn => "not-logged-on",
            Outcome::Dropped => "dropped",
            Outcome::Shutdown => "shutdown",
            Outcome::LineLost => "station-lost",
        }
    }

    /// The ITU-T Q.850 cause told in the BYE's `Reason` header (RFC 3326), which a PBX takes
    /// as the call's hang-up cause (Asterisk's `res_pjsip_rfc3326`: HANGUPCAUSE).
    pub fn q850_cause(self) -> u8 {
        match self {
            // Normal call clearing: done, or nothing went wrong.
            Outcome::LoggedIn
            | Outcome::LoggedOff
            | Outcome::Cancelled
            | Outcome::CallerHungUp
            | Outcome::Dropped => 16,
            // User busy: the agent or the station is taken.
            Outcome::AlreadyLoggedOn | Outcome::StationInUse => 17,
            // Subscriber absent: a logout call found nobody logged on.
            Outcome::NotLoggedOn => 20,
            // Call rejected: the credentials or the station were refused.
            Outcome::Incorrect | Outcome::Locked | Outcome::StationNotAllowed => 21,
            // Temporary failure: try again later.
            Outcome::Unavailable | Outcome::Shutdown => 41,
            // No user responding: the phone went away.
            Outcome::LineLost => 18,
            // Recovery on timer expiry: nothing keyed, or too long.
            Outcome::NoInput | Outcome::TimeLimit => 102,
        }
    }
}

/// The Q.850 cause of a call ended because its media could not be set up (incompatible
/// destination, as for 488).
pub const Q850_BAD_MEDIA: u8 = 88;

/// What happened on the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The call is answered and media flows.
    Started,
    /// The caller pressed a key.
    Digit(Digit),
    /// A prompt played to its end.
    PromptDone(PromptId),
    /// The answer to an `Action::Check`.
    CheckResult(CheckOutcome),
    /// The prompt language of the agent whose credentials were checked (before its
    /// `CheckResult`): the call goes on in it unless the credentials were wrong.
    AgentLanguage(String),
    /// The call reached its longest allowed duration.
    TimeLimit,
    /// The caller hung up (BYE or CANCEL).
    Hangup,
    /// (Stay lines) the session was ended elsewhere.
    SessionEnded { by: EndedBy },
    /// The gateway is shutting down after its drain time: goodbye now (a stay line also logs
    /// its agent out).
    Shutdown,
    /// (Stay lines) the phone sent no RTP for the line timeout and did not answer the probe.
    LineLost,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start playing a prompt from the beginning.
    Play(PromptId),
    /// Stop the prompt playing now (the caller started typing).
    StopPrompt,
    /// Check the credentials and, when right, record the session; `replace`: the caller
    /// confirmed moving the agent's session here.
    Check {
        agent: AgentNumber,
        passcode: Passcode,
        replace: bool,
        /// The new passcode of a forced change, to set before logging on.
        new_passcode: Option<Passcode>,
        /// The extension keyed as the station (`station = "prompt"`); empty: the default.
        extension: Option<String>,
    },
    /// A session was recorded for a caller who had already hung up: remove it.
    Release { agent: AgentNumber },
    /// (Logout calls) end the session of whoever is logged on at the caller's station.
    LogoutStation,
    /// (Stay lines) set the agent's status; answered with `CheckOutcome::Status`.
    SetStatus(AgentStatus),
    /// (Stay lines) read the agent's status; answered with `CheckOutcome::Status`.
    QueryStatus,
    /// (Stay lines) end the agent's session; answered with `LoggedOff` (or nothing after a
    /// hang-up).
    Logout { reason: &'static str },
    /// End the call (BYE) with this outcome.
    Hangup(Outcome),
    /// Play the prompts of this language from now on.
    UseLanguage(String),
}

/// How long a caller over the attempt limits waits for its "Login incorrect".
pub const OVER_LIMIT_DELAY: Duration = Duration::from_secs(3);

/// Which entry the caller is keying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Agent,
    Passcode,
    /// A new passcode, when the old one must be changed.
    NewPasscode,
    /// The new passcode again.
    RepeatPasscode,
    /// The extension to log on at (`station = "prompt"`); empty: the agent's default.
    Extension,
}

/// A forced passcode change in progress.
#[derive(Debug)]
struct PasscodeChange {
    agent: AgentNumber,
    old: Passcode,
    /// The first entry of the new passcode, until it is repeated.
    first: Option<Passcode>,
}

/// What the call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Log an agent on.
    Login,
    /// Log an agent off: the one at the caller's station, or the one whose credentials are
    /// keyed (the check answers `LoggedOff` / `NotLoggedOn`).
    Logout,
}

#[derive(Debug)]
enum State {
    Idle,
    /// (Logout calls) waiting for the station's session to be ended.
    LookingUp,
    Collecting {
        field: Field,
        /// The prompt that asks for this entry (replayed once on silence).
        prompt: PromptId,
        /// Whether that prompt is still playing.
        playing: bool,
        digits: String,
        deadline: Option<Instant>,
        replayed: bool,
    },
    Checking {
        agent: AgentNumber,
        /// Kept for a confirmation that re-checks with `replace`.
        passcode: Passcode,
    },
    /// Asking whether to move the agent's session here (1) or cancel (2).
    Confirming {
        agent: AgentNumber,
        passcode: Passcode,
        playing: bool,
        deadline: Option<Instant>,
    },
    /// Playing the last prompts, then hanging up.
    Closing {
        /// The prompt playing: only its end moves on (not a late end of an earlier one).
        playing: PromptId,
        rest: VecDeque<PromptId>,
        outcome: Outcome,
    },
    /// Logged on, the line kept up (`after_login = "stay"`): the status menu.
    Staying {
        /// A status change, query or logout is being done.
        pending: bool,
    },
    /// Over; only a late `LoggedIn` matters (to release the session).
    Done {
        checking: Option<AgentNumber>,
    },
}

/// Timeouts and limits of the flow.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    pub max_attempts: u32,
    pub digit_timeout: Duration,
    pub first_digit_timeout: Duration,
    pub max_digits: usize,
    /// Keep the line up after the login (nailed-up line) with the status menu.
    pub stay: bool,
    /// Ask for the extension to log on at, after the passcode.
    pub ask_extension: bool,
    /// Ask for it when the caller's identity is withheld.
    pub ask_extension_when_withheld: bool,
    /// The caller's station is known to be its own (a trusted network's or an authenticated
    /// phone's): a logout call ends the station's session without a passcode. Otherwise the
    /// station could be forged, and a logout call asks for the agent and passcode.
    pub station_verified: bool,
}

impl FlowConfig {
    /// The flow of one caller: whether its identity is withheld decides the extension prompt,
    /// whether its station is verified how a logout call goes.
    pub fn for_caller(&self, withheld: bool, station_verified: bool) -> FlowConfig {
        FlowConfig {
            ask_extension: self.ask_extension || (withheld && self.ask_extension_when_withheld),
            station_verified,
            ..self.clone()
        }
    }
}

/// Reasons recorded for sessions a stay line ends.
pub const REASON_STATION_HUNG_UP: &str = "station hung up";
pub const REASON_STATION_LOST: &str = "station lost";
pub const REASON_BY_PHONE: &str = "logged off by phone";
pub const REASON_MAX_HOURS: &str = rules::REASON_SESSION_EXPIRED;
pub const REASON_SHUTDOWN: &str = "gateway shutdown";

/// One call's login dialogue.
#[derive(Debug)]
pub struct Flow {
    cfg: FlowConfig,
    mode: Mode,
    state: State,
    /// The agent number keyed in this attempt, kept while the passcode is collected.
    agent: Option<AgentNumber>,
    /// Wrong attempts so far on this call.
    failures: u32,
    /// A forced passcode change in progress.
    change: Option<PasscodeChange>,
    /// The passcode keyed, kept while the extension is asked for.
    passcode: Option<Passcode>,
    /// The extension keyed, kept for a re-check (confirmation, passcode change).
    extension: Option<String>,
    /// Keys pressed while nothing was collecting (during a check): used by the next entry.
    typeahead: VecDeque<Digit>,
    actions: VecDeque<Action>,
    /// A check over the attempt limits: when its "Login incorrect" is due.
    slowed_until: Option<Instant>,
    /// The language of the agent being checked, until its result.
    language: Option<String>,
}

impl Flow {
    pub fn new(cfg: FlowConfig) -> Flow {
        Flow::with_mode(cfg, Mode::Login)
    }

    pub fn with_mode(cfg: FlowConfig, mode: Mode) -> Flow {
        Flow {
            cfg,
            mode,
            state: State::Idle,
            agent: None,
            failures: 0,
            change: None,
            passcode: None,
            extension: None,
            typeahead: VecDeque::new(),
            actions: VecDeque::new(),
            slowed_until: None,
            language: None,
        }
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Collecting { deadline, .. } | State::Confirming { deadline, .. } => *deadline,
            State::Checking { .. } => self.slowed_until,
            _ => None,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done { .. })
    }

    /// Whether the agent is logged on and the line kept up.
    pub fn is_staying(&self) -> bool {
        matches!(self.state, State::Staying { .. })
    }

    /// Feeds one input.
    pub fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::Started => match (&self.state, self.mode) {
                (State::Idle, Mode::Login) => self.collect(Field::Agent, PromptId::AgentUser, now),
                (State::Idle, Mode::Logout) if self.cfg.station_verified => {
                    self.state = State::LookingUp;
                    self.actions.push_back(Action::LogoutStation);
                }
                // A station the caller could have forged ends nobody's session: whose, then?
                (State::Idle, Mode::Logout) => self.collect(Field::Agent, PromptId::AgentUser, now),
                _ => {}
            },
            Input::Digit(d) => self.on_digit(d, now),
            Input::PromptDone(id) => self.on_prompt_done(id, now),
            Input::CheckResult(r) => self.on_check_result(r, now),
            Input::AgentLanguage(l) => self.language = Some(l),
            Input::TimeLimit => match &self.state {
                State::Checking { agent, .. } => {
                    // The check still running will report back; its session must not stay.
                    self.state = State::Done {
                        checking: Some(agent.clone()),
                    };
                    self.actions.push_back(Action::Hangup(Outcome::TimeLimit));
                }
                State::Done { .. } | State::Closing { .. } => {}
                State::Staying { .. } => {
                    self.actions.push_back(Action::Logout {
                        reason: REASON_MAX_HOURS,
                    });
                    self.close(&[PromptId::Goodbye], Outcome::TimeLimit);
                }
                State::Idle
                | State::LookingUp
                | State::Collecting { .. }
                | State::Confirming { .. } => self.close(&[PromptId::Goodbye], Outcome::TimeLimit),
            },
            Input::Hangup => {
                if let State::Staying { .. } = self.state {
                    self.actions.push_back(Action::Logout {
                        reason: REASON_STATION_HUNG_UP,
                    });
                }
                let checking = self.checking_agent();
                self.state = State::Done { checking };
            }
            Input::Shutdown => match &self.state {
                State::Checking { agent, .. } => {
                    self.state = State::Done {
                        checking: Some(agent.clone()),
                    };
                    self.actions.push_back(Action::Hangup(Outcome::Shutdown));
                }
                State::Done { .. } | State::Closing { .. } => {}
                State::Staying { .. } => {
                    self.actions.push_back(Action::Logout {
                        reason: REASON_SHUTDOWN,
                    });
                    self.close(&[PromptId::Goodbye], Outcome::Shutdown);
                }
                _ => self.close(&[PromptId::Goodbye], Outcome::Shutdown),
            },
            Input::LineLost => {
                if let State::Staying { .. } = self.state {
                    self.actions.push_back(Action::Logout {
                        reason: REASON_STATION_LOST,
                    });
                    self.close(&[], Outcome::LineLost);
                }
            }
            Input::SessionEnded { by } => {
                // While a change of this line's own is pending, its answer tells what happened.
                if let State::Staying { pending: false } = self.state {
                    let prompt = match by {
                        EndedBy::LogOnElsewhere => PromptId::SessionDropped,
                        EndedBy::Administrator => PromptId::AdminLogout,
                        EndedBy::Other => PromptId::AgentLoggedOff,
                    };
                    self.close(&[prompt], Outcome::Dropped);
                }
            }
        }
    }

    /// Wakes the flow at or after `poll_timeout()`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let (State::Checking { .. }, Some(until)) = (&self.state, self.slowed_until) {
            if now >= until {
                self.slowed_until = None;
                self.on_check_result(CheckOutcome::Incorrect, now);
            }
            return;
        }
        if let State::Confirming {
            deadline: Some(d), ..
        } = self.state
        {
            if now >= d {
                self.close(&[PromptId::Goodbye], Outcome::Cancelled);
            }
            return;
        }
        let State::Collecting {
            field,
            prompt,
            playing,
            digits,
            deadline,
            replayed,
        } = &mut self.state
        else {
            return;
        };
        if deadline.is_none_or(|d| now < d) {
            return;
        }
        if !digits.is_empty() {
            let (field, entry) = (*field, std::mem::take(digits));
            self.finish_entry(field, entry, now);
        } else if !*replayed {
            *replayed = true;
            *playing = true;
            *deadline = None;
            let p = *prompt;
            self.actions.push_back(Action::Play(p));
        } else {
            self.close(&[PromptId::Goodbye], Outcome::NoInput);
        }
    }

    fn checking_agent(&self) -> Option<AgentNumber> {
        match &self.state {
            State::Checking { agent, .. } => Some(agent.clone()),
            State::Done { checking } => checking.clone(),
            _ => None,
        }
    }

    fn collect(&mut self, field: Field, prompt: PromptId, now: Instant) {
        self.state = State::Collecting {
            field,
            prompt,
            playing: false,
            digits: String::new(),
            deadline: None,
            replayed: false,
        };
        if self.typeahead.is_empty() {
            if let State::Collecting { playing, .. } = &mut self.state {
                *playing = true;
            }
            self.actions.push_back(Action::Play(prompt));
            return;
        }
        // Keys typed ahead answer this prompt before it is played.
        while let Some(d) = self.typeahead.pop_front() {
            self.on_digit(d, now);
            if !matches!(self.state, State::Collecting { field: f, .. } if f == field) {
                return;
            }
        }
        if let State::Collecting {
            deadline, digits, ..
        } = &mut self.state
        {
            let wait = if digits.is_empty() {
                self.cfg.first_digit_timeout
            } else {
                self.cfg.digit_timeout
            };
            *deadline = Some(now + wait);
        }
    }

    fn on_digit(&mut self, d: Digit, now: Instant) {
        match &mut self.state {
            State::Collecting {
                field,
                playing,
                digits,
                deadline,
                ..
            } => {
                if *playing {
                    *playing = false;
                    self.actions.push_back(Action::StopPrompt);
                }
                let field = *field;
                if d.as_char() == '#' {
                    let entry = std::mem::take(digits);
                    self.finish_entry(field, entry, now);
                    return;
                }
                digits.push(d.as_char());
                if digits.len() >= self.cfg.max_digits {
                    let entry = std::mem::take(digits);
                    self.finish_entry(field, entry, now);
                } else {
                    *deadline = Some(now + self.cfg.digit_timeout);
                }
            }
            // Keys typed while a check or a logout call's station lookup runs answer the next
            // prompt (an agent keying the moment the logout number answers loses none).
            State::Checking { .. } | State::LookingUp => {
                if self.typeahead.len() < 2 * self.cfg.max_digits + 2 {
                    self.typeahead.push_back(d);
                }
            }
            State::Confirming {
                agent,
                passcode,
                playing,
                ..
            } => match d.as_char() {
                '1' => {
                    if *playing {
                        self.actions.push_back(Action::StopPrompt);
                    }
                    let (agent, passcode) = (agent.clone(), passcode.clone());
                    self.actions.push_back(Action::Check {
                        agent: agent.clone(),
                        passcode: passcode.clone(),
                        replace: true,
                        new_passcode: None,
                        extension: self.extension.clone(),
                    });
                    self.state = State::Checking { agent, passcode };
                }
                '2' => self.close(&[PromptId::Goodbye], Outcome::Cancelled),
                _ => {}
            },
            State::Staying { pending } => {
                if !*pending {
                    let action = match d.as_char() {
                        '1' => Some(Action::SetStatus(AgentStatus::Available)),
                        '2' => Some(Action::SetStatus(AgentStatus::OnBreak)),
                        '3' => Some(Action::SetStatus(AgentStatus::WorkOffline)),
                        '9' => Some(Action::Logout {
                            reason: REASON_BY_PHONE,
                        }),
                        '0' => Some(Action::QueryStatus),
                        _ => None,
                    };
                    if let Some(a) = action {
                        *pending = true;
                        self.actions.push_back(a);
                    }
                }
            }
            State::Idle | State::Closing { .. } | State::Done { .. } => {}
        }
    }

    fn finish_entry(&mut self, field: Field, entry: String, now: Instant) {
        match field {
            Field::Agent if entry.is_empty() => self.failure(now),
            Field::Agent => {
                self.agent = Some(AgentNumber(entry));
                self.collect(Field::Passcode, PromptId::AgentPass, now);
            }
            Field::Passcode if self.cfg.ask_extension => {
                self.passcode = Some(Passcode(entry));
                self.collect(Field::Extension, PromptId::AgentExtension, now);
            }
            Field::Passcode => self.check(Passcode(entry), None, now),
            Field::Extension => match self.passcode.take() {
                Some(passcode) => self.check(passcode, Some(entry), now),
                None => self.failure(now),
            },
            Field::NewPasscode => {
                let Some(change) = self.change.as_mut() else {
                    return self.failure(now);
                };
                if rules::new_passcode_problem(&entry, &change.agent.0).is_some() {
                    return self.change_failure(PromptId::PasscodeInvalid, now);
                }
                change.first = Some(Passcode(entry));
                self.collect(Field::RepeatPasscode, PromptId::PasscodeAgain, now);
            }
            Field::RepeatPasscode => {
                let Some(change) = self.change.take() else {
                    return self.failure(now);
                };
                match change.first {
                    Some(first) if first.0 == entry => {
                        self.state = State::Checking {
                            agent: change.agent.clone(),
                            passcode: first.clone(),
                        };
                        self.actions.push_back(Action::Check {
                            agent: change.agent,
                            passcode: change.old,
                            replace: false,
                            new_passcode: Some(first),
                            extension: self.extension.clone(),
                        });
                    }
                    _ => {
                        self.change = Some(PasscodeChange {
                            first: None,
                            ..change
                        });
                        self.change_failure(PromptId::PasscodeMismatch, now);
                    }
                }
            }
        }
    }

    /// Asks the store about the agent number keyed and `passcode`.
    fn check(&mut self, passcode: Passcode, extension: Option<String>, now: Instant) {
        let Some(agent) = self.agent.take() else {
            return self.failure(now);
        };
        self.state = State::Checking {
            agent: agent.clone(),
            passcode: passcode.clone(),
        };
        self.extension = extension.clone();
        self.actions.push_back(Action::Check {
            agent,
            passcode,
            replace: false,
            new_passcode: None,
            extension,
        });
    }

    /// A new passcode refused or not repeated right: ask again, up to the attempt limit.
    fn change_failure(&mut self, prompt: PromptId, now: Instant) {
        self.failures += 1;
        if self.failures >= self.cfg.max_attempts {
            self.change = None;
            self.close(&[PromptId::Goodbye], Outcome::Incorrect);
        } else {
            if let Some(c) = self.change.as_mut() {
                c.first = None;
            }
            self.collect(Field::NewPasscode, prompt, now);
        }
    }

    fn failure(&mut self, now: Instant) {
        self.failures += 1;
        if self.failures >= self.cfg.max_attempts {
            self.close(
                &[PromptId::LoginIncorrect, PromptId::Goodbye],
                Outcome::Incorrect,
            );
        } else {
            self.collect(Field::Agent, PromptId::AgentIncorrect, now);
        }
    }

    /// "That agent is already logged on." counts as an attempt, then asks for the agent number
    /// again (8x8 Contact Now), or says goodbye at the attempt limit.
    fn already_logged_on(&mut self, now: Instant) {
        self.failures += 1;
        if self.failures >= self.cfg.max_attempts {
            self.close(
                &[PromptId::AgentAlreadyOn, PromptId::Goodbye],
                Outcome::AlreadyLoggedOn,
            );
        } else {
            self.collect(Field::Agent, PromptId::AgentAlreadyOnRetry, now);
        }
    }

    fn on_prompt_done(&mut self, id: PromptId, now: Instant) {
        match &mut self.state {
            State::Collecting {
                prompt,
                playing,
                digits,
                deadline,
                ..
            } if *playing && *prompt == id => {
                *playing = false;
                let wait = if digits.is_empty() {
                    self.cfg.first_digit_timeout
                } else {
                    self.cfg.digit_timeout
                };
                *deadline = Some(now + wait);
            }
            State::Confirming {
                playing, deadline, ..
            } if *playing && id == PromptId::AgentConfirm => {
                *playing = false;
                *deadline = Some(now + self.cfg.first_digit_timeout);
            }
            State::Closing {
                playing,
                rest,
                outcome,
            } if *playing == id => match rest.pop_front() {
                Some(next) => {
                    *playing = next;
                    self.actions.push_back(Action::Play(next));
                }
                None => {
                    let outcome = *outcome;
                    self.state = State::Done { checking: None };
                    self.actions.push_back(Action::Hangup(outcome));
                }
            },
            _ => {}
        }
    }

    fn on_check_result(&mut self, r: CheckOutcome, now: Instant) {
        if let State::Staying { pending } = &mut self.state {
            *pending = false;
            match r {
                CheckOutcome::Status(s) => self.actions.push_back(Action::Play(s.prompt())),
                CheckOutcome::LoggedOff | CheckOutcome::NotLoggedOn => {
                    self.close(&[PromptId::AgentLoggedOff], Outcome::LoggedOff)
                }
                _ => self
                    .actions
                    .push_back(Action::Play(PromptId::ServiceUnavailable)),
            }
            return;
        }
        if let State::LookingUp = self.state {
            match r {
                CheckOutcome::LoggedOff => {
                    self.close(&[PromptId::AgentLoggedOff], Outcome::LoggedOff)
                }
                CheckOutcome::Unavailable => {
                    self.close(&[PromptId::ServiceUnavailable], Outcome::Unavailable)
                }
                // Nobody at this station: whose session, then?
                _ => self.collect(Field::Agent, PromptId::AgentUser, now),
            }
            return;
        }
        let (agent, passcode) = match &self.state {
            State::Checking { agent, passcode } => (agent.clone(), passcode.clone()),
            State::Done {
                checking: Some(agent),
            } => {
                if r == CheckOutcome::LoggedIn {
                    self.actions.push_back(Action::Release {
                        agent: agent.clone(),
                    });
                }
                self.state = State::Done { checking: None };
                return;
            }
            _ => return,
        };
        if let Some(l) = self.language.take().filter(|_| {
            !matches!(
                r,
                CheckOutcome::Incorrect | CheckOutcome::OverLimit | CheckOutcome::Unavailable
            )
        }) {
            self.actions.push_back(Action::UseLanguage(l));
        }
        match r {
            CheckOutcome::OverLimit => self.slowed_until = Some(now + OVER_LIMIT_DELAY),
            CheckOutcome::LoggedIn if self.cfg.stay => {
                self.typeahead.clear();
                self.state = State::Staying { pending: false };
                self.actions.push_back(Action::Play(PromptId::AgentLoginOk));
            }
            CheckOutcome::LoggedIn => self.close(&[PromptId::AgentLoginOk], Outcome::LoggedIn),
            CheckOutcome::Incorrect => self.failure(now),
            CheckOutcome::AlreadyLoggedOn => self.already_logged_on(now),
            CheckOutcome::MustChangePasscode => {
                self.typeahead.clear();
                self.change = Some(PasscodeChange {
                    agent,
                    old: passcode,
                    first: None,
                });
                self.collect(Field::NewPasscode, PromptId::PasscodeExpired, now);
            }
            CheckOutcome::NeedsConfirm => {
                self.typeahead.clear();
                self.state = State::Confirming {
                    agent,
                    passcode,
                    playing: true,
                    deadline: None,
                };
                self.actions.push_back(Action::Play(PromptId::AgentConfirm));
            }
            CheckOutcome::Locked => {
                self.close(&[PromptId::AgentLocked, PromptId::Goodbye], Outcome::Locked)
            }
            CheckOutcome::StationInUse => self.close(
                &[PromptId::StationInUse, PromptId::Goodbye],
                Outcome::StationInUse,
            ),
            CheckOutcome::StationNotAllowed => self.close(
                &[PromptId::StationNotAllowed, PromptId::Goodbye],
                Outcome::StationNotAllowed,
            ),
            CheckOutcome::LoggedOff => self.close(&[PromptId::AgentLoggedOff], Outcome::LoggedOff),
            CheckOutcome::NotLoggedOn => self.close(
                &[PromptId::AgentNotLoggedOn, PromptId::Goodbye],
                Outcome::NotLoggedOn,
            ),
            // Only stay lines ask for a status.
            CheckOutcome::Status(_) => {}
            CheckOutcome::Unavailable => {
                self.close(&[PromptId::ServiceUnavailable], Outcome::Unavailable)
            }
        }
    }

    fn close(&mut self, prompts: &[PromptId], outcome: Outcome) {
        self.typeahead.clear();
        if matches!(
            self.state,
            State::Collecting { playing: true, .. } | State::Confirming { playing: true, .. }
        ) {
            self.actions.push_back(Action::StopPrompt);
        }
        let mut rest: VecDeque<PromptId> = prompts.iter().copied().collect();
        match rest.pop_front() {
            Some(first) => {
                self.actions.push_back(Action::Play(first));
                self.state = State::Closing {
                    playing: first,
                    rest,
                    outcome,
                };
            }
            None => {
                self.state = State::Done { checking: None };
                self.actions.push_back(Action::Hangup(outcome));
            }
        }
    }
}

#[cfg(test)]
#[path = "flow_tests.rs"]
mod tests;
