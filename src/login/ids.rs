//! The identifiers a login deals in, as types that cannot be mixed up: the agent number and
//! passcode keyed, the station the call comes from, the tenant, the SIP Call-ID of the call.

use std::fmt;

/// A passcode as keyed by the caller. Its `Debug` never shows the digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Passcode(pub String);

impl fmt::Debug for Passcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passcode(***)")
    }
}

/// Identifiers that are text on the wire and in the store, each a type of its own.
macro_rules! text_id {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )*};
}

text_id! {
    /// An agent number as keyed by the caller.
    AgentNumber,
    /// Where an agent logs on: `user@host` of the caller (or what a PBX asserts), or an extension.
    Station,
    /// A tenant (OneContact's tenants, 8x8's services): agents, stations and sessions are each
    /// tenant's own.
    Tenant,
    /// The SIP Call-ID of a call: a stay line's session names it.
    CallId,
}
