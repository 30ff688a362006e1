//! Phone accounts for SIP Digest: added with a password, kept as its HA1s (SHA-256 and MD5)
//! sealed with a key derived from the pepper, read back for a caller's check.

use super::*;
use crate::digest::{Ha1s, MAX_USERNAME_CHARS};
use crate::hex;

/// A phone account as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Phone {
    pub username: String,
    /// The realm its secret was made for: it authenticates only while `[sip] realm` is this.
    pub realm: String,
    pub created: String,
}

/// Shortest phone password taken: Digest secrets can be guessed offline from one captured
/// exchange, so they must be long.
pub const MIN_PHONE_PASSWORD_CHARS: usize = 12;

fn validate_username(u: &str) -> Result<(), StoreError> {
    let ok = !u.is_empty()
        && u.chars().count() <= MAX_USERNAME_CHARS
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c));
    match ok {
        true => Ok(()),
        false => Err(StoreError::Invalid(format!(
            "phone user name {u:?}: 1 to {MAX_USERNAME_CHARS} letters, digits and -_.+"
        ))),
    }
}

impl Store {
    /// Adds phone account `username` (or sets its password) for `realm`; true when new.
    pub async fn add_phone(
        &self,
        username: &str,
        realm: &str,
        password: &Passcode,
    ) -> Result<bool, StoreError> {
        validate_username(username)?;
        let p = &password.0;
        if p.chars().count() < MIN_PHONE_PASSWORD_CHARS
            || p.len() > 128
            || p.chars().any(char::is_control)
        {
            return Err(StoreError::Invalid(format!(
                "a phone password is {MIN_PHONE_PASSWORD_CHARS} to 128 characters, none a control character"
            )));
        }
        let ha1s = Ha1s::of(username, realm, p);
        let salt: [u8; 16] = rand::random();
        let (pad, pepper) = self.hasher.seal_pad(&salt);
        let plain = hex::decode(&ha1s.sha256)
            .into_iter()
            .chain(hex::decode(&ha1s.md5))
            .flatten();
        let sealed: Vec<u8> = plain.zip(pad).map(|(a, b)| a ^ b).collect();
        let secret = format!(
            "v1${pepper}${}${}",
            hex::encode(&salt),
            hex::encode(&sealed)
        );
        self.db.put_phone(username, realm, &secret).await
    }

    /// Every phone account.
    pub async fn phones(&self) -> Result<Vec<Phone>, StoreError> {
        Ok(self
            .db
            .phones()
            .await?
            .into_iter()
            .map(|(username, realm, created)| Phone {
                username,
                realm,
                created: db::rfc3339(created, false),
            })
            .collect())
    }

    /// Removes a phone account; false when there was none.
    pub async fn remove_phone(&self, username: &str) -> Result<bool, StoreError> {
        self.db.remove_phone(username).await
    }

    /// The secrets `username` authenticates with in `realm`; None when there is no such
    /// account, it was made for another realm or sealed with another pepper (each logged).
    pub async fn phone_secrets(
        &self,
        username: &str,
        realm: &str,
    ) -> Result<Option<Ha1s>, StoreError> {
        let Some((made_for, secret)) = self.db.phone(username).await? else {
            return Ok(None);
        };
        if made_for != realm {
            warn!(username, account_realm = %made_for, realm, "phone account made for another realm: set its password again (agentgw phone add)");
            return Ok(None);
        }
        let mut parts = secret.split('$');
        let (Some("v1"), Some(pepper), Some(salt), Some(sealed), None) = (
            parts.next(),
            parts.next(),
            parts.next().and_then(hex::decode),
            parts.next().and_then(hex::decode),
            parts.next(),
        ) else {
            warn!(username, "phone account secret unreadable");
            return Ok(None);
        };
        let (pad, ours) = self.hasher.seal_pad(&salt);
        if pepper != ours || sealed.len() != 48 {
            warn!(
                username,
                "phone account sealed with another pepper: set its password again"
            );
            return Ok(None);
        }
        let plain: Vec<u8> = sealed.iter().zip(pad).map(|(a, b)| a ^ b).collect();
        Ok(Some(Ha1s {
            sha256: hex::encode(&plain[..32]),
            md5: hex::encode(&plain[32..]),
        }))
    }
}
