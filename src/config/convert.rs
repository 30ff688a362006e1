//! The configuration converted into each module's own settings: routes, the calls' settings,
//! the flow's timeouts, the login policy, the SIP listeners' settings, the attempt limiters.

use super::{Config, LoginConfig};
use crate::call::{AttemptLimiters, Settings};
use crate::login::route::{Routes, TenantRoute};
use crate::login::rules::{AfterLogin, AnonymousStation, StationFrom};
use crate::login::FlowConfig;
use crate::media::prompts::{Catalog, PromptError};
use crate::store::LoginPolicy;
use std::collections::HashMap;
use std::time::Duration;

impl Config {
    /// The routing table of the tenants.
    pub fn routes(&self) -> Routes {
        Routes {
            tenants: self
                .tenant
                .iter()
                .map(|t| TenantRoute {
                    name: t.name.clone(),
                    numbers: t.numbers.clone(),
                    logout_numbers: t.logout_numbers.clone(),
                    language: t.language.clone(),
                    already_logged_on: t.already_logged_on,
                    same_station: t.same_station,
                    srtp: t.srtp,
                })
                .collect(),
            logout_user: self.login.logout_uri_user.clone(),
            language: self.prompts.language.clone(),
            already_logged_on: self.login.already_logged_on,
            same_station: self.login.same_station,
            srtp: self.media.srtp,
        }
    }

    /// Every prompt language in use.
    pub fn languages(&self) -> Vec<String> {
        self.routes().languages()
    }

    /// The settings of the calls that start from now on, with the prompts of every language
    /// in use (and of every language directory under `[prompts] dir`, for agents' own
    /// languages).
    pub fn call_settings(&self) -> Result<Settings, PromptError> {
        let mut languages = self.languages();
        if let Some(dir) = self.prompts.dir.as_deref() {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    let is_lang = e.path().is_dir()
                        && name.len() <= 16
                        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
                    if is_lang && !languages.contains(&name) {
                        languages.push(name);
                    }
                }
            }
        }
        let mut catalogs = HashMap::new();
        for lang in languages {
            let catalog = Catalog::load_language(self.prompts.dir.as_deref(), &lang)?;
            catalogs.insert(lang, catalog);
        }
        Ok(Settings {
            catalogs,
            routes: self.routes(),
            strict_rtp: self.media.strict_rtp,
            flow: FlowConfig::from(&self.login),
            max_call: Duration::from_secs(self.sip.max_call_secs),
            answer_after: Duration::from_millis(self.sip.answer_after_ms),
            dtmf_methods: self.dtmf.methods.clone(),
            policy: LoginPolicy::from(&self.login),
            session_max: Duration::from_secs(self.login.session_max_hours * 3600),
            line_timeout: (self.login.line_timeout_secs > 0)
                .then(|| Duration::from_secs(self.login.line_timeout_secs)),
        })
    }

    /// The per-station and per-source login attempt limiters.
    pub fn attempt_limiters(&self) -> AttemptLimiters {
        AttemptLimiters::new(
            self.login.station_attempts_per_min,
            self.login.source_attempts_per_min,
        )
    }
}

impl From<&LoginConfig> for FlowConfig {
    fn from(c: &LoginConfig) -> Self {
        FlowConfig {
            max_attempts: c.max_attempts,
            digit_timeout: c.digit_timeout(),
            first_digit_timeout: c.first_digit_timeout(),
            max_digits: c.max_digits,
            stay: c.after_login == AfterLogin::Stay,
            ask_extension: c.station == StationFrom::Prompt,
            ask_extension_when_withheld: c.anonymous_station == AnonymousStation::Prompt,
            // Per caller (`FlowConfig::for_caller`).
            station_verified: false,
        }
    }
}

impl From<&LoginConfig> for LoginPolicy {
    fn from(c: &LoginConfig) -> Self {
        LoginPolicy {
            already_logged_on: c.already_logged_on,
            same_station: c.same_station,
            lockout: c.lockout(),
            networks: c.allowed_networks.clone(),
            initial_status: c.initial_status,
            stay: c.after_login == AfterLogin::Stay,
            station_attempts_per_min: c.station_attempts_per_min,
            source_attempts_per_min: c.source_attempts_per_min,
        }
    }
}
