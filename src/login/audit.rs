//! The kinds of audit entry (and of event on the stream and webhooks): every attempt, login,
//! logout, lockout and administrative change.

use std::fmt;

/// One kind of audit entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditEvent {
    Login,
    Logout,
    LoginFailed,
    LoginRefused,
    /// Right credentials, the login waits on the caller (a confirmation, a new passcode).
    LoginHeld,
    Lockout,
    Unlock,
    Status,
    AgentAdded,
    AgentUpdated,
    AgentRemoved,
    PasscodeChanged,
}

impl AuditEvent {
    pub const ALL: [AuditEvent; 12] = [
        AuditEvent::Login,
        AuditEvent::Logout,
        AuditEvent::LoginFailed,
        AuditEvent::LoginRefused,
        AuditEvent::LoginHeld,
        AuditEvent::Lockout,
        AuditEvent::Unlock,
        AuditEvent::Status,
        AuditEvent::AgentAdded,
        AuditEvent::AgentUpdated,
        AuditEvent::AgentRemoved,
        AuditEvent::PasscodeChanged,
    ];

    /// The name stored in the audit log and sent on the event stream.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Login => "login",
            AuditEvent::Logout => "logout",
            AuditEvent::LoginFailed => "login_failed",
            AuditEvent::LoginRefused => "login_refused",
            AuditEvent::LoginHeld => "login_held",
            AuditEvent::Lockout => "lockout",
            AuditEvent::Unlock => "unlock",
            AuditEvent::Status => "status",
            AuditEvent::AgentAdded => "agent_added",
            AuditEvent::AgentUpdated => "agent_updated",
            AuditEvent::AgentRemoved => "agent_removed",
            AuditEvent::PasscodeChanged => "passcode_changed",
        }
    }

    pub fn parse(s: &str) -> Option<AuditEvent> {
        AuditEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// A failed or refused login or a lockout: logged for fail2ban too.
    pub fn is_security(self) -> bool {
        matches!(
            self,
            AuditEvent::LoginFailed | AuditEvent::LoginRefused | AuditEvent::Lockout
        )
    }
}

impl fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_reads_back_from_its_name() {
        for e in AuditEvent::ALL {
            assert_eq!(AuditEvent::parse(e.as_str()), Some(e));
        }
        assert_eq!(AuditEvent::parse("logon"), None);
    }
}
