//! Process-wide counters for `/metrics` (Prometheus text format), and the text itself with the
//! gauges the scraper reads from the parts that own them. A leaf: it imports nothing of the
//! crate. Hot paths touch only relaxed atomics; RTP counts are added once per media tick.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the store latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// A latency histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| s <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Everything counted since the process started.
#[derive(Debug, Default)]
pub struct Metrics {
    pub rtp_in: AtomicU64,
    pub rtp_out: AtomicU64,
    /// RTP packets dropped because they came from another address than the call's learned
    /// source (strict RTP).
    pub rtp_foreign: AtomicU64,
    /// Media ticks that started a period or more late (the media threads were short of CPU).
    pub media_late_ticks: AtomicU64,
    /// The longest gap between two media ticks, in ticks (the load tool reports it).
    pub media_max_stall_ticks: AtomicU64,
    /// Media threads at real-time priority now (`[media] realtime_priority`).
    pub media_realtime_threads: AtomicU64,
    /// Signs that work at normal priority was short of CPU (the async runtime woke late, or a
    /// login check was slow), counted only with real-time media.
    pub media_starvation_signs: AtomicU64,
    /// Calls ended, by outcome (the `X-Agentgw-Result` values, plus SIP rejections).
    calls: Mutex<BTreeMap<String, u64>>,
    /// Audit events seen by this process's follower, by event and reason.
    events: Mutex<BTreeMap<(String, String), u64>>,
    /// Webhook deliveries dropped (queue full, or out of retries).
    pub webhooks_dropped: AtomicU64,
    pub webhooks_delivered: AtomicU64,
}

impl Metrics {
    pub fn call_ended(&self, outcome: &str) {
        if let Ok(mut m) = self.calls.lock() {
            *m.entry(outcome.to_string()).or_default() += 1;
        }
    }

    /// Counts an audit event (login, logout by reason, failure, lockout…).
    pub fn event(&self, event: &str, reason: Option<&str>) {
        let reason = match event {
            "logout" => reason.unwrap_or_default(),
            _ => "",
        };
        if let Ok(mut m) = self.events.lock() {
            *m.entry((event.to_string(), reason.to_string()))
                .or_default() += 1;
        }
    }

    /// The text of `/metrics`; `gauges` are the values read at scrape time.
    pub fn render(&self, gauges: &Gauges, store_latency: &Histogram) -> String {
        let mut out = String::new();
        let mut one = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        one(
            "agentgw_active_calls",
            "gauge",
            "Calls in progress.",
            gauges.calls as u64,
        );
        one(
            "agentgw_sessions",
            "gauge",
            "Agents logged on, every tenant.",
            gauges.sessions as u64,
        );
        one(
            "agentgw_rtp_packets_received_total",
            "counter",
            "RTP packets received.",
            self.rtp_in.load(Ordering::Relaxed),
        );
        one(
            "agentgw_rtp_packets_sent_total",
            "counter",
            "RTP packets sent.",
            self.rtp_out.load(Ordering::Relaxed),
        );
        one(
            "agentgw_rtp_foreign_dropped_total",
            "counter",
            "RTP packets dropped because they came from another address than the call's learned source (strict RTP).",
            self.rtp_foreign.load(Ordering::Relaxed),
        );
        one(
            "agentgw_media_late_ticks_total",
            "counter",
            "20 ms media ticks that started a period or more late: the media threads are short of CPU and audio leaves in bursts.",
            self.media_late_ticks.load(Ordering::Relaxed),
        );
        one(
            "agentgw_media_realtime_threads",
            "gauge",
            "Media threads at real-time priority now; fewer than configured: some stepped down at capacity (see the log).",
            self.media_realtime_threads.load(Ordering::Relaxed),
        );
        one(
            "agentgw_media_starvation_signs_total",
            "counter",
            "With real-time media: times SIP or a login check was short of CPU (the async runtime woke 100 ms late, or a login check took over 2 s); each makes the real-time media threads step down.",
            self.media_starvation_signs.load(Ordering::Relaxed),
        );
        one(
            "agentgw_overloaded",
            "gauge",
            "1 while the media threads are behind their 20 ms schedule (100 ms or more of late ticks within a second, and 2 s after); with [sip] refuse_when_overloaded new calls get 503 meanwhile.",
            u64::from(gauges.overloaded),
        );
        one(
            "agentgw_calls_refused_overloaded_total",
            "counter",
            "New calls refused with 503 because the media threads were behind ([sip] refuse_when_overloaded).",
            gauges.calls_refused_overloaded,
        );
        one(
            "agentgw_tcp_connections",
            "gauge",
            "SIP TCP connections open.",
            gauges.tcp_open as u64,
        );
        one(
            "agentgw_tcp_connections_refused_total",
            "counter",
            "SIP TCP connections closed at once because too many were open ([sip] max_tcp_connections, max_tcp_connections_per_source).",
            gauges.tcp_refused,
        );
        one(
            "agentgw_tcp_connections_shut_down_total",
            "counter",
            "Open SIP TCP connections shut down for sending more than [sip] max_packets_per_second_per_source allows (messages, or 2 KiB each in bytes).",
            gauges.tcp_shut_down,
        );
        one(
            "agentgw_tcp_connections_too_slow_total",
            "counter",
            "SIP TCP connections closed because a message took longer than [sip] tcp_message_timeout_secs to arrive (or the first one after connecting).",
            gauges.tcp_too_slow,
        );
        one(
            "agentgw_tls_handshakes_failed_total",
            "counter",
            "SIP TLS connections closed because their handshake failed (no common version or cipher, a client certificate missing or not from [sip] tls_client_ca) or took longer than [sip] tcp_message_timeout_secs.",
            gauges.tls_failed,
        );
        one(
            "agentgw_sip_packets_dropped_total",
            "counter",
            "SIP datagrams dropped unread because their source sent more than [sip] max_packets_per_second_per_source.",
            gauges.sip_packets_dropped,
        );
        one(
            "agentgw_webhook_deliveries_total",
            "counter",
            "Webhook deliveries acknowledged by the endpoint.",
            self.webhooks_delivered.load(Ordering::Relaxed),
        );
        one(
            "agentgw_webhook_dropped_total",
            "counter",
            "Webhook deliveries dropped (queue full or out of retries).",
            self.webhooks_dropped.load(Ordering::Relaxed),
        );
        let _ = writeln!(out, "# HELP agentgw_sip_invalid_total SIP messages refused by the RFC 3261 checks before parsing, by the status they were answered with (dropped: not answered).\n# TYPE agentgw_sip_invalid_total counter");
        for (status, n) in &gauges.sip_invalid {
            let status = if *status == 0 {
                "dropped".to_string()
            } else {
                status.to_string()
            };
            let _ = writeln!(out, "agentgw_sip_invalid_total{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP agentgw_sessions_by_status Agents logged on, by status.\n# TYPE agentgw_sessions_by_status gauge");
        for (status, n) in &gauges.by_status {
            let _ = writeln!(out, "agentgw_sessions_by_status{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP agentgw_calls_total Calls ended, by outcome.\n# TYPE agentgw_calls_total counter");
        if let Ok(m) = self.calls.lock() {
            for (outcome, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "agentgw_calls_total{{outcome=\"{}\"}} {n}",
                    label(outcome)
                );
            }
        }
        let _ = writeln!(out, "# HELP agentgw_dtmf_keys_total Keys received, by method.\n# TYPE agentgw_dtmf_keys_total counter");
        for (method, n) in &gauges.dtmf_keys {
            let _ = writeln!(out, "agentgw_dtmf_keys_total{{method=\"{method}\"}} {n}");
        }
        let events = self.events.lock().map(|m| m.clone()).unwrap_or_default();
        let count = |event: &str| -> u64 {
            events
                .iter()
                .filter(|((e, _), _)| e == event)
                .map(|(_, n)| n)
                .sum()
        };
        let mut simple = |name: &str, help: &str, event: &str| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                count(event)
            );
        };
        simple("agentgw_logins_total", "Agents logged on.", "login");
        simple(
            "agentgw_login_failures_total",
            "Failed login attempts (unknown agent, wrong passcode, disabled).",
            "login_failed",
        );
        simple(
            "agentgw_login_refusals_total",
            "Logins refused by a rule (already on, station, network, locked, over the limit).",
            "login_refused",
        );
        simple("agentgw_lockouts_total", "Agents locked.", "lockout");
        let _ = writeln!(out, "# HELP agentgw_logouts_total Sessions ended, by reason.\n# TYPE agentgw_logouts_total counter");
        for ((e, reason), n) in &events {
            if e == "logout" {
                let _ = writeln!(
                    out,
                    "agentgw_logouts_total{{reason=\"{}\"}} {n}",
                    label(reason)
                );
            }
        }
        store_latency.write(
            &mut out,
            "agentgw_store_query_seconds",
            "Store query latency (login path and administration).",
        );
        out
    }
}

/// Values read at scrape time from the parts that own them.
#[derive(Debug, Default)]
pub struct Gauges {
    pub calls: usize,
    pub sessions: usize,
    pub by_status: Vec<(String, u64)>,
    /// Keys received since start, by method.
    pub dtmf_keys: Vec<(&'static str, u64)>,
    /// The media threads are behind: new calls are refused (`[sip] refuse_when_overloaded`).
    pub overloaded: bool,
    pub calls_refused_overloaded: u64,
    pub tcp_open: usize,
    pub tcp_refused: u64,
    pub tcp_shut_down: u64,
    pub tcp_too_slow: u64,
    pub tls_failed: u64,
    pub sip_packets_dropped: u64,
    /// Messages refused by the RFC 3261 checks: (status answered, count); status 0: dropped.
    pub sip_invalid: Vec<(u16, u64)>,
}

/// Escapes a label value.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.call_ended("logged-in");
        m.call_ended("logged-in");
        m.event("login", None);
        m.event("logout", Some("logged out by an administrator"));
        let h = Histogram::default();
        h.observe(Duration::from_micros(700));
        let text = m.render(
            &Gauges {
                calls: 3,
                sessions: 1,
                by_status: vec![("available".into(), 1)],
                ..Gauges::default()
            },
            &h,
        );
        for line in [
            "agentgw_active_calls 3",
            "agentgw_calls_total{outcome=\"logged-in\"} 2",
            "agentgw_logins_total 1",
            "agentgw_logouts_total{reason=\"logged out by an administrator\"} 1",
            "agentgw_sessions_by_status{status=\"available\"} 1",
            "agentgw_store_query_seconds_bucket{le=\"0.0005\"} 0",
            "agentgw_store_query_seconds_bucket{le=\"0.001\"} 1",
            "agentgw_store_query_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
