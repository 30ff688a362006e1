//! SIP Digest authentication of callers (RFC 3261 §22, RFC 8760): the challenges (SHA-256
//! and MD5, in the order configured, qop=auth), nonces that expire and whose counts are used
//! once, and a response checked against a phone account's HA1. Pure: the clock and the
//! account come in as arguments.

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

use crate::hex;

/// Which callers must authenticate (`[sip] authenticate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Authenticate {
    /// Every caller outside `[sip] trusted_networks`.
    Untrusted,
    /// Nobody: every caller is taken, and only a trusted network's station is believed.
    Off,
}

/// How long a nonce is good for, seconds; past it the caller is challenged again with
/// `stale=true` (a phone answers at once, without asking its user).
pub const NONCE_LIFETIME_SECS: u64 = 300;

/// Longest user name taken from a peer.
pub const MAX_USERNAME_CHARS: usize = 64;

/// Successful authentications remembered (their nonce and count) before expired ones are
/// dropped; each needs the account's password, so only phones that authenticate fill it.
const MAX_NONCES_IN_USE: usize = 100_000;

/// A digest algorithm of RFC 8760 (the `-sess` variants are not offered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum Algorithm {
    #[serde(rename = "SHA-256")]
    Sha256,
    #[serde(rename = "MD5")]
    Md5,
}

impl Algorithm {
    /// As written in the `algorithm` parameter.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    fn of(name: &str) -> Option<Algorithm> {
        if name.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else if name.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else {
            None
        }
    }

    /// The lowercase hex digest of `data`.
    pub fn hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Sha256 => hex::encode(&Sha256::digest(data)),
            Algorithm::Md5 => hex::encode(&Md5::digest(data)),
        }
    }
}

/// A phone account's secrets for one realm: H(user:realm:password) by each algorithm.
#[derive(Clone, PartialEq, Eq)]
pub struct Ha1s {
    pub sha256: String,
    pub md5: String,
}

impl std::fmt::Debug for Ha1s {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ha1s(..)")
    }
}

impl Ha1s {
    pub fn of(user: &str, realm: &str, password: &str) -> Ha1s {
        let a1 = format!("{user}:{realm}:{password}");
        Ha1s {
            sha256: Algorithm::Sha256.hex(a1.as_bytes()),
            md5: Algorithm::Md5.hex(a1.as_bytes()),
        }
    }

    fn get(&self, algorithm: Algorithm) -> &str {
        match algorithm {
            Algorithm::Sha256 => &self.sha256,
            Algorithm::Md5 => &self.md5,
        }
    }
}

/// The `Authorization` header's Digest credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    pub cnonce: String,
    /// The nonce count, `nc`.
    pub count: u32,
}

/// Reads `Digest username="…", realm="…", …`; the error says what is wrong. qop=auth is
/// required (RFC 8760 §2.5): without it a response could be replayed at will.
pub fn parse(value: &str) -> Result<Credentials, &'static str> {
    let params = digest_params(value).ok_or("not Digest credentials")??;
    let get = |name: &'static str| params.get(name).cloned().ok_or(name);
    let missing = |name: &'static str| match name {
        "username" => "no username",
        "realm" => "no realm",
        "nonce" => "no nonce",
        "uri" => "no uri",
        "response" => "no response",
        _ => "a parameter missing",
    };
    let username = get("username").map_err(missing)?;
    if username.is_empty() || username.chars().count() > MAX_USERNAME_CHARS {
        return Err("username empty or too long");
    }
    let algorithm = match params.get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::of(a).ok_or("algorithm not offered")?,
    };
    match params.get("qop").map(String::as_str) {
        Some(q) if q.eq_ignore_ascii_case("auth") => {}
        Some(_) => return Err("qop other than auth"),
        None => return Err("no qop (qop=auth is required)"),
    }
    let count = params
        .get("nc")
        .and_then(|nc| hex::decode(nc)?.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or("no nonce count (nc)")?;
    let cnonce = get("cnonce").map_err(|_| "no cnonce")?;
    Ok(Credentials {
        username,
        realm: get("realm").map_err(missing)?,
        nonce: get("nonce").map_err(missing)?,
        uri: get("uri").map_err(missing)?,
        response: get("response").map_err(missing)?.to_ascii_lowercase(),
        algorithm,
        cnonce,
        count,
    })
}

/// Comma-separated parameters, commas inside quotes kept.
fn split_params(s: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty())
}

/// The parameters of a `Digest …` header value, names in lowercase and quotes taken off;
/// None when the scheme is not Digest.
fn digest_params(value: &str) -> Option<Result<HashMap<String, String>, &'static str>> {
    let value = value.trim();
    let rest = match value.get(..6) {
        Some(scheme) if scheme.eq_ignore_ascii_case("digest") => &value[6..],
        _ => return None,
    };
    let mut params: HashMap<String, String> = HashMap::new();
    for part in split_params(rest) {
        let Some((name, v)) = part.split_once('=') else {
            return Some(Err("a parameter without a value"));
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        params.insert(name.trim().to_ascii_lowercase(), v.to_string());
    }
    Some(Ok(params))
}

/// A phone's side: the `Authorization` value answering `challenge` (a `WWW-Authenticate`
/// value) for a `method` request to `uri`, as `user` with `password`, the `count`th use of
/// its nonce; None when the challenge is not a Digest one with qop=auth and an algorithm
/// known here.
pub fn authorization(
    challenge: &str,
    (user, password): (&str, &str),
    method: &str,
    uri: &str,
    count: u32,
) -> Option<String> {
    let params = digest_params(challenge)?.ok()?;
    let algorithm = match params.get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::of(a)?,
    };
    let qops = params.get("qop")?;
    if !qops
        .split(',')
        .any(|q| q.trim().eq_ignore_ascii_case("auth"))
    {
        return None;
    }
    let c = Credentials {
        username: user.to_string(),
        realm: params.get("realm")?.clone(),
        nonce: params.get("nonce")?.clone(),
        uri: uri.to_string(),
        response: String::new(),
        algorithm,
        cnonce: hex::encode(&rand::random::<[u8; 8]>()),
        count,
    };
    let ha1 = algorithm.hex(format!("{user}:{}:{password}", c.realm).as_bytes());
    Some(format!(
        "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", \
         response=\"{}\", algorithm={}, cnonce=\"{}\", qop=auth, nc={count:08x}",
        c.realm,
        c.nonce,
        response(&ha1, &c, method),
        algorithm.name(),
        c.cnonce
    ))
}

/// The `WWW-Authenticate` values of a 401, one per algorithm in `algorithms`' order (RFC
/// 8760 §2.4: in order of preference), each with qop="auth".
pub fn challenges(realm: &str, algorithms: &[Algorithm], nonce: &str, stale: bool) -> Vec<String> {
    let stale = if stale { ", stale=true" } else { "" };
    algorithms
        .iter()
        .map(|a| {
            format!(
                "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                a.name()
            )
        })
        .collect()
}

/// The response a caller who knows the password computes (RFC 8760 §3, qop=auth).
pub fn response(ha1: &str, c: &Credentials, method: &str) -> String {
    let ha2 = c.algorithm.hex(format!("{method}:{}", c.uri).as_bytes());
    c.algorithm
        .hex(format!("{ha1}:{}:{:08x}:{}:auth:{ha2}", c.nonce, c.count, c.cnonce).as_bytes())
}

/// Equal bytes, in a time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// What a nonce is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    Fresh,
    /// Ours, but older than `NONCE_LIFETIME_SECS`.
    Stale,
    /// Not one we issued.
    Forged,
}

/// Issues nonces (the time, random bytes and a MAC under a key of this process: stateless
/// until used) and remembers the highest count used with each.
pub struct Nonces {
    key: [u8; 32],
    used: Mutex<HashMap<String, (u32, u64)>>,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Nonces(..)")
    }
}

impl Default for Nonces {
    fn default() -> Self {
        Nonces {
            key: rand::random(),
            used: Mutex::default(),
        }
    }
}

impl Nonces {
    fn mac(&self, body: &[u8]) -> [u8; 16] {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        m.update(body);
        let mut out = [0; 16];
        out.copy_from_slice(&m.finalize().into_bytes()[..16]);
        out
    }

    /// A new nonce issued at `now_secs`.
    pub fn issue(&self, now_secs: u64) -> String {
        let mut body = [0u8; 16];
        body[..8].copy_from_slice(&now_secs.to_be_bytes());
        body[8..].copy_from_slice(&rand::random::<[u8; 8]>());
        let mut all = body.to_vec();
        all.extend_from_slice(&self.mac(&body));
        hex::encode(&all)
    }

    pub fn state(&self, nonce: &str, now_secs: u64) -> NonceState {
        let bytes = hex::decode(nonce).filter(|b| b.len() == 32);
        let Some(bytes) = bytes else {
            return NonceState::Forged;
        };
        if !same(
            &hex::encode(&self.mac(&bytes[..16])),
            &hex::encode(&bytes[16..]),
        ) {
            return NonceState::Forged;
        }
        let issued = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
        match now_secs.checked_sub(issued) {
            None if issued > now_secs + 5 => NonceState::Forged,
            Some(age) if age > NONCE_LIFETIME_SECS => NonceState::Stale,
            _ => NonceState::Fresh,
        }
    }

    /// Records `count` used with `nonce`: false when it is not above every count already
    /// used with it (a replay).
    fn use_count(&self, nonce: &str, count: u32, now_secs: u64) -> bool {
        let Ok(mut used) = self.used.lock() else {
            return false;
        };
        if used.len() >= MAX_NONCES_IN_USE {
            used.retain(|_, (_, until)| *until > now_secs);
        }
        match used.get_mut(nonce) {
            Some((seen, _)) if count <= *seen => false,
            Some((seen, _)) => {
                *seen = count;
                true
            }
            None => {
                used.insert(nonce.to_string(), (count, now_secs + NONCE_LIFETIME_SECS));
                true
            }
        }
    }
}

/// What to do with a request, before its account is read.
#[derive(Debug, PartialEq, Eq)]
pub enum First {
    /// 401 with fresh challenges (`stale`: the nonce had expired).
    Challenge { stale: bool },
    /// 403 with this reason: the credentials cannot be right whatever the account.
    Refuse(&'static str),
    /// Read the account of `credentials.username`, then `finish`.
    Lookup(Credentials),
}

/// Looks at a request's `Authorization` value (None: it had none), in `realm` where
/// `algorithms` are offered.
pub fn first(
    authorization: Option<&str>,
    realm: &str,
    algorithms: &[Algorithm],
    nonces: &Nonces,
    now_secs: u64,
) -> First {
    let Some(value) = authorization else {
        return First::Challenge { stale: false };
    };
    let c = match parse(value) {
        Ok(c) if !algorithms.contains(&c.algorithm) => {
            return First::Refuse("algorithm not offered")
        }
        Ok(c) => c,
        Err(why) => return First::Refuse(why),
    };
    if c.realm != realm {
        return First::Challenge { stale: false };
    }
    match nonces.state(&c.nonce, now_secs) {
        NonceState::Fresh => First::Lookup(c),
        NonceState::Stale => First::Challenge { stale: true },
        NonceState::Forged => First::Refuse("a nonce not issued here"),
    }
}

/// Checks the response with the account's secrets (None: no such account); Ok is the
/// authenticated user, Err why it was refused (403).
pub fn finish(
    c: &Credentials,
    account: Option<&Ha1s>,
    method: &str,
    nonces: &Nonces,
    now_secs: u64,
) -> Result<String, &'static str> {
    let Some(ha1s) = account else {
        return Err("no such phone account");
    };
    if !same(&response(ha1s.get(c.algorithm), c, method), &c.response) {
        return Err("wrong password");
    }
    if !nonces.use_count(&c.nonce, c.count, now_secs) {
        return Err("a nonce count used before (a replay)");
    }
    Ok(c.username.clone())
}

#[cfg(test)]
#[path = "digest_tests.rs"]
mod tests;
