//! The identifiers a login deals in, as types that cannot be mixed up: the agent number and
//! passcode keyed, the station the call comes from, the tenant, the SIP Call-ID of the call.

use std::fmt;

/// An agent number as keyed by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentNumber(pub String);

impl fmt::Display for AgentNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A passcode as keyed by the caller. Its `Debug` never shows the digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Passcode(pub String);

impl fmt::Debug for Passcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passcode(***)")
    }
}

/// Where an agent logs on: `user@host` of the caller (or what a PBX asserts), or an extension.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Station(pub String);

impl Station {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Station {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant (OneContact's tenants, 8x8's services): agents, stations and sessions are each
/// tenant's own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tenant(pub String);

impl Tenant {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The SIP Call-ID of a call: a stay line's session names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallId(pub String);

impl CallId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
