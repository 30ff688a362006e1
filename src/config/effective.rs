//! The configuration as its keys, derived from the structs themselves: the effective
//! configuration (`agentgw config check`, secrets masked), and what a reload changed, each key
//! applied to new calls or needing a restart.

use super::Config;
use std::collections::BTreeMap;

/// Keys (or whole sections, ending in `.`) a reload applies to the calls that start from then
/// on; every other key needs a restart.
const APPLIED_ON_RELOAD: &[&str] = &[
    "sip.max_call_secs",
    "sip.answer_after_ms",
    "sip.max_packets_per_second_per_source",
    "sip.max_tcp_connections",
    "sip.max_tcp_connections_per_source",
    "media.strict_rtp",
    "prompts.",
    "login.",
    "dtmf.",
    "tenant[",
];

/// Keys under an applied section that still need a restart: where the station comes from
/// is fixed by the SIP listeners, and the hourly expiry of old sessions starts with them.
const RESTART_ANYWAY: &[&str] = &[
    "login.station",
    "login.station_header",
    "login.session_max_hours",
];

/// A key a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    /// Applied to the calls that start from now on; false: the running value stays until a
    /// restart.
    pub applied: bool,
}

impl Config {
    /// The effective configuration as TOML, every default filled in, secrets (the password
    /// of a store URL, webhook secrets) masked.
    pub fn effective(&self) -> String {
        let mut shown = self.clone();
        shown.store.url = crate::store::mask_password(&shown.store.url);
        for w in &mut shown.webhook {
            w.secret = "****".into();
        }
        toml::to_string(&shown)
            .unwrap_or_else(|e| format!("# cannot show the configuration: {e}\n"))
    }

    /// Every key with its value, as `section.key` (`tenant[0].name` in arrays of tables).
    pub fn keys(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Ok(toml::Value::Table(t)) = toml::Value::try_from(self) {
            flatten("", &toml::Value::Table(t), &mut out);
        }
        out
    }

    /// The keys that differ from `old`, each applied or needing a restart.
    pub fn changes_from(&self, old: &Config) -> Vec<Change> {
        let (old, new) = (old.keys(), self.keys());
        let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| old.get(*k) != new.get(*k))
            .map(|k| Change {
                key: k.clone(),
                applied: applied_on_reload(k),
            })
            .collect()
    }
}

fn applied_on_reload(key: &str) -> bool {
    let listed = |list: &[&str]| {
        list.iter()
            .any(|p| key == *p || (p.ends_with(['.', '[']) && key.starts_with(p)))
    };
    listed(APPLIED_ON_RELOAD) && !listed(RESTART_ANYWAY)
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = match prefix {
                    "" => k.clone(),
                    p => format!("{p}.{k}"),
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::Array(items) if items.iter().all(|i| i.is_table()) && !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), item, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// `scheme://user:****@host/…` for a URL with a password.
#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration with every optional key set, so that every key shows.
    fn every_key() -> Config {
        let text = r#"
            [media]
            public_address = "192.0.2.20"
            [store]
            pepper_file = "/etc/agentgw/pepper"
            [admin]
            token_file = "/etc/agentgw/admin-token"
            [prompts]
            dir = "/etc/agentgw/prompts"
            [gateway]
            node_id = "gw1"
            [[tenant]]
            name = "acme"
            numbers = ["login-acme"]
            logout_numbers = ["logout-acme"]
            language = "es"
            already_logged_on = "replace"
            same_station = "reject"
            [[webhook]]
            url = "http://127.0.0.1:8000/agentgw"
            secret = "at-least-16-characters"
        "#;
        Config::parse(text, "every-key.toml").unwrap()
    }

    /// A key as the documents name it: `tenant[0].name` is `tenant.name`.
    fn documented(key: &str) -> String {
        key.replace("[0]", "")
    }

    #[test]
    fn the_commented_example_has_every_key() {
        let example = include_str!("../../systemd/agentgw.toml");
        let mut section = String::new();
        let mut present = std::collections::BTreeSet::new();
        for line in example.lines() {
            let line = line.trim_start_matches('#').trim();
            if let Some(s) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
                section = s.to_string();
            } else if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_string();
            } else if let Some((k, _)) = line.split_once(" = ") {
                present.insert(format!("{section}.{}", k.trim()));
            }
        }
        let missing: Vec<String> = every_key()
            .keys()
            .keys()
            .map(|k| documented(k))
            .filter(|k| !present.contains(k))
            .collect();
        assert!(missing.is_empty(), "systemd/agentgw.toml lacks {missing:?}");
    }

    #[test]
    fn the_configuration_reference_has_every_key() {
        let reference = include_str!("../../docs/configuration.md");
        let missing: Vec<String> = every_key()
            .keys()
            .keys()
            .map(|k| documented(k))
            .filter(|k| {
                let (section, key) = k.split_once('.').unwrap_or(("", k));
                let has = |s: String| reference.contains(&s);
                let in_table = has(format!("`{k}`")) || has(format!("/ `{key}`"));
                let in_tables_row = has(format!("[[{section}]]")) && has(format!("`{key}`"));
                !(in_table || in_tables_row)
            })
            .collect();
        assert!(
            missing.is_empty(),
            "docs/configuration.md lacks {missing:?}"
        );
    }

    #[test]
    fn a_reload_names_every_changed_key_as_applied_or_needing_a_restart() {
        let old = Config::default();
        let mut new = Config::default();
        new.login.max_attempts = 5;
        new.login.station_header = "X-Desk".into();
        new.gateway.drain_secs = 10;
        new.sip.udp_receive_buffer_kib = 0;
        new.log.filter = "debug".into();
        new.store.url = "sqlite://other.db".into();
        new.webhook = every_key().webhook;
        new.tenant = every_key().tenant;
        let changes = new.changes_from(&old);
        let applied = |k: &str| changes.iter().find(|c| c.key == k).map(|c| c.applied);
        assert_eq!(applied("login.max_attempts"), Some(true));
        assert_eq!(applied("tenant[0].name"), Some(true));
        for k in [
            "login.station_header",
            "gateway.drain_secs",
            "sip.udp_receive_buffer_kib",
            "log.filter",
            "store.url",
            "webhook[0].url",
        ] {
            assert_eq!(applied(k), Some(false), "{k}");
        }
        assert_eq!(applied("login.digit_timeout_secs"), None, "unchanged");
    }

    #[test]
    fn the_effective_configuration_masks_secrets_and_reads_back() {
        let mut c = every_key();
        c.store.url = "postgres://agentgw:hunter2@db/agentgw".into();
        let text = c.effective();
        assert!(
            !text.contains("hunter2") && !text.contains("at-least-16"),
            "{text}"
        );
        assert!(text.contains("already_logged_on = \"reject\""), "{text}");
        let back: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(back["login"]["max_attempts"].as_integer(), Some(3));
    }
}
