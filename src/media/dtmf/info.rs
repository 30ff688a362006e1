//! Keys sent as SIP INFO: `application/dtmf-relay` (`Signal=5` / `Duration=160` lines, any
//! order, with or without a trailing CRLF; `Signal=10`/`11` meaning `*`/`#` as some phones send)
//! and `application/dtmf` (a bare key).

use super::Digit;

/// The content types answered with a key (also sent in Accept with a 415).
pub const ACCEPTED_TYPES: &str = "application/dtmf-relay, application/dtmf";
/// Bytes of an INFO body looked at.
const MAX_BODY: usize = 1024;

/// Why an INFO carries no key we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    /// Not a DTMF content type (answered 415).
    #[error("content type {0:?} is not DTMF: agentgw accepts application/dtmf-relay and application/dtmf")]
    Unsupported(String),
    /// A DTMF content type with a body that says no key (answered 400).
    #[error("{0}")]
    Malformed(String),
}

/// The key in an INFO; `Ok(None)` for an INFO without a body (a keepalive).
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<Option<Digit>, InfoError> {
    let body = &body[..body.len().min(MAX_BODY)];
    let text = String::from_utf8_lossy(body);
    let Some(ct) = content_type else {
        return if text.trim().is_empty() {
            Ok(None)
        } else {
            Err(InfoError::Unsupported(String::new()))
        };
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/dtmf-relay" => {
            let signal = text
                .lines()
                .filter_map(|l| l.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("signal"))
                .map(|(_, v)| v.trim().to_string())
                .ok_or_else(|| {
                    InfoError::Malformed("dtmf-relay body has no Signal= line".into())
                })?;
            key(&signal).map(Some)
        }
        "application/dtmf" => key(text.trim()).map(Some),
        _ if text.trim().is_empty() && mime.is_empty() => Ok(None),
        _ => Err(InfoError::Unsupported(mime)),
    }
}

fn key(s: &str) -> Result<Digit, InfoError> {
    let bad = || InfoError::Malformed(format!("{s:?} is not a DTMF key"));
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Digit::from_char(c).ok_or_else(bad),
        _ => s
            .parse::<u8>()
            .ok()
            .and_then(Digit::from_event)
            .ok_or_else(bad),
    }
}

#[cfg(test)]
#[path = "info_tests.rs"]
mod tests;
