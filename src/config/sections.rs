//! The sections of the TOML file, each key with its default and what it means.

use crate::digest::Authenticate;
use crate::login::rules::{
    AfterLogin, AlreadyLoggedOnPolicy, AnonymousStation, Lockout, Network, SameStationPolicy,
    StationFrom,
};
use crate::login::AgentStatus;
use crate::media::dtmf::DtmfMethod;
use crate::media::rtp::PortRange;
use crate::sdp::SrtpPolicy;
use crate::sip::ListenAddr;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// On SIGTERM, how long logins in progress may take to finish before the rest hear
    /// goodbye and get a BYE.
    pub drain_secs: u64,
    /// This gateway's name in sessions, the audit log and events; unique among the nodes that
    /// share a store. None: the host name.
    pub node_id: Option<String>,
    /// A node of the store silent this long is lost: a surviving node closes its stay-line
    /// sessions ("node lost").
    pub node_timeout_secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            drain_secs: 30,
            node_id: None,
            node_timeout_secs: 30,
        }
    }
}

impl GatewayConfig {
    /// `node_id`, else the host name.
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "agentgw".into())
        })
    }
}

/// One tenant: its own agents, stations, sessions and prompt language.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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
    /// This tenant's `[media] srtp` (its numbers' calls); default: `[media] srtp`.
    pub srtp: Option<SrtpPolicy>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// Where SIP is accepted: `udp:ADDR:PORT`, `tcp:ADDR:PORT` or `tls:ADDR:PORT`, IPv6 as
    /// `udp:[::]:5060`.
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
    /// A SIP message longer than this, in bytes, is answered 513 Message Too Large unread
    /// (UDP datagrams are read whole, up to 65,507 bytes).
    pub max_message_bytes: usize,
    /// Over TCP, the longest a SIP message may take to arrive once its first byte came (and
    /// the first message once the connection is open), seconds; past it the connection is
    /// closed, so that a peer sending a byte at a time, or nothing, cannot hold a connection
    /// slot. 0: no limit.
    pub tcp_message_timeout_secs: u64,
    /// Threads of the async runtime (SIP transactions, the calls' tasks, the admin API);
    /// 0: half the cores, at least one. The media, the passcode hashes and SQLite have
    /// threads of their own.
    pub threads: usize,
    /// PBXs and proxies (CIDR) whose calls are taken without authentication and whose
    /// station is believed: the From, or P-Asserted-Identity with `login.station = "pai"`,
    /// the station header with `"header"`. A caller from anywhere else authenticates (see
    /// `authenticate`) and its station is its phone account. Default: the loopback networks.
    pub trusted_networks: Vec<Network>,
    /// Who must authenticate with SIP Digest against a phone account (`agentgw phone add`):
    /// "untrusted" (every caller outside `trusted_networks`; 401, then 403 for wrong
    /// credentials) or "off" (every caller is taken, as a PBX leg is).
    pub authenticate: Authenticate,
    /// The certificate chain (PEM, the server's first) of `tls:` listeners; read again on a
    /// reload (SIGHUP), for new connections.
    pub tls_certificate: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_private_key: Option<PathBuf>,
    /// CA certificates (PEM): when set, a TLS client must present a certificate issued by one
    /// of them (mutual TLS, for PBX trunks).
    pub tls_client_ca: Option<PathBuf>,
    /// The Digest algorithms offered, in order of preference (RFC 8760): "SHA-256", "MD5".
    /// A phone answers the first it supports; some (baresip 1.x, on libre 1.1) give up at a
    /// first challenge they cannot answer instead, and need "MD5" listed first.
    pub digest_algorithms: Vec<crate::digest::Algorithm>,
    /// The Digest realm phones authenticate in; a phone account's secret is made for one
    /// realm, so changing it means setting the phones' passwords again.
    pub realm: String,
}

impl SipConfig {
    /// Bytes a second one SIP TCP connection may send: 2 KiB for each of
    /// `max_packets_per_second_per_source` (0: no limit), past which it is shut down.
    pub fn tcp_bytes_per_second(&self) -> u64 {
        u64::from(self.max_packets_per_second_per_source) * 2048
    }

    /// The files of the TLS listeners, when set.
    pub fn tls_files(&self) -> Option<crate::sip::TlsFiles> {
        Some(crate::sip::TlsFiles {
            certificate: self.tls_certificate.clone()?,
            private_key: self.tls_private_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
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
            max_message_bytes: 65535,
            tcp_message_timeout_secs: 10,
            threads: 0,
            // The host itself: a PBX or proxy on the same machine, and the quick start.
            trusted_networks: vec![
                "127.0.0.0/8".parse().expect("loopback network"),
                "::1/128".parse().expect("loopback network"),
            ],
            authenticate: Authenticate::Untrusted,
            tls_certificate: None,
            tls_private_key: None,
            tls_client_ca: None,
            realm: "agentgw".into(),
            digest_algorithms: vec![
                crate::digest::Algorithm::Sha256,
                crate::digest::Algorithm::Md5,
            ],
        }
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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
    /// Whether calls' audio is encrypted (SRTP with SDES keys, which go only over SIP over
    /// TLS): "off" (plain RTP; an RTP/SAVP offer is refused), "offer" (SRTP when the caller
    /// offers it over TLS, plain RTP otherwise), "require" (SRTP only, so TLS only).
    pub srtp: SrtpPolicy,
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
            srtp: SrtpPolicy::Offer,
        }
    }
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` (created when missing), or `postgres://USER:PASSWORD@HOST/DATABASE`
    /// for several nodes sharing one store.
    pub url: String,
    /// argon2id memory per passcode hash, KiB.
    pub hash_memory_kib: u32,
    /// argon2id passes.
    pub hash_iterations: u32,
    /// The pepper: a secret mixed into every passcode hash, kept outside the database. None:
    /// generated on first start into the state directory as `pepper` (mode 0600). Needed
    /// with PostgreSQL: every node must hash with the same pepper, so each has a copy.
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

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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
    /// Where a caller whose identity is withheld (`anonymous@anonymous.invalid`) logs on:
    /// "prompt" (the extension is asked after the passcode; # alone: the agent's default
    /// extension, else a station of the call alone) or "call" (a station of the call alone).
    pub anonymous_station: AnonymousStation,
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
    /// A stay line from which no RTP came for this long is probed in its dialog (OPTIONS);
    /// a phone that does not answer is lost: its agent is logged out ("station lost"). 0: off.
    pub line_timeout_secs: u64,
    /// Agents added from now on must choose a new passcode at their first login.
    pub new_agents_must_change: bool,
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
            anonymous_station: AnonymousStation::Prompt,
            logout_uri_user: "logout".into(),
            after_login: AfterLogin::Hangup,
            initial_status: AgentStatus::OnBreak,
            session_max_hours: 12,
            line_timeout_secs: 30,
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

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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
