//! The login decision as one pure function: what the store read of the agent, whether the
//! passcode was right, the policy, the attempt limiters' verdict and the time go in; the
//! answer for the caller, the audit entries and the failure count to write come out. Both
//! store backends run it; they only read, hash and write.

use crate::login::rules::{self, Failures, Lockout, Network};
use crate::login::{AuditEvent, CheckOutcome, Mode, Passcode};
use std::net::IpAddr;

/// Reason audited for an attempt over the per-station or per-source limit.
pub const REASON_OVER_LIMIT: &str = "too many attempts from this station or source";

/// What a login needs to know about an agent, as the store read it.
#[derive(Debug, Clone)]
pub struct AgentRecord {
    pub passcode_hash: String,
    pub enabled: bool,
    pub failures: Failures,
    pub stations: Vec<String>,
    pub networks: Vec<Network>,
    /// The passcode must be changed at the next login.
    pub must_change: bool,
    /// The station used when the agent presses # at the extension prompt.
    pub default_extension: String,
    /// The agent's prompt language; empty: the tenant's.
    pub language: String,
}

/// The attempt, as the decision sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub mode: Mode,
    /// The station or the source is over its attempts a minute.
    pub over_limit: bool,
    pub source_ip: IpAddr,
    /// The caller's station, as signalled.
    pub station: &'a str,
    /// The extension keyed (`station = "prompt"`); empty: the agent's default.
    pub extension: Option<&'a str>,
    /// The new passcode of a forced change.
    pub new_passcode: Option<&'a Passcode>,
    pub agent: &'a str,
}

/// The rules the credentials are checked against.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Networks calls may log on from (empty: any).
    pub networks: &'a [Network],
    pub lockout: &'a Lockout,
}

/// One audit entry the decision asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub event: AuditEvent,
    pub reason: &'static str,
}

impl Entry {
    pub const fn new(event: AuditEvent, reason: &'static str) -> Entry {
        Entry { event, reason }
    }

    /// Whether it is a failed or refused login, logged for fail2ban too.
    pub fn is_security(&self) -> bool {
        self.event.is_security()
    }
}

/// What the store writes for a decision, before its audit entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Writes {
    /// The agent's failure record, and whether it locks the agent now (a `LOCKOUT` entry).
    pub failures: Option<(Failures, bool)>,
    /// Set the new passcode of a forced change.
    pub set_passcode: bool,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The caller hears `answer`; `writes`, then the `audit` entry.
    Stop {
        answer: CheckOutcome,
        audit: Entry,
        writes: Writes,
    },
    /// The new passcode of a forced change breaks a rule; `writes` all the same.
    BadNewPasscode {
        problem: &'static str,
        writes: Writes,
    },
    /// The credentials are right and the rules allow going on: `writes`, then claim a
    /// session at `station` (a login) or end the agent's session (a logout).
    Proceed { station: String, writes: Writes },
}

impl Verdict {
    fn stop(answer: CheckOutcome, event: AuditEvent, reason: &'static str) -> Verdict {
        Verdict::Stop {
            answer,
            audit: Entry::new(event, reason),
            writes: Writes::default(),
        }
    }
}

impl Verdict {
    /// Whether the credentials were right (the caller is the agent): the call may go on in
    /// the agent's own language.
    pub fn credentials_right(&self) -> bool {
        match self {
            Verdict::Proceed { .. } | Verdict::BadNewPasscode { .. } => true,
            Verdict::Stop { answer, .. } => matches!(
                answer,
                CheckOutcome::MustChangePasscode | CheckOutcome::StationNotAllowed
            ),
        }
    }
}

/// The audit entry of a lockout.
pub const LOCKOUT: Entry = Entry::new(AuditEvent::Lockout, "too many wrong passcodes");

/// Decides a login or logout attempt. `record` is the agent as read (None: no such agent),
/// `right` whether the passcode matched its hash; over the limit, neither is looked at.
pub fn decide(
    a: &Attempt<'_>,
    record: Option<&AgentRecord>,
    right: bool,
    rules: &Rules<'_>,
    now_ms: i64,
) -> Verdict {
    use CheckOutcome::{Incorrect, Locked, MustChangePasscode, OverLimit, StationNotAllowed};
    if a.over_limit {
        return Verdict::stop(OverLimit, AuditEvent::LoginRefused, REASON_OVER_LIMIT);
    }
    if !rules::source_allowed(rules.networks, a.source_ip) {
        return Verdict::stop(
            Incorrect,
            AuditEvent::LoginRefused,
            "source network not allowed",
        );
    }
    let Some(r) = record else {
        return Verdict::stop(Incorrect, AuditEvent::LoginFailed, "unknown agent");
    };
    // Before the passcode is looked at: a barred source never counts towards the agent's
    // lockout (anyone could lock an agent out from outside), and learns nothing of it.
    if !rules::source_allowed(&r.networks, a.source_ip) {
        let reason = "source network not allowed for this agent";
        return Verdict::stop(Incorrect, AuditEvent::LoginRefused, reason);
    }
    if r.failures.locked(now_ms) {
        return match right {
            true => Verdict::stop(Locked, AuditEvent::LoginRefused, "agent locked"),
            false => Verdict::stop(
                Incorrect,
                AuditEvent::LoginFailed,
                "wrong passcode (agent locked)",
            ),
        };
    }
    if !right {
        return Verdict::Stop {
            answer: Incorrect,
            audit: Entry::new(AuditEvent::LoginFailed, "wrong passcode"),
            writes: Writes {
                failures: Some(r.failures.after_failure(rules.lockout, now_ms)),
                set_passcode: false,
            },
        };
    }
    if !r.enabled {
        return Verdict::stop(Incorrect, AuditEvent::LoginFailed, "agent disabled");
    }
    let mut writes = Writes {
        failures: (r.failures.count > 0).then_some((Failures::default(), false)),
        set_passcode: false,
    };
    if a.mode == Mode::Logout {
        let station = a.station.to_string();
        return Verdict::Proceed { station, writes };
    }
    // An extension keyed at the prompt is the station; # alone is the agent's default.
    let station = match a.extension {
        Some("") if !r.default_extension.is_empty() => r.default_extension.clone(),
        Some(ext) if !ext.is_empty() => ext.to_string(),
        _ => a.station.to_string(),
    };
    if r.must_change {
        let Some(new) = a.new_passcode else {
            let audit = Entry::new(AuditEvent::LoginHeld, "the passcode must be changed");
            return Verdict::Stop {
                answer: MustChangePasscode,
                audit,
                writes,
            };
        };
        if let Some(problem) = rules::new_passcode_problem(&new.0, a.agent) {
            return Verdict::BadNewPasscode { problem, writes };
        }
        writes.set_passcode = true;
    }
    if !rules::station_allowed(&r.stations, &station) {
        let audit = Entry::new(
            AuditEvent::LoginRefused,
            "station not allowed for this agent",
        );
        return Verdict::Stop {
            answer: StationNotAllowed,
            audit,
            writes,
        };
    }
    Verdict::Proceed { station, writes }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
