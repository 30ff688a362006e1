//! The login rules real contact centers enforce, as pure decisions with time as a parameter:
//! what to do when the agent is already logged on or the station is taken, which stations and
//! networks an agent may use, when wrong passcodes lock an agent, and how fast one source may
//! try.

use crate::login::decide::Entry;
use crate::login::route::CallRoute;
use crate::login::AgentStatus;
use crate::login::{AuditEvent, CheckOutcome};
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

/// What a login of an agent who already has a session does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlreadyLoggedOnPolicy {
    /// "That agent is already logged on." and back to the agent number (8x8 Contact Now).
    Reject,
    /// Ask "press 1 to log the other session out and log on here" (XCALLY).
    Confirm,
    /// The new station wins at once (Genesys CIC).
    Replace,
}

/// What a login at a station another agent is logged on at does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SameStationPolicy {
    /// "That station is in use by another agent." (Genesys: the first wins).
    Reject,
    /// The new agent takes the station; the other is logged out.
    Replace,
}

/// The store's view of who holds what, read inside the claim's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holdings {
    /// Where the agent is logged on now, if anywhere.
    pub agent_station: Option<String>,
    /// Which other agent is logged on at the caller's station, if any.
    pub station_agent: Option<String>,
}

/// What the claim's transaction does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecision {
    /// Record the session here, after removing the sessions listed (each with its reason).
    Claim {
        end: Vec<(String, &'static str)>,
    },
    AlreadyLoggedOn,
    /// Ask the caller before moving the session here.
    AskToReplace,
    StationInUse,
}

impl ClaimDecision {
    /// For a claim that records nothing: what the caller hears and the audit entry.
    pub fn refusal(&self) -> Option<(CheckOutcome, Entry)> {
        use AuditEvent::{LoginHeld, LoginRefused};
        Some(match self {
            ClaimDecision::Claim { .. } => return None,
            ClaimDecision::AlreadyLoggedOn => (
                CheckOutcome::AlreadyLoggedOn,
                Entry::new(LoginRefused, "already logged on"),
            ),
            ClaimDecision::AskToReplace => (
                CheckOutcome::NeedsConfirm,
                Entry::new(
                    LoginHeld,
                    "already logged on: the caller is asked to confirm",
                ),
            ),
            ClaimDecision::StationInUse => (
                CheckOutcome::StationInUse,
                Entry::new(LoginRefused, "station in use by another agent"),
            ),
        })
    }
}

/// Reason recorded for a force logout by an administrator (API or CLI).
pub const REASON_ADMINISTRATOR: &str = "logged out by an administrator";
/// Reason recorded for a session ended by a log on elsewhere (Genesys' wording).
pub const REASON_MOVED: &str = "subsequent log on at a different station";
/// Reason recorded for the session of a stay line whose gateway restarted.
pub const REASON_RESTART: &str = "gateway restart";
/// Reason recorded for the session of a stay line whose gateway stopped beating (a node of
/// several, closed by a surviving one after `node_timeout_secs`).
pub const REASON_NODE_LOST: &str = "node lost";
/// Reason recorded for a session older than `session_max_hours`.
pub const REASON_SESSION_EXPIRED: &str = "session_max_hours reached";
/// Reason recorded for a session ended because another agent took its station.
pub const REASON_STATION_TAKEN: &str = "another agent logged on at this station";

/// Decides a claim. `confirmed`: the caller already pressed 1 to move the session here.
pub fn decide_claim(
    agent: &str,
    holdings: &Holdings,
    already: AlreadyLoggedOnPolicy,
    same_station: SameStationPolicy,
    confirmed: bool,
) -> ClaimDecision {
    let mut end = Vec::new();
    if let Some(_at) = &holdings.agent_station {
        match (already, confirmed) {
            (AlreadyLoggedOnPolicy::Reject, _) => return ClaimDecision::AlreadyLoggedOn,
            (AlreadyLoggedOnPolicy::Confirm, false) => return ClaimDecision::AskToReplace,
            _ => end.push((agent.to_string(), REASON_MOVED)),
        }
    }
    if let Some(other) = holdings.station_agent.as_deref().filter(|o| *o != agent) {
        match same_station {
            SameStationPolicy::Reject => return ClaimDecision::StationInUse,
            SameStationPolicy::Replace => end.push((other.to_string(), REASON_STATION_TAKEN)),
        }
    }
    ClaimDecision::Claim { end }
}

/// Whether `station` matches a pattern where `*` stands for any run of characters
/// (`"2*@pbx.example"`, `"*@10.1.*"`).
pub fn station_matches(pattern: &str, station: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern.eq_ignore_ascii_case(station);
    }
    let s = station.to_ascii_lowercase();
    let mut rest = s.as_str();
    for (i, part) in parts.iter().enumerate() {
        let part = part.to_ascii_lowercase();
        if i == 0 {
            match rest.strip_prefix(part.as_str()) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part.as_str());
        } else {
            match rest.find(part.as_str()) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Whether an agent with these "Logon Stations" patterns may log on at `station` (no
/// patterns: anywhere).
pub fn station_allowed(patterns: &[String], station: &str) -> bool {
    patterns.is_empty() || patterns.iter().any(|p| station_matches(p, station))
}

/// An IP network, `10.0.0.0/8` or `2001:db8::/32` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a network such as \"10.0.0.0/8\" or \"2001:db8::/32\"");
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(Network { addr, prefix })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            _ => ip,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Whether `ip` is in one of `networks` (none listed: every address).
pub fn source_allowed(networks: &[Network], ip: IpAddr) -> bool {
    networks.is_empty() || networks.iter().any(|n| n.contains(ip))
}

/// Why a new passcode is refused (XCALLY's rules for a forced change), if it is.
pub fn new_passcode_problem(new: &str, agent: &str) -> Option<&'static str> {
    let digits: Vec<u8> = new.bytes().collect();
    if !(4..=12).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return Some("must be 4 to 12 digits");
    }
    if digits.iter().all(|d| *d == digits[0]) {
        return Some("must not be all one digit");
    }
    let steps: Vec<i16> = digits
        .windows(2)
        .map(|w| w[1] as i16 - w[0] as i16)
        .collect();
    if steps.iter().all(|s| *s == 1) || steps.iter().all(|s| *s == -1) {
        return Some("must not be a run such as 1234");
    }
    if new == agent {
        return Some("must not be the agent number");
    }
    None
}

/// Wrong-passcode lockout across calls (XCALLY): `after` failures within `window` lock the
/// agent for `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    pub after: u32,
    pub window: Duration,
    pub duration: Duration,
}

/// An agent's failure record, as stored (times in Unix milliseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    pub window_start_ms: Option<i64>,
    pub locked_until_ms: Option<i64>,
}

impl Failures {
    pub fn locked(&self, now_ms: i64) -> bool {
        self.locked_until_ms.is_some_and(|t| t > now_ms)
    }

    /// The record after one more wrong passcode at `now_ms`, and whether it locks the agent now.
    pub fn after_failure(self, rule: &Lockout, now_ms: i64) -> (Failures, bool) {
        let window_ms = rule.window.as_millis() as i64;
        let fresh = self
            .window_start_ms
            .is_none_or(|start| now_ms - start > window_ms);
        let (count, start) = if fresh {
            (1, now_ms)
        } else {
            (self.count + 1, self.window_start_ms.unwrap_or(now_ms))
        };
        if rule.after > 0 && count >= rule.after {
            let until = now_ms + rule.duration.as_millis() as i64;
            (
                Failures {
                    count: 0,
                    window_start_ms: None,
                    locked_until_ms: Some(until),
                },
                true,
            )
        } else {
            (
                Failures {
                    count,
                    window_start_ms: Some(start),
                    locked_until_ms: None,
                },
                false,
            )
        }
    }
}

/// What happens to the line after a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterLogin {
    Hangup,
    Stay,
}

/// Where the caller's station identity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StationFrom {
    From,
    Pai,
    Header,
    /// Asked by prompt after the passcode: an extension, or # for the agent's default.
    Prompt,
}

/// Where a caller whose identity is withheld (RFC 3323 privacy, `anonymous@anonymous.invalid`)
/// logs on: never at a station shared with other such callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnonymousStation {
    /// Asked by prompt after the passcode, as `station = "prompt"` does; # alone is the
    /// agent's default extension, or a station of the call alone.
    Prompt,
    /// A station of the call alone, without a prompt.
    Call,
}

/// The rules a login is checked against (from `[login]`).
#[derive(Debug, Clone)]
pub struct LoginPolicy {
    pub already_logged_on: AlreadyLoggedOnPolicy,
    pub same_station: SameStationPolicy,
    pub lockout: Lockout,
    /// Networks calls may log on from (empty: any).
    pub networks: Vec<Network>,
    /// The status a new session starts in.
    pub initial_status: AgentStatus,
    /// Sessions are held by a line kept up (`after_login = "stay"`).
    pub stay: bool,
    /// Login attempts a minute per calling station and per source address (0: no limit);
    /// counted in the store when several nodes share it.
    pub station_attempts_per_min: u32,
    pub source_attempts_per_min: u32,
}

impl LoginPolicy {
    /// The policy of a call routed to `route`: its tenant's own policies where it has them.
    pub fn for_route(&self, route: &CallRoute) -> LoginPolicy {
        LoginPolicy {
            already_logged_on: route.already_logged_on,
            same_station: route.same_station,
            ..self.clone()
        }
    }
}

impl serde::Serialize for Network {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
