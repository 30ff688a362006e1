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

/// User parts that PBXs and phones send for a withheld caller ID.
const WITHHELD_USERS: &[&str] = &["anonymous", "restricted", "unavailable", "unknown"];

/// Prefix of the stations given to callers whose identity is withheld.
const ONE_CALL_PREFIX: &str = "anonymous-";

impl Station {
    /// Whether a signalled identity says nothing about where the caller is (RFC 3323 privacy):
    /// empty, `anonymous@anonymous.invalid`, or a user part such as `anonymous`, `restricted`,
    /// `unavailable`, `unknown` (any case) at any host.
    pub fn is_withheld(identity: &str) -> bool {
        let (user, host) = identity.split_once('@').unwrap_or((identity, ""));
        user.is_empty()
            || host.eq_ignore_ascii_case("anonymous.invalid")
            || WITHHELD_USERS.iter().any(|w| user.eq_ignore_ascii_case(w))
    }

    /// A station of one call alone, for a caller whose identity is withheld: `anonymous-` and
    /// 48 random bits, so that two such callers never share a station.
    pub fn of_one_call() -> Station {
        let bits = rand::random::<u64>() & 0xffff_ffff_ffff;
        Station(format!("{ONE_CALL_PREFIX}{bits:012x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withheld_identities_are_recognised() {
        for id in [
            "",
            "anonymous@anonymous.invalid",
            "Anonymous@pbx.example",
            "restricted@10.0.0.1",
            "UNAVAILABLE",
            "x@Anonymous.Invalid",
            "@pbx.example",
        ] {
            assert!(Station::is_withheld(id), "{id:?}");
        }
        for id in [
            "2001@pbx.example",
            "desk-42",
            "+15551230007",
            "anon@pbx.example",
        ] {
            assert!(!Station::is_withheld(id), "{id:?}");
        }
    }

    #[test]
    fn stations_of_one_call_differ() {
        let (a, b) = (Station::of_one_call(), Station::of_one_call());
        assert_ne!(a, b);
        assert!(a.as_str().starts_with(ONE_CALL_PREFIX) && a.as_str().len() == 22);
    }
}
