//! The effective configuration as text (`agentgw config check`), every default filled in and
//! secrets masked.

use super::Config;

impl Config {
    /// The effective configuration as TOML-like text, every default filled in, secrets (the
    /// password of a store URL) masked.
    pub fn effective(&self) -> String {
        let mut url = self.store.url.clone();
        if let (Some(at), Some(scheme_end)) = (url.rfind('@'), url.find("://")) {
            if let Some(colon) = url[scheme_end + 3..at].find(':') {
                url.replace_range(scheme_end + 3 + colon + 1..at, "****");
            }
        }
        let l = &self.login;
        let list = |v: Vec<String>| {
            format!(
                "[{}]",
                v.iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let mut out = format!(
            "[sip]\nlisten = {}\nmax_calls = {}\nmax_calls_per_second = {}\nrefuse_when_overloaded = {}\nmax_call_secs = {}\nanswer_after_ms = {}\nmax_tcp_connections = {}\nmax_tcp_connections_per_source = {}\nmax_packets_per_second_per_source = {}\nudp_receive_buffer_kib = {}\nthreads = {}\n\n\
             [media]\nrtp_ports = \"{}-{}\"\npublic_address = {}\nstrict_rtp = {}\nthreads = {}\nrealtime_priority = {}\n\n\
             [store]\nurl = {url:?}\nhash_memory_kib = {}\nhash_iterations = {}\npepper_file = {}\n\n[admin]\nlisten = \"{}\"\n\n\
             [prompts]\ndir = {}\nlanguage = {:?}\n\n\
             [login]\nmax_attempts = {}\ndigit_timeout_secs = {}\nfirst_digit_timeout_secs = {}\nmax_digits = {}\n\
             already_logged_on = {:?}\nsame_station = {:?}\nlockout_after = {}\nlockout_window_mins = {}\n\
             lockout_mins = {}\nstation_attempts_per_min = {}\nsource_attempts_per_min = {}\n\
             allowed_networks = {}\nstation = {:?}\nstation_header = {:?}\nlogout_uri_user = {:?}\n\
             after_login = {:?}\ninitial_status = {:?}\nsession_max_hours = {}\nnew_agents_must_change = {}\n\n\
             [dtmf]\nmethods = {}\n\n[gateway]\ndrain_secs = {}\n\n[log]\nfilter = {:?}\nformat = {:?}\n",
            list(self.sip.listen.iter().map(|l| l.to_string()).collect()),
            self.sip.max_calls,
            self.sip.max_calls_per_second,
            self.sip.refuse_when_overloaded,
            self.sip.max_call_secs,
            self.sip.answer_after_ms,
            self.sip.max_tcp_connections,
            self.sip.max_tcp_connections_per_source,
            self.sip.max_packets_per_second_per_source,
            self.sip.udp_receive_buffer_kib,
            match self.sip.threads {
                0 => format!("0 (half the cores: {})", self.sip.runtime_threads()),
                n => n.to_string(),
            },
            self.media.rtp_ports.low,
            self.media.rtp_ports.high,
            self.media.public_address.map_or("(the address the INVITE came in on)".to_string(), |a| format!("{:?}", a.to_string())),
            self.media.strict_rtp,
            match self.media.threads {
                0 => "0 (one per core)".to_string(),
                n => n.to_string(),
            },
            self.media.realtime_priority,
            self.store.hash_memory_kib,
            self.store.hash_iterations,
            self.store.pepper_file.as_ref().map_or("(agentgw.pepper next to the database, generated)".to_string(), |d| format!("{:?}", d.display().to_string())),
            self.admin.listen,
            self.prompts.dir.as_ref().map_or("(built-in)".to_string(), |d| format!("{:?}", d.display().to_string())),
            self.prompts.language,
            l.max_attempts,
            l.digit_timeout_secs,
            l.first_digit_timeout_secs,
            l.max_digits,
            format!("{:?}", l.already_logged_on).to_lowercase(),
            format!("{:?}", l.same_station).to_lowercase(),
            l.lockout_after,
            l.lockout_window_mins,
            l.lockout_mins,
            l.station_attempts_per_min,
            l.source_attempts_per_min,
            list(l.allowed_networks.iter().map(|n| n.to_string()).collect()),
            format!("{:?}", l.station).to_lowercase(),
            l.station_header,
            l.logout_uri_user,
            format!("{:?}", l.after_login).to_lowercase(),
            l.initial_status.as_str(),
            l.session_max_hours,
            l.new_agents_must_change,
            list(self.dtmf.methods.iter().map(|m| m.to_string()).collect()),
            self.gateway.drain_secs,
            self.log.filter,
            format!("{:?}", self.log.format).to_lowercase(),
        );
        for t in &self.tenant {
            out.push_str(&format!(
                "\n[[tenant]]\nname = {:?}\nnumbers = {}\nlogout_numbers = {}\nlanguage = {:?}\n",
                t.name,
                list(t.numbers.clone()),
                list(t.logout_numbers.clone()),
                t.language
                    .clone()
                    .unwrap_or_else(|| self.prompts.language.clone()),
            ));
        }
        for w in &self.webhook {
            out.push_str(&format!(
                "\n[[webhook]]\nurl = {:?}\nsecret = \"****\"\nevents = {}\nqueue = {}\nmax_tries = {}\ntimeout_ms = {}\n",
                w.url,
                list(w.events.clone()),
                w.queue,
                w.max_tries,
                w.timeout_ms
            ));
        }
        out
    }
}
