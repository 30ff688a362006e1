//! The one TOML file. Every key is optional and has a default; an unknown key or a bad value is
//! an error that names the file, the key and what is allowed.

mod convert;
mod effective;
mod sections;

pub use effective::Change;
pub use sections::*;

use crate::admin::webhooks::WebhookConfig;
use crate::login::route::CallRoute;
use crate::login::rules::StationFrom;
use serde::Deserialize;
use std::path::Path;

/// A configuration problem, phrased for the administrator who has to fix the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {key}: {reason}")]
    Invalid {
        file: String,
        key: String,
        reason: String,
    },
}

/// The whole configuration, as read from the file with defaults filled in.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub sip: SipConfig,
    pub media: MediaConfig,
    pub store: StoreConfig,
    pub admin: AdminConfig,
    pub prompts: PromptsConfig,
    pub login: LoginConfig,
    pub dtmf: DtmfConfig,
    /// Tenants (OneContact tenants, 8x8 services): the number dialed picks one.
    pub tenant: Vec<TenantConfig>,
    pub gateway: GatewayConfig,
    pub log: LogConfig,
    /// Webhooks: a JSON POST per event to each endpoint.
    pub webhook: Vec<WebhookConfig>,
}

impl Config {
    /// Which tenant a call to `dialed` (the Request-URI user) is for, and whether it logs off.
    pub fn route(&self, dialed: &str) -> CallRoute {
        self.routes().route(dialed)
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Config::parse(&text, &file)
    }

    /// Parses `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::Invalid {
                file: file.to_string(),
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                reason: inner.message().trim().to_string(),
            }
        })?;
        config.validate(file)?;
        Ok(config)
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| {
            Err(ConfigError::Invalid {
                file: file.to_string(),
                key: key.to_string(),
                reason: reason.to_string(),
            })
        };
        if self.sip.listen.is_empty() {
            return invalid("sip.listen", "at least one listener is needed");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.filter).is_err() {
            return invalid("log.filter", "is not a filter such as \"info,sqlx=warn\"");
        }
        if self.gateway.drain_secs > 3600 {
            return invalid("gateway.drain_secs", "must be at most 3600");
        }
        if self.sip.threads > 256 {
            return invalid("sip.threads", "must be at most 256 (0: half the cores)");
        }
        if self.media.threads > 64 {
            return invalid("media.threads", "must be at most 64 (0: one per core)");
        }
        if self.media.realtime_priority > 99 {
            return invalid(
                "media.realtime_priority",
                "must be 0 (normal scheduling) to 99 (SCHED_RR priority)",
            );
        }
        if self.sip.udp_receive_buffer_kib > 1 << 20 {
            return invalid(
                "sip.udp_receive_buffer_kib",
                "must be at most 1048576 (1 GiB; 0: the kernel's default)",
            );
        }
        if !(1300..=65535).contains(&self.sip.max_message_bytes) {
            return invalid(
                "sip.max_message_bytes",
                "must be 1300 (a datagram that fits an Ethernet frame) to 65535",
            );
        }
        if self.sip.tcp_message_timeout_secs > 3600 {
            return invalid(
                "sip.tcp_message_timeout_secs",
                "must be at most 3600 (0: no limit)",
            );
        }
        let asserted = matches!(self.login.station, StationFrom::Pai | StationFrom::Header);
        if asserted && self.sip.trusted_networks.is_empty() {
            return invalid(
                "sip.trusted_networks",
                "login.station = \"pai\" or \"header\" needs the networks of the PBXs whose station is believed, e.g. [\"192.0.2.20/32\"]",
            );
        }
        let tls_listener = self
            .sip
            .listen
            .iter()
            .any(|l| l.transport == crate::sip::Transport::Tls);
        match (&self.sip.tls_certificate, &self.sip.tls_private_key) {
            (Some(_), None) => {
                return invalid(
                    "sip.tls_private_key",
                    "tls_certificate needs its private key",
                )
            }
            (None, Some(_)) => {
                return invalid(
                    "sip.tls_certificate",
                    "tls_private_key needs its certificate",
                )
            }
            (None, None) if tls_listener => {
                return invalid(
                    "sip.tls_certificate",
                    "a tls: listener needs tls_certificate and tls_private_key (PEM files)",
                )
            }
            _ => {}
        }
        let algorithms = &self.sip.digest_algorithms;
        if algorithms.is_empty() || algorithms.len() > 2 || algorithms.first() == algorithms.get(1)
        {
            return invalid(
                "sip.digest_algorithms",
                "must list \"SHA-256\", \"MD5\" or both, once each",
            );
        }
        let realm_ok = |r: &str| {
            (1..=64).contains(&r.len())
                && r.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c))
        };
        if !realm_ok(&self.sip.realm) {
            return invalid(
                "sip.realm",
                "must be 1 to 64 letters, digits and -_.@: (a host name or a word)",
            );
        }
        if self.sip.max_calls == 0 {
            return invalid("sip.max_calls", "must be at least 1");
        }
        if self.sip.max_call_secs < 30 {
            return invalid("sip.max_call_secs", "must be at least 30");
        }
        if self.sip.answer_after_ms > 10_000 {
            return invalid("sip.answer_after_ms", "must be at most 10000");
        }
        let postgres = crate::store::is_postgres_url(&self.store.url);
        if !self.store.url.starts_with("sqlite:") && !postgres {
            return invalid(
                "store.url",
                "must start with sqlite:// (e.g. \"sqlite://agentgw.db\") or postgres:// \
                 (e.g. \"postgres://agentgw:PASSWORD@db.example/agentgw\")",
            );
        }
        if postgres && self.store.pepper_file.is_none() {
            return invalid(
                "store.pepper_file",
                "must be set with a PostgreSQL store: every node hashes passcodes with the \
                 same pepper, so each needs a copy of one file",
            );
        }
        if !(3..=3600).contains(&self.gateway.node_timeout_secs) {
            return invalid("gateway.node_timeout_secs", "must be from 3 to 3600");
        }
        if let Some(id) = &self.gateway.node_id {
            if id.is_empty() || id.len() > 64 || id.chars().any(|c| c.is_control() || c == ' ') {
                return invalid(
                    "gateway.node_id",
                    "must be 1 to 64 characters without spaces",
                );
            }
        }
        for (i, w) in self.webhook.iter().enumerate() {
            if let Some((k, reason)) = w.problem() {
                return invalid(&format!("webhook[{i}].{k}"), &reason);
            }
        }
        if !(8..=1_048_576).contains(&self.store.hash_memory_kib) {
            return invalid("store.hash_memory_kib", "must be 8 to 1048576 (KiB)");
        }
        if !(1..=10).contains(&self.store.hash_iterations) {
            return invalid("store.hash_iterations", "must be 1 to 10");
        }
        let mut seen_numbers = std::collections::HashSet::new();
        for (i, t) in self.tenant.iter().enumerate() {
            let key = |k: &str| format!("tenant[{i}].{k}");
            let name_ok = !t.name.is_empty()
                && t.name.len() <= 64
                && t.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok || t.name == crate::login::DEFAULT_TENANT {
                return invalid(
                    &key("name"),
                    "must be 1-64 letters, digits, - or _, and not \"default\"",
                );
            }
            if self.tenant[..i].iter().any(|o| o.name == t.name) {
                return invalid(
                    &key("name"),
                    &format!("tenant {:?} is defined twice", t.name),
                );
            }
            if t.numbers.is_empty() {
                return invalid(
                    &key("numbers"),
                    "at least one number (Request-URI user) is needed",
                );
            }
            for n in t.numbers.iter().chain(&t.logout_numbers) {
                if !seen_numbers.insert(n.clone()) || *n == self.login.logout_uri_user {
                    return invalid(&key("numbers"), &format!("number {n:?} is used twice"));
                }
            }
        }
        if self.dtmf.methods.is_empty() {
            return invalid(
                "dtmf.methods",
                "at least one of \"rfc4733\", \"info\", \"inband\" is needed",
            );
        }
        let l = &self.login;
        if !(1..=10).contains(&l.max_attempts) {
            return invalid("login.max_attempts", "must be between 1 and 10");
        }
        if !(1..=60).contains(&l.digit_timeout_secs) {
            return invalid("login.digit_timeout_secs", "must be between 1 and 60");
        }
        if !(1..=120).contains(&l.first_digit_timeout_secs) {
            return invalid(
                "login.first_digit_timeout_secs",
                "must be between 1 and 120",
            );
        }
        if !(4..=64).contains(&l.max_digits) {
            return invalid("login.max_digits", "must be between 4 and 64");
        }
        if l.station_header.is_empty()
            || !l
                .station_header
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return invalid(
                "login.station_header",
                "must be a header name such as \"X-Station\"",
            );
        }
        if !(1..=168).contains(&l.session_max_hours) {
            return invalid(
                "login.session_max_hours",
                "must be between 1 and 168 (a week)",
            );
        }
        if l.lockout_after > 0 && !(1..=1440).contains(&l.lockout_window_mins) {
            return invalid("login.lockout_window_mins", "must be between 1 and 1440");
        }
        if l.lockout_after > 0 && !(1..=10080).contains(&l.lockout_mins) {
            return invalid("login.lockout_mins", "must be between 1 and 10080 (a week)");
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
