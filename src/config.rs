//! The one TOML file. Every key is optional and has a default; an unknown key or a bad value is
//! an error that names the file, the key and what is allowed.

use crate::login::rules::{AlreadyLoggedOnPolicy, Lockout, Network, SameStationPolicy};
use crate::login::AgentStatus;
use crate::media::dtmf::DtmfMethod;
use serde::Deserialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

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
#[derive(Debug, Clone, Default, Deserialize)]
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

/// Event names a webhook (or the event stream) can ask for.
pub const EVENT_NAMES: [&str; 12] = [
    "login",
    "logout",
    "login_failed",
    "login_refused",
    "login_held",
    "lockout",
    "unlock",
    "status",
    "agent_added",
    "agent_updated",
    "agent_removed",
    "passcode_changed",
];

/// One `[[webhook]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST: `http://host:port/path`.
    pub url: String,
    /// The HMAC-SHA256 key of the `X-Agentgw-Signature` header (at least 16 characters).
    pub secret: String,
    /// Which events (see `EVENT_NAMES`); empty: every event.
    #[serde(default)]
    pub events: Vec<String>,
    /// Events waiting for this endpoint at most; beyond it new events are dropped, logged and
    /// counted.
    #[serde(default = "default_webhook_queue")]
    pub queue: usize,
    /// Tries per event (with backoff 0.5 s, 1 s, 2 s … up to 30 s between them).
    #[serde(default = "default_webhook_tries")]
    pub max_tries: u32,
    /// How long one POST may take.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_ms: u64,
}

fn default_webhook_queue() -> usize {
    1000
}
fn default_webhook_tries() -> u32 {
    8
}
fn default_webhook_timeout() -> u64 {
    5000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A RUST_LOG-style filter (the default quiets the SIP stack and sqlx); `RUST_LOG`
    /// overrides it.
    pub filter: String,
    /// "text" or "json" (one object per line, for log shippers); `--log-format` overrides it.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: format!("info,{},sqlx=warn", crate::sip::STACK_LOG_FILTER),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// On SIGTERM, how long logins in progress may take to finish before the rest hear
    /// goodbye and get a BYE.
    pub drain_secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig { drain_secs: 30 }
    }
}

/// One tenant: its own agents, stations, sessions and prompt language.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub name: String,
    /// Request-URI users (numbers dialed) that log on to this tenant.
    #[serde(default)]
    pub numbers: Vec<String>,
    /// Request-URI users that log off from this tenant.
    #[serde(default)]
    pub logout_numbers: Vec<String>,
    /// The prompt language (a directory under `[prompts] dir`); default: `[prompts] language`.
    pub language: Option<String>,
    /// This tenant's already-logged-on policy; default: `[login] already_logged_on`.
    pub already_logged_on: Option<AlreadyLoggedOnPolicy>,
    /// This tenant's same-station policy; default: `[login] same_station`.
    pub same_station: Option<SameStationPolicy>,
}

/// Where a call goes: which tenant, to log on or off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRoute {
    pub tenant: String,
    pub logout: bool,
    pub language: String,
    pub already_logged_on: AlreadyLoggedOnPolicy,
    pub same_station: SameStationPolicy,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Where SIP is accepted: `udp:ADDR:PORT` or `tcp:ADDR:PORT`, IPv6 as `udp:[::]:5060`.
    pub listen: Vec<ListenAddr>,
    /// Calls in progress at once; past it an INVITE gets 503 with Retry-After.
    pub max_calls: usize,
    /// New calls accepted per second (a one-second burst), past it an INVITE gets 503 with
    /// Retry-After: 1; 0: no limit. Keeps a shift-start storm below the rate the machine
    /// logs agents in at, as FreeSWITCH's `sessions-per-second` does.
    pub max_calls_per_second: u32,
    /// Refuse new calls (503, Retry-After: 2) while the media threads fall behind their
    /// 20 ms schedule (100 ms or more of late ticks within a second), until 2 s after they
    /// last did: past the machine's capacity the calls already up keep their audio. Off by
    /// default, as FreeSWITCH's `min-idle-cpu`.
    pub refuse_when_overloaded: bool,
    /// A call longer than this is ended with goodbye, whatever state it is in.
    pub max_call_secs: u64,
    /// Ring (180) this long before answering; 0 answers at once. Some PBXs want to see ringing,
    /// and it gives a caller's CANCEL time to arrive before the answer.
    pub answer_after_ms: u64,
    /// SIP TCP connections open at once at most (0: no limit); past it a new connection is
    /// closed at once. Each costs about 72 KiB while open (up to 5 min idle).
    pub max_tcp_connections: usize,
    /// The same from one source address (0: no limit), so that one peer cannot take them
    /// all; a PBX that opens a connection per call needs it above its calls.
    pub max_tcp_connections_per_source: usize,
    /// SIP datagrams (UDP) a second from one source address at most, a second's worth at
    /// once; past it they are dropped unread (0: no limit). A login is 3-4 from the caller.
    pub max_packets_per_second_per_source: u32,
    /// The receive buffer asked for each SIP UDP socket, KiB (0: the kernel's default, 208 KiB
    /// on Linux, ~48 datagrams on loopback). Datagrams past it while the gateway is busy are
    /// dropped by the kernel and the phones retransmit 0.5 s later; the kernel caps it at
    /// `net.core.rmem_max`. Applies at start.
    pub udp_receive_buffer_kib: u32,
    /// Threads of the async runtime (SIP transactions, the calls' tasks, the admin API);
    /// 0: half the cores, at least one. The media, the passcode hashes and SQLite have
    /// threads of their own.
    pub threads: usize,
}

impl SipConfig {
    /// Bytes a second one SIP TCP connection may send: 2 KiB for each of
    /// `max_packets_per_second_per_source` (0: no limit), past which it is shut down.
    pub fn tcp_bytes_per_second(&self) -> u64 {
        u64::from(self.max_packets_per_second_per_source) * 2048
    }

    /// The async runtime's thread count: `threads`, or half the cores (at least one) for 0.
    /// Half, because a login's async work is a short hop per SIP message or key, and every
    /// extra runtime thread is one more to wake: on 2 cores one thread spends 21% less CPU
    /// on it than two (BENCHMARKS.md) with no loss of latency at 200 logins/s.
    pub fn runtime_threads(&self) -> usize {
        match self.threads {
            0 => (std::thread::available_parallelism().map_or(1, |n| n.get()) / 2).max(1),
            n => n,
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: vec![
                ListenAddr::from_str("udp:0.0.0.0:5060").expect("default listen address"),
                ListenAddr::from_str("tcp:0.0.0.0:5060").expect("default listen address"),
            ],
            max_calls: 5000,
            max_calls_per_second: 0,
            refuse_when_overloaded: false,
            max_call_secs: 300,
            answer_after_ms: 0,
            max_tcp_connections: 5000,
            max_tcp_connections_per_source: 500,
            max_packets_per_second_per_source: 5000,
            udp_receive_buffer_kib: 4096,
            threads: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// RTP ports handed out to calls, `LOW-HIGH`, even ports only are used.
    pub rtp_ports: PortRange,
    /// The address put in SDP; by default the local address the INVITE came in on.
    pub public_address: Option<IpAddr>,
    /// Strict RTP: once a call's RTP source is learned (its first packet), packets from any
    /// other address are dropped, keys and audio alike, until a new SDP moves the media.
    pub strict_rtp: bool,
    /// Media threads (each sends and reads the RTP of a share of the calls every 20 ms).
    /// 0: one per core.
    pub threads: usize,
    /// SCHED_RR priority (1-99) for the media threads, so that other work on the machine
    /// cannot delay a tick's packets; 0: normal scheduling. Needs CAP_SYS_NICE or
    /// `LimitRTPRIO=` (systemd). A media thread busy for more than 15 ms of each 20 ms for
    /// half a second goes back to normal scheduling until it is light again.
    pub realtime_priority: u8,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtp_ports: PortRange {
                low: 20000,
                high: 29999,
            },
            public_address: None,
            strict_rtp: true,
            threads: 0,
            realtime_priority: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` (created when missing).
    pub url: String,
    /// argon2id memory per passcode hash, KiB.
    pub hash_memory_kib: u32,
    /// argon2id passes.
    pub hash_iterations: u32,
    /// The pepper: a secret mixed into every passcode hash, kept outside the database. None:
    /// generated on first start into the state directory as `pepper` (mode 0600).
    pub pepper_file: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://agentgw.db".into(),
            hash_memory_kib: crate::store::DEFAULT_HASH_MEMORY_KIB,
            hash_iterations: crate::store::DEFAULT_HASH_ITERATIONS,
            pepper_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Where the admin HTTP API listens.
    pub listen: SocketAddr,
    /// A file holding the bearer token; none: one is generated on first start into the state
    /// directory (`admin-token`, mode 0600).
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromptsConfig {
    /// A directory of WAVs named after prompt ids (`agent-user.wav` …) that replace built-ins,
    /// with one sub-directory per other language (`es/agent-user.wav` …).
    pub dir: Option<PathBuf>,
    /// The language of the default tenant.
    pub language: String,
}

impl Default for PromptsConfig {
    fn default() -> Self {
        PromptsConfig {
            dir: None,
            language: "en".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    /// Wrong agent number / passcode pairs allowed per call before goodbye.
    pub max_attempts: u32,
    /// Seconds of silence after a digit that end an entry.
    pub digit_timeout_secs: u64,
    /// Seconds to wait for the first digit after a prompt before replaying it.
    pub first_digit_timeout_secs: u64,
    /// Digits after which an entry ends without `#`.
    pub max_digits: usize,
    /// A login of an agent who already has a session: "reject", "confirm" or "replace".
    pub already_logged_on: AlreadyLoggedOnPolicy,
    /// A login at a station another agent is logged on at: "reject" or "replace".
    pub same_station: SameStationPolicy,
    /// Wrong passcodes (across calls) within `lockout_window_mins` that lock the agent; 0: never.
    pub lockout_after: u32,
    pub lockout_window_mins: u64,
    /// How long a lock lasts (or until `agentgw agent unlock`).
    pub lockout_mins: u64,
    /// Login attempts per minute from one calling station (From user@host); 0: no limit.
    pub station_attempts_per_min: u32,
    /// Login attempts per minute from one source address (a PBX relays many stations); 0: no limit.
    pub source_attempts_per_min: u32,
    /// Networks calls may log on from (empty: any); others hear "Login incorrect".
    pub allowed_networks: Vec<Network>,
    /// Where the caller's station is read: "from" (From user@host), "pai"
    /// (P-Asserted-Identity, as PBXs assert it), "header" (`station_header`), or "prompt" (an
    /// extension keyed after the passcode, # for the agent's default extension). Falls back to
    /// From when the chosen one is missing.
    pub station: StationFrom,
    /// The header a PBX puts the station in, with `station = "header"`.
    pub station_header: String,
    /// Calls to this user (`sip:logout@gateway`) log an agent off: the one at the calling
    /// station, or the one whose number and passcode are keyed.
    pub logout_uri_user: String,
    /// After "Agent logged in.": "hangup", or "stay" (nailed-up line with the status menu;
    /// hanging up logs the agent out).
    pub after_login: AfterLogin,
    /// The status a new session starts in.
    pub initial_status: AgentStatus,
    /// A session (or a stay line) ends after this many hours.
    pub session_max_hours: u64,
    /// Agents added from now on must choose a new passcode at their first login.
    pub new_agents_must_change: bool,
}

/// What happens to the line after a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterLogin {
    Hangup,
    Stay,
}

/// Where the caller's station identity comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StationFrom {
    From,
    Pai,
    Header,
    /// Asked by prompt after the passcode: an extension, or # for the agent's default.
    Prompt,
}

impl Default for LoginConfig {
    fn default() -> Self {
        LoginConfig {
            max_attempts: 3,
            digit_timeout_secs: 5,
            first_digit_timeout_secs: 10,
            max_digits: 16,
            already_logged_on: AlreadyLoggedOnPolicy::Reject,
            same_station: SameStationPolicy::Reject,
            lockout_after: 5,
            lockout_window_mins: 15,
            lockout_mins: 15,
            station_attempts_per_min: 10,
            source_attempts_per_min: 600,
            allowed_networks: Vec::new(),
            station: StationFrom::From,
            station_header: "X-Station".into(),
            logout_uri_user: "logout".into(),
            after_login: AfterLogin::Hangup,
            initial_status: AgentStatus::OnBreak,
            session_max_hours: 12,
            new_agents_must_change: false,
        }
    }
}

impl LoginConfig {
    pub fn digit_timeout(&self) -> Duration {
        Duration::from_secs(self.digit_timeout_secs)
    }
    pub fn first_digit_timeout(&self) -> Duration {
        Duration::from_secs(self.first_digit_timeout_secs)
    }
    pub fn lockout(&self) -> Lockout {
        Lockout {
            after: self.lockout_after,
            window: Duration::from_secs(self.lockout_window_mins * 60),
            duration: Duration::from_secs(self.lockout_mins * 60),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DtmfConfig {
    /// How keys are accepted: "rfc4733", "info", "inband". In-band detection stops on a call
    /// as soon as RFC 4733 events arrive on it.
    pub methods: Vec<DtmfMethod>,
}

impl Default for DtmfConfig {
    fn default() -> Self {
        DtmfConfig {
            methods: DtmfMethod::ALL.to_vec(),
        }
    }
}

impl<'de> Deserialize<'de> for DtmfMethod {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// SIP transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// One SIP listener: `udp:0.0.0.0:5060`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.transport, self.addr)
    }
}

impl FromStr for ListenAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (t, rest) = s.split_once(':').ok_or_else(|| {
            format!("{s:?} is not TRANSPORT:ADDRESS:PORT, e.g. \"udp:0.0.0.0:5060\"")
        })?;
        let transport = match t.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            other => return Err(format!("transport {other:?} is not one of udp, tcp")),
        };
        let addr = rest.parse::<SocketAddr>().map_err(|_| {
            format!("{rest:?} is not ADDRESS:PORT (IPv6 in brackets: \"[::]:5060\")")
        })?;
        Ok(ListenAddr { transport, addr })
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An inclusive port range, `20000-29999`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not LOW-HIGH with 1024 <= LOW < HIGH <= 65535");
        let (l, h) = s.split_once('-').ok_or_else(bad)?;
        let low: u16 = l.trim().parse().map_err(|_| bad())?;
        let high: u16 = h.trim().parse().map_err(|_| bad())?;
        if low < 1024 || high <= low {
            return Err(bad());
        }
        Ok(PortRange { low, high })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

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

    /// Which tenant a call to `dialed` (the Request-URI user) is for, and whether it logs off.
    pub fn route(&self, dialed: &str) -> CallRoute {
        for t in &self.tenant {
            let login = t.numbers.iter().any(|n| n == dialed);
            let logout = t.logout_numbers.iter().any(|n| n == dialed);
            if login || logout {
                return CallRoute {
                    tenant: t.name.clone(),
                    logout,
                    language: t
                        .language
                        .clone()
                        .unwrap_or_else(|| self.prompts.language.clone()),
                    already_logged_on: t.already_logged_on.unwrap_or(self.login.already_logged_on),
                    same_station: t.same_station.unwrap_or(self.login.same_station),
                };
            }
        }
        CallRoute {
            tenant: crate::store::DEFAULT_TENANT.into(),
            logout: dialed == self.login.logout_uri_user,
            language: self.prompts.language.clone(),
            already_logged_on: self.login.already_logged_on,
            same_station: self.login.same_station,
        }
    }

    /// Every prompt language in use.
    pub fn languages(&self) -> Vec<String> {
        let mut langs = vec![self.prompts.language.clone()];
        for t in &self.tenant {
            if let Some(l) = &t.language {
                if !langs.contains(l) {
                    langs.push(l.clone());
                }
            }
        }
        langs
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
        if self.sip.max_calls == 0 {
            return invalid("sip.max_calls", "must be at least 1");
        }
        if self.sip.max_call_secs < 30 {
            return invalid("sip.max_call_secs", "must be at least 30");
        }
        if self.sip.answer_after_ms > 10_000 {
            return invalid("sip.answer_after_ms", "must be at most 10000");
        }
        if !self.store.url.starts_with("sqlite:") {
            return invalid(
                "store.url",
                "must start with sqlite:// (e.g. \"sqlite://agentgw.db\")",
            );
        }
        for (i, w) in self.webhook.iter().enumerate() {
            let key = |k: &str| format!("webhook[{i}].{k}");
            if let Err(e) = crate::admin::webhooks::parse_http_url(&w.url) {
                return invalid(&key("url"), &e);
            }
            if w.secret.len() < 16 {
                return invalid(&key("secret"), "must be at least 16 characters");
            }
            if let Some(e) = w.events.iter().find(|e| !EVENT_NAMES.contains(&e.as_str())) {
                return invalid(
                    &key("events"),
                    &format!(
                        "{e:?} is not an event; the events are {}",
                        EVENT_NAMES.join(", ")
                    ),
                );
            }
            if !(1..=100_000).contains(&w.queue) {
                return invalid(&key("queue"), "must be 1 to 100000");
            }
            if !(1..=100).contains(&w.max_tries) {
                return invalid(&key("max_tries"), "must be 1 to 100");
            }
            if !(100..=60_000).contains(&w.timeout_ms) {
                return invalid(&key("timeout_ms"), "must be 100 to 60000");
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
            if !name_ok || t.name == crate::store::DEFAULT_TENANT {
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
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_every_default() {
        let c = Config::parse("", "x.toml").unwrap();
        assert_eq!(c.sip.listen.len(), 2);
        assert_eq!(c.login.max_attempts, 3);
        assert_eq!(
            c.media.rtp_ports,
            PortRange {
                low: 20000,
                high: 29999
            }
        );
        assert_eq!(c.store.url, "sqlite://agentgw.db");
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let e = Config::parse("[login]\nmax_atempts = 3\n", "/etc/agentgw.toml").unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("/etc/agentgw.toml: login"), "{s}");
        assert!(s.contains("max_atempts"), "{s}");
        assert!(
            s.contains("max_attempts"),
            "the allowed keys are listed: {s}"
        );
    }

    #[test]
    fn bad_value_names_the_key_and_what_is_allowed() {
        let e = Config::parse("[sip]\nlisten = [\"sctp:0.0.0.0:5060\"]\n", "a.toml").unwrap_err();
        assert!(e.to_string().starts_with("a.toml: sip.listen[0]: "), "{e}");
        assert!(e.to_string().contains("udp, tcp"), "{e}");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(Config::default().sip.runtime_threads(), (cores / 2).max(1));
        let c = Config::parse("[sip]\nthreads = 3\n", "a.toml").unwrap();
        assert_eq!(c.sip.runtime_threads(), 3);
        let e = Config::parse("[sip]\nthreads = 1000\n", "a.toml").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("a.toml: sip.threads: must be at most 256"),
            "{e}"
        );
        let e = Config::parse("[media]\nrealtime_priority = 100\n", "a.toml").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("a.toml: media.realtime_priority: must be 0"),
            "{e}"
        );
        let e = Config::parse("[media]\nrtp_ports = \"30000-20000\"\n", "a.toml").unwrap_err();
        assert!(
            e.to_string().starts_with("a.toml: media.rtp_ports: "),
            "{e}"
        );
        let e = Config::parse("[login]\nmax_attempts = 0\n", "a.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "a.toml: login.max_attempts: must be between 1 and 10"
        );
        let e = Config::parse("[login]\nmax_digits = \"x\"\n", "a.toml").unwrap_err();
        assert!(
            e.to_string().starts_with("a.toml: login.max_digits: "),
            "{e}"
        );
        let hook = |extra: &str| {
            Config::parse(
                &format!("[[webhook]]\nurl = \"http://127.0.0.1:9/x\"\nsecret = \"0123456789abcdef\"\n{extra}"),
                "a.toml",
            )
        };
        assert!(hook("").is_ok());
        let e = hook("events = [\"logon\"]\n").unwrap_err().to_string();
        assert!(
            e.starts_with("a.toml: webhook[0].events: \"logon\" is not an event"),
            "{e}"
        );
        let e = Config::parse(
            "[[webhook]]\nurl = \"https://x\"\nsecret = \"0123456789abcdef\"\n",
            "a.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("a.toml: webhook[0].url: https is not supported"),
            "{e}"
        );
        let e = Config::parse(
            "[[webhook]]\nurl = \"http://x\"\nsecret = \"short\"\n",
            "a.toml",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "a.toml: webhook[0].secret: must be at least 16 characters"
        );
    }

    #[test]
    fn the_commented_example_is_valid_and_says_the_defaults() {
        let text = include_str!("../systemd/agentgw.toml");
        let c = Config::parse(text, "systemd/agentgw.toml").unwrap();
        let d = Config::default();
        assert_eq!(c.sip.listen, d.sip.listen);
        assert_eq!(c.sip.max_calls, d.sip.max_calls);
        assert_eq!(c.media.rtp_ports, d.media.rtp_ports);
        assert_eq!(c.store.url, d.store.url);
        assert_eq!(c.login.max_digits, d.login.max_digits);
    }

    #[test]
    fn dtmf_methods_are_checked() {
        let c = Config::parse("[dtmf]\nmethods = [\"info\"]\n", "a").unwrap();
        assert_eq!(c.dtmf.methods, vec![DtmfMethod::Info]);
        let e = Config::parse("[dtmf]\nmethods = [\"sip-info\"]\n", "a").unwrap_err();
        assert!(e.to_string().starts_with("a: dtmf.methods[0]: "), "{e}");
        assert!(Config::parse("[dtmf]\nmethods = []\n", "a").is_err());
    }

    #[test]
    fn login_rules_parse_with_what_is_allowed_in_errors() {
        let c = Config::parse(
            "[login]\nalready_logged_on = \"confirm\"\nsame_station = \"replace\"\nallowed_networks = [\"10.0.0.0/8\"]\n",
            "a",
        )
        .unwrap();
        assert_eq!(c.login.already_logged_on, AlreadyLoggedOnPolicy::Confirm);
        assert_eq!(c.login.same_station, SameStationPolicy::Replace);
        assert_eq!(c.login.allowed_networks.len(), 1);
        let e = Config::parse("[login]\nalready_logged_on = \"kick\"\n", "a")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("a: login.already_logged_on: ") && e.contains("reject"),
            "{e}"
        );
        let e = Config::parse("[login]\nallowed_networks = [\"10.0.0.0/99\"]\n", "a")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("a: login.allowed_networks[0]: "), "{e}");
    }

    #[test]
    fn the_number_dialed_picks_the_tenant() {
        let c = Config::parse(
            "[[tenant]]\nname = \"acme\"\nnumbers = [\"login-acme\", \"+15551230000\"]\nlogout_numbers = [\"logout-acme\"]\nlanguage = \"es\"\nalready_logged_on = \"replace\"\n",
            "a",
        )
        .unwrap();
        assert_eq!(
            c.route("login-acme").already_logged_on,
            AlreadyLoggedOnPolicy::Replace
        );
        assert_eq!(
            c.route("login").already_logged_on,
            AlreadyLoggedOnPolicy::Reject
        );
        let r = c.route("+15551230000");
        assert_eq!(
            (r.tenant.as_str(), r.logout, r.language.as_str()),
            ("acme", false, "es")
        );
        assert!(c.route("logout-acme").logout);
        let r = c.route("login");
        assert_eq!(
            (r.tenant.as_str(), r.logout, r.language.as_str()),
            ("default", false, "en")
        );
        assert!(c.route("logout").logout);
        assert_eq!(c.languages(), vec!["en", "es"]);
        let e = Config::parse("[[tenant]]\nname = \"a b\"\nnumbers = [\"x\"]\n", "a").unwrap_err();
        assert!(e.to_string().starts_with("a: tenant[0].name: "), "{e}");
        let e = Config::parse("[[tenant]]\nname = \"a\"\nnumbers = [\"x\"]\n[[tenant]]\nname = \"b\"\nnumbers = [\"x\"]\n", "a").unwrap_err();
        assert!(e.to_string().contains("used twice"), "{e}");
    }

    #[test]
    fn ipv6_listener_parses() {
        let c = Config::parse("[sip]\nlisten = [\"udp:[::1]:5070\"]\n", "a").unwrap();
        assert_eq!(c.sip.listen[0].addr, "[::1]:5070".parse().unwrap());
    }
}
